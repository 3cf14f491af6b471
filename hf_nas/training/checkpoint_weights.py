"""Resuming from Trainer checkpoints of models whose weights transformers saves under other names.

transformers saves some models in a legacy key layout and renames the keys back when `from_pretrained` loads them:
ViT and BEiT (and so their elastic supernets) hold `vit.layers.N.attention.q_proj.weight` but save
`vit.encoder.layer.N.attention.attention.query.weight`. `Trainer` resumes (and loads its best model) by calling
`load_state_dict` on the checkpoint's raw file, so every renamed weight is skipped with a warning and training goes on
from the weights the model had before resuming: the encoder of a resumed ViT run restarts from its initial weights.

[`load_checkpoint_weights`] reads a checkpoint's weights under the model's own names (the renaming `save_pretrained`
applied, undone) and refuses a checkpoint that leaves any weight of the model unloaded. [`CheckpointWeightsMixin`]
makes a Trainer resume and load its best model through it; every hf-nas trainer has it, and [`ResumableTrainer`] is
`transformers.Trainer` with it, for fine-tuning vanilla ViT/BEiT models.
"""

from __future__ import annotations

import json
import logging
import os

import torch
from torch import nn
from transformers import Trainer
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

__all__ = ["CheckpointWeightsMixin", "ResumableTrainer", "load_checkpoint_weights", "saved_key_names"]

logger = logging.getLogger(__name__)


def saved_key_names(model: nn.Module) -> dict[str, str]:
    """The name under which `save_pretrained` writes each entry of `model.state_dict()`: the key itself, or its
    legacy name for models that transformers converts on load (ViT, BEiT).

    Raises `NotImplementedError` for a model whose saving does more than rename (merges or splits tensors).

    Example:

    ```python
    >>> from transformers import ViTConfig, ViTForImageClassification
    >>> from hf_nas.training import saved_key_names
    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
    ...                    image_size=32, patch_size=8)
    >>> saved_key_names(ViTForImageClassification(config))["vit.layers.0.attention.q_proj.weight"]
    'vit.encoder.layer.0.attention.attention.query.weight'
    ```
    """
    keys = list(model.state_dict())
    if not hasattr(model, "config"):
        return {key: key for key in keys}
    from transformers.core_model_loading import revert_weight_conversion

    # One scalar per key, holding the key's index: a pure renaming moves the scalars to their saved names.
    probe = {key: torch.tensor([float(i)], dtype=torch.float64) for i, key in enumerate(keys)}
    try:
        saved = revert_weight_conversion(model, dict(probe))
    except Exception as error:  # a converter that needs real shapes
        raise NotImplementedError(
            f"{type(model).__name__} is saved with a weight conversion that is not a renaming: {error}"
        ) from error
    names: dict[str, str] = {}
    for saved_key, value in saved.items():
        index = float(value.reshape(-1)[0]) if isinstance(value, torch.Tensor) and value.numel() == 1 else -1.0
        if not (index.is_integer() and 0 <= index < len(keys)) or keys[int(index)] in names:
            raise NotImplementedError(
                f"{type(model).__name__} is saved with a weight conversion that is not a renaming ({saved_key!r})."
            )
        names[keys[int(index)]] = saved_key
    if len(names) != len(keys):
        raise NotImplementedError(f"{type(model).__name__} is saved with a weight conversion that drops weights.")
    return names


