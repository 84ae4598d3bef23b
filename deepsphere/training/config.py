"""Typed configuration of a training run, read from one YAML file.

A config has seven sections::

    data:      {name: synthetic_fields, n_train: 400, ...}    # DATASETS registry + its arguments
    sampling:  {name: healpix, nside: 16}                     # SAMPLINGS registry + its arguments
    graph:     {kind: knn, k: 8, kernel_width: tuned, laplacian: normalized}
    model:     {name: cnn, channels: [16, 32], K: 5}          # MODELS registry + its arguments
    optim:     {name: adam, lr: 1.0e-3}
    scheduler: {name: cosine}
    trainer:   {epochs: 10, batch_size: 16, seed: 0, ...}

Sections with a ``name`` (or ``kind``) pick a builder from a registry; their other keys
are that builder's keyword arguments and are checked against its signature (names and,
where annotated, types) by :func:`validate`. The fixed sections (optim, scheduler,
trainer) are dataclasses whose every key and type is checked on load. Errors name the
key path (``trainer.epochs``), the bad value and the valid choices.
"""
from __future__ import annotations

import collections.abc
import copy
import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Union

import yaml

from . import registry


class ConfigError(ValueError):
    """A config key, value or type is wrong; the message says which and how to fix it."""


# --------------------------------------------------------------------------------------
# type checking of plain YAML values against annotations
# --------------------------------------------------------------------------------------
def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, List, Sequence, tuple, typing.Tuple) or origin is not None:
        args = typing.get_args(tp)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]" if args else base
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def check_type(value: Any, tp: Any, path: str) -> Any:
    """Return ``value`` (ints promoted to float where a float is wanted) or raise
    :class:`ConfigError` saying the path, the value and the expected type."""
    if tp is Any or tp is inspect.Parameter.empty or tp is None or isinstance(tp, str):
        return value  # unannotated (or an unresolvable string annotation): accept
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(extra: str = ""):
        raise ConfigError(
            f"{path}: {value!r} ({type(value).__name__}) is not a valid value; expected "
            f"{_type_name(tp)}{extra}"
        )

    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{path}: {value!r} is not a valid choice; choose from "
                f"{', '.join(repr(a) for a in args)}"
            )
        return value
    if origin is Union:
        errors = []
        for a in args:
            try:
                return check_type(value, a, path)
            except ConfigError as e:
                errors.append(str(e))
        choices = [repr(x) for a in args if typing.get_origin(a) is Literal for x in typing.get_args(a)]
        fail(f" (choices: {', '.join(choices)})" if choices else "")
    if tp is type(None):
        if value is not None:
            fail()
        return value
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail()
        inner = args[0] if args else Any
        return [check_type(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            fail()
        return value
    if origin is not None:  # other generics (Callable, ...): accept
        return value
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is str:
        if not isinstance(value, str):
            fail()
        return value
    if isinstance(tp, type):
        if tp.__module__ == "builtins" and not isinstance(value, tp):
            fail()
        return value  # a class (e.g. a Sampling) given from Python: leave to the builder
    return value


# --------------------------------------------------------------------------------------
# the sections
# --------------------------------------------------------------------------------------
@dataclass
class Component:
    """A section that names a builder in a registry; other keys are its arguments."""

    name: str
    params: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, **self.params}


@dataclass
class DataConfig(Component):
    name: str = "synthetic_fields"


@dataclass
class SamplingConfig(Component):
    name: str = "healpix"


@dataclass
class ModelConfig(Component):
    name: str = "cnn"


@dataclass
class GraphConfig:
    """How the graph is built on the sampling. ``kind`` names a GRAPHS builder (or
    ``package.module:function``); other keys are its arguments (``k``,
    ``kernel_width``, ...)."""

    kind: str = "knn"
    laplacian: Literal["normalized", "combinatorial"] = "normalized"
    params: Dict[str, Any] = field(default_factory=dict)

    def recipe(self) -> dict:
        return {"kind": self.kind, **self.params}

    def to_dict(self) -> dict:
        return {"kind": self.kind, "laplacian": self.laplacian, **self.params}


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam(w) only


@dataclass
class SchedulerConfig:
    """Learning-rate schedule, stepped once per epoch (``plateau`` on the monitored
    metric). ``warmup_epochs`` ramps the rate linearly from ``lr / (warmup_epochs + 1)``."""

    name: Literal["none", "step", "multistep", "exponential", "cosine", "plateau"] = "none"
    step_size: int = 10
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    patience: int = 5
    warmup_epochs: int = 0


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 16  # the global batch: split over processes under torchrun
    eval_batch_size: Optional[int] = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # mixed precision (torch.autocast + GradScaler), used on CUDA only
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    grad_clip: Optional[float] = None  # max global gradient norm
    seed: int = 0
    deterministic: bool = True
    loss: Optional[str] = None  # LOSSES name; default from the task
    class_weights: Union[None, Literal["balanced"], List[float]] = None
    metrics: Optional[List[str]] = None  # METRICS names; default from the task
    monitor: Optional[str] = None  # e.g. val_accuracy; default from the task
    mode: Literal["auto", "min", "max"] = "auto"
    early_stopping: Optional[int] = None  # patience in epochs
    num_workers: int = 0
    out: str = "runs/run"
    progress: bool = True
    plots: bool = True
    sync_batchnorm: bool = True  # synchronise BatchNorm statistics under DDP (CUDA only)


_FIXED = {"optim": OptimConfig, "scheduler": SchedulerConfig, "trainer": TrainerConfig}
_SECTIONS = ("data", "sampling", "graph", "model", "optim", "scheduler", "trainer")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    # ---- conversion --------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {}
        for s in _SECTIONS:
            sec = getattr(self, s)
            out[s] = sec.to_dict() if hasattr(sec, "to_dict") else dataclasses.asdict(sec)
        return copy.deepcopy(out)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, d: dict, overrides: Sequence[str] = ()) -> "Config":
        """Parse a plain dict (as read from YAML), applying ``overrides`` first."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of sections, got {type(d).__name__}")
        d = copy.deepcopy(d)
        for o in overrides:
            apply_override(d, o)
        unknown = [k for k in d if k not in _SECTIONS]
        if unknown:
            raise ConfigError(
                f"unknown section {unknown[0]!r}; valid sections: {', '.join(_SECTIONS)}"
            )
        kw = {}
        for s in _SECTIONS:
            raw = d.get(s)
            if raw is None:
                raw = {}
            if not isinstance(raw, dict):
                raise ConfigError(f"{s}: must be a mapping of keys, got {raw!r}")
            kw[s] = _parse_section(s, raw)
        return cls(**kw)


def _parse_fixed(cls, raw: dict, path: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in raw.items():
        if k not in names:
            raise ConfigError(
                f"{path}.{k}: unknown key (value {v!r}); valid keys: {', '.join(names)}"
            )
        kw[k] = check_type(v, hints[k], f"{path}.{k}")
    return cls(**kw)


def _parse_section(section: str, raw: dict):
    if section in _FIXED:
        return _parse_fixed(_FIXED[section], raw, section)
    if section == "graph":
        fixed = {k: raw[k] for k in ("kind", "laplacian") if k in raw}
        g = _parse_fixed(GraphConfig, fixed, section)
        g.params = {k: v for k, v in raw.items() if k not in fixed}
        if not isinstance(g.kind, str):
            raise ConfigError(f"graph.kind: expected a string, got {g.kind!r}")
        return g
    cls = {"data": DataConfig, "sampling": SamplingConfig, "model": ModelConfig}[section]
    params = dict(raw)
    name = params.pop("name", cls.name)
    if not isinstance(name, str):
        raise ConfigError(f"{section}.name: expected a string, got {name!r}")
    return cls(name=name, params=params)


def apply_override(d: dict, override: str) -> None:
    """Apply ``"a.b.c=value"`` to the nested dict ``d``; the value is parsed as YAML
    (``5`` is an int, ``[16, 32]`` a list, ``null`` None, ``true`` a bool)."""
    if not isinstance(override, str) or "=" not in override:
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key (trainer.epochs=5), got {override!r}")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(
            f"--set {override!r}: the key must be SECTION.KEY[.SUBKEY] (one of "
            f"{', '.join(_SECTIONS)} first), e.g. trainer.epochs=5"
        )
    if parts[0] not in _SECTIONS:
        raise ConfigError(f"--set {override!r}: unknown section {parts[0]!r}; valid sections: {', '.join(_SECTIONS)}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML ({e})") from None
    node = d
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {override!r}: {'.'.join(parts[:i + 1])} is {nxt!r}, not a section")
        node = nxt
    node[parts[-1]] = value


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (``yaml.safe_load``) and apply ``--set`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    _refuse_duplicate_keys(text, path)
    return Config.from_dict(raw, overrides)


def _refuse_duplicate_keys(text: str, path: Path) -> None:
    """YAML keeps the last of two equal keys and drops the first without a word: a second
    ``trainer:`` section would discard the first one whole. The composed node tree (no
    object is constructed) still has both."""
    stack = [yaml.compose(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        raise ConfigError(
                            f"{path}, line {line}: key {key.value!r} appears twice in the same "
                            f"mapping (first on line {seen[key.value]}); YAML would keep only the "
                            "last one. Merge the two into one."
                        )
                    seen[key.value] = line
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


# --------------------------------------------------------------------------------------
# checking a component's arguments against its builder's signature
# --------------------------------------------------------------------------------------
def check_arguments(builder, params: dict, path: str, injected: Sequence[str] = ()) -> dict:
    """Check ``params`` against ``builder``'s signature: unknown keys and wrong types
    raise :class:`ConfigError`; keys in ``injected`` are supplied by the trainer and may
    not be set by the user. Returns the params with ints promoted where floats are due."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):
        return dict(params)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: check names only
        hints = {}
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    valid = [n for n, p in sig.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in injected]
    out = {}
    for k, v in params.items():
        if k in injected:
            raise ConfigError(
                f"{path}.{k}: set by the trainer (from the other sections and the data), remove it"
            )
        if k not in valid and not accepts_kwargs:
            raise ConfigError(
                f"{path}.{k}: unknown key (value {v!r}) for {getattr(builder, '__name__', builder)}; "
                f"valid keys: {', '.join(valid) or '(none)'}"
            )
        out[k] = check_type(v, hints.get(k, Any), f"{path}.{k}")
    missing = [n for n, p in sig.parameters.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and n not in injected and n not in out and n != "self"]
    if missing:
        raise ConfigError(f"{path}: missing required key(s) {', '.join(missing)}")
    return out


