"""ChebConv against the mathematics (dense eigendecomposition of the rescaled Laplacian) and
against torch_geometric's ChebConv on the same graph; gradients, errors, SparseOperator."""
import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.polynomial import chebyshev as npcheb

from deepsphere import graph, sampling
from deepsphere.nn import ChebConv, SparseOperator, as_csr_operator, cheb_conv

NSIDE = 4  # 192 vertices: dense eigendecompositions stay instant


@pytest.fixture(scope="module")
def sphere():
    """Adjacency W (scipy, zero diagonal), dense normalized Laplacian, its exact lmax and
    the rescaled L~ = 2L/lmax - I (dense and scipy)."""
    g = graph.knn(sampling.HEALPix(NSIDE), k=8)
    W = sp.csr_matrix(g.adjacency)
    d = np.asarray(W.sum(1)).ravel()
    Wd = W.toarray()
    L = np.eye(len(d)) - Wd / np.sqrt(np.outer(d, d))
    lam, U = np.linalg.eigh(L)
    lmax = float(lam[-1])
    Lt = 2 * L / lmax - np.eye(len(d))
    return dict(W=W, L=L, lam=lam, U=U, lmax=lmax, Lt=Lt, Lt_sp=sp.csr_matrix(Lt), n=len(d))


def spectral_filter(s, x, weight, bias):
    """y[b, :, o] = sum_i U g_io(Lambda) U^T x[b, :, i] with
    g_io(lambda) = sum_k W[k, i, o] T_k(2 lambda / lmax - 1), evaluated by numpy."""
    lam_t = 2 * s["lam"] / s["lmax"] - 1
    g = np.moveaxis(npcheb.chebval(lam_t, weight), -1, 0)  # (n, Fin, Fout)
    xh = np.einsum("vn,bvi->bni", s["U"], x)          # graph Fourier transform
    yh = np.einsum("nio,bni->bno", g, xh)              # filter each eigenvalue
    y = np.einsum("vn,bno->bvo", s["U"], yh)
    return y if bias is None else y + bias


