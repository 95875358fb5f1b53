# test_outbound: what sealpost relays when it encrypts, signs or refuses,
# checked in the recipients' Maildirs of the real provider with real gpg.
"""Outbound encryption through sealpost to a real Postfix + Dovecot: PGP/MIME
(RFC 3156) with protected headers for recipients with keys, the policy
decision (account default, rules set with `sealpost policy`, the client's
X-Sealpost-* headers, RCPT-time refusal), Bcc copies that name no other
recipient's key, signing, pass-through of what is already encrypted, big
and 8-bit messages, bare-LF smuggling and a provider refusing after DATA.

One provider, one set of throwaway keyrings (tests/integration/gpgkeys.py)
and one sealpost per configuration variant are shared by the module."""
import base64
import email
import email.policy
import hashlib
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpgkeys  # noqa: E402
import harness  # noqa: E402
import smtp_fake  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@outside.test"          # no key anywhere
ERIN = "erin@outside.test"          # no key anywhere
MAILDIRS = (ALICE, BOB, CAROL, "outside")

# Long enough for a wrongly relayed message to reach a Maildir.
QUIET_SECONDS = 1.5

# Account configuration variants, one sealpost each (started on first use).
VARIANTS = {
    "default": {},
    "require": {"policy": "require"},
    "never": {"policy": "never"},
    "sign": {"sign": True},
    "mutual": {"clear_subject": True, "prefer_encrypt": "mutual"},
    "cli": {},
    "nohdr": {"policy_header": False},
    "reqnohdr": {"policy": "require", "policy_header": False},
}

W = None


class World:
    """The provider, the keyrings and the sealposts the module shares."""

    def __init__(self):
        # The provider's Postfix logs every SMTP command sealpost sends it
        # (debug_peer_list), so tests can read the relayed MAIL and RCPT.
        self.provider = harness.Provider(postfix_params={
            "debug_peer_list": "127.0.0.1", "debug_peer_level": "1"})
        self.keys = None
        self.sealposts = {}
        self.extra = []
        self.p = self.provider.__enter__()
        try:
            self.keys = gpgkeys.Keyrings([ALICE, BOB, CAROL])
        except BaseException:
            self.provider.__exit__(None, None, None)
            raise
        self.tmp = tempfile.mkdtemp(prefix="spo-")

    def sealpost(self, variant):
        s = self.sealposts.get(variant)
        if s is None:
            home = self.keys.sealpost_home(ALICE, [BOB, CAROL])
            s = harness.Sealpost(self.p, account=dict(VARIANTS[variant]),
                                 global_={"gnupg_home": home})
            self.sealposts[variant] = s
        return s

    def sealpost_upstream(self, url, ca_file):
        """A sealpost (default account settings) in front of another
        provider (a fake)."""
        home = self.keys.sealpost_home(ALICE, [BOB, CAROL])
        s = harness.Sealpost(self.p, account={"smtp_upstream": url, "upstream_ca_file": ca_file},
                             global_={"gnupg_home": home})
        self.extra.append(s)
        return s

    def close(self):
        reports = []
        for s in list(self.sealposts.values()) + self.extra:
            if s.proc is not None:
                smtp_fake.wait_sessions_closed(s.log_text)
            s.stop()
            r = smtp_fake.sanitizer_report(s.log_text())
            if r:
                reports.append(r)
            s.close()
        if self.keys is not None:
            self.keys.close()
        self.provider.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return reports


setUpModule, tearDownModule = harness.module_world(globals(), World)


# ---- messages ------------------------------------------------------------------

def token():
    return uuid.uuid4().hex[:12]


def crlf(raw):
    """raw with every line end CRLF (Maildir files hold LF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def split_message(raw):
    """(header block, body) of raw, both CRLF; the blank line belongs to
    neither."""
    raw = crlf(raw)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return raw, b""
    return head + b"\r\n", body


def header_fields(raw):
    """[(lower-case name, unfolded value)] of raw's header block."""
    head, _ = split_message(raw)
    out = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip().decode("utf-8", "replace"))
            continue
        name, _, value = line.partition(b":")
        out.append((name.strip().lower().decode("ascii", "replace"),
                    value.strip().decode("utf-8", "replace")))
    return out


def header(raw, name):
    """Values of the header fields called name."""
    return [v for n, v in header_fields(raw) if n == name.lower()]


def parse(raw):
    return email.message_from_bytes(crlf(raw), policy=email.policy.compat32)


def build(msgid, subject, body, to="Bob <bob@example.test>", extra=b"",
          content_type=b"text/plain; charset=us-ascii", cc=None, frm=b"Alice <alice@example.test>"):
    """A message (CRLF) with a Message-ID of its own."""
    h = (b"From: " + frm + b"\r\nTo: " + to.encode() + b"\r\n")
    if cc:
        h += b"Cc: " + cc.encode() + b"\r\n"
    if isinstance(subject, str):
        subject = subject.encode()
    h += (b"Subject: " + subject + b"\r\nDate: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
          b"Message-ID: <" + msgid.encode() + b">\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: " + content_type + b"\r\n" + extra)
    return h + b"\r\n" + body


def is_encrypted(raw):
    m = parse(raw)
    return (m.get_content_type() == "multipart/encrypted" and
            (m.get_param("protocol") or "").lower() == "application/pgp-encrypted")


def mail_before_data(commands):
    """The parameters of each transaction's MAIL FROM that went on to DATA
    (a MAIL later reset is left out), from a list of SMTP command lines."""
    out, mail = [], None
    for c in commands:
        verb = c[:4].upper()
        if verb == "MAIL":
            mail = c.partition(">")[2]
        elif verb == "RSET":
            mail = None
        elif verb == "DATA" and mail is not None:
            out.append(mail)
            mail = None
    return out


