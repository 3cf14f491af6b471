"""Task-agnostic supernet distillation (AutoDistil): distill K supernets, one per compact sub-space (tiny, small,
base), from a teacher on unlabeled text with the last-layer self-attention relation loss only. Fine-tune any of them
afterwards with `hf-nas train` (--model_name_or_path <output_dir>/<sub-space>).

Arguments come from the command line or one JSON file; `hf-nas distill` and `scripts/distill_supernet.py` are this
same program.

    hf-nas distill --text_file data/sst2_sample.tsv --output_dir out/distilled --max_steps 100
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed

from hf_nas import ElasticBertModel
from hf_nas.commands import description_of, parse_arguments
from hf_nas.commands.train import (
    base_model_name,
    default_checkpoint_help,
    holds_finished_model,
    is_hub_id,
    setup_logging,
    training_settings,
)
from hf_nas.data import HelpFormatter, check_local_path
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.training.recipes import TrainingRecord
from hf_nas.utils import default_text_checkpoint
from hf_nas.validation import check_model_path

logger = logging.getLogger(__name__)
SUBSPACE_NAMES = {1: ["base"], 2: ["small", "base"], 3: ["tiny", "small", "base"]}
# Task-agnostic: no labels, so the self-attention relation loss to the teacher is the whole objective.
DISTILL_DEFAULTS = {
    "distillation": "teacher",
    "attention_loss_weight": 1.0,
    "kd_loss_weight": 0.0,
    "task_loss_weight": 0.0,
    "eval_subnets": "",
}
_TEXT_COLUMNS = ("sentence", "text")


@dataclass
class DistillArguments:
    text_file: str = field(
        metadata={"help": "Unlabeled text: .txt (one text a line) or .tsv/.csv with a text column."}
    )
    text_column: str | None = field(
        default=None,
        metadata={"help": "Column of the texts in a .tsv/.csv file. Default: sentence, text or the first column."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "BERT checkpoint the students start from (a local folder or a Hub id); the teacher too, unless "
            f"--teacher_model_name_or_path. Default: {default_checkpoint_help()}."
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the checkpoint the supernets start from, as model cards name it. Default: "
            "--model_name_or_path if it is a Hub id, else the checkpoint's own name if it is one, else its path."
        },
    )
    num_subspaces: int = field(default=3, metadata={"help": "K sub-spaces, one supernet each (AutoDistil: 3)."})
    max_seq_length: int = field(default=128, metadata={"help": "Longest tokenized text; longer ones are truncated."})
    max_samples: int | None = field(
        default=None, metadata={"help": "Distill on the first this many texts of --text_file. Default: all."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace supernets already distilled into --output_dir/<sub-space> instead of refusing."},
    )

    def __post_init__(self):
        if self.base_model is not None and not is_hub_id(self.base_model, local=False):
            raise ValueError(
                f"--base_model {self.base_model!r} is not a Hub model id (such as google-bert/bert-base-uncased); "
                "leave it out to name --model_name_or_path."
            )


def read_texts(path: str, column: str | None = None) -> list[str]:
    """The texts of `path`: the non-empty lines of a .txt file, or the `column` of a .tsv/.csv file (default:
    `sentence`, `text` or the first column). Logs the column read."""
    extension = os.path.splitext(path)[1]
    if extension not in (".txt", ".tsv", ".csv"):
        raise ValueError(f"--text_file {path}: unsupported file type; allowed: .txt, .tsv, .csv.")
    with open(path, newline="") as f:
        if extension == ".txt":
            logger.info("texts: the lines of %s", path)
            return [line.strip() for line in f if line.strip()]
        delimiter = "\t" if extension == ".tsv" else ","
        quoting = csv.QUOTE_NONE if extension == ".tsv" else csv.QUOTE_MINIMAL
        rows = list(csv.DictReader(f, delimiter=delimiter, quoting=quoting))
    columns = list(rows[0]) if rows else []
    if column is None:
        column = next((c for c in _TEXT_COLUMNS if c in columns), columns[0] if columns else None)
    if column not in columns:
        raise ValueError(f"--text_column {column!r} is not a column of {path}; its columns: {columns}.")
    logger.info("text column: %r of %s", column, path)
    return [r[column] for r in rows]


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas distill`, with the task-agnostic defaults of [`DISTILL_DEFAULTS`] set."""
    parser = HfArgumentParser(
        (DistillArguments, SupernetTrainingArguments),
        prog=prog,
        description=description_of(__doc__),
        formatter_class=HelpFormatter,
    )
    parser.set_defaults(**DISTILL_DEFAULTS)
    return parser


def check_paths(args: DistillArguments, training_args: SupernetTrainingArguments, names: list[str]) -> str:
    """Refuse mistyped local paths and finished supernets in the sub-space folders (without
    `--overwrite_output_dir`) before anything is loaded; returns the student checkpoint."""
    check_local_path("--text_file", args.text_file)
    path = args.model_name_or_path
    path = default_text_checkpoint() if path is None else check_model_path("--model_name_or_path", path)
    if training_args.teacher_model_name_or_path is not None:
        check_model_path("--teacher_model_name_or_path", training_args.teacher_model_name_or_path)
    finished = [n for n in names if holds_finished_model(os.path.join(training_args.output_dir, n))]
    if finished and not args.overwrite_output_dir:
        raise ValueError(
            f"--output_dir {training_args.output_dir} already holds distilled supernets {finished}; pass "
            "--overwrite_output_dir to replace them, or choose another --output_dir."
        )
    return path


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas distill` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, training_args = parse_arguments(build_parser(prog), argv, DISTILL_DEFAULTS)
    setup_logging(training_args)
    if args.num_subspaces not in SUBSPACE_NAMES:
        raise ValueError(f"--num_subspaces must be one of {sorted(SUBSPACE_NAMES)}, got {args.num_subspaces}.")
    if training_args.distillation != "teacher":
        raise ValueError("Task-agnostic distillation needs --distillation teacher (there are no labels).")
    names = SUBSPACE_NAMES[args.num_subspaces]
    path = check_paths(args, training_args, names)
    set_seed(training_args.seed)

    teacher = training_args.teacher_model_name_or_path or path  # default: the student's own initialization
    texts = read_texts(args.text_file, args.text_column)[: args.max_samples]
    base_model = base_model_name(args.base_model, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_seq_length),
        batched=True,
        remove_columns=["text"],
    )
    output_dir = training_args.output_dir
    space = ElasticBertModel.from_pretrained(path).search_space
    for name, subspace in zip(names, space.partition(args.num_subspaces), strict=True):
        logger.info("sub-space %s: %s", name, subspace)
        model = ElasticBertModel.from_pretrained(path)
        model.search_space = subspace
        training_args.output_dir = os.path.join(output_dir, name)
        trainer = SupernetTrainer(
            model=model,
            args=training_args,
            teacher_model=teacher,
            train_dataset=dataset,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
        trainer.save_model()
        if training_args.should_save:
            TrainingRecord(
                base_model=base_model,
                recipe="task_agnostic",
                dataset={"text_file": args.text_file, "text_column": args.text_column, "num_texts": len(texts)},
                training=training_settings(training_args, trainer, subspace=name, teacher=teacher),
                command_line=argv,
            ).save(training_args.output_dir)
    training_args.output_dir = output_dir


if __name__ == "__main__":
    main()
