"""The teacher-first recipe and its levers: hidden-state distillation at every kept layer, gradient protection, stage
schedules, uniform sampling, layer ranking, and the two-stage `train_supernet.py` on a tiny checkpoint."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification, BertTokenizer

import hf_nas
from hf_nas import SearchSpace, SubnetConfig
from hf_nas.training import SubnetSampler, SupernetTrainer, SupernetTrainingArguments, get_sampler
from hf_nas.training import trainer as trainer_module
from hf_nas.training.distillation import layer_hidden_state_loss, teacher_layer_map
from hf_nas.training.recipes import RecipeArguments
from hf_nas.training.samplers import StagedSampler, parse_stages

from .conftest import TINY, make_supernet, randomize_parameters, tiny_bert_config, with_layer_rule
from .scripts.ddp_train import make_dataset

SCRIPT_COMMANDS = {"train_supernet": "train", "extract_subnet": "extract"}


def make_args(output_dir, **overrides) -> SupernetTrainingArguments:
    defaults = {
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": 0,
        "disable_tqdm": True,
    }
    return SupernetTrainingArguments(output_dir=str(output_dir), **{**defaults, **overrides})


def spread_supernet(num_layers: int = 4, seed: int = 0):
    model = make_supernet("BertForSequenceClassification", seed=seed, num_labels=2, num_hidden_layers=num_layers)
    with_layer_rule(model.config, "spread")
    return model


class Fixed(SubnetSampler):
    name = "fixed_for_tests"

    def __init__(self, space, subnets):
        super().__init__(space, 0)
        self.subnets = subnets

    def sample(self, step, micro_step=0):
        return list(self.subnets)


def batch(n: int = 8) -> dict[str, torch.Tensor]:
    return dict(make_dataset().with_format("torch")[:n])


# ----------------------------------------------------------------------------------------------------------------
# hidden-state distillation at every kept layer
def test_teacher_layer_map_by_hand():
    assert teacher_layer_map((0, 1, 2, 3, 4, 5), 6, 6) == [0, 1, 2, 3, 4, 5]
    assert teacher_layer_map((1, 3, 5), 6, 6) == [1, 3, 5]  # teacher-first: each layer is its own teacher layer
    assert teacher_layer_map((1, 3, 5), 6, 3) == [0, 1, 2]  # (j + 1) * 3 // 6 - 1
    assert teacher_layer_map((0, 2, 3, 5), 6, 12) == [1, 5, 7, 11]  # (j + 1) * 12 // 6 - 1
    assert teacher_layer_map((5,), 6, 4) == [3]  # the last layer always maps to the teacher's last
    with pytest.raises(ValueError, match=r"student layer 6 is out of range; allowed: 0 to 5"):
        teacher_layer_map((6,), 6, 6)


def test_layer_hidden_state_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(2, 3, 4, generator=g) for _ in range(5)]  # embeddings + 4 layers
    # a student that keeps layers 1 and 3 of a 4-layer supernet: pairs (emb, emb), (s1, t1), (s2, t3)
    student = [torch.randn(2, 3, 4, generator=g) for _ in range(3)]
    expected = torch.stack(
        [
            ((student[0] - teacher[0]) ** 2).mean(),
            ((student[1] - teacher[2]) ** 2).mean(),
            ((student[2] - teacher[4]) ** 2).mean(),
        ]
    ).mean()
    loss = layer_hidden_state_loss(student, teacher, student_layers=(1, 3), num_supernet_layers=4)
    torch.testing.assert_close(loss, expected)
    # a narrower student is compared with the teacher's first channels
    narrow = [s[..., :2] for s in student]
    expected_narrow = torch.stack(
        [((narrow[i] - teacher[t][..., :2]) ** 2).mean() for i, t in enumerate((0, 2, 4))]
    ).mean()
    torch.testing.assert_close(layer_hidden_state_loss(narrow, teacher, (1, 3), 4), expected_narrow)
    with pytest.raises(ValueError, match=r"expected the embeddings plus one tensor per kept layer \(3\)"):
        layer_hidden_state_loss(student[:2], teacher, (1, 3), 4)


def test_layer_hidden_state_loss_is_zero_for_a_subnet_that_equals_the_teacher():
    """The supernet built from the teacher's weights: its largest subnet's hidden states are the teacher's."""
    teacher = randomize_parameters(BertForSequenceClassification(tiny_bert_config(num_labels=2))).eval()
    supernet = hf_nas.ElasticBertForSequenceClassification(hf_nas.ElasticBertConfig(**teacher.config.to_dict())).eval()
    supernet.load_state_dict(teacher.state_dict())
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        t = teacher(**inputs, output_hidden_states=True).hidden_states
        s = supernet(**inputs, output_hidden_states=True).hidden_states
    largest = supernet.search_space.largest()
    loss = layer_hidden_state_loss(s, t, largest.layers, TINY["num_hidden_layers"], inputs["attention_mask"])
    assert loss.item() < 1e-10


