/* The APPEND argument parser (fed the framer's frames, the client's bytes
 * offered one at a time and all at once) and the decision what a message
 * appended to the provider becomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "imap_append.h"
#include "imap_parser.h"

typedef struct {
	GString *log;		/* what the parser said, e.g. "L(m,s,5,[(\Seen)])D(hello)E" */
	GString *mailbox;
	imap_append_error error;
	const char *error_text;
	bool done;
} run_result;

static void run_clear(run_result *r)
{
	g_string_free(r->log, TRUE);
	g_string_free(r->mailbox, TRUE);
}

/* Feeds cmd through a framer step bytes at a time (0: all at once), the
 * frames to the parser; stops at the first error or at the line end. */
static run_result run(const char *cmd, size_t step, uint64_t max_message, unsigned max_messages)
{
	run_result r = { g_string_new(NULL), g_string_new(NULL), IMAP_APPEND_ERROR_NONE, NULL,
			 false };
	size_t len = strlen(cmd);
	imap_framer f;
	imap_framer_init(&f, 4096, 1 << 20);
	imap_append_parser p;
	imap_append_parser_init(&p, max_message, max_message * 4, max_messages);
	size_t offered = 0, consumed = 0;
	bool first = true;
	GString *data = NULL;
	while (!r.done && r.error == IMAP_APPEND_ERROR_NONE) {
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&f, (const uint8_t *)cmd + consumed,
							 offered - consumed, &fr, &error);
		assert_int_not_equal(ret, IMAP_PARSE_ERROR);
		if (ret == IMAP_PARSE_MORE) {
			if (offered == len)
				break;
			offered = step == 0 || offered + step > len ? len : offered + step;
			continue;
		}
		size_t args_pos = 0;
		if (first) {
			imap_command c;
			assert_int_equal(imap_parser_command(fr.data, fr.len, &c, &error), 0);
			assert_string_equal(c.name, "APPEND");
			args_pos = c.args_pos;
			first = false;
		}
		imap_append_event ev;
		imap_append_error kind;
		if (imap_append_parser_feed(&p, &fr, args_pos, &ev, &kind, &error) < 0) {
			assert_int_not_equal(kind, IMAP_APPEND_ERROR_NONE);
			r.error = kind;
			r.error_text = error;
			break;
		}
		switch (ev.type) {
		case IMAP_APPEND_EV_NONE:
			break;
		case IMAP_APPEND_EV_LITERAL:
			g_string_append_printf(r.log, "L(%s,%s,%llu", ev.message ? "m" : "b",
					       ev.sync ? "s" : "n", (unsigned long long)ev.size);
			if (ev.message)
				g_string_append_printf(r.log, ",[%.*s]", (int)ev.args_len,
						       (const char *)ev.args);
			g_string_append(r.log, ")");
			if (ev.message)
				data = g_string_new(NULL);
			break;
		case IMAP_APPEND_EV_DATA:
			assert_non_null(data);
			g_string_append_len(data, (const char *)ev.data, (gssize)ev.len);
			if (ev.end) {
				g_string_append_printf(r.log, "D(%s)", data->str);
				g_string_free(data, TRUE);
				data = NULL;
			}
			break;
		case IMAP_APPEND_EV_DONE:
			g_string_append(r.log, "E");
			r.done = true;
			break;
		}
		consumed += fr.len;
	}
	if (data != NULL)
		g_string_free(data, TRUE);
	g_string_append_len(r.mailbox, (const char *)p.mailbox, (gssize)p.mailbox_len);
	if (r.done)
		assert_int_equal(consumed, len);
	return r;
}

/* The same transcript whatever the step. */
static void expect(const char *cmd, const char *log, const char *mailbox)
{
	static const size_t steps[] = { 1, 2, 3, 7, 0 };
	for (size_t i = 0; i < G_N_ELEMENTS(steps); i++) {
		run_result r = run(cmd, steps[i], 1000, 10);
		if (r.error != IMAP_APPEND_ERROR_NONE)
			fail_msg("%s: step %zu: error %s", cmd, steps[i], r.error_text);
		assert_true(r.done);
		assert_string_equal(r.log->str, log);
		assert_string_equal(r.mailbox->str, mailbox);
		run_clear(&r);
	}
}

