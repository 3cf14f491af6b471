"""Compress an extracted subnet folder into a new checkpoint folder that loads exactly as the input did: sparsity
(`--sparsity`, `--method jackpot|magnitude`), then weight quantization (`--bits`, `--quant nupes|uniform`), then an ONNX
export checked against ONNX Runtime (`--onnx`), each optional, in that order.

Sparsity sets the `--sparsity` share of the encoder layers' linear weights (attention and feed-forward) to zero:
`--method magnitude` (global magnitude pruning, no data) or `--method jackpot` (a Lottery Jackpots mask search on the
frozen weights with distillation from the dense subnet, `--search_steps` steps on the training data); `--pattern 2:4`
zeroes 2 of every 4 consecutive weights instead (`--sparsity 0.5`). Quantization rounds the same weights to `--bits`
bits (2 to 8): `--quant nupes` (non-uniform, learned power exponent and codes, on calibration data from the training
split, or `--data_free`) or `--quant uniform` (round-to-nearest per channel). The checkpoint keeps dense float weights
(the zeros, and the dequantized values), so it loads with plain transformers, and `quantization.safetensors` beside it
holds the integer codes, scales and exponents. `--onnx` writes `onnx/model.onnx` (and with `--onnx_int8`
`onnx/model_quantized.onnx`, ONNX Runtime's int8 dynamic quantization) and checks ONNX Runtime against PyTorch (1e-4).
Embeddings, LayerNorms, biases, the pooler and heads are unchanged.

The folder gets the weights (a vanilla `bert`/`vit`/`beit` checkpoint, or a per-layer subnet with its modeling file and
`auto_map`), the tokenizer or image processor files and the model card `README.md` of the input (with a "Compression"
section added), and `compression.json`: the sparsity per weight and overall and the quantization per weight, measured
on the saved checkpoint reloaded, the settings and the command line. The data options are those of `hf-nas finetune`
(text: --train_file, --dataset_name, ...; images: --train_dir, --data_dir, ...); only `--method jackpot` and
`--quant nupes` read data (the training split). Arguments come from the command line or one JSON file;
`hf-nas compress` and `scripts/compress_subnet.py` are this same program.

    hf-nas compress --model out/subnet --output_dir out/subnet-sparse50 --sparsity 0.5
    hf-nas compress --model out/subnet --output_dir out/subnet-jackpot70 --sparsity 0.7 --method jackpot \
        --train_file data/sst2_sample.tsv --search_steps 300
    hf-nas compress --model out/subnet --output_dir out/subnet-4bit --bits 4 --quant nupes \
        --train_file data/sst2_sample.tsv --onnx --onnx_int8

The folder is written atomically (under a hidden temporary name beside it, then swapped into place), so a run that
fails or is killed leaves the previous `--output_dir` as it was. While one run writes `--output_dir` it holds the lock
`<output_dir>.lock`: a second run for the same folder stops at once, saying another process is writing it;
`--wait_for_lock SECONDS` makes it wait for the first one instead (and then checks `--output_dir` again).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import HfArgumentParser, PreTrainedConfig, PreTrainedModel, TrainingArguments

import hf_nas
from hf_nas.commands import description_of, parse_arguments
from hf_nas.compression import (
    EXPORTERS,
    GRANULARITIES,
    PATTERNS,
    QUANTIZATION_FILE,
    QUANTIZATION_METHODS,
    SPARSITY_METHODS,
    JackpotConfig,
    NupesConfig,
    QuantizationReport,
    SparsityReport,
    check_bits,
    check_pattern,
    check_sparsity,
    code_range,
    export_onnx,
    get_quantization_method,
    get_sparsity_method,
    quantize_onnx,
    sparsity_report,
)
from hf_nas.compression import sparsity_report as measure_sparsity
from hf_nas.compression.onnx import check_onnx
from hf_nas.data import HelpFormatter, ImageDataArguments, TextDataArguments, argument_from_command_line
from hf_nas.models.families import family_for_checkpoint, get_task
from hf_nas.utils import atomic_directory, check_weight_files, command_output_lock
from hf_nas.validation import check_wait_for_lock

logger = logging.getLogger(__name__)

PROCESSOR_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "preprocessor_config.json",
    "processor_config.json",
)
CARD_FILE = "README.md"
REPORT_FILE = "compression.json"
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model_quantized.onnx"
# The options of the mask search and of NUPES, by the field of their configs (errors name the option).
JACKPOT_OPTIONS = {
    "max_steps": "search_steps",
    "learning_rate": "search_learning_rate",
    "swap_share": "swap_share",
    "task_loss_weight": "task_loss_weight",
    "kd_loss_weight": "kd_loss_weight",
    "temperature": "temperature",
    "batch_size": "batch_size",
    "seed": "seed",
}
NUPES_OPTIONS = {
    "granularity": "exponent_granularity",
    "data_free": "data_free",
    "calibration_samples": "calibration_samples",
    "batch_size": "batch_size",
    "steps": "reconstruction_steps",
    "end_to_end_steps": "end_to_end_steps",
}


@dataclass
class CompressArguments:
    model: str = field(metadata={"help": "A subnet folder written by `hf-nas extract` (or a vanilla checkpoint)."})
    output_dir: str = field(metadata={"help": "Where the compressed checkpoint folder is written."})
    sparsity: float | None = field(
        default=None,
        metadata={"help": "Share of the encoder linear weights set to zero, in (0, 1). Default: no pruning."},
    )
    method: str = field(
        default="magnitude",
        metadata={"help": "How the weights to zero are chosen.", "choices": sorted(SPARSITY_METHODS)},
    )
    pattern: str = field(
        default="unstructured",
        metadata={
            "help": "Where the zeros may lie: anywhere (unstructured, global), or 2 of every 4 consecutive weights "
            "of a row (2:4, with --sparsity 0.5).",
            "choices": list(PATTERNS),
        },
    )
    bits: int | None = field(
        default=None,
        metadata={"help": "Quantize the encoder linear weights to this many bits (2 to 8). Default: no quantization."},
    )
    quant: str = field(
        default="nupes",
        metadata={"help": "How weights are quantized with --bits.", "choices": sorted(QUANTIZATION_METHODS)},
    )
    exponent_granularity: str = field(
        default="channel",
        metadata={
            "help": "NUPES: one power exponent per output channel or per layer.",
            "choices": list(GRANULARITIES),
        },
    )
    data_free: bool = field(
        default=False, metadata={"help": "NUPES: choose exponents and codes from the weights alone (no data)."}
    )
    onnx: bool = field(
        default=False,
        metadata={"help": "Also export onnx/model.onnx and check ONNX Runtime against PyTorch (atol 1e-4)."},
    )
    onnx_int8: bool = field(
        default=False,
        metadata={
            "help": "Also write onnx/model_quantized.onnx, ONNX Runtime's int8 dynamic quantization (implies --onnx)."
        },
    )
    onnx_exporter: str = field(
        default="torchscript",
        metadata={"help": "The torch.onnx exporter: torchscript or dynamo.", "choices": list(EXPORTERS)},
    )
    search_steps: int = field(
        default=1000,
        metadata={
            "help": "--method jackpot: optimizer steps of the mask search (docs/benchmarks/compress_long.md: at 70 percent "
            "sparsity 1000 steps came within 0.34 points of the dense subnet, 300 steps 2.29)."
        },
    )
    search_learning_rate: float = field(
        default=5e-4,
        metadata={
            "help": "--method jackpot: learning rate of the scores (Adam); 5e-4 was selected on validation over 1e-4 "
            "and 2e-3 (docs/benchmarks/compress.md)."
        },
    )
    swap_share: float = field(
        default=0.5,
        metadata={
            "help": "--method jackpot: share of candidate mask swaps allowed after the first step (cosine to 0)."
        },
    )
    task_loss_weight: float = field(default=1.0, metadata={"help": "--method jackpot: weight of the task loss."})
    kd_loss_weight: float = field(
        default=1.0, metadata={"help": "--method jackpot: weight of the distillation from the dense subnet."}
    )
    temperature: float = field(default=2.0, metadata={"help": "--method jackpot: distillation temperature."})
    calibration_samples: int = field(
        default=256, metadata={"help": "--quant nupes: training examples (shuffled with --seed) to calibrate on."}
    )
    reconstruction_steps: int = field(
        default=200, metadata={"help": "--quant nupes: optimizer steps of each encoder layer's reconstruction."}
    )
    end_to_end_steps: int = field(
        default=0,
        metadata={
            "help": "--quant nupes: steps that then learn all layers' codes and exponents together by distillation "
            "from the float subnet (0: off)."
        },
    )
    batch_size: int = field(default=32, metadata={"help": "Examples per step of the search and calibration."})
    seed: int = field(default=42, metadata={"help": "Seed of the data order, subsets and dropout."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace --output_dir if it exists and is not empty."}
    )
    wait_for_lock: float = field(
        default=0.0,
        metadata={
            "help": "Seconds to wait while another process writes --output_dir (0: stop at once; inf: no limit)."
        },
    )

    def __post_init__(self):
        check_wait_for_lock(self.wait_for_lock)
        self.onnx = self.onnx or self.onnx_int8
        if self.sparsity is None and self.bits is None and not self.onnx:
            raise ValueError("Nothing to do: give --sparsity, --bits or --onnx (or several of them).")
        checks = [("--method", get_sparsity_method, self.method), ("--quant", get_quantization_method, self.quant)]
        if self.sparsity is not None:
            checks.append(("--sparsity", check_sparsity, self.sparsity))
        if self.bits is not None:
            checks.append(("--bits", check_bits, self.bits))
        for option, check, value in checks:
            try:
                check(value)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{option}: {e}") from e
        try:
            check_pattern(self.pattern, self.sparsity)
        except ValueError as e:
            raise ValueError(f"--pattern: {e}") from e
        if self.onnx_exporter not in EXPORTERS:
            raise ValueError(f"--onnx_exporter {self.onnx_exporter!r} is not allowed; allowed: {list(EXPORTERS)}.")
        self.jackpot_config()
        self.nupes_config()
        if not os.path.exists(self.model):  # a local folder only: no Hub lookup to fall back on
            raise ValueError(f"--model {self.model!r} is not a checkpoint folder (no config.json): it does not exist.")
        if not os.path.isfile(os.path.join(self.model, "config.json")):
            raise ValueError(
                f"--model {self.model!r} is not a checkpoint folder (no config.json); give a subnet folder written by "
                "`hf-nas extract`."
            )
        check_output_dir(self.output_dir, self.model, self.overwrite_output_dir)

    def _config(self, cls: type, options: dict[str, str]) -> Any:
        try:
            return cls(**{name: getattr(self, option) for name, option in options.items()})
        except (TypeError, ValueError) as e:
            message = str(e)
            for name, option in options.items():
                message = message.replace(f"`{name}`", f"--{option}")
            raise type(e)(message) from e

    def jackpot_config(self) -> JackpotConfig:
        """The settings of `--method jackpot`."""
        return self._config(JackpotConfig, JACKPOT_OPTIONS)

    def nupes_config(self) -> NupesConfig:
        """The settings of `--quant nupes`."""
        return self._config(NupesConfig, NUPES_OPTIONS)

    @property
    def needs_data(self) -> list[str]:
        """The options of this run that read training data."""
        needs = []
        if self.sparsity is not None and get_sparsity_method(self.method).needs_data:
            needs.append(f"--method {self.method}")
        if self.bits is not None and get_quantization_method(self.quant).needs_data and not self.data_free:
            needs.append(f"--quant {self.quant}")
        return needs


@dataclass
class CompressTextData(TextDataArguments):
    """The text data of `hf-nas compress`: optional (only `--method jackpot` and `--quant nupes` read data)."""

    def __post_init__(self):
        if self.given:
            super().__post_init__()

    @property
    def given(self) -> bool:
        return any(getattr(self, n) is not None for n in ("dataset_name", "train_file", "validation_file"))


@dataclass
class CompressImageData(ImageDataArguments):
    """The image data of `hf-nas compress`: optional (only `--method jackpot` and `--quant nupes` read data)."""

    def __post_init__(self):
        if self.given:
            super().__post_init__()

    @property
    def given(self) -> bool:
        return any(getattr(self, n) is not None for n in ("dataset_name", "data_dir", "train_dir", "validation_dir"))


def data_arguments_for(path: str | None) -> type:
    """[`CompressImageData`] for an image checkpoint folder `path`, else [`CompressTextData`] (also when `path` is not
    a checkpoint folder: the arguments' checks then say so)."""
    if path is not None and os.path.isfile(os.path.join(path, "config.json")):
        try:
            if family_for_checkpoint(path).is_image:
                return CompressImageData
        except ValueError:
            pass
    return CompressTextData


def check_output_dir(output_dir: str, model: str, overwrite: bool) -> None:
    """Raise `ValueError`, naming `--output_dir`, if writing there would replace the input or (without `overwrite`)
    an existing non-empty folder."""
    if os.path.abspath(output_dir) == os.path.abspath(model) or (
        os.path.exists(output_dir) and os.path.samefile(output_dir, model)
    ):
        raise ValueError(f"--output_dir {output_dir!r} is the --model folder; write the compressed model elsewhere.")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir!r} is a file; give a folder.")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ValueError(
            f"--output_dir {output_dir!r} exists and is not empty; pass --overwrite_output_dir to replace it."
        )


