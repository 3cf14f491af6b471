"""Configuration of the elastic BERT supernet."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import BertConfig

from ...search_space import SearchSpace

__all__ = ["ElasticBertConfig"]

# Model types whose checkpoints load into an elastic BERT supernet without key mapping.
_LOADABLE_MODEL_TYPES = ("bert", "elastic_bert")


@strict
class ElasticBertConfig(BertConfig):
    r"""[`BertConfig`] plus the supernet's search space.

    The vanilla fields (`hidden_size`, `num_hidden_layers`, ...) describe the full supernet; `search_space` (a dict,
    see [`SearchSpace.to_dict`]) lists the choices of every dimension and defaults to
    [`SearchSpace.from_model_config`]. A vanilla `bert` config.json loads into this class as is.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig
    >>> config = ElasticBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    >>> config.search_space["num_attention_heads"]
    [1, 2, 3, 4]
    ```
    """

    model_type = "elastic_bert"
    search_space: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}: "
                "an elastic BERT needs a whole attention head size (hidden_size = heads x head size)."
            )
        if self.is_decoder or self.add_cross_attention:
            raise ValueError("Elastic BERT supports encoder checkpoints only: set is_decoder=False.")
        space = SearchSpace.from_model_config(self) if self.search_space is None else self._check_space()
        self.search_space = space.to_dict()

    @property
    def attention_head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def _check_space(self) -> SearchSpace:
        space = SearchSpace.from_dict(dict(self.search_space))
        if space.attention_head_size != self.attention_head_size:
            raise ValueError(
                f"search_space.attention_head_size={space.attention_head_size} differs from the model's "
                f"hidden_size / num_attention_heads = {self.attention_head_size}."
            )
        limits = {
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_size": self.hidden_size,
        }
        for field, limit in limits.items():
            too_big = [v for v in getattr(space, field) if v > limit]
            if too_big:
                raise ValueError(
                    f"search_space.{field} choices {too_big} exceed the supernet's {field}={limit}; "
                    f"allowed: 1 to {limit}."
                )
        return space

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        model_type = config_dict.get("model_type")
        if model_type not in _LOADABLE_MODEL_TYPES:
            raise ValueError(
                f"{pretrained_model_name_or_path!s} is a `{model_type}` checkpoint; an elastic BERT supernet loads "
                f"checkpoints of model type {list(_LOADABLE_MODEL_TYPES)}."
            )
        # A vanilla BERT checkpoint *is* a supernet at full size: adopt it without a model-type warning.
        config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs


__all__ = ["ElasticBertConfig"]
