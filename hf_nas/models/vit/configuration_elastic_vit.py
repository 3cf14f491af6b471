"""Configuration of the elastic ViT supernet."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import ViTConfig

from ..configuration_elastic import ElasticConfigMixin

__all__ = ["ElasticViTConfig"]


@strict
class ElasticViTConfig(ElasticConfigMixin, ViTConfig):
    r"""[`ViTConfig`] plus the supernet's search space.

    The vanilla fields describe the full supernet; `search_space` (a dict, see [`SearchSpace.to_dict`]) lists the
    choices of every dimension and defaults to [`SearchSpace.from_model_config`]. A vanilla `vit` config.json loads
    into this class as is.

    Example:

    ```python
    >>> from hf_nas import ElasticViTConfig
    >>> config = ElasticViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    >>> config.search_space["intermediate_size"]
    [16, 32, 48, 64]
    ```
    """

    model_type = "elastic_vit"
    _loadable_model_types = ("vit", "elastic_vit")
    _family = "ViT"
    search_space: dict | None = None
    mixture_of_supernets: dict | str | None = None
    switchable_layer_norms: list | str | None = None
    switchable_heads: bool = False
    switchable_biases: bool = False
    switchable_delta_rank: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._init_search_space()
        self._init_mixture()
        self._init_switchable_norms()
