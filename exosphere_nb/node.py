"""`BaseNode`: what a user subclasses, and the checks a Runtime runs on node classes."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import BaseModel

__all__ = ["BaseNode", "latest_definition", "node_class_errors", "node_schema"]

# (module, qualname) -> newest class of that name: a node redefined in a later notebook cell
# replaces the old one here, and runtimes look classes up here when a state executes.
_REGISTRY: dict[tuple[str, str], type[BaseNode]] = {}


class BaseNode(ABC):
    """A building block of a graph: typed string Inputs/Outputs/Secrets and an async `execute`."""

    class Inputs(BaseModel):
        pass

    class Outputs(BaseModel):
        pass

    class Secrets(BaseModel):
        pass

    _abstract_base: ClassVar[bool] = True

    def __init__(self) -> None:
        self.inputs: Any = None
        self.secrets: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[(cls.__module__, cls.__qualname__)] = cls

    async def _execute(self, inputs: Any, secrets: Any) -> Any:
        self.inputs = inputs
        self.secrets = secrets
        return await self.execute()

    @abstractmethod
    async def execute(self) -> Any:
        """Read `self.inputs` / `self.secrets`; return Outputs, a list of Outputs, or None."""
        raise NotImplementedError


def latest_definition(cls: type[BaseNode]) -> type[BaseNode]:
    """The newest class defined under `cls`'s module and name (hot reload in notebooks)."""
    return _REGISTRY.get((cls.__module__, cls.__qualname__), cls)


def _model_errors(node: type, attr: str) -> list[str]:
    model = getattr(node, attr, None)
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        return [f"{node.__name__}.{attr} must be a pydantic BaseModel subclass, got {model!r}"]
    errors = []
    for field_name, info in model.model_fields.items():
        if info.annotation is not str:
            shown = getattr(info.annotation, "__name__", repr(info.annotation))
            errors.append(f"{node.__name__}.{attr}.{field_name} must be of type str, got {shown}")
    return errors


def node_class_errors(nodes: Iterable[Any]) -> list[str]:
    """Every problem with a list of node classes, one message each (empty when all is well)."""
    errors: list[str] = []
    names: dict[str, int] = {}
    for node in nodes:
        if not (inspect.isclass(node) and issubclass(node, BaseNode)):
            what = node.__name__ if inspect.isclass(node) else repr(node)
            hint = " (pass the class, not an instance)" if isinstance(node, BaseNode) else ""
            errors.append(f"{what} is not a subclass of exosphere_nb.BaseNode{hint}")
            continue
        names[node.__name__] = names.get(node.__name__, 0) + 1
        for attr in ("Inputs", "Outputs", "Secrets"):
            errors.extend(_model_errors(node, attr))
        if getattr(node, "__abstractmethods__", None):
            errors.append(f"{node.__name__} does not implement execute()")
        elif not inspect.iscoroutinefunction(node.execute):
            errors.append(f"{node.__name__}.execute must be declared 'async def'")
    errors.extend(f"duplicate node name {name!r} ({count} classes)" for name, count in names.items() if count > 1)
    return errors


def node_schema(node: type[BaseNode], namespace: str) -> dict[str, Any]:
    """The registration body of one node, as the official SDK sends it (PUT /nodes/)."""
    return {
        "name": node.__name__,
        "namespace": namespace,
        "inputs_schema": node.Inputs.model_json_schema(),
        "outputs_schema": node.Outputs.model_json_schema(),
        "secrets": list(node.Secrets.model_fields),
    }
