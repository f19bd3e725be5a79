"""The funnel report: one self-contained HTML page of the published funnel marts.

The docs step writes it beside the dbt docs (`report/index.html`, chain/docs.py), so it is
published in the same rename and `greenery docs` serves it at /report. Where it is read there
may be no internet: the charts are inline SVG, the style inline CSS, and nothing is fetched.
Every value from the warehouse goes through `html.escape` on its way into the page.
"""

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import pandas as pd

# Where the docs step writes the report inside the published site.
REPORT_DIR = "report"
REPORT_PAGE = f"{REPORT_DIR}/index.html"

# Each section's query. dim_users holds names and contact details (PII): only the user id and
# the session count are ever read from it.
QUERIES = {
    "steps": """
        select step_number, funnel_step, sessions,
               conversion_from_previous, drop_off_from_previous, conversion_from_start
        from marts.fct_funnel order by step_number""",
    "products": """
        select product_name, sessions_viewed, sessions_added_to_cart, sessions_purchased,
               view_to_cart_rate, cart_to_purchase_rate, view_to_purchase_rate,
               sessions_abandoned_cart, abandoned_cart_value
        from marts.fct_product_funnel order by abandoned_cart_value desc, product_name""",
    "daily": """
        select session_date, step_number, funnel_step, sessions,
               conversion_from_previous, conversion_from_previous_7d, conversion_from_start,
               expected_conversion_low, expected_conversion_high,
               is_conversion_anomaly, is_complete_day
        from marts.fct_funnel_daily order by session_date, step_number""",
    "time_to_convert": """
        select from_step, to_step, conversions, avg_seconds, median_seconds, p90_seconds
        from marts.fct_funnel_time_to_convert""",
    "high_volume_users": """
        select user_id, sessions
        from marts.dim_users where is_high_volume_user order by sessions desc, user_id""",
}

# Days in the daily table and anomalies listed under the charts, newest first; the charts show every day.
RECENT_DAYS = 14
MAX_ANOMALIES_LISTED = 20

GREEN, DARK_GREEN, GREY, RED = "#43a047", "#1b5e20", "#9e9e9e", "#d32f2f"


def read_report(query: Callable[[str], pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every section's frame, read with `query` (a warehouse's read_sql)."""
    return {section: query(sql) for section, sql in QUERIES.items()}


def render(
    frames: Mapping[str, pd.DataFrame], published: tuple[str, datetime] | None, now: datetime | None = None
) -> str:
    """The report page; `published` is the warehouse's last_publish(): the run that built the marts."""
    now = now or datetime.now(UTC)
    steps = frames["steps"].sort_values("step_number")
    sections = [
        _section("Step funnel", "marts.fct_funnel", _funnel(steps)),
        _section("Where carts are abandoned, by product", "marts.fct_product_funnel", _products(frames["products"])),
        _section("Daily conversion", "marts.fct_funnel_daily", _daily(frames["daily"])),
        _section("Time to convert", "marts.fct_funnel_time_to_convert",
                 _time_to_convert(frames["time_to_convert"], list(steps["funnel_step"]))),
        _section("High-volume users", "marts.dim_users", _high_volume_users(frames["high_volume_users"])),
    ]
    return _PAGE.format(
        style=_STYLE,
        built=_esc(_built_by(published)),
        written=_esc(f"Report written {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC."),
        summary=_summary(steps, frames["daily"]),
        sections="\n".join(sections),
    )


def _built_by(published: tuple[str, datetime] | None) -> str:
    if published is None:
        return "No production run has published these marts (ops.publish_log is empty)."
    run_id, built_at = published
    return f"Built by run {run_id[:8]} at {built_at:%Y-%m-%d %H:%M} UTC, from the published marts."


def _summary(steps: pd.DataFrame, daily: pd.DataFrame) -> str:
    """The headline: how many sessions started, how many reached the last step, over which days."""
    if steps.empty:
        return ""
    first, last = steps.iloc[0], steps.iloc[-1]
    figures = [
        (_count(first["sessions"]), f"sessions reached {first['funnel_step']}"),
        (_count(last["sessions"]), f"reached {last['funnel_step']}"),
        (_percent(last["conversion_from_start"]), "converted end to end"),
    ]
    if not daily.empty:
        days = pd.to_datetime(daily["session_date"])
        figures.append((f"{days.dt.normalize().nunique():,}", f"days, {days.min():%Y-%m-%d} to {days.max():%Y-%m-%d}"))
    cards = "".join(f'<div class="kpi"><b>{_esc(value)}</b><span>{_esc(label)}</span></div>' for value, label in figures)
    return f'<div class="kpis">{cards}</div>'


def _funnel(steps: pd.DataFrame) -> str:
    if steps.empty:
        return _empty("marts.fct_funnel")
    rows = [
        [row["funnel_step"], _count(row["sessions"]), _percent(row["conversion_from_start"]),
         _percent(row["conversion_from_previous"]), _percent(row["drop_off_from_previous"])]
        for _, row in steps.iterrows()
    ]
    table = _table(
        [("Step", "text"), ("Sessions", "num"), ("% of first step", "num"),
         ("% of previous step", "num"), ("Drop-off from previous", "num")],
        rows,
    )
    return _funnel_svg(steps) + table


def _funnel_svg(steps: pd.DataFrame) -> str:
    """Horizontal bars, one per step, as long as its sessions; between two bars, what carried on."""
    label_width, bar_width, bar_height, gap = 120, 460, 30, 26
    top = max(int(steps["sessions"].max()), 1)
    height = len(steps) * bar_height + (len(steps) - 1) * gap
    parts = []
    for i, (_, row) in enumerate(steps.iterrows()):
        y = i * (bar_height + gap)
        width = max(int(row["sessions"]) / top * bar_width, 1)
        shade = DARK_GREEN if i == len(steps) - 1 else GREEN
        parts += [
            f'<text x="{label_width - 10}" y="{y + 20}" text-anchor="end" class="label">{_esc(row["funnel_step"])}</text>',
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar_height}" fill="{shade}" rx="2">'
            f'<title>{_esc(row["funnel_step"])}: {_count(row["sessions"])} sessions</title></rect>',
            f'<text x="{label_width + width + 8:.1f}" y="{y + 20}" class="value">{_count(row["sessions"])} sessions'
            f' · {_esc(_percent(row["conversion_from_start"]))} of first step</text>',
        ]
        if i > 0:
            parts.append(
                f'<text x="{label_width + 4}" y="{y - 9}" class="note">↓ {_esc(_percent(row["conversion_from_previous"]))}'
                f' of the step before carried on, {_esc(_percent(row["drop_off_from_previous"]))} dropped off</text>'
            )
    return _svg(label_width + bar_width + 250, height, parts, "Sessions per funnel step")


