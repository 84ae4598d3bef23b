"""Nonlinearities: exact ones to rounding, grid ones with an error that falls with oversampling."""
import numpy as np
import pytest
import torch

from deepsphere.sampling import Equiangular
from deepsphere.spectral import InverseSHT, num_coefficients, random_rotation
from deepsphere.spectral.nonlinear import (GatedNonlinearity, NormNonlinearity, QuadraticNonlinearity,
                                           S2GridNonlinearity, SO3GridNonlinearity, equivariance_error)
from deepsphere.spectral.so3 import so3_size


# small transforms: one thread is fastest, and robust on a shared machine
pytestmark = pytest.mark.usefixtures("single_thread")


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


def test_tensor_product_gaunt_and_equivariance():
    from deepsphere.spectral.nonlinear import TensorProduct

    # (Y_10)^2 = 1/(4 pi) + P_2 / (2 pi): c_00 = 1/sqrt(4 pi), c_20 = sqrt(4 pi / 5) / (2 pi)
    L = 3
    x = torch.zeros(1, 1, num_coefficients(L), dtype=torch.float64)
    x[0, 0, 2] = 1.0  # index l*l + l + m for (1, 0)
    y = QuadraticNonlinearity(L)(x)[0, 0]
    ref = torch.zeros(num_coefficients(L), dtype=torch.float64)
    ref[0] = 1 / np.sqrt(4 * np.pi)
    ref[6] = np.sqrt(4 * np.pi / 5) / (2 * np.pi)
    assert (y - ref).abs().max() < 1e-14
    torch.manual_seed(3)
    tp = TensorProduct(3, 2, 6).double()
    xs = torch.randn(2, 3, num_coefficients(6), dtype=torch.float64)
    assert equivariance_error(tp, xs, random_rotation(np.random.default_rng(3))) < 1e-12
    # a pair weight selects x_0 * x_1
    with torch.no_grad():
        tp.weight.zero_()
        tp.weight[0, 1] = 1.0  # pairs are (0,0), (0,1), ...
    grid = Equiangular(13, "DH")
    f = InverseSHT(grid, 6)(xs)
    eye = torch.eye(num_coefficients(6), dtype=torch.float64)
    Y = InverseSHT(grid, 6)(eye)
    proj = (Y * torch.from_numpy(grid.areas)) @ (f[:, 0] * f[:, 1]).T
    assert (tp(xs)[:, 0] - proj.T).abs().max() < 1e-12


def test_norm_nonlinearity_checks_channels():
    # its per-channel bias broadcast a 1-channel input (or a batch axis) to `channels` silently
    norm = NormNonlinearity(4, 2)
    for shape in [(1, 9), (3, 1, 9), (9,)]:
        with pytest.raises(ValueError, match="channels=4"):
            norm(torch.randn(*shape))
    assert norm(torch.randn(3, 4, 9)).shape == (3, 4, 9)


def test_dtype_mismatch_is_refused_like_cheb_conv():
    from deepsphere.spectral.nonlinear import TensorProduct
    L = 2
    x = torch.randn(1, 3, num_coefficients(L))
    for layer, name in ((NormNonlinearity(3, L), "NormNonlinearity"), (TensorProduct(3, 2, L), "TensorProduct")):
        with pytest.raises(TypeError, match=name + r": x is torch.float64.*weight is torch.float32"):
            layer(x.double())
        assert layer(x).dtype == torch.float32
        assert layer.double()(x.double()).dtype == torch.float64


def test_norm_and_gated_nonlinearities_closed_forms():
    L = 2
    x = torch.zeros(1, num_coefficients(L), dtype=torch.float64)
    x[0, 0] = -0.7                                                           # degree 0
    x[0, 1:4] = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)           # degree 1, norm 5
    x[0, 4:9] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # degree 2, norm 1
    norm = NormNonlinearity(1, L, activation=torch.relu).double()
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    # c relu(|c| + b) / |c|: degree 0 -> c 1.7 / 0.7, degree 1 -> c 3 / 5, degree 2 -> c 1.5
    ref = torch.cat([x[:, :1] * 1.7 / 0.7, x[:, 1:4] * 3 / 5, x[:, 4:] * 1.5], dim=-1)
    torch.testing.assert_close(norm(x), ref, rtol=1e-9, atol=1e-9)
    # relu(c_00) and the blocks l > 0 times sigmoid(c_00) = 1 / (1 + e^0.7)
    ref = torch.cat([torch.zeros(1, 1, dtype=torch.float64), x[:, 1:] / (1 + np.exp(0.7))], dim=-1)
    torch.testing.assert_close(GatedNonlinearity(L)(x), ref, rtol=1e-12, atol=1e-12)


def test_equivariance_error_is_relative_to_the_output():
    # ||op(D x) - D op(x)|| / ||op(x)||, recomputed with healpy's rotate_alm as the rotation
    import healpy as hp

    from deepsphere.spectral import from_healpy_alm, to_healpy_alm
    from deepsphere.spectral.rotation import healpy_rotate_alm_args

    L = 4
    x = torch.randn(num_coefficients(L), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(num_coefficients(L), dtype=torch.float64)
    mask[[1, 5, 10]] = 0.0
    op = lambda c: 7.0 * c * mask                                   # noqa: E731 (drops some orders)

    def rot(c, ang):
        a = to_healpy_alm(c, L).numpy().copy()
        hp.rotate_alm(a, *healpy_rotate_alm_args(*ang))
        return from_healpy_alm(a, L)

    ang = (0.4, 1.1, -0.8)
    ref = ((op(rot(x, ang)) - rot(op(x), ang)).norm() / op(x).norm()).item()
    assert ref > 0.1 and equivariance_error(op, x, ang) == pytest.approx(ref, rel=1e-9)


def test_equivariance_error_refuses_an_unknown_kind():
    # 'S2' used to fall through to the SO(3) rotation: "16 is not a number of SO(3) coefficients"
    x = torch.randn(num_coefficients(3), dtype=torch.float64)
    with pytest.raises(ValueError, match=r"kind must be 's2' .* or 'so3' .*got 'S2'"):
        equivariance_error(lambda c: c, x, (0.1, 0.2, 0.3), kind="S2")
    assert equivariance_error(lambda c: 2 * c, x, (0.1, 0.2, 0.3), kind="s2") < 1e-12
