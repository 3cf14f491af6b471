"""Search strategies: which subnets to evaluate next during search.

A [`SearchStrategy`] speaks one ask/tell interface: `ask()` proposes a subnet, `tell(subnet, values)` reports its
measured objective values (one per direction). Strategies never touch the network; they see only the search space
(to sample subnets), the objective values they are told and, optionally, a cheap `constraints` function.

Strategies are found by name in [`STRATEGIES`] (see [`get_strategy`]); add one with the [`register_strategy`]
decorator.

- `"random"` ([`RandomSearch`]): uniform random subnets from a seeded `random.Random`.
- `"nsga2"` ([`NSGA2Search`]): multi-objective evolutionary search (NSGA-II, as in InstaTune and LINAS) with optuna's
  maintained `NSGAIISampler`.

Constrained search ("the most accurate subnet with latency <= 10 ms") works two ways, with any strategy:

- a cheap `constraints` function (for example of the MACs) given to the strategy is evaluated at ask time, and a
  subnet that violates it is never proposed;
- measured constraint values passed to `tell` (`constraint_values`, one number per constraint, <= 0 meaning
  feasible) steer strategies that learn (NSGA-II prefers feasible subnets by constrained domination).

[`Constraint`] states a bound on an objective, [`parse_constraints`] reads them from text (`"macs<=5e8,accuracy>=0.8"`),
[`check_constraints`] rejects empty or contradictory lists and [`best_feasible`] picks the best feasible evaluated
subnet.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import random
import re
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..registry import Registry
from ..search_space import SearchSpace, SubnetConfig

__all__ = [
    "DIRECTIONS",
    "STRATEGIES",
    "Constraint",
    "EvaluatedSubnet",
    "NSGA2Search",
    "RandomSearch",
    "SearchStrategy",
    "best_feasible",
    "check_constraints",
    "evaluate_constraints",
    "get_strategy",
    "parse_constraints",
    "register_strategy",
]

DIRECTIONS = ("maximize", "minimize")

ConstraintsFunction = Callable[[SubnetConfig], Sequence[float]]


# ----------------------------------------------------------------------------------------------------------------
# argument checks
def _check_int(field: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{field}` must be an int, got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{field}` must be an int >= {minimum}, got {value}.")
    return value


def _check_floats(field: str, values: Any) -> tuple[float, ...]:
    """A sequence of finite real numbers (numpy scalars and one-element tensors accepted) as a tuple of floats."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"`{field}` must be a sequence of numbers, got {values!r} of type {type(values).__name__}.")
    floats = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
            raise TypeError(f"`{field}[{i}]` must be a number, got {value!r} of type {type(value).__name__}.")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"`{field}[{i}]` must be finite, got {value}.")
        floats.append(value)
    return tuple(floats)


def _check_directions(directions: Any) -> tuple[str, ...]:
    if isinstance(directions, (str, bytes)) or not isinstance(directions, Sequence):
        raise TypeError(
            f"`directions` must be a sequence with one of {list(DIRECTIONS)} per objective, e.g. "
            f"['maximize', 'minimize'], got {directions!r}."
        )
    if not directions:
        raise ValueError(f"`directions` needs at least one objective direction; allowed: {list(DIRECTIONS)}.")
    for i, direction in enumerate(directions):
        if direction not in DIRECTIONS:
            raise ValueError(f"`directions[{i}]`={direction!r} is not a direction; allowed: {list(DIRECTIONS)}.")
    return tuple(directions)


