# smtp_fake: scripted SMTP providers that misbehave on purpose, test
# certificates, and sealpost started in front of such a fake.
"""Fake SMTP providers that misbehave on purpose, test certificates made with
the openssl command, and a small runner for sealpost in front of a fake.

Every fake records every byte it received (in the clear before TLS, decrypted
after), so a test can prove that credentials never arrived.  All sockets are
on 127.0.0.1; every process started here is stopped by its PID."""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_SOURCE_DIR = os.environ.get("SEALPOST_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEALPOST = os.environ.get("SEALPOST_BIN") or os.path.join(
    _SOURCE_DIR, "build", "proxy", "sealpost")


def free_port():
    """A port free on 127.0.0.1, chosen below the ephemeral range and never
    handed out twice (see harness.free_port): a port taken from the
    ephemeral range can be grabbed by any outgoing connection before
    sealpost binds it."""
    import harness
    return harness.free_port()


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} never accepted")


# ---- certificates -----------------------------------------------------------

from testcerts import Certs  # noqa: E402,F401  (re-exported)


# ---- the fake provider --------------------------------------------------------

class FakeSMTP:
    """A scripted SMTP server on 127.0.0.1.

    starttls:        announce STARTTLS in EHLO
    starttls_reply:  the answer to STARTTLS (TLS starts only after a 220)
    inject:          bytes sent right behind that answer, in the same write
    cert:            (cert, key) for STARTTLS, or None
    implicit_tls:    TLS right away (smtps)
    greeting:        the 220 line
    auth_reply:      the answer to a complete AUTH
    data_mode:       "ok" 250 | "reject" 554 | "drop" close before the reply
                     | "250_to_data" a (broken) 250 to DATA itself, no 354
                     | "refuse_data" 554 to DATA itself, keeping MAIL/RCPT open
                       until RSET (as Postfix does)
                     | "slow" reply after slow_seconds
    idle_close:      seconds after which an idle connection gets 421 and closed
    mail_reply:      the answer to MAIL (more lines than one reply: desync)
    refuse_rcpt_from_mail: RCPT is refused (550 5.1.1) from the n-th MAIL on
    """

    def __init__(self, starttls=True, starttls_reply=b"220 2.0.0 Ready to start TLS",
                 inject=b"", cert=None, implicit_tls=False,
                 greeting=b"220 fake.example ESMTP PRE-TLS-GREETING",
                 auth_reply=b"235 2.7.0 Authentication successful",
                 data_mode="ok", slow_seconds=0.0, idle_close=None,
                 mail_reply=b"250 2.1.0 Ok", refuse_rcpt_from_mail=None,
                 extensions=(b"PIPELINING", b"SIZE 10240000", b"8BITMIME",
                             b"ENHANCEDSTATUSCODES", b"DSN", b"SMTPUTF8",
                             b"CHUNKING", b"BINARYMIME", b"XCLIENT NAME ADDR",
                             b"AUTH PLAIN LOGIN SCRAM-SHA-256-PLUS")):
        self.starttls = starttls
        self.starttls_reply = starttls_reply
        self.inject = inject
        self.cert = cert
        self.implicit_tls = implicit_tls
        self.greeting = greeting
        self.auth_reply = auth_reply
        self.data_mode = data_mode
        self.rsets = 0
        self.mails = 0
        self.refuse_rcpt_from_mail = refuse_rcpt_from_mail
        self.slow_seconds = slow_seconds
        self.idle_close = idle_close
        self.mail_reply = mail_reply
        self.extensions = list(extensions)
        self.received = bytearray()
        self.messages = []      # message contents as received (dot-stuffed)
        self.auth_lines = []    # AUTH commands and the answers to challenges
        self.lock = threading.Lock()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []
        self.accept_thread = threading.Thread(target=self._accept, daemon=True)
        self.accept_thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping = True
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.accept_thread.join(5)
        self.sock.close()
        for t in self.threads:
            t.join(5)

    def got(self):
        with self.lock:
            return bytes(self.received)

    def _context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)
        return ctx

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stopping:
                conn.close()
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        socks = [conn]
        try:
            # Without it every small reply waits for a delayed ACK.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.idle_close if self.idle_close else 30)
            if self.implicit_tls:
                conn = self._context().wrap_socket(conn, server_side=True)
                socks.append(conn)
            self._dialogue(conn, socks)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            for s in reversed(socks):
                try:
                    s.close()
                except OSError:
                    pass

    def _dialogue(self, conn, socks):
        buf = bytearray()
        tls = self.implicit_tls

        def send(line):
            conn.sendall(line + b"\r\n")

        def read_line():
            while b"\n" not in buf:
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    if self.idle_close:
                        send(b"421 4.4.2 fake.example Idle timeout")
                    return None
                if not chunk:
                    return None
                with self.lock:
                    self.received += chunk
                buf.extend(chunk)
            i = buf.index(b"\n") + 1
            line = bytes(buf[:i])
            del buf[:i]
            return line.rstrip(b"\r\n")

        send(self.greeting)
        tx_open = False
        while True:
            line = read_line()
            if line is None:
                return
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                ext = list(self.extensions)
                if self.starttls and not tls:
                    ext.insert(0, b"STARTTLS")
                lines = [b"fake.example"] + ext
                for i, e in enumerate(lines):
                    send(b"250" + (b" " if i == len(lines) - 1 else b"-") + e)
            elif verb == b"STARTTLS":
                conn.sendall(self.starttls_reply + b"\r\n" + self.inject)
                if not self.starttls_reply.startswith(b"220"):
                    continue
                if self.cert is None:
                    return
                buf.clear()
                conn = self._context().wrap_socket(conn, server_side=True)
                socks.append(conn)
                tls = True
            elif verb == b"AUTH":
                parts = line.split(b" ")
                mech = parts[1].upper() if len(parts) > 1 else b""
                ir = parts[2] if len(parts) > 2 else None
                with self.lock:
                    self.auth_lines.append(line)
                challenges = []
                if mech == b"PLAIN" and ir is None:
                    challenges = [b""]
                elif mech == b"LOGIN":
                    challenges = ([] if ir is not None else [b"VXNlcm5hbWU6"]) + [b"UGFzc3dvcmQ6"]
                elif ir == b"YmFk":         # "bad": an OAuth-style error challenge
                    challenges = [b"eyJzdGF0dXMiOiI0MDEifQ=="]
                cancelled = False
                for ch in challenges:
                    send(b"334 " + ch)
                    answer = read_line()
                    if answer is None:
                        return
                    with self.lock:
                        self.auth_lines.append(answer)
                    if answer == b"*":
                        cancelled = True
                        break
                if cancelled:
                    send(b"501 5.7.0 Authentication aborted")
                elif ir == b"YmFk":
                    send(b"535 5.7.8 Username and Password not accepted. Learn more at https://x")
                else:
                    send(self.auth_reply)
            elif verb == b"MAIL" and tx_open:
                send(b"503 5.5.1 Error: nested MAIL command")
            elif verb == b"MAIL":
                with self.lock:
                    self.mails += 1
                send(self.mail_reply)
                tx_open = self.data_mode == "refuse_data"
            elif verb == b"RSET":
                tx_open = False
                with self.lock:
                    self.rsets += 1
                send(b"250 2.0.0 Ok")
            elif verb == b"DATA" and self.data_mode == "refuse_data":
                send(b"554 5.7.1 Data refused by fake policy")
            elif verb == b"RCPT" and self.refuse_rcpt_from_mail is not None and \
                    self.mails >= self.refuse_rcpt_from_mail:
                send(b"550 5.1.1 Recipient refused by fake policy")
            elif verb in (b"RCPT", b"NOOP"):
                send(b"250 2.0.0 Ok")
            elif verb == b"DATA" and self.data_mode == "250_to_data":
                send(b"250 2.0.0 Ok")
            elif verb == b"DATA":
                send(b"354 End data with <CR><LF>.<CR><LF>")
                body = bytearray()
                while True:
                    l = read_line()
                    if l is None:
                        return
                    if l == b".":
                        break
                    body += l + b"\r\n"
                with self.lock:
                    self.messages.append(bytes(body))
                if self.data_mode == "drop":
                    return
                if self.data_mode == "reject":
                    send(b"554 5.7.1 Message rejected by fake policy")
                    continue
                if self.data_mode == "slow":
                    time.sleep(self.slow_seconds)
                send(b"250 2.0.0 Ok: queued as FAKE1")
            elif verb == b"QUIT":
                send(b"221 2.0.0 Bye")
                return
            else:
                send(b"502 5.5.2 Error: command not recognized")


