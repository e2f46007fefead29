"""The module's self-test (Reload and Test, and the extension's CTest): skipped with a message when umamba/torch
are missing from Slicer's Python, as on the extensions build server; passes with them."""

import sys
import time
import unittest

import pytest

from slicer_qt_layer.fixtures import *  # noqa: F401,F403  (slicer_app)


def test_self_test_is_skipped_with_a_message_without_umamba(slicer_app, monkeypatch, tmp_path):
    import UMambaSegmentation
    bare = tmp_path / "python"  # an interpreter without umamba: Python's isolated mode, no site-packages
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    monkeypatch.setenv("UMAMBA_SLICER_PYTHON", str(bare))
    result = unittest.TestResult()
    UMambaSegmentation.UMambaSegmentationTest("runTest").run(result)
    assert result.failures == [] and result.errors == []
    assert len(result.skipped) == 1
    message = result.skipped[0][1]
    assert "umamba/torch are not installed in Slicer's Python" in message and "Install dependencies" in message


@pytest.mark.slow
def test_self_test_passes_with_umamba(slicer_app, qtbot):
    """Reload and Test as Slicer runs it: trains, segments, checks Dice per label, geometry and cancel. Its run
    time on a 2-core CPU is recorded in BENCHMARKS.md (module self-test)."""
    import UMambaSegmentation
    result = unittest.TestResult()
    started = time.monotonic()
    UMambaSegmentation.UMambaSegmentationTest("runTest").run(result)
    elapsed = time.monotonic() - started
    assert result.failures == [] and result.errors == [] and result.skipped == [], (result.failures, result.errors)
    print(f"module self-test: {elapsed:.1f} s")
