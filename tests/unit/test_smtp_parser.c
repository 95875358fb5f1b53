/* Unit tests of the SMTP parsers: commands, MAIL/RCPT arguments, replies and
 * the DATA reader, fed one byte at a time and split at every position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtp_parser.h"

#define U8(s) ((const uint8_t *)(s))

/* ---- command lines ------------------------------------------------------- */

/* Feeds text one byte at a time; every byte before the last must answer
 * MORE, the last DONE. */
static const smtp_command *feed_command_bytewise(smtp_command_parser *p,
						 const char *text)
{
	size_t len = strlen(text);
	const smtp_command *cmd = NULL;
	const char *error = NULL;
	for (size_t i = 0; i < len; i++) {
		size_t consumed = 99;
		smtp_parse_result r = smtp_command_parser_feed(p, U8(text + i), 1,
							       &consumed, &cmd, &error);
		assert_int_equal(consumed, 1);
		if (i + 1 < len) {
			assert_int_equal(r, SMTP_PARSE_MORE);
		} else {
			assert_int_equal(r, SMTP_PARSE_DONE);
		}
	}
	return cmd;
}

static void test_command_bytewise(void **state)
{
	(void)state;
	smtp_command_parser *p = smtp_command_parser_new(512);
	const smtp_command *cmd = feed_command_bytewise(p, "ehlo client.example\r\n");
	assert_string_equal(cmd->verb, "EHLO");
	assert_string_equal(cmd->args, "client.example");
	assert_string_equal(cmd->line, "ehlo client.example");
	assert_int_equal(cmd->line_len, 19);

	cmd = feed_command_bytewise(p, "QUIT\r\n");
	assert_string_equal(cmd->verb, "QUIT");
	assert_string_equal(cmd->args, "");

	/* A lone LF ends a command line too. */
	cmd = feed_command_bytewise(p, "NOOP\n");
	assert_string_equal(cmd->verb, "NOOP");

	/* Extra spaces between verb and argument, trailing blanks. */
	cmd = feed_command_bytewise(p, "HELO   x.example \t \r\n");
	assert_string_equal(cmd->verb, "HELO");
	assert_string_equal(cmd->args, "x.example");
	assert_string_equal(cmd->line, "HELO   x.example \t ");

	/* An empty line is a command with an empty verb. */
	cmd = feed_command_bytewise(p, "\r\n");
	assert_string_equal(cmd->verb, "");
	assert_int_equal(cmd->line_len, 0);
	smtp_command_parser_free(&p);
	assert_null(p);
}

static void test_command_pipelined(void **state)
{
	(void)state;
	smtp_command_parser *p = smtp_command_parser_new(512);
	const char *in = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n";
	size_t len = strlen(in), off = 0, consumed;
	const smtp_command *cmd;
	const char *error;
	const char *verbs[] = { "MAIL", "RCPT", "DATA" };
	for (size_t n = 0; n < 3; n++) {
		assert_int_equal(smtp_command_parser_feed(p, U8(in + off), len - off,
							  &consumed, &cmd, &error),
				 SMTP_PARSE_DONE);
		assert_string_equal(cmd->verb, verbs[n]);
		off += consumed;
	}
	assert_int_equal(off, len);
	assert_int_equal(smtp_command_parser_feed(p, U8(in), 0, &consumed, &cmd, &error),
			 SMTP_PARSE_MORE);
	smtp_command_parser_free(&p);
}

