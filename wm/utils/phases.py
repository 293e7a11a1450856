"""Wall time and peak memory of a phase of work (GRPO's ``grpo/time/<phase>`` and
``grpo/peak_mem_mb/<phase>``; the benchmarks' memory columns): CUDA's allocator peak on a GPU,
the process's resident-set growth on CPU."""
from __future__ import annotations

import resource
import time
from contextlib import contextmanager

import torch


def rss_mb(field: str = "VmRSS") -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MB (None where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@contextmanager
def phase(name: str, timings: dict | None = None, peaks: dict | None = None,
          device: torch.device | str | None = None):
    """Time a phase into ``timings[name]`` (seconds) and its peak memory into ``peaks[name]``
    (MB): on CUDA ``max_memory_allocated`` with the peak reset at the phase start; on CPU the
    growth of the process's peak RSS over its RSS at the start (the peak mark reset first where
    Linux allows, else the lifetime peak: 0 unless the phase set a new one)."""
    cuda = peaks is not None and torch.device(device or "cpu").type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif peaks is not None:
        reset = _reset_peak_rss()
        start = rss_mb("VmRSS") or 0.0
        start_peak = None if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        if timings is not None:
            timings[name] = time.perf_counter() - t0
        if cuda:
            peaks[name] = torch.cuda.max_memory_allocated(device) / 2**20
        elif peaks is not None:
            if start_peak is None:
                peak = max(rss_mb("VmHWM") or 0.0, rss_mb("VmRSS") or 0.0)
            else:            # ru_maxrss never decreases: a growth only if this phase set it
                peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, start_peak)
                start = max(start, start_peak)
            peaks[name] = max(peak - start, 0.0)
