"""Gradient-based search in the weight-entangled space (TangleNAS) and perturbation-based selection (DARTS-PT).

Every elastic choice of a supernet is a prefix slice of one shared weight, so a mixture of the choices of one
dimension is *one* operation on a weighted superposition of prefix masks (TangleNAS), not one forward per choice:

- per-layer heads: the concatenated head outputs (the input of `layer.head_projection()`) are scaled per head by
  `m_j = sum_k w_k * 1[j < heads_k]`; FFN width likewise on the input of `layer.neuron_projection()`;
- depth: the hidden state passed on after the last layer is `sum_d w_d * (output of chain d)`, where chain `d` runs
  the layers `space.layers_for(d)` (the first `d` under `layer_rule="first"`, where every chain is a prefix of the
  deepest one and all are read off one pass; other rules run the chains that branch off, see [`MixedForward`]);
- hidden size (when the space has several): every LayerNorm becomes the superposition of the LayerNorms over the
  first `h_k` channels (zero beyond `h_k`), and the pooled output / head input is masked per channel.

Under `layer_rule="first"` the supernet runs at full size (the largest depth and hidden size of its space) once per
forward, so memory stays that of the largest subnet. With one-hot weights the mixed forward equals the plain forward
of that subnet, under every layer rule.

[`ArchitectureParameters`] holds the architecture parameters (softmax logits for DARTS, Dirichlet concentrations for
DrNAS); [`MixedForward`] installs the mixed forward; [`expected_macs`] is the MACs expected under the mixture, a
differentiable function of the weights; [`select_argmax`] and [`perturbation_select`] turn the result into a
[`SubnetConfig`], optionally under a MAC budget. The bi-level training loop is
[`~hf_nas.training.gradient_trainer.GradientSearchTrainer`].
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.autograd.function import once_differentiable
from tqdm.auto import tqdm

from ..costs import count_macs
from ..models.supernet import SupernetMixin, set_active_layers
from ..modules import ElasticLayerNorm
from ..search_space import SearchSpace, SubnetConfig
from ..utils import atomic_directory

__all__ = [
    "ARCHITECTURE_CONFIG_NAME",
    "ARCHITECTURE_WEIGHTS_NAME",
    "DIMENSIONS",
    "PARAMETRIZATIONS",
    "ArchitectureParameters",
    "ArchitectureWeights",
    "MixedForward",
    "expected_macs",
    "perturbation_select",
    "select_argmax",
]

logger = logging.getLogger(__name__)

# The dimensions, in the order selection decides them: depth and hidden size first, then layer by layer.
DIMENSIONS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
PER_LAYER = ("num_attention_heads", "intermediate_size")
PARAMETRIZATIONS = ("softmax", "dirichlet")
ARCHITECTURE_CONFIG_NAME = "architecture_config.json"
ARCHITECTURE_WEIGHTS_NAME = "architecture.safetensors"


def _check_supernet(model: Any) -> SupernetMixin:
    if not isinstance(model, SupernetMixin):
        raise TypeError(
            f"Gradient-based search needs an elastic supernet (ElasticBert*, ...), got {type(model).__name__}. Load "
            "the checkpoint with an Elastic* class, e.g. ElasticBertForSequenceClassification.from_pretrained(path)."
        )
    return model


def _check_budget(max_macs_ratio: float | None) -> float | None:
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
    >>> from hf_nas.search.gradient import ArchitectureWeights
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
    def backward(ctx, grad_output: torch.Tensor):
        x, concentration = ctx.saved_tensors
        total = concentration.sum(-1, True).expand_as(concentration)
        grad = torch._dirichlet_grad(x, concentration, total)
        return grad * (grad_output - (x * grad_output).sum(-1, True)), None


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
    >>> from hf_nas.search.gradient import ArchitectureParameters
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
        if isinstance(init_std, bool) or not isinstance(init_std, (int, float)) or init_std < 0:
            raise ValueError(f"`init_std` must be a number >= 0, got {init_std!r}.")
        self.search_space = search_space
        self.parametrization = parametrization
        self.init_std = float(init_std)
        generator = torch.Generator().manual_seed(seed)
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


# ----------------------------------------------------------------------------------------------------------------
# the mixed forward
def _prefix_indicator(choices: Sequence[int], size: int, device: torch.device) -> torch.Tensor:
    """`ind[k, j] = 1[j < choices[k]]`, shape (K, size)."""
    return (torch.arange(size, device=device)[None, :] < torch.tensor(choices, device=device)[:, None]).float()


def _replace_output(output: Any, hidden: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


def _output_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the longest common prefix of `a` and `b`."""
    n = 0
    for x, y in zip(a, b, strict=False):  # stops at the shorter one
        if x != y:
            break
        n += 1
    return n


