"""The product speaks only of itself: no file of the repository (README, BENCHMARKS, docs, code, tests, packaging)
says how the work on it was organised (who did what, in which round, under which ticket), points into scratch
folders, or cites documents that a clone does not have. A fact the code relies on is written in the repository
(docs/architecture.md) or next to the code that needs it. Commit messages are the place for history.

Each pattern below says why it is there; each is narrow enough that the product's own words ("helper function",
a process "session", pytest's "session" scope, "issue" as in instruction issue, `/tmp/x.txt` as a test input)
do not match. A failure lists every file:line with the word, so it can be fixed where it stands.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()

# (pattern, why it does not belong in the product); case-insensitive unless the pattern says (?-i:...)
WORDS = [
    (r"\bhelpers?\s+H\d", "names a person who worked on it (e.g. 'helper H4')"),
    (r"(?-i:\bH\d[a-z]?\b)", "a worker's tag such as H3a or H2's (an H200 GPU does not match)"),
    (r"\bhelpers'|\bother helpers\b", "helpers as people (a 'helper function' does not match)"),
    (r"\bsession \d+\b|\b(this|previous|earlier|next) session\b", "a round of work (process and pytest sessions "
                                                                   "do not match)"),
    (r"\bround \d+\b|\bround of work\b", "a round of work"),
    (r"\bissue #?\d+\b|\bthe issue's\b|\bissue \(#?\d+\)", "a ticket of the work's tracker"),
    (r"\btickets?\b", "a ticket of the work's tracker"),
    (r"(?<![\w.])/tmp/[\w.-]+/", "a scratch folder of the machine it was made on"),
    (r"\.\./shared/docs|\bshared/docs/", "a document outside the repository (a clone has no ../shared)"),
    (r"\bgpu-baseline\.md\b|\bumamba-architecture\.md\b", "a document outside the repository"),
    (r"\bspec §|§\s?\d|\barchitecture spec\b", "a section of a specification not in the repository: point into "
                                               "docs/architecture.md or state the fact"),
]
COMPILED = [(re.compile(p, re.IGNORECASE), why) for p, why in WORDS]
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".ini", ".cfg", ".json", ".ui", ".cmake", ".yml", ".yaml", ".sh",
                 ".in", ""}


def product_files() -> list[Path]:
    """Tracked files (a clone's content), or every file outside .git when this is not a git checkout; never the
    CI folder (.ci) or this test's own pattern list."""
    proc = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        names = proc.stdout.splitlines()
    else:
        names = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*") if p.is_file()]
    skip_dirs = {".git", ".ci", ".venv", "__pycache__"}
    return [REPO / n for n in names
            if n != THIS and not skip_dirs & set(Path(n).parts) and (REPO / n).is_file()
            and (Path(n).suffix in TEXT_SUFFIXES or Path(n).name in ("Makefile", "CMakeLists.txt", "LICENSE"))]


def findings(files) -> list[str]:
    found = []
    for path in files:
        name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(lines, 1):
            for pattern, why in COMPILED:
                for match in pattern.finditer(line):
                    found.append(f"{name}:{number}: {match.group(0)!r} — {why}")
    return found


def test_no_file_speaks_of_how_the_work_was_organised():
    files = product_files()
    assert any(f.name == "README.md" for f in files) and any(f.suffix == ".py" for f in files)
    found = findings(files)
    assert not found, "words about how the work was organised (fix each where it stands):\n" + "\n".join(found)


def test_the_patterns_catch_what_they_are_for_and_spare_the_product_words(tmp_path):
    bad = ["# Segmentation (helper H4)", "measured by H3a", "Session 1's kernels", "in round 2", "see issue #7",
           "the issue's target", "written to /tmp/h3b/demo", "../shared/docs/umamba-architecture.md", "(spec §4)",
           "other helpers' jobs", "ticket 12"]
    good = ["a helper function", "start_new_session=True", "@pytest.fixture(scope='session')", "one H200 GPU",
            "issue-bound: 0.46 instructions issued per cycle", "'/tmp/absolute.txt' is refused", "h0 = a0 * h",
            "the first session's chart", "../shared/data when present", "docs/architecture.md, Mamba layers"]
    sample = tmp_path / "sample.md"
    for line in bad:
        sample.write_text(line)
        assert findings([sample]), f"not caught: {line!r}"
    sample.write_text("\n".join(good))
    assert findings([sample]) == []
