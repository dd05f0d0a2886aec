"""The Ray backend of ``edgekit sweep --ray``: exports fan out over a cluster, benchmarks never share a machine's cores.

The only module that imports Ray, and only inside its functions: a sweep without ``--ray`` never loads it.

Scheduling (the driver decides where every task runs, with ``NodeAffinitySchedulingStrategy``):

* every point is an **export task** (``num_cpus=1``: export + verify), then a **bench task** that asks for **every
  CPU of its node**, so Ray runs no other CPU task of any job there while it times;
* the unit of exclusivity is the **machine**, not the Ray node: two Ray nodes on one machine share its cores. The
  driver groups nodes by host, starts at most one bench per host, submits it only once none of this sweep's exports
  runs on that host, and submits no export to a host while a bench waits or runs there (benches go first, so they
  cannot starve);
* inside the bench, a lock on a file in the machine's temp folder (:func:`edgekit.sweep.work.bench_lock`) keeps out
  the benchmarks of other drivers on that machine;
* without ``--keep-exports`` the export's files travel to the bench through Ray's object store (the bench may run on
  another machine) and the scratch folders are deleted; with it, the worker writes into that folder, which every node
  must reach (checked before the sweep starts).

Traps this module is built around (each was seen with ray 2.60):

* ``ray.init()`` without an address joins whatever cluster it finds (``RAY_ADDRESS``, the last ``ray start`` on the
  machine): a private cluster is ``address="local"``;
* an address where nothing listens makes ``ray.init`` retry for minutes, deaf to Ctrl-C: a TCP connect comes first;
* token authentication is read once, at ``import ray``: a private cluster gets a random token in the environment
  before the import (otherwise Ray writes ``~/.ray/auth_token``);
* in the driver, Ray turns SIGTERM into an abort (no clean-up): a handler raising :class:`Terminated` is installed
  after ``ray.init`` and the caller's put back at the end; Ray's blocking calls turn any exception from a signal
  handler into a plain KeyboardInterrupt, so a flag remembers it was SIGTERM;
* the raylet prints "A worker died" lines on the driver's stdout even with ``log_to_driver=False``: muted;
* ``ray.cancel(force=True)`` kills the worker before its ``finally`` runs: tasks are cancelled gracefully first;
* Ray's idle-worker killer discards workers that already imported torch: the private cluster keeps them;
* ``ray stop`` kills every Ray process on the machine: never used; a private cluster ends with ``ray.shutdown()``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import BadArgument, EdgekitError, MissingExtra, Terminated, first_line
from ..parsing import parse_int
from .grid import Point
from .work import Emit, OnRow, Work, companions, host_id, make_point, time_point

#: How long a TCP connect to HOST:PORT may take before the address is declared dead.
CONNECT_TIMEOUT_S = 5.0
#: How long every node has to answer the probe.
PROBE_TIMEOUT_S = 120.0
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_SIGTERM_SEEN: list[int] = []


def check_address(address: str, cpus: object = None) -> None:
    """``--ray`` and ``--ray-cpus`` as written, before anything runs (no network)."""
    if cpus is not None:
        if address != "local":
            raise BadArgument("--ray-cpus sizes a private cluster (--ray with no address); a cluster's nodes set "
                              "their CPUs with `ray start --num-cpus`")
        parse_int(cpus, "--ray-cpus", lo=1, hi=4096, example="--ray-cpus 2")
    if address in ("local", "auto"):
        return
    if "://" in address:
        raise BadArgument(f"--ray {address}: Ray Client addresses (ray://) are not supported; pass the HOST:PORT "
                          "that `ray start --head` printed")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadArgument(f"--ray {address!r} is not HOST:PORT or auto; pass e.g. --ray 10.0.0.5:6379")


def check_reachable(address: str) -> None:
    """``ray.init`` to an address where nothing listens retries for minutes, deaf to Ctrl-C: a TCP connect first."""
    if address in ("local", "auto"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise EdgekitError(f"nothing answers at {address} ({exc.strerror or exc}); start the cluster with "
                           "`ray start --head` there, or pass the address it printed") from None


def _import_ray(private_token: bool) -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if private_token and "ray" not in sys.modules and not any(k in os.environ for k in _AUTH_VARS):
        # before `import ray`, which reads it once; kept for the life of the process
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    hook = sys.excepthook
    try:
        import ray
    except ImportError:
        raise MissingExtra("--ray needs Ray, which is not installed; install it with: pip install -e '.[ray]'") from None
    finally:
        sys.excepthook = hook  # `import ray` installs its own
    return ray


@dataclass(frozen=True)
class NodeSlot:
    node_id: str
    cpus: int
    host: str  # host id: the same for every node on one machine
    hostname: str


@dataclass(frozen=True)
class Cluster:
    address: str
    nodes: tuple[NodeSlot, ...]


def _raise_terminated(signum: int, frame: object) -> None:
    _SIGTERM_SEEN.append(signum)
    raise Terminated()


@contextlib.contextmanager
def _signals_and_output(ray: Any) -> Iterator[None]:
    """Mute the raylet's prints to our stdout (a private function of Ray's; guarded) and give SIGTERM back to us
    once Ray is up (see the module's docstring); put both back as they were on the way out."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is not None:
        worker.print_to_stdstream = lambda *args, **kwargs: None
    main = threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if printer is not None:
            worker.print_to_stdstream = printer
        if main:
            signal.signal(signal.SIGTERM, saved)


@contextlib.contextmanager
def connect(address: str, num_cpus: int | None = None, keep_dir: Path | None = None) -> Iterator[Cluster]:
    """Connect for one sweep; always disconnects, and stops a private cluster (nothing of it is left running)."""
    check_address(address, num_cpus)
    check_reachable(address)
    ray = _import_ray(private_token=address == "local")
    if ray.is_initialized():
        raise EdgekitError("Ray is already initialised in this process; call ray.shutdown() before the sweep")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    temp_dir = None
    if address == "local":
        temp_dir = tempfile.mkdtemp(prefix="ekr-", dir="/tmp")  # short: Unix socket paths are limited to 107 bytes
        cpus = int(num_cpus) if num_cpus is not None else None
        kwargs.update(address="local", num_cpus=cpus, _temp_dir=temp_dir, _system_config={
            "num_workers_soft_limit": (cpus or os.cpu_count() or 1) + 2,
            "idle_worker_killing_time_threshold_ms": 600_000})  # keep workers that imported torch
    else:
        kwargs.update(address=address)
    try:
        with _signals_and_output(ray):
            try:  # shut down even when ray.init is interrupted half-way (it may have started the cluster)
                context = _init(ray, kwargs, address)
                if threading.current_thread() is threading.main_thread():
                    _SIGTERM_SEEN.clear()
                    signal.signal(signal.SIGTERM, _raise_terminated)
                nodes = _local_node(ray) if address == "local" else _probe_nodes(ray, keep_dir)
                yield Cluster(context.address_info.get("address", address), nodes)
            finally:
                ray.shutdown()
    finally:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _init(ray: Any, kwargs: dict, address: str) -> Any:
    try:
        return ray.init(**kwargs)
    except ConnectionError as exc:
        raise EdgekitError(f"cannot connect to the Ray cluster at {address}: {first_line(exc)}; check the address "
                           "and that RAY_AUTH_TOKEN (or ~/.ray/auth_token) holds the cluster's token") from None
    except (ValueError, RuntimeError) as exc:
        raise EdgekitError(f"Ray did not start ({first_line(exc)}); check --ray {address}") from None
    except SystemExit as exc:  # SIGTERM while ray.init runs: its own handler calls sys.exit(SIGTERM)
        if exc.code == signal.SIGTERM:
            raise Terminated() from None
        raise


def _local_node(ray: Any) -> tuple[NodeSlot, ...]:
    node_id = ray.get_runtime_context().get_node_id()
    cpus = int(next(n for n in ray.nodes() if n["NodeID"] == node_id)["Resources"].get("CPU", 0))
    if cpus < 1:
        raise EdgekitError("the private Ray cluster has no CPU; pass --ray-cpus 1 or more")
    return (NodeSlot(node_id, cpus, host_id(), socket.gethostname()),)


def _probe(marker: str | None) -> dict:
    """Runs on each node: where it is, which edgekit it has, whether it sees the --keep-exports folder."""
    from .. import __version__

    return {"host": host_id(), "hostname": socket.gethostname(), "edgekit": __version__,
            "sees_keep_dir": marker is None or os.path.exists(marker)}


def _probe_nodes(ray: Any, keep_dir: Path | None) -> tuple[NodeSlot, ...]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .. import __version__

    alive = [n for n in ray.nodes() if n.get("Alive") and int(n.get("Resources", {}).get("CPU", 0)) >= 1]
    if not alive:
        raise EdgekitError("the Ray cluster has no node with a CPU; start its nodes with --num-cpus 1 or more")
    marker = None
    if keep_dir is not None:  # a file only a shared folder shows on every node
        marker = str(Path(keep_dir).resolve() / f".edgekit-sweep-{secrets.token_hex(6)}")
        Path(marker).touch()
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
        refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(marker) for n in alive}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        if len(ready) < len(refs):
            raise EdgekitError(f"{len(refs) - len(ready)} Ray node(s) did not answer within {PROBE_TIMEOUT_S:.0f} s; "
                               "check `ray status`")
        slots = []
        for n in alive:
            try:
                facts = ray.get(refs[n["NodeID"]])
            except ray.exceptions.RayError as exc:
                raise EdgekitError(f"Ray node {n['NodeID'][:8]} cannot run edgekit ({_cause(exc)}); install the same "
                                   "edgekit in every node's Python environment") from None
            where = f"node {facts['hostname']} ({n['NodeID'][:8]})"
            if facts["edgekit"] != __version__:
                raise EdgekitError(f"{where} has edgekit {facts['edgekit']}, this driver {__version__}; install the "
                                   "same edgekit on every node")
            if not facts["sees_keep_dir"]:
                raise EdgekitError(f"{where} does not see --keep-exports {keep_dir}; pass a folder every node shares "
                                   "(a network file system), or leave --keep-exports out")
            slots.append(NodeSlot(n["NodeID"], int(n["Resources"]["CPU"]), facts["host"], facts["hostname"]))
        return tuple(slots)
    finally:
        if marker is not None:
            Path(marker).unlink(missing_ok=True)


