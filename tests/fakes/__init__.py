"""In-process fakes of external services (Slack, ...) for end-to-end tests."""
