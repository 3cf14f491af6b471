"""What a new user meets first in `hf-nas train` / `finetune` / `distill` / `gradient-search` / `compress`: sentence
pairs found as run_glue.py finds them and logged, wrong columns and mistyped paths refused before any model loads, a
finished supernet never replaced silently, the plain fine-tuning command, the training record, and the log levels."""

from __future__ import annotations

import importlib
import json
import logging
import os

import datasets
import pytest
import torch
import transformers
from transformers import BertForSequenceClassification, PreTrainedModel

from hf_nas.commands import train as train_command
from hf_nas.commands.train import DEFAULT_CHECKPOINT_HUB_ID, base_model_name
from hf_nas.data import TextDataArguments, check_text_columns, text_columns
from hf_nas.training import SupernetTrainer
from hf_nas.training.recipes import TRAINING_RECORD_NAME, TrainingRecord
from hf_nas.utils import default_text_checkpoint

from .test_recipes import common, tiny_checkpoint  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def restore_log_levels():
    """The commands set the transformers, datasets and hf_nas log levels of the process: put them back."""
    levels = (transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity())
    hf_nas_level = logging.getLogger("hf_nas").level
    yield
    transformers.utils.logging.set_verbosity(levels[0])
    datasets.utils.logging.set_verbosity(levels[1])
    logging.getLogger("hf_nas").setLevel(hf_nas_level)


def command(name: str):
    return importlib.import_module(f"hf_nas.commands.{name}")


@pytest.fixture
def checkpoint(tiny_checkpoint):  # noqa: F811
    """A tiny vanilla BERT folder with a word-level tokenizer, and a csv of `sentence,label` rows."""
    return tiny_checkpoint


def fail_model_loading(monkeypatch) -> None:
    def refuse(cls, *args, **kwargs):
        pytest.fail(f"{cls.__name__}.from_pretrained was called")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))


