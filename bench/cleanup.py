"""Removing what a benchmark or test run created: its topic, indices and index templates.

Here and not in the shipped package: the product never deletes data (the log is the system of
record), only runs that made their own topic and indices clean up after themselves."""

from __future__ import annotations

from kafka.errors import UnknownTopicOrPartitionError

from finstream.core.config import Settings
from finstream.core.schema import index_mappings
from finstream.stores import topics


def delete_topic(settings: Settings, topic: str | None = None) -> None:
    """Removes a topic; absent is fine."""
    admin = topics.admin_client(settings)
    try:
        admin.delete_topics([topic or settings.kafka_topic])
    except UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()


def drop_run_data(es, settings: Settings) -> None:
    """Deletes the settings' topic and every index (and template) of the pipeline."""
    for index in index_mappings(settings):
        es.options(ignore_status=404).indices.delete(index=index)
        es.options(ignore_status=404).indices.delete_index_template(name=index)
    delete_topic(settings)
