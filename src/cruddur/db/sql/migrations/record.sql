INSERT INTO public.schema_migrations (version, name, checksum, adopted)
VALUES (%(version)s, %(name)s, %(checksum)s, %(adopted)s)
