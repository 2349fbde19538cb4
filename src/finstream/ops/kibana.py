"""Kibana dashboards as saved objects, built from the index names in the configuration and
the fields of finstream.core.schema, so they cannot drift from what the pipeline writes.

Two dashboards: "markets" (bar time: close, volume, predictions against actuals, the model's
live error against persistence) and "operations" (processing time: throughput, Kafka lag,
batch duration, prediction latency, dead letters by reason). Each panel is a Vega-Lite chart
whose Elasticsearch query Kibana runs with the dashboard's time range and filters
(`%context%`, `%timefield%`), so the objects need no data-view ids to resolve; a data view
per index is included for Discover.

Regenerate the shipped file after a schema change:  python -m finstream.ops.kibana
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finstream.core import schema
from finstream.core.config import PROJECT_ROOT, Settings
from finstream.core.errors import ArgumentParser, HelpFormatter, UserError, exit_on_user_error, os_reason
from finstream.core.questions import Question, watched

NDJSON_PATH = PROJECT_ROOT / "conf" / "kibana" / "dashboards.ndjson"
# Saved-object format of Kibana 8.8+; Kibana 9 imports and migrates it.
CORE_MIGRATION_VERSION = "8.8.0"
VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
TOP_SERIES = 10  # tickers (or queries) per chart

NUMERIC = {"long", "integer", "short", "double", "float", "scaled_float"}


@dataclass(frozen=True)
class Metric:
    """One line of a chart: an Elasticsearch metric aggregation and how to read its value."""

    label: str
    agg: str  # avg | sum | max | percentiles | extended_stats
    field: str
    value: str = "m.value"  # Vega expression on `m`, the aggregation's result
    params: dict[str, Any] | None = None

    def aggregation(self) -> dict[str, Any]:
        """The Elasticsearch aggregation: {agg: {"field": field, **params}}."""
        return {self.agg: {"field": self.field, **(self.params or {})}}


def _metric(label: str, agg: str, field_name: str, value: str = "m.value", **params: Any) -> Metric:
    return Metric(label, agg, field_name, value, params or None)


@dataclass(frozen=True)
class Chart:
    """A time series per member of `split` (ticker, query), one line per metric."""

    id: str
    title: str
    description: str
    index_setting: str  # the Settings attribute naming the index
    time_field: str
    split: str | None
    metrics: tuple[Metric, ...]
    y_title: str
    log_scale: bool = False
    reference_line: float | None = None  # e.g. 1.0 on a ratio chart
    # A value computed from two metrics, plotted instead of them (e.g. RMSE ratio).
    derived: tuple[str, str] | None = None  # (label, Vega expression over datum[label])

    def index(self, settings: Settings) -> str:
        """The name of the index the chart queries, as `settings` names it."""
        return getattr(settings, self.index_setting)

    def fields(self) -> dict[str, str]:
        """Every field the query touches, with the role it plays: time, split or metric."""
        used = {self.time_field: "time"}
        if self.split:
            used[self.split] = "split"
        for metric in self.metrics:
            used[metric.field] = "metric"
        return used

    def aggregations(self) -> tuple[dict[str, Any], list[str]]:
        """The metric aggregations, each asked once, and the key each metric reads its value from.

        p50 and p99 share one `percentiles` aggregation.

        Returns:
            (key -> aggregation, one key per metric in `metrics`' order).
        """
        aggs: dict[str, Any] = {}
        keys = []
        for metric in self.metrics:
            body = metric.aggregation()
            key = next((k for k, v in aggs.items() if v == body), f"m{len(aggs)}")
            aggs[key] = body
            keys.append(key)
        return aggs, keys

    def query(self, settings: Settings) -> dict[str, Any]:
        """The Kibana Vega `url`: index, dashboard context, time field and aggregations."""
        series = {
            "date_histogram": {"field": self.time_field, "interval": {"%autointerval%": True},
                               "min_doc_count": 1},
            "aggs": self.aggregations()[0],
        }
        aggs = {"series": series}
        if self.split:
            aggs = {"split": {"terms": {"field": self.split, "size": TOP_SERIES}, "aggs": aggs}}
        return {"index": self.index(settings), "%context%": True, "%timefield%": self.time_field,
                "body": {"size": 0, "aggs": aggs}}

    def spec(self, settings: Settings) -> dict[str, Any]:
        """The chart's Vega-Lite spec: a line per metric (or the derived value) per member of `split`.

        Each bucket's metric values are read by the metrics' expressions, non-finite values are
        dropped, and the reference line (if any) is drawn dashed.
        """
        if self.split:
            data_property = "aggregations.split.buckets"
            bucket = "datum.bucket"
            transform: list[dict[str, Any]] = [
                {"flatten": ["series.buckets"], "as": ["bucket"]},
                {"calculate": "datum.key", "as": "member"},
            ]
        else:
            data_property = "aggregations.series.buckets"
            bucket = "datum"
            transform = [{"calculate": "'all'", "as": "member"}]
        transform.append({"calculate": f"{bucket}.key", "as": "time"})
        for metric, key in zip(self.metrics, self.aggregations()[1], strict=False):
            expression = re.sub(r"\bm(?=[.\[])", f"{bucket}.{key}", metric.value)
            transform.append({"calculate": expression, "as": metric.label})
        lines = [m.label for m in self.metrics]
        if self.derived:
            label, expression = self.derived
            transform.append({"calculate": expression, "as": label})
            lines = [label]
        transform += [
            {"fold": lines, "as": ["measure", "value"]},
            {"filter": "isValid(datum.value) && isFinite(datum.value)"},
        ]
        y: dict[str, Any] = {"field": "value", "type": "quantitative", "title": self.y_title}
        if self.log_scale:
            y["scale"] = {"type": "log"}
        encoding: dict[str, Any] = {
            "x": {"field": "time", "type": "temporal", "title": None},
            "y": y,
            "color": {"field": "member", "type": "nominal", "title": self.split or ""},
            "tooltip": [{"field": "member", "title": self.split or "series"},
                        {"field": "time", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                        {"field": "measure"}, {"field": "value", "format": ",.4~g"}],
        }
        if len(lines) > 1:
            encoding["strokeDash"] = {"field": "measure", "type": "nominal", "title": None}
        layers: list[dict[str, Any]] = [{"mark": {"type": "line", "point": False, "tooltip": True},
                                         "encoding": encoding}]
        if self.reference_line is not None:
            layers.append({"mark": {"type": "rule", "color": "gray", "strokeDash": [4, 4]},
                           "encoding": {"y": {"datum": self.reference_line}}})
        return {
            "$schema": VEGA_LITE_SCHEMA,
            "title": self.title,
            "data": {"url": self.query(settings), "format": {"property": data_property}},
            "transform": transform,
            "layer": layers,
        }


@dataclass(frozen=True)
class CountChart:
    """Documents counted by a keyword field (bar chart): dead letters by reason."""

    id: str
    title: str
    description: str
    index_setting: str
    time_field: str
    split: str
    x_title: str

    def index(self, settings: Settings) -> str:
        """The name of the index the chart queries, as `settings` names it."""
        return getattr(settings, self.index_setting)

    def fields(self) -> dict[str, str]:
        """Every field the query touches, with its role: time or split."""
        return {self.time_field: "time", self.split: "split"}

    def query(self, settings: Settings) -> dict[str, Any]:
        """The Kibana Vega `url`: the 25 most frequent values of `split` in the dashboard's context."""
        return {"index": self.index(settings), "%context%": True, "%timefield%": self.time_field,
                "body": {"size": 0, "aggs": {"split": {"terms": {"field": self.split, "size": 25}}}}}

    def spec(self, settings: Settings) -> dict[str, Any]:
        """The chart's Vega-Lite spec: a horizontal bar per value, the most frequent first."""
        return {
            "$schema": VEGA_LITE_SCHEMA,
            "title": self.title,
            "data": {"url": self.query(settings), "format": {"property": "aggregations.split.buckets"}},
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "y": {"field": "key", "type": "nominal", "title": None, "sort": "-x"},
                "x": {"field": "doc_count", "type": "quantitative", "title": self.x_title},
            },
        }


