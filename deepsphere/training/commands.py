"""``deepsphere train | evaluate | predict``: command-line entry points.

Each of :data:`command_train`, :data:`command_evaluate`, :data:`command_predict` has
``add_arguments(parser)`` and ``run(args) -> int`` (the hook :mod:`deepsphere.cli` calls).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..io import atomic_path


def _fail(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


# ---- train ------------------------------------------------------------------------------
def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config file (see configs/quickstart.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set trainer.epochs=5 (repeatable; the "
                        "value is read as YAML)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or trainer.out) from its last checkpoint")
    p.add_argument("--out", default=None, help="run directory (default: trainer.out of the config)")


def _train(args) -> int:
    from .config import ConfigError, load_config
    from .trainer import Trainer

    try:  # bad configs, data or model arguments: a message, not a traceback
        config = load_config(args.config, args.overrides)
        _refuse_overwriting_the_config(config, args)
        trainer = Trainer(config, args.out, resume=args.resume)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as e:
        return _fail(e)
    try:
        trainer.fit()
    except ConfigError as e:  # found only once the first epoch is logged (e.g. a plug-in metric)
        return _fail(e)
    except KeyboardInterrupt:  # Ctrl-C: say what is kept and how to go on, not a traceback
        again = ["deepsphere", "train", args.config, "--out", str(trainer.out)]
        again += [a for o in args.overrides for a in ("--set", o)]
        if trainer.epoch:
            again.insert(3, "--resume")
            kept = f"the checkpoint after epoch {trainer.epoch} is kept; continue with"
        else:
            kept = "no epoch had finished; start again with"
        where = (f"epoch {trainer.epoch + 1}" if trainer.epoch < trainer.config.trainer.epochs
                 else "the test evaluation")
        print(f"\ninterrupted during {where}: {kept}: "
              + " ".join(map(shlex.quote, again)), file=sys.stderr)
        return 130
    finally:
        trainer.close()
    return 0


def _refuse_overwriting_the_config(config, args) -> None:
    """A run writes its resolved config to RUN/config.yaml: refuse when that is the file
    being read and the text would change (a hand-written config with comments, or
    ``--set`` overrides), instead of replacing the user's file. Resuming rewrites the run's
    own resolved config (e.g. with more ``trainer.epochs``), which is what it is for."""
    import copy

    if args.resume:
        return

    out = Path(args.out if args.out is not None else config.trainer.out)
    dest = out / "config.yaml"
    if not (dest.is_file() and dest.resolve() == Path(args.config).resolve()):
        return
    resolved = copy.deepcopy(config)
    resolved.trainer.out = str(out)
    if resolved.to_yaml() != dest.read_text():
        raise FileExistsError(
            f"the run would write its resolved config to {str(dest)!r}, which is the config file "
            "being read (and would change it); choose another --out, or keep the config elsewhere"
        )


# ---- evaluate ---------------------------------------------------------------------------
def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by 'deepsphere train'")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="which split of the run's dataset to evaluate (default test)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"),
                   help="the best-validation checkpoint (default) or the last epoch's")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's trainer.device)")


def _evaluate(args) -> int:
    from .config import ConfigError
    from .trainer import evaluate_split, metrics_file, open_run

    try:
        trainer = open_run(args.run_dir, args.checkpoint, args.device)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return _fail(e)
    results = evaluate_split(trainer, args.split, Path(args.run_dir), args.checkpoint)
    print(f"{args.split} split, {args.checkpoint} checkpoint (epoch {trainer.epoch}):")
    for k, v in results.items():
        v = np.asarray(v)
        text = f"{float(v):.4f}" if v.ndim == 0 else np.array2string(v, precision=4, separator=", ")
        print(f"  {k:>24}: " + text.replace("\n", "\n" + " " * 28))
    print(f"written: {Path(args.run_dir) / metrics_file(args.split, args.checkpoint)}")
    return 0


# ---- predict ----------------------------------------------------------------------------
def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by 'deepsphere train'")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help=".npy file(s): maps of shape (npix,), (n, npix) or (n, npix, channels); "
                        "full-sky HEALPix maps are restricted to the run's pixels")
    p.add_argument("--order", default=None, choices=("NESTED", "RING"),
                   help="pixel ordering of full-sky HEALPix inputs, required for them (a .npy "
                        "does not record it; healpy.read_map returns RING unless nest=True); per-pixel "
                        "outputs of a full-sky run come back in the same ordering, those of a "
                        "partial-sky run in the order of the run's pixels (NESTED indices)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"),
                   help="the best-validation checkpoint (default) or the last epoch's")
    p.add_argument("--output", default=None,
                   help="where to write predictions (one input only; default RUN_DIR/predictions/NAME.npy)")
    p.add_argument("--times", default=None, metavar="T1,T2,...",
                   help="station regression runs whose inputs end with features of the target time: "
                        "the target time of each map, comma-separated (dates such as 2020-03-01 "
                        "for season features, hours of the day UTC for sao_hourly's local time); "
                        "the maps then hold the past values only, (n, n_stations, history). "
                        "Without it the maps hold every channel, features included")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the run's trainer.device)")


def _predict(args) -> int:
    from .predict import load_model, predict

    if args.output and len(args.inputs) > 1:
        return _fail(ValueError("--output names one file: give one INPUT, or leave --output out"))
    try:
        model, sampling, info, device = load_model(args.run_dir, args.checkpoint, args.device)
        for path in args.inputs:
            dest = Path(args.output or Path(args.run_dir) / "predictions" / (Path(path).stem + ".npy"))
            if any(dest.resolve() == Path(p).resolve() for p in args.inputs):
                raise ValueError(f"--output {str(dest)!r} is one of the inputs: predictions never "
                                 "overwrite input data; choose another file")
            x = _load_npy(path)
            times = None if args.times is None else [t.strip() for t in args.times.split(",")]
            out = predict(model, sampling, info, x, order=args.order, device=device, times=times)
            _atomic_save_npy(out, dest)
            summary = f"{path}: {out.shape} -> {dest}"
            if info["task"] == "classification":
                names = info["class_names"] or [str(i) for i in range(out.shape[1])]
                labels = [names[i] for i in out.argmax(1)]
                summary += f"  (class probabilities; predicted: {', '.join(labels[:10])}" \
                           + (" ...)" if len(labels) > 10 else ")")
            print(summary)
    except (ValueError, FileNotFoundError) as e:
        return _fail(e)
    return 0


def _load_npy(path: str) -> np.ndarray:
    """A numeric ``.npy`` array; never unpickles (``allow_pickle=False``)."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (ValueError, EOFError, OSError) as e:
        # numpy's messages suggest unpickling, which can run code: never here
        if _is_fits(path):
            raise ValueError(
                f"{path}: a FITS file; predict reads .npy arrays: convert it with "
                f"np.save('maps.npy', healpy.read_map({path!r}, nest=True)) (NESTED "
                "whatever the file's ORDERING) and predict on that with --order NESTED"
            ) from None
        if "Object arrays" in str(e):
            e = "it holds Python objects, and predict reads numeric arrays only"
        elif "pickle" in str(e):
            e = "no .npy header: it is not a .npy array, and it is never unpickled"
        raise ValueError(f"{path}: cannot read this .npy file ({e}); write the maps with "
                         "np.save(path, maps) on a float array") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        raise ValueError(f"{path}: an .npz archive, not one .npy array; save the maps with np.save")
    return x


def _is_fits(path: str) -> bool:
    """A FITS file by its name or its first card (``SIMPLE  =``)."""
    if str(path).lower().endswith((".fits", ".fits.gz", ".fit", ".fit.gz", ".fts")):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(9) == b"SIMPLE  ="
    except OSError:
        return False


def _atomic_save_npy(array: np.ndarray, dest: Path) -> None:
    """``np.save`` to a temporary file beside ``dest``, then ``os.replace``."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


command_train = SimpleNamespace(add_arguments=_train_arguments, run=_train)
command_evaluate = SimpleNamespace(add_arguments=_evaluate_arguments, run=_evaluate)
command_predict = SimpleNamespace(add_arguments=_predict_arguments, run=_predict)
