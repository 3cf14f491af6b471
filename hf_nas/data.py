"""Data for the scripts: text classification (a Hub dataset or local csv/tsv/json files, tokenized for a model) and
image classification (a Hub dataset, imagefolder folders or a .tar.gz of one, turned into `pixel_values` by the
checkpoint's image processor)."""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets
from datasets import load_dataset

from .models.families import family_for_checkpoint

__all__ = [
    "TEXT_PAIR_COLUMNS",
    "HelpFormatter",
    "ImageClassificationCollator",
    "ImageClassificationTransform",
    "ImageDataArguments",
    "TextDataArguments",
    "argument_from_command_line",
    "check_data_paths",
    "check_images",
    "check_local_path",
    "check_text_columns",
    "check_text_values",
    "checkpoint_modality",
    "classification_labels",
    "data_arguments_class",
    "extract_archive",
    "image_label_names",
    "load_image_datasets",
    "load_image_processor",
    "load_text_datasets",
    "named_labels",
    "needs_interpolate_pos_encoding",
    "pick_image_column",
    "pick_text_column",
    "prepare_image_datasets",
    "processor_image_size",
    "text_columns",
    "tokenize_classification",
]

logger = logging.getLogger(__name__)

_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")
# The text columns of the GLUE tasks (run_glue.py's `task_to_keys`): the sentence-pair ones, in the order they are
# tried (QNLI's question/sentence before the single `sentence` of CoLA and SST-2).
TEXT_PAIR_COLUMNS = (
    ("sentence1", "sentence2"),  # MRPC, STS-B, RTE, WNLI
    ("question1", "question2"),  # QQP
    ("premise", "hypothesis"),  # MNLI
    ("question", "sentence"),  # QNLI
)
_SINGLE_TEXT_COLUMNS = ("sentence", "text")
_ID_COLUMNS = ("id", "idx", "guid", "uid")  # string ids are not texts
_STATES_DEFAULT = re.compile(r"\(default[:)]|\bdefault:", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The `--help` formatter of the hf-nas commands: each option's help ends with its default, `(default: X)`, once.

    The default is not appended to options that are required, to switches (`--no_*`), or to options whose help states
    their default already (as in "Default: the checkpoint's"), so an option whose default is `None` does not read
    "(default: None)" after it. Lines are wrapped at spaces only: paths and Hub ids stay whole, to be copied.

    Example:

    ```python
    >>> import argparse
    >>> from hf_nas.data import HelpFormatter
    >>> parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    >>> _ = parser.add_argument("--size", type=int, default=8, help="Batch size.")
    >>> _ = parser.add_argument("--column", default=None, help="A text column (default: the first).")
    >>> formatter = parser._get_formatter()
    >>> [formatter._expand_help(action) for action in parser._actions[1:]]
    ['Batch size. (default: 8)', 'A text column (default: the first).']
    ```
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.required or action.nargs == 0 or _STATES_DEFAULT.search(help_text):  # nargs 0: a --no_* switch
            return help_text
        return super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


@dataclass
class TextDataArguments:
    """Where the text-classification data comes from and how it is tokenized (run_glue.py's options).

    The text column(s) are found as run_glue.py finds them when not given: a GLUE sentence pair
    ([`TEXT_PAIR_COLUMNS`], e.g. `sentence1`/`sentence2` or `premise`/`hypothesis`), else `sentence` or `text`, else
    the two text columns besides the label when there are exactly two (a pair), else the first text column. Commands
    log the columns they use.
    """

    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub (e.g. nyu-mll/glue)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration (e.g. sst2)."})
    train_file: str | None = field(default=None, metadata={"help": "A local csv, tsv or json(l) training file."})
    validation_file: str | None = field(
        default=None, metadata={"help": "A local csv, tsv or json(l) validation file."}
    )
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "Column of the (first) text. Default: a GLUE sentence pair (sentence1/sentence2, "
            "question1/question2, premise/hypothesis, question/sentence), else sentence or text, else the two text "
            "columns besides the label when there are exactly two, else the first text column."
        },
    )
    text_pair_column: str | None = field(
        default=None,
        metadata={"help": "Column of the second text of sentence pairs. Default: found with --text_column."},
    )
    label_column: str = field(default="label", metadata={"help": "Column of the class labels."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Longest tokenized input (text and pair together); longer ones are truncated."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on this many training rows, a subset shuffled with --seed. Default: all."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Evaluate on this many validation rows, a subset shuffled with --seed. Default: all."},
    )
    metrics: str = field(default="accuracy", metadata={"help": "Comma-separated evaluate metrics."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None and self.validation_file is None:
            raise ValueError("Give --dataset_name, or --train_file / --validation_file (csv, tsv or json).")
        for option in ("train_file", "validation_file"):
            path = getattr(self, option)
            if path is not None and os.path.splitext(path)[1] not in _EXTENSIONS:
                raise ValueError(f"--{option} {path}: unsupported file type; allowed: {', '.join(_EXTENSIONS)}.")
        for option in ("max_seq_length", "max_train_samples", "max_eval_samples"):
            value = getattr(self, option)
            if value is not None and value < 1:
                raise ValueError(f"--{option} must be a positive number, got {value}.")


def checkpoint_modality(pretrained_model_name_or_path: str | os.PathLike) -> str:
    """`"text"` or `"image"`: the data a vanilla checkpoint or a saved supernet reads, by its model type.

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import ViTConfig
    >>> from hf_nas.data import checkpoint_modality
    >>> folder = tempfile.mkdtemp()
    >>> ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4).save_pretrained(folder)
    >>> checkpoint_modality(folder)
    'image'
    ```
    """
    return family_for_checkpoint(pretrained_model_name_or_path).modality


def data_arguments_class(pretrained_model_name_or_path: str | os.PathLike) -> type:
    """[`TextDataArguments`] or [`ImageDataArguments`], for the data the checkpoint reads."""
    return ImageDataArguments if checkpoint_modality(pretrained_model_name_or_path) == "image" else TextDataArguments


def argument_from_command_line(name: str, argv: list[str] | None = None) -> str | None:
    """The value of `--name` in a script's command line (`argv`, default `sys.argv[1:]`), or of `name` in its one JSON
    file, before the full parse; None if absent. Scripts use it to choose their data arguments by the checkpoint.

    Example:

    ```python
    >>> from hf_nas.data import argument_from_command_line
    >>> argument_from_command_line("model_name_or_path", ["--model_name_or_path", "vit", "--max_steps", "5"])
    'vit'
    ```
    """
    import argparse
    import json
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0]) as f:
            value = json.load(f).get(name)
        return None if value is None else str(value)
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(f"--{name}")
    known, _ = parser.parse_known_args(argv)
    return getattr(known, name)


def check_local_path(option: str, path: str | os.PathLike, kind: str = "file") -> str:
    """`path`, given with the command-line option `option`, if it exists here; else a `ValueError` of one line naming
    it. Remote data files (`https://...`, `hf://...`) are left to the loader. `kind` (`"file"`, `"folder"`, or
    `"folder or archive"`) only words the message.

    Example:

    ```python
    >>> from hf_nas.data import check_local_path
    >>> check_local_path("--train_file", "data/sst2_sampel.tsv")
    Traceback (most recent call last):
        ...
    ValueError: --train_file data/sst2_sampel.tsv does not exist (no such local file).
    ```
    """
    path = os.fspath(path)
    if "://" not in path and not os.path.exists(os.path.expanduser(path)):
        detail = f"no such local {kind}"
        if kind == "folder or archive":
            detail = f"it is neither a folder nor a {'/'.join(_ARCHIVE_EXTENSIONS)} archive here"
        raise ValueError(f"{option} {path} does not exist ({detail}).")
    return path


def check_data_paths(data: TextDataArguments | ImageDataArguments) -> None:
    """Check that the local files and folders of `data` (`--train_file`, `--validation_file`, `--data_dir`,
    `--train_dir`, `--validation_dir`) exist, before anything is loaded; see [`check_local_path`]."""
    for option, kind in (
        ("train_file", "file"),
        ("validation_file", "file"),
        ("data_dir", "folder or archive"),
        ("train_dir", "folder or archive"),
        ("validation_dir", "folder or archive"),
    ):
        path = getattr(data, option, None)
        if path is not None:
            check_local_path(f"--{option}", path, kind)


def load_text_datasets(data: TextDataArguments) -> datasets.DatasetDict:
    """The raw splits: `train` and/or `validation` from local files, or the Hub dataset's splits.

    The local files must exist, and the `train` and `validation` splits must have the text, pair and label columns of
    `data` ([`text_columns`]); otherwise a `ValueError` names the option, the column and the columns there are. The
    columns used are logged (INFO). A file or split without rows, and rows without a label or a text (an empty cell),
    are refused too ([`check_text_values`]), naming the file and the rows.
    """
    check_data_paths(data)
    if data.dataset_name is not None:
        raw = load_dataset(data.dataset_name, data.dataset_config_name)
    else:
        files = {k: v for k, v in (("train", data.train_file), ("validation", data.validation_file)) if v is not None}
        for split, path in files.items():
            _check_file_has_rows(path, f"--{split}_file")
        extension = os.path.splitext(next(iter(files.values())))[1]
        if extension == ".tsv":
            raw = load_dataset("csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            raw = load_dataset("json" if extension in (".json", ".jsonl") else "csv", data_files=files)
    read = {split: ds for split, ds in raw.items() if split in ("train", "validation")} or dict(raw)
    used = {split: check_text_columns(ds, data, split) for split, ds in read.items()}
    for split, ds in read.items():
        check_text_values(ds, data, split, used[split])
    for columns in dict.fromkeys(used.values()):  # one line, unless the splits differ
        splits = [split for split, c in used.items() if c == columns]
        logger.info(
            "text column(s): %s (%s); label column: %r%s",
            " and ".join(repr(c) for c in columns if c is not None),
            "a sentence pair" if columns[1] is not None else "one text",
            data.label_column,
            "" if len(splits) == len(used) else f" (splits {', '.join(splits)})",
        )
        _hint_pair(read[splits[0]].column_names, data, *columns)
    return raw


def _check_file_has_rows(path: str, option: str) -> None:
    """Refuse a local csv/tsv/json(l) file without data rows (empty, blank, a header only, or `[]`) before it is
    loaded, in one line naming it (the loader's own error does not)."""
    if "://" in path or not os.path.isfile(path):
        return
    extension = os.path.splitext(path)[1]
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = []
        for line in f:
            if line.strip():
                lines.append(line.strip())
            if len(lines) == 2:
                break
    if extension in (".csv", ".tsv") and len(lines) < 2:
        what = "only a header" if lines else "no text"
    elif not lines or (extension == ".json" and re.fullmatch(r"\[\s*\]", "".join(lines))):
        what = "no records" if lines else "no text"
    else:
        return
    raise ValueError(f"{option} {path} has no rows (it holds {what}); give a file with at least one row.")


def _split_source(data: TextDataArguments | ImageDataArguments, split: str) -> str:
    """Where a split comes from, for messages: `--train_file x.csv`, `--train_dir x`, or `--dataset_name x`."""
    if data.dataset_name is not None:
        return f"--dataset_name {data.dataset_name}"
    for option in (f"{split}_file", f"{split}_dir", "data_dir"):
        if getattr(data, option, None) is not None:
            return f"--{option} {getattr(data, option)}"
    return split


def check_text_values(
    dataset: datasets.Dataset, data: TextDataArguments, split: str, columns: tuple[str, str | None] | None = None
) -> None:
    """Refuse a split without rows, or with rows whose label or text is missing (an empty cell of a csv/tsv file,
    a null in json; a blank label counts as missing, a blank text does not): one `ValueError` names the option and
    column, the source and the first rows (counted from 0, not counting a header line).

    Example:

    ```python
    >>> import datasets
    >>> from hf_nas.data import TextDataArguments, check_text_values
    >>> dataset = datasets.Dataset.from_dict({"sentence": ["a b", "c", "d"], "label": [0, None, 1]})
    >>> check_text_values(dataset, TextDataArguments(train_file="train.csv"), "train")
    Traceback (most recent call last):
        ...
    ValueError: --label_column 'label' is empty in 1 of 3 rows of the train data (--train_file train.csv): row 1 (counted from 0, not counting a header line). Every row needs a label and a text: fill in or remove those rows.
    ```
    """
    source = _split_source(data, split)
    if len(dataset) == 0:
        raise ValueError(f"The {split} data ({source}) has no rows; give data with at least one row.")
    text, pair = columns if columns is not None else text_columns(dataset, data)
    options = (("label_column", data.label_column, True), ("text_column", text, False))
    for option, column, blank in (*options, ("text_pair_column", pair, False)):
        rows = _missing_rows(dataset, column, blank) if column is not None else []
        if rows:
            shown = ", ".join(str(r) for r in rows[:10]) + (f", ... ({len(rows)} rows)" if len(rows) > 10 else "")
            raise ValueError(
                f"--{option} {column!r} is empty in {len(rows)} of {len(dataset)} rows of the {split} data ({source}): "
                f"row{'s' if len(rows) > 1 else ''} {shown} (counted from 0, not counting a header line). Every row "
                "needs a label and a text: fill in or remove those rows."
            )


def _missing_rows(dataset: datasets.Dataset, column: str, blank_is_missing: bool) -> list[int]:
    """The rows of `dataset` whose `column` is null or NaN (or, with `blank_is_missing`, a blank string)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows: list[int] = []
    offset = 0
    for batch in dataset.with_format("arrow").iter(batch_size=10_000):
        values = batch[column]
        missing = pc.is_null(values, nan_is_null=True)
        if blank_is_missing and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            missing = pc.or_(missing, pc.fill_null(pc.equal(pc.utf8_trim_whitespace(values), ""), False))
        rows.extend(offset + i for i in pc.indices_nonzero(missing).to_pylist())
        offset += len(batch)
    return rows


def named_labels(config: Any) -> dict[str, int] | None:
    """The `label2id` of a checkpoint's config (a config object or its dict) when its labels have names, else None:
    transformers' placeholder names (`LABEL_0`, ...) and no labels at all mean that the labels are not set.

    Example:

    ```python
    >>> from hf_nas.data import named_labels
    >>> named_labels({"label2id": {"negative": 0, "positive": 1}}), named_labels({"label2id": {"LABEL_0": 0}})
    ({'negative': 0, 'positive': 1}, None)
    ```
    """
    label2id = config.get("label2id") if isinstance(config, Mapping) else getattr(config, "label2id", None)
    if not label2id or all(name == f"LABEL_{i}" for name, i in label2id.items()):
        return None
    return {str(name): int(i) for name, i in label2id.items()}


def classification_labels(
    labels: Mapping[str, Any],
    label_column: str = "label",
    model_label2id: Mapping[str, int] | None = None,
    model: str | None = None,
    sort: bool = True,
) -> tuple[dict[int, str], dict[Any, int]]:
    """The classes of a classification run: `id2label` for the model's config, and the id of every label value found
    in the data.

    `labels` maps each split (`train` first) to its label values (e.g. a label column). Without `model_label2id`
    the classes are the train split's distinct labels, sorted (`sort=False`: in their order). With it, the labels of a checkpoint whose classes are
    set ([`named_labels`]; `model` names it in messages), the classes are the model's: a label value is one of its
    names, or else an integer id of one. Either way every label of every split must be a class; otherwise a
    `ValueError` names the column, the split, the labels that are not and those allowed.

    Example:

    ```python
    >>> from hf_nas.data import classification_labels
    >>> classification_labels({"train": ["pos", "neg", "pos"]})
    ({0: 'neg', 1: 'pos'}, {'neg': 0, 'pos': 1})
    >>> classification_labels({"train": [0, 1]}, model_label2id={"negative": 0, "positive": 1})  # ids of its classes
    ({0: 'negative', 1: 'positive'}, {0: 0, 1: 1})
    >>> classification_labels({"train": ["neg", "pos"]}, model_label2id={"negative": 0, "positive": 1}, model="sst2")
    Traceback (most recent call last):
        ...
    ValueError: --label_column 'label' of the train data holds labels ['neg', 'pos'] that are not classes of the model sst2; allowed: its label names ['negative', 'positive'] or their ids 0-1. Map the labels to those, or pass --ignore_mismatched_sizes to train a new classifier for the data's labels.
    ```
    """
    values = {split: list(dict.fromkeys(column)) for split, column in labels.items()}
    if sort:
        values = {split: sorted(split_values, key=_label_order) for split, split_values in values.items()}
    if model_label2id is None:
        first = next(iter(values.values()), [])
        id2label = {i: str(v) for i, v in enumerate(first)}
        known = {v: i for i, v in enumerate(first)}
    else:
        id2label = {i: name for name, i in sorted(model_label2id.items(), key=lambda item: item[1])}
        known = {}
        for value in dict.fromkeys(v for split_values in values.values() for v in split_values):
            if str(value) in model_label2id:
                known[value] = model_label2id[str(value)]
            elif isinstance(value, int) and not isinstance(value, bool) and value in id2label:
                known[value] = value
    for split, split_values in values.items():
        unknown = [v for v in split_values if v not in known]
        if unknown:
            raise ValueError(_unknown_labels_message(unknown, split, label_column, id2label, model_label2id, model))
    return id2label, known


def _label_order(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _unknown_labels_message(
    unknown: list, split: str, column: str, id2label: dict[int, str], fixed: Mapping | None, model: str | None
) -> str:
    start = f"--label_column {column!r} of the {split} data holds labels {unknown}"
    if fixed is None:
        return (
            f"{start} that the train data does not have; allowed: {list(id2label.values())}. Every class needs "
            "training rows: add them to the train data, or remove those rows."
        )
    return (
        f"{start} that are not classes of the model{f' {model}' if model else ''}; allowed: its label names "
        f"{list(id2label.values())} or their ids 0-{len(id2label) - 1}. Map the labels to those, or pass "
        "--ignore_mismatched_sizes to train a new classifier for the data's labels."
    )


def _hint_pair(names: list[str], data: TextDataArguments, text: str, pair: str | None) -> None:
    """Warn when a given --text_column is read alone but the data has its usual second text."""
    partner = next((b for a, b in TEXT_PAIR_COLUMNS if a == text and b in names), None)
    if data.text_column is not None and pair is None and partner is not None:
        logger.warning(
            "--text_column %r is read alone; the data also has %r, its usual second text: pass --text_pair_column %s "
            "to train on the pairs.",
            text,
            partner,
            partner,
        )


def _string_columns(dataset: datasets.Dataset) -> list[str]:
    return [
        c for c in dataset.column_names if getattr(dataset.features[c], "dtype", None) in ("string", "large_string")
    ]


def pick_text_column(dataset: datasets.Dataset) -> str:
    """`sentence` or `text` if present, else the first column of strings."""
    for name in _SINGLE_TEXT_COLUMNS:
        if name in dataset.column_names:
            return name
    strings = _string_columns(dataset)
    if not strings:
        raise ValueError(f"No text column found among {dataset.column_names}; pass --text_column.")
    return strings[0]


def text_columns(dataset: datasets.Dataset, data: TextDataArguments) -> tuple[str, str | None]:
    """The text column and the pair column (None for single texts) that `data` reads from `dataset`: the given
    `text_column` / `text_pair_column`, or found as run_glue.py does (see [`TextDataArguments`]).

    Example:

    ```python
    >>> import datasets
    >>> from hf_nas.data import TextDataArguments, text_columns
    >>> rte = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [0], "idx": [0]})
    >>> text_columns(rte, TextDataArguments(dataset_name="nyu-mll/glue"))
    ('sentence1', 'sentence2')
    >>> sst2 = datasets.Dataset.from_dict({"sentence": ["a"], "label": [0], "idx": [0]})
    >>> text_columns(sst2, TextDataArguments(dataset_name="nyu-mll/glue"))
    ('sentence', None)
    ```
    """
    names = dataset.column_names
    if data.text_column is not None:
        return data.text_column, data.text_pair_column
    if data.text_pair_column is not None:  # the pair is given: its known first text, else the first other text
        first = next((a for a, b in TEXT_PAIR_COLUMNS if b == data.text_pair_column and a in names), None)
        others = [c for c in _string_columns(dataset) if c not in (data.text_pair_column, data.label_column)]
        if first is None and not others:
            raise ValueError(f"No text column besides --text_pair_column found among {names}; pass --text_column.")
        return first or others[0], data.text_pair_column
    for first, second in TEXT_PAIR_COLUMNS:
        if first in names and second in names:
            return first, second
    for name in _SINGLE_TEXT_COLUMNS:
        if name in names:
            return name, None
    texts = [c for c in _string_columns(dataset) if c != data.label_column and c.lower() not in _ID_COLUMNS]
    if len(texts) == 2:
        return texts[0], texts[1]
    if not texts:
        raise ValueError(f"No text column found among {names}; pass --text_column.")
    return texts[0], None


def check_text_columns(
    dataset: datasets.Dataset, data: TextDataArguments, split: str = "train"
) -> tuple[str, str | None]:
    """[`text_columns`] of `dataset`, after checking that they and the label column are columns of it: else one
    `ValueError` names each missing option and column, and the columns there are.

    Example:

    ```python
    >>> import datasets
    >>> from hf_nas.data import TextDataArguments, check_text_columns
    >>> dataset = datasets.Dataset.from_dict({"sentence": ["a"], "label": [0]})
    >>> check_text_columns(dataset, TextDataArguments(train_file="train.csv", text_column="sentense"))
    Traceback (most recent call last):
        ...
    ValueError: --text_column 'sentense' is not a column of the train data; its columns: ['sentence', 'label'].
    ```
    """
    text, pair = text_columns(dataset, data)
    options = (("text_column", text), ("text_pair_column", pair), ("label_column", data.label_column))
    missing = [
        (option, column) for option, column in options if column is not None and column not in dataset.column_names
    ]
    if missing:
        named = " and ".join(f"--{option} {column!r}" for option, column in missing)
        verb = "is not a column" if len(missing) == 1 else "are not columns"
        raise ValueError(f"{named} {verb} of the {split} data; its columns: {dataset.column_names}.")
    return text, pair


def tokenize_classification(
    dataset: datasets.Dataset, tokenizer: Any, data: TextDataArguments, label2id: Mapping[Any, int]
) -> datasets.Dataset:
    """Tokenize `dataset` (its [`text_columns`]: one text, or a pair encoded together; truncated to
    `max_seq_length`, unpadded) and map its labels to ids."""
    text_column, pair_column = check_text_columns(dataset, data)

    def preprocess(batch):
        texts = (batch[text_column],) if pair_column is None else (batch[text_column], batch[pair_column])
        encoded = tokenizer(*texts, truncation=True, max_length=data.max_seq_length)
        try:
            encoded["labels"] = [label2id[label] for label in batch[data.label_column]]
        except KeyError as e:
            raise ValueError(f"Label {e.args[0]!r} is not one of the model's labels {list(label2id)}.") from None
        return encoded

    return dataset.map(preprocess, batched=True, remove_columns=dataset.column_names, desc="tokenize")


# ----------------------------------------------------------------------------------------------------------------
# image classification
_ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".tar")
_VALIDATION_SPLITS = ("validation", "val", "valid", "test")  # the first one present is the validation split


@dataclass
class ImageDataArguments:
    """Where the image-classification data comes from and how images become `pixel_values`.

    The data is a dataset on the Hub (`dataset_name`), or local folders in the `imagefolder` layout: `data_dir` holds
    split folders (`train/` and `validation/`, `val/` or `test/`), each with one folder of images per class, while
    `train_dir` / `validation_dir` are class folders of one split. Each of them may also be a `.tar.gz` archive of such
    a folder, extracted once to `cache_dir`.

    Example:

    ```python
    >>> from hf_nas.data import ImageDataArguments
    >>> args = ImageDataArguments(data_dir="data/cifar10_sample", image_size=56)
    >>> args.image_size
    56
    ```
    """

    dataset_name: str | None = field(default=None, metadata={"help": "An image dataset on the Hub (e.g. cifar10)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "An imagefolder with split folders (train/ and validation/, val/ or test/), or a .tar.gz of one."
        },
    )
    train_dir: str | None = field(
        default=None, metadata={"help": "Training images: a folder of class folders (imagefolder), or a .tar.gz."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "Validation images: a folder of class folders (imagefolder), or a .tar.gz."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where archives are extracted (default: ~/.cache/hf_nas/archives)."}
    )
    image_column: str | None = field(
        default=None, metadata={"help": "Column of the images. Default: image, img or the first column of images."}
    )
    label_column: str = field(default="label", metadata={"help": "Column of the class labels."})
    image_size: int | None = field(
        default=None, metadata={"help": "Resize images to this many pixels square (default: the image processor's)."}
    )
    interpolate_pos_encoding: bool | None = field(
        default=None,
        metadata={
            "help": "Interpolate the position embeddings to the image size (default: when --image_size differs from "
            "the checkpoint's image_size)."
        },
    )
    random_flip: bool = field(default=False, metadata={"help": "Flip training images horizontally at random."})
    verify_images: bool = field(
        default=True,
        metadata={
            "help": "Decode every image read (after --max_train_samples / --max_eval_samples) before training and "
            "refuse files that do not decode, naming them. --verify_images false skips this pass over the data for "
            "very large datasets: an unreadable image then stops the run when it is read."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on this many training images, a subset shuffled with --seed. Default: all."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Evaluate on this many validation images, a subset shuffled with --seed. Default: all."},
    )
    metrics: str = field(default="accuracy", metadata={"help": "Comma-separated evaluate metrics."})

    def __post_init__(self):
        local = [f"--{n}" for n in ("data_dir", "train_dir", "validation_dir") if getattr(self, n) is not None]
        if self.dataset_name is None and not local:
            raise ValueError(
                "Give --dataset_name (a Hub image dataset), --data_dir (an imagefolder with split folders), or "
                "--train_dir / --validation_dir (folders of class folders); each folder may be a .tar.gz archive."
            )
        if self.dataset_name is not None and local:
            raise ValueError(f"Give either --dataset_name or local folders, not both; got --dataset_name and {local}.")
        if self.data_dir is not None and (self.train_dir is not None or self.validation_dir is not None):
            raise ValueError(
                "Give either --data_dir (with split folders) or --train_dir / --validation_dir, not both."
            )
        if self.image_size is not None and (isinstance(self.image_size, bool) or self.image_size < 1):
            raise ValueError(f"--image_size must be a positive number of pixels, got {self.image_size}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive number of examples, got {value}.")


def _is_archive(path: str) -> bool:
    return path.endswith(_ARCHIVE_EXTENSIONS)


def extract_archive(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Extract a `.tar.gz` / `.tgz` / `.tar` archive once and return the folder holding its contents.

    The folder is named after the archive's name, size and modification time under `cache_dir` (default:
    `~/.cache/hf_nas/archives`), so a second call reuses it; extraction goes through a temporary folder renamed into
    place when complete, and only regular files and folders inside the archive are written (`tarfile`'s `data`
    filter).

    Example:

    ```python
    >>> import os, tarfile, tempfile
    >>> from hf_nas.data import extract_archive
    >>> root = tempfile.mkdtemp()
    >>> with tarfile.open(os.path.join(root, "images.tar.gz"), "w:gz") as archive:
    ...     for split in ("train", "test"):
    ...         os.makedirs(os.path.join(root, split, "cat"))
    ...         archive.add(os.path.join(root, split), arcname=split)
    >>> folder = extract_archive(os.path.join(root, "images.tar.gz"), cache_dir=os.path.join(root, "cache"))
    >>> sorted(os.listdir(folder))
    ['test', 'train']
    ```
    """
    import hashlib
    import tarfile

    from .utils import atomic_directory

    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such archive.")
    if not _is_archive(path):
        raise ValueError(f"{path}: unsupported archive type; allowed: {', '.join(_ARCHIVE_EXTENSIONS)}.")
    stat = os.stat(path)
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    name = os.path.basename(path)
    for extension in _ARCHIVE_EXTENSIONS:
        name = name.removesuffix(extension)
    cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "hf_nas", "archives")
    folder = os.path.join(os.fspath(cache_dir), f"{name}-{key}")
    if not os.path.isdir(folder):
        with atomic_directory(folder) as tmp, tarfile.open(path) as archive:
            archive.extractall(tmp, filter="data")
    return folder


def _local_folder(path: str, cache_dir: str | None, option: str) -> str:
    if os.path.isfile(path) and _is_archive(path):
        return extract_archive(path, cache_dir)
    if not os.path.isdir(path):
        raise ValueError(f"--{option} {path!r} is neither a folder nor a {'/'.join(_ARCHIVE_EXTENSIONS)} archive.")
    return path


def _check_class_folders(path: str, option: str) -> None:
    """An imagefolder split: at least one class folder, and image files in them."""
    classes = [e for e in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, e))]
    if not classes:
        raise ValueError(
            f"--{option} {path!r} has no class folders; the imagefolder layout is {option}/<class>/<image>, e.g. "
            f"{option}/cat/0001.jpg."
        )
    if not any(_holds_image_file(os.path.join(path, c)) for c in classes):
        raise ValueError(
            f"--{option} {path!r} has the class folders {classes} but no image files in them (a .png, .jpg, ... "
            "file); give a folder with images."
        )


