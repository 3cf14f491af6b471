"""Search strategies: validity, seeded reproducibility, tell checks, constraints, and NSGA-II beating random search."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna
import pytest

from hf_nas import SearchSpace, SubnetConfig
from hf_nas.search.predictors import encode
from hf_nas.search.strategies import (
    STRATEGIES,
    Constraint,
    EvaluatedSubnet,
    NSGA2Search,
    RandomSearch,
    SearchStrategy,
    best_feasible,
    check_constraints,
    evaluate_constraints,
    get_strategy,
    register_strategy,
)


def _hypervolume_2d(values, directions, reference_point) -> float:
    """Area dominated by 2-objective `values` up to `reference_point` (fallback if `pareto.hypervolume` is absent)."""
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    points = np.asarray(values, dtype=float) * signs  # (n, 2), minimized
    reference = np.asarray(reference_point, dtype=float) * signs  # (2,)
    points = points[(points < reference).all(axis=1)]
    area, best_y = 0.0, reference[1]
    for x, y in sorted(map(tuple, points)):
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


try:
    from hf_nas.search.pareto import hypervolume
except ImportError:  # pareto.py is written separately
    hypervolume = _hypervolume_2d

ALL = ["nsga2", "random"]
TWO = ["maximize", "minimize"]


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace(
        num_hidden_layers=(2, 3, 4, 5, 6),
        num_attention_heads=(1, 2, 3, 4),
        intermediate_size=(32, 64, 96, 128),
        hidden_size=(32, 48, 64),
        attention_head_size=16,
        layer_rule="first",
    )


# Spaces whose subsets of different depths are not prefixes of one chain: a subnet built from a genome must take
# its layers from the space, not the first `num_hidden_layers`.
LAYER_SUBSET_SPACES = {
    "spread": dict(layer_rule="spread", num_supernet_layers=8),
    "importance": dict(layer_rule="importance", layer_order=(5, 0, 7, 2, 6, 1, 4, 3), num_supernet_layers=8),
}


@pytest.fixture(params=list(LAYER_SUBSET_SPACES))
def subset_space(request, space) -> SearchSpace:
    return dataclasses.replace(space, **LAYER_SUBSET_SPACES[request.param])


def macs(subnet: SubnetConfig) -> float:
    """A MAC proxy (per token): attention projections, per-layer attention width and FFN."""
    h = subnet.hidden_size
    attention = sum(4 * heads * 16 * h for heads in subnet.num_attention_heads)
    ffn = sum(2 * f * h for f in subnet.intermediate_size)
    return float(subnet.num_hidden_layers * h * h + attention + ffn)


def closeness(subnet: SubnetConfig, target: SubnetConfig, space: SearchSpace) -> float:
    """Minus the distance between normalized encodings: 0 at the hidden target, lower elsewhere."""
    return -float(np.linalg.norm(encode(subnet, space) - encode(target, space)))


def run(strategy: SearchStrategy, objective, n: int, constraint=None) -> list[SubnetConfig]:
    asked = []
    for _ in range(n):
        subnet = strategy.ask()
        asked.append(subnet)
        values = objective(subnet)
        strategy.tell(subnet, values, None if constraint is None else constraint(subnet, values))
    return asked


def toy(space: SearchSpace):
    return lambda s: [macs(s) / macs(space.largest()), float(s.num_hidden_layers)]


# ------------------------------------------------------------------------------------------------------------------
# every strategy
@pytest.mark.parametrize("name", ALL)
def test_proposes_only_valid_subnets(space, name):
    strategy = get_strategy(name, space, TWO, seed=0, **({"population_size": 8} if name == "nsga2" else {}))
    asked = run(strategy, toy(space), 60)
    assert all(space.contains(s) for s in asked)
    assert len(strategy.history) == 60 and all(isinstance(r, EvaluatedSubnet) for r in strategy.history)
    assert len({s.num_hidden_layers for s in asked}) > 1


@pytest.mark.parametrize("name", ALL)
def test_proposes_only_subnets_with_the_layers_of_the_space(subset_space, name):
    space = subset_space
    strategy = get_strategy(name, space, TWO, seed=0, **({"population_size": 8} if name == "nsga2" else {}))
    asked = run(strategy, toy(space), 60)
    for subnet in asked:
        space.validate(subnet)  # raises, naming the layers, if a proposal keeps other layers
        assert subnet.layers == space.layers_for(subnet.num_hidden_layers)
    assert any(s.layers != tuple(range(s.num_hidden_layers)) for s in asked)
    assert len({s.num_hidden_layers for s in asked}) > 1
    first, second = space.largest(), space.smallest()
    strategy.enqueue(first)
    strategy.enqueue(second)
    assert [strategy.ask(), strategy.ask()] == [first, second]


def test_nsga2_genome_round_trip_keeps_the_layers_of_the_space(subset_space):
    strategy = NSGA2Search(subset_space, TWO)
    for seed in range(20):
        subnet = subset_space.sample(seed=seed)
        assert strategy.decode(strategy.encode(subnet)) == subnet
    with pytest.raises(ValueError, match="`layers`"):
        strategy.encode(SubnetConfig.uniform(3, 2, 64, 48))  # the first three layers: not this space's subset


@pytest.mark.parametrize("name", ALL)
def test_reproducible_with_seed_and_seeds_differ(space, name):
    def sequence(seed):
        return run(
            get_strategy(name, space, TWO, seed=seed, **({"population_size": 8} if name == "nsga2" else {})),
            toy(space),
            40,
        )

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)


@pytest.mark.parametrize("name", ALL)
def test_tell_checks_its_arguments(space, name):
    strategy = get_strategy(name, space, TWO, seed=0)
    subnet = strategy.ask()
    with pytest.raises(ValueError, match="2 objectives"):
        strategy.tell(subnet, [1.0])
    with pytest.raises(ValueError, match="2 objectives"):
        strategy.tell(subnet, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"values\[1\]"):
        strategy.tell(subnet, [1.0, math.nan])
    with pytest.raises(TypeError, match="values"):
        strategy.tell(subnet, "ab")
    outside = SubnetConfig.uniform(7, 4, 128, 64)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        strategy.tell(outside, [1.0, 2.0])
    strategy.tell(subnet, [1.0, 2.0], [0.5])  # the failed tells left no trace: the subnet still waits
    assert len(strategy.history) == 1 and not strategy.history[0].feasible
    with pytest.raises(ValueError, match="same constraints"):
        strategy.tell(strategy.ask(), [1.0, 2.0])


def test_registry_and_get_strategy(space):
    assert {"nsga2", "random"} <= set(STRATEGIES)
    assert isinstance(get_strategy("random", space, ["maximize"]), RandomSearch)
    assert isinstance(get_strategy("nsga2", space, ["maximize"], population_size=4), NSGA2Search)
    with pytest.raises(ValueError, match=r"Unknown strategy 'bayes'.*'nsga2'.*'random'"):
        get_strategy("bayes", space, TWO)
    with pytest.raises(TypeError, match="population_size"):
        get_strategy("random", space, TWO, population_size=4)
    with pytest.raises(ValueError, match="already registered"):

        @register_strategy
        class Other(RandomSearch):
            name = "random"


@pytest.mark.parametrize(
    "directions, error",
    [("maximize", TypeError), ([], ValueError), (["maximise"], ValueError), (["maximize", "up"], ValueError)],
)
def test_directions_are_validated(space, directions, error):
    with pytest.raises(error, match="direction"):
        RandomSearch(space, directions)


@pytest.mark.parametrize("name", ALL)
def test_enqueued_subnets_are_asked_first(space, name):
    strategy = get_strategy(name, space, TWO, seed=0)
    first, second = space.largest(), space.smallest()
    strategy.enqueue(first)
    strategy.enqueue(second)
    strategy.enqueue(first)
    assert [strategy.ask() for _ in range(3)] == [first, second, first]
    for subnet in (first, second, first):  # the same subnet asked twice waits twice
        strategy.tell(subnet, [1.0, 2.0])
    if name == "nsga2":
        assert strategy.num_pending == 0
        with pytest.raises(ValueError, match="not waiting"):
            strategy.tell(first, [1.0, 2.0])


def test_nsga2_tell_needs_an_asked_subnet(space):
    strategy = NSGA2Search(space, TWO, seed=0)
    subnet = strategy.ask()
    other = next(s for s in (space.largest(), space.smallest()) if s != subnet)
    with pytest.raises(ValueError, match="not waiting"):
        strategy.tell(other, [1.0, 2.0])
    strategy.tell(subnet, [1.0, 2.0])
    assert strategy.study.trials[-1].values == [1.0, 2.0]


def test_nsga2_genome_round_trip(space):
    strategy = NSGA2Search(space, TWO)
    for seed in range(20):
        subnet = space.sample(seed=seed)
        params = strategy.encode(subnet)
        assert len(params) == 2 + 2 * 6
        assert strategy.decode(params) == subnet


def test_nsga2_keeps_optuna_verbosity(space):
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        strategy = NSGA2Search(space, TWO)
        strategy.tell(strategy.ask(), [1.0, 2.0])
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(before)


# ------------------------------------------------------------------------------------------------------------------
# NSGA-II vs random search
def test_nsga2_beats_random_search_on_hypervolume(space):
    """Maximize closeness to a hidden target subnet, minimize MACs: 300 evaluations, 3 seeds, fixed reference."""
    target = SubnetConfig(
        num_hidden_layers=5,
        num_attention_heads=(4, 1, 3, 2, 4),
        intermediate_size=(128, 32, 96, 64, 32),
        hidden_size=48,
    )
    largest = macs(space.largest())

    def objective(subnet):
        return [closeness(subnet, target, space), macs(subnet) / largest]

    reference = [-math.sqrt(len(encode(target, space))), 1.1]  # worse than any subnet in both objectives
    volumes = {}
    for name in ("random", "nsga2"):
        volumes[name] = []
        for seed in range(3):
            strategy = get_strategy(name, space, TWO, seed=seed)
            run(strategy, objective, 300)
            volumes[name].append(hypervolume([r.values for r in strategy.history], TWO, reference))
    # a clear win on average (about 3.46 vs 3.19) and on the worst seed
    assert np.mean(volumes["nsga2"]) > np.mean(volumes["random"]) + 0.15, volumes
    assert min(volumes["nsga2"]) > max(volumes["random"]), volumes


# ------------------------------------------------------------------------------------------------------------------
# constrained search
@pytest.mark.parametrize("name", ALL)
def test_cheap_constraints_are_never_violated(space, name):
    budget = 0.3 * macs(space.largest())

    def constraints(subnet):
        return [macs(subnet) - budget]

    strategy = get_strategy(name, space, TWO, seed=0, constraints=constraints)
    asked = run(strategy, toy(space), 100)
    assert all(macs(s) <= budget for s in asked)
    assert len(set(asked)) > 10
    with pytest.raises(ValueError, match="violates"):
        strategy.enqueue(space.largest())


@pytest.mark.parametrize("name", ALL)
def test_unsatisfiable_constraints_raise(space, name):
    strategy = get_strategy(name, space, TWO, constraints=lambda subnet: [1.0], max_attempts=50)
    with pytest.raises(ValueError, match="unsatisfiable"):
        strategy.ask()


def test_nsga2_prefers_feasible_subnets(space):
    """Both objectives pull toward large subnets; measured constraint values (MACs <= budget) pull back."""
    big = SubnetConfig(
        num_hidden_layers=6,
        num_attention_heads=(4, 4, 3, 4, 2, 4),
        intermediate_size=(128, 96, 128, 64, 128, 128),
        hidden_size=64,
    )
    largest = macs(space.largest())

    def objective(subnet):
        return [macs(subnet) / largest, closeness(subnet, big, space)]

    def constraint(subnet, values):
        return [values[0] - 0.3]

    def feasible_share(strategy, told=True):
        asked = run(strategy, objective, 200, constraint if told else None)
        return np.mean([macs(s) / largest <= 0.3 for s in asked[-100:]])

    directions = ["maximize", "maximize"]
    shares = {"constrained": [], "unconstrained": [], "random": []}
    for seed in range(2):
        shares["constrained"].append(feasible_share(NSGA2Search(space, directions, seed=seed)))
        shares["unconstrained"].append(feasible_share(NSGA2Search(space, directions, seed=seed), told=False))
        shares["random"].append(feasible_share(RandomSearch(space, directions, seed=seed)))
    # told the constraint values, NSGA-II mostly stays feasible (about 0.7); without them it leaves (about 0.02)
    assert min(shares["constrained"]) >= 0.5 and max(shares["unconstrained"]) <= 0.1, shares
    assert np.mean(shares["constrained"]) > np.mean(shares["random"]) + 0.1, shares
    strategy = NSGA2Search(space, directions, seed=0)
    run(strategy, objective, 60, constraint)
    best = strategy.best_feasible(0)
    assert best.feasible and best.values[0] <= 0.3
    assert best.values[0] == max(r.values[0] for r in strategy.history if r.feasible)


def test_constraint_validation():
    assert Constraint("latency", 10).max_value == 10.0
    assert Constraint("latency", max_value=10.0).violation(12.5) == 2.5
    assert Constraint("accuracy", min_value=0.8).violation(0.9) == pytest.approx(-0.1)
    assert Constraint("macs", max_value=5, min_value=1).is_satisfied(3)
    with pytest.raises(ValueError, match="neither"):
        Constraint("latency")
    with pytest.raises(ValueError, match="finite"):
        Constraint("latency", max_value=math.inf)
    with pytest.raises(ValueError, match="finite"):
        Constraint("latency", min_value=math.nan)
    with pytest.raises(TypeError, match="number"):
        Constraint("latency", max_value="10")
    with pytest.raises(TypeError, match="objective"):
        Constraint("", max_value=1.0)
    with pytest.raises(ValueError, match="Contradictory"):
        Constraint("latency", max_value=1.0, min_value=2.0)


def test_check_constraints():
    check_constraints([Constraint("latency", max_value=10.0), Constraint("macs", max_value=1e9)])
    check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", min_value=2.0)])
    check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", max_value=10.0)])
    with pytest.raises(ValueError, match="empty"):
        check_constraints([])
    with pytest.raises(ValueError, match="Contradictory.*'latency'.*max_value"):
        check_constraints([Constraint("latency", max_value=10.0), Constraint("latency", max_value=5.0)])
    with pytest.raises(ValueError, match="Contradictory.*'accuracy'"):
        check_constraints([Constraint("accuracy", min_value=0.9), Constraint("accuracy", max_value=0.8)])
    with pytest.raises(TypeError, match=r"constraints\[1\]"):
        check_constraints([Constraint("latency", max_value=10.0), ("macs", 1e9)])


def test_evaluate_constraints():
    constraints = [Constraint("macs", max_value=1e9), Constraint("accuracy", min_value=0.8)]
    assert evaluate_constraints(constraints, {"macs": 2e9, "accuracy": 0.9}) == [1e9, pytest.approx(-0.1)]
    with pytest.raises(ValueError, match="accuracy"):
        evaluate_constraints(constraints, {"macs": 2e9})


def test_best_feasible():
    records = [[0.9, 12.0], [0.8, 6.0], [0.7, 4.0], [0.85, 7.0]]
    assert best_feasible(records, 0, "maximize") == 0
    assert best_feasible(records, 1, "minimize") == 2
    assert best_feasible(records, 0, "maximize", [[2.0], [-4.0], [-6.0], [1.0]]) == 1
    assert best_feasible(records, 0, "maximize", [[1.0], [1.0], None, [3.0]]) == 2
    assert best_feasible(records, 0, "maximize", [[1.0]] * 4) is None
    assert best_feasible([], 0, "maximize") is None
    with pytest.raises(ValueError, match="one entry"):
        best_feasible(records, 0, "maximize", [[0.0]])
    with pytest.raises(ValueError, match="objective_index"):
        best_feasible(records, 2, "maximize")
    with pytest.raises(ValueError, match="direction"):
        best_feasible(records, 0, "max")
