"""servesim.metrics package."""
