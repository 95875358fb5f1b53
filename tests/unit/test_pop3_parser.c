/* Unit tests of the POP3 parsers: lines, commands, status lines, multi-line
 * bodies both ways (fed one byte at a time and split at every position), TOP,
 * CAPA filtering, and the probe that decides which messages are downloaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pop3_maildrop.h"
#include "pop3_parser.h"

#define U8(s) ((const uint8_t *)(s))

/* ---- lines ----------------------------------------------------------------------- */

static void test_line_bytewise(void **state)
{
	(void)state;
	const char *text = "+OK 2 messages\r\nnext";
	size_t end = strlen("+OK 2 messages\r\n");
	const char *error = NULL;
	for (size_t n = 0; n < end; n++) {
		size_t line_len = 99;
		assert_int_equal(pop3_parser_line(U8(text), n, 512, &line_len, &error),
				 POP3_PARSE_MORE);
	}
	for (size_t n = end; n <= strlen(text); n++) {
		size_t line_len = 0;
		assert_int_equal(pop3_parser_line(U8(text), n, 512, &line_len, &error),
				 POP3_PARSE_DONE);
		assert_int_equal(line_len, end);
	}
	/* Too long: an error exactly at the limit, never before. */
	char longline[40];
	memset(longline, 'x', sizeof(longline));
	size_t line_len;
	assert_int_equal(pop3_parser_line(U8(longline), 15, 16, &line_len, &error),
			 POP3_PARSE_MORE);
	assert_int_equal(pop3_parser_line(U8(longline), 16, 16, &line_len, &error),
			 POP3_PARSE_ERROR);
	assert_string_equal(error, "line too long");
	/* LF as the last byte within the limit still ends the line. */
	longline[15] = '\n';
	assert_int_equal(pop3_parser_line(U8(longline), 40, 16, &line_len, &error),
			 POP3_PARSE_DONE);
	assert_int_equal(line_len, 16);
}

/* ---- commands ---------------------------------------------------------------------- */

static void test_command(void **state)
{
	(void)state;
	pop3_command cmd;
	const char *error = NULL;
	assert_int_equal(pop3_parser_command(U8("retr 12\r\n"), 9, &cmd, &error), 0);
	assert_string_equal(cmd.name, "RETR");
	assert_int_equal(cmd.n_args, 1);
	assert_memory_equal(cmd.args[0], "12", 2);
	assert_int_equal(cmd.arg_len[0], 2);

	assert_int_equal(pop3_parser_command(U8("QUIT"), 4, &cmd, &error), 0);
	assert_string_equal(cmd.name, "QUIT");
	assert_int_equal(cmd.n_args, 0);
	assert_null(cmd.rest);

	/* PASS takes the whole rest of the line, spaces included. */
	const char *pass = "PASS  my secret pw \r\n";
	assert_int_equal(pop3_parser_command(U8(pass), strlen(pass), &cmd, &error), 0);
	assert_int_equal(cmd.rest_len, strlen(" my secret pw "));
	assert_memory_equal(cmd.rest, " my secret pw ", cmd.rest_len);
	assert_int_equal(cmd.n_args, 3);

	assert_int_equal(pop3_parser_command(U8("TOP 1 10\n"), 9, &cmd, &error), 0);
	assert_string_equal(cmd.name, "TOP");
	assert_int_equal(cmd.n_args, 2);
	assert_memory_equal(cmd.args[1], "10", 2);

	/* Errors. */
	assert_int_equal(pop3_parser_command(U8("\r\n"), 2, &cmd, &error), -1);
	assert_int_equal(pop3_parser_command(U8(" STAT"), 5, &cmd, &error), -1);
	assert_int_equal(pop3_parser_command(U8("ST4T"), 4, &cmd, &error), -1);
	assert_int_equal(pop3_parser_command(U8("TOOLONGNAME"), 11, &cmd, &error), -1);
	assert_int_equal(pop3_parser_command(U8("LIST 1 2 3 4"), 12, &cmd, &error), -1);
	assert_string_equal(error, "too many arguments");
	assert_int_equal(pop3_parser_command(U8("USER a\0b"), 8, &cmd, &error), -1);
	assert_int_equal(pop3_parser_command(U8("USER a\rb"), 8, &cmd, &error), -1);
}

