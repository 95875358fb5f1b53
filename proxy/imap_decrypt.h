/* imap_decrypt: a client's FETCH of content in the selected mailbox, served
 * from decrypted views for encrypted messages and streamed from the provider
 * for all others, so the client cannot tell that the provider stores
 * ciphertext. Runs inside the relay's thread while nothing else is in flight. */
#ifndef SEALPOST_IMAP_DECRYPT_H
#define SEALPOST_IMAP_DECRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "imap_parser.h"
#include "session.h"

/* The selected mailbox as the relay saw it being selected. */
typedef struct {
	bool selected;
	uint8_t name[1024];	/* decoded astring as the client sent it; INBOX in upper case */
	size_t name_len;
	uint32_t uidvalidity;	/* 0: the provider did not say */
	bool read_only;		/* EXAMINE, or [READ-ONLY] */
} imap_decrypt_mailbox;

/* What to do with a client command (a whole line, CRLF included, no
 * literal): FETCH or UID FETCH with content items in a selected mailbox. */
typedef enum {
	IMAP_DECRYPT_PASS,	/* forward as it is */
	IMAP_DECRYPT_TAKE,	/* imap_decrypt_fetch answers it */
	IMAP_DECRYPT_BAD,	/* answer "tag BAD <error>" */
} imap_decrypt_check;

imap_decrypt_check imap_decrypt_check_command(const session_env *env,
					      const imap_decrypt_mailbox *mailbox,
					      const uint8_t *line, size_t len,
					      const imap_command *cmd, const char **error_r);

/* Decodes the mailbox argument of SELECT/EXAMINE (line without literals)
 * into mailbox->name. -1 when it cannot be read. */
int imap_decrypt_mailbox_name(const uint8_t *line, size_t len, const imap_command *cmd,
			      imap_decrypt_mailbox *mailbox);

/* Answers a command for which check said TAKE: talks to the provider with
 * its own tags (fetches always PEEK), writes the FETCH responses and the
 * tagged reply to the client. Nothing else may be in flight upstream, and
 * the client must be at a line start. 0, or -1 with error set when a
 * connection failed or the provider broke the protocol (the session ends;
 * a BYE was written when possible). */
int imap_decrypt_fetch(const session_env *env, const imap_decrypt_mailbox *mailbox,
		       conn *client, conn *upstream, const uint8_t *line, size_t len,
		       char *error, size_t error_size);

/* The header of msg without the X-Sealpost-* fields (any case, with their
 * continuation lines); NULL when it holds none. */
GByteArray *imap_decrypt_strip_status_fields(const uint8_t *msg, size_t len);

/* The values of every field called name (any case) in the header at the
 * start of msg, unfolded and trimmed, in order (g_ptr_array_unref). */
GPtrArray *imap_decrypt_header_values(const uint8_t *msg, size_t len, const char *name);

#endif
