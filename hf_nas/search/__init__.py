"""Subnet search: objectives, constraints, predictors, per-device latency tables, strategies behind one ask/tell
interface, the Pareto front, the search loop ([`SubnetSearch`], over one process or several) and its results
([`SearchResults`]).

Search code never touches the network: strategies see subnets and objective values only.
"""

from .constraints import Constraint, check_constraints, parse_constraints
from .distributed import SearchProcesses, init_search_processes
from .latency_table import LatencyTable, PairedLatencyMeter, cached_latency_table
from .objectives import OBJECTIVES, Objective, get_objective, register_objective
from .pareto import (
    anytime_hypervolume,
    default_reference_point,
    hypervolume,
    ideal_point,
    normalized_hypervolume,
    pareto_front,
)
from .predictors import Predictor, encode, held_out_split
from .results import RESULTS_NAME, SearchResults, supernet_fingerprint
from .search import SubnetSearch
from .strategies import STRATEGIES, SearchStrategy, get_strategy, register_strategy

__all__ = [
    "OBJECTIVES",
    "RESULTS_NAME",
    "STRATEGIES",
    "Constraint",
    "LatencyTable",
    "Objective",
    "PairedLatencyMeter",
    "Predictor",
    "SearchProcesses",
    "SearchResults",
    "SearchStrategy",
    "SubnetSearch",
    "anytime_hypervolume",
    "cached_latency_table",
    "check_constraints",
    "default_reference_point",
    "encode",
    "get_objective",
    "get_strategy",
    "held_out_split",
    "hypervolume",
    "ideal_point",
    "init_search_processes",
    "normalized_hypervolume",
    "pareto_front",
    "parse_constraints",
    "register_objective",
    "register_strategy",
    "supernet_fingerprint",
]