static void test_command_too_long(void **state)
{
	(void)state;
	smtp_command_parser *p = smtp_command_parser_new(16);
	const smtp_command *cmd;
	const char *error = NULL;
	size_t consumed;

	/* Exactly 16 bytes with the line end: accepted. */
	cmd = feed_command_bytewise(p, "NOOP 1234567890\n");
	assert_string_equal(cmd->args, "1234567890");
	cmd = feed_command_bytewise(p, "NOOP 123456789\r\n");
	assert_string_equal(cmd->args, "123456789");

	/* One more: refused as soon as the limit is passed, the rest of the
	 * line is skipped, and the next line parses normally. */
	const char *in = "NOOP 12345678901\r\nQUIT\r\n";
	assert_int_equal(smtp_command_parser_feed(p, U8(in), strlen(in), &consumed,
						  &cmd, &error), SMTP_PARSE_ERROR);
	assert_string_equal(error, "Line too long");
	assert_true(consumed <= 16);
	size_t off = consumed;
	assert_int_equal(smtp_command_parser_feed(p, U8(in + off), strlen(in) - off,
						  &consumed, &cmd, &error), SMTP_PARSE_DONE);
	assert_string_equal(cmd->verb, "QUIT");
	assert_int_equal(off + consumed, strlen(in));

	/* Fed byte by byte, a huge line gives one error and then MORE while
	 * it is skipped: nothing is stored. */
	int errors = 0;
	for (int i = 0; i < 100000; i++) {
		smtp_parse_result r = smtp_command_parser_feed(p, U8("A"), 1, &consumed,
							       &cmd, &error);
		assert_int_not_equal(r, SMTP_PARSE_DONE);
		if (r == SMTP_PARSE_ERROR)
			errors++;
	}
	assert_int_equal(errors, 1);
	assert_int_equal(smtp_command_parser_feed(p, U8("\n"), 1, &consumed, &cmd,
						  &error), SMTP_PARSE_MORE);
	cmd = feed_command_bytewise(p, "RSET\r\n");
	assert_string_equal(cmd->verb, "RSET");
	smtp_command_parser_free(&p);
}

static void expect_command_error(smtp_command_parser *p, const char *in, size_t len,
				 const char *want)
{
	const smtp_command *cmd;
	const char *error = NULL;
	size_t consumed;
	assert_int_equal(smtp_command_parser_feed(p, U8(in), len, &consumed, &cmd, &error),
			 SMTP_PARSE_ERROR);
	assert_int_equal(consumed, len);
	assert_string_equal(error, want);
}

