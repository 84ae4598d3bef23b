"""The CUDA benchmark: its CPU-runnable parts, its refusals, and (on a GPU) a smoke run."""
import json

import pytest
import torch

from deepsphere import benchmark_gpu as bg


def test_shrec_size_classifier_has_the_published_parameter_count():
    # DeepSphere's SHREC'17 classifier: nside 32, 6 channels in, 55 classes, 16-32-64-128-256, K=4
    rows = bg.inference_rows(torch.device("cpu"), [2], repeats=1)
    assert rows[0]["params"] == 189_591
    assert rows[0]["ms_per_sample"] == pytest.approx(rows[0]["median_ms"] / 2)


def test_non_cuda_device_is_refused_except_for_inference(capsys):
    assert bg.main(["spmm", "--device", "cpu"]) == 2
    assert "not a CUDA device" in capsys.readouterr().err


def test_inference_runs_on_cpu_and_writes_json(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert bg.main(["inference", "--device", "cpu", "--inference-batch", "1", "--repeats", "1",
                    "--json", str(out)]) == 0
    assert "SHREC-size classifier" in capsys.readouterr().out
    assert json.loads(out.read_text())["inference"][0]["batch"] == 1


def test_rows_that_did_not_fit_are_reported_not_fatal():
    # an 80 GB card cannot hold nside 1024 at B·F = 1024 (103 GB) or the float32 layer (86 GB):
    # those rows say so and the table goes on
    spmm = bg.format_spmm([dict(nside=1024, n=12, nnz=99, columns=1024,
                                error="needs 103 GB, 78 GB free"),
                           dict(nside=1024, n=12, nnz=99, columns=256, MB=2.0, best_ms=1.0,
                                median_ms=1.5, GBps=1000.0, fraction=0.5)])
    assert "not run: needs 103 GB, 78 GB free" in spmm and "| 50 % |" in spmm
    conv = bg.format_conv([dict(nside=1024, n=12, dtype="float32",
                                error="out of memory on a 79 GiB device")])
    assert "not run: out of memory" in conv


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_smoke(tmp_path):
    out = tmp_path / "gpu.json"
    assert bg.main(["all", "--nside", "4", "8", "--columns", "8", "--batch", "2",
                    "--triad-elements", "100000", "--inference-batch", "1", "--repeats", "2",
                    "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {"bandwidth", "spmm", "conv", "inference"} <= set(rows)


def test_benchmark_script_runs_a_part_and_skips_gpu_without_cuda(capsys):
    import runpy
    from pathlib import Path

    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "benchmark.py"))
    parts = ["scale"] + ([] if torch.cuda.is_available() else ["gpu"])
    assert script["main"](["--quick", "--only", *parts]) == 0
    out = capsys.readouterr().out
    assert "# scale: exit 0" in out
    if not torch.cuda.is_available():
        assert "# gpu: skipped (no CUDA device)" in out


def test_plot_scaling_script_fits_and_draws(tmp_path, capsys):
    import runpy
    from pathlib import Path

    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "plot_scaling.py"))
    fig, rows = tmp_path / "scaling.png", tmp_path / "scaling.json"
    assert script["main"](["--max-nside", "32", "--max-sht-nside", "16", "--fit-min-nside", "16",
                           "--figure", str(fig), "--json", str(rows)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(rows.read_text())
    assert [r["nside"] for r in data["conv"]] == [16, 32]
    assert "torch_s" in data["sht"][0] and "torch_s" not in data["sht"][1]
    assert "ChebConv forward, CPU: q =" in capsys.readouterr().out


def test_plot_scaling_refuses_an_nside_that_is_not_a_power_of_two(capsys):
    import runpy
    from pathlib import Path

    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "plot_scaling.py"))
    with pytest.raises(SystemExit):
        script["main"](["--max-nside", "300"])
    assert "--max-nside must be a power of two >= 16" in capsys.readouterr().err


def test_no_measurement_named_means_all(capsys):
    # the default was refused by argparse ("invalid choice: ['all']"): the command needed a name
    assert bg.main(["--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "not a CUDA device" in err and "invalid choice" not in err


@pytest.mark.parametrize("command, option", [("benchmark", "--nside"), ("benchmark", "--graph-nside"),
                                             ("benchmark-scale", "--spmm-nside"),
                                             ("benchmark-scale", "--nside"),
                                             ("benchmark-scale", "--unet-nside"),
                                             ("benchmark-gpu", "--nside")])
def test_benchmarks_refuse_a_bad_nside_when_reading_arguments(command, option, capsys):
    # were tracebacks from check_nside once the run had started (the bandwidth table printed)
    from deepsphere.cli import main

    with pytest.raises(SystemExit) as e:
        main([command, option, "3"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert f"argument {option}" in err and "nside=3 is not a valid HEALPix resolution" in err
    assert out == "" and "Traceback" not in err
    with pytest.raises(SystemExit):
        main([command, option, "x"])
    assert "invalid nside 'x'" in capsys.readouterr().err


def test_a_named_cuda_device_becomes_the_current_one(monkeypatch):
    # CUDA events, synchronize() and the peak-memory counters act on the current device:
    # without this, --device cuda:1 timed kernels on device 1 with events on device 0
    made_current = []

    class Stop(Exception):
        pass

    def device_name(device):
        raise Stop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    monkeypatch.setattr(bg, "device_name", device_name)
    with pytest.raises(Stop):
        bg.main(["bandwidth", "--device", "cuda:1"])
    assert made_current == [torch.device("cuda:1")]
