//! The DDL guard: the event trigger function behind `statemachine_guard_ddl`
//! (ddl_command_end) and `statemachine_guard_drop` (sql_drop).
//!
//! It decides by the objects a command touched, not by its tag: a command is refused
//! (SM007), for every role and in replica mode alike, when it
//! - alters, replaces or renames an object of the extension (a table, view, function,
//!   type, the schema): `ALTER TABLE` of any kind, `CREATE OR REPLACE FUNCTION`,
//!   `ALTER FUNCTION`, `ALTER … SET SCHEMA`, `ALTER … OWNER TO`;
//! - puts foreign code or structure on a protected table: a rule, trigger, policy or index
//!   on it, a table that inherits from it or is a partition of it;
//! - makes a copy of one of its tables that the guards do not cover: a table named
//!   `<extension table>_<digits>` beside it, which is how Citus names the shards and
//!   placements it creates (`create_reference_table`, `create_distributed_table`, …) and
//!   then moves the rows into, out from under the guards and the write path;
//! - adds objects to the extension or takes them out of it (`ALTER EXTENSION … ADD/DROP`);
//! - drops anything on or in the extension's schema, unless the extension itself is
//!   being dropped.
//!
//! The extension's own scripts (CREATE/ALTER EXTENSION … UPDATE) and the (sub)transaction
//! that called break_glass() are let through.
//!
//! It only reads pg_catalog (writing nothing), and runs as whoever
//! issued the DDL: DDL that touches nothing of the extension costs one catalog query and
//! is never refused, whoever runs it and whatever else is in the schema.

use crate::door;
use crate::fmgr::{Args, SmResult};
use crate::spi::{Spi, Stmt};
use crate::sql_function;
use pgrx::pg_sys;
use statemachine_core::{CaseFacts, Refusal};
use std::ffi::CStr;

const EXTENSION: &str = "pg_statemachine";

/// Objects a finished DDL command touched that belong to the extension or sit on one of
/// its tables (the command tag, the object's type and identity).
static TOUCHED: Stmt = Stmt {
    sql: "WITH members AS ( \
              SELECT d.classid, d.objid FROM pg_catalog.pg_depend d \
                JOIN pg_catalog.pg_extension x ON x.oid OPERATOR(pg_catalog.=) d.refobjid \
               WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass \
                 AND x.extname OPERATOR(pg_catalog.=) 'pg_statemachine' AND d.deptype OPERATOR(pg_catalog.=) 'e'), \
          tables AS (SELECT m.objid AS relid FROM members m \
                      WHERE m.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass) \
          SELECT c.command_tag, c.object_type, COALESCE(c.object_identity, '') \
            FROM pg_catalog.pg_event_trigger_ddl_commands() c \
           WHERE c.command_tag OPERATOR(pg_catalog.<>) ALL (ARRAY['GRANT', 'REVOKE', 'COMMENT', 'SECURITY LABEL']) \
             AND (EXISTS (SELECT 1 FROM members m WHERE m.classid OPERATOR(pg_catalog.=) c.classid \
                                                    AND m.objid OPERATOR(pg_catalog.=) c.objid) \
               OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND ( \
                      EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN tables t ON t.relid OPERATOR(pg_catalog.=) i.indrelid \
                               WHERE i.indexrelid OPERATOR(pg_catalog.=) c.objid) \
                   OR EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h JOIN tables t ON t.relid OPERATOR(pg_catalog.=) h.inhparent \
                               WHERE h.inhrelid OPERATOR(pg_catalog.=) c.objid))) \
               OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS ( \
                      SELECT 1 FROM pg_catalog.pg_class r, tables t JOIN pg_catalog.pg_class m ON m.oid OPERATOR(pg_catalog.=) t.relid \
                       WHERE r.oid OPERATOR(pg_catalog.=) c.objid AND r.relnamespace OPERATOR(pg_catalog.=) m.relnamespace \
                         AND r.relname::pg_catalog.text OPERATOR(pg_catalog.~) ('^' OPERATOR(pg_catalog.||) m.relname::pg_catalog.text OPERATOR(pg_catalog.||) '_[0-9]+$'))) \
               OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND EXISTS ( \
                      SELECT 1 FROM pg_catalog.pg_rewrite r JOIN tables t ON t.relid OPERATOR(pg_catalog.=) r.ev_class \
                       WHERE r.oid OPERATOR(pg_catalog.=) c.objid)) \
               OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass AND EXISTS ( \
                      SELECT 1 FROM pg_catalog.pg_trigger g JOIN tables t ON t.relid OPERATOR(pg_catalog.=) g.tgrelid \
                       WHERE g.oid OPERATOR(pg_catalog.=) c.objid)) \
               OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_policy'::pg_catalog.regclass AND EXISTS ( \
                      SELECT 1 FROM pg_catalog.pg_policy p JOIN tables t ON t.relid OPERATOR(pg_catalog.=) p.polrelid \
                       WHERE p.oid OPERATOR(pg_catalog.=) c.objid))) \
           ORDER BY 3",
    args: &[],
};

