"""Multi-objective subnet search over a trained supernet: measure, predict, keep the Pareto front.

[`SubnetSearch`] runs a strategy behind the ask/tell interface. With `use_predictors=True` (LINAS-style, as in
InstaTune) it alternates: fit one predictor per expensive objective (accuracy, latency) on the subnets measured so
far; let the strategy explore `candidates_per_round` candidates scored by the predictors and by the exact cheap
objectives (parameters, MACs); spend real evaluations only on the predicted Pareto front. Without predictors every
proposal is measured. Every measurement is written to `search_results.json` at once, so an interrupted search keeps
what it measured and resumes from the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..search_space import SubnetConfig
from ..utils import atomic_write_text
from .objectives import Objective
from .pareto import default_reference_point, hypervolume, pareto_front
from .predictors import Predictor
from .strategies import Constraint, SearchStrategy, check_constraints, get_strategy

__all__ = ["RESULTS_NAME", "SearchResults", "SubnetSearch", "supernet_fingerprint"]

logger = logging.getLogger(__name__)
RESULTS_NAME = "search_results.json"
PARETO_CSV = "pareto.csv"
PARETO_PNG = "pareto.png"
RESULTS_VERSION = 1


def supernet_fingerprint(model: Any) -> str:
    """A hash of the supernet's config (search space included) and weights: results of another supernet differ."""
    digest = hashlib.sha256()
    config = model.config.to_dict()
    for key in ("transformers_version", "_name_or_path", "architectures", "_attn_implementation_autoset"):
        config.pop(key, None)
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class SearchResults:
    """Every measured subnet with its objectives, the Pareto front and its hypervolume."""

    objectives: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    predictor_scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [o["name"] for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [o["direction"] for o in self.objectives]

    def values(self) -> np.ndarray:
        return np.array([[r["values"][n] for n in self.names] for r in self.records], dtype=float)

    def feasible(self) -> list[int]:
        return [i for i, r in enumerate(self.records) if r.get("feasible", True)]

    def pareto_indices(self) -> list[int]:
        """Indices (into `records`) of the feasible non-dominated subnets, sorted by the first objective."""
        feasible = self.feasible()
        if not feasible:
            return []
        values = self.values()[feasible]
        front = [feasible[i] for i in pareto_front(values.tolist(), self.directions)]
        return sorted(front, key=lambda i: self.records[i]["values"][self.names[0]])

    def hypervolume(self, reference_point: Sequence[float] | None = None) -> tuple[float, list[float]]:
        feasible = self.feasible()
        if not feasible:
            return 0.0, list(reference_point or [])
        values = self.values()[feasible].tolist()
        reference = (
            list(reference_point) if reference_point is not None else default_reference_point(values, self.directions)
        )
        return hypervolume(values, self.directions, reference), reference

    def subnet(self, index: int) -> SubnetConfig:
        return SubnetConfig.from_dict(self.records[index]["subnet"])

    def best(self, objective: str, constraints: Sequence[Constraint] = ()) -> int | None:
        """Index of the best record for `objective` among the feasible ones that satisfy `constraints`."""
        if objective not in self.names:
            raise ValueError(f"Unknown objective {objective!r}; recorded objectives: {self.names}.")
        direction = self.directions[self.names.index(objective)]
        candidates = [
            i for i in self.feasible() if all(_violation(c, self.records[i]["values"]) <= 0 for c in constraints)
        ]
        if not candidates:
            return None
        sign = 1 if direction == "maximize" else -1
        return max(candidates, key=lambda i: sign * self.records[i]["values"][objective])

    def select(
        self,
        *,
        pareto_index: int | None = None,
        constraints: Sequence[Constraint] = (),
        maximize: str | None = None,
    ) -> int:
        """Index (into `records`) of one subnet, chosen by exactly one of:

        - `pareto_index`: its 0-based position on the front, in the order of [`~SearchResults.pareto_indices`];
        - `maximize`: the feasible record with the largest value of that objective among those satisfying
          `constraints`.

        ```python
        >>> results = SearchResults.from_dir("out/search")  # doctest: +SKIP
        >>> index = results.select(constraints=[Constraint("macs", max_value=5e8)], maximize="accuracy")  # doctest: +SKIP
        >>> subnet, card_pareto = results.subnet(index), results.pareto_position(index)  # doctest: +SKIP
        ```
        """
        constraints = list(constraints)
        if (pareto_index is None) == (maximize is None):
            raise ValueError(
                "Select with exactly one of `pareto_index` (a position on the Pareto front) or `maximize` (an objective "
                f"name, with optional `constraints`); got pareto_index={pareto_index!r}, maximize={maximize!r}."
            )
        if pareto_index is not None:
            if constraints:
                raise ValueError(
                    f"`constraints` only apply with `maximize`, not with `pareto_index`; got {constraints}."
                )
            if isinstance(pareto_index, bool) or not isinstance(pareto_index, int):
                raise TypeError(f"`pareto_index` must be an int, got {pareto_index!r}.")
            front = self.pareto_indices()
            if not front:
                raise ValueError("The Pareto front is empty: no feasible record was measured.")
            if not 0 <= pareto_index < len(front):
                raise ValueError(
                    f"`pareto_index`={pareto_index} is out of range: the Pareto front has {len(front)} points; allowed: "
                    f"0 to {len(front) - 1}."
                )
            return front[pareto_index]
        if maximize not in self.names:
            raise ValueError(f"Unknown objective {maximize!r} for `maximize`; recorded objectives: {self.names}.")
        for constraint in constraints:
            if not isinstance(constraint, Constraint):
                raise TypeError(f"`constraints` must hold Constraint objects, got {constraint!r}.")
            if constraint.objective not in self.names:
                raise ValueError(
                    f"Constraint {str(constraint)!r} is on an unknown objective {constraint.objective!r}; recorded "
                    f"objectives: {self.names}."
                )
        candidates = [
            i for i in self.feasible() if all(_violation(c, self.records[i]["values"]) <= 0 for c in constraints)
        ]
        if not candidates:
            ranges = {
                name: (min(r["values"][name] for r in self.records), max(r["values"][name] for r in self.records))
                for name in dict.fromkeys(c.objective for c in constraints)
            }
            text = ",".join(map(str, constraints)) or "(no constraints)"
            raise ValueError(
                f"No measured subnet satisfies {text} among the {len(self.feasible())} feasible records of "
                f"{len(self.records)}; recorded (min, max): {ranges}."
            )
        return max(candidates, key=lambda i: self.records[i]["values"][maximize])

    def pareto_position(self, index: int) -> dict[str, Any] | None:
        """Where `records[index]` lies on the Pareto front, as the `pareto` argument of
        [`~hf_nas.hub.build_model_card`]: `position` (1-based, in the order of `pareto_indices()`, i.e. of increasing
        first objective), `size`, `objectives`, `sorted_by` and its `values`; `None` when it is not on the front."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"`index` must be an int, got {index!r}.")
        if not 0 <= index < len(self.records):
            raise ValueError(f"`index`={index} is out of range: allowed 0 to {len(self.records) - 1} (the records).")
        front = self.pareto_indices()
        if index not in front:
            return None
        values = self.records[index]["values"]
        return {
            "position": front.index(index) + 1,
            "size": len(front),
            "objectives": self.names,
            "sorted_by": self.names[0],
            "values": {name: float(values[name]) for name in self.names},
        }

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        hv, reference = self.hypervolume()
        return {
            "version": RESULTS_VERSION,
            "fingerprint": self.fingerprint,
            "objectives": self.objectives,
            "constraints": self.constraints,
            "settings": self.settings,
            "predictor_scores": self.predictor_scores,
            "hypervolume": hv,
            "reference_point": reference,
            "pareto": self.pareto_indices(),
            "records": self.records,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchResults:
        with open(path) as f:
            data = json.load(f)
        if data.get("version") != RESULTS_VERSION:
            raise ValueError(f"{path}: unsupported results version {data.get('version')!r}; expected 1.")
        return cls(
            objectives=data["objectives"],
            records=data["records"],
            constraints=data.get("constraints", []),
            fingerprint=data.get("fingerprint", ""),
            settings=data.get("settings", {}),
            predictor_scores=data.get("predictor_scores", {}),
        )

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> SearchResults:
        """The results a search wrote to `folder` (its `search_results.json`), checked field by field.

        ```python
        >>> results = SearchResults.from_dir("out/search")  # doctest: +SKIP
        ```
        """
        path = os.path.join(folder, RESULTS_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"No {RESULTS_NAME} in {os.fspath(folder)!r}: pass the output folder of a search (SubnetSearch "
                "output_dir, scripts/search_subnets.py --output_dir)."
            )
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(data, dict) or data.get("version") != RESULTS_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: expected a JSON object with 'version': {RESULTS_VERSION}, got {found!r}.")
        objectives = data.get("objectives")
        if not isinstance(objectives, list) or not objectives:
            raise ValueError(f"{path}: 'objectives' must be a non-empty list, got {objectives!r}.")
        for i, objective in enumerate(objectives):
            if (
                not isinstance(objective, dict)
                or not isinstance(objective.get("name"), str)
                or objective.get("direction") not in ("maximize", "minimize")
            ):
                raise ValueError(
                    f"{path}: objectives[{i}] must be {{'name': str, 'direction': 'maximize' or 'minimize', "
                    f"'settings': {{...}}}}, got {objective!r}."
                )
        names = [o["name"] for o in objectives]
        records = data.get("records")
        if not isinstance(records, list):
            raise ValueError(f"{path}: 'records' must be a list, got {type(records).__name__}.")
        for i, record in enumerate(records):
            if not isinstance(record, dict) or not isinstance(record.get("subnet"), dict):
                raise ValueError(f"{path}: records[{i}] has no 'subnet' object.")
            values = record.get("values")
            if not isinstance(values, dict) or not all(
                isinstance(values.get(n), (int, float)) and not isinstance(values.get(n), bool) for n in names
            ):
                raise ValueError(f"{path}: records[{i}]['values'] must map every objective of {names} to a number.")
        return cls.load(path)

    def save(self, output_dir: str | os.PathLike, plot: bool = True) -> None:
        """Write `search_results.json`, `pareto.csv` and (with `plot`) `pareto.png`, each atomically."""
        os.makedirs(output_dir, exist_ok=True)
        atomic_write_text(os.path.join(output_dir, RESULTS_NAME), json.dumps(self.to_dict(), indent=1) + "\n")
        lines = ["index," + ",".join(self.names) + ",subnet_json"]
        for i in self.pareto_indices():
            values = ",".join(repr(float(self.records[i]["values"][n])) for n in self.names)
            subnet = json.dumps(self.records[i]["subnet"], separators=(",", ":")).replace('"', '""')
            lines.append(f'{i},{values},"{subnet}"')
        atomic_write_text(os.path.join(output_dir, PARETO_CSV), "\n".join(lines) + "\n")
        if plot and self.records:
            self.plot(os.path.join(output_dir, PARETO_PNG))

    def plot(self, path: str) -> None:
        """The first objective against each of the others, all measured subnets and the front highlighted."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        others = self.names[1:] or self.names
        fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 4), squeeze=False)
        values, front = self.values(), self.pareto_indices()
        first = self.names[0]
        for ax, name in zip(axes[0], others, strict=True):
            j = self.names.index(name)
            ax.scatter(values[:, j], values[:, 0], s=12, c="0.6", label="measured subnets")
            if front:  # the front over all objectives, projected: its points need not be monotone in this plane
                ax.scatter(values[front, j], values[front, 0], s=28, c="C3", label="Pareto front (all objectives)")
            ax.set_xlabel(name)
            ax.set_ylabel(first)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        tmp = f"{path}.tmp.png"
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, path)


