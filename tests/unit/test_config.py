from __future__ import annotations

import dataclasses
import tomllib

import pytest

from finstream.core.config import JAVA_INT_MAX, SettingError, Settings, conf_dir, setting_type
from finstream.core.errors import exit_on_user_error


def test_defaults_come_from_conf():
    settings = Settings.load(environ={})
    assert settings.kafka_topic == "finance-data"
    assert settings.es_nodes == "localhost:9200"
    assert settings.es_index_bars == "finance-bars"
    assert settings.es_index_dead_letters == "finance-dead-letters"
    assert settings.polygon_base_url == "https://api.massive.com"


def test_every_setting_has_exactly_one_default():
    with open(conf_dir() / "pipeline.toml", "rb") as f:
        defaults = tomllib.load(f)
    assert {f.name.upper() for f in dataclasses.fields(Settings)} == set(defaults)


def test_environment_overrides_with_types():
    settings = Settings.load(environ={"KAFKA_TOPIC": "t", "KAFKA_TOPIC_PARTITIONS": "7", "ES_NODES_WAN_ONLY": "false"})
    assert (settings.kafka_topic, settings.kafka_topic_partitions, settings.es_nodes_wan_only) == ("t", 7, False)


def test_bad_value_names_the_setting():
    with pytest.raises(ValueError, match="KAFKA_TOPIC_PARTITIONS"):
        Settings.load(environ={"KAFKA_TOPIC_PARTITIONS": "many"})


RANGED = [f for f in dataclasses.fields(Settings) if "at_least" in f.metadata or "above" in f.metadata]
CHOSEN = [f for f in dataclasses.fields(Settings) if "one_of" in f.metadata]


def test_every_number_has_a_range_its_default_meets():
    numbers = {f.name for f in dataclasses.fields(Settings) if f.type in ("int", "float", int, float)}
    assert numbers == {f.name for f in RANGED}
    Settings.load(environ={})


@pytest.mark.parametrize("setting", RANGED, ids=lambda f: f.name.upper())
def test_a_number_out_of_its_range_is_refused_in_one_line(setting):
    key = setting.name.upper()
    is_float = setting.type in ("float", float)
    low = setting.metadata.get("at_least", setting.metadata.get("above"))
    most = setting.metadata["at_most"] or JAVA_INT_MAX
    just_out = low - 1 if "at_least" in setting.metadata else low
    too_many = most * 2 if is_float else most + 1
    for raw in (str(just_out), str(too_many), "nan", "inf", "1e300") if is_float else (str(just_out), str(too_many)):
        with pytest.raises(SettingError, match=rf"^setting {key}='{raw}' \(from the environment\) is out of range: "
                                               rf"give a .*, at most {most}|^setting {key}='{raw}' .* to {most} "):
            Settings.load(environ={key: raw})
    edge = low if "at_least" in setting.metadata else low + 0.5 if is_float else low + 1
    edge = min(edge, most)
    assert getattr(Settings.load(environ=_with_partner(key, edge)), setting.name) == edge
    assert getattr(Settings.load(environ=_with_partner(key, most)), setting.name) == most


def _with_partner(key: str, value) -> dict[str, str]:
    """{key: value}, with the setting it must stay apart from moved out of its way: a steady
    connection lasts longer than the reconnect cap."""
    if key == "LIVE_WS_STEADY_SECONDS":
        return {key: str(value), "LIVE_WS_RECONNECT_CAP_SECONDS": str(min(value / 2, 3600))}
    if key == "LIVE_WS_RECONNECT_CAP_SECONDS":
        return {key: str(value), "LIVE_WS_STEADY_SECONDS": str(value * 2)}
    return {key: str(value)}


def test_every_float_names_its_largest_value():
    floats = [f.name for f in RANGED if f.type in ("float", float)]
    assert floats and all(f.metadata["at_most"] for f in dataclasses.fields(Settings) if f.name in floats)


