"""NSGA-II: multi-objective evolutionary search (as in InstaTune and LINAS) with optuna's maintained
`NSGAIISampler`."""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ...search_space import SearchSpace, SubnetConfig
from ...validation import check_int
from .base import ConstraintsFunction, SearchStrategy, register_strategy

__all__ = ["NSGA2Search", "quiet_optuna"]


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence optuna's INFO logs ("A new study created in memory ...") for the duration of the block, then restore
    the caller's verbosity (optuna's verbosity is process-global: not thread-safe). Nested blocks change nothing,
    so a caller that asks many times (a screening round) wraps them all in one block: setting a logging level
    walks every logger of the process."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    if verbosity >= optuna.logging.WARNING:
        yield
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


_CONSTRAINT_ATTR = "hf_nas:constraint_values"


def _user_attr_constraints(trial: Any) -> Sequence[float]:
    """`constraints_func` for optuna < 5 (which has no `Trial.set_constraint`): the values stored by `tell`."""
    return tuple(trial.user_attrs.get(_CONSTRAINT_ATTR, ()))


def _check_probabilities(mutation_prob: Any, crossover_prob: Any) -> None:
    """Raise unless `mutation_prob` is `None` or a probability and `crossover_prob` is a probability."""
    for name, prob in (("mutation_prob", mutation_prob), ("crossover_prob", crossover_prob)):
        if prob is not None and (isinstance(prob, bool) or not isinstance(prob, numbers.Real)):
            raise TypeError(f"`{name}` must be a number, got {prob!r} of type {type(prob).__name__}.")
        if prob is not None and not 0.0 <= prob <= 1.0:
            raise ValueError(f"`{name}` must be a probability in [0, 1], got {prob}.")
    if crossover_prob is None:
        raise TypeError("`crossover_prob` must be a number in [0, 1], got None.")


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
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import NSGA2Search
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> def accuracy(subnet):  # stand-ins for measured objectives
    ...     return subnet.hidden_size / 32 - 0.1 / subnet.num_hidden_layers
    >>> def macs(subnet):
    ...     return subnet.hidden_size * sum(subnet.intermediate_size)
    >>> strategy = NSGA2Search(space, ["maximize", "minimize"], seed=0, population_size=8)
    >>> for _ in range(16):  # two generations
    ...     subnet = strategy.ask()
    ...     strategy.tell(subnet, [accuracy(subnet), macs(subnet)])
    >>> len(strategy.history), strategy.best_feasible(0).subnet in space
    (16, True)
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

        self.population_size = check_int("population_size", population_size, 2)
        _check_probabilities(mutation_prob, crossover_prob)
        self._max_depth = max(search_space.num_hidden_layers)
        self._distributions = self._genome_distributions()
        # optuna >= 5 reads constraints set on the trial; older versions need `constraints_func`.
        self._set_constraint = hasattr(optuna.trial.Trial, "set_constraint")
        sampler = self._sampler(mutation_prob, crossover_prob)
        with quiet_optuna():
            self.study = optuna.create_study(directions=list(self.directions), sampler=sampler)
        self._pending: dict[SubnetConfig, deque[Any]] = {}

    def _genome_distributions(self) -> dict[str, Any]:
        """One categorical optuna distribution per gene: depth, hidden size, then heads and FFN size of every layer."""
        from optuna.distributions import CategoricalDistribution

        space = self.search_space
        distributions = {
            "num_hidden_layers": CategoricalDistribution(space.num_hidden_layers),
            "hidden_size": CategoricalDistribution(space.hidden_size),
        }
        for i in range(self._max_depth):
            distributions[f"num_attention_heads_{i}"] = CategoricalDistribution(space.num_attention_heads)
            distributions[f"intermediate_size_{i}"] = CategoricalDistribution(space.intermediate_size)
        return distributions

    def _sampler(self, mutation_prob: float | None, crossover_prob: float) -> Any:
        """optuna's `NSGAIISampler` with the strategy's population, probabilities and seed."""
        import optuna

        with warnings.catch_warnings():
            # optuna 4 flags `constraints_func` as experimental; it is the documented way there
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.NSGAIISampler(
                population_size=self.population_size,
                mutation_prob=None if mutation_prob is None else float(mutation_prob),
                crossover_prob=float(crossover_prob),
                seed=self.seed,
                constraints_func=None if self._set_constraint else _user_attr_constraints,
            )

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

        with quiet_optuna():
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
        with quiet_optuna():
            self.study.tell(trial, list(values))

    def _enqueue(self, subnet: SubnetConfig) -> None:
        with quiet_optuna():
            self.study.enqueue_trial(self.encode(subnet))

    @property
    def num_pending(self) -> int:
        """How many asked subnets wait for `tell`."""
        return sum(len(q) for q in self._pending.values())
