-- Adopting what users have (issue 13): codes as they write them, transition_to,
-- import_cases. Governed tables are tests/regress/sql/governed.sql.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_statemachine;

-- Codes as users write them: spaces, quotes, arrows, semicolons, non-ASCII letters.
SELECT statemachine.define_machine($${
  "machine": "shop",
  "states": [{"code": "in stock", "initial": true}, {"code": "on order"}, {"code": "it's \"gone\""},
             {"code": "geprüft -> ok; fin", "terminal": true}],
  "transitions": [
    {"code": "order it", "from": "in stock", "to": "on order", "roles": ["CLERK"]},
    {"code": "restock", "from": "on order", "to": "in stock", "roles": ["CLERK"]},
    {"code": "lose it", "from": ["in stock", "on order"], "to": "it's \"gone\"", "roles": ["CLERK"]},
    {"code": "write off", "from": "it's \"gone\"", "to": "geprüft -> ok; fin", "roles": ["AUDITOR"], "min_time_in_state": "5 years"},
    {"code": "purge", "from": "it's \"gone\"", "to": "geprüft -> ok; fin", "roles": ["AUDITOR", "ADMIN"]},
    {"code": "recount", "from": "in stock", "to": "in stock"}
  ]}$$) AS shop_version;
-- What is not a code: leading/trailing space, control characters, empty, over 63 bytes.
SELECT path, problem FROM statemachine.validate_machine($${"machine": "bad", "states": [
  {"code": " padded", "initial": true}, {"code": "tab\there"}, {"code": ""}, {"code": "ü23456789012345678901234567890123456789012345678901234567890123"}],
  "transitions": []}$$) WHERE path LIKE '$.states%' ORDER BY path;
SELECT statemachine.machine_diagram('shop');
SELECT statemachine.machine_diagram('shop', NULL, 'dot');

SELECT id, current_state FROM statemachine.create_case('shop', 'S-1', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000001', case_id => '51000000-0000-0000-0000-000000000001');
SELECT * FROM statemachine.available_transitions('51000000-0000-0000-0000-000000000001', 'CLERK') ORDER BY 1;
SELECT * FROM statemachine.check_transition('51000000-0000-0000-0000-000000000001', 'lose it', 'a1000000-0000-0000-0000-000000000001', 'AUDITOR');
-- Verbatim in DETAIL and HINT.
SELECT statemachine.transition_case('51000000-0000-0000-0000-000000000001', 'write off', 'a1000000-0000-0000-0000-000000000001', 'AUDITOR',
       'c1000000-0000-0000-0000-000000000002');
\echo :LAST_ERROR_SQLSTATE

-- transition_to: the one rule to that state the role may use.
SELECT from_state, to_state, transition_code, state_version
  FROM statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'on order', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000003');
-- Replayed: the same row, nothing new; the same command for another target is SM008.
SELECT from_state, to_state, state_version
  FROM statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'on order', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000003');
SELECT statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'in stock', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
-- None leads there: SM001, HINT the reachable states.
SELECT statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'geprüft -> ok; fin', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000004');
\echo :LAST_ERROR_SQLSTATE
-- One leads there, the role may not use it: SM006 as transition_case says.
SELECT statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'it''s "gone"', 'a1000000-0000-0000-0000-000000000001', 'AUDITOR',
       'c1000000-0000-0000-0000-000000000005');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, transition_code FROM statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'it''s "gone"',
       'a1000000-0000-0000-0000-000000000001', 'CLERK', 'c1000000-0000-0000-0000-000000000006');
-- Several lead there: SM001, HINT the codes; a role only one of them allows picks it.
SELECT statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'geprüft -> ok; fin', 'a1000000-0000-0000-0000-000000000002', 'AUDITOR',
       'c1000000-0000-0000-0000-000000000007');
\echo :LAST_ERROR_SQLSTATE
SELECT to_state, transition_code FROM statemachine.transition_to('51000000-0000-0000-0000-000000000001', 'geprüft -> ok; fin',
       'a1000000-0000-0000-0000-000000000002', 'ADMIN', 'c1000000-0000-0000-0000-000000000008');
