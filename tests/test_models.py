"""Models: shapes, per-level graphs, checkpoints, rotation invariance, training, bad input."""
import healpy as hp
import numpy as np
import pytest
import torch

from deepsphere import graph, models
from deepsphere.sampling import Equiangular, HEALPix, Irregular

HP_GRAPH = {"kind": "healpix"}  # 8 neighbours: exactly invariant under 90° z-rotations


def _rot90_perm(nside):
    """Pixel permutation of a 90° rotation about z: rotated[i] = original[perm[i]],
    i.e. f'(v) = f(R⁻¹ v) with R⁻¹(x, y, z) = (y, -x, z), found with healpy.vec2pix."""
    v = np.stack(hp.pix2vec(nside, np.arange(12 * nside**2), nest=True), axis=1)
    perm = hp.vec2pix(nside, v[:, 1], -v[:, 0], v[:, 2], nest=True)
    assert np.array_equal(np.sort(perm), np.arange(12 * nside**2))
    return torch.from_numpy(perm)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_cnn_shapes_and_per_level_operators():
    s = HEALPix(8)
    for head in ("global", "fc"):
        for pooling in ("average", "max"):
            m = models.SphericalCNN(s, 2, 3, channels=[4, 6, 8], K=3, pooling=pooling, head=head)
            assert m(torch.randn(5, 768, 2)).shape == (5, 3)
    # one graph per level, each at its own level's size, equal to a graph built independently
    assert [op.n for op in m.operators] == [768, 192, 48]
    for i, op in enumerate(m.operators):
        ref = graph.build(HEALPix(8 >> i), models.DEFAULT_GRAPH).chebyshev_matrix("normalized")
        np.testing.assert_allclose(op().to_dense().numpy(), ref.toarray(), atol=1e-6)
    assert [p.n_coarse for p in m.pools] == [192, 48, 12]
    assert m.classifier.in_features == 8 * 12  # fc head over the 12 pixels at nside 1


def test_equiangular_cnn_pools_by_four():
    s = Equiangular(8, "DH")
    m = models.SphericalCNN(s, 1, 2, channels=[4, 4], K=2)
    assert [op.n for op in m.operators] == [256, 64]
    assert m(torch.randn(2, 256, 1)).shape == (2, 2)


