"""A study's records file (experiments.aggregate.records): one gzip'd JSON line per finished cell,
written deterministically, merged on republishing, read back by aggregate and restore_cells; and
the published studies under experiments/results/ regenerate from theirs."""

import gzip
import json
import pathlib
import re
import shlex

import pytest

from experiments import aggregate as agg
from tests.test_cli import run
from tests.test_restore_cells import FINISHED, MISSING
from tests.test_sweep import fabricate

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "results"


def publish_sweep(root, prefix):
    result = agg.aggregate(root, group_by=None, over="seed")
    return result, agg.publish_records(result, prefix)


def test_records_hold_each_finished_cell_as_run_folder_reads_it(tmp_path):
    fabricate(tmp_path / "sweep")
    result, written = publish_sweep(tmp_path / "sweep", tmp_path / "abl")
    assert written == [tmp_path / "abl_records.jsonl.gz"]
    with gzip.open(written[0], "rt") as f:
        lines = [json.loads(line) for line in f]
    assert lines[0]["records"] == 1 and lines[0]["workdir"] == str(tmp_path / "sweep")
    assert [r["cell"] for r in lines[1:]] == sorted(FINISHED)  # one line a cell, by name
    _, cells = agg.load_cells(tmp_path / "sweep")
    by_name = {c.name: c for c in cells}
    for record in lines[1:]:
        cell = by_name[record["cell"]]
        assert record["overrides"] == cell.overrides
        assert record["config"] == cell.config and record["summary"] == cell.summary
        assert record["curve"] == cell.metrics and len(record["curve"]) == 5

    header, described, again = agg.load_records(written[0])
    assert header == lines[0] and described == header["sweep"]
    assert [(c.name, c.status) for c in again] == [(c.name, c.status) for c in cells]
    assert {c.name for c in again if c.status == "missing"} == {MISSING}


def test_publishing_the_same_records_twice_gives_the_same_bytes(tmp_path):
    fabricate(tmp_path / "sweep")
    _, [first] = publish_sweep(tmp_path / "sweep", tmp_path / "one" / "abl")
    data = first.read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip's time field
    _, [again] = publish_sweep(tmp_path / "sweep", tmp_path / "one" / "abl")  # merged onto itself
    assert again.read_bytes() == data
    _, [other] = publish_sweep(tmp_path / "sweep", tmp_path / "two" / "other")
    assert other.read_bytes() == data  # no file name in the gzip header either
    # Reordered keys and cells encode the same.
    header, cells = agg.read_records(first)
    shuffled = {n: dict(reversed(cells[n].items())) for n in reversed(list(cells))}
    assert agg.records.encode(dict(reversed(header.items())), shuffled) == data


def test_republishing_adds_and_replaces_cells_and_never_deletes(tmp_path):
    fabricate(tmp_path / "a")
    _, [path] = publish_sweep(tmp_path / "a", tmp_path / "abl")
    # A second workdir finished the missing cell and reran one, and its sweep.json lists only
    # those two.
    fabricate(tmp_path / "b")
    rerun = tmp_path / "b" / FINISHED[0] / "summary.json"
    summary = json.loads(rerun.read_text())
    summary["results"]["test"]["accuracy"] = 0.99
    rerun.write_text(json.dumps(summary))
    (tmp_path / "b" / MISSING / "summary.json").write_text(json.dumps(summary))
    described = json.loads((tmp_path / "b" / "sweep.json").read_text())
    described["cells"] = [c for c in described["cells"] if c["name"] in (FINISHED[0], MISSING)]
    (tmp_path / "b" / "sweep.json").write_text(json.dumps(described))
    publish_sweep(tmp_path / "b", tmp_path / "abl")

    header, cells = agg.read_records(path)
    assert sorted(cells) == sorted([*FINISHED, MISSING])
    assert cells[FINISHED[0]]["summary"]["results"]["test"]["accuracy"] == 0.99
    assert cells[FINISHED[1]]["summary"]["results"]["test"]["accuracy"] == 0.82  # kept
    assert header["workdir"] == str(tmp_path / "b")
    names = [c["name"] for c in header["sweep"]["cells"]]
    assert sorted(names) == sorted(cells) and names[-2:] == [FINISHED[0], MISSING]
    result = agg.aggregate(tmp_path / "redo", group_by=None, over="seed", records=path)
    assert {r["status"] for r in result["rows"]} == {"finished"} and len(result["rows"]) == 6


