"""One series' state transition, as a plain function: what the stream does with a micro-batch's
bars of one series, given what it remembers. No Spark, no I/O, no clock: the Spark adapter
(finstream.serving.predictor) reads and writes the GroupState, loads the models and passes
the time.

    (window, pending, new bars, served models, now) ─▶ (rows, new window, new pending)

- window: the series' last STATE_BARS bars by column (HISTORY_COLUMNS), oldest first;
- pending: the prediction document made at the window's newest bar, not yet judged, or None;
- the new bars are taken in time order (then by Kafka offset). A bar older than the window's
  newest is `late`; one whose time is remembered, or repeated later in the batch, is a
  `duplicate` (the last published copy wins, as in the bars index): both get a row and
  change nothing;
- each new bar judges the pending prediction (its actual and errors, finstream.serving
  .forecasters.judged), joins the window, and is forecast for each question by the most
  specific champion whose series set covers the series, or by the question's reference
  baseline when none does (labelled `model: <baseline>`, version `baseline`), once the window
  holds enough bars for its features (else `unscored`: too little history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from finstream.core import schema as S
from finstream.core import skill
from finstream.core.questions import served
from finstream.features.scalar import forecast_features
from finstream.features.spec import HISTORY_BARS
from finstream.serving.forecasters import finite, judged
from finstream.serving.installed import ServedModel, reference_baseline

HISTORY_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "vwap")
# Bars remembered per series: what the features and the baselines look back over.
STATE_BARS = max(HISTORY_BARS, skill.VARIANCE_BARS + 1, skill.RANGE_BARS)
# What each output row is: a new bar's prediction, a prediction made in an earlier batch
# given its actual and errors (its whole document again), or a bar that leads to no write (new but
# not scored: no model, another series' model, too little history; late; duplicate).
STATUSES = S.PREDICTION_STATUSES
PREDICTED, JUDGED, UNSCORED, LATE, DUPLICATE = STATUSES
NEW = "new"  # an incoming bar before it is scored
WRITTEN = (PREDICTED, JUDGED)
FEATURE_PREFIX = "feature_"  # a feature's column in the output rows (documents nest them under `features`)
BASELINE_VERSION = "baseline"  # the version field of a forecast by a question's reference baseline
# Each served question's reference baseline: what serves a series no champion covers.
REFERENCE_BASELINES = {question.name: reference_baseline(question) for question in served()}


@dataclass(frozen=True)
class Transition:
    """What one step returns.

    Attributes:
        rows: one per incoming bar (doc_id and status; a prediction's whole document when
            predicted) and one per earlier prediction judged in this step (status `judged`).
        window: the new window (HISTORY_COLUMNS -> the last STATE_BARS values, oldest first).
        pending: the prediction at the window's newest bar, to be judged by the next bar, or None.
    """

    rows: list[dict]
    window: dict[str, list]
    pending: dict | None


def empty_window() -> dict[str, list]:
    """The window of a series the state has not seen (or has forgotten)."""
    return {name: [] for name in HISTORY_COLUMNS}


def mark_incoming(bars: dict[str, list], remembered: list[int]) -> list[int]:
    """The order in which to take a batch's bars of one series (by time, then offset), each
    marked new, late or duplicate in bars["status"]. Several copies of a bar in one batch:
    the last published wins, as in the bars index."""
    timestamps = bars["timestamp"]
    order = sorted(range(len(timestamps)), key=lambda i: (timestamps[i], bars["kafka_offset"][i]))
    newest = max(remembered) if remembered else None
    known = set(remembered)
    status = [NEW] * len(order)
    for position, i in enumerate(order):
        later_copy = position + 1 < len(order) and timestamps[order[position + 1]] == timestamps[i]
        if later_copy or timestamps[i] in known:
            status[i] = DUPLICATE
        elif newest is not None and timestamps[i] < newest:
            status[i] = LATE
    bars["status"] = status
    return order


def idle_timeout_ms(timespan: str, multiplier: int, idle_hours: float) -> int:
    """How long a series may publish nothing before its history is dropped: the configured
    time, or three of its bars if that is longer (a monthly series waits a month per bar)."""
    return int(max(idle_hours * 3_600_000, 3 * S.TIMESPAN_SECONDS[timespan] * int(multiplier) * 1000))


def serving(champions: Mapping[str, Sequence[ServedModel]], baselines: Mapping[str, ServedModel],
            ticker: str, timespan: str, multiplier: int) -> dict[str, ServedModel]:
    """Per question, what serves the series: the first champion (most specific first) whose
    series set covers it, else the question's reference baseline."""
    chosen = dict(baselines)
    for question, models in champions.items():
        for model in models:
            if model.covers(ticker, timespan, multiplier):
                chosen[question] = model
                break
    return chosen


