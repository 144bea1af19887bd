"""The database: schema, engines, journal, work-queue tables, chart and document stores,
content store, deficiencies, migrations (SQLAlchemy Core; SQLite and PostgreSQL).
"""
