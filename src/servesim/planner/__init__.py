"""servesim.planner package."""
