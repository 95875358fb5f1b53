#!/usr/bin/python3
# provider: a real mail provider on loopback (private Postfix + Dovecot on
# free high ports, a test CA, three users) for tests, the demo and the benchmark.
"""A real mail provider on loopback, as a Python module and a command.

    with Provider() as p:
        p.users, p.hostname, p.ca_cert
        p.imap_port, p.imaps_port, p.pop3_port, p.pop3s_port   # Dovecot
        p.submission_port, p.smtps_port, p.mx_port             # Postfix
        p.maildir(user); p.deliver(user, raw); p.wait_for_messages(user, n)
        p.log_text()

    provider.py start --dir DIR [--json] [--rawlog]
    provider.py stop --dir DIR [--remove]
    provider.py status --dir DIR
    provider.py demo --dir DIR --sealpost-conf FILE

Everything (configuration, queue, mailboxes, logs, sockets) lives under one
directory.  Postfix and Dovecot daemonise themselves and are stopped by the
PIDs in their pid files, never by name.  Must run as root: Postfix and
Dovecot need it to switch to their own users.

Addresses: both daemons listen on 127.0.0.1, 127.0.0.2 and 127.0.0.3, all on
the same ports.
  127.0.0.1  normal.  Dovecot treats a client whose address equals its own
             as secure, so it allows LOGIN before STARTTLS here.
  127.0.0.2  (strict_host) in the certificate, but Dovecot refuses plaintext
             LOGIN before STARTTLS (LOGINDISABLED), like a real provider.
  127.0.0.3  (mismatch_host) not in the certificate: a verifying client
             must refuse it.
Mail to recipients outside example.test, sent by an authenticated user, is
delivered to the Maildir of OUTSIDE (outside@example.test, no login), one
copy per original recipient, named in its X-Original-To header.
"""
import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

DOMAIN = "example.test"
OUTSIDE = "outside@" + DOMAIN

DEFAULT_USERS = {
    "alice@example.test": "alice-pw",
    "bob@example.test": "bob-pw",
    "carol@example.test": "carol-pw",
}
# doveadm pw -s SHA512-CRYPT of the passwords above, so that no process is
# spawned for them at start.
_PRECOMPUTED = {
    "alice-pw": "{SHA512-CRYPT}$6$M2vyXvP.K35SaC3w$3s8mQBLGymjhLz/tXAK9vPdoaoXHFrdxJRK2UqD4/ZJNXcd70k0x8zs4rhyssS3BHn5bnPL3qWLh7ThK.5eeV1",
    "bob-pw": "{SHA512-CRYPT}$6$SyynhbH3E77IGIPb$AVMim5zZLJ2.86Ney2epMQ1Y1HWCKUhfrSCvK57mxr8HVyjDlO5c1g/UI.Cq8q6xB2w7XZUYTsJpfR/b0weiF.",
    "carol-pw": "{SHA512-CRYPT}$6$i8FfDfdYo6vSvjao$9NpDsBGTSiOjtk7cgvdxNWqDYppSa9J0arFeVCz2F0gZnSWxhrul/ZNHtmCox87juaeyL56.RUHPKMDXpxs1j1",
}

LISTEN_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
STRICT_HOST = "127.0.0.2"
MISMATCH_HOST = "127.0.0.3"
PORT_NAMES = ("imap", "imaps", "pop3", "pop3s", "submission", "smtps", "mx")
# Below Linux's ephemeral range (32768-60999), so outgoing connections of
# other tests never take a port between choosing and binding it.
PORT_RANGE = (20000, 32700)
POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"
MAIL_UID_NAME = "mail"

_port_lock = threading.Lock()
_ports_given = set()
# Providers started by this process and not stopped yet: stopped at exit,
# so that a test that forgets (or crashes before) stop() leaves no daemons.
_live = set()


@atexit.register
def _stop_live_providers():
    for p in list(_live):
        try:
            p.stop()
        except Exception as e:  # exiting anyway: report and go on
            print("provider: stopping %s at exit: %s" % (p.dir, e), file=sys.stderr)


class ProviderError(RuntimeError):
    pass


def _port_is_free(port, hosts=("127.0.0.1",)):
    for host in hosts:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_port(hosts=("127.0.0.1",)):
    """A TCP port free on every host in hosts, never handed out before by
    this process. Chosen at random below the ephemeral range, so parallel
    test processes rarely pick the same one; callers retry on a clash."""
    with _port_lock:
        for _ in range(1000):
            port = random.randrange(*PORT_RANGE)
            if port in _ports_given:
                continue
            if _port_is_free(port, hosts):
                _ports_given.add(port)
                return port
    raise ProviderError("no free port found")


# --------------------------------------------------------------- processes

def _proc_stat(pid):
    """(ppid, starttime, state) of pid, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return int(rest[1]), int(rest[19]), rest[0]


def _alive(pid, starttime=None):
    st = _proc_stat(pid)
    if st is None or st[2] in ("Z", "X"):
        return False
    return starttime is None or st[1] == starttime


def _all_procs():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def process_tree(roots):
    """{pid: starttime} of the live processes in roots and all their
    descendants."""
    procs = _all_procs()
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found = {}
    todo = [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        if procs[pid][2] not in ("Z", "X"):
            found[pid] = procs[pid][1]
        todo.extend(children.get(pid, []))
    return found


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def listening_ports(pids):
    """TCP ports in LISTEN state on sockets held open by any of pids."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9 and parts[3] == "0A":
                        inodes[parts[9]] = int(parts[1].rsplit(":", 1)[1], 16)
        except OSError:
            pass
    ports = set()
    for pid in pids:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                port = inodes.get(link[8:-1])
                if port is not None:
                    ports.add(port)
    return ports


