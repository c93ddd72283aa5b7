"""Reports the suite's figures (kills, damaged variants, faults, identity cases) once the
tests have run: they are tallies kept by the tests, not tests themselves."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print (and record in ``$MEMO_FIGURES``) the figures of the modules that ran."""
    for name, module in sorted(sys.modules.items()):
        report = getattr(module, "report_figures", None)
        if name.startswith("tests.reliability.test_") and callable(report):
            report()
