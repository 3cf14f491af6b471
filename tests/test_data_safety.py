"""Corrupted or hostile data given to `hf-nas train`: one clear error before any model loads, and no output folder.

Text: labels or texts missing (empty cells, nulls, blank labels), files without rows, labels outside the classes (of
the training data, or of a checkpoint whose labels are named). Images: a file that does not decode (refused, naming
it; not skipped), class folders without images, a validation class the training data lacks.
"""

from __future__ import annotations

import io
import json
import logging
import os

import datasets
import pytest
import torch
import transformers
from PIL import Image
from transformers import BertForSequenceClassification, BertTokenizer, PreTrainedModel, ViTConfig, ViTImageProcessor

from hf_nas.commands import train as train_command
from hf_nas.data import ImageDataArguments, TextDataArguments, check_text_values, load_image_datasets
from hf_nas.training import SupernetTrainer

from .conftest import TINY, tiny_bert_config

ROWS = [(f"w{i} w{i + 1} w{i + 2}", i % 2) for i in range(12)]


@pytest.fixture(autouse=True)
def restore_log_levels():
    """The command sets the transformers, datasets and hf_nas log levels of the process: put them back."""
    levels = (transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity())
    hf_nas_level = logging.getLogger("hf_nas").level
    yield
    transformers.utils.logging.set_verbosity(levels[0])
    datasets.utils.logging.set_verbosity(levels[1])
    logging.getLogger("hf_nas").setLevel(hf_nas_level)


def save_bert(path, **config) -> str:
    """A tiny vanilla BERT with a word-level tokenizer."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(num_labels=2, **config)).save_pretrained(path)
    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(path)
    return str(path)


@pytest.fixture
def bert(tmp_path) -> str:
    """Its labels are transformers' placeholders: the data's labels are the classes."""
    return save_bert(tmp_path / "bert")


@pytest.fixture
def named_bert(tmp_path) -> str:
    """Its labels have names, as a fine-tuned model's or a saved supernet's: the data's labels must be its classes."""
    return save_bert(
        tmp_path / "named", id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )


@pytest.fixture
def vit(tmp_path) -> str:
    """A tiny ViT checkpoint's config and image processor (the data is refused before its weights would load)."""
    path = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


def csv_text(rows, header="sentence,label") -> str:
    return "\n".join([header, *(f"{text},{label}" for text, label in rows)]) + "\n"


