"""The dashboard's pages, in menu order: one declaration for the router, links and tests."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAGES", "PageInfo"]


@dataclass(frozen=True)
class PageInfo:
    """One page: its file, menu title, icon and URL path.

    Page files live in ``app_pages/``, not ``pages/``: Streamlit treats a
    ``pages/`` folder as an old-style multipage app and, on a deep link after a
    restart, runs the page without this router (no picker, no layout).
    """

    file: str
    title: str
    icon: str
    url_path: str
    blurb: str


PAGES: list[PageInfo] = [
    PageInfo("app_pages/home.py", "Home", "🛡️", "", "What this model resists, in three numbers."),
    PageInfo(
        "app_pages/recap.py",
        "Recap curves",
        "📈",
        "recap",
        "Every metric against attack strength, for every defence setting, on the test set.",
    ),
    PageInfo(
        "app_pages/lab.py",
        "Live lab",
        "🧪",
        "lab",
        "Attack one image, defend it, and watch the label flip and come back.",
    ),
    PageInfo(
        "app_pages/explorer.py",
        "Explorer",
        "🔭",
        "explorer",
        "Sweep ε or a defence parameter live on a few test images, over the curve.",
    ),
    PageInfo(
        "app_pages/models.py",
        "Models & data",
        "🗂️",
        "models",
        "Model cards, dataset cards with licences, and how each result was made.",
    ),
    PageInfo(
        "app_pages/report.py",
        "Report",
        "📄",
        "report",
        "Assemble a self-contained HTML report for stakeholders.",
    ),
]
