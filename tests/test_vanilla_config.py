"""A vanilla config handed to an elastic class is converted (search space derived as `from_pretrained` does); a
config of another family is refused with a `TypeError` naming the class to use."""

from __future__ import annotations

import pytest
import torch
from transformers import BeitConfig, BertConfig, ViTConfig

from hf_nas.models.families import FAMILIES

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
VANILLA = {
    "bert": lambda: BertConfig(vocab_size=99, num_labels=3, **SIZES),
    "vit": lambda: ViTConfig(image_size=32, patch_size=8, num_labels=3, **SIZES),
    "beit": lambda: BeitConfig(image_size=32, patch_size=8, num_labels=3, **SIZES),
}
CASES = [(name, task) for name, family in sorted(FAMILIES.items()) for task in family.tasks]


@pytest.mark.parametrize(("name", "task"), CASES)
def test_a_vanilla_config_is_converted_with_its_search_space(name, task):
    family = FAMILIES[name]
    vanilla = VANILLA[name]()
    torch.manual_seed(0)
    model = family.elastic_class(task)(vanilla)
    elastic = family.elastic_config_class().from_dict(vanilla.to_dict())
    assert type(model.config) is family.elastic_config_class()
    assert model.config.search_space == elastic.search_space  # what from_pretrained derives from the same config
    assert model.config.num_labels == 3 and model.config.hidden_size == 32
    torch.manual_seed(0)
    twin = family.elastic_class(task)(elastic)
    for (key, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize(("name", "task"), CASES)
def test_a_config_of_another_family_is_refused(name, task):
    cls = FAMILIES[name].elastic_class(task)
    other = next(factory for key, factory in VANILLA.items() if key != name)()
    with pytest.raises(TypeError, match=rf"{cls.__name__} takes an Elastic\w+Config .*got \w+Config.*from_pretrained"):
        cls(other)
    with pytest.raises(TypeError, match="got dict"):
        cls({"hidden_size": 32})
