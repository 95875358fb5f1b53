/* Unit tests of the IMAP framer, tokenizer, command/response heads and the
 * capability filter: byte-by-byte feeding, every literal form, limits that
 * fail without allocating, and whole-versus-split feeding agreeing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "imap_capability.h"
#include "imap_parser.h"

#define MB (1024u * 1024u)

/* ---- a feeding harness ------------------------------------------------------
 * Feeds input in chunks (sizes from a pattern) to one framer as a socket
 * reader would: unconsumed bytes stay, new ones are appended. Records each
 * frame as text; consecutive chunks of one literal are merged so logs of
 * different splits are comparable. */

typedef struct {
	char log[16384];
	size_t log_len;
	int more_before_lf;	/* MOREs returned while a line was incomplete */
	bool error;
	const char *error_text;
} feed_result;

static void feed_log(feed_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void feed_log(feed_result *r, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(r->log + r->log_len, sizeof(r->log) - r->log_len, fmt, args);
	va_end(args);
	assert_true(n >= 0 && (size_t)n < sizeof(r->log) - r->log_len);
	r->log_len += (size_t)n;
}

static void feed_log_bytes(feed_result *r, const uint8_t *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];
		if (c == '\r')
			feed_log(r, "\\r");
		else if (c == '\n')
			feed_log(r, "\\n");
		else if (c < 0x20 || c >= 0x7f)
			feed_log(r, "\\x%02x", c);
		else
			feed_log(r, "%c", c);
	}
}

/* chunk(i) gives the size of the i-th piece. */
typedef size_t (*chunker)(size_t i, void *ctx);

static void feed(const void *input, size_t len, size_t max_line,
		 uint64_t max_literal, chunker chunk, void *ctx,
		 feed_result *r)
{
	memset(r, 0, sizeof(*r));
	imap_framer f;
	imap_framer_init(&f, max_line, max_literal);
	uint8_t *buf = malloc(len + 1);
	size_t start = 0, end = 0, fed = 0;
	bool in_literal_log = false;
	for (size_t i = 0; fed < len && !r->error; i++) {
		size_t n = chunk(i, ctx);
		if (n == 0)
			n = 1;
		if (n > len - fed)
			n = len - fed;
		memcpy(buf + end, (const uint8_t *)input + fed, n);
		end += n;
		fed += n;
		for (;;) {
			imap_frame fr;
			const char *error = NULL;
			imap_parse_result ret = imap_framer_next(&f, buf + start, end - start,
								 &fr, &error);
			if (ret == IMAP_PARSE_ERROR) {
				assert_non_null(error);
				r->error = true;
				r->error_text = error;
				feed_log(r, "ERROR(%s)", error);
				break;
			}
			if (ret == IMAP_PARSE_MORE) {
				if (!imap_framer_in_literal(&f))
					r->more_before_lf++;
				break;
			}
			assert_ptr_equal(fr.data, buf + start);
			assert_true(fr.len <= end - start);
			if (fr.type == IMAP_FRAME_TEXT) {
				assert_false(in_literal_log);
				/* A text frame always ends at its first LF. */
				assert_int_equal(fr.data[fr.len - 1], '\n');
				assert_null(memchr(fr.data, '\n', fr.len - 1));
				feed_log(r, "[T%s%s ", fr.line_start ? "s" : "",
					 fr.line_end ? "e" : "");
				feed_log_bytes(r, fr.data, fr.len);
				if (!fr.line_end)
					feed_log(r, " lit=%llu%s%s",
						 (unsigned long long)fr.literal_size,
						 fr.literal_sync ? " sync" : "",
						 fr.literal_binary ? " bin" : "");
				feed_log(r, "]");
			} else {
				if (!in_literal_log) {
					feed_log(r, "[L ");
					in_literal_log = true;
				}
				feed_log_bytes(r, fr.data, fr.len);
				if (fr.literal_end) {
					feed_log(r, "]");
					in_literal_log = false;
				}
			}
			start += fr.len;
		}
	}
	if (!r->error && start != end)
		feed_log(r, "[PENDING %zu]", end - start);
	free(buf);
}

static size_t chunk_one(size_t i, void *ctx)
{
	(void)i;
	(void)ctx;
	return 1;
}

static size_t chunk_all(size_t i, void *ctx)
{
	(void)i;
	(void)ctx;
	return SIZE_MAX;
}

static size_t chunk_random(size_t i, void *ctx)
{
	unsigned *seed = ctx;
	(void)i;
	*seed = *seed * 1103515245u + 12345u;
	return 1 + (*seed >> 16) % 23;
}

/* Feeds one byte at a time, whole, and with random splits; all three logs
 * must be the same, and the byte-wise log must equal expected. */
static void check_feed_len(const char *input, size_t len, const char *expected)
{
	feed_result one, all, rnd;
	feed(input, len, 1024, 64 * MB, chunk_one, NULL, &one);
	feed(input, len, 1024, 64 * MB, chunk_all, NULL, &all);
	if (expected != NULL)
		assert_string_equal(one.log, expected);
	assert_string_equal(one.log, all.log);
	for (unsigned seed = 1; seed < 40; seed++) {
		unsigned s = seed;
		feed(input, len, 1024, 64 * MB, chunk_random, &s, &rnd);
		assert_string_equal(one.log, rnd.log);
	}
}

/* String literals may hold NUL bytes. */
#define check_feed(input, expected) check_feed_len(input, sizeof(input) - 1, expected)

