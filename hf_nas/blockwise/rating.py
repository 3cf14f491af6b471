"""Block-wise rating (DNA, BossNAS): a subnet's score is the sum of its blocks' losses on held-out batches.

A block's loss depends only on the block's candidate, so each candidate is computed once and cached: rating many
subnets costs one pass per distinct candidate of each block, never a whole-network pass per subnet. Two raters:

- [`SupervisedBlockRater`]: the supervised block loss against a teacher's hidden states (lower is better);
- [`EnsembleBlockRater`]: the ensemble-bootstrapping distance of the online candidate's prediction to the
  population center of the block (the target network's mean normalized projection over a fixed population of the
  block's candidates), as BossNAS rates its candidates.

The rating is offered to the search as an objective (`get_objective("blockwise_loss", ...)`, registered when
`hf_nas.blockwise` is imported; direction "minimize") and as predictor features ([`rating_features`]: the per-block
losses next to the architecture encoding).
"""

from __future__ import annotations

import random
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.supernet import SupernetMixin
from ..search.objectives import Objective, pad_and_stack, register_objective
from ..search.predictors import encode
from ..search_space import SubnetConfig
from ..validation import check_int, check_positive_int
from .blocks import BlockCandidate, BlockSplit, layer_call_arguments, model_inputs, run_block
from .ensemble import byol_loss, ensemble_target
from .trainer import BlockwiseModel, block_candidates, full_hidden_states, supervised_block_loss, teacher_boundaries

__all__ = [
    "BlockwiseRater",
    "BlockwiseRatingObjective",
    "EnsembleBlockRater",
    "SupervisedBlockRater",
    "build_batches",
    "rating_features",
]


def build_batches(
    dataset: Any,
    batch_size: int = 64,
    collate_fn: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
    tokenizer: Any = None,
    max_examples: int | None = None,
) -> list[dict[str, torch.Tensor]]:
    """`dataset` (a `datasets.Dataset` or a list of dicts) as batches of model inputs (labels and other columns
    dropped), at most `max_examples` rows, text rows grouped by length to waste little padding. Collated by
    `collate_fn`, or `DataCollatorWithPadding(tokenizer)`, or by padding with 0 ([`pad_and_stack`])."""
    check_positive_int("batch_size", batch_size)
    if collate_fn is not None and tokenizer is not None:
        raise ValueError("Pass either `collate_fn` or `tokenizer`, not both.")
    if tokenizer is not None:
        from transformers import DataCollatorWithPadding

        collate_fn = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    collate = collate_fn or pad_and_stack
    count = len(dataset)
    if max_examples is not None:
        count = min(count, check_positive_int("max_examples", max_examples))
    if count == 0:
        raise ValueError("`dataset` is empty: give at least one example.")
    rows = []
    for i in range(count):
        row = dataset[i]
        if not isinstance(row, Mapping):
            raise TypeError(f"`dataset[{i}]` must be a dict of model inputs, got {type(row).__name__}.")
        inputs = model_inputs(row)
        if not inputs:
            raise ValueError(f"Example {i} has the columns {sorted(row)}; none is a model input.")
        rows.append(inputs)
    if "input_ids" in rows[0]:
        rows.sort(key=lambda r: len(r["input_ids"]))  # stable: rows of one length stay in order
    return [dict(collate(rows[i : i + batch_size])) for i in range(0, len(rows), batch_size)]


def _weight(batch: Mapping[str, torch.Tensor]) -> float:
    """How much a batch counts in a mean over tokens: its real tokens (or positions, without a mask)."""
    mask = batch.get("attention_mask")
    if mask is not None:
        return float(mask.sum())
    first = next(iter(batch.values()))
    return float(first.shape[0])


