"""RobustLens dashboard: the router. Run with ``make run`` (``streamlit run dashboard.py``).

Thin UI only (house rule 1): pages describe the interface and call the engine.
The dataset/backbone picker lives here, so the choice follows the user across
pages.
"""

from __future__ import annotations

import streamlit as st

from ui import common
from ui.nav import PAGES

st.set_page_config(page_title="RobustLens", page_icon="🛡️", layout="wide")

pages = [
    st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path)
    for p in PAGES
]
nav = st.navigation(pages)
entry = common.picker()
common.sidebar_status(entry)
nav.run()
