"""Sweeps over a Ray cluster: every run on some node, every joule back in the head's one DuckDB.

    head (`wattlab sweep FILE --cluster ADDR`)          node k (a Ray actor, cluster/agent.py)
      cluster/head.py ClusterSweep                         NodeAgent -> NodeRunner (the Runner)
        preflight: address, nodes, GPUs, engines             meters, idle baseline, cooldown,
        hands each run to an idle node with the GPUs          engine worker, spool on the node
        pulls each node's spool lines (byte offsets)  <---   events.jsonl + timeline.jsonl
        mirror spool on the head -> commit per run           (session `<sweep session>.n<k>`)

`connect()` is the one way in (an unreachable address is one ConfigError with the fix); ray is
imported only here and in the modules under this package, never by `wattlab --help`.
"""

from __future__ import annotations

import time
from typing import Any

from wattlab.errors import ConfigError

NAMESPACE = "wattlab"
INSTALL_FIX = "pip install 'wattlab[ray]' (on the head and on every node)"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("Ray is not installed, so wattlab cannot use a cluster", fix=INSTALL_FIX) from exc
    return ray


def normalise_address(address: str) -> str:
    """`ray://HOST:PORT` (Ray Client), `HOST:PORT` (the GCS, from a node of the cluster) or `auto`."""
    text = (address or "").strip()
    if text == "auto":
        return text
    body = text.removeprefix("ray://")
    host, _, port = body.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"cluster address {address!r} is not HOST:PORT",
            fix="give the address `wattlab cluster up` or `ray start --head` printed, "
            "e.g. --cluster ray://10.0.0.5:10001",
        )
    return text


def connect(address: str, *, timeout_s: float = 20.0, handshake_s: float = 180.0) -> Any:
    """Connect this process to the cluster (idempotent). Returns the ray module."""
    ray = import_ray()
    address = normalise_address(address)
    if ray.is_initialized():
        return ray
    if not address.startswith("ray://") and address != "auto":
        host, _, port = address.rpartition(":")
        _reachable(host, int(port), address, timeout_s)
    else:
        if address.startswith("ray://"):
            host, _, port = address.removeprefix("ray://").rpartition(":")
            _reachable(host, int(port), address, timeout_s)
    # The port answers (checked above), yet Ray's client proxy starts a server process per client,
    # and that start sometimes fails at once ("Initialization failure from server: Starting Ray
    # client server failed", empty log; seen 2 in 8 on a loaded 2-core box). A failed attempt only
    # returns after the proxy's own 30 s channel wait, so try again for handshake_s: a fresh
    # attempt gets a fresh server process.
    deadline = time.monotonic() + handshake_s
    while True:
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level="ERROR",
                configure_logging=True,
            )
            return ray
        except Exception as exc:  # ConnectionError, TimeoutError, RuntimeError: all one message
            why = _reason(exc)
            if "Initialization failure" not in str(exc) or time.monotonic() > deadline:
                raise unreachable(address, why) from exc
            if ray.is_initialized():
                ray.shutdown()
            time.sleep(1.0)


def _reason(exc: BaseException) -> str:
    """One line: the server's own reason (the last line of the traceback it sends), not its header."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 and lines[0].startswith("Initialization failure"):
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def _reachable(host: str, port: int, address: str, timeout_s: float) -> None:
    """A TCP connect first: Ray itself retries an unreachable address for a minute or more."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, 5.0)):
            pass
    except OSError as exc:
        raise unreachable(address, exc.strerror or str(exc)) from exc


def unreachable(address: str, why: str) -> ConfigError:
    return ConfigError(
        f"cannot reach the Ray cluster at {address}: {why}",
        fix="check the address and that the head is up (`wattlab cluster status --cluster ADDR`, "
        "or start a local one with `wattlab cluster up --local 3`)",
        title="Cluster unreachable",
    )


def disconnect() -> None:
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()