# What the header of an encrypted message may show (RFC 9788 and the
# trace fields the provider adds are left out before comparing).
OUTER_FIELDS = {"from", "sender", "to", "cc", "reply-to", "date", "message-id",
                "in-reply-to", "references", "mime-version", "content-type",
                "autocrypt", "subject"}

TRACE_FIELDS = (b"return-path", b"delivered-to", b"received", b"x-original-to")


def strip_trace(raw):
    """raw (CRLF) without the trace fields the provider put on top."""
    lines = crlf(raw).split(b"\r\n")
    i = 0
    while i < len(lines) and lines[i].split(b":", 1)[0].strip().lower() in TRACE_FIELDS:
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def has_bare_lf(data):
    return re.search(rb"(?<!\r)\n", data) is not None


# ---- the test base -----------------------------------------------------------------

class OutboundCase(unittest.TestCase):
    maxDiff = 4000

    def client(self, s, implicit=False):
        ctx = ssl.create_default_context(cafile=s.cert_path)
        if implicit:
            c = smtplib.SMTP_SSL("127.0.0.1", s.smtps_port, timeout=120, context=ctx)
        else:
            c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=120)
            c.starttls(context=ctx)
        self.addCleanup(c.close)
        c.ehlo()
        c.login(ALICE, W.p.users[ALICE])
        return c

    def transaction(self, c, rcpts, msg, mail_options=(), sender=ALICE):
        """MAIL, RCPT each, DATA (when a recipient was taken) by hand, so
        that every reply is seen. Returns {'mail': (code, text), 'rcpt':
        [(code, text)], 'data': (code, text) or None}."""
        out = {"mail": c.mail(sender, list(mail_options)), "rcpt": [], "data": None}
        self.assertEqual(out["mail"][0], 250, out)
        for r in rcpts:
            out["rcpt"].append(c.rcpt(r))
        if any(code == 250 for code, _ in out["rcpt"]):
            out["data"] = c.data(msg)
        else:
            c.rset()
        return out

    def send(self, variant, rcpts, msg, **kw):
        """One message through the variant's sealpost; asserts the 250."""
        s = W.sealpost(variant)
        c = self.client(s)
        try:
            r = self.transaction(c, rcpts, msg, **kw)
        finally:
            c.quit()
        self.assertEqual([code for code, _ in r["rcpt"]], [250] * len(rcpts), r)
        self.assertEqual(r["data"][0], 250, "%r\n%s" % (r, s.log_tail(30)))
        return r

    def find(self, user, msgid, timeout=20, count=1):
        """The stored messages (bytes, CRLF kept as stored) of user's
        Maildir whose header carries Message-ID <msgid>; waits for count
        of them."""
        want = ("message-id: <%s>" % msgid).encode()
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for path in W.p.messages(user):
                try:
                    with open(path, "rb") as f:
                        head = f.read(256 * 1024)
                except FileNotFoundError:
                    continue
                h = crlf(head).partition(b"\r\n\r\n")[0].lower()
                if want in h:
                    found.append(path)
            if len(found) >= count:
                out = []
                for path in found:
                    try:
                        with open(path, "rb") as f:
                            out.append(f.read())
                    except FileNotFoundError:
                        base = os.path.basename(path).split(":")[0]
                        for q in W.p.messages(user):
                            if os.path.basename(q).split(":")[0] == base:
                                with open(q, "rb") as f:
                                    out.append(f.read())
                return out if count > 1 else out[0]
            if time.monotonic() > deadline:
                self.fail("%d of %d messages <%s> for %s after %ss\nprovider:\n%s" % (
                    len(found), count, msgid, user, timeout, W.p._log_tail(15)))
            time.sleep(0.05)

    def stored_with(self, user, msgid):
        want = ("message-id: <%s>" % msgid).encode()
        return [raw for raw in W.p.read_messages(user)
                if want in crlf(raw).partition(b"\r\n\r\n")[0].lower()]

    def assert_not_relayed(self, msgid, wait=True):
        """Postfix never took a message with this Message-ID, and none is in
        any Maildir after a quiet while."""
        if wait:
            time.sleep(QUIET_SECONDS)
        self.assertNotIn("message-id=<%s>" % msgid, W.p.log_text(),
                         "Postfix received the message")
        for user in MAILDIRS:
            self.assertEqual(self.stored_with(user, msgid), [], "delivered to %s" % user)

    def decrypt(self, user, raw):
        r = W.keys.decrypt(user, raw)
        self.assertTrue(r.ok and r.decrypted, "%s cannot decrypt: %r" % (user, r))
        return r

    def assert_encrypted_for(self, raw, user, extra_keyids=()):
        """raw is RFC 3156 PGP/MIME, encrypted to exactly user's and
        alice's (the sender's) encryption subkeys, and user decrypts it.
        Returns the gpg result (its data: the inner entity)."""
        m = parse(raw)
        self.assertEqual(m.get_content_type(), "multipart/encrypted", raw[:1500])
        self.assertEqual((m.get_param("protocol") or "").lower(), "application/pgp-encrypted")
        parts = m.get_payload()
        self.assertEqual(len(parts), 2, raw[:2000])
        self.assertEqual(parts[0].get_content_type(), "application/pgp-encrypted")
        self.assertIn("Version: 1", parts[0].get_payload())
        self.assertEqual(parts[1].get_content_type(), "application/octet-stream")
        self.assertTrue(parts[1].get_payload().lstrip().startswith("-----BEGIN PGP MESSAGE-----"))
        ids = W.keys.recipient_keyids(raw)
        want = {W.keys.enc_keyid[user], W.keys.enc_keyid[ALICE]} | set(extra_keyids)
        self.assertEqual(set(ids), want, "recipient key ids (bob %s, carol %s, alice %s)" % (
            W.keys.enc_keyid[BOB], W.keys.enc_keyid[CAROL], W.keys.enc_keyid[ALICE]))
        return self.decrypt(user, raw)

    def assert_no_sealpost_headers(self, raw):
        names = [n for n, _ in header_fields(raw)]
        self.assertEqual([n for n in names if n.startswith("x-sealpost")], [], names)

    def assert_autocrypt_alice(self, raw, mutual=False):
        ac = header(raw, "autocrypt")
        self.assertEqual(len(ac), 1, header_fields(raw))
        attrs = {}
        for part in ac[0].split(";"):
            k, _, v = part.strip().partition("=")
            attrs[k.strip().lower()] = re.sub(r"\s+", "", v)
        self.assertEqual(attrs.get("addr"), ALICE, ac[0][:200])
        if mutual:
            self.assertEqual(attrs.get("prefer-encrypt"), "mutual", ac[0][:200])
        else:
            self.assertNotIn("prefer-encrypt", attrs, ac[0][:200])
        keydata = base64.b64decode(attrs["keydata"])
        r = W.keys.gpg(W.keys.lister_home, "--with-colons", "--import-options", "show-only",
                       "--import", input=keydata)
        self.assertIn(W.keys.fpr[ALICE], r.data.decode().upper())

    def body_identical(self, stored, sent):
        self.assertEqual(split_message(stored)[1], split_message(sent)[1])


