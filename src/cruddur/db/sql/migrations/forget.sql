DELETE FROM public.schema_migrations WHERE version = %(version)s
