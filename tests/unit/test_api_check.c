/* Unit tests of the local API's request checks: Host, Origin, Content-Type,
 * the bearer token, CR/LF/NUL in text and NUL in JSON — byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <sodium.h>

#include "api_check.h"

static config_listen listen_at(const char *host, int port)
{
	config_listen l = { .host = (char *)host, .port = port };
	return l;
}

static void test_host_accepted(void **state)
{
	(void)state;
	config_listen l = listen_at("127.0.0.1", 7587);
	assert_true(api_check_host("127.0.0.1:7587", &l));
	assert_true(api_check_host("localhost:7587", &l));
	assert_true(api_check_host("LocalHost:7587", &l));
	assert_true(api_check_host("[::1]:7587", &l));
	/* Listening on ::1 changes nothing: all three names stay loopback. */
	config_listen l6 = listen_at("::1", 7587);
	assert_true(api_check_host("127.0.0.1:7587", &l6));
	assert_true(api_check_host("[::1]:7587", &l6));
	/* Port 80 may be left out, as browsers do. */
	config_listen l80 = listen_at("127.0.0.1", 80);
	assert_true(api_check_host("localhost", &l80));
	assert_true(api_check_host("localhost:80", &l80));
	/* allow_remote with a specific address: that address too. */
	config_listen lr = listen_at("192.0.2.7", 7587);
	assert_true(api_check_host("192.0.2.7:7587", &lr));
	config_listen lr6 = listen_at("2001:db8::7", 7587);
	assert_true(api_check_host("[2001:db8::7]:7587", &lr6));
}

static void test_host_refused(void **state)
{
	(void)state;
	config_listen l = listen_at("127.0.0.1", 7587);
	static const char *const bad[] = {
		"", "127.0.0.1", "localhost", "127.0.0.1:", "127.0.0.1:7588", "127.0.0.1:07587",
		"127.0.0.1:+7587", "127.0.0.1:7587 ", " 127.0.0.1:7587", "127.0.0.1 :7587",
		"127.0.0.1:7587\r", "127.0.0.1:7587\r\nX: y", "evil.example:7587",
		"127.0.0.1.evil.example:7587", "localhost.:7587", "localhost.evil.example:7587",
		"[::1]", "[::1]7587", "::1:7587", "[::1:7587", "[::1]:7587]", "user@127.0.0.1:7587",
		"127.0.0.1:7587@evil.example", "127.0.0.1:7587:7587", "127.0.0.2:7587",
		"0.0.0.0:7587", "[::]:7587", "2130706433:7587", "127.1:7587", "127.0.0.1%2e:7587",
		"l\u00f6calhost:7587", "127.0.0.1:75870", "127.0.0.1:-7587",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		if (api_check_host(bad[i], &l))
			fail_msg("accepted Host '%s'", bad[i]);
	}
	assert_false(api_check_host(NULL, &l));
	/* A wildcard listener adds no name of its own. */
	config_listen any = listen_at("0.0.0.0", 7587);
	assert_false(api_check_host("0.0.0.0:7587", &any));
	config_listen any6 = listen_at("::", 7587);
	assert_false(api_check_host("[::]:7587", &any6));
}

/* Every single-byte change of a good Host is refused, except the same
 * byte or (in a name) another case of the same letter; every byte added
 * anywhere and every cut is refused. */
static void test_host_bytewise(void **state)
{
	(void)state;
	config_listen l = listen_at("127.0.0.1", 7587);
	static const char *const good[] = { "127.0.0.1:7587", "localhost:7587", "[::1]:7587" };
	for (size_t g = 0; g < G_N_ELEMENTS(good); g++) {
		const char *h = good[g];
		size_t len = strlen(h);
		char buf[64];
		for (size_t pos = 0; pos < len; pos++) {
			for (int c = 1; c < 256; c++) {
				memcpy(buf, h, len + 1);
				buf[pos] = (char)c;
				bool same = c == (unsigned char)h[pos] ||
					    (g_ascii_isalpha(h[pos]) &&
					     g_ascii_tolower((char)c) == g_ascii_tolower(h[pos]));
				if (api_check_host(buf, &l) != same)
					fail_msg("Host '%s' with byte %d at %zu: wrong answer", h, c, pos);
			}
		}
		for (size_t pos = 0; pos <= len; pos++) {
			for (int c = 1; c < 256; c++) {
				memcpy(buf, h, pos);
				buf[pos] = (char)c;
				memcpy(buf + pos + 1, h + pos, len - pos + 1);
				if (api_check_host(buf, &l))
					fail_msg("Host '%s' with byte %d inserted at %zu accepted", h, c, pos);
			}
		}
		for (size_t cut = 0; cut < len; cut++) {
			memcpy(buf, h, cut);
			buf[cut] = '\0';
			assert_false(api_check_host(buf, &l));
		}
	}
}

