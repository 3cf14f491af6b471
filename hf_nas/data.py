"""Text-classification data for the scripts: a Hub dataset or local csv/tsv/json files, tokenized for a model."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets
from datasets import load_dataset

__all__ = ["TextDataArguments", "load_text_datasets", "pick_text_column", "tokenize_classification"]

_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl")


@dataclass
class TextDataArguments:
    """Where the text-classification data comes from and how it is tokenized (run_glue.py's options)."""

    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub (e.g. nyu-mll/glue)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration (e.g. sst2)."})
    train_file: str | None = field(default=None, metadata={"help": "A csv, tsv or json(l) training file."})
    validation_file: str | None = field(default=None, metadata={"help": "A csv, tsv or json(l) validation file."})
    text_column: str | None = field(default=None, metadata={"help": "Default: sentence, text or the first str."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text of sentence pairs."})
    label_column: str = field(default="label")
    max_seq_length: int = field(default=128)
    max_train_samples: int | None = field(default=None, metadata={"help": "Seeded subset of the training set."})
    max_eval_samples: int | None = field(default=None)
    metrics: str = field(default="accuracy", metadata={"help": "Comma-separated evaluate metrics."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None and self.validation_file is None:
            raise ValueError("Give --dataset_name, or --train_file / --validation_file (csv, tsv or json).")
        for path in (self.train_file, self.validation_file):
            if path is not None and os.path.splitext(path)[1] not in _EXTENSIONS:
                raise ValueError(f"{path}: unsupported file type; allowed: {', '.join(_EXTENSIONS)}.")


def load_text_datasets(data: TextDataArguments) -> datasets.DatasetDict:
    """The raw splits: `train` and/or `validation` from local files, or the Hub dataset's splits."""
    if data.dataset_name is not None:
        return load_dataset(data.dataset_name, data.dataset_config_name)
    files = {k: v for k, v in (("train", data.train_file), ("validation", data.validation_file)) if v is not None}
    extension = os.path.splitext(next(iter(files.values())))[1]
    if extension == ".tsv":
        return load_dataset("csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE)
    return load_dataset("json" if extension in (".json", ".jsonl") else "csv", data_files=files)


def pick_text_column(dataset: datasets.Dataset) -> str:
    for name in ("sentence", "text"):
        if name in dataset.column_names:
            return name
    strings = [c for c in dataset.column_names if getattr(dataset.features[c], "dtype", None) == "string"]
    if not strings:
        raise ValueError(f"No text column found among {dataset.column_names}; pass --text_column.")
    return strings[0]


def tokenize_classification(
    dataset: datasets.Dataset, tokenizer: Any, data: TextDataArguments, label2id: Mapping[Any, int]
) -> datasets.Dataset:
    """Tokenize `dataset` (truncated to `max_seq_length`, unpadded) and map its labels to ids."""
    text_column = data.text_column or pick_text_column(dataset)
    missing = [
        c for c in (text_column, data.label_column, data.text_pair_column) if c and c not in dataset.column_names
    ]
    if missing:
        raise ValueError(f"Columns {missing} not in the data; columns: {dataset.column_names}.")

    def preprocess(batch):
        texts = (
            (batch[text_column],)
            if data.text_pair_column is None
            else (batch[text_column], batch[data.text_pair_column])
        )
        encoded = tokenizer(*texts, truncation=True, max_length=data.max_seq_length)
        try:
            encoded["labels"] = [label2id[label] for label in batch[data.label_column]]
        except KeyError as e:
            raise ValueError(f"Label {e.args[0]!r} is not one of the model's labels {list(label2id)}.") from None
        return encoded

    return dataset.map(preprocess, batched=True, remove_columns=dataset.column_names, desc="tokenize")
