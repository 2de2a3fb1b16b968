"""Dotted ``SimConfig`` overrides built from command-line flags (simulate, capacity, plan).

Each builder takes the flags a user gave and returns ``{"dotted.path": value}`` for
``SimConfig.from_dict``; a flag that makes no sense with another is a ``ConfigError`` naming
both. Names given on the command line are kebab-case (``least-outstanding-requests``); the
registries key snake_case, so ``registry_name`` maps one to the other and both spellings work.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from servesim.core.errors import ConfigError
from servesim.workload.length_config import parse_dist_spec

# Scheduler flags that set ``scheduler.<field>``; given without --scheduler they refine the
# scheduler the config (or the default) names, so the ``kind`` must be filled in.
SCHEDULER_PREFIX = "scheduler."


def is_plugin_path(name: str) -> bool:
    """``path/to/file.py:Class`` or ``file.py``: a user plug-in, not a registry name."""
    return ":" in name or name.endswith(".py")


def registry_name(name: str) -> str:
    """A built-in's registry key from its kebab-case (or old snake_case) spelling."""
    return name if is_plugin_path(name) else name.strip().lower().replace("-", "_")


def display_name(name: str) -> str:
    """The kebab-case spelling the CLI shows (``least_kv_usage`` -> ``least-kv-usage``)."""
    return name if is_plugin_path(name) else name.replace("_", "-")


def scheduler_overrides(scheduler: str | None) -> dict[str, Any]:
    """``--scheduler``: a registry name, or ``file.py:Class`` (``kind: custom``)."""
    if scheduler is None:
        return {}
    if is_plugin_path(scheduler):
        return {"scheduler.kind": "custom", "scheduler.path": scheduler}
    return {"scheduler.kind": registry_name(scheduler)}


def router_override(router: str | None) -> str | None:
    """``--router``: its registry key (kebab-case or snake_case given), or the plug-in path."""
    return None if router is None else registry_name(router)


def admission_override(spec: str | None) -> dict[str, Any] | None:
    """``--admission NAME[:key=value,...]`` (or ``file.py:Class[:key=value,...]``): the
    ``admission`` mapping, its option values read as YAML scalars (``rate=2.5`` is a float)."""
    if spec is None:
        return None
    import yaml

    parts = spec.split(":")
    cut = 2 if parts[0].strip().endswith(".py") and len(parts) > 1 else 1
    kind = ":".join(parts[:cut]).strip()
    rest = ":".join(parts[cut:])
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(
                "--admission",
                spec,
                f"option {pair!r} is not key=value (e.g. token-bucket:rate-per-s=5)",
            )
        name = key.strip().replace("-", "_")
        if name in options:
            raise ConfigError("--admission", spec, f"option {name!r} given twice")
        options[name] = yaml.safe_load(value.strip())
    if not kind:
        raise ConfigError("--admission", spec, "names no policy (e.g. token-bucket:rate-per-s=5)")
    return {"kind": registry_name(kind), "options": options}


def fill_scheduler_kind(
    raw: dict[str, Any], overrides: dict[str, Any], default_kind: str
) -> dict[str, Any]:
    """Scheduler field flags without --scheduler: keep the kind the config already has.

    ``--max-num-seqs 128`` alone used to replace the scheduler mapping by one without a
    ``kind``, which the discriminated union cannot read. The kind is the file's, else the
    engine profile fills it (``hardware.engine``), else the default scheduler's.
    """
    fields = [k for k in overrides if k.startswith(SCHEDULER_PREFIX)]
    if not fields or f"{SCHEDULER_PREFIX}kind" in overrides:
        return overrides
    scheduler = raw.get("scheduler")
    if isinstance(scheduler, dict) and "kind" in scheduler:
        return overrides
    hardware = raw.get("hardware") if isinstance(raw.get("hardware"), dict) else {}
    engine = overrides.get("hardware.engine", hardware.get("engine", "auto"))
    if engine not in (None, "auto"):
        return overrides  # the profile's defaults bring its scheduler kind
    return {**overrides, f"{SCHEDULER_PREFIX}kind": default_kind}


