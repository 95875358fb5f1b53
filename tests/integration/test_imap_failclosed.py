"""sealpost's IMAP side fails closed: when verified TLS to the provider cannot
be had, LOGIN and AUTHENTICATE get NO [UNAVAILABLE] with the reason and no
credential byte leaves; nothing the provider says before TLS reaches the
client; bytes pipelined after STARTTLS are dropped. The providers here are
fakes (imap_fake.py) that record every byte they get."""
import base64
import imaplib
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imap_fake  # noqa: E402

USER = "alice@example.test"
PASSWORD = "SECRET-pw-4711"


def secrets():
    """Every form in which the credentials could travel."""
    plain = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())
    return [PASSWORD.encode(), base64.b64encode(PASSWORD.encode()), plain]


class CertsMixin:
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-imapcerts-")
        cls.certs = imap_fake.Certs(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()


class UpstreamNotSecure(CertsMixin, unittest.TestCase):
    """Each way the provider leg can fail to be secure: the client is told
    why, and the fake never sees a credential."""

    def run_case(self, fake, scheme="imap", expect=None):
        with fake:
            url = "%s://localhost:%d" % (scheme, fake.port)
            with imap_fake.sealpost(url, self.certs.ca) as s:
                for implicit in (False, True):
                    if implicit:
                        c = imap_fake.RawClient(s.imaps_port, s.ssl_context())
                    else:
                        c = imap_fake.RawClient(s.imap_port)
                    greeting = c.readline()
                    self.assertTrue(greeting.startswith(b"* OK [CAPABILITY "), greeting)
                    self.assertIn(b"sealpost ready", greeting)
                    if not implicit:
                        self.assertIn(b"STARTTLS", greeting)
                        c.starttls(s.ssl_context())
                    c.send(b"c1 CAPABILITY\r\n")
                    caps = c.until_tagged(b"c1")
                    self.assertTrue(caps[-1].startswith(b"c1 OK"), caps)
                    c.send(b"a1 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                    reply = c.until_tagged(b"a1")
                    self.assertEqual(len(reply), 1, reply)
                    self.assertTrue(reply[0].startswith(b"a1 NO [UNAVAILABLE] "), reply)
                    if expect:
                        self.assertIn(expect.encode(), reply[0])
                    # A literal password and SASL-IR fare no better.
                    c.send(b"a2 LOGIN {%d}\r\n" % len(USER))
                    self.assertTrue(c.readline().startswith(b"+"))
                    c.send(USER.encode() + b" {%d+}\r\n" % len(PASSWORD) + PASSWORD.encode() + b"\r\n")
                    reply = c.until_tagged(b"a2")
                    self.assertTrue(reply[-1].startswith(b"a2 NO [UNAVAILABLE] "), reply)
                    c.send(b"a3 AUTHENTICATE PLAIN " + secrets()[2] + b"\r\n")
                    reply = c.until_tagged(b"a3")
                    self.assertTrue(reply[-1].startswith(b"a3 NO [UNAVAILABLE] "), reply)
                    c.send(b"a4 LOGOUT\r\n")
                    c.until_tagged(b"a4")
                    # Nothing the provider said before TLS (or at all).
                    for word in (b"PRE-TLS", b"fake.example", b"ALERT", b"injected",
                                 b"COMPRESS"):
                        self.assertNotIn(word, c.seen)
                    c.close()
                got = fake.got()
                self.assertNotIn(b"LOGIN", got.upper())
                self.assertNotIn(b"AUTHENTICATE", got.upper())
                for secret in secrets():
                    self.assertNotIn(secret, got)
                self.assertNotIn(USER.encode(), got)
                self.assertGreaterEqual(fake.connections, 1)
                log = s.log_text()
                self.assertEqual(imap_fake.sanitizer_report(log), [])
                self.assertNotIn(PASSWORD, log)
                return log

    def test_no_starttls(self):
        log = self.run_case(imap_fake.FakeIMAP(self.certs.good, starttls=False),
                            expect="does not offer STARTTLS")
        self.assertIn("does not offer STARTTLS", log)

    def test_starttls_refused_no(self):
        fake = imap_fake.FakeIMAP(self.certs.good, starttls_reply=b"NO TLS is broken today")
        log = self.run_case(fake, expect="refused STARTTLS")
        self.assertIn("refused STARTTLS", log)

    def test_starttls_refused_bad(self):
        fake = imap_fake.FakeIMAP(self.certs.good, starttls_reply=b"BAD unknown command")
        self.run_case(fake, expect="refused STARTTLS")

    def test_injection_after_starttls_ok(self):
        fake = imap_fake.FakeIMAP(self.certs.good,
                                  starttls_reply=b"OK Begin TLS",
                                  inject=b"* OK [ALERT] injected\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN injected\r\n")
        log = self.run_case(fake, expect="Unexpected data after the provider's STARTTLS reply")
        self.assertIn("STARTTLS injection", log)

    def test_untrusted_certificate(self):
        self.run_case(imap_fake.FakeIMAP(self.certs.untrusted),
                      expect="certificate verification failed")

    def test_wrong_host_name(self):
        self.run_case(imap_fake.FakeIMAP(self.certs.wrongname),
                      expect="certificate verification failed")

    def test_expired_certificate(self):
        self.run_case(imap_fake.FakeIMAP(self.certs.expired), expect="expired")

    def test_implicit_tls_untrusted(self):
        self.run_case(imap_fake.FakeIMAP(self.certs.untrusted, implicit_tls=True),
                      scheme="imaps", expect="certificate verification failed")

    def test_implicit_tls_wrong_host_name(self):
        self.run_case(imap_fake.FakeIMAP(self.certs.wrongname, implicit_tls=True),
                      scheme="imaps", expect="certificate verification failed")

    def test_provider_unreachable(self):
        port = harness.free_port()
        with imap_fake.sealpost("imap://localhost:%d" % port, self.certs.ca) as s:
            m = imaplib.IMAP4("127.0.0.1", s.imap_port, timeout=20)
            m.starttls(ssl_context=s.ssl_context())
            with self.assertRaises(imaplib.IMAP4.error) as cm:
                m.login(USER, PASSWORD)
            self.assertIn("[UNAVAILABLE] Cannot reach the provider", str(cm.exception))
            m.logout()


class WithWorkingFake(CertsMixin, unittest.TestCase):
    """A provider whose TLS works, to see what passes and what does not."""

    def test_login_only_after_tls_and_pre_tls_data_dropped(self):
        with imap_fake.FakeIMAP(self.certs.good) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca) as s:
                c = imap_fake.RawClient(s.imap_port)
                greeting = c.readline()
                c.starttls(s.ssl_context())
                c.send(b"a1 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                reply = c.until_tagged(b"a1")
                self.assertTrue(reply[-1].startswith(b"a1 OK"), reply)
                # Filtered: no COMPRESS in what the client sees.
                self.assertIn(b"[CAPABILITY IMAP4rev1 IDLE MOVE]", reply[-1])
                c.send(b"a2 LOGOUT\r\n")
                c.until_tagged(b"a2")
                c.close()
                for word in (b"PRE-TLS", b"fake.example", b"ALERT"):
                    self.assertNotIn(word, greeting + c.seen)
            # The password went only over TLS, and with TLS came nothing
            # from before: capabilities were asked again.
            self.assertNotIn(PASSWORD.encode(), bytes(fake.plain_bytes))
            self.assertIn(PASSWORD.encode(), bytes(fake.tls_bytes))
            self.assertIn(b"CAPABILITY", bytes(fake.tls_bytes))

    def test_failure_texts_replaced(self):
        for reply, expect in (
                (b"NO [AUTHENTICATIONFAILED] No such user alice-x", b"NO [AUTHENTICATIONFAILED] Authentication failed."),
                (b"NO Password wrong for existing user", b"NO [AUTHENTICATIONFAILED] Authentication failed."),
                (b"NO [UNAVAILABLE] Mailbox server down", b"NO [UNAVAILABLE] "),
                (b"NO [ALERT] Your account has been hijacked, visit http://evil.example", b"NO [AUTHENTICATIONFAILED] Authentication failed.")):
            with self.subTest(reply=reply):
                with imap_fake.FakeIMAP(self.certs.good, login_reply=reply) as fake:
                    with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca) as s:
                        c = imap_fake.RawClient(s.imaps_port, s.ssl_context())
                        c.readline()
                        c.send(b"a1 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                        line = c.until_tagged(b"a1")[-1]
                        self.assertTrue(line.startswith(b"a1 " + expect), line)
                        text = reply.split(b"] ")[-1]
                        self.assertNotIn(text, c.seen)
                        self.assertNotIn(b"evil", c.seen)
                        c.close()

    def test_capabilities_filtered_after_login(self):
        def provider(peer, tag):
            while True:
                t, name, _ = peer.command()
                if name == b"CAPABILITY":
                    peer.send(b"* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE BINARY IDLE URLAUTH\r\n"
                              + t + b" OK done\r\n")
                elif name == b"NOOP":
                    peer.send(b"* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE MOVE] news\r\n"
                              + t + b" OK [CAPABILITY IMAP4rev1 CATENATE IDLE] done\r\n")
                else:
                    peer.send(b"* CAPABILITY IMAP4rev1 {16}\r\nCOMPRESS=DEFLATE\r\n"
                              + t + b" OK done\r\n")

        with imap_fake.FakeIMAP(self.certs.good, after_login=provider) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca) as s:
                c = imap_fake.RawClient(s.imaps_port, s.ssl_context())
                c.readline()
                c.send(b"a1 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                c.until_tagged(b"a1")
                c.send(b"a2 CAPABILITY\r\n")
                self.assertEqual(c.until_tagged(b"a2"),
                                 [b"* CAPABILITY IMAP4rev1 IDLE\r\n", b"a2 OK done\r\n"])
                c.send(b"a3 NOOP\r\n")
                self.assertEqual(c.until_tagged(b"a3"),
                                 [b"* OK [CAPABILITY IMAP4rev1 MOVE] news\r\n",
                                  b"a3 OK [CAPABILITY IMAP4rev1 IDLE] done\r\n"])
                # A literal inside a capability list cannot be filtered:
                # the session ends rather than pass it on.
                c.send(b"a4 CHECK\r\n")
                rest = c.until_closed()
                self.assertIn(b"* BYE [UNAVAILABLE]", rest)
                self.assertNotIn(b"COMPRESS", c.seen)
                c.close()

    def test_sasl_ir_for_a_provider_without_it(self):
        # The client may use SASL-IR; a provider without it gets the
        # initial response after its "+", and the client never sees that.
        fake = imap_fake.FakeIMAP(self.certs.good, caps=b"IMAP4rev1 AUTH=PLAIN IDLE")
        with fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca) as s:
                c = imap_fake.RawClient(s.imaps_port, s.ssl_context())
                c.readline()
                c.send(b"a1 AUTHENTICATE PLAIN " + secrets()[2] + b"\r\n")
                lines = c.until_tagged(b"a1")
                self.assertEqual(len(lines), 1, lines)
                self.assertTrue(lines[0].startswith(b"a1 OK"), lines)
                c.close()
                log = s.log_text()
                self.assertIn("initial-response=********", log)
                self.assertNotIn(secrets()[2].decode(), log)
            got = bytes(fake.tls_bytes)
            self.assertIn(b"a1 AUTHENTICATE PLAIN\r\n" + secrets()[2] + b"\r\n", got)

    def test_client_bytes_after_starttls_discarded(self):
        with imap_fake.FakeIMAP(self.certs.good) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca) as s:
                c = imap_fake.RawClient(s.imap_port)
                c.readline()
                # STARTTLS and a LOGIN in one write: the LOGIN was never
                # protected and must vanish.
                c.send(b"s1 STARTTLS\r\nx1 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                line = c.readline()
                self.assertTrue(line.startswith(b"s1 OK"), line)
                self.assertEqual(c.buf, b"")
                c.sock = s.ssl_context().wrap_socket(c.sock, server_hostname="localhost")
                c.send(b"c1 NOOP\r\n")
                lines = c.until_tagged(b"c1")
                self.assertEqual(lines, [b"c1 OK NOOP completed.\r\n"])
                c.send(b"c2 LOGOUT\r\n")
                c.until_tagged(b"c2")
                self.assertNotIn(b"x1", c.seen)
                c.close()
                self.assertTrue(imap_fake.wait_for(lambda: "discarding" in s.log_text()))
            self.assertNotIn(b"LOGIN", fake.got())
            self.assertNotIn(PASSWORD.encode(), fake.got())

    def test_plaintext_login_refused_when_disabled(self):
        with imap_fake.FakeIMAP(self.certs.good) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca,
                                    account={"client_plaintext_auth": False}) as s:
                c = imap_fake.RawClient(s.imap_port)
                greeting = c.readline()
                self.assertIn(b"LOGINDISABLED", greeting)
                self.assertIn(b"STARTTLS", greeting)
                self.assertNotIn(b"AUTH=", greeting)
                c.send(b"a1 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                line = c.until_tagged(b"a1")[-1]
                self.assertTrue(line.startswith(b"a1 NO [PRIVACYREQUIRED]"), line)
                c.starttls(s.ssl_context())
                c.send(b"a2 CAPABILITY\r\n")
                caps = c.until_tagged(b"a2")[0]
                self.assertNotIn(b"LOGINDISABLED", caps)
                self.assertNotIn(b"STARTTLS", caps)
                self.assertIn(b"AUTH=PLAIN", caps)
                c.send(b"a3 LOGIN " + USER.encode() + b" " + PASSWORD.encode() + b"\r\n")
                line = c.until_tagged(b"a3")[-1]
                self.assertTrue(line.startswith(b"a3 OK"), line)
                c.close()
            # Exactly one LOGIN arrived: the one after TLS.
            self.assertEqual(fake.got().count(b"LOGIN"), 1)


if __name__ == "__main__":
    unittest.main()
