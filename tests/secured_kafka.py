"""A real Kafka broker with SASL_SSL (SCRAM-SHA-512 over TLS) and ACLs, for the security
test: its CA and certificate are made here, at test time, and its users' passwords are
random. The broker runs from the same official jars as the local stack (stack/kafka.sh)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
MECHANISM = "SCRAM-SHA-512"


def _stack_value(expression: str) -> str:
    """A value the stack scripts compute (the JDK, the Kafka jars), from the same code."""
    return subprocess.run(["bash", "-c", f'source stack/common.sh >/dev/null && printf %s "{expression}"'],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout


def kraft_cluster_id() -> str:
    """A KRaft cluster id made as Kafka's Uuid.randomUuid makes one: 16 random bytes in URL-safe
    base64 without padding, drawn again when it starts with '-', which the storage tool's
    argument parser would take for an option (one id in 64 did, failing the format)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA (ca.pem) and the broker's PEM keystore signed by it (broker.pem: its private key
    and certificate chain), for 127.0.0.1 and localhost. The key is not encrypted: Kafka's PEM
    loader knows no PBES2, and the file lives and dies with the test's temporary folder."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("finstream test CA")).issuer_name(_name("finstream test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(names, critical=False).sign(ca_key, hashes.SHA256()))
    ca_file, keystore = folder / "ca.pem", folder / "broker.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    keystore.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    return ca_file, keystore


@dataclass
class SecuredKafka:
    folder: Path
    port: int = 19492
    users: dict[str, str] = field(default_factory=dict)  # name -> password
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def client_env(self, user: str, password: str | None = None) -> dict[str, str]:
        """The environment a finstream command needs to connect as `user`."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": MECHANISM, "KAFKA_SASL_USERNAME": user,
                "KAFKA_SASL_PASSWORD": self.users[user] if password is None else password,
                "KAFKA_SSL_CAFILE": str(self.ca_file)}

    def start(self, user_names: list[str]) -> None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"port {self.port} is taken (a secured broker left by an earlier run?)")
        self.users = {name: secrets.token_hex(16) for name in ["admin", *user_names]}
        _, keystore = make_certificates(self.folder)
        controller = self.port + 1
        properties = self.folder / "server.properties"
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" '
                f'password="{self.users["admin"]}";')
        properties.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=SASL_SSL://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{self.port}",
            # The controller listener is loopback-only and serves controller requests alone.
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}", f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM", f"ssl.truststore.location={self.ca_file}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:admin;User:ANONYMOUS", "allow.everyone.if.no.acl.found=false",
            f"log.dirs={self.folder / 'data'}", "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "auto.create.topics.enable=false", "group.initial.rebalance.delay.ms=0", ""]))
        java = _stack_value("$(spark_java_home)/bin/java")
        classpath = _stack_value("$KAFKA_LIB_DIR") + "/*"
        logging = [f"-Dkafka.logs.dir={self.folder}", f"-Dlog4j.configuration=file:{ROOT}/stack/kafka-log4j.properties"]
        scram = [arg for name, password in self.users.items()
                 for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")]
        cluster_id = kraft_cluster_id()
        subprocess.run([java, "-cp", classpath, *logging, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                        "-c", str(properties), *scram],
                       check=True, capture_output=True, timeout=120)
        self.process = subprocess.Popen([java, "-Xmx384m", "-cp", classpath, *logging, "kafka.Kafka", str(properties)],
                                        stdout=(self.folder / "kafka.out").open("w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "kafka.out").read_text()
                    raise RuntimeError(f"the secured broker did not start: {log}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
