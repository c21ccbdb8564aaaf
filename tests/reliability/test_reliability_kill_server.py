"""kill -9 the server mid-run and restart it on the same database file: the runtime (still the same
process) reconnects, the run completes, and nothing the server had acknowledged is lost."""

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
    summary,
    trigger,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

ITEMS = 40
PAUSE = 0.1
LEASE_MS = 3000  # results lost with the server (never acknowledged) come back after this


def test_a_killed_server_restarted_on_its_database_loses_nothing_acknowledged(tmp_path: Path, procs: Procs) -> None:
    db, port = tmp_path / "state.duckdb", free_port()
    server = procs.add(Server(tmp_path, db, port, lease_ms=LEASE_MS, tag="first"))
    server.wait_healthy()
    runtime = procs.add(Worker(tmp_path, server.url, "rt", workers=4, batch_size=8))
    runtime.wait_ready()

    with client(server.url) as c:
        setup_graph(c)
        run_id = trigger(c, ITEMS, PAUSE)  # acknowledged: the run must survive
        wait_for(lambda: len(runtime.acked()) >= 8, 20, "some results to be acknowledged")
        server.kill9()
        acked_before_kill = set(runtime.acked())
        effects_at_kill = read_effects(runtime.effects)
        assert len(done(effects_at_kill, "Work")) < ITEMS, "the run was over before the kill: nothing was tested"
        assert summary(c, run_id) is None  # really gone

        restarted = procs.add(Server(tmp_path, db, port, lease_ms=LEASE_MS, tag="restarted"))
        restarted.wait_healthy()
        result = wait_finished(c, run_id, 45, [server, restarted, runtime])
        assert result["status"] == "SUCCESS", result
        view = states_view(c, run_id, ("split", "work", "gather"))

    assert runtime.alive(), "the runtime process must ride out the outage"
    by_id = {s.id: s for s in view}
    # every result acknowledged before the kill is on disk, as a success: no acknowledged write was lost
    assert acked_before_kill <= {sid for sid, s in by_id.items() if s.status == "SUCCESS"}
    # ... and so is every one acknowledged afterwards
    assert set(runtime.acked()) <= {sid for sid, s in by_id.items() if s.status == "SUCCESS"}

    effects = read_effects(runtime.effects)
    assert {e.pid for e in effects} == {runtime.pid}  # the same runtime process did all the work
    work = [s for s in view if s.identifier == "work"]
    success = Counter(s.inputs["item"] for s in work if s.status == "SUCCESS")
    assert success == Counter(str(i) for i in range(ITEMS))
    # an acknowledged item was executed once: it never came back to run again
    executions = Counter(e.value for e in done(effects, "Work"))
    for sid in acked_before_kill:
        if sid in by_id and by_id[sid].identifier == "work":
            assert executions[by_id[sid].inputs["item"]] == 1, by_id[sid]
    # anything else that is not a success is a lease that expired with the server's outage, then retried
    for s in work:
        if s.status != "SUCCESS":
            assert s.status == "RETRY_CREATED" and "lease expired" in (s.error or ""), s
    (gather,) = done(effects, "Gather")
    assert gather.value == f"{ITEMS}:{sum(2 * i for i in range(ITEMS))}"
    assert [s.status for s in view if s.identifier == "gather"] == ["SUCCESS"]
    assert len(done(effects, "Split")) == 1
