"""The error hierarchy's command-line helper."""

from __future__ import annotations

import pytest


def test_run_cli_turns_engine_errors_into_status_2(capsys):
    from engine.errors import DatasetError, run_cli

    assert run_cli(lambda: None) == 0
    assert run_cli(lambda: 1) == 1

    def fails() -> None:
        raise DatasetError("no such dataset")

    assert run_cli(fails) == 2
    assert capsys.readouterr().err == "error: no such dataset\n"
    with pytest.raises(ZeroDivisionError):  # a bug is not the user's mistake: it propagates
        run_cli(lambda: 1 // 0)