/// Objects a DROP removed from the extension's schema or from its tables, unless the
/// extension itself is among the dropped objects. The internal triggers a user's foreign
/// key to an extension table keeps there go with that key and are not counted.
static DROPPED: Stmt = Stmt {
    sql: "SELECT 'DROP', o.object_type, COALESCE(o.object_identity, '') \
            FROM pg_catalog.pg_event_trigger_dropped_objects() o \
           WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() x \
                              WHERE x.object_type OPERATOR(pg_catalog.=) 'extension' \
                                AND x.object_identity OPERATOR(pg_catalog.=) 'pg_statemachine') \
             AND NOT (o.object_type OPERATOR(pg_catalog.=) 'trigger' AND NOT o.original \
                      AND o.object_identity OPERATOR(pg_catalog.~~) '\"RI_ConstraintTrigger%') \
             AND (o.schema_name OPERATOR(pg_catalog.=) 'statemachine' \
               OR (o.object_type OPERATOR(pg_catalog.=) 'schema' AND o.object_identity OPERATOR(pg_catalog.=) 'statemachine') \
               OR o.object_identity OPERATOR(pg_catalog.~~) '% on statemachine.%' \
               OR o.object_identity OPERATOR(pg_catalog.~~) 'for statemachine.%' \
               OR (o.object_type OPERATOR(pg_catalog.=) 'extension' AND o.object_identity OPERATOR(pg_catalog.=) 'pg_statemachine')) \
           ORDER BY 3",
    args: &[],
};

/// Governed tables (those carrying the governed-row trigger; found through pg_catalog
/// alone, which every DDL issuer may read) whose guard the finished command weakened,
/// among the tables and triggers it touched: a governed-row trigger not ENABLE ALWAYS (but
/// not by CREATE TRIGGER: a restore creates it, then sets it ALWAYS in its next command),
/// renamed, or naming columns that are gone; a trigger of the guard's names that runs
/// another function or for other events (CREATE OR REPLACE TRIGGER); a table made a child
/// of a governed table (its rows would show in the parent's).
static GOVERNED_WEAKENED: Stmt = Stmt {
    sql: "WITH cmd AS (SELECT c.classid, c.objid, c.command_tag FROM pg_catalog.pg_event_trigger_ddl_commands() c), \
          guard AS (SELECT p.oid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace \
                     WHERE n.nspname OPERATOR(pg_catalog.=) 'statemachine' AND p.proname OPERATOR(pg_catalog.=) 'guard_governed_row'), \
          touched AS (SELECT t.oid, t.tgrelid, t.tgname, t.tgfoid, t.tgtype, t.tgenabled, t.tgnargs, t.tgargs, cmd.command_tag, \
                             t.tgfoid IN (SELECT oid FROM guard) AS guards, \
                             CASE t.tgname WHEN 'zz_statemachine_governed' THEN 31 WHEN 'zz_statemachine_governed_truncate' THEN 34 \
                                           WHEN 'zz_statemachine_governed_check' THEN 21 END AS expected_type \
                        FROM pg_catalog.pg_trigger t JOIN cmd \
                          ON (cmd.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND cmd.objid OPERATOR(pg_catalog.=) t.tgrelid) \
                          OR (cmd.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass AND cmd.objid OPERATOR(pg_catalog.=) t.oid)) \
          SELECT DISTINCT 'ALTER', 'table', pg_catalog.format('%s (%s)', t.tgrelid::pg_catalog.regclass, w.problem) \
            FROM touched t \
            CROSS JOIN LATERAL (VALUES \
                 (CASE WHEN t.guards AND t.tgenabled OPERATOR(pg_catalog.<>) 'A' AND t.command_tag OPERATOR(pg_catalog.<>) 'CREATE TRIGGER' \
                       THEN pg_catalog.format('trigger %s is not ENABLE ALWAYS', t.tgname) END), \
                 (CASE WHEN t.guards AND t.expected_type IS NULL THEN pg_catalog.format('trigger renamed to %s', t.tgname) END), \
                 (CASE WHEN t.expected_type IS NOT NULL AND (NOT t.guards OR t.tgtype OPERATOR(pg_catalog.<>) t.expected_type) \
                       THEN pg_catalog.format('trigger %s replaced by one of other function or events', t.tgname) END), \
                 (CASE WHEN t.guards AND (t.tgnargs OPERATOR(pg_catalog.<>) 2 OR EXISTS ( \
                           SELECT 1 FROM pg_catalog.generate_series(1, 2) n \
                            WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                                               WHERE a.attrelid OPERATOR(pg_catalog.=) t.tgrelid AND NOT a.attisdropped \
                                                 AND a.attname::pg_catalog.text OPERATOR(pg_catalog.=) \
                                                     pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\\000', n)))) \
                       THEN 'a governed column was renamed or dropped' END)) AS w(problem) \
           WHERE w.problem IS NOT NULL \
          UNION \
          SELECT 'ALTER', 'table', pg_catalog.format('%s (a child of governed table %s)', h.inhrelid::pg_catalog.regclass, h.inhparent::pg_catalog.regclass) \
            FROM cmd JOIN pg_catalog.pg_inherits h ON cmd.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                 AND (h.inhrelid OPERATOR(pg_catalog.=) cmd.objid OR h.inhparent OPERATOR(pg_catalog.=) cmd.objid) \
           WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid OPERATOR(pg_catalog.=) h.inhparent \
                          AND g.tgfoid IN (SELECT oid FROM guard)) \
           ORDER BY 3",
    args: &[],
};
/// The governed-row triggers a DROP removed (a DROP TRIGGER, or of the table itself).
static GOVERNED_DROPPED: Stmt = Stmt {
    sql: "SELECT 'DROP', o.object_type, COALESCE(o.object_identity, '') \
            FROM pg_catalog.pg_event_trigger_dropped_objects() o \
           WHERE o.object_type OPERATOR(pg_catalog.=) 'trigger' \
             AND o.object_identity OPERATOR(pg_catalog.~~) 'zz\\_statemachine\\_governed% on %' \
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() x \
                              WHERE x.object_type OPERATOR(pg_catalog.=) 'extension' \
                                AND x.object_identity OPERATOR(pg_catalog.=) 'pg_statemachine') \
           ORDER BY 3",
    args: &[],
};