def test_a_path_that_is_not_a_records_file_says_what_was_expected(tmp_path):
    expected = "expected a study's records file, PREFIX_records.jsonl.gz"
    with pytest.raises(agg.RecordsError, match="nope_records.jsonl.gz does not exist: " + expected):
        agg.read_records(tmp_path / "nope_records.jsonl.gz")
    (tmp_path / "dir_records.jsonl.gz").mkdir()
    with pytest.raises(agg.RecordsError, match="is a folder"):
        agg.read_records(tmp_path / "dir_records.jsonl.gz")
    (tmp_path / "abl.csv").write_text("cell,status\n")
    with pytest.raises(agg.RecordsError, match=r"abl.csv is not named \*_records.jsonl.gz"):
        agg.read_records(tmp_path / "abl.csv")
    (tmp_path / "text_records.jsonl.gz").write_text('{"records": 1}\n')
    with pytest.raises(agg.RecordsError, match="cannot be read"):
        agg.read_records(tmp_path / "text_records.jsonl.gz")
    bad = tmp_path / "bad_records.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"cell": "x"}\n'))
    with pytest.raises(agg.RecordsError, match="does not start with a records header"):
        agg.read_records(bad)
    bad.write_bytes(agg.records.encode({"records": 1}, {"../x": {"cell": "../x", "summary": {}}}))
    with pytest.raises(agg.RecordsError, match="line 2: not a cell's record"):
        agg.read_records(bad)

    missing = run("-m", "experiments.aggregate", f"--records={tmp_path / 'nope.csv'}")
    assert missing.returncode != 0
    assert "is not named *_records.jsonl.gz" in missing.stderr + missing.stdout
    swapped = run("-m", "experiments.aggregate", f"--workdir={tmp_path / 'abl.csv'}")
    assert swapped.returncode != 0
    assert f"is read with --records={tmp_path / 'abl.csv'}" in swapped.stderr + swapped.stdout


def published_studies():
    return sorted(p.name.removesuffix("_records.jsonl.gz") for p in RESULTS.glob("*_records*"))


def test_every_published_study_has_its_records():
    assert len(published_studies()) >= 2
    assert not list(RESULTS.glob("*_cells"))  # the folders of loose files are gone


def aggregate_arguments(command: str) -> dict[str, str]:
    """{flag: value} of a published `python -m experiments.aggregate --flag=value ...` command."""
    return dict(a.removeprefix("--").split("=", 1) for a in shlex.split(command)[3:])


def test_published_tables_join_only_published_records():
    """A clean clone has no runs/ folder: a published table's --rows_from must name records files
    under experiments/results/, or it regenerates only on the machine that trained it."""
    for md in RESULTS.glob("*.md"):
        for command in re.findall(r"`(python -m experiments\.aggregate [^`]*)`", md.read_text()):
            args = aggregate_arguments(command)
            for path in filter(None, args.get("rows_from", "").split(",")):
                assert path.startswith("experiments/results/") and path.endswith(
                    "_records.jsonl.gz"
                ), f"{md.name}: --rows_from={path} is not a published records file"
                assert (RESULTS.parents[1] / path).is_file(), f"{md.name}: {path} is missing"


@pytest.mark.parametrize("name", published_studies())
def test_a_published_table_regenerates_from_its_records(name, tmp_path):
    """The published CSV and table, redone from the records file with the arguments named in the
    published Markdown's header."""
    md = (RESULTS / f"{name}.md").read_text()
    command = re.search(r"^Made by `(python -m experiments\.aggregate [^`]*)`", md, re.M).group(1)
    args = aggregate_arguments(command)
    result = agg.aggregate(
        tmp_path,
        group_by=args["group_by"].split(",") if "group_by" in args else None,
        over=args.get("over", "seed"),
        metric=args.get("metric", "test_accuracy"),
        time_to_accuracy=[float(t) for t in args.get("time_to", "").split(",") if t],
        x_axis=args.get("x_axis"),
        records=RESULTS / f"{name}_records.jsonl.gz",
        # other studies' rows, by their paths from the repository's root
        rows_from=[RESULTS.parents[1] / p for p in args.get("rows_from", "").split(",") if p],
    )
    assert (tmp_path / "aggregate.csv").read_bytes() == (RESULTS / f"{name}.csv").read_bytes()
    assert md.endswith("\n" + result["markdown"])
    assert f"Cells trained by `{result['sweep_command']}`." in md


def test_a_cell_still_running_reports_the_same_from_its_folder_and_from_the_records(tmp_path):
    """A cell with a metrics.jsonl and config.json but no summary (a run going on, or killed) is
    reported as missing with no values but its overrides: its records hold nothing for it, so a
    table made from the folder would otherwise disagree with the one regenerated from the
    published records."""
    fabricate(tmp_path / "sweep")
    running = tmp_path / "sweep" / MISSING
    (running / "metrics.jsonl").write_text(
        (tmp_path / "sweep" / FINISHED[0] / "metrics.jsonl").read_text()
    )
    # Grouped by a config field too: the started cell's config.json has it, its records do not.
    args = dict(group_by=["plan.name", "data.eval_split"], over="seed", time_to_accuracy=[0.5])
    from_folder = agg.aggregate(tmp_path / "sweep", **args)
    csv = (tmp_path / "sweep" / "aggregate.csv").read_text()
    _, [records] = publish_sweep(tmp_path / "sweep", tmp_path / "abl")
    from_records = agg.aggregate(tmp_path / "again", records=records, **args)
    assert from_folder["markdown"] == from_records["markdown"]
    assert csv == (tmp_path / "again" / "aggregate.csv").read_text()
    [row] = [line for line in csv.splitlines() if line.startswith(f'"{MISSING}"')]
    identity = {"", "2", "progressive"}  # its seed and plan; every value column is empty
    assert set(row.removeprefix(f'"{MISSING}",missing').split(",")) <= identity
