"""Search spaces and subnet configs.

A [`SearchSpace`] lists the allowed choices of each dimension of a supernet; a [`SubnetConfig`] is one point in it.
Dimensions follow the vanilla config names: `num_hidden_layers` (depth), `num_attention_heads` and
`intermediate_size` (one value per kept layer) and `hidden_size`. Which layers a subnet of depth k keeps is its
`layers` field (an ordered subset of the supernet's layers); the search space's *layer rule* says which subset it
holds for each depth: `first` (the first k), `spread` (evenly spaced, always keeping the last layer) or `importance`
(the k most important layers, ranked on the fine-tuned model by `hf_nas.importance.rank_layers`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .utils import atomic_write_text
from .validation import check_int

__all__ = ["SearchSpace", "SubnetConfig"]

_SUBNET_FIELDS = ("num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size")
_SUBNET_OPTIONAL_FIELDS = ("layers",)
_SPACE_FIELDS = ("num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size")
_SPACE_OPTIONAL_FIELDS = ("layer_rule", "layer_order", "num_supernet_layers")
LAYER_RULES = ("first", "spread", "importance")
DEFAULT_LAYER_RULE = "spread"


def spread_layers(depth: int, total: int) -> tuple[int, ...]:
    """`depth` evenly spaced layers of `total`, always keeping the last one: layer `floor((i + 1) * total / depth) - 1`
    for i = 0..depth-1 (e.g. 3 of 6 -> (1, 3, 5), 4 of 6 -> (0, 2, 3, 5))."""
    return tuple((i + 1) * total // depth - 1 for i in range(depth))


@dataclass(frozen=True)
class SubnetConfig:
    """One architecture inside a supernet.

    Args:
        num_hidden_layers (`int`): number of layers kept.
        num_attention_heads (`tuple[int, ...]`): attention heads of each kept layer (length `num_hidden_layers`).
        intermediate_size (`tuple[int, ...]`): FFN width of each kept layer (length `num_hidden_layers`).
        hidden_size (`int`): width of the residual stream.
        layers (`tuple[int, ...]`, *optional*): the supernet layers kept, strictly increasing 0-based indices (length
            `num_hidden_layers`). Defaults to the first `num_hidden_layers` layers, which is also what subnet JSON
            written before this field existed means. Use `SearchSpace.subnet` or `SearchSpace.layers_for` to get the
            subset a search space holds for a depth.

    Example:

    ```python
    >>> from hf_nas import SubnetConfig
    >>> subnet = SubnetConfig(num_hidden_layers=2, num_attention_heads=(4, 2), intermediate_size=(64, 32),
    ...                       hidden_size=32)
    >>> SubnetConfig.from_dict(subnet.to_dict()) == subnet
    True
    ```
    """

    num_hidden_layers: int
    num_attention_heads: tuple[int, ...]
    intermediate_size: tuple[int, ...]
    hidden_size: int
    layers: tuple[int, ...] | None = None

    def __post_init__(self):
        check_int("num_hidden_layers", self.num_hidden_layers)
        check_int("hidden_size", self.hidden_size)
        if self.num_hidden_layers < 1:
            raise ValueError(f"`num_hidden_layers` must be >= 1, got {self.num_hidden_layers}.")
        if self.hidden_size < 1:
            raise ValueError(f"`hidden_size` must be >= 1, got {self.hidden_size}.")
        for name in ("num_attention_heads", "intermediate_size"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise TypeError(f"`{name}` must be a sequence of ints (one per layer), got {values!r}.")
            values = tuple(check_int(f"{name}[{i}]", v) for i, v in enumerate(values))
            if len(values) != self.num_hidden_layers:
                raise ValueError(
                    f"`{name}` has {len(values)} entries but `num_hidden_layers` is {self.num_hidden_layers}: "
                    "give exactly one value per kept layer."
                )
            for i, v in enumerate(values):
                if v < 1:
                    raise ValueError(f"`{name}[{i}]` must be >= 1, got {v}.")
            object.__setattr__(self, name, values)
        object.__setattr__(self, "layers", _check_layers(self.layers, self.num_hidden_layers))

    @property
    def is_uniform(self) -> bool:
        """Whether every layer has the same head count and FFN width."""
        return len(set(self.num_attention_heads)) == 1 and len(set(self.intermediate_size)) == 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": list(self.num_attention_heads),
            "intermediate_size": list(self.intermediate_size),
            "hidden_size": self.hidden_size,
            "layers": list(self.layers),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubnetConfig:
        """The inverse of `to_dict`. A dict without `layers` (written before layer subsets existed) keeps the first
        `num_hidden_layers` layers."""
        if not isinstance(data, dict):
            raise TypeError(f"A subnet config must be a dict, got {type(data).__name__}.")
        allowed = (*_SUBNET_FIELDS, *_SUBNET_OPTIONAL_FIELDS)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"Unknown keys in subnet config: {unknown}. Allowed keys: {list(allowed)}.")
        missing = [k for k in _SUBNET_FIELDS if k not in data]
        if missing:
            raise ValueError(f"Missing keys in subnet config: {missing}. Required keys: {list(_SUBNET_FIELDS)}.")
        return cls(**data)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write the subnet as JSON (atomically)."""
        atomic_write_text(path, self.to_json_string())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubnetConfig:
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{os.fspath(path)} is not valid JSON: {e}") from e
        return cls.from_dict(data)

    @classmethod
    def uniform(
        cls,
        num_hidden_layers: int,
        num_attention_heads: int,
        intermediate_size: int,
        hidden_size: int,
        layers: Sequence[int] | None = None,
    ) -> SubnetConfig:
        """A subnet with the same head count and FFN width in every layer (the first layers unless `layers` says)."""
        return cls(
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=(num_attention_heads,) * num_hidden_layers,
            intermediate_size=(intermediate_size,) * num_hidden_layers,
            hidden_size=hidden_size,
            layers=layers,
        )


