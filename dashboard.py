"""RobustLens dashboard: entry page.

Thin UI only (house rule 1): everything it shows comes from the engine.
The full dashboard (recap curves, live lab, explorer, report) is built on top
of this page; for now it shows what the engine offers and how to use it.
"""

from __future__ import annotations

import streamlit as st

import engine
from engine import datasets

st.set_page_config(page_title="RobustLens", page_icon="🛡️", layout="wide")

st.title("RobustLens")
st.markdown(
    "How easily can an image classifier be fooled by imperceptible changes, "
    "and which input defences win the right answer back?"
)

st.subheader("Datasets")
rows = []
for spec in datasets.REGISTRY.values():
    rows.append(
        {
            "id": spec.id,
            "dataset": spec.title,
            "classes": ", ".join(spec.classes) or "(from the folder)",
            "positive (sick) classes": ", ".join(spec.positive) or "-",
            "licence": spec.licence,
        }
    )
st.dataframe(rows, hide_index=True, use_container_width=True)

st.subheader("Try the engine")
st.code(
    "python -m engine.train --dataset synthetic --backbone tiny --weights none\n"
    "python -m engine.datasets list",
    language="bash",
)
st.caption(
    f"Engine {engine.__version__}. Pixel convention: RGB, 0-255, ε in the same units "
    "(ε = 8 means 8/255 of the range)."
)
