"""The report: summary.json, Tables 3–5, figures and report.md, built from saved run files only."""

import json
import shutil

import numpy as np
import pytest

from stequiv.experiments.results import (
    PAPER,
    ebar_percent,
    load_runs,
    point_checks,
    summary,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS_HEADER = "step,epoch,ebar,agreement,loss_a,loss_b,lr"
# (optimizer, experiment): (Ē, agreement), as fractions. Point A: 0.00421 / 0.005 = 0.84 ≤ 1.5;
# Point B: 0.031 / 0.00421 = 7.4 ≥ 3; both hold.
EBARS = {
    ("sgd", "baseline"): (0.00421, 0.9876),
    ("sgd", "lr-tweak"): (0.005, 0.9901),
    ("sgd", "unadjusted"): (0.031, 0.9512),
    ("sgd", "m-only"): (0.0123, 0.9702),
    ("adam", "baseline"): (0.0222, 0.9555),
    ("adam", "lr-tweak"): (0.015, 0.9611),
    ("adam", "unadjusted"): (0.026, 0.94),
}
SWEEP = {0.25: 0.001, 1.0: 0.0042, 4.0: 0.02}  # lr factor: Ē of the STE twin
VAL_ACC = (0.9712, 0.9689)  # Q̂-net, partner: 0.23 points apart


def _nets(val_acc=VAL_ACC):
    def net(label, acc):
        return {"label": label, "train_acc": acc - 0.001, "train_loss": 0.15, "val_acc": acc, "val_loss": 0.14}
    return {"a": net("qhat", val_acc[0]), "b": net("ste", val_acc[1])}


def _write_run(root, run_id, optimizer, experiment, ebar, agreement, n_weights=600, **extra):
    """One synthetic run folder: final.json, metrics.csv and weights.npz (none if ``n_weights`` is 0)."""
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    final = {"run_id": run_id, "optimizer": optimizer, "experiment": experiment, "lr": 1e-3,
             "remap": optimizer == "sgd" and experiment != "unadjusted", "ebar": ebar,
             "agreement": agreement, "layers": {}, "nets": _nets(), "steps": 100, "seconds": 1.5, **extra}
    (run_dir / "final.json").write_text(json.dumps(final))
    if not n_weights:
        return
    steps = np.arange(0, 101, 10)
    rows = [f"{s},{s // 50},{ebar * s / 100},{1 - (1 - agreement) * s / 100},0.5,0.5,0.001" for s in steps]
    (run_dir / "metrics.csv").write_text("\n".join([METRICS_HEADER, *rows]) + "\n")
    rng = np.random.default_rng(len(run_id))
    x = rng.uniform(-1, 1, n_weights).astype(np.float32)
    np.savez(run_dir / "weights.npz", x=x, y=x + rng.normal(0, ebar, n_weights).astype(np.float32),
             layer=(np.arange(n_weights) >= n_weights // 2).astype(np.int16),
             layer_names=np.array(["conv1", "conv2"]), boundaries_0=np.array([-0.5, 0.0, 0.5]),
             boundaries_1=np.array([-0.25, 0.0, 0.25]))


def _results(root, ebars=EBARS, sweep=SWEEP, val_acc=VAL_ACC, files=True):
    """A synthetic results folder: every run of ``ebars`` plus an SGD lr sweep with both partners.

    ``files=False`` writes only the final.json files: no figure gets drawn, which keeps the tests of
    the table logic fast.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"dataset": "mnist", "bits": 2, "estimator": "htge", "seed": 0}))
    for (opt, exp), (ebar, agreement) in ebars.items():
        big = 25_000 if (opt, exp) == ("sgd", "baseline") else 600  # exercises Figure 3's subsampling
        _write_run(root, f"{opt}-{exp}", opt, exp, ebar, agreement, n_weights=big * files)
    for factor, ebar in sweep.items():
        for partner in ("ste", "lr-tweak"):
            _write_run(root, f"sgd-lr-sweep-{partner}-x{factor:g}", "sgd", "lr-sweep", ebar * (1.0 if partner == "ste" else 1.1),
                       0.98, n_weights=600 * files, lr_factor=factor, partner=partner)
    if val_acc != VAL_ACC:
        final = root / "runs" / "sgd-baseline" / "final.json"
        final.write_text(json.dumps({**json.loads(final.read_text()), "nets": _nets(val_acc)}))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The default synthetic folder, with its report built once for the read-only tests."""
    root = _results(tmp_path_factory.mktemp("results") / "run")
    note = root / "runs" / "adam-baseline" / "final.json"
    note.write_text(json.dumps({**json.loads(note.read_text()), "note": "resumed after a crash"}))
    write_report(root)
    return root


def _read(root, name):
    return (root / name).read_text()


def test_paper_constants_are_fractions():
    assert PAPER["table4"]["mnist"]["sgd"]["baseline"] == {"ebar": 0.00515, "agreement": 0.9831}
    assert PAPER["table4"]["mnist"]["adam"]["lr-tweak"] == {"ebar": 0.0174, "agreement": 0.954}
    assert PAPER["table4"]["imagenet"]["sgd"]["unadjusted"]["ebar"] == 0.0788
    assert PAPER["table5"]["mnist"]["adam"]["qhat"] == {
        "train_acc": 0.9763, "train_loss": 0.1254, "val_acc": 0.9758, "val_loss": 0.1245}
    assert PAPER["table5"]["imagenet"]["sgd"]["ste"]["val_loss"] is None  # cut off in the text


@pytest.mark.parametrize(("ebar", "text"), [
    (0.00515, "0.515%"), (0.005, "0.500%"), (0.0252, "2.52%"), (1.0, "100%"), (0.0, "0%"),
    (float("nan"), "nan%"),
])
def test_ebar_percent_keeps_three_significant_digits(ebar, text):
    assert ebar_percent(ebar) == text


def test_summary_json_has_exactly_the_stable_keys(built):
    got = json.loads(_read(built, "summary.json"))
    expected = {opt: {exp: {"ebar": e, "agreement": a, "val_acc": list(VAL_ACC)}
                      for (o, exp), (e, a) in EBARS.items() if o == opt and exp != "m-only"}
                for opt in ("sgd", "adam")}
    assert got == expected
    assert summary(load_runs(built)) == expected


def test_tables_print_ours_next_to_the_papers(built):
    table3, table4, table5 = (_read(built, f"tables/table{i}.md") for i in (3, 4, 5))
    assert "0.421%" in table3 and "0.515%" in table3 and "re-initialized according to M" in table3
    for ours, paper in (("98.76%", "98.31%"), ("2.22%", "2.81%"), ("94.00%", "96.53%")):
        assert ours in table4 and paper in table4
    assert "5.42%" in table4  # the ImageNet column, for scale
    assert "97.12%" in table5 and "97.05%" in table5 and "holds (Δ val acc = +0.23 pts)" in table5
    csv_lines = _read(built, "tables/table4.csv").splitlines()
    assert csv_lines[0].startswith("experiment,ebar_ours,ebar_paper_mnist,ebar_paper_imagenet,")
    assert csv_lines[1].startswith("baseline (S),0.00421,0.00515,0.0542,0.9876,0.9831,")


def test_ablation_and_sweep_tables(built):
    ablation = _read(built, "tables/ablation.md")
    assert "m-only (S)" in ablation and "alpha-only" not in ablation.split("|---")[1]
    assert "2.92" in ablation  # 0.0123 / 0.00421
    assert "(A)" not in ablation  # no Adam ablation run: no Adam rows
    sweep = _read(built, "tables/lr_sweep.csv").splitlines()
    assert sweep[0] == ("optimizer,lr_factor,lr,ebar_ste,ebar_lr_tweak,ratio,agreement_ste,"
                        "agreement_lr_tweak")
    assert [line.split(",")[1] for line in sweep[1:]] == ["0.25", "1.0", "4.0"]
    assert "| 0.91 |" in _read(built, "tables/lr_sweep.md")  # STE / lr-tweak = 1 / 1.1


@pytest.mark.parametrize(("ebars", "verdicts"), [
    (EBARS, ["holds", "holds"]),
    ({**EBARS, ("sgd", "lr-tweak"): (0.001, 0.99), ("sgd", "unadjusted"): (0.008, 0.97)}, ["fails", "fails"]),
])
def test_points_a_and_b(tmp_path, ebars, verdicts):
    root = _results(tmp_path / "run", ebars=ebars, sweep={}, files=False)
    report = write_report(root).read_text()
    checks = point_checks(json.loads(_read(root, "summary.json")))
    assert [c.verdict for c in checks] == verdicts
    assert "**Point A** " in report and f"**{verdicts[0]}**" in report
    assert f"| Point B | unadjusted Ē / baseline Ē | {checks[1].ours:.2f} | 4.89 | ≥ 3 | {verdicts[1]} |" in \
        _read(root, "tables/table3_checks.md")
    assert not (root / "tables" / "lr_sweep.md").exists()


def test_point_checks_without_the_runs_say_not_run():
    checks = point_checks({"sgd": {"baseline": {"ebar": 0.01, "agreement": 0.9, "val_acc": [0.9, 0.9]}}})
    assert [(c.holds, c.verdict) for c in checks] == [(None, "not run"), (None, "not run")]
    assert checks[0].paper == pytest.approx(0.515 / 0.572)


def test_table5_fails_when_val_acc_differs_by_a_point(tmp_path):
    root = _results(tmp_path / "run", ebars={("sgd", "baseline"): (0.004, 0.98)}, sweep={},
                    val_acc=(0.97, 0.96), files=False)
    write_report(root)
    assert "fails (Δ val acc = +1.00 pts)" in _read(root, "tables/table5.md")
    assert not (root / "tables" / "ablation.md").exists()
    assert not (root / "figures").exists()  # no metrics.csv or weights.npz: nothing to draw


def test_figures_are_pngs_and_the_report_links_them(built):
    names = ["figure3_weights.png", "ebar_curves.png", "agreement_curves.png", "lr_sweep.png"]
    for name in names:
        assert (built / "figures" / name).read_bytes().startswith(PNG_MAGIC)
        assert f"](figures/{name})" in _read(built, "report.md")


def test_report_shows_config_points_tables_and_notes(built):
    report = _read(built, "report.md")
    for text in ("| `dataset` | mnist |", "| `bits` | 2 |", "## Points A and B (SGD)", "Table 3:",
                 "Table 4:", "Table 5:", "Ablation:", "Learning-rate sweep:", "- `adam-baseline`: resumed after a crash",
                 "(tables/table4.csv)"):
        assert text in report


def test_rebuild_is_idempotent_and_embeds_figure1_when_present(tmp_path, built):
    root = tmp_path / "run"
    shutil.copytree(built, root)
    (root / "figures" / "figure1_estimators.png").write_bytes(PNG_MAGIC)  # drawn by `stequiv figure1`
    write_report(root)
    texts = ["summary.json", *(f"tables/{p.name}" for p in (root / "tables").iterdir())]
    assert len(texts) == 13 and all(_read(root, p) == _read(built, p) for p in texts)
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    old, new = ([line for line in _read(r, "report.md").splitlines() if line] for r in (built, root))
    added = [line for line in new if line not in old]
    assert "](figures/figure1_estimators.png)" not in "".join(old)
    assert added and all("Figure 1" in line for line in added)
    assert [line for line in new if line in old] == old


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no runs/<run_id>/final.json under .*empty"):
        write_report(tmp_path / "empty")


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", r"final\.json is not valid JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    (json.dumps({"run_id": "x", "optimizer": "sgd", "experiment": "baseline"}), r"missing key\(s\) \['lr', 'remap'"),
    (json.dumps({"run_id": "x", "optimizer": "sgd", "experiment": "baseline", "lr": 0.1, "remap": True,
                 "ebar": "0.5%", "agreement": 0.9, "nets": _nets()}), r"expected numbers, got \{'ebar': '0.5%'\}"),
])
def test_corrupt_final_json_is_named(tmp_path, content, match):
    root = _results(tmp_path / "run", ebars={("sgd", "baseline"): (0.004, 0.98)}, sweep={})
    (root / "runs" / "sgd-baseline" / "final.json").write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        load_runs(root)
    assert "sgd-baseline" in str(info.value)


def test_bad_choices_and_duplicates_are_errors(tmp_path):
    root = _results(tmp_path / "run", ebars={("sgd", "baseline"): (0.004, 0.98)}, sweep={})
    _write_run(root, "sgd-baseline-again", "sgd", "baseline", 0.005, 0.97)
    with pytest.raises(ValueError, match=r"are both \('sgd', 'baseline'\)"):
        load_runs(root)
    _write_run(root, "lion", "lion", "baseline", 0.005, 0.97)
    with pytest.raises(ValueError, match=r"`optimizer` is 'lion'; expected one of \['sgd', 'adam'\]"):
        load_runs(root)
