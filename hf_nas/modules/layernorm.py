"""Elastic layer norm: normalizes over the first `active_features` channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["ElasticLayerNorm"]


class ElasticLayerNorm(ElasticPrimitive, nn.LayerNorm):
    """`nn.LayerNorm` over a 1-D feature axis whose active size is a prefix of the full size.

    The statistics are computed over the active channels only, exactly as a plain `nn.LayerNorm` of the active size
    would; this is what makes an extracted subnet equal the supernet.
    """

    elastic_dims = ("features",)

    def __init__(self, normalized_shape: int, eps: float = 1e-5, elementwise_affine: bool = True, **kwargs):
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine, **kwargs)
        if len(self.normalized_shape) != 1:
            raise ValueError(f"ElasticLayerNorm supports a 1-D normalized_shape, got {self.normalized_shape}.")
        self.active_features = self.normalized_shape[0]

    @property
    def max_features(self) -> int:
        return self.normalized_shape[0]

    def set_active(self, features: int) -> None:
        self.active_features = check_size("features", features, self.max_features)

    def reset_active(self) -> None:
        self.active_features = self.max_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.active_features
        if n == self.max_features:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        weight = None if self.weight is None else self.weight[:n]
        bias = None if self.bias is None else self.bias[:n]
        return F.layer_norm(x, (n,), weight, bias, self.eps)

    def active_num_parameters(self) -> int:
        return (self.active_features if self.weight is not None else 0) + (
            self.active_features if self.bias is not None else 0
        )

    @torch.no_grad()
    def to_static(self) -> nn.LayerNorm:
        static = nn.LayerNorm(
            self.active_features,
            eps=self.eps,
            elementwise_affine=self.elementwise_affine,
            bias=self.bias is not None,
            device=self.weight.device if self.weight is not None else None,
            dtype=self.weight.dtype if self.weight is not None else None,
        )
        if self.weight is not None:
            static.weight.copy_(self.weight[: self.active_features])
        if self.bias is not None:
            static.bias.copy_(self.bias[: self.active_features])
        return static

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, active_features={self.active_features}"
