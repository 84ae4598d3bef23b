"""Data-parallel training through torchrun: 2 CPU processes on gloo give the same model
as 1 process with the same global batch.

The compared model has no batch norm (``batchnorm: false``): torch's SyncBatchNorm runs on
CUDA only, and per-process batch statistics differ from whole-batch ones by design. The
conversion of the models' VertexBatchNorm to a synchronised one is checked separately."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepsphere.training.checkpoint import load

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """
data: {name: synthetic_fields, n_train: 32, n_val: 8, n_test: 8, noise: 0.3}
sampling: {name: healpix, nside: 4}
graph: {kind: knn, k: 8}
model: {name: cnn, channels: [4], K: 3, batchnorm: false}
optim: {name: adam, lr: 0.01}
trainer: {epochs: 2, batch_size: 8, progress: false, plots: false}
"""


def _start(args, out):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, *args, "-m", "deepsphere.cli", "train",
                             str(out.parent / "c.yaml"), "--out", str(out)], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p):
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    return out


def test_two_gloo_processes_match_one_process(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    ddp = _start(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], tmp_path / "ddp")
    single = _start([], tmp_path / "single")
    out2 = _finish(ddp)
    _finish(single)
    a = load(tmp_path / "single" / "checkpoints" / "last.pt")
    b = load(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
    # training moved the weights: the comparison is not between two initialisations
    assert a["history"][0]["train_loss"] != a["history"][1]["train_loss"]
    for ra, rb in zip(a["history"], b["history"]):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6)
    # rank 0 alone logs: one line per epoch, not one per process
    assert out2.count("epoch   1/2") == 1
    assert len((tmp_path / "ddp" / "metrics.csv").read_text().strip().splitlines()) == 3


def test_vertex_batchnorm_converts_to_a_synchronised_twin():
    from deepsphere.nn.blocks import ChebBlock
    from deepsphere.training.distributed import SyncVertexBatchNorm, convert_sync_batchnorm

    torch.manual_seed(0)
    block = ChebBlock(2, 3, 2)
    block.train()
    block(torch.randn(4, 12, 2), torch.eye(12).to_sparse_csr())  # some running statistics
    block.eval()
    x = torch.randn(5, 12, 2)
    L = torch.eye(12).to_sparse_csr()
    expected = block(x, L)
    running_var = block.norm.running_var.clone()
    weight = block.norm.weight
    conv = convert_sync_batchnorm(block)
    assert isinstance(conv.norm, SyncVertexBatchNorm)
    conv.eval()  # eval mode uses running statistics: no process group needed
    torch.testing.assert_close(conv(x, L), expected)
    np.testing.assert_array_equal(conv.norm.running_var.numpy(), running_var.numpy())
    assert conv.norm.weight is weight  # same Parameter: an optimizer built before still trains it


def test_world_size_without_torchrun_says_how_to_launch(monkeypatch):
    """WORLD_SIZE > 1 without the rest of torchrun's environment is a clear error (was a
    KeyError: 'RANK'), and no process group is joined."""
    import torch.distributed as dist

    from deepsphere.training.distributed import init

    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2 .* RANK, MASTER_ADDR, MASTER_PORT is not set: "
                                           "launch with torchrun"):
        init("cpu")
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not init("cpu").enabled
