r"""Chebyshev graph convolution (Defferrard et al. 2016) on ``[batch, vertices, channels]``
signals, with a sparse recursion that owns its backward pass."""
from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .operator import as_csr_operator, describe_vertices

__all__ = ["ChebConv", "cheb_conv"]


def _chebyshev_terms(L: Tensor, X0: Tensor, K: int) -> Iterator[Tensor]:
    r"""Yield :math:`T_k(L) X_0` for :math:`k = 0, \dots, K-1` (``X0`` is ``[N, C]``).

    Two working buffers: :math:`T_k` is written over :math:`T_{k-2}`, so each term must be
    used before the next one is requested. ``X0`` itself is never written.
    """
    yield X0
    if K == 1:
        return
    prev, cur = X0, torch.mm(L, X0)
    yield cur
    for k in range(2, K):
        if k == 2:  # T_0 is the caller's tensor: write T_2 into a fresh buffer
            nxt = torch.addmm(X0, L, cur, beta=-1, alpha=2)
        else:       # T_k = 2 L T_{k-1} - T_{k-2}, in place over T_{k-2}
            nxt = prev.addmm_(L, cur, beta=-1, alpha=2)
        prev, cur = cur, nxt
        yield cur


def _clenshaw(L: Tensor, Z: "callable", K: int, first: Tensor) -> Tensor:
    r""":math:`\sum_{k<K} T_k(L) Z_k` by Clenshaw's recurrence, ``K >= 2``.

    ``first`` is a fresh buffer holding :math:`Z_{K-1}`; ``Z(k, out, beta)`` writes
    :math:`Z_k + \beta\,\mathrm{out}` into ``out`` (``out`` fresh when ``beta`` is None).
    With :math:`b_K = b_{K+1} = 0`, :math:`b_k = Z_k + 2 L b_{k+1} - b_{k+2}` and the sum is
    :math:`Z_0 + L b_1 - b_2`: ``K - 1`` sparse products, two buffers.
    """
    b1, b2 = first, None
    for k in range(K - 2, -1, -1):
        new = Z(k, None, None) if b2 is None else Z(k, b2, -1.0)
        new.addmm_(L, b1, alpha=1.0 if k == 0 else 2.0)
        b2, b1 = b1, new
    return b1


class _ChebConvFunction(torch.autograd.Function):
    r"""``y = sum_k T_k(L) x W_k + b`` on folded signals, with a hand-written backward.

    Layout: the batch is folded into the columns, ``X = [N, B * Fin]`` (vertex-major), so a
    whole batch is one sparse-dense product per polynomial order.

    Forward, on the narrower side (``C = min(Fin, Fout)`` columns per batch element):
      - ``Fin < Fout``: the recursion :math:`T_k(L) X` on the input, each term multiplied
        by :math:`W_k` into the output as soon as it exists;
      - otherwise Clenshaw's recurrence on :math:`X W_k` (a dense product per order).
    Backward, with :math:`G = \partial \ell / \partial y` and :math:`L^\top = L`:
      :math:`D_k = T_k(L) G` by the same recursion, then
      :math:`\partial \ell/\partial W_k = X^\top D_k` and
      :math:`\partial \ell/\partial X = \sum_k D_k W_k^\top`.
    Nothing but ``x`` (which autograd holds anyway) is saved: no ``K`` stored terms, and the
    same ``K - 1`` sparse products as a store-everything backward when ``Fin >= Fout``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], L: Tensor) -> Tensor:
        B, N, Fin = x.shape
        K, _, Fout = weight.shape
        xf = x.transpose(0, 1).reshape(N * B, Fin).contiguous()  # a copy unless already so
        if K == 1:
            yf = xf @ weight[0]
        elif Fin < Fout:
            terms = _chebyshev_terms(L, xf.view(N, B * Fin), K)
            yf = torch.mm(next(terms).view(N * B, Fin), weight[0])
            for k, T in enumerate(terms, start=1):
                yf.addmm_(T.view(N * B, Fin), weight[k])
        else:
            def Z(k, out, beta):
                if out is None:
                    return torch.mm(xf, weight[k]).view(N, B * Fout)
                return out.view(N * B, Fout).addmm_(xf, weight[k], beta=beta).view(N, B * Fout)
            yf = _clenshaw(L, Z, K, Z(K - 1, None, None)).view(N * B, Fout)
        y = torch.empty(B, N, Fout, dtype=x.dtype, device=x.device)
        yv = yf.view(N, B, Fout).transpose(0, 1)
        if bias is None:
            y.copy_(yv)
        else:
            torch.add(yv, bias, out=y)
        ctx.save_for_backward(x, weight)
        ctx.L = L
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):
        x, weight = ctx.saved_tensors
        L = ctx.L
        B, N, Fin = x.shape
        K, _, Fout = weight.shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_b and ctx.has_bias:
            gb = G.sum((0, 1))
        if not (need_x or need_w):
            return gx, gw, gb, None
        Gf = G.transpose(0, 1).reshape(N, B * Fout).contiguous()
        xf = x.transpose(0, 1).reshape(N * B, Fin).contiguous() if need_w else None
        if need_w:
            gw = torch.empty_like(weight)
        gxf = None
        for k, D in enumerate(_chebyshev_terms(L, Gf, K)):
            D = D.view(N * B, Fout)
            if need_w:
                torch.mm(xf.t(), D, out=gw[k])
            if need_x:
                gxf = D @ weight[k].t() if gxf is None else gxf.addmm_(D, weight[k].t())
        if need_x:
            gx = gxf.view(N, B, Fin).transpose(0, 1)
        return gx, gw, gb, None


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
    if x.dtype != weight.dtype or x.device != weight.device:
        raise TypeError(
            f"x is {x.dtype} on {x.device} but the layer's weight is {weight.dtype} on "
            f"{weight.device}; move one of them with .to()"
        )


def cheb_conv(x: Tensor, L, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    r"""Functional form of :class:`ChebConv`: :math:`y = \sum_k T_k(\tilde L)\, x\, W_k + b`.

    ``x`` is ``[B, N, Fin]`` or ``[N, Fin]``, ``weight`` ``[K, Fin, Fout]``, ``bias``
    ``[Fout]`` or None, ``L`` the symmetric rescaled operator (any form
    :func:`~deepsphere.nn.operator.as_csr_operator` accepts). Returns ``[B, N, Fout]``
    (``[N, Fout]`` for a 2-d ``x``).
    """
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
    y = _ChebConvFunction.apply(x, weight, bias, Lc)
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

    Notes
    -----
    The batch is folded into the columns (``[N, B·C]``), so each polynomial order costs one
    sparse-dense product for the whole batch; the recursion runs on the narrower of the input
    and output widths and the backward pass is hand-written (it uses :math:`\tilde L^\top =
    \tilde L` and stores no intermediate terms). Weights map one to one onto
    :class:`torch_geometric.nn.ChebConv`: ``weight[k] = lins[k].weight.T``.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, bias: bool = True):
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
        return cheb_conv(x, L, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, K={self.K}, "
                f"bias={self.bias is not None}")
