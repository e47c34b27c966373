-- pg_statemachine schema: definitions, cases, history, evidence, guards, derived truth.
--
-- Tables are readable by anyone granted SELECT; they are written only through the
-- functions below. Guard triggers (ENABLE ALWAYS) refuse every other write with SM007,
-- for every role and under session_replication_role = replica as well; an event
-- trigger keeps the guards themselves in place. The one audited exception is a
-- transaction that called break_glass() (restore, emergency repair).
--
-- Every statement here schema-qualifies what it uses; SQL and PL/pgSQL functions pin
-- search_path, so callers cannot shadow anything they rely on.

------------------------------------------------------------------------------------------
-- Definitions: machine, version, state, transition rule, rule role (seed 003 §3-4, §19)
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.machine (
    code       text PRIMARY KEY
               CONSTRAINT machine_code_chk CHECK (code ~ '^[A-Za-z][A-Za-z0-9_.-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE statemachine.machine IS 'One row per state machine name; its rules live in published versions (statemachine.machine_version).';
COMMENT ON COLUMN statemachine.machine.code IS 'Machine name, as given in a definition''s "machine" key.';
COMMENT ON COLUMN statemachine.machine.created_at IS 'When the first version of this machine was published.';

CREATE TABLE statemachine.machine_version (
    id           uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    machine      text NOT NULL REFERENCES statemachine.machine (code) DEFERRABLE,
    version      integer NOT NULL CONSTRAINT machine_version_positive_chk CHECK (version > 0),
    status       text NOT NULL DEFAULT 'active'
                 CONSTRAINT machine_version_status_chk CHECK (status IN ('active', 'retired')),
    description  text,
    role_source  text NOT NULL DEFAULT 'asserted'
                 CONSTRAINT machine_version_role_source_chk CHECK (role_source IN ('asserted', 'database')),
    corrections  text NOT NULL DEFAULT 'latest'
                 CONSTRAINT machine_version_corrections_chk CHECK (corrections IN ('latest', 'any')),
    definition   jsonb NOT NULL CONSTRAINT machine_version_definition_chk CHECK (pg_catalog.jsonb_typeof(definition) = 'object'),
    published_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    published_by text NOT NULL DEFAULT SESSION_USER,
    CONSTRAINT machine_version_uk UNIQUE (machine, version),
    CONSTRAINT machine_version_id_machine_uk UNIQUE (id, machine, version)
);
COMMENT ON TABLE statemachine.machine_version IS 'Published, immutable versions of a machine''s rules (seed 003 §19). Cases stay pinned to the version they were created under.';
COMMENT ON COLUMN statemachine.machine_version.id IS 'Random identity of this published version; cases reference it, and per-backend rule caches are keyed by it.';
COMMENT ON COLUMN statemachine.machine_version.machine IS 'The machine this version belongs to.';
COMMENT ON COLUMN statemachine.machine_version.version IS 'Version number, 1, 2, ... per machine; recorded as policy_version on every transition.';
COMMENT ON COLUMN statemachine.machine_version.status IS 'active: new cases are created under the latest active version; retired: kept for the cases and history that reference it.';
COMMENT ON COLUMN statemachine.machine_version.description IS 'The definition''s "description".';
COMMENT ON COLUMN statemachine.machine_version.corrections IS 'latest: correct_transition may correct only a case''s latest transition (the default); any: any transition (the definition''s "corrections").';
COMMENT ON COLUMN statemachine.machine_version.role_source IS 'asserted: the caller names actor_role and the rule''s roles decide; database: actor_role must also be a PostgreSQL role the session user is a member of (SM006 otherwise).';
COMMENT ON COLUMN statemachine.machine_version.definition IS 'The definition in canonical form, as statemachine.machine_definition() returns it; the rule tables hold the same rules relationally.';
COMMENT ON COLUMN statemachine.machine_version.published_at IS 'When statemachine.define_machine() published this version.';
COMMENT ON COLUMN statemachine.machine_version.published_by IS 'Database session user that published this version.';

CREATE TABLE statemachine.state (
    machine_version_id uuid NOT NULL REFERENCES statemachine.machine_version (id) DEFERRABLE,
    code               text NOT NULL,
    label              text,
    phase              text,
    is_initial         boolean NOT NULL DEFAULT false,
    is_terminal        boolean NOT NULL DEFAULT false,
    sort_order         integer NOT NULL,
    attributes         jsonb NOT NULL DEFAULT '{}'
                       CONSTRAINT state_attributes_chk CHECK (pg_catalog.jsonb_typeof(attributes) = 'object'),
    PRIMARY KEY (machine_version_id, code)
);
CREATE UNIQUE INDEX state_one_initial_per_version_idx ON statemachine.state (machine_version_id) WHERE is_initial;
COMMENT ON TABLE statemachine.state IS 'State vocabulary of a machine version, with its metadata (seed 003 §3.2, seed 004''s product_status).';
COMMENT ON COLUMN statemachine.state.machine_version_id IS 'The machine version this state belongs to.';
COMMENT ON COLUMN statemachine.state.code IS 'State code, e.g. UNDER_REVIEW.';
COMMENT ON COLUMN statemachine.state.label IS 'Human label for UIs.';
COMMENT ON COLUMN statemachine.state.phase IS 'Coarser grouping of states, e.g. OPENING, REVIEW, DECISION, CLOSURE.';
COMMENT ON COLUMN statemachine.state.is_initial IS 'The state every new case starts in; exactly one per version.';
COMMENT ON COLUMN statemachine.state.is_terminal IS 'No normal transition leaves a terminal state; only reopen, correction and admin kinds may (seed 003 §12).';
COMMENT ON COLUMN statemachine.state.sort_order IS 'Display order: as given, else 10 x the state''s position in the definition.';
COMMENT ON COLUMN statemachine.state.attributes IS 'Per-state flags such as is_buyable or is_final_decision, as a JSON object.';

CREATE TABLE statemachine.transition_rule (
    machine_version_id uuid NOT NULL,
    from_state         text NOT NULL,
    transition_code    text NOT NULL CONSTRAINT transition_rule_code_chk CHECK (transition_code NOT IN ('CREATE', 'CORRECT', 'MIGRATE')),
    to_state           text NOT NULL,
    requires_reason    boolean NOT NULL DEFAULT false,
    requires_evidence  boolean NOT NULL DEFAULT false,
    evidence_types     text[],
    audit_guards       boolean NOT NULL DEFAULT false,
    emit_event         text,
    fire_after         interval CONSTRAINT transition_rule_fire_after_chk CHECK (fire_after > interval '0'),
    kind               text NOT NULL DEFAULT 'normal'
                       CONSTRAINT transition_rule_kind_chk CHECK (kind IN ('normal', 'reopen', 'reversal', 'correction', 'admin')),
    CONSTRAINT transition_rule_evidence_types_chk
        CHECK (evidence_types IS NULL OR (requires_evidence AND pg_catalog.cardinality(evidence_types) > 0)),
    PRIMARY KEY (machine_version_id, from_state, transition_code),
    FOREIGN KEY (machine_version_id, from_state) REFERENCES statemachine.state (machine_version_id, code) DEFERRABLE,
    FOREIGN KEY (machine_version_id, to_state) REFERENCES statemachine.state (machine_version_id, code) DEFERRABLE
);
COMMENT ON TABLE statemachine.transition_rule IS 'Legal transitions of a machine version, one row per (from state, code) (seed 003 §4); a definition''s "from": [..] array becomes several rows.';
COMMENT ON COLUMN statemachine.transition_rule.machine_version_id IS 'The machine version this rule belongs to.';
COMMENT ON COLUMN statemachine.transition_rule.from_state IS 'State the case must be in.';
COMMENT ON COLUMN statemachine.transition_rule.transition_code IS 'Command name passed to transition_case, e.g. APPROVE_CASE. CREATE (the first history row), CORRECT (correct_transition) and MIGRATE (migrate_cases) are reserved.';
COMMENT ON COLUMN statemachine.transition_rule.to_state IS 'State the case moves to; one (from_state, transition_code) pair leads to one target only.';
COMMENT ON COLUMN statemachine.transition_rule.requires_reason IS 'reason_code or reason_text must be given (SM004).';
COMMENT ON COLUMN statemachine.transition_rule.requires_evidence IS 'At least one active evidence row of the case must be passed in evidence_ids (SM005).';
COMMENT ON COLUMN statemachine.transition_rule.evidence_types IS 'Evidence types of which at least one usable item each must be passed ("requires_evidence": [..]); NULL: any type.';
COMMENT ON COLUMN statemachine.transition_rule.emit_event IS 'Outbox event type written in the same transaction as every such transition ("emit", seed 003 §16); NULL: none.';
COMMENT ON COLUMN statemachine.transition_rule.fire_after IS 'A timed transition ("after"): statemachine.run_due_transitions() performs it, as role SYSTEM with reason TIMER, once the case has been in from_state this long.';
COMMENT ON COLUMN statemachine.transition_rule.audit_guards IS 'Store every evaluated guard of this transition in statemachine.case_transition_guard_result (seed 003 §9.3).';
COMMENT ON COLUMN statemachine.transition_rule.kind IS 'normal, reopen, reversal, correction or admin; only reopen, correction and admin may leave a terminal state.';

CREATE TABLE statemachine.transition_rule_role (
    machine_version_id uuid NOT NULL,
    from_state         text NOT NULL,
    transition_code    text NOT NULL,
    role_code          text NOT NULL CONSTRAINT transition_rule_role_code_chk CHECK (role_code <> ''),
    PRIMARY KEY (machine_version_id, from_state, transition_code, role_code),
    FOREIGN KEY (machine_version_id, from_state, transition_code)
        REFERENCES statemachine.transition_rule (machine_version_id, from_state, transition_code) DEFERRABLE
);
COMMENT ON TABLE statemachine.transition_rule_role IS 'Roles permitted to perform a transition rule (seed 003 §24); a rule without rows here is open to every role.';
COMMENT ON COLUMN statemachine.transition_rule_role.machine_version_id IS 'The machine version of the rule.';
COMMENT ON COLUMN statemachine.transition_rule_role.from_state IS 'The rule''s from_state.';
COMMENT ON COLUMN statemachine.transition_rule_role.transition_code IS 'The rule''s transition_code.';
COMMENT ON COLUMN statemachine.transition_rule_role.role_code IS 'A role (actor_role) permitted to perform the transition (SM006 otherwise).';

CREATE TABLE statemachine.state_invariant (
    machine_version_id uuid NOT NULL REFERENCES statemachine.machine_version (id) DEFERRABLE,
    position           integer NOT NULL,
    when_state         text NOT NULL,
    dimension          text NOT NULL,
    allowed_states     text[] NOT NULL CONSTRAINT state_invariant_allowed_chk CHECK (pg_catalog.cardinality(allowed_states) > 0),
    PRIMARY KEY (machine_version_id, position),
    FOREIGN KEY (machine_version_id, when_state) REFERENCES statemachine.state (machine_version_id, code) DEFERRABLE
);
COMMENT ON TABLE statemachine.state_invariant IS 'Cross-dimension invariants (the definition''s "invariants", seed 003 §21): a case''s dimension of this machine may be in when_state only while its dimension running machine `dimension` is in one of allowed_states. The write path checks both directions.';
COMMENT ON COLUMN statemachine.state_invariant.machine_version_id IS 'The machine version declaring it.';
COMMENT ON COLUMN statemachine.state_invariant.position IS 'Position in the definition''s list.';
COMMENT ON COLUMN statemachine.state_invariant.when_state IS 'The state of this machine the invariant is about.';
COMMENT ON COLUMN statemachine.state_invariant.dimension IS 'The other dimension (machine name) of the same case.';
COMMENT ON COLUMN statemachine.state_invariant.allowed_states IS 'The states the other dimension must be in meanwhile.';

CREATE TABLE statemachine.transition_reason (
    machine_version_id uuid NOT NULL,
    from_state         text NOT NULL,
    transition_code    text NOT NULL,
    reason_code        text NOT NULL,
    label              text NOT NULL CONSTRAINT transition_reason_label_chk CHECK (label <> ''),
    sort_order         integer NOT NULL,
    PRIMARY KEY (machine_version_id, from_state, transition_code, reason_code),
    FOREIGN KEY (machine_version_id, from_state, transition_code)
        REFERENCES statemachine.transition_rule (machine_version_id, from_state, transition_code) DEFERRABLE
);
COMMENT ON TABLE statemachine.transition_reason IS 'Structured reason codes a transition allows (seed 003 §25, the definition''s "reasons"); a rule without rows here accepts any reason.';
COMMENT ON COLUMN statemachine.transition_reason.machine_version_id IS 'The machine version of the rule.';
COMMENT ON COLUMN statemachine.transition_reason.from_state IS 'The rule''s from_state.';
COMMENT ON COLUMN statemachine.transition_reason.transition_code IS 'The rule''s transition_code.';
COMMENT ON COLUMN statemachine.transition_reason.reason_code IS 'An allowed reason_code (SM004 for any other).';
COMMENT ON COLUMN statemachine.transition_reason.label IS 'Human label of the reason, for UIs and reports.';
COMMENT ON COLUMN statemachine.transition_reason.sort_order IS 'Position in the definition''s list.';

CREATE TABLE statemachine.guard_function (
    code          text PRIMARY KEY
                  CONSTRAINT guard_function_code_chk CHECK (code ~ '^[A-Za-z][A-Za-z0-9_.-]{0,62}$'),
    function      regprocedure NOT NULL,
    returns       text NOT NULL CONSTRAINT guard_function_returns_chk CHECK (returns IN ('boolean', 'verdict')),
    description   text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    registered_by text NOT NULL DEFAULT SESSION_USER
);
COMMENT ON TABLE statemachine.guard_function IS 'Functions usable as "sql" guards, by name (statemachine.register_guard). A definition names the guard; the function is looked up at evaluation time.';
COMMENT ON COLUMN statemachine.guard_function.code IS 'The name definitions use: {"guard": "sql", "name": code}.';
COMMENT ON COLUMN statemachine.guard_function.function IS 'The function: (case_id uuid, context jsonb), STABLE or IMMUTABLE, owned by a superuser or the extension''s owner.';
COMMENT ON COLUMN statemachine.guard_function.returns IS 'boolean: returns pass/fail; verdict: returns (passed boolean, evidence jsonb).';
COMMENT ON COLUMN statemachine.guard_function.description IS 'What the guard checks.';
COMMENT ON COLUMN statemachine.guard_function.registered_at IS 'When the name was (last) registered.';
COMMENT ON COLUMN statemachine.guard_function.registered_by IS 'Session user that registered it.';

CREATE TABLE statemachine.transition_guard (
    machine_version_id uuid NOT NULL,
    from_state         text NOT NULL,
    transition_code    text NOT NULL,
    position           integer NOT NULL CONSTRAINT transition_guard_position_chk CHECK (position >= 0),
    guard_code         text NOT NULL,
    guard_kind         text NOT NULL
                       CONSTRAINT transition_guard_kind_chk CHECK (guard_kind IN ('min_time_in_state', 'distinct_actor', 'requires_assignment', 'sql')),
    min_time_in_state  interval,
    other_transition   text,
    assignment_role    text,
    guard_name         text,
    params             jsonb NOT NULL DEFAULT '{}'
                       CONSTRAINT transition_guard_params_chk CHECK (pg_catalog.jsonb_typeof(params) = 'object'),
    PRIMARY KEY (machine_version_id, from_state, transition_code, position),
    CONSTRAINT transition_guard_code_uk UNIQUE (machine_version_id, from_state, transition_code, guard_code),
    CONSTRAINT transition_guard_arguments_chk CHECK (
        (guard_kind = 'min_time_in_state') = (min_time_in_state IS NOT NULL AND min_time_in_state > interval '0')
        AND (guard_kind = 'distinct_actor') = (other_transition IS NOT NULL)
        AND (guard_kind = 'requires_assignment') = (assignment_role IS NOT NULL)
        AND (guard_kind = 'sql') = (guard_name IS NOT NULL)),
    FOREIGN KEY (machine_version_id, from_state, transition_code)
        REFERENCES statemachine.transition_rule (machine_version_id, from_state, transition_code) DEFERRABLE
);
COMMENT ON TABLE statemachine.transition_guard IS 'Guards of a transition rule, evaluated in position order under the case lock; the first that fails refuses with SM002 (seed 003 §8-9).';
COMMENT ON COLUMN statemachine.transition_guard.machine_version_id IS 'The machine version of the rule.';
COMMENT ON COLUMN statemachine.transition_guard.from_state IS 'The rule''s from_state.';
COMMENT ON COLUMN statemachine.transition_guard.transition_code IS 'The rule''s transition_code.';
COMMENT ON COLUMN statemachine.transition_guard.position IS 'Evaluation order (0 first); a transition-level min_time_in_state key is position 0.';
COMMENT ON COLUMN statemachine.transition_guard.guard_code IS 'Name of the guard in SM002 DETAILs, check_transition and case_transition_guard_result.';
COMMENT ON COLUMN statemachine.transition_guard.guard_kind IS 'min_time_in_state, distinct_actor, requires_assignment or sql.';
COMMENT ON COLUMN statemachine.transition_guard.min_time_in_state IS 'min_time_in_state: how long the case must have been in from_state.';
COMMENT ON COLUMN statemachine.transition_guard.other_transition IS 'distinct_actor: the transition code whose latest actor must differ from this actor (four-eyes).';
COMMENT ON COLUMN statemachine.transition_guard.assignment_role IS 'requires_assignment: the role the actor must hold an active assignment in.';
COMMENT ON COLUMN statemachine.transition_guard.guard_name IS 'sql: the name registered in statemachine.guard_function.';
COMMENT ON COLUMN statemachine.transition_guard.params IS 'sql: the definition''s "params", passed to the function in context->''params''.';

------------------------------------------------------------------------------------------
-- Cases and their history (seed 003 §5, §14)
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.case_file (
    id                 uuid PRIMARY KEY,
    machine            text NOT NULL,
    machine_version    integer NOT NULL,
    machine_version_id uuid NOT NULL,
    case_number        text NOT NULL CONSTRAINT case_file_case_number_chk CHECK (pg_catalog.length(case_number) BETWEEN 1 AND 200),
    current_state      text NOT NULL,
    state_version      bigint NOT NULL CONSTRAINT case_file_state_version_chk CHECK (state_version >= 0),
    state_entered_at   timestamptz NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    metadata           jsonb NOT NULL DEFAULT '{}'
                       CONSTRAINT case_file_metadata_chk CHECK (pg_catalog.jsonb_typeof(metadata) = 'object'),
    root_case_id       uuid REFERENCES statemachine.case_file (id) DEFERRABLE,
    dimensions         text[] NOT NULL DEFAULT '{}',
    CONSTRAINT case_file_case_number_uk UNIQUE (machine, case_number),
    CONSTRAINT case_file_dimension_uk UNIQUE (root_case_id, machine),
    CONSTRAINT case_file_dimension_chk CHECK (root_case_id IS NULL OR (root_case_id <> id AND dimensions = '{}')),
    CONSTRAINT case_file_machine_version_fk FOREIGN KEY (machine_version_id, machine, machine_version)
        REFERENCES statemachine.machine_version (id, machine, version) DEFERRABLE
);
-- Work queue by state (seed 003 §22) and "stuck in a state since" (age per state).
CREATE INDEX case_file_current_state_updated_idx ON statemachine.case_file (current_state, updated_at DESC);
CREATE INDEX case_file_state_age_idx ON statemachine.case_file (machine, current_state, state_entered_at);
-- Due timed transitions: cases of a version in a state, oldest first (run_due_transitions).
CREATE INDEX case_file_version_state_age_idx ON statemachine.case_file (machine_version_id, current_state, state_entered_at);
COMMENT ON TABLE statemachine.case_file IS 'Cases and their current state: a fast-read summary of statemachine.case_state_transition, written only by create_case and transition_case (reconcile() proves they agree).';
COMMENT ON COLUMN statemachine.case_file.id IS 'Case identity.';
COMMENT ON COLUMN statemachine.case_file.machine IS 'The machine governing this case.';
COMMENT ON COLUMN statemachine.case_file.machine_version IS 'The machine version the case is pinned to (its rules apply).';
COMMENT ON COLUMN statemachine.case_file.machine_version_id IS 'Identity of that machine version (statemachine.machine_version.id).';
COMMENT ON COLUMN statemachine.case_file.case_number IS 'Business case number, unique per machine.';
COMMENT ON COLUMN statemachine.case_file.current_state IS 'Current state; always equal to the to_state of the case''s latest history row.';
COMMENT ON COLUMN statemachine.case_file.state_version IS 'Number of transitions since creation (0 at creation); equal to the latest history row''s state_version. Pass it as expected_version for compare-and-swap.';
COMMENT ON COLUMN statemachine.case_file.state_entered_at IS 'When the case entered current_state (a transition to the same state does not reset it); min_time_in_state counts from here.';
COMMENT ON COLUMN statemachine.case_file.created_at IS 'When the case was created.';
COMMENT ON COLUMN statemachine.case_file.updated_at IS 'When the case last changed.';
COMMENT ON COLUMN statemachine.case_file.metadata IS 'Free-form JSON object; the only column a direct UPDATE may change.';
COMMENT ON COLUMN statemachine.case_file.root_case_id IS 'For a dimension of a case (seed 003 §11, §21: SLA, escalation, ...): the case it belongs to; NULL for a case itself. A dimension has its own machine, state, version and history.';
COMMENT ON COLUMN statemachine.case_file.dimensions IS 'On a case: the machines attached to it as dimensions (attach_dimension); transition_case finds a dimension by transition code or by name.';

CREATE TABLE statemachine.case_state_transition (
    id              uuid PRIMARY KEY,
    case_id         uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    machine         text NOT NULL,
    from_state      text,
    to_state        text NOT NULL,
    transition_code text NOT NULL,
    transition_kind text NOT NULL
                    CONSTRAINT case_transition_kind_chk CHECK (transition_kind IN ('create', 'normal', 'reopen', 'reversal', 'correction', 'admin', 'migration')),
    state_version   bigint NOT NULL CONSTRAINT case_transition_state_version_chk CHECK (state_version >= 0),
    actor_id        uuid NOT NULL,
    actor_role      text NOT NULL,
    reason_code     text,
    reason_text     text,
    policy_version  integer NOT NULL,
    occurred_at     timestamptz NOT NULL,
    command_id      uuid NOT NULL,
    correlation_id  uuid,
    causation_id    uuid,
    metadata        jsonb NOT NULL DEFAULT '{}'
                    CONSTRAINT case_transition_metadata_chk CHECK (pg_catalog.jsonb_typeof(metadata) = 'object'),
    recorded_by     text NOT NULL DEFAULT SESSION_USER,
    CONSTRAINT case_transition_command_uk UNIQUE (command_id),
    CONSTRAINT case_transition_version_uk UNIQUE (case_id, state_version),
    CONSTRAINT case_transition_create_chk CHECK ((state_version = 0) = (from_state IS NULL AND transition_code = 'CREATE'))
);
-- Audit by transition and time (seed 003 §22); audit by case uses case_transition_version_uk.
CREATE INDEX case_transition_code_time_idx ON statemachine.case_state_transition (transition_code, occurred_at DESC);
COMMENT ON TABLE statemachine.case_state_transition IS 'Append-only history of every case: one row per transition, the CREATE row included (seed 003 §14). The source of truth current state is derived from.';
COMMENT ON COLUMN statemachine.case_state_transition.id IS 'Transition identity (time-ordered UUID v7).';
COMMENT ON COLUMN statemachine.case_state_transition.case_id IS 'The case that moved.';
COMMENT ON COLUMN statemachine.case_state_transition.machine IS 'The machine of the case, so that state can be derived from history alone.';
COMMENT ON COLUMN statemachine.case_state_transition.from_state IS 'State before the transition; NULL for the CREATE row.';
COMMENT ON COLUMN statemachine.case_state_transition.to_state IS 'State after the transition.';
COMMENT ON COLUMN statemachine.case_state_transition.transition_code IS 'The command performed (CREATE for the first row).';
COMMENT ON COLUMN statemachine.case_state_transition.transition_kind IS 'Kind of the rule applied (create for the first row): normal, reopen, reversal, correction or admin; correction for correct_transition rows, migration for migrate_cases rows.';
COMMENT ON COLUMN statemachine.case_state_transition.state_version IS 'Position in the case''s history: 0 for CREATE, then gapless +1 per transition.';
COMMENT ON COLUMN statemachine.case_state_transition.actor_id IS 'Who performed the transition.';
COMMENT ON COLUMN statemachine.case_state_transition.actor_role IS 'In which role (capacity) the actor acted.';
COMMENT ON COLUMN statemachine.case_state_transition.reason_code IS 'Structured reason.';
COMMENT ON COLUMN statemachine.case_state_transition.reason_text IS 'Human explanation.';
COMMENT ON COLUMN statemachine.case_state_transition.policy_version IS 'The machine version whose rules allowed this transition.';
COMMENT ON COLUMN statemachine.case_state_transition.occurred_at IS 'Wall-clock time of the transition, taken under the case lock; never earlier than the case''s previous transition.';
COMMENT ON COLUMN statemachine.case_state_transition.command_id IS 'Idempotency key of the command (seed 003 §15): a replay returns this row and writes nothing.';
COMMENT ON COLUMN statemachine.case_state_transition.correlation_id IS 'Request or process trace this transition belongs to.';
COMMENT ON COLUMN statemachine.case_state_transition.causation_id IS 'The event or command that caused this one.';
COMMENT ON COLUMN statemachine.case_state_transition.metadata IS 'Free-form JSON object given by the caller.';
COMMENT ON COLUMN statemachine.case_state_transition.recorded_by IS 'Database session user that called the write path.';

CREATE TABLE statemachine.case_evidence (
    id                  uuid PRIMARY KEY,
    case_id             uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    evidence_type       text NOT NULL CONSTRAINT case_evidence_type_chk CHECK (evidence_type <> ''),
    storage_uri         text NOT NULL,
    content_hash        text NOT NULL,
    submitted_by        uuid NOT NULL,
    submitted_at        timestamptz NOT NULL,
    is_active           boolean NOT NULL DEFAULT true
);
CREATE INDEX case_evidence_case_idx ON statemachine.case_evidence (case_id);
COMMENT ON TABLE statemachine.case_evidence IS 'Evidence attached to a case (seed 003 §26); added by add_evidence, never changed or deleted except is_active, the summary of statemachine.case_evidence_deactivation.';
COMMENT ON COLUMN statemachine.case_evidence.id IS 'Evidence identity; pass it in transition_case''s evidence_ids.';
COMMENT ON COLUMN statemachine.case_evidence.case_id IS 'The case the evidence belongs to; it supports transitions of this case only.';
COMMENT ON COLUMN statemachine.case_evidence.evidence_type IS 'Kind of evidence, e.g. REVIEW_REPORT.';
COMMENT ON COLUMN statemachine.case_evidence.storage_uri IS 'Where the evidence document is stored.';
COMMENT ON COLUMN statemachine.case_evidence.content_hash IS 'Hash of the document''s content, to prove it has not changed.';
COMMENT ON COLUMN statemachine.case_evidence.submitted_by IS 'Who submitted the evidence.';
COMMENT ON COLUMN statemachine.case_evidence.submitted_at IS 'When the evidence was added.';
COMMENT ON COLUMN statemachine.case_evidence.is_active IS 'Only active evidence can support a transition. False exactly when a statemachine.case_evidence_deactivation row exists (reconcile_evidence() checks it).';

CREATE TABLE statemachine.case_evidence_deactivation (
    evidence_id    uuid PRIMARY KEY REFERENCES statemachine.case_evidence (id) DEFERRABLE,
    case_id        uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    deactivated_by uuid NOT NULL,
    deactivated_at timestamptz NOT NULL,
    reason         text NOT NULL CONSTRAINT case_evidence_deactivation_reason_chk CHECK (reason <> ''),
    recorded_by    text NOT NULL DEFAULT SESSION_USER
);
COMMENT ON TABLE statemachine.case_evidence_deactivation IS 'Append-only record of evidence deactivations (seed 003 §26): who took which evidence out of use, when and why. Evidence rows themselves are never rewritten.';
COMMENT ON COLUMN statemachine.case_evidence_deactivation.evidence_id IS 'The deactivated evidence (once: deactivation is final).';
COMMENT ON COLUMN statemachine.case_evidence_deactivation.case_id IS 'The evidence''s case.';
COMMENT ON COLUMN statemachine.case_evidence_deactivation.deactivated_by IS 'Actor who deactivated it.';
COMMENT ON COLUMN statemachine.case_evidence_deactivation.deactivated_at IS 'When.';
COMMENT ON COLUMN statemachine.case_evidence_deactivation.reason IS 'Why.';
COMMENT ON COLUMN statemachine.case_evidence_deactivation.recorded_by IS 'Database session user that called deactivate_evidence.';

CREATE TABLE statemachine.case_transition_evidence (
    transition_id uuid NOT NULL REFERENCES statemachine.case_state_transition (id) DEFERRABLE,
    evidence_id   uuid NOT NULL REFERENCES statemachine.case_evidence (id) DEFERRABLE,
    purpose       text NOT NULL,
    PRIMARY KEY (transition_id, evidence_id)
);
CREATE INDEX case_transition_evidence_evidence_idx ON statemachine.case_transition_evidence (evidence_id);
COMMENT ON TABLE statemachine.case_transition_evidence IS 'Which evidence supported which transition (seed 003 §26), written by transition_case in the same transaction.';
COMMENT ON COLUMN statemachine.case_transition_evidence.transition_id IS 'The history row the evidence supported.';
COMMENT ON COLUMN statemachine.case_transition_evidence.evidence_id IS 'The evidence.';
COMMENT ON COLUMN statemachine.case_transition_evidence.purpose IS 'required: it met the transition''s requires_evidence (true, or one of the listed types); supporting: passed along without being required.';

CREATE TABLE statemachine.case_transition_guard_result (
    id            uuid PRIMARY KEY,
    transition_id uuid NOT NULL REFERENCES statemachine.case_state_transition (id) DEFERRABLE,
    guard_code    text NOT NULL,
    passed        boolean NOT NULL,
    evaluated_at  timestamptz NOT NULL,
    evidence      jsonb NOT NULL DEFAULT '{}'
                  CONSTRAINT case_guard_result_evidence_chk CHECK (pg_catalog.jsonb_typeof(evidence) = 'object'),
    CONSTRAINT case_guard_result_uk UNIQUE (transition_id, guard_code)
);
COMMENT ON TABLE statemachine.case_transition_guard_result IS 'For transitions with "audit_guards": every guard evaluated and what it saw (seed 003 §9.3), written with the transition. A refused transition writes nothing, so every row here passed.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.id IS 'Row identity.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.transition_id IS 'The history row the guard allowed.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.guard_code IS 'The guard''s code in the definition.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.passed IS 'Whether the guard passed.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.evaluated_at IS 'When it was evaluated: the transition''s occurred_at, under the case lock.';
COMMENT ON COLUMN statemachine.case_transition_guard_result.evidence IS 'What the guard saw: for distinct_actor the prior actor, for requires_assignment the assignment, for sql guards the evidence the function returned.';

CREATE TABLE statemachine.case_state_correction (
    id                       uuid PRIMARY KEY,
    case_id                  uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    wrong_transition_id      uuid NOT NULL REFERENCES statemachine.case_state_transition (id) DEFERRABLE,
    correcting_transition_id uuid NOT NULL REFERENCES statemachine.case_state_transition (id) DEFERRABLE,
    corrected_by             uuid NOT NULL,
    corrected_at             timestamptz NOT NULL,
    reason_text              text NOT NULL CONSTRAINT case_state_correction_reason_chk CHECK (reason_text <> ''),
    recorded_by              text NOT NULL DEFAULT SESSION_USER,
    CONSTRAINT case_state_correction_wrong_uk UNIQUE (wrong_transition_id),
    CONSTRAINT case_state_correction_correcting_uk UNIQUE (correcting_transition_id)
);
COMMENT ON TABLE statemachine.case_state_correction IS 'Corrections (seed 003 §13.2): the wrong transition stays in the history; a corrective transition (code CORRECT, kind correction) moves the case, and this row links the two.';
COMMENT ON COLUMN statemachine.case_state_correction.id IS 'Correction identity.';
COMMENT ON COLUMN statemachine.case_state_correction.case_id IS 'The case.';
COMMENT ON COLUMN statemachine.case_state_correction.wrong_transition_id IS 'The history row that was wrong (corrected at most once).';
COMMENT ON COLUMN statemachine.case_state_correction.correcting_transition_id IS 'The corrective history row.';
COMMENT ON COLUMN statemachine.case_state_correction.corrected_by IS 'Actor who corrected it.';
COMMENT ON COLUMN statemachine.case_state_correction.corrected_at IS 'When (the corrective row''s occurred_at).';
COMMENT ON COLUMN statemachine.case_state_correction.reason_text IS 'Why the transition was wrong.';
COMMENT ON COLUMN statemachine.case_state_correction.recorded_by IS 'Database session user that called correct_transition.';

------------------------------------------------------------------------------------------
-- Transactional outbox (seed 003 §16)
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.outbox_event (
    id             uuid PRIMARY KEY,
    aggregate_id   uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    aggregate_seq  bigint NOT NULL,
    event_type     text NOT NULL,
    transition_id  uuid NOT NULL REFERENCES statemachine.case_state_transition (id) DEFERRABLE,
    payload        jsonb NOT NULL,
    correlation_id uuid,
    causation_id   uuid,
    created_at     timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    claimed_by     text,
    claimed_at     timestamptz,
    lease_until    timestamptz,
    acked_at       timestamptz,
    CONSTRAINT outbox_event_transition_uk UNIQUE (transition_id),
    CONSTRAINT outbox_event_aggregate_seq_uk UNIQUE (aggregate_id, aggregate_seq)
);
-- What claim_outbox scans: unacknowledged events in creation order.
CREATE INDEX outbox_event_pending_idx ON statemachine.outbox_event (created_at, id) WHERE acked_at IS NULL;
COMMENT ON TABLE statemachine.outbox_event IS 'Events written in the same transaction as the transitions that emit them (definition key "emit"); consumers take them with claim_outbox and confirm with ack_outbox. If a case''s history has an emitting transition, its event is here (reconcile_outbox).';
COMMENT ON COLUMN statemachine.outbox_event.id IS 'Event identity (time-ordered UUID v7).';
COMMENT ON COLUMN statemachine.outbox_event.aggregate_id IS 'The case the event is about.';
COMMENT ON COLUMN statemachine.outbox_event.aggregate_seq IS 'Order within the case: the transition''s state_version. An event is not handed out while an earlier one of its case is unacknowledged.';
COMMENT ON COLUMN statemachine.outbox_event.event_type IS 'The rule''s "emit" value, e.g. CaseApproved.';
COMMENT ON COLUMN statemachine.outbox_event.transition_id IS 'The history row that emitted it.';
COMMENT ON COLUMN statemachine.outbox_event.payload IS 'The transition (case, machine, from/to state, code, version, actor, role, reason, time, command id) and its correlation and causation ids.';
COMMENT ON COLUMN statemachine.outbox_event.correlation_id IS 'The transition''s correlation id.';
COMMENT ON COLUMN statemachine.outbox_event.causation_id IS 'The transition''s causation id.';
COMMENT ON COLUMN statemachine.outbox_event.created_at IS 'When the transition happened.';
COMMENT ON COLUMN statemachine.outbox_event.attempts IS 'How many times the event was handed out (claim_outbox); more than 1 means a lease expired and it was delivered again.';
COMMENT ON COLUMN statemachine.outbox_event.claimed_by IS 'Consumer holding (or last holding) the event.';
COMMENT ON COLUMN statemachine.outbox_event.claimed_at IS 'When it was last handed out.';
COMMENT ON COLUMN statemachine.outbox_event.lease_until IS 'Until when the claim holds; after that the event is handed out again.';
COMMENT ON COLUMN statemachine.outbox_event.acked_at IS 'When a consumer confirmed it (ack_outbox); NULL while pending.';

------------------------------------------------------------------------------------------
-- Assignments (seed 003 §24): append-only periods, released by a second row.
------------------------------------------------------------------------------------------

CREATE TABLE statemachine.case_assignment (
    id          uuid PRIMARY KEY,
    case_id     uuid NOT NULL REFERENCES statemachine.case_file (id) DEFERRABLE,
    assignee_id uuid NOT NULL,
    role_code   text NOT NULL CONSTRAINT case_assignment_role_chk CHECK (role_code <> ''),
    assigned_by uuid NOT NULL,
    assigned_at timestamptz NOT NULL,
    command_id  uuid NOT NULL CONSTRAINT case_assignment_command_uk UNIQUE,
    recorded_by text NOT NULL DEFAULT SESSION_USER
);
CREATE INDEX case_assignment_lookup_idx ON statemachine.case_assignment (case_id, assignee_id, role_code, assigned_at DESC);
COMMENT ON TABLE statemachine.case_assignment IS 'Who was assigned to a case in which role, by whom, when (assign_case). Never updated: a release is a row in statemachine.case_assignment_release.';
COMMENT ON COLUMN statemachine.case_assignment.id IS 'Assignment identity.';
COMMENT ON COLUMN statemachine.case_assignment.case_id IS 'The case.';
COMMENT ON COLUMN statemachine.case_assignment.assignee_id IS 'Who was assigned.';
COMMENT ON COLUMN statemachine.case_assignment.role_code IS 'In which role (what requires_assignment guards ask for).';
COMMENT ON COLUMN statemachine.case_assignment.assigned_by IS 'Actor who made the assignment.';
COMMENT ON COLUMN statemachine.case_assignment.assigned_at IS 'When.';
COMMENT ON COLUMN statemachine.case_assignment.command_id IS 'Idempotency key of assign_case.';
COMMENT ON COLUMN statemachine.case_assignment.recorded_by IS 'Database session user that called assign_case.';

CREATE TABLE statemachine.case_assignment_release (
    assignment_id uuid PRIMARY KEY REFERENCES statemachine.case_assignment (id) DEFERRABLE,
    released_by   uuid NOT NULL,
    released_at   timestamptz NOT NULL,
    command_id    uuid NOT NULL CONSTRAINT case_assignment_release_command_uk UNIQUE,
    recorded_by   text NOT NULL DEFAULT SESSION_USER
);
COMMENT ON TABLE statemachine.case_assignment_release IS 'The end of an assignment (release_assignment); at most one per assignment.';
COMMENT ON COLUMN statemachine.case_assignment_release.assignment_id IS 'The assignment that ended.';
COMMENT ON COLUMN statemachine.case_assignment_release.released_by IS 'Actor who released it.';
COMMENT ON COLUMN statemachine.case_assignment_release.released_at IS 'When.';
COMMENT ON COLUMN statemachine.case_assignment_release.command_id IS 'Idempotency key of release_assignment.';
COMMENT ON COLUMN statemachine.case_assignment_release.recorded_by IS 'Database session user that called release_assignment.';

CREATE TABLE statemachine.break_glass_event (
    id             uuid PRIMARY KEY,
    reason         text NOT NULL CONSTRAINT break_glass_reason_chk CHECK (pg_catalog.btrim(reason) <> ''),
    session_user_name text NOT NULL DEFAULT SESSION_USER,
    backend_pid    integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    transaction_id bigint NOT NULL,
    occurred_at    timestamptz NOT NULL
);
COMMENT ON TABLE statemachine.break_glass_event IS 'Append-only record of break_glass() calls: each lets the rest of its own transaction change the guards of the extension''s tables (which the event trigger statemachine_guard_ddl otherwise refuses). A transaction that rolls back leaves no row, and changed nothing.';
COMMENT ON COLUMN statemachine.break_glass_event.id IS 'Event identity.';
COMMENT ON COLUMN statemachine.break_glass_event.reason IS 'Why the glass was broken.';
COMMENT ON COLUMN statemachine.break_glass_event.session_user_name IS 'Who (session user).';
COMMENT ON COLUMN statemachine.break_glass_event.backend_pid IS 'The backend that broke it.';
COMMENT ON COLUMN statemachine.break_glass_event.transaction_id IS 'The transaction it applies to (txid_current()).';
COMMENT ON COLUMN statemachine.break_glass_event.occurred_at IS 'When.';

------------------------------------------------------------------------------------------
-- Guard triggers: the only door is the write path's own Rust code.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.guard_direct_write() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'sm_guard_direct_write';
COMMENT ON FUNCTION statemachine.guard_direct_write() IS 'Trigger refusing (SM007) every write to the extension''s tables that does not come from its own write path.';

DO $guards$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['machine', 'machine_version', 'state', 'state_invariant', 'transition_rule', 'transition_rule_role',
                             'transition_reason', 'transition_guard', 'guard_function',
                             'case_file', 'case_state_transition', 'case_evidence', 'case_evidence_deactivation',
                             'case_transition_evidence', 'case_transition_guard_result',
                             'case_assignment', 'case_assignment_release', 'outbox_event', 'case_state_correction',
                             'break_glass_event']
    LOOP
        -- zz_: BEFORE triggers fire in name order; the guard should see the row as
        -- every other BEFORE trigger left it.
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zz_guard_direct_write BEFORE INSERT OR UPDATE OR DELETE ON statemachine.%I
                 FOR EACH ROW EXECUTE FUNCTION statemachine.guard_direct_write()', t);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zz_guard_direct_truncate BEFORE TRUNCATE ON statemachine.%I
                 FOR EACH STATEMENT EXECUTE FUNCTION statemachine.guard_direct_write()', t);
        -- ALWAYS: also under session_replication_role = replica.
        EXECUTE pg_catalog.format('ALTER TABLE statemachine.%I ENABLE ALWAYS TRIGGER zz_guard_direct_write', t);
        EXECUTE pg_catalog.format('ALTER TABLE statemachine.%I ENABLE ALWAYS TRIGGER zz_guard_direct_truncate', t);
    END LOOP;
END
$guards$;

------------------------------------------------------------------------------------------
-- The API (see README: "SQL reference" and "Privileges"; docs/guards.md)
--
-- Every function is SECURITY DEFINER with a pinned search_path: an application role
-- needs only USAGE on the schema and EXECUTE on the functions, never a table privilege,
-- and nothing a caller puts on its search_path can stand in for what they use.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.define_machine(definition jsonb) RETURNS integer
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_define_machine';
COMMENT ON FUNCTION statemachine.define_machine(jsonb) IS 'Publishes a machine definition and returns its version; the same definition again returns the existing version (SM010 when invalid).';

CREATE FUNCTION statemachine.validate_machine(definition jsonb)
    RETURNS TABLE (severity text, path text, problem text)
    LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_validate_machine';
COMMENT ON FUNCTION statemachine.validate_machine(jsonb) IS 'Every problem of a definition, with its JSON path, without publishing anything (sql guards are checked against the registered ones).';

CREATE FUNCTION statemachine.machine_definition(machine text, version integer DEFAULT NULL) RETURNS jsonb
    LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_machine_definition';
COMMENT ON FUNCTION statemachine.machine_definition(text, integer) IS 'A published definition in canonical form (latest version when version is NULL).';

CREATE FUNCTION statemachine.register_guard(code text, function regprocedure, description text)
    RETURNS statemachine.guard_function
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_register_guard';
COMMENT ON FUNCTION statemachine.register_guard(text, regprocedure, text) IS 'Registers (or re-points) a function as the "sql" guard named code. The function takes (case_id uuid, context jsonb), is STABLE or IMMUTABLE, returns boolean or (passed boolean, evidence jsonb), and is owned by a superuser or the extension''s owner.';

CREATE FUNCTION statemachine.create_case(
    machine text, case_number text, actor_id uuid, actor_role text, command_id uuid,
    case_id uuid DEFAULT NULL, metadata jsonb DEFAULT '{}')
    RETURNS statemachine.case_file
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_create_case';
COMMENT ON FUNCTION statemachine.create_case(text, text, uuid, text, uuid, uuid, jsonb) IS 'Creates a case in its machine''s initial state (latest active version) with its CREATE history row; idempotent on command_id.';

CREATE FUNCTION statemachine.transition_case(
    case_id uuid, transition_code text, actor_id uuid, actor_role text, command_id uuid,
    reason_code text DEFAULT NULL, reason_text text DEFAULT NULL, expected_version bigint DEFAULT NULL,
    evidence_ids uuid[] DEFAULT NULL, correlation_id uuid DEFAULT NULL, causation_id uuid DEFAULT NULL,
    metadata jsonb DEFAULT '{}', dimension text DEFAULT NULL)
    RETURNS statemachine.case_state_transition
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_transition_case';
COMMENT ON FUNCTION statemachine.transition_case(uuid, text, uuid, text, uuid, text, text, bigint, uuid[], uuid, uuid, jsonb, text) IS 'The one write path: checks (rule, role, reason, evidence, guards, cross-dimension invariants) and performs a transition, appends its history row; idempotent on command_id. On a case with dimensions, a code of a dimension''s machine (or an explicit dimension) moves that dimension.';

CREATE FUNCTION statemachine.attach_dimension(case_id uuid, machine text, actor_id uuid, actor_role text, command_id uuid)
    RETURNS statemachine.case_file
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_attach_dimension';
COMMENT ON FUNCTION statemachine.attach_dimension(uuid, text, uuid, text, uuid) IS 'Gives a case another independent dimension (seed 003 §11, §21): a linked case row running machine, in its initial state, with its own history; its id is md5(''dimension:'' || case_id || '':'' || machine)::uuid. The machines of one case must not share transition codes. Idempotent on command_id.';

CREATE FUNCTION statemachine.correct_transition(
    transition_id uuid, to_state text, reason_text text, actor_id uuid, actor_role text, command_id uuid)
    RETURNS statemachine.case_state_transition
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_correct_transition';
COMMENT ON FUNCTION statemachine.correct_transition(uuid, text, text, uuid, text, uuid) IS 'Corrects a wrong transition (seed 003 §13.2): appends a corrective history row (code CORRECT, kind correction) moving the case to to_state, and a case_state_correction row linking it to the wrong one, which stays. Only the latest transition unless the definition says "corrections": "any"; idempotent on command_id.';

CREATE FUNCTION statemachine.migrate_cases(
    machine text, from_version integer, to_version integer, state_map jsonb, actor_id uuid, actor_role text,
    command_id uuid, dry_run boolean DEFAULT true)
    RETURNS TABLE (case_id uuid, case_number text, from_state text, to_state text, outcome text, detail text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_migrate_cases';
COMMENT ON FUNCTION statemachine.migrate_cases(text, integer, integer, jsonb, uuid, text, uuid, boolean) IS 'Moves the cases of one version of a machine to another (seed 003 §20) by state_map, each with a MIGRATE history row carrying the mapping; a state without a mapping or flagged requires_manual_review is listed and left alone, never guessed. dry_run (the default) only reports.';

CREATE FUNCTION statemachine.retire_version(machine text, version integer)
    RETURNS statemachine.machine_version
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_retire_version';
COMMENT ON FUNCTION statemachine.retire_version(text, integer) IS 'Retires a machine version: no new cases are created under it (55006 while cases are still pinned to it). Retiring again returns the row.';

CREATE FUNCTION statemachine.check_transition(
    case_id uuid, transition_code text, actor_id uuid, actor_role text,
    reason_code text DEFAULT NULL, reason_text text DEFAULT NULL, evidence_ids uuid[] DEFAULT NULL)
    RETURNS TABLE (check_name text, passed boolean, detail text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_check_transition';
COMMENT ON FUNCTION statemachine.check_transition(uuid, text, uuid, text, text, text, uuid[]) IS 'Dry run of transition_case: every check (rule, role, reason, evidence, each guard) with passed and detail; writes nothing.';

CREATE FUNCTION statemachine.add_evidence(
    case_id uuid, evidence_type text, storage_uri text, content_hash text, submitted_by uuid)
    RETURNS uuid
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_add_evidence';
COMMENT ON FUNCTION statemachine.add_evidence(uuid, text, text, text, uuid) IS 'Attaches evidence to a case and returns its id.';

CREATE FUNCTION statemachine.deactivate_evidence(evidence_id uuid, actor_id uuid, reason text)
    RETURNS statemachine.case_evidence_deactivation
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_deactivate_evidence';
COMMENT ON FUNCTION statemachine.deactivate_evidence(uuid, uuid, text) IS 'Takes evidence out of use: appends who, when and why to case_evidence_deactivation (the first deactivation stands; calling again returns it).';

CREATE FUNCTION statemachine.assign_case(case_id uuid, assignee_id uuid, role_code text, actor_id uuid, command_id uuid)
    RETURNS statemachine.case_assignment
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_assign_case';
COMMENT ON FUNCTION statemachine.assign_case(uuid, uuid, text, uuid, uuid) IS 'Assigns assignee_id to the case in role_code (what requires_assignment guards check); returns the active assignment, idempotent on command_id.';

CREATE FUNCTION statemachine.release_assignment(case_id uuid, assignee_id uuid, role_code text, actor_id uuid, command_id uuid)
    RETURNS statemachine.case_assignment_release
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_release_assignment';
COMMENT ON FUNCTION statemachine.release_assignment(uuid, uuid, text, uuid, uuid) IS 'Ends the active assignment of assignee_id in role_code on the case (SM009 when there is none); idempotent on command_id.';

CREATE FUNCTION statemachine.available_transitions(case_id uuid, actor_role text DEFAULT NULL, actor_id uuid DEFAULT NULL)
    RETURNS TABLE (transition_code text, to_state text, requires_reason boolean, requires_evidence boolean,
                   allowed boolean, blocked_by text)
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_available_transitions';
COMMENT ON FUNCTION statemachine.available_transitions(uuid, text, uuid) IS 'Transitions legal from the case''s current state, evaluated like transition_case (reason and evidence assumed to come): allowed, or blocked_by the first failing check. A NULL actor_role skips the role check; a NULL actor_id skips the guards about the actor.';

-- Runs one sql guard function in a subtransaction and hands back its verdict or its
-- error, so the write path can re-raise that error unchanged (SQLSTATE, DETAIL, HINT)
-- with a CONTEXT line naming the guard. Internal: not granted to anyone.
CREATE FUNCTION statemachine.evaluate_sql_guard(
    guard regprocedure, returns text, case_id uuid, context jsonb,
    OUT passed boolean, OUT evidence jsonb, OUT error_sqlstate text, OUT error_message text,
    OUT error_detail text, OUT error_hint text, OUT error_context text)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- regproc output is schema-qualified and quoted (search_path is pinned above).
    fn text := guard::oid::regproc::text;
BEGIN
    IF returns = 'boolean' THEN
        EXECUTE pg_catalog.format('SELECT %s($1, $2), NULL::pg_catalog.jsonb', fn) INTO passed, evidence USING case_id, context;
    ELSE
        EXECUTE pg_catalog.format('SELECT r.passed, r.evidence FROM %s($1, $2) AS r', fn) INTO passed, evidence USING case_id, context;
    END IF;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_sqlstate = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
        error_detail = PG_EXCEPTION_DETAIL, error_hint = PG_EXCEPTION_HINT, error_context = PG_EXCEPTION_CONTEXT;
    passed := NULL;
    evidence := NULL;
END
$$;
COMMENT ON FUNCTION statemachine.evaluate_sql_guard(regprocedure, text, uuid, jsonb) IS 'Internal: calls one sql guard function, catching its error so the write path can re-raise it with the guard named in CONTEXT.';

CREATE FUNCTION statemachine.claim_outbox(consumer text, batch integer, lease interval)
    RETURNS SETOF statemachine.outbox_event
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_claim_outbox';
COMMENT ON FUNCTION statemachine.claim_outbox(text, integer, interval) IS 'Hands out up to batch pending events to consumer for lease (FOR UPDATE SKIP LOCKED: concurrent consumers never get the same event; an event waits while an earlier one of its case is unacknowledged; an expired lease hands an event out again).';

CREATE FUNCTION statemachine.ack_outbox(ids uuid[]) RETURNS integer
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_ack_outbox';
COMMENT ON FUNCTION statemachine.ack_outbox(uuid[]) IS 'Confirms events as delivered; returns how many were newly acknowledged (acknowledging again is harmless).';

CREATE FUNCTION statemachine.reconcile_outbox()
    RETURNS TABLE (transition_id uuid, case_id uuid, transition_code text, event_type text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.case_id, t.transition_code, r.emit_event
      FROM statemachine.case_state_transition t
      JOIN statemachine.machine_version v ON v.machine = t.machine AND v.version = t.policy_version
      JOIN statemachine.transition_rule r
        ON r.machine_version_id = v.id AND r.from_state = t.from_state AND r.transition_code = t.transition_code
     WHERE r.emit_event IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM statemachine.outbox_event o WHERE o.transition_id = t.id)
     ORDER BY t.case_id, t.state_version
$$;
COMMENT ON FUNCTION statemachine.reconcile_outbox() IS 'Every transition whose rule emits an event but has no outbox event (seed 003 §16: "if state says approved, the event exists"); zero rows is the healthy answer.';

CREATE FUNCTION statemachine.bulk_transition(
    case_ids uuid[], transition_code text, actor_id uuid, actor_role text, reason_code text, reason_text text,
    correlation_id uuid, on_error text DEFAULT 'abort')
    RETURNS TABLE (case_id uuid, ok boolean, to_state text, state_version bigint, error_sqlstate text, error_message text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id uuid;
    t statemachine.case_state_transition;
BEGIN
    IF on_error IS NULL OR on_error NOT IN ('abort', 'skip') THEN
        RAISE EXCEPTION 'on_error must be abort or skip, not %', coalesce(on_error, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF correlation_id IS NULL THEN
        RAISE EXCEPTION 'correlation_id must not be NULL'
            USING ERRCODE = '22004', HINT = 'It ties the bulk''s history rows together and makes a re-run idempotent.';
    END IF;
    -- Cases in id order, so that two bulks lock in the same order and cannot deadlock.
    FOR id IN SELECT DISTINCT u.id FROM unnest(case_ids) AS u(id) WHERE u.id IS NOT NULL ORDER BY 1 LOOP
        case_id := id;
        IF on_error = 'abort' THEN
            t := statemachine.bulk_transition_one(id, transition_code, actor_id, actor_role, reason_code, reason_text, correlation_id);
            ok := true; to_state := t.to_state; state_version := t.state_version; error_sqlstate := NULL; error_message := NULL;
        ELSE
            BEGIN
                t := statemachine.bulk_transition_one(id, transition_code, actor_id, actor_role, reason_code, reason_text, correlation_id);
                ok := true; to_state := t.to_state; state_version := t.state_version; error_sqlstate := NULL; error_message := NULL;
            EXCEPTION WHEN OTHERS THEN
                ok := false; to_state := NULL; state_version := NULL;
                GET STACKED DIAGNOSTICS error_sqlstate = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT;
            END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION statemachine.bulk_transition(uuid[], text, uuid, text, text, text, uuid, text) IS 'Maintenance through the front door (seed 003 §28): transition_case for each case, each with its own history row sharing correlation_id. on_error abort: the first refusal aborts all; skip: each case in its own subtransaction, the result says per case what happened. Re-running with the same correlation_id is idempotent.';

-- One case of a bulk: its command_id is derived from (correlation_id, case, code), so a
-- re-run of the same bulk replays instead of transitioning twice.
CREATE FUNCTION statemachine.bulk_transition_one(
    case_id uuid, transition_code text, actor_id uuid, actor_role text, reason_code text, reason_text text,
    correlation_id uuid)
    RETURNS statemachine.case_state_transition
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT statemachine.transition_case($1, $2, $3, $4,
               md5('bulk:' || $7::text || ':' || $1::text || ':' || $2)::uuid,
               reason_code => $5, reason_text => $6, correlation_id => $7)
$$;
COMMENT ON FUNCTION statemachine.bulk_transition_one(uuid, text, uuid, text, text, text, uuid) IS 'Internal: one case of bulk_transition, with its derived command_id.';

CREATE FUNCTION statemachine.bulk_transition_by_state(
    machine text, in_state text, older_than interval, transition_code text, actor_id uuid, actor_role text,
    reason_code text, reason_text text, correlation_id uuid, on_error text DEFAULT 'abort', max_cases integer DEFAULT NULL)
    RETURNS TABLE (case_id uuid, ok boolean, to_state text, state_version bigint, error_sqlstate text, error_message text)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.* FROM statemachine.bulk_transition(
        ARRAY(SELECT c.id FROM statemachine.case_file c
               WHERE c.machine = $1 AND c.current_state = $2 AND c.state_entered_at <= now() - $3
               ORDER BY c.state_entered_at, c.id LIMIT $11),
        $4, $5, $6, $7, $8, $9, $10) b
$$;
COMMENT ON FUNCTION statemachine.bulk_transition_by_state(text, text, interval, text, uuid, text, text, text, uuid, text, integer) IS 'bulk_transition for the cases of a machine that have been in a state longer than older_than (e.g. close every case older than two years), oldest first, at most max_cases.';

CREATE FUNCTION statemachine.run_due_transitions(batch integer)
    RETURNS TABLE (case_id uuid, transition_code text, ok boolean, to_state text, error_sqlstate text, error_message text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due record;
    t statemachine.case_state_transition;
    done uuid[] := '{}';
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'batch must be a positive integer' USING ERRCODE = '22023';
    END IF;
    -- Due cases, oldest first; SKIP LOCKED lets several sessions work through the
    -- backlog at once without waiting on each other or firing a case twice.
    FOR due IN
        SELECT c.id, c.state_version, r.transition_code
          FROM statemachine.transition_rule r
          JOIN statemachine.case_file c
            ON c.machine_version_id = r.machine_version_id AND c.current_state = r.from_state
           AND c.state_entered_at <= now() - r.fire_after
         WHERE r.fire_after IS NOT NULL
         ORDER BY c.state_entered_at, c.id, r.fire_after, r.transition_code
         LIMIT batch
           FOR UPDATE OF c SKIP LOCKED
    LOOP
        -- Two timed rules due from one state: the first fires, the other is moot.
        CONTINUE WHEN due.id = ANY (done);
        done := done || due.id;
        case_id := due.id;
        transition_code := due.transition_code;
        BEGIN
            -- The command id is derived from the case's version: a re-run never fires twice.
            t := statemachine.transition_case(due.id, due.transition_code, '00000000-0000-0000-0000-000000000000', 'SYSTEM',
                     md5('timer:' || due.id::text || ':' || due.transition_code || ':' || due.state_version::text)::uuid,
                     reason_code => 'TIMER');
            ok := true; to_state := t.to_state; error_sqlstate := NULL; error_message := NULL;
        EXCEPTION WHEN OTHERS THEN
            ok := false; to_state := NULL;
            GET STACKED DIAGNOSTICS error_sqlstate = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION statemachine.run_due_transitions(integer) IS 'Performs up to batch due timed transitions ("after"), as actor 00000000-0000-0000-0000-000000000000 in role SYSTEM with reason TIMER; a refused one (e.g. by a guard) is reported and skipped. Safe to run from several sessions at once; schedule it with pg_cron.';

------------------------------------------------------------------------------------------
-- Derived truth (seed 000; seed 003 §29.4): state from history alone.
------------------------------------------------------------------------------------------

CREATE VIEW statemachine.v_case_current_state AS
SELECT l.case_id,
       l.machine,
       l.to_state AS current_state,
       l.state_version,
       (SELECT e.occurred_at
          FROM statemachine.case_state_transition e
         WHERE e.case_id = l.case_id
           AND e.from_state IS DISTINCT FROM e.to_state
         ORDER BY e.state_version DESC
         LIMIT 1) AS state_entered_at
  FROM (SELECT DISTINCT ON (t.case_id) t.case_id, t.machine, t.to_state, t.state_version
          FROM statemachine.case_state_transition t
         ORDER BY t.case_id, t.state_version DESC) l;
COMMENT ON VIEW statemachine.v_case_current_state IS 'Current state of every case derived from statemachine.case_state_transition alone, never from case_file.';
COMMENT ON COLUMN statemachine.v_case_current_state.case_id IS 'The case.';
COMMENT ON COLUMN statemachine.v_case_current_state.machine IS 'Its machine.';
COMMENT ON COLUMN statemachine.v_case_current_state.current_state IS 'to_state of the latest history row.';
COMMENT ON COLUMN statemachine.v_case_current_state.state_version IS 'state_version of the latest history row.';
COMMENT ON COLUMN statemachine.v_case_current_state.state_entered_at IS 'occurred_at of the latest history row that changed the state.';

CREATE FUNCTION statemachine.state_at(case_id uuid, at timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.to_state
      FROM statemachine.case_state_transition t
     WHERE t.case_id = $1 AND t.occurred_at <= $2
     ORDER BY t.state_version DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION statemachine.state_at(uuid, timestamptz) IS 'The state the case was in at a moment, from its history (NULL before it existed).';

CREATE FUNCTION statemachine.require_case(case_id uuid) RETURNS void
    LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_require_case';
COMMENT ON FUNCTION statemachine.require_case(uuid) IS 'Raises SM009 unless the case exists.';

CREATE FUNCTION statemachine.case_history(case_id uuid) RETURNS SETOF statemachine.case_state_transition
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM statemachine.require_case($1);
    RETURN QUERY
        SELECT t.* FROM statemachine.case_state_transition t
         WHERE t.case_id = $1
         ORDER BY t.state_version;
END
$$;
COMMENT ON FUNCTION statemachine.case_history(uuid) IS 'Every history row of a case, by state_version (SM009 for an unknown case).';

CREATE FUNCTION statemachine.reconcile()
    RETURNS TABLE (case_id uuid, current_state text, derived_state text, state_version bigint, derived_version bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- One pass over the history: the latest row per case, and how many rows it has.
    -- derived_version is rows - 1: what a gapless history supports.
    WITH h AS (
        SELECT DISTINCT ON (t.case_id)
               t.case_id, t.to_state, t.state_version,
               count(*) OVER (PARTITION BY t.case_id) - 1 AS derived_version
          FROM statemachine.case_state_transition t
         ORDER BY t.case_id, t.state_version DESC
    )
    SELECT c.id, c.current_state, h.to_state, c.state_version, h.derived_version
      FROM statemachine.case_file c
      LEFT JOIN h ON h.case_id = c.id
     WHERE h.case_id IS NULL
        OR h.to_state <> c.current_state
        OR h.derived_version <> c.state_version
        OR h.state_version <> c.state_version
     ORDER BY c.id
$$;
COMMENT ON FUNCTION statemachine.reconcile() IS 'Every case whose stored state or version disagrees with its history (missing or gapped history included); zero rows is the healthy answer.';

CREATE FUNCTION statemachine.state_durations(case_id uuid)
    RETURNS TABLE (state text, entered integer, total interval)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- Each history row starts a stay in its to_state that lasts until the next row (or now).
    SELECT d.to_state, count(*) FILTER (WHERE d.from_state IS DISTINCT FROM d.to_state)::integer, sum(d.stay)
      FROM (SELECT t.to_state, t.from_state,
                   COALESCE(lead(t.occurred_at) OVER (ORDER BY t.state_version), now()) - t.occurred_at AS stay
              FROM statemachine.case_state_transition t WHERE t.case_id = $1) d
     GROUP BY d.to_state
     ORDER BY d.to_state
$$;
COMMENT ON FUNCTION statemachine.state_durations(uuid) IS 'Time a case (or a dimension of it) has spent in each state, from its history: SLA pause accounting (seed 003 §23) is the PAUSED row of its SLA dimension.';

CREATE FUNCTION statemachine.reconcile_evidence()
    RETURNS TABLE (evidence_id uuid, case_id uuid, is_active boolean, deactivated_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.id, e.case_id, e.is_active, d.deactivated_at
      FROM statemachine.case_evidence e
      LEFT JOIN statemachine.case_evidence_deactivation d ON d.evidence_id = e.id
     WHERE e.is_active = (d.evidence_id IS NOT NULL)
     ORDER BY e.id
$$;
COMMENT ON FUNCTION statemachine.reconcile_evidence() IS 'Every evidence row whose is_active disagrees with its deactivation record; zero rows is the healthy answer.';

------------------------------------------------------------------------------------------
-- Reporting views: assignments and reasons (seed 003 §24, §25).
------------------------------------------------------------------------------------------

CREATE VIEW statemachine.v_case_assignment_current AS
SELECT a.case_id, a.assignee_id, a.role_code, a.id AS assignment_id, a.assigned_by, a.assigned_at
  FROM statemachine.case_assignment a
 WHERE NOT EXISTS (SELECT 1 FROM statemachine.case_assignment_release r WHERE r.assignment_id = a.id);
COMMENT ON VIEW statemachine.v_case_assignment_current IS 'Assignments in force: assigned and not released.';
COMMENT ON COLUMN statemachine.v_case_assignment_current.case_id IS 'The case.';
COMMENT ON COLUMN statemachine.v_case_assignment_current.assignee_id IS 'Who is assigned.';
COMMENT ON COLUMN statemachine.v_case_assignment_current.role_code IS 'In which role.';
COMMENT ON COLUMN statemachine.v_case_assignment_current.assignment_id IS 'statemachine.case_assignment.id.';
COMMENT ON COLUMN statemachine.v_case_assignment_current.assigned_by IS 'Who assigned them.';
COMMENT ON COLUMN statemachine.v_case_assignment_current.assigned_at IS 'Since when.';

CREATE VIEW statemachine.v_reason_usage AS
SELECT r.machine, r.version, r.transition_code, r.reason_code, r.label,
       (SELECT count(*) FROM statemachine.case_state_transition t
         WHERE t.machine = r.machine AND t.policy_version = r.version
           AND t.transition_code = r.transition_code AND t.reason_code = r.reason_code) AS uses,
       (SELECT max(t.occurred_at) FROM statemachine.case_state_transition t
         WHERE t.machine = r.machine AND t.policy_version = r.version
           AND t.transition_code = r.transition_code AND t.reason_code = r.reason_code) AS last_used_at
  FROM (SELECT DISTINCT v.machine, v.version, tr.transition_code, tr.reason_code, tr.label
          FROM statemachine.transition_reason tr
          JOIN statemachine.machine_version v ON v.id = tr.machine_version_id) r;
COMMENT ON VIEW statemachine.v_reason_usage IS 'Every declared reason code with how often and how recently it was given (seed 003 §25: reporting, trend analysis, abuse detection).';
COMMENT ON COLUMN statemachine.v_reason_usage.machine IS 'Machine.';
COMMENT ON COLUMN statemachine.v_reason_usage.version IS 'Machine version declaring the reason.';
COMMENT ON COLUMN statemachine.v_reason_usage.transition_code IS 'Transition the reason belongs to.';
COMMENT ON COLUMN statemachine.v_reason_usage.reason_code IS 'The reason code.';
COMMENT ON COLUMN statemachine.v_reason_usage.label IS 'Its label.';
COMMENT ON COLUMN statemachine.v_reason_usage.uses IS 'Transitions recorded with this reason under that version.';
COMMENT ON COLUMN statemachine.v_reason_usage.last_used_at IS 'The latest of them.';

------------------------------------------------------------------------------------------
-- Privileges. PUBLIC gets nothing: functions are EXECUTE-able by PUBLIC by default,
-- so that default is revoked. Grant an application role USAGE on the schema and
-- EXECUTE on the application API (README "Privileges").
------------------------------------------------------------------------------------------

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA statemachine FROM PUBLIC;

------------------------------------------------------------------------------------------
-- Backup: pg_dump dumps the data of every table (definitions, cases, history, evidence,
-- assignments, outbox, audit). Restoring it is docs/operations.md: the COPYs run in one
-- transaction that called break_glass() and deferred the (DEFERRABLE) foreign keys.
------------------------------------------------------------------------------------------

DO $dump$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'statemachine'::regnamespace AND c.relkind = 'r' ORDER BY c.relname
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t, '');
    END LOOP;
END
$dump$;
REVOKE ALL ON ALL TABLES IN SCHEMA statemachine FROM PUBLIC;

------------------------------------------------------------------------------------------
-- DDL that would weaken the guards (issue 5, hostile SQL): refused by an event trigger
-- unless break_glass(reason) was called earlier in the same transaction.
------------------------------------------------------------------------------------------

CREATE FUNCTION statemachine.break_glass(reason text) RETURNS statemachine.break_glass_event
    LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'sm_break_glass';
COMMENT ON FUNCTION statemachine.break_glass(text) IS 'Records (append-only) that the current transaction may change the guard triggers of the extension''s tables, and why. Not granted to anyone but the extension''s owner.';

CREATE FUNCTION statemachine.guard_weaknesses()
    RETURNS TABLE (table_name text, problem text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- Every table of the schema keeps both guard triggers, ENABLE ALWAYS ...
    SELECT c.relname::text, pg_catalog.format('guard trigger %s is %s', g.tgname,
               CASE WHEN t.oid IS NULL THEN 'missing'
                    WHEN t.tgenabled = 'D' THEN 'disabled'
                    ELSE 'not ENABLE ALWAYS (' || t.tgenabled::text || ')' END)
      FROM pg_class c
     CROSS JOIN (VALUES ('zz_guard_direct_write'), ('zz_guard_direct_truncate')) g(tgname)
      LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = g.tgname
     WHERE c.relnamespace = 'statemachine'::regnamespace AND c.relkind = 'r'
       AND (t.oid IS NULL OR t.tgenabled <> 'A')
    UNION ALL
    -- ... and no other trigger: it would run inside the write path's open door.
    SELECT c.relname::text, pg_catalog.format('extra trigger %s', t.tgname)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'statemachine'::regnamespace AND NOT t.tgisinternal
       AND t.tgname NOT IN ('zz_guard_direct_write', 'zz_guard_direct_truncate')
    UNION ALL
    -- Row-level security would put policies (user code) into the write path too.
    SELECT c.relname::text, 'row level security is enabled'
      FROM pg_class c
     WHERE c.relnamespace = 'statemachine'::regnamespace AND c.relkind = 'r' AND c.relrowsecurity
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION statemachine.guard_weaknesses() IS 'Every way the guards of the extension''s tables are currently weakened (disabled, missing or non-ALWAYS guard triggers, extra triggers, row-level security); zero rows is the healthy answer.';

CREATE FUNCTION statemachine.guard_ddl() RETURNS event_trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problems text;
BEGIN
    SELECT string_agg(w.table_name || ': ' || w.problem, E'\n') INTO problems FROM statemachine.guard_weaknesses() w;
    IF problems IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM statemachine.break_glass_event b WHERE b.transaction_id = pg_catalog.txid_current()) THEN
        RAISE EXCEPTION USING ERRCODE = 'SM007',
            MESSAGE = pg_catalog.format('%s would weaken the guards of the statemachine tables', tg_tag),
            DETAIL = problems,
            HINT = 'Guards apply to every role. For an audited exception call statemachine.break_glass(reason) earlier in the same transaction.';
    END IF;
END
$$;
COMMENT ON FUNCTION statemachine.guard_ddl() IS 'Event trigger: refuses (SM007) any ALTER TABLE / CREATE, ALTER or DROP TRIGGER / policy command that leaves statemachine.guard_weaknesses() non-empty, unless the transaction called break_glass().';

CREATE EVENT TRIGGER statemachine_guard_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE POLICY', 'ALTER POLICY')
    EXECUTE FUNCTION statemachine.guard_ddl();
-- Also under session_replication_role = replica.
ALTER EVENT TRIGGER statemachine_guard_ddl ENABLE ALWAYS;

REVOKE ALL ON FUNCTION statemachine.break_glass(text), statemachine.guard_weaknesses(), statemachine.guard_ddl() FROM PUBLIC;
