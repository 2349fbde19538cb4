"""The per-series state transition as a plain function (no Spark): order, late and duplicate
bars, judging, absent values, coverage, and that its inputs are left as they were."""

from __future__ import annotations

import copy
import math

from finstream.core.series_sets import SeriesSet
from finstream.features.spec import FORECAST_FEATURES
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


DAILY = SeriesSet("day")


def champion(question: str, served: str, series_set: SeriesSet = DAILY, version: int = 1) -> ServedModel:
    """A champion serving a naive baseline (no regressor, no disk) for a series set."""
    return ServedModel(f"finstream-{question}-{series_set.key}/{version}", served,
                       forecaster({"question": question, "served": served}), series_set)


SERVED = {"lags": (champion("lags", "persistence"),), "range": (champion("range", "mean_range_5"),)}
NO_BASELINES: dict = {}


def statuses(step) -> list[tuple[int, str]]:
    return [(int(row["doc_id"].rsplit("|", 1)[1]), row["status"]) for row in step.rows]


def test_bars_are_taken_in_time_order_and_the_window_keeps_the_last_state_bars():
    step = transition(SERIES, empty_window(), None, bars(*reversed(range(30))), {}, NOW, NO_BASELINES)
    assert statuses(step) == [(T0 + s * DAY, "unscored") for s in range(30)]  # nothing serves: none predicted
    assert step.window["timestamp"] == [T0 + s * DAY for s in range(30 - STATE_BARS, 30)]
    assert step.pending is None


def test_without_a_champion_the_reference_baselines_forecast_every_bar_with_enough_history():
    step = transition(SERIES, empty_window(), None, bars(*range(30)), {}, NOW)
    assert [s for _, s in statuses(step)] == ["unscored"] * 20 + ["predicted"] * 10  # unscored: too little history
    first = next(row for row in step.rows if row["status"] == "predicted")
    assert (first["model"], first["model_version"], first["model_run_id"]) == ("persistence", "baseline", None)
    assert (first["range_model"], first["volatility_model"], first["interval_model"]) == (
        "mean_range_5", "ewma", "rolling_std_normal")
    assert {first[f] for f in ("range_version", "volatility_version", "interval_version")} == {"baseline"}
    assert first["predicted_close"] == first["last_close"] and first["lower"] < first["last_close"] < first["upper"]


def test_each_question_is_served_by_the_most_specific_champion_that_covers_the_series():
    day, stocks, listed = SeriesSet("day"), SeriesSet("day", 1, "stocks"), SeriesSet("day", tickers=frozenset({"AAA"}))
    champions = {"lags": (champion("lags", "persistence", listed, 3), champion("lags", "persistence", stocks, 2),
                          champion("lags", "persistence", day, 1)),
                 "range": (champion("range", "last_range", SeriesSet("hour", 1, "fx"), 7),)}
    def served_by(ticker):
        step = transition((ticker, "day", 1), empty_window(), None, bars(*range(22)), champions, NOW)
        row = next(row for row in step.rows if row["status"] == "predicted")
        return row["model_version"], row["range_version"]
    assert served_by("AAA") == ("finstream-lags-day1-t-AAA/3", "baseline")  # no range champion covers day bars
    assert served_by("BBB") == ("finstream-lags-day1-stocks/2", "baseline")
    assert served_by("X:BTCUSD") == ("finstream-lags-day1/1", "baseline")


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
        "persistence", "finstream-lags-day1/1", "mean_range_5")
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
    hourly = {"lags": (champion("lags", "persistence", SeriesSet("hour")),)}
    step = transition(SERIES, empty_window(), None, bars(*range(25)), hourly, NOW, NO_BASELINES)
    assert {s for _, s in statuses(step)} == {"unscored"}
    other = {"lags": (champion("lags", "persistence", SeriesSet("day", tickers=frozenset({"BBB"}))),),
             "range": SERVED["range"]}
    step = transition(SERIES, empty_window(), None, bars(*range(25)), other, NOW, NO_BASELINES)
    predicted = [row for row in step.rows if row["status"] == "predicted"]
    assert predicted and all("predicted_close" not in row and "predicted_range" in row for row in predicted)


def test_the_inputs_are_not_modified():
    first = transition(SERIES, empty_window(), None, bars(*range(22)), SERVED, NOW)
    window, pending, batch = copy.deepcopy(first.window), copy.deepcopy(first.pending), bars(22, 23)
    before = copy.deepcopy(batch)
    transition(SERIES, window, pending, batch, SERVED, NOW)
    assert (window, pending, batch) == (first.window, first.pending, before)


def test_a_forecast_that_overflows_is_left_out_and_the_series_goes_on():
    # A linear variance model trained on returns of about 1 %, then a valid bar at the price
    # floor (1e-12) after 25 ordinary ones: its next bar's returns are about 1e14, the interval's
    # exp(q x sigma) overflows. The interval is left out of that document; nothing raises, and
    # the other questions are forecast as usual.
    n = len(FORECAST_FEATURES)
    coefficients = [0.0] * n
    coefficients[FORECAST_FEATURES.index("ret_std_20")] = 2e-5
    coefficients[FORECAST_FEATURES.index("range_pct")] = 1e-5
    variance = {"kind": "linear", "features": list(FORECAST_FEATURES), "mean": [0.0] * n,
                "scale": [1 / 0.01] * 7 + [1 / 0.02, 1 / 0.01, 1 / 0.5, 1 / 0.005, 1 / 0.05, 1 / 7, 1 / 2],
                "coefficients": coefficients, "intercept": 1e-4}
    def served(question, **extra):
        spec = {"question": question, "served": "linear", "regressor": variance, **extra}
        return (ServedModel(f"finstream-{question}-day1/1", "linear", forecaster(spec), DAILY),)
    champions = {"interval": served("interval", quantiles=[-1.6, 1.6]), "volatility": served("volatility")}
    history = bars(*range(25))
    floor = bars(25)
    for name in ("open", "high", "low", "close"):
        floor[name] = [1e-12]
    after = bars(26, 27, offset0=26)
    window, pending = empty_window(), None
    rows = []
    for batch in (history, floor, after):
        step = transition(SERIES, window, pending, batch, champions, NOW)
        window, pending, rows = step.window, step.pending, rows + step.rows
    assert all(math.isfinite(v) for row in rows for v in row.values() if isinstance(v, float))
    predicted = {int(row["doc_id"].rsplit("|", 1)[1]): row for row in rows if row["status"] == "predicted"}
    at_26 = predicted[T0 + 26 * DAY]
    assert "lower" not in at_26 and "interval_model" not in at_26  # exp overflowed: no interval
    assert at_26["volatility_model"] == "linear" and at_26["model"] == "persistence"
    assert {"lower", "upper"} <= set(predicted[T0 + 24 * DAY])  # before the floor: a whole document