@pytest.mark.parametrize("setting", CHOSEN, ids=lambda f: f.name.upper())
def test_a_text_outside_its_choices_is_refused(setting):
    key = setting.name.upper()
    with pytest.raises(SettingError, match=rf"^setting {key}='nonsense' \(from the environment\) is not one of: "):
        Settings.load(environ={key: "nonsense"})
    # Choices are exact: a lower-case protocol would fail inside kafka-python.
    if setting.metadata["one_of"][-1].upper() == setting.metadata["one_of"][-1]:
        with pytest.raises(SettingError):
            Settings.load(environ={key: setting.metadata["one_of"][-1].lower()})


@pytest.mark.parametrize(("raw", "expected"), [("7", 7), (" +7 ", 7), ("1e3", 1000), (9223372036854775807,
                                                                                    9223372036854775807)])
def test_whole_numbers_in_any_spelling(raw, expected):
    assert Settings.load(environ={"STREAM_MAX_OFFSETS_PER_TRIGGER": raw}).stream_max_offsets_per_trigger == expected


def test_a_number_in_the_file_is_checked_like_one_from_the_environment(tmp_path):
    text = (conf_dir() / "pipeline.toml").read_text()
    for line, message in (("KAFKA_TOPIC_PARTITIONS = 3.9", "KAFKA_TOPIC_PARTITIONS=3.9 .* is not a whole number"),
                          ("KAFKA_TOPIC_PARTITIONS = true", "KAFKA_TOPIC_PARTITIONS=True .* is not a whole number"),
                          ("LIVE_POLL_SECONDS = true", "LIVE_POLL_SECONDS=True .* is not a number"),
                          ("KAFKA_TOPIC_PARTITIONS = inf", "KAFKA_TOPIC_PARTITIONS=inf .* is not a whole number")):
        key = line.split(" = ")[0]
        path = tmp_path / "pipeline.toml"
        path.write_text("\n".join(line if row.startswith(f"{key} =") else row for row in text.splitlines()))
        with pytest.raises(SettingError, match=rf"^setting {message}") as refused:
            Settings.load(environ={}, path=path)
        assert f"(in {path})" in str(refused.value)


def test_a_broken_or_missing_settings_file_is_one_line(tmp_path):
    with pytest.raises(SettingError, match=r"^cannot read the settings file .*FINSTREAM_CONF_DIR"):
        Settings.load(environ={}, path=tmp_path / "nowhere.toml")
    (tmp_path / "bad.toml").write_text("KAFKA_TOPIC = \n")
    with pytest.raises(SettingError, match=r"bad.toml is not valid TOML"):
        Settings.load(environ={}, path=tmp_path / "bad.toml")
    (tmp_path / "old.toml").write_text('KAFKA_TOPIC = "t"\n')
    with pytest.raises(SettingError, match=r"old.toml has no default for KAFKA_BOOTSTRAP_SERVERS .*: add it"):
        Settings.load(environ={}, path=tmp_path / "old.toml")


