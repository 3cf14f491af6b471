"""What every elastic model shares: setting, scoping and extracting subnets."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from transformers import PretrainedConfig

from ..mixture import (
    MIXTURE_PARAMETER_PATTERN,
    attach_mixture,
    init_mixture_weights,
    mixture_config_of,
    route_subnet,
)
from ..search_space import SearchSpace, SubnetConfig
from ..switchable_norms import (
    SWITCHABLE_BIAS_PARAMETER_PATTERN,
    SWITCHABLE_DELTA_PARAMETER_PATTERN,
    SWITCHABLE_HEAD_PARAMETER_PATTERN,
    SWITCHABLE_NORM_PARAMETER_PATTERN,
    attach_budget_linears,
    attach_switchable_heads,
    attach_switchable_norms,
    check_norm_boundaries,
    init_switchable_weights,
    set_norm_budget,
)
from ..utils import check_weight_files

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["SupernetMixin", "set_active_layers"]

# A tensor of encoder layer i, under the checkpoint's names (`bert.encoder.layer.3.`) or the model's (`vit.layers.3.`).
_LAYER_KEY = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
# Config fields a weight's shape follows, in the order a mismatch is explained by.
_SHAPE_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "num_labels",
    "num_channels",
    "patch_size",
)


def set_active_layers(layers, subnet: SubnetConfig) -> tuple[int, ...]:
    """Set the sizes of the layers `subnet` keeps and return their indices (the dropped ones keep whatever sizes
    they had; they do not run). `layers` is the supernet's `nn.ModuleList` of elastic layers. Indices, not modules,
    are kept by the caller, so wrappers that replace submodules (FSDP) still see the live layers."""
    for i, heads, ffn in zip(subnet.layers, subnet.num_attention_heads, subnet.intermediate_size, strict=True):
        layers[i].set_active(subnet.hidden_size, heads, ffn)
    return subnet.layers


class SupernetMixin:
    """Mixed into an elastic `PreTrainedModel`. A base model implements `_apply_subnet(subnet)`, which sets the
    active sizes of its elastic modules without validation; a model with a head lists the head's elastic layers in
    `head_modules()`. Each names its vanilla twin in `static_class_name`."""

    static_class_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every constructor first turns a vanilla config of the family (`BertConfig` for `ElasticBert*`) into the
        # elastic config, with the search space derived as `from_pretrained` derives it, and refuses any other.
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def __init__(self: Any, config: Any, *args: Any, **init_kwargs: Any) -> None:
            init(self, type(self).as_elastic_config(config), *args, **init_kwargs)

        cls.__init__ = __init__

    @classmethod
    def as_elastic_config(cls, config: Any) -> Any:
        """`config` as this class's elastic config: an elastic config is kept, a vanilla config of the same family
        (e.g. a `BertConfig` for `ElasticBert*`) is converted with its search space derived from it; anything else
        raises a `TypeError` naming the config class to use."""
        config_class = cls.config_class
        if isinstance(config, config_class):
            return config
        vanilla_type = config_class.model_type.removeprefix("elastic_")
        if isinstance(config, PretrainedConfig) and getattr(config, "model_type", None) == vanilla_type:
            return config_class.from_dict(config.to_dict())
        raise TypeError(
            f"{cls.__name__} takes an {config_class.__name__} (or a vanilla `{vanilla_type}` config, converted), got "
            f"{type(config).__name__}. To load a checkpoint use {cls.__name__}.from_pretrained(path)."
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained` that refuses, with a `ValueError` naming the file or the config field, the
        value and what is allowed, what would otherwise fail deep inside the loader or load silently wrong: a damaged
        (truncated) weight file of a local folder, a config whose search space does not fit it, weights whose shapes
        differ from what the config describes (unless `ignore_mismatched_sizes=True`), and a saved supernet whose
        config has more or fewer layers than its weights (the extra layers would be left randomly initialized)."""
        name = os.fspath(pretrained_model_name_or_path)
        folder = os.path.join(name, kwargs["subfolder"]) if kwargs.get("subfolder") else name
        local = os.path.isdir(folder)
        files = check_weight_files(folder, kwargs.get("variant")) if local else []
        if local and kwargs.get("config") is None:
            _check_config_file(cls, folder)
        ignore_mismatched_sizes = kwargs.pop("ignore_mismatched_sizes", False)
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path,
            *model_args,
            ignore_mismatched_sizes=True,  # mismatches are reported below, naming the config field
            output_loading_info=True,
            **kwargs,
        )
        where = f"{folder} ({', '.join(files)})" if files else name
        if info["mismatched_keys"] and not ignore_mismatched_sizes:
            raise ValueError(_mismatch_message(model.config, where, sorted(info["mismatched_keys"])[0]))
        saved = _saved_config(folder) if local else None
        info = _check_added_tensors(model, where, saved, info)
        if local and _model_type(folder) == cls.config_class.model_type:
            _check_layers(model.config, where, info["missing_keys"], info["unexpected_keys"])
        if mixture_config_of(model.config) is not None:
            route_subnet(model, model.active_subnet, force=True)  # the encoding buffers are not saved
        return (model, info) if output_loading_info else model

    def post_init(self) -> None:
        # A config asking for Mixture-of-Supernets gets its mixture layers before the weights are initialized.
        self.config._init_mixture()  # also when set after the config was built (a `from_pretrained` keyword)
        mixture = mixture_config_of(self.config)
        if mixture is not None:
            attach_mixture(self, mixture)
        # A config asking for switchable layer norms gets them the same way (each budget a copy of its norm).
        self.config._init_switchable_norms()
        boundaries = check_norm_boundaries(self.config.switchable_layer_norms)
        if boundaries is not None:
            attach_switchable_norms(self, boundaries)
            if self.config.switchable_heads:
                attach_switchable_heads(self, len(boundaries) + 1)
            if self.config.switchable_biases or self.config.switchable_delta_rank:
                biases, rank = self.config.switchable_biases, self.config.switchable_delta_rank
                attach_budget_linears(self, len(boundaries) + 1, biases, rank)
        super().post_init()

    def _init_weights(self, module: Any) -> None:
        super()._init_weights(module)
        init_mixture_weights(module)  # experts copy the (loaded or initialized) weight; routers start near uniform
        init_switchable_weights(module)  # every norm budget a copy of the (loaded or initialized) norm

    # ------------------------------------------------------------------------------------------------------------
    # the space
    @property
    def search_space(self) -> SearchSpace:
        """The choices of each dimension, stored in `config.search_space` (and so saved with the supernet)."""
        return SearchSpace.from_dict(self.config.search_space)

    @search_space.setter
    def search_space(self, space: SearchSpace) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"search_space must be a SearchSpace, got {type(space).__name__}.")
        previous = self.config.search_space
        self.config.search_space = space.to_dict()
        try:
            self.config.check_search_space()
        except ValueError:
            self.config.search_space = previous
            raise

    def max_subnet(self) -> SubnetConfig:
        """The whole supernet as a subnet config (all layers, heads, neurons and channels)."""
        c = self.config
        return SubnetConfig.uniform(c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.hidden_size)

    # ------------------------------------------------------------------------------------------------------------
    # the active subnet
    @property
    def active_subnet(self) -> SubnetConfig:
        subnet = self.__dict__.get("_active_subnet")
        return self.max_subnet() if subnet is None else subnet

    def set_subnet(self, subnet: SubnetConfig) -> None:
        """Make `subnet` active: the forward now computes with its weights only.

        Raises `ValueError` naming the field, the value and the allowed choices if `subnet` is outside
        `self.search_space`.
        """
        self.search_space.validate(subnet)
        self.activate_subnet(subnet)

    @contextmanager
    def subnet(self, subnet: SubnetConfig) -> Iterator[PreTrainedModel]:
        """Context manager form of [`set_subnet`]; restores the previously active subnet on exit."""
        previous = self.active_subnet
        self.set_subnet(subnet)
        try:
            yield self
        finally:
            self.activate_subnet(previous)

    def reset_supernet(self) -> None:
        """Make the whole supernet active again."""
        self.activate_subnet(self.max_subnet())

    def activate_subnet(self, subnet: SubnetConfig) -> None:
        """Make `subnet` active *without* validating it against the search space: the fast path for loops that only
        pass subnets drawn from the space (training, search, extraction). Use [`set_subnet`] for user input."""
        self._apply_subnet(subnet)
        self.__dict__["_active_subnet"] = subnet
        if self.base_model is self and getattr(self.config, "mixture_of_supernets", None):
            route_subnet(self, subnet)  # Mixture-of-Supernets: the weights follow the subnet
        if getattr(self.config, "switchable_layer_norms", None):
            # switchable layer norms (and heads): the subnet's budget; a model with a head sets those of its head,
            # its base model (activated above) its own
            set_norm_budget(self, subnet, skip=None if self.base_model is self else self.base_model)

    def _apply_subnet(self, subnet: SubnetConfig) -> None:
        """Set the active sizes without validation. A model with a head activates its base model, then the head's
        own modules, which read `hidden_size` channels; a base model overrides this."""
        self.base_model.activate_subnet(subnet)
        for module in self.head_modules():
            module.set_active(in_features=subnet.hidden_size)

    def head_modules(self) -> list:
        """The head's elastic linear layers that read the last hidden state (e.g. the classifier)."""
        return []

    def static_init_kwargs(self) -> dict:
        """Extra constructor arguments of the vanilla twin (e.g. `add_pooling_layer`)."""
        return {}

    def static_config_overrides(self, subnet: SubnetConfig) -> dict:
        """Config fields of the extracted model that follow the subnet beyond the search-space dimensions."""
        return {}

    def shares_head_order(self) -> bool:
        """Whether all layers must keep one head order (e.g. a relative position bias shared by all layers)."""
        return False

    def permute_shared_heads(self, order: Any) -> None:
        """Permute what all layers share per head (called with the common order when `shares_head_order()`)."""

    # ------------------------------------------------------------------------------------------------------------
    # leaving the supernet
    def extract_subnet(self, subnet: SubnetConfig | None = None) -> PreTrainedModel:
        """A standalone model with copied weights of `subnet` (default: the active one). See
        [`hf_nas.extraction.extract_subnet`]."""
        from ..extraction import extract_subnet

        return extract_subnet(self, subnet)


