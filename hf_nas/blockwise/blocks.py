"""Blocks of a supernet's encoder (DNA, BossNAS): consecutive layers that train and are rated on their own.

A [`BlockSplit`] cuts the supernet's layers into K consecutive blocks (6 layers -> 3 blocks of 2, 12 -> 4 of 3 by
default). A subnet restricted to one block is a [`BlockCandidate`]: the block's layers it keeps (its `layers` there,
possibly none), their head counts and FFN widths, and the subnet's hidden size. A candidate runs on a hidden state of
the block's input ([`run_block`]) with the arguments the encoder passes to its layers for a batch
([`layer_call_arguments`]), so a block trains without running the blocks before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..validation import check_int

__all__ = [
    "MODEL_INPUT_NAMES",
    "BlockCandidate",
    "BlockSplit",
    "default_num_blocks",
    "layer_call_arguments",
    "model_inputs",
    "run_block",
]

# What a batch may hold that the encoder reads; labels and the like are dropped before a forward of the blocks.
MODEL_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "pixel_values")


def default_num_blocks(num_layers: int) -> int:
    """The default number of blocks of a `num_layers`-layer encoder: blocks of `floor(sqrt(num_layers))` layers
    (6 layers -> 3 blocks of 2, 12 -> 4 of 3, 24 -> 6 of 4).

    ```python
    >>> from hf_nas.blockwise import default_num_blocks
    >>> default_num_blocks(6), default_num_blocks(12), default_num_blocks(1)
    (3, 4, 1)
    ```
    """
    check_int("num_layers", num_layers, 1)
    size = max(1, math.isqrt(num_layers))
    return math.ceil(num_layers / size)


@dataclass(frozen=True)
class BlockCandidate:
    """What one subnet runs inside one block.

    Args:
        block (`int`): the block's index.
        layers (`tuple[int, ...]`): the supernet layers of the block the subnet keeps (increasing; may be empty, then
            the block passes its input through).
        num_attention_heads (`tuple[int, ...]`): the head count of each kept layer.
        intermediate_size (`tuple[int, ...]`): the FFN width of each kept layer.
        hidden_size (`int`): the subnet's hidden size.
    """

    block: int
    layers: tuple[int, ...]
    num_attention_heads: tuple[int, ...]
    intermediate_size: tuple[int, ...]
    hidden_size: int

    def __post_init__(self):
        check_int("block", self.block, 0)
        check_int("hidden_size", self.hidden_size, 1)
        for name in ("layers", "num_attention_heads", "intermediate_size"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.layers) == len(self.num_attention_heads) == len(self.intermediate_size):
            raise ValueError(
                f"`layers`, `num_attention_heads` and `intermediate_size` need one entry per kept layer, got "
                f"{len(self.layers)}, {len(self.num_attention_heads)} and {len(self.intermediate_size)}."
            )

    @property
    def is_empty(self) -> bool:
        """Whether the subnet keeps no layer of this block (the block is then the identity)."""
        return not self.layers

    def as_subnet(self) -> SubnetConfig:
        """The candidate as a subnet that keeps only the block's layers (for activating its sizes)."""
        if self.is_empty:
            raise ValueError(f"Block {self.block}'s candidate keeps no layer: there is nothing to activate.")
        return SubnetConfig(
            num_hidden_layers=len(self.layers),
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_size=self.hidden_size,
            layers=self.layers,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "layers": list(self.layers),
            "num_attention_heads": list(self.num_attention_heads),
            "intermediate_size": list(self.intermediate_size),
            "hidden_size": self.hidden_size,
        }