/// What the finished statement is, as far as the guard cares.
#[derive(PartialEq, Eq)]
enum Statement {
    /// CREATE EXTENSION or ALTER EXTENSION … UPDATE of this extension.
    Own,
    /// ALTER EXTENSION pg_statemachine ADD/DROP.
    ChangesMembers,
    /// CREATE OR REPLACE TRIGGER of one of a governed table's guard triggers.
    ReplacesGovernedTrigger,
    Other,
}

/// Under break_glass, what a finished command touched of an append-only table (its guard
/// triggers carry the argument 'append-only': break_glass_event): the table itself (ALTER,
/// DISABLE TRIGGER, RENAME …), a trigger or rule on it. The exception repairs cases; it
/// never erases its own record.
static APPEND_ONLY_TOUCHED: Stmt = Stmt {
    sql: "WITH guarded AS (SELECT g.tgrelid AS relid FROM pg_catalog.pg_trigger g \
                            WHERE g.tgname OPERATOR(pg_catalog.~~) 'zz_guard_direct_%' AND g.tgnargs OPERATOR(pg_catalog.>) 0) \
          SELECT c.command_tag, c.object_type, COALESCE(c.object_identity, '') \
            FROM pg_catalog.pg_event_trigger_ddl_commands() c \
           WHERE (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                  AND c.objid IN (SELECT relid FROM guarded)) \
              OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass AND EXISTS ( \
                  SELECT 1 FROM pg_catalog.pg_trigger t JOIN guarded ON guarded.relid OPERATOR(pg_catalog.=) t.tgrelid \
                   WHERE t.oid OPERATOR(pg_catalog.=) c.objid)) \
              OR (c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND EXISTS ( \
                  SELECT 1 FROM pg_catalog.pg_rewrite r JOIN guarded ON guarded.relid OPERATOR(pg_catalog.=) r.ev_class \
                   WHERE r.oid OPERATOR(pg_catalog.=) c.objid)) \
           ORDER BY 3",
    args: &[],
};
static APPEND_ONLY_DROPPED: Stmt = Stmt {
    sql: "SELECT 'DROP', o.object_type, COALESCE(o.object_identity, '') \
            FROM pg_catalog.pg_event_trigger_dropped_objects() o \
           WHERE o.object_identity OPERATOR(pg_catalog.~~) '% on statemachine.break_glass_event' \
              OR o.object_identity OPERATOR(pg_catalog.=) 'statemachine.break_glass_event' \
           ORDER BY 3",
    args: &[],
};

/// The extension's own script is running (CREATE EXTENSION or ALTER EXTENSION … UPDATE).
fn in_own_script() -> bool {
    // SAFETY: reads two backend globals set by extension.c for the duration of a script.
    unsafe { pg_sys::creating_extension && extension_oid() == Some(pg_sys::CurrentExtensionObject) }
}

