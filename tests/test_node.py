"""Node classes are checked when a Runtime is built: every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from exosphere_nb import BadRequestError, BaseNode, NodeValidationError, Runtime


@pytest.fixture(autouse=True)
def _own_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", f"duckdb://{tmp_path}/state.duckdb")


class Good(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    class Secrets(BaseModel):
        api_key: str

    async def execute(self) -> Outputs:
        return self.Outputs(message=self.inputs.name)


def make_named(name: str) -> type[BaseNode]:
    """A valid node class called `name`, defined in its own scope."""

    async def execute(self: BaseNode) -> None:
        return None

    return type(name, (BaseNode,), {"execute": execute, "__qualname__": f"make_named.{name}"})


def build(*nodes: object) -> NodeValidationError:
    with pytest.raises(NodeValidationError) as info:
        Runtime(namespace="ns", name="rt", nodes=list(nodes))  # type: ignore[arg-type]
    return info.value


def test_a_valid_node_is_accepted() -> None:
    runtime = Runtime(namespace="ns", name="rt", nodes=[Good])
    assert "Good" in repr(runtime)


@pytest.mark.parametrize("model", ["Inputs", "Outputs", "Secrets"])
def test_non_string_field_names_node_model_and_field(model: str) -> None:
    bad_model = type(model, (BaseModel,), {"__annotations__": {"count": int}})
    node = type("Counter", (Good,), {model: bad_model})
    err = build(node)
    assert len(err.errors) == 1
    message = err.errors[0]
    assert "Counter" in message and model in message and "count" in message
    assert "str" in message
    assert "Counter" in str(err)


def test_inputs_must_be_a_pydantic_model() -> None:
    class PlainInputs(BaseNode):
        class Inputs:  # not a BaseModel
            name: str

        async def execute(self) -> None:
            return None

    err = build(PlainInputs)
    assert any("PlainInputs.Inputs" in e and "BaseModel" in e for e in err.errors), err.errors


def test_an_instance_instead_of_a_class_is_refused() -> None:
    err = build(Good())
    assert any("class, not an instance" in e for e in err.errors), err.errors


def test_not_a_node_class_is_refused() -> None:
    class NotANode:
        async def execute(self) -> None:
            return None

    err = build(NotANode)
    assert any("NotANode" in e and "BaseNode" in e for e in err.errors), err.errors


def test_duplicate_node_names_are_refused() -> None:
    err = build(make_named("Dup"), make_named("Dup"))
    assert any("duplicate" in e and "Dup" in e for e in err.errors), err.errors


def test_execute_must_be_async() -> None:
    class SyncNode(BaseNode):
        def execute(self) -> None:  # type: ignore[override]
            return None

    err = build(SyncNode)
    assert any("SyncNode" in e and "async" in e for e in err.errors), err.errors


def test_execute_must_be_implemented() -> None:
    class NoExecute(BaseNode):
        class Inputs(BaseModel):
            x: str

    err = build(NoExecute)
    assert any("NoExecute" in e and "execute" in e for e in err.errors), err.errors


def test_every_problem_is_listed_in_one_error() -> None:
    class BadField(BaseNode):
        class Inputs(BaseModel):
            count: int

        class Outputs(BaseModel):
            ratio: float

        async def execute(self) -> None:
            return None

    class PlainSecrets(BaseNode):
        Secrets = dict  # type: ignore[assignment]

        async def execute(self) -> None:
            return None

    class SyncNode(BaseNode):
        def execute(self) -> None:  # type: ignore[override]
            return None

    class NoExecute(BaseNode):
        pass

    err = build(BadField, PlainSecrets, Good(), make_named("Dup"), make_named("Dup"), SyncNode, NoExecute)
    text = "\n".join(err.errors)
    assert len(err.errors) >= 7, err.errors
    for expected in (
        "BadField.Inputs.count",
        "BadField.Outputs.ratio",
        "PlainSecrets.Secrets",
        "not an instance",
        "'Dup'",
        "SyncNode",
        "NoExecute",
    ):
        assert expected in text, (expected, err.errors)
    # one error, one line per problem
    assert str(err).count("\n- ") == len(err.errors)
    assert isinstance(err, BadRequestError)


def test_no_nodes_is_an_error() -> None:
    err = build()
    assert err.errors


@pytest.mark.parametrize(("field", "value"), [("batch_size", 0), ("workers", 0), ("batch_size", -3), ("workers", -1)])
def test_batch_size_and_workers_must_be_positive(field: str, value: int) -> None:
    with pytest.raises(BadRequestError) as info:
        Runtime(namespace="ns", name="rt", nodes=[Good], **{field: value})
    assert field in str(info.value)
