"""The CLI's read commands against a real collector serving the edge cases: ``report`` over all-zero latencies, a
NaN result, cycles and a succeeded run without a result writes its report (no traceback); run ids and filters are
encoded into the URL, so an id holding ``?`` or ``&`` is asked for as that id, not as another request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import edge_cases as edges
from tests.support import perfetto_protos
from tests.support.cli import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collector_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("cli-edges")
    url = f"sqlite:///{folder / 'collector.db'}"
    asyncio.run(edges.store_edge_cases(url))
    with edges.served_collector(url, folder / "collector.log") as served:
        yield served


def test_a_report_over_the_edge_cases_is_written_without_a_traceback(collector_url: str, tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    runs = [edges.ZERO_RUN, edges.NAN_RUN, edges.CYCLE_RUN, edges.HUGE_RUN, edges.NO_RESULT_RUN]
    run = run_cli("report", *runs, "--collector-url", collector_url, "-o", str(output), cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "Traceback" not in run.stderr + run.stdout
    assert f"warning: run {edges.NAN_RUN}'s result is left out of the report" in run.stderr
    html = output.read_text()
    assert 'data-chart="cdf"' in html and edges.ZERO_RUN in html
    markdown = tmp_path / "report.md"
    assert run_cli("report", *runs, "--collector-url", collector_url, "-o", str(markdown), cwd=tmp_path).returncode == 0


def test_run_ids_are_encoded_into_the_url(collector_url: str, tmp_path: Path) -> None:
    output = tmp_path / "trace.json"
    # Unencoded, 'e-zero?x=1' asked for GET /api/v1/runs/e-zero (the run's detail, not a trace).
    tricky = run_cli(
        "trace", "export", f"{edges.ZERO_RUN}?x=1", "--collector-url", collector_url, "-o", str(output), cwd=tmp_path
    )
    assert tricky.returncode != 0
    assert "422" in tricky.stderr + tricky.stdout and "Traceback" not in tricky.stderr
    assert not output.exists()
    export = ("trace", "export", edges.CYCLE_RUN, "--collector-url", collector_url, "-o", str(output))
    fine = run_cli(*export, cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr
    assert len([e for e in json.loads(output.read_text())["traceEvents"] if e["ph"] == "X"]) == 7
    report = run_cli(
        "report", f"{edges.ZERO_RUN}#x", "--collector-url", collector_url, "-o", str(tmp_path / "r.md"), cwd=tmp_path
    )
    assert report.returncode != 0 and "Traceback" not in report.stderr
    assert not (tmp_path / "r.md").exists()


def test_a_trace_exports_as_perfetto_protobuf_by_its_suffix(collector_url: str, tmp_path: Path) -> None:
    output = tmp_path / "cycle.pftrace"
    run = run_cli("trace", "export", edges.CYCLE_RUN, "--collector-url", collector_url, "-o", str(output), cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "wrote 7 spans" in run.stdout and "(perfetto)" in run.stdout
    _, found = perfetto_protos.slices(perfetto_protos.decode(output.read_bytes()))
    assert len(found) == 7
    wrong = ("trace", "export", edges.CYCLE_RUN, "--collector-url", collector_url, "-o", str(output), "--format", "x")
    refused = run_cli(*wrong, cwd=tmp_path)
    assert refused.returncode == 2 and "choose chrome, perfetto or auto" in refused.stderr


def test_run_filters_are_encoded_into_the_query(collector_url: str, tmp_path: Path) -> None:
    listed = run_cli("runs", "list", "--model", "a&colour=blue", "--collector-url", collector_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr + listed.stdout
    assert "0 of 0 runs" in listed.stdout
