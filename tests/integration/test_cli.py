# test_cli: the provider harness itself, and sealpost's command line
# (version, help, check-config, version --cert, loopback-only listeners).
"""The test ground itself (a private Postfix + Dovecot on loopback: sending,
reading, delivery, a clean stop, several at once) and sealpost's command
line: version, --help, check-config, version --cert against what serve
presents, and refusing non-loopback listeners without allow_remote."""
import hashlib
import imaplib
import json
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

P = None


def setUpModule():
    global P
    P = harness.Provider()
    P.start()


def tearDownModule():
    if P is not None:
        P.stop()


def token():
    return uuid.uuid4().hex


def submit(p, frm, pw, to, subject, body="hello\r\n", port=None):
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (
        frm, ", ".join(to), subject, body)).encode()
    with smtplib.SMTP(p.hostname, port or p.submission_port, timeout=10) as s:
        s.starttls(context=harness.client_ssl_context(p.ca_cert))
        s.login(frm, pw)
        s.sendmail(frm, to, msg)


def find_with(p, user, needle, n, mailbox="INBOX"):
    """Waits for n messages and returns the one containing needle."""
    deadline = time.monotonic() + 10
    while True:
        for data in p.read_messages(user, mailbox):
            if needle.encode() in data:
                return data
        if time.monotonic() > deadline:
            raise AssertionError("no message with %s for %s" % (needle, user))
        p.wait_for_messages(user, n, timeout=max(0.1, deadline - time.monotonic()),
                            mailbox=mailbox)
        time.sleep(0.01)


def still_alive(tree):
    return [pid for pid, st in tree.items() if harness._provider._alive(pid, st)]


