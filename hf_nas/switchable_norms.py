"""Switchable layer norms: one LayerNorm affine transform per subnet budget, shared weights everywhere else.

Weight sharing forces every subnet to compute with the same numbers; the LayerNorm scale and shift are the cheapest
place to let subnets of very different sizes differ (the idea of switchable batch norms in slimmable networks and
of NASViT's switchable scaling layers). A supernet whose config sets `switchable_layer_norms` to MAC-share
boundaries, e.g. `[0.75, 0.375]`, holds `len(boundaries) + 1` affine transforms in each of its LayerNorms:

- budget 0 (the vanilla `weight` and `bias`) for subnets with at least 75% of the encoder layers' MACs, so the
  largest subnet is the vanilla model;
- budget 1 for subnets with 37.5% to 75%, budget 2 below 37.5%.

The share is that of the kept encoder layers' MACs (see [`hf_nas.costs.layer_macs`]) at the config's input size
(`image_size`, or 128 tokens for text), over the full supernet's: plain arithmetic on the subnet, done on every
subnet change. Extraction writes the active budget's LayerNorms, so an extracted subnet is an ordinary checkpoint and
equals the supernet with that subnet active. Each budget starts as a copy of the LayerNorm's weights, so adding
switchable norms changes no output.

With `switchable_heads` set as well, the task head (the classifier) switches with the same budgets: each budget reads
its subnets' features with its own weight and bias (see [`SwitchableElasticLinear`]), also a copy at the start.
With `switchable_biases`, every linear layer of the encoder layers that has a bias switches its bias with the same
budgets (see [`BudgetElasticLinear`]): the weight matrices stay shared, each budget's subnets shift the projections'
outputs with their own biases, again copies at the start. With `switchable_delta_rank` r > 0, every linear layer of
the encoder layers adds a budget's own rank-r delta to its shared weight (zero at the start); extraction merges it, so
the extracted weight is still one ordinary matrix.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from .modules import (
    BudgetElasticLinear,
    ElasticLayerNorm,
    ElasticLinear,
    SwitchableElasticLayerNorm,
    SwitchableElasticLinear,
)
from .search_space import SubnetConfig
from .validation import check_floats

__all__ = [
    "SWITCHABLE_BIAS_PARAMETER_PATTERN",
    "SWITCHABLE_DELTA_PARAMETER_PATTERN",
    "SWITCHABLE_HEAD_PARAMETER_PATTERN",
    "SWITCHABLE_NORM_PARAMETER_PATTERN",
    "attach_budget_linears",
    "attach_switchable_heads",
    "attach_switchable_norms",
    "check_no_switchable_norms",
    "check_norm_boundaries",
    "enable_switchable_biases",
    "enable_switchable_deltas",
    "enable_switchable_heads",
    "enable_switchable_norms",
    "encoder_mac_share",
    "has_switchable_norms",
    "init_switchable_weights",
    "norm_budget",
    "set_norm_budget",
    "switchable_biases",
    "switchable_deltas",
    "switchable_heads",
    "switchable_norms",
]

# The parameter names switchable norms add (what a vanilla or plain supernet checkpoint lacks).
SWITCHABLE_NORM_PARAMETER_PATTERN = re.compile(r"(?:^|\.)budget_(?:weights|biases)$")
# The parameter names switchable heads add.
SWITCHABLE_HEAD_PARAMETER_PATTERN = re.compile(r"(?:^|\.)switch_(?:weights|biases)$")
# The parameter names switchable biases add.
SWITCHABLE_BIAS_PARAMETER_PATTERN = re.compile(r"(?:^|\.)bias_budgets$")
# The parameter names switchable low-rank deltas add.
SWITCHABLE_DELTA_PARAMETER_PATTERN = re.compile(r"(?:^|\.)delta_(?:up|down)$")
# The modules that switch with the norm budgets.
_SWITCHES = (SwitchableElasticLayerNorm, SwitchableElasticLinear, BudgetElasticLinear)


def check_norm_boundaries(value: Any, field: str = "switchable_layer_norms") -> tuple[float, ...] | None:
    """`value` as MAC-share boundaries: None (or an empty sequence, or a comma-separated string) for none, else
    strictly decreasing numbers in (0, 1). A `ValueError` / `TypeError` names the field, the value and what is
    allowed."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("/", ",").split(",") if p.strip()]
        if not parts or parts == ["off"]:
            return None
        try:
            value = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"`{field}`={value!r} is not a comma-separated list of MAC shares in (0, 1) (or 'off')."
            ) from None
    boundaries = check_floats(field, value)
    if not boundaries:
        return None
    if any(not 0.0 < b < 1.0 for b in boundaries) or any(
        a <= b for a, b in zip(boundaries, boundaries[1:], strict=False)
    ):
        raise ValueError(
            f"`{field}`={list(boundaries)}: the MAC-share boundaries must be strictly decreasing numbers in (0, 1), "
            "e.g. [0.75, 0.375] (budget 0 at >= 75% of the encoder MACs, budget 1 down to 37.5%, budget 2 below)."
        )
    return boundaries


