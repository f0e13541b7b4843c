"""Every dashboard page renders without an exception (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_home_page_renders_and_lists_datasets():
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    assert not at.exception
    assert "RobustLens" in at.title[0].value
    ids = list(at.dataframe[0].value["id"])
    assert "synthetic" in ids and "chest_xray" in ids
