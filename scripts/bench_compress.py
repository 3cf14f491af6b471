"""Compression benchmark on SST-2, written to docs/benchmarks/compress.{json,md}.

The subnet: the one the supernet benchmark selected at about 50% of the MACs (the most accurate on its validation split
among its evaluated subnets with MACs in (40%, 50%]) from its one-pass supernet (`<supernet_work_dir>/models/one_pass`,
`<supernet_work_dir>/rows/one_pass_subnets.json`; `make bench-supernet` makes them), extracted as an ordinary
checkpoint: the **dense subnet**, the reference of every row. The data split is the supernet benchmark's (same seed and
sizes): training rows for the searches, fine-tunings and calibration, held-out training rows (validation) to select
the learning rate or granularity of each method, the official dev set (872 rows) for every reported number, each gap
with a paired 95% bootstrap interval over the dev examples.

Rows:
- `magnitude_<s>`: global magnitude pruning to sparsity s (50/70/90%), no training.
- `magnitude_ft_<s>_<lr>`: the same, then `--search_steps` steps of fine-tuning the weights (zeros kept) with the task
  loss plus distillation from the dense subnet: the baseline at the same budget as the jackpot search.
- `jackpot_<s>_<lr>`: the Lottery Jackpots mask search, the same steps, data, loss and teacher; no weight trained.
- `uniform_<b>`, `nupes_<b>_<granularity>`, `nupes_free_<b>`: round-to-nearest per channel; NUPES with block-wise
  reconstruction on `--calibration_samples` training rows; NUPES data-free; at 8, 4 and 3 bits.
- `torchao`: torchao's weight-only int8 and int4 on the same weights, run in a subprocess that imports torchao from
  `--torchao_path` (installed there apart, since importing torchao changes what transformers imports everywhere);
  skipped with the reason when it cannot run.
- `onnx`: ONNX Runtime (fp32 and int8 dynamic quantization) accuracy, and latency vs PyTorch fp32 at batch 1 and 8,
  sequence 128, all measured with the protocol of `hf_nas.time_forward`.

Every finished row is written at once to `<work_dir>/rows/<name>.json` and reused by a rerun, so a stopped run
continues.

    python scripts/bench_compress.py --supernet_work_dir /tmp/hf_nas_bench_supernet
    python scripts/bench_compress.py --rows report      # only assemble the report from finished rows
    make bench-compress-long   # the longer-search lever: 70%, 1000 steps, its own work dir and report
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from bench_common import (
    ROOT,
    BenchArguments,
    Rows,
    met,
    paired_interval,
    parse_args,
    run_record,
    setup_logging,
    within,
    write_results,
)
from bench_supernet import Bench, SupernetBenchArguments, correct, load_splits
from transformers import AutoTokenizer, DataCollatorWithPadding

from hf_nas import ElasticBertForSequenceClassification, SubnetConfig, count_macs, time_forward
from hf_nas.compression import (
    DistillationConfig,
    JackpotConfig,
    NupesConfig,
    OnnxRuntimeModel,
    export_onnx,
    finetune_sparse,
    jackpot_prune,
    magnitude_masks,
    magnitude_prune,
    measure_onnx_latency,
    nupes_quantize,
    prunable_weights,
    quantize_onnx,
    uniform_quantize,
)
from hf_nas.utils import checkpoint_name, default_text_checkpoint

logger = logging.getLogger("hf_nas.bench_compress")
TARGETS = {"jackpot_gap_at_70": 1.0, "nupes_gap_at_4": 1.0, "onnx_int8_speedup_at_batch_1": 2.0}
LATENCY_BATCHES = (1, 8)
LATENCY_SEQUENCE_LENGTH = 128


@dataclass
class CompressBenchArguments(BenchArguments):
    work_dir: str = field(default="/tmp/hf_nas_bench_compress", metadata={"help": "Models and finished rows."})
    supernet_work_dir: str = field(
        default=SupernetBenchArguments.__dataclass_fields__["work_dir"].default,
        metadata={"help": "The supernet benchmark's work dir: its one-pass supernet and evaluated subnets."},
    )
    validation_samples: int = field(
        default=1000, metadata={"help": "Training rows held out (as in the supernet benchmark) to select on."}
    )
    mac_point: float = field(
        default=0.5, metadata={"help": "The subnet: the supernet benchmark's pick at this MAC share."}
    )
    sparsities: str = field(default="0.5,0.7,0.9", metadata={"help": "Comma-separated sparsities."})
    search_steps: int = field(default=300, metadata={"help": "Steps of each jackpot search and sparse fine-tuning."})
    jackpot_learning_rates: str = field(
        default="1e-4,5e-4,2e-3",
        metadata={"help": "Score learning rates tried (comma-separated); the best on validation is reported."},
    )
    finetune_learning_rates: str = field(
        default="5e-5,1e-4",
        metadata={"help": "Weight learning rates of the baseline (comma-separated), selected the same way."},
    )
    swap_share: float = field(default=0.5, metadata={"help": "Jackpot short restriction: initial swap share."})
    bits: str = field(default="8,4,3", metadata={"help": "Comma-separated bit widths."})
    calibration_samples: int = field(default=256, metadata={"help": "NUPES calibration rows (training rows)."})
    reconstruction_steps: int = field(default=200, metadata={"help": "NUPES steps per encoder layer."})
    end_to_end_steps: int = field(
        default=0,
        metadata={
            "help": "NUPES end-to-end distillation steps after the block reconstruction (0: off); a run with other "
            "NUPES settings belongs in its own --work_dir."
        },
    )
    end_to_end_learning_rate: float = field(default=1e-4, metadata={"help": "Their learning rate."})
    latency_min_run_time: float = field(default=1.0, metadata={"help": "Seconds per latency round."})
    bootstrap_samples: int = 2000
    torchao_path: str = field(
        default=os.path.join(ROOT, ".venv", "torchao"),
        metadata={
            "help": "A folder holding torchao (pip install --no-deps --target <it> torchao), imported only there."
        },
    )
    rows: str = field(
        default="all", metadata={"help": "Comma-separated groups: sparsity, quantization, torchao, onnx, report, all."}
    )
    report_name: str = field(
        default="compress",
        metadata={
            "help": "The report's file name in --output_dir (<name>.json and <name>.md); a run with other settings "
            "(e.g. longer searches in their own --work_dir) gets its own report beside the published one."
        },
    )
    measure: str | None = field(default=None, metadata={"help": "Internal: run the torchao subprocess."})


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def accuracy(values: list[int]) -> float:
    return 100 * sum(values) / len(values)


class CompressBench:
    def __init__(self, args: CompressBenchArguments):
        self.args = args
        self.path = args.model_name_or_path or default_text_checkpoint()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.collator = DataCollatorWithPadding(self.tokenizer)
        self.splits = load_splits(args, self.tokenizer)
        self.rows = Rows(args.work_dir)
        self.dense_dir = os.path.join(args.work_dir, "models", "dense")

    # -- the dense subnet -------------------------------------------------------------------------------------------
    def subnet(self) -> dict:
        """The supernet benchmark's selection at `mac_point`, extracted and saved to `<work_dir>/models/dense`."""

        def run():
            folder = os.path.join(self.args.supernet_work_dir, "models", "one_pass")
            evaluated = Rows(self.args.supernet_work_dir).get("one_pass_subnets")
            if evaluated is None or not os.path.isfile(os.path.join(folder, "config.json")):
                raise FileNotFoundError(
                    f"The compression benchmark starts from the supernet benchmark's one-pass supernet ({folder}) and "
                    f"its evaluated subnets ({self.args.supernet_work_dir}/rows/one_pass_subnets.json); make them with "
                    "`make bench-supernet` (or `python scripts/bench_supernet.py --work_dir DIR`), then pass "
                    "--supernet_work_dir DIR."
                )
            key, chosen = Bench.select(evaluated["subnets"], self.args.mac_point)
            subnet = SubnetConfig.from_dict(json.loads(key))
            supernet = ElasticBertForSequenceClassification.from_pretrained(folder).eval()
            dense = supernet.extract_subnet(subnet).eval()
            dense.save_pretrained(self.dense_dir)
            self.tokenizer.save_pretrained(self.dense_dir)
            n = LATENCY_SEQUENCE_LENGTH
            ratio = count_macs(supernet, subnet, sequence_length=n) / count_macs(supernet, sequence_length=n)
            return {"subnet": subnet.to_dict(), "mac_ratio": ratio, "class": type(dense).__name__, "supernet": folder}

        row = self.rows.compute("subnet", run)
        if not os.path.isfile(os.path.join(self.dense_dir, "config.json")):
            raise RuntimeError(f"The subnet row exists but {self.dense_dir} is gone: delete the row to extract again.")
        return row

    def dense(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(self.dense_dir, trust_remote_code=True).eval()

    def scores(self, model) -> dict:
        return {
            "validation": correct(model, self.splits["validation"], self.tokenizer),
            "dev": correct(model, self.splits["dev"], self.tokenizer),
        }

    # -- sparsity -----------------------------------------------------------------------------------------------------
    def sparsity_rows(self) -> None:
        self.subnet()
        self.rows.compute("dense", lambda: self.scores(self.dense()))
        a = self.args
        for s in floats(a.sparsities):

            def magnitude(s=s):
                model = self.dense()
                report = magnitude_prune(model, s)
                return {"sparsity": report.share, **self.scores(model)}

            self.rows.compute(f"magnitude_{s}", magnitude)
            for lr in floats(a.finetune_learning_rates):

                def finetune(s=s, lr=lr):
                    teacher, model = self.dense(), self.dense()
                    magnitude_prune(model, s)
                    config = self.training_config(DistillationConfig, lr)
                    start = time.perf_counter()
                    report = finetune_sparse(
                        model,
                        train_dataset=self.splits["train"],
                        data_collator=self.collator,
                        config=config,
                        teacher=teacher,
                    )
                    seconds = time.perf_counter() - start
                    return {
                        "sparsity": report.share,
                        "train_seconds": seconds,
                        "config": config.to_dict(),
                        **self.scores(model),
                    }

                self.rows.compute(f"magnitude_ft_{s}_{lr:g}", finetune)
            for lr in floats(a.jackpot_learning_rates):

                def jackpot(s=s, lr=lr):
                    teacher, model = self.dense(), self.dense()
                    initial = magnitude_masks(prunable_weights(model), s)
                    config = self.training_config(JackpotConfig, lr, swap_share=a.swap_share)
                    start = time.perf_counter()
                    report = jackpot_prune(
                        model,
                        s,
                        train_dataset=self.splits["train"],
                        data_collator=self.collator,
                        config=config,
                        teacher=teacher,
                    )
                    seconds = time.perf_counter() - start
                    changed = sum(int(((w == 0) != initial[n]).sum()) for n, w in prunable_weights(model).items())
                    return {
                        "sparsity": report.share,
                        "train_seconds": seconds,
                        "mask_changed_vs_magnitude": changed / 2 / report.total,
                        "config": config.to_dict(),
                        **self.scores(model),
                    }

                self.rows.compute(f"jackpot_{s}_{lr:g}", jackpot)

    def training_config(self, cls, learning_rate: float, **extra):
        a = self.args
        return cls(
            max_steps=a.search_steps,
            learning_rate=learning_rate,
            batch_size=a.batch_size,
            seed=a.seed,
            logging_steps=max(1, a.search_steps // 10),
            **extra,
        )

    # -- quantization -------------------------------------------------------------------------------------------------
    def quantization_rows(self) -> None:
        self.subnet()
        self.rows.compute("dense", lambda: self.scores(self.dense()))
        a = self.args
        calibration = self.splits["train"].select(range(min(a.calibration_samples, len(self.splits["train"]))))
        for b in [int(x) for x in floats(a.bits)]:

            def uniform(b=b):
                model = self.dense()
                report = uniform_quantize(model, b)
                return {"errors": report.errors, **self.scores(model)}

            self.rows.compute(f"uniform_{b}", uniform)

            def free(b=b):
                model = self.dense()
                report = nupes_quantize(model, b, config=NupesConfig(data_free=True))
                return {"errors": report.errors, **self.scores(model)}

            self.rows.compute(f"nupes_free_{b}", free)
            for granularity in ("channel", "layer"):

                def nupes(b=b, granularity=granularity):
                    model = self.dense()
                    config = NupesConfig(
                        granularity=granularity,
                        calibration_samples=a.calibration_samples,
                        batch_size=a.batch_size,
                        steps=a.reconstruction_steps,
                        end_to_end_steps=a.end_to_end_steps,
                        end_to_end_learning_rate=a.end_to_end_learning_rate,
                    )
                    start = time.perf_counter()
                    report = nupes_quantize(
                        model, b, config=config, calibration_dataset=calibration, data_collator=self.collator
                    )
                    seconds = time.perf_counter() - start
                    return {
                        "errors": report.errors,
                        "block_errors": report.settings["block_errors"],
                        "end_to_end": report.settings.get("end_to_end"),
                        "calibration_seconds": seconds,
                        "config": config.to_dict(),
                        **self.scores(model),
                    }

                self.rows.compute(f"nupes_{b}_{granularity}", nupes)

    # -- torchao --------------------------------------------------------------------------------------------------------
    def torchao_rows(self) -> None:
        self.subnet()

        def run():
            argv = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--measure", "torchao"]
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
            row = self.rows.get("torchao_measured")
            if proc.returncode != 0 or row is None:
                return {"skipped": f"the torchao subprocess failed: {proc.stderr.strip().splitlines()[-1:]}"}
            return row

        self.rows.compute("torchao", run)

    def torchao_measure(self) -> None:
        """In the subprocess: torchao's weight-only quantizations of the encoder linears, each or the reason it did not
        run."""
        if os.path.isdir(self.args.torchao_path):
            sys.path.insert(0, self.args.torchao_path)
        result: dict = {"path": self.args.torchao_path}
        try:
            import torchao
            from torchao.quantization import (
                Int4WeightOnlyConfig,
                Int8WeightOnlyConfig,
                IntxWeightOnlyConfig,
                quantize_,
            )
            from torchao.quantization.granularity import PerAxis
        except Exception as e:  # noqa: BLE001 - any import failure is a reason to record
            self.rows.put("torchao_measured", {"skipped": f"torchao does not import: {type(e).__name__}: {e}"})
            return
        result["version"] = torchao.__version__
        configs = {
            "int8_weight_only": lambda: Int8WeightOnlyConfig(),
            "int4_weight_only": lambda: Int4WeightOnlyConfig(),
            "intx_int4_per_channel": lambda: IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerAxis(0)),
        }
        for name, make in configs.items():
            model = self.dense()
            names = set(prunable_weights(model))
            targets = {id(m) for n, m in model.named_modules() if f"{n}.weight" in names}
            try:
                quantize_(model, make(), filter_fn=lambda m, fqn, targets=targets: id(m) in targets)
                result[name] = {"config": repr(make()), **self.scores(model)}
            except Exception as e:  # noqa: BLE001 - e.g. a kernel that does not exist on this CPU
                result[name] = {"skipped": f"{type(e).__name__}: {e}"}
        self.rows.put("torchao_measured", result)

    # -- ONNX -------------------------------------------------------------------------------------------------------------
    def onnx_rows(self) -> None:
        self.subnet()
        folder = os.path.join(self.args.work_dir, "models", "onnx")

        def accuracy_row():
            dense = self.dense()
            os.makedirs(folder, exist_ok=True)
            exported = export_onnx(dense, os.path.join(folder, "model.onnx"))
            int8 = quantize_onnx(exported.path, os.path.join(folder, "model_quantized.onnx"))
            return {
                "export": exported.to_dict(),
                "fp32": self.scores(OnnxRuntimeModel(exported.path, dense.config)),
                "int8": self.scores(OnnxRuntimeModel(int8, dense.config)),
            }

        self.rows.compute("onnx_accuracy", accuracy_row)

        def latency_row():
            dense = self.dense()
            threads = torch.get_num_threads()
            out = {"num_threads": threads, "sequence_length": LATENCY_SEQUENCE_LENGTH}
            for batch in LATENCY_BATCHES:
                common = {
                    "batch_size": batch,
                    "sequence_length": LATENCY_SEQUENCE_LENGTH,
                    "num_threads": threads,
                    "min_run_time": self.args.latency_min_run_time,
                }
                out[f"batch_{batch}"] = {
                    "pytorch_fp32": time_forward(dense, **common).to_dict(),
                    "onnxruntime_fp32": measure_onnx_latency(
                        os.path.join(folder, "model.onnx"), dense.config, **common
                    ).to_dict(),
                    "onnxruntime_int8": measure_onnx_latency(
                        os.path.join(folder, "model_quantized.onnx"), dense.config, **common
                    ).to_dict(),
                }
            return out

        self.rows.compute("onnx_latency", latency_row)


# ------------------------------------------------------------------------------------------------------------------
# the report
def above(interval: dict) -> str:
    """Whether a difference (method - baseline) is above 0, read from its interval."""
    if interval["low"] > 0:
        return "met"
    if interval["high"] < 0:
        return "NOT met"
    return "unresolved (the interval spans 0)"


def report(bench: CompressBench, args: CompressBenchArguments) -> dict:
    rows = bench.rows
    dense = rows.get("dense")
    subnet = rows.get("subnet")
    if dense is None or subnet is None:
        raise RuntimeError("No finished rows: run the benchmark first (--rows all).")

    def ci(a: list[int], b: list[int]) -> dict:
        return paired_interval(a, b, args.bootstrap_samples, args.seed)

    def entry(row: dict, **extra) -> dict:
        out = {
            "validation": accuracy(row["validation"]),
            "dev": accuracy(row["dev"]),
            "minus_dense": ci(row["dev"], dense["dev"]),
        }
        out.update({k: v for k, v in row.items() if k not in ("validation", "dev")})
        out.update(extra)
        return out

    def select(prefix: str, candidates: list[float]) -> tuple[dict | None, dict | None]:
        """The candidate of best validation accuracy (ties: the first) and its row."""
        found = [(lr, rows.get(f"{prefix}_{lr:g}")) for lr in candidates]
        found = [(lr, r) for lr, r in found if r is not None]
        if not found:
            return None, None
        lr, row = max(found, key=lambda item: sum(item[1]["validation"]))
        return entry(row, selected=lr, candidates={f"{c:g}": accuracy(r["validation"]) for c, r in found}), row

    sparsity = []
    for s in floats(args.sparsities):
        magnitude = rows.get(f"magnitude_{s}")
        if magnitude is None:
            continue
        point = {"sparsity": s, "magnitude": entry(magnitude)}
        ft, ft_row = select(f"magnitude_ft_{s}", floats(args.finetune_learning_rates))
        jp, jp_row = select(f"jackpot_{s}", floats(args.jackpot_learning_rates))
        if ft:
            point["magnitude_finetuned"] = ft
        if jp:
            point["jackpot"] = jp
            point["jackpot_minus_magnitude"] = ci(jp_row["dev"], magnitude["dev"])
            if ft_row:
                point["jackpot_minus_magnitude_finetuned"] = ci(jp_row["dev"], ft_row["dev"])
        sparsity.append(point)

    quantization = []
    for b in [int(x) for x in floats(args.bits)]:
        uniform = rows.get(f"uniform_{b}")
        if uniform is None:
            continue
        point = {"bits": b, "uniform": entry(uniform)}
        free = rows.get(f"nupes_free_{b}")
        if free:
            point["nupes_data_free"] = entry(free)
        found = [(g, rows.get(f"nupes_{b}_{g}")) for g in ("channel", "layer")]
        found = [(g, r) for g, r in found if r is not None]
        if found:
            g, row = max(found, key=lambda item: sum(item[1]["validation"]))
            point["nupes"] = entry(row, selected=g, candidates={c: accuracy(r["validation"]) for c, r in found})
            point["nupes_minus_uniform"] = ci(row["dev"], uniform["dev"])
        quantization.append(point)

    torchao = rows.get("torchao")
    if torchao is not None:
        torchao = {k: (entry(v) if isinstance(v, dict) and "dev" in v else v) for k, v in torchao.items()}
    onnx_accuracy = rows.get("onnx_accuracy")
    onnx = None
    if onnx_accuracy is not None:
        onnx = {
            "export": onnx_accuracy["export"],
            "fp32": entry(onnx_accuracy["fp32"]),
            "int8": entry(onnx_accuracy["int8"]),
            "latency": rows.get("onnx_latency"),
        }
        latency = onnx["latency"]
        if latency is not None:
            for batch in LATENCY_BATCHES:
                b = latency[f"batch_{batch}"]
                torch_ms = b["pytorch_fp32"]["median_ms"]
                b["speedup_vs_pytorch_fp32"] = {
                    k: torch_ms / v["median_ms"] for k, v in b.items() if k.startswith("onnxruntime")
                }
    record = run_record()
    return {
        "command": record["command"],
        "commit": record["commit"],
        "machine": record["machine"],
        "versions": {**record["versions"], **optional_versions()},
        "model": checkpoint_name(bench.path),
        "settings": {
            **{k: v for k, v in dataclasses.asdict(args).items() if k not in ("measure", "rows", "report_name")},
            "data_dir": os.path.relpath(args.data_dir, ROOT),
            "output_dir": os.path.relpath(args.output_dir, ROOT),
        },
        "targets": TARGETS,
        "dev_samples": len(bench.splits["dev"]),
        "subnet": subnet,
        "dense": {"validation": accuracy(dense["validation"]), "dev": accuracy(dense["dev"])},
        "sparsity": sparsity,
        "quantization": quantization,
        "torchao": torchao,
        "onnx": onnx,
    }


def optional_versions() -> dict:
    out = {}
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def end_to_end_words(s: dict) -> str:
    steps = s.get("end_to_end_steps", 0)
    if not steps:
        return ""
    return f", then {steps} end-to-end distillation steps at learning rate {s.get('end_to_end_learning_rate', 1e-4)}"


def render_markdown(r: dict) -> str:
    s, t = r["settings"], r["targets"]

    def iv(x: dict) -> str:
        return f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"

    def cell(e: dict | None) -> str:
        return "-" if e is None else f"{e['dev']:.2f} ({iv(e['minus_dense'])})"

    sub = r["subnet"]["subnet"]
    lines = [
        "# Compression benchmark (SST-2)",
        "",
        f"Generated by `{r['command']}` at commit `{r['commit']}` on {r['machine']}; torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}, onnxruntime {r['versions'].get('onnxruntime')}, hf-nas "
        f"{r['versions']['hf_nas']}.",
        "",
        f"The **dense subnet**: the supernet benchmark's one-pass supernet's subnet at {100 * s['mac_point']:.0f}% of "
        f"the MACs (selected there on its validation split), {100 * r['subnet']['mac_ratio']:.1f}% of the full model's "
        f"MACs at {LATENCY_SEQUENCE_LENGTH} tokens: layers {sub['layers']}, heads {sorted(set(sub['num_attention_heads']))}, "
        f"FFN {sorted(set(sub['intermediate_size']))}, hidden {sub['hidden_size']} ({r['subnet']['class']}). Dev accuracy "
        f"**{r['dense']['dev']:.2f}** ({r['dev_samples']} rows). Data: the supernet benchmark's split ({s['train_samples']} "
        f"seeded training rows for the searches, fine-tunings and calibration; {s['validation_samples']} held-out training "
        "rows that **select** each method's learning rate or granularity; the dev set for every **reported** number). "
        f"Cells: dev accuracy (difference to the dense subnet, paired 95% bootstrap interval, {s['bootstrap_samples']} "
        "resamples). One seed. Sparse and quantized checkpoints store dense float weights: their PyTorch speed is the "
        "dense subnet's.",
        "",
        "## Targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
    ]
    sp70 = next((p for p in r["sparsity"] if abs(p["sparsity"] - 0.7) < 1e-9), None)
    if sp70 and "jackpot" in sp70:
        lines.append(
            f"| jackpots at 70% within {t['jackpot_gap_at_70']:g} point of dense | {iv(sp70['jackpot']['minus_dense'])} | "
            f"{within(sp70['jackpot']['minus_dense'], t['jackpot_gap_at_70'])} |"
        )
        if "jackpot_minus_magnitude_finetuned" in sp70:
            lines.append(
                "| jackpots at 70% above magnitude pruning at equal budget (fine-tuned) | "
                f"{iv(sp70['jackpot_minus_magnitude_finetuned'])} | {above(sp70['jackpot_minus_magnitude_finetuned'])} |"
            )
    q4 = next((p for p in r["quantization"] if p["bits"] == 4), None)
    if q4 and "nupes" in q4:
        lines.append(
            f"| NUPES 4-bit within {t['nupes_gap_at_4']:g} point of fp32 | {iv(q4['nupes']['minus_dense'])} | "
            f"{within(q4['nupes']['minus_dense'], t['nupes_gap_at_4'])} |"
        )
        lines.append(
            f"| NUPES 4-bit above uniform 4-bit | {iv(q4['nupes_minus_uniform'])} | {above(q4['nupes_minus_uniform'])} |"
        )
    latency = (r["onnx"] or {}).get("latency")
    if latency:
        speedup = latency["batch_1"]["speedup_vs_pytorch_fp32"]["onnxruntime_int8"]
        lines.append(
            f"| ONNX Runtime int8 >= {t['onnx_int8_speedup_at_batch_1']:g}x faster than PyTorch fp32 at batch 1 | "
            f"{speedup:.2f}x | {met(speedup, t['onnx_int8_speedup_at_batch_1'], higher_is_better=True)} |"
        )
    sparsity = [
        "",
        f"## Sparsity: Lottery Jackpots vs magnitude pruning ({s['search_steps']} steps, batch {s['batch_size']})",
        "",
        "Jackpot: the mask of the frozen weights searched (scores, straight-through mask, magnitude initialization, "
        f"short restriction with initial swap share {s['swap_share']} decaying with a cosine), loss: cross-entropy + "
        "distillation from the dense subnet (T=2). Magnitude + fine-tuning: the same steps, data, loss and teacher "
        "training the weights (zeros kept), AdamW, linear schedule. Learning rates selected on validation "
        f"(jackpot: {s['jackpot_learning_rates']}; fine-tuning: {s['finetune_learning_rates']}).",
        "",
        "| Sparsity | Magnitude | Magnitude + fine-tuning | Jackpot | Jackpot - magnitude (fine-tuned) | Mask moved | Seconds (ft / jackpot) |",
        "|---:|---|---|---|---|---:|---|",
    ]
    for p in r["sparsity"]:
        ft, jp = p.get("magnitude_finetuned"), p.get("jackpot")
        moved = f"{100 * jp['mask_changed_vs_magnitude']:.2f}%" if jp else "-"
        seconds = f"{ft['train_seconds']:.0f} / {jp['train_seconds']:.0f}" if ft and jp else "-"
        lr = lambda e: "" if e is None else f", lr {e['selected']:g}"  # noqa: E731
        sparsity.append(
            f"| {100 * p['sparsity']:.0f}% | {cell(p['magnitude'])} | {cell(ft)}{lr(ft)} | {cell(jp)}{lr(jp)} | "
            f"{iv(p['jackpot_minus_magnitude_finetuned']) if 'jackpot_minus_magnitude_finetuned' in p else '-'} | {moved} | "
            f"{seconds} |"
        )
    sparsity += [
        "",
        "Mask moved: the share of weights whose kept/pruned state differs from magnitude pruning's, per side.",
    ]
    quantization = [
        "",
        f"## Quantization: NUPES vs uniform (calibration: {s['calibration_samples']} training rows, "
        f"{s['reconstruction_steps']} steps per layer{end_to_end_words(s)})",
        "",
        "| Bits | Uniform (RTN per channel) | NUPES data-free | NUPES (block reconstruction) | NUPES - uniform |",
        "|---:|---|---|---|---|",
    ]
    for p in r["quantization"]:
        nupes = p.get("nupes")
        sel = f", {nupes['selected']} exponents" if nupes else ""
        quantization.append(
            f"| {p['bits']} | {cell(p['uniform'])} | {cell(p.get('nupes_data_free'))} | {cell(nupes)}{sel} | "
            f"{iv(p['nupes_minus_uniform']) if 'nupes_minus_uniform' in p else '-'} |"
        )
    lines += sparsity if r["sparsity"] else []  # a run without these rows shows no empty table
    lines += quantization if r["quantization"] else []
    ao = r.get("torchao")
    if ao:
        version = f"torchao {ao['version']}, " if "version" in ao else ""
        lines += ["", f"torchao weight-only baselines ({version}the same encoder linears, in a subprocess):", ""]
        if "skipped" in ao:
            lines.append(f"- skipped: {ao['skipped']}")
        for name in ("int8_weight_only", "int4_weight_only", "intx_int4_per_channel"):
            e = ao.get(name)
            if e is None:
                continue
            lines.append(f"- `{name}`: " + (f"skipped ({e['skipped']})" if "skipped" in e else cell(e)))
    onnx = r.get("onnx")
    if onnx:
        lines += [
            "",
            "## ONNX Runtime",
            "",
            f"Exported with `torch.onnx` ({onnx['export']['exporter']} exporter, opset {onnx['export']['opset']}); "
            f"ONNX Runtime vs PyTorch max abs difference {onnx['export']['max_abs_diff']:.1e}. Accuracy: fp32 "
            f"{cell(onnx['fp32'])}, int8 dynamic quantization {cell(onnx['int8'])}.",
        ]
        if latency:
            lines += [
                "",
                f"Latency (median ms, {latency['num_threads']} threads, sequence {latency['sequence_length']}, "
                "hf_nas.time_forward protocol; speed-up vs PyTorch fp32):",
                "",
                "| Batch | PyTorch fp32 | ONNX Runtime fp32 | ONNX Runtime int8 |",
                "|---:|---:|---:|---:|",
            ]
            for batch in LATENCY_BATCHES:
                b = latency[f"batch_{batch}"]
                sp = b["speedup_vs_pytorch_fp32"]

                def ms(k, b=b):
                    noisy = " (noisy)" if b[k].get("noisy") else ""
                    return f"{b[k]['median_ms']:.2f}{noisy}"

                lines.append(
                    f"| {batch} | {ms('pytorch_fp32')} | {ms('onnxruntime_fp32')} ({sp['onnxruntime_fp32']:.2f}x) | "
                    f"{ms('onnxruntime_int8')} ({sp['onnxruntime_int8']:.2f}x) |"
                )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    args = parse_args(CompressBenchArguments)
    setup_logging()
    torch.manual_seed(args.seed)
    bench = CompressBench(args)
    if args.measure == "torchao":
        bench.torchao_measure()
        return
    if not args.report_name or os.sep in args.report_name or args.report_name.startswith("."):
        raise ValueError(f"--report_name must be a plain file name without a folder, got {args.report_name!r}.")
    groups = set(args.rows.split(","))
    if "all" in groups:
        groups = {"sparsity", "quantization", "torchao", "onnx", "report"}
    for name, fn in (
        ("sparsity", bench.sparsity_rows),
        ("quantization", bench.quantization_rows),
        ("torchao", bench.torchao_rows),
        ("onnx", bench.onnx_rows),
    ):
        if name in groups:
            logger.info("rows: %s", name)
            fn()
    if "report" in groups:
        result = report(bench, args)
        write_results(args.output_dir, args.report_name, result, render_markdown(result))


if __name__ == "__main__":
    main()