def workload_overrides(
    raw: dict[str, Any],
    *,
    preset: str | None,
    arrival: str | None,
    rate: float | None,
    cv: float | None,
    trace: Path | None,
    trace_format: str | None,
    skip_bad_rows: bool = False,
    prompt_lengths: str | None = None,
    output_lengths: str | None = None,
    rate_scale: float | None = None,
    turns: float | None = None,
    group_size: int | None = None,
) -> dict[str, Any]:
    """Dotted overrides for the workload flags, given what the config file already says.

    The length, trace-speed and session flags are ``servesim workload describe``'s, with the
    same meaning (``workload_shape_overrides``).
    """
    current = raw.get("workload") if isinstance(raw.get("workload"), dict) else {}
    out: dict[str, Any] = workload_shape_overrides(
        trace is not None or isinstance(current.get("trace"), dict),
        prompt_lengths=prompt_lengths,
        output_lengths=output_lengths,
        rate_scale=rate_scale,
        turns=turns,
        group_size=group_size,
    )
    if preset is not None:
        out["workload.preset"] = preset
        out["workload.trace"] = None
    out.update(_trace_overrides(trace, trace_format, skip_bad_rows, rate_scale))
    out.update(_arrival_overrides(current, arrival, rate, cv))
    return out


def _trace_overrides(
    trace: Path | None, trace_format: str | None, skip_bad_rows: bool, rate_scale: float | None
) -> dict[str, Any]:
    """``--trace`` (replacing the preset and the rate), or the trace options of the file's."""
    out: dict[str, Any] = {}
    if trace is not None:
        out["workload.trace"] = {
            "path": str(trace),
            "format": trace_format,
            "skip_bad_rows": skip_bad_rows,
            **({"rate_scale": rate_scale} if rate_scale is not None else {}),
        }
        out["workload.preset"] = None
        out["workload.rate_per_s"] = None
    else:
        if trace_format is not None:
            out["workload.trace.format"] = trace_format
        if skip_bad_rows:
            out["workload.trace.skip_bad_rows"] = True
    return out


def _arrival_overrides(
    current: dict[str, Any], arrival: str | None, rate: float | None, cv: float | None
) -> dict[str, Any]:
    """``--arrival``/``--cv`` (a new process, keeping the file's rate and CV unless given) or
    ``--rate`` alone (the file's process at a new rate)."""
    out: dict[str, Any] = {}
    kind = arrival if arrival is not None else ("gamma" if cv is not None else None)
    if kind is not None:
        old = current.get("arrival") if isinstance(current.get("arrival"), dict) else {}
        new_rate = rate if rate is not None else old.get("rate_per_s", current.get("rate_per_s"))
        if new_rate is None:
            raise ConfigError("--rate", None, f"--arrival {kind} needs a rate: give --rate")
        spec: dict[str, Any] = {"kind": kind, "rate_per_s": new_rate}
        if kind == "gamma":
            spec["cv"] = cv if cv is not None else old.get("cv", 1.0)
        elif cv is not None:
            raise ConfigError("--cv", cv, f"only applies to --arrival gamma, not {kind}")
        out["workload.arrival"] = spec
        out["workload.rate_per_s"] = None
    elif rate is not None:
        if isinstance(current.get("arrival"), dict):
            out["workload.arrival.rate_per_s"] = rate
        else:
            out["workload.rate_per_s"] = rate
    return out


def request_rate_value(text: str) -> float:
    if text.strip().lower() == "inf":
        return math.inf
    try:
        rate = float(text)
    except ValueError:
        raise ConfigError("--request-rate", text, "must be a number > 0 or inf") from None
    if not (rate > 0):
        raise ConfigError("--request-rate", text, "must be > 0 or inf")
    return rate


