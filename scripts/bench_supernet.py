"""Supernet quality benchmark on SST-2, written to docs/benchmarks/supernet.{json,md} and supernet_pareto.png.

Protocol (see DESIGN.md): every subnet that represents a MAC point is *selected* on a validation split carved from
the SST-2 training rows (disjoint from the training subset); only the official dev set (872 rows) is *reported*. Every
gap comes with a paired 95% bootstrap interval over the dev examples. Rows:

- `teacher`: the full model fine-tuned alone (plain Trainer): the accuracy reference and the fixed teacher.
- `teacher_first`: the supernet initialised from the teacher, importance-reordered on it, trained with the sandwich
  rule and distillation from the fixed teacher (logits + hidden states of every kept layer); then its subnets at
  100/75/50/35/25% of the MACs without retraining.
- `one_pass`: InstaTune's one pass (in-place teacher) at about the same total compute (its steps: `max_steps` plus the
  teacher's steps divided by the subnets per step), evaluated the same way.
- `kd_<point>`: the architecture the teacher-first supernet selected at each point, trained alone for the same steps
  with the same teacher and losses, from the same initial weights (the reordered teacher).
- `truncation_*`: the teacher truncated to its first-k or spread layers, without retraining.
- a cloud of random subnets of the default space (dev accuracy vs MACs, `supernet_pareto.png`).
- `ablation_*`: shorter runs switching one lever or loss term at a time.
- step time and training memory of a sandwich step vs a plain step, in fresh subprocesses.

Every finished row is written at once to `<work_dir>/rows/<name>.json` and reused by a rerun, so a run that is
stopped part-way continues; `--rows` runs a subset (e.g. ablations in a second process).

    python scripts/bench_supernet.py                       # everything, then the report
    python scripts/bench_supernet.py --rows ablations      # only the ablations (a second process)
    python scripts/bench_supernet.py --rows report         # only assemble the report from finished rows
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
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
from hf_nas import ElasticBertForSequenceClassification, SearchSpace, SubnetConfig, count_macs, reorder_by_importance
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.training.recipes import finetune_subnet
from hf_nas.utils import atomic_write_text, checkpoint_name, default_text_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("hf_nas.bench_supernet")
MAC_POINTS = (1.0, 0.75, 0.5, 0.35, 0.25)
TARGETS = {"gap_at_50": 0.5, "gap_at_25": 2.0, "gap_full": 0.5}
MAJORITY = 444 / 872  # SST-2 dev: 444 positive

# The main recipe (teacher-first) and the levers the ablations switch one at a time.
RECIPE = {
    "sampler": "sandwich",
    "num_random_subnets": 2,
    "kd_loss_weight": 1.0,
    "task_loss_weight": 1.0,
    "hidden_loss_weight": 1.0,
    "protect_largest_gradient": True,
    "uniform_subnet_probability": 0.5,
}
ABLATIONS = {
    "recipe": {},
    "no_hidden_distillation": {"hidden_loss_weight": 0.0},
    "no_gradient_protection": {"protect_largest_gradient": False},
    "no_uniform_sampling": {"uniform_subnet_probability": 0.0},
    "kd_only_students": {"task_loss_weight": 0.0},
    "width_then_depth": {"sampler_stages": "width@0.5,depth"},
    "attention_distillation": {"attention_loss_weight": 1.0},
    "first_k_layers": {"layer_rule": "first"},
    "importance_layers": {"layer_rule": "importance"},
    "no_hidden_size_reduction": {"fixed_hidden_size": True},
}


@dataclass
class BenchArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Default: all-MiniLM-L6-v2."})
    data_dir: str = field(default=os.path.join(ROOT, "..", "shared", "data", "sst2"))
    train_samples: int = field(default=9600, metadata={"help": "Seeded subset of the 67,349 training rows."})
    validation_samples: int = field(
        default=1000, metadata={"help": "Training rows held out (disjoint from the subset) to select subnets on."}
    )
    dev_samples: int | None = field(default=None, metadata={"help": "Default: the full dev set (smoke runs only)."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps of the teacher, supernet and baselines."})
    ablation_steps: int = field(default=100, metadata={"help": "Optimizer steps of each ablation supernet."})
    finetune_steps: int = field(
        default=100, metadata={"help": "Steps of the short distillation of each selected subnet after the search."}
    )
    batch_size: int = 32
    max_seq_length: int = 64
    mac_sequence_length: int = field(default=128, metadata={"help": "Tokens per sequence of the MAC ratios."})
    learning_rate: float = 5e-5
    seed: int = 42
    importance_batches: int = 8
    cloud_size: int = field(default=50, metadata={"help": "Random subnets of the default space in the cloud."})
    bootstrap_samples: int = 2000
    timing_rounds: int = 5
    rows: str = field(
        default="all",
        metadata={
            "help": "Comma-separated groups to run: main, baselines, finetune, truncation, ablations, measure, report, "
            "all."
        },
    )
    output_dir: str = os.path.join(ROOT, "docs", "benchmarks")
    work_dir: str = field(default="/tmp/hf_nas_bench_supernet", metadata={"help": "Models and finished rows."})
    measure: str | None = field(default=None, metadata={"help": "Internal: run one measurement subprocess."})


# ------------------------------------------------------------------------------------------------------------------
# data
def load_splits(args: BenchArguments, tokenizer) -> dict[str, datasets.Dataset]:
    """Tokenized train subset, validation split (held-out training rows) and the official dev set."""

    def read(name: str) -> list[dict]:
        with open(os.path.join(args.data_dir, name), newline="") as f:
            return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))

    rows = read("train.tsv")
    order = list(range(len(rows)))
    random.Random(args.seed).shuffle(order)
    picked = {
        "train": [rows[i] for i in order[: args.train_samples]],
        "validation": [rows[i] for i in order[args.train_samples : args.train_samples + args.validation_samples]],
        "dev": read("dev.tsv")[: args.dev_samples],
    }

    def tokenize(batch):
        enc = tokenizer(batch["sentence"], truncation=True, max_length=args.max_seq_length)
        enc["labels"] = batch["label"]
        return enc

    out = {}
    for name, items in picked.items():
        ds = datasets.Dataset.from_dict(
            {"sentence": [r["sentence"] for r in items], "label": [int(r["label"]) for r in items]}
        )
        out[name] = ds.map(tokenize, batched=True, remove_columns=["sentence", "label"])
    return out


@torch.inference_mode()
def correct(model, dataset: datasets.Dataset, tokenizer, batch_size: int = 128) -> list[int]:
    """1/0 per example (in dataset order): whether the model's prediction is the label. Batches of similar length."""
    model.eval()
    collator = DataCollatorWithPadding(tokenizer)
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(dataset)), key=lambda i: lengths[i])
    out = [0] * len(dataset)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collator([dataset[i] for i in idx])
        labels = batch.pop("labels")
        predictions = model(**batch).logits.argmax(-1)
        for i, ok in zip(idx, (predictions == labels).tolist(), strict=True):
            out[i] = int(ok)
    return out


