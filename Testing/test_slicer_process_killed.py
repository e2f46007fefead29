"""A process the system kills (SIGKILL) cannot write its own `error` event: the runner adds one for the panel."""

import sys
import textwrap

import pytest

import test_slicer_helpers  # noqa: F401  (puts the module folder on sys.path)

from UMambaSegmentationLib.ProcessRunner import ProcessRunner


def run_script(code):
    return ProcessRunner([sys.executable, "-c", textwrap.dedent(code)]).start()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_process_ends_with_an_error_event():
    runner = run_script("""
        import json, os, signal
        print(json.dumps({"event": "stage", "stage": "train", "message": "Training"}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    events = [e for e in runner.wait(timeout=30) if e["event"] != "output"]
    assert [e["event"] for e in events] == ["stage", "error", "process_exit"]
    assert "SIGKILL" in events[1]["message"] and "memory" in events[1]["message"] and events[1]["hint"]
    assert events[2]["returncode"] < 0 and not events[2]["cancelled"]


def test_a_process_that_reported_its_own_error_gets_no_second_one():
    runner = run_script("""
        import json, sys
        print(json.dumps({"event": "error", "message": "bad input", "hint": None}), flush=True)
        sys.exit(2)
    """)
    events = [e for e in runner.wait(timeout=30) if e["event"] != "output"]
    assert [e["event"] for e in events] == ["error", "process_exit"]


def test_a_cancelled_process_gets_no_error_event():
    runner = run_script("""
        import json, time
        print(json.dumps({"event": "stage", "stage": "train", "message": "Training"}), flush=True)
        time.sleep(60)
    """)
    while not any(e["event"] == "stage" for e in runner.poll()):
        pass
    runner.cancel(graceSeconds=1.0)
    events = [e for e in runner.wait(timeout=30) if e["event"] != "output"]
    assert [e["event"] for e in events] == ["process_exit"] and events[0]["cancelled"]
