"""Latency tables: built per device and setting, cached, refused for another device or setting; a prediction is the
sum of its per-layer parts plus the learned correction; paired timing cancels drift."""

from __future__ import annotations

import json
import time

import pytest
import torch

from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, SubnetConfig
from hf_nas.search import latency_table as lt
from hf_nas.search.latency_table import (
    LatencySettings,
    LatencyTable,
    PairedTimer,
    build_latency_table,
    cached_latency_table,
    cached_latency_tables,
)
from hf_nas.search.objectives import get_objective

FAST = dict(rounds=3, min_block_time=0.001, correction_subnets=4)  # timings of no value, checks of every step


@pytest.fixture(scope="module")
def model():
    config = ElasticBertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
    )
    torch.manual_seed(0)
    return ElasticBertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def table(model):
    return build_latency_table(model, batch_size=1, sequence_length=16, **FAST)


def test_the_table_times_every_block_of_the_space(model, table):
    space = model.search_space
    assert sorted(table.attention) == sorted(table.ffn) == list(space.hidden_size)
    for w in space.hidden_size:
        assert sorted(table.attention[w]) == list(space.num_attention_heads)
        assert sorted(table.ffn[w]) == list(space.intermediate_size)
        assert all(v > 0 for v in [*table.attention[w].values(), *table.ffn[w].values()])
    assert table.settings == LatencySettings.for_model(model, 1, 16)
    assert table.reference_baseline_ms > 0
    assert len(table.measurements) == 4 and table.scale > 0
    measured = [SubnetConfig.from_dict(m["subnet"]) for m in table.measurements]
    assert measured[:2] == [space.largest(), space.smallest()] and len(set(measured)) == 4
    for m in table.measurements:  # raw and drift-corrected values both kept
        assert m["raw_ms"] > 0 and m["corrected_ms"] == pytest.approx(m["ratio"] * table.reference_baseline_ms)


def test_the_largest_subnet_is_the_sum_of_its_parts_plus_the_correction(model, table):
    largest = model.search_space.largest()
    w, k, f = largest.hidden_size, largest.num_attention_heads[0], largest.intermediate_size[0]
    parts = largest.num_hidden_layers * (table.attention[w][k] + table.ffn[w][f])  # by hand, from the table
    assert table.parts(largest) == pytest.approx(parts, rel=1e-12)
    correction = (table.scale - 1) * parts + table.offset + table.per_layer_ms * largest.num_hidden_layers
    assert table.correction(largest) == pytest.approx(correction, rel=1e-12)
    assert table.predict(largest) == pytest.approx(parts + correction, rel=1e-12)
    # a non-uniform subnet adds its own layers' parts
    subnet = model.search_space.subnet(2, (1, 4), (16, 64), 24)
    parts = table.attention[24][1] + table.ffn[24][16] + table.attention[24][4] + table.ffn[24][64]
    assert table.predict(subnet) == pytest.approx(table.scale * parts + table.offset + 2 * table.per_layer_ms)
    with pytest.raises(ValueError, match="hidden_size`=40"):
        table.parts(SubnetConfig.uniform(2, 1, 16, 40))


def test_the_correction_is_learned_from_whole_model_measurements(model):
    settings = LatencySettings("CPU X", "cpu", 1, 16, 1, torch.__version__, "shape")
    table = LatencyTable(settings, attention={32: {1: 1.0, 2: 2.0}}, ffn={32: {16: 3.0, 32: 5.0}})
    shapes = [(1, 16), (2, 32), (1, 32), (2, 16)]
    subnets = [SubnetConfig(d, (h,) * d, (f,) * d, 32) for d in (2, 3) for h, f in shapes]
    measured = [1.5 * table.parts(s) + 0.7 + 0.2 * s.num_hidden_layers for s in subnets]  # true coefficients
    table.fit_correction(subnets, measured)
    assert (table.scale, table.offset, table.per_layer_ms) == pytest.approx((1.5, 0.7, 0.2))
    assert [table.predict(s) for s in subnets] == pytest.approx(measured)
    table.fit_correction(subnets[:3], [1.5 * table.parts(s) + 0.7 for s in subnets[:3]])  # too few for a depth term
    assert (table.scale, table.offset, table.per_layer_ms) == pytest.approx((1.5, 0.7, 0.0))
    with pytest.raises(ValueError, match="one measured latency per subnet"):
        table.fit_correction(subnets, measured[:2])


