"""Apache Kafka 4.x in KRaft mode (one combined broker and controller), from Maven jars.

No distribution tarball is needed: Maven fetches `org.apache.kafka:kafka_2.13` with
its runtime dependencies (and a log4j2 binding, so the server logs to a file) into a
cache directory once; later starts reuse it. The marker file is written last, so an
interrupted download is redone. Java 17+ and, for the first start, `mvn` are needed.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from infra.devstack.probes import kafka_brokers, run_sync
from infra.devstack.process import ServerProcess, free_port, port_open, tail
from infra.settings import Topics

log = logging.getLogger("heddle.devstack")

KAFKA_VERSION = "4.4.0"
# The log4j2 Kafka 4.4 itself builds with, bound to SLF4J 1.7 (which Kafka 4.x declares)
# like Kafka's own distribution. Only one binding may be present: log4j-slf4j-impl and
# log4j-slf4j2-impl share class names, and with both the JVM fails at the first logger.
LOG4J_VERSION = "2.25.5"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0"
MARKER = "complete.json"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.heddle</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="warn"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="warn"/>
    <Logger name="kafka.log.LogManager" level="warn"/>
  </Loggers>
</Configuration>
"""


ACLS_JAVA = """
import java.io.*;
import java.util.*;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.*;
import org.apache.kafka.common.resource.*;

/** Creates the ACLs read from stdin, one a line: principal operation type pattern name. */
public class Acls {
  public static void main(String[] args) throws Exception {
    Properties config = new Properties();
    try (InputStream in = new FileInputStream(args[0])) { config.load(in); }
    List<AclBinding> acls = new ArrayList<>();
    BufferedReader lines = new BufferedReader(new InputStreamReader(System.in));
    for (String line; (line = lines.readLine()) != null; ) {
      String[] f = line.trim().split(" ");
      if (f.length != 5) continue;
      acls.add(new AclBinding(
          new ResourcePattern(ResourceType.valueOf(f[2]), f[4], PatternType.valueOf(f[3])),
          new AccessControlEntry(f[0], "*", AclOperation.valueOf(f[1]), AclPermissionType.ALLOW)));
    }
    try (Admin admin = Admin.create(config)) { admin.createAcls(acls).all().get(); }
    System.out.println(acls.size() + " ACLs created");
  }
}
"""


class Acl(NamedTuple):
    """One ALLOW rule of Kafka's StandardAuthorizer, as `kafka-acls.sh --add` makes it."""

    principal: str
    """`User:<name>`."""
    operation: str
    """READ, WRITE, CREATE, DESCRIBE, ..."""
    resource: str
    """TOPIC, GROUP or CLUSTER."""
    name: str
    pattern: str = "LITERAL"
    """LITERAL (the name itself) or PREFIXED (every name that starts with it)."""


