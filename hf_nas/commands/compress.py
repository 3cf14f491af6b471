"""Compress an extracted subnet folder into a new checkpoint folder that loads exactly as the input did.

`--method magnitude` (global unstructured magnitude pruning) sets the `--sparsity` share of smallest-magnitude
weights of the encoder layers' linear layers (attention and feed-forward) to zero; embeddings, LayerNorms, biases,
the pooler and heads are unchanged. The folder gets the pruned weights (a vanilla `bert`/`vit`/`beit` checkpoint, or a
per-layer subnet with its modeling file and `auto_map`), the tokenizer or image processor files and the model card
`README.md` of the input (with a "Compression" section added), and `compression.json`: the sparsity reached per weight
and overall, measured on the saved checkpoint reloaded, and the command line. Arguments come from the command line or
one JSON file; `hf-nas compress` and `scripts/compress_subnet.py` are this same program.

    hf-nas compress --model out/subnet --output_dir out/subnet-sparse50 --sparsity 0.5
    hf-nas compress --model out/subnet --output_dir out/subnet-sparse50 --sparsity 0.5 --overwrite_output_dir

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

from transformers import HfArgumentParser, PreTrainedConfig, PreTrainedModel

import hf_nas
from hf_nas.commands import description_of, parse_arguments
from hf_nas.compression import SPARSITY_METHODS, SparsityReport, check_sparsity, get_sparsity_method, sparsity_report
from hf_nas.data import HelpFormatter
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


@dataclass
class CompressArguments:
    model: str = field(metadata={"help": "A subnet folder written by `hf-nas extract` (or a vanilla checkpoint)."})
    output_dir: str = field(metadata={"help": "Where the compressed checkpoint folder is written."})
    sparsity: float = field(metadata={"help": "Share of the encoder linear weights set to zero, in (0, 1)."})
    method: str = field(
        default="magnitude",
        metadata={"help": "How the weights to zero are chosen.", "choices": sorted(SPARSITY_METHODS)},
    )
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
        for option, check in (("--sparsity", check_sparsity), ("--method", get_sparsity_method)):
            try:
                check(getattr(self, option.removeprefix("--")))
            except (TypeError, ValueError) as e:
                raise type(e)(f"{option}: {e}") from e
        if not os.path.exists(self.model):  # a local folder only: no Hub lookup to fall back on
            raise ValueError(f"--model {self.model!r} is not a checkpoint folder (no config.json): it does not exist.")
        if not os.path.isfile(os.path.join(self.model, "config.json")):
            raise ValueError(
                f"--model {self.model!r} is not a checkpoint folder (no config.json); give a subnet folder written by "
                "`hf-nas extract`."
            )
        check_output_dir(self.output_dir, self.model, self.overwrite_output_dir)


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


def card_section(report: SparsityReport, description: str) -> str:
    """The "Compression" section appended to the model card: method, sparsity and the per-weight table."""
    rows = [
        f"| `{name}` | {layer.zeros:,} | {layer.total:,} | {100 * layer.share:.2f}% |"
        for name, layer in report.layers.items()
    ]
    return "\n".join(
        [
            "## Compression",
            "",
            f"Compressed with hf-nas (`hf-nas compress --method {report.method} --sparsity {report.target:g}`) by "
            f"{description}. Overall sparsity of the encoder layers' linear weights: **{100 * report.share:.2f}%** "
            f"({report.zeros:,} of {report.total:,} weights are zero). Embeddings, LayerNorms, biases, the pooler and "
            "the head are unchanged. The zeros are stored in ordinary dense weights: the checkpoint loads as before "
            "and has the same size. Metrics elsewhere in this card were measured before compression.",
            "",
            "| Weight | Zeros | Total | Sparsity |",
            "|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def write_folder(
    model: PreTrainedModel, args: CompressArguments, report: SparsityReport, command_line: str
) -> SparsityReport:
    """Write the compressed checkpoint to `args.output_dir` atomically; return the sparsity measured on the saved
    checkpoint reloaded (it must equal `report`, or nothing is written)."""
    with atomic_directory(args.output_dir) as tmp:
        model.save_pretrained(tmp)
        for name in PROCESSOR_FILES:
            if os.path.isfile(os.path.join(args.model, name)):
                shutil.copyfile(os.path.join(args.model, name), os.path.join(tmp, name))
        card = os.path.join(args.model, CARD_FILE)
        if os.path.isfile(card):
            with open(card) as f:
                text = f.read().rstrip("\n")
            with open(os.path.join(tmp, CARD_FILE), "w") as f:
                f.write(f"{text}\n\n{card_section(report, get_sparsity_method(args.method).description)}")
        measured = sparsity_report(load_checkpoint(tmp))
        if measured.layers != report.layers:
            raise RuntimeError("The saved checkpoint reloads with other zeros than were pruned; nothing was written.")
        reloaded = SparsityReport(measured.layers, report.method, report.target)
        record = {
            "hf_nas_version": hf_nas.__version__,
            "command": command_line,
            "model": os.path.abspath(args.model),
            "sparsity": reloaded.to_dict(),
        }
        with open(os.path.join(tmp, REPORT_FILE), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    return reloaded


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas compress`."""
    return HfArgumentParser(
        CompressArguments, prog=prog, description=description_of(__doc__), formatter_class=HelpFormatter
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas compress` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    parser = build_parser(prog)
    argv = sys.argv[1:] if argv is None else list(argv)
    (args,) = parse_arguments(parser, argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    model = load_checkpoint(args.model)
    with command_output_lock(args.output_dir, args.wait_for_lock):
        # another process may have written --output_dir while this one waited for the lock
        check_output_dir(args.output_dir, args.model, args.overwrite_output_dir)
        compress(model, args, f"{parser.prog} {shlex.join(argv)}")


def compress(model: PreTrainedModel, args: CompressArguments, command_line: str) -> None:
    """Prune `model` as `args` say and write the compressed folder; the caller holds the lock of `--output_dir`."""
    report = get_sparsity_method(args.method)(model, args.sparsity)
    logger.info(
        "%s pruning: %.2f%% of the encoder linear weights are zero (%d of %d)",
        args.method,
        100 * report.share,
        report.zeros,
        report.total,
    )
    reloaded = write_folder(model, args, report, command_line)
    logger.info("reloaded from %s: %.2f%% sparse", args.output_dir, 100 * reloaded.share)
    folder = os.path.abspath(args.output_dir)
    print(f"Saved the model with {100 * reloaded.share:.2f}% sparse encoder weights to {folder}")


if __name__ == "__main__":
    main()
