"""Processes the JupyterLab tests start and stop by their own handles: a Jupyter server (or JupyterLab),
`exo-nb serve`, and a runtime worker; all on 127.0.0.1, each stopped by pid when the test ends.

What a fresh machine needs (the tests fail, never skip, when something is missing):
    apt-get update && apt-get install -y chromium        # /usr/bin/chromium, driven by Playwright
    .venv/bin/pip install -e ".[test,lab]"               # jupyterlab, jupyter-server, playwright
Never `playwright install`: the tests use Debian's Chromium through `executable_path`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
CHROMIUM = Path(os.environ.get("EXOSPHERE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SETUP_HINT = (
    "set the machine up with: apt-get update && apt-get install -y chromium; "
    '.venv/bin/pip install -e ".[test,lab]"  (never `playwright install`)'
)
KERNEL_NAME = "exo-nb-lab-test"
ENV_TO_CLEAR = ("EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_API_KEY", "EXOSPHERE_DB", "EXOSPHERE_SECRETS_KEY")


def require_lab() -> None:
    """Fail (not skip) with the setup command when the lab extra is not installed."""
    missing = []
    for module in ("jupyter_server", "jupyterlab", "tornado"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        pytest.fail(f"the JupyterLab tests need {', '.join(missing)}: {SETUP_HINT}", pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def artifacts_dir() -> Path:
    """Screenshots go here (`EXOSPHERE_TEST_ARTIFACTS`, else tests/lab/artifacts/, which git ignores)."""
    path = Path(os.environ.get("EXOSPHERE_TEST_ARTIFACTS") or HERE / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_kernelspec(root: Path) -> Path:
    """A kernelspec running this interpreter under `root/kernels/`; returns `root` for JUPYTER_PATH."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "exosphere_nb lab tests",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def _stop(proc: subprocess.Popen[Any], grace: float = 20) -> None:
    """SIGTERM the process we started (by its pid), then SIGKILL it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_http(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60, **kw: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} while starting:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, **kw).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


class JupyterProcess:
    """`jupyter server` (or `jupyter lab`) on 127.0.0.1 with a token, isolated in `tmp`."""

    def __init__(self, tmp: Path, root: Path, *, lab: bool = False, extra: list[str] | None = None) -> None:
        self.tmp = tmp
        self.root = root
        self.token = "lab-test-token-" + os.urandom(6).hex()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.servers_dir = tmp / "servers"
        self.connections_file = tmp / "lab_connections.json"
        self.log = tmp / ("jupyter-lab.log" if lab else "jupyter-server.log")
        jupyter_path = write_kernelspec(tmp / "jupyter_path")
        settings = tmp / "lab-settings"
        (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True, exist_ok=True)
        # no "fetch Jupyter news?" prompt and no news fetch from the network
        (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        self.env = {k: v for k, v in os.environ.items() if k not in ENV_TO_CLEAR}
        self.env.update(
            {
                "EXOSPHERE_SERVERS_DIR": str(self.servers_dir),
                "JUPYTER_PATH": str(jupyter_path),
                "JUPYTER_CONFIG_DIR": str(tmp / "jupyter_config"),
                "JUPYTER_DATA_DIR": str(tmp / "jupyter_data"),
                "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter_runtime"),
                "IPYTHONDIR": str(tmp / "ipython"),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        app = "jupyterlab" if lab else "jupyter_server"
        self.argv = [
            sys.executable,
            "-m",
            app,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            f"--ServerApp.root_dir={root}",
            f"--IdentityProvider.token={self.token}",
            '--ServerApp.jpserver_extensions={"exosphere_nb.labserver": True}',
            f"--ExosphereLab.connections_file={self.connections_file}",
            *(
                [
                    f"--LabApp.user_settings_dir={settings}",
                    f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
                    "--LabApp.news_url=",
                ]
                if lab
                else []
            ),
            *(extra or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.kernel_pids: list[int] = []  # kernels a test saw start, checked to be gone after stop()

    def start(self) -> JupyterProcess:
        self.servers_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        _wait_http(f"{self.url}/api/status", self.proc, self.log, headers=self.auth)
        return self

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def api(self, path: str) -> str:
        return f"{self.url}/exosphere-nb/api/{path}"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> JupyterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ExoServe:
    """`exo-nb serve` on a free 127.0.0.1 port with its own database and API key."""

    def __init__(self, tmp: Path, key: str | None = "lab-upstream-key-" + os.urandom(4).hex()) -> None:
        self.key = key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"exo-serve-{self.port}.log"
        self.db = tmp / f"serve-{self.port}.duckdb"
        self.env = {k: v for k, v in os.environ.items() if k not in ENV_TO_CLEAR}
        if key:
            self.env["EXOSPHERE_API_KEY"] = key  # in the environment, not on the command line
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ExoServe:
        argv = [str(BIN / "exo-nb"), "serve", "--port", str(self.port), "--db", str(self.db), "--log-level", "warning"]
        if not (BIN / "exo-nb").exists():
            argv = [sys.executable, "-m", "exosphere_nb", *argv[1:]]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        _wait_http(f"{self.url}/health", self.proc, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> ExoServe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Worker:
    """tests/lab/lab_worker.py: a runtime for the test graph over HTTP, in its own process."""

    def __init__(self, tmp: Path, uri: str, key: str | None) -> None:
        self.cwd = tmp / "worker"
        self.cwd.mkdir(exist_ok=True)
        self.log = tmp / "worker.log"
        self.env = {k: v for k, v in os.environ.items() if k not in ENV_TO_CLEAR}
        self.env.update({"EXOSPHERE_STATE_MANAGER_URI": uri, "EXOSPHERE_API_KEY": key or ""})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "lab_worker.py")],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while "ready" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not get ready:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
