"""Costs: analytic parameter and MAC counts equal the extracted subnet's real ones; latency is well formed."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import BeitConfig, BertConfig, ViTConfig
from transformers.models.beit.modeling_beit import BeitLayer
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.vit.modeling_vit import ViTLayer

from hf_nas import (
    ElasticBeitConfig,
    ElasticBeitForImageClassification,
    ElasticBertConfig,
    ElasticBertForMaskedLM,
    ElasticBertForQuestionAnswering,
    ElasticBertForSequenceClassification,
    ElasticBertForTokenClassification,
    ElasticBertModel,
    ElasticViTConfig,
    ElasticViTForImageClassification,
    SubnetConfig,
    count_macs,
    count_parameters,
    extract_subnet,
    measure_latency,
)
from hf_nas.costs import (
    DEFAULT_MAX_RELATIVE_IQR,
    DEFAULT_MAX_ROUNDS,
    DEFAULT_WARMUP_RUNS,
    LatencyResult,
    count_macs_measured,
    layer_linear_macs,
    layer_macs,
    layer_parameters,
    non_layer_macs,
    num_tokens,
    time_forward,
)

from .conftest import with_layer_rule

TINY = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 64}


def tiny_config(**overrides) -> ElasticBertConfig:
    # The hand-built subnets below keep the first layers; tests/test_layer_subsets.py covers the other rules.
    return with_layer_rule(ElasticBertConfig(**{**TINY, **overrides}), "first")


# name -> builder of a fresh supernet in eval mode; every BERT head, and the variants that change the counts.
MODELS = {
    "model": lambda: ElasticBertModel(tiny_config()),
    "model_no_pooler": lambda: ElasticBertModel(tiny_config(), add_pooling_layer=False),
    "sequence_classification": lambda: ElasticBertForSequenceClassification(tiny_config(num_labels=3)),
    "token_classification": lambda: ElasticBertForTokenClassification(tiny_config(num_labels=5)),
    "question_answering": lambda: ElasticBertForQuestionAnswering(tiny_config()),
    "masked_lm": lambda: ElasticBertForMaskedLM(tiny_config()),
    "masked_lm_untied": lambda: ElasticBertForMaskedLM(tiny_config(tie_word_embeddings=False)),
}


def build(name: str):
    return MODELS[name]().eval()


EXTRACTABLE = sorted(MODELS)


def subnets(model, num_sampled: int) -> list[SubnetConfig]:
    """Largest, smallest, hand-picked heterogeneous ones and `num_sampled` seeded samples of the search space."""
    space = model.search_space
    picked = [
        model.max_subnet(),
        space.smallest(),
        SubnetConfig(num_hidden_layers=2, num_attention_heads=(1, 4), intermediate_size=(64, 16), hidden_size=24),
        SubnetConfig(
            num_hidden_layers=3, num_attention_heads=(4, 2, 3), intermediate_size=(16, 48, 64), hidden_size=32
        ),
        # uniform with heads x head size == hidden size: extracted as a vanilla BERT class
        SubnetConfig.uniform(2, num_attention_heads=2, intermediate_size=32, hidden_size=16),
    ]
    return picked + [space.sample(seed=seed) for seed in range(num_sampled)]


def true_num_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # `parameters()` yields a tied tensor once


# ----------------------------------------------------------------------------------------------------------------
# parameters
@pytest.mark.parametrize("name", EXTRACTABLE)
def test_count_parameters_equals_extracted_model(name):
    model = build(name)
    for subnet in subnets(model, num_sampled=12):
        extracted = extract_subnet(model, subnet)
        assert count_parameters(model, subnet) == true_num_parameters(extracted), subnet
        assert count_parameters(extracted) == true_num_parameters(extracted)


def test_count_parameters_of_the_whole_supernet_is_its_size():
    for name in MODELS:
        model = build(name)
        assert count_parameters(model, model.max_subnet()) == true_num_parameters(model), name


def test_count_parameters_defaults_to_the_active_subnet():
    model = build("sequence_classification")
    subnet = model.search_space.smallest()
    with model.subnet(subnet):
        assert count_parameters(model) == count_parameters(model, subnet)
    assert count_parameters(model) == count_parameters(model, model.max_subnet())


def test_tied_decoder_is_counted_once():
    tied, untied = build("masked_lm"), build("masked_lm_untied")
    subnet = tied.search_space.smallest()
    vocab, hidden = TINY["vocab_size"], subnet.hidden_size
    assert count_parameters(untied, subnet) - count_parameters(tied, subnet) == vocab * hidden + vocab


def test_count_parameters_rejects_bad_arguments():
    model = build("sequence_classification")
    with pytest.raises(ValueError, match="hidden_size"):
        count_parameters(model, SubnetConfig.uniform(3, 4, 64, 8))  # 8 is not a hidden-size choice
    with pytest.raises(TypeError, match="SubnetConfig"):
        count_parameters(model, {"num_hidden_layers": 3})
    with pytest.raises(ValueError, match="subnet"):
        count_parameters(extract_subnet(model), model.search_space.smallest())
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters("bert-base-uncased")


# ----------------------------------------------------------------------------------------------------------------
# MACs
@pytest.mark.parametrize("name", EXTRACTABLE)
@pytest.mark.parametrize(("batch_size", "sequence_length"), [(1, 8), (3, 5)])
def test_count_macs_equals_flop_counter(name, batch_size, sequence_length):
    model = build(name)
    for subnet in subnets(model, num_sampled=2):
        analytic = count_macs(model, subnet, sequence_length=sequence_length, batch_size=batch_size)
        measured = count_macs_measured(model, subnet, sequence_length=sequence_length, batch_size=batch_size)
        assert analytic == measured, subnet


def test_count_macs_by_hand():
    # Sequence classification, heterogeneous subnet, B=2 sequences of T=4 tokens: N=8 tokens, head size 8.
    model = build("sequence_classification")
    subnet = SubnetConfig(num_hidden_layers=2, num_attention_heads=(1, 4), intermediate_size=(64, 16), hidden_size=24)
    B, T, N, h = 2, 4, 8, 24
    layer0 = N * (3 * h * 8 + 8 * h + 2 * h * 64) + 2 * B * T * T * 8
    layer1 = N * (3 * h * 32 + 32 * h + 2 * h * 16) + 2 * B * T * T * 32
    pooler_and_classifier = B * h * h + B * h * 3
    assert count_macs(model, subnet, sequence_length=T, batch_size=B) == layer0 + layer1 + pooler_and_classifier


def test_pooler_costs_one_dense_per_sequence():
    with_pooler, without = build("model"), build("model_no_pooler")
    h = TINY["hidden_size"]
    for subnet in subnets(with_pooler, num_sampled=4):
        hs = subnet.hidden_size
        assert count_parameters(with_pooler, subnet) - count_parameters(without, subnet) == hs * hs + hs
        for B, T in [(1, 8), (3, 5)]:
            assert count_macs(with_pooler, subnet, T, B) - count_macs(without, subnet, T, B) == B * hs * hs
    assert count_parameters(without, without.max_subnet()) == true_num_parameters(without)
    assert true_num_parameters(build("model")) - true_num_parameters(without) == h * h + h


def test_count_macs_of_extracted_and_vanilla_models_match_the_supernet():
    model = build("masked_lm")
    for subnet in subnets(model, num_sampled=4):
        extracted = extract_subnet(model, subnet)  # vanilla BertForMaskedLM or BertSubnetForMaskedLM
        assert count_macs(extracted, sequence_length=16) == count_macs(model, subnet, sequence_length=16)


def test_count_macs_measured_counts_attention_and_leaves_the_model_alone():
    model = build("question_answering")
    subnet = SubnetConfig.uniform(2, num_attention_heads=4, intermediate_size=64, hidden_size=32)
    short, long = (count_macs_measured(model, subnet, sequence_length=T) for T in (8, 16))
    # Linear layers grow linearly in T and attention quadratically, so `long - 2 * short` isolates attention: the
    # measured count must include the two attention matmuls, which CPU SDPA would hide from FlopCounterMode.
    layers, h, inner, ffn, labels = 2, 32, 32, 64, 2
    assert long - 2 * short == layers * 2 * (16**2 - 2 * 8**2) * inner
    per_token = layers * (4 * h * inner + 2 * h * ffn) + h * labels  # layers' linears + qa_outputs
    assert short == 8 * per_token + layers * 2 * 8**2 * inner
    assert model.config._attn_implementation == "sdpa"  # the eager switch happened on the extracted copy only
    assert model.active_subnet == model.max_subnet()


def test_count_macs_rejects_bad_arguments():
    model = build("model")
    with pytest.raises(ValueError, match="sequence_length"):
        count_macs(model, sequence_length=0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        count_macs(model, sequence_length=model.config.max_position_embeddings + 1)
    with pytest.raises(TypeError, match="batch_size"):
        count_macs(model, batch_size=2.0)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        count_macs(model, SubnetConfig.uniform(1, 4, 64, 32))  # depth choices are 2 and 3
    with pytest.raises(TypeError, match="BERT"):
        count_macs(torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------------------------------------------
# latency (never asserts a duration or a ratio: only that the result is well formed)
def assert_well_formed(result: LatencyResult, batch_size: int, sequence_length: int) -> None:
    assert isinstance(result, LatencyResult)
    assert math.isfinite(result.median_ms) and result.median_ms > 0
    assert math.isfinite(result.iqr_ms) and result.iqr_ms >= 0
    assert (result.device, result.batch_size, result.sequence_length) == ("cpu", batch_size, sequence_length)
    assert result.num_threads >= 1 and result.num_runs >= 1
    assert 1 <= result.rounds <= DEFAULT_MAX_ROUNDS and isinstance(result.noisy, bool)  # on a busy machine: noisy
    assert (result.warmup_runs, result.max_relative_iqr) == (DEFAULT_WARMUP_RUNS, DEFAULT_MAX_RELATIVE_IQR)
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(LatencyResult)}
    assert fields.pop("image_size") is None  # text models: no image size, and none in the dict
    assert result.to_dict() == {**fields, "unit": "ms"}
    assert LatencyResult.from_dict(result.to_dict()) == result


def test_measure_latency_times_the_extracted_subnet():
    model = build("sequence_classification").train()
    subnet = model.search_space.smallest()
    result = measure_latency(model, subnet, batch_size=2, sequence_length=8, num_threads=1, min_run_time=0.05)
    assert_well_formed(result, batch_size=2, sequence_length=8)
    assert result.num_threads == 1
    assert model.training and model.active_subnet == model.max_subnet()  # the supernet is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.median_ms = 0.0


def test_time_forward_times_any_model_and_restores_its_mode():
    model = build("masked_lm")
    extracted = extract_subnet(model, model.search_space.smallest()).train()
    for module in (model, extracted):
        result = time_forward(module, batch_size=1, sequence_length=4, min_run_time=0.05)
        assert_well_formed(result, batch_size=1, sequence_length=4)
        assert result.num_threads == torch.get_num_threads()
    assert extracted.training and not model.training


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"sequence_length": -1}, ValueError, "sequence_length"),
        ({"sequence_length": 1000}, ValueError, "max_position_embeddings"),
        ({"device": "not-a-device"}, ValueError, "device"),
        ({"device": 0}, TypeError, "device"),
        ({"num_threads": 0}, ValueError, "num_threads"),
        ({"min_run_time": 0}, ValueError, "min_run_time"),
        ({"min_run_time": "1s"}, TypeError, "min_run_time"),
        ({"warmup_runs": -1}, ValueError, "warmup_runs"),
        ({"warmup_runs": 1.5}, TypeError, "warmup_runs"),
        ({"max_relative_iqr": 0}, ValueError, "max_relative_iqr"),
        ({"max_relative_iqr": math.nan}, ValueError, "max_relative_iqr"),
        ({"max_relative_iqr": "25%"}, TypeError, "max_relative_iqr"),
        ({"max_rounds": 0}, ValueError, "max_rounds"),
        ({"on_noisy": "ignore"}, ValueError, r"on_noisy.*'ignore'.*\['flag', 'raise'\]"),
    ],
)
def test_latency_rejects_bad_arguments(kwargs, error, match):
    model = build("model")
    with pytest.raises(error, match=match):
        measure_latency(model, **kwargs)
    with pytest.raises(error, match=match):
        time_forward(model, **{"batch_size": 1, "sequence_length": 8, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_latency_rejects_cuda_without_cuda():
    with pytest.raises(ValueError, match="cuda"):
        time_forward(build("model"), batch_size=1, sequence_length=8, device="cuda")


def test_measure_latency_needs_a_supernet():
    model = build("model")
    with pytest.raises(TypeError, match="time_forward"):
        measure_latency(extract_subnet(model), min_run_time=0.05)


# ----------------------------------------------------------------------------------------------------------------
# the cost model: per layer, on plain numbers and on tensors
def tiny_vision_supernet(family: str):
    kwargs = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    if family == "vit":
        return ElasticViTForImageClassification(ElasticViTConfig(**kwargs, num_labels=3)).eval()
    config = ElasticBeitConfig(**kwargs, num_labels=3, use_relative_position_bias=True, layer_scale_init_value=0.5)
    return ElasticBeitForImageClassification(config).eval()


VISION = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8)
LAYERS = {  # name -> (vanilla config, its transformers layer class)
    "bert": lambda: (BertConfig(**TINY), BertLayer),
    "vit": lambda: (ViTConfig(**VISION), ViTLayer),
    "vit_no_qkv_bias": lambda: (ViTConfig(**VISION, qkv_bias=False), ViTLayer),
    "beit": lambda: (BeitConfig(**VISION, use_relative_position_bias=True, layer_scale_init_value=0.1), BeitLayer),
    "beit_plain": lambda: (BeitConfig(**VISION, layer_scale_init_value=0.0), BeitLayer),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_parameters_equal_a_transformers_layer(name):
    config, layer_class = LAYERS[name]()
    expected = sum(p.numel() for p in layer_class(config).parameters())
    assert layer_parameters(config, 32, 4, 64, attention_head_size=8) == expected


@pytest.mark.parametrize("name", EXTRACTABLE)
def test_count_macs_is_layer_macs_plus_non_layer_macs(name):
    model = build(name)
    for subnet in subnets(model, num_sampled=2):
        layers = sum(
            layer_macs(subnet.hidden_size, heads, ffn, attention_head_size=8, tokens=16, batch_size=3)
            for heads, ffn in zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)
        )
        rest = non_layer_macs(model, subnet.hidden_size, sequence_length=16, batch_size=3)
        assert layers + rest == count_macs(model, subnet, sequence_length=16, batch_size=3), subnet


@pytest.mark.parametrize("family", ["vit", "beit"])
def test_vision_costs_are_the_cost_model_at_the_image_tokens(family):
    model = tiny_vision_supernet(family)
    space = model.search_space
    for image_size, tokens in ((None, 17), (16, 5), ((16, 32), 9)):
        assert num_tokens(model.config, image_size=image_size) == tokens  # patches + CLS
        for subnet in (space.smallest(), space.largest(), space.sample(seed=0)):
            layers = sum(
                layer_macs(subnet.hidden_size, heads, ffn, attention_head_size=8, tokens=tokens, batch_size=2)
                for heads, ffn in zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)
            )
            rest = non_layer_macs(model, subnet.hidden_size, image_size=image_size, batch_size=2)
            assert layers + rest == count_macs(model, subnet, image_size=image_size, batch_size=2)


def test_layer_costs_take_tensors_and_give_exact_expectations():
    """MACs and parameters are linear in each size, so with independent choices the cost of the expected sizes is
    the expected cost: what gradient-based search relies on."""
    config = BertConfig(**TINY)
    choices = {"hidden_size": (16, 32), "num_attention_heads": (1, 4), "intermediate_size": (32, 64)}
    probabilities = {"hidden_size": (0.25, 0.75), "num_attention_heads": (0.6, 0.4), "intermediate_size": (0.5, 0.5)}
    mean = {
        k: torch.tensor(probabilities[k], dtype=torch.float64) @ torch.tensor(v, dtype=torch.float64)
        for k, v in choices.items()
    }
    macs = dict(attention_head_size=8, tokens=10, batch_size=2)
    for cost in (
        lambda h, a, f: layer_macs(h, a, f, **macs),
        lambda h, a, f: layer_parameters(config, h, a, f, attention_head_size=8),
    ):
        expectation = sum(
            ph * pa * pf * cost(h, a, f)
            for h, ph in zip(choices["hidden_size"], probabilities["hidden_size"], strict=True)
            for a, pa in zip(choices["num_attention_heads"], probabilities["num_attention_heads"], strict=True)
            for f, pf in zip(choices["intermediate_size"], probabilities["intermediate_size"], strict=True)
        )
        value = cost(mean["hidden_size"], mean["num_attention_heads"], mean["intermediate_size"])
        assert isinstance(value, torch.Tensor)
        assert value.item() == pytest.approx(expectation, rel=1e-12)
    hidden = torch.tensor([16.0, 32.0], requires_grad=True)  # (2,) elementwise over a batch of sizes
    per_layer = layer_macs(hidden, torch.tensor([1.0, 4.0]), torch.tensor([32.0, 64.0]), **macs)
    assert per_layer.tolist() == [layer_macs(16, 1, 32, **macs), layer_macs(32, 4, 64, **macs)]
    per_layer.sum().backward()
    assert hidden.grad.abs().min() > 0


def test_cost_model_rejects_bad_arguments():
    with pytest.raises(TypeError, match="`hidden_size` must be a number or a tensor, got True"):
        layer_macs(True, 4, 64, attention_head_size=8, tokens=16)
    with pytest.raises(ValueError, match="`num_attention_heads` must be >= 0, got -1"):
        layer_linear_macs(32, -1, 64, attention_head_size=8)
    with pytest.raises(ValueError, match="`tokens` must be a positive int"):
        layer_macs(32, 4, 64, attention_head_size=8, tokens=0)
    with pytest.raises(TypeError, match="`intermediate_size` must be a number or a tensor"):
        layer_parameters(BertConfig(**TINY), 32, 4, "64", attention_head_size=8)
    with pytest.raises(ValueError, match="`hidden_size` must be a positive int"):
        non_layer_macs(build("model"), 0)
    with pytest.raises(ValueError, match="`sequence_length` is for text models"):
        num_tokens(tiny_vision_supernet("vit").config, sequence_length=16)
    with pytest.raises(ValueError, match="`image_size` is for image models"):
        num_tokens(tiny_config(), image_size=32)
    assert num_tokens(tiny_config()) == 128