def test_trainer_distills_every_kept_layer_to_its_teacher_layer(tmp_path, monkeypatch):
    """A spread subnet of a 4-layer supernet (layers 1 and 3) against a 4-layer external teacher."""
    model = spread_supernet()
    space = model.search_space
    subnet = space.subnet(2, 2, 32, 32)
    assert subnet.layers == (1, 3)
    teacher = randomize_parameters(BertForSequenceClassification(tiny_bert_config(num_labels=2, num_hidden_layers=4)))
    calls = []
    real = trainer_module.layer_hidden_state_loss

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(trainer_module, "layer_hidden_state_loss", spy)
    trainer = SupernetTrainer(
        model=model,
        teacher_model=teacher.eval(),
        sampler=Fixed(space, [subnet]),
        args=make_args(tmp_path, hidden_loss_weight=1.0, kd_loss_weight=0.0, task_loss_weight=0.0),
    )
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.training_step(trainer.model, batch())
    ((student_hidden, teacher_hidden, layers, num_layers, mask),) = calls
    assert layers == (1, 3) and num_layers == 4
    assert len(student_hidden) == 3 and len(teacher_hidden) == 5
    inputs = {k: v for k, v in batch().items() if k != "labels"}
    with torch.no_grad():
        expected_teacher = teacher(**inputs, output_hidden_states=True).hidden_states
        with model.subnet(subnet):
            expected_student = model(**inputs, output_hidden_states=True).hidden_states
    for got, want in zip(teacher_hidden, expected_teacher, strict=True):
        torch.testing.assert_close(got, want)
    for got, want in zip(student_hidden, expected_student, strict=True):
        torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=0)
    by_hand = torch.stack(
        [((expected_student[i] - expected_teacher[t]) ** 2).mean() for i, t in enumerate((0, 2, 4))]
    ).mean()
    torch.testing.assert_close(loss.detach(), by_hand, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# gradient protection (NASViT)
def solo_gradient(model, subnet, inputs) -> list[torch.Tensor]:
    model.zero_grad()
    with model.subnet(subnet):
        model(**inputs).loss.backward()
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    model.zero_grad()
    return grads


def clipped(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads]


@pytest.mark.parametrize("protect", [True, False])
def test_gradient_protection_keeps_the_largest_subnets_solo_gradient(tmp_path, protect):
    model = make_supernet("BertForSequenceClassification", num_labels=2)
    model.train()
    for module in model.modules():  # deterministic forwards: no dropout in the tiny config, but be explicit
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    space = model.search_space
    subnets = [space.largest(), space.smallest(), space.middle()]
    inputs = batch()
    solo = {i: solo_gradient(model, s, inputs) for i, s in enumerate(subnets)}
    others = [a + b for a, b in zip(solo[1], solo[2], strict=True)]
    max_norm = 0.05  # small enough that both parts are clipped
    trainer = SupernetTrainer(
        model=model,
        sampler=Fixed(space, subnets),
        args=make_args(tmp_path, distillation="none", protect_largest_gradient=protect, max_grad_norm=max_norm),
    )
    trainer.current_gradient_accumulation_steps = 1
    trainer.training_step(trainer.model, dict(inputs))
    got = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    if protect:
        # the largest subnet's contribution is its solo gradient (clipped on its own, as plain fine-tuning would)
        expected = [a + b for a, b in zip(clipped(solo[0], max_norm), clipped(others, max_norm), strict=True)]
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)
        largest_part = [g - o for g, o in zip(got, clipped(others, max_norm), strict=True)]
        for g, e in zip(largest_part, clipped(solo[0], max_norm), strict=True):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-4)
        assert torch.isfinite(trainer._clip_grad_norm(trainer.model))  # no second clipping by the Trainer
    else:
        # without protection: the plain sum (the Trainer clips it as a whole afterwards)
        for g, a, o in zip(got, solo[0], others, strict=True):
            torch.testing.assert_close(g, a + o, atol=1e-6, rtol=1e-4)