def _holds_image_file(folder: str) -> bool:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    extensions = {e.lower() for e in ImageFolder.EXTENSIONS}
    return any(os.path.splitext(name)[1].lower() in extensions for _, _, names in os.walk(folder) for name in names)


def _validation_split(splits: list[str]) -> str | None:
    return next((s for s in _VALIDATION_SPLITS if s in splits), None)


def load_image_datasets(data: ImageDataArguments, seed: int = 0) -> datasets.DatasetDict:
    """The raw image splits `train` and/or `validation` (undecoded transforms come later: [`image_transform`]).

    Hub datasets and `data_dir` folders keep their `train` split, and the first of `validation`, `val`, `valid` or
    `test` as `validation`. `max_train_samples` / `max_eval_samples` select a subset shuffled with `seed`. The image
    column must hold images (a `datasets.Image` feature) and the label column must exist; otherwise a `ValueError`
    names the columns found. A split must have images (a class folder without image files does not count), and with
    `verify_images` (the default) every image read must decode: else one `ValueError` names the files that do not
    ([`check_images`]); such files are refused, not skipped.

    Example:

    ```python
    >>> import os, tempfile
    >>> from PIL import Image
    >>> from hf_nas.data import ImageDataArguments, load_image_datasets
    >>> data_dir = tempfile.mkdtemp()  # imagefolder layout: <split>/<class>/<image>
    >>> for split in ("train", "test"):
    ...     for name in ("cat", "dog"):
    ...         os.makedirs(os.path.join(data_dir, split, name))
    ...         Image.new("RGB", (32, 32)).save(os.path.join(data_dir, split, name, "0.png"))
    >>> raw = load_image_datasets(ImageDataArguments(data_dir=data_dir))
    >>> sorted(raw), raw["train"].features["label"].names
    (['train', 'validation'], ['cat', 'dog'])
    ```
    """
    check_data_paths(data)
    if data.dataset_name is not None:
        loaded = load_dataset(data.dataset_name, data.dataset_config_name)
        raw = _train_and_validation(loaded, data.dataset_name)
    elif data.data_dir is not None:
        folder = _local_folder(data.data_dir, data.cache_dir, "data_dir")
        splits = [e for e in sorted(os.listdir(folder)) if os.path.isdir(os.path.join(folder, e))]
        if "train" not in splits and _validation_split(splits) is None:
            raise ValueError(
                f"--data_dir {data.data_dir!r} has the folders {splits}; expected split folders: train and one of "
                f"{list(_VALIDATION_SPLITS)}, each holding one folder per class. For a single folder of class folders "
                "use --train_dir or --validation_dir."
            )
        files = {}
        if "train" in splits:
            _check_class_folders(os.path.join(folder, "train"), "data_dir/train")
            files["train"] = os.path.join(folder, "train", "**")
        validation = _validation_split(splits)
        if validation is not None:
            _check_class_folders(os.path.join(folder, validation), f"data_dir/{validation}")
            files["validation"] = os.path.join(folder, validation, "**")
        raw = load_dataset("imagefolder", data_files=files)
    else:
        files = {}
        for split, option in (("train", "train_dir"), ("validation", "validation_dir")):
            path = getattr(data, option)
            if path is None:
                continue
            folder = _local_folder(path, data.cache_dir, option)
            _check_class_folders(folder, option)
            files[split] = os.path.join(folder, "**")
        raw = load_dataset("imagefolder", data_files=files)
    if not raw:
        raise ValueError("No train or validation split found in the image data.")
    for split, ds in raw.items():
        _check_image_columns(ds, data, split)
        if len(ds) == 0:
            raise ValueError(f"The {split} data ({_split_source(data, split)}) has no images.")
    limits = {"train": data.max_train_samples, "validation": data.max_eval_samples}
    for split, limit in limits.items():
        if split in raw and limit is not None and limit < len(raw[split]):
            raw[split] = raw[split].shuffle(seed=seed).select(range(limit))
    if data.verify_images:
        for split, ds in raw.items():
            check_images(
                ds, data.image_column or pick_image_column(ds), f"{split} data ({_split_source(data, split)})"
            )
    return raw


