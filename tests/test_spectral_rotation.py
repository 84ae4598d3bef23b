"""Wigner-D rotations against healpy, closed forms and direct evaluation."""
import healpy as hp
import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y

from deepsphere.sampling import Equiangular, HEALPix
from deepsphere.spectral import InverseSHT, from_healpy_alm, num_coefficients, to_healpy_alm
from deepsphere.spectral.rotation import (as_euler, euler_to_matrix, healpy_rotate_alm_args,
                                          healpy_rotator, matrix_to_euler, random_rotation,
                                          rotate_coefficients, rotate_signal, wigner_d_small,
                                          wigner_D_blocks, wigner_D_complex, wigner_D_real,
                                          complex_to_real_basis)


# small transforms: one thread is fastest, and robust on a shared machine
pytestmark = pytest.mark.usefixtures("single_thread")


def random_alm(lmax, rng):
    n = hp.Alm.getsize(lmax)
    alm = rng.normal(size=n) + 1j * rng.normal(size=n)
    alm[: lmax + 1] = alm[: lmax + 1].real
    return alm


def evaluate(alm, lmax, theta, phi):
    """Direct sum of the complex series (independent of our transforms)."""
    f = np.zeros_like(theta)
    for l in range(lmax + 1):
        for m in range(l + 1):
            y = alm[hp.Alm.getidx(lmax, l, m)] * sph_harm_y(l, m, theta, phi)
            f += y.real if m == 0 else 2 * y.real
    return f


def test_euler_matrix_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ang = random_rotation(rng)
        R = euler_to_matrix(*ang)
        np.testing.assert_allclose(euler_to_matrix(*matrix_to_euler(R)), R, atol=1e-12)
    for R in (np.eye(3), euler_to_matrix(0.3, np.pi, 0.0), euler_to_matrix(1.0, 0.0, 0.5)):
        np.testing.assert_allclose(euler_to_matrix(*matrix_to_euler(R)), R, atol=1e-12)
    with pytest.raises(ValueError, match="rotation matrix"):
        matrix_to_euler(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="Euler"):
        as_euler([1.0, 2.0])


def test_small_d_closed_forms():
    b = 0.7
    d1 = wigner_d_small(1, b)  # [m+1, m'+1]; d^1_{1,0} = -sin(b)/sqrt2 (Wikipedia's table)
    c, s = np.cos(b), np.sin(b) / np.sqrt(2)
    ref = np.array([[(1 + c) / 2, s, (1 - c) / 2],
                    [-s, c, s],
                    [(1 - c) / 2, -s, (1 + c) / 2]])
    np.testing.assert_allclose(d1, ref, atol=1e-15)
    # d^l_{m0}(beta) = sqrt(4 pi / (2l+1)) Y_lm(beta, 0) (Condon-Shortley phase in Y)
    l = 40
    d = wigner_d_small(l, b)
    for m in (0, 3, 17, 40):
        y = sph_harm_y(l, m, b, 0.0).real
        assert np.isclose(d[l + m, l], np.sqrt(4 * np.pi / (2 * l + 1)) * y, atol=1e-13)


@pytest.mark.parametrize("l", [0, 1, 2, 7, 64, 150])
def test_wigner_D_real_orthogonal_and_representation(l):
    rng = np.random.default_rng(l)
    r1, r2 = random_rotation(rng), random_rotation(rng)
    D1, D2 = wigner_D_real(l, *r1), wigner_D_real(l, *r2)
    n = 2 * l + 1
    assert np.abs(D1 @ D1.T - np.eye(n)).max() < 1e-12
    # homomorphism: D(R1 R2) = D(R1) D(R2)
    r12 = matrix_to_euler(euler_to_matrix(*r1) @ euler_to_matrix(*r2))
    assert np.abs(wigner_D_real(l, *r12) - D1 @ D2).max() < 1e-11
    # real matrix = U D_complex U^dagger
    U = complex_to_real_basis(l)
    Dc = U @ wigner_D_complex(l, *r1) @ U.conj().T
    assert np.abs(Dc - D1).max() < 1e-12


