//! The one history writer. Every row of `case_state_transition` — a transition, a
//! case's CREATE row, a correction, a migration step — is appended by [`append`],
//! through one prepared statement; rows written many at a time (import_cases, bulks,
//! timers) by [`Batch`], through one more. So a column added to history is added here.
//!
//! Each row is sealed as it is appended: its `row_hash` chains it to the case's previous
//! row and covers every column and what is recorded with it (core's `seal`; verified by
//! verify_history).
//!
//! The same statement moves the case row when asked ([`CaseMove::To`]), and only if the
//! history row was appended: `ON CONFLICT DO NOTHING` (the command id is the key that can
//! collide) makes a concurrent replay wait for the first command and then append (and
//! move) nothing, so the caller can answer with the first command's row or SM008.

use crate::door::{Grant, Op};
use crate::fmgr::{jsonb_out, text_datum, text_from_datum, uuid_datum, uuid_from_datum, uuid_string, SmResult};
use crate::spi::{
    Spi, Stmt, BOOL, BYTEA, BYTEA_ARRAY, INT4, INT4_ARRAY, INT8, INT8_ARRAY, JSONB, TEXT, TEXT_ARRAY, TIMESTAMPTZ, TIMESTAMPTZ_ARRAY, UUID,
    UUID_ARRAY,
};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::seal::{row_hash, SealedRow};
use statemachine_core::{CaseFacts, Refusal};

/// The history row ($1-$18 and $22-$23: its columns; recorded_by is written by the write
/// path so that the seal covers the value stored); nothing when its command id is taken.
macro_rules! insert_history_row {
    () => {
        "INSERT INTO statemachine.case_state_transition AS t (id, case_id, machine, from_state, to_state, \
             transition_code, transition_kind, state_version, actor_id, actor_role, reason_code, reason_text, \
             policy_version, occurred_at, command_id, correlation_id, causation_id, metadata, recorded_by, row_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             COALESCE($18, '{}'::pg_catalog.jsonb), $22, $23) \
         ON CONFLICT DO NOTHING RETURNING ROW(t.*)::statemachine.case_state_transition"
    };
}
/// The case row moved to the history row's state ($19: entered at, $20: a new version id).
macro_rules! move_case_row {
    () => {
        "UPDATE ONLY statemachine.case_file c SET current_state = $5, state_version = $8, state_entered_at = $19, \
             updated_at = $14, machine_version = $13, machine_version_id = COALESCE($20, c.machine_version_id), \
             history_head = $23 \
         WHERE c.id OPERATOR(pg_catalog.=) $2"
    };
}
/// Both in one statement; the case moves only when asked ($21) and the row was appended.
static APPEND: Stmt = Stmt {
    sql: concat!(
        "WITH t AS (", insert_history_row!(), " AS t), \
          u AS (", move_case_row!(), " AND $21 AND EXISTS (SELECT 1 FROM t) RETURNING 1) \
          SELECT t.t FROM t"
    ),
    args: &[
        UUID, UUID, TEXT, TEXT, TEXT, TEXT, TEXT, INT8, UUID, TEXT, TEXT, TEXT, INT4, TIMESTAMPTZ, UUID, UUID, UUID, JSONB,
        TIMESTAMPTZ, UUID, BOOL, TEXT, BYTEA,
    ],
};
/// On a distributed installation the same two writes as two statements: Citus runs the
/// CTE above as the INSERT, a copy of its result back to the coordinator and the UPDATE
/// (three round trips to the worker); these are two. Same parameters as [`APPEND`].
static APPEND_ROW: Stmt = Stmt { sql: insert_history_row!(), args: APPEND.args };
static MOVE_CASE: Stmt = Stmt { sql: move_case_row!(), args: APPEND.args };

/// What [`append`] writes: the door its caller opens must admit these.
pub const APPEND_WRITES: [Grant; 2] = [("case_state_transition", Op::Insert), ("case_file", Op::Update)];

