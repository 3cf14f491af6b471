"""Pareto fronts and hypervolumes: hand-made points, exact areas and volumes, and brute-force cross-checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hf_nas.search.pareto import default_reference_point, hypervolume, pareto_front

MIN2 = ["minimize", "minimize"]
MAX2 = ["maximize", "maximize"]
MIN3 = ["minimize"] * 3


# ----------------------------------------------------------------------------------------------------------------
# brute-force references (all objectives minimized, every point strictly below the reference)
def inclusion_exclusion(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume of the union of the boxes [p, reference] by inclusion-exclusion over all subsets (small sets only)."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)  # the intersection box starts at the worst corner
            total += (-1) ** (size + 1) * float(np.prod(reference - corner))
    return total


def grid_count(points: np.ndarray, reference: np.ndarray) -> int:
    """Number of unit cells of the integer grid dominated by integer points: the exact volume."""
    lows = points.min(axis=0)
    axes = [np.arange(lo, hi) + 0.5 for lo, hi in zip(lows, reference, strict=True)]  # cell centres
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(reference))  # (cells, k)
    covered = (points[None, :, :] <= centres[:, None, :]).all(axis=-1).any(axis=1)  # (cells,)
    return int(covered.sum())


# ----------------------------------------------------------------------------------------------------------------
# pareto_front
def test_front_one_dominating_point():
    assert pareto_front([[2, 2], [1, 1], [3, 1], [1, 3]], MIN2) == [1]


def test_front_all_mutually_non_dominated():
    values = [[1, 4], [2, 3], [3, 2], [4, 1]]
    assert pareto_front(values, MIN2) == [0, 1, 2, 3]


def test_front_duplicates_are_all_kept():
    values = [[1, 2], [2, 1], [1, 2], [3, 3], [3, 3]]
    assert pareto_front(values, MIN2) == [0, 1, 2]  # both copies of [1, 2]; the dominated duplicates go


def test_front_ties_in_one_objective():
    # [1, 2] is as good as [1, 3] in the first objective and better in the second: it dominates it
    assert pareto_front([[1, 3], [1, 2], [0, 5]], MIN2) == [1, 2]


def test_front_single_point_and_single_objective():
    assert pareto_front([[5.0, 1.0]], MIN2) == [0]
    assert pareto_front([[3], [1], [2], [1]], ["minimize"]) == [1, 3]
    assert pareto_front([[3], [1], [2], [3]], ["maximize"]) == [0, 3]


def test_front_mixed_directions():
    # (accuracy: maximize, latency: minimize)
    values = [[0.9, 10.0], [0.8, 12.0], [0.7, 5.0], [0.95, 30.0], [0.7, 6.0]]
    assert pareto_front(values, ["maximize", "minimize"]) == [0, 2, 3]
    # flipped: [0.7, 6] now dominates [0.7, 5], and [0.8, 12] dominates [0.9, 10]
    assert pareto_front(values, ["minimize", "maximize"]) == [1, 3, 4]


def test_front_directions_matter():
    values = [[1, 1], [2, 2]]
    assert pareto_front(values, MIN2) == [0]
    assert pareto_front(values, MAX2) == [1]


def test_front_accepts_arrays_and_matches_definition():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=(60, 3)).astype(float)  # many ties and duplicates
    directions = ["minimize", "maximize", "minimize"]
    signs = np.array([1, -1, 1])
    expected = []
    for i, a in enumerate(values * signs):
        dominated = any(np.all(b <= a) and np.any(b < a) for b in values * signs)
        if not dominated:
            expected.append(i)
    assert pareto_front(values, directions) == expected
    assert pareto_front(values.tolist(), directions) == expected


def test_front_large_input_uses_chunks():
    rng = np.random.default_rng(1)
    values = rng.random((700, 2))  # more rows than one comparison chunk
    front = pareto_front(values, MIN2)
    # the 2-D front is a staircase: sorted by the first objective, the second strictly decreases
    ordered = values[front][np.argsort(values[front][:, 0])]
    assert np.all(np.diff(ordered[:, 1]) < 0)
    dominated = [i for i in range(len(values)) if i not in set(front)]
    for i in dominated[:50]:
        assert any(np.all(values[j] <= values[i]) and np.any(values[j] < values[i]) for j in front)


# ----------------------------------------------------------------------------------------------------------------
# input validation
@pytest.mark.parametrize(
    ("values", "directions", "error", "match"),
    [
        ([], MIN2, ValueError, "empty"),
        ([[1, 2]], [], ValueError, "directions"),
        ([[1, 2]], "minimize", TypeError, "directions"),
        ([[1, 2]], ["minimize", "smaller"], ValueError, r"directions\[1\].*'smaller'.*maximize"),
        ([[1, 2], [1, 2, 3]], MIN2, ValueError, r"values\[1\]` has 3 values.*2 objectives"),
        ([[1, float("nan")]], MIN2, ValueError, r"values\[0\].*finite"),
        ([[1, float("inf")]], MIN2, ValueError, "finite"),
        ([[1, "a"]], MIN2, TypeError, "numbers"),
        ([[1, [2]]], MIN2, (TypeError, ValueError), r"values\[0\]"),
        ("ab", MIN2, TypeError, "values"),
        ([1, 2], MIN2, TypeError, r"values\[0\]"),
    ],
)
def test_front_validates_inputs(values, directions, error, match):
    with pytest.raises(error, match=match):
        pareto_front(values, directions)


def test_hypervolume_validates_reference_point():
    with pytest.raises(ValueError, match=r"reference_point` has 1 values.*2 objectives"):
        hypervolume([[1, 2]], MIN2, [3])
    with pytest.raises(ValueError, match="reference_point.*finite"):
        hypervolume([[1, 2]], MIN2, [3, float("nan")])
    with pytest.raises(ValueError, match="directions"):
        hypervolume([[1, 2]], ["minimize", "up"], [3, 3])


def test_default_reference_point_validates_margin():
    with pytest.raises(ValueError, match="margin"):
        default_reference_point([[1, 2]], MIN2, margin=-0.1)
    with pytest.raises(ValueError, match="margin"):
        default_reference_point([[1, 2]], MIN2, margin=float("inf"))
    with pytest.raises(TypeError, match="margin"):
        default_reference_point([[1, 2]], MIN2, margin="0.1")


# ----------------------------------------------------------------------------------------------------------------
# hypervolume: hand-computed cases
def test_hypervolume_single_point_is_a_box():
    assert hypervolume([[1, 2]], MIN2, [4, 5]) == pytest.approx(3 * 3)
    assert hypervolume([[1, 2, 3]], MIN3, [2, 4, 7]) == pytest.approx(1 * 2 * 4)
    assert hypervolume([[2]], ["minimize"], [5]) == pytest.approx(3)
    assert hypervolume([[1, 2, 3, 4]], ["minimize"] * 4, [2, 3, 5, 8]) == pytest.approx(1 * 1 * 2 * 4)


def test_hypervolume_2d_staircase():
    # boxes to (4, 4): [1,4]x[3,4] = 3, [2,4]x[2,4] = 4, [3,4]x[1,4] = 3; union = 3 + 2 + 1 = 6
    assert hypervolume([[1, 3], [2, 2], [3, 1]], MIN2, [4, 4]) == pytest.approx(6)


def test_hypervolume_2d_mixed_directions():
    # (accuracy, latency ms) to reference (0.5, 100): boxes 0.4 x 80 and 0.2 x 90 overlapping in 0.2 x 80
    values = [[0.9, 20.0], [0.7, 10.0]]
    expected = 0.4 * 80 + 0.2 * 90 - 0.2 * 80
    assert hypervolume(values, ["maximize", "minimize"], [0.5, 100.0]) == pytest.approx(expected)


def test_hypervolume_maximize_is_mirrored_minimize():
    values = [[1, 3], [2, 2], [3, 1]]
    mirrored = [[-a, -b] for a, b in values]
    assert hypervolume(mirrored, MAX2, [-4, -4]) == pytest.approx(hypervolume(values, MIN2, [4, 4]))


def test_hypervolume_3d_hand_computed():
    # two boxes to (2, 2, 2): [0,2]x[1,2]x[1,2] = 2 and [1,2]x[0,2]x[1,2] = 2 overlap in [1,2]x[1,2]x[1,2] = 1;
    # a third, [1,2]x[1,2]x[0,2] = 2, overlaps each of them and their common part in 1: union = 2 + 2 + 2 - 3 + 1
    values = [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert hypervolume(values, MIN3, [2, 2, 2]) == pytest.approx(4)
    # the origin dominates them all: its cube is everything
    assert hypervolume([*values, [0, 0, 0]], MIN3, [2, 2, 2]) == pytest.approx(8)


def test_hypervolume_3d_ties_in_last_objective():
    # all three points in one slab z in [1, 2): the 2-D staircase of (0, 2), (1, 1), (2, 0) to (3, 3) has columns of
    # heights 1, 2 and 3, so the volume is 6 x 1
    values = [[0, 2, 1], [2, 0, 1], [1, 1, 1]]
    assert hypervolume(values, MIN3, [3, 3, 2]) == pytest.approx(6)
    # a fourth point lower in z adds its own slab below: [2, 3) x [2, 3) x [0, 1) = 1
    assert hypervolume([*values, [2, 2, 0]], MIN3, [3, 3, 2]) == pytest.approx(7)


def test_hypervolume_duplicates_count_once():
    assert hypervolume([[1, 2], [1, 2], [1, 2]], MIN2, [3, 3]) == pytest.approx(2)


# ----------------------------------------------------------------------------------------------------------------
# hypervolume: brute-force cross-checks
@pytest.mark.parametrize("k", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(k):
    rng = np.random.default_rng(k)
    for _ in range(20):
        n = int(rng.integers(1, 8))
        points = rng.random((n, k))
        reference = np.full(k, 1.2)
        expected = inclusion_exclusion(points, reference)
        assert hypervolume(points, ["minimize"] * k, reference) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_matches_grid_count(k):
    rng = np.random.default_rng(10 + k)
    for _ in range(10):
        points = rng.integers(0, 8, size=(int(rng.integers(1, 15)), k))  # ties and duplicates on purpose
        reference = np.full(k, 8)
        assert hypervolume(points, ["minimize"] * k, reference) == pytest.approx(grid_count(points, reference))


def test_hypervolume_matches_grid_count_mixed_directions():
    rng = np.random.default_rng(3)
    points = rng.integers(0, 6, size=(12, 3))
    directions = ["maximize", "minimize", "maximize"]
    signs = np.array([-1, 1, -1])
    reference = np.array([-1, 6, -1])  # in the stated directions: worse than every point
    expected = grid_count(points * signs, reference * signs)
    assert hypervolume(points, directions, reference) == pytest.approx(expected)


def test_hypervolume_ignores_dominated_points():
    rng = np.random.default_rng(4)
    for k in (2, 3, 4):
        front = rng.random((6, k))
        reference = np.full(k, 1.5)
        before = hypervolume(front, ["minimize"] * k, reference)
        # a point dominated by front[0]: worse by a random positive amount in each objective, capped below the ref
        dominated = np.minimum(front[:3] + rng.random((3, k)) * 0.3, 1.4)
        after = hypervolume(np.vstack([front, dominated]), ["minimize"] * k, reference)
        assert after == pytest.approx(before, rel=1e-12)


def test_hypervolume_front_only_equals_all_points():
    rng = np.random.default_rng(5)
    values = rng.random((40, 3))
    directions = ["minimize", "maximize", "minimize"]
    reference = default_reference_point(values, directions)
    front = pareto_front(values, directions)
    assert hypervolume(values, directions, reference) == pytest.approx(
        hypervolume(values[front], directions, reference)
    )


# ----------------------------------------------------------------------------------------------------------------
# reference-point handling
def test_points_not_strictly_better_than_reference_contribute_nothing():
    reference = [4, 4]
    assert hypervolume([[1, 4]], MIN2, reference) == 0.0  # on the boundary in one objective
    assert hypervolume([[5, 1]], MIN2, reference) == 0.0  # beyond it in one objective
    assert hypervolume([[1, 4], [5, 1], [2, 2]], MIN2, reference) == pytest.approx(4)
    assert hypervolume([[0.5, 1]], ["maximize", "minimize"], [0.5, 2]) == 0.0


def test_hypervolume_grows_with_the_reference_point():
    values = [[1, 3], [2, 2], [3, 1]]
    assert hypervolume(values, MIN2, [5, 5]) > hypervolume(values, MIN2, [4, 4])


def test_default_reference_point_pushes_the_worst_value_out():
    values = [[0.9, 10.0], [0.7, 5.0], [0.8, 20.0]]
    reference = default_reference_point(values, ["maximize", "minimize"], margin=0.5)
    assert reference == pytest.approx([0.7 - 0.5 * 0.2, 20.0 + 0.5 * 15.0])
    assert default_reference_point(values, ["maximize", "minimize"], margin=0) == pytest.approx([0.7, 20.0])


def test_default_reference_point_constant_objective():
    # range 0: pushed by margin * max(|value|, 1), so the point still counts
    assert default_reference_point([[3.0, 0.0], [3.0, 0.0]], MIN2, margin=0.1) == pytest.approx([3.3, 0.1])
    assert default_reference_point([[-2.0]], ["maximize"], margin=0.5) == pytest.approx([-3.0])
    values = [[1.0, 2.0]]
    assert hypervolume(values, MIN2, default_reference_point(values, MIN2)) > 0


def test_default_reference_point_lets_every_front_point_contribute():
    rng = np.random.default_rng(6)
    values = rng.random((30, 3))
    directions = ["maximize", "minimize", "minimize"]
    reference = default_reference_point(values, directions)
    total = hypervolume(values, directions, reference)
    for i in pareto_front(values, directions):
        rest = np.delete(values, i, axis=0)
        if not any(np.array_equal(row, values[i]) for row in rest):
            assert hypervolume(rest, directions, reference) < total
    assert math.isfinite(total)
