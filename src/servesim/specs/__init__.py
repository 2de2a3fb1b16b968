"""Model, GPU, node and cluster specifications, and the built-in catalogs."""

from servesim.specs.catalog import get_gpu, list_gpus, list_models, resolve_model
from servesim.specs.dtypes import DType
from servesim.specs.gpu import GPUSpec, LinkSpec
from servesim.specs.model import MLASpec, ModelSpec, MoESpec

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
