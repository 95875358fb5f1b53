# test_inbound: FETCH of encrypted messages through sealpost, served from the
# decrypted view, against the real Postfix + Dovecot with real gpg.
"""Inbound decryption through sealpost: PGP/MIME and inline PGP messages
encrypted (and signed) by bob's gpg to alice, delivered into alice's
mailbox on the real provider, fetched with imaplib through sealpost. Every
FETCH item of an encrypted message refers to the decrypted view (BODY[],
sections, partial ranges, sizes, BODYSTRUCTURE, ENVELOPE); plain messages
stay byte-identical to what the provider serves; \\Seen behaves as with the
provider; the view is the same in every session and after a restart (its
signature status is pinned); ciphertext without integrity protection and
forged X-Sealpost-* fields never reach the client; mbsync syncs plaintext.
A whole session (every FETCH form, a non-PEEK fetch, STORE, IDLE, NOOP,
mbsync) leaves the provider's Maildir files byte-identical but for the
flags the client changed; curl fetches the view by UID; BODYSTRUCTURE of
the view agrees with Python's email parse of BODY[] and with Dovecot's own
BODYSTRUCTURE of the same bytes; a signed part wrapped next to added text
is never reported good.
Every fetched message feeds Autocrypt: a plain message's header teaches
carol's key, a header for another address teaches nothing, gossip inside an
encrypted message is learned."""
import base64
import email
import email.policy
import email.utils
import hashlib
import imaplib
import json
import os
import re
import shutil
import smtplib
import ssl
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

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

W = None


class World:
    """The provider, the keyrings and one sealpost (alice's secret key and
    bob's public key) shared by the module."""

    def __init__(self):
        self.provider = harness.Provider()
        self.p = self.provider.__enter__()
        self.keys = None
        self.extra = []
        try:
            self.keys = gpgkeys.Keyrings([ALICE, BOB, CAROL])
            self.home = self.keys.sealpost_home(ALICE, [BOB])
            self.s = harness.Sealpost(self.p, global_={"gnupg_home": self.home})
        except BaseException:
            self.close()
            raise
        self.tmp = tempfile.mkdtemp(prefix="spi-")
        os.chmod(self.tmp, 0o755)

    def sealpost(self, account=None, global_=None, home=None):
        """Another sealpost (own state_dir, so own view pins)."""
        g = {"gnupg_home": home or self.keys.sealpost_home(ALICE, [BOB])}
        g.update(global_ or {})
        s = harness.Sealpost(self.p, account=account, global_=g)
        self.extra.append(s)
        return s

    def close(self):
        reports = []
        for s in [getattr(self, "s", None)] + self.extra:
            if s is None:
                continue
            s.stop()
            r = imap_fake.sanitizer_report(s.log_text())
            if r:
                reports.append("\n".join(r) if isinstance(r, list) else str(r))
            s.close()
        if self.keys is not None:
            self.keys.close()
        self.provider.__exit__(None, None, None)
        shutil.rmtree(getattr(self, "tmp", "/nonexistent"), ignore_errors=True)
        return reports


setUpModule, tearDownModule = harness.module_world(globals(), World)


# ---- messages ------------------------------------------------------------------

def token():
    return uuid.uuid4().hex[:12]


def crc24(data):
    crc = 0xB704CE
    for b in data:
        crc ^= b << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(binary):
    """ASCII armor (RFC 4880 section 6) around binary OpenPGP data."""
    b64 = base64.b64encode(binary).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(crc24(binary).to_bytes(3, "big")).decode()
    return ("-----BEGIN PGP MESSAGE-----\n\n" + "\n".join(lines) + "\n=" + crc +
            "\n-----END PGP MESSAGE-----\n").encode()


def pgp_mime(outer_headers, armored):
    """A PGP/MIME message (CRLF) around an armored OpenPGP message."""
    b = "enc-" + token()
    armored = armored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (outer_headers +
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n"
            b" boundary=\"" + b.encode() + b"\"\r\n\r\n"
            b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: application/pgp-encrypted\r\n"
            b"Content-Description: PGP/MIME version identification\r\n\r\n"
            b"Version: 1\r\n\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
            b"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n" +
            armored + b"\r\n"
            b"--" + b.encode() + b"--\r\n")


def outer(msgid, subject=b"...", frm=b"Bob <bob@example.test>", extra=b""):
    return (b"From: " + frm + b"\r\n"
            b"To: Alice <alice@example.test>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
            b"Message-ID: <" + msgid.encode() + b">\r\n" + extra)


def inner_mixed(subject, canary):
    """A multipart/mixed entity with protected headers: a text part and an
    attachment."""
    b = "mix-" + token()
    return (b"Content-Type: multipart/mixed; boundary=\"" + b.encode() + b"\";\r\n"
            b" protected-headers=\"v1\"\r\n"
            b"Subject: " + subject + b"\r\n"
            b"From: Bob <bob@example.test>\r\n"
            b"To: Alice <alice@example.test>\r\n\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"The secret text " + canary + b".\r\n"
            b"Second line.\r\n"
            b"--" + b.encode() + b"\r\n"
            b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n"
            b"Content-Disposition: attachment; filename=\"data.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" +
            base64.encodebytes(b"attachment " + canary + b" " + bytes(range(256))).replace(
                b"\n", b"\r\n") +
            b"--" + b.encode() + b"--\r\n")