def test_tables_are_cached_per_device_and_setting(model, table, tmp_path, monkeypatch):
    calls = []
    build = lt.build_latency_table

    def counting_build(model, batch_size, *args, **kwargs):
        calls.append(batch_size)
        return table if batch_size == 1 else build(model, batch_size, *args, **kwargs)

    monkeypatch.setattr(lt, "build_latency_table", counting_build)
    first = cached_latency_table(model, batch_size=1, sequence_length=16, cache_dir=tmp_path, **FAST)
    again = cached_latency_table(model, batch_size=1, sequence_length=16, cache_dir=tmp_path, **FAST)
    assert len(calls) == 1  # measured once, then read from the cache
    assert again.to_dict() == first.to_dict() == table.to_dict()
    eight = cached_latency_table(model, batch_size=8, sequence_length=16, cache_dir=tmp_path, **FAST)
    assert len(calls) == 2 and eight.settings.batch_size == 8  # another setting, another table
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and any("-b1-s16-" in n for n in names) and any("-b8-s16-" in n for n in names)
    assert all(n.startswith("latency-cpu-") for n in names)
    tables = cached_latency_tables(model, sequence_length=16, cache_dir=tmp_path, **FAST)  # batch 1 and 8: cached
    assert sorted(tables) == [1, 8] and len(calls) == 2
    assert tables[8].to_dict() == eight.to_dict()


@pytest.mark.parametrize(
    "field, value",
    [
        ("device_name", "Another CPU"),
        ("batch_size", 8),
        ("sequence_length", 64),
        ("num_threads", 7),
        ("architecture", "x"),
    ],
)
def test_a_table_for_another_device_or_setting_is_refused(model, table, tmp_path, field, value):
    path = tmp_path / LatencySettings.for_model(model, 1, 16).file_name()
    table.save(path)
    data = json.loads(path.read_text())
    data["settings"][field] = value
    path.write_text(json.dumps(data))  # a table made elsewhere, under this setting's file name
    with pytest.raises(ValueError, match=rf"for other settings \({field}: {value} in the table"):
        LatencyTable.load(path, LatencySettings.for_model(model, 1, 16))
    with pytest.raises(ValueError, match="for other settings"):  # never silently used (nor overwritten)
        cached_latency_table(model, batch_size=1, sequence_length=16, cache_dir=tmp_path, **FAST)
    assert json.loads(path.read_text())["settings"][field] == value
    with pytest.raises(ValueError, match="other settings"):
        get_objective("predicted_latency", sequence_length=8, table=table).prepare(model)


def test_a_damaged_table_is_refused(model, tmp_path):
    path = tmp_path / "table.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a latency table"):
        LatencyTable.load(path)


def test_predicted_latency_objective_reads_the_table(model, table, tmp_path):
    objective = get_objective("predicted_latency", sequence_length=16, table=table)
    objective.prepare(model)
    subnet = model.search_space.sample(seed=3)
    assert objective.cheap and not objective.exclusive
    assert objective(model, subnet) == table.predict(subnet)
    assert objective.reference_value(model) == table.predict(model.search_space.largest())
    assert objective.ideal_value() == 0.0
    described = objective.describe()
    assert (described["batch_size"], described["sequence_length"], described["unit"]) == (1, 16, "ms")


def test_paired_timing_cancels_a_drifting_load():
    """The machine slows down 1.5x after every call: raw times drift, the ratio of adjacent blocks does not."""
    load = [1.0]

    def busy(ms: float):
        def call():
            time.sleep(ms * load[0] / 1e3)
            load[0] *= 1.02

        return call

    timer = PairedTimer(busy(4.0), rounds=9, min_block_time=0.001, warmup_runs=0, reference_baseline_ms=4.0)
    first = timer.measure(busy(2.0))
    second = timer.measure(busy(2.0))
    assert second.raw_ms > 1.3 * first.raw_ms  # the raw time followed the load
    for result in (first, second):
        assert result.ratio == pytest.approx(0.5, rel=0.2)
        assert result.corrected_ms == pytest.approx(result.ratio * 4.0)
    assert second.corrected_ms == pytest.approx(first.corrected_ms, rel=0.25)


def test_settings_checks(model):
    with pytest.raises(ValueError, match="sequence_length`=64 is longer"):
        LatencySettings.for_model(model, 1, 64)
    with pytest.raises(TypeError, match="elastic supernet"):
        LatencySettings.for_model(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="min_block_time"):
        PairedTimer(lambda: None, min_block_time=0)
