"""The ``deepsphere`` command line: ``deepsphere COMMAND --help``.

Each command lives in the module that owns its job and exposes ``add_arguments(parser)``
and ``run(args) -> int``; this file only dispatches, importing a command's module when
that command runs so ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# command -> (module, one-line help)
COMMANDS = {
    "demo": ("deepsphere.demo", "build a HEALPix graph, filter a map, train a tiny classifier"),
    "train": ("deepsphere.training.commands", "train a model from a YAML config"),
    "evaluate": ("deepsphere.training.commands", "evaluate a trained run directory"),
    "predict": ("deepsphere.training.commands", "predict with a trained run on new input"),
    "equivariance": ("deepsphere.equivariance.commands", "measure equivariance error of graphs"),
    "benchmark": ("deepsphere.benchmark", "time ChebConv and graph builds against torch_geometric"),
    "benchmark-scale": ("deepsphere.benchmark_scale",
                        "memory bandwidth, ChebConv scaling with n, U-Net peak memory"),
    "benchmark-gpu": ("deepsphere.benchmark_gpu",
                      "HBM bandwidth, sparse product and ChebConv at scale, inference on CUDA"),
}


def nside_arg(text: str) -> int:
    """argparse ``type`` for an nside option: a bad value is refused with the usage line and
    exit status 2 when the arguments are read, not with a traceback once the run started."""
    from .sampling import check_nside

    try:
        return check_nside(int(text))
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e) if text.lstrip("-").isdigit()
                                         else f"invalid nside {text!r}: not an integer") from None


def positive_int(text: str) -> int:
    """argparse ``type`` for a count (repeats, threads, channels, batch, k, K): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type`` for a limit (seconds, GB, MB): a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _load(command: str):
    module = importlib.import_module(COMMANDS[command][0])
    hook = getattr(module, f"command_{command}", None)
    return hook if hook is not None else module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepsphere", description="Deep learning on the sphere with graphs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # a missing required argument: usage, one error line, status 2
        parser.error(f"a command is required; choose from {', '.join(COMMANDS)} "
                     "(deepsphere --help says what each does)")
    if argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        if argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    command, rest = argv[0], argv[1:]
    try:
        handler = _load(command)
    except ModuleNotFoundError as e:
        print(f"deepsphere {command}: not available in this installation ({e})", file=sys.stderr)
        return 2
    sub = argparse.ArgumentParser(prog=f"deepsphere {command}", description=COMMANDS[command][1])
    handler.add_arguments(sub)
    args = sub.parse_args(rest)
    return int(handler.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