# ---- a: the PGP/MIME message itself ----------------------------------------------------

class EncryptedMessage(OutboundCase):

    def test_a_pgp_mime_to_bob(self):
        canary = "cnry" + token()
        msgid = "a-" + token() + "@example.test"
        subject = "Quarterly numbers " + canary
        body = ("--=-mixed-a\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                "Hello Bob,\r\nthe secret word is %s.\r\n\r\n"
                "--=-mixed-a\r\nContent-Type: text/plain; name=\"%s-plan.txt\"\r\n"
                "Content-Disposition: attachment; filename=\"%s-plan.txt\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n"
                "--=-mixed-a--\r\n" % (canary, canary, canary,
                                       base64.b64encode(b"attached plan\r\n").decode())).encode()
        msg = build(msgid, subject, body,
                    content_type=b'multipart/mixed; boundary="=-mixed-a"',
                    extra=b"X-Mailer: outbound-test\r\nX-Sealpost-Encrypt: opportunistic\r\n"
                          b"Reply-To: alice-replies@example.test\r\n"
                          b"In-Reply-To: <earlier-a@example.test>\r\n"
                          b"References: <first-a@example.test> <earlier-a@example.test>\r\n")
        self.send("default", [BOB], msg)
        raw = self.find(BOB, msgid)

        self.assertNotIn(canary.encode(), raw)
        self.assertEqual(header(raw, "subject"), ["..."])
        self.assertEqual(header(raw, "x-mailer"), [], "only the listed fields stay outside")
        outer = {n for n, _ in header_fields(strip_trace(raw))}
        self.assertLessEqual(outer, OUTER_FIELDS)
        self.assertEqual(header(raw, "reply-to"), ["alice-replies@example.test"])
        self.assertEqual(header(raw, "in-reply-to"), ["<earlier-a@example.test>"])
        self.assertEqual(header(raw, "references"),
                         ["<first-a@example.test> <earlier-a@example.test>"])
        self.assertIn(BOB, " ".join(header(raw, "to")))
        self.assertIn(ALICE, " ".join(header(raw, "from")))
        self.assert_no_sealpost_headers(raw)
        self.assert_autocrypt_alice(raw)

        r = self.assert_encrypted_for(raw, BOB)
        inner = r.data
        self.assertFalse(has_bare_lf(inner), "bare LF in the decrypted entity")
        self.assertIn(("the secret word is %s." % canary).encode(), inner)
        self.assertIn(("%s-plan.txt" % canary).encode(), inner)
        self.assertEqual(header(inner, "subject"), [subject])
        self.assertIn(ALICE, " ".join(header(inner, "from")))
        self.assertIn(BOB, " ".join(header(inner, "to")))
        self.assertEqual(header(inner, "x-mailer"), ["outbound-test"])
        self.assertEqual(header(inner, "message-id"), ["<%s>" % msgid])
        self.assert_no_sealpost_headers(inner)
        m = parse(inner)
        self.assertEqual(m.get_content_type(), "multipart/mixed")
        self.assertEqual(m.get_param("protected-headers"), "v1", header(inner, "content-type"))
        self.assertEqual(m.get_param("hp"), "cipher", header(inner, "content-type"))
        hp_outer = header(inner, "hp-outer")
        self.assertTrue(any(v.lower().startswith("subject:") for v in hp_outer), hp_outer)
        # The attachment survived inside, byte for byte.
        parts = m.get_payload()
        self.assertEqual(parts[1].get_filename(), "%s-plan.txt" % canary)
        self.assertEqual(parts[1].get_payload(decode=True), b"attached plan\r\n")

    def test_o_clear_subject_and_prefer_encrypt_mutual(self):
        msgid = "o-" + token() + "@example.test"
        msg = build(msgid, "Visible subject o", b"clear subject body\r\n")
        self.send("mutual", [BOB], msg)
        raw = self.find(BOB, msgid)
        self.assertEqual(header(raw, "subject"), ["Visible subject o"])
        self.assert_autocrypt_alice(raw, mutual=True)
        r = self.assert_encrypted_for(raw, BOB)
        self.assertIn(b"clear subject body", r.data)


# ---- b: real clients --------------------------------------------------------------------

