"""Run folders and what is made from them: the files of a run (metrics, weights, final numbers)
written atomically with a verified manifest, the summary (Points A and B), the tables, the figures
and ``report.md``. Everything here reads the saved files, never live training objects, so
``stequiv report`` rebuilds a report from a folder alone. (The figures, which need matplotlib, are
drawn by :func:`rebuild` and :func:`write_report`; nothing here imports matplotlib at import time.)
"""

from ._manifest import CONFIG as CONFIG
from ._manifest import MANIFEST as MANIFEST
from ._manifest import IntegrityError as IntegrityError
from ._manifest import add_to_manifest as add_to_manifest
from ._manifest import check_claim as check_claim
from ._manifest import finite_json as finite_json
from ._manifest import json_text as json_text
from ._manifest import listed_files as listed_files
from ._manifest import read_claimed_config as read_claimed_config
from ._manifest import read_verified as read_verified
from ._manifest import remove_partial_writes as remove_partial_writes
from ._manifest import remove_unlisted as remove_unlisted
from ._manifest import write_config as write_config
from ._manifest import write_with_manifest as write_with_manifest
from ._paper import PAPER as PAPER
from ._report import Report as Report
from ._report import rebuild as rebuild
from ._report import write_report as write_report
from ._runs import METRICS_COLUMNS as METRICS_COLUMNS
from ._runs import NET_KEYS as NET_KEYS
from ._runs import RESULT_FILES as RESULT_FILES
from ._runs import atomic_write as atomic_write
from ._runs import config_diff as config_diff
from ._runs import find_run as find_run
from ._runs import load_runs as load_runs
from ._runs import metrics_csv as metrics_csv
from ._runs import read_config as read_config
from ._runs import read_final as read_final
from ._runs import read_metrics as read_metrics
from ._runs import read_weights as read_weights
from ._runs import results_remedy as results_remedy
from ._runs import weights_npz as weights_npz
from ._runs import write_json as write_json
from ._summary import POINT_A_MAX as POINT_A_MAX
from ._summary import POINT_B_MIN as POINT_B_MIN
from ._summary import SUMMARY_EXPERIMENTS as SUMMARY_EXPERIMENTS
from ._summary import PointCheck as PointCheck
from ._summary import ebar_percent as ebar_percent
from ._summary import point_checks as point_checks
from ._summary import runs_slope_spread as runs_slope_spread
from ._summary import summary as summary
from ._summary import summary_table as summary_table
from ._tables import FORMATS as FORMATS
from ._tables import Column as Column
from ._tables import Table as Table
from ._tables import build_tables as build_tables