def check_images(dataset: datasets.Dataset, image_column: str, name: str = "data") -> None:
    """Decode every image of `dataset[image_column]` (JPEGs at a reduced scale) and raise one `ValueError` naming
    each file (or row) that does not decode and why, and how many images `name` has.

    Example:

    ```python
    >>> import datasets, os, tempfile
    >>> from PIL import Image
    >>> from hf_nas.data import check_images
    >>> folder = tempfile.mkdtemp()
    >>> Image.new("RGB", (8, 8)).save(os.path.join(folder, "good.png"))
    >>> _ = open(os.path.join(folder, "bad.png"), "wb").write(b"not an image")
    >>> paths = [os.path.join(folder, name) for name in ("good.png", "bad.png")]
    >>> dataset = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    >>> check_images(dataset, "image", "train data")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: 1 of the 2 images of the train data does not decode: .../bad.png (UnidentifiedImageError: cannot identify image file). Remove or replace it (or pass --verify_images false to skip this check).
    ```
    """
    failures = []
    offset = 0
    for batch in dataset.with_format("arrow").iter(batch_size=256):
        for i, item in enumerate(batch[image_column].to_pylist()):
            error = _decode_error(item)
            if error is not None:
                failures.append(f"{(item or {}).get('path') or f'row {offset + i}'} ({error})")
        offset += len(batch)
    if failures:
        many = len(failures) > 1
        shown = ", ".join(failures[:10]) + (f", ... ({len(failures)} files)" if len(failures) > 10 else "")
        raise ValueError(
            f"{len(failures)} of the {len(dataset)} images of the {name} {'do' if many else 'does'} not decode: "
            f"{shown}. Remove or replace {'them' if many else 'it'} (or pass --verify_images false to skip this check)."
        )