def _rmse(m: str) -> str:
    return f"sqrt({m}.sum_of_squares / {m}.count)"


def _skill_chart(chart_id: str, title: str, description: str, served: Metric, baseline: Metric, y_title: str) -> Chart:
    """A served forecast's live loss over its baseline's, per ticker and time bucket (1 = no skill)."""
    label = f"{served.label} / {baseline.label}"
    return Chart(chart_id, title, description, "es_index_predictions", "timestamp", "ticker", (served, baseline),
                 y_title, reference_line=1.0, derived=(label, f"datum['{served.label}'] / datum['{baseline.label}']"))


_MARKET_CHARTS = (
    Chart("finstream-close", "Close by ticker", "Average close per time bucket (log scale: prices of "
          "different tickers differ by orders of magnitude).", "es_index_bars", "timestamp", "ticker",
          (_metric("close", "avg", "close"),), "close", log_scale=True),
    Chart("finstream-volume", "Volume by ticker", "Traded volume per time bucket.", "es_index_bars",
          "timestamp", "ticker", (_metric("volume", "sum", "volume"),), "volume", log_scale=True),
    Chart("finstream-predicted-vs-actual", "Predicted and actual close", "The served model's next-close "
          "prediction (dashed) and the close that followed (solid), by the bar the prediction was made at.",
          "es_index_predictions", "timestamp", "ticker",
          (_metric("actual", "avg", "actual_close"), _metric("predicted", "avg", "predicted_close")),
          "close", log_scale=True),
    Chart("finstream-interval-coverage", "Live coverage of the 90 % interval",
          "Share of next closes that fell inside the served 90 % interval, per time bucket. The dashed line "
          "is the nominal 90 %: well below it the intervals are too narrow, well above too wide.",
          "es_index_predictions", "timestamp", "ticker", (_metric("coverage", "avg", "inside_interval"),),
          "share inside", reference_line=0.9),
)


