r"""Chebyshev graph convolution (Defferrard et al. 2016) on ``[batch, vertices, channels]``
signals, with a sparse recursion that owns its backward pass."""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .operator import SparseOperator, as_csr_operator
from .spmm import PARALLEL_WORK, sparse_addmm_

__all__ = ["ChebConv", "cheb_conv", "clear_workspace"]


class _Scratch(threading.local):
    """Per-thread reusable memory for the temporaries of one forward or backward call."""

    def __init__(self):
        self.flat: Dict[torch.dtype, Tensor] = {}


_scratch = _Scratch()


def clear_workspace() -> None:
    """Free the CPU scratch memory :class:`ChebConv` keeps between calls (see its Notes)."""
    _scratch.flat.clear()


def _buffers(like: Tensor, *shapes) -> List[Tensor]:
    """Uninitialised buffers for temporaries that never outlive one forward/backward call.

    On CPU they are views of one per-thread block kept between calls: fresh large
    allocations are returned to the OS on free and page-faulted back on every call, which
    cost about a third of the layer's time at nside 128. CUDA has a caching allocator.
    """
    if like.device.type != "cpu":
        return [torch.empty(sh, dtype=like.dtype, device=like.device) for sh in shapes]
    sizes = [math.prod(sh) for sh in shapes]
    flat = _scratch.flat.get(like.dtype)
    # a block first allocated under torch.inference_mode() is an inference tensor, which
    # cannot be written outside that mode: replace it then
    stale = flat is not None and flat.is_inference() and not torch.is_inference_mode_enabled()
    if flat is None or stale or flat.numel() < sum(sizes):
        _scratch.flat.pop(like.dtype, None)  # free the smaller block first
        flat = _scratch.flat[like.dtype] = torch.empty(sum(sizes), dtype=like.dtype)
    out, offset = [], 0
    for sh, n in zip(shapes, sizes):
        out.append(flat[offset:offset + n].view(sh))
        offset += n
    return out


# Below this many multiply-adds per sparse product, run a call on one CPU thread: the sparse
# kernels start a thread team on every call, which costs ~20 ms when the cores are
# oversubscribed (measured on 2 shared cores) against microseconds of work. The same bound
# as the CPU kernel's own (one place for it).
_SMALL_WORK = PARALLEL_WORK


@contextlib.contextmanager
def _threads_for(L: Tensor, columns: int):
    n_threads = torch.get_num_threads()
    small = (L.device.type == "cpu" and n_threads > 1
             and L.values().numel() * columns < _SMALL_WORK)
    if not small:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n_threads)


def _vertex_major(t: Tensor, out: Tensor) -> Tensor:
    """``t`` ``[B, N, F]`` as ``[N, B*F]`` (a view when already stored so, else copied)."""
    B, N, F = t.shape
    tt = t.transpose(0, 1)
    if tt.is_contiguous():
        return tt.view(N, B * F)
    out.view(N, B, F).copy_(tt)
    return out


def _chebyshev_terms(L: Tensor, X0: Tensor, K: int, bufs) -> Iterator[Tuple[float, Tensor]]:
    r"""Yield ``(s_k, s_k T_k(L) X_0)`` for :math:`k = 0, \dots, K-1`, with signs
    :math:`s_k = \pm 1` (``X0`` is ``[N, C]``).

    Runs in the two buffers ``bufs``: term :math:`k` is written over term :math:`k-2`, so
    each term must be used before the next one is requested; ``X0`` itself is never
    written. The signs (:math:`s_k = -s_{k-2}`, pattern ``+ + - - + + ...``) turn
    :math:`T_k = 2 L T_{k-1} - T_{k-2}` into an in-place ``addmm_`` with ``beta = 1``,
    which the sparse kernels run without an extra pass to scale the output by -1.
    """
    yield 1.0, X0
    if K == 1:
        return
    # beta=0: the buffer's old contents are ignored (no zero fill)
    prev, cur = X0, sparse_addmm_(bufs[0], L, X0, beta=0)
    s_prev, s_cur = 1.0, 1.0
    yield s_cur, cur
    for k in range(2, K):
        s_new = -s_prev
        base = bufs[1].copy_(X0) if k == 2 else prev   # never write the caller's X0
        # s_{k-2} T_{k-2} + 2 s_k s_{k-1} L (s_{k-1} T_{k-1}) = s_k T_k
        nxt = sparse_addmm_(base, L, cur, alpha=2.0 * s_new * s_cur)
        prev, cur, s_prev, s_cur = cur, nxt, s_cur, s_new
        yield s_cur, cur


