"""Model cards, atomic export and Hub pushes of extracted subnets, and scripts/extract_subnet.py end to end.

Nothing here reaches the network: every test that could call the Hub replaces `HfApi.create_repo` and
`HfApi.upload_folder` with fakes that either raise or record their arguments.
"""

from __future__ import annotations

import dataclasses
import filecmp
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard, RepoUrl
from transformers import AutoModelForSequenceClassification, BertTokenizer

import hf_nas.hub.card as hub_card
from hf_nas import SubnetConfig, count_macs, count_parameters
from hf_nas.costs import LatencyResult
from hf_nas.hub import (
    MODEL_CARD_TAGS,
    build_model_card,
    export_subnet,
    push_subnet_folder,
    subnet_card_template_path,
)
from hf_nas.search import SearchResults, supernet_fingerprint

from .conftest import TINY, make_supernet, random_batch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "extract_subnet.py"
SEQ = 16  # tokens for MACs and latency: the tiny config allows at most 64

VANILLA = SubnetConfig.uniform(2, 2, 32, 16)  # 2 heads x 8 == hidden 16: a plain BertForSequenceClassification
PER_LAYER = SubnetConfig(2, (4, 2), (64, 32), 32)  # per-layer sizes: needs the shipped modeling file
BASE = "google-bert/bert-base-uncased"
LATENCY = LatencyResult(
    median_ms=0.42, iqr_ms=0.01, device="cpu", batch_size=1, sequence_length=SEQ, num_threads=1, num_runs=100
)
PARETO = {"pareto_index": 2, "size": 12, "objectives": ["accuracy", "macs"], "sorted_by": "macs"}


@pytest.fixture
def supernet():
    return make_supernet("BertForSequenceClassification")


def tiny_tokenizer() -> BertTokenizer:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})


@pytest.fixture
def supernet_dir(tmp_path, supernet) -> Path:
    """A saved tiny supernet with a tokenizer, as `--supernet`."""
    path = tmp_path / "supernet"
    supernet.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def results_dir(tmp_path, supernet) -> Path:
    """A search results folder of the tiny supernet, written by `SearchResults.save`.

    records: 0 largest (0.9), 1 infeasible (0.95, small), 2 smallest (0.6), 3 PER_LAYER (0.8), 4 VANILLA (0.7).
    The front, by increasing accuracy (the first objective): records 2, 4, 3, 0.
    """
    path = tmp_path / "search"
    subnets = [
        supernet.search_space.largest(),
        SubnetConfig.uniform(2, 1, 32, 16),
        supernet.search_space.smallest(),
        PER_LAYER,
        VANILLA,
    ]
    accuracies = [0.9, 0.95, 0.6, 0.8, 0.7]
    records = [
        {"subnet": s.to_dict(), "values": {"accuracy": a, "macs": float(count_macs(supernet, s, SEQ))}}
        for s, a in zip(subnets, accuracies, strict=True)
    ]
    records[1]["feasible"] = False
    results = SearchResults(
        objectives=[
            {"name": "accuracy", "direction": "maximize", "settings": {}},
            {"name": "macs", "direction": "minimize", "settings": {"sequence_length": SEQ}},
        ],
        records=records,
        fingerprint=supernet_fingerprint(supernet),
    )
    results.save(path, plot=False)
    assert results.pareto_indices() == [2, 4, 3, 0]
    return path


