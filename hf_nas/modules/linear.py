"""Elastic linear layer: an `nn.Linear` whose active input and output sizes are prefixes of its full size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["ElasticLinear"]


class ElasticLinear(ElasticPrimitive, nn.Linear):
    """`nn.Linear` that computes with the first `active_out_features` rows and `active_in_features` columns.

    The parameters keep the vanilla names and full shapes (`weight`: `(max_out_features, max_in_features)`), so a
    vanilla checkpoint loads without key mapping. At full size the forward is exactly `nn.Linear`'s.

    Example:

    ```python
    >>> import torch
    >>> layer = ElasticLinear(8, 4)
    >>> layer.set_active(in_features=6, out_features=2)
    >>> layer(torch.randn(3, 6)).shape
    torch.Size([3, 2])
    ```
    """

    elastic_dims = ("in_features", "out_features")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.active_in_features = in_features
        self.active_out_features = out_features

    @property
    def max_in_features(self) -> int:
        return self.in_features

    @property
    def max_out_features(self) -> int:
        return self.out_features

    def set_active(self, in_features: int | None = None, out_features: int | None = None) -> None:
        if in_features is not None:
            self.active_in_features = check_size("in_features", in_features, self.in_features)
        if out_features is not None:
            self.active_out_features = check_size("out_features", out_features, self.out_features)

    def reset_active(self) -> None:
        self.active_in_features, self.active_out_features = self.in_features, self.out_features

    def active_weight(self) -> torch.Tensor:
        return self.weight[: self.active_out_features, : self.active_in_features]  # (out, in), a view

    def active_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias[: self.active_out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active_in_features == self.in_features and self.active_out_features == self.out_features:
            return F.linear(x, self.weight, self.bias)
        # The row/column slice is a strided view: BLAS reads it in place through its leading dimension, no copy.
        return F.linear(x, self.active_weight(), self.active_bias())

    def active_num_parameters(self) -> int:
        n = self.active_in_features * self.active_out_features
        return n + (self.active_out_features if self.bias is not None else 0)

    @torch.no_grad()
    def to_static(self) -> nn.Linear:
        """A plain `nn.Linear` holding a copy of the active slice."""
        static = nn.Linear(
            self.active_in_features,
            self.active_out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        static.weight.copy_(self.active_weight())
        if self.bias is not None:
            static.bias.copy_(self.active_bias())
        return static

    @torch.no_grad()
    def permute_out_features(self, index: torch.Tensor) -> None:
        """Reorder the output features (rows) in place; `index` is a permutation of `range(max_out_features)`."""
        self.weight.copy_(self.weight[index])
        if self.bias is not None:
            self.bias.copy_(self.bias[index])

    @torch.no_grad()
    def permute_in_features(self, index: torch.Tensor) -> None:
        """Reorder the input features (columns) in place; `index` is a permutation of `range(max_in_features)`."""
        self.weight.copy_(self.weight[:, index])

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, active_in_features={self.active_in_features}, "
            f"active_out_features={self.active_out_features}"
        )
