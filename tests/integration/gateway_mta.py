# gateway_mta: an organisation's MTA for the gateway tests — a private Postfix
# configured from the snippets in docs/gateway.md, delivering to Maildirs.
"""A private Postfix as an organisation's mail server, with sealpost as its
filter, configured with the very snippets docs/gateway.md shows.

    mta = OrgMTA(gateway_port=G)        # Postfix only; sealpost runs apart
    mta.start()
    mta.submit_port     # after-queue: content_filter=sealpost:[127.0.0.1]:G
    mta.before_port     # before-queue: smtpd_proxy_filter=127.0.0.1:G
    mta.reinject_port   # where sealpost re-injects (no filter)
    mta.direct_port     # no filter at all (for comparisons)
    mta.messages("bob@partner.example")   # delivered files, oldest first
    mta.queue()         # [queue ids] still in Postfix's queue
    mta.flush(); mta.set_reinject(False); mta.log_text(); mta.stop()

Every domain the tests send to is delivered locally by Postfix's virtual(8)
into DIR/mail/<address>/new, so "delivered" means: in that Maildir. Bounces
(DSNs) to the internal sender land in its Maildir the same way.
Postfix is stopped by the PID in its pid file, never by name."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import provider as _provider  # noqa: E402

DOCS = os.path.join(harness.SOURCE_DIR, "docs", "gateway.md")
DOC_GATEWAY_PORT = "10025"
DOC_REINJECT_PORT = "10026"

DOMAINS = ("org.test", "partner.example", "sub.partner.example", "lawfirm.example",
           "press.example", "elsewhere.example")


def doc_snippet(name):
    """The text of the fenced block after '<!-- snippet: NAME -->' in
    docs/gateway.md."""
    with open(DOCS) as f:
        text = f.read()
    m = re.search(r"<!-- snippet: %s -->\s*```[a-z]*\n(.*?)```" % re.escape(name), text, re.S)
    if m is None:
        raise AssertionError("docs/gateway.md has no snippet %r" % name)
    return m.group(1)


def master_cf_services(snippet, renames):
    """A master.cf snippet with its service names renamed ({old: new}) and
    the documented ports replaced; comment lines dropped."""
    out = []
    for line in snippet.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if not line[0].isspace():
            name, rest = line.split(None, 1)
            line = renames.get(name, name) + " " + rest
        out.append(line)
    return "\n".join(out) + "\n"


class OrgMTA:
    def __init__(self, gateway_port, users, dir=None, process_limit=200, main_extra=None,
                 master_extra=""):
        """main_extra: main.cf parameters added or replaced; master_extra:
        master.cf lines added (the benchmark's paths)."""
        self.gateway_port = gateway_port
        self.users = list(users)
        self.dir = dir or tempfile.mkdtemp(prefix="spg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.conf_dir = os.path.join(self.dir, "pf")
        self.queue_dir = os.path.join(self.dir, "pfq")
        self.mail_dir = os.path.join(self.dir, "mail")
        self.log_path = os.path.join(self.dir, "postfix.log")
        self.process_limit = process_limit
        self.main_extra = dict(main_extra or {})
        self.master_extra = master_extra
        ports = [_provider.pick_port() for _ in range(4)]
        self.submit_port, self.before_port, self.reinject_port, self.direct_port = ports
        self.reinject_enabled = True
        self.started = False

    # --------------------------------------------------------------- config

    def _main_cf(self):
        import pwd
        mail = pwd.getpwnam("mail")
        D = self.dir
        maps = ", ".join("%s=%s/" % (u, u) for u in self.users)
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": D + "/pfd",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": D,
            "syslog_name": "spg-postfix",
            "myhostname": "mx.org.test",
            "mydomain": "org.test",
            "myorigin": "org.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "relay_domains": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": "104857600",
            "virtual_mailbox_limit": "0",
            "virtual_mailbox_domains": " ".join(DOMAINS),
            "virtual_mailbox_maps": "inline:{ %s }" % maps,
            "virtual_mailbox_base": self.mail_dir,
            "virtual_uid_maps": "static:%d" % mail.pw_uid,
            "virtual_gid_maps": "static:%d" % mail.pw_gid,
            "virtual_minimum_uid": str(mail.pw_uid),
            "virtual_destination_concurrency_limit": "50",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_peername_lookup": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_error_sleep_time": "0",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "default_process_limit": str(self.process_limit),
            "in_flow_delay": "0",
            "default_transport": "error:not delivered by this test MTA",
            "relay_transport": "error:not delivered by this test MTA",
            "local_transport": "error:no local delivery",
            "notify_classes": "",
            "smtp_dns_support_level": "disabled",
            "delay_warning_time": "0",
            # Retries come when the test flushes the queue, not on their own.
            "minimal_backoff_time": "1h",
            "maximal_backoff_time": "2h",
            "queue_run_delay": "1h",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "qmgr_message_active_limit": "20000",
            "smtp_connection_cache_on_demand": "yes",
        }
        params.update(self.main_extra)
        text = "".join("%s = %s\n" % kv for kv in params.items() if kv[1] is not None)
        text += doc_snippet("main.cf after-queue").replace(DOC_GATEWAY_PORT, str(self.gateway_port))
        return text

    def _master_cf(self):
        after = doc_snippet("master.cf after-queue")
        before = doc_snippet("master.cf before-queue")
        gw = str(self.gateway_port)
        rp = str(self.reinject_port)
        services = master_cf_services(after, {
            "submission": "127.0.0.1:%d" % self.submit_port,
            "127.0.0.1:" + DOC_REINJECT_PORT: "127.0.0.1:" + rp,
        })
        services += master_cf_services(before, {"submission": "127.0.0.1:%d" % self.before_port})
        services = services.replace("[127.0.0.1]:" + DOC_GATEWAY_PORT, "[127.0.0.1]:" + gw)
        services = services.replace("127.0.0.1:" + DOC_GATEWAY_PORT, "127.0.0.1:" + gw)
        if not self.reinject_enabled:
            # The next hop is down: its service is gone from master.cf.
            kept, skip = [], False
            for line in services.splitlines():
                if not line[0].isspace():
                    skip = line.startswith("127.0.0.1:%s " % rp)
                if not skip:
                    kept.append(line)
            services = "\n".join(kept) + "\n"
        services += "127.0.0.1:%d inet n - n - - smtpd -o syslog_name=spg-postfix/direct\n" % (
            self.direct_port)
        master = [
            "pickup    unix  n - n 60 1 pickup",
            "cleanup   unix  n - n - 0 cleanup",
            "qmgr      unix  n - n 300 1 qmgr",
            "rewrite   unix  - - n - - trivial-rewrite",
            "bounce    unix  - - n - 0 bounce",
            "defer     unix  - - n - 0 bounce",
            "trace     unix  - - n - 0 bounce",
            "verify    unix  - - n - 1 verify",
            "flush     unix  n - n 1000? 0 flush",
            "proxymap  unix  - - n - - proxymap",
            "smtp      unix  - - n - - smtp",
            "relay     unix  - - n - - smtp",
            "showq     unix  n - n - - showq",
            "error     unix  - - n - - error",
            "retry     unix  - - n - - error",
            "discard   unix  - - n - - discard",
            "virtual   unix  - n n - - virtual",
            "anvil     unix  - - n - 1 anvil",
            "scache    unix  - - n - 1 scache",
            "postlog   unix-dgram n - n - 1 postlogd",
        ]
        return services + self.master_extra + "\n".join(master) + "\n"

    def write_config(self):
        _provider.Provider._write_file(os.path.join(self.conf_dir, "main.cf"), self._main_cf())
        _provider.Provider._write_file(os.path.join(self.conf_dir, "master.cf"),
                                       self._master_cf())

    # ------------------------------------------------------------ lifecycle

    def _make_dirs(self):
        import grp
        import pwd
        pf = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        mail = pwd.getpwnam("mail")

        def mk(path, uid, gid, mode):
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        mk(self.conf_dir, 0, 0, 0o755)
        mk(self.queue_dir, 0, 0, 0o755)
        mk(os.path.join(self.queue_dir, "pid"), 0, 0, 0o755)
        for sub in ("active", "bounce", "corrupt", "defer", "deferred", "flush",
                    "hold", "incoming", "private", "saved", "trace"):
            mk(os.path.join(self.queue_dir, sub), pf.pw_uid, 0, 0o700)
        mk(os.path.join(self.queue_dir, "maildrop"), pf.pw_uid, postdrop, 0o730)
        mk(os.path.join(self.queue_dir, "public"), pf.pw_uid, postdrop, 0o710)
        mk(os.path.join(self.dir, "pfd"), pf.pw_uid, 0, 0o700)
        mk(self.mail_dir, mail.pw_uid, mail.pw_gid, 0o755)

    def master_pid(self):
        pid = _provider._read_pid(os.path.join(self.queue_dir, "pid", "master.pid"))
        if pid is None or not _provider._alive(pid):
            return None
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            return None
        return pid if self.conf_dir in argv else None

    def _postfix(self, *args, check=True):
        r = subprocess.run(["postfix", "-c", self.conf_dir] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("postfix %s: %s" % (" ".join(args), r.stdout.decode()))
        return r.stdout.decode(errors="replace")

    def start(self, timeout=20.0):
        self._make_dirs()
        self.write_config()
        env = dict(os.environ, MAIL_CONFIG=self.conf_dir)
        with open(os.path.join(self.dir, "postfix.out"), "ab") as out:
            pr = subprocess.Popen([_provider.POSTFIX_MASTER, "-c", self.conf_dir, "-w"],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                  start_new_session=True)
            rc = pr.wait(timeout)
        if rc != 0:
            raise RuntimeError("postfix master exited %d\n%s" % (rc, self.log_text()[-3000:]))
        self.started = True
        self.wait_listening()
        return self

    def wait_listening(self, timeout=20.0):
        want = {self.submit_port, self.before_port, self.direct_port}
        if self.reinject_enabled:
            want.add(self.reinject_port)
        deadline = time.monotonic() + timeout
        while True:
            pid = self.master_pid()
            have = _provider.listening_ports([pid]) if pid else set()
            if want <= have and (self.reinject_enabled or self.reinject_port not in have):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("postfix: ports %s not as expected\n%s" % (
                    sorted(want - have), self.log_text()[-3000:]))
            time.sleep(0.02)

    def set_reinject(self, enabled):
        """Takes the re-injection service (sealpost's next hop) out of
        master.cf or puts it back, and has the master reread it (SIGHUP to
        its PID)."""
        self.reinject_enabled = enabled
        self.write_config()
        os.kill(self.master_pid(), signal.SIGHUP)
        self.wait_listening()

    def flush(self):
        subprocess.run(["postqueue", "-c", self.conf_dir, "-f"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def queue(self):
        """Queue IDs of the messages still queued (all queues)."""
        r = subprocess.run(["postqueue", "-c", self.conf_dir, "-j"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
        import json
        out = []
        for line in r.stdout.decode(errors="replace").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def stop(self):
        pid = self.master_pid()
        if pid is not None:
            tree = _provider.process_tree([pid])
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            _provider.terminate_pids(tree, timeout=10)
        self.started = False

    def close(self):
        self.stop()
        if os.environ.get("SEALPOST_KEEP_PROVIDER") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---------------------------------------------------------- inspection

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def messages(self, user):
        """Raw bytes of every message delivered to user, oldest first."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mail_dir, user, sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                p = os.path.join(d, n)
                out.append((os.stat(p).st_mtime_ns, n, p))
        res = []
        for _, _, p in sorted(out):
            with open(p, "rb") as f:
                res.append(f.read())
        return res

    def wait_messages(self, user, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(user)
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError("%s has %d message(s), wanted %d\n%s" % (
                    user, len(msgs), n, self.log_text()[-4000:]))
            time.sleep(0.05)

    def wait_log(self, pattern, timeout=20.0, since=0):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            text = self.log_text()[since:]
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("postfix log never matched %r\n%s" % (
                    pattern, text[-4000:]))
            time.sleep(0.05)


class GatewaySealpost(harness.Sealpost):
    """`sealpost serve` with [sealpost] and the [gateway outbound] section
    of docs/gateway.md (ports replaced, keys added or replaced by gateway;
    a value of None deletes the key) and no account."""

    def __init__(self, gateway_port, reinject_port, gateway=None, global_=None, **kw):
        self.gateway_port = gateway_port
        doc = doc_snippet("sealpost.conf")
        lines = doc.strip().splitlines()
        assert lines[0].startswith("[gateway "), lines[0]
        self.gateway_name = lines[0][len("[gateway "):-1]
        gw = {}
        for line in lines[1:]:
            k, _, v = line.partition("=")
            gw[k.strip()] = v.strip()
        assert gw["listen"] == "127.0.0.1:" + DOC_GATEWAY_PORT, gw
        assert gw["next_hop"] == "127.0.0.1:" + DOC_REINJECT_PORT, gw
        gw["listen"] = "127.0.0.1:%d" % gateway_port
        gw["next_hop"] = "127.0.0.1:%d" % reinject_port
        for k, v in (gateway or {}).items():
            if v is None:
                gw.pop(k, None)
            else:
                gw[k] = v
        self.gateway = gw
        fake = types.SimpleNamespace(hostname="localhost", imap_port=1, submission_port=1,
                                     ca_cert="/dev/null")
        super().__init__(fake, global_=global_, **kw)

    def config_text(self):
        out = ["[sealpost]"]
        out += ["%s = %s" % (k, self._fmt(v)) for k, v in self.global_.items()]
        out += ["", "[gateway %s]" % self.gateway_name]
        out += ["%s = %s" % (k, self._fmt(v)) for k, v in self.gateway.items()]
        return "\n".join(out) + "\n"

    def listen_addresses(self):
        out = [("listen", "127.0.0.1", self.gateway_port)]
        if self.global_.get("api_listen"):
            host, port = harness._listen_port(self.global_["api_listen"])
            out.append(("api_listen", host, port))
        return out

    def metrics(self):
        """GET /metrics on the API: {'name{labels}': value}."""
        import urllib.request
        with open(os.path.join(self.state_dir, "api-token")) as f:
            tok = f.read().strip()
        req = urllib.request.Request("http://%s/metrics" % self.global_["api_listen"],
                                     headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req, timeout=10) as r:
            ctype = r.headers.get("Content-Type", "")
            text = r.read().decode()
        assert ctype.startswith("text/plain"), ctype
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out
