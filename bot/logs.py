"""Log set-up: plain text for people, or one JSON object per line for log collectors.

Every record carries the `request_id` of the question being answered in its task (None outside
one), so JSON logs can be grouped by question. Message text is never logged (README: privacy), nor
are the credentials in a URL. Importing this module quiets slack_bolt's signature failures.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from inference.remote import mask_urls

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "{asctime}{levelname}{name}{message}{request_id}"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class _SignatureFailure(logging.Filter):
    """Keeps slack_bolt's report of a request whose signature fails, without its body."""

    # slack_bolt writes the whole body of the request (a question's text) into the message.

    def filter(self, record: logging.LogRecord) -> bool:
        found = re.search(r"timestamp: ([1-9]\d*)", record.getMessage())
        offset = f"{int(found[1]) - time.time():+.0f} s" if found else "missing"
        record.msg = (
            "slack: refused a request whose signature does not match (its timestamp is %s from "
            "this machine's clock; the body is not logged). Check SLACK_SIGNING_SECRET, and the "
            "clock if the offset is beyond 5 minutes."
        )
        record.args = (offset,)
        return True


# The one logger slack_bolt's request verification writes to (sync and async apps alike).
logging.getLogger("slack_bolt.RequestVerification").addFilter(_SignatureFailure())


class _MaskedHandler(logging.StreamHandler):
    """Writes each record with any URL credentials in it (a library's, a traceback's) masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_urls(super().format(record))


def configure(verbose: bool, style: Literal["text", "json"] = "text") -> None:
    """Log to stderr: INFO and above with `verbose`, else WARNING and above."""
    handler = _MaskedHandler()
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