def test_partial_sky_cnn():
    s = HEALPix(8, np.arange(64, 128), levels=2)
    m = models.SphericalCNN(s, 1, 2, channels=[4, 4], K=3, graph={"kind": "knn", "k": 8})
    assert [op.n for op in m.operators] == [64, 16]
    assert m(torch.randn(2, 64, 1)).shape == (2, 2)
    u = models.SphericalUNet(s, 1, 3, channels=[4, 4, 4], K=2, graph=HP_GRAPH)
    assert [op.n for op in u.operators] == [64, 16, 4]
    assert u(torch.randn(2, 64, 1)).shape == (2, 64, 3)
    with pytest.raises(ValueError, match=r"at level 2 of 3 .*nside=2.*k=8"):
        models.SphericalUNet(s, 1, 3, channels=[4, 4, 4], K=2, graph={"kind": "knn", "k": 8})
    with pytest.raises(ValueError, match="not closed|coarsened"):
        models.SphericalCNN(s, 1, 2, channels=[4, 4, 4, 4], K=2)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_unet_depth_sets_the_number_of_levels(depth):
    channels = [4, 6, 8, 8][:depth]
    m = models.SphericalUNet(HEALPix(8), 2, 3, channels=channels, K=3, graph=HP_GRAPH)
    assert len(m.operators) == depth and len(m.pools) == depth - 1 == len(m.decoder)
    assert [op.n for op in m.operators] == [768 // 4**i for i in range(depth)]
    assert m(torch.randn(2, 768, 2)).shape == (2, 768, 3)


def test_state_dict_has_no_operators_and_rebuilds_from_config():
    m = models.SphericalUNet(HEALPix(4), 2, 3, channels=[4, 8], K=3)
    sd = m.state_dict()
    assert not any(k.startswith("operators") or k.endswith(("values", "crow_indices",
                                                            "col_indices", "parent", "perm"))
                   for k in sd)
    assert sum(v.numel() for v in sd.values()) == sum(p.numel() for p in m.parameters()) + sum(
        b.numel() for n, b in m.named_buffers() if "norm" in n)
    # a checkpoint (config + state_dict) rebuilds the same function
    m.train()(torch.randn(8, 192, 2))  # move BN running stats away from their init
    m.eval()
    ckpt = {"config": m.config, "state_dict": m.state_dict()}
    import json

    config = json.loads(json.dumps(ckpt["config"]))  # the recipe is plain JSON
    fresh = models.SphericalUNet.from_config(config)
    fresh.load_state_dict(ckpt["state_dict"])
    fresh.eval()
    x = torch.randn(2, 192, 2)
    torch.testing.assert_close(fresh(x), m(x))
    # operators follow dtype / device moves
    m.double()
    assert m.operators[0].values.dtype == torch.float64
    assert m(x.double()).dtype == torch.float64


def test_from_config_needs_the_sampling_when_the_recipe_cannot_rebuild_it():
    s = Irregular(np.linspace(0, 350, 30), np.linspace(-60, 60, 30), units="deg")
    m = models.StationRegressor(s, 2, 1, channels=[4], K=2, graph={"kind": "knn", "k": 8})
    with pytest.raises(ValueError, match="pass the sampling"):
        models.StationRegressor.from_config(m.config)
    again = models.StationRegressor.from_config(m.config, sampling=s)
    again.load_state_dict(m.state_dict())
    with pytest.raises(ValueError, match="differs"):
        models.StationRegressor.from_config(m.config, sampling=HEALPix(2))
    with pytest.raises(ValueError, match="config is for"):
        models.SphericalCNN.from_config(m.config, sampling=s)


@pytest.mark.parametrize("pooling", ["average", "max"])
def test_global_head_invariant_to_90_degree_rotation_fc_head_not(pooling):
    nside = 8
    perm = _rot90_perm(nside)
    x = torch.randn(3, 12 * nside**2, 2, dtype=torch.float64)
    xr = x[:, perm]
    assert not torch.allclose(x, xr)
    out = {}
    for head in ("global", "fc"):
        m = models.SphericalCNN(HEALPix(nside), 2, 4, channels=[4, 8], K=4, graph=HP_GRAPH,
                                pooling=pooling, head=head).double()
        for mode in (m.train, m.eval):  # batch statistics are permutation invariant too
            mode()
            out[head, mode.__name__] = (m(x), m(xr))
    for mode in ("train", "eval"):
        y, yr = out["global", mode]
        torch.testing.assert_close(yr, y, rtol=1e-10, atol=1e-10)
        y, yr = out["fc", mode]
        assert (yr - y).abs().max() > 1e-3 * y.abs().max()


def test_unet_is_equivariant_to_90_degree_rotation():
    nside = 4
    perm = _rot90_perm(nside)
    m = models.SphericalUNet(HEALPix(nside), 1, 2, channels=[4, 4, 4], K=3, graph=HP_GRAPH)
    m.double().eval()
    x = torch.randn(2, 192, 1, dtype=torch.float64)
    torch.testing.assert_close(m(x[:, perm]), m(x)[:, perm], rtol=1e-10, atol=1e-10)


def _one_step_reduces_loss(model, x, target, loss_fn):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]


def test_gradients_flow_and_a_step_reduces_the_loss():
    x = torch.randn(4, 192, 2)
    ce = torch.nn.functional.cross_entropy
    _one_step_reduces_loss(models.SphericalCNN(HEALPix(4), 2, 3, channels=[4, 4], K=3),
                           x, torch.tensor([0, 1, 2, 0]), ce)
    _one_step_reduces_loss(
        models.SphericalUNet(HEALPix(4), 2, 3, channels=[4, 4], K=3), x,
        torch.randint(0, 3, (4, 192)), lambda y, t: ce(y.reshape(-1, 3), t.reshape(-1)))
    _one_step_reduces_loss(models.StationRegressor(HEALPix(4), 2, 1, channels=[4], K=3),
                           x, torch.randn(4, 192, 1), torch.nn.functional.mse_loss)


