# test_api: the local HTTP/JSON API of a running sealpost, spoken to with
# http.client and cross-checked with the CLI on the same state.
"""The local API (docs/api.md) of a real `sealpost serve`: `sealpost pair`
and the token file (0600); status, accounts, keys (generate, import, export,
verify, reject, delete, unlock), policies and recipients, each checked
against what `sealpost keys list --json` / `sealpost policy list --json`
show; and the security checks — missing or wrong token (401), a foreign
Host or Origin (403), a write that is not application/json (415), CR, LF or
NUL in a field, a path or a query (400), an oversized body (413) — after
each of which nothing changed. No provider is needed: nothing logs in."""
import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import provider as _provider  # noqa: E402

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

TOKEN = re.compile(r"^[0-9a-f]{64}$")


def kill_agent(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The upstreams point at a closed port: the API needs none.
        dead = harness.free_port()
        fake = types.SimpleNamespace(hostname="127.0.0.1", imap_port=dead,
                                     submission_port=dead, ca_cert=None)
        cls.port = harness.free_port()
        cls.sp = harness.Sealpost(fake, account={"upstream_ca_file": None},
                                  global_={"api_listen": "127.0.0.1:%d" % cls.port})
        cls.gnupg_home = os.path.join(cls.sp.state_dir, "gnupg")
        r = cls.cli("pair", "--json")
        cls.pair = json.loads(r.stdout)
        cls.token = cls.pair["token"]
        cls.foreign = tempfile.mkdtemp(prefix="sp-api-gpg-")

    @classmethod
    def tearDownClass(cls):
        cls.sp.stop()
        kill_agent(cls.gnupg_home)
        kill_agent(os.path.join(cls.foreign, "home"))
        shutil.rmtree(cls.foreign, ignore_errors=True)
        cls.sp.close()

    # ----------------------------------------------------------- helpers

    @classmethod
    def cli(cls, *args, check=True):
        r = harness.run_sealpost(*args, "--config", cls.sp.config_path, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError("sealpost %s: %d\n%s" % (" ".join(args), r.returncode, r.stderr))
        return r

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    def snapshot(self):
        """What the CLI shows of keys and policy rules."""
        return (self.cli_json("keys", "list"), self.cli_json("policy", "list"))

    def request(self, method, path, body=None, token=True, headers=None, raw=None,
                content_type="application/json"):
        """(status, parsed JSON or text, headers) of one request."""
        h = {}
        if token is True:
            h["Authorization"] = "Bearer " + self.token
        elif token is not None:
            h["Authorization"] = token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None or method in ("POST", "PUT", "DELETE"):
            if content_type is not None:
                h["Content-Type"] = content_type
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read().decode()
            ctype = resp.getheader("Content-Type", "")
            value = json.loads(text) if ctype.startswith("application/json") else text
            return resp.status, value, resp
        finally:
            conn.close()

    def ok(self, method, path, body=None, status=200, **kw):
        st, value, _ = self.request(method, path, body, **kw)
        self.assertEqual(st, status, value)
        return value

    def foreign_key(self, address):
        """Armored public key of a key made outside sealpost, and its fingerprint."""
        home = os.path.join(self.foreign, "home")
        fpr = _provider.make_demo_keys(home, [address])[address].upper()
        r = subprocess.run(["gpg", "--homedir", home, "--batch", "--armor", "--export", fpr],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True,
                           timeout=60)
        kill_agent(home)
        return r.stdout.decode(), fpr

    # ------------------------------------------------------------- tests

    def test_pair_and_token_file(self):
        path = os.path.join(self.sp.state_dir, "api-token")
        st = os.stat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        with open(path) as f:
            self.assertEqual(f.read().strip(), self.token)
        self.assertRegex(self.token, TOKEN)
        self.assertEqual(self.pair["url"], "http://127.0.0.1:%d" % self.port)
        self.assertEqual(self.pair["api"], "http://127.0.0.1:%d/api/v1/" % self.port)
        text = self.cli("pair").stdout
        self.assertIn("token %s" % self.token, text)
        self.assertIn("http://127.0.0.1:%d/api/v1/" % self.port, text)
        # The same token on every call: it is made once.
        self.assertEqual(self.cli_json("pair")["token"], self.token)
        # A token file others may read is refused, not used.
        os.chmod(path, 0o644)
        try:
            r = self.cli("pair", check=False)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("accessible to others", r.stderr)
            self.assertNotIn(self.token, r.stdout + r.stderr)
        finally:
            os.chmod(path, 0o600)

    def test_status_and_accounts(self):
        status = self.ok("GET", "/api/v1/status")
        cli = self.cli_json("status")
        for key in ("config", "state_dir", "gnupg_home", "keys", "autocrypt_peers", "pending"):
            self.assertEqual(status[key], cli[key], key)
        self.assertEqual([a["address"] for a in status["accounts"]], [ALICE])
        self.assertEqual(status["api"]["port"], self.port)
        self.assertTrue(status["api"]["listening"])
        accounts = self.ok("GET", "/api/v1/accounts")
        self.assertEqual(accounts[0]["name"], "test")
        self.assertEqual(accounts[0]["address"], ALICE)
        self.assertEqual(accounts[0]["policy"], "opportunistic")

    def test_keys_generate_import_verify_reject_delete(self):
        key = self.ok("POST", "/api/v1/keys/generate",
                      {"address": ALICE, "no_passphrase": True}, status=201)
        self.assertEqual(key["addresses"], [ALICE])
        self.assertTrue(key["own"] and key["usable"])
        # The CLI shows the same key, described the same way.
        cli_keys = self.cli_json("keys", "list")
        self.assertIn(key, cli_keys)
        self.assertEqual(self.ok("GET", "/api/v1/keys"), cli_keys)
        self.assertEqual(self.ok("GET", "/api/v1/keys?address=" + ALICE), [key])
        # A second one for the same address is refused, unless forced.
        st, err, _ = self.request("POST", "/api/v1/keys/generate",
                                  {"address": ALICE, "no_passphrase": True})
        self.assertEqual(st, 422, err)
        # Either a passphrase or no_passphrase.
        st, err, _ = self.request("POST", "/api/v1/keys/generate", {"address": "x@example.test"})
        self.assertEqual(st, 400, err)

        exported = self.ok("GET", "/api/v1/keys/%s/export" % ALICE)
        self.assertEqual(exported["fingerprints"], [key["fingerprint"]])
        self.assertTrue(exported["armored"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
        self.assertNotIn("PRIVATE", exported["armored"])

        armored, fpr = self.foreign_key(CAROL)
        imported = self.ok("POST", "/api/v1/keys/import", {"armored": armored})["imported"]
        self.assertEqual([k["fingerprint"] for k in imported], [fpr])
        self.assertEqual(imported[0]["acceptance"], "unverified")
        self.assertFalse(imported[0]["own"])
        by_fpr = {k["fingerprint"]: k for k in self.cli_json("keys", "list")}
        self.assertEqual(by_fpr[fpr]["acceptance"], "unverified")

        self.assertEqual(self.ok("POST", "/api/v1/keys/%s/verify" % fpr)["acceptance"],
                         "verified")
        by_fpr = {k["fingerprint"]: k for k in self.cli_json("keys", "list")}
        self.assertEqual(by_fpr[fpr]["acceptance"], "verified")
        self.assertEqual(self.ok("POST", "/api/v1/keys/%s/reject" % fpr)["acceptance"],
                         "rejected")
        by_fpr = {k["fingerprint"]: k for k in self.cli_json("keys", "list")}
        self.assertEqual(by_fpr[fpr]["acceptance"], "rejected")
        self.assertFalse(by_fpr[fpr]["usable"])

        # Recipients: carol's key is rejected, alice's own is usable.
        rec = self.ok("POST", "/api/v1/check-recipients", {"addresses": [CAROL, ALICE]})
        by_addr = {r["address"]: r for r in rec["recipients"]}
        self.assertFalse(by_addr[CAROL]["key_usable"])
        self.assertTrue(by_addr[ALICE]["key_usable"])
        self.assertEqual(by_addr[ALICE]["key"], key["fingerprint"])
        self.assertFalse(rec["all_have_keys"])

        self.assertEqual(self.ok("DELETE", "/api/v1/keys/%s" % fpr)["deleted"], fpr)
        self.assertNotIn(fpr, [k["fingerprint"] for k in self.cli_json("keys", "list")])
        st, err, _ = self.request("DELETE", "/api/v1/keys/%s" % fpr)
        self.assertEqual(st, 404, err)
        # A key of one's own goes only with confirm: true.
        st, err, _ = self.request("DELETE", "/api/v1/keys/%s" % key["fingerprint"])
        self.assertEqual(st, 409, err)
        self.assertIn(key["fingerprint"],
                      [k["fingerprint"] for k in self.cli_json("keys", "list")])

    def test_unlock(self):
        key = self.ok("POST", "/api/v1/keys/generate",
                      {"address": BOB, "passphrase": "correct horse"}, status=201)
        st, err, _ = self.request("POST", "/api/v1/keys/unlock",
                                  {"address": BOB, "passphrase": "wrong"})
        self.assertEqual(st, 422, err)
        self.assertIn("wrong passphrase", err["error"])
        done = self.ok("POST", "/api/v1/keys/unlock",
                       {"address": BOB, "passphrase": "correct horse"})
        self.assertEqual(done["fingerprint"], key["fingerprint"])
        self.assertTrue(done["unlocked"])
        # A passphrase with a line break never reaches gpg-agent's protocol.
        st, err, _ = self.request("POST", "/api/v1/keys/unlock",
                                  {"address": BOB, "passphrase": "correct\nOPTION x"})
        self.assertEqual(st, 400, err)

    def test_policies(self):
        target = "@policy.example"
        self.assertEqual(self.ok("PUT", "/api/v1/policies/" + target, {"policy": "require"}),
                         {"target": target, "policy": "require"})
        api_rules = self.ok("GET", "/api/v1/policies")
        self.assertEqual(api_rules, self.cli_json("policy", "list"))
        self.assertIn(target, [r["target"] for r in api_rules])
        rec = self.ok("GET", "/api/v1/recipients?address=dan@policy.example")
        r = rec["recipients"][0]
        self.assertEqual((r["policy"], r["rule"], r["outcome"]), ("require", target, "refuse"))
        self.assertTrue(rec["refused"])
        # A rule set by the CLI is seen by the API, and the other way round.
        self.cli("policy", "set", "eve@policy.example", "never")
        rec = self.ok("GET", "/api/v1/recipients?address=eve@policy.example")
        self.assertEqual(rec["recipients"][0]["outcome"], "plain")
        self.assertEqual(self.ok("DELETE", "/api/v1/policies/eve@policy.example")["removed"],
                         True)
        self.assertEqual(self.ok("DELETE", "/api/v1/policies/" + target)["removed"], True)
        self.assertNotIn(target, [r["target"] for r in self.cli_json("policy", "list")])
        st, err, _ = self.request("DELETE", "/api/v1/policies/" + target)
        self.assertEqual(st, 404, err)
        st, err, _ = self.request("PUT", "/api/v1/policies/" + target, {"policy": "always"})
        self.assertEqual(st, 400, err)
        st, err, _ = self.request("PUT", "/api/v1/policies/nobody", {"policy": "never"})
        self.assertEqual(st, 400, err)

    def test_other_endpoints(self):
        self.assertIsInstance(self.ok("GET", "/api/v1/pending"), list)
        self.assertIsInstance(self.ok("GET", "/api/v1/decisions?limit=5"), list)
        peers = self.ok("GET", "/api/v1/peers?address=" + CAROL)
        self.assertEqual(peers["peers"], [])
        st, err, _ = self.request("GET", "/api/v1/decisions?limit=0")
        self.assertEqual(st, 400, err)
        st, err, _ = self.request("POST", "/api/v1/pending/12345/accept")
        self.assertEqual(st, 404, err)
        st, err, _ = self.request("GET", "/api/v1/nothing")
        self.assertEqual(st, 404, err)
        st, err, resp = self.request("POST", "/api/v1/status")
        self.assertEqual(st, 405, err)
        self.assertEqual(resp.getheader("Allow"), "GET")
        st, text, resp = self.request("GET", "/metrics")
        self.assertEqual(st, 200, text)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/plain"))
        self.assertIn("sealpost_smtp_connections_total", text)

    def test_slow_client_blocks_nobody(self):
        # A connection that never finishes its request holds its own
        # thread only.
        with socket.create_connection(("127.0.0.1", self.port)) as slow:
            slow.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % self.port)
            results = []

            def one():
                results.append(self.request("GET", "/api/v1/keys")[0])
            threads = [threading.Thread(target=one) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(results, [200] * 4)

    def test_security_refusals_change_nothing(self):
        self.ok("PUT", "/api/v1/policies/@kept.example", {"policy": "opportunistic"})
        before = self.snapshot()
        host = "127.0.0.1:%d" % self.port
        wrong = "Bearer " + ("0" * 64 if self.token != "0" * 64 else "1" * 64)
        put = ("PUT", "/api/v1/policies/@kept.example", {"policy": "never"})
        gen = ("POST", "/api/v1/keys/generate", {"address": CAROL, "no_passphrase": True})
        cases = [
            # (what, method, path, body, kwargs, status)
            ("no token", *put, {"token": None}, 401),
            ("wrong token", *put, {"token": wrong}, 401),
            ("token of another scheme", *put, {"token": "Basic " + self.token}, 401),
            ("token cut short", *put, {"token": "Bearer " + self.token[:-1]}, 401),
            ("no token, generate", *gen, {"token": None}, 401),
            ("foreign Host", *put, {"headers": {"Host": "evil.example:%d" % self.port}}, 403),
            ("rebinding Host", *put, {"headers": {"Host": "127.0.0.1.evil.example:%d"
                                                  % self.port}}, 403),
            ("Host with another port", *put, {"headers": {"Host": "127.0.0.1:1"}}, 403),
            ("foreign Origin", *put, {"headers": {"Origin": "http://evil.example"}}, 403),
            ("foreign Origin, generate", *gen, {"headers": {"Origin": "http://evil.example"}},
             403),
            ("null Origin", *put, {"headers": {"Origin": "null"}}, 403),
            ("https Origin", *put, {"headers": {"Origin": "https://127.0.0.1:%d" % self.port}},
             403),
            ("text/plain", *put, {"content_type": "text/plain"}, 415),
            ("text/plain generate", *gen, {"content_type": "text/plain"}, 415),
            ("form", *gen, {"content_type": "application/x-www-form-urlencoded"}, 415),
            ("no Content-Type", *put, {"content_type": None}, 415),
            ("CR LF in a field", "PUT", "/api/v1/policies/@kept.example",
             {"policy": "never\r\nX-Evil: 1"}, {}, 400),
            ("LF in an address", "POST", "/api/v1/keys/generate",
             {"address": CAROL + "\nRCPT TO:<eve@evil.example>", "no_passphrase": True}, {}, 400),
            ("CR in a member name", "POST", "/api/v1/keys/generate",
             {"address": CAROL, "no_passphrase": True, "x\r": 1}, {}, 400),
            ("NUL in a field", "POST", "/api/v1/keys/generate",
             {"address": CAROL + "\u0000x", "no_passphrase": True}, {}, 400),
            ("CR LF in the path", "PUT", "/api/v1/policies/@kept.example%0D%0AX:%20y",
             {"policy": "never"}, {}, 400),
            ("NUL in the path", "PUT", "/api/v1/policies/@kept.example%00.evil",
             {"policy": "never"}, {}, 400),
            ("LF in the query", "GET", "/api/v1/recipients?address=a@kept.example%0Ab", None,
             {}, 400),
            ("not JSON", "PUT", "/api/v1/policies/@kept.example", None,
             {"raw": b"policy=never"}, 400),
            ("not an object", "PUT", "/api/v1/policies/@kept.example", None,
             {"raw": b"[\"never\"]"}, 400),
            ("too large", "PUT", "/api/v1/policies/@kept.example", None,
             {"raw": b"{\"policy\":\"never\",\"x\":\"" + b"a" * 70000 + b"\"}"}, 413),
        ]
        for what, method, path, body, kw, want in cases:
            with self.subTest(what):
                st, value, _ = self.request(method, path, body, **kw)
                self.assertEqual(st, want, value)
                self.assertIn("error", value)
                if method != "GET":
                    # What the CLI shows is exactly as before.
                    self.assertEqual(self.snapshot(), before)
        # Host names and origins that are fine: the same change goes through.
        self.ok("GET", "/api/v1/status", headers={"Host": "localhost:%d" % self.port})
        self.ok("GET", "/api/v1/status", headers={"Host": host,
                                                  "Origin": "http://localhost:%d" % self.port})
        self.ok("PUT", "/api/v1/policies/@kept.example", {"policy": "never"},
                headers={"Origin": "moz-extension://0b5c1f7e-1f4f-4b6c-9a57-2a0f7f2b8a11"},
                content_type="application/json; charset=utf-8")
        rules = {r["target"]: r["policy"] for r in self.cli_json("policy", "list")}
        self.assertEqual(rules["@kept.example"], "never")
        self.ok("DELETE", "/api/v1/policies/@kept.example")
        # Nothing of the token ever reaches the log.
        time.sleep(0.2)
        self.assertNotIn(self.token, self.sp.log_text())


if __name__ == "__main__":
    unittest.main(verbosity=2)