/* ---- framer --------------------------------------------------------------- */

static void test_framer_commands_bytewise(void **state)
{
	(void)state;
	check_feed(
		"a1 NOOP\r\n"
		"a2 LOGIN {5}\r\nalice {6}\r\nsecret\r\n"
		"a3 APPEND INBOX (\\Seen) {3+}\r\nxyz\r\n"
		"a4 APPEND INBOX ~{4}\r\n\x00\x01\r\n\r\n"
		"a5 SEARCH TEXT {0}\r\n\r\n"
		"a6 FETCH 1 (BODY[HEADER.FIELDS (FROM TO)])\r\n",
		"[Tse a1 NOOP\\r\\n]"
		"[Ts a2 LOGIN {5}\\r\\n lit=5 sync][L alice]"
		"[T  {6}\\r\\n lit=6 sync][L secret][Te \\r\\n]"
		"[Ts a3 APPEND INBOX (\\Seen) {3+}\\r\\n lit=3][L xyz][Te \\r\\n]"
		"[Ts a4 APPEND INBOX ~{4}\\r\\n lit=4 sync bin][L \\x00\\x01\\r\\n][Te \\r\\n]"
		"[Ts a5 SEARCH TEXT {0}\\r\\n lit=0 sync][L ][Te \\r\\n]"
		"[Tse a6 FETCH 1 (BODY[HEADER.FIELDS (FROM TO)])\\r\\n]");
}

static void test_framer_literal_looks_like_lines(void **state)
{
	(void)state;
	/* Literal data holding CRLFs, "}" and a fake tagged reply is data. */
	check_feed(
		"* 1 FETCH (UID 7 BODY[] {22}\r\na OK {5}\r\nx\r\n* BYE x\r\n)\r\n"
		"a OK done\r\n",
		"[Ts * 1 FETCH (UID 7 BODY[] {22}\\r\\n lit=22 sync]"
		"[L a OK {5}\\r\\nx\\r\\n* BYE x\\r\\n][Te )\\r\\n]"
		"[Tse a OK done\\r\\n]");
}

static void test_framer_responses_bytewise(void **state)
{
	(void)state;
	check_feed(
		"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n"
		"+ go ahead\r\n"
		"* 2 FETCH (BODY[1] {3}\r\nabc BODY[2] {0}\r\n FLAGS (\\Seen))\r\n"
		"* 3 FETCH (BINARY[1] ~{2}\r\n\x00\xff)\r\n"
		"tag1 OK FETCH completed\r\n",
		"[Tse * OK [CAPABILITY IMAP4rev1 LITERAL+] ready\\r\\n]"
		"[Tse + go ahead\\r\\n]"
		"[Ts * 2 FETCH (BODY[1] {3}\\r\\n lit=3 sync][L abc]"
		"[T  BODY[2] {0}\\r\\n lit=0 sync][L ][Te  FLAGS (\\Seen))\\r\\n]"
		"[Ts * 3 FETCH (BINARY[1] ~{2}\\r\\n lit=2 sync bin][L \\x00\\xff][Te )\\r\\n]"
		"[Tse tag1 OK FETCH completed\\r\\n]");
}

static void test_framer_not_literals(void **state)
{
	(void)state;
	/* Braces inside quotes, without digits, or not at the end are text. */
	check_feed(
		"* OK \"{5}\"\r\n"
		"a LOGIN \"x {5}\"\r\n"
		"a LOGIN \"x\\\" {5}\"\r\n"
		"* OK {abc}\r\n"
		"* OK {}\r\n"
		"* OK {+}\r\n"
		"* OK {5} more\r\n"
		"a NOOP }\r\n"
		"bare lf {x}\n",
		"[Tse * OK \"{5}\"\\r\\n]"
		"[Tse a LOGIN \"x {5}\"\\r\\n]"
		"[Tse a LOGIN \"x\\\" {5}\"\\r\\n]"
		"[Tse * OK {abc}\\r\\n]"
		"[Tse * OK {}\\r\\n]"
		"[Tse * OK {+}\\r\\n]"
		"[Tse * OK {5} more\\r\\n]"
		"[Tse a NOOP }\\r\\n]"
		"[Tse bare lf {x}\\n]");
	/* Outside quotes a backslash escapes nothing: the quote opens a
	 * quoted string (as a server reads it), so the braces are text. */
	check_feed("a X \\\" {2}\r\nab\r\n",
		   "[Tse a X \\\" {2}\\r\\n][Tse ab\\r\\n]");
	/* A bare LF ends a line too, and may end an announcement. */
	check_feed("a LOGIN {1}\nx y\n",
		   "[Ts a LOGIN {1}\\n lit=1 sync][L x][Te  y\\n]");
	/* Leading zeros are fine. */
	check_feed("a X {0000000000000000000000000002}\r\nab\r\n",
		   "[Ts a X {0000000000000000000000000002}\\r\\n lit=2 sync][L ab][Te \\r\\n]");
}

static void test_framer_need_more_until_lf(void **state)
{
	(void)state;
	const char *input = "a001 LOGIN alice secret\r\n";
	feed_result r;
	feed(input, strlen(input), 1024, 1024, chunk_one, NULL, &r);
	/* One MORE for every byte before the LF, one when all is consumed. */
	assert_int_equal(r.more_before_lf, (int)strlen(input));
	assert_string_equal(r.log, "[Tse a001 LOGIN alice secret\\r\\n]");

	/* An incomplete line stays pending. */
	feed("a NOOP", 6, 1024, 1024, chunk_one, NULL, &r);
	assert_string_equal(r.log, "[PENDING 6]");
	/* A literal that has not fully arrived stays open. */
	feed("a X {5}\r\nab", 11, 1024, 1024, chunk_all, NULL, &r);
	assert_string_equal(r.log, "[Ts a X {5}\\r\\n lit=5 sync][L ab");
}

