"""The core commands of the CLI: estimators, alpha, plot-estimators."""

import json

import click
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


def test_alpha_takes_estimator_parameters_as_name_equals_value():
    """`--t=4` is `--t 4`: both give HTGE's α at t = 4."""
    runner = CliRunner()
    spaced = runner.invoke(main, ["alpha", "htge", "--bits", "2", "--t", "4", "--json"])
    joined = runner.invoke(main, ["alpha", "htge", "--bits", "2", "--t=4", "--json"])
    assert joined.exit_code == 0, joined.output
    assert json.loads(joined.output) == json.loads(spaced.output)
    assert json.loads(joined.output)["estimator"] == "htge(t=4)"
    twice = runner.invoke(main, ["alpha", "htge", "--bits", "2", "--t=4", "--t", "3"])
    assert twice.exit_code == 2 and "--t is given twice" in twice.output


def _commands(group):
    for name, command in group.commands.items():
        yield name, command
        if hasattr(command, "commands"):
            yield from _commands(command)


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {'/'.join(param.opts)}" for name, command in _commands(main)
               for param in command.params
               if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not missing, f"options without help text: {missing}"
    assert not [o for o in main.params if isinstance(o, click.Option) and not o.help]
    assert {"estimators", "alpha", "plot-estimators", "reproduce", "report", "study"} <= set(main.commands)


def test_alpha_of_a_binary_estimator_on_more_bits_is_refused():
    """`stequiv alpha ede --bits 2` printed the binary quantizer's numbers as if for 2 bits."""
    runner = CliRunner()
    result = runner.invoke(main, ["alpha", "ede", "--bits", "2"])
    assert result.exit_code == 2 and "is a binary estimator" in result.output
    assert "give --bits 1" in result.output
    result = runner.invoke(main, ["alpha", "ede", "--bits", "1", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["quantizer"].startswith("binary")
