"""Pick the elastic class for a checkpoint and a task, as the Auto classes do for vanilla models, and register each
family's classes with the Auto classes."""

from __future__ import annotations

import os

from transformers import AutoConfig
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping

from .families import FAMILIES, ModelFamily, family_for_checkpoint, get_task

__all__ = ["elastic_class_for", "register_auto_classes", "vanilla_model_type"]


def vanilla_model_type(pretrained_model_name_or_path: str | os.PathLike) -> str:
    """The vanilla model type of a checkpoint: `bert` for a BERT checkpoint, a saved elastic BERT and an extracted
    per-layer BERT subnet alike."""
    return family_for_checkpoint(pretrained_model_name_or_path).model_type


def elastic_class_for(pretrained_model_name_or_path: str | os.PathLike, task: str) -> type:
    """The elastic model class that loads `pretrained_model_name_or_path` (vanilla or supernet) for `task`.

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import ViTConfig
    >>> from hf_nas.models.auto import elastic_class_for
    >>> folder = tempfile.mkdtemp()
    >>> ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4).save_pretrained(folder)
    >>> elastic_class_for(folder, "image-classification").__name__
    'ElasticViTForImageClassification'
    ```
    """
    get_task(task)  # an unknown task is named as such, whatever the checkpoint
    family = family_for_checkpoint(pretrained_model_name_or_path)
    if task not in family.tasks:
        supported = sorted(name for name, f in FAMILIES.items() if task in f.tasks)
        raise ValueError(
            f"{pretrained_model_name_or_path!s} is a `{family.model_type}` checkpoint; for {task} hf-nas supports "
            f"model types {supported}."
        )
    return family.elastic_class(task)


def register_auto_classes(family: ModelFamily) -> None:
    """Register a family's elastic and per-layer configs and models with `AutoConfig` / `AutoModel*`, so saved
    supernets and extracted subnets reload with the Auto classes (an extracted per-layer subnet also records its
    modeling file and `auto_map`, for machines without hf-nas)."""
    elastic_config, subnet_config = family.elastic_config_class(), family.subnet_config_class()
    AutoConfig.register(elastic_config.model_type, elastic_config, exist_ok=True)
    AutoConfig.register(subnet_config.model_type, subnet_config, exist_ok=True)
    subnet_config.register_for_auto_class()
    for name in family.tasks:
        auto_class = get_task(name).auto_model_class()
        elastic_class, subnet_class = family.elastic_class(name), family.subnet_class(name)
        auto_class.register(elastic_config, elastic_class, exist_ok=True)
        auto_class.register(subnet_config, subnet_class, exist_ok=True)
        subnet_class.register_for_auto_class(auto_class.__name__)
    # transformers converts a legacy key layout (ViT/BEiT: `encoder.layer.N.attention.attention.query`, ...) by model
    # class name, on load and (reversed) on save; the elastic base model shares the vanilla one's mapping.
    backbone = get_task("feature-extraction").suffix
    conversion = get_checkpoint_conversion_mapping(f"{family.class_prefix}{backbone}")
    if conversion is not None:
        register_checkpoint_conversion_mapping(
            family.elastic_class("feature-extraction").__name__, conversion, overwrite=True
        )
