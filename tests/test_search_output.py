"""What a search shows its user: one `pareto_index` and one `record` number everywhere (printed front, pareto.csv,
pareto.png, `hf-nas extract`), a plot with units, a normalized hypervolume, `--metrics`, the help of `hf-nas search`
and its path checks."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

import hf_nas
from hf_nas import SubnetConfig, cli
from hf_nas.commands import extract as extract_command
from hf_nas.commands import search as search_command
from hf_nas.search import SearchResults, parse_constraints
from hf_nas.search.pareto import hypervolume, ideal_point, normalized_hypervolume
from hf_nas.search.results import HYPERVOLUME_LABEL

from .conftest import TINY, make_supernet

OBJECTIVES = [
    {"name": "accuracy", "direction": "maximize"},
    {"name": "macs", "direction": "minimize"},
    {"name": "latency", "direction": "minimize"},
]
# (accuracy, macs, latency ms); record 3 is dominated by record 0, record 5 is infeasible
VALUES = [(0.9, 9e8, 4.0), (0.6, 2e8, 1.0), (0.8, 5e8, 2.5), (0.85, 9.5e8, 4.5), (0.7, 3e8, 3.0), (0.95, 1e8, 0.5)]


def make_results() -> SearchResults:
    records = [
        {
            "subnet": SubnetConfig.uniform(1 + i % 3, 2, 16 * (i + 1), 16).to_dict(),
            "values": {"accuracy": a, "macs": m, "latency": t},
            "feasible": i != 5,
        }
        for i, (a, m, t) in enumerate(VALUES)
    ]
    return SearchResults(objectives=OBJECTIVES, records=records, full_model={"macs": 1e9})


def csv_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "pareto.csv") as f:
        return list(csv.DictReader(f))


def printed_rows(text: str) -> dict[int, int]:
    """pareto_index -> record, read from a printed front."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["pareto_index", "record"])
    rows = {}
    for line in lines[start + 1 :]:
        if not re.match(r"^\s*\d+\s+\d+\s", line):
            break
        k, record = line.split()[:2]
        rows[int(k)] = int(record)
    return rows


def extracted(folder: Path, **selection) -> tuple[SubnetConfig, str]:
    """The subnet `hf-nas extract --results folder --<selection>` picks, and how it says it picked it."""
    args = extract_command.SelectionArguments(supernet="supernet", results=str(folder), **selection)
    subnet, how, _, _ = extract_command.select_subnet(args)
    return subnet, how


# ----------------------------------------------------------------------------------------------------------------
# 1. one index, one meaning
def check_indices_agree(folder: Path, printed: str) -> None:
    """For every k: `extract --pareto_index k` picks the subnet of the CSV row whose pareto_index is k, which is the
    record printed with pareto_index k."""
    results = SearchResults.from_dir(folder)
    rows = csv_rows(folder)
    table = printed_rows(printed)
    assert [int(r["pareto_index"]) for r in rows] == list(range(len(rows))) == sorted(table)
    assert len(rows) >= 2
    for row in rows:
        k, record = int(row["pareto_index"]), int(row["record"])
        subnet, how = extracted(folder, pareto_index=k)
        assert subnet == SubnetConfig.from_dict(json.loads(row["subnet_json"])) == results.subnet(record)
        assert table[k] == record
        assert how.startswith(f"pareto_index {k} (of 0-{len(rows) - 1})") and how.endswith(f", record {record}")
        assert extracted(folder, record=record)[0] == subnet  # --record takes the record column
    with pytest.raises(ValueError, match=rf"`pareto_index`={len(rows)} is out of range: .* 0 to {len(rows) - 1}"):
        extracted(folder, pareto_index=len(rows))


def test_pareto_index_means_one_thing_in_a_saved_folder(tmp_path):
    results = make_results()
    results.save(tmp_path, plot=False)
    assert [r["record"] for r in results.pareto_rows()] == [1, 4, 2, 0]  # by accuracy; 3 dominated, 5 infeasible
    check_indices_agree(tmp_path, results.format_front())


def test_record_off_the_front_and_out_of_range(tmp_path):
    make_results().save(tmp_path, plot=False)
    subnet, how = extracted(tmp_path, record=3)
    assert subnet == make_results().subnet(3) and "(not on the Pareto front)" in how
    assert "(pareto_index 3)" in extracted(tmp_path, record=0)[1]
    with pytest.raises(ValueError, match=r"`record`=6 is out of range: .* allowed: 0 to 5"):
        extracted(tmp_path, record=6)
    with pytest.raises(ValueError, match=r"exactly one of .*\['--pareto_index', '--record'\]"):
        extracted(tmp_path, pareto_index=0, record=0)