def forecasts_of(models: Mapping[str, ServedModel], window: dict[str, list], features: dict[str, float]) -> dict:
    """Every served question's forecast fields for the window's newest bar, each with the
    fields naming what served it; a question whose forecast is undefined or not finite adds
    nothing (finstream.serving.forecasters.finite)."""
    fields: dict = {}
    for model in models.values():
        forecast = finite(lambda model=model: model.forecaster.forecast(window, features))
        if forecast is not None:
            name_field, version_field, run_field = model.question.model_fields
            fields.update(forecast, **{name_field: model.kind, version_field: model.version, run_field: model.run_id})
    return fields


def transition(series: tuple[str, str, int], window: dict[str, list], pending: dict | None,
               bars: dict[str, list], champions: Mapping[str, Sequence[ServedModel]], now_ms: int,
               baselines: Mapping[str, ServedModel] = REFERENCE_BASELINES) -> Transition:
    """One series' micro-batch.

    Args:
        series: (ticker, timespan, multiplier).
        window: the remembered bars (HISTORY_COLUMNS -> values, oldest first; absent volume or
            vwap None); not modified.
        pending: the prediction document made at the window's newest bar, or None; not modified.
        bars: the batch's bars of the series, in any order: HISTORY_COLUMNS plus published_at
            (epoch ms, the Kafka record's time) and kafka_offset, each a list; NaN is absent.
        champions: question -> its installed champions, most specific first (those that do not
            cover the series are ignored).
        now_ms: the time the step runs at (epoch ms): predicted_at of its predictions.
        baselines: question -> what serves a series no champion covers (default: each served
            question's reference baseline; empty: such a series is not forecast).

    Returns:
        The rows, the new window and the new pending prediction (Transition).
    """
    ticker, timespan, multiplier = series[0], series[1], int(series[2])
    window = {name: list(window[name]) for name in HISTORY_COLUMNS}
    earlier = dict(pending) if pending is not None else None
    bars = dict(bars)
    order = mark_incoming(bars, window["timestamp"])
    covering = serving(champions, baselines, ticker, timespan, multiplier)
    rows: list[dict] = []
    for i in order:
        bar = {name: values[i] for name, values in bars.items()}
        doc_id = S.bar_doc_id(ticker, timespan, multiplier, bar["timestamp"])
        if bar["status"] != NEW:
            rows.append({"doc_id": doc_id, "status": bar["status"]})
            continue
        if earlier is not None:
            earlier.update(actual_timestamp=bar["timestamp"], **judged(earlier, bar["high"], bar["low"], bar["close"]))
            if earlier["status"] != PREDICTED:  # made in an earlier batch: written again, whole
                rows.append(earlier)
        for name in HISTORY_COLUMNS:
            value = bar[name]
            window[name] = (window[name] + [None if value != value else value])[-STATE_BARS:]  # NaN: absent
        earlier = None
        features = forecast_features(window) if covering else None
        fields = forecasts_of(covering, window, features) if features is not None else {}
        if not fields:
            rows.append({"doc_id": doc_id, "status": UNSCORED})
            continue
        earlier = {
            "doc_id": doc_id, "ticker": ticker, "timespan": timespan, "multiplier": multiplier,
            "timestamp": bar["timestamp"], "target": "next_close", "last_close": bar["close"], **fields,
            "published_at": bar["published_at"], "predicted_at": now_ms,
            "latency_ms": now_ms - bar["published_at"], "status": PREDICTED,
            **{FEATURE_PREFIX + name: value for name, value in features.items()},
        }
        rows.append(earlier)
    pending = {**earlier, "status": JUDGED} if earlier is not None else None
    return Transition(rows, window, pending)
