r"""Layout of spherical harmonic coefficients and conversions to healpy's complex alm.

**Real basis (the layout of this package).** A real band-limited signal is

.. math:: f(\theta, \phi) = \sum_{\ell=0}^{L} \sum_{m=-\ell}^{\ell} c_{\ell m}\, Y^{\mathbb R}_{\ell m}(\theta, \phi),

stored as a real tensor ``[..., (L+1)**2]`` with :math:`c_{\ell m}` at index
:math:`\ell^2 + \ell + m` (:func:`lm_index`). The real harmonics are orthonormal:

.. math::

    Y^{\mathbb R}_{\ell m} = \begin{cases}
      \sqrt2\,(-1)^m\,\mathrm{Re}\,Y_{\ell m} = \sqrt2\,\bar\lambda_{\ell m}(\theta)\cos m\phi & m>0\\
      Y_{\ell 0} & m = 0\\
      \sqrt2\,(-1)^m\,\mathrm{Im}\,Y_{\ell |m|} = \sqrt2\,\bar\lambda_{\ell |m|}(\theta)\sin |m|\phi & m<0
    \end{cases}

where :math:`Y_{\ell m} = \lambda_{\ell m} e^{im\phi}` are the complex harmonics with the
Condon–Shortley phase (see :mod:`.legendre`) and :math:`\bar\lambda_{\ell m} = (-1)^m
\lambda_{\ell m}`. This is e3nn's / Wikipedia's real basis up to the ordering of the axes.

**Complex alm (healpy).** For a real signal :math:`a_{\ell,-m} = (-1)^m \overline{a_{\ell m}}`, so
healpy stores :math:`m \ge 0` only, at index ``m * (2 * L + 1 - m) // 2 + l``. The two layouts are
related by

.. math::

    a_{\ell 0} = c_{\ell 0}, \qquad
    a_{\ell m} = \frac{(-1)^m}{\sqrt 2}\,(c_{\ell m} - i\, c_{\ell,-m}) \quad (m > 0).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..nn.cheb_conv import check_layer_dtype  # noqa: F401  (the spectral layers check as ChebConv does)


def num_coefficients(lmax: int) -> int:
    """Number of real coefficients up to degree ``lmax``: :math:`(L+1)^2`."""
    return (int(lmax) + 1) ** 2


def lm_index(l, m):
    """Index of :math:`c_{\\ell m}` in the real layout: :math:`\\ell^2 + \\ell + m`."""
    return l * l + l + m


def degrees_orders(lmax: int):
    """Arrays ``(l, m)`` of the degree and order of each real coefficient, shape ``((L+1)**2,)``."""
    l = np.repeat(np.arange(lmax + 1), 2 * np.arange(lmax + 1) + 1)
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    return l, m


def lmax_from_size(n: int) -> int:
    """The ``lmax`` of a real coefficient vector with ``n`` entries, or a clear error."""
    L = int(round(np.sqrt(n))) - 1
    if (L + 1) ** 2 != n:
        raise ValueError(
            f"a real coefficient vector has (lmax+1)**2 entries; {n} is not of that form"
        )
    return L


def healpy_size(lmax: int) -> int:
    """Number of healpy alm with ``mmax = lmax``."""
    return (lmax + 1) * (lmax + 2) // 2


@lru_cache(maxsize=64)
def _tables(lmax: int):
    """Gather indices and scales between the real layout and a dense ``[m, l]`` complex
    matrix stored as the concatenation ``(re.ravel(), im.ravel())`` of length ``2 (L+1)^2``.
    """
    L1 = lmax + 1
    n = L1 * L1
    # real -> (re, im) matrix
    to_mat_idx = np.zeros(2 * n, dtype=np.int64)
    to_mat_scale = np.zeros(2 * n)
    # (re, im) matrix -> real
    to_real_idx = np.zeros(n, dtype=np.int64)
    to_real_scale = np.zeros(n)
    r2 = np.sqrt(2.0)
    for m in range(L1):
        sgn = -1.0 if m % 2 else 1.0
        for l in range(m, L1):
            q = m * L1 + l
            if m == 0:
                to_mat_idx[q], to_mat_scale[q] = lm_index(l, 0), 1.0
                to_real_idx[lm_index(l, 0)], to_real_scale[lm_index(l, 0)] = q, 1.0
            else:
                to_mat_idx[q], to_mat_scale[q] = lm_index(l, m), sgn / r2
                to_mat_idx[n + q], to_mat_scale[n + q] = lm_index(l, -m), -sgn / r2
                to_real_idx[lm_index(l, m)], to_real_scale[lm_index(l, m)] = q, sgn * r2
                to_real_idx[lm_index(l, -m)], to_real_scale[lm_index(l, -m)] = n + q, -sgn * r2
    # healpy index of each dense (m, l) entry with l >= m
    ms, ls = np.triu_indices(L1)  # m <= l, ordered by m then l: healpy's order
    hp_q = ms * L1 + ls
    return to_mat_idx, to_mat_scale, to_real_idx, to_real_scale, hp_q


@lru_cache(maxsize=64)
def _device_tables(lmax: int, dtype: torch.dtype, device: torch.device):
    """:func:`_tables` as tensors on a device (cached: no host-to-device copy per call)."""
    a, b, c, d, q = _tables(lmax)
    return (torch.as_tensor(a, device=device), torch.as_tensor(b, dtype=dtype, device=device),
            torch.as_tensor(c, device=device), torch.as_tensor(d, dtype=dtype, device=device),
            torch.as_tensor(q, device=device))


def check_int(value, what: str, minimum: int = 0) -> int:
    """``value`` as an int, refusing booleans (``int(True) == 1``), fractions (``int(3.7) == 3``)
    and values below ``minimum``: each would otherwise pass silently as another band limit."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got the boolean {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if n != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if n < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return n


