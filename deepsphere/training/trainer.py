"""The training loop: one :class:`Trainer` per run directory.

Run directory layout::

    RUN/config.yaml            the resolved config (every default filled in)
    RUN/metrics.csv            one row per epoch (train loss, validation loss and metrics)
    RUN/checkpoints/last.pt    written atomically at the end of every epoch
    RUN/checkpoints/best.pt    the epoch with the best monitored validation value
    RUN/test_metrics.json      the best checkpoint on the test split, after training
                               (``deepsphere evaluate --checkpoint last``: test_metrics_last.json)
    RUN/plots/                 learning curves, example maps (HEALPix), confusion matrix

Exact resume: data order is a function of (seed, epoch) (``DistributedSampler``), noise
of (seed, epoch, item), and the checkpoint holds every other state (model, optimizer,
scheduler, AMP scaler, RNGs, history, early-stopping counters), so a run stopped after
epoch e and resumed is the same computation as a run that never stopped.
"""
from __future__ import annotations

import csv
import gc
import inspect
import io
import json
import os
import random
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from . import checkpoint as ckpt
from . import distributed as dist_
from . import metrics as M
from .builders import (WarmupCosine, build_dataset, build_loss, build_model, build_optimizer, build_sampling,
                       build_scheduler, n_outputs)
