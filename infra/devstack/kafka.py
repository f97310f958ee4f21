"""Apache Kafka 4.x in KRaft mode (one combined broker and controller), from Maven jars.

The jars are fetched once with Maven into a cache directory and reused; a marker file
written last makes an interrupted download start over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from infra.devstack.process import ServerProcess, free_port, port_open

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.heddle</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""
LOG4J2 = """<Configuration status="warn">
  <Appenders><File name="file" fileName="{path}"><PatternLayout pattern="%d %p %c: %m%n"/></File></Appenders>
  <Loggers><Root level="warn"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.server.KafkaServer" level="info"/><Logger name="kafka.server.KafkaRaftServer" level="info"/>
  </Loggers>
</Configuration>
"""


def default_cache_dir(version: str = KAFKA_VERSION) -> Path:
    root = os.environ.get("HEDDLE_CACHE_DIR") or Path.home() / ".cache" / "heddle"
    return Path(root) / f"kafka-{version}"


def ensure_jars(cache_dir: Path | None = None, version: str = KAFKA_VERSION) -> Path:
    """The directory of Kafka's runtime jars, downloaded with Maven the first time."""
    cache_dir = cache_dir or default_cache_dir(version)
    libs, marker = cache_dir / "libs", cache_dir / "complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed once to download Apache Kafka's jars")
    shutil.rmtree(libs, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "pom.xml").write_text(POM.format(kafka=version, log4j=LOG4J_VERSION))
        result = subprocess.run(
            ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={libs}",
             "-DincludeScope=runtime"],
            cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"Maven could not fetch Kafka {version}:\n{result.stdout[-3000:]}")
    marker.write_text(version)
    return libs


class ApacheKafka(ServerProcess):
    """A single-node Kafka for tests and local use; data under `data_dir`."""

    name = "Apache Kafka"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        cache_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
    ) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.port = port or free_port()
        self.cache_dir = cache_dir
        self.version = version
        self.heap = heap

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        libs = ensure_jars(self.cache_dir, self.version)
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java 17+ is needed to run Apache Kafka")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        controller = free_port()
        config = self.data_dir / "server.properties"
        config.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data_dir / 'logs'}",
                "num.partitions=4",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.flush.interval.messages=9223372036854775807",
                "",
            ])
        )
        log4j = self.data_dir / "log4j2.xml"
        log4j.write_text(LOG4J2.format(path=self.data_dir / "server.log"))
        classpath = f"{libs}/*"
        jvm = [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            formatted = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22],
                 "-c", str(config), "--standalone", "--ignore-formatted"],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
            )
            if formatted.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage failed:\n{formatted.stdout}{formatted.stderr}")
        self._spawn([*jvm, "kafka.Kafka", str(config)], self.data_dir / "stdout.log")
        self._wait_until(lambda: port_open(self.port), timeout)