def test_gradient_protection_trains(tmp_path):
    model = make_supernet("BertForSequenceClassification", num_labels=2)
    trainer = SupernetTrainer(
        model=model,
        args=make_args(tmp_path, max_steps=3, protect_largest_gradient=True),
        train_dataset=make_dataset(),
    )
    trainer.train()
    norms = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]
    assert len(norms) == 3 and all(n > 0 for n in norms)


def test_gradient_protection_needs_one_micro_step_and_clipping(tmp_path):
    with pytest.raises(ValueError, match="gradient_accumulation_steps=1"):
        make_args(tmp_path, protect_largest_gradient=True, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="max_grad_norm > 0"):
        make_args(tmp_path, protect_largest_gradient=True, max_grad_norm=0.0)


# ----------------------------------------------------------------------------------------------------------------
# samplers: stages, uniform draws, a fixed subnet
@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace(
        num_hidden_layers=(2, 3, 4),
        num_attention_heads=(2, 4),
        intermediate_size=(32, 64),
        hidden_size=(16, 32),
        attention_head_size=8,
        layer_rule="spread",
    )


def test_stage_schedule_width_then_depth(space):
    sampler = StagedSampler(space, "width@0.5,depth", 10, lambda s: get_sampler("sandwich", s, seed=3))
    assert [sampler.stage_of(step) for step in range(10)] == [0] * 5 + [1] * 5
    for step in range(5):
        subnets = sampler.sample(step)
        assert all(s.num_hidden_layers == 4 for s in subnets)  # depth held at its largest
        assert subnets[1] == space.subnet(4, 2, 32, 16)  # the narrowest at full depth
    depths = {s.num_hidden_layers for step in range(5, 10) for s in sampler.sample(step)}
    assert 2 in depths and all(space.contains(s) for step in range(10) for s in sampler.sample(step))
    assert sampler.sample(7) == sampler.sample(7)
    state = sampler.state_dict()
    sampler.load_state_dict(json.loads(json.dumps(state)))


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        ("width@0.5,layers", r"Unknown dimension 'layers' in stage schedule 'width@0.5,layers'; allowed: \['depth'"),
        ("depth,width", r"Stage 'depth' needs an end fraction"),
        ("depth@0.7,width@0.5", r"end fractions must increase"),
        ("depth@0.5,heads+depth", r"unlocks \['num_hidden_layers'\] twice"),
        ("depth@x,width", r"'x' is not a fraction"),
    ],
)
def test_bad_stage_schedules_fail_before_training(tmp_path, schedule, match):
    with pytest.raises(ValueError, match=match):
        parse_stages(schedule)
    with pytest.raises(ValueError, match=match):
        make_args(tmp_path, sampler_stages=schedule)


def test_stage_schedule_needs_max_steps(tmp_path):
    with pytest.raises(ValueError, match=r"`sampler_stages` needs a fixed number of steps"):
        make_args(tmp_path, sampler_stages="width@0.5,depth", max_steps=-1)


