"""Transports the SDK speaks through: the embedded engine, or any v0 state manager over HTTP."""
