"""Which of the allow-listed Slack user groups a person is in (usergroups.users.list, cached)."""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class UserGroups:
    """Members of a fixed set of user groups, re-read at most every `ttl` seconds."""

    def __init__(self, client: AsyncWebClient, groups: frozenset[str], ttl: float = 300.0) -> None:
        self.client = client
        self.groups = groups
        self.ttl = ttl
        self._members: dict[str, frozenset[str]] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def of(self, user: str) -> frozenset[str]:
        """The listed groups `user` belongs to (none if Slack will not say; the log says why)."""
        if not self.groups:
            return frozenset()
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                await self._read()
        return frozenset(group for group, members in self._members.items() if user in members)

    async def _read(self) -> None:
        members: dict[str, frozenset[str]] = {}
        for group in sorted(self.groups):
            try:
                response = await self.client.usergroups_users_list(usergroup=group)
            except SlackApiError as exc:
                log.warning(
                    "slack: cannot list user group %s (%s); add the usergroups:read scope "
                    "and check SLACK_ALLOWED_USERGROUPS",
                    group,
                    exc.response.get("error"),
                )
                members[group] = self._members.get(group, frozenset())
                continue
            members[group] = frozenset(response.get("users", []))
        self._members = members
        self._read_at = time.monotonic()