@pytest.fixture
def no_hub(monkeypatch):
    """Any Hub call fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was called")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refuse)


@pytest.fixture
def fake_hub(monkeypatch):
    """Record Hub calls (and the folder's files at the time of each call) instead of making them."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs.get("repo_id"), {**kwargs, "files": files_in(kwargs["folder_path"])}))
        return None

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def files_in(folder) -> list[str]:
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def load_card(folder) -> ModelCard:
    return ModelCard.load(Path(folder) / "README.md")  # huggingface_hub's own parser


# ----------------------------------------------------------------------------------------------------------------
# template
def test_template_copies_are_identical():
    """The top-level source and the copy shipped in the wheel never drift; the wheel lists the copy."""
    source, packaged = ROOT / "model_cards" / "subnet_card.md", ROOT / "hf_nas" / "_templates" / "subnet_card.md"
    assert filecmp.cmp(source, packaged, shallow=False), "run: cp model_cards/subnet_card.md hf_nas/_templates/"
    assert "_templates/*.md" in (ROOT / "setup.cfg").read_text()
    assert (hub_card.SOURCE_TEMPLATE, hub_card.PACKAGED_TEMPLATE) == (source, packaged)  # both lookups find them
    assert subnet_card_template_path() == str(source)  # a source checkout uses the source


def test_packaged_template_is_found_without_the_source_folder(monkeypatch, supernet, tmp_path):
    monkeypatch.setattr(hub_card, "SOURCE_TEMPLATE", tmp_path / "missing.md")  # as in an installed wheel
    assert subnet_card_template_path() == str(ROOT / "hf_nas" / "_templates" / "subnet_card.md")
    assert "hf-nas" in str(build_model_card(supernet, VANILLA, base_model=BASE, macs_sequence_length=SEQ))
    monkeypatch.setattr(hub_card, "PACKAGED_TEMPLATE", tmp_path / "also-missing.md")
    with pytest.raises(FileNotFoundError, match="subnet_card.md"):
        subnet_card_template_path()


# ----------------------------------------------------------------------------------------------------------------
# the card
@pytest.mark.parametrize("subnet", [VANILLA, PER_LAYER], ids=["vanilla", "per-layer"])
def test_card_parses_and_carries_the_metadata(tmp_path, supernet, subnet):
    card = build_model_card(
        supernet,
        subnet,
        base_model=BASE,
        metrics={"accuracy": 0.875},
        latency=LATENCY,
        pareto=PARETO,
        training_recipe="Sandwich rule, 3 epochs on SST-2.",
        dataset="nyu-mll/glue",
        repo_id="me/tiny-subnet",
        processor_class="AutoTokenizer",
    )
    card.save(tmp_path / "README.md")
    card = load_card(tmp_path)
    data = card.data.to_dict()
    assert data["base_model"] == BASE
    assert data["library_name"] == "transformers"
    assert set(MODEL_CARD_TAGS) <= set(data["tags"])
    assert data["pipeline_tag"] == "text-classification"
    assert data["datasets"] == ["nyu-mll/glue"]
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("accuracy", 0.875, "nyu-mll/glue")

    meta = data["hf_nas"]  # the plain, machine-readable field
    assert SubnetConfig.from_dict(meta["subnet"]) == subnet
    assert meta["search_space"] == supernet.search_space.to_dict()
    assert meta["num_parameters"] == count_parameters(supernet, subnet)
    assert meta["macs"] == count_macs(supernet, subnet, sequence_length=SEQ)
    assert meta["macs_sequence_length"] == SEQ
    assert meta["latency"] == LATENCY.to_dict()
    assert meta["metrics"] == {"accuracy": 0.875}
    assert meta["pareto"] == PARETO
    assert meta["vanilla"] is (subnet == VANILLA)

    text = card.text
    assert f"[`{BASE}`]" in text
    assert "| Depth (`num_hidden_layers`) | 2, 3 | 2 |" in text  # search space table: choices and this subnet
    assert "| Kept layers (`layers`) | layer rule `first` | 0, 1 |" in text
    heads, ffn = ", ".join(map(str, subnet.num_attention_heads)), ", ".join(map(str, subnet.intermediate_size))
    assert f"| Attention heads, per layer (`num_attention_heads`) | 1, 2, 3, 4 | {heads} |" in text
    assert f"| FFN width, per layer (`intermediate_size`) | 16, 32, 48, 64 | {ffn} |" in text
    assert f"hidden size **{subnet.hidden_size}**" in text
    for i, (h, f) in enumerate(zip(subnet.num_attention_heads, subnet.intermediate_size, strict=True)):
        assert f"| {i} | {h} | {h * 8} | {f} |" in text  # per-layer table
    assert f"{count_parameters(supernet, subnet):,}" in text
    assert f"{count_macs(supernet, subnet, sequence_length=SEQ):,}" in text and f"batch 1 x {SEQ} tokens" in text
    assert "0.42 ms" in text and "device `cpu`" in text and "torch threads: 1" in text
    assert "| accuracy | 0.875 |" in text
    assert "**pareto_index 2** (of 0-11) on the accuracy–MACs Pareto front" in text
    assert "Sandwich rule, 3 epochs on SST-2." in text
    if subnet == VANILLA:
        assert 'AutoModelForSequenceClassification.from_pretrained("me/tiny-subnet")' in text
        assert 'tokenizer = AutoTokenizer.from_pretrained("me/tiny-subnet")' in text
        assert "trust_remote_code" not in text
    else:
        assert 'AutoModelForSequenceClassification.from_pretrained("me/tiny-subnet", trust_remote_code=True)' in text
        # the tokenizer's Auto class reads the custom config too: without the flag it would stop to ask
        assert 'tokenizer = AutoTokenizer.from_pretrained("me/tiny-subnet", trust_remote_code=True)' in text
        assert "modeling_bert_subnet.py" in text


def test_card_of_a_spread_subnet_names_its_layers(supernet):
    supernet.search_space = dataclasses.replace(supernet.search_space, layer_rule="spread")
    subnet = supernet.search_space.subnet(2, PER_LAYER.num_attention_heads, PER_LAYER.intermediate_size, 32)
    assert subnet.layers == (0, 2)  # 2 of 3 layers, evenly spaced, keeping the last
    card = ModelCard(str(build_model_card(supernet, subnet, base_model=BASE)))
    assert "| Kept layers (`layers`) | layer rule `spread` | 0, 2 |" in card.text
    assert "Depth **2** layers (the supernet's layers 0, 2, renumbered from 0)" in card.text
    meta = card.data.to_dict()["hf_nas"]
    assert meta["subnet"]["layers"] == [0, 2] and meta["search_space"]["layer_rule"] == "spread"


def test_card_defaults_and_a_local_base_model(tmp_path, supernet):
    """A local path is named in the text only (the Hub rejects a `base_model` that is not a model id), as a local
    checkpoint with its folder's name: never this machine's path."""
    card = ModelCard(str(build_model_card(supernet, VANILLA, base_model=str(tmp_path))))
    data = card.data.to_dict()
    assert "base_model" not in data and data["library_name"] == "transformers"
    assert f"a local checkpoint (`{tmp_path.name}`)" in card.text and str(tmp_path) not in str(card)
    assert "Latency: not measured." in card.text
    assert "No metrics were recorded" in card.text
    assert "was not placed on a Pareto front" in card.text
    assert data["hf_nas"]["macs_sequence_length"] == min(128, TINY["max_position_embeddings"])
    assert "eval_results" not in data and "model-index" not in data


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"latency": {"median_ms": 1.0}}, ValueError, r"Missing keys in `latency`: \['device'"),
        ({"latency": {**LATENCY.to_dict(), "gpu": 1}}, ValueError, r"Unknown keys in `latency`: \['gpu'\]"),
        ({"latency": 3.0}, TypeError, "`latency` must be a LatencyResult"),
        (
            {"pareto": {**PARETO, "pareto_index": 12}},
            ValueError,
            r"`pareto\['pareto_index'\]`=12 is outside the front",
        ),
        ({"pareto": {"pareto_index": 1, "size": 2}}, ValueError, r"Missing keys in `pareto`: \['objectives'\]"),
        ({"pareto": {**PARETO, "sorted_by": "params"}}, ValueError, "sorted_by"),
        ({"metrics": {"accuracy": "high"}}, ValueError, r"`metrics\['accuracy'\]` must be a finite number"),
        ({"repo_id": "not a repo"}, ValueError, "not a valid Hub repo id"),
        ({"macs_sequence_length": 65}, ValueError, "max_position_embeddings=64"),
    ],
)
def test_card_bad_arguments(supernet, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_model_card(supernet, VANILLA, base_model=BASE, **kwargs)


def test_card_subnet_outside_the_space(supernet):
    with pytest.raises(ValueError, match=r"`hidden_size`=40 is not in the search space; allowed: \[16, 24, 32\]"):
        build_model_card(supernet, SubnetConfig.uniform(2, 2, 32, 40), base_model=BASE)
    with pytest.raises(TypeError, match="elastic supernet"):
        build_model_card(torch.nn.Linear(2, 2), VANILLA, base_model=BASE)


# ----------------------------------------------------------------------------------------------------------------
# export
@pytest.mark.parametrize("subnet", [VANILLA, PER_LAYER], ids=["vanilla", "per-layer"])
def test_export_subnet_writes_a_complete_loadable_folder(tmp_path, supernet, subnet):
    out = tmp_path / "out" / "subnet"
    path = export_subnet(
        supernet, subnet, out, processor=tiny_tokenizer(), base_model=BASE, latency=LATENCY, repo_id="me/sub"
    )
    assert path == str(out)
    files = set(files_in(out))
    assert {"config.json", "model.safetensors", "README.md", "tokenizer_config.json", "tokenizer.json"} <= files
    assert ("modeling_bert_subnet.py" in files) is (subnet == PER_LAYER)
    assert os.listdir(out.parent) == ["subnet"]  # no temporary folder left beside it
    card = load_card(out)
    assert card.data.to_dict()["hf_nas"]["subnet"] == subnet.to_dict()
    remote = "" if subnet == VANILLA else ", trust_remote_code=True"  # per-layer: the tokenizer reads the config too
    assert f'AutoTokenizer.from_pretrained("me/sub"{remote})' in card.text

    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=subnet == PER_LAYER).eval()
    batch = random_batch()
    with torch.no_grad(), supernet.subnet(subnet):
        expected = supernet(**batch).logits
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, expected, atol=1e-5, rtol=0)


