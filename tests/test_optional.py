"""An optional dependency that is missing gives one error naming the extra that installs it."""

import pytest

from stequiv._optional import MissingExtraError, require


def test_a_present_module_is_returned():
    assert require("math", "experiments").sqrt(9.0) == 3.0


def test_a_missing_module_names_the_pip_command():
    with pytest.raises(MissingExtraError, match=r"pip install 'stequiv\[export\]'") as info:
        require("surely_not_installed_module_xyz", "export", feature="ONNX export")
    assert "ONNX export needs `surely_not_installed_module_xyz`" in str(info.value)
    assert isinstance(info.value, ImportError)
