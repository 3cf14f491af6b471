"""Extract one subnet of a trained supernet as an ordinary checkpoint with a model card, and push it to the Hub.

The subnet is chosen by exactly one of: a SubnetConfig JSON file (`--subnet_json`), a point of the Pareto front of a
search (`--pareto_index` with `--results`), or the best feasible subnet of a search under constraints (`--constraint`
with `--results`, best by `--maximize`). Arguments come from the command line or one JSON file; `hf-nas extract` and
`scripts/extract_subnet.py` are this same program (`hf-nas push` uploads a folder written earlier).

    hf-nas extract --supernet out/supernet --subnet_json subnet.json --output_dir out/subnet
    hf-nas extract --supernet out/supernet --results out/search --pareto_index 3 \
        --output_dir out/subnet --push_to_hub --hub_model_id me/bert-subnet --dry_run
    hf-nas extract --supernet out/supernet --results out/search --constraint "macs<=5e8" \
        --maximize accuracy --output_dir out/subnet

For ViT and BEiT supernets the image processor saved with the supernet is copied into the subnet folder, and latency
and MACs are measured at its image size (or `--image_size`).

`--finetune_steps N` adds a short distillation of the chosen subnet before it is saved: the subnet alone is trained
for N steps on `--train_file` (text) or on `--train_dir` / the train/ folder of `--data_dir` (images, at the saved
image processor's size) with distillation from the teacher saved beside the supernet (the teacher-first recipe),
`--teacher_model_name_or_path`, or else the supernet's own full model (the one-pass recipe's in-place teacher). The
card then reports the accuracy without retraining and after it, apart (on `--validation_file`, or the validation
images of `--validation_dir` / `--data_dir`), and says how the subnet was trained.

`--results` is the output folder of `hf-nas search` (`SearchResults.from_dir` reads its
`search_results.json`); the front is the one of `SearchResults.pareto_indices`, as listed in its `pareto.csv`.

The card names the data its metrics were measured on (dataset, configuration, split: `--dataset_name`,
`--dataset_config_name`, `--validation_file`, ...). Metrics taken from the search results were measured on the split
the search selected the subnet on, and the card says so: expect a lower score on unseen data. `--evaluate` measures the
task metrics (`--metrics`) of the extracted subnet instead, on the validation data given with the options of
`hf-nas search` (`--validation_file` or `--dataset_name` with a validation split, `--validation_split_percentage`;
images: `--validation_dir`, `--data_dir`), as the search measures them; this is how a `--subnet_json` subnet gets
metrics. The written checkpoint is then reloaded as a user loads it without hf-nas and measured again on the same
batches: if it does not reproduce the metrics, the command stops and `--output_dir` is left as it was.

The base model and the training section of the card come from `--base_model` and `--training_recipe`, else from the
training record the supernet folder keeps (`hf_nas_training.json`: base model, recipe, training data and settings); a
local base model is named as "a local checkpoint", never by this machine's path. A mistyped `--supernet`,
`--subnet_json`, `--results` or data path stops the command with one line naming it, before anything is loaded; a
failed upload ends with "saved locally at <folder>; upload to <repo> failed: <reason>" and exit status 1.

The supernet is checked as it loads: a damaged (truncated) weight file, a search space that does not fit the weights
and a vanilla checkpoint given as `--supernet` stop the command with an error naming the file or the config field,
before anything is written. The folder is written atomically (under a hidden temporary name beside it, then swapped
into place), so a run that fails or is killed leaves the previous `--output_dir` as it was. While one run writes
`--output_dir` it holds the lock `<output_dir>.lock`: a second run for the same folder stops at once, after loading
its inputs and before any measurement, saying another process is writing it; `--wait_for_lock SECONDS` makes it wait
for the first one instead.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import ModelCard
from transformers import AutoImageProcessor, AutoTokenizer, HfArgumentParser

import hf_nas
from hf_nas import SubnetConfig, measure_latency
from hf_nas.commands import description_of, parse_arguments
from hf_nas.data import HelpFormatter, ImageDataArguments, TextDataArguments, check_local_path, processor_image_size
from hf_nas.hub import PushError, check_repo_id, export_subnet, push_subnet_folder
from hf_nas.metrics import BUNDLED_METRICS
from hf_nas.models.families import get_family
from hf_nas.models.supernet import SupernetMixin
from hf_nas.search import SearchResults, parse_constraints, supernet_fingerprint
from hf_nas.training.recipes import TrainingRecord
from hf_nas.utils import command_output_lock
from hf_nas.validation import check_model_path, check_wait_for_lock

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt")
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json",)
EVALUATED_TASKS = ("sequence-classification", "image-classification")
# The validation folders of --data_dir, in the order the image loader tries them.
IMAGE_VALIDATION_FOLDERS = ("validation", "val", "valid", "test")
# The options that say where validation data comes from (`hf-nas search` takes the same ones).
DATA_OPTIONS = (
    "dataset_name",
    "dataset_config_name",
    "train_file",
    "validation_file",
    "data_dir",
    "validation_dir",
    "validation_split_percentage",
    "validation_split_seed",
)


@dataclass
class SelectionArguments:
    supernet: str = field(metadata={"help": "A supernet folder saved by `hf-nas train` (save_pretrained)."})
    subnet_json: str | None = field(default=None, metadata={"help": "A SubnetConfig JSON file (SubnetConfig.save)."})
    results: str | None = field(
        default=None, metadata={"help": "A search results folder (search_results.json, pareto.csv)."}
    )
    pareto_index: int | None = field(
        default=None,
        metadata={
            "help": "Point of the Pareto front to extract: its pareto_index (0-based), the column of that name in "
            "pareto.csv and in the front `hf-nas search` prints, and the labels of pareto.png."
        },
    )
    record: int | None = field(
        default=None,
        metadata={
            "help": "Record number of the subnet to extract (any measured subnet, on the front or not): the record "
            "column of pareto.csv and of the printed front, its index in search_results.json."
        },
    )
    constraint: str | None = field(
        default=None,
        metadata={"help": "Comma-separated bounds on objectives, e.g. 'macs<=5e8,latency<=3' (<= or >=)."},
    )
    maximize: str = field(
        default="accuracy", metadata={"help": "With --constraint: the objective the chosen subnet maximizes."}
    )

    def __post_init__(self):
        given = [
            f"--{name}"
            for name in ("subnet_json", "pareto_index", "record", "constraint")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "Choose the subnet with exactly one of --subnet_json PATH, --pareto_index N (with --results), "
                "--record N (with --results) or --constraint 'objective<=value' (with --results); got "
                f"{given or 'none'}."
            )
        if self.subnet_json is not None and self.results is not None:
            raise ValueError(
                "--results is only used with --pareto_index, --record or --constraint, not with --subnet_json."
            )
        if self.subnet_json is None and self.results is None:
            raise ValueError(f"{given[0]} needs --results, a search results folder.")


@dataclass
class FinetuneArguments:
    finetune_steps: int = field(
        default=0, metadata={"help": "Optimizer steps of an optional distillation of the subnet before it is saved."}
    )
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "A local csv, tsv or json(l) training file: the data of the fine-tune, and the rows "
            "--validation_split_percentage holds out for --evaluate."
        },
    )
    train_dir: str | None = field(
        default=None,
        metadata={
            "help": "Images: the training images of the fine-tune, a folder of class folders or a .tar.gz. Default: "
            "the train/ split of --data_dir."
        },
    )
    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "A local csv, tsv or json(l) validation file: --evaluate measures on it, and a fine-tune reports "
            "the accuracy on it without retraining and after it."
        },
    )
    text_column: str | None = field(
        default=None,
        metadata={
            "help": "Column of the (first) text. Default: found as `hf-nas search` finds it (sentence, text, ...)."
        },
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column of the second text of sentence pairs. Default: found with the text."}
    )
    label_column: str = field(default="label", metadata={"help": "Column of the class labels."})
    max_seq_length: int = field(
        default=128, metadata={"help": "Longest tokenized input of the fine-tune and of --evaluate (text)."}
    )
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Teacher of the fine-tune. Default: the `teacher` folder beside the supernet, else its full model."
        },
    )
    finetune_learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the fine-tune."})
    finetune_batch_size: int = field(default=32, metadata={"help": "Batch size of the fine-tune."})
    finetune_hidden_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of hidden-state distillation at every kept layer (0: logits only)."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the fine-tune."})

    def __post_init__(self):
        if self.finetune_steps < 0:
            raise ValueError(f"--finetune_steps must be >= 0, got {self.finetune_steps}.")


@dataclass
class ExportArguments:
    output_dir: str = field(metadata={"help": "Where the subnet folder is written (replaced if it exists)."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the vanilla checkpoint the supernet was trained from. Default: the one in the "
            "supernet's training record (hf_nas_training.json), else in its README.md; a local path is named on the "
            "card as a local checkpoint only."
        },
    )
    model_name: str | None = field(
        default=None,
        metadata={"help": "Title of the model card. Default: the --hub_model_id name, else the folder's."},
    )
    training_recipe: str | None = field(
        default=None,
        metadata={
            "help": "Markdown for the card's training section, or a path to a .md file; it follows what the "
            "supernet's training record says. Default: how the subnet was chosen and trained."
        },
    )
    license: str | None = field(
        default=None, metadata={"help": "License id for the card (the base model's). Default: none on the card."}
    )
    skip_latency: bool = field(default=False, metadata={"help": "Do not measure latency (the card says so)."})
    latency_batch_size: int = field(default=1, metadata={"help": "Inputs per forward pass when timing latency."})
    latency_sequence_length: int = field(
        default=128, metadata={"help": "Tokens per sequence for latency and for the MACs in the card (text)."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Image side in pixels for latency, MACs and --evaluate (images). Default: the saved image "
            "processor's."
        },
    )
    latency_device: str = field(default="cpu", metadata={"help": "Torch device latency is timed on (cpu, cuda:0)."})
    latency_min_run_time: float = field(default=1.0, metadata={"help": "Seconds of timed runs for the latency."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder to --hub_model_id."})
    hub_model_id: str | None = field(default=None, metadata={"help": "The Hub repo, e.g. username/bert-subnet."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    dry_run: bool = field(default=False, metadata={"help": "With --push_to_hub: list the files, upload nothing."})
    wait_for_lock: float = field(
        default=0.0,
        metadata={
            "help": "Seconds to wait while another process writes --output_dir (0: stop at once; inf: no limit)."
        },
    )

    def __post_init__(self):
        check_wait_for_lock(self.wait_for_lock)
        if self.push_to_hub and self.hub_model_id is None:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. username/bert-subnet).")
        if (self.private or self.dry_run) and not self.push_to_hub:
            raise ValueError("--private and --dry_run only apply with --push_to_hub.")
        if self.hub_model_id is not None:
            check_repo_id(self.hub_model_id)


@dataclass
class EvaluationArguments:
    """The data the card names for the metrics, and `--evaluate`, which measures them on it (the validation-data
    options of `hf-nas search`; text files and columns are the fine-tune's options above)."""

    evaluate: bool = field(
        default=False,
        metadata={
            "help": "Measure --metrics of the extracted subnet on the validation data (as `hf-nas search` does) and "
            "write them to the card."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A dataset on the Hub (e.g. nyu-mll/glue): what --evaluate measures on, named on the card."},
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Its configuration (e.g. the GLUE task sst2), named on the card."}
    )
    validation_split_percentage: int | None = field(
        default=None,
        metadata={
            "help": "Measure on this percentage (1-99) of the training rows, held out with --validation_split_seed, "
            "when the data has no validation split. Default: none, the data's validation split."
        },
    )
    validation_split_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the rows --validation_split_percentage holds out; the search's --seed gives the rows it "
            "measured on."
        },
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Measure on this many validation rows only. Default: all."}
    )
    metrics: str = field(
        default="accuracy", metadata={"help": "Comma-separated task metrics --evaluate measures (accuracy, f1)."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Validation examples per forward pass of --evaluate."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Images: an imagefolder with split folders (train/ and validation/, ...), or a .tar.gz."},
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "Images: validation images, a folder of class folders, or a .tar.gz."}
    )
    image_column: str | None = field(
        default=None, metadata={"help": "Images: the image column. Default: image, img or the first image column."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Images: where archives are extracted. Default: ~/.cache/hf_nas/archives."}
    )

    def __post_init__(self):
        percentage = self.validation_split_percentage
        if percentage is not None and not 1 <= percentage <= 99:
            raise ValueError(f"--validation_split_percentage must be an integer from 1 to 99, got {percentage}.")
        if self.eval_batch_size < 1:
            raise ValueError(f"--eval_batch_size must be a positive integer, got {self.eval_batch_size}.")
        unknown = [n for n in self.metric_names if n not in BUNDLED_METRICS]
        if unknown or not self.metric_names:
            raise ValueError(
                f"--metrics {self.metrics!r}: unknown task metric(s) {unknown}; allowed: {', '.join(BUNDLED_METRICS)}."
            )

    @property
    def metric_names(self) -> list[str]:
        return list(dict.fromkeys(n.strip() for n in self.metrics.split(",") if n.strip()))


def select_subnet(args: SelectionArguments) -> tuple[SubnetConfig, str, SearchResults | None, int | None]:
    """The subnet chosen by `--subnet_json`, `--pareto_index` or `--constraint`, how it was chosen, and (from search
    results) the results and its record index. Only small files are read: a bad choice fails before any loading."""
    if args.subnet_json is not None:
        try:
            subnet = SubnetConfig.load(args.subnet_json)
        except (TypeError, ValueError) as e:  # a hand-edited file: name it, and what is wrong in it
            raise type(e)(f"--subnet_json {args.subnet_json}: {e}") from None
        return subnet, f"given as JSON (`{os.path.basename(args.subnet_json)}`)", None, None
    results = SearchResults.from_dir(args.results)
    front = results.pareto_indices()
    if args.pareto_index is not None:
        index = results.select(pareto_index=args.pareto_index)
        how = f"pareto_index {args.pareto_index} (of 0-{len(front) - 1}) on the Pareto front of the search"
        how += f", record {index}"
    elif args.record is not None:
        index = results.select(record=args.record)
        place = f"pareto_index {front.index(index)}" if index in front else "not on the Pareto front"
        how = f"record {index} of the {len(results.records)} measured subnets of the search ({place})"
    else:
        index = results.select(constraints=parse_constraints(args.constraint), maximize=args.maximize)
        how = (
            f"the subnet of best {args.maximize} with `{args.constraint}` among the {len(results.records)} measured "
            "subnets of the search"
        )
    return results.subnet(index), how, results, index


def load_supernet(path: str):
    """The supernet saved in the folder `path`, in eval mode. A vanilla checkpoint, a damaged weight file or a config
    that does not fit the weights is refused with a `ValueError` naming the file or the field (see
    `SupernetMixin.from_pretrained`)."""
    if not os.path.isdir(path):
        raise ValueError(f"--supernet {path!r} is not a folder; pass a supernet saved with save_pretrained.")
    config_file = os.path.join(path, "config.json")
    try:
        with open(config_file) as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"--supernet {path!r} has no readable config.json ({e}); pass a supernet folder.") from None
    if not isinstance(config, dict):
        raise ValueError(f"--supernet {path!r}: {config_file} holds a {type(config).__name__}, not a config dict.")
    architectures = config.get("architectures")
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    model_class = getattr(hf_nas, architecture, None) if isinstance(architecture, str) else None
    if not (isinstance(model_class, type) and issubclass(model_class, SupernetMixin)):
        raise ValueError(
            f"--supernet {path!r} holds a {config.get('model_type')!r} checkpoint ({architecture}), not an hf-nas "
            "supernet; train one with `hf-nas train`."
        )
    return model_class.from_pretrained(path).eval()