def _boundaries_of(config: Any) -> tuple[float, ...] | None:
    return check_norm_boundaries(getattr(config, "switchable_layer_norms", None))


def encoder_mac_share(subnet: SubnetConfig, config: Any) -> float:
    """The kept encoder layers' MACs of `subnet` over those of the full supernet of `config`, at the config's input
    size (its `image_size`, or 128 tokens, capped by `max_position_embeddings`, for text)."""
    from .costs import layer_macs, num_tokens

    sequence_length = None if _is_image(config) else min(128, config.max_position_embeddings)
    tokens = num_tokens(config, sequence_length)
    head = config.hidden_size // config.num_attention_heads

    def macs(h: int, heads: tuple[int, ...], ffns: tuple[int, ...]) -> int:
        return sum(
            layer_macs(h, a, f, attention_head_size=head, tokens=tokens) for a, f in zip(heads, ffns, strict=True)
        )

    n = config.num_hidden_layers
    full = macs(config.hidden_size, (config.num_attention_heads,) * n, (config.intermediate_size,) * n)
    return macs(subnet.hidden_size, subnet.num_attention_heads, subnet.intermediate_size) / full


def _is_image(config: Any) -> bool:
    from .models.families import get_family

    return get_family(config).is_image


def norm_budget(subnet: SubnetConfig, config: Any) -> int:
    """The budget whose LayerNorms `subnet` computes with in a supernet of `config`: the number of boundaries its
    encoder MAC share ([`encoder_mac_share`]) lies below (0 without switchable norms).

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig
    >>> from hf_nas.switchable_norms import norm_budget
    >>> config = ElasticViTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
    ...                           image_size=32, patch_size=8, switchable_layer_norms=[0.75, 0.375])
    >>> space = config.search_space
    >>> from hf_nas import SubnetConfig
    >>> [norm_budget(SubnetConfig.uniform(d, 4, 64, 32), config) for d in (4, 3, 2, 1)]
    [0, 0, 1, 2]
    ```
    """
    boundaries = _boundaries_of(config)
    if not boundaries:
        return 0
    share = encoder_mac_share(subnet, config)
    return sum(share < b - 1e-12 for b in boundaries)


def switchable_norms(model: nn.Module) -> list[SwitchableElasticLayerNorm]:
    """Every [`SwitchableElasticLayerNorm`] of `model`, in module order."""
    return [module for module in model.modules() if isinstance(module, SwitchableElasticLayerNorm)]


def switchable_heads(model: nn.Module) -> list[SwitchableElasticLinear]:
    """Every [`SwitchableElasticLinear`] (switchable head) of `model`, in module order."""
    return [module for module in model.modules() if isinstance(module, SwitchableElasticLinear)]


def switchable_biases(model: nn.Module) -> list[BudgetElasticLinear]:
    """Every [`BudgetElasticLinear`] of `model` with switchable biases, in module order."""
    return [m for m in model.modules() if isinstance(m, BudgetElasticLinear) and m.bias_budgets is not None]


def switchable_deltas(model: nn.Module) -> list[BudgetElasticLinear]:
    """Every [`BudgetElasticLinear`] of `model` with switchable low-rank deltas, in module order."""
    return [m for m in model.modules() if isinstance(m, BudgetElasticLinear) and m.delta_up is not None]


def has_switchable_norms(model: Any) -> bool:
    """Whether `model` (a supernet) has switchable layer norms."""
    return bool(_boundaries_of(getattr(model, "config", None)))


