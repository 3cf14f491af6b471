"""The protocol of an elastic transformer layer: what the supernet, importance reordering, distillation and
gradient-based search call on each layer of every family."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["ElasticLayer"]


class ElasticLayer(ABC):
    """One transformer layer of a supernet (mixed in before its `nn.Module` base), whatever the family.

    The layer runs its first `num_attention_heads` heads (of the fixed size `attention_head_size`) and its first
    `intermediate_size` FFN neurons, and reads and writes the first `hidden_size` channels of the residual stream.
    Which heads and neurons come first is decided by `permute_heads` / `permute_neurons` (importance reordering).

    Besides the methods below, the layer's forward takes `(hidden_states, attention_mask=None, **kwargs)` with
    `hidden_states` of shape `(B, T, hidden_size)` and returns a tensor of the same shape; extra keyword arguments
    (e.g. BEiT's `resolution`) are the family's own.

    Who calls what:
    - `SupernetMixin` (through `set_active_layers`): `set_active`;
    - `reorder_by_importance`: `head_projection`, `neuron_projection` (input masks), `max_num_attention_heads`,
      `max_intermediate_size`, `attention_head_size`, `permute_heads`, `permute_neurons`;
    - distillation (attention relations): `qkv_projections`;
    - gradient-based search: `head_projection`, `neuron_projection` (input scaling) and the sizes;
    - Mixture-of-Supernets (which linear layers get experts): `ffn_projections`, `qkv_projections`, `head_projection`.
    """

    @abstractmethod
    def set_active(self, hidden_size: int, num_attention_heads: int, intermediate_size: int) -> None:
        """Make every module of the layer compute with the given sizes (no search-space validation; a size out of a
        module's range raises `ValueError`)."""

    @property
    @abstractmethod
    def attention_head_size(self) -> int:
        """The width of one attention head (fixed)."""

    @property
    @abstractmethod
    def max_num_attention_heads(self) -> int:
        """The number of heads at full size."""

    @property
    @abstractmethod
    def max_intermediate_size(self) -> int:
        """The number of FFN neurons at full size."""

    @abstractmethod
    def qkv_projections(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """The query, key and value projections, each `(B, T, hidden) -> (B, T, heads * head_size)`."""

    @abstractmethod
    def head_projection(self) -> nn.Module:
        """The linear layer whose input is the concatenated head outputs `(B, T, heads * head_size)`: a forward
        pre-hook on it sees (and may scale) each head's output."""

    @abstractmethod
    def neuron_projection(self) -> nn.Module:
        """The linear layer whose input is the activated FFN neurons `(B, T, intermediate_size)`: a forward pre-hook
        on it sees (and may scale) each neuron's output."""

    @abstractmethod
    def ffn_projections(self) -> tuple[nn.Module, nn.Module]:
        """The FFN's two linear layers: `(B, T, hidden) -> (B, T, intermediate_size)` and back (the second is
        `neuron_projection()`)."""

    @abstractmethod
    def permute_heads(self, order: torch.Tensor) -> None:
        """Reorder the heads in place (`order`: a permutation of `range(max_num_attention_heads)`), with everything
        that is per head (projection rows and columns, relative position bias planes, ...), so that the full layer
        computes the same function and its first `k` heads are the heads `order[:k]`."""

    @abstractmethod
    def permute_neurons(self, order: torch.Tensor) -> None:
        """Reorder the FFN neurons in place (`order`: a permutation of `range(max_intermediate_size)`), so that the
        full layer computes the same function and its first `k` neurons are the neurons `order[:k]`."""

    @classmethod
    def protocol_methods(cls) -> tuple[str, ...]:
        """The names of the protocol's methods and properties (sorted)."""
        return tuple(sorted(ElasticLayer.__abstractmethods__))
