"""Evolutionary search in the style of Once-for-All: mutation and crossover on `SubnetConfig` genomes, elitist
selection of the parents by Pareto rank (multi-objective) and crowding."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...search_space import SearchSpace, SubnetConfig
from ...validation import check_int
from ..pareto import pareto_front
from .base import ConstraintsFunction, EvaluatedSubnet, SearchStrategy, register_strategy

__all__ = ["EvolutionarySearch", "Genome"]

Genome = tuple[int, int, tuple[int, ...], tuple[int, ...]]
"""`(depth, hidden_size, heads per supernet layer, FFN width per supernet layer)`: a subnet keeps the layers its
space holds for `depth` and takes the heads and FFN width of those layers; the genes of the other layers ride along,
so a layer keeps its width when a mutation changes the depth."""


def _check_fraction(name: str, value: Any, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number in [0, 1], got {value!r} of type {type(value).__name__}.")
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        allowed = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"`{name}` must be in {allowed}, got {value}.")
    return float(value)


@register_strategy
class EvolutionarySearch(SearchStrategy):
    """Once-for-All's evolutionary search behind the ask/tell interface, for one or several objectives.

    The first `population_size` proposals are uniform random subnets. Once as many subnets are told, the population
    is the best `population_size` of the population and the subnets told since (ranked feasible first, then by Pareto
    rank over the objectives, then by crowding distance, as NSGA-II ranks; an infeasible one by its total violation),
    and its best `parent_ratio` share are the parents. Every later proposal is a child of the parents: with
    probability `mutation_ratio` a mutation of one parent (each gene resampled with probability `mutation_prob`, and
    one gene at least changed), otherwise a uniform crossover of two (each gene from either parent).

    Genomes ([`Genome`]) hold the depth, the hidden size and one head count and FFN width per *supernet layer*; a
    child is decoded with `SearchSpace.subnet`, so it keeps exactly the layers its space holds for its depth (any
    `layer_rule`) and is always in the space. Children already proposed are redrawn (up to half of `max_attempts`)
    so that evaluations go to new subnets; children violating the cheap `constraints` are never proposed.

    Args:
        search_space (`SearchSpace`): the space the subnets come from.
        directions (`Sequence[str]`): `"maximize"` or `"minimize"`, one per objective.
        seed (`int`, *optional*, defaults to 0): seeds the `random.Random` of every choice.
        constraints (`Callable[[SubnetConfig], Sequence[float]]`, *optional*): cheap constraint values of a subnet
            (<= 0 feasible); infeasible subnets are never proposed.
        max_attempts (`int`, *optional*, defaults to 1000): rejected proposals per `ask` before a `ValueError`.
        population_size (`int`, *optional*, defaults to 20): subnets per generation (>= 2).
        parent_ratio (`float`, *optional*, defaults to 0.25): share of the population kept as parents.
        mutation_ratio (`float`, *optional*, defaults to 0.5): share of the children made by mutation (the others by
            crossover).
        mutation_prob (`float`, *optional*, defaults to 0.1): probability of resampling each gene in a mutation.

    Example:

    ```python
    >>> from hf_nas import SearchSpace
    >>> from hf_nas.search.strategies import EvolutionarySearch
    >>> space = SearchSpace(num_hidden_layers=(1, 2), num_attention_heads=(2, 4), intermediate_size=(32, 64),
    ...                     hidden_size=(16, 32), attention_head_size=8)
    >>> def accuracy(subnet):  # stand-ins for measured objectives
    ...     return subnet.hidden_size / 32 - 0.1 / subnet.num_hidden_layers
    >>> def macs(subnet):
    ...     return subnet.hidden_size * sum(subnet.intermediate_size)
    >>> strategy = EvolutionarySearch(space, ["maximize", "minimize"], seed=0, population_size=8)
    >>> for _ in range(16):  # two generations
    ...     subnet = strategy.ask()
    ...     strategy.tell(subnet, [accuracy(subnet), macs(subnet)])
    >>> len(strategy.history), len(strategy.parents), strategy.mutate(space.smallest()) in space
    (16, 2, True)
    ```
    """

    name = "evolutionary"

    def __init__(
        self,
        search_space: SearchSpace,
        directions: Sequence[str],
        seed: int = 0,
        constraints: ConstraintsFunction | None = None,
        max_attempts: int = 1000,
        population_size: int = 20,
        parent_ratio: float = 0.25,
        mutation_ratio: float = 0.5,
        mutation_prob: float = 0.1,
    ):
        super().__init__(search_space, directions, seed=seed, constraints=constraints, max_attempts=max_attempts)
        self.population_size = check_int("population_size", population_size, 2)
        self.parent_ratio = _check_fraction("parent_ratio", parent_ratio, low_open=True)
        self.mutation_ratio = _check_fraction("mutation_ratio", mutation_ratio)
        self.mutation_prob = _check_fraction("mutation_prob", mutation_prob)
        self._rng = random.Random(self.seed)
        self._queue: deque[SubnetConfig] = deque()
        self._genomes: dict[SubnetConfig, Genome] = {}  # the genome each proposed subnet was decoded from
        self._told: list[EvaluatedSubnet] = []  # told since the last selection
        self.population: list[EvaluatedSubnet] = []
        self.parents: list[EvaluatedSubnet] = []
        self.generation = 0

    # ------------------------------------------------------------------------------------------------------------
    # genomes
    def encode(self, subnet: SubnetConfig) -> Genome:
        """The genome of `subnet` (one it was proposed from, else one with every dropped layer taking the sizes of
        the nearest kept layer)."""
        self.search_space.validate(subnet)
        if subnet in self._genomes:
            return self._genomes[subnet]
        total = self.search_space.num_supernet_layers
        kept = list(subnet.layers)
        nearest = [min(range(len(kept)), key=lambda i: (abs(kept[i] - layer), kept[i])) for layer in range(total)]
        return (
            subnet.num_hidden_layers,
            subnet.hidden_size,
            tuple(subnet.num_attention_heads[i] for i in nearest),
            tuple(subnet.intermediate_size[i] for i in nearest),
        )

    def decode(self, genome: Genome) -> SubnetConfig:
        """The subnet of `genome`: the layers its space holds for the depth, with their genes."""
        depth, hidden, heads, ffn = genome
        layers = self.search_space.layers_for(depth)
        return self.search_space.subnet(depth, [heads[i] for i in layers], [ffn[i] for i in layers], hidden)

    def _random_genome(self) -> Genome:
        space, total = self.search_space, self.search_space.num_supernet_layers
        return (
            self._rng.choice(space.num_hidden_layers),
            self._rng.choice(space.hidden_size),
            tuple(self._rng.choice(space.num_attention_heads) for _ in range(total)),
            tuple(self._rng.choice(space.intermediate_size) for _ in range(total)),
        )

    def mutate(self, subnet: SubnetConfig) -> SubnetConfig:
        """A mutation of `subnet`: each gene resampled with probability `mutation_prob`; if that leaves the subnet
        unchanged, one gene that the subnet uses is changed to another of its choices (when the space has one)."""
        return self.decode(self._mutate(self.encode(subnet)))

    def _mutate(self, genome: Genome) -> Genome:
        space, rng, p = self.search_space, self._rng, self.mutation_prob
        depth, hidden, heads, ffn = genome
        depth = rng.choice(space.num_hidden_layers) if rng.random() < p else depth
        hidden = rng.choice(space.hidden_size) if rng.random() < p else hidden
        heads = tuple(rng.choice(space.num_attention_heads) if rng.random() < p else h for h in heads)
        ffn = tuple(rng.choice(space.intermediate_size) if rng.random() < p else f for f in ffn)
        child = (depth, hidden, heads, ffn)
        if self.decode(child) == self.decode(genome):
            child = self._change_one_gene(genome)
        return child

    def _change_one_gene(self, genome: Genome) -> Genome:
        """`genome` with one gene that its subnet uses set to another choice (unchanged if no gene has one)."""
        space = self.search_space
        depth, hidden, heads, ffn = genome
        layers = space.layers_for(depth)
        genes = [("depth", None, space.num_hidden_layers), ("hidden", None, space.hidden_size)]
        genes += [("heads", i, space.num_attention_heads) for i in layers]
        genes += [("ffn", i, space.intermediate_size) for i in layers]
        genes = [g for g in genes if len(g[2]) > 1]
        if not genes:
            return genome
        kind, index, choices = self._rng.choice(genes)
        current = (
            {"depth": depth, "hidden": hidden}.get(kind)
            if index is None
            else (heads if kind == "heads" else ffn)[index]
        )
        value = self._rng.choice([c for c in choices if c != current])
        if kind == "depth":
            return (value, hidden, heads, ffn)
        if kind == "hidden":
            return (depth, value, heads, ffn)
        if kind == "heads":
            return (depth, hidden, heads[:index] + (value,) + heads[index + 1 :], ffn)
        return (depth, hidden, heads, ffn[:index] + (value,) + ffn[index + 1 :])

    def crossover(self, first: SubnetConfig, second: SubnetConfig) -> SubnetConfig:
        """A uniform crossover of two subnets: every gene from either parent with probability 1/2."""
        return self.decode(self._crossover(self.encode(first), self.encode(second)))

    def _crossover(self, a: Genome, b: Genome) -> Genome:
        rng = self._rng

        def pick(x: Any, y: Any) -> Any:
            return x if rng.random() < 0.5 else y

        return (
            pick(a[0], b[0]),
            pick(a[1], b[1]),
            tuple(pick(x, y) for x, y in zip(a[2], b[2], strict=True)),
            tuple(pick(x, y) for x, y in zip(a[3], b[3], strict=True)),
        )

    # ------------------------------------------------------------------------------------------------------------
    # ask / tell
    def _child(self) -> Genome:
        if not self.parents:  # generation 0: uniform random genomes
            return self._random_genome()
        if len(self.parents) == 1 or self._rng.random() < self.mutation_ratio:
            return self._mutate(self.encode(self._rng.choice(self.parents).subnet))
        first, second = self._rng.sample(self.parents, 2)
        return self._crossover(self.encode(first.subnet), self.encode(second.subnet))

    def ask(self) -> SubnetConfig:
        if self._queue:
            return self._queue.popleft()
        for attempt in range(self.max_attempts):
            genome = self._child()
            subnet = self.decode(genome)
            if not self._is_feasible(subnet):
                continue
            if subnet in self._genomes and attempt < self.max_attempts // 2:
                continue  # proposed before: try for a new subnet first
            self._genomes.setdefault(subnet, genome)
            return subnet
        raise self._unsatisfiable()

    def _tell(self, subnet: SubnetConfig, values: tuple[float, ...], constraint_values: tuple[float, ...]) -> None:
        self._told.append(EvaluatedSubnet(subnet, values, constraint_values))
        if len(self._told) >= self.population_size:
            self._select()

    def _select(self) -> None:
        """The next population: the best `population_size` distinct subnets of the population and the told ones."""
        pool: dict[SubnetConfig, EvaluatedSubnet] = {}
        for evaluated in [*self.population, *self._told]:
            pool.setdefault(evaluated.subnet, evaluated)
        ranked = rank_evaluated(list(pool.values()), self.directions)
        self.population = ranked[: self.population_size]
        self.parents = self.population[: max(1, round(self.parent_ratio * self.population_size))]
        self._told = []
        self.generation += 1

    def _enqueue(self, subnet: SubnetConfig) -> None:
        self._queue.append(subnet)


def _crowding(points: np.ndarray) -> np.ndarray:
    """Crowding distance of each point (n, k) within its front: the sum over objectives of the gap between its
    neighbours, normalized by the objective's range; the extremes are infinite."""
    n, k = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(points[:, j], kind="stable")
        spread = points[order[-1], j] - points[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if spread > 0:
            distance[order[1:-1]] += (points[order[2:], j] - points[order[:-2], j]) / spread
    return distance


def rank_evaluated(evaluated: Sequence[EvaluatedSubnet], directions: Sequence[str]) -> list[EvaluatedSubnet]:
    """`evaluated` from best to worst: feasible subnets first, by Pareto rank (non-dominated sorting) and then by
    decreasing crowding distance; infeasible ones after them, by increasing total violation. Ties keep the input
    order.

    ```python
    >>> from hf_nas import SubnetConfig
    >>> from hf_nas.search.strategies import EvaluatedSubnet
    >>> from hf_nas.search.strategies.evolutionary import rank_evaluated
    >>> subnets = [SubnetConfig.uniform(1, h, 32, 16) for h in (1, 2, 3)]
    >>> told = [EvaluatedSubnet(subnets[0], (0.7, 5.0)), EvaluatedSubnet(subnets[1], (0.6, 6.0)),
    ...         EvaluatedSubnet(subnets[2], (0.9, 9.0))]
    >>> [e.subnet.num_attention_heads[0] for e in rank_evaluated(told, ["maximize", "minimize"])]
    [1, 3, 2]
    ```
    """
    feasible = [e for e in evaluated if e.feasible]
    infeasible = sorted(
        (e for e in evaluated if not e.feasible), key=lambda e: sum(max(0.0, v) for v in e.constraint_values)
    )
    ranked: list[EvaluatedSubnet] = []
    remaining = list(range(len(feasible)))
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    while remaining:
        values = [feasible[i].values for i in remaining]
        front = [remaining[i] for i in pareto_front(values, directions)]
        points = np.array([feasible[i].values for i in front]) * signs  # (m, k), all minimized
        crowding = _crowding(points)
        order = sorted(range(len(front)), key=lambda i: -crowding[i])  # stable: ties keep the input order
        ranked.extend(feasible[front[i]] for i in order)
        chosen = set(front)
        remaining = [i for i in remaining if i not in chosen]
    return ranked + infeasible