def test_station_regressor_k1_is_per_station():
    rng = np.random.default_rng(0)
    s = Irregular(rng.uniform(0, 360, 40), rng.uniform(-80, 80, 40), units="deg")
    x = torch.randn(3, 40, 2)
    dx = torch.zeros_like(x)
    dx[:, 0] = 1.0
    for K, spreads in ((1, False), (3, True)):
        m = models.StationRegressor(s, 2, 1, channels=[8, 8], K=K,
                                    graph={"kind": "knn", "k": 8}).eval()
        assert len(m.operators) == (0 if K == 1 else 1)  # K=1: no graph is built
        changed = (m(x + dx) - m(x)).abs().sum(dim=(0, 2)) > 1e-6
        assert changed[0]
        assert bool(changed[1:].any()) == spreads  # K=1: only station 0 moves


def test_bad_input_errors():
    m = models.SphericalCNN(HEALPix(4), 2, 3, channels=[4], K=2)
    with pytest.raises(ValueError, match=r"768 vertices.*nside=4.*nside=8"):
        m(torch.randn(1, 768, 2))
    with pytest.raises(ValueError, match="in_channels=2"):
        m(torch.randn(1, 192, 3))
    with pytest.raises(ValueError, match=r"\[batch, vertices, channels\]"):
        m(torch.randn(192, 2))
    u = models.SphericalUNet(HEALPix(4), 2, 3, channels=[4, 4], K=2)
    with pytest.raises(ValueError, match="in_channels=2"):
        u(torch.randn(1, 192, 1))
    with pytest.raises(ValueError, match="coarsened|coarsest"):
        models.SphericalCNN(HEALPix(4), 1, 2, channels=[4, 4, 4, 4])  # nside 4 pools twice only
    with pytest.raises(ValueError, match="not hierarchical"):
        models.SphericalCNN(Irregular([0, 90, 180, 270], [0, 10, 0, -10], units="deg"), 1, 2)
    with pytest.raises(ValueError, match="head"):
        models.SphericalCNN(HEALPix(4), 1, 2, head="dense")
    with pytest.raises(ValueError, match="channels"):
        models.SphericalUNet(HEALPix(4), 1, 2, channels=[])
    with pytest.raises(ValueError, match="unknown graph kind"):
        models.SphericalCNN(HEALPix(4), 1, 2, channels=[4], graph={"kind": "mesh"})