# ----------------------------------------------------------------------------------------------------------------
# constraints
@dataclass(frozen=True)
class Constraint:
    """A bound on one objective: feasible subnets have `min_value <= value <= max_value` (either bound optional).

    Args:
        objective (`str`): the name of the constrained objective (for example `"latency"` or `"macs"`).
        max_value (`float`, *optional*): the largest feasible value.
        min_value (`float`, *optional*): the smallest feasible value.

    Example:

    ```python
    >>> from hf_nas.search.strategies import Constraint
    >>> latency = Constraint("latency", max_value=10.0)
    >>> latency.violation(12.5), latency.violation(8.0)
    (2.5, -2.0)
    ```
    """

    objective: str = field(metadata={"help": "Name of the constrained objective."})
    max_value: float | None = field(default=None, metadata={"help": "Largest feasible value (inclusive)."})
    min_value: float | None = field(default=None, metadata={"help": "Smallest feasible value (inclusive)."})

    def __post_init__(self):
        if not isinstance(self.objective, str) or not self.objective:
            raise TypeError(f"`objective` must be a non-empty str, got {self.objective!r}.")
        if self.max_value is None and self.min_value is None:
            raise ValueError(f"Constraint on {self.objective!r} needs `max_value`, `min_value` or both; got neither.")
        for name in ("max_value", "min_value"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"`{name}` of the {self.objective!r} constraint must be a number, got {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` of the {self.objective!r} constraint must be finite, got {value}.")
            object.__setattr__(self, name, float(value))
        if self.max_value is not None and self.min_value is not None and self.min_value > self.max_value:
            raise ValueError(
                f"Contradictory constraint on {self.objective!r}: min_value={self.min_value} > "
                f"max_value={self.max_value}; no value can satisfy it."
            )

    def violation(self, value: float) -> float:
        """The constraint value of a measured objective value: <= 0 when feasible (minus the slack), > 0 by how much
        it is violated."""
        value = _check_floats("value", [value])[0]
        worst = -math.inf
        if self.max_value is not None:
            worst = max(worst, value - self.max_value)
        if self.min_value is not None:
            worst = max(worst, self.min_value - value)
        return worst

    def is_satisfied(self, value: float) -> bool:
        return self.violation(value) <= 0

    def __str__(self) -> str:
        """The text [`parse_constraints`] reads back: `"macs<=5e+08"`, `"accuracy>=0.8"` or both bounds."""
        bounds = [(">=", self.min_value), ("<=", self.max_value)]
        return ",".join(f"{self.objective}{op}{_format_bound(value)}" for op, value in bounds if value is not None)


def check_constraints(constraints: Sequence[Constraint]) -> None:
    """Raise `ValueError` if `constraints` is empty or contradictory.

    Contradictory means: two constraints on the same objective with different `max_value`s (or different
    `min_value`s), or a combined `min_value` above the combined `max_value` of one objective. Constraints that repeat
    the same bound, or that give the lower and the upper bound of one objective separately, are fine.

    ```python
    >>> check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", min_value=2.0)])
    >>> check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", max_value=5.0)])
    Traceback (most recent call last):
    ...
    ValueError: Contradictory constraints on 'latency': max_value 10.0 and 5.0; give one bound per objective.
    ```
    """
    if isinstance(constraints, Constraint) or not isinstance(constraints, Sequence):
        raise TypeError(f"`constraints` must be a sequence of Constraint, got {type(constraints).__name__}.")
    if not constraints:
        raise ValueError("`constraints` is empty: give at least one Constraint(objective, max_value=...).")
    bounds: dict[str, dict[str, float]] = {}
    for i, constraint in enumerate(constraints):
        if not isinstance(constraint, Constraint):
            raise TypeError(f"`constraints[{i}]` must be a Constraint, got {type(constraint).__name__}.")
        known = bounds.setdefault(constraint.objective, {})
        for name in ("max_value", "min_value"):
            value = getattr(constraint, name)
            if value is None:
                continue
            if name in known and known[name] != value:
                raise ValueError(
                    f"Contradictory constraints on {constraint.objective!r}: {name} {known[name]} and {value}; "
                    "give one bound per objective."
                )
            known[name] = value
        if known.get("min_value", -math.inf) > known.get("max_value", math.inf):
            raise ValueError(
                f"Contradictory constraints on {constraint.objective!r}: min_value={known['min_value']} > "
                f"max_value={known['max_value']}; no value can satisfy both."
            )


_CONSTRAINT_TEXT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=)\s*(\S+)\s*$")


