# test_gateway: sealpost as an organisation's filter next to a real Postfix,
# configured with the snippets of docs/gateway.md, checked in the Maildirs.
"""Gateway mode against a real private Postfix (tests/integration/gateway_mta.py)
that hands its users' mail to sealpost after the queue (content_filter) or
before it (smtpd_proxy_filter) and delivers what sealpost re-injects:

- a required domain with a key: delivered as ciphertext;
- a required recipient without a key: bounced with a DSN naming the reason,
  nothing delivered (also when other recipients have keys);
- an exempt domain: delivered as written; X-Sealpost-* not honoured, removed;
- before the queue the sender's client gets the 550 itself;
- the next hop down: 451, Postfix keeps the message, delivers it later;
- sealpost killed in the middle of a message: Postfix retries, it arrives;
- split = true: only the recipients without keys are refused;
- 100 simultaneous connections, with bounded memory;
- a client outside `clients` is refused; one log line per message."""
import email
import email.policy
import os
import signal
import smtplib
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_mta  # noqa: E402
import gpgkeys  # noqa: E402
import harness  # noqa: E402
import smtp_fake  # noqa: E402

ALICE = "alice@org.test"                 # the internal sender
BOB = "bob@partner.example"              # required domain, has a key
DAVE = "dave@partner.example"            # required domain, no key
CAROL = "carol@sub.partner.example"      # required subdomain, has a key
ERIN = "erin@press.example"              # exempt, has a key all the same
FRANK = "frank@elsewhere.example"        # default (opportunistic), has a key
GINA = "gina@elsewhere.example"          # default, no key
COUNSEL = "counsel@lawfirm.example"      # required address, no key
USERS = (ALICE, BOB, DAVE, CAROL, ERIN, FRANK, GINA, COUNSEL)
KEYED = (BOB, CAROL, ERIN, FRANK)

QUIET_SECONDS = 1.5

# A sanitizer build keeps freed memory in its quarantine (256 MiB by
# default): kept small, the memory test measures sealpost, not that.
os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                              ":quarantine_size_mb=8").lstrip(":")

W = None


class World:
    def __init__(self):
        self.keys = gpgkeys.Keyrings([ALICE] + list(KEYED))
        self.gateway_port = harness.free_port()
        self.mta = gateway_mta.OrgMTA(self.gateway_port, USERS)
        self.extra = []
        try:
            home = self.keys.sealpost_home(secret=None, publics=list(KEYED))
            self.home = home
            self.sp = gateway_mta.GatewaySealpost(
                self.gateway_port, self.mta.reinject_port,
                global_={"gnupg_home": home, "command_timeout": "20",
                         "api_listen": "127.0.0.1:%d" % harness.free_port()})
            self.mta.start()
        except BaseException:
            self.close()
            raise

    def sealpost(self, gateway=None, secret=None):
        """Another gateway (its own port) in front of the same next hop;
        the tests speak to it directly as the MTA would. secret: whose
        secret key its keyring holds."""
        port = harness.free_port()
        home = self.keys.sealpost_home(secret=secret, publics=list(KEYED))
        s = gateway_mta.GatewaySealpost(port, self.mta.reinject_port, gateway=gateway,
                                        global_={"gnupg_home": home})
        self.extra.append(s)
        return s

    def close(self):
        reports = []
        for s in [getattr(self, "sp", None)] + self.extra:
            if s is None:
                continue
            if s.running():
                smtp_fake.wait_sessions_closed(s.log_text)
            s.stop()
            r = smtp_fake.sanitizer_report(s.log_text())
            if r:
                reports.append(r)
            s.close()
        self.mta.close()
        self.keys.close()
        return reports


setUpModule, tearDownModule = harness.module_world(globals(), World)


def token():
    return uuid.uuid4().hex[:12]


def build(msgid, to, body, subject="Quarterly figures", extra=b"", frm=ALICE):
    h = ("From: Alice <%s>\r\nTo: %s\r\nSubject: %s\r\n"
         "Date: Mon, 03 Mar 2025 10:00:00 +0000\r\nMessage-ID: <%s>\r\n"
         "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
         % (frm, ", ".join(to), subject, msgid)).encode()
    return h + extra + b"\r\n" + body


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def is_encrypted(raw):
    m = parse(raw)
    return (m.get_content_type() == "multipart/encrypted" and
            (m.get_param("protocol") or "").lower() == "application/pgp-encrypted")


