-- Which of the handles about to be added some user already has, in any case (two handles
-- that differ only in case cannot both exist: users_handle_any_case_key). Each as given.
SELECT wanted.handle
FROM unnest(%(handles)s::text[]) AS wanted (handle)
WHERE EXISTS (SELECT 1 FROM public.users WHERE lower(users.handle) = lower(wanted.handle))
   -- The seed's (seed.sql), kept for it though not there yet: a fake andrewbrown made the
   -- seed leave out its own.
   OR lower(wanted.handle) IN ('andrewbrown', 'bayko', 'londo')
