"""What hf-nas knows about each model family, in one place.

A family (`bert`, `vit`, `beit`) is one [`ModelFamily`] entry: its vanilla model type, the elastic and per-layer
("subnet") model types, the tasks it supports, the module holding its classes, its processor kind and what its costs
take (a token count, or an image size turned into tokens). A task is one [`Task`] entry: the class-name suffix of its
head, the transformers Auto class and the Hub pipeline tag. Every other module reads these two registries instead of
keeping a table; adding a family is one [`register_family`] call plus its model folder (`models/<name>/` with
`Elastic<Prefix><Suffix>` and `<Prefix>Subnet<Suffix>` classes).

Example:

```python
>>> from hf_nas.models.families import get_family
>>> family = get_family("elastic_vit")
>>> family.model_type, family.modality, family.cost_inputs
('vit', 'image', 'image_size')
>>> family.elastic_class("image-classification").__name__
'ElasticViTForImageClassification'
>>> get_family("bert").task_of("BertForSequenceClassification").auto_class
'AutoModelForSequenceClassification'
```
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import transformers

__all__ = [
    "FAMILIES",
    "TASKS",
    "ModelFamily",
    "Task",
    "family_for_checkpoint",
    "get_family",
    "get_task",
    "register_family",
    "register_task",
]

MODALITIES = ("text", "image")


@dataclass(frozen=True)
class Task:
    """One model head: `feature-extraction` (the bare backbone), `sequence-classification`, ...

    Args:
        name: the task name used by the scripts (`--task`).
        suffix: the class-name suffix of its head (`ForSequenceClassification`; `Model` for the backbone).
        auto_class: the transformers Auto class that loads a vanilla checkpoint of this head.
        pipeline_tag: the Hub pipeline tag written on model cards.
    """

    name: str
    suffix: str
    auto_class: str
    pipeline_tag: str

    def auto_model_class(self) -> type:
        """The transformers Auto class (e.g. `AutoModelForSequenceClassification`)."""
        return getattr(transformers, self.auto_class)


@dataclass(frozen=True)
class ModelFamily:
    """One model family: everything the library needs to know about it beside its model folder.

    Args:
        model_type: the vanilla transformers model type (`bert`); the family's name.
        class_prefix: the prefix of its class names (`Bert`: `BertModel`, `ElasticBertModel`, `BertSubnetModel`).
        module: the package holding its elastic and per-layer classes (`hf_nas.models.bert`).
        modality: `text` (a tokenizer, `input_ids`) or `image` (an image processor, `pixel_values`).
        tasks: the task names it supports, the backbone (`feature-extraction`) first.
        subnet_modeling_file: the self-contained modeling file of its per-layer subnets, copied beside an extracted
            heterogeneous subnet so that it loads with `trust_remote_code=True` and no hf-nas.
        vanilla_layers: where the vanilla backbone (and an extracted subnet) keeps its list of layers (`encoder.layer`).
        vanilla_qkv: the query, key and value projections inside one of those layers (`attention.self.query`, ...),
            e.g. for self-attention distillation from a vanilla teacher.
    """

    model_type: str
    class_prefix: str
    module: str
    modality: str
    tasks: tuple[str, ...]
    subnet_modeling_file: str
    vanilla_layers: str
    vanilla_qkv: tuple[str, str, str]

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"`modality`={self.modality!r} is not supported; allowed: {list(MODALITIES)}.")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"`tasks` has unknown tasks {unknown}; allowed: {sorted(TASKS)}.")

    # ------------------------------------------------------------------------------------------------------------
    # names
    @property
    def elastic_model_type(self) -> str:
        """The model type of its supernet configs (`elastic_bert`)."""
        return f"elastic_{self.model_type}"

    @property
    def subnet_model_type(self) -> str:
        """The model type of its extracted per-layer subnets (`bert_subnet`)."""
        return f"{self.model_type}_subnet"

    @property
    def is_image(self) -> bool:
        return self.modality == "image"

    @property
    def processor_kind(self) -> str:
        """What preprocesses its inputs: `tokenizer` or `image_processor`."""
        return "image_processor" if self.is_image else "tokenizer"

    @property
    def cost_inputs(self) -> str:
        """What its costs take: `sequence_length` (tokens) or `image_size` (turned into patches + CLS tokens)."""
        return "image_size" if self.is_image else "sequence_length"

    # ------------------------------------------------------------------------------------------------------------
    # classes
    def _module(self) -> Any:
        return importlib.import_module(self.module)

    def _task(self, task: str) -> Task:
        if task not in self.tasks:
            raise ValueError(
                f"The {self.model_type} family does not support task {task!r}; allowed: {list(self.tasks)}."
            )
        return TASKS[task]

    def elastic_config_class(self) -> type:
        return getattr(self._module(), f"Elastic{self.class_prefix}Config")

    def subnet_config_class(self) -> type:
        return getattr(self._module(), f"{self.class_prefix}SubnetConfig")

    def elastic_class(self, task: str) -> type:
        """The supernet class for `task` (e.g. `ElasticBertForSequenceClassification`)."""
        return getattr(self._module(), f"Elastic{self.class_prefix}{self._task(task).suffix}")

    def subnet_class(self, task: str) -> type:
        """The per-layer subnet class for `task` (e.g. `BertSubnetForSequenceClassification`)."""
        return getattr(self._module(), f"{self.class_prefix}Subnet{self._task(task).suffix}")

    def vanilla_class(self, task: str) -> type:
        """The transformers class for `task` (e.g. `BertForSequenceClassification`)."""
        return getattr(transformers, f"{self.class_prefix}{self._task(task).suffix}")

    def vanilla_config_class(self) -> type:
        return transformers.CONFIG_MAPPING[self.model_type]

    def vanilla_qkv_projections(self, model: Any, layer: int = -1) -> tuple[Any, Any, Any]:
        """The query, key and value projections of layer `layer` of a vanilla (or extracted) model of this family."""
        block = model.base_model.get_submodule(self.vanilla_layers)[layer]
        return tuple(block.get_submodule(name) for name in self.vanilla_qkv)

    def task_of(self, class_name: str) -> Task:
        """The task of a class of this family, from its name (vanilla, elastic or subnet)."""
        # the longest suffix first, so that a suffix that ends another one can never shadow it
        for name in sorted(self.tasks, key=lambda t: -len(TASKS[t].suffix)):
            if class_name.endswith(TASKS[name].suffix):
                return TASKS[name]
        raise ValueError(
            f"{class_name!r} is not a {self.model_type} class hf-nas knows; supported heads: "
            f"{[TASKS[t].suffix for t in self.tasks]}."
        )


TASKS: dict[str, Task] = {}
FAMILIES: dict[str, ModelFamily] = {}


def register_task(task: Task) -> Task:
    """Add a task (a kind of head) that families can list."""
    TASKS[task.name] = task
    return task


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a model family; `hf_nas` registers the families' config and model classes with the Auto classes on
    import, so register before importing `hf_nas` or call `hf_nas.register_auto_classes(family)` after."""
    FAMILIES[family.model_type] = family
    return family


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; allowed: {sorted(TASKS)}.")
    return TASKS[name]


