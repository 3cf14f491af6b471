"""Mixture-of-Supernets with the rest of hf-nas: `SupernetTrainer` adds the mixture from its arguments and trains
experts and routers under every sampler and both distillation modes; a run killed and resumed (in process, and with a
real SIGKILL through `hf-nas train`) ends identical to an uninterrupted one; the subnet search measures the mixture's
weights; the gradient search refuses a mixture supernet with a clear error."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from hf_nas import GradientSearchArguments, GradientSearchTrainer, SubnetSearch
from hf_nas.gradient import MixedForward
from hf_nas.mixture import MixtureConfig, enable_mixture, has_mixture, mixture_linears
from hf_nas.search.objectives import TaskMetricObjective, get_objective
from hf_nas.training import SupernetTrainer

from .conftest import make_supernet
from .scripts.ddp_train import make_dataset
from .test_trainer import StopAtStep, logged_losses, make_args, record_samples, teacher_model

NUM_LABELS = 2


def make_model(seed: int = 0):
    return make_supernet("BertForSequenceClassification", seed=seed, num_labels=NUM_LABELS)


def optimized(trainer: SupernetTrainer) -> set[int]:
    return {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}


# ----------------------------------------------------------------------------------------------------------------
# training
@pytest.mark.parametrize(
    ("sampler", "distillation", "targets", "extra"),
    [
        ("sandwich", "teacher", "ffn,attention", {"hidden_loss_weight": 1.0, "attention_loss_weight": 1.0}),
        ("sandwich", "inplace", "ffn", {"protect_largest_gradient": True, "max_grad_norm": 1.0}),
        ("shiftnas", "inplace", "ffn", {}),
        ("instatune", "inplace", "ffn", {"uniform_subnet_probability": 0.5}),
    ],
)
def test_the_trainer_adds_the_mixture_and_trains_experts_and_routers(tmp_path, sampler, distillation, targets, extra):
    model = make_model()
    args = make_args(
        tmp_path,
        max_steps=3,
        learning_rate=1e-2,
        sampler=sampler,
        distillation=distillation,
        mixture_of_supernets="neuron",
        mixture_router_hidden_size=16,
        mixture_target_modules=targets,
        **extra,
    )
    teacher = teacher_model() if distillation == "teacher" else None
    trainer = SupernetTrainer(model=model, args=args, teacher_model=teacher, train_dataset=make_dataset())
    assert has_mixture(model)
    assert model.config.mixture_of_supernets == args.mixture_config().to_dict()
    linears = mixture_linears(model)
    assert len(linears) == model.config.num_hidden_layers * (6 if "attention" in targets else 2)
    before = copy.deepcopy({id(m): [p.detach().clone() for p in m.router.parameters()] for m in linears})
    trainer.train()
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in logged_losses(trainer.state.log_history))
    params = optimized(trainer)
    for linear in linears:
        assert {id(linear.expert_weights), *map(id, linear.router.parameters())} <= params
        # identical at the start, the experts drift apart (alpha differs between subnets) and then the router learns
        assert not torch.equal(linear.expert_weights[0], linear.weight), "the experts never separated"
        changed = [not torch.equal(p, q) for p, q in zip(linear.router.parameters(), before[id(linear)], strict=True)]
        assert any(changed), "the router never learned"


def test_the_routers_get_their_own_learning_rate_and_the_expert_noise_reaches_the_model(tmp_path):
    args = make_args(
        tmp_path, max_steps=2, learning_rate=1e-4, weight_decay=0.01, mixture_of_supernets="layer",
        mixture_router_hidden_size=16, mixture_router_init_std=0.0, mixture_expert_init_noise=0.05,
        mixture_router_learning_rate=1e-2,
    )  # fmt: skip
    model = make_model()
    trainer = SupernetTrainer(model=model, args=args, train_dataset=make_dataset())
    assert model.config.mixture_of_supernets["expert_init_noise"] == 0.05
    assert all(not torch.equal(m.expert_weights[0], m.weight) for m in mixture_linears(model))
    trainer.train()
    routers = {id(p) for m in mixture_linears(model) for p in m.router.parameters()}
    by_lr: dict[float, set[int]] = {}
    for group in trainer.optimizer.param_groups:
        by_lr.setdefault(group["initial_lr"], set()).update(map(id, group["params"]))
    assert by_lr[1e-2] == routers and not by_lr[1e-4] & routers
    assert optimized(trainer) == {id(p) for p in model.parameters() if p.requires_grad}
    decays = {g["weight_decay"] for g in trainer.optimizer.param_groups if set(map(id, g["params"])) <= routers}
    assert decays == {0.0, 0.01}  # the router groups keep the weight decay of the groups they came from
    with pytest.raises(ValueError, match="`mixture_router_learning_rate` must be > 0"):
        make_args(tmp_path, mixture_of_supernets="layer", mixture_router_learning_rate=0.0)
    plain = SupernetTrainer(
        model=make_model(), args=make_args(tmp_path, mixture_router_learning_rate=1e-2), train_dataset=make_dataset()
    )
    with pytest.raises(ValueError, match="has no Mixture-of-Supernets router: set `mixture_of_supernets`"):
        plain.create_optimizer()


def test_the_trainer_keeps_a_matching_mixture_and_refuses_another(tmp_path):
    model = enable_mixture(make_model(), MixtureConfig(mode="layer", router_hidden_size=16))
    args = make_args(tmp_path, mixture_of_supernets="layer", mixture_router_hidden_size=16)
    linears = mixture_linears(model)
    SupernetTrainer(model=model, args=args, train_dataset=make_dataset())
    assert mixture_linears(model) == linears  # kept as it was, not converted again
    plain_args = make_args(tmp_path)  # mixture_of_supernets="off": a saved mixture supernet keeps its mixture
    SupernetTrainer(model=model, args=plain_args, train_dataset=make_dataset())
    assert has_mixture(model)
    with pytest.raises(ValueError, match=r"has the mixture .*'mode': 'layer'.* already; asked for .*'mode': 'neuron'"):
        SupernetTrainer(
            model=model, args=make_args(tmp_path, mixture_of_supernets="neuron"), train_dataset=make_dataset()
        )


def _resume_args(output_dir: Path, **overrides: Any):
    return make_args(
        output_dir,
        max_steps=6,
        sampler="shiftnas",  # a sampler with a state of its own, saved with the checkpoint
        learning_rate=1e-2,
        mixture_of_supernets="neuron",
        mixture_router_hidden_size=16,
        **overrides,
    )


def test_a_run_killed_after_a_checkpoint_resumes_identically(tmp_path):
    straight = SupernetTrainer(
        model=make_model(), args=_resume_args(tmp_path / "straight"), train_dataset=make_dataset()
    )
    straight_samples = record_samples(straight)
    straight.train()

    save = {"save_strategy": "steps", "save_steps": 3}
    killed = SupernetTrainer(
        model=make_model(),
        args=_resume_args(tmp_path / "run", **save),
        train_dataset=make_dataset(),
        callbacks=[StopAtStep(3)],
    )
    killed_samples = record_samples(killed)
    killed.train()
    assert killed.state.global_step == 3

    # a new process would build the supernet from its source again: a plain supernet, the mixture added by the trainer
    resumed = SupernetTrainer(
        model=make_model(), args=_resume_args(tmp_path / "run", **save), train_dataset=make_dataset()
    )
    resumed_samples = record_samples(resumed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))
    assert resumed.state.global_step == 6

    assert killed_samples + resumed_samples == straight_samples
    expected_losses, actual_losses = (
        logged_losses(straight.state.log_history),
        logged_losses(resumed.state.log_history),
    )
    assert [s for s, _ in actual_losses] == [s for s, _ in expected_losses] == [1, 2, 3, 4, 5, 6]
    for (step, actual), (_, expected) in zip(actual_losses, expected_losses, strict=True):
        assert actual == pytest.approx(expected, abs=1e-6), f"step {step}"
    expected_weights, actual_weights = straight.model.state_dict(), resumed.model.state_dict()
    assert any("expert_weights" in k for k in expected_weights) and any(".router." in k for k in expected_weights)
    assert actual_weights.keys() == expected_weights.keys()
    for name, value in expected_weights.items():
        torch.testing.assert_close(actual_weights[name], value, atol=1e-6, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.slow
def test_hf_nas_train_killed_by_sigkill_mid_step_resumes_identically(tmp_path, monkeypatch):
    """`hf-nas train --mixture_of_supernets layer`, SIGKILLed right after a subnet's backward past the first checkpoint,
    then run again: the final supernet (experts and routers included) and the sampled subnets equal an uninterrupted
    run's (the driver and the checks of tests/test_training_safety.py)."""
    from safetensors.torch import load_file

    from .test_training_safety import (
        MAX_STEPS,
        SAVE_STEPS,
        check_identical,
        make_checkpoint,
        resume,
        run_child,
        train_argv,
    )

    path, data = make_checkpoint(tmp_path)
    mixture = ["--mixture_of_supernets", "layer", "--mixture_router_hidden_size", "16"]
    reference = run_child("none", -1, train_argv(path, data, tmp_path / "straight") + mixture, tmp_path)
    reference["weights"] = load_file(tmp_path / "straight" / "model.safetensors")
    assert any(key.endswith("expert_weights") for key in reference["weights"])
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["mixture_of_supernets"]["mode"] == "layer"

    per_step = len(reference["samples"][0][2])
    target = per_step * SAVE_STEPS + per_step // 2 + per_step  # inside step SAVE_STEPS + 1, after checkpoint-2
    argv = train_argv(path, data, tmp_path / "out") + mixture
    killed = run_child("backward", target, argv, tmp_path)
    assert SAVE_STEPS <= killed["samples"][-1][0] < MAX_STEPS
    resumed = resume(argv, monkeypatch)
    check_identical(tmp_path / "out", killed, resumed, reference)