def _conv(fin, fout, K, bias=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    conv = ChebConv(fin, fout, K, bias=bias).to(dtype)
    if bias:
        with torch.no_grad():
            conv.bias.normal_()
    return conv


@pytest.mark.parametrize("K", [1, 2, 5])
@pytest.mark.parametrize("fin,fout", [(3, 4), (4, 3)])
def test_equals_dense_spectral_filter(sphere, K, fin, fout):
    conv = _conv(fin, fout, K)
    x = torch.randn(2, sphere["n"], fin, dtype=torch.float64)
    y = conv(x, sphere["Lt_sp"])
    ref = spectral_filter(sphere, x.numpy(), conv.weight.detach().numpy(),
                          conv.bias.detach().numpy())
    np.testing.assert_allclose(y.detach().numpy(), ref, atol=1e-10, rtol=1e-10)


def test_chebyshev_polynomial_order_is_used(sphere):
    # a wrong recursion (e.g. T_k = L T_{k-1}) must fail the spectral comparison
    conv = _conv(2, 2, 4)
    x = torch.randn(1, sphere["n"], 2, dtype=torch.float64)
    w = conv.weight.detach().numpy()
    monomial = sum(np.einsum("vw,bwi,io->bvo", np.linalg.matrix_power(sphere["Lt"], k),
                             x.numpy(), w[k]) for k in range(4))
    y = conv(x, sphere["Lt_sp"]).detach().numpy() - conv.bias.detach().numpy()
    assert np.abs(y - monomial).max() > 1e-3


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_weight_k_multiplies_T_k(sphere, k):
    """With only weight[k] nonzero, y = T_k(L~) x W_k, T_k(L~) = U T_k(Lambda~) U^T."""
    K, fin, fout = 5, 3, 2
    conv = _conv(fin, fout, K, bias=False)
    with torch.no_grad():
        keep = conv.weight[k].clone()
        conv.weight.zero_()
        conv.weight[k] = keep
    x = torch.randn(2, sphere["n"], fin, dtype=torch.float64)
    lam_t = 2 * sphere["lam"] / sphere["lmax"] - 1
    Tk = (sphere["U"] * npcheb.chebval(lam_t, np.eye(K)[k])) @ sphere["U"].T
    ref = np.einsum("vw,bwi,io->bvo", Tk, x.numpy(), keep.numpy())
    np.testing.assert_allclose(conv(x, sphere["Lt_sp"]).detach().numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("K", [1, 2, 5])
def test_equals_torch_geometric(sphere, K):
    """PyG's ChebConv ('sym': L = I - D^-1/2 W D^-1/2 after removing self loops, then
    2L/lambda_max - I; per-graph lambda_max in a batch) on a disjoint union of B graphs."""
    tg = pytest.importorskip("torch_geometric.nn")
    B, fin, fout, n = 3, 4, 5, sphere["n"]
    conv = _conv(fin, fout, K)
    pyg = tg.ChebConv(fin, fout, K, normalization="sym").double()
    with torch.no_grad():
        for k, lin in enumerate(pyg.lins):
            lin.weight.copy_(conv.weight[k].t())     # lins[k].weight is (out, in)
        pyg.bias.copy_(conv.bias)
    W = sphere["W"].tocoo()
    ei = torch.from_numpy(np.vstack([W.row, W.col]).astype(np.int64))
    ew = torch.from_numpy(W.data)
    # self loops in PyG's input are dropped by its get_laplacian: adding some must not matter
    loops = torch.arange(n).repeat(2, 1)
    ei = torch.cat([ei, loops], 1)
    ew = torch.cat([ew, torch.full((n,), 0.7, dtype=torch.float64)])
    E = ei.shape[1]
    ei_b = torch.cat([ei + b * n for b in range(B)], 1)
    batch = torch.arange(B).repeat_interleave(n)
    lmax = torch.full((B,), sphere["lmax"], dtype=torch.float64)
    x = torch.randn(B, n, fin, dtype=torch.float64, requires_grad=True)
    y_pyg = pyg(x.reshape(B * n, fin), ei_b, ew.repeat(B), batch=batch,
                lambda_max=lmax).view(B, n, fout)
    y = conv(x, SparseOperator(sphere["Lt_sp"], dtype=torch.float64))
    torch.testing.assert_close(y, y_pyg, atol=1e-10, rtol=1e-10)
    # and the gradients
    g = torch.randn_like(y)
    gx, gw, gb = torch.autograd.grad(y, (x, conv.weight, conv.bias), g)
    pg = torch.autograd.grad(y_pyg, [x] + [lin.weight for lin in pyg.lins] + [pyg.bias], g)
    torch.testing.assert_close(gx, pg[0])
    torch.testing.assert_close(gw, torch.stack([w.t() for w in pg[1:-1]]))
    torch.testing.assert_close(gb, pg[-1])
    assert E == sphere["W"].nnz + n


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("fin,fout,store", [(2, 3, False), (2, 3, True), (3, 2, None)])
def test_gradcheck(K, fin, fout, store):
    rng = np.random.default_rng(1)
    n = 12
    A = sp.random(n, n, density=0.3, random_state=rng)
    A = A + A.T
    A = A / np.abs(np.linalg.eigvalsh(A.toarray())).max()
    L = SparseOperator(A, dtype=torch.float64)
    torch.manual_seed(0)
    x = torch.randn(2, n, fin, dtype=torch.float64, requires_grad=True)
    w = torch.randn(K, fin, fout, dtype=torch.float64, requires_grad=True)
    b = torch.randn(fout, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: cheb_conv(x, L, w, b, store), (x, w, b))
    # each input alone (exercises the needs_input_grad branches)
    assert torch.autograd.gradcheck(lambda x: cheb_conv(x, L, w.detach(), None, store), (x,))
    assert torch.autograd.gradcheck(lambda w: cheb_conv(x.detach(), L, w, b.detach(), store),
                                    (w,))


def test_input_forms_agree(sphere):
    conv = _conv(3, 3, 4)
    x = torch.randn(2, sphere["n"], 3, dtype=torch.float64)
    ref = conv(x, sphere["Lt_sp"])
    csr64 = torch.from_numpy(sphere["Lt"]).to_sparse_csr()
    coo = torch.from_numpy(sphere["Lt"]).to_sparse_coo()
    for L in (csr64, coo, SparseOperator(coo), sphere["Lt_sp"].tocoo()):
        torch.testing.assert_close(conv(x, L), ref)
    # 2-d input: one signal without batch axis
    torch.testing.assert_close(conv(x[1], sphere["Lt_sp"]), ref[1])
    # a non-contiguous input (vertex-major storage) gives the same
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)
    torch.testing.assert_close(conv(xt, sphere["Lt_sp"]), ref)


def test_float32_matches_float64(sphere):
    conv = _conv(4, 4, 5)
    x = torch.randn(2, sphere["n"], 4, dtype=torch.float64)
    ref = conv(x, sphere["Lt_sp"])
    y = conv.float()(x.float(), SparseOperator(sphere["Lt_sp"]))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, atol=1e-4, rtol=1e-4)


