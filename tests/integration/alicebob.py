"""A test case with one real provider (Postfix + Dovecot on loopback), the
throwaway keyrings of alice and bob, and one sealpost serving alice: send
alice's mail to bob through it, find what the provider delivered, read
the decision log. Subclasses choose which public keys sealpost starts
with (SEALPOST_PUBLICS) and add settings (sealpost_global)."""
import os
import smtplib
import sqlite3
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import gpgkeys  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"


class AliceToBob(unittest.TestCase):
    SEALPOST_PUBLICS = [BOB]

    @classmethod
    def sealpost_global(cls):
        """[sealpost] settings beyond gnupg_home."""
        return {}

    @classmethod
    def setUpClass(cls):
        cls.provider = harness.Provider()
        cls.p = cls.provider.__enter__()
        cls.keyrings = None
        cls.sealpost = None
        try:
            cls.keyrings = gpgkeys.Keyrings([ALICE, BOB])
            home = cls.keyrings.sealpost_home(ALICE, list(cls.SEALPOST_PUBLICS))
            cls.sealpost = harness.Sealpost(cls.p, global_=dict(cls.sealpost_global(),
                                                                gnupg_home=home))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sealpost is not None:
            cls.sealpost.close()
        if cls.keyrings is not None:
            cls.keyrings.close()
        cls.provider.__exit__(None, None, None)

    def run_cli(self, *args):
        """sealpost ARGS with this sealpost's configuration."""
        return harness.run_sealpost(*args, "--config", self.sealpost.config_path)

    def send(self, subject):
        """alice writes to bob through sealpost (submission, STARTTLS,
        AUTH); the Message-ID is returned."""
        msgid = "%s@example.test" % uuid.uuid4().hex
        msg = ("From: Alice <%s>\r\nTo: Bob <%s>\r\nSubject: %s\r\nMessage-ID: <%s>\r\n\r\n"
               "the body of %s\r\n" % (ALICE, BOB, subject, msgid, subject)).encode()
        c = smtplib.SMTP("127.0.0.1", self.sealpost.smtp_port, timeout=60)
        try:
            c.starttls(context=self.sealpost.ssl_context())
            c.login(ALICE, self.p.users[ALICE])
            c.sendmail(ALICE, [BOB], msg)
        finally:
            c.quit()
        return msgid

    def received(self, msgid, timeout=20):
        """The message as the provider delivered it to bob."""
        want = ("<%s>" % msgid).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for raw in self.p.read_messages(BOB):
                if want in raw:
                    return raw
            time.sleep(0.05)
        self.fail("no message %s for bob\n%s" % (msgid, self.sealpost.log_tail(20)))

    def decision(self, msgid):
        """(decision, reason) the decision log holds for msgid."""
        db = sqlite3.connect(os.path.join(self.sealpost.state_dir, "sealpost.db"))
        try:
            return db.execute("SELECT decision, reason FROM decision WHERE message_id = ?",
                              (msgid,)).fetchone()
        finally:
            db.close()
