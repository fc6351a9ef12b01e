"""The ``stequiv`` command line: one module per command, added to one click group.

``estimators`` (the registry's table), ``alpha`` (α and the constants of one estimator),
``plot-estimators`` (Figure 1), ``reproduce`` (Section 6 on real data), ``report`` (rebuild a
results folder's report), ``study`` (alignment against learning rate), ``export`` (a trained
model to a deployment format, :mod:`stequiv.export`) and ``recovery`` (QAT fine-tuning of
pretrained networks, :mod:`stequiv.recovery`). Choices are read from
the registries (presets, estimators), and every configuration goes through the config's one
resolver, :func:`stequiv.experiments.config.resolve`. The entry point is :func:`main`.
"""

from ..export import export_command
from ..recovery import recovery_command
from ._alpha import alpha_cmd
from ._estimators import estimators_cmd
from ._main import main as main
from ._plot import plot_estimators_cmd
from ._report import report_cmd
from ._reproduce import reproduce_cmd
from ._study import study_cmd

for _command in (estimators_cmd, alpha_cmd, plot_estimators_cmd, reproduce_cmd, report_cmd,
                 study_cmd, export_command, recovery_command):
    main.add_command(_command)
