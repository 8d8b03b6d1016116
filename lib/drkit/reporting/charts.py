"""Inline SVG charts (pure): time series against a limit line, and bars; no script, no external resource."""

from __future__ import annotations

import bisect
import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass

from drkit.policy.durations import human

W, H = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 36
OK, BAD, LIMIT, INK, GRID = "#1a73e8", "#c62828", "#c62828", "#3c4043", "#e8eaed"


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[dt.datetime, float]]
    color: str = OK
    dots: bool = False  # separate measurements (restores), not a continuous line


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def age_series(times: Sequence[dt.datetime], start: dt.datetime, end: dt.datetime,
               step: dt.timedelta) -> list[tuple[dt.datetime, float]]:
    """The age of the newest backup at each step (None-free: before the first backup the age grows from it)."""
    ordered = sorted(times)
    out = []
    t = start
    while t <= end:
        i = bisect.bisect_right(ordered, t)
        if i:
            out.append((t, (t - ordered[i - 1]).total_seconds()))
        t += step
    return out


def _nice(top: float) -> float:
    for m in (1, 2, 2.5, 5, 10):
        for e in range(-2, 12):
            v = float(m * 10 ** e)
            if v >= top:
                return v
    return top


def line_chart(title: str, series: Sequence[Series], start: dt.datetime, end: dt.datetime, *,
               limit: float | None = None, limit_label: str = "limit", fmt: str = "duration",
               chart_id: str = "") -> str:
    """Values over time, a dashed limit line, points over the limit in red."""
    e = html.escape
    f = human if fmt == "duration" else size
    values = [v for s in series for _, v in s.points] + ([limit] if limit else [])
    top = _nice(max(values, default=1.0) * 1.1 or 1.0)
    span = max((end - start).total_seconds(), 1.0)

    def x(t: dt.datetime) -> float:
        return LEFT + (W - LEFT - RIGHT) * (t - start).total_seconds() / span

    def y(v: float) -> float:
        return H - BOTTOM - (H - TOP - BOTTOM) * min(v, top) / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" class="chart"'
             f'{f" id={chr(34)}{e(chart_id)}{chr(34)}" if chart_id else ""} aria-label="{e(title)}">',
             f"<title>{e(title)}</title>",
             f'<text x="{LEFT}" y="16" font-size="13" font-weight="600" fill="{INK}">{e(title)}</text>']
    for i in range(5):
        v = top * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="{GRID}"/>'
                     f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" fill="{INK}">'
                     f"{e(f(v))}</text>")
    days = max(1, round(span / 86400 / 6))
    t = start.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    while t < end:
        parts.append(f'<text x="{x(t):.1f}" y="{H - BOTTOM + 14}" font-size="10" text-anchor="middle" '
                     f'fill="{INK}">{t:%b %d}</text>')
        t += dt.timedelta(days=days)
    if limit is not None:
        parts.append(f'<line class="limit" x1="{LEFT}" x2="{W - RIGHT}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
                     f'stroke="{LIMIT}" stroke-dasharray="6 4"/><text x="{W - RIGHT}" y="{y(limit) - 4:.1f}" '
                     f'font-size="10" text-anchor="end" fill="{LIMIT}">{e(limit_label)} {e(f(limit))}</text>')
    for s in series:
        pts = [(x(t), y(v), v) for t, v in s.points if start <= t <= end]
        if not s.dots and len(pts) > 1:
            # one path per run of points on the same side of the limit: over it is red
            runs: list[tuple[bool, list[tuple[float, float]]]] = []
            for px, py, v in pts:
                over = limit is not None and v > limit
                if runs and runs[-1][0] == over:
                    runs[-1][1].append((px, py))
                else:
                    joint = [runs[-1][1][-1]] if runs else []
                    runs.append((over, [*joint, (px, py)]))
            for over, run in runs:
                path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(run))
                parts.append(f'<path class="series{" over" if over else ""}" d="{path}" fill="none" '
                             f'stroke="{BAD if over else s.color}" stroke-width="{2 if over else 1.5}">'
                             f"<title>{e(s.label)}{' (over the limit)' if over else ''}</title></path>")
        for px, py, v in pts if s.dots or len(pts) == 1 else []:
            color = BAD if limit is not None and v > limit else s.color
            parts.append(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}">'
                         f"<title>{e(s.label)}: {e(f(v))}</title></circle>")
    if not any(s.points for s in series):
        parts.append(f'<text x="{W / 2}" y="{H / 2}" font-size="13" text-anchor="middle" fill="{INK}">'
                     "no data in this period</text>")
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, bars: Sequence[tuple[str, float, str]], *, fmt: str = "count", chart_id: str = "") -> str:
    """Horizontal bars: (label, value, color)."""
    e = html.escape
    row = 22
    height = TOP + row * max(len(bars), 1) + 8
    top = max((v for _, v, _ in bars), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" role="img" class="chart"'
             f'{f" id={chr(34)}{e(chart_id)}{chr(34)}" if chart_id else ""} aria-label="{e(title)}">',
             f"<title>{e(title)}</title>",
             f'<text x="8" y="16" font-size="13" font-weight="600" fill="{INK}">{e(title)}</text>']
    label_w = 220
    for i, (label, value, color) in enumerate(bars):
        y0 = TOP + i * row
        w = (W - label_w - 80) * value / top
        text = size(value) if fmt == "bytes" else f"{value:g}"
        parts.append(f'<text x="{label_w - 8}" y="{y0 + 14}" font-size="11" text-anchor="end" fill="{INK}">'
                     f'{e(label[:40])}</text><rect class="bar" x="{label_w}" y="{y0 + 3}" width="{w:.1f}" height="14" '
                     f'fill="{color}"><title>{e(label)}: {e(text)}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y0 + 14}" font-size="11" fill="{INK}">{e(text)}</text>')
    if not bars:
        parts.append(f'<text x="8" y="{TOP + 14}" font-size="12" fill="{INK}">nothing in this period</text>')
    parts.append("</svg>")
    return "".join(parts)