def split(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    return head + b"\r\n", body


def header_values(raw, name):
    head, _ = split(raw)
    out = []
    for line in re.sub(rb"\r\n[ \t]+", b" ", head).split(b"\r\n"):
        n, _, v = line.partition(b":")
        if n.strip().lower() == name.lower().encode():
            out.append(v.strip().decode(errors="replace"))
    return out


# ---- IMAP helpers --------------------------------------------------------------

def login(s=None):
    s = s or W.s
    m = imaplib.IMAP4_SSL("127.0.0.1", s.imaps_port, ssl_context=s.ssl_context(), timeout=60)
    m.login(ALICE, W.p.users[ALICE])
    return m


def direct():
    m = imaplib.IMAP4_SSL("127.0.0.1", W.p.imaps_port,
                          ssl_context=harness.client_ssl_context(W.p.ca_cert), timeout=60)
    m.login(ALICE, W.p.users[ALICE])
    return m


def uid_of(m, msgid, mailbox="INBOX", readonly=True):
    typ, _ = m.select(mailbox, readonly=readonly)
    assert typ == "OK", typ
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
    assert typ == "OK", (typ, data)
    uids = data[0].split()
    assert len(uids) == 1, (msgid, data)
    return uids[0].decode()


def fetch_items(m, uid, items):
    """{item name: value} of one UID FETCH response (literals as bytes)."""
    typ, data = m.uid("FETCH", uid, items)
    assert typ == "OK", (typ, data)
    return parse_fetch(data)


def parse_fetch(data):
    """imaplib's FETCH data for one message -> {NAME: value bytes}, values
    of non-literal items as their raw text."""
    text = b""
    lits = []
    for part in data:
        if isinstance(part, tuple):
            text += part[0]
            lits.append(part[1])
        elif part is not None:
            text += part
    # Replace each {n} announcement by a placeholder, then read pairs.
    out = {}
    i = text.index(b"(") + 1
    lit = 0
    while i < len(text):
        while i < len(text) and text[i:i + 1] == b" ":
            i += 1
        if text[i:i + 1] == b")" or i >= len(text):
            break
        j = i
        depth = 0
        while j < len(text):
            c = text[j:j + 1]
            if c == b"[":
                depth += 1
            elif c == b"]":
                depth -= 1
            elif c == b" " and depth == 0:
                break
            j += 1
        name = text[i:j].decode().upper()
        i = j + 1
        if text[i:i + 1] == b"{" or text[i:i + 2] == b"~{":
            j = text.index(b"}", i) + 1
            out[name] = lits[lit]
            lit += 1
            i = j
            continue
        if text[i:i + 1] == b"(":
            depth, j, inq = 0, i, False
            while j < len(text):
                c = text[j:j + 1]
                if inq:
                    if c == b"\\":
                        j += 1
                    elif c == b"\"":
                        inq = False
                elif c == b"\"":
                    inq = True
                elif c == b"(":
                    depth += 1
                elif c == b")":
                    depth -= 1
                    if depth == 0:
                        j += 1
                        break
                elif c == b"{":
                    # a literal inside a list (BODYSTRUCTURE, ENVELOPE)
                    k = text.index(b"}", j)
                    text = text[:j] + b"\"" + lits[lit].replace(b"\"", b"\\\"") + b"\"" + text[k + 1:]
                    lit += 1
                    continue
                j += 1
            out[name] = text[i:j]
            i = j
            continue
        if text[i:i + 1] == b"\"":
            j = i + 1
            while text[j:j + 1] != b"\"":
                j += 2 if text[j:j + 1] == b"\\" else 1
            out[name] = text[i:j + 1]
            i = j + 1
            continue
        j = i
        while j < len(text) and text[j:j + 1] not in (b" ", b")"):
            j += 1
        out[name] = text[i:j]
        i = j
    return out


def flags_direct(msgid):
    m = direct()
    try:
        uid = uid_of(m, msgid)
        typ, data = m.uid("FETCH", uid, "(FLAGS)")
        return data[0].decode()
    finally:
        m.logout()


def deliver(raw, mailbox="INBOX"):
    return W.p.deliver(ALICE, raw, mailbox=mailbox)


def encrypted_message(subject=None, sign=True, extra=b""):
    """(msgid, raw, canary) of a PGP/MIME message from bob to alice."""
    canary = ("CANARY-" + token()).encode()
    msgid = "enc-%s@example.test" % token()
    subject = subject or b"Protected subject " + canary
    armored = W.keys.encrypt(BOB, [ALICE], inner_mixed(subject, canary), sign=sign)
    return msgid, pgp_mime(outer(msgid, extra=extra), armored), canary


def mbsync_config(box, local):
    """An mbsyncrc pulling box from sealpost (IMAPS) into the local maildir
    (made here); returns its path."""
    os.makedirs(local)
    conf = os.path.join(W.tmp, "mbsyncrc-" + box)
    with open(conf, "w") as f:
        f.write("""IMAPAccount sp
Host localhost
Port %(port)d
User %(user)s
Pass %(pw)s
SSLType IMAPS
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
Patterns %(box)s
Create Near
Sync Pull
SyncState *
""" % {"port": W.s.imaps_port, "user": ALICE, "pw": W.p.users[ALICE],
       "cert": W.s.cert_path, "dir": local, "box": box})
    os.chmod(conf, 0o600)
    return conf


def run_mbsync(conf):
    return subprocess.run(["mbsync", "-V", "-c", conf, "-a"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120)


# ---- tests ---------------------------------------------------------------------

class Inbound(unittest.TestCase):

    def test_pgp_mime_items_refer_to_the_view(self):
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login()
        uid = uid_of(m, msgid)
        got = fetch_items(m, uid, "(UID RFC822.SIZE BODY.PEEK[])")
        view = got["BODY[]"]
        self.assertEqual(got["UID"], uid.encode())
        self.assertNotIn(b"BEGIN PGP MESSAGE", view)
        self.assertIn(b"The secret text " + canary, view)
        self.assertEqual(header_values(view, "X-Sealpost-Decryption"), ["ok"])
        sig = header_values(view, "X-Sealpost-Signature")
        self.assertEqual(len(sig), 1, view[:2000])
        self.assertTrue(sig[0].startswith("good " + W.keys.fpr[BOB]), sig)
        # The protected subject replaced the outer "...".
        self.assertEqual(header_values(view, "Subject"), ["Protected subject " + canary.decode()])
        self.assertEqual(int(got["RFC822.SIZE"]), len(view))
        self.assertNotIn(b"\n", view.replace(b"\r\n", b""))

        head, text = split(view)
        got = fetch_items(m, uid, "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[]<0.10> "
                                  "BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[1] "
                                  "BODY.PEEK[1.MIME] BODY.PEEK[2] RFC822.HEADER)")
        self.assertEqual(got["BODY[HEADER]"], head + b"\r\n")
        self.assertEqual(got["RFC822.HEADER"], head + b"\r\n")
        self.assertEqual(got["BODY[TEXT]"], text)
        self.assertEqual(got["BODY[]<0>"], view[:10])
        self.assertEqual(got["BODY[HEADER.FIELDS (SUBJECT)]"],
                         b"Subject: Protected subject " + canary + b"\r\n\r\n")
        # Part 1 is the text part: its MIME header and body lie in BODY[].
        part1 = got["BODY[1]"]
        self.assertEqual(part1, b"The secret text " + canary + b".\r\nSecond line.")
        self.assertIn(got["BODY[1.MIME]"] + part1, view)
        self.assertTrue(got["BODY[1.MIME]"].startswith(b"Content-Type: text/plain"))
        self.assertIn(b"attachment " + canary,
                      base64.b64decode(got["BODY[2]"].replace(b"\r\n", b"")))
        # BINARY is not advertised, but a client that sends it gets the
        # decoded part of the view.
        got = fetch_items(m, uid, "(BINARY.PEEK[2] BINARY.SIZE[2])")
        self.assertEqual(got["BINARY[2]"], b"attachment " + canary + b" " + bytes(range(256)))
        self.assertEqual(int(got["BINARY.SIZE[2]"]), len(got["BINARY[2]"]))
        # Partial fetches put together give BODY[].
        pieces, off = [], 0
        while off < len(view):
            g = fetch_items(m, uid, "(BODY.PEEK[]<%d.1024>)" % off)
            pieces.append(g["BODY[]<%d>" % off])
            off += 1024
        self.assertEqual(b"".join(pieces), view)

        got = fetch_items(m, uid, "(BODYSTRUCTURE ENVELOPE)")
        bs = got["BODYSTRUCTURE"].upper()
        self.assertTrue(bs.startswith(b"((\"TEXT\" \"PLAIN\""), bs)
        self.assertIn(b"\"MIXED\"", bs)
        self.assertNotIn(b"ENCRYPTED", bs)
        self.assertIn(b"Protected subject " + canary, got["ENVELOPE"])
        m.logout()

    def test_plain_messages_byte_identical(self):
        msgid = "plain-%s@example.test" % token()
        b = "alt-" + token()
        raw = (outer(msgid, subject=b"A plain message") +
               b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"" +
               b.encode() + b"\"\r\n\r\n--" + b.encode() +
               b"\r\nContent-Type: text/plain\r\n\r\nplain body\r\n--" + b.encode() +
               b"\r\nContent-Type: text/html\r\n\r\n<p>plain body</p>\r\n--" + b.encode() +
               b"--\r\n")
        deliver(raw)
        items = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[] BODY.PEEK[1] BODYSTRUCTURE ENVELOPE)"
        d = direct()
        want = fetch_items(d, uid_of(d, msgid), items)
        d.logout()
        m = login()
        got = fetch_items(m, uid_of(m, msgid), items)
        m.logout()
        self.assertEqual(got, want)

    def test_seen_set_only_by_non_peek(self):
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login()
        uid = uid_of(m, msgid, readonly=False)
        fetch_items(m, uid, "(BODY.PEEK[] BODY.PEEK[1] RFC822.SIZE)")
        self.assertNotIn("\\Seen", flags_direct(msgid))
        typ, data = m.uid("FETCH", uid, "(BODY[1])")
        self.assertEqual(typ, "OK")
        got = parse_fetch(data)
        self.assertIn(canary, got["BODY[1]"])
        # The response says \Seen changed, as servers do.
        self.assertIn(b"\\Seen", got["FLAGS"])
        self.assertIn("\\Seen", flags_direct(msgid))
        m.logout()

    def test_view_is_stable_across_sessions_and_restart(self):
        home = W.keys.sealpost_home(ALICE, [BOB])
        s = W.sealpost(home=home)
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        views = []
        for _ in range(2):
            m = login(s)
            views.append(fetch_items(m, uid_of(m, msgid), "(BODY.PEEK[])")["BODY[]"])
            m.logout()
        self.assertEqual(views[0], views[1])
        self.assertIn(b"good " + W.keys.fpr[BOB].encode(), views[0])
        # Without bob's key sealpost could no longer verify: after a restart
        # (empty cache) the pinned status keeps the view's bytes.
        W.keys.gpg(home, "--yes", "--delete-keys", W.keys.fpr[BOB])
        s.restart()
        m = login(s)
        again = fetch_items(m, uid_of(m, msgid), "(BODY.PEEK[])")["BODY[]"]
        m.logout()
        self.assertEqual(again, views[0])

    def test_inline_pgp(self):
        canary = ("CANARY-" + token()).encode()
        msgid = "inline-%s@example.test" % token()
        armored = W.keys.encrypt(BOB, [ALICE], b"Inline secret " + canary + b"\n")
        raw = (outer(msgid, subject=b"Inline") +
               b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" +
               armored.replace(b"\n", b"\r\n"))
        deliver(raw)
        m = login()
        got = fetch_items(m, uid_of(m, msgid), "(RFC822.SIZE BODY.PEEK[])")
        m.logout()
        self.assertIn(b"Inline secret " + canary, got["BODY[]"])
        self.assertNotIn(b"BEGIN PGP MESSAGE", got["BODY[]"])
        self.assertEqual(header_values(got["BODY[]"], "X-Sealpost-Decryption"), ["ok"])
        self.assertEqual(int(got["RFC822.SIZE"]), len(got["BODY[]"]))

    def test_without_integrity_no_plaintext(self):
        canary = ("CANARY-" + token()).encode()
        d = tempfile.mkdtemp(prefix="nm", dir=W.keys.base)
        src, dst = os.path.join(d, "in.txt"), os.path.join(d, "out.asc")
        with open(src, "wb") as f:
            f.write(b"Content-Type: text/plain\r\n\r\nNo MDC " + canary + b"\r\n")
        W.keys.gpg(W.keys.user_home[BOB], "--rfc2440", "--cipher-algo", "AES256", "--armor",
                   "--trust-model", "always", "-r", W.keys.fpr[ALICE], "-e", "-o", dst, src)
        with open(dst, "rb") as f:
            nomdc = f.read()
        # And one with an MDC whose ciphertext was changed.
        plain = b"Content-Type: text/plain\r\n\r\nTampered " + canary * 4 + b"\r\n"
        binary = W.keys.gpg(W.keys.user_home[BOB], "--trust-model", "always",
                            "--compress-algo", "none", "-r", W.keys.fpr[ALICE], "-e",
                            input=plain).data
        binary = bytearray(binary)
        binary[len(binary) - 30] ^= 1
        shutil.rmtree(d, ignore_errors=True)
        m = login()
        for name, armored in (("nomdc", nomdc), ("tampered", armor(bytes(binary)))):
            with self.subTest(name):
                msgid = "%s-%s@example.test" % (name, token())
                deliver(pgp_mime(outer(msgid), armored))
                got = fetch_items(m, uid_of(m, msgid), "(BODY.PEEK[] BODY.PEEK[1] BODY.PEEK[TEXT])")
                for v in got.values():
                    self.assertNotIn(canary, v)
                self.assertNotIn(b"BEGIN PGP MESSAGE", got["BODY[]"])
                dec = header_values(got["BODY[]"], "X-Sealpost-Decryption")
                self.assertEqual(len(dec), 1)
                self.assertTrue(dec[0].startswith("failed"), dec)
        m.logout()

    def test_forged_status_fields_removed(self):
        forged = (b"X-Sealpost-Decryption: ok\r\n"
                  b"X-Sealpost-Signature: good 0000000000000000000000000000000000000000\r\n"
                  b" <bob@example.test>\r\n")
        # A plain message carrying them.
        msgid = "forged-%s@example.test" % token()
        raw = (outer(msgid, subject=b"Forged", extra=forged) +
               b"Content-Type: text/plain\r\n\r\nNot encrypted at all.\r\n")
        deliver(raw)
        # An encrypted one carrying them outside.
        emsgid, eraw, canary = encrypted_message(extra=forged)
        deliver(eraw)
        m = login()
        got = fetch_items(m, uid_of(m, msgid), "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[HEADER])")
        self.assertNotIn(b"X-Sealpost", got["BODY[]"])
        self.assertNotIn(b"X-Sealpost", got["BODY[HEADER]"])
        self.assertIn(b"Not encrypted at all.", got["BODY[]"])
        self.assertEqual(int(got["RFC822.SIZE"]), len(got["BODY[]"]))
        got = fetch_items(m, uid_of(m, emsgid), "(BODY.PEEK[])")
        self.assertEqual(header_values(got["BODY[]"], "X-Sealpost-Decryption"), ["ok"])
        sig = header_values(got["BODY[]"], "X-Sealpost-Signature")
        self.assertEqual(len(sig), 1)
        self.assertTrue(sig[0].startswith("good " + W.keys.fpr[BOB]), sig)
        m.logout()

    def test_nested_ciphertext_not_decrypted(self):
        msgid = "efail-%s@example.test" % token()
        inner_raw = pgp_mime(b"", W.keys.encrypt(BOB, [ALICE], b"Content-Type: text/plain\r\n\r\n"
                                                 b"EFAIL secret\r\n"))
        b = "mix-" + token()
        raw = (outer(msgid, subject=b"EFAIL") + b"MIME-Version: 1.0\r\n"
               b"Content-Type: multipart/mixed; boundary=\"" + b.encode() + b"\"\r\n\r\n"
               b"--" + b.encode() + b"\r\nContent-Type: text/html\r\n\r\n<img src=\"http://x/\r\n"
               b"--" + b.encode() + b"\r\n" + inner_raw +
               b"--" + b.encode() + b"\r\nContent-Type: text/html\r\n\r\n\">\r\n"
               b"--" + b.encode() + b"--\r\n")
        deliver(raw)
        d = direct()
        want = fetch_items(d, uid_of(d, msgid), "(BODY.PEEK[])")
        d.logout()
        m = login()
        got = fetch_items(m, uid_of(m, msgid), "(BODY.PEEK[])")
        m.logout()
        self.assertEqual(got, want)
        self.assertNotIn(b"EFAIL secret", got["BODY[]"])

    def test_mixed_mailbox_one_fetch(self):
        box = "Mixed" + token()
        d = direct()
        self.assertEqual(d.create(box)[0], "OK")
        d.logout()
        plain_ids, enc = [], {}
        for i in range(6):
            if i % 2:
                msgid, raw, canary = encrypted_message()
                enc[msgid] = canary
            else:
                msgid = "mixplain-%d-%s@example.test" % (i, token())
                raw = outer(msgid, subject=b"plain %d" % i) + b"\r\nPlain body %d\r\n" % i
                plain_ids.append(msgid)
            deliver(raw, mailbox=box)
        d = direct()
        d.select(box, readonly=True)
        typ, ddata = d.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        d.logout()
        m = login()
        m.select(box, readonly=True)
        typ, data = m.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        self.assertEqual(typ, "OK")
        typ2, udata = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)])")
        self.assertEqual(typ2, "OK")
        m.logout()

        def by_msgid(data):
            out = {}
            for part in data:
                if isinstance(part, tuple):
                    mid = re.search(rb"Message-ID: <([^>]+)>", part[1]).group(1).decode()
                    out[mid] = (part[0], part[1])
            return out
        got, want = by_msgid(data), by_msgid(ddata)
        self.assertEqual(len(got), 6)
        for mid in plain_ids:
            self.assertEqual(got[mid], want[mid])
        for mid, canary in enc.items():
            head, body = got[mid]
            self.assertIn(b"UID", head)
            self.assertIn(b"FLAGS", head)
            self.assertIn(canary, body)
            self.assertNotIn(b"BEGIN PGP MESSAGE", body)
        # UID FETCH answers carry UID even when not asked for.
        heads = [p[0] for p in udata if isinstance(p, tuple)]
        self.assertEqual(len(heads), 6)
        for h in heads:
            self.assertIn(b"UID ", h)
        subjects = b"".join(p[1] for p in udata if isinstance(p, tuple))
        for canary in enc.values():
            self.assertIn(b"Protected subject " + canary, subjects)

    def test_mailbox_named_by_literal(self):
        box = "Lit" + token()
        d = direct()
        self.assertEqual(d.create(box)[0], "OK")
        d.logout()
        msgid, raw, canary = encrypted_message()
        deliver(raw, mailbox=box)
        m = login()
        m.literal = box.encode()
        typ, _ = m._simple_command("SELECT")
        self.assertEqual(typ, "OK")
        m.state = "SELECTED"
        typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
        uid = data[0].split()[0].decode()
        got = fetch_items(m, uid, "(BODY.PEEK[])")
        m.logout()
        self.assertIn(canary, got["BODY[]"])

    def test_fetch_pipelined_after_select(self):
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login()
        uid = uid_of(m, msgid)
        m.close()
        # SELECT and FETCH in one write, before the SELECT's answer.
        m.send(b"p1 SELECT INBOX\r\np2 UID FETCH " + uid.encode() + b" (BODY.PEEK[])\r\n"
               b"p3 SELECT NoSuchBox\r\np4 UID FETCH " + uid.encode() + b" (BODY.PEEK[])\r\n")
        got = b""
        while b"\r\np4 " not in got:
            chunk = m.sock.recv(65536)
            self.assertTrue(chunk, got[-500:])
            got += chunk
        self.assertIn(b"p1 OK", got)
        self.assertIn(canary, got)
        self.assertNotIn(b"BEGIN PGP MESSAGE", got)
        self.assertIn(b"p3 NO", got)
        self.assertRegex(got, rb"p4 (BAD|NO)")
        m.shutdown()

    def test_capabilities_hide_bypasses(self):
        m = login()
        typ, data = m.capability()
        caps = data[0].decode().upper().split()
        m.logout()
        for c in ("BINARY", "NOTIFY", "CATENATE", "URLAUTH"):
            self.assertNotIn(c, caps)
        self.assertFalse([c for c in caps if c.startswith("COMPRESS") or c.startswith("PREVIEW")])

    def test_decrypt_no_passes_ciphertext(self):
        s = W.sealpost(account={"decrypt": False})
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login(s)
        got = fetch_items(m, uid_of(m, msgid), "(BODY.PEEK[])")
        m.logout()
        self.assertIn(b"BEGIN PGP MESSAGE", got["BODY[]"])
        self.assertNotIn(canary, got["BODY[]"])

    def test_changedsince_and_examine(self):
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login()
        uid = uid_of(m, msgid, readonly=True)
        typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)]) (CHANGEDSINCE 1)")
        self.assertEqual(typ, "OK")
        # Each response: its head up to the literal plus the rest of its line.
        heads = [p[0] + (data[i + 1] if i + 1 < len(data) and isinstance(data[i + 1], bytes)
                         else b"")
                 for i, p in enumerate(data) if isinstance(p, tuple)]
        self.assertTrue(heads)
        for h in heads:
            self.assertIn(b"MODSEQ (", h)
            self.assertIn(b"UID ", h)
        self.assertIn(b"Protected subject " + canary,
                      b"".join(p[1] for p in data if isinstance(p, tuple)))
        # EXAMINE is read-only: a non-PEEK fetch does not set \Seen.
        got = fetch_items(m, uid, "(BODY[])")
        self.assertIn(canary, got["BODY[]"])
        self.assertNotIn("\\Seen", flags_direct(msgid))
        m.logout()

    def test_gpg_not_checking_integrity_is_a_temporary_failure(self):
        home = W.keys.sealpost_home(ALICE, [BOB])
        with open(os.path.join(home, "gpg.conf"), "a") as f:
            f.write("ignore-mdc-error\n")
        s = W.sealpost(home=home)
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login(s)
        uid = uid_of(m, msgid)
        typ, data = m.uid("FETCH", uid, "(UID BODY.PEEK[])")
        self.assertEqual(typ, "NO", data)
        self.assertIn(b"[UNAVAILABLE]", data[-1])
        self.assertNotIn(canary, b"".join(p if isinstance(p, bytes) else b"".join(p)
                                         for p in data if p is not None))
        # The session goes on: plain commands still work.
        self.assertEqual(m.noop()[0], "OK")
        m.logout()

    def test_mbsync_syncs_plaintext(self):
        box = "Sync" + token()
        d = direct()
        self.assertEqual(d.create(box)[0], "OK")
        d.logout()
        enc = {}
        for i in range(4):
            msgid, raw, canary = encrypted_message()
            enc[msgid] = canary
            deliver(raw, mailbox=box)
        deliver(outer("syncplain-%s@example.test" % token(), subject=b"plain") +
                b"\r\nPlain body\r\n", mailbox=box)
        local = os.path.join(W.tmp, "maildir-" + box)
        conf = mbsync_config(box, local)

        def sync():
            r = run_mbsync(conf)
            self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))
            return r.stdout.decode(errors="replace")

        sync()
        files = {}
        for sub in ("cur", "new"):
            dd = os.path.join(local, box, sub)
            for name in os.listdir(dd):
                with open(os.path.join(dd, name), "rb") as f:
                    files[name] = f.read()
        self.assertEqual(len(files), 5)
        texts = b"".join(files.values())
        self.assertNotIn(b"BEGIN PGP MESSAGE", texts)
        for canary in enc.values():
            self.assertIn(b"The secret text " + canary, texts)
        before = sorted(files)
        out = sync()
        after = sorted(n for sub in ("cur", "new") for n in os.listdir(os.path.join(local, box, sub)))
        self.assertEqual(before, after, out)


