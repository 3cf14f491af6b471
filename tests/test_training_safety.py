"""Crash safety of supernet training: `hf-nas train` killed with a real SIGKILL and run again.

The command runs in a child process (`python -m tests.test_training_safety`, the driver at the end of this file),
which stops at a kill point drawn with a seeded generator and prints a marker; the test then sends it SIGKILL. Kill
points are (a) right after the backward of one subnet of a training step, before its optimizer step, and (b) the file
operations of a checkpoint save: before a file is opened for writing, halfway through writing the model, optimizer,
scheduler, RNG and argument files (their bytes are written in two halves), before a rename, a removal or a folder
creation; one point is drawn in each phase of a save. Running the same command again, in this process, must resume
from the last checkpoint that was complete when the kill came (never a half-written one, which is skipped with a log
line) and end with the weights (to 1e-6) and the sequence of sampled subnets of an uninterrupted run with the same
seed. The uninterrupted run is a child process too (no kill point), which also lists the file operations of its saves.
The last tests resume in this process: from the checkpoint at `max_steps`, and past an incomplete checkpoint.
"""

from __future__ import annotations

import io
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
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch
import transformers
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, BertTokenizer
from transformers.trainer_utils import get_last_checkpoint

from hf_nas.training import SAMPLER_STATE_NAME, SupernetTrainer, is_complete_checkpoint, last_complete_checkpoint

from .conftest import TINY, tiny_bert_config

REPO_ROOT = Path(__file__).resolve().parents[1]
KILL_MARKER = "HF_NAS_KILL_POINT"
MAX_STEPS, SAVE_STEPS = 6, 2
TEMPORARY = re.compile(r"\.tmp-\w+")  # the random part of a temporary file's name
CHILD_TIMEOUT = 120  # seconds before a child that never reaches its kill point is ended


# ----------------------------------------------------------------------------------------------------------------
# the tiny run
def make_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A tiny vanilla BERT with a word-level tokenizer, and a csv of 64 rows whose label is whether the first word is
    low (as `tests.test_recipes.tiny_checkpoint`)."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    path = folder / "vanilla"
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(num_labels=2)).save_pretrained(path)
    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    rows = ["sentence,label"]
    for _ in range(64):
        words = torch.randint(0, 90, (6,), generator=g).tolist()
        rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
    data = folder / "train.csv"
    data.write_text("\n".join(rows) + "\n")
    return path, data


def train_argv(path: Path, data: Path, out: Path) -> list[str]:
    """`hf-nas train` saving every 2 of 6 steps and keeping 1 checkpoint (older ones are deleted during a save)."""
    return [
        "--model_name_or_path", str(path), "--train_file", str(data), "--output_dir", str(out), "--do_train",
        "--max_steps", str(MAX_STEPS), "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
        "--save_total_limit", "1", "--per_device_train_batch_size", "8", "--max_seq_length", "16",
        "--learning_rate", "1e-3", "--importance_batches", "1", "--report_to", "none", "--use_cpu", "--seed", "0",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0",
    ]  # fmt: skip


def recording_build_sampler(samples: list[Any], write: Any = None) -> staticmethod:
    """A `SupernetTrainer._build_sampler` whose samplers append `[step, micro_step, subnets]` to `samples` (and
    `write` each one as a JSON line)."""
    build = SupernetTrainer._build_sampler

    def recording_build(args, space):
        sampler = build(args, space)
        sample = sampler.sample

        def recording_sample(step, micro_step=0):
            subnets = sample(step, micro_step)
            entry = json.loads(json.dumps([step, micro_step, [s.to_dict() for s in subnets]]))
            samples.append(entry)
            if write is not None:
                write(json.dumps(entry))
            return subnets

        sampler.sample = recording_sample
        return sampler

    return staticmethod(recording_build)


