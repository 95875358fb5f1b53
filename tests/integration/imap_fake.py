"""Fake IMAP providers that misbehave on purpose, test certificates made with
the openssl command, and sealpost in front of a fake.

Every fake records every byte it received (in the clear before TLS,
decrypted after), so a test can prove that credentials never arrived. All
sockets are on 127.0.0.1; every process started here is stopped by its PID
(through harness.Sealpost)."""
import os
import re
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# ---- certificates -----------------------------------------------------------

from testcerts import Certs  # noqa: E402,F401  (re-exported)


# ---- the fake provider ----------------------------------------------------

class _Peer:
    """One connection of the fake: a line/literal reader that records."""

    def __init__(self, fake, sock):
        self.fake = fake
        self.sock = sock
        self.buf = b""
        self.tls = False

    def _record(self, data):
        with self.fake.lock:
            (self.fake.tls_bytes if self.tls else self.fake.plain_bytes).extend(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self._record(data)
        self.buf += data

    def readline(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ConnectionError("line too long")
            self._fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data):
        self.sock.sendall(data)

    def starttls(self, ctx):
        self.buf = b""
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True

    def command(self):
        """A whole command with its literals; answers '+' to
        synchronizing ones. Returns (tag, NAME, line bytes)."""
        line = self.readline()
        whole = line
        while True:
            m = re.search(rb"\{(\d+)(\+?)\}\r?\n$", line)
            if not m:
                break
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            whole += self.read(int(m.group(1)))
            line = self.readline()
            whole += line
        parts = whole.split(b" ", 2)
        tag = parts[0]
        name = parts[1].strip().upper() if len(parts) > 1 else b""
        return tag, name, whole


class FakeIMAP:
    """A small IMAP server for failure cases.

    implicit_tls: TLS from the first byte (imaps://), else STARTTLS.
    cert: (cert, key) the server presents.
    starttls: offer STARTTLS at all; starttls_reply: the tagged text to it
    (e.g. b"NO not today"); inject: bytes sent in the same write right
    after the STARTTLS reply.
    pre_tls_junk: untagged lines sent before TLS (must never reach a
    client).
    caps: capabilities after TLS.
    login_reply: the tagged reply text to LOGIN/AUTHENTICATE.
    after_login(peer, tag): optional; takes over the connection after a
    successful login.

    fake.got() is every byte received; fake.plain_bytes / fake.tls_bytes
    split it by whether TLS was up."""

    def __init__(self, cert, implicit_tls=False, starttls=True,
                 starttls_reply=b"OK Begin TLS negotiation now.", inject=b"",
                 pre_tls_junk=(b"* OK [ALERT] PRE-TLS alert from fake.example",),
                 caps=b"IMAP4rev1 LITERAL+ SASL-IR ID IDLE AUTH=PLAIN COMPRESS=DEFLATE BINARY",
                 login_reply=b"OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE MOVE] Logged in",
                 after_login=None):
        self.cert = cert
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.starttls_reply = starttls_reply
        self.inject = inject
        self.pre_tls_junk = pre_tls_junk
        self.caps = caps
        self.login_reply = login_reply
        self.after_login = after_login
        self.lock = threading.Lock()
        self.plain_bytes = bytearray()
        self.tls_bytes = bytearray()
        self.connections = 0
        self.errors = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.threads = []
        self.peers = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        for p in list(self.peers):
            try:
                p.sock.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(5)

    def got(self):
        with self.lock:
            return bytes(self.plain_bytes) + bytes(self.tls_bytes)

    def _context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        return ctx

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock):
        peer = _Peer(self, sock)
        self.peers.append(peer)
        try:
            self._dialogue(peer)
        except (OSError, ConnectionError, ssl.SSLError, ValueError) as e:
            self.errors.append(repr(e))
        finally:
            try:
                peer.sock.close()
            except OSError:
                pass

    def _caps(self, peer):
        if peer.tls:
            return self.caps
        return b"IMAP4rev1 LOGINDISABLED" + (b" STARTTLS" if self.starttls else b"")

    def _dialogue(self, peer):
        if self.implicit_tls:
            peer.starttls(self._context())
            peer.send(b"* OK [CAPABILITY " + self.caps + b"] fake ready\r\n")
        else:
            peer.send(b"* OK [CAPABILITY " + self._caps(peer) + b"] [ALERT] PRE-TLS greeting from fake.example\r\n")
            for junk in self.pre_tls_junk:
                peer.send(junk + b"\r\n")
        while True:
            tag, name, line = peer.command()
            if name == b"CAPABILITY":
                if not peer.tls:
                    for junk in self.pre_tls_junk:
                        peer.send(junk + b"\r\n")
                peer.send(b"* CAPABILITY " + self._caps(peer) + b"\r\n" + tag + b" OK done\r\n")
            elif name == b"STARTTLS" and not peer.tls and self.starttls:
                peer.send(tag + b" " + self.starttls_reply + b"\r\n" + self.inject)
                if self.starttls_reply.startswith(b"OK"):
                    peer.starttls(self._context())
            elif name in (b"LOGIN", b"AUTHENTICATE"):
                if name == b"AUTHENTICATE" and len(line.split()) < 4:
                    peer.send(b"+ \r\n")
                    peer.readline()
                peer.send(tag + b" " + self.login_reply + b"\r\n")
                if self.login_reply.startswith(b"OK") and self.after_login is not None:
                    self.after_login(peer, tag)
                    return
            elif name == b"LOGOUT":
                peer.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            elif name == b"":
                continue
            else:
                peer.send(tag + b" OK done\r\n")


