"""Routers: from the architecture encoding of the active subnet to the mixture weights of one linear layer's experts.

A router is `Linear(encoding_size, hidden) -> ReLU -> Linear(hidden, logits)` followed by a softmax over the experts.
Its kind says what one mixture covers: [`LayerRouter`] one for the whole layer, [`NeuronRouter`] one per output neuron
(row of the weight). New kinds subclass [`Router`] and are added with [`register_router`]; the name is the mode of
[`MixtureConfig`].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from transformers import initialization as init

__all__ = ["ROUTERS", "LayerRouter", "NeuronRouter", "Router", "get_router_class", "register_router"]


class Router(nn.Module, ABC):
    """The router of one linear layer with `num_experts` experts and `out_features` output neurons.

    Args:
        encoding_size: length of the architecture encoding it reads.
        hidden_size: width of its hidden layer.
        num_experts: number of experts it mixes.
        out_features: output neurons of the linear layer it routes.
        init_std: standard deviation of its output weights at initialization (output bias 0: near-uniform weights).
        size_range: `None` (random start), or `(smallest, largest)`: the [`size_score`] of the smallest and the largest
            subnet, and the router starts routing by size (see `init_size_routing`).

    Parameters: `dense` (`Linear(encoding_size, hidden_size)`) and `logits` (`Linear(hidden_size, num_logits)`).
    """

    mode: ClassVar[str]

    def __init__(
        self,
        encoding_size: int,
        hidden_size: int,
        num_experts: int,
        out_features: int,
        init_std: float,
        size_range: tuple[float, float] | None = None,
    ):
        super().__init__()
        if size_range is not None:
            low, high = (float(v) for v in size_range)
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(
                    f"`size_range` must be (smallest, largest) with 0 <= smallest <= largest <= 1, got {size_range!r}."
                )
            size_range = (low, high)
        self.num_experts = num_experts
        self.out_features = out_features
        self.init_std = init_std
        self.size_range = size_range
        self.dense = nn.Linear(encoding_size, hidden_size)
        self.activation = nn.ReLU()
        self.logits = nn.Linear(hidden_size, self.num_logits())

    @abstractmethod
    def num_logits(self) -> int:
        """Outputs of the last linear layer."""

    @abstractmethod
    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        """The mixture weights `alpha(a)` of encoding `a` (each mixture sums to 1 over the experts)."""

    @abstractmethod
    def row_weights(self, encoding: torch.Tensor, rows: int) -> torch.Tensor:
        """`alpha(a)` laid out for mixing the first `rows` rows of the experts: shape `(num_experts, rows)`, or
        `(num_experts, 1)` when every row shares one mixture."""

    def expert_logits(self, expert: int) -> slice:
        """The outputs of `logits` that hold expert `expert`'s logit (one per mixture); needed only for size routing,
        so a router kind without it still works with the random start."""
        raise NotImplementedError(
            f"{type(self).__name__} does not lay out its logits for size routing (router_init='size'): implement "
            "`expert_logits`, or use router_init='random'."
        )

    def permute_outputs(self, index: torch.Tensor) -> None:
        """Follow a reordering of the routed layer's output neurons (`index`: a permutation of its rows)."""

    def hidden(self, encoding: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(encoding))  # (hidden,)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """nn.Linear's default initialization for `dense`; `logits` ~ N(0, init_std) with zero bias; then, with a
        `size_range`, the size routing of `init_size_routing`. Tensors already loaded from a checkpoint (marked by
        transformers) are left as they are."""
        bound = 1.0 / math.sqrt(self.dense.in_features)
        init.uniform_(self.dense.weight, -bound, bound)
        init.uniform_(self.dense.bias, -bound, bound)
        init.normal_(self.logits.weight, mean=0.0, std=self.init_std)
        init.zeros_(self.logits.bias)
        if self.size_range is not None:
            self.init_size_routing(*self.size_range)

    def size_routing_centres(self, smallest: float, largest: float) -> tuple[list[float], float]:
        """The size each expert is centred on (expert 0 on `largest`, the last on `smallest`, evenly spaced) and the
        sharpness `beta` that gives each of two neighbouring experts 95% of the weight at its own centre (0 when the
        range is empty: uniform)."""
        m = self.num_experts
        step = (largest - smallest) / (m - 1)
        centres = [largest - i * step for i in range(m)]
        beta = math.log(19.0) / step**2 if step > 0 else 0.0
        return centres, beta

    @torch.no_grad()
    def init_size_routing(self, smallest: float, largest: float) -> None:
        """Start routing by size: `alpha_i(a) = softmax_i(-beta * (s(a) - c_i) ** 2)` with `s(a)` the mean of the
        encoding ([`size_score`]) and the centres and `beta` of `size_routing_centres`. Hidden unit 0 computes `s(a)`
        (weights `1 / encoding_size`, bias 0; `s >= 0`, so the ReLU keeps it), and each expert's logit reads it as
        `2 beta c_i s - beta c_i^2`, which differs from `-beta (s - c_i)^2` by a term common to all experts. The
        logits' other weights keep their N(0, init_std) draw. Tensors loaded from a checkpoint are left as they are."""
        centres, beta = self.size_routing_centres(smallest, largest)
        dense_weight = self.dense.weight.detach().clone()
        dense_weight[0] = 1.0 / self.dense.in_features
        dense_bias = self.dense.bias.detach().clone()
        dense_bias[0] = 0.0
        logits_weight = self.logits.weight.detach().clone()
        logits_bias = self.logits.bias.detach().clone()
        for expert, centre in enumerate(centres):
            rows = self.expert_logits(expert)
            logits_weight[rows, 0] = 2.0 * beta * centre
            logits_bias[rows] = -beta * centre**2
        init.copy_(self.dense.weight, dense_weight)
        init.copy_(self.dense.bias, dense_bias)
        init.copy_(self.logits.weight, logits_weight)
        init.copy_(self.logits.bias, logits_bias)

    def extra_repr(self) -> str:
        size = "" if self.size_range is None else f", size_range={self.size_range}"
        return f"mode={self.mode!r}, num_experts={self.num_experts}, out_features={self.out_features}{size}"


