SELECT (SELECT count(*) FROM public.users) AS users,
       (SELECT count(*) FROM public.activities) AS activities
