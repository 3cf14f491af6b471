"""Exports that survive crashes, concurrent writers and bad input.

- Crashes: `hf-nas extract` runs in real processes that are killed with SIGKILL at seeded random points (before
  anything is written, in the middle of writing the weights or the card, just before and just after the new folder is
  swapped in, while the previous folder is being deleted, and at random times). After every kill the output folder is
  the previous complete export or the new complete one, byte for byte, and loads; only hidden temporaries are left
  beside it, and the next export removes them.
- Concurrent writers: a second `hf-nas extract` or `hf-nas compress` into a folder another process is writing stops at
  once, writing nothing; with `--wait_for_lock` it waits and then writes a complete folder of its own.
- Bad input (a truncated weight file, a config that does not fit its weights, a search space or subnet JSON edited
  with wrong types, a vanilla checkpoint given as a supernet) is refused with a message naming the file or the field,
  and nothing is written.

The killed processes are children forked from one driver process that has imported hf-nas once (`DRIVER` below), so a
kill costs a fork, not an interpreter start; they run the real `hf_nas.cli.main`. The driver can slow the writes down
and hold a child at a chosen point (it waits for SIGUSR1 there), so a kill lands exactly where the test wants it.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification, BertTokenizer

import hf_nas.utils
from hf_nas import ElasticBertForSequenceClassification, SubnetConfig, export_subnet, extract_subnet, save_subnet
from hf_nas.commands import compress as compress_command
from hf_nas.commands import extract as extract_command
from hf_nas.utils import OutputLockedError, output_lock

from .conftest import TINY, make_supernet, tiny_bert_config

ROOT = Path(__file__).resolve().parent.parent
SEQ = 16
SEED = 20240601  # the kill points
VANILLA = SubnetConfig.uniform(2, 2, 32, 16)  # a plain BertForSequenceClassification
PER_LAYER = SubnetConfig(2, (4, 2), (64, 32), 32)  # a per-layer subnet with its modeling file
CHUNK = 4096  # bytes the driver writes at a time when it slows the weights down
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
TEMPORARY = re.compile(r"\.subnet\.(tmp|old)-[a-z0-9_]{8}")

DRIVER = r'''
import json, os, re, select, signal, sys, time, traceback

import torch

torch.set_num_threads(1)
import huggingface_hub
import safetensors.torch
import transformers.modeling_utils

import hf_nas.commands.compress
import hf_nas.commands.extract
import hf_nas.utils
from hf_nas.cli import main

OUT = os.dup(1)


def emit(line):
    os.write(OUT, (line + "\n").encode())


def install(job):
    """Patch this child's writers: markers at each phase, optional slow-down, a hold point, an injected failure."""
    tag, pause = job["id"], job.get("pause")

    def phase(name):
        emit(f"PHASE {tag} {name}")

    def hold(name):
        if pause == name:
            emit(f"PAUSED {tag} {name}")
            signal.sigwait({signal.SIGUSR1})
            emit(f"RESUMED {tag} {name}")

    def save_file(tensors, filename, metadata=None):  # safetensors' save_file, in slow chunks
        data = safetensors.torch.save(tensors, metadata=metadata)
        phase("weights")
        with open(filename, "wb") as f:
            for start in range(0, len(data), job.get("chunk", len(data) or 1)):
                if start and start == job.get("after"):
                    f.flush()
                    hold("weights")
                f.write(data[start : start + job.get("chunk", len(data) or 1)])
                f.flush()
                time.sleep(job.get("delay", 0.0))

    def card_save(self, filepath):  # RepoCard.save, in two halves
        phase("card")
        if job.get("fail") == "card":
            raise OSError("disk full (injected)")
        text = str(self)
        with open(filepath, mode="w", newline="", encoding="utf-8") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            hold("card")
            f.write(text[len(text) // 2 :])

    replace, remove, rename = hf_nas.utils._replace, hf_nas.utils._remove, os.rename

    def swap(tmp, path):
        phase("swap")
        hold("swap")
        replace(tmp, path)

    def slow_remove(path):  # delete the old folder file by file
        phase("cleanup")
        removed = 0
        for root, _, files in os.walk(path):
            for name in sorted(files):
                os.remove(os.path.join(root, name))
                removed += 1
                if removed == job.get("after"):
                    hold("cleanup")
                time.sleep(job.get("delay", 0.0))
        remove(path)

    def aside_rename(src, dst):
        rename(src, dst)
        if ".old-" in os.path.basename(dst):
            phase("aside")
            hold("aside")

    def lock(*args, **kwargs):
        phase("lock")
        return original_lock(*args, **kwargs)

    original_lock = hf_nas.utils.output_lock
    transformers.modeling_utils.safe_save_file = save_file
    huggingface_hub.RepoCard.save = card_save
    hf_nas.utils._replace, hf_nas.utils._remove, hf_nas.utils.output_lock = swap, slow_remove, lock
    os.rename = aside_rename
    if job.get("no_exchange"):
        hf_nas.utils._exchange = lambda a, b: False
    phase("start")
    hold("start")


def child(job):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    err = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(err, 1)
    os.dup2(err, 2)
    code = 0
    try:
        install(job)
        main(job["argv"])
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve():
    """Fork a child per job line; signal a child on a {"signal": ..., "id": ...} line (only while it is unreaped, so
    its pid cannot belong to another process yet); report each child's exit status."""
    children, pending = {}, b""
    emit("READY")
    while True:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            emit(f"EXIT {children.pop(pid)} {os.waitstatus_to_exitcode(status)}")
        if not select.select([0], [], [], 0.01)[0]:
            continue
        data = os.read(0, 65536)
        if not data:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
            return
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            job = json.loads(line)
            if "signal" in job:
                for pid in [pid for pid, tag in children.items() if tag == job["id"]]:
                    os.kill(pid, getattr(signal, job["signal"]))
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(job)
            children[pid] = job["id"]
            emit(f"PID {job['id']} {pid}")


serve()
'''


class Driver:
    """The test's end of `DRIVER`: submit jobs (an `hf-nas` command line and its patches), read their markers, and
    kill, resume or wait for the children."""

    def __init__(self, folder: Path):
        self.folder = folder
        script = folder / "driver.py"
        script.write_text(DRIVER)
        self.log = open(folder / "driver.log", "wb")  # noqa: SIM115 (closed in `close`)
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT,
            env=ENV,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.count = 0
        self.expect("READY", timeout=300)

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put("EOF")

    def expect(self, prefix: str, timeout: float = 120) -> str:
        """The next marker starting with `prefix` (earlier ones are kept in `seen`)."""
        for line in self.seen:
            if line.startswith(prefix):
                self.seen.remove(line)
                return line
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} from the driver; see {self.folder / 'driver.log'}") from None
            if line == "EOF":
                raise AssertionError(f"the driver ended; see {self.folder / 'driver.log'}")
            if line.startswith(prefix):
                return line
            self.seen.append(line)

    def drain(self) -> list[str]:
        """Every marker that has arrived so far, without waiting."""
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return list(self.seen)

    def send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def submit(self, argv: list[str], **patches: Any) -> int:
        self.count += 1
        self.send({"id": self.count, "argv": argv, "log": str(self.folder / f"job{self.count}.log"), **patches})
        self.expect(f"PID {self.count} ")
        return self.count

    def wait(self, job: int, timeout: float = 120) -> int:
        return int(self.expect(f"EXIT {job} ", timeout).split()[2])

    def run(self, argv: list[str], **patches: Any) -> int:
        job = self.submit(argv, **patches)
        code = self.wait(job)
        assert code == 0, f"job {job} failed ({code}):\n{self.output(job)[-3000:]}"
        return code

    def kill(self, job: int) -> int:
        """SIGKILL the child (unless it has finished already) and return its exit status."""
        self.send({"signal": "SIGKILL", "id": job})
        return self.wait(job)

    def resume(self, job: int) -> None:
        self.send({"signal": "SIGUSR1", "id": job})

    def output(self, job: int) -> str:
        return (self.folder / f"job{job}.log").read_text(errors="replace")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


# ----------------------------------------------------------------------------------------------------------------
# fixtures and helpers
def tiny_tokenizer() -> BertTokenizer:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    return BertTokenizer(vocab={token: i for i, token in enumerate(tokens)})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A saved tiny supernet with a tokenizer, the two subnets as JSON and an export of VANILLA (exported/subnet)."""
    folder = tmp_path_factory.mktemp("safety")
    supernet = make_supernet("BertForSequenceClassification")
    supernet.save_pretrained(folder / "supernet")
    tiny_tokenizer().save_pretrained(folder / "supernet")
    for name, subnet in (("vanilla", VANILLA), ("per_layer", PER_LAYER)):
        subnet.save(folder / f"{name}.json")
    export_subnet(supernet, VANILLA, folder / "exported" / "subnet", processor=tiny_tokenizer())
    return folder


@pytest.fixture
def existing(work, tmp_path) -> tuple[Path, dict[str, bytes]]:
    """An earlier export at `tmp_path/subnet`, and its bytes."""
    out = tmp_path / "subnet"
    shutil.copytree(work / "exported" / "subnet", out)
    return out, snapshot(out)


@pytest.fixture
def supernet_copy(work, tmp_path) -> Path:
    """A copy of the saved supernet, to damage."""
    return Path(shutil.copytree(work / "supernet", tmp_path / "supernet"))


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    driver = Driver(tmp_path_factory.mktemp("driver"))
    yield driver
    driver.close()


def extract_argv(work: Path, subnet: str, out: Path, *extra: str, supernet: Path | None = None) -> list[str]:
    """`hf-nas extract` of `work`'s supernet (or `supernet`) and subnet JSON `work/<subnet>.json` into `out`."""
    return [
        "extract", "--supernet", str(supernet or work / "supernet"), "--subnet_json", str(work / f"{subnet}.json"),
        "--output_dir", str(out), "--skip_latency", "--latency_sequence_length", str(SEQ), *extra,
    ]  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def beside(out: Path) -> tuple[list[str], list[str]]:
    """The entries beside `out` that belong to it: visible ones, and hidden temporaries."""
    names = [n for n in os.listdir(out.parent) if n.startswith(("subnet", ".subnet"))]
    return sorted(n for n in names if not n.startswith(".")), sorted(n for n in names if n.startswith("."))


def assert_loads_as(out: Path, expected: torch.nn.Module) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(out)
    state, reference = model.state_dict(), expected.state_dict()
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def assert_untouched(out: Path, before: dict[str, bytes] | None) -> None:
    """`out` is as it was (absent, or byte-identical), and nothing else was written beside it."""
    if before is None:
        assert not out.exists()
    else:
        assert snapshot(out) == before
    visible, hidden = beside(out)
    assert visible == (["subnet"] if before is not None else []) and hidden == [], (visible, hidden)


# ----------------------------------------------------------------------------------------------------------------
# 1. crashes
def kill_points(rng: random.Random, duration: float) -> list[dict[str, Any]]:
    """The seeded kill points: each phase held once (at a random place where it has a length), plus random times of
    a slowed run lasting about `duration` seconds; in a random order."""
    points = [
        {"pause": "start"},
        {"pause": "weights", "chunk": CHUNK, "at": rng.random()},
        {"pause": "weights", "chunk": CHUNK, "at": rng.random()},
        {"pause": "card"},
        {"pause": "swap"},
        {"pause": "cleanup", "after": rng.randrange(1, 4)},
        {"pause": "aside", "no_exchange": True},
    ]
    points += [{"kill_after": rng.uniform(0, duration), "chunk": CHUNK, "delay": 0.02} for _ in range(3)]
    rng.shuffle(points)
    return points


def chunk_offset(size: int, at: float) -> int:
    """The chunk boundary at the fraction `at` of `size` bytes, strictly inside them."""
    chunks = -(-size // CHUNK)
    assert chunks >= 2, f"the weights ({size} bytes) fit in one chunk"
    return CHUNK * min(max(1, int(at * chunks)), chunks - 1)


def other(name: str) -> str:
    return "per_layer" if name == "vanilla" else "vanilla"


@pytest.mark.slow
def test_killed_exports_leave_the_previous_or_the_new_complete_folder(work, driver, tmp_path):
    supernet = ElasticBertForSequenceClassification.from_pretrained(work / "supernet")
    expected = {name: extract_subnet(supernet, s) for name, s in (("vanilla", VANILLA), ("per_layer", PER_LAYER))}
    out = tmp_path / "subnet"
    references = {}
    for name in ("vanilla", "per_layer"):  # the second one also replaces a folder
        driver.run(extract_argv(work, name, out))
        references[name] = snapshot(out)
        assert_loads_as(out, expected[name])
    sizes = {name: len(files["model.safetensors"]) for name, files in references.items()}
    started = time.monotonic()
    driver.run(extract_argv(work, "vanilla", out), chunk=CHUNK, delay=0.02)  # slowed: the same bytes
    duration = time.monotonic() - started
    assert snapshot(out) == references["vanilla"] and beside(out) == (["subnet"], [])

    current = "vanilla"
    for point in kill_points(random.Random(SEED), duration):
        new = other(current)
        patches = {k: v for k, v in point.items() if k not in ("kill_after", "at")}
        if "at" in point:
            patches["after"] = chunk_offset(sizes[new], point["at"])
        job = driver.submit(extract_argv(work, new, out), **patches)
        if "kill_after" in point:
            driver.expect(f"PHASE {job} start")
            time.sleep(point["kill_after"])
        else:
            driver.expect(f"PAUSED {job} {point['pause']}")
        code = driver.kill(job)
        context = f"kill point {point} (seed {SEED}), exporting {new} over {current}, exit {code}"
        assert code == -9 or "kill_after" in point, context  # a held child cannot finish before it is killed
        visible, hidden = beside(out)
        assert all(TEMPORARY.fullmatch(name) for name in hidden), f"{context}: {hidden}"
        assert set(visible) <= {"subnet", "subnet.lock"}, f"{context}: {visible}"
        if point.get("pause") == "weights":  # the kill landed in the middle of the weights
            assert [os.path.getsize(out.parent / h / "model.safetensors") for h in hidden] == [patches["after"]]
        if point.get("pause") == "aside":
            check_put_back(driver, work, out, new, references[current], context)
        state = snapshot(out)
        assert state in (references[current], references[new]), context
        assert_loads_as(out, expected[current if state == references[current] else new])
        if point.get("pause") in ("start", "weights", "card", "swap", "aside"):
            assert state == references[current], context
        if point.get("pause") == "cleanup":
            assert state == references[new], context

        driver.run(extract_argv(work, new, out))  # the rerun succeeds and removes what the kill left
        assert snapshot(out) == references[new], context
        assert beside(out) == (["subnet"], []), context
        current = new

    # a last kill in the middle of the weights, then a plain `python -m hf_nas extract` cleans up after it
    new = other(current)
    job = driver.submit(
        extract_argv(work, new, out), chunk=CHUNK, after=chunk_offset(sizes[new], 0.5), pause="weights"
    )
    driver.expect(f"PAUSED {job} weights")
    driver.kill(job)
    assert len(beside(out)[1]) == 1 and snapshot(out) == references[current]
    result = run_cli(*extract_argv(work, new, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert snapshot(out) == references[new] and beside(out) == (["subnet"], [])
    assert_loads_as(out, expected[new])


def check_put_back(driver: Driver, work: Path, out: Path, new: str, previous: dict, context: str) -> None:
    """Killed between the two renames of a system that cannot swap folders: `out` is missing, the previous folder
    waits whole beside it, and the next export, even one that fails, puts it back and removes the temporaries."""
    assert not out.exists(), context
    (old,) = [h for h in beside(out)[1] if ".old-" in h]
    assert snapshot(out.parent / old) == previous, context
    failed = driver.submit(extract_argv(work, new, out), fail="card")
    assert driver.wait(failed) == 1 and "disk full (injected)" in driver.output(failed), driver.output(failed)
    assert beside(out) == (["subnet"], []), context


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """`python -m hf_nas ARGV` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "hf_nas", *argv], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300
    )


# ----------------------------------------------------------------------------------------------------------------
# 2. two writers of one folder
@pytest.mark.slow
def test_a_second_extract_into_a_folder_being_written_stops_at_once_or_waits(work, driver, tmp_path):
    out = tmp_path / "subnet"
    first = driver.submit(extract_argv(work, "per_layer", out), pause="weights", chunk=CHUNK, after=CHUNK)
    driver.expect(f"PAUSED {first} weights")  # it holds the lock, half its weights written
    (tmp,) = beside(out)[1]

    result = run_cli(*extract_argv(work, "vanilla", out))  # a plain second process
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"--output_dir {out}: Another process is writing {out}: its lock {out}.lock is held")
    assert last.endswith("Or pass --wait_for_lock SECONDS to wait for it.") and "Traceback" not in result.stderr
    assert beside(out) == (["subnet.lock"], [tmp])  # it wrote nothing, and left the first one's folder alone

    waiting = driver.submit(extract_argv(work, "vanilla", out, "--wait_for_lock", "120"))
    driver.expect(f"PHASE {waiting} lock")
    time.sleep(0.5)
    assert f"PHASE {waiting} weights" not in driver.drain()  # it waits while the first one holds the lock
    assert beside(out) == (["subnet.lock"], [tmp])
    driver.resume(first)
    assert driver.wait(first) == 0 and driver.wait(waiting) == 0, driver.output(waiting)[-3000:]
    assert beside(out) == (["subnet"], [])
    # the second one's folder, complete and alone (the first one's per-layer modeling file is gone with its folder)
    assert sorted(snapshot(out)) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert SubnetConfig.from_dict(ModelCard.load(out / "README.md").data.to_dict()["hf_nas"]["subnet"]) == VANILLA
    assert_loads_as(
        out, extract_subnet(ElasticBertForSequenceClassification.from_pretrained(work / "supernet"), VANILLA)
    )
    assert "Saved the subnet" in driver.output(first)


@pytest.mark.slow
def test_a_second_compress_into_a_folder_being_written_stops_at_once(work, driver, existing, tmp_path):
    model, _ = existing
    out = tmp_path / "sparse"
    argv = ["compress", "--model", str(model), "--output_dir", str(out), "--sparsity", "0.5"]
    first = driver.submit(argv, pause="weights", chunk=CHUNK, after=CHUNK)
    driver.expect(f"PAUSED {first} weights")

    result = run_cli(*argv)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"--output_dir {out}: Another process is writing {out}" in result.stderr.strip().splitlines()[-1]
    waiting = driver.submit([*argv, "--wait_for_lock", "120"])  # and without --overwrite_output_dir
    driver.expect(f"PHASE {waiting} lock")
    driver.resume(first)
    assert driver.wait(first) == 0, driver.output(first)[-3000:]
    written = snapshot(out)
    assert {"config.json", "model.safetensors", "compression.json", "README.md"} <= set(written)
    # It got the lock once the first one was done, and found the folder written meanwhile.
    assert driver.wait(waiting) == 1
    assert "exists and is not empty; pass --overwrite_output_dir" in driver.output(waiting)
    assert snapshot(out) == written
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith((".sparse", "sparse"))) == ["sparse"]


def test_export_subnet_refuses_a_folder_another_writer_holds(tmp_path):
    supernet = make_supernet("BertForSequenceClassification")
    out = tmp_path / "subnet"
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with output_lock(out):
            holding.set()
            release.wait(60)

    writer = threading.Thread(target=other_writer)
    writer.start()
    holding.wait(60)
    try:
        with pytest.raises(OutputLockedError, match=f"Another process is writing {re.escape(str(out))}"):
            export_subnet(supernet, VANILLA, out)
        with pytest.raises(OutputLockedError):
            save_subnet(supernet, out, PER_LAYER)
        assert beside(out) == (["subnet.lock"], [])
        threading.Timer(0.2, release.set).start()
        export_subnet(supernet, VANILLA, out, wait_for_lock=60)  # waits for it, then writes
    finally:
        release.set()
        writer.join()
    assert_loads_as(out, extract_subnet(supernet, VANILLA))
    with output_lock(out):  # a caller holding the lock writes through it
        save_subnet(supernet, out, PER_LAYER)
    assert_loads_as(out, extract_subnet(supernet, PER_LAYER))


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_output_lock_admits_one_holder_at_a_time_and_leaves_no_file(tmp_path, monkeypatch):
    """Writers queue on the lock; each holder removes the lock file as it releases it, and a waiter that had opened
    the removed file locks the new one instead of holding a second lock. (Each `flock` is delayed, so that a holder
    often releases between a waiter's `open` and its `flock`.)"""
    out, inside, most, errors = tmp_path / "subnet", [], [], []
    real_flock = hf_nas.utils.fcntl.flock

    def late_flock(fd: int, operation: int) -> None:
        time.sleep(0.01)
        real_flock(fd, operation)

    monkeypatch.setattr(hf_nas.utils.fcntl, "flock", late_flock)

    def writer() -> None:
        try:
            for _ in range(6):
                with output_lock(out, 30):
                    inside.append(1)
                    most.append(len(inside))
                    time.sleep(0.02)
                    inside.pop()
        except BaseException as e:  # reported below
            errors.append(e)

    writers = [threading.Thread(target=writer) for _ in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    assert not errors and len(most) == 36 and max(most) == 1
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# 3. bad input
@pytest.mark.slow
def test_a_truncated_supernet_weight_file_is_named_and_nothing_is_written(work, supernet_copy, existing):
    out, before = existing
    weights = supernet_copy / "model.safetensors"
    full = weights.stat().st_size
    os.truncate(weights, full // 2)
    result = run_cli(*extract_argv(work, "vanilla", out, supernet=supernet_copy))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"ValueError: The checkpoint file {weights} is damaged: it holds {full // 2:,} bytes but its header "
        f"describes {full:,}; save, copy or download it again."
    )
    assert "safetensors_rust" not in result.stderr and "SafetensorError" not in result.stderr
    assert_untouched(out, before)


def truncate_header(weights: Path) -> str:
    os.truncate(weights, 6)
    return "its 6 bytes do not start with a safetensors header"


def overwrite_header(weights: Path) -> str:
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\xff" * 8
    weights.write_bytes(bytes(data))
    return "its header is not a safetensors header"


@pytest.mark.parametrize("damage", [truncate_header, overwrite_header], ids=["truncated header", "garbled header"])
def test_a_damaged_weight_file_is_named(work, supernet_copy, tmp_path, damage):
    weights = supernet_copy / "model.safetensors"
    reason = damage(weights)
    out = tmp_path / "subnet"
    with pytest.raises(ValueError, match=re.escape(f"The checkpoint file {weights} is damaged: {reason}")):
        extract_command.main(extract_argv(work, "vanilla", out, supernet=supernet_copy)[1:])
    assert_untouched(out, None)


def edit_space(**choices: Any):
    return lambda config: config["search_space"].update(choices)


def edit(space: dict | None = None, **fields: Any):
    def apply(config: dict) -> None:
        config.update(fields)
        config["search_space"].update(space or {})

    return apply


CONFIG_EDITS = {
    "hidden_size choices above the weights": (
        edit_space(hidden_size=[16, 32, 48]),
        ValueError,
        r"config\.json: search_space\.hidden_size choices \[48\] exceed the supernet's hidden_size=32; "
        r"allowed: 1 to 32\.",
    ),
    "num_supernet_layers above the config": (
        edit_space(num_supernet_layers=4),
        ValueError,
        r"search_space\.num_supernet_layers=4 exceeds the supernet's num_hidden_layers=3; allowed: 1 to 3\.",
    ),
    "more layers than the weights": (
        edit({"num_hidden_layers": [2, 4], "num_supernet_layers": 4}, num_hidden_layers=4),
        ValueError,
        r"config\.json sets num_hidden_layers=4 \(search_space\.num_supernet_layers=4\), but the weights in "
        r".*supernet \(model\.safetensors\) hold 3 layers; allowed: num_hidden_layers=3, "
        r"search_space\.num_supernet_layers at most 3\.",
    ),
    "fewer layers than the weights": (
        edit({"num_hidden_layers": [2], "num_supernet_layers": 2}, num_hidden_layers=2),
        ValueError,
        r"config\.json sets num_hidden_layers=2 \(search_space\.num_supernet_layers=2\), but the weights in .* hold "
        r"3 layers; allowed: num_hidden_layers=3",
    ),
    "hidden_size above the weights": (
        edit({"hidden_size": [16, 48]}, hidden_size=48, num_attention_heads=6),
        ValueError,
        r"The config sets hidden_size=48, but the weights in .*supernet \(model\.safetensors\) were saved with "
        r"hidden_size=32 \(.*\); allowed: hidden_size=32 and search_space\.hidden_size choices up to 32\.",
    ),
    "intermediate_size above the weights": (
        edit({"intermediate_size": [16, 128]}, intermediate_size=128),
        ValueError,
        r"The config sets intermediate_size=128, but the weights .* were saved with intermediate_size=64 .*; "
        r"allowed: intermediate_size=64 and search_space\.intermediate_size choices up to 64\.",
    ),
    "choices as a string": (
        edit_space(hidden_size="32"),
        TypeError,
        r"config\.json: search_space: `hidden_size` choices must be a sequence of ints, got '32'\.",
    ),
    "a choice as a string": (
        edit_space(num_attention_heads=[1, "2"]),
        TypeError,
        r"search_space: `num_attention_heads choice` must be an int, got '2' of type str\.",
    ),
    "a float choice": (
        edit_space(intermediate_size=[16.0, 64]),
        TypeError,
        r"search_space: `intermediate_size choice` must be an int, got 16\.0 of type float\.",
    ),
    "a search space that is no dict": (
        lambda config: config.update(search_space=[16, 32]),
        TypeError,
        r"search_space must be a dict of the choices of each dimension .*, got \[16, 32\] of type list\.",
    ),
    "an unknown layer rule": (
        edit_space(layer_rule="middle"),
        ValueError,
        r"search_space: Unknown `layer_rule` 'middle'; allowed: \['first', 'spread', 'importance'\]\.",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
def test_a_config_that_does_not_fit_its_weights_is_refused_on_load(work, supernet_copy, existing, case):
    change, error, match = CONFIG_EDITS[case]
    config = json.loads((supernet_copy / "config.json").read_text())
    change(config)
    (supernet_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(error, match=match):
        ElasticBertForSequenceClassification.from_pretrained(supernet_copy)
    out, before = existing
    with pytest.raises(error, match=match):
        extract_command.main(extract_argv(work, "vanilla", out, supernet=supernet_copy)[1:])
    assert_untouched(out, before)


SUBNET_EDITS = {
    "a depth as a string": ({"num_hidden_layers": "2"}, TypeError, r"`num_hidden_layers` must be an int, got '2'"),
    "heads with a string": (
        {"num_attention_heads": [4, "2"]},
        TypeError,
        r"`num_attention_heads\[1\]` must be an int",
    ),
    "a float width": ({"hidden_size": 32.0}, TypeError, r"`hidden_size` must be an int, got 32\.0 of type float"),
    "a bool width": (
        {"intermediate_size": [64, True]},
        TypeError,
        r"`intermediate_size\[1\]` must be an int, got True",
    ),
    "heads as a number": ({"num_attention_heads": 4}, TypeError, r"`num_attention_heads` must be a sequence of ints"),
    "an unknown key": ({"depth": 2}, ValueError, r"Unknown keys in subnet config: \['depth'\]\. Allowed keys: "),
    "a list": ([2, [4, 2]], TypeError, r"A subnet config must be a dict, got list"),
    "not JSON": ("{'num_hidden_layers': 2", ValueError, r"is not valid JSON"),
}


@pytest.mark.parametrize("case", list(SUBNET_EDITS))
def test_a_hand_edited_subnet_json_is_refused(work, existing, tmp_path, case):
    change, error, match = SUBNET_EDITS[case]
    subnet_json = tmp_path / "bad.json"
    if isinstance(change, dict):
        subnet_json.write_text(json.dumps({**PER_LAYER.to_dict(), **change}))
    else:
        subnet_json.write_text(change if isinstance(change, str) else json.dumps(change))
    out, before = existing
    argv = extract_argv(work, "vanilla", out)[1:]
    argv[argv.index("--subnet_json") + 1] = str(subnet_json)
    with pytest.raises(error, match=f"^--subnet_json {re.escape(str(subnet_json))}: .*{match}"):
        extract_command.main(argv)
    assert_untouched(out, before)


def test_a_subnet_outside_the_space_is_refused(work, existing, tmp_path):
    subnet_json = tmp_path / "big.json"
    SubnetConfig(2, (8, 2), (64, 32), 32).save(subnet_json)
    out, before = existing
    argv = extract_argv(work, "vanilla", out)[1:]
    argv[argv.index("--subnet_json") + 1] = str(subnet_json)
    with pytest.raises(
        ValueError, match=r"`num_attention_heads\[0\]`=8 is not in the search space; allowed: \[1, 2, 3, 4\]"
    ):
        extract_command.main(argv)
    assert_untouched(out, before)


def test_a_vanilla_checkpoint_is_refused_as_a_supernet(work, existing, tmp_path):
    vanilla = tmp_path / "bert"
    BertForSequenceClassification(tiny_bert_config()).save_pretrained(vanilla)
    tiny_tokenizer().save_pretrained(vanilla)
    out, before = existing
    with pytest.raises(
        ValueError, match=r"holds a 'bert' checkpoint \(BertForSequenceClassification\), not an hf-nas supernet"
    ):
        extract_command.main(extract_argv(work, "vanilla", out, supernet=vanilla)[1:])
    assert_untouched(out, before)


def test_compress_names_a_truncated_weight_file_and_writes_nothing(existing, tmp_path):
    model, _ = existing
    weights = model / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 1)
    out = tmp_path / "sparse"
    with pytest.raises(
        ValueError, match=rf"--model '{re.escape(str(model))}': The checkpoint file .*model\.safetensors is damaged"
    ):
        compress_command.main(["--model", str(model), "--output_dir", str(out), "--sparsity", "0.5"])
    assert not out.exists() and not (tmp_path / "sparse.lock").exists()
