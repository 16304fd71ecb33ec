#!/usr/bin/env python3
"""Compare an Autobahn report against the committed expectations.

Reads a wstest report (default reports/servers/index.json from server mode;
run.sh passes reports/clients/index.json and expected-client.json for
client mode) and the expected file (default expected-server.json,
{case: {"behavior": X, "behaviorClose": Y}}), both relative to this
directory unless given. Exit status: 0 = no regressions, 1 = regressions, 2 = bad input.

Outcomes rank OK > NON-STRICT > INFORMATIONAL > UNIMPLEMENTED > FAILED; any
other label wstest uses (WRONG CODE, UNCLEAN, FAILED BY CLIENT, ...) ranks as
FAILED. A case regresses when its behavior or behaviorClose ranks below the
expected one, when it is INFORMATIONAL but not expected to be, or when an
expected case is missing from the report. Cases the expectations do not list
are held to OK/OK. Standard library only.

  --write-expected   rewrite the expected file from the current report
"""

import argparse
import json
import os
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REPORT = os.path.join(HERE, "reports", "servers", "index.json")
DEFAULT_EXPECTED = os.path.join(HERE, "expected-server.json")

RANK = {"OK": 4, "NON-STRICT": 3, "INFORMATIONAL": 2, "UNIMPLEMENTED": 1, "FAILED": 0}
SUMMARY_LABELS = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]
FIELDS = ("behavior", "behaviorClose")
DEFAULT_EXPECTATION = {"behavior": "OK", "behaviorClose": "OK"}


def rank(outcome):
    return RANK.get(outcome, RANK["FAILED"])


def bucket(outcome):
    """Summary bucket: the five known labels, everything else counts as FAILED."""
    return outcome if outcome in RANK else "FAILED"


def case_key(case_id):
    """Sort '1.1.10' after '1.1.9'."""
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def fail(msg):
    print("compare.py: ERROR: " + msg, file=sys.stderr)
    sys.exit(2)


def load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        fail("%s not found: %s" % (what, path))
    except ValueError as e:
        fail("%s is not valid JSON (%s): %s" % (what, e, path))


def load_report(path):
    """Return (agent, {case: {behavior, behaviorClose}}) for the single agent."""
    report = load_json(path, "report")
    if not isinstance(report, dict) or len(report) != 1:
        fail("report must hold exactly one agent, found %d: %s"
             % (len(report) if isinstance(report, dict) else 0, path))
    (agent, cases), = report.items()
    if not cases:
        fail("report for agent %r has no cases: %s" % (agent, path))
    out = {}
    for case, res in cases.items():
        try:
            out[case] = {f: res[f] for f in FIELDS}
        except (KeyError, TypeError):
            fail("case %s in report lacks behavior/behaviorClose" % case)
    return agent, out


def fmt(res):
    return "%s/%s" % (res["behavior"], res["behaviorClose"])


def verdict(exp, act):
    """Return 'worse', 'better' or 'same' for one field."""
    if act == "INFORMATIONAL" and exp != "INFORMATIONAL":
        return "worse"  # INFORMATIONAL is acceptable only where expected
    if rank(act) < rank(exp):
        return "worse"
    if rank(act) > rank(exp):
        return "better"
    return "same"


def summary(agent, actual):
    print("autobahn: agent %s, %d cases" % (agent, len(actual)))
    for field in FIELDS:
        counts = Counter(bucket(r[field]) for r in actual.values())
        print("  %-13s %s" % (field, "  ".join("%s=%d" % (l, counts[l]) for l in SUMMARY_LABELS)))
    odd = sorted({r[f] for r in actual.values() for f in FIELDS} - set(RANK))
    if odd:
        print("  (counted as FAILED: %s)" % ", ".join(odd))


def write_expected(path, actual):
    """One case per line, in suite order, so diffs stay readable."""
    lines = ["  %s: %s" % (json.dumps(c), json.dumps({f: actual[c][f] for f in FIELDS}))
             for c in sorted(actual, key=case_key)]
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    print("compare.py: wrote %d cases to %s" % (len(lines), path))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default=DEFAULT_REPORT, help="wstest index.json")
    ap.add_argument("--expected", default=DEFAULT_EXPECTED, help="expected file (default expected-server.json)")
    ap.add_argument("--write-expected", action="store_true",
                    help="regenerate the expected file from the report and exit")
    args = ap.parse_args()

    agent, actual = load_report(args.report)
    summary(agent, actual)
    if args.write_expected:
        write_expected(args.expected, actual)
        return 0

    expected = load_json(args.expected, "expected file")
    if not isinstance(expected, dict) or not expected:
        fail("expected file must be a non-empty {case: {...}} object: " + args.expected)

    regressions, improvements, missing, unlisted = [], [], [], []
    for case in sorted(set(expected) | set(actual), key=case_key):
        if case not in actual:
            missing.append(case)
            continue
        exp = expected.get(case)
        if exp is None:
            unlisted.append(case)
            exp = DEFAULT_EXPECTATION
        act = actual[case]
        verdicts = [verdict(exp.get(f, "OK"), act[f]) for f in FIELDS]
        line = "  %-8s expected %-28s got %s" % (case, fmt(exp), fmt(act))
        if "worse" in verdicts:
            regressions.append(line)
        elif "better" in verdicts:
            improvements.append(line)

    if unlisted:
        print("cases not in expected file (held to OK/OK): %s" % ", ".join(unlisted))
    if improvements:
        print("improvements (%d) -- consider --write-expected:" % len(improvements))
        print("\n".join(improvements))
    if missing:
        print("MISSING from report (%d): %s" % (len(missing), ", ".join(missing)))
    if regressions:
        print("REGRESSIONS (%d):" % len(regressions))
        print("\n".join(regressions))
    if missing or regressions:
        print("autobahn: FAIL (%d regressions, %d missing)" % (len(regressions), len(missing)))
        return 1
    print("autobahn: PASS (no regressions vs %s)" % os.path.basename(args.expected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
