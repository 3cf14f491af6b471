"""Configuration of the elastic BERT supernet."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BertConfig

from ..configuration_elastic import ElasticConfigMixin

__all__ = ["ElasticBertConfig"]


@strict
class ElasticBertConfig(ElasticConfigMixin, BertConfig):
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
    _loadable_model_types = ("bert", "elastic_bert")
    _family = "BERT"
    search_space: dict | None = None
    mixture_of_supernets: dict | str | None = None
    switchable_layer_norms: list | str | None = None
    switchable_heads: bool = False
    switchable_biases: bool = False
    switchable_delta_rank: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.is_decoder or self.add_cross_attention:
            raise ValueError("Elastic BERT supports encoder checkpoints only: set is_decoder=False.")
        self._init_search_space()
        self._init_mixture()
        self._init_switchable_norms()


__all__ = ["ElasticBertConfig"]
