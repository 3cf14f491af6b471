"""Atomic export of an extracted subnet as a complete, loadable checkpoint folder with its model card.

[`export_subnet`] writes the config, the weights, the tokenizer or image processor, `README.md` (the card of
[`build_model_card`]) and, for a per-layer subnet, the modeling file, under a temporary name, and renames the folder
into place only once it is complete, under the lock of [`hf_nas.utils.output_lock`], so two processes exporting to
the same folder never interleave.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import transformers
from transformers import PreTrainedModel

from ..extraction import extract_subnet
from ..search_space import SubnetConfig
from ..utils import atomic_directory, output_lock
from .card import build_model_card

__all__ = ["export_subnet"]

logger = logging.getLogger(__name__)

_WEIGHT_FILES = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"}
_PROCESSOR_FILES = {"tokenizer_config.json", "preprocessor_config.json", "processor_config.json"}


def _processor_class(processor: Any) -> str | None:
    """The Auto class that reloads `processor` (shown in the card's loading snippet), or `None` without one."""
    if processor is None:
        return None
    if isinstance(processor, transformers.PreTrainedTokenizerBase):
        return "AutoTokenizer"
    if isinstance(processor, transformers.ImageProcessingMixin):
        return "AutoImageProcessor"
    return "AutoProcessor"


def _check_complete(folder: str, has_processor: bool) -> None:
    """Raise if `folder` lacks a file a loadable subnet checkpoint needs."""
    names = set(os.listdir(folder))
    missing = [name for name in ("config.json", "README.md") if name not in names]
    if not names & _WEIGHT_FILES:
        missing.append("model.safetensors")
    if "config.json" in names:
        with open(os.path.join(folder, "config.json")) as f:
            auto_map = json.load(f).get("auto_map", {})
        for reference in auto_map.values():
            module = f"{reference.split('.')[0]}.py"
            if module not in names and module not in missing:
                missing.append(module)
    if has_processor and not names & _PROCESSOR_FILES:
        missing.append("tokenizer_config.json or preprocessor_config.json")
    if missing:
        raise RuntimeError(f"The exported subnet folder is incomplete, missing {missing}; nothing was written.")


def export_subnet(
    supernet: PreTrainedModel,
    subnet: SubnetConfig,
    save_directory: str | os.PathLike,
    *,
    processor: Any | None = None,
    safe_serialization: bool = True,
    wait_for_lock: float = 0.0,
    verify: Callable[[str], Any] | None = None,
    **card_kwargs: Any,
) -> str:
    """Extract `subnet` and write a complete checkpoint folder with its model card, atomically.

    The folder holds `config.json`, the weights, `processor` (tokenizer or image processor, if given), `README.md`
    (the card of [`build_model_card`]) and, for a per-layer subnet, the modeling file its `auto_map` names. Everything
    is written under a hidden temporary name beside `save_directory` and swapped into place only when complete (see
    [`hf_nas.utils.atomic_directory`]), so a failure, or the process being killed, leaves no half folder and an
    existing `save_directory` untouched; hidden folders a killed export left are removed by the next one. The writing
    holds [`hf_nas.utils.output_lock`] on `save_directory`: while another process writes it, this one waits up to
    `wait_for_lock` seconds, then raises [`hf_nas.utils.OutputLockedError`] having written nothing (a caller holding
    the lock already, as `hf-nas extract` does, keeps it).

    Args:
        supernet (`PreTrainedModel`): the elastic supernet.
        subnet (`SubnetConfig`): the architecture to extract; must lie in `supernet.search_space`.
        save_directory (`str` or `os.PathLike`): the folder to write (replaced if it exists).
        processor (*optional*): a tokenizer or image processor saved beside the weights.
        safe_serialization (`bool`, *optional*, defaults to `True`): passed to `save_pretrained`.
        wait_for_lock (`float`, *optional*, defaults to 0): seconds to wait while another process writes
            `save_directory` (0: refuse at once; `math.inf`: no limit).
        verify (`Callable[[str], Any]`, *optional*): called with the complete temporary folder before it takes the
            place of `save_directory`, e.g. to reload the checkpoint and check it; an exception it raises stops the
            export, and `save_directory` stays as it was.
        card_kwargs: keyword arguments of [`build_model_card`] (`base_model` is required there, and defaults to
            `None` here).

    Returns:
        `str`: the absolute path of the folder.

    Example:

    ```python
    >>> import os, tempfile
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification, export_subnet
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)  # in practice: a trained supernet
    >>> out = os.path.join(tempfile.mkdtemp(), "subnet")
    >>> folder = export_subnet(model, model.search_space.smallest(), out, metrics={"accuracy": 0.91})
    >>> sorted(os.listdir(folder))  # + the tokenizer or image processor when `processor` is given
    ['README.md', 'config.json', 'model.safetensors', 'modeling_bert_subnet.py']
    ```
    """
    card_kwargs.setdefault("base_model", None)
    card_kwargs.setdefault("processor_class", _processor_class(processor))
    path = os.path.abspath(os.fspath(save_directory))
    if card_kwargs.get("model_name") is None and card_kwargs.get("repo_id") is None:
        card_kwargs["model_name"] = os.path.basename(path)
    # The card checks every argument (`supernet` and `subnet` first), so bad input fails before the (slower)
    # extraction and before any write.
    card = build_model_card(supernet, subnet, **card_kwargs)
    model = extract_subnet(supernet, subnet)
    with output_lock(path, wait_for_lock, reentrant=True), atomic_directory(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=safe_serialization)
        if processor is not None:
            processor.save_pretrained(tmp)
        card.save(os.path.join(tmp, "README.md"))
        _check_complete(tmp, has_processor=processor is not None)
        if verify is not None:
            verify(tmp)
    logger.info("exported subnet %s to %s", json.dumps(subnet.to_dict()), path)
    return path
