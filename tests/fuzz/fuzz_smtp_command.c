/* libFuzzer target for the client side of SMTP: command lines, MAIL/RCPT
 * arguments and the DATA reader, each fed in random pieces and checked to
 * give the same result as one feed of the whole input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parser.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* The first bytes seed the split sizes, so a crash replays exactly. */
static uint32_t fuzz_next(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x != 0 ? x : 0x9e3779b9u;
	return *s;
}

static size_t fuzz_piece(uint32_t *seed, size_t left)
{
	size_t n = 1 + fuzz_next(seed) % 17;
	return n < left ? n : left;
}

/* Feeds the command parser; returns a digest of what it saw so that two
 * ways of splitting can be compared. */
static uint64_t fuzz_commands(const uint8_t *data, size_t size, uint32_t seed,
			      bool random_split)
{
	smtp_command_parser *p = smtp_command_parser_new(64 + seed % 64);
	uint64_t digest = 1469598103934665603ull;
	size_t off = 0;
	while (off < size) {
		size_t n = random_split ? fuzz_piece(&seed, size - off) : size - off;
		size_t consumed = 0;
		const smtp_command *cmd = NULL;
		const char *error = NULL;
		smtp_parse_result r = smtp_command_parser_feed(p, data + off, n, &consumed,
							       &cmd, &error);
		CHECK(consumed <= n);
		off += consumed;
		if (r == SMTP_PARSE_MORE) {
			CHECK(consumed == n);
			continue;
		}
		if (r == SMTP_PARSE_ERROR) {
			CHECK(error != NULL && error[0] != '\0');
			digest = (digest ^ 0xe1) * 1099511628211ull;
			continue;
		}
		CHECK(r == SMTP_PARSE_DONE && consumed > 0);
		CHECK(strlen(cmd->line) == cmd->line_len);
		CHECK(memchr(cmd->line, '\r', cmd->line_len) == NULL);
		CHECK(strlen(cmd->verb) < SMTP_VERB_MAX);
		for (size_t i = 0; i < cmd->line_len; i++)
			digest = (digest ^ (uint8_t)cmd->line[i]) * 1099511628211ull;
		digest = (digest ^ 0x0a) * 1099511628211ull;

		smtp_path_args a;
		const char *perr = NULL;
		bool mail = strcmp(cmd->verb, "MAIL") == 0;
		if (mail || strcmp(cmd->verb, "RCPT") == 0) {
			if (smtp_parse_path_args(cmd->args, mail ? "FROM:" : "TO:", mail,
						 &a, &perr) == 0) {
				CHECK(a.path_len >= 2 && a.path[0] == '<' &&
				      a.path[a.path_len - 1] == '>');
				CHECK(a.n_params <= SMTP_MAX_PARAMS);
				for (size_t i = 0; i < a.n_params; i++) {
					CHECK(a.params[i].key_len > 0 &&
					      a.params[i].key_len <= a.params[i].len);
					CHECK(memchr(a.params[i].text, ' ', a.params[i].len) == NULL);
				}
				(void)smtp_path_args_find(&a, "SIZE");
			} else {
				CHECK(perr != NULL);
			}
		}
	}
	smtp_command_parser_free(&p);
	return digest;
}

typedef struct {
	uint8_t *out;
	size_t out_len;
	size_t consumed;
	bool done;
	uint64_t size;
	bool too_big;
} fuzz_data_result;

static void fuzz_data(const uint8_t *data, size_t size, uint32_t seed,
		      bool random_split, uint64_t max_size, fuzz_data_result *res)
{
	smtp_data_reader *r = smtp_data_reader_new(max_size);
	res->out = malloc(size * SMTP_DATA_MAX_EXPANSION + 16);
	res->out_len = 0;
	res->done = false;
	size_t off = 0;
	while (off < size && !res->done) {
		size_t n = random_split ? fuzz_piece(&seed, size - off) : size - off;
		size_t room = random_split ? SMTP_DATA_MAX_EXPANSION + fuzz_next(&seed) % 8 :
			size * SMTP_DATA_MAX_EXPANSION + 16 - res->out_len;
		size_t consumed = 0, out_len = 0;
		smtp_parse_result ret = smtp_data_reader_feed(r, data + off, n, &consumed,
							      res->out + res->out_len,
							      room, &out_len);
		CHECK(ret != SMTP_PARSE_ERROR);
		CHECK(consumed <= n && out_len <= room);
		CHECK(consumed > 0 || n == 0);
		off += consumed;
		res->out_len += out_len;
		res->done = ret == SMTP_PARSE_DONE;
	}
	res->consumed = off;
	res->size = smtp_data_reader_size(r);
	res->too_big = smtp_data_reader_too_big(r);
	CHECK(res->out_len <= max_size);
	CHECK(res->too_big || res->out_len == res->size);
	smtp_data_reader_free(&r);
}

/* The reader's output is CRLF-only text; stuffed and read back it must come
 * out the same and end exactly at the terminator. */
static void fuzz_round_trip(const uint8_t *msg, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n')
			CHECK(i > 0 && msg[i - 1] == '\r');
		if (msg[i] == '\r')
			CHECK(i + 1 < len && msg[i + 1] == '\n');
	}
	uint8_t *wire = malloc(2 * len + 8);
	smtp_dot_stuffer st;
	smtp_dot_stuffer_init(&st);
	size_t w = smtp_dot_stuffer_feed(&st, msg, len, wire, 2 * len);
	const char *end = smtp_dot_stuffer_end(&st);
	memcpy(wire + w, end, strlen(end));
	w += strlen(end);
	fuzz_data_result back;
	fuzz_data(wire, w, 7, false, UINT64_MAX, &back);
	CHECK(back.done && back.consumed == w);
	size_t want = len;
	if (len > 0 && !(len >= 2 && msg[len - 2] == '\r' && msg[len - 1] == '\n'))
		want += 2;
	CHECK(back.out_len == want);
	CHECK(memcmp(back.out, msg, len) == 0);
	free(back.out);
	free(wire);
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

	CHECK(fuzz_commands(data, size, seed, false) ==
	      fuzz_commands(data, size, seed, true));

	uint64_t max_size = seed % 4 == 0 ? seed % 64 : UINT64_MAX;
	fuzz_data_result whole, split;
	fuzz_data(data, size, seed, false, max_size, &whole);
	fuzz_data(data, size, seed, true, max_size, &split);
	CHECK(whole.done == split.done && whole.consumed == split.consumed);
	CHECK(whole.size == split.size && whole.too_big == split.too_big);
	CHECK(whole.out_len == split.out_len);
	CHECK(memcmp(whole.out, split.out, whole.out_len) == 0);
	if (!whole.too_big)
		fuzz_round_trip(whole.out, whole.out_len);
	free(whole.out);
	free(split.out);
	return 0;
}