def load_checkpoint(path: str) -> PreTrainedModel:
    """The model of a vanilla or per-layer subnet checkpoint folder, loaded with its task's Auto class (per-layer
    subnets with `trust_remote_code=True`, as without hf-nas), in eval mode. A damaged weight file is refused naming
    it."""
    config_dict, _ = PreTrainedConfig.get_config_dict(path)
    try:
        check_weight_files(path)
    except ValueError as e:
        raise ValueError(f"--model {path!r}: {e}") from None
    try:
        family = family_for_checkpoint(path)
        architecture = (config_dict.get("architectures") or [None])[0]
        task = family.task_of(architecture) if architecture else get_task("feature-extraction")
    except ValueError as e:
        raise ValueError(f"--model {path!r}: {e}") from e
    model_type = config_dict["model_type"]
    if model_type == family.elastic_model_type:
        raise ValueError(
            f"--model {path!r} holds an elastic supernet ({model_type}); extract a subnet first (`hf-nas extract`)."
        )
    auto_class = task.auto_model_class()
    remote = model_type == family.subnet_model_type
    return auto_class.from_pretrained(path, trust_remote_code=remote, dtype="auto").eval()


# ----------------------------------------------------------------------------------------------------------------
# the card
def _sparsity_text(report: SparsityReport, args: CompressArguments) -> list[str]:
    if report.pattern == "2:4":
        pattern = "2:4 semi-structured (2 of every 4 consecutive weights of a row are zero)"
    else:
        pattern = "global and unstructured (one threshold for the weights of all encoder layers together)"
    rows = [
        f"| `{name}` | {layer.zeros:,} | {layer.total:,} | {100 * layer.share:.2f}% |"
        for name, layer in report.layers.items()
    ]
    command = f"--method {report.method} --sparsity {report.target:g}"
    if report.pattern != "unstructured":
        command += f" --pattern {report.pattern}"
    return [
        "### Sparsity",
        "",
        f"Pruned with hf-nas (`hf-nas compress {command}`) by {get_sparsity_method(args.method).description}, "
        f"{pattern}. Overall sparsity of the encoder layers' linear weights: **{100 * report.share:.2f}%** "
        f"({report.zeros:,} of {report.total:,} weights are zero). Embeddings, LayerNorms, biases, the pooler and the "
        "head are unchanged. The zeros are stored in ordinary dense weights: the checkpoint loads as before and has "
        "the same size.",
        "",
        "| Weight | Zeros | Total | Sparsity |",
        "|---|---:|---:|---:|",
        *rows,
        "",
    ]


