"""BEiT with a different number of attention heads and MLP width in each layer.

This file is self-contained (it imports only torch, transformers and huggingface_hub): hf-nas copies it into the
folder of every extracted heterogeneous subnet, so that

    AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)

loads the subnet on a machine without hf-nas. The modules and parameter names are vanilla BEiT's; only the shapes of
each layer's q/k/v/o projections, MLP and relative position bias table differ. A relative position bias shared by
all layers has one column per head of the widest layer; a layer with `k` heads adds its first `k` planes.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import BeitConfig, BeitForImageClassification, BeitModel
from transformers.models.beit.modeling_beit import BeitLayer

__all__ = ["BeitSubnetConfig", "BeitSubnetForImageClassification", "BeitSubnetModel"]


@strict
class BeitSubnetConfig(BeitConfig):
    r"""[`BeitConfig`] with per-layer sizes.

    `hidden_size // num_attention_heads` is the attention head size, as in BEiT; layer `i` has
    `layer_num_attention_heads[i]` heads of that size and an MLP of width `layer_intermediate_sizes[i]`.
    """

    model_type = "beit_subnet"
    layer_num_attention_heads: list[int] | None = None
    layer_intermediate_sizes: list[int] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.layer_num_attention_heads is None:
            self.layer_num_attention_heads = [self.num_attention_heads] * self.num_hidden_layers
        if self.layer_intermediate_sizes is None:
            self.layer_intermediate_sizes = [self.intermediate_size] * self.num_hidden_layers
        for name in ("layer_num_attention_heads", "layer_intermediate_sizes"):
            values = getattr(self, name)
            if len(values) != self.num_hidden_layers:
                raise ValueError(
                    f"`{name}` has {len(values)} entries but num_hidden_layers is {self.num_hidden_layers}."
                )
            if any(int(v) < 1 for v in values):
                raise ValueError(f"`{name}` entries must be >= 1, got {list(values)}.")


class BeitSubnetLayer(BeitLayer):
    """A BEiT layer that adds only the planes of its own heads from a bias shared by all layers."""

    def forward(self, hidden_states, attention_mask=None, interpolate_pos_encoding=False, resolution=None, **kwargs):
        heads = self.attention.num_attention_heads
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[1] > heads:
            attention_mask = attention_mask[:, :heads]
        return super().forward(hidden_states, attention_mask, interpolate_pos_encoding, resolution, **kwargs)


def _resize(model: BeitModel, config: BeitSubnetConfig) -> None:
    """Give every layer its own head count and MLP width (built at the uniform size first)."""
    hidden = config.hidden_size
    head_size = config.hidden_size // config.num_attention_heads
    if model.shared_position_bias is not None:
        table = model.shared_position_bias.relative_position_bias_table  # (num_relative_distance, heads)
        model.shared_position_bias.relative_position_bias_table = nn.Parameter(
            torch.zeros(table.shape[0], max(config.layer_num_attention_heads))
        )
    sizes = zip(model.layers, config.layer_num_attention_heads, config.layer_intermediate_sizes, strict=True)
    for layer, heads, ffn in sizes:
        inner = heads * head_size
        attention = layer.attention
        attention.q_proj = nn.Linear(hidden, inner)
        attention.k_proj = nn.Linear(hidden, inner, bias=False)
        attention.v_proj = nn.Linear(hidden, inner)
        attention.o_proj = nn.Linear(inner, hidden)
        attention.num_attention_heads = heads
        layer.mlp.fc1 = nn.Linear(hidden, ffn)
        layer.mlp.fc2 = nn.Linear(ffn, hidden)
        if layer.relative_position_bias is not None:
            rows = layer.relative_position_bias.relative_position_bias_table.shape[0]
            layer.relative_position_bias.relative_position_bias_table = nn.Parameter(torch.zeros(rows, heads))
        layer.__class__ = BeitSubnetLayer


class BeitSubnetModel(BeitModel):
    config_class = BeitSubnetConfig

    def __init__(self, config: BeitSubnetConfig, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        _resize(self, config)
        self.post_init()


class BeitSubnetForImageClassification(BeitForImageClassification):
    config_class = BeitSubnetConfig

    def __init__(self, config: BeitSubnetConfig):
        super().__init__(config)
        _resize(self.beit, config)
        self.post_init()
