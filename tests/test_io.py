"""Atomic writes: a failed write leaves the old file whole and no temporary behind."""
import pytest

from deepsphere.data.stations import write_dly
from deepsphere.io import atomic_path


def test_atomic_path_replaces_on_success_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".csv"
        tmp.write_text("new\n")
    assert target.read_text() == "new\n" and list(tmp_path.iterdir()) == [target]


def test_write_dly_append_keeps_earlier_lines(tmp_path):
    import numpy as np

    p = tmp_path / "X.dly"
    d1 = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-03"))
    d2 = np.arange(np.datetime64("2020-02-01"), np.datetime64("2020-02-03"))
    write_dly(p, "USW00000001", "TMAX", d1, np.array([1.0, 2.0]))
    first = p.read_text()
    write_dly(p, "USW00000001", "TMAX", d2, np.array([3.0, 4.0]), mode="a")
    text = p.read_text()
    assert text.startswith(first) and text.count("\n") == 2


def test_atomic_path_keeps_permissions(tmp_path):
    # mkstemp makes 0600 files: every output was private, and a replaced file lost its mode
    import os
    import stat

    from deepsphere.io import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text("new\n", tmp_path / "new.txt")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
        old = tmp_path / "old.txt"
        old.write_text("old\n")
        old.chmod(0o640)
        atomic_write_text("new\n", old)
        assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "new\n"
    finally:
        os.umask(umask)


def test_atomic_path_writes_through_a_symbolic_link(tmp_path):
    """A link (config.yaml -> shared/config.yaml) was replaced by a regular file: the target
    kept its old content and the link was gone. Writing through it, like open(path, 'w'),
    keeps the link, updates the target in place of its own name and keeps its mode."""
    import os
    import stat

    from deepsphere.io import atomic_write_text

    real_dir = tmp_path / "shared"
    real_dir.mkdir()
    target = real_dir / "out.txt"
    target.write_text("old\n")
    target.chmod(0o640)
    link_dir = tmp_path / "run"
    link_dir.mkdir()
    link = link_dir / "out.txt"
    link.symlink_to(os.path.relpath(target, link_dir))
    with atomic_path(link) as tmp:
        assert tmp.parent == real_dir  # the temporary file sits beside the target
        tmp.write_text("new\n")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text() == "new\n" and link.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in real_dir.iterdir()) == ["out.txt"]
    assert sorted(p.name for p in link_dir.iterdir()) == ["out.txt"]
    # a chain of links and a link to a file that does not exist yet (open() creates it)
    chain = tmp_path / "chain.txt"
    chain.symlink_to(link)
    atomic_write_text("newer\n", chain)
    assert chain.is_symlink() and link.is_symlink() and target.read_text() == "newer\n"
    dangling = tmp_path / "later.txt"
    dangling.symlink_to(real_dir / "later.txt")
    atomic_write_text("first\n", dangling)
    assert dangling.is_symlink() and (real_dir / "later.txt").read_text() == "first\n"
    # a loop of links is refused, as open() refuses it, and nothing is replaced
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(OSError, match="loop"):
        atomic_write_text("x\n", tmp_path / "a")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()
