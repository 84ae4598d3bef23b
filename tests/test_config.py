"""Config parsing and validation, overrides, registries and plug-ins from a config."""
import textwrap

import numpy as np
import pytest
import torch
import yaml

from deepsphere.sampling import Sampling
from deepsphere.training import Config, ConfigError, Registry, load_config, validate
from deepsphere.training.config import apply_override, check_type
from deepsphere.training.registry import import_object

QUICKSTART = "configs/quickstart.yaml"


# ---- a user's own sampling, graph builder and model, named from a config ------------------
class FibonacciSampling(Sampling):
    """``n`` points on a Fibonacci spiral: nearly uniform, not hierarchical."""

    def __init__(self, n: int = 100):
        i = np.arange(n) + 0.5
        z = 1 - 2 * i / n
        phi = np.pi * (1 + 5**0.5) * i
        r = np.sqrt(1 - z**2)
        self._v = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
        self.n = n

    @property
    def vectors(self):
        return self._v

    def recipe(self):
        return {"name": "fibonacci", "n": self.n}


GRAPH_CALLS = []


def station_graph(sampling, k: int = 6):
    """A user's graph builder: k nearest neighbours, uniform weights."""
    from deepsphere import graph

    GRAPH_CALLS.append((sampling.npix, k))
    g = graph.knn(sampling, k=k, kernel_width="heuristic")
    return g


class GraphClassifier(torch.nn.Module):
    """One Chebyshev convolution on the config's graph, then a global average."""

    def __init__(self, sampling, in_channels: int, n_classes: int, graph: dict,
                 laplacian: str, hidden: int = 4, K: int = 3):
        super().__init__()
        from deepsphere import graph as G
        from deepsphere.nn import ChebConv

        g = G.build(sampling, graph)
        L = g.chebyshev_operator(kind=laplacian, dtype=torch.float32).to_dense()
        self.register_buffer("L", L, persistent=False)
        self.conv = ChebConv(in_channels, hidden, K)
        self.fc = torch.nn.Linear(hidden, n_classes)

    def forward(self, x):
        h = torch.relu(self.conv(x, self.L.to_sparse_csr()))
        return self.fc(h.mean(1))


def _plugin_config(tmp_path):
    here = __name__
    return Config.from_dict({
        "data": {"name": "synthetic_fields", "n_train": 16, "n_val": 8, "n_test": 8, "noise": 0.1},
        "sampling": {"name": f"{here}:FibonacciSampling", "n": 120},
        "graph": {"kind": f"{here}:station_graph", "k": 5},
        "model": {"name": f"{here}:GraphClassifier", "hidden": 4},
        "trainer": {"epochs": 2, "batch_size": 8, "progress": False, "plots": False,
                    "out": str(tmp_path / "run")},
    })


def test_user_sampling_graph_and_model_from_config(tmp_path):
    """The worked example of the docs: a sampling, a graph builder and a model defined
    right here, named as 'module:Name' in the config, train end to end."""
    from deepsphere.training import train

    GRAPH_CALLS.clear()
    trainer = train(_plugin_config(tmp_path))
    assert isinstance(trainer.sampling, FibonacciSampling)
    assert GRAPH_CALLS == [(120, 5)]  # the user's builder built the model's graph
    assert len(trainer.history) == 2
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["sampling"]["name"].endswith(":FibonacciSampling")
    assert saved["graph"] == {"kind": f"{__name__}:station_graph", "laplacian": "normalized", "k": 5}


def test_user_component_arguments_are_checked(tmp_path):
    c = _plugin_config(tmp_path)
    c.sampling.params["m"] = 3
    with pytest.raises(ConfigError, match=r"sampling\.m: unknown key .*valid keys: n"):
        validate(c)
    c = _plugin_config(tmp_path)
    c.sampling.params["n"] = "many"
    with pytest.raises(ConfigError, match=r"sampling\.n: 'many' .*expected int"):
        validate(c)
    c = _plugin_config(tmp_path)
    c.graph.params["kk"] = 5
    with pytest.raises(ConfigError, match=r"graph\.kk: unknown key .*valid keys: k"):
        validate(c)


# ---- parsing -------------------------------------------------------------------------
def test_quickstart_parses_and_round_trips():
    c = load_config(QUICKSTART)
    validate(c)
    assert c.model.name == "cnn" and c.sampling.params["nside"] == 16
    again = Config.from_dict(yaml.safe_load(c.to_yaml()))
    assert again.to_dict() == c.to_dict()


def test_defaults_fill_every_key():
    d = Config.from_dict({}).to_dict()
    assert set(d) == {"data", "sampling", "graph", "model", "optim", "scheduler", "trainer"}
    assert d["trainer"]["epochs"] == 10 and d["optim"]["name"] == "adam"


