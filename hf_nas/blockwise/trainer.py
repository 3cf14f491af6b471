"""Block-wise supernet training (DNA, BossNAS) with a `transformers.Trainer`.

Each block of the supernet ([`BlockSplit`]) learns on its own, from inputs that no other block computes:

- `blockwise_mode="supervised"` (DNA-style): the block's sampled candidates map the teacher's hidden state at the
  block's input to the teacher's hidden state at its output (MSE over the candidate's channels, a prefix of the
  teacher's: [`supervised_block_loss`]). The teacher is a fine-tuned model (`teacher_model`) or, by default, a frozen
  copy of the whole supernet as it is when the trainer is built (a supernet initialised from a fine-tuned teacher).
- `blockwise_mode="ensemble"` (BossNAS, no labels and no teacher): the target network is an EMA copy of the supernet
  and the projectors; a block's input is the target network's hidden state there, on each of two views of the batch;
  every online candidate predicts, through its projector and predictor, the ensemble target of the other view (the
  mean over the step's candidates of the target's normalized projections; [`hf_nas.blockwise.ensemble`]).

A block's input is detached, and the layer arguments (attention mask, ...) are computed without gradients, so a
block's loss reaches only its own layers (and its projector and predictor): blocks train in isolation. Several blocks
trained in one process share the data and the teacher's forward but not their gradients; gradient clipping is done
per block. `blocks` picks the blocks of this process, so each block can also run in a process of its own:
[`BlockwiseTrainer.save_blocks`] writes the trained blocks' weights and [`load_blocks`] puts them into one supernet,
which a short end-to-end sandwich phase then re-couples ([`recouple`], the existing `SupernetTrainer`).

The candidates of a step come from a subnet sampler (sandwich by default): each sampled subnet restricted to each
block, without repeats. Like the sampler, the views of the ensemble mode are a pure function of `(seed, step,
micro_step)`, so a run resumed from a checkpoint continues identically.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import ModelOutput

from ..models.families import get_family
from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..training.checkpoint_weights import CheckpointWeightsMixin
from ..training.distillation import hidden_state_loss, teacher_layer_map
from ..training.recipes import vanilla_auto_class
from ..training.samplers import SAMPLERS, SubnetSampler, get_sampler
from ..training.trainer import SupernetTrainer
from ..training.training_args import SupernetTrainingArguments
from ..utils import atomic_directory, atomic_write_text
from .blocks import BlockCandidate, BlockSplit, layer_call_arguments, model_inputs, run_block
from .ensemble import EMATarget, EnsembleHeads, byol_loss, cosine_momentum, ensemble_target, image_views, mask_tokens

__all__ = [
    "BLOCKWISE_MODES",
    "BLOCKWISE_RECORD_NAME",
    "BlockwiseModel",
    "BlockwiseOutput",
    "BlockwiseTrainer",
    "BlockwiseTrainingArguments",
    "block_candidates",
    "full_hidden_states",
    "load_blocks",
    "recouple",
    "supervised_block_loss",
    "teacher_boundaries",
]

logger = logging.getLogger(__name__)

BLOCKWISE_MODES = ("supervised", "ensemble")
BLOCKWISE_RECORD_NAME = "blockwise.json"


@dataclass
class BlockwiseTrainingArguments(TrainingArguments):
    """[`TrainingArguments`] for [`BlockwiseTrainer`]: the blocks, how their candidates are sampled and how they
    learn.

    Example:

    ```python
    >>> from hf_nas.blockwise import BlockwiseTrainingArguments
    >>> args = BlockwiseTrainingArguments("out", blockwise_mode="ensemble", num_blocks=3, blocks="0,1")
    >>> args.block_indices(3)
    [0, 1]
    ```
    """

    blockwise_mode: str = field(
        default="supervised",
        metadata={
            "help": "supervised: each block learns the teacher's hidden state at its output from the teacher's at its "
            "input (DNA); ensemble: self-supervised ensemble bootstrapping with an EMA target network (BossNAS)."
        },
    )
    num_blocks: int | None = field(
        default=None, metadata={"help": "Blocks the encoder is cut into (default: blocks of floor(sqrt(layers)))."}
    )
    blocks: str | None = field(
        default=None, metadata={"help": "Comma-separated blocks this process trains, e.g. '0,2' (default: all)."}
    )
    sampler: str = field(
        default="sandwich",
        metadata={"help": "Subnet sampler whose subnets, restricted to a block, are its candidates."},
    )
    num_random_subnets: int = field(
        default=2, metadata={"help": "Random subnets per step besides the largest and smallest (sandwich)."}
    )
    uniform_subnet_probability: float = field(
        default=0.0, metadata={"help": "Probability that a random subnet has one head count and FFN width."}
    )
    sampler_seed: int | None = field(default=None, metadata={"help": "Seed of the sampler and views (default: seed)."})
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Supervised mode: the teacher (default: a frozen copy of the supernet as it starts)."},
    )
    ema_momentum: float = field(
        default=0.99, metadata={"help": "Ensemble mode: base EMA momentum of the target, raised to 1 on a cosine."}
    )
    projection_size: int = field(default=128, metadata={"help": "Ensemble mode: size of the projections."})
    projection_hidden_size: int = field(
        default=512, metadata={"help": "Ensemble mode: hidden width of the projector and predictor MLPs."}
    )
    mask_probability: float = field(
        default=0.15, metadata={"help": "Ensemble mode, text: probability that a token is masked in a view."}
    )
    mask_token_id: int | None = field(
        default=None, metadata={"help": "Ensemble mode, text: the mask token (default: the tokenizer's, if any)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.blockwise_mode not in BLOCKWISE_MODES:
            raise ValueError(f"Unknown blockwise_mode {self.blockwise_mode!r}; allowed: {list(BLOCKWISE_MODES)}.")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"Unknown sampler {self.sampler!r}; allowed: {sorted(SAMPLERS)}.")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"`num_blocks` must be >= 1, got {self.num_blocks}.")
        if self.num_random_subnets < 0:
            raise ValueError(f"`num_random_subnets` must be >= 0, got {self.num_random_subnets}.")
        for name in ("ema_momentum", "mask_probability", "uniform_subnet_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}.")
        for name in ("projection_size", "projection_hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.blocks is not None:
            self.block_indices(None)  # syntax check now; the range once the split is known

    def block_indices(self, num_blocks: int | None) -> list[int]:
        """The blocks this process trains, sorted, checked against `num_blocks` (when given)."""
        if self.blocks is None:
            if num_blocks is None:
                raise ValueError("`num_blocks` is needed to list all blocks.")
            return list(range(num_blocks))
        try:
            indices = sorted({int(b) for b in str(self.blocks).split(",") if b.strip()})
        except ValueError:
            raise ValueError(
                f"`blocks` must be comma-separated block indices such as '0,2', got {self.blocks!r}."
            ) from None
        if not indices:
            raise ValueError(f"`blocks` names no block: {self.blocks!r}.")
        top = None if num_blocks is None else num_blocks - 1
        bad = [b for b in indices if b < 0 or (top is not None and b > top)]
        if bad:
            allowed = "indices >= 0" if top is None else f"0 to {top}"
            raise ValueError(f"`blocks` {bad} out of range; allowed: {allowed}.")
        return indices


@dataclass
class BlockwiseOutput(ModelOutput):
    """The loss of a block-wise step: `loss` (the sum over the trained blocks of each block's mean over its
    candidates) and `block_losses` `(num_trained_blocks,)`."""

    loss: torch.Tensor | None = None
    block_losses: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------------------------------
# pure helpers
def block_candidates(
    subnets: Sequence[SubnetConfig], split: BlockSplit, block: int, include_empty: bool = False
) -> list[BlockCandidate]:
    """The distinct candidates of `block` among `subnets` restricted to it, in order of first appearance (empty ones,
    which keep no layer of the block, only if `include_empty`)."""
    out: list[BlockCandidate] = []
    for subnet in subnets:
        candidate = split.candidate(subnet, block)
        if (include_empty or not candidate.is_empty) and candidate not in out:
            out.append(candidate)
    return out


def teacher_boundaries(split: BlockSplit, num_teacher_layers: int) -> tuple[int, ...]:
    """The indices into the teacher's `output_hidden_states` of each block boundary: the embeddings for the first,
    and for the end of a block the teacher layer its last supernet layer maps to ([`teacher_layer_map`]).

    ```python
    >>> from hf_nas.blockwise import BlockSplit, teacher_boundaries
    >>> teacher_boundaries(BlockSplit.even(6, 3), 6), teacher_boundaries(BlockSplit.even(6, 3), 12)
    ((0, 2, 4, 6), (0, 4, 8, 12))
    ```
    """
    ends = [e - 1 for e in split.boundaries[1:]]
    return (0, *(t + 1 for t in teacher_layer_map(ends, split.num_layers, num_teacher_layers)))


@torch.no_grad()
def full_hidden_states(model: nn.Module, inputs: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """The embeddings and every layer's output of `model` on `inputs` (`output_hidden_states`), without gradients; a
    supernet runs whole (every layer, full width), and its active subnet is restored."""
    inputs = model_inputs(inputs)
    if isinstance(model, SupernetMixin):
        previous = model.active_subnet
        model.activate_subnet(model.max_subnet())
        try:
            return tuple(model(**inputs, output_hidden_states=True).hidden_states)
        finally:
            model.activate_subnet(previous)
    return tuple(model(**inputs, output_hidden_states=True).hidden_states)


def supervised_block_loss(
    model: nn.Module,
    candidate: BlockCandidate,
    block_input: torch.Tensor,
    block_target: torch.Tensor,
    layer_args: Sequence[Any] = (),
    layer_kwargs: Mapping[str, Any] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """DNA's block loss: MSE between `candidate`'s output on the teacher's block input (detached, first
    `hidden_size` channels) and the teacher's block output (its first `hidden_size` channels), over the real tokens.

    It is 0 when the candidate computes what the teacher's block computes, e.g. the whole block of a supernet that
    holds the teacher's weights (in eval mode). Gradients reach only the candidate's layers.
    """
    output = run_block(model, candidate, block_input.detach(), layer_args, layer_kwargs)  # (B, T, h)
    return hidden_state_loss(output, block_target, attention_mask)


def _views_generator(seed: int, step: int, micro_step: int) -> torch.Generator:
    """The generator of one step's views: derived from `(seed, step, micro_step)` only, as the samplers' are."""
    return torch.Generator().manual_seed(random.Random(f"{seed}-views-{step}-{micro_step}").getrandbits(63))


# --------------------------------------------------------------------------------------------------------------------
# the model the Trainer trains
class BlockwiseModel(nn.Module):
    """What [`BlockwiseTrainer`] trains: the supernet and, in ensemble mode, the projectors and predictors of the
    blocks and the EMA target network. The teacher of the supervised mode is held but not registered (it is neither
    trained nor saved in checkpoints).

    `forward` takes a batch and returns a [`BlockwiseOutput`] for the candidates in `self.candidates` (one list per
    trained block; by default the restrictions of the space's largest and smallest subnets), so `Trainer.evaluate`
    reports the block-wise loss; training goes through `candidate_losses` (one graph in memory at a time).
    """

    def __init__(
        self,
        supernet: PreTrainedModel,
        split: BlockSplit,
        blocks: Sequence[int],
        mode: str = "supervised",
        teacher: nn.Module | None = None,
        heads: EnsembleHeads | None = None,
    ):
        super().__init__()
        split.check_model(supernet)
        if mode not in BLOCKWISE_MODES:
            raise ValueError(f"Unknown mode {mode!r}; allowed: {list(BLOCKWISE_MODES)}.")
        if mode == "supervised" and teacher is None:
            raise ValueError("The supervised mode needs a teacher.")
        if mode == "ensemble" and heads is None:
            raise ValueError("The ensemble mode needs the projectors and predictors (`heads`).")
        self.supernet = supernet
        self.split = split
        self.blocks = [split.check_block(b) for b in blocks]
        self.mode = mode
        self.heads = heads
        self.target = EMATarget({"supernet": supernet, "projectors": heads.projectors}) if heads is not None else None
        self.__dict__["teacher"] = teacher  # not a submodule: never trained, never in the state dict
        self.mask_token_id: int | None = None
        self.mask_probability = 0.0
        self.views_seed = 0
        space = supernet.search_space
        self.candidates = [block_candidates([space.largest(), space.smallest()], split, b) for b in self.blocks]

    @property
    def teacher(self) -> nn.Module | None:
        return self.__dict__["teacher"]

    @property
    def is_image(self) -> bool:
        return get_family(self.supernet.config).is_image

    def train(self, mode: bool = True) -> BlockwiseModel:
        super().train(mode)
        if self.target is not None:
            self.target.train(False)
        return self

    def online_modules(self) -> dict[str, nn.Module]:
        """The modules the EMA target follows."""
        return {"supernet": self.supernet, "projectors": self.heads.projectors}

    def block_parameters(self, block: int) -> list[nn.Parameter]:
        """The parameters a block's loss trains: its layers (and its projector and predictor)."""
        params = [p for i in self.split.layers_of(block) for p in self.supernet.elastic_layers()[i].parameters()]
        if self.heads is not None:
            params += self.heads.block_parameters(block)
        return params

    # -- views of the ensemble mode --------------------------------------------------------------------------------
    def view(self, inputs: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
        """One augmented view of a batch: masked tokens (text) or cropped, flipped images."""
        inputs = dict(inputs)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = image_views(inputs["pixel_values"], generator)
        elif self.mask_token_id is not None and self.mask_probability > 0 and "input_ids" in inputs:
            inputs["input_ids"] = mask_tokens(
                inputs["input_ids"], inputs.get("attention_mask"), self.mask_probability, self.mask_token_id, generator
            )
        return inputs

    # -- losses ------------------------------------------------------------------------------------------------------
    def candidate_losses(
        self,
        inputs: Mapping[str, Any],
        candidates: Sequence[Sequence[BlockCandidate]],
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """`(position of the block in self.blocks, number of its candidates, loss)` for every candidate of every
        trained block, computed lazily so that a caller can run each backward before the next forward. The supernet's
        active subnet is changed; callers restore it."""
        if len(candidates) != len(self.blocks):
            raise ValueError(
                f"Give one list of candidates per trained block ({len(self.blocks)}), got {len(candidates)}."
            )
        inputs = model_inputs(inputs)
        mask = inputs.get("attention_mask")
        if self.mode == "supervised":
            teacher = full_hidden_states(self.teacher, inputs)
            bounds = teacher_boundaries(self.split, len(teacher) - 1)
            layer_args, layer_kwargs = layer_call_arguments(self.supernet, inputs)
            for position, (block, block_cands) in enumerate(zip(self.blocks, candidates, strict=True)):
                block_input, block_target = teacher[bounds[block]], teacher[bounds[block + 1]]
                for candidate in block_cands:
                    loss = supervised_block_loss(
                        self.supernet, candidate, block_input, block_target, layer_args, layer_kwargs, mask
                    )
                    yield position, len(block_cands), loss
            return
        generator = generator if generator is not None else torch.Generator().manual_seed(self.views_seed)
        views = [self.view(inputs, generator), self.view(inputs, generator)]
        target = self.target.modules_by_name["supernet"]
        states = [full_hidden_states(target, v) for v in views]  # per view: embeddings + every layer (no grad)
        layer_args, layer_kwargs = layer_call_arguments(target, views[0])
        bounds = self.split.boundaries
        for position, (block, block_cands) in enumerate(zip(self.blocks, candidates, strict=True)):
            if not block_cands:
                continue
            projector = self.target.modules_by_name["projectors"][block]
            block_inputs = [s[bounds[block]] for s in states]
            targets = [
                ensemble_target(target, projector, block_cands, x, layer_args, layer_kwargs, mask)
                for x in block_inputs
            ]
            online_projector, predictor = self.heads.projectors[block], self.heads.predictors[block]
            for candidate in block_cands:
                predictions = [
                    predictor(online_projector(run_block(self.supernet, candidate, x, layer_args, layer_kwargs), mask))
                    for x in block_inputs
                ]
                loss = byol_loss(predictions[0], targets[1]) + byol_loss(predictions[1], targets[0])
                yield position, len(block_cands), loss

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        labels: torch.Tensor | None = None,
    ) -> BlockwiseOutput:
        given = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "pixel_values": pixel_values,
            "interpolate_pos_encoding": interpolate_pos_encoding,
        }
        inputs = {k: v for k, v in given.items() if v is not None}
        totals: list[torch.Tensor | None] = [None] * len(self.blocks)
        previous = self.supernet.active_subnet
        try:
            for position, count, loss in self.candidate_losses(inputs, self.candidates):
                term = loss / count
                totals[position] = term if totals[position] is None else totals[position] + term
        finally:
            self.supernet.activate_subnet(previous)
        device = next(self.supernet.parameters()).device
        per_block = torch.stack([t if t is not None else torch.zeros((), device=device) for t in totals])
        return BlockwiseOutput(loss=per_block.sum(), block_losses=per_block)


class _EMACallback(TrainerCallback):
    """After every optimizer step, moves the target network toward the online modules (ensemble mode)."""

    def __init__(self, trainer: BlockwiseTrainer):
        self.trainer = trainer

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        wrapper = self.trainer.blockwise_model
        momentum = cosine_momentum(args.ema_momentum, state.global_step, max(1, state.max_steps))
        wrapper.target.update(wrapper.online_modules(), momentum)


# --------------------------------------------------------------------------------------------------------------------
# the trainer
class BlockwiseTrainer(CheckpointWeightsMixin, Trainer):
    """[`Trainer`] that trains the blocks of a supernet in isolation (supervised against a teacher, or
    self-supervised by ensemble bootstrapping).

    Args:
        model: an elastic supernet (`ElasticBert*`, `ElasticViT*`, `ElasticBeit*`).
        args: [`BlockwiseTrainingArguments`].
        teacher_model: supervised mode: the teacher (model object or path; default `args.teacher_model_name_or_path`,
            else a frozen copy of the supernet as it is now). Its hidden states must be at least as wide as the
            supernet's; a teacher of another depth maps its layers by [`teacher_layer_map`].
        sampler: a [`SubnetSampler`] instead of the one `args.sampler` names.
        **kwargs: what [`Trainer`] takes (datasets, collator, `processing_class`, callbacks, ...).

    Only the parameters of the trained blocks' layers (and in ensemble mode their projectors and predictors) are
    trainable during `train()`; the supernet's `requires_grad` flags are restored afterwards. Save the result with
    [`save_supernet`] (the supernet as a `save_pretrained` folder) or [`save_blocks`] (the trained blocks' weights, for
    [`load_blocks`]).

    Example:

    ```python
    >>> import tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.blockwise import BlockwiseTrainer, BlockwiseTrainingArguments
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> supernet = ElasticBertForSequenceClassification(config)
    >>> train = [{"input_ids": [2, 5, 7, 9], "labels": i % 2} for i in range(4)]
    >>> args = BlockwiseTrainingArguments(tempfile.mkdtemp(), max_steps=2, per_device_train_batch_size=2,
    ...                                   num_blocks=2, save_strategy="no", report_to="none")
    >>> trainer = BlockwiseTrainer(model=supernet, args=args, train_dataset=train)
    >>> trainer.train().global_step  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    2
    >>> trainer.split.block_sizes, trainer.blocks
    ((1, 1), [0, 1])
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: BlockwiseTrainingArguments | None = None,
        teacher_model: PreTrainedModel | str | None = None,
        sampler: SubnetSampler | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, BlockwiseTrainingArguments):
            raise TypeError(f"`args` must be BlockwiseTrainingArguments, got {type(args).__name__}.")
        if not isinstance(model, SupernetMixin):
            raise TypeError(
                f"BlockwiseTrainer trains an elastic supernet (ElasticBert*, ...), got {type(model).__name__}."
            )
        split = BlockSplit.even(len(model.elastic_layers()), args.num_blocks)
        blocks = args.block_indices(split.num_blocks)
        space = model.search_space
        seed = args.seed if args.sampler_seed is None else args.sampler_seed
        if sampler is None:
            options: dict[str, Any] = {}
            if args.sampler in ("sandwich", "shiftnas", "targeted"):
                options["num_random_subnets"] = args.num_random_subnets
            if args.uniform_subnet_probability > 0:
                options["uniform_probability"] = args.uniform_subnet_probability
            sampler = get_sampler(args.sampler, space, seed=seed, **options)
        elif not isinstance(sampler, SubnetSampler):
            raise TypeError(f"`sampler` must be a SubnetSampler, got {type(sampler).__name__}.")
        self.sampler = sampler
        self.split, self.blocks = split, blocks
        teacher, heads = None, None
        if args.blockwise_mode == "supervised":
            teacher = self._build_teacher(
                model, teacher_model if teacher_model is not None else args.teacher_model_name_or_path
            )
        else:
            if teacher_model is not None or args.teacher_model_name_or_path is not None:
                raise ValueError("A teacher was given but blockwise_mode='ensemble' learns without one.")
            with torch.random.fork_rng(devices=[]):  # the heads' initial weights from the seed, not the global RNG
                torch.manual_seed(seed)
                heads = EnsembleHeads(
                    split.num_blocks, model.config.hidden_size, args.projection_size, args.projection_hidden_size
                )
        wrapper = BlockwiseModel(model, split, blocks, args.blockwise_mode, teacher=teacher, heads=heads)
        wrapper.views_seed = seed
        super().__init__(model=wrapper, args=args, **kwargs)
        if self.accelerator.num_processes > 1:
            raise ValueError(
                f"BlockwiseTrainer runs in one process (this run has {self.accelerator.num_processes}): to spread the "
                "blocks over processes, start one run per block with `blocks` and merge them with load_blocks."
            )
        if teacher is not None:
            teacher.to(self.args.device)
        if args.blockwise_mode == "ensemble":
            wrapper.mask_probability = args.mask_probability
            wrapper.mask_token_id = args.mask_token_id
            if wrapper.mask_token_id is None:
                wrapper.mask_token_id = getattr(self.processing_class, "mask_token_id", None)
            if not wrapper.is_image and (wrapper.mask_token_id is None or args.mask_probability == 0):
                logger.warning(
                    "No token masking (no mask_token_id, or mask_probability=0): the two views differ by dropout only."
                )
            self.add_callback(_EMACallback(self))
        self._micro_step = (-1, 0)
        self._block_sums: torch.Tensor | None = None
        self._block_steps = 0
        self._pending_block_logs: dict[str, float] = {}

    @staticmethod
    def _build_teacher(model: PreTrainedModel, teacher: PreTrainedModel | str | None) -> nn.Module:
        import copy

        if teacher is None:
            teacher = copy.deepcopy(model)
            logger.info("No teacher given: the blocks learn from a frozen copy of the supernet as it is now.")
        elif isinstance(teacher, (str, os.PathLike)):
            teacher = vanilla_auto_class(model).from_pretrained(os.fspath(teacher))
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"`teacher_model` must be a model or a path, got {type(teacher).__name__}.")
        teacher.eval()
        teacher.requires_grad_(False)
        return teacher

    @property
    def blockwise_model(self) -> BlockwiseModel:
        return self.accelerator.unwrap_model(self.model)

    @property
    def supernet(self) -> PreTrainedModel:
        return self.blockwise_model.supernet

    @property
    def teacher_model(self) -> nn.Module | None:
        return self.blockwise_model.teacher

    def step_candidates(self, step: int, micro_step: int = 0) -> list[list[BlockCandidate]]:
        """The candidates of each trained block at `(step, micro_step)`: the sampler's subnets restricted to it."""
        subnets = self.sampler.sample(step, micro_step)
        return [block_candidates(subnets, self.split, b) for b in self.blocks]

    # -- training --------------------------------------------------------------------------------------------------
    def train(self, *args: Any, **kwargs: Any) -> Any:
        """[`Trainer.train`] with only the trained blocks' parameters trainable (flags restored afterwards)."""
        wrapper = self.blockwise_model
        flags = {name: p.requires_grad for name, p in wrapper.named_parameters()}
        trainable = {id(p) for b in self.blocks for p in wrapper.block_parameters(b)}
        for p in wrapper.supernet.parameters():
            p.requires_grad_(id(p) in trainable)
        if wrapper.heads is not None:
            for p in wrapper.heads.parameters():
                p.requires_grad_(id(p) in trainable)
        try:
            return super().train(*args, **kwargs)
        finally:
            for name, p in wrapper.named_parameters():
                p.requires_grad_(flags[name])

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
        wrapper = self.blockwise_model
        step, micro = self._next_micro_step()
        candidates = self.step_candidates(step, micro)
        seed = wrapper.views_seed
        scale = 1.0 / self.current_gradient_accumulation_steps
        device = self.args.device
        per_block = torch.zeros(len(self.blocks), device=device)
        previous = wrapper.supernet.active_subnet
        try:
            losses = wrapper.candidate_losses(inputs, candidates, _views_generator(seed, step, micro))
            for position, count, loss in losses:
                self.accelerator.backward(loss * (scale / count))
                per_block[position] += loss.detach().float() / count
        finally:
            wrapper.supernet.activate_subnet(previous)
        self._block_sums = per_block * scale if self._block_sums is None else self._block_sums + per_block * scale
        return per_block.sum() * scale

    def _clip_grad_norm(self, model: nn.Module) -> torch.Tensor:
        """Clip each trained block's gradient on its own (its layers, projector and predictor), so that blocks
        trained in one process stay independent; returns the norm of all of them together."""
        wrapper = self.blockwise_model
        norms = []
        for block in self.blocks:
            params = [p for p in wrapper.block_parameters(block) if p.grad is not None]
            if params:
                norms.append(torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm))
        if not norms:
            return torch.zeros((), device=self.args.device)
        return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        if self.control.should_log and self.state.global_step > self._globalstep_last_logged:
            num_steps = self.state.global_step - self._globalstep_last_logged
            if self._block_sums is not None:
                values = (self._block_sums / num_steps).tolist()
                self._pending_block_logs = {f"loss_block_{b}": v for b, v in zip(self.blocks, values, strict=True)}
            self._block_sums = None
        super()._maybe_log_save_evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """[`Trainer.log`], with the loss of each trained block (`loss_block_<b>`) beside the training `loss`."""
        if "loss" in logs and self._pending_block_logs:
            logs = {**logs, **self._pending_block_logs}
        self._pending_block_logs = {}
        super().log(logs, start_time)

    # -- results -----------------------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """What a saved result says about the run: the split, the trained blocks, the mode and the step."""
        return {
            "split": self.split.to_dict(),
            "blocks": list(self.blocks),
            "blockwise_mode": self.args.blockwise_mode,
            "global_step": self.state.global_step,
        }

    def save_supernet(self, output_dir: str | os.PathLike) -> None:
        """The supernet as a `save_pretrained` folder (written atomically), with `blockwise.json` beside it."""
        with atomic_directory(output_dir) as tmp:
            self.supernet.save_pretrained(tmp)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(tmp)
            atomic_write_text(os.path.join(tmp, BLOCKWISE_RECORD_NAME), json.dumps(self.record(), indent=2) + "\n")

    def save_blocks(self, output_dir: str | os.PathLike) -> None:
        """The weights of the trained blocks' layers, `block-<b>.safetensors` each, and `blockwise.json`, in a folder
        written atomically: what [`load_blocks`] puts into a supernet (blocks trained in separate processes)."""
        supernet = self.supernet
        params = dict(supernet.named_parameters())
        with atomic_directory(output_dir) as tmp:
            for block in self.blocks:
                tensors = {
                    n: params[n].detach().cpu().contiguous() for n in self.split.parameter_names(supernet, block)
                }
                save_file(tensors, os.path.join(tmp, f"block-{block}.safetensors"), metadata={"format": "pt"})
            atomic_write_text(os.path.join(tmp, BLOCKWISE_RECORD_NAME), json.dumps(self.record(), indent=2) + "\n")