def text_argv(model: str, train, out, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", model, "--train_file", str(train), "--output_dir", str(out), "--do_train",
        "--max_steps", "1", "--per_device_train_batch_size", "4", "--max_seq_length", "16", "--importance_batches", "1",
        "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def refused(monkeypatch, argv: list[str]) -> str:
    """Run `hf-nas train` expecting a `ValueError` before any model loads or trains; returns its message, after checking
    that the output folder was not created."""

    def refuse(cls, *args, **kwargs):
        pytest.fail(f"{cls.__name__}.from_pretrained was called")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(SupernetTrainer, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError) as error:
        train_command.main(argv)
    out = argv[argv.index("--output_dir") + 1]
    assert not os.path.exists(out), f"{out} was created"
    message = str(error.value)
    assert "\n" not in message
    return message


def trained_labels(monkeypatch, argv: list[str]) -> tuple[list[int], dict]:
    """Run `hf-nas train` and return the label ids of the training rows and the supernet's `id2label`."""
    seen = []
    real_init = SupernetTrainer.__init__

    def record(self, *args, **kwargs):
        seen.append(kwargs["train_dataset"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "__init__", record)
    train_command.main(argv)
    config = transformers.AutoConfig.from_pretrained(argv[argv.index("--output_dir") + 1])
    return [row["labels"] for row in seen[-1]], config.id2label


# ----------------------------------------------------------------------------------------------------------------
# text: missing values
def test_a_missing_label_is_refused_naming_the_file_and_rows(tmp_path, monkeypatch, bert):
    train = tmp_path / "train.csv"
    rows = [(text, "" if i in (3, 7) else label) for i, (text, label) in enumerate(ROWS)]
    train.write_text(csv_text(rows))
    message = refused(monkeypatch, text_argv(bert, train, tmp_path / "out"))
    assert message == (
        f"--label_column 'label' is empty in 2 of 12 rows of the train data (--train_file {train}): rows 3, 7 "
        "(counted from 0, not counting a header line). Every row needs a label and a text: fill in or remove those "
        "rows."
    )


def write_rows(path, rows: list[dict]) -> None:
    """`rows` as a csv, tsv, json or jsonl file, by the extension of `path` (None: an empty cell, or null)."""
    extension = os.path.splitext(str(path))[1]
    if extension in (".csv", ".tsv"):
        separator = "," if extension == ".csv" else "\t"
        lines = [separator.join(rows[0])]
        lines += [separator.join("" if v is None else str(v) for v in row.values()) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    elif extension == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")


@pytest.mark.parametrize(
    ("extension", "row", "option"),
    [
        (".tsv", {"sentence": None, "label": 0}, "text_column 'sentence'"),  # an empty cell
        (".jsonl", {"sentence": "w2", "label": " "}, "label_column 'label'"),  # a blank label
        (".json", {"sentence": "w2", "label": None}, "label_column 'label'"),  # a null
    ],
)
def test_a_missing_value_in_the_validation_file_is_refused(tmp_path, monkeypatch, bert, extension, row, option):
    strings = isinstance(row["label"], str)
    train, validation = tmp_path / f"train{extension}", tmp_path / f"validation{extension}"
    write_rows(train, [{"sentence": text, "label": str(label) if strings else label} for text, label in ROWS])
    write_rows(validation, [{"sentence": "w1", "label": "1" if strings else 1}, row])
    message = refused(monkeypatch, text_argv(bert, train, tmp_path / "out", "--validation_file", str(validation)))
    assert message.startswith(
        f"--{option} is empty in 1 of 2 rows of the validation data (--validation_file {validation}): row 1 "
    ), message


# ----------------------------------------------------------------------------------------------------------------
# text: no rows
@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("train.csv", "", "no text"),
        ("train.csv", "\n\n", "no text"),
        ("train.csv", "sentence,label\n", "only a header"),
        ("train.tsv", "sentence\tlabel\n\n", "only a header"),
        ("train.json", "[ ]", "no records"),
        ("train.jsonl", "\n", "no text"),
    ],
)
def test_a_file_without_rows_is_refused(tmp_path, monkeypatch, bert, name, content, what):
    train = tmp_path / name
    train.write_text(content)
    message = refused(monkeypatch, text_argv(bert, train, tmp_path / "out"))
    assert message == f"--train_file {train} has no rows (it holds {what}); give a file with at least one row."


def test_a_split_without_rows_is_refused():
    empty = datasets.Dataset.from_dict({"sentence": [], "label": []})
    data = TextDataArguments(dataset_name="someone/reviews")
    with pytest.raises(
        ValueError, match=r"^The train data \(--dataset_name someone/reviews\) has no rows; give data "
    ):
        check_text_values(empty, data, "train")


# ----------------------------------------------------------------------------------------------------------------
# text: labels outside the classes
def test_a_validation_label_the_train_data_lacks_is_refused(tmp_path, monkeypatch, bert):
    train, validation = tmp_path / "train.csv", tmp_path / "validation.csv"
    train.write_text(csv_text([(text, "pos" if label else "neg") for text, label in ROWS]))
    validation.write_text(csv_text([("w1 w2", "pos"), ("w3", "neutral")]))
    message = refused(monkeypatch, text_argv(bert, train, tmp_path / "out", "--validation_file", str(validation)))
    assert message == (
        "--label_column 'label' of the validation data holds labels ['neutral'] that the train data does not have; "
        "allowed: ['neg', 'pos']. Every class needs training rows: add them to the train data, or remove those rows."
    )


def test_labels_that_are_not_a_named_checkpoints_classes_are_refused(tmp_path, monkeypatch, named_bert):
    train = tmp_path / "train.csv"
    train.write_text(csv_text([(text, "pos" if label else "neg") for text, label in ROWS]))
    message = refused(monkeypatch, text_argv(named_bert, train, tmp_path / "out"))
    assert message == (
        f"--label_column 'label' of the train data holds labels ['neg', 'pos'] that are not classes of the model "
        f"{named_bert}; allowed: its label names ['negative', 'positive'] or their ids 0-1. Map the labels to those, or "
        "pass --ignore_mismatched_sizes to train a new classifier for the data's labels."
    )
    train.write_text(csv_text([(text, label + 1) for text, label in ROWS]))  # 2 is no id of its 2 classes
    assert "holds labels [2] that are not classes of the model" in refused(
        monkeypatch, text_argv(named_bert, train, tmp_path / "out")
    )


def test_a_named_checkpoint_reads_its_names_and_ids(tmp_path, monkeypatch, named_bert):
    train = tmp_path / "train.csv"
    names = ["positive", "negative"]  # the first row is positive: a sorted-data mapping would make it id 0
    train.write_text(csv_text([(text, names[i % 2]) for i, (text, _) in enumerate(ROWS)]))
    labels, id2label = trained_labels(monkeypatch, text_argv(named_bert, train, tmp_path / "names"))
    assert id2label == {0: "negative", 1: "positive"}
    assert labels == [1 - i % 2 for i in range(len(ROWS))]  # by name: positive is id 1
    train.write_text(csv_text([(text, i % 2) for i, (text, _) in enumerate(ROWS)]))  # ids
    labels, id2label = trained_labels(monkeypatch, text_argv(named_bert, train, tmp_path / "ids"))
    assert id2label == {0: "negative", 1: "positive"} and labels == [i % 2 for i in range(len(ROWS))]
    train.write_text(csv_text([(text, "pos" if i % 2 else "neg") for i, (text, _) in enumerate(ROWS)]))
    argv = text_argv(named_bert, train, tmp_path / "new", "--ignore_mismatched_sizes")
    assert trained_labels(monkeypatch, argv)[1] == {0: "neg", 1: "pos"}  # a new classifier for the data's labels


# ----------------------------------------------------------------------------------------------------------------
# images
def make_images(root, classes=("cat", "dog"), per_class=3):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (20, 12), (60 * c, 40 * i, 90)).save(root / name / f"{i}.png")
    return root


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    noise = torch.randint(0, 256, (48, 48, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    Image.fromarray(noise.numpy()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_argv(model: str, out, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", model, "--output_dir", str(out), "--do_train", "--max_steps", "1",
        "--per_device_train_batch_size", "2", "--report_to", "none", "--use_cpu", "--save_strategy", "no", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.png", b"not an image at all", "UnidentifiedImageError: cannot identify image file"),
        ("truncated.jpg", jpeg_bytes()[:1300], "OSError: image file is truncated"),
    ],
)
def test_an_image_that_does_not_decode_is_refused_naming_it(tmp_path, monkeypatch, vit, name, content, reason):
    train = make_images(tmp_path / "images" / "train")
    (train / "dog" / name).write_bytes(content)
    message = refused(monkeypatch, image_argv(vit, tmp_path / "out", "--train_dir", str(train)))
    assert message.startswith(
        f"1 of the 7 images of the train data (--train_dir {train}) does not decode: {train / 'dog' / name} ({reason}"
    ), message
    assert message.endswith("Remove or replace it (or pass --verify_images false to skip this check).")


def test_every_image_that_does_not_decode_is_named_and_the_check_can_be_skipped(tmp_path, monkeypatch, vit):
    root = tmp_path / "images"
    make_images(root / "train")
    make_images(root / "validation")
    (root / "train" / "cat" / "a.png").write_bytes(b"")
    (root / "validation" / "dog" / "b.jpg").write_bytes(b"\xff\xd8 no more")
    message = refused(monkeypatch, image_argv(vit, tmp_path / "out", "--data_dir", str(root)))
    assert message.startswith(f"1 of the 7 images of the train data (--data_dir {root}) does not decode: ")
    (root / "train" / "cat" / "a.png").unlink()
    message = refused(monkeypatch, image_argv(vit, tmp_path / "out", "--data_dir", str(root)))
    assert (
        f"of the validation data (--data_dir {root}) does not decode: {root / 'validation' / 'dog' / 'b.jpg'}"
        in message
    )
    raw = load_image_datasets(ImageDataArguments(data_dir=str(root), verify_images=False))  # left to training
    assert len(raw["validation"]) == 7


def test_class_folders_without_images_are_refused(tmp_path, monkeypatch, vit):
    train = tmp_path / "train"
    for name in ("cat", "dog"):
        (train / name).mkdir(parents=True)
        (train / name / "notes.txt").write_text("not an image")
    message = refused(monkeypatch, image_argv(vit, tmp_path / "out", "--train_dir", str(train)))
    assert message == (
        f"--train_dir {str(train)!r} has the class folders ['cat', 'dog'] but no image files in them (a .png, .jpg, "
        "... file); give a folder with images."
    )


def test_a_validation_class_the_train_images_lack_is_refused(tmp_path, monkeypatch, vit):
    root = tmp_path / "images"
    make_images(root / "train")
    make_images(root / "validation", classes=("cat", "dog", "bird"), per_class=1)
    message = refused(monkeypatch, image_argv(vit, tmp_path / "out", "--data_dir", str(root)))
    assert message.startswith("--label_column 'label' of the validation data holds labels ['bird'] that the train ")
