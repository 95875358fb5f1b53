/* outbound: what sealpost does to a message on its way out — reads the
 * header block, and writes the message as written, signed (RFC 3156
 * multipart/signed) or encrypted (multipart/encrypted with protected headers). */
#ifndef SEALPOST_CRYPTO_OUTBOUND_H
#define SEALPOST_CRYPTO_OUTBOUND_H

#include <gpgme.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keystore_db.h"
#include "worker.h"

/* ---- the header block ----------------------------------------------------
 * The message is taken as canonical CRLF text (the SMTP DATA reader made
 * it so). The header block is split into raw fields by hand so that every
 * byte of what is kept goes out exactly as the client wrote it; the fields'
 * meaning (addresses, Content-Type) is read with GMime. */

/* Largest header block accepted; beyond, the message is refused. */
#define CRYPTO_MAX_HEADER_BLOCK (1024 * 1024)

/* Where the header block at the start of data ends. It ends after the
 * first empty line (*blank_r true), or before the first line that is
 * neither a header field nor a continuation line (that line is body; the
 * message had no empty line). 1 with *len_r when decided within the first
 * len bytes; 0 when more is needed. at_end: data is the whole message, so
 * a message of header fields only is one block (1, len). */
int crypto_header_block_end(const uint8_t *data, size_t len, bool at_end,
			    size_t *len_r, bool *blank_r);

typedef struct {
	const char *raw;	/* the field with its continuation lines and CRLF */
	size_t raw_len;
	size_t name_len;	/* raw[0..name_len) is the name; 0: not a field */
} crypto_header_field;

typedef struct crypto_outbound_header crypto_outbound_header;

/* Parses block (as found by crypto_header_block_end; blank: it ends with
 * the empty line). body_prefix: the first bytes after it (for recognising
 * an armored PGP body). Never fails on content: what cannot be understood
 * is kept as it was. */
crypto_outbound_header *crypto_outbound_header_parse(const uint8_t *block, size_t len,
						     bool blank,
						     const uint8_t *body_prefix,
						     size_t prefix_len);
void crypto_outbound_header_free(crypto_outbound_header **h);

size_t crypto_outbound_header_n_fields(const crypto_outbound_header *h);
const crypto_header_field *crypto_outbound_header_field(const crypto_outbound_header *h,
							 size_t i);

/* The From address (first mailbox), NULL when there is none. */
const char *crypto_outbound_header_from(const crypto_outbound_header *h);
/* Message-ID without brackets, NULL when there is none. */
const char *crypto_outbound_header_message_id(const crypto_outbound_header *h);
/* Whether address is among the To and Cc mailboxes (any case). */
bool crypto_outbound_header_names(const crypto_outbound_header *h, const char *address);
/* The client already protected the message: multipart/encrypted,
 * application/pkcs7-mime, or a text body that is an armored PGP message. */
bool crypto_outbound_header_encrypted(const crypto_outbound_header *h);
bool crypto_outbound_header_has_autocrypt(const crypto_outbound_header *h);

/* X-Sealpost-Encrypt and X-Sealpost-Sign as the client set them.
 * *policy_r is KEYSTORE_POLICY_NONE and *sign_r -1 when absent. -1 with
 * *error_r ("X-Sealpost-Encrypt: unknown value 'maybe'") when a value is
 * not understood or the header appears twice with different values. */
int crypto_outbound_header_requests(const crypto_outbound_header *h,
				    keystore_policy *policy_r, int *sign_r,
				    const char **error_r);

/* ---- writing ---------------------------------------------------------------- */

/* The message body (what follows the header block): read until 0; -1 is
 * an error. rewind starts it again (signing reads it twice). */
typedef struct {
	ssize_t (*read)(void *ctx, void *buf, size_t size);
	int (*rewind)(void *ctx);
	void *ctx;
} crypto_source;

typedef struct {
	int (*write)(void *ctx, const void *buf, size_t len);
	void *ctx;
} crypto_sink;

typedef struct {
	gpgme_key_t *recipients;	/* NULL-terminated; encrypted only */
	gpgme_key_t signer;		/* NULL: not signed */
	bool clear_subject;		/* encrypted: keep the Subject outside */
	/* encrypted: keep Bcc and Resent-Bcc inside the encryption. Only for
	 * a copy nobody else reads: the sender's own Sent folder copy. */
	bool keep_bcc;
	/* Autocrypt field value ("addr=...; keydata=...", unfolded) to add, or
	 * NULL. Not added when the client put one already. */
	const char *autocrypt;
} crypto_outbound_options;

/* How a failure should be reported: temporary (gpg, I/O) or permanent. */
typedef enum {
	CRYPTO_FAIL_TEMPORARY,
	CRYPTO_FAIL_PERMANENT,
} crypto_failure;

/* As written: X-Sealpost-*, Bcc and Resent-Bcc fields are dropped, the
 * Autocrypt field added; the body bytes are copied unchanged. */
int crypto_outbound_write_plain(const crypto_outbound_header *h,
				const crypto_outbound_options *opts,
				const crypto_source *body, const crypto_sink *out,
				const char **error_r);

/* RFC 3156 multipart/signed over the original entity with its header
 * fields inside (RFC 9788, hp="clear"). */
int crypto_outbound_write_signed(const crypto_outbound_header *h, crypto_worker *w,
				 const crypto_outbound_options *opts,
				 const crypto_source *body, const crypto_sink *out,
				 crypto_failure *failure_r, const char **error_r);

/* RFC 3156 multipart/encrypted, signed inside when opts->signer is set. */
int crypto_outbound_write_encrypted(const crypto_outbound_header *h, crypto_worker *w,
				    const crypto_outbound_options *opts,
				    const crypto_source *body, const crypto_sink *out,
				    crypto_failure *failure_r, const char **error_r);

/* The Autocrypt attribute string for addr and a minimal key:
 * "addr=ADDR; [prefer-encrypt=mutual; ]keydata=BASE64". g_free. */
char *crypto_autocrypt_value(const char *addr, bool mutual,
			     const unsigned char *key, size_t key_len);

#endif
