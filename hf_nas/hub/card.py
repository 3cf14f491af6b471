"""The model card (README.md) of an extracted subnet.

[`build_model_card`] renders `model_cards/subnet_card.md` with `huggingface_hub.ModelCard.from_template`: the base
model, the search space, the chosen subnet, its parameters, MACs and measured latency, its metrics (with the dataset,
configuration and split they were measured on) and its place on the Pareto front, how to load it and how it was
trained (from the supernet's [`~hf_nas.training.recipes.TrainingRecord`] when there is one). [`check_pareto`] checks
the Pareto position the card takes (as `SearchResults.pareto_position` writes it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
import transformers
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import PreTrainedModel

from ..costs import LatencyResult, count_macs, count_parameters
from ..extraction import is_vanilla_subnet
from ..models.families import get_family
from ..models.supernet import SupernetMixin
from ..search_space import SubnetConfig
from ..training.recipes import TrainingRecord
from ..utils import checkpoint_name
from ..validation import pair
from .push import check_repo_id

__all__ = [
    "MODEL_CARD_TAGS",
    "PACKAGED_TEMPLATE",
    "SELECTION_CAVEAT",
    "SOURCE_TEMPLATE",
    "TEMPLATE_NAME",
    "build_model_card",
    "check_pareto",
    "subnet_card_template_path",
]

logger = logging.getLogger(__name__)

MODEL_CARD_TAGS = ["hf-nas", "neural-architecture-search", "subnet"]
TEMPLATE_NAME = "subnet_card.md"
# The template's source is the top-level `model_cards/` folder of a source checkout (an editable install finds it
# there); a wheel ships the identical copy `hf_nas/_templates/subnet_card.md` (tests keep the two equal). This file is
# `hf_nas/hub/card.py`: the package folder `hf_nas/` is two levels up, the checkout's root three.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
SOURCE_TEMPLATE = _PACKAGE_DIR.parent / "model_cards" / TEMPLATE_NAME
PACKAGED_TEMPLATE = _PACKAGE_DIR / "_templates" / TEMPLATE_NAME

# Every key `LatencyResult.to_dict()` writes: its fields and the unit.
_LATENCY_FIELDS = (*(f.name for f in dataclasses.fields(LatencyResult)), "unit")
_LATENCY_REQUIRED = ("median_ms", "device", "batch_size", "sequence_length")
_PARETO_FIELDS = ("pareto_index", "record", "size", "objectives", "sorted_by", "values")
_PARETO_REQUIRED = ("pareto_index", "size", "objectives")
_PRETTY_NAMES = {"macs": "MACs", "params": "parameters", "num_parameters": "parameters", "latency_ms": "latency (ms)"}
_PLACEHOLDER_REPO = "path/to/this/folder"
_NO_RECIPE = (
    "The weights are copied unchanged from the supernet; nothing was trained after extraction. The supernet's "
    "training recipe was not recorded."
)
SELECTION_CAVEAT = (
    "measured on the split used to select this subnet; expect a lower score on unseen data (the search kept the "
    "subnets that scored best on these very examples)"
)
_RECIPE_NAMES = {
    "one_pass": "**one-pass** recipe (the supernet was built during a single fine-tuning from the pretrained weights, "
    "its largest subnet teaching the others in place)",
    "teacher_first": "**teacher-first** recipe (the full model was fine-tuned first; the supernet started from it and "
    "was distilled from that fixed teacher)",
    "task_agnostic": "**task-agnostic** recipe (the supernet was distilled from the teacher without task labels)",
}
_TRAINING_DATA_KEYS = ("name", "config", "train_split", "validation_split", "train_file", "validation_file")
_LOCAL_DATA_KEYS = ("train_file", "validation_file", "data_dir", "train_dir", "validation_dir")


# ----------------------------------------------------------------------------------------------------------------
# template
def subnet_card_template_path() -> str:
    """Path of the subnet card template: `model_cards/subnet_card.md` in a source checkout, else the copy shipped in
    the package (`hf_nas/_templates/subnet_card.md`)."""
    for path in (SOURCE_TEMPLATE, PACKAGED_TEMPLATE):
        if path.is_file():
            return str(path)
    raise FileNotFoundError(
        f"The model card template {TEMPLATE_NAME!r} is missing: looked for {SOURCE_TEMPLATE} and "
        f"{PACKAGED_TEMPLATE}. Reinstall hf-nas."
    )


# ----------------------------------------------------------------------------------------------------------------
# argument checks
def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_metrics(metrics: dict[str, float] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise TypeError(f"`metrics` must be a dict of metric name -> number, got {type(metrics).__name__}.")
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"`metrics` keys must be non-empty strings, got {name!r}.")
        if not _is_number(value):
            raise ValueError(f"`metrics[{name!r}]` must be a finite number, got {value!r}.")
    return {name: float(value) for name, value in metrics.items()}


def _check_latency(latency: LatencyResult | dict[str, Any] | None) -> dict[str, Any] | None:
    if latency is None:
        return None
    if isinstance(latency, LatencyResult):
        return latency.to_dict()
    if not isinstance(latency, dict):
        raise TypeError(f"`latency` must be a LatencyResult, a dict or None, got {type(latency).__name__}.")
    unknown = sorted(set(latency) - set(_LATENCY_FIELDS))
    if unknown:
        raise ValueError(f"Unknown keys in `latency`: {unknown}. Allowed keys: {list(_LATENCY_FIELDS)}.")
    missing = [k for k in _LATENCY_REQUIRED if k not in latency]
    if missing:
        raise ValueError(f"Missing keys in `latency`: {missing}. Required keys: {list(_LATENCY_REQUIRED)}.")
    if not _is_number(latency["median_ms"]) or latency["median_ms"] <= 0:
        raise ValueError(f"`latency['median_ms']` must be a positive number, got {latency['median_ms']!r}.")
    return dict(latency)


def check_pareto(pareto: dict[str, Any] | None) -> dict[str, Any] | None:
    """Check the `pareto` argument of [`build_model_card`]: a subnet's place on the Pareto front of a search.

    Args:
        pareto (`dict` or `None`):
            `pareto_index` (0-based, the number `hf-nas extract --pareto_index` takes and `pareto.csv` shows) and
            `size` of the front (`0 <= pareto_index < size`), `objectives` (a non-empty list of names), and optionally
            `record` (the subnet's record number in the search results), `sorted_by` (one of the objectives) and
            `values` (objective name -> finite number); `SearchResults.pareto_position` writes such a dict.

    Returns:
        `dict` or `None`: the checked copy (the optional keys only when set, `values` as floats), or `None`.

    Raises:
        `TypeError`: `pareto` is not a dict or None. `ValueError`: a key is unknown or missing, or a value is not
        allowed (the message names it and what is allowed).

    Example:

    ```python
    >>> from hf_nas.hub import check_pareto
    >>> check_pareto({"pareto_index": 2, "size": 5, "objectives": ["accuracy", "macs"], "sorted_by": "macs"})
    {'pareto_index': 2, 'size': 5, 'objectives': ['accuracy', 'macs'], 'sorted_by': 'macs'}
    ```
    """
    if pareto is None:
        return None
    if not isinstance(pareto, dict):
        raise TypeError(f"`pareto` must be a dict or None, got {type(pareto).__name__}.")
    unknown = sorted(set(pareto) - set(_PARETO_FIELDS))
    if unknown:
        raise ValueError(f"Unknown keys in `pareto`: {unknown}. Allowed keys: {list(_PARETO_FIELDS)}.")
    missing = [k for k in _PARETO_REQUIRED if k not in pareto]
    if missing:
        raise ValueError(f"Missing keys in `pareto`: {missing}. Required keys: {list(_PARETO_REQUIRED)}.")
    index, size = pareto["pareto_index"], pareto["size"]
    for key, value, minimum in (("pareto_index", index, 0), ("size", size, 1), ("record", pareto.get("record", 0), 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"`pareto[{key!r}]` must be an int >= {minimum}, got {value!r}.")
    if index >= size:
        raise ValueError(
            f"`pareto['pareto_index']`={index} is outside the front: allowed 0 to {size - 1} (size={size})."
        )
    objectives = pareto["objectives"]
    if isinstance(objectives, str) or not isinstance(objectives, (list, tuple)) or not objectives:
        raise ValueError(f"`pareto['objectives']` must be a non-empty list of objective names, got {objectives!r}.")
    if not all(isinstance(o, str) and o for o in objectives):
        raise ValueError(f"`pareto['objectives']` must hold non-empty strings, got {objectives!r}.")
    checked = {"pareto_index": index, "size": size, "objectives": list(objectives)}
    if pareto.get("record") is not None:
        checked["record"] = pareto["record"]
    if pareto.get("sorted_by") is not None:
        if pareto["sorted_by"] not in objectives:
            raise ValueError(
                f"`pareto['sorted_by']`={pareto['sorted_by']!r} is not one of the objectives {list(objectives)}."
            )
        checked["sorted_by"] = pareto["sorted_by"]
    if pareto.get("values") is not None:
        checked["values"] = _check_metrics(pareto["values"])
    return checked


def _check_optional_string(name: str, value: Any, what: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"`{name}` must be a non-empty string ({what}) or None, got {value!r}.")


def _check_training_record(record: Any) -> dict[str, Any] | None:
    """`record` (a [`TrainingRecord`], its dict, or None) as a dict of the record's fields, or None."""
    if record is None:
        return None
    if isinstance(record, TrainingRecord):
        return dataclasses.asdict(record)
    if not isinstance(record, dict):
        raise TypeError(f"`training_record` must be a TrainingRecord, its dict or None, got {type(record).__name__}.")
    try:
        return dataclasses.asdict(TrainingRecord(**record))
    except TypeError as e:
        allowed = [f.name for f in dataclasses.fields(TrainingRecord)]
        raise ValueError(f"`training_record` has unknown keys {sorted(record)}; allowed: {allowed}.") from e


def _check_card_arguments(
    supernet: Any,
    subnet: Any,
    base_model: Any,
    repo_id: Any,
    metrics: dict[str, float] | None,
    latency: LatencyResult | dict[str, Any] | None,
    pareto: dict[str, Any] | None,
) -> tuple[dict[str, float], dict[str, Any] | None, dict[str, Any] | None]:
    """Check the arguments of [`build_model_card`] that need no model; return the checked metrics, latency, pareto."""
    if not isinstance(supernet, SupernetMixin):
        raise TypeError(f"`supernet` must be an elastic supernet (ElasticBert*), got {type(supernet).__name__}.")
    if not isinstance(subnet, SubnetConfig):
        raise TypeError(f"`subnet` must be a SubnetConfig, got {type(subnet).__name__}.")
    _check_optional_string("base_model", base_model, "a Hub id or a path")
    if repo_id is not None:
        check_repo_id(repo_id)
    return _check_metrics(metrics), _check_latency(latency), check_pareto(pareto)


@dataclass(frozen=True)
class _MetricsData:
    """Where the metrics were measured: the dataset (a Hub id or a local file or folder), its configuration and split,
    and whether that split is the one the search selected the subnet on."""

    dataset: str | None = None
    config: str | None = None
    split: str | None = None
    selection: bool = False

    @property
    def hub_id(self) -> str | None:
        """The dataset if it is a Hub dataset id (local data is named in the text only)."""
        return self.dataset if self.dataset is not None and _is_hub_id(self.dataset) else None


def _check_metrics_data(dataset: Any, config: Any, split: Any, selection: Any) -> _MetricsData:
    _check_optional_string("dataset", dataset, "a Hub dataset id or a local file")
    _check_optional_string("dataset_config", config, "the dataset's configuration, e.g. 'sst2'")
    _check_optional_string("dataset_split", split, "the split the metrics were measured on, e.g. 'validation'")
    if not isinstance(selection, bool):
        raise TypeError(f"`selection_split` must be a bool, got {selection!r}.")
    if (config is not None or split is not None) and dataset is None:
        raise ValueError("`dataset_config` and `dataset_split` describe `dataset`; give `dataset` too.")
    return _MetricsData(dataset, config, split, selection)


def _is_hub_id(name: str) -> bool:
    """Whether `name` can be a Hub model id (the Hub rejects card metadata whose `base_model` is not one)."""
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# what the card states: the input size, the costs, the task
@dataclass(frozen=True)
class _MacsInputs:
    """The input size the MACs are counted at: `count_macs` keywords, the cost table's words, the card data entry
    and, for an image size other than the config's, a line for the loading snippet."""

    count_kwargs: dict[str, Any]
    text: str
    card_data: dict[str, Any]
    note: str | None = None


def _image_inputs(
    config: Any, latency: dict[str, Any] | None, macs_sequence_length: int | None, macs_image_size: Any
) -> _MacsInputs:
    if macs_sequence_length is not None:
        raise ValueError("`macs_sequence_length` is for text models; image models count MACs at `macs_image_size`.")
    image_size = list(pair(macs_image_size or (latency or {}).get("image_size") or config.image_size))
    note = None
    if image_size != list(pair(config.image_size)):
        note = (
            f"# for {image_size[0]}x{image_size[1]} px images (the config says {config.image_size} px): "
            "model(pixel_values, interpolate_pos_encoding=True)"
        )
    text = f"{image_size[0]}x{image_size[1]} px image"
    return _MacsInputs({"image_size": tuple(image_size)}, text, {"macs_image_size": image_size}, note)


def _text_inputs(
    config: Any, latency: dict[str, Any] | None, macs_sequence_length: int | None, macs_image_size: Any
) -> _MacsInputs:
    if macs_image_size is not None:
        raise ValueError("`macs_image_size` is for image models; text models count MACs at `macs_sequence_length`.")
    if macs_sequence_length is None:
        if latency is not None:
            macs_sequence_length = latency["sequence_length"]
        else:
            macs_sequence_length = min(128, getattr(config, "max_position_embeddings", 128))
    return _MacsInputs(
        {"sequence_length": macs_sequence_length},
        f"{macs_sequence_length} tokens",
        {"macs_sequence_length": macs_sequence_length},
    )


@dataclass(frozen=True)
class _SubnetFacts:
    """What the card states about the subnet, besides the caller's metrics, latency and Pareto position."""

    vanilla: bool
    head_size: int
    auto_class: str
    pipeline_tag: str
    model_type: str
    modeling_file: str
    inputs: _MacsInputs
    num_parameters: int
    full_parameters: int
    macs: int
    full_macs: int


def _subnet_facts(
    supernet: Any,
    subnet: SubnetConfig,
    latency: dict[str, Any] | None,
    macs_sequence_length: int | None,
    macs_image_size: Any,
) -> _SubnetFacts:
    """The card's facts: the MACs' input size (checked against the model's modality), the task and the costs."""
    config = supernet.config
    family = get_family(config)
    input_kind = _image_inputs if family.is_image else _text_inputs
    inputs = input_kind(config, latency, macs_sequence_length, macs_image_size)
    vanilla = is_vanilla_subnet(subnet, config.attention_head_size)
    task = family.task_of(supernet.static_class_name)
    num_parameters = count_parameters(supernet, subnet)  # also validates `subnet` against the search space
    largest = supernet.max_subnet()
    return _SubnetFacts(
        vanilla=vanilla,
        head_size=config.attention_head_size,
        auto_class=task.auto_class,
        pipeline_tag=task.pipeline_tag,
        model_type=family.model_type,
        modeling_file=family.subnet_modeling_file,
        inputs=inputs,
        num_parameters=num_parameters,
        full_parameters=count_parameters(supernet, largest),
        macs=count_macs(supernet, subnet, **inputs.count_kwargs),
        full_macs=count_macs(supernet, largest, **inputs.count_kwargs),
    )


# ----------------------------------------------------------------------------------------------------------------
# card data (the YAML header)
def _hub_base_model(base_model: str | None) -> str | None:
    """`base_model` if the card data may name it (a Hub model id), else `None` (with a warning for a path)."""
    hub_base_model = base_model if base_model is not None and _is_hub_id(base_model) else None
    if base_model is not None and hub_base_model is None:
        logger.warning("base_model=%r is not a Hub model id; it is named in the card text only.", base_model)
    return hub_base_model


def _default_model_name(repo_id: str | None, base_model: str | None) -> str:
    """The card's title without a `model_name`: the last part of `repo_id`, else one derived from `base_model`."""
    if repo_id is not None:
        return repo_id.rsplit("/", 1)[-1]
    stem = checkpoint_name(base_model) if base_model else "supernet"
    return f"{stem}-hf-nas-subnet"


def _eval_results(metrics: dict[str, float], data: _MetricsData, pipeline_tag: str) -> list[EvalResult] | None:
    if data.hub_id is None or not metrics:
        return None
    return [
        EvalResult(
            task_type=pipeline_tag,
            dataset_type=data.hub_id,
            dataset_name=data.hub_id,
            dataset_config=data.config,
            dataset_split=data.split,
            metric_type=name,
            metric_value=value,
        )
        for name, value in metrics.items()
    ]


def _card_datasets(data: _MetricsData, record: dict[str, Any] | None) -> list[str] | None:
    """The card data's `datasets`: the Hub datasets the supernet was trained on and the metrics measured on."""
    trained_on = ((record or {}).get("dataset") or {}).get("name")
    names = [name for name in (trained_on, data.hub_id) if name is not None and _is_hub_id(name)]
    return list(dict.fromkeys(names)) or None


def _hf_nas_data(
    supernet: Any,
    subnet: SubnetConfig,
    facts: _SubnetFacts,
    latency: dict[str, Any] | None,
    metrics: dict[str, float],
    pareto: dict[str, Any] | None,
    metrics_data: _MetricsData,
) -> dict[str, Any]:
    """The card data's plain `hf_nas` field: everything hf-nas knows about the subnet, machine-readable."""
    data: dict[str, Any] = {
        "subnet": subnet.to_dict(),
        "search_space": supernet.search_space.to_dict(),
        "vanilla": facts.vanilla,
        "num_parameters": facts.num_parameters,
        "macs": facts.macs,
        "macs_batch_size": 1,
        **facts.inputs.card_data,
        "supernet_num_parameters": facts.full_parameters,
        "supernet_macs": facts.full_macs,
    }
    if latency is not None:
        data["latency"] = latency
    if metrics:
        data["metrics"] = metrics
        data["metrics_data"] = _metrics_data_entry(metrics_data)
    if pareto is not None:
        data["pareto"] = pareto
    return data


def _metrics_data_entry(data: _MetricsData) -> dict[str, Any]:
    entry = {"dataset": _public_name(data.dataset), "config": data.config, "split": data.split}
    return {**{k: v for k, v in entry.items() if v is not None}, "selection_split": data.selection}


# ----------------------------------------------------------------------------------------------------------------
# card sections (the text)
def _human(n: float) -> str:
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}"
    return f"{n:g}"


