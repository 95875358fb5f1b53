/* libFuzzer target for dirmngr's replies as key discovery reads them: fed
 * whole and in pieces the outcome is the same, data stays within its limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "keystore_discover.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)
#define DATA_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first byte picks the piece size. */
	size_t step = size > 0 ? (size_t)data[0] % 17 + 1 : 1;
	/* An exact-size copy: ASan sees any read past the end. */
	char *buf = malloc(size > 0 ? size : 1);
	if (buf == NULL)
		return 0;
	if (size > 0)
		memcpy(buf, data, size);
	const char *error = NULL;
	keystore_discover_reply whole, parts;
	size_t used_whole = 0;
	keystore_discover_reply_init(&whole, DATA_MAX);
	int a = keystore_discover_reply_feed(&whole, buf, size, &used_whole, &error);
	CHECK(a >= -1 && a <= 1);
	CHECK(used_whole <= size);
	CHECK(whole.data_len <= DATA_MAX && whole.have <= KEYSTORE_DISCOVER_LINE_MAX);

	keystore_discover_reply_init(&parts, DATA_MAX);
	int b = 0;
	size_t off = 0;
	while (off < size && b == 0) {
		size_t n = MIN(step, size - off), used = 0;
		b = keystore_discover_reply_feed(&parts, buf + off, n, &used, &error);
		CHECK(used <= n);
		off += used;
	}
	CHECK(a == b);
	if (a == 1) {
		CHECK(off == used_whole);
		CHECK(whole.err == parts.err && whole.code == parts.code);
		CHECK(strcmp(whole.text, parts.text) == 0);
		CHECK(whole.data_len == parts.data_len);
		CHECK(whole.data_len == 0 || memcmp(whole.data, parts.data, whole.data_len) == 0);
	}
	keystore_discover_reply_clear(&whole);
	keystore_discover_reply_clear(&parts);
	free(buf);
	return 0;
}
