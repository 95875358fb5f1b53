"""Listener-level behaviour of `sealpost serve`: the session cap, a clean
stop on SIGTERM, the generated certificate, and refusing to start on a
listener it cannot bind. No provider is needed: nothing here logs in."""
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

SEALPOST = os.environ.get("SEALPOST_BIN", "build/proxy/sealpost")


def free_port():
    """Below the ephemeral range and never handed out twice (see harness)."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    return harness.free_port()


def recv_line(sock, timeout=5.0):
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class ServerTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="sp-server-")
        self.ports = {k: free_port() for k in ("imap", "imaps", "smtp", "dead")}
        self.conf = os.path.join(self.dir.name, "sealpost.conf")
        with open(self.conf, "w") as f:
            f.write(f"""[sealpost]
state_dir = {self.dir.name}/state
max_sessions = 2
log_level = debug

[account test]
address = alice@example.test
imap_listen = 127.0.0.1:{self.ports['imap']}
imaps_listen = 127.0.0.1:{self.ports['imaps']}
smtp_listen = 127.0.0.1:{self.ports['smtp']}
imap_upstream = imap://127.0.0.1:{self.ports['dead']}
smtp_upstream = smtp://127.0.0.1:{self.ports['dead']}
""")
        self.log = open(os.path.join(self.dir.name, "stderr.log"), "w+")
        self.proc = subprocess.Popen([SEALPOST, "serve", "--config", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        # Wait for the start line rather than probing the ports: a probe
        # would itself be a session and count against max_sessions.
        deadline = time.monotonic() + 15
        while "starting:" not in self.stderr():
            self.assertIsNone(self.proc.poll(), self.stderr())
            self.assertLess(time.monotonic(), deadline, self.stderr())
            time.sleep(0.05)

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.dir.cleanup()

    def stderr(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def test_session_cap(self):
        held = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", self.ports["imap"]))
            held.append(s)
            self.assertTrue(recv_line(s).startswith(b"* OK"))
        extra = socket.create_connection(("127.0.0.1", self.ports["imap"]))
        self.assertEqual(recv_line(extra), b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n")
        extra.close()
        smtp = socket.create_connection(("127.0.0.1", self.ports["smtp"]))
        self.assertEqual(recv_line(smtp), b"421 4.7.0 Too many connections, try again later.\r\n")
        smtp.close()
        # Closing one session frees its place.
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            s = socket.create_connection(("127.0.0.1", self.ports["smtp"]))
            line = recv_line(s)
            s.close()
            if line.startswith(b"220") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertTrue(line.startswith(b"220"), line)
        for s in held:
            s.close()
        self.assertIn("refusing", self.stderr())

    def test_implicit_tls_and_certificate(self):
        cert = os.path.join(self.dir.name, "state", "tls", "sealpost.crt")
        self.assertTrue(os.path.exists(cert))
        key = os.path.join(self.dir.name, "state", "tls", "sealpost.key")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        ctx = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", self.ports["imaps"])) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                self.assertTrue(recv_line(s).startswith(b"* OK"))
                der = s.getpeercert(binary_form=True)
        out = subprocess.run([SEALPOST, "version", "--cert", "--config", self.conf],
                             capture_output=True, text=True, check=True).stdout
        import hashlib
        fpr = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        self.assertIn("SHA-256 " + fpr, out)

    def test_sigterm_stops_cleanly(self):
        s = socket.create_connection(("127.0.0.1", self.ports["imap"]))
        recv_line(s)
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10), 0, self.stderr())
        s.close()
        err = self.stderr()
        self.assertNotIn("AddressSanitizer", err)
        self.assertNotIn("runtime error", err)
        self.assertIn("stopping", err)

    def test_port_in_use(self):
        conf2 = os.path.join(self.dir.name, "second.conf")
        with open(self.conf) as f, open(conf2, "w") as g:
            g.write(f.read().replace(f"state_dir = {self.dir.name}/state",
                                     f"state_dir = {self.dir.name}/state2"))
        r = subprocess.run([SEALPOST, "serve", "--config", conf2],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"imap_listen: cannot listen on 127.0.0.1:{self.ports['imap']}", r.stderr)


if __name__ == "__main__":
    unittest.main()