# --- tasks (run in Ray workers) -----------------------------------------------------------------------------------


def _scratch(tag: str, kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"edgekit-ray-{tag}-{kind}-"))


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _export_task(point: Point, work: Work, tag: str) -> tuple[dict, dict | None]:
    """Export + verify one point; returns its fields and, unless the export is kept in the shared folder, its files'
    bytes (a second return value: the driver never fetches them, the bench task does)."""
    if work.options.export_dir is not None:
        made = make_point(point, work, work.options.export_dir / point.folder_name)
        return {**made, "export_ray_node_id": _node_id()}, None
    scratch = _scratch(tag, "export")
    try:
        made = make_point(point, work, scratch / point.folder_name)
        payload = None
        if "error" not in made:
            path = Path(made.pop("file"))
            payload = {"name": path.name, "files": {p.name: p.read_bytes() for p in companions(path, made["format"])}}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**made, "export_ray_node_id": _node_id()}, payload


def _bench_task(point: Point, work: Work, made: dict, payload: dict | None, tag: str) -> dict:
    """Benchmark one point alone on its machine (see the module's docstring)."""
    import ray

    scratch = None
    try:
        if payload is None:
            path = Path(made["file"])
        else:
            scratch = _scratch(tag, "bench")
            for name, data in payload["files"].items():
                (scratch / name).write_bytes(data)
            path = scratch / payload["name"]
        timed = time_point(point, work, path)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return {**timed, "ray_node_id": _node_id(), "bench_cpus_held": ray.get_runtime_context().get_assigned_resources()
            .get("CPU")}


