/* inline_pgp: the inline PGP test of a text/plain body's start, shared by
 * the IMAP and POP3 sides. Errs toward yes: a yes only costs a download. */
#include "inline_pgp.h"

#include <glib.h>
#include <string.h>

#define INLINE_PGP_ARMOR "-----BEGIN PGP MESSAGE-----"

bool inline_pgp_may_start(const uint8_t *data, size_t len, inline_pgp_encoding encoding,
				size_t max_prefix, bool blank_counts)
{
	uint8_t buf[INLINE_PGP_PREFIX_MAX + 32];
	size_t n = 0;
	if (max_prefix > INLINE_PGP_PREFIX_MAX)
		max_prefix = INLINE_PGP_PREFIX_MAX;
	if (len > max_prefix)
		len = max_prefix;
	if (encoding == INLINE_PGP_BASE64) {
		gint state = 0;
		guint save = 0;
		n = g_base64_decode_step((const gchar *)data, len, buf, &state, &save);
	} else if (encoding == INLINE_PGP_QUOTED_PRINTABLE) {
		for (size_t i = 0; i < len && n < sizeof(buf); i++) {
			if (data[i] == '=' && i + 1 < len && (data[i + 1] == '\r' || data[i + 1] == '\n')) {
				/* A soft line break: "=" CRLF, or "=" LF. */
				i += data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n' ? 2 : 1;
				continue;
			}
			if (data[i] == '=' && i + 2 < len && g_ascii_isxdigit(data[i + 1]) &&
			    g_ascii_isxdigit(data[i + 2])) {
				buf[n++] = (uint8_t)(g_ascii_xdigit_value((gchar)data[i + 1]) * 16 +
						     g_ascii_xdigit_value((gchar)data[i + 2]));
				i += 2;
				continue;
			}
			buf[n++] = data[i];
		}
	} else {
		memcpy(buf, data, len);
		n = len;
	}
	size_t i = 0;
	while (i < n && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
		i++;
	size_t alen = strlen(INLINE_PGP_ARMOR);
	size_t left = n - i;
	if (left == 0)
		return blank_counts;
	/* A start cut short still counts: download and let the view decide. */
	size_t cmp = left < alen ? left : alen;
	return memcmp(buf + i, INLINE_PGP_ARMOR, cmp) == 0;
}
