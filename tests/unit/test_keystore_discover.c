/* Unit tests of key discovery's rules: when a cached answer stands, the rate
 * limit, Assuan data unescaping, which addresses may be asked for, the cache
 * table, and the configuration keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <ftw.h>
#include <glib.h>
#include <sys/stat.h>

#include "config.h"
#include "keystore_db.h"
#include "keystore_discover.h"

static const keystore_discover_config cfg = {
	.methods = KEYSTORE_DISCOVER_WKD,
	.timeout = 5,
	.negative_ttl = 3600,
	.positive_ttl = 86400,
	.rate = 3,
};

static keystore_discovery_row row_of(keystore_discovery_result r, int64_t checked)
{
	keystore_discovery_row row = { .checked = checked, .result = r };
	return row;
}

static void test_cache_never_looked_up(void **state)
{
	(void)state;
	assert_int_equal(keystore_discover_check_cache(NULL, false, 1000000, &cfg),
			 KEYSTORE_DISCOVER_DUE);
	/* A key the user imported is never looked up behind his back. */
	assert_int_equal(keystore_discover_check_cache(NULL, true, 1000000, &cfg),
			 KEYSTORE_DISCOVER_FRESH);
}

static void test_cache_negative(void **state)
{
	(void)state;
	int64_t now = 1000000;
	for (int r = KEYSTORE_DISCOVERY_NONE; r <= KEYSTORE_DISCOVERY_ERROR; r++) {
		keystore_discovery_row row = row_of((keystore_discovery_result)r, now - 10);
		assert_int_equal(keystore_discover_check_cache(&row, false, now, &cfg),
				 KEYSTORE_DISCOVER_FRESH);
		row.checked = now - 3599;
		assert_int_equal(keystore_discover_check_cache(&row, false, now, &cfg),
				 KEYSTORE_DISCOVER_FRESH);
		row.checked = now - 3600;
		assert_int_equal(keystore_discover_check_cache(&row, false, now, &cfg),
				 KEYSTORE_DISCOVER_DUE);
	}
	keystore_discover_config zero = cfg;
	zero.negative_ttl = 0;
	keystore_discovery_row row = row_of(KEYSTORE_DISCOVERY_NONE, now);
	assert_int_equal(keystore_discover_check_cache(&row, false, now, &zero),
			 KEYSTORE_DISCOVER_DUE);
}

static void test_cache_positive(void **state)
{
	(void)state;
	int64_t now = 5000000;
	keystore_discovery_row row = row_of(KEYSTORE_DISCOVERY_FOUND, now - 3600);
	assert_int_equal(keystore_discover_check_cache(&row, true, now, &cfg),
			 KEYSTORE_DISCOVER_FRESH);
	row.checked = now - 86400;
	assert_int_equal(keystore_discover_check_cache(&row, true, now, &cfg),
			 KEYSTORE_DISCOVER_DUE);
	/* Found, but not usable here (pending, rejected, deleted): asked
	 * again like a miss. */
	row.checked = now - 3599;
	assert_int_equal(keystore_discover_check_cache(&row, false, now, &cfg),
			 KEYSTORE_DISCOVER_FRESH);
	row.checked = now - 3600;
	assert_int_equal(keystore_discover_check_cache(&row, false, now, &cfg),
			 KEYSTORE_DISCOVER_DUE);
	/* The key is still usable but the last lookup missed or failed (the
	 * key left the server, a network failure): no hurry either. */
	for (int r = KEYSTORE_DISCOVERY_NONE; r <= KEYSTORE_DISCOVERY_ERROR; r++) {
		row = row_of((keystore_discovery_result)r, now - 3600);
		assert_int_equal(keystore_discover_check_cache(&row, true, now, &cfg),
				 KEYSTORE_DISCOVER_FRESH);
		row.checked = now - 86400;
		assert_int_equal(keystore_discover_check_cache(&row, true, now, &cfg),
				 KEYSTORE_DISCOVER_DUE);
	}
}

