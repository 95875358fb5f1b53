# gpgkeys: throwaway OpenPGP keyrings for the outbound tests, and the gpg
# runs that check what sealpost relayed (decrypt, list packets, verify).
"""Throwaway OpenPGP keyrings (ed25519 + cv25519, no passphrase) made once
per test module, and gpg as the recipients' side uses it.

    keys = gpgkeys.Keyrings([ALICE, BOB, CAROL])
    home = keys.sealpost_home(secret=ALICE, publics=[BOB, CAROL])
    r = keys.decrypt(BOB, armored)     # r.ok, r.data, r.validsig, r.enc_to
    keys.recipient_keyids(armored)     # key ids of the pubkey enc packets
    keys.enc_keyid[BOB]                # bob's encryption subkey id
    keys.close()                       # ends the agents, removes the dirs

Every user has a home of his own holding his secret key and everybody
else's public key. All homes live under one short /tmp/spk-XXXX directory
(gpg-agent's socket path must stay below about 107 bytes). The gpg-agents
gpg starts there are ended with `gpgconf --homedir HOME --kill all`, one
home at a time, never by process name."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import provider as _provider  # noqa: E402

ARMOR_BEGIN = b"-----BEGIN PGP MESSAGE-----"
ARMOR_END = b"-----END PGP MESSAGE-----"
_PUBKEY_ENC = re.compile(r":pubkey enc packet:.*\bkeyid ([0-9A-Fa-f]{16})")


class GpgError(RuntimeError):
    pass


class GpgResult:
    """One gpg run: rc, data (stdout bytes), status (the [GNUPG:] lines),
    stderr (text)."""

    def __init__(self, rc, data, status_text, stderr):
        self.rc = rc
        self.data = data
        self.stderr = stderr
        self.status = [l[len("[GNUPG:] "):] for l in status_text.splitlines()
                       if l.startswith("[GNUPG:] ")]

    def lines(self, keyword):
        """The status lines with this keyword, split into fields."""
        return [l.split() for l in self.status if l.split()[:1] == [keyword]]

    @property
    def ok(self):
        return self.rc == 0

    @property
    def decrypted(self):
        return bool(self.lines("DECRYPTION_OKAY"))

    @property
    def validsig(self):
        """Fingerprints of the primary keys of good, valid signatures."""
        out = []
        for f in self.lines("VALIDSIG"):
            # VALIDSIG <fpr> <date> <ts> <exp> <ver> <res> <pk> <hash> <cls> <primary-fpr>
            out.append((f[10] if len(f) > 10 else f[1]).upper())
        return out

    @property
    def goodsig(self):
        return bool(self.lines("GOODSIG")) and not self.lines("BADSIG")

    @property
    def enc_to(self):
        """Key ids named in ENC_TO status lines."""
        return [f[1].upper() for f in self.lines("ENC_TO")]

    def __repr__(self):
        return "GpgResult(rc=%d, status=%r, stderr=%r)" % (self.rc, self.status,
                                                          self.stderr[-800:])


def armored_block(raw):
    """The first ASCII-armored PGP message in raw (bytes), line ends as
    found; raises GpgError when there is none."""
    i = raw.find(ARMOR_BEGIN)
    j = raw.find(ARMOR_END, i + 1)
    if i < 0 or j < 0:
        raise GpgError("no armored PGP message in %d bytes" % len(raw))
    return raw[i:j + len(ARMOR_END)] + b"\n"


class Keyrings:
    """One home per user with his secret key and all public keys; homes for
    sealpost built on demand (sealpost_home)."""

    def __init__(self, users):
        self.users = list(users)
        self.base = tempfile.mkdtemp(prefix="spk-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.homes = {}         # every home made here: ended at close()
        self.user_home = {}
        self.fpr = {}           # address -> primary fingerprint
        self.enc_keyid = {}     # address -> encryption subkey id (16 hex)
        self.enc_fpr = {}       # address -> encryption subkey fingerprint
        self.public = {}        # address -> armored public key
        self._secret = {}       # address -> armored secret key
        self._templates = {}
        self._n = 0
        try:
            for i, addr in enumerate(self.users):
                home = self._new_home("u%d" % i)
                fprs = _provider.make_demo_keys(home, [addr])
                if addr not in fprs:
                    raise GpgError("no key made for %s" % addr)
                self.fpr[addr] = fprs[addr].upper()
                self.user_home[addr] = home
                self._read_subkey(addr)
                self.public[addr] = self.gpg(home, "--armor", "--export", self.fpr[addr]).data
                self._secret[addr] = self.gpg(home, "--armor", "--export-secret-keys",
                                              self.fpr[addr]).data
            for addr, home in self.user_home.items():
                for other in self.users:
                    if other != addr:
                        self.gpg(home, "--import", input=self.public[other])
            # Packets are listed where no secret key is, so gpg lists and
            # does not decrypt.
            self.lister_home = self._new_home("l")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ homes

    def _new_home(self, name):
        home = os.path.join(self.base, name)
        os.makedirs(home, mode=0o700)
        os.chmod(home, 0o700)
        with open(os.path.join(home, "gpg.conf"), "w") as f:
            f.write("no-random-seed-file\n")
        self.homes[home] = True
        return home

    def _read_subkey(self, addr):
        r = self.gpg(self.user_home[addr], "--with-colons", "--list-keys", self.fpr[addr])
        want = False
        for line in r.data.decode().splitlines():
            f = line.split(":")
            if f[0] == "sub":
                want = "e" in f[11]
                if want:
                    self.enc_keyid[addr] = f[4].upper()
            elif f[0] == "fpr" and want:
                self.enc_fpr[addr] = f[9].upper()
                want = False
        if addr not in self.enc_keyid:
            raise GpgError("no encryption subkey for %s" % addr)

    def sealpost_home(self, secret="alice@example.test", publics=None):
        """A new gnupg_home for one sealpost: the secret key of secret (None:
        no secret key) and the public keys of publics (default: every other
        user). A copy of a template made once per combination."""
        if publics is None:
            publics = [u for u in self.users if u != secret]
        key = (secret, tuple(sorted(publics)))
        tpl = self._templates.get(key)
        if tpl is None:
            tpl = self._new_home("t%d" % len(self._templates))
            if secret is not None:
                self.gpg(tpl, "--import", input=self._secret[secret])
            for addr in publics:
                self.gpg(tpl, "--import", input=self.public[addr])
            self.kill_agent(tpl)
            self._templates[key] = tpl
        self._n += 1
        home = os.path.join(self.base, "s%d" % self._n)
        shutil.copytree(tpl, home, ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        os.chmod(home, 0o700)
        self.homes[home] = True
        return home

    def kill_agent(self, home):
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)

    def close(self):
        """Ends the agents of every home made here (and of any extra home
        registered with adopt()), then removes the directory."""
        for home in list(self.homes):
            if os.path.isdir(home):
                self.kill_agent(home)
        self.homes.clear()
        if os.environ.get("SEALPOST_KEEP_PROVIDER") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    def adopt(self, home):
        """Ends this home's agents at close() too."""
        self.homes[home] = True

    # -------------------------------------------------------------- gpg

    def gpg(self, home, *args, input=b"", check=True, timeout=120):
        """gpg --homedir home --batch args; status lines on a pipe of their
        own. Raises GpgError when check and gpg fails."""
        rfd, wfd = os.pipe()
        try:
            argv = ["gpg", "--homedir", home, "--batch", "--no-tty",
                    "--pinentry-mode", "loopback", "--status-fd", str(wfd)] + list(args)
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, pass_fds=(wfd,))
            os.close(wfd)
            wfd = -1
            status = []
            t = threading.Thread(target=lambda: status.append(_read_all(rfd)), daemon=True)
            t.start()
            out, err = p.communicate(input, timeout=timeout)
            t.join(timeout)
        finally:
            if wfd >= 0:
                os.close(wfd)
            os.close(rfd)
        r = GpgResult(p.returncode, out, (status[0] if status else b"").decode(errors="replace"),
                      err.decode(errors="replace"))
        if check and r.rc != 0:
            raise GpgError("gpg %s: %r" % (" ".join(args), r))
        return r

    def decrypt(self, user, data):
        """gpg --decrypt with user's keyring (data: the armored message or
        a whole message file holding one). Never raises for a failed
        decryption: look at .ok / .decrypted."""
        if ARMOR_BEGIN in data and not data.startswith(ARMOR_BEGIN):
            data = armored_block(data)
        return self.gpg(self.user_home[user], "--decrypt", input=data, check=False)

    def recipient_keyids(self, data):
        """Key ids (16 hex, upper) of the pubkey enc packets of the armored
        message in data, listed by gpg --list-packets."""
        if not data.startswith(ARMOR_BEGIN):
            data = armored_block(data)
        r = self.gpg(self.lister_home, "--list-packets", input=data, check=False)
        text = r.data.decode(errors="replace") + "\n" + r.stderr
        ids = [m.group(1).upper() for m in _PUBKEY_ENC.finditer(text)]
        if not ids:
            raise GpgError("no pubkey enc packet listed: %r" % r)
        return ids

    def verify_detached(self, user, data, signature):
        """gpg --verify signature data with user's keyring."""
        d = tempfile.mkdtemp(prefix="v", dir=self.base)
        try:
            sig, msg = os.path.join(d, "sig.asc"), os.path.join(d, "data")
            with open(sig, "wb") as f:
                f.write(signature)
            with open(msg, "wb") as f:
                f.write(data)
            return self.gpg(self.user_home[user], "--verify", sig, msg, check=False)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def encrypt(self, sender, recipients, data, sign=False):
        """Armored message encrypted (and signed, if sign) by sender's
        keyring to recipients."""
        args = ["--armor", "--trust-model", "always", "--encrypt"]
        for r in recipients:
            args += ["--recipient", self.fpr[r]]
        if sign:
            args += ["--sign", "--local-user", self.fpr[sender]]
        return self.gpg(self.user_home[sender], *args, input=data).data


def _read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