def _decode_error(item: dict | None) -> str | None:
    """Why an undecoded image (`{"bytes", "path"}`) does not decode, or None when it does."""
    import io

    from PIL import Image

    if not item or (item.get("bytes") is None and item.get("path") is None):
        return "no image"
    path = item.get("path")
    try:
        with Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") is not None else path) as image:
            image.draft("RGB", (1, 1))  # JPEG: decode at the smallest scale, which reads all of the data
            image.load()
    except Exception as e:  # noqa: BLE001 (PIL raises several types for a broken file)
        message = str(e).replace(f" {path!r}", "").replace(f" {path}", "") if path else str(e)
        return f"{type(e).__name__}: {message}"
    return None


def _train_and_validation(loaded: datasets.DatasetDict, name: str) -> datasets.DatasetDict:
    splits = list(loaded)
    out = {}
    if "train" in loaded:
        out["train"] = loaded["train"]
    validation = _validation_split(splits)
    if validation is not None:
        out["validation"] = loaded[validation]
    if not out:
        raise ValueError(f"{name} has the splits {splits}; expected train and/or one of {list(_VALIDATION_SPLITS)}.")
    return datasets.DatasetDict(out)


def pick_image_column(dataset: datasets.Dataset) -> str:
    """`image` or `img` if present, else the first column holding images."""
    for name in ("image", "img"):
        if name in dataset.column_names:
            return name
    images = [c for c in dataset.column_names if isinstance(dataset.features[c], datasets.Image)]
    if not images:
        raise ValueError(f"No image column found among {dataset.column_names}; pass --image_column.")
    return images[0]


