"""A generic name -> object registry with a ``register`` decorator.

Built-in schedulers, routers, arrival processes etc. register here by lowercase name; a
duplicate registration is a programming error and raises; an unknown lookup lists valid names.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from servesim.core.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to objects (usually classes) of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; refuses duplicates."""
        key = name.lower()

        def decorate(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """Return the object named ``name``, or raise with the list of valid names.

        ``name`` may also be ``path/to/file.py:ClassName`` to load a user's own class.
        """
        if ":" in name and name.split(":", 1)[0].endswith(".py"):
            return load_from_path(name, self.kind)  # type: ignore[return-value]
        try:
            return self._items[name.lower()]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_from_path(spec: str, kind: str) -> object:
    """Load ``ClassName`` from ``path/to/file.py:ClassName`` (a user plug-in)."""
    path_str, _, attr = spec.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise ConfigError(kind, spec, f"file {path_str} does not exist")
    module_name = f"servesim_user_{path.stem}_{zlib.crc32(str(path.resolve()).encode()):08x}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(kind, spec, "cannot be imported as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    if not hasattr(module, attr):
        raise ConfigError(kind, spec, f"{path_str} defines no {attr!r}")
    return getattr(module, attr)