@pytest.mark.parametrize("raw, pattern", [
    ({"trainers": {}}, r"unknown section 'trainers'; valid sections: data, sampling"),
    ({"trainer": {"epochz": 3}}, r"trainer\.epochz: unknown key \(value 3\); valid keys: epochs"),
    ({"trainer": {"epochs": "ten"}}, r"trainer\.epochs: 'ten' \(str\) is not a valid value; expected int"),
    ({"trainer": {"epochs": 2.5}}, r"trainer\.epochs: 2\.5"),
    ({"trainer": {"amp": "yes"}}, r"trainer\.amp: 'yes' .*expected bool"),
    ({"optim": {"name": "adamm"}}, r"optim\.name: 'adamm' is not a valid choice; choose from 'adam', 'adamw', 'sgd'"),
    ({"optim": {"betas": [0.9, "x"]}}, r"optim\.betas\[1\]: 'x'"),
    ({"scheduler": {"name": "cosin"}}, r"scheduler\.name: .*'cosine'"),
    ({"trainer": {"class_weights": "balance"}}, r"trainer\.class_weights: 'balance'.*'balanced'"),
    ({"graph": {"laplacian": "norm"}}, r"graph\.laplacian: 'norm' is not a valid choice; choose from 'normalized', 'combinatorial'"),
    ({"model": []}, r"model: must be a mapping"),
])
def test_bad_values_name_path_value_and_choices(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Config.from_dict(raw)


def test_float_fields_accept_ints():
    c = Config.from_dict({"optim": {"lr": 1}})
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float)


@pytest.mark.parametrize("section, key, value, pattern", [
    ("model", "chanels", [8], r"model\.chanels: unknown key .*valid keys: .*channels"),
    ("model", "K", "five", r"model\.K: 'five' .*expected int"),
    ("model", "channels", [16, "x"], r"model\.channels\[1\]: 'x' .*expected int"),
    ("model", "channels", "16", r"model\.channels: '16' .*expected Sequence\[int\]"),
    ("model", "n_classes", 3, r"model\.n_classes: set by the trainer"),
    ("data", "noize", 1.0, r"data\.noize: unknown key .*noise"),
    ("data", "n_train", 1.5, r"data\.n_train: 1\.5"),
    ("sampling", "nsid", 8, r"sampling\.nsid: unknown key .*nside"),
    ("graph", "k", "eight", r"graph\.k: 'eight' .*expected int"),
])
def test_component_arguments_checked_against_signatures(section, key, value, pattern):
    c = load_config(QUICKSTART)
    getattr(c, section).params[key] = value
    with pytest.raises(ConfigError, match=pattern):
        validate(c)


def test_unknown_registry_names_list_the_choices():
    c = load_config(QUICKSTART, ["model.name=cnnn"])
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'cnnn'; choose from cnn, .*station.*unet"):
        validate(c)
    c = load_config(QUICKSTART, ["trainer.metrics=[accuracy, f1]"])
    with pytest.raises(ConfigError, match=r"trainer\.metrics\[1\]: unknown metric 'f1'; choose from accuracy"):
        validate(c)
    c = load_config(QUICKSTART, ["graph.kind=knnn"])
    with pytest.raises(ConfigError, match=r"graph\.kind: unknown graph builder 'knnn'"):
        validate(c)


# ---- overrides -----------------------------------------------------------------------
def test_overrides_are_parsed_as_yaml():
    c = load_config(QUICKSTART, ["trainer.epochs=3", "model.channels=[8, 8]", "trainer.grad_clip=1",
                                 "trainer.amp=true", "data.noise=0.25", "trainer.early_stopping=null"])
    assert c.trainer.epochs == 3 and c.model.params["channels"] == [8, 8]
    assert c.trainer.grad_clip == 1.0 and c.trainer.amp is True
    assert c.data.params["noise"] == 0.25 and c.trainer.early_stopping is None


@pytest.mark.parametrize("override, pattern", [
    ("trainer.epochs", r"KEY=VALUE"),
    ("epochs=3", r"SECTION\.KEY"),
    ("train.epochs=3", r"unknown section 'train'"),
    ("trainer.epochs=abc", r"trainer\.epochs: 'abc'"),
    ("trainer.epochz=3", r"trainer\.epochz: unknown key"),
    ("trainer.epochs.x=3", r"trainer\.epochs is 10, not a section"),
])
def test_bad_overrides(override, pattern):
    raw = {"trainer": {"epochs": 10}}
    with pytest.raises(ConfigError, match=pattern):
        Config.from_dict(raw, [override])


