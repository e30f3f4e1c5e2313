"""A tiny SVG chart renderer: histogram, line chart, horizontal bars and a trace timeline, as standalone strings.

Charts are drawn on the server (the collector's pages) and into the CLI's self-contained HTML report by this one
module, so the web UI needs no JavaScript library, nothing is fetched at run time, and a report file opens
offline. Every mark carries its number in ``data-*`` attributes and a ``<title>`` tooltip, which is also what the
browser tests read back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from mlmodelscope.core.analysis.distribution import CdfPoint, Histogram
from mlmodelscope.core.analysis.timeline import TimelineView

WIDTH = 640
HEIGHT = 260
_MARGIN_LEFT = 64
_MARGIN_RIGHT = 16
_MARGIN_TOP = 28
_MARGIN_BOTTOM = 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_SMALLEST_LOG_VALUE = 1e-300
_LEVEL_COLORS = {"application": "#4c72b0", "model": "#55a868", "framework": "#c44e52", "library": "#8172b2"}


def format_ns(ns: float) -> str:
    """A latency for humans: 850 ns, 31.2 µs, 4.31 ms, 1.20 s."""
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def _open(kind: str, title: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" data-chart="{kind}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
        f"{escape(title)}</text>",
    ]


def _axes(x_label: str, y_label: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    bottom = height - _MARGIN_BOTTOM
    return [
        f'<line x1="{_MARGIN_LEFT}" y1="{bottom}" x2="{width - _MARGIN_RIGHT}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{_MARGIN_LEFT}" y1="{_MARGIN_TOP}" x2="{_MARGIN_LEFT}" y2="{bottom}" stroke="#333"/>',
        f'<text x="{(width + _MARGIN_LEFT) / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="11">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{(height - _MARGIN_BOTTOM + _MARGIN_TOP) / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(height - _MARGIN_BOTTOM + _MARGIN_TOP) / 2:.0f})">{escape(y_label)}</text>',
    ]


@dataclass(frozen=True)
class _Scale:
    low: float
    high: float
    pixel_low: float
    pixel_high: float
    log: bool = False

    def _log_bounds(self) -> tuple[float, float]:
        """log10 of the ends; a log axis whose data start at 0 (all-zero latencies) starts at the smallest float."""
        low = math.log10(max(self.low, _SMALLEST_LOG_VALUE))
        return low, max(math.log10(max(self.high, _SMALLEST_LOG_VALUE)), low)

    def __call__(self, value: float) -> float:
        if self.log:
            low, high = self._log_bounds()
            value = math.log10(max(value, self.low, _SMALLEST_LOG_VALUE))
        else:
            low, high = self.low, self.high
        span = (high - low) or 1.0
        return self.pixel_low + (value - low) / span * (self.pixel_high - self.pixel_low)


def _ticks(scale: _Scale, count: int = 5) -> list[float]:
    if scale.log:
        low, high = scale._log_bounds()
        return [10 ** (low + (high - low) * i / (count - 1)) for i in range(count)]
    return [scale.low + (scale.high - scale.low) * i / (count - 1) for i in range(count)]


def _log_axis(values: Sequence[float]) -> tuple[float, float]:
    """(low, high) of a log axis over ``values``: positive, low < high. Values <= 0 (a latency of 0 ns) have no
    logarithm; they are drawn at the axis' start, which is the smallest positive value (or 1 when there is none)."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    low = min(positive, default=1.0)
    high = max(positive, default=low)
    return (low / 2, high * 2) if high <= low else (low, high)


def _x_ticks(scale: _Scale, fmt: str, height: int = HEIGHT) -> list[str]:
    bottom = height - _MARGIN_BOTTOM
    out = []
    for value in _ticks(scale):
        x = scale(value)
        label = format_ns(value) if fmt == "ns" else f"{value:g}"
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle" font-size="10">{escape(label)}</text>')
    return out


def _y_ticks(scale: _Scale, fmt: str) -> list[str]:
    out = []
    for value in _ticks(scale):
        y = scale(value)
        label = format_ns(value) if fmt == "ns" else (f"{value:.0%}" if fmt == "%" else f"{value:,.4g}")
        out.append(f'<line x1="{_MARGIN_LEFT - 4}" y1="{y:.1f}" x2="{_MARGIN_LEFT}" y2="{y:.1f}" stroke="#333"/>')
        out.append(
            f'<text x="{_MARGIN_LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">{escape(label)}</text>'
        )
    return out