# --------------------------------------------------------------------------------------------------------------------
# checks of a checkpoint against its config
def _saved_config(folder: str) -> dict | None:
    """`folder`'s config.json as a dict (`None` if it cannot be read)."""
    try:
        with open(os.path.join(folder, "config.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _model_type(folder: str) -> str | None:
    """The `model_type` of `folder`'s config.json (`None` if it has none or cannot be read)."""
    data = _saved_config(folder)
    return data.get("model_type") if data is not None else None


# The tensors a config field adds to a supernet: (name pattern, config field, words for the errors: the tensors, one
# tensor, and what a config without them asks for). A field is on when the config's value is truthy (the mixture: not
# "off").
_ADDED_TENSORS = (
    (MIXTURE_PARAMETER_PATTERN, "mixture_of_supernets", "Mixture-of-Supernets tensor", "no mixture (mixture_of_supernets is off)"),
    (SWITCHABLE_NORM_PARAMETER_PATTERN, "switchable_layer_norms", "switchable layer norm budget", "none (switchable_layer_norms is unset)"),
    (SWITCHABLE_HEAD_PARAMETER_PATTERN, "switchable_heads", "switchable head budget", "none (switchable_heads is False)"),
    (SWITCHABLE_BIAS_PARAMETER_PATTERN, "switchable_biases", "switchable bias budget", "none (switchable_biases is False)"),
    (SWITCHABLE_DELTA_PARAMETER_PATTERN, "switchable_delta_rank", "switchable low-rank delta", "none (switchable_delta_rank is 0)"),
)  # fmt: skip


def _check_added_tensors(model: Any, where: str, saved: dict | None, info: dict) -> dict:
    """The loading info without the tensors of Mixture-of-Supernets and the switchable norms, heads, biases and deltas
    that a checkpoint saved without them lacks (they were initialized from its weights: copies, or zero deltas).
    Refuses, naming the tensor, a checkpoint saved with them that lacks them (damaged), and one holding them loaded
    into a model whose config does not ask for them."""
    for pattern, field, tensor, none in _ADDED_TENSORS:
        value = getattr(model.config, field, None)
        enabled = mixture_config_of(model.config) is not None if field == "mixture_of_supernets" else bool(value)
        info = _check_added_keys(
            info, where, saved, pattern, field, enabled=enabled, tensors=f"{tensor}s", tensor=tensor, none=none
        )
    return info


def _check_added_keys(
    info: dict,
    where: str,
    saved: dict | None,
    pattern: re.Pattern,
    field: str,
    *,
    enabled: bool,
    tensors: str,
    tensor: str,
    none: str,
) -> dict:
    """The loading rule of tensors a config `field` adds to a supernet (`pattern` matches their names): missing ones
    were initialized from the checkpoint's weights and are dropped from `missing_keys`, unless the checkpoint's own
    config.json (`saved`) says it holds them (damaged: refused); unexpected ones in a model whose config does not ask
    for them (`enabled` false) are refused. Each refusal names the first such tensor."""
    missing = [key for key in info["missing_keys"] if pattern.search(key)]
    unexpected = [key for key in info["unexpected_keys"] if pattern.search(key)]
    if unexpected and not enabled:
        raise ValueError(
            f"The weights in {where} hold {tensors} (`{sorted(unexpected)[0]}`), but the config asks for {none}; "
            f"allowed: load the checkpoint with its own config (do not override {field})."
        )
    if not missing:
        return info
    if saved is not None and saved.get(field):
        raise ValueError(
            f"The weights in {where} lack the {tensor} `{sorted(missing)[0]}` that its config.json ({field}="
            f"{saved[field]}) says it holds: the checkpoint is incomplete."
        )
    keep = set(missing)
    return {**info, "missing_keys": type(info["missing_keys"])(k for k in info["missing_keys"] if k not in keep)}


def _check_config_file(model_class: Any, folder: str) -> None:
    """Load `folder`'s config as `model_class` does, re-raising a refusal (a search space edited wrongly, ...) with
    the file named."""
    config_file = os.path.join(folder, "config.json")
    try:
        model_class.config_class.from_pretrained(folder)
    except (TypeError, ValueError) as e:
        if folder in str(e):
            raise
        raise type(e)(f"{config_file}: {e}") from None


def _mismatch_message(config: Any, where: str, mismatch: tuple[str, Iterable[int], Iterable[int]]) -> str:
    """Why the weight `key` of shape `saved` does not fit `config`, which needs shape `needed`: the config field that
    sets the differing size, its value and the value the weights allow, when one does."""
    key, saved, needed = mismatch[0], tuple(mismatch[1]), tuple(mismatch[2])
    shapes = f"`{key}` has shape {saved} there, the config needs {needed}"
    if len(saved) == len(needed):
        for have, want in zip(saved, needed, strict=True):
            field = next((f for f in _SHAPE_FIELDS if have != want and getattr(config, f, None) == want), None)
            if field is not None:
                space = getattr(config, "search_space", None) or {}
                choices = f" and search_space.{field} choices up to {have}" if field in space else ""
                new_head = "; or pass ignore_mismatched_sizes=True for a new head" if field == "num_labels" else ""
                return (
                    f"The config sets {field}={want}, but the weights in {where} were saved with {field}={have} "
                    f"({shapes}); allowed: {field}={have}{choices}{new_head}."
                )
    return f"The config does not fit the weights in {where}: {shapes}."


def _layer_indices(keys: Iterable[str]) -> set[int]:
    return {int(match[1]) for key in keys if (match := _LAYER_KEY.search(key))}


def _check_layers(config: Any, where: str, missing: Iterable[str], unexpected: Iterable[str]) -> None:
    """Refuse a saved supernet whose config has more layers than its weights (`missing` layer tensors, which would
    stay randomly initialized) or fewer (`unexpected` ones, which would be dropped)."""
    lacking, extra = _layer_indices(missing), _layer_indices(unexpected)
    if not lacking and not extra:
        return
    total = config.num_hidden_layers
    held = None
    if extra and not lacking and extra == set(range(total, max(extra) + 1)):
        held = max(extra) + 1
    elif lacking and not extra and lacking == set(range(min(lacking), total)):
        held = min(lacking)
    if held is None:
        raise ValueError(
            f"The weights in {where} do not fit the config (num_hidden_layers={total}): tensors of layers "
            f"{sorted(lacking)} are missing and of layers {sorted(extra)} unexpected; the checkpoint is incomplete or "
            "its config.json was edited."
        )
    space = (config.search_space or {}).get("num_supernet_layers")
    also = f" (search_space.num_supernet_layers={space})" if space is not None and space != held else ""
    raise ValueError(
        f"config.json sets num_hidden_layers={total}{also}, but the weights in {where} hold {held} layers; "
        f"allowed: num_hidden_layers={held}, search_space.num_supernet_layers at most {held}."
    )