def _quantization_text(report: QuantizationReport, args: CompressArguments) -> list[str]:
    level = code_range(report.bits)
    mode = ""
    if report.method == "nupes":
        mode = " (data-free)" if report.data_free else " (calibrated on training data)"
    rows = []
    for name, layer in report.to_dict()["layers"].items():
        exponents = (
            f"{layer['exponent_min']:.2f}"
            if layer["exponent_min"] == layer["exponent_max"]
            else (f"{layer['exponent_min']:.2f} to {layer['exponent_max']:.2f}")
        )
        rows.append(f"| `{name}` | {exponents} | {layer['relative_error']:.2e} |")
    return [
        "### Quantization",
        "",
        f"The encoder layers' linear weights were quantized to **{report.bits} bits** (`--bits {report.bits} --quant "
        f"{report.method}`) by {get_quantization_method(report.method).description}{mode}. The checkpoint holds the "
        "**dequantized** weights in the model's float dtype, so it loads with plain transformers (no hf-nas) and "
        "computes in floating point: the outputs of the quantized weights, not the speed or size of an integer kernel. "
        f"The integer codes (`{-level}` to `{level}`, one per int8, not bit-packed), the per-channel scales and the "
        f"exponents are in `{QUANTIZATION_FILE}` beside it; each weight is "
        f"`scale * sign(code) * (|code| / {level}) ** (1 / exponent)`.",
        "",
        "| Weight | Exponent | Relative squared error |",
        "|---|---:|---:|",
        *rows,
        "",
    ]


