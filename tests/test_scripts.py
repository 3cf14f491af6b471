"""The scripts run end to end on the shipped SST-2 sample with the real MiniLM checkpoint (a few steps each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "data", "sst2_sample.tsv")
DEV = os.path.join(ROOT, "data", "sst2_sample_dev.tsv")
COMMON = ["--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "--seed", "0"]


def run(script: str, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_train_supernet_then_distill_then_fine_tune_a_distilled_supernet(tmp_path):
    out = tmp_path / "supernet"
    run(
        "train_supernet.py",
        "--train_file",
        TRAIN,
        "--validation_file",
        DEV,
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--do_train",
        "--do_eval",
        "--max_eval_samples",
        "32",
        "--max_seq_length",
        "32",
        "--importance_batches",
        "1",
        *COMMON,
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "elastic_bert" and "search_space" in config
    assert (out / "tokenizer.json").is_file()
    metrics = json.loads((out / "eval_results.json").read_text())
    assert {"eval_largest_accuracy", "eval_middle_accuracy", "eval_smallest_accuracy"} <= set(metrics)

    distilled = tmp_path / "distilled"
    run(
        "distill_supernet.py",
        "--text_file",
        TRAIN,
        "--output_dir",
        str(distilled),
        "--max_steps",
        "1",
        "--max_samples",
        "16",
        "--max_seq_length",
        "32",
        "--save_strategy",
        "no",
        *COMMON,
    )
    tiny = json.loads((distilled / "tiny" / "config.json").read_text())["search_space"]
    base = json.loads((distilled / "base" / "config.json").read_text())["search_space"]
    assert max(tiny["hidden_size"]) < min(base["hidden_size"])

    tuned = tmp_path / "tuned"
    run(
        "train_supernet.py",
        "--model_name_or_path",
        str(distilled / "tiny"),
        "--train_file",
        TRAIN,
        "--output_dir",
        str(tuned),
        "--max_steps",
        "1",
        "--do_train",
        "--max_seq_length",
        "32",
        "--save_strategy",
        "no",
        *COMMON,
    )
    assert json.loads((tuned / "config.json").read_text())["search_space"] == tiny


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_the_reloaded_subnet_reproduces_its_accuracy(tmp_path):
    out = tmp_path / "demo"
    output = run(
        "demo.py",
        "--output_dir",
        str(out),
        "--importance_batches",
        "1",
        "--max_steps",
        "3",
        "--num_evaluations",
        "8",
        "--latency_min_run_time",
        "0.05",
        "--mac_budget",
        "0.9",
    )
    assert "Pareto front:" in output and "Reloaded with plain transformers" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reloaded_accuracy"] == pytest.approx(summary["recorded_accuracy"])
    for name in ("config.json", "README.md", "tokenizer.json"):
        assert (out / "subnet" / name).is_file()
    for name in ("search_results.json", "pareto.csv", "pareto.png"):
        assert (out / "search" / name).is_file()
