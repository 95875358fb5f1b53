# thunderbird: a real Thunderbird (headless) as a test client — profile
# builder, launcher and a small Marionette client.
"""Real Thunderbird as a test client, headless, with a private HOME and
profile under one temp dir.

    tb = thunderbird.Thunderbird(
        imap=("127.0.0.1", 1993, thunderbird.TLS),
        smtp=("127.0.0.1", 1465, thunderbird.TLS),
        address="alice@example.test", password="...", ca_file=ca_pem,
        addons={"id@x": "/path/to/addon.xpi"})
    with tb:                            # close(): kills its process group, removes the dir
        tb.start()                      # seeds the logins, then starts with the account
        tb.chrome("return Services.appinfo.version;")     # chrome-context script
        tb.chrome_async("resolve(await something());")    # async one
        r = tb.send_message("Bob <bob@example.test>", "Subject", "Body")  # r["msgid"]
        tb.read_offline_store("INBOX")  # PROFILE/ImapMail/HOST/INBOX (mbox)
        tb.display_message(msgid)       # opened in a message tab
        tb.message_display_action("id@x")   # that tab's action button: title, label
        tb.set_addon_storage("id@x", {"key": value})      # its storage.local

Passwords cannot be given by prefs: start() first runs Thunderbird with no
account, stores the logins with Services.logins over Marionette (chrome
context) and quits; then the same profile starts with its accounts. The
password goes to Thunderbird only as a script argument, never in a file
of its own and never in a log line of this module.

Thunderbird's failures hang rather than error (an invisible password
prompt, a send that never resolves): every step here has a hard timeout,
and tests judge by what the servers saw.

Marionette: port 0 in the prefs (Thunderbird picks a free loopback port
and writes it to PROFILE/MarionetteActivePort), framing `LENGTH:JSON`,
commands [0, id, name, params], answers [1, id, error, result]."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (puts tests/provider on sys.path)
import provider as _provider  # noqa: E402

THUNDERBIRD_BIN = os.environ.get("THUNDERBIRD_BIN", "/usr/lib/thunderbird/thunderbird")

# socketType (IMAP) / try_ssl (SMTP) values.
PLAIN, STARTTLS, TLS = 0, 2, 3


class ThunderbirdError(RuntimeError):
    pass


class MarionetteError(ThunderbirdError):
    pass


class WaitTimeout(ThunderbirdError):
    pass


def available():
    """None when Thunderbird and certutil can run here, else why not."""
    if not os.access(THUNDERBIRD_BIN, os.X_OK):
        return "no Thunderbird at %s" % THUNDERBIRD_BIN
    if shutil.which("certutil") is None:
        return "no certutil (libnss3-tools)"
    return None


# ------------------------------------------------------------------ Marionette

class Marionette:
    """A Marionette connection: one command at a time."""

    def __init__(self, port, host="127.0.0.1", timeout=60.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.next_id = 0
        self.hello = self._read(timeout)
        if self.hello.get("marionetteProtocol") != 3:
            raise MarionetteError("unexpected Marionette hello %r" % (self.hello,))

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        while True:
            head, colon, rest = self.buf.partition(b":")
            if colon:
                if not head.isdigit():
                    raise MarionetteError("bad Marionette framing %r" % self.buf[:40])
                n = int(head)
                if len(rest) >= n:
                    self.buf = rest[n:]
                    return json.loads(rest[:n])
            elif len(self.buf) > 20:
                raise MarionetteError("bad Marionette framing %r" % self.buf[:40])
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise MarionetteError("no Marionette answer within %.0fs" % timeout)
            if not chunk:
                raise MarionetteError("Marionette connection closed")
            self.buf += chunk

    def send(self, name, params=None, timeout=60.0):
        """Sends one command and returns its result; raises MarionetteError
        on an error answer or after timeout seconds."""
        self.next_id += 1
        mid = self.next_id
        data = json.dumps([0, mid, name, params or {}]).encode()
        self.sock.sendall(b"%d:" % len(data) + data)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MarionetteError("%s: no answer within %.0fs" % (name, timeout))
            msg = self._read(left)
            if not isinstance(msg, list) or len(msg) != 4 or msg[0] != 1:
                continue
            if msg[1] != mid:
                continue
            if msg[2]:
                err = msg[2]
                raise MarionetteError("%s: %s: %s" % (name, err.get("error"),
                                                      err.get("message")))
            return msg[3]

    def start_chrome_session(self, timeout=60.0):
        """A session (answered once Thunderbird's start is done) in the
        chrome context."""
        self.send("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {
            "moz:webdriverClick": False}}}, timeout=timeout)
        self.send("Marionette:SetContext", {"value": "chrome"})

    def execute(self, script, args=(), timeout=60.0):
        """A chrome-context script (function body; `return` gives the
        result; the arguments are `args`)."""
        self.send("WebDriver:SetTimeouts", {"script": int(timeout * 1000)})
        script = "const args = Array.from(arguments);\n" + script
        r = self.send("WebDriver:ExecuteScript", {"script": script, "args": list(args),
                                                  "newSandbox": True},
                      timeout=timeout + 15)
        return r.get("value") if isinstance(r, dict) else r

    def execute_async(self, script, args=(), timeout=60.0):
        """An async chrome-context script: it gets `resolve(value)` and
        `reject(message)` and the arguments as `args`."""
        wrapped = ("const args = Array.from(arguments).slice(0, -1);\n"
                   "const __done = arguments[arguments.length - 1];\n"
                   "const resolve = v => __done({ok: true, value: v});\n"
                   "const reject = e => __done({ok: false, error: String(e && e.stack ? "
                   "e + '\\n' + e.stack : e)});\n"
                   "(async () => {\n" + script + "\n})().catch(reject);\n")
        self.send("WebDriver:SetTimeouts", {"script": int(timeout * 1000)})
        r = self.send("WebDriver:ExecuteAsyncScript",
                      {"script": wrapped, "args": list(args), "newSandbox": True},
                      timeout=timeout + 15)
        r = r.get("value") if isinstance(r, dict) else r
        if not isinstance(r, dict) or not r.get("ok"):
            raise MarionetteError("script failed: %s" % (r.get("error") if isinstance(r, dict)
                                                         else r,))
        return r.get("value")

    def quit(self, timeout=30.0):
        try:
            self.send("Marionette:Quit", {"flags": ["eAttemptQuit"]}, timeout=timeout)
        except (MarionetteError, OSError):
            pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -------------------------------------------------------------------- profile

def _pref_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


QUIET_PREFS = {
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.disabledForTesting": True,
    "app.update.checkInstallTime": False,
    "extensions.update.enabled": False,
    "extensions.update.autoUpdateDefault": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.autoDisableScopes": 0,
    "extensions.enabledScopes": 15,
    "extensions.startupScanScopes": 15,
    "xpinstall.signatures.required": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.startup.max_resumed_crashes": -1,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.proxy.type": 0,
    "mail.provider.enabled": False,
    "mail.shell.checkDefaultClient": False,
    "mail.rights.override": True,
    "mail.winsearch.firstRunDone": True,
    "mail.spotlight.firstRunDone": True,
    "mail.startup.enabledMailCheckOnce": True,
    "mail.biff.show_alert": False,
    "mail.biff.play_sound": False,
    "mail.cloud_files.enabled": False,
    "mailnews.start_page.enabled": False,
    "mail.tabs.loadInBackground": False,
    "mail.phishing.detection.enabled": False,
    "mail.spam.manualMark": False,
    "mailnews.ui.junk.firstuse": False,
    "mail.compose.big_attachments.notify": False,
    "mail.warn_on_send_accel_key": False,
    "mail.default_send_format": 1,
    "mail.SpellCheckBeforeSend": False,
    "mailnews.send_plaintext_flowed": False,
    "calendar.integration.notify": False,
    "calendar.timezone.useSystemTimezone": True,
    "mail.serverDefaultStoreContractID": "@mozilla.org/msgstore/berkeleystore;1",
    "marionette.port": 0,
    "remote.prefs.recommended": True,
}


class Thunderbird:
    """A profile with one IMAP account (imap=(host, port, socketType)) and
    its SMTP server (smtp=(host, port, try_ssl)), and the Thunderbird run on
    it. ca_file (PEM) is imported into the profile's NSS database as a
    trusted CA; addons {id: xpi path} are installed into the profile.

    Attributes: dir (the temp dir), home, profile, log_path, pid,
    marionette (the connection while running), imap_host."""

    def __init__(self, imap, smtp, address, password, full_name="Test User",
                 ca_file=None, addons=None, extra_prefs=None, moz_log=None):
        err = available()
        if err:
            raise ThunderbirdError(err)
        self.imap_host, self.imap_port, self.imap_socket = imap
        self.smtp_host, self.smtp_port, self.smtp_socket = smtp
        self.address = address
        self._password = password
        self.full_name = full_name
        self.extra_prefs = dict(extra_prefs or {})
        self.moz_log = moz_log
        self.dir = tempfile.mkdtemp(prefix="sptb-")
        os.chmod(self.dir, 0o700)
        self.home = os.path.join(self.dir, "home")
        self.profile = os.path.join(self.dir, "profile")
        self.log_path = os.path.join(self.dir, "thunderbird.log")
        os.makedirs(self.home, mode=0o700)
        os.makedirs(self.profile, mode=0o700)
        self.proc = None
        self.pid = None
        self.marionette = None
        self._log = None
        if ca_file:
            self._certutil("-N", "--empty-password")
            self._certutil("-A", "-n", "sealpost test CA", "-t", "C,,", "-i", ca_file)
        for addon_id, xpi in (addons or {}).items():
            self.install_addon(addon_id, xpi)

    # ---------------------------------------------------------- profile

    def _certutil(self, *args):
        r = subprocess.run(["certutil", "-d", "sql:" + self.profile] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise ThunderbirdError("certutil %s: %s" % (" ".join(args),
                                                        r.stdout.decode(errors="replace")))

    def install_addon(self, addon_id, xpi):
        ext = os.path.join(self.profile, "extensions")
        os.makedirs(ext, exist_ok=True)
        shutil.copyfile(xpi, os.path.join(ext, addon_id + ".xpi"))

    def account_prefs(self):
        """The prefs of the account, its identity and SMTP server."""
        user = self.address
        return {
            "mail.accountmanager.accounts": "account1,account2",
            "mail.accountmanager.defaultaccount": "account1",
            "mail.accountmanager.localfoldersserver": "server2",
            "mail.account.account1.server": "server1",
            "mail.account.account1.identities": "id1",
            "mail.account.account2.server": "server2",
            "mail.server.server1.type": "imap",
            "mail.server.server1.hostname": self.imap_host,
            "mail.server.server1.port": self.imap_port,
            "mail.server.server1.socketType": self.imap_socket,
            "mail.server.server1.authMethod": 3,
            "mail.server.server1.userName": user,
            "mail.server.server1.name": user,
            "mail.server.server1.directory-rel": "[ProfD]ImapMail/" + self.imap_host,
            "mail.server.server1.check_new_mail": True,
            "mail.server.server1.check_time": 1,
            "mail.server.server1.login_at_startup": True,
            "mail.server.server1.offline_download": True,
            "mail.server.server1.autosync_offline_stores": True,
            "mail.server.server1.use_idle": True,
            "mail.server.server1.cleanup_inbox_on_exit": False,
            "mail.server.server1.empty_trash_on_exit": False,
            "mail.server.server2.type": "none",
            "mail.server.server2.hostname": "Local Folders",
            "mail.server.server2.userName": "nobody",
            "mail.server.server2.name": "Local Folders",
            "mail.server.server2.directory-rel": "[ProfD]Mail/Local Folders",
            "mail.identity.id1.fullName": self.full_name,
            "mail.identity.id1.useremail": user,
            "mail.identity.id1.smtpServer": "smtp1",
            "mail.identity.id1.valid": True,
            "mail.identity.id1.fcc": True,
            "mail.identity.id1.fcc_folder_picker_mode": "1",
            "mail.identity.id1.fcc_folder": self.folder_uri("Sent"),
            "mail.identity.id1.draft_folder": self.folder_uri("Drafts"),
            "mail.identity.id1.stationery_folder": self.folder_uri("Templates"),
            "mail.identity.id1.compose_html": False,
            "mail.identity.id1.attach_vcard": False,
            "mail.identity.id1.reply_on_top": 1,
            "mail.smtpservers": "smtp1",
            "mail.smtp.defaultserver": "smtp1",
            "mail.smtpserver.smtp1.type": "smtp",
            "mail.smtpserver.smtp1.hostname": self.smtp_host,
            "mail.smtpserver.smtp1.port": self.smtp_port,
            "mail.smtpserver.smtp1.try_ssl": self.smtp_socket,
            "mail.smtpserver.smtp1.authMethod": 3,
            "mail.smtpserver.smtp1.username": user,
            "mail.smtpserver.smtp1.description": "sealpost",
        }

    def folder_uri(self, name):
        return "imap://%s@%s/%s" % (self.address.replace("@", "%40"), self.imap_host, name)

    def write_prefs(self, with_account):
        prefs = dict(QUIET_PREFS)
        if with_account:
            prefs.update(self.account_prefs())
        prefs.update(self.extra_prefs)
        with open(os.path.join(self.profile, "user.js"), "w") as f:
            for k, v in prefs.items():
                f.write("user_pref(%s, %s);\n" % (json.dumps(k), _pref_value(v)))

    def offline_store(self, folder="INBOX"):
        """Path of Thunderbird's offline copy (mbox) of an IMAP folder."""
        return os.path.join(self.profile, "ImapMail", self.imap_host, folder)

    def read_offline_store(self, folder="INBOX"):
        try:
            with open(self.offline_store(folder), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    # ---------------------------------------------------------- process

    def _launch(self, timeout):
        try:
            os.unlink(os.path.join(self.profile, "MarionetteActivePort"))
        except FileNotFoundError:
            pass
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("MOZ_", "XPCOM_")) or k in ("DISPLAY", "WAYLAND_DISPLAY"):
                del env[k]
        env.update({
            "HOME": self.home,
            "TMPDIR": self.dir,
            "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
            "XDG_CACHE_HOME": os.path.join(self.home, ".cache"),
            "XDG_DATA_HOME": os.path.join(self.home, ".local", "share"),
            "XDG_RUNTIME_DIR": self.dir,
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "MOZ_HEADLESS": "1",
            "MOZ_DISABLE_AUTO_SAFE_MODE": "1",
            "MOZ_NO_REMOTE": "1",
        })
        if self.moz_log:
            env["MOZ_LOG"] = self.moz_log
            env["MOZ_LOG_FILE"] = os.path.join(self.dir, "moz.log")
        self._log = open(self.log_path, "ab")
        self._log.write(b"---- start %f\n" % time.time())
        self._log.flush()
        self.proc = subprocess.Popen(
            [THUNDERBIRD_BIN, "--headless", "--no-remote", "--profile", self.profile,
             "--marionette", "-remote-allow-system-access"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env,
            cwd=self.dir, start_new_session=True)
        self.pid = self.proc.pid
        port_file = os.path.join(self.profile, "MarionetteActivePort")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ThunderbirdError("Thunderbird exited %s at start\n%s" % (
                    self.proc.returncode, self.log_tail()))
            port = None
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text.isdigit():
                    port = int(text)
            except FileNotFoundError:
                pass
            if port:
                try:
                    self.marionette = Marionette(port, timeout=max(5.0, deadline -
                                                                   time.monotonic()))
                    break
                except (OSError, MarionetteError):
                    pass
            if time.monotonic() > deadline:
                raise ThunderbirdError("no Marionette within %.0fs\n%s" % (timeout,
                                                                           self.log_tail()))
            time.sleep(0.1)
        self.marionette.start_chrome_session(timeout=max(10.0, deadline - time.monotonic()))
        # The main window is there and initialised.
        self.wait_for_script(
            "const w = Services.wm.getMostRecentWindow('mail:3pane');"
            "return !!(w && w.document.readyState == 'complete' && w.gTabmail);",
            timeout=max(10.0, deadline - time.monotonic()), what="Thunderbird's main window")

    def start(self, timeout=90.0):
        """Seeds the logins (a first run without the account), then starts
        Thunderbird with the account. Returns self."""
        deadline = time.monotonic() + timeout
        self.write_prefs(with_account=False)
        self._launch(timeout)
        origins = ["imap://" + self.imap_host, "smtp://" + self.smtp_host]
        self.chrome_async("""
            const [user, pw, origins] = args;
            for (const origin of origins) {
              const li = Cc["@mozilla.org/login-manager/loginInfo;1"]
                .createInstance(Ci.nsILoginInfo);
              li.init(origin, null, origin, user, pw, "", "");
              await Services.logins.addLoginAsync(li);
            }
            resolve((await Services.logins.getAllLogins()).length);
        """, [self.address, self._password, origins], timeout=30)
        self.quit(timeout=max(10.0, deadline - time.monotonic()))
        if not os.path.exists(os.path.join(self.profile, "logins.json")):
            raise ThunderbirdError("the first run wrote no logins.json")
        self.write_prefs(with_account=True)
        self._launch(max(20.0, deadline - time.monotonic()))
        return self

    def quit(self, timeout=30.0):
        """Asks Thunderbird to quit and waits; kills it after timeout."""
        if self.proc is None:
            return
        if self.marionette is not None:
            self.marionette.quit(timeout=min(timeout, 15.0))
            self.marionette.close()
            self.marionette = None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self):
        """Kills the process group this object started (by its PID: every
        Thunderbird process is in it) and any descendant that left it;
        waits until all of them are gone."""
        if self.marionette is not None:
            self.marionette.close()
            self.marionette = None
        if self.proc is None:
            return
        tree = harness.process_tree([self.pid])
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        # Descendants outside the group (none expected), then the group's
        # other members, reaped by init: until they are gone.
        _provider.terminate_pids({p: t for p, t in tree.items() if p != self.pid}, timeout=0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._group_alive():
            time.sleep(0.05)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _group_alive(self):
        """Whether a live process is still in the group this object
        started."""
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rpartition(")")[2].split()
                # state ppid pgrp ...
                if int(fields[2]) == self.pid and fields[0] not in ("Z", "X"):
                    return True
            except (OSError, IndexError, ValueError):
                continue
        return False

    def close(self):
        """kill() and remove the temp dir (kept when
        SEALPOST_KEEP_PROVIDER=1)."""
        self.kill()
        if os.environ.get("SEALPOST_KEEP_PROVIDER") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---------------------------------------------------------- scripts

    def chrome(self, script, args=(), timeout=60.0):
        if self.marionette is None:
            raise ThunderbirdError("Thunderbird is not running")
        return self.marionette.execute(script, args, timeout)

    def chrome_async(self, script, args=(), timeout=60.0):
        if self.marionette is None:
            raise ThunderbirdError("Thunderbird is not running")
        return self.marionette.execute_async(script, args, timeout)

    def wait_for_script(self, script, args=(), timeout=60.0, what="condition", interval=0.25):
        """Runs a sync chrome script until it returns something true;
        returns that value."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.chrome(script, args, timeout=max(5.0, deadline - time.monotonic()))
            except MarionetteError as e:
                last = e
            if last and not isinstance(last, Exception):
                return last
            if time.monotonic() > deadline:
                raise WaitTimeout("timed out after %.0fs waiting for %s (last: %r)" % (
                    timeout, what, last))
            time.sleep(interval)

    # ---------------------------------------------------------- mail

    def send_message(self, to, subject, body, timeout=60.0):
        """Composes a plain-text message from the default identity and sends
        it now, through the account's SMTP server, with the identity's Sent
        copy (FCC), using Thunderbird's own send code (nsIMsgSend) without
        a compose window. Returns {"msgid", "events"} once the Sent copy is
        done; raises on a send or copy failure, or after timeout."""
        return self.chrome_async("""
            const [to, subject, body] = args;
            const identity = MailServices.accounts.defaultAccount.defaultIdentity;
            const fields = Cc["@mozilla.org/messengercompose/composefields;1"]
              .createInstance(Ci.nsIMsgCompFields);
            fields.from = MailServices.headerParser.makeMimeAddress(identity.fullName,
                                                                    identity.email);
            fields.to = to;
            fields.subject = subject;
            const events = [];
            let msgid = null;
            const listener = {
              QueryInterface: ChromeUtils.generateQI(["nsIMsgSendListener",
                                                      "nsIMsgCopyServiceListener"]),
              onStartSending() { events.push("start"); },
              onSendProgress() {},
              onStatus() {},
              onStopSending(id, status) {
                msgid = id;
                events.push("sent " + status);
                if (status != 0) reject("sending failed: " + status + " " + events);
              },
              onGetDraftFolderURI() {},
              onSendNotPerformed(id, status) { reject("send not performed: " + status); },
              onTransportSecurityError(id, status, secInfo, location) {
                reject("TLS error " + status + " at " + location);
              },
              onStartCopy() { events.push("copy"); },
              onProgress() {},
              setMessageKey() {},
              getMessageId() { return null; },
              onStopCopy(status) {
                events.push("copied " + status);
                if (status != 0) reject("Sent copy failed: " + status);
                else resolve({msgid, events});
              },
            };
            const send = Cc["@mozilla.org/messengercompose/send;1"]
              .createInstance(Ci.nsIMsgSend);
            await send.createAndSendMessage(null, identity, "", fields, false, false,
              Ci.nsIMsgSend.nsMsgDeliverNow, null, "text/plain", body, null, null,
              listener, null, null, Ci.nsIMsgCompType.New);
        """, [to, subject, body], timeout=timeout)

    def display_message(self, msgid, timeout=60.0):
        """Opens the INBOX message with this Message-ID (no angle brackets)
        in a message tab, waiting for Thunderbird to know it (polling the
        folder) and for about:message to show it. Returns its subject as
        displayed."""
        return self.chrome_async("""
            const [msgid, limit] = args;
            const win = Services.wm.getMostRecentWindow("mail:3pane");
            const sleep = ms => new Promise(r => win.setTimeout(r, ms));
            const inbox = MailServices.accounts.defaultAccount.incomingServer.rootFolder
              .getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
            const end = Date.now() + limit;
            let hdr = null;
            while (!hdr) {
              hdr = [...inbox.messages].find(h => h.messageId == msgid);
              if (!hdr) {
                if (Date.now() > end) throw new Error("no message " + msgid + " in INBOX");
                await sleep(200);
              }
            }
            const tab = win.gTabmail.openTab("mailMessageTab",
              {messageURI: inbox.getUriForMsg(hdr), background: false});
            win.gTabmail.switchToTab(tab);
            for (;;) {
              const am = tab.chromeBrowser && tab.chromeBrowser.contentWindow;
              if (am && am.gMessage && am.gMessage.messageId == msgid &&
                  am.document.readyState == "complete") {
                resolve(am.gMessage.mime2DecodedSubject);
                return;
              }
              if (Date.now() > end) throw new Error("message " + msgid + " not displayed");
              await sleep(100);
            }
        """, [msgid, int(timeout * 1000)], timeout=timeout + 5)

    def message_display_action(self, addon_id):
        """{"title", "label", "hidden", "msgid"} of the add-on's message
        display action button in the about:message of the selected tab
        (None when there is no such button)."""
        return self.chrome("""
            const [widget] = args;
            const win = Services.wm.getMostRecentWindow("mail:3pane");
            const tab = win.gTabmail.currentTabInfo;
            let am = null;
            if (tab.mode.name == "mailMessageTab") am = tab.chromeBrowser.contentWindow;
            else if (tab.mode.name == "mail3PaneTab")
              am = tab.chromeBrowser.contentWindow.messageBrowser.contentWindow;
            if (!am) return null;
            const b = am.document.getElementById(widget + "-messageDisplayAction-toolbarbutton");
            if (!b) return null;
            return {title: b.getAttribute("tooltiptext"), label: b.getAttribute("label"),
                    hidden: b.hidden, msgid: am.gMessage ? am.gMessage.messageId : null};
        """, [widget_id(addon_id)], timeout=30)

    def addon_state(self, addon_id):
        """{"active", "version", "error"} of an installed add-on, or None."""
        return self.chrome_async("""
            const { AddonManager } = ChromeUtils.importESModule(
              "resource://gre/modules/AddonManager.sys.mjs");
            const a = await AddonManager.getAddonByID(args[0]);
            resolve(a ? {active: a.isActive, version: a.version,
                         error: a.appDisabled ? "appDisabled" : null} : null);
        """, [addon_id], timeout=30)

    def set_addon_storage(self, addon_id, items, timeout=30.0):
        """Writes items (JSON values) into the running add-on's
        storage.local, as its own storage.local.set would (IndexedDB
        backend), and tells its storage.onChanged listeners."""
        return self.chrome_async("""
            const [id, items] = args;
            const { ExtensionParent } = ChromeUtils.importESModule(
              "resource://gre/modules/ExtensionParent.sys.mjs");
            const { ExtensionStorageIDB } = ChromeUtils.importESModule(
              "resource://gre/modules/ExtensionStorageIDB.sys.mjs");
            const extension = ExtensionParent.GlobalManager.getExtension(id);
            if (!extension) throw new Error("add-on " + id + " is not running");
            const { backendEnabled } = await ExtensionStorageIDB.selectBackend({extension});
            if (!backendEnabled) throw new Error("storage.local is not on IndexedDB");
            const db = await ExtensionStorageIDB.open(
              ExtensionStorageIDB.getStoragePrincipal(extension));
            const changes = await db.set(JSON.parse(items));
            if (changes) ExtensionStorageIDB.notifyListeners(id, changes);
            resolve(Object.keys(changes || {}));
        """, [addon_id, json.dumps(items)], timeout=timeout)

    # ---------------------------------------------------------- inspection

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=30):
        return "\n".join(self.log_text().splitlines()[-lines:])


def widget_id(addon_id):
    """The id Thunderbird derives from an add-on id for its widgets
    (ExtensionCommon.makeWidgetId)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in addon_id.lower())


def mbox_messages(data):
    """The messages of Thunderbird's mbox offline store, each without its
    separator line (Thunderbird writes "From - DATE")."""
    out = []
    cur = None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From - "):
            if cur is not None:
                out.append(b"".join(cur))
            cur = []
        elif cur is not None:
            cur.append(line)
    if cur is not None:
        out.append(b"".join(cur))
    return out


def find_by_message_id(messages, msgid):
    """The messages whose header block has Message-ID <msgid>."""
    want = b"<" + msgid.encode() + b">"
    out = []
    for m in messages:
        head = m.replace(b"\r\n", b"\n").partition(b"\n\n")[0]
        for line in head.split(b"\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"message-id" and value.strip() == want:
                out.append(m)
                break
    return out


def wait_for(pred, timeout, what, interval=0.2):
    """Polls pred() until it returns something true (returned); raises
    ThunderbirdError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise WaitTimeout("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)