def _violation(constraint: Constraint, values: dict[str, float]) -> float:
    value = values[constraint.objective]
    worst = 0.0
    if constraint.max_value is not None:
        worst = max(worst, value - constraint.max_value)
    if constraint.min_value is not None:
        worst = max(worst, constraint.min_value - value)
    return worst


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
    >>> search = SubnetSearch(model, [accuracy, get_objective("macs")], "nsga2", num_evaluations=100,
    ...                       output_dir="out/search")  # doctest: +SKIP
    >>> results = search.run()  # doctest: +SKIP
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
        if not objectives:
            raise ValueError("Give at least one objective.")
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"Objective names must be unique, got {names}.")
        for name, value in (
            ("num_evaluations", num_evaluations),
            ("candidates_per_round", candidates_per_round),
            ("evaluations_per_round", evaluations_per_round),
            ("initial_evaluations", initial_evaluations),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        constraints = list(constraints)
        if constraints:
            check_constraints(constraints)
            unknown = [c.objective for c in constraints if c.objective not in names]
            if unknown:
                raise ValueError(f"Constraints on unknown objectives {unknown}; objectives: {names}.")
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
        )

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

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
        record["feasible"] = all(_violation(c, values) <= 0 for c in self.constraints)
        self.results.records.append(record)
        self._save()
        return record

    def _constraint_values(self, values: dict[str, float]) -> list[float] | None:
        if not self.constraints:
            return None
        return [_violation(c, values) for c in self.constraints]

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
        cheap = [o for o in self.objectives if o.cheap]
        expensive = [o for o in self.objectives if not o.cheap]
        rng = np.random.default_rng(self.seed)
        # 1. a seeded random start, measured for real
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
        # 2. rounds: fit predictors, explore on predictions, measure the predicted front
        round_index = len(self.results.records)
        while len(self.results.records) < self.num_evaluations:
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
            chosen = self._choose(list(candidates.values()), rng)
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

    def _choose(self, candidates: list[tuple[SubnetConfig, dict[str, float]]], rng: np.random.Generator):
        """Up to `evaluations_per_round` feasible candidates from the predicted front (then the next fronts)."""
        pool = [(s, v) for s, v in candidates if all(_violation(c, v) <= 0 for c in self.constraints)]
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