def validate(config: Config) -> None:
    """Resolve every named builder and check every section's arguments, so a typo fails
    before any data are generated."""
    from .builders import DATA_INJECTED, MODEL_INJECTED, SAMPLING_INJECTED, GRAPH_INJECTED

    checks = [
        (registry.DATASETS, config.data.name, config.data, "data", DATA_INJECTED),
        (registry.SAMPLINGS, config.sampling.name, config.sampling, "sampling", SAMPLING_INJECTED),
        (registry.MODELS, config.model.name, config.model, "model", MODEL_INJECTED),
    ]
    for reg, name, section, path, injected in checks:
        try:
            builder = reg.get(name)
        except ValueError as e:
            raise ConfigError(f"{path}.name: {e}") from None
        section.params = check_arguments(builder, section.params, path, injected)
    try:
        gb = registry.GRAPHS.get(config.graph.kind)
    except (ValueError, ImportError) as e:
        raise ConfigError(f"graph.kind: {e}") from None
    config.graph.params = check_arguments(gb, config.graph.params, "graph", GRAPH_INJECTED)
    t = config.trainer
    for i, m in enumerate(t.metrics or []):
        if m not in registry.METRICS:
            raise ConfigError(
                f"trainer.metrics[{i}]: unknown metric {m!r}; choose from {', '.join(registry.METRICS.names())}"
            )
    if t.loss is not None and t.loss not in registry.LOSSES:
        raise ConfigError(
            f"trainer.loss: unknown loss {t.loss!r}; choose from {', '.join(registry.LOSSES.names())}"
        )
    for key in ("epochs", "batch_size"):
        if getattr(t, key) < 1:
            raise ConfigError(f"trainer.{key}: must be >= 1, got {getattr(t, key)}")
    _check_ranges(config)
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"trainer.device: {t.device!r} is not valid; choose from auto, cpu, cuda, cuda:N")