# ---- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("K", [0, -1, 2.0, True])
def test_bad_K(K):
    with pytest.raises(ValueError, match="K must be an int >= 1"):
        ChebConv(2, 3, K)


def test_bad_channels_argument():
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        ChebConv(0, 3, 2)


@pytest.mark.parametrize("shape", [(192,), (1, 2, 192, 3)])
def test_bad_ndim(sphere, shape):
    with pytest.raises(ValueError, match=r"\[batch, vertices, channels\].*got a \d-d tensor"):
        ChebConv(3, 2, 2)(torch.randn(shape), sphere["Lt_sp"])


def test_channel_mismatch_names_expected_and_got(sphere):
    with pytest.raises(ValueError, match=r"in_channels=3.*got 4"):
        ChebConv(3, 2, 2)(torch.randn(1, sphere["n"], 4), sphere["Lt_sp"])


def test_vertex_mismatch_names_the_graphs(sphere):
    x = torch.randn(1, 12 * 8**2, 3)  # an nside=8 map on the nside=4 operator
    with pytest.raises(ValueError, match=r"768 vertices.*nside=8.*192 x 192.*nside=4"):
        ChebConv(3, 2, 2)(x, sphere["Lt_sp"])


def test_dtype_mismatch_says_to(sphere):
    L = SparseOperator(sphere["Lt_sp"], dtype=torch.float64)
    with pytest.raises(TypeError, match=r"dtype mismatch.*float32.*float64.*\.to\("):
        ChebConv(3, 2, 2)(torch.randn(1, sphere["n"], 3), L)
    with pytest.raises(TypeError, match=r"x is torch.float64.*weight is torch.float32.*\.to\("):
        ChebConv(3, 2, 2)(torch.randn(1, sphere["n"], 3, dtype=torch.float64), L)


def test_device_mismatch_says_to(sphere):
    L = as_csr_operator(sphere["Lt_sp"], dtype=torch.float32).to("meta")
    with pytest.raises(TypeError, match=r"device mismatch.*\.to\("):
        ChebConv(3, 2, 2)(torch.randn(1, sphere["n"], 3), L)


def test_integer_input(sphere):
    with pytest.raises(TypeError, match="floating-point"):
        ChebConv(3, 2, 2)(torch.ones(1, sphere["n"], 3, dtype=torch.int64), sphere["Lt_sp"])


def test_operator_requiring_grad(sphere):
    L = torch.from_numpy(sphere["Lt"]).float().to_sparse_csr().requires_grad_()
    with pytest.raises(ValueError, match=r"requires grad.*detach"):
        ChebConv(3, 2, 2)(torch.randn(1, sphere["n"], 3), L)


def test_bad_operators(sphere):
    conv = ChebConv(3, 2, 2)
    x = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match="square"):
        conv(x, sp.random(4, 5, density=0.5))
    with pytest.raises(ValueError, match="square"):
        conv(x, torch.rand(4, 5).to_sparse_csr())
    with pytest.raises(TypeError, match="must be sparse"):
        conv(x, torch.rand(4, 4))
    with pytest.raises(TypeError, match="scipy.sparse matrix"):
        conv(x, np.eye(4))
    with pytest.raises(ValueError, match="K=2 > 1 needs"):
        conv(x, None)
    # K=1 needs no operator
    assert ChebConv(3, 2, 1)(x, None).shape == (1, 4, 2)


def test_asymmetric_operator_rejected():
    A = sp.csr_matrix(np.triu(np.ones((4, 4))))
    with pytest.raises(ValueError, match="not symmetric"):
        SparseOperator(A)
    SparseOperator(A, check_symmetric=False)


# ---- module behaviour -------------------------------------------------------------------
def test_parameters_repr_reset():
    conv = ChebConv(3, 5, 4)
    assert conv.weight.shape == (4, 3, 5) and conv.bias.shape == (5,)
    assert "3, 5, K=4, bias=True" in repr(conv)
    assert ChebConv(3, 5, 4, bias=False).bias is None
    a = (6 / 8) ** 0.5
    assert conv.weight.abs().max() <= a and conv.weight.std() > a / 4
    assert torch.all(conv.bias == 0)


