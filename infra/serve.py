"""`heddle serve`: some or all roles, and the API, against existing PostgreSQL and Kafka."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from infra.bootstrap import create_schema
from infra.runtime import ALL_ROLES, Heddle
from infra.settings import Settings


async def serve(settings: Settings, roles: list[str] | None, api: bool) -> None:
    """Run until interrupted."""
    assert settings.database_url and settings.kafka_bootstrap_servers
    create_schema(settings, settings.database_url)
    heddle = Heddle(settings, settings.database_url, settings.kafka_bootstrap_servers)
    await heddle.start(roles or ALL_ROLES)
    try:
        if api:
            config = uvicorn.Config(
                create_app(heddle), host=settings.api_host, port=settings.api_port, lifespan="off"
            )
            await uvicorn.Server(config).serve()
        else:
            import asyncio

            await asyncio.Event().wait()
    finally:
        await heddle.stop()
