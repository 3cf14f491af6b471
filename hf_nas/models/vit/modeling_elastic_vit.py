"""Elastic ViT supernet: the vanilla ViT architecture (transformers 5 layout) built from elastic modules.

Parameter names are vanilla ViT's (`embeddings.patch_embeddings.projection`, `layers.{i}.attention.{q,k,v,o}_proj`,
`layers.{i}.mlp.fc{1,2}`, ...), so a vanilla checkpoint loads without key mapping. Depth keeps the layers
`subnet.layers` (an ordered subset, renumbered on extraction); each kept layer runs its first `num_attention_heads[i]` heads and first
`intermediate_size[i]` MLP neurons; every module reads and writes the first `hidden_size` channels of the residual
stream (the patch projection, CLS token and position embeddings are sliced the same way).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import ViTForImageClassification, ViTPreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import torch_int
from transformers.utils.output_capturing import capture_outputs

from ...modules import ElasticConv2d, ElasticLayer, ElasticLayerNorm, ElasticLinear, ElasticSelfAttention
from ...modules.attention import VISION_PROJECTION_NAMES
from ...search_space import SubnetConfig
from ...validation import check_size
from ..supernet import SupernetMixin, set_active_layers
from .configuration_elastic_vit import ElasticViTConfig

__all__ = [
    "ElasticViTAttention",
    "ElasticViTForImageClassification",
    "ElasticViTLayer",
    "ElasticViTModel",
    "ElasticViTPreTrainedModel",
    "interpolate_position_embeddings",
]


def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, Iterable) else (value, value)


def interpolate_position_embeddings(
    position_embeddings: torch.Tensor, num_patches: int, height: int, width: int, patch_size: int
) -> torch.Tensor:
    """Resize the patch position embeddings `(1, 1 + n, h)` to a `height x width` image (bicubic), as ViT's
    `interpolate_pos_encoding` does; the CLS position is kept. Each channel is resized independently, so the result
    on the first `h` channels equals the first `h` channels of the full result."""
    num_positions = position_embeddings.shape[1] - 1
    if not torch.jit.is_tracing() and num_patches == num_positions and height == width:
        return position_embeddings
    class_pos_embed = position_embeddings[:, :1]  # (1, 1, h)
    patch_pos_embed = position_embeddings[:, 1:]  # (1, n, h)
    dim = position_embeddings.shape[-1]
    side = torch_int(num_positions**0.5)
    patch_pos_embed = patch_pos_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, h, s, s)
    patch_pos_embed = nn.functional.interpolate(
        patch_pos_embed, size=(height // patch_size, width // patch_size), mode="bicubic", align_corners=False
    )
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)  # (1, n', h)
    return torch.cat((class_pos_embed, patch_pos_embed), dim=1)


class ElasticPatchEmbeddings(nn.Module):
    """Non-overlapping patches projected to the first `hidden_size` channels (an elastic `Conv2d`)."""

    def __init__(self, config: Any):
        super().__init__()
        self.image_size = _pair(config.image_size)
        self.patch_size = _pair(config.patch_size)
        self.num_patches = (self.image_size[1] // self.patch_size[1]) * (self.image_size[0] // self.patch_size[0])
        self.num_channels = config.num_channels
        self.projection = ElasticConv2d(
            config.num_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}."
            )
        num_channels = pixel_values.shape[1]
        if num_channels != self.num_channels:
            raise ValueError(
                f"pixel_values has {num_channels} channels; this model was configured for "
                f"num_channels={self.num_channels}."
            )
        return self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B, n, h)


class ElasticViTEmbeddings(nn.Module):
    """CLS token, patch embeddings and position embeddings over the active hidden channels."""

    def __init__(self, config: ElasticViTConfig, use_mask_token: bool = False):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ElasticPatchEmbeddings(config)
        num_patches = self.patch_embeddings.num_patches
        self.position_embeddings = nn.Parameter(torch.randn(1, num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.patch_size
        self.image_size = self.patch_embeddings.image_size
        self.active_hidden_size = config.hidden_size

    def set_active(self, hidden_size: int) -> None:
        self.active_hidden_size = check_size("hidden_size", hidden_size, self.cls_token.shape[-1])
        self.patch_embeddings.projection.set_active(out_channels=hidden_size)

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        batch_size, _, height, width = pixel_values.shape
        h = self.active_hidden_size
        embeddings = self.patch_embeddings(pixel_values)  # (B, n, h)
        if bool_masked_pos is not None:
            seq_length = embeddings.shape[1]
            mask_tokens = self.mask_token[..., :h].expand(batch_size, seq_length, -1)
            mask = bool_masked_pos.unsqueeze(-1).type_as(mask_tokens)
            embeddings = embeddings * (1.0 - mask) + mask_tokens * mask
        cls_tokens = self.cls_token[..., :h].expand(batch_size, -1, -1)  # (B, 1, h)
        embeddings = torch.cat((cls_tokens, embeddings), dim=1)  # (B, 1 + n, h)
        position_embeddings = self.position_embeddings[..., :h]
        if interpolate_pos_encoding:
            embeddings = embeddings + interpolate_position_embeddings(
                position_embeddings, embeddings.shape[1] - 1, height, width, self.patch_size
            )
        else:
            if height != self.image_size[0] or width != self.image_size[1]:
                raise ValueError(
                    f"Input image size ({height}*{width}) doesn't match model ({self.image_size[0]}*"
                    f"{self.image_size[1]}). Resize the images to the model's size, or pass "
                    "interpolate_pos_encoding=True to interpolate the position embeddings."
                )
            embeddings = embeddings + position_embeddings
        return self.dropout(embeddings)


class ElasticViTAttention(ElasticSelfAttention):
    """Multi-head self-attention with its output projection (`q_proj`, `k_proj`, `v_proj`, `o_proj`) whose active
    heads are the first `active_num_attention_heads` and whose input and output are the first `hidden_size`
    channels; the head size never changes. Runs through transformers' attention interface (eager, sdpa, ...)."""

    def __init__(self, config: Any, query_value_bias: bool = True, key_bias: bool = True):
        head_dim = config.hidden_size // config.num_attention_heads
        super().__init__(
            config,
            config.hidden_size,
            config.num_attention_heads,
            head_dim,
            bias=query_value_bias,
            key_bias=key_bias,
            projection_names=VISION_PROJECTION_NAMES,
            output_projection="o_proj",
        )
        self.head_dim = head_dim

    @property
    def attention_dropout(self) -> float:
        return self.dropout.p


