"""How equivariant is an operator on the sphere? Exact rotations of band-limited signals, the
per-degree equivariance error of a Laplacian, a filter or a whole model, kernel-width
optimisation, and sweeps over samplings and graphs (``deepsphere equivariance CONFIG``)."""
from .harmonics import DegreeSpace, random_coefficients, real_harmonics
from .measure import EquivarianceResult, cheb_filter, equivariance_error, rotate_output
from .optimise import KernelWidthResult, optimise_kernel_width
from .rotation import (band_limit, exact_rotation_available, random_rotations, rotate_interpolated,
                       rotate_signal)

__all__ = ["DegreeSpace", "random_coefficients", "real_harmonics", "EquivarianceResult",
           "equivariance_error", "cheb_filter", "optimise_kernel_width", "KernelWidthResult", "rotate_output", "random_rotations",
           "rotate_signal", "rotate_interpolated", "band_limit", "exact_rotation_available"]