def _format_bound(value: float) -> str:
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def parse_constraints(text: str) -> list[Constraint]:
    """Constraints from text: `"NAME<=VALUE"` (a `max_value`) or `"NAME>=VALUE"` (a `min_value`), comma-separated
    for several. Objective names are not checked here: that is for whoever knows the objectives.

    ```python
    >>> [(c.objective, c.max_value, c.min_value) for c in parse_constraints("macs<=5e8, accuracy>=0.8")]
    [('macs', 500000000.0, None), ('accuracy', None, 0.8)]
    ```
    """
    if not isinstance(text, str):
        raise TypeError(
            f"Constraints must be given as a str like 'macs<=5e8', got {text!r} of type {type(text).__name__}."
        )
    constraints = []
    for part in text.split(","):
        match = _CONSTRAINT_TEXT.match(part)
        value = None
        if match is not None:
            with contextlib.suppress(ValueError):
                value = float(match.group(3))
        if value is None or not math.isfinite(value):
            raise ValueError(
                f"Cannot parse the constraint {part.strip()!r} of {text!r}: expected NAME<=VALUE or NAME>=VALUE with "
                "a finite number, comma-separated for several, e.g. 'macs<=5e8,accuracy>=0.8'."
            )
        name, op = match.group(1), match.group(2)
        constraints.append(Constraint(name, max_value=value) if op == "<=" else Constraint(name, min_value=value))
    return constraints


def evaluate_constraints(constraints: Sequence[Constraint], values: Mapping[str, float]) -> list[float]:
    """The constraint values (<= 0 feasible) of measured objective `values` (name -> value), in the order of
    `constraints`: what [`SearchStrategy.tell`] takes as `constraint_values`.

    ```python
    >>> evaluate_constraints([Constraint("macs", max_value=1e9)], {"accuracy": 0.9, "macs": 2e9})
    [1000000000.0]
    ```
    """
    missing = sorted({c.objective for c in constraints} - set(values))
    if missing:
        raise ValueError(f"No value for the constrained objective(s) {missing}; measured: {sorted(values)}.")
    return [c.violation(values[c.objective]) for c in constraints]


def _is_feasible(constraint_values: Sequence[float] | None) -> bool:
    return constraint_values is None or all(v <= 0 for v in constraint_values)


def best_feasible(
    records: Sequence[Sequence[float]],
    objective_index: int,
    direction: str,
    constraint_values: Sequence[Sequence[float] | None] | None = None,
) -> int | None:
    """Index of the best record for one objective among the feasible records, or `None` if none is feasible.

    Args:
        records (`Sequence[Sequence[float]]`): the objective values of each evaluated subnet.
        objective_index (`int`): which objective to optimize.
        direction (`str`): `"maximize"` or `"minimize"`.
        constraint_values (`Sequence[Sequence[float] | None]`, *optional*): the constraint values of each record
            (<= 0 feasible; `None` for a record without constraints). All records are feasible when omitted.

    Ties go to the earliest record.

    ```python
    >>> best_feasible([[0.9, 12.0], [0.8, 6.0], [0.7, 4.0]], 0, "maximize", [[2.0], [-4.0], [-6.0]])
    1
    ```
    """
    _check_int("objective_index", objective_index, 0)
    _check_directions([direction])
    if constraint_values is not None and len(constraint_values) != len(records):
        raise ValueError(
            f"`constraint_values` has {len(constraint_values)} entries but there are {len(records)} records: "
            "give one entry (or None) per record."
        )
    best, best_value = None, None
    for i, values in enumerate(records):
        if objective_index >= len(values):
            raise ValueError(
                f"`objective_index`={objective_index} is out of range for record {i} with {len(values)} values; "
                f"allowed: 0 to {len(values) - 1}."
            )
        if constraint_values is not None and not _is_feasible(constraint_values[i]):
            continue
        value = float(values[objective_index])
        if math.isnan(value):
            continue
        if best is None or (value > best_value if direction == "maximize" else value < best_value):
            best, best_value = i, value
    return best


@dataclass(frozen=True)
class EvaluatedSubnet:
    """A subnet told to a strategy, with its objective values and constraint values (empty when unconstrained)."""

    subnet: SubnetConfig
    values: tuple[float, ...]
    constraint_values: tuple[float, ...] = ()

    @property
    def feasible(self) -> bool:
        return _is_feasible(self.constraint_values)


