"""Constraints on objectives ("latency <= 10 ms", "macs <= 5e8") and the checks shared by search strategies.

[`Constraint`] states a bound on an objective, [`parse_constraints`] reads them from text (`"macs<=5e8,accuracy>=0.8"`),
[`check_constraints`] rejects empty or contradictory lists, [`evaluate_constraints`] turns measured objective values
into the constraint values a strategy is told, and [`best_feasible`] picks the best feasible evaluated subnet.

Constraint values follow one convention everywhere: <= 0 means feasible, > 0 is by how much a bound is violated.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..validation import check_floats, check_int
from .pareto import DIRECTIONS, check_directions

__all__ = [
    "DIRECTIONS",
    "Constraint",
    "best_feasible",
    "check_constraints",
    "check_directions",
    "evaluate_constraints",
    "is_feasible",
    "measured_violation",
    "parse_constraints",
]

_CONSTRAINT_TEXT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=)\s*(\S+)\s*$")


def is_feasible(constraint_values: Sequence[float] | None) -> bool:
    """Whether every constraint value is <= 0 (`None`, no constraints, is feasible)."""
    return constraint_values is None or all(v <= 0 for v in constraint_values)


def _format_bound(value: float) -> str:
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


@dataclass(frozen=True)
class Constraint:
    """A bound on one objective: feasible subnets have `min_value <= value <= max_value` (either bound optional).

    Args:
        objective (`str`): the name of the constrained objective (for example `"latency"` or `"macs"`).
        max_value (`float`, *optional*): the largest feasible value.
        min_value (`float`, *optional*): the smallest feasible value.

    Example:

    ```python
    >>> from hf_nas.search.constraints import Constraint
    >>> latency = Constraint("latency", max_value=10.0)
    >>> latency.violation(12.5), latency.violation(8.0)
    (2.5, -2.0)
    ```
    """

    objective: str = field(metadata={"help": "Name of the constrained objective."})
    max_value: float | None = field(default=None, metadata={"help": "Largest feasible value (inclusive)."})
    min_value: float | None = field(default=None, metadata={"help": "Smallest feasible value (inclusive)."})

    def __post_init__(self):
        if not isinstance(self.objective, str) or not self.objective:
            raise TypeError(f"`objective` must be a non-empty str, got {self.objective!r}.")
        if self.max_value is None and self.min_value is None:
            raise ValueError(f"Constraint on {self.objective!r} needs `max_value`, `min_value` or both; got neither.")
        for name in ("max_value", "min_value"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"`{name}` of the {self.objective!r} constraint must be a number, got {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` of the {self.objective!r} constraint must be finite, got {value}.")
            object.__setattr__(self, name, float(value))
        if self.max_value is not None and self.min_value is not None and self.min_value > self.max_value:
            raise ValueError(
                f"Contradictory constraint on {self.objective!r}: min_value={self.min_value} > "
                f"max_value={self.max_value}; no value can satisfy it."
            )

    def violation(self, value: float) -> float:
        """The constraint value of a measured objective value: <= 0 when feasible (minus the slack), > 0 by how much
        it is violated."""
        value = check_floats("value", [value])[0]
        worst = -math.inf
        if self.max_value is not None:
            worst = max(worst, value - self.max_value)
        if self.min_value is not None:
            worst = max(worst, self.min_value - value)
        return worst

    def is_satisfied(self, value: float) -> bool:
        return self.violation(value) <= 0

    def __str__(self) -> str:
        """The text [`parse_constraints`] reads back: `"macs<=5e+08"`, `"accuracy>=0.8"` or both bounds."""
        bounds = [(">=", self.min_value), ("<=", self.max_value)]
        return ",".join(f"{self.objective}{op}{_format_bound(value)}" for op, value in bounds if value is not None)


def measured_violation(constraint: Constraint, values: Mapping[str, float]) -> float:
    """How far measured objective `values` (name -> value) lie outside `constraint`: 0.0 when they satisfy it, else
    the distance to the violated bound. Unlike [`Constraint.violation`], a feasible value has no negative slack.

    ```python
    >>> budget = Constraint("macs", max_value=1e9)
    >>> measured_violation(budget, {"macs": 2e9}), measured_violation(budget, {"macs": 5e8})
    (1000000000.0, 0.0)
    ```
    """
    value = values[constraint.objective]
    worst = 0.0
    if constraint.max_value is not None:
        worst = max(worst, value - constraint.max_value)
    if constraint.min_value is not None:
        worst = max(worst, constraint.min_value - value)
    return worst


def check_constraints(constraints: Sequence[Constraint]) -> None:
    """Raise `ValueError` if `constraints` is empty or contradictory.

    Contradictory means: two constraints on the same objective with different `max_value`s (or different
    `min_value`s), or a combined `min_value` above the combined `max_value` of one objective. Constraints that repeat
    the same bound, or that give the lower and the upper bound of one objective separately, are fine.

    ```python
    >>> check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", min_value=2.0)])
    >>> check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", max_value=5.0)])
    Traceback (most recent call last):
    ...
    ValueError: Contradictory constraints on 'latency': max_value 10.0 and 5.0; give one bound per objective.
    ```
    """
    if isinstance(constraints, Constraint) or not isinstance(constraints, Sequence):
        raise TypeError(f"`constraints` must be a sequence of Constraint, got {type(constraints).__name__}.")
    if not constraints:
        raise ValueError("`constraints` is empty: give at least one Constraint(objective, max_value=...).")
    bounds: dict[str, dict[str, float]] = {}
    for i, constraint in enumerate(constraints):
        if not isinstance(constraint, Constraint):
            raise TypeError(f"`constraints[{i}]` must be a Constraint, got {type(constraint).__name__}.")
        _merge_bounds(bounds.setdefault(constraint.objective, {}), constraint)


def _merge_bounds(known: dict[str, float], constraint: Constraint) -> None:
    """Add the bounds of `constraint` to the `known` bounds of its objective; raise if they contradict."""
    for name in ("max_value", "min_value"):
        value = getattr(constraint, name)
        if value is None:
            continue
        if name in known and known[name] != value:
            raise ValueError(
                f"Contradictory constraints on {constraint.objective!r}: {name} {known[name]} and {value}; "
                "give one bound per objective."
            )
        known[name] = value
    if known.get("min_value", -math.inf) > known.get("max_value", math.inf):
        raise ValueError(
            f"Contradictory constraints on {constraint.objective!r}: min_value={known['min_value']} > "
            f"max_value={known['max_value']}; no value can satisfy both."
        )


def parse_constraints(text: str) -> list[Constraint]:
    """Constraints from text: `"NAME<=VALUE"` (a `max_value`) or `"NAME>=VALUE"` (a `min_value`), comma-separated
    for several. Objective names are not checked here: that is for whoever knows the objectives.

    ```python
    >>> [(c.objective, c.max_value, c.min_value) for c in parse_constraints("macs<=5e8, accuracy>=0.8")]
    [('macs', 500000000.0, None), ('accuracy', None, 0.8)]
    ```
    """
    if not isinstance(text, str):
        raise TypeError(
            f"Constraints must be given as a str like 'macs<=5e8', got {text!r} of type {type(text).__name__}."
        )
    constraints = []
    for part in text.split(","):
        match = _CONSTRAINT_TEXT.match(part)
        value = None
        if match is not None:
            with contextlib.suppress(ValueError):
                value = float(match.group(3))
        if value is None or not math.isfinite(value):
            raise ValueError(
                f"Cannot parse the constraint {part.strip()!r} of {text!r}: expected NAME<=VALUE or NAME>=VALUE with "
                "a finite number, comma-separated for several, e.g. 'macs<=5e8,accuracy>=0.8'."
            )
        name, op = match.group(1), match.group(2)
        constraints.append(Constraint(name, max_value=value) if op == "<=" else Constraint(name, min_value=value))
    return constraints


def evaluate_constraints(constraints: Sequence[Constraint], values: Mapping[str, float]) -> list[float]:
    """The constraint values (<= 0 feasible) of measured objective `values` (name -> value), in the order of
    `constraints`: what [`~hf_nas.search.strategies.SearchStrategy.tell`] takes as `constraint_values`.

    ```python
    >>> evaluate_constraints([Constraint("macs", max_value=1e9)], {"accuracy": 0.9, "macs": 2e9})
    [1000000000.0]
    ```
    """
    missing = sorted({c.objective for c in constraints} - set(values))
    if missing:
        raise ValueError(f"No value for the constrained objective(s) {missing}; measured: {sorted(values)}.")
    return [c.violation(values[c.objective]) for c in constraints]


def best_feasible(
    records: Sequence[Sequence[float]],
    objective_index: int,
    direction: str,
    constraint_values: Sequence[Sequence[float] | None] | None = None,
) -> int | None:
    """Index of the best record for one objective among the feasible records, or `None` if none is feasible.

    Args:
        records (`Sequence[Sequence[float]]`): the objective values of each evaluated subnet.
        objective_index (`int`): which objective to optimize.
        direction (`str`): `"maximize"` or `"minimize"`.
        constraint_values (`Sequence[Sequence[float] | None]`, *optional*): the constraint values of each record
            (<= 0 feasible; `None` for a record without constraints). All records are feasible when omitted.

    Ties go to the earliest record.

    ```python
    >>> best_feasible([[0.9, 12.0], [0.8, 6.0], [0.7, 4.0]], 0, "maximize", [[2.0], [-4.0], [-6.0]])
    1
    ```
    """
    check_int("objective_index", objective_index, 0)
    check_directions([direction])
    if constraint_values is not None and len(constraint_values) != len(records):
        raise ValueError(
            f"`constraint_values` has {len(constraint_values)} entries but there are {len(records)} records: "
            "give one entry (or None) per record."
        )
    best, best_value = None, None
    for i, values in enumerate(records):
        if objective_index >= len(values):
            raise ValueError(
                f"`objective_index`={objective_index} is out of range for record {i} with {len(values)} values; "
                f"allowed: 0 to {len(values) - 1}."
            )
        if constraint_values is not None and not is_feasible(constraint_values[i]):
            continue
        value = float(values[objective_index])
        if math.isnan(value):
            continue
        if best is None or (value > best_value if direction == "maximize" else value < best_value):
            best, best_value = i, value
    return best
