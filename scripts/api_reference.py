"""Write docs/api.md: the public API of deepsphere, from the docstrings.

For each package, every name in ``__all__``: the signature, the summary paragraph, the
math and shape lines of the docstring, and (for classes) the public methods and properties
with their one-line summaries. Usage::

    python scripts/api_reference.py            # rewrites docs/api.md
    python scripts/api_reference.py --check    # exit 1 if docs/api.md is out of date
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import warnings
from pathlib import Path

PACKAGES = [
    ("deepsphere.sampling", "Where the pixels are."),
    ("deepsphere.graph", "Who neighbours whom: graphs, Laplacians, Chebyshev operators."),
    ("deepsphere.nn", "Layers on signals of shape [batch, vertices, channels]."),
    ("deepsphere.models", "Classifier, segmenter and station regressor."),
    ("deepsphere.training", "YAML configs, registries and the trainer."),
    ("deepsphere.data", "Datasets and file readers."),
    ("deepsphere.equivariance", "Measuring equivariance error."),
    ("deepsphere.spectral", "Spherical harmonic transforms and exactly equivariant layers."),
]
OUT = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def rst_to_md(text: str) -> str:
    """The RST of numpy-style docstrings as Markdown (inline roles and math)."""
    text = re.sub(r":(?:class|func|meth|attr|mod|data|obj):`~?([^`]+)`",
                  lambda m: f"`{m.group(1).split('.')[-1] if m.group(0).count('~') else m.group(1)}`", text)
    text = re.sub(r":math:`([^`]+)`", r"$\1$", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return text


def _paragraphs(doc: str):
    return [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]


_SECTION = re.compile(r"^(\w[\w ]*)\n-{3,}\s*$", re.M)


def _sections(doc: str) -> dict:
    """numpy-style sections of a cleaned docstring; '' is the text before the first."""
    out, last, name = {}, 0, ""
    for m in _SECTION.finditer(doc):
        out[name] = doc[last:m.start()]
        name, last = m.group(1).strip(), m.end()
    out[name] = doc[last:]
    return out


def _parameters(text: str) -> list:
    """``- name (type): description`` for each entry of a Parameters section."""
    rows, cur = [], None
    for line in text.splitlines():
        if line.startswith("Shape"):  # a Shape line after the parameters ends them
            break
        if line and not line[0].isspace():
            name, _, tp = line.partition(":")
            cur = [name.strip(), tp.strip(), []]
            rows.append(cur)
        elif cur is not None and line.strip():
            cur[2].append(line.strip())
    out = []
    for name, tp, desc in rows:
        head = f"- `{name}`" + (f" ({rst_to_md(tp)})" if tp else "")
        out.append(head + (": " + rst_to_md(" ".join(desc)) if desc else ""))
    return out


def _render_paragraphs(text: str) -> list:
    """Paragraphs as Markdown, in order: math blocks as $$...$$, bullet lists kept."""
    out = []
    for para in _paragraphs(text):
        if para.startswith(".. math::"):
            math = " ".join(l.strip() for l in para.split("::", 1)[1].splitlines() if l.strip())
            out.append(f"$$ {math} $$")
        elif para.startswith(("Shape", ">>>")):
            continue
        elif para.lstrip().startswith("- ") or "\n- " in para:
            out.append("\n".join(rst_to_md(" ".join(item.split()))
                                 for item in re.split(r"\n(?=\s*- )", para)))
        else:
            out.append(rst_to_md(" ".join(para.split())))
    return out


def summarise(doc: str) -> str:
    """Extended summary and notes (math as $$), Shape lines and Parameters of a
    numpy-style docstring."""
    doc = inspect.cleandoc(doc or "")
    if not doc:
        return "_(no docstring)_"
    sec = _sections(doc)
    out = _render_paragraphs(sec.get("", ""))
    out += [rst_to_md(l.strip()) for l in doc.splitlines() if re.match(r"\s*Shape\b", l)]
    params = _parameters(sec.get("Parameters", ""))
    if params:
        out.append("Parameters:\n\n" + "\n".join(params))
    notes = _render_paragraphs(sec.get("Notes", ""))
    if notes:
        out.append("Notes:\n\n" + "\n\n".join(notes))
    return "\n\n".join(out)


def _doc(cls, name: str):
    """The docstring of ``name`` on ``cls`` or, if undocumented there, on a base class."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("deepsphere"):
            break  # torch's "Define the computation performed at every call." says nothing
        v = vars(klass).get(name)
        if v is None:
            continue
        f = v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
        if getattr(f, "__doc__", None):
            return f.__doc__
    return ""


def first_line(doc: str) -> str:
    doc = inspect.cleandoc(doc or "")
    return rst_to_md(" ".join(_paragraphs(doc)[0].split())) if doc else ""


def signature(obj) -> str:
    try:
        try:
            sig = inspect.signature(obj, eval_str=True)
        except Exception:
            sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    text = str(sig)
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).split(".")[-1], text)
    text = re.sub(r"\b(?:typing|numpy|torch|scipy\.sparse\._csr|deepsphere(?:\.\w+)+)\.", "", text)
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def members(cls) -> list:
    rows = []
    # the class's own members and those it inherits from deepsphere bases (not torch's)
    own = {}
    for klass in reversed(cls.__mro__):
        if klass is cls or klass.__module__.startswith("deepsphere"):
            own.update(vars(klass))
    for name, value in sorted(own.items()):
        if name.startswith("_") and name != "__call__":
            continue
        doc = first_line(_doc(cls, name))
        if isinstance(value, property):
            rows.append(f"- `{name}` (property)" + (f": {doc}" if doc else ""))
        elif isinstance(value, (classmethod, staticmethod)):
            rows.append(f"- `{name}{signature(value.__func__)}`" + (f": {doc}" if doc else ""))
        elif inspect.isfunction(value):
            rows.append(f"- `{name}{signature(value)}`" + (f": {doc}" if doc else ""))
    return rows


def document(module_name: str, blurb: str) -> list:
    mod = importlib.import_module(module_name)
    lines = [f"## `{module_name}`", "", blurb, ""]
    names = getattr(mod, "__all__", None)
    if names is None:  # no __all__: the public classes and functions it imports from deepsphere
        names = [n for n, v in vars(mod).items() if not n.startswith("_")
                 and (inspect.isclass(v) or inspect.isfunction(v))
                 and getattr(v, "__module__", "").startswith("deepsphere")]
    for name in names:
        obj = getattr(mod, name)
        if inspect.isclass(obj):
            lines += [f"### {name}", "", f"`class {name}{signature(obj)}`", "",
                      summarise(obj.__doc__), ""]
            ms = members(obj)
            if ms:
                lines += ms + [""]
        elif callable(obj):
            lines += [f"### {name}", "", f"`{name}{signature(obj)}`", "", summarise(obj.__doc__), ""]
        else:
            lines += [f"### {name}", "", f"Constant: `{obj!r}`"[:300], ""]
    return lines


def render() -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings by `python scripts/api_reference.py`; the docstrings "
             "have the full parameter lists. Signals are `[batch, vertices, channels]`; HEALPix "
             "data are NESTED inside; weights are `w = exp(-d²/4t)` with d the chordal distance.",
             ""]
    lines += ["Packages: " + ", ".join(f"[`{m}`](#{m.replace('.', '')})" for m, _ in PACKAGES), ""]
    for module_name, blurb in PACKAGES:
        lines += document(module_name, blurb)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = render()
    if args.check:
        same = OUT.is_file() and OUT.read_text() == text
        print("docs/api.md is up to date" if same else "docs/api.md is out of date: rerun the script")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
