"""Readers for the measured tables in ``../shared/data/profiling`` (read in place, never copied).

Units (see that folder's PROVENANCE.md): vidur compute times in ms, vidur network sizes in fp16
elements and times in ms; apex_plus collective sizes in KB and times in us.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from servesim.core.errors import ConfigError
from servesim.core.paths import shared_data_dir

# Ops of vidur's mlp.csv that are GEMMs, and the memory-bound ones with their op class.
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
ELEMENTWISE_OPS = {
    "emb": "embedding",
    "input_layernorm": "norm",
    "post_attention_layernorm": "norm",
    "attn_rope": "rope",
    "mlp_act": "activation",
    "add": "add",
}


@dataclass(frozen=True, slots=True)
class ComputeSample:
    """One measured op on one GPU shard: the shapes and the median time."""

    gpu: str
    model: str
    op: str
    tp: int
    num_tokens: int
    k: int  # GEMM inner dim (0 for memory-bound ops)
    n: int  # GEMM output dim (0 for memory-bound ops)
    num_bytes: float  # bytes the op moves (fp16 activations and weights)
    time_s: float


@dataclass(frozen=True, slots=True)
class CommSample:
    """One measured collective: group size, message bytes, median time."""

    source: str
    gpu: str
    topology: str
    collective: str
    num_gpus: int
    num_bytes: float
    time_s: float


def require_data_dir(path: str | Path | None) -> Path:
    """The shared data folder, or a ConfigError naming where it was looked for."""
    found = Path(path) if path is not None else shared_data_dir()
    if found is None or not (found / "profiling").is_dir():
        raise ConfigError("data", str(found), "needs the shared data folder holding profiling/")
    return found


def _shapes(row: dict[str, str]) -> dict[str, tuple[int, int, float]]:
    """(K, N, bytes-per-token-or-weight) of each vidur op for one row's shard."""
    h = int(row["n_embd"])
    heads = int(row["n_head"])
    kv = int(row["n_kv_head"])
    ffn = int(row["n_expanded_embd"])
    tp = int(row["num_tensor_parallel_workers"])
    gated = row["use_gated_mlp"] == "True"
    hd = h // heads
    qkv = (heads // tp + 2 * max(1, kv // tp)) * hd
    return {
        "attn_pre_proj": (h, qkv, 0.0),
        "attn_post_proj": (heads * hd // tp, h, 0.0),
        "mlp_up_proj": (h, (2 if gated else 1) * ffn // tp, 0.0),
        "mlp_down_proj": (ffn // tp, h, 0.0),
        # memory-bound ops: bytes per token (fp16)
        "emb": (0, 0, 4.0 * h),
        "input_layernorm": (0, 0, 4.0 * h),
        "post_attention_layernorm": (0, 0, 4.0 * h),
        "attn_rope": (0, 0, 4.0 * (heads // tp + max(1, kv // tp)) * hd),
        "mlp_act": (0, 0, (6.0 if gated else 4.0) * ffn / tp),
        "add": (0, 0, 6.0 * h),
    }


def read_vidur_compute(data_dir: Path, gpu: str) -> list[ComputeSample]:
    """All op samples of ``vidur/compute/<gpu>/*/*/mlp.csv``."""
    samples: list[ComputeSample] = []
    for path in sorted((data_dir / "profiling" / "vidur" / "compute" / gpu).glob("*/*/mlp.csv")):
        model = path.parent.name
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                m = int(row["num_tokens"])
                tp = int(row["num_tensor_parallel_workers"])
                for op, (k, n, per_token) in _shapes(row).items():
                    num_bytes = 2.0 * (k * n + m * k + m * n) if k else per_token * m
                    cell = row.get(f"time_stats.{op}.median") or ""
                    if not cell:
                        continue  # op absent for this architecture (phi-2: no second norm)
                    ms = float(cell)
                    samples.append(ComputeSample(gpu, model, op, tp, m, k, n, num_bytes, ms * 1e-3))
    return samples


_VIDUR_NET = {
    # folder -> (gpu family, {(num_workers, devices_per_node): topology})
    "h100_dgx": ("h100", {(2, 2): "nvswitch", (4, 4): "nvswitch", (8, 8): "nvswitch"}),
    "a100_dgx": ("a100", {(2, 2): "nvswitch", (4, 4): "nvswitch", (8, 8): "nvswitch"}),
    "h100_pairwise_nvlink": ("h100", {(2, 2): "nvlink-pairs", (4, 4): "nvlink-pairs"}),
    "a100_pairwise_nvlink": ("a100", {(2, 2): "nvlink-pairs", (4, 4): "nvlink-pairs"}),
    "a40_pairwise_nvlink": ("a40", {(2, 2): "nvlink-pairs"}),
}
_APEX_GPU = {"H100-SXM-80GB": "h100", "H200-SXM-141GB": "h200", "V100-PCIE-16GB": "v100"}
_APEX_COLLECTIVE = {
    "all_reduce": "all_reduce",
    "all_gather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "alltoall": "all_to_all",
    "sendrecv": "send_recv",
}


def read_vidur_network(data_dir: Path) -> list[CommSample]:
    """vidur all-reduce and send/recv samples (inter-node send/recv is labelled ``ib``)."""
    samples: list[CommSample] = []
    root = data_dir / "profiling" / "vidur" / "network"
    for folder, (gpu, topologies) in _VIDUR_NET.items():
        for path in sorted((root / folder).glob("*.csv")):
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    coll = row["collective"]
                    key = (int(row["num_workers"]), int(row["devices_per_node"]))
                    topo = "ib" if key[1] == 1 else topologies.get(key)
                    if topo is None:
                        continue
                    ms = float(row[f"time_stats.{coll}.median"])
                    nbytes = 2.0 * int(row["size"])  # fp16 elements -> bytes
                    samples.append(
                        CommSample(f"vidur/{folder}", gpu, topo, coll, key[0], nbytes, ms * 1e-3)
                    )
    return samples


def read_apex_comm(data_dir: Path) -> list[CommSample]:
    """apex_plus NCCL samples (8-GPU NVSwitch nodes; the V100 box is PCIe)."""
    samples: list[CommSample] = []
    for path in sorted((data_dir / "profiling" / "apex_plus" / "comm").glob("*/*.csv")):
        gpu = _APEX_GPU.get(path.parent.name)
        coll = _APEX_COLLECTIVE.get(path.stem)
        if gpu is None or coll is None:
            continue
        topo = "pcie" if gpu == "v100" else "nvswitch"
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                # fp16 rows only (we model 16-bit activations); the fp32 rows hold outliers.
                if int(row["num_nodes"]) != 1 or row["dtype"] != "half":
                    continue
                kb = float(row["size(kb)"])
                if kb <= 0:
                    continue
                n = int(row["num_gpus_per_node"])
                us = float(row["time(us)"])
                samples.append(
                    CommSample(
                        f"apex_plus/{path.parent.name}", gpu, topo, coll, n, kb * 1024, us * 1e-6
                    )
                )
    return samples