static void test_command_bad_bytes(void **state)
{
	(void)state;
	smtp_command_parser *p = smtp_command_parser_new(512);
	/* A bare CR could end the line early for the next server: refused. */
	expect_command_error(p, "MAIL FROM:<a@x>\rRCPT TO:<b@y>\r\n", 31,
			     "Bare CR or NUL in command line");
	expect_command_error(p, "NOOP \r\r\n", 8, "Bare CR or NUL in command line");
	expect_command_error(p, "NO\0OP\r\n", 7, "Bare CR or NUL in command line");
	/* And recovers. */
	const smtp_command *cmd = feed_command_bytewise(p, "NOOP\r\n");
	assert_string_equal(cmd->verb, "NOOP");

	/* A verb longer than any command is reported empty, not cut. */
	cmd = feed_command_bytewise(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ x\r\n");
	assert_string_equal(cmd->verb, "");
	assert_string_equal(cmd->args, "x");

	/* Reset forgets a partial line. */
	size_t consumed;
	const char *error;
	assert_int_equal(smtp_command_parser_feed(p, U8("EHLO partial"), 12, &consumed,
						  &cmd, &error), SMTP_PARSE_MORE);
	smtp_command_parser_reset(p);
	cmd = feed_command_bytewise(p, "QUIT\r\n");
	assert_string_equal(cmd->line, "QUIT");
	smtp_command_parser_free(&p);
}

/* ---- MAIL / RCPT arguments ----------------------------------------------- */

static void assert_slice(const char *p, size_t len, const char *want)
{
	assert_int_equal(len, strlen(want));
	assert_memory_equal(p, want, len);
}

static void test_path_mail_params(void **state)
{
	(void)state;
	smtp_path_args a;
	const char *error = NULL;
	const char *args = "FROM:<alice@example.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 "
		"RET=HDRS ENVID=QQ314159+2Bx";
	assert_int_equal(smtp_parse_path_args(args, "FROM:", true, &a, &error), 0);
	assert_slice(a.path, a.path_len, "<alice@example.test>");
	assert_int_equal(a.n_params, 5);
	assert_slice(a.params[0].text, a.params[0].len, "SIZE=1000");
	assert_int_equal(a.params[0].key_len, 4);
	assert_slice(a.params[0].value, a.params[0].value_len, "1000");
	assert_slice(a.params[2].text, a.params[2].len, "SMTPUTF8");
	assert_null(a.params[2].value);
	assert_slice(a.params[4].value, a.params[4].value_len, "QQ314159+2Bx");

	const smtp_param *prm = smtp_path_args_find(&a, "body");
	assert_non_null(prm);
	assert_slice(prm->value, prm->value_len, "8BITMIME");
	assert_null(smtp_path_args_find(&a, "NOTIFY"));
	assert_null(smtp_path_args_find(&a, "SIZ"));

	args = "TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE,DELAY "
		"ORCPT=rfc822;bob+2Bx@example.test";
	assert_int_equal(smtp_parse_path_args(args, "TO:", false, &a, &error), 0);
	assert_slice(a.path, a.path_len, "<bob@example.test>");
	assert_int_equal(a.n_params, 2);
	assert_slice(a.params[0].text, a.params[0].len, "NOTIFY=SUCCESS,FAILURE,DELAY");
	assert_slice(a.params[1].value, a.params[1].value_len,
		     "rfc822;bob+2Bx@example.test");
}

static void test_path_forms(void **state)
{
	(void)state;
	smtp_path_args a;
	const char *error = NULL;

	assert_int_equal(smtp_parse_path_args("FROM:<>", "FROM:", true, &a, &error), 0);
	assert_slice(a.path, a.path_len, "<>");
	assert_int_equal(a.n_params, 0);
	/* Lower case and a space after the colon are tolerated. */
	assert_int_equal(smtp_parse_path_args("from: <a@b>  BODY=7BIT ", "FROM:", true,
					      &a, &error), 0);
	assert_slice(a.path, a.path_len, "<a@b>");
	assert_int_equal(a.n_params, 1);
	/* Quoted local part with '>', space and a quoted pair. */
	assert_int_equal(smtp_parse_path_args("TO:<\"a b>\\\"c\"@example.test> X=1", "TO:",
					      false, &a, &error), 0);
	assert_slice(a.path, a.path_len, "<\"a b>\\\"c\"@example.test>");
	/* Source route and Postmaster are kept as written. */
	assert_int_equal(smtp_parse_path_args("TO:<@relay.example:u@d.example>", "TO:",
					      false, &a, &error), 0);
	assert_slice(a.path, a.path_len, "<@relay.example:u@d.example>");
	assert_int_equal(smtp_parse_path_args("TO:<Postmaster>", "TO:", false, &a,
					      &error), 0);
	/* SMTPUTF8 address and UTF-8 in a parameter value. */
	assert_int_equal(smtp_parse_path_args("FROM:<j\xc3\xb6rg@b\xc3\xbc.example> SMTPUTF8",
					      "FROM:", true, &a, &error), 0);
	assert_slice(a.path, a.path_len, "<j\xc3\xb6rg@b\xc3\xbc.example>");
	assert_int_equal(smtp_parse_path_args("TO:<a@b> ORCPT=utf-8;j\xc3\xb6rg@b", "TO:",
					      false, &a, &error), 0);
}

static void expect_path_error(const char *args, const char *prefix, bool allow_null)
{
	smtp_path_args a;
	const char *error = NULL;
	assert_int_equal(smtp_parse_path_args(args, prefix, allow_null, &a, &error), -1);
	assert_non_null(error);
	assert_true(strlen(error) > 5);
}

static void test_path_errors(void **state)
{
	(void)state;
	expect_path_error("", "FROM:", true);
	expect_path_error("FROM", "FROM:", true);
	expect_path_error("FROM:a@b", "FROM:", true);
	expect_path_error("FROM:<a@b", "FROM:", true);
	expect_path_error("FROM:<a b@c>", "FROM:", true);
	expect_path_error("FROM:<a<b@c>", "FROM:", true);
	expect_path_error("FROM:<a\x01@c>", "FROM:", true);
	expect_path_error("FROM:<\"a@c>", "FROM:", true);
	expect_path_error("FROM:<a@b>junk", "FROM:", true);
	expect_path_error("FROM:<a@b> =x", "FROM:", true);
	expect_path_error("FROM:<a@b> SIZE=", "FROM:", true);
	expect_path_error("FROM:<a@b> SIZE==1", "FROM:", true);
	expect_path_error("FROM:<a@b> SI_ZE=1", "FROM:", true);
	expect_path_error("TO:<>", "TO:", false);
	expect_path_error("FROM:<a@b>", "TO:", false);
	expect_path_error("TO:<a@b> A B C D E F G H I J K L M N O P Q", "TO:", false);
	smtp_path_args a;
	const char *error;
	/* Exactly SMTP_MAX_PARAMS is fine. */
	assert_int_equal(smtp_parse_path_args("TO:<a@b> A B C D E F G H I J K L M N O P",
					      "TO:", false, &a, &error), 0);
	assert_int_equal(a.n_params, SMTP_MAX_PARAMS);
}

/* ---- replies ------------------------------------------------------------- */

static const smtp_reply *feed_reply_bytewise(smtp_reply_parser *p, const char *text)
{
	size_t len = strlen(text);
	const smtp_reply *reply = NULL;
	const char *error = NULL;
	for (size_t i = 0; i < len; i++) {
		size_t consumed = 99;
		smtp_parse_result r = smtp_reply_parser_feed(p, U8(text + i), 1,
							     &consumed, &reply, &error);
		assert_int_equal(consumed, 1);
		if (i + 1 < len) {
			assert_int_equal(r, SMTP_PARSE_MORE);
		} else {
			assert_int_equal(r, SMTP_PARSE_DONE);
		}
	}
	return reply;
}

static void test_reply_single(void **state)
{
	(void)state;
	smtp_reply_parser *p = smtp_reply_parser_new(512, 10);
	const smtp_reply *r = feed_reply_bytewise(p, "250 2.1.0 Ok\r\n");
	assert_int_equal(r->code, 250);
	assert_string_equal(r->enhanced, "2.1.0");
	assert_int_equal(r->n_lines, 1);
	assert_string_equal(r->lines[0], "2.1.0 Ok");

	r = feed_reply_bytewise(p, "354 End data with <CR><LF>.<CR><LF>\n");
	assert_int_equal(r->code, 354);
	assert_string_equal(r->enhanced, "");

	/* The code alone is a complete reply. */
	r = feed_reply_bytewise(p, "221\r\n");
	assert_int_equal(r->code, 221);
	assert_string_equal(r->lines[0], "");

	/* An enhanced code of another class is not taken as one. */
	r = feed_reply_bytewise(p, "250 5.1.1 odd\r\n");
	assert_string_equal(r->enhanced, "");
	r = feed_reply_bytewise(p, "535 5.7.8 Error: authentication failed\r\n");
	assert_string_equal(r->enhanced, "5.7.8");
	r = feed_reply_bytewise(p, "550 5.1.10\r\n");
	assert_string_equal(r->enhanced, "5.1.10");
	r = feed_reply_bytewise(p, "550 5.1234.1 x\r\n");
	assert_string_equal(r->enhanced, "");
	r = feed_reply_bytewise(p, "550 5.1.1x\r\n");
	assert_string_equal(r->enhanced, "");
	smtp_reply_parser_free(&p);
	assert_null(p);
}

static void test_reply_multiline(void **state)
{
	(void)state;
	smtp_reply_parser *p = smtp_reply_parser_new(512, 10);
	const smtp_reply *r = feed_reply_bytewise(p,
		"250-mail.example.test\r\n"
		"250-PIPELINING\r\n"
		"250-SIZE 10240000\r\n"
		"250-\r\n"
		"250 DSN\r\n");
	assert_int_equal(r->code, 250);
	assert_int_equal(r->n_lines, 5);
	assert_string_equal(r->lines[0], "mail.example.test");
	assert_string_equal(r->lines[2], "SIZE 10240000");
	assert_string_equal(r->lines[3], "");
	assert_string_equal(r->lines[4], "DSN");

	/* Two replies in one buffer: only the first is consumed. */
	const char *two = "250-a\r\n250 b\r\n354 go\r\n";
	size_t consumed;
	const char *error;
	assert_int_equal(smtp_reply_parser_feed(p, U8(two), strlen(two), &consumed,
						&r, &error), SMTP_PARSE_DONE);
	assert_int_equal(consumed, 14);
	assert_int_equal(r->n_lines, 2);
	assert_int_equal(smtp_reply_parser_feed(p, U8(two + 14), strlen(two) - 14,
						&consumed, &r, &error), SMTP_PARSE_DONE);
	assert_int_equal(r->code, 354);
	assert_int_equal(r->n_lines, 1);
	smtp_reply_parser_free(&p);
}

#define expect_reply_error(max_line, max_lines, in, want) \
	expect_reply_error_len(max_line, max_lines, in, sizeof(in) - 1, want)

static void expect_reply_error_len(size_t max_line, size_t max_lines, const char *in,
				   size_t len, const char *want)
{
	smtp_reply_parser *p = smtp_reply_parser_new(max_line, max_lines);
	const smtp_reply *r;
	const char *error = NULL;
	size_t consumed;
	smtp_parse_result res = SMTP_PARSE_MORE;
	for (size_t i = 0; i < len && res == SMTP_PARSE_MORE; i++)
		res = smtp_reply_parser_feed(p, U8(in + i), 1, &consumed, &r, &error);
	assert_int_equal(res, SMTP_PARSE_ERROR);
	assert_string_equal(error, want);
	smtp_reply_parser_free(&p);
}

static void test_reply_errors(void **state)
{
	(void)state;
	expect_reply_error(512, 10, "250-a\r\n251 b\r\n",
			   "inconsistent codes in multi-line reply");
	expect_reply_error(512, 10, "250_a\r\n", "malformed reply line");
	expect_reply_error(512, 10, "25\r\n", "malformed reply line");
	expect_reply_error(512, 10, "2x0 a\r\n", "malformed reply line");
	expect_reply_error(512, 10, "150 a\r\n", "malformed reply line");
	expect_reply_error(512, 10, "650 a\r\n", "malformed reply line");
	expect_reply_error(512, 10, "HTTP/1.1 200 OK\r\n", "malformed reply line");
	expect_reply_error(512, 10, "250 a\rb\r\n", "control character in reply");
	expect_reply_error(512, 10, "250 a\0b\r\n", "control character in reply");
	expect_reply_error(16, 10, "250 0123456789a\r\n", "reply line too long");
	expect_reply_error(512, 3, "250-a\r\n250-b\r\n250-c\r\n250 d\r\n",
			   "too many reply lines");

	/* At the limits exactly: fine. */
	smtp_reply_parser *p = smtp_reply_parser_new(16, 3);
	const smtp_reply *r = feed_reply_bytewise(p, "250 0123456789\r\n");
	assert_string_equal(r->lines[0], "0123456789");
	r = feed_reply_bytewise(p, "250-a\r\n250-b\r\n250 c\r\n");
	assert_int_equal(r->n_lines, 3);
	smtp_reply_parser_free(&p);
}

/* ---- DATA ---------------------------------------------------------------- */

typedef struct {
	uint8_t out[65536];
	size_t out_len;
	size_t consumed;
	smtp_parse_result result;
	int done_calls;
} data_run;

/* Feeds in[0..len) in pieces of at most step bytes (and output room of at
 * most out_room), stopping at DONE. */
static void data_feed(smtp_data_reader *r, const char *in, size_t len, size_t step,
		      size_t out_room, data_run *run)
{
	size_t off = 0;
	run->result = SMTP_PARSE_MORE;
	while (off < len) {
		size_t n = len - off < step ? len - off : step;
		size_t consumed, out_len;
		assert_true(run->out_len + out_room <= sizeof(run->out));
		smtp_parse_result res = smtp_data_reader_feed(r, U8(in + off), n, &consumed,
							      run->out + run->out_len,
							      out_room, &out_len);
		assert_int_not_equal(res, SMTP_PARSE_ERROR);
		assert_true(consumed <= n);
		assert_true(out_len <= out_room);
		off += consumed;
		run->out_len += out_len;
		if (res == SMTP_PARSE_DONE) {
			run->result = res;
			run->done_calls++;
			break;
		}
		assert_int_equal(res, SMTP_PARSE_MORE);
	}
	run->consumed = off;
}

static void check_data(const char *in, size_t len, const char *want, size_t want_consumed)
{
	size_t want_len = strlen(want);
	/* Every chunk size, including one byte at a time. */
	for (size_t step = 1; step <= len; step++) {
		smtp_data_reader *r = smtp_data_reader_new(1 << 20);
		data_run *run = calloc(1, sizeof(*run));
		data_feed(r, in, len, step, sizeof(run->out) / 2, run);
		assert_int_equal(run->result, SMTP_PARSE_DONE);
		assert_int_equal(run->consumed, want_consumed);
		assert_int_equal(run->out_len, want_len);
		assert_memory_equal(run->out, want, want_len);
		assert_int_equal(smtp_data_reader_size(r), want_len);
		assert_false(smtp_data_reader_too_big(r));
		free(run);
		smtp_data_reader_free(&r);
	}
	/* Every split into two feeds: the end is found wherever it is cut. */
	for (size_t cut = 0; cut <= len; cut++) {
		smtp_data_reader *r = smtp_data_reader_new(1 << 20);
		data_run *run = calloc(1, sizeof(*run));
		data_feed(r, in, cut, len + 1, sizeof(run->out) / 2, run);
		if (run->result != SMTP_PARSE_DONE) {
			size_t first = run->consumed;
			assert_int_equal(first, cut);
			data_feed(r, in + cut, len - cut, len + 1, sizeof(run->out) / 2, run);
			run->consumed += first;
		}
		assert_int_equal(run->result, SMTP_PARSE_DONE);
		assert_int_equal(run->done_calls, 1);
		assert_int_equal(run->consumed, want_consumed);
		assert_int_equal(run->out_len, want_len);
		assert_memory_equal(run->out, want, want_len);
		free(run);
		smtp_data_reader_free(&r);
	}
	/* The smallest output room. */
	smtp_data_reader *r = smtp_data_reader_new(1 << 20);
	data_run *run = calloc(1, sizeof(*run));
	data_feed(r, in, len, len, SMTP_DATA_MAX_EXPANSION, run);
	assert_int_equal(run->result, SMTP_PARSE_DONE);
	assert_int_equal(run->out_len, want_len);
	assert_memory_equal(run->out, want, want_len);
	free(run);
	smtp_data_reader_free(&r);
}

static void test_data_dot_stuffing(void **state)
{
	(void)state;
	const char in[] =
		"Subject: dots\r\n"
		"\r\n"
		"..hidden\r\n"
		"..\r\n"
		"...\r\n"
		"a.b\r\n"
		".\r\n"
		"QUIT\r\n";
	const char want[] =
		"Subject: dots\r\n"
		"\r\n"
		".hidden\r\n"
		".\r\n"
		"..\r\n"
		"a.b\r\n";
	check_data(in, strlen(in), want, strlen(in) - strlen("QUIT\r\n"));

	/* The empty message, and a first line that is stuffed. */
	check_data(".\r\nNOOP\r\n", 9, "", 3);
	check_data("..x\r\n.\r\n", 8, ".x\r\n", 8);
	/* A message ending without a line end before the dot cannot exist:
	 * "x.\r\n" is content, the end needs CRLF "." CRLF. */
	check_data("x.\r\n.\r\n", 7, "x.\r\n", 7);
}

static void test_data_smuggling(void **state)
{
	(void)state;
	/* Each of these would end the message for a lax server; here they
	 * are content, normalised to CRLF, and only the real terminator at
	 * the end counts. */
	static const struct {
		const char *in;
		const char *want;
		uint64_t bare_lf, bare_cr;
	} cases[] = {
		{ "a\n.\nMAIL FROM:<x@y>\r\n.\r\n",
		  "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 2, 0 },
		{ "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
		  "a\r\n\r\nMAIL FROM:<x@y>\r\n", 1, 0 },
		{ "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
		  "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 1, 0 },
		{ "a\r.\rMAIL FROM:<x@y>\r\n.\r\n",
		  "a\r\n.\r\nMAIL FROM:<x@y>\r\n", 0, 2 },
		{ "a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",
		  "a\r\n\r\nMAIL FROM:<x@y>\r\n", 0, 1 },
		{ "a\r\r\n.\r\n", "a\r\n\r\n", 0, 1 },
		{ "a\r\n.\r\r\n.\r\n", "a\r\n\r\n\r\n", 0, 1 },
		{ "\n.\r\n.\r\n", "\r\n.\r\n", 1, 0 },
		{ "\n\r\n.\r\n", "\r\n\r\n", 1, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = strlen(cases[i].in);
		check_data(cases[i].in, len, cases[i].want, len);
		smtp_data_reader *r = smtp_data_reader_new(1 << 20);
		data_run *run = calloc(1, sizeof(*run));
		data_feed(r, cases[i].in, len, 1, 16, run);
		assert_int_equal(smtp_data_reader_bare_lf(r), cases[i].bare_lf);
		assert_int_equal(smtp_data_reader_bare_cr(r), cases[i].bare_cr);
		free(run);
		smtp_data_reader_free(&r);
	}

	/* Without the real terminator the reader never finishes. */
	const char *open_ended[] = {
		"a\n.\n", "a\r\n.\n", "a\n.\r\n", "a\r.\r", "a\r\n.\r", "a\r\n.\rx\n",
	};
	for (size_t i = 0; i < sizeof(open_ended) / sizeof(open_ended[0]); i++) {
		smtp_data_reader *r = smtp_data_reader_new(1 << 20);
		data_run *run = calloc(1, sizeof(*run));
		data_feed(r, open_ended[i], strlen(open_ended[i]), 1, 16, run);
		assert_int_equal(run->result, SMTP_PARSE_MORE);
		assert_int_equal(run->consumed, strlen(open_ended[i]));
		free(run);
		smtp_data_reader_free(&r);
	}
}

static void test_data_too_big(void **state)
{
	(void)state;
	const char in[] = "0123456789\r\n0123456789\r\n.\r\nRSET\r\n";
	/* 24 bytes of content: a limit of 24 holds it, 23 does not. */
	smtp_data_reader *r = smtp_data_reader_new(24);
	data_run *run = calloc(1, sizeof(*run));
	data_feed(r, in, strlen(in), 1, 16, run);
	assert_int_equal(run->result, SMTP_PARSE_DONE);
	assert_false(smtp_data_reader_too_big(r));
	assert_int_equal(run->out_len, 24);

	smtp_data_reader_reset(r, 23);
	memset(run, 0, sizeof(*run));
	data_feed(r, in, strlen(in), 1, 16, run);
	/* Read to the end all the same, and say how big it was. */
	assert_int_equal(run->result, SMTP_PARSE_DONE);
	assert_int_equal(run->consumed, strlen(in) - 6);
	assert_true(smtp_data_reader_too_big(r));
	assert_int_equal(smtp_data_reader_size(r), 24);
	assert_true(run->out_len <= 23);

	/* The bytes kept up to the limit do not depend on how the input was
	 * split: fed whole, the copying fast path must stop at the limit too. */
	data_run *whole = calloc(1, sizeof(*whole));
	smtp_data_reader_reset(r, 15);
	data_feed(r, in, strlen(in), strlen(in), 4096, whole);
	smtp_data_reader_reset(r, 15);
	memset(run, 0, sizeof(*run));
	data_feed(r, in, strlen(in), 1, 16, run);
	assert_int_equal(whole->out_len, 15);
	assert_int_equal(run->out_len, 15);
	assert_memory_equal(whole->out, run->out, 15);
	free(whole);

	/* After DONE the reader consumes nothing more. */
	size_t consumed = 1, out_len = 1;
	uint8_t out[8];
	assert_int_equal(smtp_data_reader_feed(r, U8("x"), 1, &consumed, out,
					       sizeof(out), &out_len), SMTP_PARSE_DONE);
	assert_int_equal(consumed, 0);
	assert_int_equal(out_len, 0);
	free(run);
	smtp_data_reader_free(&r);
	assert_null(r);
}

/* Content with dots at line starts survives stuffing then reading back. */
static void test_dot_stuffer_round_trip(void **state)
{
	(void)state;
	static const char *contents[] = {
		"",
		"a\r\n",
		".\r\n",
		"..\r\n.x\r\n\r\n.\r\n",
		".leading\r\nmiddle . dot\r\n.\r\n..\r\n",
		"no final line end",
		".",
	};
	for (size_t i = 0; i < sizeof(contents) / sizeof(contents[0]); i++) {
		const char *c = contents[i];
		size_t clen = strlen(c);
		smtp_dot_stuffer st;
		smtp_dot_stuffer_init(&st);
		uint8_t wire[256];
		size_t w = 0;
		/* Byte by byte, to cross every boundary. */
		for (size_t j = 0; j < clen; j++)
			w += smtp_dot_stuffer_feed(&st, U8(c + j), 1, wire + w, sizeof(wire) - w);
		const char *end = smtp_dot_stuffer_end(&st);
		memcpy(wire + w, end, strlen(end));
		w += strlen(end);

		smtp_data_reader *r = smtp_data_reader_new(1 << 20);
		data_run *run = calloc(1, sizeof(*run));
		data_feed(r, (const char *)wire, w, 1, 16, run);
		assert_int_equal(run->result, SMTP_PARSE_DONE);
		assert_int_equal(run->consumed, w);
		/* Content without a final CRLF gets one. */
		bool crlf_end = clen == 0 || (clen >= 2 && c[clen - 2] == '\r' &&
					      c[clen - 1] == '\n');
		assert_int_equal(run->out_len, clen + (crlf_end ? 0 : 2));
		assert_memory_equal(run->out, c, clen);
		free(run);
		smtp_data_reader_free(&r);
	}
	smtp_dot_stuffer st;
	smtp_dot_stuffer_init(&st);
	uint8_t out[16];
	assert_int_equal(smtp_dot_stuffer_feed(&st, U8(".a\r\n.b"), 6, out, sizeof(out)), 8);
	assert_memory_equal(out, "..a\r\n..b", 8);
	assert_string_equal(smtp_dot_stuffer_end(&st), "\r\n.\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_command_bytewise),
		cmocka_unit_test(test_command_pipelined),
		cmocka_unit_test(test_command_too_long),
		cmocka_unit_test(test_command_bad_bytes),
		cmocka_unit_test(test_path_mail_params),
		cmocka_unit_test(test_path_forms),
		cmocka_unit_test(test_path_errors),
		cmocka_unit_test(test_reply_single),
		cmocka_unit_test(test_reply_multiline),
		cmocka_unit_test(test_reply_errors),
		cmocka_unit_test(test_data_dot_stuffing),
		cmocka_unit_test(test_data_smuggling),
		cmocka_unit_test(test_data_too_big),
		cmocka_unit_test(test_dot_stuffer_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
