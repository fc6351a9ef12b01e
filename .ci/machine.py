"""Print what a test run depends on: versions, the CPU's SIMD level and the paths each library takes."""

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch
from numpy._core import _multiarray_umath as umath

print(f"python {sys.version.split()[0]} on {platform.machine()} ({platform.processor() or 'cpu'}), "
      f"{os.cpu_count()} cores")
for name in ("numpy", "scipy", "numba", "llvmlite", "torch", "transformers"):
    try:
        print(f"  {name} {version(name)}")
    except PackageNotFoundError:
        print(f"  {name} not installed")
dispatch = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
print(f"numpy SIMD: baseline {' '.join(umath.__cpu_baseline__)}; dispatched {' '.join(dispatch) or 'none'}")
print(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}; "
      f"threads {torch.get_num_threads()}; numpy BLAS threads env "
      f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
print(f"float32 machine eps {np.finfo(np.float32).eps}, float64 {np.finfo(np.float64).eps}")
