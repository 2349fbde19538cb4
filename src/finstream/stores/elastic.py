"""Elasticsearch: the client, the index templates (derived from finstream.core.schema) and the
ES-Hadoop connector options. Driver-side only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exceptions

from finstream.core import schema as S
from finstream.core.config import Settings
from finstream.core.errors import UserError

log = logging.getLogger(__name__)

ES_HADOOP_FORMAT = "org.elasticsearch.spark.sql"

# The project's ES-Hadoop bulk write error handler (stack/es-dead-letters, on the classpath by
# spark-submit.sh): a document Elasticsearch refuses for its content (HTTP 400) becomes a dead
# letter in the same bulk flow instead of failing the write. Its properties are
# es.write.rest.error.handler.<name>.<property>.
DEAD_LETTER_HANDLER = "deadletters"
DEAD_LETTER_HANDLER_CLASS = "finstream.eshadoop.DeadLetterHandler"
DEAD_LETTER_HANDLER_PREFIX = f"es.write.rest.error.handler.{DEAD_LETTER_HANDLER}"
# Starts the handler's abort message (a refusal it could not dead-letter): not worth a retry.
DEAD_LETTER_ABORT_MARKER = "[finstream dead letters]"


def client(settings: Settings, **kwargs: Any) -> Elasticsearch:
    """An Elasticsearch client of ES_NODES, with the configured credentials and CA certificates.

    An API key wins over a password (user ES_USERNAME, default elastic).

    Args:
        settings: the nodes, scheme and credentials.
        **kwargs: more Elasticsearch() options (e.g. retries).
    """
    auth: dict[str, Any] = {}
    if settings.es_api_key:
        auth["api_key"] = settings.es_api_key.reveal()
    elif settings.es_password:
        auth["basic_auth"] = (settings.es_username or "elastic", settings.es_password.reveal())
    if settings.es_ca_certs:
        auth["ca_certs"] = settings.es_ca_certs
    return Elasticsearch(settings.es_urls, request_timeout=30, **auth, **kwargs)


class ClusterUnavailable(UserError):
    """Raised before any work starts: the job exits with the message, no traceback."""


class IncompatibleMapping(UserError):
    """An existing index has a mapping this version cannot extend; the message says what to do."""


def require_cluster(es: Elasticsearch, settings: Settings) -> None:
    """Checks that Elasticsearch answers and accepts the credentials, before any work starts.

    Raises:
        ClusterUnavailable: the credentials were refused (check ES_USERNAME and ES_PASSWORD, or
            ES_API_KEY), or the cluster cannot be reached (start it with `make up`, or set ES_NODES).
    """
    try:
        es.cluster.health(timeout="10s")
    except es_exceptions.AuthenticationException:
        raise ClusterUnavailable(f"Elasticsearch at {settings.es_nodes} refused the credentials: "
                                 "check ES_USERNAME and ES_PASSWORD (or ES_API_KEY)") from None
    except (es_exceptions.ConnectionError, es_exceptions.ConnectionTimeout) as exc:
        raise ClusterUnavailable(f"cannot reach Elasticsearch at {settings.es_scheme}://{settings.es_nodes} "
                                 f"({type(exc).__name__}): start it (make up) or set ES_NODES") from None


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster's name, uuid and version: given to ES-Hadoop (es.internal.es.*) so it need not ask."""

    name: str
    uuid: str
    version: str


def cluster_info(es: Elasticsearch) -> ClusterInfo:
    """The cluster's name, uuid and version (the lowest its nodes report).

    Read from endpoints every distribution serves: the minimal distribution used locally has
    no `GET /`, which ES-Hadoop would otherwise call to discover them.
    """
    health = es.cluster.health()
    state = es.cluster.state(metric="metadata", filter_path="metadata.cluster_uuid")
    nodes = es.nodes.info(node_id="_local", metric="_none", filter_path="nodes.*.version")
    versions = {node["version"] for node in nodes["nodes"].values()}
    return ClusterInfo(health["cluster_name"], state["metadata"]["cluster_uuid"], min(versions))


def replicas(settings: Settings, data_nodes: int) -> int:
    """Replica shards per index: ES_NUMBER_OF_REPLICAS, or (-1: automatic) one if another node can hold it.

    Args:
        settings: ES_NUMBER_OF_REPLICAS.
        data_nodes: the cluster's data nodes.

    Returns:
        The configured number; automatic: 1 with more than one data node, else 0.
    """
    if settings.es_number_of_replicas >= 0:
        return settings.es_number_of_replicas
    return 1 if data_nodes > 1 else 0


