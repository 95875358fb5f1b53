# test_smtp_failclosed: the SMTP side refuses to go on without verified TLS
# upstream, never says 250 for a lost message, and keeps its limits.
"""sealpost's SMTP side fails closed: when TLS to the provider cannot be had,
AUTH and MAIL get 454 4.7.0 and no credential byte leaves; a provider that
fails during a message never makes sealpost say 250; limits hold. The
providers here are fakes (smtp_fake.py) that record every byte they get."""
import base64
import os
import socket
import smtplib
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtp_fake  # noqa: E402

PASSWORD = "SECRET-pw-4711"
USER = "alice@example.test"
MESSAGE = (b"From: alice@example.test\r\nTo: bob@example.test\r\n"
           b"Subject: fail closed\r\n\r\nbody\r\n")


def secrets_of(user, password):
    """Every form in which the credentials could travel."""
    plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    return [password.encode(), base64.b64encode(password.encode()), plain,
            base64.b64encode(user.encode())]


class CertsMixin:
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-smtpcerts-")
        cls.certs = smtp_fake.Certs(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()


class UpstreamTLSRefused(CertsMixin, unittest.TestCase):
    """Each way the provider leg can fail to be secure."""

    def run_case(self, fake, url_scheme="smtp", expect=None):
        with fake:
            url = f"{url_scheme}://localhost:{fake.port}"
            with smtp_fake.Sealpost(url, self.certs.ca) as s:
                for implicit in (False, True):
                    if implicit:
                        c = smtplib.SMTP_SSL("127.0.0.1", s.smtps_port, timeout=20,
                                             context=s.client_context())
                    else:
                        c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=20)
                    code, greeting = c.ehlo()
                    self.assertEqual(code, 250)
                    if not implicit:
                        c.starttls(context=s.client_context())
                        c.ehlo()
                    # AUTH is announced so clients try it and learn why.
                    self.assertTrue(c.has_extn("auth"))
                    with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                        c.login(USER, PASSWORD)
                    self.assertEqual(cm.exception.smtp_code, 454)
                    text = cm.exception.smtp_error.decode()
                    self.assertTrue(text.startswith("4.7.0 "), text)
                    if expect:
                        self.assertIn(expect, text)
                    code, text = c.docmd("AUTH", "PLAIN " + secrets_of(USER, PASSWORD)[2].decode())
                    self.assertEqual(code, 454)
                    code, text = c.mail("alice@example.test")
                    self.assertEqual(code, 454)
                    self.assertTrue(text.startswith(b"4.7.0 "))
                    # Nothing the provider said before TLS reaches the client.
                    self.assertNotIn(b"PRE-TLS", greeting)
                    self.assertNotIn(b"fake.example", greeting)
                    c.quit()
                got = fake.got()
                self.assertNotIn(b"AUTH", got.upper())
                self.assertNotIn(b"MAIL FROM", got.upper())
                for secret in secrets_of(USER, PASSWORD):
                    self.assertNotIn(secret, got)
                return s.log_text()

    def test_no_starttls(self):
        log = self.run_case(smtp_fake.FakeSMTP(starttls=False, cert=self.certs.good),
                            expect="does not offer STARTTLS")
        self.assertIn("does not offer STARTTLS", log)

    def test_starttls_refused(self):
        fake = smtp_fake.FakeSMTP(starttls_reply=b"454 4.7.0 TLS not available due to local problem",
                                  cert=self.certs.good)
        self.run_case(fake, expect="refused STARTTLS")

    def test_injection_after_starttls(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good,
                                  inject=b"250-INJECTED\r\n250 AUTH PLAIN\r\n")
        self.run_case(fake, expect="STARTTLS injection")

    def test_untrusted_certificate(self):
        self.run_case(smtp_fake.FakeSMTP(cert=self.certs.untrusted),
                      expect="certificate verification failed")

    def test_wrong_host_name(self):
        self.run_case(smtp_fake.FakeSMTP(cert=self.certs.wrongname),
                      expect="certificate verification failed")

    def test_expired_certificate(self):
        self.run_case(smtp_fake.FakeSMTP(cert=self.certs.expired), expect="expired")

    def test_implicit_tls_untrusted(self):
        fake = smtp_fake.FakeSMTP(implicit_tls=True, cert=self.certs.untrusted)
        self.run_case(fake, url_scheme="smtps", expect="certificate verification failed")

    def test_provider_unreachable(self):
        port = smtp_fake.free_port()
        with smtp_fake.Sealpost(f"smtp://localhost:{port}", self.certs.ca) as s:
            c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=20)
            c.starttls(context=s.client_context())
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                c.login(USER, PASSWORD)
            self.assertEqual(cm.exception.smtp_code, 454)
            self.assertIn(b"Cannot reach the provider", cm.exception.smtp_error)
            c.quit()


