"""The results of a subnet search: every measured subnet with its objective values, the Pareto front and its
hypervolume, saved as `search_results.json` (plus `pareto.csv` and `pareto.png`) and read back.

[`SearchResults`] is what [`~hf_nas.search.SubnetSearch.run`] returns and writes; [`SearchResults.from_dir`] reads
a search's output folder back and [`SearchResults.select`] picks one subnet from it. [`supernet_fingerprint`] ties
results to the supernet they were measured on.

Two numbers name a subnet, the same way in every output:

- `record`: its position in `records` (the order of measurement), in `search_results.json`;
- `pareto_index`: its 0-based position on the Pareto front (in the order of [`SearchResults.pareto_indices`], by
  the first objective), what `hf-nas extract --pareto_index` takes.

`pareto.csv`, the printed front ([`SearchResults.format_front`]) and `pareto.png` show both.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..search_space import SubnetConfig
from ..utils import atomic_write_text
from .constraints import Constraint, measured_violation
from .pareto import default_reference_point, hypervolume, ideal_point, normalized_hypervolume, pareto_front

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "HYPERVOLUME_LABEL",
    "PARETO_CSV",
    "PARETO_PNG",
    "RESULTS_NAME",
    "RESULTS_VERSION",
    "SearchResults",
    "supernet_fingerprint",
]

RESULTS_NAME = "search_results.json"
PARETO_CSV = "pareto.csv"
PARETO_PNG = "pareto.png"
RESULTS_VERSION = 1
HYPERVOLUME_LABEL = "hypervolume (normalized, 1 = ideal)"

# objective name -> (axis label, unit, scale from the recorded value); MACs go as a share of the full model when known
_UNITS = {"latency": ("latency", "ms", 1.0), "params": ("parameters", "M", 1e-6), "macs": ("MACs", "G", 1e-9)}


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
    """Every measured subnet with its objectives, the Pareto front and its hypervolume.

    `full_model` holds the cheap objectives (MACs, parameters) of the whole supernet, so that MACs can be shown as
    a share of the full model's.

    `fixed_reference_point` and `fixed_ideal_point`, when set (a search sets them before it measures anything, see
    [`~hf_nas.search.Objective.reference_value`]), are the 0 and the 1 of every objective in the hypervolume: the
    majority class's accuracy, the full model's MACs and latency; the best possible values. Hypervolumes of
    different searches then compare. Without them, the reference point comes from the records themselves
    ([`~hf_nas.search.pareto.default_reference_point`]) and the ideal point is their best values.

    Each record holds the measured `subnet` (a [`~hf_nas.SubnetConfig`] dict) and its `values` (a finite number per
    objective), and optionally `source` (`"initial"`, `"predicted-front"` or the strategy's name), `round` (the
    predictor-guided round that chose it; a resumed search finishes that round) and `feasible` (whether it
    satisfies the constraints). [`load`] checks all of them.
    """

    objectives: list[dict[str, Any]]
    records: list[dict[str, Any]] = field(default_factory=list)
    constraints: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    predictor_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    full_model: dict[str, float] = field(default_factory=dict)
    fixed_reference_point: list[float] | None = None
    fixed_ideal_point: list[float] | None = None

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
        """The record numbers (indices into `records`) of the feasible non-dominated subnets, sorted by the first
        objective (ties by record number): `pareto_indices()[k]` is the record at `pareto_index` k."""
        feasible = self.feasible()
        if not feasible:
            return []
        values = self.values()[feasible]
        return self._sorted_front([feasible[i] for i in pareto_front(values, self.directions)])

    def _sorted_front(self, front: list[int]) -> list[int]:
        """The record numbers `front` in `pareto_index` order: by the first objective, ties by record number."""
        return sorted(front, key=lambda i: (self.records[i]["values"][self.names[0]], i))

    def pareto_rows(self) -> list[dict[str, Any]]:
        """One row per point of the front, in `pareto_index` order: `pareto_index`, `record`, `values` and `subnet`
        (a dict). The rows of `pareto.csv`, of [`format_front`] and the labels of [`figure`].

        ```python
        >>> from hf_nas import SearchResults, SubnetConfig
        >>> subnets = [SubnetConfig.uniform(d, 2, 32, 16) for d in (1, 2, 3)]
        >>> results = SearchResults(
        ...     objectives=[{"name": "accuracy", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        ...     records=[{"subnet": s.to_dict(), "values": {"accuracy": a, "macs": m}}
        ...              for s, a, m in zip(subnets, (0.9, 0.7, 0.8), (9e8, 1e8, 9.5e8))],
        ... )
        >>> [(row["pareto_index"], row["record"]) for row in results.pareto_rows()]  # record 2 is dominated
        [(0, 1), (1, 0)]
        ```
        """
        return self._rows(self.pareto_indices())

    def _rows(self, front: list[int]) -> list[dict[str, Any]]:
        """The rows of [`pareto_rows`] for the record numbers `front`, in `pareto_index` order."""
        return [
            {
                "pareto_index": k,
                "record": i,
                "values": {n: float(self.records[i]["values"][n]) for n in self.names},
                "subnet": self.records[i]["subnet"],
            }
            for k, i in enumerate(front)
        ]

    def hypervolume(self, reference_point: Sequence[float] | None = None) -> tuple[float, list[float]]:
        """The raw hypervolume of the feasible records (in the product of the objectives' units) and the reference
        point it is measured from (default: [`~hf_nas.search.pareto.default_reference_point`] of those records)."""
        if reference_point is None and self.fixed_reference_point is not None:
            reference_point = self.fixed_reference_point
        feasible = self.feasible()
        if not feasible:
            return 0.0, list(reference_point or [])
        values = self.values()[feasible].tolist()
        reference = (
            list(reference_point) if reference_point is not None else default_reference_point(values, self.directions)
        )
        return hypervolume(values, self.directions, reference), reference

    def normalized_hypervolume(
        self, reference_point: Sequence[float] | None = None, ideal: Sequence[float] | None = None
    ) -> tuple[float, list[float]]:
        """The hypervolume of the feasible records with every objective scaled to [0, 1] (0 at the reference point,
        1 at the ideal point; see [`~hf_nas.search.pareto.normalized_hypervolume`]), and the ideal point. Defaults:
        the reference point of [`hypervolume`] and the best recorded value of each objective. 0 without a feasible
        record.

        ```python
        >>> from hf_nas import SearchResults, SubnetConfig
        >>> results = SearchResults(
        ...     objectives=[{"name": "accuracy", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        ...     records=[{"subnet": SubnetConfig.uniform(d, 2, 32, 16).to_dict(), "values": {"accuracy": a, "macs": m}}
        ...              for d, a, m in ((1, 0.7, 1e8), (2, 0.9, 9e8))],
        ... )
        >>> value, ideal = results.normalized_hypervolume(reference_point=[0.5, 1e9])
        >>> round(value, 4), ideal  # 1 would be one subnet with accuracy 0.9 at 1e8 MACs
        (0.5556, [0.9, 100000000.0])
        ```
        """
        if ideal is None and self.fixed_ideal_point is not None and reference_point is None:
            ideal = self.fixed_ideal_point
        feasible = self.feasible()
        if not feasible:
            return 0.0, list(ideal or [])
        values = self.values()[feasible].tolist()
        _, reference = self.hypervolume(reference_point)
        best = list(ideal) if ideal is not None else ideal_point(values, self.directions)
        return normalized_hypervolume(values, self.directions, reference, best), best

    def display(self, name: str) -> tuple[str, float]:
        """How objective `name` is shown in the printed front and on the plot: its label with the unit, and the
        factor from the recorded value. MACs are a percentage of the full model's MACs when those are recorded (in
        G otherwise), parameters in M, latency in ms; other objectives as recorded.

        ```python
        >>> from hf_nas import SearchResults
        >>> results = SearchResults(objectives=[{"name": "macs", "direction": "minimize"}], full_model={"macs": 4e9})
        >>> results.display("macs"), results.display("latency")
        (('MACs (% of the full model)', 2.5e-08), ('latency (ms)', 1.0))
        ```
        """
        full = self.full_model.get(name)
        if name == "macs" and full:
            return "MACs (% of the full model)", 100.0 / full
        if name in _UNITS:
            label, unit, scale = _UNITS[name]
            return f"{label} ({unit})", scale
        return name, 1.0

    def format_front(self) -> str:
        """The Pareto front as a text table, one row per `pareto_index` with its `record`, the objectives in the
        units of [`display`] and the subnet, under a line with the [`normalized_hypervolume`].

        ```python
        >>> from hf_nas import SearchResults, SubnetConfig
        >>> results = SearchResults(
        ...     objectives=[{"name": "accuracy", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}],
        ...     records=[{"subnet": SubnetConfig.uniform(d, 2, 32, 16).to_dict(), "values": {"accuracy": a, "macs": m}}
        ...              for d, a, m in ((2, 0.9, 2e9), (1, 0.7, 1e9), (1, 0.6, 1.5e9))],
        ...     full_model={"macs": 4e9},
        ... )
        >>> print(results.format_front())
        Pareto front: 2 of 3 measured subnets; hypervolume (normalized, 1 = ideal) 0.449
        pareto_index  record  accuracy  MACs (% of the full model)  subnet
                   0       1       0.7                          25  layers=[0] heads=[2] ffn=[32] hidden=16
                   1       0       0.9                          50  layers=[0, 1] heads=[2, 2] ffn=[32, 32] hidden=16
        ```
        """
        rows = self.pareto_rows()
        hv, _ = self.normalized_hypervolume()
        header = [
            f"Pareto front: {len(rows)} of {len(self.records)} measured subnets; {HYPERVOLUME_LABEL} {hv:.4g}",
        ]
        columns = ["pareto_index", "record", *(self.display(n)[0] for n in self.names)]
        widths = [max(len(c), 6) for c in columns]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)) + "  subnet"]
        for row in rows:
            cells = [str(row["pareto_index"]), str(row["record"])]
            cells += [f"{row['values'][n] * self.display(n)[1]:.4g}" for n in self.names]
            lines.append(
                "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + "  " + _describe(row["subnet"])
            )
        return "\n".join(header + lines)

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
        record: int | None = None,
        constraints: Sequence[Constraint] = (),
        maximize: str | None = None,
    ) -> int:
        """The record number (index into `records`) of one subnet, chosen by exactly one of:

        - `pareto_index`: its 0-based position on the front, in the order of [`~SearchResults.pareto_indices`] (the
          `pareto_index` column of `pareto.csv`);
        - `record`: its record number itself, checked (the `record` column of `pareto.csv`; any measured subnet);
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
        >>> index, subnet == space.middle(), card_pareto["pareto_index"], card_pareto["size"]
        (1, True, 1, 3)
        >>> results.select(pareto_index=0)  # the front sorted by accuracy: the smallest subnet first
        0
        >>> results.select(record=2)
        2
        ```
        """
        constraints = list(constraints)
        given = [v for v in (pareto_index, record, maximize) if v is not None]
        if len(given) != 1:
            raise ValueError(
                "Select with exactly one of `pareto_index` (a position on the Pareto front), `record` (a record "
                "number) or `maximize` (an objective name, with optional `constraints`); got "
                f"pareto_index={pareto_index!r}, record={record!r}, maximize={maximize!r}."
            )
        if maximize is None and constraints:
            raise ValueError(
                f"`constraints` only apply with `maximize`, not with `pareto_index` or `record`; got {constraints}."
            )
        if pareto_index is not None:
            return self._select_on_front(pareto_index)
        if record is not None:
            return self._select_record(record)
        return self._select_best(maximize, constraints)

    def _satisfying(self, constraints: Sequence[Constraint] = ()) -> list[int]:
        """Indices (into `records`) of the feasible records whose measured values satisfy every one of
        `constraints`."""
        return [
            i
            for i in self.feasible()
            if all(measured_violation(c, self.records[i]["values"]) <= 0 for c in constraints)
        ]

    def _select_on_front(self, pareto_index: int) -> int:
        """The record at position `pareto_index` of the Pareto front."""
        if isinstance(pareto_index, bool) or not isinstance(pareto_index, int):
            raise TypeError(f"`pareto_index` must be an int, got {pareto_index!r}.")
        front = self.pareto_indices()
        if not front:
            raise ValueError("The Pareto front is empty: no feasible record was measured.")
        if not 0 <= pareto_index < len(front):
            raise ValueError(
                f"`pareto_index`={pareto_index} is out of range: the Pareto front has {len(front)} points; allowed: "
                f"0 to {len(front) - 1} (the pareto_index column of {PARETO_CSV}; record numbers go with `record`)."
            )
        return front[pareto_index]

    def _select_record(self, record: int) -> int:
        """`record`, checked against the number of records."""
        if isinstance(record, bool) or not isinstance(record, int):
            raise TypeError(f"`record` must be an int, got {record!r}.")
        if not 0 <= record < len(self.records):
            raise ValueError(
                f"`record`={record} is out of range: the search measured {len(self.records)} subnets; allowed: 0 to "
                f"{len(self.records) - 1} (the record column of {PARETO_CSV})."
            )
        return record

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
        [`~hf_nas.hub.build_model_card`]: `pareto_index` (0-based, in the order of `pareto_indices()`, i.e. of
        increasing first objective: the number `--pareto_index` takes), `record` (= `index`), `size`, `objectives`,
        `sorted_by` and its `values`; `None` when it is not on the front."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"`index` must be an int, got {index!r}.")
        if not 0 <= index < len(self.records):
            raise ValueError(f"`index`={index} is out of range: allowed 0 to {len(self.records) - 1} (the records).")
        front = self.pareto_indices()
        if index not in front:
            return None
        values = self.records[index]["values"]
        return {
            "pareto_index": front.index(index),
            "record": index,
            "size": len(front),
            "objectives": self.names,
            "sorted_by": self.names[0],
            "values": {name: float(values[name]) for name in self.names},
        }

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The content of `search_results.json`: besides the inputs, `hypervolume_normalized` (0 to 1, 1 = ideal)
        with its `reference_point` and `ideal_point`, the raw `hypervolume`, and `pareto`: the record numbers of the
        front in `pareto_index` order."""
        return {
            "version": RESULTS_VERSION,
            "fingerprint": self.fingerprint,
            "objectives": self.objectives,
            "constraints": self.constraints,
            "settings": self.settings,
            "predictor_scores": self.predictor_scores,
            "full_model": self.full_model,
            **self._front_summary(),
            "records": self.records,
        }

    def _front_summary(self) -> dict[str, Any]:
        """The front fields of [`to_dict`] (the same values as [`hypervolume`], [`normalized_hypervolume`] and
        [`pareto_indices`]) from one Pareto front computation, so a long search rewrites its file quickly. Dominated
        points change neither hypervolume nor the ideal point: both are computed on the front alone."""
        feasible = self.feasible()
        if not feasible:
            fixed = self.fixed_reference_point is not None and self.fixed_ideal_point is not None
            return {
                "hypervolume_normalized": 0.0,
                "hypervolume": 0.0,
                "reference_point": list(self.fixed_reference_point) if fixed else [],
                "ideal_point": list(self.fixed_ideal_point) if fixed else [],
                **({"reference_fixed": True} if fixed else {}),
                "pareto": [],
            }
        values = self.values()[feasible]  # (n, k)
        local = pareto_front(values, self.directions)
        front = values[local]
        fixed = self.fixed_reference_point is not None and self.fixed_ideal_point is not None
        if fixed:
            reference, ideal = list(self.fixed_reference_point), list(self.fixed_ideal_point)
        else:
            reference = default_reference_point(values, self.directions)
            ideal = ideal_point(front, self.directions)
        return {
            "hypervolume_normalized": normalized_hypervolume(front, self.directions, reference, ideal),
            "hypervolume": hypervolume(front, self.directions, reference),
            "reference_point": reference,
            "ideal_point": ideal,
            **({"reference_fixed": True} if fixed else {}),
            "pareto": self._sorted_front([feasible[i] for i in local]),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchResults:
        """Read a `search_results.json`, checked field by field: a hand-edited or foreign file raises `ValueError`
        naming the file, the field and what is allowed.

        ```python
        >>> import json, os, tempfile
        >>> from hf_nas import SearchResults
        >>> path = os.path.join(tempfile.mkdtemp(), "search_results.json")
        >>> record = {"subnet": {"num_hidden_layers": 1, "num_attention_heads": [2], "intermediate_size": [32],
        ...                      "hidden_size": 16}, "values": {"accuracy": "high"}}
        >>> with open(path, "w") as f:
        ...     json.dump({"version": 1, "objectives": [{"name": "accuracy", "direction": "maximize"}],
        ...                "records": [record]}, f)
        >>> try:
        ...     SearchResults.load(path)
        ... except ValueError as e:  # the message starts with the file's path
        ...     print(str(e).removeprefix(path + ": "))
        records[0]['values'] must map every objective of ['accuracy'] to a number; 'accuracy' is 'high' (a str).
        ```
        """
        path = os.fspath(path)
        data = _read_json(path)
        if not isinstance(data, dict) or data.get("version") != RESULTS_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: expected a JSON object with 'version': {RESULTS_VERSION}, got {found!r}.")
        names = _check_objectives(path, data.get("objectives"))
        _check_records(path, data.get("records"), names)
        _check_fields(path, data)
        reference, ideal = _fixed_points(path, data, names)
        return cls(
            objectives=data["objectives"],
            records=data["records"],
            constraints=data.get("constraints", []),
            fingerprint=data.get("fingerprint", ""),
            settings=data.get("settings", {}),
            predictor_scores=data.get("predictor_scores", {}),
            full_model=data.get("full_model", {}),
            fixed_reference_point=reference,
            fixed_ideal_point=ideal,
        )

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> SearchResults:
        """The results a search wrote to `folder` (its `search_results.json`), checked field by field (see
        [`load`]).

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
        return cls.load(path)

    def save(self, output_dir: str | os.PathLike, plot: bool = True) -> None:
        """Write `search_results.json`, `pareto.csv` and (with `plot`) `pareto.png`, each atomically.

        `pareto.csv` has one row per point of the front: `pareto_index` (what `hf-nas extract --pareto_index`
        takes), `record` (the record number, `--record`), one column per objective (recorded values and units) and
        `subnet_json`."""
        os.makedirs(output_dir, exist_ok=True)
        data = self.to_dict()
        atomic_write_text(os.path.join(output_dir, RESULTS_NAME), _results_json(data))
        lines = ["pareto_index,record," + ",".join(self.names) + ",subnet_json"]
        for row in self._rows(data["pareto"]):
            values = ",".join(repr(row["values"][n]) for n in self.names)
            subnet = json.dumps(row["subnet"], separators=(",", ":")).replace('"', '""')
            lines.append(f'{row["pareto_index"]},{row["record"]},{values},"{subnet}"')
        atomic_write_text(os.path.join(output_dir, PARETO_CSV), "\n".join(lines) + "\n")
        if plot and self.records:
            self.plot(os.path.join(output_dir, PARETO_PNG))

    def figure(self) -> Figure:
        """The plot of `pareto.png`: the first objective against each of the others, every measured subnet in grey
        (infeasible ones as crosses) and the front in red, each front point labelled with its `pareto_index`. Axes
        are in the units of [`display`] (MACs as a percentage of the full model's).

        ```python
        >>> from hf_nas import SearchResults, SubnetConfig
        >>> objectives = [{"name": "accuracy", "direction": "maximize"}, {"name": "latency", "direction": "minimize"}]
        >>> measured = [(SubnetConfig.uniform(d, 2, 32, 16), a, t) for d, a, t in ((1, 0.7, 2.0), (2, 0.9, 3.5))]
        >>> results = SearchResults(
        ...     objectives=objectives,
        ...     records=[{"subnet": s.to_dict(), "values": {"accuracy": a, "latency": t}} for s, a, t in measured],
        ... )
        >>> (ax,) = results.figure().axes
        >>> ax.get_xlabel(), ax.get_ylabel(), [t.get_text() for t in ax.texts]
        ('latency (ms)', 'accuracy', ['0', '1'])
        ```
        """
        from matplotlib.figure import Figure

        others = self.names[1:] or self.names
        fig = Figure(figsize=(5 * len(others), 4.2))
        axes = fig.subplots(1, len(others), squeeze=False)[0]
        for ax, name in zip(axes, others, strict=True):
            self._plot_plane(ax, name)
        fig.suptitle(
            f"{len(self.pareto_indices())} of {len(self.records)} measured subnets on the Pareto front; labels: "
            f"pareto_index (extract --pareto_index); {HYPERVOLUME_LABEL} {self.normalized_hypervolume()[0]:.3g}",
            fontsize=9,
        )
        fig.tight_layout()
        return fig

    def _plot_plane(self, ax: Any, name: str) -> None:
        """One panel of [`figure`]: the first objective (y) against `name` (x)."""
        first = self.names[0]
        (x_label, x_scale), (y_label, y_scale) = self.display(name), self.display(first)
        values, j = self.values(), self.names.index(name)
        x, y = values[:, j] * x_scale if len(values) else [], values[:, 0] * y_scale if len(values) else []
        feasible = np.array([r.get("feasible", True) for r in self.records], dtype=bool)
        if feasible.any():
            ax.scatter(x[feasible], y[feasible], s=12, c="0.6", label="measured subnets")
        if (~feasible).any():
            ax.scatter(x[~feasible], y[~feasible], s=14, c="0.75", marker="x", label="infeasible (constraints)")
        rows = self.pareto_rows()
        if rows:  # the front over all objectives, projected: its points need not be monotone in this plane
            front = [row["record"] for row in rows]
            ax.scatter(x[front], y[front], s=28, c="C3", label="Pareto front (all objectives)")
            for row in rows:
                i = row["record"]
                ax.annotate(
                    str(row["pareto_index"]), (x[i], y[i]), textcoords="offset points", xytext=(4, 3), fontsize=7
                )
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)

    def plot(self, path: str) -> None:
        """Save [`figure`] to `path` (a PNG, written atomically)."""
        fig = self.figure()
        tmp = f"{path}.tmp.png"
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)


def _results_json(data: dict[str, Any]) -> str:
    """The text of `search_results.json`: `data` indented, with its `records` (its last field) one compact line
    each, which keeps the file readable and quick to rewrite after every measurement of a long search."""
    records = data["records"]
    head = json.dumps({k: v for k, v in data.items() if k != "records"}, indent=1)
    lines = "".join(f"\n  {json.dumps(r)}," for r in records)[:-1] + "\n " if records else ""
    return f'{head[:-2]},\n "records": [{lines}]\n}}\n'


def _describe(subnet: dict[str, Any]) -> str:
    """A subnet dict in one line: kept layers, heads and FFN width per layer, hidden size."""
    layers = subnet.get("layers") or list(range(subnet["num_hidden_layers"]))
    return (
        f"layers={list(layers)} heads={list(subnet['num_attention_heads'])} ffn={list(subnet['intermediate_size'])} "
        f"hidden={subnet['hidden_size']}"
    )


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


def _read_json(path: str) -> Any:
    """The JSON content of the file `path`; `ValueError` naming the file if it is not JSON text."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); was it edited by hand or cut short?") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); expected the JSON a search writes.") from e


def _number_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` as the recorded value of objective `name` (a finite number), or `None`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name!r} is {value!r} (a {type(value).__name__})"
    if not math.isfinite(value):
        return f"{name!r} is {value!r} (only finite numbers are allowed)"
    return None


