"""Mixture-of-Supernets benchmark on SST-2, written to docs/benchmarks/mos.{json,md}.

The supernet-quality protocol of `scripts/bench_supernet.py` (DESIGN.md), reusing its data splits, teacher, recipe,
candidate subnets and rows: every MAC point's subnet is *selected* on a validation split carved from the training rows
and *reported* on the official dev set, every difference with a paired 95% bootstrap interval over the dev examples.

- `standard`: the teacher-first supernet (plain weight sharing), trained here with the code of the MoS runs:
  initialised from the supernet benchmark's fine-tuned teacher, importance-reordered on it, `max_steps` sandwich steps
  with distillation from that teacher (`--distillation chain`: the teacher teaches the largest subnet, the largest the
  others, for the standard and every MoS supernet alike; the trained-alone baselines keep the teacher).
- `mos_<mode>`: the same recipe, data order and steps with Mixture-of-Supernets added before training
  (`--num_experts` experts per FFN linear layer, routers of width `--router_hidden_size`): equal steps.
- `mos_<mode>_time`: the same at equal wall time: `max_steps x (standard step time / MoS step time)` steps, the step
  times measured side by side in one fresh process.
- `alone`: each architecture the standard supernet selected, trained alone for `max_steps` steps with the same teacher,
  losses and initial weights: the supernet benchmark's `kd_*` row of that architecture, else trained here.
- `--recipe_levers`: a JSON object of training settings that replace the recipe's for the standard and every MoS
  supernet alike (e.g. the targeted sampler, which trains a subnet at each MAC target every step); the report names
  them. A work dir holds one recipe: rows trained with another are refused, not reused.
- `measure`: the training step time (teacher forward + sampled subnets + optimizer step) and the peak-memory increase
  of each variant in fresh processes, the eval-mode forward of a subnet (mixture cached) and the cost of a subnet
  change.

The issue's target: at 50% and 25% MACs MoS closes at least half of the gap between the standard supernet's subnet
and the same architecture trained alone, for at most 1.3x the training time. Per example, `mos - (standard + alone) / 2`
has mean >= 0 exactly when at least half the gap is closed; its paired interval says met, NOT met, or unresolved.

Every finished row is written at once to `<work_dir>/rows/<name>.json` and reused by a rerun, so a stopped run
continues (a training run stopped midway starts again); `--rows` runs a subset. The supernet benchmark's work dir is
only read (its teacher is trained there if missing).

    python scripts/bench_mos.py --supernet_work_dir /work/bench/supernet --work_dir /work/bench/mos
    python scripts/bench_mos.py ... --rows report            # only assemble the report from finished rows
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import datasets
import torch
import transformers
from bench_common import BENCHMARKS_DIR, ROOT, paired_medians, parse_args, run_record, setup_logging, write_results
from bench_supernet import (
    MAC_POINTS,
    RECIPE,
    Bench,
    Rows,
    SupernetBenchArguments,
    accuracy,
    paired_interval,
    peak_rss_bytes,
    reset_peak_rss,
    train_args,
)
from transformers import set_seed

from hf_nas import SubnetConfig
from hf_nas.mixture import MixtureConfig
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import checkpoint_name

logger = logging.getLogger("hf_nas.bench_mos")
STANDARD = "standard"  # the rows of the plain supernet, trained here with the same code as the MoS runs
TARGET_POINTS = (0.5, 0.25)
TARGETS = {"gap_closed_fraction": 0.5, "train_time_ratio": 1.3}
GROUPS = ("main", "baselines", "measure", "time", "report")


@dataclass
class MosBenchArguments(SupernetBenchArguments):
    work_dir: str = field(default="/tmp/hf_nas_bench_mos", metadata={"help": "MoS models, runs and finished rows."})
    supernet_work_dir: str = field(
        default="/tmp/hf_nas_bench_supernet",
        metadata={
            "help": "The supernet benchmark's work dir: its fine-tuned teacher (models/teacher, trained there if "
            "missing) and its trained-alone rows (rows/kd_*.json) are read from there."
        },
    )
    supernet_max_steps: int = field(
        default=300,
        metadata={
            "help": "The optimizer steps of the supernet benchmark's runs in --supernet_work_dir: its trained-alone "
            "rows are reused only when --max_steps equals it; otherwise each architecture is trained alone here, for "
            "--max_steps."
        },
    )
    modes: str = field(default="layer,neuron", metadata={"help": "Comma-separated MoS modes: layer, neuron."})
    num_experts: int = field(default=2, metadata={"help": "Experts per linear layer."})
    router_hidden_size: int = field(default=128, metadata={"help": "Hidden width of each router."})
    target_modules: str = field(default="ffn", metadata={"help": "Linear layers with experts: ffn, attention."})
    router_init_std: float = field(default=0.02, metadata={"help": "Std of the routers' output weights at init."})
    expert_init_noise: float = field(
        default=0.0, metadata={"help": "Zero-mean noise on the experts at init (standard deviations of the weight)."}
    )
    router_learning_rate: float | None = field(
        default=None, metadata={"help": "The routers' learning rate (default: --learning_rate)."}
    )
    router_init: str = field(
        default="random", metadata={"help": "How the routers start: random (near uniform) or size (by subnet size)."}
    )
    distillation: str = field(
        default="teacher",
        metadata={
            "help": "How the standard and the MoS supernets distill: teacher (every subnet learns from the fixed "
            "teacher) or chain (the teacher teaches the largest subnet, the largest the others). The trained-alone "
            "baselines always learn from the teacher. Run a new value in its own --work_dir."
        },
    )
    recipe_levers: str | None = field(
        default=None,
        metadata={
            "help": "A JSON object of `SupernetTrainingArguments` that replace the recipe's for the standard and every "
            'MoS supernet alike, e.g. \'{"sampler": "targeted", "sampler_mac_targets": "0.5,0.25"}\' (run it '
            "in its own --work_dir: finished rows of another recipe are refused)."
        },
    )
    report_name: str = field(
        default="mos",
        metadata={
            "help": "The report's file name in --output_dir; a run with other MoS settings (in its own --work_dir) "
            "gets its own report beside the published one."
        },
    )
    rows: str = field(
        default="all",
        metadata={"help": "Comma-separated groups to run: main, baselines, measure, time, report, all."},
    )

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if not self.report_name or os.sep in self.report_name or self.report_name.startswith("."):
            raise ValueError(f"--report_name must be a plain file name without a folder, got {self.report_name!r}.")
        for mode in self.mode_list:
            MixtureConfig(
                mode=mode,
                num_experts=self.num_experts,
                router_hidden_size=self.router_hidden_size,
                router_init=self.router_init,
            )
        if "off" in self.mode_list or not self.mode_list:
            raise ValueError(f"--modes must name MoS modes (layer, neuron), got {self.modes!r}.")
        if self.distillation not in ("teacher", "chain"):
            raise ValueError(f"--distillation must be 'teacher' or 'chain', got {self.distillation!r}.")
        SupernetTrainingArguments("o", **self.recipe())  # bad values fail here

    def levers(self) -> dict:
        """`--recipe_levers` parsed: the recipe settings this run changes (empty by default)."""
        if self.recipe_levers is None:
            return {}
        try:
            levers = json.loads(self.recipe_levers)
        except json.JSONDecodeError as error:
            raise ValueError(f"--recipe_levers must be a JSON object, got {self.recipe_levers!r}: {error}.") from None
        if not isinstance(levers, dict):
            raise ValueError(f"--recipe_levers must be a JSON object, got {self.recipe_levers!r}.")
        names = {f.name for f in dataclasses.fields(SupernetTrainingArguments)}
        owned = {"distillation", "mixture_of_supernets"} | {n for n in names if n.startswith("mixture_")}
        unknown = sorted(k for k in levers if k not in names or k in owned)
        if unknown:
            raise ValueError(
                f"--recipe_levers: {unknown} are not recipe settings this benchmark lets you change; allowed: "
                "fields of SupernetTrainingArguments other than the distillation and the mixture (the MoS options "
                "have their own flags), e.g. sampler, sampler_mac_targets, num_random_subnets."
            )
        return levers

    def recipe(self) -> dict:
        """The training recipe of the standard and the MoS supernets: the supernet benchmark's, with the levers."""
        return {**RECIPE, **self.training_levers()}

    def training_levers(self) -> dict:
        """The levers and the distillation: what the standard and every MoS supernet change in the recipe."""
        return {**self.levers(), "distillation": self.distillation}

    @property
    def mode_list(self) -> list[str]:
        return [m.strip() for m in self.modes.split(",") if m.strip()]

    def supernet_args(self) -> SupernetBenchArguments:
        """The supernet benchmark's arguments: the same data, steps and settings, its own work dir."""
        names = {f.name for f in dataclasses.fields(SupernetBenchArguments)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        return SupernetBenchArguments(
            **{
                **values,
                "work_dir": self.supernet_work_dir,
                "max_steps": self.supernet_max_steps,
                "rows": "all",
                "measure": None,
            }
        )


DISTILLATION_WORDS = {
    "teacher": "distillation from the teacher",
    "chain": "chained distillation (the teacher teaches the largest subnet, the largest the others)",
}


def mixture_levers(args: MosBenchArguments, mode: str) -> dict:
    """The `SupernetTrainingArguments` that add the mixture (none for the standard supernet)."""
    if mode == "standard":
        return {}
    return {
        "mixture_of_supernets": mode,
        "mixture_num_experts": args.num_experts,
        "mixture_router_hidden_size": args.router_hidden_size,
        "mixture_target_modules": args.target_modules,
        "mixture_router_init_std": args.router_init_std,
        "mixture_expert_init_noise": args.expert_init_noise,
        **({} if args.router_init == "random" else {"mixture_router_init": args.router_init}),
        **({} if args.router_learning_rate is None else {"mixture_router_learning_rate": args.router_learning_rate}),
    }


class MosBench(Bench):
    """The supernet benchmark's machinery on the MoS work dir: same data and teacher, its own rows and models."""

    def __init__(self, args: MosBenchArguments, supernet: Bench):
        self.args = args
        self.supernet = supernet
        self.path, self.tokenizer, self.splits = supernet.path, supernet.tokenizer, supernet.splits
        self.collator = supernet.collator
        self.rows = Rows(args.work_dir)
        self.models = os.path.join(args.work_dir, "models")

    def teacher_dir(self) -> str:
        return self.supernet.teacher_dir()

    def check_recipe(self) -> None:
        """Refuse a work dir whose finished supernets were trained with another recipe: their rows would be reused."""
        recipe = self.args.recipe()
        names = [STANDARD, *(f"mos_{m}" for m in self.args.mode_list), *(f"mos_{m}_time" for m in self.args.mode_list)]
        for name in names:
            trained = self.rows.get(f"{name}_trained")
            if trained is None:
                continue
            differ = sorted(k for k, v in recipe.items() if trained.get("recipe", {}).get(k) != v)
            if differ:
                raise ValueError(
                    f"{self.args.work_dir} holds the supernet {name!r} trained with another recipe (it differs in "
                    f"{differ}): give this recipe its own --work_dir, or remove that folder's rows."
                )

    # -- the standard supernet and its baselines --------------------------------------------------------------------
    def standard(self) -> dict:
        """The standard supernet's evaluated subnets: the teacher-first recipe without a mixture, trained here (the
        supernet benchmark's own run may be of an older commit), from the supernet benchmark's teacher."""
        evaluated = self.rows.get(f"{STANDARD}_subnets")
        if evaluated is None:
            self.supernet.teacher()  # trained there if missing
            model, _ = self.train_supernet(STANDARD, self.args.max_steps, **self.args.training_levers())
            evaluated = {"subnets": self.evaluate_subnets(STANDARD, model, MAC_POINTS, cloud=self.args.cloud_size)}
        return evaluated["subnets"]

    def baselines(self) -> dict[str, dict]:
        """The trained-alone rows by architecture: those trained here, and the supernet benchmark's when they were
        trained for as many steps as this benchmark's runs."""
        reused = self.supernet.baselines() if self.args.max_steps == self.args.supernet_max_steps else {}
        return {**reused, **super().baselines()}

    def baseline_rows(self) -> None:
        """Each architecture the standard supernet selected, trained alone: the supernet benchmark's `kd_*` row when it
        has one, else trained here (same teacher, losses, steps and initial weights)."""
        evaluated = self.standard()
        for point in MAC_POINTS[1:]:
            key, _ = self.select(evaluated, point)
            if key in self.baselines():
                continue
            subnet = SubnetConfig.from_dict(json.loads(key))
            name = "kd_" + hashlib.sha1(key.encode()).hexdigest()[:10]
            self.rows.compute(name, lambda s=subnet, n=name: self.train_alone(s, n))

    # -- the mixture supernets --------------------------------------------------------------------------------------
    def mos_rows(self, name: str, mode: str, steps: int) -> None:
        model, _ = self.train_supernet(name, steps, **self.args.training_levers(), **mixture_levers(self.args, mode))
        self.evaluate_subnets(name, model, MAC_POINTS, cloud=self.args.cloud_size)

    def main_rows(self) -> None:
        self.standard()
        for mode in self.args.mode_list:
            self.mos_rows(f"mos_{mode}", mode, self.args.max_steps)

    def measure_rows(self) -> None:
        variants = ["standard", *self.args.mode_list]
        self.rows.compute(
            "measure",
            lambda: {
                "timing": run_measurement("timing"),
                "memory": {v: run_measurement(f"memory_{v}")["peak_increase"] for v in variants},
            },
        )

    def time_rows(self) -> None:
        """Equal wall time: each mode's steps scaled by the measured step-time ratio (fixed once, in a row)."""
        measured = self.rows.get("measure")
        if measured is None:
            raise RuntimeError("Run the measure rows first: the equal-time steps come from the measured step times.")
        ratios = measured["timing"]["step_ratio"]
        steps = self.rows.compute(
            "equal_time",
            lambda: {m: max(1, round(self.args.max_steps / ratios[m])) for m in self.args.mode_list},
        )
        for mode in self.args.mode_list:
            if steps[mode] == self.args.max_steps:
                continue  # the equal-steps run is the equal-time run
            self.mos_rows(f"mos_{mode}_time", mode, steps[mode])


# ------------------------------------------------------------------------------------------------------------------
# step time and memory, each in a fresh subprocess
def measure(args: MosBenchArguments) -> dict:
    """Inside a subprocess: `timing` (every variant's full training step, paired rounds; eval forward and subnet
    change) or `memory_<variant>` (the increase of peak RSS over the process's level just before 3 training steps)."""
    sup = Bench(args.supernet_args())
    batch = sup.collator([sup.splits["train"][i] for i in range(args.batch_size)])
    teacher = sup.load_teacher()

    def trainer_for(variant: str) -> SupernetTrainer:
        set_seed(args.seed)
        model = sup.initial_supernet(sup.teacher_dir())
        recipe = {**args.recipe(), **mixture_levers(args, variant)}
        targs = train_args(
            args, f"measure_{variant}", args.max_steps, SupernetTrainingArguments, eval_subnets="", **recipe
        )
        trainer = SupernetTrainer(
            model=model,
            teacher_model=teacher,
            args=targs,
            train_dataset=sup.splits["train"],
            data_collator=sup.collator,
        )
        trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
        trainer.current_gradient_accumulation_steps = 1
        return trainer

    def step(trainer: SupernetTrainer) -> None:
        trainer._micro_step = (-1, 0)  # every call trains step 0's subnets: the same ones for every variant
        trainer.training_step(trainer.model, inputs)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    inputs = {key: value.to("cpu") for key, value in batch.items()}
    if args.measure.startswith("memory_"):
        trainer = trainer_for(args.measure.removeprefix("memory_"))
        reset_peak_rss()
        base = peak_rss_bytes()
        for _ in range(3):
            step(trainer)
        return {"peak_increase": peak_rss_bytes() - base}

    variants = ["standard", *args.mode_list]
    trainers = {v: trainer_for(v) for v in variants}
    for trainer in trainers.values():
        trainer.model.train()
        step(trainer)  # warm-up (and the optimizer's state)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.timing_rounds):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        for v in order:
            start = time.perf_counter()
            step(trainers[v])
            times[v].append(time.perf_counter() - start)
    ratios = {m: statistics.median(a / b for a, b in zip(times[m], times["standard"], strict=True)) for m in variants}

    # eval mode: a forward of the middle subnet through each supernet, and the cost of a subnet change
    eval_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    space = trainers["standard"].model.search_space
    subnet = space.middle()
    forward, change = {}, {}
    for v in variants:
        trainers[v].model.eval().set_subnet(subnet)

    @torch.inference_mode()
    def run_standard() -> None:
        trainers["standard"].model(**eval_inputs)

    for v in variants:
        model = trainers[v].model

        @torch.inference_mode()
        def run(model=model) -> None:
            model(**eval_inputs)

        forward[v] = paired_medians(run, run_standard, args.timing_rounds)[2]

        def switch(model=model):
            model.activate_subnet(space.largest())
            model.activate_subnet(subnet)

        starts = []
        for _ in range(max(3, args.timing_rounds)):
            start = time.perf_counter()
            switch()
            starts.append((time.perf_counter() - start) / 2)
        change[v] = statistics.median(starts)
    return {
        "subnets": [s.to_dict() for s in trainers["standard"].sampler.sample(0)],
        "step_s": {v: statistics.median(t) for v, t in times.items()},
        "step_ratio": ratios,
        "eval_forward_ratio": forward,
        "subnet_change_s": change,
        "eval_subnet": subnet.to_dict(),
        "num_parameters": {v: sum(p.numel() for p in trainers[v].model.parameters()) for v in variants},
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
def verdict(interval: dict) -> str:
    """Met when the whole interval is >= 0, NOT met when all of it is below, otherwise unresolved."""
    if interval["low"] >= 0:
        return "met"
    if interval["high"] < 0:
        return "NOT met"
    side = "met" if interval["diff"] >= 0 else "missed"
    return f"unresolved (point estimate {side}; the interval spans 0)"


def target_verdict(minus_half_gap: dict, gap: dict) -> str:
    """The verdict of "closes at least half of the gap": read from the interval of `MoS - (standard + alone) / 2`
    when the gap itself (`alone - standard`) is resolved above 0; otherwise there is no gap to close at this
    resolution, and the target cannot be assessed."""
    if gap["low"] <= 0:
        return (
            f"not assessable: the gap alone - standard ({iv(gap)}) is not resolved above 0 at this evaluation "
            f"set's size (point estimate of the test {minus_half_gap['diff']:+.2f})"
        )
    return verdict(minus_half_gap)


def variant_names(args: MosBenchArguments, rows: Rows) -> dict[str, str]:
    """Row name -> label of every finished MoS variant."""
    equal_time = rows.get("equal_time") or {}
    out = {}
    for mode in args.mode_list:
        out[f"mos_{mode}"] = f"{mode}-wise MoS, equal steps"
        if mode in equal_time:
            same = equal_time[mode] == args.max_steps
            out[f"mos_{mode}" if same else f"mos_{mode}_time"] = (
                f"{mode}-wise MoS, equal steps = equal time" if same else f"{mode}-wise MoS, equal time"
            )
    return {name: label for name, label in out.items() if rows.get(f"{name}_subnets") is not None}


def report(bench: MosBench, args: MosBenchArguments) -> dict:
    sup, rows = bench.supernet, bench.rows
    teacher, standard = sup.rows.get("teacher"), rows.get(f"{STANDARD}_subnets")
    if teacher is None or standard is None:
        raise RuntimeError("Nothing to report: the teacher and the standard supernet rows are not finished.")
    standard = standard["subnets"]
    ci = lambda a, b: paired_interval(a, b, args.bootstrap_samples, args.seed)  # noqa: E731
    baselines = bench.baselines()
    variants = variant_names(args, rows)
    points = []
    for point in MAC_POINTS:
        key, chosen = bench.select(standard, point)
        s_dev = chosen["dev"]
        entry: dict = {
            "point": point,
            "subnet": json.loads(key),
            "mac_ratio": chosen["mac_ratio"],
            "standard": {"dev": accuracy(s_dev), "vs_teacher": ci(s_dev, teacher["dev"])},
        }
        alone = baselines.get(key) if point < 1.0 else None
        if alone is not None:
            entry["alone"] = {"dev": accuracy(alone["dev"]), "minus_standard": ci(alone["dev"], s_dev)}
        for name, label in variants.items():
            evaluated = rows.get(f"{name}_subnets")["subnets"]
            m_dev = evaluated[key]["dev"]  # the standard's architecture, through the MoS supernet
            e = {"label": label, "dev": accuracy(m_dev), "minus_standard": ci(m_dev, s_dev)}
            if alone is not None:
                gap = entry["alone"]["minus_standard"]["diff"]
                e["gap_closed"] = (e["minus_standard"]["diff"] / gap) if gap > 0 else None
                half = [(s + k) / 2 for s, k in zip(s_dev, alone["dev"], strict=True)]
                e["minus_half_gap"] = ci(m_dev, half)  # >= 0: at least half of the gap closed
                e["minus_alone"] = ci(m_dev, alone["dev"])
            own_key, own = bench.select(evaluated, point)  # the MoS supernet's own validation-selected subnet
            e["selected"] = {
                "subnet": json.loads(own_key),
                "mac_ratio": own["mac_ratio"],
                "dev": accuracy(own["dev"]),
                "minus_standard": ci(own["dev"], s_dev),
            }
            entry[name] = e
        points.append(entry)
    trained = {name: rows.get(f"{name}_trained") for name in variants}
    standard_trained = rows.get(f"{STANDARD}_trained")
    record = run_record()
    return {
        "command": record["command"],
        "commit": record["commit"],
        "model": checkpoint_name(bench.path),
        "machine": record["machine"],
        "versions": record["versions"],
        "settings": {
            **{k: v for k, v in dataclasses.asdict(args).items() if k not in ("measure", "rows", "report_name")},
            "data_dir": os.path.relpath(args.data_dir, ROOT),
            "output_dir": os.path.relpath(args.output_dir, ROOT),
        },
        "recipe": args.recipe(),
        "mixture": {
            m: MixtureConfig(
                mode=m,
                num_experts=args.num_experts,
                router_hidden_size=args.router_hidden_size,
                target_modules=args.target_modules,
                router_init_std=args.router_init_std,
                expert_init_noise=args.expert_init_noise,
                router_init=args.router_init,
            ).to_dict()
            for m in args.mode_list
        },
        "targets": TARGETS,
        "dev_samples": len(bench.splits["dev"]),
        "teacher": {"dev": accuracy(teacher["dev"])},
        "variants": variants,
        "points": points,
        "train_seconds": {
            "standard": standard_trained["train_seconds"] if standard_trained else None,
            **{name: (row or {}).get("train_seconds") for name, row in trained.items()},
        },
        "steps": {"standard": args.max_steps, **{name: run_steps(args, rows, name) for name in variants}},
        "measure": rows.get("measure"),
    }


def run_steps(args: MosBenchArguments, rows: Rows, name: str) -> int:
    """The optimizer steps of the MoS run `name` (`mos_<mode>` or `mos_<mode>_time`)."""
    if not name.endswith("_time"):
        return args.max_steps
    return (rows.get("equal_time") or {})[name.removeprefix("mos_").removesuffix("_time")]


def iv(x: dict) -> str:
    return f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"


def arch(sub: dict) -> str:
    return (
        f"layers {sub['layers']}, heads {sorted(set(sub['num_attention_heads']))}, FFN "
        f"{sorted(set(sub['intermediate_size']))}, hidden {sub['hidden_size']}"
    )


def experts_words(mixture: dict) -> str:
    noise = mixture.get("expert_init_noise") or 0.0
    if not noise:
        return "all experts starting from the teacher's weight"
    return (
        f"the experts starting from the teacher's weight plus zero-mean noise of {noise:g} standard deviations of it "
        "(their average is the teacher's weight)"
    )


def router_words(mixture: dict) -> str:
    std = mixture.get("router_init_std")
    if mixture.get("router_init", "random") == "size":
        return (
            f"routers starting by subnet size (expert 0 centred on the largest subnet, the last on the smallest, 95% "
            f"of the weight at each expert's own centre; their other output weights ~ N(0, {std}))"
        )
    return f"router output weights ~ N(0, {std})"


def render_markdown(r: dict) -> str:
    s = r["settings"]
    pts = {p["point"]: p for p in r["points"]}
    variants = r["variants"]
    m = r["measure"]
    mixture = next(iter(r["mixture"].values()), {})
    lines = [
        "# Mixture-of-Supernets benchmark (SST-2)",
        "",
        f"Generated by `{r['command']}` at commit `{r['commit']}` on {r['machine']}; torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}, hf-nas {r['versions']['hf_nas']}.",
        "",
        f"The protocol of [the supernet benchmark](supernet.md): model {r['model']}, {s['train_samples']} seeded SST-2 "
        f"training rows, {s['validation_samples']} held-out training rows as the **validation split that selects** each "
        f"MAC point's subnet, the official dev set ({r['dev_samples']} rows) for every **reported** number; batch "
        f"{s['batch_size']}, max {s['max_seq_length']} tokens, lr {s['learning_rate']}, seed {s['seed']}. Intervals: "
        f"paired 95% bootstrap over the dev examples ({s['bootstrap_samples']} resamples); one seed.",
        "",
        f"- **standard**: the teacher-first supernet (plain weight sharing), trained in this run: initialised from the "
        f"teacher (dev "
        f"{r['teacher']['dev']:.2f}%), importance-reordered, {s['max_steps']} {r['recipe']['sampler']} steps with "
        f"{DISTILLATION_WORDS[r['recipe'].get('distillation', 'teacher')]}; levers " + json.dumps(r["recipe"]) + ".",
        f"- **MoS**: the same recipe, data order and initial weights with Mixture-of-Supernets on the "
        f"{' and '.join(mixture.get('target_modules', []))} linear layers ({mixture.get('num_experts')} experts, routers "
        f"of width {mixture.get('router_hidden_size')}, {experts_words(mixture)}, {router_words(mixture)}, router "
        f"learning rate {s.get('router_learning_rate') or s['learning_rate']})"
        ": at equal steps, and at equal wall time (steps scaled by the measured step-time ratio).",
        "- **alone**: the same architecture trained by itself with the same teacher, losses, steps and initial weights "
        "(the supernet benchmark's KD baseline of that architecture when it has one).",
        "",
        "Each MAC point uses the architecture the **standard** supernet selected on validation, so every row at a "
        "point is the same architecture and the differences are paired; each MoS supernet's own validation-selected "
        "subnet is reported apart. *Gap closed* = (MoS - standard) / (alone - standard), a point estimate; the target "
        "test uses the per-example `MoS - (standard + alone) / 2`, whose mean is >= 0 exactly when at least half of the "
        "gap is closed.",
        "",
        "## Targets",
        "",
        "| target | variant | measured (95% interval) | verdict |",
        "|---|---|---|---|",
    ]
    for point in TARGET_POINTS:
        p = pts[point]
        for name, label in variants.items():
            e = p.get(name, {})
            if "minus_half_gap" not in e:
                continue
            lines.append(
                f"| {100 * point:.0f}% MACs: MoS - (standard + alone) / 2, points | {label} | "
                f"{iv(e['minus_half_gap'])} (gap closed {_fraction(e['gap_closed'])}) | "
                f"{target_verdict(e['minus_half_gap'], p['alone']['minus_standard'])} |"
            )
    if m:
        for mode, ratio in m["timing"]["step_ratio"].items():
            if mode in r["mixture"]:
                ok = "met" if ratio <= TARGETS["train_time_ratio"] else "NOT met"
                lines.append(
                    f"| training step time vs standard | {mode}-wise MoS | {ratio:.3f} | "
                    f"{ok} (target <= {TARGETS['train_time_ratio']}) |"
                )
    lines += [
        "",
        "## Subnets at each MAC point (the standard's selection), dev accuracy",
        "",
        "| MACs | architecture | standard | alone | alone - standard | "
        + " | ".join(f"{label}: dev | - standard | gap closed" for label in variants.values())
        + " |",
        "|---|---|---|---|---|" + "---|---|---|" * len(variants),
    ]
    for p in r["points"]:
        alone = p.get("alone")
        cells = [
            f"{100 * p['mac_ratio']:.0f}%",
            arch(p["subnet"]),
            f"{p['standard']['dev']:.2f}%",
            f"{alone['dev']:.2f}%" if alone else "-",
            iv(alone["minus_standard"]) if alone else "-",
        ]
        for name in variants:
            e = p.get(name)
            cells += [f"{e['dev']:.2f}%", iv(e["minus_standard"]), _fraction(e.get("gap_closed"))] if e else ["-"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Each MoS supernet's own validation-selected subnet",
        "",
        "| MACs | variant | subnet | MACs | dev | - standard's selected |",
        "|---|---|---|---|---|---|",
    ]
    for p in r["points"]:
        for name, label in variants.items():
            e = p.get(name)
            if e:
                sel = e["selected"]
                lines.append(
                    f"| {100 * p['point']:.0f}% | {label} | {arch(sel['subnet'])} | {100 * sel['mac_ratio']:.0f}% | "
                    f"{sel['dev']:.2f}% | {iv(sel['minus_standard'])} |"
                )
    lines += ["", "## Compute", ""]
    secs = r["train_seconds"]
    for name, steps in r["steps"].items():
        label = "standard" if name == "standard" else variants.get(name, name)
        t = secs.get(name)
        lines.append(f"- {label}: {steps} steps" + (f", {t / 60:.1f} min" if t else "") + ".")
    lines.append(
        "- Wall times of single runs on shared CPU cores are indicative only (other jobs may have run beside them); "
        "the step times below were measured side by side in one fresh process, alternating the variants."
    )
    if m:
        t = m["timing"]
        lines += [
            "",
            "| variant | parameters | training step (s) | vs standard | peak memory increase (MiB) | vs standard | "
            "eval forward vs standard | subnet change (ms) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        base_mem = m["memory"]["standard"]
        for v in t["step_s"]:
            lines.append(
                f"| {v} | {t['num_parameters'][v] / 1e6:.1f} M | {t['step_s'][v]:.2f} | {t['step_ratio'][v]:.3f} | "
                f"{m['memory'][v] / 2**20:.0f} | {m['memory'][v] / base_mem:.2f} | {t['eval_forward_ratio'][v]:.3f} | "
                f"{1e3 * t['subnet_change_s'][v]:.2f} |"
            )
        lines += [
            "",
            f"A training step: the teacher's forward and {len(t['subnets'])} {r['recipe']['sampler']} subnets' forward + backward, "
            "then the optimizer step (medians over paired rounds). Peak memory: increase of peak RSS over each "
            "process's level before 3 training steps with the optimizer. Eval forward: the middle subnet "
            f"({arch(t['eval_subnet'])}) on one batch, the mixture cached; subnet change: setting a subnet in eval "
            "mode, which computes the mixture of the kept layers once.",
        ]
    return "\n".join(lines) + "\n"


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def main() -> None:
    args = parse_args(MosBenchArguments)
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    if args.measure is not None:
        print(json.dumps(measure(args)))
        return
    setup_logging()
    groups = {g.strip() for g in args.rows.split(",")}
    if "all" in groups:
        groups = set(GROUPS)
    unknown = groups - set(GROUPS)
    if unknown:
        raise ValueError(f"Unknown --rows {sorted(unknown)}; allowed: {', '.join(GROUPS)}, all.")
    bench = MosBench(args, Bench(args.supernet_args()))
    bench.check_recipe()
    order = [
        ("main", bench.main_rows),
        ("baselines", bench.baseline_rows),
        ("measure", bench.measure_rows),
        ("time", bench.time_rows),
    ]
    for name, fn in order:
        if name in groups:
            logger.info("== %s", name)
            fn()
    if "report" in groups:
        result = report(bench, args)
        write_results(args.output_dir, args.report_name, result, render_markdown(result), indent=1)
        if os.path.abspath(args.output_dir) == BENCHMARKS_DIR:
            logger.info("written to %s", BENCHMARKS_DIR)


if __name__ == "__main__":
    main()
