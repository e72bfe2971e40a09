"""A local test cluster: a Ray head plus N worker nodes on this box (`wattlab cluster up --local N`).

Each node is a real raylet with its own node id, its own resources (1 CPU, 1 GPU slot: on a box
without GPUs the slot is a Ray resource only) and its own data dir (`WATTLAB_HOME` =
`<data dir>/cluster/local/node-<k>`), so each node keeps its own spool as a remote node would.
The cluster lives in a small daemon process (`python -m wattlab.cluster.local`) that `cluster up`
starts in its own process session; its pid and the address are in `<data dir>/cluster/local.json`;
`cluster down` stops that pid (and so every node process it started), nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wattlab.errors import ConfigError
from wattlab.paths import data_dir

OBJECT_STORE_BYTES = 80 * 1024 * 1024  # the smallest Ray accepts comfortably; runs move no objects


def state_path() -> Path:
    return data_dir() / "cluster" / "local.json"


def read_state() -> dict[str, Any] | None:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    from wattlab.sessions.spool import is_alive

    return state if is_alive(state.get("identity") or {}) else None


def up(nodes: int, *, timeout_s: float = 120.0) -> dict[str, Any]:
    """Start the daemon (unless one runs) and wait for its address. Returns the state."""
    if nodes < 1 or nodes > 16:
        raise ConfigError(f"--local {nodes}: a local cluster has 1 to 16 worker nodes", fix="e.g. --local 3")
    running = read_state()
    if running:
        return {**running, "already": True}
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    log = path.with_name("local.log")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wattlab.cluster.local", "--nodes", str(nodes)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a closed terminal does not take the cluster with it
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state()
        if state and state.get("address"):
            return state
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise ConfigError(
                "the local cluster did not start: " + (" / ".join(tail) or f"exit code {proc.returncode}"),
                fix=f"see {log}; a Ray cluster already running here (`ray status`) can block its ports",
            )
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGTERM)
    raise ConfigError(
        f"the local cluster did not start within {timeout_s:.0f} s", fix=f"see {log}; the box may be loaded"
    )


def down(timeout_s: float = 60.0) -> dict[str, Any] | None:
    """Stop the local cluster's daemon (it shuts its nodes down). None when none was running."""
    state = read_state()
    if not state:
        state_path().unlink(missing_ok=True)
        return None
    pid = int(state["identity"]["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    from wattlab.sessions.spool import is_alive

    while time.monotonic() < deadline and is_alive(state["identity"]):
        time.sleep(0.2)
    if is_alive(state["identity"]):
        os.killpg(pid, signal.SIGKILL)  # its own process group: the daemon and the nodes it started
    state_path().unlink(missing_ok=True)
    return state


def start_cluster(nodes: int, home: Path) -> tuple[Any, list[Any]]:
    """A head (no GPUs) and `nodes` workers, in this process. Returns (Cluster, worker nodes)."""
    from ray.cluster_utils import Cluster

    def args(k: str, **extra: Any) -> dict[str, Any]:
        node_home = home / f"node-{k}"
        node_home.mkdir(parents=True, exist_ok=True)
        return {
            "num_cpus": 1,
            "object_store_memory": OBJECT_STORE_BYTES,
            "env_vars": {"WATTLAB_HOME": str(node_home)},
            **extra,
        }

    port = _free_port()
    cluster = Cluster(initialize_head=True, head_node_args=args("head", ray_client_server_port=port))
    cluster.client_port = port  # type: ignore[attr-defined]  # read by client_address()
    workers = [cluster.add_node(**args(str(k), num_gpus=1)) for k in range(1, nodes + 1)]
    cluster.wait_for_nodes()
    return cluster, workers


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_address(cluster: Any) -> str:
    port = cluster.client_port
    host = cluster.address.rpartition(":")[0]
    return f"ray://{host}:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m wattlab.cluster.local")
    parser.add_argument("--nodes", type=int, required=True)
    args = parser.parse_args()
    from wattlab.sessions.spool import process_identity, write_atomic

    home = state_path().parent / "local"
    cluster, workers = start_cluster(args.nodes, home)
    stop = {"now": False}

    def on_term(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    state = {
        "address": client_address(cluster),
        "gcs_address": cluster.address,
        "nodes": args.nodes,
        "node_ids": [w.node_id for w in workers],
        "identity": process_identity(),
        "home": str(home),
    }
    write_atomic(state_path(), json.dumps(state))
    print(f"local cluster up: {state['address']} ({args.nodes} worker nodes)", flush=True)
    while not stop["now"]:
        time.sleep(0.5)
    cluster.shutdown()
    print("local cluster down", flush=True)


if __name__ == "__main__":
    main()
