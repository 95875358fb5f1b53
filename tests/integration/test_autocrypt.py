"""Autocrypt end to end: a plaintext message with an Autocrypt header,
fetched by an IMAP client through sealpost, teaches sealpost the sender's
key, and the next message to him under `opportunistic` leaves encrypted;
once his key is stale (the recommendation "discourage") the next one goes
as written, until the user verifies the key.

Real Postfix + Dovecot on loopback, real gpg, imaplib and smtplib as the
client."""
import base64
import email.utils
import imaplib
import json
import os
import sqlite3
import sys
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import alicebob  # noqa: E402
from alicebob import ALICE, BOB  # noqa: E402
DAY = 86400


class AutocryptOpportunistic(alicebob.AliceToBob):
    # sealpost knows alice's own key only: bob's must come by mail.
    SEALPOST_PUBLICS = []

    @classmethod
    def sealpost_global(cls):
        cls.api_port = harness.free_port()
        return {"api_listen": "127.0.0.1:%d" % cls.api_port}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            r = cls.keyrings.gpg(cls.keyrings.user_home[BOB], "--export", "--export-options",
                                 "export-minimal", cls.keyrings.fpr[BOB])
            cls.bob_keydata = base64.b64encode(r.data).decode()
        except BaseException:
            cls.tearDownClass()
            raise

    # ------------------------------------------------------------ helpers

    def cli(self, *args):
        r = self.run_cli(*args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def api_bob(self):
        """What the compose window is told about bob (GET /api/v1/recipients)."""
        token = json.loads(self.cli("pair", "--json"))["token"]
        req = urllib.request.Request(
            "http://127.0.0.1:%d/api/v1/recipients?address=%s" % (self.api_port, BOB),
            headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req, timeout=30) as r:
            [rcpt] = json.load(r)["recipients"]
        return rcpt

    def bob_keys(self):
        return [k for k in json.loads(self.cli("keys", "list", "--json"))
                if k["fingerprint"].upper() == self.keyrings.fpr[BOB]]

    def from_bob(self, subject, date, autocrypt=True):
        """Delivers a plaintext message from bob into alice's INBOX."""
        header = ""
        if autocrypt:
            # Folded the way mail programs write it.
            kd = self.bob_keydata
            folded = "\r\n ".join(kd[i:i + 72] for i in range(0, len(kd), 72))
            header = "Autocrypt: addr=%s; keydata=\r\n %s\r\n" % (BOB, folded)
        raw = ("From: Bob <%s>\r\nTo: Alice <%s>\r\nSubject: %s\r\nDate: %s\r\n"
               "Message-ID: <%s@example.test>\r\n%s\r\nhello from bob\r\n"
               % (BOB, ALICE, subject, email.utils.formatdate(date), uuid.uuid4().hex,
                  header)).encode()
        self.p.deliver(ALICE, raw)

    def fetch_all(self):
        """What a mail client does: fetch every message of the INBOX
        through sealpost."""
        c = imaplib.IMAP4("127.0.0.1", self.sealpost.imap_port, timeout=60)
        try:
            c.starttls(ssl_context=self.sealpost.ssl_context())
            c.login(ALICE, self.p.users[ALICE])
            c.select("INBOX")
            typ, data = c.fetch("1:*", "(BODY.PEEK[])")
            self.assertEqual(typ, "OK", data)
        finally:
            c.logout()

    def wait_peer(self, pred, what, timeout=15):
        """Learning runs after the client has its answer: poll."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = json.loads(self.cli("keys", "list", "--json"))
            peers = self.peer_row()
            if pred(out, peers):
                return
            time.sleep(0.1)
        self.fail("%s did not happen\n%s" % (what, self.sealpost.log_tail(30)))

    def peer_row(self):
        db = sqlite3.connect(os.path.join(self.sealpost.state_dir, "sealpost.db"))
        try:
            return db.execute("SELECT last_seen, autocrypt_timestamp FROM autocrypt_peer "
                              "WHERE addr = ?", (BOB,)).fetchone()
        finally:
            db.close()

    # ------------------------------------------------------------ the story

    def test_learn_encrypt_discourage_verify(self):
        now = int(time.time())
        bob_fpr = self.keyrings.fpr[BOB]

        # No key for bob yet: opportunistic sends as written.
        msgid = self.send("before")
        raw = self.received(msgid)
        self.assertNotIn(b"multipart/encrypted", raw)
        self.assertIn(b"the body of before", raw)
        self.assertEqual(self.decision(msgid)[1], None)

        # bob writes (50 days ago) with his Autocrypt header; alice's
        # client fetches it through sealpost.
        self.from_bob("hello", now - 50 * DAY)
        self.fetch_all()
        self.wait_peer(lambda keys, peer: any(
            k["fingerprint"].upper() == bob_fpr for k in keys), "learning bob's key")
        [k] = self.bob_keys()
        self.assertEqual(k["source"], "autocrypt")
        self.assertEqual(k["acceptance"], "unverified")

        # The next message to bob leaves encrypted, and bob can read it.
        msgid = self.send("after")
        raw = self.received(msgid)
        self.assertIn(b"multipart/encrypted", raw)
        self.assertNotIn(b"the body of after", raw)
        dec = self.keyrings.decrypt(BOB, raw)
        self.assertTrue(dec.ok and dec.decrypted, dec)
        self.assertIn(b"the body of after", dec.data)
        self.assertIn("encrypted", self.decision(msgid)[0])
        rcpt = self.api_bob()
        self.assertEqual((rcpt["outcome"], rcpt["autocrypt"]), ("encrypt", "available"))

        # bob writes again today, without the header: the key he announced
        # is 50 days older than his last message, so Autocrypt recommends
        # "discourage" and the next message goes as written, saying why.
        self.from_bob("no header now", now, autocrypt=False)
        self.fetch_all()
        self.wait_peer(lambda keys, peer: peer is not None and peer[0] >= now - 60,
                       "last_seen moving to today")
        msgid = self.send("stale")
        raw = self.received(msgid)
        self.assertNotIn(b"multipart/encrypted", raw)
        self.assertIn(b"the body of stale", raw)
        decision, reason = self.decision(msgid)
        self.assertNotIn("encrypted", decision)
        self.assertIn("discourage", reason)
        self.assertIn("<%s>" % BOB, reason)
        # The compose window is told the same before sending.
        rcpt = self.api_bob()
        self.assertEqual((rcpt["outcome"], rcpt["autocrypt"], rcpt["key_usable"]),
                         ("plain", "discourage", True))

        # Under require the recommendation does not matter: a usable key
        # is a usable key.
        self.cli("policy", "set", BOB, "require")
        try:
            msgid = self.send("required")
            raw = self.received(msgid)
            self.assertIn(b"multipart/encrypted", raw)
            self.assertNotIn(b"the body of required", raw)
        finally:
            self.cli("policy", "unset", BOB)

        # The user compares fingerprints and verifies the key: Autocrypt
        # no longer has a say, opportunistic encrypts again.
        self.cli("keys", "verify", bob_fpr, "--yes")
        msgid = self.send("verified")
        raw = self.received(msgid)
        self.assertIn(b"multipart/encrypted", raw)
        self.assertNotIn(b"the body of verified", raw)
        self.assertEqual(self.decision(msgid)[1], None)
        rcpt = self.api_bob()
        self.assertEqual((rcpt["outcome"], rcpt["autocrypt"]), ("encrypt", None))


if __name__ == "__main__":
    unittest.main(verbosity=2)
