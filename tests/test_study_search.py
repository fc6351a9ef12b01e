"""The study's adaptive η search (experiments/study/_search.py): bisection finds the breakdown η*
of a series that breaks once from ⌈log₂(n − 1)⌉ + 2 trained cells, never trains a cell twice, and
ends on any answers (a series that breaks more than once included)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stequiv.experiments.study._search import bracket, cells_to_train, implied_cells, series_of
from stequiv.experiments.study._study_config import Cell


def _search(n: int, truth: list[bool]) -> tuple[dict[int, bool], int, int]:
    """Run the search against ``truth`` (index → Point A holds): trained answers and the bracket."""
    trained: dict[int, bool] = {}
    while True:
        state = bracket(n, trained)
        if state.resolved:
            return trained, state.lo, state.hi
        for k in state.next:
            assert k not in trained, "a cell trained twice"
            trained[k] = truth[k]


@given(n=st.integers(1, 40), data=st.data())
def test_bisection_finds_the_breakdown_of_a_series_that_breaks_once(n, data):
    k_star = data.draw(st.integers(0, n))  # holds below k_star, fails from it on (n: never fails)
    truth = [k < k_star for k in range(n)]
    trained, lo, hi = _search(n, truth)
    assert hi == k_star and lo == k_star - 1
    assert len(trained) <= (math.ceil(math.log2(n - 1)) if n > 2 else 0) + 2
    # the cells left out are implied, and their implied answer is the truth
    state = bracket(n, trained)
    assert set(state.implied) == set(range(n)) - set(trained)
    assert all((k < state.hi) == truth[k] for k in state.implied)


@given(truth=st.lists(st.booleans(), min_size=1, max_size=40))
def test_search_ends_on_any_answers_and_its_failure_is_a_trained_failure(truth):
    n = len(truth)
    trained, _, hi = _search(n, truth)
    assert len(trained) <= n
    if hi < n:  # the η* it reports is a trained cell where Point A failed
        assert trained[hi] is False


def test_bracket_refuses_indices_off_the_ladder():
    with pytest.raises(ValueError, match=r"trained indices \[5\] are outside the ladder 0…3"):
        bracket(4, {5: True})
    with pytest.raises(ValueError, match="at least one η"):
        bracket(0, {})


def _cell(opt: str, lr: float, bits: int = 2) -> Cell:
    return Cell("convnet", "mnist-5k", {"name": "htge", "sharpness": 5.5}, bits, opt, lr)


def test_cells_to_train_walks_every_series_at_once():
    ladder = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    cells = [_cell(o, lr, b) for o in ("sgd", "adam") for b in (2, 8) for lr in ladder]
    assert len(series_of(cells)) == 4
    truth = {c.cell_id: c.lr < (0.5 if c.optimizer == "sgd" else 5e-3) for c in cells}
    rows: dict[str, dict] = {}
    rounds = 0
    result = rows.get

    while todo := cells_to_train(cells, lambda c: result(c.cell_id), lambda r: r["holds"]):
        rounds += 1
        assert len({c.cell_id for c in todo}) == len(todo)
        rows.update({c.cell_id: {"holds": truth[c.cell_id]} for c in todo})
    assert rounds == 3 and len(rows) == 4 * 4  # ends, then two halvings; one cell per series implied
    implied = implied_cells(cells, lambda c: rows.get(c.cell_id), lambda r: r["holds"])
    assert len(implied) == 4 and all(truth[c.cell_id] == ok for c, ok in implied)


def test_a_bisected_study_finds_the_dense_grids_breakdown_from_fewer_cells(tmp_path):
    """Point A breaks once along this ladder (measured: holds to η = 0.01, fails from 0.03): the
    bisection trains 5 of the 8 cells, finds the same η*, and its rows are the grid's rows."""
    import csv
    import io

    from stequiv.experiments.study import StudyConfig, run_study

    base = {"datasets": ["mnist-5k"], "steps": 6, "batch_size": 8, "eval_samples": 40,
            "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]}], "optimizers": ["sgd"],
            "lrs": {"sgd": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}, "nets_per_batch": 3}
    grid = run_study(StudyConfig.from_dict(base), tmp_path / "grid", progress=False)
    bisect = run_study(StudyConfig.from_dict({**base, "search": "bisect"}), tmp_path / "bisect",
                       progress=False)
    assert (grid["cells"], grid["implied"]) == (8, 0)
    assert (bisect["cells"], bisect["of"], bisect["implied"]) == (5, 8, 3)
    [g], [b] = grid["breakdowns"], bisect["breakdowns"]
    assert g["eta_star"] == b["eta_star"] is not None and b["held_below_eta_star"]
    rows = {s: {r["lr"]: r for r in csv.DictReader(io.StringIO((tmp_path / s / "study.csv").read_text()))}
            for s in ("grid", "bisect")}
    for lr, row in rows["bisect"].items():
        assert {k: v for k, v in row.items() if k != "seconds"} == \
               {k: v for k, v in rows["grid"][lr].items() if k != "seconds"}
    report = (tmp_path / "bisect" / "report.md").read_text()
    assert "Adaptive η search" in report and "3 cells of the grid were left out as implied" in report


def test_coefficient_correlation_ranks_a_censored_breakdown_above_every_eta():
    from stequiv.experiments.study._study_report import coefficient_correlation

    def series(opt, coefficient, eta_star):
        return {"optimizer": opt, "coefficient": coefficient, "eta_star": eta_star}

    # η* ∝ 1/coefficient, the smallest coefficient censored (held at every η): rank correlation −1
    table = [series("sgd", c, None if c == 0.1 else 1e-2 / c) for c in (0.1, 1.0, 10.0, 100.0)]
    table += [series("adam", 0.0, 1e-3), series("adam", 1.0, 1e-3)]  # too few series with c > 0
    assert coefficient_correlation(table) == {"sgd": {"series": 4, "spearman": -1.0}}
