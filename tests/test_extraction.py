"""Extraction: an extracted subnet equals the supernet with that subnet active, owns its weights, is the vanilla
class when it can be, and saves as a folder that loads in a fresh process without hf-nas."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from transformers import BertConfig, PreTrainedModel

import hf_nas
from hf_nas import BertSubnetConfig, ElasticBertModel, SearchSpace, SubnetConfig, extract_subnet, save_subnet
from hf_nas.extraction import is_vanilla_subnet

from .conftest import (
    HEAD_CLASSES,
    HEAD_NAMES,
    assert_outputs_close,
    make_supernet,
    output_tensors,
    random_batch,
    randomize_parameters,
    tiny_elastic_config,
)

HEAD_SIZE = 8
SPACE = SearchSpace.from_dict(tiny_elastic_config().search_space)  # the space of `make_supernet` (first layers)
VANILLA_UNIFORM = SubnetConfig.uniform(2, 3, 32, 24)  # 3 heads x 8 == 24: a vanilla BERT
HETEROGENEOUS_UNIFORM = SubnetConfig.uniform(3, 2, 48, 32)  # 2 heads x 8 != 32: needs the per-layer model
HETEROGENEOUS = SubnetConfig(2, (4, 1), (16, 64), 32)
SUBNETS = {
    **{f"seed{seed}": SPACE.sample(seed=seed) for seed in range(12)},
    "smallest": SPACE.smallest(),
    "largest": SPACE.largest(),
    "vanilla_uniform": VANILLA_UNIFORM,
    "heterogeneous_uniform": HETEROGENEOUS_UNIFORM,
}


def test_the_subnet_list_covers_both_kinds():
    assert SPACE.largest() == SubnetConfig.uniform(3, 4, 64, 32)
    assert is_vanilla_subnet(VANILLA_UNIFORM, HEAD_SIZE) and is_vanilla_subnet(SPACE.largest(), HEAD_SIZE)
    assert not is_vanilla_subnet(HETEROGENEOUS_UNIFORM, HEAD_SIZE) and HETEROGENEOUS_UNIFORM.is_uniform
    assert not is_vanilla_subnet(SPACE.smallest(), HEAD_SIZE)  # 1 head x 8 != 16
    kinds = [is_vanilla_subnet(s, HEAD_SIZE) for s in SUBNETS.values()]
    assert kinds.count(False) >= 10 and kinds.count(True) >= 2
    assert any(not s.is_uniform for s in SUBNETS.values())


def storage_pointers(model: torch.nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}


def check_class(static: PreTrainedModel, head: str, subnet: SubnetConfig) -> None:
    vanilla_class, _, subnet_class, _ = HEAD_CLASSES[head]
    if is_vanilla_subnet(subnet, HEAD_SIZE):
        assert type(static) is vanilla_class
        assert type(static.config) is BertConfig and static.config.model_type == "bert"
        assert static.config.num_attention_heads == subnet.num_attention_heads[0]
        assert static.config.intermediate_size == subnet.intermediate_size[0]
    else:
        assert type(static) is subnet_class and isinstance(static, vanilla_class)
        assert type(static.config) is BertSubnetConfig and static.config.model_type == "bert_subnet"
        assert static.config.layer_num_attention_heads == list(subnet.num_attention_heads)
        assert static.config.layer_intermediate_sizes == list(subnet.intermediate_size)
    assert static.config.hidden_size == subnet.hidden_size
    assert static.config.num_hidden_layers == subnet.num_hidden_layers
    assert not hasattr(static.config, "search_space")
    if head != "BertModel":
        assert static.config.num_labels == (2 if head == "BertForQuestionAnswering" else 3)
    layers = static.bert.encoder.layer if head != "BertModel" else static.encoder.layer
    assert len(layers) == subnet.num_hidden_layers
    for layer, heads, ffn in zip(layers, subnet.num_attention_heads, subnet.intermediate_size, strict=True):
        assert layer.attention.self.query.weight.shape == (heads * HEAD_SIZE, subnet.hidden_size)
        assert layer.attention.output.dense.weight.shape == (subnet.hidden_size, heads * HEAD_SIZE)
        assert layer.intermediate.dense.weight.shape == (ffn, subnet.hidden_size)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_extracted_equals_supernet(head, attn_implementation):
    supernet = make_supernet(head, attn_implementation=attn_implementation)
    active = SubnetConfig(2, (1, 2), (32, 48), 16)
    supernet.set_subnet(active)
    batch = random_batch()
    supernet_pointers = storage_pointers(supernet)
    for name, subnet in SUBNETS.items():
        static = extract_subnet(supernet, subnet)
        assert supernet.active_subnet == active, f"{name}: extraction must restore the active subnet"
        check_class(static, head, subnet)
        assert not static.training
        assert static.config._attn_implementation == attn_implementation
        assert storage_pointers(static).isdisjoint(supernet_pointers), f"{name}: weights must be copies"
        with torch.no_grad(), supernet.subnet(subnet):
            expected = supernet(**batch)
        with torch.no_grad():
            actual = static(**batch)
        assert_outputs_close(actual, expected, atol=1e-5)
    # The default is the active subnet.
    static = supernet.extract_subnet()
    check_class(static, head, active)
    with torch.no_grad():
        assert_outputs_close(static(**batch), supernet(**batch), atol=1e-5)


@pytest.mark.parametrize("subnet", [VANILLA_UNIFORM, HETEROGENEOUS])
def test_extracted_weights_are_copies(subnet):
    supernet = make_supernet("BertForMaskedLM")
    batch = random_batch()
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    with torch.no_grad(), supernet.subnet(subnet):
        expected = supernet(**batch).logits
    static = supernet.extract_subnet(subnet)
    with torch.no_grad():
        for param in static.parameters():
            param.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())
    with torch.no_grad(), supernet.subnet(subnet):
        torch.testing.assert_close(supernet(**batch).logits, expected, atol=0, rtol=0)
    # The extracted masked LM keeps its own decoder tied to its own word embeddings.
    assert static.cls.predictions.decoder.weight is static.bert.embeddings.word_embeddings.weight


def test_extracted_model_trains_like_the_supernet():
    """Same loss and the same gradients on the shared weights, in training mode (dropout 0)."""
    supernet = make_supernet("BertForSequenceClassification").train()
    subnet = HETEROGENEOUS
    static = supernet.extract_subnet(subnet)
    assert static.training
    batch = {**random_batch(), "labels": torch.tensor([0, 2, 1])}
    supernet.set_subnet(subnet)
    supernet(**batch).loss.backward()
    static(**batch).loss.backward()
    for name, param in static.named_parameters():
        grad = supernet.get_parameter(name).grad
        torch.testing.assert_close(
            param.grad, grad[tuple(slice(0, n) for n in param.shape)], atol=1e-6, rtol=0, msg=name
        )


@pytest.mark.parametrize("subnet", [VANILLA_UNIFORM, HETEROGENEOUS], ids=["vanilla", "heterogeneous"])
def test_extract_model_without_pooler(subnet):
    """`ElasticBertModel(config, add_pooling_layer=False)` extracts to a model without pooler."""
    torch.manual_seed(0)
    supernet = randomize_parameters(ElasticBertModel(tiny_elastic_config(), add_pooling_layer=False)).eval()
    batch = random_batch()
    static = supernet.extract_subnet(subnet)
    assert static.pooler is None
    with torch.no_grad(), supernet.subnet(subnet):
        assert_outputs_close(static(**batch), supernet(**batch), atol=1e-5)


def test_extract_outside_the_space_raises():
    supernet = make_supernet("BertForSequenceClassification")
    with pytest.raises(ValueError, match=r"`hidden_size`=20 .*allowed: \[16, 24, 32\]"):
        supernet.extract_subnet(SubnetConfig.uniform(2, 2, 32, 20))
    supernet.search_space = supernet.search_space.narrow(num_hidden_layers=[3])
    with pytest.raises(ValueError, match=r"`num_hidden_layers`=2 .*allowed: \[3\]"):
        extract_subnet(supernet, VANILLA_UNIFORM)


# ------------------------------------------------------------------------------------------------------------------
# saving, and loading without hf-nas
RELOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["hf_nas"] = None  # as on a machine without hf-nas
    try:
        import hf_nas  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("hf_nas is importable")

    import json
    import torch
    import transformers

    manifest = json.load(open("manifest.json"))
    results = {}
    for folder, entry in manifest.items():
        auto_class = getattr(transformers, entry["auto_class"])
        kwargs = {"trust_remote_code": True} if entry["remote_code"] else {}
        model, info = auto_class.from_pretrained(folder, output_loading_info=True, **kwargs)
        model.eval()
        reference = torch.load(f"{folder}.reference.pt")
        with torch.no_grad():
            output = model(**reference["inputs"])
        results[folder] = {
            "class": type(model).__name__,
            "module": type(model).__module__,
            "config_class": type(model.config).__name__,
            "missing": sorted(info["missing_keys"]),
            "unexpected": sorted(info["unexpected_keys"]),
            "max_diff": {
                k: (output[k] - v).abs().max().item() if output[k].shape == v.shape else float("inf")
                for k, v in reference["outputs"].items()
            },
        }
    results["hf_nas_imported"] = any(m == "hf_nas" or m.startswith("hf_nas.") for m in sys.modules if sys.modules[m])
    print("RESULTS" + json.dumps(results))
    """
)