def role_acls(topics: Topics, group_prefix: str = "heddle") -> dict[str, list[Acl]]:
    """The ACLs each of Heddle's roles needs (and a remote worker, and tenant `T`), for a
    principal named after it: `User:heddle-<role>` (docs/security.md lists the same).
    Every role describes Heddle's topics (to find them, and the tenants' topics); the topics
    are made beforehand, as the super user (the worker makes remote task topics itself)."""
    p, g = topics.prefix, group_prefix
    needs: dict[str, list[tuple[str, str, str, str]]] = {
        "intake": [
            ("READ", "TOPIC", topics.commands, "LITERAL"),
            ("READ", "TOPIC", topics.tenant_commands, "PREFIXED"),
            ("READ", "TOPIC", topics.task_results, "LITERAL"),
            ("WRITE", "TOPIC", topics.command_results, "LITERAL"),
            ("READ", "GROUP", f"{g}-intake", "PREFIXED"),
        ],
        "relay": [("WRITE", "TOPIC", topics.events, "LITERAL")],
        "worker": [
            ("READ", "TOPIC", topics.events, "LITERAL"),
            ("READ", "GROUP", f"{g}-worker", "LITERAL"),
            ("WRITE", "TOPIC", topics.commands, "LITERAL"),
            ("WRITE", "TOPIC", topics.tokens, "LITERAL"),
            ("WRITE", "TOPIC", topics.tasks_for(""), "PREFIXED"),
            ("CREATE", "TOPIC", topics.tasks_for(""), "PREFIXED"),
        ],
        "projector": [
            ("READ", "TOPIC", topics.events, "LITERAL"),
            ("READ", "GROUP", f"{g}-projector", "LITERAL"),
        ],
        "timers": [("WRITE", "TOPIC", topics.commands, "LITERAL")],
        "api": [
            ("WRITE", "TOPIC", topics.commands, "LITERAL"),
            ("READ", "TOPIC", topics.events, "LITERAL"),
            ("READ", "TOPIC", topics.tokens, "LITERAL"),
            # Dead letters (admin routes): read, and replayed to the topics they came from.
            ("READ", "TOPIC", topics.dlq, "LITERAL"),
            ("WRITE", "TOPIC", topics.events, "LITERAL"),
            ("WRITE", "TOPIC", topics.task_results, "LITERAL"),
            ("WRITE", "TOPIC", topics.tenant_commands, "PREFIXED"),
        ],
    }
    every_role = [("DESCRIBE", "TOPIC", f"{p}heddle.", "PREFIXED")]
    consumer_roles = {"intake", "worker", "projector"}
    acls = {
        role: [
            Acl(f"User:heddle-{role}", *rule)
            for rule in every_role
            + rules
            + ([("WRITE", "TOPIC", topics.dlq, "LITERAL")] if role in consumer_roles else [])
        ]
        for role, rules in needs.items()
    }
    acls["remote worker"] = [
        Acl("User:remote-worker", "READ", "TOPIC", topics.tasks_for(""), "PREFIXED"),
        Acl("User:remote-worker", "WRITE", "TOPIC", topics.task_results),
        Acl("User:remote-worker", "READ", "GROUP", "remote-worker", "PREFIXED"),
    ]
    acls["tenant T"] = [Acl("User:tenant-T", "WRITE", "TOPIC", topics.commands_of("T"))]
    return acls


