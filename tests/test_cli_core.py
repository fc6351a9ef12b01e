"""The core commands of the CLI: estimators, alpha, plot-estimators."""

import json

from click.testing import CliRunner

from stequiv.cli import main


def test_estimators_table_lists_alpha():
    result = CliRunner().invoke(main, ["estimators", "--bits", "2"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("htge"))
    assert "0.511347" in line  # t=4: α = 16/(4 + sinh 4)


def test_alpha_json_with_estimator_parameters():
    result = CliRunner().invoke(main, ["alpha", "htge", "--bits", "2", "--t", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert abs(data["alpha"] - 0.5113468309679232) < 1e-12
    assert set(data) >= {"L_minus", "L_plus", "L_prime", "coefficient"}


def test_alpha_unknown_name_and_bad_parameter_are_clear_errors():
    runner = CliRunner()
    result = runner.invoke(main, ["alpha", "htgee", "--bits", "2"])
    assert result.exit_code != 0 and "did you mean 'htge'" in result.output
    result = runner.invoke(main, ["alpha", "htge", "--bits", "2", "--t", "-1"])
    assert result.exit_code != 0 and "`t` must be > 0" in result.output
    result = runner.invoke(main, ["alpha", "htge", "--bits", "2", "--sharpness", "3"])
    assert result.exit_code != 0 and "no parameter(s) ['sharpness']" in result.output


def test_plot_estimators_writes_pngs(tmp_path):
    result = CliRunner().invoke(main, ["plot-estimators", "-o", str(tmp_path), "--name", "htge"])
    assert result.exit_code == 0, result.output
    png = tmp_path / "figure1_estimators.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
