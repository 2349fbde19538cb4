"""Common mistakes, made with the real commands on the real stack: each ends with one line
that says what to do, exit code 2, and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

from finstream.serving import predictor
from finstream.stores import checkpoints
from producer import samples

GOOG = samples.load_bars("goog-daily")
PRODUCER = (".venv/bin/python", "-m", "producer")
TRAIN = ("./spark-submit.sh", "jobs/train.py", "--no-plots", "--folds", "0", "--models", "linear")
STREAM = ("./spark-submit.sh", "jobs/stream_index.py", "--available-now")
NOWHERE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


def publish(pipeline, bars) -> None:
    pipeline.publish([(b.key, b.to_json()) for b in bars])


def test_kafka_unreachable(pipeline):
    for command in ((*PRODUCER, "replay", "--limit", "1"), STREAM, TRAIN):
        line = pipeline.mistake(*command, env=NOWHERE)
        assert "cannot reach Kafka at 127.0.0.1:1" in line and "make up" in line, command


def test_train_on_a_topic_that_does_not_exist(pipeline):
    line = pipeline.mistake(*TRAIN, env={"KAFKA_TOPIC": "no-such-topic"})
    assert "has no topic 'no-such-topic'" in line and "producer replay" in line


def test_bad_tickers_and_flags(pipeline):
    assert "give at least one ticker" in pipeline.mistake(*PRODUCER, "backfill", "--tickers", "")
    assert "not a ticker: aapl" in pipeline.mistake(*PRODUCER, "live", "--tickers", "aapl")
    assert "give at least one ticker" in pipeline.mistake(*TRAIN, "--tickers", " , ")
    assert "unknown: lag" in pipeline.mistake(*TRAIN, "--questions", "lag")
    live_ws = (*PRODUCER, "live", "--source", "websocket", "--tickers", "AAPL")
    assert "minute bars only" in pipeline.mistake(*live_ws, "--timespan", "day", env={"POLYGON_API_KEY": "k"})
    assert "no API key" in pipeline.mistake(*live_ws, env={"POLYGON_API_KEY": ""})
    line = pipeline.mistake(*PRODUCER, "live", env={"LIVE_SOURCE": "socket"})
    assert "setting LIVE_SOURCE='socket' (from the environment) is not one of: 'rest', 'websocket'" in line
    # Numbers out of range: refused before anything is sent or read, not sliced or looped on.
    assert pipeline.mistake(*PRODUCER, "replay", "--skip", "-1") == (
        "error: argument --skip: -1 is not a whole number, 0 or more (see python -m producer replay --help)")
    assert "fast is neither a number of bars per second" in pipeline.mistake(*PRODUCER, "replay", "--speed", "fast")
    assert "0 is not a whole number from 1 to 2147483647" in pipeline.mistake(*PRODUCER, "backfill", "--multiplier",
                                                                              "0")
    assert "-1 is not a number above 0, at most 86400" in pipeline.mistake(*PRODUCER, "live", "--poll-seconds", "-1")
    # ... and numbers too large for the clock they are added to (an OverflowError mid-run before).
    assert "1e300 is not a number above 0, at most 86400" in pipeline.mistake(*PRODUCER, "live", "--poll-seconds",
                                                                              "1e300")
    assert "1e-300 is neither a number of bars per second of 0.001 or more" in pipeline.mistake(
        *PRODUCER, "replay", "--speed", "1e-300")
    # Mistakes found before Kafka is reached: no topic is created or written for them.
    assert pipeline.mistake(*PRODUCER, "backfill", "--from", "2024-02-01", "--to", "2024-01-01",
                            env={"POLYGON_API_KEY": "k", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}) == (
        "error: --from 2024-02-01 is after --to 2024-01-01: give a start on or before the end")
    assert "1.5 is not a number between 0 and 1" in pipeline.mistake(*TRAIN, "--test-fraction", "1.5")
    line = pipeline.mistake(*PRODUCER, "replay", env={"KAFKA_TOPIC_PARTITIONS": "0"})
    assert line == ("error: setting KAFKA_TOPIC_PARTITIONS='0' (from the environment) is out of range: give a "
                    "whole number from 1 to 2147483647 (docs/configuration.md)")
    line = pipeline.mistake(*PRODUCER, "replay", env={"LIVE_POLL_SECONDS": "soon"})
    assert "setting LIVE_POLL_SECONDS='soon' (from the environment) is not a number" in line
    line = pipeline.mistake(*PRODUCER, "replay", env={"KAFKA_BOOTSTRAP_SERVERS": "localhost:abc"})
    # What follows a colon and is no port may be a password: hidden, and the line says so.
    assert "setting KAFKA_BOOTSTRAP_SERVERS='localhost:***' (from the environment) is not comma-separated " \
           "host:port" in line and line.endswith("(what followed a colon and was no port is shown as ***)")
    line = pipeline.mistake(*PRODUCER, "backfill",
                            env={"POLYGON_API_KEY": "", "POLYGON_API_KEY_FILE": "/nonexistent/key"})
    assert line == ("error: POLYGON_API_KEY_FILE='/nonexistent/key': cannot read it (No such file or directory): "
                    "name a readable file, or set POLYGON_API_KEY instead")
    line = pipeline.mistake(*PRODUCER, "replay", env={"KAFKA_TOPIC": f"{pipeline.settings.kafka_topic}-new",
                                                       "KAFKA_REPLICATION_FACTOR": "3"})
    assert "KAFKA_REPLICATION_FACTOR=3, but the cluster at" in line and "has 1 broker(s)" in line
    line = pipeline.mistake(*PRODUCER, "replay", env={"KAFKA_SECURITY_PROTOCOL": "sasl_ssl"})
    assert "setting KAFKA_SECURITY_PROTOCOL='sasl_ssl' (from the environment) is not one of: 'PLAINTEXT'" in line


def test_a_trigger_interval_spark_refuses(pipeline):
    line = pipeline.mistake("./spark-submit.sh", "jobs/stream_index.py", "--no-predict", "--trigger", "fast")
    assert line.startswith("error: --trigger='fast' is not a trigger interval Spark accepts; give a duration")


def test_train_without_bars_for_the_request_lists_what_there_is(pipeline):
    publish(pipeline, GOOG[:22])
    line = pipeline.mistake(*TRAIN, "--tickers", "NOPE", "--questions", "lags")
    assert "no bars of NOPE at day x1" in line and "--timespan day --multiplier 1: 22 bars of GOOG" in line
    line = pipeline.mistake(*TRAIN, "--questions", "lags")  # 22 bars: one row with 21 bars of history
    assert "too few bars for this split: 22 bars give 1 rows" in line


def test_an_index_with_an_incompatible_mapping(pipeline):
    settings = pipeline.settings
    pipeline.es().indices.create(index=settings.es_index_bars, mappings={"properties": {"close": {"type": "keyword"}}})
    line = pipeline.mistake(*STREAM)
    assert f"index {settings.es_index_bars} exists with a mapping this version cannot extend" in line


def test_a_model_directory_that_cannot_be_written_and_an_unusable_tracking_store(pipeline, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = pipeline.mistake(*STREAM, env={"MODEL_DIR": str(blocker / "models")})
    assert f"cannot write models to {blocker / 'models'}" in line and "MODEL_DIR" in line
    nowhere = "http://127.0.0.1:1"
    line = pipeline.mistake(*TRAIN, env={"MLFLOW_TRACKING_URI": nowhere})  # at once: no retries
    assert f"cannot use the MLflow tracking store at {nowhere}" in line and "MLFLOW_TRACKING_URI" in line


def test_a_second_stream_job_on_the_same_checkpoints(pipeline):
    """Refused before Spark starts, naming the job that holds them (test_checkpoint_lock.py has
    the lock's own cases)."""
    folder = pipeline.settings.checkpoint_path
    program = ("import dataclasses, time; from finstream.core.config import Settings; "
               "from finstream.stores import checkpoints; "
               f"settings = dataclasses.replace(Settings.load(), checkpoint_dir={str(folder)!r}); "
               "lock = checkpoints.one_job(settings); lock.__enter__(); "
               "print('held', flush=True); time.sleep(300)")
    first = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        line = pipeline.mistake(*STREAM)
    finally:
        first.kill()
        first.wait()
    assert line == (f"error: another stream job (pid {first.pid}) is using the checkpoints in {folder}: stop it, "
                    "or give this job its own CHECKPOINT_DIR")


def test_a_predictor_checkpoint_in_another_state_layout(pipeline):
    """An older version's per-series state, or another STREAM_STATE_BUCKETS: refused before Spark
    starts (the unit tests in test_state_layout.py cover the files)."""
    checkpoint = pipeline.settings.query_checkpoint("predict-bars")
    schema = checkpoint / "state" / "0" / "0" / "_metadata" / "schema"
    schema.parent.mkdir(parents=True)
    schema.write_bytes(b'v2 {"type":"struct","fields":[{"name":"ticker","type":"string"}]}')
    line = pipeline.mistake(*STREAM)
    assert f"predict-bars's checkpoint ({checkpoint}) keeps its state in a layout this version cannot read" in line
    schema.write_bytes(b'v2 {"type":"struct","fields":[{"name":"state_bucket","type":"long"}]}')
    layout = {"state_buckets": 64, "bucket_hash": predictor.BUCKET_HASH}
    (checkpoint / checkpoints.STATE_LAYOUT_FILE).write_text(json.dumps(layout))
    line = pipeline.mistake(*STREAM)
    assert "STREAM_STATE_BUCKETS is 256, but predict-bars's checkpoint" in line and "set it back to 64" in line


def test_elasticsearch_unreachable(pipeline):
    for command in (STREAM, TRAIN):
        line = pipeline.mistake(*command, env={"ES_NODES": "127.0.0.1:1"})
        assert "cannot reach Elasticsearch at http://127.0.0.1:1" in line and "make up" in line, command