# ---- provider files untouched, curl, BODYSTRUCTURE, a wrapped signature ------

def maildir_state(mailbox):
    """{file name without its ':2,...' suffix: (sha256 of the content,
    flag letters)} of every message file of alice's mailbox on the provider
    (new/ and cur/; a file in new/ has no flags)."""
    out = {}
    base = W.p.mailbox_dir(ALICE, mailbox)
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        for name in os.listdir(d):
            if name.startswith("."):
                continue
            with open(os.path.join(d, name), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            stem, _, info = name.partition(":")
            flags = info[2:] if info.startswith("2,") else ""
            assert stem not in out, (stem, out)
            out[stem] = (digest, flags)
    return out


def msgid_of_file(mailbox, stem):
    for sub in ("new", "cur"):
        d = os.path.join(W.p.mailbox_dir(ALICE, mailbox), sub)
        for name in os.listdir(d):
            if name.partition(":")[0] == stem:
                with open(os.path.join(d, name), "rb") as f:
                    raw = f.read()
                return re.search(rb"Message-ID: <([^>]+)>", raw).group(1).decode()
    raise AssertionError("no file %s" % stem)


def idle_briefly(m, seconds=0.5):
    """IDLE (imaplib has no IDLE), wait, DONE; asserts the tagged OK."""
    tag = m._new_tag()
    del m.tagged_commands[tag]
    m.send(tag + b" IDLE\r\n")
    while True:
        line = m.readline()
        assert line, "connection closed in IDLE"
        if line.startswith(b"+"):
            break
        assert line.startswith(b"* "), line
    time.sleep(seconds)
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        assert line, "connection closed after DONE"
        if line.startswith(tag + b" "):
            assert line.startswith(tag + b" OK"), line
            return


class BodystructureError(ValueError):
    pass


def parse_sexp(text):
    """An IMAP parenthesised list (BODYSTRUCTURE) -> nested Python lists:
    quoted strings and literals as bytes, NIL as None, numbers as int,
    other atoms as bytes."""
    pos = 0

    def skip():
        nonlocal pos
        while pos < len(text) and text[pos:pos + 1] == b" ":
            pos += 1

    def value():
        nonlocal pos
        skip()
        c = text[pos:pos + 1]
        if c == b"(":
            pos += 1
            out = []
            while True:
                skip()
                if pos >= len(text):
                    raise BodystructureError("unterminated list")
                if text[pos:pos + 1] == b")":
                    pos += 1
                    return out
                out.append(value())
        if c == b"\"":
            pos += 1
            out = bytearray()
            while True:
                if pos >= len(text):
                    raise BodystructureError("unterminated string")
                ch = text[pos:pos + 1]
                if ch == b"\\":
                    out += text[pos + 1:pos + 2]
                    pos += 2
                    continue
                pos += 1
                if ch == b"\"":
                    return bytes(out)
                out += ch
        if c == b"{" or text[pos:pos + 2] == b"~{":
            j = text.index(b"}", pos)
            n = int(text[text.index(b"{", pos) + 1:j])
            start = j + 3   # past "}\r\n"
            pos = start + n
            return text[start:pos]
        j = pos
        while j < len(text) and text[j:j + 1] not in (b" ", b"(", b")"):
            j += 1
        if j == pos:
            raise BodystructureError("unexpected %r at %d" % (c, pos))
        atom, pos = text[pos:j], j
        if atom.upper() == b"NIL":
            return None
        if atom.isdigit():
            return int(atom)
        return atom

    v = value()
    skip()
    if pos != len(text):
        raise BodystructureError("trailing bytes at %d: %r" % (pos, text[pos:pos + 40]))
    return v


def entity_split(raw):
    """(header bytes, body bytes) of a MIME entity (CRLF)."""
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    head, sep, body = raw.partition(b"\r\n\r\n")
    return (head + b"\r\n", body) if sep else (raw, b"")


def multipart_children(body, boundary):
    """The raw entities between the delimiters of a multipart body (RFC
    2046: the CRLF before a delimiter belongs to the delimiter)."""
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary)
    out = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        eol = piece.find(b"\r\n")
        if eol < 0 or piece[:eol].strip(b" \t"):
            raise AssertionError("bad delimiter line %r" % piece[:80])
        out.append(piece[eol + 2:])
    return out