# ----------------------------------------------------------------------------------------------------------------
# the interface
class SearchStrategy(ABC):
    """Proposes subnets to evaluate (`ask`) and learns from their measured objective values (`tell`).

    Subclasses set the class attribute `name` (the key in [`STRATEGIES`]), take their options as keyword arguments
    after `seed` and implement `ask` and `_tell`; the base class checks the arguments of `tell` and keeps the
    `history` of evaluated subnets.

    Args:
        search_space (`SearchSpace`): the space the subnets come from; every proposed subnet is in it.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"`, one per objective, in the order of the values
            given to `tell`.
        seed (`int`, *optional*, defaults to 0): the seed of every random choice; two strategies with the same seed
            ask the same subnets when told the same values.
        constraints (`Callable[[SubnetConfig], Sequence[float]]`, *optional*): a cheap function of a subnet (for
            example its MACs minus a budget) returning constraint values, <= 0 meaning feasible. A subnet that
            violates it is never proposed.
        max_attempts (`int`, *optional*, defaults to 1000): how many candidates `ask` may reject for violating
            `constraints` before it gives up with a `ValueError`.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import get_strategy
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> strategy = get_strategy("random", space, ["maximize", "minimize"], seed=0)
    >>> subnet = strategy.ask()
    >>> strategy.tell(subnet, [0.91, 1.2e6])
    >>> len(strategy.history), subnet in space
    (1, True)
    ```
    """

    name: ClassVar[str]

    def __init__(
        self,
        search_space: SearchSpace,
        directions: Sequence[str],
        seed: int = 0,
        constraints: ConstraintsFunction | None = None,
        max_attempts: int = 1000,
    ):
        if not isinstance(search_space, SearchSpace):
            raise TypeError(f"`search_space` must be a SearchSpace, got {type(search_space).__name__}.")
        if constraints is not None and not callable(constraints):
            raise TypeError(
                f"`constraints` must be a function of a SubnetConfig returning constraint values, got {constraints!r}."
            )
        self.search_space = search_space
        self.directions = _check_directions(directions)
        self.seed = _check_int("seed", seed)
        self.constraints = constraints
        self.max_attempts = _check_int("max_attempts", max_attempts, 1)
        self.history: list[EvaluatedSubnet] = []
        self._num_constraints: int | None = None  # fixed by the first tell

    @property
    def num_objectives(self) -> int:
        return len(self.directions)

    @abstractmethod
    def ask(self) -> SubnetConfig:
        """The next subnet to evaluate: in the search space and, if the strategy has `constraints`, feasible."""

    def tell(
        self, subnet: SubnetConfig, values: Sequence[float], constraint_values: Sequence[float] | None = None
    ) -> None:
        """Report the measured objective values of a subnet (one per direction, in order).

        Args:
            subnet (`SubnetConfig`): a subnet returned by `ask`.
            values (`Sequence[float]`): its objective values, finite, one per direction.
            constraint_values (`Sequence[float]`, *optional*): its measured constraint values, <= 0 meaning feasible
                (see [`evaluate_constraints`]). Every tell must give the same number of them (`None` counts as none).
        """
        self.search_space.validate(subnet)
        values = _check_floats("values", values)
        if len(values) != self.num_objectives:
            raise ValueError(
                f"`values` has {len(values)} entries but the strategy has {self.num_objectives} objectives "
                f"(directions {list(self.directions)}): give one value per objective."
            )
        constraint_values = () if constraint_values is None else _check_floats("constraint_values", constraint_values)
        if self._num_constraints is not None and len(constraint_values) != self._num_constraints:
            raise ValueError(
                f"`constraint_values` has {len(constraint_values)} entries but earlier tells gave "
                f"{self._num_constraints}: give the same constraints for every subnet."
            )
        self._tell(subnet, values, constraint_values)
        self._num_constraints = len(constraint_values)
        self.history.append(EvaluatedSubnet(subnet, values, constraint_values))

    @abstractmethod
    def _tell(self, subnet: SubnetConfig, values: tuple[float, ...], constraint_values: tuple[float, ...]) -> None:
        """Learn from checked arguments (raise `ValueError` before changing any state if `subnet` is not expected)."""

    def enqueue(self, subnet: SubnetConfig) -> None:
        """Ask `subnet` before any new proposal (to seed the search with known good points). Queued subnets are asked
        first-in first-out."""
        self._check_proposal(subnet)
        self._enqueue(subnet)

    @abstractmethod
    def _enqueue(self, subnet: SubnetConfig) -> None: ...

    def best_feasible(self, objective_index: int = 0) -> EvaluatedSubnet | None:
        """The best feasible evaluated subnet for one objective (see [`best_feasible`]), or `None`."""
        _check_int("objective_index", objective_index, 0)
        if objective_index >= self.num_objectives:
            raise ValueError(
                f"`objective_index`={objective_index} is out of range; allowed: 0 to {self.num_objectives - 1} "
                f"(directions {list(self.directions)})."
            )
        index = best_feasible(
            [r.values for r in self.history],
            objective_index,
            self.directions[objective_index],
            [r.constraint_values for r in self.history],
        )
        return None if index is None else self.history[index]

    # helpers for subclasses
    def _is_feasible(self, subnet: SubnetConfig) -> bool:
        if self.constraints is None:
            return True
        return _is_feasible(_check_floats("constraints(subnet)", self.constraints(subnet)))

    def _check_proposal(self, subnet: SubnetConfig) -> None:
        self.search_space.validate(subnet)
        if not self._is_feasible(subnet):
            raise ValueError(f"{subnet} violates the strategy's `constraints`: it would never be proposed.")

    def _unsatisfiable(self) -> ValueError:
        return ValueError(
            f"{type(self).__name__} found no subnet satisfying `constraints` in {self.max_attempts} attempts: the "
            "constraint seems unsatisfiable in this search space (check the bound, or narrow the space around "
            "feasible subnets, or raise `max_attempts`)."
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, directions={list(self.directions)}, seed={self.seed}, "
            f"constrained={self.constraints is not None})"
        )