# ---- a client that shows every byte -------------------------------------

class RawClient:
    """A line-level IMAP client on a socket, to see exactly what arrives."""

    def __init__(self, port, tls_ctx=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.seen = b""

    def readline(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed; so far: %r" % self.seen[-500:])
            self.buf += data
            self.seen += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data
            self.seen += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self):
        """One whole response, its literals inline."""
        line = self.readline()
        whole = line
        while True:
            m = re.search(rb"~?\{(\d+)\}\r\n$", line)
            if not m:
                return whole
            whole += self.read(int(m.group(1)))
            line = self.readline()
            whole += line

    def until_closed(self, timeout=20):
        """Everything until the other side closes."""
        self.sock.settimeout(timeout)
        out = self.buf
        self.buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                # sealpost ends a broken session with a plain end of
                # stream after its BYE, not a TLS close.
                return out
            if not data:
                return out
            out += data
            self.seen += data

    def send(self, data):
        self.sock.sendall(data)

    def until_tagged(self, tag):
        lines = []
        while True:
            line = self.readline()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def starttls(self, ctx, tag=b"s1"):
        self.send(tag + b" STARTTLS\r\n")
        lines = self.until_tagged(tag)
        assert lines[-1].startswith(tag + b" OK"), lines
        assert self.buf == b"", self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def close(self):
        self.sock.close()


# ---- sealpost in front of a fake -------------------------------------------

class _NoProvider:
    """What harness.Sealpost reads from a provider, for a fake one."""

    def __init__(self, port, ca):
        self.hostname = "localhost"
        self.imap_port = port
        self.submission_port = port
        self.ca_cert = ca


def sealpost(url, ca_file, global_=None, account=None):
    """harness.Sealpost with only the IMAP listeners, in front of url."""
    acc = {
        "imap_upstream": url,
        "upstream_ca_file": ca_file,
        "smtp_listen": None,
        "smtps_listen": None,
        "smtp_upstream": None,
    }
    acc.update(account or {})
    g = {"command_timeout": 10, "connect_timeout": 10}
    g.update(global_ or {})
    return harness.Sealpost(_NoProvider(0, ca_file), account=acc, global_=g)


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def sanitizer_report(text):
    """Lines of an ASan/UBSan report in a log, if any."""
    marks = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")
    return [line for line in text.splitlines() if any(m in line for m in marks)]
