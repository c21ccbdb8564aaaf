"""`exo-nb serve` as a real process: starts, serves, and on SIGTERM commits everything and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import GRAPH, KEY, NAMESPACE, SECRET, SdkRuntime, full_run, trigger

from exosphere_nb.engine.engine import Engine

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

BASE = f"/v0/namespace/{NAMESPACE}"
MODULE = [sys.executable, "-m", "exosphere_nb"]
SCRIPT = [str(Path(sys.executable).parent / "exo-nb")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXOSPHERE_")}
    env.update(extra)
    return env


class Served:
    """`<command> serve --port P <args>` in a subprocess, its output captured."""

    def __init__(self, command: list[str], args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # a file, not a pipe: an undrained pipe fills up with access-log lines and blocks the server
        self.log = cwd / f"serve-{self.port}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [*command, "serve", "--port", str(self.port), *args],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.output}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json() == {"message": "OK"}:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become healthy")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    """Every server a test starts is killed (by its own pid) at teardown if it is still running."""
    started: list[Served] = []
    yield started
    for s in started:
        s.kill()


def _start(servers: list[Served], command: list[str], args: list[str], cwd: Path, env: dict[str, str]) -> Served:
    served = Served(command, args, cwd, env)
    servers.append(served)
    served.wait_healthy()
    return served


def test_sigterm_commits_every_acknowledged_write_and_exits_0(tmp_path: Path, servers: list[Served]) -> None:
    db = tmp_path / "served.duckdb"
    server = _start(servers, MODULE, ["--api-key", KEY, "--db", str(db)], tmp_path, _env())
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=15) as client:
        assert client.get("/v0/namespaces").status_code == 200
        done_run, _ = full_run(client)
        pending_run = trigger(client, label="pending")
        (claimed,) = client.post(f"{BASE}/states/enqueue", json={"nodes": ["Fetch"], "batch_size": 1}).json()["states"]
        # a long-poll in flight must not hold the shutdown up
        waiting = threading.Thread(
            target=lambda: client.get(f"{BASE}/runs/{pending_run}/wait", params={"timeout": 120}), daemon=True
        )
        waiting.start()
        time.sleep(0.3)
        stopping = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0, server.output
        assert time.monotonic() - stopping < 10, server.output
        waiting.join(5)

    assert "Exosphere v0 state manager on" in server.output
    assert SECRET not in server.output and KEY not in server.output
    assert "/secrets HTTP/1.1" in server.output  # the access log was there, and shows paths only

    async def reopen() -> None:
        engine = Engine(str(db))
        await engine.start()
        try:
            runs = {r["run_id"]: r for r in engine.list_runs(NAMESPACE, 1, 10)["runs"]}
            assert runs[done_run]["status"] == "SUCCESS" and runs[done_run]["total_count"] == 12
            assert runs[pending_run]["status"] == "PENDING"
            assert engine.get_graph(NAMESPACE, GRAPH)["validation_status"] == "VALID"
            assert [o["score"] for o in engine.run_outputs(done_run)["score"]] == ["0", "10", "20", "40"]
            assert engine.get_state(claimed["state_id"])["status"] == "QUEUED"
            # the secret was stored encrypted, with its key beside the database
            assert engine.get_secrets(claimed["state_id"]) == {"secrets": {"api_token": SECRET}}
        finally:
            await engine.close()

    asyncio.run(reopen())


def test_console_script_takes_the_key_from_the_environment(tmp_path: Path, servers: list[Served]) -> None:
    if not Path(SCRIPT[0]).exists():
        pytest.skip("the exo-nb console script is not installed next to this interpreter")
    db = tmp_path / "env.duckdb"
    server = _start(servers, SCRIPT, ["--db", str(db)], tmp_path, _env(EXOSPHERE_API_KEY=KEY))
    assert httpx.get(f"{server.url}/v0/namespaces").status_code == 401
    assert httpx.get(f"{server.url}/v0/namespaces", headers={"x-api-key": KEY}).status_code == 200
    # the database is held: a second server on it is refused with a clear message
    second = subprocess.run(
        [*MODULE, "serve", "--port", str(_free_port()), "--db", str(db)],
        cwd=tmp_path,
        env=_env(EXOSPHERE_API_KEY=KEY),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1 and "in use" in second.stderr, second.stderr
    assert server.stop(signal.SIGINT) == 0, server.output


def test_without_a_key_it_serves_loopback_without_auth(tmp_path: Path, servers: list[Served]) -> None:
    server = _start(servers, MODULE, ["--db", str(tmp_path / "nokey.duckdb")], tmp_path, _env())
    assert httpx.get(f"{server.url}/v0/namespaces").json() == {"namespaces": [], "count": 0}
    assert server.stop() == 0
    assert "WITHOUT an API key" in server.output


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_without_a_key_a_non_loopback_host_is_refused(tmp_path: Path, host: str) -> None:
    res = subprocess.run(
        [*MODULE, "serve", "--host", host, "--port", str(_free_port()), "--db", str(tmp_path / "x.duckdb")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "without an API key" in res.stderr and "--api-key" in res.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    for args in (["--port", "70000"], ["--max-body-mib", "0"], ["--lease-ms", "0"]):
        res = subprocess.run([*MODULE, "serve", *args], cwd=tmp_path, env=_env(), capture_output=True, timeout=60)
        assert res.returncode == 2, args


def test_serve_help_lists_the_options() -> None:
    res = subprocess.run([*MODULE, "serve", "--help"], env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for option in ("--host", "--port", "--api-key", "--db", "--max-body-mib", "--lease-ms"):
        assert option in res.stdout


def test_importing_the_package_does_not_import_the_server() -> None:
    code = "import sys, exosphere_nb, exosphere_nb.cli; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert res.stdout.split() == ["False", "False"], res.stderr


def test_an_sdk_runtime_works_against_the_served_process(tmp_path: Path, servers: list[Served]) -> None:
    server = _start(servers, MODULE, ["--api-key", KEY, "--db", str(tmp_path / "sdk.duckdb")], tmp_path, _env())
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=15) as client:
        run_id, runtime = full_run(client)
        assert isinstance(runtime, SdkRuntime)
        summary: dict[str, Any] = client.get(f"{BASE}/runs/{run_id}/summary").json()
        assert summary["status"] == "SUCCESS"
    assert server.stop() == 0
