"""The console and the REST API (FastAPI): the app, auth, pages per group, templates, static."""
