"""Tests of `SupernetTrainer`: the sandwich step, distillation wiring, evaluation of named subnets, resuming from a
checkpoint, two processes under DDP, and argument validation.

Everything runs a few steps of the tiny supernet of `conftest.py` (2 labels) on random token ids whose label is a
function of one token. The spies record what the trainer does rather than how long it takes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertForSequenceClassification, TrainerCallback

from hf_nas import SubnetConfig
from hf_nas.metrics import build_compute_metrics
from hf_nas.training import (
    SAMPLER_STATE_NAME,
    SubnetSampler,
    SupernetTrainer,
    SupernetTrainingArguments,
    get_sampler,
)
from hf_nas.training import trainer as trainer_module

from .conftest import make_supernet, tiny_bert_config
from .scripts.ddp_train import GLOBAL_BATCH_SIZE, MAX_STEPS, make_dataset

NUM_LABELS = 2
HEAD_SIZE = 8  # the tiny config: hidden 32, 4 heads
REPO_ROOT = Path(__file__).resolve().parents[1]
DDP_SCRIPT = REPO_ROOT / "tests" / "scripts" / "ddp_train.py"


# ----------------------------------------------------------------------------------------------------------------
# helpers
def make_model(seed: int = 0):
    """The tiny supernet for sequence classification with 2 labels; the same seed gives the same weights."""
    return make_supernet("BertForSequenceClassification", seed=seed, num_labels=NUM_LABELS)


def make_args(output_dir: str | os.PathLike, **overrides: Any) -> SupernetTrainingArguments:
    defaults = {
        "max_steps": 3,
        "per_device_train_batch_size": 8,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 1,
        "dataloader_num_workers": 0,
        "seed": 0,
        "disable_tqdm": True,
    }
    return SupernetTrainingArguments(output_dir=str(output_dir), **{**defaults, **overrides})


def make_batch(num_examples: int = 8) -> dict[str, torch.Tensor]:
    """The first `num_examples` training examples as one batch."""
    return dict(make_dataset().with_format("torch")[:num_examples])


def teacher_model(**overrides: Any) -> BertForSequenceClassification:
    """A vanilla transformers BERT sharing the supernet's vocabulary and labels."""
    torch.manual_seed(1)
    return BertForSequenceClassification(tiny_bert_config(num_labels=NUM_LABELS, **overrides))


class FixedSampler(SubnetSampler):
    """Returns the same list of subnets at every step."""

    name = "fixed"

    def __init__(self, search_space, subnets: list[SubnetConfig]):
        super().__init__(search_space, seed=0)
        self.subnets = list(subnets)

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        return list(self.subnets)


def record_samples(trainer: SupernetTrainer) -> list[tuple[int, int, list[SubnetConfig]]]:
    """Wrap `trainer.sampler.sample` (on the instance, keeping its class) to record `(step, micro_step, subnets)`."""
    calls: list[tuple[int, int, list[SubnetConfig]]] = []
    sample = trainer.sampler.sample

    def recording_sample(step: int, micro_step: int = 0) -> list[SubnetConfig]:
        subnets = sample(step, micro_step)
        calls.append((step, micro_step, list(subnets)))
        return subnets

    trainer.sampler.sample = recording_sample
    return calls


def record_events(trainer: SupernetTrainer, teacher: torch.nn.Module | None = None) -> list[tuple[str, Any]]:
    """Record ("forward", active subnet) at each supernet forward, ("backward", active subnet) at each
    `accelerator.backward` and ("teacher", None) at each teacher forward, in order."""
    events: list[tuple[str, Any]] = []
    supernet = trainer.supernet
    supernet.register_forward_pre_hook(lambda module, args: events.append(("forward", module.active_subnet)))
    if teacher is not None:
        teacher.register_forward_pre_hook(lambda module, args: events.append(("teacher", None)))
    backward = trainer.accelerator.backward

    def recording_backward(loss, **kwargs):
        events.append(("backward", supernet.active_subnet))
        return backward(loss, **kwargs)

    trainer.accelerator.backward = recording_backward
    return events


class CountOptimizerSteps(TrainerCallback):
    def __init__(self):
        self.count = 0

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.count += 1


