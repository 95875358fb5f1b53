# test_console: the web console sealpost serves at http://127.0.0.1:PORT/ —
# its files and their headers over plain HTTP, then the pages in headless
# Chromium (tests/web/console.mjs), cross-checked with the CLI.
"""The web console of a real `sealpost serve` (docs/api.md, "Web console"):
GET / and /console/FILE answer the files built into the binary, byte for
byte, without the token but under the Host and Origin checks, with a strict
Content-Security-Policy, nosniff, no-referrer and no-cache; unknown files and
path tricks are 404 (or 400), other methods 405, and every /api/v1 call
still wants the token. Then Chromium (Debian's, driven by playwright-core)
pairs with a wrong and the right token, generates a key and sets a rule on
the page, and `sealpost keys list` / `policy list` show both. A key whose
user ID carries markup is shown as text. No provider is needed."""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ALICE = "alice@example.test"
CONSOLE_DIR = os.path.join(harness.SOURCE_DIR, "plugin", "console")
CONSOLE_FILES = ("index.html", "console.css", "api.js", "pages.js", "main.js")
CONSOLE_SCRIPT = os.path.join(harness.SOURCE_DIR, "tests", "web", "console.mjs")
CHROMIUM = "/usr/bin/chromium"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'none'")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
# A user ID whose address part is markup: gpg keeps it, and the keyring
# lists "<img ...>@example.net" as the key's address.
XSS_UID = "Mallory <<img src=x onerror=window.__sealpostXss=1>@example.net>"
BROWSER_TIMEOUT = 180