def load_processor(path: str, supernet, export_args: ExportArguments) -> tuple[object | None, dict[str, int]]:
    """The tokenizer or image processor saved with the supernet (None, with a warning, if there is none), and the
    input shape of latency and MACs: `sequence_length` for text, `image_size` for images."""
    if get_family(supernet.config).is_image:
        processor = None
        if any(os.path.isfile(os.path.join(path, name)) for name in IMAGE_PROCESSOR_FILES):
            processor = AutoImageProcessor.from_pretrained(path)
        else:
            logger.warning("%s has no image processor; the subnet folder will have none.", path)
        image_size = export_args.image_size or (processor_image_size(processor) if processor is not None else None)
        image_size = image_size or supernet.config.image_size
        return processor, {"image_size": int(image_size)}
    processor = None
    if any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
        processor = AutoTokenizer.from_pretrained(path)
    else:
        logger.warning("%s has no tokenizer; the subnet folder will have none.", path)
    return processor, {"sequence_length": export_args.latency_sequence_length}


def build_parser(prog: str | None = None) -> HfArgumentParser:
    """The parser of `hf-nas extract`."""
    return HfArgumentParser(
        (SelectionArguments, ExportArguments, EvaluationArguments, FinetuneArguments),
        prog=prog,
        description=description_of(__doc__),
        formatter_class=HelpFormatter,
    )


