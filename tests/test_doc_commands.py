"""The commands the documentation shows still run: their config files exist, their
arguments parse, and their configs (with every ``--set``) load and validate.

Nothing is trained or generated: each entry point runs up to its ``parse_args`` and stops
there (``parse_args`` is patched to raise once it has parsed); the configs then go through
the same loading and validation as the command does before it builds any data.

What counts as a command, and how its placeholders are expanded
--------------------------------------------------------------
Sources: README.md, RESULTS.md, BENCHMARKS.md and docs/**/*.md.

* In fenced blocks without a language or marked bash/sh/shell/console, a line (backslash
  continuations joined, ``# comments`` dropped) is a command when its first word is in
  ``CHECKED`` or ``SKIPPED``; other lines are output. ``NAME="..."`` lines define variables.
* An inline code span is a command when its first word is in ``CHECKED`` or ``SKIPPED``.
  Spans ``NAME="..."`` and the prose form ``NAME`` = ``--set ...`` define variables.
* ``$NAME`` takes the latest definition above it in the same file (an undefined one fails).
* ``...`` stands for the options given in the last inline span starting with ``--`` between the
  previous fenced block and the command (the "all with ``--set ...``" sentence); without one it
  is dropped.
* ``a|b|c`` inside a word and ``{a,b}`` give one command per alternative; an optional part
  ``[--opt ...]`` gives the command with it and without it.
* ``PLACEHOLDERS`` replaces metavariables (``CONFIG``, ``RUN_DIR``, a single-letter value
  such as ``--set data.noise=N``); ``configs/NAME.yaml`` is every training config.
* An environment prefix (``OMP_NUM_THREADS=1 python ...``) is dropped. ``python -c CODE`` is
  compiled, not run, and the names it takes from deepsphere must exist.
* Launchers are unwrapped: ``torchrun OPTS scripts/X.py`` and
  ``python -m torch.distributed.run ... -m deepsphere.cli`` check what they launch.
* A ```` ```yaml ```` block whose first line is ``# file: NAME.yaml`` is a config the page writes;
  commands naming it read that block.

An inline span naming a command with options only, that fails for want of a required
argument or an option's value (``deepsphere train``, ``deepsphere predict --output``), refers
to the command and is not an invocation: it is skipped (an unknown option still fails), as
are programs in ``SKIPPED`` (tools that are not this project's entry points).
A first word in neither list is not taken for a command, so a new entry point must be
added to ``CHECKED``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "RESULTS.md", "BENCHMARKS.md",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]

CHECKED = {"deepsphere", "python", "torchrun"}
SKIPPED = {"pip": "installs packages", "git": "version control", "pytest": "runs the test suite",
           "cd": "shell builtin", "export": "shell builtin", "conda": "environment manager"}
# modules run with ``python -m`` that are not this project's: not checked
SKIPPED_MODULES = {"pytest": "runs the test suite", "pip": "installs packages"}
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}

TRAINING_CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")
                          if not p.stem.startswith("equivariance_"))
# metavariables: whole words, and single-letter values of KEY=VALUE
PLACEHOLDERS = {
    "CONFIG": "configs/quickstart.yaml",
    "RUN_DIR": "runs/quickstart",
    "INPUT.npy": "maps.npy",
    "a.b=value": "trainer.epochs=2",
}
VALUE_PLACEHOLDERS = {
    "N": "1.0",    # noise level
    "S": "0",      # trainer seed
    "O": "1",      # patch order
    "G": "true",   # lognormal (true) or Gaussian (false) maps
    "p": "0.25",   # probability of rotating a training digit
}
PATH_PLACEHOLDER = "/path/to"  # PATH/mnist_5k.csv.gz: only the value's type is checked

# Stale commands awaiting a correction of their doc: (file, expanded command) -> what is wrong.
# Each must still fail (strict xfail); drop its entry once the doc is fixed.
KNOWN_STALE: Dict[Tuple[str, str], str] = {
}


# ---------------------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------------------
@dataclass
class DocCommand:
    file: str
    line: int
    text: str                 # as written (continuations joined)
    inline: bool
    variables: Dict[str, str]  # visible definitions at this point
    ellipsis: Optional[str]    # what '...' stands for
    written: Dict[str, str]    # config files the page writes: name -> YAML text


_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_ASSIGN = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$", re.S)
_PROSE_ASSIGN = re.compile(r"`([A-Z][A-Z0-9_]*)`\s*=\s*`([^`]+)`")


def _first_word(text: str) -> str:
    return text.split(None, 1)[0] if text.split() else ""


_ENV = re.compile(r"^(?:[A-Z][A-Z0-9_]*=\S*\s+)+")


def _is_command(text: str) -> bool:
    return _first_word(text) in CHECKED or _first_word(text) in SKIPPED


def _classify(text: str, variables: Dict[str, str]) -> Optional[str]:
    """Record ``NAME=value`` definitions; return the command of ``text`` (without an
    environment prefix such as ``OMP_NUM_THREADS=1``), or None."""
    a = _ASSIGN.match(text)
    if a and not _open_quote(text) and len(shlex.split(text)) == 1:
        variables[a.group(1)] = _unquote(a.group(2))
        return None
    text = _ENV.sub("", text)
    return text if _is_command(text) else None


def _open_quote(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return True
    return False


def _unquote(value: str) -> str:
    try:
        parts = shlex.split(value)
    except ValueError:
        return value
    return " ".join(parts) if len(parts) != 1 else parts[0]


def extract(doc: str) -> List[DocCommand]:
    """Every command of one markdown file, in order, with the variables visible to it."""
    lines = (ROOT / doc).read_text().splitlines()
    # split into prose paragraphs and fenced blocks, keeping line numbers
    events = []  # (line, kind, payload)
    written: Dict[str, str] = {}
    i, prose, prose_start = 0, [], 1

    def flush_prose():
        para, start = [], prose_start
        for k, text in enumerate(prose + [""]):
            if text.strip():
                if not para:
                    start = prose_start + k
                para.append(text)
            elif para:
                events.append((start, "prose", "\n".join(para)))
                para = []

    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            if not prose:
                prose_start = i + 1
            prose.append(lines[i])
            i += 1
            continue
        flush_prose()
        prose = []
        fence, lang, start = m.group(2), m.group(3).lower(), i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        events.append((start, "block", (lang, body)))
    flush_prose()

    out: List[DocCommand] = []
    variables: Dict[str, str] = {}
    ellipsis: Optional[str] = None
    for line, kind, payload in events:
        if kind == "prose":
            for m in _PROSE_ASSIGN.finditer(payload):
                variables[m.group(1)] = " ".join(m.group(2).split())
            for m in _SPAN.finditer(payload):
                text = " ".join(m.group(1).split())
                at = line + payload[:m.start()].count("\n")
                if text.startswith("--"):
                    ellipsis = text
                elif _classify(text, variables):
                    out.append(DocCommand(doc, at, _classify(text, {}), True, dict(variables),
                                          ellipsis, dict(written)))
            continue
        lang, body = payload
        if lang == "yaml" and body and body[0].strip().startswith("# file:"):
            written[body[0].split(":", 1)[1].strip()] = "\n".join(body)
        if lang not in SHELL_LANGUAGES:
            continue
        k = 0
        while k < len(body):
            at, text = line + 1 + k, body[k]
            while k + 1 < len(body):
                if text.rstrip().endswith("\\"):  # continuation
                    text = text.rstrip()[:-1] + " " + body[k + 1].strip()
                elif _open_quote(text):  # a quoted argument over several lines (python -c)
                    text = text + "\n" + body[k + 1]
                else:
                    break
                k += 1
            k += 1
            text = text.strip()
            if _classify(text, variables):
                out.append(DocCommand(doc, at, _classify(text, {}), False, dict(variables),
                                      ellipsis, dict(written)))
        ellipsis = None  # '...' refers to the prose just before its own block
    return out


# ---------------------------------------------------------------------------------------
# expansion
# ---------------------------------------------------------------------------------------
def _substitute_variables(cmd: DocCommand) -> str:
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in cmd.variables:
            raise AssertionError(f"${name} is not defined above the command in {cmd.file}")
        return cmd.variables[name]
    return re.sub(r"\$\{([A-Z][A-Z0-9_]*)\}|\$([A-Z][A-Z0-9_]*)", repl, cmd.text)


def _unwrap_launcher(words: List[str]) -> List[str]:
    """``torchrun OPTS script ARGS`` -> ``python script ARGS``;
    ``python -m torch.distributed.run ... -m MOD ARGS`` -> ``python -m MOD ARGS``;
    ``python -m deepsphere.cli ARGS`` -> ``deepsphere ARGS``."""
    if words[0] == "torchrun":
        k = 1
        while k < len(words) and words[k].startswith("-"):
            k += 1
        words = ["python", *words[k:]]
    if words[:3] == ["python", "-m", "torch.distributed.run"]:
        k = words.index("-m", 3) if "-m" in words[3:] else len(words)
        words = ["python", *words[k:]]
    if words[:3] == ["python", "-m", "deepsphere.cli"]:
        words = ["deepsphere", *words[3:]]
    return words


def _alternatives(word: str) -> List[str]:
    m = re.search(r"\{([\w.-]+(?:,[\w.-]+)+)\}", word)
    if m:
        return [w for alt in m.group(1).split(",")
                for w in _alternatives(word[:m.start()] + alt + word[m.end():])]
    if "|" in word:
        head, sep, value = word.rpartition("=") if "=" in word else ("", "", word)
        return [head + sep + alt for alt in value.split("|")]
    return [word]


def _placeholder(word: str) -> List[str]:
    if word in PLACEHOLDERS:
        return [PLACEHOLDERS[word]]
    if "configs/NAME.yaml" in word:
        return [word.replace("NAME", name) for name in TRAINING_CONFIGS]
    key, eq, value = word.partition("=")
    if eq and value in VALUE_PLACEHOLDERS:
        return [key + "=" + VALUE_PLACEHOLDERS[value]]
    return [re.sub(r"\bPATH\b", PATH_PLACEHOLDER, word)]


def expand(cmd: DocCommand) -> List[List[str]]:
    """The argument vectors a documented command stands for (see the module docstring)."""
    text = _ENV.sub("", _substitute_variables(cmd))
    words = shlex.split(text, comments=True)
    for sep in ("&&", ";", "|"):  # check each command of a list or pipeline on its own
        if sep in words:
            k = words.index(sep)
            return [w for part in (words[:k], words[k + 1:]) if part
                    for w in expand(_with_text(cmd, shlex.join(part)))]
    words = _unwrap_launcher(words)
    if words[:2] == ["python", "-c"]:  # Python code: no placeholders
        return [words]
    if "..." in words:
        k = words.index("...")
        words[k:k + 1] = shlex.split(cmd.ellipsis) if cmd.ellipsis else []
    # optional parts: [--opt value ...]
    groups: List[List[str]] = []
    plain: List[object] = []
    k = 0
    while k < len(words):
        w = words[k]
        if w.startswith("[-"):
            group, w = [], w[1:]
            while True:
                if w.endswith("]"):
                    group.append(w[:-1])
                    break
                group.append(w)
                k += 1
                if k == len(words):
                    raise AssertionError(f"unclosed optional part in {cmd.text!r}")
                w = words[k]
            plain.append(len(groups))
            groups.append(group)
        else:
            plain.append(w)
        k += 1
    variants = []
    for keep in itertools.product((True, False), repeat=len(groups)):
        argv = []
        for w in plain:
            if isinstance(w, int):
                argv += groups[w] if keep[w] else []
            else:
                argv.append(w)
        choices = [[p for a in _alternatives(w) for p in _placeholder(a)] for w in argv]
        variants += [list(v) for v in itertools.product(*choices)]
    return variants


def _with_text(cmd: DocCommand, text: str) -> DocCommand:
    return DocCommand(cmd.file, cmd.line, text, cmd.inline, {}, cmd.ellipsis, cmd.written)


# ---------------------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------------------
class _Parsed(BaseException):
    """Raised by the patched ``parse_args`` once the arguments parsed: the entry point stops."""

    def __init__(self, parser, namespace):
        super().__init__()
        self.parser, self.namespace = parser, namespace


class _NotInvocation(Exception):
    """A span naming a command without its required arguments."""


_real_parse_args = argparse.ArgumentParser.parse_args


def _stop_after_parsing(self, args=None, namespace=None):
    raise _Parsed(self, _real_parse_args(self, args, namespace))


def _parse(argv: List[str], inline: bool, monkeypatch) -> Tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Run the entry point of ``argv`` up to its ``parse_args``; the parser and namespace."""
    prog = argv[0]
    if inline and argv == ["python"]:
        raise _NotInvocation("python with no arguments")
    if prog == "deepsphere" and argv[1:2] and argv[1].startswith("-"):
        from deepsphere import cli

        entry = lambda: cli.build_parser().parse_args(argv[1:])  # noqa: E731
    elif prog == "deepsphere":
        from deepsphere import cli

        if len(argv) < 2 or argv[1] not in cli.COMMANDS:
            raise AssertionError(f"unknown command {argv[1:2]}; deepsphere has {', '.join(cli.COMMANDS)}")
        entry = lambda: cli.main(argv[1:])  # noqa: E731
    elif prog == "python" and argv[1:2] == ["-m"]:
        import importlib.util

        module = argv[2]
        if importlib.util.find_spec(module) is None:
            raise AssertionError(f"no module {module}")
        monkeypatch.setattr(sys, "argv", [module, *argv[3:]])
        entry = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    elif prog == "python":
        script = ROOT / argv[1]
        if not script.is_file():
            raise AssertionError(f"no script {argv[1]}")
        if not re.search(r"argparse|import main\b", script.read_text()):
            raise AssertionError(f"{argv[1]} reads no arguments with argparse: cannot check it "
                                 "without running it")
        monkeypatch.setattr(sys, "argv", [str(script), *argv[2:]])
        entry = lambda: runpy.run_path(str(script), run_name="__main__")  # noqa: E731
    else:
        raise AssertionError(f"no rule for {prog!r}")
    env = dict(os.environ)  # scripts may set OMP_NUM_THREADS when loaded
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", _stop_after_parsing)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # runpy: "found in sys.modules"
                entry()
    except _Parsed as p:
        return p.parser, p.namespace
    except SystemExit as e:
        if e.code == 0:  # --help
            return None, None
        message = err.getvalue().strip()
        first = 3 if argv[1:2] == ["-m"] else 2  # the arguments after the command
        missing = ("the following arguments are required", "expected one argument")
        if inline and any(m in message for m in missing) and \
                not [w for w in argv[first:] if not w.startswith("-")]:
            raise _NotInvocation(message) from None
        raise AssertionError(f"the arguments do not parse (exit {e.code}): {message}") from None
    finally:
        monkeypatch.undo()
        for key in set(os.environ) - set(env):
            del os.environ[key]
        os.environ.update(env)
    raise AssertionError("the entry point returned without parsing arguments with argparse")