def test_export_failure_leaves_an_existing_folder_intact(tmp_path, supernet, monkeypatch):
    out = tmp_path / "subnet"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")

    def broken_save(self, filepath):  # the card is the last file written: weights and tokenizer are already there
        raise OSError("disk full")

    monkeypatch.setattr(ModelCard, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_subnet(supernet, PER_LAYER, out, processor=tiny_tokenizer(), base_model=BASE)
    assert files_in(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "previous export"
    assert os.listdir(tmp_path) == ["subnet"]  # no temporary folder left


def test_export_bad_card_arguments_write_nothing(tmp_path, supernet):
    with pytest.raises(ValueError, match="Missing keys in `pareto`"):
        export_subnet(supernet, VANILLA, tmp_path / "subnet", base_model=BASE, pareto={"pareto_index": 1})
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# push
@pytest.fixture
def exported(tmp_path, supernet) -> Path:
    return Path(export_subnet(supernet, PER_LAYER, tmp_path / "subnet", processor=tiny_tokenizer(), base_model=BASE))


def test_push_dry_run_lists_the_files_and_calls_nothing(exported, no_hub, capsys):
    before = files_in(exported)
    files = push_subnet_folder(exported, "me/tiny-subnet", dry_run=True)
    assert files == before
    assert files == [
        "README.md",
        "config.json",
        "model.safetensors",
        "modeling_bert_subnet.py",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    printed = capsys.readouterr().out.splitlines()
    assert "would upload 6 files" in printed[0] and "me/tiny-subnet" in printed[0]
    assert [line.strip() for line in printed[1:]] == files
    assert files_in(exported) == before  # the folder is kept as it is


def test_push_dry_run_skips_what_upload_folder_ignores(exported, no_hub):
    (exported / ".git").mkdir()
    (exported / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert ".git/HEAD" not in push_subnet_folder(exported, "me/tiny-subnet", dry_run=True)


def test_push_creates_the_repo_then_uploads_the_complete_folder(exported, fake_hub):
    files = push_subnet_folder(exported, "me/tiny-subnet", private=True, token="hf_fake", commit_message="msg")
    assert files == files_in(exported)
    (create, upload) = fake_hub
    assert create == (
        "create_repo",
        "me/tiny-subnet",
        {"private": True, "exist_ok": True, "token": "hf_fake", "repo_type": "model"},
    )
    name, repo_id, kwargs = upload
    assert (name, repo_id) == ("upload_folder", "me/tiny-subnet")
    assert kwargs["folder_path"] == str(exported) and kwargs["token"] == "hf_fake"
    assert kwargs["commit_message"] == "msg" and kwargs["repo_type"] == "model"
    assert kwargs["files"] == files


@pytest.mark.parametrize("repo_id", ["not a repo", "a/b/c", "me/bad--name", ""])
def test_push_invalid_repo_id(exported, no_hub, repo_id):
    with pytest.raises(ValueError, match="is not a valid Hub repo id"):
        push_subnet_folder(exported, repo_id, dry_run=True)


def test_push_incomplete_folder(tmp_path, no_hub):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not a complete subnet folder: missing \['README.md'\]"):
        push_subnet_folder(tmp_path, "me/tiny-subnet")
    with pytest.raises(ValueError, match="is not a directory"):
        push_subnet_folder(tmp_path / "nothing", "me/tiny-subnet")


# ----------------------------------------------------------------------------------------------------------------
# scripts/extract_subnet.py
def run_script(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_main(monkeypatch, *args: str) -> None:
    """The script's `main` in this process (so the Hub can be faked, and errors are fast)."""
    spec = importlib.util.spec_from_file_location("extract_subnet_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    module.main()


def test_script_subnet_json_dry_run_push(tmp_path, supernet_dir):
    subnet_json = tmp_path / "subnet.json"
    PER_LAYER.save(subnet_json)
    out = tmp_path / "subnet"
    result = run_script(
        "--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(out),
        "--base_model", BASE, "--latency_sequence_length", str(SEQ), "--latency_min_run_time", "0.01",
        "--push_to_hub", "--hub_model_id", "me/tiny-subnet", "--dry_run",
    )  # fmt: skip
    files = files_in(out)
    assert {"README.md", "config.json", "model.safetensors", "modeling_bert_subnet.py", "tokenizer.json"} <= set(files)
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Dry run: would upload"))
    assert [line.strip() for line in lines[start + 1 :]] == files
    card = load_card(out)
    data = card.data.to_dict()
    assert data["base_model"] == BASE and SubnetConfig.from_dict(data["hf_nas"]["subnet"]) == PER_LAYER
    assert data["hf_nas"]["latency"]["sequence_length"] == SEQ and data["hf_nas"]["latency"]["device"] == "cpu"
    assert 'from_pretrained("me/tiny-subnet", trust_remote_code=True)' in card.text
    assert "given as JSON (`subnet.json`)" in card.text


def test_script_pareto_index(tmp_path, supernet_dir, results_dir):
    out = tmp_path / "subnet"
    result = run_script(
        "--supernet", str(supernet_dir), "--results", str(results_dir), "--pareto_index", "2",
        "--output_dir", str(out), "--skip_latency", "--latency_sequence_length", str(SEQ),
    )  # fmt: skip
    assert "pareto_index 2 (of 0-3) on the Pareto front of the search, record 3" in result.stdout
    card = load_card(out)
    meta = card.data.to_dict()["hf_nas"]
    assert SubnetConfig.from_dict(meta["subnet"]) == PER_LAYER  # row 2 -> records[3]
    assert meta["pareto"]["pareto_index"] == 2 and meta["pareto"]["record"] == 3 and meta["pareto"]["size"] == 4
    assert meta["pareto"]["sorted_by"] == "accuracy" and meta["pareto"]["values"]["accuracy"] == 0.8
    assert meta["metrics"] == {"accuracy": 0.8}  # the maximized objective; MACs are a cost
    assert "**pareto_index 2** (of 0-3, record 3 of the search results) on the accuracy–MACs Pareto front" in card.text
    assert card.text.lstrip().startswith("<!--") and "\n# subnet\n" in card.text  # titled after the folder
    assert "Latency: not measured." in card.text
    assert "base_model" not in card.data.to_dict()


def test_script_constraint_picks_the_best_feasible_subnet(
    tmp_path, supernet, supernet_dir, results_dir, monkeypatch, caplog
):
    macs = count_macs(supernet, PER_LAYER, SEQ)  # the infeasible record (accuracy 0.95) is smaller: skipped
    out = tmp_path / "subnet"
    run_main(
        monkeypatch, "--supernet", str(supernet_dir), "--results", str(results_dir), "--constraint", f"macs<={macs}",
        "--output_dir", str(out), "--skip_latency", "--latency_sequence_length", str(SEQ),
    )  # fmt: skip
    card = load_card(out)
    meta = card.data.to_dict()["hf_nas"]
    assert SubnetConfig.from_dict(meta["subnet"]) == PER_LAYER
    assert meta["pareto"]["pareto_index"] == 2  # it is also on the front
    assert f"the subnet of best accuracy with `macs<={macs}`" in card.text
    assert "fingerprints differ" not in caplog.text  # the results are of this supernet


def test_script_warns_about_results_of_another_supernet(tmp_path, supernet_dir, results_dir, monkeypatch, caplog):
    results = SearchResults.from_dir(results_dir)
    results.fingerprint = "0" * 16
    results.save(results_dir, plot=False)
    run_main(
        monkeypatch, "--supernet", str(supernet_dir), "--results", str(results_dir), "--pareto_index", "0",
        "--output_dir", str(tmp_path / "subnet"), "--skip_latency", "--latency_sequence_length", str(SEQ),
    )  # fmt: skip
    assert "was written for another supernet (fingerprints differ)" in caplog.text


def test_script_push_uploads_only_the_complete_folder(tmp_path, supernet_dir, fake_hub, monkeypatch):
    subnet_json = tmp_path / "subnet.json"
    VANILLA.save(subnet_json)
    out = tmp_path / "subnet"
    run_main(
        monkeypatch, "--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(out),
        "--skip_latency", "--latency_sequence_length", str(SEQ), "--push_to_hub", "--hub_model_id", "me/sub",
        "--private",
    )  # fmt: skip
    (create, upload) = fake_hub
    assert create[:2] == ("create_repo", "me/sub") and create[2]["private"] is True
    assert upload[2]["folder_path"] == str(out)
    assert upload[2]["files"] == files_in(out)
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(upload[2]["files"])


def test_script_error_exit_code(tmp_path, supernet_dir):
    result = run_script("--supernet", str(supernet_dir), "--output_dir", str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "exactly one of --subnet_json PATH, --pareto_index N" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, error, match",
    [
        ([], ValueError, r"exactly one of .*got none"),
        (
            ["--subnet_json", "s.json", "--pareto_index", "0"],
            ValueError,
            r"exactly one of .*\['--subnet_json', '--pareto_index'\]",
        ),
        (["--pareto_index", "0"], ValueError, "--pareto_index needs --results"),
        (["--subnet_json", "s.json", "--results", "RESULTS"], ValueError, "--results is only used with"),
        (["--results", "RESULTS", "--pareto_index", "4"], ValueError, r"`pareto_index`=4 is out of range: .* 0 to 3"),
        (["--results", "RESULTS", "--pareto_index", "-1"], ValueError, r"`pareto_index`=-1 is out of range"),
        (
            ["--results", "RESULTS", "--constraint", "params<=5"],
            ValueError,
            r"unknown objective 'params'; recorded objectives: \['accuracy', 'macs'\]",
        ),
        (["--results", "RESULTS", "--constraint", "macs<5"], ValueError, "expected NAME<=VALUE or NAME>=VALUE"),
        (
            ["--results", "RESULTS", "--constraint", "macs<=1"],
            ValueError,
            r"No measured subnet satisfies macs<=1 .* recorded \(min, max\)",
        ),
        (
            ["--results", "RESULTS", "--constraint", "macs<=1e9", "--maximize", "f1"],
            ValueError,
            "Unknown objective 'f1' for `maximize`",
        ),
        (["--results", "NOWHERE", "--pareto_index", "0"], ValueError, r"--results .*nowhere does not exist"),
        (["--subnet_json", "s.json", "--push_to_hub"], ValueError, "--push_to_hub needs --hub_model_id"),
        (["--subnet_json", "s.json", "--dry_run"], ValueError, "only apply with --push_to_hub"),
        (["--subnet_json", "s.json", "--push_to_hub", "--hub_model_id", "a b"], ValueError, "not a valid Hub repo id"),
    ],
)
def test_script_bad_selection(tmp_path, supernet_dir, results_dir, monkeypatch, no_hub, args, error, match):
    args = [str(results_dir) if a == "RESULTS" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    with pytest.raises(error, match=match):
        run_main(monkeypatch, "--supernet", str(supernet_dir), "--output_dir", str(tmp_path / "out"), *args)
    assert not (tmp_path / "out").exists()


def test_image_model_card_counts_macs_at_the_image_size(tmp_path):
    from transformers import ViTImageProcessor

    from hf_nas import ElasticViTConfig, ElasticViTForImageClassification

    config = ElasticViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    vit = ElasticViTForImageClassification(config).eval()
    subnet = SubnetConfig.uniform(2, 2, 32, 16)  # 2 heads x 8 == 16: a vanilla `vit`
    card = build_model_card(vit, subnet, base_model=BASE, macs_image_size=48)
    meta = ModelCard(str(card)).data.to_dict()["hf_nas"]
    assert meta["macs"] == count_macs(vit, subnet, image_size=48) and meta["macs_image_size"] == [48, 48]
    assert "48x48 px image" in str(card) and "interpolate_pos_encoding=True" in str(card)
    plain = str(build_model_card(vit, subnet, base_model=BASE))  # the config's size: no interpolation note
    assert "32x32 px image" in plain and "interpolate_pos_encoding" not in plain
    with pytest.raises(ValueError, match="`macs_sequence_length` is for text models"):
        build_model_card(vit, subnet, base_model=BASE, macs_sequence_length=16)
    folder = export_subnet(
        vit, subnet, tmp_path / "vit", processor=ViTImageProcessor(size={"height": 48, "width": 48}), base_model=BASE
    )
    assert "AutoImageProcessor" in open(os.path.join(folder, "README.md")).read()