static void expect_error(const char *cmd, imap_append_error kind, uint64_t max_message,
			 unsigned max_messages)
{
	static const size_t steps[] = { 1, 0 };
	for (size_t i = 0; i < G_N_ELEMENTS(steps); i++) {
		run_result r = run(cmd, steps[i], max_message, max_messages);
		if (r.error != kind)
			fail_msg("%s: step %zu: error %d, expected %d (%s)", cmd, steps[i], r.error,
				 kind, r.log->str);
		assert_non_null(r.error_text);
		run_clear(&r);
	}
}

static void test_one_message(void **state)
{
	(void)state;
	expect("a1 APPEND Sent (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {5}\r\nhello\r\n",
	       "L(m,s,5,[(\\Seen) \"01-Jan-2020 10:00:00 +0000\"])D(hello)E", "Sent");
	expect("a1 APPEND Sent {5}\r\nhello\r\n", "L(m,s,5,[])D(hello)E", "Sent");
	expect("a1 APPEND Drafts (\\Draft \\Seen) {3+}\r\nabc\r\n",
	       "L(m,n,3,[(\\Draft \\Seen)])D(abc)E", "Drafts");
	expect("a1 APPEND Drafts () {3+}\r\nabc\r\n", "L(m,n,3,[()])D(abc)E", "Drafts");
	expect("a1 APPEND Sent \"02-Feb-2021 01:02:03 +0100\" {1}\r\nx\r\n",
	       "L(m,s,1,[\"02-Feb-2021 01:02:03 +0100\"])D(x)E", "Sent");
	/* Literal data is never looked at: CRLF, braces and parentheses inside. */
	expect("a1 APPEND INBOX {14}\r\n{3}\r\n(x)\r\nab\r\n\r\n", "L(m,s,14,[])D({3}\r\n(x)\r\nab\r\n)E",
	       "INBOX");
	/* LF alone ends lines too. */
	expect("a1 APPEND INBOX {2}\nab\n", "L(m,s,2,[])D(ab)E", "INBOX");
}

static void test_mailbox_forms(void **state)
{
	(void)state;
	expect("a APPEND \"My \\\"Box\\\" \\\\x\" {1+}\r\nz\r\n", "L(m,n,1,[])D(z)E",
	       "My \"Box\" \\x");
	expect("a APPEND {4}\r\nSent {1}\r\nx\r\n", "L(b,s,4)L(m,s,1,[])D(x)E", "Sent");
	expect("a APPEND {7+}\r\nA B (C) (\\Seen) {1}\r\nx\r\n", "L(b,n,7)L(m,s,1,[(\\Seen)])D(x)E",
	       "A B (C)");
	expect("a APPEND {0}\r\n {1}\r\nx\r\n", "L(b,s,0)L(m,s,1,[])D(x)E", "");
	expect("a APPEND &AOQ-bersicht {1}\r\nx\r\n", "L(m,s,1,[])D(x)E", "&AOQ-bersicht");
}

