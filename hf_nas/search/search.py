"""Multi-objective subnet search over a trained supernet: measure, predict, keep the Pareto front.

[`SubnetSearch`] runs a strategy behind the ask/tell interface, in rounds of `evaluations_per_round` subnets. With
`use_predictors=True` (LINAS-style, as in InstaTune) it alternates: fit one predictor per expensive objective
(accuracy, latency) on the subnets measured so far; let the strategy explore `candidates_per_round` candidates scored
by the predictors and by the exact cheap objectives (parameters, MACs), starting from the measured front
([`~hf_nas.search.strategies.linas.screen_candidates`]); spend real evaluations only on the predicted Pareto front.
Without predictors every proposal of the strategy is measured (the `"linas"` strategy screens with predictors
itself).

With `reference_point="fixed"` the hypervolume is measured from a reference point fixed before the search (each
objective's [`~hf_nas.search.Objective.reference_value`], e.g. the majority class's accuracy and the full model's
MACs and latency) to the ideal point (each objective's best possible value), over every objective, so hypervolumes
of different searches compare.

Under `torchrun` or `accelerate launch` (a `torch.distributed` process group, see
[`~hf_nas.search.distributed.init_search_processes`]) the subnets of a round are shared among the processes: each
measures its share of the task metric and other untimed objectives, timed objectives (latency) are measured by the
main process alone, the values are gathered so that every process tells its strategy the same, and only the main
process writes. The records are those of a one-process search with the same seed.

An output folder is safe to interrupt and to share:

- every measurement is written to `search_results.json` at once, atomically (a crash, even `kill -9`, leaves the
  previous complete file), so an interrupted search keeps what it measured;
- rerun on the same folder, the search checks that file (a hand-edited one is refused with the field at fault, and
  left as it is), never measures a saved subnet again, and goes on exactly as the uninterrupted search would have:
  same records in the same order, same Pareto front (over several processes, the main process writes once per
  round, so a killed run loses at most the round in flight);
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

from tqdm.auto import tqdm

from ..search_space import SubnetConfig
from ..utils import OutputLockedError, output_lock
from .constraints import Constraint, check_constraints, measured_violation
from .distributed import SearchProcesses
from .objectives import Objective
from .predictors import Predictor, held_out_split
from .results import HYPERVOLUME_LABEL, PARETO_CSV, PARETO_PNG, RESULTS_NAME, SearchResults, supernet_fingerprint
from .strategies import STRATEGIES, EvaluatedSubnet, SearchStrategy, get_strategy
from .strategies.linas import screen_candidates

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
        use_predictors: screen candidates with predictors of the expensive objectives (LINAS-style); a strategy that
            screens with predictors itself (`"linas"`) runs as it is.
        candidates_per_round / initial_evaluations: the predictor-guided loop's sizes (also given to a strategy
            that takes them, such as `"linas"`).
        evaluations_per_round: subnets measured per round: the predicted front's size with predictors; the subnets
            asked before their values are told without (the share of a round among processes).
        output_dir: where results are written (and resumed from); `None` keeps them in memory.
        seed: seeds the strategy and the predictors.
        reference_point: the hypervolume's reference point: `None` (default) takes it from the records' own range
            (comparable within one search only); `"fixed"` sets it before the search from each objective's
            `reference_value` (and the ideal point from `ideal_value`: comparable across searches; `hf-nas search`
            does this), falling back to the records' range when an objective has none; or one value per objective.
        processes: the processes of the search (default: those of the initialized `torch.distributed` process
            group, else this one alone).
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
        reference_point: str | Sequence[float] | None = None,
        processes: SearchProcesses | None = None,
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
        if not (reference_point is None or reference_point == "fixed" or _is_point(reference_point, len(objectives))):
            raise ValueError(
                f"`reference_point` must be 'fixed', None or one number per objective ({len(objectives)}), got "
                f"{reference_point!r}."
            )
        self.reference_point = reference_point
        self.processes = processes if processes is not None else SearchProcesses()
        self.model = model
        self.space = model.search_space
        self.objectives = list(objectives)
        self.processes.one_at_a_time(lambda: [o.prepare(model) for o in self.objectives])
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
        self.show_progress = show_progress and self.processes.is_main
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
    # the output folder: lock, resume, writes (the main process only)
    @contextmanager
    def _output_lock(self) -> Iterator[None]:
        """Hold the lock of `output_dir` (nothing without one, or in a process other than the main one), waiting up
        to `wait_for_lock` seconds for it."""
        if self.output_dir is None or not self.processes.is_main:
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
        """Take the records (and the fixed reference point) of the output folder's `search_results.json` when there
        is one, checked against this search; raises `ValueError` naming the file and the problem, before anything
        is written. The main process reads the file; every process gets its content."""

        def read() -> tuple[list[dict[str, Any]], list[float] | None, list[float] | None] | None:
            path = os.path.join(self.output_dir, RESULTS_NAME) if self.output_dir else None
            if path is None or not os.path.isfile(path):
                return None
            previous = SearchResults.load(path)
            self._check_resumable(path, previous)
            logger.info("resuming from %s with %d measured subnets", path, len(previous.records))
            return previous.records, previous.fixed_reference_point, previous.fixed_ideal_point

        saved = self.processes.on_main(read)
        if saved is None:
            return
        self.results.records, reference, ideal = saved
        if self.reference_point == "fixed" and reference is not None and ideal is not None:
            self.results.fixed_reference_point, self.results.fixed_ideal_point = reference, ideal

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
        if self.output_dir is None or not self.processes.is_main or not os.path.isdir(self.output_dir):
            return
        prefixes = tuple(f".{name}.tmp-" for name in (RESULTS_NAME, PARETO_CSV))
        for name in os.listdir(self.output_dir):
            if name.startswith(prefixes) or name == f"{PARETO_PNG}.tmp.png":
                os.remove(os.path.join(self.output_dir, name))

    def _save(self) -> None:
        if self.output_dir is not None and self.processes.is_main:
            self.results.save(self.output_dir, plot=False)

    # ------------------------------------------------------------------------------------------------------------
    # the hypervolume's reference point
    def _fix_reference_point(self) -> None:
        """Set the results' fixed reference and ideal points (unless resumed with them, or not asked for): each
        objective's `reference_value` and `ideal_value`, computed by the main process (a latency is timed). If an
        objective has none, the records' own range is used instead, with a warning."""
        if self.reference_point is None or self.results.fixed_reference_point is not None:
            return
        if self.reference_point != "fixed":
            reference = [float(v) for v in self.reference_point]
            ideal = [_ideal(o) for o in self.objectives]
        else:

            def values() -> tuple[list[float | None], list[float | None]]:
                return [o.reference_value(self.model) for o in self.objectives], [_ideal(o) for o in self.objectives]

            reference, ideal = self.processes.on_main(values)
        missing = [o.name for o, r, i in zip(self.objectives, reference, ideal, strict=True) if r is None or i is None]
        if missing:
            logger.warning(
                "the objectives %s have no fixed reference or ideal value: the hypervolume's reference point comes "
                "from the measured values instead, so it is not comparable across searches",
                missing,
            )
            return
        signs = [1.0 if o.direction == "maximize" else -1.0 for o in self.objectives]
        if any(s * (i - r) <= 0 for s, r, i in zip(signs, reference, ideal, strict=True)):
            raise ValueError(
                f"The reference point {reference} is not worse than the ideal point {ideal} in every objective "
                f"({self.directions}); give a `reference_point` worse than every subnet worth keeping."
            )
        self.results.fixed_reference_point = [float(v) for v in reference]
        self.results.fixed_ideal_point = [float(v) for v in ideal]

    # ------------------------------------------------------------------------------------------------------------
    # measuring
    def _record(self, subnet: SubnetConfig, values: dict[str, float], source: str, round_index: int | None) -> dict:
        values = {o.name: float(values[o.name]) for o in self.objectives}
        record: dict[str, Any] = {"subnet": subnet.to_dict(), "values": values, "source": source}
        if round_index is not None:
            record["round"] = round_index
        record["feasible"] = all(measured_violation(c, values) <= 0 for c in self.constraints)
        self.results.records.append(record)
        return record

    def _measure(self, subnet: SubnetConfig, source: str, round_index: int | None = None) -> dict[str, Any]:
        values = {o.name: float(o(self.model, subnet)) for o in self.objectives}
        record = self._record(subnet, values, source, round_index)
        self._save()
        return record

    def _measure_round(
        self, subnets: Sequence[SubnetConfig], source: str, round_index: int | None = None
    ) -> list[dict[str, Any]]:
        """Measure `subnets` and append their records, in order. One process measures and saves them one by one;
        several share them: each measures its share of the untimed objectives, the main process the timed ones
        (`Objective.exclusive`), and the main process saves the round."""
        if not self.processes.distributed:
            return [self._measure(subnet, source, round_index) for subnet in subnets]
        shared = [o for o in self.objectives if not o.exclusive]
        timed = [o for o in self.objectives if o.exclusive]

        def share() -> dict[int, dict[str, float]]:
            return {
                i: {o.name: float(o(self.model, subnets[i])) for o in shared}
                for i in self.processes.share(len(subnets))
            }

        values: dict[int, dict[str, float]] = {i: {} for i in range(len(subnets))}
        for part in self.processes.collect(share):
            for i, measured in part.items():
                values[i].update(measured)
        if timed:  # one process at a time: the main one times them all while the others wait
            times = self.processes.on_main(lambda: [{o.name: float(o(self.model, s)) for o in timed} for s in subnets])
            for i, measured in enumerate(times):
                values[i].update(measured)
        records = [self._record(s, values[i], source, round_index) for i, s in enumerate(subnets)]
        self._save()
        return records

    def _constraint_values(self, values: dict[str, float]) -> list[float] | None:
        if not self.constraints:
            return None
        return [measured_violation(c, values) for c in self.constraints]

    def _tell(self, strategy: SearchStrategy, subnet: SubnetConfig, values: dict[str, float]) -> None:
        strategy.tell(subnet, [values[o.name] for o in self.objectives], self._constraint_values(values))

    def _exact_objectives(self) -> dict[int, Callable[[SubnetConfig], float]]:
        """Objective index -> its exact function of a subnet, for the cheap objectives (never predicted)."""
        return {
            i: (lambda subnet, o=o: float(o(self.model, subnet))) for i, o in enumerate(self.objectives) if o.cheap
        }

    def _new_strategy(self, seed: int) -> SearchStrategy:
        """The strategy `strategy_name` seeded with `seed`, given the search's cheap constraints and, when it takes
        them, the round sizes and the exact cheap objectives (as the `"linas"` strategy does)."""
        options: dict[str, Any] = {}
        accepted = STRATEGIES.options(STRATEGIES[self.strategy_name])[0] if self.strategy_name in STRATEGIES else []
        for name in ("initial_evaluations", "evaluations_per_round", "candidates_per_round"):
            if name in accepted:
                options[name] = getattr(self, name)
        if "exact_objectives" in accepted:
            exact = self._exact_objectives()
            if len(exact) < len(self.objectives):
                options["exact_objectives"] = exact
        return get_strategy(
            self.strategy_name,
            self.space,
            self.directions,
            seed=seed,
            constraints=self._cheap_constraints(),
            **options,
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

    def _screens_itself(self) -> bool:
        """Whether the strategy screens candidates with predictors itself (then the direct loop runs it)."""
        strategy = self._strategy if self._strategy is not None else STRATEGIES.get(self.strategy_name)
        return bool(getattr(strategy, "screens_with_predictors", False))

    # ------------------------------------------------------------------------------------------------------------
    def run(self) -> SearchResults:
        """Run (or resume) the search until `num_evaluations` subnets are measured; returns the results.

        With an `output_dir` the whole run holds its lock: raises [`~hf_nas.utils.OutputLockedError`] when another
        process writes that folder (after waiting `wait_for_lock` seconds), and `ValueError` naming the file and the
        field when its `search_results.json` cannot be resumed (the file is left untouched)."""
        with self._output_lock():
            self._resume()
            self._remove_temporaries()
            self._fix_reference_point()
            progress = tqdm(
                total=self.num_evaluations,
                initial=len(self.results.records),
                desc="search",
                disable=not self.show_progress,
            )
            try:
                if self.use_predictors and not self._screens_itself():
                    self._run_with_predictors(progress)
                else:
                    self._run_direct(progress)
            finally:
                progress.close()
            self.results.predictor_scores = self._score_predictors()
            if self.output_dir is not None and self.processes.is_main:
                self.results.save(self.output_dir, plot=True)
        logger.info("%s: %.4g", HYPERVOLUME_LABEL, self.results.normalized_hypervolume()[0])
        return self.results

    def _run_direct(self, progress: tqdm) -> None:
        """Measure every new subnet the strategy asks, in rounds: the strategy is asked until `evaluations_per_round`
        subnets new to it are proposed, the unmeasured ones are measured (shared among the processes), then every
        proposal is told its values. A resumed search replays its records through the same rounds (asked in the
        order they were measured, told their saved values), so the strategy reaches the state of the uninterrupted
        search and goes on with the same proposals."""
        strategy = self._strategy or self._new_strategy(self.seed)
        known = {_subnet_key(r["subnet"]): r for r in self.results.records}  # every measured subnet
        to_replay = list(known)[::-1]  # saved subnets not asked yet, the next one last
        told: set[str] = set()
        while len(known) < self.num_evaluations:
            size = min(self.evaluations_per_round, self.num_evaluations - len(told))
            asked: list[tuple[SubnetConfig, str]] = []
            fresh: set[str] = set()  # proposed for the first time in this round
            new: dict[str, SubnetConfig] = {}  # to measure
            while len(fresh) < size and len(known) + len(new) < self.num_evaluations:
                subnet = strategy.ask()
                key = _subnet_key(subnet.to_dict())
                asked.append((subnet, key))
                if key not in told and key not in fresh:
                    fresh.add(key)
                    if key not in known:
                        if to_replay:
                            _warn_diverged(len(self.results.records) - len(to_replay))
                            to_replay.clear()
                        new[key] = subnet
                    elif to_replay and to_replay[-1] == key:
                        to_replay.pop()
                if len(asked) > 100 * (size + 1):  # a repeat costs no evaluation, but this strategy is stuck
                    break
            for record in self._measure_round(list(new.values()), self.strategy_name):
                known[_subnet_key(record["subnet"])] = record
                progress.update(1)
            for subnet, key in asked:
                self._tell(strategy, subnet, known[key]["values"])
            told |= fresh
            if len(fresh) < size and len(known) < self.num_evaluations:
                logger.warning("the strategy keeps proposing measured subnets: stopping early")
                return

    def _run_with_predictors(self, progress: tqdm) -> None:
        # 1. a seeded random start, measured for real
        self._measure_initial(progress)
        # 2. rounds: fit predictors, explore on predictions, measure the predicted front. A resumed search redoes
        # the exploration of its last round (seeded, on the records before it) and measures what that round left.
        round_index, done = self._last_round()
        while len(self.results.records) < self.num_evaluations:
            before = self.results.records[: len(self.results.records) - done]
            chosen = self._explore(round_index, before)
            saved = [_subnet_key(r["subnet"]) for r in self.results.records[len(before) :]]
            if saved != [_subnet_key(s.to_dict()) for s in chosen[:done]]:
                _warn_diverged(len(before))
                round_index, done = round_index + 1, 0
                continue
            if not chosen:
                logger.warning("no new candidate left to measure: stopping early")
                return
            left = self.num_evaluations - len(self.results.records)
            for _ in self._measure_round(chosen[done:][:left], "predicted-front", round_index):
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
        """Measure seeded random subnets (that satisfy the cheap constraints) until `initial_evaluations` are, in
        rounds of `evaluations_per_round`. A resumed search draws the same sequence and skips the subnets it
        measured."""
        generator = random.Random(self.seed)
        cheap_constraints = self._cheap_constraints()
        measured = {_subnet_key(r["subnet"]) for r in self.results.records}
        to_measure: list[SubnetConfig] = []
        attempts = 0
        while len(self.results.records) + len(to_measure) < self.initial_evaluations:
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
            to_measure.append(subnet)
            measured.add(key)
        for start in range(0, len(to_measure), self.evaluations_per_round):
            for _ in self._measure_round(to_measure[start : start + self.evaluations_per_round], "initial"):
                progress.update(1)

    def _explore(self, round_index: int, records: Sequence[dict[str, Any]]) -> list[SubnetConfig]:
        """One screening round on predictions fitted on `records` (those measured before the round), seeded by its
        number: up to `evaluations_per_round` feasible subnets of the predicted front, not in `records`."""
        names = [o.name for o in self.objectives]
        measured = [
            EvaluatedSubnet(
                SubnetConfig.from_dict(r["subnet"]),
                tuple(r["values"][n] for n in names),
                tuple(self._constraint_values(r["values"]) or ()),
            )
            for r in records
        ]

        def feasible(values: Sequence[float]) -> bool:
            named = dict(zip(names, values, strict=True))
            return all(measured_violation(c, named) <= 0 for c in self.constraints)

        chosen = screen_candidates(
            self.space,
            self.directions,
            measured,
            num_candidates=self.candidates_per_round,
            num_chosen=self.evaluations_per_round,
            exact_objectives=self._exact_objectives(),
            strategy=self.strategy_name,
            seed=self.seed + round_index,
            constraints=self._cheap_constraints(),
            feasible=feasible if self.constraints else None,
        )
        return [subnet for subnet, _ in chosen]

    def _score_predictors(self) -> dict[str, dict[str, float]]:
        """Held-out error of each expensive objective's predictor: fit on 80% of the measured subnets, scored (MAE,
        Kendall tau) on the other 20%, split by [`~hf_nas.search.predictors.held_out_split`] (no subnet on both
        sides)."""
        records = self.results.records
        subnets = [SubnetConfig.from_dict(r["subnet"]) for r in records]
        if len(set(subnets)) < 10:
            return {}
        fit, held_out = held_out_split(subnets, test_fraction=0.2, seed=self.seed)
        scores = {}
        for o in self.objectives:
            if o.cheap:
                continue
            values = [r["values"][o.name] for r in records]
            predictor = Predictor(self.space, seed=self.seed).fit([subnets[i] for i in fit], [values[i] for i in fit])
            score = predictor.score([subnets[i] for i in held_out], [values[i] for i in held_out])
            scores[o.name] = {k: float(v) for k, v in score.items()}
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


def _ideal(objective: Objective) -> float | None:
    return objective.ideal_value()


def _is_point(value: Any, length: int) -> bool:
    """Whether `value` is a sequence of `length` finite numbers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != length:
        return False
    return all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and v == v and abs(v) != float("inf") for v in value
    )
