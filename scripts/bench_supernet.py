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

import dataclasses
import hashlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import datasets
import torch
import transformers
from bench_common import (
    BENCHMARKS_DIR,
    ROOT,
    BenchArguments,
    Rows,
    cpu_training_args,
    first_rows,
    paired_interval,
    parse_args,
    read_sst2,
    run_record,
    setup_logging,
    tokenize_sst2,
    within,
    write_results,
)
from torch.utils.data import DataLoader
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

import hf_nas
from hf_nas import ElasticBertForSequenceClassification, SearchSpace, SubnetConfig, count_macs, reorder_by_importance
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.training.recipes import finetune_subnet
from hf_nas.utils import atomic_write_text, checkpoint_name, default_text_checkpoint

logger = logging.getLogger("hf_nas.bench_supernet")
MAC_POINTS = (1.0, 0.75, 0.5, 0.35, 0.25)
BENCHED_RECIPES = ("one_pass", "teacher_first")
DEFAULT_RECIPE = "one_pass"  # the winner at equal compute (see the report); train_supernet.py's default
RECIPE_NAMES = {"one_pass": "one pass (InstaTune)", "teacher_first": "teacher-first"}
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


ABLATION_NOTES = (
    "The ablations switch one lever of the teacher-first recipe at a time: `no_hidden_distillation` (logits only), "
    "`no_gradient_protection` (the plain sum of the subnets' gradients, clipped together), `no_uniform_sampling` "
    "(per-layer random widths only), `kd_only_students` (no label loss), `width_then_depth` (depth held full for "
    "the first half: progressive shrinking), `attention_distillation` (AutoDistil's last-layer self-attention "
    "relations added), `first_k_layers` / `importance_layers` (the layer rule), `no_hidden_size_reduction` (hidden "
    "size fixed at 384 in the space). At this length most differences are inside their intervals."
)


@dataclass
class SupernetBenchArguments(BenchArguments):
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps of the teacher, supernet and baselines."})
    work_dir: str = field(default="/tmp/hf_nas_bench_supernet", metadata={"help": "Models and finished rows."})
    validation_samples: int = field(
        default=1000, metadata={"help": "Training rows held out (disjoint from the subset) to select subnets on."}
    )
    ablation_steps: int = field(default=100, metadata={"help": "Optimizer steps of each ablation supernet."})
    finetune_steps: int = field(
        default=100, metadata={"help": "Steps of the short distillation of each selected subnet after the search."}
    )
    mac_sequence_length: int = field(default=128, metadata={"help": "Tokens per sequence of the MAC ratios."})
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
    measure: str | None = field(default=None, metadata={"help": "Internal: run one measurement subprocess."})


# ------------------------------------------------------------------------------------------------------------------
# data
def load_splits(args: SupernetBenchArguments, tokenizer) -> dict[str, datasets.Dataset]:
    """Tokenized train subset, validation split (held-out training rows) and the official dev set."""
    rows = read_sst2(args.data_dir, "train.tsv")
    order = list(range(len(rows)))
    random.Random(args.seed).shuffle(order)
    picked = {
        "train": rows.select(order[: args.train_samples]),
        "validation": rows.select(order[args.train_samples : args.train_samples + args.validation_samples]),
        "dev": first_rows(read_sst2(args.data_dir, "dev.tsv"), args.dev_samples),
    }
    return {name: tokenize_sst2(ds, tokenizer, args.max_seq_length) for name, ds in picked.items()}


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


def train_args(args: SupernetBenchArguments, name: str, steps: int, cls=TrainingArguments, **kwargs):
    """The training arguments of the run `name` (in `<work_dir>/runs/<name>`) for `steps` optimizer steps."""
    output_dir = os.path.join(args.work_dir, "runs", name)
    return cpu_training_args(output_dir, steps, args.batch_size, args.learning_rate, args.seed, cls, **kwargs)


