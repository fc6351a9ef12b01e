"""keep_freed_memory: a step's freed tensors are reused by the next step instead of being
returned to the kernel and faulted in again (glibc only)."""

import subprocess
import sys

import pytest

_FAULTS = """
import resource
import torch
from stequiv._memory import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # a 'training step': two 40 MiB tensors written, then freed
        a, b = torch.ones(10 << 20), torch.ones(10 << 20)
        del a, b
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults()
assert keep_freed_memory()
print(default, faults())
"""
_PAGES = 2 * 10_240  # of one step's two tensors


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux")
def test_freed_tensors_are_reused_without_page_faults():
    default, kept = map(int, subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True,
                                            text=True, check=True).stdout.split())
    # glibc's default: a block above its largest mmap threshold (32 MiB) is a fresh mmap each
    # time, its pages faulted in (and zero-filled by the kernel) at every step
    assert default > 10 * _PAGES
    assert kept < 2 * _PAGES  # the first step's pages, then reused