def param_dict(plist):
    if plist is None:
        return {}
    assert len(plist) % 2 == 0, plist
    return {plist[i].decode().lower(): plist[i + 1].decode() for i in range(0, len(plist), 2)}


def compare_structure(tc, bs, part, raw, where="root"):
    """Asserts that the BODYSTRUCTURE list bs describes the entity part
    (from Python's email package) whose raw bytes are raw."""
    head, body = entity_split(raw)
    params = {k.lower(): v for k, v in part.get_params(header="content-type")[1:]} \
        if part.get("Content-Type") else {}
    if part.is_multipart():
        n = 0
        while n < len(bs) and isinstance(bs[n], list):
            n += 1
        kids = part.get_payload()
        raws = multipart_children(body, part.get_boundary().encode())
        tc.assertEqual(n, len(kids), where)
        tc.assertEqual(len(raws), len(kids), where)
        tc.assertEqual(bs[n].decode().lower(), part.get_content_subtype(), where)
        tc.assertEqual(param_dict(bs[n + 1]), params, where)
        for i in range(n):
            compare_structure(tc, bs[i], kids[i], raws[i], "%s.%d" % (where, i + 1))
        return
    tc.assertEqual(bs[0].decode().lower(), part.get_content_maintype(), where)
    tc.assertEqual(bs[1].decode().lower(), part.get_content_subtype(), where)
    if part.get("Content-Type"):
        tc.assertEqual(param_dict(bs[2]), params, where)
    else:
        tc.assertEqual(param_dict(bs[2]), {"charset": "us-ascii"}, where)
    tc.assertEqual(bs[3], part["Content-ID"] and part["Content-ID"].encode(), where)
    tc.assertEqual(bs[4], part["Content-Description"] and part["Content-Description"].encode(),
                   where)
    cte = (part["Content-Transfer-Encoding"] or "7bit").strip().lower()
    tc.assertEqual(bs[5].decode().lower(), cte, where)
    tc.assertEqual(bs[6], len(body), where)
    if part.get_content_maintype() == "text":
        # Line ends in the encoded body, as Dovecot counts them (a last
        # line without CRLF, before a delimiter, is not counted).
        lines = body.count(b"\n")
        tc.assertEqual(bs[7], lines, where)
        ext = bs[8:]
    else:
        ext = bs[7:]
    # Extension data: MD5, then the disposition.
    disp = part.get("Content-Disposition")
    if len(ext) >= 2:
        if disp is None:
            tc.assertIsNone(ext[1], where)
        else:
            tc.assertEqual(ext[1][0].decode().lower(), disp.split(";")[0].strip().lower(), where)
            dparams = part.get_params(header="content-disposition")[1:]
            tc.assertEqual(param_dict(ext[1][1]), {k.lower(): v for k, v in dparams}, where)