static void test_cache_clock_went_back(void **state)
{
	(void)state;
	keystore_discovery_row row = row_of(KEYSTORE_DISCOVERY_NONE, 2000);
	assert_int_equal(keystore_discover_check_cache(&row, false, 1000, &cfg),
			 KEYSTORE_DISCOVER_DUE);
}

static void test_rate(void **state)
{
	(void)state;
	keystore_discover_rate r = { 0 };
	int64_t t = 60 * 1000;
	for (int i = 0; i < 3; i++)
		assert_true(keystore_discover_rate_take(&r, 3, t + i));
	assert_false(keystore_discover_rate_take(&r, 3, t + 30));
	assert_false(keystore_discover_rate_take(&r, 3, t + 59));
	/* The next minute starts afresh. */
	assert_true(keystore_discover_rate_take(&r, 3, t + 60));
	assert_int_equal(r.used, 1);
	/* 0: no limit. */
	for (int i = 0; i < 1000; i++)
		assert_true(keystore_discover_rate_take(&r, 0, t + 60));
}

static void test_unescape(void **state)
{
	(void)state;
	unsigned char out[16];
	size_t n = 0;
	const char *line = "a%0Ab%25%0d%00z";
	assert_int_equal(keystore_discover_unescape(line, strlen(line), out, &n, sizeof(out)), 0);
	assert_int_equal(n, 7);
	assert_memory_equal(out, "a\nb%\r\0z", 7);
	/* Appends. */
	assert_int_equal(keystore_discover_unescape("xy", 2, out, &n, sizeof(out)), 0);
	assert_int_equal(n, 9);
	assert_memory_equal(out + 7, "xy", 2);
	/* Malformed escapes, truncated ones, and too much data. */
	static const char *const bad[] = { "%", "%4", "ab%zz", "%g0", "%0" };
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		n = 0;
		assert_int_equal(keystore_discover_unescape(bad[i], strlen(bad[i]), out, &n,
							    sizeof(out)), -1);
	}
	n = 0;
	assert_int_equal(keystore_discover_unescape("0123456789abcdefg", 17, out, &n, 16), -1);
	n = 0;
	assert_int_equal(keystore_discover_unescape("0123456789abcde%41", 18, out, &n, 16), 0);
	assert_int_equal(n, 16);
	assert_int_equal(out[15], 'A');
	/* Never reads past len: an escape cut by len is malformed. */
	n = 0;
	assert_int_equal(keystore_discover_unescape("a%41", 3, out, &n, sizeof(out)), -1);
}

/* Feeds text whole, then byte by byte: the same outcome, "need more"
 * until the reply's last line ends. */
static int feed_both(const char *text, size_t len, size_t data_max,
		     keystore_discover_reply *whole_r, size_t *used_r)
{
	const char *error = NULL;
	keystore_discover_reply_init(whole_r, data_max);
	int ret = keystore_discover_reply_feed(whole_r, text, len, used_r, &error);

	keystore_discover_reply r;
	keystore_discover_reply_init(&r, data_max);
	int b = 0;
	size_t i = 0;
	for (; i < len && b == 0; i++) {
		size_t used = 99;
		b = keystore_discover_reply_feed(&r, text + i, 1, &used, &error);
		assert_int_equal(used, b < 0 ? used : 1);
	}
	assert_int_equal(b, ret);
	if (ret == 1) {
		assert_int_equal(i, *used_r);
		assert_int_equal(r.err, whole_r->err);
		assert_int_equal(r.code, whole_r->code);
		assert_string_equal(r.text, whole_r->text);
		assert_int_equal(r.data_len, whole_r->data_len);
		if (r.data_len > 0)
			assert_memory_equal(r.data, whole_r->data, r.data_len);
	}
	keystore_discover_reply_clear(&r);
	return ret;
}