@pytest.fixture
def pair_files(tmp_path) -> dict[str, str]:
    """The same sentence pairs as csv and tsv (label: whether the second text's first word is low)."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(16):
        first, second = (torch.randint(0, 90, (4,), generator=g).tolist() for _ in range(2))
        rows.append((" ".join(f"w{w}" for w in first), " ".join(f"w{w}" for w in second), int(second[0] < 45)))
    files = {}
    for extension, separator in (("csv", ","), ("tsv", "\t")):
        path = tmp_path / f"pairs.{extension}"
        lines = [separator.join(("sentence1", "sentence2", "label"))]
        lines += [separator.join((a, b, str(label))) for a, b, label in rows]
        path.write_text("\n".join(lines) + "\n")
        files[extension] = str(path)
    return files


def train_argv(path, data, out, *extra: str) -> list[str]:
    return [*common(path, data, out), "--max_steps", "1", "--do_train", *extra]


# ----------------------------------------------------------------------------------------------------------------
# 1. text columns
GLUE_COLUMNS = {
    "cola": (["sentence", "label", "idx"], ("sentence", None)),
    "sst2": (["sentence", "label", "idx"], ("sentence", None)),
    "mrpc": (["sentence1", "sentence2", "label", "idx"], ("sentence1", "sentence2")),
    "qqp": (["question1", "question2", "label", "idx"], ("question1", "question2")),
    "stsb": (["sentence1", "sentence2", "label", "idx"], ("sentence1", "sentence2")),
    "mnli": (["premise", "hypothesis", "label", "idx"], ("premise", "hypothesis")),
    "qnli": (["question", "sentence", "label", "idx"], ("question", "sentence")),
    "rte": (["sentence1", "sentence2", "label", "idx"], ("sentence1", "sentence2")),
    "wnli": (["sentence1", "sentence2", "label", "idx"], ("sentence1", "sentence2")),
    "two other texts": (["claim", "evidence", "label"], ("claim", "evidence")),
    "one other text": (["review", "label"], ("review", None)),
    "a string id": (["id", "review", "label"], ("review", None)),
    "three texts": (["title", "body", "author", "label"], ("title", None)),
}


def dataset_of(columns: list[str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({c: [0] if c in ("label", "idx") else ["w1 w2"] for c in columns})


@pytest.mark.parametrize("name", list(GLUE_COLUMNS))
def test_text_columns_are_found_as_run_glue_finds_them(name):
    columns, expected = GLUE_COLUMNS[name]
    assert text_columns(dataset_of(columns), TextDataArguments(train_file="train.csv")) == expected


def test_given_text_columns_win():
    dataset = dataset_of(["sentence1", "sentence2", "label"])
    assert text_columns(dataset, TextDataArguments(train_file="t.csv", text_column="sentence2")) == ("sentence2", None)
    given_pair = TextDataArguments(train_file="t.csv", text_pair_column="sentence2")
    assert text_columns(dataset, given_pair) == ("sentence1", "sentence2")


def test_a_pair_file_trains_on_both_texts_and_the_log_names_them(
    tmp_path, monkeypatch, caplog, checkpoint, pair_files
):
    path, _ = checkpoint
    seen = []
    real_init = SupernetTrainer.__init__

    def record(self, *args, **kwargs):
        seen.append(kwargs["train_dataset"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "__init__", record)
    for extension, data in pair_files.items():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            train_command.main(train_argv(path, data, tmp_path / extension))
        rows = seen[-1]
        assert all(1 in row["token_type_ids"] for row in rows), extension  # the second text is segment 1
        assert all(row["input_ids"].count(3) == 2 for row in rows), extension  # [CLS] a [SEP] b [SEP]
        lines = [r for r in caplog.records if r.name == "hf_nas.data" and "text column" in r.getMessage()]
        assert [(r.levelno, r.getMessage()) for r in lines] == [
            (logging.INFO, "text column(s): 'sentence1' and 'sentence2' (a sentence pair); label column: 'label'")
        ]


# ----------------------------------------------------------------------------------------------------------------
# 2. wrong columns, before any model is loaded
def run_argv(name: str, path, data, out) -> list[str]:
    argv = ["--model_name_or_path", str(path), "--train_file", str(data), "--output_dir", str(out)]
    return [*argv, "--report_to", "none", "--use_cpu", "--max_steps", "1"] + (
        ["--do_train"] if name == "train" else []
    )


@pytest.mark.parametrize("name", ["train", "finetune", "gradient_search"])
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--text_column", "sentense", "--text_column 'sentense' is not a column"),
        ("--label_column", "labels", "--label_column 'labels' is not a column"),
        ("--text_pair_column", "sentence2", "--text_pair_column 'sentence2' is not a column"),
    ],
)
def test_a_wrong_column_is_refused_before_any_model_loads(
    tmp_path, monkeypatch, checkpoint, name, option, value, message
):
    path, data = checkpoint
    fail_model_loading(monkeypatch)
    with pytest.raises(ValueError) as error:
        command(name).main([*run_argv(name, path, data, tmp_path / "out"), option, value])
    assert str(error.value) == f"{message} of the train data; its columns: ['sentence', 'label']."
    assert not (tmp_path / "out" / "config.json").exists()


def test_wrong_columns_are_named_together():
    dataset = dataset_of(["sentence", "label"])
    data = TextDataArguments(train_file="t.csv", text_column="text", label_column="y")
    with pytest.raises(ValueError, match=r"^--text_column 'text' and --label_column 'y' are not columns of the "):
        check_text_columns(dataset, data, "validation")


# ----------------------------------------------------------------------------------------------------------------
# 3. a finished supernet is not replaced without --overwrite_output_dir
def test_a_finished_supernet_is_refused_and_kept_byte_identical(tmp_path, monkeypatch, checkpoint):
    path, data = checkpoint
    out = tmp_path / "supernet"
    train_command.main(train_argv(path, data, out))
    weights = (out / "model.safetensors").read_bytes()
    monkeypatch.setattr(SupernetTrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError) as error:
        train_command.main(train_argv(path, data, out, "--seed", "1"))
    assert str(error.value) == (
        f"--output_dir {out} already holds a trained model (config.json and weights) and no checkpoint-* folder to "
        "resume from; pass --overwrite_output_dir to replace it, or choose another --output_dir."
    )
    assert (out / "model.safetensors").read_bytes() == weights
    monkeypatch.undo()
    train_command.main(train_argv(path, data, out, "--seed", "1", "--overwrite_output_dir"))
    assert (out / "model.safetensors").read_bytes() != weights


def test_a_folder_with_checkpoints_resumes(tmp_path, monkeypatch, checkpoint):
    path, data = checkpoint
    out = tmp_path / "supernet"
    saving = ["--save_strategy", "steps", "--save_steps", "1"]
    train_command.main([*train_argv(path, data, out), *saving])
    assert (out / "checkpoint-1").is_dir() and (out / "model.safetensors").is_file()
    resumed = []
    real_train = SupernetTrainer.train

    def spy(self, *args, **kwargs):
        resumed.append(kwargs.get("resume_from_checkpoint"))
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "train", spy)
    train_command.main([*train_argv(path, data, out), *saving, "--max_steps", "2"])
    assert resumed == [str(out / "checkpoint-1")]


# ----------------------------------------------------------------------------------------------------------------
# 4. mistyped paths: one line naming them, before anything is loaded
def path_cases():
    train_like = ["--model_name_or_path", "--train_file", "--validation_file"]
    yield from (("train", option) for option in [*train_like, "--teacher_model_name_or_path", "--search_space_file"])
    yield from (("finetune", option) for option in train_like)
    yield from (("gradient_search", option) for option in [*train_like, "--search_space_file"])
    yield from (("distill", option) for option in ["--text_file", "--model_name_or_path"])
    yield from (("distill", option) for option in ["--teacher_model_name_or_path"])
    yield ("compress", "--model")


def base_argv(name: str, path, data, out) -> dict[str, str]:
    if name == "distill":
        return {"--text_file": str(data), "--model_name_or_path": str(path), "--output_dir": str(out)}
    if name == "compress":
        return {"--model": str(path), "--output_dir": str(out), "--sparsity": "0.5"}
    argv = {"--model_name_or_path": str(path), "--train_file": str(data), "--output_dir": str(out)}
    return {**argv, "--report_to": "none", "--use_cpu": "true"}


@pytest.mark.parametrize(("name", "option"), list(path_cases()))
def test_a_mistyped_path_is_one_line_naming_it(tmp_path, monkeypatch, checkpoint, name, option):
    path, data = checkpoint
    fail_model_loading(monkeypatch)
    missing = str(tmp_path / "out" / ("supernte" if "model" in option else "sst2_sampel.csv"))
    options = {**base_argv(name, path, data, tmp_path / "run"), option: missing}
    argv = [item for pair in options.items() for item in pair] + (["--do_train"] if name == "train" else [])
    with pytest.raises(ValueError) as error:
        command(name).main(argv)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{option} ") and missing in message
    assert "does not exist" in message
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------------------
# 6. hf-nas finetune
def test_finetune_trains_and_saves_the_full_model_with_its_tokenizer(tmp_path, checkpoint):
    path, data = checkpoint
    out = tmp_path / "teacher"
    argv = [
        "--model_name_or_path", str(path), "--train_file", str(data), "--validation_file", str(data),
        "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "8", "--max_seq_length", "16",
        "--learning_rate", "1e-3", "--report_to", "none", "--use_cpu", "--seed", "0", "--do_eval",
        "--save_strategy", "steps", "--save_steps", "1", "--disable_tqdm", "true",
    ]  # fmt: skip
    command("finetune").main(argv)
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "eval_results.json"} <= files
    assert not [f for f in files if f.startswith("checkpoint-") or f.startswith(".")]
    tuned = BertForSequenceClassification.from_pretrained(out)
    original = BertForSequenceClassification.from_pretrained(path)
    assert tuned.config.model_type == "bert" and tuned.config.label2id == {"0": 0, "1": 1}
    assert not torch.equal(tuned.classifier.weight, original.classifier.weight)
    assert "eval_accuracy" in json.loads((out / "eval_results.json").read_text())

    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"exists and is not empty; pass --overwrite_output_dir to replace it"):
        command("finetune").main(argv)
    with pytest.raises(ValueError, match=r"is the --model_name_or_path folder; write the fine-tuned model elsewhere"):
        command("finetune").main([*argv, "--output_dir", str(path), "--overwrite_output_dir"])
    assert (out / "model.safetensors").read_bytes() == weights


def test_finetune_refuses_a_supernet(tmp_path, checkpoint):
    path, data = checkpoint
    supernet = tmp_path / "supernet"
    train_command.main(train_argv(path, data, supernet))
    with pytest.raises(ValueError, match=r"holds a `elastic_bert` model; hf-nas finetune trains a vanilla `bert`"):
        command("finetune").main(run_argv("finetune", supernet, data, tmp_path / "out"))


# ----------------------------------------------------------------------------------------------------------------
# 7. the training record
def test_train_records_how_the_supernet_was_made(tmp_path, checkpoint):
    path, data = checkpoint
    out = tmp_path / "supernet"
    argv = train_argv(path, data, out, "--base_model", "google-bert/bert-base-uncased")
    train_command.main(argv)
    record = json.loads((out / TRAINING_RECORD_NAME).read_text())
    assert set(record) == {"base_model", "recipe", "dataset", "training", "command_line"}
    assert record["base_model"] == "google-bert/bert-base-uncased" and record["recipe"] == "one_pass"
    assert record["command_line"] == argv
    assert record["dataset"]["train_file"] == str(data) and record["dataset"]["label_column"] == "label"
    training = record["training"]
    expected = {
        "max_steps": 1, "learning_rate": 5e-05, "per_device_train_batch_size": 8, "sampler": "sandwich",
        "distillation": "inplace", "task_loss_weight": 1.0, "kd_loss_weight": 1.0, "hidden_loss_weight": 1.0,
        "attention_loss_weight": 0.0, "layer_rule": "spread", "seed": 0, "global_step": 1,
    }  # fmt: skip
    assert {k: training[k] for k in expected} == expected
    assert TrainingRecord.load(out).base_model == "google-bert/bert-base-uncased"

    # without --base_model: a local checkpoint with no Hub name is named by its path
    train_command.main(train_argv(path, data, tmp_path / "local"))
    assert TrainingRecord.load(tmp_path / "local").base_model == str(path)


def test_base_model_name(tmp_path):
    assert base_model_name("me/bert", "anything") == "me/bert"
    assert base_model_name(None, "google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert base_model_name(None, default_text_checkpoint()) == DEFAULT_CHECKPOINT_HUB_ID
    named = tmp_path / "named"
    named.mkdir()
    (named / "config.json").write_text(json.dumps({"model_type": "bert", "_name_or_path": "prajjwal1/bert-tiny"}))
    assert base_model_name(None, str(named)) == "prajjwal1/bert-tiny"
    TrainingRecord(base_model="google-bert/bert-base-uncased").save(named)  # a supernet continued: its own record
    assert base_model_name(None, str(named)) == "google-bert/bert-base-uncased"
    with pytest.raises(ValueError, match=r"--base_model 'out/a/b' is not a Hub model id"):
        train_command.ModelArguments(base_model="out/a/b")


def test_distill_records_and_refuses_to_replace(tmp_path, checkpoint):
    path, data = checkpoint
    out = tmp_path / "distilled"
    argv = [
        "--text_file", str(data), "--model_name_or_path", str(path), "--output_dir", str(out), "--num_subspaces", "1",
        "--max_steps", "1", "--max_samples", "16", "--max_seq_length", "16", "--report_to", "none", "--use_cpu",
        "--save_strategy", "no", "--per_device_train_batch_size", "8",
    ]  # fmt: skip
    command("distill").main(argv)
    record = TrainingRecord.load(out / "base")
    assert record.recipe == "task_agnostic" and record.base_model == str(path) and record.command_line == argv
    assert record.dataset["text_file"] == str(data) and record.training["subspace"] == "base"
    weights = (out / "base" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"already holds distilled supernets \['base'\]; pass --overwrite_output_dir"):
        command("distill").main(argv)
    assert (out / "base" / "model.safetensors").read_bytes() == weights


# ----------------------------------------------------------------------------------------------------------------
# 8. log levels
def test_rank_and_device_are_info_and_the_library_follows_log_level(tmp_path, caplog, checkpoint):
    path, data = checkpoint
    with caplog.at_level(logging.DEBUG):
        train_command.main(train_argv(path, data, tmp_path / "a"))
    (rank,) = [r for r in caplog.records if r.getMessage().startswith("Process rank: 0, device: cpu")]
    assert rank.levelno == logging.INFO and rank.name == "hf_nas.commands.train"
    assert logging.getLogger("hf_nas").level == logging.INFO  # the main process logs INFO by default
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        train_command.main(train_argv(path, data, tmp_path / "b", "--log_level", "warning"))
    assert logging.getLogger("hf_nas").level == logging.WARNING
    assert transformers.utils.logging.get_verbosity() == logging.WARNING
    assert not [r for r in caplog.records if r.name.startswith("hf_nas") and r.levelno < logging.WARNING]
