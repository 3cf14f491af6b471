"""NUPES and uniform quantization: exponent 1 is uniform quantization, the codes fit in the stated bits, the dequantized
checkpoint reloads in plain transformers and matches the simulated model, block reconstruction lowers the block error,
and pruned weights stay zero."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

from hf_nas.compression import (
    QUANTIZATION_METHODS,
    NupesConfig,
    QuantizationReport,
    check_bits,
    code_range,
    dequantize,
    get_quantization_method,
    magnitude_prune,
    nearest_codes,
    nupes_quantize,
    prunable_weights,
    search_exponents,
    simulate_quantization,
    uniform_quantize,
)
from hf_nas.compression import quantization as quantization_module

from .conftest import make_supernet, make_vanilla, random_batch
from .test_compression import MODELS, PER_LAYER, clone_state, vision_supernet
from .test_compression_jackpot import collate, tiny_data


def test_dequantize_with_exponent_1_is_the_uniform_grid():
    codes = torch.arange(-7, 8, dtype=torch.int8).view(3, 5)
    scales = torch.tensor([[1.0], [0.5], [2.0]])
    assert torch.allclose(dequantize(codes, scales, torch.ones(1, 1), 4), scales * codes.float() / 7, atol=1e-7)
    assert torch.equal(
        dequantize(torch.zeros(2, 2, dtype=torch.int8), torch.ones(2, 1), torch.full((1, 1), 0.3), 4),
        torch.zeros(2, 2),
    )


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_nupes_with_exponent_1_equals_uniform_quantization(monkeypatch, bits):
    uniform_model, nupes_model = (
        make_vanilla("BertForSequenceClassification"),
        make_vanilla("BertForSequenceClassification"),
    )
    uniform = uniform_quantize(uniform_model, bits)
    monkeypatch.setattr(quantization_module, "EXPONENT_GRID", (1.0,))  # the exponent search can only pick 1
    nupes = nupes_quantize(nupes_model, bits, config=NupesConfig(data_free=True))
    level = code_range(bits)
    weights = prunable_weights(make_vanilla("BertForSequenceClassification"))
    for name, q in nupes.weights.items():
        assert torch.all(q.exponents == 1.0)
        w = weights[name].detach()
        rtn = torch.round(w / w.abs().amax(1, keepdim=True) * level)  # round-to-nearest, written out
        assert torch.equal(q.codes.float(), rtn) and torch.equal(uniform.weights[name].codes, q.codes), name
        torch.testing.assert_close(nupes_model.state_dict()[name], uniform_model.state_dict()[name], atol=1e-7, rtol=0)
        torch.testing.assert_close(
            uniform_model.state_dict()[name], w.abs().amax(1, keepdim=True) * rtn / level, atol=1e-7, rtol=0
        )


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("method", ["nupes", "uniform"])
def test_codes_fit_in_the_stated_bits(bits, method):
    model = make_vanilla("BertForSequenceClassification")
    config = {"config": NupesConfig(data_free=True)} if method == "nupes" else {}
    report = get_quantization_method(method)(model, bits, **config)
    level = 2 ** (bits - 1) - 1
    for name, q in report.weights.items():
        assert q.codes.dtype == torch.int8 and q.codes.shape == prunable_weights(model)[name].shape
        assert int(q.codes.abs().max()) <= level  # signed bits-bit codes
        assert len(torch.unique(q.codes)) <= 2**bits - 1
        assert torch.all(q.exponents > 0) and q.scales.shape == (q.codes.shape[0], 1)
        assert torch.equal(prunable_weights(model)[name].detach(), q.dequantize()), name  # the weights are the codes'
    if method == "nupes" and bits <= 4:  # a non-uniform grid is chosen where it fits the weights better
        assert any(float(q.exponents.min()) < 1.0 for q in report.weights.values())


def test_the_data_free_exponent_fits_the_weights_better_than_uniform():
    model = make_vanilla("BertForSequenceClassification")
    # a bell-shaped weight: most values near 0, a few large ones
    weight = prunable_weights(model)["bert.encoder.layer.0.intermediate.dense.weight"]
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) ** 3)
    nupes = nupes_quantize(copy.deepcopy(model), 3, config=NupesConfig(data_free=True))
    uniform = uniform_quantize(copy.deepcopy(model), 3)
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    assert nupes.errors[name] < 0.7 * uniform.errors[name]
    assert float(nupes.weights[name].exponents.median()) < 1.0  # denser near zero, where most weights are
    exponents = search_exponents(weight.detach(), 3, "layer")
    assert exponents.shape == (1, 1)


def test_nearest_codes_pick_the_nearest_grid_point_in_weight_space():
    torch.manual_seed(0)
    weight, scales, exponents = torch.randn(5, 40), torch.full((5, 1), 3.0), torch.full((5, 1), 0.6)
    codes = nearest_codes(weight, scales, exponents, 3)
    grid = dequantize(torch.arange(-3, 4).view(1, -1), torch.ones(1, 1) * 3.0, torch.full((1, 1), 0.6), 3)  # (1, 7)
    best = (weight.unsqueeze(-1) - grid.view(1, 1, -1)).abs().argmin(-1) - 3  # (5, 40) exhaustive search
    assert torch.equal(codes.long(), best)


@pytest.mark.parametrize("name", ["vanilla-bert", "per-layer-vit"])
@pytest.mark.parametrize("method", ["nupes", "uniform"])
def test_the_dequantized_checkpoint_reloads_in_plain_transformers_and_matches_the_simulated_model(
    tmp_path, name, method
):
    model = MODELS[name]().eval()
    kwargs = {"config": NupesConfig(data_free=True)} if method == "nupes" else {}
    report = get_quantization_method(method)(model, 4, **kwargs)
    model.save_pretrained(tmp_path)
    assert report.save(tmp_path) == "quantization.safetensors"
    remote = name == "per-layer-vit"
    auto = AutoModelForImageClassification if remote else AutoModelForSequenceClassification
    reloaded = auto.from_pretrained(tmp_path, trust_remote_code=remote).eval()
    if not remote:
        assert type(reloaded).__module__.startswith("transformers.")  # plain transformers
    inputs = (
        {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}
        if remote
        else random_batch()
    )
    fresh = MODELS[name]().eval()  # the float model: the codes alone make it the quantized one
    codes = QuantizationReport.load(tmp_path)
    assert (codes.method, codes.bits) == (method, 4) and list(codes.weights) == list(report.weights)
    with torch.no_grad(), simulate_quantization(fresh, codes):
        simulated = fresh(**inputs).logits
        changed = fresh(**inputs).logits
    with torch.no_grad():
        float_logits = fresh(**inputs).logits
        actual = reloaded(**inputs).logits
    torch.testing.assert_close(actual, simulated, atol=1e-6, rtol=0)
    torch.testing.assert_close(changed, simulated, atol=0, rtol=0)
    assert (float_logits - simulated).abs().max() > 1e-5  # the quantization did change the outputs (beyond 1e-6)


def test_block_reconstruction_lowers_each_block_error_and_keeps_the_zeros():
    model = make_vanilla("BertForSequenceClassification")
    magnitude_prune(model, 0.5)
    zeros = {n: w == 0 for n, w in prunable_weights(model).items()}
    before = clone_state(model)
    free = nupes_quantize(copy.deepcopy(model), 3, config=NupesConfig(data_free=True))
    config = NupesConfig(calibration_samples=16, batch_size=8, steps=40)
    report = nupes_quantize(model, 3, config=config, calibration_dataset=tiny_data(), data_collator=collate)
    errors = report.settings["block_errors"]
    assert [e["layer"] for e in errors] == [0, 1, 2]
    assert all(e["mse_after"] < e["mse_before"] for e in errors), errors
    assert report.data_free is False and report.method == "nupes"
    for name, weight in prunable_weights(model).items():
        assert torch.all(weight[zeros[name]] == 0), name  # pruned weights stay zero
        assert torch.equal(weight.detach(), report.weights[name].dequantize())
        assert int(report.weights[name].codes.abs().max()) <= 3
    learned = sum(int((report.weights[n].codes != free.weights[n].codes).sum()) for n in report.weights)
    assert learned > 0  # codes moved away from the data-free ones
    for name, tensor in before.items():  # everything else untouched
        if name not in zeros:
            assert torch.equal(model.state_dict()[name], tensor), name
    assert not any(p.requires_grad is False for p in model.parameters())


def kd_loss_of(model, data) -> float:
    """The mean distillation loss of `model` on `data` against the float logits stored in `data.float_logits`."""
    batches = [collate([data[i] for i in range(j, j + 8)]) for j in range(0, 16, 8)]
    total = 0.0
    with torch.no_grad():
        for batch, target in zip(batches, data.float_logits, strict=True):
            batch.pop("labels")
            total += quantization_module._output_loss(model(**batch), target).item()
    return total / len(batches)


def test_end_to_end_distillation_lowers_the_output_loss_and_keeps_the_format():
    """After the block reconstruction, the end-to-end steps lower the calibration distillation loss; the codes still fit
    in the bits, pruned weights stay zero, the weights are the dequantized codes, and grads are restored."""
    model = make_vanilla("BertForSequenceClassification").eval()
    with torch.no_grad():
        model.classifier.weight.mul_(200.0)  # a random head gives near-uniform logits: make the classes distinct
    magnitude_prune(model, 0.5)
    zeros = {n: w == 0 for n, w in prunable_weights(model).items()}
    data = tiny_data(16)
    with torch.no_grad():
        data.float_logits = []
        for j in range(0, 16, 8):
            batch = collate([data[i] for i in range(j, j + 8)])
            batch.pop("labels")
            data.float_logits.append(model(**batch).logits.float())
    block = NupesConfig(calibration_samples=16, batch_size=8, steps=20)
    blockwise = copy.deepcopy(model)
    block_report = nupes_quantize(blockwise, 3, config=block, calibration_dataset=data, data_collator=collate)
    assert "end_to_end" not in block_report.settings  # off by default
    config = NupesConfig(
        calibration_samples=16, batch_size=8, steps=20, end_to_end_steps=40, end_to_end_learning_rate=1e-2
    )
    report = nupes_quantize(model, 3, config=config, calibration_dataset=data, data_collator=collate)
    e2e = report.settings["end_to_end"]
    assert e2e["kept"] and e2e["steps"] == 40 and e2e["loss_after"] < e2e["loss_before"], e2e
    assert kd_loss_of(model, data) < kd_loss_of(blockwise, data)
    moved = sum(int((report.weights[n].codes != block_report.weights[n].codes).sum()) for n in report.weights)
    assert moved > 0
    for name, weight in prunable_weights(model).items():
        assert torch.all(weight[zeros[name]] == 0), name
        assert torch.equal(weight.detach(), report.weights[name].dequantize())
        assert int(report.weights[name].codes.abs().max()) <= 3
    assert all(p.requires_grad for p in model.parameters()) and not model.training


def test_end_to_end_distillation_that_does_not_help_is_undone(monkeypatch):
    """A distillation whose loss does not go down leaves the block-reconstructed codes as they were."""
    model = make_vanilla("BertForSequenceClassification")
    blockwise = copy.deepcopy(model)
    data = tiny_data(16)
    block = NupesConfig(calibration_samples=16, batch_size=8, steps=5)
    expected = nupes_quantize(blockwise, 4, config=block, calibration_dataset=data, data_collator=collate)
    config = NupesConfig(calibration_samples=16, batch_size=8, steps=5, end_to_end_steps=3, end_to_end_learning_rate=0)
    report = nupes_quantize(model, 4, config=config, calibration_dataset=data, data_collator=collate)
    assert report.settings["end_to_end"]["kept"] is False
    for name, q in expected.weights.items():
        assert torch.equal(report.weights[name].codes, q.codes), name
        assert torch.equal(report.weights[name].exponents, q.exponents), name


def test_block_reconstruction_of_a_per_layer_vision_subnet():
    model = vision_supernet().extract_subnet(PER_LAYER)
    images = [{"pixel_values": torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(i))} for i in range(8)]

    def stack(rows):
        return {"pixel_values": torch.stack([r["pixel_values"] for r in rows])}

    config = NupesConfig(granularity="layer", calibration_samples=8, batch_size=4, steps=10)
    report = nupes_quantize(model, 4, config=config, calibration_dataset=images, data_collator=stack)
    assert len(report.settings["block_errors"]) == 2
    assert all(q.exponents.shape == (1, 1) for q in report.weights.values())


@pytest.mark.parametrize("bits", [1, 9, 16, 0, -3])
def test_bits_outside_the_supported_range_are_refused(bits):
    model = make_vanilla("BertForSequenceClassification")
    before = clone_state(model)
    for method in QUANTIZATION_METHODS:
        with pytest.raises(
            ValueError, match=rf"`bits` must be an int from 2 to 8 \(codes are stored as int8\), got {bits}\."
        ):
            get_quantization_method(method)(model, bits, config=NupesConfig(data_free=True))
    assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())
    with pytest.raises(TypeError, match=r"`bits` must be an int from 2 to 8, got 4\.0 of type float"):
        check_bits(4.0)


def test_a_supernet_and_missing_data_are_refused():
    for method in QUANTIZATION_METHODS:
        with pytest.raises(TypeError, match=r"is an elastic supernet .*quantization works on an extracted subnet"):
            get_quantization_method(method)(make_supernet("BertForSequenceClassification"), 4)
    with pytest.raises(ValueError, match=r"NUPES learns its exponents and codes on calibration data.*data_free=True"):
        nupes_quantize(make_vanilla("BertForSequenceClassification"), 4)
    with pytest.raises(ValueError, match=r"`granularity` 'tensor' is not allowed; allowed: \['channel', 'layer'\]"):
        NupesConfig(granularity="tensor")
    with pytest.raises(ValueError, match=r"`end_to_end_steps` must be an int >= 0 \(0: off\), got -1"):
        NupesConfig(end_to_end_steps=-1)
    with pytest.raises(ValueError, match=r"`end_to_end_steps` distils from the float model on calibration data"):
        NupesConfig(data_free=True, end_to_end_steps=10)
    with pytest.raises(ValueError, match=r"Unknown quantization method 'gptq'; allowed: \['nupes', 'uniform'\]"):
        get_quantization_method("gptq")
    assert math.isclose(code_range(3), 3)
