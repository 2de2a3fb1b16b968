"""Which MoE layer shapes vLLM's Triton fused MoE runs with a tuned config file, per GPU.

vLLM's ``fused_moe.get_moe_configs(E, N, dtype)`` opens
``vllm/model_executor/layers/fused_moe/configs/E=<E>,N=<N>,device_name=<device>[,dtype=..].json``
(E: the rank's local experts, ``w2.shape[0]``; N: the per-rank expert width, ``w2.shape[2]``;
bf16 files carry no dtype). Without that file ``get_default_config`` runs fixed tiles
(``moe_tiles.default_tiles``: bf16 64 x 64, or 16 x 32 when the tokens do not exceed the local
experts), whose operand traffic bounds the grouped GEMMs (``moe_tiles.tile_traffic_bytes``).
Evidence that this is what the tables see: the H100 vLLM bf16 fit carried to A100 (vLLM 0.14
table) prices the A100 shapes with a tuned file at 9.8% / +6.2% (<= 256 tokens) and 8.5% / -0.4%
(> 256), those without at 25.1% / -24.9% and 30.7% / -27.5% (MAPE / median signed).

The sets below are facts looked up, file by file, in the public vLLM repository index
(``vllm-project/vllm``, the path above) for every bf16 (E, N) of the aiconfigurator tables
(``fitting.moe_collectors.load_rows``: E = experts / EP, N = inter / moe_tp). A path found only
in a fork is not counted (H100: E=8 N=14336, E=16 N=8192, E=128 N=96 / 1024 / 2048 / 8192 are
in one fork only). Shapes not in a set had no file, or were not looked up (the index holds a
sample; left unchecked: A100 E=128 N=58 / 116 / 232 / 464 / 928, E=160 N<=320, E=256 N=64 / 512
/ 2688, E=384 N<=512, E=512 N<=1344; H100 E=2 / 4 / 32 (but N=768), E=5..80 N=2560, E=128 N<=116,
E=160 N!=640 / 2560, E=256 N=16 / 32 / 5120, E=512 N=160 / 320 / 640 / 1280 / 5120): all priced
as untuned. GPUs without a set (H200, L40S, others) are unknown: priced as tuned, the model's
behaviour before this table. vLLM runs those tiles only before its new defaults
(``VLLM_NEW_DEFAULTS``); SGLang's Triton kernel runs them everywhere here.
"""

from __future__ import annotations

