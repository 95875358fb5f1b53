/* libFuzzer target for the local API's request checks: Host, Origin,
 * Content-Type, bearer token and the JSON text scanner, each against a
 * simple statement of what it may accept. The first byte picks the check. */
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_check.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static const char fuzz_token[] =
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static bool fuzz_is_allowed_host(const char *s)
{
	static const char *const ok[] = { "127.0.0.1:7587", "localhost:7587", "[::1]:7587" };
	for (size_t i = 0; i < G_N_ELEMENTS(ok); i++)
		if (g_ascii_strcasecmp(s, ok[i]) == 0)
			return true;
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned which = data[0] % 6;
	const char *raw = (const char *)data + 1;
	size_t len = size - 1;
	/* Exactly len bytes on the heap, so a read past them is seen. */
	char *bytes = malloc(len > 0 ? len : 1);
	memcpy(bytes, raw, len);
	char *text = g_strndup(raw, len);	/* up to the first NUL */
	config_listen l = { .host = (char *)"127.0.0.1", .port = 7587 };
	switch (which) {
	case 0:
		/* Accepted only as one of the three names with the port. */
		if (api_check_host(text, &l))
			CHECK(fuzz_is_allowed_host(text));
		break;
	case 1:
		if (api_check_origin(text, &l)) {
			bool moz = g_ascii_strncasecmp(text, "moz-extension://", 16) == 0;
			bool http = g_ascii_strncasecmp(text, "http://", 7) == 0 &&
				    fuzz_is_allowed_host(text + 7);
			CHECK(moz || http);
			CHECK(strpbrk(text + (moz ? 16 : 7), "\r\n /?#@:.") == NULL || http);
		}
		break;
	case 2:
		if (api_check_content_type(text))
			CHECK(g_ascii_strncasecmp(text, "application/json", 16) == 0);
		break;
	case 3: {
		char *auth = g_strconcat("Bearer ", text, NULL);
		const char *given = text + strspn(text, " ");
		CHECK(api_check_bearer(auth, fuzz_token) == (strcmp(given, fuzz_token) == 0));
		g_free(auth);
		break;
	}
	case 4:
		CHECK(api_check_text(bytes, len) == (memchr(bytes, '\r', len) == NULL &&
						      memchr(bytes, '\n', len) == NULL &&
						      memchr(bytes, '\0', len) == NULL));
		break;
	default: {
		const char *why = NULL;
		if (api_check_json_text(bytes, len, 4, &why))
			CHECK(memchr(bytes, '\0', len) == NULL);
		else
			CHECK(why != NULL);
		break;
	}
	}
	g_free(text);
	free(bytes);
	return 0;
}
