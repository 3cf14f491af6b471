"""Elastic 2-D convolution (the patch projection of vision transformers): the active output channels are a prefix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["ElasticConv2d"]


class ElasticConv2d(ElasticPrimitive, nn.Conv2d):
    """`nn.Conv2d` that computes the first `active_out_channels` output channels.

    Parameters keep the vanilla names and full shapes, so a vanilla checkpoint loads without key mapping.

    Example:

    ```python
    >>> import torch
    >>> conv = ElasticConv2d(3, 8, kernel_size=4, stride=4)
    >>> conv.set_active(out_channels=6)
    >>> conv(torch.randn(1, 3, 16, 16)).shape
    torch.Size([1, 6, 4, 4])
    ```
    """

    elastic_dims = ("out_channels",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1:
            raise ValueError(f"ElasticConv2d supports groups=1 only, got groups={self.groups}.")
        self.active_out_channels = self.out_channels

    @property
    def max_out_channels(self) -> int:
        return self.out_channels

    def set_active(self, out_channels: int | None = None) -> None:
        if out_channels is not None:
            self.active_out_channels = check_size("out_channels", out_channels, self.out_channels)

    def reset_active(self) -> None:
        self.active_out_channels = self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.active_out_channels
        if n == self.out_channels:
            return super().forward(x)
        bias = None if self.bias is None else self.bias[:n]
        return F.conv2d(x, self.weight[:n], bias, self.stride, self.padding, self.dilation, self.groups)

    def active_num_parameters(self) -> int:
        per_channel = self.weight[0].numel() + (1 if self.bias is not None else 0)
        return self.active_out_channels * per_channel

    @torch.no_grad()
    def to_static(self) -> nn.Conv2d:
        """A plain `nn.Conv2d` holding a copy of the active output channels."""
        static = nn.Conv2d(
            self.in_channels,
            self.active_out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        static.weight.copy_(self.weight[: self.active_out_channels])
        if self.bias is not None:
            static.bias.copy_(self.bias[: self.active_out_channels])
        return static

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, active_out_channels={self.active_out_channels}"
