"""Search benchmark on an SST-2 supernet, written to docs/benchmarks/search.{json,md}.

- NSGA-II screened by predictors vs random search at the same number of real evaluations: hypervolume (accuracy vs
  MACs, one common reference point) and the best accuracy under 50% of the MACs;
- latency predictor error: fitted on the random search's measured subnets, scored on the other search's extracted
  subnets (median absolute percentage error, target <= 10%);
- throughput of predictor-scored candidates per second;
- wall time of the predictor-guided search (1,000 candidates, 100 real evaluations).

    python scripts/bench_search.py [--supernet out/supernet]   # default: train one as bench_supernet.py does
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field

import numpy as np
from bench_common import (
    BENCHMARKS_DIR,
    BenchArguments,
    build_supernet,
    common_args,
    environment,
    load_sst2,
    met,
    parse_args,
    setup_logging,
    write_results,
)
from transformers import AutoTokenizer, DataCollatorWithPadding, set_seed

from hf_nas import ElasticBertForSequenceClassification
from hf_nas.search import Constraint, Predictor, SubnetSearch, get_objective, hypervolume
from hf_nas.search.objectives import TaskMetricObjective
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import checkpoint_name, default_text_checkpoint

logger = logging.getLogger("hf_nas.bench_search")
TARGETS = {"latency_median_ape": 0.10}


@dataclass
class SearchBenchArguments:
    supernet: str | None = field(default=None, metadata={"help": "A trained supernet folder (else train one)."})
    train_steps: int = field(default=300, metadata={"help": "Steps of the supernet trained when none is given."})
    num_evaluations: int = 100
    candidates: int = field(default=1000, metadata={"help": "Predictor-scored candidates of the guided search."})
    initial_evaluations: int = 20
    evaluations_per_round: int = 10
    sequence_length: int = 64
    latency_batch_size: int = 8
    latency_min_run_time: float = 0.3
    eval_batch_size: int = 64
    dev_samples: int | None = field(default=None, metadata={"help": "Default: the full dev set (smoke runs only)."})
    seed: int = 0
    output_dir: str = BENCHMARKS_DIR
    work_dir: str = "/tmp/hf_nas_bench_search"


def train_supernet(args: SearchBenchArguments, path: str, tokenizer, train) -> str:
    """The bench_supernet.py recipe (sandwich, in-place distillation), saved to work_dir/supernet."""
    bench = BenchArguments(max_steps=args.train_steps, work_dir=args.work_dir, seed=42)
    model = build_supernet(bench, path, tokenizer, train)
    sargs = common_args(
        bench, "supernet", SupernetTrainingArguments, sampler="sandwich", num_random_subnets=2, eval_subnets=""
    )
    trainer = SupernetTrainer(
        model=model,
        args=sargs,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    folder = os.path.join(args.work_dir, "supernet")
    trainer.save_model(folder)
    return folder


def main() -> None:
    args = parse_args(SearchBenchArguments)
    setup_logging()
    set_seed(args.seed)
    started = time.perf_counter()
    base = default_text_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(args.supernet or base)
    train, dev = load_sst2(
        BenchArguments(max_seq_length=args.sequence_length, dev_samples=args.dev_samples), tokenizer
    )
    supernet_path = args.supernet or train_supernet(args, base, tokenizer, train)
    model = ElasticBertForSequenceClassification.from_pretrained(supernet_path).eval()
    space = model.search_space

    accuracy = TaskMetricObjective(dev, batch_size=args.eval_batch_size, tokenizer=tokenizer)
    macs = get_objective("macs", sequence_length=args.sequence_length)
    latency = get_objective(
        "latency",
        batch_size=args.latency_batch_size,
        sequence_length=args.sequence_length,
        min_run_time=args.latency_min_run_time,
    )
    objectives = [accuracy, macs, latency]
    rounds = max(1, (args.num_evaluations - args.initial_evaluations) // args.evaluations_per_round)
    runs = {}
    for name, strategy, use_predictors in (("random", "random", False), ("nsga2+predictors", "nsga2", True)):
        logger.info("search: %s", name)
        start = time.perf_counter()
        search = SubnetSearch(
            model,
            objectives,
            strategy,
            num_evaluations=args.num_evaluations,
            use_predictors=use_predictors,
            candidates_per_round=max(1, args.candidates // rounds),
            evaluations_per_round=args.evaluations_per_round,
            initial_evaluations=args.initial_evaluations,
            output_dir=os.path.join(args.work_dir, name),
            seed=args.seed,
        )
        runs[name] = (search.run(), time.perf_counter() - start)

    # hypervolume of accuracy vs MACs, one reference point for both searches
    full_macs = macs(model, model.max_subnet())
    points = {
        n: [[r["values"]["accuracy"], r["values"]["macs"] / full_macs] for r in res.records]
        for n, (res, _) in runs.items()
    }
    reference = [min(p[0] for ps in points.values() for p in ps) - 0.01, 1.0 + 1e-9]
    budget = Constraint("macs", max_value=0.5 * full_macs)
    summary = {}
    for name, (res, seconds) in runs.items():
        best = res.best("accuracy", [budget])
        summary[name] = {
            "hypervolume_accuracy_macs": hypervolume(points[name], ["maximize", "minimize"], reference),
            "best_accuracy_under_50pct_macs": None if best is None else res.records[best]["values"]["accuracy"],
            "best_subnet_under_50pct_macs": None if best is None else res.records[best]["subnet"],
            "pareto_size": len(res.pareto_indices()),
            "wall_seconds": seconds,
            "predictor_scores": res.predictor_scores,
        }

    # latency predictor: fit on one search's measured subnets, scored on the other's
    fit_res, test_res = runs["random"][0], runs["nsga2+predictors"][0]
    subnets = lambda res: [res.subnet(i) for i in range(len(res.records))]  # noqa: E731
    predictor = Predictor(space, seed=args.seed).fit(
        subnets(fit_res), [r["values"]["latency"] for r in fit_res.records]
    )
    measured = np.array([r["values"]["latency"] for r in test_res.records])
    predicted = predictor.predict(subnets(test_res))
    ape = np.abs(predicted - measured) / measured
    latency_error = {
        "median_ape": float(np.median(ape)),
        "mean_ape": float(np.mean(ape)),
        "p90_ape": float(np.quantile(ape, 0.9)),
        "num_test": len(measured),
        **{k: float(v) for k, v in predictor.score(subnets(test_res), measured.tolist()).items()},
    }

    # throughput of predictor-scored candidates (encoding + prediction + exact MACs)
    rng = random.Random(args.seed)
    candidates = [space.sample(generator=rng) for _ in range(5000)]
    start = time.perf_counter()
    predictor.predict(candidates)
    for c in candidates:
        macs(model, c)
    throughput = len(candidates) / (time.perf_counter() - start)

    result = {
        "model": checkpoint_name(base),
        "supernet": supernet_path,
        **environment(),
        "dev_samples": len(dev),
        "num_evaluations": args.num_evaluations,
        "candidates": args.candidates,
        "sequence_length": args.sequence_length,
        "latency_batch_size": args.latency_batch_size,
        "search_space": space.to_dict(),
        "reference_point": reference,
        "searches": summary,
        "latency_predictor": latency_error,
        "candidates_per_second": throughput,
        "targets": TARGETS,
        "wall_seconds": time.perf_counter() - started,
    }
    write_results(args.output_dir, "search", result, render_markdown(result))


def render_markdown(r: dict) -> str:
    s = r["searches"]
    lat = r["latency_predictor"]
    lines = [
        "# Subnet search benchmark (SST-2)",
        "",
        f"Generated by `scripts/bench_search.py` on a {r['model']} supernet trained on SST-2; objectives: dev "
        f"accuracy ({r['dev_samples']} rows), MACs and latency of the extracted subnet (batch "
        f"{r['latency_batch_size']} x {r['sequence_length']} tokens, {r['device']}, {r['num_threads']} threads); "
        f"{r['num_evaluations']} real evaluations per search; torch {r['torch']}, transformers {r['transformers']}, "
        f"hf-nas {r['hf_nas']}. Wall time {r['wall_seconds'] / 60:.0f} min.",
        "",
        "| search | hypervolume (accuracy vs MAC ratio) | best accuracy <= 50% MACs | front size | wall time |",
        "|---|---|---|---|---|",
    ]
    for name, v in s.items():
        best = v["best_accuracy_under_50pct_macs"]
        lines.append(
            f"| {name} | {v['hypervolume_accuracy_macs']:.4f} | {'-' if best is None else f'{100 * best:.2f}%'} | "
            f"{v['pareto_size']} | {v['wall_seconds'] / 60:.1f} min |"
        )
    lines += [
        "",
        f"Reference point of the hypervolume: accuracy {r['reference_point'][0]:.4f}, MAC ratio 1.0.",
        "",
        "| latency predictor (fitted on the random search's subnets, scored on the other search's) | value |",
        "|---|---|",
        f"| median absolute error (target <= {100 * r['targets']['latency_median_ape']:.0f}%) | "
        f"{100 * lat['median_ape']:.1f}% ({met(lat['median_ape'], r['targets']['latency_median_ape'])}) |",
        f"| mean / 90th percentile absolute error | {100 * lat['mean_ape']:.1f}% / {100 * lat['p90_ape']:.1f}% |",
        f"| Kendall tau | {lat['kendall_tau']:.3f} |",
        f"| held-out subnets | {lat['num_test']} |",
        "",
        f"Predictor-scored candidates per second (latency prediction + exact MACs): {r['candidates_per_second']:.0f}.",
        f"The predictor-guided search scored {r['candidates']} candidates and measured {r['num_evaluations']} subnets "
        f"in {s['nsga2+predictors']['wall_seconds'] / 60:.1f} min.",
    ]
    for name, v in s.items():
        for objective, score in v["predictor_scores"].items():
            lines.append(
                f"- {name}: {objective} predictor held-out (last 20% of its measured subnets) MAE "
                f"{score['mae']:.4g}, Kendall tau {score['kendall_tau']:.3f}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