def wait_port(host, port, timeout=10.0):
    """Waits until host:port accepts a TCP connection; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("%s:%d never accepted" % (host, port))
            time.sleep(0.02)


def terminate_pids(pids, timeout=5.0):
    """Waits up to timeout for every pid in {pid: starttime} to be gone
    (the caller has signalled them), then SIGKILLs those left, checking
    the start time so that a reused PID is never hit. Returns the PIDs
    that had to be killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p, t) for p, t in pids.items()):
            return []
        time.sleep(0.01)
    killed = []
    for p, t in pids.items():
        if _alive(p, t):
            try:
                os.kill(p, signal.SIGKILL)
                killed.append(p)
            except OSError:
                pass
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(_alive(p, t) for p, t in pids.items()):
        time.sleep(0.01)
    return killed


# ------------------------------------------------------------- the provider

class Provider:
    """A private Postfix + Dovecot instance under one directory.

    dir     the directory to use (created if missing); default a new
            /tmp/spv-XXXXXX, removed at stop().
    keep    keep the directory at stop(); default: keep it only when the
            caller gave it (or SEALPOST_KEEP_PROVIDER=1 is set).
    rawlog  record every IMAP/POP3 byte per session under DIR/rawlog
            (see rawlog_text()).
    users   {address: password}, all @example.test; default alice, bob and
            carol with passwords alice-pw, bob-pw, carol-pw.
    postfix_params  extra or replacing main.cf parameters {name: value}.
    dovecot_extra   text appended to dovecot.conf.
    autostop  stop it when this Python process exits, if stop() was not
            called (the command line's start and demo turn this off).
    """

    def __init__(self, dir=None, keep=None, rawlog=True, users=None,
                 postfix_params=None, dovecot_extra="", start_timeout=20.0,
                 autostop=True):
        self.autostop = autostop
        self.users = dict(users if users is not None else DEFAULT_USERS)
        self.hostname = "localhost"
        self.domain = DOMAIN
        self.outside = OUTSIDE
        self.strict_host = STRICT_HOST
        self.mismatch_host = MISMATCH_HOST
        self.rawlog = rawlog
        self.postfix_params = dict(postfix_params or {})
        self.dovecot_extra = dovecot_extra
        self.start_timeout = start_timeout
        self._created_dir = dir is None
        if dir is None:
            dir = tempfile.mkdtemp(prefix="spv-", dir="/tmp")
        self.dir = os.path.abspath(dir)
        if keep is None:
            keep = (not self._created_dir) or os.environ.get("SEALPOST_KEEP_PROVIDER") == "1"
        self.keep = keep
        self.ca_cert = os.path.join(self.dir, "tls", "ca.crt")
        self.ca_key = os.path.join(self.dir, "tls", "ca.key")
        self.server_cert = os.path.join(self.dir, "tls", "server.crt")
        self.server_key = os.path.join(self.dir, "tls", "server.key")
        self.dovecot_conf = os.path.join(self.dir, "dovecot.conf")
        self.postfix_dir = os.path.join(self.dir, "pf")
        self.queue_dir = os.path.join(self.dir, "pfq")
        self.base_dir = os.path.join(self.dir, "dv")
        self.lmtp_socket = os.path.join(self.base_dir, "lmtp")
        self.log_dir = os.path.join(self.dir, "log")
        self.rawlog_dir = os.path.join(self.dir, "rawlog")
        self.ports = {}
        self.pids = {}          # {pid: starttime} of every daemon at start
        self.started = False
        self.start_seconds = None
        for name in PORT_NAMES:
            setattr(self, name + "_port", None)

    # ---------------------------------------------------------- attaching

    @classmethod
    def attach(cls, dir):
        """A Provider for an instance started earlier in dir (by the CLI or
        another process), from DIR/provider.json."""
        with open(os.path.join(dir, "provider.json")) as f:
            desc = json.load(f)
        p = cls(dir=dir, keep=True, rawlog=desc.get("rawlog", False),
                users=desc["users"], autostop=False)
        p._set_ports(desc["ports"])
        p.started = True
        return p

    def _set_ports(self, ports):
        self.ports = dict(ports)
        for name in PORT_NAMES:
            setattr(self, name + "_port", self.ports.get(name))

    # ------------------------------------------------------------ helpers

    def address(self, user):
        """'alice' or 'alice@example.test' -> 'alice@example.test'."""
        return user if "@" in user else user + "@" + DOMAIN

    def maildir(self, user):
        """Path of the user's Maildir (exists after the first delivery or
        login)."""
        return os.path.join(self.dir, "mail", self.address(user).split("@")[0], "Maildir")

    def mailbox_dir(self, user, mailbox="INBOX"):
        """Path of one mailbox's Maildir++ folder ('Sent', 'a/b', ...)."""
        md = self.maildir(user)
        if mailbox.upper() == "INBOX":
            return md
        return os.path.join(md, "." + mailbox.replace("/", "."))

    def messages(self, user, mailbox="INBOX"):
        """Message files in a mailbox (new/ and cur/), oldest first."""
        base = self.mailbox_dir(user, mailbox)
        files = []
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                if not n.startswith("."):
                    files.append(os.path.join(d, n))

        def key(path):
            # Maildir names start with the delivery time; ties by name.
            name = os.path.basename(path)
            try:
                return (int(name.split(".")[0]), name)
            except ValueError:
                return (0, name)
        return sorted(files, key=key)

    def wait_for_messages(self, user, n, timeout=10, mailbox="INBOX"):
        """Waits until the mailbox holds at least n messages and returns
        their file paths (oldest first). A file moves from new/ to cur/
        when an IMAP client sees it, so read paths promptly. Raises
        TimeoutError with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.messages(user, mailbox)
            if len(files) >= n:
                return files
            if time.monotonic() > deadline:
                raise TimeoutError("%s %s: %d of %d messages after %ss\n%s" % (
                    self.address(user), mailbox, len(files), n, timeout,
                    self._log_tail()))
            time.sleep(0.01)

    def read_messages(self, user, mailbox="INBOX"):
        """Contents (bytes) of the mailbox's messages, oldest first."""
        out = []
        for path in self.messages(user, mailbox):
            try:
                with open(path, "rb") as f:
                    out.append(f.read())
            except FileNotFoundError:
                # Moved new/ -> cur/ meanwhile: find it again by its base.
                base = os.path.basename(path).split(":")[0]
                for q in self.messages(user, mailbox):
                    if os.path.basename(q).split(":")[0] == base:
                        with open(q, "rb") as f:
                            out.append(f.read())
                        break
        return out

    def deliver(self, user, raw, mailbox="INBOX", sender="sender@example.net"):
        """Puts a message (bytes; LF or CRLF line ends) into the user's
        mailbox and returns its file path once it is there. INBOX goes
        through Dovecot's LMTP, other mailboxes through doveadm save."""
        if isinstance(raw, str):
            raw = raw.encode()
        addr = self.address(user)
        before = set(os.path.basename(p).split(":")[0] for p in self.messages(user, mailbox))
        if mailbox.upper() == "INBOX":
            self._lmtp_deliver(addr, raw, sender)
        else:
            r = subprocess.run(["doveadm", "-c", self.dovecot_conf, "save",
                                "-u", addr, "-m", mailbox],
                               input=raw, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            if r.returncode != 0:
                raise ProviderError("doveadm save %s %s: %s" % (
                    addr, mailbox, r.stdout.decode(errors="replace")))
        for path in self.messages(user, mailbox):
            if os.path.basename(path).split(":")[0] not in before:
                return path
        raise ProviderError("delivered to %s %s but no new file" % (addr, mailbox))

    def _lmtp_deliver(self, addr, raw, sender):
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        body = b"".join((b"." + l if l.startswith(b".") else l).rstrip(b"\r") + b"\r\n"
                        for l in lines)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.lmtp_socket)
        f = s.makefile("rwb")

        def reply():
            text = []
            while True:
                line = f.readline()
                if not line:
                    raise ProviderError("LMTP: connection closed")
                text.append(line.decode(errors="replace").rstrip())
                if line[3:4] != b"-":
                    return int(line[:3]), "\n".join(text)

        def cmd(c, want):
            if c is not None:
                f.write(c + b"\r\n")
                f.flush()
            code, text = reply()
            if code // 100 != want:
                raise ProviderError("LMTP %s: %s" % (c, text))
        try:
            cmd(None, 2)
            cmd(b"LHLO localhost", 2)
            cmd(b"MAIL FROM:<" + sender.encode() + b">", 2)
            cmd(b"RCPT TO:<" + addr.encode() + b">", 2)
            cmd(b"DATA", 3)
            f.write(body + b".\r\n")
            f.flush()
            cmd(None, 2)
            f.write(b"QUIT\r\n")
            f.flush()
        finally:
            f.close()
            s.close()

    def client_ssl_context(self):
        """A verifying TLS client context trusting the test CA."""
        return ssl.create_default_context(cafile=self.ca_cert)

    def log_files(self):
        return [os.path.join(self.log_dir, n) for n in
                ("dovecot.log", "dovecot.out", "postfix.log", "postfix.out")]

    def log_mark(self):
        """An opaque position: log_text(since=mark) returns only what was
        logged after it."""
        return {p: self._size(p) for p in self.log_files()}

    @staticmethod
    def _size(path):
        try:
            return os.path.getsize(path)
        except OSError:
            return 0

    def log_text(self, since=None):
        """Dovecot and Postfix logs, each file under a '==> name <==' line."""
        out = []
        for p in self.log_files():
            try:
                with open(p, "rb") as f:
                    if since:
                        f.seek(since.get(p, 0))
                    data = f.read().decode(errors="replace")
            except OSError:
                continue
            if data:
                out.append("==> %s <==\n%s" % (os.path.basename(p), data))
        return "\n".join(out)

    def _log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rawlog_mark(self):
        """The sessions recorded so far: rawlog_text(since=mark) leaves them
        out."""
        return {os.path.splitext(os.path.basename(p))[0]
                for d in ("in", "out") for p in self.rawlog_files(d)}

    def rawlog_text(self, direction="in", since=None):
        """Every byte IMAP/POP3 sessions exchanged after login (direction
        'in' = what clients sent, 'out' = what Dovecot answered), sessions
        in order. Needs rawlog=True. since: rawlog_mark(), or file names."""
        skip = {os.path.splitext(os.path.basename(x))[0] for x in (since or ())}
        out = []
        for path in self.rawlog_files(direction):
            if os.path.splitext(os.path.basename(path))[0] in skip:
                continue
            with open(path, "rb") as f:
                out.append(f.read())
        return b"".join(out)

    def rawlog_files(self, direction="in"):
        """Paths of the per-session rawlog files, oldest first."""
        try:
            names = os.listdir(self.rawlog_dir)
        except FileNotFoundError:
            return []
        return [os.path.join(self.rawlog_dir, n) for n in sorted(names)
                if n.endswith("." + direction)]

    def to_json(self):
        return {
            "dir": self.dir,
            "hostname": self.hostname,
            "domain": DOMAIN,
            "ca_cert": self.ca_cert,
            "users": self.users,
            "outside": OUTSIDE,
            "ports": dict(self.ports),
            "strict_host": STRICT_HOST,
            "mismatch_host": MISMATCH_HOST,
            "maildirs": {u: self.maildir(u) for u in self.users},
            "logs": self.log_files(),
            "rawlog": self.rawlog,
            "rawlog_dir": self.rawlog_dir,
            "pids": sorted(self.pids),
            "dovecot_conf": self.dovecot_conf,
            "postfix_config_dir": self.postfix_dir,
            "lmtp_socket": self.lmtp_socket,
            "imap_url": "imap://%s:%s" % (self.hostname, self.ports.get("imap")),
            "imaps_url": "imaps://%s:%s" % (self.hostname, self.ports.get("imaps")),
            "smtp_url": "smtp://%s:%s" % (self.hostname, self.ports.get("submission")),
            "smtps_url": "smtps://%s:%s" % (self.hostname, self.ports.get("smtps")),
            "pop3_url": "pop3://%s:%s" % (self.hostname, self.ports.get("pop3")),
            "pop3s_url": "pop3s://%s:%s" % (self.hostname, self.ports.get("pop3s")),
        }

    # ------------------------------------------------------ start and stop

    def __enter__(self):
        if not self.started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def master_pids(self):
        """PIDs of the Dovecot and Postfix masters from their pid files."""
        out = []
        for path, conf in ((os.path.join(self.base_dir, "master.pid"), self.dovecot_conf),
                           (os.path.join(self.queue_dir, "pid", "master.pid"), self.postfix_dir)):
            pid = _read_pid(path)
            if pid is None or not _alive(pid):
                continue
            # A stale pid file may name a reused PID: only a master started
            # with this very configuration counts.
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    argv = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if conf in argv:
                out.append(pid)
        return out

    def running(self):
        return bool(self.master_pids())

    def start(self):
        """Starts Dovecot and Postfix and returns when every port accepts.
        On a port clash with another process, retries with new ports."""
        if os.geteuid() != 0:
            raise ProviderError("the provider must run as root (Postfix and Dovecot switch users)")
        if self.running():
            raise ProviderError("a provider is already running in %s" % self.dir)
        t0 = time.monotonic()
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self._make_certs()
        self._make_dirs()
        if not self.ports:
            # A restart in the same directory keeps its ports when it can,
            # so that configured clients still find it.
            try:
                with open(os.path.join(self.dir, "provider.json")) as f:
                    old = json.load(f)["ports"]
                if (sorted(old) == sorted(PORT_NAMES) and
                        all(_port_is_free(p, LISTEN_HOSTS) for p in old.values())):
                    self._set_ports(old)
            except (OSError, ValueError, KeyError):
                pass
        last = None
        for attempt in range(4):
            if attempt > 0 or not self.ports:
                self._set_ports({name: pick_port(LISTEN_HOSTS) for name in PORT_NAMES})
            self._write_configs()
            try:
                self._start_daemons()
                break
            except ProviderError as e:
                last = e
                self._stop_daemons()
                # Another process took one of the ports meanwhile? (Postfix
                # says so only to syslog.) Then try again with new ones.
                taken = [p for p in self.ports.values() if not _port_is_free(p, LISTEN_HOSTS)]
                if not taken and "in use" not in str(e):
                    raise
        else:
            raise last
        self.started = True
        if self.autostop:
            _live.add(self)
        self.start_seconds = time.monotonic() - t0
        self._write_file(os.path.join(self.dir, "provider.json"),
                         json.dumps(self.to_json(), indent=1) + "\n")
        return self

    def stop(self):
        """Stops both daemons by PID (SIGTERM, SIGKILL after 5 s), waits
        until every process of theirs is gone, and removes the directory
        unless keep. Returns the PIDs that had to be killed."""
        _live.discard(self)
        killed = self._stop_daemons()
        gnupg = os.path.join(self.dir, "gnupg")
        if os.path.isdir(gnupg):
            subprocess.run(["gpgconf", "--homedir", gnupg, "--kill", "all"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started = False
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return killed

    def _stop_daemons(self, timeout=5.0):
        """SIGTERM to both masters and to every Dovecot process (its master,
        told alone, waits a second for its log process); waits until all
        their processes are gone, signalling late-born ones too; SIGKILL to
        what is left after timeout. Returns the PIDs that were killed."""
        dovecot = _read_pid(os.path.join(self.base_dir, "master.pid"))
        masters = self.master_pids()
        tree = {p: t for p, t in self.pids.items() if _alive(p, t)}
        signalled = set()
        deadline = time.monotonic() + timeout
        rescan = 0.0
        while True:
            now = time.monotonic()
            if now >= rescan:
                tree.update(process_tree(masters))
                dovecot_tree = process_tree([dovecot]) if dovecot in masters else {}
                for pid in masters + [p for p in dovecot_tree if p != dovecot]:
                    if pid not in signalled and _alive(pid, tree.get(pid)):
                        signalled.add(pid)
                        try:
                            os.kill(pid, signal.SIGTERM)
                        except OSError:
                            pass
                rescan = now + 0.25
            if not any(_alive(p, t) for p, t in tree.items()) or now > deadline:
                break
            time.sleep(0.005)
        killed = terminate_pids(tree, timeout=0)
        # A daemon still starting has no pid file yet: end the starter.
        for pr in getattr(self, "_spawned", []):
            if pr.poll() is None:
                pr.kill()
                pr.wait()
        self._spawned = []
        return killed

    # -------------------------------------------------------------- files

    @staticmethod
    def _write_file(path, text, mode=0o644):
        """Writes path only when its content changes, dated a minute back."""
        data = text.encode() if isinstance(text, str) else text
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return False
        except FileNotFoundError:
            pass
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        # Postfix's master waits about two seconds before reading a main.cf
        # or master.cf younger than a second or so (it may be mid-edit):
        # date the file back.
        old = time.time() - 60
        os.utime(tmp, (old, old))
        os.replace(tmp, path)
        return True

    def _make_certs(self):
        tls = os.path.join(self.dir, "tls")
        os.makedirs(tls, exist_ok=True)
        os.chmod(tls, 0o755)
        if all(os.path.exists(p) for p in (self.ca_cert, self.server_cert, self.server_key)):
            return
        cnf = os.path.join(tls, "openssl.cnf")
        self._write_file(cnf, """[req]
distinguished_name = dn
prompt = no
[dn]
CN = sealpost test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:127.0.0.2
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
""")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        serial = "0x%x" % random.getrandbits(63)
        self._run(["openssl", "req", "-x509", "-config", cnf] + ec +
                  ["-keyout", self.ca_key, "-out", self.ca_cert, "-days", "3650",
                   "-extensions", "v3_ca", "-subj", "/O=sealpost tests/CN=sealpost test CA"])
        self._run(["openssl", "req", "-x509", "-config", cnf] + ec +
                  ["-CA", self.ca_cert, "-CAkey", self.ca_key, "-set_serial", serial,
                   "-keyout", self.server_key, "-out", self.server_cert, "-days", "3650",
                   "-extensions", "v3_server", "-subj", "/O=sealpost tests/CN=localhost"])
        os.chmod(self.ca_cert, 0o644)
        os.chmod(self.server_cert, 0o644)
        os.chmod(self.server_key, 0o600)
        os.chmod(self.ca_key, 0o600)

    @staticmethod
    def _run(argv, **kw):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, **kw)
        if r.returncode != 0:
            raise ProviderError("%s failed (%d): %s" % (
                " ".join(argv), r.returncode, r.stdout.decode(errors="replace")))
        return r.stdout.decode(errors="replace")

    def _make_dirs(self):
        import grp
        import pwd
        pf = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        mail = pwd.getpwnam(MAIL_UID_NAME)
        self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid

        def mk(path, uid, gid, mode):
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        mk(self.postfix_dir, 0, 0, 0o755)
        mk(self.queue_dir, 0, 0, 0o755)
        mk(os.path.join(self.queue_dir, "pid"), 0, 0, 0o755)
        for sub in ("active", "bounce", "corrupt", "defer", "deferred", "flush",
                    "hold", "incoming", "private", "saved", "trace"):
            mk(os.path.join(self.queue_dir, sub), pf.pw_uid, 0, 0o700)
        mk(os.path.join(self.queue_dir, "maildrop"), pf.pw_uid, postdrop, 0o730)
        mk(os.path.join(self.queue_dir, "public"), pf.pw_uid, postdrop, 0o710)
        mk(os.path.join(self.dir, "pfd"), pf.pw_uid, 0, 0o700)
        mk(self.log_dir, 0, 0, 0o755)
        mk(os.path.join(self.dir, "dvs"), 0, 0, 0o750)
        mk(os.path.join(self.dir, "mail"), self.mail_uid, self.mail_gid, 0o755)
        if self.rawlog:
            mk(self.rawlog_dir, self.mail_uid, self.mail_gid, 0o755)
        # A stale socket in base_dir costs seconds per login.
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _password_hash(self, password):
        h = _PRECOMPUTED.get(password)
        if h is None:
            h = self._run(["doveadm", "pw", "-s", "SHA512-CRYPT", "-p", password]).strip()
        return h

    def _write_configs(self):
        D = self.dir
        p = self.ports
        users = []
        outside_pw = "{SHA512-CRYPT}*"   # no password matches: delivery only
        for addr, pw in list(self.users.items()) + [(OUTSIDE, None)]:
            h = outside_pw if pw is None else self._password_hash(pw)
            users.append("%s:%s:%d:%d::%s/mail/%s::\n" % (
                addr, h, self.mail_uid, self.mail_gid, D, addr.split("@")[0]))
        self._write_file(os.path.join(D, "users"), "".join(users), 0o644)

        listen = ", ".join(LISTEN_HOSTS)
        rawlog = ""
        if self.rawlog:
            rawlog = "  rawlog_dir = %s\n" % self.rawlog_dir
        dovecot = f"""# Private Dovecot for sealpost tests; everything under {D}.
instance_name = {os.path.basename(D)}
base_dir = {self.base_dir}
state_dir = {D}/dvs
log_path = {self.log_dir}/dovecot.log
protocols = imap pop3 lmtp
listen = {listen}
ssl = yes
ssl_cert = <{self.server_cert}
ssl_key = <{self.server_key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
first_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 10000
default_process_limit = 500
default_client_limit = 5000
postmaster_address = postmaster@{DOMAIN}
hostname = mail.{DOMAIN}
# A failed login is answered on a 0.5 s tick even with auth_failure_delay
# = 0, unless the request carries "nodelay". A passdb's fields are dropped
# when it fails; this first one only sets nodelay and passes on (NEXT), so
# the field survives a wrong password or an unknown user in the next.
passdb {{
  driver = static
  args = noauthenticate nodelay=yes
}}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {D}/users
}}
userdb {{
  driver = passwd-file
  args = {D}/users
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
}}
protocol imap {{
{rawlog}}}
protocol pop3 {{
{rawlog}  pop3_uidl_format = %08Xu%08Xv
}}
service imap-login {{
  inet_listener imap {{
    port = {p['imap']}
  }}
  inet_listener imaps {{
    port = {p['imaps']}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 1
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {p['pop3']}
  }}
  inet_listener pop3s {{
    port = {p['pop3s']}
    ssl = yes
  }}
  service_count = 0
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
# No growing delay after failed logins (Authentication/Penalty).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{self.dovecot_extra}
"""
        self._write_file(self.dovecot_conf, dovecot)

        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": D + "/pfd",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.log_dir + "/postfix.log",
            "maillog_file_prefixes": D,
            "syslog_name": "spv-postfix",
            "myhostname": "mail." + DOMAIN,
            "mydomain": DOMAIN,
            "myorigin": DOMAIN,
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relay_domains": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": "104857600",
            "mailbox_size_limit": "0",
            "virtual_mailbox_limit": "0",
            "virtual_mailbox_domains": DOMAIN,
            # Users are delivered by Dovecot's LMTP (virtual_transport); the
            # map only says who exists. OUTSIDE is written by Postfix's own
            # virtual(8), which adds X-Original-To: with the real recipient.
            "virtual_mailbox_maps": "inline:{ %s }" % ", ".join(
                ["%s=%s/Maildir/" % (a, a.split("@")[0]) for a in self.users] +
                ["%s=outside/Maildir/" % OUTSIDE]),
            "virtual_mailbox_base": D + "/mail",
            "virtual_uid_maps": "static:%d" % self.mail_uid,
            "virtual_gid_maps": "static:%d" % self.mail_gid,
            "virtual_minimum_uid": str(self.mail_uid),
            "transport_maps": "inline:{ %s=virtual: }" % OUTSIDE,
            # Authenticated mail to other domains lands with OUTSIDE.
            "virtual_alias_maps": "regexp:{ {!/@example\\.test$$/ %s} }" % OUTSIDE,
            "virtual_alias_domains": "",
            "virtual_transport": "lmtp:unix:" + self.lmtp_socket,
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_peername_lookup": "no",
            "smtpd_tls_cert_file": self.server_cert,
            "smtpd_tls_key_file": self.server_key,
            "smtpd_tls_security_level": "may",
            "smtpd_tls_loglevel": "1",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": self.base_dir + "/auth-postfix",
            "smtpd_sasl_auth_enable": "no",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_tls_security_options": "noanonymous",
            "smtpd_tls_auth_only": "yes",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_client_auth_rate_limit": "0",
            "default_process_limit": "500",
            "in_flow_delay": "0",
            "lmtp_destination_concurrency_limit": "50",
            "default_transport": "error:only example.test is delivered here",
            "relay_transport": "error:only example.test is delivered here",
            "local_transport": "error:no local delivery",
            "notify_classes": "",
            "smtp_dns_support_level": "disabled",
            "delay_warning_time": "0",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
        }
        params.update(self.postfix_params)
        main_cf = "# Private Postfix for sealpost tests; everything under %s.\n" % D
        main_cf += "".join("%s = %s\n" % (k, v) for k, v in params.items() if v is not None)
        self._write_file(os.path.join(self.postfix_dir, "main.cf"), main_cf)

        services = [
            ("submission", ["smtpd_tls_security_level=encrypt",
                            "smtpd_sasl_auth_enable=yes",
                            "smtpd_relay_restrictions=permit_sasl_authenticated,reject"]),
            ("smtps", ["smtpd_tls_wrappermode=yes",
                       "smtpd_sasl_auth_enable=yes",
                       "smtpd_relay_restrictions=permit_sasl_authenticated,reject"]),
            ("mx", ["smtpd_sasl_auth_enable=no"]),
        ]
        master = ["# service type private unpriv chroot wakeup maxproc command"]
        for name, opts in services:
            for host in LISTEN_HOSTS:
                line = "%s:%d inet n - n - - smtpd -o syslog_name=spv-postfix/%s" % (
                    host, p[name], name)
                master.append(line + "".join("\n  -o " + o for o in opts))
        master += [
            "cleanup   unix  n - n - 0 cleanup",
            "qmgr      unix  n - n 300 1 qmgr",
            "tlsmgr    unix  - - n 1000? 1 tlsmgr",
            "rewrite   unix  - - n - - trivial-rewrite",
            "bounce    unix  - - n - 0 bounce",
            "defer     unix  - - n - 0 bounce",
            "trace     unix  - - n - 0 bounce",
            "verify    unix  - - n - 1 verify",
            "flush     unix  n - n 1000? 0 flush",
            "proxymap  unix  - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp      unix  - - n - - smtp",
            "relay     unix  - - n - - smtp",
            "showq     unix  n - n - - showq",
            "error     unix  - - n - - error",
            "retry     unix  - - n - - error",
            "discard   unix  - - n - - discard",
            "lmtp      unix  - - n - - lmtp",
            "virtual   unix  - n n - - virtual",
            "anvil     unix  - - n - 1 anvil",
            "scache    unix  - - n - 1 scache",
            "postlog   unix-dgram n - n - 1 postlogd",
        ]
        self._write_file(os.path.join(self.postfix_dir, "master.cf"), "\n".join(master) + "\n")

    def _start_daemons(self):
        self._spawned = []
        self.pids = {}
        outs = []
        procs = []
        for argv, out in (
                (["dovecot", "-c", self.dovecot_conf], "dovecot.out"),
                ([POSTFIX_MASTER, "-c", self.postfix_dir, "-w"], "postfix.out")):
            f = open(os.path.join(self.log_dir, out), "ab")
            outs.append(f)
            env = dict(os.environ, MAIL_CONFIG=self.postfix_dir)
            # New session: the daemons must not share the caller's process
            # group or terminal (a Ctrl-C to a test must not reach them).
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                          stderr=f, env=env, start_new_session=True))
        self._spawned = procs
        try:
            for pr in procs:
                try:
                    rc = pr.wait(self.start_timeout)
                except subprocess.TimeoutExpired:
                    raise ProviderError("%s did not start in %ss\n%s" % (
                        pr.args[0], self.start_timeout, self._log_tail()))
                if rc != 0:
                    raise ProviderError("%s exited %d%s\n%s" % (
                        pr.args[0], rc, self._clash_hint(), self._log_tail()))
        finally:
            for f in outs:
                f.close()
        want = set(self.ports.values())
        deadline = time.monotonic() + self.start_timeout
        while True:
            masters = self.master_pids()
            have = listening_ports(masters) if len(masters) == 2 else set()
            if want <= have:
                break
            if time.monotonic() > deadline:
                raise ProviderError("ports %s never listened%s\n%s" % (
                    sorted(want - have), self._clash_hint(), self._log_tail()))
            if len(masters) < 2 and self._clash_hint():
                raise ProviderError("port clash%s" % self._clash_hint())
            time.sleep(0.005)
        self.pids = process_tree(masters)

    def _clash_hint(self):
        text = self.log_text()
        return " (address in use)" if ("Address already in use" in text
                                       or "address already in use" in text) else ""


