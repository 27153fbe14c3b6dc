"""Errors every layer may raise for the operator to act on."""

from __future__ import annotations


class ConfigError(Exception):
    """The settings cannot work; the message says which one and how to fix it."""
