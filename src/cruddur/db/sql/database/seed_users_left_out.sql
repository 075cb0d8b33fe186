-- The seed's handles that another user has (in any case), not the seed's own row (that
-- handle with the seed's email): seed.sql left out their seed user and cruds.
SELECT seed_user.handle
FROM (VALUES ('andrewbrown', 'andrew@exampro.co'), ('bayko', 'bayko@exampro.co'),
             ('londo', 'lmollari@centari.com')) AS seed_user (handle, email)
WHERE EXISTS (SELECT 1 FROM public.users
              WHERE lower(users.handle) = lower(seed_user.handle))
  AND NOT EXISTS (SELECT 1 FROM public.users
                  WHERE lower(users.handle) = seed_user.handle
                    AND lower(btrim(users.email)) = seed_user.email)
ORDER BY seed_user.handle
