/* Unit tests of the configuration reader: defaults, every kind of bad
 * input, and that each error names file, line and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>

#include "config.h"

static const char good[] =
	"; comment\n"
	"[sealpost]\n"
	"state_dir = /tmp/sp-state\n"
	"max_literal_size = 2M\n"
	"\n"
	"[account work]\n"
	"address = alice@example.org\n"
	"imap_listen = 127.0.0.1:1143   ; STARTTLS offered\n"
	"imaps_listen = [::1]:1993\n"
	"smtp_listen = 127.0.0.1:1587\n"
	"imap_upstream = imaps://imap.example.org\n"
	"smtp_upstream = smtp://smtp.example.org:2525\n";

static config *load(const char *text, const char **error_r)
{
	return config_load_data(text, strlen(text), "t.conf", error_r);
}

static void test_good(void **state)
{
	(void)state;
	const char *error = NULL;
	config *cfg = load(good, &error);
	assert_non_null(cfg);
	assert_string_equal(cfg->state_dir, "/tmp/sp-state");
	assert_string_equal(cfg->gnupg_home, "/tmp/sp-state/gnupg");
	assert_string_equal(cfg->tls_cert, "/tmp/sp-state/tls/sealpost.crt");
	assert_int_equal(cfg->limits.max_literal, 2 * 1024 * 1024);
	assert_int_equal(cfg->limits.max_line, 65536);
	assert_int_equal(cfg->n_accounts, 1);
	const config_account *a = cfg->accounts[0];
	assert_string_equal(a->name, "work");
	assert_string_equal(a->imap_listen.host, "127.0.0.1");
	assert_int_equal(a->imap_listen.port, 1143);
	assert_string_equal(a->imaps_listen.host, "::1");
	assert_string_equal(a->imap_upstream.host, "imap.example.org");
	assert_int_equal(a->imap_upstream.port, 993);
	assert_int_equal(a->imap_upstream.tls, UPSTREAM_TLS_IMPLICIT);
	assert_int_equal(a->smtp_upstream.port, 2525);
	assert_int_equal(a->smtp_upstream.tls, UPSTREAM_TLS_STARTTLS);
	assert_true(a->client_plaintext_auth);
	config_free(&cfg);
	assert_null(cfg);
}

/* Replaces the first occurrence of from with to in the good config and
 * expects an error that starts with expect. */
static void expect_error(const char *from, const char *to, const char *expect)
{
	char text[2048];
	const char *p = strstr(good, from);
	assert_non_null(p);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(p - good), good, to, p + strlen(from));
	const char *error = NULL;
	config *cfg = load(text, &error);
	if (cfg != NULL)
		fail_msg("accepted: %s", text);
	assert_non_null(error);
	if (strncmp(error, expect, strlen(expect)) != 0)
		fail_msg("got '%s', expected it to start with '%s'", error, expect);
	assert_null(strchr(error, '\n'));
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("max_literal_size = 2M\n", "max_literal_size = 2M\nbogus = 1\n",
		     "t.conf:5: [sealpost] bogus: unknown key");
	expect_error("max_literal_size = 2M", "max_literal_size = lots",
		     "t.conf:4: [sealpost] max_literal_size: expected a number");
	expect_error("127.0.0.1:1587", "127.0.0.1:99999",
		     "t.conf:10: [account work] smtp_listen: the port must be");
	expect_error("127.0.0.1:1587", "localhost:1587",
		     "t.conf:10: [account work] smtp_listen: the address must be a literal");
	expect_error("127.0.0.1:1143", "192.0.2.1:1143",
		     "t.conf:8: [account work] imap_listen: 192.0.2.1 is not a loopback address");
	expect_error("imaps://imap.example.org", "http://imap.example.org",
		     "t.conf:11: [account work] imap_upstream: the scheme must be imap://");
	expect_error("smtp://smtp.example.org:2525", "imap://smtp.example.org",
		     "t.conf:12: [account work] smtp_upstream: the scheme must be smtp://");
	expect_error("imap_upstream = imaps://imap.example.org\n", "",
		     "t.conf:8: [account work] imap_listen: needs imap_upstream");
	expect_error("address = alice@example.org", "address = alice",
		     "t.conf:7: [account work] address: expected an e-mail address");
	expect_error("address = alice@example.org\n", "",
		     "t.conf:6: [account work]: missing key 'address'");
	expect_error("[sealpost]", "[sealpots]",
		     "t.conf:2: [sealpots]: unknown section");
	expect_error("[account work]", "account work",
		     "t.conf:6: not a [section]");
	expect_error("smtp_listen = 127.0.0.1:1587", "smtp_listen = 127.0.0.1:1143",
		     "t.conf:10: [account work] smtp_listen: 127.0.0.1:1143 is already used");
	expect_error("max_literal_size = 2M", "log_level = loud",
		     "t.conf:4: [sealpost] log_level: expected debug");
	expect_error("max_literal_size = 2M", "allow_remote = maybe",
		     "t.conf:4: [sealpost] allow_remote: expected true or false");
	expect_error("max_literal_size = 2M", "tls_cert = /x.crt",
		     "t.conf:4: [sealpost] tls_cert: tls_cert and tls_key must be given together");
	expect_error("imaps_listen = [::1]:1993", "pop3_listen = 127.0.0.1:1110",
		     "t.conf:9: [account work] pop3_listen: needs pop3_upstream, the provider to forward to");
}

static void test_no_account(void **state)
{
	(void)state;
	const char *error = NULL;
	config *cfg = load("[sealpost]\nlog_level = info\n", &error);
	assert_null(cfg);
	assert_string_equal(error, "t.conf: no [account NAME] section: nothing to serve");
}

static void test_allow_remote(void **state)
{
	(void)state;
	char text[2048];
	snprintf(text, sizeof(text), "[sealpost]\nallow_remote = true\n%s",
		 strstr(good, "[account"));
	char *p = strstr(text, "127.0.0.1:1143");
	memcpy(p, "0.0.0.0:11430 ", 14);
	const char *error = NULL;
	config *cfg = load(text, &error);
	if (cfg == NULL)
		fail_msg("%s", error);
	assert_string_equal(cfg->accounts[0]->imap_listen.host, "0.0.0.0");
	config_free(&cfg);
}

static void test_parse_helpers(void **state)
{
	(void)state;
	config_upstream up = { 0 };
	const char *error;
	assert_int_equal(config_parse_upstream("imap://[::1]:1143", "imap", &up, &error), 0);
	assert_string_equal(up.host, "::1");
	assert_int_equal(up.port, 1143);
	g_free(up.host);
	g_free(up.url);
	assert_int_equal(config_parse_upstream("imap://host:0", "imap", &up, &error), -1);
	assert_int_equal(config_parse_upstream("imap://", "imap", &up, &error), -1);
	assert_int_equal(config_parse_upstream("imap://us er@host", "imap", &up, &error), -1);
	assert_true(config_is_loopback("127.0.0.2"));
	assert_true(config_is_loopback("::1"));
	assert_false(config_is_loopback("10.0.0.1"));
	assert_false(config_is_loopback("::"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_no_account),
		cmocka_unit_test(test_allow_remote),
		cmocka_unit_test(test_parse_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
