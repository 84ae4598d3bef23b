"""Spectral (exactly equivariant) operations on the sphere and on SO(3): the exact reference
beside the graph convolutions.

Conventions (each stated once, in its module):

- coefficients are real, ``[..., (lmax+1)**2]``, index ``l*l + l + m``
  (:mod:`.coefficients`; conversions to/from healpy's complex alm);
- signals are ``[..., npix]`` in the sampling's order (NESTED for HEALPix), except the
  signal-level layers and models, which take ``[batch, vertices, channels]`` like ChebConv;
- rotations are active ZYZ Euler angles ``(alpha, beta, gamma)`` or ``(3, 3)`` matrices,
  ``R = Rz(alpha) Ry(beta) Rz(gamma)``, acting as ``f -> f(R^{-1} x)`` (:mod:`.rotation`);
- SO(3) coefficients are ``[..., so3_size(lmax)]`` blocks ``F^l_{mn}`` (:mod:`.so3`).

Main entry points: :class:`SHT` / :class:`InverseSHT` (and :func:`sht` / :func:`isht`),
:func:`rotate_coefficients`, :func:`rotate_signal`, :func:`wigner_D_real`, :class:`ZonalFilter`,
:class:`ZonalConv`, :class:`S2Conv`, :class:`SO3Conv`, :class:`SO3ToS2`,
:class:`SO3Synthesis` / :class:`SO3Analysis`, the nonlinearities of :mod:`.nonlinear`,
:class:`SpectralClassifier`, :class:`SpectralSegmenter`."""
from .coefficients import (degrees_orders, from_healpy_alm, lm_index, lmax_from_size,
                           num_coefficients, to_healpy_alm)
from .filters import ZonalConv, ZonalFilter
from .legendre import legendre_table
from .rings import RingGeometry, ring_geometry
from .models import SpectralClassifier, SpectralSegmenter, ZonalClassifier
from .nonlinear import (GatedNonlinearity, NormNonlinearity, QuadraticNonlinearity,
                        S2GridNonlinearity, SO3GridNonlinearity, TensorProduct, equivariance_error)
from .rotation import (as_euler, euler_to_matrix, healpy_rotate_alm_args, healpy_rotator,
                       matrix_to_euler, random_rotation, rotate_coefficients, rotate_signal,
                       wigner_D_blocks, wigner_D_complex, wigner_D_real, wigner_d_small)
from .so3 import (S2Conv, SO3Analysis, SO3Conv, SO3Grid, SO3Synthesis, SO3ToS2, real_sph_harm,
                  rotate_so3_coefficients, so3_index, so3_size)
from .transforms import SHT, InverseSHT, default_lmax, isht, sht

__all__ = [
    "SHT", "InverseSHT", "sht", "isht", "default_lmax", "legendre_table", "ring_geometry",
    "RingGeometry", "lm_index", "num_coefficients", "degrees_orders", "lmax_from_size",
    "to_healpy_alm", "from_healpy_alm", "rotate_coefficients", "rotate_signal",
    "euler_to_matrix", "matrix_to_euler", "as_euler", "random_rotation", "wigner_d_small",
    "wigner_D_complex", "wigner_D_real", "wigner_D_blocks", "healpy_rotate_alm_args",
    "healpy_rotator", "ZonalFilter", "ZonalConv", "S2Conv", "SO3Conv", "SO3ToS2", "SO3Grid",
    "SO3Synthesis", "SO3Analysis", "rotate_so3_coefficients", "so3_size", "so3_index",
    "real_sph_harm", "S2GridNonlinearity", "SO3GridNonlinearity", "NormNonlinearity",
    "GatedNonlinearity", "QuadraticNonlinearity", "equivariance_error", "TensorProduct", "SpectralClassifier",
    "SpectralSegmenter", "ZonalClassifier",
]
