"""Problems found while inspecting a source folder, and the one report that lists them all.

Intake never stops at the first problem: it reads every case, collects every problem, and raises one
`IntakeError` whose message lists them per case, so a person can fix the whole folder in one go.
"""

from __future__ import annotations

from dataclasses import dataclass

from umamba.errors import UserError

DATASET = "(dataset)"  # the `case` of problems that concern the folder as a whole


@dataclass(frozen=True)
class Problem:
    case: str          # case id, or DATASET
    message: str       # what is wrong, in words a person can act on
    file: str = ""     # the file concerned (name relative to the source folder), if any

    def to_dict(self) -> dict:
        return {"case": self.case, "file": self.file or None, "message": self.message}

    def line(self) -> str:
        where = f" [{self.file}]" if self.file else ""
        return f"{self.message}{where}"


def format_report(problems: list[Problem]) -> str:
    """One text block: problems grouped by case, dataset-wide problems first."""
    by_case: dict[str, list[Problem]] = {}
    for p in problems:
        by_case.setdefault(p.case, []).append(p)
    order = sorted(by_case, key=lambda c: (c != DATASET, c))
    n_cases = sum(1 for c in by_case if c != DATASET)
    head = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    if n_cases:
        head += f" in {n_cases} case{'s' if n_cases != 1 else ''}"
    lines = [head + "; nothing was written:"]
    for case in order:
        lines.append(f"  {case}:" if case != DATASET else "  whole dataset:")
        lines.extend(f"    - {p.line()}" for p in by_case[case])
    return "\n".join(lines)


class IntakeError(UserError):
    """The source folder cannot become a dataset; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]):
        super().__init__(format_report(problems),
                         "fix the files listed above (or remove those cases from the folder) and run the import again")
        self.problems = list(problems)