def test_sasl_without_a_mechanism_is_refused():
    with pytest.raises(SettingError, match="KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM"):
        Settings.load(environ={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


def test_a_refused_setting_is_a_user_error_one_line_exit_2(capsys):
    def main():
        Settings.load(environ={"STREAM_STATE_BUCKETS": "0"})

    assert exit_on_user_error(main) == 2
    assert capsys.readouterr().err == ("error: setting STREAM_STATE_BUCKETS='0' (from the environment) is out of "
                                       "range: give a whole number from 1 to 2147483647 (docs/configuration.md)\n")


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("KAFKA_TOPIC", "finance-data", True), ("KAFKA_TOPIC", "bars.v2_X", True), ("KAFKA_TOPIC", "my topic", False),
    ("KAFKA_TOPIC", "..", False), ("KAFKA_TOPIC", "t" * 250, False), ("KAFKA_TOPIC", "a/b", False),
    ("ES_INDEX_BARS", "finance-bars", True), ("ES_INDEX_BARS", ".finance", True), ("ES_INDEX_BARS", "Finance", False),
    ("ES_INDEX_DEAD_LETTERS", "_dead", False), ("ES_INDEX_PREDICTIONS", "a:b", False),
    ("ES_INDEX_MODEL_METRICS", "a b", False), ("ES_INDEX_PIPELINE_METRICS", "x" * 256, False),
    # Kafka's own topics, and Elasticsearch's 255 counted in bytes: 128 two-byte letters are 256.
    ("KAFKA_TOPIC", "__consumer_offsets", False), ("KAFKA_TOPIC", "__transaction_state", False),
    ("KAFKA_TOPIC", "_bars", True), ("ES_INDEX_BARS", "é" * 127, True), ("ES_INDEX_BARS", "é" * 128, False),
    # Upper case in any script; { } would make ES-Hadoop route each document by a field's value.
    ("ES_INDEX_BARS", "bars-É", False), ("ES_INDEX_PREDICTIONS", "predictions{ticker}", False)])
def test_names_kafka_and_elasticsearch_would_refuse_are_refused_at_load(key, value, ok):
    if ok:
        assert Settings.load(environ={key: value})
    else:
        with pytest.raises(SettingError, match=rf"^setting {key}=.* is not an? (Kafka topic|Elasticsearch index) name"):
            Settings.load(environ={key: value})


@pytest.mark.parametrize(("environ", "brokers", "expected"), [
    ({}, 1, (1, 1)), ({}, 3, (3, 2)), ({}, 5, (3, 2)), ({"KAFKA_REPLICATION_FACTOR": "2"}, 3, (2, 1)),
    ({"KAFKA_REPLICATION_FACTOR": "3"}, 1, "KAFKA_REPLICATION_FACTOR=3, but the cluster at .* has 1 broker"),
    ({"KAFKA_MIN_INSYNC_REPLICAS": "2"}, 1,
     "KAFKA_MIN_INSYNC_REPLICAS=2 is more than the topic's replication factor, 1"),
])
def test_a_topic_replication_the_cluster_cannot_give_is_one_line(environ, brokers, expected):
    from finstream.core.errors import UserError
    from finstream.stores.topics import replication

    settings = Settings.load(environ=environ)
    if isinstance(expected, tuple):
        assert replication(settings, brokers) == expected
    else:
        with pytest.raises(UserError, match=expected):
            replication(settings, brokers)