def test_vertex_batchnorm_equals_batchnorm1d_on_channels_first():
    from deepsphere.nn.blocks import VertexBatchNorm

    x = torch.randn(3, 50, 4) * 3 + 1
    bn, ref = VertexBatchNorm(4), torch.nn.BatchNorm1d(4)
    torch.testing.assert_close(bn(x), ref(x.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(bn.running_var, ref.running_var)
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 1)), torch.zeros(4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\[batch, vertices, 4\]"):
        bn(torch.randn(3, 4, 50))


def test_graph_recipe_rescaling_keys_are_used():
    m = models.SphericalCNN(HEALPix(4), 1, 2, channels=[4], K=2,
                            graph={"kind": "healpix", "lmax": 2.0, "scale": 0.75})
    W = graph.healpix_neighbours(HEALPix(4)).adjacency.toarray()
    d = W.sum(1)
    L = np.eye(len(d)) - W / np.sqrt(np.outer(d, d))  # normalized Laplacian, by hand
    np.testing.assert_allclose(m.operators[0]().to_dense().numpy(),
                               0.75 * (L - np.eye(len(d))), atol=1e-6)


def test_k1_models_build_no_graph():
    for m in (models.SphericalCNN(HEALPix(4), 1, 2, channels=[4, 4], K=1),
              models.SphericalUNet(HEALPix(4), 1, 2, channels=[4, 4], K=1)):
        assert len(m.operators) == 0
        assert m(torch.randn(2, 192, 1)).shape[0] == 2


@pytest.mark.parametrize("kwargs", [dict(in_channels=2.5), dict(channels=[4.5, 8]),
                                    dict(channels=["4"]), dict(in_channels=0)])
def test_fractional_widths_are_refused_not_truncated(kwargs):
    """int(4.5) == 4 would build a different network than the one asked for."""
    args = dict(in_channels=2, channels=[4, 8]) | kwargs
    for cls, out in ((models.SphericalCNN, "n_classes"), (models.SphericalUNet, "n_classes"),
                     (models.StationRegressor, "out_channels")):
        with pytest.raises(ValueError, match=r"(in_channels|channels) must be a "):
            cls(HEALPix(4), args["in_channels"], 3, channels=args["channels"], K=2)
    m = models.SphericalCNN(HEALPix(4), 2.0, 3, channels=[4.0, 8], K=2)  # whole floats are fine
    assert m.config["in_channels"] == 2 and m.config["channels"] == [4, 8]


@pytest.mark.parametrize("make", [
    lambda lap: models.SphericalCNN(HEALPix(4), 1, 2, channels=[4], K=2, graph=HP_GRAPH,
                                    laplacian=lap),
    lambda lap: models.SphericalUNet(HEALPix(4), 1, 2, channels=[4, 4], K=2, graph=HP_GRAPH,
                                     laplacian=lap),
    lambda lap: models.StationRegressor(HEALPix(4), 1, 2, channels=[4], K=2, graph=HP_GRAPH,
                                        laplacian=lap),
])
def test_laplacian_argument_is_used(make):
    """laplacian='combinatorial' gives L~ = 2L/lmax - I with L = D - W (lmax: the largest
    eigenvalue, 2 % margin), by hand from the adjacency."""
    W = graph.healpix_neighbours(HEALPix(4)).adjacency.toarray()
    L = np.diag(W.sum(1)) - W
    lmax = np.linalg.eigvalsh(L)[-1] * 1.02
    m = make("combinatorial")
    assert m.config["laplacian"] == "combinatorial"
    np.testing.assert_allclose(m.operators[0]().to_dense().numpy(),
                               2 * L / lmax - np.eye(len(L)), atol=1e-5)


def test_global_head_averages_over_vertices_and_blocks_with_batchnorm_have_no_bias():
    m = models.SphericalCNN(HEALPix(4), 2, 3, channels=[4, 5], K=2).eval()
    x = torch.randn(2, 192, 2)
    with torch.no_grad():
        f = m.features(x)
        want = f.sum(dim=1) / f.shape[1] @ m.classifier.weight.T + m.classifier.bias
        torch.testing.assert_close(m(x), want)
    # batch norm's shift replaces the convolution's bias (BN would cancel it anyway)
    assert all(b.conv.bias is None for b in m.blocks)
    assert all(b.conv.bias is not None
               for b in models.SphericalCNN(HEALPix(4), 2, 3, [4], K=2, batchnorm=False).blocks)


@pytest.mark.parametrize("model", ["cnn", "unet"])
def test_max_pooling_argument_is_used(model):
    """pooling='max' takes, for each pixel of nside n/2, the maximum of its four NESTED
    children 4p..4p+3 (healpy's hierarchy), not their average."""
    s = HEALPix(4)
    if model == "cnn":
        m = models.SphericalCNN(s, 1, 2, channels=[3, 3], K=2, pooling="max")
    else:
        m = models.SphericalUNet(s, 1, 2, channels=[3, 3, 3], K=2, pooling="max")
    x = torch.randn(2, 192, 3)
    for pool in m.pools:
        n = pool.n_fine
        torch.testing.assert_close(pool(x[:, :n]), x[:, :n].reshape(2, n // 4, 4, 3).amax(2))


def test_cheb_block_is_conv_then_batchnorm_then_relu():
    """y = ReLU(BN(conv(x))), BN over (batch, vertices) per channel, by hand."""
    from deepsphere.nn import ChebBlock

    g = graph.build(HEALPix(2), HP_GRAPH)
    L = g.chebyshev_operator()
    block = ChebBlock(2, 5, K=3)
    x = torch.randn(4, 48, 2)
    z = block.conv(x, L).detach()
    mu, var = z.mean(dim=(0, 1)), z.var(dim=(0, 1), unbiased=False)
    want = torch.relu((z - mu) / torch.sqrt(var + block.norm.eps))
    torch.testing.assert_close(block(x, L), want, atol=1e-5, rtol=1e-5)


def test_one_level_model_graph_error_gives_no_level_advice():
    """A station model has one level: the advice 'use fewer levels (shorter channels)' was
    meaningless there; a U-Net level that fails still gets it."""
    rng = np.random.default_rng(0)
    s = Irregular(rng.uniform(0, 360, 20), rng.uniform(-60, 60, 20), units="deg")
    with pytest.raises(ValueError, match=r"cannot build the graph .* on Irregular\(npix=20\)") as e:
        models.StationRegressor(s, 3, 1, channels=[4], K=2, graph={"kind": "knn", "k": 50})
    assert "fewer levels" not in str(e.value)