# ----------------------------------------------------------------------------------------------------------------
# search and gradient search
def test_the_subnet_search_measures_the_mixture_weights(tmp_path):
    model = enable_mixture(make_model(), MixtureConfig(mode="neuron", router_hidden_size=16))
    with torch.no_grad():
        for linear in mixture_linears(model):  # experts apart, as after training: the weights differ per subnet
            linear.expert_weights.add_(0.5 * torch.randn_like(linear.expert_weights))
            for param in linear.router.parameters():
                param.copy_(torch.randn_like(param))
    rows = make_dataset(num_examples=24, seed=3)
    accuracy = TaskMetricObjective(list(rows), batch_size=8)
    search = SubnetSearch(
        model,
        [accuracy, get_objective("macs", sequence_length=8)],
        "random",
        num_evaluations=5,
        use_predictors=False,
        show_progress=False,
    )
    results = search.run()
    assert len(results.records) == 5
    batch = dict(rows.with_format("torch")[:])
    labels = batch.pop("labels")
    plain = make_model()  # the same weights without the mixture (expert 0 alone): what a search must not measure
    plain.load_state_dict(model.state_dict(), strict=False)
    differs = False
    for index in range(len(results.records)):
        subnet = results.subnet(index)
        extracted = model.extract_subnet(subnet).eval()  # ordinary weights: W(a) of that subnet
        with torch.no_grad(), plain.subnet(subnet):
            expected = (extracted(**batch).logits.argmax(-1) == labels).sum().item() / len(labels)
            differs |= (plain(**batch).logits.argmax(-1) == labels).sum().item() / len(labels) != expected
        assert results.records[index]["values"]["accuracy"] == pytest.approx(expected, abs=1e-9), subnet
    assert differs, "the test cannot tell the mixture from expert 0"


def test_the_gradient_search_refuses_a_mixture_supernet(tmp_path):
    model = enable_mixture(make_model(), "layer")
    with pytest.raises(ValueError, match=r"mixed forward \(gradient search\) does not support a Mixture-of-Supernets"):
        MixedForward(model)
    args = GradientSearchArguments(str(tmp_path), max_steps=1, report_to="none", use_cpu=True)
    with pytest.raises(
        ValueError, match=r"GradientSearchTrainer does not support a Mixture-of-Supernets .*hf-nas search"
    ):
        GradientSearchTrainer(model=model, args=args, train_dataset=make_dataset(), arch_dataset=make_dataset())
