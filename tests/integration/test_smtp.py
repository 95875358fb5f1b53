# test_smtp: SMTP through sealpost to the real Postfix of the test provider,
# checked by what arrives in the recipients' Maildirs.
"""SMTP through sealpost to a real Postfix: STARTTLS and implicit TLS on both
legs, AUTH passed through, messages arriving in the recipient's Maildir
unchanged (dot-stuffing, 8-bit, SMTPUTF8, big ones), DSN parameters kept,
several transactions, RSET, pipelining, and what the EHLO reply leaves out."""
import base64
import os
import smtplib
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import smtp_fake  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


def body_of(raw):
    """The body of a stored message with line ends made CRLF (Maildir files
    may hold LF)."""
    raw = raw.replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    return body.replace(b"\n", b"\r\n")


def make_message(subject, body, extra_headers=b""):
    return (b"From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: <" +
            subject.replace(b" ", b"-") + b"@example.test>\r\n" + extra_headers +
            b"\r\n" + body)


def read_reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), lines


class SMTPThroughSealpost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.provider = harness.Provider()
        cls.p = cls.provider.__enter__()
        cls.sealpost = harness.Sealpost(cls.p)
        cls.s = cls.sealpost.__enter__()
        cls.pw = cls.p.users

    @classmethod
    def tearDownClass(cls):
        smtp_fake.wait_sessions_closed(cls.s.log_text)
        cls.sealpost.stop()
        report = smtp_fake.sanitizer_report(cls.s.log_text())
        cls.sealpost.__exit__(None, None, None)
        cls.provider.__exit__(None, None, None)
        if report:
            raise AssertionError("sealpost: " + report)

    def client(self, implicit=False, login=ALICE):
        ctx = ssl.create_default_context(cafile=self.s.cert_path)
        if implicit:
            c = smtplib.SMTP_SSL("127.0.0.1", self.s.smtps_port, timeout=30, context=ctx)
        else:
            c = smtplib.SMTP("127.0.0.1", self.s.smtp_port, timeout=30)
            c.starttls(context=ctx)
        c.ehlo()
        if login:
            c.login(login, self.pw[login])
        return c

    def stored(self, user):
        """Every message file in the user's Maildir."""
        out = []
        maildir = self.p.maildir(user)
        for sub in ("new", "cur"):
            d = os.path.join(maildir, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def find_message(self, user, marker, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for raw in self.stored(user):
                if marker in raw:
                    return raw
            time.sleep(0.05)
        self.fail(f"no message with {marker!r} for {user}")

    # ---- authentication ----------------------------------------------------

    def test_auth_plain_and_login_both_legs(self):
        for implicit in (False, True):
            for mech in ("PLAIN", "LOGIN"):
                c = self.client(implicit=implicit, login=None)
                c.user, c.password = ALICE, self.pw[ALICE]
                code, text = c.auth(mech, getattr(c, "auth_" + mech.lower()),
                                    initial_response_ok=(mech == "PLAIN"))
                self.assertEqual(code, 235, (implicit, mech, text))
                c.quit()

    def test_wrong_password_gets_sealpost_text(self):
        c = self.client(login=None)
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            c.login(ALICE, "not-the-password")
        self.assertEqual(cm.exception.smtp_code, 535)
        self.assertEqual(cm.exception.smtp_error, b"5.7.8 Authentication credentials invalid")
        c.quit()
        self.assertNotIn("not-the-password", self.s.log_text())
        self.assertNotIn(base64.b64encode(b"not-the-password").decode(), self.s.log_text())

    def test_mail_before_auth_refused(self):
        c = self.client(login=None)
        code, text = c.mail(ALICE)
        self.assertEqual(code, 530)
        self.assertEqual(text, b"5.7.0 Authentication required")
        # Nor does a recipient get anywhere without it.
        self.assertEqual(c.rcpt(BOB)[0], 503)
        c.quit()

    def test_ehlo_filtered(self):
        plain = smtplib.SMTP("127.0.0.1", self.s.smtp_port, timeout=30)
        plain.ehlo()
        self.assertTrue(plain.has_extn("starttls"))
        c = self.client(login=None)
        for ext in ("pipelining", "size", "8bitmime", "smtputf8", "dsn",
                    "enhancedstatuscodes", "auth"):
            self.assertTrue(c.has_extn(ext), ext)
        for ext in ("chunking", "binarymime", "starttls", "xclient", "xforward"):
            self.assertFalse(c.has_extn(ext), ext)
        self.assertIn("PLAIN", c.esmtp_features["auth"].split())
        c.quit()
        plain.quit()

    # ---- messages ----------------------------------------------------------

    def test_message_arrives_with_dots(self):
        body = (b"first line\r\n"
                b".hidden\r\n"
                b".\r\n"
                b"..two dots\r\n"
                b" .space dot\r\n"
                b"last line\r\n")
        msg = make_message(b"dots test", body)
        for implicit in (False, True):
            c = self.client(implicit=implicit)
            self.assertEqual(c.sendmail(ALICE, [BOB], msg), {})
            c.quit()
        for raw in [self.find_message(BOB, b"dots-test@example.test")]:
            self.assertEqual(body_of(raw), body)

    def test_8bit_and_smtputf8(self):
        body = "Grüße aus Köln — 日本語\r\nété\r\n".encode("utf-8")
        subject = "Ümlaut Subject 8bit".encode("utf-8")
        msg = make_message(subject, body,
                           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"Content-Transfer-Encoding: 8bit\r\n")
        c = self.client()
        c.sendmail(ALICE, [BOB], msg, mail_options=["BODY=8BITMIME"])
        # SMTPUTF8 is passed on too. Dovecot's LMTP does not offer it, so
        # Postfix bounces a message that needs it, naming the reason:
        # proof that the parameter reached Postfix (without it, the same
        # message is delivered, as the first one was).
        marker = b"smtputf8-" + str(os.getpid()).encode()
        c.sendmail(ALICE, [BOB], make_message(subject + b" " + marker, body),
                   mail_options=["BODY=8BITMIME", "SMTPUTF8"])
        c.quit()
        raw = self.find_message(BOB, b"<" + subject.replace(b" ", b"-") + b"@example.test>")
        self.assertEqual(body_of(raw), body)
        self.assertIn(b"Subject: " + subject, raw)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if "SMTPUTF8 is required" in self.p.log_text():
                break
            time.sleep(0.1)
        self.assertIn("SMTPUTF8 is required", self.p.log_text())

    def test_dsn_parameters_reach_postfix(self):
        envid = "SEALPOST-ENVID-" + str(os.getpid())
        msg = make_message(b"dsn test", b"please notify\r\n")
        c = self.client()
        code, _ = c.mail(ALICE, ["RET=HDRS", f"ENVID={envid}", "BODY=8BITMIME"])
        self.assertEqual(code, 250)
        code, _ = c.rcpt(BOB, ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob-orig@example.test"])
        self.assertEqual(code, 250)
        code, _ = c.data(msg)
        self.assertEqual(code, 250)
        c.quit()
        self.find_message(BOB, b"dsn-test@example.test")
        # NOTIFY=SUCCESS makes Postfix report back to alice, quoting the
        # envelope id and original recipient it was given.
        report = self.find_message(ALICE, envid.encode(), timeout=20)
        self.assertIn(b"bob-orig@example.test", report)
        self.assertIn(envid.encode(), report)

    def test_two_transactions_and_rset(self):
        c = self.client()
        # A transaction dropped with RSET delivers nothing.
        self.assertEqual(c.mail(ALICE)[0], 250)
        self.assertEqual(c.rcpt(CAROL)[0], 250)
        self.assertEqual(c.rset()[0], 250)
        c.sendmail(ALICE, [BOB], make_message(b"first of two", b"one\r\n"))
        c.sendmail(ALICE, [BOB, CAROL], make_message(b"second of two", b"two\r\n"))
        self.assertEqual(c.noop()[0], 250)
        c.quit()
        self.find_message(BOB, b"first-of-two@example.test")
        self.find_message(BOB, b"second-of-two@example.test")
        carol = self.find_message(CAROL, b"second-of-two@example.test")
        self.assertIn(b"two", carol)
        # Carol got the second message only.
        self.assertFalse(any(b"first-of-two" in raw for raw in self.stored(CAROL)))

    def test_pipelined_commands_in_one_write(self):
        ctx = ssl.create_default_context(cafile=self.s.cert_path)
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.s.smtps_port),
                                                        timeout=30),
                               server_hostname="localhost")
        f = sock.makefile("rb")
        self.assertEqual(read_reply(f)[0], 220)
        plain = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + self.pw[ALICE].encode())
        # EHLO, AUTH, MAIL, RCPT, RCPT, DATA in one write: each answered in order.
        sock.sendall(b"EHLO pipeline.example\r\nAUTH PLAIN " + plain + b"\r\n"
                     b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
                     b"RCPT TO:<nobody-here@example.test>\r\nDATA\r\n")
        codes = [read_reply(f)[0] for _ in range(6)]
        self.assertEqual(codes[:4], [250, 235, 250, 250])
        self.assertEqual(codes[4] // 100, 5)
        self.assertEqual(codes[5], 354)
        # Dot-stuffed by hand, as a client must.
        msg = make_message(b"pipelined", b"in one go\r\n..leading dot\r\n")
        sock.sendall(msg + b".\r\nNOOP\r\nQUIT\r\n")
        codes = [read_reply(f)[0] for _ in range(3)]
        self.assertEqual(codes, [250, 250, 221])
        sock.close()
        raw = self.find_message(BOB, b"pipelined@example.test")
        self.assertEqual(body_of(raw), b"in one go\r\n.leading dot\r\n")

    def test_big_message_spooled(self):
        line = b"0123456789abcdefghijklmnopqrstuvwxyz.0123456789abcdefghijklmnopqrstuvwxyz\r\n"
        body = b"".join(b"." + line if i % 7 == 0 else line for i in range(40000))
        self.assertGreater(len(body), 2 * 1024 * 1024)
        c = self.client(implicit=True)
        c.sendmail(ALICE, [BOB], make_message(b"big one", body))
        c.quit()
        raw = self.find_message(BOB, b"big-one@example.test", timeout=30)
        self.assertEqual(body_of(raw), body)
        self.assertIn("spooled to disk", self.s.log_text())
        # The spool file never had a name, or lost it at once.
        for root, _, files in os.walk(self.s.state_dir):
            self.assertFalse([f for f in files if "spool" in f], root)

    def test_no_secret_in_log(self):
        c = self.client()
        c.quit()
        log = self.s.log_text()
        self.assertIn("sending AUTH to upstream", log)
        self.assertNotIn(self.pw[ALICE], log)
        plain = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + self.pw[ALICE].encode())
        self.assertNotIn(plain.decode(), log)


class SMTPSUpstream(unittest.TestCase):
    """The provider reached over implicit TLS (smtps://)."""

    def test_send_over_smtps_upstream(self):
        with harness.Provider() as p:
            account = {"smtp_upstream": "smtps://localhost:%d" % p.smtps_port}
            with harness.Sealpost(p, account=account) as s:
                ctx = ssl.create_default_context(cafile=s.cert_path)
                c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=30)
                c.starttls(context=ctx)
                c.login(ALICE, p.users[ALICE])
                c.sendmail(ALICE, [BOB], make_message(b"over smtps", b"implicit\r\n"))
                c.quit()
                paths = p.wait_for_messages(BOB, 1, timeout=15)
                raws = [open(x, "rb").read() for x in paths]
                self.assertTrue(any(b"over-smtps@example.test" in r for r in raws))
                self.assertIn("connected to provider", s.log_text())
                smtp_fake.wait_sessions_closed(s.log_text)
                s.stop()
                self.assertIsNone(smtp_fake.sanitizer_report(s.log_text()))


if __name__ == "__main__":
    unittest.main()
