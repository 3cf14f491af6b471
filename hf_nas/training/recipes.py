"""Training recipes: how a supernet gets its teacher.

- `"one_pass"` (InstaTune, the default): the supernet is built during the single fine-tuning from the pretrained
  weights, and the largest subnet teaches the others in place. At equal training compute its subnets were better than
  teacher-first's at most MAC points of `docs/benchmarks/supernet.md` and on average (one seed; no interval of the
  differences excludes 0).
- `"teacher_first"`: fine-tune the full model on the task first (or take a given fine-tuned teacher),
  initialise the supernet from it, reorder heads and neurons by importance on it, then train the supernet with
  distillation from that fixed teacher (logits and the hidden states of every kept layer, as DynaBERT does). The
  teacher is saved beside the supernet (`<output_dir>/teacher`), where `extract_subnet.py --finetune_steps` finds it.

The library functions here do the teacher stage; `scripts/train_supernet.py` strings the stages together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel, TrainingArguments

from ..models.families import get_family
from ..utils import atomic_directory, atomic_write_text
from .checkpoint_weights import ResumableTrainer
from .training_args import SupernetTrainingArguments

__all__ = [
    "RECIPES",
    "RECIPE_DEFAULTS",
    "TEACHER_DIR_NAME",
    "TRAINING_RECORD_NAME",
    "RecipeArguments",
    "TrainingRecord",
    "finetune_subnet",
    "finetune_teacher",
    "find_saved_teacher",
    "teacher_training_arguments",
    "vanilla_auto_class",
]

logger = logging.getLogger(__name__)

RECIPES = ("one_pass", "teacher_first")
# The levers of the benchmarked recipe (docs/benchmarks/supernet.md): train_supernet.py's defaults for both recipes.
RECIPE_DEFAULTS = {"hidden_loss_weight": 1.0, "protect_largest_gradient": True, "uniform_subnet_probability": 0.5}
TEACHER_DIR_NAME = "teacher"
TRAINING_RECORD_NAME = "hf_nas_training.json"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass
class RecipeArguments:
    """Which recipe trains the supernet, and the teacher stage of the teacher-first recipe."""

    recipe: str = field(
        default="one_pass",
        metadata={
            "help": "one_pass (default): InstaTune, the supernet is built during the one fine-tuning and the largest "
            "subnet teaches in place; teacher_first: fine-tune the full model (or take --teacher_model_name_or_path), "
            "then train the supernet from it with distillation from that fixed teacher."
        },
    )
    teacher_max_steps: int | None = field(
        default=None, metadata={"help": "Optimizer steps of the teacher's fine-tuning (default: max_steps)."}
    )
    teacher_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the teacher's fine-tuning (default: learning_rate)."}
    )
    layer_rule: str | None = field(
        default=None,
        metadata={
            "help": "Which layers a depth-k subnet keeps: first, spread (evenly spaced, always the last) or "
            "importance (ranked on the fine-tuned model). Default: the search space's (spread for a new supernet)."
        },
    )

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"Unknown recipe {self.recipe!r}; allowed: {list(RECIPES)}.")
        if self.teacher_max_steps is not None and self.teacher_max_steps < 1:
            raise ValueError(f"`teacher_max_steps` must be >= 1, got {self.teacher_max_steps}.")
        if self.teacher_learning_rate is not None and not self.teacher_learning_rate > 0:
            raise ValueError(f"`teacher_learning_rate` must be > 0, got {self.teacher_learning_rate}.")
        from ..search_space import LAYER_RULES

        if self.layer_rule is not None and self.layer_rule not in LAYER_RULES:
            raise ValueError(f"Unknown layer_rule {self.layer_rule!r}; allowed: {list(LAYER_RULES)}.")


def teacher_training_arguments(
    args: SupernetTrainingArguments,
    output_dir: str | os.PathLike,
    max_steps: int | None = None,
    learning_rate: float | None = None,
) -> TrainingArguments:
    """Plain `TrainingArguments` for the teacher's fine-tuning: the supernet run's settings (batch size, schedule,
    seed, precision, devices, logging), its own output folder, step count and learning rate, and no checkpoints."""
    names = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    values: dict[str, Any] = {name: getattr(args, name) for name in names if hasattr(args, name)}
    values.update(
        output_dir=os.fspath(output_dir),
        max_steps=max_steps if max_steps is not None else args.max_steps,
        learning_rate=learning_rate if learning_rate is not None else args.learning_rate,
        save_strategy="no",
        eval_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
        resume_from_checkpoint=None,
        hub_model_id=None,
    )
    return TrainingArguments(**values)


def find_saved_teacher(output_dir: str | os.PathLike) -> str | None:
    """The teacher folder a teacher-first run saved in `output_dir`, if it is complete (config and weights)."""
    folder = os.path.join(os.fspath(output_dir), TEACHER_DIR_NAME)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    if not any(os.path.isfile(os.path.join(folder, name)) for name in _WEIGHT_FILES):
        return None
    return folder


@dataclass
class TrainingRecord:
    """What a supernet folder says about how it was made, saved as `hf_nas_training.json` beside the weights and read
    when a subnet is extracted (the model card's base model, dataset and training recipe).

    Args:
        base_model: the checkpoint the supernet was trained from: a Hub id, or a local path when there is none.
        recipe: `one_pass` or `teacher_first` (or `task_agnostic` for distilled supernets).
        dataset: where the training data came from: `name`, `config`, `train_split`, `validation_split`, or the
            `train_file` / `validation_file` / `data_dir` given.
        training: the training settings worth stating on a card (steps, learning rate, batch size, sampler,
            distillation, loss weights, ...).
        command_line: the arguments of the run.
    """

    base_model: str | None = None
    recipe: str | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    command_line: list[str] = field(default_factory=list)

    def save(self, folder: str | os.PathLike) -> str:
        """Write `folder/hf_nas_training.json` atomically; returns its path."""
        path = os.path.join(os.fspath(folder), TRAINING_RECORD_NAME)
        atomic_write_text(path, json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TrainingRecord | None:
        """The record saved in `folder`, or None when there is none (a supernet trained before records existed)."""
        path = os.path.join(os.fspath(folder), TRAINING_RECORD_NAME)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"{path} has unknown keys {unknown}; allowed: {[f.name for f in dataclasses.fields(cls)]}."
            )
        return cls(**data)


def finetune_teacher(
    model: PreTrainedModel,
    args: TrainingArguments,
    train_dataset: Any,
    save_directory: str | os.PathLike,
    data_collator: Any = None,
    processing_class: Any = None,
    **trainer_kwargs: Any,
) -> PreTrainedModel:
    """Fine-tune the full (vanilla) model on the task with a plain `Trainer` ([`ResumableTrainer`]) and save it, with its tokenizer or
    image processor, atomically to `save_directory`. Returns the fine-tuned model in eval mode.

    Example:

    ```python
    >>> import os, tempfile
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> from hf_nas import SupernetTrainingArguments
    >>> from hf_nas.training.recipes import find_saved_teacher, finetune_teacher, teacher_training_arguments
    >>> config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                     intermediate_size=64, num_labels=2)
    >>> teacher = BertForSequenceClassification(config)
    >>> train = [{"input_ids": [2, 5, 7, 9], "labels": i % 2} for i in range(4)]
    >>> output_dir = tempfile.mkdtemp()  # the supernet's output folder
    >>> supernet_args = SupernetTrainingArguments(output_dir, max_steps=1, per_device_train_batch_size=2,
    ...                                           report_to="none")
    >>> targs = teacher_training_arguments(supernet_args, os.path.join(output_dir, "teacher"))
    >>> teacher = finetune_teacher(teacher, targs, train, os.path.join(output_dir, "teacher"))  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    ***** teacher_train metrics *****
      epoch ...
    >>> find_saved_teacher(output_dir) == os.path.join(output_dir, "teacher")
    True
    ```
    """
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"`model` must be a PreTrainedModel, got {type(model).__name__}.")
    trainer = ResumableTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=data_collator,
        processing_class=processing_class,
        **trainer_kwargs,
    )
    result = trainer.train()
    trainer.log_metrics("teacher_train", result.metrics)
    if args.should_save:
        with atomic_directory(save_directory) as tmp:
            model.save_pretrained(tmp)
            if processing_class is not None:
                processing_class.save_pretrained(tmp)
    logger.info("teacher fine-tuned for %d steps and saved to %s", result.global_step, save_directory)
    return model.eval()


def vanilla_auto_class(model: PreTrainedModel) -> type:
    """The transformers Auto class that loads the vanilla twin of the supernet `model` (an
    `ElasticBertForSequenceClassification` -> `AutoModelForSequenceClassification`)."""
    return get_family(model.config).task_of(model.static_class_name).auto_model_class()


def finetune_subnet(
    supernet: PreTrainedModel,
    subnet: Any,
    args: SupernetTrainingArguments,
    train_dataset: Any,
    teacher_model: PreTrainedModel | str | None = None,
    data_collator: Any = None,
    **trainer_kwargs: Any,
) -> PreTrainedModel:
    """A short distillation of one chosen subnet after the search (always reported apart from the subnet without
    retraining): `subnet` alone is trained inside `supernet` (a fixed sampler), with distillation from
    `teacher_model` (e.g. the teacher saved beside the supernet) or from labels only when there is none. The
    supernet's other weights keep their values unless weight decay moves them; extract the subnet afterwards.

    Example:

    ```python
    >>> import tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, SupernetTrainingArguments
    >>> from hf_nas.training.recipes import finetune_subnet
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> supernet = ElasticBertForSequenceClassification(config)
    >>> teacher = supernet.extract_subnet(supernet.max_subnet())  # stands in for the teacher saved beside it
    >>> subnet = supernet.search_space.smallest()
    >>> train = [{"input_ids": [2, 5, 7, 9], "labels": i % 2} for i in range(4)]
    >>> args = SupernetTrainingArguments(tempfile.mkdtemp(), max_steps=1, per_device_train_batch_size=2,
    ...                                  hidden_loss_weight=1.0, save_strategy="no", report_to="none")
    >>> supernet = finetune_subnet(supernet, subnet, args, train, teacher_model=teacher)  # doctest: +ELLIPSIS
    {'train_runtime': ...}
    >>> small = supernet.extract_subnet(subnet)
    >>> small.config.num_hidden_layers, small.config.hidden_size
    (1, 16)
    ```
    """
    from .samplers import get_sampler
    from .trainer import SupernetTrainer

    supernet.search_space.validate(subnet)
    sampler = get_sampler("fixed", supernet.search_space, subnets=[subnet])
    args = dataclasses.replace(args, protect_largest_gradient=False, eval_subnets="")
    trainer = SupernetTrainer(
        model=supernet,
        args=args,
        teacher_model=teacher_model,
        sampler=sampler,
        train_dataset=train_dataset,
        data_collator=data_collator,
        **trainer_kwargs,
    )
    trainer.train()
    supernet.eval()
    return supernet
