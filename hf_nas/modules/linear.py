"""Elastic linear layer: an `nn.Linear` whose active input and output sizes are prefixes of its full size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["ElasticLinear", "SwitchableBiasElasticLinear", "SwitchableElasticLinear"]


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


class SwitchableElasticLinear(ElasticLinear):
    """[`ElasticLinear`] with one weight and bias per subnet budget (a switchable head).

    The budgets are those of the switchable layer norms (see [`hf_nas.switchable_norms`]): `weight` and `bias` (the
    vanilla names and shapes) are budget 0, the one the largest subnets use, so a vanilla or plain supernet checkpoint
    loads without key mapping and the largest subnet stays the vanilla model. `switch_weights`
    `(num_budgets - 1, out, in)` and `switch_biases` `(num_budgets - 1, out)` are budgets 1, 2, ...: a task head
    (the classifier) that smaller subnets read their own features with, every other weight shared. The supernet sets
    `active_budget` on every subnet change; `to_static` copies the active budget's slice, so an extracted subnet holds
    an ordinary `nn.Linear`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.modules import SwitchableElasticLinear
    >>> head = SwitchableElasticLinear(8, 2, num_budgets=3)
    >>> head.switch_weights.shape
    torch.Size([2, 2, 8])
    >>> with torch.no_grad():
    ...     _ = head.switch_weights[1].fill_(0.5)
    >>> head.set_active(in_features=4)
    >>> head.set_budget(2)
    >>> head.to_static().weight.tolist()
    [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
    ```
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *, num_budgets: int
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 2:
            raise ValueError(
                f"SwitchableElasticLinear needs num_budgets >= 2 (one budget is a plain ElasticLinear), got "
                f"{num_budgets!r}."
            )
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.num_budgets = num_budgets
        self.switch_weights = nn.Parameter(torch.empty(num_budgets - 1, out_features, in_features, **factory))
        if bias:
            self.switch_biases = nn.Parameter(torch.empty(num_budgets - 1, out_features, **factory))
        else:
            self.register_parameter("switch_biases", None)
        self.active_budget = 0
        if not self.weight.is_meta:
            self.reset_budgets()

    @classmethod
    def from_linear(cls, linear: nn.Module, num_budgets: int) -> SwitchableElasticLinear:
        """A switchable head that takes over `linear`'s `weight` and `bias` (the same parameters) and active sizes,
        with every other budget a copy of them: it computes what `linear` computed, for every budget. Raises
        `TypeError` for anything but a plain [`ElasticLinear`]."""
        if type(linear) is not ElasticLinear:
            raise TypeError(
                f"Switchable heads replace an ElasticLinear; got {type(linear).__name__}, which does not support it."
            )
        with torch.device("meta"):
            new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, num_budgets=num_budgets)
        new = new.to_empty(device=linear.weight.device).to(dtype=linear.weight.dtype)
        new.weight, new.bias = linear.weight, linear.bias
        new.set_active(in_features=linear.active_in_features, out_features=linear.active_out_features)
        if not linear.weight.is_meta:
            new.reset_budgets()
        new.train(linear.training)
        return new

    @torch.no_grad()
    def reset_budgets(self) -> None:
        """Every budget a copy of `weight` and `bias`. Tensors already loaded from a checkpoint (marked by
        transformers) are left as they are."""
        from transformers import initialization as init

        init.copy_(self.switch_weights, self.weight.detach()[None].expand_as(self.switch_weights))
        if self.bias is not None:
            init.copy_(self.switch_biases, self.bias.detach()[None].expand_as(self.switch_biases))

    def set_budget(self, budget: int) -> None:
        """Compute with budget `budget` (0: `weight` and `bias`; `b` > 0: entry `b - 1` of the switch tensors)."""
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget < self.num_budgets:
            raise ValueError(f"`budget` must be an int in 0..{self.num_budgets - 1}, got {budget!r}.")
        self.active_budget = budget

    def active_weight(self) -> torch.Tensor:
        b = self.active_budget
        weight = self.weight if b == 0 else self.switch_weights[b - 1]
        return weight[: self.active_out_features, : self.active_in_features]

    def active_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        b = self.active_budget
        return (self.bias if b == 0 else self.switch_biases[b - 1])[: self.active_out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active_budget == 0:
            return super().forward(x)
        return F.linear(x, self.active_weight(), self.active_bias())

    @torch.no_grad()
    def permute_out_features(self, index: torch.Tensor) -> None:
        super().permute_out_features(index)
        self.switch_weights.copy_(self.switch_weights[:, index])
        if self.switch_biases is not None:
            self.switch_biases.copy_(self.switch_biases[:, index])

    @torch.no_grad()
    def permute_in_features(self, index: torch.Tensor) -> None:
        super().permute_in_features(index)
        self.switch_weights.copy_(self.switch_weights[:, :, index])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_budgets={self.num_budgets}, active_budget={self.active_budget}"


class SwitchableBiasElasticLinear(ElasticLinear):
    """[`ElasticLinear`] with one bias per subnet budget and one shared weight (a switchable bias).

    The budgets are those of the switchable layer norms (see [`hf_nas.switchable_norms`]): `bias` (the vanilla name
    and shape) is budget 0, the one the largest subnets use, so a vanilla or plain supernet checkpoint loads without key
    mapping and the largest subnet stays the vanilla model. `bias_budgets`, shape `(num_budgets - 1, out_features)`,
    holds budgets 1, 2, ...: the encoder's projections of smaller subnets shift their outputs with their own biases
    while every weight matrix stays shared. The supernet sets `active_budget` on every subnet change; `to_static`
    copies the weight slice and the active budget's bias, so an extracted subnet holds an ordinary `nn.Linear`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.modules import SwitchableBiasElasticLinear
    >>> layer = SwitchableBiasElasticLinear(4, 3, num_budgets=3)
    >>> layer.bias_budgets.shape
    torch.Size([2, 3])
    >>> with torch.no_grad():
    ...     _ = layer.bias_budgets[1].fill_(0.5)
    >>> layer.set_active(out_features=2)
    >>> layer.set_budget(2)
    >>> layer.to_static().bias.tolist()
    [0.5, 0.5]
    ```
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *, num_budgets: int
    ):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 2:
            raise ValueError(
                f"SwitchableBiasElasticLinear needs num_budgets >= 2 (one budget is a plain ElasticLinear), got "
                f"{num_budgets!r}."
            )
        if self.bias is None:
            raise ValueError("SwitchableBiasElasticLinear switches the bias: the layer needs one (bias=True).")
        self.num_budgets = num_budgets
        self.bias_budgets = nn.Parameter(
            torch.empty(num_budgets - 1, out_features, device=self.bias.device, dtype=self.bias.dtype)
        )
        self.active_budget = 0
        if not self.weight.is_meta:
            self.reset_budgets()

    @classmethod
    def from_linear(cls, linear: nn.Module, num_budgets: int) -> SwitchableBiasElasticLinear:
        """A layer that takes over `linear`'s `weight` and `bias` (the same parameters) and active sizes, with every
        other budget's bias a copy of `bias`: it computes what `linear` computed, for every budget. Raises `TypeError`
        for anything but a plain [`ElasticLinear`] with a bias."""
        if type(linear) is not ElasticLinear or linear.bias is None:
            what = type(linear).__name__ if type(linear) is not ElasticLinear else "an ElasticLinear without a bias"
            raise TypeError(
                f"Switchable biases replace an ElasticLinear with a bias; got {what}, which does not support it."
            )
        with torch.device("meta"):
            new = cls(linear.in_features, linear.out_features, num_budgets=num_budgets)
        new = new.to_empty(device=linear.weight.device).to(dtype=linear.weight.dtype)
        new.weight, new.bias = linear.weight, linear.bias
        new.set_active(in_features=linear.active_in_features, out_features=linear.active_out_features)
        if not linear.weight.is_meta:
            new.reset_budgets()
        new.train(linear.training)
        return new

    @torch.no_grad()
    def reset_budgets(self) -> None:
        """Every budget a copy of `bias`. Tensors already loaded from a checkpoint (marked by transformers) are left as
        they are."""
        from transformers import initialization as init

        init.copy_(self.bias_budgets, self.bias.detach()[None].expand_as(self.bias_budgets))

    def set_budget(self, budget: int) -> None:
        """Compute with budget `budget` (0: `bias`; `b` > 0: row `b - 1` of `bias_budgets`)."""
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget < self.num_budgets:
            raise ValueError(f"`budget` must be an int in 0..{self.num_budgets - 1}, got {budget!r}.")
        self.active_budget = budget

    def active_bias(self) -> torch.Tensor:
        b = self.active_budget
        return (self.bias if b == 0 else self.bias_budgets[b - 1])[: self.active_out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active_budget == 0:
            return super().forward(x)
        return F.linear(x, self.active_weight(), self.active_bias())

    @torch.no_grad()
    def permute_out_features(self, index: torch.Tensor) -> None:
        super().permute_out_features(index)
        self.bias_budgets.copy_(self.bias_budgets[:, index])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_budgets={self.num_budgets}, active_budget={self.active_budget}"