/// One history row. Datum fields are the caller's own argument datums where it has them
/// (no copies on the hot path); `None` is SQL NULL.
pub struct Entry<'a> {
    pub id: [u8; 16],
    pub case: pg_sys::Datum,
    pub machine: &'a str,
    /// NULL only for a case's first row (state_version 0).
    pub from_state: Option<pg_sys::Datum>,
    pub to_state: pg_sys::Datum,
    pub code: pg_sys::Datum,
    pub kind: &'a str,
    pub state_version: i64,
    pub actor: pg_sys::Datum,
    pub role: pg_sys::Datum,
    pub reason_code: Option<pg_sys::Datum>,
    pub reason_text: Option<pg_sys::Datum>,
    /// The machine version the row was decided under; a moved case is pinned to it.
    pub policy_version: i32,
    pub occurred_at: pg_sys::TimestampTz,
    pub command: pg_sys::Datum,
    pub correlation: Option<pg_sys::Datum>,
    pub causation: Option<pg_sys::Datum>,
    pub metadata: Option<pg_sys::Datum>,
    /// The case's previous row's hash (GENESIS for the first).
    pub prev_hash: [u8; 32],
    /// What is recorded with the row, for its seal: evidence links (id, purpose), guard
    /// results (code, passed, jsonb text of the evidence; evaluated at occurred_at), and
    /// the correction it makes (wrong transition, corrected by, reason).
    pub links: Vec<([u8; 16], String)>,
    pub guards: Vec<(String, bool, String)>,
    pub correction: Option<([u8; 16], [u8; 16], String)>,
}

impl Entry<'_> {
    /// The row as the seal sees it (what verify_history will read back).
    fn sealed(&self, recorded_by: String) -> SealedRow {
        // SAFETY: every datum of an Entry is of its column's type (uuid or text; metadata
        // jsonb), as the statement declares them.
        let text = |d: pg_sys::Datum| unsafe { text_from_datum(d) };
        // SAFETY: as above, for uuid datums.
        let uuid = |d: pg_sys::Datum| unsafe { uuid_from_datum(d) };
        SealedRow {
            id: self.id,
            case_id: uuid(self.case),
            machine: self.machine.to_owned(),
            from_state: self.from_state.map(text),
            to_state: text(self.to_state),
            transition_code: text(self.code),
            transition_kind: self.kind.to_owned(),
            state_version: self.state_version,
            actor_id: uuid(self.actor),
            actor_role: text(self.role),
            reason_code: self.reason_code.map(text),
            reason_text: self.reason_text.map(text),
            policy_version: self.policy_version,
            occurred_at: self.occurred_at,
            command_id: uuid(self.command),
            correlation_id: self.correlation.map(uuid),
            causation_id: self.causation.map(uuid),
            // SAFETY: metadata is a jsonb datum.
            metadata: self.metadata.map_or_else(|| "{}".to_owned(), |d| unsafe { jsonb_out(d) }),
            recorded_by,
            evidence: self.links.clone(),
            guards: self.guards.iter().map(|(code, passed, ev)| (code.clone(), *passed, self.occurred_at, ev.clone())).collect(),
            correction: self.correction.as_ref().map(|(wrong, by, reason)| (*wrong, *by, self.occurred_at, reason.clone())),
        }
    }
}

/// What happens to the case row with the history row.
pub enum CaseMove {
    /// Nothing (the case row was just inserted with the same facts).
    Stay,
    /// current_state, state_version, updated_at follow the row; state_entered_at is
    /// `entered_at`; with `version_id`, the case is re-pinned to that machine version.
    To { entered_at: pg_sys::TimestampTz, version_id: Option<[u8; 16]> },
}

/// A row's seal: its hash and the database user it is recorded by.
pub struct Seal {
    pub hash: [u8; 32],
    recorded_by: String,
}

/// Seals `entry` (the hash its row will carry; the case's history_head after it).
pub fn seal(entry: &Entry<'_>) -> Seal {
    let recorded_by = crate::facts::session_user();
    Seal { hash: row_hash(&entry.prev_hash, &entry.sealed(recorded_by.clone())), recorded_by }
}

/// Appends `entry` (and moves the case as told). `None`: the command id is already
/// taken, by a committed command this one waited for — nothing was written.
pub fn append(spi: &Spi, entry: &Entry<'_>, case_move: CaseMove) -> Option<pg_sys::Datum> {
    append_sealed(spi, entry, &seal(entry), case_move)
}

