"""``stequiv study``: alignment against learning rate over a grid of cells.

:class:`StudyConfig` (with :data:`STUDY_PRESETS`) names the grid; :func:`run_study` trains each
cell's Q̂-net, STE twin and lr-tweak partner — many cells at once in one vmapped forward
(:class:`BatchedNets`) — and writes ``study.csv``, figures and ``report.md``
(:func:`report_study` rebuilds them from the saved rows).
"""

from ._batched import BatchedNets as BatchedNets
from ._batched import NetState as NetState
from ._optimizers import STUDY_OPTIMIZERS as STUDY_OPTIMIZERS
from ._optimizers import StudyOptimizer as StudyOptimizer
from ._optimizers import study_rule as study_rule
from ._stacked import stacked_forward as stacked_forward
from ._study import StudyData as StudyData
from ._study import build_cell as build_cell
from ._study import cell_batches as cell_batches
from ._study import clipper as clipper
from ._study import index_stream as index_stream
from ._study import load_study_data as load_study_data
from ._study import report_study as report_study
from ._study import run_study as run_study
from ._study import train_lockstep as train_lockstep
from ._study import train_sequential as train_sequential
from ._study import worker_pool as worker_pool
from ._study_config import STUDY_PRESETS as STUDY_PRESETS
from ._study_config import Cell as Cell
from ._study_config import StudyConfig as StudyConfig
from ._study_config import study_cosine as study_cosine
from ._study_report import breakdowns as breakdowns
from ._study_report import optimizer_table as optimizer_table
from ._study_report import read_rows as read_rows
from ._study_report import slope_verdict as slope_verdict
from ._study_report import write_study_csv as write_study_csv
from ._study_report import write_study_outputs as write_study_outputs
