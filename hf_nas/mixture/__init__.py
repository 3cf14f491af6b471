"""Mixture-of-Supernets: weights routed by the architecture.

Plain weight sharing makes every subnet compute with a prefix slice of one matrix per linear layer. With a mixture,
each targeted linear layer holds `num_experts` full-size matrices, and the active subnet computes with
`W(a) = sum_i alpha_i(a) * E_i` (sliced as usual), where `a` is the subnet's normalized architecture encoding and
`alpha(a)` the softmax of a small router: one mixture per layer ([`LayerRouter`]) or per output neuron
([`NeuronRouter`]). Small subnets thus stop competing with large ones for the same numbers, while an extracted subnet
is still one ordinary matrix per layer: extraction writes `W(a*)`.

- [`MixtureConfig`]: the settings, stored in the supernet config's `mixture_of_supernets` (a dict) and saved with it.
- [`enable_mixture`]: add a mixture to a supernet in place; every expert starts as a copy of the layer's weight, so
  every subnet computes what it computed before.
- [`MixtureElasticLinear`]: the mixture layer; [`architecture_encoding`]: the router's input.

Example:

```python
>>> import torch
>>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
>>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
...                            intermediate_size=64, mixture_of_supernets={"mode": "layer", "num_experts": 2})
>>> model = ElasticBertForSequenceClassification(config).eval()
>>> model.bert.encoder.layer[0].intermediate.dense.expert_weights.shape
torch.Size([1, 64, 32])
>>> small = model.extract_subnet(model.search_space.smallest())  # ordinary weights: W(a) of that subnet
>>> sorted(name for name, _ in small.named_parameters() if "expert" in name or "router" in name)
[]
```
"""

from .config import MIXTURE_MODES, ROUTER_INITS, TARGET_MODULES, MixtureConfig, mixture_config_of
from .encoding import architecture_encoding, encoding_size, size_score
from .linear import MixtureElasticLinear
from .model import (
    MIXTURE_PARAMETER_PATTERN,
    attach_mixture,
    check_no_mixture,
    enable_mixture,
    has_mixture,
    init_mixture_weights,
    mixture_linears,
    mixture_size_range,
    route_subnet,
    target_linears,
)
from .router import ROUTERS, LayerRouter, NeuronRouter, Router, get_router_class, register_router

__all__ = [
    "MIXTURE_MODES",
    "MIXTURE_PARAMETER_PATTERN",
    "ROUTERS",
    "ROUTER_INITS",
    "TARGET_MODULES",
    "LayerRouter",
    "MixtureConfig",
    "MixtureElasticLinear",
    "NeuronRouter",
    "Router",
    "architecture_encoding",
    "attach_mixture",
    "check_no_mixture",
    "enable_mixture",
    "encoding_size",
    "get_router_class",
    "has_mixture",
    "init_mixture_weights",
    "mixture_config_of",
    "mixture_linears",
    "mixture_size_range",
    "register_router",
    "route_subnet",
    "size_score",
    "target_linears",
]