class ElasticViTMLP(nn.Module):
    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc1 = ElasticLinear(config.hidden_size, config.intermediate_size)
        self.fc2 = ElasticLinear(config.intermediate_size, config.hidden_size)

    def set_active(self, hidden_size: int, intermediate_size: int) -> None:
        self.fc1.set_active(in_features=hidden_size, out_features=intermediate_size)
        self.fc2.set_active(in_features=intermediate_size, out_features=hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class ElasticVisionLayerMixin(ElasticLayer):
    """The [`ElasticLayer`] protocol for the elastic ViT and BEiT layers (an attention with its output projection
    `o_proj`, and an MLP `fc1`, `fc2`); each layer adds `set_active`."""

    attention: ElasticViTAttention
    mlp: ElasticViTMLP

    @property
    def attention_head_size(self) -> int:
        return self.attention.attention_head_size

    @property
    def max_num_attention_heads(self) -> int:
        return self.attention.max_num_attention_heads

    @property
    def max_intermediate_size(self) -> int:
        return self.mlp.fc1.max_out_features

    def head_projection(self) -> ElasticLinear:
        """The linear layer whose input is the concatenated head outputs (B, T, heads * head_size)."""
        return self.attention.o_proj

    def neuron_projection(self) -> ElasticLinear:
        """The linear layer whose input is the activated MLP neurons (B, T, intermediate_size)."""
        return self.mlp.fc2

    def qkv_projections(self) -> tuple[ElasticLinear, ElasticLinear, ElasticLinear]:
        return self.attention.qkv_projections()

    def ffn_projections(self) -> tuple[ElasticLinear, ElasticLinear]:
        return self.mlp.fc1, self.mlp.fc2

    def permute_heads(self, order: torch.Tensor) -> None:
        self.attention.permute_heads(order)

    @torch.no_grad()
    def permute_neurons(self, order: torch.Tensor) -> None:
        self.mlp.fc1.permute_out_features(order)
        self.mlp.fc2.permute_in_features(order)


class ElasticViTLayer(ElasticVisionLayerMixin, GradientCheckpointingLayer):
    """Pre-norm transformer layer: attention and MLP, each with a residual connection."""

    def __init__(self, config: ElasticViTConfig):
        super().__init__()
        self.attention = ElasticViTAttention(config, query_value_bias=config.qkv_bias, key_bias=config.qkv_bias)
        self.layernorm_before = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ElasticViTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def set_active(self, hidden_size: int, num_attention_heads: int, intermediate_size: int) -> None:
        self.attention.set_active(hidden_size, num_attention_heads)
        self.layernorm_before.set_active(hidden_size)
        self.layernorm_after.set_active(hidden_size)
        self.mlp.set_active(hidden_size, intermediate_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states, _ = self.attention(self.layernorm_before(hidden_states), attention_mask, **kwargs)
        hidden_states = self.dropout(hidden_states) + residual
        residual = hidden_states
        hidden_states = self.mlp(self.layernorm_after(hidden_states))
        return self.dropout(hidden_states) + residual


class ElasticViTPooler(nn.Module):
    def __init__(self, config: ElasticViTConfig):
        super().__init__()
        self.dense = ElasticLinear(config.hidden_size, config.pooler_output_size)
        self.activation = ACT2FN[config.pooler_act]
        # A pooler as wide as the hidden size follows it; any other width stays fixed.
        self.follows_hidden_size = config.pooler_output_size == config.hidden_size

    def set_active(self, hidden_size: int) -> None:
        self.dense.set_active(in_features=hidden_size, out_features=hidden_size if self.follows_hidden_size else None)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, p)


class ElasticViTPreTrainedModel(SupernetMixin, ViTPreTrainedModel):
    config: ElasticViTConfig
    config_class = ElasticViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ElasticViTEmbeddings", "ElasticViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": ElasticViTLayer, "attentions": ElasticViTAttention}

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ElasticViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)

    def static_config_overrides(self, subnet: SubnetConfig) -> dict[str, Any]:
        if self.config.pooler_output_size == self.config.hidden_size:
            return {"pooler_output_size": subnet.hidden_size}
        return {}

    def elastic_layers(self) -> list[ElasticViTLayer]:
        """The transformer layers, in order (all of them, whatever the active depth)."""
        return list(self.base_model.layers)