def test_trainer_builds_the_staged_sampler(tmp_path):
    model = spread_supernet()
    trainer = SupernetTrainer(model=model, args=make_args(tmp_path, max_steps=4, sampler_stages="width@0.5,depth"))
    assert isinstance(trainer.sampler, StagedSampler)
    assert all(s.num_hidden_layers == 4 for s in trainer.sampler.sample(1))


def test_uniform_probability(space):
    always = get_sampler("sandwich", space, seed=0, num_random_subnets=8, uniform_probability=1.0)
    never = get_sampler("sandwich", space, seed=0, num_random_subnets=8)
    drawn = [s for step in range(20) for s in always.sample(step)[2:]]
    assert all(s.is_uniform for s in drawn) and all(space.contains(s) for s in drawn)
    assert not all(s.is_uniform for step in range(20) for s in never.sample(step)[2:])
    # probability 0 keeps the draws of a sampler without the option (resumed runs stay identical)
    assert never.sample(5) == get_sampler("sandwich", space, seed=0, num_random_subnets=8).sample(5)
    with pytest.raises(ValueError, match=r"`uniform_probability` must be in \[0, 1\], got 1.5"):
        get_sampler("random", space, uniform_probability=1.5)
    with pytest.raises(ValueError, match="not supported by the shiftnas sampler"):
        SupernetTrainer(
            model=make_supernet("BertForSequenceClassification", num_labels=2),
            args=make_args("unused", sampler="shiftnas", uniform_subnet_probability=0.5),
        )


def test_fixed_sampler(space):
    sampler = get_sampler("fixed", space, subnets=[space.smallest()])
    assert sampler.sample(0) == sampler.sample(9) == [space.smallest()]
    with pytest.raises(ValueError, match="keeps layers"):
        get_sampler("fixed", space, subnets=[SubnetConfig.uniform(2, 2, 32, 16)])  # first layers, spread space
    with pytest.raises(ValueError, match="non-empty list"):
        get_sampler("fixed", space, subnets=[])


# ----------------------------------------------------------------------------------------------------------------
# layer ranking
def test_rank_layers_matches_the_loss_of_each_layer_removed():
    model = make_supernet("BertForSequenceClassification", num_labels=2, num_hidden_layers=4)
    batches = [batch(8), dict(make_dataset(seed=1).with_format("torch")[:8])]
    before = model.active_subnet
    order, increases = hf_nas.rank_layers(model, batches, num_batches=2, show_progress=False)
    assert sorted(order) == [0, 1, 2, 3] and model.active_subnet == before and not model.training
    full = model.max_subnet()
    with torch.no_grad():
        base = sum(float(model(**b).loss) for b in batches) / 2
        for j in range(4):
            kept = tuple(i for i in range(4) if i != j)
            subnet = SubnetConfig(3, full.num_attention_heads[:3], full.intermediate_size[:3], 32, layers=kept)
            # the extracted model without layer j: an independent computation of the same loss
            model.search_space = dataclasses.replace(
                model.search_space, num_hidden_layers=(3, 4), layer_rule="importance", layer_order=(*kept, j)
            )
            extracted = model.extract_subnet(subnet).eval()
            loss = sum(float(extracted(**b).loss) for b in batches) / 2
            assert increases[j] == pytest.approx(loss - base, abs=1e-5)
    assert order == sorted(range(4), key=lambda j: (-increases[j], j))


# ----------------------------------------------------------------------------------------------------------------
# the two-stage script on a tiny checkpoint
def load_script(name: str):
    """The module behind `scripts/<name>.py`: its `main` and helpers live in `hf_nas.commands`."""
    return importlib.import_module(f"hf_nas.commands.{SCRIPT_COMMANDS[name]}")


@pytest.fixture
def tiny_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A tiny vanilla BERT with a word-level tokenizer, and a csv whose label is whether the first word is low."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    path = tmp_path / "vanilla"
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(num_labels=2)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    rows = ["sentence,label"]
    for _ in range(64):
        words = torch.randint(0, 90, (6,), generator=g).tolist()
        rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
    data = tmp_path / "train.csv"
    data.write_text("\n".join(rows) + "\n")
    return path, data


