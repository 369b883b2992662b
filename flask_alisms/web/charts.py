"""Server-rendered SVG charts for the monitoring page: no script, no external resources.

Each function returns :class:`~markupsafe.Markup`; every text and attribute value passes
through :func:`markupsafe.escape`. The charts scale with their ``viewBox`` (the stylesheet
sets their width to 100 %), use colours that stay apart for colour-blind readers (Okabe and
Ito's palette) and a pattern per series, so colour is never the only cue. Fills are SVG
presentation attributes, not ``style``: the panel's Content-Security-Policy forbids inline
styles. Numbers and dates are formatted for the page's locale with Babel.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton
from babel.numbers import (
    format_compact_decimal,
    format_decimal,
    format_percent,
    get_group_symbol,
)
from markupsafe import Markup, escape

from ..flows.monitoring import Day
from ..i18n import current_locale
from ..i18n import gettext as _

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 40
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
#: Series of the stacked bars, bottom to top: (key, colour). Okabe-Ito colours.
SERIES = (
    ("delivered", "#0072B2"),
    ("failed", "#D55E00"),
    ("pending", "#8C8C8C"),
    ("errors", "#CC79A7"),
)
RATE_COLOUR = "#0072B2"


# -- formatting ------------------------------------------------------------------------------


class Formatter:
    """Numbers and dates in the page's locale, each distinct value formatted once: a 90-day
    page shows about a thousand of them, and Babel takes tens of microseconds for each."""

    def __init__(self, locale: str | None = None) -> None:
        try:
            self.locale = Locale.parse(locale or current_locale())
        except (UnknownLocaleError, ValueError):
            self.locale = Locale.parse("en")
        grouping = self.locale.decimal_formats[None].grouping
        self._group = get_group_symbol(self.locale) if grouping == (3, 3) else None
        self._memo: dict[tuple[Any, ...], str] = {}

    def number(self, value: int) -> str:
        """1,234 in the page's locale."""
        if self._group is not None:  # thousands, as most locales group them
            return f"{value:,}".replace(",", self._group)
        return self._once(("n", value), lambda: format_decimal(value, locale=self.locale))

    def compact(self, value: int) -> str:
        """A short number for an axis: 12K, 1.2万."""
        return format_compact_decimal(value, locale=self.locale, fraction_digits=1)

    def percent(self, value: float | None) -> str:
        """0.953 as 95.3 % in the page's locale; an en dash for no value."""
        if value is None:
            return "–"
        value = round(value, 3)
        return self._once(
            ("p", value), lambda: format_percent(value, "#,##0.#%", locale=self.locale)
        )

    def day(self, day: dt.date, with_year: bool = False) -> str:
        """Nov 30 / 11月30日, or with the year."""
        skeleton = "yMMMd" if with_year else "MMMd"
        return self._once(
            (skeleton, day), lambda: format_skeleton(skeleton, day, locale=self.locale)
        )

    def _once(self, key: tuple[Any, ...], make: Callable[[], str]) -> str:
        text = self._memo.get(key)
        if text is None:
            text = self._memo[key] = make()
        return text


def series_labels() -> dict[str, str]:
    return {
        "delivered": _("Delivered"),
        "failed": _("Not delivered"),
        "pending": _("No receipt yet"),
        "errors": _("Send errors"),
    }


# -- building blocks -------------------------------------------------------------------------

_NAME = re.compile(r"[a-z][a-zA-Z0-9-]*\Z")
_names: dict[str, str] = {}


def _name(name: str) -> str:
    """``class_`` is ``class``; other underscores become hyphens (``data_day``: ``data-day``)."""
    xml = _names.get(name)
    if xml is None:
        xml = name.rstrip("_").replace("_", "-")
        if not _NAME.match(xml):
            raise ValueError(f"not an XML name: {name!r}")
        _names[name] = xml
    return xml


def el(tag: str, *children: Any, **attrs: Any) -> Markup:
    """``<tag attrs>children</tag>``: text is escaped, Markup kept, numbers written as they
    are; an attribute whose value is None is left out."""
    tag = _name(tag)
    attributes = "".join(
        f' {_name(name)}="{_value(value)}"' for name, value in attrs.items() if value is not None
    )
    inner = "".join(child if isinstance(child, Markup) else escape(child) for child in children)
    # The names were checked by _name(); every value and child went through _value or escape.
    return Markup(f"<{tag}{attributes}>{inner}</{tag}>")  # noqa: S704


def _value(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}"
    return escape(value)


def _text(
    x: float, y: float, label: str, anchor: str = "middle", cls: str = "chart-tick"
) -> Markup:
    return el("text", label, x=x, y=y, text_anchor=anchor, class_=cls, fill="currentColor")