-- A state the case is in, with a rule to itself.
SELECT id, current_state FROM statemachine.create_case('shop', 'S-2', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000009', case_id => '51000000-0000-0000-0000-000000000002');
SELECT from_state, to_state, transition_code FROM statemachine.transition_to('51000000-0000-0000-0000-000000000002', 'in stock',
       'a1000000-0000-0000-0000-000000000001', 'CLERK', 'c1000000-0000-0000-0000-000000000010');
SELECT statemachine.transition_to('5100000f-0000-0000-0000-000000000000', 'in stock', 'a1000000-0000-0000-0000-000000000001', 'CLERK',
       'c1000000-0000-0000-0000-000000000011');
\echo :LAST_ERROR_SQLSTATE

-- import_cases: records at their current state, their dated past as history.
SELECT * FROM statemachine.import_cases('shop', $$[
  {"case_number": "P-3", "case_id": "53000000-0000-0000-0000-000000000003", "metadata": {"title": "SolarGlow Garden Lights"},
   "steps": [{"state": "in stock", "at": "2013-08-07 02:46:21.388738+02"},
             {"state": "on order", "at": "2013-11-07 22:26:57.509255+02", "actor_id": "a1000000-0000-0000-0000-000000000009", "actor_role": "BUYER"},
             {"state": "in stock", "at": "2013-11-09 08:17:01.686259+02"},
             {"state": "it's \"gone\"", "at": "2019-01-27 02:00:31.837687+02", "reason_code": "EOL", "reason_text": "end of line"}]},
  {"case_number": "P-4", "case_id": "53000000-0000-0000-0000-000000000004",
   "steps": [{"state": "in stock", "at": "2024-01-01 00:00:00+00"}, {"state": "it's \"gone\"", "at": "2024-06-01 00:00:00+00"}]},
  {"case_number": "P-5", "case_id": "53000000-0000-0000-0000-000000000005",
   "steps": [{"state": "in stock", "at": "2020-01-01 00:00:00+00"}, {"state": "in stock", "at": "2021-01-01 00:00:00+00", "transition": "recount"}]}
]$$, 'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000100');
SELECT case_number, current_state, state_version, state_entered_at, created_at, updated_at, metadata
  FROM statemachine.case_file WHERE case_number LIKE 'P-%' ORDER BY case_number;
SELECT c.case_number, t.state_version, t.from_state, t.to_state, t.transition_code, t.transition_kind, t.occurred_at,
       t.actor_id, t.actor_role, t.reason_code, t.metadata, t.correlation_id
  FROM statemachine.case_state_transition t JOIN statemachine.case_file c ON c.id = t.case_id
 WHERE c.case_number LIKE 'P-%' ORDER BY 1, 2;
-- Replayed: the same rows, nothing written.
SELECT count(*) AS history_rows FROM statemachine.case_state_transition;
SELECT * FROM statemachine.import_cases('shop', $$[
  {"case_number": "P-3", "steps": [{"state": "in stock", "at": "2013-08-07 02:46:21.388738+02"}]},
  {"case_number": "P-4", "steps": [{"state": "in stock", "at": "2024-01-01 00:00:00+00"}]},
  {"case_number": "P-5", "steps": [{"state": "in stock", "at": "2020-01-01 00:00:00+00"}]}
]$$, 'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000100');
SELECT count(*) AS history_rows FROM statemachine.case_state_transition;
-- The same command for another import, or used before by transition_to: SM008.
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "P-9", "steps": [{"state": "in stock", "at": "2020-01-01"}]}]$$,
       'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000100');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "P-9", "steps": [{"state": "in stock", "at": "2020-01-01"}]}]$$,
       'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000003');
\echo :LAST_ERROR_SQLSTATE
-- Time guards count from the imported dates: P-3 has been gone since 2019, P-4 since 2024.
SELECT to_state, transition_code FROM statemachine.transition_case('53000000-0000-0000-0000-000000000003', 'write off',
       'a1000000-0000-0000-0000-000000000002', 'AUDITOR', 'c1000000-0000-0000-0000-000000000101');
