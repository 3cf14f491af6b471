"""Layer subsets: a subnet keeps the supernet layers `subnet.layers`, which the search space's layer rule (`first`,
`spread` or `importance`) fixes for each depth.

For BERT, ViT and BEiT (relative position bias per layer and shared, layer scale), under every rule and at every
depth: the supernet with the subnet active equals the extracted subnet, whose layer i holds exactly the weights of
supernet layer `subnet.layers[i]`; a non-prefix subnet saves as a checkpoint that loads without hf-nas; costs are
exact; old JSON without the layer fields still loads as the first layers; bad layer subsets fail early and clearly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BeitForImageClassification,
    BertForSequenceClassification,
    ViTForImageClassification,
)

import hf_nas
from hf_nas import SearchSpace, SubnetConfig, count_macs, count_parameters, extract_subnet
from hf_nas.costs import count_macs_measured
from hf_nas.extraction import is_vanilla_subnet

from .conftest import (
    HEAD_CLASSES,
    HEAD_CONFIG,
    assert_outputs_close,
    output_tensors,
    random_batch,
    randomize_parameters,
    tiny_bert_config,
    tiny_elastic_config,
)
from .test_extraction import RELOAD_SCRIPT
from .test_modeling_elastic_vision import TINY_VISION, VARIANTS, pixel_values, randomize_vision

NUM_LAYERS = 4
DEPTHS = (1, 2, 3, 4)  # every depth of the 4-layer supernets
LAYER_ORDER = (3, 0, 2, 1)  # most important first: depth 2 keeps (0, 3), depth 3 keeps (0, 2, 3)
RULES = ("first", "spread", "importance")
HEAD_SIZE = 8

BERT_MODELS = ("BertModel", "BertForSequenceClassification", "BertForMaskedLM")
# name -> (elastic class, variant of tests/test_modeling_elastic_vision.py)
VISION_MODELS = {
    "vit": (hf_nas.ElasticViTForImageClassification, "vit"),
    "vit-base": (hf_nas.ElasticViTModel, "vit"),
    "beit-relative-mean": (hf_nas.ElasticBeitForImageClassification, "beit-relative-mean"),  # per-layer bias
    "beit-shared-cls": (hf_nas.ElasticBeitForImageClassification, "beit-shared-cls"),  # shared bias
    "beit-both-biases": (hf_nas.ElasticBeitForImageClassification, "beit-both-biases"),  # both, layer scale 0.5
}
MODEL_NAMES = [*BERT_MODELS, *VISION_MODELS]
VISION_CONFIGS = {"vit": hf_nas.ElasticViTConfig, "beit": hf_nas.ElasticBeitConfig}


def space_with_rule(space: SearchSpace, rule: str) -> SearchSpace:
    """`space` with every depth 1..4 and layer rule `rule` (importance ranks the layers by `LAYER_ORDER`)."""
    order = LAYER_ORDER if rule == "importance" else None
    return dataclasses.replace(space, num_hidden_layers=DEPTHS, layer_rule=rule, layer_order=order)


def build(name: str, rule: str) -> tuple[Any, dict[str, torch.Tensor]]:
    """A randomized 4-layer supernet `name` in eval mode whose space has layer rule `rule`, and inputs for it."""
    torch.manual_seed(0)
    if name in BERT_MODELS:
        config = tiny_elastic_config(num_hidden_layers=NUM_LAYERS, **HEAD_CONFIG.get(name, {}))
        model = randomize_parameters(HEAD_CLASSES[name][1](config))
        inputs = random_batch()
    else:
        elastic_class, variant = VISION_MODELS[name]
        config_class = VISION_CONFIGS[variant.split("-")[0]]
        config = config_class(**{**TINY_VISION, **VARIANTS[variant][1], "num_hidden_layers": NUM_LAYERS})
        model = randomize_vision(elastic_class(config))
        inputs = {"pixel_values": pixel_values(32, seed=1)}
    model.search_space = space_with_rule(model.search_space, rule)
    return model.eval(), inputs


def subnets(space: SearchSpace, depth: int) -> dict[str, SubnetConfig]:
    """A uniform subnet that extracts to the vanilla class (3 heads x 8 == 24) and a per-layer heterogeneous one,
    both with the layers `space` keeps for `depth`."""
    heads, ffn = (1, 4, 3, 2), (16, 64, 32, 48)  # 1 head x 8 != 32: per-layer even at depth 1
    return {
        "uniform": space.subnet(depth, 3, 32, 24),
        "heterogeneous": space.subnet(depth, heads[:depth], ffn[:depth], 32),
    }


def layer_prefixes(model) -> list[str]:
    """The state-dict prefix of each supernet layer (`bert.encoder.layer.2.`, ...), which is also the prefix of the
    extracted model's layer of the same index: parameter names are the vanilla ones."""
    names = {id(module): name for name, module in model.named_modules()}
    return [f"{names[id(layer)]}." for layer in model.elastic_layers()]


