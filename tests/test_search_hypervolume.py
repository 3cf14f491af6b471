"""Hypervolume with a reference point fixed in advance, over every objective: hand-computed 2- and 3-objective
fronts, the anytime curve, the results file, and a search that fixes its reference point before measuring."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from hf_nas import SearchResults, SubnetConfig
from hf_nas.search import SubnetSearch, get_objective
from hf_nas.search.objectives import TaskMetricObjective
from hf_nas.search.pareto import anytime_hypervolume, hypervolume, normalized_hypervolume

from .conftest import make_supernet

ACC_MACS = ["maximize", "minimize"]
ACC_MACS_LATENCY = ["maximize", "minimize", "minimize"]


def results(values, directions, names, reference=None, ideal=None) -> SearchResults:
    return SearchResults(
        objectives=[{"name": n, "direction": d} for n, d in zip(names, directions, strict=True)],
        records=[
            {"subnet": SubnetConfig.uniform(1, 1 + i, 32, 16).to_dict(), "values": dict(zip(names, v, strict=True))}
            for i, v in enumerate(values)
        ],
        fixed_reference_point=reference,
        fixed_ideal_point=ideal,
    )


def test_two_objectives_by_hand():
    # reference: majority accuracy 0.5, full MACs 10; ideal: accuracy 1, 0 MACs (a box of 0.5 x 10 = 5)
    front = [[0.9, 6.0], [0.7, 2.0], [0.6, 8.0]]  # the third is dominated by the second
    # boxes [0.5, 0.9] x [6, 10] = 1.6 and [0.5, 0.7] x [2, 10] = 1.6, overlapping in [0.5, 0.7] x [6, 10] = 0.8
    assert hypervolume(front, ACC_MACS, [0.5, 10.0]) == pytest.approx(2.4)
    assert normalized_hypervolume(front, ACC_MACS, [0.5, 10.0], [1.0, 0.0]) == pytest.approx(2.4 / 5)
    # a point below the majority class adds nothing, however small
    assert hypervolume([*front, [0.45, 0.1]], ACC_MACS, [0.5, 10.0]) == pytest.approx(2.4)
    # the same front seen through the results file, with the fixed points
    r = results(front, ACC_MACS, ["accuracy", "macs"], reference=[0.5, 10.0], ideal=[1.0, 0.0])
    assert r.hypervolume() == (pytest.approx(2.4), [0.5, 10.0])
    assert r.normalized_hypervolume()[0] == pytest.approx(0.48)


def test_three_objectives_by_hand():
    # reference (0.5, 10, 10); A = (0.9, 4, 6), B = (0.7, 2, 8): boxes 0.4 x 6 x 4 = 9.6 and 0.2 x 8 x 2 = 3.2,
    # overlapping in 0.2 x 6 x 2 = 2.4, so the union is 10.4 of the 0.5 x 10 x 10 = 50 box to the ideal (1, 0, 0)
    front = [[0.9, 4.0, 6.0], [0.7, 2.0, 8.0]]
    assert hypervolume(front, ACC_MACS_LATENCY, [0.5, 10.0, 10.0]) == pytest.approx(10.4)
    assert normalized_hypervolume(front, ACC_MACS_LATENCY, [0.5, 10.0, 10.0], [1, 0, 0]) == pytest.approx(0.208)
    # latency counts: a point equal in accuracy and MACs but faster adds the slab it dominates alone
    faster = [0.9, 4.0, 3.0]  # adds 0.4 x 6 x 3 = 7.2 over A
    assert hypervolume([*front, faster], ACC_MACS_LATENCY, [0.5, 10.0, 10.0]) == pytest.approx(17.6)
    r = results(
        front, ACC_MACS_LATENCY, ["accuracy", "macs", "latency"], reference=[0.5, 10.0, 10.0], ideal=[1.0, 0.0, 0.0]
    )
    assert r.normalized_hypervolume()[0] == pytest.approx(0.208)


def test_anytime_curve_by_hand():
    values = [[0.45, 1.0], [0.7, 2.0], [0.6, 8.0], [0.9, 6.0]]
    curve = anytime_hypervolume(values, ACC_MACS, [0.5, 10.0], [1.0, 0.0])
    # below the majority class: 0; then 1.6; a dominated point: unchanged; then 2.4 (all / 5)
    assert curve == pytest.approx([0.0, 0.32, 0.32, 0.48])
    assert curve[-1] == pytest.approx(normalized_hypervolume(values, ACC_MACS, [0.5, 10.0], [1.0, 0.0]))
    with pytest.raises(ValueError, match="ideal"):
        anytime_hypervolume([[1.2, 1.0]], ACC_MACS, [0.5, 10.0], [1.0, 0.0])


def test_the_fixed_points_are_saved_and_read_back(tmp_path):
    r = results([[0.9, 6.0], [0.7, 2.0]], ACC_MACS, ["accuracy", "macs"], reference=[0.5, 10.0], ideal=[1.0, 0.0])
    r.save(tmp_path, plot=False)
    saved = json.loads((tmp_path / "search_results.json").read_text())
    assert saved["reference_fixed"] is True
    assert saved["reference_point"] == [0.5, 10.0] and saved["ideal_point"] == [1.0, 0.0]
    assert saved["hypervolume_normalized"] == pytest.approx(0.48)
    loaded = SearchResults.load(tmp_path / "search_results.json")
    assert (loaded.fixed_reference_point, loaded.fixed_ideal_point) == ([0.5, 10.0], [1.0, 0.0])
    saved["reference_point"] = [0.5]
    (tmp_path / "search_results.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="'reference_point' must hold one finite number per objective"):
        SearchResults.load(tmp_path / "search_results.json")
    # without fixed points the reference still comes from the records (older files)
    plain = results([[0.9, 6.0], [0.7, 2.0]], ACC_MACS, ["accuracy", "macs"])
    assert "reference_fixed" not in plain.to_dict()


def test_a_search_fixes_its_reference_point_before_measuring(tmp_path):
    model = make_supernet("BertForSequenceClassification", num_labels=2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (30, 6), generator=g)
    labels = [1] * 20 + [0] * 10  # majority class: 2/3
    data = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels})
    macs = get_objective("macs", sequence_length=16)
    objectives = [TaskMetricObjective(data, batch_size=16), macs]
    search = SubnetSearch(
        model,
        objectives,
        "random",
        use_predictors=False,
        num_evaluations=4,
        evaluations_per_round=2,
        output_dir=tmp_path / "s",
        show_progress=False,
        reference_point="fixed",
    )
    r = search.run()
    full = macs(model, model.max_subnet())
    assert r.fixed_reference_point == [pytest.approx(2 / 3), full]
    assert r.fixed_ideal_point == [1.0, 0.0]
    values = r.values()
    assert r.normalized_hypervolume()[0] == pytest.approx(
        normalized_hypervolume(values, ACC_MACS, [2 / 3, full], [1.0, 0.0])
    )
    # resumed, the saved reference point is kept (never measured again)
    again = SubnetSearch(
        model,
        objectives,
        "random",
        use_predictors=False,
        num_evaluations=6,
        evaluations_per_round=2,
        output_dir=tmp_path / "s",
        show_progress=False,
        reference_point="fixed",
    ).run()
    assert again.fixed_reference_point == r.fixed_reference_point and len(again.records) == 6
    with pytest.raises(ValueError, match="reference_point"):
        SubnetSearch(model, objectives, reference_point="majority")
