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

`--finetune_steps N` (text supernets) adds a short distillation of the chosen subnet before it is saved: the subnet
alone is trained for N steps on `--train_file` with distillation from the teacher saved beside the supernet (the
teacher-first recipe), `--teacher_model_name_or_path`, or else the supernet's own full model (the one-pass recipe's
in-place teacher). The card then reports the accuracy without retraining and after it, apart
(`--validation_file`), and says how the subnet was trained.

`--results` is the output folder of `hf-nas search` (`SearchResults.from_dir` reads its
`search_results.json`); the front is the one of `SearchResults.pareto_indices`, as listed in its `pareto.csv`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field

from huggingface_hub import ModelCard
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, HfArgumentParser

import hf_nas
from hf_nas import SubnetConfig, measure_latency
from hf_nas.commands import description_of, parse_arguments
from hf_nas.data import processor_image_size
from hf_nas.hub import check_repo_id, export_subnet, push_subnet_folder
from hf_nas.models.families import get_family
from hf_nas.models.supernet import SupernetMixin
from hf_nas.search import SearchResults, parse_constraints, supernet_fingerprint

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt")
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json",)


@dataclass
class SelectionArguments:
    supernet: str = field(metadata={"help": "A supernet folder saved by `hf-nas train` (save_pretrained)."})
    subnet_json: str | None = field(default=None, metadata={"help": "A SubnetConfig JSON file (SubnetConfig.save)."})
    results: str | None = field(
        default=None, metadata={"help": "A search results folder (search_results.json, pareto.csv)."}
    )
    pareto_index: int | None = field(
        default=None, metadata={"help": "Point of the Pareto front to extract (0-based, the rows of pareto.csv)."}
    )
    constraint: str | None = field(
        default=None,
        metadata={"help": "Comma-separated bounds on objectives, e.g. 'macs<=5e8,latency_ms<=3' (<= or >=)."},
    )
    maximize: str = field(
        default="accuracy", metadata={"help": "With --constraint: the objective the chosen subnet maximizes."}
    )

    def __post_init__(self):
        given = [
            f"--{name}" for name in ("subnet_json", "pareto_index", "constraint") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "Choose the subnet with exactly one of --subnet_json PATH, --pareto_index N (with --results) or "
                f"--constraint 'objective<=value' (with --results); got {given or 'none'}."
            )
        if self.subnet_json is not None and self.results is not None:
            raise ValueError("--results is only used with --pareto_index or --constraint, not with --subnet_json.")
        if self.subnet_json is None and self.results is None:
            raise ValueError(f"{given[0]} needs --results, a search results folder.")


