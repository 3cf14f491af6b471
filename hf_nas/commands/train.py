"""Fine-tune a vanilla BERT, ViT or BEiT checkpoint into a supernet whose every subnet is good.

Two recipes, one command (`--recipe`):
- `one_pass` (default; InstaTune): the supernet is built during the one fine-tuning; the largest subnet teaches in
  place. At equal training compute it gave better subnets than teacher-first (docs/benchmarks/supernet.md).
- `teacher_first`: fine-tune the full model (`--teacher_max_steps`, default `--max_steps`) or take
  `--teacher_model_name_or_path`, save it to `<output_dir>/teacher`, initialise the supernet from it, reorder heads
  and neurons by importance on it, then train the supernet (BigNAS sandwich) with distillation from that fixed
  teacher: logits and the hidden states of every kept layer. A rerun reuses a saved teacher and resumes the
  supernet from its last checkpoint.

Both use the benchmarked levers by default (`hf_nas.training.recipes.RECIPE_DEFAULTS`: hidden-state distillation at
every kept layer, gradient protection of the largest subnet, half the random subnets uniform); any of them can be
set on the command line or in the JSON file.

In the style of transformers' run_glue.py and run_image_classification.py: arguments from the command line or one
JSON file. The checkpoint's model type picks the data options: text classification for BERT (--train_file, ...),
image classification for ViT and BEiT (--data_dir or --train_dir / --validation_dir, --image_size, ...; see
`hf_nas.data.ImageDataArguments`, or `--help` after `--model_name_or_path`). `hf-nas train` and
`scripts/train_supernet.py` are this same program.

    hf-nas train --train_file data/sst2_sample.tsv --validation_file data/sst2_sample_dev.tsv \
        --output_dir out/supernet --max_steps 50 --per_device_train_batch_size 16 --eval_strategy steps
    hf-nas train --model_name_or_path path/to/vit --data_dir data/cifar10_sample \
        --image_size 56 --output_dir out/vit-supernet --max_steps 50 --do_train --do_eval
    accelerate launch scripts/train_supernet.py args.json        # or: torchrun --nproc_per_node 2 ...

For images, the image processor (resizing to --image_size) is saved beside the supernet, and every batch carries
`interpolate_pos_encoding` (default: True when --image_size differs from the checkpoint's image size).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import datasets
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hf_nas import SearchSpace, rank_layers, reorder_by_importance
from hf_nas.commands import description_of, parse_arguments
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
from hf_nas.models.families import get_task
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.training.recipes import (
    RECIPE_DEFAULTS,
    TEACHER_DIR_NAME,
    RecipeArguments,
    find_saved_teacher,
    finetune_teacher,
    teacher_training_arguments,
)
from hf_nas.training.trainer import check_teacher_config
from hf_nas.utils import atomic_directory, default_text_checkpoint

logger = logging.getLogger(__name__)


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


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas train`: its data options are those of the checkpoint `--model_name_or_path` in `argv`
    (default `sys.argv[1:]`; text for BERT, images for ViT and BEiT), and the recipe defaults are set."""
    # The checkpoint decides the data options (text or image), so it is read before the full parse.
    path = argument_from_command_line("model_name_or_path", argv) or default_text_checkpoint()
    parser = HfArgumentParser(
        (ModelArguments, RecipeArguments, data_arguments_class(path), SupernetTrainingArguments),
        prog=prog,
        description=description_of(__doc__),
    )
    parser.set_defaults(**RECIPE_DEFAULTS)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas train` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv, prog=prog)
    model_args, recipe_args, data_args, training_args = parse_arguments(parser, argv, RECIPE_DEFAULTS)
    path = model_args.model_name_or_path or default_text_checkpoint()

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

    config_dict = transformers.PreTrainedConfig.get_config_dict(path)[0]
    is_vanilla = config_dict.get("model_type") == vanilla_model_type(path)
    # a saved supernet keeps its search space, also when the teacher-first recipe restarts from its teacher
    saved_space = None if is_vanilla else SearchSpace.from_dict(config_dict["search_space"])
    if isinstance(data_args, TextDataArguments):
        data = prepare_text(path, data_args, training_args)
    else:
        data = prepare_images(path, data_args, training_args)
    data.model_kwargs["ignore_mismatched_sizes"] = model_args.ignore_mismatched_sizes
    teacher = None
    if recipe_args.recipe == "teacher_first" and training_args.do_train:
        training_args.distillation = training_args.distillation or "teacher"
        if training_args.distillation != "teacher":
            raise ValueError(
                f"--recipe teacher_first distills from the fine-tuned teacher: --distillation must be 'teacher', "
                f"got {training_args.distillation!r} (use --recipe one_pass for in-place distillation)."
            )
        teacher, teacher_path = prepare_teacher(path, is_vanilla, data, recipe_args, training_args)
        if is_vanilla:  # the supernet starts from the fine-tuned teacher; a saved supernet from its own weights
            path = teacher_path
    model = load_supernet(path, data, model_args, training_args)
    if saved_space is not None:
        model.search_space = saved_space
    if model_args.search_space_file is not None:
        model.search_space = SearchSpace.load(model_args.search_space_file)
    fresh = is_vanilla and last_checkpoint is None and training_args.do_train
    loader = (
        DataLoader(
            data.splits["train"], batch_size=training_args.per_device_train_batch_size, collate_fn=data.collator
        )
        if "train" in data.splits
        else None
    )
    if recipe_args.layer_rule is not None:
        set_layer_rule(model, recipe_args.layer_rule, loader, model_args, training_args)
    logger.info("search space: %s", model.search_space)

    # Importance reordering is for a fresh supernet (from a vanilla checkpoint or its fine-tuned teacher); a saved
    # supernet was reordered already.
    if model_args.reorder_by_importance and fresh:
        reorder_by_importance(
            model,
            loader,
            num_batches=model_args.importance_batches,
            show_progress=training_args.local_process_index == 0,
        )

    trainer = SupernetTrainer(
        model=model,
        args=training_args,
        teacher_model=teacher,
        train_dataset=data.splits.get("train"),
        eval_dataset=data.splits.get("validation"),
        processing_class=data.processor,
        data_collator=data.collator,
        compute_metrics=build_compute_metrics([m.strip() for m in data_args.metrics.split(",") if m.strip()]),
    )
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()  # the supernet (config carries the search space) and the tokenizer or image processor
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
    if training_args.do_eval and "validation" in data.splits:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@dataclass
class TaskData:
    """What the data side of a run hands to the model side."""

    splits: dict
    processor: object
    collator: object
    id2label: dict[int, str]
    label2id: dict[str, int]
    model_kwargs: dict = field(default_factory=dict)
    task: str = "sequence-classification"


def prepare_teacher(path: str, is_vanilla: bool, data: TaskData, recipe_args: RecipeArguments, training_args):
    """The fixed teacher of the teacher-first recipe and the folder it is saved in.

    Order of preference: a complete teacher already saved in `<output_dir>/teacher` (a rerun), the given
    `--teacher_model_name_or_path` (saved there too), the teacher beside a saved supernet `path`, else the full model
    of `path` (a vanilla checkpoint, or a saved supernet at full size) fine-tuned now.
    """
    teacher_dir = os.path.join(training_args.output_dir, TEACHER_DIR_NAME)
    given = training_args.teacher_model_name_or_path
    training_args.teacher_model_name_or_path = None  # the trainer gets the model object
    saved = find_saved_teacher(training_args.output_dir)
    if saved is None and given is None and not is_vanilla:
        given = find_saved_teacher(path)  # the teacher saved beside a supernet trained teacher-first
    source = saved or given
    auto_class = get_task(data.task).auto_model_class()
    if source is not None:
        logger.info("teacher: %s", source)
        teacher = auto_class.from_pretrained(source)  # its own labels: they must match the data's, checked here
        check_teacher_config(SimpleNamespace(**data.model_kwargs), teacher.config)
        if saved is None and training_args.should_save:
            with atomic_directory(teacher_dir) as tmp:  # saved beside the supernet, for extract_subnet.py
                teacher.save_pretrained(tmp)
                data.processor.save_pretrained(tmp)
        return teacher.eval(), teacher_dir if training_args.should_save else source
    logger.info("teacher-first stage 1: fine-tuning the full model of %s", path)
    if is_vanilla:
        teacher = auto_class.from_pretrained(path, **data.model_kwargs)
    else:  # a saved supernet without a teacher (e.g. a task-agnostic distilled one): its full model is the start
        supernet = elastic_class_for(path, data.task).from_pretrained(path, **data.model_kwargs)
        teacher = supernet.extract_subnet(supernet.max_subnet())
        del supernet
    targs = teacher_training_arguments(
        training_args,
        teacher_dir + ".run",
        max_steps=recipe_args.teacher_max_steps,
        learning_rate=recipe_args.teacher_learning_rate,
    )
    set_seed(training_args.seed)
    teacher = finetune_teacher(
        teacher, targs, data.splits["train"], teacher_dir, data_collator=data.collator, processing_class=data.processor
    )
    shutil.rmtree(targs.output_dir, ignore_errors=True)  # the Trainer's scratch folder (no checkpoints)
    set_seed(training_args.seed)
    return teacher, teacher_dir


def load_supernet(path: str, data: TaskData, model_args: ModelArguments, training_args):
    """The elastic model of `path` (a vanilla checkpoint, a teacher or a saved supernet) for the run's labels."""
    return elastic_class_for(path, data.task).from_pretrained(
        path,
        attn_implementation=model_args.attn_implementation,
        **data.model_kwargs,
    )


def set_layer_rule(model, rule: str, loader, model_args: ModelArguments, training_args) -> None:
    """Set which layers a depth-k subnet keeps; `importance` ranks the layers on the model as loaded now."""
    order = None
    if rule == "importance":
        order, increases = rank_layers(
            model,
            loader,
            num_batches=model_args.importance_batches,
            show_progress=training_args.local_process_index == 0,
        )
        logger.info("layer importance (loss increase when skipped): %s; order %s", increases, order)
    model.search_space = dataclasses.replace(model.search_space, layer_rule=rule, layer_order=order)


def label_mappings(labels: list) -> tuple[dict[int, str], dict[str, int]]:
    return {i: str(label) for i, label in enumerate(labels)}, {str(label): i for i, label in enumerate(labels)}


def prepare_text(path: str, data_args: TextDataArguments, training_args) -> TaskData:
    """The tokenizer, tokenized splits and padding collator of a text-classification run."""
    raw = load_text_datasets(data_args)
    labels = sorted(set(raw["train"][data_args.label_column]))
    label2id = {label: i for i, label in enumerate(labels)}
    id2label, str_label2id = label_mappings(labels)
    tokenizer = AutoTokenizer.from_pretrained(path)
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
    model_kwargs = {"num_labels": len(labels), "id2label": id2label, "label2id": str_label2id}
    return TaskData(
        splits,
        tokenizer,
        DataCollatorWithPadding(tokenizer),
        id2label,
        str_label2id,
        model_kwargs,
        task="sequence-classification",
    )


def prepare_images(path: str, data_args: ImageDataArguments, training_args) -> TaskData:
    """The image processor (resizing to --image_size), lazily transformed splits and the collator of an
    image-classification run."""
    with training_args.main_process_first(desc="load images"):
        raw = load_image_datasets(data_args, seed=training_args.seed)
    if "train" not in raw:
        raise ValueError("Training needs training images: give --data_dir with a train/ folder, or --train_dir.")
    id2label, label2id = label_mappings(image_label_names(raw["train"], data_args.label_column))
    processor = load_image_processor(path, data_args.image_size)
    image_size = processor_image_size(processor)
    interpolate = data_args.interpolate_pos_encoding
    if interpolate is None:
        config = transformers.AutoConfig.from_pretrained(path)
        interpolate = needs_interpolate_pos_encoding(config, image_size)
    logger.info("images of %s px, interpolate_pos_encoding=%s", image_size, interpolate)
    # The transforms read the raw image and label columns, which the Trainer would drop as unused by the model.
    training_args.remove_unused_columns = False
    splits = prepare_image_datasets(raw, processor, data_args, label2id=label2id, seed=training_args.seed)
    model_kwargs = {"num_labels": len(id2label), "id2label": id2label, "label2id": label2id}
    collator = ImageClassificationCollator(interpolate_pos_encoding=interpolate)
    return TaskData(splits, processor, collator, id2label, label2id, model_kwargs, task="image-classification")


if __name__ == "__main__":
    main()
