-- Earlier fake users; their cruds (and any replies to those) go with them (ON DELETE CASCADE).
DELETE FROM public.users WHERE cognito_user_id LIKE %(pattern)s