class ProviderTest(unittest.TestCase):
    """The shared provider behaves like a real one."""

    def test_submission_with_auth_reaches_bob(self):
        t = token()
        before = len(P.messages("bob"))
        with smtplib.SMTP(P.hostname, P.submission_port, timeout=10) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("auth"), "AUTH must not be offered before STARTTLS")
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=harness.client_ssl_context(P.ca_cert))
            s.ehlo()
            self.assertIn("PLAIN", s.esmtp_features.get("auth", ""))
            self.assertIn("LOGIN", s.esmtp_features.get("auth", ""))
            s.login("alice@example.test", "alice-pw")
            s.sendmail("alice@example.test", ["bob@example.test"],
                       b"From: alice@example.test\r\nTo: bob@example.test\r\n"
                       b"Subject: " + t.encode() + b"\r\n\r\nhi bob\r\n")
        files = P.wait_for_messages("bob", before + 1)
        self.assertTrue(all(f.startswith(P.maildir("bob")) for f in files))
        data = find_with(P, "bob", t, before + 1)
        self.assertIn(b"hi bob", data)
        self.assertIn(b"ESMTPSA", data)   # authenticated over TLS

    def test_submission_refuses_without_auth_and_wrong_password(self):
        with smtplib.SMTP(P.hostname, P.submission_port, timeout=10) as s:
            with self.assertRaises(smtplib.SMTPException):
                s.sendmail("x@example.net", ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
        with smtplib.SMTP(P.hostname, P.submission_port, timeout=10) as s:
            s.starttls(context=harness.client_ssl_context(P.ca_cert))
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                s.sendmail("x@example.net", ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
            t0 = time.monotonic()
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("alice@example.test", "wrong")
            self.assertLess(time.monotonic() - t0, 1.0, "failed AUTH must be answered at once")

    def test_smtps_with_auth(self):
        t = token()
        before = len(P.messages("carol"))
        with smtplib.SMTP_SSL(P.hostname, P.smtps_port, timeout=10,
                              context=harness.client_ssl_context(P.ca_cert)) as s:
            s.login("bob@example.test", "bob-pw")
            s.sendmail("bob@example.test", ["carol@example.test"],
                       ("Subject: %s\r\n\r\nvia smtps\r\n" % t).encode())
        self.assertIn(b"via smtps", find_with(P, "carol", t, before + 1))

    def test_mx_delivers_without_auth_and_refuses_relay(self):
        t = token()
        before = len(P.messages("alice"))
        with smtplib.SMTP("127.0.0.1", P.mx_port, timeout=10) as s:
            s.ehlo()
            self.assertFalse(s.has_extn("auth"))
            s.sendmail("someone@example.net", ["alice@example.test"],
                       ("Subject: %s\r\n\r\nfrom outside\r\n" % t).encode())
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("someone@example.net", ["dave@elsewhere.test"], b"Subject: x\r\n\r\nx\r\n")
            self.assertEqual(cm.exception.recipients["dave@elsewhere.test"][0], 554)
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                s.sendmail("someone@example.net", ["nobody@example.test"], b"Subject: x\r\n\r\nx\r\n")
            self.assertEqual(cm.exception.recipients["nobody@example.test"][0], 550)
        self.assertIn(b"from outside", find_with(P, "alice", t, before + 1))

    def test_authenticated_mail_to_other_domains_lands_with_outside(self):
        t = token()
        before = len(P.messages(P.outside))
        submit(P, "alice@example.test", "alice-pw", ["dave@elsewhere.test"], t)
        data = find_with(P, P.outside, t, before + 1)
        self.assertIn(b"X-Original-To: dave@elsewhere.test", data)

    def test_imap_login_direct(self):
        t = token()
        P.deliver("alice", ("Subject: %s\n\nimap body\n" % t).encode())
        # Plaintext LOGIN on 127.0.0.1: Dovecot calls a same-address peer secure.
        with imaplib.IMAP4("127.0.0.1", P.imap_port) as im:
            self.assertIn("STARTTLS", im.capabilities)
            self.assertNotIn("LOGINDISABLED", im.capabilities)
            self.assertEqual(im.login("alice@example.test", "alice-pw")[0], "OK")
            typ, data = im.select("INBOX", readonly=True)
            self.assertEqual(typ, "OK")
            typ, data = im.search(None, "SUBJECT", t)
            self.assertEqual(len(data[0].split()), 1)
        with imaplib.IMAP4_SSL(P.hostname, P.imaps_port,
                               ssl_context=harness.client_ssl_context(P.ca_cert)) as im:
            im.login("alice@example.test", "alice-pw")
            typ, boxes = im.list()
            names = b"\n".join(boxes)
            for special in (b"\\Drafts", b"\\Sent", b"\\Trash", b"\\Junk"):
                self.assertIn(special, names)
        with imaplib.IMAP4("127.0.0.1", P.imap_port) as im:
            im.starttls(ssl_context=harness.client_ssl_context(P.ca_cert))
            t0 = time.monotonic()
            with self.assertRaises(imaplib.IMAP4.error):
                im.login("alice@example.test", "wrong")
            self.assertLess(time.monotonic() - t0, 1.0, "failed LOGIN must be answered at once")

    def test_strict_host_refuses_plaintext_login(self):
        with imaplib.IMAP4(P.strict_host, P.imap_port) as im:
            self.assertIn("LOGINDISABLED", im.capabilities)
            with self.assertRaises(imaplib.IMAP4.error):
                im.login("alice@example.test", "alice-pw")
            im.starttls(ssl_context=harness.client_ssl_context(P.ca_cert))
            self.assertEqual(im.login("alice@example.test", "alice-pw")[0], "OK")

    def test_certificate_is_checked(self):
        ctx = harness.client_ssl_context(P.ca_cert)
        with self.assertRaises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL(P.mismatch_host, P.imaps_port, ssl_context=ctx)
        with self.assertRaises(ssl.SSLCertVerificationError):
            # The system store does not know the test CA.
            imaplib.IMAP4_SSL(P.hostname, P.imaps_port, ssl_context=ssl.create_default_context())

    def test_pop3_and_pop3s(self):
        t = token()
        P.deliver("carol", ("Subject: %s\n\npop body\n" % t).encode())
        ctx = harness.client_ssl_context(P.ca_cert)
        pp = poplib.POP3_SSL(P.hostname, P.pop3s_port, context=ctx, timeout=10)
        try:
            pp.user("carol@example.test")
            pp.pass_("carol-pw")
            n, _ = pp.stat()
            lines = b"\n".join(pp.retr(n)[1])
            self.assertIn(t.encode(), lines)
        finally:
            pp.quit()
        pp = poplib.POP3("127.0.0.1", P.pop3_port, timeout=10)
        try:
            pp.stls(context=ctx)
            pp.user("carol@example.test")
            pp.pass_("carol-pw")
            self.assertGreaterEqual(pp.stat()[0], 1)
        finally:
            pp.quit()

    def test_deliver_and_wait_for_messages(self):
        t = token()
        before = len(P.messages("bob"))
        path = P.deliver("bob@example.test", ("Subject: %s\r\n\r\n.dot line\r\n" % t).encode())
        self.assertTrue(path.startswith(os.path.join(P.maildir("bob"), "new")))
        with open(path, "rb") as f:
            self.assertIn(b"\n.dot line\n", f.read())
        self.assertEqual(len(P.wait_for_messages("bob", before + 1, timeout=1)), before + 1)
        sent = P.deliver("bob", b"Subject: draft copy\n\nx\n", mailbox="Sent")
        self.assertIn(os.path.join(P.maildir("bob"), ".Sent"), sent)
        self.assertEqual(len(P.wait_for_messages("bob", 1, mailbox="Sent", timeout=1)), 1)
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            P.wait_for_messages("bob", before + 100, timeout=0.2)
        self.assertLess(time.monotonic() - t0, 2)

    def test_log_text_shows_logins(self):
        mark = P.log_mark()
        with imaplib.IMAP4("127.0.0.1", P.imap_port) as im:
            im.login("bob@example.test", "bob-pw")
        deadline = time.monotonic() + 5
        while "user=<bob@example.test>" not in P.log_text(since=mark):
            self.assertLess(time.monotonic(), deadline, P.log_text(since=mark))
            time.sleep(0.02)
        self.assertNotIn("user=<carol@example.test>", P.log_text(since=mark))

    def test_rawlog_records_what_the_client_sent(self):
        t = token()
        seen = P.rawlog_mark()
        with imaplib.IMAP4("127.0.0.1", P.imap_port) as im:
            im.login("bob@example.test", "bob-pw")
            im.select("INBOX")
            im.search(None, "SUBJECT", t)
        deadline = time.monotonic() + 5
        while t.encode() not in P.rawlog_text("in", since=seen):
            self.assertLess(time.monotonic(), deadline, "no rawlog of the session")
            time.sleep(0.02)
        self.assertNotIn(b"bob-pw", P.rawlog_text("in"), "rawlog starts after LOGIN")
        self.assertIn(b"OK", P.rawlog_text("out", since=seen))


class ProviderLifecycleTest(unittest.TestCase):
    def test_stop_leaves_no_process_behind(self):
        p = harness.Provider()
        t0 = time.monotonic()
        p.start()
        start = time.monotonic() - t0
        masters = p.master_pids()
        self.assertEqual(len(masters), 2)
        # Make both masters spawn workers, which must go too.
        submit(p, "alice@example.test", "alice-pw", ["bob@example.test"], "x")
        p.wait_for_messages("bob", 1)
        with imaplib.IMAP4("127.0.0.1", p.imap_port) as im:
            im.login("bob@example.test", "bob-pw")
            tree = harness.process_tree(masters)
        self.assertGreater(len(tree), 5)
        ports = [p.imap_port, p.submission_port, p.mx_port]
        t0 = time.monotonic()
        killed = p.stop()
        stop = time.monotonic() - t0
        self.assertEqual(still_alive(tree), [])
        self.assertEqual(killed, [], "every daemon should end on SIGTERM")
        self.assertFalse(os.path.exists(p.dir))
        for port in ports:
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        self.assertLess(start, 5)
        self.assertLess(stop, 5)

    def test_three_providers_in_parallel(self):
        ps = [harness.Provider() for _ in range(3)]
        errors = []

        def run(p):
            try:
                p.start()
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=run, args=(p,)) for p in ps]
        try:
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            self.assertEqual(errors, [])
            self.assertEqual(len({p.dir for p in ps}), 3)
            all_ports = [port for p in ps for port in p.ports.values()]
            self.assertEqual(len(all_ports), len(set(all_ports)))
            tokens = [token() for _ in ps]
            for p, t in zip(ps, tokens):
                submit(p, "alice@example.test", "alice-pw", ["bob@example.test"], t)
            for p, t in zip(ps, tokens):
                data = find_with(p, "bob", t, 1)
                for other in tokens:
                    if other != t:
                        self.assertNotIn(other.encode(), data)
                self.assertEqual(len(p.messages("bob")), 1)
        finally:
            trees = [harness.process_tree(p.master_pids()) for p in ps]
            for p in ps:
                p.stop()
        for tree in trees:
            self.assertEqual(still_alive(tree), [])

    def test_command_line_start_status_stop(self):
        script = os.path.join(harness._PROVIDER_DIR, "provider.py")
        d = tempfile.mkdtemp(prefix="spv-")
        try:
            # capture_output: the daemons must not hold the pipe open.
            r = subprocess.run([sys.executable, script, "start", "--dir", d, "--json"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            desc = json.loads(r.stdout)
            self.assertEqual(desc["dir"], d)
            self.assertEqual(set(desc["users"]), {"alice@example.test", "bob@example.test",
                                                  "carol@example.test"})
            with imaplib.IMAP4_SSL("localhost", desc["ports"]["imaps"],
                                   ssl_context=harness.client_ssl_context(desc["ca_cert"])) as im:
                im.login("carol@example.test", "carol-pw")
            r = subprocess.run([sys.executable, script, "status", "--dir", d],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            tree = harness.process_tree(json.loads(r.stdout)["pids"])
            self.assertGreater(len(tree), 0)
            r = subprocess.run([sys.executable, script, "start", "--dir", d],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0, "a second start in the same dir must fail")
            r = subprocess.run([sys.executable, script, "stop", "--dir", d, "--remove"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(still_alive(tree), [])
            self.assertFalse(os.path.exists(d))
        finally:
            if os.path.exists(d):
                subprocess.run([sys.executable, script, "stop", "--dir", d],
                               capture_output=True, timeout=30)
                shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ sealpost CLI

def have_sealpost():
    return os.access(harness.SEALPOST_BIN, os.X_OK)


def openssl_sha256(path):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", path],
                         capture_output=True, text=True, check=True).stdout
    return norm_fpr(out.split("=", 1)[1])


def norm_fpr(s):
    return s.strip().replace(":", "").upper()


def project_version():
    with open(os.path.join(harness.SOURCE_DIR, "meson.build")) as f:
        m = re.search(r"version\s*:\s*'([^']+)'", f.read())
    return m.group(1)


@unittest.skipUnless(have_sealpost(), "SEALPOST_BIN not built")
class SealpostCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sp-cli-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, text, name="sealpost.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def good_lines(self, **listen):
        imap = listen.get("imap", "127.0.0.1:%d" % harness.free_port())
        return [
            "[sealpost]",                                             # 1
            "state_dir = %s/state" % self.dir,                        # 2
            "log_level = info",                                       # 3
            "",                                                       # 4
            "[account test]",                                         # 5
            "address = alice@example.test",                           # 6
            "imap_listen = %s" % imap,                                # 7
            "smtp_listen = 127.0.0.1:%d" % harness.free_port(),       # 8
            "imap_upstream = imap://localhost:%d" % P.imap_port,      # 9
            "smtp_upstream = smtp://localhost:%d" % P.submission_port,  # 10
            "upstream_ca_file = %s" % P.ca_cert,                      # 11
        ]

    def assert_config_error(self, path, line, key):
        r = harness.run_sealpost("check-config", path)
        self.assertEqual(r.returncode, 3, "invalid configuration exits 3 (docs/cli.md)\n" + r.stderr)
        msg = r.stderr.strip()
        self.assertEqual(len(msg.splitlines()), 1, "exactly one line: %r" % msg)
        self.assertTrue(msg.startswith("%s:%d:" % (path, line)), msg)
        self.assertIn(key, msg)
        return msg

    def test_version(self):
        r = harness.run_sealpost("version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0], "sealpost %s" % project_version())
        for lib in ("GMime", "GPGME", "libsodium", "OpenSSL"):
            self.assertIn(lib, r.stdout)

    def test_every_command_has_help(self):
        for cmd in ("serve", "check-config", "version"):
            r = harness.run_sealpost(cmd, "--help")
            self.assertEqual(r.returncode, 0, cmd + r.stderr)
            self.assertIn("Usage", r.stdout, cmd)
        r = harness.run_sealpost("help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("serve", "check-config", "version"):
            self.assertIn(cmd, r.stdout)
        r = harness.run_sealpost("no-such-command")
        self.assertEqual(r.returncode, 2, r.stderr)

    def test_check_config_accepts_a_good_file(self):
        path = self.write("\n".join(self.good_lines()) + "\n")
        r = harness.run_sealpost("check-config", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK", r.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "state")),
                         "check-config must not create anything")

    def test_check_config_unknown_key(self):
        lines = self.good_lines()
        lines.insert(7, "colour = blue")            # becomes line 8
        path = self.write("\n".join(lines) + "\n")
        self.assert_config_error(path, 8, "colour")

    def test_check_config_bad_value(self):
        lines = self.good_lines()
        lines.insert(3, "max_sessions = many")      # becomes line 4
        path = self.write("\n".join(lines) + "\n")
        self.assert_config_error(path, 4, "max_sessions")
        lines = self.good_lines()
        lines[8] = "imap_upstream = ftp://localhost:21"
        path = self.write("\n".join(lines) + "\n", "b.conf")
        self.assert_config_error(path, 9, "imap_upstream")

    def test_check_config_missing_upstream(self):
        lines = [l for l in self.good_lines() if not l.startswith("imap_upstream")]
        path = self.write("\n".join(lines) + "\n")
        r = harness.run_sealpost("check-config", path)
        self.assertEqual(r.returncode, 3, r.stderr)
        msg = r.stderr.strip()
        self.assertEqual(len(msg.splitlines()), 1, msg)
        # The line of the listener that has nothing to forward to, or of
        # its section.
        self.assertRegex(msg, r"^%s:(7|5): " % re.escape(path))
        self.assertIn("imap_upstream", msg)

    def test_non_loopback_listener_needs_allow_remote(self):
        port = harness.free_port()
        lines = self.good_lines(imap="0.0.0.0:%d" % port)
        path = self.write("\n".join(lines) + "\n")
        msg = self.assert_config_error(path, 7, "imap_listen")
        self.assertIn("allow_remote", msg)
        # serve refuses it too, without ever listening.
        proc = subprocess.Popen([harness.SEALPOST_BIN, "serve", "--config", path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertEqual(proc.returncode, 3, err)
        self.assertIn("imap_listen", err)
        # With allow_remote the same file is valid (not served here: tests
        # bind loopback only).
        lines.insert(3, "allow_remote = true")
        path = self.write("\n".join(lines) + "\n", "remote.conf")
        r = harness.run_sealpost("check-config", path)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_version_cert_matches_what_serve_presents(self):
        s = harness.Sealpost(P, start=False)
        try:
            r = harness.run_sealpost("version", "--cert", "--config", s.config_path)
            self.assertEqual(r.returncode, 0, r.stderr)
            m = re.search(r"SHA-256 ([0-9A-Fa-f:]+)", r.stdout)
            self.assertIsNotNone(m, r.stdout)
            printed = norm_fpr(m.group(1))
            self.assertIn(s.cert_path, r.stdout)
            self.assertEqual(printed, openssl_sha256(s.cert_path))
            s.start()
            # serve keeps the certificate version --cert made.
            self.assertEqual(openssl_sha256(s.cert_path), printed)
            ctx = harness.client_ssl_context(s.cert_path)
            with socket.create_connection(("127.0.0.1", s.imaps_port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    der = tls.getpeercert(binary_form=True)
            self.assertEqual(hashlib.sha256(der).hexdigest().upper(), printed)
            r = harness.run_sealpost("version", "--cert", "--config", s.config_path)
            self.assertEqual(norm_fpr(re.search(r"SHA-256 ([0-9A-Fa-f:]+)", r.stdout).group(1)),
                             printed)
            self.assertEqual(s.stop(), 0, "serve exits 0 on SIGTERM\n" + s.log_tail())
        finally:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)

    def test_serve_runs_in_front_of_the_provider(self):
        with harness.Sealpost(P) as s:
            self.assertGreater(s.rss_kb(), 0)
            self.assertTrue(os.path.exists(s.cert_path))
            with imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=s.ssl_context()) as im:
                self.assertEqual(im.login("alice@example.test", "alice-pw")[0], "OK")
            pid = s.pid
        self.assertFalse(harness._provider._alive(pid))


if __name__ == "__main__":
    unittest.main()
