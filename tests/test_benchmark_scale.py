"""Smoke and arithmetic tests of the at-scale benchmark (tiny sizes, no timed assertions)."""
import json
import sys

import numpy as np
import pytest
import torch

from deepsphere import benchmark_scale as bs
from deepsphere.nn import spmm


def test_spmm_bytes_counts_matrix_and_dense_blocks():
    # nnz (value + index) + (n+1) row pointers + X read once + output written once
    assert bs.spmm_bytes(nnz=10, n=4, columns=3) == 10 * 8 + 5 * 4 + 2 * 4 * 3 * 4
    assert bs.spmm_bytes(10, 4, 3, read_output=True) - bs.spmm_bytes(10, 4, 3) == 4 * 3 * 4
    assert bs.spmm_bytes(10, 4, 3, value_bytes=8, index_bytes=8) == 10 * 16 + 5 * 8 + 2 * 4 * 3 * 8


def test_fit_exponent_recovers_power_law():
    n = np.array([1e3, 1e4, 1e5, 1e6])
    assert bs.fit_exponent(n, 3e-6 * n ** 1.0) == pytest.approx(1.0)
    assert bs.fit_exponent(n, 2.0 * n ** 1.5) == pytest.approx(1.5)


def test_batch_for_halves_until_the_block_fits():
    assert bs.batch_for(n=1000, batch=8, channels=16, max_mb=1.0) == 8   # 0.49 MB
    assert bs.batch_for(n=2**20, batch=8, channels=16, max_mb=128) == 2   # 64 MB per sample
    assert bs.batch_for(n=2**24, batch=8, channels=16, max_mb=1) == 1     # never below one


def test_naive_variant_matches_the_layer():
    """set_variant('naive') swaps in the autograd recursion: same outputs and gradients."""
    from deepsphere.models import SphericalUNet
    from deepsphere.sampling import HEALPix

    torch.manual_seed(0)
    ref = SphericalUNet(HEALPix(4), 1, 3, channels=[4, 8], K=3)
    other = SphericalUNet(HEALPix(4), 1, 3, channels=[4, 8], K=3)
    other.load_state_dict(ref.state_dict())
    assert bs.set_variant(other, "naive") == 3
    bs.set_variant(ref, "store")
    x = torch.randn(2, 192, 1)
    y0, y1 = ref(x), other(x)
    torch.testing.assert_close(y0, y1, rtol=1e-4, atol=1e-5)
    y0.square().sum().backward()
    y1.square().sum().backward()
    for p0, p1 in zip(ref.parameters(), other.parameters()):
        torch.testing.assert_close(p0.grad, p1.grad, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="variant must be one of"):
        bs.set_variant(ref, "fast")


def test_command_smoke(tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert bs.main(["all", "--threads", "1", "--triad-elements", "10000", "--spmm-nside", "4",
                    "--columns", "4", "--layer-cases", "4:2", "--nside", "2", "4", "--batch", "2",
                    "--repeats", "1",
                    "--unet-nside", "4", "--unet-channels", "4", "8", "--K", "3",
                    "--variant", "naive", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "triad" in text and "fit time/sample" in text and "SphericalUNet" in text
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows["unet"]] == ["naive"]
    assert all(r["peak_growth_MB"] >= 0 for r in rows["unet"])
    assert {r["beta"] for r in rows["spmm"]} == {0, 1}
    if spmm.native_available():  # both products timed, on the same blocks
        assert {r["product"] for r in rows["spmm"]} == {"torch", "kernel"}
        assert [(r["nside"], r["batch"]) for r in rows["layer"]] == [(4, 2)]
    assert [r["nside"] for r in rows["scaling"]] == [2, 4]


def test_scaling_lists_a_shared_timing_in_both_series():
    # at 48 vertices x 4 channels both batches fit; a tiny --max-mb makes both batch 1
    rows = bs.scaling_rows([2], [4, 2], K=2, channels=4, repeats=1, max_mb=1e-6)
    assert [(r["batch_asked"], r["batch"]) for r in rows] == [(4, 1), (2, 1)]
    assert rows[0]["fwd_ms"] == rows[1]["fwd_ms"]
    assert [f["batch"] for f in bs.scaling_fits(rows, 0)] == []  # one nside: nothing to fit


@pytest.mark.skipif(not spmm.native_available(), reason="the compiled kernel does not build here")
def test_spmm_and_layer_stop_when_the_kernel_computes_something_else(monkeypatch):
    # a product that is fast because it is wrong must not be timed as the layer's kernel
    right = spmm.sparse_addmm_

    def wrong(out, L, X, *, alpha=1.0, beta=1.0):
        off = 1.0 if spmm.backend() == "torch" else 1.01  # only the kernel path is off
        return right(out, L, X, alpha=off * alpha, beta=beta)

    Lt = bs.conv_graph(2)
    assert len(bs.spmm_rows(Lt, [4], [1], repeats=1, triad={})) == 4  # the right one passes
    monkeypatch.setattr(spmm, "sparse_addmm_", wrong)
    monkeypatch.setattr(sys.modules["deepsphere.nn.cheb_conv"], "sparse_addmm_", wrong)
    with pytest.raises(RuntimeError, match="differs from torch's"):
        bs.spmm_rows(Lt, [4], [1], repeats=1, triad={})
    with pytest.raises(RuntimeError, match="differs from ChebConv with torch's"):
        bs.layer_rows([(2, 2)], K=3, channels=4, repeats=1)
