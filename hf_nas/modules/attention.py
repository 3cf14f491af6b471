"""Multi-head self-attention with an elastic number of heads, through transformers' attention interface.

One implementation serves every family: the projections keep each family's vanilla names (BERT's `query`, `key`,
`value`; ViT's and BEiT's `q_proj`, `k_proj`, `v_proj` and output projection `o_proj`), given to the constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..validation import check_size
from .linear import ElasticLinear
from .primitive import ElasticPrimitive

__all__ = [
    "BERT_PROJECTION_NAMES",
    "VISION_PROJECTION_NAMES",
    "ElasticSelfAttention",
    "SelfAttention",
    "eager_attention_forward",
    "head_permutation_index",
]

BERT_PROJECTION_NAMES = ("query", "key", "value")
VISION_PROJECTION_NAMES = ("q_proj", "k_proj", "v_proj")


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention written out, so the attention probabilities can be returned (transformers' "eager")."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nh, T, T)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, nh, T, hs)
    return attn_output.transpose(1, 2).contiguous(), attn_weights  # (B, T, nh, hs)


def head_permutation_index(order: torch.Tensor, head_size: int) -> torch.Tensor:
    """Expand a permutation of heads into a permutation of the `heads * head_size` channels."""
    order = torch.as_tensor(order, dtype=torch.long)
    return (order[:, None] * head_size + torch.arange(head_size)).reshape(-1)  # (nh * hs,)


class SelfAttention(nn.Module):
    """Plain multi-head self-attention with vanilla parameter names.

    Args:
        config: supplies `_attn_implementation` ("eager", "sdpa", ...) and `attention_probs_dropout_prob`.
        hidden_size: the width of the input (and of the output, with an output projection).
        num_attention_heads: the number of heads; it may differ from `hidden_size // attention_head_size`.
        attention_head_size: the width of each head.
        bias: whether the query and value projections (and the key projection, unless `key_bias` is given) have a
            bias.
        linear_cls: the class of the projections.
        key_bias: whether the key projection has a bias (BEiT's has none); defaults to `bias`.
        projection_names: the attribute names of the query, key and value projections.
        output_projection: the attribute name of an output projection `(heads * head_size) -> hidden_size` applied
            to the merged heads (ViT's `o_proj`); `None` (BERT) returns the merged heads.
        output_bias: whether the output projection has a bias.
    """

    def __init__(
        self,
        config: Any,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int,
        bias: bool = True,
        linear_cls: type[nn.Linear] = nn.Linear,
        *,
        key_bias: bool | None = None,
        projection_names: tuple[str, str, str] = BERT_PROJECTION_NAMES,
        output_projection: str | None = None,
        output_bias: bool = True,
    ):
        super().__init__()
        self.config = config
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = attention_head_size
        self.scaling = attention_head_size**-0.5
        self.is_causal = False
        self.projection_names = tuple(projection_names)
        self.output_projection_name = output_projection
        inner = num_attention_heads * attention_head_size
        biases = (bias, bias if key_bias is None else key_bias, bias)
        for name, has_bias in zip(self.projection_names, biases, strict=True):
            setattr(self, name, linear_cls(hidden_size, inner, bias=has_bias))
        if output_projection is not None:
            setattr(self, output_projection, linear_cls(inner, hidden_size, bias=output_bias))
        self.dropout = nn.Dropout(getattr(config, "attention_probs_dropout_prob", 0.0))

    def qkv_projections(self) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        """The query, key and value projections, each `(B, T, hidden) -> (B, T, heads * head_size)`."""
        return tuple(getattr(self, name) for name in self.projection_names)

    def output_projection(self) -> nn.Linear | None:
        """The projection of the merged heads `(B, T, heads * head_size) -> (B, T, hidden)`, if this module has one."""
        return None if self.output_projection_name is None else getattr(self, self.output_projection_name)

    def attend(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The merged head outputs `(B, T, heads * head_size)` and the attention probabilities (eager only)."""
        input_shape = hidden_states.shape[:-1]  # (B, T)
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        q, k, v = (
            proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, nh, T, hs)
            for proj in self.qkv_projections()
        )
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout.p,
            scaling=self.scaling,
            **kwargs,
        )
        return attn_output.reshape(*input_shape, -1).contiguous(), attn_weights  # (B, T, nh * hs)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.attend(hidden_states, attention_mask, **kwargs)  # (B, T, nh * hs)
        output = self.output_projection()
        return (attn_output if output is None else output(attn_output)), attn_weights


