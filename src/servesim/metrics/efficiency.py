"""Hardware efficiency, cost and energy of a run.

- **MFU / MBU** (model FLOPs / memory-bandwidth utilisation): the iterations' FLOPs (bytes)
  divided by what the replica's GPUs could do at peak during the time they were busy:
  ``sum(flops) / sum_r(peak_flops_per_s * num_gpus_r * busy_s_r)``. Busy time is the union
  of the replica's iteration intervals; idle time is excluded (it shows up in cost instead).
- **Cost**: every GPU is paid for the whole makespan (reserved capacity, idle or not):
  ``gpu_hours = sum_r num_gpus_r * makespan_s / 3600``; ``cost = sum_r gpu_hours_r * price_r``.
  Cost per million output tokens divides by the output tokens of completed requests.
- **Energy**: a utilisation-based GPU power model. Each GPU draws ``idle_w`` all the time and
  ``(tdp_w - idle_w) * u`` more while an iteration runs, where ``u`` is the iteration's
  roofline activity ``min(1, max(MFU_i, MBU_i))``: the busier of the compute units and the
  memory system. This follows the power characterisations of LLM inference in POLCA (Patel et
  al., ASPLOS'24) and Splitwise (Patel et al., ISCA'24): power rises from a substantial idle
  floor towards TDP with load, compute-bound prefill sits near TDP, and memory-bound decode
  lower. Splitwise reports decode drawing noticeably less than its memory activity alone
  would suggest, so for decode-heavy runs this model is an upper estimate; it counts GPUs
  only (no CPU, network, cooling/PUE). Per iteration the extra energy is
  ``(tdp - idle) * min(num_gpus * duration, max(flops / peak, bytes / bandwidth))``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from servesim.engine.records import ReplicaInfo

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Utilisation, cost and energy of a run.

    Attributes:
        num_gpus: GPUs over all replicas.
        busy_fraction: GPU-weighted fraction of the makespan the replicas were running
            iterations.
        mfu: model FLOPs utilisation over busy time (None when nothing ran).
        mbu: memory-bandwidth utilisation over busy time (None when nothing ran).
        gpu_hours: GPUs x makespan in hours.
        cost_usd: gpu_hours x price per GPU-hour.
        cost_per_million_output_tokens_usd: cost / completed output tokens x 1e6.
        energy_j: GPU energy over the makespan (power model in the module docstring).
        mean_power_w: energy_j / makespan.
        energy_per_output_token_j: energy_j / completed output tokens.
    """

    num_gpus: int
    busy_fraction: float
    mfu: float | None
    mbu: float | None
    gpu_hours: float
    cost_usd: float
    cost_per_million_output_tokens_usd: float | None
    energy_j: float
    mean_power_w: float | None
    energy_per_output_token_j: float | None

    def to_dict(self) -> dict[str, object]:
        """JSON-able mapping."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def compute_efficiency(
    iterations: dict[str, np.ndarray],
    replicas: list[ReplicaInfo],
    busy_s: dict[int, float],
    makespan_s: float,
    num_output_tokens: int,
) -> Efficiency:
    """Utilisation, cost and energy (definitions in the module docstring).

    Args:
        iterations: the iteration columns (``SimulationRecords.iterations.view()``).
        replicas: static facts per replica.
        busy_s: union of iteration intervals per replica id.
        makespan_s: the run's duration.
        num_output_tokens: output tokens of completed requests.
    """
    rid = iterations["replica_id"]
    # A row with repeat > 1 is a run of decode iterations: its duration, FLOPs and bytes are
    # already the run's totals (as the engine writes them).
    flops = iterations["flops"]
    nbytes = iterations["hbm_bytes"]
    gpu_s = np.zeros(rid.shape, dtype=np.float64)  # GPU-seconds of each row
    peak_s = np.zeros(rid.shape, dtype=np.float64)  # GPU-seconds of peak-rate work
    cap_flops = cap_bytes = energy = 0.0
    num_gpus = sum(r.num_gpus for r in replicas)
    for r in replicas:
        mask = rid == r.replica_id
        gpu_s[mask] = r.num_gpus * iterations["duration_s"][mask]
        peak_s[mask] = np.maximum(
            flops[mask] / r.peak_flops_per_s, nbytes[mask] / r.hbm_bandwidth_bytes_per_s
        )
        cap_flops += r.peak_flops_per_s * r.num_gpus * busy_s[r.replica_id]
        cap_bytes += r.hbm_bandwidth_bytes_per_s * r.num_gpus * busy_s[r.replica_id]
        dynamic_s = float(np.minimum(gpu_s[mask], peak_s[mask]).sum())
        # Overlapping micro-batches cannot push a GPU past TDP: cap at the busy GPU-seconds.
        dynamic_s = min(dynamic_s, r.num_gpus * busy_s[r.replica_id])
        energy += r.idle_w * r.num_gpus * makespan_s + (r.tdp_w - r.idle_w) * dynamic_s
    gpu_hours = num_gpus * makespan_s / SECONDS_PER_HOUR
    cost = sum(r.num_gpus * r.price_per_gpu_hour_usd for r in replicas) * makespan_s
    cost /= SECONDS_PER_HOUR
    busy_gpu_s = sum(r.num_gpus * busy_s[r.replica_id] for r in replicas)
    return Efficiency(
        num_gpus=num_gpus,
        busy_fraction=busy_gpu_s / (num_gpus * makespan_s) if num_gpus and makespan_s else 0.0,
        mfu=float(flops.sum()) / cap_flops if cap_flops > 0 else None,
        mbu=float(nbytes.sum()) / cap_bytes if cap_bytes > 0 else None,
        gpu_hours=gpu_hours,
        cost_usd=cost,
        cost_per_million_output_tokens_usd=(
            cost / num_output_tokens * 1e6 if num_output_tokens else None
        ),
        energy_j=energy,
        mean_power_w=energy / makespan_s if makespan_s > 0 else None,
        energy_per_output_token_j=energy / num_output_tokens if num_output_tokens else None,
    )
