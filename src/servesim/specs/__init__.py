"""Model, GPU, node and cluster specifications, and the built-in catalogs.

The names load on first use (``servesim.core.lazy``): importing one specs module (the
dtypes, a GPU spec) does not load the catalogs and their YAML reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.core.lazy import lazy_exports

if TYPE_CHECKING:
    from servesim.specs.catalog import get_gpu, list_gpus, list_models, resolve_model
    from servesim.specs.dtypes import DType
    from servesim.specs.gpu import GPUSpec, LinkSpec
    from servesim.specs.model import MLASpec, ModelSpec, MoESpec

# name -> the module (under servesim.specs) that defines it
_EXPORTS = {
    "get_gpu": "catalog",
    "list_gpus": "catalog",
    "list_models": "catalog",
    "resolve_model": "catalog",
    "DType": "dtypes",
    "GPUSpec": "gpu",
    "LinkSpec": "gpu",
    "MLASpec": "model",
    "ModelSpec": "model",
    "MoESpec": "model",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DType",
    "GPUSpec",
    "LinkSpec",
    "MLASpec",
    "MoESpec",
    "ModelSpec",
    "get_gpu",
    "list_gpus",
    "list_models",
    "resolve_model",
]
