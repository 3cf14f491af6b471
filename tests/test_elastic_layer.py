"""Every family's transformer layer implements the `ElasticLayer` protocol: the sizes it reports, the projections it
exposes (and what their hooks see), `set_active`, and head / neuron permutations that keep the full layer's output."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from hf_nas.models.families import FAMILIES
from hf_nas.modules import ElasticLayer, ElasticLinear

from .conftest import randomize_parameters

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
FAMILY_CONFIGS: dict[str, dict[str, Any]] = {
    "bert": {"vocab_size": 99, "max_position_embeddings": 64},
    "vit": {"image_size": 32, "patch_size": 8},
    "beit": {"image_size": 32, "patch_size": 8, "use_relative_position_bias": True, "layer_scale_init_value": 0.1},
}
SEQ_LEN = 17  # BERT: any length; ViT / BEiT: CLS + (32 / 8)^2 patches


def test_every_family_is_covered():
    assert set(FAMILY_CONFIGS) == set(FAMILIES)


def make_layer(family: str) -> nn.Module:
    config_class = FAMILIES[family].elastic_config_class()
    model = FAMILIES[family].elastic_class("feature-extraction")(config_class(**TINY, **FAMILY_CONFIGS[family]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("relative_position_bias_table", "lambda_1", "lambda_2")):
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    return randomize_parameters(model).eval().elastic_layers()[0]


def run(layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    kwargs = {"resolution": (32, 32)} if hasattr(layer, "relative_position_bias") else {}
    with torch.no_grad():
        return layer(hidden_states, None, **kwargs)  # (B, T, h)


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_layer_is_an_elastic_layer(family):
    layer = make_layer(family)
    assert isinstance(layer, ElasticLayer) and isinstance(layer, nn.Module)
    assert not type(layer).__abstractmethods__
    for name in ElasticLayer.protocol_methods():
        assert getattr(type(layer), name) is not getattr(ElasticLayer, name), f"{family} inherits abstract {name}"
    assert (layer.attention_head_size, layer.max_num_attention_heads, layer.max_intermediate_size) == (8, 4, 64)
    projections = (*layer.qkv_projections(), layer.head_projection(), layer.neuron_projection())
    assert all(isinstance(proj, ElasticLinear) for proj in projections)
    assert len({id(proj) for proj in projections}) == 5


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_set_active_and_what_the_projections_see(family):
    layer = make_layer(family)
    layer.set_active(16, 3, 40)
    for proj in layer.qkv_projections():
        assert (proj.active_in_features, proj.active_out_features) == (16, 3 * 8)
    assert (layer.head_projection().active_in_features, layer.head_projection().active_out_features) == (24, 16)
    assert (layer.neuron_projection().active_in_features, layer.neuron_projection().active_out_features) == (40, 16)
    seen = {}
    hooks = [
        layer.head_projection().register_forward_pre_hook(lambda m, args: seen.__setitem__("heads", args[0].shape)),
        layer.neuron_projection().register_forward_pre_hook(lambda m, args: seen.__setitem__("ffn", args[0].shape)),
    ]
    out = run(layer, torch.randn(2, SEQ_LEN, 16))
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, SEQ_LEN, 16)
    assert seen == {"heads": (2, SEQ_LEN, 24), "ffn": (2, SEQ_LEN, 40)}


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_permutations_keep_the_full_layer(family):
    layer = make_layer(family)
    x = torch.randn(2, SEQ_LEN, 32)
    expected = run(layer, x)
    query = layer.qkv_projections()[0].weight.detach().clone()  # (nh * hs, h)
    ffn_in = layer.neuron_projection().weight.detach().clone()  # (h, f)
    head_order, neuron_order = (
        torch.tensor([2, 0, 3, 1]),
        torch.randperm(64, generator=torch.Generator().manual_seed(0)),
    )
    layer.permute_heads(head_order)
    layer.permute_neurons(neuron_order)
    torch.testing.assert_close(run(layer, x), expected, atol=1e-5, rtol=0)
    assert torch.equal(layer.qkv_projections()[0].weight[:8], query[16:24]), "head 0 is the former head 2"
    assert torch.equal(layer.neuron_projection().weight[:, :5], ffn_in[:, neuron_order[:5]])