def _pretty(name: str) -> str:
    return _PRETTY_NAMES.get(name, name)


def _format_value(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else _human(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _public_name(name: str | None) -> str | None:
    """`name` as a card may show it: a Hub id as it is, a local path by its last part (never this machine's path)."""
    if name is None or _is_hub_id(name):
        return name
    return checkpoint_name(os.path.expanduser(name))


def _base_model_text(base_model: str | None, hub_base_model: str | None) -> str:
    if base_model is None:
        return "a pretrained checkpoint"
    if hub_base_model is not None:
        return f"[`{base_model}`](https://huggingface.co/{base_model})"
    return f"a local checkpoint (`{_public_name(base_model)}`)"


def _subnet_table(subnet: SubnetConfig, head_size: int) -> str:
    rows = [
        [i, heads, heads * head_size, ffn]
        for i, (heads, ffn) in enumerate(zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True))
    ]
    table = _table(["Layer", "Attention heads", "Attention width (heads x head size)", "FFN width"], rows)
    return (
        f"Depth **{subnet.num_hidden_layers}** layers (the supernet's layers {', '.join(map(str, subnet.layers))}, "
        f"renumbered from 0), hidden size **{subnet.hidden_size}**, attention head size "
        f"{head_size}.\n\n{table}\n\nAs JSON (`hf_nas.SubnetConfig.from_dict`): "
        f"`{json.dumps(subnet.to_dict(), separators=(', ', ': '))}`"
    )


def _search_space_table(supernet: Any, subnet: SubnetConfig) -> str:
    space = supernet.search_space

    def join(values: Any) -> str:
        return ", ".join(str(v) for v in values)

    rows = [
        ["Depth (`num_hidden_layers`)", join(space.num_hidden_layers), subnet.num_hidden_layers],
        # One subset of the supernet's layers per depth, fixed by the space's layer rule.
        ["Kept layers (`layers`)", f"layer rule `{space.layer_rule}`", join(subnet.layers)],
        [
            "Attention heads, per layer (`num_attention_heads`)",
            join(space.num_attention_heads),
            join(subnet.num_attention_heads),
        ],
        ["FFN width, per layer (`intermediate_size`)", join(space.intermediate_size), join(subnet.intermediate_size)],
        ["Hidden size (`hidden_size`)", join(space.hidden_size), subnet.hidden_size],
        ["Attention head size (fixed)", space.attention_head_size, space.attention_head_size],
    ]
    table = _table(["Dimension", "Choices", "This subnet"], rows)
    return f"{table}\n\nThe space holds {space.size:,} distinct subnets."


def _cost_table(facts: _SubnetFacts) -> str:
    rows = [
        [
            "Parameters",
            f"{_human(facts.num_parameters)} ({facts.num_parameters:,})",
            f"{_human(facts.full_parameters)}",
            f"{100 * facts.num_parameters / facts.full_parameters:.1f}%",
        ],
        [
            f"MACs (one forward, batch 1 x {facts.inputs.text})",
            f"{_human(facts.macs)} ({facts.macs:,})",
            f"{_human(facts.full_macs)}",
            f"{100 * facts.macs / facts.full_macs:.1f}%",
        ],
    ]
    return _table(["", "This subnet", "Whole supernet", "Ratio"], rows) + (
        "\n\nParameters and MACs are exact counts (`hf_nas.count_parameters`, `hf_nas.count_macs`); MACs count the "
        "matrix multiplications, as `torch.utils.flop_counter.FlopCounterMode` does."
    )


def _latency_text(latency: dict[str, Any] | None) -> str:
    if latency is None:
        return "Latency: not measured."
    size = latency.get("image_size")
    per_example = f"{latency['sequence_length']} tokens" if size is None else f"{size[0]}x{size[1]} px images"
    parts = [
        f"batch {latency['batch_size']} x {per_example}",
        f"device `{latency['device']}`",
    ]
    if latency.get("num_threads") is not None:
        parts.append(f"torch threads: {latency['num_threads']}")
    if latency.get("num_runs") is not None:
        parts.append(f"{latency['num_runs']} timed forward passes")
    spread = f" (interquartile range {latency['iqr_ms']:.3g} ms)" if latency.get("iqr_ms") is not None else ""
    noisy = (
        " The times spread widely in every round (a busy machine): take the median as a rough figure."
        if latency.get("noisy")
        else ""
    )
    return (
        f"Latency: **{latency['median_ms']:.3g} ms**{spread} per forward pass of this checkpoint, measured with "
        f"`hf_nas.measure_latency` in eval mode under `torch.no_grad`: {', '.join(parts)}. Latency depends on the "
        f"machine; compare it only with numbers measured on the same one.{noisy}"
    )


def _data_text(name: str | None, config: str | None = None, split: str | None = None) -> str:
    """A dataset as the card names it: `` `nyu-mll/glue` (configuration `sst2`, split `validation`) ``, or a local
    file or folder by its last part."""
    if name is None:
        return "data that was not recorded"
    where = f"`{name}`" if _is_hub_id(name) else f"the local data `{_public_name(name)}`"
    details = [f"{label} `{value}`" for label, value in (("configuration", config), ("split", split)) if value]
    return where + (f" ({', '.join(details)})" if details else "")


def _metrics_text(metrics: dict[str, float], data: _MetricsData) -> str:
    if not metrics:
        return "No metrics were recorded for this subnet."
    where = _data_text(data.dataset, data.config, data.split)
    rows = [[_pretty(name), _format_value(value)] for name, value in metrics.items()]
    text = f"Measured on {where} with this subnet's weights:\n\n" + _table(["Metric", "Value"], rows)
    if data.selection:
        text += f"\n\n**Selection split:** {SELECTION_CAVEAT}."
    return text


def _pareto_text(pareto: dict[str, Any] | None) -> str:
    if pareto is None:
        return "This subnet was not placed on a Pareto front (chosen directly, not from search results)."
    front = "–".join(_pretty(o) for o in pareto["objectives"])
    order = f", counted in order of increasing {_pretty(pareto['sorted_by'])}" if pareto.get("sorted_by") else ""
    record = f", record {pareto['record']} of the search results" if pareto.get("record") is not None else ""
    text = (
        f"**pareto_index {pareto['pareto_index']}** (of 0-{pareto['size'] - 1}{record}) on the {front} Pareto "
        f"front{order}: no other measured subnet is at least as good on every objective and better on one."
    )
    if pareto.get("values"):
        rows = [[_pretty(name), _format_value(value)] for name, value in pareto["values"].items()]
        text += "\n\nIts objective values, as measured during the search:\n\n" + _table(["Objective", "Value"], rows)
    return text


def _load_snippet(
    auto_class: str, repo: str, is_vanilla: bool, processor_class: str | None, note: str | None = None
) -> str:
    # A per-layer config has a custom `model_type` (`bert_subnet`) and an `auto_map`: the tokenizer and processor Auto
    # classes read that config too, and without `trust_remote_code=True` they stop to ask whether to run its code.
    remote = "" if is_vanilla else ", trust_remote_code=True"
    imports = sorted({auto_class} | ({processor_class} if processor_class else set()))
    lines = [f"from transformers import {', '.join(imports)}", ""]
    lines.append(f'model = {auto_class}.from_pretrained("{repo}"{remote})')
    if processor_class:
        name = "tokenizer" if processor_class == "AutoTokenizer" else "processor"
        lines.append(f'{name} = {processor_class}.from_pretrained("{repo}"{remote})')
    if note:
        lines.append(note)
    return "\n".join(lines)


def _shorten_path(value: str) -> str:
    """A local absolute path by its last part (a card never shows this machine's folders); anything else unchanged."""
    return checkpoint_name(value) if os.path.isabs(os.path.expanduser(value)) else value


def _setting_text(value: Any) -> str:
    if isinstance(value, str):
        text = _shorten_path(value)
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, separators=(", ", ": "), default=str)
    else:
        text = str(value)
    return f"`{text}`".replace("|", "\\|")


