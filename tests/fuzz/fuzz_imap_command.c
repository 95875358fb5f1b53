/* libFuzzer target: client command streams through the IMAP framer (whole
 * and in random splits, which must agree), command heads, LOGIN and
 * AUTHENTICATE arguments of whole logical lines, and the tokenizer. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINE_MAX_BYTES 512
#define LITERAL_MAX_BYTES 4096
#define ASSEMBLED_MAX 8192

typedef struct {
	uint64_t hash;
	uint8_t line[ASSEMBLED_MAX];
	size_t line_len;
	bool line_overflow;
} fuzz_state;

static void fuzz_hash(fuzz_state *st, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		st->hash = (st->hash ^ p[i]) * 1099511628211ull;
}

static void fuzz_hash_u64(fuzz_state *st, uint64_t v)
{
	fuzz_hash(st, (const uint8_t *)&v, sizeof(v));
}

static void fuzz_append(fuzz_state *st, const uint8_t *p, size_t n)
{
	if (st->line_overflow || n > sizeof(st->line) - st->line_len) {
		st->line_overflow = true;
		return;
	}
	memcpy(st->line + st->line_len, p, n);
	st->line_len += n;
}

/* A whole command line, literals inline, as the pre-login reader builds it. */
static void fuzz_command_line(const uint8_t *line, size_t len)
{
	imap_command cmd;
	const char *error = NULL;
	if (imap_parser_command(line, len, &cmd, &error) < 0) {
		if (error == NULL)
			__builtin_trap();
		return;
	}
	if (cmd.tag_len == 0 || cmd.tag_len > IMAP_TAG_MAX || cmd.args_pos > len)
		__builtin_trap();
	uint8_t user[256], pass[256];
	size_t ulen, plen;
	if (imap_parser_login_args(line, len, &cmd, user, sizeof(user), &ulen,
				   pass, sizeof(pass), &plen, &error) == 0) {
		if (ulen > sizeof(user) || plen > sizeof(pass))
			__builtin_trap();
	}
	const uint8_t *mech, *ir;
	size_t mlen, irlen;
	if (imap_parser_authenticate_args(line, len, &cmd, &mech, &mlen, &ir,
					  &irlen, &error) == 0) {
		if (mech < line || mech + mlen > line + len)
			__builtin_trap();
		if (ir != NULL && (ir < line || ir + irlen > line + len))
			__builtin_trap();
	}
	imap_tokenizer t;
	imap_tokenizer_init(&t, line, len, 8);
	for (int i = 0; i < 10000; i++) {
		imap_token tok;
		if (imap_tokenizer_next(&t, &tok, &error) < 0 || tok.type == IMAP_TOKEN_EOL)
			break;
		if (tok.data != NULL && (tok.data < line || tok.data + tok.len > line + len))
			__builtin_trap();
		if (t.pos > len)
			__builtin_trap();
	}
}

/* Feeds data in chunks whose sizes come from the split bytes; returns a
 * hash of what the framer produced. */
static uint64_t fuzz_run(const uint8_t *data, size_t size, const uint8_t *split,
			 size_t split_len, bool check_lines)
{
	static fuzz_state st;
	imap_framer f;
	imap_framer_init(&f, LINE_MAX_BYTES, LITERAL_MAX_BYTES);
	st.hash = 1469598103934665603ull;
	st.line_len = 0;
	st.line_overflow = false;
	size_t start = 0, end = 0;
	for (size_t i = 0; end < size; i++) {
		size_t n = split_len > 0 ? 1 + split[i % split_len] % 64 : size;
		end = end + n < size ? end + n : size;
		for (;;) {
			imap_frame fr;
			const char *error = NULL;
			imap_parse_result r = imap_framer_next(&f, data + start, end - start, &fr, &error);
			if (r == IMAP_PARSE_ERROR) {
				if (error == NULL)
					__builtin_trap();
				fuzz_hash(&st, (const uint8_t *)error, strlen(error));
				return st.hash;
			}
			if (r == IMAP_PARSE_MORE)
				break;
			if (fr.data != data + start || fr.len > end - start)
				__builtin_trap();
			if (fr.type == IMAP_FRAME_TEXT) {
				if (fr.len == 0 || fr.data[fr.len - 1] != '\n' ||
				    fr.len > LINE_MAX_BYTES)
					__builtin_trap();
				if (!fr.line_end && fr.literal_size > LITERAL_MAX_BYTES)
					__builtin_trap();
				fuzz_hash_u64(&st, 1000 + fr.len + (fr.line_start ? 2 : 0) +
					      (fr.line_end ? 4 : 0) + (fr.literal_sync ? 8 : 0) +
					      (fr.literal_binary ? 16 : 0) + (fr.literal_size << 8));
				fuzz_hash(&st, fr.data, fr.len);
				if (fr.line_start) {
					st.line_len = 0;
					st.line_overflow = false;
				}
				fuzz_append(&st, fr.data, fr.len);
			} else {
				if (fr.len == 0 && !fr.literal_end)
					__builtin_trap();
				fuzz_hash(&st, fr.data, fr.len);
				if (fr.literal_end)
					fuzz_hash_u64(&st, 7);
				fuzz_append(&st, fr.data, fr.len);
			}
			if (check_lines && fr.type == IMAP_FRAME_TEXT && fr.line_end &&
			    !st.line_overflow)
				fuzz_command_line(st.line, st.line_len);
			start += fr.len;
		}
	}
	fuzz_hash_u64(&st, end - start);
	return st.hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first bytes choose the split pattern, the rest is the stream. */
	size_t split_len = size > 0 ? data[0] % 16 : 0;
	if (size < 1 + split_len)
		return 0;
	const uint8_t *split = data + 1;
	data += 1 + split_len;
	size -= 1 + split_len;
	uint64_t whole = fuzz_run(data, size, NULL, 0, true);
	uint64_t bytewise = fuzz_run(data, size, (const uint8_t *)"\0", 1, false);
	uint64_t pieces = fuzz_run(data, size, split, split_len, false);
	if (whole != bytewise || whole != pieces)
		__builtin_trap();
	return 0;
}
