"""The `hf-nas` command: its subcommands are the scripts' programs (same options, same errors, same runs), `push`
uploads an exported folder, and `search` measures on a validation split it never takes silently from training."""

from __future__ import annotations

import importlib
import json
import os
import re
import runpy
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import RepoUrl
from transformers import BertTokenizer

import hf_nas
from hf_nas import cli
from hf_nas.commands import COMMANDS
from hf_nas.commands import push as push_command
from hf_nas.commands import search as search_command

from .conftest import TINY, make_supernet
from .test_recipes import common, tiny_checkpoint  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "train": "train_supernet.py",
    "finetune": "finetune.py",
    "distill": "distill_supernet.py",
    "search": "search_subnets.py",
    "extract": "extract_subnet.py",
    "push": "push_subnet.py",
    "compress": "compress_subnet.py",
    "gradient-search": "gradient_search.py",
}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`hf-nas argv...` in this process: its exit code (0 when it returns), stdout and stderr."""
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def run_script(capsys, monkeypatch, name: str, *argv: str) -> tuple[int, str, str]:
    """`python scripts/<name> argv...` in this process (runpy runs the file as `__main__`, as python does)."""
    path = ROOT / "scripts" / name
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    try:
        runpy.run_path(str(path), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def normalized_help(text: str, prog: str) -> tuple[str, str]:
    """The usage block with the program name replaced and its line wrapping (which depends on the name's length)
    undone, and the rest of the help text as it is."""
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: {prog} "), usage[:80]
    return " ".join(usage.replace(prog, "PROG", 1).split()), rest


@pytest.fixture(autouse=True)
def fixed_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # argparse wraps help to the terminal width


# ----------------------------------------------------------------------------------------------------------------
# the command and its registry
def test_help_lists_every_command_with_its_description(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and out.startswith("usage: hf-nas ")
    for name, command in COMMANDS.items():
        assert re.search(rf"^    {re.escape(name)}\b", out, re.MULTILINE), name
        assert " ".join(command.description.split()[:4]) in " ".join(out.split())
    assert set(COMMANDS) == set(SCRIPTS)  # every command has its script, and the other way round
    assert {p.name for p in (ROOT / "scripts").glob("*.py")} >= set(SCRIPTS.values())


def test_version_and_bad_commands(capsys):
    assert run_cli(capsys, "--version") == (0, f"hf-nas {hf_nas.__version__}\n", "")
    code, _, err = run_cli(capsys, "bogus")
    assert code == 2 and "invalid choice: 'bogus'" in err and "'gradient-search'" in err
    code, _, err = run_cli(capsys)
    assert code == 2 and "the following arguments are required: <command>" in err


def test_registered_modules_expose_main_and_parser():
    for name, command in COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(module.main) and callable(module.build_parser), name


def test_console_script_is_registered():
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "hf-nas"]
    assert entry.value == "hf_nas.cli:main"


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_subcommand_help_is_the_scripts_help(name, capsys, monkeypatch):
    code, cli_help, _ = run_cli(capsys, name, "--help")
    assert code == 0
    code, script_help, _ = run_script(capsys, monkeypatch, SCRIPTS[name], "--help")
    assert code == 0
    assert normalized_help(cli_help, f"hf-nas {name}") == normalized_help(script_help, SCRIPTS[name])


def test_python_dash_m_runs_the_command():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "hf_nas", "--help"], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: python -m hf_nas ") and "gradient-search" in result.stdout


# ----------------------------------------------------------------------------------------------------------------
# `hf-nas train` and scripts/train_supernet.py are one program
def test_train_rejects_bad_arguments_like_the_script(tmp_path, capsys, monkeypatch, tiny_checkpoint):  # noqa: F811
    path, data = tiny_checkpoint
    argv = [*common(path, data, tmp_path / "out"), "--recipe", "bogus"]
    with pytest.raises(ValueError) as from_cli:
        cli.main(["train", *argv])
    with pytest.raises(ValueError) as from_script:
        run_script(capsys, monkeypatch, "train_supernet.py", *argv)
    assert (
        str(from_cli.value)
        == str(from_script.value)
        == "Unknown recipe 'bogus'; allowed: ['one_pass', 'teacher_first']."
    )

    argv = [*common(path, data, tmp_path / "out"), "--max_steps", "three"]
    code, _, cli_err = run_cli(capsys, "train", *argv)
    assert code == 2
    code, _, script_err = run_script(capsys, monkeypatch, "train_supernet.py", *argv)
    assert code == 2
    cli_error = cli_err.strip().splitlines()[-1]
    assert (
        cli_error.startswith("hf-nas train: error: argument --max_steps") and "invalid int value: 'three'" in cli_error
    )
    assert cli_error.replace("hf-nas train", "train_supernet.py") == script_err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_train_processes_fail_alike():
    """The real processes: `python scripts/train_supernet.py` and `python -m hf_nas train` (the `hf-nas` entry)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = ["--train_file", "data/sst2_sample.tsv", "--output_dir", "unused", "--layer_rule", "sideways"]
    results = [
        subprocess.run(command + argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        for command in ([sys.executable, "scripts/train_supernet.py"], [sys.executable, "-m", "hf_nas", "train"])
    ]
    assert [r.returncode for r in results] == [1, 1]
    last_lines = [r.stderr.strip().splitlines()[-1] for r in results]
    assert last_lines[0] == last_lines[1] and "Unknown layer_rule 'sideways'" in last_lines[0]
    assert not (ROOT / "unused").exists()


def test_train_runs_alike(tmp_path, capsys, monkeypatch, tiny_checkpoint):  # noqa: F811
    path, data = tiny_checkpoint
    cli.main(["train", *common(path, data, tmp_path / "cli"), "--do_train"])
    run_script(capsys, monkeypatch, "train_supernet.py", *common(path, data, tmp_path / "script"), "--do_train")
    by_cli = hf_nas.ElasticBertForSequenceClassification.from_pretrained(tmp_path / "cli").state_dict()
    by_script = hf_nas.ElasticBertForSequenceClassification.from_pretrained(tmp_path / "script").state_dict()
    assert by_cli.keys() == by_script.keys()
    for name, value in by_cli.items():
        torch.testing.assert_close(value, by_script[name], msg=name)
    for name in ("config.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / "cli" / name).read_text()) == json.loads(
            (tmp_path / "script" / name).read_text()
        )


# ----------------------------------------------------------------------------------------------------------------
# hf-nas push
@pytest.fixture
def subnet_folder(tmp_path) -> Path:
    """A folder with what `hf-nas extract` writes (the files only: push checks and uploads, it does not load)."""
    folder = tmp_path / "subnet"
    folder.mkdir()
    for name in ("config.json", "README.md", "model.safetensors", "tokenizer.json"):
        (folder / name).write_text("{}\n")
    return folder


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_push_uploads_the_folder(subnet_folder, fake_hub, capsys):
    cli.main(
        ["push", "--folder", str(subnet_folder), "--repo_id", "me/tiny-subnet", "--private", "--commit_message", "Hi"]
        + ["--token", "hf_fake"]
    )
    (create, upload) = fake_hub
    assert create == ("create_repo", "me/tiny-subnet", {**create[2], "private": True, "token": "hf_fake"})
    assert upload[1] == "me/tiny-subnet"
    assert upload[2]["folder_path"] == str(subnet_folder) and upload[2]["commit_message"] == "Hi"
    assert upload[2]["token"] == "hf_fake"
    assert "Pushed 4 files" in capsys.readouterr().out


def test_push_defaults_and_dry_run(subnet_folder, fake_hub, capsys):
    push_command.main(["--folder", str(subnet_folder), "--repo_id", "me/tiny-subnet"])
    (create, upload) = fake_hub
    assert create[2]["private"] is False and create[2]["token"] is None  # the logged-in token
    assert upload[2]["commit_message"] == push_command.DEFAULT_COMMIT_MESSAGE
    fake_hub.clear()
    push_command.main(["--folder", str(subnet_folder), "--repo_id", "me/tiny-subnet", "--dry_run"])
    assert fake_hub == []
    assert "Dry run: would upload 4 files" in capsys.readouterr().out


@pytest.mark.parametrize(
    "remove, repo_id, match",
    [
        ("folder", "me/sub", r"--folder '.*subnet' is missing"),
        ("README.md", "me/sub", r"--folder '.*subnet' is not a complete subnet folder: it has no README.md\."),
        ("model.safetensors", "me/sub", r"it has no weights \(one of model.safetensors, .*pytorch_model.bin"),
        ("config.json", "me/sub", r"it has no config.json\."),
        (None, "me/bad repo", r"--repo_id: `repo_id`='me/bad repo' is not a valid Hub repo id; allowed: "),
        (None, "a/b/c", r"--repo_id: `repo_id`='a/b/c' is not a valid Hub repo id"),
    ],
)
def test_push_checks_its_arguments(subnet_folder, fake_hub, remove, repo_id, match):
    if remove == "folder":
        for path in subnet_folder.iterdir():
            path.unlink()
        subnet_folder.rmdir()
    elif remove is not None:
        (subnet_folder / remove).unlink()
    with pytest.raises(ValueError, match=match):
        cli.main(["push", "--folder", str(subnet_folder), "--repo_id", repo_id])
    assert fake_hub == []


def test_push_requires_folder_and_repo_id(capsys):
    code, _, err = run_cli(capsys, "push", "--folder", "x")
    assert code == 2 and "hf-nas push: error: the following arguments are required: --repo_id" in err


# ----------------------------------------------------------------------------------------------------------------
# hf-nas search: the validation split
@pytest.fixture
def tiny_search_inputs(tmp_path) -> tuple[Path, Path]:
    """A saved tiny text supernet (labels "0" and "1", a word-level tokenizer) and a 40-row training csv."""
    supernet = make_supernet(
        "BertForSequenceClassification", num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    path = tmp_path / "supernet"
    supernet.save_pretrained(path)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    rows = ["sentence,label"]
    for _ in range(40):
        words = torch.randint(0, 90, (5,), generator=g).tolist()
        rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
    data = tmp_path / "train.csv"
    data.write_text("\n".join(rows) + "\n")
    return path, data


def search_argv(supernet: Path, data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "search", "--supernet", str(supernet), "--train_file", str(data), "--output_dir", str(output_dir),
        "--objectives", "accuracy,macs", "--strategy", "random", "--use_predictors", "false",
        "--num_evaluations", "2", "--initial_evaluations", "2", "--evaluations_per_round", "1",
        "--candidates_per_round", "4", "--sequence_length", "16", "--max_seq_length", "16", *extra,
    ]  # fmt: skip


def test_search_without_a_validation_split_is_an_error(tmp_path, tiny_search_inputs):
    supernet, data = tiny_search_inputs
    with pytest.raises(ValueError) as error:
        cli.main(search_argv(supernet, data, tmp_path / "search"))
    message = str(error.value)
    assert "no validation split to measure the subnets on (splits: ['train'])" in message
    assert "--validation_file" in message and "--validation_split_percentage N" in message
    assert not (tmp_path / "search").exists()


def test_search_on_a_seeded_share_of_the_training_rows(tmp_path, tiny_search_inputs, monkeypatch):
    supernet, data = tiny_search_inputs
    measured = []
    real = search_command.TaskMetricObjective

    def spy(dataset, **kwargs):
        measured.append(dataset)
        return real(dataset, **kwargs)

    monkeypatch.setattr(search_command, "TaskMetricObjective", spy)
    cli.main(search_argv(supernet, data, tmp_path / "search", "--validation_split_percentage", "25"))
    (dev,) = measured
    assert len(dev) == 10  # 25% of 40 rows
    results = json.loads((tmp_path / "search" / "search_results.json").read_text())
    assert len(results["records"]) == 2 and all(0 <= r["values"]["accuracy"] <= 1 for r in results["records"])


def test_validation_split_choices():
    import datasets

    train = datasets.Dataset.from_dict({"sentence": [f"w{i}" for i in range(20)], "label": [i % 2 for i in range(20)]})
    args = search_command.SearchArguments(supernet="s", output_dir="o", validation_split_percentage=30, seed=3)
    held_out = search_command.validation_split(datasets.DatasetDict({"train": train}), args, "--validation_file")
    again = search_command.validation_split(datasets.DatasetDict({"train": train}), args, "--validation_file")
    assert len(held_out) == 6 and held_out["sentence"] == again["sentence"]  # seeded
    assert set(held_out["sentence"]) <= set(train["sentence"])
    other = search_command.SearchArguments(supernet="s", output_dir="o", validation_split_percentage=30, seed=4)
    other_rows = search_command.validation_split(datasets.DatasetDict({"train": train}), other, "--validation_file")
    assert other_rows["sentence"] != held_out["sentence"]

    both = datasets.DatasetDict({"train": train, "validation": train})
    with pytest.raises(ValueError, match="the data has a validation split already; drop one of them"):
        search_command.validation_split(both, args, "--validation_file")
    no_percentage = search_command.SearchArguments(supernet="s", output_dir="o")
    assert search_command.validation_split(both, no_percentage, "--validation_file") is both["validation"]
    with pytest.raises(ValueError, match=r"holds out training rows, but the data has 0 \(splits: \['test'\]\)"):
        search_command.validation_split(datasets.DatasetDict({"test": train}), args, "--validation_file")
    for bad in (0, 100, -5):
        with pytest.raises(
            ValueError, match=rf"--validation_split_percentage must be an integer from 1 to 99, got {bad}"
        ):
            search_command.SearchArguments(supernet="s", output_dir="o", validation_split_percentage=bad)
