"""The pages, one file each; `app.py` runs them with st.navigation. They render only."""
