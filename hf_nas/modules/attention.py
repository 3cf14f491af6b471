"""Multi-head self-attention with an elastic number of heads, through transformers' attention interface."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..validation import check_size
from .linear import ElasticLinear

__all__ = ["ElasticSelfAttention", "SelfAttention", "eager_attention_forward"]


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


class SelfAttention(nn.Module):
    """Plain multi-head self-attention with vanilla parameter names (`query`, `key`, `value`).

    `config` only supplies `_attn_implementation` ("eager", "sdpa", ...) and the dropout probability.
    The head count is `query.out_features // attention_head_size`, so it may differ from
    `hidden_size // attention_head_size`.
    """

    def __init__(
        self,
        config: Any,
        hidden_size: int,
        num_attention_heads: int,
        attention_head_size: int,
        bias: bool = True,
        linear_cls: type[nn.Linear] = nn.Linear,
    ):
        super().__init__()
        self.config = config
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = attention_head_size
        self.scaling = attention_head_size**-0.5
        inner = num_attention_heads * attention_head_size
        self.query = linear_cls(hidden_size, inner, bias=bias)
        self.key = linear_cls(hidden_size, inner, bias=bias)
        self.value = linear_cls(hidden_size, inner, bias=bias)
        self.dropout = nn.Dropout(getattr(config, "attention_probs_dropout_prob", 0.0))
        self.is_causal = False

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]  # (B, T)
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        q = self.query(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, nh, T, hs)
        k = self.key(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, nh, T, hs)
        v = self.value(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, nh, T, hs)
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
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()  # (B, T, nh * hs)
        return attn_output, attn_weights


class ElasticSelfAttention(SelfAttention):
    """Self-attention whose active heads are the first `active_num_attention_heads` of its heads and whose input
    is the first `active_hidden_size` channels. The head size never changes.

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

    def __init__(self, config: Any, hidden_size: int, num_attention_heads: int, attention_head_size: int, bias=True):
        super().__init__(config, hidden_size, num_attention_heads, attention_head_size, bias, linear_cls=ElasticLinear)
        self.max_num_attention_heads = num_attention_heads
        self.max_hidden_size = hidden_size

    @property
    def active_num_attention_heads(self) -> int:
        return self.query.active_out_features // self.attention_head_size

    def set_active(self, hidden_size: int | None = None, num_attention_heads: int | None = None) -> None:
        if num_attention_heads is not None:
            check_size("num_attention_heads", num_attention_heads, self.max_num_attention_heads)
        for proj in (self.query, self.key, self.value):
            proj.set_active(
                in_features=hidden_size,
                out_features=None if num_attention_heads is None else num_attention_heads * self.attention_head_size,
            )

    def reset_active(self) -> None:
        for proj in (self.query, self.key, self.value):
            proj.reset_active()

    @torch.no_grad()
    def permute_heads(self, order: torch.Tensor) -> None:
        """Reorder the heads in place (`order` is a permutation of the head indices)."""
        index = head_permutation_index(order, self.attention_head_size)
        for proj in (self.query, self.key, self.value):
            proj.permute_out_features(index)

    @torch.no_grad()
    def to_static(self) -> SelfAttention:
        static = SelfAttention(
            self.config,
            self.query.active_in_features,
            self.active_num_attention_heads,
            self.attention_head_size,
            bias=self.query.bias is not None,
        )
        static.query, static.key, static.value = (p.to_static() for p in (self.query, self.key, self.value))
        static.train(self.training)
        return static


def head_permutation_index(order: torch.Tensor, head_size: int) -> torch.Tensor:
    """Expand a permutation of heads into a permutation of the `heads * head_size` channels."""
    order = torch.as_tensor(order, dtype=torch.long)
    return (order[:, None] * head_size + torch.arange(head_size)).reshape(-1)  # (nh * hs,)
