"""docker-compose.yml parses and agrees with conf/pipeline.toml and stack/versions.env."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from finstream import kibana
from finstream.config import Settings
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
