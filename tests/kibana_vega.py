"""What Kibana does with a dashboard's Vega-Lite chart, done here without Kibana: expand the
context keywords of its Elasticsearch query, run it, and render the chart with the answer.

The expansion follows Kibana's Vega `EsQueryParser` (vis_types/vega data_model): `%timefield%`
becomes a range query on the dashboard's time bounds inside the (here empty) dashboard
filters, and `interval: {%autointerval%: N}` becomes the interval that gives about N buckets,
rounded as Kibana rounds it."""

from __future__ import annotations

import copy
from typing import Any

import vl_convert

# Kibana 8 and 9 bundle Vega-Lite 5 (the specs declare the v5 schema).
VEGA_LITE_VERSION = "5.21"

# Kibana's EsQueryParser._roundInterval: (upper bound in ms, interval)
_ROUNDED = ((500, "100ms"), (5_000, "1s"), (7_500, "5s"), (15_000, "10s"), (45_000, "30s"), (180_000, "1m"),
            (450_000, "5m"), (1_200_000, "10m"), (2_700_000, "30m"), (7_200_000, "1h"), (21_600_000, "3h"),
            (86_400_000, "12h"), (604_800_000, "24h"), (1_814_400_000, "1w"))
_CALENDAR = {"1m", "1h", "1d", "1w", "1M", "1q", "1y"}


def rounded_interval(span_ms: float) -> str:
    for bound, interval in _ROUNDED:
        if span_ms <= bound:
            return interval
    return "30d" if span_ms < 3_628_800_000 else "1y"


def _expand(node: Any, bounds: tuple[int, int], key: str | None = None) -> Any:
    if isinstance(node, list):
        return [_expand(item, bounds) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for prop, value in node.items():
        if prop == "interval" and key == "date_histogram":
            size = value["%autointerval%"] if isinstance(value, dict) else None
            interval = value if isinstance(value, str) else rounded_interval(
                (bounds[1] - bounds[0]) / (50 if size is True else size))
            out["calendar_interval" if interval in _CALENDAR else "fixed_interval"] = interval
        else:
            out[prop] = _expand(value, bounds, prop)
    return out


def search_request(url: dict[str, Any], bounds: tuple[int, int]) -> tuple[str, dict[str, Any]]:
    """(index, body) as Kibana sends them for a dashboard showing [bounds] (epoch ms)."""
    url = copy.deepcopy(url)
    context, time_field = url.pop("%context%", None), url.pop("%timefield%", None)
    body = url.get("body", {})
    assert "query" not in body or (context is None and time_field is None), \
        "Kibana refuses url.body.query together with %context% or %timefield%"
    if time_field:
        time_range = {"range": {time_field: {"gte": bounds[0], "lte": bounds[1], "format": "epoch_millis"}}}
        body["query"] = {"bool": {"must": [time_range], "filter": [], "should": [], "must_not": []}}
    body["aggs"] = _expand(body.get("aggs", {}), bounds)
    return url["index"], body


def chart_values(es, spec: dict[str, Any], bounds: tuple[int, int]) -> list[dict[str, Any]]:
    """The rows the chart receives: the ES response at the spec's `format.property` path."""
    index, body = search_request(spec["data"]["url"], bounds)
    response = es.search(index=index, body=body).body
    rows: Any = response
    for part in spec["data"]["format"]["property"].split("."):
        rows = rows[part]
    return rows


def with_values(spec: dict[str, Any], values: list[dict[str, Any]]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["data"] = {"values": values}
    return spec


def to_vega(spec: dict[str, Any]) -> dict[str, Any]:
    """Compile Vega-Lite to Vega: fails on a spec Vega-Lite does not accept."""
    return vl_convert.vegalite_to_vega(spec, vl_version=VEGA_LITE_VERSION)


def to_svg(spec: dict[str, Any]) -> str:
    return vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION)
