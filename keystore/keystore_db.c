/* keystore_db: STATE_DIR/sealpost.db through SQLite — the policy rules, the
 * keys' source and acceptance, the decision log, schema migrations, and one
 * handle shared by all threads. */
#include "keystore_db.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEYSTORE_DB_FILE "sealpost.db"
#define KEYSTORE_TARGET_MAX 320
#define KEYSTORE_DB_BUSY_MS 5000
#define KEYSTORE_DECISIONS_KEEP 10000u

/* The longest stored value of each decision field: the log must not become
 * a way to store a message, and a thousand recipients must not bloat it. */
#define KEYSTORE_DECISION_SHORT 998
#define KEYSTORE_DECISION_LONG 8192

/* The handle is shared, so an error string in the handle could be
 * overwritten by another thread before the caller has read it. */
static _Thread_local char keystore_db_error[1024];

struct keystore_db {
	sqlite3 *db;
	char *path;
	/* Serialises use of the prepared statements: SQLite's own mutex covers
	 * one call, not a bind-step-reset sequence, nor sqlite3_errmsg after it. */
	GMutex lock;
	sqlite3_stmt *lookup, *set, *unset, *list, *log, *prune, *recent;
	sqlite3_stmt *key_get, *key_add, *key_accept, *key_forget, *key_list, *data_version;
	sqlite3_stmt *pin_get, *pin_put;
	sqlite3_stmt *peer_get, *peer_put, *peer_count;
	sqlite3_stmt *pending_add, *pending_get_id, *pending_get_fpr, *pending_remove, *pending_list;
	unsigned keep;		/* decisions kept */
	unsigned since_prune;	/* decisions logged since the last pruning */
};

/* Ordered: entry i takes a database from user_version i to i + 1. Never edit
 * a released entry; append a new one. */
static const char *const keystore_db_migrations[] = {
	"CREATE TABLE policy ("
	"  target TEXT PRIMARY KEY"
	"    CHECK (instr(target, '@') > 0 AND target = lower(target)),"
	"  policy TEXT NOT NULL CHECK (policy IN ('require', 'opportunistic', 'never')),"
	"  updated INTEGER NOT NULL"
	");"
	"CREATE TABLE decision ("
	"  id INTEGER PRIMARY KEY,"
	"  time INTEGER NOT NULL,"
	"  account TEXT NOT NULL,"
	"  message_id TEXT,"
	"  recipients TEXT NOT NULL,"
	"  decision TEXT NOT NULL,"
	"  reason TEXT"
	");"
	"CREATE INDEX decision_time ON decision(time);",

	/* Only keys sealpost was told something about have a row; any other
	 * key in the keyring counts as manual and unverified. */
	"CREATE TABLE key_state ("
	"  fingerprint TEXT PRIMARY KEY"
	"    CHECK (length(fingerprint) IN (40, 64) AND fingerprint NOT GLOB '*[^0-9A-F]*'),"
	"  source TEXT NOT NULL CHECK (source IN ('manual', 'autocrypt', 'wkd', 'keyserver')),"
	"  acceptance TEXT NOT NULL CHECK (acceptance IN ('unverified', 'verified', 'rejected')),"
	"  updated INTEGER NOT NULL"
	");",

	/* What decides the bytes of a decrypted view besides the message and
	 * the keyring: the signature status seen first, so that a key
	 * imported later never changes a view a client has cached. */
	"CREATE TABLE view_pin ("
	"  account TEXT NOT NULL,"
	"  mailbox BLOB NOT NULL,"
	"  uidvalidity INTEGER NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),"
	"  uid INTEGER NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),"
	"  signature TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  PRIMARY KEY (account, mailbox, uidvalidity, uid)"
	") WITHOUT ROWID;",

	/* Autocrypt Level 1 peer state per account and canonical address
	 * (timestamps in unix seconds, 0 for never), and the key changes
	 * waiting for the user: a learned key never silently replaces a
	 * verified one. */
	"CREATE TABLE autocrypt_peer ("
	"  account TEXT NOT NULL,"
	"  addr TEXT NOT NULL CHECK (instr(addr, '@') > 0),"
	"  last_seen INTEGER NOT NULL DEFAULT 0,"
	"  autocrypt_timestamp INTEGER NOT NULL DEFAULT 0,"
	"  public_key BLOB,"
	"  public_key_fpr TEXT,"
	"  prefer_encrypt TEXT NOT NULL DEFAULT 'nopreference'"
	"    CHECK (prefer_encrypt IN ('nopreference', 'mutual')),"
	"  gossip_timestamp INTEGER NOT NULL DEFAULT 0,"
	"  gossip_key BLOB,"
	"  gossip_key_fpr TEXT,"
	"  updated INTEGER NOT NULL,"
	"  PRIMARY KEY (account, addr)"
	") WITHOUT ROWID;"
	"CREATE TABLE pending_key ("
	"  id INTEGER PRIMARY KEY,"
	"  account TEXT NOT NULL,"
	"  addr TEXT NOT NULL,"
	"  old_fingerprint TEXT NOT NULL,"
	"  new_fingerprint TEXT NOT NULL"
	"    CHECK (length(new_fingerprint) IN (40, 64) AND new_fingerprint NOT GLOB '*[^0-9A-F]*'),"
	"  keydata BLOB NOT NULL,"
	"  source TEXT NOT NULL CHECK (source IN ('autocrypt', 'wkd', 'keyserver')),"
	"  created INTEGER NOT NULL,"
	"  UNIQUE (addr, new_fingerprint)"
	");",

	/* Key discovery (WKD, keyserver): the last lookup per address, so
	 * that a miss is not asked again for a while and a hit is checked
	 * again only now and then. */
	"CREATE TABLE key_discovery ("
	"  addr TEXT PRIMARY KEY CHECK (instr(addr, '@') > 0),"
	"  checked INTEGER NOT NULL,"
	"  result TEXT NOT NULL CHECK (result IN ('found', 'none', 'error')),"
	"  method TEXT CHECK (method IN ('wkd', 'keyserver')),"
	"  fingerprint TEXT,"
	"  detail TEXT"
	") WITHOUT ROWID;",
};
#define KEYSTORE_DB_VERSION ((int)G_N_ELEMENTS(keystore_db_migrations))

G_GNUC_PRINTF(1, 2)
static const char *keystore_db_errorf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(keystore_db_error, sizeof(keystore_db_error), fmt, ap);
	va_end(ap);
	/* One line, whatever a path or SQLite put in it. */
	for (char *p = keystore_db_error; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
	return keystore_db_error;
}

