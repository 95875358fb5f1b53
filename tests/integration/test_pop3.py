# test_pop3: POP3 through sealpost against the real Dovecot, with real gpg:
# encrypted messages are retrieved decrypted, everything else unchanged.
"""POP3 through sealpost: STLS and implicit TLS on the client side, STLS to
the provider; USER/PASS and AUTH passed through, APOP refused; STAT and LIST
report the sizes of what RETR gives; RETR and TOP of an encrypted message
give its decrypted view, plain messages are byte-identical to Dovecot's own;
UIDL is Dovecot's; DELE/RSET pass through; a provider whose certificate does
not verify gets no credentials; fetchmail retrieves plaintext."""
import base64
import os
import poplib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpgkeys  # noqa: E402
import harness  # noqa: E402
import imap_fake  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"

W = None


class World:
    """The provider, keyrings, one sealpost with POP3 listeners, and the
    messages in alice's maildrop: plain, PGP/MIME and inline PGP."""

    def __init__(self):
        self.provider = harness.Provider()
        self.p = self.provider.__enter__()
        self.keys = None
        self.s = None
        self.extra = []
        try:
            self.keys = gpgkeys.Keyrings([ALICE, BOB])
            self.home = self.keys.sealpost_home(ALICE, [BOB])
            self.s = self.sealpost()
            self.fill()
        except BaseException:
            self.close()
            raise

    def sealpost(self, account=None, home=None):
        a = {
            "pop3_listen": "127.0.0.1:%d" % harness.free_port(),
            "pop3s_listen": "127.0.0.1:%d" % harness.free_port(),
            "pop3_upstream": "pop3://%s:%d" % (self.p.hostname, self.p.pop3_port),
        }
        a.update(account or {})
        s = harness.Sealpost(self.p, account=a, global_={"gnupg_home": home or self.home})
        if self.s is not None:
            self.extra.append(s)
        return s

    def fill(self):
        self.canary = {}
        t = token()
        self.plain_raw = (b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
                          b"Subject: plain " + t.encode() + b"\r\n"
                          b"Message-ID: <plain-" + t.encode() + b"@example.test>\r\n\r\n"
                          b"first line\r\n.a line starting with a dot\r\n..two dots\r\n"
                          b".\r\nlast line\r\n")
        self.p.deliver("alice", self.plain_raw)
        for kind in ("mime", "inline"):
            canary = "CANARY-" + kind + "-" + token()
            self.canary[kind] = canary
            inner = ("Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                     "The secret text %s.\r\n.dotted secret line\r\nSecond line.\r\n" %
                     canary).encode()
            if kind == "mime":
                armored = self.keys.encrypt(BOB, [ALICE], inner, sign=True)
                raw = pgp_mime(outer(kind), armored)
            else:
                armored = self.keys.encrypt(BOB, [ALICE], b"inline " + canary.encode() +
                                            b"\r\n", sign=True)
                raw = (outer(kind) + b"MIME-Version: 1.0\r\n"
                       b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" +
                       armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
            self.p.deliver("alice", raw)
        # A plain message carrying a forged status field.
        self.forged_raw = (b"From: Mallory <m@example.net>\r\nTo: alice@example.test\r\n"
                           b"Subject: forged\r\nX-Sealpost-Decryption: ok\r\n\r\nhello\r\n")
        self.p.deliver("alice", self.forged_raw)
        self.p.wait_for_messages("alice", 4)

    def close(self):
        reports = []
        for s in [self.s] + self.extra:
            if s is None:
                continue
            s.stop()
            r = imap_fake.sanitizer_report(s.log_text())
            if r:
                reports.append("\n".join(r))
            s.close()
        if self.keys is not None:
            self.keys.close()
        self.provider.__exit__(None, None, None)
        return reports


setUpModule, tearDownModule = harness.module_world(globals(), World)


def token():
    return uuid.uuid4().hex[:12]


def outer(kind):
    return (b"From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\n"
            b"Subject: ...\r\nDate: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
            b"Message-ID: <" + kind.encode() + b"-" + token().encode() + b"@example.test>\r\n")


def pgp_mime(outer_headers, armored):
    b = ("enc-" + token()).encode()
    armored = armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (outer_headers + b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n"
            b" boundary=\"" + b + b"\"\r\n\r\n"
            b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            b"--" + b + b"\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
            b"Version: 1\r\n\r\n"
            b"--" + b + b"\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n" +
            armored + b"\r\n--" + b + b"--\r\n")


def through(s=None, stls=True):
    s = s or W.s
    pp = poplib.POP3("127.0.0.1", s.pop3_port, timeout=60)
    if stls:
        pp.stls(context=s.ssl_context())
    return pp


def login(s=None):
    pp = through(s)
    pp.user(ALICE)
    pp.pass_(W.p.users[ALICE])
    return pp


def direct():
    pp = poplib.POP3_SSL("127.0.0.1", W.p.pop3s_port,
                         context=harness.client_ssl_context(W.p.ca_cert), timeout=60)
    pp.user(ALICE)
    pp.pass_(W.p.users[ALICE])
    return pp


def message(lines):
    """poplib's lines (dots removed) -> the message bytes, CRLF ends."""
    return b"".join(line + b"\r\n" for line in lines)


def retr_all(pp):
    out = {}
    for entry in pp.list()[1]:
        n, size = entry.split()
        resp, lines, octets = pp.retr(int(n))
        out[int(n)] = (int(size), message(lines), octets)
    return out


class Pop3(unittest.TestCase):
    def test_capa_before_and_after_stls(self):
        pp = through(stls=False)
        try:
            caps = pp.capa()
            self.assertIn("STLS", caps)
            self.assertIn("USER", caps)
            self.assertIn("RESP-CODES", caps)
            self.assertNotIn("IMPLEMENTATION", caps)
            pp.stls(context=W.s.ssl_context())
            caps = pp.capa()
            self.assertNotIn("STLS", caps)
            self.assertIn("PLAIN", caps.get("SASL", []))
            self.assertIn("TOP", caps)
            self.assertIn("UIDL", caps)
        finally:
            pp.quit()

    def test_sizes_views_and_plain(self):
        pp = login()
        try:
            count, total = pp.stat()
            got = retr_all(pp)
            uidl = pp.uidl()[1]
        finally:
            pp.quit()
        self.assertEqual(count, len(got))
        self.assertEqual(total, sum(size for size, _, _ in got.values()))
        for n, (size, raw, octets) in got.items():
            self.assertEqual(size, len(raw), n)
            self.assertEqual(octets, len(raw), n)
        dp = direct()
        try:
            dgot = retr_all(dp)
            duidl = dp.uidl()[1]
        finally:
            dp.quit()
        self.assertEqual(uidl, duidl)
        seen = set()
        for n, (size, raw, _) in got.items():
            draw = dgot[n][1]
            if b"X-Sealpost-Decryption: ok" in raw:
                self.assertIn(b"BEGIN PGP MESSAGE", draw)
                self.assertNotIn(b"BEGIN PGP MESSAGE", raw)
                for kind, canary in W.canary.items():
                    if canary.encode() in raw:
                        seen.add(kind)
                self.assertIn(b"X-Sealpost-Signature: good", raw)
            elif b"Subject: forged" in draw:
                self.assertNotIn(b"X-Sealpost-", raw)
                self.assertEqual(raw, draw.replace(b"X-Sealpost-Decryption: ok\r\n", b""))
                seen.add("forged")
            else:
                self.assertEqual(raw, draw, n)
                self.assertIn(b".a line starting with a dot", raw)
                seen.add("plain")
        self.assertEqual(seen, {"mime", "inline", "plain", "forged"})
        mime = [raw for _, raw, _ in got.values() if W.canary["mime"].encode() in raw][0]
        self.assertIn(b"\r\n.dotted secret line\r\n", mime)

    def test_top(self):
        pp = login()
        try:
            got = retr_all(pp)
            for n, (_, raw, _) in got.items():
                head, _, body = raw.partition(b"\r\n\r\n")
                top0 = message(pp.top(n, 0)[1])
                self.assertEqual(top0, head + b"\r\n\r\n", n)
                top2 = message(pp.top(n, 2)[1])
                lines = [line + b"\r\n" for line in body.split(b"\r\n")]
                if body.endswith(b"\r\n"):
                    lines.pop()
                self.assertEqual(top2, head + b"\r\n\r\n" + b"".join(lines[:2]), n)
        finally:
            pp.quit()

    def test_implicit_tls_and_auth_plain(self):
        pp = poplib.POP3_SSL("127.0.0.1", W.s.pop3s_port, context=W.s.ssl_context(),
                             timeout=60)
        try:
            self.assertNotIn("STLS", pp.capa())
            blob = base64.b64encode(b"\0" + ALICE.encode() + b"\0" +
                                    W.p.users[ALICE].encode()).decode()
            self.assertTrue(pp._shortcmd("AUTH PLAIN " + blob).startswith(b"+OK"))
            self.assertEqual(pp.stat()[0], 4)
        finally:
            pp.quit()

    def test_auth_login_exchange(self):
        pp = through()
        try:
            self.assertEqual(pp._longcmd("AUTH")[1], [b"PLAIN", b"LOGIN"])
            self.assertTrue(pp._shortcmd("AUTH LOGIN").startswith(b"+ "))
            self.assertTrue(pp._shortcmd(base64.b64encode(ALICE.encode()).decode())
                            .startswith(b"+ "))
            resp = pp._shortcmd(base64.b64encode(W.p.users[ALICE].encode()).decode())
            self.assertTrue(resp.startswith(b"+OK"), resp)
            self.assertEqual(pp.stat()[0], 4)
        finally:
            pp.quit()

    def test_apop_refused_and_bad_password(self):
        pp = through()
        try:
            with self.assertRaises(poplib.error_proto):
                pp._shortcmd("APOP %s %s" % (ALICE, "0" * 32))
            pp.user(ALICE)
            with self.assertRaises(poplib.error_proto) as cm:
                pp.pass_("wrong")
            self.assertIn(b"[AUTH]", cm.exception.args[0])
            pp.user(ALICE)
            pp.pass_(W.p.users[ALICE])
            self.assertEqual(pp.stat()[0], 4)
        finally:
            pp.quit()

    def test_dele_rset(self):
        pp = login()
        try:
            count, total = pp.stat()
            size1 = int(pp.list(1).split()[2])
            pp.dele(1)
            self.assertEqual(pp.stat(), (count - 1, total - size1))
            with self.assertRaises(poplib.error_proto):
                pp.retr(1)
            pp.rset()
            self.assertEqual(pp.stat(), (count, total))
            pp.noop()
        finally:
            pp.quit()
        self.assertEqual(len(W.p.messages("alice")), 4)

    def test_fetchmail(self):
        if shutil.which("fetchmail") is None:
            self.skipTest("fetchmail is not installed")
        d = tempfile.mkdtemp(prefix="sp-fm-")
        try:
            out = os.path.join(d, "mbox")
            rc = os.path.join(d, "fetchmailrc")
            with open(rc, "w") as f:
                f.write('poll localhost port %d protocol pop3 timeout 60\n'
                        '  user "%s" password "%s" is "alice" here\n'
                        '  sslproto tls1.2+ sslcertck sslcertfile "%s"\n'
                        '  keep fetchall\n'
                        '  mda "/bin/sh -c \'cat >> %s\'"\n'
                        % (W.s.pop3s_port, ALICE, W.p.users[ALICE], W.s.cert_path, out))
                f.write("")
            os.chmod(rc, 0o600)
            env = dict(os.environ, HOME=d, FETCHMAILHOME=d)
            r = subprocess.run(["fetchmail", "--ssl", "-f", rc, "--nosyslog", "-v"],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            log = r.stdout.decode(errors="replace")
            self.assertEqual(r.returncode, 0, log)
            with open(out, "rb") as f:
                mbox = f.read()
            for canary in W.canary.values():
                self.assertIn(canary.encode(), mbox)
            self.assertNotIn(b"BEGIN PGP MESSAGE", mbox)
            self.assertIn(b"X-Sealpost-Decryption: ok", mbox)
        finally:
            shutil.rmtree(d, ignore_errors=True)


class Pop3Cost(unittest.TestCase):
    """What sealpost asks the provider: the first STAT probes every message
    with TOP and downloads only the encrypted ones (and the one with forged
    status fields); later sessions find everything in the cache; after a
    restart the views are rendered again to the same bytes (pinned)."""

    def test_probe_cache_and_restart(self):
        s = W.sealpost()
        try:
            mark = W.p.rawlog_files("in")
            pp = login(s)
            stat = pp.stat()
            pp.quit()
            time.sleep(0.3)
            sent = W.p.rawlog_text("in", since=mark)
            self.assertEqual(set(re.findall(rb"TOP (\d+) 8", sent)), {b"1", b"2", b"3", b"4"})
            # 1 is plain; 2 and 3 encrypted; 4 carries a forged status field.
            self.assertEqual(set(re.findall(rb"RETR (\d+)", sent)), {b"2", b"3", b"4"}, sent)
            mark = W.p.rawlog_files("in")
            pp = login(s)
            self.assertEqual(pp.stat(), stat)
            views = retr_all(pp)
            pp.quit()
            time.sleep(0.3)
            sent = W.p.rawlog_text("in", since=mark)
            self.assertNotIn(b"TOP", sent)
            self.assertEqual(set(re.findall(rb"RETR (\d+)", sent)), {b"1"})
            s.restart()
            pp = login(s)
            self.assertEqual(retr_all(pp), views)
            pp.quit()
        finally:
            s.stop()

    def test_gpg_not_checking_integrity_is_a_temporary_failure(self):
        home = W.keys.sealpost_home(ALICE, [BOB])
        with open(os.path.join(home, "gpg.conf"), "a") as f:
            f.write("ignore-mdc-error\n")
        s = W.sealpost(home=home)
        try:
            pp = login(s)
            try:
                with self.assertRaises(poplib.error_proto) as cm:
                    pp.stat()
                self.assertTrue(cm.exception.args[0].startswith(b"-ERR [SYS/TEMP] "),
                                cm.exception.args[0])
                # The plain message is served; the encrypted one is not.
                self.assertIn(b".a line starting with a dot", message(pp.retr(1)[1]))
                with self.assertRaises(poplib.error_proto) as cm:
                    pp.retr(2)
                self.assertTrue(cm.exception.args[0].startswith(b"-ERR [SYS/TEMP] "))
                pp.noop()
            finally:
                pp.quit()
        finally:
            s.stop()

    def test_decrypt_false_serves_as_stored(self):
        s = W.sealpost({"decrypt": "false"})
        try:
            pp = login(s)
            got = retr_all(pp)
            pp.quit()
        finally:
            s.stop()
        dp = direct()
        try:
            self.assertEqual(retr_all(dp), got)
        finally:
            dp.quit()

    def test_plaintext_login_refused_when_configured(self):
        s = W.sealpost({"client_plaintext_auth": "false"})
        try:
            pp = through(s, stls=False)
            try:
                caps = pp.capa()
                self.assertIn("STLS", caps)
                self.assertNotIn("USER", caps)
                self.assertNotIn("SASL", caps)
                with self.assertRaises(poplib.error_proto) as cm:
                    pp.user(ALICE)
                self.assertIn(b"[AUTH]", cm.exception.args[0])
                pp.stls(context=s.ssl_context())
                self.assertIn("USER", pp.capa())
                pp.user(ALICE)
                pp.pass_(W.p.users[ALICE])
                self.assertEqual(pp.stat()[0], 4)
            finally:
                pp.quit()
        finally:
            s.stop()


class FakeProvider:
    """A POP3 server on loopback that records every byte: CAPA without STLS."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.seen = b""
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(10)
                c.sendall(b"+OK fake ready\r\n")
                f = c.makefile("rb")
                try:
                    for line in f:
                        self.seen += line
                        if line.upper().startswith(b"CAPA"):
                            c.sendall(b"+OK\r\nUSER\r\nIMPLEMENTATION fake\r\n.\r\n")
                        elif line.upper().startswith(b"QUIT"):
                            c.sendall(b"+OK\r\n")
                            break
                        else:
                            c.sendall(b"-ERR no\r\n")
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.sock.close()


class FailClosed(unittest.TestCase):
    def check_refused(self, s, expect):
        pp = through(s)
        try:
            with self.assertRaises(poplib.error_proto) as cm:
                pp.user(ALICE)
                pp.pass_(W.p.users[ALICE])
            reply = cm.exception.args[0]
            self.assertTrue(reply.startswith(b"-ERR [SYS/TEMP]"), reply)
            self.assertIn(expect, reply)
        finally:
            pp.quit()

    def test_bad_certificate(self):
        for url in ("pop3s://%s:%d" % (self.mismatch(), W.p.pop3s_port),
                    "pop3://%s:%d" % (self.mismatch(), W.p.pop3_port)):
            s = W.sealpost({"pop3_upstream": url})
            try:
                mark = W.p.log_mark()
                self.check_refused(s, b"TLS")
                self.assertNotIn(ALICE, W.p.log_text(since=mark))
            finally:
                s.stop()
                self.assertEqual(imap_fake.sanitizer_report(s.log_text()), [])

    def mismatch(self):
        return W.p.mismatch_host

    def test_no_stls_at_provider(self):
        fake = FakeProvider()
        try:
            s = W.sealpost({"pop3_upstream": "pop3://127.0.0.1:%d" % fake.port})
            try:
                self.check_refused(s, b"STLS")
            finally:
                s.stop()
            self.assertNotIn(b"USER", fake.seen)
            self.assertNotIn(W.p.users[ALICE].encode(), fake.seen)
            self.assertIn(b"CAPA", fake.seen)
        finally:
            fake.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
