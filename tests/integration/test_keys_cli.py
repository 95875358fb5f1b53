# test_keys_cli: `sealpost keys` through the built binary, checked with the
# gpg command line, and a running sealpost that stops encrypting to a rejected key.
"""`sealpost keys` against real gpg: generate (with and without a passphrase,
ed25519 + cv25519, three years), export importable by a fresh keyring,
import (public only unless --secret, --address checked, third-party
signatures dropped; truncated, garbage, oversize and non-key input refused
with the keyring untouched), list (text and JSON), verify / reject, delete,
unlock with a right and a wrong passphrase, the questions asked on a
terminal without echo, usage errors; pending key changes (list, accept,
refuse) and `sealpost status`; and a sealpost that encrypts to bob until
his key is rejected, and again once it is verified, noting the Autocrypt
recommendation "discourage" in its decision log."""
import json
import os
import re
import select
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import gpgkeys  # noqa: E402
import alicebob  # noqa: E402
import provider as _provider  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"

FPR = re.compile(r"^[0-9A-F]{40}$")
THREE_YEARS = 3 * 365 * 86400
DAY = 86400


def have_sealpost():
    return os.access(harness.SEALPOST_BIN, os.X_OK)


def kill_agent(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def gpg(home, *args, input=b"", check=True):
    """gpg --homedir home --batch args (loopback pinentry: never a dialog)."""
    argv = ["gpg", "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback"]
    r = subprocess.run(argv + list(args), input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("gpg %s: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
    return r


def colons(home, *args):
    """gpg --with-colons listing as lists of fields (without the trust
    database's "tru" record)."""
    r = gpg(home, "--with-colons", "--fixed-list-mode", *args, check=False)
    return [line.split(":") for line in r.stdout.decode().splitlines()
            if not line.startswith("tru:")]


def new_home(base, name):
    home = os.path.join(base, name)
    os.makedirs(home, mode=0o700)
    with open(os.path.join(home, "gpg.conf"), "w") as f:
        f.write("no-random-seed-file\n")
    return home


class Foreign:
    """Keys made outside sealpost with gpg: carol's (and a second key for
    carol, signed by dave, to see third-party signatures dropped)."""

    def __init__(self, base):
        self.home = new_home(base, "foreign")
        fprs = _provider.make_demo_keys(self.home, [CAROL, DAVE])
        self.fpr = {a: f.upper() for a, f in fprs.items()}
        self.public = gpg(self.home, "--armor", "--export", self.fpr[CAROL]).stdout
        self.public_bin = gpg(self.home, "--export", self.fpr[CAROL]).stdout
        self.secret = gpg(self.home, "--armor", "--passphrase", "",
                          "--export-secret-keys", self.fpr[CAROL]).stdout
        gpg(self.home, "--yes", "--passphrase", "", "--local-user", self.fpr[DAVE],
            "--quick-sign-key", self.fpr[CAROL])
        self.signed = gpg(self.home, "--armor", "--export", self.fpr[CAROL]).stdout
        self.message = gpg(self.home, "--armor", "--passphrase", "", "--local-user",
                           self.fpr[DAVE], "--sign", input=b"hello\n").stdout
        kill_agent(self.home)


@unittest.skipUnless(have_sealpost(), "SEALPOST_BIN not built")
class KeysCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Short: gpg-agent's socket path must stay below about 107 bytes.
        cls.base = tempfile.mkdtemp(prefix="spk-", dir="/tmp")
        cls.homes = []
        try:
            cls.foreign = Foreign(cls.base)
        except BaseException:
            cls.tearDownClass()
            raise
        cls.homes.append(cls.foreign.home)

    @classmethod
    def tearDownClass(cls):
        for home in cls.homes:
            if os.path.isdir(home):
                kill_agent(home)
        if os.environ.get("SEALPOST_KEEP_PROVIDER") != "1":
            shutil.rmtree(cls.base, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="t", dir=self.base)
        self.state_dir = os.path.join(self.dir, "state")
        self.home = os.path.join(self.state_dir, "gnupg")
        self.homes.append(self.home)
        self.config_path = os.path.join(self.dir, "sealpost.conf")
        # No provider is contacted: the keys command reads the
        # configuration for state_dir and gnupg_home only.
        with open(self.config_path, "w") as f:
            f.write("[sealpost]\nstate_dir = %s\n\n[account test]\naddress = %s\n"
                    "smtp_listen = 127.0.0.1:%d\nsmtp_upstream = smtp://localhost:%d\n"
                    % (self.state_dir, ALICE, harness.free_port(), harness.free_port()))

    def tearDown(self):
        kill_agent(self.home)

    # ------------------------------------------------------------ helpers

    def keys(self, *args, input=None, config=True, text=True):
        argv = [harness.SEALPOST_BIN, "keys"] + list(args)
        if config:
            argv += ["--config", self.config_path]
        if input is not None and text and isinstance(input, bytes):
            text = False
        return subprocess.run(argv, input=input,
                              stdin=subprocess.DEVNULL if input is None else None,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=text, timeout=120)

    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, "stdout: %r\nstderr: %r" % (r.stdout, r.stderr))

    def assert_one_line_error(self, r, code, *needles):
        err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, code, "stdout: %r\nstderr: %r" % (r.stdout, err))
        msg = err.strip()
        self.assertEqual(len(msg.splitlines()), 1, "exactly one line: %r" % msg)
        for n in needles:
            self.assertIn(n, msg)
        return msg

    def generate(self, address=ALICE, passphrase=None):
        if passphrase is None:
            r = self.keys("generate", address, "--no-passphrase")
        else:
            r = self.keys("generate", address, "--passphrase-stdin", input=passphrase + "\n")
        self.assert_ok(r)
        fpr = r.stdout.split()[0]
        self.assertRegex(fpr, FPR)
        self.assertIn(address, r.stdout)
        return fpr

    def list_json(self):
        r = self.keys("list", "--json")
        self.assert_ok(r)
        return {k["fingerprint"]: k for k in json.loads(r.stdout)}

    def keyring_snapshot(self):
        """What the keyring holds, as gpg lists it (public and secret)."""
        if not os.path.isdir(self.home):
            return ([], [])
        return (colons(self.home, "--list-keys"), colons(self.home, "--list-secret-keys"))

    def import_data(self, data, *args):
        return self.keys("import", "-", *args, input=data)

    def fresh_home(self, name):
        home = new_home(self.dir, name)
        self.homes.append(home)
        return home

    # ----------------------------------------------------------- generate

    def test_generate_without_passphrase(self):
        before = int(time.time())
        fpr = self.generate(ALICE)
        rows = colons(self.home, "--list-secret-keys", fpr)
        sec = [f for f in rows if f[0] == "sec"]
        ssb = [f for f in rows if f[0] == "ssb"]
        uids = [f[9] for f in rows if f[0] == "uid"]
        self.assertEqual(len(sec), 1, rows)
        self.assertEqual(len(ssb), 1, rows)
        # ed25519 (EdDSA, 22) certifying and signing; cv25519 (ECDH, 18)
        # encrypting.
        self.assertEqual((sec[0][3], sec[0][16]), ("22", "ed25519"))
        self.assertIn("s", sec[0][11])
        self.assertIn("c", sec[0][11])
        self.assertEqual((ssb[0][3], ssb[0][16]), ("18", "cv25519"))
        self.assertEqual(ssb[0][11], "e")
        self.assertEqual(uids, ["<%s>" % ALICE])
        for f in sec + ssb:
            created, expires = int(f[5]), int(f[6])
            self.assertLessEqual(abs(created - before), 60)
            self.assertLessEqual(abs(expires - created - THREE_YEARS), 2 * DAY)
        # No passphrase: gpg exports the secret key whatever it is told.
        kill_agent(self.home)
        r = gpg(self.home, "--passphrase", "not-the-passphrase", "--export-secret-keys", fpr,
                check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout)

        k = self.list_json()[fpr]
        self.assertEqual(k["addresses"], [ALICE])
        self.assertTrue(k["own"])
        self.assertTrue(k["usable"])
        self.assertIsNone(k["unusable_reason"])
        self.assertEqual(k["source"], "manual")
        self.assertEqual(k["acceptance"], "verified")
        self.assertEqual(k["created"], time.strftime("%Y-%m-%d", time.gmtime(before)))
        self.assertEqual(k["expires"], time.strftime("%Y-%m-%d",
                                                     time.gmtime(int(sec[0][6]))))

        # A second key for the same address only with --force.
        r = self.keys("generate", ALICE, "--no-passphrase")
        self.assert_one_line_error(r, 1, ALICE, fpr, "--force")
        self.assertEqual(len([f for f in colons(self.home, "--list-secret-keys")
                              if f[0] == "sec"]), 1)
        r = self.keys("generate", ALICE, "--no-passphrase", "--force")
        self.assert_ok(r)
        self.assertEqual(len(self.list_json()), 2)

    def test_generate_with_passphrase_and_unlock(self):
        fpr = self.generate(BOB, passphrase="correct horse")
        rows = colons(self.home, "--list-secret-keys", fpr)
        self.assertEqual([f[16] for f in rows if f[0] in ("sec", "ssb")], ["ed25519", "cv25519"])
        # The secret key is protected: without the agent's cache, a wrong
        # passphrase cannot export it, the right one can.
        kill_agent(self.home)
        r = gpg(self.home, "--passphrase", "wrong", "--export-secret-keys", fpr, check=False)
        self.assertNotEqual(r.returncode, 0)
        kill_agent(self.home)
        r = gpg(self.home, "--passphrase", "correct horse", "--export-secret-keys", fpr,
                check=False)
        self.assertEqual(r.returncode, 0, r.stderr)

        # unlock: a right passphrase is taken and cached by the agent, so
        # gpg signs without being able to ask.
        kill_agent(self.home)
        r = self.keys("unlock", BOB, "--passphrase-stdin", input="correct horse\n")
        self.assert_ok(r)
        self.assertIn(fpr, r.stdout)
        self.assertIn("unlocked", r.stdout)
        r = subprocess.run(["gpg", "--homedir", self.home, "--batch", "--pinentry-mode", "error",
                            "--local-user", fpr, "--detach-sign"], input=b"x",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)

        # A wrong one is noticed even though the right one is cached.
        r = self.keys("unlock", BOB, "--passphrase-stdin", input="wrong\n")
        self.assert_one_line_error(r, 1, "wrong passphrase", fpr)
        r = self.keys("unlock", BOB, "--passphrase-stdin", input="correct horse\n")
        self.assert_ok(r)
        # No passphrase at all, and nowhere to ask.
        r = self.keys("unlock", BOB)
        self.assert_one_line_error(r, 1, "passphrase")
        # No key of its own.
        r = self.keys("unlock", CAROL, "--passphrase-stdin", input="x\n")
        self.assert_one_line_error(r, 1, CAROL)

        # Generating with an empty passphrase on stdin is refused.
        r = self.keys("generate", ALICE, "--passphrase-stdin", input="\n")
        self.assert_one_line_error(r, 1, "empty passphrase", "--no-passphrase")
        # So is generating with no terminal to ask and no flag.
        r = self.keys("generate", ALICE)
        self.assert_one_line_error(r, 2, "--passphrase-stdin", "--no-passphrase")
        self.assertEqual(list(self.list_json()), [fpr])

    def test_unlock_key_without_passphrase(self):
        fpr = self.generate(ALICE)
        r = self.keys("unlock", ALICE)
        self.assert_ok(r)
        self.assertIn(fpr, r.stdout)
        self.assertIn("no passphrase", r.stdout)

    # ------------------------------------------------------------- export

    def test_export_round_trip(self):
        fpr = self.generate(ALICE)
        r = self.keys("export", ALICE)
        self.assert_ok(r)
        self.assertTrue(r.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"), r.stdout)
        self.assertNotIn("PRIVATE", r.stdout)
        other = self.fresh_home("other")
        gpg(other, "--import", input=r.stdout.encode())
        rows = colons(other, "--list-keys", fpr)
        self.assertIn(["uid"], [f[:1] for f in rows])
        self.assertIn("<%s>" % ALICE, [f[9] for f in rows if f[0] == "uid"])
        self.assertEqual([f[16] for f in rows if f[0] in ("pub", "sub")], ["ed25519", "cv25519"])
        self.assertEqual(colons(other, "--list-secret-keys"), [])

        # Binary, by fingerprint (lower case, grouped).
        grouped = " ".join(fpr[i:i + 4] for i in range(0, 40, 4)).lower()
        r = self.keys("export", grouped, "--no-armor", text=False)
        self.assert_ok(r)
        self.assertNotIn(b"BEGIN PGP", r.stdout)
        other2 = self.fresh_home("other2")
        gpg(other2, "--import", input=r.stdout)
        self.assertTrue(colons(other2, "--list-keys", fpr))

        # --secret needs the confirmation: refused without a terminal.
        r = self.keys("export", ALICE, "--secret")
        self.assert_one_line_error(r, 2, "--yes")
        self.assertEqual(r.stdout, "")
        r = self.keys("export", ALICE, "--secret", "--yes")
        self.assert_ok(r)
        self.assertTrue(r.stdout.startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----"))
        other3 = self.fresh_home("other3")
        gpg(other3, "--import", input=r.stdout.encode())
        self.assertIn(fpr, [f[9] for f in colons(other3, "--list-secret-keys") if f[0] == "fpr"])

        # Nothing to export.
        r = self.keys("export", DAVE)
        self.assert_one_line_error(r, 1, DAVE)
        self.assertEqual(r.stdout, "")
        r = self.keys("export", self.foreign.fpr[CAROL])
        self.assert_one_line_error(r, 1)
        r = self.keys("export", "not-a-key")
        self.assert_one_line_error(r, 1)

    def test_export_secret_with_passphrase(self):
        fpr = self.generate(BOB, passphrase="pass phrase")
        kill_agent(self.home)
        r = self.keys("export", BOB, "--secret", "--yes", "--passphrase-stdin",
                      input="pass phrase\n")
        self.assert_ok(r)
        self.assertIn("PRIVATE KEY BLOCK", r.stdout)
        kill_agent(self.home)
        r = self.keys("export", BOB, "--secret", "--yes", "--passphrase-stdin",
                      input="wrong one\n")
        self.assert_one_line_error(r, 1, "wrong passphrase")
        self.assertEqual(r.stdout, "")
        self.assertTrue(fpr)

    # ------------------------------------------------------------- import

    def test_import_public(self):
        f = self.foreign
        r = self.import_data(f.public)
        self.assert_ok(r)
        fpr = f.fpr[CAROL]
        self.assertIn(fpr, r.stdout.decode())
        k = self.list_json()[fpr]
        self.assertEqual(k["addresses"], [CAROL])
        self.assertFalse(k["own"])
        self.assertTrue(k["usable"])
        self.assertEqual((k["source"], k["acceptance"]), ("manual", "unverified"))
        self.assertIsNone(k["expires"])
        self.assertEqual(colons(self.home, "--list-secret-keys"), [])
        # Again, binary, from a file, with a matching --address: fine, and
        # still one key.
        path = os.path.join(self.dir, "carol.gpg")
        with open(path, "wb") as fh:
            fh.write(f.public_bin)
        r = self.keys("import", path, "--address", CAROL)
        self.assert_ok(r)
        self.assertEqual(list(self.list_json()), [fpr])

    def test_import_drops_third_party_signatures(self):
        f = self.foreign
        # dave's certification is in what gpg exported ...
        lister = self.fresh_home("lister")
        pk = gpg(lister, "--list-packets", input=f.signed, check=False).stdout.decode()
        dave_keyid = f.fpr[DAVE][-16:]
        self.assertIn(dave_keyid, pk)
        r = self.import_data(f.signed, "--address", CAROL)
        self.assert_ok(r)
        # ... and not in the keyring.
        exported = gpg(self.home, "--export", f.fpr[CAROL]).stdout
        pk = gpg(lister, "--list-packets", input=exported, check=False).stdout.decode()
        self.assertIn(f.fpr[CAROL][-16:], pk)
        self.assertNotIn(dave_keyid, pk)

    def test_import_address_mismatch_refused(self):
        fpr = self.generate(ALICE)
        before = self.keyring_snapshot()
        states = self.list_json()
        r = self.import_data(self.foreign.public, "--address", DAVE)
        msg = self.assert_one_line_error(r, 1, DAVE, CAROL, self.foreign.fpr[CAROL])
        self.assertIn("nothing imported", msg)
        self.assertEqual(self.keyring_snapshot(), before)
        self.assertEqual(self.list_json(), states)
        self.assertIn(fpr, states)
        # Domain case does not matter, the local part does.
        r = self.import_data(self.foreign.public, "--address", "Carol@example.test")
        self.assertEqual(r.returncode, 1)
        r = self.import_data(self.foreign.public, "--address", "carol@EXAMPLE.test")
        self.assert_ok(r)

    def test_import_secret_needs_flag(self):
        before = self.keyring_snapshot()
        r = self.import_data(self.foreign.secret)
        self.assert_one_line_error(r, 1, "secret", "--secret", "nothing imported")
        self.assertEqual(self.keyring_snapshot(), before)
        self.assertEqual(self.list_json(), {})
        r = self.import_data(self.foreign.secret, "--secret", "--address", CAROL)
        self.assert_ok(r)
        k = self.list_json()[self.foreign.fpr[CAROL]]
        self.assertTrue(k["own"])
        self.assertEqual(k["acceptance"], "unverified")
        self.assertIn(self.foreign.fpr[CAROL],
                      [f[9] for f in colons(self.home, "--list-secret-keys") if f[0] == "fpr"])

    def test_import_bad_input_refused(self):
        self.generate(ALICE)
        before = self.keyring_snapshot()
        states = self.list_json()
        pub, binary = self.foreign.public, self.foreign.public_bin
        lines = pub.splitlines(keepends=True)
        cases = {
            "empty": b"",
            "garbage": os.urandom(3000),
            "text": b"just some text\n" * 20,
            "message": self.foreign.message,
            "armor cut in the middle": pub[:len(pub) // 2],
            "armor without its end": b"".join(lines[:-2]),
            "armor body cut": b"".join(lines[:len(lines) // 2] + lines[-2:]),
            "oversize": pub + b"\n" + b"A" * (1024 * 1024),
        }
        for cut in (20, 60, len(binary) // 2, len(binary) - 40, len(binary) - 5):
            cases["binary cut at %d" % cut] = binary[:cut]
        for name, data in cases.items():
            with self.subTest(name):
                r = self.import_data(data)
                self.assert_one_line_error(r, 1)
                self.assertEqual(r.stdout, b"")
                self.assertEqual(self.keyring_snapshot(), before)
                self.assertEqual(self.list_json(), states)
        r = self.import_data(b"")
        self.assert_one_line_error(r, 1, "empty")
        r = self.import_data(b"".join(lines[:-1]))
        self.assert_one_line_error(r, 1, "truncated")
        r = self.import_data(pub + b"\n" + b"A" * (1024 * 1024))
        self.assert_one_line_error(r, 1, "1 MiB")
        r = self.keys("import", os.path.join(self.dir, "missing.asc"))
        self.assert_one_line_error(r, 1, "missing.asc")
        self.assertEqual(self.keyring_snapshot(), before)

    # --------------------------------------------------- verify, reject, delete

    def test_verify_and_reject(self):
        fpr = self.foreign.fpr[CAROL]
        self.assert_ok(self.import_data(self.foreign.public))
        r = self.keys("verify", fpr)
        self.assert_one_line_error(r, 2, "--yes")
        self.assertEqual(self.list_json()[fpr]["acceptance"], "unverified")

        r = self.keys("verify", fpr.lower(), "--yes")
        self.assert_ok(r)
        grouped = " ".join(fpr[i:i + 4] for i in range(0, 20, 4)) + "  " + \
            " ".join(fpr[i:i + 4] for i in range(20, 40, 4))
        self.assertIn(grouped, r.stdout)
        self.assertIn(CAROL, r.stdout)
        k = self.list_json()[fpr]
        self.assertEqual(k["acceptance"], "verified")
        self.assertTrue(k["usable"])

        r = self.keys("reject", fpr)
        self.assert_ok(r)
        self.assertEqual(r.stdout.split(), [fpr, "rejected"])
        k = self.list_json()[fpr]
        self.assertEqual(k["acceptance"], "rejected")
        self.assertFalse(k["usable"])
        self.assertEqual(k["unusable_reason"], "rejected")
        r = self.keys("list")
        self.assert_ok(r)
        self.assertIn("unusable (rejected)", r.stdout)
        # Imported again, it stays rejected.
        self.assert_ok(self.import_data(self.foreign.public))
        self.assertEqual(self.list_json()[fpr]["acceptance"], "rejected")

        # Keys that are not there, and what is not a fingerprint.
        r = self.keys("reject", self.foreign.fpr[DAVE])
        self.assert_one_line_error(r, 1, self.foreign.fpr[DAVE], "no key")
        r = self.keys("verify", fpr[-16:], "--yes")
        self.assert_one_line_error(r, 2, "fingerprint")
        r = self.keys("reject", CAROL)
        self.assert_one_line_error(r, 2, "FPR")

    def test_delete(self):
        own = self.generate(ALICE)
        carol = self.foreign.fpr[CAROL]
        self.assert_ok(self.import_data(self.foreign.public))
        self.assert_ok(self.keys("verify", carol, "--yes"))
        r = self.keys("delete", carol)
        self.assert_ok(r)
        self.assertEqual(r.stdout.split(), [carol, "deleted"])
        self.assertEqual(colons(self.home, "--list-keys", carol), [])
        self.assertEqual(list(self.list_json()), [own])
        # Its state went with it: imported again, it is unverified.
        self.assert_ok(self.import_data(self.foreign.public))
        self.assertEqual(self.list_json()[carol]["acceptance"], "unverified")

        # An own key needs the confirmation.
        r = self.keys("delete", own)
        self.assert_one_line_error(r, 2, "--yes")
        self.assertTrue(colons(self.home, "--list-secret-keys", own))
        r = self.keys("delete", own, "--yes")
        self.assert_ok(r)
        self.assertEqual(colons(self.home, "--list-secret-keys", own), [])
        self.assertEqual(colons(self.home, "--list-keys", own), [])
        r = self.keys("delete", own, "--yes")
        self.assert_one_line_error(r, 1, "no key")

    # ------------------------------------------------------- on a terminal

    def run_on_tty(self, args, script, timeout=60):
        """Runs `sealpost keys args` with stdin and stderr on a pty, answers
        each (prompt, answer) of script, returns (rc, stdout, what the
        terminal showed)."""
        master, slave = os.openpty()
        argv = [harness.SEALPOST_BIN, "keys"] + list(args) + ["--config", self.config_path]
        p = subprocess.Popen(argv, stdin=slave, stderr=slave, stdout=subprocess.PIPE,
                             start_new_session=True)
        os.close(slave)
        shown = b""
        try:
            for prompt, answer in script:
                deadline = time.monotonic() + timeout
                while prompt.encode() not in shown:
                    if time.monotonic() > deadline:
                        self.fail("no prompt %r; terminal showed %r" % (prompt, shown))
                    ready, _, _ = select.select([master], [], [], 0.5)
                    if ready:
                        try:
                            shown += os.read(master, 4096)
                        except OSError:
                            self.fail("terminal closed; it showed %r" % shown)
                os.write(master, answer.encode() + b"\n")
            out, _ = p.communicate(timeout=timeout)
            while True:
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            os.close(master)
        return p.returncode, out, shown

    def test_questions_on_a_terminal(self):
        # The passphrase twice, not echoed.
        rc, out, shown = self.run_on_tty(
            ["generate", BOB],
            [("Passphrase for the new key", "typed secret 1"),
             ("Repeat the passphrase", "typed secret 1")])
        self.assertEqual(rc, 0, shown)
        self.assertNotIn(b"typed secret", shown)
        fpr = out.decode().split()[0]
        self.assertRegex(fpr, FPR)
        self.assertIn(b"protected by a passphrase", out)
        kill_agent(self.home)
        r = gpg(self.home, "--passphrase", "typed secret 1", "--export-secret-keys", fpr,
                check=False)
        self.assertEqual(r.returncode, 0, r.stderr)

        # Two different ones: no key.
        rc, out, shown = self.run_on_tty(
            ["generate", ALICE],
            [("Passphrase for the new key", "one"), ("Repeat the passphrase", "two")])
        self.assertEqual(rc, 1, shown)
        self.assertIn(b"differ", shown)
        self.assertEqual(list(self.list_json()), [fpr])

        # unlock asks without echo too.
        kill_agent(self.home)
        rc, out, shown = self.run_on_tty(["unlock", BOB], [("Passphrase for", "typed secret 1")])
        self.assertEqual(rc, 0, shown)
        self.assertNotIn(b"typed secret", shown)
        self.assertIn(b"unlocked", out)

        # verify: "y" marks it; anything else does not.
        self.assert_ok(self.import_data(self.foreign.public))
        carol = self.foreign.fpr[CAROL]
        rc, out, shown = self.run_on_tty(["verify", carol], [("[y/N]", "n")])
        self.assertEqual(rc, 1, shown)
        self.assertEqual(self.list_json()[carol]["acceptance"], "unverified")
        rc, out, shown = self.run_on_tty(["verify", carol], [("[y/N]", "y")])
        self.assertEqual(rc, 0, shown)
        self.assertIn(carol[:4].encode(), out)
        self.assertEqual(self.list_json()[carol]["acceptance"], "verified")

        # export --secret: the last 8 characters of the fingerprint.
        rc, out, shown = self.run_on_tty(["export", BOB, "--secret"],
                                         [("last 8 characters", "00000000")])
        self.assertEqual(rc, 1, shown)
        self.assertEqual(out, b"")
        kill_agent(self.home)
        rc, out, shown = self.run_on_tty(["export", BOB, "--secret"],
                                         [("last 8 characters", fpr[-8:].lower()),
                                          ("Passphrase for", "typed secret 1")])
        self.assertEqual(rc, 0, shown)
        self.assertIn(b"PRIVATE KEY BLOCK", out)

        # delete of an own key: the same question.
        rc, out, shown = self.run_on_tty(["delete", fpr], [("last 8 characters", "nope")])
        self.assertEqual(rc, 1, shown)
        self.assertTrue(colons(self.home, "--list-secret-keys", fpr))
        rc, out, shown = self.run_on_tty(["delete", fpr], [("last 8 characters", fpr[-8:])])
        self.assertEqual(rc, 0, shown)
        self.assertEqual(colons(self.home, "--list-secret-keys", fpr), [])

    # ------------------------------------------------------------- usage

    def test_usage_errors(self):
        cases = [
            (["frobnicate"], "unknown command"),
            (["pending", "extra"], "usage"),
            (["accept"], "usage"),
            (["accept", "xyz"], "ID|FPR"),
            (["refuse", "0"], "ID|FPR"),
            (["refuse", "12", "--yes"], "--yes"),
            (["pending", "--secret"], "--secret"),
            (["generate"], "usage"),
            (["generate", ALICE, BOB], "usage"),
            (["list", "extra"], "usage"),
            (["generate", ALICE, "--json"], "--json"),
            (["list", "--secret"], "--secret"),
            (["import", "--yes"], "--yes"),
            (["generate", "not-an-address", "--no-passphrase"], "ADDRESS"),
            (["generate", "@example.test", "--no-passphrase"], "ADDRESS"),
            (["unlock", "a b@example.test"], "ADDRESS"),
            (["import", "--address", "x"], "ADDRESS"),
            (["generate", ALICE, "--no-passphrase", "--passphrase-stdin"], "exclude"),
            (["export", ALICE, "--passphrase-stdin"], "--secret"),
            (["delete", "xyz"], "FPR"),
            (["--bogus-option"], "bogus"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                # A usage error is one even with a broken configuration.
                r = self.keys(*args, config=False)
                self.assert_one_line_error(r, 2, needle)
        r = self.keys(config=False)
        self.assert_one_line_error(r, 2, "expected list")
        bad = os.path.join(self.dir, "bad.conf")
        with open(bad, "w") as f:
            f.write("[sealpost]\nno_such_key = 1\n")
        r = harness.run_sealpost("keys", "list", "--config", bad)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertFalse(os.path.exists(self.state_dir))
        r = self.keys("list")
        self.assert_ok(r)
        self.assertEqual(r.stdout, "")
        self.assertEqual(self.keys("list", "--json").stdout.strip(), "[]")
        r = harness.run_sealpost("keys", "--help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("list", "generate", "import", "export", "delete", "verify", "reject",
                    "unlock", "pending", "accept", "refuse"):
            self.assertIn(cmd, r.stdout)
        r = harness.run_sealpost("help")
        self.assertIn("keys", r.stdout)
        self.assertIn("status", r.stdout)

    # ------------------------------------------------ pending key changes

    def add_pending(self, addr, old_fpr, new_fpr, keydata):
        """A key change as sealpost records one when a learned key differs
        from the verified one (the inbound path writes the same row)."""
        db = sqlite3.connect(os.path.join(self.state_dir, "sealpost.db"))
        try:
            cur = db.execute(
                "INSERT INTO pending_key (account, addr, old_fingerprint, new_fingerprint, "
                "keydata, source, created) VALUES (?, ?, ?, ?, ?, 'autocrypt', ?)",
                (ALICE, addr, old_fpr, new_fpr, keydata, int(time.time())))
            db.commit()
            return cur.lastrowid
        finally:
            db.close()

    def other_carol(self, name):
        """Another key for carol, made elsewhere: (fingerprint, binary key)."""
        home = self.fresh_home(name)
        fpr = _provider.make_demo_keys(home, [CAROL])[CAROL].upper()
        data = gpg(home, "--export-options", "export-minimal", "--export", fpr).stdout
        kill_agent(home)
        return fpr, data

    def key_state(self, fpr):
        db = sqlite3.connect(os.path.join(self.state_dir, "sealpost.db"))
        try:
            return db.execute("SELECT source, acceptance FROM key_state WHERE fingerprint = ?",
                              (fpr,)).fetchone()
        finally:
            db.close()

    def test_pending_accept_and_refuse(self):
        old = self.foreign.fpr[CAROL]
        self.assert_ok(self.import_data(self.foreign.public))
        self.assert_ok(self.keys("verify", old, "--yes"))
        r = self.keys("pending")
        self.assert_ok(r)
        self.assertEqual(r.stdout, "no pending key changes\n")
        self.assertEqual(json.loads(self.keys("pending", "--json").stdout), [])

        new, data = self.other_carol("carol2")
        pid = self.add_pending(CAROL, old, new, data)
        r = self.keys("pending")
        self.assert_ok(r)
        self.assertIn("%d  %s  learned by autocrypt" % (pid, CAROL), r.stdout)
        self.assertIn("old %s (verified)" % old, r.stdout)
        self.assertIn("new %s %s" % (new, CAROL), r.stdout)
        r = self.keys("pending", "--json")
        self.assert_ok(r)
        (p,) = json.loads(r.stdout)
        self.assertEqual((p["id"], p["address"], p["account"], p["source"]),
                         (pid, CAROL, ALICE, "autocrypt"))
        self.assertEqual((p["old_fingerprint"], p["new_fingerprint"]), (old, new))
        self.assertEqual(p["new_key"]["fingerprint"], new)
        self.assertEqual(p["new_key"]["addresses"], [CAROL])
        # Pending means not in the keyring, not used.
        self.assertNotIn(new, self.list_json())
        self.assertEqual(self.status()["pending"], 1)

        # accept asks on a terminal, or wants --yes.
        r = self.keys("accept", str(pid))
        self.assert_one_line_error(r, 2, "--yes")
        self.assertNotIn(new, self.list_json())
        r = self.keys("accept", new.lower(), "--yes")
        self.assert_ok(r)
        self.assertIn("%s  accepted for %s" % (new, CAROL), r.stdout)
        keys = self.list_json()
        self.assertEqual((keys[new]["source"], keys[new]["acceptance"], keys[new]["usable"]),
                         ("autocrypt", "verified", True))
        self.assertEqual((keys[old]["acceptance"], keys[old]["usable"]), ("rejected", False))
        self.assertEqual(json.loads(self.keys("pending", "--json").stdout), [])
        self.assertEqual(self.status()["pending"], 0)
        # The keyring has it as gpg sees it.
        self.assertIn(new, [rec[9] for rec in colons(self.home, "--list-keys", CAROL)
                            if rec[0] == "fpr"])
        r = self.keys("accept", str(pid), "--yes")
        self.assert_one_line_error(r, 1, "no pending key change %d" % pid)

        # A third key is refused: never imported, remembered as rejected,
        # the accepted one stays in use.
        third, data3 = self.other_carol("carol3")
        pid3 = self.add_pending(CAROL, new, third, data3)
        r = self.keys("refuse", str(pid3))
        self.assert_ok(r)
        self.assertIn("%s  refused for %s" % (third, CAROL), r.stdout)
        keys = self.list_json()
        self.assertNotIn(third, keys)
        self.assertEqual(keys[new]["acceptance"], "verified")
        self.assertEqual(self.key_state(third), ("autocrypt", "rejected"))
        self.assertEqual(json.loads(self.keys("pending", "--json").stdout), [])
        r = self.keys("refuse", third)
        self.assert_one_line_error(r, 1, "no pending key change")

    # ------------------------------------------------------------- status

    def status(self, *args):
        r = harness.run_sealpost("status", "--json", "--config", self.config_path, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_status(self):
        st = self.status()
        self.assertEqual(st["config"], self.config_path)
        self.assertEqual(st["state_dir"], self.state_dir)
        (acct,) = st["accounts"]
        self.assertEqual((acct["name"], acct["address"]), ("test", ALICE))
        (listener,) = acct["listeners"]
        self.assertEqual((listener["protocol"], listener["tls"], listener["host"]),
                         ("smtp", "starttls", "127.0.0.1"))
        self.assertFalse(listener["listening"])
        self.assertIn("smtp", acct["upstreams"])
        self.assertEqual(st["keys"], {"own": 0, "own_usable": 0, "peer": 0, "peer_usable": 0,
                                      "rejected": 0})
        self.assertEqual(st["pending"], 0)
        self.assertEqual(st["recent_refusals"], [])
        self.assertEqual(st["key_discovery"]["methods"], [])

        self.generate(ALICE)
        self.assert_ok(self.import_data(self.foreign.public))
        self.assert_ok(self.keys("reject", self.foreign.fpr[CAROL]))
        db = sqlite3.connect(os.path.join(self.state_dir, "sealpost.db"))
        db.executemany(
            "INSERT INTO decision (time, account, message_id, recipients, decision, reason) "
            "VALUES (?, 'test', ?, ?, ?, ?)",
            [(1700000000, "<a@x>", BOB, "refused", "no usable OpenPGP key for <%s>" % BOB),
             (1700000100, "<b@x>", CAROL, "encrypted", None),
             (1700000200, "<c@x>", DAVE, "refused", "encryption required")])
        db.commit()
        db.close()
        # Something listens on the SMTP port now.
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", listener["port"]))
            sock.listen(1)
            st = self.status()
        finally:
            sock.close()
        self.assertTrue(st["accounts"][0]["listeners"][0]["listening"])
        self.assertEqual(st["keys"], {"own": 1, "own_usable": 1, "peer": 1, "peer_usable": 0,
                                      "rejected": 1})
        self.assertEqual([(r["recipients"], r["reason"]) for r in st["recent_refusals"]],
                         [(DAVE, "encryption required"),
                          (BOB, "no usable OpenPGP key for <%s>" % BOB)])
        self.assertEqual(st["recent_refusals"][0]["time"], "2023-11-14 22:16:40")

        r = harness.run_sealpost("status", "--config", self.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        for needle in ("test <%s>" % ALICE, "SMTP STARTTLS", "not listening",
                       "1 of your own usable (of 1)", "1 rejected", "pending key changes: 0",
                       "to %s: encryption required" % DAVE, "key discovery: off"):
            self.assertIn(needle, r.stdout)

        # Usage and configuration errors.
        r = harness.run_sealpost("status", "extra", "--config", self.config_path)
        self.assertEqual(r.returncode, 2)
        bad = os.path.join(self.dir, "bad.conf")
        with open(bad, "w") as f:
            f.write("[sealpost]\nno_such_key = 1\n")
        r = harness.run_sealpost("status", "--config", bad)
        self.assertEqual(r.returncode, 3)


@unittest.skipUnless(have_sealpost(), "SEALPOST_BIN not built")
class RejectedKeyNotUsed(alicebob.AliceToBob):
    """A running sealpost encrypts to bob; `sealpost keys reject` makes the
    next message go out in plaintext (opportunistic) or be refused
    (require); `verify` brings encryption back. No restart."""

    def keys(self, *args):
        return self.run_cli("keys", *args)

    def test_reject_then_verify(self):
        bob = self.keyrings.fpr[BOB]
        raw = self.received(self.send("before"))
        self.assertIn(b"multipart/encrypted", raw)
        self.assertNotIn(b"the body of before", raw)

        r = self.keys("reject", bob)
        self.assertEqual(r.returncode, 0, r.stderr)
        raw = self.received(self.send("rejected"))
        self.assertNotIn(b"multipart/encrypted", raw)
        self.assertIn(b"the body of rejected", raw)

        # With encryption required for bob, the message is refused whole.
        r = harness.run_sealpost("policy", "set", BOB, "require",
                                 "--config", self.sealpost.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.send("required")
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertIn(BOB.encode(), cm.exception.smtp_error)

        r = self.keys("verify", bob, "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        raw = self.received(self.send("verified"))
        self.assertIn(b"multipart/encrypted", raw)
        self.assertNotIn(b"the body of verified", raw)
        dec = self.keyrings.decrypt(BOB, raw)
        self.assertTrue(dec.ok and dec.decrypted, dec)
        self.assertIn(b"the body of verified", dec.data)
        r = harness.run_sealpost("policy", "unset", BOB, "--config", self.sealpost.config_path)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_autocrypt_no_say_over_a_verified_key(self):
        """bob's Autocrypt key is 40 days older than the last message seen
        from him: the recommendation is "discourage". His key is one the
        user verified, not one learned from Autocrypt, so the recommendation
        does not matter: the message is encrypted and the log says nothing
        of Autocrypt (test_autocrypt.py has the learned-key case)."""
        self.assertEqual(self.keys("verify", self.keyrings.fpr[BOB], "--yes").returncode, 0)
        msgid = self.send("fresh")
        self.assertIn(b"multipart/encrypted", self.received(msgid))
        self.assertEqual(self.decision(msgid)[1], None)
        now = int(time.time())
        db = sqlite3.connect(os.path.join(self.sealpost.state_dir, "sealpost.db"))
        db.execute("INSERT OR REPLACE INTO autocrypt_peer (account, addr, last_seen, "
                   "autocrypt_timestamp, public_key, public_key_fpr, updated) "
                   "VALUES (?, ?, ?, ?, X'99', ?, ?)",
                   (ALICE, BOB, now, now - 40 * DAY, self.keyrings.fpr[BOB], now))
        db.commit()
        db.close()
        try:
            msgid = self.send("stale")
            self.assertIn(b"multipart/encrypted", self.received(msgid))
            decision, reason = self.decision(msgid)
            self.assertIn("encrypted", decision)
            self.assertEqual(reason, None)
        finally:
            db = sqlite3.connect(os.path.join(self.sealpost.state_dir, "sealpost.db"))
            db.execute("DELETE FROM autocrypt_peer")
            db.commit()
            db.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
