// node check.mjs [--labels] FILE...
//
// Parses each Mermaid file with mermaid's own parser (the exact version pinned in
// package-lock.json), in Node with a jsdom window (mermaid's DOMPurify needs one).
// Stops at the first file mermaid rejects: prints "FAIL: FILE: error" and exits 1.
// Otherwise prints "ok: FILE (diagram type)" per file.
//
// --labels: after each file's ok line, also prints what the parser read, one per line,
// tab-separated, as a reader would see it drawn (Mermaid entities such as #34; decoded):
//   state <TAB> id <TAB> label
//   edge  <TAB> from-id <TAB> to-id <TAB> label
// so that tests/diagrams/run can check that state and transition codes round-trip verbatim.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, logLevel: 'fatal' });

const args = process.argv.slice(2);
const labels = args.includes('--labels');
const files = args.filter((a) => a !== '--labels');
if (files.length === 0) {
    console.error('usage: node check.mjs [--labels] FILE...');
    process.exit(2);
}

// Mermaid hides "#…;" entities from its grammar as placeholders before it parses
// (encodeEntities) and turns them into HTML entities when it draws (decodeEntities),
// which the browser then shows as characters. Do the same, with jsdom as the browser.
const decoder = dom.window.document.createElement('textarea');
function shown(text) {
    const html = String(text ?? '')
        .replace(/\uFB02\u00B0\u00B0/g, '&#')
        .replace(/\uFB02\u00B0/g, '&')
        .replace(/\u00B6\u00DF/g, ';');
    decoder.innerHTML = html;
    return decoder.value;
}

for (const file of files) {
    let text;
    try {
        text = readFileSync(file, 'utf8');
        const result = await mermaid.parse(text);
        console.log(`ok: ${file} (${result.diagramType})`);
    } catch (e) {
        console.log(`FAIL: ${file}: ${e?.message ?? e}`);
        process.exit(1);
    }
    if (!labels) continue;
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const db = diagram.db;
    if (typeof db.getStates !== 'function') {
        console.log(`FAIL: ${file}: --labels reads state diagrams only, this is ${diagram.type}`);
        process.exit(1);
    }
    for (const [id, state] of db.getStates()) {
        if (id === 'root_start' || id === 'root_end') continue;
        for (const d of state.descriptions ?? []) console.log(`state\t${id}\t${shown(d)}`);
    }
    for (const r of db.getRelations()) {
        console.log(`edge\t${r.id1}\t${r.id2}\t${shown(r.relationTitle)}`);
    }
}
