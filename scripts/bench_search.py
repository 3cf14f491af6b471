"""Search benchmark on the SST-2 supernet of `bench_supernet.py`, written to docs/benchmarks/search.{json,md} and
search_anytime.png.

Protocol (see DESIGN.md):

- **select on validation, report on dev**: every search measures accuracy on a validation split carved from the SST-2
  training rows (held out from the supernet's training subset, the rows `bench_supernet.py` holds out; sorted by
  length, padded per batch); the subnets a search chooses (the most accurate on validation under each MAC budget)
  are reported on the official dev set, with paired 95% bootstrap intervals against random search's choice;
- **a reference point fixed in advance**: majority-class accuracy on the validation split, the full model's MACs and
  its (predicted) latency; the ideal point is accuracy 1, 0 MACs, 0 ms; the hypervolume covers every optimized
  objective (accuracy, MACs, latency), normalized to [0, 1];
- **equal cost**: every strategy (random, NSGA-II, evolutionary, predictor-guided LINAS) gets the same number of real
  evaluations, over several seeds; anytime curves plot the hypervolume against real evaluations. An accuracy already
  measured by another run is read from a cache (it costs no time) but still counts as a real evaluation of the run;
- **latency that is true**: per-device latency tables at batch 1 and 8 (128 tokens), their error on subnets disjoint
  from the ones their correction was fitted on, next to the paired measurement's own test-retest error on the same
  subnets (raw and drift-corrected);
- **throughput** of a full screening round (accuracy predictor, latency table, exact MACs) over 1,000 candidates.

Every finished piece (latency table and check, each run, the dev accuracies) is saved under --work_dir and reused by
a rerun, so a run that is stopped part-way continues.

    python scripts/bench_search.py --supernet /tmp/hf_nas_bench_supernet/models/one_pass   # make bench-search
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from bench_common import (
    BENCHMARKS_DIR,
    SST2_DIR,
    Rows,
    environment,
    met,
    paired_interval,
    parse_args,
    setup_logging,
    versions,
    write_results,
)
from bench_supernet import SupernetBenchArguments, correct, load_splits
from transformers import AutoTokenizer, set_seed

from hf_nas import ElasticBertForSequenceClassification, SubnetConfig
from hf_nas.search import SubnetSearch, get_objective
from hf_nas.search.latency_table import PairedLatencyMeter, cached_latency_table
from hf_nas.search.objectives import Objective, TaskMetricObjective
from hf_nas.search.pareto import anytime_hypervolume
from hf_nas.search.predictors import Predictor
from hf_nas.search.strategies import EvaluatedSubnet, LinasSearch, get_strategy
from hf_nas.search.strategies.enas import controller_diagnostic
from hf_nas.search.strategies.linas import screen_candidates
from hf_nas.utils import atomic_write_text, default_text_checkpoint

logger = logging.getLogger("hf_nas.bench_search")
DEFAULT_SUPERNET = "/tmp/hf_nas_bench_supernet/models/one_pass"  # `make bench-supernet` with its defaults
TARGETS = {
    "evaluations_share": 0.5,  # LINAS reaches random search's final hypervolume within this share of the evaluations
    "latency_median_error": 0.05,
    "latency_error_vs_noise": 1.5,
    "screening_seconds": 300.0,  # 1,000 screened candidates plus 100 real evaluations
}
STRATEGY_NAMES = {
    "random": "random search",
    "nsga2": "NSGA-II",
    "evolutionary": "evolutionary (OFA)",
    "linas": "predictor-guided (LINAS)",
    "enas": "ENAS controller, memory buffer",
    "enas_no_buffer": "ENAS controller, no buffer",
}
# ENAS's reward: validation accuracy minus a cost penalty, each cost relative to the full model's (the reference point)
ENAS_COST_WEIGHT = 0.5
ENAS_BUFFER = {"buffer_size": 50, "replay_size": 4}


@dataclass
class SearchBenchArguments:
    supernet: str = field(
        default=DEFAULT_SUPERNET,
        metadata={"help": "The one-pass supernet of bench_supernet.py (make bench-supernet)."},
    )
    data_dir: str = field(default=SST2_DIR)
    train_samples: int = field(default=9600, metadata={"help": "Training rows the supernet was trained on (skipped)."})
    validation_samples: int = field(default=500, metadata={"help": "Held-out training rows the searches select on."})
    dev_samples: int | None = field(default=None, metadata={"help": "Default: the full dev set (smoke runs only)."})
    max_seq_length: int = field(default=64, metadata={"help": "Tokens per example, as the supernet was trained."})
    data_seed: int = field(
        default=42, metadata={"help": "The seed bench_supernet.py shuffled the training rows with."}
    )
    strategies: str = field(default="random,nsga2,evolutionary,linas,enas,enas_no_buffer")
    seeds: int = field(default=3, metadata={"help": "Seeds per strategy."})
    num_evaluations: int = field(default=50, metadata={"help": "Real evaluations per search."})
    evaluations_per_round: int = 5
    initial_evaluations: int = field(
        default=10, metadata={"help": "LINAS: random subnets before the first screening."}
    )
    candidates_per_round: int = field(default=1000, metadata={"help": "LINAS: candidates screened per round."})
    screening_population: int = field(default=50, metadata={"help": "LINAS: NSGA-II population while screening."})
    population_size: int = field(default=10, metadata={"help": "NSGA-II and evolutionary: subnets per generation."})
    sequence_length: int = field(default=128, metadata={"help": "Tokens per sequence of MACs and latency."})
    latency_batch_sizes: str = field(default="1,8", metadata={"help": "Batch sizes of the latency tables."})
    search_latency_batch_size: int = field(default=8, metadata={"help": "The latency objective's batch size."})
    correction_subnets: int = field(default=12, metadata={"help": "Whole subnets the tables' correction is fit on."})
    latency_subnets: int = field(default=20, metadata={"help": "Disjoint subnets the latency tables are checked on."})
    latency_rounds: int = 7
    latency_min_block_time: float = 0.05
    mac_budgets: str = field(default="0.25,0.5,0.75", metadata={"help": "MAC shares the reported subnets stay under."})
    eval_batch_size: int = 64
    bootstrap_samples: int = 2000
    output_dir: str = BENCHMARKS_DIR
    work_dir: str = field(default="/tmp/hf_nas_bench_search", metadata={"help": "Finished pieces, runs, caches."})


def key_of(subnet: SubnetConfig) -> str:
    return json.dumps(subnet.to_dict(), sort_keys=True)


def describe(subnet: dict) -> str:
    return (
        f"layers {subnet['layers']}, heads {subnet['num_attention_heads']}, FFN {subnet['intermediate_size']}, "
        f"hidden {subnet['hidden_size']}"
    )


class CachedAccuracy(Objective):
    """The validation accuracy, cached per subnet on disk across runs and seeds: a subnet measured by one run costs
    the next run nothing, but it still counts as a real evaluation of that run."""

    name, direction, cheap = "accuracy", "maximize", False

    def __init__(self, inner: TaskMetricObjective, path: str):
        self.inner, self.path = inner, path
        self.cache: dict[str, dict[str, float]] = {}
        if os.path.isfile(path):
            with open(path) as f:
                self.cache = json.load(f)
        self.seconds = 0.0  # spent measuring (cache misses) since the last `take_seconds`

    def __call__(self, model, subnet: SubnetConfig) -> float:
        key = key_of(subnet)
        if key not in self.cache:
            start = time.perf_counter()
            value = self.inner(model, subnet)
            seconds = time.perf_counter() - start
            self.seconds += seconds
            self.cache[key] = {"value": value, "seconds": seconds}
            atomic_write_text(self.path, json.dumps(self.cache))
        return self.cache[key]["value"]

    def take_seconds(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def reference_value(self, model=None) -> float:
        return self.inner.reference_value(model)

    def ideal_value(self) -> float | None:
        return self.inner.ideal_value()

    def describe(self) -> dict:
        return self.inner.describe()


class Bench:
    def __init__(self, args: SearchBenchArguments):
        self.args = args
        if not os.path.isfile(os.path.join(args.supernet, "config.json")):
            raise SystemExit(
                f"No supernet in {args.supernet}: run `make bench-supernet` first (it trains the one-pass SST-2 "
                "supernet this benchmark searches), or pass --supernet FOLDER."
            )
        self.rows = Rows(args.work_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(default_text_checkpoint())
        splits = load_splits(
            SupernetBenchArguments(
                data_dir=args.data_dir,
                train_samples=args.train_samples,
                validation_samples=args.validation_samples,
                dev_samples=args.dev_samples,
                max_seq_length=args.max_seq_length,
                seed=args.data_seed,
            ),
            self.tokenizer,
        )
        validation = splits["validation"]
        lengths = [len(ids) for ids in validation["input_ids"]]
        self.validation = validation.select(sorted(range(len(validation)), key=lambda i: lengths[i]))
        self.dev = splits["dev"]
        self.model = ElasticBertForSequenceClassification.from_pretrained(args.supernet).eval()
        self.space = self.model.search_space
        self.batch_sizes = [int(b) for b in args.latency_batch_sizes.split(",")]
        if args.search_latency_batch_size not in self.batch_sizes:
            raise SystemExit(f"--search_latency_batch_size must be one of --latency_batch_sizes {self.batch_sizes}.")
        self.latency_cache = os.path.join(args.work_dir, "latency")

    # -- latency ------------------------------------------------------------------------------------------------------
    def table(self, batch_size: int):
        args = self.args
        return cached_latency_table(
            self.model,
            batch_size=batch_size,
            sequence_length=args.sequence_length,
            cache_dir=self.latency_cache,
            correction_subnets=args.correction_subnets,
            rounds=args.latency_rounds,
            min_block_time=args.latency_min_block_time,
        )

    def latency_check(self, batch_size: int) -> dict:
        """The table's error on subnets disjoint from its correction's, next to the paired measurement's test-retest
        error on the same subnets: every subnet measured twice, in two passes, against the table's baseline."""

        def run():
            start = time.perf_counter()
            table = self.table(batch_size)
            build_seconds = time.perf_counter() - start
            fitted = {key_of(SubnetConfig.from_dict(m["subnet"])) for m in table.measurements}
            generator = random.Random(10_000 + batch_size)
            subnets: list[SubnetConfig] = []
            while len(subnets) < self.args.latency_subnets:
                subnet = self.space.sample(generator=generator)
                if key_of(subnet) not in fitted and subnet not in subnets:  # disjoint by construction
                    subnets.append(subnet)
            meter = PairedLatencyMeter(
                self.model,
                batch_size=batch_size,
                sequence_length=self.args.sequence_length,
                rounds=self.args.latency_rounds,
                min_block_time=self.args.latency_min_block_time,
                reference_baseline_ms=table.reference_baseline_ms,
            )
            passes = [[meter.measure(s).to_dict() for s in subnets] for _ in range(2)]  # test, then retest
            return {
                "batch_size": batch_size,
                "table_build_seconds": build_seconds,
                "scale": table.scale,
                "offset": table.offset,
                "per_layer_ms": table.per_layer_ms,
                "reference_baseline_ms": table.reference_baseline_ms,
                "correction_subnets": len(table.measurements),
                "correction_fit": [
                    {
                        "predicted_ms": table.predict(SubnetConfig.from_dict(m["subnet"])),
                        "measured_ms": m["corrected_ms"],
                    }
                    for m in table.measurements
                ],
                "subnets": [s.to_dict() for s in subnets],
                "predicted_ms": [table.predict(s) for s in subnets],
                "test": passes[0],
                "retest": passes[1],
            }

        return self.rows.compute(f"latency_b{batch_size}", run)

    # -- searches -----------------------------------------------------------------------------------------------------
    def objectives(self) -> list[Objective]:
        args = self.args
        accuracy = CachedAccuracy(
            TaskMetricObjective(self.validation, batch_size=args.eval_batch_size, tokenizer=self.tokenizer),
            os.path.join(args.work_dir, "accuracy_cache.json"),
        )
        macs = get_objective("macs", sequence_length=args.sequence_length)
        latency = get_objective(
            "predicted_latency",
            batch_size=args.search_latency_batch_size,
            sequence_length=args.sequence_length,
            table=self.table(args.search_latency_batch_size),
        )
        latency.prepare(self.model)
        return [accuracy, macs, latency]

    def strategy(self, name: str, seed: int, objectives: list[Objective], reference: list[float] | None = None):
        args, directions = self.args, [o.direction for o in objectives]
        if name.startswith("enas"):
            if reference is None:
                raise ValueError("The ENAS strategies scale their reward by the reference point: pass it.")
            return get_strategy(
                "enas",
                self.space,
                directions,
                seed=seed,
                reward_weights=(1.0, *[ENAS_COST_WEIGHT] * (len(objectives) - 1)),
                reward_scales=(1.0, *reference[1:]),
                **(ENAS_BUFFER if name == "enas" else {}),
            )
        if name == "linas":
            exact = {i: (lambda s, o=o: float(o(self.model, s))) for i, o in enumerate(objectives) if o.cheap}
            return LinasSearch(
                self.space,
                directions,
                seed=seed,
                initial_evaluations=args.initial_evaluations,
                evaluations_per_round=args.evaluations_per_round,
                candidates_per_round=args.candidates_per_round,
                screening_options={"population_size": args.screening_population},
                exact_objectives=exact,
            )
        options = {"population_size": args.population_size} if name in ("nsga2", "evolutionary") else {}
        return get_strategy(name, self.space, directions, seed=seed, **options)

    def run(self, name: str, seed: int, objectives: list[Objective], reference: list[float]) -> dict:
        def search():
            accuracy = objectives[0]
            accuracy.take_seconds()
            start = time.perf_counter()
            strategy = self.strategy(name, seed, objectives, reference)
            results = SubnetSearch(
                self.model,
                objectives,
                strategy,
                use_predictors=False,
                num_evaluations=self.args.num_evaluations,
                evaluations_per_round=self.args.evaluations_per_round,
                output_dir=os.path.join(self.args.work_dir, "runs", f"{name}-{seed}"),
                seed=seed,
                show_progress=False,
                reference_point=reference,
            ).run()
            wall = time.perf_counter() - start
            values = results.values()
            measuring = accuracy.take_seconds()
            return {
                "strategy": name,
                "seed": seed,
                "records": [{"subnet": r["subnet"], "values": r["values"]} for r in results.records],
                "curve": anytime_hypervolume(values, results.directions, reference, [1.0, 0.0, 0.0]),
                "front_size": len(results.pareto_indices()),
                "wall_seconds": wall,
                "measuring_seconds": measuring,  # accuracy evaluations not found in the cache
                "overhead_seconds": wall - measuring,  # strategy, screening, MACs, writes
                **({"controller": controller_diagnostic(strategy)} if name.startswith("enas") else {}),
            }

        row = self.rows.compute(f"run_{name}_{seed}", search)
        logger.info("%s seed %d: final hypervolume %.4f", name, seed, row["curve"][-1])
        return row

    # -- dev ----------------------------------------------------------------------------------------------------------
    def dev_correct(self, subnet: SubnetConfig) -> list[int]:
        path = os.path.join(self.args.work_dir, "dev_cache.json")
        cache = json.load(open(path)) if os.path.isfile(path) else {}
        key = key_of(subnet)
        if key not in cache:
            with self.model.subnet(subnet):
                cache[key] = correct(self.model, self.dev, self.tokenizer)
            atomic_write_text(path, json.dumps(cache))
        return cache[key]

    # -- throughput ---------------------------------------------------------------------------------------------------
    def throughput(self, objectives: list[Objective], fitted_on: dict) -> dict:
        def run():
            measured = [
                EvaluatedSubnet(SubnetConfig.from_dict(r["subnet"]), tuple(r["values"][o.name] for o in objectives))
                for r in fitted_on["records"]
            ]
            exact = {i: (lambda s, o=o: float(o(self.model, s))) for i, o in enumerate(objectives) if o.cheap}
            start = time.perf_counter()
            screen_candidates(
                self.space,
                [o.direction for o in objectives],
                measured,
                num_candidates=1000,
                num_chosen=self.args.evaluations_per_round,
                exact_objectives=exact,
                strategy="nsga2",
                strategy_options={"population_size": self.args.screening_population},
                seed=0,
            )
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            Predictor(self.space, seed=0).fit([m.subnet for m in measured], [m.values[0] for m in measured])
            fit_seconds = time.perf_counter() - start
            return {"candidates": 1000, "seconds": seconds, "fit_seconds": fit_seconds, "fitted_on": len(measured)}

        return self.rows.compute("throughput", run)