def check_paths(
    select_args: SelectionArguments,
    export_args: ExportArguments,
    eval_args: EvaluationArguments,
    finetune_args: FinetuneArguments,
) -> None:
    """Stop with one line naming the option of a mistyped path, before anything is loaded."""
    check_model_path("--supernet", select_args.supernet)
    for option, path, kind in (
        ("--subnet_json", select_args.subnet_json, "file"),
        ("--results", select_args.results, "folder"),
        ("--train_file", finetune_args.train_file, "file"),
        ("--train_dir", finetune_args.train_dir, "folder or archive"),
        ("--validation_file", finetune_args.validation_file, "file"),
        ("--data_dir", eval_args.data_dir, "folder or archive"),
        ("--validation_dir", eval_args.validation_dir, "folder or archive"),
    ):
        if path is not None:
            check_local_path(option, path, kind)
    recipe = export_args.training_recipe
    if recipe is not None and recipe.endswith(".md"):
        check_local_path("--training_recipe", recipe, "Markdown file")


def check_finetune_data(eval_args: EvaluationArguments, finetune_args: FinetuneArguments) -> None:
    """`--finetune_steps` needs training data: raise, naming the options that give it, when none is given."""
    given = (finetune_args.train_file, finetune_args.train_dir, eval_args.data_dir)
    if finetune_args.finetune_steps > 0 and all(path is None for path in given):
        raise ValueError(
            "--finetune_steps needs the data the subnet is distilled on: --train_file (text), --train_dir or "
            "--data_dir with a train/ folder (images)."
        )