/// [`append`] with the seal already computed (creation needs it before the case row).
pub fn append_sealed(spi: &Spi, entry: &Entry<'_>, seal: &Seal, case_move: CaseMove) -> Option<pg_sys::Datum> {
    let (moves, entered_at, version_id) = match case_move {
        CaseMove::Stay => (false, None, None),
        CaseMove::To { entered_at, version_id } => (true, Some(pg_sys::Datum::from(entered_at)), version_id.map(|v| uuid_datum(&v))),
    };
    let args = [
            Some(uuid_datum(&entry.id)),
            Some(entry.case),
            Some(text_datum(entry.machine)),
            entry.from_state,
            Some(entry.to_state),
            Some(entry.code),
            Some(text_datum(entry.kind)),
            Some(pg_sys::Datum::from(entry.state_version)),
            Some(entry.actor),
            Some(entry.role),
            entry.reason_code,
            entry.reason_text,
            Some(pg_sys::Datum::from(entry.policy_version)),
            Some(pg_sys::Datum::from(entry.occurred_at)),
            Some(entry.command),
            entry.correlation,
            entry.causation,
            entry.metadata,
            entered_at,
            version_id,
            Some(pg_sys::Datum::from(moves)),
            Some(text_datum(&seal.recorded_by)),
            seal.hash.to_vec().into_datum(),
        ];
    let row = if crate::remote_door::distributed() {
        let row = spi.run(&APPEND_ROW, &args, 1).get(0, 1).map(|row| spi.keep(row));
        if moves && row.is_some() {
            spi.run(&MOVE_CASE, &args, 0);
        }
        row
    } else {
        spi.run(&APPEND, &args, 1).get(0, 1).map(|row| spi.keep(row))
    };
    if moves && row.is_some() {
        crate::governance::mirror(spi, entry.machine, entry.case, entry.to_state);
    }
    row
}

/// Many history rows at once, column by column: the sealed rows a [`Batch`] collected.
static APPEND_MANY: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_state_transition (id, case_id, machine, from_state, to_state, transition_code, \
              transition_kind, state_version, actor_id, actor_role, reason_code, reason_text, policy_version, occurred_at, \
              command_id, correlation_id, causation_id, metadata, recorded_by, row_hash) \
          SELECT u.id, u.case_id, u.machine, u.from_state, u.to_state, u.code, u.kind, u.version, u.actor, u.role, \
                 u.reason_code, u.reason_text, u.policy, u.at, u.command, u.correlation, u.causation, \
                 u.metadata::pg_catalog.jsonb, u.recorded_by, u.hash \
          FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.uuid[]), \
                          pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                          pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[]), \
                          pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.int8[]), \
                          pg_catalog.unnest($9::pg_catalog.uuid[]), pg_catalog.unnest($10::pg_catalog.text[]), \
                          pg_catalog.unnest($11::pg_catalog.text[]), pg_catalog.unnest($12::pg_catalog.text[]), \
                          pg_catalog.unnest($13::pg_catalog.int4[]), pg_catalog.unnest($14::pg_catalog.timestamptz[]), \
                          pg_catalog.unnest($15::pg_catalog.uuid[]), pg_catalog.unnest($16::pg_catalog.uuid[]), \
                          pg_catalog.unnest($17::pg_catalog.uuid[]), pg_catalog.unnest($18::pg_catalog.text[]), \
                          pg_catalog.unnest($19::pg_catalog.text[]), pg_catalog.unnest($20::pg_catalog.bytea[])) \
               AS u(id, case_id, machine, from_state, to_state, code, kind, version, actor, role, reason_code, reason_text, \
                    policy, at, command, correlation, causation, metadata, recorded_by, hash)",
    args: &[
        UUID_ARRAY, UUID_ARRAY, TEXT_ARRAY, TEXT_ARRAY, TEXT_ARRAY, TEXT_ARRAY, TEXT_ARRAY, INT8_ARRAY, UUID_ARRAY, TEXT_ARRAY,
        TEXT_ARRAY, TEXT_ARRAY, INT4_ARRAY, TIMESTAMPTZ_ARRAY, UUID_ARRAY, UUID_ARRAY, UUID_ARRAY, TEXT_ARRAY, TEXT_ARRAY,
        BYTEA_ARRAY,
    ],
};

/// History rows to append together, column by column: sealed rows (their hash computed
/// by the caller, which chains them), written by one statement. The door its caller
/// opens must admit `APPEND_WRITES[0]`. Rows written together carry what they record
/// with them in their own statements (evidence links none, guard results by the caller).
#[derive(Default)]
pub struct Batch {
    ids: Vec<pgrx::Uuid>,
    cases: Vec<pgrx::Uuid>,
    machines: Vec<String>,
    from: Vec<Option<String>>,
    to: Vec<String>,
    codes: Vec<String>,
    kinds: Vec<String>,
    versions: Vec<i64>,
    actors: Vec<pgrx::Uuid>,
    roles: Vec<String>,
    reason_codes: Vec<Option<String>>,
    reason_texts: Vec<Option<String>>,
    policies: Vec<i32>,
    at: Vec<TimestampWithTimeZone>,
    commands: Vec<pgrx::Uuid>,
    correlations: Vec<Option<pgrx::Uuid>>,
    causations: Vec<Option<pgrx::Uuid>>,
    metadata: Vec<String>,
    recorded_by: Vec<String>,
    hashes: Vec<Vec<u8>>,
}

