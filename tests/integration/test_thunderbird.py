# test_thunderbird: a real Thunderbird (headless) whose IMAP and SMTP servers
# are sealpost, against the real Postfix + Dovecot, judged on the server side.
"""Thunderbird end to end: one headless Thunderbird (tests/integration/
thunderbird.py) with alice's account on sealpost's implicit-TLS IMAP and
SMTP ports (sealpost's certificate from the test CA, which is imported into
the profile) and the sealpost add-on installed.

- Thunderbird sends to bob, whose key sealpost has: bob's copy on the
  provider is PGP/MIME that bob's key decrypts to the text, with no
  plaintext outside; Thunderbird's Sent copy, read from the provider's
  Maildir, is ciphertext too (encrypt_append).
- A message encrypted to alice and signed by bob is delivered into the
  provider's INBOX: Thunderbird's offline copy (PROFILE/ImapMail/HOST/INBOX)
  holds the plaintext and `X-Sealpost-Decryption: ok`, while the
  provider still stores ciphertext.
- Displayed in a message tab, the message makes the add-on's message
  display action say "Decrypted ... signed by bob@example.test"; a plain
  message makes it say "Not encrypted". Paired with sealpost's local API,
  the add-on shows bob's key, verified with the CLI, as verified.

Every step has a hard timeout; Thunderbird's process group, the gpg-agents
and every temp dir are removed at the end."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpgkeys  # noqa: E402
import harness  # noqa: E402
import imap_fake  # noqa: E402
import testcerts  # noqa: E402
import thunderbird  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"
ADDON_ID = "addon@sealpost.invalid"
BUILD_XPI = os.path.join(harness.SOURCE_DIR, "plugin", "thunderbird", "build_xpi.py")

# Hard timeouts (seconds) per step, generous for a loaded 2-core machine.
START_TIMEOUT = 90
SEND_TIMEOUT = 60
PROVIDER_TIMEOUT = 30
SYNC_TIMEOUT = 90
DISPLAY_TIMEOUT = 60
ACTION_TIMEOUT = 45

W = None


def token():
    return uuid.uuid4().hex[:12]


def build_addon(out_dir):
    """(xpi path, None) or (None, why not)."""
    if not os.path.exists(BUILD_XPI):
        return None, "%s does not exist" % BUILD_XPI
    xpi = os.path.join(out_dir, "sealpost.xpi")
    try:
        r = subprocess.run([sys.executable, BUILD_XPI, xpi], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           cwd=harness.SOURCE_DIR)
    except subprocess.TimeoutExpired:
        return None, "build_xpi.py did not finish within 120s"
    if r.returncode != 0 or not os.path.isfile(xpi):
        return None, "build_xpi.py failed (%d): %s" % (r.returncode,
                                                       r.stdout.decode(errors="replace")[-2000:])
    return xpi, None


class World:
    """The provider, the keyrings, sealpost (alice's secret key, bob's
    public key; TLS with the test CA's localhost certificate) and one
    Thunderbird, shared by the module."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.timings = []
        self.provider = harness.Provider()
        self.p = self.provider.__enter__()
        self.keys = None
        self.s = None
        self.tb = None
        self.tmp = tempfile.mkdtemp(prefix="sptbt-")
        self._inbound = None
        try:
            self.keys = gpgkeys.Keyrings([ALICE, BOB])
            certs = testcerts.Certs()
            self.s = harness.Sealpost(self.p, global_={
                "gnupg_home": self.keys.sealpost_home(ALICE, [BOB]),
                "tls_cert": certs.good[0], "tls_key": certs.good[1],
                "api_listen": "127.0.0.1:%d" % harness.free_port()})
            self.mark("provider, keys, sealpost")
            self.xpi, self.addon_error = build_addon(self.tmp)
            self.mark("add-on build")
            self.tb = thunderbird.Thunderbird(
                imap=("127.0.0.1", self.s.imaps_port, thunderbird.TLS),
                smtp=("127.0.0.1", self.s.smtps_port, thunderbird.TLS),
                address=ALICE, password=self.p.users[ALICE], full_name="Alice",
                ca_file=certs.ca, addons={ADDON_ID: self.xpi} if self.xpi else None)
            try:
                self.tb.start(timeout=START_TIMEOUT)
            except thunderbird.ThunderbirdError as e:
                # An unreachable server makes Thunderbird's start hang on
                # an invisible alert: say whether sealpost is the cause.
                raise thunderbird.ThunderbirdError("%s\n%s" % (e, self.sealpost_state()))
            self.mark("Thunderbird start")
        except BaseException:
            self.close()
            raise

    def sealpost_state(self):
        if self.s.running():
            return "sealpost is running"
        return "sealpost is not running (exit %s):\n%s" % (self.s.returncode,
                                                          self.s.log_tail(60))

    def mark(self, what):
        self.timings.append((what, time.monotonic() - self.t0))

    def inbound(self):
        """(msgid, canary) of the message encrypted to alice and signed by
        bob, delivered into the provider's INBOX on first use."""
        if self._inbound is None:
            canary = "CANARY-" + token()
            msgid = "tb-enc-%s@example.test" % token()
            inner = (b"Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n"
                     b"Subject: Protected " + canary.encode() + b"\r\n"
                     b"From: Bob <bob@example.test>\r\n"
                     b"To: Alice <alice@example.test>\r\n\r\n"
                     b"The secret text " + canary.encode() + b".\r\nSecond line.\r\n")
            armored = self.keys.encrypt(BOB, [ALICE], inner, sign=True)
            self.p.deliver(ALICE, pgp_mime(msgid, armored))
            self._inbound = (msgid, canary)
            self.mark("inbound delivered")
        return self._inbound

    def close(self):
        reports = []
        if self.tb is not None:
            self.tb.close()
        if self.s is not None:
            self.s.stop()
            r = imap_fake.sanitizer_report(self.s.log_text())
            if r:
                reports.append("\n".join(r))
            self.s.close()
        if self.keys is not None:
            self.keys.close()
        self.provider.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return reports


def setUpModule():
    global W
    W = World()


def tearDownModule():
    global W
    w, W = W, None
    if w is not None:
        w.mark("end of tests")
        reports = w.close()
        sys.stderr.write("timings: %s\n" % ", ".join("%s %.1fs" % t for t in w.timings))
        if reports:
            raise AssertionError("sealpost: " + "\n\n".join(reports))


# ---- messages ------------------------------------------------------------------

def pgp_mime(msgid, armored, subject=b"..."):
    b = "enc-" + token()
    armored = armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (b"From: Bob <bob@example.test>\r\n"
            b"To: Alice <alice@example.test>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
            b"Message-ID: <" + msgid.encode() + b">\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n"
            b" boundary=\"" + b.encode() + b"\"\r\n\r\n"
            b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: application/pgp-encrypted\r\n\r\n"
            b"Version: 1\r\n\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n" +
            armored + b"\r\n"
            b"--" + b.encode() + b"--\r\n")


def plain_message(msgid, canary):
    return (b"From: Bob <bob@example.test>\r\n"
            b"To: Alice <alice@example.test>\r\n"
            b"Subject: Plain " + canary.encode() + b"\r\n"
            b"Date: Mon, 03 Mar 2025 10:05:00 +0000\r\n"
            b"Message-ID: <" + msgid.encode() + b">\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"Plain text " + canary.encode() + b".\r\n")


def header_values(raw, name):
    head = raw.replace(b"\r\n", b"\n").partition(b"\n\n")[0]
    out = []
    for line in re.sub(rb"\n[ \t]+", b" ", head).split(b"\n"):
        n, _, v = line.partition(b":")
        if n.strip().lower() == name.lower().encode():
            out.append(v.strip().decode(errors="replace"))
    return out


def provider_copy(user, mailbox, msgid):
    """The provider's file of the message with this Message-ID (waits)."""
    def find():
        got = thunderbird.find_by_message_id(W.p.read_messages(user, mailbox), msgid)
        return got[0] if got else None
    return thunderbird.wait_for(find, PROVIDER_TIMEOUT,
                                "<%s> in %s's %s on the provider" % (msgid, user, mailbox))


def offline_copy(msgid, want=None):
    """Thunderbird's offline copy (INBOX mbox) of the message (waits until
    it is there and, if want, holds want)."""
    def find():
        got = thunderbird.find_by_message_id(
            thunderbird.mbox_messages(W.tb.read_offline_store("INBOX")), msgid)
        if got and (want is None or want in got[0]):
            return got[0]
        return None
    return thunderbird.wait_for(find, SYNC_TIMEOUT,
                                "<%s> in %s" % (msgid, W.tb.offline_store("INBOX")))


# ---- tests ---------------------------------------------------------------------

class Thunderbird(unittest.TestCase):

    def setUp(self):
        self.assertTrue(W.s.running(), W.sealpost_state())
        self.assertIsNotNone(W.tb.proc, "Thunderbird is not running")

    def check_ciphertext(self, raw, canary):
        self.assertNotIn(canary.encode(), raw)
        self.assertNotIn(b"second line", raw)
        self.assertIn(b"multipart/encrypted", raw)
        self.assertIn(b"application/pgp-encrypted", raw)
        self.assertIn(gpgkeys.ARMOR_BEGIN, raw)
        self.assertEqual(header_values(raw, "Subject"), ["..."])

    def test_1_send_encrypted_and_sent_copy_encrypted(self):
        canary = "CANARY-" + token()
        r = W.tb.send_message("Bob <bob@example.test>", "Hello " + canary,
                              "The body " + canary + "\nsecond line\n", timeout=SEND_TIMEOUT)
        W.mark("Thunderbird sent")
        msgid = (r.get("msgid") or "").strip("<>")
        self.assertTrue(msgid, r)

        # bob's copy on the provider: PGP/MIME to bob's key.
        raw = provider_copy(BOB, "INBOX", msgid)
        self.check_ciphertext(raw, canary)
        self.assertIn(W.keys.enc_keyid[BOB], W.keys.recipient_keyids(raw))
        d = W.keys.decrypt(BOB, raw)
        self.assertTrue(d.ok and d.decrypted, d)
        self.assertIn(b"The body " + canary.encode(), d.data)
        self.assertIn(b"Subject: Hello " + canary.encode(), d.data)

        # Thunderbird's Sent copy, as the provider stores it.
        sent = provider_copy(ALICE, "Sent", msgid)
        self.check_ciphertext(sent, canary)
        d = W.keys.decrypt(ALICE, sent)
        self.assertTrue(d.ok and d.decrypted, d)
        self.assertIn(b"The body " + canary.encode(), d.data)
        self.assertIn(b"Subject: Hello " + canary.encode(), d.data)
        # Nothing of it went anywhere else on the provider in the clear.
        for user in (ALICE, BOB):
            for box in ("INBOX", "Sent"):
                for m in W.p.read_messages(user, box):
                    self.assertNotIn(canary.encode(), m)
        W.mark("send checked")

    def test_2_inbound_offline_copy_is_plaintext(self):
        msgid, canary = W.inbound()
        local = offline_copy(msgid, want=canary.encode())
        W.mark("offline copy")
        self.assertIn(b"The secret text " + canary.encode() + b".", local)
        self.assertNotIn(gpgkeys.ARMOR_BEGIN, local)
        self.assertEqual(header_values(local, "X-Sealpost-Decryption"), ["ok"])
        sig = header_values(local, "X-Sealpost-Signature")
        self.assertEqual(len(sig), 1, local[:2000])
        self.assertTrue(sig[0].startswith("good " + W.keys.fpr[BOB]), sig)
        self.assertEqual(header_values(local, "Subject"), ["Protected " + canary])
        # The provider still holds only ciphertext.
        stored = provider_copy(ALICE, "INBOX", msgid)
        self.assertNotIn(canary.encode(), stored)
        self.assertIn(gpgkeys.ARMOR_BEGIN, stored)

    def wait_action(self, msgid, pred):
        """The add-on's action state for the displayed message once pred
        holds for its title; the last state seen in the failure message."""
        last = [None]

        def ready():
            st = W.tb.message_display_action(ADDON_ID)
            last[0] = st
            return st if st and st.get("msgid") == msgid and pred(st.get("title") or "") \
                else None
        try:
            return thunderbird.wait_for(ready, ACTION_TIMEOUT, "the add-on's status", 0.25)
        except thunderbird.WaitTimeout:
            self.fail("the add-on's message display action for <%s> never matched; last "
                      "seen: %r" % (msgid, last[0]))

    def test_3_addon_reports_status(self):
        self.assertIsNone(W.addon_error, "the add-on could not be built, so it is not "
                          "installed: %s" % W.addon_error)
        state = W.tb.addon_state(ADDON_ID)
        self.assertTrue(state and state.get("active"), "add-on %s not active: %r" % (
            ADDON_ID, state))

        # A decrypted message with bob's good signature.
        msgid, canary = W.inbound()
        offline_copy(msgid, want=canary.encode())
        subject = W.tb.display_message(msgid, timeout=DISPLAY_TIMEOUT)
        self.assertEqual(subject, "Protected " + canary)
        st = self.wait_action(msgid, lambda t: t.startswith("Decrypted") and
                              ("signed by " + BOB) in t)
        self.assertTrue(st["title"].startswith("Decrypted"), st)
        self.assertIn("signed by " + BOB, st["title"])
        W.mark("add-on: decrypted")

        # A plain message.
        pcanary = "CANARY-" + token()
        pmsgid = "tb-plain-%s@example.test" % token()
        W.p.deliver(ALICE, plain_message(pmsgid, pcanary))
        W.tb.display_message(pmsgid, timeout=DISPLAY_TIMEOUT)
        st = self.wait_action(pmsgid, lambda t: t.startswith("Not encrypted"))
        self.assertTrue(st["title"].startswith("Not encrypted"), st)
        W.mark("add-on: plain")

    def test_4_paired_addon_asks_the_api(self):
        """Paired with sealpost's local API (URL and token in its
        storage.local, as its options page saves them), the add-on asks the
        API about the signer's key from inside Thunderbird: bob's key,
        marked verified with the CLI, shows as verified."""
        self.assertIsNone(W.addon_error, "the add-on could not be built: %s" % W.addon_error)
        r = harness.run_sealpost("keys", "verify", W.keys.fpr[BOB], "--yes",
                                 "--config", W.s.config_path, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(W.s.state_dir, "api-token")) as f:
            tok = f.read().strip()
        base = "http://" + W.s.global_["api_listen"]
        W.tb.set_addon_storage(ADDON_ID, {"pairing": {"base": base, "token": tok}})
        msgid, canary = W.inbound()
        offline_copy(msgid, want=canary.encode())
        W.tb.display_message(msgid, timeout=DISPLAY_TIMEOUT)
        st = self.wait_action(msgid, lambda t: "key verified" in t)
        self.assertTrue(st["title"].startswith("Decrypted"), st)
        self.assertIn("signed by " + BOB, st["title"])
        self.assertIn("(key verified)", st["title"])
        W.mark("add-on: paired")


if __name__ == "__main__":
    unittest.main()