# ----------------------------------------------------------------------------------------------------------------
# the child process and its kill points
class KillPoints:
    """Counts the kill points of one kind (`backward`, `save`) and stops at the `target`-th: prints the marker and
    waits for the SIGKILL. `events` gets one JSON line per save file operation: its save, step and description."""

    def __init__(self, kind: str, target: int, output_dir: str, events: Any):
        self.kind, self.target = kind, target
        self.output_dir = os.path.abspath(output_dir) + os.sep
        self.events = events
        self.count = {"backward": 0, "save": 0}
        self.saving: tuple[int, int] | None = None  # (save index, step) during a checkpoint save
        self.num_saves = 0
        self.busy = False

    def reach(self, kind: str, description: str) -> None:
        index = self.count[kind]
        self.count[kind] += 1
        if kind == "save":
            save, step = self.saving
            self.events.write(json.dumps({"save": save, "step": step, "event": description}) + "\n")
            self.events.flush()
        if kind == self.kind and index == self.target:
            print(f"\n{KILL_MARKER} {kind} {index}: {description}", flush=True)  # a progress bar may end no line
            time.sleep(CHILD_TIMEOUT)
            os._exit(3)  # never killed

    def audit(self, event: str, args: tuple) -> None:
        if self.saving is None or self.busy or not args or not isinstance(args[0], (str, os.PathLike)):
            return
        path = os.path.abspath(os.fspath(args[0]))
        if not path.startswith(self.output_dir):
            return
        if event == "open" and not _writes(args):
            return
        if event in ("open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"):
            self.busy = True
            try:
                names = [path, os.fspath(args[1])] if event == "os.rename" else [path]
                names = [TEMPORARY.sub(".tmp-*", os.path.relpath(name, self.output_dir)) for name in names]
                self.reach("save", f"{event} {' -> '.join(names)}")
            finally:
                self.busy = False


def _writes(args: tuple) -> bool:
    mode, flags = args[1], args[2]
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


