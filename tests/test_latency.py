"""Latency protocol: warm-up, rounds until the spread is small, the least noisy round kept, noisy results flagged or
refused, milliseconds everywhere, and one function (`measure_latency`) behind the search objective and the model card.

The timings are scripted (a fake `torch.utils.benchmark.Timer`, or fake rounds): no test reads a clock or asserts a
duration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from torch.utils.benchmark import Measurement
from torch.utils.benchmark.utils.common import TaskSpec

import hf_nas
from hf_nas import costs
from hf_nas.commands import extract as extract_command
from hf_nas.costs import (
    DEFAULT_MAX_RELATIVE_IQR,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_WARMUP_RUNS,
    LatencyResult,
    NoisyLatencyError,
    measure_latency,
    time_forward,
)
from hf_nas.search import objectives
from hf_nas.search.objectives import LatencyObjective

from .conftest import make_supernet

SEQ = 8
TIGHT = costs._Round(median_ms=7.0, iqr_ms=0.35, num_runs=50)  # IQR 5% of the median
WIDE = [  # IQR 90%, 50% and 70% of the median: all above the default 25%
    costs._Round(median_ms=152.0, iqr_ms=136.8, num_runs=7),
    costs._Round(median_ms=9.0, iqr_ms=4.5, num_runs=40),
    costs._Round(median_ms=30.0, iqr_ms=21.0, num_runs=20),
]


@pytest.fixture(scope="module")
def supernet():
    return make_supernet("BertForSequenceClassification")


class ScriptedRounds:
    """Stands in for `costs._time_round`: returns the scripted rounds in order (the last one again when they run
    out) and records each call's `min_run_time`."""

    def __init__(self, rounds: list[costs._Round]):
        self.rounds = list(rounds)
        self.calls: list[float] = []

    def __call__(self, timer, min_run_time: float) -> costs._Round:
        self.calls.append(min_run_time)
        return self.rounds[min(len(self.calls), len(self.rounds)) - 1]


@pytest.fixture
def script(monkeypatch) -> Iterator[callable]:
    def install(rounds: list[costs._Round]) -> ScriptedRounds:
        scripted = ScriptedRounds(rounds)
        monkeypatch.setattr(costs, "_time_round", scripted)
        return scripted

    yield install


# ----------------------------------------------------------------------------------------------------------------
# one round: blocks of a fake Timer
class FakeTimer:
    """`blocked_autorange` returns `first` (seconds per block of `number` passes); each `timeit(number)` the next of
    `more`."""

    def __init__(self, number: int, first: list[float], more: list[float]):
        self.number, self.first, self.more = number, first, list(more)
        self.timeit_calls: list[int] = []

    def blocked_autorange(self, min_run_time: float) -> Measurement:
        return Measurement(self.number, self.first, TaskSpec("model(**inputs)", "pass"))

    def timeit(self, number: int) -> Measurement:
        self.timeit_calls.append(number)
        return Measurement(number, [self.more.pop(0)], TaskSpec("model(**inputs)", "pass"))


def test_a_round_tops_up_to_five_blocks_of_the_same_size_and_reads_median_and_iqr():
    # per-pass times (s): 0.001, 0.002 from blocked_autorange, then 0.003, 0.004, 0.005
    timer = FakeTimer(10, [0.01, 0.02], [0.03, 0.04, 0.05])
    measured = costs._time_round(timer, min_run_time=0.1)
    assert timer.timeit_calls == [10, 10, 10]
    assert measured.num_runs == 50
    assert measured.median_ms == pytest.approx(3.0)
    assert measured.iqr_ms == pytest.approx(2.0)  # quartiles 2 ms and 4 ms (linear interpolation)
    assert measured.relative_iqr == pytest.approx(2.0 / 3.0)


def test_a_round_of_enough_blocks_times_no_more():
    timer = FakeTimer(1, [0.004, 0.005, 0.005, 0.005, 0.006, 0.005], [])
    measured = costs._time_round(timer, min_run_time=0.1)
    assert timer.timeit_calls == [] and measured.num_runs == 6
    assert measured.median_ms == pytest.approx(5.0) and measured.iqr_ms == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------------------------------
