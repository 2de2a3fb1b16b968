"""The decode KV stream of ``attention_fit``: HBM, L2 and the CTAs that read it, pure Python.

Two FlashAttention 2 facts (Ampere / Ada, a bf16 KV cache), both from its ``mha_varlen_fwd``
(flash-attention csrc/flash_attn/flash_api.cpp), which vLLM calls for decode:

* GQA packing (``seqlenq_ngroups_swapped``) needs one query token, more query than KV heads
  and no sliding window. Without it (a window, ``attention_fit.window_unpacks_gqa``) every
  query head reads its KV head on its own: the group's other heads re-read it from L2, since
  FA2's grid (``run_flash_splitkv_fwd``, flash_fwd_launch_template.h) runs a sequence's heads
  side by side (``blockIdx.z`` = batch x heads + head when split) or every batch of one head
  before the next: between two reads of a KV head at most one head's pass over the batch
  goes through L2, so they hit while that fits (within one kernel, warm or not).
* Split-KV is set up only on that packed path ("Only apply split-k for decoding": with it,
  ``set_params_splitkv``; without, one split): MHA and windowed decode run one CTA per
  (sequence, query head), each streaming its whole context alone, so few CTAs cannot fill
  the GPU. Evidence: A100 MHA decode at 16k-128k tokens per sequence streams 174 / 338 / 639
  / 1113 GB/s at 1 / 2 / 4 / 8 sequences x 8 heads, 22 GB/s per CTA; L40S 25.5 GB/s per CTA
  at 4 and 8 CTAs (vLLM tables), while GQA rows of the same sizes split and stream at 0.7-0.85
  of HBM (25.5 GB/s read off the table; fitted alone: A100 22.0, L40S 26.5). The rate per
  CTA (``cta_bw``) is latency-bound, about the same on both GPUs though they are 1.79x apart
  in clock, so a target takes its donor's rate unchanged, in bytes/s (``transfer.py``).
"""

from __future__ import annotations

#: Steepness of the L2 hit fraction around the capacity: cyclic streaming through an LRU cache
#: misses almost entirely once the working set exceeds it (H100: b=8, 33 MB -> 18 us, 67 MB ->
#: 40 us), so the switch is sharp.
L2_STEEPNESS = 8.0


def l2_hit(working_bytes: float, capacity_bytes: float) -> float:
    """Fraction of a cyclically re-read working set served from L2 (sharp around capacity)."""
    return 1.0 / (1.0 + (working_bytes / capacity_bytes) ** L2_STEEPNESS)


def kv_stream_s(
    kv_read: float,
    unique: float,
    head_bytes: float,
    rates: tuple[float, float],
    capacity_bytes: float,
    l2_warm: bool,
) -> float:
    """Seconds to read ``kv_read`` KV bytes, ``unique`` of them distinct.

    Args:
        kv_read: bytes the kernel reads (every query head's own reads when unpacked).
        unique: distinct bytes: from HBM, or from L2 when back-to-back replays left them
            there (``l2_warm``, as the tables were measured).
        head_bytes: one KV head over the batch: the re-reads (``kv_read - unique``) hit L2
            while this fits (module docstring).
        rates: (HBM-side stream rate, L2 read rate) in bytes/s.
        capacity_bytes: the L2 a resident KV can use.
        l2_warm: whether an earlier replay left the distinct bytes in L2.
    """
    hbm_rate, l2_rate = rates
    hit = l2_hit(unique, capacity_bytes) if l2_warm else 0.0
    time_s = hit * unique / l2_rate + (1.0 - hit) * (unique / hbm_rate)
    rereads = kv_read - unique
    if rereads > 0.0:
        near = l2_hit(head_bytes, capacity_bytes)
        time_s += rereads * (near / l2_rate + (1.0 - near) / hbm_rate)
    return time_s


def unsplit_ctas(num_seqs: int, num_q_heads: int, num_kv_heads: int, window: int | None) -> int:
    """CTAs of FA2's decode when it runs without split-KV (MHA or a sliding window), else 0."""
    if window or num_q_heads <= num_kv_heads:
        return num_seqs * num_q_heads
    return 0
