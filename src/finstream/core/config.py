"""Configuration: defaults from conf/pipeline.toml, each overridable by the environment
variable of the same name. Secrets never have defaults and never print."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from finstream.core.errors import Refused, UserError, hide_credentials, remember_credentials
from finstream.core.schema import JAVA_INT_MAX

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # src/finstream/core/config.py


def conf_dir() -> Path:
    """The configuration folder: FINSTREAM_CONF_DIR, or this checkout's conf/."""
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
        """The credential itself: only for the client that needs it, never for a log or a message."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> Secret:
    """A secret from the environment variable `name`, else from the file named by `name`_FILE.

    Surrounding whitespace (such as a file's final newline) is stripped.

    Args:
        name: the variable's name, e.g. ES_PASSWORD.
        environ: the variables to read (default: os.environ).

    Returns:
        The Secret; empty (false) when neither the variable nor the file is set.

    Raises:
        SettingError: `name`_FILE names a file that cannot be read, or is not UTF-8 text.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(name, "")
    path = environ.get(f"{name}_FILE", "")
    if not value and path:
        try:
            value = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingError(f"{name}_FILE={path!r}: cannot read it ({exc.strerror or exc}): name a readable "
                               f"file, or set {name} instead") from None
        except UnicodeDecodeError:
            raise SettingError(f"{name}_FILE={path!r} is not UTF-8 text: save the secret as plain text") from None
    return Secret(value.strip())


class SettingError(UserError, ValueError):
    """A setting's value refused: the message names the setting, the value and what it must be."""


# The widest whole numbers the servers take: Kafka's and Spark's Java int (schema.JAVA_INT_MAX) and long.
JAVA_LONG_MAX = 2**63 - 1
HOURS_IN_10_YEARS = 87_600
ES_HADOOP_PORT = 9200  # es.port's default: a node of ES_NODES without its own port


def at_least(lowest: int, most: float | None = None) -> dict:
    """A numeric field's metadata: its value must be `lowest` or more, and `most` or less.

    Without `most`, a whole number is at most JAVA_INT_MAX (the servers' int). A float field
    names its `most`, so that a wait or a time span fits the clock it is added to.
    """
    return {"at_least": lowest, "at_most": most}


def above(lowest: int, most: float | None = None) -> dict:
    """A numeric field's metadata: its value must be more than `lowest`, and `most` or less
    (as in at_least)."""
    return {"above": lowest, "at_most": most}


def one_of(*choices: str) -> dict:
    """A text field's metadata: its value must be one of `choices` (as written)."""
    return {"one_of": choices}


def satisfying(valid: Callable[[str], bool], wanted: str) -> dict:
    """A text field's metadata: `valid(value)` must hold; `wanted` says what the value must be."""
    return {"valid": valid, "wanted": wanted}


def matching(pattern: str, wanted: str) -> dict:
    """A text field's metadata: its value must match `pattern` whole; `wanted` says what that is."""
    return satisfying(lambda value: re.fullmatch(pattern, value) is not None, wanted)


def _index_name(value: str) -> bool:
    # Elasticsearch lower-cases in any script and counts its 255 in bytes; ES-Hadoop reads { }
    # in a resource as a per-document pattern (the writes would go to other indices).
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a byte that was not UTF-8 in the environment
        return False
    return re.fullmatch(r"(?!\.{1,2}$)(?![-_+])[^\\/*?\"<>| ,#:{}]+", value) is not None \
        and value == value.lower() and size <= 255


# A host name or IPv4 address: dot-separated labels of letters, digits, - and _ (Docker's
# service names), none empty or starting or ending with -; a final dot (a rooted name) allowed.
HOST_NAME = r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?\.?"


def _host_ports(port_required: bool, zone: bool) -> Callable[[str], bool]:
    """Comma-separated nodes: a host name or a bracketed IPv6 address, and a port (ASCII digits,
    1-65535). `zone`: an IPv6 address may name its interface ([fe80::1%eth0]); kafka-python and
    Kafka's Java client read that, urllib3 (under the Elasticsearch client) does not. An IPv6
    node always has its port: ES-Hadoop reads [::1] alone as an address without one."""
    def node_valid(node: str) -> bool:
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::([0-9]{1,5}))?", node)
        if bracketed:
            address, _, interface = bracketed.group(1).partition("%")
            try:
                ipaddress.IPv6Address(address)
            except ValueError:
                return False
            port = bracketed.group(2)
            return (zone or not interface) and port is not None and 1 <= int(port) <= 65535
        named = re.fullmatch(rf"{HOST_NAME}(?::([0-9]{{1,5}}))?", node)
        if named is None or (port_required and named.group(1) is None):
            return False
        return named.group(1) is None or 1 <= int(named.group(1)) <= 65535

    return lambda value: all(node_valid(node.strip()) for node in value.split(","))


