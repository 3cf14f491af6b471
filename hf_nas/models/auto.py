"""Pick the elastic class for a checkpoint and a task, as the Auto classes do for vanilla models."""

from __future__ import annotations

import os

__all__ = ["TASKS", "elastic_class_for", "vanilla_model_type"]

# task -> vanilla model type -> name of the elastic class in `hf_nas`
TASKS: dict[str, dict[str, str]] = {
    "feature-extraction": {"bert": "ElasticBertModel", "vit": "ElasticViTModel", "beit": "ElasticBeitModel"},
    "sequence-classification": {"bert": "ElasticBertForSequenceClassification"},
    "token-classification": {"bert": "ElasticBertForTokenClassification"},
    "question-answering": {"bert": "ElasticBertForQuestionAnswering"},
    "fill-mask": {"bert": "ElasticBertForMaskedLM"},
    "image-classification": {"vit": "ElasticViTForImageClassification", "beit": "ElasticBeitForImageClassification"},
}


def vanilla_model_type(pretrained_model_name_or_path: str | os.PathLike) -> str:
    """The vanilla model type of a checkpoint: `bert` for both a BERT checkpoint and a saved elastic BERT."""
    from transformers import PreTrainedConfig

    config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path)
    model_type = config_dict.get("model_type")
    if model_type is None:
        raise ValueError(f"{pretrained_model_name_or_path!s} has no `model_type` in its config.json.")
    return model_type.removeprefix("elastic_")


def elastic_class_for(pretrained_model_name_or_path: str | os.PathLike, task: str) -> type:
    """The elastic model class that loads `pretrained_model_name_or_path` (vanilla or supernet) for `task`.

    Example:

    ```python
    >>> elastic_class_for("path/to/vit-checkpoint", "image-classification").__name__  # doctest: +SKIP
    'ElasticViTForImageClassification'
    ```
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; allowed: {sorted(TASKS)}.")
    model_type = vanilla_model_type(pretrained_model_name_or_path)
    classes = TASKS[task]
    if model_type not in classes:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} is a `{model_type}` checkpoint; for {task} hf-nas supports "
            f"model types {sorted(classes)}."
        )
    import hf_nas

    return getattr(hf_nas, classes[model_type])
