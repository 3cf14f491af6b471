"""ONNX deployment: the export of a vanilla and a per-layer subnet of BERT, ViT and BEiT gives PyTorch's outputs in ONNX
Runtime (1e-4) at other batch sizes and lengths than the export's; int8 dynamic quantization; the ONNX Runtime latency
and its search objective."""

from __future__ import annotations

import os

import pytest
import torch

import hf_nas.compression  # noqa: F401  (registers the onnx_latency objective)
from hf_nas import ElasticBeitConfig, ElasticBeitForImageClassification, LatencyResult
from hf_nas.compression import (
    OnnxRuntimeModel,
    check_onnx,
    example_inputs,
    export_onnx,
    measure_onnx_latency,
    onnx_input_names,
    quantize_onnx,
)
from hf_nas.search import OBJECTIVES, get_objective

from .conftest import make_supernet, random_batch
from .test_compression import PER_LAYER, VANILLA, vision_supernet

SUBNETS = {
    "bert-vanilla": lambda: make_supernet("BertForSequenceClassification").extract_subnet(VANILLA),
    "bert-per-layer": lambda: make_supernet("BertForSequenceClassification").extract_subnet(PER_LAYER),
    "bert-base-per-layer": lambda: make_supernet("BertModel").extract_subnet(PER_LAYER),
    "vit-vanilla": lambda: vision_supernet().extract_subnet(VANILLA),
    "vit-per-layer": lambda: vision_supernet().extract_subnet(PER_LAYER),
    "beit-vanilla": lambda: vision_supernet(ElasticBeitConfig, ElasticBeitForImageClassification).extract_subnet(
        VANILLA
    ),
    "beit-per-layer": lambda: vision_supernet(ElasticBeitConfig, ElasticBeitForImageClassification).extract_subnet(
        PER_LAYER
    ),
}
CLASSES = {
    "bert-vanilla": "BertForSequenceClassification",
    "bert-per-layer": "BertSubnetForSequenceClassification",
    "bert-base-per-layer": "BertSubnetModel",
    "vit-vanilla": "ViTForImageClassification",
    "vit-per-layer": "ViTSubnetForImageClassification",
    "beit-vanilla": "BeitForImageClassification",
    "beit-per-layer": "BeitSubnetForImageClassification",
}


@pytest.mark.parametrize("name", list(SUBNETS))
def test_onnx_export_matches_pytorch(tmp_path, name):
    model = SUBNETS[name]().eval()
    assert type(model).__name__ == CLASSES[name]
    exported = export_onnx(model, tmp_path / "model.onnx")
    assert os.path.isfile(exported.path) and exported.max_abs_diff <= 1e-4
    assert exported.input_names == onnx_input_names(model)
    expected_outputs = ["last_hidden_state", "pooler_output"] if name == "bert-base-per-layer" else ["logits"]
    assert exported.output_names == expected_outputs
    runtime = OnnxRuntimeModel(exported.path, model.config)
    for batch_size, length, seed in ((1, 5, 3), (4, 13, 4)):  # other shapes than the export's (2 x 16)
        if "bert" in name:
            inputs = random_batch(batch_size, length, seed=seed)  # padding in the later rows, random token types
        else:
            inputs = example_inputs(model, batch_size=batch_size, seed=seed)
        with torch.no_grad():
            expected = model(**inputs)
        actual = runtime(**inputs)
        for key in expected_outputs:
            torch.testing.assert_close(actual[key], expected[key], atol=1e-4, rtol=0)
    assert not any(f.startswith(".") for f in os.listdir(tmp_path))  # no temporary file left


@pytest.mark.slow  # the torch.export-based exporter takes seconds even for a tiny model
def test_the_dynamo_exporter_matches_pytorch_too(tmp_path):
    model = SUBNETS["bert-per-layer"]().eval()
    exported = export_onnx(model, tmp_path / "model.onnx", exporter="dynamo")
    assert exported.exporter == "dynamo" and exported.max_abs_diff <= 1e-4
    assert check_onnx(model, exported.path, random_batch(5, 7, seed=9)) <= 1e-4


def test_check_onnx_catches_a_graph_of_other_weights(tmp_path):
    model = SUBNETS["bert-vanilla"]().eval()
    path = export_onnx(model, tmp_path / "model.onnx").path
    with torch.no_grad():
        model.classifier.bias.add_(1e-3)  # a graph of the weights before
    with pytest.raises(ValueError, match=r"ONNX Runtime's outputs of .*model\.onnx differ from PyTorch's by up to"):
        check_onnx(model, path)


def test_int8_dynamic_quantization_runs_in_onnx_runtime(tmp_path):
    model = SUBNETS["bert-per-layer"]().eval()
    path = export_onnx(model, tmp_path / "model.onnx").path
    int8 = quantize_onnx(path, tmp_path / "model_quantized.onnx")
    import onnx

    ops = {node.op_type for node in onnx.load(int8).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops or "DynamicQuantizeMatMul" in ops, ops
    diff = check_onnx(model, int8, atol=float("inf"))
    assert 0 < diff < 0.5  # close, not equal


def test_onnx_runtime_latency_and_the_search_objective(tmp_path):
    model = SUBNETS["bert-vanilla"]().eval()
    path = export_onnx(model, tmp_path / "model.onnx").path
    result = measure_onnx_latency(
        path, model.config, batch_size=2, sequence_length=8, num_threads=1, min_run_time=0.05
    )
    assert isinstance(result, LatencyResult) and result.median_ms > 0
    assert (result.batch_size, result.sequence_length, result.num_threads, result.device) == (2, 8, 1, "cpu")

    assert "onnx_latency" in OBJECTIVES
    supernet = make_supernet("BertForSequenceClassification")
    objective = get_objective("onnx_latency", sequence_length=8, num_threads=1, min_run_time=0.05, quantize=True)
    before = {n: p.clone() for n, p in supernet.state_dict().items()}
    value = objective(supernet, supernet.search_space.smallest())
    assert value > 0 and objective.describe()["quantize"] is True and objective.describe()["runtime"] == "onnxruntime"
    assert all(torch.equal(supernet.state_dict()[n], t) for n, t in before.items())
    with pytest.raises(TypeError, match=r"`model` must be an elastic supernet"):
        objective(model, supernet.search_space.smallest())


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"is an elastic supernet .*ONNX export works on an extracted subnet"):
        export_onnx(make_supernet("BertForSequenceClassification"), tmp_path / "model.onnx")
    model = SUBNETS["bert-vanilla"]()
    with pytest.raises(ValueError, match=r"`exporter` 'jit' is not allowed; allowed: \['torchscript', 'dynamo'\]"):
        export_onnx(model, tmp_path / "model.onnx", exporter="jit")
    with pytest.raises(ValueError, match=r"`path` must be an \.onnx file"):
        export_onnx(model, tmp_path / "model.bin")
    with pytest.raises(ValueError, match=r"`exporter` 'jit' is not allowed"):
        get_objective("onnx_latency", exporter="jit")
    assert not os.listdir(tmp_path)
