# test_clients_smtp: real SMTP clients (msmtp, curl) sending through
# sealpost to the test provider.
"""Real SMTP clients through sealpost: msmtp (STARTTLS, trust file, password
from a command) and curl (smtp:// with --ssl-reqd, smtps://) each send a
message that arrives in bob's Maildir."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import smtp_fake  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"


def message(marker):
    return (b"From: alice@example.test\r\nTo: bob@example.test\r\n"
            b"Subject: " + marker + b"\r\nMessage-ID: <" + marker + b"@example.test>\r\n"
            b"\r\nsent by a real client\r\n.leading dot\r\n")


class RealClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.provider = harness.Provider()
        cls.p = cls.provider.__enter__()
        cls.sealpost = harness.Sealpost(cls.p)
        cls.s = cls.sealpost.__enter__()
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-smtpclients-")

    @classmethod
    def tearDownClass(cls):
        smtp_fake.wait_sessions_closed(cls.s.log_text)
        cls.sealpost.stop()
        report = smtp_fake.sanitizer_report(cls.s.log_text())
        cls.tmp.cleanup()
        cls.sealpost.__exit__(None, None, None)
        cls.provider.__exit__(None, None, None)
        if report:
            raise AssertionError("sealpost: " + report)

    def find_message(self, marker, timeout=15):
        deadline = time.monotonic() + timeout
        maildir = self.p.maildir(BOB)
        while time.monotonic() < deadline:
            for sub in ("new", "cur"):
                d = os.path.join(maildir, sub)
                for name in os.listdir(d) if os.path.isdir(d) else []:
                    with open(os.path.join(d, name), "rb") as f:
                        raw = f.read()
                    if marker in raw:
                        return raw
            time.sleep(0.05)
        self.fail(f"message {marker!r} never arrived")

    def write_message(self, marker):
        path = os.path.join(self.tmp.name, marker.decode() + ".eml")
        with open(path, "wb") as f:
            f.write(message(marker))
        return path

    def run_client(self, argv, stdin=None):
        r = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0,
                         f"{argv[0]} failed: {r.stdout!r} {r.stderr!r}\n{self.s.log_text()[-3000:]}")
        return r

    @unittest.skipUnless(shutil.which("msmtp"), "msmtp not installed")
    def test_msmtp_starttls(self):
        marker = b"msmtp-starttls"
        path = self.write_message(marker)
        with open(path, "rb") as f:
            self.run_client(["msmtp", "--host=127.0.0.1", f"--port={self.s.smtp_port}",
                             "--tls=on", "--tls-starttls=on",
                             f"--tls-trust-file={self.s.cert_path}",
                             "--auth=on", f"--user={ALICE}",
                             f"--passwordeval=echo {self.p.users[ALICE]}",
                             f"--from={ALICE}", BOB], stdin=f)
        raw = self.find_message(marker)
        self.assertIn(b"\n.leading dot", raw)

    @unittest.skipUnless(shutil.which("msmtp"), "msmtp not installed")
    def test_msmtp_implicit_tls(self):
        marker = b"msmtp-implicit"
        path = self.write_message(marker)
        with open(path, "rb") as f:
            self.run_client(["msmtp", "--host=127.0.0.1", f"--port={self.s.smtps_port}",
                             "--tls=on", "--tls-starttls=off",
                             f"--tls-trust-file={self.s.cert_path}",
                             "--auth=plain", f"--user={ALICE}",
                             f"--passwordeval=echo {self.p.users[ALICE]}",
                             f"--from={ALICE}", BOB], stdin=f)
        self.find_message(marker)

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_starttls(self):
        marker = b"curl-starttls"
        path = self.write_message(marker)
        self.run_client(["curl", "--silent", "--show-error", "--ssl-reqd",
                         "--cacert", self.s.cert_path,
                         f"smtp://127.0.0.1:{self.s.smtp_port}",
                         "--user", f"{ALICE}:{self.p.users[ALICE]}",
                         "--mail-from", ALICE, "--mail-rcpt", BOB,
                         "--upload-file", path])
        raw = self.find_message(marker)
        self.assertIn(b"\n.leading dot", raw)

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_implicit_tls(self):
        marker = b"curl-implicit"
        path = self.write_message(marker)
        self.run_client(["curl", "--silent", "--show-error",
                         "--cacert", self.s.cert_path,
                         f"smtps://127.0.0.1:{self.s.smtps_port}",
                         "--user", f"{ALICE}:{self.p.users[ALICE]}",
                         "--mail-from", ALICE, "--mail-rcpt", BOB,
                         "--upload-file", path])
        self.find_message(marker)

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_wrong_password_fails(self):
        path = self.write_message(b"curl-wrong")
        r = subprocess.run(["curl", "--silent", "--show-error", "--ssl-reqd",
                            "--cacert", self.s.cert_path,
                            f"smtp://127.0.0.1:{self.s.smtp_port}",
                            "--user", f"{ALICE}:wrong-password",
                            "--mail-from", ALICE, "--mail-rcpt", BOB,
                            "--upload-file", path], capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    unittest.main()
