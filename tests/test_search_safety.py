"""A search's output folder under stress: killed (SIGKILL) at seeded random points, even halfway through writing its
results, it resumes to exactly the results of an uninterrupted search; two searches never write one folder at once;
a hand-edited results file is refused with the field at fault and left byte-identical; a long search keeps its
memory flat."""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
from transformers import BertTokenizer

from hf_nas import cli
from hf_nas.search import SearchResults, SubnetSearch, get_objective
from hf_nas.search.objectives import Objective, TaskMetricObjective
from hf_nas.utils import OutputLockedError, output_lock

from .conftest import TINY, make_supernet

ROOT = Path(__file__).resolve().parents[1]
KILL_SEED = 2024  # seeds the points where the search is killed
WAIT_S = 240  # the longest any step of a subprocess may take (a loaded runner is slow, a hung one fails)

# `hf-nas search` with its task metric wrapped. Each finished measurement is appended to $SEARCH_CALLS (a JSON line:
# pid, subnet); $SEARCH_SLOW_CALL seconds are slept per measurement; with $SEARCH_GATE the $SEARCH_GATE_AT-th
# measurement waits for that file (creating $SEARCH_GATE.waiting first); with $SEARCH_HALT_WRITE=j the j-th write of
# search_results.json (or of its temporary file) writes half of its text, flushes it, creates $SEARCH_MARK and
# sleeps until killed.
DRIVER = r'''
import builtins, json, os, sys, time

from hf_nas import cli
from hf_nas.commands import search as search_command


class Logged(search_command.TaskMetricObjective):
    calls = 0

    def __call__(self, model, subnet):
        Logged.calls += 1
        gate = os.environ.get("SEARCH_GATE")
        if gate and Logged.calls == int(os.environ["SEARCH_GATE_AT"]):
            open(gate + ".waiting", "w").close()
            while not os.path.exists(gate):
                time.sleep(0.02)
        value = super().__call__(model, subnet)
        time.sleep(float(os.environ.get("SEARCH_SLOW_CALL", "0")))
        with open(os.environ["SEARCH_CALLS"], "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "subnet": subnet.to_dict()}) + "\n")
        return value


class Halting:
    """A text file whose `write` stops halfway, flushed, until the process is killed."""

    def __init__(self, file):
        self.file = file

    def write(self, text):
        self.file.write(text[: len(text) // 2])
        self.file.flush()
        open(os.environ["SEARCH_MARK"], "w").close()
        time.sleep(3600)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)


def halting(open_file):
    writes = 0

    def wrapped(file, mode="r", *args, **kwargs):
        nonlocal writes
        f = open_file(file, mode, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file)
        if "w" in mode and "search_results.json" in os.path.basename(str(name)):
            writes += 1
            if writes == int(os.environ["SEARCH_HALT_WRITE"]):
                return Halting(f)
        return f

    return wrapped


if os.environ.get("SEARCH_HALT_WRITE"):
    os.fdopen, builtins.open = halting(os.fdopen), halting(builtins.open)
search_command.TaskMetricObjective = Logged
cli.main(sys.argv[1:])
'''


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A saved tiny text supernet (labels "0" and "1", a word-level tokenizer) and a 24-row validation csv."""
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
    for _ in range(24):
        words = torch.randint(0, 90, (5,), generator=g).tolist()
        rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
    (folder / "dev.csv").write_text("\n".join(rows) + "\n")
    (folder / "driver.py").write_text(DRIVER)
    return folder / "supernet", folder / "dev.csv"


def search_argv(inputs: tuple[Path, Path], output_dir: Path, num_evaluations: int, *extra: str) -> list[str]:
    """`hf-nas search` with predictors (the default loop) on the tiny inputs: accuracy and MACs, both exact."""
    supernet, dev = inputs
    return [
        "search", "--supernet", str(supernet), "--validation_file", str(dev), "--output_dir", str(output_dir),
        "--objectives", "accuracy,macs", "--num_evaluations", str(num_evaluations), "--initial_evaluations", "5",
        "--evaluations_per_round", "3", "--candidates_per_round", "30", "--sequence_length", "16",
        "--max_seq_length", "16", *extra,
    ]  # fmt: skip


class Search:
    """The driver running `argv` in a subprocess (one torch thread, like the tests), its output in a file."""

    def __init__(self, inputs: tuple[Path, Path], argv: list[str], log: Path, **env: str):
        self.log = log
        driver = inputs[0].parent / "driver.py"
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env}
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(driver), *argv], stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=ROOT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=WAIT_S) == -signal.SIGKILL

    def wait(self) -> int:
        return self.process.wait(timeout=WAIT_S)


def read_records(folder: Path) -> list[dict[str, Any]] | None:
    """The records of `folder`'s search_results.json, `None` while there is none. A half-written file fails."""
    try:
        text = (folder / "search_results.json").read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)["records"]
    except json.JSONDecodeError as e:
        pytest.fail(f"search_results.json is not valid JSON ({e}): {text[-200:]!r}")


