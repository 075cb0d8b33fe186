"""Cruddur's use cases, one module each: what the API does, without HTTP in it."""