static void test_origin(void **state)
{
	(void)state;
	config_listen l = listen_at("127.0.0.1", 7587);
	assert_true(api_check_origin(NULL, &l));
	assert_true(api_check_origin("moz-extension://0b5c1f7e-1f4f-4b6c-9a57-2a0f7f2b8a11", &l));
	assert_true(api_check_origin("http://127.0.0.1:7587", &l));
	assert_true(api_check_origin("http://localhost:7587", &l));
	assert_true(api_check_origin("http://[::1]:7587", &l));
	static const char *const bad[] = {
		"", "null", "http://evil.example", "http://evil.example:7587",
		"https://127.0.0.1:7587", "http://127.0.0.1:7587/", "http://127.0.0.1:7588",
		"http://127.0.0.1", "http://user@127.0.0.1:7587", "moz-extension://",
		"moz-extension://abc/", "moz-extension://abc def", "moz-extension://abc\r\n",
		"moz-extension://abc.evil.example", "chrome-extension://abcdef",
		"file://", "ws://127.0.0.1:7587", "http://127.0.0.1:7587.evil.example",
		"moz-extension://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		if (api_check_origin(bad[i], &l))
			fail_msg("accepted Origin '%s'", bad[i]);
	}
	/* An add-on's id: letters, digits and '-' only, byte by byte. */
	char buf[64];
	for (int c = 1; c < 256; c++) {
		snprintf(buf, sizeof(buf), "moz-extension://ab%ccd", c);
		bool want = g_ascii_isalnum((char)c) || c == '-';
		if (api_check_origin(buf, &l) != want)
			fail_msg("Origin with byte %d: wrong answer", c);
	}
}

static void test_content_type(void **state)
{
	(void)state;
	assert_true(api_check_content_type("application/json"));
	assert_true(api_check_content_type("Application/JSON"));
	assert_true(api_check_content_type("application/json; charset=utf-8"));
	assert_true(api_check_content_type("application/json;charset=UTF-8"));
	assert_true(api_check_content_type("application/json ; charset=utf-8"));
	static const char *const bad[] = {
		"", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/jsonx", "application/json-patch+json",
		"application/json x", "application/jso", "text/json", "application/json\r\n",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		if (api_check_content_type(bad[i]))
			fail_msg("accepted Content-Type '%s'", bad[i]);
	}
	assert_false(api_check_content_type(NULL));
}

static void test_bearer(void **state)
{
	(void)state;
	const char *token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char buf[128];
	snprintf(buf, sizeof(buf), "Bearer %s", token);
	assert_true(api_check_bearer(buf, token));
	snprintf(buf, sizeof(buf), "bearer %s", token);
	assert_true(api_check_bearer(buf, token));
	snprintf(buf, sizeof(buf), "Bearer   %s", token);
	assert_true(api_check_bearer(buf, token));
	snprintf(buf, sizeof(buf), "Bearer%s", token);
	assert_false(api_check_bearer(buf, token));
	snprintf(buf, sizeof(buf), "Basic %s", token);
	assert_false(api_check_bearer(buf, token));
	snprintf(buf, sizeof(buf), "Bearer %sx", token);
	assert_false(api_check_bearer(buf, token));
	snprintf(buf, sizeof(buf), "Bearer %.63s", token);
	assert_false(api_check_bearer(buf, token));
	assert_false(api_check_bearer("Bearer ", token));
	assert_false(api_check_bearer("", token));
	assert_false(api_check_bearer(NULL, token));
	snprintf(buf, sizeof(buf), "Bearer %s", token);
	assert_false(api_check_bearer(buf, NULL));
	assert_false(api_check_bearer(buf, "0123"));
	/* Any one byte of the token changed: refused. */
	for (size_t pos = 0; pos < API_CHECK_TOKEN_LEN; pos++) {
		for (int c = 1; c < 256; c++) {
			if (c == token[pos])
				continue;
			snprintf(buf, sizeof(buf), "Bearer %s", token);
			buf[7 + pos] = (char)c;
			if (api_check_bearer(buf, token))
				fail_msg("token with byte %d at %zu accepted", c, pos);
		}
	}
}

