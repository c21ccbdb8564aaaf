"""A real Jupyter kernel (ipykernel, started by nbclient) running THIS interpreter, cell by cell.

`KernelSession` writes a kernelspec into a temporary directory whose argv is `sys.executable
-m ipykernel_launcher`, points JUPYTER_PATH at it, and executes cells one at a time through
nbclient, so a test can pause between cells (the kernel idle) or talk to the kernel over a second
client (ipykernel 7 subshells: the thread widget callbacks arrive on). The kernel is shut down by
its manager (by pid) when the session ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.blocking.client import BlockingKernelClient
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

KERNEL_NAME = "exo-nb-test-python"
ENV_TO_CLEAR = ("EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_API_KEY", "EXOSPHERE_DB", "EXOSPHERE_SECRETS_KEY")


def write_kernelspec(root: Path) -> Path:
    """A kernelspec under `root/kernels/` that runs this interpreter; returns `root` (for JUPYTER_PATH)."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--InteractiveShell.colors=nocolor",
        ],
        "display_name": "exosphere_nb tests",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def _text(outputs: list[Any]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", "") + "\n")
    return "".join(parts)


class KernelSession:
    """Execute cells in one live kernel; `run(code)` returns the cell's text output, raising on errors."""

    def __init__(self, cwd: Path, jupyter_path: Path, timeout: float = 60) -> None:
        self.cwd = cwd
        self.jupyter_path = jupyter_path
        self.nb = new_notebook()
        self.nb.metadata["kernelspec"] = {
            "name": KERNEL_NAME,
            "display_name": "exosphere_nb tests",
            "language": "python",
        }
        self.client = NotebookClient(
            self.nb,
            kernel_name=KERNEL_NAME,
            timeout=timeout,
            startup_timeout=60,
            resources={"metadata": {"path": str(cwd)}},
        )
        self._ctx: Any = None
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> KernelSession:
        # The kernel inherits this environment: no stray state-manager settings, and our kernelspec first.
        for name in (*ENV_TO_CLEAR, "JUPYTER_PATH"):
            self._saved_env[name] = os.environ.get(name)
        for name in ENV_TO_CLEAR:
            os.environ.pop(name, None)
        os.environ["JUPYTER_PATH"] = str(self.jupyter_path)
        self._ctx = self.client.setup_kernel()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._ctx.__exit__(*exc)  # nbclient shuts its kernel down (the manager signals its pid)
        finally:
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def run(self, code: str) -> str:
        cell = new_code_cell(code)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        return _text(cell.outputs)

    @property
    def kernel_pid(self) -> int | None:
        provisioner = getattr(self.client.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    def save(self, path: Path) -> None:
        """Keep the executed cells (handy when a test fails)."""
        nbformat.write(self.nb, str(path))

    # -- a second client: concurrent requests, ipykernel 7 subshells -----------------------------

    def side_client(self) -> BlockingKernelClient:
        kc = BlockingKernelClient(connection_file=self.client.km.connection_file)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        return kc


def control_request(kc: BlockingKernelClient, msg_type: str, content: dict[str, Any], timeout: float = 30) -> Any:
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = kc.control_channel.get_msg(timeout=max(0.01, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply["content"]
    raise TimeoutError(f"no reply to {msg_type}")


def send_execute(kc: BlockingKernelClient, code: str, subshell_id: str | None = None) -> str:
    """Send an execute_request (to a subshell when `subshell_id` is given) without waiting; returns its id."""
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    msg = kc.session.msg("execute_request", content)
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def collect_replies(
    kc: BlockingKernelClient, msg_ids: list[str], timeout: float = 60
) -> list[tuple[str, dict[str, Any]]]:
    """Shell replies to `msg_ids`, in the order they arrived: [(msg_id, content), ...]."""
    wanted = set(msg_ids)
    got: list[tuple[str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no reply to {sorted(wanted)}")
        reply = kc.shell_channel.get_msg(timeout=remaining)
        parent = reply["parent_header"].get("msg_id")
        if parent in wanted:
            wanted.discard(parent)
            got.append((parent, reply["content"]))
    return got


def stream_texts(kc: BlockingKernelClient, msg_ids: list[str], timeout: float = 10) -> dict[str, str]:
    """What each execution printed (stdout, stderr, tracebacks), read from iopub until each went idle."""
    text: dict[str, list[str]] = {m: [] for m in msg_ids}
    busy = set(msg_ids)
    deadline = time.monotonic() + timeout
    while busy:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no idle status for {sorted(busy)}")
        msg = kc.iopub_channel.get_msg(timeout=remaining)
        parent = msg["parent_header"].get("msg_id")
        if parent not in text:
            continue
        if msg["msg_type"] == "stream":
            text[parent].append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            text[parent].append("\n".join(msg["content"]["traceback"]))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            busy.discard(parent)
    return {m: "".join(t) for m, t in text.items()}
