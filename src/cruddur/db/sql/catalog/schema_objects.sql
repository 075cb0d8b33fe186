-- Every object a migration can make, each as one line of text, for comparing two
-- databases: tables, columns (position, type, NOT NULL, default), constraints, indexes,
-- functions, triggers, extensions. System schemas, extensions' own objects and the
-- migrations' bookkeeping table are left out.
WITH relations AS (
  SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) AS name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\_%'
    AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    AND c.oid <> coalesce(to_regclass('public.schema_migrations'), 0)
    AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
    )
)
SELECT 'table' AS kind, format('%s (relkind %s)', r.name, r.relkind) AS item
FROM relations r
UNION ALL
SELECT 'column',
       format('%s.%I #%s %s%s%s', r.name, a.attname,
              row_number() OVER (PARTITION BY r.oid ORDER BY a.attnum),
              format_type(a.atttypid, a.atttypmod),
              CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
              coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), ''))
FROM relations r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint', format('%s %I %s', r.name, co.conname, pg_get_constraintdef(co.oid))
FROM relations r
JOIN pg_constraint co ON co.conrelid = r.oid
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid)
FROM relations r
JOIN pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid)
FROM relations r
JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'function', pg_get_functiondef(p.oid)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_%'
  AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  )
UNION ALL
SELECT 'extension', extname
FROM pg_extension
WHERE extname <> 'plpgsql'
ORDER BY 1, 2
