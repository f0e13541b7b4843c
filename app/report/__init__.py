"""Stakeholder reports: one self-contained HTML file for readers who are not ML experts.

Modules
-------
:mod:`app.report.html`
    the generic builder (:func:`build_report`): title page, how-to-read box,
    threat model, sections, credits and provenance in one offline HTML file;
:mod:`app.report.section`
    one section (:class:`ReportSection`, :class:`ReportImage`) and the HTML of
    its parts (:func:`headline_cards`);
:mod:`app.report.text`
    escaping and the safe Markdown subset (:func:`markdown_to_html`);
:mod:`app.report.robustness`
    the dashboard's robustness report (:func:`robustness_report`) with its
    credit line and provenance rows.
"""

from app.report.html import CSP, HOW_TO_READ, KNOWN_THREAT_MODELS, build_report
from app.report.robustness import (
    REPORT_PARTS,
    bundle_provenance,
    dataset_credit,
    manifest_provenance,
    robustness_report,
)
from app.report.section import ReportImage, ReportSection, headline_cards
from app.report.text import markdown_to_html

__all__ = [
    "CSP",
    "HOW_TO_READ",
    "KNOWN_THREAT_MODELS",
    "REPORT_PARTS",
    "ReportImage",
    "ReportSection",
    "build_report",
    "bundle_provenance",
    "dataset_credit",
    "headline_cards",
    "manifest_provenance",
    "markdown_to_html",
    "robustness_report",
]
