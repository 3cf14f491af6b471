"""Elastic ViT and BEiT: the largest subnet equals the vanilla model, an extracted subnet equals the supernet with it
active (at the model's image size and with interpolated position encodings), saved subnets reload without hf-nas,
and the costs are exact. BEiT runs with relative position bias per layer, shared or off, layer scale on and off and
mean pooling on and off."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch
import transformers
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    BeitConfig,
    BeitForImageClassification,
    BeitModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

import hf_nas
from hf_nas import (
    ElasticBeitForImageClassification,
    ElasticBeitModel,
    ElasticViTForImageClassification,
    ElasticViTModel,
    SubnetConfig,
    count_macs,
    count_parameters,
    reorder_by_importance,
    save_subnet,
)
from hf_nas.costs import count_macs_measured
from hf_nas.extraction import is_vanilla_subnet
from hf_nas.models.auto import elastic_class_for

from .conftest import assert_outputs_close, output_tensors, randomize_parameters, tiny_bert_config
from .test_extraction import RELOAD_SCRIPT

TINY_VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
    "num_labels": 5,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-6,
}
BEIT_BASE = {"drop_path_rate": 0.0, "use_absolute_position_embeddings": True}
# name -> (config class, config overrides)
VARIANTS: dict[str, tuple[type, dict[str, Any]]] = {
    "vit": (ViTConfig, {}),
    "vit-no-qkv-bias": (ViTConfig, {"qkv_bias": False}),
    "beit-relative-mean": (
        BeitConfig,
        {**BEIT_BASE, "use_relative_position_bias": True, "use_mean_pooling": True, "layer_scale_init_value": 0.1},
    ),
    "beit-shared-cls": (
        BeitConfig,
        {
            **BEIT_BASE,
            "use_absolute_position_embeddings": False,
            "use_shared_relative_position_bias": True,
            "use_mean_pooling": False,
            "layer_scale_init_value": 0.1,
        },
    ),
    "beit-both-biases": (
        BeitConfig,
        {
            **BEIT_BASE,
            "use_relative_position_bias": True,
            "use_shared_relative_position_bias": True,
            "use_mean_pooling": True,
            "layer_scale_init_value": 0.5,
        },
    ),
    "beit-no-bias-no-layer-scale": (
        BeitConfig,
        {**BEIT_BASE, "use_mean_pooling": False, "layer_scale_init_value": 0.0},
    ),
}
HEADS = ["base", "classification"]
CLASSES = {  # (family, head) -> (vanilla class, elastic class, Auto class)
    ("vit", "base"): (ViTModel, ElasticViTModel, AutoModel),
    ("vit", "classification"): (
        ViTForImageClassification,
        ElasticViTForImageClassification,
        AutoModelForImageClassification,
    ),
    ("beit", "base"): (BeitModel, ElasticBeitModel, AutoModel),
    ("beit", "classification"): (
        BeitForImageClassification,
        ElasticBeitForImageClassification,
        AutoModelForImageClassification,
    ),
}
SUBNETS = {
    "smallest": SubnetConfig(2, (1, 1), (16, 16), 16),
    "vanilla-uniform": SubnetConfig.uniform(2, 3, 32, 24),  # 3 heads x 8 == 24: a vanilla checkpoint
    "heterogeneous": SubnetConfig(3, (1, 4, 2), (64, 16, 48), 32),
    "uniform-heads": SubnetConfig.uniform(3, 2, 48, 32),  # 2 x 8 != 32: per-layer model
    "wide-heads-narrow-hidden": SubnetConfig(2, (4, 3), (32, 64), 16),  # more heads than hidden / head size
}


def family(variant: str) -> str:
    return variant.split("-")[0]


def vanilla_config(variant: str, **overrides: Any):
    config_class, extra = VARIANTS[variant]
    return config_class(**{**TINY_VISION, **extra, **overrides})


def pixel_values(size: int = 32, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def randomize_vision(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random LayerNorms and biases (conftest), plus the tensors vanilla init leaves constant or zero: CLS, position
    embeddings, layer scale and relative position bias tables."""
    randomize_parameters(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    for name, param in model.named_parameters():
        if name.rsplit(".", 1)[-1] in ("cls_token", "position_embeddings", "relative_position_bias_table"):
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        elif name.endswith(("lambda_1", "lambda_2")):
            param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
    return model


def make_pair(variant: str, head: str, tmp_path, attn_implementation: str = "eager", layer_rule: str | None = None):
    """A randomized vanilla model and the elastic supernet loaded from its checkpoint (with the default search space,
    or its layer rule set to `layer_rule`: `"first"` for the hand-built `SUBNETS`, which keep the first layers)."""
    vanilla_class, elastic_class, _ = CLASSES[(family(variant), head)]
    vanilla = randomize_vision(vanilla_class(vanilla_config(variant))).eval()
    vanilla.save_pretrained(tmp_path / "vanilla")
    supernet = elastic_class.from_pretrained(tmp_path / "vanilla", attn_implementation=attn_implementation).eval()
    if layer_rule is not None:
        supernet.search_space = dataclasses.replace(supernet.search_space, layer_rule=layer_rule)
    vanilla.set_attn_implementation(attn_implementation)
    return vanilla, supernet


# ------------------------------------------------------------------------------------------------------------------
# largest == vanilla
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_largest_subnet_equals_vanilla(variant, head, attn_implementation, tmp_path):
    vanilla, supernet = make_pair(variant, head, tmp_path, attn_implementation)
    assert type(supernet.config).model_type == f"elastic_{family(variant)}"
    assert supernet.state_dict().keys() == vanilla.state_dict().keys()
    for size, interpolate in ((32, False), (48, True), (32, True)):
        inputs = {"pixel_values": pixel_values(size), "interpolate_pos_encoding": interpolate}
        with torch.no_grad():
            assert_outputs_close(supernet(**inputs), vanilla(**inputs), atol=1e-5)
            with supernet.subnet(supernet.search_space.largest()):
                assert_outputs_close(supernet(**inputs), vanilla(**inputs), atol=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# extracted == supernet
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("head", HEADS)
def test_extracted_equals_supernet(variant, head, tmp_path):
    vanilla_class, _, _ = CLASSES[(family(variant), head)]
    _, supernet = make_pair(variant, head, tmp_path, layer_rule="first")
    space = supernet.search_space
    subnets = {**SUBNETS, **{f"seed{seed}": space.sample(seed=seed) for seed in range(4)}}
    for name, subnet in subnets.items():
        static = supernet.extract_subnet(subnet)
        vanilla = is_vanilla_subnet(subnet, 8)
        assert (type(static) is vanilla_class) == vanilla, name
        assert static.config.model_type == family(variant) + ("" if vanilla else "_subnet")
        for size, interpolate in ((32, False), (48, True)):
            inputs = {"pixel_values": pixel_values(size, seed=1), "interpolate_pos_encoding": interpolate}
            with torch.no_grad(), supernet.subnet(subnet):
                expected = supernet(**inputs)
            with torch.no_grad():
                assert_outputs_close(static(**inputs), expected, atol=1e-5)
        assert count_parameters(supernet, subnet) == sum(p.numel() for p in static.parameters()), name


# ------------------------------------------------------------------------------------------------------------------
# saved subnets load without hf-nas; a saved supernet reloads as a supernet
def test_saved_vision_subnets_load_in_a_fresh_process_without_hf_nas(tmp_path):
    manifest = {}
    inputs = {"pixel_values": pixel_values(48, seed=2), "interpolate_pos_encoding": True}
    for variant in ("vit", "beit-both-biases", "beit-shared-cls"):
        for head in HEADS:
            _, supernet = make_pair(variant, head, tmp_path / f"{variant}-{head}", layer_rule="first")
            for kind in ("vanilla-uniform", "heterogeneous", "wide-heads-narrow-hidden"):
                subnet = SUBNETS[kind]
                folder = f"{variant}-{head}-{kind}"
                save_subnet(supernet, tmp_path / folder, subnet)
                files = sorted(os.listdir(tmp_path / folder))
                config = json.loads((tmp_path / folder / "config.json").read_text())
                if kind == "vanilla-uniform":
                    assert files == ["config.json", "model.safetensors"]
                    assert config["model_type"] == family(variant) and "auto_map" not in config
                else:
                    modeling = f"modeling_{family(variant)}_subnet.py"
                    assert files == ["config.json", "model.safetensors", modeling]
                    assert "hf_nas" not in (tmp_path / folder / modeling).read_text()
                with torch.no_grad(), supernet.subnet(subnet):
                    outputs = output_tensors(supernet(**inputs))
                torch.save({"inputs": inputs, "outputs": outputs}, tmp_path / f"{folder}.reference.pt")
                manifest[folder] = {
                    "auto_class": CLASSES[(family(variant), head)][2].__name__,
                    "remote_code": kind != "vanilla-uniform",
                }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "reload.py").write_text(RELOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        [sys.executable, "reload.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS"))
    results = json.loads(line.removeprefix("RESULTS"))
    assert results.pop("hf_nas_imported") is False
    assert results.keys() == manifest.keys()
    for folder, result in results.items():
        assert result["missing"] == [] and result["unexpected"] == [], folder
        assert max(result["max_diff"].values()) <= 1e-5, (folder, result["max_diff"])


@pytest.mark.parametrize("variant", ["vit", "beit-both-biases"])
def test_supernet_saves_and_reloads_as_a_supernet(variant, tmp_path):
    _, supernet = make_pair(variant, "classification", tmp_path)
    space = supernet.search_space.narrow(hidden_size=[32])
    supernet.search_space = space
    supernet.save_pretrained(tmp_path / "supernet")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "supernet").eval()
    assert type(reloaded) is type(supernet)
    assert reloaded.search_space == space
    subnet = space.sample(seed=5)
    inputs = {"pixel_values": pixel_values(48), "interpolate_pos_encoding": True}
    with torch.no_grad(), supernet.subnet(subnet), reloaded.subnet(subnet):
        assert_outputs_close(reloaded(**inputs), supernet(**inputs), atol=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# importance reordering
@pytest.mark.parametrize("variant", ["vit", "beit-relative-mean", "beit-shared-cls", "beit-both-biases"])
def test_reorder_by_importance_keeps_the_full_model(variant, tmp_path):
    _, supernet = make_pair(variant, "classification", tmp_path)
    inputs = {"pixel_values": pixel_values(32, seed=3)}
    with torch.no_grad():
        before = supernet(**inputs).logits
    small = SubnetConfig.uniform(3, 2, 32, 32)
    with torch.no_grad(), supernet.subnet(small):
        small_before = supernet(**inputs).logits
    batches = [{"pixel_values": pixel_values(32, seed=s), "labels": torch.tensor([0, 3])} for s in range(3)]
    scores = reorder_by_importance(supernet, batches, show_progress=False)
    with torch.no_grad():
        torch.testing.assert_close(supernet(**inputs).logits, before, atol=1e-5, rtol=0)
        with supernet.subnet(small):
            small_after = supernet(**inputs).logits
    assert not torch.allclose(small_after, small_before), "reordering must change which heads a subnet keeps"
    total = torch.stack(scores.heads).sum(0)
    if variant in ("beit-shared-cls", "beit-both-biases"):
        # One order for all layers (the shared bias has one column per head): ranked by the summed importance.
        assert torch.all(total[:-1] >= total[1:])
        assert not all(torch.all(h[:-1] >= h[1:]) for h in scores.heads), "per-layer orders would differ here"
    else:
        assert all(torch.all(h[:-1] >= h[1:]) for h in scores.heads)
    # The extracted subnet still equals the supernet after reordering.
    static = supernet.extract_subnet(small)
    with torch.no_grad(), supernet.subnet(small):
        assert_outputs_close(static(**inputs), supernet(**inputs), atol=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# costs
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("head", HEADS)
def test_costs_are_exact(variant, head, tmp_path):
    _, supernet = make_pair(variant, head, tmp_path, layer_rule="first")
    for subnet in (supernet.max_subnet(), SUBNETS["smallest"], SUBNETS["heterogeneous"]):
        for image_size in (None, 48, (32, 48)):
            macs = count_macs(supernet, subnet, image_size=image_size, batch_size=2)
            assert macs == count_macs_measured(supernet, subnet, image_size=image_size, batch_size=2)
            assert macs == count_macs(supernet.extract_subnet(subnet), image_size=image_size, batch_size=2)
    with pytest.raises(ValueError, match="`sequence_length` is for text models.*pass `image_size`"):
        count_macs(supernet, sequence_length=16)
    with pytest.raises(ValueError, match="smaller than one patch"):
        count_macs(supernet, image_size=4)


def test_text_models_refuse_image_size():
    model = hf_nas.ElasticBertModel(hf_nas.ElasticBertConfig(**{**tiny_bert_config().to_dict()}))
    with pytest.raises(ValueError, match="`image_size` is for image models"):
        count_macs(model, image_size=32)


# ------------------------------------------------------------------------------------------------------------------
# bad input
def test_wrong_image_size_without_interpolation_is_a_clear_error(tmp_path):
    _, supernet = make_pair("vit", "classification", tmp_path)
    with pytest.raises(ValueError, match=r"Input image size \(48\*48\) doesn't match model \(32\*32\).*interpolate"):
        supernet(pixel_values=pixel_values(48))
    with pytest.raises(ValueError, match="pixel_values has 1 channels.*num_channels=3"):
        supernet(pixel_values=torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("elastic_class", [ElasticViTForImageClassification, ElasticBeitForImageClassification])
def test_a_bert_checkpoint_is_refused(elastic_class, tmp_path):
    transformers.BertModel(tiny_bert_config()).save_pretrained(tmp_path / "bert")
    family_name = "ViT" if elastic_class is ElasticViTForImageClassification else "BEiT"
    with pytest.raises(ValueError, match=rf"is a `bert` checkpoint; an elastic {family_name} supernet loads"):
        elastic_class.from_pretrained(tmp_path / "bert")


def test_a_vit_checkpoint_is_refused_by_beit(tmp_path):
    ViTModel(vanilla_config("vit")).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match=r"is a `vit` checkpoint.*\['beit', 'elastic_beit'\]"):
        ElasticBeitModel.from_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match=r"for image-classification hf-nas supports model types \['beit', 'vit'\]"):
        transformers.BertModel(tiny_bert_config()).save_pretrained(tmp_path / "bert")
        elastic_class_for(tmp_path / "bert", "image-classification")


def test_elastic_class_for_picks_the_family(tmp_path):
    ViTModel(vanilla_config("vit")).save_pretrained(tmp_path / "vit")
    BeitModel(vanilla_config("beit-relative-mean")).save_pretrained(tmp_path / "beit")
    assert elastic_class_for(tmp_path / "vit", "image-classification") is ElasticViTForImageClassification
    assert elastic_class_for(tmp_path / "beit", "feature-extraction") is ElasticBeitModel
    with pytest.raises(ValueError, match="Unknown task 'segmentation'"):
        elastic_class_for(tmp_path / "vit", "segmentation")


def test_elastic_classes_subclass_the_vanilla_families():
    assert issubclass(ElasticViTForImageClassification, transformers.ViTPreTrainedModel)
    assert issubclass(ElasticViTModel, transformers.ViTPreTrainedModel)
    assert issubclass(ElasticBeitForImageClassification, transformers.BeitPreTrainedModel)
    assert issubclass(hf_nas.ElasticBertForSequenceClassification, transformers.BertPreTrainedModel)
    assert issubclass(hf_nas.ElasticViTConfig, ViTConfig) and issubclass(hf_nas.ElasticBeitConfig, BeitConfig)
