-- Every table of the extension, as one line: row count and a checksum of all its rows.
-- break_glass_event is left out: a restore adds its own audited row there.
SELECT c.relname || ' ' || (xpath('/row/c/text()', query_to_xml(format(
         'SELECT count(*) || '':'' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), '''') AS c FROM statemachine.%I t',
         c.relname), false, true, '')))[1]::text
  FROM pg_class c
 WHERE c.relnamespace = 'statemachine'::regnamespace AND c.relkind = 'r' AND c.relname <> 'break_glass_event'
 ORDER BY c.relname;
