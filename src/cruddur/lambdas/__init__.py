"""AWS Lambda handlers. Each imports as little as it can: `cruddur lambda package` ships
only the modules a handler needs (see cruddur.ops.packaging.HANDLER_FILES)."""
