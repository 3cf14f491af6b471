"""Turning architecture weights into a subnet: argmax, or perturbation-based selection (DARTS-PT), optionally under
a MAC budget ([`MacBudget`]).

Dimensions are decided in order: depth, hidden size, then heads and FFN width layer by layer; under a budget each
decision keeps only the choices that fit when every undecided dimension takes its smallest choice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..search_space import SearchSpace, SubnetConfig
from ..validation import check_int
from .cost import MacBudget
from .mixture import MixedForward
from .parameters import ArchitectureParameters, ArchitectureWeights, check_supernet

__all__ = ["perturbation_select", "select_argmax"]

logger = logging.getLogger(__name__)


@dataclass
class _Decision:
    """One dimension to decide: `name` and, for per-layer dimensions, the `layer`."""

    name: str
    layer: int | None = None

    @property
    def key(self) -> Any:
        return self.name if self.layer is None else (self.name, self.layer)

    def row(self, weights: ArchitectureWeights) -> torch.Tensor:
        w = getattr(weights, self.name)
        return w[self.layer] if self.layer is not None else w

    def set_row(self, weights: ArchitectureWeights, row: torch.Tensor) -> None:
        w = getattr(weights, self.name)
        if self.layer is not None:
            w[self.layer] = row
        else:
            w.copy_(row)

    def __str__(self) -> str:
        return self.name if self.layer is None else f"{self.name}[{self.layer}]"


def _subnet_from(space: SearchSpace, chosen: Mapping[Any, int]) -> SubnetConfig:
    """The subnet with the chosen values, the smallest choice where nothing is chosen yet."""
    depth = chosen.get("num_hidden_layers", min(space.num_hidden_layers))
    return space.subnet(
        depth,
        tuple(chosen.get(("num_attention_heads", i), min(space.num_attention_heads)) for i in range(depth)),
        tuple(chosen.get(("intermediate_size", i), min(space.intermediate_size)) for i in range(depth)),
        chosen.get("hidden_size", min(space.hidden_size)),
    )


def _feasible(budget: MacBudget, space: SearchSpace, chosen: Mapping[Any, int], decision: _Decision) -> list[int]:
    """Indices of the choices of `decision` that fit the budget given what is chosen."""
    choices = getattr(space, decision.name)
    return [k for k, value in enumerate(choices) if budget.fits(_subnet_from(space, {**chosen, decision.key: value}))]


def _ordered_decisions(chosen: Mapping[Any, int]) -> Iterator[_Decision]:
    """Yield the decisions in order; the per-layer ones only for the layers the chosen depth keeps."""
    yield _Decision("num_hidden_layers")
    yield _Decision("hidden_size")
    for i in range(chosen["num_hidden_layers"]):
        yield _Decision("num_attention_heads", i)
        yield _Decision("intermediate_size", i)


def _as_weights(arch: ArchitectureParameters | ArchitectureWeights, space: SearchSpace) -> ArchitectureWeights:
    """A detached copy of the (expected) weights of `arch`, checked against `space`."""
    if isinstance(arch, ArchitectureParameters):
        if arch.search_space != space:
            raise ValueError(
                "The architecture parameters were built for another search space: "
                f"{arch.search_space.to_dict()} vs the model's {space.to_dict()}."
            )
        with torch.no_grad():
            return arch.weights().clone()
    if isinstance(arch, ArchitectureWeights):
        arch.check(space)
        return arch.clone()
    raise TypeError(f"`arch` must be ArchitectureParameters or ArchitectureWeights, got {type(arch).__name__}.")


def select_argmax(
    model: nn.Module,
    arch: ArchitectureParameters | ArchitectureWeights,
    max_macs_ratio: float | None = None,
    sequence_length: int | None = None,
    image_size: int | tuple[int, int] | None = None,
) -> SubnetConfig:
    """The subnet with the largest architecture weight in every dimension; with `max_macs_ratio`, decided
    progressively (depth, hidden size, then layer by layer) among the choices that keep the subnet under that
    fraction of the full model's MACs, the undecided dimensions counted at their smallest choice.

    Args:
        model (`nn.Module`): the elastic supernet.
        arch (`ArchitectureParameters` or `ArchitectureWeights`): its architecture parameters (their expected
            weights) or mixture weights.
        max_macs_ratio (`float`, *optional*): keep the subnet under this fraction of the full model's MACs.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence of the budget.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size of the budget (default:
            the config's).

    Returns:
        `SubnetConfig`: the selected subnet, in `model.search_space`.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, count_macs
    >>> from hf_nas.gradient import ArchitectureParameters, select_argmax
    >>> model = ElasticBertForSequenceClassification(ElasticBertConfig(vocab_size=99, hidden_size=32,
    ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    >>> arch = ArchitectureParameters(model.search_space, init_std=1.0)
    >>> subnet = select_argmax(model, arch, max_macs_ratio=0.5, sequence_length=16)
    >>> count_macs(model, subnet, 16) <= 0.5 * count_macs(model, model.max_subnet(), 16)
    True
    ```
    """
    model = check_supernet(model)
    space = model.search_space
    weights = _as_weights(arch, space)
    budget = MacBudget(model, max_macs_ratio, sequence_length, image_size)
    chosen: dict[Any, int] = {}
    for decision in _ordered_decisions(chosen):
        row = decision.row(weights)
        feasible = _feasible(budget, space, chosen, decision)
        best = max(feasible, key=lambda k: (float(row[k]), -k))
        chosen[decision.key] = getattr(space, decision.name)[best]
    subnet = _subnet_from(space, chosen)
    space.validate(subnet)
    return subnet


# ----------------------------------------------------------------------------------------------------------------
# perturbation-based selection
def _move(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def _evaluate_mixed(
    model: nn.Module, mixed: MixedForward, weights: ArchitectureWeights, batches: Sequence[Mapping[str, Any]]
) -> tuple[float, float]:
    """(accuracy, mean loss) of the mixed supernet on `batches` (eval mode)."""
    device = next(model.parameters()).device
    mixed.weights = weights.to(device)
    correct, total, loss_sum = 0, 0, 0.0
    for batch in batches:
        batch = _move(batch, device)
        outputs = model(**batch)
        labels = batch["labels"]
        predictions = outputs.logits.argmax(-1)  # (B,) or (B, T)
        valid = labels != -100
        correct += int((predictions[valid] == labels[valid]).sum())
        total += int(valid.sum())
        loss_sum += float(outputs.loss) * len(labels)
    n = sum(len(b["labels"]) for b in batches)
    return correct / max(total, 1), loss_sum / max(n, 1)


def _check_eval_batches(eval_batches: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    eval_batches = list(eval_batches)
    if not eval_batches:
        raise ValueError("`eval_batches` is empty: perturbation selection needs validation batches with labels.")
    if any("labels" not in b for b in eval_batches):
        raise ValueError("Every batch of `eval_batches` needs `labels`: the selection compares validation metrics.")
    return eval_batches


def _feasible_row(row: torch.Tensor, feasible: list[int]) -> torch.Tensor:
    """`row` with the infeasible choices dropped and the rest renormalized (uniform if none keeps any weight)."""
    mask = torch.zeros_like(row)
    mask[feasible] = 1.0
    row = row * mask
    return row / row.sum() if row.sum() > 0 else mask / mask.sum()


@dataclass
class _Perturbation:
    """The state of one perturbation selection: the mixed supernet, its weights and the validation batches."""

    model: nn.Module
    mixed: MixedForward
    weights: ArchitectureWeights
    eval_batches: list[Mapping[str, Any]]

    def choose(self, decision: _Decision, feasible: list[int]) -> tuple[int, dict[int, tuple[float, float]]]:
        """Remove each feasible choice in turn; keep the one whose removal hurts most (lowest accuracy, then
        highest loss). Returns the kept index and the (accuracy, loss) without each choice."""
        row = _feasible_row(decision.row(self.weights).clone(), feasible)
        if len(feasible) == 1:
            return feasible[0], {}
        self.model.eval()
        scores: dict[int, tuple[float, float]] = {}
        for k in feasible:
            removed = row.clone()
            removed[k] = 0.0
            removed = removed / removed.sum() if removed.sum() > 0 else removed
            trial = self.weights.clone()
            decision.set_row(trial, removed)
            scores[k] = _evaluate_mixed(self.model, self.mixed, trial, self.eval_batches)
        keep = min(feasible, key=lambda k: (scores[k][0], -scores[k][1], -float(row[k])))
        return keep, scores

    def tune(self, batches: Iterator[Mapping[str, Any]], steps: int, optimizer: torch.optim.Optimizer) -> None:
        """`steps` weight steps of the mixed supernet at the current weights."""
        device = next(self.model.parameters()).device
        self.model.train()
        self.mixed.weights = self.weights.to(device)
        for batch in islice(batches, steps):
            optimizer.zero_grad(set_to_none=True)
            self.model(**_move(batch, device)).loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _history_entry(
    decision: _Decision, choices: Sequence[int], feasible: list[int], scores: Mapping[int, tuple], keep: int
) -> dict[str, Any]:
    return {
        "dimension": str(decision),
        "choices": [choices[k] for k in feasible],
        "accuracy_without": {choices[k]: s[0] for k, s in scores.items()},
        "loss_without": {choices[k]: s[1] for k, s in scores.items()},
        "kept": choices[keep],
    }


def perturbation_select(
    model: nn.Module,
    arch: ArchitectureParameters | ArchitectureWeights,
    eval_batches: Iterable[Mapping[str, Any]],
    tune_batches: Iterable[Mapping[str, Any]] | None = None,
    tuning_steps: int = 2,
    learning_rate: float = 2e-5,
    optimizer: torch.optim.Optimizer | None = None,
    max_macs_ratio: float | None = None,
    sequence_length: int | None = None,
    history: list[dict[str, Any]] | None = None,
    show_progress: bool = True,
    image_size: int | tuple[int, int] | None = None,
) -> SubnetConfig:
    """Perturbation-based selection (DARTS-PT) in the weight-entangled space.

    Dimensions are decided progressively: depth, hidden size, then heads and FFN width layer by layer. For each, every
    (budget-feasible) choice is removed in turn from the mixture (its weight set to 0, the others renormalized) and the
    mixed supernet is evaluated on `eval_batches`; the choice whose removal hurts the validation accuracy most (ties:
    the largest loss increase) is kept, and the dimension becomes one-hot. Between decisions the supernet's weights
    are tuned for `tuning_steps` steps with the mixed forward on `tune_batches` (this changes the model's weights in
    place, as in DARTS-PT).

    Args:
        model (`nn.Module`): the elastic supernet (trained with the mixed forward, e.g. by `GradientSearchTrainer`).
        arch (`ArchitectureParameters` or `ArchitectureWeights`): its architecture parameters (their expected
            weights start the mixture) or weights.
        eval_batches: validation batches (dicts of tensors with `labels`: `input_ids` or `pixel_values`, ...);
            materialized once.
        tune_batches: training batches for the tuning steps (cycled); `None` or `tuning_steps=0` disables tuning.
        tuning_steps (`int`, *optional*, defaults to 2): weight steps after each decision.
        learning_rate (`float`, *optional*, defaults to 2e-5): of the default AdamW tuning optimizer.
        optimizer (`torch.optim.Optimizer`, *optional*): a weight optimizer to use instead.
        max_macs_ratio (`float`, *optional*): keep the subnet under this fraction of the full model's MACs.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence of the MAC budget.
        history (`list`, *optional*): receives one dict per decision (dimension, choices, scores, kept choice).
        show_progress (`bool`, *optional*, defaults to `True`): show a progress bar.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size of the MAC budget.

    Returns:
        `SubnetConfig`: the selected subnet, in `model.search_space`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.gradient import ArchitectureParameters, perturbation_select
    >>> model = ElasticBertForSequenceClassification(ElasticBertConfig(vocab_size=99, hidden_size=32,
    ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    >>> batches = [{"input_ids": torch.randint(0, 99, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}]
    >>> subnet = perturbation_select(model, ArchitectureParameters(model.search_space), batches, show_progress=False)
    >>> subnet in model.search_space
    True
    ```
    """
    model = check_supernet(model)
    space = model.search_space
    weights = _as_weights(arch, space)
    budget = MacBudget(model, max_macs_ratio, sequence_length, image_size)
    tuning_steps = check_int("tuning_steps", tuning_steps, 0)
    eval_batches = _check_eval_batches(eval_batches)
    tuning = tune_batches is not None and tuning_steps > 0
    if tuning and optimizer is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    tune_iter = cycle(tune_batches) if tuning else None
    was_training = model.training
    chosen: dict[Any, int] = {}
    progress = tqdm(
        total=2 + 2 * max(space.num_hidden_layers), desc="perturbation selection", disable=not show_progress
    )
    try:
        with MixedForward(model, weights) as mixed:
            state = _Perturbation(model, mixed, weights, eval_batches)
            for decision in _ordered_decisions(chosen):
                choices = getattr(space, decision.name)
                feasible = _feasible(budget, space, chosen, decision)
                keep, scores = state.choose(decision, feasible)
                one_hot = torch.nn.functional.one_hot(torch.tensor(keep), len(choices))  # (K,)
                decision.set_row(weights, one_hot.to(decision.row(weights)))
                chosen[decision.key] = choices[keep]
                if history is not None:
                    history.append(_history_entry(decision, choices, feasible, scores, keep))
                logger.info("kept %s=%s", decision, choices[keep])
                _advance(progress, decision, choices[keep])
                if tuning and len(feasible) > 1:
                    state.tune(tune_iter, tuning_steps, optimizer)
    finally:
        progress.close()
        model.train(was_training)
    subnet = _subnet_from(space, chosen)
    space.validate(subnet)
    return subnet


def _advance(progress: tqdm, decision: _Decision, kept: int) -> None:
    """One decision done; once the depth is known, so is the number of decisions."""
    progress.update(1)
    if decision.name == "num_hidden_layers":
        progress.total = 2 + 2 * kept
        progress.refresh()
