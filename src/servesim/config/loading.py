"""Reading config files and editing raw config mappings (before pydantic validates them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is a ``ConfigError``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("config", str(path), "file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "config", str(path), f"not a YAML text file (byte {exc.start} is not UTF-8)"
        ) from None
    except OSError as exc:
        raise ConfigError("config", str(path), f"cannot be read: {exc.strerror}") from None
    if "\x00" in text:
        raise ConfigError("config", str(path), "not a YAML text file (it holds NUL bytes)")
    import yaml  # a run from flags reads no YAML (catalogs: servesim/specs/catalog/derived.py)

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("config", str(path), f"not valid YAML{where}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a date like 2024-13-45
        raise ConfigError("config", str(path), f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("config", str(path), "the top level must be a mapping of keys")
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of nested mappings (as dicts); other values are shared."""
    return {k: deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def rebase_model_path(raw: dict[str, Any], base_dir: Path) -> None:
    """A relative model path in a YAML file is relative to that file, not to the cwd."""
    model = raw.get("model")
    if isinstance(model, str) and not Path(model).is_absolute():
        candidate = base_dir / model
        if candidate.exists():
            raw["model"] = str(candidate)
    workload = raw.get("workload")
    if isinstance(workload, dict) and isinstance(workload.get("trace"), str):
        trace = Path(workload["trace"])
        if not trace.is_absolute() and (base_dir / trace).exists():
            workload["trace"] = str(base_dir / trace)