# Kafka's legal topic names (not its internal __ ones) and Elasticsearch's index names: refused
# here, not by the server mid-run.
TOPIC_NAME = matching(r"(?!\.{1,2}$)(?!__)[A-Za-z0-9._-]{1,249}",
                      "a Kafka topic name (letters, digits, . _ -; at most 249; not starting with __, the form "
                      "of Kafka's own topics)")
INDEX_NAME = satisfying(_index_name, "an Elasticsearch index name (lower case, none of \\ / * ? \" < > | , # : { } "
                                     "or spaces, not starting with - _ +, at most 255 bytes)")
HOST_PORTS = {"hosts": True, **satisfying(_host_ports(port_required=True, zone=True),
                        "comma-separated host:port, ports 1-65535, without a protocol or user (e.g. localhost:9092; "
                        "KAFKA_SECURITY_PROTOCOL sets the protocol, KAFKA_SASL_USERNAME the user)")}
HOSTS = {"hosts": True, **satisfying(_host_ports(port_required=False, zone=False),
                   "comma-separated host or host:port, ports 1-65535, without a scheme or user (e.g. localhost:9200; "
                   "the port defaults to 9200; ES_SCHEME sets the scheme, ES_USERNAME the user)")}


def _tracking_uri(value: str) -> bool:
    """MLflow's tracking URI: empty (the embedded store) or a URI of a store MLflow knows, its
    scheme in lower case as MLflow matches it, a server's port 1-65535. A bare path would
    silently make a folder store wherever the command runs; `localhost:5000` (no http://)
    would be read as a scheme; SQLite's `:memory:` would lose every run when the command ends."""
    if not re.fullmatch(r"|databricks(-uc)?(://.*)?|uc:.+|file:.+|sqlite:///(?!:memory:).+"
                        r"|https?://[^/:?#\s]+[^\s\"<>]*|(postgresql|mysql|mssql)(\+\w+)?://.+", value):
        return False
    if not value.startswith("http"):
        return True
    return _has_host(value)


