"""Helpers of the sweep tests (not a test module): a fast exporter, a CLI driver that uses it, a Ray cluster of
several `ray start` nodes on this machine.

Ray workers import this module by name: the tests put this folder on the PYTHONPATH they inherit.

    python tests/sweep_helpers.py sweep MODEL ... : `edgekit sweep` with the fast exporter (a subprocess driver, for
    the tests that signal it); prints "ray imported: True/False" on stderr at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def fast_exporter(name: str, alpha: float, res: int, folder: Path, weights: str | None) -> Path:
    """An ONNX file with edgekit's metadata through the TorchScript-based exporter: about 1 s a point, where the
    dynamo exporter behind edgekit.export takes 10+ s on a loaded 2-core machine. The real exporter has its own
    tests (test_sweep.py's CLI test runs it through the sweep)."""
    import onnx
    import torch

    import edgekit
    from edgekit.complexity import count_complexity
    from edgekit.metadata import Metadata

    folder.mkdir(parents=True, exist_ok=True)
    model, source = edgekit.build_model(name, alpha=alpha)
    path = folder / f"{name}_a{alpha:g}_r{res}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, res, res),), str(path), dynamo=False,
                          input_names=["input"], output_names=["logits"])  # fmt: skip
    params, macs, _ = count_complexity(model, res, with_stages=False)
    meta = Metadata(model=name, alpha=alpha, res=res, num_classes=1000, weights=source.describe(),
                    seed=source.seed, input_shape=(1, 3, res, res), params=params, macs=macs)  # fmt: skip
    proto = onnx.load(path)
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)
    return path


#: (model, res) the sabotaged exporters trip on
BROKEN = ("shufflenet_v2", 64)


def failing_exporter(name: str, alpha: float, res: int, folder: Path, weights: str | None) -> Path:
    """The fast exporter, except for BROKEN: an edgekit error there (a point that fails; the sweep goes on)."""
    from edgekit.errors import ExportFailed

    if (name, res) == BROKEN:
        raise ExportFailed(f"onnx export of {name} failed: injected by the test; try --format without onnx")
    return fast_exporter(name, alpha, res, folder, weights)


def crashing_exporter(name: str, alpha: float, res: int, folder: Path, weights: str | None) -> Path:
    """The fast exporter, except for BROKEN: the process dies there (a Ray worker lost mid-task)."""
    if (name, res) == BROKEN:
        os._exit(3)
    return fast_exporter(name, alpha, res, folder, weights)


def worker_env() -> dict[str, str]:
    """The environment for a driver whose Ray workers must import this module."""
    paths = [str(HERE.parent), str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONWARNINGS": "ignore",
            "PYTHONUNBUFFERED": "1"}


def _cli(argv: list[str]) -> int:
    import functools

    import edgekit.sweep
    from edgekit.cli import main
    from sweep_helpers import fast_exporter as by_name  # not __main__'s: Ray workers import it by this name

    edgekit.sweep.sweep = functools.partial(edgekit.sweep.sweep, exporter=by_name)  # the CLI looks it up
    try:
        return main(argv)
    finally:
        sys.stderr.write(f"ray imported: {'ray' in sys.modules}\n")


# --- a Ray cluster of several nodes on this machine ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_members(sid: int) -> list[int]:
    """Processes whose session id is ``sid``: a child started with start_new_session and everything it spawned."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # state ppid pgrp session ...
                out.append(int(name))
    return out


def wait_gone(sid: int, timeout_s: float = 30.0) -> list[int]:
    """Poll until no process of session ``sid`` is left (Ray's daemons exit a few seconds after their driver)."""
    deadline = time.monotonic() + timeout_s
    left = session_members(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = session_members(sid)
    return left


@dataclass
class LocalCluster:
    """``ray start --block`` nodes on 127.0.0.1, each in its own session, stopped by pid (never `ray stop`, which
    kills every Ray process on the machine, other people's included). The head's temp folder is private; the token
    is the caller's RAY_AUTH_TOKEN (a process reads its token once, at `import ray`)."""

    nodes: list[dict[str, Any]]  # each: num_cpus, resources
    startup_timeout_s: float = 120.0
    address: str = ""
    temp_dir: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> "LocalCluster":
        self.temp_dir = tempfile.mkdtemp(prefix="ekr-", dir="/tmp")  # short: Unix socket paths are limited
        self.address = f"127.0.0.1:{free_port()}"
        env = {**worker_env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
               "RAY_num_workers_soft_limit": "4", "RAY_idle_worker_killing_time_threshold_ms": "600000"}
        env.pop("RAY_ADDRESS", None)
        ray = str(Path(sys.executable).with_name("ray"))
        try:
            for i, node in enumerate(self.nodes):
                args = [ray, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={node['num_cpus']}",
                        f"--resources={json.dumps(node.get('resources', {}))}", "--disable-usage-stats",
                        "--log-style=record", "--log-color=false"]
                if i == 0:
                    args += ["--head", f"--port={self.address.rsplit(':', 1)[1]}", "--include-dashboard=false",
                             f"--temp-dir={self.temp_dir}"]
                else:
                    args += [f"--address={self.address}"]
                log = Path(self.temp_dir) / f"ray-start-{i}.log"
                with open(log, "wb") as fh:
                    self.procs.append(subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                                       stdin=subprocess.DEVNULL, start_new_session=True))
                self._wait_started(self.procs[-1], log)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_started(self, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if "Ray runtime started" in text:
                return
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` exited with {proc.returncode}: {text.strip()[-800:]}")
            time.sleep(0.3)
        raise TimeoutError(f"`ray start` was not up after {self.startup_timeout_s:.0f} s; see {log}")

    def stop(self) -> list[int]:
        """SIGTERM each `ray start --block` (its Node stops the raylet, GCS, agents and workers), newest first; then
        SIGKILL what is left of their sessions. Returns the pids that needed SIGKILL."""
        import shutil

        sessions = [p.pid for p in self.procs]
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        killed = [pid for sid in sessions for pid in wait_gone(sid, timeout_s=30)]
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.procs = []
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return killed


def private_token() -> None:
    """Token authentication for this process's Ray, in the environment before anything imports Ray (it reads it
    once): a fresh random token rather than Ray's default ~/.ray/auth_token."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.pop("RAY_ADDRESS", None)  # a developer's RAY_ADDRESS must not send the tests to their cluster
    if "ray" not in sys.modules and not any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                                                                       "RAY_AUTH_TOKEN_PATH")):
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
