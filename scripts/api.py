#!/usr/bin/env python3
"""Checks docs/api.md against the SQL contract (../shared/API.md) and the installed
catalog as docs/reference.md records it. No database needed. Run through scripts/api.

  a. every statemachine.<name>( of the contract is in docs/api.md (functions with a
     heading, tables and views in its list), and a function docs/api.md lists as not yet
     in this release carries the contract's signature;
  b. every function docs/api.md presents as installed is in docs/reference.md with the
     same signature (parameter modes, names, types, defaults, in order; RETURNS);
     a function listed as not yet in this release is not installed;
  c. every function of docs/reference.md is documented in docs/api.md, or named in its
     internal list with a reason;
  d. the contract's signatures are a prefix of the installed ones (names; types and
     defaults where the contract gives them; further installed parameters have
     defaults), its RETURNS matches (a TABLE's columns are a prefix), and the columns it
     names for a table or view exist;
  e. every SQLSTATE of the contract's error table is in docs/api.md's table with the same
     condition name (and every code docs/api.md cites is in its table).
Without the contract only b and c run.

Paths: SM_API_CONTRACT, SM_API_DOC, SM_API_REFERENCE override the defaults.
"""
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTRACT = os.environ.get("SM_API_CONTRACT") or os.path.normpath(os.path.join(REPO, "..", "shared", "API.md"))
DOC = os.environ.get("SM_API_DOC") or os.path.join(REPO, "docs", "api.md")
REFERENCE = os.environ.get("SM_API_REFERENCE") or os.path.join(REPO, "docs", "reference.md")

# Section headings of docs/api.md that mean something to this check.
NOT_YET = "## Fixed by the contract, not yet in this release"
INTERNAL = "## Internal functions"
RELATIONS = "## Tables and views"
ERRORS = "## Errors"

failures = []


def fail(check, message):
    failures.append((check, message))


# ---------------------------------------------------------------- signature parsing