_OPERATIONS_CHARTS = (
    Chart("finstream-throughput", "Throughput by query", "Rows per second read from Kafka (input) and "
          "processed, per streaming query, from the StreamingQueryListener's progress events.",
          "es_index_pipeline_metrics", "timestamp", "query",
          (_metric("input rows/s", "avg", "input_rows_per_second"),
           _metric("processed rows/s", "avg", "processed_rows_per_second")), "rows/s"),
    Chart("finstream-lag", "Kafka lag by query", "Offsets behind the latest offset at the end of each "
          "micro-batch (max per bucket). Growing lag: the job is not keeping up.",
          "es_index_pipeline_metrics", "timestamp", "query",
          (_metric("offsets behind", "max", "offsets_behind_latest"),), "offsets"),
    Chart("finstream-batch-duration", "Micro-batch duration by query", "Wall time per micro-batch "
          "(average and max per bucket).", "es_index_pipeline_metrics", "timestamp", "query",
          (_metric("avg", "avg", "batch_duration_ms"), _metric("max", "max", "batch_duration_ms")), "ms"),
    Chart("finstream-prediction-latency", "Prediction latency", "From the bar's Kafka record time to its "
          "prediction being written (p50 and p99 per bucket).", "es_index_predictions", "predicted_at", None,
          (_metric("p50", "percentiles", "latency_ms", "m.values['50.0']", percents=[50, 99]),
           _metric("p99", "percentiles", "latency_ms", "m.values['99.0']", percents=[50, 99])), "ms"),
    CountChart("finstream-dead-letters", "Dead letters by reason", "Messages refused by validation, "
               "counted per broken rule (one message can break several).", "es_index_dead_letters",
               "indexed_at", "reasons", "messages"),
)


