"""What the benchmark scripts share: paths, the SST-2 settings and data, training arguments, paired timing, the
record of the run and the result files (`<output_dir>/<name>.json` and `.md`, each written atomically).

The scripts import it as a sibling module: `python scripts/bench_x.py` puts `scripts/` first on the module path.

```python
>>> from bench_common import BenchArguments, environment, write_results  # doctest: +SKIP
>>> write_results("/tmp/out", "elastic", {**environment(), "rows": []}, "# Elastic benchmark")  # doctest: +SKIP
```
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import datasets
import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, HfArgumentParser, TrainingArguments

import hf_nas
from hf_nas import ElasticBertForSequenceClassification, SearchSpace, SubnetConfig, reorder_by_importance
from hf_nas.utils import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
BENCHMARKS_DIR = os.path.join(ROOT, "docs", "benchmarks")
SST2_DIR = os.path.join(SHARED, "data", "sst2")
logger = logging.getLogger("hf_nas.bench")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------------------------
# arguments and logging
def parse_args(cls: type[T]) -> T:
    """The command line parsed into the argument dataclass `cls` (`HfArgumentParser`, as the training scripts)."""
    (args,) = HfArgumentParser(cls).parse_args_into_dataclasses()
    return args


def setup_logging() -> None:
    """INFO logging of the benchmark, transformers' own logging quiet."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)
    transformers.utils.logging.set_verbosity_error()


@dataclass
class BenchArguments:
    """The SST-2 settings of the text benchmarks: model, data subset, optimizer steps and scratch folder."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Default: all-MiniLM-L6-v2."})
    data_dir: str = field(default=SST2_DIR)
    train_samples: int = field(default=9600, metadata={"help": "Seeded subset of the 67,349 training rows."})
    dev_samples: int | None = field(default=None, metadata={"help": "Default: the full dev set (smoke runs only)."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps of every training run."})
    batch_size: int = 32
    max_seq_length: int = 64
    learning_rate: float = 5e-5
    seed: int = 42
    importance_batches: int = 8
    output_dir: str = BENCHMARKS_DIR
    work_dir: str = field(default="/tmp/hf_nas_bench", metadata={"help": "Scratch space of the runs."})


# ------------------------------------------------------------------------------------------------------------------
# SST-2 and the supernet
def read_sst2(data_dir: str, name: str) -> datasets.Dataset:
    """One SST-2 file of `data_dir` (`train.tsv` or `dev.tsv`) as a dataset of `sentence` and `label`."""
    path = os.path.join(data_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: the SST-2 files are read offline from ../shared/data/sst2 (see its README.md); "
            "pass --data_dir to read them elsewhere."
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return datasets.Dataset.from_dict(
        {"sentence": [r["sentence"] for r in rows], "label": [int(r["label"]) for r in rows]}
    )


def tokenize_sst2(dataset: datasets.Dataset, tokenizer, max_length: int) -> datasets.Dataset:
    """The tokenizer's inputs and the `labels` of each row, truncated to `max_length` tokens (padded per batch later)."""

    def tokenize(batch):
        enc = tokenizer(batch["sentence"], truncation=True, max_length=max_length)
        enc["labels"] = batch["label"]
        return enc

    return dataset.map(tokenize, batched=True, remove_columns=["sentence", "label"])


def first_rows(dataset: datasets.Dataset, count: int | None) -> datasets.Dataset:
    """The first `count` rows of `dataset` (all of them when `count` is None)."""
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