def equal_compute(model, args: SupernetBenchArguments) -> dict:
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
    def __init__(self, args: SupernetBenchArguments):
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
            recipe.setdefault("distillation", "teacher")  # or "chain", a lever of bench_mos.py
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
        self.evaluate_subnets("one_pass", model, MAC_POINTS, cloud=self.args.cloud_size)

    def baselines(self) -> dict[str, dict]:
        """Finished "trained alone" rows by the JSON of their architecture."""
        out = {}
        for name in sorted(os.listdir(self.rows.folder)):
            if name.startswith("kd_") and name.endswith(".json"):
                row = self.rows.get(name[: -len(".json")])
                out[json.dumps(row["subnet"])] = row
        return out

    def baseline_rows(self) -> None:
        """Each architecture a supernet selected (both recipes), trained alone with the same teacher, losses, steps
        and initial weights (the importance-reordered teacher)."""
        for recipe in BENCHED_RECIPES:
            evaluated = self.rows.get(f"{recipe}_subnets")
            if evaluated is None:
                raise RuntimeError("Run the main rows first: the baselines train the architectures they selected.")
            for point in MAC_POINTS[1:]:
                key, _ = self.select(evaluated["subnets"], point)
                if key in self.baselines():
                    continue
                subnet = SubnetConfig.from_dict(json.loads(key))
                name = "kd_" + hashlib.sha1(key.encode()).hexdigest()[:10]
                self.rows.compute(name, lambda subnet=subnet, name=name: self.train_alone(subnet, name))

    def train_alone(self, subnet: SubnetConfig, name: str) -> dict:
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
                name,
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

    def finetune_rows(self) -> None:
        """The default recipe's selected subnets after a short distillation alone, as `extract_subnet.py
        --finetune_steps` does it (the teacher: the supernet's own full model when, as in one pass, none is saved)."""
        evaluated = self.rows.get(f"{DEFAULT_RECIPE}_subnets")
        if evaluated is None:
            raise RuntimeError("Run the main rows first: the fine-tune starts from the subnets they selected.")
        folder = os.path.join(self.models, DEFAULT_RECIPE)
        for point in MAC_POINTS[1:]:
            key, _ = self.select(evaluated["subnets"], point)
            subnet = SubnetConfig.from_dict(json.loads(key))

            def run(subnet=subnet, point=point):
                model = ElasticBertForSequenceClassification.from_pretrained(folder)
                teacher = model.extract_subnet(model.max_subnet()).eval()
                recipe = {k: RECIPE[k] for k in ("kd_loss_weight", "task_loss_weight", "hidden_loss_weight")}
                steps = self.args.finetune_steps
                targs = train_args(
                    self.args, f"finetune_{point}", steps, SupernetTrainingArguments, distillation="teacher", **recipe
                )
                set_seed(self.args.seed)
                start = time.perf_counter()
                finetune_subnet(model, subnet, targs, self.splits["train"], teacher, self.collator)
                seconds = time.perf_counter() - start
                with model.subnet(subnet):
                    return {"subnet": subnet.to_dict(), "steps": steps, "train_seconds": seconds, **self.scores(model)}

            self.rows.compute(f"finetune_{DEFAULT_RECIPE}_{point}", run)

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