def skill_charts(questions: Iterable[Question] | None = None) -> tuple[Chart, ...]:
    """A live skill chart per watched question (its `live` declaration).

    Each plots the served forecast's live loss over its reference baseline's, per ticker and
    time bucket, from the judged predictions: an RMSE ratio for squared errors, else the ratio
    of mean losses.

    Args:
        questions: the questions to chart (default: every declared one; unwatched ones add nothing).
    """
    result = []
    for question in watched(questions):
        live = question.live
        if live.squared:  # errors: the root mean square of each side
            served = _metric(live.served_label, "extended_stats", live.loss, _rmse("m"))
            baseline = _metric(question.reference, "extended_stats", live.baseline, _rmse("m"))
            y_title = "RMSE ratio"
        else:  # losses: their means
            served = _metric(live.served_label, "avg", live.loss)
            baseline = _metric(question.reference, "avg", live.baseline)
            y_title = f"{question.training_loss} ratio"
        result.append(_skill_chart(live.chart_id, live.chart_title, live.chart_description, served, baseline,
                                   y_title))
    return tuple(result)


def live_skill_chart() -> Chart:
    """The live skill watch's ratio of every served champion, one line per version (its name
    holds the question and the series set), from the watch's pipeline-metrics documents."""
    return Chart(
        "finstream-live-skill", "Live skill of the served models", "Each served champion's loss over its last "
        "judged predictions divided by its naive baseline's (finstream.serving.live_skill), one line per version "
        "(finstream-<question>-<series set>/<n>): below 1 it beats the baseline. The stream logs a WARNING naming "
        "the version when a ratio leaves the band its holdout promised (live_band_low/high in the same documents).",
        "es_index_pipeline_metrics", "timestamp", "live_version", (_metric("loss ratio", "avg", "live_loss_ratio"),),
        "loss / baseline loss", reference_line=1.0)


MARKET_CHARTS = _MARKET_CHARTS + skill_charts()
OPERATIONS_CHARTS = _OPERATIONS_CHARTS[:-1] + (live_skill_chart(), _OPERATIONS_CHARTS[-1])


