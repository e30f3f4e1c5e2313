"""Generate the Grafana dashboards of the Helm chart (``charts/mlmodelscope/dashboards/*.json``).

Why this exists: dashboards written by hand drift (copied selectors, a label renamed in one panel only); here each
panel is one PromQL expression over the collector's metrics (``mlmodelscope.collector.metrics``), with one
selector for the dashboard variables, and the JSON is written deterministically. ``--check`` fails when the
committed files differ (``make generate`` writes them, ``tests/deploy/test_generated_files.py`` checks them, and
``tests/deploy/test_dashboards.py`` runs every expression against a real Prometheus). Grafana itself is not run here;
the JSON follows its dashboard schema (schemaVersion 39).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "charts" / "mlmodelscope" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RUN_LABELS = "model, framework, arch, accelerator, batch_size"
SELECTOR = 'model=~"$model", framework=~"$framework", arch=~"$arch", accelerator=~"$accelerator"'
LEGEND = "{{model}} / {{framework}} / {{arch}}-{{accelerator}} / b{{batch_size}}"

Json = dict[str, Any]


def target(expr: str, legend: str = "", ref: str = "A") -> Json:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}


def panel(
    panel_id: int, title: str, kind: str, targets: list[Json], grid: tuple[int, int, int, int], unit: str = "short"
) -> Json:
    x, y, w, h = grid
    return {
        "id": panel_id,
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
    }


def datasource_variable() -> Json:
    return {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus", "hide": 0}


def label_variable(name: str) -> Json:
    return {
        "name": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": f"label_values(mlmodelscope_inferences_total, {name})", "refId": name},
        "definition": f"label_values(mlmodelscope_inferences_total, {name})",
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
    }


def dashboard(uid: str, title: str, panels: list[Json], variables: list[Json], description: str) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["mlmodelscope"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def overview() -> Json:
    started = 'sum(mlmodelscope_messages_ingested_total{kind="run_started"})'
    finished = '(sum(mlmodelscope_messages_ingested_total{kind="run_finished"}) or vector(0))'
    panels = [
        panel(1, "Runs in flight (started, not finished)", "stat", [target(f"{started} - {finished}", "running")],
              (0, 0, 6, 5)),
        panel(2, "Runs by state", "bargauge",
              [target(f"{started} - {finished}", "running"), target(finished, "finished"),
               target(started, "started")], (6, 0, 6, 5)),
        panel(3, "Spans ingested", "stat", [target("sum(mlmodelscope_spans_ingested_total)", "spans")],
              (12, 0, 6, 5)),
        panel(4, "Consumer lag (messages not yet delivered)", "stat",
              [target("max(mlmodelscope_consumer_lag_messages)", "lag")], (18, 0, 6, 5)),
        panel(5, "Spans ingested per second", "timeseries",
              [target("sum(rate(mlmodelscope_spans_ingested_total[$__rate_interval]))", "spans/s")],
              (0, 5, 12, 8), "ops"),
        panel(6, "Consumer lag", "timeseries", [target("max(mlmodelscope_consumer_lag_messages)", "lag")],
              (12, 5, 12, 8)),
        panel(7, "Messages ingested per second, by kind", "timeseries",
              [target("sum by (kind) (rate(mlmodelscope_messages_ingested_total[$__rate_interval]))", "{{kind}}")],
              (0, 13, 12, 8), "ops"),
        panel(8, "Messages dropped", "timeseries",
              [target("sum by (reason) (mlmodelscope_messages_rejected_total)", "rejected: {{reason}}"),
               target("sum(mlmodelscope_messages_duplicate_total)", "duplicate")], (12, 13, 12, 8)),
        panel(9, "Inferences per second, by model and framework", "timeseries",
              [target("sum by (model, framework) (rate(mlmodelscope_inferences_total[$__rate_interval]))",
                      "{{model}} / {{framework}}")], (0, 21, 12, 8), "ops"),
        panel(10, "Collector version", "stat", [target("max by (version) (mlmodelscope_build_info)", "{{version}}")],
              (12, 21, 12, 8)),
    ]  # fmt: skip
    return dashboard(
        "mlmodelscope-overview",
        "MLModelScope / Overview",
        panels,
        [datasource_variable()],
        "Evaluations as they run: runs in flight and by state, ingestion and consumer lag (collector metrics).",
    )


def models() -> Json:
    bucket = f"mlmodelscope_inference_latency_seconds_bucket{{{SELECTOR}}}"
    panels: list[Json] = []
    for index, quantile in enumerate((0.5, 0.9, 0.99)):
        panels.append(
            panel(1 + index, f"p{round(quantile * 100)} latency (every stored call)", "bargauge",
                  [target(f"histogram_quantile({quantile}, sum by (le, {RUN_LABELS}) ({bucket}))", LEGEND)],
                  (8 * index, 0, 8, 8), "s")
        )  # fmt: skip
    mean = (
        f"sum by ({RUN_LABELS}) (mlmodelscope_inference_latency_seconds_sum{{{SELECTOR}}})"
        f" / sum by ({RUN_LABELS}) (mlmodelscope_inference_latency_seconds_count{{{SELECTOR}}})"
    )
    live = [
        target(f"histogram_quantile({q}, sum by (le, {RUN_LABELS}) (rate({bucket}[$__rate_interval])))",
               f"p{round(q * 100)} " + LEGEND)
        for q in (0.5, 0.9, 0.99)
    ]  # fmt: skip
    panels += [
        panel(4, "Latency percentiles while running", "timeseries", live, (0, 8, 12, 8), "s"),
        panel(5, "Mean latency (every stored call)", "bargauge", [target(mean, LEGEND)], (12, 8, 12, 8), "s"),
        panel(6, "Throughput of the latest finished run", "bargauge",
              [target(f"mlmodelscope_throughput_samples_per_second{{{SELECTOR}}}", LEGEND)], (0, 16, 12, 8),
              "reqps"),
        panel(7, "Inferences per second while running", "timeseries",
              [target(f"sum by ({RUN_LABELS}) (rate(mlmodelscope_inferences_total{{{SELECTOR}}}[$__rate_interval]))",
                      LEGEND)], (12, 16, 12, 8), "reqps"),
        panel(8, "Top-1 accuracy of the latest finished run", "bargauge",
              [target(f"mlmodelscope_accuracy_top1_ratio{{{SELECTOR}}}", LEGEND)], (0, 24, 12, 8), "percentunit"),
        panel(9, "Inferences (dataset items predicted)", "bargauge",
              [target(f"sum by ({RUN_LABELS}) (mlmodelscope_inferences_total{{{SELECTOR}}})", LEGEND)],
              (12, 24, 12, 8)),
    ]  # fmt: skip
    variables = [datasource_variable(), *(label_variable(n) for n in ("model", "framework", "arch", "accelerator"))]
    return dashboard(
        "mlmodelscope-models",
        "MLModelScope / Models, frameworks and hardware",
        panels,
        variables,
        "Latency percentiles, throughput and accuracy per model x framework x hardware x batch size.",
    )


DASHBOARDS = {"mlmodelscope-overview.json": overview, "mlmodelscope-models.json": models}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed files differ")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path = args.out / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"out of date: {path} (run python scripts/build_dashboards.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
