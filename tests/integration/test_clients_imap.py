"""Real IMAP clients through sealpost against the real provider: curl
(imap:// with --ssl-reqd, and imaps://) lists and fetches a message, mbsync
syncs INBOX into a local maildir; what they get equals what the provider
gives a direct client."""
import imaplib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imap_fake  # noqa: E402


def message(tag, body):
    return (b"From: Sender <sender@example.net>\r\n"
            b"To: someone@example.test\r\n"
            b"Subject: client test " + tag.encode() + b"\r\n"
            b"Message-ID: <" + tag.encode() + b"@example.net>\r\n"
            b"\r\n" + body)


BODY = (b"First line.\r\n"
        b"a1 OK this is body text, not a reply {3}\r\n"
        b"\xc3\xa4\xc3\xb6 8-bit\r\n"
        + b"long " * 400 + b"\r\n"
        b"Last line.\r\n")


class ClientsThroughSealpost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-imapclients-")
        os.chmod(cls.tmp.name, 0o755)
        cls.p = harness.Provider()
        cls.p.__enter__()
        cls.s = harness.Sealpost(cls.p)
        cls.s.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)
        cls.p.__exit__(None, None, None)
        cls.tmp.cleanup()

    def direct_messages(self, user):
        """{Message-ID: bytes} of INBOX as the provider serves it."""
        m = imaplib.IMAP4_SSL("127.0.0.1", self.p.imaps_port,
                              ssl_context=harness.client_ssl_context(self.p.ca_cert))
        m.login(user, self.p.users[user])
        m.select("INBOX", readonly=True)
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        m.logout()
        out = {}
        for item in data:
            if isinstance(item, tuple):
                raw = item[1]
                for line in raw.split(b"\r\n"):
                    if line.lower().startswith(b"message-id:"):
                        out[line.split(b":", 1)[1].strip()] = raw
        return out

    def curl(self, *args):
        r = subprocess.run(["curl", "--silent", "--show-error", "--max-time", "60",
                            "--cacert", self.s.cert_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout

    def test_curl(self):
        user = "carol@example.test"
        raw = message("curl-1", BODY)
        self.p.deliver(user, raw)
        direct = self.direct_messages(user)[b"<curl-1@example.net>"]
        cred = "%s:%s" % (user, self.p.users[user])
        for url in ("imap://localhost:%d/" % self.s.imap_port,
                    "imaps://localhost:%d/" % self.s.imaps_port):
            with self.subTest(url=url):
                extra = ["--ssl-reqd"] if url.startswith("imap:") else []
                listing = self.curl(*extra, "-u", cred, url)
                self.assertIn(b"INBOX", listing)
                self.assertIn(b"Sent", listing)
                fetched = self.curl(*extra, "-u", cred, url + "INBOX;MAILINDEX=1")
                self.assertEqual(fetched, direct)
                self.assertIn(BODY, fetched)
        # A wrong password is refused with sealpost's text.
        r = subprocess.run(["curl", "--silent", "--show-error", "--max-time", "60",
                            "--cacert", self.s.cert_path, "--ssl-reqd", "-u", user + ":wrong",
                            "imap://localhost:%d/" % self.s.imap_port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
        self.assertNotEqual(r.returncode, 0)
        log = self.s.log_text()
        self.assertNotIn(self.p.users[user], log)
        self.assertEqual(imap_fake.sanitizer_report(log), [])

    def mbsync(self, user, port, tls_type, maildir):
        conf = os.path.join(self.tmp.name, "mbsyncrc-%s" % tls_type)
        with open(conf, "w") as f:
            f.write("""IMAPAccount sp
Host localhost
Port %(port)d
User %(user)s
Pass %(pw)s
SSLType %(tls)s
CertificateFile %(cert)s
PipelineDepth 5

IMAPStore sp-remote
Account sp

MaildirStore local
Path %(dir)s/
Inbox %(dir)s/INBOX
SubFolders Verbatim

Channel sp
Far :sp-remote:
Near :local:
Patterns INBOX
Create Near
Sync Pull
SyncState *
""" % {"port": port, "user": user, "pw": self.p.users[user], "tls": tls_type,
       "cert": self.s.cert_path, "dir": maildir})
        os.chmod(conf, 0o600)
        r = subprocess.run(["mbsync", "-c", conf, "-a"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, (r.stdout + r.stderr).decode(errors="replace"))

    def local_messages(self, maildir):
        out = {}
        for sub in ("cur", "new"):
            d = os.path.join(maildir, "INBOX", sub)
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    raw = f.read()
                for line in raw.split(b"\n"):
                    if line.lower().startswith(b"message-id:"):
                        out[line.split(b":", 1)[1].strip()] = raw
        return out

    def test_mbsync(self):
        user = "bob@example.test"
        raws = [message("mbsync-%d" % i, BODY * (i + 1)) for i in range(5)]
        for raw in raws:
            self.p.deliver(user, raw)
        direct = self.direct_messages(user)
        for tls_type, port in (("IMAPS", self.s.imaps_port), ("STARTTLS", self.s.imap_port)):
            with self.subTest(tls=tls_type):
                maildir = os.path.join(self.tmp.name, "maildir-" + tls_type)
                os.makedirs(maildir)
                self.mbsync(user, port, tls_type, maildir)
                local = self.local_messages(maildir)
                for i in range(5):
                    mid = b"<mbsync-%d@example.net>" % i
                    self.assertIn(mid, local)
                    # mbsync stores what it fetched with LF line ends and
                    # its own X-TUID header line added.
                    copy, n = re.subn(rb"\nX-TUID: [^\n]*\n", b"\n", local[mid], count=1)
                    self.assertEqual(n, 1)
                    self.assertEqual(copy, direct[mid].replace(b"\r\n", b"\n"))
                    self.assertIn(BODY.replace(b"\r\n", b"\n"), local[mid])
                self.assertEqual(len(local), len(direct))
                shutil.rmtree(maildir)


if __name__ == "__main__":
    unittest.main()