def test_two_kinds_of_document_in_one_index_are_refused():
    with pytest.raises(SettingError, match=r"^ES_INDEX_BARS and ES_INDEX_PREDICTIONS are both 'finance-predictions': "
                                           r"each kind of document needs its own index"):
        Settings.load(environ={"ES_INDEX_BARS": "finance-predictions"})


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", True), ("KAFKA_BOOTSTRAP_SERVERS", "a:9092, b.c:9093", True),
    ("KAFKA_BOOTSTRAP_SERVERS", "[::1]:9092", True), ("KAFKA_BOOTSTRAP_SERVERS", "host:abc", False),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost", False), ("KAFKA_BOOTSTRAP_SERVERS", "a:9092,", False),
    ("KAFKA_BOOTSTRAP_SERVERS", "a:70000", False), ("KAFKA_BOOTSTRAP_SERVERS", "PLAINTEXT://a:9092", False),
    ("ES_NODES", "localhost", True), ("ES_NODES", "es1:9200,es2:9200", True), ("ES_NODES", "http://es:9200", False),
    ("ES_NODES", "es:0", False), ("ES_NODES", "", False),
    ("MLFLOW_TRACKING_URI", "", True), ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000", True),
    ("MLFLOW_TRACKING_URI", "sqlite:////tmp/m.db", True), ("MLFLOW_TRACKING_URI", "databricks", True),
    ("MLFLOW_TRACKING_URI", "not a uri", False), ("MLFLOW_TRACKING_URI", "/srv/mlruns", False),
    ("MLFLOW_TRACKING_URI", "sqlite:///:memory:", False), ("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db", True),
    ("MLFLOW_TRACKING_URI", "http://bob:S3c r3t@h:1/", False), ("POLYGON_BASE_URL", 'http://bob:S3c"r3t@h:1', False),
    ("POLYGON_WS_REALTIME_URL", "wss://h/<x>", False), ("POLYGON_BASE_URL", "http://bob:S3c%20r3t@h:1", True),
    # The likeliest slips: no http:// (read as a scheme), a misspelt scheme, no host.
    ("MLFLOW_TRACKING_URI", "localhost:5000", False), ("MLFLOW_TRACKING_URI", "htp://x:5000", False),
    ("MLFLOW_TRACKING_URI", "http://", False), ("MLFLOW_TRACKING_URI", "postgresql+psycopg2://u@db/m", True),
    ("MLFLOW_TRACKING_URI", "databricks://profile", True), ("MLFLOW_TRACKING_URI", "file:///srv/mlruns", True),
    ("KAFKA_BOOTSTRAP_SERVERS", "[fe80::1%eth0]:9092", True),
    ("POLYGON_BASE_URL", "http://127.0.0.1:8080", True), ("POLYGON_BASE_URL", "api.polygon.io", False),
    ("POLYGON_BASE_URL", "", False), ("POLYGON_WS_REALTIME_URL", "https://socket.massive.com", False),
    ("POLYGON_WS_DELAYED_URL", "ws://127.0.0.1:9000", True), ("CHECKPOINT_DIR", " ", False), ("MODEL_DIR", "", False),
    # ES-Hadoop's sizes and times: its own suffixes only (it takes the spaces out, then parses).
    ("ES_BATCH_SIZE_BYTES", "5mb", True), ("ES_BATCH_SIZE_BYTES", "1.5M", True),
    ("ES_BATCH_SIZE_BYTES", "512 kb", True), ("ES_BATCH_SIZE_BYTES", "1048576", True),
    ("ES_BATCH_SIZE_BYTES", "lots", False), ("ES_BATCH_SIZE_BYTES", "5MB", False),
    ("ES_BATCH_SIZE_BYTES", "1.5b", False),
    ("ES_BATCH_WRITE_RETRY_WAIT", "5s", True),
    ("ES_BATCH_WRITE_RETRY_WAIT", "500ms", True), ("ES_BATCH_WRITE_RETRY_WAIT", "1.5 m", True),
    ("ES_BATCH_WRITE_RETRY_WAIT", "10000", True), ("ES_BATCH_WRITE_RETRY_WAIT", "5 seconds", False),
    ("ES_BATCH_WRITE_RETRY_WAIT", "forever", False), ("ES_BATCH_WRITE_RETRY_WAIT", "5000S", True),
    # ... within what ES-Hadoop keeps them in: an int of bytes, a long of milliseconds.
    ("ES_BATCH_SIZE_BYTES", "1.5gb", True), ("ES_BATCH_SIZE_BYTES", "2g", False),
    ("ES_BATCH_SIZE_BYTES", "99999999999", False), ("ES_BATCH_WRITE_RETRY_WAIT", "99999999999999999999", False),
    ("ES_BATCH_WRITE_RETRY_WAIT", "-5s", False),
    # Schemes in any case, as the HTTP and WebSocket clients read them; no URI for a local
    # folder; no IPv6 zone where the Elasticsearch client cannot read one.
    ("POLYGON_BASE_URL", "HTTPS://api.massive.com", True),
    ("POLYGON_WS_REALTIME_URL", "WSS://socket.massive.com", True),
    # MLflow matches its schemes in lower case: DATABRICKS would silently make a folder store.
    ("MLFLOW_TRACKING_URI", "DATABRICKS", False), ("MLFLOW_TRACKING_URI", "SQLITE:///m.db", False),
    ("CHECKPOINT_DIR", "hdfs://nn/checkpoints", False), ("MODEL_DIR", "s3a://bucket/models", False),
    ("CHECKPOINT_DIR", "/data/checkpoints", True), ("ES_NODES", "[fe80::1%eth0]:9200", False),
    ("ES_INDEX_BARS", "financ\udce9", False),
    # An IPv6 node names its port (ES-Hadoop would read [::1] as an address without one); an
    # address is an address; digits are ASCII, as the servers' parsers read them.
    ("ES_NODES", "[::1]:9200", True), ("ES_NODES", "[::1]", False), ("ES_NODES", "[1]:9200", False),
    ("KAFKA_BOOTSTRAP_SERVERS", "[:]:9092", False), ("ES_NODES", "127.0.0.1:\uff11", False),
    ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:\uff11", False), ("ES_BATCH_SIZE_BYTES", "\uff15mb", False),
    ("ES_BATCH_SIZE_BYTES", "5mb\u00a0", False),
    # Java's double and long read a sign and an exponent; a time's decimal saturates at a long.
    ("ES_BATCH_SIZE_BYTES", "+5mb", True), ("ES_BATCH_SIZE_BYTES", "1e3kb", True),
    ("ES_BATCH_WRITE_RETRY_WAIT", "+5s", True),
    ("ES_BATCH_WRITE_RETRY_WAIT", "1e20s", True),
    # Host names of labels: none empty, none starting or ending with -.
    ("KAFKA_BOOTSTRAP_SERVERS", "-:1", False), ("KAFKA_BOOTSTRAP_SERVERS", "...:1", False),
    ("ES_NODES", "a..b:9200", False), ("ES_NODES", "es-:9200", False), ("ES_NODES", ".es", False),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka_1:9092", True), ("ES_NODES", "es-01.internal.:9200", True),
    ("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.7:9092", True),
    # A tracking server's port is one.
    ("MLFLOW_TRACKING_URI", "http://mlflow:99999", False), ("MLFLOW_TRACKING_URI", "http://mlflow:0", False),
    ("MLFLOW_TRACKING_URI", "https://u:p@mlflow:5000/prefix", True),
])
def test_addresses_are_checked_at_load(key, value, ok):
    if ok:
        assert Settings.load(environ={key: value})
    else:
        with pytest.raises(SettingError, match=rf"^setting {key}='.*' \(from the environment\) is not "):
            Settings.load(environ={key: value})


