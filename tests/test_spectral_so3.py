"""SO(3) grid transforms and S2/SO(3) convolutions: exactness and equivariance."""
import numpy as np
import pytest
import torch

from deepsphere.spectral import num_coefficients, random_rotation, rotate_coefficients
from deepsphere.spectral.rotation import euler_to_matrix, matrix_to_euler, wigner_D_real
from deepsphere.spectral.so3 import (S2Conv, SO3Analysis, SO3Conv, SO3Grid, SO3Synthesis, SO3ToS2,
                                     padded_to_so3, real_sph_harm, rotate_so3_coefficients,
                                     so3_index, so3_size, so3_to_padded)


# small transforms: one thread is fastest, and robust on a shared machine
pytestmark = pytest.mark.usefixtures("single_thread")


def evaluate_so3(F, L, angles):
    """Direct sum_l sum_mn F^l_mn D^l_mn(R) with our (independently tested) Wigner-D."""
    return sum((F[so3_size(l - 1) if l else 0: so3_size(l)].reshape(2 * l + 1, 2 * l + 1)
                * wigner_D_real(l, *angles)).sum() for l in range(L + 1))


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_layout():
    assert so3_size(0) == 1 and so3_size(1) == 10 and so3_size(2) == 35
    assert so3_index(1, -1, -1) == 1 and so3_index(2, 2, 2) == 34
    F = torch.randn(3, so3_size(3), dtype=torch.float64)
    assert torch.equal(padded_to_so3(so3_to_padded(F, 3), 3), F)


def test_real_sph_harm_matches_scipy():
    from scipy.special import sph_harm_y

    th, ph = np.array([0.2, 1.3, 2.9]), np.array([0.1, 4.0, 5.5])
    Y = real_sph_harm(4, th, ph)
    l, m = 3, -2
    ref = np.sqrt(2) * (-1) ** m * sph_harm_y(l, 2, th, ph).imag
    np.testing.assert_allclose(Y[:, l * l + l + m], ref, atol=1e-14)


@pytest.mark.parametrize("L", [0, 3, 6])
def test_so3_transforms_exact_and_match_direct_evaluation(L):
    rng = np.random.default_rng(L)
    grid = SO3Grid(L)
    F = torch.randn(2, so3_size(L), dtype=torch.float64)
    g = SO3Synthesis(grid)(F)
    assert g.shape == (2,) + grid.shape
    assert (SO3Analysis(grid)(g) - F).abs().max() < 1e-12
    for _ in range(3):
        i, j, k = (rng.integers(n) for n in grid.shape)
        ref = evaluate_so3(F[1].numpy(), L, (grid.alpha[i], grid.beta[j], grid.gamma[k]))
        assert abs(g[1, i, j, k].item() - ref) < 1e-12
    assert np.isclose(grid.weights.sum(), 1.0)
    with pytest.raises(ValueError, match="exact SO"):
        SO3Grid(4, n_beta=3)


def test_so3_rotation_is_left_translation():
    rng = np.random.default_rng(1)
    L = 5
    F = torch.randn(so3_size(L), dtype=torch.float64)
    Q = random_rotation(rng)
    R = random_rotation(rng)
    QinvR = matrix_to_euler(euler_to_matrix(*Q).T @ euler_to_matrix(*R))
    lhs = evaluate_so3(rotate_so3_coefficients(F, Q).numpy(), L, R)
    assert abs(lhs - evaluate_so3(F.numpy(), L, QinvR)) < 1e-12


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_s2conv_so3conv_projection_equivariant(dtype, tol):
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    L = 6
    s2 = S2Conv(2, 3, L).to(dtype)
    so3 = SO3Conv(3, 4, L).to(dtype)
    proj = SO3ToS2(L)
    x = torch.randn(5, 2, num_coefficients(L), dtype=dtype)
    for _ in range(2):
        Q = random_rotation(rng)
        y, yr = s2(x), s2(rotate_coefficients(x, Q))
        assert rel(yr, rotate_so3_coefficients(y, Q)) <= tol
        z, zr = so3(y), so3(rotate_so3_coefficients(y, Q))
        assert rel(zr, rotate_so3_coefficients(z, Q)) <= tol
        p, pr = proj(z), proj(rotate_so3_coefficients(z, Q))
        assert rel(pr, rotate_coefficients(p, Q)) <= tol


def test_s2conv_is_correlation_with_rotated_kernel():
    # out_o(R) = sum_i <Lambda_R psi_oi, f_i> (inner product = sum of coefficient products)
    torch.manual_seed(1)
    L = 5
    conv = S2Conv(2, 1, L).double()
    x = torch.randn(2, num_coefficients(L), dtype=torch.float64)
    with torch.no_grad():
        y = conv(x)[0]
        psi = conv.kernel()
    R = (0.3, 1.1, 2.0)
    rhs = sum((rotate_coefficients(psi[0, i], R) * x[i]).sum().item() for i in range(2))
    assert abs(evaluate_so3(y.numpy(), L, R) - rhs) < 1e-12


