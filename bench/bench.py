#!/usr/bin/python3
"""bench: direct-to-provider against through-sealpost, measured side by side
in one run on loopback (IMAP bulk FETCH, IMAP round trips, SMTP load), and
sealpost's outbound encryption and inbound decryption against raw GPGME.

Run through bench/run, which builds the optimised binaries first. Every path
is measured several times, interleaved (A B C A B C ...), and the medians are
compared, because the machine is shared and noisy. docs/performance.md
explains the set-up and records the figures."""
import argparse
import ctypes
import datetime
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
harness = None  # tests/integration/harness.py, imported once SEALPOST_BIN is set

USER = "alice@example.test"
RCPT = "bob@example.test"
N_MESSAGES = 1000
MESSAGE_SIZE = 20 * 1024
SMTP_SESSIONS = 10
GPGME_THREADS = 2

TARGET_BULK = 0.95
TARGET_RTT_US = 30.0
TARGET_SMTP = 0.9
TARGET_OUTBOUND = 0.9
TARGET_GATEWAY = 0.9

GATEWAY_MESSAGES = 10000
GATEWAY_SESSIONS = 20
GATEWAY_SENDER = "alice@org.test"
GATEWAY_RCPT = "bob@partner.example"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    """Replaced by the harness's port picker (below the ephemeral range)
    once it is imported."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing accepts on 127.0.0.1:{port}")
            time.sleep(0.05)


def stop_pid(proc, timeout=5.0):
    """Stops a child we started, by its PID: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- IMAP

class Imap:
    """Just enough IMAP in Python to log in once (which creates the
    Maildir); the measurements use bench/imap_client.c."""

    def __init__(self, port, cafile):
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        ctx = ssl.create_default_context(cafile=cafile)
        self.f = ctx.wrap_socket(raw, server_hostname="localhost").makefile("rwb")
        self.f.readline()

    def command(self, tag, line):
        self.f.write(b"%s %s\r\n" % (tag, line))
        self.f.flush()
        while True:
            reply = self.f.readline()
            if not reply:
                raise ConnectionError("the server closed the connection")
            if reply.startswith(tag + b" "):
                if not reply.startswith(tag + b" OK"):
                    raise RuntimeError("%r failed: %r" % (line, reply))
                return

    def login_select_logout(self, user, password):
        self.command(b"a", b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
        self.command(b"b", b"SELECT INBOX")
        self.command(b"c", b"LOGOUT")
        self.f.close()


class ImapClient:
    """bench/imap_client.c, logged in and INBOX selected, driven over its
    stdin: one connection per path, kept for the whole run."""

    def __init__(self, binary, port, user, password, cafile=None):
        argv = [binary, "--port", str(port), "--user", user, "--password", password]
        if cafile is not None:
            argv += ["--tls", "--cafile", cafile]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self._expect("ready")

    def _expect(self, what=None):
        line = self.proc.stdout.readline()
        if not line or (what is not None and line.strip() != what):
            stop_pid(self.proc)
            raise RuntimeError(f"imap_client failed (exit {self.proc.returncode})")
        return line.split()

    def _ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._expect()

    def bulk_fetch(self):
        """(seconds, bytes) of UID FETCH 1:* (BODY.PEEK[])."""
        seconds, size, fetches = self._ask("bulk")
        if int(fetches) != N_MESSAGES or int(size) < N_MESSAGES * MESSAGE_SIZE:
            raise RuntimeError(f"bulk fetch returned {fetches} messages, {size} bytes")
        return float(seconds), int(size)

    def round_trips(self, n):
        """Seconds for UID FETCH 1..n (FLAGS), one at a time."""
        return float(self._ask(f"rtt {n}")[0])

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_pid(self.proc)


def make_message(i):
    """One 20 KiB message with LF line endings, as a delivery agent stores
    it in a Maildir; no body line can be mistaken for a tagged reply."""
    head = (f"From: Bob <{RCPT}>\nTo: Alice <{USER}>\n"
            f"Subject: benchmark message {i}\n"
            f"Message-ID: <bench-{i}@example.test>\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n")
    body = []
    size = len(head)
    line = 0
    while size < MESSAGE_SIZE:
        n = min(77, MESSAGE_SIZE - size)
        text = "".join(chr(ord("a") + (line + k) % 26) for k in range(n - 1))
        body.append(text + "\n")
        size += n
        line += 1
    return (head + "".join(body)).encode()


def populate(provider, user, password):
    """Writes the messages straight into the user's Maildir new/ (Dovecot
    indexes them at the first SELECT). A first login creates the Maildir."""
    Imap(provider.imaps_port, provider.ca_cert).login_select_logout(user, password)
    maildir = provider.maildir(user)
    new = os.path.join(maildir, "new")
    st = os.stat(maildir)
    stamp = int(time.time())
    for i in range(N_MESSAGES):
        name = f"{stamp}.M{i:06d}P{os.getpid()}.bench"
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(make_message(i))
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(new, name))


# ---------------------------------------------------------------- SMTP

class SmtpSink:
    """Postfix's smtp-sink: accepts every message and throws it away."""

    def __init__(self):
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        # Its one output goes nowhere: -c counters would flood the terminal.
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", f"127.0.0.1:{self.port}", "1000"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def __exit__(self, *exc):
        stop_pid(self.proc)