def _command_line_text(arguments: list[str]) -> str:
    """The training run's arguments, local paths shortened (`--option=/a/b` too)."""
    shortened = []
    for argument in arguments:
        option, sep, value = argument.partition("=") if argument.startswith("-") else ("", "", argument)
        shortened.append(option + sep + _shorten_path(value))
    return shlex.join(shortened)


def _training_data_text(dataset: dict[str, Any]) -> str | None:
    """The training data of a record's `dataset`: a Hub dataset with its configuration and splits, or local data."""
    if dataset.get("name"):
        text = _data_text(dataset["name"], dataset.get("config"), dataset.get("train_split"))
        if dataset.get("validation_split"):
            text += f", validated on its split `{dataset['validation_split']}`"
        return text
    local = [_public_name(dataset[key]) for key in _LOCAL_DATA_KEYS if dataset.get(key)]
    return f"the local data {', '.join(f'`{name}`' for name in local)}" if local else None


def _record_text(record: dict[str, Any]) -> str:
    """The training section's account of a [`TrainingRecord`]: base model, recipe, data, settings, command line."""
    base = record.get("base_model")
    sentence = "The supernet was trained with hf-nas"
    if base:
        sentence += f" from {_base_model_text(base, base if _is_hub_id(base) else None)}"
    recipe = record.get("recipe")
    if recipe:
        sentence += f" with the {_RECIPE_NAMES.get(recipe, f'`{recipe}` recipe')}"
    dataset = record.get("dataset") or {}
    data_text = _training_data_text(dataset)
    parts = [sentence + (f", on {data_text}" if data_text else "") + "."]
    settings = {**record.get("training", {}), **{k: v for k, v in dataset.items() if k not in _TRAINING_DATA_KEYS}}
    settings = {k: v for k, v in settings.items() if k not in _LOCAL_DATA_KEYS and v is not None}
    if settings:
        rows = [[f"`{name}`", _setting_text(value)] for name, value in settings.items()]
        parts.append("Its training settings:\n\n" + _table(["Setting", "Value"], rows))
    if record.get("command_line"):
        command = _command_line_text(record["command_line"])
        parts.append(f"Its arguments (local paths shortened to their last part):\n\n```bash\n{command}\n```")
    return "\n\n".join(parts)