def _onnx_text(record: dict[str, Any]) -> list[str]:
    lines = [
        "### ONNX",
        "",
        f"`{ONNX_DIR}/{ONNX_FILE}`: exported with `torch.onnx` ({record['exporter']} exporter, opset "
        f"{record['opset']}), inputs {', '.join(f'`{n}`' for n in record['input_names'])}, outputs "
        f"{', '.join(f'`{n}`' for n in record['output_names'])}, batch{' and sequence' if 'input_ids' in record['input_names'] else ''} "
        f"dimensions dynamic. ONNX Runtime's outputs differ from PyTorch's by at most {record['max_abs_diff']:.1e} on "
        "the check inputs (tolerance 1e-4).",
    ]
    if "int8" in record:
        lines += [
            "",
            f"`{ONNX_DIR}/{ONNX_INT8_FILE}`: ONNX Runtime's dynamic int8 quantization of it (int8 weights of the matrix "
            "multiplications, activations quantized at run time); its outputs differ from PyTorch's by up to "
            f"{record['int8']['max_abs_diff']:.2e} on the same inputs (int8 changes them: measure its accuracy).",
        ]
    inputs = "{name: array for name, array in inputs.items()}"
    lines += [
        "",
        "```python",
        "import onnxruntime",
        f'session = onnxruntime.InferenceSession("{ONNX_DIR}/{ONNX_FILE}", providers=["CPUExecutionProvider"])',
        f'outputs = session.run(None, {inputs})  # numpy arrays, e.g. from the tokenizer with return_tensors="np"',
        "```",
        "",
    ]
    return lines


