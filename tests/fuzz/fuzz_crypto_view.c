/* libFuzzer target for the decrypted view without keys: how a message is
 * classified (only a PGP/MIME or inline PGP root is ever decrypted), and how
 * a view is assembled from a message and a given decrypted content.
 * Input: the message, then optionally a NUL byte and the decrypted content. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <gmime/gmime.h>

#include "view.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* The root GMime sees, judged without the code under test. */
static void check_root(const uint8_t *msg, size_t len, crypto_view_kind kind)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)msg, len);
	GMimeParser *p = g_mime_parser_new_with_stream(s);
	GMimeMessage *m = g_mime_parser_construct_message(p, NULL);
	GMimeObject *root = m != NULL ? g_mime_message_get_mime_part(m) : NULL;
	GMimeContentType *ct = root != NULL ? g_mime_object_get_content_type(root) : NULL;
	if (kind == CRYPTO_VIEW_KIND_PGP_MIME) {
		CHECK(ct != NULL && g_mime_content_type_is_type(ct, "multipart", "encrypted"));
		CHECK(GMIME_IS_MULTIPART(root) && g_mime_multipart_get_count(GMIME_MULTIPART(root)) == 2);
	}
	if (kind == CRYPTO_VIEW_KIND_INLINE_PGP)
		CHECK(GMIME_IS_PART(root) && g_mime_content_type_is_type(ct, "text", "plain"));
	if (m != NULL)
		g_object_unref(m);
	g_object_unref(p);
	g_object_unref(s);
}

/* How many fields of the view's top header are called name. */
static unsigned count_fields(const GByteArray *view, size_t head_len, const char *name)
{
	unsigned n = 0;
	size_t nl = strlen(name);
	for (size_t i = 0; i + nl < head_len; i++)
		if ((i == 0 || view->data[i - 1] == '\n') &&
		    g_ascii_strncasecmp((const char *)view->data + i, name, nl) == 0 &&
		    view->data[i + nl] == ':')
			n++;
	return n;
}

static void check_view(const GByteArray *view)
{
	/* CRLF everywhere; in the header block no CR that is not a line end. */
	const uint8_t *end = memmem(view->data, view->len, "\r\n\r\n", 4);
	CHECK(end != NULL);
	size_t head_len = (size_t)(end - view->data) + 2;
	for (size_t i = 0; i < view->len; i++) {
		if (view->data[i] == '\n')
			CHECK(i > 0 && view->data[i - 1] == '\r');
		if (view->data[i] == '\r' && i < head_len)
			CHECK(i + 1 < view->len && view->data[i + 1] == '\n');
	}
	CHECK(count_fields(view, head_len, "X-Sealpost-Decryption") == 1);
	CHECK(count_fields(view, head_len, "X-Sealpost-Signature") == 1);
	CHECK(count_fields(view, head_len, "X-Sealpost-From-Mismatch") <= 1);
	CHECK(count_fields(view, head_len, "MIME-Version") == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		g_mime_init();
		init = true;
	}
	const uint8_t *nul = memchr(data, 0, size);
	size_t msg_len = nul != NULL ? (size_t)(nul - data) : size;
	const uint8_t *plain = nul != NULL ? nul + 1 : data + size;
	size_t plain_len = size - msg_len - (nul != NULL ? 1 : 0);

	crypto_view_status st;
	crypto_view_classify(data, msg_len, &st);
	check_root(data, msg_len, st.kind);
	CHECK(st.encrypted == (st.kind == CRYPTO_VIEW_KIND_PGP_MIME ||
			       st.kind == CRYPTO_VIEW_KIND_INLINE_PGP ||
			       st.kind == CRYPTO_VIEW_KIND_MALFORMED));

	/* With decryption off, nothing is ever rendered. */
	GByteArray *view = NULL;
	crypto_view_status st2;
	CHECK(crypto_view_render(NULL, CRYPTO_DECRYPT_NEVER, data, msg_len, NULL, &view, &st2) ==
	      CRYPTO_VIEW_UNCHANGED);
	CHECK(view == NULL && st2.kind == st.kind && !st2.decrypted);
	crypto_view_status_clear(&st2);

	/* A view is only ever built for a decryptable root, and the same
	 * input builds the same bytes. */
	bool is_mime = plain_len > 0 && (plain[0] & 1);
	int r = crypto_view_build(data, msg_len, plain, plain_len, is_mime, "none", &view, &st2);
	if (st.kind == CRYPTO_VIEW_KIND_PGP_MIME || st.kind == CRYPTO_VIEW_KIND_INLINE_PGP) {
		CHECK(r == 0 && view != NULL);
		check_view(view);
		GByteArray *again = NULL;
		crypto_view_status st3;
		CHECK(crypto_view_build(data, msg_len, plain, plain_len, is_mime, "none", &again,
					&st3) == 0);
		CHECK(again->len == view->len && memcmp(again->data, view->data, view->len) == 0);
		g_byte_array_unref(again);
		crypto_view_status_clear(&st3);
		g_byte_array_unref(view);
	} else {
		CHECK(r == -1 && view == NULL);
	}
	crypto_view_status_clear(&st2);
	crypto_view_status_clear(&st);
	return 0;
}