# ---- sealpost in front of a fake ------------------------------------------------

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def wait_sessions_closed(log_text, timeout=5.0):
    """Until every session sealpost accepted has logged its end: one still
    running when sealpost is stopped would race the process exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_text()
        if text.count("] accepting: ") <= text.count("] closing session: "):
            time.sleep(0.05)    # from the last log line to the thread's end
            return
        time.sleep(0.02)


def sanitizer_report(text):
    """The first sanitizer report in a log, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            i = text.index(marker)
            return text[max(0, i - 200):i + 3000]
    return None


class Sealpost:
    """sealpost serve with one account whose smtp_upstream is url. global_
    and account add or override keys. cert_path is sealpost's own
    certificate (trust it in clients)."""

    def __init__(self, url, ca_file, global_=None, account=None):
        self.dir = tempfile.TemporaryDirectory(prefix="sp-smtpfake-")
        d = self.dir.name
        self.smtp_port = free_port()
        self.smtps_port = free_port()
        g = {"state_dir": d + "/state", "log_level": "debug", "command_timeout": "10"}
        g.update(global_ or {})
        a = {"address": "alice@example.test",
             "smtp_listen": f"127.0.0.1:{self.smtp_port}",
             "smtps_listen": f"127.0.0.1:{self.smtps_port}",
             "smtp_upstream": url, "upstream_ca_file": ca_file}
        a.update(account or {})
        self.conf = os.path.join(d, "sealpost.conf")
        with open(self.conf, "w") as f:
            f.write("[sealpost]\n")
            for k, v in g.items():
                f.write(f"{k} = {v}\n")
            f.write("\n[account test]\n")
            for k, v in a.items():
                f.write(f"{k} = {v}\n")
        self.cert_path = os.path.join(d, "state", "tls", "sealpost.crt")
        self.log_path = os.path.join(d, "sealpost.log")
        self.proc = None

    def __enter__(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([SEALPOST, "serve", "--config", self.conf],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_port(self.smtp_port)
            wait_port(self.smtps_port)
        except Exception:
            self.__exit__()
            raise
        return self

    def wait_sessions_closed(self, timeout=5.0):
        """Until every accepted session has logged its end (a session
        still running at shutdown would race the process exit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if text.count("] accepting: ") <= text.count("] closing session: "):
                time.sleep(0.05)    # from the last log line to the thread's end
                return
            time.sleep(0.02)

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            wait_sessions_closed(self.log_text)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.returncode = self.proc.returncode
        self.log.close()
        text = self.log_text()
        self.dir.cleanup()
        # A sanitizer report anywhere fails the test that caused it.
        report = sanitizer_report(text)
        if report and not (exc and exc[0] is not None):
            raise AssertionError("sealpost: " + report)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def client_context(self):
        return ssl.create_default_context(cafile=self.cert_path)
