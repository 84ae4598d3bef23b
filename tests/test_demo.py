"""The demo's graph heat filter is a low-pass, measured with healpy's harmonic transform."""
import pytest

from deepsphere.cli import main
from deepsphere.demo import heat_filter_demo


def test_graph_heat_filter_is_low_pass():
    low, mid, high = heat_filter_demo(nside=8, k=8, seed=0)
    assert low > 0.9 and high < 0.05 and low > mid > high


def test_cli_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "evaluate", "equivariance", "benchmark", "demo"):
        assert cmd in out


def test_bad_arguments_get_one_line(capsys):
    # were tracebacks (nside, k) or a test accuracy without training (epochs 0)
    for args, message in ((["--k", "0"], "k must be a positive integer"),
                          (["--epochs", "0"], "--epochs must be >= 1"),
                          # were numpy's "expected non-negative integer"
                          (["--seed", "-1"], "--seed must be >= 0")):
        assert main(["demo", *args]) == 2
        out, err = capsys.readouterr()
        assert err.startswith("error: ") and message in err and "Traceback" not in err
        assert "[1]" not in out  # refused before any step ran


def test_demo_nside_is_checked_when_the_arguments_are_read(capsys):
    """--nside 8192 was accepted: the demo keeps 650 maps in memory (2 TB at nside 8192) and
    its graph alone would not fit; nside 2 gave the model's "Give at most 0 entries in
    channels" after step 1 had run. Both are now usage errors that say the valid range."""
    from deepsphere.demo import MAX_DEMO_NSIDE

    assert MAX_DEMO_NSIDE == 128
    for nside, message in (("3", "nside=3 is not a valid HEALPix resolution"),
                           ("2", "must be at least 4: the demo's classifier pools twice"),
                           ("1", "must be at least 4"),
                           ("256", "at most 128"),
                           ("8192", "at most 128"),
                           ("16384", "not a valid HEALPix resolution"),
                           ("many", "not an integer")):
        with pytest.raises(SystemExit) as e:
            main(["demo", "--nside", nside])
        assert e.value.code == 2
        out, err = capsys.readouterr()
        assert "[1]" not in out and "Traceback" not in err
        assert f"deepsphere demo: error: argument --nside: " in err and message in err, err
    with pytest.raises(SystemExit):
        main(["demo", "--nside", "8192"])
    err = capsys.readouterr().err
    assert "memory" in err and "deepsphere train" in err  # why, and what to do instead
    # run() called without the parser (a script building its own Namespace) refuses too
    import argparse

    from deepsphere import demo

    assert demo.run(argparse.Namespace(nside=512, k=8, epochs=1, seed=0)) == 2
    assert "at most 128" in capsys.readouterr().err


def test_every_option_of_demo_and_equivariance_says_what_it_does():
    import argparse

    from deepsphere import demo
    from deepsphere.equivariance import commands

    for module in (demo, commands):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        for action in parser._actions:
            assert action.help, f"{module.__name__}: {action.option_strings or action.dest} has no help"


def test_every_command_option_has_help_and_counts_are_checked(capsys):
    """Each option of each subcommand says what it does in --help; a count of 0 (repeats,
    threads, channels, ...) or a negative limit is refused when the arguments are read."""
    import argparse

    from deepsphere.cli import COMMANDS, _load

    silent = []
    for command in COMMANDS:
        parser = argparse.ArgumentParser()
        _load(command).add_arguments(parser)
        silent += [f"{command} {a.option_strings or a.dest}" for a in parser._actions
                   if a.help is None and not isinstance(a, argparse._HelpAction)]
    assert not silent, silent
    for argv, option in ((["benchmark-scale", "spmm", "--repeats", "0"], "--repeats"),
                         (["benchmark", "--threads", "0"], "--threads"),
                         (["benchmark-gpu", "--columns", "64", "-3"], "--columns"),
                         (["benchmark", "--max-seconds", "-1"], "--max-seconds"),
                         (["benchmark-scale", "unet", "--unet-batch", "two"], "--unet-batch")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert f"argument {option}:" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys):
    """Plain ``deepsphere`` printed the help and exited 0, so a script that lost its command
    word (``deepsphere $CMD`` with CMD unset) looked successful; argparse's convention for a
    missing required argument is the usage line, one error line on stderr, and status 2."""
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: deepsphere")
    last = err.strip().splitlines()[-1]
    assert last.startswith("deepsphere: error: a command is required") and "demo" in last
    # --help still prints the help on stdout and succeeds
    assert main(["--help"]) == 0
    assert "COMMAND" in capsys.readouterr().out
