"""Compression: global magnitude pruning of the encoder layers' linear weights (exact count, the smallest |w| over all
layers together, nothing else touched), and `hf-nas compress`, whose folders reload in plain transformers with the
sparsity they report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BertTokenizer,
    ViTImageProcessor,
)

from hf_nas import (
    ElasticBeitConfig,
    ElasticBeitForImageClassification,
    ElasticViTConfig,
    ElasticViTForImageClassification,
    SubnetConfig,
    export_subnet,
    extract_subnet,
)
from hf_nas.commands import compress as compress_command
from hf_nas.compression import (
    SPARSITY_METHODS,
    SparsityReport,
    get_sparsity_method,
    magnitude_prune,
    prunable_weights,
    sparsity_report,
)

from .conftest import TINY, make_supernet, make_vanilla, randomize_parameters, with_layer_rule
from .test_cli import normalized_help, run_cli, run_script

VANILLA = SubnetConfig.uniform(2, 2, 32, 16)  # 2 heads x 8 == hidden 16: a plain `bert`/`vit` checkpoint
PER_LAYER = SubnetConfig(2, (4, 2), (64, 32), 32)  # per-layer sizes: a `*_subnet` checkpoint with its modeling file
TINY_VISION = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "image_size": 32,
    "patch_size": 8,
    "num_labels": 5,
}
BERT_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
VISION_LINEARS = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj", "mlp.fc1", "mlp.fc2")


def vision_supernet(config_class: type = ElasticViTConfig, model_class: type = ElasticViTForImageClassification):
    torch.manual_seed(0)
    config = with_layer_rule(config_class(**TINY_VISION), "first")  # PER_LAYER keeps the first layers
    return randomize_parameters(model_class(config)).eval()


def tiny_tokenizer() -> BertTokenizer:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})


MODELS = {
    "vanilla-bert": lambda: make_vanilla("BertForSequenceClassification"),
    "per-layer-bert": lambda: extract_subnet(make_supernet("BertForMaskedLM"), PER_LAYER),
    "per-layer-vit": lambda: extract_subnet(vision_supernet(), PER_LAYER),
    "vanilla-beit": lambda: extract_subnet(
        vision_supernet(ElasticBeitConfig, ElasticBeitForImageClassification), VANILLA
    ),
}


def clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------
# which weights
@pytest.mark.parametrize("name", list(MODELS))
def test_prunable_weights_are_the_encoder_linear_weights(name):
    model = MODELS[name]()
    linears = VISION_LINEARS if "bert" not in name else BERT_LINEARS
    prefix = f"{model.base_model_prefix}.{'encoder.layer' if 'bert' in name else 'layers'}"
    expected = [
        f"{prefix}.{i}.{linear}.weight" for i in range(2 if name != "vanilla-bert" else 3) for linear in linears
    ]
    assert list(prunable_weights(model)) == expected


def test_include_selects_by_glob_pattern():
    model = make_vanilla("BertForSequenceClassification")
    weights = prunable_weights(model, include=["*.intermediate.*", "*.layer.0.attention.self.query.*"])
    assert list(weights) == [
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.intermediate.dense.weight",
        "bert.encoder.layer.1.intermediate.dense.weight",
        "bert.encoder.layer.2.intermediate.dense.weight",
    ]
    before = clone_state(model)
    report = magnitude_prune(model, 0.5, include="*.intermediate.*")
    assert list(report.layers) == [f"bert.encoder.layer.{i}.intermediate.dense.weight" for i in range(3)]
    assert report.zeros == round(0.5 * 3 * 64 * 32)
    untouched = [n for n in before if "intermediate" not in n]
    assert all(torch.equal(model.state_dict()[n], before[n]) for n in untouched)
    with pytest.raises(ValueError, match=r"`include` pattern '\*\.pooler\.\*' matches none of the encoder linear"):
        prunable_weights(model, include="*.pooler.*")
    with pytest.raises(TypeError, match="`include` must be a glob pattern or a non-empty sequence of them"):
        prunable_weights(model, include=[])


# ----------------------------------------------------------------------------------------------------------------
# magnitude pruning
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.93])
def test_magnitude_prune_zeroes_the_global_smallest_magnitudes_exactly(name, sparsity):
    model = MODELS[name]()
    before = clone_state(model)
    names = list(prunable_weights(model))
    flat = torch.cat([before[n].flatten() for n in names])  # (N,)
    order = torch.sort(flat.abs(), stable=True).indices  # (N,)
    k = round(sparsity * flat.numel())

    report = magnitude_prune(model, sparsity)

    after = torch.cat([model.state_dict()[n].flatten() for n in names])  # (N,)
    assert int((after == 0).sum()) == report.zeros == k and report.total == flat.numel()
    assert torch.all(after[order[:k]] == 0)  # the k smallest |w| over all layers together ...
    assert torch.equal(after[order[k:]], flat[order[k:]])  # ... and nothing else
    assert report.method == "magnitude" and report.target == sparsity
    assert report.share == pytest.approx(k / flat.numel())
    shares = [layer.share for layer in report.layers.values()]
    assert max(shares) > min(shares)  # global, not the same share per layer
    for n in before:  # embeddings, LayerNorms, biases, pooler and head untouched
        if n not in names:
            assert torch.equal(model.state_dict()[n], before[n]), n
    assert sparsity_report(model).layers == report.layers


def test_ties_are_broken_by_position_to_the_exact_count():
    model = make_vanilla("BertForSequenceClassification")
    weights = prunable_weights(model)
    with torch.no_grad():
        for weight in weights.values():
            weight.fill_(0.5)  # all tied
        weights["bert.encoder.layer.2.output.dense.weight"].fill_(0.25)  # the smallest, last in order
    total = sum(w.numel() for w in weights.values())
    report = magnitude_prune(model, 0.3)
    assert report.zeros == round(0.3 * total)
    flat = torch.cat([w.detach().flatten() for w in weights.values()])  # (N,)
    last = weights["bert.encoder.layer.2.output.dense.weight"]
    assert torch.all(last == 0)  # the smallest go first, then the earliest ties
    ties = report.zeros - last.numel()
    assert torch.all(flat[:ties] == 0) and torch.all(flat[ties : total - last.numel()] == 0.5)


def test_sparsity_report_measures_any_model():
    supernet = make_supernet("BertForSequenceClassification")
    report = sparsity_report(supernet)  # a supernet can be measured (its full weights), not pruned
    assert report.zeros == 0 and report.total == 3 * (4 * 32 * 32 + 2 * 32 * 64) and report.method is None
    with torch.no_grad():
        supernet.bert.encoder.layer[1].attention.self.key.weight[:2] = 0
    layer = sparsity_report(supernet).layers["bert.encoder.layer.1.attention.self.key.weight"]
    assert (layer.zeros, layer.total, layer.share) == (64, 1024, 0.0625)
    assert SparsityReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


@pytest.mark.parametrize(
    "sparsity, error, match",
    [
        (0, ValueError, r"`sparsity` must be a float with 0 < sparsity < 1 \(the share of zeros\), got 0\."),
        (1.0, ValueError, r"`sparsity` must be a float with 0 < sparsity < 1 \(the share of zeros\), got 1\.0\."),
        (-0.2, ValueError, r"got -0\.2\."),
        (True, TypeError, r"`sparsity` must be a float, got True of type bool\."),
        ("0.5", TypeError, r"`sparsity` must be a float, got '0\.5' of type str\."),
    ],
)
def test_bad_sparsity_is_refused(sparsity, error, match):
    model = make_vanilla("BertModel")
    before = clone_state(model)
    with pytest.raises(error, match=match):
        magnitude_prune(model, sparsity)
    assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())


def test_a_supernet_and_unknown_methods_are_refused():
    with pytest.raises(TypeError, match=r"is an elastic supernet \(ElasticBertForSequenceClassification\).*extract"):
        magnitude_prune(make_supernet("BertForSequenceClassification"), 0.5)
    with pytest.raises(TypeError, match="`model` must be a transformers PreTrainedModel, got Linear"):
        magnitude_prune(torch.nn.Linear(2, 2), 0.5)
    with pytest.raises(ValueError, match=r"Unknown sparsity method 'random'; allowed: \['jackpot', 'magnitude'\]\."):
        get_sparsity_method("random")
    assert (
        sorted(SPARSITY_METHODS) == ["jackpot", "magnitude"] and SPARSITY_METHODS["magnitude"].prune is magnitude_prune
    )


# ----------------------------------------------------------------------------------------------------------------
# hf-nas compress
@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A vanilla BERT subnet folder (tokenizer, card) and a per-layer ViT one (image processor, card, modeling file)."""
    root = tmp_path_factory.mktemp("subnets")
    bert = make_supernet("BertForSequenceClassification")
    vit = vision_supernet()
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    return {
        "bert": Path(export_subnet(bert, VANILLA, root / "bert", processor=tiny_tokenizer())),
        "vit": Path(export_subnet(vit, PER_LAYER, root / "vit", processor=processor)),
    }