def structured_inner(canary):
    """A multipart/mixed entity with protected headers: a UTF-8 quoted-
    printable text part, a nested multipart/alternative, a base64 PDF
    attachment with name and filename, and a text/plain attachment
    without trailing CRLF."""
    b1, b2 = "mix-" + token(), "alt-" + token()
    pdf = b"%PDF-1.4\n" + canary + b"\n" + bytes(range(256)) * 8
    return (b"Content-Type: multipart/mixed; boundary=\"" + b1.encode() + b"\";\r\n"
            b" protected-headers=\"v1\"\r\n"
            b"Subject: Structure " + canary + b"\r\n"
            b"From: Bob <bob@example.test>\r\n"
            b"To: Alice <alice@example.test>\r\n\r\n"
            b"--" + b1.encode() + b"\r\n"
            b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"Gr=C3=BC=C3=9Fe " + canary + b".\r\n"
            b"A second line.\r\n"
            b"--" + b1.encode() + b"\r\n"
            b"Content-Type: multipart/alternative; boundary=\"" + b2.encode() + b"\"\r\n\r\n"
            b"--" + b2.encode() + b"\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"alternative text\r\n"
            b"--" + b2.encode() + b"\r\n"
            b"Content-Type: text/html; charset=us-ascii\r\n"
            b"Content-Description: the html\r\n\r\n"
            b"<p>alternative html</p>\r\n\r\n"
            b"--" + b2.encode() + b"--\r\n"
            b"--" + b1.encode() + b"\r\n"
            b"Content-Type: application/pdf; name=\"report.pdf\"\r\n"
            b"Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" +
            base64.encodebytes(pdf).replace(b"\n", b"\r\n") +
            b"--" + b1.encode() + b"\r\n"
            b"Content-Type: text/plain; charset=us-ascii; name=\"notes.txt\"\r\n"
            b"Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n"
            b"notes line 1\r\nnotes line 2 without end" +
            b"\r\n--" + b1.encode() + b"--\r\n")