static void test_multiappend(void **state)
{
	(void)state;
	expect("a APPEND INBOX {2}\r\nab (\\Draft) {3+}\r\nxyz {0}\r\n \"01-Jan-2020 10:00:00 +0000\" {1}\r\nq\r\n",
	       "L(m,s,2,[])D(ab)L(m,n,3,[(\\Draft)])D(xyz)L(m,s,0,[])D()"
	       "L(m,s,1,[\"01-Jan-2020 10:00:00 +0000\"])D(q)E",
	       "INBOX");
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("a APPEND Sent (\\Seen)\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND (x) {1}\r\nx\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND Sent \"01-Jan-2020 10:00:00 +0000\" (\\Seen) {1}\r\nx\r\n",
		     IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND Sent (\\Seen) (\\Seen) {1}\r\nx\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND Sent (\"x\") {1}\r\nx\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND Sent {1}\r\nxjunk\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND Sent {1}\r\nx (\\Seen)\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	expect_error("a APPEND Sent CATENATE (TEXT {1}\r\nx)\r\n", IMAP_APPEND_ERROR_UNSUPPORTED,
		     100, 10);
	expect_error("a APPEND Sent UTF8 (~{1}\r\nx)\r\n", IMAP_APPEND_ERROR_UNSUPPORTED, 100, 10);
	expect_error("a APPEND Sent ~{1}\r\nx\r\n", IMAP_APPEND_ERROR_UNSUPPORTED, 100, 10);
	expect_error("a APPEND Sent {11}\r\n", IMAP_APPEND_ERROR_TOOBIG, 10, 10);
	expect_error("a APPEND Sent {10}\r\n0123456789 {1+}\r\nx {1+}\r\ny\r\n",
		     IMAP_APPEND_ERROR_TOOBIG, 10, 2);
	/* Together beyond four times the message limit. */
	expect_error("a APPEND Sent {3}\r\nabc {3}\r\nabc {3}\r\nabc {3}\r\nabc {3}\r\n",
		     IMAP_APPEND_ERROR_TOOBIG, 3, 10);
	char longbox[2100];
	memset(longbox, 'x', sizeof(longbox) - 1);
	longbox[sizeof(longbox) - 1] = '\0';
	char *cmd = g_strdup_printf("a APPEND %s {1}\r\nx\r\n", longbox);
	expect_error(cmd, IMAP_APPEND_ERROR_SYNTAX, 100, 10);
	g_free(cmd);
	expect_error("a APPEND {2000}\r\n", IMAP_APPEND_ERROR_SYNTAX, 100, 10);
}

static void test_after_error_nothing_more(void **state)
{
	(void)state;
	imap_append_parser p;
	imap_append_parser_init(&p, 10, 40, 10);
	const char *line = "a APPEND Sent CATENATE\r\n";
	imap_frame fr = { .type = IMAP_FRAME_TEXT, .data = (const uint8_t *)line,
			  .len = strlen(line), .line_start = true, .line_end = true };
	imap_append_event ev;
	imap_append_error kind;
	const char *error;
	assert_int_equal(imap_append_parser_feed(&p, &fr, 9, &ev, &kind, &error), -1);
	assert_int_equal(kind, IMAP_APPEND_ERROR_UNSUPPORTED);
	fr.line_start = false;
	assert_int_equal(imap_append_parser_feed(&p, &fr, 0, &ev, &kind, &error), -1);
	/* A first frame whose arguments offset is past its end. */
	imap_append_parser_init(&p, 10, 40, 10);
	fr.line_start = true;
	assert_int_equal(imap_append_parser_feed(&p, &fr, fr.len + 1, &ev, &kind, &error), -1);
}

static void test_decide(void **state)
{
	(void)state;
	/* encrypt_append, already encrypted, decrypted view */
	assert_int_equal(imap_append_decide(true, false, false), IMAP_APPEND_ENCRYPT);
	assert_int_equal(imap_append_decide(true, true, false), IMAP_APPEND_KEEP);
	assert_int_equal(imap_append_decide(false, false, false), IMAP_APPEND_KEEP);
	assert_int_equal(imap_append_decide(false, true, false), IMAP_APPEND_KEEP);
	assert_int_equal(imap_append_decide(true, false, true), IMAP_APPEND_ENCRYPT);
	assert_int_equal(imap_append_decide(false, false, true), IMAP_APPEND_ENCRYPT);
	assert_int_equal(imap_append_decide(true, true, true), IMAP_APPEND_ENCRYPT);
	assert_int_equal(imap_append_decide(false, true, true), IMAP_APPEND_ENCRYPT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_message),
		cmocka_unit_test(test_mailbox_forms),
		cmocka_unit_test(test_multiappend),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_after_error_nothing_more),
		cmocka_unit_test(test_decide),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