def check_float(x, what: str) -> None:
    """Refuse what the spectral layers cannot compute on: a non-tensor, an integer or complex
    tensor (its casts would truncate the Wigner-D, filter and quadrature tables to integers),
    or a 0-d tensor (no coefficient or pixel axis)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch tensor, got {type(x).__name__}; convert it with "
                        "torch.as_tensor(x, dtype=torch.float64)")
    if not torch.is_floating_point(x):
        raise TypeError(f"{what} must be a real floating tensor (float32 or float64), got {x.dtype}; "
                        "convert it with .double() or .float()")
    if x.dim() == 0:
        raise ValueError(f"{what} must have a last axis of coefficients or pixels, got a 0-d tensor")


def autocast_on(x) -> bool:
    """Whether ``x`` is computed on under ``torch.autocast``: the layers with weights then run
    in their weights' precision, autocast off, as :class:`deepsphere.nn.ChebConv` does (the
    transforms' FFTs and the rounding of the quadratures want float32 at least)."""
    return (isinstance(x, torch.Tensor) and x.is_floating_point()
            and torch.is_autocast_enabled(x.device.type))


def _check_real(c: torch.Tensor, lmax: int) -> None:
    if c.shape[-1] != num_coefficients(lmax):
        raise ValueError(
            f"expected {num_coefficients(lmax)} real coefficients ((lmax+1)**2 with lmax={lmax}) "
            f"on the last axis, got shape {tuple(c.shape)}"
        )


def real_to_matrix(c: torch.Tensor, lmax: int):
    """Real coefficients ``[..., (L+1)^2]`` -> ``(re, im)`` of the complex :math:`a_{\\ell m}`
    as dense ``[..., m, l]`` tensors (zero where :math:`\\ell < m`)."""
    _check_real(c, lmax)
    idx, scale, *_ = _device_tables(lmax, c.dtype, c.device)
    flat = c[..., idx] * scale
    L1 = lmax + 1
    re, im = flat.split(L1 * L1, dim=-1)
    return re.reshape(*c.shape[:-1], L1, L1), im.reshape(*c.shape[:-1], L1, L1)


def matrix_to_real(re: torch.Tensor, im: torch.Tensor, lmax: int) -> torch.Tensor:
    """Inverse of :func:`real_to_matrix` (reads only the :math:`\\ell \\ge m` entries)."""
    _, _, idx, scale, _ = _device_tables(lmax, re.dtype, re.device)
    L1 = lmax + 1
    flat = torch.cat([re.reshape(*re.shape[:-2], L1 * L1), im.reshape(*im.shape[:-2], L1 * L1)], -1)
    return flat[..., idx] * scale


def to_healpy_alm(c: torch.Tensor, lmax: int) -> torch.Tensor:
    """Real coefficients ``[..., (L+1)^2]`` -> healpy complex alm ``[..., (L+1)(L+2)/2]``."""
    c = torch.as_tensor(c)
    re, im = real_to_matrix(c, lmax)
    q = torch.as_tensor(_tables(lmax)[4], device=c.device)
    L1 = lmax + 1
    re = re.reshape(*re.shape[:-2], L1 * L1)[..., q]
    im = im.reshape(*im.shape[:-2], L1 * L1)[..., q]
    return torch.complex(re, im)


def from_healpy_alm(alm, lmax: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """healpy complex alm ``[..., (L+1)(L+2)/2]`` (``mmax = lmax``; numpy or torch) -> real
    coefficients ``[..., (L+1)^2]``. The imaginary part of :math:`a_{\\ell 0}` is ignored."""
    alm = torch.as_tensor(alm)
    if not alm.is_complex():
        raise TypeError(f"healpy alm must be complex, got dtype {alm.dtype}")
    n = alm.shape[-1]
    L = int(round((np.sqrt(8 * n + 1) - 3) / 2)) if lmax is None else int(lmax)
    if healpy_size(L) != n:
        raise ValueError(
            f"{n} alm do not match lmax={L} with mmax=lmax ((lmax+1)(lmax+2)/2 = {healpy_size(L)})"
        )
    dtype = dtype or (torch.float64 if alm.dtype == torch.complex128 else torch.float32)
    L1 = L + 1
    q = torch.as_tensor(_tables(L)[4], device=alm.device)
    re = alm.real.new_zeros(*alm.shape[:-1], L1 * L1).to(dtype)
    im = re.clone()
    re[..., q] = alm.real.to(dtype)
    im[..., q] = alm.imag.to(dtype)
    return matrix_to_real(re.reshape(*re.shape[:-1], L1, L1), im.reshape(*im.shape[:-1], L1, L1), L)