@pytest.fixture(scope="module")
def compressed(folders, tmp_path_factory) -> dict[str, Path]:
    """The two folders compressed: BERT with `hf-nas compress`, ViT with scripts/compress_subnet.py."""
    root = tmp_path_factory.mktemp("compressed")
    out = {"bert": root / "bert", "vit": root / "vit"}
    compress_command.main(
        ["--model", str(folders["bert"]), "--output_dir", str(out["bert"]), "--sparsity", "0.5"],
        prog="hf-nas compress",
    )
    script = Path(__file__).resolve().parents[1] / "scripts" / "compress_subnet.py"
    argv = ["--model", str(folders["vit"]), "--output_dir", str(out["vit"]), "--sparsity", "0.75"]
    subprocess_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300, env=subprocess_env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "75.00% sparse encoder weights" in proc.stdout
    return out


@pytest.mark.parametrize(
    "family, sparsity, auto_class, extra_files",
    [
        ("bert", 0.5, AutoModelForSequenceClassification, ["tokenizer_config.json", "tokenizer.json"]),
        ("vit", 0.75, AutoModelForImageClassification, ["modeling_vit_subnet.py", "preprocessor_config.json"]),
    ],
)
def test_compress_writes_a_pruned_checkpoint_that_loads_like_the_input(
    folders, compressed, family, sparsity, auto_class, extra_files
):
    source, out = folders[family], compressed[family]
    assert set(os.listdir(out)) == {*os.listdir(source), "compression.json"}  # the processor, card, modeling file
    assert set(os.listdir(out)) >= {"README.md", "config.json", "model.safetensors", *extra_files}
    config, source_config = (json.loads((f / "config.json").read_text()) for f in (out, source))
    assert config["model_type"] == source_config["model_type"] == ("bert" if family == "bert" else "vit_subnet")
    assert config.get("auto_map") == source_config.get("auto_map")
    assert config["architectures"] == source_config["architectures"]

    remote = family == "vit"
    model = auto_class.from_pretrained(out, trust_remote_code=remote)
    original = auto_class.from_pretrained(source, trust_remote_code=remote)
    report = sparsity_report(model)
    assert report.zeros == round(sparsity * report.total)
    pruned = set(report.layers)
    for name, tensor in original.state_dict().items():
        if name not in pruned:
            assert torch.equal(model.state_dict()[name], tensor), name

    record = json.loads((out / "compression.json").read_text())
    assert record["sparsity"]["layers"] == report.to_dict()["layers"]
    assert record["sparsity"]["method"] == "magnitude" and record["sparsity"]["target"] == sparsity
    assert record["sparsity"]["share"] == report.share and record["model"] == str(source)
    prog = "hf-nas compress" if family == "bert" else "compress_subnet.py"
    assert record["command"] == f"{prog} --model {source} --output_dir {out} --sparsity {sparsity}"

    card, source_card = ((f / "README.md").read_text() for f in (out, source))
    assert card.startswith(source_card.rstrip("\n")) and card.count("## Compression") == 1
    section = card.split("## Compression", 1)[1]
    assert "by magnitude pruning" in section and "global and unstructured" in section
    assert f"**{100 * report.share:.2f}%**" in section
    assert all(f"| `{name}` | {layer.zeros:,} | {layer.total:,} |" in section for name, layer in report.layers.items())


