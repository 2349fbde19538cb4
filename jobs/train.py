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
import logging
import sys

from pyspark.sql import SparkSession

from finstream import elastic, registry, topics
from finstream.config import Settings, local_dir
from finstream.errors import ArgumentParser, choice_list, exit_on_user_error, ticker_list
from finstream.logs import setup_logging
from finstream.reporting import metrics_table, write_json
from finstream.spark import replay, training
from finstream.spark.features import FORECASTS, QUESTIONS
from finstream.spark.models import REGRESSORS, load_params
from finstream.spark.source import log_records
from finstream.spark.train_outputs import index_metrics, log_report, new_run_id, report_dict, track, write_plots

log = logging.getLogger(__name__)
# TrainOptions' fields that are flags of the same name (the question is looped over).
OPTION_FLAGS = [f.name for f in dataclasses.fields(training.TrainOptions) if f.name != "question"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="jobs/train.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("kafka", "es"), default="kafka",
                        help="replay the Kafka topic (default) or read the bars index")
    defaults = training.TrainOptions()
    parser.add_argument("--questions", "--features", dest="questions", type=choice_list(tuple(QUESTIONS)),
                        default=FORECASTS,
                        help=f"comma-separated questions: {', '.join(QUESTIONS)} (default: the four the "
                             f"stream serves, {','.join(FORECASTS)}; --features is the old name)")
    parser.add_argument("--tickers", type=ticker_list, default=defaults.tickers,
                        help="comma-separated (default: every ticker of the timespan)")
    parser.add_argument("--timespan", default=defaults.timespan)
    parser.add_argument("--multiplier", type=int, default=defaults.multiplier)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--folds", type=int, default=defaults.folds, help="walk-forward folds (expanding window)")
    parser.add_argument("--models", type=choice_list(tuple(REGRESSORS)), default=defaults.models)
    parser.add_argument("--tune", action="store_true", default=defaults.tune,
                        help="choose hyper-parameters from conf/models.toml's grid on the validation slice")
    parser.add_argument("--promote", action="store_true",
                        help="make each registered version the champion even if its model does not beat the naive "
                             "baseline (it then serves the baseline): for a new series the stream should follow")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--report-dir", help="default: .local/reports/<run id>")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    run_id = new_run_id()
    report_dir = local_dir() / "reports" / run_id if not args.report_dir else local_dir() / args.report_dir
    es = elastic.client(settings)
    elastic.require_cluster(es, settings)
    elastic.ensure_indices(es, settings, only=[settings.es_index_model_metrics])
    registry.require_store(settings)
    if args.source == "kafka":
        topics.require_topic(settings)
        # What the replay read: the log up to these offsets (recorded with each MLflow run).
        data_source = {"kafka_topic": settings.kafka_topic, "kafka_end_offsets": ",".join(
            f"{p}:{o}" for p, o in sorted(topics.end_offsets(settings).items()))}
    else:
        data_source = {"es_index": settings.es_index_bars}

    spark = SparkSession.builder.appName("finstream-train").getOrCreate()
    if args.source == "kafka":
        records = log_records(spark, settings)
    else:
        es_options = elastic.es_hadoop_options(settings, elastic.cluster_info(es), id_field=None)
        records = replay.es_records(spark, settings.es_index_bars, es_options)
    bars = replay.distinct_bars(records).persist()
    log.info("%s: %d distinct valid bars", args.source, bars.count())

    config = load_params()
    for question in args.questions:
        options = training.TrainOptions(question=question, **{name: getattr(args, name) for name in OPTION_FLAGS})
        run = training.run(bars, options, config)
        report = report_dict(run, run_id, args.source, None)
        plots = [] if args.no_plots else write_plots(run, report_dir)
        tracked = track(run, report, settings, plots, data_source, promote=args.promote)
        report.update(mlflow_run_id=tracked["mlflow_run_id"], registered_alias=tracked["alias"],
                      model_version=tracked["version"] and f"{registry.model_name(question)}/{tracked['version']}")
        write_json(report, report_dir / f"{question}.json")
        log_report(settings, tracked["mlflow_run_id"], report)
        indexed = index_metrics(es, settings.es_index_model_metrics, report)
        print("\n" + metrics_table(report), flush=True)
        registered = (f"model {report['model_version']} ({tracked['alias']})" if tracked["version"]
                      else "not registered (the stream does not serve this question)")
        print(f"{registered}; MLflow run {tracked['mlflow_run_id']} at {registry.tracking_uri(settings)}\n"
              f"report {report_dir / f'{question}.json'}; {len(plots)} plots; "
              f"{indexed} metric documents in {settings.es_index_model_metrics}\n", flush=True)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
