"""The evolutionary strategy (Once-for-All style): mutation and crossover stay in the space under every layer rule,
seeded runs repeat, constraints hold, selection keeps the best, and it beats random search on a toy problem."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest

from hf_nas import SearchSpace, SubnetConfig
from hf_nas.search.pareto import hypervolume
from hf_nas.search.predictors import encode
from hf_nas.search.strategies import EvaluatedSubnet, EvolutionarySearch, get_strategy
from hf_nas.search.strategies.evolutionary import rank_evaluated

TWO = ["maximize", "minimize"]
BASE = SearchSpace(
    num_hidden_layers=(2, 3, 4, 5, 6),
    num_attention_heads=(1, 2, 3, 4),
    intermediate_size=(32, 64, 96, 128),
    hidden_size=(32, 48, 64),
    attention_head_size=16,
    layer_rule="first",
)
RULES = {
    "first": {},
    "spread": dict(layer_rule="spread", num_supernet_layers=8),
    "importance": dict(layer_rule="importance", layer_order=(5, 0, 7, 2, 6, 1, 4, 3), num_supernet_layers=8),
}


@pytest.fixture(params=list(RULES))
def space(request) -> SearchSpace:
    return dataclasses.replace(BASE, **RULES[request.param])


def macs(subnet: SubnetConfig) -> float:
    h = subnet.hidden_size
    return float(
        sum(
            4 * k * 16 * h + 2 * f * h
            for k, f in zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)
        )
    )


def toy(subnet: SubnetConfig) -> list[float]:
    return [macs(subnet) / macs(BASE.largest()), float(subnet.num_hidden_layers)]


def run(strategy, objective, n, constraint=None):
    asked = []
    for _ in range(n):
        subnet = strategy.ask()
        asked.append(subnet)
        values = objective(subnet)
        strategy.tell(subnet, values, None if constraint is None else constraint(subnet, values))
    return asked


def test_mutation_and_crossover_stay_in_the_space(space):
    strategy = EvolutionarySearch(space, TWO, seed=0, mutation_prob=0.5)
    rng = random.Random(0)
    parents = [space.sample(generator=rng) for _ in range(40)]
    for a, b in zip(parents, parents[1:], strict=False):
        for child in (strategy.mutate(a), strategy.crossover(a, b)):
            space.validate(child)  # raises for a subnet outside the space
            assert child.layers == space.layers_for(child.num_hidden_layers)  # the layer subset of its depth
        assert strategy.mutate(a) != a  # a mutation changes the subnet


def test_crossover_takes_every_gene_from_a_parent(space):
    strategy = EvolutionarySearch(space, TWO, seed=1)
    rng = random.Random(1)
    for _ in range(30):
        a, b = space.sample(generator=rng), space.sample(generator=rng)
        (da, wa, ha, fa), (db, wb, hb, fb) = strategy.encode(a), strategy.encode(b)
        child = strategy.crossover(a, b)
        assert child.num_hidden_layers in (da, db) and child.hidden_size in (wa, wb)
        for position, layer in enumerate(child.layers):  # each kept layer's genes from one parent's same layer
            assert child.num_attention_heads[position] in (ha[layer], hb[layer])
            assert child.intermediate_size[position] in (fa[layer], fb[layer])


def test_genomes_round_trip_and_keep_a_layers_width_across_depths(space):
    strategy = EvolutionarySearch(space, TWO)
    for seed in range(20):
        subnet = space.sample(seed=seed)
        assert strategy.decode(strategy.encode(subnet)) == subnet
    total = space.num_supernet_layers
    heads = tuple(1 + i % 4 for i in range(total))
    ffn = tuple(32 * (1 + (i + 1) % 4) for i in range(total))
    for depth in (3, 5):  # a supernet layer takes its own genes, whichever depth keeps it
        subnet = strategy.decode((depth, 48, heads, ffn))
        assert subnet.layers == space.layers_for(depth)
        for position, layer in enumerate(subnet.layers):
            assert subnet.num_attention_heads[position] == heads[layer]
            assert subnet.intermediate_size[position] == ffn[layer]


def test_seeded_runs_repeat_and_seeds_differ(space):
    def sequence(seed):
        return run(EvolutionarySearch(space, TWO, seed=seed, population_size=8), toy, 40)

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)
    asked = sequence(5)
    assert all(s in space for s in asked) and len(set(asked)) == len(asked)  # new subnets while there are some


def test_cheap_constraints_are_never_violated(space):
    budget = 0.3 * macs(space.largest())
    strategy = get_strategy(
        "evolutionary", space, TWO, seed=0, population_size=10, constraints=lambda s: [macs(s) - budget]
    )
    asked = run(strategy, toy, 80)
    assert all(macs(s) <= budget for s in asked) and len(set(asked)) > 20
    with pytest.raises(ValueError, match="violates"):
        strategy.enqueue(space.largest())
    never = get_strategy("evolutionary", space, TWO, constraints=lambda s: [1.0], max_attempts=30)
    with pytest.raises(ValueError, match="unsatisfiable"):
        never.ask()


def test_measured_constraints_keep_infeasible_subnets_out_of_the_parents(space):
    """Both objectives pull toward large subnets; a measured budget (MACs <= budget) makes them infeasible."""
    budget = 0.4 * macs(space.largest())

    def objective(subnet):
        return [macs(subnet), -float(subnet.num_hidden_layers)]  # maximize MACs, minimize -depth: bigger is better

    strategy = EvolutionarySearch(space, TWO, seed=0, population_size=12)
    run(strategy, objective, 60, constraint=lambda s, v: [macs(s) - budget])
    assert strategy.generation == 5
    assert all(macs(p.subnet) <= budget for p in strategy.parents)
    assert all(e.feasible for e in strategy.population[: len(strategy.parents)])


def test_rank_puts_the_front_first_and_infeasible_last():
    subnets = [SubnetConfig.uniform(2, h, 32, 32) for h in (1, 2, 3, 4)]
    told = [
        EvaluatedSubnet(subnets[0], (0.8, 4.0), (0.0,)),
        EvaluatedSubnet(subnets[1], (0.9, 1.0), (2.0,)),  # best values, infeasible
        EvaluatedSubnet(subnets[2], (0.7, 5.0), (0.0,)),  # dominated by the first
        EvaluatedSubnet(subnets[3], (0.6, 2.0), (0.0,)),
    ]
    ranked = [told.index(e) for e in rank_evaluated(told, TWO)]
    assert ranked == [0, 3, 2, 1]


def test_evolutionary_beats_random_search_on_hypervolume():
    """Maximize closeness to a hidden target subnet, minimize MACs: 200 evaluations, 3 seeds, fixed reference."""
    space = BASE
    target = SubnetConfig(5, (4, 1, 3, 2, 4), (128, 32, 96, 64, 32), 48)
    largest = macs(space.largest())

    def objective(subnet):
        closeness = -float(np.linalg.norm(encode(subnet, space) - encode(target, space)))
        return [closeness, macs(subnet) / largest]

    reference = [-math.sqrt(len(encode(target, space))), 1.1]
    volumes = {}
    for name in ("random", "evolutionary"):
        volumes[name] = []
        for seed in range(3):
            strategy = get_strategy(name, space, TWO, seed=seed)
            run(strategy, objective, 200)
            volumes[name].append(hypervolume([r.values for r in strategy.history], TWO, reference))
    assert np.mean(volumes["evolutionary"]) > np.mean(volumes["random"]) + 0.1, volumes
    assert min(volumes["evolutionary"]) > max(volumes["random"]), volumes


def test_option_checks():
    with pytest.raises(ValueError, match="population_size"):
        EvolutionarySearch(BASE, TWO, population_size=1)
    with pytest.raises(ValueError, match="parent_ratio"):
        EvolutionarySearch(BASE, TWO, parent_ratio=0)
    with pytest.raises(ValueError, match="mutation_prob"):
        EvolutionarySearch(BASE, TWO, mutation_prob=1.5)
    with pytest.raises(TypeError, match="mutation_ratio"):
        EvolutionarySearch(BASE, TWO, mutation_ratio="half")