class InboundFidelity(unittest.TestCase):
    maxDiff = 4000

    def test_provider_files_unchanged_by_a_session(self):
        box = "Hash" + token()
        d = direct()
        self.assertEqual(d.create(box)[0], "OK")
        d.logout()
        enc, plain = {}, []
        for i in range(6):
            if i % 2 == 0:
                msgid, raw, canary = encrypted_message()
                enc[msgid] = canary
            else:
                msgid = "hashplain-%d-%s@example.test" % (i, token())
                raw = outer(msgid, subject=b"plain %d" % i) + b"\r\nPlain body %d\r\n" % i
                plain.append(msgid)
            deliver(raw, mailbox=box)
        before = maildir_state(box)
        self.assertEqual(len(before), 6)
        by_msgid = {msgid_of_file(box, stem): stem for stem in before}
        self.assertEqual(set(by_msgid), set(enc) | set(plain))

        m = login()
        typ, data = m.select(box)
        self.assertEqual(typ, "OK", data)
        typ, data = m.fetch("1:*", "(BODYSTRUCTURE ENVELOPE RFC822.SIZE BODY.PEEK[] BODY.PEEK[1] "
                                   "BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<0.1024>)")
        self.assertEqual(typ, "OK", data)
        bodies = b"".join(p[1] for p in data if isinstance(p, tuple))
        for canary in enc.values():
            self.assertIn(canary, bodies)
        # One non-PEEK fetch of an encrypted message and one flag the client
        # sets by STORE on a plain message.
        seen_id = sorted(enc)[0]
        seen_uid = uid_of(m, seen_id, mailbox=box, readonly=False)
        got = fetch_items(m, seen_uid, "(BODY[])")
        self.assertIn(enc[seen_id], got["BODY[]"])
        flagged_id = plain[0]
        flagged_uid = uid_of(m, flagged_id, mailbox=box, readonly=False)
        typ, data = m.uid("STORE", flagged_uid, "+FLAGS", "(\\Flagged)")
        self.assertEqual(typ, "OK", data)
        idle_briefly(m)
        self.assertEqual(m.noop()[0], "OK")
        m.logout()
        # And a client that syncs everything (PEEK) into a maildir of its own.
        r = run_mbsync(mbsync_config(box, os.path.join(W.tmp, "maildir-" + box)))
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))

        after = maildir_state(box)
        self.assertEqual(sorted(after), sorted(before))
        for msgid, stem in by_msgid.items():
            with self.subTest(msgid=msgid):
                self.assertEqual(after[stem][0], before[stem][0], "content changed")
                want = set(before[stem][1])
                if msgid == seen_id:
                    want.add("S")
                if msgid == flagged_id:
                    want.add("F")
                self.assertEqual(set(after[stem][1]), want)
        # The provider still holds ciphertext only.
        for path in W.p.messages(ALICE, box):
            with open(path, "rb") as f:
                raw = f.read()
            self.assertNotIn(b"X-Sealpost", raw)
            for canary in enc.values():
                self.assertNotIn(canary, raw)

    def curl(self, *args):
        r = subprocess.run(["curl", "--silent", "--show-error", "--max-time", "60",
                            "--cacert", W.s.cert_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout

    def test_curl_fetches_the_view(self):
        msgid, raw, canary = encrypted_message()
        deliver(raw)
        m = login()
        uid = uid_of(m, msgid)
        view = fetch_items(m, uid, "(BODY.PEEK[])")["BODY[]"]
        m.logout()
        cred = "%s:%s" % (ALICE, W.p.users[ALICE])
        for url, extra in (("imap://127.0.0.1:%d/" % W.s.imap_port, ["--ssl-reqd"]),
                           ("imaps://127.0.0.1:%d/" % W.s.imaps_port, [])):
            with self.subTest(url=url):
                got = self.curl(*extra, "-u", cred, url + "INBOX;UID=" + uid)
                self.assertEqual(got, view)
                self.assertIn(b"The secret text " + canary, got)
                self.assertEqual(header_values(got, "X-Sealpost-Decryption"), ["ok"])
                self.assertNotIn(b"BEGIN PGP MESSAGE", got)
                self.assertNotIn(b"multipart/encrypted", got)

    def send_through_outbound(self, inner_raw, msgid):
        """inner_raw's parts sent by alice to herself through sealpost's
        SMTP; returns once the provider holds the encrypted copy."""
        ctx = ssl.create_default_context(cafile=W.s.cert_path)
        head, body = entity_split(inner_raw)
        msg = (b"From: Alice <alice@example.test>\r\n"
               b"To: Alice <alice@example.test>\r\n"
               b"Subject: Outbound structure\r\n"
               b"Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n"
               b"Message-ID: <" + msgid.encode() + b">\r\n"
               b"MIME-Version: 1.0\r\n" +
               re.sub(rb";\r\n protected-headers=\"v1\"", b"",
                      b"\r\n".join(l for l in head.split(b"\r\n")
                                   if l.startswith(b"Content-Type") or l.startswith(b" "))) +
               b"\r\n" + body)
        c = smtplib.SMTP("127.0.0.1", W.s.smtp_port, timeout=120)
        try:
            c.starttls(context=ctx)
            c.login(ALICE, W.p.users[ALICE])
            self.assertEqual(c.sendmail(ALICE, [ALICE], msg), {})
        finally:
            c.quit()
        deadline = time.monotonic() + 20
        while True:
            for raw in W.p.read_messages(ALICE):
                if msgid.encode() in raw.partition(b"\r\n\r\n")[0]:
                    self.assertIn(b"multipart/encrypted", raw)
                    return
            self.assertLess(time.monotonic(), deadline, "outbound copy not delivered")
            time.sleep(0.1)

    def test_bodystructure_matches_the_view(self):
        canary = ("CANARY-" + token()).encode()
        inner = structured_inner(canary)
        gmsgid = "struct-%s@example.test" % token()
        deliver(pgp_mime(outer(gmsgid), W.keys.encrypt(BOB, [ALICE], inner, sign=True)))
        omsgid = "ostruct-%s@example.test" % token()
        self.send_through_outbound(inner, omsgid)
        for how, msgid in (("gpg", gmsgid), ("outbound", omsgid)):
            with self.subTest(how):
                m = login()
                uid = uid_of(m, msgid)
                got = fetch_items(m, uid, "(BODYSTRUCTURE BODY.PEEK[])")
                m.logout()
                view = got["BODY[]"]
                self.assertEqual(header_values(view, "X-Sealpost-Decryption"), ["ok"])
                self.assertIn(canary, view)
                bs = parse_sexp(got["BODYSTRUCTURE"])
                parsed = email.message_from_bytes(view, policy=email.policy.compat32)
                self.assertEqual(parsed.get_content_type(), "multipart/mixed")
                self.assertEqual(len(parsed.get_payload()), 4)
                compare_structure(self, bs, parsed, view)
                # The same bytes stored on the provider: Dovecot's own
                # BODYSTRUCTURE of them is sealpost's.
                box = "Scratch" + token()
                d = direct()
                try:
                    self.assertEqual(d.create(box)[0], "OK")
                    typ, data = d.append(box, None, None, view)
                    self.assertEqual(typ, "OK", data)
                    d.select(box, readonly=True)
                    typ, data = d.fetch("1", "(BODYSTRUCTURE)")
                    self.assertEqual(typ, "OK", data)
                    want = parse_sexp(parse_fetch(data)["BODYSTRUCTURE"])
                    d.close()
                    d.delete(box)
                finally:
                    d.logout()
                self.assertEqual(bs, want)

    def test_wrapped_signed_part_is_not_good(self):
        canary = ("CANARY-" + token()).encode()
        signed_entity = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                         b"Signed by Bob " + canary + b".\r\n")
        sig = W.keys.gpg(W.keys.user_home[BOB], "--armor", "--detach-sign", "--digest-algo",
                         "SHA256", "--local-user", W.keys.fpr[BOB], input=signed_entity).data
        sb = "sig-" + token()
        signed = (b"Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
                  b" protocol=\"application/pgp-signature\"; boundary=\"" + sb.encode() +
                  b"\"\r\n\r\n"
                  b"--" + sb.encode() + b"\r\n" + signed_entity +
                  b"\r\n--" + sb.encode() + b"\r\n"
                  b"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n" +
                  sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") +
                  b"\r\n--" + sb.encode() + b"--\r\n")
        wb = "wrap-" + token()
        head, body = entity_split(signed)
        wrapped = (b"Content-Type: multipart/mixed; boundary=\"" + wb.encode() + b"\"\r\n\r\n"
                   b"--" + wb.encode() + b"\r\n"
                   b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                   b"Added by someone else " + canary + b".\r\n"
                   b"--" + wb.encode() + b"\r\n" + signed +
                   b"\r\n--" + wb.encode() + b"--\r\n")
        # Encrypted to alice by anybody (no signature over the whole).
        ids = {}
        for name, entity in (("root", signed), ("wrapped", wrapped)):
            ids[name] = "%s-%s@example.test" % (name, token())
            deliver(pgp_mime(outer(ids[name]), W.keys.encrypt(BOB, [ALICE], entity)))
        m = login()
        views = {name: fetch_items(m, uid_of(m, mid), "(BODY.PEEK[])")["BODY[]"]
                 for name, mid in ids.items()}
        m.logout()
        for name, view in views.items():
            self.assertEqual(header_values(view, "X-Sealpost-Decryption"), ["ok"], name)
            self.assertIn(b"Signed by Bob " + canary, view)
        # The same signed part as the root of the decrypted content is good:
        # the signature itself verifies.
        sig = header_values(views["root"], "X-Sealpost-Signature")
        self.assertEqual(len(sig), 1, views["root"][:1500])
        self.assertTrue(sig[0].startswith("good " + W.keys.fpr[BOB]), sig)
        # Wrapped next to added text: never good.
        self.assertIn(b"Added by someone else " + canary, views["wrapped"])
        sig = header_values(views["wrapped"], "X-Sealpost-Signature")
        self.assertEqual(len(sig), 1, views["wrapped"][:1500])
        self.assertFalse(sig[0].startswith("good"), sig)
        self.assertRegex(sig[0], "^(partial|mismatch) " + W.keys.fpr[BOB])


# ---- Autocrypt -----------------------------------------------------------------

def autocrypt_value(addr, user):
    """An Autocrypt attribute string for addr with user's key, folded."""
    key = W.keys.gpg(W.keys.user_home[user], "--export", "--export-options",
                     "export-minimal", W.keys.fpr[user]).data
    b64 = base64.b64encode(key).decode()
    return ("addr=%s; keydata=\r\n %s" % (
        addr, "\r\n ".join(b64[i:i + 76] for i in range(0, len(b64), 76)))).encode()


def keys_of(s):
    r = harness.run_sealpost("keys", "list", "--json", "--config", s.config_path)
    assert r.returncode == 0, r.stderr
    return {k["fingerprint"].upper(): k for k in json.loads(r.stdout)}


def wait_log(s, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in s.log_text():
        if time.monotonic() > deadline:
            raise AssertionError("%r not logged:\n%s" % (text, s.log_tail()))
        time.sleep(0.05)


class InboundAutocrypt(unittest.TestCase):

    def fetch(self, s, msgid, items="(BODY.PEEK[])"):
        m = login(s)
        uid = uid_of(m, msgid)
        got = fetch_items(m, uid, items)
        m.logout()
        return uid, got

    def plain_from_carol(self, autocrypt_addr, frm=b"Carol <carol@example.test>"):
        msgid = "ac-%s@example.test" % token()
        raw = (b"From: " + frm + b"\r\n"
               b"To: Alice <alice@example.test>\r\n"
               b"Subject: Hello with Autocrypt\r\n"
               b"Date: " + email.utils.formatdate().encode() + b"\r\n"
               b"Message-ID: <" + msgid.encode() + b">\r\n"
               b"Autocrypt: " + autocrypt_value(autocrypt_addr, CAROL) + b"\r\n"
               b"Content-Type: text/plain\r\n\r\nHi Alice.\r\n")
        deliver(raw)
        return msgid, raw

    def test_plain_header_teaches_the_key(self):
        s = W.sealpost()
        msgid, raw = self.plain_from_carol(CAROL)
        self.assertNotIn(W.keys.fpr[CAROL], keys_of(s))
        # A header-only fetch, as Thunderbird syncs, is enough; what the
        # client gets is the provider's bytes.
        d = direct()
        want = fetch_items(d, uid_of(d, msgid), "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])")
        d.logout()
        uid, got = self.fetch(s, msgid, "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])")
        self.assertEqual(got, want)
        deadline = time.monotonic() + 10
        while W.keys.fpr[CAROL] not in keys_of(s):
            self.assertLess(time.monotonic(), deadline, s.log_tail())
            time.sleep(0.1)
        k = keys_of(s)[W.keys.fpr[CAROL]]
        self.assertEqual(k["source"], "autocrypt")
        self.assertIn(CAROL, k["addresses"])
        # A plain message streams as it is.
        uid, got = self.fetch(s, msgid)
        self.assertTrue(got["BODY[]"].endswith(raw))

    def test_header_for_another_address_teaches_nothing(self):
        s = W.sealpost()
        msgid, raw = self.plain_from_carol(CAROL, frm=b"Dave <dave@example.test>")
        uid, got = self.fetch(s, msgid)
        self.assertTrue(got["BODY[]"].endswith(raw))
        wait_log(s, "UID %s <dave@example.test>" % uid)
        self.assertNotIn(W.keys.fpr[CAROL], keys_of(s))

    def test_gossip_without_protected_headers_is_learned(self):
        """Autocrypt Level 1 as most clients write it: the gossip fields in
        the header of the encrypted part, no protected headers at all — and
        the same with protected-headers="v1" but no hp."""
        for ct in (b"Content-Type: text/plain; charset=us-ascii\r\n",
                   b"Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\"\r\n"
                   b"Subject: Gossip v1\r\nFrom: Bob <bob@example.test>\r\n"
                   b"To: Alice <alice@example.test>\r\nCc: Carol <carol@example.test>\r\n"):
            with self.subTest(ct=ct[:80]):
                s = W.sealpost()
                canary = ("CANARY-" + token()).encode()
                msgid = "lgossip-%s@example.test" % token()
                gossip = b"Autocrypt-Gossip: " + autocrypt_value(CAROL, CAROL) + b"\r\n"
                inner = ct + gossip + b"\r\nWith gossip " + canary + b".\r\n"
                armored = W.keys.encrypt(BOB, [ALICE], inner, sign=True)
                deliver(pgp_mime(outer(msgid, extra=b"Cc: Carol <carol@example.test>\r\n"),
                                 armored))
                uid, got = self.fetch(s, msgid)
                self.assertIn(b"With gossip " + canary, got["BODY[]"])
                deadline = time.monotonic() + 10
                while W.keys.fpr[CAROL] not in keys_of(s):
                    self.assertLess(time.monotonic(), deadline, s.log_tail())
                    time.sleep(0.1)

    def test_gossip_inside_encryption_is_learned(self):
        s = W.sealpost()
        canary = ("CANARY-" + token()).encode()
        msgid = "gossip-%s@example.test" % token()
        gossip = b"Autocrypt-Gossip: " + autocrypt_value(CAROL, CAROL) + b"\r\n"
        inner = (b"Content-Type: text/plain; charset=us-ascii; protected-headers=\"v1\";\r\n"
                 b" hp=\"cipher\"\r\n"
                 b"Subject: Gossip " + canary + b"\r\n"
                 b"From: Bob <bob@example.test>\r\n"
                 b"To: Alice <alice@example.test>\r\n"
                 b"Cc: Carol <carol@example.test>\r\n" + gossip +
                 b"\r\nWith gossip " + canary + b".\r\n")
        armored = W.keys.encrypt(BOB, [ALICE], inner, sign=True)
        deliver(pgp_mime(outer(msgid, extra=b"Cc: Carol <carol@example.test>\r\n"), armored))
        # The same gossip outside the encryption of another message is not
        # taken (fetched first).
        omsgid = "ogossip-%s@example.test" % token()
        plain = (outer(omsgid, subject=b"outer gossip",
                       extra=b"Cc: Carol <carol@example.test>\r\n" + gossip) +
                 b"Content-Type: text/plain\r\n\r\nplain\r\n")
        deliver(plain)
        ouid, _ = self.fetch(s, omsgid)
        wait_log(s, "UID %s <bob@example.test>" % ouid)
        self.assertNotIn(W.keys.fpr[CAROL], keys_of(s))
        uid, got = self.fetch(s, msgid)
        self.assertIn(b"With gossip " + canary, got["BODY[]"])
        self.assertEqual(header_values(got["BODY[]"], "X-Sealpost-Decryption"), ["ok"])
        deadline = time.monotonic() + 10
        while W.keys.fpr[CAROL] not in keys_of(s):
            self.assertLess(time.monotonic(), deadline, s.log_tail())
            time.sleep(0.1)
        self.assertIn(CAROL, keys_of(s)[W.keys.fpr[CAROL]]["addresses"])


if __name__ == "__main__":
    unittest.main()
