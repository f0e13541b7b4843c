"""Streamlit glue shared by the dashboard's pages (no computation lives here)."""
