# test_append: APPEND through sealpost encrypts plaintext to the account's
# own key before it reaches the real Dovecot, which is looked at on disk.
"""APPEND through sealpost: a plaintext message (imaplib's synchronizing
literal, LITERAL+, MULTIAPPEND) is stored on the provider as PGP/MIME that
alice's key decrypts to the original, and is read back through sealpost as
the decrypted view; an already-encrypted message goes up byte for byte; a
decrypted view copied back is encrypted even with encrypt_append off; a
literal beyond max_literal_size is refused cleanly; without an own key the
APPEND is refused unless encrypt_append is off."""
import imaplib
import os
import re
import socket
import sys
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
    def __init__(self):
        self.provider = harness.Provider()
        self.p = self.provider.__enter__()
        self.keys = None
        self.all = []
        try:
            self.keys = gpgkeys.Keyrings([ALICE, BOB])
            self.s = self.sealpost()
        except BaseException:
            self.close()
            raise

    def sealpost(self, account=None, global_=None, home=None):
        g = {"gnupg_home": home or self.keys.sealpost_home(ALICE, [BOB])}
        g.update(global_ or {})
        s = harness.Sealpost(self.p, account=account, global_=g)
        self.all.append(s)
        return s

    def close(self):
        reports = []
        for s in self.all:
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


def plain_message(canary, msgid=None, extra=b""):
    msgid = msgid or "app-%s@example.test" % token()
    return msgid, (b"From: Alice <alice@example.test>\r\n"
                   b"To: Bob <bob@example.test>\r\n"
                   b"Bcc: Carol <carol@example.test>\r\n"
                   b"Subject: Sent copy " + canary + b"\r\n"
                   b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
                   b"Message-ID: <" + msgid.encode() + b">\r\n" + extra +
                   b"MIME-Version: 1.0\r\n"
                   b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                   b"The body " + canary + b".\r\nSecond line.\r\n")


def login(s=None):
    s = s or W.s
    m = imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=s.ssl_context(), timeout=60)
    m.login(ALICE, W.p.users[ALICE])
    return m


def direct():
    m = imaplib.IMAP4_SSL("127.0.0.1", W.p.imaps_port,
                          ssl_context=harness.client_ssl_context(W.p.ca_cert), timeout=60)
    m.login(ALICE, W.p.users[ALICE])
    return m


def new_mailbox():
    box = "App" + token()
    d = direct()
    assert d.create(box)[0] == "OK"
    d.logout()
    return box


def stored(box):
    """The provider's files of a mailbox, oldest first."""
    return W.p.read_messages(ALICE, box)


def body_of(raw):
    return raw.replace(b"\r\n", b"\n").partition(b"\n\n")[2]


def fetch_through(m, box, msgid):
    typ, _ = m.select(box, readonly=True)
    assert typ == "OK"
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
    uids = data[0].split()
    assert len(uids) == 1, data
    typ, data = m.uid("FETCH", uids[0], "(BODY.PEEK[])")
    assert typ == "OK", data
    return data[0][1]


def header_values(raw, name):
    head = raw.replace(b"\r\n", b"\n").partition(b"\n\n")[0]
    out = []
    for line in re.sub(rb"\n[ \t]+", b" ", head).split(b"\n"):
        n, _, v = line.partition(b":")
        if n.strip().lower() == name.lower().encode():
            out.append(v.strip().decode(errors="replace"))
    return out


