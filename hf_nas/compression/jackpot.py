"""Lottery Jackpots: search the sparse mask of frozen pretrained weights, and the fine-tuning baseline it is compared to.

A *lottery jackpot* is a sparse subnetwork found in a trained model without training its weights. Every weight of
[`prunable_weights`] gets a real-valued score; the forward pass uses the weight times a binary mask (kept: 1, pruned:
0) and the gradient reaches the scores straight through the mask (as if `d mask / d score = 1`). The scores start as
the weights' absolute values, so the first mask is global magnitude pruning ([`magnitude_masks`]). After each
optimizer step of the scores, the *short restriction* changes the mask: the pruned weights whose score has risen above
the threshold of the target sparsity and the kept weights whose score has fallen below it are the candidates, and only
a share of them is swapped, in pairs (the highest-scoring pruned ones against the lowest-scoring kept ones), so the
sparsity stays exact at every step. The share decays with a cosine from `swap_share` to 0 over the search
([`cosine_share`]), so the mask settles. The loss is the task's cross-entropy plus distillation from the dense model
(its logits, [`~hf_nas.training.distillation.soft_cross_entropy`]). The weights, embeddings, LayerNorms, biases and
head never change; the result is the same model with the pruned weights set to zero.

[`finetune_sparse`] is the baseline at the same budget: magnitude pruning, then the same steps, data, teacher and loss
training the weights themselves, with the zeros kept.

Example:

```python
>>> import torch
>>> from datasets import Dataset
>>> from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding
>>> from hf_nas.compression import JackpotConfig, jackpot_prune
>>> model = BertForSequenceClassification(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
...                                                  num_attention_heads=4, intermediate_size=64))
>>> data = Dataset.from_dict({"input_ids": [[2, 5, 7, 3]] * 8, "labels": [0, 1] * 4})
>>> collate = lambda rows: {"input_ids": torch.tensor([r["input_ids"] for r in rows]),
...                         "labels": torch.tensor([r["labels"] for r in rows])}
>>> report = jackpot_prune(model, 0.7, train_dataset=data, data_collator=collate,
...                        config=JackpotConfig(max_steps=3, batch_size=4))
>>> report.method, round(report.share, 3)
('jackpot', 0.7)
```
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from ..training.distillation import soft_cross_entropy
from .sparsity import (
    SparsityMethod,
    SparsityReport,
    check_compressible,
    check_pattern,
    check_sparsity,
    magnitude_masks,
    prunable_weights,
    register_sparsity_method,
    sparsity_report,
)

__all__ = [
    "DistillationConfig",
    "JackpotConfig",
    "cosine_share",
    "distillation_loss",
    "finetune_sparse",
    "jackpot_prune",
    "short_restriction",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# settings
def _check_number(
    name: str, value: Any, minimum: float, inclusive: bool = True, maximum: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"`{name}` must be a finite number, got {value!r}.")
    if value < minimum or (not inclusive and value == minimum) or (maximum is not None and value > maximum):
        low = f">= {minimum}" if inclusive else f"> {minimum}"
        high = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"`{name}` must be {low}{high}, got {value}.")
    return float(value)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return value


@dataclass
class DistillationConfig:
    """The training settings shared by the mask search and the sparse fine-tuning: steps, batches and the loss, task
    cross-entropy plus distillation from the dense model's logits."""

    max_steps: int = field(default=300, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (AdamW)."})
    batch_size: int = field(default=32, metadata={"help": "Training examples per step."})
    task_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the task cross-entropy."})
    kd_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the distillation from the dense model."})
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the distillation."})
    seed: int = field(default=42, metadata={"help": "Seed of the data order and dropout."})
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every this many steps."})

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "logging_steps"):
            _check_count(name, getattr(self, name))
        _check_number("learning_rate", self.learning_rate, 0.0, inclusive=False)
        _check_number("task_loss_weight", self.task_loss_weight, 0.0)
        _check_number("kd_loss_weight", self.kd_loss_weight, 0.0)
        if self.task_loss_weight == 0 and self.kd_loss_weight == 0:
            raise ValueError("`task_loss_weight` and `kd_loss_weight` are both 0: nothing to learn from.")
        _check_number("temperature", self.temperature, 0.0, inclusive=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"`seed` must be an int, got {self.seed!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JackpotConfig(DistillationConfig):
    """The settings of the Lottery Jackpots mask search ([`jackpot_prune`]).

    Example:

    ```python
    >>> from hf_nas.compression import JackpotConfig
    >>> JackpotConfig(max_steps=100).swap_share
    0.5
    >>> JackpotConfig(swap_share=1.5)
    Traceback (most recent call last):
        ...
    ValueError: `swap_share` must be >= 0.0 and <= 1.0, got 1.5.
    ```
    """

    learning_rate: float = field(
        default=1e-4, metadata={"help": "Learning rate of the scores (Adam, constant); they start at |weight|."}
    )
    swap_share: float = field(
        default=0.5,
        metadata={
            "help": "Short restriction: the share of candidate pairs (pruned above the threshold, kept below it) "
            "swapped after the first step; it decays with a cosine to 0 at the last step."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        _check_number("swap_share", self.swap_share, 0.0, maximum=1.0)


def cosine_share(step: int, max_steps: int, initial: float) -> float:
    """The share of candidate pairs the short restriction swaps after optimizer step `step` (0-based) of `max_steps`:
    `initial` after the first step, decaying with a half cosine to 0 after the last.

    Example:

    ```python
    >>> from hf_nas.compression import cosine_share
    >>> [round(cosine_share(s, 5, 0.5), 3) for s in range(5)]
    [0.5, 0.452, 0.327, 0.173, 0.048]
    ```
    """
    if max_steps <= 1:
        return initial
    return initial * 0.5 * (1.0 + math.cos(math.pi * step / max_steps))


# ----------------------------------------------------------------------------------------------------------------
# the short restriction
@torch.no_grad()
def short_restriction(
    scores: Sequence[torch.Tensor], keep: Sequence[torch.Tensor], share: float, pattern: str = "unstructured"
) -> int:
    """Swap, in place in `keep`, a `share` of the candidate pairs across the threshold; return the pairs swapped.

    `unstructured`: the threshold is the `k`-th smallest score over all tensors together, `k` the number of pruned
    entries. The candidates to enter are the pruned entries scoring above it, those to leave the kept entries scoring
    at or below it; of the `C = min(#enter, #leave)` possible pairs, `int(share * C)` are swapped: the highest-scoring
    entering ones with the lowest-scoring leaving ones. Every swap keeps one entry for one pruned, so the number of
    zeros never changes, and no entry on the right side of the threshold moves.

    `2:4`: each group of 4 consecutive entries of a row keeps 2. A group is a candidate when its best pruned entry
    scores above its worst kept one; `int(share * C)` of the `C` candidate groups, those with the largest margin,
    swap that pair, so every group keeps exactly 2.

    Args:
        scores (`Sequence[torch.Tensor]`): one score tensor per weight.
        keep (`Sequence[torch.Tensor]`): the masks, same shapes, 1 (or True) where the weight is kept; changed in place.
        share (`float`): 0 <= share <= 1.
        pattern (`str`, *optional*, defaults to `"unstructured"`): `"unstructured"` or `"2:4"`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.compression import short_restriction
    >>> scores = [torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])]
    >>> keep = [torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])]  # 0.9 and 0.8 pruned, 0.1 and 0.2 kept
    >>> short_restriction(scores, keep, share=0.5)  # 2 candidate pairs: swap 1, the 0.9 against the 0.1
    1
    >>> keep[0].tolist()
    [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    ```
    """
    share = _check_number("share", share, 0.0, maximum=1.0)
    if pattern == "2:4":
        return _restrict_groups(scores, keep, share)
    check_pattern(pattern)
    flat_scores = torch.cat([s.detach().flatten().float() for s in scores])  # (N,)
    flat_keep = torch.cat([m.flatten() != 0 for m in keep])  # (N,) bool
    pruned = int((~flat_keep).sum())
    if pruned == 0 or pruned == flat_keep.numel() or share == 0:
        return 0
    threshold = flat_scores.kthvalue(pruned).values
    enter = (~flat_keep & (flat_scores > threshold)).nonzero().squeeze(1)  # (E,) pruned above the threshold
    leave = (flat_keep & (flat_scores <= threshold)).nonzero().squeeze(1)  # (L,) kept at or below it
    count = int(share * min(enter.numel(), leave.numel()))
    if count == 0:
        return 0
    enter = enter[flat_scores[enter].topk(count).indices]  # the highest-scoring pruned entries
    leave = leave[flat_scores[leave].topk(count, largest=False).indices]  # the lowest-scoring kept ones
    flat_keep[enter] = True
    flat_keep[leave] = False
    start = 0
    for mask in keep:
        mask.copy_(flat_keep[start : start + mask.numel()].view_as(mask))
        start += mask.numel()
    return count


def _restrict_groups(scores: Sequence[torch.Tensor], keep: Sequence[torch.Tensor], share: float) -> int:
    """The short restriction of the 2:4 pattern: one swap in each of the `share` of candidate groups of largest
    margin."""
    margins, places = [], []
    for index, (score, mask) in enumerate(zip(scores, keep, strict=True)):
        groups = score.detach().float().reshape(-1, 4)  # (G, 4)
        kept = mask.reshape(-1, 4) != 0  # (G, 4)
        best_pruned = groups.masked_fill(kept, -math.inf).max(dim=1)  # values, indices: (G,)
        worst_kept = groups.masked_fill(~kept, math.inf).min(dim=1)  # (G,)
        margin = best_pruned.values - worst_kept.values  # (G,) > 0: the pair is on the wrong sides
        candidates = (margin > 0).nonzero().squeeze(1)  # (C_i,)
        margins.append(margin[candidates])
        places.append((index, candidates, best_pruned.indices[candidates], worst_kept.indices[candidates]))
    all_margins = torch.cat(margins)  # (C,)
    count = int(share * all_margins.numel())
    if count == 0:
        return 0
    cutoff = all_margins.topk(count).indices  # the groups swapped, by their index in `all_margins`
    chosen = torch.zeros_like(all_margins, dtype=torch.bool)
    chosen[cutoff] = True
    start = 0
    for index, groups, enter, leave in places:
        take = chosen[start : start + groups.numel()]
        start += groups.numel()
        if take.any():
            mask = keep[index].view(-1, 4)  # (G, 4), a view: changes reach keep[index]
            rows = groups[take]
            mask[rows, enter[take]] = 1
            mask[rows, leave[take]] = 0
    return count


# ----------------------------------------------------------------------------------------------------------------
# training with distillation from the dense model
def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, config: DistillationConfig
) -> torch.Tensor:
    """`task_loss_weight * CE(student, labels) + kd_loss_weight * soft_cross_entropy(student, teacher, temperature)`
    for classification logits of shape `(B, C)`."""
    if student_logits.ndim != 2:
        raise ValueError(
            "The mask search and sparse fine-tuning train classification models (logits of shape (batch, labels)); "
            f"got logits of shape {tuple(student_logits.shape)}."
        )
    loss = student_logits.new_zeros((), dtype=torch.float32)
    if config.task_loss_weight:
        loss = loss + config.task_loss_weight * F.cross_entropy(student_logits.float(), labels)
    if config.kd_loss_weight:
        loss = loss + config.kd_loss_weight * soft_cross_entropy(student_logits, teacher_logits, config.temperature)
    return loss


def _batches(dataset: Any, collator: Callable, config: DistillationConfig) -> Iterator[dict[str, Any]]:
    """Shuffled batches (seeded, never the global RNG), epoch after epoch."""
    if len(dataset) == 0:
        raise ValueError("`train_dataset` is empty.")
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator, collate_fn=collator)
    while True:
        yield from loader


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _train(
    model: PreTrainedModel,
    teacher: PreTrainedModel,
    train_dataset: Any,
    data_collator: Callable,
    config: DistillationConfig,
    optimizer: torch.optim.Optimizer,
    after_step: Callable[[int], dict[str, Any]],
    scheduler: Any = None,
) -> None:
    """The loop both trainings share: a step on each batch with [`distillation_loss`], then `after_step(step)`."""
    device = next(model.parameters()).device
    batches = _batches(train_dataset, data_collator, config)
    was_training = model.training
    model.train()
    teacher.eval()
    running = 0.0
    with torch.random.fork_rng(devices=[]):  # dropout draws from a seeded generator; the caller's state is restored
        torch.manual_seed(config.seed)
        for step in range(config.max_steps):
            batch = _to_device(next(batches), device)
            if "labels" not in batch:
                raise ValueError(f"The training batches need `labels`; the data collator gave {sorted(batch)}.")
            labels = batch.pop("labels")
            with torch.no_grad():
                teacher_logits = teacher(**batch).logits
            loss = distillation_loss(model(**batch).logits, teacher_logits, labels, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            extra = after_step(step)
            running += loss.item()
            if (step + 1) % config.logging_steps == 0 or step + 1 == config.max_steps:
                done = (step % config.logging_steps) + 1
                logger.info("step %d/%d: loss %.4f %s", step + 1, config.max_steps, running / done, extra or "")
                running = 0.0
    model.train(was_training)


def _dense_teacher(model: PreTrainedModel, teacher: PreTrainedModel | None) -> PreTrainedModel:
    if teacher is None:
        teacher = copy.deepcopy(model)  # the dense model as given, frozen
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


class _ScoredMask(nn.Module):
    """The parametrization of a weight during the mask search: `weight * keep`, with the gradient reaching `scores`
    straight through the binary mask."""

    def __init__(self, scores: torch.Tensor, keep: torch.Tensor):
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.register_buffer("keep", keep)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # (scores - scores.detach()) is exactly 0, so the value is exactly weight * keep; its gradient is weight.
        return weight * self.keep + (self.scores - self.scores.detach()) * weight


# ----------------------------------------------------------------------------------------------------------------
# the mask search
def jackpot_prune(
    model: PreTrainedModel,
    sparsity: float,
    *,
    train_dataset: Any,
    data_collator: Callable,
    config: JackpotConfig | None = None,
    teacher: PreTrainedModel | None = None,
    include: str | Sequence[str] | None = None,
    pattern: str = "unstructured",
) -> SparsityReport:
    """Search a lottery jackpot of `model` at `sparsity` and set its pruned weights to zero, in place; no weight is
    trained (see the module docstring for the method).

    Args:
        model (`PreTrainedModel`): an extracted subnet or a vanilla BERT, ViT or BEiT classification model (not a
            supernet).
        sparsity (`float`): the share of zeros among the weights of [`prunable_weights`], 0 < sparsity < 1 (0.5 with
            `pattern="2:4"`).
        train_dataset: a map-style dataset of training examples (a tokenized `datasets.Dataset` with `labels`, or
            an image dataset with a transform).
        data_collator (`Callable`): turns a list of examples into a batch of tensors with `labels`.
        config ([`JackpotConfig`], *optional*): steps, learning rate, swap share, loss weights; defaults to
            `JackpotConfig()`.
        teacher (`PreTrainedModel`, *optional*): the model distilled from; defaults to a frozen copy of `model` as
            given (the dense subnet).
        include (`str` or `Sequence[str]`, *optional*): glob patterns restricting the weights ([`prunable_weights`]).
        pattern (`str`, *optional*, defaults to `"unstructured"`): `"unstructured"` (global) or `"2:4"`.

    Returns:
        [`SparsityReport`]: the zeros per weight and overall, `method="jackpot"`.
    """
    check_compressible(model, "the Lottery Jackpots search")
    sparsity = check_sparsity(sparsity)
    pattern = check_pattern(pattern, sparsity)
    config = JackpotConfig() if config is None else config
    if not isinstance(config, JackpotConfig):
        raise TypeError(f"`config` must be a JackpotConfig, got {type(config).__name__}.")
    weights = prunable_weights(model, include)
    if not weights:
        raise ValueError("`model` has no encoder layers, so no weights to prune.")
    teacher = _dense_teacher(model, teacher)
    initial = magnitude_masks(weights, sparsity, pattern)  # True = pruned

    modules = dict(model.named_modules())
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    for param in model.parameters():
        param.requires_grad_(False)
    masks: list[_ScoredMask] = []
    linears = []
    try:
        for name, weight in weights.items():
            linear = modules[name.removesuffix(".weight")]
            mask = _ScoredMask(weight.detach().abs().float().clone(), (~initial[name]).to(weight.dtype))
            parametrize.register_parametrization(linear, "weight", mask)
            masks.append(mask)
            linears.append(linear)
        scores = [m.scores for m in masks]
        keep = [m.keep for m in masks]
        optimizer = torch.optim.Adam(scores, lr=config.learning_rate)

        def restrict(step: int) -> dict[str, Any]:
            share = cosine_share(step, config.max_steps, config.swap_share)
            return {"swapped": short_restriction(scores, keep, share, pattern), "share": round(share, 4)}

        _train(model, teacher, train_dataset, data_collator, config, optimizer, restrict)
        final = {name: m.keep.detach().clone() for name, m in zip(weights, masks, strict=True)}
    finally:
        for linear in linears:  # the original weight tensors come back, untouched
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)
        for name, param in model.named_parameters():
            param.requires_grad_(trainable[name])
    weights = prunable_weights(model, include)
    with torch.no_grad():
        for name, kept in final.items():
            weights[name].masked_fill_(kept == 0, 0)
    moved = sum(int(((kept == 0) != initial[name]).sum()) for name, kept in final.items()) // 2
    logger.info("jackpot search: %d weights kept that magnitude pruning prunes (and as many pruned)", moved)
    measured = sparsity_report(model, include=include)
    return SparsityReport(measured.layers, method="jackpot", target=sparsity, pattern=pattern)


# ----------------------------------------------------------------------------------------------------------------
# the baseline: the zeros kept, the weights trained
def finetune_sparse(
    model: PreTrainedModel,
    *,
    train_dataset: Any,
    data_collator: Callable,
    config: DistillationConfig | None = None,
    teacher: PreTrainedModel | None = None,
    include: str | Sequence[str] | None = None,
) -> SparsityReport:
    """Fine-tune all weights of a pruned `model` with the same loss as the mask search (task cross-entropy plus
    distillation from `teacher`), keeping every zero of [`prunable_weights`]: after each AdamW step (linear schedule,
    10% warm-up) the pruned entries are set to zero again, so the zeros after training are exactly those before.

    Args:
        model (`PreTrainedModel`): a pruned subnet (e.g. after [`magnitude_prune`]).
        train_dataset, data_collator: as for [`jackpot_prune`].
        config ([`DistillationConfig`], *optional*): steps, learning rate, loss weights.
        teacher (`PreTrainedModel`): the dense model to distill from; defaults to a frozen copy of `model` (then the
            distillation is from the pruned model itself, which is rarely wanted: give the dense one).
        include (`str` or `Sequence[str]`, *optional*): the weights whose zeros are kept ([`prunable_weights`]).

    Returns:
        [`SparsityReport`]: the zeros after training (`method="magnitude+finetune"`).
    """
    from transformers import get_scheduler

    check_compressible(model, "sparse fine-tuning")
    config = DistillationConfig() if config is None else config
    if not isinstance(config, DistillationConfig):
        raise TypeError(f"`config` must be a DistillationConfig, got {type(config).__name__}.")
    teacher = _dense_teacher(model, teacher)
    weights = prunable_weights(model, include)
    zeros = {name: w.detach() == 0 for name, w in weights.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    scheduler = get_scheduler(
        "linear", optimizer, num_warmup_steps=max(1, config.max_steps // 10), num_training_steps=config.max_steps
    )

    @torch.no_grad()
    def keep_zeros(step: int) -> dict[str, Any]:
        for name, weight in weights.items():
            weight.masked_fill_(zeros[name], 0)
        return {}

    target = sum(int(z.sum()) for z in zeros.values()) / sum(z.numel() for z in zeros.values())
    _train(model, teacher, train_dataset, data_collator, config, optimizer, keep_zeros, scheduler)
    measured = sparsity_report(model, include=include)
    return SparsityReport(measured.layers, method="magnitude+finetune", target=target)


register_sparsity_method(
    "jackpot",
    SparsityMethod(
        jackpot_prune,
        "a Lottery Jackpots mask search (the mask of the frozen weights learned through real-valued scores with a "
        "straight-through estimator, initialized by magnitude pruning, swaps limited by the short restriction; task "
        "cross-entropy plus distillation from the dense subnet; no weight trained)",
        needs_data=True,
    ),
)
