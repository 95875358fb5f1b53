/* libFuzzer target for the provider side of SMTP: the multi-line reply
 * parser, fed in random pieces and compared with one feed of the whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parser.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static uint32_t fuzz_next(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x != 0 ? x : 0x9e3779b9u;
	return *s;
}

/* Parses replies until the input ends or an error; returns a digest of
 * every reply (code, enhanced code, lines) and where parsing stopped. */
static uint64_t fuzz_replies(const uint8_t *data, size_t size, uint32_t seed,
			     bool random_split, size_t *stopped_r)
{
	size_t max_line = 16 + seed % 200;
	size_t max_lines = 1 + (seed >> 8) % 12;
	smtp_reply_parser *p = smtp_reply_parser_new(max_line, max_lines);
	uint64_t digest = 1469598103934665603ull;
	size_t off = 0;
	while (off < size) {
		size_t n = size - off;
		if (random_split) {
			size_t k = 1 + fuzz_next(&seed) % 13;
			n = k < n ? k : n;
		}
		size_t consumed = 0;
		const smtp_reply *r = NULL;
		const char *error = NULL;
		smtp_parse_result res = smtp_reply_parser_feed(p, data + off, n, &consumed,
							       &r, &error);
		CHECK(consumed <= n);
		off += consumed;
		if (res == SMTP_PARSE_MORE) {
			CHECK(consumed == n);
			continue;
		}
		if (res == SMTP_PARSE_ERROR) {
			CHECK(error != NULL);
			digest = (digest ^ 0xee) * 1099511628211ull;
			break;
		}
		CHECK(r->code >= 200 && r->code <= 599);
		CHECK(r->n_lines >= 1 && r->n_lines <= max_lines);
		CHECK(r->enhanced[0] == '\0' || r->enhanced[0] == '0' + r->code / 100);
		CHECK(strncmp(r->lines[0], r->enhanced, strlen(r->enhanced)) == 0);
		digest = (digest ^ (uint64_t)r->code) * 1099511628211ull;
		for (size_t i = 0; i < r->n_lines; i++) {
			size_t len = strlen(r->lines[i]);
			CHECK(len + 5 <= max_line);
			CHECK(memchr(r->lines[i], '\r', len) == NULL);
			CHECK(memchr(r->lines[i], '\n', len) == NULL);
			for (size_t j = 0; j < len; j++)
				digest = (digest ^ (uint8_t)r->lines[i][j]) * 1099511628211ull;
			digest = (digest ^ 0x0a) * 1099511628211ull;
		}
	}
	smtp_reply_parser_free(&p);
	*stopped_r = off;
	return digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint32_t seed;
	memcpy(&seed, data, 4);
	data += 4;
	size -= 4;
	size_t stop_whole, stop_split;
	uint64_t whole = fuzz_replies(data, size, seed, false, &stop_whole);
	uint64_t split = fuzz_replies(data, size, seed, true, &stop_split);
	CHECK(whole == split);
	CHECK(stop_whole == stop_split);
	return 0;
}
