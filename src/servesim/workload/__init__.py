"""Requests, arrival processes, length distributions, trace readers and workload presets."""
