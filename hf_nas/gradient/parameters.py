"""Architecture parameters and mixture weights of a search space (DARTS softmax or DrNAS Dirichlet).

[`ArchitectureParameters`] holds one learnable vector per dimension (per layer for heads and FFN width);
[`ArchitectureWeights`] are the mixture weights it turns them into: the softmax of the parameters, or Dirichlet
weights (their expectation, or a reparameterized sample drawn with an explicit `torch.Generator`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.autograd.function import once_differentiable

from ..models.supernet import SupernetMixin
from ..search_space import SearchSpace, SubnetConfig
from ..utils import atomic_directory
from ..validation import check_float, check_int

__all__ = [
    "ARCHITECTURE_CONFIG_NAME",
    "ARCHITECTURE_WEIGHTS_NAME",
    "DIMENSIONS",
    "PARAMETRIZATIONS",
    "PER_LAYER",
    "ArchitectureParameters",
    "ArchitectureWeights",
    "check_supernet",
]

# The dimensions, in the order selection decides them: depth and hidden size first, then layer by layer.
DIMENSIONS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
PER_LAYER = ("num_attention_heads", "intermediate_size")
PARAMETRIZATIONS = ("softmax", "dirichlet")
ARCHITECTURE_CONFIG_NAME = "architecture_config.json"
ARCHITECTURE_WEIGHTS_NAME = "architecture.safetensors"


def check_supernet(model: Any) -> SupernetMixin:
    """`model` if it is an elastic supernet, else a `TypeError` that says how to load one.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertModel
    >>> from hf_nas.gradient import check_supernet
    >>> model = ElasticBertModel(ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
    ...                                            num_attention_heads=4, intermediate_size=64))
    >>> check_supernet(model) is model
    True
    ```
    """
    if not isinstance(model, SupernetMixin):
        raise TypeError(
            f"Gradient-based search needs an elastic supernet (ElasticBert*, ...), got {type(model).__name__}. Load "
            "the checkpoint with an Elastic* class, e.g. ElasticBertForSequenceClassification.from_pretrained(path)."
        )
    return model


# ----------------------------------------------------------------------------------------------------------------
# mixture weights
@dataclass
class ArchitectureWeights:
    """Mixture weights over the choices of each dimension; each row sums to one.

    Args:
        num_hidden_layers (`torch.Tensor` of shape `(len(space.num_hidden_layers),)`): depth weights.
        hidden_size (`torch.Tensor` of shape `(len(space.hidden_size),)`): hidden-size weights.
        num_attention_heads (`torch.Tensor` of shape `(max_depth, len(space.num_attention_heads))`): per layer.
        intermediate_size (`torch.Tensor` of shape `(max_depth, len(space.intermediate_size))`): per layer.

    Per-layer rows follow the subnet's layers in order, like `SubnetConfig.num_attention_heads`: row `i` is the `i`-th
    layer a subnet keeps (supernet layer `space.layers_for(depth)[i]`, which is layer `i` under `layer_rule="first"`).

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.gradient import ArchitectureWeights
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(32,), attention_head_size=8)
    >>> weights = ArchitectureWeights.one_hot(space, space.smallest())
    >>> weights.num_attention_heads.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    ```
    """

    num_hidden_layers: torch.Tensor
    hidden_size: torch.Tensor
    num_attention_heads: torch.Tensor
    intermediate_size: torch.Tensor

    @classmethod
    def one_hot(cls, space: SearchSpace, subnet: SubnetConfig) -> ArchitectureWeights:
        """The weights that put all mass on `subnet` (layers it drops get their largest choice, which is unused)."""
        space.validate(subnet)
        depth = max(space.num_hidden_layers)

        def hot(choices: tuple[int, ...], value: int) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.tensor(choices.index(value)), len(choices)).float()

        def per_layer(name: str) -> torch.Tensor:
            choices = getattr(space, name)
            values = list(getattr(subnet, name)) + [max(choices)] * (depth - subnet.num_hidden_layers)
            return torch.stack([hot(choices, v) for v in values])  # (max_depth, K)

        return cls(
            num_hidden_layers=hot(space.num_hidden_layers, subnet.num_hidden_layers),
            hidden_size=hot(space.hidden_size, subnet.hidden_size),
            num_attention_heads=per_layer("num_attention_heads"),
            intermediate_size=per_layer("intermediate_size"),
        )

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in DIMENSIONS:
            yield name, getattr(self, name)

    def detach(self) -> ArchitectureWeights:
        return ArchitectureWeights(**{name: w.detach() for name, w in self.items()})

    def clone(self) -> ArchitectureWeights:
        return ArchitectureWeights(**{name: w.detach().clone() for name, w in self.items()})

    def to(self, *args: Any, **kwargs: Any) -> ArchitectureWeights:
        return ArchitectureWeights(**{name: w.to(*args, **kwargs) for name, w in self.items()})

    def check(self, space: SearchSpace) -> None:
        """Raise `ValueError` naming the dimension if a shape does not match `space`."""
        depth = max(space.num_hidden_layers)
        for name, w in self.items():
            k = len(getattr(space, name))
            expected = (depth, k) if name in PER_LAYER else (k,)
            if not isinstance(w, torch.Tensor):
                raise TypeError(f"Weights of `{name}` must be a tensor, got {type(w).__name__}.")
            if tuple(w.shape) != expected:
                raise ValueError(
                    f"Weights of `{name}` have shape {tuple(w.shape)}, but the search space needs {expected} "
                    f"(choices {list(getattr(space, name))}" + (f", {depth} layers)." if name in PER_LAYER else ").")
                )


class _DirichletSample(torch.autograd.Function):
    """A reparameterized Dirichlet sample drawn with an explicit `torch.Generator` (torch.distributions.Dirichlet
    draws from the global RNG). Same implicit-reparameterization gradient as torch.distributions.Dirichlet."""

    @staticmethod
    def forward(ctx, concentration: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = torch._sample_dirichlet(concentration, generator=generator)
        ctx.save_for_backward(x, concentration)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, concentration = ctx.saved_tensors
        total = concentration.sum(-1, True).expand_as(concentration)
        grad = torch._dirichlet_grad(x, concentration, total)
        return grad * (grad_output - (x * grad_output).sum(-1, True)), None


# ----------------------------------------------------------------------------------------------------------------
# architecture parameters
class ArchitectureParameters(nn.Module):
    """The architecture parameters of a search space: one learnable vector per dimension (per layer for heads and
    FFN width), named after the dimensions (`num_hidden_layers`, `hidden_size`, `num_attention_heads`,
    `intermediate_size`).

    Args:
        search_space (`SearchSpace`): the space searched (usually `model.search_space`).
        parametrization (`str`, *optional*, defaults to `"softmax"`):
            `"softmax"` (DARTS, TangleNAS): the weights are the softmax of the parameters. `"dirichlet"` (DrNAS):
            the weights are drawn from a Dirichlet distribution with concentration `elu(parameters) + 1`; their
            expectation is used when not sampling.
        init_std (`float`, *optional*, defaults to 0.0): standard deviation of the initial parameters around 0
            (uniform weights).
        seed (`int`, *optional*, defaults to 0): seed of the initial noise.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.gradient import ArchitectureParameters
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(32,), attention_head_size=8)
    >>> arch = ArchitectureParameters(space)
    >>> arch.weights().intermediate_size.shape
    torch.Size([2, 2])
    >>> arch.argmax_subnet() in space
    True
    ```
    """

    def __init__(
        self, search_space: SearchSpace, parametrization: str = "softmax", init_std: float = 0.0, seed: int = 0
    ):
        super().__init__()
        if not isinstance(search_space, SearchSpace):
            raise TypeError(f"`search_space` must be a SearchSpace, got {type(search_space).__name__}.")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"Unknown parametrization {parametrization!r}; allowed: {list(PARAMETRIZATIONS)}.")
        init_std = check_float("init_std", init_std)
        if init_std < 0:
            raise ValueError(f"`init_std` must be a number >= 0, got {init_std!r}.")
        self.search_space = search_space
        self.parametrization = parametrization
        self.init_std = init_std
        generator = torch.Generator().manual_seed(check_int("seed", seed))
        depth = max(search_space.num_hidden_layers)
        for name in DIMENSIONS:
            k = len(getattr(search_space, name))
            shape = (depth, k) if name in PER_LAYER else (k,)
            init = torch.randn(shape, generator=generator) * init_std
            self.register_parameter(name, nn.Parameter(init))

    @property
    def max_depth(self) -> int:
        return max(self.search_space.num_hidden_layers)

    def _raw(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name in DIMENSIONS:
            yield name, getattr(self, name)

    def concentrations(self) -> dict[str, torch.Tensor]:
        """The Dirichlet concentrations `elu(parameters) + 1` of each dimension (DrNAS), all > 0."""
        if self.parametrization != "dirichlet":
            raise ValueError(f"concentrations() is for parametrization='dirichlet', not {self.parametrization!r}.")
        return {name: nn.functional.elu(p) + 1.0 for name, p in self._raw()}

    def weights(self, sample: bool = False, generator: torch.Generator | None = None) -> ArchitectureWeights:
        """The mixture weights: the softmax of the parameters, or for `"dirichlet"` the Dirichlet expectation, or with
        `sample=True` a reparameterized Dirichlet sample drawn with `generator` (gradients flow to the parameters)."""
        if self.parametrization == "softmax":
            if sample:
                raise ValueError(
                    "sample=True needs parametrization='dirichlet' (DrNAS); softmax weights are not drawn."
                )
            return ArchitectureWeights(**{name: torch.softmax(p, dim=-1) for name, p in self._raw()})
        conc = self.concentrations()
        if sample:
            return ArchitectureWeights(**{name: _DirichletSample.apply(c, generator) for name, c in conc.items()})
        return ArchitectureWeights(**{name: c / c.sum(-1, keepdim=True) for name, c in conc.items()})

    def kl_regularization(self) -> torch.Tensor:
        """DrNAS regularization: the sum over dimensions (and layers) of KL(Dir(concentration) || Dir(1))."""
        total = 0.0
        for c in self.concentrations().values():
            prior = torch.distributions.Dirichlet(torch.ones_like(c))
            total = total + torch.distributions.kl_divergence(torch.distributions.Dirichlet(c), prior).sum()
        return total

    def argmax_subnet(self) -> SubnetConfig:
        """The subnet with the largest weight in every dimension (ties go to the smaller choice); in the space."""
        with torch.no_grad():
            w = self.weights()
        space = self.search_space
        depth = space.num_hidden_layers[int(w.num_hidden_layers.argmax())]
        return space.subnet(
            depth,
            tuple(space.num_attention_heads[int(i)] for i in w.num_attention_heads.argmax(-1))[:depth],
            tuple(space.intermediate_size[int(i)] for i in w.intermediate_size.argmax(-1))[:depth],
            space.hidden_size[int(w.hidden_size.argmax())],
        )

    def to_dict(self) -> dict[str, Any]:
        """The expected weights per dimension as lists (for logs and JSON reports)."""
        with torch.no_grad():
            return {name: w.cpu().tolist() for name, w in self.weights().items()}

    # ------------------------------------------------------------------------------------------------------------
    # persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `architecture_config.json` (space, parametrization) and `architecture.safetensors`, atomically."""
        config = {
            "search_space": self.search_space.to_dict(),
            "parametrization": self.parametrization,
            "init_std": self.init_std,
        }
        with atomic_directory(save_directory) as tmp:
            with open(os.path.join(tmp, ARCHITECTURE_CONFIG_NAME), "w") as f:
                f.write(json.dumps(config, indent=2) + "\n")
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                os.path.join(tmp, ARCHITECTURE_WEIGHTS_NAME),
            )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ArchitectureParameters:
        """Load what [`save_pretrained`] wrote."""
        config_path = os.path.join(directory, ARCHITECTURE_CONFIG_NAME)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(
                f"No {ARCHITECTURE_CONFIG_NAME} in {os.fspath(directory)!r}: pass a folder written by "
                "ArchitectureParameters.save_pretrained."
            )
        with open(config_path) as f:
            config = json.load(f)
        arch = cls(
            SearchSpace.from_dict(config["search_space"]), config["parametrization"], config.get("init_std", 0.0)
        )
        arch.load_state_dict(load_file(os.path.join(directory, ARCHITECTURE_WEIGHTS_NAME)))
        return arch

    def extra_repr(self) -> str:
        return f"parametrization={self.parametrization!r}, max_depth={self.max_depth}"
