/* libFuzzer target for an outgoing message's header block: where it ends
 * (whole input against growing prefixes), its fields and requests, and the
 * as-written copy, whose body must come out byte for byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "outbound.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

typedef struct {
	const uint8_t *data;
	size_t len, pos;
} fuzz_source;

static ssize_t fuzz_read(void *ctx, void *buf, size_t size)
{
	fuzz_source *s = ctx;
	size_t n = s->len - s->pos < size ? s->len - s->pos : size;
	if (n > 7)
		n = 7;
	memcpy(buf, s->data + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

static int fuzz_rewind(void *ctx)
{
	((fuzz_source *)ctx)->pos = 0;
	return 0;
}

static int fuzz_write(void *ctx, const void *buf, size_t len)
{
	g_string_append_len(ctx, buf, (gssize)len);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		g_mime_init();
		init = true;
	}
	size_t block = 0;
	bool blank = false;
	CHECK(crypto_header_block_end(data, size, true, &block, &blank) == 1);
	CHECK(block <= size);
	/* A prefix that decides must decide the same. */
	for (size_t i = 0; i < size; i += 1 + i / 8) {
		size_t b2;
		bool blank2;
		if (crypto_header_block_end(data, i, false, &b2, &blank2) == 1) {
			CHECK(b2 == block);
			CHECK(blank2 == blank);
		}
	}
	crypto_outbound_header *h = crypto_outbound_header_parse(data, block, blank,
								 data + block, size - block);
	size_t total = 0;
	for (size_t i = 0; i < crypto_outbound_header_n_fields(h); i++)
		total += crypto_outbound_header_field(h, i)->raw_len;
	CHECK(total + (blank ? 2 : 0) == block);
	keystore_policy p;
	int sign;
	const char *error;
	(void)crypto_outbound_header_requests(h, &p, &sign, &error);
	(void)crypto_outbound_header_names(h, "a@b");

	fuzz_source src = { data + block, size - block, 0 };
	crypto_source source = { fuzz_read, fuzz_rewind, &src };
	GString *out = g_string_new(NULL);
	crypto_sink sink = { fuzz_write, out };
	crypto_outbound_options opts = { .autocrypt = "addr=a@b; keydata=QUJD" };
	CHECK(crypto_outbound_write_plain(h, &opts, &source, &sink, &error) == 0);
	CHECK(out->len >= size - block);
	CHECK(memcmp(out->str + out->len - (size - block), data + block, size - block) == 0);
	g_string_free(out, TRUE);
	crypto_outbound_header_free(&h);
	return 0;
}
