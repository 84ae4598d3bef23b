"""The CPU sparse kernel of the Chebyshev recursion against a dense product in float64."""
import multiprocessing as mp
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from deepsphere.nn import ChebConv, spmm
from deepsphere.nn.operator import as_csr_operator
from deepsphere.nn.spmm import sparse_addmm_

needs_kernel = pytest.mark.skipif(not spmm.native_available(),
                                  reason="no C compiler: the kernel cannot be built here")


def _matrix(n, m, density=0.15, seed=0):
    A = sp.random(n, m, density=density, random_state=seed, format="lil")
    A[1, :] = 0  # an empty row
    A[n - 1, :] = 0  # and the last one
    return A.tocsr()


def _reference(A, X, out, alpha, beta):
    ref = alpha * (A.toarray() @ X.double().numpy())
    if beta != 0:
        ref += beta * out.double().numpy()
    return torch.from_numpy(ref)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("columns", [1, 7, 16, 17, 64, 100, 130])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.0, 1.0), (-2.0, 1.0), (0.5, -1.5)])
def test_kernel_matches_dense_product(monkeypatch, dtype, columns, alpha, beta):
    monkeypatch.setenv("DEEPSPHERE_SPMM", "native")  # an error rather than torch's fallback
    A = _matrix(40, 33)
    L = torch.sparse_csr_tensor(  # rectangular: the kernel does not need a square matrix
        torch.from_numpy(A.indptr.astype(np.int32)), torch.from_numpy(A.indices.astype(np.int32)),
        torch.from_numpy(A.data).to(dtype), size=A.shape)
    X = torch.randn(33, columns, dtype=dtype)
    out = torch.randn(40, columns, dtype=dtype)
    if beta == 0:
        out[0, 0] = float("nan")  # beta = 0 ignores the old contents, as BLAS does
    ref = _reference(A, X, out, alpha, beta)
    got = sparse_addmm_(out, L, X, alpha=alpha, beta=beta)
    assert got is out
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)


@needs_kernel
@pytest.mark.parametrize("openmp", [True, False])
def test_result_does_not_depend_on_thread_count(monkeypatch, openmp):
    monkeypatch.setenv("DEEPSPHERE_SPMM", "native")
    monkeypatch.setattr(spmm, "_USE_OPENMP", openmp)  # torch's OpenMP pool, or Python threads
    A = sp.random(3000, 3000, density=0.003, random_state=1, format="csr")
    L = as_csr_operator(A + A.T, dtype=torch.float32)
    X = torch.randn(3000, 512)  # nnz * 512 > 2**22: the rows are split between threads
    n_threads = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(sparse_addmm_(torch.empty(3000, 512), L, X, beta=0))
    finally:
        torch.set_num_threads(n_threads)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    torch.testing.assert_close(outs[0].double(), _reference(A + A.T, X, outs[0], 1.0, 0.0),
                               rtol=1e-5, atol=1e-5)


def test_torch_backend_is_torchs_product(monkeypatch):
    monkeypatch.setenv("DEEPSPHERE_SPMM", "torch")
    L = as_csr_operator(_matrix(30, 30), dtype=torch.float32)
    X = torch.randn(30, 20)
    out = torch.randn(30, 20)
    expected = out.clone().addmm_(L, X, alpha=2.0)
    assert torch.equal(sparse_addmm_(out, L, X, alpha=2.0), expected)