/* "PATH: what SQLite said" — call with db->lock held once shared. */
static const char *keystore_db_sqlite_error(const keystore_db *db, const char *what)
{
	int code = sqlite3_errcode(db->db);
	if (code == SQLITE_NOTADB)
		return keystore_db_errorf("%s: file is not a database (move it aside to start "
					  "with an empty one)", db->path);
	if (what != NULL)
		return keystore_db_errorf("%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
	return keystore_db_errorf("%s: %s", db->path, sqlite3_errmsg(db->db));
}

const char *keystore_policy_name(keystore_policy p)
{
	switch (p) {
	case KEYSTORE_POLICY_REQUIRE:
		return "require";
	case KEYSTORE_POLICY_OPPORTUNISTIC:
		return "opportunistic";
	case KEYSTORE_POLICY_NEVER:
		return "never";
	case KEYSTORE_POLICY_NONE:
		break;
	}
	return "none";
}

int keystore_policy_parse(const char *text, keystore_policy *p_r)
{
	static const keystore_policy all[] = {
		KEYSTORE_POLICY_REQUIRE, KEYSTORE_POLICY_OPPORTUNISTIC, KEYSTORE_POLICY_NEVER,
	};
	if (text == NULL)
		return -1;
	for (size_t i = 0; i < G_N_ELEMENTS(all); i++) {
		if (g_ascii_strcasecmp(text, keystore_policy_name(all[i])) == 0) {
			*p_r = all[i];
			return 0;
		}
	}
	return -1;
}

/* Characters RFC 5322 lets an address hold only inside quotes; a rule for
 * a quoted local part is not worth the ambiguity. */
static bool keystore_target_special(char c)
{
	return strchr("()<>[]:;\\,\"", c) != NULL;
}

static int keystore_target_check_domain(const char *d, const char **error_r)
{
	size_t len = strlen(d);
	if (len == 0) {
		*error_r = "empty domain (expected user@domain or @domain)";
		return -1;
	}
	if (d[0] == '[') {
		/* An address literal: [192.0.2.1] or [IPv6:2001:db8::1]. */
		if (len < 3 || d[len - 1] != ']') {
			*error_r = "malformed domain literal (expected [address])";
			return -1;
		}
		for (size_t i = 1; i < len - 1; i++) {
			if (!g_ascii_isalnum(d[i]) && d[i] != '.' && d[i] != ':') {
				*error_r = "malformed domain literal (expected [address])";
				return -1;
			}
		}
		return 0;
	}
	bool label_empty = true;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label_empty) {
				*error_r = "empty label in the domain (a leading, trailing or double '.')";
				return -1;
			}
			label_empty = true;
			continue;
		}
		/* Bytes >= 0x80 are an internationalised name in UTF-8. */
		if (!g_ascii_isalnum(c) && c != '-' && c != '_' && c < 0x80) {
			*error_r = "the domain may hold only letters, digits, '-', '_' and '.'";
			return -1;
		}
		label_empty = false;
	}
	if (label_empty) {
		*error_r = "empty label in the domain (a leading, trailing or double '.')";
		return -1;
	}
	return 0;
}

int keystore_policy_target_normalise(const char *target, char *out, size_t size,
				     const char **error_r)
{
	if (target == NULL || target[0] == '\0') {
		*error_r = "empty (expected user@domain or @domain)";
		return -1;
	}
	size_t len = strlen(target);
	if (len > KEYSTORE_TARGET_MAX) {
		*error_r = "longer than 320 bytes";
		return -1;
	}
	if (size < len + 1) {
		*error_r = "no room for the normalised target";
		return -1;
	}
	const char *at = NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)target[i];
		if (c < 0x20 || c == 0x7f) {
			*error_r = "contains a control character";
			return -1;
		}
		if (c == ' ') {
			*error_r = "contains a space";
			return -1;
		}
		if (c == '@') {
			if (at != NULL) {
				*error_r = "more than one '@' (expected user@domain or @domain)";
				return -1;
			}
			at = target + i;
		}
	}
	if (at == NULL) {
		*error_r = "no '@' (expected user@domain or @domain)";
		return -1;
	}
	if (!g_utf8_validate(target, (gssize)len, NULL)) {
		*error_r = "not valid UTF-8";
		return -1;
	}
	for (const char *p = target; p < at; p++) {
		if (keystore_target_special(*p)) {
			*error_r = "the local part holds a character an address cannot hold "
				   "unquoted: ( ) < > [ ] : ; \\ , \"";
			return -1;
		}
	}
	if (keystore_target_check_domain(at + 1, error_r) < 0)
		return -1;
	for (size_t i = 0; i <= len; i++)
		out[i] = g_ascii_tolower(target[i]);
	return 0;
}

/* Runs sql that answers no rows: while opening, before the handle is
 * shared, or with db->lock held. */
static int keystore_db_exec(keystore_db *db, const char *sql, const char *what,
			    const char **error_r)
{
	if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		*error_r = keystore_db_sqlite_error(db, what);
		return -1;
	}
	return 0;
}

/* The integer a one-row, one-column PRAGMA or SELECT answers. */
static int keystore_db_query_int(keystore_db *db, const char *sql, int *value_r,
				 const char **error_r)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		sqlite3_finalize(st);
		return -1;
	}
	*value_r = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return 0;
}