def first_output(output) -> torch.Tensor:
    """The main tensor of an output (logits, or the last hidden state of a base model)."""
    return next(iter(output_tensors(output).values()))


# ------------------------------------------------------------------------------------------------------------------
# extracted == supernet, for every rule and depth
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_extracted_equals_supernet_for_every_rule_and_depth(name, rule):
    model, inputs = build(name, rule)
    space = model.search_space
    for depth in DEPTHS:
        for kind, subnet in subnets(space, depth).items():
            assert subnet.layers == space.layers_for(depth) and subnet in space
            static = extract_subnet(model, subnet)
            assert is_vanilla_subnet(subnet, HEAD_SIZE) == (kind == "uniform")
            assert (type(static).__name__ == model.static_class_name) == (kind == "uniform"), (depth, kind)
            assert static.config.num_hidden_layers == depth and not static.training
            with torch.no_grad(), model.subnet(subnet):
                expected = model(**inputs)
            with torch.no_grad():
                actual = static(**inputs)
            assert_outputs_close(actual, expected, atol=1e-5)
    assert model.active_subnet == model.max_subnet()


# ------------------------------------------------------------------------------------------------------------------
# the kept layers are the ones run
@pytest.mark.parametrize("rule", ["spread", "importance"])
@pytest.mark.parametrize("name", ["BertForSequenceClassification", "vit", "beit-relative-mean", "beit-both-biases"])
def test_extracted_layer_i_has_the_weights_of_supernet_layer_layers_i(name, rule):
    model, _ = build(name, rule)
    space = model.search_space
    prefixes = layer_prefixes(model)
    full = model.state_dict()
    for depth in (2, 3):
        full_width = space.subnet(depth, 4, 64, 32)  # nothing sliced: whole layers are copied
        for subnet in (full_width, *subnets(space, depth).values()):
            assert subnet.layers != tuple(range(depth)), "the test is about non-prefix subsets"
            state = extract_subnet(model, subnet).state_dict()
            assert not any(key.startswith(tuple(prefixes[depth:])) for key in state), "only k layers, renumbered"
            for i, j in enumerate(subnet.layers):
                kept = {k.removeprefix(prefixes[i]): v for k, v in state.items() if k.startswith(prefixes[i])}
                source = {k.removeprefix(prefixes[j]): v for k, v in full.items() if k.startswith(prefixes[j])}
                assert kept and kept.keys() == source.keys(), (i, j)
                for key, value in kept.items():
                    # The active heads, neurons and channels are a prefix of each dimension.
                    expected = source[key][tuple(slice(0, n) for n in value.shape)]
                    assert torch.equal(value, expected), f"extracted layer {i}.{key} != supernet layer {j}.{key}"
                    if subnet == full_width:
                        assert value.shape == source[key].shape


@pytest.mark.parametrize("name", ["BertForSequenceClassification", "vit", "beit-both-biases"])
def test_only_the_kept_layers_change_the_output(name):
    model, inputs = build(name, "spread")
    subnet = model.search_space.subnet(2, (4, 2), (64, 32), 32)
    assert subnet.layers == (1, 3)
    layers = model.elastic_layers()
    generator = torch.Generator().manual_seed(0)

    def perturb(layer: torch.nn.Module) -> None:
        for param in layer.parameters():
            param.add_(torch.randn(param.shape, generator=generator))

    with torch.no_grad(), model.subnet(subnet):
        before = first_output(model(**inputs))
        perturb(layers[0])
        perturb(layers[2])  # dropped layers: nothing changes
        torch.testing.assert_close(first_output(model(**inputs)), before, atol=0, rtol=0)
        perturb(layers[3])  # a kept layer: the output changes
        assert not torch.allclose(first_output(model(**inputs)), before)


