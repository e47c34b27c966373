//! statemachine.distribute(): turns an installation on a Citus coordinator into a
//! distributed one (docs/scaling.md).
//!
//! - Definitions (machines, versions, states, rules, roles, reasons, guards, invariants,
//!   governed tables, the break-glass record) become reference tables: a copy on every node.
//! - Every case-keyed table is distributed by its case (`case_file.id`, `case_id`,
//!   `outbox_event.aggregate_id`) and co-located with case_file, so all rows of one case
//!   live on one node. Keys are rewritten to contain the case, as Citus requires of a
//!   distributed table's unique keys and of foreign keys between distributed tables.
//! - The installation secret stays a table of each node, set on every worker to the
//!   coordinator's (the remote door's tokens are signed with it).
//!
//! Citus copies existing rows into the shards and placements it creates; the guards let
//! that through only for this call: locally by this backend's memory (door::distributing),
//! on the workers by a remote-door token granting everything for this transaction, cleared
//! before the call returns.

use crate::door;
use crate::fmgr::{Args, SmResult};
use crate::remote_door;
use crate::spi::Spi;
use crate::sql_function;
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};

/// Definitions: reference tables.
const REFERENCE_TABLES: &[&str] = &[
    "machine",
    "machine_version",
    "state",
    "transition_rule",
    "transition_rule_role",
    "state_invariant",
    "transition_reason",
    "guard_function",
    "transition_guard",
    "governed_table",
    "break_glass_event",
    "installation_setting",
];

/// Case-keyed tables and the column holding their case (case_file first: the others are
/// co-located with it).
const DISTRIBUTED_TABLES: &[(&str, &str)] = &[
    ("case_file", "id"),
    ("case_state_transition", "case_id"),
    ("case_evidence", "case_id"),
    ("case_evidence_deactivation", "case_id"),
    ("case_transition_evidence", "case_id"),
    ("case_transition_guard_result", "case_id"),
    ("case_state_correction", "case_id"),
    ("outbox_event", "aggregate_id"),
    ("case_assignment", "case_id"),
    ("case_assignment_release", "case_id"),
    ("timer_backoff", "case_id"),
];

/// Keys rewritten to contain the case. The keys that cannot (a case number unique per
/// machine, one dimension per machine and root, a command id unique across all cases)
/// are dropped: docs/scaling.md says what holds instead.
const KEYS: &[&str] = &[
    "ALTER TABLE statemachine.case_file DROP CONSTRAINT case_file_case_number_uk, DROP CONSTRAINT case_file_dimension_uk",
    "ALTER TABLE statemachine.case_state_transition DROP CONSTRAINT case_state_transition_pkey, \
        ADD CONSTRAINT case_state_transition_pkey PRIMARY KEY (case_id, id), \
        DROP CONSTRAINT case_transition_command_uk, ADD CONSTRAINT case_transition_command_uk UNIQUE (case_id, command_id)",
    "ALTER TABLE statemachine.case_evidence DROP CONSTRAINT case_evidence_pkey, ADD CONSTRAINT case_evidence_pkey PRIMARY KEY (case_id, id)",
    "ALTER TABLE statemachine.case_evidence_deactivation DROP CONSTRAINT case_evidence_deactivation_pkey, \
        ADD CONSTRAINT case_evidence_deactivation_pkey PRIMARY KEY (case_id, evidence_id)",
    "ALTER TABLE statemachine.case_transition_evidence DROP CONSTRAINT case_transition_evidence_pkey, \
        ADD CONSTRAINT case_transition_evidence_pkey PRIMARY KEY (case_id, transition_id, evidence_id)",
    "ALTER TABLE statemachine.case_transition_guard_result DROP CONSTRAINT case_transition_guard_result_pkey, \
        ADD CONSTRAINT case_transition_guard_result_pkey PRIMARY KEY (case_id, id), \
        DROP CONSTRAINT case_guard_result_uk, ADD CONSTRAINT case_guard_result_uk UNIQUE (case_id, transition_id, guard_code)",
    "ALTER TABLE statemachine.case_state_correction DROP CONSTRAINT case_state_correction_pkey, \
        ADD CONSTRAINT case_state_correction_pkey PRIMARY KEY (case_id, id), \
        DROP CONSTRAINT case_state_correction_wrong_uk, ADD CONSTRAINT case_state_correction_wrong_uk UNIQUE (case_id, wrong_transition_id), \
        DROP CONSTRAINT case_state_correction_correcting_uk, \
        ADD CONSTRAINT case_state_correction_correcting_uk UNIQUE (case_id, correcting_transition_id)",
    "ALTER TABLE statemachine.outbox_event DROP CONSTRAINT outbox_event_pkey, ADD CONSTRAINT outbox_event_pkey PRIMARY KEY (aggregate_id, id), \
        DROP CONSTRAINT outbox_event_transition_uk, ADD CONSTRAINT outbox_event_transition_uk UNIQUE (aggregate_id, transition_id)",
    "ALTER TABLE statemachine.case_assignment DROP CONSTRAINT case_assignment_pkey, ADD CONSTRAINT case_assignment_pkey PRIMARY KEY (case_id, id), \
        DROP CONSTRAINT case_assignment_command_uk, ADD CONSTRAINT case_assignment_command_uk UNIQUE (case_id, command_id)",
    "ALTER TABLE statemachine.case_assignment_release DROP CONSTRAINT case_assignment_release_pkey, \
        ADD CONSTRAINT case_assignment_release_pkey PRIMARY KEY (case_id, assignment_id), \
        DROP CONSTRAINT case_assignment_release_command_uk, ADD CONSTRAINT case_assignment_release_command_uk UNIQUE (case_id, command_id)",
];

