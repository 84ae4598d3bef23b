"""Trainer, metrics, checkpoints, exact resume (in process and after SIGKILL), CLI."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepsphere.cli import main as cli
from deepsphere.training import Config, ConfigError, Trainer, load_config, train
from deepsphere.training import metrics as M
from deepsphere.training.checkpoint import atomic_save, load
from deepsphere.training.losses import CrossEntropy, balanced_weights

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ---- tiny stand-in models (no graph: fast), importable as 'test_training:Name' ----------------
class PixelMLP(torch.nn.Module):
    """Average over NESTED groups of 4 pixels, a per-pixel MLP, then the mean of squares
    over the sphere: a band-power estimate, which tells steep spectra from shallow ones."""

    def __init__(self, sampling, in_channels: int, n_classes: int, hidden: int = 8,
                 dropout: float = 0.0):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(in_channels, hidden), torch.nn.Tanh(),
                                       torch.nn.Dropout(dropout))
        self.fc = torch.nn.Linear(hidden, n_classes)

    def forward(self, x):
        x = x.view(x.shape[0], -1, 4, x.shape[-1]).mean(2)
        return self.fc(self.net(x).pow(2).mean(1))


class PixelSegmenter(torch.nn.Module):
    def __init__(self, sampling, in_channels: int, n_classes: int, hidden: int = 8):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(in_channels, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.net(x)


def tiny_config(out, **trainer):
    t = {"epochs": 3, "batch_size": 8, "progress": False, "plots": False, "out": str(out)}
    t.update(trainer)
    return Config.from_dict({
        "data": {"name": "synthetic_fields", "n_train": 32, "n_val": 16, "n_test": 16,
                 "noise": 0.3, "slopes": [1.0, 3.0]},
        "sampling": {"name": "healpix", "nside": 4},
        "model": {"name": f"{__name__}:PixelMLP", "hidden": 8, "dropout": 0.2},
        "optim": {"name": "adam", "lr": 0.02},
        "scheduler": {"name": "cosine", "warmup_epochs": 1},
        "trainer": t,
    })


def read_metrics(run):
    with open(Path(run) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("time_s")
    return rows


def weights(run, which="last"):
    return load(Path(run) / "checkpoints" / f"{which}.pt")["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- metrics against scikit-learn ------------------------------------------------------
@pytest.fixture
def scores_and_target(rng):
    n, k = 200, 4
    target = rng.integers(0, k, n)
    scores = rng.random((n, k)) + 0.8 * np.eye(k)[target]
    scores = np.round(scores, 1)  # ties, as sklearn's threshold handling must be matched
    return scores, target


def test_classification_metrics_match_sklearn(scores_and_target):
    sk = pytest.importorskip("sklearn.metrics")
    from sklearn.preprocessing import label_binarize

    s, t = scores_and_target
    pred = s.argmax(1)
    assert M.accuracy(s, t) == pytest.approx(sk.accuracy_score(t, pred))
    assert M.mean_class_accuracy(s, t) == pytest.approx(sk.balanced_accuracy_score(t, pred))
    np.testing.assert_array_equal(M.confusion_matrix(s, t), sk.confusion_matrix(t, pred, labels=range(4)))
    np.testing.assert_allclose(M.precision(s, t), sk.precision_score(t, pred, average=None, zero_division=0))
    np.testing.assert_allclose(M.recall(s, t), sk.recall_score(t, pred, average=None, zero_division=0))
    np.testing.assert_allclose(M.iou(s, t), sk.jaccard_score(t, pred, average=None, zero_division=0))
    onehot = label_binarize(t, classes=range(4))
    ap = [sk.average_precision_score(onehot[:, c], s[:, c]) for c in range(4)]
    np.testing.assert_allclose(M.average_precision(s, t), ap)
    assert M.mean_average_precision(s, t) == pytest.approx(np.mean(ap))
    assert M.mean_iou(s, t) == pytest.approx(sk.jaccard_score(t, pred, average="macro"))


def test_regression_metrics_match_sklearn(rng):
    sk = pytest.importorskip("sklearn.metrics")
    y = rng.normal(size=(20, 7))
    p = y + 0.3 * rng.normal(size=y.shape)
    assert M.mse(p, y) == pytest.approx(sk.mean_squared_error(y.ravel(), p.ravel()))
    assert M.mae(p, y) == pytest.approx(sk.mean_absolute_error(y.ravel(), p.ravel()))
    assert M.r2(p, y) == pytest.approx(sk.r2_score(y.ravel(), p.ravel()))


def test_metrics_hand_computed():
    # true:      0 0 1 1 2 ; predicted: 0 1 1 1 0
    t = np.array([0, 0, 1, 1, 2])
    s = np.eye(3)[[0, 1, 1, 1, 0]]
    np.testing.assert_array_equal(M.confusion_matrix(s, t), [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert M.accuracy(s, t) == 0.6
    assert M.mean_class_accuracy(s, t) == pytest.approx((1 / 2 + 1 + 0) / 3)
    # a class absent from the target does not count; a constant prediction scores 1/classes
    assert M.mean_class_accuracy(np.eye(3)[[0, 0, 0]], np.array([0, 0, 1])) == pytest.approx(0.5)
    np.testing.assert_allclose(M.precision(s, t), [1 / 2, 2 / 3, 0])
    np.testing.assert_allclose(M.recall(s, t), [1 / 2, 1, 0])
    np.testing.assert_allclose(M.iou(s, t), [1 / 3, 2 / 3, 0])
    assert M.mean_iou(s, t) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    # AP of scores [0.9, 0.8, 0.7, 0.6] with positives at ranks 1 and 3: (1 + 2/3) / 2
    sc = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    assert M.average_precision(sc, np.array([1, 0, 1, 0]))[1] == pytest.approx((1 + 2 / 3) / 2)
    assert M.r2(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])) == pytest.approx(1 - 1 / (14 / 3))
    with pytest.raises(ValueError, match="target labels must be in"):
        M.accuracy(s, np.array([0, 0, 1, 1, 3]))
    with pytest.raises(ValueError, match="prediction shape"):
        M.mse(np.zeros(3), np.zeros(4))


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # [B=1, N=3, C=2]
    target = torch.tensor([[0, 1, 1]])
    w = [0.25, 2.0]
    logp = torch.log_softmax(logits[0], -1)
    nll = -torch.stack([logp[0, 0], logp[1, 1], logp[2, 1]])
    ww = torch.tensor([0.25, 2.0, 2.0])
    expected = (ww * nll).sum() / ww.sum()
    assert CrossEntropy(w)(logits, target).item() == pytest.approx(expected.item())
    np.testing.assert_allclose(balanced_weights([90, 10]), [100 / 180, 100 / 20])
    np.testing.assert_allclose(balanced_weights([5, 0, 5]), [1.0, 0.0, 1.0])


def test_a_batch_of_zero_weight_classes_has_zero_loss(tmp_path):
    """class_weights accept 0 (leave a class out), but torch's weighted mean over a batch
    holding only such classes is 0/0: NaN, and training stopped with "loss is nan; lower
    optim.lr". Such a batch now contributes nothing; all-zero weights are refused."""
    from deepsphere.training.builders import build_loss

    logits = torch.randn(4, 2, requires_grad=True)
    loss = CrossEntropy([0.0, 1.0])(logits, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(4, 2))
    mixed = torch.tensor([0, 1, 1, 0])
    assert CrossEntropy([0.0, 1.0])(logits, mixed).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, mixed, weight=torch.tensor([0.0, 1.0])).item())
    c = tiny_config(tmp_path / "run", class_weights=[0.0, 0.0])
    with pytest.raises(ConfigError, match=r"trainer\.class_weights: every weight is 0"):
        build_loss(c, SimpleNamespace(task="classification", n_classes=2))