def _has_host(url: str) -> bool:
    """A URL names a host (`http://user:pw@` does not) and, if it has one, a port 1-65535."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises past 65535
    except ValueError:
        return False
    return bool(parts.hostname) and (port is None or port >= 1)


TRACKING_URI = satisfying(_tracking_uri,
                          "empty (the embedded store) or a store's URI, its scheme in lower case: http(s)://host..., "
                          "sqlite:///path/mlflow.db, postgresql://..., mysql://..., mssql://..., file:///path or "
                          "databricks")
HTTP_URL = satisfying(lambda value: re.fullmatch(r"(?i:https?)://[^/:?#\s]+[^\s\"<>]*", value) is not None
                      and _has_host(value), "an http:// or https:// URL with a host, a space, quote or <> in it "
                      "percent-encoded")
WS_URL = satisfying(lambda value: re.fullmatch(r"(?i:wss?)://[^/:?#\s]+[^\s\"<>]*", value) is not None
                    and _has_host(value), "a ws:// or wss:// URL with a host, a space, quote or <> in it "
                    "percent-encoded")
# The job's own Python reads the checkpoint and model folders (state layout, installed models):
# a local or mounted path, not a URI such as hdfs://.
PATH = matching(r"(?![A-Za-z][A-Za-z0-9+.-]*:/).*\S.*",
                "a local path (relative ones are under .local/; for HDFS or S3, mount it and give the mount)")
# ES-Hadoop's own forms, as its parsers read them with the spaces taken out (a suffix and a
# decimal, or a whole number), within the int of bytes and the long of milliseconds it keeps:
# otherwise the write fails at the first micro-batch, after a minute of retries, not at start.
_BYTE_UNITS = {"k": 2**10, "K": 2**10, "kb": 2**10, "m": 2**20, "M": 2**20, "mb": 2**20, "g": 2**30, "G": 2**30,
               "gb": 2**30}
_MILLIS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "H": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def _es_hadoop_amount(units: dict[str, int], whole_suffix: str, most: int, saturates: bool) -> Callable[[str], bool]:
    """ES-Hadoop's parse, as a check: Java's whitespace taken out, then a decimal (Java's double:
    a sign, an exponent) and a unit, or whole units (a long) with or without `whole_suffix`;
    within `most`, which a decimal of a unit `saturates` at (a long of milliseconds) or
    exceeds (an int of bytes, refused at the first write)."""
    def valid(value: str) -> bool:
        text = re.sub(r"[ \t\n\x0b\x0c\r\x1c-\x1f]", "", value)
        found = re.fullmatch(r"(\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)(" + "|".join(units) + ")", text)
        if found:
            amount = float(found.group(1)) * units[found.group(5)]
            return amount >= 0 and (saturates or amount <= most)
        whole = re.fullmatch(rf"\+?([0-9]+){whole_suffix}?", text)
        return whole is not None and int(whole.group(1)) <= most
    return valid


BYTE_SIZE = satisfying(_es_hadoop_amount(_BYTE_UNITS, "b", JAVA_INT_MAX, saturates=False),
                       "a size as ES-Hadoop reads it, below 2 GiB: a number with k, kb, m, mb, g or gb (or K, M, "
                       "G), or whole bytes with or without b (e.g. 5mb)")
TIME_VALUE = satisfying(_es_hadoop_amount(_MILLIS, "S", JAVA_LONG_MAX, saturates=True),
                        "a time as ES-Hadoop reads it: a number with ms, s, m, h, d or w, or whole milliseconds "
                        "with or without S (e.g. 5s; not 5 seconds)")

# The credentials: never fields, never in the settings file (Settings' properties read them).
SECRETS = ("POLYGON_API_KEY", "ES_PASSWORD", "ES_API_KEY", "ES_TRUSTSTORE_PASSWORD", "KAFKA_SASL_PASSWORD")
LIVE_SOURCES = ("rest", "websocket")  # LIVE_SOURCE and the producer's --source
WS_FEEDS = ("realtime", "delayed")  # POLYGON_WS_FEED and --feed
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")  # both clients' logins (kafka_spark_options)


@dataclass(frozen=True)
class Settings:
    """The pipeline's settings: one field per key of conf/pipeline.toml, in lower case.

    Each value is the file's default unless the environment variable of the upper-case name
    overrides it (docs/configuration.md describes each). Secrets are not fields: the properties
    below read them from the environment on each access, so they never print with the settings.
    """

    kafka_bootstrap_servers: str = field(metadata=HOST_PORTS)
    kafka_topic: str = field(metadata=TOPIC_NAME)
    kafka_topic_partitions: int = field(metadata=at_least(1))
    kafka_replication_factor: int = field(metadata=at_least(0, 32767))  # Kafka's short
    kafka_min_insync_replicas: int = field(metadata=at_least(0))
    kafka_retention_ms: int = field(metadata=at_least(-1, JAVA_LONG_MAX))
    kafka_security_protocol: str = field(metadata=one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    kafka_sasl_mechanism: str = field(metadata=one_of("", *SASL_MECHANISMS))
    kafka_sasl_username: str
    kafka_ssl_cafile: str
    es_nodes: str = field(metadata=HOSTS)
    es_scheme: str = field(metadata=one_of("http", "https"))
    es_username: str
    es_ca_certs: str
    es_truststore_path: str
    es_index_bars: str = field(metadata=INDEX_NAME)
    es_index_dead_letters: str = field(metadata=INDEX_NAME)
    es_index_predictions: str = field(metadata=INDEX_NAME)
    es_index_model_metrics: str = field(metadata=INDEX_NAME)
    es_index_pipeline_metrics: str = field(metadata=INDEX_NAME)
    es_number_of_replicas: int = field(metadata=at_least(-1))
    es_nodes_wan_only: bool
    es_batch_size_entries: int = field(metadata=at_least(0))
    es_batch_size_bytes: str = field(metadata=BYTE_SIZE)
    es_batch_write_retry_count: int = field(metadata=at_least(0))
    es_batch_write_retry_wait: str = field(metadata=TIME_VALUE)
    es_batch_write_refresh: bool
    checkpoint_dir: str = field(metadata=PATH)
    stream_trigger_interval: str
    stream_max_offsets_per_trigger: int = field(metadata=at_least(0, JAVA_LONG_MAX))
    stream_min_partitions: int = field(metadata=at_least(0))
    stream_catch_up_records: int = field(metadata=at_least(0))
    stream_write_records_per_task: int = field(metadata=at_least(0))
    kafka_fetch_max_wait_ms: int = field(metadata=at_least(0))
    stream_state_partitions: int = field(metadata=at_least(0))
    stream_state_buckets: int = field(metadata=at_least(1))
    stream_series_idle_hours: float = field(metadata=above(0, HOURS_IN_10_YEARS))
    polygon_base_url: str = field(metadata=HTTP_URL)
    polygon_max_requests_per_minute: int = field(metadata=at_least(0))
    polygon_timeout_seconds: float = field(metadata=above(0, 3600))
    polygon_max_retries: int = field(metadata=at_least(0))
    live_poll_seconds: float = field(metadata=above(0, 86400))
    live_start_hours_back: float = field(metadata=above(0, HOURS_IN_10_YEARS))
    live_delay_minutes: float = field(metadata=at_least(0, 10080))  # a week
    live_source: str = field(metadata=one_of(*LIVE_SOURCES))
    polygon_ws_feed: str = field(metadata=one_of(*WS_FEEDS))
    polygon_ws_realtime_url: str = field(metadata=WS_URL)
    polygon_ws_delayed_url: str = field(metadata=WS_URL)
    live_ws_reconnect_cap_seconds: float = field(metadata=above(0, 3600))
    live_ws_max_refusals: int = field(metadata=at_least(1))
    live_ws_steady_seconds: float = field(metadata=above(0, 86400))
    model_dir: str = field(metadata=PATH)
    mlflow_tracking_uri: str = field(metadata=TRACKING_URI)
    model_poll_seconds: float = field(metadata=above(0, 3600))

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, path: Path | None = None) -> "Settings":
        """Reads the defaults and applies the environment's overrides.

        Args:
            environ: the variables to take overrides from (default: os.environ).
            path: the TOML file of defaults (default: pipeline.toml in conf_dir()).

        Returns:
            The settings, each value converted to its field's type (bool, int, float or str).

        Raises:
            SettingError: the file cannot be read, is not UTF-8 TOML, lacks a field's default or
                sets a key that is not one (a secret included); or a value is not of its field's
                type, is out of its range, not one of its choices or not of its form (names,
                addresses, URLs, ES-Hadoop's sizes and times); or two settings disagree (SASL
                without a mechanism, two ES_INDEX_* naming one index, a steady WebSocket time
                not above the reconnect cap), or a CA file is not there. The message names the
                setting, the value, where it came from and what it must be.
        """
        environ = os.environ if environ is None else environ
        path = path or conf_dir() / "pipeline.toml"
        defaults = _read_defaults(path)
        names = [setting.name.upper() for setting in dataclasses.fields(cls)]
        for key in sorted(defaults.keys() - set(names)):
            if key.removesuffix("_FILE") in SECRETS:
                secret = key.removesuffix("_FILE")
                raise SettingError(f"{path} sets {key}: secrets never come from this file; set {secret}, or "
                                   f"{secret}_FILE naming a file that holds it, in the environment")
            near = difflib.get_close_matches(key, names, n=1)
            raise SettingError(f"{path} sets {key}, which is not a setting"
                               + (f": did you mean {near[0]}?" if near else " (docs/configuration.md lists them)"))
        values = {}
        for setting in dataclasses.fields(cls):
            key = setting.name.upper()
            if key not in defaults:
                raise SettingError(f"{path} has no default for {key} (a file of an older version?): add it; "
                                   f"{PROJECT_ROOT / 'conf' / 'pipeline.toml'} has every key")
            raw = environ.get(key, defaults[key])
            source = "from the environment" if key in environ else f"in {path}"
            if key not in environ and isinstance(raw, str) and setting.type not in ("str", str):
                raw = _Quoted(raw)  # a TOML string for a number or a flag: its type is wrong
            values[setting.name] = _checked(key, raw, setting.type, setting.metadata, source)
        settings = cls(**values)
        if settings.kafka_security_protocol.startswith("SASL") and not settings.kafka_sasl_mechanism:
            raise SettingError(f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
                               f"KAFKA_SASL_MECHANISM: one of {', '.join(SASL_MECHANISMS)}")
        _check_together(settings)
        for secret in SECRETS:  # a <NAME>_FILE that cannot be read: now, not once servers are reached
            remember_credentials(read_secret(secret, environ).reveal(), secret=True)
        for value in values.values():  # a URL's or host list's user and password
            if isinstance(value, str) and "@" in value:
                remember_credentials(value)
        return settings

    # -- derived values ------------------------------------------------------------------
    def local_path(self, value: str) -> Path:
        """A configured path: as it is when absolute, else relative to local_dir()."""
        path = Path(value)
        return path if path.is_absolute() else local_dir() / path

    @property
    def checkpoint_path(self) -> Path:
        """CHECKPOINT_DIR as a path (a relative one under local_dir())."""
        return self.local_path(self.checkpoint_dir)

    def query_checkpoint(self, query: str) -> Path:
        """One checkpoint per streaming query: offsets, commits and state are per query."""
        return self.checkpoint_path / query

    @property
    def model_path(self) -> Path:
        """MODEL_DIR as a path (a relative one under local_dir())."""
        return self.local_path(self.model_dir)

    @property
    def es_urls(self) -> list[str]:
        """ES_NODES (comma-separated host:port) as URLs with ES_SCHEME, e.g. ["http://localhost:9200"].

        A node without a port gets 9200, as ES-Hadoop gives it (es.port), whatever the scheme:
        the Python client would otherwise have none (http) or 443 (https), not the nodes the
        stream job writes to."""
        return [f"{self.es_scheme}://{node}" if re.search(r"(\]|^[^\[:]+):\d+$", node)
                else f"{self.es_scheme}://{node}:{ES_HADOOP_PORT}"
                for node in (n.strip() for n in self.es_nodes.split(",")) if node]

    @property
    def polygon_api_key(self) -> Secret:
        """POLYGON_API_KEY (or the file named by POLYGON_API_KEY_FILE), read on each access."""
        return read_secret("POLYGON_API_KEY")

    @property
    def es_password(self) -> Secret:
        """ES_PASSWORD (or the file named by ES_PASSWORD_FILE), read on each access."""
        return read_secret("ES_PASSWORD")

    @property
    def es_api_key(self) -> Secret:
        """ES_API_KEY (or the file named by ES_API_KEY_FILE), read on each access."""
        return read_secret("ES_API_KEY")

    @property
    def es_truststore_password(self) -> Secret:
        """ES_TRUSTSTORE_PASSWORD (or the file named by ES_TRUSTSTORE_PASSWORD_FILE), read on each access."""
        return read_secret("ES_TRUSTSTORE_PASSWORD")

    @property
    def kafka_sasl_password(self) -> Secret:
        """KAFKA_SASL_PASSWORD (or the file named by KAFKA_SASL_PASSWORD_FILE), read on each access."""
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
        """Security options for Spark's Kafka source: kafka_client_options as Java client properties."""
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