def paired_interval(a: list[int], b: list[int], samples: int, seed: int) -> dict[str, float]:
    """Mean of a - b (in points) and its paired 95% bootstrap interval over the examples."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    boot = diff[idx].mean(axis=1)
    return {
        "diff": 100 * float(diff.mean()),
        "low": 100 * float(np.percentile(boot, 2.5)),
        "high": 100 * float(np.percentile(boot, 97.5)),
    }


# ------------------------------------------------------------------------------------------------------------------
# rows: each is computed once and cached as JSON
class Rows:
    def __init__(self, work_dir: str):
        self.folder = os.path.join(work_dir, "rows")
        os.makedirs(self.folder, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, f"{name}.json")

    def get(self, name: str) -> dict | None:
        if not os.path.isfile(self.path(name)):
            return None
        with open(self.path(name)) as f:
            return json.load(f)

    def put(self, name: str, row: dict) -> dict:
        atomic_write_text(self.path(name), json.dumps(row) + "\n")
        logger.info("row %s written", name)
        return row

    def compute(self, name: str, fn) -> dict:
        row = self.get(name)
        if row is None:
            started = time.perf_counter()
            row = fn()
            row.setdefault("wall_seconds", time.perf_counter() - started)
            self.put(name, row)
        return row


def train_args(args: BenchArguments, name: str, steps: int, cls=TrainingArguments, **kwargs):
    return cls(
        output_dir=os.path.join(args.work_dir, "runs", name),
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=max(1, steps // 10),
        lr_scheduler_type="linear",
        seed=args.seed,
        data_seed=args.seed,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(1, steps // 10),
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        **kwargs,
    )


def equal_compute(model, args: BenchArguments) -> dict:
    """The one-pass steps whose training MACs match the teacher-first recipe's (teacher fine-tuning + supernet).

    Training compute is counted analytically: a forward+backward costs 3 forwards, a forward the subnet's MACs at
    `max_seq_length` tokens; the teacher-first supernet adds the teacher's forward once per step. The subnets of
    every step come from the same seeded sampler the trainer builds, so the count is exact and reproducible."""
    space = model.search_space
    n = args.max_seq_length
    cache: dict[SubnetConfig, int] = {}

    def macs(subnet: SubnetConfig) -> int:
        if subnet not in cache:
            cache[subnet] = count_macs(model, subnet, sequence_length=n)
        return cache[subnet]

    sampler = hf_nas.training.get_sampler(
        RECIPE["sampler"],
        space,
        seed=args.seed,
        num_random_subnets=RECIPE["num_random_subnets"],
        uniform_probability=RECIPE["uniform_subnet_probability"],
    )
    full = macs(space.largest())
    teacher = args.max_steps * 3 * full
    supernet = sum(full + sum(3 * macs(s) for s in sampler.sample(step)) for step in range(args.max_steps))
    budget, spent, steps = teacher + supernet, 0, 0
    while spent < budget:
        spent += sum(3 * macs(s) for s in sampler.sample(steps))
        steps += 1
    batch = args.batch_size  # every sequence slot of a batch costs the same at fixed length
    return {
        "one_pass_steps": steps,
        "teacher_first_macs": batch * budget,
        "one_pass_macs": batch * spent,
        "sequence_length": n,
    }


class Bench:
    def __init__(self, args: BenchArguments):
        self.args = args
        self.path = args.model_name_or_path or default_text_checkpoint()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.splits = load_splits(args, self.tokenizer)
        self.rows = Rows(args.work_dir)
        self.models = os.path.join(args.work_dir, "models")
        self.collator = DataCollatorWithPadding(self.tokenizer)

    # -- models ---------------------------------------------------------------------------------------------------
    def teacher_dir(self) -> str:
        return os.path.join(self.models, "teacher")

    def teacher(self) -> dict:
        def run():
            set_seed(self.args.seed)
            model = BertForSequenceClassification.from_pretrained(self.path, num_labels=2)
            start = time.perf_counter()
            Trainer(
                model=model,
                args=train_args(self.args, "teacher", self.args.max_steps),
                train_dataset=self.splits["train"],
                data_collator=self.collator,
            ).train()
            seconds = time.perf_counter() - start
            model.save_pretrained(self.teacher_dir())
            return {"train_seconds": seconds, **self.scores(model)}

        row = self.rows.compute("teacher", run)
        if not os.path.isdir(self.teacher_dir()):
            raise RuntimeError(f"The teacher row exists but {self.teacher_dir()} is gone: delete the row to retrain.")
        return row

    def load_teacher(self) -> BertForSequenceClassification:
        return BertForSequenceClassification.from_pretrained(self.teacher_dir()).eval()

    def space(self, model, layer_rule: str = "spread", fixed_hidden: bool = False) -> SearchSpace:
        space = SearchSpace.from_model_config(model.config)
        if fixed_hidden:
            space = space.narrow(hidden_size=[model.config.hidden_size])
        return dataclasses.replace(space, layer_rule=layer_rule)

    def initial_supernet(self, source: str, layer_rule: str = "spread", fixed_hidden: bool = False):
        """The supernet of `source` (the teacher or the pretrained checkpoint), importance-reordered on a few batches,
        with the default space and `layer_rule`."""
        torch.manual_seed(self.args.seed)
        model = ElasticBertForSequenceClassification.from_pretrained(source, num_labels=2)
        model.search_space = self.space(model, "first" if layer_rule == "importance" else layer_rule, fixed_hidden)
        loader = DataLoader(
            self.splits["train"], batch_size=self.args.batch_size, shuffle=False, collate_fn=self.collator
        )
        reorder_by_importance(model, loader, num_batches=self.args.importance_batches, show_progress=False)
        if layer_rule == "importance":
            order, _ = hf_nas.rank_layers(model, loader, num_batches=self.args.importance_batches, show_progress=False)
            model.search_space = dataclasses.replace(model.search_space, layer_rule="importance", layer_order=order)
        return model

    def train_supernet(self, name: str, steps: int, one_pass: bool = False, **levers) -> tuple[object, float]:
        """Train (or load) the supernet `name`; returns it and its training seconds."""
        folder = os.path.join(self.models, name)
        done = self.rows.get(f"{name}_trained")
        if done is not None and os.path.isdir(folder):
            return ElasticBertForSequenceClassification.from_pretrained(folder).eval(), done["train_seconds"]
        recipe = {**RECIPE, **levers}
        layer_rule = recipe.pop("layer_rule", "spread")
        fixed_hidden = recipe.pop("fixed_hidden_size", False)
        source = self.path if one_pass else self.teacher_dir()
        model = self.initial_supernet(source, layer_rule, fixed_hidden)
        teacher = None
        if one_pass:
            recipe["distillation"] = "inplace"
        else:
            teacher = self.load_teacher()
            recipe["distillation"] = "teacher"
        set_seed(self.args.seed)
        start = time.perf_counter()
        trainer = SupernetTrainer(
            model=model,
            teacher_model=teacher,
            args=train_args(self.args, name, steps, SupernetTrainingArguments, eval_subnets="", **recipe),
            train_dataset=self.splits["train"],
            data_collator=self.collator,
        )
        trainer.train()
        seconds = time.perf_counter() - start
        model.save_pretrained(folder)
        self.rows.put(f"{name}_trained", {"train_seconds": seconds, "recipe": {**recipe, "layer_rule": layer_rule}})
        return model.eval(), seconds

    def scores(self, model) -> dict:
        return {
            "validation": correct(model, self.splits["validation"], self.tokenizer),
            "dev": correct(model, self.splits["dev"], self.tokenizer),
        }

    # -- subnets ----------------------------------------------------------------------------------------------------
    def mac_ratio(self, model, subnet: SubnetConfig) -> float:
        n = self.args.mac_sequence_length
        return count_macs(model, subnet, sequence_length=n) / count_macs(model, model.max_subnet(), sequence_length=n)

    def candidates(self, model, points, per_point: int = 6, cloud: int = 0) -> dict[str, SubnetConfig]:
        """Uniform subnets just below each MAC point (the largest of each depth and hidden size), plus a cloud of
        random subnets (seeded)."""
        space = model.search_space
        out: dict[str, SubnetConfig] = {}
        uniform = [
            space.subnet(d, h, f, w)
            for d in space.num_hidden_layers
            for h in space.num_attention_heads
            for f in space.intermediate_size
            for w in space.hidden_size
            if h * space.attention_head_size <= w
        ]
        ratios = {s: self.mac_ratio(model, s) for s in uniform}
        for p in points:
            best_per_shape: dict[tuple, SubnetConfig] = {}
            for s in uniform:
                if ratios[s] <= p + 1e-9:
                    key = (s.num_hidden_layers, s.hidden_size)
                    if key not in best_per_shape or ratios[s] > ratios[best_per_shape[key]]:
                        best_per_shape[key] = s
            picked = sorted(best_per_shape.values(), key=lambda s: -ratios[s])[:per_point]
            for s in picked:
                out[json.dumps(s.to_dict())] = s
        for i in range(cloud):
            s = space.sample(seed=10_000 + i)
            out[json.dumps(s.to_dict())] = s
        return out

    def evaluate_subnets(self, name: str, model, points, per_point: int = 6, cloud: int = 0) -> dict:
        """Validation and dev correctness of each candidate subnet, cached per supernet."""

        def run():
            results = {}
            for key, subnet in self.candidates(model, points, per_point, cloud).items():
                with model.subnet(subnet):
                    results[key] = {"mac_ratio": self.mac_ratio(model, subnet), **self.scores(model)}
            return {"subnets": results}

        return self.rows.compute(f"{name}_subnets", run)["subnets"]

    @staticmethod
    def select(evaluated: dict, point: float) -> tuple[str, dict]:
        """The subnet of best validation accuracy with MACs in (0.8 * point, point] (ties to more MACs); at 100% the
        full model."""
        low = 0.999 if point >= 1.0 else 0.8 * point
        feasible = {k: v for k, v in evaluated.items() if low < v["mac_ratio"] <= point + 1e-9}
        if not feasible:
            raise RuntimeError(f"No evaluated subnet with MACs in ({low:.0%}, {point:.0%}].")
        key = max(feasible, key=lambda k: (sum(feasible[k]["validation"]), feasible[k]["mac_ratio"]))
        return key, feasible[key]

    # -- groups -----------------------------------------------------------------------------------------------------
    def main_rows(self) -> None:
        self.teacher()
        steps = self.args.max_steps
        model, _ = self.train_supernet("teacher_first", steps)
        self.evaluate_subnets("teacher_first", model, MAC_POINTS, cloud=self.args.cloud_size)
        compute = self.rows.compute("equal_compute", lambda: equal_compute(model, self.args))
        del model
        model, _ = self.train_supernet("one_pass", compute["one_pass_steps"], one_pass=True)
        self.evaluate_subnets("one_pass", model, MAC_POINTS)

    def baseline_rows(self) -> None:
        """Each architecture the teacher-first supernet selected, trained alone with the same teacher and losses."""
        evaluated = self.rows.get("teacher_first_subnets")
        if evaluated is None:
            raise RuntimeError("Run the main rows first: the baselines train the architectures they selected.")
        for point in MAC_POINTS[1:]:
            key, _ = self.select(evaluated["subnets"], point)
            subnet = SubnetConfig.from_dict(json.loads(key))

            def run(subnet=subnet, point=point):
                model = self.initial_supernet(self.teacher_dir())
                recipe = {**RECIPE, "sampler": "fixed"}
                recipe.pop("num_random_subnets")
                recipe.pop("uniform_subnet_probability")
                recipe["protect_largest_gradient"] = False  # one subnet: nothing to protect it from
                set_seed(self.args.seed)
                start = time.perf_counter()
                trainer = SupernetTrainer(
                    model=model,
                    teacher_model=self.load_teacher(),
                    sampler=hf_nas.training.get_sampler("fixed", model.search_space, subnets=[subnet]),
                    args=train_args(
                        self.args,
                        f"kd_{point}",
                        self.args.max_steps,
                        SupernetTrainingArguments,
                        eval_subnets="",
                        distillation="teacher",
                        **recipe,
                    ),
                    train_dataset=self.splits["train"],
                    data_collator=self.collator,
                )
                trainer.train()
                seconds = time.perf_counter() - start
                with model.subnet(subnet):
                    return {"subnet": subnet.to_dict(), "train_seconds": seconds, **self.scores(model)}

            self.rows.compute(f"kd_{point}", run)

    def finetune_rows(self) -> None:
        """The selected subnets after a short distillation alone (extract_subnet.py --finetune_steps), apart."""
        evaluated = self.rows.get("teacher_first_subnets")
        if evaluated is None:
            raise RuntimeError("Run the main rows first: the fine-tune starts from the subnets they selected.")
        for point in MAC_POINTS[1:]:
            key, _ = self.select(evaluated["subnets"], point)
            subnet = SubnetConfig.from_dict(json.loads(key))

            def run(subnet=subnet, point=point):
                model = ElasticBertForSequenceClassification.from_pretrained(
                    os.path.join(self.models, "teacher_first")
                )
                recipe = {k: v for k, v in RECIPE.items() if k in ("kd_loss_weight", "task_loss_weight")}
                targs = train_args(
                    self.args,
                    f"finetune_{point}",
                    self.args.finetune_steps,
                    SupernetTrainingArguments,
                    hidden_loss_weight=RECIPE["hidden_loss_weight"],
                    **recipe,
                )
                set_seed(self.args.seed)
                start = time.perf_counter()
                finetune_subnet(model, subnet, targs, self.splits["train"], self.load_teacher(), self.collator)
                seconds = time.perf_counter() - start
                with model.subnet(subnet):
                    return {"subnet": subnet.to_dict(), "train_seconds": seconds, **self.scores(model)}

            self.rows.compute(f"finetune_{point}", run)

    def truncation_rows(self) -> None:
        """The teacher cut to k layers (first k, or spread keeping the last), without retraining."""
        teacher = self.initial_supernet(self.teacher_dir())
        for rule in ("first", "spread"):
            for depth in (5, 4, 3, 2):

                def run(rule=rule, depth=depth):
                    c = teacher.config
                    teacher.search_space = dataclasses.replace(
                        teacher.search_space,
                        layer_rule=rule,
                        num_hidden_layers=tuple(range(1, c.num_hidden_layers + 1)),
                    )
                    subnet = teacher.search_space.subnet(
                        depth, c.num_attention_heads, c.intermediate_size, c.hidden_size
                    )
                    model = teacher.extract_subnet(subnet)
                    return {
                        "subnet": subnet.to_dict(),
                        "mac_ratio": self.mac_ratio(teacher, subnet),
                        **self.scores(model),
                    }

                self.rows.compute(f"truncation_{rule}_{depth}", run)

    def ablation_rows(self) -> None:
        self.teacher()
        for name, levers in ABLATIONS.items():
            model, _ = self.train_supernet(f"ablation_{name}", self.args.ablation_steps, **levers)
            self.evaluate_subnets(f"ablation_{name}", model, (1.0, 0.5, 0.25), per_point=4)

    def measure_rows(self) -> None:
        self.rows.compute("measure", lambda: {kind: run_measurement(kind) for kind in ("timing", "plain", "sandwich")})


# ------------------------------------------------------------------------------------------------------------------
# step time and memory, each in a fresh subprocess
def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status (Linux only).")


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set size (VmHWM) of this process


def measure(args: BenchArguments) -> dict:
    """Inside a subprocess: `plain` or `sandwich` training memory (the increase of peak RSS over the process's own
    level just before training), or `timing` (a sandwich step vs the sum of its subnets' forward+backward)."""
    bench = Bench(args)
    batch = bench.collator([bench.splits["train"][i] for i in range(args.batch_size)])
    teacher = BertForSequenceClassification.from_pretrained(bench.teacher_dir()).eval()
    if args.measure == "plain":
        model = BertForSequenceClassification.from_pretrained(bench.teacher_dir())
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
        reset_peak_rss()
        base = peak_rss_bytes()
        for _ in range(3):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return {"peak_increase": peak_rss_bytes() - base}
    model = bench.initial_supernet(bench.teacher_dir())
    recipe = {**RECIPE, "distillation": "teacher"}
    trainer = SupernetTrainer(
        model=model,
        teacher_model=teacher,
        args=train_args(args, "measure", args.max_steps, SupernetTrainingArguments, eval_subnets="", **recipe),
        train_dataset=bench.splits["train"],
        data_collator=bench.collator,
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
        return {"peak_increase": peak_rss_bytes() - base}
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

    def plain():
        with model.subnet(model.max_subnet()):
            model(**inputs).loss.backward()
        model.zero_grad()

    model.train()
    sandwich(), separate(), plain()
    times: dict[str, list[float]] = {"sandwich": [], "separate": [], "plain": []}
    fns = {"sandwich": sandwich, "separate": separate, "plain": plain}
    for i in range(args.timing_rounds):
        for name in list(fns)[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {
        "subnets": [s.to_dict() for s in subnets],
        "sandwich_step_s": statistics.median(times["sandwich"]),
        "sum_of_subnets_s": statistics.median(times["separate"]),
        "plain_step_s": statistics.median(times["plain"]),
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
# the report
def accuracy(values: list[int]) -> float:
    return 100 * sum(values) / len(values)


def report(bench: Bench, args: BenchArguments, command: list[str]) -> dict:
    rows = bench.rows
    teacher = rows.get("teacher")
    tf = rows.get("teacher_first_subnets")
    if teacher is None or tf is None:
        raise RuntimeError("Nothing to report: the teacher and the teacher-first supernet rows are not finished.")
    ci = lambda a, b: paired_interval(a, b, args.bootstrap_samples, args.seed)  # noqa: E731
    points = []
    for point in MAC_POINTS:
        key, chosen = bench.select(tf["subnets"], point)
        entry = {
            "point": point,
            "subnet": json.loads(key),
            "mac_ratio": chosen["mac_ratio"],
            "validation": accuracy(chosen["validation"]),
            "dev": accuracy(chosen["dev"]),
            "vs_teacher": ci(chosen["dev"], teacher["dev"]),
        }
        op = rows.get("one_pass_subnets")
        if op is not None:
            op_key, op_chosen = bench.select(op["subnets"], point)
            entry["one_pass"] = {
                "subnet": json.loads(op_key),
                "mac_ratio": op_chosen["mac_ratio"],
                "dev": accuracy(op_chosen["dev"]),
                "teacher_first_minus_one_pass": ci(chosen["dev"], op_chosen["dev"]),
            }
        ft = rows.get(f"finetune_{point}")
        if ft is not None:
            entry["finetuned"] = {"dev": accuracy(ft["dev"]), "minus_without": ci(ft["dev"], chosen["dev"])}
            entry["finetuned"]["vs_teacher"] = ci(ft["dev"], teacher["dev"])
        kd = rows.get(f"kd_{point}")
        if kd is not None:
            entry["kd_baseline"] = {
                "dev": accuracy(kd["dev"]),
                "supernet_minus_baseline": ci(chosen["dev"], kd["dev"]),
            }
            entry["kd_baseline"]["train_seconds"] = kd["train_seconds"]
        points.append(entry)
    by_point = {p["point"]: p for p in points}
    cloud = [
        {"mac_ratio": v["mac_ratio"], "dev": accuracy(v["dev"]), "subnet": json.loads(k)}
        for k, v in tf["subnets"].items()
    ]
    truncation = {}
    for rule in ("first", "spread"):
        for depth in (5, 4, 3, 2):
            row = rows.get(f"truncation_{rule}_{depth}")
            if row is not None:
                truncation[f"{rule}_{depth}"] = {"mac_ratio": row["mac_ratio"], "dev": accuracy(row["dev"])}
    ablations = {}
    for name in ABLATIONS:
        evaluated = rows.get(f"ablation_{name}_subnets")
        trained = rows.get(f"ablation_{name}_trained")
        if evaluated is None:
            continue
        ablations[name] = {"train_seconds": trained["train_seconds"] if trained else None}
        for point in (1.0, 0.5, 0.25):
            _, chosen = bench.select(evaluated["subnets"], point)
            ablations[name][str(point)] = {"dev": accuracy(chosen["dev"]), "mac_ratio": chosen["mac_ratio"]}
    base = rows.get("ablation_recipe_subnets")
    if base is not None:
        for name in ablations:
            evaluated = rows.get(f"ablation_{name}_subnets")
            for point in (1.0, 0.5, 0.25):
                a = bench.select(evaluated["subnets"], point)[1]["dev"]
                b = bench.select(base["subnets"], point)[1]["dev"]
                ablations[name][str(point)]["minus_recipe"] = ci(a, b)
    trained = {name: rows.get(f"{name}_trained") for name in ("teacher_first", "one_pass")}
    kd_seconds = [rows.get(f"kd_{p}")["train_seconds"] for p in MAC_POINTS[1:] if rows.get(f"kd_{p}")]
    measured = rows.get("measure")
    result = {
        "command": " ".join(command),
        "commit": git_commit(),
        "model": checkpoint_name(bench.path),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "hf_nas": hf_nas.__version__,
            "python": platform.python_version(),
        },
        "settings": {k: v for k, v in dataclasses.asdict(args).items() if k not in ("measure", "rows")},
        "recipe": RECIPE,
        "targets": TARGETS,
        "majority_class": 100 * MAJORITY,
        "dev_samples": len(bench.splits["dev"]),
        "teacher": {
            "dev": accuracy(teacher["dev"]),
            "validation": accuracy(teacher["validation"]),
            "train_seconds": teacher["train_seconds"],
        },
        "points": points,
        "cloud": cloud,
        "truncation_no_retraining": truncation,
        "ablations": ablations,
        "compute": {
            "teacher_seconds": teacher["train_seconds"],
            "teacher_first_supernet_seconds": trained["teacher_first"]["train_seconds"]
            if trained["teacher_first"]
            else None,
            "one_pass_supernet_seconds": trained["one_pass"]["train_seconds"] if trained["one_pass"] else None,
            "baselines_seconds": sum(kd_seconds) if kd_seconds else None,
            "num_baselines": len(kd_seconds),
            "teacher_steps": args.max_steps,
            "teacher_first_steps": args.max_steps,
            "equal_compute": rows.get("equal_compute"),
        },
        "measure": measured,
    }
    if measured is not None:
        t = measured["timing"]
        result["step_time_ratio"] = t["sandwich_step_s"] / t["sum_of_subnets_s"]
        result["sandwich_vs_plain_step"] = t["sandwich_step_s"] / t["plain_step_s"]
        result["memory_ratio"] = measured["sandwich"]["peak_increase"] / measured["plain"]["peak_increase"]
    result["gap_full"] = -by_point[1.0]["vs_teacher"]["diff"]
    result["gap_at_50"] = -by_point[0.5]["vs_teacher"]["diff"]
    result["gap_at_25"] = -by_point[0.25]["vs_teacher"]["diff"]
    result["cloud_min_dev"] = min(c["dev"] for c in cloud) if cloud else None
    return result


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "hf_nas", "scripts"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    cloud = result["cloud"]
    ax.scatter(
        [100 * c["mac_ratio"] for c in cloud],
        [c["dev"] for c in cloud],
        s=14,
        alpha=0.5,
        color="gray",
        label="supernet subnets (random and uniform candidates)",
    )
    pts = result["points"]
    ax.plot(
        [100 * p["mac_ratio"] for p in pts],
        [p["dev"] for p in pts],
        "o-",
        color="C0",
        label="teacher-first supernet, selected on validation",
    )
    op = [p for p in pts if "one_pass" in p]
    if op:
        ax.plot(
            [100 * p["one_pass"]["mac_ratio"] for p in op],
            [p["one_pass"]["dev"] for p in op],
            "s--",
            color="C1",
            label="one-pass (InstaTune) supernet",
        )
    kd = [p for p in pts if "kd_baseline" in p]
    if kd:
        ax.plot(
            [100 * p["mac_ratio"] for p in kd],
            [p["kd_baseline"]["dev"] for p in kd],
            "^",
            color="C2",
            label="same architecture trained alone (KD, same teacher)",
        )
    tr = result["truncation_no_retraining"]
    for rule, marker in (("first", "x"), ("spread", "+")):
        items = [v for k, v in tr.items() if k.startswith(rule)]
        if items:
            ax.scatter(
                [100 * v["mac_ratio"] for v in items],
                [v["dev"] for v in items],
                marker=marker,
                color="C3",
                label=f"teacher truncated to {rule} k layers (no retraining)",
            )
    ax.axhline(result["teacher"]["dev"], color="black", lw=0.8, label="teacher (full model)")
    ax.axhline(result["majority_class"], color="red", lw=0.6, ls=":", label="majority class")
    ax.set_xlabel("MACs (% of the full model)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def within(interval: dict, tolerance: float) -> str:
    """Whether a difference (subnet - reference, in points) is within `tolerance` below 0, read from its interval:
    met when the whole interval is, NOT met when none of it is, otherwise unresolved at this evaluation set's size."""
    if interval["low"] >= -tolerance:
        return "met"
    if interval["high"] < -tolerance:
        return "NOT met"
    side = "met" if interval["diff"] >= -tolerance else "missed"
    return f"unresolved (point estimate {side}; the interval spans the target)"


def status(value: float | None, target: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "NOT met"


def render_markdown(r: dict) -> str:
    s = r["settings"]
    t = r["targets"]
    pts = {p["point"]: p for p in r["points"]}

    def iv(x: dict) -> str:
        return f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"

    lines = [
        "# Supernet quality benchmark (SST-2)",
        "",
        f"Generated by `{r['command']}` at commit `{r['commit']}` on {r['machine']}; torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}, hf-nas {r['versions']['hf_nas']}.",
        "",
        f"Model {r['model']}; {s['train_samples']} seeded SST-2 training rows; {s['validation_samples']} further "
        "training rows held out as the **validation split that selects** each MAC point's subnet; the official SST-2 "
        f"dev set ({r['dev_samples']} rows) "
        f"for every **reported** number. {s['max_steps']} optimizer steps of batch {s['batch_size']} (max "
        f"{s['max_seq_length']} tokens, dynamic padding, lr {s['learning_rate']}, seed {s['seed']}) for the teacher, "
        "the teacher-first supernet and every baseline. MAC ratios at "
        f"{s['mac_sequence_length']} tokens. Intervals: paired 95% bootstrap over the dev examples "
        f"({s['bootstrap_samples']} resamples); one seed.",
        "",
        f"Teacher-first recipe: {json.dumps(r['recipe'])}, spread layers, default search space.",
        "",
        "## Targets",
        "",
        "| target | measured (points, 95% interval) | target | |",
        "|---|---|---|---|",
        f"| full-size subnet vs teacher | {iv(pts[1.0]['vs_teacher'])} | within {t['gap_full']} | "
        f"{within(pts[1.0]['vs_teacher'], t['gap_full'])} |",
        f"| 50% MACs vs teacher | {iv(pts[0.5]['vs_teacher'])} | within {t['gap_at_50']} | "
        f"{within(pts[0.5]['vs_teacher'], t['gap_at_50'])} |",
        f"| 25% MACs vs teacher | {iv(pts[0.25]['vs_teacher'])} | within {t['gap_at_25']} | "
        f"{within(pts[0.25]['vs_teacher'], t['gap_at_25'])} |",
    ]
    for p in r["points"][1:]:
        if "kd_baseline" in p:
            x = p["kd_baseline"]["supernet_minus_baseline"]
            verdict = "met" if x["high"] >= 0 else "NOT met"
            if verdict == "met" and x["diff"] < 0:
                verdict = "met by the interval (point estimate below 0)"
            lines.append(
                f"| {100 * p['point']:.0f}% MACs: supernet vs same architecture trained alone | {iv(x)} | interval not "
                f"below 0 | {verdict} |"
            )
    if r["cloud"]:
        lines.append(
            f"| lowest dev accuracy of the {len(r['cloud'])} evaluated subnets of the default space | "
            f"{r['cloud_min_dev']:.2f}% | above majority class {r['majority_class']:.2f}% | "
            f"{status(r['cloud_min_dev'], r['majority_class'] + 1.0, True)} |"
        )
    lines += [
        "",
        "A gap of ±0.5 points is below the resolution of 872 dev examples (one example is 0.11 points; the standard "
        "error of an accuracy near 85% is about 1.2 points, of a paired difference usually 0.5-1 point): read the "
        "interval, not the point estimate.",
        "",
        "## Subnets at each MAC point (no retraining)",
        "",
        f"Teacher (full model fine-tuned alone): dev {r['teacher']['dev']:.2f}%.",
        "",
        "| MAC point | selected subnet (MACs) | teacher-first: dev | vs teacher | one-pass: dev (MACs) | teacher-first "
        "vs one-pass | same architecture alone (KD): dev | supernet vs alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in r["points"]:
        sub = p["subnet"]
        arch = (
            f"L={sub['num_hidden_layers']} {sub['layers']}, H={sorted(set(sub['num_attention_heads']))}, "
            f"F={sorted(set(sub['intermediate_size']))}, D={sub['hidden_size']}"
        )
        op = p.get("one_pass")
        kd = p.get("kd_baseline")
        lines.append(
            f"| {100 * p['point']:.0f}% | {arch} ({100 * p['mac_ratio']:.0f}%) | {p['dev']:.2f}% | "
            f"{iv(p['vs_teacher'])} | "
            + (
                f"{op['dev']:.2f}% ({100 * op['mac_ratio']:.0f}%) | {iv(op['teacher_first_minus_one_pass'])} | "
                if op
                else "- | - | "
            )
            + (f"{kd['dev']:.2f}% | {iv(kd['supernet_minus_baseline'])} |" if kd else "- | - |")
        )
    ft = [p for p in r["points"] if "finetuned" in p]
    if ft:
        lines += [
            "",
            f"## After a short distillation of the selected subnet alone ({s['finetune_steps']} steps; "
            "`extract_subnet.py --finetune_steps`), reported apart from the subnets without retraining",
            "",
            "| MAC point | without retraining | after the distillation | gain | vs teacher |",
            "|---|---|---|---|---|",
        ]
        for p in ft:
            f = p["finetuned"]
            lines.append(
                f"| {100 * p['point']:.0f}% | {p['dev']:.2f}% | {f['dev']:.2f}% | {iv(f['minus_without'])} | "
                f"{iv(f['vs_teacher'])} |"
            )
    tr = r["truncation_no_retraining"]
    if tr:
        lines += [
            "",
            "## Depth without retraining: the teacher cut to k layers",
            "",
            "| k | first k layers | spread layers (keeps the last) |",
            "|---|---|---|",
        ]
        for depth in (5, 4, 3, 2):
            f, sp = tr.get(f"first_{depth}"), tr.get(f"spread_{depth}")
            lines.append(f"| {depth} | {f['dev']:.2f}% | {sp['dev']:.2f}% |" if f and sp else f"| {depth} | - | - |")
    if r["ablations"]:
        lines += [
            "",
            f"## Ablations ({s['ablation_steps']} steps each, from the same teacher; best validation-selected subnet "
            "at each point, dev accuracy; difference to the recipe row with its paired interval)",
            "",
            "| variant | full | 50% MACs | 25% MACs | train time |",
            "|---|---|---|---|---|",
        ]
        for name, a in r["ablations"].items():
            cells = []
            for point in ("1.0", "0.5", "0.25"):
                c = a[point]
                extra = f" ({iv(c['minus_recipe'])})" if "minus_recipe" in c and name != "recipe" else ""
                cells.append(f"{c['dev']:.2f}%{extra}")
            secs = f"{a['train_seconds'] / 60:.1f} min" if a.get("train_seconds") else "-"
            lines.append(f"| {name} | {' | '.join(cells)} | {secs} |")
    c = r["compute"]
    lines += [
        "",
        "## Compute",
        "",
        "Wall times of single runs on 2 shared CPU cores (other jobs ran beside some of them, the teacher's in "
        "particular); the step times and memory at the end were measured side by side in fresh processes.",
        "",
    ]
    if c["teacher_first_supernet_seconds"]:
        lines.append(
            f"- Teacher-first: teacher {c['teacher_steps']} plain steps, {c['teacher_seconds'] / 60:.1f} min + "
            f"supernet {c['teacher_first_steps']} sandwich steps, {c['teacher_first_supernet_seconds'] / 60:.1f} min "
            f"= {(c['teacher_seconds'] + c['teacher_first_supernet_seconds']) / 60:.1f} min."
        )
    if c["one_pass_supernet_seconds"] and c["equal_compute"]:
        e = c["equal_compute"]
        lines.append(
            f"- One pass (InstaTune): {e['one_pass_steps']} sandwich steps, {c['one_pass_supernet_seconds'] / 60:.1f} "
            f"min: the steps whose training MACs ({e['one_pass_macs'] / 1e12:.0f} TMAC, forward + backward = 3 "
            f"forwards, batches of {e['sequence_length']} tokens) match the teacher-first recipe's "
            f"({e['teacher_first_macs'] / 1e12:.0f} TMAC: the teacher's fine-tuning, then the supernet with one "
            "teacher forward per step)."
        )
    if c["baselines_seconds"]:
        lines.append(
            f"- The {c['num_baselines']} architectures trained alone (what one supernet replaces, teacher shared): "
            f"{c['baselines_seconds'] / 60:.1f} min."
        )
    if r.get("measure"):
        m = r["measure"]
        lines += [
            f"- One sandwich step ({len(m['timing']['subnets'])} subnets + the teacher's forward) / the sum of its "
            f"subnets' forward+backward: {r['step_time_ratio']:.2f}; / one plain step of the full model: "
            f"{r['sandwich_vs_plain_step']:.2f}.",
            f"- Training memory (increase of peak RSS over each process's own level before training, 3 steps with "
            f"the optimizer): sandwich {m['sandwich']['peak_increase'] / 2**20:.0f} MiB vs plain "
            f"{m['plain']['peak_increase'] / 2**20:.0f} MiB, ratio {r['memory_ratio']:.2f}.",
        ]
    lines += ["", "![dev accuracy vs MACs](supernet_pareto.png)", ""]
    return "\n".join(lines) + "\n"


README_MARKERS = ("<!-- bench-supernet:start -->", "<!-- bench-supernet:end -->")


def render_readme_table(r: dict) -> str:
    """The short table the README shows between its markers (regenerated with the benchmark, never by hand)."""
    lines = [
        f"SST-2 dev accuracy (872 rows) of all-MiniLM-L6-v2 subnets, no retraining after the supernet; teacher "
        f"{r['teacher']['dev']:.2f}%. Differences in points with paired 95% bootstrap intervals; selection on a "
        "held-out validation split ([details](docs/benchmarks/supernet.md)).",
        "",
        "| MACs | teacher-first supernet | vs teacher | same architecture trained alone (KD) | supernet vs alone |",
        "|---|---|---|---|---|",
    ]
    for p in r["points"]:
        kd = p.get("kd_baseline")
        x, v = p["vs_teacher"], kd["supernet_minus_baseline"] if kd else None
        lines.append(
            f"| {100 * p['mac_ratio']:.0f}% | {p['dev']:.2f}% | {x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}] | "
            + (f"{kd['dev']:.2f}% | {v['diff']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}] |" if kd else "- | - |")
        )
    return "\n".join(lines)


def update_readme(r: dict, path: str) -> None:
    with open(path) as f:
        text = f.read()
    start, end = README_MARKERS
    if start not in text or end not in text:
        logger.warning("%s has no %s ... %s markers: the README table was not updated.", path, start, end)
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(path, f"{head}{start}\n{render_readme_table(r)}\n{end}{tail}")


def main() -> None:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    if args.measure is not None:
        print(json.dumps(measure(args)))
        return
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    bench = Bench(args)
    groups = {g.strip() for g in args.rows.split(",")}
    if "all" in groups:
        groups = {"main", "baselines", "finetune", "truncation", "measure", "ablations", "report"}
    order = [
        ("main", bench.main_rows),
        ("baselines", bench.baseline_rows),
        ("finetune", bench.finetune_rows),
        ("truncation", bench.truncation_rows),
        ("measure", bench.measure_rows),
        ("ablations", bench.ablation_rows),
    ]
    unknown = groups - {name for name, _ in order} - {"report"}
    if unknown:
        raise ValueError(
            f"Unknown --rows {sorted(unknown)}; allowed: main, baselines, truncation, measure, ablations, report, all."
        )
    for name, fn in order:
        if name in groups:
            logger.info("== %s", name)
            fn()
    if "report" in groups:
        result = report(bench, args, [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
        os.makedirs(args.output_dir, exist_ok=True)
        atomic_write_text(os.path.join(args.output_dir, "supernet.json"), json.dumps(result, indent=1) + "\n")
        plot(result, os.path.join(args.output_dir, "supernet_pareto.png"))
        atomic_write_text(os.path.join(args.output_dir, "supernet.md"), render_markdown(result))
        if os.path.abspath(args.output_dir) == os.path.join(ROOT, "docs", "benchmarks"):
            update_readme(result, os.path.join(ROOT, "README.md"))
        print(render_markdown(result))


if __name__ == "__main__":
    main()
