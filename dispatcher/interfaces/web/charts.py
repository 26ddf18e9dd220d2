"""The console's chart of a campaign over time: an inline SVG drawn on the server from
``insight.timeline`` (no chart library, no script), with its figures as a table."""

from __future__ import annotations

import functools
from collections.abc import Callable

from markupsafe import Markup

from dispatcher.operations import insight

WIDTH, HEIGHT, PAD = 720, 240, 40
#: The status curves, on the right scale (people); the send rate is on the left one.
CURVES = ("sent", "delivered", "read", "failed")


def chart(timeline: insight.Timeline) -> Markup | None:
    """An inline SVG of the send rate (left scale, messages a second) and the status
    counts over time (right scale, people), with the same figures as a table for
    screen readers; None before two intervals exist."""
    points = timeline.points
    if len(points) < 2 or timeline.start is None:
        return None
    start = points[0].start
    span = max((points[-1].start - start).total_seconds(), 1.0)
    top_rate = max(max(p.send_rate for p in points), 1.0)
    top_count = max(max(getattr(p, k) for p in points for k in CURVES), 1)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(point: insight.TimelinePoint) -> float:
        return PAD + inner_w * (point.start - start).total_seconds() / span

    def y(value: float, top: float) -> float:
        return PAD + inner_h * (1 - value / top)

    def line(key: str, value: Callable[[insight.TimelinePoint], float], top: float) -> str:
        shown = " ".join(f"{x(p):.1f},{y(value(p), top):.1f}" for p in points)
        return f'<polyline class="line-{key}" points="{shown}"/>'

    lines = [line("rate", lambda p: p.send_rate, top_rate)]
    lines += [line(k, functools.partial(_count, k), float(top_count)) for k in CURVES]
    bottom = HEIGHT - PAD
    axes = (
        f'<line class="axis" x1="{PAD}" y1="{bottom}" x2="{WIDTH - PAD}" y2="{bottom}"/>'
        f'<line class="axis" x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{bottom}"/>'
        f'<line class="axis" x1="{WIDTH - PAD}" y1="{PAD}" x2="{WIDTH - PAD}" y2="{bottom}"/>'
        f'<text x="{PAD}" y="{bottom + 16}">{start:%H:%M:%S}</text>'
        f'<text x="{WIDTH - PAD}" y="{bottom + 16}" text-anchor="end">'
        f"{points[-1].start:%H:%M:%S} UTC</text>"
        f'<text x="{PAD}" y="{PAD - 10}" text-anchor="middle">{top_rate:.0f}/s</text>'
        f'<text x="{WIDTH - PAD}" y="{PAD - 10}" text-anchor="middle">{top_count:,}</text>'
        f'<text x="{PAD}" y="{bottom + 4}" text-anchor="end" dx="-4">0</text>'
    )
    legend = '<li><i class="line-rate" aria-hidden="true"></i>send rate (messages/s, left)</li>'
    legend += "".join(
        f'<li><i class="{k}" aria-hidden="true"></i>{k} (people, right)</li>' for k in CURVES
    )
    head = "".join(f"<th scope=col class=num>{k}</th>" for k in CURVES)
    body = "".join(
        f"<tr><td>{p.start:%H:%M:%S}</td><td class=num>{p.send_rate:.1f}</td>"
        + "".join(f"<td class=num>{_count(k, p):,}</td>" for k in CURVES)
        + "</tr>"
        for p in points
    )
    # Only numbers and times go into this markup: nothing of the user's.
    return Markup(
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title">'
        '<title id="chart-title">Send rate and status counts over time</title>'
        f"{axes}{''.join(lines)}</svg>"
        f'<ul class="legend">{legend}</ul>'
        "<details><summary>The figures as a table</summary><table>"
        "<thead><tr><th scope=col>From (UTC)</th><th scope=col class=num>messages/s</th>"
        f"{head}</tr></thead><tbody>{body}</tbody></table></details>"
    )


def _count(key: str, point: insight.TimelinePoint) -> int:
    return int(getattr(point, key))
