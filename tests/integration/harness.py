# harness: what integration tests share — the real provider on loopback
# (tests/provider/provider.py) and a sealpost started in front of it.
"""Test harness for integration tests.

    import harness
    with harness.Provider() as p:
        with harness.Sealpost(p) as s:
            imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port,
                              ssl_context=harness.client_ssl_context(s.cert_path))

Sealpost(provider, account=None, global_=None, start=True) writes a config
with one account "test" (alice@example.test) in front of provider, starts
`$SEALPOST_BIN serve --config FILE` and waits until every configured
listener accepts. account / global_ are overrides for the [account test]
and [sealpost] sections; a value of None deletes the key.
"""
import atexit
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("SEALPOST_SOURCE_DIR") or os.path.dirname(os.path.dirname(_HERE))
_PROVIDER_DIR = os.path.join(SOURCE_DIR, "tests", "provider")
if not os.path.exists(os.path.join(_PROVIDER_DIR, "provider.py")):
    _PROVIDER_DIR = os.path.join(os.path.dirname(_HERE), "provider")
sys.path.insert(0, _PROVIDER_DIR)

import provider as _provider  # noqa: E402

Provider = _provider.Provider
ProviderError = _provider.ProviderError
process_tree = _provider.process_tree
wait_port = _provider.wait_port

SEALPOST_BIN = os.environ.get("SEALPOST_BIN") or os.path.join(
    SOURCE_DIR, "build", "proxy", "sealpost")

LISTEN_KEYS = ("imap_listen", "imaps_listen", "smtp_listen", "smtps_listen",
               "pop3_listen", "pop3s_listen")


def free_port(host="127.0.0.1"):
    """A TCP port free on host right now, never returned before by this
    process (chosen below the ephemeral range, so outgoing connections do
    not take it meanwhile)."""
    return _provider.pick_port((host,))


def client_ssl_context(cafile):
    """A verifying TLS client context that trusts only cafile."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def sealpost_bin():
    return SEALPOST_BIN


def _listen_port(value):
    """'127.0.0.1:1143' or '[::1]:1143' -> (host, port)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class SealpostError(RuntimeError):
    pass


# Sealposts not yet cleaned up: stopped and removed when the test process
# exits, so that a forgotten stop() leaves neither a process nor a directory.
_live = set()


@atexit.register
def _cleanup_live():
    for s in list(_live):
        s.close()


def _keep_dirs():
    return os.environ.get("SEALPOST_KEEP_PROVIDER") == "1"


