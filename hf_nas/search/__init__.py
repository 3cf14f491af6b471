"""Subnet search: objectives, predictors, strategies behind one ask/tell interface, and the Pareto front.

Search code never touches the network: strategies see subnets and objective values only.
"""

from .gradient import (
    ArchitectureParameters,
    ArchitectureWeights,
    MixedForward,
    expected_macs,
    perturbation_select,
    select_argmax,
)
from .objectives import OBJECTIVES, Objective, get_objective, register_objective
from .pareto import default_reference_point, hypervolume, pareto_front
from .predictors import Predictor, encode
from .search import RESULTS_NAME, SearchResults, SubnetSearch, supernet_fingerprint
from .strategies import (
    STRATEGIES,
    Constraint,
    SearchStrategy,
    check_constraints,
    get_strategy,
    parse_constraints,
    register_strategy,
)

__all__ = [
    "OBJECTIVES",
    "RESULTS_NAME",
    "STRATEGIES",
    "ArchitectureParameters",
    "ArchitectureWeights",
    "Constraint",
    "MixedForward",
    "Objective",
    "Predictor",
    "SearchResults",
    "SearchStrategy",
    "SubnetSearch",
    "check_constraints",
    "default_reference_point",
    "encode",
    "expected_macs",
    "get_objective",
    "get_strategy",
    "hypervolume",
    "pareto_front",
    "parse_constraints",
    "perturbation_select",
    "register_objective",
    "register_strategy",
    "select_argmax",
    "supernet_fingerprint",
]
