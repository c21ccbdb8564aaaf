"""A runtime process for the reliability tests: `python reliability_worker.py --uri ... --effects FILE ...`.

It runs this project's `Runtime` against a state manager over HTTP, on a fan-out graph:
`Split` (n items) -> `Work` (one per item: pauses, then doubles the item) -> `Gather` (unites Split).

Every node records its own side effects in `--effects`, one line per event, written with a single
O_APPEND write (atomic for short lines): `event node state_id value pid`, tab-separated, where
event is `start` (the node began executing the state) or `done` (it finished and returns).

Test instrumentation, not behaviour changes:
- a node learns its state id from the secrets call the runtime makes just before executing it
  (every node here declares a secret, and that call runs in the same task as the node);
- `--acks` gets one line per state whose `executed` report the server acknowledged (a 2xx for
  its own POST, or a 2xx for the batch with no error in its item's answer);
- `--ready` is created once the runtime's first claim returned (it is registered and polling).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from exosphere_nb import BaseNode, Runtime
from exosphere_nb.client import http

CURRENT_STATE: contextvars.ContextVar[str] = contextvars.ContextVar("current_state", default="?")
ARGS: argparse.Namespace


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def effect(event: str, node: str, value: str) -> None:
    append_line(ARGS.effects, f"{event}\t{node}\t{CURRENT_STATE.get()}\t{value}\t{os.getpid()}\n")


class Token(BaseModel):
    token: str


class Split(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        item: str

    Secrets = Token

    async def execute(self) -> list[Outputs]:
        effect("start", "Split", self.inputs.n)
        effect("done", "Split", self.inputs.n)
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.n))]


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str
        pause: str

    class Outputs(BaseModel):
        value: str

    Secrets = Token

    async def execute(self) -> Outputs:
        effect("start", "Work", self.inputs.item)
        await asyncio.sleep(float(self.inputs.pause))
        effect("done", "Work", self.inputs.item)
        return self.Outputs(value=str(2 * int(self.inputs.item)))


class Gather(BaseNode):
    class Inputs(BaseModel):
        values: str

    class Outputs(BaseModel):
        total: str

    Secrets = Token

    async def execute(self) -> Outputs:
        values = json.loads(self.inputs.values)
        total = str(sum(int(v) for v in values))
        effect("start", "Gather", f"{len(values)}:{total}")
        effect("done", "Gather", f"{len(values)}:{total}")
        return self.Outputs(total=total)


def instrument() -> None:
    original_secrets = http.HttpTransport.secrets
    original_request = http.HttpTransport.request
    original_claim = http.HttpTransport.claim
    original_report_many = getattr(http.HttpTransport, "report_many", None)

    async def secrets(self: http.HttpTransport, state_id: str) -> dict[str, str]:
        CURRENT_STATE.set(state_id)  # same task as the node's execute(), which runs right after
        return await original_secrets(self, state_id)

    async def request(self: http.HttpTransport, method: str, path: str, **kw: Any) -> Any:
        result = await original_request(self, method, path, **kw)
        if ARGS.acks and method == "POST" and path.endswith("/executed"):
            append_line(ARGS.acks, path.rsplit("/", 2)[-2] + "\n")
        return result

    async def report_many(self: http.HttpTransport, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = await original_report_many(self, results)
        if ARGS.acks:
            for item, answer in zip(results, answers):
                if item["kind"] == "executed" and answer.get("detail") is None:
                    append_line(ARGS.acks, item["state_id"] + "\n")
        return answers

    async def claim(self: http.HttpTransport, nodes: list[str], batch_size: int) -> list[dict[str, Any]]:
        states = await original_claim(self, nodes, batch_size)
        if ARGS.ready and not Path(ARGS.ready).exists():
            Path(ARGS.ready).write_text(str(os.getpid()))
        return states

    http.HttpTransport.secrets = secrets  # type: ignore[method-assign]
    http.HttpTransport.request = request  # type: ignore[method-assign]
    http.HttpTransport.claim = claim  # type: ignore[method-assign]
    if original_report_many is not None:  # the batched `results` extension
        http.HttpTransport.report_many = report_many  # type: ignore[method-assign]


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", default="reliability-runtime")
    parser.add_argument("--effects", required=True)
    parser.add_argument("--acks", default="")
    parser.add_argument("--ready", default="")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    ARGS = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    instrument()
    runtime = Runtime(
        ARGS.namespace,
        ARGS.name,
        [Split, Work, Gather],
        state_manager_uri=ARGS.uri,
        key=ARGS.key,
        workers=ARGS.workers,
        batch_size=ARGS.batch_size,
        poll_interval=1,
    )
    runtime.start()  # blocks until the process is killed


if __name__ == "__main__":
    main()
