"""Slack: slack-bolt's AsyncApp over Socket Mode or HTTP (design.md §6)."""

from bot.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