def _cleanup_task(tag: str) -> int:
    """Remove this sweep's scratch folders on a node: those of workers that died before their finally ran."""
    import glob

    found = glob.glob(os.path.join(tempfile.gettempdir(), f"edgekit-ray-{tag}-*"))
    for folder in found:
        shutil.rmtree(folder, ignore_errors=True)
    return len(found)


# --- the driver's scheduler ---------------------------------------------------------------------------------------


@dataclass
class _Host:
    nodes: list[NodeSlot]
    exports: dict[str, int] = field(default_factory=dict)  # node id -> this sweep's exports running there
    bench: Any = None  # the bench in flight on this machine
    benches: dict[str, int] = field(default_factory=dict)  # node id -> benches run (the machine's nodes take turns)

    def exports_in_flight(self) -> int:
        return sum(self.exports.values())

    def free_node(self) -> NodeSlot | None:
        """The node with the most CPUs left for one more export, or None."""
        best = max(self.nodes, key=lambda n: n.cpus - self.exports.get(n.node_id, 0))
        return best if best.cpus - self.exports.get(best.node_id, 0) > 0 else None

    def bench_node(self) -> NodeSlot:
        node = min(self.nodes, key=lambda n: (self.benches.get(n.node_id, 0), -n.cpus))
        self.benches[node.node_id] = self.benches.get(node.node_id, 0) + 1
        return node


