"""Report: a self-contained HTML file for stakeholders who are not ML experts."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import labels, report, views
from engine.evaluation import query
from ui import common, widgets

entry = common.current()
st.title("Report")
st.markdown(
    "Assemble a report to share: the headline numbers, the charts you choose, a live "
    "example, the threat-model caveats and the data credits, in **one HTML file** that "
    "opens offline in any browser. For a PDF, open it and use *Print → Save as PDF* "
    "(the print layout is built in)."
)
loaded = common.results(entry)
if entry.meta is None or loaded is None:
    if entry.meta is None:
        common.no_model(entry)
    else:
        st.info("A report needs precomputed recap curves for this model.")
    st.stop()
df, manifest = loaded
status = common.results_status(entry)
if not status.ok:
    st.warning(status.message() + " The report will say so.", icon="⚠️")

c1, c2 = st.columns(2)
title = c1.text_input(
    "Title", f"How robust is our {entry.title} classifier?", key="rep_title", max_chars=120
)
subtitle = c2.text_input(
    "Subtitle", f"Adversarial attacks and input defences · {entry.key}", key="rep_subtitle"
)
if not query.attacked(df):
    st.info(widgets.NO_ATTACKED_ROWS)
    st.stop()
c3, c4 = st.columns(2)
attack = c3.selectbox(
    "Attack", query.attacked(df), format_func=labels.attack_title, key="rep_attack"
)
eps_values = [e for e in query.eps_values(df, attack, query.NO_DEFENCE) if e > 0]
eps = c4.select_slider(
    "Budget for the headline, trade-off and confusion parts (ε, 0–255 levels)",
    eps_values,
    value=8.0 if 8.0 in eps_values else eps_values[-1],
    key="rep_eps",
)
parts = st.multiselect(
    "Include",
    list(report.REPORT_PARTS),
    default=list(report.REPORT_PARTS),
    format_func=report.REPORT_PARTS.get,
    key="rep_parts",
)


def _example() -> Any:
    """The live example: the first test image the recap's best defence restores."""
    case = views.demo_case(df, common.per_image(entry), attack=attack, eps=eps)
    if case is None or not case.restored:
        return None
    index = common.test_split(entry.dataset_id)
    if index is None:
        return None
    i = case.restored[0]
    return common.worker().lab(
        str(entry.model_dir),
        index.image(i),
        label=int(index.labels[i]),
        attack=attack,
        attack_params={"eps": case.eps},
        defence=case.defence_spec,
    )


if st.button("Build the report", type="primary", key="rep_build", disabled=not parts):
    with common.friendly_errors("The report could not be built"), st.spinner("Building…"):
        example = _example() if "example" in parts else None
        if "example" in parts and example is None:
            st.info(
                "No live example: the test images are not on this machine, or the recap "
                "kept no per-image records. The rest of the report is complete."
            )
        html_text = report.robustness_report(
            df=df,
            manifest=manifest,
            meta=entry.meta,
            title=title or entry.title,
            subtitle=subtitle,
            attack=attack,
            eps=eps,
            parts=parts,
            example=example,
            models=common.model_table(entry, attack, common.variant_budgets(entry, attack, eps)),
        )
        st.session_state["rep_html"] = html_text.encode("utf-8")
        st.session_state["rep_name"] = f"robustlens_report_{entry.key}.html"

if "rep_html" in st.session_state:
    data = st.session_state["rep_html"]
    st.success(f"Report ready: {len(data) / 1e6:.1f} MB, self-contained (works offline).")
    st.download_button(
        "Download the report (HTML)",
        data,
        file_name=st.session_state["rep_name"],
        mime="text/html",
        key="rep_download",
    )
st.caption(
    "Every number in the report carries its threat model; the data's licence and "
    "attribution and how each result was made are included."
)
