/* libFuzzer target for Autocrypt and Autocrypt-Gossip header values: the
 * parser (never past the length given, bounded output), the address
 * canonical form, the choice among several headers and the peer update. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "keystore_autocrypt.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy: ASan sees any read past the end. */
	char *value = malloc(size > 0 ? size : 1);
	if (value == NULL)
		return 0;
	if (size > 0)
		memcpy(value, data, size);
	keystore_autocrypt_header h;
	const char *error = NULL;
	if (keystore_autocrypt_header_parse(value, size, &h, &error) == 0) {
		CHECK(size <= KEYSTORE_AUTOCRYPT_HEADER_MAX);
		CHECK(h.addr != NULL && h.addr[0] != '\0');
		CHECK(h.keydata != NULL && h.keydata_len > 0 && h.keydata_len <= size);
		char *c = keystore_autocrypt_canonical(h.addr);
		if (c != NULL) {
			/* The canonical form is a fixed point. */
			char *again = keystore_autocrypt_canonical(c);
			CHECK(again != NULL && strcmp(again, c) == 0);
			g_free(again);
		}
		keystore_autocrypt_peer peer = { 0 };
		CHECK(keystore_autocrypt_update(&peer, 100, &h) == KEYSTORE_AUTOCRYPT_TAKEN);
		CHECK(peer.public_key_len == h.keydata_len);
		CHECK(keystore_autocrypt_update(&peer, 50, &h) == KEYSTORE_AUTOCRYPT_UNCHANGED);
		CHECK(keystore_autocrypt_update_gossip(&peer, 100, &h));
		keystore_autocrypt_peer_clear(&peer);
		g_free(c);
		keystore_autocrypt_header_clear(&h);
	} else {
		CHECK(error != NULL && h.addr == NULL && h.keydata == NULL);
	}
	/* The same bytes as one of two headers of a message, NUL-terminated. */
	char *text = g_strndup(value, size);
	const char *values[] = { text, "addr=a@b.example; keydata=QUJD", NULL };
	const char *why = NULL;
	int one = keystore_autocrypt_select(values, "a@b.example", &h, &why);
	CHECK(one == 0 || one == 1);
	CHECK((one == 1) == (why == NULL));
	keystore_autocrypt_header_clear(&h);
	g_free(text);
	free(value);
	return 0;
}
