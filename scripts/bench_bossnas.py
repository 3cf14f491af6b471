"""BossNAS benchmark on SST-2: block-wise training and rating against the sandwich supernet, written to
docs/benchmarks/bossnas.{json,md}.

Protocol (DESIGN.md; the splits, teacher and subnet selection of scripts/bench_supernet.py, whose teacher and one-pass
supernet it reads from `--supernet_work_dir`): every ranking and selection uses the validation split carved from the
SST-2 training rows; only the official dev set is reported. Rows:

- `subnets`: the rated subnets of the default space: `num_spread_subnets` spread over the MAC range (evenly spaced
  quantiles of a seeded pool) and `num_band_subnets` at about half the MACs (ratio in 0.45-0.55), where size alone
  does not rank them.
- `alone_<i>`: each subnet fine-tuned alone for `alone_steps` (the ground truth of the rankings): initialised from the
  importance-reordered teacher, with the teacher-first recipe's distillation from the teacher (bench_supernet's `kd`
  rows, shorter).
- `blockwise`: the supervised block-wise supernet (DNA-style; `num_blocks` blocks, `block_steps` steps, from the
  reordered teacher), then the block-wise rating of every subnet on the validation split.
- `ensemble`: the self-supervised ensemble-bootstrapping supernet (BossNAS; `ensemble_steps`, no labels, no teacher)
  and its rating (distance to each block's population center).
- `recoupled`: the block-wise supernet after `recouple_steps` end-to-end sandwich steps with the teacher.
- `sandwich`: the teacher-first sandwich recipe from the same reordered teacher, for the wall time of block-wise
  training + re-coupling (its steps from a short timing run, stopped at the budget).
- `<supernet>_accuracy`: validation and dev correctness of the rated subnets through each supernet (and through
  bench_supernet's one-pass supernet); `<supernet>_subnets`: candidates at 50% and 25% of the MACs.

Reported: the Kendall tau between each ranking (block-wise rating, ensemble rating, supernet validation accuracy,
MACs) and the dev accuracy of the subnets trained alone, with a 95% bootstrap interval over the subnets; and the dev
accuracy at ~50% and ~25% MACs after re-coupling vs the sandwich recipe at equal wall time (paired intervals).
Each finished row is written at once to `<work_dir>/rows/<name>.json` and reused, so an interrupted run continues.

    python scripts/bench_bossnas.py --supernet_work_dir /work/bench/supernet   # everything, then the report
    python scripts/bench_bossnas.py --rows alone                               # only the stand-alone rows
    python scripts/bench_bossnas.py --rows report                              # the report from finished rows
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
import transformers
from bench_common import BenchArguments, parse_args, run_record, setup_logging, write_results
from bench_supernet import RECIPE, Bench, accuracy, paired_interval, train_args
from scipy.stats import kendalltau
from transformers import TrainerCallback, set_seed

from hf_nas import ElasticBertForSequenceClassification, SubnetConfig
from hf_nas.blockwise import (
    BlockwiseTrainer,
    BlockwiseTrainingArguments,
    EnsembleBlockRater,
    SupervisedBlockRater,
    build_batches,
    recouple,
)
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments, get_sampler
from hf_nas.utils import checkpoint_name

logger = logging.getLogger("hf_nas.bench_bossnas")
POINTS = (0.5, 0.25)
SUPERNETS = ("recoupled", "sandwich", "blockwise", "one_pass")
NAMES = {
    "blockwise_rating": "block-wise rating (supervised, DNA-style)",
    "ensemble_rating": "block-wise rating (ensemble bootstrapping, BossNAS)",
    "blockwise": "block-wise supernet accuracy, before re-coupling",
    "recoupled": "block-wise + re-coupled supernet accuracy",
    "sandwich": "sandwich supernet accuracy (equal wall time)",
    "one_pass": "sandwich supernet accuracy (bench_supernet's one pass)",
    "macs": "MACs alone (reference: bigger is better)",
}


@dataclass
class BossNASBenchArguments(BenchArguments):
    work_dir: str = field(default="/tmp/hf_nas_bench_bossnas", metadata={"help": "Models and finished rows."})
    supernet_work_dir: str = field(
        default="/tmp/hf_nas_bench_supernet",
        metadata={"help": "bench_supernet.py's work_dir: its models/teacher and models/one_pass are read."},
    )
    validation_samples: int = field(
        default=1000, metadata={"help": "Training rows held out (disjoint from the subset) to rank and select on."}
    )
    mac_sequence_length: int = field(default=128, metadata={"help": "Tokens per sequence of the MAC ratios."})
    bootstrap_samples: int = 2000
    num_blocks: int = field(default=3, metadata={"help": "Blocks of the 6-layer encoder (3 blocks of 2 layers)."})
    block_steps: int = field(default=300, metadata={"help": "Steps of supervised block-wise training."})
    block_learning_rate: float = field(default=1e-4, metadata={"help": "Learning rate of block-wise training."})
    ensemble_steps: int = field(default=300, metadata={"help": "Steps of ensemble-bootstrapping training."})
    recouple_steps: int = field(default=100, metadata={"help": "Sandwich steps of the re-coupling phase."})
    alone_steps: int = field(default=100, metadata={"help": "Steps of each subnet's stand-alone fine-tuning."})
    num_spread_subnets: int = field(default=10, metadata={"help": "Rated subnets spread over the MAC range."})
    num_band_subnets: int = field(default=8, metadata={"help": "Rated subnets at 45-55% of the MACs."})
    rating_examples: int = field(default=512, metadata={"help": "Validation rows the block-wise ratings use."})
    rows: str = field(
        default="all",
        metadata={
            "help": "Comma-separated groups: subnets, alone, blockwise, ensemble, recouple, sandwich, accuracy, "
            "points, report, all."
        },
    )


class BossBench(Bench):
    """bench_supernet's Bench (splits, reordered supernets, scores, candidates and selection) with the teacher of a
    finished supernet benchmark."""

    def __init__(self, args: BossNASBenchArguments):
        super().__init__(args)
        for path in (self.teacher_dir(), self.one_pass_dir()):
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"{path} is missing: run scripts/bench_supernet.py first (make bench-supernet), or point "
                    "--supernet_work_dir at its work_dir."
                )

    def teacher_dir(self) -> str:
        return os.path.join(self.args.supernet_work_dir, "models", "teacher")

    def one_pass_dir(self) -> str:
        return os.path.join(self.args.supernet_work_dir, "models", "one_pass")

    def model_dir(self, name: str) -> str:
        return os.path.join(self.models, name)

    def saved(self, name: str):
        return ElasticBertForSequenceClassification.from_pretrained(self.model_dir(name)).eval()

    # -- the rated subnets -------------------------------------------------------------------------------------------
    def subnet_rows(self) -> list[dict]:
        def run():
            model = self.initial_supernet(self.teacher_dir())
            space = model.search_space
            rng = random.Random(f"{self.args.seed}-bossnas-subnets")
            pool = {}
            for i in range(600):
                subnet = space.sample(generator=rng, uniform=i % 2 == 0)
                pool[json.dumps(subnet.to_dict())] = self.mac_ratio(model, subnet)
            by_macs = sorted(pool, key=pool.get)
            n = self.args.num_spread_subnets
            spread = [by_macs[int((i + 0.5) * len(by_macs) / n)] for i in range(n)]
            band = [k for k in pool if 0.45 <= pool[k] <= 0.55 and k not in spread]
            band = random.Random(f"{self.args.seed}-bossnas-band").sample(
                band, min(self.args.num_band_subnets, len(band))
            )
            return {
                "subnets": [
                    {"subnet": json.loads(k), "mac_ratio": pool[k], "group": group}
                    for group, keys in (("spread", spread), ("band", band))
                    for k in keys
                ]
            }

        return self.rows.compute("subnets", run)["subnets"]

    def rated(self) -> list[SubnetConfig]:
        return [SubnetConfig.from_dict(e["subnet"]) for e in self.subnet_rows()]

    # -- ground truth: each subnet fine-tuned alone --------------------------------------------------------------------
    def alone_rows(self) -> None:
        for i, subnet in enumerate(self.rated()):
            self.rows.compute(f"alone_{i}", lambda subnet=subnet, i=i: self.train_alone_short(subnet, f"alone_{i}"))

    def train_alone_short(self, subnet: SubnetConfig, name: str) -> dict:
        model = self.initial_supernet(self.teacher_dir())
        recipe = {
            k: v for k, v in RECIPE.items() if k not in ("sampler", "num_random_subnets", "uniform_subnet_probability")
        }
        recipe["protect_largest_gradient"] = False  # one subnet: nothing to protect it from
        set_seed(self.args.seed)
        start = time.perf_counter()
        SupernetTrainer(
            model=model,
            teacher_model=self.load_teacher(),
            sampler=get_sampler("fixed", model.search_space, subnets=[subnet]),
            args=train_args(
                self.args,
                name,
                self.args.alone_steps,
                SupernetTrainingArguments,
                eval_subnets="",
                distillation="teacher",
                sampler="fixed",
                **recipe,
            ),  # fmt: skip
            train_dataset=self.splits["train"],
            data_collator=self.collator,
        ).train()
        seconds = time.perf_counter() - start
        with model.subnet(subnet):
            return {"subnet": subnet.to_dict(), "train_seconds": seconds, **self.scores(model)}

    # -- block-wise training and rating ------------------------------------------------------------------------------
    def rating_batches(self) -> list[dict]:
        validation = self.splits["validation"]
        rows = validation.select(range(min(self.args.rating_examples, len(validation))))
        return build_batches(rows, batch_size=64, tokenizer=self.tokenizer)

    def blockwise_args(self, name: str, steps: int, **kwargs) -> BlockwiseTrainingArguments:
        args = dataclasses.replace(self.args, learning_rate=self.args.block_learning_rate)
        return train_args(
            args, name, steps, BlockwiseTrainingArguments, num_blocks=self.args.num_blocks, num_random_subnets=2,
            uniform_subnet_probability=RECIPE["uniform_subnet_probability"], **kwargs,
        )  # fmt: skip

    def blockwise_rows(self) -> dict:
        def run():
            model = self.initial_supernet(self.teacher_dir())
            teacher = self.load_teacher()
            set_seed(self.args.seed)
            start = time.perf_counter()
            trainer = BlockwiseTrainer(
                model=model,
                teacher_model=teacher,
                args=self.blockwise_args("blockwise", self.args.block_steps, blockwise_mode="supervised"),
                train_dataset=self.splits["train"],
                data_collator=self.collator,
            )
            trainer.train()
            seconds = time.perf_counter() - start
            trainer.save_supernet(self.model_dir("blockwise"))
            start = time.perf_counter()
            rater = SupervisedBlockRater(self.rating_batches(), teacher=teacher, split=trainer.split)
            ratings = [rater.block_losses(model.eval(), s) for s in self.rated()]
            return {
                "train_seconds": seconds,
                "rating_seconds": time.perf_counter() - start,
                "block_losses": ratings,
                "log": _losses(trainer),
            }

        row = self.rows.compute("blockwise", run)
        if not os.path.isdir(self.model_dir("blockwise")):
            raise RuntimeError(f"The blockwise row exists but {self.model_dir('blockwise')} is gone: delete the row.")
        return row

    def ensemble_rows(self) -> dict:
        def run():
            model = self.initial_supernet(self.teacher_dir())
            set_seed(self.args.seed)
            start = time.perf_counter()
            trainer = BlockwiseTrainer(
                model=model,
                args=self.blockwise_args("ensemble", self.args.ensemble_steps, blockwise_mode="ensemble"),
                train_dataset=self.splits["train"],
                data_collator=self.collator,
                processing_class=self.tokenizer,  # its mask token makes the views
            )
            trainer.train()
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            rater = EnsembleBlockRater.from_model(
                trainer.blockwise_model.eval(), self.rating_batches(), seed=self.args.seed
            )
            ratings = [rater.block_losses(model.eval(), s) for s in self.rated()]
            return {
                "train_seconds": seconds,
                "rating_seconds": time.perf_counter() - start,
                "block_losses": ratings,
                "log": _losses(trainer),
            }

        return self.rows.compute("ensemble", run)

    def recouple_rows(self) -> dict:
        self.blockwise_rows()

        def run():
            model = self.saved("blockwise").train()
            recipe = {**RECIPE, "distillation": "teacher"}
            set_seed(self.args.seed)
            start = time.perf_counter()
            recouple(
                model,
                train_args(
                    self.args,
                    "recoupled",
                    self.args.recouple_steps,
                    SupernetTrainingArguments,
                    eval_subnets="",
                    **recipe,
                ),
                self.splits["train"],
                teacher_model=self.load_teacher(),
                data_collator=self.collator,
            )
            seconds = time.perf_counter() - start
            model.save_pretrained(self.model_dir("recoupled"))
            return {"train_seconds": seconds, "steps": self.args.recouple_steps}

        return self.rows.compute("recoupled", run)

    def sandwich_rows(self) -> dict:
        budget = self.blockwise_rows()["train_seconds"] + self.recouple_rows()["train_seconds"]

        def run():
            recipe = {**RECIPE, "distillation": "teacher"}
            teacher = self.load_teacher()

            def trainer_for(model, name: str, steps: int, callbacks=None):
                return SupernetTrainer(
                    model=model,
                    teacher_model=teacher,
                    args=train_args(self.args, name, steps, SupernetTrainingArguments, eval_subnets="", **recipe),
                    train_dataset=self.splits["train"],
                    data_collator=self.collator,
                    callbacks=callbacks,
                )

            timer = StepTimes()
            trainer_for(self.initial_supernet(self.teacher_dir()), "sandwich_timing", 8, [timer]).train()
            seconds_per_step = timer.seconds_per_step()
            steps = max(1, int(budget / seconds_per_step))
            model = self.initial_supernet(self.teacher_dir())
            set_seed(self.args.seed)
            start = time.perf_counter()
            trainer = trainer_for(model, "sandwich", steps, [StopAtWallTime(budget)])
            trainer.train()
            seconds = time.perf_counter() - start
            model.save_pretrained(self.model_dir("sandwich"))
            return {
                "train_seconds": seconds,
                "budget_seconds": budget,
                "planned_steps": steps,
                "steps": trainer.state.global_step,
                "timing_seconds_per_step": seconds_per_step,
            }

        return self.rows.compute("sandwich", run)

    # -- accuracies --------------------------------------------------------------------------------------------------
    def supernet(self, name: str):
        if name == "one_pass":
            return ElasticBertForSequenceClassification.from_pretrained(self.one_pass_dir()).eval()
        return self.saved(name)

    def accuracy_rows(self) -> None:
        for name in SUPERNETS:

            def run(name=name):
                model = self.supernet(name)
                out = []
                for subnet in self.rated():
                    with model.subnet(subnet):
                        out.append(self.scores(model))
                return {"scores": out}

            self.rows.compute(f"{name}_accuracy", run)

    def point_rows(self) -> None:
        for name in ("recoupled", "sandwich", "blockwise"):
            self.evaluate_subnets(name, self.supernet(name), POINTS, per_point=6)


class StepTimes(TrainerCallback):
    """Records when each optimizer step ends; `seconds_per_step` is the median gap after the first step (which pays
    the start-up)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        gaps = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        if not gaps:
            raise RuntimeError("The timing run made fewer than 2 steps.")
        return float(np.median(gaps))


