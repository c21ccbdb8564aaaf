"""exosphere_nb — a Jupyter-first environment for Exosphere workflows.

Code written for `exospherehost` runs with only the import changed; with no state manager URI,
everything runs on an embedded DuckDB state manager inside this process.
"""

from ._version import __version__
from .errors import (
    AuthError,
    BadRequestError,
    ConflictError,
    DatabaseLockedError,
    ExosphereError,
    GraphValidationError,
    NodeValidationError,
    NotFoundError,
    PlaceholderError,
    ServerError,
    StateTransitionError,
    TransportError,
)
from .models import (
    CronTrigger,
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)
from .node import BaseNode
from .runtime import Runtime, RuntimeHandle
from .signals import PruneSignal, ReQueueAfterSignal
from .state_manager import StateManager

VERSION = __version__

__all__ = [
    "VERSION",
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
    "__version__",
]


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """`%load_ext exosphere_nb`: the magics are imported only here, keeping `import exosphere_nb` light."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)
