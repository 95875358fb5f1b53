/* libFuzzer target for the provider side of POP3: status lines and
 * multi-line bodies fed in random pieces and compared with one feed of the
 * whole; each body is stuffed again and must unstuff to itself; TOP and
 * CAPA filtering on the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_parser.h"

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

static uint64_t fuzz_mix(uint64_t d, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d = (d ^ p[i]) * 1099511628211ull;
	return (d ^ 0x0a) * 1099511628211ull;
}

/* A status line is read, and after +OK a body; until the input ends or an
 * error. Returns a digest of everything seen and where reading stopped. */
static uint64_t fuzz_session(const uint8_t *data, size_t size, uint32_t seed, bool random_split,
			     size_t *stopped_r)
{
	size_t max_line = 8 + seed % 300;
	uint64_t digest = 1469598103934665603ull;
	size_t off = 0;
	while (off < size) {
		size_t line_len;
		const char *error = NULL;
		pop3_parse_result r = pop3_parser_line(data + off, size - off, max_line, &line_len,
						       &error);
		if (r != POP3_PARSE_DONE) {
			CHECK(r == POP3_PARSE_MORE || error != NULL);
			break;
		}
		CHECK(line_len >= 1 && line_len <= max_line && data[off + line_len - 1] == '\n');
		pop3_response resp;
		if (pop3_parser_response(data + off, line_len, &resp, &error) < 0) {
			CHECK(error != NULL);
			digest = fuzz_mix(digest, (const uint8_t *)"E", 1);
			off += line_len;
			continue;
		}
		CHECK(resp.text + resp.text_len <= data + off + line_len);
		CHECK(resp.code == NULL || resp.code + resp.code_len < data + off + line_len);
		digest = fuzz_mix(digest, resp.text, resp.text_len);
		if (resp.code != NULL)
			digest = fuzz_mix(digest, resp.code, resp.code_len);
		off += line_len;
		if (resp.status != POP3_RESP_OK)
			continue;
		pop3_parser_unstuffer u;
		pop3_parser_unstuff_init(&u);
		GByteArray *body = g_byte_array_new();
		bool done = false;
		while (off < size) {
			size_t n = size - off;
			if (random_split) {
				size_t k = 1 + fuzz_next(&seed) % 13;
				n = k < n ? k : n;
			}
			size_t consumed = 0;
			pop3_parse_result ur = pop3_parser_unstuff(&u, data + off, n, body, &consumed);
			CHECK(consumed <= n);
			off += consumed;
			if (ur == POP3_PARSE_DONE) {
				done = true;
				break;
			}
			CHECK(consumed == n);
		}
		digest = fuzz_mix(digest, body->data, body->len);
		if (done) {
			/* Stuffed again, it unstuffs to the same bytes with CRLF
			 * line ends, as long as pop3_parser_octets says. */
			pop3_parser_stuffer st;
			pop3_parser_stuff_init(&st);
			GByteArray *wire = g_byte_array_new();
			pop3_parser_stuff(&st, body->data, body->len, wire);
			pop3_parser_stuff_finish(&st, wire);
			pop3_parser_unstuffer u2;
			pop3_parser_unstuff_init(&u2);
			GByteArray *back = g_byte_array_new();
			size_t consumed;
			CHECK(pop3_parser_unstuff(&u2, wire->data, wire->len, back, &consumed) ==
			      POP3_PARSE_DONE);
			CHECK(consumed == wire->len);
			CHECK(back->len == pop3_parser_octets(body->data, body->len));
			g_byte_array_unref(back);
			g_byte_array_unref(wire);
			size_t top = pop3_parser_top_length(body->data, body->len, seed % 5);
			CHECK(top <= body->len);
			CHECK(pop3_parser_top_length(body->data, body->len, seed % 5 + 1) >= top);
		}
		g_byte_array_unref(body);
		if (!done)
			break;
	}
	*stopped_r = off;
	return digest;
}

static void fuzz_capa_and_command(const uint8_t *data, size_t size, uint32_t seed)
{
	char *text = malloc(size + 1);
	if (text == NULL)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	pop3_parser_capa_context ctx = {
		.authorized = seed & 1, .client_tls = seed & 2,
		.stls_available = seed & 4, .login_allowed = seed & 8,
	};
	char *caps = pop3_parser_filter_capa(text, &ctx);
	/* Only printable lines, each with CRLF, reach the client. */
	for (const char *p = caps; *p != '\0'; p++) {
		CHECK(*p == '\r' ? p[1] == '\n' : *p == '\n' ? p[-1] == '\r' :
		      (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	}
	CHECK(!pop3_parser_capa_has(caps, "STLS") || (!ctx.authorized && !ctx.client_tls));
	CHECK(!pop3_parser_capa_has(caps, "IMPLEMENTATION"));
	g_free(caps);
	free(text);
	pop3_command cmd;
	const char *error;
	if (pop3_parser_command(data, size, &cmd, &error) == 0) {
		CHECK(strlen(cmd.name) >= 1 && strlen(cmd.name) <= POP3_COMMAND_NAME_MAX);
		CHECK(cmd.n_args <= POP3_COMMAND_MAX_ARGS);
		for (size_t i = 0; i < cmd.n_args; i++)
			CHECK(cmd.arg_len[i] > 0 && memchr(cmd.args[i], ' ', cmd.arg_len[i]) == NULL);
		uint64_t v;
		if (cmd.n_args > 0 && pop3_parser_number(cmd.args[0], cmd.arg_len[0], 1000, &v) == 0)
			CHECK(v <= 1000);
	}
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
	uint64_t whole = fuzz_session(data, size, seed, false, &stop_whole);
	uint64_t split = fuzz_session(data, size, seed, true, &stop_split);
	CHECK(whole == split);
	CHECK(stop_whole == stop_split);
	fuzz_capa_and_command(data, size, seed);
	return 0;
}
