"""The shipped Kibana saved objects: generated from the schema and config, internally
consistent, every field they query mapped with the type its role needs, every chart valid
Vega-Lite. (No Kibana runs here; the charts' queries run against the real Elasticsearch in
tests/integration/test_predictions.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from finstream.core.config import Settings
from finstream.ops import kibana
from tests.kibana_vega import rounded_interval, search_request, to_svg, to_vega, with_values

DEFAULTS = Settings.load(environ={})
OBJECTS = [json.loads(line) for line in kibana.NDJSON_PATH.read_text().splitlines()]
BY_ID = {(o["type"], o["id"]): o for o in OBJECTS}
ROLE_TYPES = {"time": {"date"}, "split": {"keyword"}, "metric": kibana.NUMERIC}


def vega_spec(obj: dict) -> dict:
    return json.loads(json.loads(obj["attributes"]["visState"])["params"]["spec"])


def test_the_shipped_file_is_what_the_generator_writes():
    assert kibana.NDJSON_PATH.read_text() == kibana.render_ndjson(DEFAULTS), \
        "conf/kibana/dashboards.ndjson is stale: run  python -m finstream.ops.kibana"


def test_ids_are_unique_and_every_dashboard_reference_resolves():
    assert len(BY_ID) == len(OBJECTS)
    dashboards = [o for o in OBJECTS if o["type"] == "dashboard"]
    assert {d["id"] for d in dashboards} == {"finstream-markets", "finstream-operations"}
    for dashboard in dashboards:
        panels = json.loads(dashboard["attributes"]["panelsJSON"])
        references = {r["name"]: r for r in dashboard["references"]}
        assert len(panels) == len(references) >= 4
        for panel in panels:
            reference = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
            assert (reference["type"], reference["id"]) in BY_ID
        cells = {(x, y) for p in panels for x in range(p["gridData"]["x"], p["gridData"]["x"] + p["gridData"]["w"])
                 for y in range(p["gridData"]["y"], p["gridData"]["y"] + p["gridData"]["h"])}
        assert len(cells) == sum(p["gridData"]["w"] * p["gridData"]["h"] for p in panels), "panels overlap"
        assert all(p["gridData"]["x"] + p["gridData"]["w"] <= 48 for p in panels)


def test_the_panels_the_operations_issue_asks_for_are_there():
    titles = {o["attributes"]["title"] for o in OBJECTS if o["type"] == "visualization"}
    assert {"Close by ticker", "Volume by ticker", "Predicted and actual close",
            "Live error: model RMSE / persistence RMSE", "Dead letters by reason", "Throughput by query",
            "Kafka lag by query"} <= titles


@pytest.mark.parametrize("chart", kibana.charts(), ids=lambda c: c.id)
def test_every_queried_field_is_mapped_with_the_type_its_role_needs(chart):
    properties = kibana.index_mappings(DEFAULTS)[chart.index(DEFAULTS)]
    for name, role in chart.fields().items():
        assert name in properties, f"{chart.id}: {name} is not in the mapping of {chart.index(DEFAULTS)}"
        assert properties[name]["type"] in ROLE_TYPES[role], f"{chart.id}: {name} cannot be a {role} field"


def test_data_views_name_real_indices_and_date_time_fields():
    mappings = kibana.index_mappings(DEFAULTS)
    views = [o for o in OBJECTS if o["type"] == "index-pattern"]
    assert {v["attributes"]["title"] for v in views} == set(mappings)
    for view in views:
        attributes = view["attributes"]
        assert mappings[attributes["title"]][attributes["timeFieldName"]]["type"] == "date"


@pytest.mark.parametrize("chart", kibana.charts(), ids=lambda c: c.id)
def test_every_chart_is_valid_vega_lite_and_queries_with_the_dashboard_context(chart):
    spec = vega_spec(BY_ID[("visualization", chart.id)])
    url = spec["data"]["url"]
    assert url["%context%"] is True and url["%timefield%"] == chart.time_field
    assert "query" not in url["body"]  # Kibana refuses a body query beside %context%
    vega = to_vega(with_values(spec, []))
    assert vega["marks"], chart.id


def test_kibana_context_expansion():
    url = {"index": "i", "%context%": True, "%timefield%": "t",
           "body": {"aggs": {"s": {"date_histogram": {"field": "t", "interval": {"%autointerval%": True}}}}}}
    index, body = search_request(url, (0, 50 * 60_000))  # 50 minutes -> 1-minute buckets
    assert index == "i"
    assert body["query"]["bool"]["must"][0]["range"]["t"]["lte"] == 50 * 60_000
    assert body["aggs"]["s"]["date_histogram"] == {"field": "t", "calendar_interval": "1m"}
    assert rounded_interval(20 * 365 * 86_400_000 / 50) == "1y"
    assert rounded_interval(4_000) == "1s"


def test_a_chart_renders_lines_from_an_elasticsearch_shaped_answer():
    chart = next(c for c in kibana.charts() if c.id == "finstream-live-error")
    day = 86_400_000
    rows = [{"key": "GOOG", "series": {"buckets": [
        {"key": t * day, "m0": {"count": 4, "sum_of_squares": 4.0 * m}, "m1": {"count": 4, "sum_of_squares": 4.0}}
        for t, m in ((1, 0.81), (2, 1.21), (3, 1.0))]}}]
    svg = to_svg(with_values(chart.spec(DEFAULTS), rows))
    assert svg.count("<path") >= 2 and "GOOG" in svg  # the line, the reference rule, the legend


def test_the_command_writes_a_given_path_and_refuses_a_bad_one_in_one_line(tmp_path):
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "finstream.ops.kibana", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    written = run(str(tmp_path / "out" / "d.ndjson"))
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out" / "d.ndjson").read_text() == kibana.render_ndjson(Settings.load())
    assert run("--help").returncode == 0 and not (tmp_path / "--help").exists()
    for argv, line in (((str(tmp_path),), f"error: cannot write {tmp_path} (Is a directory): give a file path in "
                                           "a folder you can write"),
                       (("a", "b"), "error: unrecognized arguments: b (see python -m finstream.ops.kibana --help)")):
        refused = run(*argv)
        assert (refused.returncode, refused.stderr.splitlines()) == (2, [line]), refused.stderr