def set_norm_budget(model: nn.Module, subnet: SubnetConfig, skip: nn.Module | None = None) -> None:
    """Give every switchable norm, head and bias of `model` (outside `skip`, a submodule) the budget of `subnet` (the
    supernet calls this on every subnet change)."""
    skipped = set() if skip is None else {id(m) for m in skip.modules()}
    switches = [m for m in model.modules() if isinstance(m, _SWITCHES) and id(m) not in skipped]
    if not switches:
        return
    budget = norm_budget(subnet, model.config)
    for module in switches:
        module.set_budget(budget)


def attach_switchable_norms(model: nn.Module, boundaries: tuple[float, ...]) -> int:
    """Turn every [`ElasticLayerNorm`] of `model` into a [`SwitchableElasticLayerNorm`] with `len(boundaries) + 1`
    budgets (in place, taking over its weights; already converted ones are kept) and return how many were converted.
    The outputs do not change: every budget starts as a copy."""
    return _attach(
        model,
        lambda module: isinstance(module, ElasticLayerNorm),
        SwitchableElasticLayerNorm,
        ElasticLayerNorm,
        len(boundaries) + 1,
        f"norm budgets already; the boundaries {list(boundaries)} ask for",
    )


def attach_switchable_heads(model: nn.Module, num_budgets: int) -> int:
    """Turn the task head's [`ElasticLinear`] layers (`model.head_modules()`, e.g. the classifier) into
    [`SwitchableElasticLinear`] ones with `num_budgets` budgets (in place, taking over their weights; already
    converted ones are kept) and return how many were converted. The outputs do not change: every budget starts as a
    copy. A model without a head (a base model) has nothing to convert."""
    heads = {id(m) for m in getattr(model, "head_modules", list)()}
    return _attach(
        model,
        lambda module: id(module) in heads,
        SwitchableElasticLinear,
        ElasticLinear,
        num_budgets,
        "head budgets already; the norm boundaries ask for",
    )


def attach_budget_linears(model: nn.Module, num_budgets: int, biases: bool, delta_rank: int) -> int:
    """Give the linear layers of the encoder layers of `model` (`elastic_layers()`: the attention projections and the
    FFN) budgets, in place: with `biases` each one that has a bias switches it, with `delta_rank` > 0 each one gets
    rank-`delta_rank` weight deltas. A plain [`ElasticLinear`] becomes a [`BudgetElasticLinear`] (taking over its
    weight and bias), one already converted gets what it lacks; returns how many layers changed. The outputs do not
    change: bias budgets start as copies, deltas at zero."""
    base = getattr(model, "base_model", model)
    changed = 0
    for layer in base.elastic_layers():
        for name, module in list(layer.named_modules()):
            switch_bias = biases and getattr(module, "bias", None) is not None
            if not (switch_bias or delta_rank) or not isinstance(module, ElasticLinear):
                continue
            if isinstance(module, BudgetElasticLinear):
                if module.num_budgets != num_budgets:
                    raise ValueError(
                        f"`{name}` has {module.num_budgets} budgets already; the norm boundaries ask for {num_budgets}."
                    )
                before = (module.bias_budgets is not None, module.delta_rank)
                if switch_bias:
                    module.add_bias_budgets()
                if delta_rank:
                    module.add_deltas(delta_rank)
                changed += before != (module.bias_budgets is not None, module.delta_rank)
                continue
            if type(module) is not ElasticLinear:
                continue
            parent_name, _, attribute = name.rpartition(".")
            parent = layer.get_submodule(parent_name) if parent_name else layer
            setattr(parent, attribute, BudgetElasticLinear.from_linear(module, num_budgets, switch_bias, delta_rank))
            changed += 1
    if changed and hasattr(model, "active_subnet"):
        set_norm_budget(model, model.active_subnet)
    return changed


def _attach(model: nn.Module, selected, switchable: type, plain: type, num_budgets: int, mismatch: str) -> int:
    """Replace every `selected` module of `model` of exactly type `plain` by `switchable.from_<plain>` with
    `num_budgets` budgets; a selected `switchable` one with another number of budgets is refused (`mismatch` words the
    error). Returns how many were replaced and sets the budgets of the active subnet."""
    converted = 0
    for name, module in list(model.named_modules()):
        if not selected(module):
            continue
        if isinstance(module, switchable):
            if module.num_budgets != num_budgets:
                raise ValueError(f"`{name}` has {module.num_budgets} {mismatch} {num_budgets}.")
            continue
        if type(module) is not plain:
            continue
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        convert = switchable.from_layer_norm if plain is ElasticLayerNorm else switchable.from_linear
        setattr(parent, attribute, convert(module, num_budgets))
        converted += 1
    if converted and hasattr(model, "active_subnet"):
        set_norm_budget(model, model.active_subnet)
    return converted