# ---- the trainer -----------------------------------------------------------------------
def test_train_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    trainer = train(tiny_config(run, plots=True))
    for f in ("config.yaml", "metrics.csv", "checkpoints/best.pt", "checkpoints/last.pt",
              "test_metrics.json", "plots/learning_curves.png"):
        assert (run / f).is_file(), f
    pytest.importorskip("matplotlib")
    assert (run / "plots" / "maps_test.png").is_file()
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_accuracy", "val_mean_average_precision", "lr"} <= set(rows[0])
    # warm-up then cosine: lr = 0.02 * [1/2, 1, cos-decayed]
    assert [float(r["lr"]) for r in rows][:2] == pytest.approx([0.01, 0.02])
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and {"model", "optimizer", "scheduler", "rng", "history"} <= set(state)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files
    assert trainer.monitor == "val_accuracy" and trainer.greater


def test_learns_the_easy_task(tmp_path):
    """White vs steep spectra through little noise: the band power separates them."""
    c = tiny_config(tmp_path / "run", epochs=6)
    c.data.params.update(slopes=[0.0, 4.0], noise=0.1, n_train=64)
    c.model.params["dropout"] = 0.0
    c.optim.lr = 0.05
    trainer = train(c)
    assert trainer.history[-1]["val_accuracy"] >= 0.9
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["accuracy"] >= 0.9


def test_same_seed_same_metrics_and_weights(tmp_path):
    a = train(tiny_config(tmp_path / "a"))
    train(tiny_config(tmp_path / "b"))
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    c = train(tiny_config(tmp_path / "c", seed=1))
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))
    assert a.history[0]["train_loss"] != c.history[0]["train_loss"]


def test_resume_in_process_equals_uninterrupted(tmp_path):
    train(tiny_config(tmp_path / "full", epochs=4))
    t = Trainer(tiny_config(tmp_path / "part", epochs=4))
    t.fit(max_epochs=2)  # stops after 2 epochs, as if killed before the third
    assert load(tmp_path / "part" / "checkpoints" / "last.pt")["epoch"] == 2
    torch.manual_seed(123)  # scramble the global RNG: resume must restore it
    np.random.seed(5)
    train(tiny_config(tmp_path / "part", epochs=4), resume=True)
    assert read_metrics(tmp_path / "full") == read_metrics(tmp_path / "part")
    assert same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))


def test_extending_a_cosine_run_follows_the_longer_schedule_at_once(tmp_path):
    """Resuming a finished cosine run with more epochs kept, for the first new epoch, the
    rate the old schedule ends at (min_lr = 0: an epoch that trains nothing)."""
    full = train(tiny_config(tmp_path / "full", epochs=4)).history
    train(tiny_config(tmp_path / "part", epochs=2))
    part = train(tiny_config(tmp_path / "part", epochs=4), resume=True).history
    assert [r["lr"] for r in part[2:]] == pytest.approx([r["lr"] for r in full[2:]], rel=1e-12, abs=0)
    assert part[2]["lr"] > 0


def test_existing_run_and_changed_config_are_refused(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, epochs=1))
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config(run, epochs=1))
    changed = tiny_config(run, epochs=2)
    changed.optim.lr = 0.5
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.02 -> 0\.5"):
        Trainer(changed, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_config(tmp_path / "empty"), resume=True)
    # more epochs is a valid change
    assert len(train(tiny_config(run, epochs=2), resume=True).history) == 2


def test_early_stopping(tmp_path):
    c = tiny_config(tmp_path / "run", epochs=10, early_stopping=2, monitor="val_loss")
    c.optim.lr = 1e-12  # nothing changes: no improvement after the first epoch
    c.scheduler.name, c.scheduler.warmup_epochs = "none", 0
    c.model.params["dropout"] = 0.0
    trainer = train(c)
    assert len(trainer.history) == 3 and trainer.best_epoch == 1 and not trainer.greater


def test_gradient_clipping_bounds_the_step(tmp_path):
    """SGD without momentum moves the weights by lr * clipped gradient: the first
    step's change has norm <= lr * grad_clip."""
    c = tiny_config(tmp_path / "run", epochs=1, grad_clip=1e-3, batch_size=32)
    c.optim.name, c.optim.momentum, c.optim.lr = "sgd", 0.0, 1.0
    c.scheduler.name, c.scheduler.warmup_epochs = "none", 0
    t = Trainer(c)
    before = [p.detach().clone() for p in t.model.parameters()]
    t.fit()
    step = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(t.model.parameters(), before)))
    assert 0 < step.item() <= 1e-3 * (1 + 1e-5)


def test_segmentation_with_balanced_class_weights(tmp_path):
    c = Config.from_dict({
        "data": {"name": "synthetic_segmentation", "n_train": 16, "n_val": 8, "n_test": 8},
        "sampling": {"name": "healpix", "nside": 4, "base_pixels": [0, 4]},
        "model": {"name": f"{__name__}:PixelSegmenter"},
        "trainer": {"epochs": 2, "batch_size": 8, "class_weights": "balanced", "progress": False,
                    "plots": True, "out": str(tmp_path / "run")},
    })
    t = train(c)
    counts = t.dataset.class_counts()
    assert counts[1] < counts[0]  # imbalanced: peaks are rare
    np.testing.assert_allclose(t.loss_fn.weight.numpy(), balanced_weights(counts), rtol=1e-6)
    assert t.sampling.npix == 2 * 16 and "val_mean_iou" in t.history[-1]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "run" / "plots" / "maps_test.png").is_file()


def test_weighted_validation_loss_is_the_loss_of_the_whole_split(tmp_path):
    """With class weights the loss is sum_i w_i l_i / sum_i w_i; averaging per-batch
    ratios made the validation loss depend on eval_batch_size (and weight the batches
    by their size, not by their weight)."""
    import torch.nn.functional as F

    c = Config.from_dict({
        "data": {"name": "synthetic_segmentation", "n_train": 8, "n_val": 8, "n_test": 8},
        "sampling": {"name": "healpix", "nside": 4, "base_pixels": [0, 4]},
        "model": {"name": f"{__name__}:PixelSegmenter"},
        "trainer": {"epochs": 1, "batch_size": 8, "class_weights": [0.1, 20.0],
                    "progress": False, "plots": False, "out": str(tmp_path / "run")},
    })
    t = Trainer(c)
    out, tgt, _, loss = t.predict_split("val")
    whole = F.cross_entropy(torch.from_numpy(out).transpose(1, 2), torch.from_numpy(tgt).long(),
                            weight=torch.tensor([0.1, 20.0]))
    assert loss == pytest.approx(whole.item(), rel=1e-5)
    for bs in (1, 3):
        t.config.trainer.eval_batch_size = bs
        assert t.predict_split("val")[3] == pytest.approx(whole.item(), rel=1e-5)


