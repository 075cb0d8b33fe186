"""Cruddur's backend: micro-blogging on PostgreSQL, and the tools to run its database."""
