"""Checkpoints written atomically and readable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only: model, optimizer,
scheduler and AMP scaler state dicts, the RNG states (torch, CUDA, numpy, Python), the
epoch just completed, the training history, and the resolved config as a dict.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from ..io import atomic_path, atomic_write_text  # noqa: F401 (atomic_write_text: re-exported)


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: a reader
    (or a crash) never sees a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: Union[str, Path], map_location="cpu") -> Dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message suggests weights_only=False: never do that for a file you did not write
        raise ValueError(
            f"{path}: refused to load: the checkpoint contains objects other than tensors and "
            f"plain Python values ({_unsafe_reason(e)}). deepsphere checkpoints never "
            "do; this file was written by other code or tampered with. Do not load it with "
            "weights_only=False unless you trust its source."
        ) from None
    except Exception as e:  # miniz, EOF, KeyError, IndexError...: all mean "not a checkpoint"
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:120]}). The file is "
            "empty, truncated or not a torch checkpoint; use checkpoints/best.pt or last.pt of the "
            "run, or retrain."
        ) from None


def _unsafe_reason(e: Exception) -> str:
    """The line of torch's refusal that names the blocked object."""
    lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "global" in ln]
    return (lines[0] if lines else str(e).strip().splitlines()[0])[:200]


def rng_state() -> Dict[str, Any]:
    """All RNG states as tensors and plain values (numpy's key array as a tensor)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