def _read_defaults(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SettingError(f"cannot read the settings file {path} ({exc.strerror or exc}): set "
                           "FINSTREAM_CONF_DIR to a folder holding pipeline.toml, or unset it") from None
    except tomllib.TOMLDecodeError as exc:
        bom = path.read_bytes().startswith(b"\xef\xbb\xbf")
        raise SettingError(f"{path} starts with a byte-order mark, which TOML does not allow: save it as UTF-8 "
                           "without one" if bom else f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SettingError(f"{path} is not UTF-8 text, as TOML must be: save it as UTF-8") from None


def _check_together(settings: Settings) -> None:
    """The checks that take two settings or a file: SettingError naming them otherwise."""
    indexes: dict[str, str] = {}
    for setting in dataclasses.fields(settings):
        if setting.name.startswith("es_index_"):
            name = getattr(settings, setting.name)
            if name in indexes:
                raise SettingError(f"{indexes[name]} and {setting.name.upper()} are both {name!r}: each kind of "
                                   "document needs its own index; give them different names")
            indexes[name] = setting.name.upper()
    if settings.live_ws_steady_seconds <= settings.live_ws_reconnect_cap_seconds:
        raise SettingError(f"LIVE_WS_STEADY_SECONDS={settings.live_ws_steady_seconds:g} must be above "
                           f"LIVE_WS_RECONNECT_CAP_SECONDS={settings.live_ws_reconnect_cap_seconds:g}: another client "
                           "reconnecting with that back-off would not be caught (docs/configuration.md)")
    for key in ("KAFKA_SSL_CAFILE", "ES_CA_CERTS"):
        value = getattr(settings, key.lower())
        if value and not (os.path.isfile(value) and os.access(value, os.R_OK)):
            raise SettingError(f"{key}={value!r}: no readable file there: name the CA's PEM file, or leave it empty")


def _wanted(kind: str, metadata) -> str:
    """What a number of the field must be, e.g. "a whole number from 1 to 2147483647"."""
    low = metadata.get("at_least", metadata.get("above"))
    most = metadata.get("at_most") or JAVA_INT_MAX
    what = "a whole number" if kind == "int" else "a number"
    return f"{what} from {low} to {most}" if "at_least" in metadata else f"{what} above {low}, at most {most}"


def _checked(key: str, raw, kind, metadata, source: str):
    """`raw` (the file's TOML value or the environment's text) as the field's type, within its
    range or choices; SettingError naming the setting, the value and `source` otherwise."""
    kind = kind if isinstance(kind, str) else kind.__name__
    value = _coerce(raw, kind)
    if value is None:
        unquote = "; write it without quotes" if isinstance(raw, _Quoted) else ""
        raise SettingError(f"setting {key}={_shown(raw)} ({source}) is not {KINDS[kind]}{unquote}")
    if "valid" in metadata and not metadata["valid"](value):
        shown = _shown(raw, metadata.get("hosts", False))
        hidden = " (what followed a colon and was no port is shown as ***)" if shown.endswith(":***'") else ""
        raise SettingError(f"setting {key}={shown} ({source}) is not {metadata['wanted']}{hidden}")
    if "one_of" in metadata and value not in metadata["one_of"]:
        raise SettingError(f"setting {key}={_shown(raw)} ({source}) is not one of: "
                           f"{', '.join(repr(c) for c in metadata['one_of'])}")
    if not _in_range(value, kind, metadata):
        raise SettingError(f"setting {key}={_shown(raw)} ({source}) is out of range: give {_wanted(kind, metadata)} "
                           "(docs/configuration.md)")
    return value


def _shown(raw, hosts: bool = False) -> str:
    """A refused value as its message shows it, its credentials as ***: a URI's
    (errors.hide_credentials), and whatever comes before the value's last @ otherwise, which a
    host list does not take but a user may try (`bob:pw@localhost:9092` -> `***@localhost:9092`;
    a password may hold , or a space, so no item boundary is trusted). A scheme is kept.
    `hosts`: a host list, where a user may also write `user:password` alone: what follows a colon
    that starts no port (digits to a comma or the end), no `//` and lies in no [IPv6 address] is
    hidden, to the end (`elastic:pw` -> `elastic:***`, `localhost:abc` -> `localhost:***`)."""
    text = hide_credentials(repr(raw))
    at = text.rfind("@")
    if hosts:  # after the quote, or after the last @ (hidden below)
        cut = at + 1 if at >= 0 else 1
        text = text[:cut] + _hide_after_a_colon(text[cut:-1]) + text[-1]
    if at < 0 or text[:at].endswith("://***"):
        return text
    scheme = text.find("://")
    kept = text[:scheme + 3] if 0 <= scheme < at else text[:1] if text[:1] in "'\"" else ""
    return f"{kept}***{text[at:]}"


def _hide_after_a_colon(nodes: str) -> str:
    """`nodes` (a host list's text) cut at its first colon that starts no port, no `//` and lies
    in no brackets, with *** after it; unchanged without one. Scanned from the left: a password
    may hold ] [ , or a quote."""
    bracketed = False
    for i, char in enumerate(nodes):
        if char == "[":
            bracketed = True
        elif char == "]":
            bracketed = False
        elif char == ":" and not bracketed:
            rest = nodes[i + 1:]
            if rest.startswith("//") or re.match(r"[0-9]+\s*(?:,|$)", rest):
                continue
            return nodes[:i + 1] + "***"
    return nodes


def _in_range(value, kind: str, metadata) -> bool:
    if "at_least" not in metadata and "above" not in metadata:
        return True
    low = metadata.get("at_least", metadata.get("above"))
    most = metadata.get("at_most") or JAVA_INT_MAX
    inside = value >= low if "at_least" in metadata else value > low
    return math.isfinite(value) and inside and value <= most


KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
         "str": "text (in the file, a quoted TOML string)"}


def setting_type(name: str) -> Callable[[str], object]:
    """An argparse type for a flag that overrides the setting `name` (e.g. "live_poll_seconds"):
    the flag's text within the setting's own type and range, else Refused saying what it must be.
    One range for both, so the flag cannot take what the setting would refuse."""
    setting = next(f for f in dataclasses.fields(Settings) if f.name == name)
    kind = setting.type if isinstance(setting.type, str) else setting.type.__name__

    def parse(text: str):
        value = _coerce(text, kind)
        if value is None or not _in_range(value, kind, setting.metadata):
            raise Refused(f"{text} is not {_wanted(kind, setting.metadata)}")
        return value
    parse.__name__ = parse.__qualname__ = name
    return parse


class _Quoted(str):
    """A TOML string given for a number or a flag (`"3"`): not of the field's type."""


def _coerce(raw, kind: str):
    """`raw` as `kind` (bool, int, float or str), or None when it is not one: a bool is not a
    number, an int is whole (3.9 is not 3), and text is text (a TOML date is not)."""
    if isinstance(raw, _Quoted):
        return None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        return True if text in ("1", "true", "yes", "on") else False if text in ("0", "false", "no", "off", "") \
            else None
    if kind == "str":
        return raw if isinstance(raw, str) else None
    if isinstance(raw, bool):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    if kind == "float":
        return number
    if not number.is_integer():
        return None
    # Whole numbers beyond a double's exact range keep their digits.
    return int(raw) if isinstance(raw, int) or str(raw).strip().lstrip("+-").isdigit() else int(number)
