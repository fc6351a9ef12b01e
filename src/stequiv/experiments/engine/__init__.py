"""The pair engine: a Q̂-net and its partners trained in lockstep on one data stream.

:func:`run_group` trains one Q̂-net with a partner per :class:`~stequiv.experiments.config.PairSpec`
and writes each pair's run folder; :data:`PARTNER_KINDS` is the registry of partners (its set-up,
its label and how it follows an estimator schedule: a new partner is one entry);
:func:`build_qnet`, :func:`make_optimizer` and :func:`build_partner` build the pieces.
Reads :mod:`~stequiv.experiments.config`, :mod:`~stequiv.experiments.parallel` and writes through
:mod:`~stequiv.experiments.results`.
"""

from ._batches import TrainData as TrainData
from ._batches import evaluate as evaluate
from ._batches import index_batches as index_batches
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._determinism import deterministic_algorithms as deterministic_algorithms
from ._net import Net as Net
from ._net import NonFiniteError as NonFiniteError
from ._pair import check_builds as check_builds
from ._pair import run_group as run_group
from ._pair import run_pair as run_pair
from ._pair import seconds_per_net_step as seconds_per_net_step
from ._partners import PARTNER_KINDS as PARTNER_KINDS
from ._partners import PartnerKind as PartnerKind
from ._partners import build_partner as build_partner
from ._partners import describe_partner as describe_partner
from ._partners import follower as follower
from ._partners import partner_role as partner_role
from ._preflight import TRAIN_DTYPE as TRAIN_DTYPE
from ._preflight import check_compiles as check_compiles
from ._preflight import check_estimator_dtype as check_estimator_dtype
from ._setup import build_qnet as build_qnet
from ._setup import clone_with_lr as clone_with_lr
from ._setup import estimator_schedule as estimator_schedule
from ._setup import make_optimizer as make_optimizer
from ._setup import warmup_cosine as warmup_cosine
from ._task import correct as correct
from ._task import cross_entropy as cross_entropy
from ._timings import PhaseTimes as PhaseTimes
from ._timings import cpu_seconds as cpu_seconds
