-- Governed tables (issue 13): a user's own table keeps its status column, as a mirror
-- only the write path changes. Every refused write as superuser, table owner, app role
-- and in replica mode; every kind of transition keeps the mirror; INSERT creates the
-- case; DELETE of non-terminal rows refused; reconcile reports a mirror changed under
-- break_glass; the DDL guard and guard_weaknesses() cover the governed table's trigger.
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_statemachine;
CREATE ROLE sm_gov_owner;
CREATE ROLE sm_gov_app;
GRANT USAGE ON SCHEMA statemachine TO sm_gov_app, sm_gov_owner;
GRANT EXECUTE ON FUNCTION statemachine.govern_table(regclass, name, name, text, jsonb, uuid, text, uuid) TO sm_gov_owner, sm_gov_app;
GRANT EXECUTE ON FUNCTION statemachine.transition_to(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb) TO sm_gov_app;

SELECT statemachine.define_machine($${
  "machine": "gshop",
  "states": [{"code": "in stock", "initial": true}, {"code": "on order"}, {"code": "unavailable"}, {"code": "deleted", "terminal": true}],
  "transitions": [
    {"code": "order", "from": "in stock", "to": "on order"},
    {"code": "restock", "from": ["on order", "unavailable"], "to": "in stock"},
    {"code": "sell out", "from": ["in stock", "on order"], "to": "unavailable"},
    {"code": "delete", "from": "unavailable", "to": "deleted", "after": "5 years"}
  ]}$$) AS gshop_version;

-- Seed 004's shape: an integer foreign key into the user's own vocabulary table.
CREATE TABLE public.gov_status (status_id int PRIMARY KEY, status_uid text NOT NULL UNIQUE);
INSERT INTO public.gov_status VALUES (1, 'in stock'), (2, 'on order'), (3, 'unavailable'), (4, 'deleted');
CREATE TABLE public.gov_product (product_id int PRIMARY KEY, title text NOT NULL,
                                 status_id int REFERENCES public.gov_status);
ALTER TABLE public.gov_product OWNER TO sm_gov_owner;
CREATE TABLE public.gov_audit (who text, status_id int);
ALTER TABLE public.gov_audit OWNER TO sm_gov_owner;
GRANT CREATE ON SCHEMA public TO sm_gov_owner;
GRANT INSERT ON public.gov_audit TO sm_gov_app;
GRANT SELECT ON public.gov_status TO sm_gov_app;
GRANT SELECT ON statemachine.case_file TO sm_gov_app;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.gov_product TO sm_gov_app;
INSERT INTO public.gov_product VALUES (1, 'Charger', 1), (2, 'Filter', 2), (3, 'Lights', 1), (4, 'Mat', 4), (5, 'Speaker', 1);
-- Product 3's past is imported first: unavailable since 2019.
SELECT case_number, current_state FROM statemachine.import_cases('gshop', $$[
  {"case_number": "3", "steps": [{"state": "in stock", "at": "2013-08-07 02:46:21+02"}, {"state": "unavailable", "at": "2019-01-27 02:00:31+02"}]}
]$$, 'a2000000-0000-0000-0000-000000000001', 'IMPORTER', 'c2000000-0000-0000-0000-000000000001');

-- Only the table's owner may govern it; rows must agree with existing cases.
SET SESSION AUTHORIZATION sm_gov_app;
SELECT statemachine.govern_table('public.gov_product', 'product_id', 'status_id', 'gshop',
       (SELECT jsonb_object_agg(status_id, status_uid) FROM public.gov_status));
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION sm_gov_owner;
SELECT statemachine.govern_table('public.gov_product', 'product_id', 'status_id', 'gshop', '{"1": "in stock", "2": "on order", "3": "unavailable", "4": "deleted"}');
\echo :LAST_ERROR_SQLSTATE
-- A mapping must give every state exactly one value.
SELECT statemachine.govern_table('public.gov_product', 'product_id', 'status_id', 'gshop', '{"1": "in stock", "2": "on order", "3": "unavailable"}');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.govern_table('public.gov_product', 'product_id', 'nope', 'gshop');
\echo :LAST_ERROR_SQLSTATE
UPDATE public.gov_product SET status_id = 3 WHERE product_id = 3;
SELECT table_name, key_column, state_column, machine, state_values, governed_by
  FROM statemachine.govern_table('public.gov_product', 'product_id', 'status_id', 'gshop', '{"1": "in stock", "2": "on order", "3": "unavailable", "4": "deleted"}');
