"""scripts/bench_compress.py: it parses its command line, says how to make the supernet it starts from when that is
missing, and assembles the report (selection on validation, intervals, target verdicts) from finished rows."""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest

from .test_bench_scripts import SCRIPTS


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(SCRIPTS)
    return importlib.import_module("bench_compress")


def small_args(bench, tmp_path, *extra: str):
    argv = [
        "bench_compress.py", "--work_dir", str(tmp_path / "work"), "--supernet_work_dir", str(tmp_path / "supernet"),
        "--output_dir", str(tmp_path / "out"), "--train_samples", "8", "--validation_samples", "4",
        "--dev_samples", "6", *extra,
    ]  # fmt: skip
    sys.argv = argv
    return bench.parse_args(bench.CompressBenchArguments)


def test_it_parses_its_command_line(bench, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_compress.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--supernet_work_dir" in out and "--jackpot_learning_rates" in out and "--torchao_path" in out


def test_a_missing_supernet_says_how_to_make_it(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", sys.argv)
    args = small_args(bench, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"make bench-supernet.*--supernet_work_dir"):
        bench.CompressBench(args).subnet()


def test_the_report_selects_on_validation_and_judges_the_targets(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", sys.argv)
    args = small_args(bench, tmp_path, "--sparsities", "0.7", "--bits", "4", "--jackpot_learning_rates", "1e-4,2e-4")
    b = bench.CompressBench(args)
    rows = b.rows
    dev = [1, 1, 1, 1, 1, 0]
    rows.put(
        "subnet",
        {
            "subnet": {
                "layers": [0, 1],
                "num_attention_heads": [2, 2],
                "intermediate_size": [8, 8],
                "hidden_size": 8,
                "num_hidden_layers": 2,
            },
            "mac_ratio": 0.49,
            "class": "X",
        },
    )
    rows.put("dense", {"validation": [1, 1, 0, 0], "dev": dev})
    rows.put("magnitude_0.7", {"validation": [0, 0, 0, 0], "dev": [0, 0, 1, 1, 1, 0], "sparsity": 0.7})
    rows.put("magnitude_ft_0.7_5e-05", {"validation": [1, 0, 0, 0], "dev": [1, 1, 1, 0, 0, 0], "train_seconds": 3.0})
    rows.put(
        "jackpot_0.7_0.0001",
        {"validation": [1, 1, 1, 0], "dev": dev, "train_seconds": 2.0, "mask_changed_vs_magnitude": 0.01},
    )
    rows.put(
        "jackpot_0.7_0.0002",
        {"validation": [1, 0, 0, 0], "dev": [0] * 6, "train_seconds": 2.0, "mask_changed_vs_magnitude": 0.02},
    )
    rows.put("uniform_4", {"validation": [1, 0, 0, 0], "dev": [1, 0, 0, 0, 0, 0]})
    rows.put("nupes_4_channel", {"validation": [1, 1, 0, 0], "dev": dev})
    rows.put(
        "onnx_accuracy",
        {
            "export": {"exporter": "torchscript", "opset": 17, "max_abs_diff": 1e-6},
            "fp32": {"validation": [1] * 4, "dev": dev},
            "int8": {"validation": [1] * 4, "dev": dev},
        },
    )
    timing = {
        "pytorch_fp32": {"median_ms": 10.0},
        "onnxruntime_fp32": {"median_ms": 5.0},
        "onnxruntime_int8": {"median_ms": 4.0},
    }
    rows.put(
        "onnx_latency", {"num_threads": 2, "sequence_length": 128, "batch_1": dict(timing), "batch_8": dict(timing)}
    )
    # fmt: skip
    result = bench.report(b, args)
    point = result["sparsity"][0]
    assert point["jackpot"]["selected"] == 1e-4 and point["jackpot"]["dev"] == pytest.approx(500 / 6)  # by validation
    assert point["jackpot_minus_magnitude_finetuned"]["diff"] == pytest.approx(100 * 2 / 6)
    assert result["quantization"][0]["nupes"]["selected"] == "channel"
    assert result["onnx"]["latency"]["batch_1"]["speedup_vs_pytorch_fp32"]["onnxruntime_int8"] == 2.5
    markdown = bench.render_markdown(result)
    assert "| ONNX Runtime int8 >= 2x faster than PyTorch fp32 at batch 1 | 2.50x | met |" in markdown
    assert "| jackpots at 70% within 1 point of dense | +0.00 [+0.00, +0.00] | met |" in markdown
    json.dumps(result)  # JSON-ready
    assert not os.path.exists(tmp_path / "out")  # the report is written by main, not here


def test_a_report_name_writes_its_own_files_and_refuses_a_path(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", sys.argv)
    args = small_args(bench, tmp_path, "--sparsities", "0.7", "--jackpot_learning_rates", "1e-4")
    rows = bench.CompressBench(args).rows
    subnet = {"layers": [0], "num_attention_heads": [2], "intermediate_size": [8], "hidden_size": 8}
    rows.put("subnet", {"subnet": {**subnet, "num_hidden_layers": 1}, "mac_ratio": 0.5, "class": "X"})
    rows.put("dense", {"validation": [1, 1, 0, 0], "dev": [1, 1, 1, 1, 1, 0]})
    rows.put("magnitude_0.7", {"validation": [0] * 4, "dev": [0, 0, 1, 1, 1, 0], "sparsity": 0.7})
    jackpot = {"validation": [1, 1, 1, 0], "dev": [1] * 6, "train_seconds": 2.0, "mask_changed_vs_magnitude": 0.01}
    rows.put("jackpot_0.7_0.0001", jackpot)
    small_args(bench, tmp_path, "--sparsities", "0.7", "--jackpot_learning_rates", "1e-4", "--rows", "report",
               "--report_name", "compress_long")  # fmt: skip
    bench.main()
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["compress_long.json", "compress_long.md"]
    assert json.loads((out / "compress_long.json").read_text())["sparsity"][0]["jackpot"]["dev"] == 100.0
    small_args(bench, tmp_path, "--rows", "report", "--report_name", "../elsewhere")
    with pytest.raises(ValueError, match="--report_name must be a plain file name"):
        bench.main()


@pytest.mark.parametrize(
    "name, shown, absent",
    [
        ("compress", ("## Sparsity", "## Quantization"), ()),
        ("compress_long", ("## Sparsity",), ("## Quantization",)),
        ("compress_e2e", ("## Quantization",), ("## Sparsity",)),
    ],
)
def test_a_report_shows_only_the_tables_its_run_measured(bench, name, shown, absent):
    """The published reports, rendered from their JSON: a run without the sparsity (or quantization) rows prints no
    empty table for them, and the end-to-end settings are named where they were used."""
    with open(os.path.join(os.path.dirname(SCRIPTS), "docs", "benchmarks", f"{name}.json")) as f:
        markdown = bench.render_markdown(json.load(f))
    assert all(heading in markdown for heading in shown)
    assert not any(heading in markdown for heading in absent)
    assert ("end-to-end distillation steps" in markdown) == (name == "compress_e2e")
