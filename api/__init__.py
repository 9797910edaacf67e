"""The desk's HTTP front end (FastAPI), beside the pages and the command line; no Streamlit here."""
