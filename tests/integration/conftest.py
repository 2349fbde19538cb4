"""Integration fixtures: the real local Kafka and Elasticsearch (`make up`), and for each
test its own topic, indices and checkpoint, removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from elasticsearch import helpers
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from bench.cleanup import drop_run_data
from finstream.core.config import Settings, local_dir
from finstream.core.questions import QUESTIONS, SERVED
from finstream.core.schema import INDEX_MAPPINGS, Bar
from finstream.core.series_sets import SeriesSet
from finstream.serving import installed
from finstream.stores import checkpoints, elastic, registry, topics
from producer.publisher import BarPublisher

ROOT = Path(__file__).resolve().parents[2]
TRAINING_JVM = {"SPARK_SUBMIT_OPTS": ""}  # the default JIT (see the pipeline fixture)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@dataclass
class Pipeline:
    """One isolated pipeline on the shared local stack."""

    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.load(environ=self.env)

    def es(self):
        return elastic.client(self.settings)

    def publish(self, values: list[tuple[bytes | None, bytes]]) -> None:
        topics.ensure_topic(self.settings)
        with BarPublisher(self.settings) as publisher:
            for key, value in values:
                publisher.send_raw(key, value)

    def run(self, *args: str, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), cwd=ROOT, env={**os.environ, **self.env, **(env or {})},
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        return result

    def mistake(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Runs a command a user got wrong; returns its one line of output, having checked
        that it exits with 2 and prints no traceback."""
        result = subprocess.run(list(args), cwd=ROOT, env={**os.environ, **self.env, **(env or {})},
                                capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 2, f"{args} exited {result.returncode}:\n{output[-3000:]}"
        assert "Traceback" not in output and "Exception" not in output, output[-3000:]
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, output[-3000:]
        return errors[0]

    def stream_index(self) -> subprocess.CompletedProcess:
        return self.run("./spark-submit.sh", "jobs/stream_index.py", "--available-now")

    def train(self, *args: str, plots: bool = False) -> subprocess.CompletedProcess:
        return self.run("./spark-submit.sh", "jobs/train.py", *(() if plots else ("--no-plots",)), *args,
                        env=TRAINING_JVM)

    def trainings(self, *runs: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
        """train.py runs started at once on this pipeline's Kafka, indices and MLflow store (as
        two people, or two scheduled jobs, might); each must succeed. Their results, in order.
        (On two cores this saves no time: it is for what it proves.)"""
        with ThreadPoolExecutor(len(runs)) as pool:
            return list(pool.map(lambda args: self.train(*args), runs))

    def start_stream(self, log_path: Path, **env: str) -> subprocess.Popen:
        """The stream job running continuously, in its own process group (so that a test
        can SIGKILL the JVM and its Python driver together)."""
        return subprocess.Popen(["./spark-submit.sh", "jobs/stream_index.py"], cwd=ROOT,
                                env={**os.environ, **self.env, **env}, stdout=log_path.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)

    def committed_batches(self) -> int:
        commits = self.settings.query_checkpoint("index-bars") / "commits"
        return len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.exists() else 0

    def ids(self, index: str) -> set[str]:
        es = self.es()
        es.indices.refresh(index=index)
        return {hit["_id"] for hit in helpers.scan(es, index=index, _source=False)}

    def count(self, index: str) -> int:
        return elastic.count(self.es(), index)

    def documents(self, index: str) -> dict[str, dict]:
        es = self.es()
        es.indices.refresh(index=index)
        hits = es.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
        return {h["_id"]: h["_source"] for h in hits}

    def checkpoint_offsets(self, query: str = "index-bars") -> dict[int, int]:
        """Partition -> next offset, as of the last batch the query committed."""
        return checkpoints.resume_offsets(self.settings.query_checkpoint(query), self.settings.kafka_topic)


@pytest.fixture(scope="session")
def stack():
    settings = Settings.load()
    try:
        elastic.client(settings).cluster.health(wait_for_status="yellow", timeout="10s")
        KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers).close()
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        pytest.fail(f"the local stack is not running ({exc!r}): start it with `make up`")
    return settings


def new_pipeline(name: str) -> Pipeline:
    """A pipeline of its own on the shared stack: topic, indices, checkpoint, models, MLflow store."""
    run_id = f"{name[:30].lower().replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    env = {
        "KAFKA_TOPIC": f"test-{run_id}",
        "KAFKA_TOPIC_PARTITIONS": "2",
        **{field.upper(): f"test-{field.removeprefix('es_index_').replace('_', '-')}-{run_id}"
           for field in INDEX_MAPPINGS},
        "SPARK_EVENT_LOG_DIR": str(local_dir() / "test-spark-events" / run_id),
        "CHECKPOINT_DIR": str(local_dir() / "test-checkpoints" / run_id),
        "MODEL_DIR": str(local_dir() / "test-models" / run_id),
        "MLFLOW_TRACKING_URI": f"sqlite:///{local_dir() / 'test-mlflow' / run_id / 'mlflow.db'}",
        # The tests' stream jobs are short and small: the JIT's optimising tier costs them more
        # than it earns (an empty stream run: 21 -> 17.5 s). Training is compute-bound and keeps
        # it (TRAINING_JVM; the illusion test: 84 s with it, 101 s without), as do products.
        "SPARK_SUBMIT_OPTS": "-XX:TieredStopAtLevel=1",
    }
    return Pipeline(env)


@pytest.fixture
def pipeline(stack, request):
    pipe = new_pipeline(request.node.name)
    yield pipe
    drop_run_data(pipe.es(), pipe.settings)


def topic_bars(settings) -> list[dict]:
    """Every message of the settings' topic, decoded, in (partition, offset) order."""
    return [json.loads(value) for value in topic_values(settings)]