class RealClients(OutboundCase):

    def client_message(self, name):
        msgid = "b-%s-%s@example.test" % (name, token())
        canary = "cnry" + token()
        msg = build(msgid, "sent by " + name, ("secret %s\r\n.leading dot\r\n" % canary).encode())
        path = os.path.join(W.tmp, msgid + ".eml")
        with open(path, "wb") as f:
            f.write(msg)
        return msgid, canary, path

    def check(self, msgid, canary):
        raw = self.find(BOB, msgid)
        self.assertNotIn(canary.encode(), raw)
        r = self.assert_encrypted_for(raw, BOB)
        self.assertIn(("secret %s\r\n.leading dot\r\n" % canary).encode(), r.data)

    def run_client(self, argv, stdin=None):
        r = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, "%s failed: %r %r\n%s" % (
            argv[0], r.stdout, r.stderr, W.sealpost("default").log_tail(20)))

    def test_b_smtplib(self):
        msgid, canary, path = self.client_message("smtplib")
        s = W.sealpost("default")
        for implicit in (False, True):
            c = self.client(s, implicit=implicit)
            with open(path, "rb") as f:
                data = f.read()
            if implicit:
                data = data.replace(msgid.encode(), b"i" + msgid.encode())
            self.assertEqual(c.sendmail(ALICE, [BOB], data), {})
            c.quit()
        self.check(msgid, canary)
        self.check("i" + msgid, canary)

    def test_b_msmtp(self):
        msgid, canary, path = self.client_message("msmtp")
        s = W.sealpost("default")
        rc = os.path.join(W.tmp, "msmtprc")
        with open(rc, "w") as f:
            f.write("account sealpost\nhost 127.0.0.1\nport %d\ntls on\ntls_starttls on\n"
                    "tls_trust_file %s\nauth on\nuser %s\npassword %s\nfrom %s\n"
                    "account default : sealpost\n" % (s.smtp_port, s.cert_path, ALICE,
                                                      W.p.users[ALICE], ALICE))
        os.chmod(rc, 0o600)
        with open(path, "rb") as f:
            self.run_client(["msmtp", "-C", rc, "-a", "sealpost", BOB], stdin=f)
        self.check(msgid, canary)

    def test_b_curl(self):
        msgid, canary, path = self.client_message("curl")
        s = W.sealpost("default")
        self.run_client(["curl", "--silent", "--show-error", "--ssl-reqd",
                         "--cacert", s.cert_path, "smtp://127.0.0.1:%d" % s.smtp_port,
                         "--user", "%s:%s" % (ALICE, W.p.users[ALICE]),
                         "--mail-from", ALICE, "--mail-rcpt", BOB, "--upload-file", path])
        self.check(msgid, canary)


# ---- c, d, e: the policy decision -------------------------------------------------------

class Policy(OutboundCase):

    def test_c_require_without_key_refuses_whole_message(self):
        s = W.sealpost("require")
        c = self.client(s)
        msgid = "c-" + token() + "@example.test"
        msg = build(msgid, "require c", b"must not leave\r\n",
                    to="Bob <bob@example.test>, Dave <dave@outside.test>")
        r = self.transaction(c, [BOB, DAVE], msg)
        code, text = r["data"]
        self.assertEqual(code, 550, r)
        self.assertTrue(text.startswith(b"5.7.1 "), text)
        self.assertIn(b"<dave@outside.test>", text)
        self.assertNotIn(b"bob@example.test", text)
        # Every recipient without a key is named.
        msgid2 = "c2-" + token() + "@example.test"
        msg2 = build(msgid2, "require c2", b"must not leave either\r\n",
                     to="Dave <dave@outside.test>, Erin <erin@outside.test>")
        r2 = self.transaction(c, [DAVE, ERIN], msg2)
        self.assertEqual(r2["data"][0], 550, r2)
        self.assertIn(b"<dave@outside.test>", r2["data"][1])
        self.assertIn(b"<erin@outside.test>", r2["data"][1])
        # The session goes on: bob alone, who has a key, gets his copy.
        msgid3 = "c3-" + token() + "@example.test"
        r3 = self.transaction(c, [BOB], build(msgid3, "require c3", b"this one goes\r\n"))
        self.assertEqual(r3["data"][0], 250, r3)
        c.quit()
        raw = self.find(BOB, msgid3)
        self.assertIn(b"this one goes", self.assert_encrypted_for(raw, BOB).data)
        self.assert_not_relayed(msgid)
        self.assert_not_relayed(msgid2, wait=False)

    def test_d_opportunistic_without_key_as_written(self):
        msgid = "d-" + token() + "@example.test"
        body = b"plain for dave\r\n..two dots\r\nend\r\n"
        msg = build(msgid, "opportunistic d", body, to="Dave <dave@outside.test>",
                    extra=b"X-Sealpost-Encrypt: opportunistic\r\n")
        self.send("default", [DAVE], msg)
        raw = self.find("outside", msgid)
        self.assertFalse(is_encrypted(raw))
        self.body_identical(raw, msg)
        self.assertEqual(header(raw, "subject"), ["opportunistic d"])
        self.assert_no_sealpost_headers(raw)
        self.assert_autocrypt_alice(raw)

    def test_d_never_to_bob_as_written(self):
        msgid = "dn-" + token() + "@example.test"
        body = b"never encrypted for bob\r\n"
        msg = build(msgid, "never d", body)
        self.send("never", [BOB], msg)
        raw = self.find(BOB, msgid)
        self.assertFalse(is_encrypted(raw))
        self.assertNotIn(b"BEGIN PGP", raw)
        self.body_identical(raw, msg)
        self.assertEqual(header(raw, "subject"), ["never d"])

    def test_d_client_autocrypt_kept(self):
        msgid = "da-" + token() + "@example.test"
        mine = "addr=alice@example.test; keydata=bWluZQ=="
        msg = build(msgid, "own autocrypt d", b"the client's own\r\n",
                    extra=b"Autocrypt: " + mine.encode() + b"\r\n")
        self.send("never", [BOB], msg)
        raw = self.find(BOB, msgid)
        self.assertEqual(header(raw, "autocrypt"), [mine])
        self.body_identical(raw, msg)

    def test_e_header_never_beats_account_require(self):
        msgid = "e1-" + token() + "@example.test"
        body = b"the client said never\r\n"
        msg = build(msgid, "header never e", body,
                    to="Bob <bob@example.test>, Dave <dave@outside.test>",
                    extra=b"X-Sealpost-Encrypt: never\r\n")
        self.send("require", [BOB, DAVE], msg)
        for user in (BOB, "outside"):
            raw = self.find(user, msgid)
            self.assertFalse(is_encrypted(raw), user)
            self.body_identical(raw, msg)
            self.assert_no_sealpost_headers(raw)

    def test_e_header_require_without_key(self):
        s = W.sealpost("default")
        c = self.client(s)
        msgid = "e2-" + token() + "@example.test"
        msg = build(msgid, "header require e", b"no key for dave\r\n",
                    to="Dave <dave@outside.test>", extra=b"X-Sealpost-Encrypt: require\r\n")
        r = self.transaction(c, [DAVE], msg)
        c.quit()
        self.assertEqual(r["data"][0], 550, r)
        self.assertTrue(r["data"][1].startswith(b"5.7.1 "), r)
        self.assertIn(b"<dave@outside.test>", r["data"][1])
        self.assert_not_relayed(msgid)

    def test_e_invalid_header_values(self):
        s = W.sealpost("default")
        c = self.client(s)
        ids = []
        for name in (b"X-Sealpost-Encrypt", b"X-Sealpost-Sign"):
            msgid = "e3-" + token() + "@example.test"
            ids.append(msgid)
            msg = build(msgid, "invalid header e", b"maybe not\r\n",
                        extra=name + b": maybe\r\n")
            r = self.transaction(c, [BOB], msg)
            code, text = r["data"]
            self.assertEqual(code, 554, r)
            self.assertTrue(text.startswith(b"5.6.0 "), text)
            self.assertIn(name.lower(), text.lower())
        c.quit()
        for i, msgid in enumerate(ids):
            self.assert_not_relayed(msgid, wait=(i == 0))


