"""Training on the replayed log: Spark MLlib linear, random-forest and GBT regressors for each
question, chosen on a validation slice of the training period, evaluated on the later holdout
against naive baselines with a Diebold-Mariano test; the stream serves the chosen model only
if it is significantly better, its baseline otherwise.

    ./spark-submit.sh jobs/train.py                          # next close, interval, range, volatility
    ./spark-submit.sh jobs/train.py --questions volume,ohlv  # the original report's questions
    ./spark-submit.sh jobs/train.py --source es --tune --timespan hour
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from pyspark.sql import SparkSession

from finstream.core.config import Settings
from finstream.core.errors import (
    ArgumentParser,
    choice_list,
    exit_on_user_error,
    fraction,
    non_negative_int,
    positive_int32,
    ticker_list,
)
from finstream.core.logs import setup_logging
from finstream.core.questions import QUESTIONS, SERVED
from finstream.core.schema import TIMESPANS
from finstream.core.series_sets import SeriesSet
from finstream.stores import registry
from finstream.training import selection, steps
from finstream.training.regressors import REGRESSORS, load_params
from finstream.training.reporting import metrics_table, outcome
from finstream.training.results import TrainingReport
from finstream.training.tracking import new_run_id, track, write_plots

# TrainOptions' fields that are flags of the same name (the question is looped over).
OPTION_FLAGS = [f.name for f in dataclasses.fields(selection.TrainOptions) if f.name != "question"]


def series_set_key(value: str) -> str:
    """--set: a series set's key (finstream.core.series_sets), checked; empty: none."""
    if not value:
        return ""
    try:
        return SeriesSet.parse(value).key
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="jobs/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("kafka", "es"), default="kafka",
                        help="replay the Kafka topic (default) or read the bars index")
    defaults = selection.TrainOptions()
    parser.add_argument("--questions", "--features", dest="questions", type=choice_list(tuple(QUESTIONS)),
                        default=SERVED,
                        help=f"comma-separated questions: {', '.join(QUESTIONS)} (default: the four the "
                             f"stream serves, {','.join(SERVED)}; --features is the old name)")
    parser.add_argument("--tickers", type=ticker_list, default=defaults.tickers,
                        help="comma-separated (default: every ticker of the timespan)")
    parser.add_argument("--timespan", default=defaults.timespan, choices=TIMESPANS)
    parser.add_argument("--multiplier", type=positive_int32, default=defaults.multiplier)
    parser.add_argument("--test-fraction", type=fraction, default=defaults.test_fraction)
    parser.add_argument("--folds", type=non_negative_int, default=defaults.folds,
                        help="walk-forward folds (expanding window)")
    parser.add_argument("--models", type=choice_list(tuple(REGRESSORS)), default=defaults.models)
    parser.add_argument("--tune", action="store_true", default=defaults.tune,
                        help="choose hyper-parameters from conf/models.toml's grid on the validation slice")
    parser.add_argument("--promote", action="store_true",
                        help="make each registered version the champion even if its model does not beat the naive "
                             "baseline (it then serves the baseline): for a new series the stream should follow")
    parser.add_argument("--set", dest="series_set", type=series_set_key, default=defaults.series_set,
                        help="register for this series set (e.g. hour1-fx, day1-stocks, day1-t-AAPL+GOOG); default: "
                             "the tickers given, else the asset class of the tickers trained on, else the timespan")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--report-dir", help="default: .local/reports/<run id>")
    args = parser.parse_args(argv)
    if args.series_set:
        chosen = SeriesSet.parse(args.series_set)
        if (chosen.timespan, chosen.multiplier) != (args.timespan, args.multiplier):
            parser.error(f"--set {args.series_set} is for {chosen.timespan} bars x{chosen.multiplier}: train on them "
                         f"(--timespan {chosen.timespan} --multiplier {chosen.multiplier})")
    return args


def train_options(args: argparse.Namespace, question: str) -> selection.TrainOptions:
    return selection.TrainOptions(question=question, **{name: getattr(args, name) for name in OPTION_FLAGS})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    run_id = new_run_id()
    es = steps.check_servers(settings, args.source)  # before any Spark work
    report_dir = steps.report_dir(run_id, args.report_dir)
    data_source = steps.data_source(settings, args.source)
    spark = SparkSession.builder.appName("finstream-train").getOrCreate()
    bars = steps.read_bars(spark, settings, args.source, es)
    config = load_params()
    for question in args.questions:
        run = selection.run(bars, train_options(args, question), config)
        report = TrainingReport.from_run(run, run_id, args.source)
        plots = [] if args.no_plots else write_plots(run, report_dir)
        report = report.registered_as(track(run, report, settings, plots, data_source, promote=args.promote))
        path = report_dir / f"{question}.json"
        indexed = steps.save_report(report, path, settings, es)
        print("\n" + metrics_table(report), flush=True)
        print(outcome(report, registry.shown_uri(settings), path, len(plots), indexed,
                      settings.es_index_model_metrics), flush=True)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
