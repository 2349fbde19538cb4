"""The stream job's write policy (finstream.ingest.es_sink): transient failures are retried with
back-off; a refusal the dead-letter handler could not dead-letter is not."""

from __future__ import annotations

import pytest

from finstream.core.config import Settings
from finstream.ingest.es_sink import write_documents
from finstream.stores.elastic import DEAD_LETTER_ABORT_MARKER, DEAD_LETTER_HANDLER_PREFIX


class Writes:
    """What write_documents calls on a DataFrame (df.write.format().options().mode().save()),
    failing with the given errors first."""

    def __init__(self, failures: list[Exception]):
        self.failures, self.saved, self.given = list(failures), [], []

    @property
    def write(self):
        return self

    def format(self, _name):
        return self

    def options(self, **options):
        self.given.append(options)
        return self

    def mode(self, _mode):
        return self

    def save(self, index):
        if self.failures:
            raise self.failures.pop(0)
        self.saved.append(index)


SETTINGS = Settings.load(environ={"ES_BATCH_WRITE_RETRY_COUNT": "4"})
UNREACHABLE = RuntimeError("py4j ... EsHadoopNoNodesLeftException: Connection error (check network and/or proxy "
                           "settings)- all nodes failed")
REFUSED = RuntimeError(f"py4j ... EsHadoopException: Could not write all entries for bulk operation [1/3]. Error "
                       f"sample:\n\torg.elasticsearch.hadoop.handler.EsHadoopAbortHandlerException: "
                       f"{DEAD_LETTER_ABORT_MARKER} Elasticsearch refused even the minimal dead letter t|0|5 ...")


def test_an_unreachable_cluster_is_retried_with_back_off():
    documents, sleeps = Writes([UNREACHABLE, UNREACHABLE]), []
    write_documents(documents, "bars", {}, SETTINGS, sleeps.append)
    assert documents.saved == ["bars"] and sleeps == [2.0, 4.0]


def test_the_last_transient_failure_is_raised_as_it_came():
    documents, sleeps = Writes([UNREACHABLE] * 4), []
    with pytest.raises(RuntimeError) as raised:
        write_documents(documents, "bars", {}, SETTINGS, sleeps.append)
    assert raised.value is UNREACHABLE and sleeps == [2.0, 4.0, 8.0]


def test_a_refusal_that_could_not_be_dead_lettered_is_not_retried():
    documents, sleeps = Writes([REFUSED]), []
    with pytest.raises(RuntimeError) as raised:
        write_documents(documents, "bars", {}, SETTINGS, sleeps.append)
    assert raised.value is REFUSED and sleeps == [] and documents.saved == []


def test_the_handler_learns_the_index_of_a_single_index_write():
    documents = Writes([])
    write_documents(documents, "predictions", {"es.nodes": "n"}, SETTINGS, lambda _: None)
    write_documents(documents, "{target_index}", {"es.nodes": "n"}, SETTINGS, lambda _: None)
    key = f"{DEAD_LETTER_HANDLER_PREFIX}.write.index"
    assert documents.given[0][key] == "predictions" and key not in documents.given[1]
