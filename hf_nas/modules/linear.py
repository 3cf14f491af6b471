"""Elastic linear layer: an `nn.Linear` whose active input and output sizes are prefixes of its full size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_size
from .primitive import ElasticPrimitive

__all__ = ["BudgetElasticLinear", "ElasticLinear", "SwitchableElasticLinear"]


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


def _take_over(new: ElasticLinear, linear: ElasticLinear) -> ElasticLinear:
    """`new` (built on the meta device) materialized on `linear`'s device and dtype, holding `linear`'s `weight` and
    `bias` (the same parameters), active sizes and mode, its budgets reset from them."""
    new = new.to_empty(device=linear.weight.device).to(dtype=linear.weight.dtype)
    new.weight, new.bias = linear.weight, linear.bias
    new.set_active(in_features=linear.active_in_features, out_features=linear.active_out_features)
    if not linear.weight.is_meta:
        new.reset_budgets()
    new.train(linear.training)
    return new


class _BudgetLinear(ElasticLinear):
    """What the linear layers that switch with the subnet budget share: `num_budgets` (checked), the `active_budget`
    the supernet sets on every subnet change ([`set_budget`]), and a forward that is the plain one for budget 0 and
    otherwise computes with the subclass's `active_weight` / `active_bias` of the active budget."""

    def __init__(self, in_features: int, out_features: int, bias: bool, device, dtype, num_budgets: int):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if isinstance(num_budgets, bool) or not isinstance(num_budgets, int) or num_budgets < 2:
            raise ValueError(
                f"{type(self).__name__} needs num_budgets >= 2 (one budget is a plain ElasticLinear), got "
                f"{num_budgets!r}."
            )
        self.num_budgets = num_budgets
        self.active_budget = 0

    def set_budget(self, budget: int) -> None:
        """Compute with budget `budget` (0: the layer's own `weight` and `bias`; `b` > 0: entry `b - 1` of the budget
        tensors)."""
        if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget < self.num_budgets:
            raise ValueError(f"`budget` must be an int in 0..{self.num_budgets - 1}, got {budget!r}.")
        self.active_budget = budget

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active_budget == 0:
            return super().forward(x)
        return F.linear(x, self.active_weight(), self.active_bias())

    def budget_repr(self) -> str:
        """What `extra_repr` adds to the elastic layer's: the subclass's own settings."""
        return ""

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_budgets={self.num_budgets}{self.budget_repr()}, "
            f"active_budget={self.active_budget}"
        )


class SwitchableElasticLinear(_BudgetLinear):
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
        super().__init__(in_features, out_features, bias, device, dtype, num_budgets)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.switch_weights = nn.Parameter(torch.empty(num_budgets - 1, out_features, in_features, **factory))
        if bias:
            self.switch_biases = nn.Parameter(torch.empty(num_budgets - 1, out_features, **factory))
        else:
            self.register_parameter("switch_biases", None)
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
        return _take_over(new, linear)

    @torch.no_grad()
    def reset_budgets(self) -> None:
        """Every budget a copy of `weight` and `bias`. Tensors already loaded from a checkpoint (marked by
        transformers) are left as they are."""
        from transformers import initialization as init

        init.copy_(self.switch_weights, self.weight.detach()[None].expand_as(self.switch_weights))
        if self.bias is not None:
            init.copy_(self.switch_biases, self.bias.detach()[None].expand_as(self.switch_biases))

    def active_weight(self) -> torch.Tensor:
        b = self.active_budget
        weight = self.weight if b == 0 else self.switch_weights[b - 1]
        return weight[: self.active_out_features, : self.active_in_features]

    def active_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        b = self.active_budget
        return (self.bias if b == 0 else self.switch_biases[b - 1])[: self.active_out_features]

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


