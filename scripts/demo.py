"""The whole hf-nas pipeline on the shipped SST-2 sample, offline, in minutes on 2 CPU cores:

1. load all-MiniLM-L6-v2 as an elastic supernet (a depth-k subnet keeps k spread layers, always the last) and reorder
   its heads and neurons by importance;
2. fine-tune the supernet with the default recipe (one pass: sandwich rule, the largest subnet teaching the others
   its logits and the hidden states of every kept layer, its gradient protected, half the random subnets uniform) so
   that every subnet is usable;
3. search: NSGA-II screened by predictors, objectives accuracy, MACs and latency of the extracted subnet;
4. extract the most accurate subnet under half the MACs, with its tokenizer and model card;
5. reload it in a fresh process where `import hf_nas` fails, with plain transformers, and check its accuracy.

    python scripts/demo.py [--output_dir demo_output] [--max_steps 60] [--num_evaluations 30]
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field

import datasets
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed

from hf_nas import ElasticBertForSequenceClassification, reorder_by_importance
from hf_nas.hub import export_subnet
from hf_nas.metrics import build_compute_metrics
from hf_nas.search import Constraint, SubnetSearch, get_objective
from hf_nas.search.objectives import TaskMetricObjective
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.training.recipes import RECIPE_DEFAULTS
from hf_nas.utils import checkpoint_name, default_text_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("hf_nas.demo")


@dataclass
class DemoArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Vanilla BERT checkpoint (default MiniLM)."}
    )
    train_file: str = field(default=os.path.join(ROOT, "data", "sst2_sample.tsv"))
    validation_file: str = field(default=os.path.join(ROOT, "data", "sst2_sample_dev.tsv"))
    output_dir: str = field(default="demo_output")
    max_length: int = 64
    batch_size: int = 16
    max_steps: int = field(default=60, metadata={"help": "Supernet fine-tuning steps."})
    fixed_hidden_size: bool = field(default=True, metadata={"help": "Keep the hidden size out of the search space."})
    importance_batches: int = 4
    num_evaluations: int = field(default=30, metadata={"help": "Subnets measured by the search."})
    mac_budget: float = field(default=0.5, metadata={"help": "Extract the best subnet under this fraction of MACs."})
    latency_min_run_time: float = field(default=0.2, metadata={"help": "Seconds of timing per subnet."})
    seed: int = 0


def read_tsv(path: str, tokenizer, max_length: int) -> datasets.Dataset:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    encoded = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=max_length)
    return datasets.Dataset.from_dict({**encoded, "labels": [int(r["label"]) for r in rows]})


RELOAD_SCRIPT = r"""
import sys, json, torch
sys.modules["hf_nas"] = None  # prove the folder loads without hf-nas
from transformers import AutoModelForSequenceClassification
folder, batches_path = sys.argv[1], sys.argv[2]
trust = "auto_map" in json.load(open(folder + "/config.json"))
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=trust).eval()
correct = total = 0
with torch.inference_mode():
    for inputs, labels in torch.load(batches_path):
        correct += (model(**inputs).logits.argmax(-1) == labels).sum().item()
        total += labels.numel()
