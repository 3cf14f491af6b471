"""Training logs: next to `loss`, every logging step logs the loss terms (`loss_task`, `loss_kd`, `loss_hidden`,
`loss_attention`) and the loss of each sampler role (`loss_largest`, `loss_smallest`, `loss_random`), averaged over
the steps since the last log like `loss`. The terms add up to `loss`; the roles are those of the sampled subnets.

Runs a few steps of the tiny supernet of `conftest.py`; nothing here reads a clock. Under DDP the same keys are
compared with a one-process run in `tests/test_trainer.py::test_ddp_two_processes_match_one_process`.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from hf_nas import SubnetConfig
from hf_nas.training import SupernetTrainer
from hf_nas.training.trainer import LOSS_TERMS, SUBNET_ROLES

from .scripts.ddp_train import make_dataset
from .test_trainer import FixedSampler, make_args, make_batch, make_model, one_training_step, record_samples

TERM_KEYS = [f"loss_{name}" for name in LOSS_TERMS]
ROLE_KEYS = [f"loss_{name}" for name in SUBNET_ROLES]
DISTILLING = {"attention_loss_weight": 1.0, "hidden_loss_weight": 1.0}  # with the default kd_loss_weight=1


def train(tmp_path, **overrides: Any) -> tuple[SupernetTrainer, list[tuple[int, int, list]]]:
    """Train the tiny supernet with `make_args(tmp_path, **overrides)`; the trainer and its recorded samples."""
    trainer = SupernetTrainer(model=make_model(), args=make_args(tmp_path, **overrides), train_dataset=make_dataset())
    samples = record_samples(trainer)
    trainer.train()
    return trainer, samples


def training_logs(trainer: SupernetTrainer) -> list[dict[str, Any]]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def roles_of(subnets: list[SubnetConfig], space) -> list[str]:
    """The role of each subnet, written out from the search space."""
    return ["largest" if s == space.largest() else "smallest" if s == space.smallest() else "random" for s in subnets]


def role_mean(entry: dict[str, Any], roles: list[str]) -> float:
    """`loss` from the role losses of a step whose subnets had `roles`: the mean over the subnets."""
    return sum(entry[f"loss_{role}"] for role in roles) / len(roles)


def assert_terms_add_up(entry: dict[str, Any]) -> None:
    terms = [entry[key] for key in TERM_KEYS if key in entry]
    assert all(math.isfinite(v) for v in terms), entry
    assert sum(terms) == pytest.approx(entry["loss"], rel=1e-5, abs=1e-6), entry


# ----------------------------------------------------------------------------------------------------------------
def test_sandwich_logs_every_term_and_role_and_they_add_up_to_the_loss(tmp_path):
    trainer, samples = train(tmp_path, max_steps=3, logging_steps=1, num_random_subnets=2, **DISTILLING)
    space = trainer.supernet.search_space
    logs = training_logs(trainer)
    assert [entry["step"] for entry in logs] == [1, 2, 3]
    for entry, (_, _, subnets) in zip(logs, samples, strict=True):
        assert set(TERM_KEYS + ROLE_KEYS) <= set(entry), entry
        assert all(math.isfinite(entry[key]) for key in TERM_KEYS + ROLE_KEYS), entry
        assert_terms_add_up(entry)
        roles = roles_of(subnets, space)
        assert roles == ["largest", "smallest", "random", "random"]
        assert role_mean(entry, roles) == pytest.approx(entry["loss"], rel=1e-5)


def test_with_the_task_loss_alone_loss_task_is_the_loss(tmp_path):
    trainer, _ = train(tmp_path, max_steps=2, distillation="none")
    for entry in training_logs(trainer):
        assert entry["loss_task"] == pytest.approx(entry["loss"], rel=1e-5)
        assert not {"loss_kd", "loss_hidden", "loss_attention"} & set(entry)  # no other term occurred


def test_in_place_distillation_without_kd_logs_the_task_term_alone(tmp_path):
    trainer, _ = train(tmp_path, max_steps=2, kd_loss_weight=0.0)
    for entry in training_logs(trainer):
        assert entry["loss_task"] == pytest.approx(entry["loss"], rel=1e-5)
        assert "loss_kd" not in entry


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        ("sandwich", {"largest", "smallest", "random"}),
        ("instatune", {"largest", "random"}),
        ("random", None),  # whatever was drawn: written out from the recorded subnets
    ],
)
def test_the_logged_roles_are_those_of_the_sampled_subnets(tmp_path, sampler, expected):
    trainer, samples = train(tmp_path, max_steps=3, sampler=sampler)
    space = trainer.supernet.search_space
    for entry, (_, _, subnets) in zip(training_logs(trainer), samples, strict=True):
        roles = roles_of(subnets, space)
        assert {key for key in ROLE_KEYS if key in entry} == {f"loss_{role}" for role in roles}
        if expected is not None:
            assert set(roles) == expected
        assert role_mean(entry, roles) == pytest.approx(entry["loss"], rel=1e-5)
        assert_terms_add_up(entry)


def test_a_staged_sampler_names_the_smallest_subnet_of_its_stage(tmp_path):
    # width first: the first stage keeps full depth, so its smallest subnet is not the space's smallest
    trainer, samples = train(tmp_path, max_steps=2, sampler_stages="width@0.5,depth")
    (_, _, first), (_, _, second) = samples
    space = trainer.supernet.search_space
    assert first[1] != space.smallest() and first[1].num_hidden_layers == max(space.num_hidden_layers)
    assert second[1] == space.smallest()
    for entry in training_logs(trainer):
        assert {"loss_largest", "loss_smallest", "loss_random"} <= set(entry)


def test_a_log_averages_the_steps_since_the_last_one(tmp_path):
    every_step, _ = train(tmp_path / "1", max_steps=4, logging_steps=1, **DISTILLING)
    every_other, _ = train(tmp_path / "2", max_steps=4, logging_steps=2, **DISTILLING)
    singles, pairs = training_logs(every_step), training_logs(every_other)
    assert [entry["step"] for entry in pairs] == [2, 4]
    for pair, (a, b) in zip(pairs, [singles[0:2], singles[2:4]], strict=True):
        for key in ["loss", *TERM_KEYS, *ROLE_KEYS]:
            assert pair[key] == pytest.approx((a[key] + b[key]) / 2, rel=1e-4, abs=1e-6), key


def test_gradient_accumulation_logs_what_one_large_batch_logs(tmp_path):
    def run(output_dir, **overrides):
        model = make_model()
        space = model.search_space
        middle = space.middle()
        sampler = FixedSampler(space, [space.largest(), space.smallest(), middle, middle])
        trainer = SupernetTrainer(
            model=model,
            args=make_args(
                output_dir, max_steps=2, optim="sgd", learning_rate=0.5, max_grad_norm=0.0, **DISTILLING, **overrides
            ),
            sampler=sampler,
            train_dataset=make_dataset(),
        )
        trainer.train()
        return training_logs(trainer)

    accumulated = run(tmp_path / "accumulated", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    large = run(tmp_path / "large", per_device_train_batch_size=8)
    for a, b in zip(accumulated, large, strict=True):
        assert set(a) == set(b)
        for key in ["loss", *TERM_KEYS, *ROLE_KEYS]:
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
        assert_terms_add_up(a)


def test_steps_outside_training_do_not_leak_into_its_logs(tmp_path):
    trainer = SupernetTrainer(model=make_model(), args=make_args(tmp_path, max_steps=2), train_dataset=make_dataset())
    samples = record_samples(trainer)
    for _ in range(3):
        one_training_step(trainer, make_batch())  # accumulates losses, but before `train`, which starts from nothing
    trainer.model.zero_grad(set_to_none=True)
    trainer.train()
    space = trainer.supernet.search_space
    logs = training_logs(trainer)
    assert len(logs) == 2
    for entry, (_, _, subnets) in zip(logs, samples[3:], strict=True):
        assert_terms_add_up(entry)
        assert role_mean(entry, roles_of(subnets, space)) == pytest.approx(entry["loss"], rel=1e-5)