class BudgetElasticLinear(_BudgetLinear):
    """[`ElasticLinear`] whose bias and/or a low-rank delta of its weight switch with the subnet budget.

    The budgets are those of the switchable layer norms (see [`hf_nas.switchable_norms`]); budget 0, the one the
    largest subnets use, is the layer itself (`weight` and `bias`, the vanilla names and shapes), so a vanilla or plain
    supernet checkpoint loads without key mapping and the largest subnet stays the vanilla model. For budgets 1, 2, ...
    (smaller subnets):

    - with `switch_bias`, `bias_budgets` `(num_budgets - 1, out_features)` holds each budget's own bias (switchable
      biases), each a copy of `bias` at the start;
    - with `delta_rank` r > 0, `delta_up` `(num_budgets - 1, out_features, r)` and `delta_down`
      `(num_budgets - 1, r, in_features)` add `delta_up[b - 1] @ delta_down[b - 1]` to the shared weight (switchable
      low-rank deltas); `delta_up` starts at zero, so nothing changes at the start, `delta_down` small and random.

    The active slice of a budget's weight is the shared weight's slice plus the slices of its delta (rows of
    `delta_up`, columns of `delta_down`), so the deltas follow the elastic slicing and the importance reordering. The
    supernet sets `active_budget` on every subnet change; `to_static` copies the merged weight and the active bias, so
    an extracted subnet holds an ordinary `nn.Linear`.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.modules import BudgetElasticLinear
    >>> layer = BudgetElasticLinear(4, 3, num_budgets=3, delta_rank=2)
    >>> layer.bias_budgets.shape, layer.delta_up.shape, layer.delta_down.shape
    (torch.Size([2, 3]), torch.Size([2, 3, 2]), torch.Size([2, 2, 4]))
    >>> with torch.no_grad():
    ...     _ = layer.bias_budgets[1].fill_(0.5)
    >>> layer.set_active(out_features=2)
    >>> layer.set_budget(2)
    >>> layer.to_static().bias.tolist()
    [0.5, 0.5]
    ```
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        num_budgets: int,
        switch_bias: bool = True,
        delta_rank: int = 0,
    ):
        super().__init__(in_features, out_features, bias, device, dtype, num_budgets)
        self.register_parameter("bias_budgets", None)
        self.register_parameter("delta_up", None)
        self.register_parameter("delta_down", None)
        if not switch_bias and not delta_rank:
            raise ValueError("BudgetElasticLinear switches nothing: set switch_bias=True or delta_rank > 0.")
        if switch_bias:
            self.add_bias_budgets()
        if delta_rank:
            self.add_deltas(delta_rank)

    @property
    def delta_rank(self) -> int:
        """The rank of the low-rank deltas (0: none)."""
        return 0 if self.delta_up is None else self.delta_up.shape[-1]

    def add_bias_budgets(self) -> None:
        """Give every smaller budget its own bias, a copy of `bias` (nothing changes). Kept if there already."""
        if self.bias_budgets is not None:
            return
        if self.bias is None:
            raise ValueError("Switchable biases switch the bias of a layer that has one; this layer has none.")
        self.bias_budgets = nn.Parameter(
            torch.empty(self.num_budgets - 1, self.out_features, device=self.bias.device, dtype=self.bias.dtype)
        )
        if not self.weight.is_meta:
            self._reset_bias_budgets()

    def add_deltas(self, rank: int) -> None:
        """Give every smaller budget a low-rank weight delta of rank `rank` (`delta_up` zero: nothing changes). A
        layer with deltas of that rank already keeps them; another rank is refused."""
        if (
            isinstance(rank, bool)
            or not isinstance(rank, int)
            or not 0 < rank <= min(self.in_features, self.out_features)
        ):
            raise ValueError(
                f"`delta_rank` must be an int in 1..{min(self.in_features, self.out_features)} (the layer's smaller "
                f"side), got {rank!r}."
            )
        if self.delta_up is not None:
            if self.delta_rank != rank:
                raise ValueError(f"This layer has deltas of rank {self.delta_rank} already; asked for rank {rank}.")
            return
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.delta_up = nn.Parameter(torch.empty(self.num_budgets - 1, self.out_features, rank, **factory))
        self.delta_down = nn.Parameter(torch.empty(self.num_budgets - 1, rank, self.in_features, **factory))
        if not self.weight.is_meta:
            self._reset_deltas()

    @classmethod
    def from_linear(
        cls, linear: nn.Module, num_budgets: int, switch_bias: bool = True, delta_rank: int = 0
    ) -> BudgetElasticLinear:
        """A layer that takes over `linear`'s `weight` and `bias` (the same parameters) and active sizes, with every
        other budget computing what `linear` computed (bias copies, zero deltas). Raises `TypeError` for anything but a
        plain [`ElasticLinear`] (with a bias, to switch it)."""
        if type(linear) is not ElasticLinear or (switch_bias and linear.bias is None):
            what = type(linear).__name__ if type(linear) is not ElasticLinear else "an ElasticLinear without a bias"
            raise TypeError(
                f"Budget layers replace an ElasticLinear{' with a bias' if switch_bias else ''}; got {what}, which "
                "does not support it."
            )
        with torch.device("meta"):
            new = cls(
                linear.in_features,
                linear.out_features,
                bias=linear.bias is not None,
                num_budgets=num_budgets,
                switch_bias=switch_bias,
                delta_rank=delta_rank,
            )
        return _take_over(new, linear)

    @torch.no_grad()
    def _reset_bias_budgets(self) -> None:
        from transformers import initialization as init

        init.copy_(self.bias_budgets, self.bias.detach()[None].expand_as(self.bias_budgets))

    @torch.no_grad()
    def _reset_deltas(self) -> None:
        from transformers import initialization as init

        init.zeros_(self.delta_up)
        init.normal_(self.delta_down, std=self.in_features**-0.5)

    @torch.no_grad()
    def reset_budgets(self) -> None:
        """Every bias budget a copy of `bias`, every delta zero (`delta_up` zero, `delta_down` random). Tensors
        already loaded from a checkpoint (marked by transformers) are left as they are."""
        if self.bias_budgets is not None:
            self._reset_bias_budgets()
        if self.delta_up is not None:
            self._reset_deltas()

    def active_weight(self) -> torch.Tensor:
        weight = super().active_weight()
        b = self.active_budget
        if b == 0 or self.delta_up is None:
            return weight
        o, i = self.active_out_features, self.active_in_features
        return weight + self.delta_up[b - 1, :o] @ self.delta_down[b - 1, :, :i]

    def active_bias(self) -> torch.Tensor | None:
        b = self.active_budget
        if b == 0 or self.bias_budgets is None:
            return super().active_bias()
        return self.bias_budgets[b - 1, : self.active_out_features]

    @torch.no_grad()
    def permute_out_features(self, index: torch.Tensor) -> None:
        super().permute_out_features(index)
        if self.bias_budgets is not None:
            self.bias_budgets.copy_(self.bias_budgets[:, index])
        if self.delta_up is not None:
            self.delta_up.copy_(self.delta_up[:, index])

    @torch.no_grad()
    def permute_in_features(self, index: torch.Tensor) -> None:
        super().permute_in_features(index)
        if self.delta_down is not None:
            self.delta_down.copy_(self.delta_down[:, :, index])

    def budget_repr(self) -> str:
        return f", switch_bias={self.bias_budgets is not None}, delta_rank={self.delta_rank}"