static void test_framer_line_too_long(void **state)
{
	(void)state;
	feed_result r;
	char line[64];
	/* Exactly max_line bytes including CRLF is fine. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "a NOOP ", 7);
	memcpy(line + 14, "\r\n", 2);
	feed(line, 16, 16, 1024, chunk_one, NULL, &r);
	assert_false(r.error);
	/* One more byte is not, whole or byte by byte, with or without LF. */
	memcpy(line + 15, "\r\n", 2);
	feed(line, 17, 16, 1024, chunk_one, NULL, &r);
	assert_true(r.error);
	assert_string_equal(r.error_text, "line too long");
	feed(line, 17, 16, 1024, chunk_all, NULL, &r);
	assert_true(r.error);
	feed(line, 40, 16, 1024, chunk_one, NULL, &r);
	assert_true(r.error);
	assert_string_equal(r.error_text, "line too long");

	/* The error is reached as soon as max_line bytes without LF are in,
	 * without waiting for the rest (memory stays bounded). */
	imap_framer f;
	imap_frame fr;
	const char *error = NULL;
	imap_framer_init(&f, 16, 1024);
	assert_int_equal(imap_framer_next(&f, (const uint8_t *)line, 15, &fr, &error),
			 IMAP_PARSE_MORE);
	assert_int_equal(imap_framer_next(&f, (const uint8_t *)line, 16, &fr, &error),
			 IMAP_PARSE_ERROR);
	/* Errors are sticky. */
	error = NULL;
	assert_int_equal(imap_framer_next(&f, (const uint8_t *)"a\r\n", 3, &fr, &error),
			 IMAP_PARSE_ERROR);
	assert_string_equal(error, "line too long");

	/* The limit applies to each fragment, not to literal data. */
	feed("a APPEND X {40}\r\n0123456789012345678901234567890123456789\r\n", 59,
	     20, 1024, chunk_one, NULL, &r);
	assert_false(r.error);
}

static void test_framer_literal_too_large(void **state)
{
	(void)state;
	feed_result r;
	const char *cmd = "a APPEND INBOX {4294967296}\r\n";
	feed(cmd, strlen(cmd), 65536, 64 * MB, chunk_one, NULL, &r);
	assert_true(r.error);
	assert_string_equal(r.error_text, "literal too large");
	/* No frame was produced for the announcement. */
	assert_string_equal(r.log, "ERROR(literal too large)");

	const char *resp = "* 1 FETCH (BODY[] {4294967296}\r\n";
	feed(resp, strlen(resp), 65536, 64 * MB, chunk_all, NULL, &r);
	assert_true(r.error);

	/* Larger than any 64-bit number, with no limit in the way. */
	const char *huge = "* 1 FETCH (BODY[] {18446744073709551616}\r\n";
	feed(huge, strlen(huge), 65536, UINT64_MAX, chunk_all, NULL, &r);
	assert_true(r.error);
	const char *max = "* 1 FETCH (BODY[] {18446744073709551615}\r\n";
	feed(max, strlen(max), 65536, UINT64_MAX, chunk_all, NULL, &r);
	assert_false(r.error);
	const char *digits = "a X {999999999999999999999999999999999}\r\n";
	feed(digits, strlen(digits), 65536, UINT64_MAX, chunk_all, NULL, &r);
	assert_true(r.error);

	/* Exactly the limit is allowed, one more is not. */
	feed("a X {1024}\r\n", 12, 65536, 1024, chunk_all, NULL, &r);
	assert_false(r.error);
	feed("a X {1025}\r\n", 12, 65536, 1024, chunk_all, NULL, &r);
	assert_true(r.error);
}

static void test_framer_cancel_literal(void **state)
{
	(void)state;
	imap_framer f;
	imap_frame fr;
	const char *error;
	const uint8_t *cmd = (const uint8_t *)"a APPEND INBOX {10}\r\n";
	imap_framer_init(&f, 1024, 1024);
	assert_true(imap_framer_at_line_start(&f));
	assert_int_equal(imap_framer_next(&f, cmd, 21, &fr, &error), IMAP_PARSE_DONE);
	assert_true(fr.literal_sync);
	assert_true(imap_framer_in_literal(&f));
	assert_false(imap_framer_at_line_start(&f));
	/* The server said "a NO" instead of "+": the next bytes are a new
	 * command, not literal data. */
	imap_framer_cancel_literal(&f);
	assert_true(imap_framer_at_line_start(&f));
	assert_int_equal(imap_framer_next(&f, (const uint8_t *)"b NOOP\r\n", 8, &fr, &error),
			 IMAP_PARSE_DONE);
	assert_int_equal(fr.type, IMAP_FRAME_TEXT);
	assert_true(fr.line_start);
	assert_true(fr.line_end);
}