def _check_image_columns(dataset: datasets.Dataset, data: ImageDataArguments, split: str) -> None:
    image_column = data.image_column or pick_image_column(dataset)
    missing = [c for c in (image_column, data.label_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"Columns {missing} not in the {split} data; columns: {dataset.column_names}.")
    feature = dataset.features[image_column]
    if not isinstance(feature, datasets.Image):
        raise ValueError(
            f"Column {image_column!r} of the {split} data holds {feature!r}, not images (a datasets.Image feature); "
            f"pass the image column with --image_column (columns: {dataset.column_names})."
        )


def image_label_names(dataset: datasets.Dataset, label_column: str = "label", present: bool = False) -> list[str]:
    """The class names: those of a `ClassLabel` column (in id order), else the sorted distinct values as strings.
    With `present=True` only the classes that occur in the column: the `ClassLabel` of imagefolder data names the
    class folders of every split, so a class may have no image in this one."""
    if label_column not in dataset.column_names:
        raise ValueError(f"Label column {label_column!r} not in the data; columns: {dataset.column_names}.")
    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        ids = sorted(set(dataset[label_column])) if present else range(len(feature.names))
        return [feature.names[i] for i in ids]
    return [str(v) for v in sorted(set(dataset[label_column]))]


def load_image_processor(pretrained_model_name_or_path: str | os.PathLike, image_size: int | None = None) -> Any:
    """The checkpoint's image processor (`AutoImageProcessor`), resizing to `image_size` square when given.

    The new size is part of the processor, so `save_pretrained` records it beside a supernet or an extracted subnet.

    Example:

    ```python
    >>> import tempfile
    >>> from transformers import ViTImageProcessor
    >>> from hf_nas.data import load_image_processor
    >>> checkpoint = tempfile.mkdtemp()
    >>> _ = ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(checkpoint)
    >>> processor = load_image_processor(checkpoint, image_size=56)
    >>> processor.size["height"], processor.size["width"]
    (56, 56)
    ```
    """
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path)
    if image_size is None:
        return processor
    overrides: dict[str, Any] = {"do_resize": True}
    size = dict(processor.size) if getattr(processor, "size", None) is not None else {}
    if size.get("shortest_edge") is not None:
        overrides["size"] = {"shortest_edge": image_size}
    else:
        overrides["size"] = {"height": image_size, "width": image_size}
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None) is not None:
        overrides["crop_size"] = {"height": image_size, "width": image_size}
    return AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, **overrides)


