"""servesim.report package."""
