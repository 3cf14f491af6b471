"""Elastic layer norm: normalizes over the first `active_features` channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["ElasticLayerNorm", "SwitchableElasticLayerNorm"]


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


class SwitchableElasticLayerNorm(ElasticLayerNorm):
    """[`ElasticLayerNorm`] with one affine transform per subnet budget (a switchable layer norm).

    `weight` and `bias` (the vanilla names and shapes) are budget 0, the one the largest subnets use, so a vanilla or
    plain supernet checkpoint loads without key mapping and the largest subnet stays the vanilla model.
    `budget_weights` and `budget_biases`, shape `(num_budgets - 1, features)`, are budgets 1, 2, ...: smaller subnets
    normalize with their own scale and shift while sharing every other weight. The supernet sets `active_budget` on
    every subnet change (see [`hf_nas.switchable_norms`]); `to_static` copies the active budget's slice, so an
    extracted subnet is an ordinary `nn.LayerNorm`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.modules import SwitchableElasticLayerNorm
    >>> norm = SwitchableElasticLayerNorm(8, num_budgets=3)
    >>> norm.budget_weights.shape
    torch.Size([2, 8])
    >>> with torch.no_grad():
    ...     _ = norm.budget_weights[1].fill_(2.0)
    >>> norm.set_active(6)
    >>> norm.set_budget(2)
    >>> norm.to_static().weight.tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    ```
    """

    def __init__(
        self, normalized_shape: int, eps: float = 1e-5, elementwise_affine: bool = True, *, num_budgets: int, **kwargs
    ):
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine, **kwargs)
        if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 2:
            raise ValueError(
                f"SwitchableElasticLayerNorm needs num_budgets >= 2 (one budget is a plain ElasticLayerNorm), got "
                f"{num_budgets!r}."
            )
        if self.weight is None:
            raise ValueError(
                "SwitchableElasticLayerNorm switches the affine transform: elementwise_affine must be True."
            )
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.num_budgets = num_budgets
        self.budget_weights = nn.Parameter(torch.empty(num_budgets - 1, self.max_features, **factory))
        if self.bias is not None:
            self.budget_biases = nn.Parameter(torch.empty(num_budgets - 1, self.max_features, **factory))
        else:
            self.register_parameter("budget_biases", None)
        self.active_budget = 0
        if not self.weight.is_meta:
            self.reset_budgets()

    @classmethod
    def from_layer_norm(cls, norm: ElasticLayerNorm, num_budgets: int) -> SwitchableElasticLayerNorm:
        """A switchable norm that takes over `norm`'s `weight` and `bias` (the same parameters) and active size, with
        every other budget a copy of them: it computes what `norm` computed, for every budget."""
        if type(norm) is not ElasticLayerNorm:
            raise TypeError(
                f"Switchable layer norms replace an ElasticLayerNorm; got {type(norm).__name__}, which does not "
                "support it."
            )
        with torch.device("meta"):
            new = cls(norm.max_features, eps=norm.eps, elementwise_affine=norm.elementwise_affine,
                      bias=norm.bias is not None, num_budgets=num_budgets)  # fmt: skip
        new = new.to_empty(device=norm.weight.device).to(dtype=norm.weight.dtype)
        new.weight, new.bias = norm.weight, norm.bias
        new.set_active(norm.active_features)
        if not norm.weight.is_meta:
            new.reset_budgets()
        new.train(norm.training)
        return new

    @torch.no_grad()
    def reset_budgets(self) -> None:
        """Every budget a copy of `weight` and `bias`. Tensors already loaded from a checkpoint (marked by
        transformers) are left as they are."""
        from transformers import initialization as init

        init.copy_(self.budget_weights, self.weight.detach()[None].expand_as(self.budget_weights))
        if self.bias is not None:
            init.copy_(self.budget_biases, self.bias.detach()[None].expand_as(self.budget_biases))

    def set_budget(self, budget: int) -> None:
        """Compute with budget `budget` (0: `weight` and `bias`; `b` > 0: row `b - 1` of the budget tensors)."""
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget < self.num_budgets:
            raise ValueError(f"`budget` must be an int in 0..{self.num_budgets - 1}, got {budget!r}.")
        self.active_budget = budget

    def affine(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The full-size weight and bias of the active budget."""
        b = self.active_budget
        if b == 0:
            return self.weight, self.bias
        return self.budget_weights[b - 1], None if self.budget_biases is None else self.budget_biases[b - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.active_features
        weight, bias = self.affine()
        return F.layer_norm(x, (n,), weight[:n], None if bias is None else bias[:n], self.eps)

    @torch.no_grad()
    def to_static(self) -> nn.LayerNorm:
        static = super().to_static()
        weight, bias = self.affine()
        static.weight.copy_(weight[: self.active_features])
        if bias is not None:
            static.bias.copy_(bias[: self.active_features])
        return static

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_budgets={self.num_budgets}, active_budget={self.active_budget}"
