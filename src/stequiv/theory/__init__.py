"""Theorems 5.1, D.3 and 5.2 of the paper checked exactly on known gradient streams (NumPy only)."""

from ._bound_check import TOLERANCE as TOLERANCE
from ._bound_check import bound_check as bound_check
from ._bound_check import check_estimator as check_estimator
from ._bound_check import checkable_estimators as checkable_estimators
from ._bound_check import dsq_appendix_h as dsq_appendix_h
from ._setting import Setting as Setting
from ._setting import Stream as Stream
from ._setting import setting_for as setting_for
from ._simulate import simulate as simulate
