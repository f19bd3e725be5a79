import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pandas as pd
import pytest

from greenery_orchestration import report
from greenery_orchestration.rawdata.schema import pii_columns

PUBLISHED = ("0123456789abcdef-run", datetime(2021, 2, 12, 3, 4, 5))
NOW = datetime(2021, 2, 12, 4, 0, tzinfo=UTC)


def _steps() -> pd.DataFrame:
    sessions = [578, 467, 361]
    return pd.DataFrame({
        "step_number": [1, 2, 3],
        "funnel_step": ["page_view", "add_to_cart", "checkout"],
        "sessions": sessions,
        "conversion_from_previous": [None, 467 / 578, 361 / 467],
        "drop_off_from_previous": [None, 1 - 467 / 578, 1 - 361 / 467],
        "conversion_from_start": [1.0, 467 / 578, 361 / 578],
    })


def _products() -> pd.DataFrame:
    # Unsorted on purpose: the report sorts by lost value.
    return pd.DataFrame({
        "product_name": ["Pothos", '<script>alert("x")</script> & Fern', "Monstera"],
        "sessions_viewed": [40, 50, 60],
        "sessions_added_to_cart": [20, 30, 25],
        "sessions_purchased": [15, 10, 25],
        "view_to_cart_rate": [20 / 40, 30 / 50, 25 / 60],
        "cart_to_purchase_rate": [15 / 20, 10 / 30, 25 / 25],
        "view_to_purchase_rate": [15 / 40, 10 / 50, 25 / 60],
        "sessions_abandoned_cart": [5, 20, 0],
        "abandoned_cart_value": [5 * 30.5, 20 * 61.75, 0.0],
    })


def _daily() -> pd.DataFrame:
    """Four days; add_to_cart converts 80% except on day 3 (50%, outside 70-90%); day 4 is not over."""
    days = [date(2021, 2, 9), date(2021, 2, 10), date(2021, 2, 11), date(2021, 2, 12)]
    page_views, carts, checkouts = [100, 120, 110, 30], [80, 96, 55, 24], [60, 72, 44, 18]
    rows = []
    for i, day in enumerate(days):
        history = i >= 2  # an expected range from the third day on
        for number, name, sessions, previous in [
            (1, "page_view", page_views[i], None),
            (2, "add_to_cart", carts[i], page_views[i]),
            (3, "checkout", checkouts[i], carts[i]),
        ]:
            rate = sessions / previous if previous else None
            rows.append({
                "session_date": day, "step_number": number, "funnel_step": name, "sessions": sessions,
                "conversion_from_previous": rate,
                "conversion_from_previous_7d": rate,
                "conversion_from_start": sessions / page_views[i],
                "expected_conversion_low": 0.7 if history and previous else None,
                "expected_conversion_high": 0.9 if history and previous else None,
                "is_conversion_anomaly": bool(history and previous and not 0.7 <= rate <= 0.9),
                "is_complete_day": i < 3,
            })
    return pd.DataFrame(rows)


def _times() -> pd.DataFrame:
    return pd.DataFrame({
        "from_step": ["add_to_cart", "page_view", "page_view"],
        "to_step": ["checkout", "checkout", "add_to_cart"],
        "conversions": [361, 361, 467],
        "avg_seconds": [3 * 3600 + 25 * 60, 90000.0, 45.4],
        "median_seconds": [272.0, 7200.0, 30.0],
        "p90_seconds": [None, 3 * 86400.0, 59.6],
    })


def _users() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["b-user", "a-user", '"><img src=x onerror=alert(1)>'], "sessions": [7, 9, 7]})


def _frames(**replaced) -> dict[str, pd.DataFrame]:
    frames = {"steps": _steps(), "products": _products(), "daily": _daily(), "time_to_convert": _times(),
              "high_volume_users": _users()}
    return {**frames, **replaced}


