"""Subnet samplers: which subnets the supernet trains at each step.

A [`SubnetSampler`] returns the subnets of one optimizer step (and gradient-accumulation micro step). Its output is a
pure function of `(seed, step, micro_step)` and of its state: the random generator of each call is derived from those
numbers alone (`random.Random(f"{seed}-{step}-{micro_step}")`, which Python seeds through SHA-512, so it does not
depend on `PYTHONHASHSEED`), never from the global RNG nor from a generator that advances with calls. Every process of
a distributed run therefore trains the same subnets, and a resumed run (with the sampler state restored from the
checkpoint) continues the identical sequence.

Samplers are found by name in [`SAMPLERS`] (see [`get_sampler`]); add one with the [`register_sampler`] decorator.

- `"sandwich"` (BigNAS): the largest, the smallest and `num_random_subnets` uniform random subnets.
- `"instatune"` (InstaTune): the largest and one uniform random subnet.
- `"random"`: `num_subnets` uniform random subnets.
- `"shiftnas"` (ShiftNAS-style): the largest, the smallest and subnets drawn from complexity bins whose probability
  shifts toward the bins that lag behind (higher training loss).
- `"targeted"`: the largest, the smallest and random subnets whose MAC share lies just below the shares the user will
  deploy at (e.g. 50% and 25%), so the subnets a search picks there are the ones trained most.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import numbers
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ..costs import layer_linear_macs
from ..registry import Registry
from ..search_space import SearchSpace, SubnetConfig
from ..validation import check_float, check_int

__all__ = [
    "SAMPLERS",
    "FixedSampler",
    "InstaTuneSampler",
    "RandomSampler",
    "SandwichSampler",
    "ShiftNASSampler",
    "StagedSampler",
    "SubnetSampler",
    "TargetedSampler",
    "get_sampler",
    "parse_stages",
    "register_sampler",
]

logger = logging.getLogger(__name__)


def _check_update_args(subnets: Sequence[SubnetConfig], losses: Sequence[float]) -> list[float]:
    """Validate the arguments of `update` and return the losses as floats (tensors with one element are accepted)."""
    for i, subnet in enumerate(subnets):
        if not isinstance(subnet, SubnetConfig):
            raise TypeError(f"`subnets[{i}]` must be a SubnetConfig, got {type(subnet).__name__}.")
    if len(subnets) != len(losses):
        raise ValueError(
            f"`update` needs one loss per subnet, got {len(subnets)} subnets and {len(losses)} losses: pass the "
            "losses in the order of the subnets returned by `sample`."
        )
    floats = []
    for i, loss in enumerate(losses):
        if isinstance(loss, bool) or not hasattr(loss, "__float__"):
            raise TypeError(f"`losses[{i}]` must be a number, got {loss!r} of type {type(loss).__name__}.")
        floats.append(float(loss))
    return floats


class SubnetSampler(ABC):
    """Picks the subnets that the supernet trains at each step.

    Subclasses set the class attribute `name` (the key in [`SAMPLERS`]), take their options as keyword arguments
    after `search_space` and `seed`, and implement `sample`. Samplers that learn from the training loss override
    `update`, `state_dict` and `load_state_dict`.

    Args:
        search_space (`SearchSpace`): the space the subnets are drawn from.
        seed (`int`, *optional*, defaults to 0): the seed of every random draw, combined with the step.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.training.samplers import get_sampler
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> sampler = get_sampler("sandwich", space, seed=0, num_random_subnets=1)
    >>> subnets = sampler.sample(step=3)
    >>> len(subnets), subnets[0] == space.largest(), subnets == sampler.sample(step=3)
    (3, True, True)
    ```
    """

    name: ClassVar[str]

    def __init__(self, search_space: SearchSpace, seed: int = 0):
        if not isinstance(search_space, SearchSpace):
            raise TypeError(f"`search_space` must be a SearchSpace, got {type(search_space).__name__}.")
        self.search_space = search_space
        self.seed = check_int("seed", seed)

    def generator(self, step: int, micro_step: int = 0) -> random.Random:
        """The random generator of one call: derived from `(seed, step, micro_step)` only."""
        check_int("step", step, 0)
        check_int("micro_step", micro_step, 0)
        return random.Random(f"{self.seed}-{step}-{micro_step}")

    @abstractmethod
    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        """The subnets to train at optimizer step `step` (and gradient-accumulation micro step `micro_step`).

        A pure function of (seed, step, micro_step, sampler state): every process of a distributed run computes the
        same list, and a resumed run continues the identical sequence.
        """

    def update(self, subnets: list[SubnetConfig], losses: list[float]) -> None:
        """Report the training loss of each subnet of a step (averaged across processes by the trainer, so that the
        state stays identical on every process). The default checks the arguments and does nothing else."""
        _check_update_args(subnets, losses)

    def state_dict(self) -> dict[str, Any]:
        """The sampler state, JSON-serializable, saved in checkpoints."""
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state returned by `state_dict`."""
        self._check_state(state, ("name",))

    def _check_state(self, state: Any, keys: Sequence[str]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"A sampler state must be a dict, got {type(state).__name__}.")
        missing = [k for k in keys if k not in state]
        unknown = sorted(set(state) - set(keys))
        if missing or unknown:
            raise ValueError(
                f"Invalid state for sampler {self.name!r}: missing keys {missing}, unknown keys {unknown}; "
                f"expected keys {list(keys)}."
            )
        if state["name"] != self.name:
            raise ValueError(f"The state was saved by sampler {state['name']!r}, not by {self.name!r}.")

    @property
    def largest_first(self) -> bool:
        """True if `sample` always puts `search_space.largest()` first (the trainer then uses its logits as the
        in-place teacher)."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, seed={self.seed})"


class _UniformDraws:
    """Random subnets that are uniform (one head count and FFN width for all layers) with probability
    `uniform_probability`: the uniform subnets that search and extraction favour are trained, not left to a
    per-layer draw that hits any one of them with vanishing probability."""

    def _init_uniform(self, uniform_probability: float) -> None:
        p = check_float("uniform_probability", uniform_probability)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"`uniform_probability` must be in [0, 1], got {uniform_probability}.")
        self.uniform_probability = p

    def draw(self, rng: random.Random) -> SubnetConfig:
        # The extra draw only happens when the option is on, so p=0 keeps the sequence of earlier versions.
        uniform = self.uniform_probability > 0 and rng.random() < self.uniform_probability
        return self.search_space.sample(generator=rng, uniform=uniform)


SAMPLERS: Registry = Registry("sampler", SubnetSampler, ("search_space", "seed"))


def register_sampler(cls: type[SubnetSampler]) -> type[SubnetSampler]:
    """Class decorator adding a [`SubnetSampler`] subclass to [`SAMPLERS`] under its `name`.

    ```python
    >>> @register_sampler
    ... class MySampler(SubnetSampler):
    ...     name = "mine"
    ...     def sample(self, step, micro_step=0):
    ...         return [self.search_space.sample(generator=self.generator(step, micro_step))]
    >>> "mine" in SAMPLERS
    True
    ```
    """
    return SAMPLERS.register(cls)


def get_sampler(name: str, search_space: SearchSpace, seed: int = 0, **kwargs: Any) -> SubnetSampler:
    """Build the sampler registered as `name` with its options `kwargs`.

    ```python
    >>> space = SearchSpace((1, 2), (2, 4), (32, 64), (32,), attention_head_size=8)
    >>> sampler = get_sampler("random", space, seed=1, num_subnets=2)
    >>> len(sampler.sample(step=0))
    2
    ```

    Raises:
        ValueError: for an unknown name (the message lists the registered ones) or an option value out of range.
        TypeError: for an option the sampler does not take, or of the wrong type.
    """
    cls = SAMPLERS.lookup(name, kwargs)
    return cls(search_space, seed=seed, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# samplers
@register_sampler
class SandwichSampler(_UniformDraws, SubnetSampler):
    """The sandwich rule of BigNAS: the largest subnet, the smallest and `num_random_subnets` uniform random ones.

    Args:
        search_space (`SearchSpace`): the space the subnets are drawn from.
        seed (`int`, *optional*, defaults to 0): the seed of every random draw, combined with the step.
        num_random_subnets (`int`, *optional*, defaults to 2): uniform random subnets after the two extremes (>= 0).
        uniform_probability (`float`, *optional*, defaults to 0.0): probability that a random subnet has one head
            count and FFN width in every layer.

    Example:

    ```python
    >>> space = SearchSpace((1, 2), (2, 4), (32, 64), (32,), attention_head_size=8)
    >>> sampler = SandwichSampler(space, seed=0)
    >>> subnets = sampler.sample(step=0)  # the largest, the smallest, then two random subnets
    >>> subnets[0] == space.largest(), subnets[1] == space.smallest(), len(subnets)
    (True, True, 4)
    ```
    """

    name = "sandwich"

    def __init__(
        self,
        search_space: SearchSpace,
        seed: int = 0,
        *,
        num_random_subnets: int = 2,
        uniform_probability: float = 0.0,
    ):
        super().__init__(search_space, seed)
        self.num_random_subnets = check_int("num_random_subnets", num_random_subnets, 0)
        self._init_uniform(uniform_probability)

    @property
    def largest_first(self) -> bool:
        return True

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        rng = self.generator(step, micro_step)
        space = self.search_space
        return [
            space.largest(),
            space.smallest(),
            *(self.draw(rng) for _ in range(self.num_random_subnets)),
        ]


@register_sampler
class InstaTuneSampler(_UniformDraws, SubnetSampler):
    """InstaTune: the largest subnet (the teacher) and one uniform random subnet per step.

    Example:

    ```python
    >>> space = SearchSpace((1, 2), (2, 4), (32, 64), (32,), attention_head_size=8)
    >>> sampler = InstaTuneSampler(space, seed=0)
    >>> len(sampler.sample(step=0))
    2
    ```
    """

    name = "instatune"

    def __init__(self, search_space: SearchSpace, seed: int = 0, *, uniform_probability: float = 0.0):
        super().__init__(search_space, seed)
        self._init_uniform(uniform_probability)

    @property
    def largest_first(self) -> bool:
        return True

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        rng = self.generator(step, micro_step)
        return [self.search_space.largest(), self.draw(rng)]


@register_sampler
class RandomSampler(_UniformDraws, SubnetSampler):
    """`num_subnets` uniform random subnets per step (no extremes, so no in-place teacher).

    Args:
        search_space (`SearchSpace`): the space the subnets are drawn from.
        seed (`int`, *optional*, defaults to 0): the seed of every random draw, combined with the step.
        num_subnets (`int`, *optional*, defaults to 1): subnets per step (>= 1).

    Example:

    ```python
    >>> space = SearchSpace((1, 2), (2, 4), (32, 64), (32,), attention_head_size=8)
    >>> sampler = RandomSampler(space, seed=0, num_subnets=3)
    >>> len(sampler.sample(step=0))
    3
    ```
    """

    name = "random"

    def __init__(
        self, search_space: SearchSpace, seed: int = 0, *, num_subnets: int = 1, uniform_probability: float = 0.0
    ):
        super().__init__(search_space, seed)
        self.num_subnets = check_int("num_subnets", num_subnets, 1)
        self._init_uniform(uniform_probability)

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        rng = self.generator(step, micro_step)
        return [self.draw(rng) for _ in range(self.num_subnets)]


@register_sampler
class FixedSampler(SubnetSampler):
    """The same `subnets` at every step: fine-tune one architecture inside the supernet (e.g. a short distillation
    after the search, or a same-teacher baseline that trains that architecture alone).

    Args:
        search_space (`SearchSpace`): the space the subnets must lie in.
        seed (`int`, *optional*, defaults to 0): unused (no randomness), kept for the common signature.
        subnets (`list[SubnetConfig]`): the subnets of every step, in order.

    Example:

    ```python
    >>> space = SearchSpace((1, 2), (2, 4), (32, 64), (32,), attention_head_size=8)
    >>> sampler = FixedSampler(space, subnets=[space.smallest()])
    >>> sampler.sample(step=7) == [space.smallest()]
    True
    ```
    """

    name = "fixed"

    def __init__(self, search_space: SearchSpace, seed: int = 0, *, subnets: Sequence[SubnetConfig] = ()):
        super().__init__(search_space, seed)
        if isinstance(subnets, SubnetConfig) or not isinstance(subnets, Sequence) or not subnets:
            raise ValueError(f"`subnets` must be a non-empty list of SubnetConfig, got {subnets!r}.")
        for subnet in subnets:
            search_space.validate(subnet)
        self.subnets = list(subnets)

    @property
    def largest_first(self) -> bool:
        return self.subnets[0] == self.search_space.largest()

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        check_int("step", step, 0)
        return list(self.subnets)


def _mac_proxy(subnet: SubnetConfig, attention_head_size: int) -> float:
    """Per-token MACs of the linear layers of the kept encoder layers (`hf_nas.costs.layer_linear_macs`)."""
    return float(
        sum(
            layer_linear_macs(subnet.hidden_size, heads, ffn, attention_head_size=attention_head_size)
            for heads, ffn in zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)
        )
    )


def _complexity_fn(
    complexity_fn: Callable[[SubnetConfig], float] | None, search_space: SearchSpace
) -> Callable[[SubnetConfig], float]:
    """`complexity_fn`, checked, or the default linear-layer MAC proxy of `search_space`."""
    if complexity_fn is not None and not callable(complexity_fn):
        raise TypeError(f"`complexity_fn` must be callable (SubnetConfig -> float) or None, got {complexity_fn!r}.")
    return complexity_fn or functools.partial(_mac_proxy, attention_head_size=search_space.attention_head_size)


def _checked_complexity(complexity_fn: Callable[[SubnetConfig], float], subnet: SubnetConfig) -> float:
    value = complexity_fn(subnet)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`complexity_fn` must return a finite real number, got {value!r} for {subnet}.")
    return float(value)


def _draw_in_range(
    draw: Callable[[], SubnetConfig],
    measure: Callable[[SubnetConfig], float],
    low: float,
    high: float,
    max_attempts: int,
    include_high: bool = False,
) -> SubnetConfig:
    """Rejection sampling: the first of up to `max_attempts` draws whose measure lies in `[low, high)` (`[low, high]`
    with `include_high`), else the draw of closest measure."""
    closest, closest_distance = None, math.inf
    for _ in range(max_attempts):
        candidate = draw()
        value = measure(candidate)
        if low <= value < high or (include_high and value == high):
            return candidate
        distance = low - value if value < low else value - high
        if distance < closest_distance:
            closest, closest_distance = candidate, distance
    return closest


@register_sampler
class ShiftNASSampler(SubnetSampler):
    """Complexity-aware sampling in the spirit of ShiftNAS: probability shifts toward the complexity ranges whose
    subnets lag behind.

    Each step trains the largest and the smallest subnet (if `include_extremes`) and `num_random_subnets` subnets
    drawn from complexity bins. The bins split the complexity range at the quantiles of a fixed pool of `pool_size`
    uniform samples (seeded by `seed`), so that under uniform sampling every bin is equally likely. The sampler keeps
    an exponential moving average of the training loss of each bin (fed by `update`); bin `k` is chosen with
    probability `softmax(beta * lag_k / mean)`, where `lag_k` is its average loss minus `mean`, the mean over the bins
    that have seen a loss (bins without a loss get lag 0). Dividing by the mean loss makes `beta` unit-free; with
    `beta=0` or before any update the bins are uniform.

    ShiftNAS trains an architecture generator that maps a complexity to a subnet; here a subnet of the chosen bin is
    found by rejection sampling: uniform subnets are drawn (with the generator of the call) until one falls in the
    bin, and after `max_attempts` misses the candidate with the closest complexity is taken. Bins that hold no
    sample of the pool (possible when the complexity takes few distinct values) get probability 0.

    Args:
        search_space (`SearchSpace`): the space the subnets are drawn from.
        seed (`int`, *optional*, defaults to 0): the seed of every random draw (and of the pool), combined with the step.
        num_random_subnets (`int`, *optional*, defaults to 2): subnets drawn from the bins each step (>= 0).
        include_extremes (`bool`, *optional*, defaults to `True`): put the largest and the smallest subnet first.
        num_bins (`int`, *optional*, defaults to 4): number of complexity bins (>= 1).
        pool_size (`int`, *optional*, defaults to 2000): uniform samples whose complexity quantiles are the bin edges.
        ema (`float`, *optional*, defaults to 0.9): decay of the moving average of each bin's loss, in (0, 1).
        beta (`float`, *optional*, defaults to 2.0): strength of the shift (>= 0; 0 keeps the bins uniform).
        complexity_fn (`Callable[[SubnetConfig], float]`, *optional*): the complexity of a subnet. Defaults to an
            analytic per-token MAC proxy of the encoder layers: the sum of `hf_nas.costs.layer_linear_macs` (query,
            key, value, attention output and FFN matrices) over the kept layers.
        max_attempts (`int`, *optional*, defaults to 1000): uniform draws per subnet before taking the closest one.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.training.samplers import ShiftNASSampler
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> sampler = ShiftNASSampler(space, seed=0, num_bins=2)
    >>> sampler.bin_probabilities()
    [0.5, 0.5]
    >>> sampler.update([space.smallest(), space.largest()], [3.0, 1.0])
    >>> sampler.bin_probabilities()[0] > 0.5  # the small subnets lag: their bin is sampled more
    True
    ```
    """

    name = "shiftnas"

    def __init__(
        self,
        search_space: SearchSpace,
        seed: int = 0,
        *,
        num_random_subnets: int = 2,
        include_extremes: bool = True,
        num_bins: int = 4,
        pool_size: int = 2000,
        ema: float = 0.9,
        beta: float = 2.0,
        complexity_fn: Callable[[SubnetConfig], float] | None = None,
        max_attempts: int = 1000,
    ):
        super().__init__(search_space, seed)
        self.num_random_subnets = check_int("num_random_subnets", num_random_subnets, 0)
        if not isinstance(include_extremes, bool):
            raise TypeError(f"`include_extremes` must be a bool, got {include_extremes!r}.")
        if not include_extremes and num_random_subnets == 0:
            raise ValueError(
                "`include_extremes=False` with `num_random_subnets=0` would sample no subnet: set "
                "`num_random_subnets` >= 1 or `include_extremes=True`."
            )
        self.include_extremes = include_extremes
        self.num_bins = check_int("num_bins", num_bins, 1)
        self.pool_size = check_int("pool_size", pool_size, 1)
        if pool_size < num_bins:
            raise ValueError(f"`pool_size` ({pool_size}) must be >= `num_bins` ({num_bins}) to place the bin edges.")
        self.ema = check_float("ema", ema)
        if not 0.0 < self.ema < 1.0:
            raise ValueError(f"`ema` must be in the open interval (0, 1), got {ema}.")
        self.beta = check_float("beta", beta)
        if self.beta < 0:
            raise ValueError(f"`beta` must be >= 0, got {beta}.")
        self.complexity_fn = _complexity_fn(complexity_fn, search_space)
        self.max_attempts = check_int("max_attempts", max_attempts, 1)

        pool_rng = random.Random(f"{self.seed}-shiftnas-pool")
        self._pool = sorted(self.complexity(search_space.sample(generator=pool_rng)) for _ in range(pool_size))
        self._set_bins([self._pool[k * pool_size // num_bins] for k in range(1, num_bins)], [None] * num_bins)

    def _set_bins(self, edges: list[float], ema_losses: list[float | None]) -> None:
        self._bin_edges = list(edges)
        self._ema_losses = list(ema_losses)
        # how many pool samples each bin holds: a bin without any cannot be drawn from
        self._pool_counts = [
            bisect.bisect_left(self._pool, hi) - bisect.bisect_left(self._pool, lo)
            for lo, hi in (self._bin_interval(k) for k in range(self.num_bins))
        ]

    @property
    def largest_first(self) -> bool:
        return self.include_extremes

    @property
    def bin_edges(self) -> tuple[float, ...]:
        """The `num_bins - 1` inner edges; bin `k` holds the complexities in `[edges[k - 1], edges[k])`."""
        return tuple(self._bin_edges)

    def complexity(self, subnet: SubnetConfig) -> float:
        """The complexity of `subnet` according to `complexity_fn`."""
        return _checked_complexity(self.complexity_fn, subnet)

    def bin_of(self, subnet: SubnetConfig) -> int:
        """The index of the complexity bin of `subnet` (0 is the least complex)."""
        return bisect.bisect_right(self._bin_edges, self.complexity(subnet))

    def _bin_interval(self, k: int) -> tuple[float, float]:
        lo = self._bin_edges[k - 1] if k > 0 else -math.inf
        hi = self._bin_edges[k] if k < self.num_bins - 1 else math.inf
        return lo, hi

    def bin_probabilities(self) -> list[float]:
        """The probability of each bin at the next `sample` (for logging)."""
        sampleable = [k for k in range(self.num_bins) if self._pool_counts[k] > 0]
        seen = [self._ema_losses[k] for k in sampleable if self._ema_losses[k] is not None]
        mean = sum(seen) / len(seen) if seen else 0.0
        logits = {}
        for k in sampleable:
            loss = self._ema_losses[k]
            lag = 0.0 if loss is None or mean == 0 else (loss - mean) / abs(mean)
            logits[k] = self.beta * lag
        top = max(logits.values())
        weights = {k: math.exp(v - top) for k, v in logits.items()}
        total = sum(weights.values())
        return [weights[k] / total if k in weights else 0.0 for k in range(self.num_bins)]

    def _draw_in_bin(self, rng: random.Random, k: int) -> SubnetConfig:
        lo, hi = self._bin_interval(k)
        return _draw_in_range(
            lambda: self.search_space.sample(generator=rng), self.complexity, lo, hi, self.max_attempts
        )

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        rng = self.generator(step, micro_step)
        space = self.search_space
        subnets = [space.largest(), space.smallest()] if self.include_extremes else []
        probabilities = self.bin_probabilities()
        for _ in range(self.num_random_subnets):
            k = rng.choices(range(self.num_bins), weights=probabilities)[0]
            subnets.append(self._draw_in_bin(rng, k))
        return subnets

    def update(self, subnets: list[SubnetConfig], losses: list[float]) -> None:
        """Fold each subnet's loss into the moving average of its complexity bin. Non-finite losses (an overflowing
        mixed-precision step) are skipped with a warning, so that one bad step cannot poison the averages."""
        for subnet, loss in zip(subnets, _check_update_args(subnets, losses), strict=True):
            if not math.isfinite(loss):
                logger.warning("ShiftNASSampler.update: skipping the non-finite loss %s of %s.", loss, subnet)
                continue
            k = self.bin_of(subnet)
            previous = self._ema_losses[k]
            self._ema_losses[k] = loss if previous is None else self.ema * previous + (1.0 - self.ema) * loss

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bin_edges": list(self._bin_edges), "ema_losses": list(self._ema_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state(state, ("name", "bin_edges", "ema_losses"))
        edges, ema_losses = state["bin_edges"], state["ema_losses"]
        if not isinstance(edges, list) or len(edges) != self.num_bins - 1:
            raise ValueError(
                f"`bin_edges` must be a list of num_bins - 1 = {self.num_bins - 1} numbers, got {edges!r}: was the "
                "state saved with another `num_bins`?"
            )
        edges = [check_float(f"bin_edges[{i}]", v) for i, v in enumerate(edges)]
        if edges != sorted(edges):
            raise ValueError(f"`bin_edges` must be non-decreasing, got {edges}.")
        if not isinstance(ema_losses, list) or len(ema_losses) != self.num_bins:
            raise ValueError(
                f"`ema_losses` must be a list of num_bins = {self.num_bins} entries (a number or None), got "
                f"{ema_losses!r}."
            )
        ema_losses = [None if v is None else check_float(f"ema_losses[{i}]", v) for i, v in enumerate(ema_losses)]
        self._set_bins(edges, ema_losses)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, num_random_subnets={self.num_random_subnets}, "
            f"include_extremes={self.include_extremes}, num_bins={self.num_bins}, pool_size={self.pool_size}, "
            f"ema={self.ema}, beta={self.beta})"
        )


@register_sampler
class TargetedSampler(_UniformDraws, SubnetSampler):
    """The sandwich rule with its random subnets aimed at the MAC shares the subnets will be deployed at.

    Each step trains the largest and the smallest subnet (if `include_extremes`) and `num_random_subnets` random
    subnets; the `i`-th random subnet of step `s` is drawn at the target share `mac_targets[(s * n + i) % T]`
    (`n` random subnets per step, `T` targets), so with as many random subnets as targets every step trains one
    subnet at each target. A subnet is at target `t` when its complexity, as a share of the largest subnet's, lies in
    `[t - tolerance, t]`: just below the target, where a search under that budget picks its subnet. It is found by
    rejection sampling from the space (uniform subnets with probability `uniform_probability`, as in the sandwich
    rule); after `max_attempts` misses the draw of closest share is taken.

    Args:
        search_space (`SearchSpace`): the space the subnets are drawn from.
        seed (`int`, *optional*, defaults to 0): the seed of every random draw, combined with the step.
        mac_targets (`Sequence[float]`, *optional*, defaults to `(0.5, 0.25)`): target shares of the largest subnet's
            complexity, each in (0, 1].
        tolerance (`float`, *optional*, defaults to 0.1): width of the band below each target, in (0, 1].
        num_random_subnets (`int`, *optional*, defaults to 2): targeted subnets per step (>= 1).
        include_extremes (`bool`, *optional*, defaults to `True`): put the largest and the smallest subnet first.
        include_smallest (`bool`, *optional*, defaults to `True`): with `include_extremes`, keep the smallest subnet
            of the space; `False` trains the largest and the targeted subnets only, so no step is spent on subnets far
            below the lowest target.
        uniform_probability (`float`, *optional*, defaults to 0.0): probability that a draw has one head count and FFN
            width in every layer.
        complexity_fn (`Callable[[SubnetConfig], float]`, *optional*): the complexity of a subnet; defaults to the
            per-token MACs of the encoder's linear layers, as for the `shiftnas` sampler (attention scores, which grow
            with the sequence length, are left out: at 128 tokens they add about a twentieth to a 384-wide layer).
        max_attempts (`int`, *optional*, defaults to 1000): draws per subnet before taking the closest one.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.training.samplers import TargetedSampler
    >>> space = SearchSpace(num_hidden_layers=(2, 4), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(32,), attention_head_size=8)
    >>> sampler = TargetedSampler(space, seed=0, mac_targets=(0.5,), tolerance=0.2)
    >>> largest, smallest, *targeted = sampler.sample(step=0)
    >>> largest == space.largest(), smallest == space.smallest()
    (True, True)
    >>> [0.3 <= sampler.share(subnet) <= 0.5 for subnet in targeted]
    [True, True]
    ```
    """

    name = "targeted"

    def __init__(
        self,
        search_space: SearchSpace,
        seed: int = 0,
        *,
        mac_targets: Sequence[float] = (0.5, 0.25),
        tolerance: float = 0.1,
        num_random_subnets: int = 2,
        include_extremes: bool = True,
        include_smallest: bool = True,
        uniform_probability: float = 0.0,
        complexity_fn: Callable[[SubnetConfig], float] | None = None,
        max_attempts: int = 1000,
    ):
        super().__init__(search_space, seed)
        if isinstance(mac_targets, (str, numbers.Real)) or not isinstance(mac_targets, Sequence) or not mac_targets:
            raise ValueError(f"`mac_targets` must be a non-empty list of shares in (0, 1], got {mac_targets!r}.")
        targets = [check_float(f"mac_targets[{i}]", t) for i, t in enumerate(mac_targets)]
        for i, t in enumerate(targets):
            if not 0.0 < t <= 1.0:
                raise ValueError(f"`mac_targets[{i}]` must be a share in (0, 1], got {t}.")
        self.mac_targets = tuple(targets)
        self.tolerance = check_float("tolerance", tolerance)
        if not 0.0 < self.tolerance <= 1.0:
            raise ValueError(f"`tolerance` must be in (0, 1], got {tolerance}.")
        self.num_random_subnets = check_int("num_random_subnets", num_random_subnets, 1)
        if not isinstance(include_extremes, bool):
            raise TypeError(f"`include_extremes` must be a bool, got {include_extremes!r}.")
        if not isinstance(include_smallest, bool):
            raise TypeError(f"`include_smallest` must be a bool, got {include_smallest!r}.")
        if not include_smallest and not include_extremes:
            raise ValueError(
                "`include_smallest=False` drops the smallest subnet from the extremes, but `include_extremes=False` "
                "trains no extremes at all: leave `include_smallest` at True, or set `include_extremes=True`."
            )
        self.include_extremes = include_extremes
        self.include_smallest = include_smallest
        self._init_uniform(uniform_probability)
        self.complexity_fn = _complexity_fn(complexity_fn, search_space)
        self.max_attempts = check_int("max_attempts", max_attempts, 1)
        self._largest = _checked_complexity(self.complexity_fn, search_space.largest())
        if self._largest <= 0:
            raise ValueError(f"The largest subnet's complexity must be > 0 to take shares of it, got {self._largest}.")

    @property
    def largest_first(self) -> bool:
        return self.include_extremes

    def share(self, subnet: SubnetConfig) -> float:
        """The complexity of `subnet` as a share of the largest subnet's."""
        return _checked_complexity(self.complexity_fn, subnet) / self._largest

    def target_of(self, step: int, index: int) -> float:
        """The target share of the `index`-th random subnet of optimizer step `step`."""
        return self.mac_targets[(step * self.num_random_subnets + index) % len(self.mac_targets)]

    def _draw_at(self, rng: random.Random, target: float) -> SubnetConfig:
        low = target - self.tolerance
        return _draw_in_range(lambda: self.draw(rng), self.share, low, target, self.max_attempts, include_high=True)

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        rng = self.generator(step, micro_step)
        space = self.search_space
        subnets = [space.largest()] if self.include_extremes else []
        if self.include_extremes and self.include_smallest:
            subnets.append(space.smallest())
        subnets.extend(self._draw_at(rng, self.target_of(step, i)) for i in range(self.num_random_subnets))
        return subnets

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, mac_targets={list(self.mac_targets)}, "
            f"tolerance={self.tolerance}, num_random_subnets={self.num_random_subnets}, "
            f"include_extremes={self.include_extremes}, include_smallest={self.include_smallest}, "
            f"uniform_probability={self.uniform_probability})"
        )


# ----------------------------------------------------------------------------------------------------------------
# progressive shrinking
STAGE_DIMENSIONS = ("num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size")
_STAGE_ALIASES = {
    "depth": ("num_hidden_layers",),
    "heads": ("num_attention_heads",),
    "ffn": ("intermediate_size",),
    "hidden": ("hidden_size",),
    "width": ("num_attention_heads", "intermediate_size", "hidden_size"),
    **{name: (name,) for name in STAGE_DIMENSIONS},
}


def parse_stages(schedule: str) -> list[tuple[tuple[str, ...], float]]:
    """Parse a stage schedule such as `"width@0.5,depth"` into `[(dimensions, end fraction), ...]`.

    Stages are separated by commas; a stage names dimensions joined by `+` and ends at `@fraction` of training (the
    last stage runs to the end and may omit it). Names: `num_hidden_layers` (`depth`), `num_attention_heads`
    (`heads`), `intermediate_size` (`ffn`), `hidden_size` (`hidden`), and `width` for heads, FFN and hidden size.

    ```python
    >>> from hf_nas.training.samplers import parse_stages
    >>> parse_stages("width@0.5,depth")
    [(('num_attention_heads', 'intermediate_size', 'hidden_size'), 0.5), (('num_hidden_layers',), 1.0)]
    ```
    """
    if not isinstance(schedule, str) or not schedule.strip():
        raise ValueError(f"A stage schedule must be a non-empty string such as 'width@0.5,depth', got {schedule!r}.")
    parts = [p.strip() for p in schedule.split(",")]
    stages: list[tuple[tuple[str, ...], float]] = []
    seen: set[str] = set()
    previous = 0.0
    for i, part in enumerate(parts):
        names, _, fraction = part.partition("@")
        last = i == len(parts) - 1
        dims: list[str] = []
        for name in (n.strip() for n in names.split("+")):
            if name not in _STAGE_ALIASES:
                raise ValueError(
                    f"Unknown dimension {name!r} in stage schedule {schedule!r}; allowed: {list(_STAGE_ALIASES)}."
                )
            dims.extend(d for d in _STAGE_ALIASES[name] if d not in dims)
        repeated = sorted(seen & set(dims))
        if repeated:
            raise ValueError(f"Stage schedule {schedule!r} unlocks {repeated} twice; name each dimension once.")
        seen.update(dims)
        if fraction.strip():
            try:
                end = float(fraction)
            except ValueError:
                raise ValueError(f"Stage {part!r}: {fraction!r} is not a fraction of training.") from None
        elif last:
            end = 1.0
        else:
            raise ValueError(f"Stage {part!r} needs an end fraction ('{names}@0.5'); only the last may omit it.")
        if not previous < end <= 1.0 or (last and end != 1.0):
            raise ValueError(
                f"Stage {part!r} of {schedule!r}: end fractions must increase within (0, 1] and the last stage must "
                f"end at 1, got {end}."
            )
        stages.append((tuple(dims), end))
        previous = end
    return stages


class StagedSampler(SubnetSampler):
    """Progressive shrinking (OFA, DynaBERT's width-then-depth): dimensions become elastic stage by stage.

    The dimensions of the first stage, and those no stage names, are elastic from the start; the dimensions of each
    later stage are held at their largest choice until it begins. Each stage draws from its own narrowed space with
    a sampler built by `make_sampler(space)` (e.g. the sandwich rule), so the smallest subnet of the first stages is
    the narrowest at full depth, and so on.

    Args:
        search_space (`SearchSpace`): the full space.
        stages (`str`): the schedule, parsed by [`parse_stages`].
        max_steps (`int`): the number of optimizer steps of the run (stage boundaries are fractions of it).
        make_sampler (`Callable[[SearchSpace], SubnetSampler]`): builds the sampler of one stage.

    Example:

    ```python
    >>> space = SearchSpace((1, 2), (2, 4), (32, 64), (32,), attention_head_size=8)
    >>> sampler = StagedSampler(space, "width@0.5,depth", 100, lambda s: get_sampler("sandwich", s))
    >>> sampler.stage_of(10), sampler.stage_of(60)
    (0, 1)
    ```
    """

    name = "staged"

    def __init__(
        self,
        search_space: SearchSpace,
        stages: str,
        max_steps: int,
        make_sampler: Callable[[SearchSpace], SubnetSampler],
    ):
        parsed = parse_stages(stages)
        super().__init__(search_space, 0)
        self.max_steps = check_int("max_steps", max_steps, 1)
        self.stages = stages
        locked = [set(dims) for dims, _ in parsed[1:]]
        self._starts: list[int] = []
        self._samplers: list[SubnetSampler] = []
        start = 0
        for i, (_, end) in enumerate(parsed):
            still_locked = set().union(*locked[i:]) if i < len(locked) else set()
            space = search_space.narrow(**{d: [max(getattr(search_space, d))] for d in sorted(still_locked)})
            sampler = make_sampler(space)
            if not isinstance(sampler, SubnetSampler):
                raise TypeError(f"`make_sampler` must return a SubnetSampler, got {type(sampler).__name__}.")
            self._starts.append(start)
            self._samplers.append(sampler)
            start = round(end * self.max_steps)
        self.seed = self._samplers[0].seed
        self._current = 0  # the stage of the last `sample` call, whose losses `update` receives

    def stage_of(self, step: int) -> int:
        """The index of the stage that optimizer step `step` belongs to."""
        return bisect.bisect_right(self._starts, check_int("step", step, 0)) - 1

    def sample(self, step: int, micro_step: int = 0) -> list[SubnetConfig]:
        self._current = self.stage_of(step)
        return self._samplers[self._current].sample(step, micro_step)

    def update(self, subnets: list[SubnetConfig], losses: list[float]) -> None:
        self._samplers[self._current].update(subnets, losses)

    @property
    def largest_first(self) -> bool:
        return all(s.largest_first for s in self._samplers)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stages": [s.state_dict() for s in self._samplers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state(state, ("name", "stages"))
        if not isinstance(state["stages"], list) or len(state["stages"]) != len(self._samplers):
            raise ValueError(
                f"The state holds {len(state['stages'])} stages, this schedule {self.stages!r} has "
                f"{len(self._samplers)}."
            )
        for sampler, inner in zip(self._samplers, state["stages"], strict=True):
            sampler.load_state_dict(inner)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(stages={self.stages!r}, max_steps={self.max_steps}, first={self._samplers[0]!r})"
        )
