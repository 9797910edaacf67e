"""The HTTP API: FastAPI on uvicorn over the same core as the pages and the command line (no Streamlit).

`api.app.create_app(services)` builds the app; each area's routes are a router in `api/routes_*.py`,
listed in `api.app.ROUTERS`, the Chatwoot agent bot's webhook (`api/webhooks_in.py`) among them.
`python -m chatbot serve` (or `make api`) serves it.
"""