def _rect(x: float, y: float, width: float, height: float, fill: str, cls: str) -> Markup:
    """A bar, written directly: a 90-day chart has hundreds. ``fill`` and ``cls`` are names."""
    if not (_NAME.match(fill) and _NAME.match(cls)):
        raise ValueError(f"not XML names: {fill!r}, {cls!r}")
    return Markup(  # noqa: S704 - numbers and checked names only
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
        f'fill="url(#{fill})" class="{cls}"></rect>'
    )


def _day_group(
    day: dt.date, sent: int, values: dict[str, int], summary: str, shapes: list[Markup]
) -> Markup:
    """One day of the bar chart, written directly like _rect (what ``el`` would write)."""
    data = "".join(f' data-{key}="{int(value)}"' for key, value in values.items())
    return Markup(  # noqa: S704 - the series' own keys, whole numbers, a date, escaped text
        f'<g class="chart-day"{data} data-day="{day.isoformat()}" data-sent="{int(sent)}">'
        f"<title>{escape(summary)}</title>{''.join(shapes)}</g>"
    )


def _point(x: float, y: float, day: dt.date, rate: float, label: str) -> Markup:
    """One day of the rate line, written directly like _rect (what ``el`` would write)."""
    return Markup(  # noqa: S704 - numbers, an ISO date and escaped text
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{RATE_COLOUR}" stroke="#ffffff" '
        f'stroke-width="1" data-day="{day.isoformat()}" data-rate="{rate:.4f}">'
        f"<title>{escape(label)}</title></circle>"
    )


def _patterns(prefix: str) -> Markup:
    """A fill per series: plain, stripes, dots, cross-hatching."""
    white = {"fill": "#ffffff", "fill_opacity": 0.6}
    marks = {
        "delivered": "",
        "failed": el("rect", width=2, height=6, **white),
        "pending": el("circle", cx=3, cy=3, r=1.3, **white),
        "errors": el("rect", width=1.5, height=6, **white)
        + el("rect", width=6, height=1.5, **white),
    }
    patterns = (
        el(
            "pattern",
            el("rect", width=6, height=6, fill=colour),
            marks[key],
            id=f"{prefix}-{key}",
            width=6,
            height=6,
            patternUnits="userSpaceOnUse",
            patternTransform=None if key == "pending" else "rotate(45)",
        )
        for key, colour in SERIES
    )
    return el("defs", *patterns)


def _svg(chart_id: str, title: str, desc: str, *body: Any) -> Markup:
    return el(
        "svg",
        el("title", title, id=f"{chart_id}-title"),
        el("desc", desc, id=f"{chart_id}-desc"),
        *body,
        xmlns="http://www.w3.org/2000/svg",
        viewBox=f"0 0 {WIDTH} {HEIGHT}",
        class_="chart",
        id=chart_id,
        role="img",
        aria_labelledby=f"{chart_id}-title {chart_id}-desc",
        font_family="system-ui, sans-serif",
    )


def _nice_max(value: int) -> int:
    """The axis top: four equal whole steps (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of
    ten) that reach ``value``; at least 4."""
    power = 10 ** math.floor(math.log10(max(value, 4) / 4))
    steps = (s * power for s in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10))
    return 4 * int(next(s for s in steps if s == int(s) and 4 * s >= value))


def _y_axis(ticks: Iterable[tuple[float, str]]) -> Markup:
    """Grid lines and labels; ``ticks`` are (fraction of the height, label)."""
    parts = []
    for fraction, label in ticks:
        y = TOP + PLOT_H * (1 - fraction)
        grid = el(
            "line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, stroke="currentColor", stroke_opacity=0.2
        )
        parts.append(grid + _text(LEFT - 6, y + 4, label, anchor="end"))
    return el("g", *parts, class_="chart-y-axis")


def _x_axis(days: Sequence[Day], fmt: Formatter) -> Markup:
    """A date under every few bars; on a phone the stylesheet hides every other one."""
    n = len(days)
    slot, step, bottom = PLOT_W / n, max(1, math.ceil(n / 8)), TOP + PLOT_H
    parts = [el("line", x1=LEFT, x2=WIDTH - RIGHT, y1=bottom, y2=bottom, stroke="currentColor")]
    for count, index in enumerate(range(n - 1, -1, -step)):  # always label the last day
        cls = "chart-tick chart-minor" if count % 2 else "chart-tick"
        x, anchor = LEFT + slot * (index + 0.5), "middle"
        if count == 0 and slot < 60:  # the last date ends at the edge, not beyond it
            x, anchor = WIDTH - RIGHT, "end"
        parts.append(_text(x, bottom + 22, fmt.day(days[index].day), anchor=anchor, cls=cls))
    return el("g", *parts, class_="chart-x-axis")


