"""`heddle customers import|list|show|context`, `heddle playbooks publish|list` and
`heddle queue`: the customer-success pack from the command line (through the routes of
`api/http/customers.py`, `playbooks.py` and `queues.py`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import Progress

from api.cli.client import REJECTED, JsonOption, call, err, fail, out, print_items, print_json

customers_app = typer.Typer(help="Customers: import, list, show, context.", no_args_is_help=True)
playbooks_app = typer.Typer(help="Playbooks: publish, list.", no_args_is_help=True)
demo_app = typer.Typer(help="Load an example pack into a running Heddle.", no_args_is_help=True)
PACK = Path(__file__).resolve().parents[2] / "examples" / "customer-success"
REFERENCE_DAY = date(2026, 12, 1)
"""The day the example pack's dates are written for: the demo moves them to today."""
BATCH = 500
"""Customers sent per request (`POST /v1/customers/import` takes up to 1,000)."""
JSON_COLUMNS = ("contract", "stakeholders", "tags", "usage", "engagement")
"""CSV columns whose cells hold JSON (or use dotted columns: `usage.active_users`)."""


def register(app: typer.Typer) -> None:
    """Add `customers`, `playbooks`, `demo` and `queue` to `app`."""
    app.add_typer(customers_app, name="customers")
    app.add_typer(playbooks_app, name="playbooks")
    app.add_typer(demo_app, name="demo")
    app.command("queue")(queue)


Row = tuple[int, dict[str, Any] | None, str | None]
"""(line number, the customer, or why the line is no customer)."""


def read_rows(path: Path) -> Iterator[Row]:
    """The customers of a JSON Lines or CSV file (by its suffix), each with its line."""
    if path.suffix.lower() == ".csv":
        yield from csv_rows(path)
        return
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, None, f"not JSON: {error.msg} (column {error.colno})"
                continue
            if not isinstance(value, dict):
                yield number, None, "not a JSON object"
                continue
            yield number, value, None


def csv_rows(path: Path) -> Iterator[Row]:
    """A CSV file's customers: a header row of fields (`usage.active_users` nests), empty
    cells left out, JSON in the cells of `JSON_COLUMNS`."""
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.DictReader(source)
        for record in reader:
            number = reader.line_num
            customer: dict[str, Any] = {}
            problem = None
            for column, cell in record.items():
                if column is None or cell is None or cell.strip() == "":
                    continue
                value: Any = cell.strip()
                if column in JSON_COLUMNS:
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError as error:
                        problem = f"{column}: not JSON: {error.msg}"
                        break
                head, _, tail = column.partition(".")
                if tail:
                    customer.setdefault(head, {})[tail] = value
                else:
                    customer[column] = value
            yield number, None if problem else customer, problem


@customers_app.command("import")
def customers_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".jsonl or .csv")],
    as_json: JsonOption = False,
) -> None:
    """Create or replace the customers of a JSON Lines or CSV file. Every good row is sent;
    every bad one is reported by its line (exits 3 when there was one)."""
    rows = list(read_rows(file))
    bad: list[dict[str, Any]] = [
        {"line": number, "path": "", "message": problem}
        for number, _, problem in rows
        if problem is not None
    ]
    good = [(number, customer) for number, customer, _ in rows if customer is not None]
    sent = 0
    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"importing {file.name}", total=len(good))
        for start in range(0, len(good), BATCH):
            batch = good[start : start + BATCH]
            answer = call("POST", "/v1/customers/import",
                          json={"customers": [c for _, c in batch]})  # fmt: skip
            sent += len(answer["accepted"])
            bad += [
                {"line": batch[p["index"]][0], "path": p["path"], "message": p["message"]}
                for p in answer["problems"]
            ]
            progress.advance(task, len(batch))
    bad.sort(key=lambda problem: problem["line"])
    if as_json:
        print_json({"imported": sent, "problems": bad})
    else:
        for problem in bad:
            where = f" {problem['path']}:" if problem["path"] else ""
            err.print(f"line {problem['line']}:{where} {problem['message']}")
        lines = len({p["line"] for p in bad})
        out.print(f"imported {sent} customers" + (f"; {lines} lines refused" if bad else ""))
    if bad:
        raise typer.Exit(REJECTED)


@customers_app.command("list")
def customers_list(
    owner: Annotated[str | None, typer.Option(help="Only the customers of this CSM")] = None,
    as_json: JsonOption = False,
) -> None:
    """Customers by name."""
    params = {"owner": owner} if owner else {}
    items = call("GET", "/v1/customers", params={**params, "limit": 500})["items"]
    print_items(items, as_json, {
        "customer": "customer_id", "name": "name", "owner": "owner", "arr": "arr",
        "renewal": "renewal_date", "health": "health", "risk": "risk",
    })  # fmt: skip


