"""SubnetSearch end to end: results files, the Pareto front, resume, interruption, and a chosen subnet's metric
reproduced by the extracted checkpoint reloaded with plain transformers in a fresh process."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import datasets
import pytest
import torch

import hf_nas
from hf_nas.search import Constraint, SearchResults, SubnetSearch, get_objective
from hf_nas.search.objectives import Objective, TaskMetricObjective

from .conftest import make_supernet


def learnable_dataset(n: int = 48, length: int = 10) -> datasets.Dataset:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (n, length), generator=g)
    return datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * length] * n, "labels": (ids[:, 0] > 50).long().tolist()}
    )


@pytest.fixture
def supernet():
    model = make_supernet("BertForSequenceClassification", num_labels=2)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    return model


def objectives():
    return [TaskMetricObjective(learnable_dataset(), batch_size=16), get_objective("macs", sequence_length=16)]


def run(model, tmp_path, name="search", **kwargs):
    defaults = dict(num_evaluations=12, initial_evaluations=6, candidates_per_round=60, evaluations_per_round=3)
    search = SubnetSearch(
        model, objectives(), output_dir=tmp_path / name, show_progress=False, **{**defaults, **kwargs}
    )
    return search.run()


@pytest.mark.parametrize("strategy,use_predictors", [("nsga2", True), ("random", False), ("nsga2", False)])
def test_search_writes_results_front_and_plot(supernet, tmp_path, strategy, use_predictors):
    results = run(supernet, tmp_path, strategy=strategy, use_predictors=use_predictors)
    folder = tmp_path / "search"
    assert len(results.records) == 12
    assert len({json.dumps(r["subnet"], sort_keys=True) for r in results.records}) == 12  # no subnet measured twice
    saved = json.loads((folder / "search_results.json").read_text())
    assert saved["records"] == results.records and saved["hypervolume"] > 0
    assert all(supernet.search_space.contains(results.subnet(i)) for i in range(12))
    with open(folder / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["record"]) for r in rows] == results.pareto_indices()
    assert [int(r["pareto_index"]) for r in rows] == list(range(len(rows)))
    # Every front point is non-dominated among all records; every other record is dominated by a front point.
    values = results.values()
    front = set(results.pareto_indices())
    for i in range(len(values)):
        dominated = any(
            values[j][0] >= values[i][0] and values[j][1] <= values[i][1] and tuple(values[j]) != tuple(values[i])
            for j in range(len(values))
        )
        assert dominated == (i not in front)
    assert (folder / "pareto.png").stat().st_size > 1000
    if use_predictors:
        assert {r["source"] for r in results.records} == {"initial", "predicted-front"}


def test_resume_continues_the_identical_direct_search(supernet, tmp_path):
    straight = run(supernet, tmp_path, "straight", strategy="random", use_predictors=False)
    run(supernet, tmp_path, "resumed", strategy="random", use_predictors=False, num_evaluations=5)
    resumed = run(supernet, tmp_path, "resumed", strategy="random", use_predictors=False)
    assert resumed.records == straight.records


def test_interrupted_search_keeps_what_it_measured(supernet, tmp_path):
    class Interrupting(Objective):
        name, direction, cheap = "boom", "minimize", False

        def __init__(self):
            self.calls = 0

        def __call__(self, model, subnet):
            self.calls += 1
            if self.calls == 5:
                raise KeyboardInterrupt
            return float(self.calls)

    search = SubnetSearch(
        supernet,
        [*objectives(), Interrupting()],
        "random",
        use_predictors=False,
        num_evaluations=10,
        output_dir=tmp_path / "s",
        show_progress=False,
    )
    with pytest.raises(KeyboardInterrupt):
        search.run()
    kept = SearchResults.load(tmp_path / "s" / "search_results.json")
    assert len(kept.records) == 4


def test_results_of_another_supernet_are_refused(supernet, tmp_path):
    run(supernet, tmp_path, strategy="random", use_predictors=False, num_evaluations=3)
    other = make_supernet("BertForSequenceClassification", num_labels=2, seed=1)
    with pytest.raises(ValueError, match="another supernet"):
        run(other, tmp_path, strategy="random", use_predictors=False, num_evaluations=3)


def test_bad_search_input(supernet, tmp_path):
    with pytest.raises(ValueError, match="Unknown objective 'speed'|unknown.*'speed'|'speed'"):
        get_objective("speed")
    with pytest.raises(ValueError, match="at least one objective"):
        SubnetSearch(supernet, [], output_dir=tmp_path)
    with pytest.raises(ValueError):
        SubnetSearch(
            supernet, objectives(), constraints=[Constraint("macs", max_value=1.0), Constraint("macs", max_value=2.0)]
        )
    with pytest.raises(ValueError):
        Constraint("macs", min_value=5.0, max_value=1.0)
    with pytest.raises(ValueError, match="unknown objectives"):
        SubnetSearch(supernet, objectives(), constraints=[Constraint("latency", max_value=1.0)])


def test_constrained_search_keeps_infeasible_off_the_front(supernet, tmp_path):
    full_macs = get_objective("macs", sequence_length=16)(supernet, supernet.max_subnet())
    results = run(supernet, tmp_path, constraints=[Constraint("macs", max_value=0.5 * full_macs)])
    assert results.pareto_indices()
    assert all(results.records[i]["values"]["macs"] <= 0.5 * full_macs for i in results.pareto_indices())
    best = results.best("accuracy", [Constraint("macs", max_value=0.5 * full_macs)])
    assert results.records[best]["values"]["macs"] <= 0.5 * full_macs


RELOAD = r"""
import sys, json, torch
sys.modules["hf_nas"] = None
from transformers import AutoModelForSequenceClassification
folder, batches_path = sys.argv[1], sys.argv[2]
trust = "auto_map" in json.load(open(folder + "/config.json"))
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=trust).eval()
batches = torch.load(batches_path)
correct = total = 0
with torch.inference_mode():
    for batch in batches:
        labels = batch.pop("labels")
        correct += (model(**batch).logits.argmax(-1) == labels).sum().item()
        total += labels.numel()
print(correct / total)
"""


def test_chosen_subnet_reloaded_without_hf_nas_reproduces_its_recorded_metric(supernet, tmp_path):
    results = run(supernet, tmp_path)
    accuracy = TaskMetricObjective(learnable_dataset(), batch_size=16)
    torch.save([{**inputs, "labels": labels} for inputs, labels in accuracy.batches], tmp_path / "batches.pt")
    chosen = [results.pareto_indices()[-1], results.best("accuracy")]
    for i in chosen:
        folder = tmp_path / f"subnet-{i}"
        hf_nas.save_subnet(supernet, folder, results.subnet(i))
        out = subprocess.run(
            [sys.executable, "-c", RELOAD, str(folder), str(tmp_path / "batches.pt")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(results.records[i]["values"]["accuracy"])


@pytest.mark.parametrize("strategy,use_predictors", [("random", False), ("nsga2", False), ("nsga2", True)])
def test_constraints_on_cheap_objectives_steer_the_strategy(supernet, tmp_path, strategy, use_predictors):
    """A MAC budget is known before measuring: every measured subnet satisfies it (none is wasted)."""
    full_macs = get_objective("macs", sequence_length=16)(supernet, supernet.max_subnet())
    results = run(
        supernet,
        tmp_path,
        strategy=strategy,
        use_predictors=use_predictors,
        num_evaluations=8,
        constraints=[Constraint("macs", max_value=0.4 * full_macs)],
    )
    assert len(results.records) == 8
    assert all(r["values"]["macs"] <= 0.4 * full_macs and r["feasible"] for r in results.records)
