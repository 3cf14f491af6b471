"""The family registry: one entry per model family is what every other module reads."""

from __future__ import annotations

import pytest
import transformers
from transformers import BeitConfig, BertConfig, ViTConfig

import hf_nas
from hf_nas.models.auto import elastic_class_for, vanilla_model_type
from hf_nas.models.families import FAMILIES, TASKS, family_for_checkpoint, get_family, get_task

VANILLA_CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
    "vit": lambda: ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
    "beit": lambda: BeitConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    ),
}


def test_every_family_is_registered_and_complete():
    assert sorted(FAMILIES) == sorted(VANILLA_CONFIGS)
    for name, family in FAMILIES.items():
        assert family.elastic_config_class().model_type == family.elastic_model_type == f"elastic_{name}"
        assert family.subnet_config_class().model_type == family.subnet_model_type == f"{name}_subnet"
        assert family.vanilla_config_class() is transformers.CONFIG_MAPPING[name]
        for task in family.tasks:
            elastic = family.elastic_class(task)
            assert getattr(hf_nas, elastic.__name__) is elastic  # exported
            assert elastic.static_class_name == family.vanilla_class(task).__name__
            assert family.task_of(elastic.__name__) is TASKS[task]
            assert family.task_of(family.subnet_class(task).__name__) is TASKS[task]
            # registered with the Auto classes
            auto = get_task(task).auto_model_class()
            assert auto._model_mapping[family.elastic_config_class()] is elastic
        assert family.processor_kind == ("image_processor" if family.is_image else "tokenizer")
        assert family.cost_inputs == ("image_size" if family.is_image else "sequence_length")


@pytest.mark.parametrize("name", sorted(VANILLA_CONFIGS))
def test_get_family_accepts_every_form_of_a_model_type(name):
    family = FAMILIES[name]
    config = VANILLA_CONFIGS[name]()
    assert get_family(name) is get_family(f"elastic_{name}") is get_family(f"{name}_subnet") is family
    assert get_family(config) is family
    assert get_family(family.elastic_config_class()(**config.to_dict())) is family


@pytest.mark.parametrize("name", sorted(VANILLA_CONFIGS))
def test_vanilla_qkv_projections_are_the_last_layers_projections(name):
    family = FAMILIES[name]
    model = family.vanilla_class("feature-extraction")(VANILLA_CONFIGS[name]())
    q, k, v = family.vanilla_qkv_projections(model)
    names = {module: n for n, module in model.named_modules()}
    assert [names[m].rsplit(".", 1)[-1] for m in (q, k, v)] in (
        ["query", "key", "value"],
        ["q_proj", "k_proj", "v_proj"],
    )
    assert all(f".{model.config.num_hidden_layers - 1}." in names[m] for m in (q, k, v))


def test_unknown_names_give_clear_errors(tmp_path):
    with pytest.raises(
        ValueError, match=r"'roberta' is not supported by hf-nas; supported: \['beit', 'bert', 'vit'\]"
    ):
        get_family("roberta")
    with pytest.raises(TypeError, match="model type, a config or a model"):
        get_family(3)
    with pytest.raises(ValueError, match="Unknown task 'translation'"):
        get_task("translation")
    with pytest.raises(ValueError, match="does not support task 'fill-mask'"):
        get_family("vit").elastic_class("fill-mask")
    with pytest.raises(ValueError, match="not a bert class"):
        get_family("bert").task_of("BertForPreTraining")


def test_checkpoint_lookups(tmp_path):
    VANILLA_CONFIGS["vit"]().save_pretrained(tmp_path / "vit")
    BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4).save_pretrained(
        tmp_path / "b"
    )
    assert family_for_checkpoint(tmp_path / "vit") is FAMILIES["vit"] and vanilla_model_type(tmp_path / "b") == "bert"
    assert elastic_class_for(tmp_path / "vit", "image-classification") is hf_nas.ElasticViTForImageClassification
    with pytest.raises(ValueError, match=r"is a `vit` checkpoint; for sequence-classification .* \['bert'\]"):
        elastic_class_for(tmp_path / "vit", "sequence-classification")
