"""``deepsphere benchmark``: the comparison with torch_geometric is checked, and its scaled
figures stay what one full-batch run would give (tiny sizes, no timed assertions)."""
import argparse

import pytest
import torch

from deepsphere import benchmark

pytest.importorskip("torch_geometric")


def _args(**kw):
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    args = parser.parse_args(["--repeats", "1", "--max-seconds", "5"])
    for key, value in kw.items():
        setattr(args, key, value)
    return args


def _rows(args, case=(2, 3, 2, 2)):
    return benchmark.conv_rows([case], args, torch.device("cpu"), torch.float64)


def test_pyg_runs_on_the_same_operator_and_agrees():
    row = _rows(_args())[0]
    assert row["rel_err"] < 1e-12
    assert "pyg_batch_timed" not in row


def test_a_pyg_disagreement_stops_the_benchmark(monkeypatch):
    # torch_geometric told another lambda_max computes another function: no ratio may be
    # printed for it (before, the row was timed and printed with a large rel.err)
    build = benchmark._conv_graph

    def wrong_lmax(nside, k):
        W, lmax, Lt = build(nside, k)
        return W, 1.5 * lmax, Lt

    monkeypatch.setattr(benchmark, "_conv_graph", wrong_lmax)
    with pytest.raises(RuntimeError, match="torch_geometric's ChebConv disagrees"):
        _rows(_args())


def test_pyg_saved_memory_scaled_from_a_smaller_batch_matches_the_full_batch():
    full = _rows(_args())[0]
    W = benchmark._conv_graph(2, 8)[0]
    # room for batch 1 only: timed at B=1 and scaled by 2
    half = _rows(_args(max_gb=1.5 * benchmark._pyg_gb(W, 1, 2, 8)))[0]
    assert half["pyg_batch_timed"] == 1
    # linear in the batch up to the (unscaled) weights; before, the whole batch's input
    # storage was counted and then scaled as well
    weights_mb = (3 * 2 * 2 + 2) * 8 / 2**20
    assert half["pyg_saved_MB"] == pytest.approx(full["pyg_saved_MB"], abs=2 * weights_mb)
