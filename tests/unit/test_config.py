from __future__ import annotations

import dataclasses
import tomllib

import pytest

from finstream.core.config import Secret, SettingError, Settings, conf_dir
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


RANGED = [f for f in dataclasses.fields(Settings) if f.metadata]


def test_every_number_has_a_range_its_default_meets():
    numbers = {f.name for f in dataclasses.fields(Settings) if f.type in ("int", "float", int, float)}
    assert numbers == {f.name for f in RANGED}
    Settings.load(environ={})


@pytest.mark.parametrize("setting", RANGED, ids=lambda f: f.name.upper())
def test_a_number_out_of_its_range_is_refused_in_one_line(setting):
    key = setting.name.upper()
    low = setting.metadata.get("at_least", setting.metadata.get("above"))
    just_out = low - 1 if "at_least" in setting.metadata else low
    for raw in (str(just_out), "nan", "inf") if setting.type in ("float", float) else (str(just_out),):
        with pytest.raises(SettingError, match=rf"^setting {key}='{raw}' is out of range: give a .*"):
            Settings.load(environ={key: raw})
    edge = low if "at_least" in setting.metadata else low + 0.5 if setting.type in ("float", float) else low + 1
    assert getattr(Settings.load(environ={key: str(edge)}), setting.name) == edge


def test_a_refused_setting_is_a_user_error_one_line_exit_2(capsys):
    def main():
        Settings.load(environ={"STREAM_STATE_BUCKETS": "0"})

    assert exit_on_user_error(main) == 2
    assert capsys.readouterr().err == ("error: setting STREAM_STATE_BUCKETS='0' is out of range: give a whole "
                                       "number, 1 or more (docs/configuration.md)\n")


def test_secrets_come_from_env_or_file_and_never_print(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYGON_API_KEY", "abc123")
    key = Settings.load().polygon_api_key
    assert key.reveal() == "abc123" and "abc123" not in repr(key) and "abc123" not in f"{key}"
    monkeypatch.delenv("POLYGON_API_KEY")
    (tmp_path / "key").write_text("from-file\n")
    monkeypatch.setenv("POLYGON_API_KEY_FILE", str(tmp_path / "key"))
    assert Settings.load().polygon_api_key.reveal() == "from-file"
    assert not Secret("")


def test_relative_paths_live_in_the_local_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("FINSTREAM_LOCAL", str(tmp_path))
    assert Settings.load().checkpoint_path == tmp_path / "checkpoints" / "stream_index"
    monkeypatch.setenv("CHECKPOINT_DIR", "/abs/cp")
    assert str(Settings.load().checkpoint_path) == "/abs/cp"


def test_kafka_security_options_for_both_clients(monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-pass-1")
    settings = Settings.load(environ={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                      "KAFKA_SASL_USERNAME": "svc", "KAFKA_SSL_CAFILE": "/ca.pem"})
    python = settings.kafka_client_options()
    assert python == {"security_protocol": "SASL_SSL", "ssl_cafile": "/ca.pem", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "svc", "sasl_plain_password": "kafka-pass-1"}
    spark = settings.kafka_spark_options()
    assert spark["kafka.security.protocol"] == "SASL_SSL" and spark["kafka.ssl.truststore.type"] == "PEM"
    assert "ScramLoginModule required" in spark["kafka.sasl.jaas.config"]
    assert Settings.load(environ={}).kafka_client_options() == {"security_protocol": "PLAINTEXT"}


def test_es_credentials_and_tls_reach_es_hadoop(monkeypatch):
    from finstream.stores.elastic import ClusterInfo, es_hadoop_options

    monkeypatch.setenv("ES_PASSWORD", "es-pass-1")
    monkeypatch.setenv("ES_TRUSTSTORE_PASSWORD", "ts-pass")
    settings = Settings.load(environ={"ES_SCHEME": "https", "ES_USERNAME": "writer", "ES_TRUSTSTORE_PATH": "/ts.p12"})
    options = es_hadoop_options(settings, ClusterInfo("c", "u", "9.5.4"))
    assert options["es.net.ssl"] == "true"
    assert (options["es.net.http.auth.user"], options["es.net.http.auth.pass"]) == ("writer", "es-pass-1")
    assert options["es.net.ssl.truststore.location"] == "file:///ts.p12"
    assert settings.es_urls == ["https://localhost:9200"]


@pytest.mark.parametrize("brokers, configured, expected", [
    (1, {}, (1, 1)), (2, {}, (2, 1)), (3, {}, (3, 2)), (5, {}, (3, 2)),
    (5, {"KAFKA_REPLICATION_FACTOR": "5"}, (5, 2)),
    (3, {"KAFKA_MIN_INSYNC_REPLICAS": "3"}, (3, 3)),
])
def test_topic_replication_follows_the_cluster_unless_set(brokers, configured, expected):
    from finstream.stores.topics import replication

    assert replication(Settings.load(environ=configured), brokers) == expected


@pytest.mark.parametrize("data_nodes, configured, expected", [(1, {}, 0), (2, {}, 1), (3, {}, 1),
                                                              (3, {"ES_NUMBER_OF_REPLICAS": "2"}, 2),
                                                              (3, {"ES_NUMBER_OF_REPLICAS": "0"}, 0)])
def test_index_replicas_follow_the_cluster_unless_set(data_nodes, configured, expected):
    from finstream.stores.elastic import index_templates

    templates = index_templates(Settings.load(environ=configured), data_nodes)
    assert {t["settings"]["number_of_replicas"] for t in templates.values()} == {expected}


def test_es_hadoop_writes_dead_letter_refused_documents_through_the_projects_handler():
    from finstream.stores.elastic import DEAD_LETTER_HANDLER, ClusterInfo, es_hadoop_options

    settings = Settings.load(environ={"KAFKA_TOPIC": "bars-in", "ES_INDEX_DEAD_LETTERS": "letters"})
    options = es_hadoop_options(settings, ClusterInfo("c", "u", "9.5.4"))
    prefix = f"es.write.rest.error.handler.{DEAD_LETTER_HANDLER}"
    assert options["es.write.rest.error.handlers"] == DEAD_LETTER_HANDLER
    assert options[prefix] == "finstream.eshadoop.DeadLetterHandler"
    assert (options[f"{prefix}.dead.letter.index"], options[f"{prefix}.topic"]) == ("letters", "bars-in")
    # ES-Hadoop's Spark SQL source turns "_" in an option's name into "."; Spark's options are
    # case-insensitive: the handler's are lower case, without underscores.
    assert all("_" not in key and key == key.lower() for key in options if key.startswith(prefix))
