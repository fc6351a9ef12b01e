"""``python -m stequiv`` (also under ``torchrun -m stequiv``): the command-line interface."""

from stequiv.cli import main

main()
