"""Zonal spectral filters: exact equivariance under rotations done in harmonic space."""
import numpy as np
import pytest
import torch

from deepsphere.sampling import Equiangular, HEALPix
from deepsphere.spectral import (InverseSHT, SHT, from_healpy_alm, num_coefficients,
                                 random_rotation, rotate_coefficients, to_healpy_alm)
from deepsphere.spectral.filters import ZonalConv, ZonalFilter, interpolation_matrix


# small transforms: one thread is fastest, and robust on a shared machine
pytestmark = pytest.mark.usefixtures("single_thread")


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("n_anchors", [None, 4])
def test_zonal_filter_equivariant(dtype, tol, n_anchors):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    L = 24
    f = ZonalFilter(3, 5, L, n_anchors=n_anchors).to(dtype)
    with torch.no_grad():
        f.bias.normal_()
    x = torch.randn(2, 3, num_coefficients(L), dtype=dtype)
    for _ in range(3):
        R = random_rotation(rng)
        assert rel(f(rotate_coefficients(x, R)), rotate_coefficients(f(x), R)) <= tol


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_zonal_conv_equivariant_on_grid(dtype, tol):
    # signal-level layer on a DH grid; the rotation is done in harmonic space
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    s = Equiangular(16, "DH")
    L = 15
    conv = ZonalConv(s, 2, 4, L, n_anchors=5).to(dtype)
    syn, ana = InverseSHT(s, L), SHT(s, L)
    c = torch.randn(3, 2, num_coefficients(L), dtype=dtype)
    R = random_rotation(rng)
    x = syn(c).transpose(-1, -2)                               # [batch, vertices, channels]
    x_rot = syn(rotate_coefficients(c, R)).transpose(-1, -2)
    y = conv(x).transpose(-1, -2)
    y_rot_after = syn(rotate_coefficients(ana(y), R))
    assert rel(conv(x_rot).transpose(-1, -2), y_rot_after) <= tol


def test_zonal_conv_on_healpix_shapes_and_equivariance_level():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    s = HEALPix(8)
    L = 16
    conv = ZonalConv(s, 1, 2, L, iterations=3).double()
    syn = InverseSHT(s, L)
    c = torch.randn(2, 1, num_coefficients(L), dtype=torch.float64)
    R = random_rotation(rng)
    x, xr = syn(c).transpose(-1, -2), syn(rotate_coefficients(c, R)).transpose(-1, -2)
    y = conv(x)
    assert y.shape == (2, s.npix, 2)
    yr_ref = syn(rotate_coefficients(SHT(s, L, 10)(y.transpose(-1, -2)), R)).transpose(-1, -2)
    assert rel(conv(xr), yr_ref) < 1e-3  # HEALPix analysis is approximate (table in RESULTS.md)


def test_zonal_conv_compute_dtype_keeps_io_dtype_and_float64_tables():
    # float32 in and out, float64 inside: the output is the float64 layer's output on the same
    # float32 input, up to the final rounding to float32; .float() must not round the tables
    torch.manual_seed(3)
    s = HEALPix(8)
    conv = ZonalConv(s, 2, 3, lmax=16, iterations=4, compute_dtype=torch.float64).float()
    assert conv.filter.weight.dtype == torch.float32
    assert conv.analysis.lam_0.dtype == conv.synthesis.lam_0.dtype == torch.float64
    ref = ZonalConv(s, 2, 3, lmax=16, iterations=4).double()
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, s.npix, 2)
    y = conv(x)
    assert y.dtype == torch.float32
    y_ref = ref(x.double())
    assert rel(y.double(), y_ref) <= 5e-8          # float32 compute: 1.5e-7
    assert "compute_dtype=torch.float64" in repr(conv)
    with pytest.raises(ValueError, match="compute_dtype"):
        ZonalConv(s, 1, 1, lmax=4, compute_dtype=torch.float16)


def test_filter_is_isotropic_convolution():
    # a delta at the north pole is filtered into the zonal kernel sum_l w_l sqrt((2l+1)/4pi) Y_l0
    L = 10
    f = ZonalFilter(1, 1, L, bias=False).double()
    w = f.degree_weights()[0, 0].detach().numpy()
    s = Equiangular(12, "GL")
    delta = torch.zeros(1, num_coefficients(L), dtype=torch.float64)
    for l in range(L + 1):
        delta[0, l * l + l] = np.sqrt((2 * l + 1) / (4 * np.pi))  # Y_l0(north pole)
    with torch.no_grad():
        k = InverseSHT(s, L)(f(delta)[0])
    ref = sum(w[l] * (2 * l + 1) / (4 * np.pi) * np.polynomial.legendre.Legendre.basis(l)(np.cos(s.theta))
              for l in range(L + 1))
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-12)
    # it depends on theta only
    grid = k.reshape(s.nlat, s.nlon)
    assert (grid - grid[:, :1]).abs().max() < 1e-12


def test_complex_degree_weights_break_equivariance():
    # multiplying healpy alm (m >= 0) by a complex weight per degree gives a real signal again,
    # but the operator commutes only with rotations about z: not equivariant
    rng = np.random.default_rng(3)
    L = 12
    w = torch.from_numpy(np.exp(1j * rng.uniform(0, 2 * np.pi, L + 1)))
    ell = torch.from_numpy(np.concatenate([np.arange(m, L + 1) for m in range(L + 1)]))

    def complex_filter(c):
        return from_healpy_alm(to_healpy_alm(c, L) * w[ell], L)

    c = torch.randn(num_coefficients(L), dtype=torch.float64)
    R = random_rotation(rng)
    err = rel(complex_filter(rotate_coefficients(c, R)), rotate_coefficients(complex_filter(c), R))
    assert err > 0.1
    z_only = (0.7, 0.0, 0.0)
    assert rel(complex_filter(rotate_coefficients(c, z_only)), rotate_coefficients(complex_filter(c), z_only)) < 1e-12
    # our layer has real weights only, one per (out, in, degree)
    f = ZonalFilter(1, 1, L)
    assert not f.weight.is_complex() and f.degree_weights().shape == (1, 1, L + 1)