def raw_reply(sock_file):
    """Reads one (multi-line) reply; returns (code, [lines])."""
    lines = []
    while True:
        line = sock_file.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line.rstrip(b"\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), lines


class WithGoodProvider(CertsMixin, unittest.TestCase):
    """A provider with working TLS that then misbehaves."""

    def login(self, s, port=None):
        c = smtplib.SMTP_SSL("127.0.0.1", s.smtps_port, timeout=30,
                             context=s.client_context())
        c.login(USER, PASSWORD)
        return c

    def test_auth_passes_and_failure_text_is_replaced(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good,
                                  auth_reply=b"535 5.7.8 No such user: alice@example.test")
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=20)
            c.starttls(context=s.client_context())
            c.ehlo()
            # The provider's list, filtered.
            self.assertTrue(c.has_extn("pipelining"))
            self.assertTrue(c.has_extn("dsn"))
            self.assertFalse(c.has_extn("chunking"))
            self.assertFalse(c.has_extn("binarymime"))
            self.assertFalse(c.has_extn("xclient"))
            self.assertFalse(c.has_extn("starttls"))
            self.assertEqual(c.esmtp_features["auth"].split(), ["PLAIN", "LOGIN"])
            self.assertEqual(c.esmtp_features["size"], "10240000")
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                c.login(USER, PASSWORD)
            self.assertEqual(cm.exception.smtp_code, 535)
            self.assertEqual(cm.exception.smtp_error, b"5.7.8 Authentication credentials invalid")
            c.quit()
            # It did reach the provider, through TLS.
            self.assertIn(secrets_of(USER, PASSWORD)[2], fake.got())
            log = s.log_text()
            for secret in secrets_of(USER, PASSWORD):
                self.assertNotIn(secret.decode(), log)
            self.assertIn("sending AUTH to upstream", log)

    def test_auth_mechanisms_pass_through(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            def fresh():
                c = smtplib.SMTP_SSL("127.0.0.1", s.smtps_port, timeout=20,
                                     context=s.client_context())
                c.ehlo()
                return c
            token = base64.b64encode(b"user=alice@example.test\x01auth=Bearer ya29.tok\x01\x01")
            c = fresh()
            self.assertEqual(c.docmd("AUTH", "XOAUTH2 " + token.decode())[0], 235)
            c.quit()
            c = fresh()
            bearer = base64.b64encode(b"n,a=alice@example.test,\x01auth=Bearer tok\x01\x01")
            self.assertEqual(c.docmd("AUTH", "OAUTHBEARER " + bearer.decode())[0], 235)
            c.quit()
            # An error challenge is relayed as it is; the final refusal in
            # sealpost's words.
            c = fresh()
            code, text = c.docmd("AUTH", "XOAUTH2 YmFk")
            self.assertEqual((code, text), (334, b"eyJzdGF0dXMiOiI0MDEifQ=="))
            code, text = c.docmd("")
            self.assertEqual((code, text), (535, b"5.7.8 Authentication credentials invalid"))
            # "*" cancels an exchange.
            self.assertEqual(c.docmd("AUTH", "LOGIN")[0], 334)
            self.assertEqual(c.docmd("*")[0], 501)
            # Empty initial response "=" passes too.
            self.assertEqual(c.docmd("AUTH", "PLAIN =")[0], 235)
            self.assertEqual(c.docmd("AUTH", "PLAIN")[0], 503)
            c.quit()
            self.assertEqual(fake.auth_lines[:3], [b"AUTH XOAUTH2 " + token,
                                                   b"AUTH OAUTHBEARER " + bearer,
                                                   b"AUTH XOAUTH2 YmFk"])
            self.assertEqual(fake.auth_lines[3:], [b"", b"AUTH LOGIN", b"*", b"AUTH PLAIN ="])
            log = s.log_text()
            self.assertNotIn(token.decode(), log)
            self.assertNotIn(bearer.decode(), log)

    def test_local_answers(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = smtplib.SMTP_SSL("127.0.0.1", s.smtps_port, timeout=20,
                                 context=s.client_context())
            self.assertEqual(c.docmd("MAIL", "FROM:<a@b>")[0], 503)   # no EHLO yet
            self.assertEqual(c.helo("client.example")[0], 250)
            self.assertEqual(c.docmd("HELP")[0], 214)
            self.assertEqual(c.docmd("VRFY", "bob")[0], 252)
            self.assertEqual(c.docmd("VRFY")[0], 501)
            self.assertEqual(c.docmd("EXPN", "list")[0], 502)
            self.assertEqual(c.docmd("BDAT", "10 LAST")[0], 502)
            self.assertEqual(c.docmd("STARTTLS")[0], 503)
            self.assertEqual(c.docmd("RCPT", "TO:<b@c>")[0], 503)
            self.assertEqual(c.docmd("DATA")[0], 503)
            c.quit()
            # A fresh session: ten refusals end one (tested elsewhere).
            c = self.login(s)
            self.assertEqual(c.docmd("MAIL", "FROM:a@b")[0], 501)
            self.assertEqual(c.docmd("MAIL", "FROM:<a@b>")[0], 250)
            self.assertEqual(c.docmd("MAIL", "FROM:<a@b>")[0], 503)
            self.assertEqual(c.docmd("DATA")[0], 554)              # no recipient yet
            self.assertEqual(c.docmd("RCPT", "TO:<>")[0], 501)
            self.assertEqual(c.docmd("RSET")[0], 250)
            self.assertEqual(c.docmd("NOOP")[0], 250)
            c.quit()
            # Only what needed the provider went there.
            got = fake.got()
            self.assertEqual(got.count(b"MAIL FROM"), 1)
            for local in (b"HELP", b"VRFY", b"EXPN", b"BDAT", b"NOOP"):
                self.assertNotIn(local, got)

    def test_plaintext_client_auth(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake:
            url = f"smtp://localhost:{fake.port}"
            # Default on loopback: AUTH before STARTTLS is allowed.
            with smtp_fake.Sealpost(url, self.certs.ca) as s:
                c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=20)
                c.ehlo()
                self.assertTrue(c.has_extn("starttls"))
                self.assertTrue(c.has_extn("auth"))
                c.login(USER, PASSWORD)
                c.quit()
            # client_plaintext_auth = false: no AUTH until TLS.
            with smtp_fake.Sealpost(url, self.certs.ca,
                                    account={"client_plaintext_auth": "false"}) as s:
                c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=20)
                c.ehlo()
                self.assertFalse(c.has_extn("auth"))
                code, text = c.docmd("AUTH", "PLAIN " + secrets_of(USER, PASSWORD)[2].decode())
                self.assertEqual(code, 530)
                self.assertEqual(c.mail(USER)[0], 530)
                c.starttls(context=s.client_context())
                c.ehlo()
                self.assertTrue(c.has_extn("auth"))
                c.login(USER, PASSWORD)
                c.quit()
            self.assertEqual(fake.got().count(secrets_of(USER, PASSWORD)[2]), 2)

    def test_client_idle_timeout(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca,
                                      global_={"idle_timeout": "1"}) as s:
            sock = s.client_context().wrap_socket(
                socket.create_connection(("127.0.0.1", s.smtps_port), timeout=20),
                server_hostname="localhost")
            f = sock.makefile("rb")
            self.assertEqual(raw_reply(f)[0], 220)
            t0 = time.monotonic()
            code, lines = raw_reply(f)
            self.assertEqual(code, 421)
            self.assertIn(b"Idle timeout", lines[0])
            self.assertLess(time.monotonic() - t0, 3)
            self.assertEqual(f.read(), b"")
            sock.close()

    def test_provider_drops_after_data(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, data_mode="drop")
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = self.login(s)
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                c.sendmail(USER, ["bob@example.test"], MESSAGE)
            self.assertEqual(cm.exception.smtp_code // 100, 4)
            self.assertTrue(cm.exception.smtp_error.startswith(b"4.4.2 "))
            c.close()
            # The provider did get the whole message before it dropped.
            self.assertEqual(fake.messages, [MESSAGE])
            self.assertIn("not delivered", s.log_text())

    def test_provider_rejects_message(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, data_mode="reject")
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = self.login(s)
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                c.sendmail(USER, ["bob@example.test"], MESSAGE)
            self.assertEqual(cm.exception.smtp_code, 554)
            self.assertEqual(cm.exception.smtp_error, b"5.7.1 Message rejected by fake policy")
            # The session goes on.
            self.assertEqual(c.noop()[0], 250)
            c.quit()

    def test_provider_250_to_data_is_never_taken_as_delivery(self):
        # A 2xx to DATA itself means no content was sent: the client must
        # not hear that its message was accepted.
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, data_mode="250_to_data")
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = self.login(s)
            with self.assertRaises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)) as cm:
                c.sendmail(USER, ["bob@example.test"], MESSAGE)
            if isinstance(cm.exception, smtplib.SMTPDataError):
                self.assertEqual(cm.exception.smtp_code // 100, 4)
            self.assertEqual(fake.messages, [])
            self.assertIn("answered DATA with 250", s.log_text())

    def test_provider_refusing_data_gets_rset(self):
        # Postfix keeps MAIL/RCPT open after refusing DATA itself; the
        # client's next transaction on the same connection must still work.
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, data_mode="refuse_data")
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = self.login(s)
            # Step by step: smtplib's sendmail would send its own RSET.
            self.assertEqual(c.mail(USER)[0], 250)
            self.assertEqual(c.rcpt("bob@example.test")[0], 250)
            self.assertEqual(c.data(MESSAGE)[0], 554)
            self.assertEqual(c.mail(USER)[0], 250)
            self.assertEqual(fake.rsets, 1)
            c.quit()

    def test_provider_slow_past_command_timeout(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, data_mode="slow", slow_seconds=4)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca,
                                      global_={"command_timeout": "1"}) as s:
            c = self.login(s)
            t0 = time.monotonic()
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                c.sendmail(USER, ["bob@example.test"], MESSAGE)
            self.assertEqual(cm.exception.smtp_code // 100, 4)
            self.assertIn(b"did not answer", cm.exception.smtp_error)
            self.assertLess(time.monotonic() - t0, 3.5)
            c.close()

    def test_client_bytes_after_starttls_discarded(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            sock = socket.create_connection(("127.0.0.1", s.smtp_port), timeout=20)
            f = sock.makefile("rb")
            self.assertEqual(raw_reply(f)[0], 220)
            sock.sendall(b"EHLO x\r\n")
            self.assertEqual(raw_reply(f)[0], 250)
            plain = secrets_of(USER, PASSWORD)[2]
            sock.sendall(b"STARTTLS\r\nAUTH PLAIN " + plain + b"\r\nNOOP\r\n")
            self.assertEqual(raw_reply(f)[0], 220)
            tls = s.client_context().wrap_socket(sock, server_hostname="localhost")
            tf = tls.makefile("rb")
            # The first reply under TLS answers what was sent under TLS.
            tls.sendall(b"HELP\r\n")
            code, _ = raw_reply(tf)
            self.assertEqual(code, 214)
            tls.sendall(b"QUIT\r\n")
            self.assertEqual(raw_reply(tf)[0], 221)
            tls.close()
            self.assertNotIn(b"AUTH", fake.got())
            self.assertIn("discarding", s.log_text())

    def test_message_too_big(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca,
                                      global_={"max_message_size": "2048"}) as s:
            c = self.login(s)
            # Declared too big: refused at MAIL.
            code, text = c.mail(USER, ["SIZE=5000"])
            self.assertEqual(code, 552)
            # Not declared: read to the end, then refused, nothing relayed.
            big = MESSAGE + (b"x" * 70 + b"\r\n") * 40
            self.assertEqual(c.mail(USER)[0], 250)
            self.assertEqual(c.rcpt("bob@example.test")[0], 250)
            code, text = c.data(big)
            self.assertEqual(code, 552)
            self.assertTrue(text.startswith(b"5.3.4 "), text)
            # The session is in step afterwards, and nothing was relayed.
            self.assertEqual(c.noop()[0], 250)
            c.sendmail(USER, ["bob@example.test"], MESSAGE)
            c.quit()
            self.assertEqual(fake.messages, [MESSAGE])
            self.assertEqual(fake.got().count(b"DATA"), 1)

    def test_line_too_long_and_too_many_errors(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            sock = s.client_context().wrap_socket(
                socket.create_connection(("127.0.0.1", s.smtps_port), timeout=20),
                server_hostname="localhost")
            f = sock.makefile("rb")
            self.assertEqual(raw_reply(f)[0], 220)
            sock.sendall(b"NOOP " + b"x" * 70000 + b"\r\nNOOP\r\n")
            code, lines = raw_reply(f)
            self.assertEqual(lines, [b"500 5.5.2 Line too long"])
            self.assertEqual(raw_reply(f)[0], 250)
            for i in range(9):
                sock.sendall(b"BOGUS\r\n")
                code, lines = raw_reply(f)
                self.assertEqual(code, 500)
            code, lines = raw_reply(f)
            self.assertEqual(code, 421)
            self.assertEqual(f.read(), b"")
            sock.close()

    def test_smuggling_stays_content(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            sock = s.client_context().wrap_socket(
                socket.create_connection(("127.0.0.1", s.smtps_port), timeout=20),
                server_hostname="localhost")
            f = sock.makefile("rb")
            self.assertEqual(raw_reply(f)[0], 220)
            plain = secrets_of(USER, PASSWORD)[2]
            sock.sendall(b"EHLO x\r\nAUTH PLAIN " + plain + b"\r\n"
                         b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
            self.assertEqual([raw_reply(f)[0] for _ in range(5)], [250, 235, 250, 250, 354])
            smuggled = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            sock.sendall(b"Subject: s\r\n\r\nhello\n.\n" + smuggled +
                         b"one\r\n.\n" + smuggled + b"two\n.\r\n" + smuggled +
                         b"three\r.\r" + smuggled + b"end\r\n.\r\nQUIT\r\n")
            code, _ = raw_reply(f)
            self.assertEqual(code, 250)
            self.assertEqual(raw_reply(f)[0], 221)
            sock.close()
            # One message, everything in it; the provider saw one MAIL.
            self.assertEqual(len(fake.messages), 1)
            self.assertEqual(fake.got().count(b"MAIL FROM:"), 1 + 4)
            self.assertEqual(fake.got().count(b"\r\nMAIL FROM:<evil"), 4)
            body = fake.messages[0]
            self.assertIn(b"hello\r\n..\r\nMAIL FROM:<evil@example.org>\r\n", body)
            self.assertTrue(body.endswith(b"end\r\n"))
            self.assertNotIn(b"\r\n.\r\n", body)
            self.assertIn("bare LF", s.log_text())

    def test_provider_out_of_step(self):
        # Two replies to one MAIL: the stream can no longer be trusted.
        fake = smtp_fake.FakeSMTP(cert=self.certs.good,
                                  mail_reply=b"250 2.1.0 Ok\r\n250 2.1.5 Ok for a RCPT not sent")
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            c = self.login(s)
            self.assertEqual(c.mail(USER)[0], 250)
            code, text = c.rcpt("bob@example.test")
            self.assertEqual(code, 421)
            self.assertIn(b"unasked", text)
            self.assertNotIn(b"RCPT", fake.got())
            c.close()

    def test_provider_closes_while_idle(self):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, idle_close=1.0)
        with fake, smtp_fake.Sealpost(f"smtp://localhost:{fake.port}", self.certs.ca) as s:
            sock = s.client_context().wrap_socket(
                socket.create_connection(("127.0.0.1", s.smtps_port), timeout=20),
                server_hostname="localhost")
            f = sock.makefile("rb")
            self.assertEqual(raw_reply(f)[0], 220)
            sock.sendall(b"EHLO x\r\n")
            self.assertEqual(raw_reply(f)[0], 250)
            # The provider hangs up after 1 s; sealpost tells the client.
            code, lines = raw_reply(f)
            self.assertEqual(code, 421)
            self.assertIn(b"4.4.2", lines[0])
            self.assertEqual(f.read(), b"")
            sock.close()


if __name__ == "__main__":
    unittest.main()