def _config_path(name: str, cmd: DocCommand, tmp_path: Path) -> Path:
    if name in cmd.written:  # a config the page itself writes
        path = tmp_path / name
        path.write_text(cmd.written[name])
        return path
    path = ROOT / name
    if not path.is_file():
        raise AssertionError(f"config file {name} does not exist")
    return path


def _check_training_config(path: Path, overrides: List[str]) -> None:
    from deepsphere.training.config import load_config, validate

    validate(load_config(path, overrides))


def _check_equivariance_config(path: Path, ns: argparse.Namespace) -> None:
    """What ``deepsphere equivariance`` checks before its first sampling is built, then
    every sampling spec."""
    from deepsphere.equivariance import commands, sweep

    cfg = commands.load_config(path)
    for key in ("n_signals", "n_rotations", "protocol"):
        if getattr(ns, key, None) is not None:
            cfg[key] = getattr(ns, key)

    class _Stop(BaseException):
        pass

    def stop(spec):
        raise _Stop

    real = sweep.make_sampling
    sweep.make_sampling = stop
    try:
        sweep._run_sweep(cfg, log=lambda *a, **k: None)
    except _Stop:
        pass
    finally:
        sweep.make_sampling = real
    for spec in cfg["samplings"]:
        sweep.degrees_for(cfg, real(spec))
    for gs in cfg["graphs"]:  # the sweep learns of a wrong kind only when it builds the graph
        if gs["kind"] not in sweep.GRAPH_KINDS:
            raise ValueError(f"graph {gs['label']!r}: kind {gs['kind']!r} is not one of {sweep.GRAPH_KINDS}")


