"""servesim.cluster package."""
