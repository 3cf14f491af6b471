"""Supernet training: training arguments, the Trainer subclass, samplers and distillation losses."""

from .samplers import SAMPLERS, SubnetSampler, get_sampler, register_sampler
from .trainer import SAMPLER_STATE_NAME, SupernetTrainer
from .training_args import SupernetTrainingArguments

__all__ = [
    "SAMPLERS",
    "SAMPLER_STATE_NAME",
    "SubnetSampler",
    "SupernetTrainer",
    "SupernetTrainingArguments",
    "get_sampler",
    "register_sampler",
]
