"""Several processes: torchrun set-up (:func:`setup_distributed`, :class:`Dist`), FSDP2 sharding of
a net with its optimizer and schedule, a BatchNorm whose statistics are synchronised on CPU and
GPU (:func:`convert_sync_batchnorm`), and sharing jobs among worker processes so that they finish
together (:func:`balance`). One process is the same code with ``Dist.enabled`` false.
"""

from ._balance import balance as balance
from ._balance import balance_groups as balance_groups
from ._balance import group_cost as group_cost
from ._balance import makespan as makespan
from ._balance import two_parts as two_parts
from ._distributed import Dist as Dist
from ._distributed import end_worker_process as end_worker_process
from ._distributed import setup_distributed as setup_distributed
from ._fsdp import all_finite as all_finite
from ._fsdp import full as full
from ._fsdp import full_state as full_state
from ._fsdp import load_ as load_
from ._fsdp import plain_copy as plain_copy
from ._fsdp import refresh_ as refresh_
from ._fsdp import shard_ as shard_
from ._fsdp import shard_units as shard_units
from ._sync_batchnorm import CpuSyncBatchNorm2d as CpuSyncBatchNorm2d
from ._sync_batchnorm import convert_sync_batchnorm as convert_sync_batchnorm
