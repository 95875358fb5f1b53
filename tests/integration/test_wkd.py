# test_wkd: key discovery — recipients' keys found by WKD (HTTPS on loopback,
# a test CA) or on an HKP keyserver, cached, pending when changed, bounded in time.
"""Key discovery through sealpost and GnuPG's dirmngr, end to end.

WKD needs names (openpgpkey.example.org) and a CA dirmngr trusts, so the
module runs itself again inside new network and mount namespaces
(`unshare --net --mount`, as root): loopback is brought up, a private
/etc/hosts points the test domains at 127.0.0.1 and 127.0.0.2, the test CA
(tests/unit/fixtures) is appended to a private copy of the system CA bundle,
and the WKD server listens on 127.0.0.1:443 (and a server that never
answers on 127.0.0.2:443). The provider, sealpost, gpg and dirmngr all run
in there; nothing reaches the real network. Where namespaces cannot be
made, the WKD tests are skipped and the keyserver tests (plain HKP on a
loopback port, no names needed) still run.

Scenarios: a key found by WKD encrypts the message and is listed as source
wkd, unverified, with only the user ID for the address; no key on the
server means plaintext (opportunistic) or 550 (require), and the miss is
cached (no second HTTP request); a changed key for a known address goes to
pending and is used only once accepted; an HKP keyserver when configured;
a server that never answers costs at most discovery_timeout."""
import email
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpgkeys  # noqa: E402
import harness  # noqa: E402
import smtp_fake  # noqa: E402
import wkd_server  # noqa: E402

NS_ENV = "SEALPOST_WKD_NAMESPACE"
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "unit", "fixtures")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

ALICE = "alice@example.test"
BOB = "bob@example.org"          # on WKD (with a second user ID elsewhere)
NOKEY = "nokey@example.org"      # nowhere
CAROL = "carol@example.org"      # known to sealpost; WKD serves another key
DAVE = "dave@example.org"        # only on the keyserver
ERIN = "erin@example.org"        # on WKD, for the require policy
SLOW = "frank@slow.example"      # the WKD server of slow.example never answers
GINA = "gina@example.org"        # on WKD; her key there changes later

TIMEOUT = 2                      # discovery_timeout of every sealpost here


def namespaced():
    return os.environ.get(NS_ENV) == "1"