def _model_type_of(key: Any) -> str:
    if isinstance(key, str):
        return key
    config = getattr(key, "config", key)  # a model or a config
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        raise TypeError(f"Expected a model type, a config or a model, got {type(key).__name__}.")
    return model_type


def get_family(key: Any) -> ModelFamily:
    """The family of a model type (vanilla `bert`, `elastic_bert` or `bert_subnet`), a config or a model."""
    model_type = _model_type_of(key)
    name = model_type.removeprefix("elastic_").removesuffix("_subnet")
    if name not in FAMILIES:
        raise ValueError(
            f"Model type {model_type!r} is not supported by hf-nas; supported: {sorted(FAMILIES)} (and their "
            "elastic_* and *_subnet forms)."
        )
    return FAMILIES[name]


def family_for_checkpoint(pretrained_model_name_or_path: str | os.PathLike) -> ModelFamily:
    """The family of a checkpoint folder (vanilla, supernet or extracted subnet), read from its `config.json`."""
    config_dict, _ = transformers.PreTrainedConfig.get_config_dict(pretrained_model_name_or_path)
    model_type = config_dict.get("model_type")
    if model_type is None:
        raise ValueError(f"{pretrained_model_name_or_path!s} has no `model_type` in its config.json.")
    return get_family(model_type)


for _task in (
    Task("feature-extraction", "Model", "AutoModel", "feature-extraction"),
    Task(
        "sequence-classification",
        "ForSequenceClassification",
        "AutoModelForSequenceClassification",
        "text-classification",
    ),
    Task("token-classification", "ForTokenClassification", "AutoModelForTokenClassification", "token-classification"),
    Task("question-answering", "ForQuestionAnswering", "AutoModelForQuestionAnswering", "question-answering"),
    Task("fill-mask", "ForMaskedLM", "AutoModelForMaskedLM", "fill-mask"),
    Task("image-classification", "ForImageClassification", "AutoModelForImageClassification", "image-classification"),
):
    register_task(_task)

register_family(
    ModelFamily(
        model_type="bert",
        class_prefix="Bert",
        module="hf_nas.models.bert",
        modality="text",
        tasks=(
            "feature-extraction",
            "sequence-classification",
            "token-classification",
            "question-answering",
            "fill-mask",
        ),
        subnet_modeling_file="modeling_bert_subnet.py",
        vanilla_layers="encoder.layer",
        vanilla_qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
    )
)
register_family(
    ModelFamily(
        model_type="vit",
        class_prefix="ViT",
        module="hf_nas.models.vit",
        modality="image",
        tasks=("feature-extraction", "image-classification"),
        subnet_modeling_file="modeling_vit_subnet.py",
        vanilla_layers="layers",
        vanilla_qkv=("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    )
)
register_family(
    ModelFamily(
        model_type="beit",
        class_prefix="Beit",
        module="hf_nas.models.beit",
        modality="image",
        tasks=("feature-extraction", "image-classification"),
        subnet_modeling_file="modeling_beit_subnet.py",
        vanilla_layers="layers",
        vanilla_qkv=("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    )
)