class Relay:
    """bench/relay.c: a bare TCP byte relay, the reference for what any
    extra hop costs on this machine."""

    def __init__(self, binary, target_port):
        self.binary = binary
        self.target_port = target_port
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen([self.binary, str(self.port), str(self.target_port)],
                                     stdin=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def __exit__(self, *exc):
        stop_pid(self.proc)


def run_smtp_load(binary, port, extra):
    out = subprocess.run([binary, "--port", str(port),
                          "--sessions", str(SMTP_SESSIONS),
                          "--messages", str(N_MESSAGES),
                          "--size", str(MESSAGE_SIZE)] + extra,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError("smtp_load failed: " + out.stderr.strip())
    fields = dict(kv.split("=") for kv in out.stdout.split())
    return float(fields["msgs_per_s"])


def run_smtp_source(port):
    t0 = time.perf_counter()
    subprocess.run(["smtp-source", "-l", str(MESSAGE_SIZE), "-m", str(N_MESSAGES),
                    "-s", str(SMTP_SESSIONS), "-f", USER, "-t", RCPT,
                    f"127.0.0.1:{port}"], check=True, timeout=300,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return N_MESSAGES / (time.perf_counter() - t0)


# ---------------------------------------------------------------- driver

def cpu_seconds(pid, reaped=False):
    """User + system CPU time a process has used so far (with reaped=True
    also that of its children it has waited for); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


PR_SET_CHILD_SUBREAPER = 36


def set_subreaper(on):
    """GPGME starts gpg through a double fork, so gpg ends up a child of
    init and its CPU time would be counted nowhere. As a subreaper, this
    process inherits those orphans instead and can read their CPU time
    when it waits for them (reap_gpg)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_gpg():
    """Waits for every gpg process that has ended as this process's orphan
    and returns their CPU time (user + system). Nothing else is reaped: the
    other children belong to subprocess and the harness."""
    me = os.getpid()
    total = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        comm = data[data.find("(") + 1:data.rfind(")")]
        fields = data[data.rfind(")") + 1:].split()
        if comm != "gpg" or fields[0] != "Z" or int(fields[1]) != me:
            continue
        try:
            _, _, usage = os.wait4(int(name), 0)
        except ChildProcessError:
            continue
        total += usage.ru_utime + usage.ru_stime
    return total


def cpu_idle_fraction(seconds):
    """Share of all CPUs' time that was idle over the next seconds."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(timeout):
    """Waits up to timeout seconds for a machine at least 85 % idle over 3 s
    (other work on a shared machine swamps the differences measured here)."""
    deadline = time.monotonic() + timeout
    while True:
        idle = cpu_idle_fraction(3.0)
        if idle >= 0.85:
            return idle
        if time.monotonic() > deadline:
            log(f"the machine is still busy ({idle:.0%} idle); measuring anyway")
            return idle
        log(f"waiting for a quiet machine ({idle:.0%} idle)")


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Case:
    """One path: a name, the function measuring it once, what it goes
    through ("sealpost", "relay" for the bare reference relay, or None) and
    that process's PID, and the PID of a long-lived client (None: clients
    are children started per measurement). CPU time is charged per path to
    the proxy, the client and the provider; with proxy_children the proxy
    is also charged for the children it has reaped (the intermediate
    processes through which GPGME starts gpg; gpg itself is counted apart,
    see set_subreaper)."""

    def __init__(self, name, fn, via=None, pid=None, client_pid=None,
                 proxy_children=False):
        self.name, self.fn, self.via, self.pid = name, fn, via, pid
        self.client_pid = client_pid
        self.proxy_children = proxy_children
        self.values = []
        self.cpu = {"provider": 0.0, "proxy": 0.0, "client": 0.0, "gpg": 0.0}

    def median(self):
        return statistics.median(self.values)

    def cpu_per_run(self, who):
        return self.cpu[who] / len(self.values)


def cpu_snapshot(case, provider_pids):
    def provider():
        # Daemons that exit are counted through their parent's "reaped"
        # time, so the sum over the tree stays whole.
        return sum(cpu_seconds(pid, reaped=True) for pid in provider_pids())
    if case.client_pid:
        client = cpu_seconds(case.client_pid)
    else:
        t = os.times()
        client = t.children_user + t.children_system
    proxy = cpu_seconds(case.pid, reaped=case.proxy_children) if case.pid else 0.0
    return {"provider": provider(), "proxy": proxy, "client": client}


def interleaved(rounds, cases, provider_pids, gpg=False):
    """Runs every case once per round, in turn (A B C A B C ...), so slow
    phases of a shared machine hit all paths alike. With gpg, the gpg
    processes this process inherited (set_subreaper) are reaped after each
    measurement and their CPU time is charged to it."""
    for _ in range(rounds):
        for c in cases:
            before = cpu_snapshot(c, provider_pids)
            c.values.append(c.fn())
            after = cpu_snapshot(c, provider_pids)
            for who in after:
                c.cpu[who] += after[who] - before[who]
            if gpg:
                c.cpu["gpg"] += reap_gpg()
    return {c.name: c for c in cases}


def provider_pids(p, extra=()):
    """PIDs of every process of the provider (Postfix, Dovecot), plus extra."""
    return list(harness.process_tree(p.master_pids())) + list(extra)


def paired(base, case, fn):
    """Median over rounds of fn(base value, case value) of the same round."""
    return statistics.median(fn(b, v) for b, v in zip(base.values, case.values))


def verdict(ok):
    return "ok" if ok else "MISSED"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sealpost", required=True)
    ap.add_argument("--smtp-load", required=True)
    ap.add_argument("--relay", required=True)
    ap.add_argument("--imap-client", required=True)
    ap.add_argument("--gpgme-encrypt", required=True)
    ap.add_argument("--gpgme-decrypt",
                    help="bench/gpgme_decrypt (built by bench/run): the raw-GPGME "
                    "reference of the inbound part")
    ap.add_argument("--rounds", type=int, default=11,
                    help="measurements of each path (default 11)")
    ap.add_argument("--json", help="also write every sample to this file")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a target is missed")
    ap.add_argument("--only", choices=("imap", "smtp", "outbound", "gateway", "inbound"))
    ap.add_argument("--gateway-messages", type=int, default=GATEWAY_MESSAGES, metavar="N",
                    help=f"messages per gateway measurement (default {GATEWAY_MESSAGES})")
    ap.add_argument("--gateway-rounds", type=int, default=3, metavar="N",
                    help="measurements of each gateway path (default 3)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to SECONDS for the CPUs to be 85 %% idle")
    args = ap.parse_args()
    if args.only in (None, "inbound") and not args.gpgme_decrypt:
        ap.error("the inbound part needs --gpgme-decrypt")

    os.environ["SEALPOST_BIN"] = os.path.abspath(args.sealpost)
    os.environ.setdefault("SEALPOST_SOURCE_DIR", ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
    global harness, free_port
    import harness  # noqa: E402  (reads SEALPOST_BIN)
    free_port = harness.free_port

    smtp_load = os.path.abspath(args.smtp_load)
    report = {"rows": [], "missed": [], "samples": {}}
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = loadavg()
    with SmtpSink() as sink:
        # The provider's submission service (STARTTLS required, SASL)
        # hands every transaction in real time to smtp-sink through
        # smtpd_proxy_filter: nothing is queued to disk, and the sink's
        # reply to the end of DATA is what the client gets. No raw IMAP
        # log: it would write every fetched byte to disk.
        provider_args = {
            "rawlog": False,
            "postfix_params": {
                "smtpd_proxy_filter": f"127.0.0.1:{sink.port}",
                "smtpd_proxy_timeout": "60s",
            },
        }
        with harness.Provider(**provider_args) as p:
            # Upstream TLS the same way the direct client does it.
            account = {
                "imap_upstream": f"imaps://localhost:{p.imaps_port}",
                "smtp_upstream": f"smtp://localhost:{p.submission_port}",
            }
            # Logging as a user gets it by default (info, stderr only),
            # not the tests' debug log.
            settings = {"log_level": None, "log_file": None}
            relay = os.path.abspath(args.relay)
            with harness.Sealpost(p, account=account, global_=settings) as s, \
                    Relay(relay, p.imaps_port) as imap_relay, \
                    Relay(relay, p.submission_port) as smtp_relay:
                if args.only in (None, "imap"):
                    bench_imap(p, s, imap_relay, os.path.abspath(args.imap_client),
                               args.rounds, report)
                if args.only in (None, "smtp"):
                    bench_smtp(p, s, sink, smtp_relay, smtp_load, args.rounds, report)
            if args.only in (None, "outbound"):
                bench_outbound(p, sink, account, settings, smtp_load,
                               os.path.abspath(args.gpgme_encrypt), args.rounds, report)
        if args.only in (None, "gateway"):
            bench_gateway(sink, os.path.abspath(args.gpgme_encrypt), args.gateway_rounds,
                          args.gateway_messages, report)
    if args.only in (None, "inbound"):
        bench_inbound(os.path.abspath(args.imap_client), os.path.abspath(args.gpgme_decrypt),
                      args.rounds, report)
    load_after = loadavg()

    print()
    print(f"sealpost benchmark, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs "
          f"({platform.machine()}), {args.rounds} interleaved rounds, medians; "
          f"load average {load_before:.2f} before, {load_after:.2f} after")
    if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1):
        print("note: the machine was busy with other work; expect noise of "
              "10-30 % in single figures, compare the ratios")
    for row in report["rows"]:
        print(row)
    print()
    if report["missed"]:
        print("targets missed: " + ", ".join(report["missed"]))
    else:
        print("all targets met")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": started.isoformat(), "cpus": os.cpu_count(),
                       "rounds": args.rounds, "load_before": load_before,
                       "load_after": load_after, "samples": report["samples"],
                       "missed": report["missed"]}, f, indent=1)
    return 1 if report["missed"] and args.strict else 0


def table(report, title, cases, direct, unit, fmt_value, compare, cpu_scale,
          cpu_unit, target=None, versus="direct", gpg=False):
    """Appends one section of the result table. compare(direct, case) gives
    (text, figure) for a path against direct (named versus in the header);
    target = (row name, test on the figure, text, name of the target); gpg
    adds the column of the gpg processes' CPU time."""
    rows = report["rows"]
    rows.append("")
    rows.append(title)
    rows.append(f"  {'path':<34} {unit:>11}  {'vs ' + versus + ' (paired)':<24}"
                f" CPU {cpu_unit}: provider proxy client" + ("   gpg" if gpg else ""))
    base = cases[direct]
    for name, c in cases.items():
        line = f"  {name:<34} {fmt_value(c.median()):>11}  "
        verdict_text = ""
        if c.via:
            text, figure = compare(base, c)
            if target is not None and name == target[0]:
                ok = target[1](figure)
                verdict_text = f"  [target {target[2]}: {verdict(ok)}]"
                if not ok:
                    report["missed"].append(target[3])
            line += f"{text:<24}"
        else:
            line += " " * 24
        proxy = f"{c.cpu_per_run('proxy') * cpu_scale:5.0f}" if c.pid else "    -"
        line += (f" {c.cpu_per_run('provider') * cpu_scale:17.0f} {proxy}"
                 f" {c.cpu_per_run('client') * cpu_scale:6.0f}")
        if gpg:
            line += f" {c.cpu_per_run('gpg') * cpu_scale:5.0f}"
        line += verdict_text
        rows.append(line.rstrip())


def bench_imap(p, s, relay, imap_client, rounds, report):
    password = p.users[USER]
    log(f"populating {USER}'s INBOX with {N_MESSAGES} x {MESSAGE_SIZE} bytes")
    populate(p, USER, password)
    p.wait_for_messages(USER, N_MESSAGES, timeout=60)

    DIRECT, THROUGH = "direct, client TLS", "through, client plaintext"
    paths = [
        (DIRECT, None, None, p.imaps_port, p.ca_cert),
        (THROUGH, "sealpost", s.pid, s.imap_port, None),
        ("through, client TLS", "sealpost", s.pid, s.imaps_port, s.cert_path),
        ("bare relay, TLS through it", "relay", relay.proc.pid, relay.port, p.ca_cert),
        ("direct plaintext (reference)", None, None, p.imap_port, None),
    ]
    clients = []
    try:
        for name, via, pid, port, cafile in paths:
            clients.append(ImapClient(imap_client, port, USER, password, cafile))
        # Warm-up: Dovecot indexes the new mail and the page cache fills.
        for c in clients:
            c.bulk_fetch()
            c.round_trips(100)
        log(f"IMAP bulk FETCH, {rounds} rounds")
        bulk = interleaved(rounds, [
            Case(path[0], lambda c=c: c.bulk_fetch()[0], path[1], path[2], c.proc.pid)
            for path, c in zip(paths, clients)], lambda: provider_pids(p))
        log(f"IMAP round trips, {rounds} rounds")
        rtt = interleaved(rounds, [
            Case(path[0], lambda c=c: c.round_trips(N_MESSAGES), path[1], path[2], c.proc.pid)
            for path, c in zip(paths, clients)], lambda: provider_pids(p))
        size = clients[0].bulk_fetch()[1]
    finally:
        for c in clients:
            c.close()
    report["samples"]["imap_bulk_seconds"] = {n: c.values for n, c in bulk.items()}
    report["samples"]["imap_round_trips_seconds"] = {n: c.values for n, c in rtt.items()}

    def bulk_compare(base, c):
        ratio = base.median() / c.median()
        return f"{ratio:.2f}x ({paired(base, c, lambda b, v: b / v):.2f})", ratio
    table(report,
          f"IMAP bulk: UID FETCH 1:* (BODY.PEEK[]) of {N_MESSAGES} x "
          f"{MESSAGE_SIZE // 1024} KiB ({size / 1e6:.1f} MB on the wire); "
          "CPU in ms per fetch",
          bulk, DIRECT, "ms (MB/s)",
          lambda m: f"{m * 1e3:.1f} ({size / m / 1e6:.0f})",
          bulk_compare, 1e3, "ms",
          (THROUGH, lambda r: r >= TARGET_BULK, f">= {TARGET_BULK}x", "IMAP bulk"))

    def rtt_compare(base, c):
        added = (c.median() - base.median()) / N_MESSAGES * 1e6
        pa = paired(base, c, lambda b, v: (v - b) / N_MESSAGES * 1e6)
        return f"{added:+.1f} us ({pa:+.1f})", added
    table(report,
          f"IMAP round trips: {N_MESSAGES} sequential UID FETCH n (FLAGS), each "
          "waiting for its tagged OK; CPU in us per round trip",
          rtt, DIRECT, "us each", lambda m: f"{m / N_MESSAGES * 1e6:.0f}",
          rtt_compare, 1e6 / N_MESSAGES, "us",
          (THROUGH, lambda a: a <= TARGET_RTT_US, f"<= {TARGET_RTT_US:.0f} us",
           "IMAP round trips"))


def bench_smtp(p, s, sink, relay, smtp_load, rounds, report):
    password = p.users[USER]
    auth = ["--user", USER, "--password", password, "--from", USER, "--to", RCPT]
    DIRECT, THROUGH = "direct, client STARTTLS", "through, client plaintext"
    cases = [
        Case("smtp-source -> smtp-sink (reference)",
             lambda: run_smtp_source(sink.port)),
        Case("smtp_load -> smtp-sink (reference)",
             lambda: run_smtp_load(smtp_load, sink.port, ["--from", USER, "--to", RCPT])),
        Case(DIRECT,
             lambda: run_smtp_load(smtp_load, p.submission_port,
                                   ["--starttls", "--cafile", p.ca_cert] + auth)),
        Case(THROUGH, lambda: run_smtp_load(smtp_load, s.smtp_port, auth),
             "sealpost", s.pid),
        Case("through, client STARTTLS",
             lambda: run_smtp_load(smtp_load, s.smtp_port,
                                   ["--starttls", "--cafile", s.cert_path] + auth),
             "sealpost", s.pid),
        Case("bare relay, STARTTLS through it",
             lambda: run_smtp_load(smtp_load, relay.port,
                                   ["--starttls", "--cafile", p.ca_cert] + auth),
             "relay", relay.proc.pid),
    ]
    log("SMTP warm-up")
    for c in cases:
        c.fn()
    log(f"SMTP load, {rounds} rounds")
    # smtp-sink stands for the provider's delivery: its CPU is counted there.
    smtp = interleaved(rounds, cases, lambda: provider_pids(p, [sink.proc.pid]))
    report["samples"]["smtp_msgs_per_second"] = {n: c.values for n, c in smtp.items()}

    def compare(base, c):
        ratio = c.median() / base.median()
        return f"{ratio:.2f}x ({paired(base, c, lambda b, v: v / b):.2f})", ratio
    table(report,
          f"SMTP: {N_MESSAGES} x {MESSAGE_SIZE // 1024} KiB on {SMTP_SESSIONS} sessions, "
          "provider = Postfix smtpd (STARTTLS, SASL) -> smtp-sink; "
          "CPU in us per message",
          smtp, DIRECT, "msg/s", lambda m: f"{m:.0f}", compare,
          1e6 / N_MESSAGES, "us",
          (THROUGH, lambda r: r >= TARGET_SMTP, f">= {TARGET_SMTP}x", "SMTP"))


# ---------------------------------------------------------------- outbound

def smtp_load_message(sender, rcpt, size):
    """The bytes bench/smtp_load.c sends as every message's content (its
    build_message(), without the final dot), so the raw-GPGME side
    encrypts the message sealpost gets."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: load test message\r\n"
            "Message-ID: <load@example.test>\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            ).encode()
    total = max(size, len(head) + 8)
    out = bytearray(head)
    line = 0
    while len(out) < total:
        n = min(78, total - len(out))
        if n < 3:
            out += b"x" * (total - 2 - len(out)) + b"\r\n"
            break
        out += bytes(ord("a") + (line + i) % 26 for i in range(n - 2)) + b"\r\n"
        line += 1
    return bytes(out)


def gpgconf_kill(home):
    """Ends the gpg-agent of one GnuPG home (through its socket, the way
    the test provider does it)."""
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_outbound_keys(home, scratch):
    """Throwaway ECC keys: alice's key pair in sealpost's GnuPG home, bob's
    public key imported there (his secret key stays in a home of its own,
    as a correspondent's would). Returns {address: fingerprint}."""
    from provider import make_demo_keys  # on sys.path through the harness
    fprs = make_demo_keys(home, [USER])
    bob_home = os.path.join(scratch, "bob-gnupg")
    fprs.update(make_demo_keys(bob_home, [RCPT]))
    if set(fprs) != {USER, RCPT}:
        raise RuntimeError(f"key generation gave {fprs}")
    try:
        pub = subprocess.run(["gpg", "--homedir", bob_home, "--batch", "--export", fprs[RCPT]],
                             capture_output=True, check=True).stdout
        subprocess.run(["gpg", "--homedir", home, "--batch", "--import"], input=pub,
                       capture_output=True, check=True)
    finally:
        gpgconf_kill(bob_home)
        gpgconf_kill(home)
    return fprs


def run_gpgme_encrypt(binary, home, fprs, body_path):
    """(ops/s, mean armored bytes) of bench/gpgme_encrypt.c encrypting the
    body N_MESSAGES times on GPGME_THREADS threads."""
    argv = [binary, "--homedir", home, "--count", str(N_MESSAGES),
            "--threads", str(GPGME_THREADS)]
    for fpr in fprs:
        argv += ["--recipient", fpr]
    out = subprocess.run(argv + [body_path], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("gpgme_encrypt failed: " + out.stderr.strip())
    fields = dict(kv.split("=") for kv in out.stdout.split())
    return float(fields["ops_per_s"]), int(fields["out_bytes"])


def relayed_copies(s, what):
    """Sizes of the copies of one kind sealpost says it relayed so far."""
    return [int(m) for m in re.findall(re.escape(what) + r" copy, (\d+) bytes", s.log_text())]


def bench_outbound(p, sink, account, settings, smtp_load, gpgme_encrypt, rounds, report):
    password = p.users[USER]
    auth = ["--user", USER, "--password", password, "--from", USER, "--to", RCPT]
    scratch = tempfile.mkdtemp(prefix="spbench-")
    home = os.path.join(scratch, "gnupg")
    try:
        log("outbound: generating ECC keys (ed25519 + cv25519) for "
            f"{USER} (sender) and {RCPT} (recipient)")
        fprs = make_outbound_keys(home, scratch)
        body = smtp_load_message(USER, RCPT, MESSAGE_SIZE)
        body_path = os.path.join(scratch, "message.eml")
        with open(body_path, "wb") as f:
            f.write(body)
        # sealpost encrypts to the recipient and to the sender's own key:
        # the reference encrypts to the same two keys.
        both = [fprs[RCPT], fprs[USER]]
        raw_sizes = {}

        def raw(name, keys):
            ops, size = run_gpgme_encrypt(gpgme_encrypt, home, keys, body_path)
            raw_sizes[name] = size
            return ops

        glob = dict(settings, gnupg_home=home)
        RAW = f"raw GPGME, {GPGME_THREADS} threads, bob+alice"
        RAW_BOB = f"raw GPGME, {GPGME_THREADS} threads, bob only"
        ENC = "sealpost, encrypted to bob+alice"
        NEVER = "sealpost, policy=never (plain)"
        # policy=require: a message sealpost could not encrypt is refused,
        # and smtp_load then fails the run instead of timing plain mail.
        with harness.Sealpost(p, account=dict(account, policy="require"), global_=glob) as enc, \
                harness.Sealpost(p, account=dict(account, policy="never"), global_=glob) as never:
            cases = [
                Case(RAW, lambda: raw(RAW, both)),
                Case(ENC, lambda: run_smtp_load(smtp_load, enc.smtp_port, auth),
                     "sealpost", enc.pid, proxy_children=True),
                Case(NEVER, lambda: run_smtp_load(smtp_load, never.smtp_port, auth),
                     "sealpost", never.pid, proxy_children=True),
                Case("direct, STARTTLS, no encryption",
                     lambda: run_smtp_load(smtp_load, p.submission_port,
                                           ["--starttls", "--cafile", p.ca_cert] + auth)),
                Case(RAW_BOB, lambda: raw(RAW_BOB, [fprs[RCPT]])),
            ]
            log("outbound warm-up")
            for c in cases:
                c.fn()
            if len(relayed_copies(enc, "encrypted")) != N_MESSAGES or \
                    len(relayed_copies(never, "as written")) != N_MESSAGES:
                raise RuntimeError("sealpost did not relay every message as configured "
                                   f"(logs in {enc.dir}, {never.dir})")
            # The reference encrypts what smtp_load sends only while
            # smtp_load_message() still matches it: at least the size must.
            received = set(re.findall(r"relaying message: (\d+) bytes from", enc.log_text()))
            if received != {str(len(body))}:
                raise RuntimeError(f"sealpost received messages of {sorted(received)} bytes, "
                                   f"the reference encrypts {len(body)}: update "
                                   "smtp_load_message() to match bench/smtp_load.c")
            log(f"outbound, {rounds} rounds")
            set_subreaper(True)
            try:
                reap_gpg()
                res = interleaved(rounds, cases, lambda: provider_pids(p, [sink.proc.pid]),
                                  gpg=True)
            finally:
                set_subreaper(False)
                reap_gpg()
            enc_sizes = relayed_copies(enc, "encrypted")
            plain_sizes = relayed_copies(never, "as written")
            if len(enc_sizes) != N_MESSAGES * (rounds + 1) or \
                    len(plain_sizes) != N_MESSAGES * (rounds + 1):
                raise RuntimeError("sealpost relayed some messages otherwise than configured")
    finally:
        gpgconf_kill(home)
        shutil.rmtree(scratch, ignore_errors=True)
    report["samples"]["outbound_msgs_per_second"] = {n: c.values for n, c in res.items()}

    def compare(base, c):
        ratio = c.median() / base.median()
        return f"{ratio:.2f}x ({paired(base, c, lambda b, v: v / b):.2f})", ratio
    table(report,
          f"Outbound encryption: {N_MESSAGES} x {MESSAGE_SIZE // 1024} KiB to 1 recipient, "
          "ECC keys (ed25519 + cv25519); sealpost: smtp_load on "
          f"{SMTP_SESSIONS} sessions (plaintext, AUTH) -> sealpost -> Postfix (STARTTLS, "
          f"SASL) -> smtp-sink; raw GPGME: the same message, {GPGME_THREADS} threads, "
          "memory to memory; ratios against raw GPGME to bob+alice; "
          "CPU in us per message (proxy and client: with the children GPGME "
          "forks and waits for; gpg: the gpg processes)",
          res, RAW, "msg/s", lambda m: f"{m:.0f}", compare, 1e6 / N_MESSAGES, "us",
          (ENC, lambda r: r >= TARGET_OUTBOUND, f">= {TARGET_OUTBOUND}x", "outbound"),
          versus="raw GPGME", gpg=True)
    report["rows"].append(
        f"  message {len(body)} bytes; armored: raw GPGME {raw_sizes[RAW]} bytes "
        f"(bob only {raw_sizes[RAW_BOB]}); relayed by sealpost: encrypted copy "
        f"{statistics.median(enc_sizes):.0f} bytes, plain copy "
        f"{statistics.median(plain_sizes):.0f} bytes (both with the Autocrypt header)")


# ---------------------------------------------------------------- gateway

def capture_smtp_source_message(size, sender, rcpt):
    """One message exactly as smtp-source sends it (through a recording
    fake SMTP server), with a Received field like the one Postfix puts on
    top before it hands the message to its content filter."""
    import smtp_fake
    with smtp_fake.FakeSMTP(starttls=False, greeting=b"220 capture ESMTP",
                            extensions=(b"8BITMIME",)) as fake:
        subprocess.run(["smtp-source", "-l", str(size), "-m", "1", "-s", "1",
                        "-f", sender, "-t", rcpt, f"127.0.0.1:{fake.port}"],
                       check=True, timeout=60, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not fake.messages:
            if time.monotonic() > deadline:
                raise RuntimeError("smtp-source sent nothing to the capture server")
            time.sleep(0.01)
        body = fake.messages[0]
    received = ("Received: from localhost (localhost [127.0.0.1])\r\n"
                "\tby mx.org.test (Postfix) with ESMTP id 4Q3Zx61Kq9z1Xb\r\n"
                f"\tfor <{rcpt}>; Thu,  1 Jan 2026 00:00:00 +0000 (UTC)\r\n").encode()
    return received + bytes(body)


class PostfixSentCounter:
    """Counts the deliveries Postfix logged as sent to one relay port."""

    def __init__(self, mta):
        self.mta = mta
        self.offset = 0
        self.counts = {}

    def _scan(self):
        try:
            with open(self.mta.log_path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for m in re.finditer(rb"relay=127\.0\.0\.1\[127\.0\.0\.1\]:(\d+),.*status=(\w+)",
                             data[:end]):
            key = (int(m.group(1)), m.group(2).decode())
            self.counts[key] = self.counts.get(key, 0) + 1

    def count(self, port, status="sent"):
        self._scan()
        return self.counts.get((port, status), 0)

    def wait(self, port, n, timeout):
        deadline = time.monotonic() + timeout
        while self.count(port) < n:
            bad = sum(v for (p, st), v in self.counts.items() if p == port and st != "sent")
            if bad:
                raise RuntimeError(f"Postfix did not deliver {bad} message(s) to port {port}; "
                                   f"see {self.mta.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count(port)} of {n} messages reached port "
                                   f"{port} within {timeout} s")
            time.sleep(0.05)


def run_smtp_source_through(port, n, counter, target_port):
    """msg/s from the first byte smtp-source sends until Postfix logged the
    last of n messages as delivered to target_port."""
    before = counter.count(target_port)
    t0 = time.perf_counter()
    subprocess.run(["smtp-source", "-l", str(MESSAGE_SIZE), "-m", str(n),
                    "-s", str(GATEWAY_SESSIONS), "-f", GATEWAY_SENDER, "-t", GATEWAY_RCPT,
                    f"127.0.0.1:{port}"], check=True, timeout=3600,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    counter.wait(target_port, before + n, timeout=3600)
    return n / (time.perf_counter() - t0)


def bench_gateway(sink, gpgme_encrypt, rounds, n, report):
    import gateway_mta
    scratch = tempfile.mkdtemp(prefix="spbench-gw-")
    home = os.path.join(scratch, "gnupg")
    mta = None
    try:
        from provider import make_demo_keys
        log(f"gateway: generating an ECC key for {GATEWAY_RCPT}")
        bob_home = os.path.join(scratch, "bob-gnupg")
        fpr = make_demo_keys(bob_home, [GATEWAY_RCPT])[GATEWAY_RCPT]
        pub = subprocess.run(["gpg", "--homedir", bob_home, "--batch", "--export", fpr],
                             capture_output=True, check=True).stdout
        os.makedirs(home, mode=0o700)
        with open(os.path.join(home, "gpg.conf"), "w") as f:
            f.write("no-random-seed-file\n")
        subprocess.run(["gpg", "--homedir", home, "--batch", "--import"], input=pub,
                       capture_output=True, check=True)
        gpgconf_kill(bob_home)
        body = capture_smtp_source_message(MESSAGE_SIZE, GATEWAY_SENDER, GATEWAY_RCPT)
        body_path = os.path.join(scratch, "message.eml")
        with open(body_path, "wb") as f:
            f.write(body)

        gw_port = free_port()
        direct_port = free_port()
        # The same transport as the documented one, only pointed at the
        # sink: the path without sealpost.
        master_extra = (f"127.0.0.1:{direct_port} inet n - n - - smtpd\n"
                        f"  -o content_filter=sealpost:[127.0.0.1]:{sink.port}\n")
        mta = gateway_mta.OrgMTA(gw_port, [GATEWAY_SENDER, GATEWAY_RCPT],
                                 dir=tempfile.mkdtemp(prefix="spg-", dir="/tmp"),
                                 master_extra=master_extra)
        # The documented gateway ([gateway outbound]: partner.example is
        # required, so a message it could not encrypt would be refused and
        # the run fail), re-injecting straight into the sink.
        glob = {"gnupg_home": home, "log_level": None, "log_file": None}
        with gateway_mta.GatewaySealpost(gw_port, sink.port, global_=glob) as gw:
            mta.start()
            counter = PostfixSentCounter(mta)
            RAW = f"raw GPGME, {GPGME_THREADS} threads"
            VIA = "Postfix -> sealpost -> smtp-sink"
            NONE = "Postfix -> smtp-sink (no sealpost)"
            raw_size = {}

            def raw():
                argv = [gpgme_encrypt, "--homedir", home, "--count", str(n),
                        "--threads", str(GPGME_THREADS), "--recipient", fpr, body_path]
                out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
                if out.returncode != 0:
                    raise RuntimeError("gpgme_encrypt failed: " + out.stderr.strip())
                fields = dict(kv.split("=") for kv in out.stdout.split())
                raw_size["out"] = int(fields["out_bytes"])
                return float(fields["ops_per_s"])

            cases = [
                Case(RAW, raw),
                Case(VIA, lambda: run_smtp_source_through(mta.submit_port, n, counter, gw_port),
                     "sealpost", gw.pid, proxy_children=True),
                Case(NONE, lambda: run_smtp_source_through(direct_port, n, counter, sink.port),
                     "postfix"),
            ]
            warm = min(n, 500)
            log(f"gateway warm-up ({warm} messages each way)")
            run_smtp_source_through(mta.submit_port, warm, counter, gw_port)
            run_smtp_source_through(direct_port, warm, counter, sink.port)
            log(f"gateway, {rounds} rounds of {n} messages")

            def mta_pids():
                pid = mta.master_pid()
                return list(harness.process_tree([pid] if pid else [])) + [sink.proc.pid]
            set_subreaper(True)
            try:
                reap_gpg()
                res = interleaved(rounds, cases, mta_pids, gpg=True)
            finally:
                set_subreaper(False)
                reap_gpg()
            text = gw.log_text()
            encrypted = text.count("decision=encrypted ")
            other = len(re.findall(r"message done: .* decision=(?!encrypted )", text))
            if encrypted != warm + rounds * n or other:
                raise RuntimeError(f"sealpost encrypted {encrypted} messages and decided "
                                   f"otherwise on {other}; expected {warm + rounds * n} "
                                   f"encrypted (log in {gw.dir})")
            sizes = [int(m) for m in re.findall(r"encrypted copy, (\d+) bytes", text)]
    finally:
        if mta is not None:
            mta.close()
        gpgconf_kill(home)
        shutil.rmtree(scratch, ignore_errors=True)
    report["samples"]["gateway_msgs_per_second"] = {k: c.values for k, c in res.items()}

    def compare(base, c):
        ratio = c.median() / base.median()
        return f"{ratio:.2f}x ({paired(base, c, lambda b, v: v / b):.2f})", ratio
    table(report,
          f"Gateway: smtp-source {n} x {MESSAGE_SIZE // 1024} KiB on {GATEWAY_SESSIONS} "
          "sessions -> Postfix (queue, content_filter, 20 connections) -> sealpost "
          "(encrypts to the recipient's ECC key) -> smtp-sink; raw GPGME: the same "
          f"message, {GPGME_THREADS} threads, memory to memory; msg/s until Postfix "
          f"logged the last delivery, median of {rounds} interleaved rounds; CPU in us "
          "per message (provider: Postfix and smtp-sink)",
          res, RAW, "msg/s", lambda m: f"{m:.0f}", compare, 1e6 / n, "us",
          (VIA, lambda r: r >= TARGET_GATEWAY, f">= {TARGET_GATEWAY}x", "gateway"),
          versus="raw GPGME", gpg=True)
    via, none = res[VIA], res[NONE]
    report["rows"].append(
        f"  through sealpost vs without it: {via.median() / none.median():.2f}x "
        f"({paired(none, via, lambda b, v: v / b):.2f} paired); message {len(body)} "
        f"bytes, armored by raw GPGME {raw_size.get('out', 0)} bytes, relayed by "
        f"sealpost {statistics.median(sizes):.0f} bytes")


# ---------------------------------------------------------------- inbound

TARGET_COLD_VS_RAW = 1.1
TARGET_WARM_VS_DIRECT = 0.5
INBOUND_VIEW_CACHE = "256M"


def inbound_inner(i):
    """The content encrypted in message i: the body of make_message(i)
    (CRLF, as MIME is canonical inside OpenPGP) under RFC 9788 protected
    headers, so the decrypted view carries the same Subject as the
    plaintext copy."""
    body = make_message(i).split(b"\n\n", 1)[1]
    return (b"Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n"
            b"Subject: benchmark message %d\r\n"
            b"From: Bob <%s>\r\nTo: Alice <%s>\r\n\r\n" % (i, RCPT.encode(), USER.encode()) +
            body.replace(b"\n", b"\r\n"))


def inbound_encrypted(i, armored):
    """Message i as a PGP/MIME message from bob to alice (LF line ends, as a
    delivery agent stores it) around its armored ciphertext."""
    boundary = b"enc-bench-%06d" % i
    armored = armored.replace(b"\r\n", b"\n")
    return (b"From: Bob <%s>\nTo: Alice <%s>\nSubject: ...\n"
            b"Message-ID: <bench-enc-%d@example.test>\n"
            b"Date: Thu, 01 Jan 2026 00:00:00 +0000\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n"
            b" boundary=\"%s\"\n\n"
            b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n"
            b"--%s\nContent-Type: application/pgp-encrypted\n"
            b"Content-Description: PGP/MIME version identification\n\nVersion: 1\n\n"
            b"--%s\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\n"
            b"Content-Disposition: inline; filename=\"encrypted.asc\"\n\n"
            % (RCPT.encode(), USER.encode(), i, boundary, boundary, boundary) +
            armored + b"\n--%s--\n" % boundary)


def encrypt_inbound(home, fpr):
    """The 1,000 armored ciphertexts (gpg, 2 at a time) of inbound_inner(i)
    to alice's key, AES-256 and zlib as gpg chooses for her key."""
    import concurrent.futures

    def one(i):
        r = subprocess.run(["gpg", "--homedir", home, "--batch", "--no-tty",
                            "--trust-model", "always", "--armor", "--encrypt",
                            "--recipient", fpr], input=inbound_inner(i),
                           capture_output=True, timeout=120)
        if r.returncode != 0 or not r.stdout.startswith(b"-----BEGIN PGP MESSAGE-----"):
            raise RuntimeError("gpg --encrypt: " + r.stderr.decode(errors="replace"))
        return r.stdout
    with concurrent.futures.ThreadPoolExecutor(GPGME_THREADS) as pool:
        return list(pool.map(one, range(N_MESSAGES)))


def fill_maildir(provider, user, password, messages):
    """Writes messages (bytes) into the user's Maildir new/, as populate()
    does; a first login creates the Maildir."""
    Imap(provider.imaps_port, provider.ca_cert).login_select_logout(user, password)
    maildir = provider.maildir(user)
    st = os.stat(maildir)
    stamp = int(time.time())
    for i, raw in enumerate(messages):
        name = f"{stamp}.M{i:06d}P{os.getpid()}.inbound"
        tmp = os.path.join(maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(raw)
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(maildir, "new", name))


def agent_pids(home):
    """PIDs of the gpg-agent serving one GnuPG home (its command line names
    the home)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"gpg-agent" and home.encode() in argv:
            out.append(int(name))
    return out


def tree_cpu(pid):
    """CPU time of a process and all its live descendants, each with the
    children it has waited for (sealpost, its OpenPGP worker processes and
    the intermediate processes GPGME forks there)."""
    if pid is None:
        return 0.0
    return sum(cpu_seconds(p, reaped=True) for p in harness.process_tree([pid]))


def checked_bulk(client, what):
    """(seconds, bytes) of one UID FETCH 1:* (BODY.PEEK[]) that returned
    every message."""
    seconds, size, fetches = client._ask("bulk")
    if int(fetches) != N_MESSAGES:
        raise RuntimeError(f"{what}: the bulk fetch returned {fetches} messages")
    return float(seconds), int(size)


def verify_views(port, password):
    """Every message through sealpost must be a decrypted view; returns the
    view's byte count. Python's imaplib, plaintext on loopback."""
    import imaplib
    m = imaplib.IMAP4("127.0.0.1", port)
    try:
        m.login(USER, password)
        m.select("INBOX", readonly=True)
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        if typ != "OK":
            raise RuntimeError(f"FETCH through sealpost: {typ} {data}")
        bodies = [d[1] for d in data if isinstance(d, tuple)]
    finally:
        try:
            m.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    ok = sum(1 for b in bodies if b"\r\nX-Sealpost-Decryption: ok\r\n" in b and
             b"BEGIN PGP MESSAGE" not in b and b"benchmark message" in b)
    if len(bodies) != N_MESSAGES or ok != N_MESSAGES:
        raise RuntimeError(f"through sealpost {ok} of {len(bodies)} messages were "
                           "decrypted views")
    return sum(len(b) for b in bodies)


def run_gpgme_decrypt(binary, home, path, threads=GPGME_THREADS):
    """(seconds, ops/s, mean plaintext bytes) of bench/gpgme_decrypt.c
    decrypting every ciphertext in path on threads threads."""
    out = subprocess.run([binary, "--homedir", home, "--threads", str(threads), path],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("gpgme_decrypt failed: " + out.stderr.strip())
    fields = dict(kv.split("=") for kv in out.stdout.split())
    if int(fields["ops"]) != N_MESSAGES:
        raise RuntimeError(f"gpgme_decrypt decrypted {fields['ops']} messages")
    return float(fields["seconds"]), float(fields["ops_per_s"]), int(fields["out_bytes"])


def bench_inbound(imap_client, gpgme_decrypt, rounds, report):
    """Cold and warm view cache through sealpost against raw GPGME and a
    direct plaintext fetch; a provider of its own (alice: the ciphertexts,
    bob: the same messages in plaintext)."""
    scratch = tempfile.mkdtemp(prefix="spbench-in-")
    home = os.path.join(scratch, "gnupg")
    p = None
    try:
        from provider import make_demo_keys
        log(f"inbound: generating an ECC key (ed25519 + cv25519) for {USER}")
        fpr = make_demo_keys(home, [USER])[USER]
        log(f"inbound: encrypting {N_MESSAGES} x {MESSAGE_SIZE // 1024} KiB to {USER}'s key")
        armored = encrypt_inbound(home, fpr)
        cipher_path = os.path.join(scratch, "ciphertexts.asc")
        with open(cipher_path, "wb") as f:
            # The armored parts exactly as stored in the maildir files.
            f.write(b"".join(a.replace(b"\r\n", b"\n") for a in armored))
        p = harness.Provider(rawlog=False)
        p.__enter__()
        log(f"inbound: {USER}'s INBOX gets the PGP/MIME messages, "
            f"{RCPT}'s the same messages in plaintext")
        fill_maildir(p, USER, p.users[USER], [inbound_encrypted(i, a)
                                              for i, a in enumerate(armored)])
        fill_maildir(p, RCPT, p.users[RCPT], [make_message(i) for i in range(N_MESSAGES)])
        p.wait_for_messages(USER, N_MESSAGES, timeout=60)
        p.wait_for_messages(RCPT, N_MESSAGES, timeout=60)
        stored = sum(os.path.getsize(x) for x in p.messages(USER, "INBOX"))
        account = {"imap_upstream": f"imaps://localhost:{p.imaps_port}"}
        glob = {"log_level": None, "log_file": None, "gnupg_home": home,
                "view_cache_size": INBOUND_VIEW_CACHE}
        res = {}
        with harness.Sealpost(p, account=account, global_=glob) as s:
            RAW = f"raw GPGME, {GPGME_THREADS} threads"
            # sealpost decrypts 2 messages per CPU at once (decrypt_workers):
            # the same parallelism for raw GPGME, for comparison only.
            RAW_MATCH = f"raw GPGME, {2 * os.cpu_count()} threads"
            COLD = "sealpost, cold cache"
            WARM = "sealpost, warm cache"
            WARM_TLS = "sealpost, warm cache, client TLS"
            DIRECT = "direct plaintext, client TLS"
            for name in (RAW, RAW_MATCH, COLD, WARM, WARM_TLS, DIRECT):
                res[name] = Case(name, None)
                res[name].cpu["agent"] = 0.0
                res[name].cpu["sealpost"] = 0.0
                res[name].cpu["own"] = 0.0
                res[name].seconds = []
            direct = ImapClient(imap_client, p.imaps_port, RCPT, p.users[RCPT], p.ca_cert)
            sizes = {}
            try:
                log("inbound warm-up (Dovecot indexes the mail, gpg-agent starts)")
                sizes[DIRECT] = checked_bulk(direct, DIRECT)[1]
                raw_out = run_gpgme_decrypt(gpgme_decrypt, home, cipher_path)[2]
                view_bytes = verify_views(s.imap_port, p.users[USER])

                def measure(name, fn, client_pid, proxy_pid):
                    c = res[name]

                    def snap():
                        if client_pid:
                            client = cpu_seconds(client_pid)
                        else:
                            t = os.times()
                            client = t.children_user + t.children_system
                        return {"provider": sum(cpu_seconds(q, reaped=True)
                                                for q in provider_pids(p)),
                                "sealpost": tree_cpu(proxy_pid),
                                "own": cpu_seconds(proxy_pid) if proxy_pid else 0.0,
                                "agent": sum(cpu_seconds(q) for q in agent_pids(home)),
                                "client": client}
                    before = snap()
                    seconds, size = fn()
                    after = snap()
                    for who in after:
                        c.cpu[who] += after[who] - before[who]
                    c.cpu["gpg"] += reap_gpg()
                    c.values.append(N_MESSAGES / seconds)
                    c.seconds.append(seconds)
                    if size is not None:
                        sizes[name] = size

                log(f"inbound, {rounds} rounds")
                set_subreaper(True)
                try:
                    reap_gpg()
                    for _ in range(rounds):
                        measure(RAW, lambda: run_gpgme_decrypt(gpgme_decrypt, home,
                                                               cipher_path)[:1] + (None,),
                                None, None)
                        measure(RAW_MATCH, lambda: run_gpgme_decrypt(
                            gpgme_decrypt, home, cipher_path,
                            threads=2 * os.cpu_count())[:1] + (None,), None, None)
                        # A fresh sealpost: an empty view cache, its worker
                        # processes started; then log in (not timed).
                        s.restart()
                        time.sleep(1.0)
                        through = ImapClient(imap_client, s.imap_port, USER, p.users[USER])
                        try:
                            through_tls = ImapClient(imap_client, s.imaps_port, USER,
                                                     p.users[USER], s.cert_path)
                        except Exception:
                            through.close()
                            raise
                        try:
                            measure(COLD, lambda: checked_bulk(through, COLD),
                                    through.proc.pid, s.pid)
                            measure(WARM, lambda: checked_bulk(through, WARM),
                                    through.proc.pid, s.pid)
                            measure(WARM_TLS, lambda: checked_bulk(through_tls, WARM_TLS),
                                    through_tls.proc.pid, s.pid)
                        finally:
                            through.close()
                            through_tls.close()
                        measure(DIRECT, lambda: checked_bulk(direct, DIRECT),
                                direct.proc.pid, None)
                finally:
                    set_subreaper(False)
                    reap_gpg()
            finally:
                direct.close()
            log_text = s.log_text()
    finally:
        gpgconf_kill(home)
        if p is not None:
            p.__exit__(None, None, None)
        shutil.rmtree(scratch, ignore_errors=True)
    report["samples"]["inbound_seconds"] = {n: c.seconds for n, c in res.items()}

    raw, cold, warm, warm_tls, dire = (res[RAW], res[COLD], res[WARM], res[WARM_TLS],
                                       res[DIRECT])
    rows = report["rows"]
    rows.append("")
    rows.append(f"Inbound decryption: UID FETCH 1:* (BODY.PEEK[]) of {N_MESSAGES} PGP/MIME "
                f"messages ({MESSAGE_SIZE // 1024} KiB of plaintext each, encrypted by gpg "
                f"to alice's ECC key, {stored / 1e6:.1f} MB stored), client plaintext -> "
                "sealpost -> Dovecot (TLS); cold: a freshly started sealpost, warm: the same "
                "fetch again (and once more with client TLS); raw GPGME: the same "
                f"{N_MESSAGES} armored parts, "
                f"{GPGME_THREADS} threads, decrypt+verify, memory to memory; direct: the "
                "same messages in plaintext (bob's INBOX), client TLS to Dovecot; "
                "CPU in us per message (sealpost: its process tree, workers included, "
                "own: the sealpost process alone; "
                "gpg: the gpg processes; agent: gpg-agent)")
    rows.append(f"  {'path':<34} {'ms':>8} {'msg/s':>7}  {'ratio (paired)':<26}"
                " CPU us: provider sealpost (own)  client   gpg agent")

    def med_s(c):
        return statistics.median(c.seconds)

    def paired_s(base, c, fn):
        return statistics.median(fn(b, v) for b, v in zip(base.seconds, c.seconds))
    cold_ratio = med_s(cold) / med_s(raw)
    warm_ratio = med_s(dire) / med_s(warm)
    ratio_text = {
        COLD: (f"{cold_ratio:.2f}x raw time ({paired_s(raw, cold, lambda b, v: v / b):.2f})",
               cold_ratio <= TARGET_COLD_VS_RAW, f"<= {TARGET_COLD_VS_RAW}x", "inbound cold"),
        RAW_MATCH: (f"sealpost cold {med_s(cold) / med_s(res[RAW_MATCH]):.2f}x this "
                    f"({paired_s(res[RAW_MATCH], cold, lambda b, v: v / b):.2f})", True, None,
                    None),
        WARM: (f"{warm_ratio:.2f}x direct ({paired_s(dire, warm, lambda b, v: b / v):.2f})",
               warm_ratio >= TARGET_WARM_VS_DIRECT, f">= {TARGET_WARM_VS_DIRECT}x",
               "inbound warm"),
        WARM_TLS: (f"{med_s(dire) / med_s(warm_tls):.2f}x direct "
                   f"({paired_s(dire, warm_tls, lambda b, v: b / v):.2f})", True, None, None),
    }
    scale = 1e6 / N_MESSAGES
    for name, c in res.items():
        line = f"  {name:<34} {med_s(c) * 1e3:8.0f} {N_MESSAGES / med_s(c):7.0f}  "
        verdict_text = ""
        if name in ratio_text:
            text, ok, target, tname = ratio_text[name]
            line += f"{text:<26}"
            if target is not None:
                verdict_text = f"  [target {target}: {verdict(ok)}]"
            if not ok:
                report["missed"].append(tname)
        else:
            line += " " * 26
        per = {k: v / len(c.seconds) * scale for k, v in c.cpu.items()}
        sp = (f"{per['sealpost']:8.0f} {'(%.0f)' % per['own']:>6}"
              if name in (COLD, WARM, WARM_TLS) else "       -       ")
        line += (f" {per['provider']:16.0f} {sp} {per['client']:6.0f} {per['gpg']:5.0f}"
                 f" {per['agent']:5.0f}")
        rows.append(line + verdict_text)
    rows.append("  per round (ms): " + "; ".join(
        f"{n}: " + ", ".join(f"{v * 1e3:.0f}" for v in c.seconds) for n, c in res.items()))
    failed = log_text.count("failed")
    rows.append(f"  bytes on the wire: through sealpost {sizes.get(COLD, 0)} (views "
                f"{view_bytes} by imaplib), direct plaintext {sizes.get(DIRECT, 0)}; raw "
                f"GPGME plaintext {raw_out} bytes per message; sealpost log lines with "
                f"'failed': {failed}")


if __name__ == "__main__":
    sys.exit(main())