RESET SESSION AUTHORIZATION;
-- Every row is a case now: adopted at its value (one import row, marked), or its own.
SELECT c.case_number, c.current_state, c.state_version, t.transition_kind, t.metadata
  FROM statemachine.case_file c JOIN statemachine.case_state_transition t ON t.case_id = c.id AND t.state_version = c.state_version
 WHERE c.machine = 'gshop' ORDER BY c.case_number;

-- Refused: the state column and the key, as superuser ...
UPDATE public.gov_product SET status_id = 2 WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE public.gov_product SET product_id = 10 WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE public.gov_product;
\echo :LAST_ERROR_SQLSTATE
-- ... in replica mode ...
SET session_replication_role = replica;
UPDATE public.gov_product SET status_id = 2 WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM public.gov_product WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- ... as the table's owner (also its DDL: disabling, dropping or renaming what the guard needs) ...
SET SESSION AUTHORIZATION sm_gov_owner;
UPDATE public.gov_product SET status_id = 2 WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.gov_product DISABLE TRIGGER zz_statemachine_governed;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.gov_product DISABLE TRIGGER USER;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.gov_product ENABLE TRIGGER zz_statemachine_governed;
\echo :LAST_ERROR_SQLSTATE
ALTER TRIGGER zz_statemachine_governed ON public.gov_product RENAME TO mine;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER zz_statemachine_governed ON public.gov_product;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.gov_product RENAME COLUMN status_id TO status;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE public.gov_product DROP COLUMN status_id;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE public.gov_product;
\echo :LAST_ERROR_SQLSTATE
-- (the table stays the owner's: other DDL is fine, its own triggers included — which run
-- with the owner's rights when the write path writes the row, never the extension's)
ALTER TABLE public.gov_product ADD COLUMN price numeric;
ALTER TABLE public.gov_product RENAME COLUMN title TO name;
CREATE FUNCTION public.gov_audit_row() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN IF NEW.status_id IS DISTINCT FROM OLD.status_id THEN INSERT INTO public.gov_audit VALUES (current_user, NEW.status_id); END IF; RETURN NEW; END$$;
CREATE TRIGGER gov_product_audit BEFORE UPDATE ON public.gov_product FOR EACH ROW EXECUTE FUNCTION public.gov_audit_row();
-- A trigger of the owner's that sorts after the guard and rewrites the state column (or
-- the key) is caught by the AFTER check on the row as stored.
CREATE FUNCTION public.gov_sneak() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN IF NEW.name = 'sneak' THEN NEW.status_id := 4; ELSIF NEW.name = 'rekey' THEN NEW.product_id := 42; END IF; RETURN NEW; END$$;
CREATE TRIGGER zzzz_gov_sneak BEFORE INSERT OR UPDATE ON public.gov_product FOR EACH ROW EXECUTE FUNCTION public.gov_sneak();
UPDATE public.gov_product SET name = 'sneak' WHERE product_id = 5;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO public.gov_product (product_id, name, status_id) VALUES (50, 'rekey', 1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO public.gov_product (product_id, name, status_id) VALUES (51, 'sneak', 1);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER zzzz_gov_sneak ON public.gov_product;
DROP FUNCTION public.gov_sneak();
RESET SESSION AUTHORIZATION;
-- ... and as an application role with every table privilege (and nothing in schema
-- statemachine: writing its own table needs nothing there).
REVOKE USAGE ON SCHEMA statemachine FROM sm_gov_app;
SET SESSION AUTHORIZATION sm_gov_app;
UPDATE public.gov_product SET status_id = 2 WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE public.gov_product SET name = 'Charger 2' WHERE product_id = 1;
RESET SESSION AUTHORIZATION;
GRANT USAGE ON SCHEMA statemachine TO sm_gov_app;
SET SESSION AUTHORIZATION sm_gov_app;
UPDATE public.gov_product SET status_id = 2 WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE public.gov_product SET price = 9.99 WHERE product_id = 1;
DELETE FROM public.gov_product WHERE product_id = 1;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE public.gov_product;
\echo :LAST_ERROR_SQLSTATE
-- INSERT: in the initial state (or NULL) its case is created in the same statement.
INSERT INTO public.gov_product (product_id, name, status_id) VALUES (6, 'Juicer', 1), (7, 'Oven', NULL);
INSERT INTO public.gov_product (product_id, name, status_id) VALUES (8, 'Shoes', 3);
\echo :LAST_ERROR_SQLSTATE
SELECT product_id, name, status_id, price FROM public.gov_product ORDER BY product_id;
-- The write path moves the row: transition_to, as the application would.
SELECT to_state FROM statemachine.transition_to((SELECT id FROM statemachine.case_file WHERE machine = 'gshop' AND case_number = '6'),
       'on order', 'a2000000-0000-0000-0000-000000000002', 'CLERK', 'c2000000-0000-0000-0000-000000000002');
SELECT product_id, status_id FROM public.gov_product WHERE product_id = 6;
RESET SESSION AUTHORIZATION;
SELECT case_number, current_state FROM statemachine.case_file WHERE machine = 'gshop' AND case_number IN ('6', '7') ORDER BY 1;

-- Every kind of transition keeps the mirror: bulk, timers, corrections, migrations.
SELECT ok, to_state FROM statemachine.bulk_transition(
       ARRAY(SELECT id FROM statemachine.case_file WHERE machine = 'gshop' AND case_number IN ('1', '5') ORDER BY case_number),
       'sell out', 'a2000000-0000-0000-0000-000000000003', 'CLERK', NULL, NULL, 'c2000000-0000-0000-0000-000000000003');
SELECT transition_code, to_state FROM statemachine.run_due_transitions(10) WHERE to_state IS NOT NULL;
SELECT (statemachine.correct_transition(
         (SELECT t.id FROM statemachine.case_state_transition t JOIN statemachine.case_file c ON c.id = t.case_id
           WHERE c.machine = 'gshop' AND c.case_number = '5' AND t.transition_code = 'sell out'),
         'in stock', 'sold out by mistake', 'a2000000-0000-0000-0000-000000000004', 'ADMIN', 'c2000000-0000-0000-0000-000000000004')).to_state AS corrected_to;
SELECT product_id, status_id FROM public.gov_product ORDER BY product_id;
SELECT statemachine.define_machine($${
  "machine": "gshop",
  "states": [{"code": "in stock", "initial": true}, {"code": "on order"}, {"code": "unavailable"}, {"code": "deleted", "terminal": true}],
  "transitions": [
    {"code": "order", "from": "in stock", "to": "on order"},
    {"code": "restock", "from": ["on order", "unavailable"], "to": "in stock"},
    {"code": "sell out", "from": ["in stock", "on order"], "to": "unavailable"},
    {"code": "delete", "from": "unavailable", "to": "deleted", "after": "4 years"}
  ]}$$) AS gshop_v2;
SELECT case_number, from_state, to_state, outcome FROM statemachine.migrate_cases('gshop', 1, 2, '{"on order": "in stock"}',
       'a2000000-0000-0000-0000-000000000005', 'ADMIN', 'c2000000-0000-0000-0000-000000000005', dry_run => false)
 WHERE from_state <> to_state ORDER BY case_number;
SELECT product_id, status_id FROM public.gov_product ORDER BY product_id;
-- The owner's trigger saw every change of the status, each made by the write path as the owner.
SELECT who, count(*) FROM public.gov_audit GROUP BY who ORDER BY who;
-- A row whose case is terminal may go.
DELETE FROM public.gov_product WHERE product_id IN (3, 4);
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile() r LEFT JOIN statemachine.case_file c ON c.id = r.case_id
 WHERE c.machine IS NULL OR c.machine IN ('gshop', 'light');
SELECT * FROM statemachine.guard_weaknesses();

-- A mirror changed under break_glass is reported by reconcile().
BEGIN;
SELECT statemachine.break_glass('regress: a repair gone wrong') IS NOT NULL AS broken;
UPDATE public.gov_product SET status_id = 4 WHERE product_id = 2;
INSERT INTO public.gov_product (product_id, name, status_id) VALUES (99, 'Smuggled', 2);
SELECT current_state, derived_state, state_version, derived_version FROM statemachine.reconcile();
ROLLBACK;

-- An enum column, its labels the state codes (no mapping).
CREATE TYPE public.gov_light_colour AS ENUM ('red', 'green');
CREATE TABLE public.gov_light (name text PRIMARY KEY, colour public.gov_light_colour NOT NULL);
INSERT INTO public.gov_light VALUES ('north', 'red'), ('south', 'green');
SELECT statemachine.define_machine('{"machine": "light", "states": [{"code": "red", "initial": true}, {"code": "green"}],
  "transitions": [{"code": "go", "from": "red", "to": "green"}, {"code": "stop", "from": "green", "to": "red"}]}') AS light_version;
SELECT machine, state_values FROM statemachine.govern_table('public.gov_light', 'name', 'colour', 'light');
SELECT to_state FROM statemachine.transition_to((SELECT id FROM statemachine.case_file WHERE machine = 'light' AND case_number = 'north'),
       'green', 'a2000000-0000-0000-0000-000000000006', 'X', 'c2000000-0000-0000-0000-000000000006');
SELECT * FROM public.gov_light ORDER BY name;
UPDATE public.gov_light SET colour = 'red' WHERE name = 'south';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile() r LEFT JOIN statemachine.case_file c ON c.id = r.case_id
 WHERE c.machine IS NULL OR c.machine IN ('gshop', 'light');

-- Hostile shapes (red team, 0.4.0): a cast of the owner's from its enum to text (reads
-- go through output functions, never casts: nothing runs as the extension's owner), a
-- column name with a backslash and a quote under standard_conforming_strings = off
-- (quoted, not injected), a session search_path that sees the enum unqualified (the
-- mirror names types with their schema).
CREATE TABLE public.gov_cast_log (who text);
CREATE TYPE public.gov_lamp AS ENUM ('off', 'on');
CREATE FUNCTION public.gov_lamp_text(public.gov_lamp) RETURNS text LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO public.gov_cast_log VALUES (current_user); RETURN pg_catalog.textin(pg_catalog.enum_out($1)); END$$;
CREATE CAST (public.gov_lamp AS text) WITH FUNCTION public.gov_lamp_text(public.gov_lamp);
CREATE TABLE public.gov_lamp_row ("k\" int PRIMARY KEY, "s');--" public.gov_lamp);
INSERT INTO public.gov_lamp_row VALUES (1, 'off'), (2, 'on');
SELECT statemachine.define_machine('{"machine": "lamp", "states": [{"code": "off", "initial": true}, {"code": "on"}],
  "transitions": [{"code": "switch on", "from": "off", "to": "on"}, {"code": "switch off", "from": "on", "to": "off"}]}') AS lamp_version;
SET standard_conforming_strings = off;
SET escape_string_warning = off;
SELECT machine FROM statemachine.govern_table('public.gov_lamp_row', E'k\\', E's\');--', 'lamp');
RESET standard_conforming_strings;
RESET escape_string_warning;
SET search_path = public;
INSERT INTO gov_lamp_row VALUES (3, NULL);
SELECT to_state FROM statemachine.transition_to((SELECT id FROM statemachine.case_file WHERE machine = 'lamp' AND case_number = '3'),
       'on', 'a2000000-0000-0000-0000-000000000007', 'X', 'c2000000-0000-0000-0000-000000000007');
RESET search_path;
SELECT * FROM public.gov_lamp_row ORDER BY 1;
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile() r LEFT JOIN statemachine.case_file c ON c.id = r.case_id
 WHERE c.machine IS NULL OR c.machine = 'lamp';
SELECT count(*) AS casts_run FROM public.gov_cast_log;
SELECT tgname, pg_catalog.encode(tgargs, 'escape') AS args FROM pg_trigger WHERE tgrelid = 'public.gov_lamp_row'::regclass ORDER BY 1;
-- Keys whose text depends on the session, and keys that are not unique, are refused.
CREATE TABLE public.gov_bad (at timestamptz PRIMARY KEY, n int, s text);
SELECT statemachine.govern_table('public.gov_bad', 'at', 's', 'lamp');
\echo :LAST_ERROR_SQLSTATE
SELECT statemachine.govern_table('public.gov_bad', 'n', 's', 'lamp');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE public.gov_bad;
-- The owner may not replace a guard trigger, nor give the table a child whose rows
-- would show in it.
SET SESSION AUTHORIZATION sm_gov_owner;
CREATE FUNCTION public.gov_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE OR REPLACE TRIGGER zz_statemachine_governed BEFORE INSERT OR UPDATE OR DELETE ON public.gov_product
  FOR EACH ROW EXECUTE FUNCTION public.gov_noop();
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.gov_product_more () INHERITS (public.gov_product);
\echo :LAST_ERROR_SQLSTATE
DROP FUNCTION public.gov_noop();
RESET SESSION AUTHORIZATION;
-- A case whose row went missing (under break_glass) is reported.
BEGIN;
SELECT statemachine.break_glass('regress: a row lost') IS NOT NULL AS broken;
DELETE FROM public.gov_product WHERE product_id = 5;
SELECT r.current_state, r.derived_state FROM statemachine.reconcile() r JOIN statemachine.case_file c ON c.id = r.case_id WHERE c.machine = 'gshop';
ROLLBACK;

-- Un-governing is the audited exception: under break_glass, drop the tables (or their
-- triggers) and their governed_table rows; the cases and their history stay.
BEGIN;
SELECT statemachine.break_glass('regress: the shop closes') IS NOT NULL AS broken;
DROP TABLE public.gov_product, public.gov_light, public.gov_lamp_row;
DELETE FROM statemachine.governed_table;
COMMIT;
SELECT count(*) AS weaknesses FROM statemachine.guard_weaknesses();
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile() r LEFT JOIN statemachine.case_file c ON c.id = r.case_id
 WHERE c.machine IS NULL OR c.machine IN ('gshop', 'light');
DROP TABLE public.gov_status, public.gov_audit;
DROP FUNCTION public.gov_audit_row();
REVOKE CREATE ON SCHEMA public FROM sm_gov_owner;
DROP TYPE public.gov_light_colour;
DROP CAST (public.gov_lamp AS text);
DROP FUNCTION public.gov_lamp_text(public.gov_lamp);
DROP TYPE public.gov_lamp;
DROP TABLE public.gov_cast_log;
REVOKE ALL ON statemachine.case_file FROM sm_gov_app;
REVOKE ALL ON SCHEMA statemachine FROM sm_gov_app, sm_gov_owner;
REVOKE ALL ON FUNCTION statemachine.govern_table(regclass, name, name, text, jsonb, uuid, text, uuid) FROM sm_gov_owner, sm_gov_app;
REVOKE ALL ON FUNCTION statemachine.transition_to(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb) FROM sm_gov_app;
DROP ROLE sm_gov_owner;
DROP ROLE sm_gov_app;
