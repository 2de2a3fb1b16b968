"""A generic name -> object registry with a ``register`` decorator.

Built-in schedulers, routers, arrival processes etc. register here by lowercase name; a
duplicate registration is a programming error and raises; an unknown lookup lists valid names.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from abc import ABC
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from servesim.core.errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to objects (usually classes) of one kind."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        """``base``: the class a user plug-in loaded by path must derive from (None: any)."""
        self.kind = kind
        self.base = base
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
            return load_from_path(name, self.kind, self.plugin_base())  # type: ignore[return-value]
        try:
            return self._items[name.lower()]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def plugin_base(self) -> type | None:
        """The class a plug-in loaded by path must derive from: ``base`` if given, else the
        most derived class that every registered built-in derives from (schedulers: the
        ``ReplicaScheduler`` ABC), else None (protocols such as routers: any class)."""
        if self.base is not None:
            return self.base
        classes = list(self._items.values())
        if not classes or not all(isinstance(c, type) for c in classes):
            return None
        shared = [
            c
            for c in classes[0].__mro__  # type: ignore[attr-defined]
            if c not in _NOT_A_CONTRACT and all(issubclass(o, c) for o in classes)  # type: ignore[arg-type]
        ]
        return shared[0] if shared else None

    def build(
        self,
        name: str,
        options: dict[str, Any],
        *,
        field: str,
        method: str,
        signature: str,
        context: object = None,
    ) -> Any:
        """An instance of the policy ``name`` (registry name or ``file.py:Class``) built with
        ``options``, bound to ``context`` when it has a ``bind`` method, and checked to have
        ``method``. Wrong options and a missing method are one-line ``ConfigError``s naming
        ``field`` (the config path the user wrote)."""
        cls: Any = self.get(name)
        try:
            policy = cls(**options)
        except TypeError as exc:
            raise ConfigError(f"{field}.options", options, f"{name}: {exc}") from None
        bind = getattr(policy, "bind", None)
        if callable(bind):
            bind(context)
        if not callable(getattr(policy, method, None)):
            raise ConfigError(field, name, f"has no {method}({signature}) method")
        return policy

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def load_from_path(spec: str, kind: str, base: type | None = None) -> object:
    """Load ``ClassName`` from ``path/to/file.py:ClassName`` (a user plug-in).

    Every way the file can fail (missing, a syntax error, an import error, an exception
    while it runs, no such name, a class not derived from ``base``) is one ``ConfigError``
    naming the file, the class and what went wrong.
    """
    path_str, _, attr = spec.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise ConfigError(kind, spec, f"file {path_str} does not exist")
    module_name = (
        f"{PLUGIN_MODULE_PREFIX}{path.stem}_{zlib.crc32(str(path.resolve()).encode()):08x}"
    )
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(kind, spec, "cannot be imported as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise ConfigError(kind, spec, f"{path_str}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ImportError as exc:
        del sys.modules[module_name]
        raise ConfigError(kind, spec, f"{path_str} cannot import: {exc}") from None
    except Exception as exc:  # the user's module-level code raised: report, never crash
        del sys.modules[module_name]
        where = _user_frame(exc.__traceback__, module_name)
        raise ConfigError(
            kind, spec, f"{path_str} raised {type(exc).__name__} while loading{where}: {exc}"
        ) from None
    _PLUGINS[module_name] = spec
    if not hasattr(module, attr):
        raise ConfigError(kind, spec, f"{path_str} defines no {attr!r}")
    obj = getattr(module, attr)
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        what = "class" if isinstance(obj, type) else type(obj).__name__
        raise ConfigError(
            kind,
            spec,
            f"{attr} is a {what} not derived from {base.__module__}.{base.__qualname__}",
        )
    return obj


# Classes every class derives from: sharing them is no contract for a plug-in.
_NOT_A_CONTRACT = (object, ABC, Generic)

# Loaded plug-in modules: module name -> the ``file.py:Class`` spec that loaded it.
PLUGIN_MODULE_PREFIX = "servesim_user_"
_PLUGINS: dict[str, str] = {}


def _user_frame(tb: TracebackType | None, module_name: str | None = None) -> str:
    """`` (line N in func)`` of the innermost traceback frame in a plug-in module ('' if none)."""
    found = ""
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__", "")
        if (module_name is None and name in _PLUGINS) or name == module_name:
            code = tb.tb_frame.f_code
            found = f" (line {tb.tb_lineno} in {getattr(code, 'co_qualname', code.co_name)})"
        tb = tb.tb_next
    return found


def plugin_failure(exc: BaseException) -> str | None:
    """One line for an exception raised inside a user plug-in's code, else None.

    The engine checks what a policy returns; this names a policy that raised instead, so the
    CLI can report it in one line (file, class, method, line) rather than a traceback.
    """
    tb = exc.__traceback__
    spec = None
    while tb is not None:
        spec = _PLUGINS.get(tb.tb_frame.f_globals.get("__name__", ""), spec)
        tb = tb.tb_next
    if spec is None:
        return None
    return f"plug-in {spec} raised {type(exc).__name__}{_user_frame(exc.__traceback__)}: {exc}"