def test_a_nan_monitored_value_never_becomes_the_best(tmp_path, monkeypatch, capsys):
    """NaN compares False with everything: a NaN first epoch stayed the best for good
    (best.pt frozen at it, early stopping counting every later epoch as no better)."""
    t = Trainer(tiny_config(tmp_path / "run", epochs=4, monitor="val_loss", early_stopping=2))
    values = iter([float("nan"), 0.9, float("nan"), 0.5])
    real = t.evaluate
    monkeypatch.setattr(t, "evaluate", lambda split="val": {**real(split), "loss": next(values)})
    t.fit()
    assert len(t.history) == 4 and t.best_epoch == 4 and t.best == 0.5
    assert load(tmp_path / "run" / "checkpoints" / "best.pt")["epoch"] == 4
    t = Trainer(tiny_config(tmp_path / "nan", epochs=2, monitor="val_loss"))
    monkeypatch.setattr(t, "evaluate", lambda split="val": {**real(split), "loss": float("nan")})
    t.fit()
    assert t.best is None and not (tmp_path / "nan" / "checkpoints" / "best.pt").exists()
    assert "val_loss was NaN at every epoch" in capsys.readouterr().out


def error_rate(scores, target):
    """A plug-in metric where smaller is better."""
    return 1.0 - M.accuracy(scores, target)


def test_monitoring_a_metric_of_unknown_direction_needs_mode(tmp_path):
    """A plug-in metric was assumed larger-is-better: monitoring an error rate kept the
    worst epoch as best.pt. Its direction must now be given."""
    plug = f"{__name__}:error_rate"
    with pytest.raises(ConfigError, match=r"trainer\.mode: .*error_rate.* set trainer\.mode to min or max"):
        Trainer(tiny_config(tmp_path / "a", metrics=[plug, "accuracy"]))
    assert not Trainer(tiny_config(tmp_path / "b", metrics=[plug], mode="min")).greater
    assert Trainer(tiny_config(tmp_path / "c", metrics=[plug, "accuracy"], monitor="val_accuracy")).greater


def test_checkpoint_is_atomic_and_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    atomic_save({"a": torch.ones(2)}, path)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))  # old one intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# ---- killed mid-run, then resumed ----------------------------------------------------------
KILL_CONFIG = """
data: {name: synthetic_fields, n_train: 256, n_val: 16, n_test: 16, noise: 0.3, slopes: [1.0, 3.0]}
sampling: {name: healpix, nside: 8}
model: {name: "test_training:PixelMLP", hidden: 16, dropout: 0.2}
optim: {name: adam, lr: 0.01}
scheduler: {name: cosine}
trainer: {epochs: 4, batch_size: 8, progress: false, plots: false}
"""