static void test_framer_literal_chunks(void **state)
{
	(void)state;
	imap_framer f;
	imap_frame fr;
	const char *error;
	uint8_t data[100];
	memset(data, 'z', sizeof(data));
	imap_framer_init(&f, 1024, 1024);
	assert_int_equal(imap_framer_next(&f, (const uint8_t *)"* 1 FETCH (BODY[] {150}\r\n",
					  26, &fr, &error), IMAP_PARSE_DONE);
	assert_int_equal(fr.literal_size, 150);
	/* Nothing buffered: need more. */
	assert_int_equal(imap_framer_next(&f, data, 0, &fr, &error), IMAP_PARSE_MORE);
	/* Chunks are handed out in place, as large as what is there. */
	assert_int_equal(imap_framer_next(&f, data, 100, &fr, &error), IMAP_PARSE_DONE);
	assert_int_equal(fr.type, IMAP_FRAME_LITERAL);
	assert_ptr_equal(fr.data, data);
	assert_int_equal(fr.len, 100);
	assert_int_equal(fr.literal_left, 50);
	assert_false(fr.literal_end);
	/* Never more than the literal, even if more is buffered. */
	assert_int_equal(imap_framer_next(&f, data, 100, &fr, &error), IMAP_PARSE_DONE);
	assert_int_equal(fr.len, 50);
	assert_true(fr.literal_end);
	assert_int_equal(fr.literal_left, 0);
	assert_false(imap_framer_in_literal(&f));
}

/* Deterministic pseudo-random streams of valid and invalid IMAP: every
 * split gives the same frames. */
static void test_framer_split_equivalence(void **state)
{
	(void)state;
	static const char *const pieces[] = {
		"a NOOP\r\n", "* OK x\r\n", "b LOGIN {3}\r\n", "abc", " {2+}\r\n",
		"de", "\r\n", "* 1 FETCH (BODY[] {4}\r\n", "\r\n\r\n", ")\r\n",
		"c X ~{1}\r\n", "\x00", "\"{9}\"\r\n", "}\r\n", "{", "9", "+",
		"\n", "\r", " ", "}", "~{3}\r\n",
	};
	unsigned seed = 7;
	char input[2048];
	for (int round = 0; round < 300; round++) {
		size_t len = 0;
		int n = 1 + round % 40;
		for (int i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			const char *p = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
			size_t plen = p[0] == '\0' ? 1 : strlen(p);
			if (len + plen >= sizeof(input))
				break;
			memcpy(input + len, p, plen);
			len += plen;
		}
		feed_result one, all, rnd;
		feed(input, len, 64, 32, chunk_one, NULL, &one);
		feed(input, len, 64, 32, chunk_all, NULL, &all);
		unsigned s = seed;
		feed(input, len, 64, 32, chunk_random, &s, &rnd);
		assert_string_equal(one.log, all.log);
		assert_string_equal(one.log, rnd.log);
	}
}

/* ---- tokenizer ------------------------------------------------------------ */

static void tokens_log(const char *line, size_t len, unsigned max_depth,
		       char *out, size_t out_size)
{
	imap_tokenizer t;
	imap_tokenizer_init(&t, line, len, max_depth);
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < 100; i++) {
		imap_token tok;
		const char *error = NULL;
		int n;
		if (imap_tokenizer_next(&t, &tok, &error) < 0) {
			snprintf(out + used, out_size - used, "ERROR(%s)", error);
			return;
		}
		switch (tok.type) {
		case IMAP_TOKEN_EOL:
			snprintf(out + used, out_size - used, "EOL");
			return;
		case IMAP_TOKEN_ATOM:
			n = snprintf(out + used, out_size - used, "A<%.*s> ", (int)tok.len, tok.data);
			break;
		case IMAP_TOKEN_QUOTED:
			n = snprintf(out + used, out_size - used, "Q<%.*s> ", (int)tok.len, tok.data);
			break;
		case IMAP_TOKEN_LITERAL:
			if (tok.data == NULL)
				n = snprintf(out + used, out_size - used, "L%llu%s%s<> ",
					     (unsigned long long)tok.literal_size,
					     tok.literal_sync ? "" : "+",
					     tok.literal_binary ? "~" : "");
			else
				n = snprintf(out + used, out_size - used, "L%llu%s%s<%.*s> ",
					     (unsigned long long)tok.literal_size,
					     tok.literal_sync ? "" : "+",
					     tok.literal_binary ? "~" : "",
					     (int)tok.len, tok.data);
			break;
		case IMAP_TOKEN_LIST_OPEN:
			n = snprintf(out + used, out_size - used, "( ");
			break;
		case IMAP_TOKEN_LIST_CLOSE:
			n = snprintf(out + used, out_size - used, ") ");
			break;
		default:
			fail();
			return;
		}
		used += (size_t)n;
	}
	fail_msg("tokenizer did not reach EOL");
}

static void check_tokens(const char *line, unsigned depth, const char *expected)
{
	char out[2048];
	tokens_log(line, strlen(line), depth, out, sizeof(out));
	assert_string_equal(out, expected);
}

