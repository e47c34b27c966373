-- docs/reference.md, generated from the installed catalog (scripts/reference): every
-- function, view and table of the extension with its signature, columns and COMMENT.
\pset format unaligned
\pset tuples_only on
\pset footer off
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_statemachine'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
funcs AS (
    SELECT p.oid, p.proname, pg_get_function_arguments(p.oid) AS args,
           CASE WHEN p.prorettype = 'event_trigger'::regtype THEN 'event_trigger'
                WHEN p.prorettype = 'trigger'::regtype THEN 'trigger'
                ELSE pg_get_function_result(p.oid) END AS result,
           p.provolatile, p.prosecdef, p.prokind, l.lanname,
           coalesce(obj_description(p.oid, 'pg_proc'), '**(no comment)**') AS comment
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
      JOIN pg_language l ON l.oid = p.prolang),
rels AS (
    SELECT c.oid, c.relname, c.relkind, coalesce(obj_description(c.oid, 'pg_class'), '**(no comment)**') AS comment
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
     WHERE c.relkind IN ('r', 'v')),
cols AS (
    SELECT r.oid, string_agg(format('| `%s` | `%s` | %s |', a.attname, format_type(a.atttypid, a.atttypmod),
                                    replace(coalesce(col_description(r.oid, a.attnum), '**(no comment)**'), '|', '\|')),
                             E'\n' ORDER BY a.attnum) AS rows
      FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
     GROUP BY r.oid)
SELECT string_agg(section, E'\n' ORDER BY ord, name) FROM (
    SELECT 0 AS ord, '' AS name, E'# SQL reference\n\n'
        || E'Generated from the installed catalog by `scripts/reference` (do not edit by hand; the test suite\n'
        || E'regenerates it and fails on any difference). Every object lives in schema `statemachine`.\n'
        || E'Concepts and examples: [concepts](concepts.md), [tutorial](tutorial.md), [README](../README.md).\n\n'
        || format(E'%s functions, %s views, %s tables.\n', (SELECT count(*) FROM funcs),
                  (SELECT count(*) FROM rels WHERE relkind = 'v'), (SELECT count(*) FROM rels WHERE relkind = 'r'))
        || E'\n## Functions\n' AS section
    UNION ALL
    SELECT 1, f.proname || '(' || f.args || ')',
           format(E'### statemachine.%s\n\n```sql\n%sstatemachine.%s(%s)%s\n```\n\n%s, %s%s.\n\n%s\n',
                  f.proname, CASE WHEN f.prokind = 'p' THEN 'CALL ' ELSE '' END, f.proname, f.args,
                  CASE WHEN f.prokind = 'p' THEN '' ELSE E'\n  RETURNS ' || f.result END,
                  CASE f.lanname WHEN 'c' THEN 'C' WHEN 'sql' THEN 'SQL' WHEN 'plpgsql' THEN 'PL/pgSQL' ELSE f.lanname END,
                  CASE WHEN f.prokind = 'p' THEN 'procedure' WHEN f.provolatile = 'i' THEN 'immutable' WHEN f.provolatile = 's' THEN 'stable' ELSE 'volatile' END,
                  CASE WHEN f.prosecdef THEN ', security definer' ELSE '' END, f.comment)
      FROM funcs f
    UNION ALL
    SELECT 2, '', E'\n## Views\n'
    UNION ALL
    SELECT 3, r.relname, format(E'### statemachine.%s\n\n%s\n\n| column | type | meaning |\n|---|---|---|\n%s\n', r.relname, r.comment, c.rows)
      FROM rels r JOIN cols c ON c.oid = r.oid WHERE r.relkind = 'v'
    UNION ALL
    SELECT 4, '', E'\n## Tables\n'
    UNION ALL
    SELECT 5, r.relname, format(E'### statemachine.%s\n\n%s\n\n| column | type | meaning |\n|---|---|---|\n%s\n', r.relname, r.comment, c.rows)
      FROM rels r JOIN cols c ON c.oid = r.oid WHERE r.relkind = 'r'
) s;
