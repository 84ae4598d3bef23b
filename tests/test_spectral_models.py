"""Spectral models: shapes, training step, (approximate) invariance and equivariance."""
import numpy as np
import pytest
import torch

from deepsphere.sampling import Equiangular, HEALPix
from deepsphere.spectral import InverseSHT, SHT, num_coefficients, random_rotation, rotate_coefficients
from deepsphere.spectral.models import SpectralClassifier, SpectralSegmenter, ZonalClassifier


# small transforms: one thread is fastest, and robust on a shared machine
pytestmark = pytest.mark.usefixtures("single_thread")


def test_classifier_invariant_and_trains():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    s = Equiangular(8, "DH")
    L = 4
    model = SpectralClassifier(s, 2, 3, channels=(4, 6), lmax=L, oversampling=2).double()
    c = torch.randn(5, 2, num_coefficients(7), dtype=torch.float64)
    syn = InverseSHT(s, 7)
    R = random_rotation(rng)
    x, xr = syn(c).transpose(1, 2), syn(rotate_coefficients(c, R)).transpose(1, 2)
    y, yr = model(x), model(xr)
    assert y.shape == (5, 3)
    err = ((y - yr).norm() / y.norm()).item()
    assert err < 0.05  # grid nonlinearity aliasing only (measured ~1e-2 or below; RESULTS.md)
    # a step of training runs and changes the parameters
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(y, torch.tensor([0, 1, 2, 0, 1]))
    loss.backward()
    before = model.head.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.head.weight)


def test_segmenter_equivariant_shapes():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    s = Equiangular(8, "GL")
    L = 4
    model = SpectralSegmenter(s, 1, 2, channels=(3,), lmax=L, oversampling=2).double()
    c = torch.randn(2, 1, num_coefficients(L), dtype=torch.float64)
    syn, ana = InverseSHT(s, L), SHT(s, L)
    R = random_rotation(rng)
    x, xr = syn(c).transpose(1, 2), syn(rotate_coefficients(c, R)).transpose(1, 2)
    y = model(x)
    assert y.shape == (2, s.npix, 2)
    y_rot = syn(rotate_coefficients(ana(y.transpose(1, 2)), R)).transpose(1, 2)
    assert ((model(xr) - y_rot).norm() / y.norm()).item() < 0.05
    hp_model = SpectralSegmenter(HEALPix(4), 1, 2, channels=(2,), lmax=3)
    assert hp_model(torch.randn(1, 192, 1)).shape == (1, 192, 2)


def test_models_reject_wrong_layout():
    import pytest

    model = SpectralClassifier(Equiangular(4, "DH"), 1, 2, channels=(2,), lmax=2)
    with pytest.raises(ValueError, match="vertices=64"):
        model(torch.randn(2, 1, 64))


@pytest.mark.slow
def test_classifier_trained_upright_works_rotated():
    # one bump vs two bumps 1.2 rad apart: trained with the bumps at the north pole (rotations
    # about z only), tested under random rotations (the "NR/R" setting): an invariant model
    # keeps its accuracy
    from deepsphere.spectral import euler_to_matrix

    s = Equiangular(16, "GL")
    v = s.vectors
    w = s.areas / s.areas.sum()
    rng = np.random.default_rng(0)

    def data(n, rotate):
        y = rng.integers(0, 2, n)
        X = []
        for label in y:
            R = euler_to_matrix(*random_rotation(rng)) if rotate else euler_to_matrix(rng.uniform(0, 6.3), 0, 0)
            cs = [np.array([0, 0, 1.0])] + ([np.array([np.sin(1.2), 0, np.cos(1.2)])] if label else [])
            X.append(sum(np.exp(-np.arccos(np.clip(v @ (R @ c), -1, 1)) ** 2 / 0.5) for c in cs))
        X = np.stack(X)
        mu = X @ w
        X = (X - mu[:, None]) / np.sqrt(((X - mu[:, None]) ** 2) @ w)[:, None]  # area-weighted
        return torch.tensor(X[:, :, None], dtype=torch.float32), torch.tensor(y)

    torch.manual_seed(0)
    Xtr, ytr = data(48, False)
    Xr, yr = data(48, True)
    model = SpectralClassifier(s, 1, 2, channels=(4, 4), lmax=4, oversampling=2)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xtr), ytr).backward()
        opt.step()
    with torch.no_grad():
        assert (model(Xtr).argmax(1) == ytr).float().mean() >= 0.95
        assert (model(Xr).argmax(1) == yr).float().mean() >= 0.95