def load_blocks(supernet: PreTrainedModel, folder: str | os.PathLike) -> list[int]:
    """Copy the block weights that [`BlockwiseTrainer.save_blocks`] wrote in `folder` into `supernet`; returns the
    blocks loaded. The split must match the supernet's layers, and every tensor must be a parameter of its block
    with the same shape.

    ```python
    >>> from hf_nas.blockwise import load_blocks
    >>> load_blocks(supernet, "out/block-0")  # doctest: +SKIP
    [0]
    ```
    """
    folder = os.fspath(folder)
    path = os.path.join(folder, BLOCKWISE_RECORD_NAME)
    if not os.path.isfile(path):
        raise ValueError(
            f"{folder} holds no {BLOCKWISE_RECORD_NAME}: it was not written by BlockwiseTrainer.save_blocks."
        )
    with open(path) as f:
        record = json.load(f)
    split = BlockSplit.from_dict(record["split"])
    split.check_model(supernet)
    params = dict(supernet.named_parameters())
    loaded = []
    for block in record["blocks"]:
        file = os.path.join(folder, f"block-{block}.safetensors")
        if not os.path.isfile(file):
            raise ValueError(f"{file} is missing: {BLOCKWISE_RECORD_NAME} lists block {block}.")
        tensors = load_file(file)
        expected = set(split.parameter_names(supernet, block))
        if set(tensors) != expected:
            raise ValueError(
                f"{file} does not hold exactly block {block}'s parameters: missing {sorted(expected - set(tensors))[:3]}, "
                f"unexpected {sorted(set(tensors) - expected)[:3]}."
            )
        with torch.no_grad():
            for name, tensor in tensors.items():
                if tensor.shape != params[name].shape:
                    raise ValueError(
                        f"{file}: `{name}` has shape {tuple(tensor.shape)}, the supernet's {tuple(params[name].shape)}."
                    )
                params[name].copy_(tensor)
        loaded.append(block)
    return loaded


def recouple(
    supernet: PreTrainedModel,
    args: SupernetTrainingArguments,
    train_dataset: Any,
    teacher_model: PreTrainedModel | str | None = None,
    **trainer_kwargs: Any,
) -> SupernetTrainer:
    """The re-coupling phase after block-wise training: a short end-to-end run of [`SupernetTrainer`] (the sandwich
    rule and its distillation, as `args` say) on the supernet whose blocks were trained apart, so that the blocks
    learn to work on each other's outputs rather than on the teacher's. Returns the trainer after `train()`.

    ```python
    >>> from hf_nas.blockwise import recouple
    >>> trainer = recouple(supernet, SupernetTrainingArguments("out", max_steps=100), train, teacher)  # doctest: +SKIP
    ```
    """
    trainer = SupernetTrainer(
        model=supernet, args=args, teacher_model=teacher_model, train_dataset=train_dataset, **trainer_kwargs
    )
    trainer.train()
    return trainer
