r"""Per-degree equivariance error of an operator on a sampling.

For an operator :math:`L` (a graph Laplacian, a Chebyshev filter, a spectral layer, a whole
model), a random rotation :math:`R` and a random real signal :math:`f` living at a single degree
:math:`\ell`,

.. math:: E(f, R) = \frac{\|R_V L f - L R_V f\|}{\|L f\|}

(DeepSphere, ICLR 2020, eq. 11 without the square; :attr:`EquivarianceResult.mean_squared` is the
mean of :math:`E^2`, the formula as printed). :math:`E(\ell)` averages it over ``n_signals``
signals and ``n_rotations`` Haar-random rotations. For an invariant output (a classifier's
logits) the *invariance* error :math:`\|L R_V f - L f\| / \|L f\|` is measured instead.

How :math:`R_V` acts (the subtle part). :math:`R_V f` is exact: the rotated degree-:math:`\ell`
coefficients :math:`D^\ell(R)\,c` synthesised on the same points. :math:`L f` is not band-limited,
so :math:`R_V L f = T R T^{-1} L f` depends on the analysis :math:`T^{-1}`. We split :math:`L f`
into its least-squares component in the sampled degree-:math:`\ell` space (rotated exactly) and
the residual (rotated by :func:`~deepsphere.equivariance.rotate_signal` up to the sampling's band
limit, or by interpolation on irregular samplings). So :math:`T^{-1}` is exact on every sampled
degree-:math:`\ell` signal: an operator that maps them to multiples of themselves (any isotropic
filter, :math:`L f = \lambda_\ell f`) shows zero error whatever the quadrature. Rotating
:math:`L f` with healpy's plain ``map2alm`` instead would add its quadrature error (up to ~20 %
at :math:`\ell \approx 3 n_{side}`) to :math:`R_V L f` but not to :math:`L R_V f`, a spurious
floor; the published curves do not have it.

The published protocol (``protocol="published"``). DeepSphere's ICLR 2020 figure applied
:math:`R_V = T R T^{-1}` to both :math:`f` and :math:`L f`, with :math:`T^{-1}` healpy's
``map2alm`` up to :math:`3 n_{side} - 1` (``Rotator.rotate_map_alms``). Its values are reproduced
with a single quadrature pass (``iterations=0``, the default of that protocol). The quadrature
error of :math:`T^{-1} f` lands on all degrees, where :math:`L` multiplies it by
:math:`\lambda_{\ell'} / \lambda_\ell \gg 1` for smooth signals, so this protocol adds a
measurement error that dominates the low degrees of accurate graphs (k = 40 at
:math:`\ell = 10`: 0.047 instead of 0.012). It is kept to compare with the published curves;
the default protocol is the exact one.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from ..sampling import Sampling
from .harmonics import DegreeSpace, random_coefficients
from .rotation import exact_rotation_available, random_rotations, rotate_interpolated, rotate_signal

KINDS = ("auto", "equivariance", "invariance")
RESIDUALS = ("harmonic", "interpolated")
PROTOCOLS = ("exact", "published")


@dataclass
class EquivarianceResult:
    """Errors ``ratios[i, j]`` of sample ``j`` (signal x rotation) at degree ``degrees[i]``."""

    degrees: np.ndarray
    ratios: np.ndarray
    kind: str
    info: dict = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        r"""Mean of :math:`E = \|R_V L f - L R_V f\| / \|L f\|` per degree (not squared)."""
        return self.ratios.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        return self.ratios.std(axis=1)

    @property
    def mean_squared(self) -> np.ndarray:
        """Mean of :math:`E^2` per degree (the paper's printed formula)."""
        return (self.ratios ** 2).mean(axis=1)

    def overall(self, squared: bool = False) -> float:
        """Mean over degrees of :attr:`mean` (or :attr:`mean_squared`)."""
        return float((self.mean_squared if squared else self.mean).mean())

    def __repr__(self) -> str:
        rows = ", ".join(f"{l}: {e:.3g}" for l, e in zip(self.degrees, self.mean))
        return f"EquivarianceResult({self.kind}, E(l) = {{{rows}}})"


# ---- operators ----------------------------------------------------------------------------
class _Operator:
    """Uniform view of an operator: ``apply(f[S, Cin, V]) -> [S, Cout, V]`` (field) or ``[S, C]``."""

    def __init__(self, op, laplacian: str):
        import torch

        self.module = None
        self.matrix = None
        self.fn = None
        from ..graph import SphereGraph

        if isinstance(op, SphereGraph):
            self.matrix = op.laplacian(laplacian)
        elif sp.issparse(op) or (isinstance(op, np.ndarray) and op.ndim == 2):
            if op.shape[0] != op.shape[1]:
                raise ValueError(f"an operator matrix must be square, got shape {op.shape}")
            self.matrix = sp.csr_matrix(op) if sp.issparse(op) else np.asarray(op)
        elif isinstance(op, torch.nn.Module):
            self.module = op
        elif callable(op):
            self.fn = op
        else:
            raise TypeError(
                "operator must be a SphereGraph, a square scipy.sparse/numpy matrix, a "
                f"torch.nn.Module ([B, V, C] -> [B, V, C'] or [B, C']) or a callable; got {type(op).__name__}")

    def apply(self, f: np.ndarray) -> np.ndarray:
        S, C, V = f.shape
        if self.matrix is not None:
            if self.matrix.shape[0] != V:
                raise ValueError(f"operator is {self.matrix.shape[0]} x {self.matrix.shape[0]} but the sampling has {V} points")
            y = self.matrix @ f.reshape(S * C, V).T
            return np.asarray(y).T.reshape(S, C, V)
        if self.module is not None:
            import torch

            p = next(iter(self.module.parameters()), None)
            dtype = p.dtype if p is not None else torch.float32
            was = self.module.training
            self.module.eval()
            try:
                with torch.no_grad():
                    y = self.module(torch.as_tensor(f.transpose(0, 2, 1).copy(), dtype=dtype))
            finally:
                self.module.train(was)
            y = y.detach().cpu().double().numpy()
        else:
            x = f[:, 0, :] if C == 1 else f.transpose(0, 2, 1)
            y = np.asarray(self.fn(x), dtype=np.float64)
        # [B, V]: one value per vertex (a squeezed channel axis), not V invariant outputs
        if y.ndim == 2 and y.shape[1] == V:
            return y[:, None, :]
        return y.transpose(0, 2, 1) if y.ndim == 3 else y


@contextlib.contextmanager
def limit_threads(n: Optional[int]):
    """Limit OpenMP (healpy) and BLAS threads to ``n`` inside the block: their threads spin-wait
    and slow down by 10-30x on a busy machine, and the small transforms and factorisations of
    a measurement gain nothing from them."""
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional
        yield
        return
    with threadpool_limits(limits=int(n)):
        yield


def rotate_output(y: np.ndarray, space: DegreeSpace, rotation: np.ndarray, residual: str,
                  iterations: int = 3) -> np.ndarray:
    r""":math:`R_V y` for outputs ``y[S, C, V]`` of an operator applied to degree-:math:`\ell`
    signals: exact on the degree-:math:`\ell` component, harmonic (or interpolated) on the rest."""
    S, C, V = y.shape
    y2 = y.reshape(S * C, V)
    c = space.project(y2)
    inside = space.synthesize(c)
    rest = y2 - inside
    if residual == "harmonic":
        rest_rot = rotate_signal(rest, space.sampling, rotation, iterations=iterations)
    else:
        rest_rot = rotate_interpolated(rest, space.sampling, rotation)
    out = space.synthesize(space.rotate(c, rotation)) + rest_rot
    return out.reshape(S, C, V)


def equivariance_error(operator, sampling: Sampling, degrees: Sequence[int], n_signals: int = 4,
                       n_rotations: int = 2, seed: int = 0, *, laplacian: str = "normalized",
                       kind: str = "auto", in_channels: int = 1, residual: Optional[str] = None,
                       iterations: Optional[int] = None, threads: Optional[int] = 1,
                       protocol: str = "exact") -> EquivarianceResult:
    r"""Per-degree equivariance (or invariance) error :math:`E(\ell)` of an operator.

    Parameters
    ----------
    operator : SphereGraph | scipy.sparse / ndarray (V, V) | torch.nn.Module | callable
        A graph (its ``laplacian`` is measured), a matrix, a module taking ``[B, V, C_in]``
        (ChebConv wrapped with its Laplacian, a model, a spectral layer) and returning
        ``[B, V, C_out]`` or ``[B, V]`` (equivariance) or ``[B, C_out]`` (invariance), or a
        function of numpy arrays ``[B, V]`` (``[B, V, C_in]`` if ``in_channels > 1``) returning
        the same.
    sampling : Sampling
        Where the signals live (HEALPix pixels in NESTED order).
    degrees : sequence of int
        Degrees :math:`\ell` of the test signals.
    n_signals, n_rotations : int
        Random signals per degree and Haar-random rotations (the same rotations at every degree,
        so two operators measured with the same seed see the same rotations and signals).
    seed : int
        Seed of the numpy Generator drawing rotations and signals.
    kind : {'auto', 'equivariance', 'invariance'}
        ``auto``: invariance for outputs without a vertex axis.
    in_channels : int
        Input channels; each gets an independent signal of the same degree.
    residual : {'harmonic', 'interpolated'}, optional
        How the part of :math:`L f` outside degree :math:`\ell` is rotated; default harmonic on
        iso-latitude samplings, interpolated (approximate) elsewhere.
    iterations : int, optional
        Jacobi steps of the HEALPix analysis :math:`T^{-1}`: on the residual of the exact
        protocol (default 3), on both signals of the published protocol (default 0).
    threads : int or None
        OpenMP and BLAS threads inside the measurement (``None``: leave as is).
    protocol : {'exact', 'published'}
        ``'exact'`` (default): :math:`R_V f` exact, :math:`R_V L f` exact on degree
        :math:`\ell` (see the module's notes). ``'published'``: DeepSphere ICLR 2020's
        :math:`R_V = T R T^{-1}` on both :math:`f` and :math:`L f` (harmonic rotation up to
        the band limit, single-pass HEALPix quadrature by default); it reproduces the published
        curves, quadrature error included. Iso-latitude samplings only; equivariance only.

    Returns
    -------
    EquivarianceResult
        ``.mean`` (the unsquared ratio, what the published curves show), ``.mean_squared``,
        ``.std``, ``.ratios``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    given = list(degrees)
    # int() would measure degree 2 for 2.5 and degree 1 for True
    if not all(isinstance(d, (int, np.integer, float, np.floating)) and not isinstance(d, (bool, np.bool_))
               and float(d) == int(d) for d in given):
        raise ValueError(f"degrees must be a non-empty list of integers >= 1, got {given}")
    degrees = np.asarray(given, dtype=int)
    if degrees.size == 0 or degrees.min() < 1:
        raise ValueError(f"degrees must be a non-empty list of integers >= 1, got {degrees.tolist()}")
    counts = {"n_signals": n_signals, "n_rotations": n_rotations, "in_channels": in_channels}
    for name, n in counts.items():
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {n!r}")
    if n_signals < 1 or n_rotations < 1 or in_channels < 1:
        raise ValueError("n_signals, n_rotations and in_channels must be >= 1")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "published":
        if not exact_rotation_available(sampling):
            raise ValueError(f"the published protocol rotates in harmonic space; {sampling!r} has no "
                             "harmonic rotation (use protocol='exact', which interpolates)")
        if kind == "invariance":
            raise ValueError("the published protocol measures equivariance; use protocol='exact' for invariance")
        if residual == "interpolated":
            raise ValueError("the published protocol rotates in harmonic space; residual='interpolated' "
                             "applies to protocol='exact' only")
    if iterations is None:
        iterations = 0 if protocol == "published" else 3
    if residual is None:
        residual = "harmonic" if exact_rotation_available(sampling) else "interpolated"
    if residual not in RESIDUALS:
        raise ValueError(f"residual must be one of {RESIDUALS}, got {residual!r}")
    if residual == "harmonic":
        from .rotation import band_limit

        L = band_limit(sampling)
        if degrees.max() > L:
            raise ValueError(f"degrees up to {degrees.max()} exceed the band limit {L} of {sampling!r}")
    _check_same_points(operator, sampling)
    op = _Operator(operator, laplacian)
    rng = np.random.default_rng(seed)
    rotations = random_rotations(n_rotations, rng)
    ratios = np.empty((len(degrees), n_signals * n_rotations))
    out_kind = None
    with limit_threads(threads):
        for i, ell in enumerate(degrees):
            space = DegreeSpace.cached(sampling, int(ell))
            c = random_coefficients(int(ell), n_signals * in_channels, rng)
            f = space.synthesize(c).reshape(n_signals, in_channels, -1)
            y = op.apply(f)
            k = kind if kind != "auto" else ("equivariance" if y.ndim == 3 else "invariance")
            if k == "equivariance" and y.ndim != 3:
                raise ValueError(f"equivariance needs an output per vertex; the operator returned shape {y.shape}")
            out_kind = k
            if protocol == "published" and k != "equivariance":
                raise ValueError("the published protocol measures equivariance; the operator returned "
                                 f"shape {y.shape} (no vertex axis)")
            den = np.sqrt(np.sum(y.reshape(n_signals, -1) ** 2, axis=1))
            if np.any(den == 0):
                raise ValueError(f"the operator's output is zero for a degree-{ell} signal: the ratio is undefined")
            for j, R in enumerate(rotations):
                if protocol == "published":  # R_V = T R T^{-1} on both sides
                    fR = rotate_signal(f, sampling, R, iterations=iterations)
                    yR = op.apply(fR)
                    yV = y.reshape(-1, y.shape[-1])
                    diff = rotate_signal(yV, sampling, R, iterations=iterations).reshape(y.shape) - yR
                    num = np.sqrt(np.sum(diff.reshape(n_signals, -1) ** 2, axis=1))
                    ratios[i, j * n_signals:(j + 1) * n_signals] = num / den
                    continue
                fR = space.synthesize(space.rotate(c, R)).reshape(n_signals, in_channels, -1)
                yR = op.apply(fR)
                if k == "invariance":
                    diff = yR - y
                else:
                    diff = rotate_output(y, space, R, residual, iterations) - yR
                num = np.sqrt(np.sum(diff.reshape(n_signals, -1) ** 2, axis=1))
                ratios[i, j * n_signals:(j + 1) * n_signals] = num / den
    info = {"n_signals": n_signals, "n_rotations": n_rotations, "seed": seed,
            "residual": residual, "laplacian": laplacian, "protocol": protocol,
            "iterations": iterations}
    return EquivarianceResult(degrees, ratios, out_kind, info)


def _check_same_points(operator, sampling: Sampling) -> None:
    """A graph or model that knows its sampling must be measured on the same points: on
    other points of the same count (another draw of stations, a permuted list) the signals
    would be read at the wrong vertices and the error would be a plausible-looking number."""
    own = getattr(operator, "sampling", None)
    if not isinstance(own, Sampling) or own is sampling:
        return
    a, b = own.vectors, sampling.vectors
    if a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-9):
        return
    where = ("" if a.shape != b.shape else
             f"; the first differing point is vertex {int(np.flatnonzero(np.abs(a - b).max(1) > 1e-9)[0])}")
    raise ValueError(
        f"the {type(operator).__name__} was built on {own!r}, whose points differ from those of the "
        f"sampling measured on, {sampling!r}{where}: measure it on its own sampling "
        f"(equivariance_error(op, op.sampling, ...))")


def cheb_filter(graph, K: int = 5, laplacian: str = "normalized", seed: int = 0,
                channels: int = 1):
    r"""A random :class:`deepsphere.nn.ChebConv` bound to a graph's rescaled Laplacian, as a
    module ``[B, V, channels] -> [B, V, channels]`` for :func:`equivariance_error`."""
    import torch

    from ..nn import ChebConv

    class _Bound(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.conv = ChebConv(channels, channels, K, bias=False)
            self.L = graph.chebyshev_operator(laplacian, dtype=torch.float64)

        def forward(self, x):
            return self.conv(x, self.L)

    return _Bound().double()