def index_templates(settings: Settings, data_nodes: int = 1) -> dict[str, dict[str, Any]]:
    """Composable index templates, one per index the project writes (core.schema.INDEX_MAPPINGS).

    Args:
        settings: the index names and ES_NUMBER_OF_REPLICAS.
        data_nodes: the cluster's data nodes (for automatic replicas).

    Returns:
        index name -> template: 1 shard, the replicas, a 1 s refresh interval and the mapping.
    """
    settings_block = {"number_of_shards": 1, "number_of_replicas": replicas(settings, data_nodes),
                      "refresh_interval": "1s"}
    return {index: {"settings": settings_block, "mappings": mapping}
            for index, mapping in S.index_mappings(settings).items()}


def ensure_indices(es: Elasticsearch, settings: Settings, only: list[str] | None = None) -> None:
    """Makes every index's mapping explicit before its first document arrives.

    Puts the templates (idempotent) and creates each missing index; an existing one gains the
    fields added to its mapping since it was made.

    Args:
        es: the client.
        settings: the index names and ES_NUMBER_OF_REPLICAS.
        only: the names of the indices to handle (default: every one).

    Raises:
        IncompatibleMapping: an existing index's mapping cannot be extended (a field changed
            type): the message says to delete or reindex it, or to name another index.
        elasticsearch.ApiError: any other refusal, unchanged.
    """
    data_nodes = es.cluster.health()["number_of_data_nodes"]
    for index, template in index_templates(settings, data_nodes).items():
        if only is not None and index not in only:
            continue
        es.indices.put_index_template(name=index, index_patterns=[index], template=template, priority=200)
        try:
            es.indices.create(index=index)
            log.info("created index %s", index)
        except es_exceptions.BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            # An index made by an earlier version gains the fields added since (new fields
            # only: Elasticsearch refuses to change an existing field's type, and says so).
            try:
                es.indices.put_mapping(index=index, **template["mappings"])
            except es_exceptions.BadRequestError as refused:
                reason = refused.info.get("error", {}).get("reason", refused.error) if isinstance(refused.info, dict) \
                    else refused.error
                raise IncompatibleMapping(
                    f"index {index} exists with a mapping this version cannot extend ({reason}): delete it, or "
                    f"reindex it, or name another index in the configuration") from None


def count(es: Elasticsearch, index: str) -> int:
    """The documents in `index`, after a refresh so that the latest writes count."""
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def es_hadoop_options(settings: Settings, info: ClusterInfo, id_field: str | None = "doc_id") -> dict[str, str]:
    """Options for `df.write.format(ES_HADOOP_FORMAT)`.

    The nodes, TLS, credentials, batching and retries from the settings; the cluster's identity
    from `info` (so ES-Hadoop need not call `GET /`); and the dead-letter error handler.

    Args:
        settings: the Elasticsearch and ES-Hadoop settings.
        info: the cluster's identity (cluster_info).
        id_field: the document field holding each document's id (None: Elasticsearch assigns ids).

    Returns:
        option -> value, all strings. They hold the credentials: never log them.
    """
    options = {
        "es.nodes": settings.es_nodes,
        "es.nodes.wan.only": str(settings.es_nodes_wan_only).lower(),
        "es.net.ssl": str(settings.es_scheme == "https").lower(),
        "es.write.operation": "index",
        "es.batch.size.entries": str(settings.es_batch_size_entries),
        "es.batch.size.bytes": settings.es_batch_size_bytes,
        "es.batch.write.retry.count": str(settings.es_batch_write_retry_count),
        "es.batch.write.retry.wait": settings.es_batch_write_retry_wait,
        # ES_BATCH_WRITE_REFRESH: refresh when a write task ends (latency), or leave visibility
        # to the index's 1 s refresh interval.
        "es.batch.write.refresh": str(settings.es_batch_write_refresh).lower(),
        "es.spark.dataframe.write.null": "false",
        "es.internal.es.version": info.version,
        "es.internal.es.cluster.name": info.name,
        "es.internal.es.cluster.uuid": info.uuid,
        "es.write.rest.error.handlers": DEAD_LETTER_HANDLER,
        DEAD_LETTER_HANDLER_PREFIX: DEAD_LETTER_HANDLER_CLASS,
        f"{DEAD_LETTER_HANDLER_PREFIX}.dead.letter.index": settings.es_index_dead_letters,
        f"{DEAD_LETTER_HANDLER_PREFIX}.topic": settings.kafka_topic,  # a bar's dead letter: topic|partition|offset
    }
    if id_field:
        options["es.mapping.id"] = id_field
    if settings.es_truststore_path:
        options["es.net.ssl.truststore.location"] = f"file://{settings.es_truststore_path}"
        options["es.net.ssl.truststore.pass"] = settings.es_truststore_password.reveal()
    if settings.es_api_key:
        options["es.net.http.header.Authorization"] = f"ApiKey {settings.es_api_key.reveal()}"
    elif settings.es_password:
        options["es.net.http.auth.user"] = settings.es_username or "elastic"
        options["es.net.http.auth.pass"] = settings.es_password.reveal()
    return options