RELOAD = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_nas"] = None  # as on a machine without hf-nas
    import transformers

    zeros = {}
    for folder, auto_class, remote in json.load(open("manifest.json")):
        model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=remote)
        zeros[folder] = {
            "module": type(model).__module__,
            "zeros": {n: int((p == 0).sum()) for n, p in model.named_parameters()},
        }
    print("RESULTS" + json.dumps(zeros))
    """
)


@pytest.mark.slow
def test_compressed_folders_load_without_hf_nas(compressed, tmp_path):
    manifest = [
        (str(compressed["bert"]), "AutoModelForSequenceClassification", False),
        (str(compressed["vit"]), "AutoModelForImageClassification", True),
    ]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "reload.py").write_text(RELOAD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run(
        [sys.executable, "reload.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS"))[7:])
    for folder, *_ in manifest:
        record = json.loads((Path(folder) / "compression.json").read_text())["sparsity"]
        assert not results[folder]["module"].startswith("hf_nas")
        zeros = results[folder]["zeros"]
        assert {n: zeros[n] for n in record["layers"]} == {n: d["zeros"] for n, d in record["layers"].items()}


def test_an_existing_output_dir_needs_overwrite(folders, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("saved before")
    argv = ["--model", str(folders["bert"]), "--output_dir", str(out), "--sparsity", "0.5"]
    with pytest.raises(ValueError, match=r"--output_dir '.*out' exists and is not empty; pass --overwrite_output_dir"):
        compress_command.main(argv)
    assert os.listdir(out) == ["keep.txt"]
    with monkeypatch.context() as patch:  # a failure while writing leaves the folder saved before as it was
        patch.setattr(compress_command, "sparsity_report", lambda model: SparsityReport({}))
        with pytest.raises(RuntimeError, match="reloads with other zeros than were pruned; nothing was written"):
            compress_command.main([*argv, "--overwrite_output_dir"])
    assert os.listdir(out) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
    compress_command.main([*argv, "--overwrite_output_dir"])
    assert "keep.txt" not in os.listdir(out) and (out / "compression.json").is_file()


@pytest.fixture(scope="module")
def supernet_folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("supernet") / "supernet"
    make_supernet("BertForSequenceClassification").save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "args, error, match",
    [
        (["--sparsity", "1.5"], ValueError, r"--sparsity: `sparsity` must be a float with 0 < sparsity < 1"),
        (["--sparsity", "0"], ValueError, r"--sparsity: `sparsity` must be a float with 0 < sparsity < 1"),
        (["--model", "NOWHERE"], ValueError, r"--model '.*nowhere' is not a checkpoint folder \(no config\.json\)"),
        (["--model", "SUPERNET"], ValueError, r"holds an elastic supernet \(elastic_bert\); extract a subnet first"),
        (["--output_dir", "MODEL"], ValueError, r"--output_dir '.*' is the --model folder"),
    ],
)
def test_compress_bad_arguments_write_nothing(folders, supernet_folder, tmp_path, args, error, match):
    names = {"NOWHERE": str(tmp_path / "nowhere"), "SUPERNET": str(supernet_folder), "MODEL": str(folders["bert"])}
    given = dict(zip(args[::2], [names.get(a, a) for a in args[1::2]], strict=True))
    options = {"--model": str(folders["bert"]), "--output_dir": str(tmp_path / "out"), "--sparsity": "0.5", **given}
    source_files = sorted(os.listdir(folders["bert"]))
    with pytest.raises(error, match=match):
        compress_command.main([item for pair in options.items() for item in pair])
    assert not (tmp_path / "out").exists() and sorted(os.listdir(folders["bert"])) == source_files


def test_compress_unknown_method(folders, tmp_path, capsys):
    argv = ["--model", str(folders["bert"]), "--output_dir", str(tmp_path / "out"), "--sparsity", "0.5"]
    with pytest.raises(SystemExit) as exit_info:
        compress_command.main([*argv, "--method", "random"], prog="hf-nas compress")
    assert exit_info.value.code == 2
    assert re.search(
        r"argument --method: invalid choice: 'random' \(choose from '?jackpot'?, '?magnitude'?\)",
        capsys.readouterr().err,
    )
    arguments = tmp_path / "args.json"  # a JSON file skips argparse's choices: the dataclass checks it
    arguments.write_text(
        json.dumps(
            {"model": str(folders["bert"]), "output_dir": str(tmp_path / "out"), "sparsity": 0.5, "method": "x"}
        )
    )
    with pytest.raises(
        ValueError, match=r"--method: Unknown sparsity method 'x'; allowed: \['jackpot', 'magnitude'\]\."
    ):
        compress_command.main([str(arguments)])
    assert not (tmp_path / "out").exists()


def test_compress_help_is_the_scripts_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, cli_help, _ = run_cli(capsys, "compress", "--help")
    assert code == 0 and "--sparsity SPARSITY" in cli_help and "{jackpot,magnitude}" in cli_help
    code, script_help, _ = run_script(capsys, monkeypatch, "compress_subnet.py", "--help")
    assert code == 0
    assert normalized_help(cli_help, "hf-nas compress") == normalized_help(script_help, "compress_subnet.py")