class Raw:
    """A TLS connection to sealpost's IMAP for hand-written commands."""

    def __init__(self, s=None):
        s = s or W.s
        raw = socket.create_connection(("127.0.0.1", s.imaps_port), timeout=30)
        self.sock = s.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        self.line()
        got = self.cmd(b"l LOGIN " + ALICE.encode() + b" \"" + W.p.users[ALICE].encode() +
                       b"\"\r\n", b"l ")
        assert got[-1].startswith(b"l OK"), got

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until(self, prefix):
        """Lines up to and including the one starting with prefix."""
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(prefix):
                return out

    def cmd(self, data, tag):
        self.sock.sendall(data)
        return self.until(tag)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Append(unittest.TestCase):

    def check_encrypted_file(self, raw, canary, original):
        self.assertNotIn(canary, raw)
        self.assertIn(b"multipart/encrypted", raw)
        self.assertIn(b"application/pgp-encrypted", raw)
        self.assertEqual(header_values(raw, "Subject"), ["..."])
        r = W.keys.decrypt(ALICE, raw)
        self.assertTrue(r.ok and r.decrypted, r)
        inner = r.data.replace(b"\r\n", b"\n")
        # The original body, and its header fields inside (protected).
        self.assertTrue(inner.endswith(body_of(original)), inner[-300:])
        self.assertIn(b"Subject: Sent copy " + canary, inner)
        self.assertIn(b"protected-headers=\"v1\"", inner)
        self.assertNotIn(b"X-Sealpost-", inner)
        # The Sent copy is the user's own: Bcc stays, inside only.
        if b"\nBcc: " in b"\n" + original.replace(b"\r\n", b"\n").partition(b"\n\n")[0]:
            self.assertEqual(header_values(inner, "Bcc"), ["Carol <carol@example.test>"])
            self.assertEqual(header_values(raw, "Bcc"), [])
            self.assertNotIn(b"carol@example.test", raw)
        return inner

    def test_plaintext_to_sent_is_encrypted(self):
        canary = ("CANARY-" + token()).encode()
        msgid, raw = plain_message(canary)
        before = len(stored("Sent"))
        m = login()
        typ, data = m.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(1700000000), raw)
        self.assertEqual(typ, "OK", data)
        self.assertIn(b"APPENDUID", data[0])
        files = stored("Sent")
        self.assertEqual(len(files), before + 1)
        self.check_encrypted_file(files[-1], canary, raw)
        # Flags and date went up as given.
        d = direct()
        d.select("Sent", readonly=True)
        typ, sdata = d.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
        uid = sdata[0].split()[0]
        typ, fdata = d.uid("FETCH", uid, "(FLAGS INTERNALDATE)")
        d.logout()
        self.assertIn(b"\\Seen", fdata[0])
        self.assertIn(b"14-Nov-2023", fdata[0])
        # Through sealpost: the decrypted view with the original body.
        view = fetch_through(m, "Sent", msgid)
        m.logout()
        self.assertEqual(header_values(view, "X-Sealpost-Decryption"), ["ok"])
        self.assertEqual(header_values(view, "Subject"), ["Sent copy " + canary.decode()])
        self.assertEqual(header_values(view, "Bcc"), ["Carol <carol@example.test>"])
        self.assertEqual(body_of(view), body_of(raw))

    def test_encrypted_message_goes_up_unchanged(self):
        box = new_mailbox()
        msgid = "encapp-%s@example.test" % token()
        armored = W.keys.encrypt(BOB, [ALICE], b"Content-Type: text/plain\r\n\r\nsecret\r\n")
        b = "b" + token()
        raw = (b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: ...\r\n"
               b"Message-ID: <" + msgid.encode() + b">\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
               b" boundary=\"" + b.encode() + b"\"\r\n\r\n--" + b.encode() +
               b"\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--" +
               b.encode() + b"\r\nContent-Type: application/octet-stream\r\n\r\n" +
               armored.replace(b"\n", b"\r\n") + b"\r\n--" + b.encode() + b"--\r\n")
        m = login()
        typ, data = m.append(box, None, None, raw)
        m.logout()
        self.assertEqual(typ, "OK", data)
        d = direct()
        d.select(box, readonly=True)
        typ, data = d.fetch("1", "(BODY.PEEK[])")
        d.logout()
        self.assertEqual(data[0][1], raw)

    def test_literal_plus_and_multiappend(self):
        box = new_mailbox()
        c1, c2, c3 = [("CANARY-" + token()).encode() for _ in range(3)]
        (i1, r1), (i2, r2), (i3, r3) = plain_message(c1), plain_message(c2), plain_message(c3)
        c = Raw()
        try:
            caps = b" ".join(c.cmd(b"c CAPABILITY\r\n", b"c ")).upper()
            self.assertIn(b"LITERAL+", caps)
            # LITERAL+: no "+" is waited for.
            got = c.cmd(b"a1 APPEND " + box.encode() + b" {%d+}\r\n" % len(r1) + r1 + b"\r\n",
                        b"a1 ")
            self.assertTrue(got[-1].startswith(b"a1 OK"), got)
            if b"MULTIAPPEND" in caps:
                # Two messages, a synchronizing literal each: sealpost says "+".
                c.sock.sendall(b"a2 APPEND " + box.encode() + b" (\\Seen) {%d}\r\n" % len(r2))
                self.assertTrue(c.line().startswith(b"+"))
                c.sock.sendall(r2 + b" {%d}\r\n" % len(r3))
                self.assertTrue(c.line().startswith(b"+"))
                c.sock.sendall(r3 + b"\r\n")
                got = c.until(b"a2 ")
                self.assertTrue(got[-1].startswith(b"a2 OK"), got)
            c.cmd(b"z LOGOUT\r\n", b"z ")
        finally:
            c.close()
        files = stored(box)
        want = [(c1, r1)] + ([(c2, r2), (c3, r3)] if b"MULTIAPPEND" in caps else [])
        self.assertEqual(len(files), len(want))
        for f in files:
            plain = W.keys.decrypt(ALICE, f).data
            match = [w for w in want if w[0] in plain]
            self.assertEqual(len(match), 1)
            self.check_encrypted_file(f, match[0][0], match[0][1])

    def test_too_large_refused_cleanly(self):
        s = W.sealpost(global_={"max_literal_size": 4096})
        box = new_mailbox()
        canary = ("CANARY-" + token()).encode()
        msgid, raw = plain_message(canary, extra=b"X-Pad: " + b"x" * 5000 + b"\r\n")
        c = Raw(s)
        try:
            got = c.cmd(b"t1 APPEND " + box.encode() + b" {%d}\r\n" % len(raw), b"t1 ")
            self.assertTrue(got[-1].startswith(b"t1 NO [TOOBIG]"), got)
            # The session goes on; a MULTIAPPEND whose second message is
            # too large stores nothing.
            small = plain_message(canary)[1]
            c.sock.sendall(b"t2 APPEND " + box.encode() + b" {%d}\r\n" % len(small))
            self.assertTrue(c.line().startswith(b"+"))
            c.sock.sendall(small + b" {%d}\r\n" % len(raw))
            got = c.until(b"t2 ")
            self.assertTrue(got[-1].startswith(b"t2 NO [TOOBIG]"), got)
            got = c.cmd(b"t3 NOOP\r\n", b"t3 ")
            self.assertTrue(got[-1].startswith(b"t3 OK"), got)
            # A non-synchronizing one cannot be refused: BAD, then BYE.
            c.sock.sendall(b"t4 APPEND " + box.encode() + b" {%d+}\r\n" % len(raw) + raw + b"\r\n")
            lines = []
            try:
                while True:
                    lines.append(c.line())
            except (EOFError, OSError):
                pass
            self.assertTrue(any(l.startswith(b"t4 BAD") for l in lines), lines)
            self.assertTrue(any(l.startswith(b"* BYE") for l in lines), lines)
        finally:
            c.close()
        self.assertEqual(stored(box), [])

    def test_decrypted_view_copied_back_is_encrypted(self):
        s = W.sealpost(account={"encrypt_append": False})
        box = new_mailbox()
        canary = ("CANARY-" + token()).encode()
        msgid, raw = plain_message(canary)
        m = login(s)
        # With encrypt_append off plaintext goes up as it is...
        self.assertEqual(m.append(box, None, None, raw)[0], "OK")
        self.assertIn(canary, stored(box)[0])
        # ...but a view sealpost decrypted is never stored as plaintext.
        view_msgid = "view-%s@example.test" % token()
        _, plain = plain_message(canary, msgid=view_msgid,
                                 extra=b"X-Sealpost-Decryption: ok\r\n"
                                       b"X-Sealpost-Signature: none\r\n")
        self.assertEqual(m.append(box, None, None, plain)[0], "OK")
        m.logout()
        files = [f for f in stored(box) if view_msgid.encode() in f]
        self.assertEqual(len(stored(box)), 2)
        self.assertEqual(len(files), 1)
        self.check_encrypted_file(files[0], canary, plain)

    def test_without_own_key_refused(self):
        home = W.keys.sealpost_home(None, [ALICE, BOB])
        s = W.sealpost(home=home)
        box = new_mailbox()
        canary = ("CANARY-" + token()).encode()
        msgid, raw = plain_message(canary)
        m = login(s)
        typ, data = m.append(box, None, None, raw)
        self.assertEqual(typ, "NO", data)
        self.assertIn(b"[CANNOT]", data[0])
        self.assertEqual(m.noop()[0], "OK")
        m.logout()
        self.assertEqual(stored(box), [])
        s2 = W.sealpost(home=home, account={"encrypt_append": False})
        m = login(s2)
        self.assertEqual(m.append(box, None, None, raw)[0], "OK")
        m.logout()
        self.assertIn(canary, stored(box)[0])

    def test_catenate_refused(self):
        c = Raw()
        try:
            got = c.cmd(b"k1 APPEND INBOX CATENATE (URL \"/INBOX;UID=1\")\r\n", b"k1 ")
            self.assertTrue(got[-1].startswith(b"k1 NO [CANNOT]"), got)
            got = c.cmd(b"k2 NOOP\r\n", b"k2 ")
            self.assertTrue(got[-1].startswith(b"k2 OK"), got)
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
