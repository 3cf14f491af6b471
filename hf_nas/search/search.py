"""Multi-objective subnet search over a trained supernet: measure, predict, keep the Pareto front.

[`SubnetSearch`] runs a strategy behind the ask/tell interface. With `use_predictors=True` (LINAS-style, as in
InstaTune) it alternates: fit one predictor per expensive objective (accuracy, latency) on the subnets measured so
far; let the strategy explore `candidates_per_round` candidates scored by the predictors and by the exact cheap
objectives (parameters, MACs); spend real evaluations only on the predicted Pareto front. Without predictors every
proposal is measured. Every measurement is written to `search_results.json` at once, so an interrupted search keeps
what it measured and resumes from the file.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..search_space import SubnetConfig
from .constraints import Constraint, check_constraints, measured_violation
from .objectives import Objective
from .pareto import pareto_front
from .predictors import Predictor
from .results import HYPERVOLUME_LABEL, RESULTS_NAME, SearchResults, supernet_fingerprint
from .strategies import SearchStrategy, get_strategy

__all__ = ["SubnetSearch"]

logger = logging.getLogger(__name__)


class SubnetSearch:
    """Search the supernet's space for the subnets with the best trade-offs between `objectives`.

    Args:
        model: a trained supernet.
        objectives: [`Objective`] instances (e.g. accuracy, macs, latency); the first is the one plotted on the y axis.
        strategy: a strategy name (`"nsga2"`, `"random"`) or a [`SearchStrategy`].
        num_evaluations: real (measured) evaluations in total.
        constraints: [`Constraint`]s on objectives ("latency <= 10 ms", "macs <= 2e9"); infeasible subnets are kept
            in the results but never on the front.
        use_predictors: screen candidates with predictors of the expensive objectives (LINAS-style).
        candidates_per_round / evaluations_per_round / initial_evaluations: the predictor-guided loop's sizes.
        output_dir: where results are written (and resumed from); `None` keeps them in memory.
        seed: seeds the strategy and the predictors.

    Example:

    ```python
    >>> import os, tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, SubnetSearch
    >>> from hf_nas.search.objectives import TaskMetricObjective, get_objective
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> data = [{"input_ids": [2, 5, 7], "label": 1}, {"input_ids": [2, 9, 4], "label": 0}]
    >>> accuracy = TaskMetricObjective(data, batch_size=2)
    >>> output_dir = tempfile.mkdtemp()
    >>> search = SubnetSearch(model, [accuracy, get_objective("macs")], "nsga2", num_evaluations=6,
    ...                       initial_evaluations=4, candidates_per_round=20, output_dir=output_dir)
    >>> results = search.run()
    >>> len(results.records), results.names, sorted(os.listdir(output_dir))
    (6, ['accuracy', 'macs'], ['pareto.csv', 'pareto.png', 'search_results.json'])
    ```
    """

    def __init__(
        self,
        model: Any,
        objectives: Sequence[Objective],
        strategy: str | SearchStrategy = "nsga2",
        *,
        num_evaluations: int = 100,
        constraints: Sequence[Constraint] = (),
        use_predictors: bool = True,
        candidates_per_round: int = 1000,
        evaluations_per_round: int = 10,
        initial_evaluations: int = 20,
        output_dir: str | os.PathLike | None = None,
        seed: int = 0,
        show_progress: bool = True,
    ):
        constraints = _check_settings(
            objectives,
            constraints,
            num_evaluations=num_evaluations,
            candidates_per_round=candidates_per_round,
            evaluations_per_round=evaluations_per_round,
            initial_evaluations=initial_evaluations,
        )
        self.model = model
        self.space = model.search_space
        self.objectives = list(objectives)
        self.constraints = constraints
        self.strategy_name = strategy if isinstance(strategy, str) else strategy.name
        self._strategy = strategy if isinstance(strategy, SearchStrategy) else None
        self.num_evaluations = num_evaluations
        self.use_predictors = use_predictors
        self.candidates_per_round = candidates_per_round
        self.evaluations_per_round = evaluations_per_round
        self.initial_evaluations = min(initial_evaluations, num_evaluations)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.seed = seed
        self.show_progress = show_progress
        self.results = SearchResults(
            objectives=[{"name": o.name, "direction": o.direction, "settings": o.describe()} for o in objectives],
            constraints=[_constraint_dict(c) for c in constraints],
            fingerprint=supernet_fingerprint(model),
            settings={
                "strategy": self.strategy_name,
                "use_predictors": use_predictors,
                "seed": seed,
                "search_space": self.space.to_dict(),
            },
            full_model=self._full_model_values(),
        )

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def _full_model_values(self) -> dict[str, float]:
        """The cheap objectives (MACs, parameters) of the whole supernet: what the results show MACs relative to."""
        full = self.model.max_subnet()
        return {o.name: float(o(self.model, full)) for o in self.objectives if o.cheap}

    # ------------------------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        path = os.path.join(self.output_dir, RESULTS_NAME) if self.output_dir else None
        if path is None or not os.path.isfile(path):
            return
        previous = SearchResults.load(path)
        if previous.fingerprint != self.results.fingerprint:
            raise ValueError(
                f"{path} was written for another supernet (fingerprint {previous.fingerprint}, this supernet "
                f"{self.results.fingerprint}); use a new output_dir."
            )
        if previous.objectives != self.results.objectives or previous.constraints != self.results.constraints:
            raise ValueError(
                f"{path} was written with other objectives or constraints ({previous.objectives}, "
                f"{previous.constraints}); use a new output_dir."
            )
        self.results.records = previous.records
        logger.info("resuming from %s with %d measured subnets", path, len(previous.records))

    def _save(self) -> None:
        if self.output_dir is not None:
            self.results.save(self.output_dir, plot=False)

    def _measure(self, subnet: SubnetConfig, source: str) -> dict[str, Any]:
        values = {o.name: float(o(self.model, subnet)) for o in self.objectives}
        record = {"subnet": subnet.to_dict(), "values": values, "source": source}
        record["feasible"] = all(measured_violation(c, values) <= 0 for c in self.constraints)
        self.results.records.append(record)
        self._save()
        return record

    def _constraint_values(self, values: dict[str, float]) -> list[float] | None:
        if not self.constraints:
            return None
        return [measured_violation(c, values) for c in self.constraints]

    def _new_strategy(self, seed: int) -> SearchStrategy:
        return get_strategy(
            self.strategy_name, self.space, self.directions, seed=seed, constraints=self._cheap_constraints()
        )

    def _cheap_constraints(self) -> Callable[[SubnetConfig], list[float]] | None:
        """Constraints on cheap objectives (MACs, parameters) as a function of a subnet, so the strategy proposes
        only subnets that satisfy them instead of spending measurements on ones that cannot."""
        cheap = {o.name: o for o in self.objectives if o.cheap}
        selected = [c for c in self.constraints if c.objective in cheap]
        if not selected:
            return None

        def values(subnet: SubnetConfig) -> list[float]:
            return [c.violation(cheap[c.objective](self.model, subnet)) for c in selected]

        return values

    def run(self) -> SearchResults:
        """Run (or resume) the search until `num_evaluations` subnets are measured; returns the results."""
        self._resume()
        measured = {json.dumps(r["subnet"], sort_keys=True) for r in self.results.records}
        progress = tqdm(
            total=self.num_evaluations,
            initial=len(self.results.records),
            desc="search",
            disable=not self.show_progress,
        )
        try:
            if self.use_predictors:
                self._run_with_predictors(measured, progress)
            else:
                self._run_direct(measured, progress)
        finally:
            progress.close()
        self.results.predictor_scores = self._score_predictors()
        if self.output_dir is not None:
            self.results.save(self.output_dir, plot=True)
        logger.info("%s: %.4g", HYPERVOLUME_LABEL, self.results.normalized_hypervolume()[0])
        return self.results

    def _run_direct(self, measured: set[str], progress: tqdm) -> None:
        strategy = self._strategy or self._new_strategy(self.seed)
        # Replay what is already measured so a resumed run proposes what the uninterrupted one would have.
        for record in self.results.records:
            strategy.ask()
            strategy.tell(
                SubnetConfig.from_dict(record["subnet"]),
                [record["values"][o.name] for o in self.objectives],
                self._constraint_values(record["values"]),
            )
        attempts = 0
        while len(self.results.records) < self.num_evaluations:
            subnet = strategy.ask()
            key = json.dumps(subnet.to_dict(), sort_keys=True)
            if key in measured:  # a repeat: tell the known values, spend no evaluation
                record = next(r for r in self.results.records if json.dumps(r["subnet"], sort_keys=True) == key)
                strategy.tell(
                    subnet,
                    [record["values"][o.name] for o in self.objectives],
                    self._constraint_values(record["values"]),
                )
                attempts += 1
                if attempts > 100 * self.num_evaluations:
                    logger.warning("the strategy keeps proposing measured subnets: stopping early")
                    return
                continue
            record = self._measure(subnet, self.strategy_name)
            measured.add(key)
            strategy.tell(
                subnet, [record["values"][o.name] for o in self.objectives], self._constraint_values(record["values"])
            )
            progress.update(1)

    def _run_with_predictors(self, measured: set[str], progress: tqdm) -> None:
        rng = np.random.default_rng(self.seed)
        # 1. a seeded random start, measured for real
        self._measure_initial(measured, progress)
        # 2. rounds: fit predictors, explore on predictions, measure the predicted front
        round_index = len(self.results.records)
        while len(self.results.records) < self.num_evaluations:
            candidates = self._explore(round_index, measured)
            chosen = self._choose(candidates, rng)
            if not chosen:
                logger.warning("no new candidate left to measure: stopping early")
                return
            for subnet in chosen:
                if len(self.results.records) >= self.num_evaluations:
                    break
                self._measure(subnet, "predicted-front")
                measured.add(json.dumps(subnet.to_dict(), sort_keys=True))
                progress.update(1)
            round_index += 1

    def _measure_initial(self, measured: set[str], progress: tqdm) -> None:
        """Measure seeded random subnets (that satisfy the cheap constraints) until `initial_evaluations` are."""
        generator = random.Random(self.seed)
        cheap_constraints = self._cheap_constraints()
        attempts = 0
        while len(self.results.records) < self.initial_evaluations:
            subnet = self.space.sample(generator=generator)
            key = json.dumps(subnet.to_dict(), sort_keys=True)
            attempts += 1
            if attempts > 1000 * self.initial_evaluations:
                raise ValueError(
                    f"Found no subnet satisfying the constraints {[str(c) for c in self.constraints]} in {attempts - 1} "
                    "random samples of the search space; loosen them or narrow the space."
                )
            if key in measured or (cheap_constraints is not None and any(v > 0 for v in cheap_constraints(subnet))):
                continue
            self._measure(subnet, "initial")
            measured.add(key)
            progress.update(1)

    def _explore(self, round_index: int, measured: set[str]) -> list[tuple[SubnetConfig, dict[str, float]]]:
        """One round of exploration on predictions: a fresh strategy asks `candidates_per_round` subnets, told the
        exact cheap objectives and the predicted expensive ones; returns the new (unmeasured) candidates with their
        values."""
        cheap = [o for o in self.objectives if o.cheap]
        expensive = [o for o in self.objectives if not o.cheap]
        predictors = self._fit_predictors(expensive)
        strategy = self._new_strategy(self.seed + round_index)
        candidates: dict[str, tuple[SubnetConfig, dict[str, float]]] = {}
        for _ in range(self.candidates_per_round):
            subnet = strategy.ask()
            key = json.dumps(subnet.to_dict(), sort_keys=True)
            if key in candidates:
                values = candidates[key][1]
            else:
                values = {o.name: float(o(self.model, subnet)) for o in cheap}
                for o in expensive:
                    values[o.name] = float(predictors[o.name].predict([subnet])[0])
                if key not in measured:
                    candidates[key] = (subnet, values)
            strategy.tell(subnet, [values[o.name] for o in self.objectives], self._constraint_values(values))
        return list(candidates.values())

    def _choose(
        self, candidates: list[tuple[SubnetConfig, dict[str, float]]], rng: np.random.Generator
    ) -> list[SubnetConfig]:
        """Up to `evaluations_per_round` feasible candidates from the predicted front (then the next fronts)."""
        pool = [(s, v) for s, v in candidates if all(measured_violation(c, v) <= 0 for c in self.constraints)]
        chosen: list[SubnetConfig] = []
        while pool and len(chosen) < self.evaluations_per_round:
            values = [[v[o.name] for o in self.objectives] for _, v in pool]
            front = pareto_front(values, self.directions)
            need = self.evaluations_per_round - len(chosen)
            if len(front) > need:  # spread the picks along the first objective
                front = sorted(front, key=lambda i: values[i][0])
                front = [front[int(round(k))] for k in np.linspace(0, len(front) - 1, need)]
            chosen.extend(pool[i][0] for i in front)
            keep = set(range(len(pool))) - set(front)
            pool = [pool[i] for i in sorted(keep)]
        return chosen

    def _fit_predictors(self, expensive: Sequence[Objective]) -> dict[str, Predictor]:
        subnets = [SubnetConfig.from_dict(r["subnet"]) for r in self.results.records]
        return {
            o.name: Predictor(self.space, seed=self.seed).fit(
                subnets, [r["values"][o.name] for r in self.results.records]
            )
            for o in expensive
        }

    def _score_predictors(self) -> dict[str, dict[str, float]]:
        """Held-out error of each expensive objective's predictor: fit on the first 80% of the measured subnets,
        scored (MAE, Kendall tau) on the last 20%."""
        records = self.results.records
        n_train = int(0.8 * len(records))
        if n_train < 2 or len(records) - n_train < 2:
            return {}
        subnets = [SubnetConfig.from_dict(r["subnet"]) for r in records]
        scores = {}
        for o in self.objectives:
            if o.cheap:
                continue
            values = [r["values"][o.name] for r in records]
            predictor = Predictor(self.space, seed=self.seed).fit(subnets[:n_train], values[:n_train])
            scores[o.name] = {k: float(v) for k, v in predictor.score(subnets[n_train:], values[n_train:]).items()}
        return scores


def _constraint_dict(constraint: Constraint) -> dict[str, Any]:
    return {"objective": constraint.objective, "max_value": constraint.max_value, "min_value": constraint.min_value}


def _check_settings(
    objectives: Sequence[Objective], constraints: Sequence[Constraint], **sizes: int
) -> list[Constraint]:
    """Check the objectives (at least one, unique names), the loop `sizes` (positive ints) and the constraints (on
    known objectives, not contradictory); return the constraints as a list."""
    if not objectives:
        raise ValueError("Give at least one objective.")
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise ValueError(f"Objective names must be unique, got {names}.")
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    constraints = list(constraints)
    if constraints:
        check_constraints(constraints)
        unknown = [c.objective for c in constraints if c.objective not in names]
        if unknown:
            raise ValueError(f"Constraints on unknown objectives {unknown}; objectives: {names}.")
    return constraints