def histogram_chart(histogram: Histogram, title: str = "Latency distribution") -> str:
    """Bars over log-spaced latency bins; each bar has data-low-ns, data-high-ns and data-count."""
    parts = _open("histogram", title)
    bottom = HEIGHT - _MARGIN_BOTTOM
    x = _Scale(*_log_axis(histogram.edges_ns), _MARGIN_LEFT, WIDTH - _MARGIN_RIGHT, log=True)
    y = _Scale(0, max(max(histogram.counts, default=0), 1), bottom, _MARGIN_TOP)
    parts += _axes("latency per query (log scale)", "queries")
    parts += _x_ticks(x, "ns") + _y_ticks(y, "count")
    for low, high, count in zip(histogram.edges_ns, histogram.edges_ns[1:], histogram.counts, strict=False):
        left, right, top = x(low), x(high), y(count)
        parts.append(
            f'<rect class="bar" x="{left:.2f}" y="{top:.2f}" width="{max(right - left - 0.5, 0.5):.2f}" '
            f'height="{bottom - top:.2f}" fill="{PALETTE[0]}" data-low-ns="{low:.0f}" data-high-ns="{high:.0f}" '
            f'data-count="{count}"><title>{escape(format_ns(low))} – {escape(format_ns(high))}: {count}</title></rect>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_format: str = "number",
    y_format: str = "number",
    log_x: bool = False,
    kind: str = "line",
) -> str:
    """Lines with point markers (data-series, data-x, data-y); a legend when there are several series."""
    parts = _open(kind, title)
    xs = [p[0] for s in series for p in s.points] or [1.0]
    ys = [p[1] for s in series for p in s.points] or [1.0]
    if log_x:
        x_low, x_high = _log_axis(xs)
    else:
        x_low, x_high = min(xs), max(xs)
        if x_high == x_low:
            x_low, x_high = x_low - 1, x_high + 1
    y_high = max(ys) * 1.05 if y_format != "%" else 1.0
    x = _Scale(x_low, x_high, _MARGIN_LEFT, WIDTH - _MARGIN_RIGHT, log=log_x)
    y = _Scale(0.0, y_high or 1.0, HEIGHT - _MARGIN_BOTTOM, _MARGIN_TOP)
    parts += _axes(x_label, y_label)
    parts += _x_ticks(x, x_format) + _y_ticks(y, y_format)
    for index, line in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        path = " ".join(f"{x(px):.2f},{y(py):.2f}" for px, py in line.points)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        for px, py in line.points:
            parts.append(
                f'<circle class="point" cx="{x(px):.2f}" cy="{y(py):.2f}" r="2.5" fill="{color}" '
                f'data-series="{escape(line.name)}" data-x="{px:g}" data-y="{py:g}">'
                f"<title>{escape(line.name)}: {px:g}, {py:g}</title></circle>"
            )
        if len(series) > 1:
            ly = _MARGIN_TOP + 12 * index
            parts.append(f'<rect x="{WIDTH - 180}" y="{ly}" width="10" height="10" fill="{color}"/>')
            parts.append(f'<text x="{WIDTH - 165}" y="{ly + 9}" font-size="10">{escape(line.name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def latency_cdf_chart(curves: Sequence[tuple[str, Sequence[CdfPoint]]], *, title: str = "Latency CDF") -> str:
    """The latency CDF of each named run on a log axis (the run page, the compare page and the report)."""
    return line_chart(
        [Series(name, [(p.latency_ns, p.fraction) for p in points]) for name, points in curves],
        title=title,
        x_label="latency per query (log scale)",
        y_label="share of queries",
        x_format="ns",
        y_format="%",
        log_x=True,
        kind="cdf",
    )


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str, value_format: str = "ns") -> str:
    """Horizontal bars, largest first as given (data-label, data-value)."""
    row = 18
    height = _MARGIN_TOP + row * max(len(labels), 1) + 12
    label_width = 170
    parts = _open("bars", title, height=height)
    top = max(values, default=0) or 1.0
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = _MARGIN_TOP + index * row
        width = (WIDTH - label_width - 90) * value / top
        shown = format_ns(value) if value_format == "ns" else f"{value:.1%}"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end" font-size="10">{escape(label[:32])}</text>'
        )
        parts.append(
            f'<rect class="bar" x="{label_width}" y="{y + 2}" width="{max(width, 0.5):.2f}" height="{row - 5}" '
            f'fill="{PALETTE[2]}" data-label="{escape(label)}" data-value="{value:g}"><title>{escape(label)}: '
            f"{escape(shown)}</title></rect>"
        )
        parts.append(f'<text x="{label_width + width + 4:.2f}" y="{y + 12}" font-size="10">{escape(shown)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def timeline_chart(view: TimelineView, *, title: str) -> str:
    """One lane per nesting depth; each span a bar (data-name, data-start-ns, data-end-ns)."""
    lane = 16
    lanes = max((bar.depth for bar in view.bars), default=0) + 1
    height = _MARGIN_TOP + lanes * lane + 30
    parts = _open("timeline", title, height=height)
    x = _Scale(0, max(view.duration_ns, 1), 8, WIDTH - 8)
    for bar in view.bars:
        left, right = x(bar.start_ns), x(bar.end_ns)
        y = _MARGIN_TOP + bar.depth * lane
        color = _LEVEL_COLORS.get(bar.level, "#777")
        label = f"{bar.name} ({bar.level}): {format_ns(bar.end_ns - bar.start_ns)}"
        parts.append(
            f'<rect class="span" x="{left:.2f}" y="{y}" width="{max(right - left, 0.5):.2f}" height="{lane - 3}" '
            f'fill="{color}" data-name="{escape(bar.name)}" data-level="{bar.level}" data-start-ns="{bar.start_ns}" '
            f'data-end-ns="{bar.end_ns}"><title>{escape(label)}</title></rect>'
        )
        if right - left > 40:
            parts.append(
                f'<text x="{left + 2:.2f}" y="{y + 10}" font-size="9" fill="#fff">{escape(bar.name[:24])}</text>'
            )
    parts.append(
        f'<text x="8" y="{height - 8}" font-size="10">0</text>'
        f'<text x="{WIDTH - 8}" y="{height - 8}" font-size="10" text-anchor="end">'
        f"{escape(format_ns(view.duration_ns))}</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)