static int keystore_db_set_wal(keystore_db *db, const char **error_r)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
	gint64 deadline = g_get_monotonic_time() + KEYSTORE_DB_BUSY_MS * (gint64)1000;
	while (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		/* Switching a new database to WAL needs an exclusive lock, and
		 * SQLite answers BUSY at once, without its busy handler, when
		 * another process opening it at the same moment holds a shared
		 * one: wait here as the busy timeout would. */
		if ((rc & 0xff) != SQLITE_BUSY || g_get_monotonic_time() > deadline)
			break;
		sqlite3_reset(st);
		g_usleep(10 * 1000);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_ROW) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		sqlite3_finalize(st);
		return -1;
	}
	const char *mode = (const char *)sqlite3_column_text(st, 0);
	/* The server reads rules while the command line writes them: without
	 * WAL one would stall the other. */
	if (mode == NULL || g_ascii_strcasecmp(mode, "wal") != 0) {
		*error_r = keystore_db_errorf("%s: cannot use write-ahead logging (journal mode "
					      "stays '%s'); is the file system local?",
					      db->path, mode != NULL ? mode : "?");
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

static const char *keystore_db_newer(const keystore_db *db, int version)
{
	return keystore_db_errorf("%s: schema version %d is newer than this sealpost knows "
				  "(%d); use the sealpost that wrote it or a newer one",
				  db->path, version, KEYSTORE_DB_VERSION);
}

static int keystore_db_migrate(keystore_db *db, const char **error_r)
{
	int version;
	if (keystore_db_query_int(db, "PRAGMA user_version", &version, error_r) < 0)
		return -1;
	if (version > KEYSTORE_DB_VERSION) {
		*error_r = keystore_db_newer(db, version);
		return -1;
	}
	while (version < KEYSTORE_DB_VERSION) {
		/* IMMEDIATE: the server and the command line may open a new
		 * database at the same moment; the version is read again under
		 * the write lock so that only one of them migrates. */
		if (keystore_db_exec(db, "BEGIN IMMEDIATE", "cannot start the schema migration",
				     error_r) < 0)
			return -1;
		if (keystore_db_query_int(db, "PRAGMA user_version", &version, error_r) < 0)
			goto rollback;
		if (version > KEYSTORE_DB_VERSION) {
			*error_r = keystore_db_newer(db, version);
			goto rollback;
		}
		if (version == KEYSTORE_DB_VERSION)
			return keystore_db_exec(db, "COMMIT", NULL, error_r);
		char what[64], set_version[64];
		snprintf(what, sizeof(what), "cannot migrate the schema to version %d", version + 1);
		snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %d", version + 1);
		if (keystore_db_exec(db, keystore_db_migrations[version], what, error_r) < 0 ||
		    keystore_db_exec(db, set_version, what, error_r) < 0 ||
		    keystore_db_exec(db, "COMMIT", what, error_r) < 0)
			goto rollback;
		version++;
	}
	return 0;
rollback:
	sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int keystore_db_prepare(keystore_db *db, const char **error_r)
{
	static const struct {
		size_t off;
		const char *sql;
	} stmts[] = {
		{ offsetof(keystore_db, lookup),
		  /* ?1 the address (or NULL), ?2 "@domain" (or NULL): the
		   * address wins. */
		  "SELECT target, policy FROM policy WHERE target IN (?1, ?2) "
		  "ORDER BY target IS ?1 DESC LIMIT 1" },
		{ offsetof(keystore_db, set),
		  "INSERT INTO policy (target, policy, updated) VALUES (?1, ?2, ?3) "
		  "ON CONFLICT (target) DO UPDATE SET policy = excluded.policy, "
		  "updated = excluded.updated" },
		{ offsetof(keystore_db, unset), "DELETE FROM policy WHERE target = ?1" },
		{ offsetof(keystore_db, list),
		  "SELECT target, policy, updated FROM policy ORDER BY target" },
		{ offsetof(keystore_db, log),
		  "INSERT INTO decision (time, account, message_id, recipients, decision, reason) "
		  "VALUES (?1, ?2, ?3, ?4, ?5, ?6)" },
		{ offsetof(keystore_db, prune),
		  "DELETE FROM decision WHERE id <= "
		  "(SELECT id FROM decision ORDER BY id DESC LIMIT 1 OFFSET ?1)" },
		{ offsetof(keystore_db, recent),
		  "SELECT id, time, account, message_id, recipients, decision, reason "
		  "FROM decision ORDER BY id DESC LIMIT ?1" },
		{ offsetof(keystore_db, key_get),
		  "SELECT source, acceptance, updated FROM key_state WHERE fingerprint = ?1" },
		{ offsetof(keystore_db, key_add),
		  "INSERT INTO key_state (fingerprint, source, acceptance, updated) "
		  "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (fingerprint) DO NOTHING" },
		{ offsetof(keystore_db, key_accept),
		  "INSERT INTO key_state (fingerprint, source, acceptance, updated) "
		  "VALUES (?1, 'manual', ?2, ?3) ON CONFLICT (fingerprint) DO UPDATE SET "
		  "acceptance = excluded.acceptance, updated = excluded.updated" },
		{ offsetof(keystore_db, key_forget), "DELETE FROM key_state WHERE fingerprint = ?1" },
		{ offsetof(keystore_db, key_list),
		  "SELECT fingerprint, source, acceptance, updated FROM key_state "
		  "ORDER BY fingerprint" },
		{ offsetof(keystore_db, data_version), "PRAGMA data_version" },
		{ offsetof(keystore_db, pin_get),
		  "SELECT signature FROM view_pin WHERE account = ?1 AND mailbox = ?2 "
		  "AND uidvalidity = ?3 AND uid = ?4" },
		{ offsetof(keystore_db, pin_put),
		  "INSERT INTO view_pin (account, mailbox, uidvalidity, uid, signature, created) "
		  "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING" },
		{ offsetof(keystore_db, peer_get),
		  "SELECT account, addr, last_seen, autocrypt_timestamp, public_key, public_key_fpr, "
		  "prefer_encrypt, gossip_timestamp, gossip_key, gossip_key_fpr, updated "
		  "FROM autocrypt_peer WHERE account = ?1 AND addr = ?2" },
		{ offsetof(keystore_db, peer_put),
		  "INSERT OR REPLACE INTO autocrypt_peer (account, addr, last_seen, "
		  "autocrypt_timestamp, public_key, public_key_fpr, prefer_encrypt, "
		  "gossip_timestamp, gossip_key, gossip_key_fpr, updated) "
		  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)" },
		{ offsetof(keystore_db, peer_count),
		  "SELECT count(*), count(public_key) FROM autocrypt_peer" },
		{ offsetof(keystore_db, pending_add),
		  "INSERT INTO pending_key (account, addr, old_fingerprint, new_fingerprint, keydata, "
		  "source, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
		  "ON CONFLICT (addr, new_fingerprint) DO UPDATE SET account = excluded.account, "
		  "old_fingerprint = excluded.old_fingerprint, keydata = excluded.keydata, "
		  "source = excluded.source, created = excluded.created RETURNING id" },
		{ offsetof(keystore_db, pending_get_id),
		  "SELECT id, account, addr, old_fingerprint, new_fingerprint, keydata, source, created "
		  "FROM pending_key WHERE id = ?1" },
		{ offsetof(keystore_db, pending_get_fpr),
		  "SELECT id, account, addr, old_fingerprint, new_fingerprint, keydata, source, created "
		  "FROM pending_key WHERE new_fingerprint = ?1 ORDER BY id LIMIT 1" },
		{ offsetof(keystore_db, pending_remove), "DELETE FROM pending_key WHERE id = ?1" },
		{ offsetof(keystore_db, pending_list),
		  "SELECT id, account, addr, old_fingerprint, new_fingerprint, keydata, source, created "
		  "FROM pending_key ORDER BY id" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(stmts); i++) {
		sqlite3_stmt **st = (sqlite3_stmt **)((char *)db + stmts[i].off);
		if (sqlite3_prepare_v3(db->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
				       st, NULL) != SQLITE_OK) {
			*error_r = keystore_db_sqlite_error(db, "cannot prepare a statement");
			return -1;
		}
	}
	return 0;
}

/* Creates the file itself so that its mode is 0600 from the first byte;
 * SQLite gives its -wal and -shm files the same mode. An existing file is
 * never opened here: closing any descriptor of a file drops every POSIX
 * lock the process holds on it — those of another keystore_db open in this
 * process too (the server's and the API's). SQLite would go on as if it
 * held them, and another process closing the database last would take
 * itself for the only user and delete the live WAL. */
static int keystore_db_create_file(const char *path, const char **error_r)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
	if (fd >= 0) {
		close(fd);	/* a new file: nobody holds a lock on it yet */
		return 0;
	}
	if (errno != EEXIST) {
		*error_r = keystore_db_errorf("%s: cannot create: %s", path, strerror(errno));
		return -1;
	}
	GStatBuf st;
	if (g_stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = keystore_db_errorf("%s: not a regular file", path);
		return -1;
	}
	return 0;
}

/* Policy rules say whom the user writes to: nobody else's business, even
 * when an older copy of the file was made readable. */
static int keystore_db_restrict(const char *path, const char **error_r)
{
	GStatBuf st;
	if (g_stat(path, &st) < 0) {
		*error_r = keystore_db_errorf("%s: cannot stat: %s", path, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 077) != 0 && g_chmod(path, st.st_mode & 0700) < 0) {
		*error_r = keystore_db_errorf("%s: cannot restrict its mode to 0600: %s",
					      path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Nothing is changed in a file before it is known to be a database whose
 * schema this sealpost understands. */
static int keystore_db_check_file(keystore_db *db, const char **error_r)
{
	int n, version;
	if (keystore_db_query_int(db, "SELECT count(*) FROM sqlite_schema", &n, error_r) < 0 ||
	    keystore_db_query_int(db, "PRAGMA user_version", &version, error_r) < 0)
		return -1;
	if (version > KEYSTORE_DB_VERSION) {
		*error_r = keystore_db_newer(db, version);
		return -1;
	}
	return 0;
}

keystore_db *keystore_db_open(const char *state_dir, const char **error_r)
{
	if (sqlite3_threadsafe() == 0) {
		*error_r = "SQLite was built without thread support";
		return NULL;
	}
	if (g_mkdir_with_parents(state_dir, 0700) < 0) {
		*error_r = keystore_db_errorf("cannot create state_dir %s: %s", state_dir,
					      strerror(errno));
		return NULL;
	}
	keystore_db *db = g_new0(keystore_db, 1);
	g_mutex_init(&db->lock);
	db->path = g_build_filename(state_dir, KEYSTORE_DB_FILE, NULL);
	db->keep = KEYSTORE_DECISIONS_KEEP;
	if (keystore_db_create_file(db->path, error_r) < 0)
		goto fail;
	int rc = sqlite3_open_v2(db->path, &db->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (db->db != NULL)
			*error_r = keystore_db_sqlite_error(db, NULL);
		else
			*error_r = keystore_db_errorf("%s: %s", db->path, sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_extended_result_codes(db->db, 1);
	sqlite3_busy_timeout(db->db, KEYSTORE_DB_BUSY_MS);
	if (keystore_db_check_file(db, error_r) < 0 ||
	    keystore_db_restrict(db->path, error_r) < 0 ||
	    keystore_db_set_wal(db, error_r) < 0 ||
	    keystore_db_exec(db, "PRAGMA synchronous = FULL", NULL, error_r) < 0 ||
	    keystore_db_exec(db, "PRAGMA foreign_keys = ON", NULL, error_r) < 0 ||
	    keystore_db_migrate(db, error_r) < 0 ||
	    keystore_db_prepare(db, error_r) < 0)
		goto fail;
	return db;
fail:
	keystore_db_close(&db);
	return NULL;
}

int keystore_db_set_durable(keystore_db *db, bool durable, const char **error_r)
{
	return keystore_db_exec(db, durable ? "PRAGMA synchronous = FULL" :
				"PRAGMA synchronous = NORMAL", NULL, error_r);
}

void keystore_db_close(keystore_db **dbp)
{
	keystore_db *db = *dbp;
	if (db == NULL)
		return;
	sqlite3_stmt *stmts[] = {
		db->lookup, db->set, db->unset, db->list, db->log, db->prune, db->recent,
		db->key_get, db->key_add, db->key_accept, db->key_forget, db->key_list,
		db->data_version, db->pin_get, db->pin_put,
		db->peer_get, db->peer_put, db->peer_count,
		db->pending_add, db->pending_get_id, db->pending_get_fpr, db->pending_remove,
		db->pending_list,
	};
	for (size_t i = 0; i < G_N_ELEMENTS(stmts); i++)
		sqlite3_finalize(stmts[i]);
	sqlite3_close(db->db);
	g_mutex_clear(&db->lock);
	g_free(db->path);
	g_free(db);
	*dbp = NULL;
}

int keystore_db_schema_version(keystore_db *db)
{
	int version;
	const char *error;
	g_mutex_lock(&db->lock);
	if (keystore_db_query_int(db, "PRAGMA user_version", &version, &error) < 0)
		version = -1;
	g_mutex_unlock(&db->lock);
	return version;
}

void keystore_db_set_decision_limit(keystore_db *db, unsigned keep)
{
	g_mutex_lock(&db->lock);
	db->keep = keep > 0 ? keep : 1;
	/* Takes effect with the next decision. */
	db->since_prune = db->keep;
	g_mutex_unlock(&db->lock);
}

/* Leaves the statement ready for its next use: an unreset statement would
 * hold a read transaction open, and the server would stop seeing new rules. */
static void keystore_db_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static void keystore_lower_copy(char *out, const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		out[i] = g_ascii_tolower(in[i]);
	out[len] = '\0';
}

int keystore_policy_lookup(keystore_db *db, const char *address,
			   keystore_policy *policy_r, char *matched_r,
			   size_t matched_size, const char **error_r)
{
	char exact[KEYSTORE_TARGET_MAX + 1], domain[KEYSTORE_TARGET_MAX + 1];
	bool have_exact = false, have_domain = false;
	*policy_r = KEYSTORE_POLICY_NONE;
	if (matched_r != NULL && matched_size > 0)
		matched_r[0] = '\0';
	/* Not validated: anything that cannot be a rule's target simply
	 * matches nothing, and the domain may still have a rule. */
	const char *at = strrchr(address, '@');
	size_t len = strlen(address);
	if (at != NULL && len <= KEYSTORE_TARGET_MAX) {
		keystore_lower_copy(exact, address, len);
		have_exact = true;
	}
	if (at != NULL && at[1] != '\0' && strlen(at) <= KEYSTORE_TARGET_MAX) {
		keystore_lower_copy(domain, at, strlen(at));
		have_domain = true;
	}
	if (!have_exact && !have_domain)
		return 0;

	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->lookup;
	if (have_exact)
		sqlite3_bind_text(st, 1, exact, -1, SQLITE_STATIC);
	if (have_domain)
		sqlite3_bind_text(st, 2, domain, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *target = (const char *)sqlite3_column_text(st, 0);
		const char *policy = (const char *)sqlite3_column_text(st, 1);
		if (keystore_policy_parse(policy, policy_r) < 0) {
			*error_r = keystore_db_errorf("%s: unknown policy for %s", db->path,
						      target != NULL ? target : "?");
			*policy_r = KEYSTORE_POLICY_NONE;
			ret = -1;
		} else if (matched_r != NULL && target != NULL) {
			g_strlcpy(matched_r, target, matched_size);
		}
	} else if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_policy_set(keystore_db *db, const char *target, keystore_policy p,
			const char **error_r)
{
	char norm[KEYSTORE_TARGET_MAX + 1];
	const char *why;
	if (keystore_policy_target_normalise(target, norm, sizeof(norm), &why) < 0) {
		*error_r = keystore_db_errorf("invalid target: %s", why);
		return -1;
	}
	if (p != KEYSTORE_POLICY_REQUIRE && p != KEYSTORE_POLICY_OPPORTUNISTIC &&
	    p != KEYSTORE_POLICY_NEVER) {
		*error_r = "invalid policy: expected require, opportunistic or never";
		return -1;
	}
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->set;
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, keystore_policy_name(p), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_policy_unset(keystore_db *db, const char *target, bool *existed_r,
			  const char **error_r)
{
	char norm[KEYSTORE_TARGET_MAX + 1];
	const char *why;
	*existed_r = false;
	if (keystore_policy_target_normalise(target, norm, sizeof(norm), &why) < 0) {
		*error_r = keystore_db_errorf("invalid target: %s", why);
		return -1;
	}
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->unset;
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	} else {
		*existed_r = sqlite3_changes(db->db) > 0;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

typedef struct {
	char *target;
	keystore_policy policy;
	int64_t updated;
} keystore_rule_copy;

static void keystore_rule_copy_clear(void *p)
{
	g_free(((keystore_rule_copy *)p)->target);
}

int keystore_policy_list(keystore_db *db,
			 int (*fn)(void *ctx, const keystore_policy_rule *rule),
			 void *ctx, const char **error_r)
{
	/* Rows are copied out first, so that fn runs without the lock and may
	 * use the database itself. */
	GArray *rules = g_array_new(FALSE, FALSE, sizeof(keystore_rule_copy));
	g_array_set_clear_func(rules, keystore_rule_copy_clear);
	int ret = 0, rc;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->list;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		keystore_rule_copy r = {
			.target = g_strdup((const char *)sqlite3_column_text(st, 0)),
			.updated = sqlite3_column_int64(st, 2),
		};
		if (r.target == NULL ||
		    keystore_policy_parse((const char *)sqlite3_column_text(st, 1), &r.policy) < 0) {
			*error_r = keystore_db_errorf("%s: a policy rule is damaged", db->path);
			g_free(r.target);
			ret = -1;
			break;
		}
		g_array_append_val(rules, r);
	}
	if (ret == 0 && rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	for (guint i = 0; ret == 0 && i < rules->len; i++) {
		const keystore_rule_copy *r = &g_array_index(rules, keystore_rule_copy, i);
		const keystore_policy_rule rule = {
			.target = r->target, .policy = r->policy, .updated = r->updated,
		};
		if (fn(ctx, &rule) != 0)
			break;
	}
	g_array_free(rules, TRUE);
	return ret;
}

/* Binds at most cap bytes of s, cut at a UTF-8 character boundary. */
static void keystore_db_bind_capped(sqlite3_stmt *st, int i, const char *s, size_t cap)
{
	if (s == NULL) {
		sqlite3_bind_null(st, i);
		return;
	}
	size_t n = strlen(s);
	if (n > cap) {
		n = cap;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	sqlite3_bind_text(st, i, s, (int)n, SQLITE_STATIC);
}

int keystore_db_log_decision(keystore_db *db, const keystore_decision *d,
			     const char **error_r)
{
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->log;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL));
	keystore_db_bind_capped(st, 2, d->account != NULL ? d->account : "",
				KEYSTORE_DECISION_SHORT);
	keystore_db_bind_capped(st, 3, d->message_id, KEYSTORE_DECISION_SHORT);
	keystore_db_bind_capped(st, 4, d->recipients != NULL ? d->recipients : "",
				KEYSTORE_DECISION_LONG);
	keystore_db_bind_capped(st, 5, d->decision != NULL ? d->decision : "",
				KEYSTORE_DECISION_SHORT);
	keystore_db_bind_capped(st, 6, d->reason, KEYSTORE_DECISION_SHORT);
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	/* Pruning every time would cost a second write per message; every
	 * keep/64 decisions bounds the table to keep + keep/64 rows. */
	unsigned every = db->keep / 64 > 0 ? db->keep / 64 : 1;
	if (ret == 0 && ++db->since_prune >= every) {
		st = db->prune;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)db->keep);
		/* A failed pruning is retried with the next decision; the
		 * decision itself is logged. */
		if (sqlite3_step(st) == SQLITE_DONE)
			db->since_prune = 0;
		keystore_db_done(st);
	}
	g_mutex_unlock(&db->lock);
	return ret;
}

typedef struct {
	int64_t id, time;
	char *account, *message_id, *recipients, *decision, *reason;
} keystore_decision_copy;

static void keystore_decision_copy_clear(void *p)
{
	keystore_decision_copy *c = p;
	g_free(c->account);
	g_free(c->message_id);
	g_free(c->recipients);
	g_free(c->decision);
	g_free(c->reason);
}

int keystore_db_recent_decisions(keystore_db *db, unsigned limit,
				 int (*fn)(void *ctx, const keystore_decision_row *row),
				 void *ctx, const char **error_r)
{
	GArray *rows = g_array_new(FALSE, FALSE, sizeof(keystore_decision_copy));
	g_array_set_clear_func(rows, keystore_decision_copy_clear);
	int ret = 0, rc;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->recent;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		keystore_decision_copy c = {
			.id = sqlite3_column_int64(st, 0),
			.time = sqlite3_column_int64(st, 1),
			.account = g_strdup((const char *)sqlite3_column_text(st, 2)),
			.message_id = g_strdup((const char *)sqlite3_column_text(st, 3)),
			.recipients = g_strdup((const char *)sqlite3_column_text(st, 4)),
			.decision = g_strdup((const char *)sqlite3_column_text(st, 5)),
			.reason = g_strdup((const char *)sqlite3_column_text(st, 6)),
		};
		g_array_append_val(rows, c);
	}
	if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	for (guint i = 0; ret == 0 && i < rows->len; i++) {
		const keystore_decision_copy *c = &g_array_index(rows, keystore_decision_copy, i);
		const keystore_decision_row row = {
			.id = c->id, .time = c->time,
			.account = c->account != NULL ? c->account : "",
			.message_id = c->message_id,
			.recipients = c->recipients != NULL ? c->recipients : "",
			.decision = c->decision != NULL ? c->decision : "",
			.reason = c->reason,
		};
		if (fn(ctx, &row) != 0)
			break;
	}
	g_array_free(rows, TRUE);
	return ret;
}

static const char *const keystore_source_names[] = {
	[KEYSTORE_SOURCE_MANUAL] = "manual",
	[KEYSTORE_SOURCE_AUTOCRYPT] = "autocrypt",
	[KEYSTORE_SOURCE_WKD] = "wkd",
	[KEYSTORE_SOURCE_KEYSERVER] = "keyserver",
};

static const char *const keystore_acceptance_names[] = {
	[KEYSTORE_ACCEPTANCE_UNVERIFIED] = "unverified",
	[KEYSTORE_ACCEPTANCE_VERIFIED] = "verified",
	[KEYSTORE_ACCEPTANCE_REJECTED] = "rejected",
};

const char *keystore_key_source_name(keystore_key_source s)
{
	if ((size_t)s < G_N_ELEMENTS(keystore_source_names))
		return keystore_source_names[s];
	return "manual";
}

const char *keystore_acceptance_name(keystore_acceptance a)
{
	if ((size_t)a < G_N_ELEMENTS(keystore_acceptance_names))
		return keystore_acceptance_names[a];
	return "unverified";
}

static int keystore_name_index(const char *const *names, size_t n, const char *text)
{
	for (size_t i = 0; text != NULL && i < n; i++)
		if (strcmp(names[i], text) == 0)
			return (int)i;
	return -1;
}

int keystore_fingerprint_normalise(const char *text, char *out, size_t size,
				   const char **error_r)
{
	char buf[65];
	size_t n = 0;
	if (text == NULL || text[0] == '\0') {
		*error_r = "empty fingerprint";
		return -1;
	}
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == ' ')
			continue;
		if (!g_ascii_isxdigit(*p)) {
			*error_r = "a fingerprint holds only hexadecimal digits (and spaces)";
			return -1;
		}
		if (n == sizeof(buf) - 1) {
			*error_r = "a fingerprint has 40 or 64 hexadecimal digits";
			return -1;
		}
		buf[n++] = g_ascii_toupper(*p);
	}
	buf[n] = '\0';
	if (n != 40 && n != 64) {
		/* A key ID names a key ambiguously; only the whole fingerprint
		 * is taken. */
		*error_r = "a fingerprint has 40 or 64 hexadecimal digits";
		return -1;
	}
	if (size < n + 1) {
		*error_r = "no room for the fingerprint";
		return -1;
	}
	memcpy(out, buf, n + 1);
	return 0;
}

static int keystore_key_state_fpr(const char *fingerprint, char *fpr, const char **error_r)
{
	const char *why;
	if (keystore_fingerprint_normalise(fingerprint, fpr, 65, &why) < 0) {
		*error_r = keystore_db_errorf("invalid fingerprint: %s", why);
		return -1;
	}
	return 0;
}

int keystore_key_state_get(keystore_db *db, const char *fingerprint,
			   keystore_key_state *state_r, bool *found_r,
			   const char **error_r)
{
	memset(state_r, 0, sizeof(*state_r));
	*found_r = false;
	if (keystore_key_state_fpr(fingerprint, state_r->fingerprint, error_r) < 0)
		return -1;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->key_get;
	sqlite3_bind_text(st, 1, state_r->fingerprint, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int s = keystore_name_index(keystore_source_names,
					    G_N_ELEMENTS(keystore_source_names),
					    (const char *)sqlite3_column_text(st, 0));
		int a = keystore_name_index(keystore_acceptance_names,
					    G_N_ELEMENTS(keystore_acceptance_names),
					    (const char *)sqlite3_column_text(st, 1));
		if (s < 0 || a < 0) {
			*error_r = keystore_db_errorf("%s: the state of key %s is damaged", db->path,
						      state_r->fingerprint);
			ret = -1;
		} else {
			state_r->source = (keystore_key_source)s;
			state_r->acceptance = (keystore_acceptance)a;
			state_r->updated = sqlite3_column_int64(st, 2);
			*found_r = true;
		}
	} else if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_key_state_add(keystore_db *db, const char *fingerprint,
			   keystore_key_source source, keystore_acceptance acceptance,
			   bool *added_r, const char **error_r)
{
	char fpr[65];
	if (added_r != NULL)
		*added_r = false;
	if (keystore_key_state_fpr(fingerprint, fpr, error_r) < 0)
		return -1;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->key_add;
	sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, keystore_key_source_name(source), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, keystore_acceptance_name(acceptance), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	} else if (added_r != NULL) {
		*added_r = sqlite3_changes(db->db) > 0;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_key_state_set_acceptance(keystore_db *db, const char *fingerprint,
				      keystore_acceptance acceptance,
				      const char **error_r)
{
	char fpr[65];
	if (keystore_key_state_fpr(fingerprint, fpr, error_r) < 0)
		return -1;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->key_accept;
	sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, keystore_acceptance_name(acceptance), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_key_state_forget(keystore_db *db, const char *fingerprint,
			      bool *existed_r, const char **error_r)
{
	char fpr[65];
	if (existed_r != NULL)
		*existed_r = false;
	if (keystore_key_state_fpr(fingerprint, fpr, error_r) < 0)
		return -1;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->key_forget;
	sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	} else if (existed_r != NULL) {
		*existed_r = sqlite3_changes(db->db) > 0;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_key_state_list(keystore_db *db,
			    int (*fn)(void *ctx, const keystore_key_state *state),
			    void *ctx, const char **error_r)
{
	/* Copied out first, as keystore_policy_list does. */
	GArray *states = g_array_new(FALSE, FALSE, sizeof(keystore_key_state));
	int ret = 0, rc;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->key_list;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		keystore_key_state k = { .updated = sqlite3_column_int64(st, 3) };
		const char *fpr = (const char *)sqlite3_column_text(st, 0);
		int s = keystore_name_index(keystore_source_names,
					    G_N_ELEMENTS(keystore_source_names),
					    (const char *)sqlite3_column_text(st, 1));
		int a = keystore_name_index(keystore_acceptance_names,
					    G_N_ELEMENTS(keystore_acceptance_names),
					    (const char *)sqlite3_column_text(st, 2));
		if (fpr == NULL || strlen(fpr) >= sizeof(k.fingerprint) || s < 0 || a < 0) {
			*error_r = keystore_db_errorf("%s: a key state is damaged", db->path);
			ret = -1;
			break;
		}
		memcpy(k.fingerprint, fpr, strlen(fpr) + 1);
		k.source = (keystore_key_source)s;
		k.acceptance = (keystore_acceptance)a;
		g_array_append_val(states, k);
	}
	if (ret == 0 && rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	for (guint i = 0; ret == 0 && i < states->len; i++) {
		if (fn(ctx, &g_array_index(states, keystore_key_state, i)) != 0)
			break;
	}
	g_array_free(states, TRUE);
	return ret;
}

int64_t keystore_db_data_version(keystore_db *db, const char **error_r)
{
	int64_t v = -1;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->data_version;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		*error_r = keystore_db_sqlite_error(db, NULL);
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return v;
}

/* ---- view pins ---------------------------------------------------------------- */

static int keystore_view_pin_check(const char *account, const void *mailbox,
				   size_t mailbox_len, uint32_t uidvalidity, uint32_t uid,
				   const char **error_r)
{
	if (account == NULL || mailbox == NULL || mailbox_len > 4096 ||
	    uidvalidity == 0 || uid == 0) {
		*error_r = keystore_db_errorf("view pin: no account, a mailbox name over 4096 "
					      "bytes, or a zero UIDVALIDITY or UID");
		return -1;
	}
	return 0;
}

static void keystore_view_pin_bind(sqlite3_stmt *st, const char *account, const void *mailbox,
				   size_t mailbox_len, uint32_t uidvalidity, uint32_t uid)
{
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, mailbox_len > 0 ? mailbox : "", (int)mailbox_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)uidvalidity);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)uid);
}

/* With db->lock held. */
static int keystore_view_pin_read(keystore_db *db, const char *account, const void *mailbox,
				  size_t mailbox_len, uint32_t uidvalidity, uint32_t uid,
				  char **signature_r, const char **error_r)
{
	sqlite3_stmt *st = db->pin_get;
	keystore_view_pin_bind(st, account, mailbox, mailbox_len, uidvalidity, uid);
	int ret = 0;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*signature_r = g_strdup((const char *)sqlite3_column_text(st, 0));
	else if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	return ret;
}

int keystore_view_pin_get(keystore_db *db, const char *account, const void *mailbox,
			  size_t mailbox_len, uint32_t uidvalidity, uint32_t uid,
			  char **signature_r, const char **error_r)
{
	*signature_r = NULL;
	if (keystore_view_pin_check(account, mailbox, mailbox_len, uidvalidity, uid, error_r) < 0)
		return -1;
	g_mutex_lock(&db->lock);
	int ret = keystore_view_pin_read(db, account, mailbox, mailbox_len, uidvalidity, uid,
					 signature_r, error_r);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_view_pin_put(keystore_db *db, const char *account, const void *mailbox,
			  size_t mailbox_len, uint32_t uidvalidity, uint32_t uid,
			  const char *signature, char **stored_r, const char **error_r)
{
	*stored_r = NULL;
	if (keystore_view_pin_check(account, mailbox, mailbox_len, uidvalidity, uid, error_r) < 0)
		return -1;
	if (signature == NULL || signature[0] == '\0' || strlen(signature) > 1024 ||
	    strpbrk(signature, "\r\n") != NULL) {
		*error_r = keystore_db_errorf("view pin: the signature status is empty, over "
					      "1024 bytes or more than one line");
		return -1;
	}
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->pin_put;
	keystore_view_pin_bind(st, account, mailbox, mailbox_len, uidvalidity, uid);
	sqlite3_bind_text(st, 5, signature, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	if (ret == 0)
		ret = keystore_view_pin_read(db, account, mailbox, mailbox_len, uidvalidity, uid,
					     stored_r, error_r);
	if (ret == 0 && *stored_r == NULL) {
		*error_r = keystore_db_errorf("%s: a view pin vanished right after it was written",
					      db->path);
		ret = -1;
	}
	g_mutex_unlock(&db->lock);
	return ret;
}

/* ---- Autocrypt peer state -------------------------------------------------------- */

static unsigned char *keystore_db_dup_blob(const void *data, size_t len)
{
	/* One byte more, so that an empty key is not NULL. */
	unsigned char *copy = g_malloc(len + 1);
	if (len > 0)
		memcpy(copy, data, len);
	return copy;
}

void keystore_autocrypt_peer_clear(keystore_autocrypt_peer *p)
{
	if (p == NULL)
		return;
	g_free(p->account);
	g_free(p->addr);
	g_free(p->public_key);
	g_free(p->gossip_key);
	memset(p, 0, sizeof(*p));
}

void keystore_autocrypt_peer_copy(keystore_autocrypt_peer *dst, const keystore_autocrypt_peer *src)
{
	*dst = *src;
	dst->account = g_strdup(src->account);
	dst->addr = g_strdup(src->addr);
	dst->public_key = src->public_key != NULL
		? keystore_db_dup_blob(src->public_key, src->public_key_len) : NULL;
	dst->gossip_key = src->gossip_key != NULL
		? keystore_db_dup_blob(src->gossip_key, src->gossip_key_len) : NULL;
}

static void keystore_db_column_fpr(sqlite3_stmt *st, int col, char *out)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	g_strlcpy(out, t != NULL ? t : "", 65);
}

static unsigned char *keystore_db_column_blob(sqlite3_stmt *st, int col, size_t *len_r)
{
	*len_r = 0;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return NULL;
	const void *b = sqlite3_column_blob(st, col);
	*len_r = (size_t)sqlite3_column_bytes(st, col);
	return keystore_db_dup_blob(b, *len_r);
}

/* keystore_autocrypt_peer_get with db->lock held. */
static int keystore_db_peer_get_locked(keystore_db *db, const char *account, const char *addr,
				       keystore_autocrypt_peer *peer_r, bool *found_r,
				       const char **error_r)
{
	memset(peer_r, 0, sizeof(*peer_r));
	*found_r = false;
	if (account == NULL || addr == NULL) {
		*error_r = "autocrypt peer: no account or address";
		return -1;
	}
	int ret = 0;
	sqlite3_stmt *st = db->peer_get;
	sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, addr, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		peer_r->account = g_strdup((const char *)sqlite3_column_text(st, 0));
		peer_r->addr = g_strdup((const char *)sqlite3_column_text(st, 1));
		peer_r->last_seen = sqlite3_column_int64(st, 2);
		peer_r->autocrypt_timestamp = sqlite3_column_int64(st, 3);
		peer_r->public_key = keystore_db_column_blob(st, 4, &peer_r->public_key_len);
		keystore_db_column_fpr(st, 5, peer_r->public_key_fpr);
		const char *pe = (const char *)sqlite3_column_text(st, 6);
		peer_r->prefer_mutual = pe != NULL && strcmp(pe, "mutual") == 0;
		peer_r->gossip_timestamp = sqlite3_column_int64(st, 7);
		peer_r->gossip_key = keystore_db_column_blob(st, 8, &peer_r->gossip_key_len);
		keystore_db_column_fpr(st, 9, peer_r->gossip_key_fpr);
		peer_r->updated = sqlite3_column_int64(st, 10);
		*found_r = true;
	} else if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	return ret;
}

int keystore_autocrypt_peer_get(keystore_db *db, const char *account, const char *addr,
				keystore_autocrypt_peer *peer_r, bool *found_r,
				const char **error_r)
{
	g_mutex_lock(&db->lock);
	int ret = keystore_db_peer_get_locked(db, account, addr, peer_r, found_r, error_r);
	g_mutex_unlock(&db->lock);
	return ret;
}

static void keystore_db_bind_blob(sqlite3_stmt *st, int i, const void *data, size_t len)
{
	if (data == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_blob(st, i, len > 0 ? data : "", (int)len, SQLITE_STATIC);
}

static void keystore_db_bind_fpr(sqlite3_stmt *st, int i, const char *fpr)
{
	if (fpr == NULL || fpr[0] == '\0')
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, fpr, -1, SQLITE_STATIC);
}

/* The largest key a peer row or a pending change holds: what an import takes. */
#define KEYSTORE_DB_KEY_MAX (1024 * 1024)

/* keystore_autocrypt_peer_put with db->lock held. */
static int keystore_db_peer_put_locked(keystore_db *db, const keystore_autocrypt_peer *p,
				       const char **error_r)
{
	if (p->account == NULL || p->addr == NULL || strchr(p->addr, '@') == NULL) {
		*error_r = "autocrypt peer: no account or no address";
		return -1;
	}
	if (p->public_key_len > KEYSTORE_DB_KEY_MAX || p->gossip_key_len > KEYSTORE_DB_KEY_MAX) {
		*error_r = "autocrypt peer: a key over 1 MiB";
		return -1;
	}
	int ret = 0;
	sqlite3_stmt *st = db->peer_put;
	sqlite3_bind_text(st, 1, p->account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->addr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)p->last_seen);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)p->autocrypt_timestamp);
	keystore_db_bind_blob(st, 5, p->public_key, p->public_key_len);
	keystore_db_bind_fpr(st, 6, p->public_key_fpr);
	sqlite3_bind_text(st, 7, p->prefer_mutual ? "mutual" : "nopreference", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)p->gossip_timestamp);
	keystore_db_bind_blob(st, 9, p->gossip_key, p->gossip_key_len);
	keystore_db_bind_fpr(st, 10, p->gossip_key_fpr);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	return ret;
}

