"""kill -9 a runtime process mid-run: its states come back when their leases expire, another runtime
finishes the run, and the unite runs exactly once."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from reliability_helpers import (
    Procs,
    Server,
    Worker,
    client,
    done,
    free_port,
    read_effects,
    setup_graph,
    states_view,
    trigger,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

ITEMS = 24
PAUSE = 0.25  # seconds per item: the first runtime is surely mid-run when it is killed
LEASE_MS = 1000


def test_a_killed_runtimes_states_come_back_and_the_run_completes(tmp_path: Path, procs: Procs) -> None:
    server = procs.add(Server(tmp_path, tmp_path / "state.duckdb", free_port(), lease_ms=LEASE_MS))
    server.wait_healthy()
    first = procs.add(Worker(tmp_path, server.url, "rt-first", workers=4, batch_size=4))
    first.wait_ready()

    with client(server.url) as c:
        setup_graph(c)
        run_id = trigger(c, ITEMS, PAUSE)

        def mid_run() -> bool:
            work = [e for e in read_effects(first.effects) if e.node == "Work"]
            finished = {e.state_id for e in work if e.event == "done"}
            return len(finished) >= 4 and any(e.state_id not in finished for e in work)

        wait_for(mid_run, 20, "the first runtime to have done some items and be running others")
        first.kill9()
        at_kill = read_effects(first.effects)
        done_by_first = {e.state_id for e in at_kill if e.event == "done" and e.node == "Work"}
        in_flight = {e.state_id for e in at_kill if e.event == "start" and e.node == "Work"} - done_by_first
        assert len(done_by_first) < ITEMS, "the first runtime finished before it was killed: nothing was tested"
        assert in_flight, "nothing was running when the first runtime was killed"

        second = procs.add(Worker(tmp_path, server.url, "rt-second", workers=4, batch_size=4))
        summary = wait_finished(c, run_id, 40, [server, first, second])
        assert summary["status"] == "SUCCESS", summary
        view = states_view(c, run_id, ("split", "work", "gather"))

    effects = read_effects(first.effects)
    assert {e.pid for e in effects} == {first.pid, second.pid}

    # the unite ran exactly once, on every item: by its own side effects and by the server's view
    (gather,) = done(effects, "Gather")
    assert gather.value == f"{ITEMS}:{sum(2 * i for i in range(ITEMS))}"
    assert [s.status for s in view if s.identifier == "gather"] == ["SUCCESS"]
    assert len(done(effects, "Split")) == 1

    work = [s for s in view if s.identifier == "work"]
    by_id = {s.id: s for s in work}
    # every item has exactly one SUCCESS state ...
    success = Counter(s.inputs["item"] for s in work if s.status == "SUCCESS")
    assert success == Counter(str(i) for i in range(ITEMS))
    # ... which some runtime really executed, once; no state was executed twice
    work_done = done(effects, "Work")
    executions = Counter(e.state_id for e in work_done)
    assert max(executions.values()) == 1, executions.most_common(3)
    assert {s.id for s in work if s.status == "SUCCESS"} <= set(executions)
    # every other work state is a lease that expired with the first runtime: retried, not lost
    others = [s for s in work if s.status != "SUCCESS"]
    assert others and all(s.status == "RETRY_CREATED" and "lease expired" in (s.error or "") for s in others)
    # the states in flight at the kill were re-executed (at least once) by the second runtime
    assert in_flight <= {s.id for s in others}
    redone = {e.value for e in work_done if e.pid == second.pid}
    assert {by_id[sid].inputs["item"] for sid in in_flight} <= redone
    # and nothing the first runtime had finished and reported was run again
    reported = set(first.acked())
    assert reported and reported <= {s.id for s in work if s.status == "SUCCESS"} | {
        s.id for s in view if s.identifier == "split"
    }
    assert not {by_id[sid].inputs["item"] for sid in reported if sid in by_id} & redone
