"""Supernet training: training arguments, the Trainer subclass, samplers and distillation losses."""

from .checkpoint_weights import CheckpointWeightsMixin, ResumableTrainer, load_checkpoint_weights, saved_key_names
from .recipes import RecipeArguments, finetune_teacher, teacher_training_arguments
from .samplers import SAMPLERS, StagedSampler, SubnetSampler, get_sampler, register_sampler
from .trainer import SAMPLER_STATE_NAME, SupernetTrainer, is_complete_checkpoint, last_complete_checkpoint
from .training_args import SupernetTrainingArguments

__all__ = [
    "SAMPLERS",
    "SAMPLER_STATE_NAME",
    "CheckpointWeightsMixin",
    "RecipeArguments",
    "ResumableTrainer",
    "StagedSampler",
    "SubnetSampler",
    "SupernetTrainer",
    "SupernetTrainingArguments",
    "finetune_teacher",
    "get_sampler",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "load_checkpoint_weights",
    "register_sampler",
    "saved_key_names",
    "teacher_training_arguments",
]