# ----------------------------------------------------------------------------------------------------------------
# 2. the plot
def test_plot_labels_points_with_their_pareto_index_and_axes_with_units():
    results = make_results()
    fig = results.figure()
    macs_ax, latency_ax = fig.axes
    assert macs_ax.get_xlabel() == "MACs (% of the full model)" and latency_ax.get_xlabel() == "latency (ms)"
    assert macs_ax.get_ylabel() == latency_ax.get_ylabel() == "accuracy"
    for ax, name, scale in ((macs_ax, "macs", 100 / 1e9), (latency_ax, "latency", 1.0)):
        labels = {int(t.get_text()): t.xy for t in ax.texts}
        assert sorted(labels) == [r["pareto_index"] for r in results.pareto_rows()]
        for row in results.pareto_rows():
            x, y = labels[row["pareto_index"]]
            assert (x, y) == pytest.approx((row["values"][name] * scale, row["values"]["accuracy"]))
    assert labels[0] == pytest.approx((1.0, 0.6))  # pareto_index 0: record 1, 1 ms


def test_plot_units_of_parameters_and_of_macs_without_the_full_model():
    results = SearchResults(
        objectives=[
            {"name": "accuracy", "direction": "maximize"},
            *[{"name": n, "direction": "minimize"} for n in ("params", "macs")],
        ],
        records=[
            {
                "subnet": SubnetConfig.uniform(1, 2, 16, 16).to_dict(),
                "values": {"accuracy": 0.7, "params": 4e6, "macs": 2e9},
            }
        ],
    )
    params_ax, macs_ax = results.figure().axes
    assert params_ax.get_xlabel() == "parameters (M)" and macs_ax.get_xlabel() == "MACs (G)"
    assert [t.get_text() for t in params_ax.texts] == ["0"] and params_ax.texts[0].xy == pytest.approx((4.0, 0.7))


def test_saved_plot_is_the_figure(tmp_path):
    make_results().save(tmp_path)
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------------------
# 3. normalized hypervolume
DIRECTIONS = ["maximize", "minimize"]


def test_normalized_hypervolume_range_and_dominance():
    reference, ideal = [0.5, 1e9], [1.0, 0.0]
    front = [[0.9, 4e8], [0.8, 2e8], [0.6, 1e8]]
    dominated = [[0.85, 5e8], [0.7, 3e8]]  # each point worse than one of `front`
    value = normalized_hypervolume(front, DIRECTIONS, reference, ideal)
    assert 0 < normalized_hypervolume(dominated, DIRECTIONS, reference, ideal) < value < 1
    assert normalized_hypervolume([ideal], DIRECTIONS, reference, ideal) == 1.0
    assert normalized_hypervolume([[0.4, 2e9]], DIRECTIONS, reference, ideal) == 0.0  # beyond the reference
    # unitless: the raw hypervolume over the box, whatever the units of the MACs
    assert value == pytest.approx(hypervolume(front, DIRECTIONS, reference) / (0.5 * 1e9))
    in_billions = [[a, m / 1e9] for a, m in front]
    assert normalized_hypervolume(in_billions, DIRECTIONS, [0.5, 1.0], [1.0, 0.0]) == pytest.approx(value)
    assert ideal_point(front, DIRECTIONS) == [0.9, 1e8]


@pytest.mark.parametrize(
    "ideal, match",
    [
        ([0.5, 0.0], r"`ideal`\[0\]=0.5 is not better than `reference_point`\[0\]=0.5 \(maximize\)"),
        ([0.85, 0.0], r"`values\[0\]` is better than `ideal` in objective 0"),
    ],
)
def test_normalized_hypervolume_bad_ideal(ideal, match):
    with pytest.raises(ValueError, match=match):
        normalized_hypervolume([[0.9, 4e8]], DIRECTIONS, [0.5, 1e9], ideal)


def test_results_report_the_normalized_hypervolume(tmp_path):
    results = make_results()
    results.save(tmp_path, plot=False)
    saved = json.loads((tmp_path / "search_results.json").read_text())
    value, ideal = results.normalized_hypervolume()
    assert 0 < saved["hypervolume_normalized"] == value < 1
    assert saved["ideal_point"] == ideal == [0.9, 2e8, 1.0]  # the best feasible values (record 5 is infeasible)
    assert saved["full_model"] == {"macs": 1e9} and saved["pareto"] == [1, 4, 2, 0]
    assert f"{HYPERVOLUME_LABEL} {value:.4g}" in results.format_front().splitlines()[0]
    worse = make_results()
    for record in worse.records:
        record["values"]["accuracy"] -= 0.05
    fixed = {"reference_point": results.hypervolume()[1], "ideal": ideal}
    assert worse.normalized_hypervolume(**fixed)[0] < value


