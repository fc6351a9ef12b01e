"""Test-wide settings: one torch thread per pytest worker (`make test` runs two workers on two cores;
more threads than cores makes them stall each other)."""

import torch

torch.set_num_threads(1)
