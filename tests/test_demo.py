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
    for args, message in ((["--nside", "3"], "nside=3 is not a valid HEALPix resolution"),
                          (["--k", "0"], "k must be a positive integer"),
                          (["--epochs", "0"], "--epochs must be >= 1"),
                          # were numpy's "expected non-negative integer", and the model's
                          # "Give at most 0 entries in channels" after step 1 had run
                          (["--seed", "-1"], "--seed must be >= 0"),
                          (["--nside", "2"], "--nside must be at least 4"),
                          (["--nside", "1"], "--nside must be at least 4")):
        assert main(["demo", *args]) == 2
        out, err = capsys.readouterr()
        assert err.startswith("error: ") and message in err and "Traceback" not in err
        assert "[1]" not in out  # refused before any step ran


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
