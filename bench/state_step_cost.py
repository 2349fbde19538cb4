"""The predictor's state step outside Spark: what one call costs per bucket of series and per
bar, split into the three parts a Python worker runs for each group Spark hands it.

    .venv/bin/python -m bench.state_step_cost
    .venv/bin/python -m bench.state_step_cost --repeats 9 --out /tmp/state_step_cost

- input: the group's Arrow columns to the pandas frame the step reads, with pyspark's own
  ApplyInPandasWithStateSerializer.arrow_to_pandas per column and the frame built from them
  as its worker does (pd.concat), the job's clock column and the bucket key included;
- step: finstream.serving.predictor.predict_bucket (state in and out, features, the four
  questions' forecasts, judging, the output frame);
- output: the returned frame to an Arrow record batch (the serializer's _create_batch over
  OUTPUT_SCHEMA).

Not included: the JVM's side (reading the Kafka rows, the shuffle, the state store and its
commit, the Elasticsearch write) and the pickling of the bucket's state. Each question is
served by a linear model over the spec's features with random coefficients: a linear model's
cost does not depend on them, and it is the served kind with the most arithmetic per bar (a
four-way fused multiply-add dot product, emulated exactly: finstream.serving.scorers).

Scenarios (each run --repeats times; median, min and max):
- `one series per bucket, one bar`: the per-call cost (10 and 100 bars/s at 100 tickers:
  most buckets with bars hold one);
- `40 series per bucket, one bar each`: a whole market closing a minute (10 000 series in
  256 buckets);
- `10 series per bucket, 500 bars each`: a backlog, where the per-bar cost dominates.
Writes bench/results/state_step_cost.{json,md}.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from unittest import mock

import pandas as pd
import pyarrow as pa
from pyspark.sql.pandas.serializers import ApplyInPandasWithStateSerializer
from pyspark.sql.pandas.types import to_arrow_type

from bench import flags, report
from bench.latency import MINUTE_MS
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error
from finstream.core.questions import served
from finstream.core.series_sets import SeriesSet
from finstream.features.spec import FORECAST_FEATURES
from finstream.serving import predictor, worker
from finstream.serving.forecasters import forecaster
from finstream.serving.installed import ServedModel

T0 = 1_700_000_000_000  # the first bar's time (epoch ms)
HISTORY = 30  # bars each series has before the measured call: enough for its features, and a prediction pending
PARTS = ("input", "step", "output")
SCENARIOS = {  # name -> (series per bucket, new bars per series)
    "one series per bucket, one bar": (1, 1),
    "40 series per bucket, one bar each": (40, 1),
    "10 series per bucket, 500 bars each": (10, 500),
}


class FixedModels:
    """The served models' surface predict_bucket reads (worker.served_models(...).current())."""

    def __init__(self, champions: dict) -> None:
        self.champions = champions

    def current(self) -> dict:
        return self.champions


def linear_champions(seed: int = 1) -> dict[str, tuple[ServedModel, ...]]:
    """Per served question, one linear model over every minute series (random coefficients)."""
    rnd = random.Random(seed)
    n = len(FORECAST_FEATURES)
    champions = {}
    for question in served():
        regressor = {"kind": "linear", "features": list(FORECAST_FEATURES),
                     "mean": [rnd.random() for _ in range(n)], "scale": [rnd.random() for _ in range(n)],
                     "coefficients": [rnd.uniform(-1e-3, 1e-3) for _ in range(n)], "intercept": 1e-4}
        spec = {"question": question.name, "served": "linear", "regressor": regressor, "quantiles": [-1.6, 1.6]}
        champions[question.name] = (ServedModel(f"finstream-{question.name}-bench/1", "linear", forecaster(spec),
                                                SeriesSet("minute")),)
    return champions


def bars(tickers: list[str], steps: range) -> pd.DataFrame:
    """Minute bars of `tickers` at `steps` (INPUT_COLUMNS), prices moving a little."""
    rows = []
    for number, ticker in enumerate(tickers):
        for step in steps:
            price = 100.0 + number % 10 + (step % 7) * 0.3
            rows.append({"ticker": ticker, "timespan": "minute", "multiplier": 1, "timestamp": T0 + step * MINUTE_MS,
                         "open": price, "high": price * 1.01, "low": price * 0.99, "close": price * 1.001,
                         "volume": 1000.0 + step, "vwap": price, "published_at": T0 + step * MINUTE_MS + 5,
                         "kafka_offset": step})
    return pd.DataFrame(rows, columns=list(predictor.INPUT_COLUMNS))


