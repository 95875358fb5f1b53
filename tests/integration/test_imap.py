"""IMAP through sealpost against the real provider (Dovecot on loopback):
both client legs (STARTTLS and implicit TLS), LOGIN and AUTHENTICATE,
sealpost's own failure text, filtered capabilities, mailbox work with
literals of every kind, IDLE, pipelining and concurrent sessions. Fetched
bytes are compared with what the provider gives a direct client."""
import base64
import imaplib
import os
import re
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imap_fake  # noqa: E402

RawClient = imap_fake.RawClient


def message(subject, body=b"Hello through sealpost.\r\n", extra=b""):
    return (b"From: Sender <sender@example.net>\r\n"
            b"To: someone@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\n"
            b"Message-ID: <" + subject.encode() + b"@example.net>\r\n" + extra +
            b"\r\n" + body)


# A body that stresses framing: lines that look like tagged replies and
# literal announcements, 8-bit bytes, a long line.
TRICKY_BODY = (b"a1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] not a reply\r\n"
               b"* BYE also not a reply {5}\r\n"
               b"\xc3\xa4\xc3\xb6\xc3\xbc \xff\xfe 8-bit\r\n"
               + b"x" * 5000 + b"\r\n"
               b"ends with a brace {12}\r\n"
               b"~{3}\r\n"
               b"+ continuation lookalike\r\n")