def _check_records(path: str, records: Any, names: list[str]) -> None:
    """Check the `records` field of the results file `path`: a list of objects, each with a `subnet` config, a
    finite number per objective in `values`, and the optional `source` (str), `round` (int >= 0), `feasible` (bool)."""
    if not isinstance(records, list):
        raise ValueError(f"{path}: 'records' must be a list, got {type(records).__name__}.")
    for i, record in enumerate(records):
        _check_record(path, i, record, names)


def _check_record(path: str, i: int, record: Any, names: list[str]) -> None:
    """Check `records[i]` of the results file `path` (see [`_check_records`])."""
    where = f"{path}: records[{i}]"
    if not isinstance(record, dict):
        raise ValueError(f"{where} must be an object with 'subnet' and 'values', got {type(record).__name__}.")
    if not isinstance(record.get("subnet"), dict):
        raise ValueError(f"{where} has no 'subnet' object (got {record.get('subnet')!r}).")
    try:
        SubnetConfig.from_dict(record["subnet"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}['subnet'] is not a subnet config: {e}") from e
    values = record.get("values")
    if not isinstance(values, dict):
        raise ValueError(
            f"{where}['values'] must map every objective of {names} to a number; got {type(values).__name__}."
        )
    for name in names:
        problem = f"{name!r} is missing" if name not in values else _number_problem(name, values[name])
        if problem is not None:
            raise ValueError(f"{where}['values'] must map every objective of {names} to a number; {problem}.")
    for key, kind, allowed in (("source", str, "a str"), ("feasible", bool, "true or false")):
        if key in record and not isinstance(record[key], kind):
            raise ValueError(f"{where}[{key!r}] must be {allowed}, got {record[key]!r}.")
    if "round" in record and (not isinstance(record["round"], int) or isinstance(record["round"], bool)):
        raise ValueError(f"{where}['round'] must be an int, got {record['round']!r}.")


def _check_fields(path: str, data: dict[str, Any]) -> None:
    """Check the optional fields of the results file `path`: their JSON types, and numbers in `full_model`."""
    kinds = {
        "fingerprint": (str, "a str"),
        "constraints": (list, "a list"),
        "settings": (dict, "an object"),
        "predictor_scores": (dict, "an object"),
        "full_model": (dict, "an object"),
    }
    for key, (kind, allowed) in kinds.items():
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"{path}: {key!r} must be {allowed}, got {data[key]!r}.")
    for i, constraint in enumerate(data.get("constraints", [])):
        if not isinstance(constraint, dict) or not isinstance(constraint.get("objective"), str):
            raise ValueError(
                f"{path}: constraints[{i}] must be {{'objective': str, 'max_value': ..., 'min_value': ...}}, got "
                f"{constraint!r}."
            )
    for name, value in data.get("full_model", {}).items():
        problem = _number_problem(name, value)
        if problem is not None:
            raise ValueError(f"{path}: 'full_model' must map objectives to numbers; {problem}.")


def _fixed_points(path: str, data: dict[str, Any], names: list[str]) -> tuple[list[float] | None, list[float] | None]:
    """The fixed reference and ideal points of the results file `path` (`reference_fixed: true`), checked: one
    finite number per objective each; `(None, None)` for a file whose reference point came from its records."""
    if "reference_fixed" not in data:
        return None, None
    if data["reference_fixed"] is not True:
        raise ValueError(f"{path}: 'reference_fixed' must be true when present, got {data['reference_fixed']!r}.")
    points = []
    for key in ("reference_point", "ideal_point"):
        point = data.get(key)
        if (
            not isinstance(point, list)
            or len(point) != len(names)
            or any(_number_problem(name, v) for name, v in zip(names, point, strict=True))
        ):
            raise ValueError(f"{path}: {key!r} must hold one finite number per objective {names}, got {point!r}.")
        points.append([float(v) for v in point])
    return points[0], points[1]
