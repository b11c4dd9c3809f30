"""Inline SVG charts for the report, drawn by hand: no plotting library, no assets, no network.

Each function returns one ``<svg>`` element as a string. Values are escaped; sizes are in pixels.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

__all__ = ["SERIES_COLOURS", "RAMP", "ramp_colour", "heatmap", "reliability_chart", "grouped_bars"]

# Distinct from the heatmap's blues, so a screenshot tells the charts apart.
SERIES_COLOURS = ("#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                  "#7f7f7f")
# Sequential blues (ColorBrewer): share 0 -> the lightest, share 1 -> the darkest.
RAMP = ("#f7fbff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")
_FONT = 'font-family="sans-serif" font-size="11"'


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def ramp_colour(share: float) -> str:
    """The ramp's colour for a share in [0, 1], interpolated linearly between its stops."""
    share = min(max(share, 0.0), 1.0) * (len(RAMP) - 1)
    low = min(int(share), len(RAMP) - 2)
    t = share - low
    a, b = _hex(RAMP[low]), _hex(RAMP[low + 1])
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(title)}">' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {_FONT} {extra}>{escape(text)}</text>'


def heatmap(matrix: Sequence[Sequence[int]], rows: Sequence[str], columns: Sequence[str], title: str,
            cell: int = 30) -> str:
    """A confusion matrix: counts in the cells, coloured by their share of the row (the true class)."""
    left, top = 78, 40
    width, height = left + cell * len(columns) + 10, top + cell * len(rows) + 58
    body = [_text(width / 2, 14, title, extra='font-weight="bold"'),
            _text(left + cell * len(columns) / 2, 30, "predicted")]
    for i, row in enumerate(matrix):
        total = sum(row)
        y = top + i * cell
        body.append(_text(left - 6, y + cell / 2 + 4, rows[i], anchor="end"))
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            x = left + j * cell
            body.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{ramp_colour(share)}" '
                        f'stroke="#ffffff"><title>{escape(rows[i])} -> {escape(columns[j])}: {count}</title></rect>')
            if count:
                ink = "#ffffff" if share > 0.5 else "#222222"
                body.append(_text(x + cell / 2, y + cell / 2 + 4, str(count), extra=f'fill="{ink}"'))
    base = top + cell * len(rows)
    for j, column in enumerate(columns):
        x = left + j * cell + cell / 2
        body.append(_text(x, base + 10, column[:7], anchor="end", extra=f'transform="rotate(-45 {x:.1f} {base + 10})"'))
    middle = top + cell * len(rows) / 2
    body.append(_text(12, middle, "true", extra=f'transform="rotate(-90 12 {middle})"'))
    return _svg(width, height, body, title)


def _axes(left: int, top: int, plot_w: int, plot_h: int, y_label: str, x_label: str) -> list[str]:
    body = []
    for k in range(6):
        value = k / 5
        y = top + plot_h * (1 - value)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        body.append(_text(left - 6, y + 4, f"{value:.1f}", anchor="end"))
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444444"/>')
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444444"/>')
    body.append(_text(14, top + plot_h / 2, y_label, extra=f'transform="rotate(-90 14 {top + plot_h / 2})"'))
    body.append(_text(left + plot_w / 2, top + plot_h + 34, x_label))
    return body


def _legend(names: Sequence[str], colours: Sequence[str], x: float, y: float) -> list[str]:
    body = []
    for k, (name, colour) in enumerate(zip(names, colours)):
        row_y = y + 16 * k
        body.append(f'<rect x="{x:.1f}" y="{row_y:.1f}" width="10" height="10" fill="{colour}"/>')
        body.append(_text(x + 15, row_y + 9, name, anchor="start"))
    return body


def reliability_chart(series: Sequence[tuple[str, str, Sequence[tuple[float, float, int]]]], title: str,
                      width: int = 540, height: int = 380) -> str:
    """Binned confidence (x) against accuracy (y) per system; the diagonal is perfect calibration.

    series: (name, colour, [(mean confidence, accuracy, rows), ...]) over the non-empty bins; a
    marker's area grows with its bin's rows.
    """
    left, top, legend_w = 48, 28, 120
    plot_w, plot_h = width - left - legend_w - 14, height - top - 50
    body = [_text(width / 2, 16, title, extra='font-weight="bold"'),
            *_axes(left, top, plot_w, plot_h, "accuracy", "confidence")]
    for k in range(6):
        x = left + plot_w * k / 5
        body.append(_text(x, top + plot_h + 16, f"{k / 5:.1f}"))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top}" stroke="#999999" '
                'stroke-dasharray="5,4"/>')
    most = max((rows for _, _, points in series for _, _, rows in points), default=1) or 1
    for name, colour, points in reversed(series):  # the first series (the final label) drawn on top
        xy = [(left + plot_w * c, top + plot_h * (1 - a), rows) for c, a, rows in points]
        if len(xy) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in xy)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for (x, y, rows), (c, a, _) in zip(xy, points):
            radius = 3 + 5 * (rows / most) ** 0.5
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{colour}" fill-opacity="0.85">'
                        f'<title>{escape(name)}: confidence {c:.2f}, accuracy {a:.2f}, {rows} rows</title></circle>')
    names = [name for name, _, _ in series]
    body += _legend(names, [colour for _, colour, _ in series], left + plot_w + 16, top + 4)
    return _svg(width, height, body, title)


def grouped_bars(categories: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]], title: str,
                 y_label: str, width: int = 540, height: int = 340, notes: Sequence[str] | None = None) -> str:
    """Bars in [0, 1] per category, one per series, side by side; notes (e.g. row counts) go under
    the category names. A None value draws no bar."""
    left, top, legend_w = 48, 28, 120
    plot_w, plot_h = width - left - legend_w - 14, height - top - 64
    body = [_text(width / 2, 16, title, extra='font-weight="bold"'),
            *_axes(left, top, plot_w, plot_h, y_label, "")]
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    for c, category in enumerate(categories):
        x0 = left + c * group_w + group_w * 0.1
        for s, (name, colour, values) in enumerate(series):
            value = values[c]
            if value is None:
                continue
            bar_h = plot_h * min(max(value, 0.0), 1.0)
            x = x0 + s * bar_w
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                        f'height="{bar_h:.1f}" fill="{colour}"><title>{escape(name)} {escape(category)}: '
                        f'{value:.3f}</title></rect>')
        centre = left + c * group_w + group_w / 2
        body.append(_text(centre, top + plot_h + 15, category[:9]))
        if notes:
            body.append(_text(centre, top + plot_h + 29, notes[c], extra='fill="#666666"'))
    body += _legend([n for n, _, _ in series], [colour for _, colour, _ in series], left + plot_w + 16, top + 4)
    return _svg(width, height, body, title)