# rounds and the spread check
def test_a_tight_spread_is_accepted_on_the_first_round(supernet, script):
    scripted = script([TIGHT])
    result = measure_latency(supernet, supernet.search_space.smallest(), sequence_length=SEQ, min_run_time=0.2)
    assert scripted.calls == [0.2]
    assert (result.median_ms, result.iqr_ms, result.num_runs) == (7.0, 0.35, 50)
    assert result.rounds == 1 and not result.noisy
    data = result.to_dict()
    assert data["unit"] == "ms" and data["noisy"] is False and data["rounds"] == 1
    assert data["max_relative_iqr"] == DEFAULT_MAX_RELATIVE_IQR and data["warmup_runs"] == DEFAULT_WARMUP_RUNS


def test_a_wide_spread_is_measured_again_until_tight(supernet, script):
    scripted = script([WIDE[0], TIGHT])
    result = measure_latency(supernet, sequence_length=SEQ, min_run_time=0.2)
    assert len(scripted.calls) == 2
    assert result.rounds == 2 and not result.noisy and result.median_ms == TIGHT.median_ms


def test_a_spread_that_stays_wide_is_flagged_with_the_least_noisy_round(supernet, script, caplog):
    scripted = script(WIDE)
    with caplog.at_level(logging.WARNING, logger="hf_nas.costs"):
        result = measure_latency(supernet, sequence_length=SEQ, min_run_time=0.2)
    assert len(scripted.calls) == DEFAULT_MAX_ROUNDS == 3
    assert result.noisy and result.rounds == 3
    assert (result.median_ms, result.iqr_ms) == (9.0, 4.5)  # the round with IQR 50% of the median, not 90% or 70%
    assert result.to_dict()["noisy"] is True
    assert "noisy" in caplog.text and "50%" in caplog.text and "max_relative_iqr=0.25" in caplog.text


def test_a_spread_that_stays_wide_is_refused_on_request(supernet, script):
    script(WIDE)
    with pytest.raises(NoisyLatencyError, match=r"50% of its median.*3 rounds \(max_relative_iqr=0.25\)") as info:
        measure_latency(supernet, sequence_length=SEQ, min_run_time=0.2, on_noisy="raise")
    assert info.value.result.noisy and info.value.result.median_ms == 9.0


def test_the_thresholds_are_options(supernet, script):
    scripted = script(WIDE)
    result = measure_latency(supernet, sequence_length=SEQ, min_run_time=0.2, max_rounds=5)
    assert len(scripted.calls) == 5 and result.rounds == 5 and result.noisy
    scripted = script(WIDE)
    result = measure_latency(supernet, sequence_length=SEQ, min_run_time=0.2, max_relative_iqr=0.95)
    assert len(scripted.calls) == 1 and not result.noisy and result.max_relative_iqr == 0.95
    scripted = script(WIDE)
    result = measure_latency(supernet, sequence_length=SEQ, min_run_time=0.2, max_relative_iqr=float("inf"))
    assert len(scripted.calls) == 1 and not result.noisy


@pytest.mark.parametrize("warmup_runs", [0, 2, DEFAULT_WARMUP_RUNS])
def test_warm_up_passes_run_before_the_first_round(supernet, monkeypatch, warmup_runs):
    model = supernet.extract_subnet(supernet.search_space.smallest())
    forwards = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: forwards.append(torch.is_grad_enabled()), with_kwargs=True
    )
    seen_at_first_round = []

    def first_round(timer, min_run_time):
        seen_at_first_round.append(len(forwards))
        return TIGHT

    monkeypatch.setattr(costs, "_time_round", first_round)
    result = time_forward(model, batch_size=1, sequence_length=SEQ, warmup_runs=warmup_runs)
    assert seen_at_first_round == [warmup_runs] and result.warmup_runs == warmup_runs
    assert not any(forwards)  # under torch.no_grad


