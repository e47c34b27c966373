-- pg_statemachine 0.6.0 -> 0.7.0: delegated calls (issue 15) — on a distributed
-- installation whose command ids are unique per case, the calls on one case
-- (transition_case, transition_to, add_evidence, assign_case, release_assignment,
-- check_transition, available_transitions) run on the node that holds the case, sent there
-- as one statement (docs/scaling.md, src/delegation.rs).
--
-- This file is both the upgrade script (ALTER EXTENSION pg_statemachine UPDATE) and,
-- after sql/schema.sql and the earlier upgrade scripts, part of every fresh install.

CREATE FUNCTION statemachine.transition_on_shard(
    case_id uuid, target text, actor_id uuid, actor_role text, command_id uuid,
    reason_code text, reason_text text, expected_version bigint, evidence_ids uuid[],
    correlation_id uuid, causation_id uuid, metadata jsonb, by_state boolean, caller text,
    OUT transition statemachine.case_state_transition, OUT notifications text[])
    RETURNS record
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_transition_on_shard';
REVOKE ALL ON FUNCTION statemachine.transition_on_shard(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb, boolean, text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.transition_on_shard(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb, boolean, text) IS 'Internal (distributed installations, command_scope case): transition_case (target: a transition code) or, with by_state, transition_to (target: a state) run on the node that holds the case, which the coordinator''s transition_case/transition_to route here; caller is the coordinator''s session user, checked and recorded as the caller. Returns the history row and the outbox notifications for the coordinator to send, both NULL when the call needs other cases (a case with dimensions, a sql guard) and the coordinator runs it itself. Executable by the extension''s owner only: the caller is taken on its word.';

-- The other calls on one case, the same way: each runs on the case's node with the
-- caller's identity (the coordinator's session user), executable by the owner only.
CREATE FUNCTION statemachine.add_evidence_on_shard(
    case_id uuid, evidence_type text, storage_uri text, content_hash text, submitted_by uuid, caller text)
    RETURNS uuid
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_add_evidence_on_shard';
REVOKE ALL ON FUNCTION statemachine.add_evidence_on_shard(uuid, text, text, text, uuid, text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.add_evidence_on_shard(uuid, text, text, text, uuid, text) IS 'Internal (distributed installations, command_scope case): add_evidence run on the node that holds the case, which the coordinator''s add_evidence routes here. Executable by the extension''s owner only.';

CREATE FUNCTION statemachine.assign_case_on_shard(
    case_id uuid, assignee_id uuid, role_code text, actor_id uuid, command_id uuid, actor_role text, caller text)
    RETURNS statemachine.case_assignment
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_assign_case_on_shard';
REVOKE ALL ON FUNCTION statemachine.assign_case_on_shard(uuid, uuid, text, uuid, uuid, text, text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.assign_case_on_shard(uuid, uuid, text, uuid, uuid, text, text) IS 'Internal (distributed installations, command_scope case): assign_case run on the node that holds the case, which the coordinator''s assign_case routes here; caller is the coordinator''s session user, checked as the caller (role_source database). Executable by the extension''s owner only: the caller is taken on its word.';

CREATE FUNCTION statemachine.release_assignment_on_shard(
    case_id uuid, assignee_id uuid, role_code text, actor_id uuid, command_id uuid, actor_role text, caller text)
    RETURNS statemachine.case_assignment_release
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_release_assignment_on_shard';
REVOKE ALL ON FUNCTION statemachine.release_assignment_on_shard(uuid, uuid, text, uuid, uuid, text, text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.release_assignment_on_shard(uuid, uuid, text, uuid, uuid, text, text) IS 'Internal (distributed installations, command_scope case): release_assignment run on the node that holds the case, which the coordinator''s release_assignment routes here; caller is the coordinator''s session user, checked as the caller (role_source database). Executable by the extension''s owner only: the caller is taken on its word.';

CREATE FUNCTION statemachine.check_transition_on_shard(
    case_id uuid, transition_code text, actor_id uuid, actor_role text, reason_code text, reason_text text,
    evidence_ids uuid[], caller text)
    RETURNS TABLE (check_name text, passed boolean, detail text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_check_transition_on_shard';
REVOKE ALL ON FUNCTION statemachine.check_transition_on_shard(uuid, text, uuid, text, text, text, uuid[], text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.check_transition_on_shard(uuid, text, uuid, text, text, text, uuid[], text) IS 'Internal (distributed installations, command_scope case): check_transition run on the node that holds the case, which the coordinator''s check_transition routes here; caller is the coordinator''s session user. One row of NULLs when a sql guard would run (the coordinator answers then). Executable by the extension''s owner only.';

CREATE FUNCTION statemachine.available_transitions_on_shard(case_id uuid, actor_role text, actor_id uuid, caller text)
    RETURNS TABLE (transition_code text, to_state text, requires_reason boolean, requires_evidence boolean,
                   allowed boolean, blocked_by text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_available_transitions_on_shard';
REVOKE ALL ON FUNCTION statemachine.available_transitions_on_shard(uuid, text, uuid, text) FROM PUBLIC;
COMMENT ON FUNCTION statemachine.available_transitions_on_shard(uuid, text, uuid, text) IS 'Internal (distributed installations, command_scope case): available_transitions run on the node that holds the case, which the coordinator''s available_transitions routes here; caller is the coordinator''s session user. One row of NULLs when a sql guard would run (the coordinator answers then). Executable by the extension''s owner only.';