#: (catalog GPU, weight format) -> (local experts, per-rank width) with a tuned vLLM config file.
#: A100: ``device_name=NVIDIA_A100-SXM4-80GB``; H100: ``device_name=NVIDIA_H100_80GB_HBM3``.
VLLM_TUNED: dict[tuple[str, str], frozenset[tuple[int, int]]] = {
    ("a100-80gb", "bf16"): frozenset(
        {(1, 14336), (8, 1792), (8, 2048), (8, 3584), (8, 4096), (8, 7168), (16, 2688), (128, 192)}
    ),
    ("h100-sxm", "bf16"): frozenset(
        {
            (1, 3072),
            (8, 1792),
            (8, 2048),
            (8, 3584),
            (8, 4096),
            (8, 7168),
            (16, 768),
            (16, 1024),
            (16, 2048),
            (16, 4096),
            (32, 768),
            (64, 768),
            (64, 1536),
            (128, 192),
            (128, 384),
            (128, 512),
            (128, 704),
            (128, 768),
            (128, 928),
            (128, 1856),
            (256, 128),
            (256, 512),
            (512, 128),
            (512, 256),
            (512, 512),
        }
    ),
}
#: (catalog GPU, weight format) -> (local experts, per-rank width) with a tuned SGLang config file.
#: SGLang 0.5's ``fused_moe_triton_config.get_moe_configs`` opens
#: ``sglang/srt/layers/moe/fused_moe_triton/configs/triton_<installed Triton>/E=..,N=..,
#: device_name=..json`` and, where that is missing, the same name in every other supported
#: ``triton_*`` folder (3.4.0, 3.3.1, 3.2.0, 3.1.0): a file in any of them is used. The configs
#: folder's top level (files of releases before the per-version folders) is not read. Facts found
#: in the repository index (``sgl-project/sglang`` and the whole-tree snapshot ``xbfs/sglang``) for
#: the bf16 (E, N) of the SGLang tables: H100 triton_3_1_0 E=1 N=3072, E=16 N=1024 / 2048;
#: triton_3_2_0 E=128 N=384 / 768; triton_3_3_1 E=8 N=7168; triton_3_4_0 E=512 N=64 / 128. H200
#: triton_3_1_0 E=8 N=1792 / 2048 / 3584 / 4096 / 7168 / 14336, E=16 N=1024; triton_3_4_0 E=512
#: N=64 / 128 / 256. The index drops files whose content duplicates another's (SGLang's
#: triton_3_1_0 began as a copy of vLLM's folder: its H100 E=8 Mixtral files, which vLLM ships,
#: are in no SGLang path of the index), so a shape not listed may still be tuned: priced untuned.
SGLANG_TUNED: dict[tuple[str, str], frozenset[tuple[int, int]]] = {
    ("h100-sxm", "bf16"): frozenset(
        {
            (1, 3072),
            (8, 7168),
            (16, 1024),
            (16, 2048),
            (128, 384),
            (128, 768),
            (512, 64),
            (512, 128),
        },
    ),
    ("h200-sxm", "bf16"): frozenset(
        {
            (8, 1792),
            (8, 2048),
            (8, 3584),
            (8, 4096),
            (8, 7168),
            (8, 14336),
            (16, 1024),
            (512, 64),
            (512, 128),
            (512, 256),
        }
    ),
}
#: Kernels (the tables' ``kernel_source``) that look their tiles up in vLLM's config folder.
VLLM_TRITON_KERNELS = frozenset({"vllm_fused_moe", "vllm_unquantizedfusedmoe_triton_tritonexperts"})
#: SGLang's Triton fused MoE: the default tiles except where ``SGLANG_TUNED`` lists a file.
SGLANG_TRITON = "sglang_fused_moe_triton"
#: First vLLM release whose ``get_default_config`` is the one of vLLM PR #34846 ("Improve default
#: triton fused moe configs", merged 2026-02-18): batch-aware BLOCK_SIZE_M 16 -> 128, BLOCK_SIZE_K
#: 64 / 128 instead of 32, num_warps / num_stages set, derived from the tuned files, so a shape
#: without a file runs close to a tuned one. Evidence: H100 vLLM 0.24 bf16, own fit without a tile
#: term, shapes without a file -0.5 / +1.1% median (<= / > 256 tokens) against +2.4 / +5.2% with
#: one; A100 vLLM 0.14 (before the PR) shapes without a file run 1.3-1.5x slower than its tuned
#: ones. The tables hold 0.14 (before) and 0.22 / 0.24 (after): any release from 0.15 to 0.22
#: splits them alike.
VLLM_NEW_DEFAULTS = (0, 16)


def vllm_tuned(gpu_name: str, label: str, local_experts: float, width: float) -> bool | None:
    """Whether vLLM ships a tuned config for this shape on ``gpu_name``; None: GPU not known."""
    tuned = VLLM_TUNED.get((gpu_name, label))
    if tuned is None:
        return None
    return (round(local_experts), round(width)) in tuned


def old_vllm_defaults(version: str | None) -> bool:
    """Whether vLLM ``version`` runs the defaults before PR #34846 (None: the runtime's stack,
    vllm-0.24, after it)."""
    if version is None:
        return False
    parts = tuple(int(p) for p in version.split(".")[:2])
    return parts < VLLM_NEW_DEFAULTS


def runs_default_tiles(
    kernel: str,
    gpu_name: str,
    label: str,
    local_experts: float,
    width: float,
    version: str | None = None,
) -> bool:
    """Whether ``kernel`` runs the old ``get_default_config`` tiles (``moe_tiles.default_tiles``)
    for this shape: SGLang's Triton kernel (its default is vLLM's old one) unless ``SGLANG_TUNED``
    lists a file for the (GPU, format, shape) (GPU or format without a list: default tiles);
    vLLM's before ``VLLM_NEW_DEFAULTS`` where no tuned file exists (unknown GPU: no); any other
    kernel, and vLLM at or after that release, not."""
    if kernel == SGLANG_TRITON:
        tuned = SGLANG_TUNED.get((gpu_name, label), frozenset())
        return (round(local_experts), round(width)) not in tuned
    if kernel in VLLM_TRITON_KERNELS and old_vllm_defaults(version):
        return vllm_tuned(gpu_name, label, local_experts, width) is False
    return False