def test_saved_subnets_load_in_a_fresh_process_without_hf_nas(tmp_path):
    batch = random_batch()
    manifest = {}
    for head in HEAD_NAMES:
        supernet = make_supernet(head)
        auto_class = HEAD_CLASSES[head][3]
        kinds = {"vanilla": VANILLA_UNIFORM, "heterogeneous": HETEROGENEOUS, "uniform_heads": HETEROGENEOUS_UNIFORM}
        for kind, subnet in kinds.items():
            folder = f"{head}-{kind}"
            saved = save_subnet(supernet, tmp_path / folder, subnet)
            check_class(saved, head, subnet)
            files = sorted(os.listdir(tmp_path / folder))
            config = json.loads((tmp_path / folder / "config.json").read_text())
            assert config["architectures"] == [
                HEAD_CLASSES[head][0].__name__ if kind == "vanilla" else type(saved).__name__
            ]
            if kind == "vanilla":
                assert files == ["config.json", "model.safetensors"]
                assert config["model_type"] == "bert" and "auto_map" not in config
            else:
                assert files == ["config.json", "model.safetensors", "modeling_bert_subnet.py"]
                assert config["model_type"] == "bert_subnet"
                assert config["auto_map"] == {
                    "AutoConfig": "modeling_bert_subnet.BertSubnetConfig",
                    auto_class.__name__: f"modeling_bert_subnet.{type(saved).__name__}",
                }
                assert "hf_nas" not in (tmp_path / folder / "modeling_bert_subnet.py").read_text()
            with torch.no_grad(), supernet.subnet(subnet):
                outputs = output_tensors(supernet(**batch))
            torch.save({"inputs": batch, "outputs": outputs}, tmp_path / f"{folder}.reference.pt")
            manifest[folder] = {"auto_class": auto_class.__name__, "remote_code": kind != "vanilla"}
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
        head, kind = folder.rsplit("-", 1)
        assert not result["missing"] and not result["unexpected"], (folder, result)
        assert max(result["max_diff"].values()) <= 1e-5, (folder, result)
        if kind == "vanilla":
            assert result["class"] == head and result["config_class"] == "BertConfig"
            assert result["module"] == "transformers.models.bert.modeling_bert"
        else:
            assert (
                result["class"] == head.replace("Bert", "BertSubnet", 1)
                and result["config_class"] == "BertSubnetConfig"
            )
            assert result["module"].startswith("transformers_modules."), result["module"]