@pytest.mark.parametrize("lmax", [3, 20, 128])
def test_rotate_coefficients_matches_healpy_rotate_alm(lmax):
    rng = np.random.default_rng(lmax)
    alm = random_alm(lmax, rng)
    ang = random_rotation(rng)
    ref = alm.copy()
    hp.rotate_alm(ref, *healpy_rotate_alm_args(*ang))
    out = to_healpy_alm(rotate_coefficients(from_healpy_alm(alm, lmax), ang), lmax).numpy()
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-12
    # healpy's Rotator with the documented arguments agrees too, and its matrix is ours
    rot = healpy_rotator(*ang)
    np.testing.assert_allclose(rot.mat, euler_to_matrix(*ang), atol=1e-13)
    assert np.abs(rot.rotate_alm(alm) - ref).max() / np.abs(ref).max() <= 1e-12


def test_rotate_coefficients_moves_the_signal_by_R():
    # f'(x) = f(R^{-1} x), checked by direct evaluation at random points
    rng = np.random.default_rng(5)
    L = 8
    alm = random_alm(L, rng)
    ang = random_rotation(rng)
    R = euler_to_matrix(*ang)
    x = rng.normal(size=(30, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x @ R  # rows of R^T x
    ref = evaluate(alm, L, np.arccos(q[:, 2]), np.arctan2(q[:, 1], q[:, 0]))
    rot = to_healpy_alm(rotate_coefficients(from_healpy_alm(alm, L), R), L).numpy()
    out = evaluate(rot, L, np.arccos(x[:, 2]), np.arctan2(x[:, 1], x[:, 0]))
    np.testing.assert_allclose(out, ref, atol=1e-12 * np.abs(ref).max())


def test_rotation_composition_inverse_float32_and_grad():
    rng = np.random.default_rng(6)
    L = 16
    c = torch.randn(3, 2, num_coefficients(L), dtype=torch.float64)
    a1, a2 = random_rotation(rng), random_rotation(rng)
    R1, R2 = euler_to_matrix(*a1), euler_to_matrix(*a2)
    two = rotate_coefficients(rotate_coefficients(c, R2), R1)
    one = rotate_coefficients(c, R1 @ R2)
    assert (two - one).abs().max() < 1e-12
    back = rotate_coefficients(one, (R1 @ R2).T)
    assert (back - c).abs().max() < 1e-12
    assert torch.allclose(one.norm(dim=-1), c.norm(dim=-1), rtol=1e-13)
    c32 = c.float()
    assert (rotate_coefficients(c32, a1) - rotate_coefficients(c, a1)).abs().max() < 1e-5
    # the blocks agree with the factorised application
    blocks = wigner_D_blocks(L, a1)
    parts = c.split([2 * l + 1 for l in range(L + 1)], dim=-1)
    dense = torch.cat([p @ B.T for p, B in zip(parts, blocks)], dim=-1)
    assert (dense - rotate_coefficients(c, a1)).abs().max() < 1e-12
    x = torch.randn(num_coefficients(3), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rotate_coefficients(t, a1), (x,))


@pytest.mark.parametrize("kind", ["DH", "GL"])
def test_rotate_signal_exact_on_equiangular(kind):
    rng = np.random.default_rng(7)
    s = Equiangular(8, kind)
    L = 7
    alm = random_alm(L, rng)
    ang = random_rotation(rng)
    x = InverseSHT(s, L)(from_healpy_alm(alm, L))
    out = rotate_signal(x, s, ang).numpy()
    q = s.vectors @ euler_to_matrix(*ang)
    ref = evaluate(alm, L, np.arccos(np.clip(q[:, 2], -1, 1)), np.arctan2(q[:, 1], q[:, 0]))
    assert np.abs(out - ref).max() / np.abs(ref).max() <= 1e-10


def test_rotate_signal_healpix_matches_healpy_rotate_map_alms():
    rng = np.random.default_rng(8)
    nside = 8
    L = 3 * nside - 1  # healpy's default band limit, also ours
    m_ring = rng.normal(size=12 * nside**2)
    ang = random_rotation(rng)
    ref = healpy_rotator(*ang).rotate_map_alms(m_ring, lmax=L, use_pixel_weights=False)
    out = rotate_signal(torch.from_numpy(hp.reorder(m_ring, r2n=True)), HEALPix(nside), ang, lmax=L)
    ref_nest = hp.reorder(ref, r2n=True)
    assert np.abs(out.numpy() - ref_nest).max() / np.abs(ref_nest).max() <= 1e-10


def test_rotate_signal_healpix_exact_for_band_limited_signals():
    # lmax <= 2 nside: the least-squares analysis makes the round trip exact
    from deepsphere.spectral import isht

    rng = np.random.default_rng(9)
    s, L = HEALPix(8), 16
    c = torch.randn(2, num_coefficients(L), dtype=torch.float64)
    ang = random_rotation(rng)
    x = isht(c, s)
    ref = isht(rotate_coefficients(c, ang), s)
    out = rotate_signal(x, s, ang, lmax=L, iterations=100, method="lsq")
    assert ((out - ref).norm() / ref.norm()).item() < 1e-10
    out = rotate_signal(x, s, euler_to_matrix(*ang), lmax=L, iterations=10)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-10


@pytest.mark.parametrize("beta", [0.0, 1e-13, 1e-10, 1e-6, 1.0, np.pi - 1e-10, np.pi])
def test_matrix_to_euler_accurate_near_the_poles(beta):
    # a near-identity (or near-flip) matrix with ordinary rounding, e.g. R2^T (R2 R): the angles
    # must give back R to rounding (arccos and independent alpha/gamma lost up to 2e-4)
    rng = np.random.default_rng(11)
    for _ in range(20):
        A = euler_to_matrix(*random_rotation(rng))
        R = A @ (A.T @ euler_to_matrix(rng.uniform(0, 6), beta, rng.uniform(0, 6)))
        assert np.abs(euler_to_matrix(*matrix_to_euler(R)) - R).max() < 1e-14
    c = torch.randn(num_coefficients(6), dtype=torch.float64)
    ang = (0.4, beta, -1.2)
    R = A @ (A.T @ euler_to_matrix(*ang))
    assert (rotate_coefficients(c, R) - rotate_coefficients(c, ang)).abs().max() < 1e-13


def test_non_finite_rotations_are_refused():
    with pytest.raises(ValueError, match="finite"):
        rotate_coefficients(torch.ones(4, dtype=torch.float64), (np.nan, 0.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        matrix_to_euler(np.full((3, 3), np.nan))


def test_rotate_coefficients_refuses_integers_and_arrays():
    # int64 coefficients were rotated with int64-truncated cos/sin tables: all zeros
    with pytest.raises(TypeError, match="real floating"):
        rotate_coefficients(torch.arange(16), (0.3, 0.5, 0.7))
    with pytest.raises(TypeError, match="torch tensor"):
        rotate_coefficients(np.ones(16), (0.3, 0.5, 0.7))


def test_random_rotation_is_haar_distributed():
    # under the Haar measure R e_j is uniform on the sphere, so every entry e_i . R e_j is
    # uniform on [-1, 1] (Archimedes); a beta drawn uniformly in [0, pi] instead of
    # arccos-uniformly crowds the poles (R_22 = cos(beta) would follow the arcsine law)
    from scipy.stats import kstest

    rng = np.random.default_rng(11)
    R = np.stack([euler_to_matrix(*random_rotation(rng)) for _ in range(3000)])
    for i in range(3):           # all nine: alpha in [0, pi) keeps R_02 uniform but R_12 >= 0
        for j in range(3):
            assert kstest(R[:, i, j], "uniform", args=(-1, 2)).pvalue > 1e-3, (i, j)
