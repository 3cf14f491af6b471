"""Supernet fine-tuning benchmark on SST-2, written to docs/benchmarks/supernet.{json,md}.

One run, starting from all-MiniLM-L6-v2, the same optimizer-step budget for every row:
- plain fine-tuning of the full model (the accuracy reference);
- the supernet (importance reordering, then SupernetTrainer with the sandwich rule and in-place distillation), then
  the dev accuracy of subnets at about 75/50/35/25% of the MACs without retraining;
- baselines at the same MAC points, each fine-tuned separately: the first k layers (DistilBERT-style truncation) and
  a uniformly narrowed model (DynaBERT-style: importance-reordered, same heads and FFN width in every layer);
- a sandwich step's time / the sum of its subnets' forward+backward, and peak memory / plain fine-tuning, each in a
  fresh subprocess (peak resident memory of the process, Linux VmHWM).

    python scripts/bench_supernet.py [--max_steps 300] [--train_samples 9600]
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import datasets
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

import hf_nas
from hf_nas import (
    ElasticBertForSequenceClassification,
    SearchSpace,
    SubnetConfig,
    count_macs,
    reorder_by_importance,
)
from hf_nas.metrics import build_compute_metrics
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import atomic_write_text, checkpoint_name, default_text_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("hf_nas.bench_supernet")
MAC_POINTS = (0.75, 0.5, 0.35, 0.25)
TARGETS = {"gap_at_50": 0.5, "gap_at_25": 2.0, "step_time_ratio": 1.10, "peak_memory_ratio": 1.3}


@dataclass
class BenchArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Default: all-MiniLM-L6-v2."})
    data_dir: str = field(default=os.path.join(ROOT, "..", "shared", "data", "sst2"))
    train_samples: int = field(default=9600, metadata={"help": "Seeded subset of the 67,349 training rows."})
    dev_samples: int | None = field(default=None, metadata={"help": "Default: the full dev set (smoke runs only)."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps of every training run."})
    batch_size: int = 32
    max_seq_length: int = 64
    learning_rate: float = 5e-5
    seed: int = 42
    importance_batches: int = 8
    timing_rounds: int = 5
    output_dir: str = os.path.join(ROOT, "docs", "benchmarks")
    work_dir: str = field(default="/tmp/hf_nas_bench_supernet", metadata={"help": "Scratch space of the runs."})
    save_supernet: str | None = field(default=None, metadata={"help": "Also save the trained supernet here."})
    measure: str | None = field(default=None, metadata={"help": "Internal: run one measurement subprocess."})


def width_subnet(config, p: float) -> SubnetConfig:
    heads = max(1, round(config.num_attention_heads * p))
    ffn = max(128, round(config.intermediate_size * p / 128) * 128)
    return SubnetConfig.uniform(config.num_hidden_layers, heads, ffn, config.hidden_size)


def depth_subnet(config, p: float) -> SubnetConfig:
    depth = max(1, int(config.num_hidden_layers * p))  # floor: never above the MAC point
    return SubnetConfig.uniform(depth, config.num_attention_heads, config.intermediate_size, config.hidden_size)


def load_sst2(args: BenchArguments, tokenizer) -> tuple[datasets.Dataset, datasets.Dataset]:
    def read(name):
        with open(os.path.join(args.data_dir, name), newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        return datasets.Dataset.from_dict(
            {"sentence": [r["sentence"] for r in rows], "label": [int(r["label"]) for r in rows]}
        )

    train = read("train.tsv").shuffle(seed=args.seed).select(range(args.train_samples))
    dev = read("dev.tsv")
    if args.dev_samples is not None:
        dev = dev.select(range(args.dev_samples))

    def tokenize(batch):
        enc = tokenizer(batch["sentence"], truncation=True, max_length=args.max_seq_length)
        enc["labels"] = batch["label"]
        return enc

    return (
        train.map(tokenize, batched=True, remove_columns=["sentence", "label"]),
        dev.map(tokenize, batched=True, remove_columns=["sentence", "label"]),
    )


def common_args(args: BenchArguments, name: str, cls=TrainingArguments, **kwargs):
    return cls(
        output_dir=os.path.join(args.work_dir, name),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        warmup_steps=max(1, args.max_steps // 10),
        lr_scheduler_type="linear",
        seed=args.seed,
        data_seed=args.seed,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(1, args.max_steps // 10),
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        **kwargs,
    )


def dev_accuracy(trainer: Trainer, dev) -> float:
    return float(trainer.evaluate(dev)["eval_accuracy"])


def finetune(args, name, model, tokenizer, train, dev) -> tuple[float, float]:
    start = time.perf_counter()
    set_seed(args.seed)
    trainer = Trainer(
        model=model,
        args=common_args(args, name),
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    trainer.train()
    accuracy = dev_accuracy(trainer, dev)
    logger.info("%s: accuracy %.4f (%.0f s)", name, accuracy, time.perf_counter() - start)
    return accuracy, time.perf_counter() - start


def build_supernet(args, path, tokenizer, train):
    """The MiniLM supernet with the bench space, importance-reordered on a few training batches."""
    torch.manual_seed(args.seed)
    model = ElasticBertForSequenceClassification.from_pretrained(path, num_labels=2)
    c = model.config
    points = [width_subnet(c, p) for p in MAC_POINTS]
    # Elastic depth, heads and FFN width (hidden size fixed), with the choices the MAC points need.
    model.search_space = SearchSpace(
        num_hidden_layers=tuple(range(1, c.num_hidden_layers + 1)),
        num_attention_heads=tuple(sorted({s.num_attention_heads[0] for s in points} | {c.num_attention_heads})),
        intermediate_size=tuple(sorted({s.intermediate_size[0] for s in points} | {c.intermediate_size})),
        hidden_size=(c.hidden_size,),
        attention_head_size=c.attention_head_size,
    )
    loader = DataLoader(
        train, batch_size=args.batch_size, shuffle=False, collate_fn=DataCollatorWithPadding(tokenizer)
    )
    reorder_by_importance(model, loader, num_batches=args.importance_batches, show_progress=False)
    return model


# ------------------------------------------------------------------------------------------------------------------
# measurements in fresh subprocesses
def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status (Linux only).")


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set size (VmHWM) of this process


def measure(args: BenchArguments, path: str) -> dict:
    """Run inside a subprocess: `plain` or `sandwich` memory, or `timing`."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    train, _ = load_sst2(args, tokenizer)
    batch = DataCollatorWithPadding(tokenizer)([train[i] for i in range(args.batch_size)])
    if args.measure == "plain":
        model = BertForSequenceClassification.from_pretrained(path, num_labels=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
        reset_peak_rss()
        base = peak_rss_bytes()
        for _ in range(3):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return {"peak_rss": peak_rss_bytes(), "rss_before": base}
    model = build_supernet(args, path, tokenizer, train)
    sargs = common_args(args, "measure", SupernetTrainingArguments, sampler="sandwich", num_random_subnets=2)
    trainer = SupernetTrainer(
        model=model, args=sargs, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer)
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    trainer.current_gradient_accumulation_steps = 1
    inputs = trainer._prepare_inputs(batch)
    if args.measure == "sandwich":
        reset_peak_rss()
        base = peak_rss_bytes()
        for _ in range(3):
            trainer.training_step(trainer.model, inputs)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
        return {"peak_rss": peak_rss_bytes(), "rss_before": base}
    # timing: one sandwich training step vs the sum of its subnets' plain forward+backward, alternating
    subnets = trainer.sampler.sample(0)

    def sandwich():
        trainer._micro_step = (-1, 0)
        trainer.training_step(trainer.model, inputs)
        model.zero_grad()

    def separate():
        for subnet in subnets:
            with model.subnet(subnet):
                model(**inputs).loss.backward()
        model.zero_grad()

    model.train()
    sandwich(), separate()
    t_sandwich, t_separate = [], []
    for i in range(args.timing_rounds):
        for fn, times in ((sandwich, t_sandwich), (separate, t_separate))[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return {
        "subnets": [s.to_dict() for s in subnets],
        "sandwich_step_s": statistics.median(t_sandwich),
        "sum_of_subnets_s": statistics.median(t_separate),
    }


def run_measurement(kind: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--measure", kind],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------------------
def main() -> None:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    path = args.model_name_or_path or default_text_checkpoint()
    if args.measure is not None:
        transformers.utils.logging.set_verbosity_error()
        print(json.dumps(measure(args, path)))
        return
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_error()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train, dev = load_sst2(args, tokenizer)

    logger.info("measuring step time and peak memory in subprocesses")
    timing = run_measurement("timing")
    memory = {kind: run_measurement(kind) for kind in ("plain", "sandwich")}

    # 1. plain fine-tuning of the full model
    torch.manual_seed(args.seed)
    plain_acc, plain_time = finetune(
        args, "plain", BertForSequenceClassification.from_pretrained(path, num_labels=2), tokenizer, train, dev
    )

    # 2. the supernet, trained once; subnets evaluated without retraining
    supernet = build_supernet(args, path, tokenizer, train)
    initial = copy.deepcopy(supernet)  # importance-reordered, untrained: the DynaBERT-style baselines start here
    c = supernet.config
    full_macs = count_macs(supernet, supernet.max_subnet(), sequence_length=args.max_seq_length)
    set_seed(args.seed)
    start = time.perf_counter()
    sargs = common_args(
        args,
        "supernet",
        SupernetTrainingArguments,
        sampler="sandwich",
        num_random_subnets=2,
        distillation="inplace",
        kd_loss_weight=1.0,
        task_loss_weight=1.0,
        eval_subnets="",
    )
    trainer = SupernetTrainer(
        model=supernet,
        args=sargs,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    trainer.train()
    supernet_time = time.perf_counter() - start
    if args.save_supernet is not None:
        trainer.save_model(args.save_supernet)
        tokenizer.save_pretrained(args.save_supernet)
    supernet.eval()

    def supernet_accuracy(subnet: SubnetConfig) -> float:
        with supernet.subnet(subnet):
            return dev_accuracy(trainer, dev)

    rows = [
        {"point": 1.0, "mac_ratio": 1.0, "plain": plain_acc, "supernet_full": supernet_accuracy(supernet.max_subnet())}
    ]
    # 3. baselines at each MAC point, and the supernet's subnets of the same architectures
    for p in MAC_POINTS:
        w, d = width_subnet(c, p), depth_subnet(c, p)
        row = {"point": p}
        for kind, subnet in (("width", w), ("depth", d)):
            row[f"{kind}_subnet"] = subnet.to_dict()
            row[f"{kind}_mac_ratio"] = count_macs(supernet, subnet, sequence_length=args.max_seq_length) / full_macs
            row[f"supernet_{kind}"] = supernet_accuracy(subnet)
        torch.manual_seed(args.seed)
        truncated = BertForSequenceClassification.from_pretrained(
            path, num_labels=2, num_hidden_layers=d.num_hidden_layers
        )
        row["baseline_truncation"], _ = finetune(
            args, f"truncation-{d.num_hidden_layers}", truncated, tokenizer, train, dev
        )
        narrowed = initial.extract_subnet(w)
        row["baseline_narrowed"], _ = finetune(args, f"narrowed-{p}", narrowed, tokenizer, train, dev)
        row["supernet_best"] = max(row["supernet_width"], row["supernet_depth"])
        row["gap_to_full"] = 100 * (plain_acc - row["supernet_best"])
        row["above_both_baselines"] = row["supernet_best"] > max(row["baseline_truncation"], row["baseline_narrowed"])
        rows.append(row)
        logger.info("point %.2f: %s", p, {k: v for k, v in row.items() if not k.endswith("subnet")})

    by_point = {r["point"]: r for r in rows}
    result = {
        "model": checkpoint_name(path),
        "device": "cpu",
        "num_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hf_nas": hf_nas.__version__,
        "train_samples": args.train_samples,
        "dev_samples": len(dev),
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "search_space": supernet.search_space.to_dict(),
        "targets": TARGETS,
        "plain_accuracy": plain_acc,
        "plain_train_seconds": plain_time,
        "supernet_train_seconds": supernet_time,
        "rows": rows,
        "gap_at_50": by_point[0.5]["gap_to_full"],
        "gap_at_25": by_point[0.25]["gap_to_full"],
        "above_both_baselines_everywhere": all(r["above_both_baselines"] for r in rows[1:]),
        "timing": timing,
        "step_time_ratio": timing["sandwich_step_s"] / timing["sum_of_subnets_s"],
        "memory": memory,
        "peak_memory_ratio": memory["sandwich"]["peak_rss"] / memory["plain"]["peak_rss"],
        "wall_seconds": time.perf_counter() - started,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    atomic_write_text(os.path.join(args.output_dir, "supernet.json"), json.dumps(result, indent=2) + "\n")
    atomic_write_text(os.path.join(args.output_dir, "supernet.md"), render_markdown(result))
    print(render_markdown(result))


def met(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def render_markdown(r: dict) -> str:
    t = r["targets"]
    lines = [
        "# Supernet fine-tuning benchmark (SST-2)",
        "",
        f"Generated by `scripts/bench_supernet.py`: {r['model']}, {r['train_samples']} seeded SST-2 training rows, "
        f"the SST-2 dev set ({r['dev_samples']} rows), {r['max_steps']} optimizer steps of batch {r['batch_size']} for "
        f"every run (max {r['max_seq_length']} tokens, lr {r['learning_rate']}, seed {r['seed']}), {r['device']} "
        f"({r['num_threads']} threads); torch {r['torch']}, transformers {r['transformers']}, hf-nas {r['hf_nas']}. "
        f"Wall time {r['wall_seconds'] / 60:.0f} min.",
        "",
        "Supernet: importance reordering, then the sandwich rule (largest, smallest, 2 random) with in-place "
        "distillation (task loss + soft cross-entropy to the largest subnet's logits); search space: depth "
        f"{r['search_space']['num_hidden_layers']}, heads {r['search_space']['num_attention_heads']}, FFN "
        f"{r['search_space']['intermediate_size']}, hidden {r['search_space']['hidden_size']}.",
        "",
        "| target | measured | target | |",
        "|---|---|---|---|",
        f"| accuracy gap to full fine-tuning at 50% MACs (points) | {r['gap_at_50']:.2f} | <= {t['gap_at_50']} | "
        f"{met(r['gap_at_50'], t['gap_at_50'])} |",
        f"| accuracy gap at 25% MACs (points) | {r['gap_at_25']:.2f} | <= {t['gap_at_25']} | "
        f"{met(r['gap_at_25'], t['gap_at_25'])} |",
        f"| supernet above both baselines at every MAC point | {r['above_both_baselines_everywhere']} | True | "
        f"{'met' if r['above_both_baselines_everywhere'] else 'NOT met'} |",
        f"| sandwich step / sum of its subnets' forward+backward | {r['step_time_ratio']:.3f} | <= "
        f"{t['step_time_ratio']} | {met(r['step_time_ratio'], t['step_time_ratio'])} |",
        f"| peak memory (RSS) sandwich / plain fine-tuning | {r['peak_memory_ratio']:.3f} | <= "
        f"{t['peak_memory_ratio']} | {met(r['peak_memory_ratio'], t['peak_memory_ratio'])} |",
        "",
        f"Full model, plain fine-tuning: dev accuracy {100 * r['plain_accuracy']:.2f}% "
        f"({r['plain_train_seconds'] / 60:.1f} min); the supernet's full-size subnet: "
        f"{100 * r['rows'][0]['supernet_full']:.2f}% (supernet training {r['supernet_train_seconds'] / 60:.1f} min).",
        "",
        "| MAC point | supernet, narrowed subnet (MACs) | supernet, first-k subnet (MACs) | baseline narrowed "
        "(DynaBERT-style) | baseline first-k (truncation) | supernet best - plain |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"][1:]:
        lines.append(
            f"| {100 * row['point']:.0f}% | {100 * row['supernet_width']:.2f}% ({100 * row['width_mac_ratio']:.0f}%) | "
            f"{100 * row['supernet_depth']:.2f}% ({100 * row['depth_mac_ratio']:.0f}%, "
            f"k={row['depth_subnet']['num_hidden_layers']}) | {100 * row['baseline_narrowed']:.2f}% | "
            f"{100 * row['baseline_truncation']:.2f}% | {-row['gap_to_full']:+.2f} |"
        )
    lines += [
        "",
        "Each baseline has the same architecture as the supernet subnet in its column and was fine-tuned separately "
        "with the same budget. Step time and memory were measured in fresh subprocesses on one fixed training batch: "
        f"a sandwich step trains {len(r['timing']['subnets'])} subnets (medians of alternating rounds); peak RSS is "
        "over 3 steps including the optimizer step.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
