"""Gradient-based search benchmark on SST-2, written to docs/benchmarks/gradient_search.{json,md}.

From all-MiniLM-L6-v2 (importance-reordered once, default search space: depth, per-layer heads and FFN width, hidden
size), at two MAC budgets, at matched training compute (the same number of forward/backward passes of a training
batch through the supernet):

- TangleNAS: `GradientSearchTrainer` (DARTS, first-order, resource penalty toward the budget) for `search_steps`
  steps of one weight pass (training split) + one architecture pass (search split), then (a) argmax selection and
  (b) perturbation selection (DARTS-PT, `perturbation_batches` batches of the search split per removal, one tuning
  step per decision);
- baselines: a supernet trained with the sandwich rule (largest, smallest, one random subnet: 3 passes per step)
  for about the same number of passes, then random search and NSGA-II (hf_nas.search) with `num_evaluations`
  real evaluations each on the same search split, constrained to the budget.

Every selected subnet is extracted and its accuracy measured on the dev subset, as it comes out of the search (no
retraining) and after `finetune_steps` steps of plain fine-tuning of the extracted model.

    python scripts/bench_gradient_search.py [--search_steps 70] [--num_evaluations 30]
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass, field

import torch
from bench_common import (
    BENCHMARKS_DIR,
    SST2_DIR,
    BenchArguments,
    common_args,
    environment,
    load_sst2,
    parse_args,
    setup_logging,
    write_results,
)
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, set_seed

import hf_nas
from hf_nas import count_macs
from hf_nas.gradient import GradientSearchArguments, GradientSearchTrainer
from hf_nas.metrics import build_compute_metrics
from hf_nas.search import Constraint, SubnetSearch, get_objective, get_strategy
from hf_nas.search.objectives import TaskMetricObjective
from hf_nas.training import ResumableTrainer, SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import checkpoint_name, default_text_checkpoint

logger = logging.getLogger("hf_nas.bench_gradient_search")


@dataclass
class GradientBenchArguments:
    budgets: str = field(default="0.5,0.3", metadata={"help": "MAC budgets, fractions of the full model's MACs."})
    search_steps: int = field(default=70, metadata={"help": "TangleNAS steps (1 weight + 1 architecture pass each)."})
    arch_learning_rate: float = 0.05
    resource_penalty: float = 1.0
    perturbation_batches: int = 2
    perturbation_tuning_steps: int = 1
    num_evaluations: int = field(default=30, metadata={"help": "Real evaluations of random search and NSGA-II."})
    population_size: int = 10
    train_samples: int = 9600
    search_samples: int = field(default=256, metadata={"help": "Held-out training rows: the search split."})
    dev_samples: int = field(default=872, metadata={"help": "Fixed dev subset (the first rows) for the accuracies."})
    finetune_steps: int = field(default=20, metadata={"help": "Plain fine-tuning steps of each extracted subnet."})
    batch_size: int = 32
    sequence_length: int = 64
    learning_rate: float = 5e-5
    seed: int = 42
    data_dir: str = field(default=SST2_DIR)
    output_dir: str = BENCHMARKS_DIR
    work_dir: str = "/tmp/hf_nas_bench_gradient_search"


def build(args: GradientBenchArguments, base: str, tokenizer):
    bench = BenchArguments(
        model_name_or_path=base,
        data_dir=args.data_dir,
        train_samples=args.train_samples + args.search_samples,
        dev_samples=args.dev_samples,
        max_seq_length=args.sequence_length,
        batch_size=args.batch_size,
        seed=args.seed,
        work_dir=args.work_dir,
        learning_rate=args.learning_rate,
    )
    rows, dev = load_sst2(bench, tokenizer)
    train = rows.select(range(args.train_samples))
    search = rows.select(range(args.train_samples, args.train_samples + args.search_samples))
    return bench, train, search, dev


_REORDERED: dict[str, torch.nn.Module] = {}


def reordered_supernet(bench: BenchArguments, base: str, tokenizer, train):
    """MiniLM as a supernet with the default search space, heads and neurons reordered by importance (once; each
    call returns a fresh copy)."""
    if base in _REORDERED:
        return copy.deepcopy(_REORDERED[base])
    torch.manual_seed(bench.seed)
    model = hf_nas.ElasticBertForSequenceClassification.from_pretrained(base, num_labels=2)
    loader = DataLoader(train, batch_size=bench.batch_size, collate_fn=DataCollatorWithPadding(tokenizer))
    hf_nas.reorder_by_importance(model, loader, num_batches=8, show_progress=False)
    _REORDERED[base] = copy.deepcopy(model)
    return model


def evaluate_subnet(args, bench, model, subnet, tokenizer, train, dev) -> dict:
    """Dev accuracy of the extracted subnet, as selected and after `finetune_steps` of plain fine-tuning."""
    small = model.extract_subnet(subnet)
    collator = DataCollatorWithPadding(tokenizer)
    metrics = build_compute_metrics(["accuracy"])
    tuned_bench = dataclasses.replace(bench, max_steps=max(1, args.finetune_steps))
    trainer = ResumableTrainer(
        model=small,
        args=common_args(tuned_bench, "finetune"),
        train_dataset=train,
        data_collator=collator,
        compute_metrics=metrics,
    )
    before = float(trainer.evaluate(dev)["eval_accuracy"])
    after = None
    if args.finetune_steps > 0:
        set_seed(args.seed)
        trainer.train()
        after = float(trainer.evaluate(dev)["eval_accuracy"])
    full = count_macs(model, model.max_subnet(), sequence_length=args.sequence_length)
    return {
        "subnet": subnet.to_dict(),
        "macs_ratio": count_macs(model, subnet, sequence_length=args.sequence_length) / full,
        "dev_accuracy": before,
        "dev_accuracy_finetuned": after,
    }


def run_tanglenas(args, bench, base, tokenizer, train, search, dev, budget: float) -> dict:
    model = reordered_supernet(bench, base, tokenizer, train)
    gargs = common_args(
        dataclasses.replace(bench, max_steps=args.search_steps),
        f"tanglenas-{budget}",
        GradientSearchArguments,
        arch_optimizer="darts",
        arch_learning_rate=args.arch_learning_rate,
        resource_penalty=args.resource_penalty,
        target_macs_ratio=budget,
        macs_sequence_length=args.sequence_length,
    )
    trainer = GradientSearchTrainer(
        model=model,
        args=gargs,
        train_dataset=train,
        arch_dataset=search,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    argmax = trainer.select_subnet("argmax", max_macs_ratio=budget)
    argmax_seconds = time.perf_counter() - start
    searched = copy.deepcopy(model)  # the perturbation selection tunes `model` in place; argmax keeps these weights
    history: list[dict] = []
    start_pt = time.perf_counter()
    perturbation = trainer.select_subnet(
        "perturbation",
        max_macs_ratio=budget,
        num_eval_batches=args.perturbation_batches,
        tuning_steps=args.perturbation_tuning_steps,
        history=history,
    )
    pt_seconds = time.perf_counter() - start_pt
    logs = [e for e in trainer.state.log_history if "expected_macs_ratio" in e]
    return {
        "models": {"tanglenas-argmax": searched, "tanglenas-perturbation": model},
        "passes": 2 * args.search_steps,
        "architecture_weights": trainer.arch_parameters.to_dict(),
        "expected_macs_ratio_log": [e["expected_macs_ratio"] for e in logs],
        "selections": {
            "tanglenas-argmax": (argmax, argmax_seconds),
            "tanglenas-perturbation": (perturbation, train_seconds + pt_seconds),
        },
        "perturbation_history": history,
    }


def train_baseline_supernet(args, bench, base, tokenizer, train):
    model = reordered_supernet(bench, base, tokenizer, train)
    steps = max(1, round(2 * args.search_steps / 3))  # 3 passes per sandwich step: matched passes
    sargs = common_args(
        dataclasses.replace(bench, max_steps=steps),
        "sandwich",
        SupernetTrainingArguments,
        sampler="sandwich",
        num_random_subnets=1,
        eval_subnets="",
    )
    trainer = SupernetTrainer(
        model=model,
        args=sargs,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    start = time.perf_counter()
    trainer.train()
    return model.eval(), 3 * steps, time.perf_counter() - start


def run_baseline_search(args, model, tokenizer, search, budget: float, strategy_name: str) -> tuple:
    accuracy = TaskMetricObjective(search, batch_size=64, tokenizer=tokenizer)
    macs = get_objective("macs", sequence_length=args.sequence_length)
    full = macs(model, model.max_subnet())
    limit = budget * full
    kwargs = {"population_size": args.population_size} if strategy_name == "nsga2" else {}
    strategy = get_strategy(
        strategy_name,
        model.search_space,
        ["maximize", "minimize"],
        seed=args.seed,
        constraints=lambda subnet: [macs(model, subnet) - limit],  # cheap: infeasible subnets are never proposed
        **kwargs,
    )
    start = time.perf_counter()
    results = SubnetSearch(
        model,
        [accuracy, macs],
        strategy,
        num_evaluations=args.num_evaluations,
        constraints=[Constraint("macs", max_value=limit)],
        use_predictors=False,
        seed=args.seed,
        show_progress=False,
    ).run()
    best = results.best("accuracy", [Constraint("macs", max_value=limit)])
    return results.subnet(best), time.perf_counter() - start, results.records[best]["values"]["accuracy"]


def main() -> None:
    args = parse_args(GradientBenchArguments)
    setup_logging()
    set_seed(args.seed)
    started = time.perf_counter()
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    base = default_text_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(base)
    bench, train, search, dev = build(args, base, tokenizer)

    rows: dict[str, dict] = {}
    logger.info("baseline supernet (sandwich)")
    baseline, baseline_passes, baseline_train_seconds = train_baseline_supernet(args, bench, base, tokenizer, train)
    space = baseline.search_space
    for budget in budgets:
        key = f"{budget:g}"
        rows[key] = {}
        for name in ("random", "nsga2"):
            logger.info("budget %s: %s search", key, name)
            subnet, seconds, search_accuracy = run_baseline_search(args, baseline, tokenizer, search, budget, name)
            result = evaluate_subnet(args, bench, baseline, subnet, tokenizer, train, dev)
            result.update(
                search_split_accuracy=search_accuracy,
                training_passes=baseline_passes,
                search_seconds=seconds,
                wall_seconds=baseline_train_seconds + seconds,
            )
            rows[key][name] = result
        logger.info("budget %s: TangleNAS", key)
        run = run_tanglenas(args, bench, base, tokenizer, train, search, dev, budget)
        for name, (subnet, seconds) in run["selections"].items():
            result = evaluate_subnet(args, bench, run["models"][name], subnet, tokenizer, train, dev)
            result.update(training_passes=run["passes"], wall_seconds=seconds)
            rows[key][name] = result
        rows[key]["tanglenas_details"] = {
            "architecture_weights": run["architecture_weights"],
            "expected_macs_ratio_log": run["expected_macs_ratio_log"],
            "perturbation_history": run["perturbation_history"],
        }
        del run
        logger.info("budget %s: %s", key, {k: v.get("dev_accuracy") for k, v in rows[key].items()})

    result = {
        "model": checkpoint_name(base),
        **environment(),
        "search_space": space.to_dict(),
        "budgets": budgets,
        "train_samples": len(train),
        "search_samples": len(search),
        "dev_samples": len(dev),
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "search_steps": args.search_steps,
        "baseline_sandwich_passes": baseline_passes,
        "baseline_supernet_seconds": baseline_train_seconds,
        "num_evaluations": args.num_evaluations,
        "finetune_steps": args.finetune_steps,
        "settings": {k: v for k, v in args.__dict__.items() if k not in ("output_dir", "work_dir", "data_dir")},
        "results": rows,
        "wall_seconds": time.perf_counter() - started,
    }
    write_results(args.output_dir, "gradient_search", result, render_markdown(result))


def render_markdown(r: dict) -> str:
    lines = [
        "# Gradient-based search benchmark (SST-2)",
        "",
        f"Generated by `scripts/bench_gradient_search.py` from {r['model']} (importance-reordered, default search "
        f"space: depth {r['search_space']['num_hidden_layers']}, heads {r['search_space']['num_attention_heads']}, "
        f"FFN {r['search_space']['intermediate_size']}, hidden {r['search_space']['hidden_size']}); "
        f"{r['train_samples']} training rows, a search split of {r['search_samples']} held-out training rows, "
        f"accuracy on the first {r['dev_samples']} dev rows; batch {r['batch_size']} x {r['sequence_length']} "
        f"tokens, {r['device']}, {r['num_threads']} threads; torch {r['torch']}, transformers {r['transformers']}, "
        f"hf-nas {r['hf_nas']}. Wall time {r['wall_seconds'] / 60:.0f} min.",
        "",
        "Matched compute = the same number of forward/backward passes of a training batch through the supernet: "
        f"TangleNAS runs {r['search_steps']} steps of one weight pass and one architecture pass "
        f"({2 * r['search_steps']} passes) per budget; the baselines share one supernet trained with the sandwich "
        f"rule (largest, smallest, one random subnet) for {r['baseline_sandwich_passes']} passes, then measure "
        f"{r['num_evaluations']} subnets (forward only, on the search split) per budget. Forward-only work (the "
        "perturbation selection's removals, the baselines' evaluations) is not matched; the wall times show it. "
        "MAC ratios are to the full model at the benchmark sequence length.",
        "",
        "| budget | method | MAC ratio | dev accuracy (as selected) | dev accuracy after "
        f"{r['finetune_steps']} fine-tuning steps | training passes | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget, methods in r["results"].items():
        for name, v in methods.items():
            if name.endswith("_details"):
                continue
            tuned = v["dev_accuracy_finetuned"]
            lines.append(
                f"| {100 * float(budget):.0f}% | {name} | {v['macs_ratio']:.3f} | {100 * v['dev_accuracy']:.2f}% | "
                f"{'-' if tuned is None else f'{100 * tuned:.2f}%'} | {v['training_passes']} | "
                f"{v['wall_seconds'] / 60:.1f} min |"
            )
    lines += [
        "",
        "Wall time: TangleNAS argmax = its search training; perturbation = search training + selection; random and "
        f"NSGA-II = the shared sandwich supernet ({r['baseline_supernet_seconds'] / 60:.1f} min, counted in full for "
        "each) + their evaluations.",
        "",
        "Selected subnets:",
        "",
    ]
    for budget, methods in r["results"].items():
        for name, v in methods.items():
            if name.endswith("_details"):
                continue
            s = v["subnet"]
            lines.append(
                f"- {100 * float(budget):.0f}% {name}: L={s['num_hidden_layers']} H={s['num_attention_heads']} "
                f"F={s['intermediate_size']} D={s['hidden_size']}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
