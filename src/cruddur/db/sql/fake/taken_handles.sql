-- Which of the handles about to be added some user already has.
SELECT handle FROM public.users WHERE handle = ANY(%(handles)s)
