"""The geometry of the pages' small SVG charts: the per-model price ranges on a log scale and a listing's price
history."""

from __future__ import annotations

import math

from ..formats import short_time, short_usd, usd

# The price chart is drawn with HTML and CSS (positions in percent of the plot's width), so its text keeps its CSS
# size at any screen width, unlike SVG text, which shrinks with its viewBox.
# Ticks of the log price scale: 1 and 3 times each power of ten, evenly spaced on a log axis.
LOG_TICK_STEPS = (1, 3)


# A bar for a price of $0 starts at this price (the scale cannot reach 0).
LOWEST_PRICE = 1.0


# The most x-axis labels a history chart shows; every point keeps its marker and tooltip.
HISTORY_LABELS = 5


# Beyond this many points a history chart draws smaller markers, so that neighbours do not merge into a band.
DENSE_POINTS = 30


def price_chart(models: list) -> dict:
    """Geometry of a horizontal range chart: per model a bar from min to max price with a median mark.

    Models come most expensive (by median) first; the price axis is logarithmic, so a $300 model and a $40,000
    one are both readable. Positions are percentages of the plot's width, for the template to draw with CSS.
    Returns an empty ``rows`` list when there is nothing to draw.
    """
    if not models:
        return {"rows": [], "ticks": []}
    # The axis spans the finite prices; an infinite one (an adopted file can hold them) sits at an end of it
    finite = [p for m in models for p in (m["min_price"], m["max_price"]) if math.isfinite(p)] or [LOWEST_PRICE]
    low = max(LOWEST_PRICE, min(finite))
    high = max(low, max(finite))
    ticks = log_ticks(low, high)
    scale = LogScale(ticks[0], ticks[-1])
    rows = []
    # A median is NULL only where an adopted file's prices include both infinities: such a model comes last
    for m in sorted(models, key=lambda m: (m["median_price"] is None, -(m["median_price"] or 0), m["canonical_model"])):
        left, right = scale(m["min_price"]), scale(m["max_price"])
        count = m["row_count"]
        rows.append(
            {
                "model": m["canonical_model"],
                "rows_url": m.get("rows_url"),
                "left": left,
                "width": round(right - left, 2),
                "median": scale(m["median_price"]) if m["median_price"] is not None else None,
                "count": count,
                "count_label": f"{count:,} row" + ("" if count == 1 else "s"),
                "median_label": usd(m["median_price"], cents=False) if m["median_price"] is not None else "none",
                "title": (
                    f"{m['canonical_model']}: {count:,} row{'' if count == 1 else 's'}, min {usd(m['min_price'])}, "
                    f"median {usd(m['median_price']) if m['median_price'] is not None else 'none'}, "
                    f"max {usd(m['max_price'])}"
                ),
            }
        )
    return {"rows": rows, "ticks": [{"left": scale(t), "label": short_usd(t)} for t in ticks]}


class LogScale:
    """Position (percent, 0 to 100) of a price between ``low`` and ``high`` on a log axis; clamped at both ends."""

    def __init__(self, low: float, high: float):
        self.low, self.span = math.log10(low), math.log10(high) - math.log10(low)

    def __call__(self, value: float) -> float:
        if not self.span:
            return 50.0
        position = (math.log10(max(value, LOWEST_PRICE)) - self.low) / self.span
        return round(100 * min(1.0, max(0.0, position)), 2)


def log_ticks(low: float, high: float) -> list:
    """Prices 1 and 3 times a power of ten from the largest at or below ``low`` to the smallest at or above
    ``high``: 300, 1000, 3000, 10000, 30000, 100000 for prices from $300 to $40,000."""
    low, high = max(low, LOWEST_PRICE), max(high, LOWEST_PRICE)
    candidates = [step * 10**power for power in range(math.floor(math.log10(low)) - 1, 13) for step in LOG_TICK_STEPS]
    first = max(t for t in candidates if t <= low)
    last = min(t for t in candidates if t >= high)
    ticks = [t for t in candidates if first <= t <= last]
    return ticks if len(ticks) > 1 else [first, next(t for t in candidates if t > first)]


def history_chart(values: list, times: list, fmt) -> dict:
    """Geometry of a line chart of one listing's values across imports (oldest first), in percent of the plot.

    The value axis starts at 0 with round steps; at most ``HISTORY_LABELS`` times label the time axis
    (always the first and the last), each point keeps a tooltip with its exact time and value.
    """
    if not values:
        return {"points": [], "y_ticks": [], "x_labels": [], "polyline": "", "dense": False}
    ticks = nice_ticks(max(max(values), 0))
    top = ticks[-1] or 1
    count = len(values)

    def x(i):
        return 50.0 if count == 1 else round(100 * i / (count - 1), 2)

    points = [
        {"x": x(i), "y": round(100 - 100 * max(value, 0) / top, 2), "title": f"{short_time(t)}: {fmt(value)}"}
        for i, (value, t) in enumerate(zip(values, times))
    ]
    if count <= HISTORY_LABELS:
        labelled = list(range(count))
    else:
        labelled = sorted({round(i * (count - 1) / (HISTORY_LABELS - 1)) for i in range(HISTORY_LABELS)})
    inner = [i for i in labelled if 0 < i < count - 1]
    centre = min(inner, key=lambda i: abs(points[i]["x"] - 50)) if inner else None

    def place(i):  # which labels a narrow chart keeps: the ends, then the centre (see glyph.css)
        return "first" if i == 0 else "last" if i == count - 1 else "centre" if i == centre else "minor"

    return {
        "points": points,
        "dense": count > DENSE_POINTS,
        # The line is drawn in a 0..1000 x 0..1000 SVG box stretched over the plot, points in percent of it.
        "polyline": " ".join(f"{p['x'] * 10:g},{p['y'] * 10:g}" for p in points),
        # round values: "$5,000", not "$5,000.00"
        "y_ticks": [{"y": round(100 - 100 * t / top, 2), "label": fmt(t).removesuffix(".00")} for t in ticks],
        "x_labels": [{"x": points[i]["x"], "label": short_time(times[i]), "place": place(i)} for i in labelled],
    }


def nice_ticks(maximum: float, count: int = 5) -> list:
    """Round axis values from 0 up to at least ``maximum``, about ``count`` steps of 1, 2 or 5 x 10^n."""
    if maximum <= 0:
        return [0, 1]
    raw_step = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    steps = math.ceil(maximum / step - 1e-9)
    return [round(i * step, 10) for i in range(steps + 1)]