class _Tables(HTMLParser):
    """Each table of a page as rows of cell texts (entities decoded, as a browser shows them)."""

    def __init__(self, page: str):
        super().__init__()
        self.tables, self._cell = [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _table(page: str, *headers: str) -> list[dict[str, str]]:
    """The rows of the one table whose headers start with `headers`."""
    (table,) = [t for t in _Tables(page).tables if t[0][:len(headers)] == list(headers)]
    return [dict(zip(table[0], row)) for row in table[1:]]


def test_the_step_funnel_shows_each_steps_sessions_and_its_conversion_from_the_start_and_the_step_before():
    page = report.render(_frames(), PUBLISHED, NOW)

    rows = _table(page, "Step")
    assert [row["Step"] for row in rows] == ["page_view", "add_to_cart", "checkout"]
    assert [row["Sessions"] for row in rows] == ["578", "467", "361"]
    assert [row["% of first step"] for row in rows] == ["100.0%", "80.8%", "62.5%"]  # 467/578, 361/578
    assert [row["% of previous step"] for row in rows] == ["", "80.8%", "77.3%"]  # 361/467
    assert [row["Drop-off from previous"] for row in rows] == ["", "19.2%", "22.7%"]
    # The bars are as long as the sessions: the widest is the first step.
    funnel_svg = page.split('aria-label="Sessions per funnel step"')[1].split("</svg>")[0]
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="\d+" width="([\d.]+)"', funnel_svg)]
    assert widths == pytest.approx([460, 460 * 467 / 578, 460 * 361 / 578], abs=0.1)
    assert "467 sessions · 80.8% of first step" in funnel_svg
    assert "↓ 77.3% of the step before carried on, 22.7% dropped off" in funnel_svg
    # The headline, above the sections.
    assert "<b>62.5%</b><span>converted end to end</span>" in page
    assert "<b>4</b><span>days, 2021-02-09 to 2021-02-12</span>" in page


def test_the_products_are_sorted_by_the_value_their_abandoned_carts_lost():
    rows = _table(report.render(_frames(), PUBLISHED, NOW), "Product")

    assert [row["Product"] for row in rows] == ['<script>alert("x")</script> & Fern', "Pothos", "Monstera"]
    assert [row["Abandoned value"] for row in rows] == ["$1,235.00", "$152.50", "$0.00"]  # 20 × 61.75, 5 × 30.5
    assert [row["Abandoned carts"] for row in rows] == ["20", "5", "0"]
    assert rows[0]["View → cart"] == "60.0%" and rows[0]["Cart → purchase"] == "33.3%"  # 30/50, 10/30
    assert rows[2]["View → purchase"] == "41.7%"  # 25/60


def test_every_value_is_escaped():
    page = report.render(_frames(), ("<b>run</b>", datetime(2021, 2, 12)), NOW)

    assert "<script" not in page
    assert "<img" not in page
    assert "<b>run" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Fern" in page
    # Escaped, not dropped: the reader sees the value as it is.
    assert '"><img src=x onerror=alert(1)>' in [row["User id"] for row in _table(page, "User id")]


def test_the_page_fetches_nothing():
    users = pd.DataFrame({"user_id": ["a-user"], "sessions": [9]})
    page = report.render(_frames(high_volume_users=users), PUBLISHED, NOW)

    for outside in ["<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "http:", "https:"]:
        assert outside not in page, outside


def test_the_daily_trend_marks_the_anomalies_and_the_incomplete_day():
    page = report.render(_frames(), PUBLISHED, NOW)

    add_to_cart = page.split('aria-label="add_to_cart: % of page_view sessions, per day"')[1].split("</svg>")[0]
    anomalies = re.findall(r'<circle [^>]*class="anomaly"><title>([^<]*)</title>', add_to_cart)
    assert anomalies == ["2021-02-11: 50.0%, expected 70.0% to 90.0%, an anomaly"]  # 55 of 110
    assert re.findall(r'class="partial"><title>([^<]*)</title>', add_to_cart) == [
        "2021-02-12: 80.0%, expected 70.0% to 90.0%, an incomplete day"  # 24 of 30
    ]
    assert add_to_cart.count('class="point"') == 2
    assert add_to_cart.count('class="band"') == 1  # the third and fourth days have a range
    # checkout converts 72-80% of carts each day: within range, no anomaly.
    checkout = page.split('aria-label="checkout: % of add_to_cart sessions, per day"')[1].split("</svg>")[0]
    assert 'class="anomaly"' not in checkout
    assert 'aria-label="page_view' not in page  # the first step has no step before it

    assert _table(page, "Day", "Step") == [{
        "Day": "2021-02-11", "Step": "add_to_cart", "Sessions": "55",
        "% of previous step": "50.0%", "Expected range": "70.0% to 90.0%",
    }]


def test_the_daily_table_shows_the_newest_days_sessions_and_conversions():
    page = report.render(_frames(), PUBLISHED, NOW)

    rows = _table(page, "Day", "page_view sessions")
    assert [list(row.values()) for row in rows] == [
        ["2021-02-12 (incomplete)", "30", "24 (80.0%)", "18 (75.0%)", "60.0%"],  # 18 of 30 end to end
        ["2021-02-11", "110", "55 (50.0%)", "44 (80.0%)", "40.0%"],
        ["2021-02-10", "120", "96 (80.0%)", "72 (75.0%)", "60.0%"],
        ["2021-02-09", "100", "80 (80.0%)", "60 (75.0%)", "60.0%"],
    ]
    assert list(rows[0]) == ["Day", "page_view sessions", "add_to_cart (% of previous)",
                             "checkout (% of previous)", "End to end"]
    assert page.count('class="num anomaly"') == 1
    assert '<td class="num anomaly">55 (50.0%)</td>' in page


def test_without_history_no_day_is_called_normal():
    daily = _daily().assign(expected_conversion_low=None, expected_conversion_high=None, is_conversion_anomaly=False)

    page = report.render(_frames(daily=daily), PUBLISHED, NOW)

    assert "No day has enough history yet for an expected range" in page
    assert 'class="band"' not in page


def test_time_to_convert_is_in_funnel_order_with_readable_durations():
    rows = _table(report.render(_frames(), PUBLISHED, NOW), "From → to")

    assert rows == [
        {"From → to": "page_view → add_to_cart", "Sessions": "467", "Median": "30 s", "Average": "45 s",
         "90th percentile": "1 min 00 s"},
        {"From → to": "page_view → checkout", "Sessions": "361", "Median": "2 h 00 min", "Average": "1.0 days",
         "90th percentile": "3.0 days"},
        {"From → to": "add_to_cart → checkout", "Sessions": "361", "Median": "4 min 32 s", "Average": "3 h 25 min",
         "90th percentile": ""},
    ]


def test_the_high_volume_users_show_their_id_and_sessions_and_nothing_personal():
    users = _users().assign(email="someone@example.com", first_name="Ada", phone_number="555-0100")
    page = report.render(_frames(high_volume_users=users), PUBLISHED, NOW)

    rows = _table(page, "User id")
    assert [list(row) for row in rows] == [["User id", "Sessions"]] * 3
    assert [(row["User id"], row["Sessions"]) for row in rows] == [
        ("a-user", "9"), ('"><img src=x onerror=alert(1)>', "7"), ("b-user", "7")
    ]
    for value in ["someone@example.com", "Ada", "555-0100"]:
        assert value not in page


def test_no_query_reads_a_personal_data_column():
    asked = []
    report.read_report(lambda sql: asked.append(sql) or pd.DataFrame())

    assert len(asked) == len(report.QUERIES)
    personal = set().union(*pii_columns().values())
    assert {"first_name", "last_name", "email", "phone_number", "address"} <= personal
    for sql in asked:
        assert not personal & set(re.findall(r"\w+", sql.lower())), sql
    (users,) = [sql for sql in asked if "dim_users" in sql]
    assert re.search(r"select\s+(.*?)\s+from", users, re.S).group(1) == "user_id, sessions"


def test_the_page_says_which_run_built_the_marts():
    assert "Built by run 01234567 at 2021-02-12 03:04 UTC" in report.render(_frames(), PUBLISHED, NOW)
    assert "No production run has published these marts" in report.render(_frames(), None, NOW)


def test_empty_marts_give_a_page_that_says_so():
    empty = {section: frame.iloc[0:0] for section, frame in _frames().items()}

    page = report.render(empty, PUBLISHED, NOW)

    for mart in ["fct_funnel", "fct_product_funnel", "fct_funnel_daily", "fct_funnel_time_to_convert"]:
        assert f"No rows in marts.{mart}." in page
    assert "No high-volume users." in page
