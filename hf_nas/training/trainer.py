"""`SupernetTrainer`: fine-tune a supernet so that every subnet in its search space is good (InstaTune, BigNAS).

The Trainer is thin: the sampler (samplers.py) says which subnets a step trains, the pure loss functions
(distillation.py) say how each learns. One optimizer step accumulates the gradients of all the step's subnets;
each subnet's backward runs right after its forward, so memory holds one graph at a time, and under DDP gradients
are synchronized once per step (on the last subnet's backward), not once per subnet.

Besides the Trainer's `loss`, every logging step logs what it is made of, averaged over the steps since the last log
like `loss` (and across processes under DDP): the loss terms `loss_task`, `loss_kd`, `loss_hidden` and
`loss_attention` (weighted, averaged over the subnets of a step, so they add up to `loss`) and the loss of each
sampler role, `loss_largest`, `loss_smallest` and `loss_random` (any subnet that is neither extreme). Only the terms
and roles that occurred are logged.

Checkpoints: besides the Trainer's files, each `checkpoint-N` folder holds the sampler state (`sampler_state.json`),
written atomically and last, once every process has written its files; it marks the checkpoint complete. A run killed
while saving leaves a folder without it, which resuming skips (`resume_from_checkpoint=True` and `hf-nas train` take
the last complete checkpoint, with a log line naming each incomplete one), and which is cleared before that step is
saved again. `save_total_limit` deletes older checkpoints only after the new one is complete, so a complete
checkpoint is on disk at every moment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput, sort_checkpoints

from ..mixture import enable_mixture
from ..models.families import get_family
from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..switchable_norms import (
    enable_switchable_biases,
    enable_switchable_deltas,
    enable_switchable_heads,
    enable_switchable_norms,
)
from ..utils import atomic_write_text
from .checkpoint_weights import CheckpointWeightsMixin
from .distillation import attention_relation_loss, hidden_state_loss, layer_hidden_state_loss, soft_cross_entropy
from .recipes import vanilla_auto_class
from .samplers import StagedSampler, SubnetSampler, get_sampler
from .training_args import EXTERNAL_TEACHER_MODES, SupernetTrainingArguments

__all__ = [
    "LOSS_TERMS",
    "SAMPLER_STATE_NAME",
    "SUBNET_ROLES",
    "SupernetTrainer",
    "check_teacher_config",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
]

logger = logging.getLogger(__name__)

SAMPLER_STATE_NAME = "sampler_state.json"
# The loss terms and the subnet roles logged as `loss_<name>`.
LOSS_TERMS = ("task", "kd", "hidden", "attention")
SUBNET_ROLES = ("largest", "smallest", "random")
_CHECKPOINT_FOLDER = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def split_router_groups(optimizer: torch.optim.Optimizer, model: nn.Module, learning_rate: float) -> int:
    """Move the parameters of `model`'s Mixture-of-Supernets routers out of each group of `optimizer` (before its
    first step) into a copy of that group at `learning_rate`; return how many parameters moved. Raises `ValueError`
    if the model has no router."""
    from ..mixture.router import Router

    routers = {id(p) for m in model.modules() if isinstance(m, Router) for p in m.parameters()}
    if not routers:
        raise ValueError(
            "`mixture_router_learning_rate` is set but the model has no Mixture-of-Supernets router: set "
            "`mixture_of_supernets` (layer or neuron) or leave it unset."
        )
    return split_parameter_groups(optimizer, routers, learning_rate, "router")


def split_norm_budget_groups(optimizer: torch.optim.Optimizer, model: nn.Module, learning_rate: float) -> int:
    """Move the budgets of `model`'s switchable layer norms (`budget_weights`, `budget_biases`) out of each group of
    `optimizer` (before its first step) into a copy of that group at `learning_rate`; return how many parameters
    moved. Raises `ValueError` if the model has no switchable norm."""
    from ..modules import SwitchableElasticLayerNorm

    return _split_budget_groups(
        optimizer,
        model,
        learning_rate,
        SwitchableElasticLayerNorm,
        "budget",
        "norm",
        "layer norms",
        "switchable_layer_norms",
    )


def split_head_budget_groups(optimizer: torch.optim.Optimizer, model: nn.Module, learning_rate: float) -> int:
    """Like [`split_norm_budget_groups`], for the budgets of `model`'s switchable heads (`switch_weights`,
    `switch_biases`). Raises `ValueError` if the model has no switchable head."""
    from ..modules import SwitchableElasticLinear

    return _split_budget_groups(
        optimizer, model, learning_rate, SwitchableElasticLinear, "switch", "head", "heads", "switchable_heads"
    )


def split_bias_budget_groups(optimizer: torch.optim.Optimizer, model: nn.Module, learning_rate: float) -> int:
    """Like [`split_norm_budget_groups`], for the budgets of `model`'s switchable biases (`bias_budgets`). Raises
    `ValueError` if the model has no switchable bias."""
    from ..switchable_norms import switchable_biases

    budgets = {id(m.bias_budgets) for m in switchable_biases(model)}
    if not budgets:
        raise ValueError(
            "`switchable_bias_learning_rate` is set but the model has no switchable biases: set `switchable_biases` "
            "or leave it unset."
        )
    return split_parameter_groups(optimizer, budgets, learning_rate, "bias budget")


def split_delta_groups(optimizer: torch.optim.Optimizer, model: nn.Module, learning_rate: float) -> int:
    """Like [`split_norm_budget_groups`], for `model`'s switchable low-rank deltas (`delta_up`, `delta_down`). Raises
    `ValueError` if the model has none."""
    from ..switchable_norms import switchable_deltas

    deltas = {id(p) for m in switchable_deltas(model) for p in (m.delta_up, m.delta_down)}
    if not deltas:
        raise ValueError(
            "`switchable_delta_learning_rate` is set but the model has no switchable deltas: set "
            "`switchable_delta_rank` or leave it unset."
        )
    return split_parameter_groups(optimizer, deltas, learning_rate, "delta")


def _split_budget_groups(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    learning_rate: float,
    module_type: type,
    prefix: str,
    what: str,
    things: str,
    field: str,
) -> int:
    """Move the `<prefix>_weights` and `<prefix>_biases` of every `module_type` of `model` into groups at
    `learning_rate` (see [`split_parameter_groups`]); `what`, `things` and `field` word the error when there are
    none."""
    budgets = {
        id(p)
        for m in model.modules()
        if isinstance(m, module_type)
        for p in (getattr(m, f"{prefix}_weights"), getattr(m, f"{prefix}_biases"))
        if p is not None
    }
    if not budgets:
        raise ValueError(
            f"`switchable_{what}_learning_rate` is set but the model has no switchable {things}: set `{field}` or "
            "leave it unset."
        )
    return split_parameter_groups(optimizer, budgets, learning_rate, f"{what} budget")


def split_parameter_groups(
    optimizer: torch.optim.Optimizer, ids: set[int], learning_rate: float, what: str = "parameter"
) -> int:
    """Move the parameters whose `id` is in `ids` out of each group of `optimizer` (before its first step) into a
    copy of that group at `learning_rate` (same weight decay; the scheduler, created after, scales it like the
    others); return how many moved."""
    if optimizer.state:
        raise RuntimeError(f"The {what} groups must be split before the optimizer's first step.")
    moved, new_groups = 0, []
    for group in optimizer.param_groups:
        mine = [p for p in group["params"] if id(p) in ids]
        if mine:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
            new_groups.append(
                {**{k: v for k, v in group.items() if k != "params"}, "params": mine, "lr": learning_rate}
            )
            moved += len(mine)
    for group in new_groups:
        if "initial_lr" in group:
            group["initial_lr"] = learning_rate
        optimizer.add_param_group(group)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    return moved


@dataclass
class TeacherTargets:
    """What a teacher forward leaves for the students (all detached). `hidden` holds the embeddings and every
    layer's output, as `output_hidden_states=True` returns them."""

    logits: list[torch.Tensor]
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    hidden: tuple[torch.Tensor, ...] | None = None