class ImapThroughSealpost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = harness.Provider()
        cls.p.__enter__()
        # APPENDed plaintext goes up as written here (encryption of
        # APPEND is tested in test_append.py).
        cls.s = harness.Sealpost(cls.p, account={"encrypt_append": False})
        cls.s.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)
        cls.p.__exit__(None, None, None)

    # -- helpers

    def password(self, user):
        return self.p.users[user]

    def connect(self, leg="implicit"):
        if leg == "implicit":
            return imaplib.IMAP4_SSL("127.0.0.1", self.s.imaps_port,
                                     ssl_context=self.s.ssl_context(), timeout=30)
        m = imaplib.IMAP4("127.0.0.1", self.s.imap_port, timeout=30)
        m.starttls(ssl_context=self.s.ssl_context())
        return m

    def login(self, user, leg="implicit"):
        m = self.connect(leg)
        m.login(user, self.password(user))
        return m

    def direct(self, user):
        m = imaplib.IMAP4_SSL("127.0.0.1", self.p.imaps_port,
                              ssl_context=harness.client_ssl_context(self.p.ca_cert),
                              timeout=30)
        m.login(user, self.password(user))
        return m

    def fetch_by_message_id(self, m, mailbox, msgid):
        typ, _ = m.select(mailbox, readonly=True)
        self.assertEqual(typ, "OK")
        typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
        self.assertEqual(typ, "OK")
        uids = data[0].split()
        self.assertEqual(len(uids), 1, (msgid, data))
        typ, data = m.uid("FETCH", uids[0], "(BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        return data[0][1]

    # -- tests

    def test_login_on_both_legs_and_capabilities(self):
        for leg in ("starttls", "implicit"):
            with self.subTest(leg=leg):
                m = self.connect(leg)
                pre = m.capabilities
                self.assertIn("IMAP4REV1", pre)
                self.assertNotIn("STARTTLS", pre)
                self.assertNotIn("LOGINDISABLED", pre)
                self.assertIn("AUTH=PLAIN", pre)
                typ, data = m.login("alice@example.test", self.password("alice@example.test"))
                self.assertEqual(typ, "OK")
                typ, data = m.capability()
                caps = data[0].decode().upper().split()
                for gone in ("COMPRESS=DEFLATE", "BINARY", "STARTTLS", "CATENATE",
                             "URLAUTH", "LOGINDISABLED"):
                    self.assertNotIn(gone, caps)
                for kept in ("IDLE", "LITERAL+", "UIDPLUS", "MOVE", "CONDSTORE",
                             "QRESYNC", "SPECIAL-USE", "ENABLE", "NAMESPACE", "ID"):
                    self.assertIn(kept, caps)
                self.assertFalse(any(c.startswith("COMPRESS") for c in caps))
                m.logout()

    def test_plain_leg_greeting_offers_starttls(self):
        c = RawClient(self.s.imap_port)
        greeting = c.readline()
        self.assertTrue(greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 "), greeting)
        self.assertIn(b" STARTTLS", greeting)
        self.assertTrue(greeting.endswith(b"] sealpost ready.\r\n"), greeting)
        c.send(b"a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"test\")\r\nd SELECT INBOX\r\ne STARTTLS\r\n")
        lines = c.until_tagged(b"e")
        text = b"".join(lines)
        self.assertIn(b"* CAPABILITY IMAP4rev1", text)
        self.assertIn(b"a OK", text)
        self.assertIn(b"b OK", text)
        self.assertIn(b'* ID ("name" "sealpost")', text)
        self.assertIn(b"d BAD Log in first.", text)
        self.assertTrue(lines[-1].startswith(b"e OK"))
        c.sock = self.s.ssl_context().wrap_socket(c.sock, server_hostname="localhost")
        c.send(b"f CAPABILITY\r\ng STARTTLS\r\nh LOGOUT\r\n")
        lines = c.until_tagged(b"h")
        text = b"".join(lines)
        capline = [x for x in lines if x.startswith(b"* CAPABILITY ")][0]
        self.assertNotIn(b"STARTTLS", capline)
        self.assertIn(b"g BAD", text)
        self.assertIn(b"* BYE", text)
        c.close()

    def test_authenticate_plain(self):
        user = "bob@example.test"
        ir = base64.b64encode(b"\0" + user.encode() + b"\0" + self.password(user).encode())
        # With SASL-IR, on the STARTTLS leg.
        c = RawClient(self.s.imap_port)
        c.readline()
        c.starttls(self.s.ssl_context())
        c.send(b"a1 AUTHENTICATE PLAIN " + ir + b"\r\n")
        line = c.until_tagged(b"a1")[-1]
        self.assertTrue(line.startswith(b"a1 OK"), line)
        c.send(b"a2 SELECT INBOX\r\n")
        self.assertTrue(c.until_tagged(b"a2")[-1].startswith(b"a2 OK"))
        c.close()
        # Without: imaplib answers the "+" itself.
        m = self.connect("implicit")
        typ, _ = m.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" +
                                self.password(user).encode())
        self.assertEqual(typ, "OK")
        self.assertEqual(m.select("INBOX")[0], "OK")
        m.logout()
        # Cancelled by the client.
        c = RawClient(self.s.imaps_port, self.s.ssl_context())
        c.readline()
        c.send(b"a1 AUTHENTICATE PLAIN\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        c.send(b"*\r\n")
        line = c.until_tagged(b"a1")[-1]
        self.assertTrue(line.startswith(b"a1 BAD"), line)
        # And the wrong password.
        bad = base64.b64encode(b"\0" + user.encode() + b"\0wrong")
        c.send(b"a2 AUTHENTICATE PLAIN " + bad + b"\r\n")
        line = c.until_tagged(b"a2")[-1]
        self.assertEqual(line, b"a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        c.close()

    def test_too_many_failed_logins_close_the_connection(self):
        c = RawClient(self.s.imaps_port, self.s.ssl_context())
        c.readline()
        for i in range(4):
            c.send(b'a%d LOGIN "alice@example.test" "wrong"\r\n' % i)
            self.assertEqual(c.until_tagged(b"a%d" % i)[-1],
                             b"a%d NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" % i)
        c.send(b'a9 LOGIN "alice@example.test" "wrong"\r\n')
        rest = c.until_closed(timeout=10)
        self.assertEqual(rest, b"a9 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                               b"* BYE Too many failed logins.\r\n")
        c.close()

    def test_wrong_password_and_unknown_user_look_the_same(self):
        replies = []
        for user, pw in (("alice@example.test", "wrong"), ("nobody@example.test", "wrong"),
                         ("alice@example.test", "")):
            c = RawClient(self.s.imaps_port, self.s.ssl_context())
            c.readline()
            c.send(b'a1 LOGIN "' + user.encode() + b'" "' + pw.encode() + b'"\r\n')
            lines = c.until_tagged(b"a1")
            replies.append(lines)
            # The session stays usable for another try.
            good = b"alice@example.test"
            c.send(b"a2 LOGIN {%d}\r\n" % len(good))
            self.assertTrue(c.readline().startswith(b"+"))
            pw2 = self.password(good.decode()).encode()
            c.send(good + b" {%d}\r\n" % len(pw2))
            self.assertTrue(c.readline().startswith(b"+"))
            c.send(pw2 + b"\r\n")
            self.assertTrue(c.until_tagged(b"a2")[-1].startswith(b"a2 OK"))
            c.close()
        for lines in replies:
            self.assertEqual(lines, [b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"])
        log = self.s.log_text()
        self.assertIn("sending LOGIN to upstream", log)
        self.assertIn("password=********", log)
        for pw in set(self.p.users.values()):
            self.assertNotIn(pw, log)

    def test_list_select_fetch_byte_for_byte(self):
        user = "carol@example.test"
        raw = message("fetch-exact", TRICKY_BODY)
        self.p.deliver(user, raw)
        m = self.login(user, "starttls")
        typ, data = m.list()
        self.assertEqual(typ, "OK")
        names = b"\n".join(data)
        for box in (b"INBOX", b"Sent", b"Drafts", b"Trash"):
            self.assertIn(box, names)
        through = self.fetch_by_message_id(m, "INBOX", "<fetch-exact@example.net>")
        m.logout()
        d = self.direct(user)
        direct = self.fetch_by_message_id(d, "INBOX", "<fetch-exact@example.net>")
        d.logout()
        self.assertEqual(through, direct)
        self.assertTrue(through.endswith(raw[raw.index(b"\r\n\r\n"):]), through[-200:])
        self.assertIn(TRICKY_BODY, through)

    def test_large_message(self):
        user = "carol@example.test"
        body = b"".join(b"%07d " % i + b"y" * 70 + b"\r\n" for i in range(70000))
        raw = message("large-one", body)
        self.p.deliver(user, raw)
        m = self.login(user)
        through = self.fetch_by_message_id(m, "INBOX", "<large-one@example.net>")
        m.logout()
        self.assertGreater(len(through), 5 * 1024 * 1024)
        self.assertIn(body, through)

    def test_append_literals_store_expunge(self):
        user = "bob@example.test"
        m = self.login(user)
        box = "Test-append-%d" % os.getpid()
        self.assertEqual(m.create(box)[0], "OK")
        # Synchronizing literal (imaplib waits for "+").
        raw1 = message("append-sync", TRICKY_BODY)
        typ, data = m.append(box, r"(\Seen)", None, raw1)
        self.assertEqual(typ, "OK", data)
        # Non-synchronizing literal (LITERAL+ is advertised, so used raw),
        # two messages in one command (MULTIAPPEND).
        caps = m.capability()[1][0].upper().split()
        self.assertIn(b"LITERAL+", caps)
        raw2 = message("append-nonsync", b"second\r\n")
        raw3 = message("append-multi", b"third\r\n")
        c = RawClient(self.s.imaps_port, self.s.ssl_context())
        c.readline()
        c.send(b"l LOGIN " + user.encode() + b" " + self.password(user).encode() + b"\r\n")
        c.until_tagged(b"l")
        c.send(b"ap APPEND " + box.encode() + b" {%d+}\r\n" % len(raw2) + raw2 +
               b" {%d+}\r\n" % len(raw3) + raw3 + b"\r\n")
        line = c.until_tagged(b"ap")[-1]
        self.assertTrue(line.startswith(b"ap OK"), line)
        # A synchronizing literal to a mailbox the provider refuses:
        # sealpost takes the message itself ("+"), the provider's NO comes
        # after it, and the session goes on in step.
        c.send(b"bad APPEND NoSuchBox-%d {5}\r\n" % os.getpid())
        self.assertTrue(c.response().startswith(b"+"))
        c.send(b"hello\r\n")
        line = c.until_tagged(b"bad")[-1]
        self.assertTrue(line.startswith(b"bad NO"), line)
        c.send(b"after NOOP\r\n")
        self.assertTrue(c.until_tagged(b"after")[-1].startswith(b"after OK"))
        c.send(b"lo LOGOUT\r\n")
        c.until_tagged(b"lo")
        c.close()

        self.assertEqual(self.fetch_by_message_id(m, box, "<append-sync@example.net>"), raw1)
        self.assertEqual(self.fetch_by_message_id(m, box, "<append-nonsync@example.net>"), raw2)
        self.assertEqual(self.fetch_by_message_id(m, box, "<append-multi@example.net>"), raw3)

        typ, data = m.select(box)
        self.assertEqual(data, [b"3"])
        typ, data = m.store("1:2", "+FLAGS", r"(\Deleted \Flagged)")
        self.assertEqual(typ, "OK")
        self.assertIn(b"\\Deleted", data[0])
        typ, data = m.expunge()
        self.assertEqual(typ, "OK")
        self.assertEqual(len([d for d in data if d]), 2)
        typ, data = m.select(box)
        self.assertEqual(data, [b"1"])
        m.close()
        self.assertEqual(m.delete(box)[0], "OK")
        m.logout()

    def test_idle_wakes_on_new_mail(self):
        user = "alice@example.test"
        c = RawClient(self.s.imap_port)
        c.readline()
        c.starttls(self.s.ssl_context())
        c.send(b"a LOGIN " + user.encode() + b" " + self.password(user).encode() + b"\r\n")
        c.until_tagged(b"a")
        c.send(b"b SELECT INBOX\r\n")
        lines = c.until_tagged(b"b")
        exists = [int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n")][0]
        c.send(b"i IDLE\r\n")
        self.assertTrue(c.readline().startswith(b"+"))
        t0 = time.monotonic()
        self.p.deliver(user, message("idle-wake"))
        c.sock.settimeout(15)
        while True:
            line = c.readline()
            if line.endswith(b" EXISTS\r\n"):
                break
        self.assertLess(time.monotonic() - t0, 10)
        self.assertGreater(int(line.split()[1]), exists)
        c.send(b"DONE\r\n")
        self.assertTrue(c.until_tagged(b"i")[-1].startswith(b"i OK"))
        # Still in step after IDLE.
        c.send(b"n NOOP\r\n")
        self.assertTrue(c.until_tagged(b"n")[-1].startswith(b"n OK"))
        c.close()

    def test_pipelined_commands(self):
        user = "alice@example.test"
        c = RawClient(self.s.imaps_port, self.s.ssl_context())
        c.readline()
        # Login and several commands in one write: all answered, in step.
        c.send(b"p1 LOGIN " + user.encode() + b" " + self.password(user).encode() + b"\r\n"
               b"p2 SELECT INBOX\r\np3 FETCH 1:* (FLAGS)\r\np4 COMPRESS DEFLATE\r\n"
               b"p5 NOOP\r\np6 STARTTLS\r\np7 UID SEARCH ALL\r\n")
        seen = {}
        while len(seen) < 7:
            line = c.response()
            m = re.match(rb"(p\d) (OK|NO|BAD)", line)
            if m:
                seen[m.group(1)] = m.group(2)
        self.assertEqual(seen, {b"p1": b"OK", b"p2": b"OK", b"p3": b"OK", b"p4": b"NO",
                                b"p5": b"OK", b"p6": b"BAD", b"p7": b"OK"})
        # COMPRESS was refused, so the stream is still plain IMAP.
        c.send(b"p8 NOOP\r\n")
        self.assertTrue(c.until_tagged(b"p8")[-1].startswith(b"p8 OK"))
        c.close()

    def test_concurrent_sessions(self):
        errors = []
        users = list(self.p.users)

        def work(i):
            try:
                user = users[i % len(users)]
                m = self.login(user, "implicit" if i % 2 else "starttls")
                box = "Conc-%d-%d" % (os.getpid(), i)
                m.create(box)
                raws = [message("conc-%d-%d" % (i, k), (b"line %d\r\n" % k) * (100 * k + 1))
                        for k in range(5)]
                for raw in raws:
                    typ, _ = m.append(box, None, None, raw)
                    assert typ == "OK"
                m.select(box)
                typ, data = m.fetch("1:*", "(BODY.PEEK[])")
                got = [d[1] for d in data if isinstance(d, tuple)]
                assert got == raws, "session %d fetched other bytes" % i
                m.close()
                m.delete(box)
                m.logout()
            except Exception as e:  # noqa: BLE001
                errors.append("%d: %r" % (i, e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])

    def test_imaps_provider(self):
        acc = {"imap_upstream": "imaps://localhost:%d" % self.p.imaps_port}
        with harness.Sealpost(self.p, account=acc) as s:
            m = imaplib.IMAP4("127.0.0.1", s.imap_port, timeout=30)
            m.starttls(ssl_context=s.ssl_context())
            m.login("alice@example.test", self.password("alice@example.test"))
            self.assertEqual(m.select("INBOX")[0], "OK")
            m.logout()
            self.assertIn("TLS verified", s.log_text())
            self.assertNotIn("upstream STARTTLS", s.log_text())

    def test_session_end_is_logged(self):
        m = self.login("alice@example.test")
        m.logout()
        self.assertTrue(imap_fake.wait_for(lambda: "session ended: logged out" in self.s.log_text()))
        self.assertIn("relaying", self.s.log_text())
        self.assertEqual(imap_fake.sanitizer_report(self.s.log_text()), [])


if __name__ == "__main__":
    unittest.main()