# ---- f, g: rules from the command line, refusal at RCPT --------------------------------

def policy_cli(s, *args):
    return harness.run_sealpost("policy", args[0], "--config", s.config_path, *args[1:])


class Rules(OutboundCase):

    def cli(self, s, *args):
        r = policy_cli(s, *args)
        self.assertEqual(r.returncode, 0, "sealpost policy %s: rc %d\n%s%s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def test_f_rule_set_while_running(self):
        s = W.sealpost("cli")
        c = self.client(s)
        msgid0 = "f0-" + token() + "@example.test"
        r = self.transaction(c, [DAVE], build(msgid0, "before rule f", b"goes out\r\n",
                                              to="dave@outside.test"))
        self.assertEqual(r["data"][0], 250, r)
        c.quit()
        self.find("outside", msgid0)

        self.cli(s, "set", "@outside.test", "require")
        listed = self.cli(s, "list", "--json")
        self.assertIn("@outside.test", listed.stdout)

        c = self.client(s)
        msgid = "f1-" + token() + "@example.test"
        r = self.transaction(c, [DAVE], build(msgid, "after rule f", b"stays\r\n",
                                              to="dave@outside.test"))
        self.assertEqual(r["data"][0], 550, r)
        self.assertTrue(r["data"][1].startswith(b"5.7.1 "), r)
        self.assertIn(b"<dave@outside.test>", r["data"][1])
        c.quit()
        self.assert_not_relayed(msgid)

        self.cli(s, "unset", "@outside.test")
        c = self.client(s)
        msgid2 = "f2-" + token() + "@example.test"
        r = self.transaction(c, [DAVE], build(msgid2, "rule gone f", b"goes again\r\n",
                                              to="dave@outside.test"))
        self.assertEqual(r["data"][0], 250, r)
        c.quit()
        self.find("outside", msgid2)

    def check_rcpt_refusal(self, s):
        mark = W.p.log_mark()
        c = self.client(s)
        msgid = "g-" + token() + "@example.test"
        msg = build(msgid, "rcpt refusal g", b"for bob only\r\n",
                    to="Bob <bob@example.test>, Dave <dave@outside.test>",
                    extra=b"X-Sealpost-Encrypt: never\r\n")
        r = self.transaction(c, [DAVE, BOB], msg)
        (dcode, dtext), (bcode, _) = r["rcpt"]
        self.assertEqual(dcode, 550, r)
        self.assertTrue(dtext.startswith(b"5.7.1 "), dtext)
        self.assertIn(b"<dave@outside.test>", dtext)
        self.assertEqual(bcode, 250, r)
        self.assertEqual(r["data"][0], 250, r)
        # smtplib's sendmail sees every recipient refused.
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            c.sendmail(ALICE, [DAVE], build("g2-" + token() + "@example.test", "g2", b"x\r\n"))
        c.quit()
        raw = self.find(BOB, msgid)
        # The client's header is not honoured here, but still removed.
        self.assert_no_sealpost_headers(raw)
        self.assertIn(b"for bob only", self.assert_encrypted_for(raw, BOB).data)
        self.assertNotIn("rcpt to:<dave@outside.test>", W.p.log_text(since=mark).lower(),
                         "the refused recipient reached the provider")
        self.assertEqual(self.stored_with("outside", msgid), [])

    def test_g_rcpt_refused_by_rule(self):
        s = W.sealpost("nohdr")
        self.cli(s, "set", DAVE, "require")
        self.check_rcpt_refusal(s)

    def test_g_rcpt_refused_by_account_policy(self):
        self.check_rcpt_refusal(W.sealpost("reqnohdr"))


# ---- h, i, j: pass-through, Bcc, signatures ----------------------------------------------

class Copies(OutboundCase):

    def test_h_already_encrypted_passes_through(self):
        inner = b"Content-Type: text/plain\r\n\r\nencrypted by the client itself\r\n"
        armor = crlf(W.keys.encrypt(ALICE, [BOB], inner)).rstrip(b"\r\n")
        body = (b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
                b"--=-enc-h\r\nContent-Type: application/pgp-encrypted\r\n"
                b"Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n"
                b"--=-enc-h\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
                b"Content-Description: OpenPGP encrypted message\r\n"
                b"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n" + armor +
                b"\r\n\r\n--=-enc-h--\r\n")
        msgid = "h-" + token() + "@example.test"
        msg = build(msgid, "already encrypted h", body,
                    content_type=b'multipart/encrypted; protocol="application/pgp-encrypted"; '
                                 b'boundary="=-enc-h"',
                    extra=b"X-Sealpost-Encrypt: opportunistic\r\n")
        self.send("default", [BOB], msg)
        raw = self.find(BOB, msgid)
        self.body_identical(raw, msg)
        self.assertEqual(crlf(raw).count(gpgkeys.ARMOR_BEGIN), 1)
        self.assertEqual(W.keys.recipient_keyids(raw), [W.keys.enc_keyid[BOB]])
        self.assertEqual(self.decrypt(BOB, raw).data, inner)
        self.assert_no_sealpost_headers(raw)
        self.assert_autocrypt_alice(raw)

        # An inline PGP text body passes as well.
        armor2 = crlf(W.keys.encrypt(ALICE, [CAROL], b"inline for carol\r\n"))
        msgid2 = "h2-" + token() + "@example.test"
        msg2 = build(msgid2, "inline pgp h", armor2, to="carol@example.test")
        self.send("default", [CAROL], msg2)
        raw2 = self.find(CAROL, msgid2)
        self.assertFalse(is_encrypted(raw2))
        self.body_identical(raw2, msg2)
        self.assertEqual(self.decrypt(CAROL, raw2).data, b"inline for carol\r\n")

    def test_h_smime_passes_through(self):
        blob = base64.encodebytes(os.urandom(900)).replace(b"\n", b"\r\n")
        msgid = "h3-" + token() + "@example.test"
        msg = build(msgid, "smime h", blob,
                    content_type=b'application/pkcs7-mime; smime-type=enveloped-data; '
                                 b'name="smime.p7m"',
                    extra=b"Content-Transfer-Encoding: base64\r\n"
                          b"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n")
        self.send("default", [BOB], msg)
        raw = self.find(BOB, msgid)
        self.assertFalse(is_encrypted(raw))
        self.assertNotIn(b"BEGIN PGP", raw)
        self.body_identical(raw, msg)
        self.assertEqual(parse(raw).get_content_type(), "application/pkcs7-mime")

    def test_i_bcc_copy_names_no_other_key(self):
        msgid = "i-" + token() + "@example.test"
        msg = build(msgid, "bcc i", b"to bob, carol in Bcc\r\n",
                    extra=b"Bcc: Carol <carol@example.test>\r\n")
        self.send("default", [BOB, CAROL], msg)
        bob = self.find(BOB, msgid)
        carol = self.find(CAROL, msgid)
        for raw in (bob, carol):
            self.assertNotIn(b"\nbcc:", crlf(raw).lower())
        rb = self.assert_encrypted_for(bob, BOB)
        self.assertNotIn(W.keys.enc_keyid[CAROL], W.keys.recipient_keyids(bob))
        rc = self.assert_encrypted_for(carol, CAROL)
        self.assertNotIn(W.keys.enc_keyid[BOB], W.keys.recipient_keyids(carol))
        for r in (rb, rc):
            self.assertIn(b"to bob, carol in Bcc", r.data)
            self.assertEqual(header(r.data, "bcc"), [])
        self.assertNotIn(b"carol@example.test", split_message(bob)[0].lower(),
                         "carol named in bob's copy")
        self.assertEqual(W.keys.decrypt(CAROL, bob).decrypted, False)

    def test_i_sender_without_secret_key(self):
        # From carol, whose secret key sealpost does not have: the copy is
        # encrypted to the account address's key instead, and carries no
        # Autocrypt header.
        msgid = "i2-" + token() + "@example.test"
        msg = build(msgid, "from carol i", b"sent for carol\r\n",
                    frm=b"Carol <carol@example.test>")
        self.send("default", [BOB], msg)
        raw = self.find(BOB, msgid)
        self.assertEqual(header(raw, "autocrypt"), [])
        r = self.assert_encrypted_for(raw, BOB)
        self.assertIn(b"sent for carol", r.data)

    def test_j_sign_and_encrypt(self):
        msgid = "j-" + token() + "@example.test"
        msg = build(msgid, "signed j", b"signed and sealed\r\n")
        self.send("sign", [BOB], msg)
        raw = self.find(BOB, msgid)
        r = self.assert_encrypted_for(raw, BOB)
        self.assertIn(b"signed and sealed", r.data)
        self.assertTrue(r.goodsig, r)
        self.assertIn(W.keys.fpr[ALICE], r.validsig, r)

    def check_signed(self, raw, text):
        """raw is RFC 3156 multipart/signed with a good detached signature
        by alice over its first part's bytes."""
        m = parse(raw)
        self.assertEqual(m.get_content_type(), "multipart/signed", raw[:1500])
        self.assertEqual((m.get_param("protocol") or "").lower(), "application/pgp-signature")
        self.assertTrue((m.get_param("micalg") or "").lower().startswith("pgp-"),
                        m.get_param("micalg"))
        boundary = m.get_boundary().encode()
        body = split_message(raw)[1]
        delim = b"--" + boundary
        start = body.index(delim + b"\r\n") + len(delim) + 2
        end = body.index(b"\r\n" + delim, start)
        signed = body[start:end]
        rest = body[end + 2:]
        self.assertTrue(rest.startswith(delim + b"\r\n"), rest[:200])
        sig_part = rest[len(delim) + 2:rest.index(b"\r\n" + delim + b"--")]
        self.assertIn(b"application/pgp-signature", sig_part.partition(b"\r\n\r\n")[0].lower())
        sig = sig_part.partition(b"\r\n\r\n")[2]
        self.assertIn(text, signed)
        v = W.keys.verify_detached(BOB, signed, sig)
        self.assertTrue(v.ok and v.goodsig, v)
        self.assertIn(W.keys.fpr[ALICE], v.validsig)
        # The signature covers exactly these bytes.
        self.assertFalse(W.keys.verify_detached(BOB, signed + b"x", sig).goodsig)
        return signed

    def test_j_sign_without_key_multipart_signed(self):
        msgid = "j2-" + token() + "@example.test"
        msg = build(msgid, "signed only j", b"signed, not sealed\r\n", to="dave@outside.test")
        self.send("sign", [DAVE], msg)
        raw = self.find("outside", msgid)
        signed = self.check_signed(raw, b"signed, not sealed")
        self.assertIn(b"signed, not sealed\r\n", signed)
        self.assert_no_sealpost_headers(raw)

    def test_j_sign_header_yes(self):
        msgid = "j3-" + token() + "@example.test"
        msg = build(msgid, "sign header j", b"signed on request\r\n", to="dave@outside.test",
                    extra=b"X-Sealpost-Sign: yes\r\n")
        self.send("default", [DAVE], msg)
        raw = self.find("outside", msgid)
        self.check_signed(raw, b"signed on request")
        self.assert_no_sealpost_headers(raw)


# ---- k, l, m: big, 8-bit, bare LF -------------------------------------------------------

class Sizes(OutboundCase):

    def test_k_big_message_streamed(self):
        size = 25 * 1024 * 1024
        raw_bytes = os.urandom(size * 3 // 4)
        b64 = base64.b64encode(raw_bytes)
        body = b"".join(b64[i:i + 76] + b"\r\n" for i in range(0, len(b64), 76))
        self.assertGreaterEqual(len(body), size)
        msgid = "k-" + token() + "@example.test"
        msg = build(msgid, "big k", body)
        s = W.sealpost("default")
        # Warmed up (TLS, GPGME) before the baseline is taken.
        self.send("default", [BOB], build("k0-" + token() + "@example.test", "small k", b"x\r\n"))
        base = s.rss_kb()
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], s.rss_kb())
                except (OSError, harness.SealpostError):
                    return
                time.sleep(0.02)
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            c = self.client(s)
            r = self.transaction(c, [BOB], msg)
            c.quit()
        finally:
            stop.set()
            t.join()
        self.assertEqual(r["data"][0], 250, r)
        raw = self.find(BOB, msgid, timeout=120)
        res = self.assert_encrypted_for(raw, BOB)
        inner_body = split_message(res.data)[1]
        self.assertEqual(hashlib.sha256(inner_body).hexdigest(), hashlib.sha256(body).hexdigest())
        grown_kb = peak[0] - base
        # Streamed: sealpost never holds the whole message (or its
        # ciphertext) in memory; three times its size is the ceiling.
        self.assertLess(peak[0], 3 * len(msg) // 1024,
                        "peak RSS %d kB (baseline %d kB) for a %d kB message" % (
                            peak[0], base, len(msg) // 1024))
        self.assertLess(grown_kb, len(msg) // 1024,
                        "RSS grew by %d kB (baseline %d kB) for a %d kB message" % (
                            grown_kb, base, len(msg) // 1024))

    def test_l_size_and_8bitmime(self):
        body = ("Grüße aus Köln — 日本語\r\nété, naïve, Øre\r\n" * 50).encode("utf-8")
        msgid = "l-" + token() + "@example.test"
        msg = build(msgid, "eight bit l", body,
                    content_type=b"text/plain; charset=utf-8",
                    extra=b"Content-Transfer-Encoding: 8bit\r\n")
        mark = W.p.log_mark()
        self.send("default", [BOB], msg, mail_options=["SIZE=%d" % len(msg), "BODY=8BITMIME"])
        raw = self.find(BOB, msgid)
        r = self.assert_encrypted_for(raw, BOB)
        self.assertEqual(split_message(r.data)[1], body)
        # The MAIL that reached Postfix: the original parameters, SIZE=
        # that of the encrypted message.
        log = W.p.log_text(since=mark)
        cmds = [m.group(1) for m in re.finditer(r"\]: < [^:]*\]: (.*)", log)]
        mails = mail_before_data(cmds)
        self.assertEqual(len(mails), 1, "\n".join(cmds))
        params = mails[0].split()
        self.assertIn("BODY=8BITMIME", params)
        sizes = [int(p[5:]) for p in params if p.upper().startswith("SIZE=")]
        self.assertEqual(len(sizes), 1, params)
        # Not the client's figure (the ciphertext is compressed: it may be
        # smaller) but that of what was relayed: the stored message less the
        # trace fields Postfix and Dovecot put on top.
        self.assertNotEqual(sizes[0], len(msg))
        self.assertEqual(sizes[0], len(strip_trace(raw)), (sizes[0], len(msg), len(crlf(raw))))

    def test_m_bare_lf_smuggling(self):
        msgid = "m-" + token() + "@example.test"
        smuggle = (b"\n.\nMAIL FROM:<x@y>\nRCPT TO:<bob@example.test>\nDATA\n"
                   b"smuggled\n.\n")
        head = build(msgid, "smuggling m", b"")
        data = head + b"first line" + smuggle + b"last line\r\n"
        s = W.sealpost("never")
        mark = W.p.log_mark()
        c = self.client(s)
        self.assertEqual(c.mail(ALICE)[0], 250)
        self.assertEqual(c.rcpt(BOB)[0], 250)
        c.putcmd("data")
        self.assertEqual(c.getreply()[0], 354)
        c.sock.sendall(data + b".\r\n")     # raw: smtplib would fix the line ends
        code, text = c.getreply()
        self.assertEqual(code, 250, text)
        self.assertEqual(c.noop()[0], 250)
        c.quit()
        raw = self.find(BOB, msgid)
        time.sleep(QUIET_SECONDS)
        self.assertEqual(len([r for r in W.p.read_messages(BOB) if b"smuggled" in r]), 1,
                         "exactly one message")
        log = W.p.log_text(since=mark)
        self.assertEqual(len(re.findall(r"to=<bob@example\.test>.*status=sent", log)), 1, log)
        self.assertEqual(split_message(raw)[1],
                         b"first line\r\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<bob@example.test>\r\n"
                         b"DATA\r\nsmuggled\r\n.\r\nlast line\r\n")
        self.assertNotIn("from=<x@y>", W.p.log_text(since=mark))


# ---- n: the provider refuses after DATA ---------------------------------------------------

class FakeProvider(OutboundCase):

    @classmethod
    def setUpClass(cls):
        cls.certs = smtp_fake.Certs()

    def via_fake(self, data_mode, msg, rcpts=(BOB,), mail_options=(), **fake_args):
        fake = smtp_fake.FakeSMTP(cert=self.certs.good, data_mode=data_mode, **fake_args)
        with fake:
            s = W.sealpost_upstream("smtp://localhost:%d" % fake.port, self.certs.ca)
            try:
                c = self.client(s)
                r = self.transaction(c, list(rcpts), msg, mail_options=mail_options)
                try:
                    c.quit()
                except (smtplib.SMTPException, OSError):
                    pass
                smtp_fake.wait_sessions_closed(s.log_text)
            finally:
                s.stop()
        return r, fake, s

    def test_n_provider_refuses_after_encrypting(self):
        for mode, klass in (("reject", 5), ("drop", 4)):
            msgid = "n-%s-%s@example.test" % (mode, token())
            r, fake, s = self.via_fake(mode, build(msgid, "refused n", b"encrypted first\r\n"))
            code, text = r["data"]
            self.assertNotEqual(code, 250, (mode, r))
            self.assertEqual(code // 100, klass, (mode, r, s.log_tail(20)))
            self.assertEqual(len(fake.messages), 1, mode)
            self.assertTrue(is_encrypted(fake.messages[0]), fake.messages[0][:1000])
            self.assertNotIn(b"encrypted first", fake.messages[0])

    def test_l_size_is_that_of_the_relayed_message(self):
        body = ("8-bit body: Grüße — 日本語\r\n" * 200).encode("utf-8")
        msgid = "l2-" + token() + "@example.test"
        msg = build(msgid, "size l2", body, content_type=b"text/plain; charset=utf-8",
                    extra=b"Content-Transfer-Encoding: 8bit\r\n")
        r, fake, s = self.via_fake("ok", msg,
                                   mail_options=["SIZE=%d" % len(msg), "BODY=8BITMIME"])
        self.assertEqual(r["data"][0], 250, r)
        self.assertEqual(len(fake.messages), 1)
        relayed = b"".join(l[1:] if l.startswith(b"..") else l
                           for l in fake.messages[0].splitlines(keepends=True))
        self.assertTrue(is_encrypted(relayed))
        got = fake.got()
        cmds = got[:got.index(b"\r\nDATA\r\n") + 8].decode().split("\r\n")
        mails = mail_before_data(cmds)
        self.assertEqual(len(mails), 1, cmds)
        params = mails[0].split()
        self.assertIn("BODY=8BITMIME", params)
        self.assertIn("SIZE=%d" % len(relayed), params,
                      "relayed message is %d bytes, sent %d" % (len(relayed), len(msg)))

    def test_l_replayed_envelope_refused(self):
        """The envelope sent again with the real SIZE (RSET, MAIL, RCPT,
        pipelined) is refused at RCPT: the client gets that refusal at the
        end of data and no message goes out."""
        msgid = "l3-" + token() + "@example.test"
        msg = build(msgid, "replay refused l3", b"the body l3\r\n")
        r, fake, s = self.via_fake("ok", msg, mail_options=["SIZE=%d" % len(msg)],
                                   refuse_rcpt_from_mail=2)
        code, text = r["data"]
        self.assertEqual(code, 550, r)
        self.assertIn(b"Recipient refused by fake policy", text)
        self.assertEqual(fake.messages, [])
        self.assertEqual(fake.mails, 2)
        self.assertEqual(fake.rsets, 2, "one RSET before the replay, one to close it")
        got = fake.got()
        self.assertIn(b"\r\nRSET\r\nMAIL FROM:", got)


if __name__ == "__main__":
    unittest.main()