static void test_tokenizer(void **state)
{
	(void)state;
	check_tokens("a1 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM \"To\")]<0.100>)\r\n", 4,
		     "A<a1> A<FETCH> A<1:*> ( A<FLAGS> "
		     "A<BODY.PEEK[HEADER.FIELDS (FROM \"To\")]<0.100>> ) EOL");
	check_tokens("* 1 FETCH (UID 5 BODY[] {5}\r\nhello FLAGS (\\Seen $Junk) X NIL)\r\n", 4,
		     "A<*> A<1> A<FETCH> ( A<UID> A<5> A<BODY[]> L5<hello> "
		     "A<FLAGS> ( A<\\Seen> A<$Junk> ) A<X> A<NIL> ) EOL");
	check_tokens("a LOGIN \"al\\\"ice\" {3+}\r\nx y\r\n", 4,
		     "A<a> A<LOGIN> Q<al\\\"ice> L3+<x y> EOL");
	check_tokens("* 1 FETCH (BODY[] {310}\r\n", 4,
		     "A<*> A<1> A<FETCH> ( A<BODY[]> L310<> EOL");
	check_tokens("a APPEND X ~{2}\r\n\x01\x02\r\n", 4,
		     "A<a> A<APPEND> A<X> L2~<\x01\x02> EOL");
	/* Brackets keep what they hold in one atom; response codes are read
	 * by imap_parser_response(). */
	check_tokens("* OK [UIDNEXT 5] x\r\n", 4, "A<*> A<OK> A<[UIDNEXT 5]> A<x> EOL");
	check_tokens("* OK x] y\r\n", 4, "A<*> A<OK> A<x> ERROR(unexpected ])");
	check_tokens("* LIST (\\HasNoChildren) \"/\" INBOX\r\n", 4,
		     "A<*> A<LIST> ( A<\\HasNoChildren> ) Q</> A<INBOX> EOL");
	check_tokens("((()))", 3, "( ( ( ) ) ) EOL");
	check_tokens("((((", 3, "( ( ( ERROR(lists nested too deeply)");
	check_tokens("a )", 3, "A<a> ERROR(unexpected ))");
	check_tokens("a \"open\r\n", 3, "A<a> ERROR(unterminated quoted string)");
	check_tokens("a {5}\r\nabc", 3, "A<a> ERROR(literal data truncated)");
	check_tokens("a {x}\r\n", 3, "A<a> ERROR(bad literal syntax)");
	check_tokens("a {5}x\r\n", 3, "A<a> ERROR(bad literal syntax)");
	check_tokens("a {99999999999999999999999}\r\n", 3, "A<a> ERROR(literal too large)");
	check_tokens("a BODY[x\r\n", 3, "A<a> ERROR(unterminated [)");
	check_tokens("a b\rc\r\n", 3, "A<a> A<b> ERROR(CR without LF)");
	check_tokens("", 3, "EOL");
	check_tokens("   \r\n", 3, "EOL");
	char nul[] = "a \0b\r\n";
	char out[256];
	tokens_log(nul, sizeof(nul) - 1, 3, out, sizeof(out));
	assert_string_equal(out, "A<a> ERROR(NUL in line)");
}

/* Walking a FETCH response the way the next stage will: item names,
 * nested lists, NIL and literal bodies, across a whole logical line. */
static void test_tokenizer_fetch_items(void **state)
{
	(void)state;
	const char *line = "* 12 FETCH (UID 7 FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {13}\r\n"
		"From: a@b\r\n\r\n ENVELOPE (NIL \"subj\" ((NIL NIL \"a\" \"b\")) NIL) BODY[] NIL)\r\n";
	imap_tokenizer t;
	imap_token tok;
	const char *error;
	imap_tokenizer_init(&t, line, strlen(line), 8);
	int items = 0, nils = 0;
	bool saw_body = false;
	for (;;) {
		assert_int_equal(imap_tokenizer_next(&t, &tok, &error), 0);
		if (tok.type == IMAP_TOKEN_EOL)
			break;
		if (imap_token_is(&tok, "nil"))
			nils++;
		if (imap_token_is(&tok, "BODY[HEADER.FIELDS (FROM)]")) {
			assert_int_equal(t.depth, 1);
			assert_int_equal(imap_tokenizer_next(&t, &tok, &error), 0);
			assert_int_equal(tok.type, IMAP_TOKEN_LITERAL);
			assert_int_equal(tok.len, 13);
			assert_memory_equal(tok.data, "From: a@b\r\n\r\n", 13);
			saw_body = true;
		}
		if (t.depth == 1 && tok.type == IMAP_TOKEN_ATOM)
			items++;
	}
	assert_true(saw_body);
	assert_int_equal(nils, 5);
	assert_int_equal(t.depth, 0);
	/* UID 7 FLAGS ENVELOPE BODY[] NIL (the last item's value) */
	assert_int_equal(items, 6);
	imap_token q = { .type = IMAP_TOKEN_QUOTED, .data = (const uint8_t *)"NIL", .len = 3 };
	assert_false(imap_token_is(&q, "NIL"));
}

static void test_astring(void **state)
{
	(void)state;
	imap_tokenizer t;
	uint8_t buf[8];
	size_t len;
	const char *error;
	const char *line = "x \"a\\\\b\" {3}\r\nxyz toolongvalue \"toolongvalue\" (";
	imap_tokenizer_init(&t, line, strlen(line), 2);
	assert_int_equal(imap_tokenizer_astring(&t, buf, sizeof(buf), &len, &error), 0);
	assert_int_equal(len, 1);
	assert_memory_equal(buf, "x", 1);
	assert_int_equal(imap_tokenizer_astring(&t, buf, sizeof(buf), &len, &error), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "a\\b", 3);
	assert_int_equal(imap_tokenizer_astring(&t, buf, sizeof(buf), &len, &error), 0);
	assert_memory_equal(buf, "xyz", 3);
	assert_int_equal(imap_tokenizer_astring(&t, buf, sizeof(buf), &len, &error), -1);
	assert_string_equal(error, "argument too long");
	assert_int_equal(imap_tokenizer_astring(&t, buf, sizeof(buf), &len, &error), -1);
	assert_string_equal(error, "argument too long");
	assert_int_equal(imap_tokenizer_astring(&t, buf, sizeof(buf), &len, &error), -1);
	assert_string_equal(error, "expected a string");
}