def test_so3conv_is_sum_of_right_translations_and_projection_is_fibre_mean():
    torch.manual_seed(2)
    L = 4
    grid_k = np.array([[0.1, 0.2, 0.3], [1.0, 0.3, -1.0]])
    conv = SO3Conv(1, 1, L, kernel_grid=grid_k).double()
    F = torch.randn(1, so3_size(L), dtype=torch.float64)
    with torch.no_grad():
        out = conv(F)[0].numpy()
    w = conv.weight.detach()[0, 0].numpy()
    R = (2.0, 0.7, 0.4)
    Rm = euler_to_matrix(*R)
    ref = sum(w[k] * evaluate_so3(F[0].numpy(), L, matrix_to_euler(Rm @ euler_to_matrix(*grid_k[k])))
              for k in range(2))
    assert abs(evaluate_so3(out, L, R) - ref) < 1e-12
    # projection: mean of g over gamma on the SO(3) grid = sphere function at (beta, alpha)
    grid = SO3Grid(L)
    g = SO3Synthesis(grid)(F[0])
    c = SO3ToS2(L)(F[0]).numpy()
    Y = real_sph_harm(L, np.tile(grid.beta, grid.n_alpha), np.repeat(grid.alpha, grid.n_beta))
    np.testing.assert_allclose(Y @ c, g.mean(-1).numpy().ravel(), atol=1e-12)


def test_gradients_flow():
    L = 2
    s2 = S2Conv(1, 1, L, kernel_grid=np.array([[0.1, 0.0], [0.2, 1.0]])).double()
    x = torch.randn(1, num_coefficients(L), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(s2, (x,))
    g = torch.randn(1, 1, so3_size(L), dtype=torch.float64, requires_grad=True)
    grid = SO3Grid(L)
    assert torch.autograd.gradcheck(lambda t: SO3Analysis(grid)(torch.relu(SO3Synthesis(grid)(t))), (g,))


def test_wrong_sizes_and_integer_tensors_are_refused():
    # each was a silent truncation (integer casts of the tables, a shorter lmax) or an IndexError
    L = 2
    F = torch.randn(so3_size(3), dtype=torch.float64)
    with pytest.raises(ValueError, match="expected 35 SO"):
        SO3ToS2(L)(F)                                   # was: silently the lmax-2 part
    with pytest.raises(ValueError, match="expected 84 SO"):
        SO3ToS2(3)(F[:so3_size(2)])                     # was: IndexError
    with pytest.raises(ValueError, match="expected 35 SO"):
        SO3Synthesis(SO3Grid(L))(F)                     # was: IndexError from index_copy
    with pytest.raises(ValueError, match="expected 35 SO"):
        rotate_so3_coefficients(F, (0.1, 0.2, 0.3), lmax=L)  # was: silently dropped degree 3
    ints = torch.ones(1, so3_size(L), dtype=torch.int64)
    for op in (SO3ToS2(L), SO3Conv(1, 1, L), SO3Synthesis(SO3Grid(L)),
               lambda t: rotate_so3_coefficients(t, (0.1, 0.2, 0.3))):
        with pytest.raises(TypeError, match="real floating"):
            op(ints)                                    # was: tables cast to int64, zeros out
    with pytest.raises(TypeError, match="real floating"):
        S2Conv(1, 1, L)(torch.ones(1, num_coefficients(L), dtype=torch.int64))
    with pytest.raises(TypeError, match="real floating"):
        SO3Analysis(SO3Grid(L))(torch.ones(SO3Grid(L).shape, dtype=torch.int64))
    with pytest.raises(ValueError, match="lmax must be >= 0"):
        SO3Grid(-1)


def test_kernel_grids_are_checked():
    # an SO(3) grid given to S2Conv was read as (colatitude, longitude) = (alpha, beta): a wrong
    # kernel, silently; the reverse was a TypeError from wigner_D_real, an empty grid a ZeroDivisionError
    from deepsphere.spectral.so3 import s2_near_pole_grid, so3_near_identity_grid

    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        S2Conv(1, 1, 2, kernel_grid=so3_near_identity_grid())
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        SO3Conv(1, 1, 2, kernel_grid=s2_near_pole_grid())
    with pytest.raises(ValueError, match="n >= 1"):
        S2Conv(1, 1, 2, kernel_grid=np.zeros((0, 2)))


def test_dtype_mismatch_is_refused_like_cheb_conv():
    # a float64 input into a float32 layer was computed in float64 with the weights cast up
    L = 2
    s2, so3 = S2Conv(2, 3, L), SO3Conv(3, 1, L)
    x, g = torch.randn(1, 2, num_coefficients(L)), torch.randn(1, 3, so3_size(L))
    with pytest.raises(TypeError, match=r"S2Conv: x is torch.float64.*weight is torch.float32.*\.to\(\)"):
        s2(x.double())
    with pytest.raises(TypeError, match=r"SO3Conv: x is torch.float64.*weight is torch.float32.*\.to\(\)"):
        so3(g.double())
    assert so3(s2(x)).dtype == torch.float32
    assert so3.double()(s2.double()(x.double())).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # run in the weights' precision, as ChebConv
        assert so3.float()(g.bfloat16()).dtype == torch.float32


def test_near_identity_grid_is_near_the_identity():
    # R_z(a) R_y(b) R_z(g - a) is a tilt by b about a horizontal axis, then a twist by g: its
    # angle is at most b + |g| (scipy's magnitude, independent of our Euler code); without the
    # -a the twist would reach a + g, up to 2 pi
    from scipy.spatial.transform import Rotation

    from deepsphere.spectral.so3 import so3_near_identity_grid

    g = so3_near_identity_grid(max_beta=0.2, max_gamma=0.3, n_alpha=8, n_beta=2, n_gamma=3)
    assert g.shape == (8 * 2 * 3, 3)
    assert Rotation.from_euler("ZYZ", g).magnitude().max() <= 0.2 + 0.3 + 1e-12
    tilts = so3_near_identity_grid(max_beta=0.2, max_gamma=0.0, n_alpha=8, n_beta=2, n_gamma=1)
    np.testing.assert_allclose(Rotation.from_euler("ZYZ", tilts).magnitude(), np.tile([0.1, 0.2], 8), atol=1e-12)