class Processor:
    """Stands in for a tokenizer: saves one file, or fails."""

    def __init__(self, fail: bool = False):
        self.fail = fail

    def save_pretrained(self, folder):
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            f.write("{}")
        if self.fail:
            raise OSError("disk full")


def leftovers(parent) -> list[str]:
    return sorted(name for name in os.listdir(parent) if name.startswith("."))


def folder_snapshot(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("subnet", [VANILLA_UNIFORM, HETEROGENEOUS], ids=["vanilla", "heterogeneous"])
def test_saved_subnet_reloads_in_process(tmp_path, subnet):
    """With hf_nas imported, the Auto classes load a saved subnet without `trust_remote_code` (registered types)."""
    supernet = make_supernet("BertForTokenClassification")
    saved = save_subnet(supernet, tmp_path / "out", subnet)
    reloaded, info = transformers.AutoModelForTokenClassification.from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(reloaded) is type(saved)
    batch = random_batch()
    with torch.no_grad(), supernet.subnet(subnet):
        assert_outputs_close(reloaded.eval()(**batch), supernet(**batch), atol=1e-5)


def test_save_subnet_with_a_processor(tmp_path):
    supernet = make_supernet("BertForSequenceClassification")
    save_subnet(supernet, tmp_path / "out", HETEROGENEOUS, processor=Processor())
    assert "tokenizer.json" in os.listdir(tmp_path / "out")
    assert leftovers(tmp_path) == []


def test_save_subnet_outside_the_space_writes_nothing(tmp_path):
    supernet = make_supernet("BertForSequenceClassification")
    with pytest.raises(ValueError, match=r"`intermediate_size\[1\]`=17 .*allowed"):
        save_subnet(supernet, tmp_path / "out", SubnetConfig(2, (1, 1), (16, 17), 16))
    assert os.listdir(tmp_path) == []


def test_save_subnet_replaces_a_folder_only_on_success(tmp_path, monkeypatch):
    supernet = make_supernet("BertForSequenceClassification")
    out = tmp_path / "out"
    save_subnet(supernet, out, HETEROGENEOUS)
    (out / "stale.txt").write_text("from an older save")
    save_subnet(supernet, out, VANILLA_UNIFORM)  # success: replaces the whole folder
    assert json.loads((out / "config.json").read_text())["model_type"] == "bert"
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    assert leftovers(tmp_path) == []
    good = folder_snapshot(out)

    # A processor that fails after the model was written.
    with pytest.raises(OSError, match="disk full"):
        save_subnet(supernet, out, HETEROGENEOUS, processor=Processor(fail=True))
    assert folder_snapshot(out) == good
    assert leftovers(tmp_path) == []

    # A model save that fails midway, after writing part of the folder.
    def failing_save_pretrained(self, save_directory, *args, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, "config.json"), "w") as f:
            f.write("{half")
        raise RuntimeError("crash while saving")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", failing_save_pretrained)
    with pytest.raises(RuntimeError, match="crash while saving"):
        save_subnet(supernet, out, HETEROGENEOUS)
    assert folder_snapshot(out) == good
    assert leftovers(tmp_path) == []
    with pytest.raises(RuntimeError, match="crash while saving"):
        save_subnet(supernet, tmp_path / "new", HETEROGENEOUS)
    assert sorted(os.listdir(tmp_path)) == ["out"]

    monkeypatch.undo()
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad(), supernet.subnet(VANILLA_UNIFORM):
        assert_outputs_close(reloaded(**random_batch()), supernet(**random_batch()), atol=1e-5)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_save_subnet_folder_has_the_same_permissions_as_save_pretrained(tmp_path):
    """An atomic save must not make the checkpoint private: `save_pretrained` creates the folder with the usual
    umask-based mode (0o755 under umask 022), so the folder written by `save_subnet` must have the same mode."""
    supernet = make_supernet("BertForSequenceClassification")
    model = save_subnet(supernet, tmp_path / "atomic", VANILLA_UNIFORM)
    model.save_pretrained(tmp_path / "plain")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode)
    expected = stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
    assert mode == expected, f"save_subnet folder mode {oct(mode)}, save_pretrained folder mode {oct(expected)}"


def test_public_names():
    assert hf_nas.extract_subnet is extract_subnet and hf_nas.save_subnet is save_subnet
    assert hf_nas.__all__ == sorted(hf_nas.__all__)
    assert all(hasattr(hf_nas, name) for name in hf_nas.__all__)
