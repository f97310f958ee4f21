"""What `heddle up` and `heddle serve` run: the roles and the API, in this process.

`heddle up` is the whole stack on one machine. An embedded PostgreSQL keeps the event
store in the data directory, so it survives restarts. The embedded broker (Tansu) keeps
nothing: each start is a new Kafka epoch, and the relay republishes the store into it
from the beginning, which the consumers take in their stride because every reaction is
idempotent. `heddle serve` runs some or all roles, and the API, against existing
PostgreSQL and Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from api.cli.stackfile import ADMIN_KEY_FILE, Stack, write_stack
from api.http.app import create_app
from infra.bootstrap import create_schema
from infra.devstack import EmbeddedPostgres, Tansu
from infra.keys import ApiKeys, KeyRefused
from infra.metrics import serve_metrics
from infra.runtime import ALL_ROLES, Heddle
from infra.settings import Settings

log = logging.getLogger("heddle.up")


async def serve(settings: Settings, roles: list[str] | None, api: bool) -> None:
    """Run `roles` (every role by default) and the API unless `api` is False, against
    the PostgreSQL and Kafka of `settings`, until interrupted."""
    assert settings.database_url
    assert settings.kafka_bootstrap_servers
    create_schema(settings, settings.database_url)
    heddle = Heddle(settings, settings.database_url, settings.kafka_bootstrap_servers)
    await heddle.start(roles or ALL_ROLES)
    try:
        if api:
            config = uvicorn.Config(
                create_app(heddle), host=settings.api_host, port=settings.api_port,
                lifespan="off", log_config=None,  # its records go to Heddle's log (infra/logs.py)
                access_log=False,  # api/http/observability.py logs each request
            )  # fmt: skip
            await uvicorn.Server(config).serve()
        else:
            server = serve_metrics(settings.metrics_port, settings.api_host)
            try:
                await asyncio.Event().wait()
            finally:
                server.shutdown()
    finally:
        await heddle.stop()


INSTALLED_EXAMPLES = Path(sys.prefix) / "share" / "heddle" / "examples"
"""Where an install puts the example workflows (pyproject.toml, `data-files`)."""


def examples_dir() -> Path:
    """The workflows `heddle up` publishes: `examples/` here (a checkout), else the ones
    installed with Heddle (`HEDDLE_EXAMPLES_DIR` chooses another folder)."""
    here = Path("examples")
    return here if here.is_dir() or not INSTALLED_EXAMPLES.is_dir() else INSTALLED_EXAMPLES


async def publish_examples(heddle: Heddle, directory: Path) -> list[str]:
    """Publish every workflow in `directory`; returns a line per file."""
    lines = []
    for name, document in await asyncio.to_thread(read_definitions, directory):
        result = await heddle.publish_workflow(document, "default", "heddle-up")
        if result["status"] == "accepted":
            lines.append(f"{result['result']['workflow']} v{result['result']['version']}")
        else:
            lines.append(f"{name}: {result['reason']}")
    return lines


def read_definitions(directory: Path) -> list[tuple[str, Any]]:
    """The file name and document of every workflow definition in `directory`, YAML first."""
    paths = sorted(directory.glob("*.y*ml")) + sorted(directory.glob("*.json"))
    return [(path.name, yaml.safe_load(path.read_text())) for path in paths]


async def local_admin_key(keys: ApiKeys, data_dir: Path) -> tuple[Path, str | None]:
    """`heddle up`'s admin key (tenant `default`), in `admin.key` in the data directory,
    readable by its owner only. The key already there is kept while it works; else a new
    one is made and written. Returns the file and the new key (None when kept)."""
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        with contextlib.suppress(KeyRefused):
            await keys.verify(path.read_text().strip())
            return path, None
    _, key = await keys.create("default", ["read", "write", "admin"], "local-admin")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # a file that was there keeps its mode otherwise
        file.write(key + "\n")
    return path, key


async def run_up(settings: Settings, announce: Callable[[str], Any] = print) -> None:
    """Start everything, announce where it is, run until cancelled, stop cleanly."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url:
            database_url = settings.database_url
        else:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            await asyncio.to_thread(postgres.start)
            stack.callback(postgres.stop)
            database_url = postgres.url
        if settings.kafka_bootstrap_servers:
            bootstrap, epoch = settings.kafka_bootstrap_servers, "kafka"
        else:
            broker = Tansu(port=settings.kafka_port)
            await asyncio.to_thread(broker.start)
            stack.callback(broker.stop)
            bootstrap, epoch = broker.bootstrap_servers, f"tansu-{uuid.uuid4().hex[:12]}"
            # Tansu holds a group join for half the session timeout: keep it short. The
            # embedded broker is open on localhost: no SASL, no ACLs (docs/security.md).
            settings = settings.model_copy(
                update={"session_timeout_ms": 2000, "kafka_security_protocol": "PLAINTEXT"}
            )
        await asyncio.to_thread(create_schema, settings, database_url)
        heddle = Heddle(settings, database_url, bootstrap, epoch=epoch)
        await heddle.start()
        stack.push_async_callback(heddle.stop)
        examples = settings.examples_dir or examples_dir()
        published = await publish_examples(heddle, examples) if examples.is_dir() else []
        key_file, new_key = await local_admin_key(ApiKeys(heddle.reads), data_dir)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(heddle),
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                log_config=None,  # its records go to Heddle's log (infra/logs.py)
                lifespan="off",
            )
        )
        server_task = asyncio.create_task(server.serve())
        while not server.started:
            if server_task.done():
                await server_task
                raise RuntimeError(f"the API could not start on {api_url}")
            await asyncio.sleep(0.05)
        stack_file = write_stack(data_dir, Stack(database_url, bootstrap, api_url))
        stack.callback(stack_file.unlink, missing_ok=True)
        announce(banner(api_url, bootstrap, heddle.topics.commands, published, key_file, new_key))
        try:
            await server_task
        finally:
            server.should_exit = True


def cli_name() -> str:
    """How to call the CLI from the user's shell: `heddle` if on PATH, else its path."""
    script = Path(sys.argv[0])
    if script.name == "heddle" and shutil.which("heddle") != str(script.resolve()):
        try:
            return str(script.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(script.resolve())
    return "heddle"


def shown(path: Path) -> str:
    """A path as the user's shell can use it: relative to here when it is below here."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def banner(
    api_url: str,
    bootstrap: str,
    commands_topic: str,
    published: list[str],
    key_file: Path,
    new_key: str | None,
) -> str:
    """What `heddle up` prints once it is up: where everything is, how to start a run."""
    workflows = ", ".join(published) or "none (put YAML files in examples/)"
    heddle = cli_name()
    key = shown(key_file)
    made = f"\n  New admin key    {new_key}  (printed this once; the file keeps it)"
    return f"""
Heddle is up.
  Web UI           {api_url}/ui  (sign in with the API key below)
  API              {api_url}  (docs: {api_url}/docs)
  Kafka bootstrap  {bootstrap}  (commands topic: {commands_topic})
  Workflows        {workflows}
  API key          {key}  (admin of tenant default; {heddle} sends it){made if new_key else ""}

Start a run:
  {heddle} run hello --input name=Ada --follow
  {heddle} runs show RUN_ID
  curl -s -X POST {api_url}/v1/runs -H "Authorization: Bearer $(cat {key})" \\
       -H 'content-type: application/json' -d '{{"workflow": "hello", "input": {{"name": "Ada"}}}}'
Customer success (examples/customer-success/, README "A CSM's morning"):
  {heddle} demo customer-success && {heddle} queue maya
Press Ctrl-C to stop.
"""
