-- Every table of the database (the extension's and the application's), as one line:
-- row count and a checksum of all its rows.
-- Left out: statemachine.break_glass_event, where a restore adds its own audited row, and
-- public.tamper_log (fill.sql), where the hostile check logs its attempts during the
-- restore too; tests/backup/run compares the rows it had in the source separately.
-- Columns named in the setting sm.skip_columns (comma-separated) are left out of each row:
-- tests/upgrade/run compares rows before and after an upgrade that adds columns.
SELECT format('%I.%I', n.nspname, c.relname) || ' ' || (xpath('/row/c/text()', query_to_xml(format(
         'SELECT count(*) || '':'' || coalesce(md5(string_agg(r, ''|'' ORDER BY r)), '''') AS c
            FROM (SELECT (to_jsonb(t) - string_to_array(coalesce(current_setting(''sm.skip_columns'', true), ''''), '',''))::text AS r
                    FROM %I.%I t) x',
         n.nspname, c.relname), false, true, '')))[1]::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
   AND (n.nspname, c.relname) NOT IN (('statemachine', 'break_glass_event'), ('public', 'tamper_log'))
 ORDER BY 1;
