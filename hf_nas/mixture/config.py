"""The Mixture-of-Supernets settings of a supernet: `MixtureConfig`, stored in `config.mixture_of_supernets`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..validation import check_float, check_int

__all__ = ["MIXTURE_MODES", "ROUTER_INITS", "TARGET_MODULES", "MixtureConfig", "mixture_config_of"]

# "off" plus the router kinds (`hf_nas.mixture.router.ROUTERS`, checked against it in a test).
MIXTURE_MODES = ("off", "layer", "neuron")
# Which linear layers of every transformer layer hold experts (see `ElasticLayer.ffn_projections` and friends).
TARGET_MODULES = ("ffn", "attention")
# How a router starts: `random` (near uniform) or `size` (each expert owns a band of subnet sizes).
ROUTER_INITS = ("random", "size")


@dataclass(frozen=True)
class MixtureConfig:
    """How a supernet's weights depend on the active subnet (Mixture-of-Supernets).

    Each targeted linear layer holds `num_experts` full-size weight matrices (and biases) instead of one; the subnet
    computes with `W(a) = sum_i alpha_i(a) * E_i`, sliced to its active shape as usual, where `a` is the normalized
    architecture encoding of the subnet ([`architecture_encoding`]) and `alpha(a)` a softmax over the experts given by a
    small router (`Linear -> ReLU -> Linear`) of that layer. All experts start as copies of the layer's weight, so the
    supernet computes exactly what it computed before the mixture was added.

    Args:
        mode (`str`): `"layer"`: one mixture per linear layer (alpha has `num_experts` entries); `"neuron"`: one
            mixture per output neuron (alpha has `num_experts` entries per row of the weight); `"off"`: no mixture.
        num_experts (`int`): expert matrices per linear layer (at least 2; the published BERT setting is 2).
        router_hidden_size (`int`): width of the router's hidden layer (published: 64 to 128).
        target_modules (`tuple[str, ...]`): `"ffn"` (the FFN's two linear layers) and/or `"attention"` (the query, key,
            value and output projections).
        router_init_std (`float`): standard deviation of the router's output weights at initialization (its output
            bias starts at 0): small, so alpha starts near uniform, yet not zero, so that it differs between subnets
            and the identical experts receive different gradients and can drift apart.
        expert_init_noise (`float`): 0 (the default) starts every expert as an exact copy of the weight. Identical
            experts are a saddle point: the router's gradient is zero there, and Adam turns the experts' nearly equal
            gradients into equal updates, so they stay almost identical (the MoS benchmark measured a 0.02% relative
            difference after 300 steps, and subnets equal to the plain supernet's). A value > 0 adds to the experts
            Gaussian noise of that many standard deviations of the weight, minus its mean over the experts: the
            experts differ, their uniform average is still the weight, so with `router_init_std=0` (alpha exactly
            uniform at the start) every subnet still computes what the plain supernet computes, and the router has a
            gradient from the first step. It is applied when the mixture is added to a supernet ([`enable_mixture`],
            which the trainer calls); a supernet saved with its mixture reloads its experts as they are.
        router_init (`str`): `"random"` (the default): the router's output weights ~ N(0, `router_init_std`), alpha
            near uniform. `"size"`: the router starts routing by subnet size, so that the experts specialize from the
            first step without any noise. Expert `i` is centred on a size `c_i`, evenly spaced from the largest subnet
            (expert 0) to the smallest subnet of the search space (the last expert), and
            `alpha_i(a) = softmax_i(-beta * (s(a) - c_i) ** 2)`, where `s(a)` is the mean of the architecture encoding
            ([`size_score`]) and `beta` gives each expert 95% of the weight at its own centre when there are two
            (`router_init_std` then only perturbs the router's other output weights). With identical experts
            (`expert_init_noise=0`) every subnet still computes exactly what the plain supernet computes, whatever
            alpha is; but large and small subnets now send their gradients to different experts, which drift apart.
            The centres come from the search space when the mixture is added.

    Example:

    ```python
    >>> from hf_nas.mixture import MixtureConfig
    >>> config = MixtureConfig(mode="neuron", num_experts=2)
    >>> MixtureConfig.from_dict(config.to_dict()) == config
    True
    >>> MixtureConfig(mode="experts")
    Traceback (most recent call last):
        ...
    ValueError: `mixture_of_supernets.mode`='experts' is unknown; allowed: ['off', 'layer', 'neuron'].
    ```
    """

    mode: str = field(default="layer", metadata={"help": "off, layer (one mixture per linear) or neuron (per row)."})
    num_experts: int = field(default=2, metadata={"help": "Expert weight matrices per linear layer (>= 2)."})
    router_hidden_size: int = field(default=128, metadata={"help": "Hidden width of each router."})
    target_modules: tuple[str, ...] = field(
        default=("ffn",), metadata={"help": "Linear layers with experts: ffn and/or attention."}
    )
    router_init_std: float = field(default=0.02, metadata={"help": "Std of the router's output weights at init."})
    expert_init_noise: float = field(
        default=0.0, metadata={"help": "Zero-mean noise on the experts at init, in standard deviations of the weight."}
    )
    router_init: str = field(
        default="random", metadata={"help": "random (alpha near uniform) or size (each expert owns a band of sizes)."}
    )

    def __post_init__(self) -> None:
        if self.mode not in MIXTURE_MODES:
            raise ValueError(f"`mixture_of_supernets.mode`={self.mode!r} is unknown; allowed: {list(MIXTURE_MODES)}.")
        check_int("mixture_of_supernets.num_experts", self.num_experts)
        if self.num_experts < 2:
            raise ValueError(
                f"`mixture_of_supernets.num_experts` must be >= 2, got {self.num_experts}: one expert is the plain "
                "supernet (use mode='off' for no mixture)."
            )
        check_int("mixture_of_supernets.router_hidden_size", self.router_hidden_size, minimum=1)
        targets = self.target_modules
        if isinstance(targets, str):
            targets = tuple(t.strip() for t in targets.split(",") if t.strip())
        if not isinstance(targets, (tuple, list)) or not targets:
            raise TypeError(
                f"`mixture_of_supernets.target_modules` must be a non-empty sequence of {list(TARGET_MODULES)}, got "
                f"{self.target_modules!r}."
            )
        unknown = [t for t in targets if t not in TARGET_MODULES]
        if unknown:
            raise ValueError(
                f"`mixture_of_supernets.target_modules` has {unknown}, which no elastic layer supports as a mixture; "
                f"allowed: {list(TARGET_MODULES)}."
            )
        object.__setattr__(self, "target_modules", tuple(sorted(set(targets), key=TARGET_MODULES.index)))
        std = check_float("mixture_of_supernets.router_init_std", self.router_init_std)
        if std < 0:
            raise ValueError(f"`mixture_of_supernets.router_init_std` must be >= 0, got {std}.")
        object.__setattr__(self, "router_init_std", std)
        noise = check_float("mixture_of_supernets.expert_init_noise", self.expert_init_noise)
        if noise < 0:
            raise ValueError(f"`mixture_of_supernets.expert_init_noise` must be >= 0, got {noise}.")
        object.__setattr__(self, "expert_init_noise", noise)
        if self.router_init not in ROUTER_INITS:
            raise ValueError(
                f"`mixture_of_supernets.router_init`={self.router_init!r} is unknown; allowed: {list(ROUTER_INITS)}."
            )

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MixtureConfig:
        """The inverse of `to_dict`; unknown keys raise a `ValueError` naming them and the allowed ones."""
        if not isinstance(data, dict):
            raise TypeError(
                f"`mixture_of_supernets` must be a dict (MixtureConfig.to_dict()) or None, got {data!r} of type "
                f"{type(data).__name__}."
            )
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"Unknown keys in `mixture_of_supernets`: {unknown}; allowed: {allowed}.")
        return cls(**data)


def mixture_config_of(config: Any) -> MixtureConfig | None:
    """The `MixtureConfig` a model config asks for (`config.mixture_of_supernets`), or None when it has no mixture
    (the field is missing, None, or its mode is "off")."""
    value = getattr(config, "mixture_of_supernets", None)
    if value is None:
        return None
    if isinstance(value, MixtureConfig):
        mixture = value
    elif isinstance(value, str):
        mixture = MixtureConfig(mode=value)
    else:
        mixture = MixtureConfig.from_dict(value)
    return mixture if mixture.enabled else None
