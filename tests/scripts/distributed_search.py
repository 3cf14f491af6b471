"""Run two `hf-nas search` commands on a saved tiny supernet, in one process or under `torchrun --nproc_per_node N`.

Launched by `tests/test_search_distributed.py`. The searches: the default predictor-guided NSGA-II loop, and the
evolutionary strategy measuring every proposal. Their objectives are the task metric, parameters and `depth`, a
stand-in for a timed objective (`exclusive`: measured by the main process alone). Every measurement of the task
metric and of `depth` is appended to `$SEARCH_CALLS` as a JSON line (objective, rank, pid, subnet).

    python -m torch.distributed.run --nproc_per_node 2 tests/scripts/distributed_search.py INPUTS OUTDIR
    python tests/scripts/distributed_search.py INPUTS OUTDIR  # the one-process reference
"""

from __future__ import annotations

import json
import os
import sys

from hf_nas import cli
from hf_nas.commands import search as search_command
from hf_nas.search.objectives import Objective, register_objective


def log_call(objective: str, subnet) -> None:
    with open(os.environ["SEARCH_CALLS"], "a") as f:
        call = {"objective": objective, "rank": int(os.environ.get("RANK", "0")), "pid": os.getpid()}
        f.write(json.dumps({**call, "subnet": subnet.to_dict()}) + "\n")


class LoggedMetric(search_command.TaskMetricObjective):
    def __call__(self, model, subnet):
        value = super().__call__(model, subnet)
        log_call(self.name, subnet)
        return value


@register_objective
class Depth(Objective):
    """A deterministic stand-in for a timing: `exclusive`, so one process measures it at a time."""

    name, direction, cheap, exclusive = "depth", "minimize", False, True

    def __call__(self, model, subnet):
        log_call(self.name, subnet)
        return float(subnet.num_hidden_layers)


def main(inputs: str, outdir: str) -> None:
    search_command.TaskMetricObjective = LoggedMetric
    common = [
        "search", "--supernet", os.path.join(inputs, "supernet"), "--validation_file", os.path.join(inputs, "dev.csv"),
        "--objectives", "accuracy,params,depth", "--num_evaluations", "11", "--evaluations_per_round", "4",
        "--sequence_length", "16", "--max_seq_length", "16",
    ]  # fmt: skip
    cli.main([*common, "--output_dir", os.path.join(outdir, "predictors"), "--initial_evaluations", "5",
              "--candidates_per_round", "40"])  # fmt: skip
    cli.main([*common, "--output_dir", os.path.join(outdir, "evolutionary"), "--strategy", "evolutionary",
              "--no_use_predictors"])  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:3])