fn extension_oid() -> Option<pg_sys::Oid> {
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid instead of raising.
    let oid = unsafe { pg_sys::get_extension_oid(c"pg_statemachine".as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// (command tag, "type identity") of each object `stmt` finds.
fn touched_by(stmt: &'static Stmt) -> Vec<(String, String)> {
    // Not read-only: a read-only connection would read the catalog on the snapshot from
    // before the command, missing the objects it just made.
    let spi = Spi::connect();
    let rows = spi.run(stmt, &[], 0);
    (0..rows.count).filter_map(|i| Some((rows.text(i, 1)?, format!("{} {}", rows.text(i, 2)?, rows.text(i, 3)?)))).collect()
}

fn refuse(command: &str, touched: Vec<String>) -> statemachine_core::Report {
    let refusal = Refusal::GuardedDdl { command: command.into(), objects: touched };
    refusal.report(&CaseFacts::default())
}

fn guard_ddl(a: &Args) -> SmResult<pg_sys::Datum> {
    let fcinfo = a.fcinfo();
    // SAFETY: fcinfo is the call's own; its context is checked to be EventTriggerData
    // before it is read as one; the parse tree is a Node the event trigger manager keeps
    // valid for the call, read as a statement type only after its tag says it is one.
    let (event, statement) = unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_EventTriggerData {
            return Err(Refusal::NotATrigger.report(&CaseFacts::default()));
        }
        let data = ctx as *mut pg_sys::EventTriggerData;
        let event = CStr::from_ptr((*data).event).to_string_lossy().into_owned();
        let tree = (*data).parsetree;
        let ours = |name: *mut std::ffi::c_char| !name.is_null() && CStr::from_ptr(name).to_bytes() == EXTENSION.as_bytes();
        let statement = if tree.is_null() {
            Statement::Other
        } else {
            match (*tree).type_ {
                pg_sys::NodeTag::T_AlterExtensionContentsStmt if ours((*(tree as *mut pg_sys::AlterExtensionContentsStmt)).extname) => {
                    Statement::ChangesMembers
                }
                // The extension's own CREATE and UPDATE: the commands its script ran are
                // reported once more at the end of the statement, when the script is done.
                pg_sys::NodeTag::T_CreateExtensionStmt if ours((*(tree as *mut pg_sys::CreateExtensionStmt)).extname) => Statement::Own,
                pg_sys::NodeTag::T_AlterExtensionStmt if ours((*(tree as *mut pg_sys::AlterExtensionStmt)).extname) => Statement::Own,
                pg_sys::NodeTag::T_CreateTrigStmt => {
                    let t = tree as *mut pg_sys::CreateTrigStmt;
                    let name = (*t).trigname;
                    if (*t).replace && !name.is_null() && CStr::from_ptr(name).to_bytes().starts_with(b"zz_statemachine_governed") {
                        Statement::ReplacesGovernedTrigger
                    } else {
                        Statement::Other
                    }
                }
                _ => Statement::Other,
            }
        };
        (event, statement)
    };
    if statement == Statement::Own {
        return Ok(pg_sys::Datum::from(0usize));
    }
    let alters_extension_contents = statement == Statement::ChangesMembers;
    if in_own_script() {
        return Ok(pg_sys::Datum::from(0usize));
    }
    // statemachine.distribute() rewriting keys and Citus making shards and placements of
    // the extension's tables for it, on this node or (by the remote door) on a worker.
    if door::is_distributing() || crate::remote_door::admits_ddl() {
        return Ok(pg_sys::Datum::from(0usize));
    }
    if door::glass_broken() || crate::remote_door::glass() {
        let touched = touched_by(if event == "sql_drop" { &APPEND_ONLY_DROPPED } else { &APPEND_ONLY_TOUCHED });
        return match touched.first() {
            None => Ok(pg_sys::Datum::from(0usize)),
            Some((command, _)) => {
                let command = command.clone();
                Err(refuse(&command, touched.into_iter().map(|(_, object)| object).collect()))
            }
        };
    }
    if statement == Statement::ReplacesGovernedTrigger && !door::is_governing() {
        return Err(refuse("CREATE OR REPLACE TRIGGER", vec!["a governed table's guard trigger".into()]));
    }
    if alters_extension_contents {
        return Err(refuse("ALTER EXTENSION pg_statemachine ADD/DROP", vec!["extension pg_statemachine".into()]));
    }
    let mut touched = touched_by(if event == "sql_drop" { &DROPPED } else { &TOUCHED });
    if touched.is_empty() && !door::is_governing() {
        touched = touched_by(if event == "sql_drop" { &GOVERNED_DROPPED } else { &GOVERNED_WEAKENED });
    }
    match touched.first() {
        None => Ok(pg_sys::Datum::from(0usize)),
        Some((command, _)) => {
            let command = command.clone();
            Err(refuse(&command, touched.into_iter().map(|(_, object)| object).collect()))
        }
    }
}

sql_function!(sm_guard_ddl, pg_finfo_sm_guard_ddl, guard_ddl);
