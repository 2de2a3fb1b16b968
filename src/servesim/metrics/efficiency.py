"""Hardware efficiency, cost and energy of a run.

- **MFU / MBU** (model FLOPs / memory-bandwidth utilisation): the iterations' FLOPs (bytes)
  divided by what the replica's GPUs could do at peak during the time they were busy:
  ``sum(flops) / sum_r(peak_flops_per_s * num_gpus_r * busy_s_r)``. Busy time is the union
  of the replica's iteration intervals; idle time is excluded (it shows up in cost instead).
- **Cost**: every GPU is paid for the whole makespan (reserved capacity, idle or not):
  ``gpu_hours = sum_r num_gpus_r * makespan_s / 3600``; ``cost = sum_r gpu_hours_r * price_r``.
  Cost per million output tokens divides by the output tokens of completed requests.
- **Energy**: each iteration row carries its GPU energy, computed op by op by the perf model
  (``servesim.perf.energy``): every kernel at the board power its own utilisation implies under
  the measured power model ``servesim.perf.opmodels.power`` (fitted to H200 board power; other
  GPUs by its TDP/idle scaling rule), host time and launch waits at the clocked-up static
  power. Summing per op keeps a concave power curve from overstating mixed iterations. Rows
  with ``repeat > 1`` already hold the run's total. Outside its busy time (the union of its
  iteration intervals) each GPU draws its data-sheet ``idle_w``; pipeline bubbles inside the
  busy time are not charged beyond the ops (a small underestimate for PP). GPUs only (no
  CPU, network, cooling/PUE).
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
    energy_rows = {
        r.replica_id: float(np.sum(iterations["energy_j"][rid == r.replica_id])) for r in replicas
    }
    return efficiency_from_totals(
        float(iterations["flops"].sum()),
        float(iterations["hbm_bytes"].sum()),
        energy_rows,
        replicas,
        busy_s,
        makespan_s,
        num_output_tokens,
    )


def efficiency_from_totals(
    flops: float,
    hbm_bytes: float,
    energy_rows_j: dict[int, float],
    replicas: list[ReplicaInfo],
    busy_s: dict[int, float],
    makespan_s: float,
    num_output_tokens: int,
) -> Efficiency:
    """``compute_efficiency`` from the iteration totals (a long run streams them).

    Args:
        flops: FLOPs of every iteration row.
        hbm_bytes: HBM bytes of every iteration row.
        energy_rows_j: per replica id, the energy of its iteration rows.
        replicas, busy_s, makespan_s, num_output_tokens: as ``compute_efficiency``.
    """
    cap_flops = cap_bytes = energy = 0.0
    num_gpus = sum(r.num_gpus for r in replicas)
    for r in replicas:
        cap_flops += r.peak_flops_per_s * r.num_gpus * busy_s[r.replica_id]
        cap_bytes += r.hbm_bandwidth_bytes_per_s * r.num_gpus * busy_s[r.replica_id]
        idle = r.idle_w * r.num_gpus * max(0.0, makespan_s - busy_s[r.replica_id])
        energy += idle + energy_rows_j[r.replica_id]
    gpu_hours = num_gpus * makespan_s / SECONDS_PER_HOUR
    cost = sum(r.num_gpus * r.price_per_gpu_hour_usd for r in replicas) * makespan_s
    cost /= SECONDS_PER_HOUR
    busy_gpu_s = sum(r.num_gpus * busy_s[r.replica_id] for r in replicas)
    return Efficiency(
        num_gpus=num_gpus,
        busy_fraction=busy_gpu_s / (num_gpus * makespan_s) if num_gpus and makespan_s else 0.0,
        mfu=flops / cap_flops if cap_flops > 0 else None,
        mbu=hbm_bytes / cap_bytes if cap_bytes > 0 else None,
        gpu_hours=gpu_hours,
        cost_usd=cost,
        cost_per_million_output_tokens_usd=(
            cost / num_output_tokens * 1e6 if num_output_tokens else None
        ),
        energy_j=energy,
        mean_power_w=energy / makespan_s if makespan_s > 0 else None,
        energy_per_output_token_j=energy / num_output_tokens if num_output_tokens else None,
    )


def replica_energy_j(
    replica: ReplicaInfo, energy_j: np.ndarray, busy_s: float, makespan_s: float
) -> float:
    """GPU energy of one replica over the makespan (model in the module docstring).

    Args:
        replica: the replica's GPU ratings and count.
        energy_j: its iteration rows' energy (all its GPUs, totals over ``repeat``).
        busy_s: union of its iteration intervals.
        makespan_s: the run's duration.
    """
    idle = replica.idle_w * replica.num_gpus * max(0.0, makespan_s - busy_s)
    return idle + float(np.sum(energy_j))
