"""Mixture-of-Supernets on a whole supernet: which linear layers hold experts, routing on every subnet change, and the
initialization and loading rules.

The supernet calls these functions (see `hf_nas.models.supernet.SupernetMixin`): [`attach_mixture`] when it is built
(its config asks for a mixture), [`route_subnet`] whenever a subnet becomes active, [`init_mixture_weights`] from its
`_init_weights`. Users call [`enable_mixture`] to add a mixture to a supernet they have (e.g. one just reordered by
importance), or set `mixture_of_supernets` in the config or in [`SupernetTrainingArguments`].
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..search_space import SubnetConfig
from .config import MixtureConfig, mixture_config_of
from .encoding import architecture_encoding, encoding_size, size_score
from .linear import MixtureElasticLinear
from .router import Router

__all__ = [
    "MIXTURE_PARAMETER_PATTERN",
    "attach_mixture",
    "check_no_mixture",
    "enable_mixture",
    "has_mixture",
    "init_mixture_weights",
    "mixture_linears",
    "mixture_size_range",
    "route_subnet",
    "target_linears",
]

# The parameter names a mixture adds (what a vanilla or plain supernet checkpoint lacks).
MIXTURE_PARAMETER_PATTERN = re.compile(r"(?:^|\.)(?:expert_weights|expert_biases|router\.(?:dense|logits)\.\w+)$")


def _supernet(model: Any, what: str) -> Any:
    from ..models.supernet import SupernetMixin  # the models import this package

    if not isinstance(model, SupernetMixin):
        raise TypeError(
            f"{what} needs an elastic supernet (ElasticBert*, ElasticViT*, ElasticBeit*), got {type(model).__name__}."
        )
    return model


def target_linears(layer: nn.Module, target_modules: tuple[str, ...]) -> list[nn.Module]:
    """The linear layers of one elastic transformer layer that `target_modules` names: `ffn` (its
    `ffn_projections()`) and `attention` (its `qkv_projections()` and `head_projection()`).

    Raises `TypeError` naming the layer class when it does not expose them (it does not support a mixture)."""
    getters = {"ffn": ("ffn_projections",), "attention": ("qkv_projections", "head_projection")}
    found: list[nn.Module] = []
    for target in target_modules:
        for name in getters[target]:
            getter = getattr(layer, name, None)
            if getter is None:
                raise TypeError(
                    f"{type(layer).__name__} has no `{name}()`: it does not support Mixture-of-Supernets on "
                    f"{target!r}; supported layers implement the ElasticLayer protocol."
                )
            result = getter()
            found.extend(result if isinstance(result, (tuple, list)) else [result])
    return found


def attach_mixture(model: nn.Module, mixture: MixtureConfig) -> int:
    """Turn the targeted linear layers of every transformer layer of `model` into [`MixtureElasticLinear`] (in place,
    taking over their weights; already converted ones are kept) and return how many were converted. The supernet's
    outputs do not change: every expert starts as a copy of the weight it replaces."""
    config = model.config
    size = encoding_size(config)
    size_range = mixture_size_range(model) if mixture.router_init == "size" else None
    converted = 0
    for layer in model.elastic_layers():
        names = {id(module): name for name, module in layer.named_modules()}
        for linear in target_linears(layer, mixture.target_modules):
            if isinstance(linear, MixtureElasticLinear):
                continue
            new = MixtureElasticLinear.from_linear(linear, mixture, size, size_range=size_range)
            parent_name, _, attribute = names[id(linear)].rpartition(".")
            setattr(layer.get_submodule(parent_name) if parent_name else layer, attribute, new)
            converted += 1
    if converted:
        route_subnet(model, model.active_subnet, force=True)
    return converted


def mixture_size_range(model: Any) -> tuple[float, float]:
    """The [`size_score`] of the smallest and of the largest subnet of `model`'s search space: the range over which a
    size-routing router (`MixtureConfig.router_init="size"`) spreads its experts."""
    config = model.config
    space = model.search_space
    # plain floats (from_pretrained builds the model with meta tensors as the default device)
    low, high = (
        float(size_score(architecture_encoding(subnet, config, device="cpu", dtype=torch.float64)))
        for subnet in (space.smallest(), space.largest())
    )
    return low, high


def enable_mixture(model: Any, mixture: MixtureConfig | dict | str) -> Any:
    """Add Mixture-of-Supernets to a supernet, in place, and return it.

    `mixture` is a [`MixtureConfig`], its dict, or a mode name (`"layer"`, `"neuron"`) with the other settings at
    their defaults. The config's `mixture_of_supernets` records it, so `save_pretrained` / `from_pretrained` keep the
    mixture. Every expert starts as a copy of the layer's weight: the supernet computes exactly what it computed
    before, for every subnet. A supernet that has the same mixture already is returned as it is; one with a different
    mixture is refused with a `ValueError` naming both.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.mixture import enable_mixture, mixture_linears
    >>> model = ElasticBertForSequenceClassification(ElasticBertConfig(vocab_size=99, hidden_size=32,
    ...     num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    >>> model = enable_mixture(model, "neuron")
    >>> len(mixture_linears(model)), model.config.mixture_of_supernets["mode"]
    (4, 'neuron')
    ```
    """
    model = _supernet(model, "Mixture-of-Supernets")
    if getattr(model.config, "switchable_biases", False) or getattr(model.config, "switchable_delta_rank", 0):
        raise ValueError(
            "Mixture-of-Supernets does not support a supernet with switchable biases or deltas (config."
            "switchable_biases / switchable_delta_rank): its layers mix their own weights and biases; use one or the "
            "other."
        )
    if isinstance(mixture, str):
        mixture = MixtureConfig(mode=mixture)
    elif isinstance(mixture, dict):
        mixture = MixtureConfig.from_dict(mixture)
    elif not isinstance(mixture, MixtureConfig):
        raise TypeError(f"`mixture` must be a MixtureConfig, a dict or a mode name, got {type(mixture).__name__}.")
    current = mixture_config_of(model.config)
    if not mixture.enabled:
        if current is not None:
            raise ValueError(
                f"This supernet has a mixture ({current.to_dict()}); it cannot be switched off in place. Extract its "
                "subnets (ordinary weights) instead."
            )
        return model
    if current is not None:
        if current != mixture:
            raise ValueError(
                f"This supernet has the mixture {current.to_dict()} already; asked for {mixture.to_dict()}. Use the "
                "supernet's own settings (or mixture_of_supernets='off' to keep it as it is)."
            )
        return model
    model.config.mixture_of_supernets = mixture.to_dict()
    attach_mixture(model, mixture)
    return model


def has_mixture(model: Any) -> bool:
    """Whether `model` (a supernet) computes with Mixture-of-Supernets weights."""
    return mixture_config_of(getattr(model, "config", None)) is not None


def mixture_linears(model: nn.Module) -> list[MixtureElasticLinear]:
    """Every [`MixtureElasticLinear`] of `model`, in module order."""
    return [module for module in model.modules() if isinstance(module, MixtureElasticLinear)]


@torch.no_grad()
def route_subnet(model: Any, subnet: SubnetConfig, force: bool = False) -> None:
    """Give every mixture layer of `model` the encoding of `subnet`; in eval mode the layers of the kept transformer
    layers compute their mixture now (once per subnet change). With `force`, rewrite the encodings even if unchanged
    (after loading, when the non-persistent encoding buffers hold no values yet)."""
    layers = model.elastic_layers()
    reference = next((m.architecture for layer in layers for m in mixture_linears(layer)), None)
    if reference is None or reference.is_meta:  # nothing to route, or not materialized yet (from_pretrained)
        return
    encoding = architecture_encoding(subnet, model.config, device=reference.device, dtype=reference.dtype)
    kept = set(subnet.layers)
    for index, layer in enumerate(layers):
        for linear in mixture_linears(layer):
            if force:
                linear.architecture.copy_(encoding)
            linear.set_architecture(encoding, precompute=index in kept)


def init_mixture_weights(module: nn.Module) -> None:
    """The initialization of a mixture module, for a supernet's `_init_weights` (after the vanilla one): the experts
    of a [`MixtureElasticLinear`] copy its weight and bias, a [`Router`] starts near uniform. Tensors loaded from a
    checkpoint are left as they are (transformers marks them), so a vanilla checkpoint loaded into a mixture supernet
    gets experts equal to its weights."""
    if isinstance(module, MixtureElasticLinear):
        module.reset_mixture()
    elif isinstance(module, Router):
        module.reset_parameters()


def check_no_mixture(model: Any, what: str, instead: str = "") -> None:
    """Refuse, with a `ValueError`, a supernet with Mixture-of-Supernets weights in `what`, a feature that cannot honour
    them; `instead` says what to do."""
    if has_mixture(model):
        raise ValueError(
            f"{what} does not support a Mixture-of-Supernets supernet (config.mixture_of_supernets="
            f"{model.config.mixture_of_supernets}).{' ' + instead if instead else ''}"
        )
