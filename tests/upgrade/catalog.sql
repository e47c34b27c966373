-- Everything the extension owns, as text that does not depend on OIDs: used to prove that
-- an upgraded database and a fresh install of the same version are the same.
WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'pg_statemachine'),
rels AS (SELECT c.oid, c.relname, c.relkind FROM pg_class c WHERE c.relnamespace = 'statemachine'::regnamespace)
SELECT 'member ' || pg_describe_object(d.classid, d.objid, 0)
  FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
UNION ALL
SELECT 'config_dump ' || (SELECT string_agg(r::regclass::text || ' ' || coalesce(c, ''), ', ' ORDER BY r::regclass::text)
                            FROM ext, unnest(ext.extconfig, ext.extcondition) u(r, c))
UNION ALL
SELECT format('relation %s kind=%s acl=%s comment=%s', r.relname, r.relkind, c.relacl, obj_description(r.oid, 'pg_class'))
  FROM rels r JOIN pg_class c ON c.oid = r.oid
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s comment=%s', r.relname, a.attname, format_type(a.atttypid, a.atttypmod),
              a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), col_description(r.oid, a.attnum))
  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
UNION ALL
SELECT format('constraint %s.%s %s deferrable=%s', r.relname, k.conname, pg_get_constraintdef(k.oid), k.condeferrable)
  FROM rels r JOIN pg_constraint k ON k.conrelid = r.oid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM rels r JOIN pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT format('trigger %s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
  FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT format('view %s %s', r.relname, pg_get_viewdef(r.oid)) FROM rels r WHERE r.relkind = 'v'
UNION ALL
SELECT format('function %s acl=%s comment=%s %s', p.oid::regprocedure, p.proacl, obj_description(p.oid, 'pg_proc'),
              CASE WHEN p.prokind = 'a' THEN '' ELSE pg_get_functiondef(p.oid) END)
  FROM pg_proc p WHERE p.pronamespace = 'statemachine'::regnamespace
UNION ALL
SELECT format('type %s', t.typname) FROM pg_type t WHERE t.typnamespace = 'statemachine'::regnamespace
UNION ALL
SELECT format('event trigger %s on %s tags=%s enabled=%s function=%s', e.evtname, e.evtevent, e.evttags, e.evtenabled, e.evtfoid::regproc)
  FROM pg_event_trigger e
ORDER BY 1;
