"""``mlmodelscope report`` against a collector holding real evaluations: the HTML is self-contained, parses in
Chromium, embeds the plots and shows the API's numbers; md, csv and json carry the same figures."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.core.analysis.report import Report
from mlmodelscope.core.analysis.svg import format_ns
from tests.support.cli import run_cli
from tests.support.web import WebEnvironment

pytestmark = pytest.mark.slow


def report(web: WebEnvironment, tmp_path: Path, output: str, *args: str) -> Path:
    target = tmp_path / output
    run = run_cli(
        "report",
        "--collector-url",
        web.url,
        web.sweep_runs[1],
        web.sweep_runs[4],
        web.framework_run,
        "-o",
        str(target),
        *args,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert f"wrote {target}" in run.stdout
    return target


def runs_of(web: WebEnvironment) -> list[str]:
    return [web.sweep_runs[1], web.sweep_runs[4], web.framework_run]


def test_html_report_is_self_contained_and_shows_the_api_numbers(
    web: WebEnvironment, page: Any, tmp_path: Path
) -> None:
    path = report(web, tmp_path, "report.html")
    text = path.read_text()
    assert "<script" not in text and "<link" not in text and not re.search(r"\ssrc=", text)
    svgs = re.findall(r"<svg .*?</svg>", text, flags=re.DOTALL)
    for chart in svgs:
        ElementTree.fromstring(chart)  # every plot is well-formed SVG
    page.goto(path.as_uri())
    assert page.title().startswith("MLModelScope report")

    run_ids = runs_of(web)
    analyses = {r: web.get(f"/api/v1/runs/{r}/analysis") for r in run_ids}
    model_rows = page.locator("table[data-table=model] tr:has(td)")
    assert model_rows.count() == 3
    for index, run_id in enumerate(run_ids):
        row = model_rows.nth(index)
        assert row.locator("td[data-column=run_id]").inner_text() == run_id
        p50 = row.locator("td[data-column=p50_ns]")
        assert int(p50.get_attribute("data-value")) == analyses[run_id]["latency"]["p50_ns"]
        assert p50.inner_text() == format_ns(analyses[run_id]["latency"]["p50_ns"])
        p99 = row.locator("td[data-column=p99_ns]")
        assert int(p99.get_attribute("data-value")) == analyses[run_id]["latency"]["p99_ns"]

    # plots: a histogram and a CDF per run, layers and op types for the framework-traced run, the sweep, the overlay
    assert page.locator("svg[data-chart=histogram]").count() == 3
    bars = page.locator("svg[data-chart=histogram]").nth(2).locator("rect.bar")
    assert (
        bars.evaluate_all("bs => bs.map(b => Number(b.dataset.count))")
        == analyses[web.framework_run]["histogram"]["counts"]
    )
    assert page.locator("svg[data-chart=cdf]").count() == 4
    assert page.locator("svg[data-chart=bars]").count() == 2
    assert page.locator("svg[data-chart=sweep] circle.point").count() == 2

    layers = analyses[web.framework_run]["layers"]
    layer_table = page.locator(f"table[data-table='layers-{web.framework_run}'] td[data-column=layer]")
    assert layer_table.all_inner_texts() == [row["name"] for row in layers["top_layers"]]
    op_table = page.locator(f"table[data-table='op-types-{web.framework_run}'] td[data-column=op_type]")
    assert op_table.all_inner_texts() == [row["op_type"] for row in layers["op_types"]]

    sweep = web.get("/api/v1/sweeps", evaluation_id=web.sweep_evaluation)["sweeps"][0]
    optimal = page.locator("table[data-table=batch] tr:has(td[data-column=optimal][data-value=True])")
    assert optimal.locator("td[data-column=batch_size]").inner_text() == str(sweep["optimal_batch_size"])

    view = web.get("/api/v1/compare", run=run_ids)
    for candidate in view["candidates"]:
        table = page.locator(f"table[data-table='compare-{candidate['candidate']['run_id']}']")
        verdicts = table.locator("td[data-column=verdict]").all_inner_texts()
        assert verdicts == [m["verdict"] for m in candidate["comparison"]["metrics"]]


def test_markdown_csv_and_json_reports_carry_the_same_numbers(web: WebEnvironment, tmp_path: Path) -> None:
    run_ids = runs_of(web)
    analyses = {r: web.get(f"/api/v1/runs/{r}/analysis") for r in run_ids}

    markdown = report(web, tmp_path, "report.md").read_text()
    assert "## Model latency and throughput" in markdown and "## Throughput by batch size" in markdown
    for run_id in run_ids:
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {run_id} |"))
        assert f"| {format_ns(analyses[run_id]['latency']['p99_ns'])} |" in line

    report(web, tmp_path, "tables.csv", "--format", "csv")
    with (tmp_path / "tables.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run_id"] for row in rows] == run_ids
    for row in rows:
        assert int(row["p50_ns"]) == analyses[row["run_id"]]["latency"]["p50_ns"]
    with (tmp_path / f"tables.layers-{web.framework_run}.csv").open() as handle:
        layers = list(csv.DictReader(handle))
    api_layers = analyses[web.framework_run]["layers"]["top_layers"]
    assert [(r["layer"], int(r["total_ns"])) for r in layers] == [(r["name"], r["total_ns"]) for r in api_layers]
    assert (tmp_path / "tables.batch.csv").is_file()

    document = report(web, tmp_path, "report.json").read_text()
    parsed = Report.model_validate_json(document)
    assert [run.run_id for run in parsed.runs] == run_ids
    for run in parsed.runs:
        assert run.analysis is not None
        assert run.analysis.model_dump(mode="json") == json.loads(json.dumps(analyses[run.run_id]))
    assert [c.comparison.verdict for c in parsed.comparisons] == [
        c["comparison"]["verdict"] for c in web.get("/api/v1/compare", run=run_ids)["candidates"]
    ]


def test_report_of_an_unknown_run_is_a_one_paragraph_error(web: WebEnvironment, tmp_path: Path) -> None:
    run = run_cli("report", "--collector-url", web.url, "no-such-run", "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert run.returncode == 1
    assert "no run 'no-such-run'" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "r.html").exists()
