"""`huatuo-bot eval`: score the configured model on multiple-choice questions (issue 7)."""