class StopAtWallTime(TrainerCallback):
    """Stops training once `seconds` of wall time have passed since it began."""

    def __init__(self, seconds: float):
        self.seconds, self.deadline = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.deadline = time.perf_counter() + self.seconds

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() >= self.deadline:
            control.should_training_stop = True


def _losses(trainer) -> list[dict]:
    return [{k: v for k, v in log.items() if k.startswith("loss") or k == "step"} for log in trainer.state.log_history]


# ------------------------------------------------------------------------------------------------------------------
# the report
def tau_with_interval(scores: list[float], truth: list[float], samples: int, seed: int) -> dict:
    """Kendall's tau-b of `scores` against `truth` and its 95% bootstrap interval over the subnets."""
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    tau = float(kendalltau(scores, truth).statistic)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(samples):
        idx = rng.integers(0, len(scores), len(scores))
        value = kendalltau(scores[idx], truth[idx]).statistic
        if np.isfinite(value):
            boot.append(value)
    low, high = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) if boot else (float("nan"),) * 2
    return {"tau": tau, "low": low, "high": high, "n": len(scores)}


def report(bench: BossBench, args: BossNASBenchArguments) -> dict:
    rows = bench.rows
    entries = bench.subnet_rows()
    alone = [rows.get(f"alone_{i}") for i in range(len(entries))]
    if any(a is None for a in alone):
        raise RuntimeError("Nothing to report: the alone_* rows are not all finished (run --rows alone).")
    truth = [accuracy(a["dev"]) for a in alone]
    rankings: dict[str, list[float]] = {"macs": [e["mac_ratio"] for e in entries]}  # higher ranks higher
    ratings: dict[str, list[float]] = {}  # lower is better: ranked by minus the rating
    for mode in ("blockwise", "ensemble"):
        row = rows.get(mode)
        if row is not None:
            ratings[f"{mode}_rating"] = [float(sum(losses)) for losses in row["block_losses"]]
            rankings[f"{mode}_rating"] = [-v for v in ratings[f"{mode}_rating"]]
    for name in SUPERNETS:
        row = rows.get(f"{name}_accuracy")
        if row is not None:
            rankings[name] = [accuracy(s["validation"]) for s in row["scores"]]
    groups = {"all": list(range(len(entries))), "band": [i for i, e in enumerate(entries) if e["group"] == "band"]}
    taus = {
        name: {
            group: tau_with_interval(
                [values[i] for i in idx], [truth[i] for i in idx], args.bootstrap_samples, args.seed
            )
            for group, idx in groups.items()
            if len(idx) >= 3
        }
        for name, values in rankings.items()
    }
    teacher_row = bench.teacher_dir()
    teacher_scores = rows.compute("teacher_scores", lambda: bench.scores(bench.load_teacher()))
    points = []
    for point in POINTS:
        entry: dict = {"point": point}
        for name in ("recoupled", "sandwich", "blockwise"):
            evaluated = rows.get(f"{name}_subnets")
            if evaluated is None:
                continue
            key, chosen = bench.select(evaluated["subnets"], point)
            entry[name] = {
                "subnet": json.loads(key),
                "mac_ratio": chosen["mac_ratio"],
                "validation": accuracy(chosen["validation"]),
                "dev": accuracy(chosen["dev"]),
                "vs_teacher": paired_interval(chosen["dev"], teacher_scores["dev"], args.bootstrap_samples, args.seed),
                "_correct": chosen["dev"],
            }
        if "recoupled" in entry and "sandwich" in entry:
            entry["recoupled_minus_sandwich"] = paired_interval(
                entry["recoupled"]["_correct"], entry["sandwich"]["_correct"], args.bootstrap_samples, args.seed
            )
        for name in ("recoupled", "sandwich", "blockwise"):
            entry.get(name, {}).pop("_correct", None)
        points.append(entry)
    seconds = {
        name: (rows.get(name) or {}).get("train_seconds")
        for name in ("blockwise", "ensemble", "recoupled", "sandwich")
    }
    return {
        **run_record(),
        "model": checkpoint_name(bench.path),
        "teacher": os.path.join("<supernet_work_dir>", os.path.relpath(teacher_row, args.supernet_work_dir)),
        "settings": {
            k: getattr(args, k)
            for k in (
                "train_samples",
                "validation_samples",
                "dev_samples",
                "batch_size",
                "max_seq_length",
                "learning_rate",
                "seed",
                "num_blocks",
                "block_steps",
                "block_learning_rate",
                "ensemble_steps",
                "recouple_steps",
                "alone_steps",
                "rating_examples",
                "bootstrap_samples",
                "mac_sequence_length",
            )
        },  # fmt: skip
        "dev_samples": len(bench.splits["dev"]),
        "teacher_dev": accuracy(teacher_scores["dev"]),
        "subnets": [
            {
                **e,
                "alone_dev": truth[i],
                "alone_seconds": alone[i]["train_seconds"],
                **{name: values[i] for name, values in rankings.items() if name != "macs" and name not in ratings},
                **{name: values[i] for name, values in ratings.items()},
            }
            for i, e in enumerate(entries)
        ],
        "kendall_tau": taus,
        "points": points,
        "seconds": seconds,
        "sandwich": rows.get("sandwich"),
    }