def test_unusable_inputs_fall_back_to_torch_or_say_why(monkeypatch):
    A = _matrix(30, 30)
    L = as_csr_operator(A, dtype=torch.float32)
    X = torch.randn(20, 30).t()  # not contiguous
    out = torch.zeros(30, 20)
    monkeypatch.setenv("DEEPSPHERE_SPMM", "auto")
    torch.testing.assert_close(sparse_addmm_(out, L, X, beta=0).double(),
                               _reference(A, X, out, 1.0, 0.0), rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("DEEPSPHERE_SPMM", "native")
    with pytest.raises(RuntimeError, match="DEEPSPHERE_SPMM=native.*cannot run"):
        sparse_addmm_(out, L, X, beta=0)
    with pytest.raises(RuntimeError, match="cannot run"):  # out is X: it would read its output
        sparse_addmm_(out, L, out, beta=0)
    monkeypatch.setenv("DEEPSPHERE_SPMM", "fast")
    with pytest.raises(ValueError, match="DEEPSPHERE_SPMM='fast' is not a backend"):
        sparse_addmm_(out, L, X)


def test_missing_compiler_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(spmm, "_state", {})
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("DEEPSPHERE_SPMM", "auto")
    A = _matrix(30, 30)
    L = as_csr_operator(A, dtype=torch.float32)
    X = torch.randn(30, 8)
    with pytest.warns(RuntimeWarning, match="sparse kernel is unavailable.*no C compiler"):
        out = sparse_addmm_(torch.empty(30, 8), L, X, beta=0)
    torch.testing.assert_close(out.double(), _reference(A, X, out, 1.0, 0.0), rtol=1e-5,
                               atol=1e-5)
    assert not spmm.native_available()


@needs_kernel
def test_kernel_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(spmm, "_state", {})
    monkeypatch.setenv("DEEPSPHERE_CACHE_DIR", str(tmp_path))
    path, _ = spmm.kernel_path()
    assert path.parent == tmp_path / "kernels" and not path.exists()
    assert spmm.native_available() and path.exists()
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(spmm, "_state", {})
    assert spmm.native_available() and path.stat().st_mtime_ns == stamp  # loaded, not rebuilt


def _child_product(queue):
    # numpy-made blocks: torch's own OpenMP pool may not survive fork() (a libgomp limit)
    torch.set_num_threads(2)
    A = sp.random(2000, 2000, density=0.005, random_state=2, format="csr")
    X = torch.from_numpy(np.ones((2000, 512), dtype=np.float32))
    out = torch.from_numpy(np.empty((2000, 512), dtype=np.float32))
    sparse_addmm_(out, as_csr_operator(A, dtype=torch.float32), X, beta=0)
    err = float(np.abs(out[:, 0].double().numpy() - A.sum(axis=1).A1).max())
    queue.put((err, spmm._state["pool"][0] == os.getpid()))


@needs_kernel
def test_forked_child_gets_its_own_threads(monkeypatch):
    # without OpenMP the shares run on Python threads, which do not survive fork(): a child
    # makes its own pool (with OpenMP, fork-safety is torch's: its DataLoader workers run
    # one thread)
    monkeypatch.setattr(spmm, "_USE_OPENMP", False)
    A = sp.random(2000, 2000, density=0.005, random_state=2, format="csr")
    n_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        L = as_csr_operator(A, dtype=torch.float32)
        sparse_addmm_(torch.empty(2000, 512), L, torch.ones(2000, 512), beta=0)
    finally:
        torch.set_num_threads(n_threads)
    assert spmm._state["pool"][1] == 1  # the parent's pool (the caller is the other thread)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_child_product, args=(queue,))
    p.start()
    p.join(60)
    if p.exitcode is None:
        p.kill()
    assert p.exitcode == 0, "the child hung or failed"
    err, own_pool = queue.get(timeout=5)
    assert err < 1e-4 and own_pool


@pytest.mark.parametrize("fin,fout", [(3, 16), (16, 4)])
def test_cheb_conv_same_with_either_product(monkeypatch, fin, fout):
    """Both recursions (on the input and Clenshaw's) and both backwards, kernel vs torch."""
    A = sp.random(200, 200, density=0.04, random_state=3, format="csr")
    A = (A + A.T) / 4
    torch.manual_seed(0)
    conv = ChebConv(fin, fout, K=4).double()  # float64: the two sum in different orders
    x = torch.randn(5, 200, fin, dtype=torch.float64)
    results = []
    for backend in ("torch", "auto"):
        monkeypatch.setenv("DEEPSPHERE_SPMM", backend)
        xi = x.clone().requires_grad_()
        conv.zero_grad()
        y = conv(xi, A)
        (y * torch.linspace(-1, 1, fout, dtype=torch.float64)).sum().backward()
        results.append((y.detach(), xi.grad, conv.weight.grad.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize("offset,columns", [(0, 48), (1, 48), (0, 40)])
def test_streaming_stores_of_a_large_output(monkeypatch, offset, columns):
    """beta = 0 outputs above a size are written with streaming stores, which need 64-byte
    aligned rows; an output starting one float off, or rows of 40 floats (160 bytes: every
    other row starts mid-line), fall back to plain stores."""
    monkeypatch.setenv("DEEPSPHERE_SPMM", "native")
    monkeypatch.setattr(spmm, "_STREAM_BYTES", 0)
    A = _matrix(64, 64)
    L = as_csr_operator(A, dtype=torch.float32)
    X = torch.randn(64, columns)
    flat = torch.full((64 * columns + 16,), float("nan"))
    out = flat[offset:offset + 64 * columns].view(64, columns)
    assert (out.data_ptr() % 64 == 0) == (offset == 0)
    sparse_addmm_(out, L, X, beta=0)
    torch.testing.assert_close(out.double(), _reference(A, X, out, 1.0, 0.0), rtol=1e-5,
                               atol=1e-5)


def test_wrong_shapes_and_dtypes_are_named():
    L = as_csr_operator(_matrix(10, 10), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"L is 10 x 10 and X \(9, 3\).*got out \(10, 3\)"):
        sparse_addmm_(torch.zeros(10, 3), L, torch.zeros(9, 3))
    with pytest.raises(ValueError, match=r"out must be \(10, 3\).*got out \(8, 3\)"):
        sparse_addmm_(torch.zeros(8, 3), L, torch.zeros(10, 3))
    with pytest.raises(ValueError, match="2-d L, X and out"):
        sparse_addmm_(torch.zeros(10, 3), L, torch.zeros(10))
    with pytest.raises(TypeError, match=r"dtype mismatch: out torch.float32.*X torch.float64"):
        sparse_addmm_(torch.zeros(10, 3), L, torch.zeros(10, 3, dtype=torch.float64))
