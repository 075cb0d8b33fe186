-- How many of the uuids about to be added are already users'.
SELECT count(*) FROM public.users WHERE uuid = ANY(%(uuids)s::uuid[])
