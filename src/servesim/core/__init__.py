"""Domain-free foundations: errors, registries, random streams and the event loop."""

from servesim.core.errors import (
    ConfigError,
    InfeasibleError,
    ServesimError,
    TraceError,
    UnknownNameError,
)
from servesim.core.registry import Registry
from servesim.core.rng import RandomStreams

__all__ = [
    "ConfigError",
    "InfeasibleError",
    "RandomStreams",
    "Registry",
    "ServesimError",
    "TraceError",
    "UnknownNameError",
]
