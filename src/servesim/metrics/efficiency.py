"""Hardware efficiency, cost and energy of a run.

- **MFU / MBU** (model FLOPs / memory-bandwidth utilisation): the iterations' FLOPs (bytes)
  divided by what the replica's GPUs could do at peak during the time they were busy:
  ``sum(flops) / sum_r(peak_flops_per_s * num_gpus_r * busy_s_r)``. Busy time is the union
  of the replica's iteration intervals; idle time is excluded (it shows up in cost instead).
- **Cost**: every GPU is paid for the whole makespan (reserved capacity, idle or not):
  ``gpu_hours = sum_r num_gpus_r * makespan_s / 3600``; ``cost = sum_r gpu_hours_r * price_r``.
  Cost per million output tokens divides by the output tokens of completed requests.
- **Energy**: the integral of each GPU's board power over the makespan, with power from the
  measured utilisation model ``servesim.perf.opmodels.power`` (fitted to H200 board power at
  achieved compute / memory utilisation; other GPUs by its TDP/idle scaling rule). Per
  iteration row and GPU, ``u_c = flops / (num_gpus * duration * peak)`` and
  ``u_m = bytes / (num_gpus * duration * bandwidth)``; the row draws
  ``gpu_power_w(u_c, u_m)`` (pooled ``any`` curve, long-kernel limit) for ``num_gpus *
  duration`` GPU-seconds. A row with ``repeat > 1`` is a run of decode iterations whose
  duration, FLOPs and bytes are already the run's totals, so the same formula holds.
  Pipeline-parallel micro-batches overlap in time: when a replica's row GPU-seconds ``S``
  exceed its busy GPU-seconds ``B`` (the union of its intervals), every row is compressed
  into ``B`` by ``rho = S / B``: it lasts ``1/rho`` as long at ``rho`` times the utilisation,
  so the work is conserved and the power cap still bites. Outside iterations each GPU draws
  its data-sheet ``idle_w``. GPUs only (no CPU, network, cooling/PUE).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from servesim.engine.records import ReplicaInfo
from servesim.perf.opmodels.power import PowerFit, default_power_fit, power_w_for_ratings

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
    flops = iterations["flops"]
    nbytes = iterations["hbm_bytes"]
    cap_flops = cap_bytes = energy = 0.0
    num_gpus = sum(r.num_gpus for r in replicas)
    for r in replicas:
        mask = rid == r.replica_id
        cap_flops += r.peak_flops_per_s * r.num_gpus * busy_s[r.replica_id]
        cap_bytes += r.hbm_bandwidth_bytes_per_s * r.num_gpus * busy_s[r.replica_id]
        energy += replica_energy_j(
            r,
            iterations["duration_s"][mask],
            flops[mask],
            nbytes[mask],
            busy_s[r.replica_id],
            makespan_s,
        )
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


def replica_energy_j(
    replica: ReplicaInfo,
    duration_s: np.ndarray,
    flops: np.ndarray,
    nbytes: np.ndarray,
    busy_s: float,
    makespan_s: float,
    power_fit: PowerFit | None = None,
) -> float:
    """GPU energy of one replica over the makespan (model in the module docstring).

    Args:
        replica: the replica's GPU ratings and count.
        duration_s, flops, nbytes: its iteration rows (totals over ``repeat``).
        busy_s: union of its iteration intervals.
        makespan_s: the run's duration.
        power_fit: power curves (default: ``default_power_fit()``).
    """
    fit = power_fit or default_power_fit()
    gpu_s = replica.num_gpus * duration_s
    busy_gpu_s = replica.num_gpus * busy_s
    total_gpu_s = float(gpu_s.sum())
    # PP micro-batches overlap: squeeze the rows into the busy time at higher utilisation.
    rho = total_gpu_s / busy_gpu_s if busy_gpu_s > 0 and total_gpu_s > busy_gpu_s else 1.0
    energy = replica.idle_w * replica.num_gpus * max(0.0, makespan_s - busy_s)
    for g_s, f, b in zip(gpu_s, flops, nbytes, strict=True):
        if g_s <= 0.0:
            continue
        u_c = rho * f / (g_s * replica.peak_flops_per_s) if replica.peak_flops_per_s else 0.0
        u_m = rho * b / (g_s * replica.hbm_bandwidth_bytes_per_s)
        watts = power_w_for_ratings(fit, replica.tdp_w, replica.idle_w, u_c, u_m)
        energy += watts * g_s / rho
    return energy
