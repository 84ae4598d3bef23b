"""``deepsphere equivariance CONFIG``: run a sweep, write ``errors.csv``, ``summary.csv``,
``equivariance.png`` (E(l) per graph, log-log) and ``tradeoff.png`` (error vs edges per vertex)."""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..io import atomic_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML sweep config, e.g. configs/equivariance_healpix.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: the config's 'out')")
    parser.add_argument("--n-signals", type=int, default=None, help="override n_signals")
    parser.add_argument("--n-rotations", type=int, default=None, help="override n_rotations")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only")
    parser.add_argument("--protocol", choices=["exact", "published"], default=None,
                        help="override the config's protocol: exact (default) or published "
                             "(R_V = T R T^-1 on f and L f, as in DeepSphere ICLR 2020)")


def load_config(path) -> dict:
    """Read a sweep config: a YAML mapping (``yaml.safe_load``), no key given twice."""
    import yaml

    from ..training.config import _refuse_duplicate_keys

    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a YAML file" if p.is_dir() else "does not exist"
        raise ValueError(f"config {str(p)!r} {what}")
    text = p.read_text()
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{p} must hold a mapping of keys")
    _refuse_duplicate_keys(text, p)  # YAML would keep the second 'graphs:' list alone
    return cfg


def run(args) -> int:
    try:  # a bad config or option: one line and exit status 2, not a traceback
        return _run(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from .sweep import plot, plot_tradeoff, run_sweep, summarise, write_csv

    cfg = load_config(args.config)
    if args.n_signals is not None:
        cfg["n_signals"] = args.n_signals
    if args.n_rotations is not None:
        cfg["n_rotations"] = args.n_rotations
    if getattr(args, "protocol", None) is not None:
        cfg["protocol"] = args.protocol
    out = Path(args.out or cfg.get("out") or "runs/equivariance")
    rows = run_sweep(cfg)
    write_csv(rows, out / "errors.csv")
    summary = summarise(rows)
    with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in summary for k in r)))
        w.writeheader()
        w.writerows(summary)
    if cfg.get("plot", True) and not args.no_plot:
        plot(rows, out / "equivariance.png", cfg.get("title"))
        plot_tradeoff(summary, out / "tradeoff.png")
    print(f"wrote {out / 'errors.csv'}, {out / 'summary.csv'}"
          + ("" if args.no_plot or not cfg.get("plot", True) else f", {out / 'equivariance.png'}, {out / 'tradeoff.png'}"))
    return 0
