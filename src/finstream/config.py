"""Configuration: defaults from conf/pipeline.toml, each overridable by the environment
variable of the same name. Secrets never have defaults and never print."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    return Path(os.environ.get("FINSTREAM_CONF_DIR", PROJECT_ROOT / "conf"))


def local_dir() -> Path:
    """This checkout's git-ignored folder for data, logs, checkpoints and models."""
    return Path(os.environ.get("FINSTREAM_LOCAL", PROJECT_ROOT / ".local"))


class Secret:
    """A credential that never shows itself in logs, reprs or exception messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


def read_secret(name: str) -> Secret:
    """NAME from the environment, or the content of the file named by NAME_FILE."""
    value = os.environ.get(name, "")
    path = os.environ.get(f"{name}_FILE", "")
    if not value and path:
        value = Path(path).read_text(encoding="utf-8").strip()
    return Secret(value.strip())


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    kafka_topic: str
    kafka_topic_partitions: int
    kafka_replication_factor: int
    kafka_min_insync_replicas: int
    kafka_retention_ms: int
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_ssl_cafile: str
    es_nodes: str
    es_scheme: str
    es_username: str
    es_ca_certs: str
    es_truststore_path: str
    es_index_bars: str
    es_index_dead_letters: str
    es_index_predictions: str
    es_index_model_metrics: str
    es_index_pipeline_metrics: str
    es_number_of_replicas: int
    es_nodes_wan_only: bool
    es_batch_size_entries: int
    es_batch_size_bytes: str
    es_batch_write_retry_count: int
    es_batch_write_retry_wait: str
    es_batch_write_refresh: bool
    checkpoint_dir: str
    stream_trigger_interval: str
    stream_max_offsets_per_trigger: int
    stream_min_partitions: int
    kafka_fetch_max_wait_ms: int
    stream_state_partitions: int
    stream_series_idle_hours: float
    polygon_base_url: str
    polygon_max_requests_per_minute: int
    polygon_timeout_seconds: float
    polygon_max_retries: int
    live_poll_seconds: float
    live_start_hours_back: float
    live_delay_minutes: float
    live_source: str
    polygon_ws_feed: str
    polygon_ws_realtime_url: str
    polygon_ws_delayed_url: str
    live_ws_reconnect_cap_seconds: float
    live_ws_max_refusals: int
    live_ws_steady_seconds: float
    model_dir: str
    mlflow_tracking_uri: str
    model_poll_seconds: float

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, path: Path | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        path = path or conf_dir() / "pipeline.toml"
        with open(path, "rb") as f:
            defaults = tomllib.load(f)
        values = {}
        for field in dataclasses.fields(cls):
            key = field.name.upper()
            if key not in defaults:
                raise KeyError(f"{path} has no default for {key}")
            raw = environ.get(key, defaults[key])
            values[field.name] = _coerce(key, raw, field.type)
        return cls(**values)

    # -- derived values ------------------------------------------------------------------
    def local_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else local_dir() / path

    @property
    def checkpoint_path(self) -> Path:
        return self.local_path(self.checkpoint_dir)

    def query_checkpoint(self, query: str) -> Path:
        """One checkpoint per streaming query: offsets, commits and state are per query."""
        return self.checkpoint_path / query

    @property
    def model_path(self) -> Path:
        return self.local_path(self.model_dir)

    @property
    def es_urls(self) -> list[str]:
        return [f"{self.es_scheme}://{node.strip()}" for node in self.es_nodes.split(",") if node.strip()]

    @property
    def polygon_api_key(self) -> Secret:
        return read_secret("POLYGON_API_KEY")

    @property
    def es_password(self) -> Secret:
        return read_secret("ES_PASSWORD")

    @property
    def es_api_key(self) -> Secret:
        return read_secret("ES_API_KEY")

    @property
    def es_truststore_password(self) -> Secret:
        return read_secret("ES_TRUSTSTORE_PASSWORD")

    @property
    def kafka_sasl_password(self) -> Secret:
        return read_secret("KAFKA_SASL_PASSWORD")

    def kafka_client_options(self) -> dict:
        """Security options for kafka-python clients (producer, admin, consumer)."""
        options: dict = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        if self.kafka_security_protocol.startswith("SASL"):
            options.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                           sasl_plain_password=self.kafka_sasl_password.reveal())
        return options

    def kafka_spark_options(self) -> dict[str, str]:
        """The same, for Spark's Kafka source (Java client property names)."""
        options = {"kafka.security.protocol": self.kafka_security_protocol}
        if self.kafka_ssl_cafile:
            options.update({"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": self.kafka_ssl_cafile})
        if self.kafka_security_protocol.startswith("SASL"):
            module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if self.kafka_sasl_mechanism == "PLAIN"
                      else "org.apache.kafka.common.security.scram.ScramLoginModule")
            options["kafka.sasl.mechanism"] = self.kafka_sasl_mechanism
            options["kafka.sasl.jaas.config"] = (f'{module} required username="{self.kafka_sasl_username}" '
                                                 f'password="{self.kafka_sasl_password.reveal()}";')
        return options


def _coerce(key: str, raw, kind):
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return str(raw)
    except ValueError:
        raise ValueError(f"setting {key}={raw!r} is not a valid {kind}") from None