class SupernetTrainer(CheckpointWeightsMixin, Trainer):
    """[`Trainer`] that trains a supernet with a subnet sampler and distillation.

    Args:
        model: an elastic model (`ElasticBert*`, ...).
        args: [`SupernetTrainingArguments`].
        teacher_model: an external teacher (model object or path) for `distillation="teacher"`; defaults to
            `args.teacher_model_name_or_path`. Its forward runs once per batch, without gradients.
        sampler: a [`SubnetSampler`] to use instead of the one named by `args.sampler`.
        **kwargs: everything else [`Trainer`] takes (datasets, collator, `compute_metrics`, callbacks, ...).

    Example:

    ```python
    >>> import tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, SupernetTrainingArguments
    >>> from hf_nas.metrics import build_compute_metrics
    >>> from hf_nas.training import SupernetTrainer
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> supernet = ElasticBertForSequenceClassification(config)
    >>> train = dev = [{"input_ids": [2, 5, 7, 9], "labels": i % 2} for i in range(4)]
    >>> args = SupernetTrainingArguments(tempfile.mkdtemp(), max_steps=1, per_device_train_batch_size=2,
    ...                                  save_strategy="no", report_to="none")
    >>> trainer = SupernetTrainer(model=supernet, args=args, train_dataset=train, eval_dataset=dev,
    ...                           compute_metrics=build_compute_metrics(["accuracy"]))
    >>> trainer.train().global_step  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    1
    >>> metrics = trainer.evaluate()
    >>> 0.0 <= metrics["eval_smallest_accuracy"] <= 1.0, "eval_largest_loss" in metrics
    (True, True)
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: SupernetTrainingArguments | None = None,
        teacher_model: PreTrainedModel | str | None = None,
        sampler: SubnetSampler | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, SupernetTrainingArguments):
            raise TypeError(f"`args` must be SupernetTrainingArguments, got {type(args).__name__}.")
        if not isinstance(model, SupernetMixin):
            raise TypeError(
                f"SupernetTrainer trains an elastic supernet (ElasticBert*, ...), got {type(model).__name__}."
            )
        mixture = args.mixture_config()
        if mixture is not None:  # before the Trainer sees the model: the optimizer covers the experts and routers
            enable_mixture(model, mixture)
        boundaries = args.norm_boundaries()
        if boundaries is not None:  # likewise: the optimizer covers the norm budgets
            enable_switchable_norms(model, boundaries)
        if args.switchable_heads:  # and the head budgets
            enable_switchable_heads(model)
        if args.switchable_biases:  # and the bias budgets
            enable_switchable_biases(model)
        if args.switchable_delta_rank:  # and the low-rank deltas
            enable_switchable_deltas(model, args.switchable_delta_rank)
        space = model.search_space
        if sampler is None:
            sampler = self._build_sampler(args, space)
        elif not isinstance(sampler, SubnetSampler):
            raise TypeError(f"`sampler` must be a SubnetSampler, got {type(sampler).__name__}.")
        self.sampler = sampler
        given = teacher_model if teacher_model is not None else args.teacher_model_name_or_path
        self.distillation = args.distillation or ("teacher" if given is not None else "inplace")
        self.teacher_model = self._build_teacher(model, args, teacher_model, self.distillation)
        super().__init__(model=model, args=args, **kwargs)
        if self.teacher_model is not None:
            self.teacher_model.to(self.args.device)
        named = {"largest": space.largest(), "middle": space.middle(), "smallest": space.smallest()}
        self.eval_subnets: dict[str, SubnetConfig] = {name: named[name] for name in args.eval_subnet_names}
        self._micro_step = (-1, 0)  # (optimizer step, micro step within it)
        self._loss_log = _LossLog()
        self._pending_loss_logs: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------------------------
    # set-up
    @staticmethod
    def _build_sampler(args: SupernetTrainingArguments, space) -> SubnetSampler:
        kwargs = {}
        if args.sampler in ("sandwich", "shiftnas", "targeted"):
            kwargs["num_random_subnets"] = args.num_random_subnets
        if args.sampler == "targeted":
            kwargs.update(
                mac_targets=args.mac_targets(),
                tolerance=args.sampler_mac_tolerance,
                include_smallest=args.sampler_include_smallest,
            )
        if args.uniform_subnet_probability > 0:
            if args.sampler == "shiftnas":
                raise ValueError(
                    "uniform_subnet_probability is not supported by the shiftnas sampler; allowed samplers: "
                    "sandwich, instatune, random, targeted."
                )
            kwargs["uniform_probability"] = args.uniform_subnet_probability
        seed = args.seed if args.sampler_seed is None else args.sampler_seed
        if args.sampler_stages is None:
            return get_sampler(args.sampler, space, seed=seed, **kwargs)
        return StagedSampler(
            space, args.sampler_stages, args.max_steps, lambda s: get_sampler(args.sampler, s, seed=seed, **kwargs)
        )

    @staticmethod
    def _build_teacher(
        model: PreTrainedModel,
        args: SupernetTrainingArguments,
        teacher: PreTrainedModel | str | None,
        distillation: str,
    ) -> PreTrainedModel | None:
        teacher = teacher if teacher is not None else args.teacher_model_name_or_path
        if distillation not in EXTERNAL_TEACHER_MODES:
            if teacher is not None:
                raise ValueError(
                    f"A teacher model was given but distillation={distillation!r}; set distillation='teacher' "
                    "(or 'chain')."
                )
            return None
        if teacher is None:
            raise ValueError(f"distillation={distillation!r} needs `teacher_model` or `teacher_model_name_or_path`.")
        if isinstance(teacher, (str, os.PathLike)):
            auto_class = vanilla_auto_class(model)
            teacher = auto_class.from_pretrained(os.fspath(teacher))
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"`teacher_model` must be a model or a path, got {type(teacher).__name__}.")
        check_teacher_config(model.config, teacher.config)
        teacher.eval()
        teacher.requires_grad_(False)
        return teacher

    @property
    def supernet(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------------------------------------
    # training
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer; with `mixture_router_learning_rate`, the Mixture-of-Supernets routers' parameters,
        with `switchable_norm_learning_rate` the switchable norms' budgets, with `switchable_head_learning_rate`
        the switchable heads' budgets, with `switchable_bias_learning_rate` the switchable biases' budgets, and with
        `switchable_delta_learning_rate` the switchable low-rank deltas, in groups of their own at that learning rate
        (the same weight decay and schedule)."""
        created = self.optimizer is None
        optimizer = super().create_optimizer(model)
        model = self.model if model is None else model
        splits = (
            ("mixture_router_learning_rate", "the routers' parameters", split_router_groups),
            ("switchable_norm_learning_rate", "the norm budgets", split_norm_budget_groups),
            ("switchable_head_learning_rate", "the head budgets", split_head_budget_groups),
            ("switchable_bias_learning_rate", "the bias budgets", split_bias_budget_groups),
            ("switchable_delta_learning_rate", "the low-rank deltas", split_delta_groups),
        )
        for name, what, split in splits:
            lr = getattr(self.args, name)
            if lr is None:
                continue
            if not created:
                raise ValueError(
                    f"`{name}` applies to the optimizer the trainer creates; with an optimizer of your own, put "
                    f"{what} in a group of their own instead."
                )
            split(optimizer, model, lr)
        return optimizer

    def _next_micro_step(self) -> tuple[int, int]:
        step = self.state.global_step
        previous_step, micro = self._micro_step
        self._micro_step = (step, micro + 1 if step == previous_step else 0)
        return self._micro_step

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        model.train()
        inputs = self._prepare_inputs(inputs)
        supernet = self.supernet
        step, micro = self._next_micro_step()
        subnets = self.sampler.sample(step, micro)
        args = self.args
        need_qkv, need_hidden = args.attention_loss_weight > 0, args.hidden_loss_weight > 0
        largest = supernet.search_space.largest()
        inplace = self.distillation == "inplace"
        chain = self.distillation == "chain"  # the teacher teaches the largest subnet, the largest the others

        teacher: TeacherTargets | None = None
        external: TeacherTargets | None = None
        if self.teacher_model is not None:
            external = self._teacher_targets(self.teacher_model, inputs, need_qkv, need_hidden)
            teacher = None if chain else external
        if (inplace or chain) and subnets[0] != largest:
            with torch.no_grad(), supernet.subnet(largest):
                teacher = self._teacher_targets(model, inputs, need_qkv, need_hidden)

        scale = 1.0 / self.current_gradient_accumulation_steps
        distributed = self.accelerator.num_processes > 1
        protected = None  # the largest subnet's gradient, set aside (NASViT gradient protection)
        losses = []
        step_terms: list[dict[str, torch.Tensor]] = []  # per subnet: its weighted loss terms, detached
        previous = supernet.active_subnet
        try:
            for i, subnet in enumerate(subnets):
                supernet.activate_subnet(subnet)
                last = i == len(subnets) - 1
                teaches = (inplace or chain) and teacher is None and subnet == largest
                sync = contextlib.nullcontext() if last or not distributed else self.accelerator.no_sync(model)
                with sync:
                    with _capture_qkv(supernet, enabled=need_qkv) as qkv:
                        outputs = model(**inputs, output_hidden_states=need_hidden)
                    hidden = outputs.hidden_states if need_hidden else None
                    if chain and subnet == largest:
                        terms = self._student_terms(outputs, external, qkv, hidden, inputs, subnet)
                    elif teaches or teacher is None:
                        terms = {"task": _task_loss(outputs)}
                    else:
                        terms = self._student_terms(outputs, teacher, qkv, hidden, inputs, subnet)
                    loss = torch.stack(list(terms.values())).sum()
                    if teaches:
                        teacher = TeacherTargets(
                            logits=[t.detach() for t in _logits(outputs)],
                            qkv=tuple(t.detach() for t in qkv) if qkv else None,
                            hidden=tuple(h.detach() for h in hidden) if hidden is not None else None,
                        )
                    if last and distributed:
                        # DDP reduces the gradients on this backward: every parameter must be in its graph, also
                        # those of layers this subnet drops (their gradients came from the earlier subnets).
                        loss = loss + 0.0 * sum(p.view(-1)[0] for p in model.parameters() if p.requires_grad)
                    self.accelerator.backward(loss * scale)
                if args.protect_largest_gradient and protected is None and subnet == largest and not last:
                    protected = self._set_aside_gradients(model, distributed)
                losses.append(loss.detach())
                step_terms.append({name: value.detach() for name, value in terms.items()})
        finally:
            supernet.activate_subnet(previous)
        if args.protect_largest_gradient:
            self._protected_grad_norm = self._protect(model, protected)

        per_subnet = torch.stack(losses)  # (num_subnets,)
        self._loss_log.add(step_terms, self._roles(subnets, step), per_subnet, scale, args.logging_nan_inf_filter)
        if type(self.sampler).update is not SubnetSampler.update:
            reduced = self.accelerator.reduce(per_subnet, reduction="mean") if distributed else per_subnet
            self.sampler.update(subnets, reduced.tolist())
        return per_subnet.mean() * scale

    # ------------------------------------------------------------------------------------------------------------
    # logs: the loss terms and the loss of each sampler role, next to the Trainer's `loss`
    def _roles(self, subnets: list[SubnetConfig], step: int) -> list[str]:
        """The role of each subnet in its step (of `SUBNET_ROLES`): the largest or the smallest subnet of the space
        the sampler draws from at `step` (a staged sampler: the current stage's), or else "random"."""
        space = self.sampler.search_space
        if isinstance(self.sampler, StagedSampler):
            space = self.sampler._samplers[self.sampler.stage_of(step)].search_space
        largest, smallest = space.largest(), space.smallest()
        return ["largest" if s == largest else "smallest" if s == smallest else "random" for s in subnets]

    def _inner_training_loop(self, *args: Any, **kwargs: Any) -> Any:
        self._loss_log = _LossLog()  # like the Trainer's own loss, start from nothing (also after a retry)
        self._pending_loss_logs = {}
        return super()._inner_training_loop(*args, **kwargs)

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        # Resumed mid-epoch from a checkpoint at max_steps, the Trainer would run one more optimizer step.
        if self.state.max_steps > 0 and self.state.global_step >= self.state.max_steps:
            logger.info(
                "The run is at step %d of %d: nothing left to train.", self.state.global_step, self.state.max_steps
            )
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        # The Trainer logs `loss` here, on every process at the same steps: reduce ours now, log them with it.
        if self.control.should_log and self.state.global_step > self._globalstep_last_logged:
            num_steps = self.state.global_step - self._globalstep_last_logged
            self._pending_loss_logs = self._loss_log.pop(self.accelerator, num_steps, self.args.device)
        super()._maybe_log_save_evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """[`Trainer.log`], with the per-term and per-role losses added to the training logs that carry `loss`."""
        if "loss" in logs and self._pending_loss_logs:
            logs = {**logs, **self._pending_loss_logs}
        self._pending_loss_logs = {}
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------------------------
    # gradient protection (NASViT): the largest subnet keeps a plain fine-tuning step
    @staticmethod
    def _set_aside_gradients(model: nn.Module, distributed: bool) -> list[torch.Tensor | None]:
        """Move the gradients now in `.grad` (the largest subnet's) aside and zero `.grad`. Under DDP that backward
        ran without synchronization, so the set-aside gradients are averaged across processes here."""
        grads = []
        for p in model.parameters():
            g = None if p.grad is None else p.grad.detach().clone()
            if g is not None and distributed:
                torch.distributed.all_reduce(g)
                g /= torch.distributed.get_world_size()
            grads.append(g)
            if p.grad is not None:
                p.grad.zero_()
        return grads

    def _protect(self, model: nn.Module, protected: list[torch.Tensor | None] | None) -> torch.Tensor:
        """Clip the other subnets' summed gradient (now in `.grad`) and the largest's (set aside) each to
        `max_grad_norm`, add them, and return the norm the plain sum would have had (what the Trainer logs)."""
        max_norm = self.args.max_grad_norm
        protected = protected if protected is not None else [None] * len(list(model.parameters()))
        pairs = [(p.grad, g) for p, g in zip(model.parameters(), protected, strict=True) if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([o if g is None else o + g for o, g in pairs])
        _clip_tensors_([o for o, _ in pairs], max_norm)
        largest = [g for _, g in pairs if g is not None]
        if largest:
            _clip_tensors_(largest, max_norm)
            for o, g in pairs:
                if g is not None:
                    o.add_(g)
        return norm

    def _clip_grad_norm(self, model: nn.Module) -> torch.Tensor:
        if self.args.protect_largest_gradient:
            return self._protected_grad_norm  # clipped part by part in training_step
        return super()._clip_grad_norm(model)

    def _student_terms(
        self,
        outputs: Any,
        teacher: TeacherTargets,
        qkv: tuple[torch.Tensor, ...] | None,
        hidden: tuple[torch.Tensor, ...] | None,
        inputs: dict[str, Any],
        subnet: SubnetConfig,
    ) -> dict[str, torch.Tensor]:
        """The weighted loss terms of a student subnet, by name (of `LOSS_TERMS`); its loss is their sum."""
        args = self.args
        mask = inputs.get("attention_mask")
        terms: dict[str, torch.Tensor] = {}
        task = getattr(outputs, "loss", None)
        if task is not None and args.task_loss_weight > 0:
            terms["task"] = args.task_loss_weight * task
        student_logits = _logits(outputs)
        if args.kd_loss_weight > 0 and student_logits and teacher.logits:
            kd = [
                soft_cross_entropy(s, t, args.distillation_temperature, mask=_token_mask(s, mask))
                for s, t in zip(student_logits, teacher.logits, strict=True)
            ]
            terms["kd"] = args.kd_loss_weight * torch.stack(kd).mean()
        if args.attention_loss_weight > 0 and qkv and teacher.qkv:
            terms["attention"] = args.attention_loss_weight * attention_relation_loss(
                qkv, teacher.qkv, mask, num_relation_heads=args.num_relation_heads
            )
        if args.hidden_loss_weight > 0 and hidden is not None and teacher.hidden is not None:
            if args.hidden_loss_layers == "last":
                hidden_loss = hidden_state_loss(hidden[-1], teacher.hidden[-1], mask)
            else:
                num_layers = len(self.supernet.elastic_layers())
                hidden_loss = layer_hidden_state_loss(hidden, teacher.hidden, subnet.layers, num_layers, mask)
            terms["hidden"] = args.hidden_loss_weight * hidden_loss
        if not terms:
            raise ValueError(
                "No loss term applies to the student subnets: give labels (task_loss_weight > 0) or a teacher signal "
                "(kd_loss_weight, attention_loss_weight or hidden_loss_weight > 0)."
            )
        return terms

    @torch.no_grad()
    def _teacher_targets(
        self, teacher: nn.Module, inputs: dict[str, Any], need_qkv: bool, need_hidden: bool
    ) -> TeacherTargets:
        was_training = teacher.training
        teacher.eval()
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "start_positions", "end_positions")}
        with _capture_qkv(self.accelerator.unwrap_model(teacher), enabled=need_qkv) as qkv:
            outputs = teacher(**inputs, output_hidden_states=need_hidden)
        teacher.train(was_training)
        return TeacherTargets(
            logits=_logits(outputs),
            qkv=tuple(qkv) if qkv else None,
            hidden=tuple(outputs.hidden_states) if need_hidden else None,
        )

    # ------------------------------------------------------------------------------------------------------------
    # evaluation of named subnets
    def evaluate(
        self,
        eval_dataset: Any | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Evaluate each of `args.eval_subnets` (largest, middle, smallest) and return their metrics as
        `{metric_key_prefix}_{subnet}_{metric}`, e.g. `eval_smallest_accuracy`."""
        if not self.eval_subnets:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        supernet = self.supernet
        previous = supernet.active_subnet
        metrics: dict[str, float] = {}
        try:
            for name, subnet in self.eval_subnets.items():
                supernet.activate_subnet(subnet)
                metrics.update(super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_{name}"))
        finally:
            supernet.activate_subnet(previous)
        return metrics

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints carry the sampler state, so a resumed run continues the identical sequence; it is written last
    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
        **kwargs: Any,
    ) -> TrainOutput:
        """[`Trainer.train`]; `resume_from_checkpoint=True` takes the last *complete* checkpoint of `output_dir`
        ([`last_complete_checkpoint`]), and a checkpoint folder given by path must be complete."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(
                    f"resume_from_checkpoint=True: no complete checkpoint-* folder (one holding {SAMPLER_STATE_NAME}) "
                    f"in output_dir {self.args.output_dir}."
                )
        elif isinstance(resume_from_checkpoint, (str, os.PathLike)):
            _check_complete(os.fspath(resume_from_checkpoint))
        if resume_from_checkpoint is not None and self.args.should_save:
            _remove_incomplete_checkpoints(self.args.output_dir, below=os.fspath(resume_from_checkpoint))
        return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            _discard_checkpoint(folder)
        self.accelerator.wait_for_everyone()  # cleared before any process writes into it
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotated once this one is complete
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process's files (its RNG state, ...) are written
        if self.args.should_save and os.path.isdir(folder):
            atomic_write_text(os.path.join(folder, SAMPLER_STATE_NAME), json.dumps(self.sampler.state_dict()))
            _remove_incomplete_checkpoints(run_dir, below=folder)
            _rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, SAMPLER_STATE_NAME)
        if os.path.isfile(path):
            with open(path) as f:
                self.sampler.load_state_dict(json.load(f))
        else:
            logger.warning("No %s in %s: the sampler starts from its initial state.", SAMPLER_STATE_NAME, path)


