"""Signals a node raises from `execute` to prune its branch or run again later."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

__all__ = ["PruneSignal", "ReQueueAfterSignal"]


class PruneSignal(Exception):
    """End this branch here: the state becomes PRUNED (counts as success), keeping `data`."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        super().__init__(f"Prune signal received with data: {self.data}")


class ReQueueAfterSignal(Exception):
    """Run this state again after `delay` (its retry count is unchanged)."""

    def __init__(self, delay: timedelta) -> None:
        if delay.total_seconds() <= 0:
            raise ValueError("Delay must be greater than 0")
        self.delay = delay
        super().__init__(f"ReQueueAfter signal received with delay: {delay}")

    @property
    def delay_ms(self) -> int:
        return max(1, int(self.delay.total_seconds() * 1000))
