"""The search benchmark's report: anytime targets, latency errors against test-retest noise, and the markdown, on
synthetic rows (the benchmark itself runs with `make bench-search`)."""

from __future__ import annotations

import importlib
import os

import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(SCRIPTS)
    return importlib.import_module("bench_search")


def run_row(strategy, seed, curve):
    return {"strategy": strategy, "seed": seed, "curve": curve, "front_size": 3, "wall_seconds": 10.0,
            "measuring_seconds": 8.0, "overhead_seconds": 2.0, "records": []}  # fmt: skip


def test_evaluations_to_reach_random_search(bench):
    runs = {
        "random": [run_row("random", 0, [0.1, 0.2, 0.3, 0.4]), run_row("random", 1, [0.1, 0.2, 0.2, 0.2])],
        "linas": [run_row("linas", 0, [0.1, 0.3, 0.35, 0.5]), run_row("linas", 1, [0.1, 0.1, 0.2, 0.25])],
    }
    summary = bench.search_summary(runs, 4)
    assert summary["random_final_mean"] == pytest.approx(0.3)
    linas = summary["strategies"]["linas"]
    assert linas["evaluations_to_random_final"] == [2, None] and linas["evaluations_to_random_final_mean"] is None
    assert linas["final_mean"] == pytest.approx(0.375) and linas["at_half_mean"] == pytest.approx(0.2)
    assert summary["strategies"]["random"]["evaluations_to_random_final"] == [3, None]


def test_latency_errors_are_against_the_first_measurement(bench):
    row = {
        "batch_size": 8, "scale": 1.1, "offset": 0.5, "reference_baseline_ms": 100.0, "correction_subnets": 12,
        "table_build_seconds": 3.0, "predicted_ms": [10.5, 19.0],
        "test": [{"corrected_ms": 10.0, "raw_ms": 12.0}, {"corrected_ms": 20.0, "raw_ms": 25.0}],
        "retest": [{"corrected_ms": 10.2, "raw_ms": 11.0}, {"corrected_ms": 19.0, "raw_ms": 20.0}],
        "correction_fit": [{"predicted_ms": 30.0, "measured_ms": 30.0}],
    }  # fmt: skip
    summary = bench.latency_summary(row)
    assert summary["predictor_error"]["median"] == pytest.approx(0.05)  # |10.5 - 10| / 10 and |19 - 20| / 20
    assert summary["test_retest_error"]["median"] == pytest.approx((0.02 + 0.05) / 2)
    assert summary["error_vs_noise"] == pytest.approx(0.05 / 0.035)
    assert summary["predictor_error_raw"]["median"] == pytest.approx((1.5 / 12 + 6 / 25) / 2)