@dataclass(frozen=True)
class BlockSplit:
    """The supernet's layers cut into consecutive blocks.

    Block `b` holds the layers `layers_of(b)`; it maps the hidden state at index `boundaries[b]` of
    `output_hidden_states` (0 is the embeddings, `i + 1` the output of layer `i`) to the one at `boundaries[b + 1]`.

    Args:
        block_sizes (`tuple[int, ...]`): the number of layers of each block, in order.

    Example:

    ```python
    >>> from hf_nas import SubnetConfig
    >>> from hf_nas.blockwise import BlockSplit
    >>> split = BlockSplit.even(6)  # 3 blocks of 2 layers
    >>> split.layers_of(1), split.boundaries
    ((2, 3), (0, 2, 4, 6))
    >>> subnet = SubnetConfig(3, (4, 2, 3), (64, 32, 48), 32, layers=(1, 3, 5))
    >>> [c.layers for c in split.split(subnet)]
    [(1,), (3,), (5,)]
    ```
    """

    block_sizes: tuple[int, ...]

    def __post_init__(self):
        if isinstance(self.block_sizes, (str, bytes)) or not isinstance(self.block_sizes, Sequence):
            raise TypeError(f"`block_sizes` must be a sequence of positive ints, got {self.block_sizes!r}.")
        sizes = tuple(check_int(f"block_sizes[{i}]", s, 1) for i, s in enumerate(self.block_sizes))
        if not sizes:
            raise ValueError("`block_sizes` needs at least one block.")
        object.__setattr__(self, "block_sizes", sizes)

    @classmethod
    def even(cls, num_layers: int, num_blocks: int | None = None) -> BlockSplit:
        """`num_layers` layers in `num_blocks` blocks (default: [`default_num_blocks`]) whose sizes differ by at most
        one, the larger ones first."""
        check_int("num_layers", num_layers, 1)
        num_blocks = default_num_blocks(num_layers) if num_blocks is None else num_blocks
        check_int("num_blocks", num_blocks, 1)
        if num_blocks > num_layers:
            raise ValueError(
                f"`num_blocks`={num_blocks} is more than the {num_layers} layers; allowed: 1 to {num_layers}."
            )
        base, extra = divmod(num_layers, num_blocks)
        return cls(tuple(base + (1 if b < extra else 0) for b in range(num_blocks)))

    @property
    def num_blocks(self) -> int:
        return len(self.block_sizes)

    @property
    def num_layers(self) -> int:
        return sum(self.block_sizes)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """`num_blocks + 1` indices into `output_hidden_states`: block `b` maps `boundaries[b]` to `boundaries[b + 1]`."""
        out = [0]
        for size in self.block_sizes:
            out.append(out[-1] + size)
        return tuple(out)

    def check_block(self, block: int) -> int:
        check_int("block", block, 0)
        if block >= self.num_blocks:
            raise ValueError(f"`block`={block} is out of range; allowed: 0 to {self.num_blocks - 1}.")
        return block

    def layers_of(self, block: int) -> tuple[int, ...]:
        """The supernet layers of `block`."""
        self.check_block(block)
        start, end = self.boundaries[block], self.boundaries[block + 1]
        return tuple(range(start, end))

    def block_of(self, layer: int) -> int:
        """The block that holds supernet layer `layer`."""
        check_int("layer", layer, 0)
        for b in range(self.num_blocks):
            if layer < self.boundaries[b + 1]:
                return b
        raise ValueError(f"`layer`={layer} is out of range; allowed: 0 to {self.num_layers - 1}.")

    def candidate(self, subnet: SubnetConfig, block: int) -> BlockCandidate:
        """`subnet` restricted to `block`."""
        layers = set(self.layers_of(block))
        if subnet.layers and max(subnet.layers) >= self.num_layers:
            raise ValueError(
                f"The subnet keeps layer {max(subnet.layers)} but the split covers {self.num_layers} layers "
                f"(0 to {self.num_layers - 1})."
            )
        kept = [i for i, layer in enumerate(subnet.layers) if layer in layers]
        return BlockCandidate(
            block=block,
            layers=tuple(subnet.layers[i] for i in kept),
            num_attention_heads=tuple(subnet.num_attention_heads[i] for i in kept),
            intermediate_size=tuple(subnet.intermediate_size[i] for i in kept),
            hidden_size=subnet.hidden_size,
        )

    def split(self, subnet: SubnetConfig) -> tuple[BlockCandidate, ...]:
        """`subnet` as one candidate per block."""
        return tuple(self.candidate(subnet, b) for b in range(self.num_blocks))

    def parameter_names(self, model: nn.Module, block: int) -> list[str]:
        """The names (in `model.named_parameters()`) of the parameters of `block`'s layers."""
        layers = model.elastic_layers()
        ids = {id(p) for i in self.layers_of(block) for p in layers[i].parameters()}
        return [name for name, p in model.named_parameters() if id(p) in ids]

    def check_model(self, model: nn.Module) -> None:
        """Raise unless `model` is a supernet with exactly `num_layers` layers."""
        if not isinstance(model, SupernetMixin):
            raise TypeError(f"Expected an elastic supernet (ElasticBert*, ...), got {type(model).__name__}.")
        count = len(model.elastic_layers())
        if count != self.num_layers:
            raise ValueError(
                f"The block split covers {self.num_layers} layers but the supernet has {count}; build the split with "
                f"BlockSplit.even({count}, num_blocks)."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"block_sizes": list(self.block_sizes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockSplit:
        if not isinstance(data, Mapping) or set(data) != {"block_sizes"}:
            raise ValueError(f"A block split is a dict with the one key 'block_sizes', got {data!r}.")
        return cls(tuple(data["block_sizes"]))


# --------------------------------------------------------------------------------------------------------------------
# running one block
class _Captured(Exception):
    """Raised by the hook of [`layer_call_arguments`] to stop the forward once the first layer's arguments are in."""


def model_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a batch the encoder reads ([`MODEL_INPUT_NAMES`] and `interpolate_pos_encoding`)."""
    return {k: v for k, v in inputs.items() if k in MODEL_INPUT_NAMES or k == "interpolate_pos_encoding"}


@torch.no_grad()
def layer_call_arguments(model: nn.Module, inputs: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """The arguments the supernet's encoder passes to its layers for `inputs`, besides the hidden states: the
    positional ones after `hidden_states` (BERT and ViT: the attention mask, as the model prepared it) and the keyword
    ones (BEiT: the resolution, ...). They do not depend on the subnet.

    The model runs until its first layer is called (the embeddings and the mask preparation), then stops. Computed
    without gradients: what the layers get this way (a shared relative position bias, say) is a constant for them, so
    a block trained with these arguments changes nothing outside its own layers.

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.blockwise import layer_call_arguments
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64))
    >>> args, kwargs = layer_call_arguments(model, {"input_ids": torch.tensor([[2, 5, 7]])})
    >>> len(args)  # the prepared attention mask
    1
    ```
    """
    captured: dict[str, Any] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        captured["args"], captured["kwargs"] = tuple(args[1:]), dict(kwargs)
        raise _Captured

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in model.elastic_layers()]
    try:
        model(**model_inputs(inputs))
    except _Captured:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if "args" not in captured:
        raise RuntimeError(f"{type(model).__name__} ran without calling any of its layers.")
    return captured["args"], captured["kwargs"]


def run_block(
    model: nn.Module,
    candidate: BlockCandidate,
    hidden_states: torch.Tensor,
    layer_args: Sequence[Any] = (),
    layer_kwargs: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """The output of `candidate`'s layers on `hidden_states` (the block's input, `(B, T, h)` with `h` at least the
    candidate's hidden size; its first `hidden_size` channels are read), `(B, T, hidden_size)`.

    The candidate's sizes stay active afterwards: callers that care restore the previous subnet. An empty candidate
    returns its input (sliced).
    """
    h = candidate.hidden_size
    if hidden_states.shape[-1] < h:
        raise ValueError(
            f"The block input has {hidden_states.shape[-1]} channels, fewer than the candidate's hidden size {h}."
        )
    hidden_states = hidden_states[..., :h]  # (B, T, h)
    if candidate.is_empty:
        return hidden_states
    model.activate_subnet(candidate.as_subnet())
    layers = model.elastic_layers()
    kwargs = dict(layer_kwargs or {})
    for i in candidate.layers:
        hidden_states = layers[i](hidden_states, *layer_args, **kwargs)  # (B, T, h)
    return hidden_states