def _training_text(record: dict[str, Any] | None, recipe: str | None) -> str:
    """The training section: the supernet's record (when there is one), then `recipe` (how the subnet was chosen and
    trained), else a note that nothing was recorded."""
    parts = [_record_text(record)] if record is not None else []
    if recipe is not None and recipe.strip():
        parts.append(recipe.strip())
    return "\n\n".join(parts) or _NO_RECIPE


def _versions() -> str:
    from .. import __version__

    return "\n".join(
        [
            f"- hf-nas {__version__}",
            f"- transformers {transformers.__version__}",
            f"- torch {torch.__version__}",
            f"- huggingface_hub {huggingface_hub.__version__}",
        ]
    )


def _text_sections(
    supernet: Any,
    subnet: SubnetConfig,
    facts: _SubnetFacts,
    *,
    repo_id: str | None,
    processor_class: str | None,
    latency: dict[str, Any] | None,
    metrics: dict[str, float],
    metrics_data: _MetricsData,
    pareto: dict[str, Any] | None,
    training_record: dict[str, Any] | None,
    training_recipe: str | None,
) -> dict[str, Any]:
    """The template's variables that describe the subnet (the title and the base model aside)."""
    snippet = _load_snippet(
        facts.auto_class, repo_id or _PLACEHOLDER_REPO, facts.vanilla, processor_class, facts.inputs.note
    )
    return {
        "is_vanilla": facts.vanilla,
        "model_type": facts.model_type,
        "modeling_file": facts.modeling_file,
        "load_snippet": snippet,
        "subnet_table": _subnet_table(subnet, facts.head_size),
        "search_space_table": _search_space_table(supernet, subnet),
        "cost_table": _cost_table(facts),
        "latency_text": _latency_text(latency),
        "metrics_text": _metrics_text(metrics, metrics_data),
        "pareto_text": _pareto_text(pareto),
        "training_recipe": _training_text(training_record, training_recipe),
        "versions": _versions(),
    }


