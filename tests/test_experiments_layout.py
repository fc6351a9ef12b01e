"""The experiments' house: five packages with public faces, read in one direction, and the
names user code imported from ``stequiv.experiments`` before the packages existed."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import stequiv.experiments as experiments

ROOT = Path(experiments.__file__).parent
# Each package may import only those before it (the order of the package docstring).
ORDER = ("config", "parallel", "results", "engine", "study")
EVERYDAY = ("EXPERIMENTS", "PRESETS", "PRESET_BITS", "PROTOCOL", "ConfigError", "Dist",
            "ExperimentConfig", "PairSpec", "TrainData", "group_specs", "load_data", "pair_specs",
            "reproduce", "reproduce_bits", "run_group", "run_pair", "setup_distributed")


def _relative_imports(path: Path) -> list[tuple[int, str]]:
    """(level, module) of every ``from .x import`` in ``path``, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.level, node.module or "") for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level]


def test_the_names_user_code_imports_are_still_there():
    missing = [name for name in EVERYDAY if not hasattr(experiments, name)]
    assert not missing


@pytest.mark.parametrize("package", ORDER)
def test_a_package_states_its_job_and_imports_only_earlier_packages(package):
    module = importlib.import_module(f"stequiv.experiments.{package}")
    assert (module.__doc__ or "").strip(), f"{package}/__init__.py needs a docstring"
    allowed = set(ORDER[:ORDER.index(package)])
    for path in (ROOT / package).glob("*.py"):
        for level, name in _relative_imports(path):
            if level != 2:  # within the package (1) or stequiv's other packages (3)
                continue
            top = name.split(".")[0]
            assert top in allowed, f"{path.name} imports ..{name}: {package} may read {sorted(allowed)}"
            assert not any(part.startswith("_") for part in name.split(".")), \
                f"{path.name} imports the private module ..{name}; use the package's face"


def test_entry_points_import_packages_through_their_faces():
    for path in ROOT.glob("*.py"):
        if path.name == "testing.py":  # the documented internal module
            continue
        for level, name in _relative_imports(path):
            parts = name.split(".")
            assert level > 1 or len(parts) == 1 or not parts[1].startswith("_"), \
                f"{path.name} imports .{name}"
