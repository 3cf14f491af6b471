"""ViT with a different number of attention heads and MLP width in each layer.

This file is self-contained (it imports only torch, transformers and huggingface_hub): hf-nas copies it into the
folder of every extracted heterogeneous subnet, so that

    AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)

loads the subnet on a machine without hf-nas. The modules and parameter names are vanilla ViT's; only the shapes of
each layer's q/k/v/o projections and MLP differ.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import ViTConfig, ViTForImageClassification, ViTModel

__all__ = ["ViTSubnetConfig", "ViTSubnetForImageClassification", "ViTSubnetModel"]


@strict
class ViTSubnetConfig(ViTConfig):
    r"""[`ViTConfig`] with per-layer sizes.

    `hidden_size // num_attention_heads` is the attention head size, as in ViT; layer `i` has
    `layer_num_attention_heads[i]` heads of that size and an MLP of width `layer_intermediate_sizes[i]`.
    """

    model_type = "vit_subnet"
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


def _resize_layers(layers: nn.ModuleList, config: ViTSubnetConfig) -> None:
    """Give every layer its own head count and MLP width (built at the uniform size first)."""
    hidden = config.hidden_size
    head_size = config.hidden_size // config.num_attention_heads
    sizes = zip(layers, config.layer_num_attention_heads, config.layer_intermediate_sizes, strict=True)
    for layer, heads, ffn in sizes:
        inner = heads * head_size
        attention = layer.attention
        attention.q_proj = nn.Linear(hidden, inner, bias=config.qkv_bias)
        attention.k_proj = nn.Linear(hidden, inner, bias=config.qkv_bias)
        attention.v_proj = nn.Linear(hidden, inner, bias=config.qkv_bias)
        attention.o_proj = nn.Linear(inner, hidden)
        attention.num_attention_heads = heads
        layer.mlp.fc1 = nn.Linear(hidden, ffn)
        layer.mlp.fc2 = nn.Linear(ffn, hidden)


class ViTSubnetModel(ViTModel):
    config_class = ViTSubnetConfig

    def __init__(self, config: ViTSubnetConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config, add_pooling_layer=add_pooling_layer, use_mask_token=use_mask_token)
        _resize_layers(self.layers, config)
        self.post_init()


class ViTSubnetForImageClassification(ViTForImageClassification):
    config_class = ViTSubnetConfig

    def __init__(self, config: ViTSubnetConfig):
        super().__init__(config)
        _resize_layers(self.vit.layers, config)
        self.post_init()
