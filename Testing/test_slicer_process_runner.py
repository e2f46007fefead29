"""The module's one background-process runner, with real processes: events, stderr, exit, cancel of a tree."""

import sys
import textwrap
import time

import pytest

from test_slicer_helpers import pidAlive, pythonForUmamba

from UMambaSegmentationLib.ProcessRunner import ProcessRunner, descendantPids, groupPids, parseEventLine


def run_script(code):
    return ProcessRunner([sys.executable, "-c", textwrap.dedent(code)]).start()


def test_events_stderr_and_exit_code_arrive_in_order():
    runner = run_script("""
        import json, sys
        print(json.dumps({"event": "stage", "stage": "predict", "message": "Predicting"}), flush=True)
        print("not an event", flush=True)
        print('{"broken json', flush=True)
        print(json.dumps({"event": "something_new", "x": 1}), flush=True)
        sys.stderr.write("warning from nnU-Net\\n")
        print(json.dumps({"event": "done", "outputs": ["a.nii.gz"]}), flush=True)
        sys.exit(3)
    """)
    events = runner.wait(timeout=30)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "process_exit" and events[-1]["returncode"] == 3 and not events[-1]["cancelled"]
    umamba_events = [e for e in events if e["event"] not in ("output", "process_exit")]
    # unknown event names are passed on (readers ignore them); broken JSON becomes log output, never an event
    assert [e["event"] for e in umamba_events] == ["stage", "something_new", "done"]
    output = [e["message"] for e in events if e["event"] == "output"]
    assert "not an event" in output and '{"broken json' in output and "warning from nnU-Net" in output
    assert list(runner.stderrTail) == ["warning from nnU-Net"]
    assert runner.returncode == 3
    assert runner.poll() == []  # process_exit is reported once


def test_parse_event_line_matches_the_umamba_reader():
    from umamba.progress import parse_event
    for line in ['{"event": "log", "message": "x"}', "plain", '{"no_event": 1}', '{"event": 3}', "{bad", "  "]:
        assert parseEventLine(line) == parse_event(line)


def test_cancel_kills_the_whole_tree_including_workers_in_other_groups():
    # A parent with two workers, one of which leaves the process group (as a daemonised helper might);
    # the parent ignores SIGTERM, so cancel has to escalate.
    runner = run_script("""
        import os, signal, subprocess, sys, time, json
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        a = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        b = subprocess.Popen([sys.executable, "-c", "import os, time; os.setpgid(0, 0); time.sleep(120)"])
        print(json.dumps({"event": "stage", "stage": "predict", "message": "workers up"}), flush=True)
        time.sleep(120)
    """)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(descendantPids(runner.pid)) < 2:
        time.sleep(0.05)
    tree = [runner.pid] + descendantPids(runner.pid)
    assert len(tree) == 3
    started = time.monotonic()
    runner.cancel(graceSeconds=1.0)
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert [pid for pid in tree if pidAlive(pid)] == []
    assert groupPids(runner.pid) == []
    events = runner.wait(timeout=10)
    assert events[-1]["event"] == "process_exit" and events[-1]["cancelled"] is True


def test_cancel_after_exit_is_harmless_and_umamba_runs_with_the_injected_python():
    runner = ProcessRunner([pythonForUmamba(), "-m", "umamba", "--version"]).start()
    events = runner.wait(timeout=60)
    assert events[-1]["returncode"] == 0
    assert any("umamba" in e.get("message", "") for e in events if e["event"] == "output")
    runner.cancel()
    assert runner.cancelled is False


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX branch")
def test_missing_executable_raises_before_anything_runs(tmp_path):
    with pytest.raises(FileNotFoundError):
        ProcessRunner([str(tmp_path / "no-such-python"), "-m", "umamba"]).start()


def test_python_executable_prefers_pythonslicer_and_never_the_slicer_application(tmp_path, monkeypatch):
    from UMambaSegmentationLib import UmambaCommand
    monkeypatch.delenv(UmambaCommand.PYTHON_ENV_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    # Inside Slicer, sys.executable may be the application: running it with -m umamba would open a second Slicer.
    slicer_app = tmp_path / "bin" / "Slicer"
    slicer_app.parent.mkdir()
    slicer_app.write_text("")
    monkeypatch.setattr(sys, "executable", str(slicer_app))
    with pytest.raises(FileNotFoundError, match=UmambaCommand.PYTHON_ENV_VARIABLE):
        UmambaCommand.findPythonExecutable()
    python_slicer = tmp_path / "bin" / ("PythonSlicer.exe" if sys.platform == "win32" else "PythonSlicer")
    python_slicer.write_text("")
    assert UmambaCommand.findPythonExecutable() == str(python_slicer)
    monkeypatch.setenv(UmambaCommand.PYTHON_ENV_VARIABLE, "/opt/custom/python3")
    assert UmambaCommand.findPythonExecutable() == "/opt/custom/python3"
    assert UmambaCommand.umambaCommand(["predict", "-i", 1], "/py") == \
        ["/py", "-m", "umamba", "predict", "-i", "1", "--progress-json"]
