"""The shared test harness: the adapters running on the fake platforms, and ways to drive them."""
