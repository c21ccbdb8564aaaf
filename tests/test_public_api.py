"""The public surface: `__all__` pinned, and the exospherehost 0.0.3 names with their signatures."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import exosphere_nb
from exosphere_nb import (
    BaseNode,
    CronTrigger,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)

EXPECTED_ALL = [
    "AuthError",
    "BadRequestError",
    "BaseNode",
    "ConflictError",
    "CronTrigger",
    "DatabaseLockedError",
    "ExosphereError",
    "GraphNodeModel",
    "GraphValidationError",
    "NodeValidationError",
    "NotFoundError",
    "PlaceholderError",
    "PruneSignal",
    "ReQueueAfterSignal",
    "RetryPolicyModel",
    "RetryStrategyEnum",
    "Runtime",
    "RuntimeHandle",
    "ServerError",
    "StateManager",
    "StateTransitionError",
    "StoreConfigModel",
    "TransportError",
    "UnitesModel",
    "UnitesStrategyEnum",
    "VERSION",
    "__version__",
]

EXOSPHEREHOST_NAMES = [
    "Runtime",
    "BaseNode",
    "StateManager",
    "GraphNodeModel",
    "UnitesModel",
    "UnitesStrategyEnum",
    "RetryPolicyModel",
    "RetryStrategyEnum",
    "StoreConfigModel",
    "CronTrigger",
    "PruneSignal",
    "ReQueueAfterSignal",
]

_EMPTY = inspect.Parameter.empty


def params(fn: Any) -> list[tuple[str, Any]]:
    """(name, default) of every parameter but `self`."""
    sig = inspect.signature(fn)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


def test_all_is_pinned() -> None:
    assert sorted(exosphere_nb.__all__) == EXPECTED_ALL
    assert len(set(exosphere_nb.__all__)) == len(exosphere_nb.__all__)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from exosphere_nb import {name}", namespace)
    assert namespace[name] is getattr(exosphere_nb, name)


def test_version_is_a_string() -> None:
    assert isinstance(exosphere_nb.__version__, str) and exosphere_nb.__version__
    assert exosphere_nb.__version__ == exosphere_nb.VERSION


@pytest.mark.parametrize("name", EXOSPHEREHOST_NAMES)
def test_exospherehost_names_are_public(name: str) -> None:
    assert name in exosphere_nb.__all__


def test_runtime_signature_matches_exospherehost() -> None:
    assert params(Runtime.__init__) == [
        ("namespace", _EMPTY),
        ("name", _EMPTY),
        ("nodes", _EMPTY),
        ("state_manager_uri", None),
        ("key", None),
        ("batch_size", 16),
        ("workers", 4),
        ("state_manage_version", "v0"),
        ("poll_interval", 1),
    ]
    assert callable(Runtime.start)
    assert inspect.iscoroutinefunction(Runtime._start)  # users write asyncio.create_task(runtime._start())


def test_state_manager_signature_matches_exospherehost() -> None:
    assert params(StateManager.__init__) == [
        ("namespace", _EMPTY),
        ("state_manager_uri", None),
        ("key", None),
        ("state_manager_version", "v0"),
    ]


def test_state_manager_methods_match_exospherehost() -> None:
    assert params(StateManager.trigger) == [
        ("graph_name", _EMPTY),
        ("inputs", None),
        ("store", None),
        ("start_delay", 0),
    ]
    assert params(StateManager.upsert_graph) == [
        ("graph_name", _EMPTY),
        ("graph_nodes", _EMPTY),
        ("secrets", _EMPTY),
        ("retry_policy", None),
        ("store_config", None),
        ("triggers", None),
        ("validation_timeout", 60),
        ("polling_interval", 1),
    ]
    assert params(StateManager.get_graph) == [("graph_name", _EMPTY)]
    for method in (StateManager.trigger, StateManager.upsert_graph, StateManager.get_graph):
        assert inspect.iscoroutinefunction(method), method.__name__


def test_base_node_shape() -> None:
    for attr in ("Inputs", "Outputs", "Secrets"):
        model = getattr(BaseNode, attr)
        assert issubclass(model, BaseModel)
        assert model.model_fields == {}
    assert inspect.iscoroutinefunction(BaseNode.execute)
    assert params(BaseNode.execute) == []


def test_retry_policy_defaults() -> None:
    policy = RetryPolicyModel()
    assert policy.max_retries == 3
    assert policy.strategy is RetryStrategyEnum.EXPONENTIAL
    assert policy.backoff_factor == 2000
    assert policy.exponent == 2
    assert policy.max_delay is None


def test_retry_policy_rejects_out_of_range_values() -> None:
    for bad in ({"max_retries": -1}, {"backoff_factor": 0}, {"exponent": 0}, {"max_delay": 0}):
        with pytest.raises(ValidationError):
            RetryPolicyModel(**bad)


def test_retry_strategies() -> None:
    assert {s.value for s in RetryStrategyEnum} == {
        f"{base}{jitter}"
        for base in ("EXPONENTIAL", "LINEAR", "FIXED")
        for jitter in ("", "_FULL_JITTER", "_EQUAL_JITTER")
    }


def test_unites_model_defaults_to_all_success() -> None:
    assert UnitesModel(identifier="splitter").strategy is UnitesStrategyEnum.ALL_SUCCESS
    assert {s.value for s in UnitesStrategyEnum} == {"ALL_SUCCESS", "ALL_DONE"}


def test_graph_node_model_fields_and_validators() -> None:
    node = GraphNodeModel(node_name="N", namespace="ns", identifier="n", inputs={})
    assert node.next_nodes is None
    assert node.unites is None
    with pytest.raises(ValidationError):
        GraphNodeModel(node_name="N", namespace="ns", identifier="store", inputs={})
    with pytest.raises(ValidationError):
        GraphNodeModel(node_name=" ", namespace="ns", identifier="n", inputs={})
    with pytest.raises(ValidationError):
        GraphNodeModel(node_name="N", namespace="ns", identifier="n", inputs={}, next_nodes=["a", "a"])


def test_store_config_defaults_and_key_rules() -> None:
    config = StoreConfigModel()
    assert config.required_keys == []
    assert config.default_values == {}
    with pytest.raises(ValidationError):
        StoreConfigModel(required_keys=["a.b"])
    with pytest.raises(ValidationError):
        StoreConfigModel(required_keys=["k", "k"])


def test_cron_trigger() -> None:
    assert CronTrigger(expression="*/5 * * * *").expression == "*/5 * * * *"
    with pytest.raises(ValidationError):
        CronTrigger(expression="not a cron")


def test_prune_signal_data_defaults_to_empty_dict() -> None:
    assert PruneSignal().data == {}
    assert PruneSignal(data={"reason": "x"}).data == {"reason": "x"}
    assert PruneSignal({"reason": "y"}).data == {"reason": "y"}
    assert isinstance(PruneSignal(), Exception)


def test_requeue_after_signal_takes_a_positive_timedelta() -> None:
    assert ReQueueAfterSignal(timedelta(seconds=2)).delay == timedelta(seconds=2)
    assert ReQueueAfterSignal(delay=timedelta(milliseconds=5)).delay == timedelta(milliseconds=5)
    assert params(ReQueueAfterSignal.__init__) == [("delay", _EMPTY)]
    for bad in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError):
            ReQueueAfterSignal(bad)