# ----------------------------------------------------------------------------------------------------------------
# complete checkpoints
def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a checkpoint that [`SupernetTrainer`] finished writing: it holds the sampler state, which
    is written (atomically) after every other file of the checkpoint.

    Example:

    ```python
    >>> import os, tempfile
    >>> from hf_nas.training.trainer import is_complete_checkpoint
    >>> folder = os.path.join(tempfile.mkdtemp(), "checkpoint-4")
    >>> os.makedirs(folder)  # a save that was interrupted: the model and optimizer files, no sampler state
    >>> is_complete_checkpoint(folder)
    False
    >>> open(os.path.join(folder, "sampler_state.json"), "w").write("{}")
    2
    >>> is_complete_checkpoint(folder)
    True
    ```
    """
    return os.path.isfile(os.path.join(os.fspath(folder), SAMPLER_STATE_NAME))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-N` folder of `output_dir` with the highest `N` that is complete ([`is_complete_checkpoint`]), or
    None. Each incomplete folder of a higher step (a save interrupted by a crash or a kill) is skipped with a warning
    naming it; transformers' `get_last_checkpoint` would return it.

    Example:

    ```python
    >>> import os, tempfile
    >>> from hf_nas.training.trainer import last_complete_checkpoint
    >>> output_dir = tempfile.mkdtemp()
    >>> for step in (2, 4):
    ...     os.makedirs(os.path.join(output_dir, f"checkpoint-{step}"))
    >>> _ = open(os.path.join(output_dir, "checkpoint-2", "sampler_state.json"), "w").write("{}")
    >>> os.path.basename(last_complete_checkpoint(output_dir))  # checkpoint-4 was not finished: skipped
    'checkpoint-2'
    ```
    """
    steps = _checkpoint_steps(output_dir)
    for folder in sorted(steps, key=steps.get, reverse=True):
        if is_complete_checkpoint(folder):
            return folder
        logger.warning(
            "Skipping %s: it is incomplete (no %s, the file written last), a save interrupted by a crash or a kill; "
            "resuming from an earlier checkpoint.",
            folder,
            SAMPLER_STATE_NAME,
        )
    return None


