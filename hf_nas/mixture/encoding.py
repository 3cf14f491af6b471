"""The architecture encoding the routers read: one normalized vector per subnet."""

from __future__ import annotations

from typing import Any

import torch

from ..search_space import SubnetConfig

__all__ = ["architecture_encoding", "encoding_size", "size_score"]


def encoding_size(config: Any) -> int:
    """The length of [`architecture_encoding`] for a supernet config: 2 + 2 x `num_hidden_layers`."""
    return 2 + 2 * config.num_hidden_layers


def architecture_encoding(
    subnet: SubnetConfig, config: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The normalized encoding `a` of `subnet` in a supernet of `config`, shape `(2 + 2 * num_hidden_layers,)`.

    Entries: the hidden size and the depth, each over its maximum; then, for every supernet layer `j` in order, its
    head count and FFN width over their maxima, or `(0, 0)` when the subnet drops layer `j`. The largest subnet is all
    ones; every entry lies in `[0, 1]`, and two different subnets have different encodings.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, SubnetConfig
    >>> from hf_nas.mixture import architecture_encoding
    >>> config = ElasticBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    >>> subnet = SubnetConfig(num_hidden_layers=1, num_attention_heads=(2,), intermediate_size=(16,), hidden_size=16,
    ...                       layers=(1,))
    >>> architecture_encoding(subnet, config).tolist()
    [0.5, 0.5, 0.0, 0.0, 0.5, 0.25]
    ```
    """
    values = [0.0] * encoding_size(config)
    values[0] = subnet.hidden_size / config.hidden_size
    values[1] = subnet.num_hidden_layers / config.num_hidden_layers
    for layer, heads, ffn in zip(subnet.layers, subnet.num_attention_heads, subnet.intermediate_size, strict=True):
        values[2 + 2 * layer] = heads / config.num_attention_heads
        values[3 + 2 * layer] = ffn / config.intermediate_size
    return torch.tensor(values, device=device, dtype=dtype or torch.get_default_dtype())


def size_score(encoding: torch.Tensor) -> torch.Tensor:
    """The size of a subnet as the size-routing router reads it (`MixtureConfig.router_init="size"`): the mean of its
    architecture encoding, 1 for the largest subnet and smaller for every smaller one.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.mixture import size_score
    >>> size_score(torch.tensor([0.5, 0.5, 0.0, 0.0, 0.5, 0.25])).item()
    0.2916666567325592
    ```
    """
    return encoding.mean(-1)
