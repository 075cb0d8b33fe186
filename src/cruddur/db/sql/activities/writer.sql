-- A fragment, not a query: the first CTE of every write (crud_created.sql,
-- reply_created.sql), `writer`, the author's users row: %(user_uuid)s, the uuid this
-- process keeps for the token's subject (services/users.py), only while its
-- cognito_user_id is still that subject, %(cognito_user_id)s. A row deleted, or given
-- another subject since (`users sync-cognito`), leaves `writer` empty: nothing is
-- written, and the statement answers no row at all (created_json.sql, kept_answer.sql),
-- which services/activities.py reads as the author gone. A primary-key lookup, in the
-- write's own statement: no round trip of its own.
WITH writer AS (
  SELECT author.uuid
  FROM public.users AS author
  WHERE author.uuid = %(user_uuid)s::uuid
    AND author.cognito_user_id = %(cognito_user_id)s
)