def processor_image_size(processor: Any) -> int | None:
    """The side in pixels of the images `processor` produces (its crop size if it crops, else its size)."""
    for name in ("crop_size", "size"):
        if name == "crop_size" and not getattr(processor, "do_center_crop", False):
            continue
        size = getattr(processor, name, None)
        if size is None:
            continue
        size = dict(size)
        for key in ("height", "shortest_edge"):
            if size.get(key) is not None:
                return int(size[key])
    return None


def needs_interpolate_pos_encoding(config: Any, image_size: int | None) -> bool:
    """Whether a vision model of `config` needs `interpolate_pos_encoding=True` for images of side `image_size`:
    True when the size differs from the one its position embeddings were trained at (`config.image_size`)."""
    if image_size is None:
        return False
    trained = getattr(config, "image_size", None)
    trained = trained[0] if isinstance(trained, (list, tuple)) else trained
    return trained is not None and int(trained) != int(image_size)


class ImageClassificationTransform:
    """Turn a batch of dataset rows into `pixel_values` (float tensors) and `labels`, for `Dataset.set_transform`.

    Images are converted to RGB and run through the image processor; training transforms may flip images
    horizontally at random with their own seeded generator. Labels are mapped to the model's ids through the class
    names: `class_names[label]` for `ClassLabel` columns (or the label itself as a string) looked up in `label2id`.

    Args:
        processor: an image processor (e.g. from [`load_image_processor`]).
        image_column (`str`): the column holding the images.
        label_column (`str`, *optional*, defaults to `"label"`): the column holding the labels.
        class_names (`list[str]`, *optional*): names of `ClassLabel` ids, in id order.
        label2id (`dict[str, int]`, *optional*): the model's `config.label2id`; default: labels are ids already.
        random_flip (`bool`, *optional*, defaults to `False`): flip each image horizontally with probability 1/2.
        seed (`int`, *optional*, defaults to 0): seed of the flips.

    Example:

    ```python
    >>> import datasets
    >>> from PIL import Image
    >>> from transformers import ViTImageProcessor
    >>> from hf_nas.data import ImageClassificationTransform
    >>> dataset = datasets.Dataset.from_dict({"image": [Image.new("RGB", (40, 30))] * 2, "label": [1, 0]})
    >>> processor = ViTImageProcessor(size={"height": 32, "width": 32})
    >>> dataset.set_transform(ImageClassificationTransform(processor, "image"))
    >>> dataset[0]["pixel_values"].shape, dataset[0]["labels"]
    (torch.Size([3, 32, 32]), 1)
    ```
    """

    def __init__(
        self,
        processor: Any,
        image_column: str,
        label_column: str = "label",
        class_names: list[str] | None = None,
        label2id: Mapping[str, int] | None = None,
        random_flip: bool = False,
        seed: int = 0,
    ):
        import torch

        self.processor = processor
        self.image_column = image_column
        self.label_column = label_column
        self.class_names = list(class_names) if class_names is not None else None
        self.label2id = dict(label2id) if label2id is not None else None
        self.random_flip = random_flip
        self._generator = torch.Generator().manual_seed(seed)

    def _label_id(self, label: Any) -> int:
        if self.label2id is None:
            return int(label)
        name = self.class_names[label] if self.class_names is not None else str(label)
        if name not in self.label2id:
            raise ValueError(f"Label {name!r} is not one of the model's labels {list(self.label2id)}.")
        return self.label2id[name]

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        import torch
        from PIL import Image, ImageOps

        images = []
        for i, image in enumerate(batch[self.image_column]):
            if not isinstance(image, Image.Image):
                raise ValueError(
                    f"Row {i} of column {self.image_column!r} holds {type(image).__name__}, not a PIL image."
                )
            image = image.convert("RGB")
            if self.random_flip and torch.rand((), generator=self._generator).item() < 0.5:
                image = ImageOps.mirror(image)
            images.append(image)
        pixel_values = self.processor(images, return_tensors="pt")["pixel_values"].float()  # (B, 3, H, W)
        return {
            "pixel_values": list(pixel_values),
            "labels": [self._label_id(label) for label in batch[self.label_column]],
        }


