"""The module's self-test (Reload and Test, and the extension's CTest) skips with a message when umamba/torch
are missing from Slicer's Python, as on the extensions build server, instead of failing."""

import sys
import unittest


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