@dataclass(frozen=True)
class Dashboard:
    """A Kibana dashboard: its charts on a grid, its default time range and refresh.

    Attributes:
        id: the saved object's id.
        title: its title.
        description: its description.
        charts: the Chart and CountChart panels, in reading order.
        time_from: the start of its default time range, e.g. "now-1h".
        refresh_ms: its auto-refresh interval, milliseconds.
        columns: panels per row.
    """

    id: str
    title: str
    description: str
    charts: tuple
    time_from: str
    refresh_ms: int
    columns: int = 2

    def panels(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The panels on Kibana's 48-unit-wide grid, `columns` per row, and their references.

        Returns:
            (the panelsJSON entries, the saved-object references naming each panel's chart).
        """
        width, height = 48 // self.columns, 15
        panels, references = [], []
        for n, chart in enumerate(self.charts):
            key = str(n + 1)
            panels.append({
                "version": CORE_MIGRATION_VERSION, "type": "visualization",
                "gridData": {"x": (n % self.columns) * width, "y": (n // self.columns) * height,
                             "w": width, "h": height, "i": key},
                "panelIndex": key, "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{key}",
            })
            references.append({"name": f"{key}:panel_{key}", "type": "visualization", "id": chart.id})
        return panels, references


DASHBOARDS = (
    Dashboard("finstream-markets", "finstream - markets and predictions",
              "Bars, predictions and the live error, by bar time. Narrow to one ticker with the query "
              "bar (ticker : GOOG).", MARKET_CHARTS, time_from="now-30y", refresh_ms=30_000),
    Dashboard("finstream-operations", "finstream - pipeline operations",
              "Streaming queries' throughput, lag and batch duration, prediction latency and dead "
              "letters, by processing time.", OPERATIONS_CHARTS, time_from="now-1h", refresh_ms=10_000),
)

DATA_VIEWS = (  # (id, Settings attribute, time field)
    ("finstream-data-bars", "es_index_bars", "timestamp"),
    ("finstream-data-predictions", "es_index_predictions", "timestamp"),
    ("finstream-data-dead-letters", "es_index_dead_letters", "indexed_at"),
    ("finstream-data-pipeline-metrics", "es_index_pipeline_metrics", "timestamp"),
    ("finstream-data-model-metrics", "es_index_model_metrics", "created_at"),
)


def index_mappings(settings: Settings) -> dict[str, dict[str, Any]]:
    """Index name -> its `properties`, from the same functions that create the indices."""
    return {index: mapping["properties"] for index, mapping in schema.index_mappings(settings).items()}


def charts() -> tuple:
    """Every chart of the dashboards, dashboard by dashboard."""
    return tuple(c for d in DASHBOARDS for c in d.charts)


def _saved_object(object_id: str, kind: str, type_version: str, attributes: dict[str, Any],
                  references: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": object_id, "type": kind, "attributes": attributes, "references": references or [],
            "coreMigrationVersion": CORE_MIGRATION_VERSION, "typeMigrationVersion": type_version,
            "managed": False}


_EMPTY_SEARCH = json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})


def saved_objects(settings: Settings) -> list[dict[str, Any]]:
    """Every saved object: a data view per index, a Vega visualization per chart, the dashboards.

    Args:
        settings: the index names the objects query.
    """
    objects = [
        _saved_object(view_id, "index-pattern", "8.0.0",
                      {"title": getattr(settings, attr), "name": getattr(settings, attr), "timeFieldName": time_field})
        for view_id, attr, time_field in DATA_VIEWS
    ]
    for chart in charts():
        vis_state = {"title": chart.title, "type": "vega", "aggs": [],
                     "params": {"spec": json.dumps(chart.spec(settings), indent=2)}}
        objects.append(_saved_object(chart.id, "visualization", "8.0.0", {
            "title": chart.title, "description": chart.description, "visState": json.dumps(vis_state),
            "uiStateJSON": "{}", "version": 1, "kibanaSavedObjectMeta": {"searchSourceJSON": _EMPTY_SEARCH},
        }))
    for dashboard in DASHBOARDS:
        panels, references = dashboard.panels()
        objects.append(_saved_object(dashboard.id, "dashboard", "8.7.0", {
            "title": dashboard.title, "description": dashboard.description,
            "panelsJSON": json.dumps(panels), "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
            "timeRestore": True, "timeFrom": dashboard.time_from, "timeTo": "now",
            "refreshInterval": {"pause": False, "value": dashboard.refresh_ms}, "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _EMPTY_SEARCH},
        }, references))
    return objects


def render_ndjson(settings: Settings) -> str:
    """The saved objects as NDJSON, Kibana's import format: one object a line, keys sorted."""
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in saved_objects(settings))


def main(argv: list[str] | None = None) -> int:
    """Writes the saved objects for the configured index names to the shipped file, or a given path.

    The names are the defaults unless the environment overrides them.

    Args:
        argv: the command's arguments, [path] (default: NDJSON_PATH, conf/kibana/dashboards.ndjson).

    Returns:
        The exit code, 0.

    Raises:
        UserError: the path cannot be written (a folder, or a folder that cannot be made).
    """
    parser = ArgumentParser(description="Write the Kibana dashboards (saved objects, NDJSON) for the configured "
                                        "index names.", formatter_class=HelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, default=NDJSON_PATH, help="where to write them")
    path = parser.parse_args(argv).path
    settings = Settings.load()
    text = render_ndjson(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path} ({os_reason(exc, path)}): give a file path in a folder you can "
                        "write") from None
    print(f"wrote {text.count(chr(10))} saved objects to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(sys.argv[1:])))
