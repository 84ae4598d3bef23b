"""Property-based tests of the config round trip: parse ∘ dump is the identity.

For any valid config dict ``d``: ``c = Config.from_dict(d)`` keeps every value given (ints
promoted to float where a float is due), ``Config.from_dict(yaml.safe_load(c.to_yaml()))``
equals ``c``, and a ``--set`` override written as YAML text is the same as editing the
dict. The run directory's ``config.yaml`` and ``--resume``'s comparison rely on this.
"""
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepsphere.training.config import Config, ConfigError, apply_override

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text that YAML writes and reads back unchanged (printable, no surrogates)
text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                             blacklist_categories=("Cs", "Cc")), max_size=12)
names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
positive = st.floats(min_value=1e-9, max_value=1e3, allow_nan=False)
number = st.one_of(st.integers(-10**6, 10**6), finite)
small_int = st.integers(0, 1000)

# plain YAML values for the free-form sections (data, sampling, model, graph params)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), finite, text)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)), max_leaves=10)
params = st.dictionaries(names.filter(lambda k: k not in ("name", "kind", "laplacian")),
                         values, max_size=5)


def component(default_names):
    return st.builds(lambda n, p: {"name": n, **p}, st.sampled_from(default_names), params)


graph_section = st.builds(
    lambda kind, lap, p: {"kind": kind, "laplacian": lap, **p},
    st.sampled_from(["knn", "healpix", "radius", "mypkg.graphs:build"]),
    st.sampled_from(["normalized", "combinatorial"]), params)

optim = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["adam", "adamw", "sgd"]), "lr": positive,
    "weight_decay": st.one_of(small_int, finite.map(abs)), "momentum": st.floats(0, 0.99),
    "betas": st.lists(st.floats(0, 0.999), min_size=2, max_size=2)})
scheduler = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["none", "step", "multistep", "exponential", "cosine", "plateau"]),
    "step_size": st.integers(1, 100), "milestones": st.lists(small_int, max_size=4),
    "gamma": positive, "min_lr": st.floats(0, 1), "patience": st.integers(1, 50),
    "warmup_epochs": st.integers(0, 10)})
trainer = st.fixed_dictionaries({}, optional={
    "epochs": st.integers(1, 10**4), "batch_size": st.integers(1, 4096),
    "eval_batch_size": st.one_of(st.none(), st.integers(1, 4096)),
    "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:1"]), "amp": st.booleans(),
    "amp_dtype": st.sampled_from(["float16", "bfloat16"]),
    "grad_clip": st.one_of(st.none(), positive), "seed": st.integers(0, 2**31),
    "deterministic": st.booleans(), "loss": st.one_of(st.none(), names),
    "class_weights": st.one_of(st.none(), st.just("balanced"), st.lists(positive, max_size=5)),
    "metrics": st.one_of(st.none(), st.lists(names, max_size=3)),
    "monitor": st.one_of(st.none(), names), "mode": st.sampled_from(["auto", "min", "max"]),
    "early_stopping": st.one_of(st.none(), st.integers(1, 100)),
    "num_workers": st.integers(0, 8), "out": text, "progress": st.booleans(),
    "plots": st.booleans(), "sync_batchnorm": st.booleans()})

configs = st.fixed_dictionaries({}, optional={
    "data": component(["synthetic_fields", "climate", "mypkg.data:Set"]),
    "sampling": component(["healpix", "equiangular", "irregular_csv"]),
    "graph": graph_section,
    "model": component(["cnn", "unet", "station"]),
    "optim": optim, "scheduler": scheduler, "trainer": trainer})


def _same(a, b) -> bool:
    """Equality where 1 == 1.0 counts (the parser promotes ints to floats)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return not isinstance(a, bool) and not isinstance(b, bool) and math.isclose(a, b, rel_tol=0, abs_tol=0)
    return type(a) is type(b) and a == b


@SETTINGS
@given(d=configs)
def test_parse_dump_parse_is_identity(d):
    c = Config.from_dict(d)
    text_form = c.to_yaml()
    again = Config.from_dict(yaml.safe_load(text_form))
    assert again == c
    assert again.to_yaml() == text_form  # dump ∘ parse ∘ dump = dump


@SETTINGS
@given(d=configs)
def test_parse_keeps_every_given_value(d):
    out = Config.from_dict(d).to_dict()
    for section, raw in d.items():
        for key, value in raw.items():
            assert _same(out[section][key], value), (section, key, value, out[section][key])


@SETTINGS
@given(d=configs)
def test_dict_round_trip(d):
    c = Config.from_dict(d)
    assert Config.from_dict(c.to_dict()) == c


@SETTINGS
@given(d=configs, section=st.sampled_from(["data", "sampling", "model", "graph"]),
       key=names.filter(lambda k: k not in ("name", "kind", "laplacian")), value=values)
def test_override_equals_editing_the_dict(d, section, key, value):
    """``--set section.key=<yaml of value>`` gives the config of the edited dict."""
    edited = {s: dict(v) for s, v in d.items()}
    edited.setdefault(section, {})[key] = value
    as_text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    if as_text.endswith("\n..."):
        as_text = as_text[: -len("\n...")].strip()
    as_text = as_text.removesuffix("...").strip()
    via_override = Config.from_dict(d, [f"{section}.{key}={as_text}"])
    assert via_override == Config.from_dict(edited)


@SETTINGS
@given(d=configs, bad=names.filter(lambda k: k not in (
    "data", "sampling", "graph", "model", "optim", "scheduler", "trainer")))
def test_unknown_section_always_refused(d, bad):
    with pytest.raises(ConfigError, match="unknown section"):
        Config.from_dict({**d, bad: {}})


def test_override_of_missing_section_creates_it():
    d = {}
    apply_override(d, "trainer.epochs=3")
    assert d == {"trainer": {"epochs": 3}}