def _products(products: pd.DataFrame) -> str:
    if products.empty:
        return _empty("marts.fct_product_funnel")
    # The point of the table is which products lose the most: sort here too, not only in SQL.
    products = products.sort_values(["abandoned_cart_value", "product_name"], ascending=[False, True])
    rows = [
        [row["product_name"], _money(row["abandoned_cart_value"]), _count(row["sessions_abandoned_cart"]),
         _count(row["sessions_viewed"]), _count(row["sessions_added_to_cart"]), _count(row["sessions_purchased"]),
         _percent(row["view_to_cart_rate"]), _percent(row["cart_to_purchase_rate"]),
         _percent(row["view_to_purchase_rate"])]
        for _, row in products.iterrows()
    ]
    caption = ("Sessions that viewed each product, then added it to the cart, then bought it. An abandoned cart is "
               "a session that added the product and did not buy it, worth one unit at the product's price.")
    return _caption(caption) + _table(
        [("Product", "text"), ("Abandoned value", "num"), ("Abandoned carts", "num"), ("Viewed", "num"),
         ("Added to cart", "num"), ("Purchased", "num"), ("View → cart", "num"), ("Cart → purchase", "num"),
         ("View → purchase", "num")],
        rows,
    )


def _daily(daily: pd.DataFrame) -> str:
    if daily.empty:
        return _empty("marts.fct_funnel_daily")
    daily = daily.assign(session_date=pd.to_datetime(daily["session_date"])).sort_values(["session_date", "step_number"])
    daily["is_conversion_anomaly"] = daily["is_conversion_anomaly"].map(_flag)
    daily["is_complete_day"] = daily["is_complete_day"].map(_flag)
    steps = daily.drop_duplicates("step_number").sort_values("step_number")
    names = dict(zip(steps["step_number"], steps["funnel_step"]))
    panels = []
    # Step 1 has no step before it: each later step's conversion from the one before.
    for number, name in list(names.items())[1:]:
        series = daily[daily["step_number"] == number]
        title = f"{name}: % of {names.get(number - 1, 'the step before')} sessions, per day"
        panels.append(f"<h3>{_esc(title)}</h3>" + _trend_svg(series, title))
    anomalies = daily[daily["is_conversion_anomaly"]].sort_values(["session_date", "step_number"], ascending=[False, True])
    return (
        _caption("Each day's conversion from the step before, with its expected range (from the days before it) "
                 "shaded where there is enough history. Red points are anomalies: outside the expected range.")
        + _LEGEND + "".join(panels) + _recent_days(daily, names) + _anomalies(anomalies, daily)
    )


