"""The demo's graph heat filter is a low-pass, measured with healpy's harmonic transform."""
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
                          (["--epochs", "0"], "--epochs must be >= 1")):
        assert main(["demo", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