def render_markdown(r: dict) -> str:
    s = r["settings"]

    def iv(x: dict) -> str:
        return f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"

    def tau(x: dict | None) -> str:
        return "-" if x is None else f"{x['tau']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}] (n={x['n']})"

    lines = [
        "# BossNAS benchmark: block-wise training and rating (SST-2)",
        "",
        f"Generated by `{r['command']}` at commit `{r['commit']}` on {r['machine']}; torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}, hf-nas {r['versions']['hf_nas']}.",
        "",
        f"Model {r['model']}; teacher `{r['teacher']}` (all-MiniLM-L6-v2 fine-tuned alone, dev "
        f"{r['teacher_dev']:.2f}%). Splits as in the supernet benchmark: {s['train_samples']} seeded training rows, "
        f"{s['validation_samples']} further training rows as the validation split that ranks and selects, the "
        f"official dev set ({r['dev_samples']} rows) for every reported number. Batch {s['batch_size']}, max "
        f"{s['max_seq_length']} tokens, seed {s['seed']}; one seed. Intervals: 95% bootstrap ({s['bootstrap_samples']} "
        "resamples) over the subnets (Kendall tau) or paired over the dev examples (accuracies). All settings were "
        "fixed before the run.",
        "",
        f"- **Ground truth**: each rated subnet fine-tuned alone for {s['alone_steps']} steps from the "
        "importance-reordered teacher, with the teacher-first recipe's distillation from the teacher; dev accuracy.",
        f"- **Block-wise (supervised, DNA-style)**: {s['num_blocks']} blocks of 2 layers, {s['block_steps']} steps "
        f"(lr {s['block_learning_rate']}), sandwich candidates per block (largest, smallest, 2 random), each block "
        "mapping the teacher's hidden state at its input to the teacher's at its output; started from the reordered "
        f"teacher. Rating: the sum of the blocks' losses on {s['rating_examples']} validation rows (lower is better).",
        f"- **Ensemble bootstrapping (BossNAS)**: {s['ensemble_steps']} steps without labels or teacher (EMA target, "
        "the ensemble of the step's candidates as the target, token-masking views); rating: the distance of each "
        "block candidate's prediction to its block's population center.",
        f"- **Re-coupled**: the block-wise supernet after {s['recouple_steps']} end-to-end sandwich steps with the "
        "teacher-first recipe. **Sandwich (equal wall time)**: the teacher-first sandwich recipe from the same "
        "reordered teacher for the wall time of block-wise training + re-coupling. **One pass**: the supernet "
        "benchmark's default supernet, as trained there.",
        "",
        "## Ranking the subnets: Kendall tau against the subnets trained alone",
        "",
        "Each ranking (higher is better: minus the rating, the validation accuracy through the supernet, or the "
        "MACs) against the dev accuracy of the same subnets trained alone. `all`: every rated subnet (spread over the "
        "MACs, where size alone ranks well); `band`: the subnets at 45-55% of the MACs.",
        "",
        "| ranking | all | band (~50% MACs) |",
        "|---|---|---|",
    ]
    for name, t in r["kendall_tau"].items():
        lines.append(f"| {NAMES.get(name, name)} | {tau(t.get('all'))} | {tau(t.get('band'))} |")
    lines += [
        "",
        "## Subnets at ~50% and ~25% MACs: re-coupled block-wise supernet vs sandwich at equal wall time",
        "",
        "The subnet of best validation accuracy among uniform candidates with MACs in (80%, 100%] of the point; dev "
        "accuracy.",
        "",
        "| MACs | re-coupled | sandwich (equal time) | re-coupled - sandwich | block-wise before re-coupling | "
        "re-coupled vs teacher |",
        "|---|---|---|---|---|---|",
    ]
    for p in r["points"]:
        rc, sw, bw = p.get("recoupled"), p.get("sandwich"), p.get("blockwise")
        cells = [
            f"{100 * p['point']:.0f}%",
            f"{rc['dev']:.2f}% ({100 * rc['mac_ratio']:.0f}%)" if rc else "-",
            f"{sw['dev']:.2f}% ({100 * sw['mac_ratio']:.0f}%)" if sw else "-",
            iv(p["recoupled_minus_sandwich"]) if "recoupled_minus_sandwich" in p else "-",
            f"{bw['dev']:.2f}%" if bw else "-",
            iv(rc["vs_teacher"]) if rc else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    sec, sw = r["seconds"], r.get("sandwich") or {}

    def minutes(x):
        return "-" if x is None else f"{x / 60:.1f} min"

    lines += [
        "",
        "## Compute",
        "",
        "Wall times of single runs in one process on a shared 2-core CPU (indicative only). Block-wise training ran "
        "all blocks in one process; each block can run in a process of its own, which divides its wall time.",
        "",
        f"- Block-wise training: {minutes(sec.get('blockwise'))}; re-coupling: {minutes(sec.get('recoupled'))}; "
        f"sandwich at equal wall time: {minutes(sec.get('sandwich'))} ({sw.get('steps', '-')} steps of the "
        f"{sw.get('planned_steps', '-')} planned from the median step time of an 8-step timing run); ensemble bootstrapping: "
        f"{minutes(sec.get('ensemble'))}.",
        f"- Stand-alone fine-tuning of the {len(r['subnets'])} rated subnets: "
        f"{minutes(sum(e['alone_seconds'] for e in r['subnets']))}.",
        "",
        "## The rated subnets",
        "",
        "| # | group | MACs | layers | heads | FFN | hidden | alone dev | block-wise rating | ensemble rating | "
        "re-coupled val | sandwich val | one pass val |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(e, key, fmt):
        return fmt.format(e[key]) if key in e else "-"

    for i, e in enumerate(r["subnets"]):
        sub = e["subnet"]
        lines.append(
            f"| {i} | {e['group']} | {100 * e['mac_ratio']:.0f}% | {sub['layers']} | {sub['num_attention_heads']} | "
            f"{sub['intermediate_size']} | {sub['hidden_size']} | {e['alone_dev']:.2f}% | "
            f"{cell(e, 'blockwise_rating', '{:.4f}')} | {cell(e, 'ensemble_rating', '{:.4f}')} | "
            f"{cell(e, 'recoupled', '{:.2f}%')} | {cell(e, 'sandwich', '{:.2f}%')} | {cell(e, 'one_pass', '{:.2f}%')} |"
        )
    lines += ["", "Ratings: the sum of the blocks' losses (lower is better); accuracies on the validation split.", ""]
    return "\n".join(lines) + "\n"


GROUPS = ("subnets", "alone", "blockwise", "ensemble", "recouple", "sandwich", "accuracy", "points")


def main() -> None:
    args = parse_args(BossNASBenchArguments)
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    setup_logging()
    torch.manual_seed(args.seed)
    groups = {g.strip() for g in args.rows.split(",")}
    unknown = groups - set(GROUPS) - {"report", "all"}
    if unknown:
        raise ValueError(f"Unknown --rows {sorted(unknown)}; allowed: {', '.join(GROUPS)}, report, all.")
    if "all" in groups:
        groups = {*GROUPS, "report"}
    bench = BossBench(args)
    steps = {
        "subnets": bench.subnet_rows,
        "alone": bench.alone_rows,
        "blockwise": bench.blockwise_rows,
        "ensemble": bench.ensemble_rows,
        "recouple": bench.recouple_rows,
        "sandwich": bench.sandwich_rows,
        "accuracy": bench.accuracy_rows,
        "points": bench.point_rows,
    }
    for name in GROUPS:
        if name in groups:
            logger.info("== %s", name)
            steps[name]()
    if "report" in groups:
        result = report(bench, args)
        write_results(args.output_dir, "bossnas", result, render_markdown(result), indent=1)


if __name__ == "__main__":
    main()