def _recent_days(daily: pd.DataFrame, names: Mapping[int, str]) -> str:
    """The newest days as numbers: each step's sessions and its share of the step before."""
    days = sorted(daily.groupby("session_date"), key=lambda day: day[0], reverse=True)[:RECENT_DAYS]
    rows = []
    for day, steps in days:
        steps = steps.sort_values("step_number")
        row = [f"{day:%Y-%m-%d}" + ("" if steps["is_complete_day"].all() else " (incomplete)")]
        for _, step in steps.iterrows():
            rate = step["conversion_from_previous"]
            shown = _count(step["sessions"]) + ("" if pd.isna(rate) else f" ({_percent(rate)})")
            row.append((shown, "anomaly") if step["is_conversion_anomaly"] else shown)
        row.append(_percent(steps["conversion_from_start"].iloc[-1]))
        rows.append(row)
    first, *later = names.values()
    columns = [("Day", "text"), (f"{first} sessions", "num"), *((f"{name} (% of previous)", "num") for name in later),
               ("End to end", "num")]
    return f"<h3>{_esc(f'The last {len(days)} days')}</h3>" + _table(columns, rows)


def _trend_svg(series: pd.DataFrame, title: str) -> str:
    """One step's conversion per day: the line, its 7-day average, the expected band, the anomalies."""
    width, height, left, right, top, bottom = 860, 170, 48, 16, 10, 26
    plot_width, plot_height = width - left - right, height - top - bottom
    columns = ["conversion_from_previous", "conversion_from_previous_7d", "expected_conversion_low", "expected_conversion_high"]
    values = series[columns].astype(float).to_numpy().ravel()
    values = values[~pd.isna(values)]
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    # The scale in whole ticks, so the gridlines fall on round percentages.
    tick = 0.1 if high - low <= 0.4 else 0.2
    low = max(0.0, math.floor(round(low / tick, 6)) * tick)
    high = min(1.0, math.ceil(round(high / tick, 6)) * tick)
    if high <= low:
        low, high = max(0.0, high - tick), max(high, tick)
    first, last = series["session_date"].min(), series["session_date"].max()
    span = max((last - first).days, 1)

    def x(day) -> float:
        return left + (plot_width / 2 if last == first else (day - first).days / span * plot_width)

    def y(rate: float) -> float:
        return top + (high - min(max(rate, low), high)) / (high - low) * plot_height

    parts = []
    for step in range(round(low / tick), round(high / tick) + 1):
        rate = step * tick
        parts += [f'<line x1="{left}" x2="{width - right}" y1="{y(rate):.1f}" y2="{y(rate):.1f}" class="grid"/>',
                  f'<text x="{left - 6}" y="{y(rate) + 4:.1f}" text-anchor="end" class="axis">{rate:.0%}</text>']
    days = list(series["session_date"])
    for i in sorted({round(k * (len(days) - 1) / 6) for k in range(7)}) if len(days) > 1 else [0]:
        parts.append(f'<text x="{x(days[i]):.1f}" y="{height - 6}" text-anchor="middle" class="axis">{days[i]:%Y-%m-%d}</text>')
    band = series.dropna(subset=["expected_conversion_low", "expected_conversion_high"])
    for run in _runs(series, band.index):
        upper = [(x(d), y(v)) for d, v in zip(run["session_date"], run["expected_conversion_high"])]
        lower = [(x(d), y(v)) for d, v in zip(run["session_date"], run["expected_conversion_low"])][::-1]
        if len(run) == 1:  # one day of range: a short bar rather than an invisible polygon
            (ux, uy), (lx, ly) = upper[0], lower[0]
            upper, lower = [(ux - 4, uy), (ux + 4, uy)], [(lx + 4, ly), (lx - 4, ly)]
        parts.append(f'<polygon points="{_points(upper + lower)}" class="band"/>')
    for column, css in [("conversion_from_previous_7d", "average"), ("conversion_from_previous", "line")]:
        for run in _runs(series, series.dropna(subset=[column]).index):
            parts.append(f'<polyline points="{_points((x(d), y(v)) for d, v in zip(run["session_date"], run[column]))}" class="{css}"/>')
    for _, row in series.dropna(subset=["conversion_from_previous"]).iterrows():
        css = "anomaly" if row["is_conversion_anomaly"] else "point" if row["is_complete_day"] else "partial"
        expected = ("" if pd.isna(row["expected_conversion_low"]) else
                    f", expected {_percent(row['expected_conversion_low'])} to {_percent(row['expected_conversion_high'])}")
        note = {"anomaly": ", an anomaly", "partial": ", an incomplete day", "point": ""}[css]
        tip = f"{row['session_date']:%Y-%m-%d}: {_percent(row['conversion_from_previous'])}{expected}{note}"
        radius = 5 if css == "anomaly" else 3.5
        parts.append(f'<circle cx="{x(row["session_date"]):.1f}" cy="{y(row["conversion_from_previous"]):.1f}" '
                     f'r="{radius}" class="{css}"><title>{_esc(tip)}</title></circle>')
    return _svg(width, height, parts, title)