# ------------------------------------------------------------------------------------------------------------------
# a non-prefix subnet is an ordinary checkpoint
def reload_without_hf_nas(folder, manifest: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run tests/test_extraction.py's RELOAD_SCRIPT in a fresh process where `import hf_nas` fails; return its
    results for the folders of `manifest` (each with `<folder>.reference.pt` beside it)."""
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "reload.py").write_text(RELOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HOME=str(folder / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        [sys.executable, "reload.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS"))
    results = json.loads(line.removeprefix("RESULTS"))
    assert results.pop("hf_nas_imported") is False
    assert results.keys() == manifest.keys()
    return results


def test_non_prefix_subnets_reload_in_a_fresh_process_without_hf_nas(tmp_path):
    saved = {  # name -> (vanilla class, Auto class)
        "BertForSequenceClassification": (BertForSequenceClassification, AutoModelForSequenceClassification),
        "vit": (ViTForImageClassification, AutoModelForImageClassification),
        "beit-both-biases": (BeitForImageClassification, AutoModelForImageClassification),
    }
    manifest, expected_classes = {}, {}
    for name, (vanilla_class, auto_class) in saved.items():
        model, inputs = build(name, "spread")
        for kind, subnet in subnets(model.search_space, 2).items():
            assert subnet.layers == (1, 3)  # depth 2 of 4, spread: not the first layers
            static = extract_subnet(model, subnet)
            if kind == "uniform":
                assert type(static) is vanilla_class
            else:
                assert not is_vanilla_subnet(subnet, HEAD_SIZE) and isinstance(static, vanilla_class)
            folder = f"{name}-{kind}"
            static.save_pretrained(tmp_path / folder)
            config = json.loads((tmp_path / folder / "config.json").read_text())
            assert config["num_hidden_layers"] == 2 and ("auto_map" in config) == (kind != "uniform")
            with torch.no_grad(), model.subnet(subnet):
                outputs = output_tensors(model(**inputs))
            torch.save({"inputs": inputs, "outputs": outputs}, tmp_path / f"{folder}.reference.pt")
            manifest[folder] = {"auto_class": auto_class.__name__, "remote_code": kind != "uniform"}
            expected_classes[folder] = type(static)
    results = reload_without_hf_nas(tmp_path, manifest)
    for folder, result in results.items():
        expected = expected_classes[folder]
        assert result["missing"] == [] and result["unexpected"] == [], (folder, result)
        assert max(result["max_diff"].values()) <= 1e-5, (folder, result["max_diff"])
        assert result["class"] == expected.__name__, folder
        if manifest[folder]["remote_code"]:
            assert result["module"].startswith("transformers_modules."), result["module"]
        else:
            assert result["module"] == expected.__module__, result["module"]


# ------------------------------------------------------------------------------------------------------------------
# costs
@pytest.mark.parametrize(
    "name", ["BertForSequenceClassification", "BertForMaskedLM", "vit", "beit-relative-mean", "beit-both-biases"]
)
def test_costs_of_non_prefix_subnets_are_exact(name):
    size = {"sequence_length": 16} if name in BERT_MODELS else {"image_size": 48}
    for rule in ("spread", "importance"):
        model, _ = build(name, rule)
        for depth in (2, 3):
            for subnet in subnets(model.search_space, depth).values():
                assert subnet.layers != tuple(range(depth))
                static = extract_subnet(model, subnet)
                assert count_parameters(model, subnet) == sum(p.numel() for p in static.parameters()), subnet
                macs = count_macs(model, subnet, **size)
                assert macs == count_macs(static, **size) == count_macs_measured(model, subnet, **size), subnet


# ------------------------------------------------------------------------------------------------------------------
# JSON written before layer subsets, and saved supernets
OLD_SUBNET = {"num_hidden_layers": 2, "num_attention_heads": [4, 2], "intermediate_size": [64, 32], "hidden_size": 32}
OLD_SPACE = {
    "num_hidden_layers": [2, 3],
    "num_attention_heads": [2, 4],
    "intermediate_size": [32, 64],
    "hidden_size": [16, 32],
    "attention_head_size": 8,
}


def test_old_subnet_json_keeps_the_first_layers(tmp_path):
    subnet = SubnetConfig.from_dict(OLD_SUBNET)
    assert subnet.layers == (0, 1)
    assert subnet == SubnetConfig(2, (4, 2), (64, 32), 32, layers=(0, 1))
    (tmp_path / "subnet.json").write_text(json.dumps(OLD_SUBNET))
    assert SubnetConfig.load(tmp_path / "subnet.json") == subnet
    assert subnet.to_dict() == {**OLD_SUBNET, "layers": [0, 1]}  # saved again, it says so explicitly
    # It runs on a first-layers supernet, and is not what a spread space holds for depth 2.
    model, inputs = build("BertForSequenceClassification", "first")
    model.set_subnet(subnet)
    spread = space_with_rule(model.search_space, "spread")
    with pytest.raises(ValueError, match=r"`layers`=\[0, 1\] .*layer_rule='spread' .*keeps layers \[1, 3\]"):
        spread.validate(subnet)


def test_old_search_space_dict_loads_with_rule_first(tmp_path):
    space = SearchSpace.from_dict(OLD_SPACE)
    assert (space.layer_rule, space.layer_order, space.num_supernet_layers) == ("first", None, 3)
    assert [space.layers_for(d) for d in (2, 3)] == [(0, 1), (0, 1, 2)]
    (tmp_path / "space.json").write_text(json.dumps(OLD_SPACE))
    assert SearchSpace.load(tmp_path / "space.json") == space
    assert SearchSpace.from_dict(space.to_dict()) == space
    # A supernet saved before layer subsets existed: its config.json has the old search space. The space is the first
    # layers of this supernet (4 layers, even though the largest depth choice is 3).
    model, inputs = build("BertForSequenceClassification", "first")
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    (tmp_path / "old" / "config.json").write_text(json.dumps({**config, "search_space": OLD_SPACE}))
    reloaded = type(model).from_pretrained(tmp_path / "old").eval()
    assert reloaded.search_space == dataclasses.replace(space, num_supernet_layers=NUM_LAYERS)
    subnet = SubnetConfig.from_dict(OLD_SUBNET)
    with torch.no_grad(), model.subnet(subnet), reloaded.subnet(subnet):
        assert_outputs_close(reloaded(**inputs), model(**inputs), atol=0)
    # So switching to another rule spreads over all 4 layers (keeping the last), not over the 3 of the largest depth.
    reloaded.search_space = dataclasses.replace(reloaded.search_space, layer_rule="spread")
    assert reloaded.search_space.layers_for(2) == (1, 3)


@pytest.mark.parametrize("rule", ["spread", "importance"])
@pytest.mark.parametrize("name", ["BertForSequenceClassification", "beit-both-biases"])
def test_supernet_saved_with_a_layer_rule_reloads_with_it(tmp_path, name, rule):
    model, inputs = build(name, rule)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["search_space"]
    assert saved["layer_rule"] == rule and saved["num_supernet_layers"] == NUM_LAYERS
    assert saved["layer_order"] == (list(LAYER_ORDER) if rule == "importance" else None)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    assert reloaded.search_space == model.search_space
    for depth in (2, 3):
        subnet = subnets(model.search_space, depth)["heterogeneous"]
        with torch.no_grad(), model.subnet(subnet), reloaded.subnet(subnet):
            assert_outputs_close(reloaded(**inputs), model(**inputs), atol=0)


# ------------------------------------------------------------------------------------------------------------------
# every rule gives subsets inside the space
def spaces_of_depth(num_layers: int) -> list[SearchSpace]:
    """Spaces over a `num_layers`-layer supernet: the default depths (half to all) and every depth, under each rule
    (importance with the reversed order and a shuffled one)."""
    default = SearchSpace.from_model_config(tiny_bert_config(num_hidden_layers=num_layers))
    shuffled = list(range(num_layers))
    random.Random(num_layers).shuffle(shuffled)
    rules = [("first", None), ("spread", None), ("importance", tuple(reversed(range(num_layers))))]
    rules.append(("importance", tuple(shuffled)))
    return [
        dataclasses.replace(default, num_hidden_layers=depths, layer_rule=rule, layer_order=order)
        for depths in (default.num_hidden_layers, tuple(range(1, num_layers + 1)))
        for rule, order in rules
    ]


@pytest.mark.parametrize("num_layers", range(1, 13))
def test_every_rule_keeps_increasing_layers_inside_the_supernet(num_layers):
    L = num_layers
    for space in spaces_of_depth(L):
        assert space.num_supernet_layers == L
        for k in range(1, L + 1):
            layers = space.layers_for(k)
            assert len(layers) == k and all(a < b for a, b in zip(layers, layers[1:], strict=False)), layers
            assert 0 <= layers[0] and layers[-1] <= L - 1, layers
            if space.layer_rule == "first":
                assert layers == tuple(range(k))
            elif space.layer_rule == "spread":
                assert layers[-1] == L - 1, "spread always keeps the last layer"
                gaps = [b - a for a, b in zip((-1, *layers), layers, strict=False)]
                assert set(gaps) <= {L // k, -(-L // k)}, f"evenly spaced: {layers}"
            else:
                assert set(layers) == set(space.layer_order[:k]), "the k most important layers"
        assert space.layers_for(L) == tuple(range(L))
        points = [space.largest(), space.smallest(), space.middle()]
        points += [space.sample(seed=seed) for seed in range(20)]
        uniform = [space.sample(seed=seed, uniform=True) for seed in range(20)]
        assert all(s.is_uniform for s in uniform)
        for subnet in points + uniform:
            space.validate(subnet)
            assert subnet.layers == space.layers_for(subnet.num_hidden_layers)


# ------------------------------------------------------------------------------------------------------------------
# bad input
@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        ((3, 1), ValueError, r"`layers` must be strictly increasing .*got \[3, 1\]"),
        ((1, 1), ValueError, r"`layers` must be strictly increasing .*got \[1, 1\]"),
        ((0, 1, 2), ValueError, r"`layers` has 3 entries but `num_hidden_layers` is 2: give exactly one"),
        ((0,), ValueError, r"`layers` has 1 entries but `num_hidden_layers` is 2"),
        ((-1, 2), ValueError, r"`layers` must hold 0-based layer indices \(>= 0\), got \[-1, 2\]"),
        ((0, 1.0), TypeError, r"`layers\[1\]` must be an int, got 1.0"),
        ((0, True), TypeError, r"`layers\[1\]` must be an int"),
        ("01", TypeError, r"`layers` must be a sequence of layer indices"),
    ],
)
def test_bad_layers_are_rejected_when_the_subnet_is_built(layers, error, match):
    with pytest.raises(error, match=match):
        SubnetConfig(2, (4, 4), (64, 64), 32, layers=layers)
    if not isinstance(layers, str):
        with pytest.raises(error, match=match):
            SubnetConfig.from_dict({**OLD_SUBNET, "layers": list(layers)})


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ((1, 4), r"`layers`=\[1, 4\] is not in the search space: with layer_rule='spread' .*keeps layers \[1, 3\]"),
        ((0, 1), r"`layers`=\[0, 1\] is not in the search space: with layer_rule='spread' .*keeps layers \[1, 3\]"),
        ((2, 7), r"`layers`=\[2, 7\] is not in the search space: with layer_rule='spread' .*keeps layers \[1, 3\]"),
    ],
)
def test_layers_the_space_does_not_hold_are_rejected_before_anything_runs(layers, match):
    model, inputs = build("BertForSequenceClassification", "spread")
    active = model.search_space.subnet(3, (4, 2, 1), (64, 32, 16), 32)
    model.set_subnet(active)
    with torch.no_grad():
        before = model(**inputs).logits
    subnet = SubnetConfig(2, (4, 4), (64, 64), 32, layers=layers)  # layer 4 or 7: outside the 4-layer supernet
    with pytest.raises(ValueError, match=match):
        model.set_subnet(subnet)
    with pytest.raises(ValueError, match=match), model.subnet(subnet):
        pass
    for check in (extract_subnet, count_parameters, count_macs):
        with pytest.raises(ValueError, match=match):
            check(model, subnet)
    assert model.active_subnet == active
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, before, atol=0, rtol=0)


SPACE_FIELDS = {
    "num_hidden_layers": (2, 4),
    "num_attention_heads": (4,),
    "intermediate_size": (64,),
    "hidden_size": (32,),
    "attention_head_size": 8,
}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"layer_rule": "last"},
            ValueError,
            r"Unknown `layer_rule` 'last'; allowed: \['first', 'spread', 'importance'\]",
        ),
        ({"layer_rule": "importance"}, ValueError, r"layer_rule='importance' needs `layer_order` .*rank_layers"),
        (
            {"layer_rule": "importance", "layer_order": (0, 1, 1, 3)},
            ValueError,
            r"`layer_order` must be a permutation of the supernet's layers 0\.\.3, got \[0, 1, 1, 3\]",
        ),
        (
            {"layer_rule": "importance", "layer_order": (2, 1, 0)},
            ValueError,
            r"`layer_order` must be a permutation of the supernet's layers 0\.\.3, got \[2, 1, 0\]",
        ),
        (
            {"layer_rule": "importance", "layer_order": (0, 1, 2, 4)},
            ValueError,
            r"`layer_order` must be a permutation of the supernet's layers 0\.\.3",
        ),
        ({"layer_rule": "importance", "layer_order": "0123"}, TypeError, "`layer_order` must be a sequence"),
        ({"layer_rule": "importance", "layer_order": (0, 1, 2, 3.0)}, TypeError, r"`layer_order\[3\]` must be an int"),
        (
            {"layer_rule": "spread", "layer_order": (0, 1, 2, 3)},
            ValueError,
            r"`layer_order` is only for layer_rule='importance', got it with layer_rule='spread'",
        ),
        ({"layer_order": (0, 1, 2, 3)}, ValueError, r"`layer_order` is only for .*layer_rule='first'"),
        (
            {"num_supernet_layers": 3},
            ValueError,
            r"`num_supernet_layers`=3 is below the largest depth choice 4; allowed: >= 4",
        ),
    ],
)
def test_bad_layer_rules_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        SearchSpace(**SPACE_FIELDS, **kwargs)
    data = {**{k: list(v) if isinstance(v, tuple) else v for k, v in SPACE_FIELDS.items()}, **kwargs}
    with pytest.raises(error, match=match):
        SearchSpace.from_dict(data)


def test_a_supernet_rejects_a_space_over_other_layers():
    model, _ = build("BertForSequenceClassification", "spread")
    space = model.search_space
    with pytest.raises(ValueError, match=r"`depth`=5 is out of range; allowed: 1 to 4"):
        space.layers_for(5)
    with pytest.raises(ValueError, match=r"`depth`=0 is out of range; allowed: 1 to 4"):
        space.layers_for(0)
    too_many = dataclasses.replace(space, num_supernet_layers=5)
    with pytest.raises(ValueError, match=r"num_supernet_layers=5 exceeds the supernet's num_hidden_layers=4"):
        model.search_space = too_many
    # Spread over 3 of the 4 layers would never keep the last one.
    too_few = dataclasses.replace(space, num_hidden_layers=(2, 3), num_supernet_layers=3)
    with pytest.raises(ValueError, match=r"num_supernet_layers=3 differs from .*num_hidden_layers=4.*allowed: 4"):
        model.search_space = too_few
    assert model.search_space == space, "a rejected space leaves the old one"
    with pytest.raises(ValueError, match=r"Unknown `layer_rule` 'last'"):
        hf_nas.ElasticBertConfig(**tiny_bert_config().to_dict(), search_space={**OLD_SPACE, "layer_rule": "last"})


# ------------------------------------------------------------------------------------------------------------------
# hidden states
@pytest.mark.parametrize("rule", ["spread", "importance"])
@pytest.mark.parametrize("name", ["BertModel", "BertForSequenceClassification", "vit", "beit-both-biases"])
def test_hidden_states_are_the_embeddings_and_one_per_kept_layer(name, rule):
    model, inputs = build(name, rule)
    for depth in (2, 3):
        for subnet in subnets(model.search_space, depth).values():
            static = extract_subnet(model, subnet)
            with torch.no_grad(), model.subnet(subnet):
                actual = model(**inputs, output_hidden_states=True).hidden_states
            with torch.no_grad():
                expected = static(**inputs, output_hidden_states=True).hidden_states
            assert len(actual) == len(expected) == depth + 1
            for a, e in zip(actual, expected, strict=True):
                assert a.shape[-1] == subnet.hidden_size
                torch.testing.assert_close(a, e, atol=1e-5, rtol=0)
