"""Streamlit glue shared by the pages: cached services and the admin gate."""
