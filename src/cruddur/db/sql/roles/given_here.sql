-- The application roles this database was given (by `db roles` or `db setup`), to grant
-- them their privileges again after tables were made anew: the roles allowed to CONNECT
-- to it that `db roles` marked as Cruddur's (a comment on the role), whatever their
-- names; unmarked, only the default names count (roles made before the mark). Another
-- role someone allowed to connect is left alone.
SELECT r.rolname AS role,
       CASE
         WHEN s.description = %(api_mark)s OR (s.description IS NULL AND r.rolname = %(api)s)
           THEN 'api'
         ELSE 'lambda'
       END AS kind
FROM pg_database d
CROSS JOIN LATERAL aclexplode(d.datacl) a
JOIN pg_roles r ON r.oid = a.grantee
LEFT JOIN pg_shdescription s
  ON s.objoid = r.oid AND s.classoid = 'pg_authid'::regclass
WHERE d.datname = current_database()
  AND a.privilege_type = 'CONNECT'
  AND (
    s.description IN (%(api_mark)s, %(lambda_mark)s)
    OR (s.description IS NULL AND r.rolname IN (%(api)s, %(lambda)s))
  )
ORDER BY r.rolname
