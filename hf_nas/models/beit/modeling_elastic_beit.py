"""Elastic BEiT supernet: the vanilla BEiT architecture (transformers 5 layout) built from elastic modules.

Parameter names are vanilla BEiT's, so a vanilla checkpoint loads without key mapping. Everything ViT has (see
`modeling_elastic_vit.py`) plus what BEiT adds, each working with every subnet:
- no key bias;
- relative position bias per layer or shared by all layers: a layer running `k` heads adds the first `k` head
  columns of the bias (importance reordering keeps one head order for all layers when the bias is shared);
- layer scale (`lambda_1`, `lambda_2`) over the active hidden channels;
- mean pooling (a layer norm over the mean of the patch states) or the final CLS state;
- position embeddings (if any) always interpolated to the input size, as in vanilla BEiT.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import BeitForImageClassification, BeitPreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.beit.modeling_beit import BeitDropPath, BeitModelOutputWithPooling, BeitRelativePositionBias
from transformers.utils.output_capturing import capture_outputs

from ...modules import ElasticLayerNorm, ElasticLinear
from ...search_space import SubnetConfig
from ...validation import check_size
from ..supernet import SupernetMixin, set_active_layers
from ..vit.modeling_elastic_vit import (
    ElasticPatchEmbeddings,
    ElasticVisionLayerMixin,
    ElasticViTAttention,
    ElasticViTMLP,
    interpolate_position_embeddings,
)
from .configuration_elastic_beit import ElasticBeitConfig

__all__ = [
    "ElasticBeitForImageClassification",
    "ElasticBeitLayer",
    "ElasticBeitModel",
    "ElasticBeitPreTrainedModel",
]


class ElasticBeitEmbeddings(nn.Module):
    """CLS token, patch embeddings and (optional) absolute position embeddings over the active hidden channels."""

    def __init__(self, config: ElasticBeitConfig):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.use_mask_token else None
        self.patch_embeddings = ElasticPatchEmbeddings(config)
        self.patch_size = config.patch_size
        num_patches = self.patch_embeddings.num_patches
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, num_patches + 1, config.hidden_size))
            if config.use_absolute_position_embeddings
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.active_hidden_size = config.hidden_size

    def set_active(self, hidden_size: int) -> None:
        self.active_hidden_size = check_size("hidden_size", hidden_size, self.cls_token.shape[-1])
        self.patch_embeddings.projection.set_active(out_channels=hidden_size)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.BoolTensor | None = None) -> torch.Tensor:
        _, _, height, width = pixel_values.shape
        h = self.active_hidden_size
        embeddings = self.patch_embeddings(pixel_values)  # (B, n, h)
        batch_size, seq_len, _ = embeddings.size()
        if bool_masked_pos is not None:
            mask_tokens = self.mask_token[..., :h].expand(batch_size, seq_len, -1)
            mask = bool_masked_pos.unsqueeze(-1).type_as(mask_tokens)
            embeddings = embeddings * (1 - mask) + mask_tokens * mask
        cls_tokens = self.cls_token[..., :h].expand(batch_size, -1, -1)
        embeddings = torch.cat((cls_tokens, embeddings), dim=1)  # (B, 1 + n, h)
        if self.position_embeddings is not None:
            embeddings = embeddings + interpolate_position_embeddings(
                self.position_embeddings[..., :h], embeddings.shape[1] - 1, height, width, self.patch_size
            )
        return self.dropout(embeddings)


def _head_slice(bias: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The first `num_heads` head planes of an additive attention bias `(B or 1, heads, T, T)`."""
    if bias.dim() == 4 and bias.shape[1] > num_heads:
        return bias[:, :num_heads]
    return bias


