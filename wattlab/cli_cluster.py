"""`wattlab cluster status|up|down` and `wattlab sweep FILE --cluster ADDRESS` (wattlab/cluster/)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from wattlab.errors import ConfigError


def cmd_cluster(args: argparse.Namespace) -> int:
    if args.action == "up":
        return _up(args)
    if args.action == "down":
        return _down(args)
    return _status(args)


def _up(args: argparse.Namespace) -> int:
    from wattlab.cluster import import_ray
    from wattlab.cluster.local import up

    if args.local is None:
        raise ConfigError(
            "`wattlab cluster up` starts a local test cluster only: give --local N",
            fix="wattlab cluster up --local 3; for real nodes run `ray start --head` and `ray start "
            "--address HEAD:6379` on each, then pass --cluster ray://HEAD:10001",
        )
    import_ray()  # refused here with the install fix, before a daemon starts
    state = up(args.local)
    if args.json:
        print(json.dumps({"address": state["address"], "nodes": state["nodes"]}))
    else:
        was = " (already running)" if state.get("already") else ""
        print(f"local Ray cluster{was}: head + {state['nodes']} worker nodes")
        print(state["address"])
        print(f"use it: wattlab sweep FILE --cluster {state['address']}   stop it: wattlab cluster down")
    return 0


def _down(args: argparse.Namespace) -> int:
    from wattlab.cluster.local import down

    state = down()
    if args.json:
        print(json.dumps({"stopped": state["address"] if state else None}))
    else:
        print(f"stopped the local cluster at {state['address']}" if state else "no local cluster was running")
    return 0


def _address(given: str | None) -> str:
    if given:
        return given
    from wattlab.cluster.local import read_state

    state = read_state()
    if not state:
        raise ConfigError(
            "no cluster given and no local cluster is running",
            fix="pass --cluster ray://HEAD:PORT, or start one: wattlab cluster up --local 3",
        )
    return str(state["address"])


def _status(args: argparse.Namespace) -> int:
    from wattlab.cluster import NAMESPACE, connect
    from wattlab.cluster.head import AGENT_PREFIX, cluster_nodes, probe_nodes

    address = _address(args.cluster)
    ray = connect(address)
    nodes = cluster_nodes(ray)
    facts = probe_nodes(ray, nodes, None, timeout_s=30.0)
    sessions: dict[str, list[str]] = {}
    try:
        from ray.util import list_named_actors

        for entry in list_named_actors(all_namespaces=True):
            if entry.get("namespace") == NAMESPACE and entry["name"].startswith(AGENT_PREFIX):
                sessions.setdefault("any", []).append(entry["name"].removeprefix(AGENT_PREFIX))
    except Exception:
        pass
    rows: list[dict[str, Any]] = []
    for n in nodes:
        f = facts.get(n.node_id, {})
        rows.append(
            {
                "node_id": n.node_id,
                "hostname": n.hostname,
                "head": n.is_head,
                "gpus": n.gpus,
                "gpus_busy": None if n.gpus_free is None else round(n.gpus - n.gpus_free, 2),
                "gpu_uuids": [g["uuid"] for g in f.get("gpus", [])],
                "driver": f.get("driver"),
                "wattlab": f.get("wattlab"),
                "error": f.get("error"),
            }
        )
    if args.json:
        print(json.dumps({"address": address, "nodes": rows, "agents": sessions.get("any", [])}))
        return 0
    print(f"cluster {address}: {len(rows)} nodes")
    for r in rows:
        role = "head " if r["head"] else "node "
        busy = "-" if not r["gpus"] else "?" if r["gpus_busy"] is None else f"{r['gpus_busy']:g}"
        none = "no GPU seen by NVML (Ray GPU resource only)" if r["gpus"] else "-"
        uuids = ", ".join(r["gpu_uuids"]) or none
        wl = r["wattlab"] or f"NOT usable: {r['error']}"
        print(f"  {role}{r['hostname']}:{r['node_id'][:8]}  GPUs {r['gpus']} (busy {busy})  wattlab {wl}")
        print(f"        GPUs: {uuids}" + (f"  driver {r['driver']}" if r["driver"] else ""))
    if sessions.get("any"):
        print("  measuring: " + ", ".join(sessions["any"]))
    return 0


def cmd_cluster_sweep(args: argparse.Namespace, sweep: Any, address: str) -> int:
    from wattlab.cluster.head import ClusterSweep
    from wattlab.sessions.store import Store

    if getattr(args, "detach", False):
        raise ConfigError(
            "--detach is not available with --cluster yet",
            fix="run the head in the foreground (in tmux/screen on a box that stays up); "
            "a killed head resumes with --resume SESSION",
        )
    head = ClusterSweep(
        sweep, address, store=Store(args.db), session_id=args.resume, echo=None if args.quiet else _echo
    )
    results = head.run(resume=args.resume is not None)
    last = {r.seq: r for r in results}
    not_ok = [r for r in last.values() if r.status != "finished"]
    nodes = sorted({str(r.node_id) for r in last.values() if r.node_id})
    print(
        f"session {head.session_id} {head.status}: {len(last)} of {len(sweep.runs)} runs done "
        f"({len(last) - len(not_ok)} finished) on {len(nodes)} nodes"
    )
    return 0 if head.status == "finished" and not not_ok and len(last) == len(sweep.runs) else 1


def _echo(item: dict[str, Any]) -> None:
    kind = item["ev"]
    if kind == "run_sent":
        text = f"run {item['seq']}/{item['total']} -> {item['node']}: {item['label']}"
    elif kind == "run_end":
        r = item["result"]
        figure = r.get("j_per_token")
        extra = f", {figure:.4g} J/token" if isinstance(figure, int | float) else ""
        text = f"run {r.get('seq')} on {item['node']}: {r.get('status')}{extra} ({r.get('run_id')})"
    elif kind == "node_lost":
        text = f"node {item['node']} lost ({item['reason']})" + (
            f"; run {item['seq']} was on it" if item.get("seq") else ""
        )
    elif kind == "run_requeued":
        text = f"run {item['seq']} re-queued (attempt {item['attempt']})"
    elif kind == "node_ready":
        text = f"node {item['node']} ready (session {item['session']}, {item['gpus']} GPUs)"
    else:
        rest = {k: v for k, v in item.items() if k not in ("ev", "wall", "session_id")}
        text = kind + " " + json.dumps(rest)
    print(text, file=sys.stderr, flush=True)
