"""Discord: a discord.py client for mentions, DMs, follow-ups in threads and `/ask`."""

from bot.discord.adapter import DiscordAdapter, gateway_intents

__all__ = ["DiscordAdapter", "gateway_intents"]
