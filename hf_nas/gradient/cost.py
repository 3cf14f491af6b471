"""Costs under the mixture: the MACs expected under architecture weights, and the MAC budget of selection.

Both use the one cost model of `hf_nas.costs` ([`~hf_nas.costs.layer_macs`], [`~hf_nas.costs.non_layer_macs`],
[`~hf_nas.costs.count_macs`]) and take the input size as `count_macs` does: `sequence_length` for text models,
`image_size` for image models (ViT, BEiT).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..costs import count_macs, layer_macs, non_layer_macs, num_tokens
from ..search_space import SubnetConfig
from ..validation import check_positive_int
from .parameters import ArchitectureWeights, check_supernet

__all__ = ["MacBudget", "expected_macs"]


def _depth_survival(depth_weights: torch.Tensor, depths: torch.Tensor, num_layers: int) -> torch.Tensor:
    """`P(depth > i)` for every layer position `i`, shape (num_layers,)."""
    return torch.stack([depth_weights @ (depths > i).to(depth_weights) for i in range(num_layers)])  # (L,)


def expected_macs(
    model: nn.Module,
    weights: ArchitectureWeights,
    sequence_length: int | None = None,
    batch_size: int = 1,
    image_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """The MACs of one forward pass expected under the mixture `weights` (choices drawn independently per dimension
    and layer with those probabilities), a differentiable function of the weights.

    MACs are a sum of products of independent factors, so the expectation is exact: layer `i` (the `i`-th layer a
    subnet keeps; which supernet layer it is does not change its MACs) counts [`~hf_nas.costs.layer_macs`] of the
    expected sizes with the probability that the depth exceeds `i` (`E[h * a_i] = E[h] E[a_i]`), and what lies
    outside the layers ([`~hf_nas.costs.non_layer_macs`]) is weighted per hidden-size choice. With one-hot weights
    this is exactly `hf_nas.count_macs(model, subnet, ...)` at the same input size.

    Args:
        model (`nn.Module`): an elastic supernet.
        weights (`ArchitectureWeights`): mixture weights of `model.search_space`.
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        batch_size (`int`, *optional*, defaults to 1): examples per forward pass.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size (default: the config's).

    Returns:
        `torch.Tensor`: a float64 scalar, differentiable in `weights`.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig, ElasticViTForImageClassification, count_macs
    >>> from hf_nas.gradient import ArchitectureWeights, expected_macs
    >>> model = ElasticViTForImageClassification(ElasticViTConfig(hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=8, num_labels=2))
    >>> subnet = model.search_space.smallest()
    >>> weights = ArchitectureWeights.one_hot(model.search_space, subnet)
    >>> expected_macs(model, weights).item() == count_macs(model, subnet)
    True
    ```
    """
    model = check_supernet(model)
    space = model.search_space
    if not isinstance(weights, ArchitectureWeights):
        raise TypeError(f"`weights` must be ArchitectureWeights, got {type(weights).__name__}.")
    weights.check(space)
    tokens = num_tokens(model.config, sequence_length, image_size)
    batch_size = check_positive_int("batch_size", batch_size)
    w = {name: t.double() for name, t in weights.items()}
    device = w["hidden_size"].device

    def values(name: str) -> torch.Tensor:
        return torch.tensor(getattr(space, name), dtype=torch.float64, device=device)  # (K,)

    hidden = w["hidden_size"] @ values("hidden_size")  # () E[h]
    heads = w["num_attention_heads"] @ values("num_attention_heads")  # (L,) E[heads_i]
    ffn = w["intermediate_size"] @ values("intermediate_size")  # (L,) E[f_i]
    keep = _depth_survival(w["num_hidden_layers"], values("num_hidden_layers"), heads.shape[0])  # (L,)
    per_layer = layer_macs(
        hidden, heads, ffn, attention_head_size=space.attention_head_size, tokens=tokens, batch_size=batch_size
    )  # (L,)
    # Everything outside the layers (patch projection, pooler, head) depends on the hidden size only.
    rest = [non_layer_macs(model, h, sequence_length, batch_size, image_size) for h in space.hidden_size]
    rest = torch.tensor(rest, dtype=torch.float64, device=device)  # (K_h,)
    return (keep * per_layer).sum() + w["hidden_size"] @ rest


def _check_ratio(max_macs_ratio: Any) -> float | None:
    if max_macs_ratio is None:
        return None
    if isinstance(max_macs_ratio, bool) or not isinstance(max_macs_ratio, (int, float)):
        raise TypeError(f"`max_macs_ratio` must be a number in (0, 1] or None, got {max_macs_ratio!r}.")
    if not (math.isfinite(max_macs_ratio) and 0 < max_macs_ratio <= 1):
        raise ValueError(
            f"`max_macs_ratio`={max_macs_ratio} is out of range: a MAC budget is a fraction of the full model's MACs, "
            "allowed: 0 < max_macs_ratio <= 1 (or None for no budget)."
        )
    return float(max_macs_ratio)


class MacBudget:
    """A MAC budget for selection: a subnet fits when its MACs ([`~hf_nas.count_macs`]) are at most
    `max_macs_ratio` of the full model's, at the given input size.

    Args:
        model (`nn.Module`): an elastic supernet.
        max_macs_ratio (`float`, *optional*): the budget, in (0, 1]; `None` means no budget (every subnet fits).
        sequence_length (`int`, *optional*, defaults to 128): text models: tokens per sequence.
        image_size (`int` or `(height, width)`, *optional*): image models: the input size (default: the config's).

    Raises `ValueError` when even the smallest subnet of the space does not fit.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.gradient import MacBudget
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64))
    >>> budget = MacBudget(model, 0.5, sequence_length=16)
    >>> budget.fits(model.search_space.smallest()), budget.fits(model.max_subnet())
    (True, False)
    ```
    """

    def __init__(
        self,
        model: nn.Module,
        max_macs_ratio: float | None = None,
        sequence_length: int | None = None,
        image_size: int | tuple[int, int] | None = None,
    ):
        self.model = check_supernet(model)
        self.ratio = _check_ratio(max_macs_ratio)
        self.inputs = {"sequence_length": sequence_length, "image_size": image_size}
        self._full: int | None = None
        if self.ratio is not None:  # without a budget nothing is counted, so the input size is not needed
            self._check_reachable()

    @property
    def full(self) -> int:
        """The MACs of the full model at the budget's input size."""
        if self._full is None:
            self._full = count_macs(self.model, self.model.max_subnet(), **self.inputs)
        return self._full

    def _check_reachable(self) -> None:
        smallest = self.macs_ratio(self.model.search_space.smallest())
        if smallest > self.ratio:
            size = ", ".join(f"{k}={v}" for k, v in self.inputs.items() if v is not None) or "the default input size"
            raise ValueError(
                f"`max_macs_ratio`={self.ratio} is below the smallest subnet of the space ({smallest:.4f} of the "
                f"full model's MACs at {size}); allowed: {smallest:.4f} to 1."
            )

    def macs_ratio(self, subnet: SubnetConfig) -> float:
        """The MACs of `subnet` as a fraction of the full model's."""
        return count_macs(self.model, subnet, **self.inputs) / self.full

    def fits(self, subnet: SubnetConfig) -> bool:
        """Whether `subnet` is within the budget (always, without one)."""
        return self.ratio is None or self.macs_ratio(subnet) <= self.ratio + 1e-12