def check_evaluation_data(eval_args: EvaluationArguments, finetune_args: FinetuneArguments) -> None:
    """`--evaluate` needs validation data: raise, naming the options that give it, when none is given."""
    given = [eval_args.dataset_name, finetune_args.validation_file, eval_args.validation_dir, eval_args.data_dir]
    held_out = eval_args.validation_split_percentage is not None and finetune_args.train_file is not None
    if eval_args.evaluate and not (any(path is not None for path in given) or held_out):
        raise ValueError(
            "--evaluate needs validation data: --validation_file or --dataset_name (text), --validation_dir, "
            "--data_dir or --dataset_name (images), or --train_file with --validation_split_percentage N."
        )


def check_evaluation_task(supernet: SupernetMixin) -> None:
    """`--evaluate` measures classification metrics: raise for a supernet with another head."""
    task = get_family(supernet.config).task_of(supernet.static_class_name)
    if task.name not in EVALUATED_TASKS:
        raise ValueError(
            f"--evaluate measures classification metrics; the supernet is a {task.name} model "
            f"({type(supernet).__name__}); allowed: {', '.join(EVALUATED_TASKS)}."
        )


def default_base_model(supernet_path: str, record: TrainingRecord | None = None) -> str | None:
    """`base_model` from the supernet folder's training record, else from its own model card, if it has either."""
    if record is not None and record.base_model:
        return record.base_model
    readme = os.path.join(supernet_path, "README.md")
    if not os.path.isfile(readme):
        return None
    base_model = ModelCard.load(readme).data.to_dict().get("base_model")
    return base_model[0] if isinstance(base_model, list) and base_model else base_model