class LayerRouter(Router):
    """Layer-wise mixture: one softmax over the experts for the whole linear layer, `alpha` of shape `(num_experts,)`.

    Example:

    ```python
    >>> import torch
    >>> router = LayerRouter(encoding_size=6, hidden_size=16, num_experts=2, out_features=8, init_std=0.1)
    >>> alpha = router(torch.ones(6))
    >>> alpha.shape, bool(torch.isclose(alpha.sum(), torch.tensor(1.0)))
    (torch.Size([2]), True)
    ```
    """

    mode = "layer"

    def num_logits(self) -> int:
        return self.num_experts

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(encoding)).softmax(-1)  # (m,)

    def row_weights(self, encoding: torch.Tensor, rows: int) -> torch.Tensor:
        return self(encoding)[:, None]  # (m, 1)

    def expert_logits(self, expert: int) -> slice:
        return slice(expert, expert + 1)


class NeuronRouter(Router):
    """Neuron-wise mixture: a softmax over the experts for each output neuron, `alpha` of shape
    `(out_features, num_experts)`.

    Example:

    ```python
    >>> import torch
    >>> router = NeuronRouter(encoding_size=6, hidden_size=16, num_experts=2, out_features=8, init_std=0.1)
    >>> router(torch.ones(6)).shape
    torch.Size([8, 2])
    ```
    """

    mode = "neuron"

    def num_logits(self) -> int:
        return self.out_features * self.num_experts

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        logits = self.logits(self.hidden(encoding))  # (out * m,)
        return logits.view(self.out_features, self.num_experts).softmax(-1)  # (out, m)

    def row_weights(self, encoding: torch.Tensor, rows: int) -> torch.Tensor:
        return self(encoding)[:rows].T  # (m, rows)

    def expert_logits(self, expert: int) -> slice:
        return slice(expert, None, self.num_experts)  # row o * m + expert of every neuron o

    @torch.no_grad()
    def permute_outputs(self, index: torch.Tensor) -> None:
        m = self.num_experts
        weight = self.logits.weight.view(self.out_features, m, -1)  # (out, m, hidden): row o*m + e
        self.logits.weight.copy_(weight[index].reshape(self.out_features * m, -1))
        self.logits.bias.copy_(self.logits.bias.view(self.out_features, m)[index].reshape(-1))


ROUTERS: dict[str, type[Router]] = {}


def register_router(cls: type[Router]) -> type[Router]:
    """Add a router kind under its `mode` name (usable as `MixtureConfig.mode` once listed in `MIXTURE_MODES`)."""
    if not (isinstance(cls, type) and issubclass(cls, Router)):
        raise TypeError(f"A router must subclass Router, got {cls!r}.")
    ROUTERS[cls.mode] = cls
    return cls


def get_router_class(mode: str) -> type[Router]:
    """The router class of a mixture mode (`layer` or `neuron`)."""
    if mode not in ROUTERS:
        raise ValueError(f"No router for mixture mode {mode!r}; allowed: {sorted(ROUTERS)}.")
    return ROUTERS[mode]


register_router(LayerRouter)
register_router(NeuronRouter)
