"""System facts a benchmark report carries: CPU, GPU, cores, load, memory, runtime versions."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np




@dataclass(frozen=True)
class SystemInfo:
    ort_version: str
    ort_package: str  # the installed wheel(s), e.g. "onnxruntime 1.32.0"
    available_providers: tuple[str, ...]
    cpu_name: str
    cpu_count: int  # logical CPUs this process may run on
    gpu_name: str | None
    platform: str
    python: str
    numpy_version: str
    load_average: tuple[float, float, float] | None = None  # 1, 5, 15 minutes, read before the session was created
    runtime: str = "onnxruntime"  # the runtime that ran the benchmark
    runtime_version: str = ""  # e.g. "onnxruntime 1.32.0", "torch 2.14.1", "openvino 2026.4"

    def to_dict(self) -> dict:
        return asdict(self)


def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def default_threads() -> int:
    """Physical cores this process may run on (ONNX Runtime's and PyTorch's own default), logical CPUs if unknown."""
    allowed = allowed_cpus()
    cores = {
        (b.get("physical id", "0"), b.get("core id"))
        for b in _cpuinfo()
        if b.get("processor", "").isdigit() and int(b["processor"]) in allowed and "core id" in b
    }
    return len(cores) or len(allowed) or 1


def cpu_name() -> str:
    for block in _cpuinfo():
        for key in ("model name", "Model", "Hardware", "cpu model"):
            if block.get(key):
                return block[key]
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5, check=False
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name(device_id: int = 0) -> str | None:
    """The NVIDIA GPU's name from nvidia-smi (or torch, when it already sees CUDA); None when neither can tell."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader", "-i", str(device_id)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                name, _, driver = out.stdout.strip().splitlines()[0].partition(",")
                return f"{name.strip()} (driver {driver.strip()})" if driver.strip() else name.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device_id))
    except Exception:  # noqa: BLE001 - a broken CUDA install must not break the report
        pass
    return None


def load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def system_info(
    providers: Sequence[str] = (), device_id: int = 0, load: tuple[float, float, float] | None = None,
    runtime: str = "onnxruntime", runtime_version: str = "",
) -> SystemInfo:
    from ..runtimes.onnxruntime import GPU_PROVIDERS, _ort, ort_packages

    ort = _ort()
    uses_gpu = any(p in GPU_PROVIDERS or "cuda" in p.lower() or "gpu" in p.lower() for p in providers)
    return SystemInfo(
        ort_version=ort.__version__,
        ort_package=ort_packages(),
        available_providers=tuple(ort.get_available_providers()),
        cpu_name=cpu_name(),
        cpu_count=len(allowed_cpus()),
        gpu_name=gpu_name(device_id) if uses_gpu else None,
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        numpy_version=np.__version__,
        load_average=load,
        runtime=runtime,
        runtime_version=runtime_version or f"onnxruntime {ort.__version__}",
    )


def rss_now_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
