"""servesim: simulate LLM serving deployments and find the best one before paying for GPUs."""

__version__ = "0.1.0"