class BlockwiseRater(ABC):
    """Rates subnets of a supernet by the sum of their blocks' losses on fixed batches; each block candidate's loss is
    computed once per model and cached (the cache assumes the model's weights do not change: call [`clear`] after
    training it further).

    Subclasses implement `_prepare(model)` (what every candidate of a batch shares, once per batch) and
    `_candidate_loss(model, candidate, context)`.

    Args:
        batches (`list[dict[str, torch.Tensor]]`): the batches of model inputs ([`build_batches`]).
        split (`BlockSplit`, *optional*): the blocks (default: [`BlockSplit.even`] of the model's layers).
        num_blocks (`int`, *optional*): the number of blocks of the default split.
    """

    mode: str = "blockwise"

    def __init__(
        self, batches: list[dict[str, torch.Tensor]], split: BlockSplit | None = None, num_blocks: int | None = None
    ):
        if not batches:
            raise ValueError("`batches` is empty.")
        if split is not None and num_blocks is not None:
            raise ValueError("Pass either `split` or `num_blocks`, not both.")
        self.batches = batches
        self.split = split
        self.num_blocks = None if num_blocks is None else check_int("num_blocks", num_blocks, 1)
        self._model: Any = None
        self._contexts: list[Any] | None = None
        self._cache: dict[BlockCandidate, float] = {}

    @property
    def num_examples(self) -> int:
        return sum(next(iter(b.values())).shape[0] for b in self.batches)

    def clear(self) -> None:
        """Forget the cached losses and contexts (the model changed)."""
        self._model, self._contexts, self._cache = None, None, {}

    def _split_for(self, model: nn.Module) -> BlockSplit:
        if self.split is None:
            self.split = BlockSplit.even(len(model.elastic_layers()), self.num_blocks)
        self.split.check_model(model)
        return self.split

    def _contexts_for(self, model: nn.Module) -> list[Any]:
        if self._model is None or self._model() is not model:
            self.clear()
            self._model = weakref.ref(model)
        if self._contexts is None:
            device = next(model.parameters()).device
            self._contexts = []
            for batch in self.batches:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                self._contexts.append((batch, _weight(batch), self._prepare(model, batch)))
        return self._contexts

    @abstractmethod
    def _prepare(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """What every candidate shares on one batch (teacher states, layer arguments, ...)."""

    @abstractmethod
    def _candidate_loss(
        self, model: nn.Module, candidate: BlockCandidate, batch: dict[str, Any], context: Any
    ) -> torch.Tensor:
        """The loss of one candidate on one batch."""

    @torch.no_grad()
    def candidate_loss(self, model: nn.Module, candidate: BlockCandidate) -> float:
        """The loss of one block candidate, averaged over the batches' real tokens (cached)."""
        self._split_for(model)
        contexts = self._contexts_for(model)
        if candidate in self._cache:
            return self._cache[candidate]
        was_training, previous = model.training, model.active_subnet
        model.eval()
        try:
            total = weight = 0.0
            for batch, w, context in contexts:
                total += w * float(self._candidate_loss(model, candidate, batch, context))
                weight += w
        finally:
            model.activate_subnet(previous)
            model.train(was_training)
        self._cache[candidate] = total / weight
        return self._cache[candidate]

    def block_losses(self, model: nn.Module, subnet: SubnetConfig) -> list[float]:
        """The loss of each block's candidate of `subnet`."""
        split = self._split_for(model)
        return [self.candidate_loss(model, c) for c in split.split(subnet)]

    def rate(self, model: nn.Module, subnet: SubnetConfig) -> float:
        """The sum of `subnet`'s block losses: lower is better."""
        return float(sum(self.block_losses(model, subnet)))

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "num_examples": self.num_examples,
            "split": None if self.split is None else self.split.to_dict(),
        }


