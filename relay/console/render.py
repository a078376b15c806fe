"""Pure helpers of the console's pages: header redaction, payload display, ages, and the chart.

No I/O here. Everything returned is plain text or numbers: the templates escape it (Jinja2
autoescape), so a hostile payload or header is shown as text, never run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

REDACTED = "‹redacted›"
# Header names whose values are credentials, wherever they were recorded from.
SENSITIVE = re.compile(
    r"(authorization|signature|token|secret|password|passwd|cookie|api[-_]?key|session|credential|auth)", re.I
)


def redact(headers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Headers sorted by name, credential values replaced by a marker."""
    return [
        (name, REDACTED if SENSITIVE.search(name) else str(value)) for name, value in sorted(headers.items())
    ]


def pretty_body(body: bytes, total: int) -> tuple[str, bool]:
    """(text to show, is it JSON). JSON is indented; a cut body says how much was left out."""
    suffix = f"\n… {total - len(body)} more bytes not shown" if total > len(body) else ""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode() + suffix, True
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or nested too deep to write back
        return body.decode("utf-8", errors="replace") + suffix, False


def pretty_json(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:
        return repr(value)[:MAX_REPR]


MAX_REPR = 64 * 1024


def age(timestamp: float | str | None, now: float | None = None) -> str:
    """`12s`, `5m`, `3h`, `2d` since `timestamp` (a Unix time)."""
    try:
        seconds = max(0.0, (now if now is not None else time.time()) - float(timestamp or 0))
    except ValueError:
        return ""
    if not timestamp:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def clock(timestamp: float | str | None) -> str:
    try:
        value = float(timestamp or 0)
    except ValueError:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else ""


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG line chart's geometry, drawn by the `chart.html` template."""

    width: int
    height: int
    series: list[tuple[str, str, str, int]]  # (name, css class, polyline points, total)
    peak: int
    ticks: list[tuple[float, str]]  # (x, label)


def chart(buckets: list[tuple[int, dict[str, int]]], width: int = 600, height: int = 120) -> Chart:
    """Events received and actions delivered (and dead) per minute, oldest bucket on the left."""
    pad_left, pad_bottom, pad_top = 30, 16, 6
    n = max(1, len(buckets) - 1)
    names = (("received", "s-received"), ("delivered", "s-delivered"), ("dead", "s-dead"))
    peak = max([1] + [counts.get(name, 0) for _, counts in buckets for name, _ in names])
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top

    def x(i: int) -> float:
        return round(pad_left + plot_w * i / n, 1)

    def y(value: int) -> float:
        return round(pad_top + plot_h * (1 - value / peak), 1)

    series = []
    for name, css in names:
        points = " ".join(f"{x(i)},{y(counts.get(name, 0))}" for i, (_, counts) in enumerate(buckets))
        series.append((name, css, points, sum(counts.get(name, 0) for _, counts in buckets)))
    ticks = []
    for i in range(len(buckets)):
        ago = len(buckets) - 1 - i
        if ago % 15 == 0:
            ticks.append((x(i), "now" if ago == 0 else f"-{ago}m"))
    return Chart(width, height, series, peak, ticks)
