"""The per-series state transition as a plain function (no Spark): order, late and duplicate
bars, judging, absent values, coverage, and that its inputs are left as they were."""

from __future__ import annotations

import copy
import math

from finstream.serving.forecasters import forecaster
from finstream.serving.installed import ServedModel
from finstream.serving.state_step import (
    FEATURE_PREFIX,
    STATE_BARS,
    empty_window,
    transition,
)

DAY = 86_400_000
T0 = 1_600_000_000_000
NOW = 1_700_000_000_000
SERIES = ("AAA", "day", 1)


def bars(*steps: int, offset0: int = 0, vwap=None, volume=1e6) -> dict[str, list]:
    return {
        "timestamp": [T0 + s * DAY for s in steps], "open": [100.0 + s for s in steps],
        "high": [102.0 + s for s in steps], "low": [99.0 + s for s in steps],
        "close": [101.0 + s + (s % 3) * 0.5 for s in steps],
        "volume": [volume] * len(steps), "vwap": [vwap] * len(steps),
        "published_at": [T0 + 10**9 + i for i in range(len(steps))],
        "kafka_offset": [offset0 + i for i in range(len(steps))],
    }


def baseline(question: str, served: str, timespan: str = "day", tickers=()) -> ServedModel:
    """A question's naive baseline as the stream serves it (no regressor, no disk)."""
    return ServedModel(f"finstream-{question}/1", served, forecaster({"question": question, "served": served}),
                       timespan, 1, frozenset(tickers))


SERVED = {"lags": baseline("lags", "persistence"), "range": baseline("range", "mean_range_5")}


def statuses(step) -> list[tuple[int, str]]:
    return [(int(row["doc_id"].rsplit("|", 1)[1]), row["status"]) for row in step.rows]


def test_bars_are_taken_in_time_order_and_the_window_keeps_the_last_state_bars():
    step = transition(SERIES, empty_window(), None, bars(*reversed(range(30))), {}, NOW)
    assert statuses(step) == [(T0 + s * DAY, "unscored") for s in range(30)]  # no model: none predicted
    assert step.window["timestamp"] == [T0 + s * DAY for s in range(30 - STATE_BARS, 30)]
    assert step.pending is None


def test_late_and_duplicate_bars_get_a_row_and_change_nothing():
    first = transition(SERIES, empty_window(), None, bars(0, 2, 4, 6, 8), {}, NOW)
    step = transition(SERIES, first.window, None, bars(3, 8, 10, 10, offset0=50), {}, NOW)
    assert statuses(step) == [(T0 + 3 * DAY, "late"), (T0 + 8 * DAY, "duplicate"), (T0 + 10 * DAY, "duplicate"),
                              (T0 + 10 * DAY, "unscored")]
    assert step.window["timestamp"] == first.window["timestamp"] + [T0 + 10 * DAY]


def test_every_bar_with_enough_history_is_forecast_and_judged_by_the_next_one():
    series = bars(*range(25))
    step = transition(SERIES, empty_window(), None, series, SERVED, NOW)
    # 21 bars make the first feature row: bars 20..24 are predicted, the rest are not
    assert [s for _, s in statuses(step)] == ["unscored"] * 20 + ["predicted"] * 5
    predicted = [row for row in step.rows if row["status"] == "predicted"]
    for made, following in zip(predicted, predicted[1:], strict=False):
        assert made["actual_close"] == following["last_close"]
        assert made["actual_timestamp"] == following["timestamp"]
        assert made["error"] == made["predicted_close"] - made["actual_close"]
        assert made["predicted_close"] == made["last_close"]  # persistence
        assert made["range_error"] == made["predicted_range"] - made["actual_range"]
    first = predicted[0]
    assert (first["model"], first["model_version"], first["range_model"]) == (
        "persistence", "finstream-lags/1", "mean_range_5")
    assert first["predicted_at"] == NOW and first["latency_ms"] == NOW - first["published_at"]
    assert sorted(k for k in first if k.startswith(FEATURE_PREFIX))  # its features travel with it
    # the last one waits for the next bar, in the state, and is written whole when judged
    assert step.pending["doc_id"] == predicted[-1]["doc_id"] and step.pending["status"] == "judged"
    assert "actual_close" not in step.pending
    nxt = transition(SERIES, step.window, step.pending, bars(25, offset0=100), SERVED, NOW + 1)
    assert [row["status"] for row in nxt.rows] == ["judged", "predicted"]
    judged = nxt.rows[0]
    assert judged["doc_id"] == predicted[-1]["doc_id"] and judged["actual_close"] == bars(25)["close"][0]
    assert judged["predicted_at"] == NOW  # the document as it was made, with its actual added


def test_absent_values_are_remembered_as_absent_and_still_forecast():
    step = transition(SERIES, empty_window(), None, bars(*range(22), vwap=math.nan, volume=math.nan), SERVED, NOW)
    assert step.window["vwap"] == [None] * STATE_BARS and step.window["volume"] == [None] * STATE_BARS
    predicted = [row for row in step.rows if row["status"] == "predicted"]
    assert len(predicted) == 2
    assert predicted[0][FEATURE_PREFIX + "volume_ratio_20"] == 1.0 and predicted[0][FEATURE_PREFIX + "vwap_gap"] == 0.0


def test_only_models_that_cover_the_series_forecast_it():
    hourly = {"lags": baseline("lags", "persistence", timespan="hour")}
    step = transition(SERIES, empty_window(), None, bars(*range(25)), hourly, NOW)
    assert {s for _, s in statuses(step)} == {"unscored"}
    other = {"lags": baseline("lags", "persistence", tickers=("BBB",)), "range": SERVED["range"]}
    step = transition(SERIES, empty_window(), None, bars(*range(25)), other, NOW)
    predicted = [row for row in step.rows if row["status"] == "predicted"]
    assert predicted and all("predicted_close" not in row and "predicted_range" in row for row in predicted)


def test_the_inputs_are_not_modified():
    first = transition(SERIES, empty_window(), None, bars(*range(22)), SERVED, NOW)
    window, pending, batch = copy.deepcopy(first.window), copy.deepcopy(first.pending), bars(22, 23)
    before = copy.deepcopy(batch)
    transition(SERIES, window, pending, batch, SERVED, NOW)
    assert (window, pending, batch) == (first.window, first.pending, before)
