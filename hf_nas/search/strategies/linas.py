"""LINAS-style predictor screening: fit a predictor per expensive objective on the subnets measured so far, let an
inner strategy (NSGA-II by default) run many generations on predicted values, and spend real evaluations only on
the predicted Pareto front.

[`screen_candidates`] is one screening round (also what `SubnetSearch(use_predictors=True)` runs);
[`LinasSearch`] is the loop behind the ask/tell interface, so it is compared with the other strategies at the same
number of real evaluations.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ...search_space import SearchSpace, SubnetConfig
from ...validation import check_int
from ..pareto import pareto_front
from ..predictors import ENCODINGS, PREDICTOR_MODELS, Predictor
from .base import STRATEGIES, ConstraintsFunction, EvaluatedSubnet, SearchStrategy, get_strategy, register_strategy
from .nsga2 import quiet_optuna

__all__ = ["LinasSearch", "choose_from_front", "screen_candidates"]

ExactObjectives = Mapping[int, Callable[[SubnetConfig], float]]


def _key(subnet: SubnetConfig) -> str:
    return json.dumps(subnet.to_dict(), sort_keys=True)


def choose_from_front(
    candidates: Sequence[tuple[SubnetConfig, Sequence[float]]], directions: Sequence[str], count: int
) -> list[tuple[SubnetConfig, Sequence[float]]]:
    """Up to `count` candidates from their (predicted) Pareto front, then from the next fronts; a front larger than
    what is left to choose is thinned to points evenly spread along the first objective.

    ```python
    >>> from hf_nas import SubnetConfig
    >>> from hf_nas.search.strategies.linas import choose_from_front
    >>> candidates = [(SubnetConfig.uniform(1, h, 32, 16), v) for h, v in ((1, (0.7, 5)), (2, (0.6, 6)), (3, (0.9, 9)))]
    >>> [s.num_attention_heads[0] for s, _ in choose_from_front(candidates, ["maximize", "minimize"], 2)]
    [1, 3]
    ```
    """
    pool = list(candidates)
    chosen: list[tuple[SubnetConfig, Sequence[float]]] = []
    while pool and len(chosen) < count:
        values = [list(v) for _, v in pool]
        front = pareto_front(values, directions)
        need = count - len(chosen)
        if len(front) > need:  # spread the picks along the first objective
            front = sorted(front, key=lambda i: values[i][0])
            front = [front[int(round(k))] for k in np.linspace(0, len(front) - 1, need)]
        chosen.extend(pool[i] for i in front)
        taken = set(front)
        pool = [pool[i] for i in range(len(pool)) if i not in taken]
    return chosen


def screen_candidates(
    search_space: SearchSpace,
    directions: Sequence[str],
    measured: Sequence[EvaluatedSubnet],
    *,
    num_candidates: int = 1000,
    num_chosen: int = 10,
    exact_objectives: ExactObjectives | None = None,
    strategy: str = "nsga2",
    strategy_options: Mapping[str, Any] | None = None,
    predictor_model: str = "gbrt",
    predictor_encoding: str = "layers",
    seed: int = 0,
    constraints: ConstraintsFunction | None = None,
    feasible: Callable[[Sequence[float]], bool] | None = None,
    exclude: Iterable[SubnetConfig] = (),
) -> list[tuple[SubnetConfig, tuple[float, ...]]]:
    """One LINAS screening round: the subnets worth measuring next, with their predicted values.

    1. A [`Predictor`] per objective without an exact function is fitted on the `measured` subnets.
    2. A fresh `strategy` (seeded with `seed`) starts from the measured Pareto front (enqueued first) and asks
       `num_candidates` subnets, each told its values: measured for a measured subnet, else exact for the objectives
       in `exact_objectives` (MACs, parameters: arithmetic) and predicted for the others. With NSGA-II and its
       population of `strategy_options["population_size"]`, that is `num_candidates / population_size` generations
       on predictions.
    3. Of the candidates that are not measured, not in `exclude` and `feasible`, up to `num_chosen` are chosen from
       the predicted Pareto front ([`choose_from_front`]).

    Args:
        search_space (`SearchSpace`): the space the subnets come from.
        directions (`Sequence[str]`): one direction per objective.
        measured (`Sequence[EvaluatedSubnet]`): the subnets measured so far (at least 2), with their values.
        num_candidates (`int`, *optional*, defaults to 1000): subnets the inner strategy asks on predictions.
        num_chosen (`int`, *optional*, defaults to 10): subnets returned at most.
        exact_objectives (`Mapping[int, Callable[[SubnetConfig], float]]`, *optional*): objective index -> its exact,
            cheap function; the other objectives are predicted.
        strategy (`str`, *optional*, defaults to `"nsga2"`): the inner strategy's name.
        strategy_options (`Mapping[str, Any]`, *optional*): its options (e.g. `{"population_size": 50}`).
        predictor_model (`str`, *optional*, defaults to `"gbrt"`): the regressor of the predictors.
        predictor_encoding (`str`, *optional*, defaults to `"layers"`): their features.
        seed (`int`, *optional*, defaults to 0): seeds the inner strategy and the predictors.
        constraints (`Callable[[SubnetConfig], Sequence[float]]`, *optional*): cheap constraints of the inner strategy.
        feasible (`Callable[[Sequence[float]], bool]`, *optional*): whether predicted values may be chosen.
        exclude (`Iterable[SubnetConfig]`, *optional*): subnets never chosen (e.g. asked but not yet measured).

    Returns:
        `list[tuple[SubnetConfig, tuple[float, ...]]]`: the chosen subnets and their predicted values.
    """
    if len(measured) < 2:
        raise ValueError(
            f"Screening fits predictors on the measured subnets: it needs at least 2, got {len(measured)}."
        )
    exact = dict(exact_objectives or {})
    known = {_key(e.subnet): e.values for e in measured}
    subnets = [e.subnet for e in measured]
    predictors = {
        j: Predictor(search_space, model=predictor_model, seed=seed, encoding=predictor_encoding).fit(
            subnets, [e.values[j] for e in measured]
        )
        for j in range(len(directions))
        if j not in exact
    }
    inner = get_strategy(
        strategy, search_space, directions, seed=seed, constraints=constraints, **(strategy_options or {})
    )
    # start from the measured front: the screening refines it instead of rediscovering it
    front = [
        measured[i].subnet for i in pareto_front([e.values for e in measured], directions) if measured[i].feasible
    ]
    for subnet in dict.fromkeys(front):
        try:
            inner.enqueue(subnet)
        except ValueError:  # it violates the cheap constraints: the inner strategy would never propose it
            pass
    excluded = {_key(s) for s in exclude}
    seen: dict[str, tuple[float, ...]] = {}
    candidates: dict[str, tuple[SubnetConfig, tuple[float, ...]]] = {}
    # ask a generation at a time, so the predictors run once per generation rather than once per candidate
    generation = int((strategy_options or {}).get("population_size", 20))
    asked = 0
    with quiet_optuna():
        while asked < num_candidates:
            batch = [inner.ask() for _ in range(min(generation, num_candidates - asked))]
            asked += len(batch)
            new = {}
            for subnet in batch:
                key = _key(subnet)
                if key not in known and key not in seen:
                    new[key] = subnet
            if new:
                subnets_new = list(new.values())
                columns = [
                    [float(exact[j](s)) for s in subnets_new]
                    if j in exact
                    else predictors[j].predict(subnets_new).astype(float).tolist()
                    for j in range(len(directions))
                ]
                for i, (key, subnet) in enumerate(new.items()):
                    values = tuple(column[i] for column in columns)
                    seen[key] = values
                    if key not in excluded and (feasible is None or feasible(values)):
                        candidates[key] = (subnet, values)
            for subnet in batch:
                key = _key(subnet)
                inner.tell(subnet, known.get(key) or seen[key])
    return [(s, tuple(v)) for s, v in choose_from_front(list(candidates.values()), directions, num_chosen)]


@register_strategy
class LinasSearch(SearchStrategy):
    """Predictor-guided search (LINAS, as in InstaTune and DyNAS-T) behind the ask/tell interface.

    The first `initial_evaluations` proposals are seeded uniform random subnets. After that, each screening round
    ([`screen_candidates`]) fits a predictor per objective without an exact function on every subnet told so far,
    runs a fresh `screening_strategy` (NSGA-II, 50 subnets per generation by default) for `candidates_per_round`
    candidates on predicted values, and queues up to `evaluations_per_round` subnets of the predicted Pareto front;
    they are asked one by one, and the next round starts when they are used up. Round `r` is seeded with
    `seed + r`, so a run is reproducible from its seed and the values told.

    Objectives that are cheap and exact (MACs, parameters, a latency table) are given as `exact_objectives`; a search
    ([`~hf_nas.search.SubnetSearch`]) passes its cheap objectives there.

    Args:
        search_space (`SearchSpace`): the space the subnets come from.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"`, one per objective.
        seed (`int`, *optional*, defaults to 0): seeds the random start, the screening strategies and the predictors.
        constraints (`Callable[[SubnetConfig], Sequence[float]]`, *optional*): cheap constraint values of a subnet
            (<= 0 feasible); infeasible subnets are never proposed.
        max_attempts (`int`, *optional*, defaults to 1000): rejected random draws per `ask` before a `ValueError`.
        initial_evaluations (`int`, *optional*, defaults to 20): random subnets before the first screening.
        evaluations_per_round (`int`, *optional*, defaults to 10): subnets chosen per screening round.
        candidates_per_round (`int`, *optional*, defaults to 1000): candidates screened per round.
        screening_strategy (`str`, *optional*, defaults to `"nsga2"`): the strategy run on predictions.
        screening_options (`dict`, *optional*): its options; default `{"population_size": 50}` for NSGA-II and the
            evolutionary strategy (20 generations of 1,000 candidates).
        predictor_model (`str`, *optional*, defaults to `"gbrt"`): the predictors' regressor.
        predictor_encoding (`str`, *optional*, defaults to `"layers"`): the predictors' features.
        exact_objectives (`Mapping[int, Callable[[SubnetConfig], float]]`, *optional*): objective index -> its exact,
            cheap function (never predicted).

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import LinasSearch
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> def accuracy(subnet):  # stand-ins: a measured objective and an exact, cheap one
    ...     return subnet.hidden_size / 32 - 0.1 / subnet.num_hidden_layers
    >>> def macs(subnet):
    ...     return float(subnet.hidden_size * sum(subnet.intermediate_size))
    >>> strategy = LinasSearch(space, ["maximize", "minimize"], initial_evaluations=4, evaluations_per_round=2,
    ...                        candidates_per_round=40, screening_options={"population_size": 8},
    ...                        exact_objectives={1: macs})
    >>> for _ in range(8):
    ...     subnet = strategy.ask()
    ...     strategy.tell(subnet, [accuracy(subnet), macs(subnet)])
    >>> strategy.rounds, len(strategy.history)
    (2, 8)
    ```
    """

    name = "linas"
    screens_with_predictors = True  # `SubnetSearch` runs it in its direct loop even with `use_predictors=True`

    def __init__(
        self,
        search_space: SearchSpace,
        directions: Sequence[str],
        seed: int = 0,
        constraints: ConstraintsFunction | None = None,
        max_attempts: int = 1000,
        initial_evaluations: int = 20,
        evaluations_per_round: int = 10,
        candidates_per_round: int = 1000,
        screening_strategy: str = "nsga2",
        screening_options: Mapping[str, Any] | None = None,
        predictor_model: str = "gbrt",
        predictor_encoding: str = "layers",
        exact_objectives: ExactObjectives | None = None,
    ):
        super().__init__(search_space, directions, seed=seed, constraints=constraints, max_attempts=max_attempts)
        self.initial_evaluations = check_int("initial_evaluations", initial_evaluations, 1)
        self.evaluations_per_round = check_int("evaluations_per_round", evaluations_per_round, 1)
        self.candidates_per_round = check_int("candidates_per_round", candidates_per_round, 1)
        if screening_strategy == self.name or screening_strategy not in STRATEGIES:
            allowed = sorted(n for n in STRATEGIES if n != self.name)
            raise ValueError(f"Unknown `screening_strategy` {screening_strategy!r}; allowed: {allowed}.")
        if screening_options is None:
            default = {"population_size": 50}
            options = STRATEGIES.options(STRATEGIES[screening_strategy])[0]
            screening_options = default if "population_size" in options else {}
        if not isinstance(screening_options, Mapping):
            raise TypeError(f"`screening_options` must be a dict of strategy options, got {screening_options!r}.")
        STRATEGIES.lookup(screening_strategy, dict(screening_options))  # unknown options fail now, not mid-search
        if predictor_model not in PREDICTOR_MODELS:
            raise ValueError(f"Unknown `predictor_model` {predictor_model!r}; allowed: {sorted(PREDICTOR_MODELS)}.")
        if predictor_encoding not in ENCODINGS:
            raise ValueError(f"Unknown `predictor_encoding` {predictor_encoding!r}; allowed: {sorted(ENCODINGS)}.")
        exact = dict(exact_objectives or {})
        for index, function in exact.items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.num_objectives:
                raise ValueError(
                    f"`exact_objectives` key {index!r} is not an objective index; allowed: 0 to "
                    f"{self.num_objectives - 1}."
                )
            if not callable(function):
                raise TypeError(f"`exact_objectives[{index}]` must be a function of a subnet, got {function!r}.")
        if len(exact) == self.num_objectives:
            raise ValueError("Every objective is in `exact_objectives`: nothing is left to predict or to measure.")
        self.screening_strategy = screening_strategy
        self.screening_options = dict(screening_options)
        self.predictor_model = predictor_model
        self.predictor_encoding = predictor_encoding
        self.exact_objectives = exact
        self.rounds = 0  # screening rounds run
        self._rng = random.Random(self.seed)
        self._queue: deque[SubnetConfig] = deque()  # enqueued by the user
        self._batch: deque[SubnetConfig] = deque()  # chosen by the last screening round
        self._pending: dict[str, int] = {}  # asked, not told yet
        self._proposed: set[str] = set()

    def _random(self) -> SubnetConfig:
        """A seeded random feasible subnet, new if one is found within half of `max_attempts`."""
        for attempt in range(self.max_attempts):
            subnet = self.search_space.sample(generator=self._rng)
            if not self._is_feasible(subnet):
                continue
            if _key(subnet) in self._proposed and attempt < self.max_attempts // 2:
                continue
            return subnet
        raise self._unsatisfiable()

    def _screen(self) -> None:
        chosen = screen_candidates(
            self.search_space,
            self.directions,
            self.history,
            num_candidates=self.candidates_per_round,
            num_chosen=self.evaluations_per_round,
            exact_objectives=self.exact_objectives,
            strategy=self.screening_strategy,
            strategy_options=self.screening_options,
            predictor_model=self.predictor_model,
            predictor_encoding=self.predictor_encoding,
            seed=self.seed + 1 + self.rounds,
            constraints=self.constraints,
            exclude=[SubnetConfig.from_dict(json.loads(k)) for k in self._pending],
        )
        self.rounds += 1
        self._batch.extend(s for s, _ in chosen)

    def ask(self) -> SubnetConfig:
        if self._queue:
            subnet = self._queue.popleft()
        elif len(self.history) + sum(self._pending.values()) < self.initial_evaluations or len(self.history) < 2:
            subnet = self._random()
        else:
            if not self._batch:
                self._screen()
            subnet = self._batch.popleft() if self._batch else self._random()  # nothing new predicted: explore
        key = _key(subnet)
        self._pending[key] = self._pending.get(key, 0) + 1
        self._proposed.add(key)
        return subnet

    def _tell(self, subnet: SubnetConfig, values: tuple[float, ...], constraint_values: tuple[float, ...]) -> None:
        key = _key(subnet)
        if key in self._pending:
            self._pending[key] -= 1
            if not self._pending[key]:
                del self._pending[key]

    def _enqueue(self, subnet: SubnetConfig) -> None:
        self._queue.append(subnet)
