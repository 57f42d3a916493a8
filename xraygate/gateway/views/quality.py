"""Server-rendered SVG trend charts of the quality report (no JavaScript, no CDN).

:func:`version_charts` turns one version of :func:`xraygate.core.quality.report.build_report`
into charts: sensitivity, specificity and agreement per period with their 95 % intervals as
whiskers; AUROC and ECE per period; indeterminate and out-of-distribution shares; score drift
(PSI); and the reliability diagram of the whole window. Every text is escaped; each point has a
``<title>`` (its value, interval and n) for hovering and screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 44


@dataclass(frozen=True)
class Point:
    x: str  # the period's label
    value: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None


@dataclass
class Series:
    name: str
    css: str  # a class of style.css: s1, s2, s3
    points: list[Point] = field(default_factory=list)


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if value else "0"


@dataclass(frozen=True)
class Frame:
    """The plot area: periods along x, 0..y_max along y."""

    periods: list[str]
    y_max: float

    @property
    def inner_w(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def inner_h(self) -> float:
        return HEIGHT - TOP - BOTTOM

    def x(self, label: str) -> float:
        if len(self.periods) < 2:
            return LEFT + self.inner_w / 2
        return LEFT + self.inner_w * self.periods.index(label) / (len(self.periods) - 1)

    def y(self, value: float) -> float:
        return TOP + self.inner_h * (1 - min(max(value / self.y_max, 0.0), 1.0))


def line_chart(
    title: str, series: list[Series], *, y_max: float = 1.0, y_label: str = ""
) -> Markup:
    """A line chart of ``series`` over the periods (x), 0..y_max (y), whiskers for intervals."""
    periods: list[str] = []
    for s in series:
        periods += [p.x for p in s.points if p.x not in periods]
    frame = Frame(periods, y_max)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text class="chart-title" x="{LEFT}" y="16">{escape(title)}</text>',
        *_axes(frame, y_label),
    ]
    for s in series:
        parts += _series(s, frame)
    parts += _legend(series)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (every text in it is escaped)


def _axes(frame: Frame, y_label: str) -> list[str]:
    out = []
    for tick in range(5):
        value = frame.y_max * tick / 4
        y = frame.y(value)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(value)}</text>"
        )
    middle = TOP + frame.inner_h / 2
    if y_label:
        out.append(
            f'<text class="tick" x="12" y="{middle:.1f}" transform="rotate(-90 12 {middle:.1f})" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
    every = -(-len(frame.periods) // 6)  # at most 6 labels
    for index, label in enumerate(frame.periods):
        if index % every == 0:
            short = label[5:] if len(label) == 10 else label  # a day: MM-DD
            out.append(
                f'<text class="tick" x="{frame.x(label):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(short)}</text>'
            )
    if not frame.periods:
        out.append(
            f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            "no data in this window</text>"
        )
    return out


def _legend(series: list[Series]) -> list[str]:
    out, x = [], LEFT
    for s in series:
        out.append(
            f'<rect class="{s.css}" x="{x}" y="{HEIGHT - 14}" width="10" height="10"/>'
            f'<text class="tick" x="{x + 14}" y="{HEIGHT - 5}">{escape(s.name)}</text>'
        )
        x += 24 + 7 * len(s.name)
    return out


def _series(s: Series, frame: Frame) -> list[str]:
    out: list[str] = []
    run: list[str] = []
    for p in s.points:
        if p.value is None:
            if len(run) > 1:
                out.append(f'<polyline class="line {s.css}" points="{" ".join(run)}"/>')
            run = []
            continue
        x, y = frame.x(p.x), frame.y(p.value)
        run.append(f"{x:.1f},{y:.1f}")
        if p.low is not None and p.high is not None:
            out.append(
                f'<line class="whisker {s.css}" x1="{x:.1f}" x2="{x:.1f}" '
                f'y1="{frame.y(p.low):.1f}" y2="{frame.y(p.high):.1f}"/>'
            )
        tip = f"{s.name} {p.x}: {_fmt(p.value)}"
        if p.low is not None and p.high is not None:
            tip += f" (95 % CI {_fmt(p.low)}-{_fmt(p.high)})"
        if p.n is not None:
            tip += f", n={p.n}"
        out.append(
            f'<circle class="dot {s.css}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"<title>{escape(tip)}</title></circle>"
        )
    if len(run) > 1:
        out.append(f'<polyline class="line {s.css}" points="{" ".join(run)}"/>')
    return out


def _proportion(periods: list[dict[str, Any]], key: str) -> list[Point]:
    out = []
    for p in periods:
        figure = p[key]
        ci = figure.get("ci95") or [None, None]
        out.append(Point(p["period"], figure["value"], ci[0], ci[1], figure["n"]))
    return out


def _scalar(periods: list[dict[str, Any]], key: str, inner: str) -> list[Point]:
    out = []
    for p in periods:
        figure = p.get(key) or {}
        ci = figure.get("ci95") or figure.get(f"{inner}_ci95") or [None, None]
        out.append(Point(p["period"], figure.get(inner), ci[0], ci[1], figure.get("n")))
    return out


def reliability_chart(title: str, calibration: dict[str, Any] | None) -> Markup:
    """Observed share of pneumonia per score bin against the bin's mean score."""
    series = Series("observed", "s1")
    if calibration:
        for b in calibration["bins"]:
            label = f"{b['low']:.1f}"
            series.points.append(Point(label, b["observed"], n=b["n"]))
    ideal = Series("perfect calibration", "s3")
    ideal.points = [Point(p.x, float(p.x) + 0.05) for p in series.points]
    return line_chart(title, [series, ideal], y_label="observed")


def version_charts(version: dict[str, Any]) -> list[Markup]:
    periods = version["periods"]
    label = version["model_version"]
    accuracy = [
        Series("sensitivity", "s1", _proportion(periods, "sensitivity")),
        Series("specificity", "s2", _proportion(periods, "specificity")),
        Series("agreement", "s3", _proportion(periods, "agreement")),
    ]
    ranking = [
        Series("AUROC", "s1", _scalar(periods, "auroc", "value")),
        Series("ECE", "s2", _scalar(periods, "calibration", "ece")),
    ]
    shares = [
        Series("indeterminate", "s1", _proportion(periods, "indeterminate_share")),
        Series("out of distribution", "s2", _proportion(periods, "ood_share")),
    ]
    drift = [Series("PSI", "s1", _scalar(periods, "drift", "psi"))]
    psi_max = math.ceil(max([0.5] + [p.value or 0.0 for p in drift[0].points]) * 2) / 2
    return [
        line_chart(f"{label}: accuracy against clinicians' findings", accuracy),
        line_chart(f"{label}: AUROC and calibration error", ranking),
        line_chart(f"{label}: indeterminate and out-of-distribution shares", shares),
        line_chart(f"{label}: score drift (PSI; > 0.25 shifted)", drift, y_max=psi_max),
        reliability_chart(f"{label}: reliability (whole window)", version["totals"]["calibration"]),
    ]