from .config import Config, ConfigError, validate
from .losses import loss_sums

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
CHECKPOINT_FORMAT = 1
# trainer keys that may differ between a run and its resumption
_RESUMABLE_CHANGES = {"epochs", "progress", "plots", "out", "num_workers", "early_stopping"}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if not (name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", name)):
        raise ConfigError(f"device {name!r} is not valid; choose from auto, cpu, cuda, cuda:N")
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device: {name!r} asked for but CUDA is not available; use auto or cpu")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch (all devices); ``deterministic`` also pins cuDNN to
    deterministic kernels (CPU runs are deterministic either way)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def data_info(dataset) -> dict:
    """What a model needs to know about the data, stored in checkpoints so ``predict``
    rebuilds the model without regenerating the data."""
    names = getattr(dataset, "class_names", None)
    info = {"task": dataset.task, "in_channels": int(dataset.in_channels),
            "n_outputs": n_outputs(dataset),
            "class_names": None if names is None else [str(n) for n in names]}
    if hasattr(dataset, "input_transform"):  # how raw inputs were normalised (predict redoes it)
        tf = dataset.input_transform()
        info["input_transform"] = {k: ([float(x) for x in v] if np.ndim(v) else float(v))
                                   for k, v in tf.items()}
    feats = getattr(dataset, "known_features", None)
    if feats:  # channels of the target time (season, hour) that predict computes from times
        info["known_features"] = {"kind": str(feats["kind"]), "channels": int(feats["channels"])}
    return info


def info_namespace(info: dict) -> SimpleNamespace:
    """A dataset stand-in carrying only :func:`data_info` (for :func:`build_model`)."""
    return SimpleNamespace(task=info["task"], in_channels=info["in_channels"],
                           n_classes=info["n_outputs"], out_channels=info["n_outputs"],
                           class_names=info["class_names"])


def config_differences(a: dict, b: dict, prefix: str = "") -> List[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


class Trainer:
    """Train the model a :class:`Config` describes, in run directory ``out``.

    Parameters
    ----------
    config : Config
        The run's configuration (validated here).
    out : path, optional
        Run directory; default ``config.trainer.out``.
    resume : bool
        Continue from ``out/checkpoints/last.pt``. Without it an existing run directory
        with checkpoints is an error (never overwritten silently).
    new_run : bool
        False to open an existing run for evaluation (see :func:`open_run`).
    """

    def __init__(self, config: Config, out: Optional[Union[str, Path]] = None, resume: bool = False,
                 new_run: bool = True):
        validate(config)
        self.config = config
        t = config.trainer
        self.out = Path(out if out is not None else t.out)
        t.out = str(self.out)
        self.device = resolve_device(t.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = dist_.init(self.device.type)
        self.is_main = self.dist.is_main
        if t.batch_size % self.dist.world_size:
            raise ConfigError(
                f"trainer.batch_size: the global batch {t.batch_size} must be divisible by the "
                f"{self.dist.world_size} processes"
            )
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        seed_everything(t.seed, t.deterministic)

        self.sampling = build_sampling(config)
        self.dataset = build_dataset(config, self.sampling)
        self.task = self.dataset.task
        self.info = data_info(self.dataset)
        self.model = build_model(config, self.sampling, self.dataset).to(self.device)
        self.net = self.model  # what the training step calls (the DDP wrapper when distributed)
        if self.dist.enabled:
            self._wrap_distributed()
        self.loss_fn = build_loss(config, self.dataset).to(self.device)
        self.optimizer = build_optimizer(config, self.model)
        self.amp = bool(t.amp and self.device.type == "cuda")
        self.amp_dtype = getattr(torch, t.amp_dtype)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and t.amp_dtype == "float16")

        self.metric_names = list(t.metrics or M.DEFAULTS[self.task])
        logged = self._logged_values()
        first = next((f"val_{m}" for m in self.metric_names if f"val_{m}" in logged), "val_loss")
        self.monitor = t.monitor or ("val_loss" if self.task == "regression" else first)
        base = self.monitor[4:] if self.monitor.startswith("val_") else self.monitor
        if self.monitor not in logged:
            raise ConfigError(
                f"trainer.monitor: {self.monitor!r} is not a logged value; choose one of "
                f"{', '.join(logged)} (per-class metrics are logged as val_<metric>_<class>, "
                "e.g. val_recall_1; trainer.metrics sets which metrics are logged)"
            )
        base = re.sub(r"_\d+$", "", base) if base not in M.GREATER_IS_BETTER else base
        if t.mode == "auto" and base not in M.GREATER_IS_BETTER:  # a plug-in metric
            raise ConfigError(
                f"trainer.mode: whether a larger {self.monitor!r} is better is not known (it is "
                "not a built-in metric); set trainer.mode to min or max, or trainer.monitor "
                "to a built-in metric"
            )
        self.greater = M.GREATER_IS_BETTER[base] if t.mode == "auto" else t.mode == "max"
        self.scheduler = build_scheduler(config, self.optimizer, self.greater)

        self.epoch = 0  # epochs completed
        self.history: List[Dict[str, float]] = []
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.bad_epochs = 0
        if not new_run:  # evaluating or predicting with an existing run
            return
        if resume:
            self._resume()
        elif (self.out / LAST).exists():
            raise FileExistsError(
                f"run directory {str(self.out)!r} already holds a run ({LAST}); continue it with "
                "--resume, or choose another --out"
            )
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_text(config.to_yaml(), self.out / CONFIG_FILE)

    def _logged_values(self) -> List[str]:
        """The validation columns a run will log, found by computing every metric on a
        small stand-in output of the model's shape (every class present); a metric that
        does not apply to the task is a :class:`ConfigError` now, not after an epoch."""
        k = self.info["n_outputs"]
        if self.task == "regression":
            out = np.arange(2 * k, dtype=np.float64).reshape(2, k)
            tgt = out[::-1].copy()
        else:
            out = np.eye(k)[None] if self.task == "segmentation" else np.eye(k)
            tgt = np.arange(k).reshape(out.shape[:-1])
        logged = ["val_loss"]
        for name in self.metric_names:
            try:
                value = M.compute([name], out, tgt, self.task)
            except (ValueError, TypeError, IndexError) as e:
                raise ConfigError(
                    f"trainer.metrics: {name!r} does not apply to a {self.task} task ({e}); "
                    + ("regression metrics are mse, mae, r2" if self.task == "regression" else
                       "classification and segmentation metrics are accuracy, "
                       "mean_class_accuracy, precision, recall, average_precision, "
                       "mean_average_precision, iou, mean_iou, confusion_matrix")
                ) from None
            logged += list(M.scalars(value, prefix="val_"))
        return logged

    def _wrap_distributed(self) -> None:
        """Synchronise batch norms (CUDA) and wrap in DistributedDataParallel; done before
        the optimizer is built so that it holds the parameters that train."""
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        if has_bn and self.config.trainer.sync_batchnorm and self.device.type == "cuda":
            self.model = dist_.convert_sync_batchnorm(self.model)
        elif has_bn and self.is_main:
            print("note: batch-norm statistics are per process (torch's SyncBatchNorm needs "
                  "CUDA); results differ slightly from one process with the same global batch",
                  flush=True)
        DDP = torch.nn.parallel.DistributedDataParallel
        # the Chebyshev operators are identical on every rank: don't resend buffers each step
        no_resend = ({"forward_sync_buffers": False}
                     if "forward_sync_buffers" in inspect.signature(DDP).parameters
                     else {"broadcast_buffers": False})
        self.net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                       **no_resend)

    # ---- data -------------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> DataLoader:
        t = self.config.trainer
        ds = self.dataset.split(split)
        if train:
            sampler = DistributedSampler(ds, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                         shuffle=True, seed=t.seed, drop_last=False)
            return DataLoader(ds, batch_size=t.batch_size // self.dist.world_size, sampler=sampler,
                              num_workers=t.num_workers, pin_memory=self.device.type == "cuda")
        return DataLoader(ds, batch_size=t.eval_batch_size or t.batch_size, shuffle=False,
                          num_workers=t.num_workers)

    def _progress(self, it, total, desc):
        if not (self.config.trainer.progress and self.is_main):
            return it
        from tqdm.auto import tqdm

        return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)

    # ---- one epoch ---------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        t = self.config.trainer
        loader = self._loader("train", train=True)
        loader.sampler.set_epoch(epoch)
        split = self.dataset.split("train")
        if hasattr(split, "set_epoch"):
            split.set_epoch(epoch)
        self.net.train()
        # train_loss is the estimator val_loss uses: sum_i w_i l_i / sum_i w_i over the whole
        # epoch (per-sample mean without weights), not a mean of the per-batch losses
        num, den = 0.0, 0.0
        bar = self._progress(loader, len(loader), f"epoch {epoch + 1}/{t.epochs}")
        for x, y in bar:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                out = self.net(x)
                loss = self.loss_fn(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at epoch {epoch + 1}; lower optim.lr, set "
                    "trainer.grad_clip, or check the data for NaN/UNSEEN values"
                )
            self.scaler.scale(loss).backward()
            if t.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), t.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            with torch.no_grad():
                b_num, b_den = loss_sums(self.loss_fn, out.detach().float(), y, loss=loss.detach())
            num, den = num + b_num, den + b_den
            if bar is not loader and den:
                bar.set_postfix(loss=f"{num / den:.4f}")
        # the ratio of the ranks' mean sums is the ratio of their sums
        num, den = dist_.all_reduce_mean(num, self.dist), dist_.all_reduce_mean(den, self.dist)
        return num / den if den else float("nan")

    @torch.no_grad()
    def predict_split(self, split: str, limit: Optional[int] = None):
        """Model outputs, targets and inputs (first ``limit`` items) on a split, as numpy."""
        self.model.eval()
        outs, tgts, ins = [], [], []
        loss_sum, n = 0.0, 0
        for x, y in self._loader(split, train=False):
            x = x.to(self.device)
            y = y.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                o = self.model(x)
            o = o.float()
            num, den = loss_sums(self.loss_fn, o, y)  # weighted losses: not a mean of batch means
            loss_sum += num
            n += den
            outs.append(o.cpu().numpy())
            tgts.append(y.cpu().numpy())
            if limit is None or sum(len(a) for a in ins) < limit:
                ins.append(x.cpu().numpy())
        inputs = np.concatenate(ins)[:limit] if ins else None
        return np.concatenate(outs), np.concatenate(tgts), inputs, (loss_sum / n if n else float("nan"))

    def evaluate(self, split: str = "val") -> dict:
        """Loss and metrics on a split (computed on rank 0, shared with every rank)."""
        results = None
        if self.is_main:
            out, tgt, _, loss = self.predict_split(split)
            results = {"loss": loss, **M.compute(self.metric_names, out, tgt, self.task)}
        return dist_.broadcast_object(results, self.dist)

    # ---- the loop ----------------------------------------------------------------------
    def fit(self, max_epochs: Optional[int] = None) -> List[Dict[str, float]]:
        """Train until ``trainer.epochs`` or early stopping (or, with ``max_epochs``, for
        at most that many more epochs in this call); returns the history."""
        t = self.config.trainer
        stop_at = t.epochs if max_epochs is None else min(t.epochs, self.epoch + max_epochs)
        while self.epoch < stop_at and not self._stopped():
            e = self.epoch
            start = time.time()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(e)
            val = self.evaluate("val")
            row = {"epoch": e + 1, "lr": lr, "train_loss": train_loss,
                   **M.scalars(val, prefix="val_"), "time_s": time.time() - start}
            if self.monitor not in row:
                raise ConfigError(
                    f"trainer.monitor: {self.monitor!r} is not logged; logged values: "
                    f"{', '.join(k for k in row if k.startswith('val_'))}"
                )
            value = row[self.monitor]
            if self.scheduler is not None:
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    # checkpoints from before the scheduler took the direction hold "min"
                    flip = self.greater and self.scheduler.mode == "min"
                    self.scheduler.step(-value if flip else value)
                else:
                    self.scheduler.step()
            # NaN (a diverged or undefined value) is never an improvement, and any number beats it
            improved = not np.isnan(value) and (
                self.best is None or np.isnan(self.best)
                or (value > self.best if self.greater else value < self.best))
            if improved:
                self.best, self.best_epoch, self.bad_epochs = value, e + 1, 0
            else:
                self.bad_epochs += 1
            self.history.append(row)
            self.epoch = e + 1
            if self.is_main:
                state = self.state_dict()
                if improved:
                    ckpt.atomic_save(state, self.out / BEST)
                ckpt.atomic_save(state, self.out / LAST)
                self._write_metrics()
                self._log(row)
            dist_.barrier(self.dist)
        if self.is_main and (self.epoch >= t.epochs or self._stopped()):
            self._finish()
        dist_.barrier(self.dist)
        return self.history

    def _stopped(self) -> bool:
        p = self.config.trainer.early_stopping
        return p is not None and self.bad_epochs >= p

    def _log(self, row: dict) -> None:
        keys = ["train_loss", "val_loss", self.monitor]
        msg = "  ".join(f"{k}={row[k]:.4f}" for k in dict.fromkeys(keys))
        print(f"epoch {row['epoch']:>3}/{self.config.trainer.epochs}  {msg}  ({row['time_s']:.1f}s)",
              flush=True)

    def _write_metrics(self) -> None:
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        ckpt.atomic_write_text(buf.getvalue(), self.out / METRICS_FILE)

    def _finish(self) -> None:
        """Test metrics of the best checkpoint, and plots."""
        which = "best"
        if (self.out / BEST).exists():
            self.model.load_state_dict(ckpt.load(self.out / BEST)["model"])
        else:  # every monitored value was NaN: no epoch was ever the best
            which = "last"
            print(f"note: {self.monitor} was NaN at every epoch, so there is no best checkpoint; "
                  "the test metrics are those of the last epoch (test_metrics_last.json)", flush=True)
        results = evaluate_split(self, "test", self.out, which)
        acc = {k: v for k, v in results.items() if np.ndim(v) == 0}
        print("test (best epoch %d): " % self.best_epoch
              + "  ".join(f"{k}={v:.4f}" for k, v in acc.items()), flush=True)
        if self.config.trainer.plots:
            from . import plots

            plots.learning_curves(self.history, self.monitor, self.out / "plots" / "learning_curves.png")

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "history": self.history,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "config": self.config.to_dict(),
            "data_info": self.info,
            "model_config": getattr(self.model, "config", None),
        }

    def _resume(self) -> None:
        path = self.out / LAST
        if not path.exists():
            raise FileNotFoundError(
                f"--resume: no checkpoint at {str(path)!r}; the run has not finished an epoch yet "
                "(start it again without --resume)"
            )
        state = ckpt.load(path)  # on CPU: RNG states must stay there; load_state_dict moves the rest
        diff = [d for d in config_differences(state["config"], self.config.to_dict())
                if not (d.startswith("trainer.") and d.split(":")[0][8:] in _RESUMABLE_CHANGES)]
        if diff:
            raise ConfigError(
                "--resume: the config differs from the one the run was started with: "
                + "; ".join(diff) + ". Resume with the same config (see "
                f"{self.out / CONFIG_FILE}) or start a new run directory."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            lambdas = getattr(self.scheduler, "lr_lambdas", ())
            if any(isinstance(f, WarmupCosine) for f in lambdas):
                # trainer.epochs may have been extended: the next epoch's rate too comes from
                # the new schedule (the same number when it was not)
                for f in lambdas:
                    f.epochs = self.config.trainer.epochs
                for g, base, f in zip(self.optimizer.param_groups, self.scheduler.base_lrs, lambdas):
                    g["lr"] = base * f(self.scheduler.last_epoch)
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best, self.best_epoch = state["best"], int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        ckpt.set_rng_state(state["rng"])
        if self.is_main:
            self._write_metrics()  # drop rows of an epoch that never reached its checkpoint
            print(f"resuming {self.out} after epoch {self.epoch}", flush=True)

    def close(self) -> None:
        # The DDP wrapper keeps the process group alive: left to interpreter teardown, gloo's
        # worker threads are destroyed unjoined there, and a rank can abort ("terminate called
        # without an active exception") after a finished run. Release it, then the group.
        if self.net is not self.model:
            self.net = self.model
            gc.collect()
        dist_.cleanup(self.dist)


def metrics_file(split: str, checkpoint: str = "best") -> str:
    """Name of the metrics file of ``split`` in a run directory: ``<split>_metrics.json`` for
    the best checkpoint, ``<split>_metrics_last.json`` for the last (never written over the
    best's, which are the run's reported figures)."""
    return f"{split}_metrics.json" if checkpoint == "best" else f"{split}_metrics_{checkpoint}.json"


def evaluate_split(trainer: "Trainer", split: str, out: Optional[Path] = None,
                   checkpoint: str = "best") -> dict:
    """Metrics (including the confusion matrix for classes) of ``trainer.model`` on
    ``split``; when ``out`` is given, written to ``out/<split>_metrics.json`` (with the
    checkpoint, ``best`` or ``last``, that the weights come from and its epoch; the last
    checkpoint's go to ``<split>_metrics_last.json``, see :func:`metrics_file`) and
    plotted."""
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    output, target, inputs, loss = trainer.predict_split(split, limit=4)
    names = list(trainer.metric_names)
    if trainer.task != "regression" and "confusion_matrix" not in names:
        names.append("confusion_matrix")
    results = {"loss": loss, **M.compute(names, output, target, trainer.task)}
    if out is not None:
        out = Path(out)
        serial = {k: (np.asarray(v).tolist() if np.ndim(v) else float(v)) for k, v in results.items()}
        serial = json.loads(json.dumps(serial).replace("NaN", "null"))
        epoch = trainer.best_epoch if checkpoint == "best" else trainer.epoch
        ckpt.atomic_write_text(json.dumps({"split": split, "checkpoint": checkpoint, "epoch": int(epoch),
                                           **serial}, indent=2), out / metrics_file(split, checkpoint))
        if trainer.config.trainer.plots:
            from . import plots

            names_ = trainer.info.get("class_names")
            tag = split if checkpoint == "best" else f"{split}_{checkpoint}"
            if "confusion_matrix" in results:
                plots.confusion(results["confusion_matrix"], names_, out / "plots" / f"confusion_{tag}.png")
            plots.example_maps(trainer.sampling, inputs, output[:len(inputs)], target[:len(inputs)],
                               trainer.task, names_, out / "plots" / f"maps_{tag}.png")
    return results


def train(config: Config, out: Optional[Union[str, Path]] = None, resume: bool = False) -> Trainer:
    """Build a :class:`Trainer` and run it to the end; returns the trainer."""
    trainer = Trainer(config, out, resume)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer


def open_run(run_dir: Union[str, Path], which: str = "best", device: Optional[str] = None) -> Trainer:
    """A :class:`Trainer` on an existing run directory with the ``best`` or ``last``
    checkpoint's weights loaded (the data are rebuilt from the saved config's seed)."""
    from .config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run directory (no {CONFIG_FILE})")
    path = run_dir / (BEST if which == "best" else LAST)
    if which not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
    config = load_config(run_dir / CONFIG_FILE)
    config.trainer.progress = False
    if device is not None:
        config.trainer.device = device
    trainer = Trainer(config, run_dir, new_run=False)
    state = ckpt.load(path)
    trainer.model.load_state_dict(state["model"])
    trainer.epoch = int(state["epoch"])
    trainer.history = list(state["history"])
    trainer.best_epoch = int(state["best_epoch"])
    return trainer