# ----------------------------------------------------------------------------------------------------------------
# 4. --metrics
def test_metrics_replaces_the_task_metric_of_the_objectives():
    names = search_command.objective_names
    assert names("accuracy,macs,latency") == ["accuracy", "macs", "latency"]
    assert names("accuracy,macs,latency", "f1") == ["f1", "macs", "latency"]
    assert names("macs,f1", "f1") == ["macs", "f1"]
    assert names("accuracy,macs,latency", "accuracy,f1") == ["accuracy", "f1", "macs", "latency"]
    with pytest.raises(ValueError, match=r"--metrics f1 and --objectives 'accuracy,macs' name different task metrics"):
        names("accuracy,macs", "f1")
    with pytest.raises(ValueError, match=r"--objectives 'macs,latency' has none; add it, e.g. --objectives f1,macs"):
        names("macs,latency", "f1")
    with pytest.raises(ValueError, match=r"--metrics 'f2': unknown task metric 'f2'; allowed: accuracy, f1\."):
        names("accuracy,macs", "f2")
    with pytest.raises(ValueError, match=r"unknown objective 'latency_ms'; allowed: accuracy, f1, .*latency, macs"):
        names("accuracy,latency_ms")
    with pytest.raises(ValueError, match="names an objective twice"):
        names("macs,macs")


# ----------------------------------------------------------------------------------------------------------------
# end to end: `hf-nas search` on a tiny supernet, then `hf-nas extract`'s choice
@pytest.fixture
def tiny_inputs(tmp_path) -> tuple[Path, Path, Path]:
    """A saved tiny text supernet (labels "0" and "1"), a 40-row training csv and a 24-row validation csv."""
    supernet = make_supernet(
        "BertForSequenceClassification", num_labels=2, id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1}
    )
    with torch.no_grad():
        for p in supernet.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    path = tmp_path / "supernet"
    supernet.save_pretrained(path)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]
    BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    files = []
    for name, n in (("train.csv", 40), ("dev.csv", 24)):
        rows = ["sentence,label"]
        for _ in range(n):
            words = torch.randint(0, 90, (5,), generator=g).tolist()
            rows.append(" ".join(f"w{w}" for w in words) + f",{int(words[0] < 45)}")
        (tmp_path / name).write_text("\n".join(rows) + "\n")
        files.append(tmp_path / name)
    return path, *files


def search_argv(supernet: Path, dev: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "search", "--supernet", str(supernet), "--validation_file", str(dev), "--output_dir", str(output_dir),
        "--strategy", "random", "--no_use_predictors", "--num_evaluations", "8", "--sequence_length", "16",
        "--max_seq_length", "16", *extra,
    ]  # fmt: skip


def test_search_output_and_extract_agree(tmp_path, tiny_inputs, capsys):
    supernet, _, dev = tiny_inputs
    out = tmp_path / "search"
    cli.main(search_argv(supernet, dev, out, "--objectives", "accuracy,params,macs"))
    printed = capsys.readouterr().out
    check_indices_agree(out, printed)
    results = SearchResults.from_dir(out)
    model = hf_nas.ElasticBertForSequenceClassification.from_pretrained(supernet)
    assert results.full_model == {
        "params": hf_nas.count_parameters(model, model.max_subnet()),
        "macs": hf_nas.count_macs(model, model.max_subnet(), sequence_length=16),
    }
    assert HYPERVOLUME_LABEL in printed and "--pareto_index N" in printed and "--record R" in printed
    assert re.search(r"pareto_index\s+record\s+accuracy\s+parameters \(M\)\s+MACs \(% of the full model\)", printed)


def test_search_with_metrics_f1(tmp_path, tiny_inputs, monkeypatch):
    supernet, _, dev = tiny_inputs
    made = []
    real = search_command.TaskMetricObjective

    def spy(dataset, **kwargs):
        made.append(kwargs)
        return real(dataset, **kwargs)

    monkeypatch.setattr(search_command, "TaskMetricObjective", spy)
    out = tmp_path / "search"
    cli.main(
        search_argv(supernet, dev, out, "--num_evaluations", "3", "--latency_min_run_time", "0.01", "--metrics", "f1")
    )
    assert [k["metric"] for k in made] == ["f1"] and made[0]["metric_kwargs"] is None  # binary: plain F1
    results = SearchResults.from_dir(out)
    assert results.names == ["f1", "macs", "latency"] and all(0 <= r["values"]["f1"] <= 1 for r in results.records)
    assert search_command.metric_kwargs("f1", 3) == {"average": "macro"}