def client_overrides(
    *,
    request_rate: str | None = None,
    burstiness: float | None = None,
    max_concurrency: int | None = None,
    num_warmups: int | None = None,
    dataset: str | None = None,
    input_len: int | None = None,
    output_len: int | None = None,
    range_ratio: float | None = None,
    prefix_len: int | None = None,
) -> dict[str, Any]:
    """Dotted overrides for ``vllm bench serve``-style flags (client, pacing, dataset)."""
    out: dict[str, Any] = {}
    if burstiness is not None and not burstiness > 0:
        raise ConfigError("--burstiness", burstiness, "must be > 0")
    if max_concurrency is not None and max_concurrency < 1:
        raise ConfigError("--max-concurrency", max_concurrency, "must be >= 1")
    if num_warmups is not None and num_warmups < 0:
        raise ConfigError("--num-warmups", num_warmups, "must be >= 0")
    if request_rate is not None:
        rate = request_rate_value(request_rate)
        if math.isinf(rate):
            if burstiness is not None and burstiness != 1.0:
                raise ConfigError("--burstiness", burstiness, "needs a finite --request-rate")
            out["workload.arrival"] = {"kind": "immediate"}
        else:
            cv = 1.0 / math.sqrt(burstiness if burstiness is not None else 1.0)
            out["workload.arrival"] = {"kind": "gamma", "rate_per_s": rate, "cv": cv}
        out["workload.rate_per_s"] = None
    elif burstiness is not None:
        raise ConfigError("--burstiness", burstiness, "needs --request-rate (vllm's gamma shape)")
    if max_concurrency is not None:
        out["workload.client.max_concurrency"] = max_concurrency
    if num_warmups is not None:
        out["workload.client.num_warmups"] = num_warmups
    random_flags = {
        "input_len": input_len,
        "output_len": output_len,
        "range_ratio": range_ratio,
        "prefix_len": prefix_len,
    }
    return out | _dataset_overrides(
        dataset, {k: v for k, v in random_flags.items() if v is not None}
    )


def _dataset_overrides(dataset: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """``--dataset`` (random, shared-prefix or a preset); ``given``: the random dataset's
    length flags given (any of them alone means ``--dataset random``)."""
    out: dict[str, Any] = {}
    if dataset is None and given:
        dataset = "random"
    if dataset == "random":
        out["workload.lengths"] = {"kind": "random", **given}
        out["workload.preset"] = None
    elif dataset == "shared-prefix":
        out["workload.shared_prefix"] = {}
        out["workload.preset"] = None
    elif dataset is not None:
        if given:
            raise ConfigError("--input-len", given, "applies to --dataset random")
        out["workload.preset"] = dataset  # sharegpt-vllm-bench, sharegpt-vidur, ...
    return out


def workload_shape_overrides(
    has_trace: bool,
    *,
    prompt_lengths: str | None = None,
    output_lengths: str | None = None,
    rate_scale: float | None = None,
    turns: float | None = None,
    group_size: int | None = None,
) -> dict[str, Any]:
    """``--prompt-lengths/--output-lengths`` (a distribution each, given together),
    ``--rate-scale`` (a trace's arrivals sped up), ``--turns`` (multi-turn sessions) and
    ``--group-size`` (parallel samples), as ``workload describe`` reads them."""
    out: dict[str, Any] = {}
    if (prompt_lengths is None) != (output_lengths is None):
        given = prompt_lengths if prompt_lengths is not None else output_lengths
        raise ConfigError("--prompt-lengths", given, "give it together with --output-lengths")
    if prompt_lengths is not None and output_lengths is not None:
        out["workload.lengths"] = {
            "kind": "independent",
            "prompt": parse_dist_spec(prompt_lengths),
            "output": parse_dist_spec(output_lengths),
        }
    if rate_scale is not None:
        if not has_trace:
            raise ConfigError("--rate-scale", rate_scale, "applies to --trace only")
        out["workload.trace.rate_scale"] = rate_scale
    if turns is not None:
        out["workload.sessions"] = {"mean_turns": turns}
    if group_size is not None:
        out["workload.groups"] = {"group_size": group_size}
    return out
