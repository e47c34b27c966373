//! Evidence (seed 003 §10): add_evidence and deactivate_evidence, what the checks know
//! of the evidence a caller passes, and the links a transition records to it.

use crate::door::{self, refuse_inside_guard, Grant, Op};
use crate::fmgr::{text_datum, uuid_datum, uuid_from_datum, uuid_string, Args, SmResult};
use crate::history;
use crate::spi::{Spi, Stmt, TEXT, TEXT_ARRAY, TIMESTAMPTZ, UUID, UUID_ARRAY};
use crate::sql_function;
use pgrx::{pg_sys, IntoDatum};
use statemachine_core::{CaseFacts, EvidenceFact, Refusal, Rule};

static EVIDENCE_ROWS: Stmt = Stmt {
    sql: "SELECT u.id, e.case_id, e.is_active, e.evidence_type \
          FROM pg_catalog.unnest($1::pg_catalog.uuid[]) WITH ORDINALITY AS u(id, n) \
          LEFT JOIN ONLY statemachine.case_evidence e ON e.id OPERATOR(pg_catalog.=) u.id ORDER BY u.n",
    args: &[UUID_ARRAY],
};
/// On a distributed installation: the same within one case ($2): evidence of another case
/// reads as unknown (SM005 either way), and the lookup stays on the case's shard.
static EVIDENCE_ROWS_OF_CASE: Stmt = Stmt {
    sql: "SELECT u.id, e.case_id, e.is_active, e.evidence_type \
          FROM pg_catalog.unnest($1::pg_catalog.uuid[]) WITH ORDINALITY AS u(id, n) \
          LEFT JOIN (SELECT * FROM ONLY statemachine.case_evidence e WHERE e.case_id OPERATOR(pg_catalog.=) $2) e \
            ON e.id OPERATOR(pg_catalog.=) u.id ORDER BY u.n",
    args: &[UUID_ARRAY, UUID],
};
/// The links [`links`] decided, in one statement.
static LINK_EVIDENCE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_transition_evidence (case_id, transition_id, evidence_id, purpose) \
          SELECT $4, $1, u.id, u.purpose FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.uuid[]), pg_catalog.unnest($3::pg_catalog.text[])) AS u(id, purpose)",
    args: &[UUID, UUID_ARRAY, TEXT_ARRAY, UUID],
};
static INSERT_EVIDENCE: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_evidence (id, case_id, evidence_type, storage_uri, content_hash, submitted_by, submitted_at) \
          SELECT $1, c.id, $3, $4, $5, $6, $7 FROM ONLY statemachine.case_file c WHERE c.id OPERATOR(pg_catalog.=) $2 RETURNING id",
    args: &[UUID, UUID, TEXT, TEXT, TEXT, UUID, TIMESTAMPTZ],
};
/// Deactivation is an appended event; the first one stands (ON CONFLICT waits for a
/// concurrent one and then yields to it).
static INSERT_DEACTIVATION: Stmt = Stmt {
    sql: "INSERT INTO statemachine.case_evidence_deactivation AS d (evidence_id, case_id, deactivated_by, deactivated_at, reason) \
          SELECT e.id, e.case_id, $2, $4, $3 FROM ONLY statemachine.case_evidence e WHERE e.id OPERATOR(pg_catalog.=) $1 \
          ON CONFLICT DO NOTHING RETURNING ROW(d.*)::statemachine.case_evidence_deactivation",
    args: &[UUID, UUID, TEXT, TIMESTAMPTZ],
};
/// is_active is the deactivation record's summary, kept in the same transaction.
static MARK_EVIDENCE_INACTIVE: Stmt = Stmt {
    sql: "UPDATE ONLY statemachine.case_evidence SET is_active = false WHERE id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static DEACTIVATION_ROW: Stmt = Stmt {
    sql: "SELECT d FROM ONLY statemachine.case_evidence_deactivation d WHERE d.evidence_id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};
static EVIDENCE_EXISTS: Stmt = Stmt {
    sql: "SELECT 1 FROM ONLY statemachine.case_evidence e WHERE e.id OPERATOR(pg_catalog.=) $1",
    args: &[UUID],
};

/// The evidence ids a caller passed, with what the database knows of each.
pub fn facts(spi: &Spi, ids: Option<pg_sys::Datum>, case: pg_sys::Datum) -> Vec<EvidenceFact> {
    let Some(d) = ids else { return Vec::new() };
    let r = if crate::remote_door::distributed() {
        spi.run(&EVIDENCE_ROWS_OF_CASE, &[Some(d), Some(case)], 0)
    } else {
        spi.run(&EVIDENCE_ROWS, &[Some(d)], 0)
    };
    (0..r.count)
        .map(|i| EvidenceFact { id: r.uuid(i, 1), case_id: r.uuid(i, 2), active: r.bool(i, 3).unwrap_or(false), evidence_type: r.text(i, 4) })
        .collect()
}

/// The links [`link`] will record for a transition by `rule`: each existing evidence item
/// passed, once, `required` when it meets requires_evidence (of a listed type when the rule
/// lists types), else `supporting`. The seal covers this list, and [`link`] inserts it as is.
pub fn links(evidence: &[EvidenceFact], rule: &Rule) -> Vec<([u8; 16], String)> {
    let types = rule.evidence.types();
    let mut out: Vec<([u8; 16], String)> = Vec::new();
    for e in evidence.iter().filter(|e| e.case_id.is_some()) {
        let Some(id) = e.id else { continue };
        if out.iter().any(|(seen, _)| *seen == id) {
            continue;
        }
        let required = rule.requires_evidence() && (types.is_empty() || e.evidence_type.as_ref().is_some_and(|t| types.contains(t)));
        out.push((id, if required { "required" } else { "supporting" }.to_owned()));
    }
    out
}

/// Records a transition's evidence `links`; the door must be open.
pub fn link(spi: &Spi, case_id: &[u8; 16], transition_id: &[u8; 16], links: &[([u8; 16], String)]) {
    if links.is_empty() {
        return;
    }
    let ids: Vec<pgrx::Uuid> = links.iter().map(|(id, _)| pgrx::Uuid::from_bytes(*id)).collect();
    let purposes: Vec<&str> = links.iter().map(|(_, purpose)| purpose.as_str()).collect();
    spi.run(&LINK_EVIDENCE, &[Some(uuid_datum(transition_id)), ids.into_datum(), purposes.into_datum(), Some(uuid_datum(case_id))], 0);
}

fn add_evidence(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("add_evidence")?;
    if let Some(id) = crate::delegation::add_evidence(a)? {
        return Ok(uuid_datum(&id));
    }
    add_evidence_here(a)
}

/// add_evidence on this node (also delegated to it: delegation.rs).
pub(crate) fn add_evidence_here(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("add_evidence")?;
    let case_d = a.required(0, "case_id")?;
    let evidence_type = a.text(1, "evidence_type")?;
    let storage_uri = a.text(2, "storage_uri")?;
    let content_hash = a.text(3, "content_hash")?;
    let submitted_by = a.required(4, "submitted_by")?;
    let now = history::now();
    let id = history::row_id(now);
    let added = {
        let spi = Spi::connect();
        const WRITES: &[Grant] = &[("case_evidence", Op::Insert)];
        let _door = door::open(WRITES);
        let r = spi.run(
            &INSERT_EVIDENCE,
            &[
                Some(uuid_datum(&id)),
                Some(case_d),
                Some(text_datum(&evidence_type)),
                Some(text_datum(&storage_uri)),
                Some(text_datum(&content_hash)),
                Some(submitted_by),
                Some(pg_sys::Datum::from(now)),
            ],
            1,
        );
        !r.is_empty()
    };
    if !added {
        // SAFETY: case_id is declared uuid and was required non-NULL above.
        let case_id = uuid_string(&unsafe { uuid_from_datum(case_d) });
        return Err(Refusal::UnknownEvidenceCase { case_id }.report(&CaseFacts::default()));
    }
    // Made after SPI is finished, so it lives in the caller's memory context.
    Ok(uuid_datum(&id))
}

fn deactivate_evidence(a: &Args) -> SmResult<pg_sys::Datum> {
    refuse_inside_guard("deactivate_evidence")?;
    let evidence_d = a.required(0, "evidence_id")?;
    let actor_d = a.required(1, "actor_id")?;
    let reason = a.text(2, "reason")?;
    let spi = Spi::connect();
    let now = history::now();
    {
        const WRITES: &[Grant] = &[("case_evidence_deactivation", Op::Insert), ("case_evidence", Op::Update)];
        let _door = door::open(WRITES);
        let r = spi.run(&INSERT_DEACTIVATION, &[Some(evidence_d), Some(actor_d), Some(text_datum(&reason)), Some(pg_sys::Datum::from(now))], 1);
        if let Some(row) = r.get(0, 1) {
            let row = spi.keep(row);
            spi.run(&MARK_EVIDENCE_INACTIVE, &[Some(evidence_d)], 0);
            return Ok(row);
        }
    }
    // Already deactivated: the first deactivation stands and is returned.
    if let Some(row) = spi.run(&DEACTIVATION_ROW, &[Some(evidence_d)], 1).get(0, 1) {
        return Ok(spi.keep(row));
    }
    if spi.run(&EVIDENCE_EXISTS, &[Some(evidence_d)], 1).is_empty() {
        // SAFETY: evidence_id is declared uuid and was required non-NULL above.
        let evidence_id = uuid_string(&unsafe { uuid_from_datum(evidence_d) });
        return Err(Refusal::UnknownEvidence { evidence_id }.report(&CaseFacts::default()));
    }
    Err(Refusal::CommandInFlight.report(&CaseFacts::default()))
}

sql_function!(sm_add_evidence, pg_finfo_sm_add_evidence, add_evidence);
sql_function!(sm_deactivate_evidence, pg_finfo_sm_deactivate_evidence, deactivate_evidence);