def test_override_creates_nested_keys():
    d = {}
    apply_override(d, "graph.k=20")
    assert d == {"graph": {"k": 20}}


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("trainer: {epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(p)
    p.write_text(textwrap.dedent("""
        trainer:
          epochs: 2
          batch_size: 4
    """))
    assert load_config(p).trainer.batch_size == 4


def test_check_type_generic_cases():
    from typing import List, Optional, Union

    assert check_type(None, Optional[int], "a") is None
    assert check_type([1, 2], List[float], "a") == [1.0, 2.0]
    with pytest.raises(ConfigError, match=r"a\[0\]: True"):
        check_type([True], List[int], "a")
    with pytest.raises(ConfigError, match="expected int | str"):
        check_type(1.5, Union[int, str], "a")


# ---- registries ----------------------------------------------------------------------
def test_registry_register_get_and_import_paths():
    r = Registry("widget")
    r.register("one", lambda: 1)

    @r.register("two")
    def two():
        return 2

    assert r.get("one")() == 1 and r.get("two")() == 2 and list(r.names()) == ["one", "two"]
    assert r.get("numpy:zeros") is np.zeros
    with pytest.raises(ValueError, match="unknown widget 'three'; choose from one, two"):
        r.get("three")
    with pytest.raises(ValueError, match="already registered"):
        r.register("one", lambda: 3)
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.mod'"):
        import_object("no_such_pkg.mod:X")
    with pytest.raises(ValueError, match="module 'numpy' has no attribute 'zeroz'"):
        import_object("numpy:zeroz")
    with pytest.raises(ValueError, match="package.module:ClassName"):
        import_object("numpy.zeros")


def _training_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    return sorted(p for p in root.glob("*.yaml") if "model" in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("path", _training_configs(), ids=lambda p: p.name)
def test_every_shipped_training_config_validates(path):
    # names every builder and argument: a renamed class or keyword breaks here, not in a user's run
    validate(load_config(path))


def test_duplicate_keys_are_refused(tmp_path):
    # YAML keeps the last of two equal keys: the first trainer section was dropped silently
    p = tmp_path / "dup.yaml"
    p.write_text("trainer: {epochs: 3, out: runs/a}\nmodel: {name: cnn}\ntrainer: {batch_size: 4}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml, line 3: key 'trainer' appears twice .*first on line 1"):
        load_config(p)
    p.write_text("trainer:\n  epochs: 3\n  seed: 1\n  epochs: 50\n")
    with pytest.raises(ConfigError, match=r"line 4: key 'epochs' appears twice .*first on line 2"):
        load_config(p)
    # equal keys in different mappings (name) are fine
    p.write_text("optim: {name: adam}\nscheduler: {name: step}\n"
                 "trainer: {epochs: 2, batch_size: 4}\ndata: {name: synthetic_fields}\n")
    assert load_config(p).trainer.epochs == 2


def test_training_guide_lists_every_registered_name():
    from pathlib import Path

    from deepsphere.training import registry

    guide = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    missing = [f"{reg}:{n}" for reg in ("SAMPLINGS", "DATASETS", "MODELS", "LOSSES", "METRICS")
               for n in getattr(registry, reg).names() if f"`{n}`" not in guide]
    assert not missing, f"docs/training.md does not name {missing}"


@pytest.mark.parametrize("raw, pattern", [
    ({"optim": {"lr": True}}, r"optim\.lr: True \(bool\) is not a valid value; expected float"),
    ({"scheduler": {"gamma": False}}, r"scheduler\.gamma: False \(bool\) .*expected float"),
    ({"trainer": {"epochs": True}}, r"trainer\.epochs: True \(bool\) .*expected int"),
])
def test_booleans_are_not_numbers(raw, pattern):
    """bool is an int subclass in Python: ``lr: true`` would otherwise become a rate of 1.0
    and ``epochs: true`` one epoch, without a word."""
    with pytest.raises(ConfigError, match=pattern):
        Config.from_dict(raw)


def test_override_values_may_contain_equals_signs():
    """Only the first '=' separates the key: a path or a string value keeps the others."""
    d = {}
    apply_override(d, "data.files=/maps/run=3/*.nc")
    apply_override(d, "trainer.out=runs/lr=1e-3")
    assert d == {"data": {"files": "/maps/run=3/*.nc"}, "trainer": {"out": "runs/lr=1e-3"}}


@pytest.mark.parametrize("momentum", [1.0, 1.5, -0.1])
def test_momentum_must_be_below_one(momentum):
    """With momentum 1 the velocity never decays (every past gradient counts forever)."""
    with pytest.raises(ConfigError, match=r"optim\.momentum: must be in \[0, 1\)"):
        validate(Config.from_dict({"sampling": {"name": "healpix", "nside": 4},
                                   "optim": {"momentum": momentum}}))


@pytest.mark.parametrize("section, key, value, pattern", [
    ("optim", "lr", 0.0, r"optim\.lr: must be a finite number > 0"),
    ("optim", "lr", -1e-3, r"optim\.lr: must be a finite number > 0"),
    ("trainer", "class_weights", [1.0, -0.5], r"trainer\.class_weights: must be finite numbers >= 0"),
])
def test_rates_and_class_weights_out_of_range_are_refused(section, key, value, pattern):
    """A rate of 0 trains nothing; a negative class weight rewards the model for being wrong
    on that class."""
    with pytest.raises(ConfigError, match=pattern):
        validate(Config.from_dict({"sampling": {"name": "healpix", "nside": 4}, section: {key: value}}))