# ----------------------------------------------------------------------------------------------------------------
# the metrics on the card and the data they were measured on
@dataclass
class CardMetrics:
    """The metrics the card reports, the data they were measured on (`dataset`, `dataset_config`, `dataset_split`:
    [`build_model_card`]'s arguments), and which of them were measured on the split the search selected the subnet
    on. Later measurements replace earlier ones of the same name."""

    values: dict[str, float] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    selected_on: set[str] = field(default_factory=set)

    def add(self, values: dict[str, float], data: dict[str, str], selected_on: Iterable[str] = ()) -> None:
        if not values:
            return
        self.values.update(values)
        self.data = dict(data)
        self.selected_on = (self.selected_on - set(values)) | set(selected_on)

    def card_arguments(self) -> dict[str, Any]:
        return {"metrics": self.values or None, **self.data, "selection_split": bool(self.selected_on)}


def data_options(eval_args: EvaluationArguments, finetune_args: FinetuneArguments) -> dict[str, Any]:
    """The data options given on the command line (those that say where validation data comes from)."""
    given = {**vars(finetune_args), **vars(eval_args)}
    return {name: given[name] for name in DATA_OPTIONS if given.get(name) is not None}


def data_description(options: dict[str, Any]) -> dict[str, str]:
    """The card's `dataset`, `dataset_config` and `dataset_split` for validation data given by `options` (the data
    options of `hf-nas extract` or `hf-nas search`): a Hub dataset's validation split, a local validation file or
    folder, or the rows `--validation_split_percentage` holds out; empty when they name no data."""
    percentage = options.get("validation_split_percentage")
    seed = options.get("validation_split_seed", options.get("seed", 0))
    held_out = None if percentage is None else f"{percentage}% of the training rows, held out with seed {seed}"
    if options.get("dataset_name"):
        data = {"dataset": options["dataset_name"], "dataset_config": options.get("dataset_config_name")}
        data["dataset_split"] = held_out or "validation"
    elif held_out is not None:
        source = options.get("train_file") or options.get("data_dir") or options.get("train_dir")
        data = {"dataset": source and os.path.abspath(source), "dataset_split": held_out}
    else:
        source = options.get("validation_file") or options.get("validation_dir") or options.get("data_dir")
        data = {"dataset": source and os.path.abspath(source)}
        if source is not None and source == options.get("data_dir"):  # its validation folder, as the loader picks it
            found = [name for name in IMAGE_VALIDATION_FOLDERS if os.path.isdir(os.path.join(source, name))]
            data["dataset_split"] = (found or ["validation"])[0]
    return {name: value for name, value in data.items() if value is not None} if data.get("dataset") else {}


def search_metrics(results: SearchResults, index: int, options: dict[str, Any]) -> tuple[dict[str, float], dict]:
    """The quality metrics the search recorded for record `index` (costs are in the card already), and the data they
    were measured on: the data options given to `hf-nas extract`, else the description the results keep."""
    values = results.records[index]["values"]
    maximized = [n for n, d in zip(results.names, results.directions, strict=True) if d == "maximize"]
    recorded = results.settings.get("data")
    data = data_description(options) or (data_description(recorded) if isinstance(recorded, dict) else {})
    if not data:
        logger.warning(
            "The card cannot name the data the search measured on: pass its --dataset_name and "
            "--dataset_config_name, or --validation_file."
        )
    return {n: float(values[n]) for n in maximized}, data


