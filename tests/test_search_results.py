"""Reading search results back: `parse_constraints`, `SearchResults.from_dir`, `select` and `pareto_position`.

No supernet is needed: the results are hand-made records of two objectives (accuracy up, MACs down).
"""

from __future__ import annotations

import json

import pytest

import hf_nas.search
from hf_nas import SubnetConfig
from hf_nas.search import Constraint, SearchResults, parse_constraints

OBJECTIVES = [
    {"name": "accuracy", "direction": "maximize", "settings": {}},
    {"name": "macs", "direction": "minimize", "settings": {"sequence_length": 16}},
]
# (accuracy, macs, feasible): 0 big, 1 infeasible, 2 small, 3 dominated by 0, 4 medium. Front by accuracy: 2, 4, 0.
VALUES = [(0.9, 9e8, True), (0.95, 1e8, False), (0.6, 2e8, True), (0.85, 9.5e8, True), (0.8, 5e8, True)]


def make_results() -> SearchResults:
    records = [
        {"subnet": SubnetConfig.uniform(2, 2, 16 * (i + 1), 16).to_dict(), "values": {"accuracy": a, "macs": m}}
        for i, (a, m, _) in enumerate(VALUES)
    ]
    for record, (_, _, feasible) in zip(records, VALUES, strict=True):
        record["feasible"] = feasible
    return SearchResults(objectives=OBJECTIVES, records=records, fingerprint="abc")


# ----------------------------------------------------------------------------------------------------------------
# parse_constraints
def test_parse_constraints():
    assert hf_nas.search.parse_constraints is parse_constraints
    assert parse_constraints("macs<=5e8") == [Constraint("macs", max_value=5e8)]
    assert parse_constraints(" macs <= 5e8 , accuracy>=0.8,latency_ms<=-1") == [
        Constraint("macs", max_value=5e8),
        Constraint("accuracy", min_value=0.8),
        Constraint("latency_ms", max_value=-1.0),
    ]


@pytest.mark.parametrize("text", ["macs<5", "macs=<5", "macs<=", "<=5", "macs<=five", "macs<=inf", "macs<=nan", ""])
def test_parse_constraints_rejects_bad_text(text):
    with pytest.raises(ValueError, match=r"Cannot parse the constraint .*: expected NAME<=VALUE or NAME>=VALUE"):
        parse_constraints(text)


def test_parse_constraints_names_the_bad_part():
    with pytest.raises(ValueError, match=r"constraint 'latency<10' of 'macs<=5e8,latency<10'"):
        parse_constraints("macs<=5e8,latency<10")
    with pytest.raises(ValueError, match="constraint '' of 'macs<=5e8,'"):
        parse_constraints("macs<=5e8,")
    with pytest.raises(TypeError, match="must be given as a str"):
        parse_constraints(["macs<=5e8"])


@pytest.mark.parametrize(
    "constraint, text",
    [
        (Constraint("macs", max_value=5e8), "macs<=5e+08"),
        (Constraint("accuracy", min_value=0.8), "accuracy>=0.8"),
        (Constraint("latency", max_value=10, min_value=2), "latency>=2,latency<=10"),
        (Constraint("params", max_value=123456789), "params<=123456789.0"),  # no precision lost to %g
    ],
)
def test_constraint_text_round_trips(constraint, text):
    assert str(constraint) == text
    parsed = parse_constraints(text)  # one Constraint per bound
    assert ",".join(map(str, parsed)) == text
    assert {c.max_value for c in parsed} - {None} == {constraint.max_value} - {None}
    assert {c.min_value for c in parsed} - {None} == {constraint.min_value} - {None}


# ----------------------------------------------------------------------------------------------------------------
# from_dir
def test_from_dir_reads_what_save_wrote(tmp_path):
    results = make_results()
    results.save(tmp_path, plot=False)
    loaded = SearchResults.from_dir(tmp_path)
    assert loaded.objectives == results.objectives and loaded.records == results.records
    assert loaded.fingerprint == "abc" and loaded.pareto_indices() == [2, 4, 0]


def test_from_dir_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No search_results.json in .*nowhere.*output folder of a search"):
        SearchResults.from_dir(tmp_path / "nowhere")


