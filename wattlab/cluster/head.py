"""The head of a cluster sweep: preflight on every node, one run at a time per node, one DuckDB.

Placement: Ray places one NodeAgent actor on each node (NodeAffinity, not soft) with the node's
GPUs reserved for it (`num_gpus` = the node's GPU count), so no other Ray work and no second
measuring run shares those devices while the session measures. The head hands each run to an
idle agent whose node has at least the run's GPUs (tensor x pipeline parallel size; 0 for CPU
runs); a node measures one run at a time because its node-level meters (RAPL, the estimate) see the
whole node, so two runs there could not be told apart.

Data: each agent's spool lines are pulled (by byte offset) into a mirror spool on the head
(`spool/<node session>/`, byte-identical to the node's), and each finished run is committed with
the samples that came before it. At the end (and when a node is lost) the mirror is ingested
whole by `sessions.commit.ingest_spool`, the same recovery path as a one-box session, so a run
that a lost node left unfinished becomes `interrupted` with every sample already streamed.

State for a restart: `<data dir>/cluster/sessions/<session>.json` (address, agents, attempts). A
restarted head (`--resume SESSION`) finds the agents by name (they are detached actors, so they
outlive the head), pulls from the mirrors' sizes onward and carries on.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattlab import __version__
from wattlab.cluster import INSTALL_FIX, NAMESPACE, connect
from wattlab.errors import ConfigError, StoreError
from wattlab.paths import data_dir
from wattlab.sessions import commit
from wattlab.sessions.result import RunResult
from wattlab.sessions.spec import RunSpec, Sweep
from wattlab.sessions.spool import COMMITTED, RUNNER_DONE, Spool, process_identity, write_atomic
from wattlab.sessions.store import Store

EventSink = Callable[[dict[str, Any]], None]
AGENT_PREFIX = "wattlab-agent-"
PULL_TIMEOUT_S = 30.0


def gpu_need(spec: RunSpec) -> int:
    """GPUs a run needs on one node: tensor x pipeline parallel size on a GPU, 0 on the CPU."""
    from wattlab.sessions.plan import run_device_kind

    if run_device_kind(spec) != "gpu":
        return 0
    opts = spec.options
    tp, pp = int(opts.get("tensor_parallel_size", 1)), int(opts.get("pipeline_parallel_size", 1))
    return max(1, tp) * max(1, pp)


@dataclass
class Node:
    node_id: str
    hostname: str
    gpus: int  # the node's Ray GPU resource
    gpus_free: float | None
    is_head: bool
    address: str = ""

    @property
    def label(self) -> str:
        return f"{self.hostname}:{self.node_id[:8]}"


def free_resources() -> dict[str, dict[str, float]]:
    """Each node's unreserved resources, read inside the cluster (a Ray Client driver cannot)."""
    from ray._private.state import state as _state

    return dict(_state.available_resources_per_node())


def cluster_nodes(ray: Any) -> list[Node]:
    """The live nodes, head first."""
    try:
        free = free_resources()
    except Exception:
        try:  # through Ray Client: ask a task on the cluster
            free = ray.get(ray.remote(num_cpus=0, max_retries=0)(free_resources).remote(), timeout=20)
        except Exception:  # an internal API: without it, "busy" is unknown, nothing else is lost
            free = {}
    nodes = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources") or {}
        nodes.append(
            Node(
                node_id=n["NodeID"],
                hostname=n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or "?",
                gpus=int(res.get("GPU", 0)),
                gpus_free=(free.get(n["NodeID"]) or {}).get("GPU") if free else None,
                is_head="node:__internal_head__" in res,
                address=n.get("NodeManagerAddress") or "",
            )
        )
    return sorted(nodes, key=lambda n: (not n.is_head, n.node_id))


def measuring_nodes(nodes: list[Node]) -> list[Node]:
    """Nodes that take runs: every node but the head, unless the head is the whole cluster."""
    workers = [n for n in nodes if not n.is_head]
    return workers or nodes