def _check_ranges(config: Config) -> None:
    """Values of the right type but outside their meaningful range (NaN, negative rates,
    zero patience): an error naming the key, instead of a run that silently does nothing
    useful."""
    import math

    def bad(path, value, need):
        raise ConfigError(f"{path}: must be {need}, got {value!r}")

    o, s, t = config.optim, config.scheduler, config.trainer
    if not (math.isfinite(o.lr) and o.lr > 0):
        bad("optim.lr", o.lr, "a finite number > 0 (e.g. 1.0e-3)")
    if not (math.isfinite(o.weight_decay) and o.weight_decay >= 0):
        bad("optim.weight_decay", o.weight_decay, "a finite number >= 0")
    if not (math.isfinite(o.momentum) and 0 <= o.momentum < 1):
        bad("optim.momentum", o.momentum, "in [0, 1)")
    if len(o.betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in o.betas):
        bad("optim.betas", o.betas, "two numbers in [0, 1), e.g. [0.9, 0.999]")
    if not (math.isfinite(s.gamma) and s.gamma > 0):
        bad("scheduler.gamma", s.gamma, "a finite number > 0 (the decay factor, e.g. 0.1)")
    if not (math.isfinite(s.min_lr) and s.min_lr >= 0):
        bad("scheduler.min_lr", s.min_lr, "a finite number >= 0")
    if s.step_size < 1:
        bad("scheduler.step_size", s.step_size, "an int >= 1 (epochs)")
    if s.patience < 0:
        bad("scheduler.patience", s.patience, "an int >= 0 (epochs without improvement)")
    if s.warmup_epochs < 0:
        bad("scheduler.warmup_epochs", s.warmup_epochs, "an int >= 0")
    if any(m < 0 for m in s.milestones):
        bad("scheduler.milestones", s.milestones, "epochs >= 0")
    if t.eval_batch_size is not None and t.eval_batch_size < 1:
        bad("trainer.eval_batch_size", t.eval_batch_size, ">= 1, or null for batch_size")
    if t.grad_clip is not None and not (math.isfinite(t.grad_clip) and t.grad_clip > 0):
        bad("trainer.grad_clip", t.grad_clip, "a finite number > 0, or null for no clipping")
    if t.early_stopping is not None and t.early_stopping < 1:
        bad("trainer.early_stopping", t.early_stopping, "a patience >= 1 epoch, or null to disable")
    if t.num_workers < 0:
        bad("trainer.num_workers", t.num_workers, ">= 0 (0 loads data in the main process)")
    if isinstance(t.class_weights, list) and not all(
            math.isfinite(w) and w >= 0 for w in t.class_weights):
        bad("trainer.class_weights", t.class_weights, "finite numbers >= 0")