# ----------------------------------------------------------------------------------------------------------------
# the result: milliseconds, and dicts saved before the spread check still load
def test_old_latency_dicts_load_and_other_units_are_refused():
    old = {"median_ms": 7.0, "iqr_ms": 0.5, "device": "cpu", "batch_size": 1, "sequence_length": 128,
           "num_threads": 4, "num_runs": 300}  # fmt: skip
    result = LatencyResult.from_dict(old)
    assert (result.noisy, result.rounds, result.warmup_runs, result.max_relative_iqr) == (False, 1, None, None)
    assert result.to_dict() == {**old, "noisy": False, "rounds": 1, "unit": "ms"}
    assert set(result.to_dict()) <= set(LatencyResult.dict_keys())
    with pytest.raises(ValueError, match=r"`unit`='s'; allowed: 'ms'"):
        LatencyResult.from_dict({**old, "unit": "s"})
    with pytest.raises(ValueError, match=r"Unknown keys in the latency dict: \['median_s'\]"):
        LatencyResult.from_dict({**old, "median_s": 0.007})
    json.dumps(result.to_dict())


# ----------------------------------------------------------------------------------------------------------------
# the search objective: the same protocol, noisy values flagged or refused
def test_objective_keeps_a_tight_latency_without_a_flag(supernet, script):
    scripted = script([TIGHT])
    objective = LatencyObjective(sequence_length=SEQ, min_run_time=0.2)
    assert objective(supernet, supernet.search_space.smallest()) == 7.0
    assert len(scripted.calls) == 1 and objective.noisy_results == []


def test_objective_flags_a_noisy_latency_by_default(supernet, script, caplog):
    scripted = script(WIDE)
    objective = LatencyObjective(sequence_length=SEQ, min_run_time=0.2)
    subnet = supernet.search_space.smallest()
    with caplog.at_level(logging.WARNING, logger="hf_nas.search.objectives"):
        value = objective(supernet, subnet)
    assert len(scripted.calls) == 3 and value == 9.0
    [flagged] = objective.noisy_results
    assert flagged["subnet"] == subnet.to_dict()
    assert flagged["latency"]["noisy"] is True and flagged["latency"]["unit"] == "ms"
    assert "noisy_results" in caplog.text and str(subnet.to_dict()) in caplog.text


def test_objective_refuses_a_noisy_latency_on_request(supernet, script):
    script(WIDE)
    objective = LatencyObjective(sequence_length=SEQ, min_run_time=0.2, on_noisy="raise")
    subnet = supernet.search_space.smallest()
    with pytest.raises(NoisyLatencyError, match=r"Refused the latency of subnet .*num_hidden_layers.*on_noisy='flag'"):
        objective(supernet, subnet)
    assert objective.noisy_results == []


# ----------------------------------------------------------------------------------------------------------------
# one definition: the search objective and `hf-nas extract` (the model card) measure with the same function
def test_search_objective_and_extract_use_one_measure_latency():
    assert objectives.measure_latency is costs.measure_latency
    assert extract_command.measure_latency is costs.measure_latency
    assert hf_nas.measure_latency is costs.measure_latency


def test_search_objective_and_model_card_record_the_same_measurement(tmp_path, supernet, script):
    scripted = script([TIGHT])
    subnet = supernet.search_space.smallest()
    saved = tmp_path / "supernet"
    supernet.save_pretrained(saved)
    subnet.save(tmp_path / "subnet.json")

    searched = LatencyObjective(sequence_length=SEQ, min_run_time=0.2)(supernet, subnet)
    extract_command.main(
        ["--supernet", str(saved), "--subnet_json", str(tmp_path / "subnet.json"), "--output_dir",
         str(tmp_path / "out"), "--latency_sequence_length", str(SEQ), "--latency_min_run_time", "0.2"]
    )  # fmt: skip
    assert scripted.calls == [0.2, 0.2]  # one round each: the search's and the card's, through the same code
    latency = ModelCard.load(Path(tmp_path / "out" / "README.md")).data.to_dict()["hf_nas"]["latency"]
    assert latency["median_ms"] == searched == TIGHT.median_ms
    assert latency["unit"] == "ms" and latency["noisy"] is False and latency["rounds"] == 1
