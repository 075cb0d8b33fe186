"""Versioned migrations: dbmate's file format, with a lock, checksums and adoption."""