def test_zonal_classifier_invariant_and_trains():
    # exact rotations in harmonic space on a DH grid (exact quadrature): the logits change only
    # by the ReLU's aliasing, far less than between two different signals
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    s = Equiangular(16, "DH")
    model = ZonalClassifier(s, 2, 3, channels=(4, 6), lmax=15, n_anchors=6).double().eval()
    syn = InverseSHT(s, 6)
    c = torch.randn(4, 2, num_coefficients(6), dtype=torch.float64)
    R = random_rotation(rng)
    x, xr = syn(c).transpose(1, 2), syn(rotate_coefficients(c, R)).transpose(1, 2)
    y, yr = model(x), model(xr)
    assert y.shape == (4, 3)
    other = model(syn(torch.randn_like(c)).transpose(1, 2))
    err, spread = ((y - yr).norm() / y.norm()).item(), ((y - other).norm() / y.norm()).item()
    assert err < 0.02 and spread > 20 * err
    loss = torch.nn.functional.cross_entropy(model.train()(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_zonal_classifier_readout_is_the_mean_over_those_vertices():
    torch.manual_seed(4)
    s = HEALPix(4)
    keep = torch.arange(16, 48)
    model = ZonalClassifier(s, 1, 2, channels=(3,), lmax=8, readout=keep).double()
    x = torch.randn(2, s.npix, 1, dtype=torch.float64)
    feats = torch.relu(model.convs[0](x))
    model.eval()  # batch norm on running statistics: a fixed affine map
    expected = model.head(model.norm(feats[:, keep].mean(dim=1)))  # HEALPix: equal areas
    assert torch.allclose(model(x), expected)
    assert "readout=32 vertices" in repr(model)
    with pytest.raises(ValueError, match="readout must index"):
        ZonalClassifier(s, 1, 2, channels=(3,), lmax=8, readout=[0, s.npix])
    with pytest.raises(ValueError, match="at least one layer"):
        ZonalClassifier(s, 1, 2, channels=())


def test_zonal_conv_ducc_backend_matches_torch():
    pytest.importorskip("ducc0")
    from deepsphere.spectral import ZonalConv

    torch.manual_seed(5)
    s = HEALPix(8)
    a = ZonalConv(s, 2, 3, lmax=16, n_anchors=5, iterations=2).double()
    b = ZonalConv(s, 2, 3, lmax=16, n_anchors=5, iterations=2, backend="ducc").double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, s.npix, 2, dtype=torch.float64, requires_grad=True)
    ya, yb = a(x), b(x)
    assert torch.allclose(ya, yb, atol=1e-10, rtol=0)
    ga, = torch.autograd.grad(ya.square().sum(), x)
    gb, = torch.autograd.grad(yb.square().sum(), x)
    assert torch.allclose(ga, gb, atol=1e-9, rtol=0)


def test_zonal_classifier_caps_anchors_at_the_degrees():
    from deepsphere.sampling import HEALPix

    m = ZonalClassifier(HEALPix(2), 1, 2, channels=(2,), lmax=5)  # default 16 anchors
    assert m.convs[0].filter.n_anchors == 6
    m(torch.randn(3, 48, 1)).sum().backward()
    grads = m.convs[0].filter.weight.grad
    assert bool((grads.abs() > 0).all())  # every anchor is used


@pytest.mark.parametrize("cls", [ZonalClassifier, SpectralClassifier, SpectralSegmenter])
def test_models_refuse_a_float64_signal_and_run_under_autocast(cls):
    torch.manual_seed(0)
    s = HEALPix(2)
    model = cls(s, 1, 2, channels=(3,), lmax=3).eval()
    x = torch.randn(2, s.npix, 1)
    with pytest.raises(TypeError, match=r"x is torch.float64.*weight is torch.float32.*\.to\(\)"):
        model(x.double())
    y = model(x)
    assert y.dtype == torch.float32
    assert model.double()(x.double()).dtype == torch.float64
    model.float()
    # mixed precision: the spectral layers run in float32 (the transforms had no bfloat16 FFT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = model(x)
    assert torch.allclose(ya.float(), y, rtol=0.05, atol=0.05 * y.abs().max().item())