def as_arrow(frame: pd.DataFrame) -> pa.Table:
    """The group as the JVM sends it: INPUT_COLUMNS, the job's clock and the bucket key."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("multiplier"), "multiplier",
                             table.column("multiplier").cast(pa.int32()))  # Spark's int, as bar_schema has it
    received = pa.array([T0 * 1000] * len(frame), pa.timestamp("us", tz="UTC"))
    return table.append_column("received", received).append_column(predictor.BUCKET, pa.array([0] * len(frame)))


class State:
    """The GroupState surface predict_bucket uses, holding a bucket's state between calls."""

    def __init__(self, value=None) -> None:
        self.value, self.hasTimedOut = value, False

    @property
    def exists(self) -> bool:
        return self.value is not None

    @property
    def get(self):
        return self.value

    def update(self, value) -> None:
        self.value = value

    def remove(self) -> None:
        self.value = None

    def setTimeoutTimestamp(self, ms: int) -> None:  # noqa: N802 - Spark's name
        pass

    def getCurrentWatermarkMs(self) -> int:  # noqa: N802
        return -1


def one_call(table: pa.Table, state: State, serializer: ApplyInPandasWithStateSerializer,
             output_types: list, clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, float], dict]:
    """Seconds of each part for one group, and its output rows per status."""
    started = clock()
    frame = pd.concat([serializer.arrow_to_pandas(column) for column in table.itercolumns()], axis=1)
    read = clock()
    out = list(predictor.predict_bucket((0,), iter([frame]), state, model_dir="bench", idle_hours=24,
                                        clock=lambda: (T0 + HISTORY * MINUTE_MS) / 1000 + 60))
    stepped = clock()
    for result in out:
        serializer._create_batch([(result[name], kind) for name, kind in output_types])
    seconds = {"input": read - started, "step": stepped - read, "output": clock() - stepped}
    return seconds, pd.concat(out)["status"].value_counts().to_dict() if out else {}


def measure(series: int, new_bars: int, buckets: int, repeats: int) -> dict:
    """Per repeat: `buckets` calls, each a bucket of `series` series with HISTORY bars in its
    state receiving `new_bars` bars each; ms per call and per bar, per part, and the rows a
    call returned per status."""
    serializer = ApplyInPandasWithStateSerializer("UTC", False, True, predictor.STATE_SCHEMA, 10_000)
    output_types = [(f.name, to_arrow_type(f.dataType)) for f in predictor.OUTPUT_SCHEMA.fields]
    tickers = [f"T{i}" for i in range(series)]
    history = as_arrow(bars(tickers, range(HISTORY)))
    batch = as_arrow(bars(tickers, range(HISTORY, HISTORY + new_bars)))
    remembered = []
    for _ in range(buckets):
        state = State()
        one_call(history, state, serializer, output_types)
        remembered.append(state.value)
    runs, statuses = [], {}
    for _ in range(repeats):
        totals = dict.fromkeys(PARTS, 0.0)
        for value in remembered:
            seconds, statuses = one_call(batch, State(value), serializer, output_types)
            for part in PARTS:
                totals[part] += seconds[part]
        runs.append({part: seconds / buckets * 1000 for part, seconds in totals.items()})
    per_call = {part: [run[part] for run in runs] for part in PARTS}
    per_call["total"] = [sum(run.values()) for run in runs]
    bars_per_call = series * new_bars
    return {"series_per_bucket": series, "new_bars_per_series": new_bars, "buckets": buckets, "repeats": repeats,
            "rows_per_call": statuses,  # the last call's output rows per status: what the time bought
            "ms_per_call": {part: report.summary(values, 4) for part, values in per_call.items()},
            "ms_per_bar": {part: report.summary([v / bars_per_call for v in values], 4)
                           for part, values in per_call.items()}}


def table(results: dict[str, dict]) -> str:
    def cell(figures: dict) -> str:
        return f"{figures['median']:.3f} ({figures['min']:.3f}-{figures['max']:.3f})"
    lines = ["| scenario | per call, ms: input / step / output / total | per bar, ms: total |",
             "|---|---|---|"]
    for name, result in results.items():
        per_call = " / ".join(cell(result["ms_per_call"][part]) for part in (*PARTS, "total"))
        lines.append(f"| {name} | {per_call} | {cell(result['ms_per_bar']['total'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each scenario")
    parser.add_argument("--buckets", type=int, default=50, help="buckets (calls) per run")
    flags.add_out(parser, "state_step_cost")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.buckets < 1:
        parser.error("--repeats and --buckets must be at least 1")
    with mock.patch.object(worker, "served_models", lambda _model_dir: FixedModels(linear_champions())):
        results = {name: measure(series, new_bars, max(1, args.buckets // new_bars), args.repeats)
                   for name, (series, new_bars) in SCENARIOS.items()}
    report.write(args.out, {**report.run_info("state_step_cost"), "scenarios": results}, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