STRATEGIES: Registry = Registry("strategy", SearchStrategy, ("search_space", "directions", "seed"))


def register_strategy(cls: type[SearchStrategy]) -> type[SearchStrategy]:
    """Class decorator adding a [`SearchStrategy`] subclass to [`STRATEGIES`] under its `name`.

    ```python
    >>> @register_strategy  # doctest: +SKIP
    ... class LargestFirst(SearchStrategy):
    ...     name = "largest-first"
    ...     def ask(self):
    ...         return self.search_space.largest()
    ...     def _tell(self, subnet, values, constraint_values):
    ...         pass
    ...     def _enqueue(self, subnet):
    ...         raise NotImplementedError
    ```
    """
    return STRATEGIES.register(cls)


def get_strategy(
    name: str, search_space: SearchSpace, directions: Sequence[str], seed: int = 0, **kwargs: Any
) -> SearchStrategy:
    """Build the strategy registered as `name` with its options `kwargs`.

    ```python
    >>> strategy = get_strategy("nsga2", space, ["maximize", "minimize"], seed=1, population_size=16)  # doctest: +SKIP
    ```

    Raises:
        ValueError: for an unknown name (the message lists the registered ones) or an option value out of range.
        TypeError: for an option the strategy does not take, or of the wrong type.
    """
    cls = STRATEGIES.lookup(name, kwargs)
    return cls(search_space, directions, seed=seed, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# strategies
@register_strategy
class RandomSearch(SearchStrategy):
    """Uniform random subnets (`SearchSpace.sample`) from a `random.Random(seed)`; `tell` only records.

    With `constraints`, infeasible samples are rejected and redrawn (up to `max_attempts` per `ask`). `tell` accepts
    any subnet of the space, asked or not.

    Args:
        search_space (`SearchSpace`): the space the subnets are drawn from.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"`, one per objective.
        seed (`int`, *optional*, defaults to 0): seeds the generator.
        constraints (`Callable[[SubnetConfig], Sequence[float]]`, *optional*): cheap constraint values of a subnet
            (<= 0 feasible); infeasible subnets are never proposed.
        max_attempts (`int`, *optional*, defaults to 1000): rejected draws per `ask` before a `ValueError`.

    Example:

    ```python
    >>> strategy = RandomSearch(space, ["maximize"], seed=0, constraints=lambda s: [s.num_hidden_layers - 1])  # doctest: +SKIP
    >>> strategy.ask().num_hidden_layers  # doctest: +SKIP
    1
    ```
    """

    name = "random"

    def __init__(
        self,
        search_space: SearchSpace,
        directions: Sequence[str],
        seed: int = 0,
        constraints: ConstraintsFunction | None = None,
        max_attempts: int = 1000,
    ):
        super().__init__(search_space, directions, seed=seed, constraints=constraints, max_attempts=max_attempts)
        self._rng = random.Random(self.seed)
        self._queue: deque[SubnetConfig] = deque()

    def ask(self) -> SubnetConfig:
        if self._queue:
            return self._queue.popleft()
        for _ in range(self.max_attempts):
            subnet = self.search_space.sample(generator=self._rng)
            if self._is_feasible(subnet):
                return subnet
        raise self._unsatisfiable()

    def _tell(self, subnet: SubnetConfig, values: tuple[float, ...], constraint_values: tuple[float, ...]) -> None:
        pass  # random search does not learn; the base class records the history

    def _enqueue(self, subnet: SubnetConfig) -> None:
        self._queue.append(subnet)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence optuna's INFO logs ("A new study created in memory ...") for the duration of the block, then restore
    the caller's verbosity (optuna's verbosity is process-global: not thread-safe)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    if verbosity < optuna.logging.WARNING:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


