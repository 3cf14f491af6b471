"""What every elastic config shares: the search space field, its checks, and loading vanilla checkpoints."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..mixture.config import MixtureConfig
from ..search_space import SearchSpace

__all__ = ["ElasticConfigMixin", "check_delta_rank"]


def check_delta_rank(value: Any, field: str = "switchable_delta_rank") -> int:
    """`value` as the rank of switchable low-rank deltas: an int >= 0 (0: none). A `TypeError` / `ValueError` names the
    field, the value and what is allowed."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int >= 0 (0: no deltas), got {value!r} of type {type(value).__name__}.")
    if value < 0:
        raise ValueError(f"{field} must be an int >= 0 (0: no deltas), got {value}.")
    return value


class ElasticConfigMixin:
    """Mixed into an `Elastic*Config` that subclasses a vanilla config (a strict dataclass).

    The subclass sets `model_type` (e.g. `"elastic_vit"`), `_loadable_model_types` (the vanilla type and its own)
    and `_family` (a display name), declares `search_space: dict | None = None` and
    `mixture_of_supernets: dict | str | None = None` and `switchable_layer_norms: list | str | None = None`, `switchable_heads: bool = False`,
    `switchable_biases: bool = False` and `switchable_delta_rank: int = 0`, and calls
    `_init_search_space()`, `_init_mixture()` and `_init_switchable_norms()` at the end of its `__post_init__`.
    """

    _loadable_model_types: tuple[str, ...] = ()
    _family: str = ""

    @property
    def attention_head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def _init_search_space(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}: "
                f"an elastic {self._family} needs a whole attention head size (hidden_size = heads x head size)."
            )
        space = SearchSpace.from_model_config(self) if self.search_space is None else self.check_search_space()
        self.search_space = space.to_dict()

    def _init_mixture(self) -> None:
        """Check `mixture_of_supernets` (None, a mode name or a [`MixtureConfig`] dict) and store it as the full dict of
        its settings, or None when its mode is "off"."""
        value = self.mixture_of_supernets
        if value is None:
            return
        if isinstance(value, str):
            mixture = MixtureConfig(mode=value)
        elif isinstance(value, dict):
            mixture = MixtureConfig.from_dict(value)
        else:
            raise TypeError(
                f"mixture_of_supernets must be None, a mode name or a MixtureConfig dict, got {value!r} of type "
                f"{type(value).__name__}."
            )
        self.mixture_of_supernets = mixture.to_dict() if mixture.enabled else None

    def _init_switchable_norms(self) -> None:
        """Check `switchable_layer_norms` (None, MAC-share boundaries or a comma-separated string of them, see
        [`hf_nas.switchable_norms`]) and store it as a list of floats, or None; and `switchable_heads` and
        `switchable_biases` (bools, True only with boundaries) and `switchable_delta_rank` (an int >= 0, > 0 only
        with boundaries); switchable biases and deltas not with Mixture-of-Supernets."""
        from ..switchable_norms import check_norm_boundaries

        boundaries = check_norm_boundaries(self.switchable_layer_norms)
        self.switchable_layer_norms = None if boundaries is None else list(boundaries)
        for field, what in (("switchable_heads", "the task head"), ("switchable_biases", "the encoder's biases")):
            value = getattr(self, field, False)
            if not isinstance(value, bool):
                raise TypeError(f"{field} must be True or False, got {value!r} of type {type(value).__name__}.")
            if value and boundaries is None:
                raise ValueError(
                    f"{field}=True switches {what} with the norm budgets, but switchable_layer_norms is "
                    f"unset: set its MAC-share boundaries as well (e.g. [0.75, 0.375]), or {field}=False."
                )
        rank = check_delta_rank(getattr(self, "switchable_delta_rank", 0))
        if rank and boundaries is None:
            raise ValueError(
                f"switchable_delta_rank={rank} switches weight deltas with the norm budgets, but switchable_layer_norms "
                "is unset: set its MAC-share boundaries as well (e.g. [0.75, 0.375]), or switchable_delta_rank=0."
            )
        for field, on in (("switchable_biases=True", getattr(self, "switchable_biases", False)),
                          (f"switchable_delta_rank={rank}", rank)):  # fmt: skip
            if on and getattr(self, "mixture_of_supernets", None):
                raise ValueError(
                    f"{field} does not support mixture_of_supernets (its layers mix their own weights and biases): "
                    "use one or the other."
                )

    def check_search_space(self) -> SearchSpace:
        """The search space of `config.search_space`, checked against the supernet's sizes: a `TypeError` or
        `ValueError` names the `search_space` field, its value and what is allowed."""
        if not isinstance(self.search_space, dict):
            raise TypeError(
                f"search_space must be a dict of the choices of each dimension (SearchSpace.to_dict), got "
                f"{self.search_space!r} of type {type(self.search_space).__name__}."
            )
        try:
            space = SearchSpace.from_dict(dict(self.search_space))
        except (TypeError, ValueError) as e:
            raise type(e)(f"search_space: {e}") from None
        if space.attention_head_size != self.attention_head_size:
            raise ValueError(
                f"search_space.attention_head_size={space.attention_head_size} differs from the model's "
                f"hidden_size / num_attention_heads = {self.attention_head_size}."
            )
        limits = {
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_size": self.hidden_size,
        }
        for field, limit in limits.items():
            too_big = [v for v in getattr(space, field) if v > limit]
            if too_big:
                raise ValueError(
                    f"search_space.{field} choices {too_big} exceed the supernet's {field}={limit}; "
                    f"allowed: 1 to {limit}."
                )
        if space.num_supernet_layers > self.num_hidden_layers:
            raise ValueError(
                f"search_space.num_supernet_layers={space.num_supernet_layers} exceeds the supernet's "
                f"num_hidden_layers={self.num_hidden_layers}; allowed: 1 to {self.num_hidden_layers}."
            )
        if "num_supernet_layers" not in self.search_space:
            # Saved before layer subsets existed: the layers are this supernet's (not the largest depth choice's).
            space = dataclasses.replace(space, num_supernet_layers=self.num_hidden_layers)
        if space.layer_rule != "first" and space.num_supernet_layers != self.num_hidden_layers:
            # Otherwise `spread` would space its layers over too few and never keep the last one.
            raise ValueError(
                f"search_space.num_supernet_layers={space.num_supernet_layers} differs from the supernet's "
                f"num_hidden_layers={self.num_hidden_layers}: layer_rule={space.layer_rule!r} picks layers among all "
                f"of them; allowed: {self.num_hidden_layers}."
            )
        return space

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        model_type = config_dict.get("model_type")
        if model_type not in cls._loadable_model_types:
            raise ValueError(
                f"{pretrained_model_name_or_path!s} is a `{model_type}` checkpoint; an elastic {cls._family} supernet "
                f"loads checkpoints of model type {list(cls._loadable_model_types)}."
            )
        # A vanilla checkpoint *is* a supernet at full size: adopt it without a model-type warning.
        config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs
