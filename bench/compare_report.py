#!/usr/bin/env python3
"""Comparison report for bench/compare.sh (python3 standard library only).

usage: compare_report.py OUT_DIR [--root REPO] [--md BENCHMARKS.md|none]

Reads OUT_DIR/{machine.txt, skipped.txt, notes.txt, echo/results.tsv, echo/churn.tsv,
echo/rss.tsv, fanout/results.tsv, cluster/results.tsv, details-*.md}, prints the
wsmio-vs-peer table (median over rounds, [min-max], ratio wsmio/peer of the medians) and
replaces the "## Latest run" section of the markdown file with it (the file is created if
missing) when the run had the echo, rss or fanout suite; the cluster suite's table (memory vs
Redis engine, goals) replaces "### Latest cluster run" in "## Cluster (Redis engine)", and the acks
suite's table (fan-out with and without subscriber acks, both engines) replaces "### Latest ack run"
in "## Acknowledgements (issue 19)". Raw-data directories are named as `$OUT (<its name>)`, never
by their path on this machine.
Medians use only the runs that passed verification (ok=1), as in the reference harness.
"""
import csv
import os
import re
import statistics
import sys

SECTION = "## Latest run"


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def shown(out):
    """The raw-data directory as the report names it: not its path on this machine."""
    return "$OUT (%s)" % os.path.basename(os.path.normpath(out))


def lock_versions(root):
    """Versions of the peer crates from Cargo.lock (what was actually built)."""
    out = {}
    try:
        txt = open(os.path.join(root, "Cargo.lock")).read()
    except OSError:
        return out
    for m in re.finditer(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', txt):
        out.setdefault(m.group(1), m.group(2))
    return out


def names(root, m):
    v = lock_versions(root)
    tt = v.get("tokio-tungstenite", "?")
    fw = v.get("fastwebsockets", "?")
    ws = v.get("ws", "?")
    busy = m.get("busy_poll_us", "0")
    def slot(key, default):
        ov = m.get(key, "")
        if not ov:
            return default if busy in ("", "0") else "%s, busy-poll %s µs" % (default, busy)
        return "OVERRIDE: %s (wsmio slot)" % os.path.basename(ov.split()[0])

    return {
        "wsmio": slot("override_echo", "wsmio (examples/echo)"),
        "wsmio-bcast": slot("override_bcast", "wsmio (examples/broadcast)"),
        "wsmio-hub": slot("override_hub", "wsmio hub (wsmio serve)"),
        "tt-ct": "tokio-tungstenite %s (current-thread)" % tt,
        "fastws": "fastwebsockets %s" % fw,
        "ws": "ws %s (mio 0.6)" % ws,
        "floor": "floor (bench/floor: unmask and echo, no checks)",
        "tt": "tokio-tungstenite %s bcast, idiomatic" % tt,
        "tt-batch": "tokio-tungstenite %s bcast, batch" % tt,
        "fastws-bcast": "fastwebsockets %s bcast" % fw,
    }


def human(x):
    if x is None:
        return "n/a"
    a = abs(x)
    if a >= 1e6:
        return "%.2fM" % (x / 1e6)
    if a >= 1e4:
        return "%.0fk" % (x / 1e3)
    if a >= 1e3:
        return "%.1fk" % (x / 1e3)
    if a >= 100:
        return "%.0f" % x
    if a >= 10:
        return "%.1f" % x
    return "%.2f" % x


class Cell:
    """Median [min-max] over the ok runs of one server x scenario x metric."""

    def __init__(self, vals, total, fmt=None):
        self.vals = [v for v in vals if v is not None]
        self.total = total
        self.fmt = fmt or human

    @property
    def med(self):
        return statistics.median(self.vals) if self.vals else None

    def text(self):
        if not self.vals:
            return "n/a (0/%d ok)" % self.total if self.total else "n/a (not run)"
        f = self.fmt
        s = f(self.med)
        if len(self.vals) > 1:
            s += " [%s–%s]" % (f(min(self.vals)), f(max(self.vals)))
        if len(self.vals) < self.total:
            s += " (%d/%d ok)" % (len(self.vals), self.total)
        return s


def fmt_for(metric):
    if metric.startswith("MB/s"):
        return lambda x: "%.0f" % x
    if "µs" in metric:
        return lambda x: "%.1f" % x if x < 100 else "%.0f" % x
    if metric.startswith("KiB"):
        return lambda x: "%.2f" % x
    return human


def cell(rows, key, srv, scen=None, metric="", scen_key="scen", ok_key="ok"):
    rs = [r for r in rows if r.get("peer") == srv and (scen is None or r.get(scen_key) == scen)]
    return Cell([num(r.get(key)) for r in rs if r.get(ok_key) == "1"], len(rs), fmt_for(metric))


def fmt_ratio(x):
    if x >= 10:
        return "%.1f" % x
    if x >= 0.1:
        return "%.2f" % x
    return "%.3f" % x


def ratio(a, b):
    if a.med is None or b.med is None or b.med == 0:
        return "n/a"
    return fmt_ratio(a.med / b.med)


def servers_in(rows):
    out = []
    for r in rows:
        if r.get("peer") and r["peer"] not in out:
            out.append(r["peer"])
    return out


def scaling_table(echo, servers, en, nm):
    """What the scaling row is made of, per server: the host's TCP segments
    per second (the two processes' kernel work, in segments) at e100 and at
    `en`, the share of them that are pure ACKs, and the server's own
    user-space time per message. Throughput kept = segments/s kept x the
    data-segment share kept (messages per data segment stay ~ the depth)."""
    if not any(r.get("scen") == en for r in echo) or not any(r.get("tcp_segs") for r in echo):
        return ""
    med = lambda s, sc, k: cell(echo, k, s, sc).med
    out = ["Scaling, e100 → %s, what it is made of (host-wide TCP counters, medians over rounds; "
           "on loopback every segment is one of the two processes' kernel work, so segments/s is the "
           "budget both CPUs spend; throughput kept = segments/s kept × data-segment share kept):" % en,
           "",
           "| server | msg/s e100 → %s (kept) | TCP segments/s e100 → %s (kept) | pure-ACK share of segments e100 → %s "
           "| TCP segments per message e100 → %s | server user-space ns/msg e100 → %s |" % ((en,) * 5),
           "|---|---|---|---|---|---|"]
    def pair(s, k, f, kept=False):
        a, b = med(s, "e100", k), med(s, en, k)
        if a is None or b is None:
            return "n/a"
        t = "%s → %s" % (f(a), f(b))
        return t + (" (%.2f)" % (b / a) if kept and a else "")
    pct = lambda x: "%.0f %%" % (100 * x)
    for s in servers:
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            nm(s), pair(s, "msgs_per_s", human, True), pair(s, "tcp_segs", human, True),
            pair(s, "pure_ack_share", pct), pair(s, "segs_per_msg", lambda x: "%.2f" % x),
            pair(s, "server_user_ns_per_msg", lambda x: "%.0f" % x)))
    return "\n".join(out)


