/* Unit tests of the SQLite database: file mode, target normalisation, rules
 * and their lookup, migrations, sharing between threads, the decision log,
 * the keys' source and acceptance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keystore_db.h"

/* The schema version this sealpost writes. */
#define SCHEMA_VERSION 5

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup_dir(void **state)
{
	char *dir = g_dir_make_tmp("sp-db-XXXXXX", NULL);
	if (dir == NULL)
		return -1;
	*state = dir;
	return 0;
}

static int teardown_dir(void **state)
{
	char *dir = *state;
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_free(dir);
	return 0;
}

static char *state_path(void **state, const char *name)
{
	return g_build_filename((const char *)*state, name, NULL);
}

static keystore_db *open_ok(const char *state_dir)
{
	const char *error = NULL;
	keystore_db *db = keystore_db_open(state_dir, &error);
	if (db == NULL)
		fail_msg("open %s: %s", state_dir, error);
	return db;
}

static mode_t mode_of(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		fail_msg("stat %s: %s", path, strerror(errno));
	return st.st_mode & 07777;
}

/* A database made with SQLite directly, as an older sealpost or another
 * program would have left it. */
static void make_raw_db(const char *path, const char *sql)
{
	sqlite3 *raw = NULL;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	char *err = NULL;
	if (sqlite3_exec(raw, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(raw);
}

static int raw_user_version(const char *path)
{
	sqlite3 *raw = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open_v2(path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(raw);
	return v;
}

static void assert_one_line(const char *error)
{
	assert_non_null(error);
	assert_true(error[0] != '\0');
	assert_null(strchr(error, '\n'));
	assert_null(strchr(error, '\r'));
}

static void test_policy_names(void **state)
{
	(void)state;
	keystore_policy p = KEYSTORE_POLICY_NONE;
	assert_int_equal(keystore_policy_parse("require", &p), 0);
	assert_int_equal(p, KEYSTORE_POLICY_REQUIRE);
	assert_int_equal(keystore_policy_parse("OPPORTUNISTIC", &p), 0);
	assert_int_equal(p, KEYSTORE_POLICY_OPPORTUNISTIC);
	assert_int_equal(keystore_policy_parse("Never", &p), 0);
	assert_int_equal(p, KEYSTORE_POLICY_NEVER);
	p = KEYSTORE_POLICY_REQUIRE;
	assert_int_equal(keystore_policy_parse("none", &p), -1);
	assert_int_equal(keystore_policy_parse("", &p), -1);
	assert_int_equal(keystore_policy_parse("require ", &p), -1);
	assert_int_equal(keystore_policy_parse(NULL, &p), -1);
	assert_int_equal(p, KEYSTORE_POLICY_REQUIRE);
	assert_string_equal(keystore_policy_name(KEYSTORE_POLICY_REQUIRE), "require");
	assert_string_equal(keystore_policy_name(KEYSTORE_POLICY_OPPORTUNISTIC), "opportunistic");
	assert_string_equal(keystore_policy_name(KEYSTORE_POLICY_NEVER), "never");
	assert_string_equal(keystore_policy_name(KEYSTORE_POLICY_NONE), "none");
}

static void test_target_normalise(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out, *error;	/* out NULL: refused, error a substring */
	} cases[] = {
		{ "bob@example.test", "bob@example.test", NULL },
		{ "Bob.Smith@Example.TEST", "bob.smith@example.test", NULL },
		{ "@Example.Test", "@example.test", NULL },
		{ "a+tag@sub.example.test", "a+tag@sub.example.test", NULL },
		{ "x@[192.0.2.1]", "x@[192.0.2.1]", NULL },
		{ "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "j\xc3\xb6rg@b\xc3\xbc" "cher.example", NULL },
		{ "bob.example.test", NULL, "no '@'" },
		{ "a@b@example.test", NULL, "more than one '@'" },
		{ "@@example.test", NULL, "more than one '@'" },
		{ "", NULL, "empty" },
		{ "@", NULL, "empty domain" },
		{ "bob@", NULL, "empty domain" },
		{ "bob@.example", NULL, "empty label" },
		{ "bob@example.", NULL, "empty label" },
		{ "bob@ex..ample", NULL, "empty label" },
		{ "bob @example.test", NULL, "space" },
		{ "bob@example.test ", NULL, "space" },
		{ " bob@example.test", NULL, "space" },
		{ "bob@exa\rmple.test", NULL, "control character" },
		{ "bob@example.test\r\n", NULL, "control character" },
		{ "bo\nb@example.test", NULL, "control character" },
		{ "bob\t@example.test", NULL, "control character" },
		{ "bob\x7f@example.test", NULL, "control character" },
		{ "bob\x01@example.test", NULL, "control character" },
		{ "<bob@example.test>", NULL, "local part" },
		{ "bob,carol@example.test", NULL, "local part" },
		{ "\"bob\"@example.test", NULL, "local part" },
		{ "bob@exa/mple.test", NULL, "domain" },
		{ "bob@example.test>", NULL, "domain" },
		{ "bob@[192.0.2.1", NULL, "domain literal" },
		{ "bob\xff@example.test", NULL, "UTF-8" },
		{ "bob@\xc3(.example", NULL, "UTF-8" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[321];
		const char *error = NULL;
		memset(out, 'Z', sizeof(out));
		int ret = keystore_policy_target_normalise(cases[i].in, out, sizeof(out), &error);
		if (cases[i].out != NULL) {
			if (ret != 0)
				fail_msg("refused '%s': %s", cases[i].in, error);
			assert_string_equal(out, cases[i].out);
		} else {
			if (ret == 0)
				fail_msg("accepted '%s' as '%s'", cases[i].in, out);
			assert_one_line(error);
			if (strstr(error, cases[i].error) == NULL)
				fail_msg("'%s': got '%s', expected it to mention '%s'",
					 cases[i].in, error, cases[i].error);
		}
	}

	/* 320 bytes is the longest target; 321 is refused. */
	char target[400], out[321];
	const char *error = NULL;
	memset(target, 'a', sizeof(target));
	memcpy(target + 64, "@", 1);
	memcpy(target + 316, ".org", 5);
	assert_int_equal(strlen(target), 320);
	target[70] = 'A';
	assert_int_equal(keystore_policy_target_normalise(target, out, sizeof(out), &error), 0);
	assert_int_equal(strlen(out), 320);
	assert_int_equal(out[70], 'a');
	memcpy(target + 316, "x.org", 6);
	assert_int_equal(strlen(target), 321);
	assert_int_equal(keystore_policy_target_normalise(target, out, sizeof(out), &error), -1);
	assert_non_null(strstr(error, "320"));
	assert_int_equal(keystore_policy_target_normalise(NULL, out, sizeof(out), &error), -1);
	/* A short output buffer is refused, not overrun. */
	char small[8];
	assert_int_equal(keystore_policy_target_normalise("bob@example.test", small,
							   sizeof(small), &error), -1);
}

static void test_open_creates_private_files(void **state)
{
	char *state_dir = state_path(state, "nested/state");
	char *db_path = g_build_filename(state_dir, "sealpost.db", NULL);
	/* Even a permissive umask must not make the database readable. */
	mode_t old = umask(0);
	keystore_db *db = open_ok(state_dir);
	umask(old);
	assert_int_equal(mode_of(state_dir), 0700);
	assert_int_equal(mode_of(db_path), 0600);
	assert_int_equal(keystore_db_schema_version(db), SCHEMA_VERSION);
	const char *error = NULL;
	assert_int_equal(keystore_policy_set(db, "bob@example.test", KEYSTORE_POLICY_REQUIRE,
					     &error), 0);
	char *wal = g_strconcat(db_path, "-wal", NULL);
	char *shm = g_strconcat(db_path, "-shm", NULL);
	assert_true(g_file_test(wal, G_FILE_TEST_EXISTS));
	assert_int_equal(mode_of(wal), 0600);
	assert_int_equal(mode_of(shm), 0600);
	keystore_db_close(&db);
	assert_null(db);
	keystore_db_close(&db);

	/* An existing database with a wider mode is tightened. */
	assert_int_equal(chmod(db_path, 0644), 0);
	db = open_ok(state_dir);
	assert_int_equal(mode_of(db_path), 0600);
	keystore_db_close(&db);
	g_free(wal);
	g_free(shm);
	g_free(db_path);
	g_free(state_dir);
}

static void test_open_failures(void **state)
{
	const char *error = NULL;
	/* state_dir is a file. */
	char *file = state_path(state, "plain-file");
	assert_true(g_file_set_contents(file, "x", 1, NULL));
	assert_null(keystore_db_open(file, &error));
	assert_one_line(error);
	assert_non_null(strstr(error, file));

	/* sealpost.db is a directory. */
	char *dir = state_path(state, "dirdb");
	char *sub = g_build_filename(dir, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(sub, 0700), 0);
	error = NULL;
	assert_null(keystore_db_open(dir, &error));
	assert_one_line(error);
	assert_non_null(strstr(error, sub));
	g_free(sub);
	g_free(dir);
	g_free(file);
}

static void test_not_a_database(void **state)
{
	char *dir = state_path(state, "garbage");
	char *path = g_build_filename(dir, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
	static const char junk[] = "this is not a database, it is a note\n"
		"with a second line of text that is long enough to fill a header....\n";
	assert_true(g_file_set_contents(path, junk, sizeof(junk) - 1, NULL));
	assert_int_equal(chmod(path, 0644), 0);
	const char *error = NULL;
	assert_null(keystore_db_open(dir, &error));
	assert_one_line(error);
	assert_non_null(strstr(error, path));
	assert_non_null(strstr(error, "not a database"));
	/* Left exactly as it was. */
	char *data = NULL;
	gsize len = 0;
	assert_true(g_file_get_contents(path, &data, &len, NULL));
	assert_int_equal(len, sizeof(junk) - 1);
	assert_memory_equal(data, junk, len);
	assert_int_equal(mode_of(path), 0644);
	g_free(data);

	/* An empty file is an empty database, not garbage. */
	assert_true(g_file_set_contents(path, "", 0, NULL));
	keystore_db *db = open_ok(dir);
	assert_int_equal(keystore_db_schema_version(db), SCHEMA_VERSION);
	keystore_db_close(&db);
	g_free(path);
	g_free(dir);
}

static void test_migration_from_version_0(void **state)
{
	char *dir = state_path(state, "v0");
	char *path = g_build_filename(dir, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
	make_raw_db(path, "CREATE TABLE unrelated (x INTEGER); INSERT INTO unrelated VALUES (42);"
			  "PRAGMA user_version = 0;");
	assert_int_equal(raw_user_version(path), 0);
	keystore_db *db = open_ok(dir);
	assert_int_equal(keystore_db_schema_version(db), SCHEMA_VERSION);
	const char *error = NULL;
	assert_int_equal(keystore_policy_set(db, "@example.test", KEYSTORE_POLICY_NEVER, &error), 0);
	keystore_decision d = { .account = "a", .recipients = "b@example.test",
				.decision = "plain" };
	assert_int_equal(keystore_db_log_decision(db, &d, &error), 0);
	keystore_db_close(&db);
	assert_int_equal(raw_user_version(path), SCHEMA_VERSION);
	/* What was there is kept. */
	sqlite3 *raw = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(raw, "SELECT x FROM unrelated", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), 42);
	sqlite3_finalize(st);
	/* The schema refuses what the code never writes. */
	assert_int_not_equal(sqlite3_exec(raw, "INSERT INTO policy VALUES ('a@b', 'maybe', 0)",
					  NULL, NULL, NULL), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(raw, "INSERT INTO policy VALUES ('A@B', 'never', 0)",
					  NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);

	/* A version-0 file that already has a table of that name is not
	 * silently adopted: the migration fails and leaves it at 0. */
	char *dir2 = state_path(state, "v0clash");
	char *path2 = g_build_filename(dir2, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir2, 0700), 0);
	make_raw_db(path2, "CREATE TABLE policy (whatever TEXT);");
	error = NULL;
	assert_null(keystore_db_open(dir2, &error));
	assert_one_line(error);
	assert_non_null(strstr(error, "version 1"));
	assert_int_equal(raw_user_version(path2), 0);
	g_free(path2);
	g_free(dir2);
	g_free(path);
	g_free(dir);
}

static void test_refuses_newer_schema(void **state)
{
	char *dir = state_path(state, "v99");
	char *path = g_build_filename(dir, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
	make_raw_db(path, "CREATE TABLE future (y TEXT); PRAGMA user_version = 99;");
	assert_int_equal(chmod(path, 0640), 0);
	const char *error = NULL;
	assert_null(keystore_db_open(dir, &error));
	assert_one_line(error);
	assert_non_null(strstr(error, path));
	assert_non_null(strstr(error, "99"));
	assert_non_null(strstr(error, "newer"));
	assert_int_equal(raw_user_version(path), 99);
	/* Not switched to WAL, not chmod-ed: a newer sealpost's file is not
	 * this one's to change. */
	char *wal = g_strconcat(path, "-wal", NULL);
	assert_false(g_file_test(wal, G_FILE_TEST_EXISTS));
	assert_int_equal(mode_of(path), 0640);
	sqlite3 *raw = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open_v2(path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "delete");
	sqlite3_finalize(st);
	sqlite3_close(raw);
	g_free(wal);
	g_free(path);
	g_free(dir);
}

typedef struct {
	GString *out;
	int stop_after;
	int seen;
} list_ctx;

static int collect_rule(void *p, const keystore_policy_rule *rule)
{
	list_ctx *c = p;
	g_string_append_printf(c->out, "%s=%s;", rule->target, keystore_policy_name(rule->policy));
	int64_t now = (int64_t)time(NULL);
	if (rule->updated < now - 60 || rule->updated > now + 1)
		g_string_append(c->out, "BADTIME;");
	return ++c->seen == c->stop_after;
}

static char *list_all(keystore_db *db, int stop_after)
{
	list_ctx c = { .out = g_string_new(""), .stop_after = stop_after };
	const char *error = NULL;
	if (keystore_policy_list(db, collect_rule, &c, &error) < 0)
		fail_msg("list: %s", error);
	return g_string_free(c.out, FALSE);
}

static void expect_lookup(keystore_db *db, const char *address, keystore_policy want,
			  const char *want_matched)
{
	keystore_policy p = (keystore_policy)99;
	char matched[321];
	const char *error = NULL;
	if (keystore_policy_lookup(db, address, &p, matched, sizeof(matched), &error) < 0)
		fail_msg("lookup %s: %s", address, error);
	if (p != want || strcmp(matched, want_matched) != 0)
		fail_msg("lookup %s: got %s via '%s', expected %s via '%s'", address,
			 keystore_policy_name(p), matched, keystore_policy_name(want), want_matched);
}

static void test_rules(void **state)
{
	char *dir = state_path(state, "rules");
	keystore_db *db = open_ok(dir);
	const char *error = NULL;

	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_NONE, "");
	assert_int_equal(keystore_policy_set(db, "@Example.Test", KEYSTORE_POLICY_OPPORTUNISTIC,
					     &error), 0);
	assert_int_equal(keystore_policy_set(db, "Bob@EXAMPLE.test", KEYSTORE_POLICY_REQUIRE,
					     &error), 0);
	assert_int_equal(keystore_policy_set(db, "carol@other.test", KEYSTORE_POLICY_NEVER,
					     &error), 0);

	/* The address beats its domain, in any case. */
	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_REQUIRE, "bob@example.test");
	expect_lookup(db, "BOB@Example.Test", KEYSTORE_POLICY_REQUIRE, "bob@example.test");
	/* Only the domain has a rule. */
	expect_lookup(db, "dave@example.test", KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");
	expect_lookup(db, "Dave@EXAMPLE.TEST", KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");
	/* No rule for a subdomain, or another domain's address. */
	expect_lookup(db, "bob@sub.example.test", KEYSTORE_POLICY_NONE, "");
	expect_lookup(db, "carol@example.test", KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");
	expect_lookup(db, "carol@other.test", KEYSTORE_POLICY_NEVER, "carol@other.test");
	expect_lookup(db, "dave@other.test", KEYSTORE_POLICY_NONE, "");
	/* Whatever cannot be a target matches nothing, and never fails. */
	expect_lookup(db, "postmaster", KEYSTORE_POLICY_NONE, "");
	expect_lookup(db, "bob@", KEYSTORE_POLICY_NONE, "");
	expect_lookup(db, "", KEYSTORE_POLICY_NONE, "");
	char longaddr[1000];
	memset(longaddr, 'x', sizeof(longaddr));
	strcpy(longaddr + sizeof(longaddr) - 20, "@example.test");
	expect_lookup(db, longaddr, KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");
	/* matched_r is optional. */
	keystore_policy p;
	assert_int_equal(keystore_policy_lookup(db, "bob@example.test", &p, NULL, 0, &error), 0);
	assert_int_equal(p, KEYSTORE_POLICY_REQUIRE);

	/* Setting again replaces. */
	assert_int_equal(keystore_policy_set(db, "bob@example.test", KEYSTORE_POLICY_NEVER,
					     &error), 0);
	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_NEVER, "bob@example.test");

	char *all = list_all(db, 0);
	assert_string_equal(all, "@example.test=opportunistic;bob@example.test=never;"
				 "carol@other.test=never;");
	g_free(all);
	all = list_all(db, 1);
	assert_string_equal(all, "@example.test=opportunistic;");
	g_free(all);

	/* Invalid input is refused with a reason, and nothing is written. */
	error = NULL;
	assert_int_equal(keystore_policy_set(db, "no-at-sign", KEYSTORE_POLICY_REQUIRE, &error), -1);
	assert_one_line(error);
	assert_non_null(strstr(error, "'@'"));
	error = NULL;
	assert_int_equal(keystore_policy_set(db, "x@example.test", KEYSTORE_POLICY_NONE, &error), -1);
	assert_one_line(error);
	expect_lookup(db, "x@example.test", KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");

	/* unset tells whether there was a rule. */
	bool existed = false;
	assert_int_equal(keystore_policy_unset(db, "BOB@example.test", &existed, &error), 0);
	assert_true(existed);
	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");
	assert_int_equal(keystore_policy_unset(db, "bob@example.test", &existed, &error), 0);
	assert_false(existed);
	assert_int_equal(keystore_policy_unset(db, "bad target", &existed, &error), -1);
	assert_one_line(error);
	keystore_db_close(&db);

	/* Reopened, the rules are still there. */
	db = open_ok(dir);
	all = list_all(db, 0);
	assert_string_equal(all, "@example.test=opportunistic;carol@other.test=never;");
	g_free(all);
	expect_lookup(db, "carol@other.test", KEYSTORE_POLICY_NEVER, "carol@other.test");
	assert_int_equal(keystore_policy_unset(db, "@example.test", &existed, &error), 0);
	assert_true(existed);
	expect_lookup(db, "dave@example.test", KEYSTORE_POLICY_NONE, "");
	keystore_db_close(&db);
	g_free(dir);
}

/* A second handle (as `sealpost policy` in another process) writes; the
 * first (the server's) sees it with its next lookup. */
static void test_second_handle_sees_changes(void **state)
{
	char *dir = state_path(state, "two");
	keystore_db *server = open_ok(dir);
	keystore_db *cli = open_ok(dir);
	const char *error = NULL;
	expect_lookup(server, "bob@example.test", KEYSTORE_POLICY_NONE, "");
	assert_int_equal(keystore_policy_set(cli, "bob@example.test", KEYSTORE_POLICY_REQUIRE,
					     &error), 0);
	expect_lookup(server, "bob@example.test", KEYSTORE_POLICY_REQUIRE, "bob@example.test");
	bool existed;
	assert_int_equal(keystore_policy_unset(cli, "bob@example.test", &existed, &error), 0);
	expect_lookup(server, "bob@example.test", KEYSTORE_POLICY_NONE, "");
	keystore_db_close(&cli);
	keystore_db_close(&server);
	g_free(dir);
}

/* Another connection holding the write lock: a write waits for the busy
 * timeout and then fails with one line naming the file. */
static void test_locked(void **state)
{
	char *dir = state_path(state, "locked");
	char *path = g_build_filename(dir, "sealpost.db", NULL);
	keystore_db *db = open_ok(dir);
	const char *error = NULL;
	assert_int_equal(keystore_policy_set(db, "@example.test", KEYSTORE_POLICY_NEVER, &error), 0);
	sqlite3 *raw = NULL;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	gint64 t0 = g_get_monotonic_time();
	error = NULL;
	assert_int_equal(keystore_policy_set(db, "bob@example.test", KEYSTORE_POLICY_REQUIRE,
					     &error), -1);
	gint64 waited = g_get_monotonic_time() - t0;
	assert_one_line(error);
	assert_non_null(strstr(error, path));
	assert_non_null(strstr(error, "locked"));
	assert_true(waited >= 4 * G_USEC_PER_SEC);
	/* Readers are not blocked by a writer (WAL). */
	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_NEVER, "@example.test");
	sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(raw);
	assert_int_equal(keystore_policy_set(db, "bob@example.test", KEYSTORE_POLICY_REQUIRE,
					     &error), 0);
	keystore_db_close(&db);
	g_free(path);
	g_free(dir);
}

typedef struct {
	keystore_db *db;
	volatile gint stop;
	gint failures;
	gint lookups;
	char first_failure[256];
	GMutex lock;
} thread_ctx;

static void thread_fail(thread_ctx *c, const char *what, const char *detail)
{
	g_mutex_lock(&c->lock);
	if (c->failures++ == 0)
		snprintf(c->first_failure, sizeof(c->first_failure), "%s: %s", what,
			 detail != NULL ? detail : "");
	g_mutex_unlock(&c->lock);
}

static gpointer reader_thread(gpointer p)
{
	thread_ctx *c = p;
	while (!g_atomic_int_get(&c->stop)) {
		keystore_policy pol;
		char matched[321];
		const char *error = NULL;
		if (keystore_policy_lookup(c->db, "bob@example.test", &pol, matched,
					   sizeof(matched), &error) < 0) {
			thread_fail(c, "lookup", error);
			continue;
		}
		/* The writer flips the address rule; the domain rule stays. */
		bool ok = (pol == KEYSTORE_POLICY_REQUIRE && strcmp(matched, "bob@example.test") == 0) ||
			  (pol == KEYSTORE_POLICY_NEVER && strcmp(matched, "bob@example.test") == 0) ||
			  (pol == KEYSTORE_POLICY_OPPORTUNISTIC && strcmp(matched, "@example.test") == 0);
		if (!ok)
			thread_fail(c, "lookup answered", matched);
		if (keystore_policy_lookup(c->db, "dave@example.test", &pol, NULL, 0, &error) < 0 ||
		    pol != KEYSTORE_POLICY_OPPORTUNISTIC)
			thread_fail(c, "domain lookup", error);
		g_atomic_int_inc(&c->lookups);
	}
	return NULL;
}

static void test_threads(void **state)
{
	char *dir = state_path(state, "threads");
	thread_ctx c = { .db = open_ok(dir) };
	g_mutex_init(&c.lock);
	const char *error = NULL;
	assert_int_equal(keystore_policy_set(c.db, "@example.test", KEYSTORE_POLICY_OPPORTUNISTIC,
					     &error), 0);
	GThread *r1 = g_thread_new("r1", reader_thread, &c);
	GThread *r2 = g_thread_new("r2", reader_thread, &c);
	/* The writer runs here, on the same shared handle. */
	for (int i = 0; i < 150; i++) {
		bool existed;
		if (i % 3 == 2) {
			if (keystore_policy_unset(c.db, "bob@example.test", &existed, &error) < 0)
				thread_fail(&c, "unset", error);
		} else if (keystore_policy_set(c.db, "bob@example.test",
					       i % 3 == 0 ? KEYSTORE_POLICY_REQUIRE :
							    KEYSTORE_POLICY_NEVER, &error) < 0) {
			thread_fail(&c, "set", error);
		}
		keystore_decision d = { .account = "t", .recipients = "bob@example.test",
					.decision = "plain" };
		if (keystore_db_log_decision(c.db, &d, &error) < 0)
			thread_fail(&c, "log", error);
	}
	/* Let the readers overlap with each other for a moment too. */
	while (g_atomic_int_get(&c.lookups) < 200)
		g_usleep(1000);
	g_atomic_int_set(&c.stop, 1);
	g_thread_join(r1);
	g_thread_join(r2);
	if (c.failures != 0)
		fail_msg("%d failures, first: %s", c.failures, c.first_failure);
	expect_lookup(c.db, "bob@example.test", KEYSTORE_POLICY_OPPORTUNISTIC, "@example.test");
	keystore_db_close(&c.db);
	g_mutex_clear(&c.lock);
	g_free(dir);
}

typedef struct {
	GPtrArray *rows;	/* "id|account|message_id|recipients|decision|reason" */
	int64_t last_id;
	bool ordered;
	bool time_ok;
} recent_ctx;

static int collect_decision(void *p, const keystore_decision_row *r)
{
	recent_ctx *c = p;
	if (c->last_id != 0 && r->id >= c->last_id)
		c->ordered = false;
	c->last_id = r->id;
	int64_t now = (int64_t)time(NULL);
	if (r->time < now - 60 || r->time > now + 1)
		c->time_ok = false;
	g_ptr_array_add(c->rows, g_strdup_printf("%s|%s|%s|%s|%s", r->account,
						 r->message_id != NULL ? r->message_id : "(null)",
						 r->recipients, r->decision,
						 r->reason != NULL ? r->reason : "(null)"));
	return 0;
}

static GPtrArray *recent(keystore_db *db, unsigned limit)
{
	recent_ctx c = { .rows = g_ptr_array_new_with_free_func(g_free), .ordered = true,
			 .time_ok = true };
	const char *error = NULL;
	if (keystore_db_recent_decisions(db, limit, collect_decision, &c, &error) < 0)
		fail_msg("recent: %s", error);
	assert_true(c.ordered);
	assert_true(c.time_ok);
	return c.rows;
}

static void test_decisions(void **state)
{
	char *dir = state_path(state, "decisions");
	keystore_db *db = open_ok(dir);
	const char *error = NULL;
	GPtrArray *rows = recent(db, 10);
	assert_int_equal(rows->len, 0);
	g_ptr_array_free(rows, TRUE);

	keystore_decision a = { .account = "work", .message_id = "<1@example.test>",
				.recipients = "bob@example.test,carol@example.test",
				.decision = "encrypted", .reason = NULL };
	keystore_decision b = { .account = "work", .message_id = NULL,
				.recipients = "dave@example.test", .decision = "refused",
				.reason = "no usable OpenPGP key for <dave@example.test>" };
	assert_int_equal(keystore_db_log_decision(db, &a, &error), 0);
	assert_int_equal(keystore_db_log_decision(db, &b, &error), 0);
	rows = recent(db, 10);
	assert_int_equal(rows->len, 2);
	assert_string_equal(g_ptr_array_index(rows, 0),
			    "work|(null)|dave@example.test|refused|"
			    "no usable OpenPGP key for <dave@example.test>");
	assert_string_equal(g_ptr_array_index(rows, 1),
			    "work|<1@example.test>|bob@example.test,carol@example.test|encrypted|(null)");
	g_ptr_array_free(rows, TRUE);
	rows = recent(db, 1);
	assert_int_equal(rows->len, 1);
	assert_non_null(strstr(g_ptr_array_index(rows, 0), "refused"));
	g_ptr_array_free(rows, TRUE);

	/* A huge field is cut, at a character boundary. */
	GString *many = g_string_new("");
	while (many->len < 20000)
		g_string_append(many, "\xc3\xa9@example.test,");
	keystore_decision big = { .account = "work", .recipients = many->str,
				  .decision = "plain" };
	assert_int_equal(keystore_db_log_decision(db, &big, &error), 0);
	rows = recent(db, 1);
	const char *row = g_ptr_array_index(rows, 0);
	assert_true(strlen(row) < 9000);
	assert_true(g_utf8_validate(row, -1, NULL));
	g_ptr_array_free(rows, TRUE);
	g_string_free(many, TRUE);

	/* Pruning keeps exactly the newest when the limit is small. */
	keystore_db_set_decision_limit(db, 10);
	for (int i = 0; i < 50; i++) {
		char mid[32];
		snprintf(mid, sizeof(mid), "<m%d@example.test>", i);
		keystore_decision d = { .account = "work", .message_id = mid,
					.recipients = "bob@example.test", .decision = "plain" };
		assert_int_equal(keystore_db_log_decision(db, &d, &error), 0);
	}
	rows = recent(db, 1000);
	assert_int_equal(rows->len, 10);
	assert_string_equal(g_ptr_array_index(rows, 0),
			    "work|<m49@example.test>|bob@example.test|plain|(null)");
	assert_string_equal(g_ptr_array_index(rows, 9),
			    "work|<m40@example.test>|bob@example.test|plain|(null)");
	g_ptr_array_free(rows, TRUE);

	/* With a larger limit it prunes in batches: never below the limit,
	 * never more than a batch above it. */
	keystore_db_set_decision_limit(db, 640);
	for (int i = 0; i < 1000; i++) {
		keystore_decision d = { .account = "work", .recipients = "x@example.test",
					.decision = "plain" };
		assert_int_equal(keystore_db_log_decision(db, &d, &error), 0);
		if (i == 700 || i == 999) {
			rows = recent(db, 5000);
			assert_in_range(rows->len, 640, 640 + 640 / 64);
			g_ptr_array_free(rows, TRUE);
		}
	}
	keystore_db_close(&db);

	/* And they persist. */
	db = open_ok(dir);
	rows = recent(db, 5000);
	assert_in_range(rows->len, 640, 650);
	g_ptr_array_free(rows, TRUE);
	keystore_db_close(&db);
	g_free(dir);
}

/* The schema as sealpost 0.1 (version 1) created it, with what it held. */
static const char schema_v1[] =
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
	"CREATE INDEX decision_time ON decision(time);"
	"INSERT INTO policy VALUES ('bob@example.test', 'require', unixepoch());"
	"INSERT INTO policy VALUES ('@example.net', 'never', unixepoch());"
	"INSERT INTO decision (time, account, message_id, recipients, decision, reason) "
	"  VALUES (unixepoch(), 'work', '<v1@example.test>', 'bob@example.test', 'encrypted', NULL);"
	"PRAGMA user_version = 1;";

#define FPR_A "61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBEA"
#define FPR_B "1E524911ECBF73560DE3D6C63EA6AF375C0394CB"

static void test_migration_from_version_1(void **state)
{
	char *dir = state_path(state, "v1");
	char *path = g_build_filename(dir, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
	make_raw_db(path, schema_v1);
	assert_int_equal(raw_user_version(path), 1);

	keystore_db *db = open_ok(dir);
	assert_int_equal(keystore_db_schema_version(db), SCHEMA_VERSION);
	/* The rules and decisions of version 1 are all there. */
	char *all = list_all(db, 0);
	assert_non_null(strstr(all, "@example.net=never;bob@example.test=require;"));
	g_free(all);
	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_REQUIRE, "bob@example.test");
	GPtrArray *rows = recent(db, 10);
	assert_int_equal(rows->len, 1);
	assert_string_equal(g_ptr_array_index(rows, 0),
			    "work|<v1@example.test>|bob@example.test|encrypted|(null)");
	g_ptr_array_free(rows, TRUE);
	/* And the new table works. */
	const char *error = NULL;
	bool added = false;
	assert_int_equal(keystore_key_state_add(db, FPR_A, KEYSTORE_SOURCE_MANUAL,
						KEYSTORE_ACCEPTANCE_UNVERIFIED, &added, &error), 0);
	assert_true(added);
	keystore_db_close(&db);
	assert_int_equal(raw_user_version(path), SCHEMA_VERSION);

	/* The schema refuses what the code never writes. */
	sqlite3 *raw = NULL;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	static const char *const bad[] = {
		"INSERT INTO key_state VALUES ('" FPR_B "', 'carrier-pigeon', 'unverified', 0)",
		"INSERT INTO key_state VALUES ('" FPR_B "', 'manual', 'maybe', 0)",
		"INSERT INTO key_state VALUES ('1e524911ecbf73560de3d6c63ea6af375c0394cb', "
		"'manual', 'verified', 0)",
		"INSERT INTO key_state VALUES ('F1A6B345AB7AFBEA', 'manual', 'verified', 0)",
		"INSERT INTO key_state VALUES ('" FPR_A "', 'manual', 'verified', 0)",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		if (sqlite3_exec(raw, bad[i], NULL, NULL, NULL) == SQLITE_OK)
			fail_msg("accepted: %s", bad[i]);
	sqlite3_close(raw);

	/* Opened again: nothing migrates twice. */
	db = open_ok(dir);
	assert_int_equal(keystore_db_schema_version(db), SCHEMA_VERSION);
	keystore_key_state ks;
	bool found = false;
	assert_int_equal(keystore_key_state_get(db, FPR_A, &ks, &found, &error), 0);
	assert_true(found);
	keystore_db_close(&db);

	/* A version-1 file that already has a key_state table of its own is
	 * not adopted: the migration fails and leaves it at 1. */
	char *dir2 = state_path(state, "v1clash");
	char *path2 = g_build_filename(dir2, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir2, 0700), 0);
	char *clash = g_strconcat(schema_v1, "CREATE TABLE key_state (x TEXT);", NULL);
	make_raw_db(path2, clash);
	error = NULL;
	assert_null(keystore_db_open(dir2, &error));
	assert_one_line(error);
	assert_non_null(strstr(error, "version 2"));
	assert_int_equal(raw_user_version(path2), 1);
	g_free(clash);
	g_free(path2);
	g_free(dir2);
	g_free(path);
	g_free(dir);
}

/* Version 3 as sealpost wrote it: the tables of versions 1-3 with rows. */
static const char schema_v3_tail[] =
	"CREATE TABLE key_state ("
	"  fingerprint TEXT PRIMARY KEY"
	"    CHECK (length(fingerprint) IN (40, 64) AND fingerprint NOT GLOB '*[^0-9A-F]*'),"
	"  source TEXT NOT NULL CHECK (source IN ('manual', 'autocrypt', 'wkd', 'keyserver')),"
	"  acceptance TEXT NOT NULL CHECK (acceptance IN ('unverified', 'verified', 'rejected')),"
	"  updated INTEGER NOT NULL"
	");"
	"CREATE TABLE view_pin ("
	"  account TEXT NOT NULL,"
	"  mailbox BLOB NOT NULL,"
	"  uidvalidity INTEGER NOT NULL CHECK (uidvalidity BETWEEN 1 AND 4294967295),"
	"  uid INTEGER NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),"
	"  signature TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  PRIMARY KEY (account, mailbox, uidvalidity, uid)"
	") WITHOUT ROWID;"
	"INSERT INTO key_state VALUES ('" FPR_A "', 'manual', 'verified', unixepoch());"
	"INSERT INTO view_pin VALUES ('work', X'494E424F58', 7, 42, 'good bob', unixepoch());"
	"PRAGMA user_version = 3;";

static void test_migration_from_version_3(void **state)
{
	char *dir = state_path(state, "v3");
	char *path = g_build_filename(dir, "sealpost.db", NULL);
	assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
	char *sql = g_strconcat(schema_v1, schema_v3_tail, NULL);
	make_raw_db(path, sql);
	g_free(sql);
	assert_int_equal(raw_user_version(path), 3);

	keystore_db *db = open_ok(dir);
	assert_int_equal(keystore_db_schema_version(db), SCHEMA_VERSION);
	/* Everything of version 3 is kept. */
	expect_lookup(db, "bob@example.test", KEYSTORE_POLICY_REQUIRE, "bob@example.test");
	GPtrArray *rows = recent(db, 10);
	assert_int_equal(rows->len, 1);
	g_ptr_array_free(rows, TRUE);
	const char *error = NULL;
	keystore_key_state ks;
	bool found = false;
	assert_int_equal(keystore_key_state_get(db, FPR_A, &ks, &found, &error), 0);
	assert_true(found);
	assert_int_equal(ks.acceptance, KEYSTORE_ACCEPTANCE_VERIFIED);
	char *sig = NULL;
	assert_int_equal(keystore_view_pin_get(db, "work", "INBOX", 5, 7, 42, &sig, &error), 0);
	assert_string_equal(sig, "good bob");
	g_free(sig);

	/* The Autocrypt peer table works and gives back what it got. */
	keystore_autocrypt_peer peer = {
		.account = "alice@example.test", .addr = "bob@example.test",
		.last_seen = 2000, .autocrypt_timestamp = 1000,
		.public_key = (unsigned char *)"\x99\x01\x02", .public_key_len = 3,
		.prefer_mutual = true, .gossip_timestamp = 0,
	};
	g_strlcpy(peer.public_key_fpr, FPR_B, sizeof(peer.public_key_fpr));
	assert_int_equal(keystore_autocrypt_peer_put(db, &peer, &error), 0);
	keystore_autocrypt_peer got;
	assert_int_equal(keystore_autocrypt_peer_get(db, "alice@example.test", "bob@example.test",
						     &got, &found, &error), 0);
	assert_true(found);
	assert_int_equal(got.last_seen, 2000);
	assert_int_equal(got.autocrypt_timestamp, 1000);
	assert_int_equal(got.public_key_len, 3);
	assert_memory_equal(got.public_key, "\x99\x01\x02", 3);
	assert_string_equal(got.public_key_fpr, FPR_B);
	assert_true(got.prefer_mutual);
	assert_null(got.gossip_key);
	assert_string_equal(got.gossip_key_fpr, "");
	keystore_autocrypt_peer_clear(&got);
	assert_int_equal(keystore_autocrypt_peer_get(db, "other@example.test", "bob@example.test",
						     &got, &found, &error), 0);
	assert_false(found);
	unsigned peers = 0, with_key = 0;
	assert_int_equal(keystore_autocrypt_peer_count(db, &peers, &with_key, &error), 0);
	assert_int_equal(peers, 1);
	assert_int_equal(with_key, 1);

	/* Pending changes: added once per (address, key), by id and fpr. */
	keystore_pending_key p = {
		.account = "alice@example.test", .addr = "bob@example.test",
		.keydata = (unsigned char *)"\x99\x01\x03", .keydata_len = 3,
		.source = KEYSTORE_SOURCE_AUTOCRYPT,
	};
	g_strlcpy(p.old_fingerprint, FPR_A, sizeof(p.old_fingerprint));
	g_strlcpy(p.new_fingerprint, FPR_B, sizeof(p.new_fingerprint));
	int64_t id = 0, id2 = 0;
	assert_int_equal(keystore_pending_add(db, &p, &id, &error), 0);
	assert_true(id > 0);
	assert_int_equal(keystore_pending_add(db, &p, &id2, &error), 0);
	assert_int_equal(id2, id);
	p.source = KEYSTORE_SOURCE_MANUAL;
	assert_int_equal(keystore_pending_add(db, &p, NULL, &error), -1);
	keystore_pending_key q;
	assert_int_equal(keystore_pending_get(db, 0, FPR_B, &q, &found, &error), 0);
	assert_true(found);
	assert_int_equal(q.id, id);
	assert_string_equal(q.addr, "bob@example.test");
	assert_string_equal(q.old_fingerprint, FPR_A);
	assert_int_equal(q.source, KEYSTORE_SOURCE_AUTOCRYPT);
	assert_int_equal(q.keydata_len, 3);
	keystore_pending_key_clear(&q);
	bool existed = false;
	assert_int_equal(keystore_pending_remove(db, id, &existed, &error), 0);
	assert_true(existed);
	assert_int_equal(keystore_pending_get(db, id, NULL, &q, &found, &error), 0);
	assert_false(found);
	keystore_db_close(&db);
	assert_int_equal(raw_user_version(path), SCHEMA_VERSION);

	/* The schema refuses what the code never writes. */
	sqlite3 *raw = NULL;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	static const char *const bad[] = {
		"INSERT INTO autocrypt_peer (account, addr, prefer_encrypt, updated) "
		"VALUES ('a', 'b@c', 'always', 0)",
		"INSERT INTO autocrypt_peer (account, addr, updated) VALUES ('a', 'nobody', 0)",
		"INSERT INTO pending_key (account, addr, old_fingerprint, new_fingerprint, keydata, "
		"source, created) VALUES ('a', 'b@c', 'x', 'abc', X'00', 'autocrypt', 0)",
		"INSERT INTO pending_key (account, addr, old_fingerprint, new_fingerprint, keydata, "
		"source, created) VALUES ('a', 'b@c', 'x', '" FPR_A "', X'00', 'manual', 0)",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		if (sqlite3_exec(raw, bad[i], NULL, NULL, NULL) == SQLITE_OK)
			fail_msg("accepted: %s", bad[i]);
	sqlite3_close(raw);
	g_free(path);
	g_free(dir);
}

static void test_fingerprint_normalise(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;	/* out NULL: refused */
	} cases[] = {
		{ FPR_A, FPR_A },
		{ "61be9bb5cdbe5ac00b02dd23f1a6b345ab7afbea", FPR_A },
		{ "61BE 9BB5 CDBE 5AC0 0B02  DD23 F1A6 B345 AB7A FBEA", FPR_A },
		{ " 61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBEA ", FPR_A },
		{ "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF",
		  "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF" },
		{ "", NULL },
		{ "   ", NULL },
		{ "F1A6B345AB7AFBEA", NULL },			/* a key ID */
		{ "0x61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBEA", NULL },
		{ "61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBE", NULL },	/* 39 */
		{ "61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBEAA", NULL },	/* 41 */
		{ "61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBEG", NULL },
		{ "61BE9BB5CDBE5AC00B02DD23F1A6B345AB7AFBE\n", NULL },
		{ "bob@example.test", NULL },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		char out[65];
		const char *error = NULL;
		int ret = keystore_fingerprint_normalise(cases[i].in, out, sizeof(out), &error);
		if (cases[i].out != NULL) {
			if (ret != 0)
				fail_msg("refused '%s': %s", cases[i].in, error);
			assert_string_equal(out, cases[i].out);
		} else {
			if (ret == 0)
				fail_msg("accepted '%s' as '%s'", cases[i].in, out);
			assert_one_line(error);
		}
	}
	/* A long run of digits is refused without overrunning anything. */
	char longfpr[300], out[65];
	const char *error = NULL;
	memset(longfpr, 'A', sizeof(longfpr) - 1);
	longfpr[sizeof(longfpr) - 1] = '\0';
	assert_int_equal(keystore_fingerprint_normalise(longfpr, out, sizeof(out), &error), -1);
	/* Too small an output is refused too. */
	char small[40];
	assert_int_equal(keystore_fingerprint_normalise(FPR_A, small, sizeof(small), &error), -1);
	assert_int_equal(keystore_fingerprint_normalise(NULL, out, sizeof(out), &error), -1);

	assert_string_equal(keystore_key_source_name(KEYSTORE_SOURCE_MANUAL), "manual");
	assert_string_equal(keystore_key_source_name(KEYSTORE_SOURCE_AUTOCRYPT), "autocrypt");
	assert_string_equal(keystore_key_source_name(KEYSTORE_SOURCE_WKD), "wkd");
	assert_string_equal(keystore_key_source_name(KEYSTORE_SOURCE_KEYSERVER), "keyserver");
	assert_string_equal(keystore_acceptance_name(KEYSTORE_ACCEPTANCE_UNVERIFIED), "unverified");
	assert_string_equal(keystore_acceptance_name(KEYSTORE_ACCEPTANCE_VERIFIED), "verified");
	assert_string_equal(keystore_acceptance_name(KEYSTORE_ACCEPTANCE_REJECTED), "rejected");
}

static void expect_state(keystore_db *db, const char *fpr, bool want_found,
			 keystore_key_source want_source, keystore_acceptance want_acceptance)
{
	keystore_key_state ks;
	bool found = !want_found;
	const char *error = NULL;
	if (keystore_key_state_get(db, fpr, &ks, &found, &error) < 0)
		fail_msg("get %s: %s", fpr, error);
	if (found != want_found || ks.source != want_source || ks.acceptance != want_acceptance)
		fail_msg("%s: got found=%d %s/%s, expected found=%d %s/%s", fpr, found,
			 keystore_key_source_name(ks.source), keystore_acceptance_name(ks.acceptance),
			 want_found, keystore_key_source_name(want_source),
			 keystore_acceptance_name(want_acceptance));
	int64_t now = (int64_t)time(NULL);
	if (found && (ks.updated < now - 60 || ks.updated > now + 1))
		fail_msg("%s: updated %lld", fpr, (long long)ks.updated);
}

static int collect_state(void *p, const keystore_key_state *ks)
{
	g_string_append_printf((GString *)p, "%s=%s/%s;", ks->fingerprint,
			       keystore_key_source_name(ks->source),
			       keystore_acceptance_name(ks->acceptance));
	return 0;
}

static char *list_states(keystore_db *db)
{
	GString *out = g_string_new("");
	const char *error = NULL;
	if (keystore_key_state_list(db, collect_state, out, &error) < 0)
		fail_msg("list: %s", error);
	return g_string_free(out, FALSE);
}

static void test_key_state(void **state)
{
	char *dir = state_path(state, "keys");
	keystore_db *db = open_ok(dir);
	const char *error = NULL;
	bool added = true, existed = true;

	/* Unknown: the defaults, not found. */
	expect_state(db, FPR_A, false, KEYSTORE_SOURCE_MANUAL, KEYSTORE_ACCEPTANCE_UNVERIFIED);
	char *all = list_states(db);
	assert_string_equal(all, "");
	g_free(all);

	/* Added in any spelling, stored normalised. */
	assert_int_equal(keystore_key_state_add(db, "61be 9bb5 cdbe 5ac0 0b02 dd23 f1a6 b345 ab7a fbea",
						KEYSTORE_SOURCE_AUTOCRYPT,
						KEYSTORE_ACCEPTANCE_UNVERIFIED, &added, &error), 0);
	assert_true(added);
	expect_state(db, FPR_A, true, KEYSTORE_SOURCE_AUTOCRYPT, KEYSTORE_ACCEPTANCE_UNVERIFIED);

	/* A key known already keeps its state when added again. */
	assert_int_equal(keystore_key_state_set_acceptance(db, FPR_A, KEYSTORE_ACCEPTANCE_VERIFIED,
							   &error), 0);
	expect_state(db, FPR_A, true, KEYSTORE_SOURCE_AUTOCRYPT, KEYSTORE_ACCEPTANCE_VERIFIED);
	assert_int_equal(keystore_key_state_add(db, FPR_A, KEYSTORE_SOURCE_MANUAL,
						KEYSTORE_ACCEPTANCE_UNVERIFIED, &added, &error), 0);
	assert_false(added);
	expect_state(db, FPR_A, true, KEYSTORE_SOURCE_AUTOCRYPT, KEYSTORE_ACCEPTANCE_VERIFIED);
	assert_int_equal(keystore_key_state_add(db, FPR_A, KEYSTORE_SOURCE_MANUAL,
						KEYSTORE_ACCEPTANCE_UNVERIFIED, NULL, &error), 0);

	/* Acceptance of a key without state records it as manual. */
	assert_int_equal(keystore_key_state_set_acceptance(db, FPR_B, KEYSTORE_ACCEPTANCE_REJECTED,
							   &error), 0);
	expect_state(db, FPR_B, true, KEYSTORE_SOURCE_MANUAL, KEYSTORE_ACCEPTANCE_REJECTED);
	assert_int_equal(keystore_key_state_set_acceptance(db, FPR_B, KEYSTORE_ACCEPTANCE_UNVERIFIED,
							   &error), 0);
	expect_state(db, FPR_B, true, KEYSTORE_SOURCE_MANUAL, KEYSTORE_ACCEPTANCE_UNVERIFIED);

	all = list_states(db);
	assert_string_equal(all, FPR_B "=manual/unverified;" FPR_A "=autocrypt/verified;");
	g_free(all);

	/* Bad fingerprints are refused with a reason, and nothing is written. */
	error = NULL;
	assert_int_equal(keystore_key_state_add(db, "F1A6B345AB7AFBEA", KEYSTORE_SOURCE_MANUAL,
						KEYSTORE_ACCEPTANCE_UNVERIFIED, &added, &error), -1);
	assert_one_line(error);
	assert_non_null(strstr(error, "fingerprint"));
	error = NULL;
	assert_int_equal(keystore_key_state_set_acceptance(db, "nonsense",
							   KEYSTORE_ACCEPTANCE_REJECTED, &error), -1);
	assert_one_line(error);
	keystore_key_state ks;
	bool found;
	assert_int_equal(keystore_key_state_get(db, "", &ks, &found, &error), -1);
	assert_int_equal(keystore_key_state_forget(db, "xyz", &existed, &error), -1);

	/* Forgetting tells whether there was a state. */
	assert_int_equal(keystore_key_state_forget(db, FPR_B, &existed, &error), 0);
	assert_true(existed);
	assert_int_equal(keystore_key_state_forget(db, FPR_B, &existed, &error), 0);
	assert_false(existed);
	assert_int_equal(keystore_key_state_forget(db, FPR_B, NULL, &error), 0);
	expect_state(db, FPR_B, false, KEYSTORE_SOURCE_MANUAL, KEYSTORE_ACCEPTANCE_UNVERIFIED);
	keystore_db_close(&db);

	/* It persists. */
	db = open_ok(dir);
	expect_state(db, FPR_A, true, KEYSTORE_SOURCE_AUTOCRYPT, KEYSTORE_ACCEPTANCE_VERIFIED);
	all = list_states(db);
	assert_string_equal(all, FPR_A "=autocrypt/verified;");
	g_free(all);
	keystore_db_close(&db);
	g_free(dir);
}

/* The server's cache of rejected keys follows the data version: it must
 * change when another process writes, and only then. */
static void test_data_version(void **state)
{
	char *dir = state_path(state, "version");
	keystore_db *server = open_ok(dir);
	keystore_db *cli = open_ok(dir);
	const char *error = NULL;
	int64_t v0 = keystore_db_data_version(server, &error);
	assert_true(v0 >= 0);
	assert_int_equal(keystore_db_data_version(server, &error), v0);

	/* The server's own writes leave it alone. */
	keystore_decision d = { .account = "a", .recipients = "b@example.test", .decision = "plain" };
	assert_int_equal(keystore_db_log_decision(server, &d, &error), 0);
	assert_int_equal(keystore_db_data_version(server, &error), v0);

	/* Another connection's commit changes it, once. */
	assert_int_equal(keystore_key_state_set_acceptance(cli, FPR_A, KEYSTORE_ACCEPTANCE_REJECTED,
							   &error), 0);
	int64_t v1 = keystore_db_data_version(server, &error);
	assert_true(v1 >= 0);
	assert_true(v1 != v0);
	assert_int_equal(keystore_db_data_version(server, &error), v1);
	expect_state(server, FPR_A, true, KEYSTORE_SOURCE_MANUAL, KEYSTORE_ACCEPTANCE_REJECTED);
	keystore_db_close(&cli);
	keystore_db_close(&server);
	g_free(dir);
}

/* The first signature status pinned for a message stays; another
 * session's later put gets the first one back. */
static void test_view_pins(void **state)
{
	char *dir = state_path(state, "pins");
	keystore_db *a = open_ok(dir);
	keystore_db *b = open_ok(dir);
	const char *error = NULL;
	char *got = NULL;
	static const char inbox[] = "INBOX", other[] = "&AOQ-rger";

	assert_int_equal(keystore_view_pin_get(a, "acct", inbox, 5, 7, 42, &got, &error), 0);
	assert_null(got);
	assert_int_equal(keystore_view_pin_put(a, "acct", inbox, 5, 7, 42, "none", &got, &error), 0);
	assert_string_equal(got, "none");
	g_free(got);
	/* Another handle (another process) comes second: the first stays. */
	assert_int_equal(keystore_view_pin_put(b, "acct", inbox, 5, 7, 42,
					       "good 0123 <bob@example.test>", &got, &error), 0);
	assert_string_equal(got, "none");
	g_free(got);
	assert_int_equal(keystore_view_pin_get(b, "acct", inbox, 5, 7, 42, &got, &error), 0);
	assert_string_equal(got, "none");
	g_free(got);
	/* Each part of the key counts. */
	const struct {
		const char *account;
		const char *mailbox;
		uint32_t uidvalidity, uid;
	} others[] = {
		{ "acct2", inbox, 7, 42 }, { "acct", other, 7, 42 },
		{ "acct", inbox, 8, 42 }, { "acct", inbox, 7, 43 },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(others); i++) {
		assert_int_equal(keystore_view_pin_get(a, others[i].account, others[i].mailbox,
						       strlen(others[i].mailbox),
						       others[i].uidvalidity, others[i].uid,
						       &got, &error), 0);
		assert_null(got);
	}
	/* The mailbox is compared as bytes, case and all. */
	assert_int_equal(keystore_view_pin_get(a, "acct", "inbox", 5, 7, 42, &got, &error), 0);
	assert_null(got);
	/* Refused: zero UID/UIDVALIDITY, multi-line or empty status. */
	assert_int_equal(keystore_view_pin_put(a, "acct", inbox, 5, 0, 1, "none", &got, &error), -1);
	assert_non_null(strstr(error, "UIDVALIDITY"));
	assert_int_equal(keystore_view_pin_put(a, "acct", inbox, 5, 1, 0, "none", &got, &error), -1);
	assert_int_equal(keystore_view_pin_put(a, "acct", inbox, 5, 1, 1, "good\r\nX: y", &got,
					       &error), -1);
	assert_non_null(strstr(error, "one line"));
	assert_int_equal(keystore_view_pin_put(a, "acct", inbox, 5, 1, 1, "", &got, &error), -1);
	assert_null(got);
	/* Survives reopening. */
	keystore_db_close(&a);
	keystore_db_close(&b);
	a = open_ok(dir);
	assert_int_equal(keystore_view_pin_get(a, "acct", inbox, 5, 7, 42, &got, &error), 0);
	assert_string_equal(got, "none");
	g_free(got);
	keystore_db_close(&a);
	g_free(dir);
}

/* Two handles in one process (the server's and the API's), and another
 * process opening and closing the database meanwhile: opening the second
 * handle must not drop the first one's locks, or the other process takes
 * itself for the last user, deletes the live WAL, and the first handle's
 * later commits are lost to everyone else. */
static void test_two_handles_in_one_process(void **state)
{
	char *dir = state_path(state, "two");
	const char *error = NULL;
	keystore_db *a = open_ok(dir);
	keystore_db *b = open_ok(dir);
	assert_int_equal(keystore_policy_set(a, "one@example.test", KEYSTORE_POLICY_REQUIRE,
					     &error), 0);
	/* Another process (not a fork: a fork shares SQLite's view of
	 * this process's locks) reads and closes. */
	char *db_path = g_strconcat(dir, "/sealpost.db", NULL);
	char *script = g_strdup_printf(
		"import sqlite3, sys\n"
		"c = sqlite3.connect(sys.argv[1])\n"
		"r = c.execute(\"SELECT policy FROM policy WHERE target = 'one@example.test'\").fetchone()\n"
		"c.close()\n"
		"sys.exit(0 if r == ('require',) else 1)\n");
	char *argv[] = { (char *)"python3", (char *)"-c", script, db_path, NULL };
	int status = -1;
	GError *gerr = NULL;
	if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
			  &status, &gerr))
		fail_msg("python3: %s", gerr->message);
	assert_true(g_spawn_check_wait_status(status, NULL));
	g_free(script);
	g_free(db_path);
	char *wal = g_strconcat(dir, "/sealpost.db-wal", NULL);
	assert_true(g_file_test(wal, G_FILE_TEST_EXISTS));
	g_free(wal);
	/* Written after the other process closed: seen by a fresh handle. */
	assert_int_equal(keystore_policy_set(a, "two@example.test", KEYSTORE_POLICY_NEVER,
					     &error), 0);
	keystore_db *d = open_ok(dir);
	expect_lookup(d, "two@example.test", KEYSTORE_POLICY_NEVER, "two@example.test");
	expect_lookup(b, "two@example.test", KEYSTORE_POLICY_NEVER, "two@example.test");
	keystore_db_close(&d);
	keystore_db_close(&b);
	keystore_db_close(&a);
	g_free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_names),
		cmocka_unit_test(test_target_normalise),
		cmocka_unit_test_setup_teardown(test_open_creates_private_files, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_open_failures, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_not_a_database, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_migration_from_version_0, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_rules, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_second_handle_sees_changes, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_locked, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_threads, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_decisions, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_migration_from_version_1, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_migration_from_version_3, setup_dir, teardown_dir),
		cmocka_unit_test(test_fingerprint_normalise),
		cmocka_unit_test_setup_teardown(test_key_state, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_data_version, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_view_pins, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_two_handles_in_one_process, setup_dir,
						teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