class SupervisedBlockRater(BlockwiseRater):
    """Rates each block candidate by the supervised block loss against a teacher's hidden states (DNA).

    Args:
        batches (`list[dict[str, torch.Tensor]]`): batches of model inputs ([`build_batches`]).
        teacher (`nn.Module`, *optional*): the teacher (a vanilla model with `output_hidden_states`). Default: the rated
            supernet itself, whole (the rating is then the distance of each block candidate to the full block).
        split, num_blocks: the blocks, as in [`BlockwiseRater`].

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.blockwise import SupervisedBlockRater
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64))
    >>> rater = SupervisedBlockRater([{"input_ids": torch.tensor([[2, 5, 7, 9]])}], num_blocks=2)
    >>> space = model.search_space
    >>> rater.rate(model, space.largest()) < rater.rate(model, space.smallest())  # the full blocks are the teacher
    True
    ```
    """

    mode = "supervised"

    def __init__(
        self,
        batches: list[dict[str, torch.Tensor]],
        teacher: nn.Module | None = None,
        split: BlockSplit | None = None,
        num_blocks: int | None = None,
    ):
        super().__init__(batches, split, num_blocks)
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise TypeError(f"`teacher` must be a model or None, got {type(teacher).__name__}.")
        self.teacher = teacher

    def _prepare(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        teacher = self.teacher if self.teacher is not None else model
        was_training = teacher.training
        teacher.eval()
        try:
            states = full_hidden_states(teacher, batch)
        finally:
            teacher.train(was_training)
        bounds = teacher_boundaries(self.split, len(states) - 1)
        return [states[i] for i in bounds], layer_call_arguments(model, batch)

    def _candidate_loss(
        self, model: nn.Module, candidate: BlockCandidate, batch: dict[str, Any], context: Any
    ) -> torch.Tensor:
        states, (args, kwargs) = context
        b = candidate.block
        return supervised_block_loss(
            model, candidate, states[b], states[b + 1], args, kwargs, batch.get("attention_mask")
        )


class EnsembleBlockRater(BlockwiseRater):
    """Rates each block candidate as BossNAS does: the BYOL distance of the online candidate's prediction to the
    block's population center, the target network's mean normalized projection over a fixed population of the
    block's candidates (the restrictions of `population_size` seeded random subnets, the largest and the smallest).

    Build it from a trained [`BlockwiseModel`] (ensemble mode) with [`from_model`]; the rated model is the online
    supernet (`blockwise_model.supernet`).
    """

    mode = "ensemble"

    def __init__(
        self,
        batches: list[dict[str, torch.Tensor]],
        target: nn.Module,
        target_projectors: nn.ModuleList,
        projectors: nn.ModuleList,
        predictors: nn.ModuleList,
        split: BlockSplit,
        population_size: int = 8,
        seed: int = 0,
    ):
        super().__init__(batches, split)
        self.target, self.target_projectors = target, target_projectors
        self.projectors, self.predictors = projectors, predictors
        self.population_size = check_positive_int("population_size", population_size)
        self.seed = check_int("seed", seed)

    @classmethod
    def from_model(
        cls,
        blockwise_model: BlockwiseModel,
        batches: list[dict[str, torch.Tensor]],
        population_size: int = 8,
        seed: int = 0,
    ) -> EnsembleBlockRater:
        if blockwise_model.mode != "ensemble":
            raise ValueError(f"An ensemble rater needs an ensemble-mode model, got mode {blockwise_model.mode!r}.")
        target = blockwise_model.target.modules_by_name
        heads = blockwise_model.heads
        return cls(
            batches,
            target["supernet"],
            target["projectors"],
            heads.projectors,
            heads.predictors,
            blockwise_model.split,
            population_size,
            seed,
        )

    def population(self, block: int) -> list[BlockCandidate]:
        space = self.target.search_space
        rng = random.Random(f"{self.seed}-population")
        subnets = [
            space.largest(),
            space.smallest(),
            *(space.sample(generator=rng) for _ in range(self.population_size)),
        ]
        return block_candidates(subnets, self.split, block)

    def _prepare(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        states = full_hidden_states(self.target, batch)
        args, kwargs = layer_call_arguments(self.target, batch)
        mask = batch.get("attention_mask")
        bounds = self.split.boundaries
        centers = [
            ensemble_target(
                self.target, self.target_projectors[b], self.population(b), states[bounds[b]], args, kwargs, mask
            )
            for b in range(self.split.num_blocks)
        ]
        return [states[i] for i in bounds], (args, kwargs), centers

    def _candidate_loss(
        self, model: nn.Module, candidate: BlockCandidate, batch: dict[str, Any], context: Any
    ) -> torch.Tensor:
        states, (args, kwargs), centers = context
        b = candidate.block
        mask = batch.get("attention_mask")
        output = run_block(model, candidate, states[b], args, kwargs)  # (B, T, h)
        prediction = self.predictors[b](self.projectors[b](output, mask))  # (B, D)
        return byol_loss(prediction, centers[b])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "population_size": self.population_size, "seed": self.seed}


def rating_features(rater: BlockwiseRater, model: nn.Module, subnets: Sequence[SubnetConfig]) -> np.ndarray:
    """Predictor features: each subnet's architecture encoding ([`hf_nas.search.predictors.encode`]) followed by its
    per-block losses, `(len(subnets), encoding + num_blocks)`.

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.blockwise import SupervisedBlockRater, rating_features
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64))
    >>> rater = SupervisedBlockRater([{"input_ids": torch.tensor([[2, 5, 7, 9]])}], num_blocks=2)
    >>> space = model.search_space
    >>> features = rating_features(rater, model, [space.largest(), space.smallest()])
    >>> features.shape[0], bool((features[0, -2:] <= features[1, -2:]).all())  # the block losses come last
    (2, True)
    ```

    A regressor fitted on these features and the measured accuracies of some subnets then rates the others.
    """
    space = model.search_space
    rows = [np.concatenate([encode(s, space), np.asarray(rater.block_losses(model, s))]) for s in subnets]
    return np.stack(rows) if rows else np.zeros((0, 0))


@register_objective
class BlockwiseRatingObjective(Objective):
    """The block-wise rating of a subnet (the sum of its blocks' losses on a held-out set; lower is better): a cheap
    stand-in for its accuracy that a search may compute for many subnets, since each block candidate is computed once.

    Args:
        dataset (`datasets.Dataset` or `list[dict]`, *optional*): held-out examples (model inputs; labels unused).
        teacher (`nn.Module` or `str`, *optional*): supervised rating: the teacher or its path (default: the rated
            supernet, whole).
        num_blocks (`int`, *optional*): the blocks (default: blocks of `floor(sqrt(layers))` layers).
        batch_size (`int`, *optional*, defaults to 64), collate_fn, tokenizer: how the examples are batched.
        max_examples (`int`, *optional*, defaults to 512): examples used at most.
        rater (`BlockwiseRater`, *optional*): a ready rater (e.g. an [`EnsembleBlockRater`]) instead of the above.

    Example:

    ```python
    >>> import hf_nas.blockwise  # registers the objective
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.search.objectives import get_objective
    >>> model = ElasticBertForSequenceClassification(ElasticBertConfig(
    ...     vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    >>> rating = get_objective("blockwise_loss", dataset=[{"input_ids": [2, 5, 7]}, {"input_ids": [2, 9]}])
    >>> rating(model, model.search_space.largest()) <= rating(model, model.search_space.smallest())
    True
    ```
    """

    name = "blockwise_loss"
    direction = "minimize"
    cheap = False

    def __init__(
        self,
        dataset: Any = None,
        teacher: nn.Module | str | None = None,
        num_blocks: int | None = None,
        batch_size: int = 64,
        collate_fn: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
        tokenizer: Any = None,
        max_examples: int | None = 512,
        rater: BlockwiseRater | None = None,
    ):
        if rater is not None:
            if dataset is not None or teacher is not None:
                raise ValueError("Pass either `rater` or `dataset` (and `teacher`), not both.")
            if not isinstance(rater, BlockwiseRater):
                raise TypeError(f"`rater` must be a BlockwiseRater, got {type(rater).__name__}.")
            self.rater = rater
            return
        if dataset is None:
            raise ValueError("The block-wise rating needs `dataset` (held-out examples) or a `rater`.")
        batches = build_batches(dataset, batch_size, collate_fn, tokenizer, max_examples)
        self._teacher_path = None
        if isinstance(teacher, str):
            self._teacher_path, teacher = teacher, None
        self.rater = SupervisedBlockRater(batches, teacher=teacher, num_blocks=num_blocks)

    def __call__(self, model: nn.Module, subnet: SubnetConfig) -> float:
        if not isinstance(model, SupernetMixin):
            raise TypeError(f"`model` must be an elastic supernet (e.g. ElasticBert*), got {type(model).__name__}.")
        if getattr(self, "_teacher_path", None) is not None:
            from ..training.recipes import vanilla_auto_class

            self.rater.teacher = vanilla_auto_class(model).from_pretrained(self._teacher_path).eval()
            self._teacher_path = None
        return self.rater.rate(model, subnet)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.rater.describe()}
