"""`import exosphere_nb` stays light: no notebook, server, widget or database stack at import time."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["IPython", "fastapi", "uvicorn", "ipywidgets", "anywidget", "duckdb"]


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import json, sys\n"
        "import exosphere_nb\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_building_sdk_objects_does_not_load_duckdb() -> None:
    # A Runtime and a StateManager are built at import/cell time; the database opens on first use.
    code = (
        "import sys\n"
        "from pydantic import BaseModel\n"
        "from exosphere_nb import BaseNode, Runtime, StateManager\n"
        "class N(BaseNode):\n"
        "    class Inputs(BaseModel):\n"
        "        x: str\n"
        "    async def execute(self):\n"
        "        return None\n"
        "Runtime(namespace='ns', name='r', nodes=[N], state_manager_uri=':memory:')\n"
        "StateManager('ns', state_manager_uri=':memory:')\n"
        "print('duckdb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