class StopAtStep(TrainerCallback):
    """Ends training after `step` optimizer steps, as if the job had been killed right after saving."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def logged_losses(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]


def spy_on(monkeypatch: pytest.MonkeyPatch, name: str) -> list[dict[str, Any]]:
    """Replace `hf_nas.training.trainer.<name>` with a wrapper that records its arguments and returns the real value."""
    real: Callable[..., torch.Tensor] = getattr(trainer_module, name)
    calls: list[dict[str, Any]] = []

    def spy(*args, **kwargs):
        value = real(*args, **kwargs)
        calls.append({"args": args, "kwargs": kwargs, "value": value.detach()})
        return value

    monkeypatch.setattr(trainer_module, name, spy)
    return calls


def one_training_step(trainer: SupernetTrainer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """One `training_step` outside the training loop (gradients accumulate into `.grad`, no optimizer step)."""
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    return trainer.training_step(trainer.model, dict(batch))


def subnet_slices(subnet: SubnetConfig, num_layers: int) -> tuple[dict[str, tuple[slice, ...]], list[str]]:
    """The slice of each parameter of `ElasticBertForSequenceClassification` that `subnet` computes with, and the
    names of the parameters of the layers it drops. Written out from the architecture, independently of the library."""
    h = subnet.hidden_size
    everything = slice(None)
    slices: dict[str, tuple[slice, ...]] = {}
    for kind in ("word", "position", "token_type"):
        slices[f"bert.embeddings.{kind}_embeddings.weight"] = (everything, slice(0, h))
    dropped = []
    layer_params = {}
    for i in range(num_layers):
        p = f"bert.encoder.layer.{i}."
        if i >= subnet.num_hidden_layers:
            dropped.append(p)
            continue
        inner = subnet.num_attention_heads[i] * HEAD_SIZE
        ffn = subnet.intermediate_size[i]
        for proj in ("query", "key", "value"):
            layer_params[f"{p}attention.self.{proj}.weight"] = (slice(0, inner), slice(0, h))
            layer_params[f"{p}attention.self.{proj}.bias"] = (slice(0, inner),)
        layer_params[f"{p}attention.output.dense.weight"] = (slice(0, h), slice(0, inner))
        layer_params[f"{p}intermediate.dense.weight"] = (slice(0, ffn), slice(0, h))
        layer_params[f"{p}intermediate.dense.bias"] = (slice(0, ffn),)
        layer_params[f"{p}output.dense.weight"] = (slice(0, h), slice(0, ffn))
        for name in ("attention.output.dense.bias", "output.dense.bias"):
            layer_params[f"{p}{name}"] = (slice(0, h),)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            layer_params[f"{p}{norm}.weight"] = (slice(0, h),)
            layer_params[f"{p}{norm}.bias"] = (slice(0, h),)
    slices.update(layer_params)
    for name in ("bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", "bert.pooler.dense.bias"):
        slices[name] = (slice(0, h),)
    slices["bert.pooler.dense.weight"] = (slice(0, h), slice(0, h))
    slices["classifier.weight"] = (everything, slice(0, h))
    slices["classifier.bias"] = (everything,)
    return slices, dropped


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
        for name, p in model.named_parameters()
    }


# ----------------------------------------------------------------------------------------------------------------
# 1. the sandwich step
def test_train_logs_finite_losses_and_runs_forward_then_backward_per_subnet(tmp_path):
    model = make_model()
    space = model.search_space
    steps_counter = CountOptimizerSteps()
    trainer = SupernetTrainer(
        model=model, args=make_args(tmp_path), train_dataset=make_dataset(), callbacks=[steps_counter]
    )
    samples = record_samples(trainer)
    events = record_events(trainer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()

    losses = logged_losses(trainer.state.log_history)
    assert [step for step, _ in losses] == [1, 2, 3]
    assert all(math.isfinite(loss) for _, loss in losses), losses
    assert steps_counter.count == 3

    # one sample call per optimizer step (no gradient accumulation): largest, smallest, 2 random subnets
    assert [(step, micro) for step, micro, _ in samples] == [(0, 0), (1, 0), (2, 0)]
    for _, _, subnets in samples:
        assert len(subnets) == 4
        assert subnets[0] == space.largest() and subnets[1] == space.smallest()
        assert all(s in space for s in subnets)
    # each subnet's backward right after its own forward, in the sampler's order; the largest subnet's forward is
    # also the in-place teacher's (no extra forward)
    expected = [event for _, _, subnets in samples for s in subnets for event in (("forward", s), ("backward", s))]
    assert events == expected
    assert model.active_subnet == space.largest()  # restored after every step
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "classifier.weight" in changed and "bert.encoder.layer.0.attention.self.query.weight" in changed


@pytest.mark.parametrize(
    "subnet",
    [
        "smallest",
        SubnetConfig(num_hidden_layers=2, num_attention_heads=(3, 2), intermediate_size=(48, 16), hidden_size=24),
    ],
    ids=["smallest", "mixed"],
)
def test_single_subnet_step_gradient_is_confined_to_its_slice(tmp_path, monkeypatch, subnet):
    model = make_model()
    subnet = model.search_space.smallest() if subnet == "smallest" else subnet
    # distillation="inplace" with a sampler that does not start with the largest subnet: the teacher forward of the
    # largest subnet runs without gradients, so it must not leak into the student's gradient
    trainer = SupernetTrainer(
        model=model, args=make_args(tmp_path), sampler=FixedSampler(model.search_space, [subnet])
    )
    events = record_events(trainer)
    with monkeypatch.context() as patch:
        kd_calls = spy_on(patch, "soft_cross_entropy")
        loss = one_training_step(trainer, make_batch())
    assert torch.isfinite(loss)
    largest = model.search_space.largest()
    assert events == [("forward", largest), ("forward", subnet), ("backward", subnet)]
    (kd_call,) = kd_calls
    assert not kd_call["args"][1].requires_grad, "the teacher forward built a graph"

    grads = gradients(model)
    slices, dropped = subnet_slices(subnet, model.config.num_hidden_layers)
    names = set(grads)
    dropped_names = {n for n in names if any(n.startswith(p) for p in dropped)}
    assert names == set(slices) | dropped_names, "the slice table does not cover every parameter"
    for name in dropped_names:
        assert not grads[name].any(), f"{name} belongs to a dropped layer but has a gradient"
    for name, index in slices.items():
        grad = grads[name]
        assert grad[index].abs().sum() > 0, f"{name}: no gradient on the active slice {index}"
        outside = grad.clone()
        outside[index] = 0
        assert not outside.any(), f"{name}: gradient outside the active slice {index}"


def test_sandwich_step_gradient_is_the_sum_of_its_subnets_gradients(tmp_path):
    """Every subnet of the sandwich contributes its whole gradient to the one accumulated step."""
    model = make_model()
    trainer = SupernetTrainer(model=model, args=make_args(tmp_path, num_random_subnets=2))
    samples = record_samples(trainer)
    batch = make_batch()
    sandwich_loss = one_training_step(trainer, batch)
    sandwich_grads = gradients(model)
    (_, _, subnets), *_ = samples
    assert len(subnets) == 4

    summed = {name: torch.zeros_like(g) for name, g in sandwich_grads.items()}
    losses = []
    for subnet in subnets:
        model.zero_grad(set_to_none=True)
        trainer.sampler = FixedSampler(model.search_space, [subnet])
        losses.append(one_training_step(trainer, batch))
        for name, g in gradients(model).items():
            summed[name] += g
    torch.testing.assert_close(sandwich_loss, torch.stack(losses).mean(), atol=1e-6, rtol=0)
    for name, g in sandwich_grads.items():
        torch.testing.assert_close(g, summed[name], atol=1e-6, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("gradient_accumulation_steps", [1, 2])
def test_external_teacher_runs_once_per_batch(tmp_path, gradient_accumulation_steps):
    model = make_model()
    teacher = teacher_model()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    steps_counter = CountOptimizerSteps()
    trainer = SupernetTrainer(
        model=model,
        args=make_args(tmp_path, distillation="teacher", gradient_accumulation_steps=gradient_accumulation_steps),
        teacher_model=teacher,
        train_dataset=make_dataset(),
        callbacks=[steps_counter],
    )
    samples = record_samples(trainer)
    events = record_events(trainer, teacher=teacher)
    trainer.train()

    num_batches = 3 * gradient_accumulation_steps
    assert steps_counter.count == 3  # one optimizer step per training step
    assert [(step, micro) for step, micro, _ in samples] == [
        (step, micro) for step in range(3) for micro in range(gradient_accumulation_steps)
    ]
    # per batch: one teacher forward, then forward + backward of each of the 4 subnets (the largest included: with
    # an external teacher it is a student too)
    expected = []
    for _, _, subnets in samples:
        assert len(subnets) == 4
        expected.append(("teacher", None))
        expected += [event for s in subnets for event in (("forward", s), ("backward", s))]
    assert events == expected
    assert sum(e == ("teacher", None) for e in events) == num_batches
    assert sum(kind == "forward" for kind, _ in events) == 4 * num_batches
    # the teacher does not learn
    assert all(not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    losses = logged_losses(trainer.state.log_history)
    assert len(losses) == 3 and all(math.isfinite(loss) for _, loss in losses)


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    """Two micro batches of 4 accumulate into the step that one batch of 8 makes (same subnets, plain SGD)."""

    def run(output_dir, **overrides):
        model = make_model()
        subnets = [model.search_space.largest(), model.search_space.smallest()]
        trainer = SupernetTrainer(
            model=model,
            args=make_args(output_dir, max_steps=2, optim="sgd", learning_rate=0.5, max_grad_norm=0.0, **overrides),
            sampler=FixedSampler(model.search_space, subnets),
            train_dataset=make_dataset(),
        )
        trainer.train()
        return trainer

    accumulated = run(tmp_path / "accumulated", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    large = run(tmp_path / "large", per_device_train_batch_size=8)
    for (step, actual), (_, expected) in zip(
        logged_losses(accumulated.state.log_history), logged_losses(large.state.log_history), strict=True
    ):
        assert actual == pytest.approx(expected, abs=1e-5), f"step {step}"
    large_weights = large.model.state_dict()
    for name, value in accumulated.model.state_dict().items():
        torch.testing.assert_close(value, large_weights[name], atol=1e-5, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_teacher_loaded_from_path(tmp_path):
    teacher_model().save_pretrained(tmp_path / "teacher")
    trainer = SupernetTrainer(
        model=make_model(),
        args=make_args(
            tmp_path / "out", distillation="teacher", teacher_model_name_or_path=str(tmp_path / "teacher"), max_steps=1
        ),
        train_dataset=make_dataset(),
    )
    assert isinstance(trainer.teacher_model, BertForSequenceClassification)
    assert not trainer.teacher_model.training
    calls = []
    trainer.teacher_model.register_forward_hook(lambda *args: calls.append(1))
    trainer.train()
    assert len(calls) == 1


# ----------------------------------------------------------------------------------------------------------------
# 2.-3. distillation terms
def _step_with(tmp_path, monkeypatch, sampler_subnets=None, teacher=None, **overrides):
    """Loss of one training step from the same initial weights and batch, with spies on the loss functions."""
    model = make_model()
    sampler = FixedSampler(model.search_space, sampler_subnets(model.search_space)) if sampler_subnets else None
    trainer = SupernetTrainer(
        model=model, args=make_args(tmp_path, **overrides), sampler=sampler, teacher_model=teacher
    )
    samples = record_samples(trainer)
    with monkeypatch.context() as patch:
        spies = {
            name: spy_on(patch, name)
            for name in ("soft_cross_entropy", "attention_relation_loss", "hidden_state_loss")
        }
        loss = one_training_step(trainer, make_batch())
    (_, _, subnets), *_ = samples
    return loss, subnets, spies, model


def test_inplace_distillation_adds_the_kd_term(tmp_path, monkeypatch):
    base_loss, subnets, base_spies, _ = _step_with(tmp_path, monkeypatch, kd_loss_weight=0.0)
    assert base_spies["soft_cross_entropy"] == []
    loss, same_subnets, spies, model = _step_with(
        tmp_path, monkeypatch, kd_loss_weight=0.5, distillation_temperature=2.0
    )
    assert same_subnets == subnets
    largest = model.search_space.largest()
    students = [s for s in subnets if s != largest]
    kd_calls = spies["soft_cross_entropy"]
    assert len(kd_calls) == len(students) == 3  # once per subnet that is not the teacher
    with torch.no_grad(), model.subnet(largest):
        batch = make_batch()
        teacher_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    for call in kd_calls:
        student_logits, teacher_arg, temperature = call["args"]
        assert student_logits.shape == (8, NUM_LABELS) and student_logits.requires_grad
        assert not teacher_arg.requires_grad
        torch.testing.assert_close(teacher_arg, teacher_logits, atol=1e-5, rtol=0)  # the largest subnet's logits
        assert temperature == 2.0
    # returned loss = mean over the subnets of their losses; each student's loss gains 0.5 * its KD term
    kd = torch.stack([c["value"] for c in kd_calls])
    torch.testing.assert_close(loss - base_loss, 0.5 * kd.sum() / len(subnets), atol=1e-5, rtol=0)
    assert kd.gt(0).all()


@pytest.mark.parametrize("largest_first", [True, False], ids=["largest-first", "largest-later"])
def test_chain_distillation_teacher_teaches_the_largest_and_the_largest_the_others(
    tmp_path, monkeypatch, largest_first
):
    """distillation="chain": the external teacher's logits are the largest subnet's KD target; the largest subnet's
    own logits (at this step's weights) are every other subnet's. A sampler that does not put the largest first gets
    its targets from a forward without gradients."""

    def subnets(space):
        others = [space.smallest(), space.middle()]
        return [space.largest(), *others] if largest_first else [*others, space.largest()]

    teacher = teacher_model()
    loss, sampled, spies, model = _step_with(
        tmp_path, monkeypatch, sampler_subnets=subnets, teacher=teacher, distillation="chain", kd_loss_weight=0.5
    )
    largest = model.search_space.largest()
    batch = make_batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        teacher_logits = teacher(**inputs).logits
        with model.subnet(largest):
            largest_logits = model(**inputs).logits
    assert not torch.allclose(teacher_logits, largest_logits, atol=1e-3)  # the two targets can be told apart
    kd_calls = spies["soft_cross_entropy"]
    assert len(kd_calls) == len(sampled) == 3
    for subnet, call in zip(sampled, kd_calls, strict=True):
        student, target, _ = call["args"]
        assert student.requires_grad and not target.requires_grad
        expected = teacher_logits if subnet == largest else largest_logits
        torch.testing.assert_close(target, expected, atol=1e-5, rtol=0)
    assert torch.isfinite(loss)


def test_chain_distillation_needs_a_teacher(tmp_path):
    with pytest.raises(ValueError, match=r"distillation='chain' needs `teacher_model`"):
        SupernetTrainer(
            model=make_model(), args=make_args(tmp_path, distillation="chain"), train_dataset=make_dataset()
        )


def test_no_distillation_uses_labels_only(tmp_path, monkeypatch):
    loss, subnets, spies, _ = _step_with(
        tmp_path, monkeypatch, distillation="none", attention_loss_weight=1.0, hidden_loss_weight=1.0
    )
    assert len(subnets) == 4 and torch.isfinite(loss)
    assert all(calls == [] for calls in spies.values())


# the last active layer of each student has a head count no other of its layers has, so a wrong layer shows
def _students(space):
    return [
        space.largest(),
        space.smallest(),
        SubnetConfig(num_hidden_layers=2, num_attention_heads=(1, 3), intermediate_size=(16, 32), hidden_size=24),
        SubnetConfig(
            num_hidden_layers=3, num_attention_heads=(4, 3, 2), intermediate_size=(64, 48, 16), hidden_size=32
        ),
    ]


def test_attention_and_hidden_losses_use_the_last_active_layer(tmp_path, monkeypatch):
    base_loss, _, _, _ = _step_with(tmp_path, monkeypatch, sampler_subnets=_students, kd_loss_weight=0.0)
    loss, subnets, spies, model = _step_with(
        tmp_path,
        monkeypatch,
        sampler_subnets=_students,
        kd_loss_weight=0.0,
        attention_loss_weight=0.7,
        hidden_loss_weight=0.3,
        hidden_loss_layers="last",
        num_relation_heads=1,
    )
    students = subnets[1:]  # the largest (first) is the in-place teacher
    B, T = 8, make_batch()["input_ids"].shape[1]
    attention_calls, hidden_calls = spies["attention_relation_loss"], spies["hidden_state_loss"]
    assert len(attention_calls) == len(hidden_calls) == len(students)
    for subnet, call in zip(students, attention_calls, strict=True):
        student_qkv, teacher_qkv, mask = call["args"]
        inner = subnet.num_attention_heads[subnet.num_hidden_layers - 1] * HEAD_SIZE
        assert [tuple(x.shape) for x in student_qkv] == [(B, T, inner)] * 3, subnet
        assert [tuple(x.shape) for x in teacher_qkv] == [(B, T, 32)] * 3
        assert all(x.requires_grad for x in student_qkv) and not any(x.requires_grad for x in teacher_qkv)
        assert mask.shape == (B, T)
        assert call["kwargs"] == {"num_relation_heads": 1}
    for subnet, call in zip(students, hidden_calls, strict=True):
        student_hidden, teacher_hidden, _ = call["args"]
        assert student_hidden.shape == (B, T, subnet.hidden_size) and student_hidden.requires_grad
        assert teacher_hidden.shape == (B, T, 32) and not teacher_hidden.requires_grad
    # the hidden states are the last hidden states of the student and of the teacher (the largest subnet)
    batch = make_batch()
    for subnet, call in zip(students, hidden_calls, strict=True):
        with torch.no_grad(), model.subnet(subnet):
            expected = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        torch.testing.assert_close(call["args"][0].detach(), expected.last_hidden_state, atol=1e-5, rtol=0)
    with torch.no_grad(), model.subnet(model.search_space.largest()):
        expected = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(hidden_calls[0]["args"][1], expected.last_hidden_state, atol=1e-5, rtol=0)
    # the teacher's q/k/v are the largest subnet's last layer (layer 3)
    with torch.no_grad(), model.subnet(model.search_space.largest()):
        captured = []
        hook = model.bert.encoder.layer[2].attention.self.query.register_forward_hook(
            lambda m, a, out: captured.append(out)
        )
        batch = make_batch()
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hook.remove()
    torch.testing.assert_close(attention_calls[0]["args"][1][0], captured[0], atol=1e-5, rtol=0)
    # both terms reach the returned loss with their weights
    attention = torch.stack([c["value"] for c in attention_calls]).sum()
    hidden = torch.stack([c["value"] for c in hidden_calls]).sum()
    torch.testing.assert_close(loss - base_loss, (0.7 * attention + 0.3 * hidden) / len(subnets), atol=1e-5, rtol=0)


def test_external_teacher_of_another_size_feeds_every_loss(tmp_path, monkeypatch):
    """An external teacher with 6 heads and hidden size 48 teaches every subnet, the largest included."""
    teacher = teacher_model(hidden_size=48, num_attention_heads=6)
    loss, subnets, spies, _ = _step_with(
        tmp_path,
        monkeypatch,
        sampler_subnets=_students,
        teacher=teacher,
        distillation="teacher",
        attention_loss_weight=1.0,
        hidden_loss_weight=1.0,
        hidden_loss_layers="last",
    )
    assert torch.isfinite(loss)
    assert [len(spies[n]) for n in spies] == [len(subnets)] * 3
    for subnet, call in zip(subnets, spies["attention_relation_loss"], strict=True):
        student_qkv, teacher_qkv, _ = call["args"]
        assert student_qkv[0].shape[-1] == subnet.num_attention_heads[-1] * HEAD_SIZE
        assert teacher_qkv[0].shape[-1] == 48
    for call in spies["hidden_state_loss"]:
        assert call["args"][1].shape[-1] == 48


def test_unlabeled_text_with_an_external_teacher(tmp_path):
    """Task-agnostic mode: without labels the students learn from the teacher alone."""
    dataset = make_dataset().remove_columns("labels")
    trainer = SupernetTrainer(
        model=make_model(),
        args=make_args(tmp_path, distillation="teacher", attention_loss_weight=1.0, max_steps=2),
        teacher_model=teacher_model(),
        train_dataset=dataset,
    )
    trainer.train()
    losses = logged_losses(trainer.state.log_history)
    assert len(losses) == 2 and all(math.isfinite(loss) for _, loss in losses)


# ----------------------------------------------------------------------------------------------------------------
# 4. evaluation
def _eval_trainer(tmp_path, **overrides):
    return SupernetTrainer(
        model=make_model(),
        args=make_args(tmp_path, per_device_eval_batch_size=16, **overrides),
        eval_dataset=make_dataset(num_examples=16, seed=1),
        compute_metrics=build_compute_metrics(["accuracy"]),
    )


def test_evaluate_reports_each_named_subnet_and_restores_the_active_one(tmp_path):
    trainer = _eval_trainer(tmp_path)
    model = trainer.model
    space = model.search_space
    active = space.sample(seed=3)
    model.set_subnet(active)
    metrics = trainer.evaluate()

    for name in ("largest", "middle", "smallest"):
        assert f"eval_{name}_accuracy" in metrics and f"eval_{name}_loss" in metrics
    assert "eval_accuracy" not in metrics
    assert model.active_subnet == active
    # each entry is the metric of that subnet (one eval batch holds the whole set)
    eval_set = make_dataset(num_examples=16, seed=1).with_format("torch")[:]
    for name, subnet in (("largest", space.largest()), ("middle", space.middle()), ("smallest", space.smallest())):
        with torch.no_grad(), model.subnet(subnet):
            model.eval()
            out = model(**eval_set)
        accuracy = (out.logits.argmax(-1) == eval_set["labels"]).float().mean().item()
        assert metrics[f"eval_{name}_loss"] == pytest.approx(out.loss.item(), abs=1e-5), name
        assert metrics[f"eval_{name}_accuracy"] == pytest.approx(accuracy), name
    assert len({metrics[f"eval_{n}_loss"] for n in ("largest", "middle", "smallest")}) == 3


def test_evaluate_named_subset_and_plain_fallback(tmp_path):
    metrics = _eval_trainer(tmp_path, eval_subnets="smallest").evaluate()
    assert "eval_smallest_accuracy" in metrics
    assert not any(k.startswith(("eval_largest", "eval_middle")) for k in metrics)
    metrics = _eval_trainer(tmp_path, eval_subnets="").evaluate()  # no named subnet: the active one, plain keys
    assert "eval_accuracy" in metrics and "eval_loss" in metrics


def test_evaluate_restores_the_active_subnet_on_error(tmp_path):
    def failing_metrics(eval_pred):
        raise RuntimeError("metric failed")

    trainer = SupernetTrainer(
        model=make_model(),
        args=make_args(tmp_path),
        eval_dataset=make_dataset(num_examples=8),
        compute_metrics=failing_metrics,
    )
    active = trainer.model.search_space.sample(seed=5)
    trainer.model.set_subnet(active)
    with pytest.raises(RuntimeError, match="metric failed"):
        trainer.evaluate()
    assert trainer.model.active_subnet == active


def test_evaluation_during_training(tmp_path):
    trainer = SupernetTrainer(
        model=make_model(),
        args=make_args(tmp_path, eval_strategy="steps", eval_steps=2, max_steps=2, per_device_eval_batch_size=16),
        train_dataset=make_dataset(),
        eval_dataset=make_dataset(num_examples=16, seed=1),
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_smallest_accuracy" in entry]
    assert len(evaluations) == 1 and evaluations[0]["step"] == 2
    assert trainer.model.active_subnet == trainer.model.search_space.largest()


# ----------------------------------------------------------------------------------------------------------------
# 5. kill and resume
def _resume_args(output_dir, sampler, **overrides):
    return make_args(output_dir, max_steps=6, sampler=sampler, learning_rate=1e-3, **overrides)


def _approx_state(state: Any) -> Any:
    """Floats of a sampler state as `pytest.approx`, recursively (None and strings as they are)."""
    if isinstance(state, dict):
        return {k: _approx_state(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_approx_state(v) for v in state]
    return pytest.approx(state, abs=1e-6) if isinstance(state, float) else state


@pytest.mark.parametrize("sampler", ["sandwich", "shiftnas"])
def test_kill_and_resume_continues_identically(tmp_path, sampler):
    # straight: 6 steps
    straight = SupernetTrainer(
        model=make_model(), args=_resume_args(tmp_path / "straight", sampler), train_dataset=make_dataset()
    )
    straight_samples = record_samples(straight)
    straight.train()
    straight_state = straight.sampler.state_dict()

    # killed right after saving checkpoint-3
    killed = SupernetTrainer(
        model=make_model(),
        args=_resume_args(tmp_path / "run", sampler, save_strategy="steps", save_steps=3),
        train_dataset=make_dataset(),
        callbacks=[StopAtStep(3)],
    )
    killed_samples = record_samples(killed)
    killed.train()
    assert killed.state.global_step == 3
    checkpoint = tmp_path / "run" / "checkpoint-3"
    state_file = checkpoint / SAMPLER_STATE_NAME
    assert state_file.is_file()
    saved_state = json.loads(state_file.read_text())
    assert saved_state == killed.sampler.state_dict()
    if sampler == "shiftnas":
        assert any(loss is not None for loss in saved_state["ema_losses"]), "the saved state holds no loss"

    # a new trainer, a new model object built from the same initial weights
    resumed = SupernetTrainer(
        model=make_model(),
        args=_resume_args(tmp_path / "run", sampler, save_strategy="steps", save_steps=3),
        train_dataset=make_dataset(),
    )
    resumed_samples = record_samples(resumed)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6

    assert [(s, m) for s, m, _ in straight_samples] == [(step, 0) for step in range(6)]
    assert killed_samples + resumed_samples == straight_samples
    expected_losses = logged_losses(straight.state.log_history)
    actual_losses = logged_losses(resumed.state.log_history)
    assert [s for s, _ in actual_losses] == [s for s, _ in expected_losses] == [1, 2, 3, 4, 5, 6]
    for (step, actual), (_, expected) in zip(actual_losses, expected_losses, strict=True):
        assert actual == pytest.approx(expected, abs=1e-6), f"step {step}"
    straight_weights, resumed_weights = straight.model.state_dict(), resumed.model.state_dict()
    for name, value in straight_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, atol=1e-6, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    assert resumed.sampler.state_dict() == _approx_state(straight_state)


# ----------------------------------------------------------------------------------------------------------------
# 6. two processes (gloo on CPU)
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a timeout can end the workers too
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command)} ran past {timeout} s:\n{output[-5000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output)


def _failure(result: subprocess.CompletedProcess) -> str:
    """The error lines of the workers (a launcher's own report would bury them) and the end of the output."""
    errors = [line for line in result.stdout.splitlines() if "Error" in line and "Traceback" not in line]
    return "\n".join(dict.fromkeys(errors)) + "\n---\n" + result.stdout[-3000:]


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("one_process")
    result = _run([sys.executable, str(DDP_SCRIPT), str(outdir)])
    assert result.returncode == 0, _failure(result)
    return _load(outdir / "rank0.pt")


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path, one_process_run):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(DDP_SCRIPT),
        str(tmp_path),
    ]
    result = _run(command)
    assert result.returncode == 0, _failure(result)
    ranks = [_load(tmp_path / f"rank{r}.pt") for r in range(2)]
    one = one_process_run
    assert [r["world_size"] for r in ranks] == [2, 2] and one["world_size"] == 1

    # every rank trained the same subnets (shiftnas: its state follows the losses averaged across the ranks)
    assert ranks[0]["sampled"] == ranks[1]["sampled"] == one["sampled"]
    assert len(ranks[0]["sampled"]) == MAX_STEPS
    assert ranks[0]["sampler_state"] == ranks[1]["sampler_state"]
    # each rank read its half of the global batch that the single process reads
    for step in range(MAX_STEPS):
        halves = [r["input_ids"][step] for r in ranks]
        assert all(h.shape[0] == GLOBAL_BATCH_SIZE // 2 for h in halves)
        assert torch.equal(torch.cat(halves), one["input_ids"][step])
    # gradients were reduced once per step, during the backward of its last subnet
    num_subnets = [len(subnets) for _, _, subnets in ranks[0]["sampled"]]
    last_backward = [sum(num_subnets[: i + 1]) for i in range(MAX_STEPS)]
    for r in ranks:
        assert r["num_backward"] == last_backward[-1]
        assert sorted(set(r["reduced_at"])) == last_backward
    # identical weights on both ranks, equal to the one-process run on the same global batches
    for name, value in ranks[0]["state_dict"].items():
        torch.testing.assert_close(ranks[1]["state_dict"][name], value, atol=0, rtol=0)
        torch.testing.assert_close(
            value, one["state_dict"][name], atol=1e-4, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
        )
    # the logged loss (averaged over the ranks) matches
    for (step, actual), (_, expected) in zip(
        logged_losses(ranks[0]["log_history"]), logged_losses(one["log_history"]), strict=True
    ):
        assert actual == pytest.approx(expected, abs=1e-4), f"step {step}"
    # so do the loss terms and the per-role losses, reduced across the ranks like the loss
    logs = [[entry for entry in r["log_history"] if "loss" in entry] for r in (*ranks, one)]
    for first, second, reference in zip(*logs, strict=True):
        keys = sorted(key for key in reference if key.startswith("loss_"))
        assert {"loss_task", "loss_kd", "loss_hidden", "loss_attention", "loss_largest", "loss_random"} <= set(keys)
        assert sorted(key for key in first if key.startswith("loss_")) == keys
        for key in keys:
            assert first[key] == second[key], key  # every rank logs the reduced value
            assert first[key] == pytest.approx(reference[key], abs=1e-4), f"step {reference['step']}: {key}"


# ----------------------------------------------------------------------------------------------------------------
# 7. bad arguments fail before training
def test_find_unused_parameters_defaults_to_false_and_true_is_refused(tmp_path):
    assert make_args(tmp_path).ddp_find_unused_parameters is False
    with pytest.raises(ValueError, match="ddp_find_unused_parameters=True is not supported"):
        make_args(tmp_path, ddp_find_unused_parameters=True)


def test_unknown_sampler(tmp_path):
    with pytest.raises(
        ValueError, match=r"Unknown sampler 'nope'; allowed: \['fixed', 'instatune', 'random', 'sandwich'"
    ):
        make_args(tmp_path, sampler="nope")


@pytest.mark.parametrize("name", ["task_loss_weight", "kd_loss_weight", "attention_loss_weight", "hidden_loss_weight"])
def test_negative_loss_weight(tmp_path, name):
    with pytest.raises(ValueError, match=rf"`{name}` must be >= 0, got -0.5"):
        make_args(tmp_path, **{name: -0.5})


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature(tmp_path, temperature):
    with pytest.raises(ValueError, match=rf"`distillation_temperature` must be > 0, got {temperature}"):
        make_args(tmp_path, distillation_temperature=temperature)


def test_unknown_eval_subnet(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown eval_subnets \['biggest'\]; allowed: \['largest', 'middle'"):
        make_args(tmp_path, eval_subnets="largest,biggest")


def test_unknown_distillation_mode(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown distillation 'self'"):
        make_args(tmp_path, distillation="self")


def test_teacher_distillation_without_teacher(tmp_path):
    with pytest.raises(
        ValueError, match=r"distillation='teacher' needs `teacher_model` or `teacher_model_name_or_path`"
    ):
        SupernetTrainer(model=make_model(), args=make_args(tmp_path, distillation="teacher"))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [({"vocab_size": 50}, "vocab_size"), ({"num_labels": 3}, "num_labels")],
    ids=["vocab", "labels"],
)
def test_teacher_with_another_vocabulary_or_labels(tmp_path, overrides, key):
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(tiny_bert_config(**{"num_labels": NUM_LABELS, **overrides}))
    with pytest.raises(ValueError, match=rf"The teacher's {key}=\d+ differs from the supernet's {key}="):
        SupernetTrainer(model=make_model(), args=make_args(tmp_path, distillation="teacher"), teacher_model=teacher)


@pytest.mark.parametrize("distillation", ["inplace", "none"])
def test_teacher_given_without_teacher_distillation(tmp_path, distillation):
    with pytest.raises(ValueError, match=rf"A teacher model was given but distillation='{distillation}'"):
        SupernetTrainer(
            model=make_model(), args=make_args(tmp_path, distillation=distillation), teacher_model=teacher_model()
        )


def test_model_that_is_not_a_supernet(tmp_path):
    with pytest.raises(
        TypeError, match=r"SupernetTrainer trains an elastic supernet .*got BertForSequenceClassification"
    ):
        SupernetTrainer(model=teacher_model(), args=make_args(tmp_path))


def test_plain_training_arguments(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(TypeError, match=r"`args` must be SupernetTrainingArguments, got TrainingArguments"):
        SupernetTrainer(model=make_model(), args=TrainingArguments(str(tmp_path), use_cpu=True, report_to=[]))


def test_sampler_of_the_wrong_type(tmp_path):
    with pytest.raises(TypeError, match=r"`sampler` must be a SubnetSampler, got str"):
        SupernetTrainer(model=make_model(), args=make_args(tmp_path), sampler="sandwich")


def test_sampler_by_name_uses_the_arguments(tmp_path):
    trainer = SupernetTrainer(
        model=make_model(), args=make_args(tmp_path, sampler="shiftnas", num_random_subnets=3, sampler_seed=7)
    )
    expected = get_sampler("shiftnas", trainer.model.search_space, seed=7, num_random_subnets=3)
    assert trainer.sampler.name == "shiftnas" and trainer.sampler.seed == 7
    assert trainer.sampler.sample(5) == expected.sample(5)
    assert len(trainer.sampler.sample(0)) == 5


def test_the_targeted_sampler_takes_its_targets_from_the_arguments(tmp_path):
    args = make_args(
        tmp_path, sampler="targeted", sampler_mac_targets="0.6,0.3", sampler_mac_tolerance=0.2,
        uniform_subnet_probability=0.5, num_random_subnets=3,
    )  # fmt: skip
    trainer = SupernetTrainer(model=make_model(), args=args, train_dataset=make_dataset())
    expected = get_sampler(
        "targeted", trainer.model.search_space, seed=0, mac_targets=(0.6, 0.3), tolerance=0.2, uniform_probability=0.5,
        num_random_subnets=3,
    )  # fmt: skip
    assert trainer.sampler.name == "targeted" and trainer.sampler.mac_targets == (0.6, 0.3)
    assert [trainer.sampler.sample(step) for step in range(3)] == [expected.sample(step) for step in range(3)]
    assert trainer.train().global_step == 3
    assert SupernetTrainingArguments("o", sampler="targeted").mac_targets() == (0.5, 0.25)
    # sampler_include_smallest=False: the same steps without the space's smallest subnet
    lean = SupernetTrainer(
        model=make_model(), train_dataset=make_dataset(),
        args=make_args(
            tmp_path, sampler="targeted", sampler_mac_targets="0.6,0.3", sampler_mac_tolerance=0.2,
            uniform_subnet_probability=0.5, num_random_subnets=3, sampler_include_smallest=False,
        ),
    )  # fmt: skip
    smallest = trainer.model.search_space.smallest()
    for step in range(3):
        assert lean.sampler.sample(step) == [s for i, s in enumerate(expected.sample(step)) if i != 1]
        assert smallest not in lean.sampler.sample(step)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"sampler_mac_targets": "0.5"},
            r"`sampler_mac_targets` is an option of the targeted sampler, not of 'sandwich'",
        ),
        ({"sampler": "targeted", "sampler_mac_targets": "half"}, r"comma-separated shares in \(0, 1\] such as"),
        ({"sampler": "targeted", "sampler_mac_targets": "0.5,1.2"}, r"shares in \(0, 1\], got \[1.2\]"),
        ({"sampler": "targeted", "sampler_mac_tolerance": 0.0}, r"`sampler_mac_tolerance` must be in \(0, 1\]"),
        (
            {"sampler_include_smallest": False},
            r"`sampler_include_smallest=False` is an option of the targeted sampler, not of 'sandwich'",
        ),
    ],
)
def test_bad_targeted_sampler_arguments(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_args(tmp_path, **overrides)
