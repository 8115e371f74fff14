"""Metadata storage: SQLAlchemy Core tables, the Database handle, and repositories.

All SQL lives in the repository modules of this package; services own the unit of work
(`Database.transaction()`), nothing else commits.
"""
