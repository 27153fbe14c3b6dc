"""Case of the day: a quiz posted into configured channels at a local time, once a day.

API (stable):

- `parse_schedule(text) -> tuple[DailyPost, ...]`: HUATUO_CASE_OF_THE_DAY, entries separated by
  commas, semicolons or new lines, each `PLATFORM:CHANNEL HH:MM TIME/ZONE`, for example
  `slack:C0123ABCD 08:00 Europe/London, discord:123456789012345678 09:30 America/New_York`.
  Raises ValueError with a message naming the bad entry.
- `DailyPost.next_after(moment) -> datetime`: the first firing strictly after `moment` (aware),
  in UTC. A time that does not exist that day (skipped by a daylight-saving change) fires at the
  first valid moment after the gap; a time that occurs twice fires at its first occurrence.
- `CaseOfTheDay(entries, posters)`: `posters` maps a platform name to `async post(channel)`
  (the adapters' `post_quiz`). `await scheduler.run()` fires each entry at most once per local
  calendar day, even if it wakes late or twice, until cancelled; a failed post is logged and the
  schedule goes on. It sleeps at most `STEP` seconds at a time and reads the wall clock after
  each: sleeps run on the monotonic clock, which stands still while the host is suspended, so
  a host that slept through the time posts within a minute of waking. `clock` (aware now) and
  `sleep` are injectable for tests.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

PLATFORMS = ("slack", "discord")
_ENTRY = re.compile(r"^(\w+):(\S+)\s+(\d{1,2}):(\d{2})\s+(\S+)$")
EXAMPLE = "slack:C0123ABCD 08:00 Europe/London"
STEP = 60.0  # longest single sleep, in seconds: how late a wake after a suspend can be

Poster = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class DailyPost:
    """Post a quiz into `channel` on `platform` every day at `at` local time in `zone`."""

    platform: str
    channel: str
    at: time
    zone: ZoneInfo

    def __str__(self) -> str:
        return f"{self.platform}:{self.channel} {self.at:%H:%M} {self.zone.key}"

    def on(self, day: date) -> datetime:
        """The firing on a local calendar day, in UTC (after the gap if the time is skipped)."""
        wall = datetime.combine(day, self.at, self.zone)  # fold=0: the first of a repeated time
        utc = wall.astimezone(UTC)
        if utc.astimezone(self.zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
            return utc
        # A skipped time: the first valid moment after the gap is when the offset changes,
        # between reading the wall time with the new offset (earlier) and the old one (later).
        low, high = wall.replace(fold=1).astimezone(UTC), utc
        new_offset = high.astimezone(self.zone).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.zone).utcoffset() == new_offset:
                high = middle
            else:
                low = middle
        return high.replace(microsecond=0)

    def day_of(self, moment: datetime) -> date:
        """The local calendar day of an (aware) moment."""
        return moment.astimezone(self.zone).date()

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment`."""
        day = self.day_of(moment) - timedelta(days=1)
        while (firing := self.on(day)) <= moment:
            day += timedelta(days=1)
        return firing


def parse_entry(text: str) -> DailyPost:
    match = _ENTRY.match(text.strip())
    if not match:
        raise ValueError(f"{text.strip()!r} is not like {EXAMPLE!r} (PLATFORM:CHANNEL HH:MM ZONE)")
    platform, channel, hours, minutes, zone_name = match.groups()
    if platform.lower() not in PLATFORMS:
        raise ValueError(f"{text.strip()!r}: the platform must be slack or discord")
    if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        raise ValueError(f"{text.strip()!r}: {hours}:{minutes} is not a time of day (00:00-23:59)")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{text.strip()!r}: unknown time zone {zone_name!r} (use an IANA name such as "
            "Europe/London, America/New_York, Asia/Shanghai or UTC)"
        ) from None
    return DailyPost(platform.lower(), channel, time(int(hours), int(minutes)), zone)


def parse_schedule(text: str) -> tuple[DailyPost, ...]:
    """Every entry of HUATUO_CASE_OF_THE_DAY (empty: none); ValueError names a bad one."""
    entries = tuple(parse_entry(part) for part in re.split(r"[,;\n]", text) if part.strip())
    seen = set()
    for entry in entries:
        key = (entry.platform, entry.channel, entry.at, entry.zone.key)
        if key in seen:
            raise ValueError(f"{entry} is listed twice")
        seen.add(key)
    return entries


def utc_now() -> datetime:
    return datetime.now(UTC)


class CaseOfTheDay:
    """Fires each entry's poster once per local day at its time, until cancelled."""

    def __init__(
        self,
        entries: Iterable[DailyPost],
        posters: Mapping[str, Poster],
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.entries = tuple(entries)
        self.posters = dict(posters)
        self.clock = clock
        self.sleep = sleep

    async def run(self) -> None:
        """Fire what is due, sleep towards the next firing, repeat; returns if nothing to do."""
        entries = [entry for entry in self.entries if self._poster(entry) is not None]
        if not entries:
            return
        now = self.clock()
        due = {entry: entry.next_after(now) for entry in entries}
        for entry in entries:
            log.info("case of the day: %s, next at %s", entry, due[entry].isoformat())
        while True:
            now = self.clock()
            for entry in entries:
                if due[entry] <= now:
                    await self._fire_once(entry, now)
                    due[entry] = entry.next_after(now)
            wait = (min(due.values()) - self.clock()).total_seconds()
            await self.sleep(min(STEP, max(0.0, wait)))

    def _poster(self, entry: DailyPost) -> Poster | None:
        poster = self.posters.get(entry.platform)
        if poster is None:
            log.warning("case of the day: %s is not served by this process; skipped", entry)
        return poster

    async def _fire_once(self, entry: DailyPost, now: datetime) -> None:
        """Post today's case once its time has come: late the same day is fine, but a day slept
        through is not posted the next day. The caller then moves the entry's due time past now,
        so it cannot fire again that day however often the loop wakes."""
        day = entry.day_of(now)
        if entry.on(day) > now:
            log.warning("case of the day: %s missed the day before %s (woke too late)", entry, day)
            return
        log.info("case of the day: posting %s", entry)
        try:
            await self.posters[entry.platform](entry.channel)
        except Exception:
            log.exception("case of the day: posting %s failed", entry)
