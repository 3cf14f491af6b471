"""Configuration of the elastic BEiT supernet."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import BeitConfig

from ..configuration_elastic import ElasticConfigMixin

__all__ = ["ElasticBeitConfig"]


@strict
class ElasticBeitConfig(ElasticConfigMixin, BeitConfig):
    r"""[`BeitConfig`] plus the supernet's search space.

    The vanilla fields describe the full supernet; `search_space` (a dict, see [`SearchSpace.to_dict`]) lists the
    choices of every dimension and defaults to [`SearchSpace.from_model_config`]. A vanilla `beit` config.json loads
    into this class as is. Relative position bias (per layer or shared), layer scale and mean pooling all work with
    every subnet: a layer with `k` heads uses the first `k` columns of its (or the shared) bias table.

    Example:

    ```python
    >>> from hf_nas import ElasticBeitConfig
    >>> config = ElasticBeitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    >>> config.search_space["num_hidden_layers"]
    [1, 2]
    ```
    """

    model_type = "elastic_beit"
    _loadable_model_types = ("beit", "elastic_beit")
    _family = "BEiT"
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