static void test_reply(void **state)
{
	(void)state;
	keystore_discover_reply r;
	size_t used;
	const char greeting[] = "# Home: /tmp/h\n# Config: /tmp/h/dirmngr.conf\n"
		"OK Dirmngr 2.2.40 at your service\n";
	assert_int_equal(feed_both(greeting, strlen(greeting), 0, &r, &used), 1);
	assert_int_equal(used, strlen(greeting));
	assert_false(r.err);
	keystore_discover_reply_clear(&r);

	/* Data with every escape and a raw NUL; what follows OK is left. */
	const char data[] = "S SOURCE https://openpgpkey.example.org\nD \x98\x33%0A\0x\n"
		"D %25%0D\nOK\nOK next";
	size_t len = sizeof(data) - 1;
	assert_int_equal(feed_both(data, len, 100, &r, &used), 1);
	assert_int_equal(used, len - strlen("OK next"));
	assert_int_equal(r.data_len, 7);
	assert_memory_equal(r.data, "\x98\x33\n\0x%\r", 7);
	keystore_discover_reply_clear(&r);

	const char err[] = "S SOURCE x\nERR 167772218 No data <Dirmngr>\n";
	assert_int_equal(feed_both(err, strlen(err), 100, &r, &used), 1);
	assert_true(r.err);
	assert_int_equal(r.code, 58);
	assert_string_equal(r.text, "No data <Dirmngr>");
	keystore_discover_reply_clear(&r);

	/* Not yet the end: OKAY is not OK, a line without its newline. */
	const char more[] = "OKAY\nOK";
	assert_int_equal(feed_both(more, strlen(more), 100, &r, &used), 0);
	assert_int_equal(used, strlen(more));
	keystore_discover_reply_clear(&r);

	/* Malformed: an inquiry, a bad escape, too much data, data where
	 * none is taken, an overlong line. */
	static const char *const bad[] = {
		"INQUIRE KEYBLOCK\n", "D %zz\nOK\n", "D 0123456789ABCDEF0\nOK\n", "D %41%4\nOK\n",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		assert_int_equal(feed_both(bad[i], strlen(bad[i]), 16, &r, &used), -1);
		keystore_discover_reply_clear(&r);
	}
	assert_int_equal(feed_both("D x\nOK\n", 7, 0, &r, &used), -1);
	keystore_discover_reply_clear(&r);
	char *longline = g_strnfill(KEYSTORE_DISCOVER_LINE_MAX + 1, 'S');
	assert_int_equal(feed_both(longline, strlen(longline), 16, &r, &used), -1);
	keystore_discover_reply_clear(&r);
	g_free(longline);
	/* Data across lines up to the limit exactly. */
	GString *many = g_string_new("");
	for (int i = 0; i < 4; i++)
		g_string_append(many, "D abcd\n");
	g_string_append(many, "OK\n");
	assert_int_equal(feed_both(many->str, many->len, 16, &r, &used), 1);
	assert_int_equal(r.data_len, 16);
	keystore_discover_reply_clear(&r);
	g_string_append(many, "");
	g_string_insert(many, 0, "D e\n");
	assert_int_equal(feed_both(many->str, many->len, 16, &r, &used), -1);
	keystore_discover_reply_clear(&r);
	g_string_free(many, TRUE);
}