def _clenshaw(L: Tensor, A: Tensor, W: Tensor, N: int, bufs) -> Tensor:
    r""":math:`\sum_{k<K} T_k(L)\, A W_k` by Clenshaw's recurrence, in the two ``bufs``.

    ``A`` is ``[N*B, Fa]`` (vertex-major rows), ``W`` ``[K, Fa, Fb]`` (any strides), ``K >= 2``.
    With :math:`b_K = b_{K+1} = 0`: :math:`b_k = A W_k + 2 L b_{k+1} - b_{k+2}`, and the
    sum is :math:`A W_0 + L b_1 - b_2`: ``K - 1`` sparse products on ``B*Fb`` columns.
    Returns ``[N, B*Fb]`` (one of ``bufs``).
    """
    K, _, Fb = W.shape
    C = A.shape[0] // N * Fb
    cur = torch.mm(A, W[K - 1], out=bufs[0].view(-1, Fb)).view(N, C)
    prev = None
    for k in range(K - 2, -1, -1):
        if prev is None:
            new = torch.mm(A, W[k], out=bufs[1].view(-1, Fb)).view(N, C)
        else:  # in place over b_{k+2}: A W_k - b_{k+2}, fused in one dense product
            new = prev.view(-1, Fb).addmm_(A, W[k], beta=-1).view(N, C)
        sparse_addmm_(new, L, cur, alpha=1.0 if k == 0 else 2.0)
        prev, cur = cur, new
    return cur