def test_sparse_operator_buffers(sphere):
    op = SparseOperator(sphere["Lt_sp"])
    assert op.dtype == torch.float32 and op.crow_indices.dtype == torch.int32
    assert op.shape == (sphere["n"], sphere["n"]) and op.nnz == sphere["Lt_sp"].nnz
    assert "nside=4" in repr(op)
    op64 = copy.deepcopy(op).to(torch.float64)
    assert op64.dtype == torch.float64 and op.dtype == torch.float32
    np.testing.assert_allclose(op64.csr().to_dense().numpy(), sphere["Lt"], atol=1e-6)
    np.testing.assert_allclose(op64.to_scipy().toarray(), sphere["Lt"], atol=1e-6)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.L = SparseOperator(sphere["Lt_sp"])
            self.conv = ChebConv(2, 2, 3)

        def forward(self, x):
            return self.conv(x, self.L)

    net = Net()
    assert set(net.state_dict()) == {"conv.weight", "conv.bias"}
    clone = copy.deepcopy(net).double()
    x = torch.randn(1, sphere["n"], 2, dtype=torch.float64)
    torch.testing.assert_close(clone(x), net(x.float()).double(), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(sphere, dtype):
    conv = _conv(4, 3, 5, dtype=dtype)
    L = SparseOperator(sphere["Lt_sp"], dtype=dtype)
    x = torch.randn(2, sphere["n"], 4, dtype=dtype, requires_grad=True)
    y = conv(x, L)
    y.sum().backward()
    gx, gw = x.grad.clone(), conv.weight.grad.clone()
    conv_c, L_c = copy.deepcopy(conv).cuda(), copy.deepcopy(L).cuda()
    xc = x.detach().cuda().requires_grad_()
    yc = conv_c(xc, L_c)
    yc.sum().backward()
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(yc.cpu(), y, **tol)
    torch.testing.assert_close(xc.grad.cpu(), gx, **tol)
    torch.testing.assert_close(conv_c.weight.grad.cpu(), gw, **tol)


def _dense_reference(x, Lt, weight, bias):
    """sum_k T_k(L~) x W_k + b with a dense L~, differentiable by plain autograd."""
    T = [x, torch.einsum("vw,bwi->bvi", Lt, x)]
    for _ in range(2, weight.shape[0]):
        T.append(2 * torch.einsum("vw,bwi->bvi", Lt, T[-1]) - T[-2])
    y = sum(torch.einsum("bvi,io->bvo", T[k], weight[k]) for k in range(weight.shape[0]))
    return y if bias is None else y + bias


def test_chained_layers_and_reused_scratch(sphere):
    """Several layers of different widths, forward twice before one backward: the scratch
    memory reused between calls must not leak into results or gradients."""
    Lt = torch.from_numpy(sphere["Lt"])
    L = SparseOperator(sphere["Lt_sp"], dtype=torch.float64)
    convs = [_conv(2, 5, 3, seed=1), _conv(5, 3, 4, seed=2), _conv(3, 3, 2, bias=False, seed=3),
             _conv(3, 7, 4, seed=4), _conv(7, 1, 3, seed=5), _conv(1, 6, 5, seed=6)]
    convs[3].store_terms = True  # stored terms; the last layer stores by default (5*1 <= 6)
    x = torch.randn(3, sphere["n"], 2, dtype=torch.float64, requires_grad=True)

    def net(x, ours):
        for c in convs:
            x = torch.tanh(c(x, L) if ours else _dense_reference(x, Lt, c.weight, c.bias))
        return x

    y_first = net(x, True)
    y_again = net(2 * x, True)       # second forward before any backward
    (y_first.sum() + (y_again ** 2).sum()).backward()
    got = [x.grad.clone()] + [c.weight.grad.clone() for c in convs]
    for t in [x] + [c.weight for c in convs]:
        t.grad = None
    (net(x, False).sum() + (net(2 * x, False) ** 2).sum()).backward()
    want = [x.grad] + [c.weight.grad for c in convs]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    torch.testing.assert_close(y_first, net(x, False))


def test_inference_mode_then_training(sphere):
    """A first call under torch.inference_mode() must not leave scratch memory that a later
    training step cannot write (inference tensors refuse in-place updates outside it)."""
    from deepsphere.nn.cheb_conv import clear_workspace

    clear_workspace()
    Lt = torch.from_numpy(sphere["Lt"])
    L = SparseOperator(sphere["Lt_sp"], dtype=torch.float64)
    conv = _conv(3, 4, 4, seed=7)
    x = torch.randn(2, sphere["n"], 3, dtype=torch.float64)
    with torch.inference_mode():
        y_inf = conv(x.transpose(0, 1).contiguous().transpose(0, 1), L)  # strided: uses scratch
    xg = x.transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    y = conv(xg, L)
    y.square().sum().backward()
    want = _dense_reference(x, Lt, conv.weight, conv.bias)
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(y_inf, want.detach())


def test_benchmark_command_smoke(tmp_path, capsys):
    """`deepsphere benchmark` on a tiny grid: runs, checks ours against PyG, writes CSV."""
    pytest.importorskip("torch_geometric")
    from deepsphere import benchmark

    out = tmp_path / "bench.csv"
    assert benchmark.main(["--nside", "2", "--K", "3", "--channels", "2", "--batch", "2",
                           "--repeats", "1", "--graph-nside", "2", "--graph-k", "8",
                           "--naive", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ChebConv vs torch_geometric" in text and "healpix_neighbours" in text
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 2 + 1  # header, two graph builders, one conv case
    assert "rel_err" in rows[0]


def test_autocast_runs_in_full_precision():
    """Under mixed precision the layer computes in its weights' precision (same result as
    without autocast), whatever precision the incoming activations have."""
    import scipy.sparse as sp_

    rng = np.random.default_rng(0)
    A = sp_.random(40, 40, density=0.2, random_state=1, format="csr")
    A = A + A.T
    A.setdiag(0)
    A.eliminate_zeros()
    d = np.asarray(A.sum(1)).ravel() + 1e-9
    Ln = sp_.identity(40) - sp_.diags(d ** -0.5) @ A @ sp_.diags(d ** -0.5)
    from deepsphere.graph import scipy_to_torch_csr

    L = scipy_to_torch_csr(Ln - sp_.identity(40))
    conv = ChebConv(3, 5, K=4)
    x = torch.from_numpy(rng.standard_normal((2, 40, 3)).astype(np.float32))
    ref = conv(x, L)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x, L)
        y_half_in = conv(x.bfloat16(), L)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(y_half_in, conv(x.bfloat16().float(), L))
    y.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32


# ---- operators the backward pass cannot use ----------------------------------------------
def test_asymmetric_operator_passed_directly_is_refused(sphere):
    """The backward uses L~^T = L~: a random-walk operator I - D^-1 W (rescaled), given as
    scipy or torch sparse, must be refused rather than give wrong gradients."""
    W = sphere["W"]
    d = np.asarray(W.sum(1)).ravel()
    n = sphere["n"]
    Lrw = sp.csr_matrix(sp.identity(n) - sp.diags(1 / d) @ W) - sp.identity(n)
    conv = _conv(2, 3, 3)
    x = torch.randn(1, n, 2, dtype=torch.float64)
    for L in (Lrw, torch.from_numpy(Lrw.toarray()).to_sparse_csr()):
        with pytest.raises(ValueError, match=r"not symmetric.*backward"):
            conv(x, L)
    # the symmetric operators of every graph builder pass, in float32 too
    for g in (graph.knn(sampling.HEALPix(8), k=20), graph.healpix_neighbours(sampling.HEALPix(8))):
        for kind in ("normalized", "combinatorial"):
            Lt = g.chebyshev_operator(kind)
            ChebConv(2, 2, 3)(torch.randn(1, Lt.shape[0], 2), Lt)


def test_unrescaled_laplacian_is_refused(sphere):
    """conv(x, graph.laplacian()) ran: T_k of a spectrum in [0, 2] (or [0, 2 d_max]) grow
    like 3.7^k, a silently wrong filter. The rescaled operators of every builder pass, with
    scale < 1 and the safe bound as lmax too."""
    conv = _conv(2, 3, 4)
    g = graph.knn(sampling.HEALPix(NSIDE), k=8)
    x = torch.randn(1, sphere["n"], 2, dtype=torch.float64)
    L = sp.csr_matrix(sphere["L"])
    assert np.linalg.eigvalsh(sphere["L"]).max() > 1.4  # outside [-1, 1]: what the probe must catch
    for op in (L, torch.from_numpy(sphere["L"]).to_sparse_csr(), torch.from_numpy(sphere["L"]).to_sparse(),
               g.laplacian("combinatorial")):
        with pytest.raises(ValueError, match=r"spectrum leaves \[-1, 1\].*chebyshev_operator\(\)"):
            conv(x, op)
    for gr in (g, graph.healpix_neighbours(sampling.HEALPix(NSIDE)), graph.radius(sampling.HEALPix(NSIDE), 0.5)):
        for kind in ("normalized", "combinatorial"):
            for op in (gr.chebyshev_matrix(kind), gr.chebyshev_matrix(kind, scale=0.75),
                       gr.chebyshev_matrix(kind, lmax=gr.lmax(kind, method="bound"))):
                conv(x, op)
    K1 = _conv(2, 3, 1)  # T_0 = I only: the operator is not used
    K1(x, L)
    # a SparseOperator (any constant matrix) is probed at its first use by ChebConv, once
    from deepsphere.nn import SparseOperator

    with pytest.raises(ValueError, match=r"spectrum leaves \[-1, 1\]"):
        conv(x, SparseOperator(L, dtype=torch.float64))
    good = SparseOperator(g.chebyshev_matrix("normalized"), dtype=torch.float64)
    conv(x, good)
    assert good._spectrum_probed


def test_non_finite_operator_is_refused(sphere):
    bad = sphere["Lt_sp"].copy()
    bad.data[3] = np.nan
    conv = _conv(2, 3, 3)
    x = torch.randn(1, sphere["n"], 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="NaN or infinite"):
        conv(x, bad)
    bad.data[3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        conv(x, torch.from_numpy(bad.toarray()).to_sparse_csr())
    with pytest.raises(ValueError, match="NaN or infinite"):
        SparseOperator(bad, check_symmetric=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_without_sparse_kernel_says_what_to_do(sphere, dtype):
    """CPU torch has no float16/bfloat16 sparse product: a clear error, not torch's."""
    conv = ChebConv(3, 2, 3).to(dtype)
    x = torch.randn(1, sphere["n"], 3, dtype=dtype)
    with pytest.raises(TypeError, match=r"cannot run in torch\.(b?float16) on cpu.*autocast"):
        conv(x, sphere["Lt_sp"])
    assert ChebConv(3, 2, 1).to(dtype)(x, None).dtype == dtype  # K=1: dense products only


def test_sparse_input_signal_refused(sphere):
    with pytest.raises(TypeError, match=r"dense tensor.*to_dense"):
        ChebConv(3, 2, 2)(torch.randn(1, sphere["n"], 3).to_sparse(), sphere["Lt_sp"])


@pytest.mark.parametrize("fin,fout", [(2, 3), (3, 2)])
def test_one_sample_batch_leaves_input_and_output_gradient_untouched(sphere, fin, fout):
    """With one sample, x (forward) and the incoming gradient (backward) are read in place as
    the recursion's T_0: terms k >= 2 must be written to scratch, never over them."""
    Lt = torch.from_numpy(sphere["Lt"])
    conv = _conv(fin, fout, 4, seed=8)
    conv.store_terms = False
    x = torch.randn(1, sphere["n"], fin, dtype=torch.float64)
    g = torch.randn(1, sphere["n"], fout, dtype=torch.float64)
    x0, g0 = x.clone(), g.clone()
    xg = x.requires_grad_()
    y = conv(xg, sphere["Lt_sp"])
    assert torch.equal(x.detach(), x0)
    y.backward(g)
    assert torch.equal(g, g0)
    xr = x0.clone().requires_grad_()
    w = conv.weight.detach().clone().requires_grad_()
    want = _dense_reference(xr, Lt, w, conv.bias.detach())
    want.backward(g0)
    torch.testing.assert_close(y.detach(), want.detach())
    torch.testing.assert_close(xg.grad, xr.grad)
    torch.testing.assert_close(conv.weight.grad, w.grad)


def test_reset_parameters_is_glorot_uniform_on_each_weight_k():
    """torch_geometric's ChebConv initialises each lins[k] with Glorot-uniform, bound
    sqrt(6 / (in + out)); K does not enter the fan-in."""
    torch.manual_seed(0)
    conv = ChebConv(48, 80, K=6)
    a = (6 / (48 + 80)) ** 0.5
    for wk in conv.weight.detach():
        assert wk.abs().max() <= a and wk.abs().max() > 0.99 * a
        assert abs(float(wk.std()) - a / 3 ** 0.5) < 0.02 * a


def test_unbatched_input_keeps_a_single_output_channel(sphere):
    """A 2-d x [N, Fin] gives [N, Fout], also for Fout = 1 (only the added batch axis goes)."""
    conv = _conv(3, 1, 3)
    x = torch.randn(sphere["n"], 3, dtype=torch.float64)
    y = conv(x, sphere["Lt_sp"])
    assert y.shape == (sphere["n"], 1)
    torch.testing.assert_close(y, conv(x.unsqueeze(0), sphere["Lt_sp"])[0])
