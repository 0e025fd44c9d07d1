"""The SVG charts: well-formed, accessible (role, title, desc, a table), the weakest step marked, labels escaped."""

from __future__ import annotations

from types import SimpleNamespace

from lxml import etree

from coop.node.funnel import FunnelStep, Marker, route_funnel, weakest_step
from coop.node.web.charts import funnel_chart, time_chart
from coop.node.web.funnel_charts import bar_channels

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & </svg><img src=x onerror=alert(1)>'


def _parse(markup: str) -> etree._Element:
    return etree.fromstring(str(markup).encode())  # raises on anything not well-formed


def _svg(figure: etree._Element) -> etree._Element:
    svg = figure.find(f"{SVG}svg")
    assert svg is not None
    return svg


def _steps() -> list[FunnelStep]:
    stages = {"eligible": 20, "captured": 10, "prompt_shown": 9, "consent": 10, "transform_ok": 8}
    return route_funnel(stages, {"git": 6}, ["git"])


def test_funnel_chart_is_an_accessible_svg_with_a_table_of_its_numbers() -> None:
    steps = _steps()
    figure = _parse(
        funnel_chart(steps, weakest=weakest_step(steps), chart_id="funnel-web", title="Funnel of web")
    )
    svg = _svg(figure)
    assert svg.get("role") == "img"
    title = svg.find(f"{SVG}title")
    desc = svg.find(f"{SVG}desc")
    assert title is not None and title.get("id") == svg.get("aria-labelledby")
    assert desc is not None and desc.get("id") == svg.get("aria-describedby")
    assert title.text == "Funnel of web"
    assert len(svg.findall(f".//{SVG}rect")) == len(steps)
    rows = figure.findall("./table/tbody/tr")
    assert [r.find("th").text for r in rows] == [
        "E eligible",
        "C captured",
        "S share prompt shown",
        "A consented",
        "T processed",
        "P:git published on git",
    ]
    assert [r.findall("td")[0].text for r in rows] == ["20", "10", "9", "10", "8", "6"]


def test_funnel_chart_marks_the_weakest_step_by_colour_class_and_text() -> None:
    steps = _steps()  # yields: C 50%, S 90%, A 100%, T 80%, P:git 75%
    assert weakest_step(steps) == "C"
    figure = _parse(funnel_chart(steps, weakest="C", chart_id="f", title="t"))
    marked = [g for g in _svg(figure).iter(f"{SVG}g") if "chart-weakest" in (g.get("class") or "")]
    assert len(marked) == 1
    texts = "".join(marked[0].itertext())
    assert "C captured" in texts and "weakest" in texts and "50%" in texts
    weak_rows = [r for r in figure.iter("tr") if r.get("class") == "chart-weakest"]
    assert len(weak_rows) == 1 and "weakest step" in "".join(weak_rows[0].itertext())
    assert "weakest step: C captured, 50% of E" in (_svg(figure).find(f"{SVG}desc").text or "")


def test_charts_escape_hostile_labels() -> None:
    steps = [FunnelStep("E", HOSTILE, 3), FunnelStep("C", "captured", 1, "E", 0.3333)]
    funnel = funnel_chart(steps, weakest="C", chart_id=HOSTILE, title=HOSTILE)
    timeline = time_chart(
        chart_id=HOSTILE,
        title=HOSTILE,
        desc=HOSTILE,
        dates=["2026-01-01", "2026-01-02"],
        lines={HOSTILE: [1, 2]},
        markers=[Marker(day=1, at=0, label=HOSTILE)],
        unit=HOSTILE,
    )
    for markup in (funnel, timeline):
        figure = _parse(markup)
        tags = {etree.QName(e).localname for e in figure.iter() if isinstance(e.tag, str)}
        assert "script" not in tags and "img" not in tags
        assert HOSTILE in "".join(figure.itertext())  # shown as text, not run
        ids = {e.get("id") for e in figure.iter() if isinstance(e.tag, str) and e.get("id")}
        assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for i in ids)


def test_charts_of_no_data_still_parse_and_say_so() -> None:
    figure = _parse(funnel_chart([], weakest=None, chart_id="empty", title="Nothing"))
    assert "No data yet." in "".join(figure.itertext())
    assert _svg(figure).get("role") == "img"
    empty = _parse(time_chart(chart_id="e", title="Nothing", desc="", dates=[], lines={}))
    assert "No data yet." in "".join(_svg(empty).itertext())
    quiet = _parse(time_chart(chart_id="q", title="Quiet", desc="", dates=["2026-01-01"], lines={"git": [0]}))
    assert "Nothing in these days." in "".join(quiet.find("table").itertext())