class _ChebConvFunction(torch.autograd.Function):
    r"""``y = sum_k T_k(L) x W_k + b`` on folded signals, with a hand-written backward.

    Layout: the batch is folded into the columns, ``X = [N, B * Fin]`` (vertex-major), so a
    whole batch is one sparse-dense product per polynomial order.

    Forward, on the narrower side:
      - ``Fin < Fout``: the recursion :math:`T_k(L) X` on the input, each term multiplied
        by :math:`W_k` into the output as soon as it exists;
      - otherwise Clenshaw's recurrence on :math:`X W_k` (see :func:`_clenshaw`).
    Backward, with :math:`G = \partial \ell / \partial y` and :math:`L^\top = L`, either

      - *lean* (default): :math:`D_k = T_k(L) G` by the same recursion, then
        :math:`\partial \ell/\partial W_k = X^\top D_k` and
        :math:`\partial \ell/\partial X = \sum_k D_k W_k^\top`. Only ``x`` (which autograd
        holds anyway) is saved; ``K - 1`` sparse products on ``B*Fout`` columns;
      - *stored* (``store=True``, only when ``Fin < Fout``): the forward keeps the ``K`` terms
        :math:`T_k(L) X`; then :math:`\partial \ell/\partial W_k = (T_k(L) X)^\top G` and
        :math:`\partial \ell/\partial X = \sum_k T_k(L)\, G W_k^\top` by Clenshaw: ``K - 1``
        sparse products on the narrower ``B*Fin`` columns, for ``K N B Fin`` saved numbers.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], L: Tensor,
                store: bool) -> Tensor:
        if L is None:  # K = 1
            return _ChebConvFunction._forward(ctx, x, weight, bias, L, store)
        with _threads_for(L, x.shape[0] * max(weight.shape[1:])):
            return _ChebConvFunction._forward(ctx, x, weight, bias, L, store)

    @staticmethod
    def _forward(ctx, x, weight, bias, L, store):
        B, N, Fin = x.shape
        K, _, Fout = weight.shape
        input_side = Fin < Fout
        store = bool(store) and input_side and K > 1
        if store:  # the terms outlive this call: real memory, not scratch
            terms = torch.empty(K, N, B * Fin, dtype=x.dtype, device=x.device)
            xbuf, b0, b1 = terms[0], terms[1], None
        else:
            C = B * (Fin if input_side else Fout) if K > 1 else 0
            xbuf, b0, b1 = _buffers(x, (N, B * Fin), (N, C), (N, C))
        xf = _vertex_major(x, xbuf)
        xr = xf.view(N * B, Fin)
        if K == 1:
            yf = torch.mm(xr, weight[0])
        elif store:
            if xf.data_ptr() != terms[0].data_ptr():
                terms[0].copy_(xf)
            sparse_addmm_(terms[1], L, terms[0], beta=0)
            for k in range(2, K):
                sparse_addmm_(torch.neg(terms[k - 2], out=terms[k]), L, terms[k - 1], alpha=2.0)
            Tr = terms.view(K, N * B, Fin)
            yf = torch.mm(Tr[0], weight[0])
            for k in range(1, K):
                yf.addmm_(Tr[k], weight[k])
        elif input_side:
            yf = torch.empty(N * B, Fout, dtype=x.dtype, device=x.device)
            for k, (sign, T) in enumerate(_chebyshev_terms(L, xf, K, (b0, b1))):
                yf.addmm_(T.view(N * B, Fin), weight[k], beta=0 if k == 0 else 1, alpha=sign)
        else:
            yf = _clenshaw(L, xr, weight, N, (b0, b1))
        y = torch.empty(B, N, Fout, dtype=x.dtype, device=x.device)
        yv = yf.view(N, B, Fout).transpose(0, 1)
        if bias is None:
            y.copy_(yv)
        else:
            torch.add(yv, bias, out=y)
        ctx.save_for_backward(terms if store else x, weight)
        ctx.store = store
        ctx.shape = (B, N, Fin)
        ctx.L = L
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):
        saved, weight = ctx.saved_tensors  # first: may recompute a checkpointed forward
        if ctx.L is None:
            return _ChebConvFunction._backward(ctx, G, saved, weight)
        with _threads_for(ctx.L, G.shape[0] * max(weight.shape[1:])):
            return _ChebConvFunction._backward(ctx, G, saved, weight)

    @staticmethod
    def _backward(ctx, G, saved, weight):
        L = ctx.L
        B, N, Fin = ctx.shape
        K, _, Fout = weight.shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_b and ctx.has_bias:
            gb = G.sum((0, 1))
        if not (need_x or need_w):
            return gx, gw, gb, None, None
        gw = torch.empty_like(weight) if need_w else None
        if ctx.store:
            gbuf, c0, c1 = _buffers(G, (N, B * Fout), (N, B * Fin), (N, B * Fin))
            Gr = _vertex_major(G, gbuf).view(N * B, Fout)
            if need_w:
                for k, T in enumerate(saved.view(K, N * B, Fin)):
                    torch.mm(T.t(), Gr, out=gw[k])
            if need_x:
                gxf = _clenshaw(L, Gr, weight.transpose(1, 2), N, (c0, c1))
                gx = torch.empty(B, N, Fin, dtype=G.dtype, device=G.device)
                gx.copy_(gxf.view(N, B, Fin).transpose(0, 1))
            return gx, gw, gb, None, None
        x = saved
        gbuf, xbuf, d0, d1 = _buffers(x, (N, B * Fout), (N, B * Fin), (N, B * Fout),
                                      (N, B * Fout))
        Gf = _vertex_major(G, gbuf)
        xr = _vertex_major(x, xbuf).view(N * B, Fin) if need_w else None
        gxf = torch.empty(N * B, Fin, dtype=x.dtype, device=x.device) if need_x else None
        for k, (sign, D) in enumerate(_chebyshev_terms(L, Gf, K, (d0, d1))):
            D = D.view(N * B, Fout)
            if need_w:
                torch.mm(xr.t(), D, out=gw[k])
                if sign < 0:
                    gw[k].neg_()
            if need_x:
                gxf.addmm_(D, weight[k].t(), beta=0 if k == 0 else 1, alpha=sign)
        if need_x:
            gx = gxf.view(N, B, Fin).transpose(0, 1)
        return gx, gw, gb, None, None


def _check_input(x: Tensor, weight: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(
            f"x must be [batch, vertices, channels] (or [vertices, channels]), got a "
            f"{x.dim()}-d tensor of shape {tuple(x.shape)}"
        )
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"channel mismatch: the layer expects in_channels={weight.shape[1]} on the last "
            f"axis of x, got {x.shape[-1]} (x has shape {tuple(x.shape)}; layout is "
            "[batch, vertices, channels])"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.layout != torch.strided:
        raise TypeError(f"x must be a dense tensor, got layout {x.layout}; use x.to_dense()")
    check_layer_dtype(x, weight, "ChebConv")


def check_layer_dtype(x: Tensor, weight: Tensor, layer: str) -> None:
    """Refuse an input whose dtype or device is not the layer's weights' (ChebConv and the
    spectral layers): a float64 input into a float32 layer would be computed in float64 with
    the weights cast up (and a float32 input into a float64 layer rounded silently), so the
    precision would be the input's, not the layer's."""
    if x.dtype != weight.dtype or x.device != weight.device:
        raise TypeError(
            f"{layer}: x is {x.dtype} on {x.device} but the layer's weight is {weight.dtype} on "
            f"{weight.device}; move one of them with .to(): x.to({weight.dtype}) for the "
            f"layer's precision, or layer.to({x.dtype}) (e.g. model.double()) for the input's"
        )


# Relative size of |P^T (L - L^T) P| above which an operator counts as not symmetric: far
# above float32 rounding of a symmetric L~ (~1e-7), below a random-walk L~ on HEALPix (~1e-3).
_ASYMMETRY_TOL = 1e-5


def _probe_symmetric(L: Tensor) -> None:
    r"""Refuse a non-symmetric or non-finite operator, at the cost of one sparse product.

    The backward pass uses :math:`\tilde L^\top = \tilde L`; with a non-symmetric operator
    the forward pass would be right and every gradient silently wrong. With four fixed
    vectors :math:`P`, :math:`S = P^\top L P` is symmetric when :math:`L` is, while for
    :math:`A = L - L^\top` the entries of :math:`S - S^\top = P^\top A P` are of the order of
    :math:`\|A\|_F`; the Frobenius norm :math:`\|L\|_F` sets the scale.
    """
    n = L.shape[0]
    if n == 0:
        return
    with _threads_for(L, 4):
        i = torch.arange(n, dtype=torch.float64, device=L.device).unsqueeze(1)
        freq = torch.tensor([0.6180339887, 0.4142135624, 0.7320508076, 0.2360679775],
                            dtype=torch.float64, device=L.device)
        P = torch.cos(i * freq + torch.arange(4, dtype=torch.float64, device=L.device))
        S = P.t() @ torch.mm(L, P.to(L.dtype)).double()
        asym = float((S - S.t()).abs().max())
        scale = float(torch.linalg.vector_norm(L.values().double()))
    if not (math.isfinite(asym) and math.isfinite(scale)):
        raise ValueError(
            "the operator has NaN or infinite values; build it from a graph with finite "
            "weights (SphereGraph.chebyshev_operator) and a positive finite lmax"
        )
    if asym > _ASYMMETRY_TOL * scale:
        raise ValueError(
            f"the operator is not symmetric (|P^T (L - L^T) P| = {asym:.3g} for a norm of "
            f"{scale:.3g}): ChebConv's backward pass uses L~^T = L~, so its gradients would "
            "be wrong. Use the rescaled Laplacian of a symmetric graph "
            "(SphereGraph.chebyshev_operator, 'normalized' or 'combinatorial'), not a "
            "random-walk or directed operator."
        )


# Row norms of a rescaled L~ are at most its spectral radius, scale <= 1 (0.98 with the
# default lmax margin); float32 rounding is far below this slack.
_SPECTRUM_TOL = 1e-3
_SPECTRUM_ROWS = 4096


def _probe_spectrum(L: Tensor) -> None:
    r"""Refuse an operator whose spectrum certainly leaves :math:`[-1, 1]`: each row norm
    :math:`\|\tilde L e_i\|` bounds the spectral radius from below. An unrescaled normalized
    Laplacian (diagonal 1, so :math:`\|L e_i\|^2 = 1 + \sum_j w_{ij}^2 / (d_i d_j)`) or
    combinatorial one (diagonal :math:`d_i`) exceeds 1 on every row with an edge, so the first
    ``_SPECTRUM_ROWS`` rows tell, at a cost independent of the graph's size; the Chebyshev
    terms of either grow like :math:`T_k(2) \sim 3.7^k` instead of staying in [-1, 1]."""
    if L.shape[0] == 0 or L.layout != torch.sparse_csr:
        return
    crow = L.crow_indices()[:_SPECTRUM_ROWS + 1]
    val = L.values()[:int(crow[-1])].double()
    prefix = torch.nn.functional.pad(torch.cumsum(val * val, 0), (1, 0))
    radius = float((prefix[crow[1:]] - prefix[crow[:-1]]).max()) ** 0.5
    if radius > 1 + _SPECTRUM_TOL:
        raise ValueError(
            f"the operator's spectrum leaves [-1, 1] (a row of norm {radius:.4g}): ChebConv "
            "takes the rescaled Laplacian L~ = 2L/lmax - I, not L itself (its Chebyshev terms "
            "would grow without bound). Pass graph.chebyshev_operator() (or "
            "chebyshev_matrix()) instead of graph.laplacian()."
        )


def cheb_conv(x: Tensor, L, weight: Tensor, bias: Optional[Tensor] = None,
              store_terms: Optional[bool] = None) -> Tensor:
    r"""Functional form of :class:`ChebConv`: :math:`y = \sum_k T_k(\tilde L)\, x\, W_k + b`.

    ``x`` is ``[B, N, Fin]`` or ``[N, Fin]``, ``weight`` ``[K, Fin, Fout]``, ``bias``
    ``[Fout]`` or None, ``L`` the symmetric rescaled operator (any form
    :func:`~deepsphere.nn.operator.as_csr_operator` accepts). Returns ``[B, N, Fout]``
    (``[N, Fout]`` for a 2-d ``x``). ``store_terms``: see :class:`ChebConv`.
    """
    if isinstance(x, Tensor) and torch.is_autocast_enabled(x.device.type):
        # Mixed precision: sparse products lack reduced-precision kernels on some devices and
        # the recursion accumulates rounding, so the layer runs in its weights' precision.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return cheb_conv(x.to(weight.dtype), L, weight, bias, store_terms)
    _check_input(x, weight)
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    if L is None:  # T_0 = I needs no operator
        if weight.shape[0] > 1:
            raise ValueError(f"L is None, but K={weight.shape[0]} > 1 needs the graph's operator")
        Lc = None
    else:
        Lc = as_csr_operator(L, n=x.shape[1], dtype=x.dtype, device=x.device)
    K, Fin, Fout = weight.shape
    if store_terms is None:  # store when the K terms take no more memory than the output
        store_terms = K * Fin <= Fout
    try:
        if K > 1 and not isinstance(L, SparseOperator):
            _probe_symmetric(Lc)  # a SparseOperator was checked once, when it was built
            _probe_spectrum(Lc)
        elif K > 1 and not getattr(L, "_spectrum_probed", False):
            # a SparseOperator is any constant matrix, so its spectrum is probed here, at its
            # first use as a Chebyshev operator (one device sync), not at every call
            _probe_spectrum(Lc)
            L._spectrum_probed = True
        y = _ChebConvFunction.apply(x, weight, bias, Lc, bool(store_terms))
    except NotImplementedError as e:  # e.g. no float16/bfloat16 sparse product on CPU
        if "sparse" not in str(e):
            raise
        raise TypeError(
            f"ChebConv cannot run in {x.dtype} on {x.device}: torch has no sparse product for "
            f"it there ({e}). Keep the layer in float32 (model.float()); for mixed precision "
            "use torch.autocast, under which the layer runs in its weights' precision."
        ) from None
    return y.squeeze(0) if squeeze else y


class ChebConv(nn.Module):
    r"""Chebyshev spectral graph convolution on signals ``[batch, vertices, channels]``.

    .. math::
        y = \sum_{k=0}^{K-1} T_k(\tilde L)\, x\, W_k + b,
        \qquad T_0 = I,\quad T_1 = \tilde L,\quad T_k = 2\tilde L\,T_{k-1} - T_{k-2},

    with :math:`\tilde L = 2L/\lambda_{max} - I` the rescaled Laplacian (spectrum in
    :math:`[-1, 1]`). In the graph Fourier basis :math:`L = U \Lambda U^\top` this is the
    filter :math:`y = U\, g(\Lambda)\, U^\top x` with, for each pair of channels,
    :math:`g_{io}(\lambda) = \sum_k W_{k,i,o}\, T_k(2\lambda/\lambda_{max} - 1)`: a
    polynomial of degree :math:`K-1`, hence exactly :math:`(K-1)`-hop localised.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature sizes :math:`F_{in}`, :math:`F_{out}`.
    K : int
        Number of Chebyshev terms (polynomial degree ``K - 1``), ``K >= 1``; ``K = 1`` is a
        per-vertex linear map :math:`y = x W_0 + b`.
    bias : bool
        Learn an additive bias :math:`b \in \mathbb{R}^{F_{out}}`.
    store_terms : bool, optional
        Only matters when ``in_channels < out_channels``: keep the ``K`` terms
        :math:`T_k(\tilde L) x` from the forward pass (``K·N·B·in_channels`` numbers) so the
        backward recursion runs on ``in_channels`` rather than ``out_channels`` columns.
        Default: store when that is no more memory than the output (``K·in <= out``,
        e.g. a first layer on 1-3 input channels).

    Attributes
    ----------
    weight : Parameter ``(K, in_channels, out_channels)``
        ``weight[k]`` is :math:`W_k`, the coefficient of :math:`T_k(\tilde L)`.
    bias : Parameter ``(out_channels,)`` or None

    ``forward(x, L)``: ``x`` is ``[B, N, in_channels]`` (or ``[N, in_channels]``); ``L`` is
    the **symmetric** :math:`\tilde L` of the graph ``x`` lives on, as a torch sparse CSR
    (or COO) tensor, a :class:`~deepsphere.nn.SparseOperator` or a scipy.sparse matrix, of
    the same dtype and device as ``x`` (see
    :meth:`deepsphere.graph.SphereGraph.chebyshev_operator`); ``None`` is allowed when
    ``K = 1``. Returns ``[B, N, out_channels]``. ``L`` is a constant: no gradient flows to it.
    A non-symmetric or non-finite ``L`` is refused: a :class:`~deepsphere.nn.SparseOperator`
    is checked once when built, any other form on every call (one sparse product with four
    vectors).

    Notes
    -----
    The batch is folded into the columns (``[N, B·C]``), so each polynomial order costs one
    sparse-dense product for the whole batch; the recursion runs on the narrower of the input
    and output widths and the backward pass is hand-written (it uses :math:`\tilde L^\top =
    \tilde L` and, unless ``store_terms``, keeps nothing but ``x``). Weights map one to one
    onto :class:`torch_geometric.nn.ChebConv`: ``weight[k] = lins[k].weight.T``.

    On CPU the temporaries of a call (a few ``N x B x C`` blocks) live in a per-thread
    scratch block kept between calls, sized by the largest layer seen; free it with
    :func:`deepsphere.nn.cheb_conv.clear_workspace`.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, bias: bool = True,
                 store_terms: Optional[bool] = None):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(K, int) or isinstance(K, bool) or K < 1:
            raise ValueError(
                f"K must be an int >= 1 (the number of Chebyshev terms; K=1 is a per-vertex "
                f"linear map, K=2 reaches 1-hop neighbours), got {K!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.K = K
        self.store_terms = store_terms
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform on each :math:`W_k` (as torch_geometric's ChebConv), zero bias."""
        a = math.sqrt(6.0 / (self.in_channels + self.out_channels))
        nn.init.uniform_(self.weight, -a, a)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, L) -> Tensor:
        return cheb_conv(x, L, self.weight, self.bias, self.store_terms)

    def extra_repr(self) -> str:
        extra = "" if self.store_terms is None else f", store_terms={self.store_terms}"
        return (f"{self.in_channels}, {self.out_channels}, K={self.K}, "
                f"bias={self.bias is not None}{extra}")
