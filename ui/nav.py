"""The dashboard's pages, in menu order: one declaration for the router, links and tests."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAGES", "PageInfo"]


@dataclass(frozen=True)
class PageInfo:
    """One page: its file under ``pages/``, menu title, icon and URL path."""

    file: str
    title: str
    icon: str
    url_path: str
    blurb: str


PAGES: list[PageInfo] = [
    PageInfo("pages/home.py", "Home", "🛡️", "", "What this model resists, in three numbers."),
    PageInfo(
        "pages/recap.py",
        "Recap curves",
        "📈",
        "recap",
        "Every metric against attack strength, for every defence setting, on the test set.",
    ),
    PageInfo(
        "pages/lab.py",
        "Live lab",
        "🧪",
        "lab",
        "Attack one image, defend it, and watch the label flip and come back.",
    ),
    PageInfo(
        "pages/explorer.py",
        "Explorer",
        "🔭",
        "explorer",
        "Sweep ε or a defence parameter live on a few test images, over the curve.",
    ),
    PageInfo(
        "pages/models.py",
        "Models & data",
        "🗂️",
        "models",
        "Model cards, dataset cards with licences, and how each result was made.",
    ),
    PageInfo(
        "pages/report.py",
        "Report",
        "📄",
        "report",
        "Assemble a self-contained HTML report for stakeholders.",
    ),
]