def topic_values(settings) -> list[bytes]:
    """Every committed record value of the settings' topic, in (partition, offset) order: read up
    to the end offsets, so no idle timeout is waited out."""
    consumer = topics.consumer(settings, enable_auto_commit=False, group_id=None, consumer_timeout_ms=10_000)
    try:
        partitions = [TopicPartition(settings.kafka_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.kafka_topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records = []
        for tp in partitions:
            empty = 0  # an aborted transaction's records and markers come as polls without records
            while consumer.position(tp) < ends[tp]:
                batch = consumer.poll(timeout_ms=2_000)
                empty = 0 if batch else empty + 1
                if empty == 5:
                    raise AssertionError(f"{tp} could not be read to its end offset {ends[tp]}")
                records += [r for rs in batch.values() for r in rs]
        return [r.value for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    finally:
        consumer.close()


def wait_until(condition, timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def drive_stack(command: str, *args: str, **env: str) -> None:
    """Drives the local stack (stop/start a server) from a test."""
    subprocess.run([str(ROOT / "stack" / command), *args], check=True, cwd=ROOT, env={**os.environ, **env},
                   capture_output=True, timeout=240)


def register_version(settings: Settings, question: str, scorer: dict | bytes, metadata: dict | bytes,
                     champion: bool = True, series_set: SeriesSet | None = None, name: str | None = None) -> str:
    """Registers a version of finstream-<question>-<set> as train.py does, with the given
    serving files (bytes: written as they are, for broken ones), and makes it the champion
    (`champion`: unless it has one). The set: `series_set`, else the metadata's `series`, else
    daily bars; `name` overrides the registered model's name (a registry made before sets:
    finstream-<question>). Returns the version."""
    client = registry.client(settings)
    run = client.create_run(registry.experiment_id(client, settings), run_name=f"test-{question}")
    if series_set is None:
        series_set = installed.series_set(metadata) if isinstance(metadata, dict) else SeriesSet("day")
    if name is None:
        client.log_param(run.info.run_id, "series_set", series_set.key)
    else:  # as a run made before series sets recorded its series
        for key, value in (("timespan", series_set.timespan), ("multiplier", series_set.multiplier),
                           ("tickers", ",".join(sorted(series_set.tickers)) or "all")):
            client.log_param(run.info.run_id, key, value)
    if isinstance(metadata, dict):
        metadata = {**metadata, "mlflow_run_id": run.info.run_id}
        client.log_param(run.info.run_id, "served", metadata.get("model", "?"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / registry.SERVING
        folder.mkdir()
        for filename, content in ((installed.SCORER, scorer), (installed.METADATA, metadata)):
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            (folder / filename).write_bytes(data)
        client.log_artifacts(run.info.run_id, str(folder), registry.SERVING)
    client.set_terminated(run.info.run_id)
    name = name or registry.model_name(question, series_set)
    version, _ = registry.register(client, name, run.info.run_id, f"runs:/{run.info.run_id}/{registry.SERVING}",
                                   passed=champion)
    return version


def wait_for_champions(settings: Settings, timeout: float = 60) -> None:
    """Until a running stream job's driver has installed every question's champion (it looks
    every MODEL_POLL_SECONDS): bars published after this are served by them."""
    client = registry.client(settings)

    def all_installed() -> bool:
        for question in SERVED:
            for name in registry.registered_models(client, question):
                current = registry.champion(client, name)
                if current is None or name == registry.model_name(question):
                    continue  # none, or a registry made before sets (its set may have a model of its own)
                served_set = registry.series_set_of(client, name, current)
                if installed.installed_version(settings.model_path, question, served_set.key) != str(current.version):
                    return False
        return True

    wait_until(all_installed, timeout, "the stream job to install the champions", 0.5)


def publish_baselines(settings: Settings, timespan: str = "day", multiplier: int = 1) -> None:
    """What train.py registers for a question whose models do not beat its naive baseline:
    the baseline serves, as a registered version of the set (timespan, multiplier)."""
    for question in SERVED:
        baseline = QUESTIONS[question].reference
        series = SeriesSet(timespan, multiplier).as_dict()
        register_version(settings, question, {"question": question, "served": baseline},
                         {"model": baseline, "series": series})


def assert_predictions(pipeline: Pipeline, bars: list[Bar]) -> None:
    """With baselines serving and each series' bars published in time order: one prediction per
    bar from the 21st of its series on (the first 20 are its features' history), each judged by
    the series' next bar, whatever crashed in between."""
    by_series: dict[tuple, list[Bar]] = {}
    for bar in sorted({b.doc_id: b for b in bars}.values(), key=lambda b: b.timestamp):
        by_series.setdefault((bar.ticker, bar.timespan, bar.multiplier), []).append(bar)
    es = pipeline.es()
    index = pipeline.settings.es_index_predictions
    es.indices.refresh(index=index)
    docs = {hit["_id"]: hit["_source"] for hit in helpers.scan(
        es, index=index, _source=["timestamp", "last_close", "actual_close", "actual_timestamp"])}
    expected = {}
    for series in by_series.values():
        for bar, following in zip(series[20:], [*series[21:], None], strict=False):
            expected[bar.doc_id] = (bar, following)
    assert set(docs) == set(expected), (f"{len(set(expected) - set(docs))} missing, "
                                        f"{len(set(docs) - set(expected))} unexpected predictions")
    for doc_id, (bar, following) in expected.items():
        doc = docs[doc_id]
        assert (doc["timestamp"], doc["last_close"]) == (bar.timestamp, bar.close), doc_id
        if following is None:
            assert "actual_close" not in doc, doc_id
        else:
            assert (doc.get("actual_close"), doc.get("actual_timestamp")) == (following.close, following.timestamp), \
                doc_id