@dataclass
class _Flight:
    kind: str  # "export" or "bench"
    point: Point
    host: _Host
    node: NodeSlot
    made: dict = field(default_factory=dict)  # the export's fields (for a bench)
    payload: Any = None  # the export's files (an ObjectRef, for an export)


def run_on_ray(address: str, cpus: int | None, points: list[Point], work: Work, on_row: OnRow, emit: Emit, *,
               poll_s: float = 0.5, cancel_grace_s: float = 2.0) -> None:
    """Run every point on the cluster at ``address`` ("local": a private one with ``cpus`` CPUs); ``on_row`` is
    called here, in the driver, as each point finishes. A Ctrl-C (or SIGTERM: :class:`Terminated`) cancels what is in
    flight and propagates; the points already passed to ``on_row`` are kept."""
    with connect(address, cpus, work.options.export_dir) as cluster:
        import ray

        emit("cluster", None, {"address": cluster.address, "cpus": sum(n.cpus for n in cluster.nodes),
                               "nodes": [{"hostname": n.hostname, "node_id": n.node_id, "cpus": n.cpus}
                                         for n in cluster.nodes]})
        _Scheduler(ray, cluster, work, on_row, emit, poll_s, cancel_grace_s).run(points)


class _Scheduler:
    def __init__(self, ray: Any, cluster: Cluster, work: Work, on_row: OnRow, emit: Emit, poll_s: float,
                 cancel_grace_s: float) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.on_row, self.emit = ray, on_row, emit
        self.poll_s, self.cancel_grace_s = poll_s, cancel_grace_s
        self.on = lambda node: NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        self.export_remote = ray.remote(num_cpus=1, max_retries=0, num_returns=2)(_export_task)
        self.bench_remote = ray.remote(max_retries=0)(_bench_task)
        self.work = ray.put(work)  # once, not with every task
        self.tag = f"{os.getpid()}-{secrets.token_hex(3)}"  # names this run's scratch folders on every node
        self.hosts: dict[str, _Host] = {}
        for node in cluster.nodes:
            self.hosts.setdefault(node.host, _Host([])).nodes.append(node)
        self.backlog = sum(n.cpus for n in cluster.nodes)  # exports made ahead of their benches, at most
        self.todo: deque[Point] = deque()
        self.ready: deque[tuple[Point, dict, Any]] = deque()  # exported, waiting for a bench
        self.inflight: dict[Any, _Flight] = {}
        self.died: dict[str, NodeSlot] = {}  # nodes where a worker died: their scratch folders need a sweep

    def run(self, points: list[Point]) -> None:
        self.todo.extend(points)
        interrupted = False
        try:
            while self.todo or self.ready or self.inflight:
                self._start_benches()
                self._start_exports()
                if not self.inflight:
                    raise EdgekitError("no Ray node can take the sweep's tasks; check `ray status`")
                done, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=self.poll_s)
                for ref in done:
                    self._collect(ref)
        except KeyboardInterrupt:
            interrupted = True
            if _SIGTERM_SEEN:
                raise Terminated() from None
            raise
        finally:
            if self.inflight:
                _cancel(self.ray, list(self.inflight), self.cancel_grace_s)
            if self.died and not interrupted:
                self._cleanup()

    def _start_benches(self) -> None:
        """One bench per machine, on a machine where none of our exports runs."""
        for host in self.hosts.values():
            if host.bench is None and self.ready and host.exports_in_flight() == 0:
                point, made, payload = self.ready.popleft()
                node = host.bench_node()
                host.bench = self.bench_remote.options(num_cpus=node.cpus, scheduling_strategy=self.on(node)).remote(
                    point, self.work, made, payload, self.tag)
                self.inflight[host.bench] = _Flight("bench", point, host, node, made)
                self.emit("bench", point, {"node": node.hostname, "node_id": node.node_id})

    def _start_exports(self) -> None:
        """Exports on machines with no bench waiting or running, while the backlog of exported points is short."""
        for host in self.hosts.values():
            while self.todo and host.bench is None and len(self.ready) + self._exports() < self.backlog:
                if self.ready and host.exports_in_flight() == 0:
                    break  # this machine can bench now: leave it free
                node = host.free_node()
                if node is None:
                    break
                point = self.todo.popleft()
                made, payload = self.export_remote.options(scheduling_strategy=self.on(node)).remote(
                    point, self.work, self.tag)
                host.exports[node.node_id] = host.exports.get(node.node_id, 0) + 1
                self.inflight[made] = _Flight("export", point, host, node, payload=payload)
                self.emit("export", point, {"node": node.hostname, "node_id": node.node_id})

    def _exports(self) -> int:
        return sum(1 for f in self.inflight.values() if f.kind == "export")

    def _collect(self, ref: Any) -> None:
        flight = self.inflight.pop(ref)
        if flight.kind == "export":
            flight.host.exports[flight.node.node_id] -= 1
        else:
            flight.host.bench = None
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            self._failed(flight, exc)
            return
        if flight.kind == "bench":
            self.on_row(flight.point, {**flight.made, **value})
        elif "error" in value:
            self.on_row(flight.point, value)
        else:
            self.ready.append((flight.point, value, flight.payload))

    def _failed(self, flight: _Flight, exc: BaseException) -> None:
        """A task that did not return (its worker or node died, Ray could not run it): a row with the error."""
        ray = self.ray
        node = flight.node
        where = f"on {node.hostname} ({node.node_id[:8]})"
        if isinstance(exc, ray.exceptions.OutOfMemoryError):
            error = f"killed by Ray's memory monitor {where}; sweep smaller resolutions or give the node more memory"
        elif isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
            error = f"the Ray worker {where} died ({first_line(exc, 120)}); check the node's memory and its Ray logs"
        else:
            error = f"Ray could not run it {where}: {_cause(exc)}"
        self.died[node.node_id] = node
        if flight.payload is not None:  # its second return holds the same error: read it, or Ray logs it when freed
            with contextlib.suppress(Exception):
                self.ray.get(flight.payload, timeout=5)
        self.on_row(flight.point, {**flight.made, "node_hostname": node.hostname, "ray_node_id": node.node_id,
                                   "error": f"{flight.kind}: {error}"})

    def _cleanup(self, timeout_s: float = 10.0) -> None:
        """Remove scratch folders that dead workers left behind: one small task per such node (best effort)."""
        with contextlib.suppress(Exception):
            task = self.ray.remote(num_cpus=0, max_retries=0)(_cleanup_task)
            refs = [task.options(scheduling_strategy=self.on(n)).remote(self.tag) for n in self.died.values()]
            self.ray.wait(refs, num_returns=len(refs), timeout=timeout_s)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, EdgekitError):
        return str(cause)
    return f"{type(cause).__name__}: {first_line(cause, 200)}"


def _cancel(ray: Any, refs: list, grace_s: float) -> None:
    """Stop tasks in flight: a KeyboardInterrupt in each first, so their finally clauses remove their scratch
    folders; after ``grace_s``, kill the workers still running them. A second Ctrl-C goes straight to the kill."""
    try:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)
        if grace_s > 0:
            deadline = time.monotonic() + grace_s
            pending = list(refs)
            while pending and time.monotonic() < deadline:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.1)
    except BaseException:  # noqa: BLE001 - a second Ctrl-C: no more grace
        pass
    finally:
        for ref in refs:
            with contextlib.suppress(Exception):
                ready, _ = ray.wait([ref], timeout=0)
                if not ready:
                    ray.cancel(ref, force=True)