_CONSTRAINT_ATTR = "hf_nas:constraint_values"


def _user_attr_constraints(trial: Any) -> Sequence[float]:
    """`constraints_func` for optuna < 5 (which has no `Trial.set_constraint`): the values stored by `tell`."""
    return tuple(trial.user_attrs.get(_CONSTRAINT_ATTR, ()))


@register_strategy
class NSGA2Search(SearchStrategy):
    """Multi-objective evolutionary search (NSGA-II) with optuna's `NSGAIISampler`, as in InstaTune and LINAS.

    The genome of a subnet is a fixed-length list of categorical genes: `num_hidden_layers`, `hidden_size` and, for
    every layer `i` of the deepest subnet, `num_attention_heads_{i}` and `intermediate_size_{i}`; a subnet uses only
    the genes of its first `num_hidden_layers` layers (gene `i` sizes the `i`-th layer the subnet keeps, whichever
    supernet layer the space's `layer_rule` picks for its depth) (the others ride along, so crossover between subnets of
    different depths is well defined). Several genomes can decode to the same subnet, so `ask` may propose a subnet
    again; `tell` reports to the oldest pending proposal of that subnet.

    Measured constraint values given to `tell` are set on the optuna trial (`Trial.set_constraint`), and NSGA-II
    then ranks feasible subnets above infeasible ones (constrained domination). A subnet violating the cheap
    `constraints` function is rejected at ask time: its trial is closed as failed (NSGA-II ignores it) and a new one
    is asked.

    The optuna study lives in memory, in `self.study`. Optuna's INFO logging is silenced while the strategy calls
    optuna and restored afterwards.

    Args:
        search_space (`SearchSpace`): the space the subnets come from.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"`, one per objective.
        seed (`int`, *optional*, defaults to 0): seeds the sampler.
        constraints (`Callable[[SubnetConfig], Sequence[float]]`, *optional*): cheap constraint values of a subnet
            (<= 0 feasible); infeasible subnets are never proposed.
        max_attempts (`int`, *optional*, defaults to 1000): rejected proposals per `ask` before a `ValueError`.
        population_size (`int`, *optional*, defaults to 20): subnets per generation (>= 2).
        mutation_prob (`float`, *optional*): probability of resampling each gene of a child; optuna's default
            (1 / number of genes) when `None`.
        crossover_prob (`float`, *optional*, defaults to 0.9): probability that a child is a crossover of two
            parents rather than a copy of one.

    Example:

    ```python
    >>> strategy = NSGA2Search(space, ["maximize", "minimize"], seed=0, population_size=8)  # doctest: +SKIP
    >>> subnet = strategy.ask()  # doctest: +SKIP
    >>> strategy.tell(subnet, [accuracy(subnet), macs(subnet)])  # doctest: +SKIP
    ```
    """

    name = "nsga2"

    def __init__(
        self,
        search_space: SearchSpace,
        directions: Sequence[str],
        seed: int = 0,
        constraints: ConstraintsFunction | None = None,
        max_attempts: int = 1000,
        population_size: int = 20,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
    ):
        super().__init__(search_space, directions, seed=seed, constraints=constraints, max_attempts=max_attempts)
        import optuna
        from optuna.distributions import CategoricalDistribution

        self.population_size = _check_int("population_size", population_size, 2)
        for name, prob in (("mutation_prob", mutation_prob), ("crossover_prob", crossover_prob)):
            if prob is not None and (isinstance(prob, bool) or not isinstance(prob, numbers.Real)):
                raise TypeError(f"`{name}` must be a number, got {prob!r} of type {type(prob).__name__}.")
            if prob is not None and not 0.0 <= prob <= 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1], got {prob}.")
        if crossover_prob is None:
            raise TypeError("`crossover_prob` must be a number in [0, 1], got None.")
        self._max_depth = max(search_space.num_hidden_layers)
        self._distributions = {
            "num_hidden_layers": CategoricalDistribution(search_space.num_hidden_layers),
            "hidden_size": CategoricalDistribution(search_space.hidden_size),
        }
        for i in range(self._max_depth):
            self._distributions[f"num_attention_heads_{i}"] = CategoricalDistribution(search_space.num_attention_heads)
            self._distributions[f"intermediate_size_{i}"] = CategoricalDistribution(search_space.intermediate_size)
        # optuna >= 5 reads constraints set on the trial; older versions need `constraints_func`.
        self._set_constraint = hasattr(optuna.trial.Trial, "set_constraint")
        with warnings.catch_warnings():
            # optuna 4 flags `constraints_func` as experimental; it is the documented way there
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.NSGAIISampler(
                population_size=self.population_size,
                mutation_prob=None if mutation_prob is None else float(mutation_prob),
                crossover_prob=float(crossover_prob),
                seed=self.seed,
                constraints_func=None if self._set_constraint else _user_attr_constraints,
            )
        with _quiet_optuna():
            self.study = optuna.create_study(directions=list(self.directions), sampler=sampler)
        self._pending: dict[SubnetConfig, deque[Any]] = {}

    def decode(self, params: Mapping[str, Any]) -> SubnetConfig:
        """The subnet of a genome (optuna trial params); it keeps the layers the space holds for its depth."""
        depth = params["num_hidden_layers"]
        return self.search_space.subnet(
            depth,
            tuple(params[f"num_attention_heads_{i}"] for i in range(depth)),
            tuple(params[f"intermediate_size_{i}"] for i in range(depth)),
            params["hidden_size"],
        )

    def encode(self, subnet: SubnetConfig) -> dict[str, Any]:
        """A genome of `subnet`: the genes of the layers beyond its depth repeat its last layer."""
        self.search_space.validate(subnet)
        params: dict[str, Any] = {"num_hidden_layers": subnet.num_hidden_layers, "hidden_size": subnet.hidden_size}
        for i in range(self._max_depth):
            j = min(i, subnet.num_hidden_layers - 1)
            params[f"num_attention_heads_{i}"] = subnet.num_attention_heads[j]
            params[f"intermediate_size_{i}"] = subnet.intermediate_size[j]
        return params

    def ask(self) -> SubnetConfig:
        from optuna.trial import TrialState

        with _quiet_optuna():
            for _ in range(self.max_attempts):
                trial = self.study.ask(self._distributions)
                subnet = self.decode(trial.params)
                if self._is_feasible(subnet):
                    self._pending.setdefault(subnet, deque()).append(trial)
                    return subnet
                self.study.tell(trial, state=TrialState.FAIL)
        raise self._unsatisfiable()

    def _tell(self, subnet: SubnetConfig, values: tuple[float, ...], constraint_values: tuple[float, ...]) -> None:
        queue = self._pending.get(subnet)
        if not queue:
            raise ValueError(
                f"{subnet} is not waiting for values: `tell` takes subnets returned by `ask` (each once). To add a "
                "known subnet, `enqueue` it, `ask`, then `tell`."
            )
        trial = queue.popleft()
        if not queue:
            del self._pending[subnet]
        if self._set_constraint:
            for i, value in enumerate(constraint_values):
                trial.set_constraint(f"constraint_{i}", value)
        else:
            trial.set_user_attr(_CONSTRAINT_ATTR, list(constraint_values))
        with _quiet_optuna():
            self.study.tell(trial, list(values))

    def _enqueue(self, subnet: SubnetConfig) -> None:
        with _quiet_optuna():
            self.study.enqueue_trial(self.encode(subnet))

    @property
    def num_pending(self) -> int:
        """How many asked subnets wait for `tell`."""
        return sum(len(q) for q in self._pending.values())
