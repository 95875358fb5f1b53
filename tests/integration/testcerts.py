"""The checked-in TLS test certificates (tests/unit/fixtures, INSECURE test
keys only) as the fail-closed tests use them: a test CA and server
certificates that are good (localhost, 127.0.0.1), for another name,
expired (2020), and self-signed. Regenerate with make-fixtures.sh."""
import os

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "unit", "fixtures")


class Certs:
    """Each server certificate is a (cert_path, key_path) pair; ca is the
    test CA's PEM path. directory is accepted for callers that pass a
    scratch folder; nothing is written there."""

    def __init__(self, directory=None):
        def pair(name):
            return (os.path.join(FIXTURES, name + ".crt"),
                    os.path.join(FIXTURES, name + ".key"))
        self.ca = os.path.join(FIXTURES, "test-ca.crt")
        self.good = pair("localhost")
        self.wrongname = pair("wrongname")
        self.expired = pair("expired")
        self.untrusted = pair("untrusted")
