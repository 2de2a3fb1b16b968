"""The deployment planner: capacity search, deployment search, Pareto fronts, GPU mixes.

Modules (imports flow down this list):

- ``plan``: ``PlanSpec`` (one candidate deployment) and ``SchedulerVariant``.
- ``space``: ``SearchSpace``, ``enumerate_plans``, parsing of the search flags.
- ``scenario``: ``Scenario`` (model, workload, SLO criterion, seed), ``simulate_plan``.
- ``capacity``: ``capacity_search(probe, ...)``: bracketing + bisection over a rate, first
  at the rate the caller needs; ``bracketed_capacity_search``: short probes bracket first.
- ``probe``: ``ViolationWatch``: a probe stops once its p99 target is certainly lost.
- ``analytic``: ``Prefilter``: feasibility as the simulator builds the replica, and
  steady-state bounds, no simulation.
- ``evaluate``: ``evaluate_plan(PlanTask) -> PlanResult`` (the unit the executors run).
- ``executors``: in-process, local process pool, Ray.
- ``store``: ``PlanStore``: results in DuckDB, written as they finish; resumable.
- ``rank``: objectives, Pareto fronts, "why it wins".
- ``reasons``: short categories of prune/infeasible reasons.
- ``families``: ``cost_at_rate``'s bisection over replica counts.
- ``search``: ``run_search(scenario, space, ...) -> SearchReport``.
- ``melange`` / ``mix``: the Mélange GPU-mix integer program and its inputs.
- ``deploy``: the winner as a SimConfig mapping and ``vllm serve`` flags.
- ``present``: plain table rows for the CLI.

The public entry points are ``servesim.api.capacity`` and ``servesim.api.plan`` and the
``servesim capacity`` / ``servesim plan`` commands.
"""