class MixedForward:
    """Context manager that turns the supernet's forward into the weight-entangled mixture of its search space.

    On entry the supernet runs at full size (all heads and neurons of the layers of the deepest subnet, the largest
    hidden size) and hooks are installed; every forward then mixes the choices of each dimension with `self.weights`
    (an [`ArchitectureWeights`], which may carry gradients to the architecture parameters). On exit the hooks are
    removed and the previously active subnet is restored. Set `weights` before each forward (e.g.
    `mixed.weights = arch.weights()`); the masks are rebuilt at the start of every forward, so a new graph is made
    for each.

    Depth: each depth choice `d` runs its own *chain*, the layers `space.layers_for(d)` in order, and the hidden
    state after the last layer is `sum_d w_d * (output of chain d)`. The per-layer weights belong to chain positions
    (row `i` masks the `i`-th layer a chain runs), like the per-layer values of a `SubnetConfig`. The model's own
    forward runs the deepest chain; a chain that is a prefix of it (every chain under `layer_rule="first"`) is read
    off that run at no extra cost, and the others run their remaining layers on the shared weights from the longest
    prefix already computed (the chains form a trie, each node runs once). Under `"spread"` and `"importance"` one
    forward thus costs up to the sum of the depth choices in layer forwards instead of the largest depth; depth
    choices with weight exactly 0 are skipped when no gradient is recorded (e.g. during selection, once the depth is
    decided). With `output_hidden_states`, the branch layers' outputs are recorded after the deepest chain's.

    Args:
        model: an elastic supernet.
        weights (`ArchitectureWeights`, *optional*): the initial mixture weights.

    Example:

    ```python
    >>> arch = ArchitectureParameters(model.search_space)  # doctest: +SKIP
    >>> with MixedForward(model, arch.weights()) as mixed:  # doctest: +SKIP
    ...     loss = model(**batch).loss  # doctest: +SKIP
    >>> loss.backward()  # gradients reach the model's weights and `arch`  # doctest: +SKIP
    ```
    """

    def __init__(self, model: nn.Module, weights: ArchitectureWeights | None = None):
        self.model = _check_supernet(model)
        self.space = model.search_space
        self.weights = weights
        self._handles: list[Any] = []
        self._previous: SubnetConfig | None = None
        self._masks: dict[str, torch.Tensor] = {}
        self._states: dict[tuple[int, ...], torch.Tensor] = {}  # chain prefix -> hidden state after it
        self._layer_args: tuple = ()
        self._layer_kwargs: dict[str, Any] = {}
        self._branching = False

    # -- set-up ----------------------------------------------------------------------------------------------------
    def __enter__(self) -> MixedForward:
        model, space = self.model, self.space
        layers = model.elastic_layers()
        full = model.max_subnet()
        self.depth_choices = space.num_hidden_layers
        self.hidden_choices = space.hidden_size
        self.max_hidden = max(self.hidden_choices)
        self.max_depth = max(self.depth_choices)
        if space.num_supernet_layers > len(layers):
            raise ValueError(
                f"The space takes its layers from {space.num_supernet_layers} supernet layers but the supernet has "
                f"{len(layers)}."
            )
        self.layers = layers
        self.chains = {d: space.layers_for(d) for d in self.depth_choices}  # depth -> the layers it runs
        self.main_chain = self.chains[self.max_depth]  # the model's own layer loop runs this one
        # Chains that are not a prefix of the main chain branch off it after `_common_prefix` layers.
        self.branches = [d for d in self.depth_choices if self.chains[d] != self.main_chain[:d]]
        captured = {_common_prefix(self.chains[d], self.main_chain) for d in self.depth_choices}
        self._main_positions = {j: i for i, j in enumerate(self.main_chain)}
        self._positions = dict(self._main_positions)  # layer index -> its position in the chain running now
        union = sorted(set().union(*self.chains.values()))
        self._previous = model.active_subnet
        # Full size: every head and neuron of every layer a chain runs; the masks do the choosing.
        heads, ffn = full.num_attention_heads[0], full.intermediate_size[0]
        set_active_layers(layers, SubnetConfig.uniform(len(union), heads, ffn, self.max_hidden, layers=union))
        model.activate_subnet(SubnetConfig.uniform(self.max_depth, heads, ffn, self.max_hidden, layers=self.main_chain))
        device = next(model.parameters()).device
        first = layers[self.main_chain[0]]
        head_size = first.attention_head_size
        self.head_indicator = _prefix_indicator(
            space.num_attention_heads, first.max_num_attention_heads, device
        )  # (K_a, heads)
        self.neuron_indicator = _prefix_indicator(
            space.intermediate_size, first.max_intermediate_size, device
        )  # (K_f, neurons)
        self.hidden_indicator = _prefix_indicator(self.hidden_choices, self.max_hidden, device)  # (K_h, hidden)
        try:
            self._handles.append(model.register_forward_pre_hook(self._build_masks))
            for j in union:
                layer = layers[j]
                self._handles.append(
                    layer.head_projection().register_forward_pre_hook(self._scale_layer_input("heads", j, head_size))
                )
                self._handles.append(
                    layer.neuron_projection().register_forward_pre_hook(self._scale_layer_input("ffn", j))
                )
            if self.branches:
                self._handles.append(
                    layers[self.main_chain[0]].register_forward_pre_hook(self._capture_layer_input, with_kwargs=True)
                )
            for p in sorted(captured | {self.max_depth}):
                if p > 0:
                    self._handles.append(
                        layers[self.main_chain[p - 1]].register_forward_hook(self._main_chain_hook(p))
                    )
            if len(self.hidden_choices) > 1:
                self._install_hidden_hooks()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._masks.clear()
        self._release()
        if self._previous is not None:
            self.model.activate_subnet(self._previous)
            self._previous = None

    def _release(self) -> None:
        """Drop the references to this forward's states and layer arguments."""
        self._states.clear()
        self._layer_args, self._layer_kwargs = (), {}

    def _install_hidden_hooks(self) -> None:
        model, hidden = self.model, self.model.max_subnet().hidden_size
        norms = [m for m in model.modules() if isinstance(m, ElasticLayerNorm) and m.max_features == hidden]
        if not norms:
            raise ValueError(
                f"Mixing several hidden sizes {list(self.hidden_choices)} needs the supernet's LayerNorms over the "
                f"hidden channels; none found in {type(model).__name__}. Narrow the space to one hidden size: "
                "model.search_space = model.search_space.narrow(hidden_size=[...])."
            )
        for norm in norms:
            self._handles.append(norm.register_forward_hook(self._mixed_layer_norm))
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is not None:
            self._handles.append(pooler.register_forward_hook(self._mask_hidden_output))
        for module in model.head_modules():
            self._handles.append(module.register_forward_pre_hook(self._scale_input("hidden")))

    # -- hooks -----------------------------------------------------------------------------------------------------
    def _build_masks(self, module: nn.Module, args: Any, kwargs: Any = None) -> None:
        if self.weights is None:
            raise ValueError("MixedForward has no `weights`: set `mixed.weights = arch.weights()` before the forward.")
        w = self.weights
        w.check(self.space)
        ind = self.head_indicator
        heads = w.num_attention_heads.to(ind) @ ind  # (L, heads): m[i, j] = sum_k w[i, k] 1[j < heads_k]
        ffn = w.intermediate_size.to(ind) @ self.neuron_indicator  # (L, neurons)
        self._masks = {f"heads.{i}": heads[i] for i in range(self.max_depth)}
        self._masks.update({f"ffn.{i}": ffn[i] for i in range(self.max_depth)})
        self._masks["hidden"] = w.hidden_size.to(ind) @ self.hidden_indicator  # (hidden,)
        self._positions = dict(self._main_positions)
        self._branching = False
        self._release()

    def _scale_input(self, key: str, unit_size: int = 1) -> Callable:
        def hook(module: nn.Module, args: tuple) -> tuple:
            return (self._scaled(args[0], self._masks[key], unit_size), *args[1:])

        return hook

    def _scale_layer_input(self, kind: str, layer: int, unit_size: int = 1) -> Callable:
        """Scale the input of a projection of supernet layer `layer` by the mask of its position in the running chain."""

        def hook(module: nn.Module, args: tuple) -> tuple:
            mask = self._masks[f"{kind}.{self._positions[layer]}"]
            return (self._scaled(args[0], mask, unit_size), *args[1:])

        return hook

    @staticmethod
    def _scaled(x: torch.Tensor, mask: torch.Tensor, unit_size: int) -> torch.Tensor:
        if unit_size > 1:
            mask = mask.repeat_interleave(unit_size)  # (units * unit_size,)
        return x * mask[: x.shape[-1]].to(x.dtype)

    def _capture_layer_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Keep the input of the main chain's first layer (where branches may start) and its other arguments (the
        attention mask, ...: the same for every layer), to run the branches with."""
        if self._branching:
            return None
        self._states[()] = args[0]  # (B, T, h)
        self._layer_args, self._layer_kwargs = args[1:], kwargs
        return None

    def _main_chain_hook(self, p: int) -> Callable:
        """Forward hook of the main chain's `p`-th layer: keep its output; after the last one, mix the depths."""
        prefix = self.main_chain[:p]

        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if self._branching:
                return None
            self._states[prefix] = _output_tensor(output)  # (B, T, h)
            if p != self.max_depth:
                return None
            mixed = self._mix_depths()
            self._release()
            return _replace_output(output, mixed)

        return hook

    def _mix_depths(self) -> torch.Tensor:
        """`sum_d w_d * (output of chain d)`, running the branches that are not computed yet."""
        w = self.weights.num_hidden_layers
        depths = list(self.depth_choices)
        if self.branches and not (torch.is_grad_enabled() and w.requires_grad):
            # no gradient to the depth weights: a depth of weight 0 adds nothing, so its branch need not run
            keep = [d for d, wd in zip(self.depth_choices, w.tolist(), strict=True) if wd != 0]
            depths = keep or depths
        self._branching = True
        try:
            for d in depths:
                if d in self.branches:
                    self._run_chain(self.chains[d])
        finally:
            self._branching = False
            self._positions = dict(self._main_positions)
        index = torch.tensor([self.depth_choices.index(d) for d in depths], device=w.device)
        states = torch.stack([self._states[self.chains[d]] for d in depths])  # (K_d, B, T, h)
        return torch.einsum("k,k...->...", w[index].to(states.dtype), states)  # (B, T, h)

    def _run_chain(self, chain: tuple[int, ...]) -> None:
        """Run `chain` from its longest prefix already computed, keeping the state after each of its layers."""
        start = max(p for p in range(len(chain) + 1) if chain[:p] in self._states)
        state = self._states[chain[:start]]  # (B, T, h)
        for i in range(start, len(chain)):
            j = chain[i]
            self._positions[j] = i
            state = _output_tensor(self.layers[j](state, *self._layer_args, **self._layer_kwargs))  # (B, T, h)
            self._states[chain[: i + 1]] = state

    def _mask_hidden_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        x = _output_tensor(output)
        return _replace_output(output, x * self._masks["hidden"][: x.shape[-1]].to(x.dtype))

    def _mixed_layer_norm(self, module: ElasticLayerNorm, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """sum_k w_k * pad(LayerNorm over the first h_k channels), as one expression of (B, T, hidden) tensors."""
        x = args[0]  # (..., H)
        w = self.weights.hidden_size.to(x.dtype)  # (K,)
        ind = self.hidden_indicator.to(x.dtype)  # (K, H)
        means, rstds = [], []
        for h in self.hidden_choices:
            prefix = x[..., :h]
            means.append(prefix.mean(-1))
            rstds.append(torch.rsqrt(prefix.var(-1, unbiased=False) + module.eps))
        mean = torch.stack(means, -1)  # (..., K)
        rstd = torch.stack(rstds, -1)  # (..., K)
        scale = (w * rstd) @ ind  # (..., H): sum_k w_k rstd_k 1[c < h_k]
        shift = (w * rstd * mean) @ ind  # (..., H)
        out = x * scale - shift
        if module.weight is not None:
            out = out * module.weight[: x.shape[-1]]
        if module.bias is not None:
            out = out + module.bias[: x.shape[-1]] * (w @ ind)
        return out


# ----------------------------------------------------------------------------------------------------------------
# expected MACs
def _layer_macs(h: Any, inner: Any, ffn: Any, batch_size: int, sequence_length: int) -> Any:
    """MACs of one layer, exactly as `hf_nas.costs.count_macs` counts them (works on numbers and tensors)."""
    n = batch_size * sequence_length
    return n * (4 * h * inner + 2 * h * ffn) + 2 * batch_size * sequence_length * sequence_length * inner


def expected_macs(
    model: nn.Module, weights: ArchitectureWeights, sequence_length: int = 128, batch_size: int = 1
) -> torch.Tensor:
    """The MACs of one forward pass expected under the mixture `weights` (choices drawn independently per dimension
    and layer with those probabilities), a differentiable function of the weights.

    MACs are a sum of products of independent factors, so the expectation is exact: layer `i` (the `i`-th layer a
    subnet keeps; which supernet layer it is does not change its MACs) counts with the probability that the depth
    exceeds `i`, and `E[h * a_i] = E[h] E[a_i]`. With one-hot weights this is exactly
    `hf_nas.costs.count_macs(model, subnet, sequence_length, batch_size)`.

    Example:

    ```python
    >>> ratio = expected_macs(model, arch.weights()) / count_macs(model, model.max_subnet())  # doctest: +SKIP
    ```
    """
    model = _check_supernet(model)
    space = model.search_space
    weights.check(space)
    head_size = space.attention_head_size
    w = {name: t.double() for name, t in weights.items()}
    device = w["hidden_size"].device

    def values(name: str, scale: int = 1) -> torch.Tensor:
        return torch.tensor(getattr(space, name), dtype=torch.float64, device=device) * scale

    hidden = w["hidden_size"] @ values("hidden_size")  # E[h]
    inner = w["num_attention_heads"] @ values("num_attention_heads", head_size)  # (L,) E[a_i]
    ffn = w["intermediate_size"] @ values("intermediate_size")  # (L,) E[f_i]
    depths = values("num_hidden_layers")
    keep = torch.stack(
        [w["num_hidden_layers"] @ (depths > i).double() for i in range(inner.shape[0])]
    )  # (L,) P(depth > i)
    layers = (keep * _layer_macs(hidden, inner, ffn, batch_size, sequence_length)).sum()
    # Everything outside the layers (pooler, head) depends on the hidden size only: count it per choice.
    rest = []
    for h in space.hidden_size:
        subnet = space.subnet(
            min(space.num_hidden_layers), min(space.num_attention_heads), min(space.intermediate_size), h
        )
        per_layer = _layer_macs(
            h, subnet.num_attention_heads[0] * head_size, subnet.intermediate_size[0], batch_size, sequence_length
        )
        total = count_macs(model, subnet, sequence_length=sequence_length, batch_size=batch_size)
        rest.append(total - subnet.num_hidden_layers * per_layer)
    return layers + w["hidden_size"] @ torch.tensor(rest, dtype=torch.float64, device=device)


# ----------------------------------------------------------------------------------------------------------------
# selection
@dataclass
class _Decision:
    """One dimension to decide: `name` and, for per-layer dimensions, the `layer`."""

    name: str
    layer: int | None = None

    def row(self, weights: ArchitectureWeights) -> torch.Tensor:
        w = getattr(weights, self.name)
        return w[self.layer] if self.layer is not None else w

    def set_row(self, weights: ArchitectureWeights, row: torch.Tensor) -> None:
        w = getattr(weights, self.name)
        if self.layer is not None:
            w[self.layer] = row
        else:
            w.copy_(row)

    def __str__(self) -> str:
        return self.name if self.layer is None else f"{self.name}[{self.layer}]"


def _subnet_from(space: SearchSpace, chosen: Mapping[str, Any]) -> SubnetConfig:
    """The subnet with the chosen values, the smallest choice where nothing is chosen yet."""
    depth = chosen.get("num_hidden_layers", min(space.num_hidden_layers))
    return space.subnet(
        depth,
        tuple(chosen.get(("num_attention_heads", i), min(space.num_attention_heads)) for i in range(depth)),
        tuple(chosen.get(("intermediate_size", i), min(space.intermediate_size)) for i in range(depth)),
        chosen.get("hidden_size", min(space.hidden_size)),
    )


def _key(decision: _Decision) -> Any:
    return decision.name if decision.layer is None else (decision.name, decision.layer)


class _Budget:
    """Which choices keep a subnet under `max_macs_ratio` of the full model's MACs, when every undecided dimension
    takes its smallest choice."""

    def __init__(self, model: nn.Module, max_macs_ratio: float | None, sequence_length: int):
        self.model, self.space = model, model.search_space
        self.ratio = _check_budget(max_macs_ratio)
        self.sequence_length = sequence_length
        if self.ratio is not None:
            self.full = count_macs(model, model.max_subnet(), sequence_length=sequence_length)
            smallest = self.macs_ratio(self.space.smallest())
            if smallest > self.ratio:
                raise ValueError(
                    f"`max_macs_ratio`={self.ratio} is below the smallest subnet of the space ({smallest:.4f} of the "
                    f"full model's MACs at sequence_length={sequence_length}); allowed: {smallest:.4f} to 1."
                )

    def macs_ratio(self, subnet: SubnetConfig) -> float:
        return count_macs(self.model, subnet, sequence_length=self.sequence_length) / self.full

    def feasible(self, chosen: Mapping[Any, Any], decision: _Decision) -> list[int]:
        """Indices of the choices of `decision` that fit the budget given what is chosen."""
        choices = getattr(self.space, decision.name)
        if self.ratio is None:
            return list(range(len(choices)))
        return [
            k
            for k, value in enumerate(choices)
            if self.macs_ratio(_subnet_from(self.space, {**chosen, _key(decision): value})) <= self.ratio + 1e-12
        ]


def select_argmax(
    model: nn.Module,
    arch: ArchitectureParameters | ArchitectureWeights,
    max_macs_ratio: float | None = None,
    sequence_length: int = 128,
) -> SubnetConfig:
    """The subnet with the largest architecture weight in every dimension; with `max_macs_ratio`, decided progressively
    (depth, hidden size, then layer by layer) among the choices that keep the subnet under that fraction of the full
    model's MACs (at `sequence_length`), the undecided dimensions counted at their smallest choice.

    Example:

    ```python
    >>> subnet = select_argmax(model, arch, max_macs_ratio=0.5)  # doctest: +SKIP
    >>> small = model.extract_subnet(subnet)  # doctest: +SKIP
    ```
    """
    model = _check_supernet(model)
    space = model.search_space
    weights = _as_weights(arch, space)
    budget = _Budget(model, max_macs_ratio, sequence_length)
    chosen: dict[Any, int] = {}
    for decision in _ordered_decisions(space, chosen):
        row = decision.row(weights)
        feasible = budget.feasible(chosen, decision)
        best = max(feasible, key=lambda k: (float(row[k]), -k))
        chosen[_key(decision)] = getattr(space, decision.name)[best]
    subnet = _subnet_from(space, chosen)
    space.validate(subnet)
    return subnet


def _ordered_decisions(space: SearchSpace, chosen: Mapping[Any, Any]) -> Iterator[_Decision]:
    """Yield the decisions in order; the per-layer ones only for the layers the chosen depth keeps."""
    yield _Decision("num_hidden_layers")
    yield _Decision("hidden_size")
    for i in range(chosen["num_hidden_layers"]):
        yield _Decision("num_attention_heads", i)
        yield _Decision("intermediate_size", i)


def _as_weights(arch: ArchitectureParameters | ArchitectureWeights, space: SearchSpace) -> ArchitectureWeights:
    if isinstance(arch, ArchitectureParameters):
        if arch.search_space != space:
            raise ValueError(
                "The architecture parameters were built for another search space: "
                f"{arch.search_space.to_dict()} vs the model's {space.to_dict()}."
            )
        with torch.no_grad():
            return arch.weights().clone()
    if isinstance(arch, ArchitectureWeights):
        arch.check(space)
        return arch.clone()
    raise TypeError(f"`arch` must be ArchitectureParameters or ArchitectureWeights, got {type(arch).__name__}.")


def _move(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def _evaluate_mixed(
    model: nn.Module, mixed: MixedForward, weights: ArchitectureWeights, batches: Sequence[Mapping[str, Any]]
) -> tuple[float, float]:
    """(accuracy, mean loss) of the mixed supernet on `batches` (eval mode)."""
    device = next(model.parameters()).device
    mixed.weights = weights.to(device)
    correct, total, loss_sum = 0, 0, 0.0
    for batch in batches:
        batch = _move(batch, device)
        outputs = model(**batch)
        labels = batch["labels"]
        predictions = outputs.logits.argmax(-1)  # (B,) or (B, T)
        valid = labels != -100
        correct += int((predictions[valid] == labels[valid]).sum())
        total += int(valid.sum())
        loss_sum += float(outputs.loss) * len(labels)
    n = sum(len(b["labels"]) for b in batches)
    return correct / max(total, 1), loss_sum / max(n, 1)


def perturbation_select(
    model: nn.Module,
    arch: ArchitectureParameters | ArchitectureWeights,
    eval_batches: Iterable[Mapping[str, Any]],
    tune_batches: Iterable[Mapping[str, Any]] | None = None,
    tuning_steps: int = 2,
    learning_rate: float = 2e-5,
    optimizer: torch.optim.Optimizer | None = None,
    max_macs_ratio: float | None = None,
    sequence_length: int = 128,
    history: list[dict[str, Any]] | None = None,
    show_progress: bool = True,
) -> SubnetConfig:
    """Perturbation-based selection (DARTS-PT) in the weight-entangled space.

    Dimensions are decided progressively: depth, hidden size, then heads and FFN width layer by layer. For each, every
    (budget-feasible) choice is removed in turn from the mixture (its weight set to 0, the others renormalized) and the
    mixed supernet is evaluated on `eval_batches`; the choice whose removal hurts the validation accuracy most (ties:
    the largest loss increase) is kept, and the dimension becomes one-hot. Between decisions the supernet's weights
    are tuned for `tuning_steps` steps with the mixed forward on `tune_batches` (this changes the model's weights in
    place, as in DARTS-PT).

    Args:
        model: the elastic supernet (trained with the mixed forward, e.g. by `GradientSearchTrainer`).
        arch: its architecture parameters (their expected weights start the mixture) or weights.
        eval_batches: validation batches (dicts of tensors with `labels`); materialized once.
        tune_batches: training batches for the tuning steps (cycled); `None` or `tuning_steps=0` disables tuning.
        tuning_steps (`int`, defaults to 2): weight steps after each decision.
        learning_rate (`float`, defaults to 2e-5): of the default AdamW tuning optimizer.
        optimizer: a weight optimizer to use instead.
        max_macs_ratio (`float`, *optional*): keep the subnet under this fraction of the full model's MACs.
        sequence_length (`int`, defaults to 128): sequence length of the MAC budget.
        history (`list`, *optional*): receives one dict per decision (dimension, choices, scores, kept choice).
        show_progress (`bool`, defaults to True): show a progress bar.

    Returns:
        `SubnetConfig`: the selected subnet, in `model.search_space`.

    Example:

    ```python
    >>> subnet = perturbation_select(model, arch, dev_batches, train_batches, max_macs_ratio=0.5)  # doctest: +SKIP
    >>> model.extract_subnet(subnet).save_pretrained("out/subnet")  # doctest: +SKIP
    ```
    """
    model = _check_supernet(model)
    space = model.search_space
    weights = _as_weights(arch, space)
    budget = _Budget(model, max_macs_ratio, sequence_length)
    if isinstance(tuning_steps, bool) or not isinstance(tuning_steps, int) or tuning_steps < 0:
        raise ValueError(f"`tuning_steps` must be an int >= 0, got {tuning_steps!r}.")
    eval_batches = list(eval_batches)
    if not eval_batches:
        raise ValueError("`eval_batches` is empty: perturbation selection needs validation batches with labels.")
    if any("labels" not in b for b in eval_batches):
        raise ValueError("Every batch of `eval_batches` needs `labels`: the selection compares validation metrics.")
    tuning = tune_batches is not None and tuning_steps > 0
    tune_iter = cycle(tune_batches) if tuning else None
    if tuning and optimizer is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    device = next(model.parameters()).device
    was_training = model.training
    chosen: dict[Any, int] = {}
    num_decisions = 2 + 2 * max(space.num_hidden_layers)
    progress = tqdm(total=num_decisions, desc="perturbation selection", disable=not show_progress)
    try:
        with MixedForward(model, weights) as mixed:
            decisions = _ordered_decisions(space, chosen)
            for decision in decisions:
                choices = getattr(space, decision.name)
                feasible = budget.feasible(chosen, decision)
                row = decision.row(weights).clone()
                mask = torch.zeros_like(row)
                mask[feasible] = 1.0
                row = row * mask
                row = row / row.sum() if row.sum() > 0 else mask / mask.sum()  # drop infeasible choices
                scores: dict[int, tuple[float, float]] = {}
                if len(feasible) > 1:
                    model.eval()
                    for k in feasible:
                        removed = row.clone()
                        removed[k] = 0.0
                        removed = removed / removed.sum() if removed.sum() > 0 else removed
                        trial = weights.clone()
                        decision.set_row(trial, removed)
                        scores[k] = _evaluate_mixed(model, mixed, trial, eval_batches)
                    # keep the choice whose removal hurts most: lowest accuracy, then highest loss
                    keep = min(feasible, key=lambda k: (scores[k][0], -scores[k][1], -float(row[k])))
                else:
                    keep = feasible[0]
                decision.set_row(weights, torch.nn.functional.one_hot(torch.tensor(keep), len(choices)).to(row))
                chosen[_key(decision)] = choices[keep]
                if history is not None:
                    history.append(
                        {
                            "dimension": str(decision),
                            "choices": [choices[k] for k in feasible],
                            "accuracy_without": {choices[k]: s[0] for k, s in scores.items()},
                            "loss_without": {choices[k]: s[1] for k, s in scores.items()},
                            "kept": choices[keep],
                        }
                    )
                logger.info("kept %s=%s", decision, choices[keep])
                progress.update(1)
                if decision.name == "num_hidden_layers":
                    progress.total = 2 + 2 * choices[keep]
                    progress.refresh()
                if tuning and len(feasible) > 1:
                    model.train()
                    mixed.weights = weights.to(device)
                    for batch in islice(tune_iter, tuning_steps):
                        optimizer.zero_grad(set_to_none=True)
                        model(**_move(batch, device)).loss.backward()
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
    finally:
        progress.close()
        model.train(was_training)
    subnet = _subnet_from(space, chosen)
    space.validate(subnet)
    return subnet
