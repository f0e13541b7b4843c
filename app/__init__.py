"""Dashboard logic without Streamlit: labels, views, charts, reports, cards, catalog, worker."""