class ElasticBeitLayer(ElasticVisionLayerMixin, GradientCheckpointingLayer):
    """BEiT's pre-norm layer: attention and MLP, each scaled by layer scale, with stochastic depth."""

    def __init__(self, config: ElasticBeitConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.attention = ElasticViTAttention(config, query_value_bias=True, key_bias=False)
        self.layernorm_before = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ElasticViTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.patch_size
        self.drop_path = BeitDropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()
        init_values = config.layer_scale_init_value
        if init_values > 0:
            self.lambda_1 = nn.Parameter(init_values * torch.ones(config.hidden_size), requires_grad=True)
            self.lambda_2 = nn.Parameter(init_values * torch.ones(config.hidden_size), requires_grad=True)
        else:
            self.lambda_1, self.lambda_2 = 1.0, 1.0
        self.relative_position_bias = BeitRelativePositionBias(config) if config.use_relative_position_bias else None
        self.active_hidden_size = config.hidden_size

    def set_active(self, hidden_size: int, num_attention_heads: int, intermediate_size: int) -> None:
        self.attention.set_active(hidden_size, num_attention_heads)
        self.layernorm_before.set_active(hidden_size)
        self.layernorm_after.set_active(hidden_size)
        self.mlp.set_active(hidden_size, intermediate_size)
        self.active_hidden_size = hidden_size

    @torch.no_grad()
    def permute_heads(self, order: torch.Tensor) -> None:
        self.attention.permute_heads(order)
        if self.relative_position_bias is not None:
            table = self.relative_position_bias.relative_position_bias_table  # (num_relative_distance, heads)
            table.copy_(table[:, torch.as_tensor(order, dtype=torch.long)])

    def _layer_scale(self, value: torch.Tensor | float) -> torch.Tensor | float:
        return value[: self.active_hidden_size] if isinstance(value, torch.Tensor) else value

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        resolution: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        num_heads = self.attention.active_num_attention_heads
        if attention_mask is not None:
            attention_mask = _head_slice(attention_mask, num_heads)  # a shared bias covers all heads
        if self.relative_position_bias is not None:
            height, width = resolution
            window_size = (height // self.patch_size, width // self.patch_size)
            bias = self.relative_position_bias(
                window_size, interpolate_pos_encoding, dim_size=hidden_states.shape[1]
            )  # (1, heads, T, T)
            bias = _head_slice(bias, num_heads)
            attention_mask = bias + attention_mask if attention_mask is not None else bias

        residual = hidden_states
        hidden_states, _ = self.attention(
            self.layernorm_before(hidden_states), attention_mask=attention_mask, **kwargs
        )
        hidden_states = self._layer_scale(self.lambda_1) * self.dropout(hidden_states)
        hidden_states = self.drop_path(hidden_states) + residual

        residual = hidden_states
        hidden_states = self.mlp(self.layernorm_after(hidden_states))
        hidden_states = self._layer_scale(self.lambda_2) * self.dropout(hidden_states)
        return self.drop_path(hidden_states) + residual


class ElasticBeitPooler(nn.Module):
    def __init__(self, config: ElasticBeitConfig):
        super().__init__()
        self.layernorm = (
            ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_mean_pooling else None
        )

    def set_active(self, hidden_size: int) -> None:
        if self.layernorm is not None:
            self.layernorm.set_active(hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Mean of the patch states with a layer norm, or the CLS state.
        if self.layernorm is not None:
            return self.layernorm(hidden_states[:, 1:, :].mean(1))
        return hidden_states[:, 0]


class ElasticBeitPreTrainedModel(SupernetMixin, BeitPreTrainedModel):
    config: ElasticBeitConfig
    config_class = ElasticBeitConfig
    base_model_prefix = "beit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ElasticBeitLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": ElasticBeitLayer, "attentions": ElasticViTAttention}
    _keys_to_ignore_on_load_unexpected = [r".*relative_position_index.*"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ElasticBeitEmbeddings):
            init.zeros_(module.cls_token)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)
            if module.position_embeddings is not None:
                init.zeros_(module.position_embeddings)
        elif isinstance(module, BeitRelativePositionBias):
            init.zeros_(module.relative_position_bias_table)
        elif isinstance(module, ElasticBeitLayer):
            if isinstance(module.lambda_1, nn.Parameter):
                init.constant_(module.lambda_1, self.config.layer_scale_init_value)
                init.constant_(module.lambda_2, self.config.layer_scale_init_value)

    def static_config_overrides(self, subnet: SubnetConfig) -> dict[str, Any]:
        config = self.config
        if config.out_indices == [config.num_hidden_layers] or config.out_indices == (config.num_hidden_layers,):
            # The default backbone output (the last stage) follows the depth; any other choice must fit in it.
            return {"stage_names": None, "out_features": None, "out_indices": None}
        return {"stage_names": None}

    def shares_head_order(self) -> bool:
        return self.base_model.shared_position_bias is not None

    @torch.no_grad()
    def permute_shared_heads(self, order: torch.Tensor) -> None:
        shared = self.base_model.shared_position_bias
        if shared is not None:
            table = shared.relative_position_bias_table  # (num_relative_distance, heads)
            table.copy_(table[:, torch.as_tensor(order, dtype=torch.long)])

    def elastic_layers(self) -> list[ElasticBeitLayer]:
        """The transformer layers, in order (all of them, whatever the active depth)."""
        return list(self.base_model.layers)


class ElasticBeitModel(ElasticBeitPreTrainedModel):
    """The elastic BEiT encoder (embeddings, optional shared relative position bias, layers, final layer norm or
    mean pooling).

    Example:

    ```python
    >>> import torch
    >>> from hf_nas import ElasticBeitConfig, ElasticBeitModel
    >>> config = ElasticBeitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    ...                            image_size=32, patch_size=8, use_relative_position_bias=True)
    >>> model = ElasticBeitModel(config)
    >>> with model.subnet(model.search_space.smallest()):
    ...     model(pixel_values=torch.randn(1, 3, 32, 32)).pooler_output.shape
    torch.Size([1, 16])
    ```
    """

    static_class_name = "BeitModel"

    def __init__(self, config: ElasticBeitConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.config = config
        self.embeddings = ElasticBeitEmbeddings(config)
        self.shared_position_bias = (
            BeitRelativePositionBias(config) if config.use_shared_relative_position_bias else None
        )
        rates = [
            config.drop_path_rate * i / max(config.num_hidden_layers - 1, 1) for i in range(config.num_hidden_layers)
        ]
        self.layers = nn.ModuleList([ElasticBeitLayer(config, drop_path_rate=r) for r in rates])
        self.layernorm = (
            nn.Identity()
            if config.use_mean_pooling
            else ElasticLayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        )
        self.pooler = ElasticBeitPooler(config) if add_pooling_layer else None
        self.active_layers = tuple(range(config.num_hidden_layers))  # indices of the layers that run
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def static_init_kwargs(self) -> dict:
        return {"add_pooling_layer": self.pooler is not None}

    def _apply_subnet(self, subnet: SubnetConfig) -> None:
        self.embeddings.set_active(subnet.hidden_size)
        self.active_layers = set_active_layers(self.layers, subnet)
        if isinstance(self.layernorm, ElasticLayerNorm):
            self.layernorm.set_active(subnet.hidden_size)
        if self.pooler is not None:
            self.pooler.set_active(subnet.hidden_size)

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BeitModelOutputWithPooling:
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values.")
        interpolate_pos_encoding = bool(interpolate_pos_encoding)
        embedding_output = self.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)  # (B, 1 + n, h)
        resolution = pixel_values.shape[2:]
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        if self.shared_position_bias is not None:
            height, width = resolution
            window_size = (height // self.config.patch_size, width // self.config.patch_size)
            shared = self.shared_position_bias(
                window_size, interpolate_pos_encoding=interpolate_pos_encoding, dim_size=embedding_output.shape[1]
            )  # (1, heads, T, T): each layer adds the planes of the heads it runs
            attention_mask = shared + attention_mask if attention_mask is not None else shared
        hidden_states = embedding_output
        for layer in (self.layers[i] for i in self.active_layers):
            hidden_states = layer(
                hidden_states,
                attention_mask=attention_mask,
                interpolate_pos_encoding=interpolate_pos_encoding,
                resolution=resolution,
                **kwargs,
            )
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BeitModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class ElasticBeitForImageClassification(ElasticBeitPreTrainedModel):
    """Elastic BEiT with the vanilla image-classification head (a linear layer on the pooled output).

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import BeitConfig, BeitForImageClassification
    >>> from hf_nas import ElasticBeitForImageClassification
    >>> folder = tempfile.mkdtemp()  # a vanilla BEiT checkpoint (a Hub id or a folder)
    >>> config = BeitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    ...                     image_size=32, patch_size=8, num_labels=10)
    >>> BeitForImageClassification(config).save_pretrained(folder)
    >>> model = ElasticBeitForImageClassification.from_pretrained(folder, num_labels=10)
    >>> small = model.extract_subnet(model.search_space.smallest())  # per-layer sizes
    >>> type(small).__name__, small.config.num_hidden_layers
    ('BeitSubnetForImageClassification', 1)
    ```
    """

    static_class_name = "BeitForImageClassification"
    forward = BeitForImageClassification.forward  # the vanilla forward: same head, same loss rules

    def __init__(self, config: ElasticBeitConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.beit = ElasticBeitModel(config, add_pooling_layer=True)
        self.classifier = (
            ElasticLinear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def head_modules(self) -> list[ElasticLinear]:
        return [self.classifier] if isinstance(self.classifier, ElasticLinear) else []