# ---------------------------------------------------------------- cluster
CLUSTER_SECTION = "## Cluster (Redis engine)"
CLUSTER_SUB = "### Latest cluster run"


def cluster_report(out, m):
    """The cluster suite's table (memory engine vs Redis engine, same run),
    with the goals of the cluster issue and whether the medians meet them."""
    rows = load(os.path.join(out, "cluster", "results.tsv"))
    if not rows:
        return None
    cn = m.get("cn", "c5k")
    fb = m.get("fan_big", "5000")
    rate = m.get("cluster_rate", "10000")
    lat_subs = m.get("cluster_lat_subs", "10")
    win = m.get("cluster_window", "256")
    ack_pubs = m.get("cluster_ack_pubs", "4")
    ack_win = m.get("cluster_ack_window", "64")
    rcpu = m.get("cack_redis_cpu", "1")
    ccpu = m.get("cluster_redis_cpu", "0")
    # CPU ns per delivery of the node that fans out (memory: the one node; Redis: node B)
    # and Redis CPU us per publish (from /proc: its CPU share / publishes sent)
    for r in rows:
        d, c = num(r.get("deliveries_per_s")), num(r.get("cpu_sub_node"))
        if d and c is not None:
            r["sub_ns_per_delivery"] = "%.0f" % (c / 100.0 * 1e9 / d)
        p, rc = num(r.get("sent_per_s")), num(r.get("cpu_redis"))
        if p and rc is not None:
            r["redis_us_per_pub"] = "%.1f" % (rc / 100.0 * 1e6 / p)
        # each core's total: the servers' core 0 and the generator's core 1
        # (Redis sits on CACK_REDIS_CPU in cack)
        a, b, g = num(r.get("cpu_pub_node")), num(r.get("cpu_sub_node")), num(r.get("client_cpu"))
        if r.get("engine") == "memory":
            r["cpu0"], r["cpu1"] = a, g
        elif None not in (a, b, rc, g):
            red1 = (rcpu if r.get("scen") == "cack" else ccpu) != "0"
            r["cpu0"] = a + b + (0 if red1 else rc)
            r["cpu1"] = g + (rc if red1 else 0)

    def c(key, eng, scen, fmt=human):
        rs = [r for r in rows if r.get("engine") == eng and r.get("scen") == scen]
        return Cell([num(r.get(key)) for r in rs if r.get("ok") == "1"], len(rs), fmt)

    us = lambda x: "%.0f" % x if x >= 100 else "%.1f" % x
    pct = lambda x: "%.0f %%" % x
    f2 = lambda x: "%.3f" % x if x < 1 else "%.2f" % x
    f1 = lambda x: "%.1f" % x
    lines = ["| scenario | metric | memory engine (1 node) | Redis engine (node A → Redis → node B) | Redis/memory | goal | met? |",
             "|---|---|---|---|---|---|---|"]

    def row(label, metric, key, scen, fmt=human, goal="", check=None, ratio_goal=None, mem=True, show_ratio=True):
        a = c(key, "memory", scen, fmt) if mem else Cell([], 0)
        b = c(key, "redis", scen, fmt)
        if a.total == 0 and b.total == 0:
            return
        rt = ratio(b, a) if mem and show_ratio else ""
        met = ""
        if ratio_goal is not None and a.med is not None and b.med is not None and a.med:
            met = "**yes**" if b.med / a.med >= ratio_goal else "**no**"
            # On an idle machine the memory engine's fan-out saturates a core
            # (its node or the generator); if neither was busy, other work
            # took the CPUs and the ratio says nothing.
            busy = [x for x in (c("cpu0", "memory", scen).med, c("cpu1", "memory", scen).med) if x is not None]
            if busy and max(busy) < 80:
                met = "not judged: the memory runs were starved (busiest core %.0f %%)" % max(busy)
        elif check is not None and b.med is not None:
            met = "**yes**" if check(b.med) else "**no**"
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            label, metric, a.text() if mem else "—", b.text(), rt, goal, met))

    L = "clat: %s publishes/s paced, %s subs" % (human(num(rate) or 0), lat_subs)
    row(L, "publish→delivery p50 µs ↓", "p50_us", "clat", us)
    row(L, "publish→delivery p99 µs ↓", "p99_us", "clat", us, "p99 ≤ 2 ms", lambda v: v <= 2000)
    row(L, "publish→delivery p99.9 µs ↓", "p999_us", "clat", us)
    row(L, "generator's send lag p99 µs (sanity)", "pace_p99_us", "clat", us, show_ratio=False)
    row(L, "Redis round trips per publish", "rt_per_pub", "clat", f2, mem=False)
    row(L, "node A's mean Redis round trip µs (one pipeline)", "rt_mean_us", "clat", us, mem=False)
    for scen, subs in (("c100", "100"), (cn, fb)):
        L = "%s: fan-out %s subs on B, 1 publisher on A, W %s" % (scen, subs, win)
        row(L, "deliveries/s ↑", "deliveries_per_s", scen, human, "≥ 0.7× memory", ratio_goal=0.7)
        row(L, "publishes/s ↑", "publishes_per_s", scen, human)
        row(L, "p99 µs ↓ (includes the window's queueing)", "p99_us", scen, us)
        row(L, "fan-out node CPU ns/delivery ↓", "sub_ns_per_delivery", scen, human)
        row(L, "Redis round trips per publish", "rt_per_pub", scen, f2, "well under 1 (≤ 0.1)",
            lambda v: v <= 0.1, mem=False)
    L = "cack: %s publishers with ids, %s acks outstanding each, 1 sub on B" % (ack_pubs, ack_win)
    row(L, "acked publishes/s ↑", "acks_per_s", "cack", human, "≥ 50,000/s", lambda v: v >= 50000)
    row(L, "publish→ack p50 µs ↓", "ack_p50_us", "cack", us)
    row(L, "publish→ack p99 µs ↓", "ack_p99_us", "cack", us)
    row(L, "Redis round trips per publish", "rt_per_pub", "cack", f2, "well under 1 (≤ 0.1)",
        lambda v: v <= 0.1, mem=False)
    row(L, "commands per round trip (pipeline length)", "cmds_per_rt", "cack", f1, mem=False)
    row(L, "node A's mean Redis round trip µs (one pipeline)", "rt_mean_us", "cack", us, mem=False)
    row(L, "Redis time per publish script, µs (INFO commandstats)", "redis_script_us", "cack", f1, mem=False)
    row(L, "… of which the XRANGE inside it, µs", "redis_xrange_us", "cack", f1, mem=False)
    row(L, "Redis CPU µs per publish (/proc)", "redis_us_per_pub", "cack", f1, mem=False)
    table = "\n".join(lines)

    # CPU of every process per scenario (what bounds each figure)
    cpu = ["CPU use over the measured window, medians (100 %% = one core; servers on CPU 0 and the "
           "generator on CPU 1, except Redis: CPU %s, in cack CPU %s):" % (ccpu, rcpu), "",
           "| scenario | engine | publishers' node | subscribers' node | Redis | generator | CPU 0 total | CPU 1 total |",
           "|---|---|---|---|---|---|---|---|"]
    scens = [s for s in m.get("cluster_scen", "clat c100 %s cack" % cn).split() if any(r.get("scen") == s for r in rows)]
    for s in scens:
        for eng in ("memory", "redis"):
            if not any(r.get("engine") == eng and r.get("scen") == s for r in rows):
                continue
            g = lambda k: c(k, eng, s, pct).text()
            if eng == "memory":
                cpu.append("| %s | memory | %s (one node) | (same) | — | %s | %s | %s |" % (
                    s, g("cpu_pub_node"), g("client_cpu"), g("cpu0"), g("cpu1")))
            else:
                cpu.append("| %s | redis | %s | %s | %s | %s | %s | %s |" % (
                    s, g("cpu_pub_node"), g("cpu_sub_node"), g("cpu_redis"), g("client_cpu"), g("cpu0"), g("cpu1")))
    # what went wrong, and what the nodes noticed
    bad, odd = [], []
    for r in rows:
        if r.get("ok") != "1":
            bad.append("round %s %s %s (gaps=%s missing=%s verify_errors=%s)" % (
                r["round"], r["engine"], r["scen"], r.get("gaps") or "?", r.get("missing") or "?", r.get("verify_errors") or "?"))
        for k, what in (("fills", "history fills on node B (Redis pub/sub dropped messages, recovered from history)"),
                        ("lost", "deliveries lost on node B (reported as gap)"),
                        ("engine_errors", "engine errors on the nodes (wsmio_engine_errors_total)"),
                        ("ack_no_epoch", "pub acks with an empty epoch")):
            v = num(r.get(k))
            if v:
                odd.append("round %s %s %s: %d %s" % (r["round"], r["engine"], r["scen"], v, what))
    rep = []
    mode = m.get("mode", "?")
    rep.append("Run %s, `SUITES=cluster bench/compare.sh%s` (%s mode): %s round(s), %s s measured per run after %s s warm-up; "
               "Redis %s (AOF on, appendfsync everysec), two hub nodes and the memory-engine node started fresh per round; "
               "the nodes on CPU 0, Redis on CPU %s (CPU %s in cack), the load generator on CPU 1. Wall time %s s." % (
                   m.get("date", "?"), " --quick" if mode == "quick" else "", mode, m.get("rounds", "?"), m.get("dur", "?"),
                   m.get("warmup", "?"), m.get("redis_version", "?"), ccpu, rcpu, m.get("elapsed_s", "?")))
    try:
        busy = float(m.get("loadavg_before", "0").split()[0])
    except ValueError:
        busy = 0.0
    if busy > 0.5:
        rep.append("")
        rep.append("**WARNING: the machine was not idle when the run started (1-min load average %.2f): other work "
                   "competes for the two CPUs, so the figures are unreliable.**" % busy)
    if mode == "quick":
        rep.append("")
        rep.append("**Quick mode: short runs%s — indicative only.**" % (
            "" if fb == "5000" else ", %s instead of 5,000 subscribers in %s" % (fb, cn)))
    rep.append("")
    rep.append("Machine: %s%s, %s CPUs, %s; wsmio commit %s; load average before/after: %s / %s." % (
        m.get("cpu", "?"), (" (%s guest)" % m["hypervisor"]) if m.get("hypervisor") else "", m.get("nproc", "?"),
        m.get("kernel", "?"), m.get("git", "?"), m.get("loadavg_before", "?"), m.get("loadavg_after", "?")))
    rep.append("")
    rep.append("Median over rounds [min–max] of the runs that passed verification (every subscriber got every "
               "publish once, in order, with consecutive topic seqs following its sub ack; every ack named an "
               "outstanding publish once and agreed with the deliveries' seq). \"met?\" judges the Redis medians.")
    rep.append("")
    rep.append(table)
    rep.append("")
    rep.append("\n".join(cpu))
    rep.append("")
    if bad:
        rep.append("Runs that failed verification or did not complete (left out of the medians):")
        rep.extend("- %s" % b for b in bad)
        rep.append("")
    if odd:
        rep.append("Noted by the nodes or the generator:")
        rep.extend("- %s" % o for o in odd)
        rep.append("")
    rep.append("Raw results: `%s/cluster/` (results.tsv; every run's /metrics before/after and Redis INFO "
               "commandstats), server logs in `$OUT`." % shown(out))
    return "\n".join(rep)