def test_time_chart_draws_a_line_per_series_markers_and_a_table_of_active_days() -> None:
    dates = [f"2026-01-0{d}" for d in range(1, 6)]
    figure = _parse(
        time_chart(
            chart_id="published",
            title="Published per day",
            desc="Records live per day.",
            dates=dates,
            lines={"git": [0, 3, 0, 0, 1], "site": [0, 0, 0, 0, 2]},
            markers=[Marker(day=2, at=0, label="embargo on"), Marker(day=9, at=0, label="out of range")],
        )
    )
    svg = _svg(figure)
    lines = svg.findall(f"{SVG}polyline")
    assert [line.get("class") for line in lines] == ["chart-line chart-line-0", "chart-line chart-line-1"]
    assert len(lines[0].get("points").split()) == 5
    marker_texts = ["".join(g.itertext()) for g in svg.iter(f"{SVG}g") if g.get("class") == "chart-marker"]
    assert marker_texts == ["embargo on"]
    legend = "".join(t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "chart-legend")
    assert "git (4 records)" in legend and "site (2 records)" in legend
    rows = [[c.text or "" for c in tr] for tr in figure.findall("./table/tbody/tr")]
    assert rows == [
        ["2026-01-02", "3", "0", ""],
        ["2026-01-03", "0", "0", "embargo on"],
        ["2026-01-05", "1", "2", ""],
    ]


def _label_ends_before_numbers(figure: etree._Element, char_w: float) -> list[tuple[str, float, float]]:
    """(label, its x + estimated width, the numbers' x) per bar; the width estimated per character."""
    out = []
    for g in _svg(figure).iter(f"{SVG}g"):
        label = g.find(f"{SVG}text[@class='chart-label']")
        bar = g.find(f"{SVG}rect")
        value = g.find(f"{SVG}text[@class='chart-value']")
        assert label is not None and bar is not None and value is not None
        end = float(label.get("x") or 0) + len(label.text or "") * char_w
        assert end < float(bar.get("x") or 0)  # the bar starts after the label too
        out.append((label.text or "", end, float(value.get("x") or 0)))
    return out


def test_funnel_chart_long_channel_names_do_not_overlap_the_numbers() -> None:
    stages = {"eligible": 20, "captured": 10, "prompt_shown": 9, "consent": 10, "transform_ok": 8}
    channels = ["bluesky", "huggingface-mirror"]
    steps = route_funnel(stages, {"bluesky": 2, "huggingface-mirror": 8}, channels)
    figure = _parse(funnel_chart(steps, weakest=weakest_step(steps), chart_id="f", title="t"))
    bars = _label_ends_before_numbers(figure, char_w=7.0)  # 12 px sans text, about 0.58 em a character
    long_label = "P:huggingface-mirror published on huggingface-mirror"
    # A label too long for the column is cut in the SVG (the table below keeps it whole).
    assert [label for label, _, _ in bars[-2:]] == ["P:bluesky published on bluesky", long_label[:35] + "…"]
    assert all(end < value_x for _, end, value_x in bars)
    svg = _svg(figure)
    view = (svg.get("viewBox") or "").split()
    assert max(float(v.get("x") or 0) for v in svg.iter(f"{SVG}text")) < float(view[2])
    heads = [r.find("th").text for r in figure.findall("./table/tbody/tr")]
    assert long_label in heads


def test_bar_channels_public_page_shows_only_channels_that_published() -> None:
    report = SimpleNamespace(  # the MetricsReport fields bar_channels reads
        channels={"git": {}, "bluesky": {}}, publish={"git": object(), "bluesky": object(), "site": object()}
    )

    ledger = {"web": {"git": 4}, "api": {"git": 1, "site": 0}}
    per_day = {"git": [0, 4], "bluesky": [0, 0], "site": [0, 0]}
    assert bar_channels(report, ledger, per_day, public=True) == ["git"]
    assert bar_channels(report, ledger, per_day, public=False) == ["bluesky", "git", "site"]
    # So the public funnel never names a never-used channel's P bar its weakest step.
    stages = {"eligible": 10, "captured": 10, "prompt_shown": 10, "consent": 10, "transform_ok": 10}
    public = route_funnel(stages, ledger["web"], bar_channels(report, ledger, per_day, public=True))
    assert weakest_step(public) != "P:bluesky" and "P:bluesky" not in {s.key for s in public}
