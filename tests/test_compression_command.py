"""`hf-nas compress` chaining sparsity (jackpot or magnitude), quantization (NUPES or uniform) and ONNX: the folder
reloads with exactly the zeros and quantized values it records, its ONNX graphs run in ONNX Runtime, the card has a
section per step, and bad input (sparsity outside (0, 1), unsupported bits, a supernet, missing data) is refused before
anything is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, ViTImageProcessor

from hf_nas import export_subnet
from hf_nas.commands import compress as compress_command
from hf_nas.compression import QuantizationReport, check_onnx, prunable_weights, sparsity_report

from .conftest import TINY, make_supernet, random_batch
from .test_compression import PER_LAYER, VANILLA, tiny_tokenizer, vision_supernet


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A vanilla BERT subnet folder with a training tsv, and a per-layer ViT one with a folder of training images."""
    root = tmp_path_factory.mktemp("inputs")
    bert = Path(
        export_subnet(
            make_supernet("BertForSequenceClassification"), VANILLA, root / "bert", processor=tiny_tokenizer()
        )
    )
    lines = ["sentence\tlabel"]
    generator = torch.Generator().manual_seed(0)
    for i in range(30):
        words = torch.randint(0, TINY["vocab_size"] - 5, (6,), generator=generator).tolist()
        lines.append(" ".join(f"w{w}" for w in words) + f"\t{i % 3}")
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    vit = Path(
        export_subnet(
            vision_supernet(), PER_LAYER, root / "vit", processor=ViTImageProcessor(size={"height": 32, "width": 32})
        )
    )
    for label in range(5):
        folder = root / "images" / f"class{label}"
        folder.mkdir(parents=True)
        for j in range(2):
            color = (40 * label, 20 * j, 255 - 40 * label)
            Image.new("RGB", (32, 32), color).save(folder / f"{j}.png")
    return {"bert": bert, "train": root / "train.tsv", "vit": vit, "images": root / "images"}


def run(*argv: str) -> None:
    compress_command.main(list(argv), prog="hf-nas compress")


def test_jackpot_then_nupes_then_onnx(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    run(
        "--model", str(inputs["bert"]), "--output_dir", str(out), "--train_file", str(inputs["train"]),
        "--sparsity", "0.5", "--method", "jackpot", "--search_steps", "3", "--batch_size", "8",
        "--bits", "4", "--quant", "nupes", "--calibration_samples", "16", "--reconstruction_steps", "4",
        "--end_to_end_steps", "2", "--onnx_int8",
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        "% sparse encoder weights and 4-bit nupes quantized encoder weights and its ONNX export (fp32 and int8)"
        in printed
    )
    files = set(os.listdir(out))
    assert files == {*os.listdir(inputs["bert"]), "compression.json", "quantization.safetensors", "onnx"}
    assert sorted(os.listdir(out / "onnx")) == ["model.onnx", "model_quantized.onnx"]

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()  # a plain `bert` checkpoint
    assert type(model).__module__.startswith("transformers.")
    record = json.loads((out / "compression.json").read_text())
    report = sparsity_report(model)
    assert record["sparsity"]["layers"] == report.to_dict()["layers"] and record["sparsity"]["method"] == "jackpot"
    assert report.share >= 0.5  # the pruned half, and weights rounded to code 0
    codes = QuantizationReport.load(out)
    assert (codes.method, codes.bits) == ("nupes", 4) and record["quantization"]["data_free"] is False
    weights = prunable_weights(model)
    for name, q in codes.weights.items():
        assert torch.equal(weights[name].detach(), q.dequantize()), name
        assert int(q.codes.abs().max()) <= 7
    assert record["settings"]["sparsity"]["max_steps"] == 3 and record["settings"]["quantization"]["steps"] == 4
    assert len(record["quantization"]["settings"]["block_errors"]) == 2
    assert record["settings"]["quantization"]["end_to_end_steps"] == 2
    assert record["quantization"]["settings"]["end_to_end"]["steps"] == 2
    assert record["onnx"]["max_abs_diff"] <= 1e-4 and record["onnx"]["file"] == "onnx/model.onnx"
    assert check_onnx(model, out / "onnx" / "model.onnx", random_batch(2, 6)) <= 1e-4

    card = (out / "README.md").read_text()
    section = card.split("## Compression", 1)[1]
    assert card.count("## Compression") == 1
    assert section.index("### Sparsity") < section.index("### Quantization") < section.index("### ONNX")
    assert "Lottery Jackpots" in section and "**4 bits**" in section and "quantization.safetensors" in section
    assert "dequantized" in section and "onnx/model_quantized.onnx" in section


@pytest.mark.parametrize(
    "options, method, data_free",
    [(["--bits", "3", "--quant", "uniform"], "uniform", None), (["--bits", "5", "--data_free"], "nupes", True)],
)
def test_quantization_alone_needs_no_data(inputs, tmp_path, options, method, data_free):
    out = tmp_path / "out"
    run("--model", str(inputs["bert"]), "--output_dir", str(out), *options)
    record = json.loads((out / "compression.json").read_text())
    assert record["sparsity"] is None and record["onnx"] is None
    assert record["quantization"]["method"] == method and record["quantization"]["data_free"] is data_free
    model = AutoModelForSequenceClassification.from_pretrained(out)
    codes = QuantizationReport.load(out)
    assert all(torch.equal(prunable_weights(model)[n].detach(), q.dequantize()) for n, q in codes.weights.items())
    assert "### Sparsity" not in (out / "README.md").read_text()


def test_a_per_layer_vision_subnet_with_image_folders(inputs, tmp_path):
    out = tmp_path / "out"
    run(
        "--model", str(inputs["vit"]), "--output_dir", str(out), "--train_dir", str(inputs["images"]),
        "--sparsity", "0.5", "--pattern", "2:4", "--method", "jackpot", "--search_steps", "2", "--batch_size", "4",
        "--onnx",
    )  # fmt: skip
    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True)
    assert type(model).__name__ == "ViTSubnetForImageClassification"
    for name, weight in prunable_weights(model).items():
        assert torch.all((weight.view(-1, 4) == 0).sum(1) == 2), name  # 2:4
    record = json.loads((out / "compression.json").read_text())
    assert record["sparsity"]["pattern"] == "2:4" and record["onnx"]["input_names"] == ["pixel_values"]
    assert "2:4 semi-structured" in (out / "README.md").read_text()


