"""Allow `python -m dsrdiag`, the same as the `dsrdiag` console script."""

from dsrdiag.cli.main import run

run()
