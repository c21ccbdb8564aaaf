"""Wire and SDK models (pydantic), shared by the SDK surface, the engine and the server.

The SDK models keep the names, fields, defaults and validators of `exospherehost` 0.0.3, so code
written for it runs with only the import changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "TERMINAL_STATUSES",
    "CronTrigger",
    "GraphNodeModel",
    "GraphValidationStatus",
    "RetryPolicyModel",
    "RetryStrategyEnum",
    "RunStatus",
    "StateStatus",
    "StoreConfigModel",
    "UnitesModel",
    "UnitesStrategyEnum",
    "run_status_of",
]


class StateStatus(str, Enum):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    EXECUTED = "EXECUTED"
    SUCCESS = "SUCCESS"
    ERRORED = "ERRORED"
    NEXT_CREATED_ERROR = "NEXT_CREATED_ERROR"
    RETRY_CREATED = "RETRY_CREATED"
    PRUNED = "PRUNED"
    CANCELLED = "CANCELLED"


TERMINAL_STATUSES = frozenset(
    {
        StateStatus.SUCCESS,
        StateStatus.PRUNED,
        StateStatus.ERRORED,
        StateStatus.NEXT_CREATED_ERROR,
        StateStatus.RETRY_CREATED,
        StateStatus.CANCELLED,
    }
)


class GraphValidationStatus(str, Enum):
    PENDING = "PENDING"
    VALID = "VALID"
    INVALID = "INVALID"


class RunStatus(str, Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


def run_status_of(counts: Mapping[str, int]) -> str:
    """A run's status from its states' counts by status (wire-api-v0.md: runs listing)."""
    if counts.get("CREATED") or counts.get("QUEUED") or counts.get("EXECUTED"):
        return RunStatus.PENDING.value
    if counts.get("CANCELLED"):
        return RunStatus.CANCELLED.value
    if counts.get("ERRORED") or counts.get("NEXT_CREATED_ERROR"):
        return RunStatus.FAILED.value
    return RunStatus.SUCCESS.value


class UnitesStrategyEnum(str, Enum):
    ALL_SUCCESS = "ALL_SUCCESS"
    ALL_DONE = "ALL_DONE"


class UnitesModel(BaseModel):
    identifier: str = Field(..., description="Identifier of the node whose execution this node unites")
    strategy: UnitesStrategyEnum = Field(default=UnitesStrategyEnum.ALL_SUCCESS)


def _trimmed(value: str, what: str) -> str:
    trimmed = value.strip()
    if not trimmed:
        raise ValueError(f"{what} cannot be empty")
    return trimmed


class GraphNodeModel(BaseModel):
    node_name: str = Field(..., description="Name of the registered node class")
    namespace: str = Field(..., description="Namespace of the node")
    identifier: str = Field(..., description="Identifier of this node within the graph")
    inputs: dict[str, Any] = Field(..., description="Input templates (strings, may hold ${{ ... }} placeholders)")
    next_nodes: list[str] | None = Field(None, description="Identifiers of the nodes to run next")
    unites: UnitesModel | None = Field(None, description="Run once per execution of this node, after all its branches")

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, v: str) -> str:
        return _trimmed(v, "Node name")

    @field_validator("identifier")
    @classmethod
    def _identifier(cls, v: str) -> str:
        v = _trimmed(v, "Node identifier")
        if v == "store":
            raise ValueError("Node identifier cannot be reserved word 'store'")
        return v

    @field_validator("next_nodes")
    @classmethod
    def _next_nodes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        seen: list[str] = []
        errors: list[str] = []
        for raw in v:
            item = raw.strip()
            if not item:
                errors.append("Next node identifier cannot be empty")
            elif item in seen:
                errors.append(f"Next node identifier {item} is not unique")
            else:
                seen.append(item)
        if errors:
            raise ValueError("\n".join(errors))
        return seen

    @field_validator("unites")
    @classmethod
    def _unites(cls, v: UnitesModel | None) -> UnitesModel | None:
        if v is None:
            return None
        return UnitesModel(identifier=_trimmed(v.identifier, "Unites identifier"), strategy=v.strategy)


class RetryStrategyEnum(str, Enum):
    EXPONENTIAL = "EXPONENTIAL"
    EXPONENTIAL_FULL_JITTER = "EXPONENTIAL_FULL_JITTER"
    EXPONENTIAL_EQUAL_JITTER = "EXPONENTIAL_EQUAL_JITTER"
    LINEAR = "LINEAR"
    LINEAR_FULL_JITTER = "LINEAR_FULL_JITTER"
    LINEAR_EQUAL_JITTER = "LINEAR_EQUAL_JITTER"
    FIXED = "FIXED"
    FIXED_FULL_JITTER = "FIXED_FULL_JITTER"
    FIXED_EQUAL_JITTER = "FIXED_EQUAL_JITTER"


class RetryPolicyModel(BaseModel):
    max_retries: int = Field(default=3, ge=0, description="Maximum number of retries")
    strategy: RetryStrategyEnum = Field(default=RetryStrategyEnum.EXPONENTIAL)
    backoff_factor: int = Field(default=2000, gt=0, description="Base delay in milliseconds")
    exponent: int = Field(default=2, gt=0, description="Exponent of the exponential strategies")
    max_delay: int | None = Field(default=None, gt=0, description="Cap on the delay in milliseconds")


def _store_key_errors(keys: list[str]) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    out: list[str] = []
    for key in keys:
        k = key.strip() if key is not None else ""
        if not k:
            errors.append("Key cannot be empty or contain only whitespace")
        elif "." in k:
            errors.append(f"Key '{k}' cannot contain '.' character")
        elif k in out:
            errors.append(f"Key '{k}' is duplicated")
        else:
            out.append(k)
    return out, errors


class StoreConfigModel(BaseModel):
    required_keys: list[str] = Field(default_factory=list, description="Keys a trigger must give")
    default_values: dict[str, str] = Field(default_factory=dict, description="Values for keys a trigger leaves out")

    @field_validator("required_keys")
    @classmethod
    def _required_keys(cls, v: list[str]) -> list[str]:
        keys, errors = _store_key_errors(v)
        if errors:
            raise ValueError("\n".join(errors))
        return keys

    @field_validator("default_values")
    @classmethod
    def _default_values(cls, v: dict[str, str]) -> dict[str, str]:
        keys, errors = _store_key_errors(list(v))
        if errors:
            raise ValueError("\n".join(errors))
        return {k.strip(): str(v[k]) for k in v if k.strip() in keys}


class CronTrigger(BaseModel):
    """Run the graph at each occurrence of a 5-field cron expression (UTC)."""

    expression: str = Field(..., description="5-field cron expression, evaluated in UTC")

    @field_validator("expression")
    @classmethod
    def _expression(cls, v: str) -> str:
        from croniter import croniter  # light, but only needed when a trigger is built

        v = " ".join(v.split())
        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError(f"Invalid cron expression {v!r}: expected 5 fields (minute hour day month weekday)")
        return v