@dataclass
class FinetuneArguments:
    finetune_steps: int = field(
        default=0, metadata={"help": "Optimizer steps of an optional distillation of the subnet before it is saved."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data of the fine-tune (csv/tsv/json)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Data to report the accuracy on, without retraining and after it."}
    )
    text_column: str | None = field(default=None, metadata={"help": "Default: sentence, text or the first str."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text of sentence pairs."})
    label_column: str = field(default="label", metadata={"help": "Column of the labels."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example of the fine-tune."})
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Teacher of the fine-tune (default: the `teacher` folder beside the supernet)."},
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
        if self.finetune_steps > 0 and self.train_file is None:
            raise ValueError("--finetune_steps needs --train_file (the data the subnet is distilled on).")


@dataclass
class ExportArguments:
    output_dir: str = field(metadata={"help": "Where the subnet folder is written (replaced if it exists)."})
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the vanilla checkpoint the supernet was trained from (default: the supernet's card)."
        },
    )
    model_name: str | None = field(default=None, metadata={"help": "Title of the model card."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub id of the dataset the metrics come from."})
    training_recipe: str | None = field(
        default=None, metadata={"help": "Markdown for the card's training section, or a path to a .md file."}
    )
    license: str | None = field(default=None, metadata={"help": "License id for the card (the base model's)."})
    skip_latency: bool = field(default=False, metadata={"help": "Do not measure latency (the card says so)."})
    latency_batch_size: int = field(default=1)
    latency_sequence_length: int = field(
        default=128, metadata={"help": "Tokens per sequence for latency and for the MACs in the card (text)."}
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Image side in pixels for latency and MACs (images; default: the saved image processor's)."},
    )
    latency_device: str = field(default="cpu")
    latency_min_run_time: float = field(default=1.0, metadata={"help": "Seconds of timing."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder to --hub_model_id."})
    hub_model_id: str | None = field(default=None, metadata={"help": "The Hub repo, e.g. username/bert-subnet."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    dry_run: bool = field(default=False, metadata={"help": "With --push_to_hub: list the files, upload nothing."})

    def __post_init__(self):
        if self.push_to_hub and self.hub_model_id is None:
            raise ValueError("--push_to_hub needs --hub_model_id (e.g. username/bert-subnet).")
        if (self.private or self.dry_run) and not self.push_to_hub:
            raise ValueError("--private and --dry_run only apply with --push_to_hub.")
        if self.hub_model_id is not None:
            check_repo_id(self.hub_model_id)


def select_subnet(args: SelectionArguments) -> tuple[SubnetConfig, str, SearchResults | None, int | None]:
    """The subnet chosen by `--subnet_json`, `--pareto_index` or `--constraint`, how it was chosen, and (from search
    results) the results and its record index. Only small files are read: a bad choice fails before any loading."""
    if args.subnet_json is not None:
        subnet = SubnetConfig.load(args.subnet_json)
        return subnet, f"given as JSON (`{os.path.basename(args.subnet_json)}`)", None, None
    results = SearchResults.from_dir(args.results)
    if args.pareto_index is not None:
        index = results.select(pareto_index=args.pareto_index)
        how = f"point {args.pareto_index + 1} of {len(results.pareto_indices())} on the Pareto front of the search"
    else:
        index = results.select(constraints=parse_constraints(args.constraint), maximize=args.maximize)
        how = (
            f"the subnet of best {args.maximize} with `{args.constraint}` among the {len(results.records)} measured "
            "subnets of the search"
        )
    return results.subnet(index), how, results, index


def load_supernet(path: str):
    if not os.path.isdir(path):
        raise ValueError(f"--supernet {path!r} is not a folder; pass a supernet saved with save_pretrained.")
    config = AutoConfig.from_pretrained(path)
    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_class = getattr(hf_nas, architecture or "", None)
    if not (isinstance(model_class, type) and issubclass(model_class, SupernetMixin)):
        raise ValueError(
            f"--supernet {path!r} holds a {config.model_type!r} checkpoint ({architecture}), not an hf-nas supernet; "
            "train one with `hf-nas train`."
        )
    return model_class.from_pretrained(path).eval()


def default_base_model(supernet_path: str) -> str | None:
    """`base_model` from the supernet folder's own model card, if it has one."""
    readme = os.path.join(supernet_path, "README.md")
    if not os.path.isfile(readme):
        return None
    base_model = ModelCard.load(readme).data.to_dict().get("base_model")
    return base_model[0] if isinstance(base_model, list) and base_model else base_model


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
        (SelectionArguments, ExportArguments, FinetuneArguments), prog=prog, description=description_of(__doc__)
    )


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> None:
    """Run `hf-nas extract` on `argv` (default `sys.argv[1:]`): command-line options or one JSON file."""
    select_args, export_args, finetune_args = parse_arguments(build_parser(prog), argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    subnet, how, results, index = select_subnet(select_args)
    supernet = load_supernet(select_args.supernet)
    supernet.search_space.validate(subnet)
    logger.info("subnet (%s): %s", how, json.dumps(subnet.to_dict()))
    pareto = metrics = None
    if results is not None:
        if results.fingerprint and results.fingerprint != supernet_fingerprint(supernet):
            logger.warning("%s was written for another supernet (fingerprints differ).", select_args.results)
        pareto = results.pareto_position(index)
        values = results.records[index]["values"]
        maximized = [n for n, d in zip(results.names, results.directions, strict=True) if d == "maximize"]
        metrics = {n: float(values[n]) for n in maximized} or None  # quality metrics; costs are in the card already

    processor, shape = load_processor(select_args.supernet, supernet, export_args)
    finetuned = None
    if finetune_args.finetune_steps > 0:
        finetuned = finetune(supernet, subnet, processor, select_args.supernet, finetune_args, export_args.output_dir)
        metrics = {**(metrics or {}), **finetuned["metrics"]}
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

    recipe = export_args.training_recipe
    if recipe is not None and recipe.endswith(".md") and os.path.isfile(recipe):
        with open(recipe) as f:
            recipe = f.read()
    if recipe is None and finetuned is not None:
        recipe = (
            f"The supernet was fine-tuned with hf-nas (`hf-nas train`). This subnet was chosen as {how}, "
            f"then trained alone for {finetune_args.finetune_steps} steps with distillation ({finetuned['description']})."
        )
    if recipe is None:
        recipe = (
            f"The supernet was fine-tuned with hf-nas (`hf-nas train`). This subnet was chosen as {how}, "
            "and its weights copied unchanged from the supernet; nothing was trained after extraction."
        )
    base_model = export_args.base_model or default_base_model(select_args.supernet)
    if base_model is None:
        logger.warning("No --base_model given and none recorded in the supernet folder; the card will not name one.")
    folder = export_subnet(
        supernet,
        subnet,
        export_args.output_dir,
        processor=processor,
        base_model=base_model,
        metrics=metrics,
        latency=latency,
        pareto=pareto,
        training_recipe=recipe,
        model_name=export_args.model_name,
        dataset=export_args.dataset_name,
        repo_id=export_args.hub_model_id,
        **({"macs_sequence_length": shape["sequence_length"]} if "sequence_length" in shape else {}),
        **({"macs_image_size": shape["image_size"]} if "image_size" in shape else {}),
        license=export_args.license,
    )
    print(f"Saved the subnet ({how}) to {folder}")
    if export_args.push_to_hub:
        push_subnet_folder(folder, export_args.hub_model_id, private=export_args.private, dry_run=export_args.dry_run)
        if not export_args.dry_run:
            print(f"Pushed to https://huggingface.co/{export_args.hub_model_id}")


def finetune(supernet, subnet, tokenizer, supernet_path: str, args: FinetuneArguments, output_dir: str) -> dict:
    """Distill `subnet` alone for `--finetune_steps` and return its accuracy without retraining and after it."""
    import datasets
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from hf_nas.data import TextDataArguments, load_text_datasets, tokenize_classification
    from hf_nas.metrics import build_compute_metrics
    from hf_nas.training import SupernetTrainingArguments
    from hf_nas.training.recipes import find_saved_teacher, finetune_subnet

    if get_family(supernet.config).is_image:
        raise ValueError("--finetune_steps supports text supernets; for images fine-tune the extracted model.")
    if tokenizer is None:
        raise ValueError(f"--finetune_steps needs the tokenizer saved with the supernet; {supernet_path} has none.")
    teacher = args.teacher_model_name_or_path or find_saved_teacher(supernet_path)
    teacher_name = teacher or "the supernet's full model"
    if teacher is None:  # a one-pass supernet: its full model taught every subnet in place, and teaches this one
        teacher = supernet.extract_subnet(supernet.max_subnet()).eval()
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
    collator = DataCollatorWithPadding(tokenizer)
    work = f"{os.path.normpath(output_dir)}.finetune"

    def accuracy() -> float | None:
        if "validation" not in splits:
            return None
        with supernet.subnet(subnet):
            evaluator = Trainer(
                model=supernet,
                args=SupernetTrainingArguments(work, report_to=[], per_device_eval_batch_size=64, disable_tqdm=True),
                data_collator=collator,
                compute_metrics=build_compute_metrics(["accuracy"]),
            )
            return float(evaluator.evaluate(splits["validation"])["eval_accuracy"])

    datasets.utils.logging.disable_progress_bar()
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
        report_to=[],
        seed=args.seed,
    )
    finetune_subnet(supernet, subnet, targs, splits["train"], teacher_model=teacher, data_collator=collator)
    after = accuracy()
    shutil.rmtree(work, ignore_errors=True)
    metrics = {}
    description = f"teacher: {teacher_name}; {args.finetune_steps} steps on `{os.path.basename(args.train_file)}`"
    if after is not None:
        metrics = {"accuracy": after, "accuracy_without_retraining": before}
        description += (
            f"; accuracy on `{os.path.basename(args.validation_file)}` {100 * before:.2f}% without retraining, "
            f"{100 * after:.2f}% after"
        )
        logger.info("fine-tune: accuracy %.4f without retraining, %.4f after", before, after)
    return {"metrics": metrics, "description": description}


if __name__ == "__main__":
    main()