def test_interpolation_and_errors():
    M = interpolation_matrix(8, 3)  # anchors at 0, 4, 8
    np.testing.assert_allclose(M.sum(0), 1.0)
    np.testing.assert_allclose(M[:, 2], [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="n_anchors"):
        interpolation_matrix(8, 1)
    # 16 anchors over degrees 0..5: 10 of them would sit between degrees, never used
    with pytest.raises(ValueError, match=r"n_anchors=16 is more than the lmax \+ 1 = 6"):
        ZonalFilter(1, 1, 5, n_anchors=16)
    f = ZonalFilter(2, 3, 4)
    with pytest.raises(ValueError, match="in_channels=2"):
        f(torch.randn(5, 3, 25))
    assert "n_anchors=None" in repr(f)
    f1 = ZonalFilter(2, 1, 1).double()
    x = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f1, (x,))


def test_zonal_conv_rejects_wrong_layout():
    conv = ZonalConv(Equiangular(4, "DH"), 2, 3)
    with pytest.raises(ValueError, match=r"\[batch, vertices=64, channels=2\]"):
        conv(torch.randn(1, 2, 64))  # channels-first by mistake


def test_integer_coefficients_are_refused():
    # an int64 input used to cast the weights to int64 (truncated to 0, 1, 2): a wrong answer
    f = ZonalFilter(1, 1, 3)
    with pytest.raises(TypeError, match="real floating"):
        f(torch.ones(1, 16, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch tensor"):
        f(np.ones((1, 16)))


def test_fractional_band_limit_is_refused():
    with pytest.raises(ValueError, match="lmax must be an integer"):
        ZonalFilter(1, 1, 2.5)
    with pytest.raises(ValueError, match="lmax must be an integer"):
        ZonalConv(Equiangular(4, "DH"), 1, 1, lmax=2.5)


@pytest.mark.parametrize("backend,compute_dtype", [("torch", None), ("torch", torch.float64),
                                                   ("ducc", None)])
def test_dtype_mismatch_is_refused_like_cheb_conv(backend, compute_dtype):
    # a float64 signal into a float32 layer was computed in float64 with the weights cast up
    if backend == "ducc":
        pytest.importorskip("ducc0")
    s = HEALPix(2)
    conv = ZonalConv(s, 2, 3, lmax=4, backend=backend, compute_dtype=compute_dtype)
    x = torch.randn(1, s.npix, 2)
    with pytest.raises(TypeError, match=r"ZonalConv: x is torch.float64.*weight is torch.float32"
                                        r".*\.to\(\): x.to\(torch.float32\).*model.double\(\)"):
        conv(x.double())
    assert conv(x).dtype == torch.float32
    conv64 = conv.double()
    with pytest.raises(TypeError, match=r"x is torch.float32.*weight is torch.float64"):
        conv64(x)
    assert conv64(x.double()).dtype == torch.float64
    f = ZonalFilter(2, 3, 4)
    c = torch.randn(1, 2, 25)
    with pytest.raises(TypeError, match=r"ZonalFilter: x is torch.float64.*weight is torch.float32"):
        f(c.double())
    assert f.double()(c.double()).dtype == torch.float64


def test_zonal_conv_under_autocast_runs_in_its_weights_precision():
    # as ChebConv: the transforms have no bfloat16 FFT on CPU (was a RuntimeError from irfft)
    s = HEALPix(2)
    conv = ZonalConv(s, 1, 2, lmax=4)
    x = torch.randn(2, s.npix, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y, conv(x))


def test_bias_adds_a_constant_to_the_signal():
    # with zero weights the output is the bias itself at every pixel (b on c_00 as sqrt(4 pi) b,
    # since Y_00 = 1 / sqrt(4 pi))
    s = Equiangular(6, "GL")
    conv = ZonalConv(s, 2, 3, lmax=4).double()
    b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        conv.filter.weight.zero_()
        conv.filter.bias.copy_(b)
    y = conv(torch.randn(2, s.npix, 2, dtype=torch.float64))
    torch.testing.assert_close(y, b.expand(2, s.npix, 3))


def test_anchor_weights_are_interpolated_linearly_in_degree():
    # anchors at degrees linspace(0, L, n): degree l gets np.interp(l, anchors, values), to
    # float64 rounding in a float64 filter (the table was float32: 1/3 -> 0.33333334, ~3e-8),
    # also after a round trip through float32
    from deepsphere.spectral.coefficients import degrees_orders

    L = 7
    ref = np.interp(np.arange(L + 1), np.linspace(0, L, 4), [1.0, 3.0, -1.0, 0.5])
    for f in (ZonalFilter(1, 1, L, n_anchors=4, bias=False).double(),
              ZonalFilter(1, 1, L, n_anchors=4, bias=False).float().double()):
        with torch.no_grad():
            f.weight.copy_(torch.tensor([[[1.0, 3.0, -1.0, 0.5]]]))
        np.testing.assert_allclose(f.degree_weights().detach().numpy()[0, 0], ref, rtol=0, atol=1e-15)
        x = torch.randn(1, num_coefficients(L), dtype=torch.float64)
        l, _ = degrees_orders(L)
        torch.testing.assert_close(f(x), x * torch.from_numpy(ref[l]), rtol=1e-15, atol=0)
    f32 = ZonalFilter(1, 1, L, n_anchors=4).float()
    assert f32.degree_weights().dtype == torch.float32