def evaluate(
    supernet: SupernetMixin,
    subnet: SubnetConfig,
    select_args: SelectionArguments,
    export_args: ExportArguments,
    eval_args: EvaluationArguments,
    finetune_args: FinetuneArguments,
) -> tuple[dict[str, float], dict[str, str]]:
    """`--metrics` of `subnet` on the validation data, measured as `hf-nas search` measures them (its data loading,
    validation split and task-metric objectives, through `supernet` with the subnet active: the extracted model's
    outputs are the same), and the `data_hash` of each (equal to the search's when it is the same split)."""
    from hf_nas.commands.search import SearchArguments, image_objectives, text_objectives

    search_args = SearchArguments(
        supernet=select_args.supernet,
        output_dir=export_args.output_dir,
        eval_batch_size=eval_args.eval_batch_size,
        validation_split_percentage=eval_args.validation_split_percentage,
        seed=eval_args.validation_split_seed,
        sequence_length=export_args.latency_sequence_length,
    )
    if get_family(supernet.config).is_image:
        data = ImageDataArguments(
            dataset_name=eval_args.dataset_name,
            dataset_config_name=eval_args.dataset_config_name,
            data_dir=eval_args.data_dir,
            validation_dir=eval_args.validation_dir,
            cache_dir=eval_args.cache_dir,
            image_column=eval_args.image_column,
            label_column=finetune_args.label_column,
            image_size=export_args.image_size,
            max_eval_samples=eval_args.max_eval_samples,
            metrics=eval_args.metrics,
        )
        _, metric_objective, _ = image_objectives(search_args, data)
    else:
        data = TextDataArguments(
            dataset_name=eval_args.dataset_name,
            dataset_config_name=eval_args.dataset_config_name,
            train_file=finetune_args.train_file,
            validation_file=finetune_args.validation_file,
            text_column=finetune_args.text_column,
            text_pair_column=finetune_args.text_pair_column,
            label_column=finetune_args.label_column,
            max_seq_length=finetune_args.max_seq_length,
            max_eval_samples=eval_args.max_eval_samples,
            metrics=eval_args.metrics,
        )
        _, metric_objective, _ = text_objectives(search_args, data)
    values, hashes, objectives = {}, {}, {}
    for name in eval_args.metric_names:
        objective = objectives[name] = metric_objective(name)
        values[name] = float(objective(supernet, subnet))
        hashes[name] = objective.describe().get("data_hash")
        logger.info("--evaluate: %s %.4f", name, values[name])
    return values, hashes, objectives


RELOAD_TOLERANCE = 1e-9  # metrics are counts over the same examples: equal, up to float rounding


def check_reloaded(folder: str, objectives: dict[str, Any], expected: dict[str, float]) -> dict[str, float]:
    """Reload the written subnet `folder` as a user would without hf-nas (its task's Auto class; a per-layer subnet
    with `trust_remote_code=True`), measure `--metrics` on it again with the same validation batches, and raise if
    any differs from `expected` (measured through the supernet): the card would state a number the checkpoint does
    not have. Returns the reloaded model's metrics."""
    from hf_nas.commands.compress import load_checkpoint

    model = load_checkpoint(folder)
    measured = {name: float(objective.evaluate_model(model)) for name, objective in objectives.items()}
    different = {
        name: (expected[name], value)
        for name, value in measured.items()
        if abs(value - expected[name]) > RELOAD_TOLERANCE
    }
    if different:
        text = ", ".join(
            f"{name} {was:.6f} through the supernet, {now:.6f} reloaded" for name, (was, now) in different.items()
        )
        raise RuntimeError(f"The reloaded subnet does not reproduce its metrics ({text}); nothing was written.")
    logger.info(
        "--evaluate: the reloaded checkpoint reproduces %s", ", ".join(f"{k} {v:.4f}" for k, v in measured.items())
    )
    return measured


def measured_on_selection_split(results: SearchResults | None, hashes: dict[str, str]) -> set[str]:
    """The metrics measured on the very validation data (same rows, same batches) the search selected on."""
    if results is None:
        return set()
    searched = {o["name"]: (o.get("settings") or {}).get("data_hash") for o in results.objectives}
    return {name for name, digest in hashes.items() if digest is not None and searched.get(name) == digest}


# ----------------------------------------------------------------------------------------------------------------
# the card's training section
def recipe_text(
    export_args: ExportArguments,
    how: str,
    record: TrainingRecord | None,
    finetuned: dict | None,
    finetune_steps: int,
) -> str:
    """The card's account of how the subnet was chosen and trained: `--training_recipe` (text or a .md file), else
    written here; it follows the training record's account of the supernet, so it only says "the supernet was
    fine-tuned with hf-nas" when there is no record."""
    recipe = export_args.training_recipe
    if recipe is not None:
        if recipe.endswith(".md"):
            with open(recipe) as f:
                return f.read()
        return recipe
    trained = "The supernet was fine-tuned with hf-nas (`hf-nas train`). " if record is None else ""
    if finetuned is not None:
        return (
            f"{trained}This subnet was chosen as {how}, then trained alone for {finetune_steps} steps with "
            f"distillation ({finetuned['description']})."
        )
    return (
        f"{trained}This subnet was chosen as {how}, and its weights copied unchanged from the supernet; nothing was "
        "trained after extraction."
    )


