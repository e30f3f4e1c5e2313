"""The Grafana dashboards: only the collector's metrics used, and every PromQL expression answered with data by a
real Prometheus that scrapes a real collector holding a real evaluation (that the committed JSON equals a fresh
generation is tests/deploy/test_generated_files.py's check).

Grafana is not installable here, so its part is emulated the way it evaluates a panel: the dashboard variables
become their "All" value (``.*``) and ``$__rate_interval`` a window of several scrape intervals. Module-scoped:
one evaluation, one collector, one Prometheus for every expression.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mlmodelscope.cli.nats_server import EmbeddedNatsServer, free_port
from tests.support.chart import CHART, tool
from tests.support.cli import run_cli
from tests.support.paths import CLI, REPO
from tests.support.waiting import wait_for

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
RATE_WINDOW = "15s"
SCRAPE_INTERVAL_S = 1


def _expressions() -> list[tuple[str, str]]:
    """(where, expression) of every panel target and every templating query of every dashboard."""
    found: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel["targets"]:
                found.append((f"{path.stem}: {panel['title']} [{target['refId']}]", target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                found.append((f"{path.stem}: variable {variable['name']}", variable["query"]["query"]))
    return found


EXPRESSIONS = _expressions()
LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>[a-z_]+)\)$")


def to_promql(expression: str) -> tuple[str, str | None]:
    """What Grafana sends for ``expression``: variables substituted; label_values(expr, label) becomes expr."""
    match = LABEL_VALUES.match(expression)
    label = None
    if match:
        expression, label = match["expr"], match["label"]
    expression = expression.replace("$__rate_interval", RATE_WINDOW)
    expression = re.sub(r"\$\{?(model|framework|arch|accelerator)\}?", ".*", expression)
    assert "$" not in expression, f"unsubstituted variable in {expression}"
    return expression, label


def collector_metric_names() -> set[str]:
    """Every sample name the collector can expose, read from its exporter with one of each label set populated."""
    from datetime import UTC, datetime

    from mlmodelscope.collector.metrics import (
        CollectorMetrics,
        LatencyHistogram,
        LatestValue,
        MetricsSnapshot,
        RegressionState,
        RunLabels,
    )

    labels = RunLabels("m", "f", "amd64", "cpu", "offline", "1")
    now = datetime.now(UTC)
    histogram = LatencyHistogram()
    histogram.observe(1000)
    metrics = CollectorMetrics(build_version="test")
    metrics.load(
        MetricsSnapshot(
            messages_ingested={"run_started": 1},
            inferences={labels: 1},
            latency={labels: histogram},
            accuracy_top1={labels: LatestValue(now, 0.5)},
            throughput={labels: LatestValue(now, 1.0)},
            regressions={labels: RegressionState(now, False, 1.0, 1.0)},
        )
    )
    metrics.set_consumer_lag(0)
    return {sample.name for family in metrics.collect() for sample in family.samples}


def test_dashboards_use_only_the_collectors_metrics() -> None:
    names = collector_metric_names()
    used = {name for _, expr in EXPRESSIONS for name in re.findall(r"\bmlmodelscope_[a-z0-9_]+", expr)}
    assert used, "no metric in the dashboards"
    assert used <= names, f"not exported by the collector: {sorted(used - names)}"
    overview = json.loads((CHART / "dashboards" / "mlmodelscope-overview.json").read_text())
    titles = " ".join(p["title"].lower() for p in overview["panels"])
    for topic in ("runs in flight", "runs by state", "spans ingested", "consumer lag"):
        assert topic in titles


def test_dashboard_shape() -> None:
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        assert any(v["type"] == "datasource" for v in board["templating"]["list"]), path.name
        for panel in board["panels"]:
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len(uids) == len(DASHBOARDS)


@dataclass(frozen=True)
class Stack:
    prometheus_url: str
    collector_url: str


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = tool("prometheus")
    work = tmp_path_factory.mktemp("dashboards")
    data = work / "data"
    evaluation = run_cli(
        "evaluate", "--model", "digits-cnn", "--framework", "onnxruntime", "--min-duration", "1s",
        "-o", str(work / "result.json"), cwd=REPO, data_dir=data,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert (data / "collector.db").is_file()
    nats = EmbeddedNatsServer(work / "nats")
    nats.start()
    collector_port, prometheus_port = free_port(), free_port()
    with (work / "collector.log").open("ab") as log:
        collector = subprocess.Popen(
            [str(CLI), "collector", "serve", "--database-url", f"sqlite:///{data / 'collector.db'}",
             "--nats-url", nats.url, "--host", "127.0.0.1", "--port", str(collector_port)],
            stdout=log, stderr=subprocess.STDOUT, cwd=work,
        )  # fmt: skip
    config = work / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  evaluation_interval: {SCRAPE_INTERVAL_S}s\n"
        f"scrape_configs:\n  - job_name: mlmodelscope-collector\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{collector_port}']\n",
        encoding="utf-8",
    )
    with (work / "prometheus.log").open("ab") as log:
        server = subprocess.Popen(
            [str(prometheus), f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=work,
        )  # fmt: skip
    collector_url, prometheus_url = f"http://127.0.0.1:{collector_port}", f"http://127.0.0.1:{prometheus_port}"
    try:
        waiting = {"timeout_s": 60, "interval_s": 0.25, "ignoring": (httpx.HTTPError,)}  # not listening yet
        wait_for(lambda: httpx.get(f"{collector_url}/readyz").status_code == 200, what="/readyz", **waiting)
        wait_for(lambda: httpx.get(f"{prometheus_url}/-/ready").status_code == 200, what="Prometheus", **waiting)
        # Enough scrapes for rate() over RATE_WINDOW to have two samples of every series, lag included.
        four_scrapes = "count_over_time(mlmodelscope_consumer_lag_messages[1m]) >= 4"
        wait_for(lambda: bool(query(prometheus_url, four_scrapes)), what="four scrapes of the lag", **waiting)
        yield Stack(prometheus_url, collector_url)
    finally:
        _stop(server)
        _stop(collector)
        nats.stop()


def query(base: str, expression: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expression}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expression, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("where", "expression"), EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_every_expression_returns_data(stack: Stack, where: str, expression: str) -> None:
    promql, label = to_promql(expression)
    result = query(stack.prometheus_url, promql)
    assert result, f"{where}: no data for {promql}"
    if label is not None:
        assert all(label in series["metric"] for series in result), where
        return
    values = [float(series["value"][1]) for series in result]
    if "rate(" not in promql:
        # Over everything stored (no window): every value is a real number; latencies and ratios are positive.
        assert all(math.isfinite(v) for v in values), (where, values)
        if "latency" in promql or "throughput" in promql or "accuracy" in promql:
            assert all(v > 0 for v in values), (where, values)


@pytest.mark.slow
def test_the_dashboards_show_the_evaluation_that_ran(stack: Stack) -> None:
    """The figures are the evaluation's: its labels, one finished run, nothing in flight."""
    series = query(stack.prometheus_url, "mlmodelscope_accuracy_top1_ratio")
    assert {(s["metric"]["model"], s["metric"]["framework"]) for s in series} == {("digits-cnn", "onnxruntime")}
    assert 0.9 < float(series[0]["value"][1]) <= 1.0
    in_flight = next(e for w, e in EXPRESSIONS if w.startswith("mlmodelscope-overview: Runs in flight"))
    running = query(stack.prometheus_url, to_promql(in_flight)[0])
    assert float(running[0]["value"][1]) == 0.0
    p99 = query(
        stack.prometheus_url,
        "histogram_quantile(0.99, sum by (le) (mlmodelscope_inference_latency_seconds_bucket))",
    )
    assert 0 < float(p99[0]["value"][1]) < 1.0