def _runs(series: pd.DataFrame, index: Iterable) -> list[pd.DataFrame]:
    """The rows of `series` at `index`, split where a row between them is missing: a line or a
    band is not drawn across a day that has no value."""
    kept = series.index.isin(list(index))
    runs, current = [], []
    for position, keep in enumerate(kept):
        if keep:
            current.append(position)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [series.iloc[run] for run in runs]


def _anomalies(anomalies: pd.DataFrame, daily: pd.DataFrame) -> str:
    if anomalies.empty and daily["expected_conversion_low"].isna().all():
        return _caption("No day has enough history yet for an expected range, so none is judged an anomaly.")
    if anomalies.empty:
        return _caption("No anomalies: every day with an expected range converted within it.")
    shown = anomalies.head(MAX_ANOMALIES_LISTED)
    rows = [
        [f"{row['session_date']:%Y-%m-%d}", row["funnel_step"], _count(row["sessions"]),
         _percent(row["conversion_from_previous"]),
         f"{_percent(row['expected_conversion_low'])} to {_percent(row['expected_conversion_high'])}"]
        for _, row in shown.iterrows()
    ]
    more = f", the newest {len(shown)} listed" if len(anomalies) > len(shown) else ""
    return f"<h3>{_esc(f'Anomalies ({len(anomalies):,}{more})')}</h3>" + _table(
        [("Day", "text"), ("Step", "text"), ("Sessions", "num"), ("% of previous step", "num"), ("Expected range", "num")],
        rows,
    )


def _time_to_convert(times: pd.DataFrame, step_order: Sequence[str]) -> str:
    if times.empty:
        return _empty("marts.fct_funnel_time_to_convert")
    position = {step: i for i, step in enumerate(step_order)}
    times = times.assign(
        _from=times["from_step"].map(lambda step: position.get(step, len(position))),
        _to=times["to_step"].map(lambda step: position.get(step, len(position))),
    ).sort_values(["_from", "_to", "from_step", "to_step"])
    rows = [
        [f"{row['from_step']} → {row['to_step']}", _count(row["conversions"]), _duration(row["median_seconds"]),
         _duration(row["avg_seconds"]), _duration(row["p90_seconds"])]
        for _, row in times.iterrows()
    ]
    return _caption("How long the sessions that got from one step to the other took.") + _table(
        [("From → to", "text"), ("Sessions", "num"), ("Median", "num"), ("Average", "num"), ("90th percentile", "num")],
        rows,
    )


def _high_volume_users(users: pd.DataFrame) -> str:
    caption = _caption("Users that dim_users flags as high-volume. Only the user id and session count are shown: "
                       "names, e-mails, phone numbers and addresses are personal data and stay out of this report.")
    if users.empty:
        return caption + "<p>No high-volume users.</p>"
    users = users.sort_values(["sessions", "user_id"], ascending=[False, True])
    rows = [[row["user_id"], _count(row["sessions"])] for _, row in users.iterrows()]
    return caption + _table([("User id", "text"), ("Sessions", "num")], rows)


def _section(title: str, source: str, body: str) -> str:
    return f'<section><h2>{_esc(title)}</h2><p class="source">from {_esc(source)}</p>{body}</section>'