class ImageClassificationCollator:
    """Stack `pixel_values` and `labels` into a batch; with `interpolate_pos_encoding=True` the batch also carries
    that flag, which the Trainer passes to the model's forward as a keyword argument.

    Example:

    ```python
    >>> import torch
    >>> from hf_nas.data import ImageClassificationCollator
    >>> rows = [{"pixel_values": torch.zeros(3, 8, 8), "labels": 1},
    ...         {"pixel_values": torch.ones(3, 8, 8), "labels": 0}]
    >>> batch = ImageClassificationCollator(interpolate_pos_encoding=True)(rows)
    >>> batch["pixel_values"].shape, batch["labels"].tolist(), batch["interpolate_pos_encoding"]
    (torch.Size([2, 3, 8, 8]), [1, 0], True)
    ```
    """

    def __init__(self, interpolate_pos_encoding: bool = False):
        self.interpolate_pos_encoding = interpolate_pos_encoding

    def __call__(self, examples: list[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not examples:
            raise ValueError("Cannot collate an empty list of examples.")
        batch: dict[str, Any] = {
            "pixel_values": torch.stack(
                [torch.as_tensor(e["pixel_values"]) for e in examples]
            ).float(),  # (B, 3, H, W)
            "labels": torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long),  # (B,)
        }
        if self.interpolate_pos_encoding:
            batch["interpolate_pos_encoding"] = True
        return batch


def prepare_image_datasets(
    raw: datasets.DatasetDict,
    processor: Any,
    data: ImageDataArguments,
    label2id: Mapping[str, int] | None = None,
    seed: int = 0,
) -> dict[str, datasets.Dataset]:
    """Attach an [`ImageClassificationTransform`] to every split of `raw` (`with_transform`, decoded lazily); the
    training split flips images at random when `data.random_flip` is set."""
    splits = {}
    for split, ds in raw.items():
        image_column = data.image_column or pick_image_column(ds)
        feature = ds.features[data.label_column]
        class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        transform = ImageClassificationTransform(
            processor,
            image_column,
            data.label_column,
            class_names=class_names,
            label2id=label2id,
            random_flip=data.random_flip and split == "train",
            seed=seed,
        )
        splits[split] = ds.with_transform(transform)
    return splits