def push(folder: str, export_args: ExportArguments) -> None:
    """Upload `folder`; a failed upload ends the command with one line (the folder stays saved), no traceback."""
    try:
        push_subnet_folder(folder, export_args.hub_model_id, private=export_args.private, dry_run=export_args.dry_run)
    except PushError as e:
        raise SystemExit(str(e)) from None
    if not export_args.dry_run:
        print(f"Pushed to https://huggingface.co/{export_args.hub_model_id}")


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas extract` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    select_args, export_args, eval_args, finetune_args = parse_arguments(build_parser(prog), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_paths(select_args, export_args, eval_args, finetune_args)
    check_finetune_data(eval_args, finetune_args)
    check_evaluation_data(eval_args, finetune_args)

    subnet, how, results, index = select_subnet(select_args)
    supernet = load_supernet(select_args.supernet)
    supernet.search_space.validate(subnet)
    if eval_args.evaluate:
        check_evaluation_task(supernet)
    processor, shape = load_processor(select_args.supernet, supernet, export_args)
    # Everything is read and checked: from here on this process is the one writer of --output_dir.
    with command_output_lock(export_args.output_dir, export_args.wait_for_lock):
        logger.info("subnet (%s): %s", how, json.dumps(subnet.to_dict()))
        options = data_options(eval_args, finetune_args)
        measured, pareto = CardMetrics(), None
        if results is not None:
            if results.fingerprint and results.fingerprint != supernet_fingerprint(supernet):
                logger.warning("%s was written for another supernet (fingerprints differ).", select_args.results)
            pareto = results.pareto_position(index)
            values, data = search_metrics(results, index, options)
            measured.add(values, data, selected_on=set(values))

        finetuned = None
        if finetune_args.finetune_steps > 0:
            finetuned = finetune(
                supernet, subnet, processor, select_args.supernet, finetune_args, eval_args, export_args.output_dir
            )
            measured.add(finetuned["metrics"], data_description(finetuned["validation_data"]))
        objectives, evaluated = {}, {}
        if eval_args.evaluate:
            evaluated, hashes, objectives = evaluate(
                supernet, subnet, select_args, export_args, eval_args, finetune_args
            )
            measured.add(evaluated, data_description(options), measured_on_selection_split(results, hashes))
        latency = None
        if not export_args.skip_latency:
            latency = measure_latency(
                supernet,
                subnet,
                batch_size=export_args.latency_batch_size,
                device=export_args.latency_device,
                min_run_time=export_args.latency_min_run_time,
                **shape,
            )
            logger.info("latency: %.3f ms (%s)", latency.median_ms, latency)

        record = TrainingRecord.load(select_args.supernet)
        base_model = export_args.base_model or default_base_model(select_args.supernet, record)
        if base_model is None:
            logger.warning(
                "No --base_model given and none recorded in the supernet folder; the card will not name one."
            )
        # With --evaluate the written checkpoint, reloaded, must reproduce the measured metrics before it replaces
        # --output_dir.
        verify = functools.partial(check_reloaded, objectives=objectives, expected=evaluated) if objectives else None
        folder = export_subnet(
            supernet,
            subnet,
            export_args.output_dir,
            processor=processor,
            base_model=base_model,
            latency=latency,
            pareto=pareto,
            training_recipe=recipe_text(export_args, how, record, finetuned, finetune_args.finetune_steps),
            training_record=record,
            model_name=export_args.model_name,
            repo_id=export_args.hub_model_id,
            **measured.card_arguments(),
            **({"macs_sequence_length": shape["sequence_length"]} if "sequence_length" in shape else {}),
            **({"macs_image_size": shape["image_size"]} if "image_size" in shape else {}),
            license=export_args.license,
            verify=verify,
        )
        print(f"Saved the subnet ({how}) to {folder}")
        if export_args.push_to_hub:
            push(folder, export_args)


def finetune(
    supernet,
    subnet,
    processor,
    supernet_path: str,
    args: FinetuneArguments,
    eval_args: EvaluationArguments,
    output_dir: str,
) -> dict:
    """Distill `subnet` alone for `--finetune_steps` and return its accuracy without retraining and after it (text:
    `--train_file` / `--validation_file`; images: `--train_dir` or `--data_dir`'s train/ split, and its validation
    split or `--validation_dir`)."""
    import datasets
    from transformers import Trainer, set_seed

    from hf_nas.metrics import build_compute_metrics
    from hf_nas.training import SupernetTrainingArguments
    from hf_nas.training.recipes import find_saved_teacher, finetune_subnet

    if processor is None:
        kind = "image processor" if get_family(supernet.config).is_image else "tokenizer"
        raise ValueError(f"--finetune_steps needs the {kind} saved with the supernet; {supernet_path} has none.")
    teacher = args.teacher_model_name_or_path or find_saved_teacher(supernet_path)
    teacher_name = teacher or "the supernet's full model"
    if teacher is None:  # a one-pass supernet: its full model taught every subnet in place, and teaches this one
        teacher = supernet.extract_subnet(supernet.max_subnet()).eval()
    if get_family(supernet.config).is_image:
        splits, collator, described = finetune_images(supernet, processor, args, eval_args)
    else:
        splits, collator, described = finetune_text(supernet, processor, args)
    # The Trainer's scratch folder: hidden beside the output, and a name the next export removes if this run dies.
    parent, name = os.path.split(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    common = {"report_to": [], "remove_unused_columns": False, "disable_tqdm": True}

    def accuracy() -> float | None:
        if "validation" not in splits:
            return None
        with supernet.subnet(subnet):
            evaluator = Trainer(
                model=supernet,
                args=SupernetTrainingArguments(work, per_device_eval_batch_size=64, **common),
                data_collator=collator,
                compute_metrics=build_compute_metrics(["accuracy"]),
            )
            return float(evaluator.evaluate(splits["validation"])["eval_accuracy"])

    datasets.utils.logging.disable_progress_bar()
    try:
        before = accuracy()
        set_seed(args.seed)
        targs = SupernetTrainingArguments(
            work,
            max_steps=args.finetune_steps,
            per_device_train_batch_size=args.finetune_batch_size,
            learning_rate=args.finetune_learning_rate,
            warmup_steps=max(1, args.finetune_steps // 10),
            hidden_loss_weight=args.finetune_hidden_loss_weight,
            distillation="teacher",
            save_strategy="no",
            seed=args.seed,
            **common,
        )
        finetune_subnet(supernet, subnet, targs, splits["train"], teacher_model=teacher, data_collator=collator)
        after = accuracy()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metrics = {}
    description = f"teacher: {teacher_name}; {args.finetune_steps} steps on `{described['train']}`"
    if after is not None:
        metrics = {"accuracy": after, "accuracy_without_retraining": before}
        description += f"; accuracy on `{described['validation']}` {100 * before:.2f}% without retraining, {100 * after:.2f}% after"
        logger.info("fine-tune: accuracy %.4f without retraining, %.4f after", before, after)
    return {"metrics": metrics, "description": description, "validation_data": described["options"]}


def finetune_text(supernet, tokenizer, args: FinetuneArguments) -> tuple[dict, object, dict]:
    """The tokenized splits of a text fine-tune, its collator, and how its data is named."""
    from transformers import DataCollatorWithPadding

    from hf_nas.data import TextDataArguments, load_text_datasets, tokenize_classification

    if args.train_file is None:
        raise ValueError(
            "--finetune_steps on a text supernet needs --train_file (the data the subnet is distilled on)."
        )
    data = TextDataArguments(
        train_file=args.train_file,
        validation_file=args.validation_file,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
        max_seq_length=args.max_seq_length,
    )
    raw = load_text_datasets(data)
    label2id = {label: supernet.config.label2id[str(label)] for label in set(raw["train"][args.label_column])}
    splits = {name: tokenize_classification(ds, tokenizer, data, label2id) for name, ds in raw.items()}
    described = {
        "train": os.path.basename(args.train_file),
        "validation": os.path.basename(args.validation_file or ""),
        "options": {"validation_file": args.validation_file},
    }
    return splits, DataCollatorWithPadding(tokenizer), described


def finetune_images(supernet, processor, args: FinetuneArguments, eval_args: EvaluationArguments):
    """The transformed image splits of an image fine-tune (at the saved image processor's size), its collator, and
    how its data is named."""
    from hf_nas.data import (
        ImageClassificationCollator,
        image_label_names,
        load_image_datasets,
        needs_interpolate_pos_encoding,
        prepare_image_datasets,
    )

    if args.train_dir is None and eval_args.data_dir is None:
        raise ValueError(
            "--finetune_steps on an image supernet needs training images: --train_dir, or --data_dir with a train/ "
            "folder."
        )
    data = ImageDataArguments(
        data_dir=eval_args.data_dir,
        train_dir=args.train_dir,
        validation_dir=eval_args.validation_dir,
        image_column=eval_args.image_column,
        label_column=args.label_column,
        cache_dir=eval_args.cache_dir,
        max_eval_samples=eval_args.max_eval_samples,
    )
    raw = load_image_datasets(data, seed=args.seed)
    if "train" not in raw:
        raise ValueError(
            f"--finetune_steps needs training images; {eval_args.data_dir} has no train/ folder: give --train_dir."
        )
    label2id = supernet.config.label2id
    unknown = [n for n in image_label_names(raw["train"], args.label_column, present=True) if n not in label2id]
    if unknown:
        raise ValueError(f"The training images have classes {unknown} the supernet does not know: {list(label2id)}.")
    splits = prepare_image_datasets(raw, processor, data, label2id=label2id, seed=args.seed)
    size = processor_image_size(processor)
    collator = ImageClassificationCollator(needs_interpolate_pos_encoding(supernet.config, size))
    source = args.train_dir or eval_args.data_dir
    validation = eval_args.validation_dir or eval_args.data_dir
    described = {
        "train": os.path.basename(source.rstrip("/")),
        "validation": os.path.basename((validation or "").rstrip("/")),
        "options": {"validation_dir": eval_args.validation_dir, "data_dir": eval_args.data_dir},
    }
    return splits, collator, described


if __name__ == "__main__":
    main()
