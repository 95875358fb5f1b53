/* Unit tests of the outbound header block: where it ends (fed one byte at a
 * time), how it splits into fields, what it says, and the as-written copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "outbound.h"

#define U8(s) ((const uint8_t *)(s))

/* Every proper prefix that ends inside the header block needs more; the
 * whole text gives want_len. */
static void check_block_end_bytewise(const char *text, size_t want_len, bool want_blank)
{
	size_t len = strlen(text);
	size_t got = 0;
	bool blank = false;
	for (size_t i = 0; i < want_len; i++) {
		/* A prefix that stops before the deciding line end. */
		int r = crypto_header_block_end(U8(text), i, false, &got, &blank);
		if (r == 1) {
			/* Deciding early is only allowed for the same answer. */
			assert_int_equal(got, want_len);
			assert_int_equal(blank, want_blank);
		}
	}
	assert_int_equal(crypto_header_block_end(U8(text), len, false, &got, &blank), 1);
	assert_int_equal(got, want_len);
	assert_int_equal(blank, want_blank);
	/* Whatever follows does not change the answer. */
	assert_int_equal(crypto_header_block_end(U8(text), len, true, &got, &blank), 1);
	assert_int_equal(got, want_len);
}

static void test_block_end(void **state)
{
	(void)state;
	const char *m = "From: a@x\r\nSubject: hi\r\n there\r\n\r\nbody\r\n";
	check_block_end_bytewise(m, strlen("From: a@x\r\nSubject: hi\r\n there\r\n\r\n"), true);
	/* An empty header block. */
	check_block_end_bytewise("\r\nbody\r\n", 2, true);
	/* A line that is not a field starts the body. */
	check_block_end_bytewise("From: a@x\r\nnot a field\r\nmore\r\n", 11, false);
	check_block_end_bytewise("Bad Name: x\r\n\r\n", 0, false);
	/* A continuation line cannot come first. */
	check_block_end_bytewise(" folded\r\n\r\n", 0, false);
	/* Header fields only: undecided until the end is known. */
	size_t got = 99;
	bool blank = true;
	const char *only = "From: a@x\r\nTo: b@y\r\n";
	for (size_t i = 0; i <= strlen(only); i++)
		assert_int_equal(crypto_header_block_end(U8(only), i, false, &got, &blank), 0);
	assert_int_equal(crypto_header_block_end(U8(only), strlen(only), true, &got, &blank), 1);
	assert_int_equal(got, strlen(only));
	assert_false(blank);
	/* An empty message. */
	assert_int_equal(crypto_header_block_end(U8(""), 0, true, &got, &blank), 1);
	assert_int_equal(got, 0);
}

static crypto_outbound_header *parse_message(const char *msg)
{
	size_t len = strlen(msg), block;
	bool blank;
	assert_int_equal(crypto_header_block_end(U8(msg), len, true, &block, &blank), 1);
	return crypto_outbound_header_parse(U8(msg), block, blank, U8(msg + block), len - block);
}

static void test_fields(void **state)
{
	(void)state;
	crypto_outbound_header *h = parse_message(
		"From: Alice <alice@example.test>\r\n"
		"To: Bob <BOB@Example.Test>, undisclosed-recipients:;\r\n"
		"Cc: team: carol@example.test, dave@example.test;\r\n"
		"Subject: a long\r\n\tsubject\r\n"
		"Message-ID: <m1@example.test>\r\n"
		"\r\n"
		"body\r\n");
	assert_int_equal(crypto_outbound_header_n_fields(h), 5);
	const crypto_header_field *f = crypto_outbound_header_field(h, 3);
	assert_int_equal(f->name_len, 7);
	assert_int_equal(f->raw_len, strlen("Subject: a long\r\n\tsubject\r\n"));
	assert_memory_equal(f->raw, "Subject: a long\r\n\tsubject\r\n", f->raw_len);
	assert_null(crypto_outbound_header_field(h, 5));
	assert_string_equal(crypto_outbound_header_from(h), "alice@example.test");
	assert_string_equal(crypto_outbound_header_message_id(h), "m1@example.test");
	assert_true(crypto_outbound_header_names(h, "bob@example.test"));
	assert_true(crypto_outbound_header_names(h, "carol@example.test"));
	assert_true(crypto_outbound_header_names(h, "dave@example.test"));
	assert_false(crypto_outbound_header_names(h, "alice@example.test"));
	assert_false(crypto_outbound_header_names(h, "eve@example.test"));
	assert_false(crypto_outbound_header_encrypted(h));
	assert_false(crypto_outbound_header_has_autocrypt(h));
	crypto_outbound_header_free(&h);
	assert_null(h);
}