def card_section(
    sparsity: SparsityReport | None,
    quantization: QuantizationReport | None,
    onnx: dict[str, Any] | None,
    args: CompressArguments,
) -> str:
    """The "Compression" section appended to the model card: one part per step that ran."""
    steps = [
        name for name, done in (("pruned", sparsity), ("quantized", quantization), ("exported to ONNX", onnx)) if done
    ]
    lines = [
        "## Compression",
        "",
        f"This checkpoint was {', then '.join(steps)} by `hf-nas compress` from the subnet above; `compression.json` "
        "records the settings and the command line. Metrics elsewhere in this card were measured before compression.",
        "",
    ]
    if sparsity is not None:
        lines += _sparsity_text(sparsity, args)
    if quantization is not None:
        lines += _quantization_text(quantization, args)
    if onnx is not None:
        lines += _onnx_text(onnx)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# data
def load_training_data(args: CompressArguments, data_args: Any) -> tuple[Any, Any]:
    """The training split (tokenized, or image transforms attached) shuffled with `--seed`, and its collator, read with
    the loaders of `hf-nas finetune`; refuses a run that needs data and has none, naming the options."""
    from hf_nas.commands.train import prepare_images, prepare_text

    needs = args.needs_data
    if not data_args.given:
        image = isinstance(data_args, ImageDataArguments)
        options = "--train_dir, --data_dir or --dataset_name" if image else "--train_file or --dataset_name"
        alternatives = " (or --data_free for NUPES)" if f"--quant {args.quant}" in needs else ""
        raise ValueError(f"{' and '.join(needs)} read training data: give {options}{alternatives}.")
    run = TrainingArguments(output_dir=args.output_dir, seed=args.seed, report_to=[], use_cpu=True)
    prepare = prepare_images if isinstance(data_args, ImageDataArguments) else prepare_text
    data = prepare(args.model, data_args, run)
    if "train" not in data.splits:
        raise ValueError(f"{' and '.join(needs)} read the training split: the data has none.")
    return data.splits["train"].shuffle(seed=args.seed), data.collator


