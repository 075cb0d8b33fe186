UPDATE public.schema_migrations SET checksum = %(checksum)s WHERE version = %(version)s
