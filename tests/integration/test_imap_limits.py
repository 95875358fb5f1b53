"""IMAP limits: oversize lines and literal announcements from the client
(real provider behind) and from the provider (a fake behind) end the
session with a clear protocol error, other sessions go on, and sealpost's
memory does not grow with what a peer announces or streams."""
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import imap_fake  # noqa: E402

RawClient = imap_fake.RawClient
MAX_LINE = 8192
MAX_LITERAL = 1024 * 1024
RSS_GROWTH_LIMIT_KB = 100 * 1024


def stream_in_background(client, head, total, chunk=b"x" * 65536):
    """Sends head and then total bytes of chunk from a thread (sealpost may
    close in the middle); the caller reads meanwhile."""
    def run():
        try:
            client.send(head)
            sent = 0
            while sent < total:
                client.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class ClientLimits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = harness.Provider()
        cls.p.__enter__()
        cls.s = harness.Sealpost(cls.p, global_={"max_line_length": MAX_LINE,
                                                  "max_literal_size": MAX_LITERAL},
                                 account={"encrypt_append": False})
        cls.s.__enter__()
        cls.user = "alice@example.test"

    @classmethod
    def tearDownClass(cls):
        cls.s.__exit__(None, None, None)
        cls.p.__exit__(None, None, None)

    def logged_in(self, plain=False):
        # The plain leg (loopback) lets a sender and a reader thread share
        # one socket, which an SSL socket does not allow.
        if plain:
            c = RawClient(self.s.imap_port)
        else:
            c = RawClient(self.s.imaps_port, self.s.ssl_context())
        c.readline()
        c.send(b"l LOGIN " + self.user.encode() + b" " +
               self.p.users[self.user].encode() + b"\r\n")
        self.assertTrue(c.until_tagged(b"l")[-1].startswith(b"l OK"))
        c.send(b"s SELECT INBOX\r\n")
        self.assertTrue(c.until_tagged(b"s")[-1].startswith(b"s OK"))
        return c

    def still_works(self, c):
        c.send(b"n NOOP\r\n")
        self.assertTrue(c.until_tagged(b"n")[-1].startswith(b"n OK"))

    def test_line_too_long_after_login(self):
        bystander = self.logged_in()
        c = self.logged_in()
        c.send(b"a SEARCH TEXT " + b"x" * (MAX_LINE * 2) + b"\r\n")
        rest = c.until_closed()
        self.assertIn(b"a BAD Command line too long (limit %d bytes)" % MAX_LINE, rest)
        self.assertIn(b"* BYE Command line too long", rest)
        c.close()
        self.still_works(bystander)
        bystander.close()
        self.assertTrue(imap_fake.wait_for(
            lambda: "client protocol error: line too long" in self.s.log_text()))

    def test_literal_too_large_after_login(self):
        c = self.logged_in()
        c.send(b"a APPEND INBOX {4294967296}\r\n")
        # A synchronizing APPEND literal over the limit is refused before
        # any "+", and the session goes on.
        lines = c.until_tagged(b"a")
        self.assertEqual(lines[-1].rstrip(),
                         b"a NO [TOOBIG] Message too large (limit %d bytes)." % MAX_LITERAL)
        self.assertFalse(any(l.startswith(b"+") for l in lines), lines)
        c.send(b"a2 NOOP\r\n")
        self.assertTrue(c.until_tagged(b"a2")[-1].startswith(b"a2 OK"))
        c.close()
        # Just over the configured limit, non-synchronizing.
        c = self.logged_in()
        c.send(b"b APPEND INBOX {%d+}\r\n" % (MAX_LITERAL + 1))
        rest = c.until_closed()
        self.assertIn(b"b BAD Literal too large", rest)
        c.close()
        # At the limit it passes.
        c = self.logged_in()
        body = b"Subject: at the limit\r\n\r\n" + b"z" * (MAX_LITERAL - 27) + b"\r\n"
        self.assertEqual(len(body), MAX_LITERAL)
        c.send(b"c APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
        self.assertTrue(c.until_tagged(b"c")[-1].startswith(b"c OK"))
        c.close()

    def test_limits_before_login(self):
        for head in (b"a LOGIN {4294967296}\r\n",
                     b"a LOGIN " + b"u" * 20000 + b" pw\r\n",
                     b"a LOGIN {9000}\r\n"):
            with self.subTest(head=head[:20]):
                c = RawClient(self.s.imaps_port, self.s.ssl_context())
                c.readline()
                c.send(head)
                rest = c.until_closed()
                self.assertIn(b"* BYE ", rest)
                self.assertIn(b"before login", rest)
                self.assertNotIn(b"+ ", rest)
                c.close()

    def test_memory_stays_bounded(self):
        bystander = self.logged_in()
        before = self.s.rss_kb()
        for i in range(4):
            # A line that never ends, 32 MB of it.
            c = self.logged_in(plain=True)
            t = stream_in_background(c, b"a SEARCH TEXT ", 32 * 1024 * 1024)
            rest = c.until_closed(timeout=30)
            self.assertIn(b"* BYE Command line too long", rest)
            c.close()
            t.join(30)
            # Announced literals far beyond memory, then data.
            c = self.logged_in(plain=True)
            t = stream_in_background(c, b"b APPEND INBOX {4294967296+}\r\n", 8 * 1024 * 1024)
            rest = c.until_closed(timeout=30)
            self.assertIn(b"* BYE Literal too large", rest)
            c.close()
            t.join(30)
        self.assertTrue(imap_fake.wait_for(
            lambda: self.s.log_text().count("client protocol error") >= 8, timeout=20))
        after = self.s.rss_kb()
        self.assertLess(after - before, RSS_GROWTH_LIMIT_KB,
                        "RSS grew from %d kB to %d kB" % (before, after))
        self.still_works(bystander)
        bystander.close()
        self.assertEqual(imap_fake.sanitizer_report(self.s.log_text()), [])


def huge_line(peer, tag):
    """After login: answer the next command with a line that never ends."""
    peer.readline()
    peer.send(b"* OK ")
    chunk = b"x" * 65536
    for _ in range(800):
        peer.send(chunk)


def huge_literal(peer, tag):
    """After login: announce a 4 GiB literal and start sending it."""
    line = peer.readline()
    peer.send(b"* 1 FETCH (BODY[] {4294967296}\r\n")
    chunk = b"y" * 65536
    for _ in range(800):
        peer.send(chunk)
    peer.send(line.split()[0] + b" OK done\r\n")


def too_large_for_limit(peer, tag):
    """After login: a literal just over the configured limit."""
    line = peer.readline()
    peer.send(b"* 1 FETCH (BODY[] {%d}\r\n" % (MAX_LITERAL + 1))
    peer.send(b"y" * (MAX_LITERAL + 1) + b")\r\n" + line.split()[0] + b" OK done\r\n")


class ProviderLimits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="sp-imaplimits-")
        cls.certs = imap_fake.Certs(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_case(self, behaviour, expect):
        with imap_fake.FakeIMAP(self.certs.good, after_login=behaviour) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca,
                                    global_={"max_line_length": MAX_LINE,
                                             "max_literal_size": MAX_LITERAL}) as s:
                before = s.rss_kb()
                for _ in range(3):
                    c = RawClient(s.imaps_port, s.ssl_context())
                    c.readline()
                    c.send(b"l LOGIN alice@example.test pw\r\n")
                    self.assertTrue(c.until_tagged(b"l")[-1].startswith(b"l OK"))
                    c.send(b"f FETCH 1 (BODY[])\r\n")
                    rest = c.until_closed(timeout=30)
                    self.assertIn(b"* BYE [UNAVAILABLE] The provider sent an invalid response ("
                                  + expect + b").\r\n", rest)
                    # The client never got a partial line before the BYE.
                    self.assertNotIn(b"xxxx", rest)
                    c.close()
                self.assertTrue(imap_fake.wait_for(
                    lambda: s.log_text().count("provider protocol error") >= 3))
                after = s.rss_kb()
                self.assertLess(after - before, RSS_GROWTH_LIMIT_KB)
                # sealpost still serves.
                c = RawClient(s.imaps_port, s.ssl_context())
                c.readline()
                c.send(b"l LOGIN alice@example.test pw\r\n")
                self.assertTrue(c.until_tagged(b"l")[-1].startswith(b"l OK"))
                c.close()
                self.assertEqual(imap_fake.sanitizer_report(s.log_text()), [])

    def login(self, s):
        c = RawClient(s.imaps_port, s.ssl_context())
        c.readline()
        c.send(b"l LOGIN alice@example.test pw\r\n")
        self.assertTrue(c.until_tagged(b"l")[-1].startswith(b"l OK"))
        return c

    def test_provider_reply_timeout(self):
        def silent(peer, tag):
            peer.readline()
            time.sleep(10)

        with imap_fake.FakeIMAP(self.certs.good, after_login=silent) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca,
                                    global_={"command_timeout": 2}) as s:
                c = self.login(s)
                t0 = time.monotonic()
                c.send(b"f FETCH 1 (FLAGS)\r\n")
                rest = c.until_closed(timeout=20)
                elapsed = time.monotonic() - t0
                self.assertIn(b"* BYE [UNAVAILABLE] The provider did not answer in time.", rest)
                self.assertGreater(elapsed, 1.5)
                self.assertLess(elapsed, 8)
                c.close()
                self.assertTrue(imap_fake.wait_for(
                    lambda: "provider did not answer within 2 s" in s.log_text()))

    def test_client_idle_timeout(self):
        def chatter_in_idle(peer, tag):
            line = peer.readline()
            assert line.split()[1] == b"IDLE", line
            peer.send(b"+ idling\r\n")
            for _ in range(60):
                time.sleep(0.2)
                peer.send(b"* OK Still here\r\n")

        with imap_fake.FakeIMAP(self.certs.good, after_login=chatter_in_idle) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca,
                                    global_={"idle_timeout": 2, "command_timeout": 1}) as s:
                # Before login.
                c = RawClient(s.imaps_port, s.ssl_context())
                c.readline()
                t0 = time.monotonic()
                rest = c.until_closed(timeout=20)
                self.assertIn(b"* BYE Idle for too long", rest)
                self.assertLess(time.monotonic() - t0, 8)
                c.close()
                # In IDLE: the provider's chatter is no client activity, and
                # the command timeout does not apply once "+" came.
                c = self.login(s)
                c.send(b"i IDLE\r\n")
                self.assertTrue(c.readline().startswith(b"+ idling"))
                t0 = time.monotonic()
                rest = c.until_closed(timeout=20)
                elapsed = time.monotonic() - t0
                self.assertIn(b"* OK Still here", rest)
                self.assertTrue(rest.endswith(b"* BYE Idle for too long, closing the connection.\r\n"), rest[-200:])
                self.assertGreater(elapsed, 1.5)
                self.assertLess(elapsed, 8)
                c.close()
                self.assertTrue(imap_fake.wait_for(
                    lambda: "client idle for 2 s" in s.log_text()))

    def test_long_provider_line_passes(self):
        # SEARCH results of a big mailbox form one long line: far above
        # max_line_length, and legitimate.
        numbers = b" ".join(b"%d" % i for i in range(1, 60001))

        def long_search(peer, tag):
            line = peer.readline()
            peer.send(b"* SEARCH " + numbers + b"\r\n" + line.split()[0] + b" OK done\r\n")

        with imap_fake.FakeIMAP(self.certs.good, after_login=long_search) as fake:
            with imap_fake.sealpost("imap://localhost:%d" % fake.port, self.certs.ca,
                                    global_={"max_line_length": MAX_LINE}) as s:
                self.assertGreater(len(numbers), 4 * MAX_LINE)
                c = self.login(s)
                c.send(b"s UID SEARCH ALL\r\n")
                lines = c.until_tagged(b"s")
                self.assertEqual(lines[0], b"* SEARCH " + numbers + b"\r\n")
                self.assertTrue(lines[-1].startswith(b"s OK"))
                c.close()

    def test_line_too_long(self):
        self.run_case(huge_line, b"line too long")

    def test_literal_4gib(self):
        self.run_case(huge_literal, b"literal too large")

    def test_literal_over_limit(self):
        self.run_case(too_large_for_limit, b"literal too large")


if __name__ == "__main__":
    unittest.main()