/* ---- commands --------------------------------------------------------------- */

static void test_command_head(void **state)
{
	(void)state;
	imap_command cmd;
	const char *error;
	const char *line = "A001 login alice secret\r\n";
	assert_int_equal(imap_parser_command((const uint8_t *)line, strlen(line), &cmd, &error), 0);
	assert_int_equal(cmd.tag_len, 4);
	assert_memory_equal(cmd.tag, "A001", 4);
	assert_string_equal(cmd.name, "LOGIN");
	assert_string_equal(line + cmd.args_pos, "alice secret\r\n");

	line = "x.y] uid fetch 1:* (FLAGS)\r\n";
	assert_int_equal(imap_parser_command((const uint8_t *)line, strlen(line), &cmd, &error), 0);
	assert_string_equal(cmd.name, "UID FETCH");
	assert_memory_equal(cmd.tag, "x.y]", 4);
	assert_string_equal(line + cmd.args_pos, "1:* (FLAGS)\r\n");

	line = "t IDLE\r\n";
	assert_int_equal(imap_parser_command((const uint8_t *)line, strlen(line), &cmd, &error), 0);
	assert_string_equal(cmd.name, "IDLE");
	assert_int_equal(cmd.args_pos, 6);

	line = "t COMPRESS DEFLATE";	/* no line end: a fragment is enough */
	assert_int_equal(imap_parser_command((const uint8_t *)line, strlen(line), &cmd, &error), 0);
	assert_string_equal(cmd.name, "COMPRESS");

	static const char *const bad[] = {
		"\r\n", "DONE\r\n", " NOOP\r\n", "a+b NOOP\r\n", "* NOOP\r\n",
		"a{1} NOOP\r\n", "a \r\n", "a (NOOP\r\n", "a NOOP{5}\r\n",
		"a VERYLONGCOMMANDNAMEVERYLONGCOMMANDNAME\r\n", "\"a\" NOOP\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		assert_int_equal(imap_parser_command((const uint8_t *)bad[i], strlen(bad[i]),
						     &cmd, &error), -1);
		assert_non_null(error);
	}
	char longtag[IMAP_TAG_MAX + 20];
	memset(longtag, 't', sizeof(longtag));
	memcpy(longtag + IMAP_TAG_MAX + 1, " NOOP\r\n", 7);
	assert_int_equal(imap_parser_command((const uint8_t *)longtag, IMAP_TAG_MAX + 8,
					     &cmd, &error), -1);
	assert_string_equal(error, "tag too long");
}

static void check_login(const char *line, const char *user, const char *pass)
{
	imap_command cmd;
	const char *error = NULL;
	uint8_t u[64], p[64];
	size_t ulen, plen;
	assert_int_equal(imap_parser_command((const uint8_t *)line, strlen(line), &cmd, &error), 0);
	int ret = imap_parser_login_args((const uint8_t *)line, strlen(line), &cmd,
					 u, sizeof(u), &ulen, p, sizeof(p), &plen, &error);
	if (user == NULL) {
		assert_int_equal(ret, -1);
		assert_non_null(error);
		return;
	}
	assert_int_equal(ret, 0);
	assert_int_equal(ulen, strlen(user));
	assert_memory_equal(u, user, ulen);
	assert_int_equal(plen, strlen(pass));
	assert_memory_equal(p, pass, plen);
}

static void test_login_args(void **state)
{
	(void)state;
	check_login("a LOGIN alice@example.test secret\r\n", "alice@example.test", "secret");
	check_login("a LOGIN \"alice\" \"se cr\\\"et\\\\\"\r\n", "alice", "se cr\"et\\");
	check_login("a LOGIN {5}\r\nalice {7}\r\nse\r\ncr \r\n", "alice", "se\r\ncr ");
	check_login("a LOGIN {5+}\r\nalice \"\"\r\n", "alice", "");
	check_login("a LOGIN {0}\r\n {1}\r\nx\r\n", "", "x");
	check_login("a LOGIN alice\r\n", NULL, NULL);
	check_login("a LOGIN\r\n", NULL, NULL);
	check_login("a LOGIN alice secret extra\r\n", NULL, NULL);
	check_login("a LOGIN (alice) secret\r\n", NULL, NULL);
	check_login("a LOGIN alice {10}\r\nshort\r\n", NULL, NULL);
	check_login("a LOGIN alice \"unterminated\r\n", NULL, NULL);
	/* Longer than the caller's buffer. */
	check_login("a LOGIN alice xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
		    NULL, NULL);
}

static void check_auth(const char *line, int ret, const char *mech, const char *ir)
{
	imap_command cmd;
	const char *error = NULL;
	const uint8_t *m, *i;
	size_t mlen, ilen;
	assert_int_equal(imap_parser_command((const uint8_t *)line, strlen(line), &cmd, &error), 0);
	assert_int_equal(imap_parser_authenticate_args((const uint8_t *)line, strlen(line), &cmd,
						       &m, &mlen, &i, &ilen, &error), ret);
	if (ret < 0)
		return;
	assert_int_equal(mlen, strlen(mech));
	assert_memory_equal(m, mech, mlen);
	if (ir == NULL) {
		assert_null(i);
	} else {
		assert_int_equal(ilen, strlen(ir));
		assert_memory_equal(i, ir, ilen);
	}
}

