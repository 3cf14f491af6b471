"""End-to-end demo on the shipped SST-2 sample: load all-MiniLM-L6-v2 as an elastic supernet, reorder its heads and
neurons by importance, extract a few subnets, reload each with plain transformers (no hf-nas classes) and report
size, MACs, latency and agreement with the supernet.

    python scripts/demo.py [--output_dir demo_output] [--model_name_or_path PATH]
"""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field

import torch
from transformers import AutoTokenizer, HfArgumentParser

import hf_nas
from hf_nas import ElasticBertForSequenceClassification, SubnetConfig, count_macs, count_parameters, measure_latency
from hf_nas.importance import reorder_by_importance
from hf_nas.utils import checkpoint_name, default_text_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("hf_nas.demo")


@dataclass
class DemoArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Vanilla BERT checkpoint (default MiniLM)."}
    )
    train_file: str = field(default=os.path.join(ROOT, "data", "sst2_sample.tsv"))
    validation_file: str = field(default=os.path.join(ROOT, "data", "sst2_sample_dev.tsv"))
    output_dir: str = field(default="demo_output", metadata={"help": "Where the extracted subnets are saved."})
    max_length: int = field(default=64)
    batch_size: int = field(default=32)
    importance_batches: int = field(default=4)
    latency_batch_size: int = field(default=8)
    latency_sequence_length: int = field(default=64)
    latency_min_run_time: float = field(default=1.0, metadata={"help": "Seconds of timing per subnet."})


def read_tsv(path: str) -> tuple[list[str], list[int]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def batches(tokenizer, sentences, labels, batch_size, max_length):
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(
            sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        enc["labels"] = torch.tensor(labels[i : i + batch_size])
        yield dict(enc)


RELOAD_SCRIPT = r"""
import sys, json, torch
sys.modules["hf_nas"] = None  # prove the folders load without hf-nas
from transformers import AutoModelForSequenceClassification
inputs = torch.load(sys.argv[1])
for folder in sys.argv[2:]:
    cfg = json.load(open(folder + "/config.json"))
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code="auto_map" in cfg).eval()
    with torch.no_grad():
        logits = torch.cat([model(**b).logits for b in inputs])
    torch.save(logits, folder + "/.reload_logits.pt")
    print(folder, type(model).__name__)
"""


def main() -> None:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    torch.manual_seed(0)
    path = args.model_name_or_path or default_text_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = ElasticBertForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    logger.info("loaded %s as a supernet; search space: %s", path, model.search_space)

    train_x, train_y = read_tsv(args.train_file)
    dev_x, dev_y = read_tsv(args.validation_file)
    reorder_by_importance(
        model, batches(tokenizer, train_x, train_y, args.batch_size, args.max_length), args.importance_batches
    )
    dev = [
        {k: v for k, v in b.items() if k != "labels"}
        for b in batches(tokenizer, dev_x, dev_y, args.batch_size, args.max_length)
    ]
    inputs_path = os.path.join(args.output_dir, "dev_inputs.pt")
    os.makedirs(args.output_dir, exist_ok=True)
    torch.save(dev, inputs_path)

    c = model.config
    space = model.search_space
    subnets = {
        "largest": space.largest(),
        "heads-9_ffn-1152": SubnetConfig.uniform(c.num_hidden_layers, 9, 1152, c.hidden_size),
        "depth-5_heads-6_ffn-768": SubnetConfig.uniform(5, 6, 768, c.hidden_size),
        "depth-4_per-layer": SubnetConfig(4, (12, 9, 6, 3), (1536, 1152, 768, 384), c.hidden_size),
        "hidden-192_heads-6": SubnetConfig.uniform(c.num_hidden_layers, 6, 768, 192),
        "smallest": space.smallest(),
    }
    full_macs = count_macs(model, model.max_subnet(), sequence_length=args.latency_sequence_length)
    folders = {name: os.path.join(args.output_dir, name) for name in subnets}
    for name, subnet in subnets.items():
        hf_nas.save_subnet(model, folders[name], subnet, processor=tokenizer)
    # One fresh process, in which `import hf_nas` fails, reloads every folder with plain transformers.
    reload = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, inputs_path, *folders.values()],
        check=True,
        capture_output=True,
        text=True,
    )
    classes = dict(line.rsplit(" ", 1) for line in reload.stdout.strip().splitlines())

    rows, latencies = [], []
    for name, subnet in subnets.items():
        with torch.no_grad(), model.subnet(subnet):
            supernet_logits = torch.cat([model(**b).logits for b in dev])
        reloaded = torch.load(os.path.join(folders[name], ".reload_logits.pt"))
        os.remove(os.path.join(folders[name], ".reload_logits.pt"))
        macs = count_macs(model, subnet, sequence_length=args.latency_sequence_length)
        latency = measure_latency(
            model,
            subnet,
            batch_size=args.latency_batch_size,
            sequence_length=args.latency_sequence_length,
            min_run_time=args.latency_min_run_time,
        )
        latencies.append(latency)
        rows.append(
            {
                "subnet": name,
                "class": classes[folders[name]],
                "params (M)": f"{count_parameters(model, subnet) / 1e6:.2f}",
                "MACs %": f"{100 * macs / full_macs:.0f}",
                "latency ms": f"{latency.median_ms:.1f}",
                "latency %": "",  # filled in below, relative to the whole model
                "max |diff|": f"{(reloaded - supernet_logits).abs().max().item():.1e}",
                "same argmax %": f"{100 * (reloaded.argmax(-1) == supernet_logits.argmax(-1)).float().mean():.0f}",
            }
        )
    os.remove(inputs_path)
    for r, latency in zip(rows, latencies, strict=True):
        r["latency %"] = f"{100 * latency.median_ms / latencies[0].median_ms:.0f}"

    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
    print(
        f"\nSubnets of {checkpoint_name(path)} reloaded with plain transformers "
        f"(latency: batch {args.latency_batch_size} x {args.latency_sequence_length} tokens, {latencies[0].device}, "
        f"{latencies[0].num_threads} threads; agreement on {len(dev_x)} dev sentences):"
    )
    print("  ".join(k.ljust(w) for k, w in widths.items()))
    for r in rows:
        print("  ".join(r[k].ljust(w) for k, w in widths.items()))
    print(f"\nSaved to {os.path.abspath(args.output_dir)}/<subnet> (config, weights, tokenizer).")


if __name__ == "__main__":
    main()