def with_id(msgs, msgid):
    return [m for m in msgs if msgid.encode() in m]


def norm(text):
    return " ".join(text.split())


def done_lines(msgid):
    """The 'message done' lines of sealpost's log file naming msgid."""
    with open(W.sp.log_path, errors="replace") as f:
        return [l for l in f if "message done" in l and msgid in l]


class GatewayCase(unittest.TestCase):
    maxDiff = 4000

    def submit(self, rcpts, raw, port=None):
        """Hands a message to the organisation's Postfix (after-queue
        service unless port is given)."""
        with smtplib.SMTP("127.0.0.1", port or W.mta.submit_port, timeout=120) as c:
            c.sendmail(ALICE, rcpts, raw)

    def delivered(self, user, msgid, n=1, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            found = with_id(W.mta.messages(user), msgid)
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                self.fail("%s: no message %s\n--- postfix\n%s\n--- sealpost\n%s" % (
                    user, msgid, W.mta.log_text()[-3000:], W.sp.log_tail(30)))
            time.sleep(0.05)

    def dsn_for(self, msgid, timeout=20.0):
        """The bounce to ALICE that quotes msgid."""
        deadline = time.monotonic() + timeout
        while True:
            for m in W.mta.messages(ALICE):
                if msgid.encode() in m and b"MAILER-DAEMON" in m:
                    return m
            if time.monotonic() > deadline:
                self.fail("no DSN for %s\n--- postfix\n%s\n--- sealpost\n%s" % (
                    msgid, W.mta.log_text()[-3000:], W.sp.log_tail(30)))
            time.sleep(0.05)

    def assert_none(self, user, msgid):
        time.sleep(QUIET_SECONDS)
        self.assertEqual(with_id(W.mta.messages(user), msgid), [],
                         "%s got %s" % (user, msgid))

    def assert_ciphertext_for(self, user, raw, body):
        self.assertTrue(is_encrypted(raw), raw[:2000])
        self.assertNotIn(body, raw)
        self.assertNotIn(b"Quarterly figures", raw)
        r = W.keys.decrypt(user, raw)
        self.assertTrue(r.decrypted, r)
        self.assertIn(body, r.data)


class AfterQueue(GatewayCase):
    """content_filter: what arrives, what bounces."""

    def test_required_domain_with_key_is_delivered_encrypted(self):
        msgid = token() + "@org.test"
        body = b"The numbers for partner " + token().encode() + b"\r\n"
        self.submit([BOB], build(msgid, [BOB], body))
        (raw,) = self.delivered(BOB, msgid)
        self.assert_ciphertext_for(BOB, raw, body)
        self.assertIn(W.keys.enc_keyid[BOB], W.keys.recipient_keyids(raw))
        # One log line for the message: its Message-ID and the decision,
        # never the Subject.
        lines = done_lines(msgid)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("decision=encrypted", lines[0])
        self.assertNotIn("Quarterly", W.sp.log_text())

    def test_required_subdomain_and_opportunistic_with_key_encrypted(self):
        msgid = token() + "@org.test"
        body = b"subdomain and elsewhere " + token().encode() + b"\r\n"
        self.submit([CAROL, FRANK], build(msgid, [CAROL, FRANK], body))
        (raw_c,) = self.delivered(CAROL, msgid)
        (raw_f,) = self.delivered(FRANK, msgid)
        self.assert_ciphertext_for(CAROL, raw_c, body)
        self.assert_ciphertext_for(FRANK, raw_f, body)

    def test_required_without_key_bounces_with_the_reason(self):
        msgid = token() + "@org.test"
        body = b"for dave " + token().encode() + b"\r\n"
        self.submit([DAVE], build(msgid, [DAVE], body))
        dsn = self.dsn_for(msgid)
        text = dsn.decode(errors="replace")
        # The DSN reads as docs/gateway.md shows it.
        self.assertIn(norm(gateway_mta.doc_snippet("dsn")), norm(text), text)
        self.assertIn("Status: 5.7.1", text)
        self.assert_none(DAVE, msgid)
        lines = done_lines(msgid)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("decision=refused reason=no_key", lines[0])

    def test_required_address_without_key_bounces(self):
        msgid = token() + "@org.test"
        self.submit([COUNSEL], build(msgid, [COUNSEL], b"privileged\r\n"))
        text = self.dsn_for(msgid).decode(errors="replace")
        self.assertIn("no usable OpenPGP key for <%s>" % COUNSEL, norm(text))
        self.assert_none(COUNSEL, msgid)

    def test_one_recipient_without_key_refuses_the_whole_message(self):
        msgid = token() + "@org.test"
        body = b"to bob and dave " + token().encode() + b"\r\n"
        self.submit([BOB, DAVE, GINA], build(msgid, [BOB, DAVE, GINA], body))
        text = norm(self.dsn_for(msgid).decode(errors="replace"))
        # Named: dave only — bob has a key, gina's domain has no rule.
        self.assertRegex(text, r"no usable OpenPGP key for [^()]*<%s>" % DAVE)
        self.assertNotRegex(text, r"no usable OpenPGP key for [^()]*<%s>" % BOB)
        self.assertNotRegex(text, r"no usable OpenPGP key for [^()]*<%s>" % GINA)
        for u in (BOB, DAVE, GINA):
            self.assert_none(u, msgid)

    def test_mixed_recipients_each_as_the_rules_say(self):
        msgid = token() + "@org.test"
        body = b"to bob, erin and gina " + token().encode() + b"\r\n"
        self.submit([BOB, ERIN, GINA], build(msgid, [BOB, ERIN, GINA], body))
        (raw,) = self.delivered(BOB, msgid)
        self.assert_ciphertext_for(BOB, raw, body)
        for u in (ERIN, GINA):
            (got,) = self.delivered(u, msgid)
            self.assertFalse(is_encrypted(got), u)
            self.assertIn(body.replace(b"\r\n", b"\n"), got.replace(b"\r\n", b"\n"))

    def test_exempt_domain_delivered_as_written(self):
        msgid = token() + "@org.test"
        body = b"press release " + token().encode() + b"\r\n"
        # Not honoured (override_headers is off) and removed all the same.
        raw = build(msgid, [ERIN], body, extra=b"X-Sealpost-Encrypt: require\r\n")
        self.submit([ERIN], raw)
        (got,) = self.delivered(ERIN, msgid)
        self.assertFalse(is_encrypted(got))
        self.assertNotIn(b"X-Sealpost", got)
        self.assertTrue(got.replace(b"\r\n", b"\n").endswith(b"\n\n" + body.replace(b"\r\n", b"\n")),
                        got)
        self.assertIn(b"Subject: Quarterly figures", got)

    def test_default_without_key_delivered_as_written(self):
        msgid = token() + "@org.test"
        body = b"hello gina " + token().encode() + b"\r\n"
        self.submit([GINA], build(msgid, [GINA], body))
        (got,) = self.delivered(GINA, msgid)
        self.assertFalse(is_encrypted(got))
        self.assertIn(body.replace(b"\r\n", b"\n"), got.replace(b"\r\n", b"\n"))


class Metrics(GatewayCase):
    def test_counters_on_the_api(self):
        before = W.sp.metrics()
        ok_id, no_id = token() + "@org.test", token() + "@org.test"
        self.submit([BOB], build(ok_id, [BOB], b"counted\r\n"))
        self.submit([DAVE], build(no_id, [DAVE], b"refused\r\n"))
        self.delivered(BOB, ok_id)
        self.dsn_for(no_id)
        after = W.sp.metrics()

        def delta(name):
            return after.get(name, 0) - before.get(name, 0)
        g = '{mode="gateway"}'
        self.assertEqual(delta("sealpost_smtp_messages_in_total" + g), 2, after)
        self.assertEqual(delta("sealpost_smtp_messages_encrypted_total" + g), 1)
        self.assertEqual(delta('sealpost_smtp_messages_refused_total'
                               '{mode="gateway",reason="no_key"}'), 1)
        self.assertGreaterEqual(delta("sealpost_smtp_connections_total" + g), 1)
        self.assertEqual(delta("sealpost_smtp_message_duration_seconds_count" + g), 2)
        self.assertEqual(delta('sealpost_smtp_message_duration_seconds_bucket'
                               '{mode="gateway",le="+Inf"}'), 2)
        self.assertEqual(delta("sealpost_smtp_messages_in_total" + '{mode="submission"}'), 0)


class BeforeQueue(GatewayCase):
    """smtpd_proxy_filter: the sender's client hears sealpost's answer."""

    def test_refusal_reaches_the_client(self):
        msgid = token() + "@org.test"
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.submit([DAVE], build(msgid, [DAVE], b"x\r\n"), port=W.mta.before_port)
        self.assertEqual(cm.exception.smtp_code, 550)
        want = gateway_mta.doc_snippet("before-queue reply").strip()
        self.assertEqual("550 " + cm.exception.smtp_error.decode(), want)
        self.assert_none(DAVE, msgid)

    def test_key_holder_delivered_encrypted(self):
        msgid = token() + "@org.test"
        body = b"before the queue " + token().encode() + b"\r\n"
        self.submit([BOB], build(msgid, [BOB], body), port=W.mta.before_port)
        (raw,) = self.delivered(BOB, msgid)
        self.assert_ciphertext_for(BOB, raw, body)


class Faults(GatewayCase):
    """Postfix is the queue: nothing is lost when sealpost or the next hop
    is away."""

    def test_next_hop_down_451_then_delivered(self):
        msgid = token() + "@org.test"
        body = b"while the next hop is down " + token().encode() + b"\r\n"
        mark = len(W.mta.log_text())
        W.mta.set_reinject(False)
        try:
            self.submit([BOB], build(msgid, [BOB], body))
            m = W.mta.wait_log(r"status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: "
                               r"451 4\.4\.1 [^)]*\)", since=mark)
            self.assertIn("next hop", m.group(0))
            self.assertEqual(len(W.mta.queue()), 1, W.mta.queue())
            self.assert_none(BOB, msgid)
        finally:
            W.mta.set_reinject(True)
        W.mta.flush()
        (raw,) = self.delivered(BOB, msgid, timeout=30)
        self.assert_ciphertext_for(BOB, raw, body)
        self.assertEqual(W.mta.queue(), [])

    def test_sealpost_killed_mid_message_is_retried(self):
        msgid = token() + "@org.test"
        marker = token().encode()
        # Big enough that sealpost is still reading it when it is killed.
        body = (b"x" * 998 + b"\r\n") * (24 * 1024) + marker + b"\r\n"
        mark = len(W.sp.log_text())
        pf_mark = len(W.mta.log_text())
        t = threading.Thread(target=self.submit, args=([BOB], build(msgid, [BOB], body)))
        t.start()
        try:
            deadline = time.monotonic() + 30
            while "-> body" not in W.sp.log_text()[mark:]:
                self.assertLess(time.monotonic(), deadline, W.sp.log_tail())
                time.sleep(0.002)
            os.kill(W.sp.pid, signal.SIGKILL)
            self.assertEqual(W.sp.stop(), -signal.SIGKILL)
        finally:
            t.join(60)
        W.mta.wait_log(r"status=deferred", since=pf_mark)
        self.assertEqual(with_id(W.mta.messages(BOB), msgid), [])
        W.sp.start()
        W.mta.flush()
        got = self.delivered(BOB, msgid, timeout=60)
        self.assertIn(len(got), (1, 2))
        r = W.keys.decrypt(BOB, got[0])
        self.assertTrue(r.decrypted, r)
        self.assertIn(marker, r.data)


class Direct(GatewayCase):
    """The gateway spoken to directly, as an MTA would."""

    def test_split_refuses_only_recipients_without_keys(self):
        s = W.sealpost({"split": "true"})
        msgid = token() + "@org.test"
        body = b"split " + token().encode() + b"\r\n"
        with smtplib.SMTP("127.0.0.1", s.gateway_port, timeout=60) as c:
            c.ehlo("mx.org.test")
            self.assertEqual(c.mail(ALICE)[0], 250)
            code, text = c.rcpt(DAVE)
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.7.1 <%s>" % DAVE.encode(), text)
            self.assertEqual(c.rcpt(BOB)[0], 250)
            self.assertEqual(c.rcpt(GINA)[0], 250)
            code, text = c.data(build(msgid, [BOB, DAVE, GINA], body))
            self.assertEqual(code, 250, text)
        (raw,) = self.delivered(BOB, msgid)
        self.assert_ciphertext_for(BOB, raw, body)
        (plain,) = self.delivered(GINA, msgid)
        self.assertFalse(is_encrypted(plain))
        self.assert_none(DAVE, msgid)

    def direct(self, s, rcpts, raw):
        with smtplib.SMTP("127.0.0.1", s.gateway_port, timeout=60) as c:
            c.ehlo("mx.org.test")
            self.assertEqual(c.mail(ALICE)[0], 250)
            for r in rcpts:
                self.assertEqual(c.rcpt(r)[0], 250)
            return c.data(raw)

    def test_sign_key_signs_encrypted_and_plain_copies(self):
        s = W.sealpost({"sign_key": ALICE}, secret=ALICE)
        msgid = token() + "@org.test"
        body = b"signed by the organisation " + token().encode() + b"\r\n"
        code, text = self.direct(s, [BOB, GINA], build(msgid, [BOB, GINA], body))
        self.assertEqual(code, 250, text)
        (raw,) = self.delivered(BOB, msgid)
        self.assertTrue(is_encrypted(raw))
        r = W.keys.decrypt(BOB, raw)
        self.assertTrue(r.decrypted, r)
        self.assertIn(W.keys.fpr[ALICE], r.validsig, r)
        # The organisation's key is not a recipient of the copy.
        self.assertEqual(W.keys.recipient_keyids(raw), [W.keys.enc_keyid[BOB]])
        (plain,) = self.delivered(GINA, msgid)
        self.assertEqual(parse(plain).get_content_type(), "multipart/signed")
        self.assertIn(body.replace(b"\r\n", b"\n"), plain.replace(b"\r\n", b"\n"))

    def test_unusable_sign_key_defers(self):
        s = W.sealpost({"sign_key": "nobody@org.test"})
        msgid = token() + "@org.test"
        code, text = self.direct(s, [BOB], build(msgid, [BOB], b"x\r\n"))
        self.assertEqual(code, 451, text)
        self.assertIn(b"4.7.0 The gateway's signing key <nobody@org.test> is not usable", text)
        self.assert_none(BOB, msgid)

    def test_override_headers_when_allowed(self):
        s = W.sealpost({"override_headers": "true"})
        msgid = token() + "@org.test"
        body = b"the sender asks " + token().encode() + b"\r\n"
        # Exempt, but the sender requires encryption: honoured.
        code, text = self.direct(s, [ERIN], build(msgid, [ERIN], body,
                                                  extra=b"X-Sealpost-Encrypt: require\r\n"))
        self.assertEqual(code, 250, text)
        (raw,) = self.delivered(ERIN, msgid)
        self.assert_ciphertext_for(ERIN, raw, body)
        self.assertNotIn(b"X-Sealpost", raw)
        # A sender's "never" overrides even a required domain: that is what
        # turning override_headers on allows (docs/gateway.md).
        msgid2 = token() + "@org.test"
        code, text = self.direct(s, [DAVE], build(msgid2, [DAVE], body,
                                                  extra=b"X-Sealpost-Encrypt: never\r\n"))
        self.assertEqual(code, 250, text)
        (got,) = self.delivered(DAVE, msgid2)
        self.assertFalse(is_encrypted(got))
        self.assertNotIn(b"X-Sealpost", got)

    def test_client_outside_the_networks_is_refused(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", W.gateway_port))
        with sock:
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"554 5.7.1 127.0.0.2 "), data)

    def test_no_auth_offered(self):
        with smtplib.SMTP("127.0.0.1", W.gateway_port, timeout=30) as c:
            code, _ = c.ehlo("mx.org.test")
            self.assertEqual(code, 250)
            self.assertFalse(c.has_extn("auth"))

    def test_slow_next_hop_holds_up_only_its_own_connections(self):
        fake = smtp_fake.FakeSMTP(starttls=False, data_mode="slow", slow_seconds=3.0,
                                  greeting=b"220 slow.example ESMTP")
        self.addCleanup(fake.stop)
        port = harness.free_port()
        home = W.keys.sealpost_home(secret=None, publics=list(KEYED))
        s = gateway_mta.GatewaySealpost(port, fake.port, global_={"gnupg_home": home})
        W.extra.append(s)
        n = 8
        done = [None] * n

        def one(i):
            t0 = time.monotonic()
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
                c.sendmail(ALICE, [GINA], build(token() + "@org.test", [GINA], b"slow\r\n"))
            done[i] = time.monotonic() - t0

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        # While all of them wait for the next hop, a new connection is
        # greeted and served at once.
        time.sleep(1.0)
        t1 = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            self.assertEqual(c.ehlo("mx.org.test")[0], 250)
            self.assertEqual(c.mail(ALICE)[0], 250)
            self.assertEqual(c.rcpt(GINA)[0], 250)
            c.rset()
        self.assertLess(time.monotonic() - t1, 1.0)
        for t in threads:
            t.join(60)
        self.assertTrue(all(d is not None for d in done), done)
        # In parallel: about one slow reply's time, not n of them.
        self.assertLess(time.monotonic() - t0, 3.0 * 3, done)
        self.assertEqual(len(fake.messages), n)

    def next_hop_tls_case(self, cert):
        fake = smtp_fake.FakeSMTP(starttls=True, cert=cert, greeting=b"220 tls.example ESMTP")
        self.addCleanup(fake.stop)
        certs = smtp_fake.Certs()
        home = W.keys.sealpost_home(secret=None, publics=list(KEYED))
        port = harness.free_port()
        s = gateway_mta.GatewaySealpost(
            port, fake.port, global_={"gnupg_home": home},
            gateway={"next_hop": "localhost:%d" % fake.port, "next_hop_tls": "starttls",
                     "next_hop_ca_file": certs.ca})
        W.extra.append(s)
        msgid = token() + "@org.test"
        body = b"over TLS " + token().encode() + b"\r\n"
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
            c.ehlo("mx.org.test")
            code, text = c.mail(ALICE)
            if code != 250:
                return fake, code, text, msgid, body
            self.assertEqual(c.rcpt(BOB)[0], 250)
            code, text = c.data(build(msgid, [BOB], body))
        return fake, code, text, msgid, body

    def test_next_hop_starttls_verified(self):
        fake, code, text, msgid, body = self.next_hop_tls_case(smtp_fake.Certs().good)
        self.assertEqual(code, 250, text)
        self.assertEqual(len(fake.messages), 1)
        raw = fake.messages[0]
        self.assertIn(msgid.encode(), raw)
        self.assertTrue(is_encrypted(raw), raw[:500])

    def test_next_hop_bad_certificate_is_a_temporary_failure(self):
        fake, code, text, _, _ = self.next_hop_tls_case(smtp_fake.Certs().wrongname)
        self.assertEqual(code, 451, text)
        self.assertTrue(text.startswith(b"4.4.1 The next hop localhost:"), text)
        self.assertEqual(fake.messages, [])

    def test_100_concurrent_connections_bounded_memory(self):
        n = 100
        body = (b"concurrent " + b"y" * 70 + b"\r\n") * 256     # ~20 KiB

        def round_():
            barrier = threading.Barrier(n + 1, timeout=120)
            results = [None] * n
            ids = [token() + "@org.test" for _ in range(n)]

            def one(i):
                rcpt = BOB if i % 2 == 0 else ERIN
                try:
                    with smtplib.SMTP("127.0.0.1", W.gateway_port, timeout=120) as c:
                        c.ehlo("mx.org.test")
                        barrier.wait()      # all n connections open at once
                        barrier.wait()
                        c.sendmail(ALICE, [rcpt], build(ids[i], [rcpt], body))
                        results[i] = "ok"
                except Exception as e:  # reported below
                    results[i] = repr(e)
                    try:
                        barrier.abort()
                    except Exception:
                        pass

            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            barrier.wait()
            open_now = W.sp.thread_count()
            rss_open = W.sp.rss_kb()
            barrier.wait()
            for t in threads:
                t.join(180)
            self.assertEqual([r for r in results if r != "ok"], [], W.sp.log_tail())
            self.assertGreaterEqual(open_now, n)
            for i in range(n):
                self.delivered(BOB if i % 2 == 0 else ERIN, ids[i], timeout=60)
            return rss_open, W.sp.rss_kb()

        first = round_()
        second = round_()
        print("\nRSS kB with 100 connections open / after their messages: "
              "round 1 %d / %d, round 2 %d / %d" % (first + second), file=sys.stderr)
        # Memory is per connection and given back: a second round of 100
        # costs (nearly) nothing more than the first.
        self.assertLess(second[1] - first[1], 64 * 1024, (first, second))
        self.assertLess(max(first + second), 1024 * 1024, (first, second))


if __name__ == "__main__":
    unittest.main(verbosity=2)
