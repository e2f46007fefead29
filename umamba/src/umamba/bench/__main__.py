"""`python -m umamba.bench SUB ...` is `umamba bench SUB ...`."""
import sys

from umamba.cli import main

raise SystemExit(main(["bench", *sys.argv[1:]]))
