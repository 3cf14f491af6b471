"""The interface of search strategies and their registry.

A [`SearchStrategy`] speaks one ask/tell interface: `ask()` proposes a subnet, `tell(subnet, values)` reports its
measured objective values (one per direction). Strategies never touch the network; they see only the search space
(to sample subnets), the objective values they are told and, optionally, a cheap `constraints` function. The base
class checks the arguments of `tell` and keeps the `history` of [`EvaluatedSubnet`]s.

Strategies are found by name in [`STRATEGIES`] (see [`get_strategy`]); add one with the [`register_strategy`]
decorator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ...registry import Registry
from ...search_space import SearchSpace, SubnetConfig
from ...validation import check_floats, check_int
from ..constraints import best_feasible, check_directions, is_feasible

__all__ = [
    "STRATEGIES",
    "ConstraintsFunction",
    "EvaluatedSubnet",
    "SearchStrategy",
    "get_strategy",
    "register_strategy",
]

ConstraintsFunction = Callable[[SubnetConfig], Sequence[float]]


@dataclass(frozen=True)
class EvaluatedSubnet:
    """A subnet told to a strategy, with its objective values and constraint values (empty when unconstrained)."""

    subnet: SubnetConfig
    values: tuple[float, ...]
    constraint_values: tuple[float, ...] = ()

    @property
    def feasible(self) -> bool:
        return is_feasible(self.constraint_values)


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
        self.directions = check_directions(directions)
        self.seed = check_int("seed", seed)
        self.constraints = constraints
        self.max_attempts = check_int("max_attempts", max_attempts, 1)
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
                (see [`~hf_nas.search.constraints.evaluate_constraints`]). Every tell must give the same number of them (`None` counts as none).
        """
        self.search_space.validate(subnet)
        values = check_floats("values", values)
        if len(values) != self.num_objectives:
            raise ValueError(
                f"`values` has {len(values)} entries but the strategy has {self.num_objectives} objectives "
                f"(directions {list(self.directions)}): give one value per objective."
            )
        constraint_values = () if constraint_values is None else check_floats("constraint_values", constraint_values)
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
        """The best feasible evaluated subnet for one objective, or `None` (see
        [`~hf_nas.search.constraints.best_feasible`])."""
        check_int("objective_index", objective_index, 0)
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
        return is_feasible(check_floats("constraints(subnet)", self.constraints(subnet)))

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
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import SearchStrategy, get_strategy, register_strategy
    >>> @register_strategy
    ... class LargestFirst(SearchStrategy):
    ...     name = "largest-first"
    ...     def ask(self):
    ...         return self.search_space.largest()
    ...     def _tell(self, subnet, values, constraint_values):
    ...         pass
    ...     def _enqueue(self, subnet):
    ...         raise NotImplementedError
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> get_strategy("largest-first", space, ["maximize"]).ask() == space.largest()
    True
    ```
    """
    return STRATEGIES.register(cls)


def get_strategy(
    name: str, search_space: SearchSpace, directions: Sequence[str], seed: int = 0, **kwargs: Any
) -> SearchStrategy:
    """Build the strategy registered as `name` with its options `kwargs`.

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import get_strategy
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> get_strategy("nsga2", space, ["maximize", "minimize"], seed=1, population_size=16)
    NSGA2Search(name='nsga2', directions=['maximize', 'minimize'], seed=1, constrained=False)
    ```

    Raises:
        ValueError: for an unknown name (the message lists the registered ones) or an option value out of range.
        TypeError: for an option the strategy does not take, or of the wrong type.
    """
    cls = STRATEGIES.lookup(name, kwargs)
    return cls(search_space, directions, seed=seed, **kwargs)