def enable_switchable_heads(model: Any) -> Any:
    """Give a supernet with switchable layer norms switchable heads as well, in place, and return it: its task head
    (the classifier) gets one weight and bias per norm budget, each a copy, so nothing it computes changes. The
    config's `switchable_heads` records it. Raises `ValueError` for a supernet without switchable norms (the budgets
    are theirs) and `TypeError` for anything but a supernet with a head.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig, ElasticViTForImageClassification
    >>> from hf_nas.switchable_norms import enable_switchable_heads, enable_switchable_norms, switchable_heads
    >>> model = ElasticViTForImageClassification(ElasticViTConfig(hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8))
    >>> model = enable_switchable_heads(enable_switchable_norms(model, "0.75,0.375"))
    >>> [type(m).__name__ for m in switchable_heads(model)], model.config.switchable_heads
    (['SwitchableElasticLinear'], True)
    ```
    """
    from .models.supernet import SupernetMixin

    if not isinstance(model, SupernetMixin) or not model.head_modules():
        raise TypeError(
            "Switchable heads need an elastic supernet with a task head (ElasticBertForSequenceClassification, "
            f"ElasticViTForImageClassification, ...), got {type(model).__name__}."
        )
    boundaries = _boundaries_of(model.config)
    if boundaries is None:
        raise ValueError(
            "Switchable heads switch with the norm budgets, and this supernet has no switchable layer norms: set "
            "switchable_layer_norms (e.g. 0.75,0.375) as well."
        )
    model.config.switchable_heads = True
    attach_switchable_heads(model, len(boundaries) + 1)
    return model


def enable_switchable_biases(model: Any) -> Any:
    """Give a supernet with switchable layer norms switchable biases as well, in place, and return it: every linear
    layer of its encoder layers that has a bias gets one bias per norm budget, each a copy, so nothing it computes
    changes. The config's `switchable_biases` records it. Raises `ValueError` for a supernet without switchable norms
    (the budgets are theirs) or with Mixture-of-Supernets (whose layers mix the weights and biases themselves), and
    `TypeError` for anything but a supernet.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig, ElasticViTForImageClassification
    >>> from hf_nas.switchable_norms import enable_switchable_biases, enable_switchable_norms, switchable_biases
    >>> model = ElasticViTForImageClassification(ElasticViTConfig(hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8))
    >>> model = enable_switchable_biases(enable_switchable_norms(model, "0.75,0.375"))
    >>> len(switchable_biases(model)), model.config.switchable_biases  # q, k, v, o, fc1, fc2 in 2 layers
    (12, True)
    ```
    """
    boundaries = _check_budget_linears(model, "Switchable biases")
    model.config.switchable_biases = True
    attach_budget_linears(model, len(boundaries) + 1, True, 0)
    return model


def enable_switchable_deltas(model: Any, rank: int) -> Any:
    """Give a supernet with switchable layer norms switchable low-rank deltas as well, in place, and return it: every
    linear layer of its encoder layers gets, for each smaller norm budget, a rank-`rank` delta added to its weight
    (zero at the start, so nothing it computes changes; extraction merges it). The config's `switchable_delta_rank`
    records it. Raises like [`enable_switchable_biases`], and `ValueError` for a supernet with deltas of another rank.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig, ElasticViTForImageClassification
    >>> from hf_nas.switchable_norms import enable_switchable_deltas, enable_switchable_norms, switchable_deltas
    >>> model = ElasticViTForImageClassification(ElasticViTConfig(hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8))
    >>> model = enable_switchable_deltas(enable_switchable_norms(model, "0.75,0.375"), 4)
    >>> len(switchable_deltas(model)), model.config.switchable_delta_rank, switchable_deltas(model)[0].delta_up.shape
    (12, 4, torch.Size([2, 32, 4]))
    ```
    """
    from .models.configuration_elastic import check_delta_rank

    boundaries = _check_budget_linears(model, "Switchable low-rank deltas")
    rank = check_delta_rank(rank)
    current = getattr(model.config, "switchable_delta_rank", 0)
    if current and current != rank:
        raise ValueError(
            f"This supernet has switchable deltas of rank {current} already; asked for rank {rank}. Use the "
            "supernet's own rank."
        )
    if rank:
        model.config.switchable_delta_rank = rank
        attach_budget_linears(model, len(boundaries) + 1, False, rank)
    return model