def _table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence]) -> str:
    """`columns` are (title, "num" or "text"); numbers are right-aligned in tabular figures. A cell
    is its text, or (text, class) to stand out."""
    head = "".join(f'<th class="{kind}">{_esc(title)}</th>' for title, kind in columns)
    body = "".join(
        "<tr>" + "".join(_cell(cell, kind) for (_, kind), cell in zip(columns, row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(cell, kind: str) -> str:
    text, highlight = cell if isinstance(cell, tuple) else (cell, "")
    classes = f"{kind} {highlight}".strip()
    return f'<td class="{classes}">{_esc(text)}</td>'


def _svg(width: int, height: int, parts: list[str], title: str) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{_esc(title)}">{"".join(parts)}</svg>')


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _caption(text: str) -> str:
    return f'<p class="caption">{_esc(text)}</p>'


def _empty(source: str) -> str:
    return f"<p>No rows in {_esc(source)}.</p>"


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _flag(value) -> bool:
    return False if pd.isna(value) else bool(value)


def _count(value) -> str:
    return "" if pd.isna(value) else f"{int(value):,}"


def _percent(rate) -> str:
    return "" if pd.isna(rate) else f"{rate:.1%}"


def _money(value) -> str:
    return "" if pd.isna(value) else f"${value:,.2f}"


def _duration(seconds) -> str:
    if pd.isna(seconds):
        return ""
    seconds = round(float(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds / 86400:.1f} days"


_LEGEND = (
    '<p class="legend">'
    f'<svg width="22" height="10"><line x1="0" x2="22" y1="5" y2="5" stroke="{GREEN}" stroke-width="2"/></svg> conversion '
    f'<svg width="22" height="10"><line x1="0" x2="22" y1="5" y2="5" stroke="{GREY}" stroke-width="1.5" stroke-dasharray="4 3"/></svg> 7-day average '
    '<svg width="22" height="10"><rect width="22" height="10" fill="#c8e6c9"/></svg> expected range '
    f'<svg width="12" height="12"><circle cx="6" cy="6" r="5" fill="{RED}"/></svg> anomaly '
    f'<svg width="12" height="12"><circle cx="6" cy="6" r="4" fill="white" stroke="{GREEN}" stroke-width="1.5"/></svg> incomplete day'
    "</p>"
)

_STYLE = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #212121; margin: 0 auto; max-width: 980px; padding: 24px 32px 48px; line-height: 1.4; }}
h1 {{ font-size: 26px; margin: 0 0 4px; }}
h2 {{ font-size: 19px; margin: 36px 0 0; padding-top: 12px; border-top: 1px solid #e0e0e0; }}
h3 {{ font-size: 14px; margin: 18px 0 4px; color: #424242; }}
.meta, .source, .caption {{ color: #616161; font-size: 13px; margin: 2px 0 8px; }}
.source {{ font-family: ui-monospace, monospace; font-size: 12px; }}
.kpis {{ display: flex; gap: 12px; margin: 18px 0 0; flex-wrap: wrap; }}
.kpi {{ background: #f1f8e9; border-radius: 6px; padding: 10px 16px; min-width: 150px; }}
.kpi b {{ display: block; font-size: 24px; font-variant-numeric: tabular-nums; color: {DARK_GREEN}; }}
.kpi span {{ font-size: 12px; color: #616161; }}
table {{ border-collapse: collapse; margin: 12px 0; font-size: 13px; }}
th, td {{ padding: 5px 9px; border-bottom: 1px solid #eeeeee; }}
th {{ background: #fafafa; border-bottom: 2px solid #e0e0e0; font-weight: 600; vertical-align: bottom; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td {{ white-space: nowrap; }}
.text {{ text-align: left; }}
tbody tr:hover {{ background: #f9fbe7; }}
svg {{ display: block; max-width: 100%; height: auto; overflow: visible; }}
svg text {{ font-size: 12px; fill: #424242; }}
svg .label {{ font-size: 13px; font-weight: 600; }}
svg .value {{ font-variant-numeric: tabular-nums; }}
svg .note, svg .axis {{ fill: #757575; font-size: 11px; }}
svg .grid {{ stroke: #eeeeee; }}
svg .band {{ fill: #c8e6c9; }}
svg .line {{ fill: none; stroke: {GREEN}; stroke-width: 2; }}
svg .average {{ fill: none; stroke: {GREY}; stroke-width: 1.5; stroke-dasharray: 4 3; }}
svg .point {{ fill: {GREEN}; }}
svg .partial {{ fill: white; stroke: {GREEN}; stroke-width: 1.5; }}
svg .anomaly {{ fill: {RED}; }}
td.anomaly {{ color: {RED}; font-weight: 600; }}
.legend {{ font-size: 12px; color: #616161; }}
.legend svg {{ display: inline; vertical-align: middle; margin: 0 2px 0 10px; }}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Greenery funnel report</title>
<style>{style}</style>
</head>
<body>
<h1>Greenery funnel report</h1>
<p class="meta">{built} {written}</p>
{summary}
{sections}
</body>
</html>
"""