class Sealpost:
    """`sealpost serve` with a generated config in its own temp dir.

    Attributes: dir, config_path, state_dir, cert_path, log_path (log_file),
    stderr_path, pid, proc, imap_port, imaps_port, smtp_port, smtps_port,
    pop3_port, pop3s_port (None when not configured), account (the final
    [account test] dict), global_ (the final [sealpost] dict).
    """

    ACCOUNT = "test"

    def __init__(self, provider, account=None, global_=None, start=True,
                 start_timeout=10.0, args=()):
        self.provider = provider
        self.dir = tempfile.mkdtemp(prefix="sp-")
        os.chmod(self.dir, 0o755)
        self.state_dir = os.path.join(self.dir, "state")
        self.log_path = os.path.join(self.dir, "sealpost.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.config_path = os.path.join(self.dir, "sealpost.conf")
        self.start_timeout = start_timeout
        self.extra_args = list(args)
        self.proc = None
        self.pid = None
        _live.add(self)

        g = {
            "state_dir": self.state_dir,
            "log_level": "debug",
            "log_file": self.log_path,
        }
        a = {
            "address": "alice@example.test",
            "imap_listen": "127.0.0.1:%d" % free_port(),
            "imaps_listen": "127.0.0.1:%d" % free_port(),
            "smtp_listen": "127.0.0.1:%d" % free_port(),
            "smtps_listen": "127.0.0.1:%d" % free_port(),
            "imap_upstream": "imap://%s:%d" % (provider.hostname, provider.imap_port),
            "smtp_upstream": "smtp://%s:%d" % (provider.hostname, provider.submission_port),
            "upstream_ca_file": provider.ca_cert,
        }
        for base, over in ((g, global_), (a, account)):
            for k, v in (over or {}).items():
                if v is None:
                    base.pop(k, None)
                else:
                    base[k] = v
        self.global_, self.account = g, a
        self.write_config()
        self.cert_path = os.path.join(g.get("state_dir", self.state_dir), "tls", "sealpost.crt")
        if g.get("tls_cert"):
            self.cert_path = g["tls_cert"]
        for key in LISTEN_KEYS:
            v = a.get(key)
            setattr(self, key.split("_")[0] + "_port",
                    _listen_port(v)[1] if v else None)
        if start:
            self.start()

    # --------------------------------------------------------------- config

    @staticmethod
    def _fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    def config_text(self):
        out = ["[sealpost]"]
        out += ["%s = %s" % (k, self._fmt(v)) for k, v in self.global_.items()]
        out += ["", "[account %s]" % self.ACCOUNT]
        out += ["%s = %s" % (k, self._fmt(v)) for k, v in self.account.items()]
        return "\n".join(out) + "\n"

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.config_text())

    def listen_addresses(self):
        """[(key, host, port)] of every configured listener."""
        out = []
        for key in LISTEN_KEYS:
            v = self.account.get(key)
            if v:
                host, port = _listen_port(v)
                out.append((key, host, port))
        if self.global_.get("api_listen"):
            host, port = _listen_port(self.global_["api_listen"])
            out.append(("api_listen", host, port))
        return out

    # ------------------------------------------------------------ lifecycle

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """stop() and remove the directory (kept when
        SEALPOST_KEEP_PROVIDER=1)."""
        self.stop()
        _live.discard(self)
        if not _keep_dirs():
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        """Starts sealpost and waits until every configured listener
        accepts; raises SealpostError with the log tail if it died or
        timed out."""
        if not os.access(SEALPOST_BIN, os.X_OK):
            raise SealpostError("SEALPOST_BIN %s is not an executable" % SEALPOST_BIN)
        self._stderr = open(self.stderr_path, "ab")
        argv = [SEALPOST_BIN, "serve", "--config", self.config_path] + self.extra_args
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr)
        self.pid = self.proc.pid
        want = {port for _, _, port in self.listen_addresses()}
        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._stderr.close()
                raise SealpostError("sealpost exited %d at start\n%s" % (rc, self.log_tail()))
            # Listening sockets of this very process: a connection probe
            # would open a session (and an upstream connection).
            have = _provider.listening_ports([self.pid])
            if want <= have:
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise SealpostError("sealpost did not listen on %s within %ss\n%s" % (
                    sorted(want - have), self.start_timeout, self.log_tail()))
            time.sleep(0.01)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM by PID, waits; SIGKILL after timeout. Returns the exit
        status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._stderr.closed:
            self._stderr.close()
        return self.proc.returncode

    def restart(self):
        self.stop()
        return self.start()

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    # ----------------------------------------------------------- inspection

    def log_text(self):
        """sealpost's log_file followed by its stdout/stderr."""
        out = []
        for path in (self.log_path, self.stderr_path):
            try:
                with open(path, "rb") as f:
                    out.append(f.read().decode(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def rss_kb(self):
        """Resident memory of the sealpost process (VmRSS, kB)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise SealpostError("no VmRSS for pid %d" % self.pid)

    def ssl_context(self):
        """A verifying client context trusting sealpost's certificate."""
        return client_ssl_context(self.cert_path)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def thread_count(self):
        return len(os.listdir("/proc/%d/task" % self.pid))


def run_sealpost(*args, timeout=30, **kw):
    """Runs `$SEALPOST_BIN args...` and returns the CompletedProcess (text)."""
    return subprocess.run([SEALPOST_BIN] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, **kw)


def module_world(namespace, factory):
    """(setUpModule, tearDownModule) for a test module whose tests share one
    world in the module global W: factory() builds it; its close() returns
    the sanitizer reports of the sealposts it ran, which fail the module."""
    def set_up():
        namespace["W"] = factory()

    def tear_down():
        w, namespace["W"] = namespace.get("W"), None
        if w is not None:
            reports = w.close()
            if reports:
                raise AssertionError("sealpost: " + "\n\n".join(reports))
    return set_up, tear_down
