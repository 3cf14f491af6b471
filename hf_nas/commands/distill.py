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
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed

from hf_nas import ElasticBertModel
from hf_nas.commands import description_of, parse_arguments
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import default_text_checkpoint

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


@dataclass
class DistillArguments:
    text_file: str = field(
        metadata={"help": "Unlabeled text: .txt (one text a line) or .tsv/.csv with a text column."}
    )
    text_column: str = field(default="sentence")
    model_name_or_path: str | None = field(default=None, metadata={"help": "Student init (default: MiniLM)."})
    num_subspaces: int = field(default=3, metadata={"help": "K sub-spaces, one supernet each (AutoDistil: 3)."})
    max_seq_length: int = field(default=128)
    max_samples: int | None = field(default=None)


def read_texts(path: str, column: str) -> list[str]:
    extension = os.path.splitext(path)[1]
    with open(path, newline="") as f:
        if extension == ".txt":
            return [line.strip() for line in f if line.strip()]
        if extension not in (".tsv", ".csv"):
            raise ValueError(f"{path}: unsupported file type; allowed: .txt, .tsv, .csv.")
        delimiter = "\t" if extension == ".tsv" else ","
        quoting = csv.QUOTE_NONE if extension == ".tsv" else csv.QUOTE_MINIMAL
        rows = list(csv.DictReader(f, delimiter=delimiter, quoting=quoting))
    if rows and column not in rows[0]:
        raise ValueError(f"{path} has no column {column!r}; columns: {list(rows[0])}.")
    return [r[column] for r in rows]


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas distill`, with the task-agnostic defaults of [`DISTILL_DEFAULTS`] set."""
    parser = HfArgumentParser(
        (DistillArguments, SupernetTrainingArguments), prog=prog, description=description_of(__doc__)
    )
    parser.set_defaults(**DISTILL_DEFAULTS)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas distill` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    args, training_args = parse_arguments(build_parser(prog), argv, DISTILL_DEFAULTS)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.num_subspaces not in SUBSPACE_NAMES:
        raise ValueError(f"`num_subspaces` must be one of {sorted(SUBSPACE_NAMES)}, got {args.num_subspaces}.")
    if training_args.distillation != "teacher":
        raise ValueError("Task-agnostic distillation needs --distillation teacher (there are no labels).")
    set_seed(training_args.seed)

    path = args.model_name_or_path or default_text_checkpoint()
    teacher = training_args.teacher_model_name_or_path or path  # default: the student's own initialization
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = read_texts(args.text_file, args.text_column)[: args.max_samples]
    dataset = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_seq_length),
        batched=True,
        remove_columns=["text"],
    )
    output_dir = training_args.output_dir
    space = ElasticBertModel.from_pretrained(path).search_space
    for name, subspace in zip(SUBSPACE_NAMES[args.num_subspaces], space.partition(args.num_subspaces), strict=True):
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
    training_args.output_dir = output_dir


if __name__ == "__main__":
    main()