# ----------------------------------------------------------------------------------------------------------------------
# report
def percent_errors(predicted: list[float], measured: list[float]) -> list[float]:
    return [abs(p - m) / m for p, m in zip(predicted, measured, strict=True)]


def summarize_errors(errors: list[float]) -> dict:
    return {
        "median": float(np.median(errors)),
        "mean": float(np.mean(errors)),
        "p90": float(np.quantile(errors, 0.9)),
    }


def latency_summary(row: dict) -> dict:
    test = [m["corrected_ms"] for m in row["test"]]
    retest = [m["corrected_ms"] for m in row["retest"]]
    raw_test = [m["raw_ms"] for m in row["test"]]
    raw_retest = [m["raw_ms"] for m in row["retest"]]
    predictor = summarize_errors(percent_errors(row["predicted_ms"], test))
    noise = summarize_errors(percent_errors(retest, test))
    return {
        "batch_size": row["batch_size"],
        "num_subnets": len(test),
        "predictor_error": predictor,
        "test_retest_error": noise,
        "predictor_error_raw": summarize_errors(percent_errors(row["predicted_ms"], raw_test)),
        "test_retest_error_raw": summarize_errors(percent_errors(raw_retest, raw_test)),
        "error_vs_noise": predictor["median"] / noise["median"] if noise["median"] > 0 else math.inf,
        "correction_fit_error": summarize_errors(
            percent_errors(
                [f["predicted_ms"] for f in row["correction_fit"]], [f["measured_ms"] for f in row["correction_fit"]]
            )
        ),
        "scale": row["scale"],
        "offset": row["offset"],
        "per_layer_ms": row.get("per_layer_ms", 0.0),
        "correction_subnets": row["correction_subnets"],
        "reference_baseline_ms": row["reference_baseline_ms"],
        "table_build_seconds": row["table_build_seconds"],
        "median_latency_ms": float(np.median(test)),
    }


