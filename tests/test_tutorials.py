"""The tutorials under docs/tutorials run as tests, so the docs cannot rot.

Each Markdown file's ```python blocks are executed in order, in one namespace, in a fresh
temporary directory. A ```yaml block whose first line is ``# file: NAME`` is written to
``NAME`` first (so a tutorial can show a config file and then use it). Other blocks
(``bash``, ``text``) are illustration only.
"""
import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
_BLOCK = re.compile(r"^```(\w+)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(path: Path):
    """``(language, code)`` of each fenced block of a Markdown file, in order."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(path.read_text())]


def run_tutorial(path: Path) -> dict:
    namespace = {"__name__": f"tutorial_{path.stem}"}
    for lang, code in blocks(path):
        if lang == "yaml":
            first = code.splitlines()[0] if code.strip() else ""
            m = re.match(r"#\s*file:\s*(\S+)", first)
            if m:
                Path(m.group(1)).write_text(code)
        elif lang == "python":
            exec(compile(code, str(path), "exec"), namespace)
    return namespace


def test_there_are_four_tutorials():
    assert len(TUTORIALS) >= 4, TUTORIALS
    for path in TUTORIALS:
        assert any(lang == "python" for lang, _ in blocks(path)), f"{path.name} has no code"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_tutorial(path)


def test_block_parser(tmp_path):
    """The extractor finds fenced blocks with their language, and only those."""
    text = "intro\n```python\nx = 1\n```\n\n```yaml\n# file: a.yaml\nk: 1\n```\n```\nplain\n```\n"
    p = tmp_path / "page.md"
    p.write_text(text)
    assert blocks(p) == [("python", "x = 1\n"), ("yaml", "# file: a.yaml\nk: 1\n")]


def test_docs_links_resolve():
    """Relative links between the docs pages point at files that exist."""
    pages = list(DOCS.rglob("*.md"))
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(DOCS)} -> {target}")
    assert not broken, broken


@pytest.mark.parametrize("package", ["sampling", "graph", "nn", "models", "training"])
def test_api_reference_covers_public_names(package):
    """docs/api.md (scripts/api_reference.py) has a section for every public name."""
    import importlib
    import inspect

    mod = importlib.import_module(f"deepsphere.{package}")
    names = getattr(mod, "__all__", None) or [
        n for n, v in vars(mod).items() if not n.startswith("_")
        and (inspect.isclass(v) or inspect.isfunction(v))
        and getattr(v, "__module__", "").startswith("deepsphere")]
    text = (DOCS / "api.md").read_text()
    missing = [n for n in names if f"\n### {n}\n" not in text]
    assert not missing, f"rerun python scripts/api_reference.py; missing: {missing}"


def test_api_reference_is_up_to_date():
    """docs/api.md is what scripts/api_reference.py writes from today's docstrings."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "api_reference.py"
    spec = importlib.util.spec_from_file_location("api_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = mod.render()
    assert (DOCS / "api.md").read_text() == text, (
        "docs/api.md is out of date: run python scripts/api_reference.py")