# ----------------------------------------------------------------------------------------------------------------
# the card
def build_model_card(
    supernet: PreTrainedModel,
    subnet: SubnetConfig,
    *,
    base_model: str | None,
    metrics: dict[str, float] | None = None,
    latency: LatencyResult | dict[str, Any] | None = None,
    pareto: dict[str, Any] | None = None,
    training_recipe: str | None = None,
    training_record: TrainingRecord | dict[str, Any] | None = None,
    model_name: str | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str | None = None,
    selection_split: bool = False,
    repo_id: str | None = None,
    macs_sequence_length: int | None = None,
    macs_image_size: int | tuple[int, int] | None = None,
    processor_class: str | None = None,
    license: str | None = None,
) -> ModelCard:
    """The model card (README.md) of `subnet` extracted from `supernet`.

    Rendered with `huggingface_hub.ModelCard.from_template` from `model_cards/subnet_card.md`. The card data (YAML
    header) holds `library_name="transformers"`, `base_model` (when it is a Hub id), the tags [`MODEL_CARD_TAGS`],
    `pipeline_tag`, `datasets` (the Hub datasets of the training record and of the metrics) and, with a Hub `dataset`
    and `metrics` both given, `eval_results` (with the configuration and split); everything hf-nas knows about the
    subnet is also kept, machine-readable, under the plain field `hf_nas` (subnet, search space, parameters, MACs,
    latency, metrics and their data, Pareto position). The text describes the same and shows how to load the
    checkpoint: vanilla subnets with plain `AutoModelFor*.from_pretrained(repo)`, per-layer ones with
    `trust_remote_code=True` for the model and its tokenizer or image processor alike (their Auto classes read the
    custom config too, and would otherwise stop to ask). A local path (a base model, a data file) is named by its last
    part only, never by this machine's path.

    Args:
        supernet (`PreTrainedModel`):
            The elastic supernet (`ElasticBert*`) the subnet comes from.
        subnet (`SubnetConfig`):
            The extracted architecture; must lie in `supernet.search_space`.
        base_model (`str` or `None`):
            The vanilla checkpoint the supernet was fine-tuned from. Written into the card data only if it is a Hub
            model id (the Hub rejects other values); a local path is named in the text only, as "a local checkpoint"
            with its folder's name.
        metrics (`dict[str, float]`, *optional*):
            Evaluation metrics of the subnet, e.g. `{"accuracy": 0.91}`.
        latency ([`LatencyResult`] or `dict`, *optional*):
            Its measured latency ([`measure_latency`] or `LatencyResult.to_dict()`, with at least `median_ms`,
            `device`, `batch_size` and `sequence_length`).
        pareto (`dict`, *optional*):
            Its place on the Pareto front of a search: `pareto_index` (0-based) and `size` of the front,
            `objectives` (names), and optionally `record`, `sorted_by` (the objective the indices follow) and `values`
            (its objective values), e.g. `{"pareto_index": 2, "size": 12, "objectives": ["accuracy", "macs"]}`
            (see [`check_pareto`]).
        training_recipe (`str`, *optional*):
            Markdown describing how the subnet was chosen and trained (after the training record's account, if any).
        training_record ([`~hf_nas.training.recipes.TrainingRecord`] or `dict`, *optional*):
            How the supernet was made (`TrainingRecord.load(supernet_folder)`): the training section lists its base
            model, recipe, training data (name, configuration, splits), settings and command line.
        model_name (`str`, *optional*):
            The card's title; defaults to the last part of `repo_id`, else a name derived from `base_model`
            ([`export_subnet`]: the folder's name).
        dataset (`str`, *optional*):
            The dataset the metrics were measured on: a Hub dataset id, or a local file or folder (named by its last
            part; no `eval_results` then).
        dataset_config (`str`, *optional*):
            Its configuration, e.g. the GLUE task `"sst2"`.
        dataset_split (`str`, *optional*):
            The split the metrics were measured on, e.g. `"validation"`.
        selection_split (`bool`, *optional*, defaults to `False`):
            Whether that split is the one the search selected the subnet on: the metrics section then warns that
            they were measured on the split used to select this subnet and that unseen data will score lower.
        repo_id (`str`, *optional*):
            Where the checkpoint will live, used in the loading snippet (defaults to a placeholder path).
        macs_sequence_length (`int`, *optional*):
            Text models: tokens per sequence the MACs are counted for; defaults to the latency's sequence length,
            else to `min(128, config.max_position_embeddings)`.
        macs_image_size (`int` or `(height, width)`, *optional*):
            Image models: the image size the MACs are counted for; defaults to the latency's image size, else to
            `config.image_size`. When it differs from `config.image_size`, the loading snippet says to pass
            `interpolate_pos_encoding=True`.
        processor_class (`str`, *optional*):
            The Auto class of the tokenizer or image processor saved beside the weights (e.g. `"AutoTokenizer"`),
            shown in the loading snippet; none is shown when `None`.
        license (`str`, *optional*):
            The license id for the card data (usually the base model's).

    Returns:
        `huggingface_hub.ModelCard`: save it with `card.save(folder / "README.md")`.

    Example:

    ```python
    >>> from hf_nas import ElasticBertConfig, ElasticBertForSequenceClassification
    >>> from hf_nas.hub import build_model_card
    >>> config = ElasticBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    ...                            intermediate_size=64)
    >>> model = ElasticBertForSequenceClassification(config)
    >>> card = build_model_card(model, model.search_space.smallest(), base_model="google-bert/bert-base-uncased",
    ...                         metrics={"accuracy": 0.9}, dataset="nyu-mll/glue", dataset_config="sst2",
    ...                         dataset_split="validation", selection_split=True, macs_sequence_length=16)
    >>> card.data.base_model, card.data.library_name
    ('google-bert/bert-base-uncased', 'transformers')
    >>> "Measured on `nyu-mll/glue` (configuration `sst2`, split `validation`)" in card.text
    True
    >>> "measured on the split used to select this subnet; expect a lower score on unseen data" in card.text
    True
    ```
    """
    metrics, latency, pareto = _check_card_arguments(supernet, subnet, base_model, repo_id, metrics, latency, pareto)
    metrics_data = _check_metrics_data(dataset, dataset_config, dataset_split, selection_split)
    record = _check_training_record(training_record)
    if training_recipe is not None and not isinstance(training_recipe, str):
        raise TypeError(
            f"`training_recipe` must be Markdown text (a str) or None, got {type(training_recipe).__name__}."
        )
    facts = _subnet_facts(supernet, subnet, latency, macs_sequence_length, macs_image_size)
    hub_base_model = _hub_base_model(base_model)
    if model_name is None:
        model_name = _default_model_name(repo_id, base_model)
    card_data = ModelCardData(
        library_name="transformers",
        base_model=hub_base_model,
        tags=list(MODEL_CARD_TAGS),
        pipeline_tag=facts.pipeline_tag,
        datasets=_card_datasets(metrics_data, record),
        license=license,
        model_name=model_name,
        eval_results=_eval_results(metrics, metrics_data, facts.pipeline_tag),
        hf_nas=_hf_nas_data(supernet, subnet, facts, latency, metrics, pareto, metrics_data),
    )
    sections = _text_sections(
        supernet,
        subnet,
        facts,
        repo_id=repo_id,
        processor_class=processor_class,
        latency=latency,
        metrics=metrics,
        metrics_data=metrics_data,
        pareto=pareto,
        training_record=record,
        training_recipe=training_recipe,
    )
    return ModelCard.from_template(
        card_data,
        template_path=subnet_card_template_path(),
        model_name=model_name,
        base_model_text=_base_model_text(base_model, hub_base_model),
        **sections,
    )