def _check_layers(layers: Any, depth: int) -> tuple[int, ...]:
    """`layers` as a tuple of strictly increasing, non-negative ints of length `depth` (default: the first `depth`)."""
    if layers is None:
        return tuple(range(depth))
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise TypeError(f"`layers` must be a sequence of layer indices (one per kept layer), got {layers!r}.")
    layers = tuple(check_int(f"layers[{i}]", v) for i, v in enumerate(layers))
    if len(layers) != depth:
        raise ValueError(
            f"`layers` has {len(layers)} entries but `num_hidden_layers` is {depth}: give exactly one layer index "
            "per kept layer."
        )
    if any(v < 0 for v in layers):
        raise ValueError(f"`layers` must hold 0-based layer indices (>= 0), got {list(layers)}.")
    if any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
        raise ValueError(
            f"`layers` must be strictly increasing (each supernet layer kept at most once, in order), got "
            f"{list(layers)}."
        )
    return layers


def _choices(field: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"`{field}` choices must be a sequence of ints, got {values!r}.")
    values = tuple(check_int(f"{field} choice", v) for v in values)
    if not values:
        raise ValueError(f"`{field}` needs at least one choice, got none.")
    for v in values:
        if v < 1:
            raise ValueError(f"`{field}` choices must be >= 1, got {v} in {list(values)}.")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class SearchSpace:
    """The choices of each dimension of a supernet.

    The largest choice of each dimension is the supernet's own size. `attention_head_size` is fixed (heads are
    added or removed whole), and every `hidden_size` choice must be a multiple of it so that a uniform subnet with
    `hidden_size // attention_head_size` heads is an ordinary model.

    Which layers a subnet of depth k keeps is fixed by `layer_rule` (one subset per depth, see `layers_for`):
    `"first"` keeps layers 0..k-1; `"spread"` keeps k evenly spaced layers and always the last one (in checkpoints
    trained with mean pooling, such as sentence-transformers models, the CLS state of early layers barely varies, so
    a subnet that classifies from an early CLS collapses); `"importance"` keeps the k highest-ranked layers of
    `layer_order` (most important first, see `hf_nas.importance.rank_layers`), in their original order.
    `num_supernet_layers` is the supernet's depth (default: the largest depth choice); subsets are taken from it.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> space.largest().num_attention_heads
    (4, 4)
    >>> space.contains(space.sample(seed=0))
    True
    ```
    """

    num_hidden_layers: tuple[int, ...]
    num_attention_heads: tuple[int, ...]
    intermediate_size: tuple[int, ...]
    hidden_size: tuple[int, ...]
    attention_head_size: int
    layer_rule: str = "first"
    layer_order: tuple[int, ...] | None = None
    num_supernet_layers: int | None = None

    def __post_init__(self):
        for field in _SPACE_FIELDS:
            object.__setattr__(self, field, _choices(field, getattr(self, field)))
        check_int("attention_head_size", self.attention_head_size)
        if self.attention_head_size < 1:
            raise ValueError(f"`attention_head_size` must be >= 1, got {self.attention_head_size}.")
        bad = [h for h in self.hidden_size if h % self.attention_head_size]
        if bad:
            raise ValueError(
                f"`hidden_size` choices {bad} are not divisible by attention_head_size={self.attention_head_size}: "
                f"allowed hidden sizes are multiples of {self.attention_head_size}."
            )
        total = max(self.num_hidden_layers) if self.num_supernet_layers is None else self.num_supernet_layers
        check_int("num_supernet_layers", total)
        if total < max(self.num_hidden_layers):
            raise ValueError(
                f"`num_supernet_layers`={total} is below the largest depth choice {max(self.num_hidden_layers)}; "
                f"allowed: >= {max(self.num_hidden_layers)}."
            )
        object.__setattr__(self, "num_supernet_layers", total)
        if self.layer_rule not in LAYER_RULES:
            raise ValueError(f"Unknown `layer_rule` {self.layer_rule!r}; allowed: {list(LAYER_RULES)}.")
        order = self.layer_order
        if self.layer_rule == "importance":
            if order is None:
                raise ValueError(
                    "layer_rule='importance' needs `layer_order` (the supernet's layers, most important first); "
                    "compute it with hf_nas.importance.rank_layers."
                )
            if isinstance(order, (str, bytes)) or not isinstance(order, Iterable):
                raise TypeError(f"`layer_order` must be a sequence of layer indices, got {order!r}.")
            order = tuple(check_int(f"layer_order[{i}]", v) for i, v in enumerate(order))
            if sorted(order) != list(range(total)):
                raise ValueError(
                    f"`layer_order` must be a permutation of the supernet's layers 0..{total - 1}, got {list(order)}."
                )
            object.__setattr__(self, "layer_order", order)
        elif order is not None:
            raise ValueError(
                f"`layer_order` is only for layer_rule='importance', got it with layer_rule={self.layer_rule!r}."
            )

    def layers_for(self, depth: int) -> tuple[int, ...]:
        """The supernet layers a subnet of `depth` layers keeps under `layer_rule` (0-based, increasing).

        ```python
        >>> space = SearchSpace((3, 6), (12,), (1536,), (384,), 32, layer_rule="spread")
        >>> space.layers_for(3)
        (1, 3, 5)
        ```
        """
        check_int("depth", depth)
        total = self.num_supernet_layers
        if not 1 <= depth <= total:
            raise ValueError(f"`depth`={depth} is out of range; allowed: 1 to {total}.")
        if self.layer_rule == "first":
            return tuple(range(depth))
        if self.layer_rule == "spread":
            return spread_layers(depth, total)
        return tuple(sorted(self.layer_order[:depth]))

    def subnet(
        self,
        num_hidden_layers: int,
        num_attention_heads: int | Sequence[int],
        intermediate_size: int | Sequence[int],
        hidden_size: int,
    ) -> SubnetConfig:
        """The subnet with these sizes that keeps the layers this space holds for its depth. `num_attention_heads`
        and `intermediate_size` are one value for every layer or one per kept layer. Not validated: see `validate`."""

        def per_layer(values: int | Sequence[int]) -> Sequence[int]:
            return (values,) * num_hidden_layers if isinstance(values, int) else values

        return SubnetConfig(
            num_hidden_layers,
            per_layer(num_attention_heads),
            per_layer(intermediate_size),
            hidden_size,
            layers=self.layers_for(num_hidden_layers),
        )

    # ----------------------------------------------------------------------------------------------------------
    # construction
    @classmethod
    def from_model_config(cls, config: Any) -> SearchSpace:
        """The default space of a vanilla config: depth from half to all layers (`layer_rule="spread"`); heads and
        FFN at 25/50/75/100%; hidden size at 50/75/100% (rounded to whole heads)."""
        num_layers = config.num_hidden_layers
        heads = config.num_attention_heads
        ffn = config.intermediate_size
        hidden = config.hidden_size
        if hidden % heads:
            raise ValueError(
                f"hidden_size={hidden} is not divisible by num_attention_heads={heads}: elastic heads need a "
                "whole attention_head_size."
            )
        head_size = hidden // heads
        return cls(
            num_hidden_layers=tuple(range(max(1, math.ceil(num_layers / 2)), num_layers + 1)),
            num_attention_heads=tuple(max(1, round(heads * m)) for m in (0.25, 0.5, 0.75, 1.0)),
            intermediate_size=tuple(max(1, round(ffn * m)) for m in (0.25, 0.5, 0.75, 1.0)),
            hidden_size=tuple(max(1, round(heads * m)) * head_size for m in (0.5, 0.75, 1.0)),
            attention_head_size=head_size,
            layer_rule=DEFAULT_LAYER_RULE,
            num_supernet_layers=num_layers,
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f: list(getattr(self, f)) for f in _SPACE_FIELDS}
        data["attention_head_size"] = self.attention_head_size
        data["layer_rule"] = self.layer_rule
        data["layer_order"] = None if self.layer_order is None else list(self.layer_order)
        data["num_supernet_layers"] = self.num_supernet_layers
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSpace:
        """The inverse of `to_dict`. A dict without the layer fields (written before layer subsets existed) keeps
        the first layers (`layer_rule="first"`)."""
        if not isinstance(data, dict):
            raise TypeError(f"A search space must be a dict, got {type(data).__name__}.")
        required = (*_SPACE_FIELDS, "attention_head_size")
        allowed = (*required, *_SPACE_OPTIONAL_FIELDS)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"Unknown keys in search space: {unknown}. Allowed keys: {list(allowed)}.")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"Missing keys in search space: {missing}. Required keys: {list(required)}.")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchSpace:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def narrow(self, **choices: Sequence[int]) -> SearchSpace:
        """A smaller space: each given dimension keeps only the listed choices, which must be in this space.

        ```python
        >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
        ...                     hidden_size=(16, 32), attention_head_size=8)
        >>> narrow = space.narrow(num_hidden_layers=[2], hidden_size=[32])
        >>> narrow.num_hidden_layers, narrow.hidden_size, narrow.num_attention_heads
        ((2,), (32,), (2, 4))
        ```
        """
        for field, values in choices.items():
            if field not in _SPACE_FIELDS:
                raise ValueError(f"Cannot narrow unknown dimension {field!r}; dimensions are {list(_SPACE_FIELDS)}.")
            values = _choices(field, values)
            outside = [v for v in values if v not in getattr(self, field)]
            if outside:
                raise ValueError(
                    f"Cannot narrow `{field}` to {list(values)}: {outside} not in the allowed choices "
                    f"{list(getattr(self, field))}."
                )
        return dataclasses.replace(self, **choices)

    def partition(self, k: int = 3) -> list[SearchSpace]:
        """Split the space into `k` compact sub-spaces (AutoDistil), from the smallest models to the largest.

        The hidden-size choices are cut into `k` contiguous groups (and so are the depth choices when there are at
        least `k` of them); each sub-space keeps all head and FFN choices. With k=3 these are AutoDistil's tiny, small
        and base sub-spaces; train one supernet per sub-space to avoid interference between very different sizes.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int, got {k!r}.")
        if k > len(self.hidden_size):
            raise ValueError(
                f"Cannot partition into k={k} sub-spaces: only {len(self.hidden_size)} hidden_size choices "
                f"{list(self.hidden_size)}; allowed: k <= {len(self.hidden_size)}."
            )

        def groups(values: tuple[int, ...]) -> list[tuple[int, ...]]:
            n = len(values)
            return [values[i * n // k : (i + 1) * n // k] for i in range(k)]

        hidden = groups(self.hidden_size)
        depth = groups(self.num_hidden_layers) if len(self.num_hidden_layers) >= k else [self.num_hidden_layers] * k
        return [self.narrow(hidden_size=h, num_hidden_layers=d) for h, d in zip(hidden, depth, strict=True)]

    # ----------------------------------------------------------------------------------------------------------
    # points
    def largest(self) -> SubnetConfig:
        return self.subnet(
            max(self.num_hidden_layers),
            max(self.num_attention_heads),
            max(self.intermediate_size),
            max(self.hidden_size),
        )

    def smallest(self) -> SubnetConfig:
        return self.subnet(
            min(self.num_hidden_layers),
            min(self.num_attention_heads),
            min(self.intermediate_size),
            min(self.hidden_size),
        )

    def middle(self) -> SubnetConfig:
        """The uniform subnet with the median choice of every dimension (the upper median for even counts)."""

        def median(values: tuple[int, ...]) -> int:
            return values[len(values) // 2]

        return self.subnet(
            median(self.num_hidden_layers),
            median(self.num_attention_heads),
            median(self.intermediate_size),
            median(self.hidden_size),
        )

    def sample(
        self, seed: int | None = None, generator: random.Random | None = None, uniform: bool = False
    ) -> SubnetConfig:
        """A subnet drawn uniformly per dimension (per layer for heads and FFN; one draw for all layers if
        `uniform`). Its layers are the ones `layer_rule` keeps for the drawn depth.

        Randomness is explicit: pass `seed` (an int) or `generator` (a `random.Random`); never the global RNG.
        """
        if (seed is None) == (generator is None):
            raise ValueError("Pass exactly one of `seed` (int) or `generator` (random.Random) to `sample`.")
        rng = generator if generator is not None else random.Random(seed)
        depth = rng.choice(self.num_hidden_layers)
        draws = 1 if uniform else depth
        heads = tuple(rng.choice(self.num_attention_heads) for _ in range(draws))
        ffn = tuple(rng.choice(self.intermediate_size) for _ in range(draws))
        hidden = rng.choice(self.hidden_size)
        return self.subnet(depth, heads * (depth // draws), ffn * (depth // draws), hidden)

    def validate(self, subnet: SubnetConfig) -> None:
        """Raise `ValueError` naming the field, the value and the allowed choices if `subnet` is outside the space."""
        if not isinstance(subnet, SubnetConfig):
            raise TypeError(f"Expected a SubnetConfig, got {type(subnet).__name__}.")
        if subnet.num_hidden_layers not in self.num_hidden_layers:
            raise ValueError(
                f"`num_hidden_layers`={subnet.num_hidden_layers} is not in the search space; "
                f"allowed: {list(self.num_hidden_layers)}."
            )
        expected = self.layers_for(subnet.num_hidden_layers)
        if subnet.layers != expected:
            raise ValueError(
                f"`layers`={list(subnet.layers)} is not in the search space: with layer_rule={self.layer_rule!r} a "
                f"subnet of depth {subnet.num_hidden_layers} keeps layers {list(expected)}."
            )
        if subnet.hidden_size not in self.hidden_size:
            raise ValueError(
                f"`hidden_size`={subnet.hidden_size} is not in the search space; allowed: {list(self.hidden_size)}."
            )
        for field in ("num_attention_heads", "intermediate_size"):
            for i, v in enumerate(getattr(subnet, field)):
                if v not in getattr(self, field):
                    raise ValueError(
                        f"`{field}[{i}]`={v} is not in the search space; allowed: {list(getattr(self, field))}."
                    )

    def contains(self, subnet: SubnetConfig) -> bool:
        try:
            self.validate(subnet)
        except (ValueError, TypeError):
            return False
        return True

    def __contains__(self, subnet: SubnetConfig) -> bool:
        return self.contains(subnet)

    @property
    def size(self) -> int:
        """Number of distinct subnets in the space."""
        per_layer = len(self.num_attention_heads) * len(self.intermediate_size)
        return len(self.hidden_size) * sum(per_layer**d for d in self.num_hidden_layers)