print(type(model).__name__, correct / total)
"""


def main() -> None:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    path = args.model_name_or_path or default_text_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train = read_tsv(args.train_file, tokenizer, args.max_length)
    dev = read_tsv(args.validation_file, tokenizer, args.max_length)
    collator = DataCollatorWithPadding(tokenizer)

    # 1. the supernet, rewired so that slicing keeps the most important heads and neurons
    model = ElasticBertForSequenceClassification.from_pretrained(path, num_labels=2)
    loader = DataLoader(train, batch_size=args.batch_size, collate_fn=collator)
    reorder_by_importance(model, loader, num_batches=args.importance_batches)
    if args.fixed_hidden_size:  # elastic depth, heads and FFN; the residual width stays whole
        model.search_space = model.search_space.narrow(hidden_size=[model.config.hidden_size])
    logger.info("supernet %s, search space %s", checkpoint_name(path), model.search_space)

    # 2. supernet fine-tuning with the benchmarked levers (train_supernet.py's defaults)
    training_args = SupernetTrainingArguments(
        os.path.join(args.output_dir, "supernet"),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-4,
        warmup_steps=max(1, args.max_steps // 10),
        logging_steps=max(1, args.max_steps // 4),
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        use_cpu=True,
        **RECIPE_DEFAULTS,
    )
    trainer = SupernetTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=dev,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    trainer.train()
    trainer.save_model()
    evaluation = trainer.evaluate()
    model.eval()

    # 3. search
    accuracy = TaskMetricObjective(dev, batch_size=64, tokenizer=tokenizer)
    macs = get_objective("macs", sequence_length=args.max_length)
    latency = get_objective(
        "latency", batch_size=8, sequence_length=args.max_length, min_run_time=args.latency_min_run_time
    )
    search = SubnetSearch(
        model,
        [accuracy, macs, latency],
        "nsga2",
        num_evaluations=args.num_evaluations,
        initial_evaluations=args.num_evaluations // 2,
        candidates_per_round=300,
        evaluations_per_round=max(1, args.num_evaluations // 6),
        output_dir=os.path.join(args.output_dir, "search"),
        seed=args.seed,
    )
    results = search.run()

    # 4. the most accurate subnet under the MAC budget, extracted with its tokenizer and model card
    full_macs = results.full_model["macs"]  # the whole supernet's, counted by the search
    budget = Constraint("macs", max_value=args.mac_budget * full_macs)
    chosen = results.best("accuracy", [budget])
    if chosen is None:
        raise SystemExit(f"No measured subnet under {args.mac_budget:.0%} of the MACs; raise --num_evaluations.")
    record = results.records[chosen]
    folder = os.path.join(args.output_dir, "subnet")
    front = results.pareto_indices()
    place = f"pareto_index {front.index(chosen)}" if chosen in front else "not on the Pareto front"
    export_subnet(
        model,
        results.subnet(chosen),
        folder,
        processor=tokenizer,
        base_model=path,
        metrics={"accuracy": record["values"]["accuracy"]},
        pareto=results.pareto_position(chosen),
        training_recipe=(
            f"One pass (InstaTune): {args.max_steps} sandwich steps on {len(train)} SST-2 sentences, the largest "
            "subnet teaching the others in place (logits and hidden states)."
        ),
    )

    # 5. reload without hf-nas and check the recorded accuracy
    batches_path = os.path.join(args.output_dir, "dev_batches.pt")
    torch.save(accuracy.batches, batches_path)
    out = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, folder, batches_path], check=True, capture_output=True, text=True
    ).stdout.split()
    os.remove(batches_path)
    reloaded_class, reloaded_accuracy = out[-2], float(out[-1])

    hv, _ = results.normalized_hypervolume()
    print(
        f"\nSupernet after {args.max_steps} steps: dev accuracy largest {evaluation['eval_largest_accuracy']:.3f}, "
        f"middle {evaluation['eval_middle_accuracy']:.3f}, smallest {evaluation['eval_smallest_accuracy']:.3f}"
    )
    print(f"\nLatency of the extracted subnet, batch 8 x {args.max_length} tokens, cpu.")
    print(results.format_front())
    print(
        f"\nChosen (best accuracy under {args.mac_budget:.0%} MACs): record {chosen} ({place}), accuracy "
        f"{record['values']['accuracy']:.3f}, {100 * record['values']['macs'] / full_macs:.1f}% MACs -> "
        f"{os.path.abspath(folder)}"
    )
    print(
        f"Reloaded with plain transformers as {reloaded_class}: accuracy {reloaded_accuracy:.3f} "
        f"({'equal to' if abs(reloaded_accuracy - record['values']['accuracy']) < 1e-9 else 'DIFFERENT from'} "
        "the search's measurement)"
    )
    print(f"Plot: {os.path.abspath(os.path.join(args.output_dir, 'search', 'pareto.png'))}")
    summary = {
        "chosen_record": chosen,
        "chosen_pareto_index": front.index(chosen) if chosen in front else None,
        "hypervolume_normalized": hv,
        "recorded_accuracy": record["values"]["accuracy"],
        "reloaded_accuracy": reloaded_accuracy,
        "reloaded_class": reloaded_class,
    }
    with open(os.path.join(args.output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