def _pinned(node_id: str) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def probe_nodes(
    ray: Any, nodes: list[Node], engines: list[str] | None, timeout_s: float = 60.0
) -> dict[str, Any]:
    """node_facts() on each node (wattlab version, GPUs by UUID, engines): node_id -> facts, or
    {"error": ...} where wattlab cannot be imported there."""
    from wattlab.cluster.agent import node_facts

    remote = ray.remote(num_cpus=0, max_retries=0)(node_facts)
    refs = {n.node_id: remote.options(scheduling_strategy=_pinned(n.node_id)).remote(engines) for n in nodes}
    out: dict[str, Any] = {}
    for node_id, ref in refs.items():
        try:
            out[node_id] = ray.get(ref, timeout=timeout_s)
        except Exception as exc:
            text = str(exc)
            why = next((ln.strip() for ln in reversed(text.splitlines()) if "Error" in ln), text[:200])
            out[node_id] = {"error": why or type(exc).__name__}
    return out


def state_dir() -> Path:
    return data_dir() / "cluster" / "sessions"


class Mirror:
    """A node session's spool copied on the head, line for line, and committed from there."""

    def __init__(self, session_id: str, label: str, store: Store) -> None:
        self.spool = Spool(session_id)
        self.label = label
        self.store = store
        self.session: dict[str, Any] = {"session_id": session_id}
        self.domains: dict[str, dict[str, Any]] = {}
        self.idle_w: dict[str, float] = {}
        self.pending: list[dict[str, Any]] = []
        self.ended: dict[int, RunResult] = {}  # seq -> its latest result on this node
        self.started: dict[int, str] = {}  # seq -> run_id of runs started here
        self.offsets = [0, 0]
        self._files: list[Any] = []

    def open(self) -> None:
        """Create or reopen the mirror (a restarted head): take ownership, re-read what it holds."""
        d = self.spool.dir
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "runner.json", json.dumps(process_identity()))
        for marker in (COMMITTED, RUNNER_DONE):
            (d / marker).unlink(missing_ok=True)
        paths = (self.spool.events_path, self.spool.timeline_path)
        for i, path in enumerate(paths):
            data = path.read_bytes() if path.exists() else b""
            keep = data[: data.rfind(b"\n") + 1]  # a line torn by a killed head is pulled again
            if len(keep) != len(data):
                path.write_bytes(keep)
            self.offsets[i] = len(keep)
            self._parse(keep, timeline=i == 1, replay=True)
        self._files = [open(p, "ab") for p in paths]  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def feed(self, events: bytes, timeline: bytes) -> list[RunResult]:
        """Append pulled lines; returns the runs that ended in them."""
        for i, data in enumerate((events, timeline)):
            if data:
                self._files[i].write(data)
                self._files[i].flush()
                self.offsets[i] += len(data)
        self._parse(timeline, timeline=True, replay=False)
        return self._parse(events, timeline=False, replay=False)

    def _parse(self, data: bytes, *, timeline: bool, replay: bool) -> list[RunResult]:
        ended: list[RunResult] = []
        for raw in data.splitlines():
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if timeline:
                if "domains" in item and "t" not in item:
                    for d in item["domains"]:
                        self.domains[d["id"]] = d
                elif not replay:
                    self.pending.append(item)
                continue
            kind = item.get("ev")
            if kind == "session_start":
                self.session = dict(item.get("session") or self.session)
                write_atomic(self.spool.dir / "session.json", json.dumps(self.session, default=str))
            elif kind == "session_update":
                self.session.update(item.get("fields") or {})
            elif kind == "idle":
                self.idle_w = item.get("idle_w") or {}
                self.session["idle_json"] = {"idle_w": self.idle_w, "not_idle": item.get("not_idle") or {}}
            elif kind == "run_start":
                self.started[int(item["seq"])] = item["run_id"]
            elif kind == "run_end":
                result = RunResult.from_spool(item["result"])
                self.ended[int(result.seq or 0)] = result
                ended.append(result)
        return ended

    def commit_run(self, result: RunResult) -> bool:
        """One short transaction: the node session's row, its domains, the run, the samples so far."""
        items, self.pending = self.pending, []
        session = {**self.session, "status": "running", "spool_dir": str(self.spool.dir)}
        try:
            with self.store.writer(timeout_s=30.0) as con:
                con.execute("BEGIN TRANSACTION")
                commit.write_session(con, session)
                commit.write_domains(con, self.spool.session_id, list(self.domains.values()), self.idle_w)
                commit.write_run(con, result)
                commit.write_timeline_items(con, self.spool.session_id, items)
                con.execute("COMMIT")
            return True
        except Exception:  # a locked database: the mirror keeps it all, the final ingest commits it
            self.pending = items + self.pending
            return False

    def ingest(self, final_status: str) -> dict[str, Any]:
        """The whole node session from the mirror (the recovery path): idempotent."""
        for f in self._files:
            f.flush()
        summary = commit.ingest_spool(self.store, self.spool, final_status=final_status)
        self.pending = []
        return summary