def watch(search: Search, folder: Path, seen: list, done: Callable[[list | None], bool]) -> list[dict[str, Any]]:
    """Poll `folder`'s results while `search` runs until `done(records)`; every read must be valid JSON and extend
    the records read before (`seen`, updated): saved measurements are never lost or rewritten."""
    deadline = time.monotonic() + WAIT_S
    while True:
        records = read_records(folder)
        if records is not None:
            assert records[: len(seen)] == seen, "saved records changed"
            seen[:] = records
        if done(records):
            return seen[:]
        if search.process.poll() is not None:
            pytest.fail(f"the search ended (exit {search.process.returncode}) too early:\n{search.output()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out; output:\n{search.output()[-3000:]}"
        time.sleep(0.005)


def measured_by(calls: Path) -> dict[int, list[str]]:
    """The subnets (as sorted JSON) each process measured, by pid, in order."""
    by_pid: dict[int, list[str]] = {}
    for line in calls.read_text().splitlines() if calls.exists() else []:
        call = json.loads(line)
        by_pid.setdefault(call["pid"], []).append(json.dumps(call["subnet"], sort_keys=True))
    return by_pid


def keys(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r["subnet"], sort_keys=True) for r in records]


def temporaries(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".tmp" in name)


# ----------------------------------------------------------------------------------------------------------------
# 1. killed at random points, resumed to the uninterrupted results
@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the driver names open files through /proc (Linux)")
def test_search_killed_at_random_points_resumes_to_the_uninterrupted_results(inputs, tmp_path, capsys):
    n = 20
    reference = tmp_path / "reference"
    cli.main(search_argv(inputs, reference, n))
    capsys.readouterr()

    rng = random.Random(KILL_SEED)
    out, calls, mark = tmp_path / "killed", tmp_path / "calls.jsonl", tmp_path / "halfway"
    env = {"SEARCH_CALLS": str(calls), "SEARCH_SLOW_CALL": "0.05", "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    argv = search_argv(inputs, out, n)
    seen: list = []
    at_start: dict[int, list[dict[str, Any]]] = {}  # pid -> the records saved when it started
    at_kill: dict[int, list[dict[str, Any]]] = {}  # pid -> the records saved when it was killed

    def start(name: str, **extra: str) -> Search:
        saved = list(read_records(out) or [])
        search = Search(inputs, argv, tmp_path / f"{name}.log", **env, **extra)
        at_start[search.pid] = saved
        return search

    # a. right after the k-th measurement is saved (found by polling the results file)
    k = rng.randint(2, 4)
    search = start("after-k")
    watch(search, out, seen, lambda records: records is not None and len(records) >= k)
    search.kill()
    at_kill[search.pid] = read_records(out)

    # b. at a random moment, some time after the resumed search saved its first new measurement
    search = start("random-delay")
    watch(search, out, seen, lambda records: len(records) > len(at_start[search.pid]))
    time.sleep(rng.uniform(0.0, 0.4))
    assert search.process.poll() is None, "the search finished before the kill: give it more evaluations"
    search.kill()
    at_kill[search.pid] = read_records(out)

    # c. halfway through its j-th write of the results file
    j = rng.randint(1, 2)
    search = start("mid-write", SEARCH_HALT_WRITE=str(j), SEARCH_MARK=str(mark))
    watch(search, out, seen, lambda records: mark.exists())
    search.kill()
    at_kill[search.pid] = read_records(out)
    assert len(at_kill[search.pid]) == len(at_start[search.pid]) + j - 1  # the j-th write never landed
    (leftover,) = temporaries(out)  # the half-written temporary file: the kill did hit a write
    with pytest.raises(json.JSONDecodeError):
        json.loads((out / leftover).read_text())

    # d. resumed to the end
    search = start("to-the-end")
    assert search.wait() == 0, search.output()[-3000:]
    final, expected = (json.loads((folder / "search_results.json").read_text()) for folder in (out, reference))
    assert final["records"] == expected["records"]  # the same subnets, values and order
    assert final == expected  # the same front, hypervolume, predictor scores, ...
    assert (out / "pareto.csv").read_text() == (reference / "pareto.csv").read_text()
    assert temporaries(out) == [] and (out / "pareto.png").exists()
    assert all(saved == final["records"][: len(saved)] for saved in at_kill.values())

    # no process measured a subnet saved before it started; each killed one lost at most its measurement in flight
    by_pid = measured_by(calls)
    assert set(by_pid) == set(at_start)
    for pid, measured in by_pid.items():
        assert not set(measured) & set(keys(at_start[pid])), "a saved subnet was measured again"
        saved = len(at_kill.get(pid) or final["records"]) - len(at_start[pid])
        assert saved <= len(measured) <= saved + (pid in at_kill)
    assert sum(len(m) for m in by_pid.values()) <= n + len(at_kill)


# ----------------------------------------------------------------------------------------------------------------
# 2. two searches, one output folder
@pytest.mark.slow
def test_a_second_search_into_a_busy_folder_refuses_or_waits(inputs, tmp_path):
    out, calls, gate = tmp_path / "search", tmp_path / "calls.jsonl", tmp_path / "gate"
    env = {"SEARCH_CALLS": str(calls), "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    first = Search(
        inputs, search_argv(inputs, out, 6), tmp_path / "first.log", SEARCH_GATE=str(gate), SEARCH_GATE_AT="3", **env
    )
    watch(first, out, [], lambda records: os.path.exists(f"{gate}.waiting"))  # holds the lock, 2 records saved
    refused = Search(inputs, search_argv(inputs, out, 6), tmp_path / "refused.log", **env)
    waiting = Search(inputs, search_argv(inputs, out, 9, "--wait_for_lock", "300"), tmp_path / "waiting.log", **env)

    assert refused.wait() == 1
    message = f"--output_dir {out}: Another process is writing {out}: its lock {out}.lock is held"
    assert refused.output().startswith(message) and "--wait_for_lock SECONDS" in refused.output()  # one line
    assert "Traceback" not in refused.output()
    deadline = time.monotonic() + WAIT_S
    while "waiting up to 300 s for its lock" not in waiting.output():
        assert waiting.process.poll() is None and time.monotonic() < deadline, waiting.output()[-3000:]
        time.sleep(0.05)
    assert len(read_records(out)) == 2  # neither the refused nor the waiting search wrote anything

    gate.touch()
    assert first.wait() == 0, first.output()[-3000:]
    assert waiting.wait() == 0, waiting.output()[-3000:]
    by_pid = measured_by(calls)
    assert refused.pid not in by_pid
    lines = [json.loads(line)["pid"] for line in calls.read_text().splitlines()]
    assert lines == [first.pid] * 6 + [waiting.pid] * 3  # the waiting search measured only after the first ended
    records = read_records(out)
    assert keys(records) == by_pid[first.pid] + by_pid[waiting.pid]
    assert len(set(keys(records))) == 9 and temporaries(out) == []


def small_search(model: Any, output_dir: Path, **kwargs: Any) -> SubnetSearch:
    rows = torch.randint(1, 99, (8, 6), generator=torch.Generator().manual_seed(0))
    data = datasets.Dataset.from_dict({"input_ids": rows.tolist(), "labels": (rows[:, 0] > 50).long().tolist()})
    objectives = [TaskMetricObjective(data, batch_size=8), get_objective("macs", sequence_length=16)]
    defaults = dict(strategy="random", use_predictors=False, num_evaluations=4, show_progress=False)
    return SubnetSearch(model, objectives, output_dir=output_dir, **{**defaults, **kwargs})


@pytest.fixture(scope="module")
def model():
    return make_supernet("BertForSequenceClassification", num_labels=2)


class Holder(threading.Thread):
    """Another writer: a thread holding the lock of `folder` until `release` is set."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.holding, self.release = folder, threading.Event(), threading.Event()

    def run(self) -> None:
        with output_lock(self.folder):
            self.holding.set()
            self.release.wait(WAIT_S)

    def __enter__(self) -> Holder:
        self.start()
        self.holding.wait(WAIT_S)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.join(WAIT_S)


def test_the_lock_is_held_for_the_whole_run(model, tmp_path, caplog):
    out = tmp_path / "search"
    small_search(model, out).run()
    before = (out / "search_results.json").read_bytes()
    with Holder(out):
        with pytest.raises(
            OutputLockedError, match=re.escape(f"Another process is writing {out}") + ".*wait_for_lock"
        ):
            small_search(model, out, num_evaluations=6).run()
        assert (out / "search_results.json").read_bytes() == before
        with pytest.raises(OutputLockedError, match=r"waited 0.2 s"):
            small_search(model, out, num_evaluations=6, wait_for_lock=0.2).run()
    search = small_search(model, out, num_evaluations=6, wait_for_lock=60)
    with caplog.at_level(logging.WARNING, logger="hf_nas.search.search"), Holder(out) as holder:
        threading.Timer(0.3, holder.release.set).start()
        results = search.run()  # waits for the lock, then resumes
    assert f"{out} is being written by another process: waiting up to 60 s for its lock" in caplog.text
    assert len(results.records) == 6 and keys(results.records[:4]) == keys(json.loads(before)["records"])
    with output_lock(out):  # a caller holding the lock (`hf-nas search`) runs the search in it
        assert len(small_search(model, out, num_evaluations=7).run().records) == 7
    with pytest.raises(
        ValueError, match=r"`wait_for_lock` must be a number of seconds >= 0 \(math.inf: no limit\), got -1"
    ):
        small_search(model, out, wait_for_lock=-1)


# ----------------------------------------------------------------------------------------------------------------
# resume: the same loop from any interruption
class Interrupt(Exception):
    pass


class StopAt(Objective):
    """A deterministic expensive stand-in objective that raises `Interrupt` at its `stop_at`-th call."""

    name, direction, cheap = "score", "maximize", False

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.calls = stop_at, 0

    def __call__(self, model: Any, subnet: Any) -> float:
        self.calls += 1
        if self.calls == self.stop_at:
            raise Interrupt
        return sum(subnet.intermediate_size) / 1000 + subnet.hidden_size / 100 - len(subnet.layers) / 10


@pytest.fixture(scope="module")
def narrow_model():
    """A supernet whose space holds 80 subnets, so strategies propose measured subnets again."""
    space = {"num_hidden_layers": [2, 3], "num_attention_heads": [2, 4], "intermediate_size": [32, 64],
             "hidden_size": [32], "attention_head_size": 8}  # fmt: skip
    return make_supernet("BertForSequenceClassification", num_labels=2, search_space=space)


def narrow_search(model: Any, output_dir: Path, strategy: str, use_predictors: bool, **kwargs: Any) -> SubnetSearch:
    sizes = dict(num_evaluations=14, initial_evaluations=4, evaluations_per_round=3, candidates_per_round=12)
    return SubnetSearch(
        model, [StopAt(kwargs.pop("stop_at", None)), get_objective("params")], strategy, use_predictors=use_predictors,
        output_dir=output_dir, show_progress=False, **{**sizes, **kwargs},
    )  # fmt: skip


@pytest.mark.parametrize("strategy, use_predictors", [("nsga2", False), ("random", False), ("nsga2", True)])
def test_a_search_interrupted_anywhere_resumes_identically(narrow_model, tmp_path, strategy, use_predictors):
    expected = narrow_search(narrow_model, tmp_path / "straight", strategy, use_predictors).run().records
    for stop_at in range(1, 15):
        folder = tmp_path / str(stop_at)
        with pytest.raises(Interrupt):
            narrow_search(narrow_model, folder, strategy, use_predictors, stop_at=stop_at).run()
        saved = SearchResults.from_dir(folder).records if folder.exists() else []
        assert saved == expected[: stop_at - 1]
        resumed = narrow_search(narrow_model, folder, strategy, use_predictors)
        assert resumed.run().records == expected
        assert resumed.objectives[0].calls == 14 - len(saved)  # nothing saved was measured again


@pytest.mark.parametrize("use_predictors", [False, True])
def test_a_search_resumed_with_another_seed_keeps_its_records(narrow_model, tmp_path, caplog, use_predictors):
    first = narrow_search(narrow_model, tmp_path, "nsga2", use_predictors, num_evaluations=8).run().records
    resumed = narrow_search(narrow_model, tmp_path, "nsga2", use_predictors, seed=1)
    with caplog.at_level(logging.WARNING, logger="hf_nas.search.search"):
        records = resumed.run().records
    assert "was written with other settings (seed: 0 -> 1)" in caplog.text
    assert records[:8] == first and len(set(keys(records))) == 14
    assert resumed.objectives[0].calls == 6


# ----------------------------------------------------------------------------------------------------------------
# 3. a hand-edited results file
def on_data(edit: Callable[[dict], dict]) -> Callable[[str], str]:
    """An edit of the file's text from an edit of its content."""
    return lambda text: json.dumps(edit(json.loads(text)), indent=1)


def edit_records(change: Callable[[list], Any]) -> Callable[[str], str]:
    def edit(data: dict) -> dict:
        change(data["records"])
        return data

    return on_data(edit)


def with_setting(objective: dict[str, Any]) -> dict[str, Any]:
    """The saved MACs objective, as if measured on sequences of 32 tokens."""
    return {**objective, "settings": {**objective["settings"], "sequence_length": 32}}


def set_value(record: int, name: str, value: Any) -> Callable[[str], str]:
    return edit_records(lambda records: records[record]["values"].__setitem__(name, value))


HAND_EDITS = {
    "cut short": (
        lambda text: text[: len(text) // 2],
        r" is not valid JSON \(.*\); was it edited by hand or cut short",
    ),
    "not an object": (lambda text: "[]", r": expected a JSON object with 'version': 1, got 'list'"),
    "objectives not a list": (
        on_data(lambda data: {**data, "objectives": "accuracy"}),
        r": 'objectives' must be a non-empty list, got 'accuracy'",
    ),
    "records not a list": (on_data(lambda data: {**data, "records": {}}), r": 'records' must be a list, got dict"),
    "a record of the wrong type": (
        edit_records(lambda records: records.__setitem__(1, "oops")),
        r": records\[1\] must be an object with 'subnet' and 'values', got str",
    ),
    "a record without its subnet": (
        edit_records(lambda records: records[0].pop("subnet")),
        r": records\[0\] has no 'subnet' object \(got None\)",
    ),
    "a record without its values": (
        edit_records(lambda records: records[2].pop("values")),
        r": records\[2\]\['values'\] must map every objective of \['accuracy', 'macs'\] to a number; got NoneType",
    ),
    "a subnet without a key": (
        edit_records(lambda records: records[3]["subnet"].pop("hidden_size")),
        r": records\[3\]\['subnet'\] is not a subnet config: Missing keys in subnet config: \['hidden_size'\]",
    ),
    "a subnet outside the space": (
        edit_records(lambda records: records[1]["subnet"].__setitem__("hidden_size", 40)),
        r": records\[1\]\['subnet'\] is not in this supernet's search space: `hidden_size`=40",
    ),
    "a missing value": (
        edit_records(lambda records: records[1]["values"].pop("macs")),
        r": records\[1\]\['values'\] must map every objective of \['accuracy', 'macs'\] to a number; 'macs' is missing",
    ),
    "a value in words": (set_value(0, "accuracy", "high"), r"; 'accuracy' is 'high' \(a str\)"),
    "a null value": (set_value(2, "macs", None), r"records\[2\]\['values'\].*; 'macs' is None \(a NoneType\)"),
    "a boolean value": (set_value(2, "accuracy", True), r"; 'accuracy' is True \(a bool\)"),
    "a NaN value": (
        set_value(1, "accuracy", float("nan")),
        r"; 'accuracy' is nan \(only finite numbers are allowed\)",
    ),
    "a feasible flag in words": (
        edit_records(lambda records: records[0].__setitem__("feasible", "yes")),
        r": records\[0\]\['feasible'\] must be true or false, got 'yes'",
    ),
    "a repeated record": (
        edit_records(lambda records: records.append(records[0])),
        r": records\[4\] repeats the subnet of records\[0\]; a search measures each once",
    ),
    "objectives swapped": (
        on_data(lambda data: {**data, "objectives": data["objectives"][::-1]}),
        r" was written with other objectives than this search's: the file has \[\('macs', 'minimize'\), "
        r"\('accuracy', 'maximize'\)\], this search \[\('accuracy', 'maximize'\), \('macs', 'minimize'\)\]",
    ),
    "an objective measured otherwise": (
        on_data(lambda data: {**data, "objectives": [data["objectives"][0], with_setting(data["objectives"][1])]}),
        r"other objectives than this search's: objective 'macs' was measured with other settings \(sequence_length "
        r"differ: \{'sequence_length': 32\} in the file, \{'sequence_length': 16\} in this search\)",
    ),
    "another supernet": (
        on_data(lambda data: {**data, "fingerprint": "0" * 16}),
        r" was written for another supernet",
    ),
}


@pytest.fixture(scope="module")
def finished(model, tmp_path_factory) -> Path:
    """The output folder of a finished 4-evaluation search."""
    out = tmp_path_factory.mktemp("finished") / "search"
    small_search(model, out).run()
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("case", list(HAND_EDITS))
def test_a_hand_edited_results_file_is_refused_untouched(model, finished, tmp_path, case):
    edit, message = HAND_EDITS[case]
    out = tmp_path / "search"
    shutil.copytree(finished, out)
    path = out / "search_results.json"
    path.write_text(edit(path.read_text()))
    before = snapshot(out)
    with pytest.raises(ValueError) as error:
        small_search(model, out, num_evaluations=6).run()
    assert str(error.value).startswith(str(path)) and re.search(message, str(error.value)), str(error.value)
    assert snapshot(out) == before  # byte-identical, nothing added


# ----------------------------------------------------------------------------------------------------------------
# 4. memory of a long search
class Probe(Objective):
    """A stand-in accuracy (exact and cheap to compute) that measures the Python heap as evaluations go by: after
    each evaluation count of `at` (at the next call) the traced memory, its peak over the 10 evaluations before, and
    the live tensors and modules."""

    name, direction, cheap = "accuracy", "maximize", False

    def __init__(self, at: tuple[int, ...]):
        self.at, self.calls, self.marks = at, 0, {}

    def __call__(self, model: Any, subnet: Any) -> float:
        self.calls += 1
        done = self.calls - 1  # evaluations finished (measured and saved)
        if done + 10 in self.at:
            tracemalloc.reset_peak()
        if done in self.at:
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            live = [o for o in gc.get_objects() if issubclass(type(o), (torch.Tensor, torch.nn.Module))]
            self.marks[done] = {"current": current, "peak": peak, "live": len(live)}
        return sum(subnet.intermediate_size) / 1000 + subnet.hidden_size / 100 - subnet.num_hidden_layers / 10


@pytest.mark.slow
def test_a_long_search_keeps_its_memory_flat(model, tmp_path):
    probe = Probe(at=(100, 300, 500))
    objectives = [probe, get_objective("params"), get_objective("macs", sequence_length=16)]
    search = SubnetSearch(
        model, objectives, "random", use_predictors=False, num_evaluations=501, output_dir=tmp_path / "search",
        show_progress=False,
    )  # fmt: skip
    tracemalloc.start()
    try:
        results = search.run()
    finally:
        tracemalloc.stop()
    assert len(results.records) == 501
    # What may grow per evaluation: the record itself, the search's index of measured subnets and the strategy's
    # history (about 6 times the record's JSON size, kept), and while the results file is rewritten its text (about
    # 15 times, then freed). The bounds leave room for both, and the growth must not speed up (the second 200
    # evaluations keep about what the first 200 kept). A model kept per evaluation, or a copy of the results kept
    # per save, exceeds them by far.
    record_bytes = len(json.dumps(results.records[-1]))
    first, middle, last = (probe.marks[n] for n in (100, 300, 500))
    kept, peak = last["current"] - first["current"], last["peak"] - first["peak"]
    assert kept < 400 * 16 * record_bytes, (kept, record_bytes)
    assert peak < 400 * 32 * record_bytes, (peak, record_bytes)
    early, late = middle["current"] - first["current"], last["current"] - middle["current"]
    assert late < 1.25 * early + 200 * record_bytes, (early, late, record_bytes)  # linear, not quadratic
    assert last["live"] <= first["live"] + 5  # no tensor or module kept per evaluation