def _train_process(config, out, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "deepsphere.cli", "train", str(config), "--out",
                             str(out), *extra], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(KILL_CONFIG)
    full = _train_process(cfg, tmp_path / "full")
    victim = _train_process(cfg, tmp_path / "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "training ended before it could be killed:\n" + victim.stdout.read()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = load(last)["epoch"]
    assert 1 <= killed_at < 4
    resumed = _train_process(cfg, tmp_path / "killed", "--resume")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"resuming {tmp_path / 'killed'} after epoch {killed_at}" in out
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out
    assert read_metrics(tmp_path / "full") == read_metrics(tmp_path / "killed")
    for which in ("last", "best"):
        assert same_weights(weights(tmp_path / "full", which), weights(tmp_path / "killed", which))


def small_cli_config(tmp_path, monkeypatch, n_train: int):
    """KILL_CONFIG at nside 4 with ``n_train`` maps, written to ``tmp_path/c.yaml``, with this
    folder importable (the config names a plug-in dataset defined here)."""
    monkeypatch.syspath_prepend(str(HERE))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(KILL_CONFIG.replace("n_train: 256", f"n_train: {n_train}").replace("nside: 8", "nside: 4"))
    return cfg


# ---- command line ----------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_cli_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli([command, "--help"])
    assert e.value.code == 0
    assert f"deepsphere {command}" in capsys.readouterr().out


def test_predict_returns_per_pixel_outputs_in_the_input_order():
    """A RING input of a full-sky segmentation run gave NESTED labels: overlaid on the RING
    map, every pixel's label belonged to another pixel. Labels now follow the input's order;
    partial skies keep the run's pixel order."""
    import healpy as hp

    from deepsphere import models
    from deepsphere.sampling import HEALPix
    from deepsphere.training.predict import predict

    torch.manual_seed(0)
    s = HEALPix(4)
    net = models.SphericalUNet(s, 1, 3, channels=[4, 4], K=2).eval()
    info = {"task": "segmentation", "in_channels": 1}
    maps = np.random.default_rng(0).normal(size=(2, s.npix))
    nested = predict(net, s, info, maps, order="NESTED")
    ring = predict(net, s, info, np.stack([hp.reorder(m, n2r=True) for m in maps]), order="RING")
    with torch.no_grad():
        direct = net(torch.tensor(maps[:, :, None], dtype=torch.float32)).argmax(-1).numpy()
    np.testing.assert_array_equal(nested, direct)                       # NESTED in, NESTED out
    np.testing.assert_array_equal(ring, direct[:, hp.ring2nest(4, np.arange(s.npix))])
    part = HEALPix.from_pixels(4, np.arange(64))                        # base pixels 0 to 3
    pnet = models.SphericalUNet(part, 1, 3, channels=[4, 4], K=2).eval()
    full = np.random.default_rng(1).normal(size=(1, s.npix))
    a = predict(pnet, part, info, full, order="NESTED")
    b = predict(pnet, part, info, hp.reorder(full[0], n2r=True)[None], order="RING")
    np.testing.assert_array_equal(a, b)                                 # the run's 64 pixels
    assert a.shape == (1, 64)
    # the run's own 64 pixels need no order; a full-sky map does (an array records none, and
    # a RING map taken for NESTED gave a confident wrong answer)
    np.testing.assert_array_equal(predict(pnet, part, info, full[:, :64]), a)
    for args in ((net, s, info, maps), (pnet, part, info, full)):
        with pytest.raises(ValueError, match=r"full-sky HEALPix maps \(192 pixels, nside 4\).*"
                                             r"pass order='NESTED' or order='RING'"):
            predict(*args)
    with pytest.raises(ValueError, match="order must be 'NESTED' or 'RING', got 'nest'"):
        predict(net, s, info, maps, order="nest")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        predict(net, s, info, maps, batch_size=0)


def test_cli_train_evaluate_predict(tmp_path, capsys, monkeypatch):
    cfg = small_cli_config(tmp_path, monkeypatch, n_train=32)
    run = tmp_path / "run"
    assert cli(["train", str(cfg), "--out", str(run), "--set", "trainer.epochs=2"]) == 0
    assert cli(["train", str(cfg), "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli(["train", str(cfg), "--set", "trainer.epochz=2"]) == 2
    assert "trainer.epochz: unknown key" in capsys.readouterr().err
    assert cli(["train", str(cfg), "--set", "sampling.nside=3", "--out", str(tmp_path / "r3")]) == 2
    assert "sampling (healpix): nside=3 is not a valid HEALPix resolution" in capsys.readouterr().err

    assert cli(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and (run / "test_metrics.json").is_file()

    import healpy as hp

    maps = np.random.default_rng(0).normal(size=(3, 12 * 16))
    np.save(tmp_path / "nested.npy", maps)
    np.save(tmp_path / "ring.npy", np.stack([hp.reorder(m, n2r=True) for m in maps]))
    assert cli(["predict", str(run), str(tmp_path / "nested.npy")]) == 2
    assert "pass order='NESTED' or order='RING' (--order NESTED|RING)" in capsys.readouterr().err
    assert cli(["predict", str(run), str(tmp_path / "nested.npy"), "--order", "NESTED"]) == 0
    assert cli(["predict", str(run), str(tmp_path / "ring.npy"), "--order", "RING"]) == 0
    p_nested = np.load(run / "predictions" / "nested.npy")
    p_ring = np.load(run / "predictions" / "ring.npy")
    assert p_nested.shape == (3, 2)
    np.testing.assert_allclose(p_nested.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(p_nested, p_ring, rtol=1e-6)
    # predict agrees with the model applied directly
    from deepsphere.training.predict import load_model

    model, _, _, _ = load_model(run)
    direct = torch.softmax(model(torch.tensor(maps[:, :, None], dtype=torch.float32)), -1)
    np.testing.assert_allclose(p_nested, direct.detach().numpy(), rtol=1e-5)
    np.save(tmp_path / "bad.npy", np.zeros((3, 100)))
    assert cli(["predict", str(run), str(tmp_path / "bad.npy"), "--order", "NESTED"]) == 2
    assert "shape (3, 100)" in capsys.readouterr().err


def test_cli_train_never_overwrites_the_config_it_reads(tmp_path, capsys, monkeypatch):
    # 'deepsphere train config.yaml --out .' replaced the user's config (comments and all)
    # with the resolved one, overrides baked in
    monkeypatch.syspath_prepend(str(HERE))
    cfg = tmp_path / "config.yaml"
    text = "# my notes\n" + KILL_CONFIG.replace("n_train: 256", "n_train: 16").replace("nside: 8", "nside: 4")
    cfg.write_text(text)
    assert cli(["train", str(cfg), "--out", str(tmp_path), "--set", "trainer.epochs=1"]) == 2
    assert "which is the config file being read" in capsys.readouterr().err
    assert cfg.read_text() == text and not (tmp_path / "checkpoints").exists()
    # a run's own resolved config: a new run from it elsewhere, and resuming from it in place
    run = tmp_path / "run"
    assert cli(["train", str(cfg), "--out", str(run), "--set", "trainer.epochs=1"]) == 0
    assert cli(["train", str(run / "config.yaml"), "--out", str(run), "--resume",
                "--set", "trainer.epochs=2"]) == 0
    assert len(read_metrics(run)) == 2


def test_cli_ctrl_c_says_how_to_resume_and_resume_is_exact(tmp_path, capsys, monkeypatch):
    cfg = small_cli_config(tmp_path, monkeypatch, n_train=32)
    args = ["train", str(cfg), "--set", "trainer.epochs=3"]
    assert cli(args + ["--out", str(tmp_path / "full")]) == 0
    real = Trainer.train_epoch

    def ctrl_c_in_epoch_2(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", ctrl_c_in_epoch_2)
    capsys.readouterr()
    assert cli(args + ["--out", str(tmp_path / "cut")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "interrupted during epoch 2: the checkpoint after epoch 1 is kept" in err
    assert f"--resume --out {tmp_path / 'cut'} --set trainer.epochs=3" in err
    monkeypatch.setattr(Trainer, "train_epoch", real)
    assert cli(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    assert read_metrics(tmp_path / "full") == read_metrics(tmp_path / "cut")
    assert same_weights(weights(tmp_path / "full"), weights(tmp_path / "cut"))


def test_metrics_and_monitor_checked_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "train_epoch", lambda *a: pytest.fail("trained before the check"))
    # a regression metric on a classification task (was a shape error after one epoch)
    with pytest.raises(ConfigError, match=r"trainer\.metrics: 'mse' does not apply to a classification"):
        Trainer(tiny_config(tmp_path / "a", metrics=["accuracy", "mse"]))
    # a regression loss on classes (was a shape error in the first step)
    with pytest.raises(ConfigError, match=r"trainer\.loss: 'mse' is a loss for regression, but data "
                                          r"'synthetic_fields' is a classification task; use 'cross_entropy'"):
        Trainer(tiny_config(tmp_path / "f", loss="mse"))
    # a class index the model does not have (was found after one epoch)
    with pytest.raises(ConfigError, match=r"'val_precision_5' is not a logged value.*val_precision_1"):
        Trainer(tiny_config(tmp_path / "b", monitor="val_precision_5"))
    with pytest.raises(ConfigError, match=r"'val_iou' is not a logged value.*val_iou_0"):
        Trainer(tiny_config(tmp_path / "c", metrics=["iou"], monitor="val_iou"))
    # a per-class or matrix metric first: the default monitor is the first scalar one
    assert Trainer(tiny_config(tmp_path / "d", metrics=["iou", "accuracy"])).monitor == "val_accuracy"
    assert Trainer(tiny_config(tmp_path / "e", metrics=["confusion_matrix"])).monitor == "val_loss"


def test_cli_predict_bad_files_get_one_line(tmp_path, capsys, monkeypatch):
    cfg = small_cli_config(tmp_path, monkeypatch, n_train=16)
    run = tmp_path / "run"
    assert cli(["train", str(cfg), "--out", str(run), "--set", "trainer.epochs=1"]) == 0
    maps = np.random.default_rng(0).normal(size=(2, 192))
    np.save(tmp_path / "ok.npy", maps)
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:500])
    (tmp_path / "empty-file.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("0.1 0.2 0.3")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "no-maps.npy", np.zeros((0, 192)))
    np.save(tmp_path / "half.npy", maps.astype(np.float16))
    expected = {"truncated": "truncated.npy: cannot read this .npy file",
                "empty-file": "empty-file.npy: cannot read this .npy file",
                "text": "text.npy: cannot read this .npy file (no .npy header",
                "objects": "objects.npy: cannot read this .npy file (it holds Python objects",
                "no-maps": "no maps to predict on: the array has shape (0, 192, 1)",
        "ok": "device 'tpu' is not valid; choose from auto, cpu, cuda, cuda:N",  # was torch's RuntimeError
                "missing": "missing.npy: no such file"}
    capsys.readouterr()
    for name, message in expected.items():
        device = ["--device", "tpu"] if name == "ok" else []
        assert cli(["predict", str(run), str(tmp_path / f"{name}.npy"), "--order", "NESTED", *device]) == 2, name
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and "allow_pickle=" not in err, err
    # half precision is read as what it is (was refused: every pixel taken for UNSEEN)
    assert cli(["predict", str(run), str(tmp_path / "half.npy"), "--order", "NESTED"]) == 0
    assert cli(["predict", str(run), str(tmp_path / "ok.npy"), "--order", "NESTED"]) == 0
    np.testing.assert_allclose(np.load(run / "predictions" / "half.npy"),
                               np.load(run / "predictions" / "ok.npy"), atol=1e-2)


def test_cli_predict_fits_input_says_how_to_convert(tmp_path):
    """A FITS map given to predict (which reads .npy) is named as such, with the conversion
    to a NESTED .npy (was: 'not a .npy array, and it is never unpickled')."""
    import healpy as hp

    from deepsphere.training.commands import _load_npy

    m = np.random.default_rng(0).normal(size=192)
    hp.write_map(str(tmp_path / "m.fits"), hp.reorder(m, n2r=True), nest=False, dtype=np.float64)
    (tmp_path / "m.npy").write_bytes((tmp_path / "m.fits").read_bytes())  # misnamed
    for name in ("m.fits", "m.npy"):
        with pytest.raises(ValueError, match="a FITS file; predict reads .npy arrays") as e:
            _load_npy(str(tmp_path / name))
        assert "unpickled" not in str(e.value) and "nest=True" in str(e.value)
    # the advised conversion gives the map in predict's default (NESTED) order
    np.testing.assert_allclose(hp.read_map(str(tmp_path / "m.fits"), nest=True), m)


def test_load_model_checkpoint_name_is_checked(tmp_path):
    from deepsphere.training.predict import load_model

    for which in ("Best", "bst", "final"):  # was: any of these loaded the last checkpoint
        with pytest.raises(ValueError, match=f"which={which!r}: choose 'best'"):
            load_model(tmp_path, which)


def test_predict_feeds_the_model_on_its_own_device_by_default():
    """Maps go to the device of the model load_model returned (was: always 'cpu', a torch
    device-mismatch error for a model on CUDA). 'meta' stands in for an accelerator."""
    from deepsphere.sampling import HEALPix
    from deepsphere.training.predict import predict

    class OnMeta(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device="meta"))

        def forward(self, x):
            assert x.device == self.w.device, x.device
            return torch.zeros(len(x), 2)

    out = predict(OnMeta(), HEALPix(1), {"task": "classification", "in_channels": 1}, np.zeros((3, 12)),
                  order="NESTED")
    np.testing.assert_allclose(out, 0.5)


def test_predict_integer_maps_are_told_how_to_convert():
    from deepsphere.sampling import HEALPix
    from deepsphere.training.predict import as_batch

    with pytest.raises(ValueError, match=r"got dtype int64: convert them with maps.astype\(np.float32\)"):
        as_batch(np.zeros((2, 12), np.int64), HEALPix(1), 1)
    with pytest.raises(ValueError, match=r"got dtype complex128$"):  # no advice that drops a part
        as_batch(np.zeros((2, 12), complex), HEALPix(1), 1)


def test_predict_order_ring_needs_healpix():
    from deepsphere.sampling import Equiangular
    from deepsphere.training.predict import as_batch

    s = Equiangular(4, "DH")
    assert as_batch(np.zeros((2, s.npix)), s, 1).shape == (2, s.npix, 1)
    with pytest.raises(ValueError, match="'RING' is a HEALPix pixel ordering, but this run's sampling is Equiangular"):
        as_batch(np.zeros((2, s.npix)), s, 1, order="RING")


def test_predict_unseen_pixels_get_advice_predict_can_follow():
    """A map missing values on the run's pixels is refused with advice that applies to
    predict (was: the dataset advice 'pass unseen=...', an argument predict does not take)."""
    import healpy as hp

    from deepsphere.sampling import HEALPix
    from deepsphere.training.predict import as_batch

    s = HEALPix.from_pixels(4, np.arange(32))
    m = np.ones(192)
    m[100:] = hp.UNSEEN  # off the run's pixels: fine
    assert as_batch(m, s, 1, "NESTED").shape == (1, 32, 1)
    m[5] = np.nan
    with pytest.raises(ValueError, match=r"1 UNSEEN/NaN/inf .*positions \[5\]\): predict needs "
                                         r"a value at each of the run's pixels") as e:
        as_batch(m, s, 1, "NESTED")
    assert "unseen=" not in str(e.value) and "from_map" not in str(e.value)


def test_predict_applies_the_training_normalisation(tmp_path, capsys, monkeypatch):
    """Raw maps given to predict get the normalisation the training data had (here: maps
    divided by their training rms; stations standardised and centred), so predict on a raw
    map equals the model on the normalised item. Raw maps went in unnormalised before."""
    from deepsphere.training.predict import load_model

    monkeypatch.syspath_prepend(str(HERE))
    rng = np.random.default_rng(0)
    for c, amp in (("a", 0.01), ("b", 0.03)):  # convergence-like amplitudes, far from 1
        for i in range(3):
            np.save(tmp_path / f"{c}{i}.npy", amp * rng.standard_normal(192))
    cfg = tmp_path / "maps.yaml"
    cfg.write_text(
        f"data: {{name: cosmology_files, ordering: NESTED, val_fraction: 0.34, test_fraction: 0.34, "
        f"classes: {{a: ['{tmp_path}/a*.npy'], b: ['{tmp_path}/b*.npy']}}}}\n"
        "sampling: {name: healpix, nside: 4}\n"
        "model: {name: 'test_training:PixelMLP', hidden: 4}\n"
        "trainer: {epochs: 1, batch_size: 2, progress: false, plots: false}\n")
    stations = tmp_path / "stations.yaml"
    stations.write_text(
        "data: {name: synthetic_stations, n_days: 60, history: 3}\n"
        "sampling: {name: random_stations, n: 30}\n"
        "model: {name: station, channels: [4], K: 2}\n"
        "trainer: {epochs: 1, batch_size: 8, progress: false, plots: false}\n")
    for config, name in ((cfg, "maps"), (stations, "stations")):
        run = tmp_path / name
        trainer = train(load_config(config), run)
        model, _, info, _ = load_model(run)
        split = trainer.dataset.split("test")
        x = torch.stack([split[i][0] for i in range(len(split))])
        tf = trainer.dataset.input_transform()
        raw = x.numpy() * np.float32(tf["scale"]) + np.float32(tf["shift"])
        np.save(tmp_path / f"{name}-raw.npy", raw)
        order = ["--order", "NESTED"] if name == "maps" else []
        assert cli(["predict", str(run), str(tmp_path / f"{name}-raw.npy"), *order]) == 0
        got = np.load(run / "predictions" / f"{name}-raw.npy")
        with torch.no_grad():
            out = model(x)
        if name == "maps":
            np.testing.assert_allclose(got, torch.softmax(out, -1).numpy(), rtol=1e-4, atol=1e-6)
        else:  # back in the data's units: the centring undone
            np.testing.assert_allclose(got, out.numpy() + trainer.dataset.mean, rtol=1e-4, atol=1e-3)


def test_predict_computes_the_station_time_features_from_the_times(tmp_path, capsys, monkeypatch):
    """A station run's inputs end with features of the target time (season; local hour for
    SAO files). predict takes the past values and the target times and builds them as the
    dataset did; past values alone used to be refused as 'maps have 3 channels, the model
    takes 5', with no word on what the other two were."""
    from deepsphere.training.predict import load_model, predict

    monkeypatch.syspath_prepend(str(HERE))
    from test_data_stations import write_sao

    n, rng = 12, np.random.default_rng(1)
    rows = [[(f"S{k}", 30.0 + 3 * k, -100.0 + 7 * k, 10.0 + k + np.sin(h) + rng.normal())
             for h in range(n)] for k in range(6)]
    write_sao(tmp_path / "sao.cdf", rows, n)
    (tmp_path / "daily.yaml").write_text(
        "data: {name: synthetic_stations, n_days: 60, history: 3, start: '2001-02-03'}\n"
        "sampling: {name: random_stations, n: 30}\n"
        "model: {name: station, channels: [4], K: 2}\n"
        "trainer: {epochs: 1, batch_size: 8, progress: false, plots: false}\n")
    (tmp_path / "hourly.yaml").write_text(
        f"data: {{name: sao_hourly, path: {tmp_path / 'sao.cdf'}, history: 2, max_gap: 1}}\n"
        f"sampling: {{name: sao_stations, path: {tmp_path / 'sao.cdf'}, min_hours: 10}}\n"
        "graph: {kind: knn, k: 3, kernel_width: heuristic}\n"
        "model: {name: station, channels: [4], K: 2}\n"
        "trainer: {epochs: 1, batch_size: 2, progress: false, plots: false}\n")
    for name, to_time in (("daily", lambda t: str(np.datetime64("2001-02-03") + t)),
                          ("hourly", lambda t: t)):
        run = tmp_path / name
        trainer = train(load_config(tmp_path / f"{name}.yaml"), run)
        model, sampling, info, _ = load_model(run)
        ds, h = trainer.dataset, trainer.dataset.history
        assert info["known_features"] == {"kind": {"daily": "day_of_year", "hourly": "local_time"}[name],
                                          "channels": 2} and info["in_channels"] == h + 2
        split = ds.split("test")
        x = torch.stack([split[i][0] for i in range(len(split))])
        past = x[..., :h].numpy() * np.float32(ds.std) + np.float32(ds.mean)  # raw past values
        times = [to_time(int(t)) for t in split.targets]
        with torch.no_grad():
            want = model(x).numpy() + ds.mean
        np.testing.assert_allclose(predict(model, sampling, info, past, times=times), want,
                                   rtol=1e-4, atol=1e-3)
        with pytest.raises(ValueError, match=rf"takes {h + 2} channels: {h} of past values, then 2 "
                                             r".*features of the target time.*times="):
            predict(model, sampling, info, past)
        with pytest.raises(ValueError, match=r"one target time per map"):
            predict(model, sampling, info, past, times=times[:1])
        # all channels given, features included: as before
        full = np.concatenate([past, x[..., h:].numpy()], axis=-1)
        np.testing.assert_allclose(predict(model, sampling, info, full), want, rtol=1e-4, atol=1e-3)
        np.save(tmp_path / f"{name}.npy", past)
        arg = ",".join(str(t) for t in times)
        assert cli(["predict", str(run), str(tmp_path / f"{name}.npy"), "--times", arg]) == 0
        np.testing.assert_allclose(np.load(run / "predictions" / f"{name}.npy"), want, rtol=1e-4, atol=1e-3)
    model, sampling, info, _ = load_model(tmp_path / "daily")
    with pytest.raises(ValueError, match=r"times must be dates"):
        predict(model, sampling, info, np.zeros((1, 30, 3), np.float32), times=[5])
    capsys.readouterr()


def test_a_run_with_relative_data_paths_says_where_they_were_looked_for(tmp_path, capsys, monkeypatch):
    """A run's config.yaml keeps a relative CSV path as written: evaluate or predict from
    another directory printed only "[Errno 2] No such file or directory: 'stations.csv'"."""
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    (work / "stations.csv").write_text("id,lon,lat\n" + "".join(
        f"S{i},{lo:.3f},{la:.3f}\n" for i, (lo, la) in
        enumerate(zip(rng.uniform(-180, 180, 30), rng.uniform(-60, 60, 30)))))
    (work / "run.yaml").write_text(
        "sampling: {name: irregular_csv, path: stations.csv, units: deg, id_column: id}\n"
        "data: {name: synthetic_stations, n_days: 40, history: 2, season: false}\n"
        "model: {name: station, channels: [4], K: 2}\n"
        "trainer: {epochs: 1, batch_size: 8, progress: false, plots: false, out: run}\n")
    monkeypatch.chdir(work)
    assert cli(["train", "run.yaml"]) == 0
    np.save(work / "past.npy", np.zeros((1, 30, 2), np.float32))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for args in (["evaluate", "work/run"], ["predict", "work/run", "work/past.npy"]):
        assert cli(args) == 2
        err = capsys.readouterr().err
        assert re.search(r"sampling \(irregular_csv\): no such file or directory: 'stations.csv' "
                         r"\(relative paths are read from the current directory, .*give absolute", err), err
        assert str(tmp_path) in err
    monkeypatch.chdir(work)  # where it was trained, the same run is found
    assert cli(["predict", "run", "past.npy"]) == 0
    with pytest.raises(ConfigError, match=r"no such file or directory: '/nonexistent/s.csv'$"):
        from deepsphere.training.builders import build_sampling
        build_sampling(load_config(work / "run.yaml", ["sampling.path=/nonexistent/s.csv"]))
    capsys.readouterr()


class _ItemsOf:
    """A user's regression dataset whose items are built by ``make(npix)``."""

    task, in_channels, out_channels = "regression", 1, 1

    def __init__(self, sampling, make):
        from torch.utils.data import TensorDataset

        x = make(sampling.npix)
        self._split = TensorDataset(x, torch.zeros(len(x), sampling.npix, 1))

    def split(self, name):
        return self._split


@pytest.mark.parametrize("make, match", [
    (lambda n: torch.randn(4, n), r"has shape \(48,\), expected \(48, 1\)"),         # no channel axis
    (lambda n: torch.randn(4, n, 1).double(), r"is torch.float64, expected torch.float32"),
    (lambda n: torch.randn(4, n, 2), r"has shape \(48, 2\), expected \(48, 1\)"),
])
def test_a_dataset_breaking_the_item_contract_is_named_before_training(tmp_path, monkeypatch, make, match):
    """The first item is checked against x float32 [npix, in_channels]: otherwise the model's
    first forward pass failed with a traceback about the model ('add a batch axis with
    x.unsqueeze(0)', 'layer.to(torch.float64)')."""
    from deepsphere.training import DATASETS

    name = "user-items"
    monkeypatch.setitem(DATASETS._entries, name, lambda sampling: _ItemsOf(sampling, make))
    config = Config.from_dict({"sampling": {"name": "healpix", "nside": 2}, "data": {"name": name},
                               "model": {"name": "station", "channels": [2], "K": 2},
                               "trainer": {"epochs": 1, "progress": False, "plots": False}})
    with pytest.raises(ConfigError, match=rf"data: dataset '{name}': x of item 0 of the train split "
                                         + match + r".*float32 \[npix, in_channels\] = \[48, 1\]"):
        Trainer(config, tmp_path / "run")


@pytest.mark.parametrize("script, command", [("train.py", "train"), ("evaluate.py", "evaluate")])
def test_scripts_are_the_cli(script, command, monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")
    assert e.value.code == 0
    assert f"deepsphere {command}" in capsys.readouterr().out


@pytest.mark.parametrize("scheduler, expected", [
    ({"name": "step", "step_size": 2, "gamma": 0.5}, [1, 1, 0.5, 0.5, 0.25]),
    ({"name": "multistep", "milestones": [1, 3], "gamma": 0.1}, [1, 0.1, 0.1, 0.01, 0.01]),
    ({"name": "exponential", "gamma": 0.5}, [1, 0.5, 0.25, 0.125, 0.0625]),
    ({"name": "cosine"}, [1, 0.5 * (1 + np.cos(np.pi / 5)), 0.5 * (1 + np.cos(2 * np.pi / 5)),
                          0.5 * (1 + np.cos(3 * np.pi / 5)), 0.5 * (1 + np.cos(4 * np.pi / 5))]),
    ({"name": "none", "warmup_epochs": 2}, [1 / 3, 2 / 3, 1, 1, 1]),
])
def test_schedules_by_epoch_and_their_state_loads_weights_only(scheduler, expected, tmp_path):
    from deepsphere.training.builders import build_optimizer, build_scheduler

    c = Config.from_dict({"optim": {"lr": 1.0}, "scheduler": scheduler, "trainer": {"epochs": 5}})
    opt = build_optimizer(c, torch.nn.Linear(2, 2))
    sched = build_scheduler(c, opt)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs, expected, rtol=1e-12, atol=1e-15)
    atomic_save({"s": sched.state_dict()}, tmp_path / "s.pt")
    assert load(tmp_path / "s.pt")["s"]["last_epoch"] == 5


def test_cosine_min_lr_above_lr_is_refused():
    """min_lr > lr made the cosine "decay" raise the rate, silently."""
    from deepsphere.training.builders import build_optimizer, build_scheduler

    c = Config.from_dict({"optim": {"lr": 1e-3}, "scheduler": {"name": "cosine", "min_lr": 1e-2}})
    with pytest.raises(ConfigError, match=r"scheduler\.min_lr: 0\.01 is above optim\.lr 0\.001"):
        build_scheduler(c, build_optimizer(c, torch.nn.Linear(2, 2)))


def test_partial_sky_maps_are_filled_with_unseen():
    import healpy as hp

    from deepsphere.training.builders import healpix_sampling
    from deepsphere.training.plots import full_sky

    s = healpix_sampling(4, base_pixels=[3, 7])
    m = full_sky(np.arange(s.npix, dtype=float), s)
    assert m.shape == (192,) and s.npix == 32
    np.testing.assert_array_equal(m[3 * 16:4 * 16], np.arange(16))  # NESTED block of base pixel 3
    np.testing.assert_array_equal(m[7 * 16:8 * 16], np.arange(16, 32))
    assert np.sum(m == hp.UNSEEN) == 192 - 32
    with pytest.raises(ValueError, match="base_pixels must be distinct integers in 0..11"):
        healpix_sampling(4, base_pixels=[12])


def test_segmentation_maps_give_each_class_one_colour(tmp_path, monkeypatch):
    """Prediction and target panels used each map's own range, so in an example without
    class 2 the colour of class 2 meant class 1. They now share the range 0..n_classes-1
    (per-pixel regression: the range of prediction and target together)."""
    import healpy as hp

    pytest.importorskip("matplotlib")
    from deepsphere.sampling import HEALPix
    from deepsphere.training import plots

    calls = []
    real = hp.mollview
    monkeypatch.setattr(hp, "mollview", lambda m, **kw: (calls.append((np.asarray(m), kw)), real(m, **kw)))
    s = HEALPix(2)
    x = np.random.default_rng(0).standard_normal((1, 48, 1))
    logits = np.zeros((1, 48, 3))
    logits[0, :5, 1] = 1.0                                # classes 0 and 1 only
    target = np.zeros((1, 48), dtype=int)
    target[0, :4] = 1
    plots.example_maps(s, x, logits, target, "segmentation", ["bg", "TC", "AR"], tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000
    (_, k_in), (_, k_pred), (_, k_tgt) = calls
    assert "min" not in k_in
    for kw in (k_pred, k_tgt):
        assert (kw["min"], kw["max"]) == (0, 2)
    assert "0 bg, 1 TC, 2 AR" in k_tgt["title"]
    calls.clear()
    plots.example_maps(s, x, np.full((1, 48, 1), 2.0), np.full((1, 48), -1.0), "regression", None,
                       tmp_path / "r.png")
    assert [(kw["min"], kw["max"]) for _, kw in calls[1:]] == [(-1.0, 2.0), (-1.0, 2.0)]


def test_plateau_schedule_follows_the_monitored_value(tmp_path):
    c = tiny_config(tmp_path / "run", epochs=3, monitor="val_loss")
    # validation loss stays put (to within the plateau's 1e-4): a plateau from the first
    # epoch on. The rate is above the scheduler's eps = 1e-8, under which it never decays.
    c.optim.lr = 1e-6
    c.scheduler.name, c.scheduler.warmup_epochs, c.scheduler.patience, c.scheduler.gamma = "plateau", 0, 0, 0.5
    c.model.params["dropout"] = 0.0
    t = train(c)
    assert [r["lr"] for r in t.history] == pytest.approx([1e-6, 1e-6, 5e-7], rel=1e-9, abs=0)


def test_plateau_schedule_sees_a_flat_accuracy(tmp_path):
    """A larger-is-better value was passed negated to a 'min' plateau scheduler, whose
    relative threshold best * (1 - 1e-4) is then above a negative best: an unchanged
    accuracy counted as an improvement every epoch and the rate never decayed."""
    c = tiny_config(tmp_path / "run", epochs=3, monitor="val_accuracy")
    c.optim.lr = 1e-6
    c.scheduler.name, c.scheduler.warmup_epochs, c.scheduler.patience, c.scheduler.gamma = "plateau", 0, 0, 0.5
    c.model.params["dropout"] = 0.0
    t = train(c)
    assert len({r["val_accuracy"] for r in t.history}) == 1
    assert [r["lr"] for r in t.history] == pytest.approx([1e-6, 1e-6, 5e-7], rel=1e-9, abs=0)


def test_monitor_must_be_a_logged_value(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer\.monitor: 'val_acc' is not a logged value"):
        Trainer(tiny_config(tmp_path / "a", monitor="val_acc"))
    t = Trainer(tiny_config(tmp_path / "b", monitor="val_recall_1"))
    assert t.greater
    t = Trainer(tiny_config(tmp_path / "c", monitor="val_loss"))
    assert not t.greater


def test_cli_equivariance_bad_config_gets_one_line(tmp_path, capsys):
    # were tracebacks (YAML error, a folder, n_signals 0) or exit status 1
    good = tmp_path / "sweep.yaml"
    good.write_text("degrees: [2]\nn_signals: 1\nn_rotations: 1\nsamplings:\n"
                    "  - {name: healpix, nside: 2}\ngraphs:\n"
                    "  - {label: k8, kind: knn, k: 8, kernel_width: heuristic}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("samplings: [\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text(good.read_text() + "graphs:\n  - {label: hp, kind: healpix}\n")
    out = ["--out", str(tmp_path / "out"), "--no-plot"]
    for argv, message in (([str(tmp_path / "missing.yaml")], "does not exist"),
                          ([str(tmp_path)], "is a folder"),
                          ([str(broken)], "not valid YAML"),
                          ([str(twice)], "key 'graphs' appears twice"),
                          ([str(good), "--n-signals", "0"], "n_signals, n_rotations")):
        assert cli(["equivariance", *argv, *out]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def _recorded_train_epoch(trainer):
    """Run one training epoch; return its train_loss and the (output, target) of every batch,
    recorded as the loss module saw them."""
    seen = []
    handle = trainer.loss_fn.register_forward_hook(
        lambda m, inp, out: seen.append((inp[0].detach().clone(), inp[1].clone())))
    try:
        value = trainer.train_epoch(0)
    finally:
        handle.remove()
    return value, seen


def test_weighted_train_loss_is_the_loss_of_the_whole_epoch(tmp_path):
    """train_loss averaged the per-batch weighted losses (weighted by batch size) while
    val_loss is sum_i w_i l_i / sum_i w_i over the split: with class weights the two curves
    were not the same quantity. train_loss is now sum_i w_i l_i / sum_i w_i over the epoch's
    batches, each as the optimiser saw it (computed here by hand from the batches' outputs)."""
    import torch.nn.functional as F

    w = torch.tensor([0.1, 20.0])
    c = Config.from_dict({
        "data": {"name": "synthetic_segmentation", "n_train": 10, "n_val": 4, "n_test": 4},
        "sampling": {"name": "healpix", "nside": 4, "base_pixels": [0, 4]},
        "model": {"name": f"{__name__}:PixelSegmenter"},
        "optim": {"name": "adam", "lr": 0.05},
        "trainer": {"epochs": 1, "batch_size": 4, "class_weights": w.tolist(),
                    "progress": False, "plots": False, "out": str(tmp_path / "run")},
    })
    value, seen = _recorded_train_epoch(Trainer(c))
    assert [len(o) for o, _ in seen] == [4, 4, 2]
    num = den = 0.0
    per_batch, sizes = [], []
    for out, y in seen:
        nll = F.cross_entropy(out.double().transpose(1, 2), y.long(), reduction="none")
        wy = w.double()[y.long()]
        num, den = num + float((wy * nll).sum()), den + float(wy.sum())
        per_batch.append(float((wy * nll).sum() / wy.sum()))
        sizes.append(len(out))
    assert value == pytest.approx(num / den, rel=1e-5)
    # the old estimator, a size-weighted mean of the batch ratios, is another number here
    old = float(np.dot(per_batch, sizes) / sum(sizes))
    assert abs(old - num / den) > 1e-3 * abs(num / den)


def test_train_loss_is_the_per_sample_mean_with_a_short_last_batch(tmp_path):
    """Unweighted: the mean of the per-sample losses of the epoch (10 maps in batches of
    4, 4, 2), not the mean of the three batch means."""
    import torch.nn.functional as F

    c = tiny_config(tmp_path / "run", batch_size=4, epochs=1)
    c.data.params.update(n_train=10)
    value, seen = _recorded_train_epoch(Trainer(c))
    assert [len(o) for o, _ in seen] == [4, 4, 2]
    losses = [F.cross_entropy(o.double(), y.long(), reduction="none") for o, y in seen]
    per_sample = torch.cat(losses).mean().item()
    assert value == pytest.approx(per_sample, rel=1e-6)
    assert abs(np.mean([float(l.mean()) for l in losses]) - per_sample) > 1e-4


def test_evaluating_the_last_checkpoint_keeps_the_best_test_metrics(tmp_path, capsys):
    """``deepsphere evaluate RUN --checkpoint last`` wrote the last epoch's figures over
    RUN/test_metrics.json, the best-validation checkpoint's test metrics of the run, and
    the file did not say which checkpoint it held."""
    run = tmp_path / "run"
    t = train(tiny_config(run, epochs=3, monitor="val_loss", mode="max"))
    assert t.best_epoch < 3  # the best and the last checkpoint differ
    best = (run / "test_metrics.json").read_text()
    assert json.loads(best)["checkpoint"] == "best" and json.loads(best)["epoch"] == t.best_epoch
    assert cli(["evaluate", str(run), "--checkpoint", "last"]) == 0
    assert "test_metrics_last.json" in capsys.readouterr().out
    assert (run / "test_metrics.json").read_text() == best
    last = json.loads((run / "test_metrics_last.json").read_text())
    assert last["checkpoint"] == "last" and last["epoch"] == 3 and last["split"] == "test"
    assert cli(["evaluate", str(run)]) == 0  # the best again: the same figures
    again = json.loads((run / "test_metrics.json").read_text())
    assert again["epoch"] == t.best_epoch and again["accuracy"] == json.loads(best)["accuracy"]


def test_segmentation_monitors_mean_iou_by_default(tmp_path):
    """Pixel accuracy is dominated by the background: as the default monitor it picked a
    near-background predictor as the best epoch (digits segmentation: epoch 1 of 6)."""
    from deepsphere.training.trainer import Trainer

    t = Trainer(Config.from_dict({
        "data": {"name": "synthetic_segmentation", "n_train": 4, "n_val": 2, "n_test": 2},
        "sampling": {"name": "healpix", "nside": 4},
        "model": {"name": "unet", "channels": [2, 4], "K": 2},
        "trainer": {"epochs": 1, "batch_size": 2, "progress": False, "plots": False,
                    "out": str(tmp_path / "run")},
    }))
    assert t.monitor == "val_mean_iou"


@pytest.mark.parametrize("name", ["mse", "l1", "cross_entropy"])
def test_loss_sums_over_uneven_batches_give_the_loss_of_the_whole(name):
    """The validation loss is sum(numerators) / sum(denominators) over the batches: for
    losses without their own ``sums`` (mse, l1) the fallback must weight each batch mean by
    the batch size, so that batches of 5, 5 and 1 items give torch's loss of all 11."""
    import torch.nn.functional as F

    from deepsphere.training.losses import cross_entropy, l1, loss_sums, mse

    g = torch.Generator().manual_seed(0)
    out = torch.randn(11, 3, generator=g)
    if name == "cross_entropy":
        tgt, fn, ref = torch.randint(0, 3, (11,), generator=g), cross_entropy(), F.cross_entropy
    else:
        tgt = torch.randn(11, 3, generator=g)
        fn, ref = (mse(), F.mse_loss) if name == "mse" else (l1(), F.l1_loss)
    parts = [loss_sums(fn, out[a:b], tgt[a:b]) for a, b in ((0, 5), (5, 10), (10, 11))]
    total = sum(n for n, _ in parts) / sum(d for _, d in parts)
    assert total == pytest.approx(ref(out, tgt).item(), rel=1e-6)


def test_rng_state_round_trip_restores_torch_numpy_and_python():
    """Exact resume restores every global RNG a dataset, model or plug-in may draw from:
    after set_rng_state the same numbers come out of torch, numpy and random again."""
    import random

    from deepsphere.training import checkpoint as ckpt

    saved = ckpt.rng_state()  # leave the other tests' global RNGs as they were
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # numpy's cached Gaussian is part of the state too
    state = ckpt.rng_state()
    first = (torch.rand(3), np.random.rand(3), np.random.normal(), [random.random() for _ in range(3)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    ckpt.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), np.random.normal(), [random.random() for _ in range(3)])
    ckpt.set_rng_state(saved)
    assert torch.equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]


def test_resume_keeps_the_early_stopping_count(tmp_path):
    """A run stopped after 2 epochs (the second without improvement) and resumed stops after
    the third, as the uninterrupted run does: the patience counter is restored, not reset."""
    def config(out):
        c = tiny_config(out, epochs=10, early_stopping=2, monitor="val_loss")
        c.optim.lr = 1e-12  # nothing changes: no improvement after the first epoch
        c.scheduler.name, c.scheduler.warmup_epochs = "none", 0
        c.model.params["dropout"] = 0.0
        return c

    full = train(config(tmp_path / "full"))
    assert len(full.history) == 3
    t = Trainer(config(tmp_path / "part"))
    t.fit(max_epochs=2)
    assert t.bad_epochs == 1
    assert len(train(config(tmp_path / "part"), resume=True).history) == 3
