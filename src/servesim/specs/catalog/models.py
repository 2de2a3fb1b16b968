"""The built-in model catalog and the one resolver every command uses.

Each entry in ``catalog/models/*.yaml`` stores the fields of the model's Hugging Face
``config.json`` verbatim (with the repo it came from), and is built by the same parser as a
user's own file, so both paths share one code path.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path

from servesim.core.errors import ConfigError, UnknownNameError
from servesim.specs.catalog import derived
from servesim.specs.hf_config import with_hf_quant_config
from servesim.specs.model import ModelSpec

MODELS_DIR = Path(__file__).resolve().parent / "models"
#: Ways users write a Hugging Face repo: ``https://huggingface.co/org/name``, ``hf.co/...``.
_HF_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/")


@cache
def _entry(path: Path) -> tuple[str, str, tuple[str, ...], ModelSpec]:
    """(name, source repo, aliases, spec) of one catalog file, parsed once."""
    entry = derived.load(path)  # the YAML's data (catalog.json when current)
    name = str(entry["name"]).lower()
    source = str(entry["source"])
    spec = ModelSpec.from_hf_config(entry["config"], name=name, source=source)
    return name, source, tuple(str(a) for a in entry.get("aliases", [])), spec


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, ModelSpec], dict[str, str]]:
    """(name -> spec, lowercase alias or repo id -> name), loaded once."""
    specs: dict[str, ModelSpec] = {}
    aliases: dict[str, str] = {}
    for path in sorted(MODELS_DIR.glob("*.yaml")):
        name, source, names, spec = _entry(path)
        specs[name] = spec
        for alias in (source, *names):
            key = alias.lower()
            if key in aliases or (key in specs and key != name):
                raise ValueError(f"{path.name}: alias {alias!r} is already taken")
            aliases[key] = name
    return specs, aliases


def _by_file_name(key: str) -> ModelSpec | None:
    """The entry stored as ``models/<key>.yaml`` when it is named ``key``: a catalog name found
    without parsing the other files (each costs ~0.25 ms; ``simulate`` needs one). The same
    object as the full catalog's (``_entry`` is cached)."""
    if not key or "/" in key or key.startswith("."):
        return None
    path = MODELS_DIR / f"{key}.yaml"
    if not path.is_file():
        return None
    name, _, _, spec = _entry(path)
    return spec if name == key else None


def list_models() -> list[ModelSpec]:
    """All built-in models, sorted by name."""
    specs, _ = _catalog()
    return [specs[name] for name in sorted(specs)]


def model_names() -> list[str]:
    """Names of the built-in models, sorted."""
    return sorted(_catalog()[0])


def load_hf_config(path: str | Path, name: str | None = None) -> ModelSpec:
    """Build a spec from a ``config.json`` file, or a directory holding one.

    Args:
        path: the file or directory.
        name: label for the model; defaults to the config's ``_name_or_path`` or the folder name.

    Raises:
        ConfigError: the file is missing, is not JSON, or lacks needed fields.
    """
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError("model", str(path), "no config.json at this path")
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("model", str(file), f"is not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ConfigError("model", str(file), "must hold a JSON object")
    label = name or str(cfg.get("_name_or_path") or "") or file.parent.name or file.stem
    quant_file = file.parent / "hf_quant_config.json"  # ModelOpt's export (NVFP4, FP8)
    if quant_file.is_file():
        try:
            cfg = dict(with_hf_quant_config(cfg, json.loads(quant_file.read_text("utf-8"))))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("model", str(quant_file), f"is not valid JSON ({exc})") from None
    return ModelSpec.from_hf_config(cfg, name=label, source=str(file))


def resolve_model(name_or_path: str | Path | ModelSpec) -> ModelSpec:
    """Find a model by catalog name, HF repo id or alias (case-insensitive), or by path.

    A path may name a ``config.json`` or a directory holding one. Catalog names and aliases
    are tried first, then the path. A ``ModelSpec`` is returned unchanged.

    Raises:
        UnknownNameError: not in the catalog and not an existing path (with did-you-mean).
        ConfigError: the path exists but its config cannot be read.
    """
    if isinstance(name_or_path, ModelSpec):
        return name_or_path
    if isinstance(name_or_path, Path):
        return load_hf_config(name_or_path)
    key = hf_repo_key(name_or_path)
    spec = _by_file_name(key)
    if spec is not None:
        return spec
    specs, aliases = _catalog()
    if key in specs:
        return specs[key]
    if key in aliases:
        return specs[aliases[key]]
    path = Path(name_or_path).expanduser()
    if path.is_file() or (path.is_dir() and (path / "config.json").is_file()):
        return load_hf_config(path)
    if name_or_path.endswith(".json") or path.is_dir():
        raise ConfigError("model", name_or_path, "no config.json at this path")
    if "/" in key:  # an HF repo id not in the catalog: suggest among the repo ids too
        repos = [a for a in aliases if "/" in a]
        raise UnknownNameError(
            "model (catalog name, HF repo id or config.json path)", name_or_path, repos
        )
    raise UnknownNameError("model", name_or_path, specs)


def hf_repo_key(name: str) -> str:
    """The lookup key of a name: lowercase, without an ``https://huggingface.co/`` prefix or a
    trailing ``/tree/<revision>`` or slash (servesim runs offline: ids only name catalog
    entries)."""
    key = name.strip().lower()
    for prefix in _HF_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    key = key.split("/tree/", 1)[0]
    return key.rstrip("/")