def can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    r = subprocess.run(["unshare", "--net", "--mount", "true"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0


def run(*argv):
    subprocess.run(list(argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def setup_namespace(tmp):
    """Inside the new namespaces: loopback, names, the test CA, and a
    certificate for the WKD hosts signed by it."""
    run("ip", "link", "set", "lo", "up")
    hosts = os.path.join(tmp, "hosts")
    with open("/etc/hosts") as f:
        text = f.read()
    with open(hosts, "w") as f:
        f.write(text + "\n127.0.0.1 openpgpkey.example.org example.org\n"
                "127.0.0.2 openpgpkey.slow.example slow.example\n")
    run("mount", "--bind", hosts, "/etc/hosts")
    bundle = os.path.join(tmp, "ca-certificates.crt")
    with open(bundle, "wb") as out:
        if os.path.exists(CA_BUNDLE):
            with open(CA_BUNDLE, "rb") as f:
                out.write(f.read())
        with open(os.path.join(FIXTURES, "test-ca.crt"), "rb") as f:
            out.write(b"\n" + f.read())
    if os.path.exists(CA_BUNDLE):
        run("mount", "--bind", bundle, CA_BUNDLE)
    else:
        raise unittest.SkipTest("no system CA bundle at %s" % CA_BUNDLE)
    cnf = os.path.join(tmp, "leaf.cnf")
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=openpgpkey.example.org\n"
                "[ext]\nsubjectAltName=DNS:openpgpkey.example.org,DNS:example.org,"
                "DNS:openpgpkey.slow.example,DNS:slow.example\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    key, csr, crt = (os.path.join(tmp, n) for n in ("wkd.key", "wkd.csr", "wkd.crt"))
    run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-config", cnf)
    run("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(FIXTURES, "test-ca.crt"),
        "-CAkey", os.path.join(FIXTURES, "test-ca.key"), "-set_serial", "4711", "-days", "2",
        "-extfile", cnf, "-extensions", "ext", "-out", crt)
    return crt, key


W = None


class World:
    """The provider, keyrings, key servers and the sealposts the module shares."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="spw-")
        self.sealposts = {}
        self.servers = []
        self.keys = self.keys2 = None
        self.wkd = self.slow = None
        self.provider = self.p = None
        try:
            if namespaced():
                self.cert, self.certkey = setup_namespace(self.tmp)
            self.provider = harness.Provider()
            self.p = self.provider.__enter__()
            self.keys = gpgkeys.Keyrings([ALICE, BOB, CAROL, DAVE, ERIN, GINA])
            # Other keys for carol (what the WKD server serves) and gina.
            self.keys2 = gpgkeys.Keyrings([CAROL, GINA])
            home = self.keys.user_home[BOB]
            self.keys.gpg(home, "--quick-add-uid", self.keys.fpr[BOB],
                          "Bob Elsewhere <bob@elsewhere.test>")
            self.bob_key = self.keys.gpg(home, "--export", self.keys.fpr[BOB]).data
            self.hkp = wkd_server.HkpServer()
            self.hang_hkp = wkd_server.HkpServer()
            self.hang_hkp.hang = True
            self.servers += [self.hkp, self.hang_hkp]
            self.hkp.keys[DAVE] = self.binary(self.keys, DAVE)
            if namespaced():
                self.wkd = wkd_server.WkdServer(self.cert, self.certkey)
                self.slow = wkd_server.WkdServer(self.cert, self.certkey, host="127.0.0.2")
                self.slow.hang = True
                self.servers += [self.wkd, self.slow]
                self.wkd.keys[BOB] = self.bob_key
                self.wkd.keys[ERIN] = self.binary(self.keys, ERIN)
                self.wkd.keys[CAROL] = self.binary(self.keys2, CAROL)
                self.wkd.keys[GINA] = self.binary(self.keys, GINA)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def binary(keys, addr):
        return keys.gpg(keys.user_home[addr], "--export", keys.fpr[addr]).data

    def sealpost(self, name, account=None, **discovery):
        """A sealpost of its own (own keyring and database) with discovery
        settings; alice's secret key and carol's old public key."""
        s = self.sealposts.get(name)
        if s is None:
            home = self.keys.sealpost_home(ALICE, [CAROL])
            with open(os.path.join(home, "dirmngr.conf"), "w") as f:
                # getaddrinfo reads the private /etc/hosts.
                f.write("standard-resolver\n")
            g = {"gnupg_home": home, "discovery_timeout": TIMEOUT}
            g.update(discovery)
            s = harness.Sealpost(self.p, account=dict(account or {}), global_=g)
            self.sealposts[name] = s
        return s

    def close(self):
        reports = []
        for s in self.sealposts.values():
            if s.proc is not None:
                smtp_fake.wait_sessions_closed(s.log_text)
            s.stop()
            r = smtp_fake.sanitizer_report(s.log_text())
            if r:
                reports.append(r)
            s.close()
        for srv in self.servers:
            srv.close()
        for k in (self.keys, self.keys2):
            if k is not None:
                k.close()
        if self.p is not None:
            self.provider.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return reports


setUpModule, tearDownModule = harness.module_world(globals(), World)


def wkd_only(cls_or_fn):
    return unittest.skipUnless(namespaced(), "WKD needs network and mount namespaces "
                               "(unshare, as root)")(cls_or_fn)


class DiscoveryCase(unittest.TestCase):
    maxDiff = 4000

    def client(self, s):
        ctx = ssl.create_default_context(cafile=s.cert_path)
        c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=120)
        self.addCleanup(c.close)
        c.starttls(context=ctx)
        c.ehlo()
        c.login(ALICE, W.p.users[ALICE])
        return c

    def send(self, s, rcpt, expect=250):
        """One message to rcpt; (msgid, final reply, seconds). The final
        reply is DATA's (or RCPT's when that refused) and must be expect."""
        msgid = "%s@example.test" % uuid.uuid4().hex[:12]
        msg = ("From: %s\r\nTo: %s\r\nSubject: discovery %s\r\nMessage-ID: <%s>\r\n"
               "\r\nsecret words %s\r\n" % (ALICE, rcpt, msgid, msgid, msgid)).encode()
        c = self.client(s)
        t0 = time.monotonic()
        self.assertEqual(c.mail(ALICE)[0], 250)
        r = c.rcpt(rcpt)
        d = c.data(msg) if r[0] == 250 else None
        elapsed = time.monotonic() - t0
        c.quit()
        final = d if d is not None else r
        self.assertEqual(final[0], expect, "%r %r\n%s" % (r, d, s.log_tail(30)))
        return msgid, final, elapsed

    def stored(self, msgid, timeout=20):
        want = ("message-id: <%s>" % msgid).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for raw in W.p.read_messages("outside"):
                head = raw.replace(b"\r\n", b"\n").partition(b"\n\n")[0].lower()
                if want in head:
                    return raw
            time.sleep(0.05)
        self.fail("message <%s> not delivered" % msgid)

    def assert_encrypted_to(self, raw, keys, addr):
        m = email.message_from_bytes(raw)
        self.assertEqual(m.get_content_type(), "multipart/encrypted")
        self.assertNotIn(b"secret words", raw)
        ids = W.keys.recipient_keyids(raw)
        self.assertIn(keys.enc_keyid[addr], ids)
        r = keys.decrypt(addr, raw)
        self.assertTrue(r.ok and r.decrypted, r)
        return ids

    def assert_plain(self, raw, msgid):
        m = email.message_from_bytes(raw)
        self.assertNotEqual(m.get_content_type(), "multipart/encrypted")
        self.assertIn(("secret words %s" % msgid).encode(), raw)

    def cli(self, s, *args):
        r = harness.run_sealpost(*args, "--config", s.config_path, timeout=60)
        return r

    def keys_list(self, s):
        r = self.cli(s, "keys", "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def key_entry(self, s, fpr):
        for k in self.keys_list(s):
            if k["fingerprint"] == fpr:
                return k
        return None


@wkd_only
class WkdTest(DiscoveryCase):
    def test_found_by_wkd(self):
        """No local key: WKD finds bob's key; the message is encrypted to
        it; the key is kept as source wkd, unverified, with only the user
        ID for bob@example.org."""
        s = W.sealpost("wkd", key_discovery="wkd")
        msgid, _, _ = self.send(s, BOB)
        self.assert_encrypted_to(self.stored(msgid), W.keys, BOB)
        k = self.key_entry(s, W.keys.fpr[BOB])
        self.assertIsNotNone(k, self.keys_list(s))
        self.assertEqual(k["source"], "wkd")
        self.assertEqual(k["acceptance"], "unverified")
        self.assertEqual(k["addresses"], [BOB])
        self.assertTrue(k["usable"])
        hits = W.wkd.count(wkd_server.wkd_hash("bob"))
        self.assertGreaterEqual(hits, 1)
        # The next message uses the key in the keyring: no new request.
        msgid, _, _ = self.send(s, BOB)
        self.assert_encrypted_to(self.stored(msgid), W.keys, BOB)
        self.assertEqual(W.wkd.count(wkd_server.wkd_hash("bob")), hits)

    def test_no_key_opportunistic_cached(self):
        """Nothing on the server: plaintext under opportunistic, and the
        miss is cached — a second message makes no second request."""
        s = W.sealpost("wkd", key_discovery="wkd")
        h = wkd_server.wkd_hash("nokey")
        msgid, _, _ = self.send(s, NOKEY)
        self.assert_plain(self.stored(msgid), msgid)
        n = W.wkd.count(h)
        self.assertGreaterEqual(n, 1)
        # Another process (the in-memory cache is not the one at work).
        s.restart()
        msgid, _, _ = self.send(s, NOKEY)
        self.assert_plain(self.stored(msgid), msgid)
        self.assertEqual(W.wkd.count(h), n)
        # An explicit lookup asks anyway.
        r = self.cli(s, "keys", "locate", NOKEY, "--json")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["result"], "not-found", out)
        self.assertEqual(W.wkd.count(h), n + 1)

    def test_no_key_require(self):
        """Under require, no key anywhere is 550; one on WKD is found in
        time and the message goes out encrypted."""
        s = W.sealpost("wkd-require", account={"policy": "require"}, key_discovery="wkd")
        h = wkd_server.wkd_hash("nokey")
        before = W.wkd.count(h)
        _, r, _ = self.send(s, NOKEY, expect=550)
        self.assertIn(b"5.7.1", r[1])
        n = W.wkd.count(h)
        self.assertGreater(n, before)
        self.send(s, NOKEY, expect=550)
        self.assertEqual(W.wkd.count(h), n)
        msgid, _, _ = self.send(s, ERIN)
        self.assert_encrypted_to(self.stored(msgid), W.keys, ERIN)

    def test_compose_check_looks_up(self):
        """The API's recipients check (the add-on's compose window) looks a
        key up as sending would: under require, a recipient whose key is
        on WKD is told "encrypt", not "refuse", and the send that follows
        makes no second request; one with no key anywhere is "refuse"."""
        port = harness.free_port()
        s = W.sealpost("wkd-api", account={"policy": "require"}, key_discovery="wkd",
                       api_listen="127.0.0.1:%d" % port)
        r = self.cli(s, "pair", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        token = json.loads(r.stdout)["token"]

        def check(addr):
            req = urllib.request.Request(
                "http://127.0.0.1:%d/api/v1/recipients?address=%s" % (port, addr),
                headers={"Authorization": "Bearer " + token})
            with urllib.request.urlopen(req, timeout=60) as resp:
                [rcpt] = json.load(resp)["recipients"]
            return rcpt

        h = wkd_server.wkd_hash("erin")
        before = W.wkd.count(h)
        rcpt = check(ERIN)
        self.assertEqual((rcpt["outcome"], rcpt["key_usable"]), ("encrypt", True), rcpt)
        self.assertEqual(rcpt["key"].upper(), W.keys.fpr[ERIN])
        n = W.wkd.count(h)
        self.assertGreater(n, before)
        msgid, _, _ = self.send(s, ERIN)
        self.assert_encrypted_to(self.stored(msgid), W.keys, ERIN)
        self.assertEqual(W.wkd.count(h), n)
        rcpt = check(NOKEY)
        self.assertEqual((rcpt["outcome"], rcpt["key_usable"]), ("refuse", False), rcpt)

    def test_changed_key_pending(self):
        """WKD serves another key for carol, whose key sealpost knows: it
        goes to pending and is not used until accepted."""
        s = W.sealpost("wkd-carol", key_discovery="wkd")
        old, new = W.keys.fpr[CAROL], W.keys2.fpr[CAROL]
        r = self.cli(s, "keys", "locate", CAROL, "--json")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["result"], "pending", out)
        self.assertEqual(out["fingerprint"], new)
        self.assertEqual(out["method"], "wkd")
        pending = json.loads(self.cli(s, "keys", "pending", "--json").stdout)
        self.assertEqual([(p["address"], p["old_fingerprint"], p["new_fingerprint"],
                           p["source"]) for p in pending], [(CAROL, old, new, "wkd")])
        self.assertIsNone(self.key_entry(s, new))
        # Still the old key.
        msgid, _, _ = self.send(s, CAROL)
        ids = self.assert_encrypted_to(self.stored(msgid), W.keys, CAROL)
        self.assertNotIn(W.keys2.enc_keyid[CAROL], ids)
        r = self.cli(s, "keys", "accept", str(pending[0]["id"]), "--yes")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        msgid, _, _ = self.send(s, CAROL)
        ids = self.assert_encrypted_to(self.stored(msgid), W.keys2, CAROL)
        self.assertNotIn(W.keys.enc_keyid[CAROL], ids)

    def test_changed_key_found_again(self):
        """A key found by WKD is looked up again after
        discovery_positive_ttl (0 here: whenever sealpost asks gpg again);
        a changed one goes to pending on its own, the old one stays in use."""
        s = W.sealpost("wkd-refresh", key_discovery="wkd", discovery_positive_ttl=0)
        msgid, _, _ = self.send(s, GINA)
        self.assert_encrypted_to(self.stored(msgid), W.keys, GINA)
        W.wkd.keys[GINA] = self.binary_new_gina()
        h = wkd_server.wkd_hash("gina")
        n = W.wkd.count(h)
        s.restart()     # nothing cached in memory
        msgid, _, _ = self.send(s, GINA)
        ids = self.assert_encrypted_to(self.stored(msgid), W.keys, GINA)
        self.assertNotIn(W.keys2.enc_keyid[GINA], ids)
        self.assertEqual(W.wkd.count(h), n + 1)
        pending = json.loads(self.cli(s, "keys", "pending", "--json").stdout)
        self.assertEqual([(p["address"], p["old_fingerprint"], p["new_fingerprint"])
                          for p in pending], [(GINA, W.keys.fpr[GINA], W.keys2.fpr[GINA])])

    @staticmethod
    def binary_new_gina():
        return World.binary(W.keys2, GINA)

    def test_locate_text(self):
        s = W.sealpost("wkd-locate", key_discovery="none")
        r = self.cli(s, "keys", "locate", ERIN)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(W.keys.fpr[ERIN], r.stdout)
        self.assertIn("imported, unverified", r.stdout)
        k = self.key_entry(s, W.keys.fpr[ERIN])
        self.assertEqual((k["source"], k["acceptance"]), ("wkd", "unverified"))
        # Discovery off: sending does not look anything up.
        before = W.wkd.count(wkd_server.wkd_hash("nokey"))
        msgid, _, _ = self.send(s, NOKEY)
        self.assert_plain(self.stored(msgid), msgid)
        self.assertEqual(W.wkd.count(wkd_server.wkd_hash("nokey")), before)

    def test_wkd_server_hangs(self):
        """A WKD server that takes the connection and never answers: the
        message is answered after about discovery_timeout — plaintext
        under opportunistic, 550 under require."""
        s = W.sealpost("wkd", key_discovery="wkd")
        msgid, _, elapsed = self.send(s, SLOW)
        self.assert_plain(self.stored(msgid), msgid)
        self.assertLess(elapsed, TIMEOUT + 5)
        self.assertGreaterEqual(W.slow.count(), 1)
        s2 = W.sealpost("wkd-require", account={"policy": "require"}, key_discovery="wkd")
        _, r, elapsed = self.send(s2, SLOW, expect=550)
        self.assertLess(elapsed, TIMEOUT + 5)
        self.assertIn(SLOW, s2.log_text())


class KeyserverTest(DiscoveryCase):
    def test_found_on_keyserver(self):
        """key_discovery = keyserver with an HKP server on loopback."""
        s = W.sealpost("hkp", key_discovery="keyserver",
                       keyserver="hkp://127.0.0.1:%d" % W.hkp.port)
        msgid, _, _ = self.send(s, DAVE)
        self.assert_encrypted_to(self.stored(msgid), W.keys, DAVE)
        k = self.key_entry(s, W.keys.fpr[DAVE])
        self.assertEqual((k["source"], k["acceptance"]), ("keyserver", "unverified"))
        self.assertGreaterEqual(W.hkp.count("search=dave%40example.org") +
                                W.hkp.count("search=dave@example.org"), 1)
        # A miss is cached too.
        msgid, _, _ = self.send(s, NOKEY)
        self.assert_plain(self.stored(msgid), msgid)
        n = W.hkp.count("nokey")
        self.assertGreaterEqual(n, 1)
        msgid, _, _ = self.send(s, NOKEY)
        self.assertEqual(W.hkp.count("nokey"), n)
        # sealpost status says how keys are looked up.
        r = self.cli(s, "status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["key_discovery"],
                         {"methods": ["keyserver"], "keyserver": "hkp://127.0.0.1:%d" % W.hkp.port,
                          "timeout": TIMEOUT})
        r = self.cli(s, "status")
        self.assertIn("key discovery: keyserver hkp://127.0.0.1:%d, %d s per lookup"
                      % (W.hkp.port, TIMEOUT), r.stdout)

    @wkd_only
    def test_wkd_then_keyserver(self):
        """wkd, keyserver: dave is not on WKD, the keyserver has him."""
        s = W.sealpost("both", key_discovery="wkd, keyserver",
                       keyserver="hkp://127.0.0.1:%d" % W.hkp.port)
        msgid, _, _ = self.send(s, DAVE)
        self.assert_encrypted_to(self.stored(msgid), W.keys, DAVE)
        self.assertGreaterEqual(W.wkd.count(wkd_server.wkd_hash("dave")), 1)
        k = self.key_entry(s, W.keys.fpr[DAVE])
        self.assertEqual(k["source"], "keyserver")

    def test_keyserver_hangs(self):
        """A keyserver that never answers costs at most discovery_timeout."""
        s = W.sealpost("hkp-hang", key_discovery="keyserver",
                       keyserver="hkp://127.0.0.1:%d" % W.hang_hkp.port)
        msgid, _, elapsed = self.send(s, DAVE)
        self.assert_plain(self.stored(msgid), msgid)
        self.assertLess(elapsed, TIMEOUT + 5)
        self.assertGreaterEqual(W.hang_hkp.count(), 1)
        r = self.cli(s, "keys", "locate", DAVE, "--json")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["result"], "failed")

    def test_sessions_in_parallel(self):
        """Sessions waiting for lookups of different addresses (and of
        the same one) at once are all answered in time."""
        s = W.sealpost("hkp-hang2", key_discovery="keyserver",
                       keyserver="hkp://127.0.0.1:%d" % W.hang_hkp.port)
        rcpts = ["p1@example.org", "p2@example.org", "p3@example.org", "p3@example.org"]
        results, errors = [], []

        def one(rcpt):
            try:
                results.append(self.send(s, rcpt))
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)
        threads = [threading.Thread(target=one, args=(r,)) for r in rcpts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), len(rcpts))
        for msgid, _, elapsed in results:
            self.assertLess(elapsed, 2 * TIMEOUT + 5)
            self.assert_plain(self.stored(msgid), msgid)
        # One request for p3, however many sessions asked.
        self.assertEqual(W.hang_hkp.count("p3"), 1)


def main():
    # SEALPOST_WKD_NAMESPACE=0 runs here, without namespaces (WKD skipped).
    if os.environ.get(NS_ENV) is None and can_unshare():
        env = dict(os.environ)
        env[NS_ENV] = "1"
        r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                            sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env=env)
        sys.exit(r.returncode)
    if not namespaced():
        print("test_wkd: no network and mount namespaces here; WKD tests skipped",
              file=sys.stderr)
    unittest.main()


if __name__ == "__main__":
    main()