def kill_agent(home):
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def node_path():
    return shutil.which("node")


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        dead = harness.free_port()
        fake = types.SimpleNamespace(hostname="127.0.0.1", imap_port=dead,
                                     submission_port=dead, ca_cert=None)
        cls.port = harness.free_port()
        cls.sp = harness.Sealpost(fake, account={"upstream_ca_file": None},
                                  global_={"api_listen": "127.0.0.1:%d" % cls.port})
        cls.gnupg_home = os.path.join(cls.sp.state_dir, "gnupg")
        cls.token = json.loads(cls.cli("pair", "--json").stdout)["token"]
        cls.foreign = tempfile.mkdtemp(prefix="sp-console-gpg-")

    @classmethod
    def tearDownClass(cls):
        cls.sp.stop()
        kill_agent(cls.gnupg_home)
        kill_agent(cls.foreign)
        shutil.rmtree(cls.foreign, ignore_errors=True)
        cls.sp.close()

    # ----------------------------------------------------------- helpers

    @classmethod
    def cli(cls, *args):
        r = harness.run_sealpost(*args, "--config", cls.sp.config_path, timeout=120)
        if r.returncode != 0:
            raise AssertionError("sealpost %s: %d\n%s" % (" ".join(args), r.returncode, r.stderr))
        return r

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    def request(self, method, path, token=False, headers=None, body=None):
        """(status, body bytes, response) of one request sent as is."""
        h = {}
        if token:
            h["Authorization"] = "Bearer " + self.token
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp
        finally:
            conn.close()

    def assert_page_headers(self, resp, ctype):
        self.assertEqual(resp.getheader("Content-Type"), ctype)
        self.assertEqual(resp.getheader("Content-Security-Policy"), CSP)
        self.assertEqual(resp.getheader("X-Content-Type-Options"), "nosniff")
        self.assertEqual(resp.getheader("Referrer-Policy"), "no-referrer")
        self.assertEqual(resp.getheader("Cache-Control"), "no-cache")

    def import_xss_key(self):
        """Imports a key made outside sealpost whose user ID holds markup;
        returns the address the API lists for it."""
        r = subprocess.run(["gpg", "--homedir", self.foreign, "--batch", "--pinentry-mode",
                            "loopback", "--passphrase", "", "--quick-generate-key", XSS_UID,
                            "ed25519", "sign", "never"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        armored = subprocess.run(["gpg", "--homedir", self.foreign, "--batch", "--armor",
                                  "--export"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 check=True, timeout=60).stdout.decode()
        kill_agent(self.foreign)
        st, body, _ = self.request("POST", "/api/v1/keys/import", token=True,
                                   body=json.dumps({"armored": armored}))
        self.assertEqual(st, 200, body)
        addresses = json.loads(body)["imported"][0]["addresses"]
        self.assertEqual(len(addresses), 1, addresses)
        self.assertIn("<img src=x onerror=", addresses[0])
        return addresses[0]

    # ------------------------------------------------------------- files

    def test_files_served_without_token(self):
        for name in CONSOLE_FILES:
            with open(os.path.join(CONSOLE_DIR, name), "rb") as f:
                want = f.read()
            st, body, resp = self.request("GET", "/console/" + name)
            self.assertEqual(st, 200, name)
            self.assertEqual(body, want, name)
            self.assert_page_headers(resp, TYPES[os.path.splitext(name)[1]])
        st, body, resp = self.request("GET", "/")
        self.assertEqual(st, 200)
        with open(os.path.join(CONSOLE_DIR, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())
        self.assert_page_headers(resp, TYPES[".html"])
        # The console's own origin may fetch its files (module scripts send it).
        st, _, _ = self.request("GET", "/console/main.js",
                                headers={"Origin": "http://127.0.0.1:%d" % self.port})
        self.assertEqual(st, 200)

    def test_head_like_get(self):
        st, body, resp = self.request("HEAD", "/console/api.js")
        self.assertEqual(st, 200)
        self.assertEqual(body, b"")
        self.assertEqual(int(resp.getheader("Content-Length")),
                         os.path.getsize(os.path.join(CONSOLE_DIR, "api.js")))
        self.assert_page_headers(resp, TYPES[".js"])
        st, body, _ = self.request("HEAD", "/")
        self.assertEqual((st, body), (200, b""))

    def test_api_still_needs_token(self):
        for headers in ({}, {"Origin": "http://127.0.0.1:%d" % self.port},
                        {"Referer": "http://127.0.0.1:%d/" % self.port}):
            st, body, resp = self.request("GET", "/api/v1/status", headers=headers)
            self.assertEqual(st, 401, headers)
            self.assertIsNone(resp.getheader("Content-Security-Policy"))
            self.assertEqual(resp.getheader("Cache-Control"), "no-store")
        st, _, _ = self.request("GET", "/api/v1/status", token=True)
        self.assertEqual(st, 200)

    def test_unknown_files_and_path_tricks(self):
        st, body, resp = self.request("GET", "/console/nonexistent.js")
        self.assertEqual(st, 404)
        self.assertEqual(json.loads(body), {"error": "no such resource", "status": 404})
        self.assertTrue(resp.getheader("Content-Type").startswith("application/json"))
        tricks = ["/console/../api/v1/status", "/console/..%2fapi.js", "/console/%2e%2e",
                  "/console/..", "/console/", "/console//api.js", "/console/api.js/",
                  "/console/API.JS", "/console/./api.js", "/console/%2fetc%2fpasswd",
                  "/console/..%2f..%2f..%2fetc%2fpasswd", "/console/api.js%00",
                  "/console/api.js%0d%0aX-Evil:%201", "/console/sealpost.conf",
                  "/console/index.html/..", "/index.html", "/console", "/api.js"]
        for path in tricks:
            st, body, _ = self.request("GET", path, token=True)
            self.assertIn(st, (400, 404), "%s: %d %r" % (path, st, body))
            # Without the token nothing more is shown.
            st, body, _ = self.request("GET", path)
            self.assertIn(st, (400, 401, 404), "%s: %d %r" % (path, st, body))
            self.assertNotIn(b"export class", body)

    def test_foreign_host_or_origin(self):
        for path in ("/", "/console/api.js"):
            st, _, _ = self.request("GET", path, headers={"Host": "evil.example:%d" % self.port})
            self.assertEqual(st, 403, path)
            st, _, _ = self.request("GET", path, headers={"Host": "127.0.0.1:%d" % (self.port + 1)})
            self.assertEqual(st, 403, path)
            st, _, _ = self.request("GET", path, headers={"Origin": "http://evil.example"})
            self.assertEqual(st, 403, path)

    def test_other_methods(self):
        for method, path in (("POST", "/"), ("PUT", "/console/api.js"),
                             ("DELETE", "/console/index.html"), ("OPTIONS", "/")):
            st, body, resp = self.request(method, path, token=True, body="{}")
            self.assertEqual(st, 405, "%s %s: %r" % (method, path, body))
            self.assertEqual(resp.getheader("Allow"), "GET, HEAD")

    # ----------------------------------------------------------- browser

    def test_browser_pair_generate_policy(self):
        node = node_path()
        if node is None or not os.access(CHROMIUM, os.X_OK) or not os.path.isdir(
                os.path.join(harness.SOURCE_DIR, "node_modules", "playwright-core")):
            self.skipTest("needs node, %s and node_modules/playwright-core" % CHROMIUM)
        xss_address = self.import_xss_key()
        env = dict(os.environ,
                   SEALPOST_CONSOLE_URL="http://127.0.0.1:%d/" % self.port,
                   SEALPOST_TOKEN=self.token, SEALPOST_ADDRESS=ALICE,
                   SEALPOST_XSS_ADDRESS=xss_address)
        proc = subprocess.Popen([node, CONSOLE_SCRIPT], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=harness.SOURCE_DIR)
        try:
            out, err = proc.communicate(timeout=BROWSER_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail("console.mjs did not finish within %ds\n%s" % (
                BROWSER_TIMEOUT, err.decode(errors="replace")))
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, "console.mjs:\n%s\n%s\n%s" % (
            out, err, self.sp.log_tail()))
        result = json.loads(out.strip().splitlines()[-1])
        self.assertTrue(result["ok"], result)

        # The CLI shows what the page did.
        keys = self.cli_json("keys", "list")
        by_fpr = {k["fingerprint"]: k for k in keys}
        self.assertIn(result["fingerprint"], by_fpr, keys)
        mine = by_fpr[result["fingerprint"]]
        self.assertEqual(mine["addresses"], [ALICE])
        self.assertTrue(mine["own"] and mine["usable"])
        self.assertIn(xss_address, [a for k in keys for a in k["addresses"]])
        rules = {r["target"]: r["policy"] for r in self.cli_json("policy", "list")}
        self.assertEqual(rules.get("@example.net"), "require", rules)
        # The wrong token was refused, and no token reached the log.
        log = self.sp.log_text()
        self.assertNotIn(self.token, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