static void test_requests(void **state)
{
	(void)state;
	keystore_policy p;
	int sign;
	const char *error = NULL;
	crypto_outbound_header *h = parse_message("X-Sealpost-Encrypt:  Require \r\n"
						  "x-sealpost-sign: yes\r\n\r\n");
	assert_int_equal(crypto_outbound_header_requests(h, &p, &sign, &error), 0);
	assert_int_equal(p, KEYSTORE_POLICY_REQUIRE);
	assert_int_equal(sign, 1);
	crypto_outbound_header_free(&h);

	h = parse_message("Subject: x\r\n\r\n");
	assert_int_equal(crypto_outbound_header_requests(h, &p, &sign, &error), 0);
	assert_int_equal(p, KEYSTORE_POLICY_NONE);
	assert_int_equal(sign, -1);
	crypto_outbound_header_free(&h);

	h = parse_message("X-Sealpost-Encrypt: maybe\r\n\r\n");
	assert_int_equal(crypto_outbound_header_requests(h, &p, &sign, &error), -1);
	assert_non_null(strstr(error, "X-Sealpost-Encrypt"));
	assert_non_null(strstr(error, "maybe"));
	crypto_outbound_header_free(&h);

	h = parse_message("X-Sealpost-Encrypt: never\r\nX-Sealpost-Encrypt: require\r\n\r\n");
	assert_int_equal(crypto_outbound_header_requests(h, &p, &sign, &error), -1);
	crypto_outbound_header_free(&h);

	h = parse_message("X-Sealpost-Sign: perhaps\r\n\r\n");
	assert_int_equal(crypto_outbound_header_requests(h, &p, &sign, &error), -1);
	assert_non_null(strstr(error, "X-Sealpost-Sign"));
	crypto_outbound_header_free(&h);
}

