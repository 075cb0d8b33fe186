-- What of this database a role owns or may create in, itself or through a role it
-- belongs to: an application role that does could change the schema, or make tables of
-- its own (its attributes and memberships are role_facts.sql's). No row: no such role.
SELECT ARRAY(
  SELECT found.what FROM (
    SELECT 0 AS rank, 'owns the database' AS what
    FROM pg_database AS d
    WHERE d.datname = current_database() AND pg_has_role(r.oid, d.datdba, 'MEMBER')
    UNION ALL
    SELECT 1, 'owns the schema ' || quote_ident(n.nspname)
    FROM pg_namespace AS n
    WHERE pg_has_role(r.oid, n.nspowner, 'MEMBER')
    UNION ALL
    SELECT 2, CASE c.relkind WHEN 'S' THEN 'owns the sequence ' ELSE 'owns the table ' END
              || quote_ident(c.relname)
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND pg_has_role(r.oid, c.relowner, 'MEMBER')
    UNION ALL
    -- Granted to it (or a role it is in), or to PUBLIC (grantee 0), which every role is
    -- in; but for PUBLIC's create in public, which PostgreSQL 14 and older give and
    -- grant.sql takes back. Any schema: a table of its own in another is still a table
    -- made in Cruddur's database.
    SELECT 3, 'may create in the schema ' || quote_ident(n.nspname)
    FROM pg_namespace AS n, aclexplode(n.nspacl) AS a
    WHERE a.privilege_type = 'CREATE'
      AND (CASE WHEN a.grantee = 0 THEN n.nspname <> 'public'
                ELSE pg_has_role(r.oid, a.grantee, 'MEMBER') END)
    UNION ALL
    SELECT 4, 'may create schemas in the database'
    FROM pg_database AS d, aclexplode(d.datacl) AS a
    WHERE d.datname = current_database() AND a.privilege_type = 'CREATE'
      AND (CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(r.oid, a.grantee, 'MEMBER') END)
    UNION ALL
    -- grant.sql takes TEMPORARY from PUBLIC; one granted to the role itself stayed.
    SELECT 5, 'may create temporary tables in the database'
    FROM pg_database AS d, aclexplode(d.datacl) AS a
    WHERE d.datname = current_database() AND a.privilege_type = 'TEMPORARY'
      AND a.grantee <> 0 AND pg_has_role(r.oid, a.grantee, 'MEMBER')
    UNION ALL
    -- Anything else of this database it owns (a function, a type, a table in another
    -- schema, a large object): its owner may drop or alter it, or make a function
    -- SECURITY DEFINER. Schemas and public's tables are said above.
    SELECT 6, 'owns the ' || pg_describe_object(s.classid, s.objid, s.objsubid)
    FROM pg_shdepend AS s
    WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND s.refclassid = 'pg_authid'::regclass AND s.deptype = 'o'
      AND pg_has_role(r.oid, s.refobjid, 'MEMBER')
      AND s.classid <> 'pg_namespace'::regclass
      AND NOT (s.classid = 'pg_class'::regclass AND EXISTS (
        SELECT 1 FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE c.oid = s.objid AND n.nspname = 'public'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')))
  ) AS found
  ORDER BY found.rank, found.what
  LIMIT 4
)
FROM pg_roles AS r
WHERE r.rolname = %(role)s
