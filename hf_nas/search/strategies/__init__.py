"""Search strategies: which subnets to evaluate next during search.

A [`SearchStrategy`] speaks one ask/tell interface: `ask()` proposes a subnet, `tell(subnet, values)` reports its
measured objective values (one per direction). Strategies never touch the network; they see only the search space
(to sample subnets), the objective values they are told and, optionally, a cheap `constraints` function.

Strategies are found by name in [`STRATEGIES`] (see [`get_strategy`]); add one with the [`register_strategy`]
decorator. Importing this package registers the built-in ones, one module each:

- `"random"` ([`RandomSearch`], `random_search.py`): uniform random subnets from a seeded `random.Random`.
- `"nsga2"` ([`NSGA2Search`], `nsga2.py`): multi-objective evolutionary search (NSGA-II, as in InstaTune and LINAS)
  with optuna's maintained `NSGAIISampler`.
- `"evolutionary"` ([`EvolutionarySearch`], `evolutionary.py`): Once-for-All's mutation and crossover on subnet
  genomes, parents by Pareto rank.
- `"linas"` ([`LinasSearch`], `linas.py`): predictor screening (LINAS): many generations of an inner strategy on
  predicted values per round, real evaluations only for the predicted front.
- `"enas"` ([`ENASSearch`], `enas.py`): an LSTM controller trained by REINFORCE, with an optional memory buffer.

Constrained search ("the most accurate subnet with latency <= 10 ms") works two ways, with any strategy:

- a cheap `constraints` function (for example of the MACs) given to the strategy is evaluated at ask time, and a
  subnet that violates it is never proposed;
- measured constraint values passed to `tell` (`constraint_values`, one number per constraint, <= 0 meaning
  feasible) steer strategies that learn (NSGA-II prefers feasible subnets by constrained domination).

The constraint helpers ([`Constraint`], [`parse_constraints`], [`check_constraints`], [`evaluate_constraints`],
[`best_feasible`]) live in [`hf_nas.search.constraints`] and are re-exported here.
"""

from __future__ import annotations

from ..constraints import (
    DIRECTIONS,
    Constraint,
    best_feasible,
    check_constraints,
    evaluate_constraints,
    parse_constraints,
)
from .base import STRATEGIES, ConstraintsFunction, EvaluatedSubnet, SearchStrategy, get_strategy, register_strategy
from .enas import ENASSearch
from .evolutionary import EvolutionarySearch
from .linas import LinasSearch
from .nsga2 import NSGA2Search
from .random_search import RandomSearch

__all__ = [
    "DIRECTIONS",
    "STRATEGIES",
    "Constraint",
    "ConstraintsFunction",
    "ENASSearch",
    "EvaluatedSubnet",
    "EvolutionarySearch",
    "LinasSearch",
    "NSGA2Search",
    "RandomSearch",
    "SearchStrategy",
    "best_feasible",
    "check_constraints",
    "evaluate_constraints",
    "get_strategy",
    "parse_constraints",
    "register_strategy",
]
