"""Nonlinearities: exact ones to rounding, grid ones with an error that falls with oversampling."""
import numpy as np
import pytest
import torch

from deepsphere.sampling import Equiangular
from deepsphere.spectral import InverseSHT, num_coefficients, random_rotation
from deepsphere.spectral.nonlinear import (GatedNonlinearity, NormNonlinearity, QuadraticNonlinearity,
                                           S2GridNonlinearity, SO3GridNonlinearity, equivariance_error)
from deepsphere.spectral.so3 import so3_size


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # small transforms: one thread is fastest, and robust on a shared machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
    else:
        with threadpool_limits(1):
            yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_exact_nonlinearities(dtype, tol):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    L = 8
    x = torch.randn(3, 4, num_coefficients(L), dtype=dtype)
    norm = NormNonlinearity(4, L).to(dtype)
    with torch.no_grad():
        norm.bias.normal_()
    for op in (norm, GatedNonlinearity(L), QuadraticNonlinearity(L)):
        for _ in range(2):
            assert equivariance_error(op, x, random_rotation(rng)) <= tol, op


def test_quadratic_is_the_square_of_the_signal():
    torch.manual_seed(1)
    L = 5
    x = torch.randn(num_coefficients(L), dtype=torch.float64)
    y = QuadraticNonlinearity(L)(x)
    # compare with the square evaluated on an independent fine grid, projected by quadrature
    s = Equiangular(20, "DH")
    f = InverseSHT(s, L)(x)
    eye = torch.eye(num_coefficients(L), dtype=torch.float64)
    Y = InverseSHT(s, L)(eye)
    ref = (Y * torch.from_numpy(s.areas)) @ (f * f)
    assert (y - ref).abs().max() < 1e-12


def test_grid_nonlinearity_error_falls_with_oversampling():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    L = 8
    x = torch.randn(4, num_coefficients(L), dtype=torch.float64)
    R = random_rotation(rng)
    errs = [equivariance_error(S2GridNonlinearity(L, oversampling=o), x, R) for o in (1, 4)]
    assert 1e-6 < errs[0] < 1.0 and errs[1] < errs[0]
    g = torch.randn(2, so3_size(3), dtype=torch.float64)
    e1 = equivariance_error(SO3GridNonlinearity(3, oversampling=1), g, R, kind="so3")
    e2 = equivariance_error(SO3GridNonlinearity(3, oversampling=3), g, R, kind="so3")
    assert 0 < e2 < e1 < 1.0


def test_shapes_and_errors():
    L = 3
    with pytest.raises(ValueError, match="bandwidth"):
        S2GridNonlinearity(L, bandwidth=3)
    with pytest.raises(ValueError, match="coefficients"):
        GatedNonlinearity(L)(torch.randn(2, 15))
    x = torch.randn(2, 5, num_coefficients(L))
    assert NormNonlinearity(5, L)(x).shape == x.shape
    assert S2GridNonlinearity(L)(x).shape == x.shape