class ElasticViTModel(ElasticViTPreTrainedModel):
    """The elastic ViT encoder (embeddings, layers, final layer norm, optional pooler).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticViTConfig, ElasticViTModel
    >>> config = ElasticViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    ...                           image_size=32, patch_size=8, num_labels=10)
    >>> model = ElasticViTModel(config)
    >>> with model.subnet(model.search_space.smallest()):
    ...     model(pixel_values=torch.randn(1, 3, 32, 32)).last_hidden_state.shape
    torch.Size([1, 17, 16])
    ```
    """

    static_class_name = "ViTModel"

    def __init__(self, config: ElasticViTConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config)
        self.config = config
        self.embeddings = ElasticViTEmbeddings(config, use_mask_token=use_mask_token)
        self.layers = nn.ModuleList([ElasticViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ElasticViTPooler(config) if add_pooling_layer else None
        self.active_layers = tuple(range(config.num_hidden_layers))  # indices of the layers that run
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def static_init_kwargs(self) -> dict:
        return {"add_pooling_layer": self.pooler is not None, "use_mask_token": self.embeddings.mask_token is not None}

    def _apply_subnet(self, subnet: SubnetConfig) -> None:
        self.embeddings.set_active(subnet.hidden_size)
        self.active_layers = set_active_layers(self.layers, subnet)
        self.layernorm.set_active(subnet.hidden_size)
        if self.pooler is not None:
            self.pooler.set_active(subnet.hidden_size)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values.")
        expected_dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        if pixel_values.dtype != expected_dtype:
            pixel_values = pixel_values.to(expected_dtype)
        embedding_output = self.embeddings(
            pixel_values, bool_masked_pos=bool_masked_pos, interpolate_pos_encoding=bool(interpolate_pos_encoding)
        )  # (B, 1 + n, h)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        hidden_states = embedding_output
        for layer in (self.layers[i] for i in self.active_layers):
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class ElasticViTForImageClassification(ElasticViTPreTrainedModel):
    """Elastic ViT with the vanilla image-classification head (a linear layer on the final CLS state).

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import ViTConfig, ViTForImageClassification
    >>> from hf_nas import ElasticViTForImageClassification
    >>> folder = tempfile.mkdtemp()  # a vanilla ViT checkpoint (a Hub id or a folder)
    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    ...                    image_size=32, patch_size=8, num_labels=10)
    >>> ViTForImageClassification(config).save_pretrained(folder)
    >>> model = ElasticViTForImageClassification.from_pretrained(folder, num_labels=10)
    >>> small = model.extract_subnet(model.search_space.smallest())  # per-layer sizes
    >>> type(small).__name__, small.config.num_hidden_layers
    ('ViTSubnetForImageClassification', 1)
    ```
    """

    static_class_name = "ViTForImageClassification"
    forward = ViTForImageClassification.forward  # the vanilla forward: same head, same loss rules

    def __init__(self, config: ElasticViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = ElasticViTModel(config, add_pooling_layer=False)
        self.classifier = (
            ElasticLinear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def head_modules(self) -> list[ElasticLinear]:
        return [self.classifier] if isinstance(self.classifier, ElasticLinear) else []