def _check_budget_linears(model: Any, what: str) -> tuple[float, ...]:
    """The norm boundaries of `model`, a supernet with switchable norms and no Mixture-of-Supernets (refused
    otherwise, `what` naming the feature)."""
    from .models.supernet import SupernetMixin

    if not isinstance(model, SupernetMixin):
        raise TypeError(
            f"{what} need an elastic supernet (ElasticBert*, ElasticViT*, ElasticBeit*), got {type(model).__name__}."
        )
    boundaries = _boundaries_of(model.config)
    if boundaries is None:
        raise ValueError(
            f"{what} switch with the norm budgets, and this supernet has no switchable layer norms: set "
            "switchable_layer_norms (e.g. 0.75,0.375) as well."
        )
    if getattr(model.config, "mixture_of_supernets", None):
        raise ValueError(
            f"{what} do not support a Mixture-of-Supernets supernet (its layers mix their own weights and biases): "
            "use one or the other."
        )
    return boundaries


def enable_switchable_norms(model: Any, boundaries: Any) -> Any:
    """Give a supernet switchable layer norms, in place, and return it.

    `boundaries` are the MAC shares between budgets (see the module docstring), a sequence or a comma-separated
    string; the config's `switchable_layer_norms` records them, so `save_pretrained` / `from_pretrained` keep the
    norms. Every budget starts as a copy of its LayerNorm: the supernet computes exactly what it computed before, for
    every subnet. A supernet with the same boundaries already is returned as it is; other boundaries are refused with a
    `ValueError` naming both.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig, ElasticViTForImageClassification
    >>> from hf_nas.switchable_norms import enable_switchable_norms, switchable_norms
    >>> model = ElasticViTForImageClassification(ElasticViTConfig(hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8))
    >>> model = enable_switchable_norms(model, "0.75,0.375")
    >>> len(switchable_norms(model)), model.config.switchable_layer_norms
    (5, [0.75, 0.375])
    ```
    """
    from .models.supernet import SupernetMixin

    if not isinstance(model, SupernetMixin):
        raise TypeError(
            "Switchable layer norms need an elastic supernet (ElasticBert*, ElasticViT*, ElasticBeit*), got "
            f"{type(model).__name__}."
        )
    wanted = check_norm_boundaries(boundaries)
    current = _boundaries_of(model.config)
    if wanted is None:
        if current is not None:
            raise ValueError(
                f"This supernet has switchable layer norms ({list(current)}); they cannot be switched off in place. "
                "Extract its subnets (ordinary weights) instead."
            )
        return model
    if current is not None:
        if current != wanted:
            raise ValueError(
                f"This supernet has switchable layer norms with the boundaries {list(current)} already; asked for "
                f"{list(wanted)}. Use the supernet's own boundaries (or leave switchable_layer_norms unset)."
            )
        return model
    model.config.switchable_layer_norms = list(wanted)
    attach_switchable_norms(model, wanted)
    return model


def init_switchable_weights(module: nn.Module) -> None:
    """The initialization of a switchable norm, for a supernet's `_init_weights` (after the vanilla one): every budget
        a copy of the norm's weight and bias. Tensors loaded from a checkpoint are left as they are (transformers marks
    them), so a vanilla checkpoint loaded into a supernet with switchable norms gets budgets equal to its norms (and
    switchable heads: each budget a copy of the head; switchable biases: each budget a copy of the layer's bias)."""
    if isinstance(module, _SWITCHES):
        module.reset_budgets()


def check_no_switchable_norms(model: Any, what: str, instead: str = "") -> None:
    """Refuse, with a `ValueError`, a supernet with switchable layer norms in `what`, a feature that cannot honour
    them; `instead` says what to do."""
    if has_switchable_norms(model):
        raise ValueError(
            f"{what} does not support a supernet with switchable layer norms (config.switchable_layer_norms="
            f"{model.config.switchable_layer_norms}).{' ' + instead if instead else ''}"
        )
