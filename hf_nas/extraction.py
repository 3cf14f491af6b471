"""Extraction: copy a subnet's weights out of a supernet into an ordinary transformers model.

A uniform subnet (same heads and FFN width in every layer, heads x head size == hidden size) becomes the vanilla
class (`BertForSequenceClassification`, ...) and saves as a vanilla checkpoint. Any other subnet becomes the
matching class of the self-contained `modeling_bert_subnet.py`, which `save_pretrained` copies into the folder with
an `auto_map`, so `AutoModel*.from_pretrained(folder, trust_remote_code=True)` loads it without hf-nas.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import PreTrainedModel

from .models.families import get_family
from .modules import ELASTIC_PRIMITIVES
from .search_space import SubnetConfig
from .utils import atomic_directory, output_lock

__all__ = ["extract_subnet", "is_vanilla_subnet", "save_subnet", "subnet_model_config"]


def is_vanilla_subnet(subnet: SubnetConfig, attention_head_size: int) -> bool:
    """Whether `subnet` is expressible as the vanilla model type (and so needs no remote code)."""
    return subnet.is_uniform and subnet.num_attention_heads[0] * attention_head_size == subnet.hidden_size


def subnet_model_config(supernet: PreTrainedModel, subnet: SubnetConfig):
    """The config of the standalone model for `subnet`: vanilla when possible, per-layer otherwise."""
    config = supernet.config
    head_size = config.attention_head_size
    data: dict[str, Any] = config.to_dict()
    for key in (
        "search_space",
        "mixture_of_supernets",
        "switchable_layer_norms",
        "switchable_heads",
        "switchable_biases",
        "switchable_delta_rank",
        "model_type",
        "transformers_version",
        "auto_map",
        "architectures",
    ):
        data.pop(key, None)
    data.update(
        hidden_size=subnet.hidden_size,
        num_hidden_layers=subnet.num_hidden_layers,
        num_attention_heads=subnet.hidden_size // head_size,
        intermediate_size=max(subnet.intermediate_size),
    )
    data.update(supernet.static_config_overrides(subnet))
    family = get_family(config)
    if is_vanilla_subnet(subnet, head_size):
        config_class = family.vanilla_config_class()
        data["intermediate_size"] = subnet.intermediate_size[0]
    else:
        config_class = family.subnet_config_class()
        data.update(
            layer_num_attention_heads=list(subnet.num_attention_heads),
            layer_intermediate_sizes=list(subnet.intermediate_size),
        )
    static_config = config_class(**data)
    static_config._attn_implementation = config._attn_implementation
    return static_config


@torch.no_grad()
def extract_subnet(supernet: PreTrainedModel, subnet: SubnetConfig | None = None) -> PreTrainedModel:
    """A standalone `PreTrainedModel` holding a copy (never a view) of `subnet`'s weights.

    Args:
        supernet: an elastic model (`ElasticBert*`).
        subnet: the architecture to extract; defaults to the active subnet. It must lie in `supernet.search_space`.

    Returns:
        A vanilla transformers model for uniform subnets whose heads fill the hidden size, otherwise the per-layer
        model of `modeling_bert_subnet.py`. In eval mode, its outputs equal the supernet's with `subnet` active.

    Example:

    ```python
    >>> import tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, extract_subnet
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64, num_labels=2)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> small = extract_subnet(model, model.search_space.smallest())
    >>> type(small).__name__, small.config.num_hidden_layers, small.config.hidden_size
    ('BertSubnetForSequenceClassification', 1, 16)
    >>> small.save_pretrained(tempfile.mkdtemp())
    ```
    """
    subnet = supernet.active_subnet if subnet is None else subnet
    if subnet != supernet.max_subnet():
        supernet.search_space.validate(subnet)
    static_config = subnet_model_config(supernet, subnet)
    family = get_family(supernet.config)
    task = family.task_of(supernet.static_class_name).name
    if isinstance(static_config, family.subnet_config_class()):
        model_class = family.subnet_class(task)
    else:
        model_class = family.vanilla_class(task)
    reference = next(supernet.parameters())
    static = model_class(static_config, **supernet.static_init_kwargs()).to(
        device=reference.device, dtype=reference.dtype
    )

    previous = supernet.active_subnet
    supernet.activate_subnet(subnet)
    try:
        state = _active_state_dict(supernet, static, subnet)
    finally:
        supernet.activate_subnet(previous)
    static.load_state_dict(state, strict=True)
    static.train(supernet.training)
    return static


def _layer_renaming(supernet: PreTrainedModel, subnet: SubnetConfig) -> dict[str, str]:
    """Name prefixes of the kept supernet layers -> their prefixes in the extracted model, which numbers the kept
    layers 0..k-1 (e.g. `bert.encoder.layer.5.` -> `bert.encoder.layer.2.`). Dropped layers map to nothing."""
    names = {id(module): name for name, module in supernet.named_modules()}
    layers = supernet.elastic_layers()
    return {f"{names[id(layers[j])]}.": f"{names[id(layers[i])]}." for i, j in enumerate(subnet.layers)}


def _rename(key: str, renaming: dict[str, str], layer_prefixes: tuple[str, ...]) -> str | None:
    """`key` of the supernet under its extracted name; None for a tensor of a dropped layer."""
    for old, new in renaming.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None if key.startswith(layer_prefixes) else key


def _active_state_dict(
    supernet: PreTrainedModel, static: PreTrainedModel, subnet: SubnetConfig
) -> dict[str, torch.Tensor]:
    """The supernet's active slices under the names of `static`'s state dict. The kept layers are renumbered
    0..k-1; modules missing from `static` are skipped."""
    target = static.state_dict()
    renaming = _layer_renaming(supernet, subnet)
    names = {id(module): name for name, module in supernet.named_modules()}
    layer_prefixes = tuple(f"{names[id(layer)]}." for layer in supernet.elastic_layers())
    state: dict[str, torch.Tensor] = {}
    for name, module in supernet.named_modules():
        if not isinstance(module, ELASTIC_PRIMITIVES):
            continue
        prefix = _rename(f"{name}." if name else "", renaming, layer_prefixes)
        if prefix is None or not any(key.startswith(prefix) for key in target):
            continue
        for key, value in module.to_static().state_dict().items():
            state[prefix + key] = value
    full = {}
    for key, value in supernet.state_dict().items():
        new_key = _rename(key, renaming, layer_prefixes)
        if new_key is not None:
            full[new_key] = value
    for key in target:
        if key in state:
            continue
        if key not in full:
            raise RuntimeError(f"Cannot extract `{key}`: the supernet has no such tensor.")
        value = full[key]
        if value.shape != target[key].shape and value.dim() == target[key].dim():
            # Tensors outside the elastic primitives (CLS token, position embeddings, layer scale, relative position
            # bias tables, ...) are sliced like everything else: the active channels and heads are a prefix.
            if all(t <= f for t, f in zip(target[key].shape, value.shape, strict=True)):
                value = value[tuple(slice(0, n) for n in target[key].shape)]
        state[key] = value.clone()
    for key, value in target.items():
        if state[key].shape != value.shape:
            raise RuntimeError(
                f"Extracted `{key}` has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}."
            )
    return {k: state[k] for k in target}


def save_subnet(
    supernet: PreTrainedModel,
    save_directory: str | os.PathLike,
    subnet: SubnetConfig | None = None,
    processor: Any | None = None,
    *,
    wait_for_lock: float = 0.0,
    **save_kwargs: Any,
) -> PreTrainedModel:
    """Extract `subnet` and save it (with `processor`, a tokenizer or image processor, if given) atomically.

    The folder is written under a hidden temporary name beside `save_directory` and swapped into place only when
    complete (see [`hf_nas.utils.atomic_directory`]), so a crash, even a killed process, never leaves half a checkpoint
    and an existing folder is replaced only by a complete one. The writing holds [`hf_nas.utils.output_lock`] on
    `save_directory`: while another process writes it, this one waits up to `wait_for_lock` seconds (0: not at all),
    then raises [`hf_nas.utils.OutputLockedError`] having written nothing.
    """
    model = extract_subnet(supernet, subnet)
    with output_lock(save_directory, wait_for_lock, reentrant=True), atomic_directory(save_directory) as tmp:
        model.save_pretrained(tmp, **save_kwargs)
        if processor is not None:
            processor.save_pretrained(tmp)
    return model
