# wkd_server: a Web Key Directory (HTTPS, both methods) and an HKP keyserver
# on loopback for the key discovery tests, run as threads of the test.
"""A WKD server and an HKP keyserver serving keys a test puts in.

    srv = wkd_server.WkdServer(cert, key, host="127.0.0.1", port=443)
    srv.keys["bob@example.org"] = binary_key
    srv.requests                      # [(method, path)] in arrival order
    srv.hang = True                   # accept, read the request, never answer
    srv.close()

    hkp = wkd_server.HkpServer()      # plain HTTP on a free loopback port
    hkp.keys[...] = ...; hkp.port; hkp.close()

wkd_hash() is GnuPG's: the z-base-32 SHA-1 of the lower-cased local part.
The WKD server answers the advanced method
(https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH?l=LOCAL)
and the direct one (https://DOMAIN/.well-known/openpgpkey/hu/HASH), and
the policy files both look for."""
import base64
import hashlib
import http.server
import socketserver
import ssl
import threading
import urllib.parse

ZB32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


def zbase32(data):
    bits = "".join("{:08b}".format(b) for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ZB32[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def wkd_hash(local):
    return zbase32(hashlib.sha1(local.lower().encode()).digest())


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    """What both servers share: the keys, the request log, hanging."""

    def __init__(self, host, port, context):
        self.keys = {}
        self.requests = []
        self.hang = False
        self._lock = threading.Lock()
        self._release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                with owner._lock:
                    owner.requests.append(("GET", self.path))
                if owner.hang:
                    owner._release.wait(120)
                    return
                status, body = owner.answer(self.path, self.headers.get("Host", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server((host, port), Handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def count(self, needle=""):
        with self._lock:
            return sum(1 for _, p in self.requests if needle in p)

    def key_for(self, predicate):
        for addr, data in self.keys.items():
            if predicate(addr):
                return data
        return None

    def close(self):
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class WkdServer(_Base):
    def __init__(self, cert, key, host="127.0.0.1", port=443):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        super().__init__(host, port, ctx)

    def answer(self, path, host):
        u = urllib.parse.urlsplit(path)
        parts = u.path.split("/")
        # ['', '.well-known', 'openpgpkey', (DOMAIN,) 'hu', HASH] or .../policy
        if len(parts) < 4 or parts[1:3] != [".well-known", "openpgpkey"]:
            return 404, b""
        if parts[-1] == "policy":
            return 200, b""
        if len(parts) == 6 and parts[4] == "hu":
            domain, h = parts[3].lower(), parts[5]
        elif len(parts) == 5 and parts[3] == "hu":
            domain, h = host.split(":")[0].lower(), parts[4]
        else:
            return 404, b""
        data = self.key_for(lambda a: a.rsplit("@", 1)[1].lower() == domain and
                            wkd_hash(a.rsplit("@", 1)[0]) == h)
        return (200, data) if data is not None else (404, b"")


class HkpServer(_Base):
    def __init__(self, host="127.0.0.1", port=0):
        super().__init__(host, port, None)

    def answer(self, path, host):
        u = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(u.query)
        if u.path != "/pks/lookup" or q.get("op") != ["get"]:
            return 404, b""
        search = q.get("search", [""])[0].strip("<>=").lower()
        data = self.key_for(lambda a: a.lower() == search)
        if data is None:
            return 404, b""
        return 200, _armor(data)


def _armor(data):
    """data as an armored public key block (HKP servers answer so)."""
    crc = 0xB704CE
    for b in data:
        crc ^= b << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    crc &= 0xFFFFFF
    b64 = base64.b64encode(data).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + "\n".join(lines) + "\n=" +
            base64.b64encode(crc.to_bytes(3, "big")).decode() +
            "\n-----END PGP PUBLIC KEY BLOCK-----\n").encode()
