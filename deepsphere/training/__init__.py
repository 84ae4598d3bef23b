"""Training from YAML configs: typed config, registries of named components, the trainer
(checkpoints, exact resume, early stopping, mixed precision, DDP), metrics and plots.

>>> from deepsphere.training import load_config, train
>>> trainer = train(load_config("configs/quickstart.yaml"), out="runs/quickstart")  # doctest: +SKIP
"""
from .config import Config, ConfigError, load_config, validate
from .registry import DATASETS, GRAPHS, LOSSES, METRICS, MODELS, SAMPLINGS, Registry, import_object
from .trainer import Trainer, evaluate_split, open_run, train

__all__ = ["Config", "ConfigError", "load_config", "validate", "Registry", "import_object",
           "SAMPLINGS", "GRAPHS", "DATASETS", "MODELS", "LOSSES", "METRICS",
           "Trainer", "train", "open_run", "evaluate_split"]