@pytest.fixture(scope="module")
def supernet_folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("supernet") / "supernet"
    make_supernet("BertForSequenceClassification").save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "args, error, match",
    [
        (["--sparsity", "1.5"], ValueError, r"--sparsity: `sparsity` must be a float with 0 < sparsity < 1"),
        (["--sparsity", "-0.1"], ValueError, r"--sparsity: `sparsity` must be a float with 0 < sparsity < 1"),
        (["--sparsity", "1"], ValueError, r"--sparsity: `sparsity` must be a float with 0 < sparsity < 1"),
        (["--bits", "9"], ValueError, r"--bits: `bits` must be an int from 2 to 8 \(codes are stored as int8\), got 9"),
        (["--bits", "1"], ValueError, r"--bits: `bits` must be an int from 2 to 8 \(codes are stored as int8\), got 1"),
        (["--model", "SUPERNET", "--bits", "4", "--data_free"], ValueError, r"holds an elastic supernet \(elastic_bert\)"),
        (["--model", "SUPERNET", "--onnx"], ValueError, r"holds an elastic supernet \(elastic_bert\); extract a subnet"),
        ([], ValueError, r"Nothing to do: give --sparsity, --bits or --onnx"),
        (["--sparsity", "0.5", "--method", "jackpot"], ValueError,
         r"--method jackpot read training data: give --train_file or --dataset_name\.$"),
        (["--bits", "4"], ValueError, r"--quant nupes read training data: give --train_file or --dataset_name \(or --data_free"),
        (["--sparsity", "0.7", "--pattern", "2:4"], ValueError, r"--pattern: `pattern` '2:4' keeps 2 of every 4 weights"),
        (["--sparsity", "0.5", "--search_steps", "0"], ValueError, r"--search_steps must be a positive int, got 0"),
        (["--bits", "4", "--exponent_granularity", "tensor"], SystemExit, None),
    ],
)  # fmt: skip
def test_bad_arguments_write_nothing(inputs, supernet_folder, tmp_path, args, error, match, capsys):
    names = {"SUPERNET": str(supernet_folder)}
    options = {"--model": str(inputs["bert"]), "--output_dir": str(tmp_path / "out")}
    argv = [item for pair in options.items() for item in pair if pair[0] not in args] + [names.get(a, a) for a in args]
    with pytest.raises(error, match=match):
        run(*argv)
    assert not (tmp_path / "out").exists()