def split_top(text, sep=","):
    """Split at sep outside quotes and parentheses."""
    parts, depth, quote, cur = [], 0, None, []
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:  # '' or "" escape
                    cur.append(text[i + 1])
                    i += 1
                else:
                    quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([":
            depth += 1
            cur.append(ch)
        elif ch in ")]":
            depth -= 1
            cur.append(ch)
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()] if "".join(parts).strip() else []


def balanced(text, start):
    """Index just after the parenthesis closing the one at text[start]."""
    depth, quote, i = 0, None, start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


TYPE_SYNONYMS = {
    "int": "integer", "int4": "integer", "integer": "integer",
    "int8": "bigint", "bigint": "bigint", "int2": "smallint", "smallint": "smallint",
    "bool": "boolean", "boolean": "boolean",
    "timestamptz": "timestamptz", "timestamp with time zone": "timestamptz",
    "timestamp": "timestamp", "timestamp without time zone": "timestamp",
    "varchar": "varchar", "character varying": "varchar",
    "float8": "double precision", "double precision": "double precision",
    "float4": "real", "real": "real",
}


def norm_type(t):
    if t is None:
        return None
    t = re.sub(r"\s+", " ", t.strip().lower())
    array = ""
    while t.endswith("[]"):
        array += "[]"
        t = t[:-2].strip()
    if t.startswith("statemachine."):
        t = t[len("statemachine."):]
    t = t.strip('"')
    return TYPE_SYNONYMS.get(t, t) + array


CAST = re.compile(r"::\s*[A-Za-z_][A-Za-z0-9_ .\"]*(\[\])*\s*$")


def norm_default(d):
    if d is None:
        return None
    d = re.sub(r"\s+", " ", d.strip())
    while CAST.search(d):
        d = CAST.sub("", d).strip()
    if "'" not in d:
        d = d.lower()
    return d


MODES = ("in", "out", "inout", "variadic")


def parse_arg(text):
    """(mode, name, type, default) of one argument; type None when not given."""
    text = re.sub(r"\s+", " ", text.strip())
    if text == "...":
        return ("...", None, None, None)
    default = None
    pieces = re.split(r"\s+DEFAULT\s+|\s*=\s*", text, maxsplit=1, flags=re.I)
    # Only split at DEFAULT / = outside quotes: the name and type never hold quotes.
    if len(pieces) == 2 and "'" not in pieces[0]:
        text, default = pieces[0].strip(), pieces[1].strip()
    words = text.split(" ")
    mode = "in"
    if len(words) > 1 and words[0].lower() in MODES:
        mode = words[0].lower()
        words = words[1:]
    name = words[0].strip('"')
    typ = " ".join(words[1:]) or None
    return (mode, name, norm_type(typ), norm_default(default))


def parse_returns(text):
    if text is None:
        return None
    text = re.sub(r"\s+", " ", text.strip())
    if text in ("...", "…"):
        return ("any",)
    m = re.match(r"(?i)^TABLE\s*\((.*)\)$", text)
    if m:
        cols = []
        for c in split_top(m.group(1)):
            words = c.split(" ")
            cols.append((words[0].strip('"'), norm_type(" ".join(words[1:]))))
        return ("table", tuple(cols))
    m = re.match(r"(?i)^SETOF\s+(.*)$", text)
    if m:
        return ("setof", norm_type(m.group(1)))
    return ("type", norm_type(text))


SIG_START = re.compile(r"statemachine\.([a-z_][a-z0-9_]*)\(")


def parse_signature(text):
    """name, args (list of tuples), returns (None when absent) of the first
    `statemachine.name(...) [RETURNS ...]` in text; the RETURNS part ends at a backtick,
    a closing ``` or the end of text."""
    m = SIG_START.search(text)
    if not m:
        raise ValueError("no statemachine.name( in %r" % text[:80])
    end = balanced(text, m.end() - 1)
    args = [parse_arg(a) for a in split_top(text[m.end():end - 1])]
    rest = text[end:]
    r = re.match(r"\s*RETURNS\s+", rest, flags=re.I)
    returns = None
    if r:
        body = rest[r.end():]
        if re.match(r"(?i)TABLE\s*\(", body):
            close = balanced(body, body.index("("))
            returns = parse_returns(body[:close])
        else:
            returns = parse_returns(re.split(r"`|\n\s*\n|$", body, maxsplit=1)[0].split("—")[0].strip())
    return m.group(1), args, returns


def show_arg(a):
    mode, name, typ, default = a
    if mode == "...":
        return "..."
    s = ("" if mode == "in" else mode.upper() + " ") + name + (" " + typ if typ else "")
    return s + (" DEFAULT " + default if default is not None else "")


def show_returns(r):
    if r is None:
        return "(no RETURNS)"
    if r[0] == "any":
        return "RETURNS ..."
    if r[0] == "table":
        return "RETURNS TABLE(%s)" % ", ".join("%s %s" % c for c in r[1])
    if r[0] == "setof":
        return "RETURNS SETOF " + r[1]
    return "RETURNS " + r[1]


def first_difference(a, b):
    """Where signature a (docs/api.md) first differs from b (docs/reference.md)."""
    for i in range(max(len(a[1]), len(b[1]))):
        x = show_arg(a[1][i]) if i < len(a[1]) else "(none)"
        y = show_arg(b[1][i]) if i < len(b[1]) else "(none)"
        if x != y:
            return "parameter %d: %s vs %s" % (i + 1, x, y)
    return "%s vs %s" % (show_returns(a[2]), show_returns(b[2]))


def show(sig):
    name, args, returns = sig
    return "%s(%s) %s" % (name, ", ".join(show_arg(a) for a in args), show_returns(returns))


# ---------------------------------------------------------------- markdown parsing

def sections(text):
    """{'## heading': body} for every level-2 heading (body up to the next one)."""
    out, current = {}, None
    for line in text.split("\n"):
        if line.startswith("## "):
            current = line.strip()
            out.setdefault(current, [])
        elif current:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def section(secs, prefix):
    return "\n".join(body for head, body in secs.items() if head.startswith(prefix))


ENTRY = re.compile(r"^### statemachine\.([a-z_][a-z0-9_]*)\s*\n+```sql\n(.*?)\n```", re.M | re.S)


def entries(text):
    """[(heading name, signature)] of every ### statemachine.name + ```sql block."""
    out = []
    for m in ENTRY.finditer(text):
        try:
            sig = parse_signature(m.group(2))
        except ValueError as e:
            fail("parse", "cannot read the signature under ### statemachine.%s: %s" % (m.group(1), e))
            continue
        if sig[0] != m.group(1):
            fail("parse", "### statemachine.%s is followed by a signature of %s" % (m.group(1), sig[0]))
        out.append((m.group(1), sig))
    return out


def table_rows(text):
    for line in text.split("\n"):
        if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|\s*$", line):
            yield [c.strip() for c in line.strip().strip("|").split("|")]


# ---------------------------------------------------------------- inputs

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


for path, what in ((DOC, "SM_API_DOC"), (REFERENCE, "SM_API_REFERENCE")):
    if not os.path.isfile(path):
        print("FAIL: %s not found (%s)" % (path, what))
        sys.exit(1)

doc = read(DOC)
reference = read(REFERENCE)
contract = read(CONTRACT) if os.path.isfile(CONTRACT) else None

ref_secs = sections(reference)
ref_functions = {}
for name, sig in entries(section(ref_secs, "## Functions")):
    ref_functions.setdefault(name, []).append(sig)
ref_relations = {}
for head in ("## Views", "## Tables"):
    for m in re.finditer(r"^### statemachine\.([a-z_][a-z0-9_]*)\s*\n(.*?)(?=^### |\Z)",
                         section(ref_secs, head), re.M | re.S):
        ref_relations[m.group(1)] = {row[0].strip("`") for row in table_rows(m.group(2))
                                     if row and row[0].startswith("`")}

doc_secs = sections(doc)
doc_installed, doc_not_yet = {}, {}
for head, body in doc_secs.items():
    if head.startswith(INTERNAL) or head.startswith(RELATIONS) or head.startswith(ERRORS):
        continue
    target = doc_not_yet if head.startswith(NOT_YET) else doc_installed
    for name, sig in entries(body):
        target.setdefault(name, []).append(sig)

doc_internal = {}
for m in re.finditer(r"^[-*] `statemachine\.([a-z_][a-z0-9_]*)(?:\([^`]*\))?`(.*)$",
                     section(doc_secs, INTERNAL), re.M):
    reason = m.group(2).strip().lstrip("—–-:").strip()
    doc_internal[m.group(1)] = reason

doc_relations = set(re.findall(r"`statemachine\.([a-z_][a-z0-9_]*)", section(doc_secs, RELATIONS)))

doc_errors = {}
for row in table_rows(section(doc_secs, ERRORS)):
    code = row[0].strip("`")
    if re.fullmatch(r"[0-9A-Z]{5}", code) and len(row) > 1:
        doc_errors[code] = row[1].strip("`")

# ---------------------------------------------------------------- b, c (always)

for name, sigs in doc_installed.items():
    if name not in ref_functions:
        fail("b", "docs/api.md presents statemachine.%s as installed, but docs/reference.md has no such function" % name)
        continue
    for sig in sigs:
        if sig not in ref_functions[name]:
            fail("b", "statemachine.%s: docs/api.md and docs/reference.md disagree (%s)\n"
                      "      docs/api.md:       %s\n      docs/reference.md: %s"
                 % (name, first_difference(sig, ref_functions[name][0]), show(sig),
                    "\n                         ".join(show(s) for s in ref_functions[name])))
for name in doc_not_yet:
    if name in ref_functions:
        fail("b", "statemachine.%s is listed as not yet in this release, but docs/reference.md has it: "
                  "move it to the installed sections with its installed signature" % name)
    if name in doc_installed:
        fail("b", "statemachine.%s is both installed and not yet in this release in docs/api.md" % name)

for name, sigs in ref_functions.items():
    if name in doc_internal:
        if not doc_internal[name]:
            fail("c", "statemachine.%s is in the internal list of docs/api.md without a reason" % name)
        if name in doc_installed:
            fail("c", "statemachine.%s is both documented and internal in docs/api.md" % name)
        continue
    documented = doc_installed.get(name, [])
    if not documented:
        for sig in sigs:
            fail("c", "statemachine.%s is installed but not documented in docs/api.md" % show(sig))
    elif len(sigs) > len(documented):  # an overload without its entry (b reports mismatches)
        for sig in sigs:
            if sig not in documented:
                fail("c", "statemachine.%s is installed but not documented in docs/api.md "
                          "(only another signature of it is)" % show(sig))
for name in doc_internal:
    if name not in ref_functions:
        fail("c", "docs/api.md lists statemachine.%s as internal, but it is not installed" % name)

# ---------------------------------------------------------------- a, d, e (need the contract)

def compare_contract(name, csig, isig):
    """Problems of installed signature isig against the contract's csig (d)."""
    problems = []
    _, cargs, cret = csig
    _, iargs, iret = isig
    iin = [a for a in iargs if a[0] != "out"]
    open_ended = False
    for i, ca in enumerate(cargs):
        if ca[0] == "...":
            open_ended = True
            break
        if i >= len(iin):
            problems.append("parameter %d (%s) of the contract is missing" % (i + 1, show_arg(ca)))
            continue
        ia = iin[i]
        if ca[1] != ia[1]:
            problems.append("parameter %d is named %s, the contract says %s" % (i + 1, ia[1], ca[1]))
        if ca[2] is not None and ca[2] != ia[2]:
            problems.append("parameter %s has type %s, the contract says %s" % (ca[1], ia[2], ca[2]))
        if ca[3] is not None and ca[3] != ia[3]:
            problems.append("parameter %s has DEFAULT %s, the contract says DEFAULT %s" % (ca[1], ia[3], ca[3]))
    if not open_ended:
        for ia in iin[len(cargs):]:
            if ia[3] is None:
                problems.append("extra parameter %s has no DEFAULT (the contract allows only added parameters with defaults)" % ia[1])
    if cret is not None and cret[0] != "any":
        if cret[0] == "table" and iret and iret[0] == "table":
            ccols, icols = cret[1], iret[1]
            for j, cc in enumerate(ccols):
                if j >= len(icols):
                    problems.append("result column %s %s is missing" % cc)
                elif cc != icols[j]:
                    problems.append("result column %d is %s %s, the contract says %s %s" % ((j + 1,) + icols[j] + cc))
        elif cret != iret:
            problems.append("%s, the contract says %s" % (show_returns(iret), show_returns(cret)))
    return problems


contract_relations = set()
if contract is None:
    print("skipped: %s not found; checks a, d and e (against the contract) skipped, b and c run" % CONTRACT)
else:
    # a: every statemachine.<name>( is in docs/api.md.
    mentions = []
    for m in SIG_START.finditer(contract):
        name = m.group(1)
        before = contract[max(0, contract.rfind("\n", 0, m.start())):m.start()]
        is_relation = (name in ref_relations or name in doc_relations
                       or re.search(r"(?i)\bview\s+`?$", before) is not None)
        if is_relation:
            contract_relations.add(name)
            end = balanced(contract, m.end() - 1)
            cols = [c.split(" ")[0] for c in (re.sub(r"\s+", " ", x) for x in split_top(contract[m.end():end - 1]))]
            mentions.append((name, "relation", cols))
            continue
        # the signature runs to the closing backtick (it may span lines)
        close = contract.find("`", m.end())
        chunk = contract[m.start():close if close != -1 else len(contract)]
        try:
            mentions.append((name, "function", parse_signature(chunk)))
        except ValueError as e:
            fail("a", "cannot read the contract's signature of statemachine.%s: %s" % (name, e))

    for name, kind, data in mentions:
        if kind == "relation":
            if name not in doc_relations:
                fail("a", "the contract names %s statemachine.%s; docs/api.md's \"%s\" does not list it"
                     % ("view" if name.startswith("v_") else "table", name, RELATIONS[3:]))
            if name not in ref_relations:
                fail("d", "the contract names statemachine.%s; docs/reference.md has no such table or view" % name)
            else:
                for col in data:
                    if col not in ref_relations[name]:
                        fail("d", "the contract names column %s of statemachine.%s; docs/reference.md has no such column" % (col, name))
            continue
        if name not in doc_installed and name not in doc_not_yet:
            fail("a", "the contract names statemachine.%s; docs/api.md does not document it "
                      "(neither installed nor in \"%s\")" % (name, NOT_YET[3:]))
        if name in doc_not_yet and data not in doc_not_yet[name]:
            fail("a", "statemachine.%s: docs/api.md's not-yet signature differs from the contract\n"
                      "      docs/api.md: %s\n      contract:    %s"
                 % (name, "\n                   ".join(show(s) for s in doc_not_yet[name]), show(data)))
        if name in ref_functions:
            results = [compare_contract(name, data, isig) for isig in ref_functions[name]]
            if all(results):
                best = min(results, key=len)
                fail("d", "statemachine.%s does not keep the contract's signature:\n      - %s\n"
                          "      contract:  %s\n      installed: %s"
                     % (name, "\n      - ".join(best), show(data),
                        "\n                 ".join(show(s) for s in ref_functions[name])))

    # e: the error table.
    contract_errors = {}
    for row in table_rows(section(sections(contract), "## Errors")):
        code = row[0].strip("`")
        if re.fullmatch(r"[0-9A-Z]{5}", code) and len(row) > 1:
            contract_errors[code] = row[1]
    if not contract_errors:
        fail("e", "no SQLSTATE table found under \"## Errors\" in %s" % CONTRACT)
    for code, cell in contract_errors.items():
        condition = re.split(r"[:,]", cell, maxsplit=1)[0].strip().strip("`")
        if code not in doc_errors:
            fail("e", "SQLSTATE %s (%s) of the contract is missing from docs/api.md's error table" % (code, condition))
        elif doc_errors[code] != condition:
            fail("e", "SQLSTATE %s: docs/api.md says condition %r, the contract says %r" % (code, doc_errors[code], condition))

# Every code docs/api.md cites (Errors: lines) is in its own table.
cited = set()
for m in re.finditer(r"^\*\*Errors:\*\*(.*?)(?=\n\s*\n|\Z)", doc, re.M | re.S):
    cited.update(re.findall(r"\b(SM\d{3}|[0-9][0-9A-Z]{4})\b", m.group(1)))
for code in sorted(cited - set(doc_errors)):
    fail("e", "docs/api.md cites SQLSTATE %s but its error table does not list it" % code)

# ---------------------------------------------------------------- report

if failures:
    for check, message in failures:
        print("FAIL (%s): %s" % (check, message))
    print("scripts/api: %d disagreement(s) between docs/api.md, docs/reference.md%s"
          % (len(failures), "" if contract is None else " and the contract"))
    sys.exit(1)
print("docs/api.md agrees with docs/reference.md (%d functions documented, %d internal)%s"
      % (sum(len(v) for v in doc_installed.values()), len(doc_internal),
         "" if contract is None else " and with the contract (%d functions, %d tables/views, %d SQLSTATEs; "
         "%d functions not yet in this release)" % (
             len({n for n, k, _ in mentions if k == "function"}), len(contract_relations),
             len(contract_errors), len(doc_not_yet))))