static void test_address_ok(void **state)
{
	(void)state;
	static const char *const good[] = {
		"bob@example.org", "Bob.Smith+tag@Example.ORG", "x@y", "\xc3\xa9t\xc3\xa9@example.org",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(good); i++)
		assert_true(keystore_discover_address_ok(good[i]));
	static const char *const bad[] = {
		"", "bob", "@example.org", "bob@", "bob@a@b", "bob @example.org",
		"bob@example.org\n", "bob@example.org && mbox =~ x", "<bob@example.org>",
		"bob%0A@example.org", "bob\"@example.org", "bob@exa\x7fmple.org",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		assert_false(keystore_discover_address_ok(bad[i]));
	char *longer = g_strnfill(330, 'a');
	longer[5] = '@';
	assert_false(keystore_discover_address_ok(longer));
	g_free(longer);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void test_db_cache(void **state)
{
	(void)state;
	char *dir = g_dir_make_tmp("sp-disc-XXXXXX", NULL);
	assert_non_null(dir);
	const char *error = NULL;
	keystore_db *db = keystore_db_open(dir, &error);
	assert_non_null(db);
	keystore_discovery_row row;
	bool found = true;
	assert_int_equal(keystore_discovery_get(db, "bob@example.org", &row, &found, &error), 0);
	assert_false(found);

	keystore_discovery_row put = { .checked = 1234, .result = KEYSTORE_DISCOVERY_NONE };
	snprintf(put.detail, sizeof(put.detail), "not-found: WKD: no key");
	assert_int_equal(keystore_discovery_put(db, "bob@example.org", &put, &error), 0);
	assert_int_equal(keystore_discovery_get(db, "bob@example.org", &row, &found, &error), 0);
	assert_true(found);
	assert_int_equal(row.checked, 1234);
	assert_int_equal(row.result, KEYSTORE_DISCOVERY_NONE);
	assert_string_equal(row.fingerprint, "");
	assert_string_equal(row.detail, "not-found: WKD: no key");

	/* Replaced by the next lookup's answer. */
	keystore_discovery_row hit = { .checked = 2000, .result = KEYSTORE_DISCOVERY_FOUND,
				       .method = KEYSTORE_SOURCE_KEYSERVER };
	snprintf(hit.fingerprint, sizeof(hit.fingerprint), "%s",
		 "0123456789ABCDEF0123456789ABCDEF01234567");
	assert_int_equal(keystore_discovery_put(db, "bob@example.org", &hit, &error), 0);
	assert_int_equal(keystore_discovery_get(db, "bob@example.org", &row, &found, &error), 0);
	assert_int_equal(row.result, KEYSTORE_DISCOVERY_FOUND);
	assert_int_equal(row.method, KEYSTORE_SOURCE_KEYSERVER);
	assert_string_equal(row.fingerprint, hit.fingerprint);
	assert_string_equal(row.detail, "");
	/* Other addresses are apart; the address is taken as given. */
	assert_int_equal(keystore_discovery_get(db, "BOB@example.org", &row, &found, &error), 0);
	assert_false(found);
	assert_int_equal(keystore_discovery_put(db, "no-at-sign", &put, &error), -1);

	assert_int_equal(keystore_discovery_forget(db, "bob@example.org", &error), 0);
	assert_int_equal(keystore_discovery_get(db, "bob@example.org", &row, &found, &error), 0);
	assert_false(found);
	keystore_db_close(&db);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	g_free(dir);
}

static config *load(const char *text, const char **error_r)
{
	return config_load_data(text, strlen(text), "test.conf", error_r);
}

#define ACCOUNT "[account a]\naddress = a@example.org\nsmtp_listen = 127.0.0.1:2525\n" \
	"smtp_upstream = smtp://smtp.example.org:2525\n"

static void test_config(void **state)
{
	(void)state;
	const char *error = NULL;
	config *c = load("[sealpost]\nstate_dir = /tmp/x\n" ACCOUNT, &error);
	if (c == NULL)
		fail_msg("%s", error);
	/* Off unless asked for; the rest has its defaults. */
	assert_int_equal(c->discovery.methods, 0);
	assert_null(c->discovery.keyserver);
	assert_int_equal(c->discovery.timeout, KEYSTORE_DISCOVER_TIMEOUT);
	assert_int_equal(c->discovery.negative_ttl, KEYSTORE_DISCOVER_NEGATIVE_TTL);
	assert_int_equal(c->discovery.positive_ttl, KEYSTORE_DISCOVER_POSITIVE_TTL);
	assert_int_equal(c->discovery.rate, KEYSTORE_DISCOVER_RATE);
	config_free(&c);

	c = load("[sealpost]\nstate_dir = /tmp/x\nkey_discovery = wkd, keyserver\n"
		 "keyserver = hkps://keys.example.net\ndiscovery_timeout = 2\n"
		 "discovery_negative_ttl = 1m\ndiscovery_positive_ttl = 0\ndiscovery_rate = 0\n"
		 ACCOUNT, &error);
	if (c == NULL)
		fail_msg("%s", error);
	assert_int_equal(c->discovery.methods, KEYSTORE_DISCOVER_WKD | KEYSTORE_DISCOVER_KEYSERVER);
	assert_string_equal(c->discovery.keyserver, "hkps://keys.example.net");
	assert_int_equal(c->discovery.timeout, 2);
	assert_int_equal(c->discovery.negative_ttl, 60);
	config_free(&c);
	c = load("[sealpost]\nstate_dir = /tmp/x\ndiscovery_negative_ttl = 2h\n"
		 "discovery_positive_ttl = 7d\n" ACCOUNT, &error);
	if (c == NULL)
		fail_msg("%s", error);
	assert_int_equal(c->discovery.negative_ttl, 7200);
	assert_int_equal(c->discovery.positive_ttl, 7 * 86400);
	config_free(&c);
	c = load("[sealpost]\nstate_dir = /tmp/x\nkey_discovery = wkd, keyserver\n"
		 "keyserver = hkps://keys.example.net\ndiscovery_timeout = 2\n"
		 "discovery_negative_ttl = 1m\ndiscovery_positive_ttl = 0\ndiscovery_rate = 0\n"
		 ACCOUNT, &error);
	assert_non_null(c);
	assert_int_equal(c->discovery.positive_ttl, 0);
	assert_int_equal(c->discovery.rate, 0);
	config_free(&c);

	c = load("[sealpost]\nstate_dir = /tmp/x\nkey_discovery = none\n" ACCOUNT, &error);
	assert_non_null(c);
	assert_int_equal(c->discovery.methods, 0);
	config_free(&c);

	static const struct {
		const char *line, *key;
	} bad[] = {
		{ "key_discovery = wkd, dns", "key_discovery" },
		{ "keyserver = http://keys.example.net", "keyserver" },
		{ "keyserver = hkps://", "keyserver" },
		{ "keyserver = hkps://a b", "keyserver" },
		{ "keyserver = hkps://a%0Ab", "keyserver" },
		{ "discovery_timeout = 0", "discovery_timeout" },
		{ "discovery_timeout = 500", "discovery_timeout" },
		{ "discovery_rate = many", "discovery_rate" },
		{ "discovery_rate = -1", "discovery_rate" },
		{ "discovery_negative_ttl = 2w", "discovery_negative_ttl" },
		{ "discovery_negative_ttl = 400d", "discovery_negative_ttl" },
		{ "discovery_positive_ttl = 1hh", "discovery_positive_ttl" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		char *text = g_strdup_printf("[sealpost]\nstate_dir = /tmp/x\n%s\n" ACCOUNT,
					     bad[i].line);
		c = load(text, &error);
		if (c != NULL)
			fail_msg("accepted: %s", bad[i].line);
		if (strstr(error, bad[i].key) == NULL || strstr(error, "test.conf:3") == NULL)
			fail_msg("%s: %s", bad[i].line, error);
		g_free(text);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(keystore_discover_fate_name(KEYSTORE_DISCOVER_IMPORTED), "imported");
	assert_string_equal(keystore_discover_fate_name(KEYSTORE_DISCOVER_RATE_LIMITED),
			    "rate-limited");
	assert_string_equal(keystore_discover_fate_name((keystore_discover_fate)99), "?");
	assert_string_equal(keystore_discovery_result_name(KEYSTORE_DISCOVERY_ERROR), "error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_never_looked_up),
		cmocka_unit_test(test_cache_negative),
		cmocka_unit_test(test_cache_positive),
		cmocka_unit_test(test_cache_clock_went_back),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_unescape),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_address_ok),
		cmocka_unit_test(test_db_cache),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
