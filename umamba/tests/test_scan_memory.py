"""The portable scan streams: at U-Mamba Enc 3D stage 0 (l = 2,097,152) its forward needs < 2 GB extra memory.

Measured, not estimated: a fresh subprocess builds the inputs, resets its peak-RSS counter (VmHWM, via
/proc/self/clear_refs) and reads it again after the scan. One materialised (b, d, l, n) float32 tensor would be
8.6 GB; inputs are 1.9 GB and the output 0.5 GB, so the bound leaves room for the output and chunk buffers only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, time
    import torch
    torch.set_num_threads(1)     # one thread: no OpenMP spinning on a busy 2-core machine; memory is the same
    from umamba.mamba import selective_scan
    from umamba.mamba.scan_portable import selective_scan_portable

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    b, d, n, l = 1, 64, 16, 2_097_152
    g = torch.Generator().manual_seed(0)
    u = torch.empty(b, d, l).uniform_(-2, 2, generator=g)
    delta = torch.empty(b, d, l).uniform_(-4, 0, generator=g)
    z = torch.empty(b, d, l).uniform_(-2, 2, generator=g)
    B = torch.empty(b, n, l).uniform_(-1, 1, generator=g)
    C = torch.empty(b, n, l).uniform_(-1, 1, generator=g)
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    D = torch.ones(d)
    bias = torch.full((d,), -1.0)
    with open("/proc/self/clear_refs", "w") as f:      # VmHWM := VmRSS from here on
        f.write("5")
    before = status("VmRSS")
    assert status("VmHWM") <= before + (64 << 20), "peak RSS counter was not reset"
    t = time.perf_counter()
    with torch.no_grad():
        y = selective_scan(u, delta, A, B, C, D, z, bias, delta_softplus=True, backend="portable")
    seconds = time.perf_counter() - t
    peak = status("VmHWM")
    # the streamed result is the scan's result: first steps against a separate short run
    k = 5000
    with torch.no_grad():
        y0 = selective_scan_portable(u[..., :k], delta[..., :k], A, B[..., :k], C[..., :k], D, z[..., :k], bias, True)
    print(json.dumps({"growth": peak - before, "seconds": seconds, "finite": bool(torch.isfinite(y).all()),
                      "prefix_err": float((y[..., :k] - y0).abs().max()), "shape": list(y.shape)}))
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_stage0_forward_streams_under_2_gb():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 64, 2_097_152] and result["finite"]
    assert result["prefix_err"] <= 1e-5
    print(f"stage-0 portable forward: {result['growth'] / 2**30:.2f} GiB peak growth, {result['seconds']:.1f} s")
    assert result["growth"] < 2 * 10**9
