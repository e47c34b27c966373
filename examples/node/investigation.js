// pg_statemachine from Node (pg): the seed investigation case, start to review.
//
// Connects with the standard libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE).
// Usage: node investigation.js CASE_NUMBER
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Client } = require('pg');

const OWNER = 'a0000000-0000-0000-0000-000000000001';
const SUPERVISOR = 'a0000000-0000-0000-0000-000000000002';
const MACHINE = fs.readFileSync(path.join(__dirname, '..', 'investigation.json'), 'utf8');

// transition_case, retried on SM003 with the *same* command_id: if the first attempt did
// commit after all, the retry returns its row instead of moving the case twice.
async function transition(db, caseId, code, actor, role, commandId, expectedVersion = null) {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const { rows } = await db.query(
        'SELECT from_state, to_state, state_version, id FROM statemachine.transition_case(' +
          '$1, $2, $3, $4, $5, expected_version => $6)',
        [caseId, code, actor, role, commandId, expectedVersion]);
      return rows[0];
    } catch (err) {
      if (err.code !== 'SM003') throw err;
      console.log('SM003: the case moved since we read it; re-reading and retrying with the same command_id');
      const { rows } = await db.query('SELECT state_version FROM statemachine.case_file WHERE id = $1', [caseId]);
      expectedVersion = rows[0].state_version;
    }
  }
  throw new Error('case keeps moving; giving up');
}

async function showAvailable(db, caseId, role) {
  const { rows } = await db.query(
    'SELECT transition_code, to_state, requires_reason, requires_evidence, allowed, blocked_by ' +
      'FROM statemachine.available_transitions($1, $2) ORDER BY transition_code', [caseId, role]);
  for (const r of rows) {
    const needs = [['reason', r.requires_reason], ['evidence', r.requires_evidence]].filter(([, on]) => on).map(([n]) => n);
    console.log(`available to ${role}: ${r.transition_code} -> ${r.to_state}` +
      (needs.length ? ` (needs ${needs.join(', ')})` : '') + (r.allowed ? '' : ` blocked: ${r.blocked_by}`));
  }
}

async function main(caseNumber) {
  const db = new Client();
  await db.connect();
  try {
    await db.query('SELECT statemachine.define_machine($1::jsonb)', [MACHINE]);
    const { rows: [created] } = await db.query(
      "SELECT id, current_state FROM statemachine.create_case('investigation', $1, $2, 'CASE_OWNER', $3)",
      [caseNumber, OWNER, crypto.randomUUID()]);
    const caseId = created.id;
    console.log(`created case ${caseNumber} in ${created.current_state}`);
    await showAvailable(db, caseId, 'CASE_OWNER');

    // The supervisor's screen was loaded at version 0; then the owner submitted.
    const { rows: [{ state_version: seen }] } = await db.query(
      'SELECT state_version FROM statemachine.case_file WHERE id = $1', [caseId]);
    console.log(`the supervisor's screen shows version ${seen}`);
    let row = await transition(db, caseId, 'SUBMIT_CASE', OWNER, 'CASE_OWNER', crypto.randomUUID());
    console.log(`the owner submits: ${row.from_state} -> ${row.to_state} (version ${row.state_version})`);

    const command = crypto.randomUUID();
    row = await transition(db, caseId, 'ASSIGN_REVIEW', SUPERVISOR, 'SUPERVISOR', command, seen);
    console.log(`ASSIGN_REVIEW: ${row.from_state} -> ${row.to_state} (version ${row.state_version})`);
    const again = await transition(db, caseId, 'ASSIGN_REVIEW', SUPERVISOR, 'SUPERVISOR', command);
    console.log('replayed the same command_id: ' + (again.id === row.id ? 'same history row' : 'A NEW ROW?!'));

    try {
      await transition(db, caseId, 'CLOSE_CASE', SUPERVISOR, 'SUPERVISOR', crypto.randomUUID());
    } catch (err) {
      // SM001's HINT lists what is legal from here: worth showing to a person.
      console.log(`${err.code}: ${err.message}`);
      console.log(`hint for the user: ${err.hint}`);
    }
    await showAvailable(db, caseId, 'REVIEWER');
  } finally {
    await db.end();
  }
}

main(process.argv[2]).catch((err) => { console.error(err); process.exit(1); });
