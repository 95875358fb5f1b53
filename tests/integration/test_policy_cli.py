# test_policy_cli: `sealpost policy set|unset|list` against a real
# STATE_DIR/sealpost.db — output, exit codes, file modes, broken databases.
"""`sealpost policy` through the built binary: rules set, listed (text and
JSON) and removed; bad TARGET / POLICY as usage errors naming what was
wrong; a missing or invalid configuration; the database created 0600 in a
0700 state_dir; a file that is not a database, or a newer schema, refused
with one line and left untouched; several commands at once on a new
database; the default configuration path."""
import datetime
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def have_sealpost():
    return os.access(harness.SEALPOST_BIN, os.X_OK)


@unittest.skipUnless(have_sealpost(), "SEALPOST_BIN not built")
class PolicyCliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sp-policy-")
        self.state_dir = os.path.join(self.dir, "state")
        self.db_path = os.path.join(self.state_dir, "sealpost.db")
        self.config_path = self.write_config()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_config(self, name="sealpost.conf", extra=""):
        # No provider is contacted: the policy command only reads the
        # configuration for its state_dir.
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("[sealpost]\n"
                    "state_dir = %s\n%s\n"
                    "[account test]\n"
                    "address = alice@example.test\n"
                    "smtp_listen = 127.0.0.1:%d\n"
                    "smtp_upstream = smtp://localhost:%d\n"
                    % (self.state_dir, extra, harness.free_port(), harness.free_port()))
        return path

    def policy(self, *args, config=True, **kw):
        argv = ["policy"] + list(args)
        if config:
            argv += ["--config", self.config_path]
        return harness.run_sealpost(*argv, **kw)

    def assert_ok(self, r):
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def assert_one_line_error(self, r, code, *needles):
        self.assertEqual(r.returncode, code, "stdout: %r\nstderr: %r" % (r.stdout, r.stderr))
        msg = r.stderr.strip()
        self.assertEqual(len(msg.splitlines()), 1, "exactly one line: %r" % msg)
        for n in needles:
            self.assertIn(n, msg)
        return msg

    def list_text(self):
        r = self.policy("list")
        self.assert_ok(r)
        return r.stdout

    def list_json(self):
        r = self.policy("list", "--json")
        self.assert_ok(r)
        return json.loads(r.stdout)

    # ------------------------------------------------------------- behaviour

    def test_set_list_unset(self):
        self.assertEqual(self.list_text(), "")
        self.assertEqual(self.list_json(), [])

        r = self.policy("set", "Bob@Example.TEST", "require")
        self.assert_ok(r)
        self.assertIn("bob@example.test", r.stdout)
        self.assert_ok(self.policy("set", "@Example.Test", "NEVER"))
        self.assert_ok(self.policy("set", "carol@other.test", "opportunistic"))

        lines = self.list_text().splitlines()
        self.assertEqual(len(lines), 3, lines)
        rows = [l.split() for l in lines]
        # Ordered by target, stored lower-case.
        self.assertEqual([(r[0], r[1]) for r in rows],
                         [("@example.test", "never"), ("bob@example.test", "require"),
                          ("carol@other.test", "opportunistic")])
        now = datetime.datetime.now(datetime.timezone.utc)
        for row in rows:
            self.assertEqual(len(row), 4, row)
            self.assertEqual(row[2], "updated")
            self.assertRegex(row[3], ISO)
            when = datetime.datetime.strptime(row[3], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc)
            self.assertLess(abs((now - when).total_seconds()), 120)
        # Two spaces between columns, as documented.
        self.assertRegex(lines[1], r"^bob@example\.test +require +updated ")

        rules = self.list_json()
        self.assertEqual([(x["target"], x["policy"]) for x in rules],
                         [("@example.test", "never"), ("bob@example.test", "require"),
                          ("carol@other.test", "opportunistic")])
        for x in rules:
            self.assertEqual(set(x), {"target", "policy", "updated"})
            self.assertRegex(x["updated"], ISO)

        # set replaces.
        self.assert_ok(self.policy("set", "bob@example.test", "never"))
        self.assertIn({"target": "bob@example.test", "policy": "never"},
                      [{"target": x["target"], "policy": x["policy"]} for x in self.list_json()])
        self.assertEqual(len(self.list_json()), 3)

        r = self.policy("unset", "BOB@example.test")
        self.assert_ok(r)
        self.assertEqual([x["target"] for x in self.list_json()],
                         ["@example.test", "carol@other.test"])
        r = self.policy("unset", "bob@example.test")
        self.assert_one_line_error(r, 1, "no rule for bob@example.test")
        self.assertEqual(r.stdout, "")
        self.assert_ok(self.policy("unset", "@example.test"))
        self.assertEqual([x["target"] for x in self.list_json()], ["carol@other.test"])

    def test_options_anywhere_and_dash_target(self):
        r = harness.run_sealpost("policy", "--config", self.config_path, "set",
                                 "dave@example.test", "require")
        self.assert_ok(r)
        r = harness.run_sealpost("policy", "-c", self.config_path, "set", "--",
                                 "-dash@example.test", "never")
        self.assert_ok(r)
        r = harness.run_sealpost("policy", "--json", "list", "-c", self.config_path)
        self.assert_ok(r)
        self.assertEqual([x["target"] for x in json.loads(r.stdout)],
                         ["-dash@example.test", "dave@example.test"])

    def test_json_is_valid_for_international_targets(self):
        target = "j\u00f6rg@b\u00fccher.example"
        self.assert_ok(self.policy("set", target, "require"))
        r = self.policy("list", "--json")
        self.assert_ok(r)
        self.assertEqual(json.loads(r.stdout)[0]["target"], target)
        self.assertIn(target, self.list_text())

    def test_bad_target_or_policy_is_a_usage_error(self):
        cases = [
            ("bob.example.test", "'@'"),
            ("a@b@example.test", "'@'"),
            ("bob@", "empty domain"),
            ("@", "empty domain"),
            ("", "empty"),
            ("bob smith@example.test", "space"),
            ("bob\r\n@example.test", "control character"),
            ("<bob@example.test>", "local part"),
            ("b" * 320 + "@example.test", "320"),
        ]
        for target, why in cases:
            with self.subTest(target=target):
                r = self.policy("set", target, "require")
                msg = self.assert_one_line_error(r, 2, "TARGET", why)
                self.assertNotIn("\r", msg)
                self.assertEqual(r.stdout, "")
                r = self.policy("unset", target)
                self.assert_one_line_error(r, 2, "TARGET", why)
        for policy in ("maybe", "none", "", "require "):
            with self.subTest(policy=policy):
                r = self.policy("set", "bob@example.test", policy)
                self.assert_one_line_error(r, 2, "POLICY", "require, opportunistic or never")
        # Checked before anything is read or created.
        self.assertFalse(os.path.exists(self.state_dir))

    def test_usage_errors(self):
        for args in (("set", "bob@example.test"), ("set", "a@b.test", "never", "extra"),
                     ("unset",), ("list", "extra"), ("frobnicate",), ()):
            with self.subTest(args=args):
                self.assert_one_line_error(self.policy(*args), 2)
        r = self.policy("set", "bob@example.test", "never", "--json")
        self.assert_one_line_error(r, 2, "--json")
        r = self.policy("list", "--no-such-option")
        self.assert_one_line_error(r, 2, "no-such-option")
        self.assertFalse(os.path.exists(self.state_dir))

    def test_help(self):
        r = harness.run_sealpost("policy", "--help")
        self.assert_ok(r)
        for word in ("Usage", "set", "unset", "list", "--json", "--config", "@domain"):
            self.assertIn(word, r.stdout)
        r = harness.run_sealpost("help")
        self.assert_ok(r)
        self.assertIn("policy", r.stdout)

    def test_missing_or_invalid_config(self):
        missing = os.path.join(self.dir, "nowhere.conf")
        r = harness.run_sealpost("policy", "list", "--config", missing)
        self.assert_one_line_error(r, 3, missing)
        bad = self.write_config("bad.conf", extra="colour = blue")
        r = harness.run_sealpost("policy", "set", "bob@example.test", "never", "--config", bad)
        self.assert_one_line_error(r, 3, bad, "colour")
        self.assertFalse(os.path.exists(self.state_dir))

    def test_default_config_path(self):
        xdg = os.path.join(self.dir, "xdg")
        env = dict(os.environ, XDG_CONFIG_HOME=xdg, HOME=self.dir)
        r = harness.run_sealpost("policy", "list", env=env)
        self.assert_one_line_error(r, 2, "--config")
        os.makedirs(os.path.join(xdg, "sealpost"))
        shutil.copy(self.config_path, os.path.join(xdg, "sealpost", "sealpost.conf"))
        r = harness.run_sealpost("policy", "set", "eve@example.test", "never", env=env)
        self.assert_ok(r)
        self.assertEqual([x["target"] for x in self.list_json()], ["eve@example.test"])

    def test_database_is_private(self):
        # Even with a permissive umask.
        r = self.policy("set", "bob@example.test", "require", umask=0)
        self.assert_ok(r)
        self.assertEqual(stat.S_IMODE(os.stat(self.state_dir).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.db_path).st_mode), 0o600)
        # A wider mode found later is tightened.
        os.chmod(self.db_path, 0o644)
        self.assert_ok(self.policy("list", umask=0))
        self.assertEqual(stat.S_IMODE(os.stat(self.db_path).st_mode), 0o600)
        # The schema is what the server expects.
        with sqlite3.connect(self.db_path) as db:
            self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 5)
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            self.assertEqual(db.execute("SELECT target, policy FROM policy").fetchall(),
                             [("bob@example.test", "require")])
        db.close()

    def test_not_a_database(self):
        os.makedirs(self.state_dir, mode=0o700)
        junk = b"these are my notes, not a database\n" * 10
        with open(self.db_path, "wb") as f:
            f.write(junk)
        os.chmod(self.db_path, 0o644)
        for args in (("list",), ("set", "bob@example.test", "never"),
                     ("unset", "bob@example.test")):
            with self.subTest(args=args):
                r = self.policy(*args)
                self.assert_one_line_error(r, 1, self.db_path, "not a database")
                self.assertEqual(r.stdout, "")
        with open(self.db_path, "rb") as f:
            self.assertEqual(f.read(), junk, "a foreign file is never written to")
        self.assertEqual(stat.S_IMODE(os.stat(self.db_path).st_mode), 0o644)

    def test_newer_schema_is_refused(self):
        os.makedirs(self.state_dir, mode=0o700)
        db = sqlite3.connect(self.db_path)
        db.execute("CREATE TABLE policy (target TEXT PRIMARY KEY, policy TEXT, updated INTEGER)")
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
        r = self.policy("set", "bob@example.test", "never")
        self.assert_one_line_error(r, 1, self.db_path, "99", "newer")
        db = sqlite3.connect(self.db_path)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 99)
        self.assertEqual(db.execute("SELECT count(*) FROM policy").fetchone()[0], 0)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "delete")
        db.close()

    def test_concurrent_commands_on_a_new_database(self):
        # They race to create and migrate the same new file; every one
        # must succeed and every rule must be there.
        procs = []
        n = 8
        try:
            for i in range(n):
                procs.append(subprocess.Popen(
                    [harness.SEALPOST_BIN, "policy", "set", "user%d@example.test" % i,
                     "require", "--config", self.config_path],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True))
            results = [p.communicate(timeout=30) + (p.returncode,) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for out, err, rc in results:
            self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(x["target"] for x in self.list_json()),
                         sorted("user%d@example.test" % i for i in range(n)))

    def test_reads_while_another_connection_writes(self):
        # A long write transaction elsewhere (as the server logging a
        # decision) does not block listing, thanks to WAL.
        self.assert_ok(self.policy("set", "bob@example.test", "require"))
        db = sqlite3.connect(self.db_path, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO decision (time, account, recipients, decision) "
                       "VALUES (0, 'x', 'y', 'plain')")
            t0 = time.monotonic()
            self.assertEqual([x["target"] for x in self.list_json()], ["bob@example.test"])
            self.assertLess(time.monotonic() - t0, 4)
        finally:
            db.execute("ROLLBACK")
            db.close()


if __name__ == "__main__":
    unittest.main()
