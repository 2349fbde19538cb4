"""The stream job's checkpoints, read as files (no Spark): where each query resumes in the
topic, and whether the log still holds it; and the lock that keeps one job writing them.

A Structured Streaming checkpoint keeps, per micro-batch, the planned end offsets
(`offsets/<batch>`, JSON on the last line) and, once the batch's output is written, a marker
(`commits/<batch>`). A restart resumes from the end offsets of the last committed batch."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from finstream.core import locks
from finstream.core.config import Settings
from finstream.core.errors import UserError, os_reason, require_folder
from finstream.stores import topics

JOB_LOCK_FILE = "stream-job.lock"  # in CHECKPOINT_DIR, beside the queries' folders
# A stopped job's Python driver can outlive its JVM by a few seconds: a restart waits that long.
JOB_LOCK_SECONDS = 5.0


@contextlib.contextmanager
def one_job(settings: Settings, seconds: float = JOB_LOCK_SECONDS) -> Iterator[None]:
    """Holds CHECKPOINT_DIR for this stream job while it runs: a second job on the same folder
    (a second terminal, a service started twice) stops at start with one line naming the
    first, instead of both writing the same offset logs and state. Spark itself does not stop
    it on a local or mounted disk: whichever manager writes the checkpoint
    (spark.sql.streaming.checkpointFileManagerClass, conf/spark-defaults.conf), Hadoop's local
    file system checks for an existing file and then renames, so two writers race.

    Raises:
        UserError: CHECKPOINT_DIR or its lock file cannot be made or opened, or another live
            process held the lock for `seconds` (its pid is named).
    """
    folder = settings.checkpoint_path
    lock_path = folder / JOB_LOCK_FILE
    require_folder(folder, "checkpoints", "set CHECKPOINT_DIR to a folder this user can write")
    try:
        # Not through a symbolic link: a dangling one would make its target wherever it points.
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if not os.path.lexists(lock_path):  # the folder refuses a new file: not the lock file's fault
            raise UserError(f"cannot write checkpoints to {folder} ({os_reason(exc, lock_path)}): set "
                            "CHECKPOINT_DIR to a folder this user can write") from None
        raise UserError(f"cannot open the stream job's lock file {lock_path} ({exc.strerror or exc}): remove it "
                        "if no stream job is running, or set CHECKPOINT_DIR to another folder") from None
    try:
        if not locks.acquire(descriptor, seconds):
            holder = os.pread(descriptor, 16, 0).decode("ascii", "replace").strip()
            holder = f"pid {holder}" if holder.isdigit() else "its pid unknown"
            raise UserError(f"another stream job ({holder}) is using the checkpoints in {folder}: stop it, or "
                            "give this job its own CHECKPOINT_DIR")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _batches(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def planned_offsets(checkpoint: Path, topic: str, batch_id: int) -> dict[int, int]:
    """Partition -> the end offset micro-batch `batch_id` planned to read to, from the query's
    offset log (its last line is the Kafka source's offsets: one source per query).

    Raises:
        OSError: no such entry. ValueError, IndexError, AttributeError, TypeError: an entry torn
            or not Spark's Kafka offsets.
    """
    planned = (checkpoint / "offsets" / str(batch_id)).read_text().strip().splitlines()[-1]
    return {int(partition): int(offset) for partition, offset in json.loads(planned).get(topic, {}).items()}


def resume_offsets(checkpoint: Path, topic: str) -> dict[int, int]:
    """Partition -> the offset a restarted query reads first; empty before its first commit.

    Args:
        checkpoint: the query's checkpoint folder (Settings.query_checkpoint).
        topic: the Kafka topic whose offsets to read.
    """
    committed = _batches(checkpoint / "commits")
    return planned_offsets(checkpoint, topic, committed[-1]) if committed else {}


def behind(settings: Settings, query: str) -> dict[int, int]:
    """Partition -> the records a query has still to read: the log's end (a committed reader's)
    less where the query resumes (from the log's first offset for a partition its checkpoint
    does not know: a new checkpoint, or a partition added since).

    Args:
        settings: the topic, the cluster and the checkpoints' folder.
        query: the streaming query's name (its checkpoint: Settings.query_checkpoint).
    """
    resume = resume_offsets(settings.query_checkpoint(query), settings.kafka_topic)
    first = topics.beginning_offsets(settings)
    return {partition: max(0, end - resume.get(partition, first.get(partition, 0)))
            for partition, end in topics.end_offsets(settings).items()}


def batch_records(checkpoint: Path, topic: str, batch_id: int) -> int | None:
    """The records micro-batch `batch_id` reads from `topic`: its planned end offsets less the
    batch before it's, from the query's offset log (written before the batch runs).

    Args:
        checkpoint: the query's checkpoint folder (Settings.query_checkpoint).
        topic: the Kafka topic.
        batch_id: the micro-batch.

    Returns:
        The record count (a partition new since the batch before counts from offset 0, an
        overestimate if its first records are deleted), or None when either entry is missing or
        unreadable (the query's first batch).
    """
    try:
        before, after = (planned_offsets(checkpoint, topic, batch) for batch in (batch_id - 1, batch_id))
    except (OSError, ValueError, IndexError, AttributeError, TypeError):  # missing, torn or foreign
        return None
    return sum(max(0, offset - before.get(partition, 0)) for partition, offset in after.items())


@dataclass(frozen=True)
class Gap:
    """Offsets of one partition that a query still has to read and the log no longer holds.

    Attributes:
        topic: the Kafka topic.
        partition: the partition.
        first_missing: the offset the query resumes from.
        first_available: the first offset the log still holds; the gap ends just before it.
    """

    topic: str
    partition: int
    first_missing: int
    first_available: int

    def __str__(self) -> str:
        return (f"{self.topic} partition {self.partition} offsets {self.first_missing}-{self.first_available - 1} "
                f"({self.first_available - self.first_missing} records)")


class LogGap(UserError):
    """The log lost records a query has not processed; the message names them and the ways out."""


def gaps(settings: Settings, queries: list[str]) -> list[Gap]:
    """Records a query still has to read that the log no longer holds (deleted or aged out).

    Args:
        settings: the topic, the cluster and the checkpoints' folder.
        queries: the streaming queries' names (each has its own checkpoint).

    Returns:
        The gaps, by partition and first missing offset; empty when nothing is missing.
    """
    found = []
    first = topics.beginning_offsets(settings)
    for query in queries:
        for partition, offset in resume_offsets(settings.query_checkpoint(query), settings.kafka_topic).items():
            if offset < first.get(partition, 0):
                found.append(Gap(settings.kafka_topic, partition, offset, first[partition]))
    return sorted(set(found), key=lambda g: (g.partition, g.first_missing))


def require_no_gap(settings: Settings, queries: list[str]) -> None:
    """Raises LogGap if the log lost records a query has not processed yet.

    The stream job checks before it starts and when a query fails (a gap may have opened while
    it ran): it must not skip records silently, and Spark's own error does not say which.

    Args:
        settings: as for gaps.
        queries: as for gaps.

    Raises:
        LogGap: naming every missing range, and the ways out: re-publish the bars (ids are
            deterministic), or accept the loss by starting from a new CHECKPOINT_DIR.
    """
    missing = gaps(settings, queries)
    if missing:
        raise LogGap(f"the log has a gap the stream job cannot skip: {'; '.join(map(str, missing))} are no longer "
                     f"in Kafka (deleted or past retention) but not yet processed. Restore them (re-publish the "
                     f"bars: ids are deterministic), or accept the loss by starting from a new CHECKPOINT_DIR")


# The stream job's own record of how predict-bars keeps its state, beside Spark's files.
STATE_LAYOUT_FILE = "finstream-state.json"


def require_state_layout(settings: Settings, query: str, key_column: str, bucket_hash: str) -> None:
    """Raises UserError if a query's checkpoint keeps its state in another layout than this
    job's: per series (an older version), in another number of buckets, or hashed to buckets
    another way. Spark would fail at the first micro-batch (an incompatible state schema), or,
    for other buckets, silently look each series up in the wrong one. Until the query's first
    batch has run (no state yet), records this job's layout in STATE_LAYOUT_FILE.

    Args:
        settings: the checkpoints' folder and STREAM_STATE_BUCKETS.
        query: the stateful query's name (predict-bars).
        key_column: the name of the state's key column (a bucket).
        bucket_hash: how a series is hashed to its bucket (what changes the bucket of a series).
    """
    buckets = settings.stream_state_buckets
    if buckets < 1:
        raise UserError(f"STREAM_STATE_BUCKETS is {buckets}: set it to 1 or more")
    checkpoint = settings.query_checkpoint(query)
    # Spark's record of operator 0's state schema (key, then value), written at its first batch.
    schema = checkpoint / "state" / "0" / "0" / "_metadata" / "schema"
    aside = f"move that folder aside to start {query} again from the topic's start (it rebuilds each series' " \
            f"state and rewrites its predictions under the same ids; index-bars keeps its own checkpoint)"
    try:
        spark_schema = schema.read_bytes() if schema.exists() else None
    except OSError as error:
        raise UserError(f"cannot read {schema} ({error.strerror or error}): check the checkpoint folder's files, "
                        f"or {aside}") from None
    if spark_schema is not None and f'"name":"{key_column}"'.encode() not in spark_schema:
        raise UserError(f"{query}'s checkpoint ({checkpoint}) keeps its state in a layout this version cannot "
                        f"read (one state per series, or an unreadable {schema.name}): {aside}")
    recorded = checkpoint / STATE_LAYOUT_FILE
    layout = {"state_buckets": buckets, "bucket_hash": bucket_hash}
    if spark_schema is not None:
        try:
            kept = json.loads(recorded.read_text())
        except (OSError, ValueError):
            kept = None
        if not isinstance(kept, dict):
            raise UserError(f"{query}'s checkpoint ({checkpoint}) holds state but no readable {STATE_LAYOUT_FILE}, "
                            f"the record of its buckets: restore that file, or {aside}")
        was = kept.get("state_buckets")
        if was != buckets:
            raise UserError(f"STREAM_STATE_BUCKETS is {buckets}, but {query}'s checkpoint ({checkpoint}) keeps its "
                            f"state in {was} buckets: set it back to {was}, or {aside}")
        if kept.get("bucket_hash") != bucket_hash:
            raise UserError(f"{query}'s checkpoint ({checkpoint}) hashed its series to buckets by "
                            f"{kept.get('bucket_hash')}, this version by {bucket_hash}: {aside}")
        return
    try:
        checkpoint.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(layout) + "\n")
    except OSError as error:
        raise UserError(f"cannot write the checkpoint folder {checkpoint} ({os_reason(error, checkpoint)}): set "
                        f"CHECKPOINT_DIR to a writable folder") from None