-- (terse: the DETAIL says how long is left, which depends on today)
\set VERBOSITY terse
SELECT statemachine.transition_case('53000000-0000-0000-0000-000000000004', 'write off',
       'a1000000-0000-0000-0000-000000000002', 'AUDITOR', 'c1000000-0000-0000-0000-000000000102');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- An illegal step refuses the whole call (nothing written) ...
SELECT * FROM statemachine.import_cases('shop', $$[
  {"case_number": "Q-1", "steps": [{"state": "in stock", "at": "2020-01-01"}]},
  {"case_number": "Q-2", "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "geprüft -> ok; fin", "at": "2021-01-01"}]}
]$$, 'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000103');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS q_cases FROM statemachine.case_file WHERE case_number LIKE 'Q-%';
-- ... or, with on_illegal => 'record', goes in marked as such.
SELECT * FROM statemachine.import_cases('shop', $$[
  {"case_number": "Q-2", "case_id": "53000000-0000-0000-0000-000000000012",
   "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "geprüft -> ok; fin", "at": "2021-01-01"}]}
]$$, 'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000104', on_illegal => 'record');
SELECT state_version, from_state, to_state, transition_code, transition_kind, metadata
  FROM statemachine.case_state_transition WHERE case_id = '53000000-0000-0000-0000-000000000012' ORDER BY 1;
-- Two rules lead from it's "gone" to the end: a step must name one.
SELECT * FROM statemachine.import_cases('shop', $$[
  {"case_number": "Q-3", "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "it's \"gone\"", "at": "2020-02-01"},
                                   {"state": "geprüft -> ok; fin", "at": "2020-03-01"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000105');
\echo :LAST_ERROR_SQLSTATE
SELECT case_number, current_state FROM statemachine.import_cases('shop', $$[
  {"case_number": "Q-3", "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "it's \"gone\"", "at": "2020-02-01"},
                                   {"state": "geprüft -> ok; fin", "at": "2020-03-01", "transition": "purge"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000106');
-- Unknown states, times out of order or in the future, malformed records, taken numbers.
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "Q-4", "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "sold", "at": "2020-02-01"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000107');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "Q-4", "steps": [{"state": "in stock", "at": "2020-01-01"}, {"state": "on order", "at": "2019-02-01"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000108');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "Q-4", "steps": [{"state": "in stock", "at": "2999-01-01"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000109');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "Q-4", "steps": [{"state": "in stock", "at": "not a time"}]},
  {"case_number": "Q-4", "steps": [], "colour": "red"}, {"steps": [{"state": 1}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000110');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "Q-4", "steps": [{"state": "in stock", "at": "not a time"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000111');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', $$[{"case_number": "S-1", "steps": [{"state": "in stock", "at": "2020-01-01"}]}]$$,
  'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000112');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('shop', '[]', 'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000113', on_illegal => 'ignore');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM statemachine.import_cases('nope', '[]', 'a1000000-0000-0000-0000-000000000001', 'IMPORTER', 'c1000000-0000-0000-0000-000000000114');
\echo :LAST_ERROR_SQLSTATE

-- Imported history is history: sealed, chained, reconciled, derived.
SELECT count(*) AS reconcile_rows FROM statemachine.reconcile() r LEFT JOIN statemachine.case_file c ON c.id = r.case_id
 WHERE c.machine IS NULL OR c.machine IN ('shop');
SELECT count(*) AS verify_rows FROM statemachine.verify_history() v JOIN statemachine.case_file c ON c.id = v.case_id WHERE c.machine IN ('shop');
SELECT statemachine.state_at('53000000-0000-0000-0000-000000000003', '2013-11-08 00:00:00+00') AS p3_in_nov_2013;
-- Not for an application role: it writes history with past dates.
SELECT has_function_privilege('public', 'statemachine.import_cases(text, jsonb, uuid, text, uuid, text)', 'EXECUTE') AS public_may_import,
       has_function_privilege('public', 'statemachine.transition_to(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb)', 'EXECUTE') AS public_may_transition_to;
