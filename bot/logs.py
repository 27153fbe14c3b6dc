"""Log set-up: plain text for people, or one JSON object per line for log collectors.

Every record carries the `request_id` of the question being answered in its task (None outside
one), so JSON logs can be grouped by question. Message text is never logged (README: privacy).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "{asctime}{levelname}{name}{message}{request_id}"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure(verbose: bool, style: Literal["text", "json"] = "text") -> None:
    """Log to stderr: INFO and above with `verbose`, else WARNING and above."""
    handler = logging.StreamHandler()
    handler.addFilter(_WithRequestId())
    if style == "json":
        formatter: logging.Formatter = JsonFormatter(
            JSON_FIELDS, style="{", rename_fields=JSON_NAMES
        )
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True
    )