# ----------------------------------------------------------------------------------------------------------------
# 5. help
def search_help() -> dict[str, str]:
    """Each option of `hf-nas search` (its first option string) -> its help text as `--help` prints it."""
    parser = search_command.build_parser([])
    formatter = parser._get_formatter()
    return {a.option_strings[0]: formatter._expand_help(a) for a in parser._actions if a.option_strings[0] != "-h"}


def test_every_search_option_has_help_with_its_default_once():
    texts = search_help()
    for field in search_command.SearchArguments.__dataclass_fields__:
        text = texts[f"--{field}"]
        assert len(text) > 20, field
        mentions = len(re.findall(r"default", text, re.IGNORECASE))
        assert mentions == (0 if field in ("supernet", "output_dir") else 1), (field, text)
    assert texts["--num_evaluations"].endswith("(default: 100)")
    assert texts["--latency_device"].endswith("(default: cpu)")


def test_objectives_help_lists_the_registry_and_the_constraint_example_is_real():
    texts = search_help()
    allowed = [*search_command.TASK_METRICS, *search_command.cost_objectives()]
    assert set(search_command.cost_objectives()) >= {"latency", "macs", "params"}
    for name in allowed:
        assert re.search(rf"\b{name}\b", texts["--objectives"]), name
    (example,) = re.findall(r"e\.g\. '([^']+)'", texts["--constraint"])
    constraints = parse_constraints(example)
    assert {c.objective for c in constraints} <= set(allowed)
    assert search_command.search_constraints([example], ["accuracy", "macs", "latency"]) == constraints
    with pytest.raises(
        ValueError, match=r"--constraint 'latency_ms<=3' is on 'latency_ms', which is not an objective"
    ):
        search_command.search_constraints(["latency_ms<=3"], ["accuracy", "macs", "latency"])
    assert "f1" in texts["--metrics"] and "f1,macs,latency" in texts["--metrics"]


# ----------------------------------------------------------------------------------------------------------------
# 6. paths checked before anything is loaded
@pytest.fixture
def nothing_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loaded something before checking the paths")

    monkeypatch.setattr(search_command, "text_objectives", refuse)
    monkeypatch.setattr(search_command, "image_objectives", refuse)


@pytest.mark.parametrize("option", ["--supernet", "--validation_file", "--train_file"])
def test_a_mistyped_path_is_one_line_naming_it(tmp_path, tiny_inputs, nothing_loads, option):
    supernet, train, dev = tiny_inputs
    typo = {"--supernet": supernet, "--validation_file": dev, "--train_file": train}[option]
    typo = typo.with_name("x" + typo.name)
    paths = {"--supernet": supernet, "--validation_file": dev, option: typo}
    argv = search_argv(paths["--supernet"], paths["--validation_file"], tmp_path / "search")
    if option == "--train_file":
        argv += ["--train_file", str(typo)]
    with pytest.raises(ValueError) as error:
        cli.main(argv)
    message = str(error.value)
    assert message.startswith(f"{option} {typo} does not exist")
    assert "\n" not in message and not (tmp_path / "search").exists()


def test_a_mistyped_image_folder_is_one_line_naming_it(tmp_path, nothing_loads):
    from transformers import ViTConfig

    folder = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4).save_pretrained(folder)
    typo = tmp_path / "cifar10_smaple"
    with pytest.raises(ValueError) as error:
        cli.main(["search", "--supernet", str(folder), "--data_dir", str(typo), "--output_dir", str(tmp_path / "o")])
    message = str(error.value)
    assert message.startswith(f"--data_dir {typo} does not exist") and "\n" not in message


def test_format_front_rows_are_the_csv_rows(tmp_path):
    results = make_results()
    results.save(tmp_path, plot=False)
    rows = csv_rows(tmp_path)
    table = printed_rows(results.format_front())
    assert {int(r["pareto_index"]): int(r["record"]) for r in rows} == table
    values = np.array([[float(r[n]) for n in results.names] for r in rows])
    assert values.tolist() == [[results.records[i]["values"][n] for n in results.names] for i in table.values()]
    assert io.StringIO(results.format_front()).readline().startswith("Pareto front: 4 of 6 measured subnets;")


def test_search_command_times_onnx_runtime_latency(tmp_path, tiny_inputs):
    """`--objectives accuracy,onnx_latency`: every record has the ONNX Runtime latency of its extracted subnet."""
    supernet, _, dev = tiny_inputs
    out = tmp_path / "search"
    cli.main(
        search_argv(supernet, dev, out, "--objectives", "accuracy,onnx_latency", "--latency_min_run_time", "0.01")
    )
    results = SearchResults.from_dir(out)
    assert [o["name"] for o in results.objectives] == ["accuracy", "onnx_latency"]
    assert len(results.records) == 8
    assert all(r["values"]["onnx_latency"] > 0 for r in results.records)
