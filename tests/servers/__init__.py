"""Real OpenAI-compatible servers started by tests and benchmarks, and tools to break them."""