def run_train_supernet(monkeypatch, *argv: str) -> None:
    script = load_script("train_supernet")
    monkeypatch.setattr(sys, "argv", ["train_supernet.py", *argv])
    script.main()


def common(path, data, out) -> list[str]:
    return [
        "--model_name_or_path", str(path), "--train_file", str(data), "--output_dir", str(out),
        "--max_steps", "3", "--per_device_train_batch_size", "8", "--max_seq_length", "16",
        "--importance_batches", "1", "--report_to", "none", "--use_cpu", "--seed", "0",
        "--save_strategy", "no", "--disable_tqdm", "true",
    ]  # fmt: skip


def test_two_stage_script_trains_saves_and_uses_the_teacher(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    out = tmp_path / "supernet"
    teacher_calls, steps = [], []
    real_targets = SupernetTrainer._teacher_targets
    real_step = SupernetTrainer.training_step

    def count_targets(self, teacher, *args, **kwargs):
        teacher_calls.append(teacher)
        return real_targets(self, teacher, *args, **kwargs)

    def count_steps(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "_teacher_targets", count_targets)
    monkeypatch.setattr(SupernetTrainer, "training_step", count_steps)
    run_train_supernet(
        monkeypatch, *common(path, data, out), "--do_train", "--recipe", "teacher_first", "--teacher_max_steps", "4"
    )
    # stage 1: the teacher was fine-tuned (its weights moved) and saved beside the supernet, with the tokenizer
    teacher_dir = out / "teacher"
    assert (teacher_dir / "config.json").is_file() and (teacher_dir / "tokenizer_config.json").is_file()
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir)
    original = BertForSequenceClassification.from_pretrained(path)
    assert not torch.equal(teacher.classifier.weight, original.classifier.weight)
    assert not (out / "teacher.run").exists()
    # stage 2: the supernet started from the teacher and distilled from it, one teacher forward per batch
    assert len(steps) == 3 and len(teacher_calls) == 3
    assert all(isinstance(t, BertForSequenceClassification) for t in teacher_calls)
    used = teacher_calls[0]
    for (name, a), b in zip(used.state_dict().items(), teacher.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "elastic_bert" and config["search_space"]["layer_rule"] == "spread"

    # a rerun reuses the saved teacher instead of fine-tuning again
    script = load_script("train_supernet")
    monkeypatch.setattr(script, "finetune_teacher", lambda *a, **k: pytest.fail("the teacher was trained again"))
    argv = [*common(path, data, tmp_path / "again"), "--do_train", "--recipe", "teacher_first"]
    monkeypatch.setattr(sys, "argv", ["train_supernet.py", *argv])
    (tmp_path / "again").mkdir()
    import shutil

    shutil.copytree(teacher_dir, tmp_path / "again" / "teacher")
    script.main()
    assert (tmp_path / "again" / "config.json").is_file()


def test_one_pass_is_the_default_recipe_with_the_benchmarked_levers(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    out = tmp_path / "supernet"
    seen = {}
    real_init = SupernetTrainer.__init__

    def record(self, *args, **kwargs):
        seen["args"], seen["teacher"] = kwargs["args"], kwargs["teacher_model"]
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "__init__", record)
    run_train_supernet(monkeypatch, *common(path, data, out), "--do_train")
    assert not (out / "teacher").exists() and (out / "config.json").is_file()
    assert seen["teacher"] is None
    args = seen["args"]
    assert args.hidden_loss_weight == 1.0 and args.protect_largest_gradient and args.uniform_subnet_probability == 0.5
    # every lever can be switched off on the command line, and a JSON file gets the same defaults
    run_train_supernet(
        monkeypatch, *common(path, data, tmp_path / "off"), "--do_train", "--protect_largest_gradient", "false",
        "--hidden_loss_weight", "0", "--gradient_accumulation_steps", "2",
    )  # fmt: skip
    assert not seen["args"].protect_largest_gradient and seen["args"].hidden_loss_weight == 0.0
    config = {
        "model_name_or_path": str(path), "train_file": str(data), "output_dir": str(tmp_path / "json"),
        "max_steps": 2, "per_device_train_batch_size": 8, "max_seq_length": 16, "importance_batches": 1,
        "report_to": "none", "use_cpu": True, "save_strategy": "no", "do_train": True,
        "uniform_subnet_probability": 0.25,
    }  # fmt: skip
    config_file = tmp_path / "args.json"
    config_file.write_text(json.dumps(config))
    script = load_script("train_supernet")
    monkeypatch.setattr(sys, "argv", ["train_supernet.py", str(config_file)])
    script.main()
    assert seen["args"].protect_largest_gradient and seen["args"].uniform_subnet_probability == 0.25


def test_importance_layer_rule_from_the_script(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    out = tmp_path / "supernet"
    run_train_supernet(
        monkeypatch,
        *common(path, data, out),
        "--do_train",
        "--recipe",
        "teacher_first",
        "--teacher_max_steps",
        "1",
        "--layer_rule",
        "importance",
    )
    space = json.loads((out / "config.json").read_text())["search_space"]
    assert space["layer_rule"] == "importance" and sorted(space["layer_order"]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--recipe", "two_pass"], r"Unknown recipe 'two_pass'; allowed: \['one_pass', 'teacher_first'\]"),
        (["--layer_rule", "middle"], r"Unknown layer_rule 'middle'; allowed: \['first', 'spread', 'importance'\]"),
        (["--sampler_stages", "width@0.5,layers"], r"Unknown dimension 'layers'"),
        (["--recipe", "teacher_first", "--distillation", "inplace"], r"--distillation must be 'teacher'"),
        (["--gradient_accumulation_steps", "2"], r"--protect_largest_gradient false"),
    ],
)
def test_script_bad_input_fails_before_training(tmp_path, monkeypatch, tiny_checkpoint, argv, match):
    path, data = tiny_checkpoint
    monkeypatch.setattr(SupernetTrainer, "train", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(
        hf_nas.training.recipes.ResumableTrainer, "train", lambda *a, **k: pytest.fail("teacher training started")
    )
    with pytest.raises(ValueError, match=match):
        run_train_supernet(monkeypatch, *common(path, data, tmp_path / "out"), "--do_train", *argv)


def test_teacher_with_other_labels_is_refused_before_training(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    other = tmp_path / "other_teacher"
    BertForSequenceClassification(
        tiny_bert_config(num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    ).save_pretrained(other)
    monkeypatch.setattr(SupernetTrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match=r"The teacher's label2id=\{'neg': 0, 'pos': 1\} differs from the supernet's"):
        run_train_supernet(
            monkeypatch,
            *common(path, data, tmp_path / "out"),
            "--do_train",
            "--recipe",
            "teacher_first",
            "--teacher_model_name_or_path",
            str(other),
        )


def test_recipe_arguments_validate():
    with pytest.raises(ValueError, match=r"`teacher_max_steps` must be >= 1"):
        RecipeArguments(teacher_max_steps=0)


def extract_with_finetune(monkeypatch, supernet_dir: Path, data: Path, work: Path, *extra: str) -> tuple:
    """Run extract_subnet.py with a short distillation of the smallest subnet; returns the script module and the
    teachers `finetune_subnet` was given."""
    supernet = hf_nas.ElasticBertForSequenceClassification.from_pretrained(supernet_dir)
    (work / "subnet.json").write_text(supernet.search_space.smallest().to_json_string())
    teachers = []
    real = hf_nas.training.recipes.finetune_subnet

    def spy(*args, **kwargs):
        teachers.append(kwargs["teacher_model"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hf_nas.training.recipes, "finetune_subnet", spy)
    script = load_script("extract_subnet")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "extract_subnet.py", "--supernet", str(supernet_dir), "--subnet_json", str(work / "subnet.json"),
            "--output_dir", str(work / "subnet"), "--skip_latency", "--train_file", str(data),
            "--finetune_batch_size", "8", "--max_seq_length", "16", "--latency_sequence_length", "16", *extra,
        ],
    )  # fmt: skip
    script.main()
    return script, teachers


def test_extract_with_a_short_distillation_reports_both_accuracies(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    out = tmp_path / "supernet"
    run_train_supernet(
        monkeypatch, *common(path, data, out), "--do_train", "--recipe", "teacher_first", "--teacher_max_steps", "2"
    )
    supernet = hf_nas.ElasticBertForSequenceClassification.from_pretrained(out)
    untrained = supernet.extract_subnet(supernet.search_space.smallest())
    script, teachers = extract_with_finetune(
        monkeypatch, out, data, tmp_path, "--finetune_steps", "2", "--validation_file", str(data)
    )
    assert teachers == [str(out / "teacher")]  # the teacher saved beside the supernet
    card = (tmp_path / "subnet" / "README.md").read_text()
    assert "accuracy_without_retraining" in card and "then trained alone for 2 steps" in card
    extracted = AutoModelForSequenceClassification.from_pretrained(tmp_path / "subnet", trust_remote_code=True)
    changed = [n for n, p in extracted.state_dict().items() if not torch.equal(p, untrained.state_dict()[n])]
    assert changed, "the fine-tune did not change the subnet"
    with pytest.raises(ValueError, match="--finetune_steps needs the data the subnet is distilled on: --train_file"):
        script.check_finetune_data(script.EvaluationArguments(), script.FinetuneArguments(finetune_steps=3))


def test_teacher_first_from_a_saved_supernet_keeps_its_weights_and_teacher(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    first = tmp_path / "first"
    teacher_first = ("--recipe", "teacher_first")
    run_train_supernet(
        monkeypatch, *common(path, data, first), "--do_train", *teacher_first, "--teacher_max_steps", "2"
    )
    saved = hf_nas.ElasticBertForSequenceClassification.from_pretrained(first).state_dict()
    seen = {}
    real_init = SupernetTrainer.__init__

    def record(self, *args, **kwargs):
        seen["weights"] = {k: v.clone() for k, v in kwargs["model"].state_dict().items()}
        seen["teacher"] = kwargs["teacher_model"]
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "__init__", record)
    script = load_script("train_supernet")
    monkeypatch.setattr(script, "finetune_teacher", lambda *a, **k: pytest.fail("the teacher was trained again"))
    argv = common(first, data, tmp_path / "second")
    monkeypatch.setattr(sys, "argv", ["train_supernet.py", *argv, "--do_train", *teacher_first])
    script.main()
    for name, value in saved.items():  # the supernet continues from its own weights, not from the teacher's
        torch.testing.assert_close(seen["weights"][name], value, msg=name)
    teacher = BertForSequenceClassification.from_pretrained(first / "teacher")
    for (name, a), b in zip(seen["teacher"].state_dict().items(), teacher.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_extract_distills_from_the_supernets_full_model_without_a_teacher(tmp_path, monkeypatch, tiny_checkpoint):
    path, data = tiny_checkpoint
    out = tmp_path / "supernet"
    run_train_supernet(monkeypatch, *common(path, data, out), "--do_train")  # one pass: no teacher folder
    supernet = hf_nas.ElasticBertForSequenceClassification.from_pretrained(out)
    full = supernet.extract_subnet(supernet.max_subnet())
    _, teachers = extract_with_finetune(monkeypatch, out, data, tmp_path, "--finetune_steps", "1")
    (teacher,) = teachers
    assert isinstance(teacher, BertForSequenceClassification)
    for (name, a), b in zip(teacher.state_dict().items(), full.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert "teacher: the supernet's full model" in (tmp_path / "subnet" / "README.md").read_text()