class ElasticSelfAttention(ElasticPrimitive, SelfAttention):
    """Self-attention whose active heads are the first `active_num_attention_heads` of its heads and whose input
    (and output, with an output projection) is the first `active_hidden_size` channels. The head size never changes.

    Takes the arguments of [`SelfAttention`] but `linear_cls` (the projections are [`ElasticLinear`]).

    Example:

    ```python
    >>> import torch
    >>> from transformers import BertConfig
    >>> attn = ElasticSelfAttention(BertConfig(), hidden_size=32, num_attention_heads=4, attention_head_size=8)
    >>> attn.set_active(hidden_size=16, num_attention_heads=2)
    >>> attn(torch.randn(1, 5, 16))[0].shape
    torch.Size([1, 5, 16])
    ```
    """

    elastic_dims = ("hidden_size", "num_attention_heads")

    def __init__(
        self,
        config: Any,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int,
        bias: bool = True,
        **kwargs: Any,
    ):
        super().__init__(
            config, hidden_size, num_attention_heads, attention_head_size, bias, linear_cls=ElasticLinear, **kwargs
        )
        self.max_num_attention_heads = num_attention_heads
        self.max_hidden_size = hidden_size

    @property
    def active_num_attention_heads(self) -> int:
        return self.qkv_projections()[0].active_out_features // self.attention_head_size

    @property
    def active_hidden_size(self) -> int:
        return self.qkv_projections()[0].active_in_features

    def _projections(self) -> list[ElasticLinear]:
        output = self.output_projection()
        return [*self.qkv_projections(), *([] if output is None else [output])]

    def set_active(self, hidden_size: int | None = None, num_attention_heads: int | None = None) -> None:
        inner = None
        if num_attention_heads is not None:
            check_size("num_attention_heads", num_attention_heads, self.max_num_attention_heads)
            inner = num_attention_heads * self.attention_head_size
        if hidden_size is not None:
            check_size("hidden_size", hidden_size, self.max_hidden_size)
        for proj in self.qkv_projections():
            proj.set_active(in_features=hidden_size, out_features=inner)
        output = self.output_projection()
        if output is not None:
            output.set_active(in_features=inner, out_features=hidden_size)

    def reset_active(self) -> None:
        for proj in self._projections():
            proj.reset_active()

    def active_num_parameters(self) -> int:
        return sum(proj.active_num_parameters() for proj in self._projections())

    @torch.no_grad()
    def permute_heads(self, order: torch.Tensor) -> None:
        """Reorder the heads in place (`order` is a permutation of the head indices): the rows of the query, key and
        value projections and the columns of the output projection, if any."""
        index = head_permutation_index(order, self.attention_head_size)
        for proj in self.qkv_projections():
            proj.permute_out_features(index)
        output = self.output_projection()
        if output is not None:
            output.permute_in_features(index)

    @torch.no_grad()
    def to_static(self) -> SelfAttention:
        """A plain [`SelfAttention`] with the same projection names, holding a copy of the active heads."""
        query, key, _ = self.qkv_projections()
        output = self.output_projection()
        static = SelfAttention(
            self.config,
            self.active_hidden_size,
            self.active_num_attention_heads,
            self.attention_head_size,
            bias=query.bias is not None,
            key_bias=key.bias is not None,
            projection_names=self.projection_names,
            output_projection=self.output_projection_name,
            output_bias=output is not None and output.bias is not None,
        )
        for name, proj in zip(static.projection_names, self.qkv_projections(), strict=True):
            setattr(static, name, proj.to_static())
        if output is not None:
            setattr(static, self.output_projection_name, output.to_static())
        static.dropout.p = self.dropout.p
        static.train(self.training)
        return static
