/* imap_append: a client's APPEND (MULTIAPPEND too) received whole, each
 * plaintext message encrypted to the account's own key, then sent to the
 * provider with new literal sizes, so nothing readable lands in a mailbox. */
#ifndef SEALPOST_IMAP_APPEND_H
#define SEALPOST_IMAP_APPEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "imap_append_parser.h"
#include "imap_parser.h"
#include "session.h"

/* ---- the session side ----------------------------------------------------------- */

typedef struct imap_append imap_append;

typedef enum {
	IMAP_APPEND_MORE,	/* feed the next frame */
	IMAP_APPEND_CONTINUE,	/* the client waits for "+": answer it, then go on */
	IMAP_APPEND_COMPLETE,	/* whole: imap_append_run once nothing is in flight */
	IMAP_APPEND_REFUSED,	/* write "TAG <reply>"; the rest of the command is dropped */
} imap_append_status;

/* tag: the client's tag (copied). */
imap_append *imap_append_new(const session_env *env, const uint8_t *tag, size_t tag_len);
void imap_append_free(imap_append **a);

/* The client's frames of the command, the first with args_pos. REFUSED sets
 * *reply_r ("NO [TOOBIG] ...", static or owned by a) without the tag. */
imap_append_status imap_append_feed(imap_append *a, const imap_frame *fr, size_t args_pos,
				    const char **reply_r);

/* Prepares every message (encrypts what must be) and sends the command to
 * the provider under the client's tag. Nothing else may be in flight and
 * the client must be at a line start. 0 with *sent_r true: the provider
 * has the whole command and its tagged reply is the client's; *sent_r
 * false: the command ended here and its tagged reply was written to the
 * client. -1 with error set: a connection failed or the provider broke the
 * protocol (the session ends). */
int imap_append_run(imap_append *a, conn *client, conn *upstream, bool *sent_r,
		    char *error, size_t error_size);

/* What a message appended to the provider becomes (pure, for tests):
 * encrypted unless it already is, or unless encrypt_append is off and it is
 * not a decrypted view of sealpost's (it carries X-Sealpost-Decryption). */
typedef enum {
	IMAP_APPEND_KEEP,	/* goes up untouched */
	IMAP_APPEND_ENCRYPT,
} imap_append_action;

imap_append_action imap_append_decide(bool encrypt_append, bool already_encrypted,
				      bool decrypted_view);

#endif