static void test_number(void **state)
{
	(void)state;
	uint64_t v = 0;
	assert_int_equal(pop3_parser_number(U8("42"), 2, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(pop3_parser_number(U8("0"), 1, 100, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(pop3_parser_number(U8("101"), 3, 100, &v), -1);
	assert_int_equal(pop3_parser_number(U8("+1"), 2, 100, &v), -1);
	assert_int_equal(pop3_parser_number(U8("-1"), 2, 100, &v), -1);
	assert_int_equal(pop3_parser_number(U8(""), 0, 100, &v), -1);
	assert_int_equal(pop3_parser_number(U8("1x"), 2, 100, &v), -1);
	assert_int_equal(pop3_parser_number(U8("99999999999999999999"), 20, UINT64_MAX, &v), -1);
	assert_int_equal(pop3_parser_number(U8("4294967296"), 10, UINT32_MAX, &v), -1);
	assert_int_equal(pop3_parser_number(U8("4294967295"), 10, UINT32_MAX, &v), 0);
}

/* ---- status lines ---------------------------------------------------------------------- */

static void test_response(void **state)
{
	(void)state;
	pop3_response r;
	const char *error = NULL;
	const char *line = "+OK 3 200\r\n";
	assert_int_equal(pop3_parser_response(U8(line), strlen(line), &r, &error), 0);
	assert_int_equal(r.status, POP3_RESP_OK);
	assert_null(r.code);
	assert_int_equal(r.text_len, 5);
	assert_memory_equal(r.text, "3 200", 5);

	line = "-ERR [SYS/TEMP] try later\r\n";
	assert_int_equal(pop3_parser_response(U8(line), strlen(line), &r, &error), 0);
	assert_int_equal(r.status, POP3_RESP_ERR);
	assert_int_equal(r.code_len, 8);
	assert_memory_equal(r.code, "SYS/TEMP", 8);
	assert_memory_equal(r.text, "try later", r.text_len);
	assert_true(pop3_parser_code_is(&r, "SYS"));
	assert_true(pop3_parser_code_is(&r, "SYS/TEMP"));
	assert_false(pop3_parser_code_is(&r, "SYS/PERM"));
	assert_false(pop3_parser_code_is(&r, "SY"));
	assert_false(pop3_parser_code_is(&r, "AUTH"));

	assert_int_equal(pop3_parser_response(U8("+OK"), 3, &r, &error), 0);
	assert_int_equal(r.status, POP3_RESP_OK);
	assert_int_equal(r.text_len, 0);
	assert_int_equal(pop3_parser_response(U8("-ERR\n"), 5, &r, &error), 0);
	assert_int_equal(r.status, POP3_RESP_ERR);

	line = "+ UGFzc3dvcmQ6\r\n";
	assert_int_equal(pop3_parser_response(U8(line), strlen(line), &r, &error), 0);
	assert_int_equal(r.status, POP3_RESP_CONTINUE);
	assert_memory_equal(r.text, "UGFzc3dvcmQ6", r.text_len);
	assert_int_equal(pop3_parser_response(U8("+\r\n"), 3, &r, &error), 0);
	assert_int_equal(r.status, POP3_RESP_CONTINUE);
	assert_int_equal(r.text_len, 0);

	/* An unclosed bracket is text, not a code. */
	line = "-ERR [oops\r\n";
	assert_int_equal(pop3_parser_response(U8(line), strlen(line), &r, &error), 0);
	assert_null(r.code);

	assert_int_equal(pop3_parser_response(U8("+OKAY\r\n"), 7, &r, &error), -1);
	assert_int_equal(pop3_parser_response(U8("-ER\r\n"), 5, &r, &error), -1);
	assert_int_equal(pop3_parser_response(U8("* OK\r\n"), 6, &r, &error), -1);
	assert_int_equal(pop3_parser_response(U8(""), 0, &r, &error), -1);
}

/* ---- multi-line bodies ------------------------------------------------------------------ */

/* Unstuffs wire fed in pieces of step bytes (0: all at once); checks the
 * body and where it ended. */
static void unstuff_check(const char *wire, size_t wire_len, size_t step, const char *body,
			  size_t body_len, size_t end)
{
	pop3_parser_unstuffer u;
	pop3_parser_unstuff_init(&u);
	GByteArray *out = g_byte_array_new();
	size_t off = 0;
	pop3_parse_result r = POP3_PARSE_MORE;
	while (off < wire_len) {
		size_t n = step == 0 || wire_len - off < step ? wire_len - off : step;
		size_t consumed = 0;
		r = pop3_parser_unstuff(&u, U8(wire + off), n, out, &consumed);
		assert_true(consumed <= n);
		off += consumed;
		if (r == POP3_PARSE_DONE)
			break;
		assert_int_equal(consumed, n);
	}
	assert_int_equal(r, POP3_PARSE_DONE);
	assert_int_equal(off, end);
	assert_int_equal(out->len, body_len);
	assert_memory_equal(out->data, body, body_len);
	g_byte_array_unref(out);
}

static void test_unstuff(void **state)
{
	(void)state;
	static const struct {
		const char *wire, *body;
	} cases[] = {
		{ ".\r\n", "" },
		{ "a\r\n.\r\n", "a\r\n" },
		{ "..\r\n.\r\n", ".\r\n" },
		{ "...x\r\n.\r\n", "..x\r\n" },
		{ ".x\r\n.\r\n", "x\r\n" },
		{ "a.b\r\n.c\r\n\r\n.\r\n", "a.b\r\nc\r\n\r\n" },
		{ "x\r\n.\ry\r\n.\r\n", "x\r\n\ry\r\n" },
		{ "x\r\n.\r\r\n.\r\n", "x\r\n\r\r\n" },
		{ "lf only\n.\n", "lf only\n" },
		{ "bare\rcr\r\n.\r\n", "bare\rcr\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Trailing bytes after the end stay unconsumed. */
		char wire[128];
		size_t wlen = strlen(cases[i].wire);
		memcpy(wire, cases[i].wire, wlen);
		memcpy(wire + wlen, "+OK next\r\n", 10);
		for (size_t step = 0; step <= wlen + 10; step++)
			unstuff_check(wire, wlen + 10, step, cases[i].body, strlen(cases[i].body),
				      wlen);
	}
	/* Without an end: MORE and everything consumed, NULL out allowed. */
	pop3_parser_unstuffer u;
	pop3_parser_unstuff_init(&u);
	size_t consumed;
	assert_int_equal(pop3_parser_unstuff(&u, U8("a\r\n.a\r\n"), 7, NULL, &consumed),
			 POP3_PARSE_MORE);
	assert_int_equal(consumed, 7);
	assert_int_equal(pop3_parser_unstuff(&u, U8(".\r\n"), 3, NULL, &consumed),
			 POP3_PARSE_DONE);
	assert_int_equal(consumed, 3);
}

/* Every split of the stuffed form of msg unstuffs back to msg. */
static void stuff_round_trip(const char *msg, size_t len, const char *expect_wire)
{
	for (size_t split = 0; split <= len; split++) {
		pop3_parser_stuffer st;
		pop3_parser_stuff_init(&st);
		GByteArray *wire = g_byte_array_new();
		pop3_parser_stuff(&st, U8(msg), split, wire);
		pop3_parser_stuff(&st, U8(msg + split), len - split, wire);
		pop3_parser_stuff_finish(&st, wire);
		if (expect_wire != NULL) {
			assert_int_equal(wire->len, strlen(expect_wire));
			assert_memory_equal(wire->data, expect_wire, wire->len);
		}
		/* The client's octet count: the wire minus stuffing and the end. */
		pop3_parser_unstuffer u;
		pop3_parser_unstuff_init(&u);
		GByteArray *back = g_byte_array_new();
		size_t consumed;
		assert_int_equal(pop3_parser_unstuff(&u, wire->data, wire->len, back, &consumed),
				 POP3_PARSE_DONE);
		assert_int_equal(consumed, wire->len);
		assert_int_equal(back->len, pop3_parser_octets(U8(msg), len));
		g_byte_array_unref(back);
		g_byte_array_unref(wire);
	}
}

static void test_stuff(void **state)
{
	(void)state;
	stuff_round_trip("", 0, ".\r\n");
	stuff_round_trip("a\r\n", 3, "a\r\n.\r\n");
	stuff_round_trip(".\r\n", 3, "..\r\n.\r\n");
	stuff_round_trip("a\r\n.b\r\n..\r\n", 11, "a\r\n..b\r\n...\r\n.\r\n");
	stuff_round_trip("no end", 6, "no end\r\n.\r\n");
	stuff_round_trip("lf\n.x\n", 6, "lf\r\n..x\r\n.\r\n");
	stuff_round_trip("cr\r", 3, "cr\r\r\n.\r\n");
	stuff_round_trip(".", 1, "..\r\n.\r\n");
	assert_int_equal(pop3_parser_octets(U8("a\nb"), 3), 6);
	assert_int_equal(pop3_parser_octets(U8("a\r\nb\r\n"), 6), 6);
	assert_int_equal(pop3_parser_octets(U8(""), 0), 0);
}

/* ---- TOP ------------------------------------------------------------------------------ */

static void test_top(void **state)
{
	(void)state;
	const char *msg = "Subject: x\r\nFrom: y\r\n\r\nl1\r\nl2\r\nl3";
	size_t len = strlen(msg);
	size_t head = strlen("Subject: x\r\nFrom: y\r\n\r\n");
	assert_int_equal(pop3_parser_top_length(U8(msg), len, 0), head);
	assert_int_equal(pop3_parser_top_length(U8(msg), len, 1), head + 4);
	assert_int_equal(pop3_parser_top_length(U8(msg), len, 2), head + 8);
	assert_int_equal(pop3_parser_top_length(U8(msg), len, 3), len);
	assert_int_equal(pop3_parser_top_length(U8(msg), len, 1000), len);
	/* No blank line: all header. LF line ends work too. */
	assert_int_equal(pop3_parser_top_length(U8("A: b\r\nC: d"), 10, 0), 10);
	assert_int_equal(pop3_parser_top_length(U8("A: b\n\nx\ny\n"), 10, 1), 8);
	assert_int_equal(pop3_parser_top_length(U8(""), 0, 5), 0);
	/* A header that starts with the blank line. */
	assert_int_equal(pop3_parser_top_length(U8("\r\nbody\r\n"), 8, 0), 2);
}

/* ---- CAPA ------------------------------------------------------------------------------ */

static void test_capa(void **state)
{
	(void)state;
	const char *dovecot = "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
		"STLS\r\nUSER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION Dovecot\r\nUTF8\r\n"
		"X-SECRET \x01" "bad\r\nSASL\x7f\r\n";
	pop3_parser_capa_context ctx = { .stls_available = true, .login_allowed = true };
	char *out = pop3_parser_filter_capa(dovecot, &ctx);
	assert_string_equal(out, "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
			    "USER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n");
	g_free(out);
	/* On TLS: no STLS. Login not allowed: no USER, no SASL. */
	ctx.client_tls = true;
	ctx.login_allowed = false;
	out = pop3_parser_filter_capa(dovecot, &ctx);
	assert_string_equal(out, "TOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n");
	g_free(out);
	/* After login. */
	ctx.authorized = true;
	ctx.login_allowed = true;
	ctx.client_tls = false;
	out = pop3_parser_filter_capa("TOP\nUSER\nSASL PLAIN\nEXPIRE NEVER\n", &ctx);
	assert_string_equal(out, "TOP\r\nEXPIRE NEVER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n");
	g_free(out);
	/* No provider list: USER, RESP-CODES, STLS. */
	ctx.authorized = false;
	out = pop3_parser_filter_capa(NULL, &ctx);
	assert_string_equal(out, "USER\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSTLS\r\n");
	g_free(out);
	assert_true(pop3_parser_capa_has(dovecot, "stls"));
	assert_true(pop3_parser_capa_has(dovecot, "SASL"));
	assert_false(pop3_parser_capa_has(dovecot, "STL"));
	assert_false(pop3_parser_capa_has(NULL, "TOP"));
	assert_false(pop3_parser_capa_has("TOPX\r\n", "TOP"));
}

/* ---- the probe --------------------------------------------------------------------------- */

static void test_probe(void **state)
{
	(void)state;
#define PROBE(s) pop3_maildrop_probe_candidate(U8(s), strlen(s))
	assert_false(PROBE("Subject: hi\r\n\r\nhello\r\n"));
	assert_false(PROBE("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"));
	assert_false(PROBE("Content-Type: text/html\r\n\r\n<p>hi\r\n"));
	assert_true(PROBE("Content-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\"\r\n\r\n"));
	assert_true(PROBE("content-type:   Multipart/Encrypted\r\n\r\n"));
	assert_true(PROBE("Content-Type: text/plain\r\n\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"));
	assert_true(PROBE("Subject: x\r\n\r\n-----BEGIN PGP MES"));
	/* Leading blanks only so far: maybe. */
	assert_true(PROBE("Subject: x\r\n\r\n\r\n\r\n"));
	/* Transfer encodings are looked through. */
	assert_true(PROBE("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
			  "LS0tLS1CRUdJTiBQR1AgTUVTU0FHRS0tLS0tCg==\r\n"));
	assert_false(PROBE("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
			   "aGVsbG8gd29ybGQK\r\n"));
	assert_true(PROBE("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
			  "=2D----BEGIN PGP MESSAGE-----\r\n"));
	/* Forged status fields are always worth a look. */
	assert_true(PROBE("Subject: hi\r\nx-sealpost-decryption: ok\r\n\r\nhello\r\n"));
	assert_true(PROBE("Subject: hi\r\nX-Sealpost-Signature:\r\n good\r\n\r\nhello\r\n"));
	assert_false(PROBE("Subject: hi\r\nX-Sealpost-Encrypt: yes\r\n\r\nhello\r\n"));
	/* Two Content-Type fields, or a weird one: download and decide. */
	assert_true(PROBE("Content-Type: text/html\r\nContent-Type: text/html\r\n\r\nx\r\n"));
	assert_true(PROBE("Content-Type: ;\r\n\r\nx\r\n"));
	assert_true(PROBE("Content-Type \t: multipart/encrypted\r\n\r\n"));
	assert_false(PROBE("Content-Type-X: multipart/encrypted\r\n\r\nhello\r\n"));
	/* A folded Content-Type. */
	assert_true(PROBE("Content-Type:\r\n multipart/encrypted\r\n\r\n"));
	/* S/MIME passes through. */
	assert_false(PROBE("Content-Type: application/pkcs7-mime\r\n\r\nMIIB\r\n"));
#undef PROBE
}

static void test_key(void **state)
{
	(void)state;
	uint8_t mailbox[64];
	imap_view_key k;
	pop3_maildrop_key("acct", "0000000158a1b2c3", mailbox, &k);
	assert_string_equal(k.account, "acct");
	assert_int_equal(k.mailbox_len, 6 + 16);
	assert_memory_equal(k.mailbox, "\0POP3\0" "0000000158a1b2c3", k.mailbox_len);
	assert_int_equal(k.uidvalidity, 1);
	assert_int_equal(k.uid, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_bytewise),
		cmocka_unit_test(test_command),
		cmocka_unit_test(test_number),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_unstuff),
		cmocka_unit_test(test_stuff),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_capa),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
