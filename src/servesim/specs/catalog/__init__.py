"""Built-in catalogs (models, GPUs) and the resolvers every command uses.

The data are YAML files beside this module; each figure carries its source.
"""

from __future__ import annotations

from servesim.specs.catalog.gpus import get_gpu, get_link, gpu_names, list_gpus
from servesim.specs.catalog.models import (
    list_models,
    load_hf_config,
    model_names,
    resolve_model,
)

__all__ = [
    "get_gpu",
    "get_link",
    "gpu_names",
    "list_gpus",
    "list_models",
    "load_hf_config",
    "model_names",
    "resolve_model",
]