/// Foreign keys between case tables, rewritten to go through the case (by constraint
/// name; None: dropped). The others are put back as they were.
const FOREIGN_KEYS: &[(&str, Option<&str>)] = &[
    ("case_file_root_case_id_fkey", None),
    ("outbox_event_transition_id_fkey", Some("FOREIGN KEY (aggregate_id, transition_id) REFERENCES statemachine.case_state_transition (case_id, id) DEFERRABLE")),
    ("case_transition_evidence_transition_id_fkey", Some("FOREIGN KEY (case_id, transition_id) REFERENCES statemachine.case_state_transition (case_id, id) DEFERRABLE")),
    ("case_transition_evidence_evidence_id_fkey", Some("FOREIGN KEY (case_id, evidence_id) REFERENCES statemachine.case_evidence (case_id, id) DEFERRABLE")),
    ("case_transition_guard_result_transition_id_fkey", Some("FOREIGN KEY (case_id, transition_id) REFERENCES statemachine.case_state_transition (case_id, id) DEFERRABLE")),
    ("case_state_correction_wrong_transition_id_fkey", Some("FOREIGN KEY (case_id, wrong_transition_id) REFERENCES statemachine.case_state_transition (case_id, id) DEFERRABLE")),
    ("case_state_correction_correcting_transition_id_fkey", Some("FOREIGN KEY (case_id, correcting_transition_id) REFERENCES statemachine.case_state_transition (case_id, id) DEFERRABLE")),
    ("case_evidence_deactivation_evidence_id_fkey", Some("FOREIGN KEY (case_id, evidence_id) REFERENCES statemachine.case_evidence (case_id, id) DEFERRABLE")),
    ("case_assignment_release_assignment_id_fkey", Some("FOREIGN KEY (case_id, assignment_id) REFERENCES statemachine.case_assignment (case_id, id) DEFERRABLE")),
];