def load_sst2(args: BenchArguments, tokenizer) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The tokenized training subset (`train_samples` rows, shuffled with `seed`) and the dev set."""
    train = read_sst2(args.data_dir, "train.tsv").shuffle(seed=args.seed).select(range(args.train_samples))
    dev = first_rows(read_sst2(args.data_dir, "dev.tsv"), args.dev_samples)
    return tokenize_sst2(train, tokenizer, args.max_seq_length), tokenize_sst2(dev, tokenizer, args.max_seq_length)


SUPERNET_MAC_POINTS = (0.75, 0.5, 0.35, 0.25)


def width_subnet(config, point: float) -> SubnetConfig:
    """All layers, with about `point` of the heads and of the FFN neurons (multiples of 128)."""
    heads = max(1, round(config.num_attention_heads * point))
    ffn = max(128, round(config.intermediate_size * point / 128) * 128)
    return SubnetConfig.uniform(config.num_hidden_layers, heads, ffn, config.hidden_size)


def build_supernet(args: BenchArguments, path: str, tokenizer, train: datasets.Dataset):
    """The MiniLM supernet with the benchmark space (elastic depth, and the heads and FFN widths of the
    `SUPERNET_MAC_POINTS`; hidden size fixed), importance-reordered on a few training batches."""
    torch.manual_seed(args.seed)
    model = ElasticBertForSequenceClassification.from_pretrained(path, num_labels=2)
    c = model.config
    points = [width_subnet(c, p) for p in SUPERNET_MAC_POINTS]
    model.search_space = SearchSpace(
        num_hidden_layers=tuple(range(1, c.num_hidden_layers + 1)),
        num_attention_heads=tuple(sorted({s.num_attention_heads[0] for s in points} | {c.num_attention_heads})),
        intermediate_size=tuple(sorted({s.intermediate_size[0] for s in points} | {c.intermediate_size})),
        hidden_size=(c.hidden_size,),
        attention_head_size=c.attention_head_size,
    )
    collator = DataCollatorWithPadding(tokenizer)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=False, collate_fn=collator)
    reorder_by_importance(model, loader, num_batches=args.importance_batches, show_progress=False)
    return model


def cpu_training_args(
    output_dir: str,
    max_steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    cls: type[TrainingArguments] = TrainingArguments,
    **kwargs,
) -> TrainingArguments:
    """Training arguments of a benchmark run on the CPU: linear schedule with 10% warmup, seeded data order, about
    ten log lines, no checkpoints (unless `kwargs` ask for them, see [`checkpoint_kwargs`]), no evaluation during
    training, no reporting. `kwargs` go to `cls` and override these."""
    settings = dict(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=max(1, max_steps // 10),
        lr_scheduler_type="linear",
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(1, max_steps // 10),
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return cls(**{**settings, **kwargs})


# --------------------------------------------------------------------------------------------------------------------
# resumable training runs
PROGRESS_NAME = "bench_progress.json"


def checkpoint_kwargs(every: int) -> dict:
    """Training-argument overrides that save a checkpoint every `every` optimizer steps (0: none), keeping the last two
    (a save interrupted while the older one is rotated away leaves the one before)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"--checkpoint_every must be an int >= 0 (0: no checkpoints), got {every!r}.")
    return {"save_strategy": "steps", "save_steps": every, "save_total_limit": 2} if every else {}


class _SaveProgress(transformers.TrainerCallback):
    """Writes, into each checkpoint folder once it is saved, the run's wall seconds so far and the learning curve's
    points: the mark that the checkpoint is complete and what a resumed run continues from."""

    def __init__(self, seconds_before: float, started: float, curve=None):
        self.seconds_before, self.started, self.curve = seconds_before, started, curve

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(
            args.output_dir, f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        )
        if os.path.isdir(folder):
            progress = {
                "step": state.global_step,
                "seconds": self.seconds_before + time.perf_counter() - self.started,
                "curve": None if self.curve is None else self.curve.points,
            }
            atomic_write_text(os.path.join(folder, PROGRESS_NAME), json.dumps(progress))


def last_resumable_checkpoint(output_dir: str) -> str | None:
    """The `checkpoint-N` folder of `output_dir` with the highest `N` that holds the progress [`train_resumably`]
    writes after the save (so a complete one), or None."""
    prefix = f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-"
    steps = []
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                if os.path.isfile(os.path.join(output_dir, name, PROGRESS_NAME)):
                    steps.append(int(name[len(prefix) :]))
    return os.path.join(output_dir, f"{prefix}{max(steps)}") if steps else None


def train_resumably(trainer: transformers.Trainer, curve=None) -> float:
    """`trainer.train()`, resumed from the last complete checkpoint of its output dir when there is one (a run killed
    mid-way and started again), and the run's wall seconds, those of the interrupted part included. With checkpoints
    on (see [`checkpoint_kwargs`]) each saved one records the seconds so far and `curve`'s points (an object with a
    `points` list, e.g. the learning curve, which a resumed run continues instead of measuring step 0 again); the
    checkpoints are removed once the run is done. Without checkpoints it is `trainer.train()` timed."""
    import shutil

    output_dir = trainer.args.output_dir
    resume = last_resumable_checkpoint(output_dir) if trainer.args.save_strategy != "no" else None
    seconds_before = 0.0
    if resume is not None:
        with open(os.path.join(resume, PROGRESS_NAME)) as f:
            progress = json.load(f)
        seconds_before = progress["seconds"]
        if curve is not None and progress["curve"] is not None:
            curve.points = progress["curve"]
            curve.resumed = True
        logger.info("resuming %s from step %d", output_dir, progress["step"])
    started = time.perf_counter()
    trainer.add_callback(_SaveProgress(seconds_before, started, curve))
    trainer.train(resume_from_checkpoint=resume)
    seconds = seconds_before + time.perf_counter() - started
    if trainer.args.save_strategy != "no":
        prefix = f"{transformers.trainer_utils.PREFIX_CHECKPOINT_DIR}-"
        for name in os.listdir(output_dir):
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    return seconds


