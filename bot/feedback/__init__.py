"""Feedback: delivered answers and the 👍 / 👎 reactions on them, in SQLite; `huatuo-bot stats`."""