fn not_distributable(problem: impl Into<String>, hint: impl Into<String>) -> statemachine_core::Report {
    Refusal::NotDistributable { problem: problem.into(), hint: hint.into() }.report(&CaseFacts::default())
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn distribute(a: &Args) -> SmResult<pg_sys::Datum> {
    door::refuse_inside_guard("distribute")?;
    let shard_count = a.opt_i32(0);
    let command_scope = a.opt_text(1).unwrap_or_else(|| "installation".into());
    if command_scope != "installation" && command_scope != "case" {
        return Err(Refusal::InvalidArgument {
            name: "command_scope".into(),
            problem: format!("{command_scope:?} is neither installation nor case"),
        }
        .report(&CaseFacts::default()));
    }
    if let Some(n) = shard_count.filter(|n| !(1..=64000).contains(n)) {
        return Err(Refusal::InvalidArgument { name: "shard_count".into(), problem: format!("{n} is not between 1 and 64000") }
            .report(&CaseFacts::default()));
    }
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid.
    if unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) } == pg_sys::InvalidOid {
        return Err(not_distributable(
            "Citus is not installed in this database.",
            "CREATE EXTENSION citus on the coordinator and every worker, add the workers with citus_add_node(), then call statemachine.distribute() on the coordinator.",
        ));
    }
    let spi = Spi::connect();
    if !spi.run_once("SELECT pg_catalog.citus_is_coordinator()").bool(0, 1).unwrap_or(false) {
        return Err(not_distributable(
            "This node is not the coordinator of a Citus cluster.",
            "Call statemachine.distribute() on the coordinator (citus_set_coordinator_host() makes this node one).",
        ));
    }
    if remote_door::distributed() {
        return Err(not_distributable("The installation is distributed already.", "Nothing to do."));
    }
    let workers = spi.run_once("SELECT pg_catalog.count(*) FROM pg_catalog.citus_get_active_worker_nodes()").i64(0, 1).unwrap_or(0);
    if workers == 0 {
        return Err(not_distributable("The cluster has no active worker.", "Add the workers with citus_add_node() first."));
    }
    // Every worker runs this version of the extension (CREATE EXTENSION on the
    // coordinator propagates it; ALTER EXTENSION ... UPDATE too).
    let mismatched = spi
        .run_once(
            "SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s (%s)', w.nodename, w.nodeport, COALESCE(w.result, 'no result')), ', ') \
               FROM pg_catalog.run_command_on_workers($$SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_statemachine'$$) w \
              WHERE NOT w.success OR w.result IS DISTINCT FROM (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_statemachine')",
        )
        .text(0, 1);
    if let Some(nodes) = mismatched {
        return Err(not_distributable(
            format!("These workers do not run this version of pg_statemachine: {nodes}."),
            "Install the same version of pg_statemachine on every worker (CREATE or ALTER EXTENSION on the coordinator propagates), then call statemachine.distribute() again.",
        ));
    }
    // Every node signs and checks remote-door tokens with the coordinator's secret. Each
    // worker records the change in its break_glass_event (in a transaction of its own,
    // like everything run_command_on_workers runs).
    let secret: String = crate::bulk::installation_secret(&spi).iter().map(|b| format!("{b:02x}")).collect();
    let command = format!(
        "SELECT statemachine.break_glass('statemachine.distribute(): the coordinator''s installation secret'); \
         UPDATE statemachine.installation_secret SET secret = pg_catalog.decode({}, 'hex')",
        quote_literal(&secret)
    );
    let failed = spi
        .run_once(&format!(
            "SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s: %s', w.nodename, w.nodeport, w.result), ', ') \
               FROM pg_catalog.run_command_on_workers({}) w WHERE NOT w.success",
            quote_literal(&command)
        ))
        .text(0, 1);
    if let Some(errors) = failed {
        return Err(not_distributable(
            format!("Could not give the workers the installation secret: {errors}."),
            "Call statemachine.distribute() as a superuser; every worker must accept connections from the coordinator.",
        ));
    }

    // Foreign keys come off first (Citus would otherwise convert the whole graph at the
    // first reference table), and go back on once every table is Citus's.
    let fks = spi.run_once(
        "SELECT c.conrelid::pg_catalog.regclass::pg_catalog.text, c.conname::pg_catalog.text, pg_catalog.pg_get_constraintdef(c.oid) \
           FROM pg_catalog.pg_constraint c \
          WHERE c.contype OPERATOR(pg_catalog.=) 'f' AND c.connamespace OPERATOR(pg_catalog.=) 'statemachine'::pg_catalog.regnamespace \
          ORDER BY 1, 2",
    );
    let fks: Vec<(String, String, String)> =
        (0..fks.count).filter_map(|i| Some((fks.text(i, 1)?, fks.text(i, 2)?, fks.text(i, 3)?))).collect();
    let drops: Vec<String> =
        fks.iter().map(|(table, name, _)| format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}", crate::governance::quote_ident(name))).collect();
    // Each worker's own tables of the extension are the shells Citus plans with there, and
    // receive the constraints added once the tables are distributed: they get the same
    // keys first (empty tables; in a transaction of each worker's own, repeatable).
    let mut command = vec!["SELECT statemachine.break_glass('statemachine.distribute(): the keys of this node''s tables')".to_string()];
    command.extend(drops.iter().cloned());
    command.extend(KEYS.iter().map(|k| k.to_string()));
    let failed = spi
        .run_once(&format!(
            "SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s: %s', w.nodename, w.nodeport, w.result), ', ') \
               FROM pg_catalog.run_command_on_workers({}) w WHERE NOT w.success",
            quote_literal(&command.join("; "))
        ))
        .text(0, 1);
    if let Some(errors) = failed {
        return Err(not_distributable(format!("Could not rewrite the keys on the workers: {errors}."), "Call statemachine.distribute() as a superuser."));
    }

    let _distributing = door::distributing();
    remote_door::publish(None);
    // Citus reports every table it copies and truncates: the caller's messages level is
    // restored at the end.
    let messages = spi.run_once("SELECT pg_catalog.current_setting('client_min_messages')").text(0, 1).unwrap_or_else(|| "notice".into());
    spi.run_once(
        "SELECT pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true), \
                pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true), \
                pg_catalog.set_config('client_min_messages', 'warning', true)",
    );
    for drop in &drops {
        spi.run_once(drop);
    }
    for key in KEYS {
        spi.run_once(key);
    }
    for table in REFERENCE_TABLES {
        spi.run_once(&format!("SELECT pg_catalog.create_reference_table('statemachine.{table}')"));
    }
    let shards = shard_count.map(|n| format!(", shard_count => {n}")).unwrap_or_default();
    for (i, (table, column)) in DISTRIBUTED_TABLES.iter().enumerate() {
        let placement = if i == 0 { shards.clone() } else { ", colocate_with => 'statemachine.case_file'".into() };
        spi.run_once(&format!("SELECT pg_catalog.create_distributed_table('statemachine.{table}', '{column}'{placement})"));
    }
    for (table, name, definition) in &fks {
        let definition = match FOREIGN_KEYS.iter().find(|(n, _)| n == name) {
            Some((_, None)) => continue,
            Some((_, Some(rewritten))) => rewritten.to_string(),
            None => definition.clone(),
        };
        spi.run_once(&format!("ALTER TABLE {table} ADD CONSTRAINT {} {definition}", crate::governance::quote_ident(name)));
    }
    spi.run_once(&format!(
        "INSERT INTO statemachine.installation_setting (name, value) VALUES ('command_scope', {}) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        quote_literal(&command_scope)
    ));
    // The rows now live in the shards and placements; the local copies Citus leaves
    // behind are emptied.
    for table in REFERENCE_TABLES.iter().chain(DISTRIBUTED_TABLES.iter().map(|(t, _)| t)) {
        spi.run_once(&format!("SELECT pg_catalog.truncate_local_data_after_distributing_table('statemachine.{table}')"));
    }
    // The change is recorded where every node sees it, like an exception: the workers'
    // own break-glass records of the two steps above stay in their local tables, which
    // the reference table now stands in front of.
    let now = crate::history::now();
    let reason = format!(
        "statemachine.distribute(): {} reference tables, {} tables distributed by case{} on {workers} workers, command ids unique per {command_scope}; the workers' installation secret and keys set by break_glass on each",
        REFERENCE_TABLES.len(),
        DISTRIBUTED_TABLES.len(),
        shard_count.map(|n| format!(" in {n} shards")).unwrap_or_default()
    );
    spi.run(
        &crate::guard::INSERT_BREAK_GLASS,
        &[
            Some(crate::fmgr::uuid_datum(&crate::history::row_id(now))),
            Some(crate::fmgr::text_datum(&reason)),
            Some(pg_sys::Datum::from(now)),
        ],
        1,
    );
    spi.run_once(&format!("SELECT pg_catalog.set_config('client_min_messages', {}, true)", quote_literal(&messages)));
    remote_door::close();
    remote_door::forget_distributed();
    Ok(pg_sys::Datum::from(0usize))
}

sql_function!(sm_distribute, pg_finfo_sm_distribute, distribute);