def put_cluster_section(md, body):
    """Replace the "### Latest cluster run" part of the cluster section
    (created at the end of the file if missing); the rest of the section
    (method, analysis) is kept."""
    put_subsection(md, CLUSTER_SECTION, CLUSTER_SUB, "cluster", body)


def put_subsection(md, section, subsection, suite, body):
    """Replace the `subsection` part of `section` (both created at the end
    of the file if missing); the rest of the section is kept."""
    sub = subsection + "\n\n" + body + "\n"
    old = open(md).read() if os.path.exists(md) else "# Benchmarks\n"
    ls = old.split("\n")
    start = next((k for k, l in enumerate(ls) if l.strip() == section), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + section + "\n\n" + \
            "Measured by `SUITES=%s bench/compare.sh` (bench/README.md); the part below is rewritten by every run.\n\n" % suite + sub
    else:
        end = next((k for k in range(start + 1, len(ls)) if re.match(r"^#{1,2} ", ls[k])), len(ls))
        s = next((k for k in range(start + 1, end) if ls[k].strip() == subsection), None)
        if s is None:
            head, tail = ls[:end], ls[end:]
            while head and not head[-1].strip():
                head.pop()
            new = "\n".join(head) + "\n\n" + sub + ("\n" + "\n".join(tail) if tail else "")
        else:
            e = next((k for k in range(s + 1, end) if re.match(r"^#{1,3} ", ls[k])), end)
            tail = ls[e:]
            new = "\n".join(ls[:s]) + "\n" + sub + ("\n" + "\n".join(tail) if tail else "")
    with open(md, "w") as f:
        f.write(new)
    print("wrote section \"%s\" / \"%s\" of %s" % (section[3:], subsection[4:], md))


# ---------------------------------------------------------------- acks
ACKS_SECTION = "## Acknowledgements (issue 19)"
ACKS_SUB = "### Latest ack run"


def acks_report(out, m):
    """The acks suite's table: fan-out with every subscriber acking every K
    deliveries against the same fan-out without acks, per engine; the goal
    of issue 19 (memory engine: at most 10 % more server CPU per delivery)."""
    rows = load(os.path.join(out, "acks", "results.tsv"))
    if not rows:
        return None
    K = m.get("ack_every", "10")
    an = m.get("an", "a5k")
    fb = m.get("fan_big", "5000")
    win = m.get("acks_window", "256")
    for r in rows:
        d = num(r.get("deliveries_per_s"))
        a, b, red = num(r.get("cpu_pub_node")), num(r.get("cpu_sub_node")), num(r.get("cpu_redis"))
        if d and b is not None:
            r["sub_ns"] = b / 100.0 * 1e9 / d
            if r.get("engine") == "redis":
                if a is not None and red is not None:
                    r["all_ns"] = (a + b + red) / 100.0 * 1e9 / d
                    r["redis_ns"] = red / 100.0 * 1e9 / d
            else:
                r["all_ns"] = r["sub_ns"]
        recv, cmds, rts = num(r.get("acks_received")), num(r.get("sub_engine_cmds")), num(r.get("sub_engine_rts"))
        if recv:
            if cmds is not None:
                r["writes_per_ack"] = cmds / recv
            if rts:
                r["acks_per_rt"] = recv / rts
    ok = lambda r: r.get("ok") == "1"
    pick = lambda eng, scen, k: [r for r in rows if r.get("engine") == eng and r.get("scen") == scen and r.get("ack_every") == k]

    def c(key, eng, scen, k, fmt=human):
        rs = pick(eng, scen, k)
        return Cell([num(r.get(key)) for r in rs if ok(r)], len(rs), fmt)

    def pairs(key, eng, scen, f):
        """f(with-acks row, no-acks row) over the rounds where both passed."""
        out_ = []
        for r1 in pick(eng, scen, K):
            r0 = [r for r in pick(eng, scen, "0") if r.get("round") == r1.get("round")]
            if r0 and ok(r1) and ok(r0[0]):
                v = f(r1, r0[0])
                if v is not None:
                    out_.append(v)
        return out_

    def ratio_of(key):
        def f(r1, r0):
            x, y = num(r1.get(key)), num(r0.get(key))
            return x / y if x is not None and y else None
        return f

    def extra_per_ack(key):
        # (ns per delivery with acks - without) x deliveries per ack, in µs
        def f(r1, r0):
            x, y = num(r1.get(key)), num(r0.get(key))
            d, acks = num(r1.get("deliveries_per_s")), num(r1.get("sub_acks_per_s"))
            if x is None or y is None or not d or not acks:
                return None
            return (x - y) * d / acks / 1000.0
        return f

    us = lambda x: "%.0f" % x if x >= 100 else "%.1f" % x
    pct = lambda x: "%.0f %%" % x
    f1 = lambda x: "%.1f" % x
    rx = lambda x: "%.2f×" % x
    engines = [e for e in ("memory", "redis") if any(r.get("engine") == e for r in rows)]
    scens = [s_ for s_ in m.get("acks_scen", "a100 %s" % an).split() if any(r.get("scen") == s_ for r in rows)]
    lines = ["| scenario | engine | metric | no acks | acks every %s | with ÷ without (per round) | goal | met? |" % K,
             "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for scen in scens:
        subs = "100" if scen == "a100" else fb
        L = "%s: %s subs, 1 publisher, W %s" % (scen, subs, win)
        for eng in engines:
            if not pick(eng, scen, "0") and not pick(eng, scen, K):
                continue
            where = "one node" if eng == "memory" else "node B"

            def row(metric, key, fmt=human, cmp=True, goal="", judge=None, only_acks=False):
                a0 = c(key, eng, scen, "0", fmt)
                a1 = c(key, eng, scen, K, fmt)
                rs = pairs(key, eng, scen, ratio_of(key)) if cmp else []
                rt = Cell(rs, len(rs), rx).text() if rs else ""
                met = ""
                if judge is not None and rs:
                    med = statistics.median(rs)
                    met = "**yes**" if judge(med) else "**no**"
                    verdicts.append("%s %s: %s (%.2f×)" % (scen, eng, met.strip("*"), med))
                lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    L, eng, metric, "—" if only_acks else a0.text(), a1.text(), rt, goal, met))

            row("deliveries/s ↑", "deliveries_per_s")
            row("fan-out node (%s) CPU %%" % where, "cpu_sub_node", pct)
            if eng == "memory":
                row("server CPU ns per delivery ↓", "sub_ns", f1, goal="≤ 1.10×", judge=lambda v: v <= 1.10)
            else:
                row("node B CPU ns per delivery ↓", "sub_ns", f1)
                row("node A CPU %", "cpu_pub_node", pct)
                row("Redis CPU %", "cpu_redis", pct)
                row("Redis CPU ns per delivery ↓", "redis_ns", f1)
                row("all servers (A + B + Redis) CPU ns per delivery ↓", "all_ns", f1)
            row("generator CPU %", "client_cpu", pct)
            row("acks the hub received per second", "sub_acks_per_s", human, cmp=False, only_acks=True)
            ex = pairs("sub_ns", eng, scen, extra_per_ack("sub_ns"))
            lines.append("| %s | %s | %s | — | %s | | | |" % (
                L, eng, "extra %s CPU per ack, µs (Δ ns per delivery × deliveries per ack)" % ("server" if eng == "memory" else "node B"),
                Cell(ex, len(ex), us).text() if ex else "n/a"))
            if eng == "redis":
                ex = pairs("all_ns", eng, scen, extra_per_ack("all_ns"))
                lines.append("| %s | %s | %s | — | %s | | | |" % (
                    L, eng, "extra CPU of all servers per ack, µs", Cell(ex, len(ex), us).text() if ex else "n/a"))
                row("Redis writes per ack (node B's engine commands ÷ acks received)", "writes_per_ack", lambda x: "%.3f" % x,
                    cmp=False, only_acks=True)
                row("acks per Redis round trip of node B", "acks_per_rt", human, cmp=False, only_acks=True)
    table = "\n".join(lines)
    bad, odd = [], []
    for r in rows:
        if not ok(r):
            bad.append("round %s %s %s acks every %s (gaps=%s missing=%s verify_errors=%s)" % (
                r["round"], r["engine"], r["scen"], r.get("ack_every"), r.get("gaps") or "?", r.get("missing") or "?",
                r.get("verify_errors") or "?"))
        sent, recv = num(r.get("sub_acks")), num(r.get("acks_received"))
        if sent is not None and recv is not None and sent != recv:
            odd.append("round %s %s %s acks every %s: the generator sent %d acks, the hub counted %d" % (
                r["round"], r["engine"], r["scen"], r.get("ack_every"), sent, recv))
    rep = []
    mode = m.get("mode", "?")
    rep.append("Run %s, `SUITES=acks bench/compare.sh%s` (%s mode): %s round(s), %s s measured per run after %s s warm-up; "
               "per round and engine one start of the servers (memory: one node; Redis: Redis %s with AOF everysec and "
               "nodes A and B), then per scenario the runs without acks and with acks every %s in alternating order; "
               "servers on CPU 0, the load generator on CPU 1; anonymous users (one per connection), fresh topic per run, "
               "1 publisher (on node A; never subscribes), 64 B payloads, window %s. Wall time %s s." % (
                   m.get("date", "?"), " --quick" if mode == "quick" else "", mode, m.get("rounds", "?"), m.get("dur", "?"),
                   m.get("warmup", "?"), m.get("redis_version", "?"), K, win, m.get("elapsed_s", "?")))
    try:
        busy = float(m.get("loadavg_before", "0").split()[0])
    except ValueError:
        busy = 0.0
    if busy > 0.5:
        rep.append("")
        rep.append("**WARNING: the machine was not idle when the run started (1-min load average %.2f): other work "
                   "competes for the two CPUs, so the figures are unreliable.**" % busy)
    if mode == "quick":
        rep.append("")
        rep.append("**Quick mode: short runs%s — indicative only.**" % (
            "" if fb == "5000" else ", %s instead of 5,000 subscribers in %s" % (fb, an)))
    rep.append("")
    rep.append("Machine: %s%s, %s CPUs, %s; wsmio commit %s; load average before/after: %s / %s." % (
        m.get("cpu", "?"), (" (%s guest)" % m["hypervisor"]) if m.get("hypervisor") else "", m.get("nproc", "?"),
        m.get("kernel", "?"), m.get("git", "?"), m.get("loadavg_before", "?"), m.get("loadavg_after", "?")))
    rep.append("")
    rep.append("Median over rounds [min–max] of the runs that passed verification (every subscriber got every publish "
               "once, in order, topic seqs consecutive; no `error` reply to any ack). CPU ns per delivery = the process's "
               "CPU share over the measured window ÷ deliveries per second. \"with ÷ without\" is the median [min–max] of "
               "the ratio within each round (same server processes). \"met?\" judges issue 19's goal for the memory "
               "engine: at most 10 % more server CPU per delivery with acks.")
    rep.append("")
    rep.append(table)
    rep.append("")
    if verdicts:
        rep.append("Goal (memory engine, ≤ 1.10×): %s." % "; ".join(verdicts))
        rep.append("")
    if bad:
        rep.append("Runs that failed verification or did not complete (left out of the medians):")
        rep.extend("- %s" % b for b in bad)
        rep.append("")
    if odd:
        rep.append("Noted:")
        rep.extend("- %s" % o for o in odd)
        rep.append("")
    rep.append("Raw results: `%s/acks/` (results.tsv; node B's or the memory node's /metrics before and after "
               "every run), server logs in `$OUT`." % shown(out))
    return "\n".join(rep)


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        sys.exit(2)
    out = args[0]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    md = os.path.join(root, "BENCHMARKS.md")
    i = 1
    while i < len(args):
        if args[i] == "--root":
            root = args[i + 1]
            i += 2
        elif args[i] == "--md":
            md = args[i + 1]
            i += 2
        else:
            print("unknown argument %s" % args[i], file=sys.stderr)
            sys.exit(2)
    m = {}
    if os.path.exists(os.path.join(out, "machine.txt")):
        for line in open(os.path.join(out, "machine.txt")):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                m[k] = v
    N = names(root, m)
    nm = lambda s: N.get(s, s)
    echo = load(os.path.join(out, "echo", "results.tsv"))
    # Server CPU per message: its CPU share over the measured window divided
    # by the messages echoed in it (the issue asks for it next to a1).
    # The same for its user time alone (its own code, no system calls), and
    # the host's TCP segments per echoed message and pure-ACK share (what the
    # kernel does; see "scaling" below).
    for r in echo:
        cpu, rate = num(r.get("server_cpu")), num(r.get("msgs_per_s"))
        if cpu is not None and rate:
            r["server_ns_per_msg"] = "%.1f" % (cpu / 100.0 * 1e9 / rate)
        user = num(r.get("server_user"))
        if user is not None and rate:
            r["server_user_ns_per_msg"] = "%.1f" % (user / 100.0 * 1e9 / rate)
        segs, data = num(r.get("tcp_segs")), num(r.get("tcp_data_segs"))
        if segs and rate:
            r["segs_per_msg"] = "%.3f" % (segs / rate)
            if data is not None:
                r["pure_ack_share"] = "%.3f" % (max(segs - data, 0) / segs)
    churn = load(os.path.join(out, "echo", "churn.tsv"))
    rss = load(os.path.join(out, "echo", "rss.tsv"))
    fan = load(os.path.join(out, "fanout", "results.tsv"))
    en, sn = m.get("en", "e10k"), m.get("sn", "s5k")
    sc = m.get("scale_conns", "10000")
    fb = m.get("fan_big", "5000")

    # (scenario label, metric label, rows, key, scen filter, list of wsmio servers, list of peers)
    echo_srv = servers_in(echo + churn + rss)
    echo_peers = [s for s in echo_srv if not s.startswith("wsmio")]
    fan_srv = servers_in(fan)
    fan_w = [s for s in ["wsmio-bcast", "wsmio-hub"] if s in fan_srv]
    fan_peers = [s for s in fan_srv if not s.startswith("wsmio")]
    specs = [
        ("a1: 100 conns × 20 B text, depth 32", "msg/s ↑", echo, "msgs_per_s", "a1"),
        ("a1: 100 conns × 20 B text, depth 32", "server CPU ns/msg ↓", echo, "server_ns_per_msg", "a1"),
        ("c: 100 conns × 16 KiB binary, depth 4", "MB/s ↑", echo, "MB_per_s", "c"),
        ("bs: 1 conn, depth 1, busy-poll client", "p50 µs ↓", echo, "p50_us", "bs"),
        ("bs: 1 conn, depth 1, busy-poll client", "p99 µs ↓", echo, "p99_us", "bs"),
        ("e100: 100 conns × 20 B, depth 4", "msg/s ↑", echo, "msgs_per_s", "e100"),
        ("e100: 100 conns × 20 B, depth 4", "server CPU ns/msg ↓", echo, "server_ns_per_msg", "e100"),
        ("e100: 100 conns × 20 B, depth 4", "server user-space ns/msg ↓", echo, "server_user_ns_per_msg", "e100"),
        ("%s: %s conns × 20 B, depth 4" % (en, sc), "msg/s ↑", echo, "msgs_per_s", en),
        ("%s: %s conns × 20 B, depth 4" % (en, sc), "server CPU ns/msg ↓", echo, "server_ns_per_msg", en),
        ("%s: %s conns × 20 B, depth 4" % (en, sc), "server user-space ns/msg ↓", echo, "server_user_ns_per_msg", en),
        ("churn: connect+upgrade+close, 16 in flight", "cycles/s ↑", churn, "cycles_per_s", None),
        ("idle RSS: %s conns" % m.get("rss_conns", "10000"), "KiB/conn ↓", rss, "kb_per_conn", None),
        ("s100: fan-out 100 subs, 64 B, W 64", "deliveries/s ↑", fan, "deliveries_per_s", "s100"),
        ("s100: fan-out 100 subs, 64 B, W 64", "p99 µs ↓", fan, "p99_us", "s100"),
        ("%s: fan-out %s subs, 64 B, W 64" % (sn, fb), "deliveries/s ↑", fan, "deliveries_per_s", sn),
        ("%s: fan-out %s subs, 64 B, W 64" % (sn, fb), "p99 µs ↓", fan, "p99_us", sn),
    ]
    lines = []
    lines.append("| scenario | metric | wsmio | wsmio result | peer | peer result | wsmio/peer |")
    lines.append("|---|---|---|---|---|---|---|")
    nrows = 0
    for label, metric, rows, key, scen in specs:
        if not rows or (scen is not None and not any(r.get("scen") == scen for r in rows)):
            continue
        if rows is fan:
            ws, peers = fan_w, fan_peers
        else:
            ws, peers = ["wsmio"], echo_peers
        for w in ws:
            a = cell(rows, key, w, scen, metric)
            for p in peers:
                b = cell(rows, key, p, scen, metric)
                if a.total == 0 and b.total == 0:
                    continue
                lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (label, metric, nm(w), a.text(), nm(p), b.text(), ratio(a, b)))
                nrows += 1
    # scaling: throughput kept going from 100 to SCALE_CONNS connections
    if any(r.get("scen") == en for r in echo):
        for w in ["wsmio"]:
            def keep(s):
                x, y = cell(echo, "msgs_per_s", s, en).med, cell(echo, "msgs_per_s", s, "e100").med
                return None if x is None or not y else x / y
            kw = keep(w)
            for p in echo_peers:
                kp = keep(p)
                lines.append("| scaling: %s ÷ e100 | throughput kept ↑ | %s | %s | %s | %s | %s |" % (
                    en, nm(w), "%.2f" % kw if kw is not None else "n/a", nm(p),
                    "%.2f" % kp if kp is not None else "n/a",
                    fmt_ratio(kw / kp) if kw is not None and kp else "n/a"))
                nrows += 1
    table = "\n".join(lines)
    scaling = scaling_table(echo, echo_srv, en, nm)

    skipped = [l.strip() for l in open(os.path.join(out, "skipped.txt"))] if os.path.exists(os.path.join(out, "skipped.txt")) else []
    notes = [l.strip() for l in open(os.path.join(out, "notes.txt"))] if os.path.exists(os.path.join(out, "notes.txt")) else []
    skipped = [s for s in skipped if s]
    notes = [s for s in notes if s]
    bad = []
    for r in echo:
        if r.get("ok") != "1":
            bad.append("echo round %s %s %s" % (r["round"], r["peer"], r["scen"]))
    for r in churn:
        if r.get("ok") != "1":
            bad.append("churn round %s %s (errors=%s)" % (r["round"], r["peer"], r.get("errors") or "?"))
    for r in rss:
        if r.get("ok") != "1":
            bad.append("idle RSS round %s %s (open %s)" % (r.get("round"), r["peer"], r.get("conns_open")))
    for r in fan:
        if r.get("ok") != "1":
            bad.append("fan-out round %s %s %s (gaps=%s missing=%s verify_errors=%s)" % (
                r["round"], r["peer"], r["scen"], r.get("gaps") or "?", r.get("missing") or "?", r.get("verify_errors") or "?"))
    fds = []
    for s in servers_in(churn):
        ends = [(r.get("server_fds_start"), r.get("server_fds_end")) for r in churn if r["peer"] == s]
        fds.append("%s %s" % (nm(s), ", ".join("%s→%s" % e for e in ends)))

    mode = m.get("mode", "?")
    rep = []
    rep.append("Run %s, `bench/compare.sh%s`, %s mode: %s round(s), %s s measured per run after %s s warm-up; server on CPU 0, load generator on CPU 1 (taskset). Wall time %s s." % (
        m.get("date", "?"), " --quick" if mode == "quick" else "", mode, m.get("rounds", "?"), m.get("dur", "?"),
        m.get("warmup", "?"), m.get("elapsed_s", "?")))
    try:
        busy = float(m.get("loadavg_before", "0").split()[0])
    except ValueError:
        busy = 0.0
    if busy > 0.5:
        rep.append("")
        rep.append("**WARNING: the machine was not idle when the run started (1-min load average %.2f): other work "
                   "competes for the two CPUs, so the figures are unreliable.**" % busy)
    if mode == "quick":
        rep.append("")
        rep.append("**Quick mode: short runs with fewer connections — indicative only, not for publishing.**")
    rep.append("")
    rep.append("Machine: %s%s, %s CPUs (nproc), %s, %s; wsmio commit %s; load average before/after: %s / %s." % (
        m.get("cpu", "?"), (" (%s guest)" % m["hypervisor"]) if m.get("hypervisor") else "", m.get("nproc", "?"),
        m.get("kernel", "?"), m.get("rustc", "?"), m.get("git", "?"), m.get("loadavg_before", "?"), m.get("loadavg_after", "?")))
    rep.append("")
    rep.append("Median over rounds [min–max]; only runs that passed verification count (\"k/n ok\" otherwise). "
               "wsmio/peer = ratio of the medians: above 1 means wsmio's figure is higher, which is better for ↑ metrics and worse for ↓ ones.")
    rep.append("")
    for n in notes:
        rep.append("- NOTE: %s" % n)
    for s in skipped:
        rep.append("- %s" % s)
    if notes or skipped:
        rep.append("")
    rep.append(table if nrows else "(no results)")
    rep.append("")
    if scaling:
        rep.append(scaling)
        rep.append("")
    fpath = os.path.join(out, "failures.txt")
    why = [l.strip() for l in open(fpath)] if os.path.exists(fpath) else []
    why = [w for w in why if w]
    if bad:
        rep.append("Runs that failed verification, lost connections or did not complete (%d):" % len(bad))
        for b in bad:
            rep.append("- %s" % b)
        rep.append("")
    if why:
        rep.append("First error reported by the load generator for each failed run:")
        for w in why:
            rep.append("- %s" % w.replace("|", "\\|"))
        rep.append("")
    if fds:
        rep.append("Server open file descriptors before → after each churn run (a growing count is a leak): %s." % "; ".join(fds))
        rep.append("")
    rep.append("Raw results: `%s` (echo/results.tsv, echo/churn.tsv, echo/rss.tsv, fanout/results.tsv, raw.txt, server logs)." % shown(out))
    body = "\n".join(rep)

    # details in the reference harness' format (CPU %, p99.9, ns/delivery, ...)
    det = []
    for f, title in (("details-echo.md", "Echo details (reference summarize.py)"),
                     ("details-fanout.md", "Fan-out details (reference summarize_fanout.py)")):
        p = os.path.join(out, f)
        if os.path.exists(p):
            txt = open(p).read().strip()
            txt = re.sub(r"(?m)^# .*\n?", "", txt)  # meta lines (shown above already)
            txt = re.sub(r"(?m)^#{2,3} ", "#### ", txt)  # never end our section early
            det.append("<details><summary>%s</summary>\n\n%s\n\n</details>" % (title, txt))

    suites = m.get("suites", "echo rss fanout").split()
    classic = any(x in suites for x in ("echo", "rss", "fanout")) or not suites
    cl = cluster_report(out, m) if "cluster" in suites else None
    ak = acks_report(out, m) if "acks" in suites else None
    if classic:
        print()
        print("=" * 78)
        print(body)
        print("=" * 78)
    if cl:
        print()
        print("=" * 78)
        print(cl)
        print("=" * 78)
        if md and md != "none":
            put_cluster_section(md, cl)
    if ak:
        print()
        print("=" * 78)
        print(ak)
        print("=" * 78)
        if md and md != "none":
            put_subsection(md, ACKS_SECTION, ACKS_SUB, "acks", ak)

    if md and md != "none" and classic:
        section = SECTION + "\n\n" + body + "\n\n" + "\n\n".join(det) + "\n"
        if os.path.exists(md):
            old = open(md).read()
            lines_ = old.split("\n")
            start = next((k for k, l in enumerate(lines_) if l.strip() == SECTION), None)
            if start is None:
                new = old.rstrip("\n") + "\n\n" + section
            else:
                end = next((k for k in range(start + 1, len(lines_)) if re.match(r"^#{1,2} ", lines_[k])), len(lines_))
                rest = "\n".join(lines_[end:])
                new = "\n".join(lines_[:start]) + ("\n" if start else "") + section + ("\n" + rest if rest.strip() else "")
        else:
            new = ("# Benchmarks\n\nwsmio side by side with other WebSocket servers on the same machine, measured by "
                   "`bench/compare.sh` (how to run it and what each scenario means: `bench/README.md`). "
                   "The section below is rewritten by every run.\n\n" + section)
        with open(md, "w") as f:
            f.write(new)
        print("wrote section \"%s\" of %s" % (SECTION[3:], md))


if __name__ == "__main__":
    main()