static void test_authenticate_args(void **state)
{
	(void)state;
	check_auth("a AUTHENTICATE PLAIN\r\n", 0, "PLAIN", NULL);
	check_auth("a authenticate PLAIN AGFsaWNlAHNlY3JldA==\r\n", 0, "PLAIN",
		   "AGFsaWNlAHNlY3JldA==");
	check_auth("a AUTHENTICATE XOAUTH2 =\r\n", 0, "XOAUTH2", "=");
	check_auth("a AUTHENTICATE SCRAM-SHA-256\r\n", 0, "SCRAM-SHA-256", NULL);
	check_auth("a AUTHENTICATE\r\n", -1, NULL, NULL);
	check_auth("a AUTHENTICATE PLAIN abc def\r\n", -1, NULL, NULL);
	check_auth("a AUTHENTICATE PLAIN a*b\r\n", -1, NULL, NULL);
	check_auth("a AUTHENTICATE \"PLAIN\"\r\n", -1, NULL, NULL);
	check_auth("a AUTHENTICATE PLAIN {4}\r\nabcd\r\n", -1, NULL, NULL);
	check_auth("a AUTHENTICATE PL/AIN\r\n", -1, NULL, NULL);
}

/* ---- responses -------------------------------------------------------------- */

static void test_responses(void **state)
{
	(void)state;
	imap_response r;
	const char *error = NULL;
	const char *line = "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.kind, IMAP_RESP_UNTAGGED);
	assert_int_equal(r.status, IMAP_STATUS_OK);
	assert_string_equal(r.keyword, "OK");
	assert_true(imap_response_code_is(&r, "capability"));
	assert_int_equal(r.code_args_len, strlen("IMAP4rev1 STARTTLS"));
	assert_memory_equal(r.code_args, "IMAP4rev1 STARTTLS", r.code_args_len);
	assert_int_equal(r.text_len, strlen("Dovecot ready."));
	assert_memory_equal(r.text, "Dovecot ready.", r.text_len);

	line = "A1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.kind, IMAP_RESP_TAGGED);
	assert_int_equal(r.tag_len, 2);
	assert_memory_equal(r.tag, "A1", 2);
	assert_int_equal(r.status, IMAP_STATUS_NO);
	assert_true(imap_response_code_is(&r, "AUTHENTICATIONFAILED"));
	assert_null(r.code_args);

	line = "a2 bad Error\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.status, IMAP_STATUS_BAD);
	assert_null(r.code);
	assert_memory_equal(r.text, "Error", r.text_len);

	line = "+ \r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.kind, IMAP_RESP_CONTINUATION);
	assert_int_equal(r.text_len, 0);
	line = "+ idling\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_memory_equal(r.text, "idling", r.text_len);
	line = "+\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.kind, IMAP_RESP_CONTINUATION);

	line = "* 23 EXISTS\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_true(r.has_number);
	assert_int_equal(r.number, 23);
	assert_string_equal(r.keyword, "EXISTS");
	assert_int_equal(r.status, IMAP_STATUS_NONE);

	line = "* 5 FETCH (BODY[] {10}\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_string_equal(r.keyword, "FETCH");
	assert_string_equal(line + r.args_pos, "(BODY[] {10}\r\n");

	line = "* CAPABILITY IMAP4rev1 IDLE\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_string_equal(r.keyword, "CAPABILITY");
	assert_string_equal(line + r.args_pos, "IMAP4rev1 IDLE\r\n");

	line = "* BYE [UNAVAILABLE] going down\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.status, IMAP_STATUS_BYE);
	assert_true(imap_response_code_is(&r, "UNAVAILABLE"));

	line = "* PREAUTH welcome\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_int_equal(r.status, IMAP_STATUS_PREAUTH);

	line = "* OK [ALERT]\r\n";
	assert_int_equal(imap_parser_response((const uint8_t *)line, strlen(line), &r, &error), 0);
	assert_true(imap_response_code_is(&r, "ALERT"));
	assert_int_equal(r.text_len, 0);

	static const char *const bad[] = {
		"\r\n", "*\r\n", "* \r\n", "*OK\r\n", "a OK[x\r\n", "* OK [x\r\n",
		"* OK []\r\n", "* 99999999999 EXISTS\r\n", "* 5\r\n", "a FETCH x\r\n",
		"(a OK\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		assert_int_equal(imap_parser_response((const uint8_t *)bad[i], strlen(bad[i]),
						      &r, &error), -1);
		assert_non_null(error);
	}
}

/* ---- capabilities ----------------------------------------------------------- */

static const char dovecot_caps[] =
	"IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
	"THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
	"NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
	"BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE LITERAL+ "
	"NOTIFY SPECIAL-USE COMPRESS=DEFLATE compress=foo STARTTLS AUTH=PLAIN "
	"AUTH=LOGIN LOGINDISABLED URLAUTH URLAUTH=BINARY";

static void check_filter(const imap_capability_context *ctx, const char *expected)
{
	char out[sizeof(dovecot_caps) + 64];
	int n = imap_capability_filter((const uint8_t *)dovecot_caps,
				       strlen(dovecot_caps), ctx, out, sizeof(out));
	assert_int_equal(n, (int)strlen(expected));
	assert_string_equal(out, expected);
}