/// A row's time as a datum value (history times are finite: read from the clock or
/// parsed and checked finite).
pub fn tstz(t: pg_sys::TimestampTz) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(t).unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity())
}

impl Batch {
    pub fn push(&mut self, row: SealedRow, hash: &[u8; 32]) {
        let uuid = pgrx::Uuid::from_bytes;
        self.ids.push(uuid(row.id));
        self.cases.push(uuid(row.case_id));
        self.machines.push(row.machine);
        self.from.push(row.from_state);
        self.to.push(row.to_state);
        self.codes.push(row.transition_code);
        self.kinds.push(row.transition_kind);
        self.versions.push(row.state_version);
        self.actors.push(uuid(row.actor_id));
        self.roles.push(row.actor_role);
        self.reason_codes.push(row.reason_code);
        self.reason_texts.push(row.reason_text);
        self.policies.push(row.policy_version);
        self.at.push(tstz(row.occurred_at));
        self.commands.push(uuid(row.command_id));
        self.correlations.push(row.correlation_id.map(uuid));
        self.causations.push(row.causation_id.map(uuid));
        self.metadata.push(row.metadata);
        self.recorded_by.push(row.recorded_by);
        self.hashes.push(hash.to_vec());
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends the rows; the door must be open.
    pub fn write(self, spi: &Spi) {
        if self.is_empty() {
            return;
        }
        spi.run(
            &APPEND_MANY,
            &[
                self.ids.into_datum(),
                self.cases.into_datum(),
                self.machines.into_datum(),
                self.from.into_datum(),
                self.to.into_datum(),
                self.codes.into_datum(),
                self.kinds.into_datum(),
                self.versions.into_datum(),
                self.actors.into_datum(),
                self.roles.into_datum(),
                self.reason_codes.into_datum(),
                self.reason_texts.into_datum(),
                self.policies.into_datum(),
                self.at.into_datum(),
                self.commands.into_datum(),
                self.correlations.into_datum(),
                self.causations.into_datum(),
                self.metadata.into_datum(),
                self.recorded_by.into_datum(),
                self.hashes.into_datum(),
            ],
            0,
        );
    }
}

/// How far behind the case's last change the clock may be and still be waited for.
const CLOCK_WAIT_MICROS: i64 = 1_000_000;

/// The time a case's next history row is written at: now — never before `floor` (the
/// case's last change, `case_file.updated_at`, which only the write path writes) and
/// never in the future. A clock a moment behind (a step back of NTP) is waited for; one
/// further behind refuses (55000) rather than date history wrongly. Callers hold the
/// case's row lock, which serializes its writers.
pub fn case_clock(floor: pg_sys::TimestampTz, case_id: &[u8; 16]) -> SmResult<pg_sys::TimestampTz> {
    let mut clock = now();
    if floor > clock && floor - clock <= CLOCK_WAIT_MICROS {
        // SAFETY: sleeps this backend (interruptibly: pg_usleep returns on a signal).
        unsafe { pg_sys::pg_usleep(floor - clock + 1) };
        clock = now();
    }
    if floor > clock {
        let text = |t: pg_sys::TimestampTz| {
            // SAFETY: a timestamptz value as its own type's datum.
            unsafe { crate::fmgr::datum_text(pg_sys::Datum::from(t), pg_sys::TIMESTAMPTZOID) }
        };
        let refusal = Refusal::ClockBehind { last_change: text(floor), now: text(clock) };
        return Err(refusal.report(&CaseFacts { case_id: uuid_string(case_id), current_state: String::new() }));
    }
    Ok(clock)
}

/// The current time (GetCurrentTimestamp: the wall clock, not the transaction start).
pub fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the system clock; no preconditions.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// A new row id (UUID v7) for a row written at `ts`.
pub fn row_id(ts: pg_sys::TimestampTz) -> [u8; 16] {
    statemachine_core::ids::v7_at(ts)
}
