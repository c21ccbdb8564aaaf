"""A second process that finds the DuckDB file locked gets a clear error naming the holder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

HOLD = textwrap.dedent(
    """
    import asyncio, sys
    from exosphere_nb import StateManager
    async def main():
        sm = StateManager("lock", state_manager_uri="duckdb://" + sys.argv[1])
        await sm.list_graphs()
        print("holding", flush=True)
        sys.stdin.readline()          # hold the file until the test says so
    asyncio.run(main())
    """
)

OPEN = textwrap.dedent(
    """
    import asyncio, sys
    from exosphere_nb import DatabaseLockedError, StateManager
    async def main():
        sm = StateManager("lock", state_manager_uri="duckdb://" + sys.argv[1])
        try:
            await sm.list_graphs()
        except DatabaseLockedError as exc:
            print(exc.detail)
            sys.exit(3)
    asyncio.run(main())
    """
)


def test_second_process_gets_database_locked_error(tmp_path: Path) -> None:
    db = tmp_path / "state.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        other = subprocess.run([sys.executable, "-c", OPEN, str(db)], capture_output=True, text=True, timeout=60)
        assert other.returncode == 3, other.stderr
        message = other.stdout
        assert str(db) in message
        assert f"process {holder.pid}" in message
        assert "exo-nb serve" in message and "EXOSPHERE_STATE_MANAGER_URI" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    # once the holder has exited, the file opens normally
    again = subprocess.run([sys.executable, "-c", OPEN, str(db)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
