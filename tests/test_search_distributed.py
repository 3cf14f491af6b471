"""A search over two processes (`torchrun --nproc_per_node 2`, gloo on CPU) writes the same results files as the
one-process search with the same seed; the processes shared the task-metric evaluations and only the main process
measured the timed objective."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizer

from .conftest import TINY, make_supernet

REPO_ROOT = Path(__file__).resolve().parents[1]
DRIVER = REPO_ROOT / "tests" / "scripts" / "distributed_search.py"
SEARCHES = ("predictors", "evolutionary")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(command: list[str], calls: Path, cache: Path, timeout: float = 400) -> str:
    """Run `command` (its own process group, ended on a timeout) with one thread per process; its output."""
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
        "SEARCH_CALLS": str(calls), "HF_DATASETS_CACHE": str(cache),
    }  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command)} ran past {timeout} s:\n{output[-5000:]}")
    assert process.returncode == 0, output[-5000:]
    return output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A saved tiny text supernet (word-level tokenizer) and a 32-row validation csv with a learnable label."""
    folder = tmp_path_factory.mktemp("inputs")
    supernet = make_supernet(
        "BertForSequenceClassification", num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    with torch.no_grad():
        for p in supernet.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    supernet.save_pretrained(folder / "supernet")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(folder / "supernet")
    g = torch.Generator().manual_seed(0)
    rows = ["sentence,label"]
    for _ in range(32):
        words = torch.randint(0, 90, (5,), generator=g).tolist()
        rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
    (folder / "dev.csv").write_text("\n".join(rows) + "\n")
    return folder


def read_calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def key(subnet: dict) -> str:
    return json.dumps(subnet, sort_keys=True)


@pytest.mark.slow
def test_two_processes_write_the_results_of_one(inputs, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    launch([sys.executable, str(DRIVER), str(inputs), str(one)], tmp_path / "one.jsonl", tmp_path / "cache1")
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), str(DRIVER), str(inputs), str(two),
    ]  # fmt: skip
    launch(torchrun, tmp_path / "two.jsonl", tmp_path / "cache2")

    for search in SEARCHES:
        for name in ("search_results.json", "pareto.csv"):  # byte for byte
            assert (two / search / name).read_text() == (one / search / name).read_text(), (search, name)
        records = json.loads((one / search / "search_results.json").read_text())["records"]
        assert len(records) == 11 and len({key(r["subnet"]) for r in records}) == 11
        assert (two / search / "pareto.png").exists()

    calls = read_calls(tmp_path / "two.jsonl")
    accuracy = [c for c in calls if c["objective"] == "accuracy"]
    depth = [c for c in calls if c["objective"] == "depth"]
    assert {c["rank"] for c in accuracy} == {0, 1}  # both processes evaluated accuracy
    assert len({c["pid"] for c in accuracy}) == 2
    by_rank = {r: [key(c["subnet"]) for c in accuracy if c["rank"] == r] for r in (0, 1)}
    measured = sum(
        len(json.loads((two / s / "search_results.json").read_text())["records"]) for s in SEARCHES
    )  # every subnet once, by one of the processes
    assert len(by_rank[0]) + len(by_rank[1]) == measured == 22
    assert abs(len(by_rank[0]) - len(by_rank[1])) <= 4  # the shares of each round differ by at most one
    assert {c["rank"] for c in depth} == {0} and len(depth) == measured  # the timed objective: main process only
    single = read_calls(tmp_path / "one.jsonl")
    assert len({c["pid"] for c in single}) == 1 and len([c for c in single if c["objective"] == "accuracy"]) == 22