@dataclass
class Agent:
    name: str
    node_id: str
    label: str
    gpus: int
    session_id: str
    handle: Any = None
    mirror: Mirror | None = None
    busy: int | None = None  # the seq it measures
    lost: bool = False
    finishing: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_id": self.node_id,
            "label": self.label,
            "gpus": self.gpus,
            "session_id": self.session_id,
            "busy": self.busy,
            "lost": self.lost,
            "pid": self.facts.get("pid"),
        }


class ClusterSweep:
    """Run a sweep over the cluster at `address`; commits every run to `store`."""

    def __init__(
        self,
        sweep: Sweep,
        address: str,
        *,
        store: Store | None = None,
        session_id: str | None = None,
        echo: EventSink | None = None,
        max_attempts: int = 3,
        poll_s: float = 0.25,
    ) -> None:
        from wattlab.sessions.runner import new_session_id

        if not sweep.text:
            raise ConfigError(
                "a cluster sweep needs a sweep file", fix="write the runs in a TOML file: wattlab sweep FILE"
            )
        self.sweep = sweep
        self.address = address
        self.store = store or Store()
        self.session_id = session_id or new_session_id()
        self.echo = echo
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.agents: list[Agent] = []
        self.attempts: dict[int, int] = {}
        self.needs = [gpu_need(spec) for spec, _ in sweep.runs]
        self.results: list[RunResult] = []
        self.status = "created"
        self.ray: Any = None

    @property
    def state_path(self) -> Path:
        return state_dir() / f"{self.session_id}.json"

    # --- preflight --------------------------------------------------------------------------------
    def check(self) -> list[Node]:
        """Every refusal before anything is written: address, GPUs, wattlab and engines per node."""
        self.ray = ray = connect(self.address)
        nodes = measuring_nodes(cluster_nodes(ray))
        most = max((n.gpus for n in nodes), default=0)
        too_big = [i + 1 for i, need in enumerate(self.needs) if need > most]
        if too_big:
            need = max(self.needs)
            raise ConfigError(
                f"{self.sweep.source}: run {_ranges(too_big)} needs {need} GPUs on one node, but the "
                f"largest node of {self.address} has {most} ("
                + ", ".join(f"{n.label}: {n.gpus}" for n in nodes)
                + ")",
                fix="lower tensor_parallel_size x pipeline_parallel_size, or add a node with that many "
                "GPUs (`ray start --address HEAD --num-gpus N`)",
                title="Sweep refused",
            )
        engines = sorted({spec.engine for spec, _ in self.sweep.runs})
        facts = probe_nodes(ray, nodes, engines)
        problems: list[str] = []
        for n in nodes:
            f = facts[n.node_id]
            if "error" in f:
                problems.append(
                    f"node {n.label}: wattlab cannot run there ({f['error']}); fix: {INSTALL_FIX}, "
                    "in the same Python environment Ray uses on that node"
                )
                continue
            if f.get("wattlab") != __version__:
                problems.append(
                    f"node {n.label}: wattlab {f.get('wattlab')} there, {__version__} on the head; "
                    f"fix: install wattlab {__version__} on that node"
                )
            for name, st in (f.get("engines") or {}).items():
                if not st.get("installed"):
                    problems.append(
                        f"node {n.label}: the {name} engine is not installed ({st.get('reason')}); fix: "
                        + (st.get("fix") or f"install wattlab's {name} extra on that node")
                    )
        if not problems:
            problems += self._node_preflight(ray, nodes)
        if problems:
            lines = [f"{self.sweep.source}: refused, nothing was started:"] + [f"  - {p}" for p in problems]
            raise ConfigError(
                "\n".join(lines),
                fix="each problem names its node and fix; `wattlab cluster status` lists the nodes",
                title="Sweep refused",
            )
        for n in nodes:
            n_facts = facts[n.node_id]
            setattr(n, "facts", n_facts)  # noqa: B010 - carried into the agent's record
        return nodes

    def _node_preflight(self, ray: Any, nodes: list[Node]) -> list[str]:
        """The one-box preflight (models, options, devices) run on each node for the runs it can take."""
        from wattlab.cluster.agent import node_problems

        remote = ray.remote(num_cpus=0, max_retries=0)(node_problems)
        refs = {}
        for n in nodes:
            seqs = [i + 1 for i, need in enumerate(self.needs) if need <= n.gpus]
            if seqs:
                refs[n.label] = remote.options(scheduling_strategy=_pinned(n.node_id)).remote(
                    self.sweep.text, self.sweep.source, seqs
                )
        out = []
        for label, ref in refs.items():
            for p in ray.get(ref, timeout=120):
                fix = f"; fix: {p['fix']}" if p["fix"] else ""
                out.append(f"node {label}: run {_ranges(p['runs'])}: {p['text']}{fix}")
        return out

    # --- running ----------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> list[RunResult]:
        nodes = self.check()
        state = self._load_state() if resume else None
        try:
            if state:
                self._reattach(state, nodes)
            else:
                for k, n in enumerate(nodes, 1):
                    self._new_agent(n, k)
        except BaseException:
            self._abandon()
            raise
        self._save_state()
        finished = {
            seq
            for a in self.agents
            if a.mirror
            for seq, r in a.mirror.ended.items()
            if r.status == "finished"
        }
        todo = range(1, len(self.sweep.runs) + 1)
        queue = deque(seq for seq in todo if seq not in finished and not self._busy(seq))
        self.status = "running"
        self._emit("cluster_start", nodes=[a.label for a in self.agents if not a.lost], runs=len(queue))
        try:
            while queue or any(a.busy is not None for a in self.agents if not a.lost):
                for a in self.agents:
                    if not a.lost:
                        self._poll(a, queue)
                self._dispatch(queue)
                if queue and not any(not a.lost for a in self.agents):
                    self._emit("cluster_error", message="every node was lost; the runs left are not run")
                    break
                time.sleep(self.poll_s)
            self.status = "finished" if not queue else "failed"
        except KeyboardInterrupt:
            self.status = "interrupted"
        finally:
            self._finish_agents()
            self._save_state(done=True)
        return self.results

    def _abandon(self) -> None:
        """A start that failed: free the nodes and leave no empty mirror behind (recovery would
        otherwise record a session with nothing in it)."""
        import shutil

        for a in self.agents:
            _kill(self.ray, a.handle)
            if a.mirror is not None:
                a.mirror.close()
                if a.mirror.offsets == [0, 0]:
                    shutil.rmtree(a.mirror.spool.dir, ignore_errors=True)

    def _busy(self, seq: int) -> bool:
        return any(a.busy == seq for a in self.agents if not a.lost)

    def _new_agent(self, n: Node, k: int) -> Agent:
        from wattlab.cluster.agent import NodeAgent

        ray = self.ray
        a = Agent(
            name=f"{AGENT_PREFIX}{self.session_id}-n{k}",
            node_id=n.node_id,
            label=n.label,
            gpus=n.gpus,
            session_id=f"{self.session_id}.n{k}",
            facts=getattr(n, "facts", {}),
        )
        cls = ray.remote(NodeAgent)
        a.handle = cls.options(
            name=a.name,
            namespace=NAMESPACE,
            lifetime="detached",  # a killed head does not take the node's measurement with it
            num_cpus=0,
            num_gpus=n.gpus,
            max_concurrency=4,
            max_restarts=0,
            scheduling_strategy=_pinned(n.node_id),
        ).remote(
            a.session_id,
            self.sweep.text,
            self.sweep.source,
            n.node_id,
            {"sweep_session": self.session_id, "node": n.label, "facts": a.facts, "address": self.address},
        )
        try:
            a.facts.update(ray.get(a.handle.start.remote(), timeout=120))
        except Exception as exc:
            _kill(ray, a.handle)
            raise ConfigError(
                f"node {n.label}: its measuring agent did not start ({type(exc).__name__}); most likely "
                "another session's agent holds that node's GPUs",
                fix="wait for that sweep to end (`wattlab cluster status` lists who is measuring), "
                "or stop its head; an agent left by a killed head ends when that session is resumed",
                title="Node busy",
            ) from exc
        a.mirror = Mirror(a.session_id, a.label, self.store)
        a.mirror.open()
        self.agents.append(a)
        self._emit("node_ready", node=a.label, session=a.session_id, gpus=a.gpus)
        return a

    def _reattach(self, state: dict[str, Any], nodes: list[Node]) -> None:
        """A restarted head: the agents of the state file that still live, plus new nodes."""
        ray = self.ray
        self.attempts = {int(k): v for k, v in (state.get("attempts") or {}).items()}
        for d in state.get("agents", []):
            a = Agent(**{k: d[k] for k in ("name", "node_id", "label", "gpus", "session_id")})
            a.mirror = Mirror(a.session_id, a.label, self.store)
            a.mirror.open()
            self.agents.append(a)
            try:
                a.handle = ray.get_actor(a.name, namespace=NAMESPACE)
            except ValueError:
                a.handle = None
            if a.handle is None or d.get("lost"):
                self._lose(a, None, "its agent was gone when the head restarted")
                continue
            # A run handed out before the head died is still this agent's until its run_end arrives.
            a.busy = d.get("busy")
            ended = a.mirror.ended.get(a.busy) if a.busy is not None else None
            if ended is not None and a.mirror.started.get(int(a.busy or 0)) == ended.run_id:
                a.busy = None
        known = {a.node_id for a in self.agents if not a.lost}
        k = len(self.agents)
        for n in nodes:
            if n.node_id not in known:
                k += 1
                self._new_agent(n, k)
        self._emit("cluster_resumed", nodes=[a.label for a in self.agents if not a.lost])

    def _poll(self, a: Agent, queue: deque[int]) -> None:
        ray = self.ray
        assert a.mirror is not None
        try:
            got = ray.get(a.handle.pull.remote(*a.mirror.offsets), timeout=PULL_TIMEOUT_S)
        except Exception as exc:  # RayActorError, ActorDiedError, GetTimeoutError: the node is gone
            self._lose(a, queue, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        for result in a.mirror.feed(got["events"], got["timeline"]):
            self.results.append(result)
            a.mirror.commit_run(result)
            if a.busy == result.seq:
                a.busy = None
                self._save_state()
            self._emit("run_end", node=a.label, result=result.as_dict())
        if not got["running"] and a.busy is not None:
            # The node's runner stopped (its session failed there): that run goes elsewhere.
            self._lose(a, queue, got.get("error") or "its runner stopped")

    def _lose(self, a: Agent, queue: deque[int] | None, why: str) -> None:
        """A node lost mid-sweep: ingest what it streamed (its run becomes `interrupted`), re-queue."""
        a.lost = True
        seq, a.busy = a.busy, None
        if a.mirror is not None:
            try:
                a.mirror.ingest("interrupted")
                run_id = a.mirror.started.get(seq) if seq is not None else None
                if run_id and (seq not in a.mirror.ended or a.mirror.ended[seq].run_id != run_id):
                    with self.store.writer(timeout_s=30.0) as con:
                        con.execute(
                            "UPDATE runs SET error = ?, error_fix = ? WHERE run_id = ?",
                            [
                                f"node {a.label} was lost during this run ({why}); the samples it "
                                "streamed before are kept",
                                "nothing to do: the run was handed to another node"
                                if queue is not None
                                else "resume it: wattlab sweep FILE --cluster ADDR --resume SESSION",
                                run_id,
                            ],
                        )
            except StoreError as exc:
                self._emit("commit_deferred", reason=exc.message)
            a.mirror.close()
        _kill(self.ray, a.handle)  # frees the node's GPUs for Ray if the agent still lives
        self._emit("node_lost", node=a.label, reason=why, seq=seq)
        if seq is not None and queue is not None:
            if self.attempts.get(seq, 0) < self.max_attempts:
                queue.appendleft(seq)
                self._emit("run_requeued", seq=seq, attempt=self.attempts.get(seq, 0) + 1)
            else:
                self._emit("run_given_up", seq=seq, attempts=self.attempts.get(seq, 0))
        self._save_state()

    def _dispatch(self, queue: deque[int]) -> None:
        for a in self.agents:
            if a.lost or a.busy is not None or not queue:
                continue
            seq = next((s for s in queue if self.needs[s - 1] <= a.gpus), None)
            if seq is None:
                continue
            queue.remove(seq)
            try:
                self.ray.get(a.handle.submit.remote(seq), timeout=PULL_TIMEOUT_S)
            except Exception as exc:
                queue.appendleft(seq)
                self._lose(a, queue, f"{type(exc).__name__}")
                continue
            a.busy = seq
            self.attempts[seq] = self.attempts.get(seq, 0) + 1
            spec, _ = self.sweep.runs[seq - 1]
            self._emit("run_sent", node=a.label, seq=seq, total=len(self.sweep.runs), label=spec.label())
            self._save_state()

    def _finish_agents(self) -> None:
        """End each node session (cooldown, shutdown), pull its last lines, ingest it, free the node."""
        ray = self.ray
        live = [a for a in self.agents if not a.lost]
        for a in live:
            try:
                ray.get(a.handle.finish.remote(), timeout=PULL_TIMEOUT_S)
            except Exception as exc:
                self._lose(a, None, type(exc).__name__)
        deadline = time.monotonic() + 120.0
        for a in live:
            if a.lost:
                continue
            assert a.mirror is not None
            while time.monotonic() < deadline:
                try:
                    got = ray.get(a.handle.pull.remote(*a.mirror.offsets), timeout=PULL_TIMEOUT_S)
                except Exception as exc:
                    self._lose(a, None, type(exc).__name__)
                    break
                for result in a.mirror.feed(got["events"], got["timeline"]):
                    self.results.append(result)
                    self._emit("run_end", node=a.label, result=result.as_dict())
                if not got["running"] and not got["events"] and not got["timeline"]:
                    break
                time.sleep(self.poll_s)
            if a.lost:
                continue
            try:
                a.mirror.ingest(self.status if self.status != "running" else "interrupted")
            except StoreError as exc:
                self._emit("commit_deferred", reason=exc.message)
            a.mirror.close()
            _kill(ray, a.handle)

    # --- state ------------------------------------------------------------------------------------
    def _save_state(self, done: bool = False) -> None:
        state = {
            "session_id": self.session_id,
            "address": self.address,
            "source": self.sweep.source,
            "sweep_hash": self.sweep.hash(),
            "status": self.status if done else "running",
            "head": process_identity(),
            "agents": [a.as_dict() for a in self.agents],
            "attempts": self.attempts,
        }
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(state))

    def _load_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        from wattlab.sessions.spool import is_alive

        if state.get("status") == "running" and is_alive(state.get("head") or {}):
            raise ConfigError(
                f"cluster session {self.session_id} is still running: its head (pid "
                f"{state['head'].get('pid')}) is at work",
                fix="stop that head before resuming the session",
            )
        return state

    def _emit(self, kind: str, **data: Any) -> None:
        if self.echo is None:
            return
        try:
            self.echo({"ev": kind, "session_id": self.session_id, "wall": time.time(), **data})
        except Exception:
            self.echo = None


def _kill(ray: Any, handle: Any) -> None:
    if handle is None:
        return
    with contextlib.suppress(Exception):  # already dead: nothing to free
        ray.kill(handle, no_restart=True)


def node_session_ids(session_id: str) -> list[str]:
    """The node sessions of a cluster sweep, from its state file."""
    try:
        state = json.loads((state_dir() / f"{session_id}.json").read_text())
    except (OSError, ValueError):
        return []
    return [a["session_id"] for a in state.get("agents", [])]


def _ranges(runs: list[int]) -> str:
    from wattlab.sessions.plan import _ranges as ranges

    return ranges(runs)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
