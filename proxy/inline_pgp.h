/* inline_pgp: whether the start of a single-part text/plain body may open
 * an inline PGP message once decoded. IMAP and POP3 download and render
 * only the messages that may be encrypted; this is their common test. */
#ifndef SEALPOST_INLINE_PGP_H
#define SEALPOST_INLINE_PGP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The body's Content-Transfer-Encoding, as far as the test cares. */
typedef enum {
	INLINE_PGP_IDENTITY,		/* 7bit, 8bit, binary, none or unknown */
	INLINE_PGP_BASE64,
	INLINE_PGP_QUOTED_PRINTABLE,
} inline_pgp_encoding;

/* The most of a body's start the test looks at. */
#define INLINE_PGP_PREFIX_MAX 480

/* Looks at the first max_prefix bytes (at most INLINE_PGP_PREFIX_MAX) of
 * data, as transferred. Leading blanks are skipped; a start cut short
 * counts as a may-be, and so does one of nothing but blanks when
 * blank_counts (a probe of a few lines, where more may follow). */
bool inline_pgp_may_start(const uint8_t *data, size_t len, inline_pgp_encoding encoding,
				size_t max_prefix, bool blank_counts);

#endif
