"""Random search: uniform random subnets of the search space, the baseline every other strategy should beat."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence

from ...search_space import SearchSpace, SubnetConfig
from .base import ConstraintsFunction, SearchStrategy, register_strategy

__all__ = ["RandomSearch"]


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
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import RandomSearch
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> strategy = RandomSearch(space, ["maximize"], seed=0, constraints=lambda s: [s.num_hidden_layers - 1])
    >>> [strategy.ask().num_hidden_layers for _ in range(3)]
    [1, 1, 1]
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