def default_cache_dir(version: str = KAFKA_VERSION) -> Path:
    """`$HEDDLE_CACHE_DIR/kafka-<version>`, else `~/.cache/heddle/kafka-<version>`."""
    root = os.environ.get("HEDDLE_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "heddle")
    return Path(root).expanduser() / f"kafka-{version}"


def mvn_command(pom_dir: Path, libs: Path) -> list[str]:
    """The Maven invocation that copies Kafka's runtime jars into `libs`."""
    return [
        "mvn", "-B", "-q", "-Dstyle.color=never",
        "-f", str(pom_dir / "pom.xml"),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]  # fmt: skip


def _pom(version: str) -> str:
    return POM.format(kafka=version, log4j=LOG4J_VERSION)


def _jars_complete(cache_dir: Path, version: str) -> bool:
    """Whether the marker exists, matches this pom, and every jar it lists is there."""
    try:
        marker = json.loads((cache_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    libs = cache_dir / "libs"
    return bool(
        marker.get("pom") == hashlib.sha256(_pom(version).encode()).hexdigest()
        and marker.get("jars")
        and all((libs / jar).is_file() for jar in marker["jars"])
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two test runs may download at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(
    cache_dir: Path | None = None, version: str = KAFKA_VERSION, timeout: float = 900.0
) -> Path:
    """The directory of Kafka's runtime jars, downloaded with Maven the first time."""
    cache_dir = cache_dir or default_cache_dir(version)
    libs = cache_dir / "libs"
    if _jars_complete(cache_dir, version):
        return libs
    with _locked(cache_dir / ".lock"):
        if _jars_complete(cache_dir, version):  # another process finished meanwhile
            return libs
        if shutil.which("mvn") is None:
            raise RuntimeError(
                f"Maven (mvn) is needed once, to download Apache Kafka {version}'s jars "
                f"into {cache_dir}"
            )
        (cache_dir / MARKER).unlink(missing_ok=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="heddle-kafka-pom-") as work:
            staging = cache_dir / f"libs.partial-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            (Path(work) / "pom.xml").write_text(_pom(version))
            command = mvn_command(Path(work), staging)
            log.info("downloading Apache Kafka %s with Maven: %s", version, " ".join(command))
            try:
                result = subprocess.run(
                    command, cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                    timeout=timeout, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired as err:
                shutil.rmtree(staging, ignore_errors=True)
                raise TimeoutError(
                    f"Maven did not fetch Kafka {version} in {timeout:.0f} s"
                ) from err
            jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
            if result.returncode != 0 or not any(
                j.startswith(f"kafka_2.13-{version}") for j in jars
            ):
                shutil.rmtree(staging, ignore_errors=True)
                output = (result.stdout + result.stderr).strip()[-4000:]
                raise RuntimeError(
                    f"Maven could not fetch Apache Kafka {version} (exit {result.returncode}):\n"
                    f"$ {' '.join(command)}\n{output}"
                )
            shutil.rmtree(libs, ignore_errors=True)
            staging.rename(libs)
        marker = {"pom": hashlib.sha256(_pom(version).encode()).hexdigest(), "jars": jars}
        (cache_dir / MARKER).write_text(json.dumps(marker))
        log.info("Apache Kafka %s jars in %s (%.0f s)", version, libs, time.monotonic() - started)
    return libs


def java_executable() -> str:
    """`$JAVA_HOME/bin/java` if set, else `java` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError(
            "Java 17+ is needed to run Apache Kafka 4 (no `java` on PATH, no JAVA_HOME)"
        )
    return found


def random_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _initial_heap(heap: str) -> str:
    """256m, or the maximum heap if that is smaller (the JVM refuses -Xms above -Xmx)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        size = int(heap[:-1]) * units[heap[-1].lower()] if heap[-1].isalpha() else int(heap)
    except (ValueError, KeyError, IndexError):
        return "256m"
    return heap if size < 256 << 20 else "256m"


class ApacheKafka(ServerProcess):
    """A single-node Kafka (broker and controller in one JVM) with its data in `data_dir`.

    The broker listens on `127.0.0.1:port` (a free port if none is given). The storage
    is formatted on first start and reused afterwards, so topics survive a restart on
    the same `data_dir`; ports may change between restarts (static controller quorum).
    """

    name = "Apache Kafka"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        cache_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        sasl_users: dict[str, str] | None = None,
    ) -> None:
        """`sasl_users` (name → password): a SASL_PLAINTEXT listener instead (SCRAM-SHA-256
        and -512, these users made when the storage is formatted) and the StandardAuthorizer,
        with the first user as the super user (the broker's own) and no access for anyone
        else until `create_acls`."""
        super().__init__()
        self.sasl_users = dict(sasl_users or {})
        self.data_dir = Path(data_dir)
        self._fixed_port = port
        self.port = port or free_port()
        self.controller_port: int | None = None
        self.cache_dir = cache_dir
        self.version = version
        self.heap = heap

    @property
    def bootstrap_servers(self) -> str:
        """`127.0.0.1:<port>`, for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def super_user(self) -> tuple[str, str]:
        """The super user's name and password (with `sasl_users`)."""
        return next(iter(self.sasl_users.items()))

    def client_options(self, user: str | None = None) -> dict[str, Any]:
        """aiokafka's keywords to authenticate as `user` (the super user by default)."""
        if not self.sasl_users:
            return {}
        name, password = (user, self.sasl_users[user]) if user else self.super_user
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_plain_username": name, "sasl_plain_password": password}  # fmt: skip

    def create_acls(self, acls: Iterable[Acl], timeout: float = 120.0) -> None:
        """Create these ACLs with Kafka's own admin client (one JVM), as the super user."""
        name, password = self.super_user
        admin = self.data_dir / "admin.properties"
        admin.write_text(
            f"bootstrap.servers={self.bootstrap_servers}\n"
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
            f"sasl.jaas.config={_scram_login(name, password)}\n"
        )
        source = self.data_dir / "Acls.java"
        source.write_text(ACLS_JAVA)
        lines = "".join(f"{a.principal} {a.operation} {a.resource} {a.pattern} {a.name}\n"
                        for a in acls)  # fmt: skip
        command = [java_executable(), "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                   "-cp", f"{ensure_jars(self.cache_dir, self.version)}/*",
                   str(source), str(admin)]  # fmt: skip
        result = subprocess.run(
            command, input=lines, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"creating Kafka ACLs failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()[-3000:]}"
            )

    def start(self, timeout: float = 120.0) -> None:
        """Fetch the jars if needed, format storage once, start and wait for metadata.

        `timeout` covers formatting and start-up, not the first jar download.
        """
        if self.running:
            return
        if self._fixed_port is not None and port_open(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} on 127.0.0.1 is already in use")
        libs = ensure_jars(self.cache_dir, self.version)
        java = java_executable()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(java, libs, timeout)
                return
            except RuntimeError as err:  # a port taken between picking and binding: pick again
                if attempt == attempts or "Address already in use" not in str(err):
                    raise
                log.info("a port of Kafka's was taken meanwhile: retrying with new ports")
                if self._fixed_port is None:
                    self.port = free_port()

    def _start_once(self, java: str, libs: Path, timeout: float) -> None:
        if port_open(self.port):
            if self._fixed_port is not None:
                raise RuntimeError(f"{self.name}: port {self.port} on 127.0.0.1 is already in use")
            self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        config = self._write_config()
        server_log = self.data_dir / "server.log"
        self.extra_logs = [server_log]
        log4j = self.data_dir / "log4j2.xml"
        log4j.write_text(LOG4J2.format(log=server_log))
        jvm = [
            java,
            f"-Xmx{self.heap}", f"-Xms{_initial_heap(self.heap)}",
            "-XX:+UseSerialGC",  # one small heap, no GC threads to speak of
            "-XX:TieredStopAtLevel=1",  # C1 only: faster start-up, plenty for tests
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp", f"{libs}/*",
        ]  # fmt: skip
        started = time.monotonic()
        self._format(jvm, config)
        self._spawn([*jvm, "kafka.Kafka", str(config)], self.data_dir / "stdout.log")

        def ready() -> bool:
            if not port_open(self.port):
                return False
            try:
                brokers = run_sync(
                    lambda: kafka_brokers(self.bootstrap_servers, 5.0, **self.client_options())
                )
            except Exception:  # not yet
                return False
            return ("127.0.0.1", self.port) in brokers

        self._wait_until(ready, timeout, started)

    def _write_config(self) -> Path:
        """server.properties: one node, replication 1 everywhere, small and quick."""
        assert self.controller_port is not None
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "4",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",  # default 50: slow first group join
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),  # default 128 MB of heap
            **self._sasl_config(),
        }
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        return config

    def _sasl_config(self) -> dict[str, str]:
        """With `sasl_users`: clients and the broker itself on SASL_PLAINTEXT with SCRAM,
        the controller's listener with PLAIN (SCRAM is not offered there), and the
        StandardAuthorizer, which denies what no ACL allows."""
        if not self.sasl_users:
            return {}
        name, password = self.super_user
        return {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": (
                "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
            **{
                f"listener.name.sasl_plaintext.{mechanism}.sasl.jaas.config": _scram_login(
                    name, password
                )
                for mechanism in ("scram-sha-256", "scram-sha-512")
            },
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{name}" password="{password}" user_{name}="{password}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{name}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def _format(self, jvm: list[str], config: Path) -> None:
        """Format the storage directory the first time (KRaft needs a cluster id)."""
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        command = [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                   f"--cluster-id={random_cluster_id()}", "--config", str(config)]  # fmt: skip
        for name, password in self.sasl_users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                command += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"formatting Kafka storage in {self.data_dir / 'data'} failed "
                f"(exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()[-3000:]}\n"
                f"--- {self.data_dir / 'server.log'} ---\n{tail(self.data_dir / 'server.log')}"
            )


def _scram_login(name: str, password: str) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{name}" password="{password}";'
    )
