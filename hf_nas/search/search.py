"""Multi-objective subnet search over a trained supernet: measure, predict, keep the Pareto front.

[`SubnetSearch`] runs a strategy behind the ask/tell interface. With `use_predictors=True` (LINAS-style, as in
InstaTune) it alternates: fit one predictor per expensive objective (accuracy, latency) on the subnets measured so
far; let the strategy explore `candidates_per_round` candidates scored by the predictors and by the exact cheap
objectives (parameters, MACs); spend real evaluations only on the predicted Pareto front. Without predictors every
proposal is measured.

An output folder is safe to interrupt and to share:

- every measurement is written to `search_results.json` at once, atomically (a crash, even `kill -9`, leaves the
  previous complete file), so an interrupted search keeps what it measured;
- rerun on the same folder, the search checks that file (a hand-edited one is refused with the field at fault, and
  left as it is), never measures a saved subnet again, and goes on exactly as the uninterrupted search would have:
  same records in the same order, same Pareto front;
- the whole run holds the folder's lock (`<output_dir>.lock`, see [`~hf_nas.utils.output_lock`]), so a second
  search into the same folder refuses at once, or waits `wait_for_lock` seconds for the first to finish.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..search_space import SubnetConfig
from ..utils import OutputLockedError, output_lock
from .constraints import Constraint, check_constraints, measured_violation
from .objectives import Objective
from .pareto import pareto_front
from .predictors import Predictor
from .results import HYPERVOLUME_LABEL, PARETO_CSV, PARETO_PNG, RESULTS_NAME, SearchResults, supernet_fingerprint
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
        wait_for_lock: seconds `run` waits for another process writing `output_dir` to finish (0: refuse at once
            with [`~hf_nas.utils.OutputLockedError`]; `math.inf`: no limit). A caller holding the folder's lock
            already (see [`~hf_nas.utils.output_lock`]) keeps it.

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
        wait_for_lock: float = 0.0,
    ):
        constraints = _check_settings(
            objectives,
            constraints,
            num_evaluations=num_evaluations,
            candidates_per_round=candidates_per_round,
            evaluations_per_round=evaluations_per_round,
            initial_evaluations=initial_evaluations,
        )
        if isinstance(wait_for_lock, bool) or not isinstance(wait_for_lock, (int, float)) or not wait_for_lock >= 0:
            raise ValueError(
                f"`wait_for_lock` must be a number of seconds >= 0 (math.inf: no limit), got {wait_for_lock!r}."
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
        self.wait_for_lock = float(wait_for_lock)
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
    # the output folder: lock, resume, writes
    @contextmanager
    def _output_lock(self) -> Iterator[None]:
        """Hold the lock of `output_dir` (nothing without one), waiting up to `wait_for_lock` seconds for it."""
        if self.output_dir is None:
            yield
            return
        with ExitStack() as stack:
            try:  # a caller that holds the lock already (`hf-nas search`) keeps it
                stack.enter_context(output_lock(self.output_dir, reentrant=True))
            except OutputLockedError as e:
                if not self.wait_for_lock:
                    raise OutputLockedError(
                        f"{e} To wait for it instead, give `wait_for_lock` seconds (hf-nas search --wait_for_lock)."
                    ) from None
                logger.warning(
                    "%s is being written by another process: waiting up to %g s for its lock",
                    self.output_dir,
                    self.wait_for_lock,
                )
                stack.enter_context(output_lock(self.output_dir, self.wait_for_lock))
            yield

    def _resume(self) -> None:
        """Take the records of the output folder's `search_results.json` (when there is one), checked against this
        search; raises `ValueError` naming the file and the problem, before anything is written."""
        path = os.path.join(self.output_dir, RESULTS_NAME) if self.output_dir else None
        if path is None or not os.path.isfile(path):
            return
        previous = SearchResults.load(path)
        self._check_resumable(path, previous)
        self.results.records = previous.records
        logger.info("resuming from %s with %d measured subnets", path, len(previous.records))

    def _check_resumable(self, path: str, previous: SearchResults) -> None:
        """Raise `ValueError` unless `previous` was measured on this supernet, objectives, constraints and space."""
        if previous.fingerprint != self.results.fingerprint:
            raise ValueError(
                f"{path} was written for another supernet (fingerprint {previous.fingerprint}, this supernet "
                f"{self.results.fingerprint}); use a new output_dir."
            )
        mismatch = _objectives_mismatch(previous.objectives, _json_copy(self.results.objectives))
        if mismatch:
            raise ValueError(
                f"{path} was written with other objectives than this search's: {mismatch}. Resume with the same "
                "objectives, or use a new output_dir."
            )
        if previous.constraints != _json_copy(self.results.constraints):
            raise ValueError(
                f"{path} was written with other constraints ({previous.constraints}) than this search's "
                f"({self.results.constraints}); resume with the same constraints, or use a new output_dir."
            )
        first_seen: dict[str, int] = {}
        for i, record in enumerate(previous.records):
            try:
                self.space.validate(SubnetConfig.from_dict(record["subnet"]))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: records[{i}]['subnet'] is not in this supernet's search space: {e}") from e
            j = first_seen.setdefault(_subnet_key(record["subnet"]), i)
            if j != i:
                raise ValueError(
                    f"{path}: records[{i}] repeats the subnet of records[{j}]; a search measures each once."
                )
        changed = {k: (previous.settings.get(k), v) for k, v in self.results.settings.items()}
        changed = {k: pair for k, pair in changed.items() if _json_copy(pair[1]) != pair[0]}
        if changed:
            text = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
            logger.warning(
                "%s was written with other settings (%s): the resumed search keeps its records but will not go on "
                "as the first one would have",
                path,
                text,
            )

    def _remove_temporaries(self) -> None:
        """Delete the temporary files a killed writer left in the output folder (the lock is held: none is live)."""
        if self.output_dir is None or not os.path.isdir(self.output_dir):
            return
        prefixes = tuple(f".{name}.tmp-" for name in (RESULTS_NAME, PARETO_CSV))
        for name in os.listdir(self.output_dir):
            if name.startswith(prefixes) or name == f"{PARETO_PNG}.tmp.png":
                os.remove(os.path.join(self.output_dir, name))

    def _save(self) -> None:
        if self.output_dir is not None:
            self.results.save(self.output_dir, plot=False)

    def _measure(self, subnet: SubnetConfig, source: str, round_index: int | None = None) -> dict[str, Any]:
        values = {o.name: float(o(self.model, subnet)) for o in self.objectives}
        record: dict[str, Any] = {"subnet": subnet.to_dict(), "values": values, "source": source}
        if round_index is not None:
            record["round"] = round_index
        record["feasible"] = all(measured_violation(c, values) <= 0 for c in self.constraints)
        self.results.records.append(record)
        self._save()
        return record

    def _constraint_values(self, values: dict[str, float]) -> list[float] | None:
        if not self.constraints:
            return None
        return [measured_violation(c, values) for c in self.constraints]

    def _tell(self, strategy: SearchStrategy, subnet: SubnetConfig, values: dict[str, float]) -> None:
        strategy.tell(subnet, [values[o.name] for o in self.objectives], self._constraint_values(values))

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

    # ------------------------------------------------------------------------------------------------------------
    def run(self) -> SearchResults:
        """Run (or resume) the search until `num_evaluations` subnets are measured; returns the results.

        With an `output_dir` the whole run holds its lock: raises [`~hf_nas.utils.OutputLockedError`] when another
        process writes that folder (after waiting `wait_for_lock` seconds), and `ValueError` naming the file and the
        field when its `search_results.json` cannot be resumed (the file is left untouched)."""
        with self._output_lock():
            self._resume()
            self._remove_temporaries()
            progress = tqdm(
                total=self.num_evaluations,
                initial=len(self.results.records),
                desc="search",
                disable=not self.show_progress,
            )
            try:
                if self.use_predictors:
                    self._run_with_predictors(progress)
                else:
                    self._run_direct(progress)
            finally:
                progress.close()
            self.results.predictor_scores = self._score_predictors()
            if self.output_dir is not None:
                self.results.save(self.output_dir, plot=True)
        logger.info("%s: %.4g", HYPERVOLUME_LABEL, self.results.normalized_hypervolume()[0])
        return self.results

    def _run_direct(self, progress: tqdm) -> None:
        """Measure every new subnet the strategy asks. A resumed search replays its records through the same
        ask/tell loop (asked in the order they were measured, told their saved values), so the strategy reaches the
        state of the uninterrupted search and goes on with the same proposals."""
        strategy = self._strategy or self._new_strategy(self.seed)
        known = {_subnet_key(r["subnet"]): r for r in self.results.records}  # every measured subnet
        to_replay = list(known)[::-1]  # saved subnets not asked yet, the next one last
        told: set[str] = set()
        repeats = 0
        while len(known) < self.num_evaluations:
            subnet = strategy.ask()
            key = _subnet_key(subnet.to_dict())
            record = known.get(key)
            if key in told:  # a repeat: tell the known values, spend no evaluation
                repeats += 1
                if repeats > 100 * self.num_evaluations:
                    logger.warning("the strategy keeps proposing measured subnets: stopping early")
                    return
            elif record is None:
                if to_replay:
                    _warn_diverged(len(self.results.records) - len(to_replay))
                    to_replay.clear()
                record = known[key] = self._measure(subnet, self.strategy_name)
                progress.update(1)
            elif to_replay and to_replay[-1] == key:
                to_replay.pop()
            told.add(key)
            self._tell(strategy, subnet, record["values"])

    def _run_with_predictors(self, progress: tqdm) -> None:
        # 1. a seeded random start, measured for real
        self._measure_initial(progress)
        # 2. rounds: fit predictors, explore on predictions, measure the predicted front. A resumed search redoes
        # the exploration of its last round (seeded, on the records before it) and measures what that round left.
        round_index, done = self._last_round()
        while len(self.results.records) < self.num_evaluations:
            before = self.results.records[: len(self.results.records) - done]
            chosen = self._choose(self._explore(round_index, before))
            saved = [_subnet_key(r["subnet"]) for r in self.results.records[len(before) :]]
            if saved != [_subnet_key(s.to_dict()) for s in chosen[:done]]:
                _warn_diverged(len(before))
                round_index, done = round_index + 1, 0
                continue
            if not chosen:
                logger.warning("no new candidate left to measure: stopping early")
                return
            for subnet in chosen[done:]:
                if len(self.results.records) >= self.num_evaluations:
                    break
                self._measure(subnet, "predicted-front", round_index)
                progress.update(1)
            round_index, done = round_index + 1, 0

    def _last_round(self) -> tuple[int, int]:
        """The round to go on with and how many of its subnets are measured already: the last saved round and its
        records, or a new round numbered by the records so far (the numbers seed each round's strategy)."""
        records = self.results.records
        if not records or "round" not in records[-1]:
            return len(records), 0
        last = records[-1]["round"]
        done = 0
        while done < len(records) and records[-1 - done].get("round") == last:
            done += 1
        return last, done

    def _measure_initial(self, progress: tqdm) -> None:
        """Measure seeded random subnets (that satisfy the cheap constraints) until `initial_evaluations` are. A
        resumed search draws the same sequence and skips the subnets it measured."""
        generator = random.Random(self.seed)
        cheap_constraints = self._cheap_constraints()
        measured = {_subnet_key(r["subnet"]) for r in self.results.records}
        attempts = 0
        while len(self.results.records) < self.initial_evaluations:
            subnet = self.space.sample(generator=generator)
            key = _subnet_key(subnet.to_dict())
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

    def _explore(
        self, round_index: int, records: Sequence[dict[str, Any]]
    ) -> list[tuple[SubnetConfig, dict[str, float]]]:
        """One round of exploration on predictions fitted on `records` (those measured before the round): a fresh
        strategy asks `candidates_per_round` subnets, told the exact cheap objectives and the predicted expensive
        ones; returns the candidates not in `records`, with their values."""
        cheap = [o for o in self.objectives if o.cheap]
        expensive = [o for o in self.objectives if not o.cheap]
        predictors = self._fit_predictors(expensive, records)
        measured = {_subnet_key(r["subnet"]) for r in records}
        strategy = self._new_strategy(self.seed + round_index)
        candidates: dict[str, tuple[SubnetConfig, dict[str, float]]] = {}
        seen: dict[str, dict[str, float]] = {}
        for _ in range(self.candidates_per_round):
            subnet = strategy.ask()
            key = _subnet_key(subnet.to_dict())
            values = seen.get(key)
            if values is None:
                values = seen[key] = {o.name: float(o(self.model, subnet)) for o in cheap}
                for o in expensive:
                    values[o.name] = float(predictors[o.name].predict([subnet])[0])
                if key not in measured:
                    candidates[key] = (subnet, values)
            self._tell(strategy, subnet, values)
        return list(candidates.values())

    def _choose(self, candidates: list[tuple[SubnetConfig, dict[str, float]]]) -> list[SubnetConfig]:
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

    def _fit_predictors(
        self, expensive: Sequence[Objective], records: Sequence[dict[str, Any]]
    ) -> dict[str, Predictor]:
        subnets = [SubnetConfig.from_dict(r["subnet"]) for r in records]
        return {
            o.name: Predictor(self.space, seed=self.seed).fit(subnets, [r["values"][o.name] for r in records])
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


def _subnet_key(subnet: dict[str, Any]) -> str:
    """One string per subnet (its dict as sorted JSON), to tell measured subnets apart."""
    return json.dumps(subnet, sort_keys=True)


def _json_copy(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), to compare with a saved file."""
    return json.loads(json.dumps(value))


def _objectives_mismatch(saved: list[dict[str, Any]], current: list[dict[str, Any]]) -> str | None:
    """How the objectives of a saved file differ from a search's (names and directions, else settings), or `None`."""
    if saved == current:
        return None
    saved_names = [(o["name"], o["direction"]) for o in saved]
    current_names = [(o["name"], o["direction"]) for o in current]
    if saved_names != current_names:
        return f"the file has {saved_names}, this search {current_names} (name, direction)"
    for old, new in zip(saved, current, strict=True):
        if old == new:
            continue
        old_settings, new_settings = old.get("settings"), new.get("settings")
        if not isinstance(old_settings, dict) or not isinstance(new_settings, dict) or old_settings == new_settings:
            return f"objective {old['name']!r} is {old} in the file, {new} in this search"
        keys = sorted(k for k in {*old_settings, *new_settings} if old_settings.get(k) != new_settings.get(k))
        return (
            f"objective {old['name']!r} was measured with other settings ({', '.join(keys)} differ: "
            f"{ {k: old_settings.get(k) for k in keys} } in the file, { {k: new_settings.get(k) for k in keys} } "
            "in this search)"
        )
    return None


def _warn_diverged(index: int) -> None:
    logger.warning(
        "the strategy does not propose the saved subnets again from record %d (other settings, or a strategy that is "
        "not seeded): the saved records are kept, the search goes on from them but not as the first run would have",
        index,
    )


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