# ----------------------------------------------------------------------------------------------------------------
# writing
def _check_reload(
    model: PreTrainedModel, expected: SparsityReport, quantization: QuantizationReport | None
) -> SparsityReport:
    measured = sparsity_report(model)
    if measured.layers != expected.layers:
        raise RuntimeError("The saved checkpoint reloads with other zeros than were pruned; nothing was written.")
    if quantization is not None:
        params = dict(model.named_parameters())
        for name, q in quantization.weights.items():
            if not torch.equal(params[name].detach().float().cpu(), q.dequantize().to(params[name].dtype).float()):
                raise RuntimeError(
                    f"The saved checkpoint reloads {name} with other values than its quantization codes give; nothing "
                    "was written."
                )
    return measured


def write_folder(
    model: PreTrainedModel,
    args: CompressArguments,
    report: SparsityReport | None,
    command_line: str,
    quantization: QuantizationReport | None = None,
    settings: dict[str, Any] | None = None,
) -> SparsityReport | None:
    """Write the compressed checkpoint to `args.output_dir` atomically; return the sparsity measured on the saved
    checkpoint reloaded (it must equal the model's, and quantized weights their codes, or nothing is written)."""
    expected = measure_sparsity(model)  # after every step (quantization may round more weights to zero)
    if report is not None:
        report = SparsityReport(expected.layers, report.method, report.target, report.pattern)
    with atomic_directory(args.output_dir) as tmp:
        model.save_pretrained(tmp)
        for name in PROCESSOR_FILES:
            if os.path.isfile(os.path.join(args.model, name)):
                shutil.copyfile(os.path.join(args.model, name), os.path.join(tmp, name))
        if quantization is not None:
            quantization.save(tmp)
        reloaded_model = load_checkpoint(tmp)
        measured = _check_reload(reloaded_model, expected, quantization)
        reloaded = (
            None if report is None else SparsityReport(measured.layers, report.method, report.target, report.pattern)
        )
        onnx = None
        if args.onnx:
            onnx = write_onnx(reloaded_model, tmp, args)
        card = os.path.join(args.model, CARD_FILE)
        if os.path.isfile(card):
            with open(card) as f:
                text = f.read().rstrip("\n")
            with open(os.path.join(tmp, CARD_FILE), "w") as f:
                f.write(f"{text}\n\n{card_section(reloaded, quantization, onnx, args)}")
        record = {
            "hf_nas_version": hf_nas.__version__,
            "command": command_line,
            "model": os.path.abspath(args.model),
            "sparsity": None if reloaded is None else reloaded.to_dict(),
            "quantization": None if quantization is None else quantization.to_dict(),
            "onnx": onnx,
            "settings": settings or {},
        }
        with open(os.path.join(tmp, REPORT_FILE), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    return reloaded


def write_onnx(model: PreTrainedModel, folder: str, args: CompressArguments) -> dict[str, Any]:
    """Export `model` to `<folder>/onnx/model.onnx` (and its int8 quantization with `--onnx_int8`), checked against
    PyTorch; returns the record of `compression.json`."""
    os.makedirs(os.path.join(folder, ONNX_DIR), exist_ok=True)
    exported = export_onnx(model, os.path.join(folder, ONNX_DIR, ONNX_FILE), exporter=args.onnx_exporter)
    record = exported.to_dict()
    record["file"] = f"{ONNX_DIR}/{ONNX_FILE}"
    if args.onnx_int8:
        path = quantize_onnx(exported.path, os.path.join(folder, ONNX_DIR, ONNX_INT8_FILE))
        record["int8"] = {
            "file": f"{ONNX_DIR}/{ONNX_INT8_FILE}",
            "max_abs_diff": check_onnx(model, path, atol=float("inf")),
        }
    return record


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas compress`: its data options are those of the checkpoint `--model` in `argv` (default
    `sys.argv[1:]`; text for BERT, images for ViT and BEiT)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    data_class = data_arguments_for(argument_from_command_line("model", argv))
    return HfArgumentParser(
        (CompressArguments, data_class), prog=prog, description=description_of(__doc__), formatter_class=HelpFormatter
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas compress` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv, prog)
    args, data_args = parse_arguments(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    model = load_checkpoint(args.model)
    data = load_training_data(args, data_args) if args.needs_data else (None, None)
    with command_output_lock(args.output_dir, args.wait_for_lock):
        # another process may have written --output_dir while this one waited for the lock
        check_output_dir(args.output_dir, args.model, args.overwrite_output_dir)
        compress(model, args, f"{parser.prog} {shlex.join(argv)}", *data)


def compress(
    model: PreTrainedModel, args: CompressArguments, command_line: str, train_dataset: Any = None, collator: Any = None
) -> None:
    """Prune, quantize and export `model` as `args` say and write the compressed folder; the caller holds the lock of
    `--output_dir`. `train_dataset` and `collator` feed the steps that read data."""
    report, quantization, settings = None, None, {}
    if args.sparsity is not None:
        method = get_sparsity_method(args.method)
        kwargs: dict[str, Any] = {"pattern": args.pattern}
        if method.needs_data:
            config = args.jackpot_config()
            kwargs.update(train_dataset=train_dataset, data_collator=collator, config=config)
            settings["sparsity"] = config.to_dict()
        report = method(model, args.sparsity, **kwargs)
        logger.info(
            "%s pruning: %.2f%% of the encoder linear weights are zero (%d of %d)",
            args.method,
            100 * report.share,
            report.zeros,
            report.total,
        )
    if args.bits is not None:
        method = get_quantization_method(args.quant)
        kwargs = {}
        if args.quant == "nupes":
            config = args.nupes_config()
            kwargs["config"] = config
            settings["quantization"] = config.to_dict()
            if not config.data_free:
                kwargs.update(calibration_dataset=train_dataset, data_collator=collator)
        quantization = method(model, args.bits, **kwargs)
        logger.info("%s quantization to %d bits", args.quant, args.bits)
    reloaded = write_folder(model, args, report, command_line, quantization, settings)
    folder = os.path.abspath(args.output_dir)
    done = []
    if reloaded is not None:
        done.append(f"{100 * reloaded.share:.2f}% sparse encoder weights")
    if quantization is not None:
        done.append(f"{quantization.bits}-bit {quantization.method} quantized encoder weights")
    if args.onnx:
        done.append("its ONNX export" + (" (fp32 and int8)" if args.onnx_int8 else ""))
    logger.info("written to %s", folder)
    print(f"Saved the model with {' and '.join(done)} to {folder}")


if __name__ == "__main__":
    main()
