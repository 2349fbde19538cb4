from __future__ import annotations

import dataclasses
import tomllib

import pytest

from finstream.core.config import SettingError, Settings, conf_dir
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
    low = setting.metadata.get("at_least", setting.metadata.get("above"))
    just_out = low - 1 if "at_least" in setting.metadata else low
    for raw in (str(just_out), "nan", "inf") if setting.type in ("float", float) else (str(just_out),):
        with pytest.raises(SettingError, match=rf"^setting {key}='{raw}' \(from the environment\) is out of range: "
                                               rf"give a .*"):
            Settings.load(environ={key: raw})
    edge = low if "at_least" in setting.metadata else low + 0.5 if setting.type in ("float", float) else low + 1
    assert getattr(Settings.load(environ={key: str(edge)}), setting.name) == edge


@pytest.mark.parametrize("setting", CHOSEN, ids=lambda f: f.name.upper())
def test_a_text_outside_its_choices_is_refused(setting):
    key = setting.name.upper()
    with pytest.raises(SettingError, match=rf"^setting {key}='nonsense' \(from the environment\) is not one of: "):
        Settings.load(environ={key: "nonsense"})
    # Choices are exact: a lower-case protocol would fail inside kafka-python.
    if setting.metadata["one_of"][-1].upper() == setting.metadata["one_of"][-1]:
        with pytest.raises(SettingError):
            Settings.load(environ={key: setting.metadata["one_of"][-1].lower()})


@pytest.mark.parametrize(("raw", "expected"), [("7", 7), (" +7 ", 7), ("1e3", 1000), (12345678901234567890,
                                                                                    12345678901234567890)])
def test_whole_numbers_in_any_spelling(raw, expected):
    assert Settings.load(environ={"STREAM_MAX_OFFSETS_PER_TRIGGER": raw}).stream_max_offsets_per_trigger == expected


def test_a_number_in_the_file_is_checked_like_one_from_the_environment(tmp_path):
    text = (conf_dir() / "pipeline.toml").read_text()
    for line, message in (("KAFKA_TOPIC_PARTITIONS = 3.9", "KAFKA_TOPIC_PARTITIONS=3.9 .* is not a valid int"),
                          ("KAFKA_TOPIC_PARTITIONS = true", "KAFKA_TOPIC_PARTITIONS=True .* is not a valid int"),
                          ("LIVE_POLL_SECONDS = true", "LIVE_POLL_SECONDS=True .* is not a valid float"),
                          ("KAFKA_TOPIC_PARTITIONS = inf", "KAFKA_TOPIC_PARTITIONS=inf .* is not a valid int")):
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
                                       "range: give a whole number of 1 or more (docs/configuration.md)\n")


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("KAFKA_TOPIC", "finance-data", True), ("KAFKA_TOPIC", "bars.v2_X", True), ("KAFKA_TOPIC", "my topic", False),
    ("KAFKA_TOPIC", "..", False), ("KAFKA_TOPIC", "t" * 250, False), ("KAFKA_TOPIC", "a/b", False),
    ("ES_INDEX_BARS", "finance-bars", True), ("ES_INDEX_BARS", ".finance", True), ("ES_INDEX_BARS", "Finance", False),
    ("ES_INDEX_DEAD_LETTERS", "_dead", False), ("ES_INDEX_PREDICTIONS", "a:b", False),
    ("ES_INDEX_MODEL_METRICS", "a b", False), ("ES_INDEX_PIPELINE_METRICS", "x" * 256, False)])
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