def _check_python_code(code: str) -> None:
    """``python -c CODE`` is not run (it is a measurement): it must compile, and the
    names it takes from deepsphere must exist."""
    import ast
    import importlib

    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise AssertionError(f"python -c: not valid Python ({e})") from None
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "deepsphere":
                    importlib.import_module(a.name)
                    if a.asname:
                        modules[a.asname] = importlib.import_module(a.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "deepsphere":
            module = importlib.import_module(node.module)
            for a in node.names:
                if not hasattr(module, a.name):
                    try:
                        importlib.import_module(f"{node.module}.{a.name}")
                    except ImportError:
                        raise AssertionError(f"python -c: {node.module} has no {a.name}") from None
                value = getattr(module, a.name, None) or importlib.import_module(f"{node.module}.{a.name}")
                if isinstance(value, type(importlib)):
                    modules[a.asname or a.name] = value
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules and not hasattr(modules[node.value.id], node.attr):
            raise AssertionError(f"python -c: {modules[node.value.id].__name__} has no {node.attr}")


def check(argv: List[str], cmd: DocCommand, tmp_path: Path) -> None:
    """Raise AssertionError saying what is stale in ``argv``; :class:`_NotInvocation` for a
    mention of a command; ``pytest.skip`` by the rules of the module docstring."""
    if argv[0] in SKIPPED:
        pytest.skip(f"{argv[0]}: {SKIPPED[argv[0]]}, not a deepsphere entry point")
    if argv[0] == "python" and argv[1:2] == ["-m"] and argv[2:3] and argv[2] in SKIPPED_MODULES:
        pytest.skip(f"python -m {argv[2]}: {SKIPPED_MODULES[argv[2]]}, not a deepsphere entry point")
    if argv[:2] == ["python", "-c"]:
        return _check_python_code(argv[2])
    with pytest.MonkeyPatch.context() as mp:
        parser, ns = _parse(argv, cmd.inline, mp)
    if parser is None:  # --help
        return
    if parser.prog == "deepsphere equivariance":
        _check_equivariance_config(_config_path(ns.config, cmd, tmp_path), ns)
    elif hasattr(ns, "config") and hasattr(ns, "overrides"):
        _check_training_config(_config_path(ns.config, cmd, tmp_path), ns.overrides)
    elif hasattr(ns, "config"):
        _config_path(ns.config, cmd, tmp_path)


def _cases():
    cases = []
    for doc in DOCS:
        for cmd in extract(doc):
            try:
                variants = expand(cmd)
            except (AssertionError, ValueError) as e:
                variants = [["<unexpandable>", str(e)]]
            for argv in variants:
                command = shlex.join(argv)
                marks = ()
                if (doc, command) in KNOWN_STALE:
                    marks = pytest.mark.xfail(strict=True, reason=KNOWN_STALE[(doc, command)])
                cases.append(pytest.param(cmd, argv, id=f"{doc}:{cmd.line}: {' '.join(command.split())}",
                                          marks=marks))
    return cases


CASES = _cases()


@pytest.mark.parametrize("cmd, argv", CASES)
def test_documented_command(cmd, argv, tmp_path):
    if argv[0] == "<unexpandable>":
        raise AssertionError(f"{cmd.file}:{cmd.line}: {cmd.text!r}: {argv[1]}")
    try:
        check(argv, cmd, tmp_path)
    except _NotInvocation:
        pytest.skip("names the command without its arguments: a reference, not an invocation")
    except AssertionError as e:
        raise AssertionError(f"{cmd.file}:{cmd.line}: {shlex.join(argv)}\n  {e}") from None
    except (ValueError, TypeError) as e:  # ConfigError and the equivariance checks
        raise AssertionError(f"{cmd.file}:{cmd.line}: {shlex.join(argv)}\n  {e}") from None


def test_extraction_finds_the_documented_commands():
    """The extraction rules still see the commands (a rule that silently stops matching
    would make every other case vacuous)."""
    found = {tuple(p.values[1][:2]) for p in CASES}
    assert ("deepsphere", "train") in found
    assert ("deepsphere", "equivariance") in found
    assert ("python", "-m") in found
    assert any(p.values[1][:2] == ["python", "scripts/benchmark.py"] for p in CASES)
    assert len(CASES) > 100, len(CASES)


def test_known_stale_entries_are_documented_commands():
    """Every KNOWN_STALE entry is still a command of its file (else drop it)."""
    ids = {(p.values[0].file, shlex.join(p.values[1])) for p in CASES}
    missing = [k for k in KNOWN_STALE if k not in ids]
    assert not missing, f"KNOWN_STALE entries no longer in the docs: {missing}"


def test_a_stale_command_is_caught(tmp_path):
    """The checks fail on a misspelled key, an unknown option, a missing config and a
    wrong variable: they are not vacuous."""
    def doc(text, variables=None, ellipsis=None, written=None):
        return DocCommand("x.md", 1, text, False, variables or {}, ellipsis, written or {})

    sweep = ("samplings: [{name: healpix, nside: 4}]\n"
             "graphs: [{label: k8, kind: knn, k: 8, kernel_widht: tuned}]\n")

    bad = [  # (command, what the failure must say)
        (doc("deepsphere train configs/quickstart.yaml --set trainer.epoch=3"), "trainer.epoch: unknown key"),
        (doc("deepsphere train configs/quickstart.yaml --set model.chanels=[8,16]"),
         "model.chanels: unknown"),
        (doc("deepsphere train configs/no_such.yaml"), "does not exist"),
        (doc("deepsphere evaluate runs/quickstart --split testing"), "invalid choice: 'testing'"),
        (doc("deepsphere equivariance configs/equivariance_healpix.yaml --n-signalz 2"),
         "unrecognized arguments: --n-signalz"),
        (doc("deepsphere equivariance sweep.yaml", written={"sweep.yaml": sweep}), "kernel_widht"),
        (doc("deepsphere equivariance sweep.yaml",
             written={"sweep.yaml": sweep.replace("widht", "width").replace("nside: 4", "nsid: 4")}),
         "'nsid'"),
        (doc("deepsphere equivariance sweep.yaml",
             written={"sweep.yaml": sweep.replace("widht", "width").replace("knn", "kNN")}),
         "kind 'kNN'"),
        (doc("python -m deepsphere.data.cosmology configs/cosmology_graph.yaml --psd round"),
         "invalid choice: 'round'"),
        (doc("python -m deepsphere.data.cosmology configs/cosmology_graph.yaml $D",
             {"D": "--set data.nosie=1.0"}), "data.nosie: unknown key"),
        (doc("python scripts/benchmark.py --quik"), "unrecognized arguments: --quik"),
        (doc("python scripts/no_such.py"), "no script"),
        (doc("deepsphere benchmark-scale spmm --nside 100"), "nside=100 is not a valid"),
        (doc("deepsphere train configs/quickstart.yaml $E"), r"\$E is not defined"),
        (doc("OMP_NUM_THREADS=1 python -c 'from deepsphere.sampling import HEALPx'"), "has no HEALPx"),
        (doc("python -c 'from deepsphere.data import climate as C; C.LatLonRegriddr'"),
         "has no LatLonRegriddr"),
        (doc("python -c 'import deepsphere.sampling as S; S.HEALPix(4'"), "not valid Python"),
    ]
    for cmd, message in bad:
        with pytest.raises((AssertionError, ValueError), match=message):
            for argv in expand(cmd):
                check(argv, cmd, tmp_path)
    good = doc("deepsphere train configs/quickstart.yaml ... --set model.channels=[8,16]",
               ellipsis="--set trainer.epochs=3")
    (argv,) = expand(good)
    assert argv[3:] == ["--set", "trainer.epochs=3", "--set", "model.channels=[8,16]"]
    check(argv, good, tmp_path)


def test_expansion_rules():
    cmd = DocCommand("x.md", 1, "deepsphere train configs/cosmology_graph.yaml $D "
                     "[--set model.head=fc] --set graph.k=8|20", False,
                     {"D": "--set data.noise=N --set trainer.seed=S"}, None, {})
    got = {shlex.join(a) for a in expand(cmd)}
    base = "deepsphere train configs/cosmology_graph.yaml --set data.noise=1.0 --set trainer.seed=0"
    assert got == {f"{base}{opt} --set graph.k={k}"
                   for opt in ("", " --set model.head=fc") for k in (8, 20)}
    cmd = DocCommand("x.md", 1, "deepsphere benchmark-scale {spmm,unet}", False, {}, None, {})
    assert [a[2] for a in expand(cmd)] == ["spmm", "unet"]
