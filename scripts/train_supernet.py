"""Fine-tune a vanilla BERT, ViT or BEiT checkpoint into a supernet whose every subnet is good (InstaTune + BigNAS
sandwich).

In the style of transformers' run_glue.py and run_image_classification.py: arguments from the command line or one
JSON file. The checkpoint's model type picks the data options: text classification for BERT (--train_file, ...),
image classification for ViT and BEiT (--data_dir or --train_dir / --validation_dir, --image_size, ...; see
`hf_nas.data.ImageDataArguments`, or `--help` after `--model_name_or_path`).

    python scripts/train_supernet.py --train_file data/sst2_sample.tsv --validation_file data/sst2_sample_dev.tsv \
        --output_dir out/supernet --max_steps 50 --per_device_train_batch_size 16 --eval_strategy steps
    python scripts/train_supernet.py --model_name_or_path path/to/vit --data_dir data/cifar10_sample \
        --image_size 56 --output_dir out/vit-supernet --max_steps 50 --do_train --do_eval
    accelerate launch scripts/train_supernet.py args.json        # or: torchrun --nproc_per_node 2 ...

For images, the image processor (resizing to --image_size) is saved beside the supernet, and every batch carries
`interpolate_pos_encoding` (default: True when --image_size differs from the checkpoint's image size).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

import datasets
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hf_nas import SearchSpace, reorder_by_importance
from hf_nas.data import (
    ImageClassificationCollator,
    ImageDataArguments,
    TextDataArguments,
    argument_from_command_line,
    data_arguments_class,
    image_label_names,
    load_image_datasets,
    load_image_processor,
    load_text_datasets,
    needs_interpolate_pos_encoding,
    prepare_image_datasets,
    processor_image_size,
    tokenize_classification,
)
from hf_nas.metrics import build_compute_metrics
from hf_nas.models.auto import elastic_class_for, vanilla_model_type
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import default_text_checkpoint

logger = logging.getLogger("hf_nas.train_supernet")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Vanilla BERT, ViT or BEiT checkpoint, or a saved supernet (default: all-MiniLM-L6-v2)."},
    )
    search_space_file: str | None = field(
        default=None, metadata={"help": "JSON of a SearchSpace narrowing the default one (SearchSpace.save)."}
    )
    reorder_by_importance: bool = field(
        default=True, metadata={"help": "Reorder heads and neurons by importance first (vanilla checkpoints only)."}
    )
    importance_batches: int = field(default=8, metadata={"help": "Training batches used to measure importance."})
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager or sdpa."})
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace a checkpoint's classifier whose number of labels differs from the data's."},
    )


def main() -> None:
    # The checkpoint decides the data options (text or image), so it is read before the full parse.
    path = argument_from_command_line("model_name_or_path") or default_text_checkpoint()
    parser = HfArgumentParser((ModelArguments, data_arguments_class(path), SupernetTrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses()

    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[logging.StreamHandler(sys.stdout)]
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        "process rank %s, device %s, world size %s",
        training_args.process_index,
        training_args.device,
        training_args.world_size,
    )

    last_checkpoint = None
    if os.path.isdir(training_args.output_dir) and training_args.do_train:
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
        if last_checkpoint is not None and training_args.resume_from_checkpoint is None:
            logger.info("Resuming from %s", last_checkpoint)
    set_seed(training_args.seed)

    # Importance reordering is for a vanilla checkpoint; a saved supernet was reordered (and trained) already.
    is_vanilla = transformers.PreTrainedConfig.get_config_dict(path)[0].get("model_type") == vanilla_model_type(path)
    if isinstance(data_args, TextDataArguments):
        model, processor, splits, collator = prepare_text(path, model_args, data_args, training_args)
    else:
        model, processor, splits, collator = prepare_images(path, model_args, data_args, training_args)
    if model_args.search_space_file is not None:
        model.search_space = SearchSpace.load(model_args.search_space_file)
    logger.info("search space: %s", model.search_space)

    if model_args.reorder_by_importance and is_vanilla and last_checkpoint is None and training_args.do_train:
        loader = DataLoader(splits["train"], batch_size=training_args.per_device_train_batch_size, collate_fn=collator)
        reorder_by_importance(
            model,
            loader,
            num_batches=model_args.importance_batches,
            show_progress=training_args.local_process_index == 0,
        )

    trainer = SupernetTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("validation"),
        processing_class=processor,
        data_collator=collator,
        compute_metrics=build_compute_metrics([m.strip() for m in data_args.metrics.split(",") if m.strip()]),
    )
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()  # the supernet (config carries the search space) and the tokenizer or image processor
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    if training_args.do_eval and "validation" in splits:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def label_mappings(labels: list) -> tuple[dict[int, str], dict[str, int]]:
    return {i: str(label) for i, label in enumerate(labels)}, {str(label): i for i, label in enumerate(labels)}


def prepare_text(path: str, model_args: ModelArguments, data_args: TextDataArguments, training_args):
    """The supernet, tokenizer, tokenized splits and padding collator of a text-classification run."""
    raw = load_text_datasets(data_args)
    labels = sorted(set(raw["train"][data_args.label_column]))
    label2id = {label: i for i, label in enumerate(labels)}
    id2label, str_label2id = label_mappings(labels)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = elastic_class_for(path, "sequence-classification").from_pretrained(
        path,
        num_labels=len(labels),
        id2label=id2label,
        label2id=str_label2id,
        attn_implementation=model_args.attn_implementation,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    with training_args.main_process_first(desc="tokenize"):
        splits = {}
        for split in ("train", "validation"):
            if split not in raw:
                continue
            ds = raw[split]
            limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
            if limit is not None and limit < len(ds):
                ds = ds.shuffle(seed=training_args.seed).select(range(limit))
            splits[split] = tokenize_classification(ds, tokenizer, data_args, label2id)
    return model, tokenizer, splits, DataCollatorWithPadding(tokenizer)


def prepare_images(path: str, model_args: ModelArguments, data_args: ImageDataArguments, training_args):
    """The supernet, image processor (resizing to --image_size), lazily transformed splits and the collator of an
    image-classification run."""
    with training_args.main_process_first(desc="load images"):
        raw = load_image_datasets(data_args, seed=training_args.seed)
    if "train" not in raw:
        raise ValueError("Training needs training images: give --data_dir with a train/ folder, or --train_dir.")
    id2label, label2id = label_mappings(image_label_names(raw["train"], data_args.label_column))
    processor = load_image_processor(path, data_args.image_size)
    model = elastic_class_for(path, "image-classification").from_pretrained(
        path,
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
        attn_implementation=model_args.attn_implementation,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    image_size = processor_image_size(processor)
    interpolate = data_args.interpolate_pos_encoding
    if interpolate is None:
        interpolate = needs_interpolate_pos_encoding(model.config, image_size)
    logger.info("images of %s px, interpolate_pos_encoding=%s", image_size, interpolate)
    # The transforms read the raw image and label columns, which the Trainer would drop as unused by the model.
    training_args.remove_unused_columns = False
    splits = prepare_image_datasets(raw, processor, data_args, label2id=label2id, seed=training_args.seed)
    return model, processor, splits, ImageClassificationCollator(interpolate_pos_encoding=interpolate)


if __name__ == "__main__":
    main()