def evaluations_to_reach(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-12), None)


def search_summary(runs: dict[str, list[dict]], n: int) -> dict:
    random_final = float(np.mean([r["curve"][-1] for r in runs["random"]])) if "random" in runs else None
    out = {}
    for name, rows in runs.items():
        finals = [r["curve"][-1] for r in rows]
        halves = [r["curve"][n // 2 - 1] for r in rows]
        reach = [evaluations_to_reach(r["curve"], random_final) for r in rows] if random_final is not None else []
        out[name] = {
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
            "final": finals,
            "at_half_mean": float(np.mean(halves)),
            "evaluations_to_random_final": reach,
            "evaluations_to_random_final_mean": (
                float(np.mean(reach)) if reach and all(v is not None for v in reach) else None
            ),
            "front_size_mean": float(np.mean([r["front_size"] for r in rows])),
            "wall_seconds": float(sum(r["wall_seconds"] for r in rows)),
            "measuring_seconds": float(sum(r["measuring_seconds"] for r in rows)),
            "overhead_seconds_per_run": float(np.mean([r["overhead_seconds"] for r in rows])),
        }
    return {"random_final_mean": random_final, "strategies": out}


def chosen_subnets(bench: Bench, runs: dict[str, list[dict]], full_macs: float, budgets: list[float]) -> dict:
    """Per budget and strategy: each seed's subnet of best validation accuracy under the budget, its dev accuracy,
    and the paired interval of the strategy's mean (over seeds) against random search's."""
    args = bench.args
    out: dict = {}
    for budget in budgets:
        entry: dict = {}
        correct_by: dict[str, list[list[int]]] = {}
        for name, rows in runs.items():
            picks = []
            for row in rows:
                feasible = [r for r in row["records"] if r["values"]["macs"] <= budget * full_macs]
                if not feasible:
                    continue
                best = max(feasible, key=lambda r: (r["values"]["accuracy"], -r["values"]["macs"]))
                subnet = SubnetConfig.from_dict(best["subnet"])
                dev = bench.dev_correct(subnet)
                correct_by.setdefault(name, []).append(dev)
                picks.append(
                    {
                        "seed": row["seed"],
                        "subnet": best["subnet"],
                        "validation": best["values"]["accuracy"],
                        "mac_ratio": best["values"]["macs"] / full_macs,
                        "latency_ms": best["values"]["predicted_latency"],
                        "dev": float(np.mean(dev)),
                    }
                )
            entry[name] = {
                "picks": picks,
                "dev_mean": float(np.mean([p["dev"] for p in picks])) if picks else None,
                "validation_mean": float(np.mean([p["validation"] for p in picks])) if picks else None,
            }
        if "random" in correct_by:
            base = np.mean(correct_by["random"], axis=0)
            for name, lists in correct_by.items():
                if name != "random":
                    mean = np.mean(lists, axis=0)
                    # paired over dev examples, the seeds averaged per example (fractions, so no ints needed)
                    entry[name]["minus_random"] = paired_interval(
                        mean.tolist(), base.tolist(), args.bootstrap_samples, 0
                    )
        out[str(budget)] = entry
    return out


def plot(result: dict, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (name, rows) in enumerate(result["runs"].items()):
        curves = np.array([r["curve"] for r in rows])  # (seeds, n)
        x = np.arange(1, curves.shape[1] + 1)
        ax.plot(x, curves.mean(axis=0), color=f"C{i}", label=f"{STRATEGY_NAMES.get(name, name)} (mean of {len(rows)})")
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=f"C{i}", alpha=0.15)
    target = result["search"]["random_final_mean"]
    if target is not None:
        ax.axhline(target, color="0.4", lw=0.8, ls="--", label="random search's final (mean)")
    ax.set_xlabel("real evaluations (validation accuracy measured)")
    ax.set_ylabel("normalized hypervolume (accuracy, MACs, latency)")
    ax.set_title("Anytime hypervolume on the SST-2 supernet (band: min-max over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def render_markdown(r: dict) -> str:
    a, s, t = r["settings"], r["search"], r["targets"]
    n = a["num_evaluations"]
    ref = r["reference_point"]
    lines = [
        "# Subnet search benchmark (SST-2)",
        "",
        f"Generated by `{r['command']}` at commit `{r['commit']}` on {r['machine']} ({r['num_threads']} torch "
        f"threads); torch {r['torch']}, transformers {r['transformers']}, hf-nas {r['hf_nas']}. Wall time "
        f"{r['wall_seconds'] / 60:.0f} min.",
        "",
        f"Supernet `{r['supernet']}` (the one-pass SST-2 supernet of `bench_supernet.py`, all-MiniLM-L6-v2). Every "
        f"search selects on **{r['validation_rows']} held-out SST-2 training rows** (never trained on); the chosen "
        f"subnets are **reported on the official dev set** ({r['dev_rows']} rows). Objectives: validation accuracy "
        f"(max), MACs at {a['sequence_length']} tokens (min) and the latency predicted by the batch-"
        f"{a['search_latency_batch_size']} latency table (min, ms). Strategies: "
        + ", ".join(STRATEGY_NAMES.get(x, x) for x in r["runs"])
        + f"; {a['seeds']} seeds each, {n} real evaluations per search in rounds of {a['evaluations_per_round']}. "
        f"NSGA-II and evolutionary: populations of {a['population_size']} ({n // a['population_size']} generations); "
        f"LINAS: {a['initial_evaluations']} random subnets, then per round {a['candidates_per_round']} candidates "
        f"screened by NSGA-II (population {a['screening_population']}, "
        f"{a['candidates_per_round'] // a['screening_population']} generations) on a GBRT accuracy predictor, exact "
        "MACs and the latency table, the predicted front measured.",
        "",
        f"Hypervolume: reference point fixed in advance, accuracy {ref[0]:.4f} (the validation split's majority "
        f"class), MACs {ref[1] / 1e9:.3f} G and latency {ref[2]:.1f} ms (the full model's); ideal point accuracy 1, "
        "0 MACs, 0 ms; normalized to [0, 1] over all three objectives.",
        "",
        "## Targets",
        "",
        "| target | measured | goal | |",
        "|---|---|---|---|",
    ]
    linas = s["strategies"].get("linas", {})
    reach = linas.get("evaluations_to_random_final_mean")
    reach_text = (
        f"{reach:.1f} of {n} (per seed {linas.get('evaluations_to_random_final')})"
        if reach is not None
        else f"not reached by every seed (per seed {linas.get('evaluations_to_random_final')})"
    )
    lines.append(
        f"| real evaluations for LINAS to reach random search's final hypervolume ({s['random_final_mean']:.4f}) | "
        f"{reach_text} | <= {t['evaluations_share'] * n:.0f} | "
        f"{met(reach, t['evaluations_share'] * n) if reach is not None else 'NOT met'} |"
    )
    for lat in r["latency"]:
        e, noise = lat["predictor_error"]["median"], lat["test_retest_error"]["median"]
        lines.append(
            f"| latency table, batch {lat['batch_size']}: median error on {lat['num_subnets']} disjoint subnets | "
            f"{100 * e:.1f}% | <= {100 * t['latency_median_error']:.0f}% | {met(e, t['latency_median_error'])} |"
        )
        lines.append(
            f"| latency table, batch {lat['batch_size']}: error / test-retest error ({100 * noise:.1f}%) | "
            f"{lat['error_vs_noise']:.2f} | <= {t['latency_error_vs_noise']} | "
            f"{met(lat['error_vs_noise'], t['latency_error_vs_noise'])} |"
        )
    th = r["throughput"]
    lines.append(
        f"| 1,000 screened candidates + 100 real evaluations | {th['composed_seconds']:.0f} s | "
        f"<= {t['screening_seconds']:.0f} s | {met(th['composed_seconds'], t['screening_seconds'])} |"
    )
    lines += [
        "",
        "## Hypervolume at equal real evaluations",
        "",
        f"![anytime hypervolume]({r['plot']})",
        "",
        f"| strategy | final hypervolume, mean ± sd (per seed) | at {n // 2} evaluations | evaluations to random's "
        "final (per seed) | front size | search overhead per run |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in s["strategies"].items():
        per_seed = ", ".join(f"{x:.4f}" for x in v["final"])
        reach = ", ".join("-" if x is None else str(x) for x in v["evaluations_to_random_final"])
        lines.append(
            f"| {STRATEGY_NAMES.get(name, name)} | {v['final_mean']:.4f} ± {v['final_std']:.4f} ({per_seed}) | "
            f"{v['at_half_mean']:.4f} | {reach} | {v['front_size_mean']:.1f} | {v['overhead_seconds_per_run']:.0f} s |"
        )
    lines += [
        "",
        "An evaluation is one subnet's accuracy on the validation split; \"-\": random search's final mean was not "
        "reached within the budget. The overhead is the wall time of a run minus its accuracy evaluations (strategy, "
        "screening, MACs, results files); accuracies cached from an earlier run cost no time but count as real "
        "evaluations.",
        "",
    ]
    diagnostics = {
        name: [run["controller"] for run in runs if "controller" in run] for name, runs in r["runs"].items()
    }
    diagnostics = {name: d for name, d in diagnostics.items() if d}
    short = {
        name: [run["evaluations"] for run in runs]
        for name, runs in r["runs"].items()
        if any(run.get("evaluations", n) < n for run in runs)
    }
    for name, counts in short.items():
        lines += [
            f"{STRATEGY_NAMES.get(name, name)} stopped proposing new subnets before {n} evaluations on some seeds "
            f"(evaluations made per seed: {', '.join(map(str, counts))}: its controller had converged to subnets "
            "already measured); its curve keeps its last hypervolume.",
            "",
        ]
    if diagnostics:
        lines += [
            f"ENAS's reward is validation accuracy minus {ENAS_COST_WEIGHT} x each cost relative to the full model's "
            f"(the buffered controller replays {ENAS_BUFFER['replay_size']} of its last {ENAS_BUFFER['buffer_size']} "
            "(subnet, reward) pairs at each update). The controller diagnostic: the Spearman correlation, over pairs of "
            "100 subnets drawn from the final controller, between the distance of its hidden states and the distance "
            "of the subnets they produced (near 0: the hidden state does not encode the decisions).",
            "",
            "| strategy | hidden-state vs architecture distance, Spearman (per seed) |",
            "|---|---|",
        ]
        for name, values in diagnostics.items():
            per_seed = ", ".join(f"{d['spearman']:+.3f}" for d in values)  # nan: every drawn subnet the same
            finite = [d["spearman"] for d in values if d["spearman"] == d["spearman"]]
            mean = f"{sum(finite) / len(finite):+.3f}" if finite else "nan"
            lines.append(f"| {STRATEGY_NAMES.get(name, name)} | {mean} ({per_seed}) |")
        lines += [
            "",
            "nan: the 100 subnets drawn from the final controller were all the same (it had converged).",
        ]
        lines.append("")
    lines += [
        "## Chosen subnets on the dev set",
        "",
        "Each seed's most accurate subnet on the validation split with MACs at most the budget, evaluated on dev; the "
        "interval is paired over the dev examples (the seeds averaged per example), 95% bootstrap, against random "
        "search's choices.",
        "",
        "| MAC budget | strategy | dev accuracy, mean (per seed) | validation accuracy, mean | vs random (points) |",
        "|---|---|---|---|---|",
    ]
    for budget, entry in r["chosen"].items():
        for name, v in entry.items():
            if v["dev_mean"] is None:
                lines.append(f"| {float(budget):.0%} | {STRATEGY_NAMES.get(name, name)} | - | - | - |")
                continue
            per_seed = ", ".join(f"{100 * p['dev']:.2f}" for p in v["picks"])
            ci = v.get("minus_random")
            ci_text = "-" if ci is None else f"{ci['diff']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]"
            lines.append(
                f"| {float(budget):.0%} | {STRATEGY_NAMES.get(name, name)} | {100 * v['dev_mean']:.2f}% ({per_seed}) | "
                f"{100 * v['validation_mean']:.2f}% | {ci_text} |"
            )
    lines += [
        "",
        f"Full model: dev {100 * r['full_model']['dev']:.2f}%, validation {100 * r['full_model']['validation']:.2f}%.",
        "",
        "## Latency that is true",
        "",
        "Per-layer tables (attention at each head count, FFN at each width, at each hidden size) plus a correction "
        "`scale x parts + offset + per-layer x depth` fitted on whole-model measurements of the largest, the smallest and seeded random "
        "subnets. Every time is paired: the subnet and the whole model (the fixed reference) are timed in alternating "
        "blocks and the median ratio is scaled by the reference's latency measured when the table was built, so load "
        "drift cancels (drift-corrected); raw is the plain median. The check subnets are seeded random subnets "
        "disjoint from the correction's by construction; each is measured twice, in two passes (test, retest).",
        "",
        "| batch x tokens | predictor error median / p90 (drift-corrected) | test-retest median / p90 (drift-corrected) | "
        "predictor error median (raw) | test-retest median (raw) | correction (scale, offset, per layer) | fit error median | "
        "median latency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lat in r["latency"]:
        p, q = lat["predictor_error"], lat["test_retest_error"]
        lines.append(
            f"| {lat['batch_size']} x {a['sequence_length']} | {100 * p['median']:.1f}% / {100 * p['p90']:.1f}% | "
            f"{100 * q['median']:.1f}% / {100 * q['p90']:.1f}% | {100 * lat['predictor_error_raw']['median']:.1f}% | "
            f"{100 * lat['test_retest_error_raw']['median']:.1f}% | {lat['scale']:.3f}, {lat['offset']:+.2f} ms, "
            f"{lat['per_layer_ms']:+.2f} ms "
            f"({lat['correction_subnets']} subnets) | {100 * lat['correction_fit_error']['median']:.1f}% | "
            f"{lat['median_latency_ms']:.1f} ms |"
        )
    lines += [
        "",
        "## Throughput",
        "",
        f"One screening round of 1,000 candidates (NSGA-II on predictions: the GBRT accuracy predictor fitted on "
        f"{th['fitted_on']} measured subnets, the batch-{a['search_latency_batch_size']} latency table, exact MACs): "
        f"{th['seconds']:.1f} s, {th['candidates'] / th['seconds']:.0f} candidates/s (predictor fit "
        f"{th['fit_seconds']:.2f} s). A real evaluation (validation accuracy, not cached) took "
        f"{th['evaluation_seconds']:.2f} s (median of {th['evaluations_timed']}). 1,000 screened candidates plus 100 "
        f"real evaluations: {th['seconds']:.1f} + 100 x {th['evaluation_seconds']:.2f} = "
        f"{th['composed_seconds']:.0f} s (composed from these two measurements).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse_args(SearchBenchArguments)
    setup_logging()
    logging.getLogger("hf_nas").setLevel(logging.INFO)
    set_seed(0)
    started = time.perf_counter()
    bench = Bench(args)
    budgets = [float(b) for b in args.mac_budgets.split(",")]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]

    latency = [latency_summary(bench.latency_check(b)) for b in bench.batch_sizes]
    objectives = bench.objectives()
    accuracy, macs, predicted = objectives
    full = bench.model.search_space.largest()
    reference = [
        accuracy.reference_value(bench.model),
        macs.reference_value(bench.model),
        predicted(bench.model, full),
    ]
    logger.info("reference point (fixed in advance): %s", reference)

    runs = {name: [bench.run(name, seed, objectives, reference) for seed in range(args.seeds)] for name in strategies}
    for rows in runs.values():
        for row in rows:  # a strategy that stopped proposing new subnets early keeps its last hypervolume
            row["evaluations"] = len(row["curve"])
            row["curve"] = row["curve"] + row["curve"][-1:] * (args.num_evaluations - len(row["curve"]))
    search = search_summary(runs, args.num_evaluations)
    chosen = chosen_subnets(bench, runs, reference[1], budgets)
    fitted_on = runs["linas"][0] if "linas" in runs else next(iter(runs.values()))[0]
    throughput = dict(bench.throughput(objectives, fitted_on))
    timings = [v["seconds"] for v in accuracy.cache.values()]
    throughput["evaluation_seconds"] = float(statistics.median(timings))
    throughput["evaluations_timed"] = len(timings)
    throughput["composed_seconds"] = throughput["seconds"] + 100 * throughput["evaluation_seconds"]

    plot_name = "search_anytime.png"
    os.makedirs(args.output_dir, exist_ok=True)
    result = {
        **environment(),
        "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs",
        "versions": versions(),
        "supernet": args.supernet,
        "settings": {k: v for k, v in vars(args).items() if k not in ("output_dir", "work_dir")},
        "validation_rows": len(bench.validation),
        "dev_rows": len(bench.dev),
        "search_space": bench.space.to_dict(),
        "reference_point": reference,
        "ideal_point": [1.0, 0.0, 0.0],
        "objectives": [o.describe() for o in objectives],
        "full_model": {
            "validation": accuracy(bench.model, full),
            "dev": float(np.mean(bench.dev_correct(full))),
            "macs": reference[1],
            "predicted_latency_ms": reference[2],
        },
        "targets": TARGETS,
        "search": search,
        "chosen": chosen,
        "latency": latency,
        "throughput": throughput,
        "runs": {name: [{k: v for k, v in r.items() if k != "records"} for r in rows] for name, rows in runs.items()},
        "plot": plot_name,
        "wall_seconds": time.perf_counter() - started,
    }
    plot(result, os.path.join(args.output_dir, plot_name))
    write_results(args.output_dir, "search", result, render_markdown(result))


if __name__ == "__main__":
    main()