def corrupt(data: dict, key: str, value) -> dict:
    return {**data, key: value}


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: "{not json", "is not valid JSON"),
        (lambda d: [], r"expected a JSON object with 'version': 1, got 'list'"),
        (lambda d: corrupt(d, "version", 2), r"'version': 1, got 2"),
        (lambda d: {k: v for k, v in d.items() if k != "version"}, r"'version': 1, got None"),
        (lambda d: corrupt(d, "objectives", ["accuracy"]), r"objectives\[0\] must be \{'name': str"),
        (lambda d: corrupt(d, "objectives", [{"name": "accuracy", "direction": "up"}]), r"objectives\[0\]"),
        (lambda d: corrupt(d, "objectives", []), "'objectives' must be a non-empty list"),
        (lambda d: corrupt(d, "records", {}), "'records' must be a list"),
        (lambda d: corrupt(d, "records", [{"values": {}}]), r"records\[0\] has no 'subnet' object"),
        (
            lambda d: corrupt(d, "records", [{**d["records"][0], "values": {"accuracy": 0.9}}]),
            r"records\[0\]\['values'\] must map every objective of \['accuracy', 'macs'\] to a number",
        ),
        (
            lambda d: corrupt(d, "records", [{**d["records"][0], "values": {"accuracy": "high", "macs": 1.0}}]),
            r"records\[0\]\['values'\]",
        ),
    ],
)
def test_from_dir_malformed(tmp_path, edit, match):
    make_results().save(tmp_path, plot=False)
    path = tmp_path / "search_results.json"
    data = edit(json.loads(path.read_text()))
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(ValueError, match=match):
        SearchResults.from_dir(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# select
def test_select_by_pareto_index():
    results = make_results()
    assert [results.select(pareto_index=i) for i in range(3)] == results.pareto_indices() == [2, 4, 0]


@pytest.mark.parametrize("index", [3, -1, 100])
def test_select_pareto_index_out_of_range(index):
    with pytest.raises(
        ValueError, match=rf"`pareto_index`={index} is out of range: .* 3 points; allowed: 0 to 2 \(the pareto_index"
    ):
        make_results().select(pareto_index=index)


def test_select_pareto_index_of_an_empty_front():
    results = make_results()
    for record in results.records:
        record["feasible"] = False
    with pytest.raises(ValueError, match="The Pareto front is empty"):
        results.select(pareto_index=0)
    with pytest.raises(TypeError, match="`pareto_index` must be an int"):
        make_results().select(pareto_index=True)


def test_select_best_under_constraints():
    results = make_results()
    assert results.select(maximize="accuracy") == 0  # record 1 (0.95) is infeasible
    assert results.select(constraints=parse_constraints("macs<=8e8"), maximize="accuracy") == 4
    assert results.select(constraints=[Constraint("macs", max_value=5e8)], maximize="accuracy") == 4  # inclusive
    assert results.select(constraints=parse_constraints("accuracy>=0.85"), maximize="macs") == 3  # literally max
    # the same choice as `best` for a maximized objective
    constraint = Constraint("macs", max_value=9.2e8)
    assert results.select(constraints=[constraint], maximize="accuracy") == results.best("accuracy", [constraint])


def test_select_nothing_satisfies():
    with pytest.raises(
        ValueError,
        match=r"No measured subnet satisfies macs<=1e\+06,accuracy>=0.5 among the 4 feasible records of 5; "
        r"recorded \(min, max\): \{'macs': \(100000000.0, 950000000.0\), 'accuracy': \(0.6, 0.95\)\}",
    ):
        make_results().select(constraints=parse_constraints("macs<=1e6,accuracy>=0.5"), maximize="accuracy")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "exactly one of `pareto_index`.*got pareto_index=None, record=None, maximize=None"),
        ({"pareto_index": 0, "record": 1}, ValueError, "exactly one of `pareto_index`"),
        ({"record": 1, "constraints": [Constraint("macs", max_value=1.0)]}, ValueError, "only apply with `maximize`"),
        ({"record": 5}, ValueError, r"`record`=5 is out of range: the search measured 5 subnets; allowed: 0 to 4"),
        ({"record": "1"}, TypeError, "`record` must be an int"),
        ({"pareto_index": 0, "maximize": "accuracy"}, ValueError, "exactly one of `pareto_index`"),
        (
            {"pareto_index": 0, "constraints": [Constraint("macs", max_value=1.0)]},
            ValueError,
            "`constraints` only apply with `maximize`",
        ),
        (
            {"maximize": "f1"},
            ValueError,
            r"Unknown objective 'f1' for `maximize`; recorded objectives: \['accuracy', 'macs'\]",
        ),
        (
            {"maximize": "accuracy", "constraints": [Constraint("params", max_value=1.0)]},
            ValueError,
            r"'params<=1' is on an unknown objective 'params'; recorded objectives: \['accuracy', 'macs'\]",
        ),
        ({"maximize": "accuracy", "constraints": ["macs<=1"]}, TypeError, "must hold Constraint objects"),
    ],
)
def test_select_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_results().select(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# pareto_position
def test_pareto_position_is_what_the_model_card_takes():
    from hf_nas.hub import check_pareto

    results = make_results()
    position = results.pareto_position(4)
    assert position == {
        "pareto_index": 1,
        "record": 4,
        "size": 3,
        "objectives": ["accuracy", "macs"],
        "sorted_by": "accuracy",
        "values": {"accuracy": 0.8, "macs": 5e8},
    }
    assert check_pareto(position) == position  # build_model_card accepts it unchanged
    assert [results.pareto_position(i)["pareto_index"] for i in results.pareto_indices()] == [0, 1, 2]


def test_pareto_position_off_the_front():
    results = make_results()
    assert results.pareto_position(1) is None  # infeasible
    assert results.pareto_position(3) is None  # dominated
    with pytest.raises(ValueError, match=r"`index`=5 is out of range: allowed 0 to 4"):
        results.pareto_position(5)
    with pytest.raises(TypeError, match="`index` must be an int"):
        results.pareto_position("0")