@customers_app.command("show")
def customers_show(customer_id: str) -> None:
    """A customer's profile and latest signals, as JSON."""
    print_json(call("GET", f"/v1/customers/{customer_id}"))


@customers_app.command("context")
def customers_context(customer_id: str) -> None:
    """A customer's context (financials, usage, engagement, runs, tasks, artifacts), as JSON."""
    print_json(call("GET", f"/v1/customers/{customer_id}/context"))


@playbooks_app.command("publish")
def playbooks_publish(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Publish a playbook (YAML or JSON); its problems are printed at their paths."""
    document = yaml.safe_load(file.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("name"), str):
        fail("a playbook is a mapping with a name")
    answer = call("PUT", f"/v1/playbooks/{document['name']}", json=document)
    out.print(
        f"published {answer['playbook']} version {answer['version']};"
        f" evaluating {answer['evaluating']} customers"
    )


@playbooks_app.command("list")
def playbooks_list(as_json: JsonOption = False) -> None:
    """Every playbook with its latest version."""
    items = call("GET", "/v1/playbooks")["items"]
    print_items(items, as_json, {"playbook": "name", "version": "version", "by": "published_by"})


def queue(
    assignee: Annotated[str, typer.Argument(help="Whose queue: a CSM's name")],
    as_json: JsonOption = False,
) -> None:
    """What a person should do next: recommended workflows by score (and why), then the
    open tasks of their runs."""
    answer = call("GET", f"/v1/queues/{assignee}")
    if as_json:
        print_json(answer)
        return
    for item in answer["items"]:
        why = ", ".join(f"{t['name']} {t['points']:g}" for t in item["terms"])
        out.print(
            f"{item['score']:8.1f}  {item['customer_name']}: {item['workflow']}"
            f" [{item['stage']}]  ({why})  item {item['item_id']}"
        )
    for task in answer["tasks"]:
        out.print(f"{task['score']:8.1f}  task {task['title']} (run {task['run_id']})")
    stats = answer["stats"]
    out.print(
        f"{stats['recommended']} recommended, {stats['tasks']} tasks, {stats['overdue']} overdue"
    )


def redated(customer: dict[str, Any], today: date) -> dict[str, Any]:
    """An example customer with its dates moved from `REFERENCE_DAY` to `today`."""
    shift = today - REFERENCE_DAY

    def moved(day: str) -> str:
        return (date.fromisoformat(day) + shift).isoformat()

    engagement = {
        key: moved(value) if key in ("last_contact", "qbr_date") else value
        for key, value in customer.get("engagement", {}).items()
    }
    renewal = (
        {"renewal_date": moved(customer["renewal_date"])} if "renewal_date" in customer else {}
    )
    return {**customer, **renewal, "engagement": engagement}


def example_customers(today: date | None = None) -> list[dict[str, Any]]:
    """The pack's ten customers, their dates moved to `today` (the real one by default)."""
    today = today or datetime.now(UTC).date()
    lines = (PACK / "customers.jsonl").read_text(encoding="utf-8").splitlines()
    return [redated(json.loads(line), today) for line in lines if line.strip()]


@demo_app.command("customer-success")
def demo_customer_success() -> None:
    """Publish the customer-success pack (three renewal workflows and the renewals
    playbook) and import its ten customers, dated from today; then print each CSM's queue."""
    for kind in ("prepare", "critical", "emergency"):
        document = yaml.safe_load((PACK / f"renewal-{kind}.yaml").read_text(encoding="utf-8"))
        published = call("PUT", f"/v1/workflows/{document['name']}", json=document)
        out.print(f"workflow {published['workflow']} v{published['version']}")
    playbook = yaml.safe_load((PACK / "playbook.yaml").read_text(encoding="utf-8"))
    answer = call("PUT", "/v1/playbooks/renewals", json=playbook)
    out.print(f"playbook renewals v{answer['version']}")
    customers = example_customers()
    imported = call("POST", "/v1/customers/import", json={"customers": customers})
    out.print(f"imported {len(imported['accepted'])} customers")
    last = imported["accepted"][-1]["command_id"]
    wait = {"X-Heddle-Wait-For-Command": last, "X-Heddle-Wait-Timeout": "30"}
    for owner in sorted({c["owner"] for c in customers}):
        queue_of = call("GET", f"/v1/queues/{owner}", headers=wait)
        top = queue_of["items"][0] if queue_of["items"] else None
        next_up = f"; next: {top['customer_name']} ({top['workflow']})" if top else ""
        out.print(f"{owner}: {queue_of['stats']['recommended']} recommended{next_up}")
    out.print("see a queue with `heddle queue maya`, a customer with "
              "`heddle customers context acme`")  # fmt: skip
