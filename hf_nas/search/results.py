"""The results of a subnet search: every measured subnet with its objective values, the Pareto front and its
hypervolume, saved as `search_results.json` (plus `pareto.csv` and `pareto.png`) and read back.

[`SearchResults`] is what [`~hf_nas.search.SubnetSearch.run`] returns and writes; [`SearchResults.from_dir`] reads
a search's output folder back and [`SearchResults.select`] picks one subnet from it. [`supernet_fingerprint`] ties
results to the supernet they were measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..search_space import SubnetConfig
from ..utils import atomic_write_text
from .constraints import Constraint, measured_violation
from .pareto import default_reference_point, hypervolume, pareto_front

__all__ = ["PARETO_CSV", "PARETO_PNG", "RESULTS_NAME", "RESULTS_VERSION", "SearchResults", "supernet_fingerprint"]

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
        candidates = self._satisfying(constraints)
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
        >>> from hf_nas import SearchResults, SearchSpace
        >>> from hf_nas.search.constraints import Constraint
        >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
        ...                     hidden_size=(16, 32), attention_head_size=8)
        >>> measured = [(space.smallest(), 0.7, 1e8), (space.middle(), 0.8, 4e8), (space.largest(), 0.9, 9e8)]
        >>> results = SearchResults(
        ...     objectives=[{"name": "accuracy", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        ...     records=[{"subnet": s.to_dict(), "values": {"accuracy": a, "macs": m}} for s, a, m in measured],
        ... )
        >>> index = results.select(constraints=[Constraint("macs", max_value=5e8)], maximize="accuracy")
        >>> subnet, card_pareto = results.subnet(index), results.pareto_position(index)
        >>> index, subnet == space.middle(), card_pareto["position"], card_pareto["size"]
        (1, True, 2, 3)
        >>> results.select(pareto_index=0)  # the front sorted by accuracy: the smallest subnet first
        0
        ```
        """
        constraints = list(constraints)
        if (pareto_index is None) == (maximize is None):
            raise ValueError(
                "Select with exactly one of `pareto_index` (a position on the Pareto front) or `maximize` (an objective "
                f"name, with optional `constraints`); got pareto_index={pareto_index!r}, maximize={maximize!r}."
            )
        if pareto_index is not None:
            return self._select_on_front(pareto_index, constraints)
        return self._select_best(maximize, constraints)

    def _satisfying(self, constraints: Sequence[Constraint] = ()) -> list[int]:
        """Indices (into `records`) of the feasible records whose measured values satisfy every one of
        `constraints`."""
        return [
            i
            for i in self.feasible()
            if all(measured_violation(c, self.records[i]["values"]) <= 0 for c in constraints)
        ]

    def _select_on_front(self, pareto_index: int, constraints: list[Constraint]) -> int:
        """The record at position `pareto_index` of the Pareto front."""
        if constraints:
            raise ValueError(f"`constraints` only apply with `maximize`, not with `pareto_index`; got {constraints}.")
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

    def _select_best(self, maximize: str, constraints: list[Constraint]) -> int:
        """The feasible record with the largest `maximize` value among those satisfying `constraints`."""
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
        candidates = self._satisfying(constraints)
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
        >>> import os, tempfile
        >>> from hf_nas import SearchResults, SubnetConfig
        >>> subnet = SubnetConfig.uniform(1, 2, 32, 16)
        >>> results = SearchResults(objectives=[{"name": "accuracy", "direction": "maximize"}],
        ...                         records=[{"subnet": subnet.to_dict(), "values": {"accuracy": 0.9}}])
        >>> folder = tempfile.mkdtemp()
        >>> results.save(folder, plot=False)  # what a search writes to its output_dir
        >>> sorted(os.listdir(folder))
        ['pareto.csv', 'search_results.json']
        >>> loaded = SearchResults.from_dir(folder)
        >>> loaded.names, loaded.subnet(0) == subnet
        (['accuracy'], True)
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
        names = _check_objectives(path, data.get("objectives"))
        _check_records(path, data.get("records"), names)
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


def _check_objectives(path: str, objectives: Any) -> list[str]:
    """The names of the `objectives` field of the results file `path`, checked: a non-empty list of
    `{'name': str, 'direction': 'maximize' or 'minimize', ...}`."""
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
    return [o["name"] for o in objectives]


def _check_records(path: str, records: Any, names: list[str]) -> None:
    """Check the `records` field of the results file `path`: each has a `subnet` object and a number per objective."""
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