int keystore_autocrypt_peer_put(keystore_db *db, const keystore_autocrypt_peer *p,
				const char **error_r)
{
	g_mutex_lock(&db->lock);
	int ret = keystore_db_peer_put_locked(db, p, error_r);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_autocrypt_peer_update(keystore_db *db, const char *account, const char *addr,
				   keystore_autocrypt_peer_fn *fn, void *ctx, bool *written_r,
				   const char **error_r)
{
	keystore_autocrypt_peer peer;
	bool found = false;
	*written_r = false;
	g_mutex_lock(&db->lock);
	/* IMMEDIATE: the write lock from the read on, so that no other
	 * connection (the API's, a CLI) changes the row in between. */
	if (keystore_db_exec(db, "BEGIN IMMEDIATE", "cannot start a transaction", error_r) < 0) {
		g_mutex_unlock(&db->lock);
		return -1;
	}
	int ret = keystore_db_peer_get_locked(db, account, addr, &peer, &found, error_r);
	if (ret == 0 && fn(&peer, found, ctx)) {
		ret = keystore_db_peer_put_locked(db, &peer, error_r);
		*written_r = ret == 0;
	}
	if (ret == 0 && keystore_db_exec(db, "COMMIT", "cannot commit", error_r) < 0)
		ret = -1;
	if (ret < 0) {
		sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
		*written_r = false;
	}
	g_mutex_unlock(&db->lock);
	keystore_autocrypt_peer_clear(&peer);
	return ret;
}

int keystore_autocrypt_peer_count(keystore_db *db, unsigned *peers_r, unsigned *with_key_r,
				  const char **error_r)
{
	int ret = 0;
	*peers_r = *with_key_r = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->peer_count;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*peers_r = (unsigned)sqlite3_column_int64(st, 0);
		*with_key_r = (unsigned)sqlite3_column_int64(st, 1);
	} else {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

/* ---- pending key changes --------------------------------------------------------- */

void keystore_pending_key_clear(keystore_pending_key *p)
{
	if (p == NULL)
		return;
	g_free(p->account);
	g_free(p->addr);
	g_free(p->keydata);
	memset(p, 0, sizeof(*p));
}

int keystore_pending_add(keystore_db *db, const keystore_pending_key *p, int64_t *id_r,
			 const char **error_r)
{
	char old_fpr[65], new_fpr[65];
	if (id_r != NULL)
		*id_r = 0;
	if (p->account == NULL || p->addr == NULL || p->keydata == NULL ||
	    p->keydata_len == 0 || p->keydata_len > KEYSTORE_DB_KEY_MAX ||
	    p->source == KEYSTORE_SOURCE_MANUAL) {
		*error_r = "pending key: no account, address or key data, a key over 1 MiB, "
			   "or a manual source";
		return -1;
	}
	if (keystore_key_state_fpr(p->old_fingerprint, old_fpr, error_r) < 0 ||
	    keystore_key_state_fpr(p->new_fingerprint, new_fpr, error_r) < 0)
		return -1;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->pending_add;
	sqlite3_bind_text(st, 1, p->account, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, p->addr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, old_fpr, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, new_fpr, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 5, p->keydata, (int)p->keydata_len, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, keystore_key_source_name(p->source), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)(p->created > 0 ? p->created : time(NULL)));
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (id_r != NULL)
			*id_r = sqlite3_column_int64(st, 0);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

/* One row of the pending_key SELECTs into p. */
static int keystore_pending_read_row(keystore_db *db, sqlite3_stmt *st, keystore_pending_key *p,
				     const char **error_r)
{
	memset(p, 0, sizeof(*p));
	p->id = sqlite3_column_int64(st, 0);
	p->account = g_strdup((const char *)sqlite3_column_text(st, 1));
	p->addr = g_strdup((const char *)sqlite3_column_text(st, 2));
	keystore_db_column_fpr(st, 3, p->old_fingerprint);
	keystore_db_column_fpr(st, 4, p->new_fingerprint);
	p->keydata = keystore_db_column_blob(st, 5, &p->keydata_len);
	int s = keystore_name_index(keystore_source_names, G_N_ELEMENTS(keystore_source_names),
				    (const char *)sqlite3_column_text(st, 6));
	p->created = sqlite3_column_int64(st, 7);
	if (p->account == NULL || p->addr == NULL || p->keydata == NULL || s < 0) {
		*error_r = keystore_db_errorf("%s: pending key change %" G_GINT64_FORMAT
					      " is damaged", db->path, p->id);
		keystore_pending_key_clear(p);
		return -1;
	}
	p->source = (keystore_key_source)s;
	return 0;
}

int keystore_pending_get(keystore_db *db, int64_t id, const char *new_fingerprint,
			 keystore_pending_key *p_r, bool *found_r, const char **error_r)
{
	char fpr[65];
	memset(p_r, 0, sizeof(*p_r));
	*found_r = false;
	if (id <= 0 && keystore_key_state_fpr(new_fingerprint, fpr, error_r) < 0)
		return -1;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = id > 0 ? db->pending_get_id : db->pending_get_fpr;
	if (id > 0)
		sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	else
		sqlite3_bind_text(st, 1, fpr, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		ret = keystore_pending_read_row(db, st, p_r, error_r);
		*found_r = ret == 0;
	} else if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_pending_remove(keystore_db *db, int64_t id, bool *existed_r,
			    const char **error_r)
{
	if (existed_r != NULL)
		*existed_r = false;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->pending_remove;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
	if (sqlite3_step(st) != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	} else if (existed_r != NULL) {
		*existed_r = sqlite3_changes(db->db) > 0;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

static void keystore_pending_array_clear(void *p)
{
	keystore_pending_key_clear(p);
}

int keystore_pending_list(keystore_db *db,
			  int (*fn)(void *ctx, const keystore_pending_key *p),
			  void *ctx, const char **error_r)
{
	GArray *rows = g_array_new(FALSE, TRUE, sizeof(keystore_pending_key));
	g_array_set_clear_func(rows, keystore_pending_array_clear);
	int ret = 0, rc;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = db->pending_list;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		keystore_pending_key p;
		if (keystore_pending_read_row(db, st, &p, error_r) < 0) {
			ret = -1;
			break;
		}
		g_array_append_val(rows, p);
	}
	if (ret == 0 && rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	keystore_db_done(st);
	g_mutex_unlock(&db->lock);
	for (guint i = 0; ret == 0 && i < rows->len; i++) {
		if (fn(ctx, &g_array_index(rows, keystore_pending_key, i)) != 0)
			break;
	}
	g_array_free(rows, TRUE);
	return ret;
}

/* ---- key discovery cache ------------------------------------------------------ */

static const char *const keystore_discovery_result_names[] = {
	[KEYSTORE_DISCOVERY_FOUND] = "found",
	[KEYSTORE_DISCOVERY_NONE] = "none",
	[KEYSTORE_DISCOVERY_ERROR] = "error",
};

const char *keystore_discovery_result_name(keystore_discovery_result r)
{
	return (size_t)r < G_N_ELEMENTS(keystore_discovery_result_names)
		? keystore_discovery_result_names[r] : "?";
}

/* Rare (one lookup per address and hour at most), so prepared per call. */
int keystore_discovery_get(keystore_db *db, const char *addr, keystore_discovery_row *row_r,
			   bool *found_r, const char **error_r)
{
	memset(row_r, 0, sizeof(*row_r));
	*found_r = false;
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "SELECT checked, result, method, fingerprint, detail "
				    "FROM key_discovery WHERE addr = ?1", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		row_r->checked = sqlite3_column_int64(st, 0);
		int r = keystore_name_index(keystore_discovery_result_names,
					    G_N_ELEMENTS(keystore_discovery_result_names),
					    (const char *)sqlite3_column_text(st, 1));
		const char *method = (const char *)sqlite3_column_text(st, 2);
		row_r->result = r >= 0 ? (keystore_discovery_result)r : KEYSTORE_DISCOVERY_ERROR;
		row_r->method = method != NULL && strcmp(method, "keyserver") == 0
			? KEYSTORE_SOURCE_KEYSERVER : KEYSTORE_SOURCE_WKD;
		keystore_db_column_fpr(st, 3, row_r->fingerprint);
		const char *detail = (const char *)sqlite3_column_text(st, 4);
		g_strlcpy(row_r->detail, detail != NULL ? detail : "", sizeof(row_r->detail));
		*found_r = true;
	} else if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	sqlite3_finalize(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_discovery_put(keystore_db *db, const char *addr, const keystore_discovery_row *row,
			   const char **error_r)
{
	if (strchr(addr, '@') == NULL || strlen(addr) > KEYSTORE_TARGET_MAX) {
		*error_r = "key discovery: not an address";
		return -1;
	}
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "INSERT OR REPLACE INTO key_discovery (addr, checked, "
				    "result, method, fingerprint, detail) "
				    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)(row->checked > 0 ? row->checked
							   : time(NULL)));
		sqlite3_bind_text(st, 3, keystore_discovery_result_name(row->result), -1,
				  SQLITE_STATIC);
		if (row->result == KEYSTORE_DISCOVERY_FOUND) {
			sqlite3_bind_text(st, 4, keystore_key_source_name(row->method), -1,
					  SQLITE_STATIC);
			sqlite3_bind_text(st, 5, row->fingerprint, -1, SQLITE_STATIC);
		}
		if (row->detail[0] != '\0')
			sqlite3_bind_text(st, 6, row->detail, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	sqlite3_finalize(st);
	g_mutex_unlock(&db->lock);
	return ret;
}

int keystore_discovery_forget(keystore_db *db, const char *addr, const char **error_r)
{
	int ret = 0;
	g_mutex_lock(&db->lock);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db->db, "DELETE FROM key_discovery WHERE addr = ?1", -1, &st,
				    NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE) {
		*error_r = keystore_db_sqlite_error(db, NULL);
		ret = -1;
	}
	sqlite3_finalize(st);
	g_mutex_unlock(&db->lock);
	return ret;
}