def measure(args: SupernetBenchArguments) -> dict:
    """Inside a subprocess: `plain` or `sandwich` training memory (the increase of peak RSS over the process's own
    level just before training), or `timing` (a sandwich step vs the sum of its subnets' forward+backward), for the
    default recipe (one pass: the largest subnet teaches in place, so a step has no extra forward)."""
    bench = Bench(args)
    batch = bench.collator([bench.splits["train"][i] for i in range(args.batch_size)])
    if args.measure == "plain":
        model = BertForSequenceClassification.from_pretrained(bench.path, num_labels=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
        reset_peak_rss()
        base = peak_rss_bytes()
        for _ in range(3):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return {"peak_increase": peak_rss_bytes() - base}
    model = bench.initial_supernet(bench.path)
    recipe = {**RECIPE, "distillation": "inplace"}
    trainer = SupernetTrainer(
        model=model,
        args=train_args(args, "measure", args.max_steps, SupernetTrainingArguments, eval_subnets="", **recipe),
        train_dataset=bench.splits["train"],
        data_collator=bench.collator,
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    trainer.current_gradient_accumulation_steps = 1
    inputs = {key: value.to(trainer.args.device) for key, value in batch.items()}
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


def report(bench: Bench, args: SupernetBenchArguments) -> dict:
    rows = bench.rows
    teacher = rows.get("teacher")
    if teacher is None or rows.get(f"{DEFAULT_RECIPE}_subnets") is None:
        raise RuntimeError(f"Nothing to report: the teacher and the {DEFAULT_RECIPE} supernet rows are not finished.")
    ci = lambda a, b: paired_interval(a, b, args.bootstrap_samples, args.seed)  # noqa: E731
    baselines = bench.baselines()
    points = []
    for point in MAC_POINTS:
        entry: dict = {"point": point}
        for recipe in BENCHED_RECIPES:
            evaluated = rows.get(f"{recipe}_subnets")
            if evaluated is None:
                continue
            key, chosen = bench.select(evaluated["subnets"], point)
            e = {
                "subnet": json.loads(key),
                "mac_ratio": chosen["mac_ratio"],
                "validation": accuracy(chosen["validation"]),
                "dev": accuracy(chosen["dev"]),
                "correct": chosen["dev"],
                "vs_teacher": ci(chosen["dev"], teacher["dev"]),
            }
            alone = baselines.get(key)
            if alone is not None and point < 1.0:
                e["alone"] = {
                    "dev": accuracy(alone["dev"]),
                    "supernet_minus_alone": ci(chosen["dev"], alone["dev"]),
                    "train_seconds": alone["train_seconds"],
                }
            ft = rows.get(f"finetune_{recipe}_{point}")
            if ft is not None:
                e["finetuned"] = {
                    "dev": accuracy(ft["dev"]),
                    "minus_without": ci(ft["dev"], chosen["dev"]),
                    "vs_teacher": ci(ft["dev"], teacher["dev"]),
                    "steps": ft["steps"],
                }
            entry[recipe] = e
        if all(r in entry for r in BENCHED_RECIPES):
            entry["one_pass_minus_teacher_first"] = ci(entry["one_pass"]["correct"], entry["teacher_first"]["correct"])
        for recipe in BENCHED_RECIPES:
            entry.get(recipe, {}).pop("correct", None)
        points.append(entry)
    clouds = {}
    for recipe in BENCHED_RECIPES:
        evaluated = rows.get(f"{recipe}_subnets")
        if evaluated is not None:
            clouds[recipe] = [
                {"mac_ratio": v["mac_ratio"], "dev": accuracy(v["dev"]), "subnet": json.loads(k)}
                for k, v in evaluated["subnets"].items()
            ]
    truncation = {}
    for rule in ("first", "spread"):
        for depth in (5, 4, 3, 2):
            row = rows.get(f"truncation_{rule}_{depth}")
            if row is not None:
                truncation[f"{rule}_{depth}"] = {"mac_ratio": row["mac_ratio"], "dev": accuracy(row["dev"])}
    ablations = {}
    base = rows.get("ablation_recipe_subnets")
    for name in ABLATIONS:
        evaluated = rows.get(f"ablation_{name}_subnets")
        if evaluated is None:
            continue
        trained = rows.get(f"ablation_{name}_trained")
        ablations[name] = {"train_seconds": trained["train_seconds"] if trained else None}
        for point in (1.0, 0.5, 0.25):
            chosen = bench.select(evaluated["subnets"], point)[1]
            ablations[name][str(point)] = {"dev": accuracy(chosen["dev"]), "mac_ratio": chosen["mac_ratio"]}
            if base is not None:
                reference = bench.select(base["subnets"], point)[1]
                ablations[name][str(point)]["minus_recipe"] = ci(chosen["dev"], reference["dev"])
    trained = {name: rows.get(f"{name}_trained") for name in BENCHED_RECIPES}
    default_alone = [
        p[DEFAULT_RECIPE]["alone"]["train_seconds"] for p in points if "alone" in p.get(DEFAULT_RECIPE, {})
    ]
    measured = rows.get("measure")
    record = run_record()
    result = {
        "command": record["command"],
        "commit": record["commit"],
        "model": checkpoint_name(bench.path),
        "machine": record["machine"],
        "versions": record["versions"],
        "settings": {
            **{k: v for k, v in dataclasses.asdict(args).items() if k not in ("measure", "rows")},
            "data_dir": os.path.relpath(args.data_dir, ROOT),
            "output_dir": os.path.relpath(args.output_dir, ROOT),
        },
        "recipe": RECIPE,
        "default_recipe": DEFAULT_RECIPE,
        "targets": TARGETS,
        "majority_class": 100 * MAJORITY,
        "dev_samples": len(bench.splits["dev"]),
        "teacher": {
            "dev": accuracy(teacher["dev"]),
            "validation": accuracy(teacher["validation"]),
            "train_seconds": teacher["train_seconds"],
        },
        "points": points,
        "clouds": clouds,
        "truncation_no_retraining": truncation,
        "ablations": ablations,
        "compute": {
            "teacher_seconds": teacher["train_seconds"],
            "supernet_seconds": {k: v["train_seconds"] for k, v in trained.items() if v},
            "alone_seconds": sum(default_alone) if default_alone else None,
            "num_alone": len(default_alone),
            "steps": {"teacher": args.max_steps, "teacher_first": args.max_steps},
            "equal_compute": rows.get("equal_compute"),
        },
        "measure": measured,
    }
    if measured is not None:
        t = measured["timing"]
        result["step_time_ratio"] = t["sandwich_step_s"] / t["sum_of_subnets_s"]
        result["sandwich_vs_plain_step"] = t["sandwich_step_s"] / t["plain_step_s"]
        result["memory_ratio"] = measured["sandwich"]["peak_increase"] / measured["plain"]["peak_increase"]
    default_cloud = clouds.get(DEFAULT_RECIPE, [])
    result["cloud_min_dev"] = min(c["dev"] for c in default_cloud) if default_cloud else None
    return result


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    cloud = result["clouds"].get(DEFAULT_RECIPE, [])
    ax.scatter(
        [100 * c["mac_ratio"] for c in cloud],
        [c["dev"] for c in cloud],
        s=14,
        alpha=0.45,
        color="gray",
        label=f"{RECIPE_NAMES[DEFAULT_RECIPE]}: every evaluated subnet (random and uniform)",
    )
    pts = result["points"]
    for recipe, style in (("one_pass", "o-"), ("teacher_first", "s--")):
        items = [p[recipe] for p in pts if recipe in p]
        if items:
            ax.plot(
                [100 * e["mac_ratio"] for e in items],
                [e["dev"] for e in items],
                style,
                label=f"{RECIPE_NAMES[recipe]}, subnet selected on validation",
            )
    alone = [p[DEFAULT_RECIPE] for p in pts if "alone" in p.get(DEFAULT_RECIPE, {})]
    if alone:
        ax.plot(
            [100 * e["mac_ratio"] for e in alone],
            [e["alone"]["dev"] for e in alone],
            "^",
            color="C2",
            label="same architecture trained alone (KD, same teacher and steps)",
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
                label=f"teacher cut to its {rule} k layers (no retraining)",
            )
    ax.axhline(result["teacher"]["dev"], color="black", lw=0.8, label="teacher (full model fine-tuned alone)")
    ax.axhline(result["majority_class"], color="red", lw=0.6, ls=":", label="majority class")
    ax.set_xlabel("MACs (% of the full model)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.legend(fontsize=7, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def recipe_verdict(points: list[dict]) -> str:
    """How the one-pass supernet's subnets compare with teacher-first's, point by point, in words."""
    diffs = [p["one_pass_minus_teacher_first"] for p in points if "one_pass_minus_teacher_first" in p]
    if not diffs:
        return "(teacher-first was not run)."
    better = sum(d["diff"] > 0 for d in diffs)
    significant = sum(d["low"] > 0 or d["high"] < 0 for d in diffs)
    mean = sum(d["diff"] for d in diffs) / len(diffs)
    return (
        f"a better point estimate at {better} of {len(diffs)} MAC points, {mean:+.2f} points on average; "
        f"{significant} of the {len(diffs)} intervals exclude 0 (one seed)."
    )


def render_markdown(r: dict) -> str:
    s = r["settings"]
    t = r["targets"]
    default = r["default_recipe"]
    pts = {p["point"]: p for p in r["points"]}
    recipes = [x for x in BENCHED_RECIPES if x in pts[1.0]]

    def iv(x: dict) -> str:
        return f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"

    def arch(sub: dict) -> str:
        return (
            f"layers {sub['layers']}, heads {sorted(set(sub['num_attention_heads']))}, FFN "
            f"{sorted(set(sub['intermediate_size']))}, hidden {sub['hidden_size']}"
        )

    e = r["compute"]["equal_compute"]
    lines = [
        "# Supernet quality benchmark (SST-2)",
        "",
        f"Generated by `{r['command']}` at commit `{r['commit']}` on {r['machine']}; torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}, hf-nas {r['versions']['hf_nas']}.",
        "",
        f"Model {r['model']}; {s['train_samples']} seeded SST-2 training rows; {s['validation_samples']} further "
        "training rows held out as the **validation split that selects** each MAC point's subnet (the most accurate "
        "on it among the evaluated subnets with MACs in (80%, 100%] of the point); the official SST-2 dev set "
        f"({r['dev_samples']} rows) for every **reported** number. Batch {s['batch_size']}, max "
        f"{s['max_seq_length']} tokens, dynamic padding, lr {s['learning_rate']}, seed {s['seed']}; MAC ratios at "
        f"{s['mac_sequence_length']} tokens. Intervals: paired 95% bootstrap over the dev examples "
        f"({s['bootstrap_samples']} resamples). One seed (a second did not fit the time budget).",
        "",
        "Both recipes share the levers " + json.dumps(RECIPE) + ", spread layers and the default search space:",
        "",
        f"- **teacher-first**: the teacher (the full model fine-tuned alone for {s['max_steps']} steps) initialises "
        f"the supernet, which then trains {s['max_steps']} sandwich steps with distillation from that fixed teacher "
        "(logits and the hidden states of every kept layer).",
        "- **one pass** (InstaTune): the supernet trains from the pretrained weights with the largest subnet teaching "
        "in place (logits and hidden states), for "
        + (f"{e['one_pass_steps']} steps: the same training MACs as teacher-first" if e else "equal compute")
        + " (see Compute).",
        "",
        f"**Default: {RECIPE_NAMES[default]}**, the recipe with the better subnets at equal compute below: "
        + recipe_verdict(r["points"]),
        "",
        "## Targets",
        "",
        "| target | " + " | ".join(f"{RECIPE_NAMES[x]}: measured (95% interval) | " for x in recipes) + "target |",
        "|---|" + "---|---|" * len(recipes) + "---|",
    ]
    for point, tolerance in ((1.0, t["gap_full"]), (0.5, t["gap_at_50"]), (0.25, t["gap_at_25"])):
        label = "full-size subnet" if point == 1.0 else f"{100 * point:.0f}% MACs"
        cells = " | ".join(
            f"{iv(pts[point][x]['vs_teacher'])} | {within(pts[point][x]['vs_teacher'], tolerance)}" for x in recipes
        )
        lines.append(f"| {label} vs teacher (points) | {cells} | within {tolerance} below |")
    for point in MAC_POINTS[1:]:
        cells = []
        for x in recipes:
            alone = pts[point][x].get("alone")
            if alone is None:
                cells.append("- | -")
                continue
            d = alone["supernet_minus_alone"]
            verdict = "met" if d["high"] >= 0 else "NOT met"
            if verdict == "met" and d["diff"] < 0:
                verdict = "met by the interval (point estimate below 0)"
            cells.append(f"{iv(d)} | {verdict}")
        lines.append(
            f"| {100 * point:.0f}% MACs: supernet vs the same architecture trained alone | {' | '.join(cells)} | "
            "interval not below 0 |"
        )
    for x in recipes:
        cloud = r["clouds"].get(x, [])
        if cloud and x == default:
            low = min(c["dev"] for c in cloud)
            ok = "met" if low > r["majority_class"] + 1.0 else "NOT met"
            lines.append(
                f"| lowest dev accuracy of the {len(cloud)} evaluated subnets of the default space "
                f"({RECIPE_NAMES[x]}) | {low:.2f}% | {ok} | "
                + "- | - | " * (len(recipes) - 1)
                + f"above the majority class ({r['majority_class']:.2f}%) |"
            )
    lines += [
        "",
        "A gap of 0.5 points is below the resolution of 872 dev examples (one example is 0.11 points; the paired "
        "differences here have intervals 3-5 points wide): a target whose interval spans it is reported as "
        "unresolved, with the side its point estimate falls on.",
        "",
        "## Subnets at each MAC point, without retraining",
        "",
        f'Teacher (the full model fine-tuned alone): dev {r["teacher"]["dev"]:.2f}%. "alone" is the same '
        f"architecture trained by itself for {s['max_steps']} steps with the same teacher, losses and initial "
        "weights (the importance-reordered teacher).",
        "",
        "| MACs | one pass: subnet | dev | vs teacher | alone | vs alone | teacher-first: dev | vs teacher | vs alone "
        "| one pass vs teacher-first |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["points"]:
        op, tf = p.get("one_pass"), p.get("teacher_first")
        cells = [f"{100 * op['mac_ratio']:.0f}%", arch(op["subnet"]), f"{op['dev']:.2f}%", iv(op["vs_teacher"])]
        cells += (
            [f"{op['alone']['dev']:.2f}%", iv(op["alone"]["supernet_minus_alone"])] if "alone" in op else ["-", "-"]
        )
        if tf is not None:
            cells += [f"{tf['dev']:.2f}% ({100 * tf['mac_ratio']:.0f}%)", iv(tf["vs_teacher"])]
            cells += [iv(tf["alone"]["supernet_minus_alone"]) if "alone" in tf else "-"]
            cells += [iv(p["one_pass_minus_teacher_first"])]
        lines.append("| " + " | ".join(cells) + " |")
    ft = [p[default] for p in r["points"] if "finetuned" in p.get(default, {})]
    if ft:
        lines += [
            "",
            f"## After a short distillation of the selected subnet alone ({RECIPE_NAMES[default]}; "
            f"{ft[0]['finetuned']['steps']} steps, `extract_subnet.py --finetune_steps`), reported apart",
            "",
            "| MACs | without retraining | after | gain | vs teacher |",
            "|---|---|---|---|---|",
        ]
        for e_ in ft:
            f = e_["finetuned"]
            lines.append(
                f"| {100 * e_['mac_ratio']:.0f}% | {e_['dev']:.2f}% | {f['dev']:.2f}% | {iv(f['minus_without'])} | "
                f"{iv(f['vs_teacher'])} |"
            )
    tr = r["truncation_no_retraining"]
    if tr:
        lines += [
            "",
            "## Which layers a depth-k subnet keeps: the teacher cut to k layers, without retraining",
            "",
            "| k | first k layers | spread layers (keeps the last) |",
            "|---|---|---|",
        ]
        for depth in (5, 4, 3, 2):
            f, sp = tr.get(f"first_{depth}"), tr.get(f"spread_{depth}")
            lines.append(f"| {depth} | {f['dev']:.2f}% | {sp['dev']:.2f}% |" if f and sp else f"| {depth} | - | - |")
        lines += [
            "",
            "all-MiniLM-L6-v2 was trained with mean pooling: the CLS state of its early layers barely varies, so every "
            "first-k cut predicts one class; keeping the last layer does not collapse. Hence `spread` is the default "
            "layer rule (the ablations below compare the rules inside a trained supernet).",
        ]
    if r["ablations"]:
        lines += [
            "",
            f"## Ablations of the teacher-first recipe ({s['ablation_steps']} supernet steps each, from the same "
            "teacher; the validation-selected subnet at each point, dev accuracy, and its difference to the "
            "`recipe` row with the paired interval)",
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
        lines += ["", ABLATION_NOTES]
    c = r["compute"]
    lines += [
        "",
        "## Compute",
        "",
        "Wall times of single runs on 2 shared CPU cores: rows may have been computed by several processes of this "
        "script at once (`--rows`), with one thread each, or beside other jobs, so wall times are indicative only; "
        "the step times and memory below were measured side by side in fresh processes on a quiet machine. Equal "
        "compute is counted in training MACs, not wall time.",
        "",
    ]
    sec = c["supernet_seconds"]
    if "teacher_first" in sec:
        lines.append(
            f"- Teacher-first: teacher {c['steps']['teacher']} plain steps, {c['teacher_seconds'] / 60:.1f} min + "
            f"supernet {c['steps']['teacher_first']} sandwich steps, {sec['teacher_first'] / 60:.1f} min."
        )
    if "one_pass" in sec and e:
        lines.append(
            f"- One pass: {e['one_pass_steps']} sandwich steps, {sec['one_pass'] / 60:.1f} min; its training MACs "
            f"({e['one_pass_macs'] / 1e12:.0f} TMAC, forward + backward = 3 forwards, at {e['sequence_length']} "
            f"tokens) match teacher-first's ({e['teacher_first_macs'] / 1e12:.0f} TMAC: the teacher's fine-tuning, "
            "then the supernet with one teacher forward per step), counted over the seeded subnets of every step."
        )
    if c["alone_seconds"]:
        lines.append(
            f"- The {c['num_alone']} architectures trained alone (what one supernet replaces; their teacher is "
            f"extra): {c['alone_seconds'] / 60:.1f} min."
        )
    if r.get("measure"):
        m = r["measure"]
        lines += [
            f"- One sandwich step of the default recipe ({len(m['timing']['subnets'])} subnets, the largest teaching "
            f"in place, hidden-state distillation, gradient protection) / the sum of its subnets' plain "
            f"forward+backward: {r['step_time_ratio']:.2f} (budget 1.10); / one plain step of the full model: "
            f"{r['sandwich_vs_plain_step']:.2f}.",
            f"- Training memory (increase of peak RSS over each process's own level before training, 3 steps with "
            f"the optimizer): sandwich {m['sandwich']['peak_increase'] / 2**20:.0f} MiB vs plain fine-tuning "
            f"{m['plain']['peak_increase'] / 2**20:.0f} MiB, ratio {r['memory_ratio']:.2f} (budget 1.3).",
        ]
    lines += ["", "![dev accuracy vs MACs](supernet_pareto.png)", ""]
    return "\n".join(lines) + "\n"


README_MARKERS = ("<!-- bench-supernet:start -->", "<!-- bench-supernet:end -->")


def render_readme_table(r: dict) -> str:
    """The short table the README shows between its markers (regenerated with the benchmark, never by hand)."""
    default = r["default_recipe"]
    lines = [
        f"SST-2 dev accuracy (872 rows) of all-MiniLM-L6-v2 subnets of a supernet trained with the default recipe "
        f"({RECIPE_NAMES[default]}), no retraining; teacher (the full model fine-tuned alone) "
        f"{r['teacher']['dev']:.2f}%. Differences in points with paired 95% bootstrap intervals; each subnet selected "
        "on a held-out validation split ([details, baselines and ablations](docs/benchmarks/supernet.md)).",
        "",
        "| MACs | supernet subnet | vs teacher | same architecture trained alone (KD) | supernet vs alone |",
        "|---|---|---|---|---|",
    ]
    for p in r["points"]:
        e = p[default]
        x = e["vs_teacher"]
        alone = e.get("alone")
        cells = [
            f"{100 * e['mac_ratio']:.0f}%",
            f"{e['dev']:.2f}%",
            f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]",
        ]
        if alone:
            v = alone["supernet_minus_alone"]
            cells += [f"{alone['dev']:.2f}%", f"{v['diff']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]"]
        else:
            cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
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
    args = parse_args(SupernetBenchArguments)
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    if args.measure is not None:
        print(json.dumps(measure(args)))
        return
    setup_logging()
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
        result = report(bench, args)
        write_results(args.output_dir, "supernet", result, render_markdown(result), indent=1)
        plot(result, os.path.join(args.output_dir, "supernet_pareto.png"))
        if os.path.abspath(args.output_dir) == BENCHMARKS_DIR:
            update_readme(result, os.path.join(ROOT, "README.md"))


if __name__ == "__main__":
    main()
