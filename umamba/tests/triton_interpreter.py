"""Running the Triton kernel tests on a GPU or, without one (CI), under Triton's interpreter.

TRITON_INTERPRET=1 must be set before triton is imported, so it cannot be switched on inside the pytest process:
each Triton test file has one wrapper test, `run_under_interpreter`, that re-runs the file in a subprocess with
the variable set (and no CUDA device), leaving out the wrapper itself. On a CUDA machine the cases run on the GPU
and the wrapper is skipped (Triton 3.6's interpreter also fails with numpy 2.5 on kernels with runtime loop
bounds, as on the H200 image of 2026-11: "only 0-dimensional arrays can be converted to Python scalars").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETING else ("cuda" if torch.cuda.is_available() else None)
needs_device = pytest.mark.skipif(DEVICE is None, reason="needs CUDA, or TRITON_INTERPRET=1 (see the wrapper test)")
# The wrapper runs where there is no GPU (on a GPU the cases run there directly): not inside the interpreter run
# itself, and only on Linux (the interpreter ships with Linux wheels)
wrapper = pytest.mark.skipif(INTERPRETING or DEVICE == "cuda" or sys.platform != "linux",
                             reason="the interpreter run itself, a GPU machine (the cases ran on it), or not Linux")


def run_under_interpreter(test_file: str, expected_passed: int) -> None:
    """Re-run `test_file` under the interpreter; all its tests but the wrapper must pass, `expected_passed` of them
    (so that a test silently skipped there is noticed)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", "-k", "not test_under_triton_interpreter"],
                          env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) == expected_passed, out[-2000:]
