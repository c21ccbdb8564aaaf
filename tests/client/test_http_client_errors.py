"""4xx answers become typed errors that carry the server's own detail (against a real server)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from http_client_helpers import KEY, NODES, NS, Served, fan_graph

from exosphere_nb import RetryPolicyModel, StateManager, StoreConfigModel
from exosphere_nb.client.http import HttpTransport
from exosphere_nb.errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    ExosphereError,
    GraphValidationError,
    NotFoundError,
    StateTransitionError,
)
from exosphere_nb.node import node_schema


async def _ready(url: str) -> tuple[HttpTransport, StateManager]:
    """Nodes registered and the fan graph stored (with no retries: a failure is final)."""
    transport = HttpTransport(NS, url, KEY)
    await transport.register_nodes("errors-test", [node_schema(n, NS) for n in NODES])
    sm = StateManager(NS, state_manager_uri=url, key=KEY)
    await sm.upsert_graph(
        "fan",
        fan_graph(),
        {},
        retry_policy=RetryPolicyModel(max_retries=0),
        store_config=StoreConfigModel(required_keys=["n", "pause"]),
    )
    return transport, sm


async def test_401_is_an_auth_error_with_the_servers_detail(serve: Callable[..., Served]) -> None:
    served = serve()
    wrong = HttpTransport(NS, served.url, "not-the-key")
    try:
        with pytest.raises(AuthError) as err:
            await wrong.list_graphs()
    finally:
        await wrong.aclose()
    assert "Invalid API key" in err.value.detail and "EXOSPHERE_API_KEY" in err.value.detail
    assert err.value.status_code == 401
    assert len(served.recorder.paths("/graphs/")) == 1  # a 4xx is final: never retried


async def test_404_400_409_422_are_typed_and_carry_the_detail(serve: Callable[..., Served]) -> None:
    served = serve()
    transport, sm = await _ready(served.url)
    try:
        # 404: an unknown graph, named in the detail
        with pytest.raises(NotFoundError) as not_found:
            await sm.get_graph("no-such-graph")
        assert "no-such-graph" in not_found.value.detail and not_found.value.status_code == 404

        # 400: a trigger without a required store key; the detail names the key and the call
        with pytest.raises(BadRequestError) as bad:
            await sm.trigger("fan", store={"pause": "0"})
        assert "'n'" in bad.value.detail or " n" in bad.value.detail, bad.value.detail
        assert "/trigger" in bad.value.detail and bad.value.status_code == 400

        # 400 with the list of problems: a malformed graph is a GraphValidationError listing each
        with pytest.raises(GraphValidationError) as invalid:
            await transport.upsert_graph(
                "broken",
                {
                    "secrets": {},
                    "nodes": [n.model_dump(mode="json") | {"next_nodes": ["nowhere"]} for n in fan_graph()],
                },
            )
        assert invalid.value.errors and any("nowhere" in e for e in invalid.value.errors), invalid.value.errors

        # 400 for a result on a state that is not QUEUED: a StateTransitionError
        run = await sm.trigger("fan", store={"n": "1", "pause": "0"})
        (state,) = await transport.claim(["Fan"], 1)
        await transport.report(state["state_id"], "errored", {"error": "boom"})  # max_retries=0: ERRORED
        with pytest.raises(StateTransitionError) as moved:
            await transport.request("POST", transport._ns(f"/state/{state['state_id']}/executed"), json={"outputs": []})
        assert "ERRORED" in moved.value.detail and "not QUEUED" in moved.value.detail

        # 409: a manual-retry fanout_id used twice
        await sm.retry_state(state["state_id"], fanout_id="again")
        with pytest.raises(ConflictError) as conflict:
            await sm.retry_state(state["state_id"], fanout_id="again")
        assert "again" in conflict.value.detail and conflict.value.status_code == 409
        assert (await sm.run_status(run["run_id"]))["counts"]["CREATED"] == 1  # only the first retry exists

        # 422: a body of the wrong shape; the detail says which field and why
        with pytest.raises(BadRequestError) as shape:
            await transport.trigger("fan", {"n": 3}, {}, 0)  # type: ignore[dict-item]
        assert shape.value.status_code == 422
        assert "inputs" in shape.value.detail and "string" in shape.value.detail.lower(), shape.value.detail
        assert not isinstance(shape.value, GraphValidationError | StateTransitionError)
    finally:
        await transport.aclose()
        await sm._transport.aclose()
    # nothing above was retried: each failing call reached the server once
    assert len(served.recorder.paths("/graph/no-such-graph")) == 1
    assert all(h.status < 500 for h in served.recorder.hits)


async def test_every_typed_error_is_an_exosphere_error(serve: Callable[..., Served]) -> None:
    served = serve()
    sm = StateManager(NS, state_manager_uri=served.url, key=KEY)
    try:
        with pytest.raises(ExosphereError):
            await sm.get_state("0" * 24)
        with pytest.raises(NotFoundError):
            await sm.run_status("00000000-0000-4000-8000-000000000000")
    finally:
        await sm._transport.aclose()