def install_kill_points(points: KillPoints) -> None:
    """Kill points after each subnet's backward, at each file operation of a checkpoint save, and halfway through
    the files written with `torch.save` and safetensors."""
    import accelerate
    import safetensors.torch
    from transformers import modeling_utils

    backward = accelerate.Accelerator.backward

    def pausing_backward(self, loss, **kwargs):
        backward(self, loss, **kwargs)
        points.reach("backward", f"backward {points.count['backward']}")

    accelerate.Accelerator.backward = pausing_backward

    save_checkpoint = SupernetTrainer._save_checkpoint

    def saving(self, model, trial):
        points.saving = (points.num_saves, self.state.global_step)
        try:
            save_checkpoint(self, model, trial)
        finally:
            points.saving = None
            points.num_saves += 1

    SupernetTrainer._save_checkpoint = saving

    def write_in_halves(path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            if points.saving is not None:
                points.reach("save", f"halfway through {os.path.relpath(path, points.output_dir)}")
            f.write(data[len(data) // 2 :])

    torch_save = torch.save

    def halves_torch_save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return torch_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        torch_save(obj, buffer, *args, **kwargs)
        write_in_halves(os.fspath(f), buffer.getvalue())

    torch.save = halves_torch_save

    def halves_safe_save_file(tensors, filename, metadata=None):
        write_in_halves(os.fspath(filename), safetensors.torch.save(tensors, metadata=metadata))

    modeling_utils.safe_save_file = halves_safe_save_file
    sys.addaudithook(points.audit)


def child_main(argv: list[str]) -> None:
    """`python -m tests.test_training_safety KIND TARGET SAMPLES EVENTS -- TRAIN_ARGV`: run `hf-nas train`, writing
    the sampled subnets to SAMPLES and the save file operations to EVENTS, and stop at the TARGET-th kill point of
    KIND (`backward` or `save`; `none` runs to the end)."""
    kind, target, samples_path, events_path = argv[:4]
    train = argv[argv.index("--") + 1 :]
    output_dir = train[train.index("--output_dir") + 1]
    samples_file, events_file = open(samples_path, "w"), open(events_path, "w")  # noqa: SIM115 (open till killed)

    def write_sample(line: str) -> None:
        samples_file.write(line + "\n")
        samples_file.flush()

    SupernetTrainer._build_sampler = recording_build_sampler([], write_sample)
    install_kill_points(KillPoints(kind, int(target), output_dir, events_file))
    from hf_nas.commands import train as train_command

    train_command.main(train)


def run_child(kind: str, target: int, argv: list[str], folder: Path) -> dict[str, Any]:
    """Run the command in a child process up to its kill point and SIGKILL it there (or to the end, kind `none`).
    Returns its samples, its save events, the kill point it reported and its output."""
    samples, events = folder / f"{kind}-samples.jsonl", folder / f"{kind}-events.jsonl"
    command = [sys.executable, "-m", "tests.test_training_safety", kind, str(target), str(samples), str(events)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--", *argv],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    timer = threading.Timer(CHILD_TIMEOUT, lambda: os.killpg(process.pid, signal.SIGKILL))
    timer.start()
    output, point = [], None
    try:
        for line in process.stdout:
            output.append(line)
            if KILL_MARKER in line:
                point = line[line.index(KILL_MARKER) :].strip()
                os.kill(process.pid, signal.SIGKILL)
                break
        process.stdout.close()
        returncode = process.wait()
    finally:
        timer.cancel()
    tail = "".join(output[-60:])
    if kind == "none":
        assert returncode == 0, f"the uninterrupted run failed ({returncode}):\n{tail}"
    else:
        assert point is not None, f"the child never reached its kill point {kind} {target} ({returncode}):\n{tail}"
        assert returncode == -signal.SIGKILL, tail
    return {
        "samples": [json.loads(line) for line in samples.read_text().splitlines()],
        "events": [json.loads(line) for line in events.read_text().splitlines()],
        "point": point,
    }


# ----------------------------------------------------------------------------------------------------------------
# the tests
@pytest.fixture(autouse=True)
def restore_log_levels():
    """The command sets the transformers, datasets and hf_nas log levels of the process: put them back."""
    levels = (transformers.utils.logging.get_verbosity(), datasets.utils.logging.get_verbosity())
    hf_nas_level = logging.getLogger("hf_nas").level
    yield
    transformers.utils.logging.set_verbosity(levels[0])
    datasets.utils.logging.set_verbosity(levels[1])
    logging.getLogger("hf_nas").setLevel(hf_nas_level)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> tuple[Path, Path]:
    return make_checkpoint(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_folder) -> dict[str, Any]:
    """The run without a kill: its samples, the file operations of its saves and its final weights."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    run = run_child("none", -1, train_argv(*data_folder, folder / "out"), folder)
    assert [s[:2] for s in run["samples"]] == [[step, 0] for step in range(MAX_STEPS)]
    assert sorted({e["step"] for e in run["events"]}) == list(range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS))
    run["weights"] = load_file(folder / "out" / "model.safetensors")
    return run


def resume(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run the same command again in this process; returns the subnets it sampled."""
    from hf_nas.commands import train as train_command

    samples: list[Any] = []
    monkeypatch.setattr(SupernetTrainer, "_build_sampler", recording_build_sampler(samples))
    train_command.main(argv)
    return samples


def check_identical(out: Path, killed: dict[str, Any], resumed: list[Any], reference: dict[str, Any]) -> None:
    """The killed run sampled what the uninterrupted one did until it died, the resumed run the rest; the final weights
    are equal; the checkpoint left is complete."""
    expected = reference["samples"]
    assert killed["samples"] == expected[: len(killed["samples"])]
    first = resumed[0][0] if resumed else MAX_STEPS
    assert killed["samples"][:first] + resumed == expected
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == reference["weights"].keys()
    for name, value in reference["weights"].items():
        torch.testing.assert_close(weights[name], value, atol=1e-6, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    left = sorted(p.name for p in out.glob("checkpoint-*"))
    assert left == [f"checkpoint-{MAX_STEPS}"] and is_complete_checkpoint(out / left[0])


def is_marker(event: dict[str, Any]) -> bool:
    """Whether a save event is the rename of the sampler state into place, which completes a checkpoint."""
    return event["event"].startswith("os.rename ") and event["event"].endswith(f"/{SAMPLER_STATE_NAME}")


def resumed_from(records: list[logging.LogRecord]) -> str | None:
    lines = [r.getMessage() for r in records if r.getMessage().startswith("Resuming from ")]
    return os.path.basename(lines[0].split()[2]) if lines else None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_a_kill_in_the_middle_of_a_training_step_resumes_identically(
    tmp_path, monkeypatch, caplog, data_folder, uninterrupted, seed
):
    per_step = len(uninterrupted["samples"][0][2])  # the subnets of a step: one backward each
    target = random.Random(seed).randrange(per_step * SAVE_STEPS, per_step * MAX_STEPS)  # after the 1st checkpoint
    killed_step = target // per_step
    argv = train_argv(*data_folder, tmp_path / "out")
    killed = run_child("backward", target, argv, tmp_path)
    assert killed["samples"][-1][0] == killed_step  # it died within that step, after sampling its subnets

    with caplog.at_level(logging.INFO):
        resumed = resume(argv, monkeypatch)
    last_saved = killed_step // SAVE_STEPS * SAVE_STEPS
    assert resumed_from(caplog.records) == f"checkpoint-{last_saved}"
    assert resumed[0][0] == last_saved
    check_identical(tmp_path / "out", killed, resumed, uninterrupted)


def save_phases(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The kill points of the saves by phase: the indices of their events. The checkpoints after the first one, whose
    saves end by deleting the previous one (save_total_limit 1), and the first one (no complete checkpoint yet)."""
    phases: dict[str, list[int]] = {name: [] for name in SAVE_PHASES}
    for i, event in enumerate(events):
        same_save = [j for j, e in enumerate(events) if e["save"] == event["save"]]
        marker = next(j for j in same_save if is_marker(events[j]))
        trainer_state = next(j for j in same_save if events[j]["event"].endswith("/trainer_state.json"))
        if event["save"] == 0:
            phases["during the first save"].append(i)
        elif i > marker:
            phases["deleting the previous checkpoint"].append(i)
        elif i >= trainer_state:
            phases["after the Trainer's files, before the sampler state"].append(i)
        elif event["event"].startswith("halfway through "):
            phases["halfway through a file"].append(i)
        else:
            phases["creating a folder or a file"].append(i)
    return phases


SAVE_PHASES = (
    "creating a folder or a file",
    "halfway through a file",
    "after the Trainer's files, before the sampler state",
    "deleting the previous checkpoint",
    "during the first save",
)


@pytest.mark.slow
@pytest.mark.parametrize("phase", SAVE_PHASES)
def test_a_kill_while_writing_a_checkpoint_resumes_from_the_last_complete_one(
    tmp_path, monkeypatch, caplog, data_folder, uninterrupted, phase
):
    events = uninterrupted["events"]
    target = random.Random(phase).choice(save_phases(events)[phase])  # a seeded draw among the phase's points
    event = events[target]
    marker = next(i for i, e in enumerate(events) if e["save"] == event["save"] and is_marker(e))
    complete_at_kill = target > marker  # the sampler state was renamed into place: the checkpoint is complete
    argv = train_argv(*data_folder, tmp_path / "out")
    killed = run_child("save", target, argv, tmp_path)
    assert killed["point"].endswith(event["event"]), (killed["point"], event)
    folder = tmp_path / "out" / f"checkpoint-{event['step']}"
    left_incomplete = folder.is_dir() and not complete_at_kill

    with caplog.at_level(logging.INFO):
        resumed = resume(argv, monkeypatch)
    last_complete = event["step"] if complete_at_kill else event["step"] - SAVE_STEPS
    assert resumed_from(caplog.records) == (f"checkpoint-{last_complete}" if last_complete else None), event
    assert (resumed[0][0] if resumed else MAX_STEPS) == last_complete
    skipped = [r for r in caplog.records if r.getMessage().startswith(f"Skipping {folder}: it is incomplete")]
    assert len(skipped) == int(left_incomplete), event
    check_identical(tmp_path / "out", killed, resumed, uninterrupted)


@pytest.mark.slow
def test_a_save_deletes_older_checkpoints_only_once_the_new_one_is_complete(uninterrupted):
    for save in range(MAX_STEPS // SAVE_STEPS):
        events = [e for e in uninterrupted["events"] if e["save"] == save]
        own = f"checkpoint-{events[0]['step']}"
        marker = next(i for i, e in enumerate(events) if is_marker(e))
        deletions = [i for i, e in enumerate(events) if own not in e["event"]]
        assert all(i > marker for i in deletions), events
        assert bool(deletions) == (save > 0)  # save_total_limit 1


# ----------------------------------------------------------------------------------------------------------------
# resuming, in this process
def tiny_trainer(output_dir: Path, **overrides: Any) -> SupernetTrainer:
    """The tiny supernet of `tests.test_trainer` on 32 examples, 4 steps an epoch."""
    from .test_trainer import make_args, make_dataset, make_model

    args = make_args(output_dir, learning_rate=1e-3, save_strategy="steps", **overrides)
    return SupernetTrainer(model=make_model(), args=args, train_dataset=make_dataset())


def test_resuming_from_the_checkpoint_at_max_steps_trains_no_more_steps(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=3, save_steps=3)  # stops mid-epoch
    trainer.train()
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    resumed = tiny_trainer(tmp_path, max_steps=3, save_steps=3)
    samples: list[Any] = []
    sample = resumed.sampler.sample
    resumed.sampler.sample = lambda step, micro_step=0: samples.append(step) or sample(step, micro_step)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3 and samples == []
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], atol=0, rtol=0)


def test_an_incomplete_checkpoint_is_skipped_and_refused_by_path(tmp_path, caplog):
    tiny_trainer(tmp_path, max_steps=2, save_steps=2).train()
    complete = tmp_path / "checkpoint-2"
    incomplete = tmp_path / "checkpoint-4"
    shutil.copytree(complete, incomplete)
    (incomplete / SAMPLER_STATE_NAME).unlink()  # killed before its sampler state, the file written last

    assert get_last_checkpoint(tmp_path) == str(incomplete)  # what transformers would resume from
    with caplog.at_level(logging.WARNING, logger="hf_nas"):
        assert last_complete_checkpoint(tmp_path) == str(complete)
    # only hf-nas's own warnings: an earlier in-process command may have set transformers' loggers to INFO
    assert [
        r.getMessage() for r in caplog.records if r.name.startswith("hf_nas") and r.levelno >= logging.WARNING
    ] == [
        f"Skipping {incomplete}: it is incomplete (no {SAMPLER_STATE_NAME}, the file written last), a save "
        "interrupted by a crash or a kill; resuming from an earlier checkpoint."
    ]
    trainer = tiny_trainer(tmp_path, max_steps=3, save_steps=2)
    with pytest.raises(ValueError, match=rf"^resume_from_checkpoint {incomplete} is incomplete: it has no "):
        trainer.train(resume_from_checkpoint=str(incomplete))
    shutil.rmtree(complete)
    with pytest.raises(ValueError, match=r"^resume_from_checkpoint=True: no complete checkpoint-\* folder"):
        trainer.train(resume_from_checkpoint=True)


if __name__ == "__main__":
    child_main(sys.argv[1:])
