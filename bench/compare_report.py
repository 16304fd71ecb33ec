#!/usr/bin/env python3
"""Comparison report for bench/compare.sh (python3 standard library only).

usage: compare_report.py OUT_DIR [--root REPO] [--md BENCHMARKS.md|none]

Reads OUT_DIR/{machine.txt, skipped.txt, notes.txt, echo/results.tsv, echo/churn.tsv,
echo/rss.tsv, fanout/results.tsv, details-*.md}, prints the wsmio-vs-peer table
(median over rounds, [min-max], ratio wsmio/peer of the medians) and replaces the
"## Latest run" section of the markdown file with it (the file is created if missing).
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
    rep.append("Raw results: `%s` (echo/results.tsv, echo/churn.tsv, echo/rss.tsv, fanout/results.tsv, raw.txt, server logs)." % out)
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

    print()
    print("=" * 78)
    print(body)
    print("=" * 78)

    if md and md != "none":
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