def test_a_node_without_a_port_is_on_es_hadoops_port_for_both_clients():
    urls = Settings.load(environ={"ES_NODES": "es01, es02:9201,[::1]:9300", "ES_SCHEME": "https"}).es_urls
    assert urls == ["https://es01:9200", "https://es02:9201", "https://[::1]:9300"]


def test_a_steady_connection_is_longer_than_the_reconnect_cap():
    with pytest.raises(SettingError, match=r"^LIVE_WS_STEADY_SECONDS=30 must be above "
                                           r"LIVE_WS_RECONNECT_CAP_SECONDS=60"):
        Settings.load(environ={"LIVE_WS_STEADY_SECONDS": "30"})


def test_a_ca_file_that_is_not_there_is_refused(tmp_path):
    for missing in ("/nonexistent/ca.pem", str(tmp_path)):
        with pytest.raises(SettingError, match=rf"^KAFKA_SSL_CAFILE='{missing}': no readable file there"):
            Settings.load(environ={"KAFKA_SSL_CAFILE": missing})
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert Settings.load(environ={"ES_CA_CERTS": str(tmp_path / "ca.pem")}).es_ca_certs == str(tmp_path / "ca.pem")


def test_a_misspelt_key_or_a_date_in_the_file_is_refused(tmp_path):
    text = (conf_dir() / "pipeline.toml").read_text()
    (tmp_path / "typo.toml").write_text(text + "\nKAFKA_TOPIK = \"t\"\n")
    with pytest.raises(SettingError, match=r"typo.toml sets KAFKA_TOPIK, which is not a setting: did you mean "
                                           r"KAFKA_TOPIC\?$"):
        Settings.load(environ={}, path=tmp_path / "typo.toml")
    (tmp_path / "date.toml").write_text(text.replace('CHECKPOINT_DIR = "checkpoints/stream_index"',
                                                     "CHECKPOINT_DIR = 2024-01-01"))
    with pytest.raises(SettingError, match=r"^setting CHECKPOINT_DIR=datetime.date\(2024, 1, 1\) .* is not text"):
        Settings.load(environ={}, path=tmp_path / "date.toml")
    (tmp_path / "latin1.toml").write_bytes(text.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(SettingError, match=r"latin1.toml is not UTF-8 text"):
        Settings.load(environ={}, path=tmp_path / "latin1.toml")


def test_a_secret_file_that_cannot_be_read_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ES_PASSWORD", raising=False)
    monkeypatch.setenv("ES_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingError, match=rf"^ES_PASSWORD_FILE='{tmp_path}/missing': cannot read it \(No such file"):
        Settings.load(environ={}).es_password.reveal()
    (tmp_path / "latin1").write_bytes("s\xe9cret".encode("latin-1"))
    monkeypatch.setenv("ES_PASSWORD_FILE", str(tmp_path / "latin1"))
    with pytest.raises(SettingError, match=r"latin1' is not UTF-8 text"):
        Settings.load(environ={}).es_password.reveal()
    # Settings.load reads each one named, too: the mistake shows before any server is reached.
    with pytest.raises(SettingError, match=r"latin1' is not UTF-8 text"):
        Settings.load(environ={"ES_PASSWORD_FILE": str(tmp_path / "latin1")})
    (tmp_path / "ok").write_text("s3cret\n")
    monkeypatch.setenv("ES_PASSWORD_FILE", str(tmp_path / "ok"))
    assert Settings.load(environ={}).es_password.reveal() == "s3cret"


def test_a_flag_that_overrides_a_setting_takes_its_range():
    from finstream.core.errors import Refused

    poll = setting_type("live_poll_seconds")
    assert poll("30") == 30.0 and poll("86400") == 86400.0
    for text in ("0", "-1", "1e300", "nan", "soon"):
        with pytest.raises(Refused, match=rf"^{text} is not a number above 0, at most 86400$"):
            poll(text)
    with pytest.raises(Refused, match=r"^-1 is not a whole number from 0 to 2147483647$"):
        setting_type("polygon_max_requests_per_minute")("-1")


def test_the_file_gives_each_value_its_own_type_and_keeps_no_secret(tmp_path):
    text = (conf_dir() / "pipeline.toml").read_text()
    (tmp_path / "quoted.toml").write_text(text.replace("KAFKA_TOPIC_PARTITIONS = 1", 'KAFKA_TOPIC_PARTITIONS = "3"'))
    with pytest.raises(SettingError, match=r"^setting KAFKA_TOPIC_PARTITIONS='3' \(in .*quoted.toml\) is not a whole "
                                           r"number; write it without quotes$"):
        Settings.load(environ={}, path=tmp_path / "quoted.toml")
    (tmp_path / "secret.toml").write_text(text + '\nPOLYGON_API_KEY = "abc"\n')
    with pytest.raises(SettingError, match=r"secret.toml sets POLYGON_API_KEY: secrets never come from this file; set "
                                           r"POLYGON_API_KEY, or POLYGON_API_KEY_FILE naming a file that holds it, in "
                                           r"the environment$"):
        Settings.load(environ={}, path=tmp_path / "secret.toml")
    (tmp_path / "secret-file.toml").write_text(text + '\nES_PASSWORD_FILE = "/run/secrets/es"\n')
    with pytest.raises(SettingError, match=r"sets ES_PASSWORD_FILE: secrets never come from this file; set "
                                           r"ES_PASSWORD, or ES_PASSWORD_FILE naming a file that holds it, in the "
                                           r"environment$"):
        Settings.load(environ={}, path=tmp_path / "secret-file.toml")
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    with pytest.raises(SettingError, match=r"bom.toml starts with a byte-order mark"):
        Settings.load(environ={}, path=tmp_path / "bom.toml")


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("MLFLOW_TRACKING_URI", "http://mlflow:s3cret@mlflow:99999", "'http://***@mlflow:99999'"),
    ("MLFLOW_TRACKING_URI", "http://bob:s3cret@", "'http://***@'"),  # no host after the user
    ("MLFLOW_TRACKING_URI", "http://bob:s3/cret@mlflow:5000", "'http://***@mlflow:5000'"),  # a / unencoded
    ("POLYGON_BASE_URL", "https://bob:s3cret@", "'https://***@'"),
    ("POLYGON_WS_DELAYED_URL", "wss://s3cret@", "'wss://***@'"),
    # Host lists take no user information, and without a scheme it is not a URL's.
    ("KAFKA_BOOTSTRAP_SERVERS", "bob:s3cret@localhost:9092", "'***@localhost:9092'"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092, bob:s3@cret@kafka:9093", "'***@kafka:9093'"),
    ("KAFKA_BOOTSTRAP_SERVERS", "bob:s3,cret@kafka:9092", "'***@kafka:9092'"),  # no separator is trusted
    ("KAFKA_BOOTSTRAP_SERVERS", "bob:my s3cret@kafka:9092", "'***@kafka:9092'"),
    ("KAFKA_BOOTSTRAP_SERVERS", "bob:s3'cret@kafka:9092", "\"***@kafka:9092\""),
    ("ES_NODES", "elastic:s3cret@localhost", "'***@localhost'"),
    ("ES_NODES", "https://elastic:s3cret@localhost:9200", "'https://***@localhost:9200'"),
    ("ES_NODES", "https://elastic:s3,cret@localhost:9200", "'https://***@localhost:9200'"),
    # A user:password alone in a host list: what follows a host's colon that is no port.
    ("ES_NODES", "elastic:S3cr3t", "'elastic:***'"),
    ("ES_NODES", "localhost:9200,elastic:s3,cret", "'localhost:9200,elastic:***'"),
    ("KAFKA_BOOTSTRAP_SERVERS", "[::1]:9092,bob:s3cret", "'[::1]:9092,bob:***'"),
    ("ES_NODES", "elastic:s3]cret", "'elastic:***'"), ("ES_NODES", ":s3cret", "':***'"),  # scanned from the left
    ("KAFKA_BOOTSTRAP_SERVERS", "bob:s3@cret@kafka:9092,x:s3cret", "'***@kafka:9092,x:***'"),
])
def test_a_refused_value_is_not_repeated_with_its_password(key, value, shown):
    with pytest.raises(SettingError) as refused:
        Settings.load(environ={key: value})
    assert "s3" not in str(refused.value) and "cret" not in str(refused.value)
    assert str(refused.value).startswith(f"setting {key}={shown} (from the environment) is not ")


@pytest.mark.parametrize(("value", "shown"), [
    ("http://localhost:9200", "'http://localhost:9200'"), ("SASL_SSL://broker:9093", "'SASL_SSL://broker:9093'"),
    ("localhost:99999", "'localhost:99999'"), ("[fe80::1%eth0]:9200", "'[fe80::1%eth0]:9200'"),
    ("localhost:abc", "'localhost:***'"),  # what no port is may be a password: hidden, and said so
])
def test_a_host_lists_mistake_stays_readable(value, shown):
    with pytest.raises(SettingError) as refused:
        Settings.load(environ={"ES_NODES": value})
    assert str(refused.value).startswith(f"setting ES_NODES={shown} (from the environment) is not ")
    assert str(refused.value).endswith("(what followed a colon and was no port is shown as ***)") == ("***" in shown)
