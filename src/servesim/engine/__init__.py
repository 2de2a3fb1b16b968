"""servesim.engine package."""