static void test_already_encrypted(void **state)
{
	(void)state;
	static const struct { const char *msg; bool encrypted; } cases[] = {
		{ "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
		  " boundary=b\r\n\r\n--b--\r\n", true },
		{ "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB\r\n", true },
		{ "Content-Type: application/x-pkcs7-mime\r\n\r\nMIIB\r\n", true },
		{ "Subject: x\r\n\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQ\r\n", true },
		{ "Content-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n", true },
		{ "Content-Type: multipart/mixed; boundary=b\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n", false },
		{ "Subject: x\r\n\r\nsee -----BEGIN PGP MESSAGE-----\r\n", false },
		{ "Content-Type: multipart/signed; boundary=b\r\n\r\n--b--\r\n", false },
		{ "Subject: x\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\n", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		crypto_outbound_header *h = parse_message(cases[i].msg);
		if (crypto_outbound_header_encrypted(h) != cases[i].encrypted)
			fail_msg("case %zu: %s", i, cases[i].msg);
		crypto_outbound_header_free(&h);
	}
}

typedef struct {
	const char *data;
	size_t len, pos;
} mem_source;

static ssize_t mem_read(void *ctx, void *buf, size_t size)
{
	mem_source *m = ctx;
	size_t n = m->len - m->pos < size ? m->len - m->pos : size;
	/* Small reads, to cross every boundary. */
	if (n > 3)
		n = 3;
	memcpy(buf, m->data + m->pos, n);
	m->pos += n;
	return (ssize_t)n;
}

static int mem_rewind(void *ctx)
{
	((mem_source *)ctx)->pos = 0;
	return 0;
}

static int string_write(void *ctx, const void *buf, size_t len)
{
	g_string_append_len(ctx, buf, (gssize)len);
	return 0;
}

static char *write_plain(const char *msg, const char *autocrypt)
{
	size_t len = strlen(msg), block;
	bool blank;
	assert_int_equal(crypto_header_block_end(U8(msg), len, true, &block, &blank), 1);
	crypto_outbound_header *h = crypto_outbound_header_parse(U8(msg), block, blank,
								 U8(msg + block), len - block);
	mem_source m = { msg + block, len - block, 0 };
	crypto_source src = { mem_read, mem_rewind, &m };
	GString *out = g_string_new(NULL);
	crypto_sink sink = { string_write, out };
	crypto_outbound_options opts = { .autocrypt = autocrypt };
	const char *error;
	assert_int_equal(crypto_outbound_write_plain(h, &opts, &src, &sink, &error), 0);
	crypto_outbound_header_free(&h);
	return g_string_free(out, FALSE);
}

static void test_write_plain(void **state)
{
	(void)state;
	char *out = write_plain("From: alice@example.test\r\n"
				"Bcc: eve@example.test,\r\n mallory@example.test\r\n"
				"X-Sealpost-Encrypt: never\r\n"
				"Subject: hi\r\n"
				"resent-bcc: x@y\r\n"
				"\r\n"
				"Bcc: not a header, body text\r\n.\r\n",
				"addr=alice@example.test; keydata=QUJD");
	assert_string_equal(out, "From: alice@example.test\r\n"
			    "Subject: hi\r\n"
			    "Autocrypt: addr=alice@example.test; keydata=\r\n QUJD\r\n"
			    "\r\n"
			    "Bcc: not a header, body text\r\n.\r\n");
	g_free(out);

	/* The client's own Autocrypt header stays the only one. */
	out = write_plain("From: a@x\r\nAutocrypt: addr=a@x; keydata=Zm9v\r\n\r\nb\r\n",
			  "addr=a@x; keydata=QUJD");
	assert_string_equal(out, "From: a@x\r\nAutocrypt: addr=a@x; keydata=Zm9v\r\n\r\nb\r\n");
	g_free(out);

	/* No empty line in the original: none is invented. */
	out = write_plain("From: a@x\r\nnot a header\r\n", NULL);
	assert_string_equal(out, "From: a@x\r\nnot a header\r\n");
	g_free(out);

	/* Long key data is folded into lines of 76 characters plus the space. */
	char key[200];
	memset(key, 'A', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	char *value = g_strdup_printf("addr=a@x; prefer-encrypt=mutual; keydata=%s", key);
	out = write_plain("From: a@x\r\n\r\n", value);
	char **lines = g_strsplit(out, "\r\n", -1);
	assert_string_equal(lines[1], "Autocrypt: addr=a@x; prefer-encrypt=mutual; keydata=");
	assert_int_equal(strlen(lines[2]), 77);
	assert_int_equal(strlen(lines[3]), 77);
	assert_int_equal(strlen(lines[4]), 1 + 199 - 152);
	assert_int_equal(lines[2][0], ' ');
	g_strfreev(lines);
	g_free(value);
	g_free(out);
}

static void test_autocrypt_value(void **state)
{
	(void)state;
	char *v = crypto_autocrypt_value("a@x", true, (const unsigned char *)"abc", 3);
	assert_string_equal(v, "addr=a@x; prefer-encrypt=mutual; keydata=YWJj");
	g_free(v);
	v = crypto_autocrypt_value("a@x", false, (const unsigned char *)"abc", 3);
	assert_string_equal(v, "addr=a@x; keydata=YWJj");
	g_free(v);
}

int main(void)
{
	g_mime_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_end),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_already_encrypted),
		cmocka_unit_test(test_write_plain),
		cmocka_unit_test(test_autocrypt_value),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	g_mime_shutdown();
	return ret;
}
