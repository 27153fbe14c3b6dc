"""Links in model output, kept honest on every platform (model output is untrusted input).

A link may go only to a web or mail address (`is_web`), and its label may not name another
place: a label that looks like a URL, host name or email address other than the link's own
target `disguises` it, and the target itself is shown instead (`honest_links` for Markdown as
Discord renders it; bot/slack/mrkdwn.py applies the same rule to the links it writes).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

# A Markdown masked link as Discord (simple-markdown) parses it: a label that may hold balanced
# [brackets], then (target) with an optional <...> around it and an optional "title".
MASKED_LINK = re.compile(
    r"""\[((?:\[[^\]]*\]|[^\[\]]|\](?=[^\[]*\]))*)\]
    \(\s*<?((?:\([^)]*\)|[^\s\\]|\\.)*?)>?(?:\s+['"][\s\S]*?['"])?\s*\)""",
    re.VERBOSE,
)
_MARKS = re.compile(r"[*_~`|\\]")  # Markdown marks, which a label can put inside a host name
_DOTS = str.maketrans({"。": ".", "｡": "."})  # read as dots in host names (NFKC keeps them)
_SCHEME = r"[a-z][a-z0-9+.-]*://"
_URL = re.compile(rf"{_SCHEME}([^\s/?#]*)", re.IGNORECASE)  # its authority: user@host:port
_EMAIL = re.compile(r"[\w.+-]+@(?:[\w-]+\.)+[^\W\d_]{2,}")
_HOST = re.compile(r"(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])|\b\d{1,3}(?:\.\d{1,3}){3}\b")
_MAILBOX = re.compile(r"[^@\s]+@[^@\s]+")


def is_web(target: str) -> bool:
    """Whether `target` is an http(s) URL with a host, or a mailto: address."""
    try:
        parts = urlsplit(target)
        host = parts.hostname
    except ValueError:  # e.g. a broken [IPv6] host
        return False
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return bool(host)
    return scheme == "mailto" and _MAILBOX.fullmatch(parts.path) is not None


def _host(name: str) -> str:
    """A host name as compared: lower case, without user, port, trailing dot or "www."."""
    name = name.rpartition("@")[2].lower()
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return name.rstrip(".").removeprefix("www.")


def _places(label: str) -> set[str]:
    """The hosts and email addresses a label names, as a reader would take them."""
    text = unicodedata.normalize("NFKC", label).translate(_DOTS)
    text = _MARKS.sub("", "".join(c for c in text if unicodedata.category(c) != "Cf"))
    places = {_host(authority) for authority in _URL.findall(text)}
    text = re.sub(_SCHEME, " ", text, flags=re.IGNORECASE)  # what follows is read as written
    places |= {email.lower() for email in _EMAIL.findall(text)}
    return places | {_host(host) for host in _HOST.findall(_EMAIL.sub(" ", text))}


def _destinations(target: str) -> set[str]:
    """What a web or mail `target` goes to: its host, or its address and the address's host."""
    parts = urlsplit(target)
    if parts.scheme.lower() == "mailto":
        address = parts.path.lower()
        return {address, _host(address)}
    return {_host(parts.hostname or "")}


def disguises(label: str, target: str) -> bool:
    """Whether `label` names a host or address that the web or mail `target` does not go to."""
    return not _places(label) <= _destinations(target)


def honest_links(markdown: str) -> str:
    """`markdown` with each masked link whose label disguises its web target shown as `<target>`."""

    def honest(link: re.Match[str]) -> str:
        label, target = link.group(1), re.sub(r"\\(.)", r"\1", link.group(2))
        if is_web(target) and disguises(label, target):
            return f"<{target}>"
        return link.group(0)

    return MASKED_LINK.sub(honest, markdown)
