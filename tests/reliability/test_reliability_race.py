"""Two runtime processes racing over one queue: each state is executed exactly once, counted from
the nodes' own side effects as well as from the server's view."""

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
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="O_APPEND side-effect log")

ITEMS = 300
PAUSE = 0.03  # one runtime alone would need 2.25 s: the other, even backed off to 1 s polls, joins


def test_two_runtimes_racing_execute_each_state_exactly_once(tmp_path: Path, procs: Procs) -> None:
    server = procs.add(Server(tmp_path, tmp_path / "state.duckdb", free_port()))
    server.wait_healthy()
    racers = [procs.add(Worker(tmp_path, server.url, name, workers=4, batch_size=16)) for name in ("rt-a", "rt-b")]
    for racer in racers:
        racer.wait_ready()  # both are polling before there is anything to claim

    with client(server.url) as c:
        setup_graph(c)
        run_id = trigger(c, ITEMS, PAUSE)
        result = wait_finished(c, run_id, 45, [server, *racers])
        assert result["status"] == "SUCCESS", result
        view = states_view(c, run_id, ("work", "gather"))

    effects = read_effects(racers[0].effects)
    work_done = done(effects, "Work")
    starts = [e for e in effects if e.event == "start" and e.node == "Work"]
    # the nodes' own account: every state executed once, by one process, and every item once
    assert Counter(e.state_id for e in starts).most_common(1)[0][1] == 1
    assert Counter(e.state_id for e in work_done).most_common(1)[0][1] == 1
    assert sorted(int(e.value) for e in work_done) == list(range(ITEMS))
    # the server's account agrees: exactly those states succeeded, and nothing was retried
    work = [s for s in view if s.identifier == "work"]
    assert [s.status for s in work] == ["SUCCESS"] * ITEMS
    assert {s.id for s in work} == {e.state_id for e in work_done}
    assert all(s.retry_count == 0 for s in view)
    # the fan-out's outputs are split states too (siblings, SUCCESS): ITEMS of each, and one gather
    assert result["counts"]["SUCCESS"] == 2 * ITEMS + 1 and result["counts"]["RETRY_CREATED"] == 0
    # both processes did some of the work
    by_pid = Counter(e.pid for e in work_done)
    assert set(by_pid) == {r.pid for r in racers}, by_pid
    (gather,) = done(effects, "Gather")
    assert gather.value == f"{ITEMS}:{sum(2 * i for i in range(ITEMS))}"
    assert len(done(effects, "Split")) == 1
