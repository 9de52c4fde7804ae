"""Pick the Daft runner a build executes on: the local native runner, or Daft's Ray runner.

The plan is the same either way; only where Daft schedules its partitions and UDF actors
changes. forge never distributes work itself.
"""

from __future__ import annotations

import logging
import os
import warnings

import daft

from forge.errors import ForgeError

RUNNERS = ("native", "ray")


def use_runner(runner: str, address: str | None = None) -> str:
    """Configure Daft for `runner` and return a one-line description of where the build runs.

    For Ray, `address` is a cluster (`auto`, `HOST:6379`, `ray://HOST:10001`); None starts a local
    Ray on this machine's cores, or joins the one this process already started with `ray.init`.
    """
    if runner == "native":
        if address is not None:
            raise ForgeError("--address needs --runner ray; the native runner runs on this machine only")
        if daft.get_or_infer_runner_type() == "ray":
            raise ForgeError("this process already runs Daft on Ray (DAFT_RUNNER=ray or an earlier build); "
                             "pass --runner ray or unset DAFT_RUNNER")
        return "native runner (this machine)"  # Daft's default; set on first use
    try:
        import ray
    except ImportError:
        raise ForgeError("--runner ray needs Ray: pip install 'spatialforge[ray]'") from None
    if daft.get_or_infer_runner_type() != "ray" and daft.runners._get_runner() is not None:
        raise ForgeError("Daft already ran on the native runner in this process; start a new process for --runner ray")
    # Ray starts worker processes with fork+exec; lancedb's warning about forking does not apply to that.
    warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DISABLE_DASHBOARD", "1")
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise ForgeError(f"--address {address}: cannot connect to a Ray cluster ({reason}); start one with "
                             f"`ray start --head` or check the address") from None
    daft.set_runner_ray(noop_if_initialized=True)
    resources = ray.cluster_resources()
    return (f"Ray runner ({len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs)")


def model_device(device: str, runner: str) -> str:
    """Resolve `--device auto` where the models will run: on Ray the cluster's GPUs count, not the driver's."""
    if device != "auto" or runner != "ray":
        return device
    import ray

    return "cuda" if ray.cluster_resources().get("GPU", 0) > 0 else "cpu"


def judge_workers() -> int:
    """Chunks judged at once: one on the native runner, in this process (Polars uses every core
    inside a chunk); on Ray one per two CPUs of the cluster."""
    if daft.get_or_infer_runner_type() != "ray":
        return 1
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 2) // 2))
