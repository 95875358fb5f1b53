"""The README's first command: `sealpost serve` with no configuration starts
the demo provider, serves alice in front of it on the documented ports,
relays real mail, and on SIGTERM stops the provider and removes its
folder."""
import http.client
import imaplib
import poplib
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

SEALPOST = os.environ.get("SEALPOST_BIN", "build/proxy/sealpost")
DEMO_PORTS = (1143, 1993, 1587, 1465, 1110, 1995, 7587)


def port_busy(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class DemoTest(unittest.TestCase):
    def test_demo_serves_and_cleans_up(self):
        busy = [p for p in DEMO_PORTS if port_busy(p)]
        if busy:
            self.skipTest(f"demo ports in use by something else: {busy}")
        home = tempfile.TemporaryDirectory(prefix="sp-demo-home-")
        self.addCleanup(home.cleanup)
        env = dict(os.environ, HOME=home.name,
                   XDG_CONFIG_HOME=os.path.join(home.name, "config"),
                   XDG_DATA_HOME=os.path.join(home.name, "data"))
        out = open(os.path.join(home.name, "out.log"), "w+")
        proc = subprocess.Popen([SEALPOST, "serve"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)

        def text():
            out.flush()
            with open(out.name) as f:
                return f.read()

        def stop():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)
        deadline = time.monotonic() + 60
        while "log in with the provider's user name" not in text():
            self.assertIsNone(proc.poll(), text())
            self.assertLess(time.monotonic(), deadline, text())
            time.sleep(0.1)
        t = text()
        demo_dir = re.search(r"starting a demo provider in (\S+)", t).group(1)
        cert = re.search(r"certificate (\S+\.crt)", t).group(1)
        fpr = re.search(r"SHA-256 ([0-9A-F:]{95})", t).group(1)
        self.assertIn("alice@example.test     password alice-pw", t)
        for port in DEMO_PORTS:
            self.assertIn(f"127.0.0.1:{port}", t)

        ctx = ssl.create_default_context(cafile=cert)
        imap = imaplib.IMAP4("127.0.0.1", 1143)
        imap.starttls(ctx)
        der = imap.sock.getpeercert(binary_form=True)
        import hashlib
        self.assertEqual(":".join(f"{b:02X}" for b in hashlib.sha256(der).digest()), fpr)
        imap.login("bob@example.test", "bob-pw")
        imap.select("INBOX")

        with smtplib.SMTP("127.0.0.1", 1587) as smtp:
            smtp.starttls(context=ctx)
            smtp.login("alice@example.test", "alice-pw")
            smtp.sendmail("alice@example.test", ["bob@example.test"],
                          b"Subject: demo canary\r\n\r\nthrough the demo\r\n")
        # The demo keyring has bob's key: the message is stored encrypted,
        # its subject hidden, and read through sealpost it is decrypted.
        deadline = time.monotonic() + 15
        while True:
            imap.noop()
            typ, data = imap.search(None, "ALL")
            if data[0].split() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertTrue(data[0].split(), "the message never reached bob")
        typ, fetched = imap.fetch(data[0].split()[-1], "(BODY.PEEK[])")
        raw = fetched[0][1]
        self.assertIn(b"X-Sealpost-Decryption: ok", raw)
        self.assertIn(b"Subject: demo canary", raw)
        self.assertIn(b"through the demo", raw)
        imap.logout()
        # POP3 too shows it decrypted.
        pop = poplib.POP3("127.0.0.1", 1110, timeout=20)
        pop.stls(context=ctx)
        pop.user("bob@example.test")
        pop.pass_("bob-pw")
        count, _ = pop.stat()
        retr = b"\r\n".join(pop.retr(count)[1])
        self.assertIn(b"X-Sealpost-Decryption: ok", retr)
        self.assertIn(b"through the demo", retr)
        pop.quit()
        # The local API is served, behind its token.
        self.assertIn("web console http://127.0.0.1:7587/ and local API "
                      "http://127.0.0.1:7587/api/v1/", t)
        api = http.client.HTTPConnection("127.0.0.1", 7587, timeout=10)
        api.request("GET", "/api/v1/status")
        self.assertEqual(api.getresponse().status, 401)
        api.close()
        # What the provider stores: ciphertext only.
        stored = []
        for root, _, files in os.walk(demo_dir):
            for name in files:
                if "/Maildir" in root and os.path.basename(root) in ("cur", "new"):
                    with open(os.path.join(root, name), "rb") as f:
                        stored.append(f.read())
        encrypted = [d for d in stored if b"multipart/encrypted" in d]
        self.assertTrue(encrypted, "no stored message found under %s" % demo_dir)
        for d in stored:
            self.assertNotIn(b"through the demo", d)
            self.assertNotIn(b"demo canary", d)

        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0, text())
        self.assertFalse(os.path.exists(demo_dir), "demo folder left behind")
        self.assertNotIn("AddressSanitizer", text())
        for port in DEMO_PORTS:
            self.assertFalse(port_busy(port), f"port {port} still listening")
        out.close()


if __name__ == "__main__":
    unittest.main()