def _weight_files(folder: str) -> tuple[list[str], bool] | None:
    """The weight files of a checkpoint folder (and whether they are safetensors), or None when it has none."""
    for index_name, safe in ((SAFE_WEIGHTS_INDEX_NAME, True), (WEIGHTS_INDEX_NAME, False)):
        index = os.path.join(folder, index_name)
        if os.path.isfile(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [os.path.join(folder, shard) for shard in shards], safe
    for name, safe in ((SAFE_WEIGHTS_NAME, True), (WEIGHTS_NAME, False)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return [path], safe
    return None


def has_checkpoint_weights(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds model weights that [`load_checkpoint_weights`] reads (safetensors or a torch file,
    single or sharded)."""
    return _weight_files(os.fspath(folder)) is not None


def load_checkpoint_weights(model: nn.Module, folder: str | os.PathLike) -> None:
    """Load the model weights of the checkpoint `folder` (a `Trainer` checkpoint or a `save_pretrained` folder) into
    `model`, under the model's own names: keys that `save_pretrained` renamed (ViT, BEiT) are renamed back, as
    `from_pretrained` does.

    Raises `FileNotFoundError` if `folder` holds no weights, and `ValueError` if the checkpoint leaves a weight of
    `model` unloaded (weights tied to a loaded one excepted) or holds weights `model` does not have: it was saved from
    another model.

    Example:

    ```python
    >>> import tempfile, torch
    >>> from transformers import ViTConfig, ViTForImageClassification
    >>> from hf_nas.training import load_checkpoint_weights
    >>> config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
    ...                    image_size=32, patch_size=8)
    >>> trained, fresh = ViTForImageClassification(config), ViTForImageClassification(config)
    >>> folder = tempfile.mkdtemp()
    >>> trained.save_pretrained(folder)  # the encoder is written under its legacy names
    >>> load_checkpoint_weights(fresh, folder)
    >>> torch.equal(fresh.vit.layers[0].attention.q_proj.weight, trained.vit.layers[0].attention.q_proj.weight)
    True
    ```
    """
    folder = os.fspath(folder)
    found = _weight_files(folder)
    if found is None:
        raise FileNotFoundError(
            f"{folder} holds no model weights: expected {SAFE_WEIGHTS_NAME}, {WEIGHTS_NAME} or a sharded index "
            f"({SAFE_WEIGHTS_INDEX_NAME}, {WEIGHTS_INDEX_NAME})."
        )
    files, safe = found
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if safe:
            from safetensors.torch import load_file

            state.update(load_file(path, device="cpu"))
        else:
            state.update(torch.load(path, map_location="cpu", weights_only=True))
    to_model = {saved: key for key, saved in saved_key_names(model).items()}
    renamed = {to_model.get(key, key): value for key, value in state.items()}
    del state
    result = model.load_state_dict(renamed, strict=False)
    own = model.state_dict()
    loaded = {own[key].data_ptr() for key in renamed if key in own and own[key].numel()}
    missing = [key for key in result.missing_keys if not own[key].numel() or own[key].data_ptr() not in loaded]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:

        def some(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

        problems = ([f"{len(missing)} weights of the model are not in it ({some(missing)})"] if missing else []) + (
            [f"it holds {len(unexpected)} weights the model does not have ({some(unexpected)})"] if unexpected else []
        )
        raise ValueError(
            f"The checkpoint {folder} was not saved from this {type(model).__name__}: {'; '.join(problems)}. Resume "
            "with the model (and the training arguments that shape it) that the checkpoint was saved from."
        )


class CheckpointWeightsMixin:
    """For `transformers.Trainer` subclasses: resuming (`train(resume_from_checkpoint=...)`) and
    `load_best_model_at_end` read the checkpoint's weights with [`load_checkpoint_weights`], so models that
    transformers saves under legacy names (ViT, BEiT) get every weight back, and a checkpoint of another model is a
    clear error instead of a warning. Under FSDP, DeepSpeed, SageMaker model parallelism or PEFT, and for checkpoints
    without a plain weights file, the Trainer's own loading runs."""

    def _plain_checkpoint(self, folder: str | os.PathLike | None, model: nn.Module) -> bool:
        from transformers.utils import is_sagemaker_mp_enabled

        distributed = self.is_fsdp_enabled or self.is_deepspeed_enabled or is_sagemaker_mp_enabled()
        peft = hasattr(model, "peft_config")
        return folder is not None and not distributed and not peft and has_checkpoint_weights(folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        model = self.model if model is None else model
        if not self._plain_checkpoint(resume_from_checkpoint, model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        logger.info("Loading model from %s.", resume_from_checkpoint)
        load_checkpoint_weights(model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        folder = self.state.best_model_checkpoint
        if not self._plain_checkpoint(folder, self.model):
            super()._load_best_model()
            return
        logger.info("Loading best model from %s (score: %s).", folder, self.state.best_metric)
        load_checkpoint_weights(self.model, folder)


class ResumableTrainer(CheckpointWeightsMixin, Trainer):
    """`transformers.Trainer` that resumes every weight of ViT and BEiT models (see [`CheckpointWeightsMixin`]); the
    same arguments, the same behaviour otherwise. hf-nas fine-tunes its teachers and extracted subnets with it."""