def _span(days: Sequence[Day], fmt: Formatter) -> dict[str, str]:
    return {"first": fmt.day(days[0].day, True), "last": fmt.day(days[-1].day, True)}


# -- the charts ------------------------------------------------------------------------------


def stacked_bars(days: Sequence[Day], fmt: Formatter, chart_id: str = "chart-messages") -> Markup:
    """Messages per day: delivered, not delivered, no receipt yet, and send errors on top."""
    labels = series_labels()
    template = _("%(day)s: %(sent)s sent; %(figures)s")  # translated once, filled per day
    top = _nice_max(max((d.figures.sent + d.figures.errors for d in days), default=0))
    slot = PLOT_W / len(days)
    bar = max(1.0, slot * 0.72)
    groups = []
    for index, day in enumerate(days):
        f = day.figures
        values = dict(zip(labels, (f.delivered, f.failed, f.pending, f.errors)))
        x, y = LEFT + slot * index + (slot - bar) / 2, float(TOP + PLOT_H)
        shapes = []
        for key, height in ((k, PLOT_H * v / top) for k, v in values.items()):
            if height > 0:
                y -= height
                shapes.append(_rect(x, y, bar, height, f"{chart_id}-{key}", f"bar-{key}"))
        if len(days) <= 7 and f.sent + f.errors:
            shapes.append(_text(x + bar / 2, y - 5, fmt.compact(f.sent + f.errors)))
        summary = template % {
            "day": fmt.day(day.day, True),
            "sent": fmt.number(f.sent),
            "figures": ", ".join(f"{labels[k]} {fmt.number(v)}" for k, v in values.items()),
        }
        groups.append(_day_group(day.day, f.sent, values, summary, shapes))
    ticks = [(i / 4, fmt.compact(top * i // 4)) for i in range(5)]
    desc = _(
        "Messages per day from %(first)s to %(last)s, stacked from the bottom: delivered, not "
        "delivered, no receipt yet (together what Aliyun accepted), then send errors. "
        "%(sent)s sent in all. The table below the chart gives every number.",
        sent=fmt.number(sum(d.figures.sent for d in days)),
        **_span(days, fmt),
    )
    body = (_patterns(chart_id), _y_axis(ticks), _x_axis(days, fmt), el("g", *groups))
    return _svg(chart_id, _("Messages per day"), desc, *body)


_LINE = {"fill": "none", "stroke": RATE_COLOUR, "stroke_width": 2.5, "stroke_linejoin": "round"}


def rate_line(days: Sequence[Day], fmt: Formatter, chart_id: str = "chart-rate") -> Markup:
    """The delivery rate per day (0-100 %); days without sends leave a gap in the line."""
    slot = PLOT_W / len(days)
    template = _("%(day)s: %(rate)s delivered")  # translated once, filled per day
    segments: list[list[str]] = [[]]
    points = []
    for index, day in enumerate(days):
        rate = day.figures.rate
        if rate is None:
            segments.append([])
            continue
        x, y = LEFT + slot * (index + 0.5), TOP + PLOT_H * (1 - rate)
        segments[-1].append(f"{_value(x)},{_value(y)}")
        label = template % {"day": fmt.day(day.day, True), "rate": fmt.percent(rate)}
        points.append(_point(x, y, day.day, rate, label))
    lines = [el("polyline", points=" ".join(s), **_LINE) for s in segments if len(s) > 1]
    if not points:
        note = _("Nothing was sent.")
        points.append(_text(LEFT + PLOT_W / 2, TOP + PLOT_H / 2, note, cls="chart-note"))
    desc = _(
        "The share of accepted messages that were delivered, per day from %(first)s to "
        "%(last)s, from 0 to 100 percent. Days when nothing was sent have no point. The table "
        "below the chart gives every number.",
        **_span(days, fmt),
    )
    ticks = [(i / 4, fmt.percent(i / 4)) for i in range(5)]
    body = (_y_axis(ticks), _x_axis(days, fmt), el("g", *lines, *points))
    return _svg(chart_id, _("Delivery rate per day"), desc, *body)


def legend() -> Markup:
    """The bar chart's key as an HTML list: a swatch with the series' pattern, and its name."""
    labels = series_labels()
    items = (
        el(
            "li",
            el("span", class_=f"chart-swatch chart-swatch-{key}", aria_hidden="true"),
            labels[key],
        )
        for key, _colour in SERIES
    )
    return el("ul", *items, class_="chart-legend", aria_label=_("Legend"))
