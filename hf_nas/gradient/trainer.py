"""`GradientSearchTrainer`: gradient-based search in the weight-entangled space (TangleNAS), bi-level.

Each training step alternates, first-order as in DARTS: an *architecture step* on a batch of the architecture split
(a validation split, never the training batches) updates the architecture parameters through the mixed forward of
[`MixedForward`], plus an optional resource penalty on the expected MACs; then a *weight step* on the training batch
updates the supernet's weights through the mixed forward with the architecture weights fixed. Optimizers: `darts`
(softmax weights) and `drnas` (Dirichlet weights, reparameterized samples, KL regularization toward a uniform
Dirichlet). Text supernets (BERT) train on `input_ids`, image supernets (ViT, BEiT) on `pixel_values`; MACs are
counted at `macs_sequence_length` or `macs_image_size`.

Data loading, logging, evaluation and checkpoints are the Trainer's; checkpoints also carry the architecture
parameters, their optimizer, the sampling generator and the position in the architecture split, so a resumed run
continues identically.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..costs import count_macs
from ..mixture import check_no_mixture
from ..models.families import get_family
from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..switchable_norms import check_no_switchable_norms
from ..training.checkpoint_weights import CheckpointWeightsMixin
from ..utils import atomic_write_text
from .cost import expected_macs
from .mixture import MIXTURE_REFUSAL, NORMS_REFUSAL, MixedForward
from .parameters import ArchitectureParameters, ArchitectureWeights
from .selection import perturbation_select, select_argmax

__all__ = [
    "ARCHITECTURE_DIR_NAME",
    "ARCH_OPTIMIZERS",
    "ARCH_STATE_NAME",
    "SELECTION_METHODS",
    "GradientSearchArguments",
    "GradientSearchTrainer",
    "selection_summary",
]

logger = logging.getLogger(__name__)

ARCH_OPTIMIZERS = {"darts": "softmax", "drnas": "dirichlet"}  # optimizer -> parametrization of the weights
SELECTION_METHODS = ("argmax", "perturbation")
ARCHITECTURE_DIR_NAME = "architecture"
ARCH_STATE_NAME = "architecture_state.pt"
SELECTED_SUBNET_NAME = "argmax_subnet.json"


@dataclass
class GradientSearchArguments(TrainingArguments):
    """[`TrainingArguments`] for [`GradientSearchTrainer`]: the architecture optimizer and the resource penalty.

    The Trainer's own arguments (`learning_rate`, `max_steps`, `per_device_train_batch_size`, ...) drive the weight
    steps; the `arch_*` arguments drive the architecture steps, one per training step (after `arch_warmup_steps`).
    MACs are counted at `macs_sequence_length` tokens (text models, default 128) or at `macs_image_size` (image
    models, default: the config's image size).

    Example:

    ```python
    >>> from hf_nas.gradient import GradientSearchArguments
    >>> args = GradientSearchArguments("out", arch_optimizer="drnas", resource_penalty=1.0, target_macs_ratio=0.5)
    >>> args.arch_optimizer, args.target_macs_ratio
    ('drnas', 0.5)
    ```
    """

    arch_optimizer: str = field(
        default="darts", metadata={"help": "Architecture optimizer: darts (softmax weights) or drnas (Dirichlet)."}
    )
    arch_learning_rate: float = field(default=3e-2, metadata={"help": "Adam learning rate of the arch parameters."})
    arch_weight_decay: float = field(default=1e-3, metadata={"help": "Weight decay of the architecture parameters."})
    arch_warmup_steps: int = field(
        default=0, metadata={"help": "Training steps with weight updates only, before architecture steps start."}
    )
    arch_init_std: float = field(default=1e-3, metadata={"help": "Std of the initial architecture parameters."})
    arch_seed: int | None = field(
        default=None, metadata={"help": "Seed of the arch split's order and of DrNAS samples (default: `seed`)."}
    )
    resource_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the MAC penalty in the architecture loss: penalty * relu(expected/target - 1) with "
            "target_macs_ratio, else penalty * expected MAC ratio (to the full model)."
        },
    )
    target_macs_ratio: float | None = field(
        default=None, metadata={"help": "MAC budget as a fraction of the full model's MACs, in (0, 1]."}
    )
    macs_sequence_length: int | None = field(
        default=None, metadata={"help": "Text models: sequence length at which MACs are counted (default 128)."}
    )
    macs_image_size: int | None = field(
        default=None, metadata={"help": "Image models: image size at which MACs are counted (default: the config's)."}
    )
    drnas_kl_weight: float = field(
        default=1e-3, metadata={"help": "DrNAS: weight of KL(Dir(concentration) || Dir(1)) in the arch loss."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.arch_optimizer not in ARCH_OPTIMIZERS:
            raise ValueError(f"Unknown arch_optimizer {self.arch_optimizer!r}; allowed: {sorted(ARCH_OPTIMIZERS)}.")
        if not (self.arch_learning_rate > 0 and math.isfinite(self.arch_learning_rate)):
            raise ValueError(f"`arch_learning_rate` must be a positive number, got {self.arch_learning_rate}.")
        for name in ("arch_weight_decay", "arch_init_std", "resource_penalty", "drnas_kl_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
        if self.arch_warmup_steps < 0:
            raise ValueError(f"`arch_warmup_steps` must be >= 0, got {self.arch_warmup_steps}.")
        for name in ("macs_sequence_length", "macs_image_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be >= 1 (or None for the default), got {value}.")
        if self.target_macs_ratio is not None and not (0 < self.target_macs_ratio <= 1):
            raise ValueError(
                f"`target_macs_ratio`={self.target_macs_ratio} is out of range: a fraction of the full model's MACs, "
                "allowed: 0 < target_macs_ratio <= 1."
            )

    def macs_inputs(self, model: PreTrainedModel) -> dict[str, Any]:
        """The input size MACs are counted at, as keyword arguments of `count_macs`: `sequence_length` for text
        models, `image_size` for image models."""
        kind = get_family(model.config)
        if kind.is_image:
            wrong, right = "macs_sequence_length", "macs_image_size"
        else:
            wrong, right = "macs_image_size", "macs_sequence_length"
        if getattr(self, wrong) is not None:
            raise ValueError(
                f"`{wrong}`={getattr(self, wrong)} does not apply to this {kind.model_type} model, which takes "
                f"{'images' if kind.is_image else 'text'}: set `{right}` instead (or leave both unset)."
            )
        if kind.is_image:
            return {"image_size": self.macs_image_size}
        return {"sequence_length": self.macs_sequence_length}


def _check_arch_parameters(
    arch_parameters: Any, model: SupernetMixin, args: GradientSearchArguments, seed: int
) -> ArchitectureParameters:
    """The architecture parameters to optimize: new ones for `model.search_space`, or the given ones, checked."""
    space = model.search_space
    parametrization = ARCH_OPTIMIZERS[args.arch_optimizer]
    if arch_parameters is None:
        return ArchitectureParameters(space, parametrization, init_std=args.arch_init_std, seed=seed)
    if not isinstance(arch_parameters, ArchitectureParameters):
        raise TypeError(f"`arch_parameters` must be ArchitectureParameters, got {type(arch_parameters).__name__}.")
    if arch_parameters.search_space != space:
        raise ValueError(
            f"`arch_parameters` were built for another search space ({arch_parameters.search_space}) than the "
            f"model's ({space})."
        )
    if arch_parameters.parametrization != parametrization:
        raise ValueError(
            f"arch_optimizer={args.arch_optimizer!r} needs parametrization={parametrization!r}, but "
            f"`arch_parameters` use {arch_parameters.parametrization!r}."
        )
    return arch_parameters


class GradientSearchTrainer(CheckpointWeightsMixin, Trainer):
    """[`Trainer`] that searches a supernet by gradient descent on architecture parameters (TangleNAS), alternating
    weight steps on the training set with architecture steps on a separate architecture split.

    Args:
        model: an elastic supernet (`ElasticBert*`, `ElasticViT*`, `ElasticBeit*`); it runs at full size with the
            mixed forward.
        args: [`GradientSearchArguments`].
        arch_parameters: [`ArchitectureParameters`] to optimize (default: new ones for `model.search_space`, with the
            parametrization of `args.arch_optimizer`).
        arch_dataset: the split of the architecture steps (default: `eval_dataset`); labelled examples, collated with
            the Trainer's `data_collator`.
        **kwargs: everything else [`Trainer`] takes (`train_dataset`, `eval_dataset`, `data_collator`, ...).

    Example:

    ```python
    >>> import tempfile
    >>> import datasets
    >>> from transformers import PrinterCallback
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.gradient import GradientSearchArguments, GradientSearchTrainer
    >>> model = ElasticBertForSequenceClassification(ElasticBertConfig(vocab_size=99, hidden_size=32,
    ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    >>> data = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3, 4]] * 4, "labels": [0, 1, 0, 1]})
    >>> args = GradientSearchArguments(tempfile.mkdtemp(), max_steps=2, per_device_train_batch_size=2, use_cpu=True,
    ...                                report_to=[], save_strategy="no", disable_tqdm=True)
    >>> trainer = GradientSearchTrainer(model=model, args=args, train_dataset=data, arch_dataset=data)
    >>> trainer.remove_callback(PrinterCallback)  # no log lines on stdout
    >>> trainer.train().global_step
    2
    >>> trainer.select_subnet("argmax") in model.search_space
    True
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: GradientSearchArguments | None = None,
        arch_parameters: ArchitectureParameters | None = None,
        arch_dataset: Any | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, GradientSearchArguments):
            raise TypeError(f"`args` must be GradientSearchArguments, got {type(args).__name__}.")
        if not isinstance(model, SupernetMixin):
            raise TypeError(
                f"GradientSearchTrainer searches an elastic supernet (ElasticBert*, ...), got {type(model).__name__}."
            )
        check_no_mixture(model, "GradientSearchTrainer", MIXTURE_REFUSAL)
        check_no_switchable_norms(model, "GradientSearchTrainer", NORMS_REFUSAL)
        seed = args.seed if args.arch_seed is None else args.arch_seed
        arch_parameters = _check_arch_parameters(arch_parameters, model, args, seed)
        self.macs_inputs = args.macs_inputs(model)
        super().__init__(model=model, args=args, **kwargs)
        self.arch_dataset = arch_dataset if arch_dataset is not None else self.eval_dataset
        if self.arch_dataset is None:
            raise ValueError(
                "The architecture steps need their own split: pass `arch_dataset` (or `eval_dataset`), e.g. a held-out "
                "part of the training set. The bi-level search never updates the architecture on training batches."
            )
        self.arch_parameters = arch_parameters.to(self.args.device)
        self.arch_optimizer = torch.optim.Adam(
            self.arch_parameters.parameters(),
            lr=args.arch_learning_rate,
            betas=(0.5, 0.999),
            weight_decay=args.arch_weight_decay,
        )
        self.arch_seed = seed
        self.arch_generator = torch.Generator(device=self.args.device).manual_seed(seed)
        self._arch_position = {"epoch": 0, "index": 0}  # where the next arch batch starts in the arch split
        self._arch_examples_cache: Any = None
        self._arch_logs: dict[str, list[float]] = {"arch_loss": [], "expected_macs_ratio": []}
        self.full_macs = count_macs(model, model.max_subnet(), **self.macs_inputs)

    @property
    def supernet(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------------------------------------------------
    # the architecture split, in a seeded order that a checkpoint can resume
    def _arch_examples(self) -> Any:
        if self._arch_examples_cache is None:
            dataset = self.arch_dataset
            if hasattr(dataset, "column_names"):
                dataset = self._remove_unused_columns(dataset, description="architecture")
            self._arch_examples_cache = dataset
        return self._arch_examples_cache

    def _next_arch_batch(self) -> dict[str, Any]:
        dataset = self._arch_examples()
        n = len(dataset)
        batch_size = self.args.per_device_train_batch_size
        world, rank = self.args.world_size, self.args.process_index
        while True:
            epoch, start = self._arch_position["epoch"], self._arch_position["index"]
            generator = torch.Generator().manual_seed(self.arch_seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=generator).tolist()[rank::world]  # this rank's share
            if start < len(order):
                indices = order[start : start + batch_size]
                self._arch_position["index"] = start + batch_size
                return self.data_collator([dataset[i] for i in indices])
            if not order:
                raise ValueError(f"The architecture split has {n} examples: too few for {world} processes.")
            self._arch_position = {"epoch": epoch + 1, "index": 0}

    # ------------------------------------------------------------------------------------------------------------
    # the steps
    def _mixture(self, sample: bool) -> ArchitectureWeights:
        return self.arch_parameters.weights(sample=sample, generator=self.arch_generator if sample else None)

    def _macs_ratio(self, weights: ArchitectureWeights) -> torch.Tensor:
        return expected_macs(self.supernet, weights, **self.macs_inputs) / self.full_macs

    def arch_loss(self, outputs: Any, weights: ArchitectureWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """The architecture loss of one batch: the task loss, the resource penalty and (DrNAS) the KL term; also
        returns the expected MAC ratio."""
        args = self.args
        loss = outputs.loss
        if loss is None:
            raise ValueError("The architecture split has no labels: the architecture steps minimize its task loss.")
        ratio = self._macs_ratio(weights)
        if args.resource_penalty > 0:
            if args.target_macs_ratio is not None:
                loss = loss + args.resource_penalty * torch.relu(ratio / args.target_macs_ratio - 1.0).to(loss)
            else:
                loss = loss + args.resource_penalty * ratio.to(loss)
        if self.arch_parameters.parametrization == "dirichlet" and args.drnas_kl_weight > 0:
            loss = loss + args.drnas_kl_weight * self.arch_parameters.kl_regularization()
        return loss, ratio

    def _arch_step(self, mixed: MixedForward) -> None:
        supernet = self.supernet
        batch = self._prepare_inputs(self._next_arch_batch())
        weights = self._mixture(sample=self.arch_parameters.parametrization == "dirichlet")
        mixed.weights = weights
        # The unwrapped supernet: under DDP the weights' gradient hooks must not fire for an arch-only backward.
        outputs = supernet(**batch)
        loss, ratio = self.arch_loss(outputs, weights)
        params = list(self.arch_parameters.parameters())
        grads = torch.autograd.grad(loss, params)
        if self.accelerator.num_processes > 1:
            grads = [self.accelerator.reduce(g, reduction="mean") for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.arch_optimizer.step()
        self.arch_optimizer.zero_grad(set_to_none=True)
        self._arch_logs["arch_loss"].append(float(loss.detach()))
        self._arch_logs["expected_macs_ratio"].append(float(ratio.detach()))

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        model.train()
        sample = self.arch_parameters.parametrization == "dirichlet"
        with MixedForward(self.supernet) as mixed:
            if self.state.global_step >= self.args.arch_warmup_steps:
                self._arch_step(mixed)
            with torch.no_grad():
                mixed.weights = self._mixture(sample=sample)  # fixed during the weight step
            return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: add the architecture side
            for key, values in self._arch_logs.items():
                if values:
                    logs[key] = sum(values) / len(values)
                    values.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------------------------
    # evaluation and selection
    def evaluate(
        self, eval_dataset: Any | None = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """Evaluate the current argmax subnet (plain forward) and report its MAC ratio as `{prefix}_macs_ratio`."""
        supernet = self.supernet
        subnet = self.arch_parameters.argmax_subnet()
        with supernet.subnet(subnet):
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics[f"{metric_key_prefix}_macs_ratio"] = count_macs(supernet, subnet, **self.macs_inputs) / self.full_macs
        return metrics

    def select_subnet(
        self,
        method: str = "argmax",
        max_macs_ratio: float | None = None,
        num_eval_batches: int = 8,
        tuning_steps: int = 2,
        learning_rate: float | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> SubnetConfig:
        """Select a subnet from the search: `"argmax"` of the architecture weights, or `"perturbation"` (DARTS-PT)
        measured on `num_eval_batches` batches of the architecture split with `tuning_steps` weight steps on training
        batches between decisions (learning rate default: `args.learning_rate`). `max_macs_ratio` (default:
        `args.target_macs_ratio`) keeps the subnet under that fraction of the full model's MACs."""
        if method not in SELECTION_METHODS:
            raise ValueError(f"Unknown selection method {method!r}; allowed: {list(SELECTION_METHODS)}.")
        budget = self.args.target_macs_ratio if max_macs_ratio is None else max_macs_ratio
        if method == "argmax":
            return select_argmax(self.supernet, self.arch_parameters, budget, **self.macs_inputs)
        if isinstance(num_eval_batches, bool) or not isinstance(num_eval_batches, int) or num_eval_batches < 1:
            raise ValueError(f"`num_eval_batches` must be a positive int, got {num_eval_batches!r}.")
        saved = dict(self._arch_position)
        self._arch_position = {"epoch": 0, "index": 0}  # always the same validation batches
        eval_batches = [self._prepare_inputs(self._next_arch_batch()) for _ in range(num_eval_batches)]
        self._arch_position = saved
        tune = (self._prepare_inputs(b) for b in _repeat(self.get_train_dataloader())) if tuning_steps else None
        return perturbation_select(
            self.supernet,
            self.arch_parameters,
            eval_batches,
            tune,
            tuning_steps=tuning_steps,
            learning_rate=self.args.learning_rate if learning_rate is None else learning_rate,
            max_macs_ratio=budget,
            history=history,
            show_progress=not self.args.disable_tqdm,
            **self.macs_inputs,
        )

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints and the final save carry the architecture
    def _arch_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.arch_optimizer.state_dict(),
            "generator": self.arch_generator.get_state(),
            "position": dict(self._arch_position),
        }

    def _save_architecture(self, folder: str, with_state: bool) -> None:
        self.arch_parameters.save_pretrained(os.path.join(folder, ARCHITECTURE_DIR_NAME))
        subnet = self.arch_parameters.argmax_subnet()
        atomic_write_text(os.path.join(folder, SELECTED_SUBNET_NAME), subnet.to_json_string())
        if with_state:
            fd, tmp = tempfile.mkstemp(prefix=f".{ARCH_STATE_NAME}.tmp-", dir=folder)
            os.close(fd)
            torch.save(self._arch_state(), tmp)
            os.replace(tmp, os.path.join(folder, ARCH_STATE_NAME))

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            if os.path.isdir(folder):
                self._save_architecture(folder, with_state=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        folder = os.path.join(resume_from_checkpoint, ARCHITECTURE_DIR_NAME)
        if not os.path.isdir(folder):
            logger.warning("No %s in %s: the architecture parameters start afresh.", ARCHITECTURE_DIR_NAME, folder)
            return
        loaded = ArchitectureParameters.from_pretrained(folder)
        if loaded.search_space != self.arch_parameters.search_space:
            raise ValueError(f"{folder} holds architecture parameters of another search space: {loaded.search_space}.")
        with torch.no_grad():
            self.arch_parameters.load_state_dict(loaded.state_dict())
        path = os.path.join(resume_from_checkpoint, ARCH_STATE_NAME)
        if os.path.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.arch_optimizer.load_state_dict(state["optimizer"])
            self.arch_generator.set_state(state["generator"])
            self._arch_position = dict(state["position"])

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the supernet (as the Trainer does), its architecture parameters (`architecture/`) and the argmax
        subnet (`argmax_subnet.json`)."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save and not _internal_call:
            self._save_architecture(output_dir or self.args.output_dir, with_state=False)


def _repeat(loader: Any) -> Iterator[dict[str, Any]]:
    while True:
        yield from loader


def selection_summary(
    model: PreTrainedModel,
    subnet: SubnetConfig,
    sequence_length: int | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The subnet and its MAC ratio to the full model (at `sequence_length` for text models, default 128, or
    `image_size` for image models), as written by the scripts.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.gradient import selection_summary
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64))
    >>> selection_summary(model, model.max_subnet())["macs_ratio"]
    1.0
    ```
    """
    inputs = {"sequence_length": sequence_length, "image_size": image_size}
    ratio = count_macs(model, subnet, **inputs) / count_macs(model, model.max_subnet(), **inputs)
    return {"subnet": subnet.to_dict(), "macs_ratio": ratio}
