"""Subnet search: objectives, constraints, predictors, strategies behind one ask/tell interface, the Pareto front,
the search loop ([`SubnetSearch`]) and its results ([`SearchResults`]).

Search code never touches the network: strategies see subnets and objective values only.
"""

from .constraints import Constraint, check_constraints, parse_constraints
from .objectives import OBJECTIVES, Objective, get_objective, register_objective
from .pareto import default_reference_point, hypervolume, ideal_point, normalized_hypervolume, pareto_front
from .predictors import Predictor, encode
from .results import RESULTS_NAME, SearchResults, supernet_fingerprint
from .search import SubnetSearch
from .strategies import STRATEGIES, SearchStrategy, get_strategy, register_strategy

__all__ = [
    "OBJECTIVES",
    "RESULTS_NAME",
    "STRATEGIES",
    "Constraint",
    "Objective",
    "Predictor",
    "SearchResults",
    "SearchStrategy",
    "SubnetSearch",
    "check_constraints",
    "default_reference_point",
    "encode",
    "get_objective",
    "get_strategy",
    "hypervolume",
    "ideal_point",
    "normalized_hypervolume",
    "pareto_front",
    "parse_constraints",
    "register_objective",
    "register_strategy",
    "supernet_fingerprint",
]
