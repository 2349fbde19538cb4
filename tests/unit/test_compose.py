"""docker-compose.yml parses and agrees with conf/pipeline.toml and stack/versions.env."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from finstream.core.config import Settings
from finstream.ops import kibana
from tests.unit.test_versions import jvm_versions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def published_ports(service: dict) -> set[int]:
    return {int(str(p).split(":")[0]) for p in service.get("ports", [])}


def test_services_exist(compose):
    assert {"kafka", "elasticsearch", "kibana", "kibana-dashboards", "spark-master", "spark-worker", "producer",
            "stream-index", "train"} <= set(compose["services"])


def test_spark_jobs_are_submitted_to_the_master_and_share_storage(compose):
    services = compose["services"]
    assert "spark://spark-master:7077" in services["spark-worker"]["command"]
    for name in ("stream-index", "train"):
        command = services[name]["command"]
        assert command[command.index("--master") + 1] == "spark://spark-master:7077"
        assert f"spark.driver.host={name}" in command  # executors call the driver back by its service name
        assert "spark-master" in services[name]["depends_on"]
        # checkpoints, state and models: the same volume on drivers and executors
        assert services[name]["volumes"] == services["spark-worker"]["volumes"]


def test_images_match_the_version_matrix(compose):
    v = jvm_versions()
    services = compose["services"]
    assert services["kafka"]["image"].endswith(f":{v['KAFKA_VERSION']}")
    assert services["elasticsearch"]["image"].endswith(f":{v['ES_VERSION']}")
    assert services["kibana"]["image"].endswith(f":{v['ES_VERSION']}")


def test_host_ports_match_the_default_config(compose):
    defaults = Settings.load(environ={})
    kafka_port = int(defaults.kafka_bootstrap_servers.split(":")[-1])
    es_port = int(defaults.es_nodes.split(":")[-1])
    assert kafka_port in published_ports(compose["services"]["kafka"])
    assert es_port in published_ports(compose["services"]["elasticsearch"])


def test_app_services_use_the_same_names_as_conf(compose):
    defaults = Settings.load(environ={})
    for name in ("producer", "stream-index", "train"):
        env = compose["services"][name]["environment"]
        assert env["KAFKA_TOPIC"] == defaults.kafka_topic
        assert env["ES_INDEX_BARS"] == defaults.es_index_bars
        assert env["ES_INDEX_DEAD_LETTERS"] == defaults.es_index_dead_letters
        assert env["ES_INDEX_PREDICTIONS"] == defaults.es_index_predictions
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] in compose["services"]
        assert env["ES_NODES"].split(":")[0] in compose["services"]


def test_commands_are_the_project_entry_points(compose):
    services = compose["services"]
    assert services["stream-index"]["command"][0] == "./spark-submit.sh"
    assert "jobs/stream_index.py" in services["stream-index"]["command"]
    assert services["producer"]["command"][:3] == ["python", "-m", "producer"]
    assert services["train"]["command"][0] == "./spark-submit.sh" and "jobs/train.py" in services["train"]["command"]
    # the trainer publishes models where the stream job looks for them, on a shared volume
    assert services["train"]["environment"]["MODEL_DIR"] == services["stream-index"]["environment"]["MODEL_DIR"]
    assert services["train"]["volumes"] == services["stream-index"]["volumes"]
    for path in ("spark-submit.sh", "jobs/stream_index.py", "jobs/train.py", "Dockerfile"):
        assert (ROOT / path).exists()


def test_the_dashboards_are_imported_once_kibana_is_healthy(compose):
    services = compose["services"]
    importer = services["kibana-dashboards"]
    assert importer["depends_on"]["kibana"]["condition"] == "service_healthy"
    assert "healthcheck" in services["kibana"]
    mount, target = importer["volumes"][0].split(":")[:2]
    assert (ROOT / mount / kibana.NDJSON_PATH.name) == kibana.NDJSON_PATH
    script = importer["command"][0]
    assert f"file=@{target}/{kibana.NDJSON_PATH.name}" in script
    assert "/api/saved_objects/_import?overwrite=true" in script and "kbn-xsrf" in script
    assert "http://kibana:5601" in script and '"success":true' in script  # a refused object fails the one-shot


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="no docker compose client on this machine (the YAML checks above still ran)",
)
def test_docker_compose_config_accepts_it():
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, check=True)


def merged(base: dict, override: dict) -> dict:
    """What `docker compose -f base -f override` makes of two files: mappings merge, the rest is replaced."""
    result = dict(base)
    for key, value in override.items():
        result[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return result


def test_the_replicated_override_makes_three_brokers_and_three_nodes_the_apps_use(compose):
    stack = merged(compose, yaml.safe_load((ROOT / "docker-compose.replicated.yml").read_text()))
    services = stack["services"]
    brokers = [services[name]["environment"] for name in ("kafka", "kafka-2", "kafka-3")]
    assert [b["KAFKA_NODE_ID"] for b in brokers] == [1, 2, 3]
    assert {b["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers} == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert all(b["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3 for b in brokers)
    assert {services[name]["image"] for name in ("kafka", "kafka-2", "kafka-3")} == {services["kafka"]["image"]}
    nodes = [services[name]["environment"] for name in ("elasticsearch", "elasticsearch-2", "elasticsearch-3")]
    assert [n["node.name"] for n in nodes] == ["es-1", "es-2", "es-3"]
    assert all(n["discovery.type"] == "multi-node" and n["cluster.initial_master_nodes"] == "es-1,es-2,es-3"
               for n in nodes)
    for name in ("producer", "producer-live", "producer-live-ws", "stream-index", "train", "spark-master",
                 "spark-worker"):
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092,kafka-2:29092,kafka-3:29092"
        assert env["ES_NODES"] == "elasticsearch:9200,elasticsearch-2:9200,elasticsearch-3:9200"
        assert env["KAFKA_TOPIC"] == compose["services"][name]["environment"]["KAFKA_TOPIC"]  # the rest stays
    assert published_ports(services["kafka-2"]) == {9094} and published_ports(services["elasticsearch-3"]) == {9202}
    # The topic and indices follow the cluster's size (conf/pipeline.toml: automatic by default).
    defaults = Settings.load(environ={})
    assert defaults.kafka_replication_factor == 0 and defaults.es_number_of_replicas == -1


def test_the_live_feed_has_a_websocket_service_beside_the_polling_one(compose):
    services = compose["services"]
    for name in ("producer-live", "producer-live-ws"):
        assert services[name]["profiles"] == ["live"]
        assert services[name]["command"][:4] == ["python", "-m", "producer", "live"]
    assert services["producer-live-ws"]["command"][4:6] == ["--source", "websocket"]
    assert "--source" not in services["producer-live"]["command"]  # polling: the default
    env = services["producer-live-ws"]["environment"]
    assert env["POLYGON_API_KEY"] == "${POLYGON_API_KEY:-}" and env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