# --------------------------------------------------------------- the demo

def make_demo_keys(gnupg_home, users):
    """Throwaway OpenPGP keys (ed25519 + cv25519, no passphrase) for each
    address; returns {address: fingerprint}."""
    os.makedirs(gnupg_home, mode=0o700, exist_ok=True)
    os.chmod(gnupg_home, 0o700)
    with open(os.path.join(gnupg_home, "gpg.conf"), "w") as f:
        f.write("no-random-seed-file\n")
    params = ""
    for addr in users:
        name = addr.split("@")[0].capitalize()
        params += ("%%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\n"
                   "Key-Usage: sign\nSubkey-Type: ECDH\nSubkey-Curve: cv25519\n"
                   "Subkey-Usage: encrypt\nName-Real: %s (sealpost demo key)\n"
                   "Name-Email: %s\nExpire-Date: 0\n%%commit\n" % (name, addr))
    env = dict(os.environ, GNUPGHOME=gnupg_home)
    try:
        r = subprocess.run(["gpg", "--batch", "--gen-key"], input=params.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        if r.returncode != 0:
            raise ProviderError("gpg --gen-key: " + r.stdout.decode(errors="replace"))
        r = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    finally:
        # Key generation started an agent; sealpost starts its own when needed.
        subprocess.run(["gpgconf", "--homedir", gnupg_home, "--kill", "all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fprs = {}
    fpr = None
    want_fpr = False
    for line in r.stdout.decode().splitlines():
        f = line.split(":")
        if f[0] == "pub":
            want_fpr = True
        elif f[0] == "fpr" and want_fpr:
            fpr, want_fpr = f[9], False
        elif f[0] == "uid" and fpr:
            for addr in users:
                if "<%s>" % addr in f[9]:
                    fprs[addr] = fpr
    return fprs


def write_sealpost_conf(path, provider, account="alice"):
    D = provider.dir
    text = """# sealpost demo configuration: account %(account)s in front of the demo
# provider in %(dir)s (users %(users)s).
[sealpost]
state_dir = %(dir)s/state
gnupg_home = %(dir)s/gnupg
api_listen = 127.0.0.1:7587

[account %(account)s]
address = %(addr)s
imap_listen = 127.0.0.1:1143
imaps_listen = 127.0.0.1:1993
smtp_listen = 127.0.0.1:1587
smtps_listen = 127.0.0.1:1465
pop3_listen = 127.0.0.1:1110
pop3s_listen = 127.0.0.1:1995
imap_upstream = imap://%(host)s:%(imap)d
smtp_upstream = smtp://%(host)s:%(sub)d
pop3_upstream = pop3://%(host)s:%(pop3)d
upstream_ca_file = %(ca)s
""" % {"account": account, "dir": D, "addr": provider.address(account),
       "users": ", ".join(provider.users), "host": provider.hostname,
       "imap": provider.imap_port, "sub": provider.submission_port,
       "pop3": provider.pop3_port, "ca": provider.ca_cert}
    with open(path, "w") as f:
        f.write(text)
    return path


# -------------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(prog="provider.py",
                                 description="A private Postfix + Dovecot mail provider on loopback.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a provider in DIR and leave it running")
    s.add_argument("--dir", required=True)
    s.add_argument("--json", action="store_true", help="print the description as JSON")
    s.add_argument("--rawlog", action="store_true", help="record IMAP/POP3 sessions in DIR/rawlog")
    s = sub.add_parser("stop", help="stop the provider running in DIR")
    s.add_argument("--dir", required=True)
    s.add_argument("--remove", action="store_true", help="remove DIR afterwards")
    s = sub.add_parser("status", help="print the JSON description if it runs")
    s.add_argument("--dir", required=True)
    s = sub.add_parser("demo", help="start, make OpenPGP keys, write a sealpost config")
    s.add_argument("--dir", required=True)
    s.add_argument("--sealpost-conf", required=True)
    s.add_argument("--account", default="alice")
    s.add_argument("--json", action="store_true", help="print the description as JSON")
    args = ap.parse_args(argv)

    if args.cmd == "start":
        p = Provider(dir=args.dir, keep=True, rawlog=args.rawlog, autostop=False)
        p.start()
        desc = p.to_json()
        desc["start_seconds"] = round(p.start_seconds, 3)
        if args.json:
            print(json.dumps(desc, indent=1))
        else:
            print("provider running in %s (%.2fs)" % (p.dir, p.start_seconds))
            for k in ("imap", "imaps", "pop3", "pop3s", "submission", "smtps", "mx"):
                print("  %-10s %s:%d" % (k, p.hostname, p.ports[k]))
            print("  CA         %s" % p.ca_cert)
            print("  users      %s" % ", ".join("%s / %s" % kv for kv in p.users.items()))
        return 0
    if args.cmd == "stop":
        p = Provider(dir=args.dir, keep=not args.remove, users={}, autostop=False)
        killed = p.stop()
        if killed:
            print("killed after timeout: %s" % killed, file=sys.stderr)
        return 0
    if args.cmd == "status":
        try:
            p = Provider.attach(args.dir)
        except FileNotFoundError:
            print("no provider in %s" % args.dir, file=sys.stderr)
            return 1
        if not p.running():
            print("provider in %s is not running" % args.dir, file=sys.stderr)
            return 1
        desc = p.to_json()
        desc["pids"] = sorted(process_tree(p.master_pids()))
        print(json.dumps(desc, indent=1))
        return 0
    if args.cmd == "demo":
        p = Provider(dir=args.dir, keep=True, rawlog=False, autostop=False)
        p.start()
        try:
            fprs = make_demo_keys(os.path.join(p.dir, "gnupg"), list(p.users))
            write_sealpost_conf(args.sealpost_conf, p, args.account)
        except Exception:
            p.stop()
            raise
        desc = p.to_json()
        desc["sealpost_conf"] = os.path.abspath(args.sealpost_conf)
        desc["gnupg_home"] = os.path.join(p.dir, "gnupg")
        desc["keys"] = fprs
        desc["start_seconds"] = round(p.start_seconds, 3)
        if args.json:
            print(json.dumps(desc, indent=1))
            return 0
        print("demo provider (Postfix + Dovecot) running in %s:" % p.dir)
        print("  IMAP %s:%d (STARTTLS), submission %s:%d (STARTTLS), CA %s"
              % (p.hostname, p.imap_port, p.hostname, p.submission_port, p.ca_cert))
        print("  users (log in to sealpost with these):")
        for addr, pw in p.users.items():
            print("    %-22s password %-10s key %s" % (addr, pw, fprs.get(addr, "-")))
        print("  OpenPGP test keys (no passphrase, throwaway) in %s" % desc["gnupg_home"])
        sys.stdout.flush()
        return 0
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ProviderError as e:
        print("provider.py: %s" % e, file=sys.stderr)
        sys.exit(1)
