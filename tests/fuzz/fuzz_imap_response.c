/* libFuzzer target: provider response streams through the IMAP framer
 * (whole and in random splits, which must agree), response heads of every
 * first fragment, the capability rewrite, and the tokenizer. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "imap_capability.h"
#include "imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINE_MAX_BYTES 512
#define LITERAL_MAX_BYTES 4096

static uint64_t fuzz_hash(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static void fuzz_fragment(const uint8_t *line, size_t len, uint8_t flags)
{
	imap_response resp;
	const char *error = NULL;
	if (imap_parser_response(line, len, &resp, &error) < 0) {
		if (error == NULL)
			__builtin_trap();
	} else {
		if (resp.args_pos > len)
			__builtin_trap();
		if (resp.code != NULL && (resp.code < line || resp.code + resp.code_len > line + len))
			__builtin_trap();
		if (resp.code_args != NULL &&
		    (resp.code_args < line || resp.code_args + resp.code_args_len > line + len))
			__builtin_trap();
		if (resp.text != NULL && (resp.text < line || resp.text + resp.text_len > line + len))
			__builtin_trap();
		if (resp.kind == IMAP_RESP_TAGGED && (resp.tag_len == 0 || resp.status == IMAP_STATUS_NONE))
			__builtin_trap();
	}
	static char out[LINE_MAX_BYTES + 64];
	imap_capability_context ctx = {
		.pre_auth = flags & 1, .client_tls = flags & 2,
		.plaintext_auth_allowed = flags & 4,
	};
	int n = imap_capability_rewrite_line(line, len, &ctx, out, sizeof(out));
	if (n < 0 || (size_t)n > sizeof(out))
		__builtin_trap();
	/* A rewritten line still ends where the original did. */
	if (n > 0 && line[len - 1] == '\n' && out[n - 1] != '\n')
		__builtin_trap();

	imap_tokenizer t;
	imap_tokenizer_init(&t, line, len, 8);
	for (int i = 0; i < 10000; i++) {
		imap_token tok;
		if (imap_tokenizer_next(&t, &tok, &error) < 0 || tok.type == IMAP_TOKEN_EOL)
			break;
		if (tok.data != NULL && (tok.data < line || tok.data + tok.len > line + len))
			__builtin_trap();
	}
}

static uint64_t fuzz_run(const uint8_t *data, size_t size, const uint8_t *split,
			 size_t split_len, uint8_t flags, bool check)
{
	imap_framer f;
	imap_framer_init(&f, LINE_MAX_BYTES, LITERAL_MAX_BYTES);
	uint64_t h = 1469598103934665603ull;
	size_t start = 0, end = 0;
	for (size_t i = 0; end < size; i++) {
		size_t n = split_len > 0 ? 1 + split[i % split_len] % 64 : size;
		end = end + n < size ? end + n : size;
		for (;;) {
			imap_frame fr;
			const char *error = NULL;
			imap_parse_result r = imap_framer_next(&f, data + start, end - start, &fr, &error);
			if (r == IMAP_PARSE_ERROR)
				return fuzz_hash(h, (const uint8_t *)error, strlen(error));
			if (r == IMAP_PARSE_MORE)
				break;
			if (fr.data != data + start || fr.len > end - start)
				__builtin_trap();
			if (fr.type == IMAP_FRAME_TEXT) {
				uint8_t tag[4] = { 'T', fr.line_start, fr.line_end, fr.literal_sync };
				h = fuzz_hash(h, tag, sizeof(tag));
				h = fuzz_hash(h, (const uint8_t *)&fr.literal_size, sizeof(fr.literal_size));
				h = fuzz_hash(h, fr.data, fr.len);
				if (check && fr.line_start)
					fuzz_fragment(fr.data, fr.len, flags);
			} else {
				h = fuzz_hash(h, fr.data, fr.len);
				if (fr.literal_end)
					h = fuzz_hash(h, (const uint8_t *)"E", 1);
			}
			start += fr.len;
		}
	}
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t flags = data[0];
	size_t split_len = data[1] % 16;
	if (size < 2 + split_len)
		return 0;
	const uint8_t *split = data + 2;
	data += 2 + split_len;
	size -= 2 + split_len;
	uint64_t whole = fuzz_run(data, size, NULL, 0, flags, true);
	uint64_t bytewise = fuzz_run(data, size, (const uint8_t *)"\0", 1, flags, false);
	uint64_t pieces = fuzz_run(data, size, split, split_len, flags, false);
	if (whole != bytewise || whole != pieces)
		__builtin_trap();
	return 0;
}
