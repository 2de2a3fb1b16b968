"""Kebab-case in config files: ``max-num-seqs:`` reads as ``max_num_seqs:``.

The CLI spells flags and registry names in kebab-case (``--max-num-seqs``,
``least-outstanding-requests``), so a YAML file may too. ``snake_case_keys`` walks a raw
mapping alongside the pydantic model that will validate it and renames a kebab-case key only
where its snake_case form is a field of that model; every other key is left as written, so an
unknown key still fails validation under its own name (``extra="forbid"``), and free-form
mappings (SLO class names, plug-in ``options``, adapter ranks) keep their keys. Values change
in two places only: registry names (``kind``, ``router``; plug-in paths excepted) and values
of a ``Literal`` field whose snake_case form is one of its choices. Model names, GPU names and
engine profiles (``llama-3.1-8b``, ``vllm-v1``) are never rewritten.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from servesim.core.errors import ConfigError

# fields whose value is a registry name (kebab-case on the CLI, snake_case in the registries)
_REGISTRY_FIELDS = frozenset({"kind", "router"})
_UNIONS = (Union, types.UnionType)


def snake_case_keys(data: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with kebab-case keys (and registry names) of ``model``'s fields in snake_case.

    Raises:
        ConfigError: a key given both ways (``max-num-seqs`` and ``max_num_seqs``).
    """
    return _mapping(data, model, "")


def _snake(name: str) -> str:
    return name.replace("-", "_")


def _is_plugin_path(name: str) -> bool:
    return ":" in name or name.endswith(".py")


def _mapping(data: Mapping[str, Any], model: type[BaseModel], where: str) -> dict[str, Any]:
    fields = model.model_fields
    out: dict[str, Any] = {}
    spelled: dict[str, Any] = {}  # field name -> the key the user wrote
    for key, value in data.items():
        name = key
        if isinstance(key, str) and key not in fields and _snake(key) in fields:
            name = _snake(key)
        path = f"{where}{name}"
        if name in out:
            both = f"{spelled[name]!r} and {key!r}"
            raise ConfigError(path, str(value), f"given twice (as {both}): use one")
        spelled[name] = key
        field = fields.get(name)
        if field is None:  # unknown: pydantic refuses it under the name the user wrote
            out[name] = value
            continue
        if name in _REGISTRY_FIELDS and isinstance(value, str) and not _is_plugin_path(value):
            value = _snake(value)
        out[name] = _value(value, field.annotation, f"{path}.")
    return out


def _value(value: Any, annotation: Any, where: str) -> Any:
    """``value`` normalised for the type ``annotation`` (models, unions, containers, literals)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _value(value, get_args(annotation)[0], where)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _mapping(value, annotation, where) if isinstance(value, Mapping) else value
    if origin in _UNIONS:
        return _union_value(value, get_args(annotation), where)
    if origin is Literal:
        return _literal_value(value, get_args(annotation))
    args = get_args(annotation)
    if origin in (list, tuple) and isinstance(value, list) and args:
        item = args[0]
        return [_value(v, item, where) for v in value]
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(args) == 2:
        return {k: _value(v, args[1], f"{where}{k}.") for k, v in value.items()}  # keys kept
    return value


def _union_value(value: Any, members: tuple[Any, ...], where: str) -> Any:
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if isinstance(value, Mapping) and models:
        return _mapping(value, _member_for(value, models), where)
    for member in members:
        if get_origin(member) is Literal:
            return _literal_value(value, get_args(member))
    return value


def _member_for(value: Mapping[str, Any], models: list[type[BaseModel]]) -> type[BaseModel]:
    """The union member a mapping's ``kind`` names (the first when it names none)."""
    kind = value.get("kind")
    if isinstance(kind, str):
        for model in models:
            field = model.model_fields.get("kind")
            if field is not None and _snake(kind) in (*get_args(field.annotation), field.default):
                return model
    return models[0]


def _literal_value(value: Any, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, str) and value not in choices and _snake(value) in choices:
        return _snake(value)
    return value