static void test_capability_filter(void **state)
{
	(void)state;
	const char *kept =
		"IMAP4rev1 SASL-IR ID ENABLE IDLE SORT SORT=DISPLAY "
		"THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN "
		"NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH "
		"MOVE STATUS=SIZE LITERAL+ SPECIAL-USE";
	char expected[1024];

	/* After login: the provider's list minus what hides content. */
	imap_capability_context post = { .pre_auth = false };
	snprintf(expected, sizeof(expected), "%s AUTH=PLAIN AUTH=LOGIN", kept);
	check_filter(&post, expected);

	/* Before login on TLS: no STARTTLS, AUTH= as the provider has them. */
	imap_capability_context tls = { .pre_auth = true, .client_tls = true };
	check_filter(&tls, expected);

	/* Plain leg where plaintext login is allowed: STARTTLS offered. */
	imap_capability_context plain_ok = { .pre_auth = true, .plaintext_auth_allowed = true };
	snprintf(expected, sizeof(expected), "%s AUTH=PLAIN AUTH=LOGIN STARTTLS", kept);
	check_filter(&plain_ok, expected);

	/* Plain leg, plaintext login not allowed: LOGINDISABLED, no AUTH=. */
	imap_capability_context plain = { .pre_auth = true };
	snprintf(expected, sizeof(expected), "%s STARTTLS LOGINDISABLED", kept);
	check_filter(&plain, expected);

	assert_true(imap_capability_has(dovecot_caps, "literal+"));
	assert_true(imap_capability_has(dovecot_caps, "STARTTLS"));
	assert_false(imap_capability_has(dovecot_caps, "LITERAL"));
	assert_false(imap_capability_has("", "IMAP4rev1"));

	/* Atoms that could break the line they are written into go. */
	const char *odd = "IMAP4rev1 X\"Y (A) B]C IDLE\x01 GOOD";
	char out[128];
	int n = imap_capability_filter((const uint8_t *)odd, strlen(odd), &post, out, sizeof(out));
	assert_int_equal(n, (int)strlen("IMAP4rev1 GOOD"));
	assert_string_equal(out, "IMAP4rev1 GOOD");
	/* Too small an output buffer is an error, not an overflow. */
	assert_int_equal(imap_capability_filter((const uint8_t *)odd, strlen(odd), &post, out, 5), -1);

	/* Channel binding cannot work through a proxy, and a second login
	 * inside a relayed session is not offered. */
	const char *more = "IMAP4rev1 AUTH=SCRAM-SHA-256-PLUS AUTH=SCRAM-SHA-256 "
		"AUTH=plain-plus UNAUTHENTICATE AUTH=PLUS";
	n = imap_capability_filter((const uint8_t *)more, strlen(more), &post, out, sizeof(out));
	assert_string_equal(out, "IMAP4rev1 AUTH=SCRAM-SHA-256 AUTH=PLUS");
	assert_int_equal(n, (int)strlen(out));
}

static void check_rewrite(const imap_capability_context *ctx, const char *line,
			  const char *expected)
{
	char out[1024];
	int n = imap_capability_rewrite_line((const uint8_t *)line, strlen(line), ctx,
					     out, sizeof(out));
	if (expected == NULL) {
		assert_int_equal(n, 0);
		return;
	}
	assert_int_equal(n, (int)strlen(expected));
	assert_memory_equal(out, expected, (size_t)n);
}

static void test_capability_rewrite(void **state)
{
	(void)state;
	imap_capability_context post = { .pre_auth = false };
	check_rewrite(&post, "* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE IDLE BINARY\r\n",
		      "* CAPABILITY IMAP4rev1 IDLE\r\n");
	check_rewrite(&post, "a1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE MOVE] Logged in\r\n",
		      "a1 OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n");
	check_rewrite(&post, "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
		      "* OK [CAPABILITY IMAP4rev1] ready\r\n");
	check_rewrite(&post, "* capability IMAP4rev1 COMPRESS=DEFLATE\n",
		      "* capability IMAP4rev1\n");
	check_rewrite(&post, "* CAPABILITY\r\n", "* CAPABILITY\r\n");
	/* Lines without a capability list are left alone. */
	check_rewrite(&post, "* OK [ALERT] COMPRESS=DEFLATE\r\n", NULL);
	check_rewrite(&post, "* 1 FETCH (FLAGS (COMPRESS=DEFLATE))\r\n", NULL);
	check_rewrite(&post, "a OK [CAPABILITY] odd\r\n", NULL);
	check_rewrite(&post, "garbage\r\n", NULL);
	imap_capability_context plain = { .pre_auth = true };
	check_rewrite(&plain, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n",
		      "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framer_commands_bytewise),
		cmocka_unit_test(test_framer_literal_looks_like_lines),
		cmocka_unit_test(test_framer_responses_bytewise),
		cmocka_unit_test(test_framer_not_literals),
		cmocka_unit_test(test_framer_need_more_until_lf),
		cmocka_unit_test(test_framer_line_too_long),
		cmocka_unit_test(test_framer_literal_too_large),
		cmocka_unit_test(test_framer_cancel_literal),
		cmocka_unit_test(test_framer_literal_chunks),
		cmocka_unit_test(test_framer_split_equivalence),
		cmocka_unit_test(test_tokenizer),
		cmocka_unit_test(test_tokenizer_fetch_items),
		cmocka_unit_test(test_astring),
		cmocka_unit_test(test_command_head),
		cmocka_unit_test(test_login_args),
		cmocka_unit_test(test_authenticate_args),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_capability_filter),
		cmocka_unit_test(test_capability_rewrite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
