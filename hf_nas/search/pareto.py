"""Pareto fronts and exact hypervolumes of multi-objective search results.

Every function takes the objective values as rows (one row per subnet, one column per objective) and one direction
per column, `"maximize"` or `"minimize"` (the `direction` of each [`~hf_nas.search.objectives.Objective`]).

Point `a` *dominates* point `b` when `a` is at least as good as `b` in every objective and strictly better in at least
one. Identical points do not dominate each other, so duplicates of a non-dominated point are all on the front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DIRECTIONS",
    "anytime_hypervolume",
    "check_directions",
    "default_reference_point",
    "hypervolume",
    "ideal_point",
    "normalized_hypervolume",
    "pareto_front",
]

DIRECTIONS = ("maximize", "minimize")

# Rows compared at once in `pareto_front`: bounds the (chunk, n, k) boolean temporaries to a few MB.
_CHUNK = 256


# ----------------------------------------------------------------------------------------------------------------
# input checks
def check_directions(directions: Any) -> tuple[str, ...]:
    """`directions` as a tuple: a non-empty sequence of `"maximize"` or `"minimize"`, one per objective."""
    if isinstance(directions, (str, bytes)) or not isinstance(directions, Sequence):
        raise TypeError(
            f"`directions` must be a sequence with one of {list(DIRECTIONS)} per objective, e.g. "
            f"['maximize', 'minimize'], got {directions!r}."
        )
    if not directions:
        raise ValueError(f"`directions` needs at least one objective direction; allowed: {list(DIRECTIONS)}.")
    for i, direction in enumerate(directions):
        if direction not in DIRECTIONS:
            raise ValueError(f"`directions[{i}]`={direction!r} is not a direction; allowed: {list(DIRECTIONS)}.")
    return tuple(directions)


def _check_vector(field: str, vector: Sequence[float], length: int) -> np.ndarray:
    if isinstance(vector, (str, bytes)) or not isinstance(vector, (Sequence, np.ndarray)):
        raise TypeError(f"`{field}` must be a sequence of {length} numbers, got {vector!r}.")
    if len(vector) != length:
        raise ValueError(
            f"`{field}` has {len(vector)} values but there are {length} objectives (`directions`): "
            f"give exactly {length}."
        )
    try:
        array = np.asarray(vector, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{field}` must hold numbers only, got {list(vector)!r}.") from e
    if array.shape != (length,):
        raise ValueError(f"`{field}` must be a flat sequence of {length} numbers, got {list(vector)!r}.")
    if not np.isfinite(array).all():
        raise ValueError(f"`{field}` must hold finite numbers only, got {array.tolist()} (no NaN or infinity).")
    return array


def _is_finite_matrix(values: Any, k: int) -> bool:
    """Whether `values` is an (n, k) array of finite real numbers (no per-row check needed)."""
    return (
        isinstance(values, np.ndarray)
        and values.ndim == 2
        and values.shape[1] == k
        and np.issubdtype(values.dtype, np.number)
        and not np.issubdtype(values.dtype, np.complexfloating)
        and bool(np.isfinite(values).all())
    )


def _check_values(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """Validate `values` against `directions`; return them as an (n, k) array in *minimization* form (the columns
    to maximize are negated)."""
    directions = list(check_directions(directions))
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(
            f"`values` must be a sequence of rows (one per point) of numbers, got {type(values).__name__}."
        )
    if len(values) == 0:
        raise ValueError("`values` is empty: give at least one point.")
    k = len(directions)
    if _is_finite_matrix(values, k):  # the common case, checked at once
        return np.asarray(values, dtype=float) * _signs(directions)  # (n, k)
    rows = [_check_vector(f"values[{i}]", row, k) for i, row in enumerate(values)]
    return np.stack(rows) * _signs(directions)  # (n, k)


def _signs(directions: Sequence[str]) -> np.ndarray:
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


# ----------------------------------------------------------------------------------------------------------------
# Pareto front
def _non_dominated_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `points` (n, k), all objectives minimized."""
    n = len(points)
    mask = np.empty(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        block = points[start : start + _CHUNK]  # (c, k)
        no_worse = (points[None, :, :] <= block[:, None, :]).all(axis=-1)  # (c, n): row j is <= block row i
        better = (points[None, :, :] < block[:, None, :]).any(axis=-1)  # (c, n): row j is < block row i somewhere
        mask[start : start + _CHUNK] = ~(no_worse & better).any(axis=1)
    return mask


def pareto_front(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order.

    Args:
        values (`Sequence[Sequence[float]]`):
            One row per point, one finite number per objective (a list of lists or an `(n, k)` array).
        directions (`Sequence[str]`):
            `"maximize"` or `"minimize"` for each objective (column).

    Returns:
        `list[int]`: the indices of the points that no other point dominates. Identical points do not dominate each
        other, so every copy of a non-dominated point is listed.

    Example:

    ```python
    >>> from hf_nas.search.pareto import pareto_front
    >>> # (accuracy, parameters): the second point is worse than the first in both
    >>> pareto_front([[0.9, 10], [0.8, 12], [0.7, 5], [0.9, 10]], ["maximize", "minimize"])
    [0, 2, 3]
    ```
    """
    points = _check_values(values, directions)
    return np.flatnonzero(_non_dominated_mask(points)).tolist()


# ----------------------------------------------------------------------------------------------------------------
# hypervolume
def _hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by `points` (n, 2) up to `reference`; every point strictly below it, all minimized."""
    order = np.lexsort((points[:, 1], points[:, 0]))  # by x, then y
    x, y = points[order, 0], points[order, 1]  # (n,), (n,)
    best_y = np.minimum.accumulate(y)  # (n,)
    keep = np.concatenate(([True], y[1:] < best_y[:-1]))  # a staircase step: better y than every point left of it
    x, y = x[keep], y[keep]  # x increasing, y decreasing
    widths = np.diff(np.append(x, reference[0]))  # (m,)
    return float(np.sum(widths * (reference[1] - y)))


def _hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume by slicing objectives (HSO): sweep the last objective; each slab between consecutive values
    is the (k-1)-dimensional hypervolume of the points already passed, times its thickness."""
    k = points.shape[1]
    if k == 1:
        return float(reference[0] - points[:, 0].min())
    if k == 2:
        return _hypervolume_2d(points, reference)
    points = points[np.argsort(points[:, -1], kind="stable")]
    upper = np.append(points[1:, -1], reference[-1])  # (n,): where each slab ends
    total = 0.0
    for i in range(len(points)):
        thickness = upper[i] - points[i, -1]
        if thickness > 0:  # ties in the last objective: only the last of them closes a slab
            below = points[: i + 1, :-1]  # (i + 1, k - 1)
            if k > 3:  # the slab's points dominated in the projection add nothing: drop them before recursing
                below = below[_non_dominated_mask(below)]
            total += thickness * _hypervolume(below, reference[:-1])
    return total


def hypervolume(
    values: Sequence[Sequence[float]], directions: Sequence[str], reference_point: Sequence[float]
) -> float:
    """Exact hypervolume: the measure of the region that the points dominate, bounded by `reference_point`.

    The region is the union of the boxes between each point and the reference point. A point that is not strictly
    better than the reference point in every objective bounds no box and contributes nothing; if no point is, the
    hypervolume is 0. Dominated points never change the value. Computed exactly for any number of objectives: a
    sweep for two, slicing objectives (HSO) for three or more, which is quick for a few hundred points and up to four
    objectives.

    Args:
        values (`Sequence[Sequence[float]]`):
            One row per point, one finite number per objective.
        directions (`Sequence[str]`):
            `"maximize"` or `"minimize"` for each objective.
        reference_point (`Sequence[float]`):
            One finite number per objective, worse than the points that should count, e.g. from
            [`default_reference_point`]. Keep it fixed to compare the hypervolumes of different searches.

    Returns:
        `float`: the hypervolume, in the product of the objectives' units.

    Example:

    ```python
    >>> from hf_nas.search.pareto import hypervolume
    >>> # boxes [0.6, 0.9] x [10, 20] and [0.6, 0.7] x [5, 20], overlapping in [0.6, 0.7] x [10, 20]
    >>> round(hypervolume([[0.9, 10], [0.7, 5]], ["maximize", "minimize"], reference_point=[0.6, 20]), 6)
    3.5
    ```
    """
    points = _check_values(values, directions)
    signs = _signs(directions)
    reference = _check_vector("reference_point", reference_point, len(signs)) * signs
    points = points[(points < reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    points = np.unique(points[_non_dominated_mask(points)], axis=0)  # fewer points, same region
    return _hypervolume(points, reference)


def default_reference_point(
    values: Sequence[Sequence[float]], directions: Sequence[str], margin: float = 0.1
) -> list[float]:
    """A reference point for [`hypervolume`]: the worst value of each objective, pushed further out by
    `margin` times the objective's range.

    For an objective to minimize that is `max + margin * (max - min)`; to maximize, `min - margin * (max - min)`.
    When all points share one value of an objective (range 0), `margin * max(|value|, 1)` is used as the push instead,
    so that with `margin > 0` every point is strictly better than the reference point in every objective and each
    point of the front contributes. With `margin=0` the reference point is the nadir of the points, and the points
    that reach it in some objective contribute nothing.

    Args:
        values (`Sequence[Sequence[float]]`): one row per point, one finite number per objective.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"` for each objective.
        margin (`float`, *optional*, defaults to 0.1): how far past the worst value, as a fraction of the range.

    Returns:
        `list[float]`: one value per objective.

    Example:

    ```python
    >>> from hf_nas.search.pareto import default_reference_point
    >>> [round(v, 6) for v in default_reference_point([[0.9, 10], [0.7, 5]], ["maximize", "minimize"])]
    [0.68, 10.5]
    ```
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise TypeError(f"`margin` must be a number (a fraction of each objective's range), got {margin!r}.")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"`margin` must be a finite number >= 0, got {margin}.")
    points = _check_values(values, directions)  # minimization form: worst is the largest
    signs = _signs(directions)
    worst = points.max(axis=0)  # (k,)
    spread = worst - points.min(axis=0)  # (k,)
    spread = np.where(spread > 0, spread, np.maximum(np.abs(worst), 1.0))
    return ((worst + margin * spread) * signs).tolist()


def ideal_point(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[float]:
    """The best value of each objective over the points (the largest to maximize, the smallest to minimize): the
    corner that [`normalized_hypervolume`] maps to 1.

    Example:

    ```python
    >>> from hf_nas.search.pareto import ideal_point
    >>> ideal_point([[0.9, 10], [0.7, 5]], ["maximize", "minimize"])
    [0.9, 5.0]
    ```
    """
    points = _check_values(values, directions)
    return (points.min(axis=0) * _signs(directions)).tolist()


def normalized_hypervolume(
    values: Sequence[Sequence[float]],
    directions: Sequence[str],
    reference_point: Sequence[float],
    ideal: Sequence[float] | None = None,
) -> float:
    """The [`hypervolume`] as a share of the box between `reference_point` and `ideal`: each objective is scaled
    linearly to [0, 1], 0 at the reference point and 1 at the ideal point, so the value is unitless and lies in
    [0, 1]; 1 means one point is as good as the ideal point in every objective at once.

    Keep both points fixed to compare searches: a set of points that another dominates has a smaller value.

    Args:
        values (`Sequence[Sequence[float]]`): one row per point, one finite number per objective.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"` for each objective.
        reference_point (`Sequence[float]`): the 0 of each objective, worse than the points that should count.
        ideal (`Sequence[float]`, *optional*): the 1 of each objective, at least as good as every point (default:
            [`ideal_point`] of `values`).

    Returns:
        `float`: the normalized hypervolume, from 0 to 1.

    Example:

    ```python
    >>> from hf_nas.search.pareto import normalized_hypervolume
    >>> # raw area 3.5 in the box [0.6, 1.0] x [0, 20] of area 8
    >>> normalized_hypervolume([[0.9, 10], [0.7, 5]], ["maximize", "minimize"], [0.6, 20], ideal=[1.0, 0])
    0.4375
    ```
    """
    points = _check_values(values, directions)
    signs = _signs(directions)
    reference = _check_vector("reference_point", reference_point, len(signs)) * signs
    best = points.min(axis=0) if ideal is None else _check_vector("ideal", ideal, len(signs)) * signs
    if not (best < reference).all():
        j = int(np.flatnonzero(best >= reference)[0])
        raise ValueError(
            f"`ideal`[{j}]={best[j] * signs[j]} is not better than `reference_point`[{j}]={reference[j] * signs[j]} "
            f"({directions[j]}): the ideal point must be better than the reference point in every objective."
        )
    beyond = np.argwhere(points < best)
    if len(beyond):
        i, j = (int(v) for v in beyond[0])
        raise ValueError(
            f"`values[{i}]` is better than `ideal` in objective {j} ({points[i, j] * signs[j]} vs "
            f"{best[j] * signs[j]}): the ideal point must be at least as good as every point (omit it to use the best "
            "values)."
        )
    scaled = (points - best) / (reference - best)  # (n, k): 0 at the ideal, 1 at the reference, all minimized
    return hypervolume(scaled, ["minimize"] * len(signs), [1.0] * len(signs))


def anytime_hypervolume(
    values: Sequence[Sequence[float]],
    directions: Sequence[str],
    reference_point: Sequence[float],
    ideal: Sequence[float],
) -> list[float]:
    """The [`normalized_hypervolume`] of the first 1, 2, ..., n points: a search's anytime curve (hypervolume
    against real evaluations, in the order they were measured). Both points are fixed, so curves of different
    searches compare.

    Args:
        values (`Sequence[Sequence[float]]`): one row per point, in the order they were measured.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"` for each objective.
        reference_point (`Sequence[float]`): the 0 of each objective (fixed in advance).
        ideal (`Sequence[float]`): the 1 of each objective, at least as good as every point.

    Returns:
        `list[float]`: one normalized hypervolume per prefix, never decreasing.

    Example:

    ```python
    >>> from hf_nas.search.pareto import anytime_hypervolume
    >>> curve = anytime_hypervolume([[0.7, 5], [0.6, 8], [0.9, 10]], ["maximize", "minimize"], [0.6, 20], [1.0, 0])
    >>> [round(v, 6) for v in curve]  # the second point is on the reference accuracy: it adds nothing
    [0.1875, 0.1875, 0.4375]
    ```
    """
    points = _check_values(values, directions)
    signs = _signs(directions)
    reference = _check_vector("reference_point", reference_point, len(signs)) * signs
    best = _check_vector("ideal", ideal, len(signs)) * signs
    normalized_hypervolume(values, directions, reference_point, ideal)  # checks the ideal against every point
    scaled = (points - best) / (reference - best)  # (n, k): 0 at the ideal, 1 at the reference, all minimized
    ones = [1.0] * len(signs)
    minimize = ["minimize"] * len(signs)
    curve: list[float] = []
    front = np.zeros((0, len(signs)))  # the non-dominated points so far, strictly inside the reference box
    for point in scaled:
        inside = bool((point < 1.0).all())
        dominated = inside and bool(((front <= point).all(axis=1)).any())
        if not inside or dominated:
            curve.append(curve[-1] if curve else 0.0)
            continue
        front = np.vstack([front[~(point <= front).all(axis=1)], point])  # drop the points it dominates or equals
        curve.append(hypervolume(front, minimize, ones))
    return curve