def _checkpoint_steps(output_dir: str | os.PathLike) -> dict[str, int]:
    """The `checkpoint-N` folders of `output_dir` and their steps `N`."""
    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        return {}
    steps = {}
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_FOLDER.match(name)
        if match is not None and os.path.isdir(os.path.join(output_dir, name)):
            steps[os.path.join(output_dir, name)] = int(match.group(1))
    return steps


def _remove_incomplete_checkpoints(output_dir: str | os.PathLike, below: str) -> None:
    """Remove the incomplete checkpoint folders of `output_dir` at steps below the complete checkpoint `below` (one of
    its folders): what a kill during a save or during the deletion of an old checkpoint left, never resumed from."""
    steps = {os.path.realpath(folder): step for folder, step in _checkpoint_steps(output_dir).items()}
    last = steps.get(os.path.realpath(below))
    if last is None:
        return
    for folder, step in steps.items():
        if step < last and not is_complete_checkpoint(folder):
            logger.warning("Removing %s, left incomplete by an interrupted save or deletion.", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _check_complete(folder: str) -> None:
    if os.path.isdir(folder) and not is_complete_checkpoint(folder):
        raise ValueError(
            f"resume_from_checkpoint {folder} is incomplete: it has no {SAMPLER_STATE_NAME}, the file a checkpoint "
            "gets last, so its save was interrupted (or another Trainer wrote it). Resume from a complete "
            "checkpoint-* folder, or pass resume_from_checkpoint=True for the last complete one."
        )


def _discard_checkpoint(folder: str) -> None:
    """Remove a checkpoint folder about to be saved again (left incomplete by an interrupted run, or replaced): its
    sampler state first, so that a kill during the removal cannot leave a folder that looks complete."""
    if not os.path.isdir(folder):
        return
    if is_complete_checkpoint(folder):
        logger.info("Replacing %s.", folder)
        os.remove(os.path.join(folder, SAMPLER_STATE_NAME))
    else:
        logger.warning("Removing %s, left incomplete by an interrupted save, before saving that step again.", folder)
    shutil.rmtree(folder)


def _rotate_checkpoints(run_dir: str, limit: int | None, best: str | None) -> None:
    """transformers' `rotate_checkpoints` over the complete checkpoints: keep the `limit` most recent (by time) and
    `best`; each one deleted loses its sampler state first, so it never looks complete half-deleted."""
    if limit is None or limit <= 0:
        return
    checkpoints = [c for c in sort_checkpoints(run_dir, use_mtime=True) if is_complete_checkpoint(c)]
    protected = {checkpoints[-1]} if checkpoints else set()
    if best is not None:
        protected.add(str(Path(best)))
    remaining = len(checkpoints)
    for checkpoint in checkpoints:
        if remaining <= max(limit, len(protected)):
            break
        if checkpoint not in protected:
            os.remove(os.path.join(checkpoint, SAMPLER_STATE_NAME))
            shutil.rmtree(checkpoint, ignore_errors=True)
            remaining -= 1


# ----------------------------------------------------------------------------------------------------------------
# the losses logged besides the Trainer's `loss`
class _LossLog:
    """Loss terms and per-role losses summed on the device between two logs (no host sync per step).

    One vector holds, per term, the sum over micro-batches of `scale x` its mean over the step's subnets and whether
    it occurred; per role, the sum and the count of its subnets' losses. At a log it is reduced across processes
    (one all-reduce) and turned into averages: the terms like the Trainer's `loss` (mean over processes, divided by
    the optimizer steps since the last log), the roles as the mean over every subnet of that role since then.
    """

    def __init__(self) -> None:
        self.totals: torch.Tensor | None = None

    def add(
        self,
        terms: list[dict[str, torch.Tensor]],
        roles: list[str],
        per_subnet: torch.Tensor,
        scale: float,
        skip_non_finite: bool,
    ) -> None:
        """Add one micro-batch: the weighted `terms` and the `role` of each subnet, and `per_subnet` losses (S,)."""
        device = per_subnet.device
        zero = torch.zeros((), device=device)
        values = torch.stack([torch.stack([t.get(n, zero).float() for n in LOSS_TERMS]) for t in terms])  # (S, K)
        seen = torch.tensor([any(n in t for t in terms) for n in LOSS_TERMS], device=device, dtype=torch.float32)
        one_hot = torch.tensor([[r == name for name in SUBNET_ROLES] for r in roles], device=device).float()  # (S, R)
        vector = torch.cat([values.mean(0) * scale, seen, one_hot.T @ per_subnet.float(), one_hot.sum(0)])
        if skip_non_finite:  # as the Trainer leaves a non-finite loss out of its `loss` (logging_nan_inf_filter)
            vector = torch.where(torch.isfinite(per_subnet.mean()), vector, torch.zeros_like(vector))
        self.totals = vector if self.totals is None else self.totals + vector

    def pop(self, accelerator: Any, num_steps: int, device: torch.device) -> dict[str, float]:
        """The averages since the last log, as `loss_<term>` and `loss_<role>` (those that occurred), and a reset.
        Every process must call it at the same step: under DDP it all-reduces."""
        size = 2 * (len(LOSS_TERMS) + len(SUBNET_ROLES))
        totals = self.totals if self.totals is not None else torch.zeros(size, device=device)
        self.totals = None
        if accelerator.num_processes > 1:
            totals = accelerator.reduce(totals, reduction="sum")
        k, r = len(LOSS_TERMS), len(SUBNET_ROLES)
        values = totals.tolist()
        term_sums, term_seen = values[:k], values[k : 2 * k]
        role_sums, role_counts = values[2 * k : 2 * k + r], values[2 * k + r :]
        logs = {
            f"loss_{name}": total / (accelerator.num_processes * num_steps)
            for name, total, seen in zip(LOSS_TERMS, term_sums, term_seen, strict=True)
            if seen > 0
        }
        for name, total, count in zip(SUBNET_ROLES, role_sums, role_counts, strict=True):
            if count > 0:
                logs[f"loss_{name}"] = total / count
        return logs


# ----------------------------------------------------------------------------------------------------------------
# helpers
def check_teacher_config(student_config: Any, teacher_config: Any) -> None:
    """Raise `ValueError` if a teacher's vocabulary or labels differ from the student's (placeholder label names such
    as `LABEL_0` count as unknown)."""
    for key in ("vocab_size", "num_labels", "label2id"):
        mine, theirs = _config_value(student_config, key), _config_value(teacher_config, key)
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(
                f"The teacher's {key}={theirs} differs from the supernet's {key}={mine}: a teacher must share "
                "the student's vocabulary and labels."
            )


@torch.no_grad()
def _clip_tensors_(tensors: list[torch.Tensor], max_norm: float) -> None:
    """Scale `tensors` in place so that their joint L2 norm is at most `max_norm` (as `clip_grad_norm_` does)."""
    norm = torch.nn.utils.get_total_norm(tensors)
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for t in tensors:
        t.mul_(coefficient.to(t.device))


def _config_value(config: Any, key: str) -> Any:
    """`config.<key>`, with transformers' placeholder label names (`LABEL_0`, ...) read as unknown (None)."""
    value = getattr(config, key, None)
    if key == "label2id" and value is not None and all(k == f"LABEL_{v}" for k, v in value.items()):
        return None
    return value


def _task_loss(outputs: Any) -> torch.Tensor:
    loss = getattr(outputs, "loss", None)
    if loss is None:
        raise ValueError(
            "The teacher subnet has no task loss: the batches carry no labels. Use distillation='teacher' with a "
            "teacher model for unlabeled text (task-agnostic mode)."
        )
    return loss


def _logits(outputs: Any) -> list[torch.Tensor]:
    if getattr(outputs, "logits", None) is not None:
        return [outputs.logits]
    if getattr(outputs, "start_logits", None) is not None:
        return [outputs.start_logits, outputs.end_logits]
    return []


def _token_mask(logits: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Token-level logits (B, T, C) are distilled on real tokens only; (B, C) and QA's (B, T) need no mask."""
    if logits.dim() == 3 and attention_mask is not None:
        return attention_mask.bool()
    return None


def _last_qkv(model: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The query, key and value projections of the last layer that runs."""
    if isinstance(model, SupernetMixin):
        layers = model.elastic_layers()
        return layers[model.active_subnet.layers[-1]].qkv_projections()
    return get_family(model.config).vanilla_qkv_projections(model)  # a vanilla or extracted teacher


@contextlib.contextmanager
def _capture_qkv(model: nn.Module, enabled: bool) -> Iterator[list[torch.Tensor]]:
    """Collect the query, key and value projections (B, T, inner) of the last layer during a forward."""
    captured: list[torch.Tensor] = []
    if not enabled:
        yield captured
        return
    hooks = [
        proj.register_forward_hook(lambda module, args, output: captured.append(output)) for proj in _last_qkv(model)
    ]
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