static void test_text(void **state)
{
	(void)state;
	assert_true(api_check_text("", 0));
	assert_true(api_check_text("alice@example.org", 17));
	for (int c = 0; c < 256; c++) {
		char buf[3] = { 'a', (char)c, 'b' };
		bool want = c != '\r' && c != '\n' && c != '\0';
		if (api_check_text(buf, sizeof(buf)) != want)
			fail_msg("byte %d: wrong answer", c);
		/* Only len bytes count. */
		assert_true(api_check_text(buf, 1));
	}
}

/* The scanner on a heap copy of exactly len bytes: ASan sees any read
 * past the end. */
static bool json_ok(const char *text, size_t len)
{
	char *copy = malloc(len > 0 ? len : 1);
	assert_non_null(copy);
	memcpy(copy, text, len);
	const char *why = NULL;
	bool ok = api_check_json_text(copy, len, 16, &why);
	if (!ok)
		assert_non_null(why);
	free(copy);
	return ok;
}

#define JSON_OK(lit) json_ok(lit, sizeof(lit) - 1)

static void test_json_text(void **state)
{
	(void)state;
	assert_true(JSON_OK("{\"a\":\"b\"}"));
	assert_false(JSON_OK("{\"a\":\"\\u0000\"}"));
	assert_false(JSON_OK("{\"a\":\"x\\u0000y\"}"));
	assert_false(JSON_OK("{\"\\u0000\":1}"));
	assert_false(JSON_OK("{\"a\":\"\\u00000\"}"));
	/* An escaped backslash, then text. */
	assert_true(JSON_OK("{\"a\":\"\\\\u0000\"}"));
	/* An escaped backslash, then a real escape. */
	assert_false(JSON_OK("{\"a\":\"\\\\\\u0000\"}"));
	/* An escaped quote does not end the string. */
	assert_false(JSON_OK("{\"a\":\"\\\"\\u0000\"}"));
	/* Other escapes are the parser's business. */
	assert_true(JSON_OK("{\"a\":\"\\u0001\\u000a\\r\\n\"}"));
	assert_true(JSON_OK("{\"a\":\"\\U0000\"}"));
	/* Raw NUL bytes, in a string or not, after a backslash too. */
	assert_false(JSON_OK("{\"a\":\"x\0y\"}"));
	assert_false(JSON_OK("{\"a\":1}\0"));
	assert_false(JSON_OK("{\"a\":\"\\\0\"}"));
	/* Depth: 16 levels pass, 17 do not; brackets in strings do not count. */
	assert_true(JSON_OK("[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]"));
	assert_false(JSON_OK("[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]"));
	assert_false(JSON_OK("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
			     "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}}}}}}}}}}"));
	assert_true(JSON_OK("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}"));
	assert_true(JSON_OK("[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]][[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]"));
	/* Every prefix of a tricky text: no read past len, and a cut escape
	 * is never taken for a NUL. */
	static const char tricky[] = "{\"k\":\"a\\\\b\\\"c\\u0041\",\"l\":[\"\\\\\"]}";
	for (size_t len = 0; len <= sizeof(tricky) - 1; len++)
		assert_true(json_ok(tricky, len));
	static const char nul[] = "{\"k\":\"\\u0000\"}";
	for (size_t len = 0; len <= sizeof(nul) - 1; len++)
		assert_int_equal(json_ok(nul, len), len < 12);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_accepted),
		cmocka_unit_test(test_host_refused),
		cmocka_unit_test(test_host_bytewise),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_content_type),
		cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_json_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