def common_args(args: BenchArguments, name: str, cls: type[TrainingArguments] = TrainingArguments, **kwargs):
    """`cpu_training_args` of the run `name` (in `<work_dir>/<name>`) with the settings of `args`."""
    output_dir = os.path.join(args.work_dir, name)
    kwargs = {"per_device_eval_batch_size": 64, **kwargs}
    return cpu_training_args(output_dir, args.max_steps, args.batch_size, args.learning_rate, args.seed, cls, **kwargs)


# ------------------------------------------------------------------------------------------------------------------
# paired timing
def paired_medians(fn_a: Callable[[], object], fn_b: Callable[[], object], rounds: int) -> tuple[float, float, float]:
    """Median seconds of `fn_a` and `fn_b`, called alternately (a, b, b, a, ...) after two warm-up calls each, and
    the median of the per-round ratios a/b: each ratio compares two adjacent calls, so slow drifts of the machine
    cancel out."""
    for _ in range(2):
        fn_a(), fn_b()
    times_a, times_b = [], []
    for i in range(rounds):
        order = ((fn_a, times_a), (fn_b, times_b)) if i % 2 == 0 else ((fn_b, times_b), (fn_a, times_a))
        for fn, times in order:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(times_a, times_b, strict=True)]
    return statistics.median(times_a), statistics.median(times_b), statistics.median(ratios)


def forward_fn(model: torch.nn.Module, inputs: dict) -> Callable[[], None]:
    """A call of `model(**inputs)` without autograd, to time."""

    @torch.inference_mode()
    def run() -> None:
        model(**inputs)

    return run


# ------------------------------------------------------------------------------------------------------------------
# the record of the run
def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "hf_nas": hf_nas.__version__,
        "python": platform.python_version(),
    }


def environment() -> dict:
    """The flat record of the run (command line, commit), machine and versions that most result files start with."""
    v = versions()
    return {
        "command": command_line(),
        "commit": git_commit(),
        "device": "cpu",
        "num_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": v["torch"],
        "transformers": v["transformers"],
        "hf_nas": v["hf_nas"],
    }


def command_line() -> str:
    """The command that runs this script again, relative to the repository root."""
    return " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def git_commit() -> str:
    """The checked-out commit, marked when `hf_nas` or `scripts` have uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "hf_nas", "scripts"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def run_record() -> dict:
    """Command line, commit, machine (with CPU and thread counts) and versions of this run."""
    return {
        "command": command_line(),
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "versions": versions(),
    }


# ------------------------------------------------------------------------------------------------------------------
# targets and result files
def met(value: float | None, target: float, higher_is_better: bool = False) -> str:
    """Whether `value` meets `target`: at most (or, with `higher_is_better`, at least) the target."""
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "NOT met"


def ratio_target_row(label: str, value: float, target: float) -> str:
    """A markdown row `| label | value | <= target | met |` of a ratio with an upper bound."""
    return f"| {label} | {value:.3f} | <= {target} | {met(value, target)} |"


def write_results(output_dir: str, name: str, result: dict, markdown: str, indent: int = 2) -> None:
    """Write `<output_dir>/<name>.json` and `<output_dir>/<name>.md`, each atomically, then print the markdown."""
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text(os.path.join(output_dir, f"{name}.json"), json.dumps(result, indent=indent) + "\n")
    atomic_write_text(os.path.join(output_dir, f"{name}.md"), markdown)
    print(markdown)


# ------------------------------------------------------------------------------------------------------------------
# accuracy rows: paired intervals and resumable rows
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


def within(interval: dict, tolerance: float) -> str:
    """Whether a difference (subnet - reference, in points) is within `tolerance` below 0, read from its interval:
    met when the whole interval is, NOT met when none of it is, otherwise unresolved at this evaluation set's size."""
    if interval["low"] >= -tolerance:
        return "met"
    if interval["high"] < -tolerance:
        return "NOT met"
    side = "met" if interval["diff"] >= -tolerance else "missed"
    return f"unresolved (point estimate {side}; the interval spans the target)"
