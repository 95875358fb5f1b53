/* smtp_outbound: the encryption policy of one SMTP session — which
 * recipients get which copy of a message (encrypted, signed, as written),
 * or why it must be refused — and the rendering of each copy into a spool. */
#ifndef SEALPOST_SMTP_OUTBOUND_H
#define SEALPOST_SMTP_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "session.h"
#include "smtp_spool.h"

typedef struct smtp_outbound smtp_outbound;

smtp_outbound *smtp_outbound_new(const session_env *env);
void smtp_outbound_free(smtp_outbound **o);

/* "<bob@example.org>" -> "bob@example.org" (a source route dropped); NULL
 * for the null path or anything without an '@'. g_free. */
char *smtp_outbound_path_address(const char *path, size_t len);

/* At RCPT time, when the policy cannot change later (the client's
 * X-Sealpost-* headers are not honoured): NULL when the recipient may go
 * to the provider, else the complete refusal reply (valid until the next
 * call). address may be NULL (no check). */
const char *smtp_outbound_check_rcpt(smtp_outbound *o, const char *address);

typedef enum {
	SMTP_COPY_PLAIN,	/* as written (and signed when signing is on) */
	SMTP_COPY_ENCRYPTED,
	SMTP_COPY_PASSTHROUGH,	/* the client encrypted it already */
} smtp_copy_kind;

/* End of data: reads the spooled message's header block and decides.
 * rcpts are the envelope addresses the provider accepted (NULL entries
 * for paths without an address). 0 when there is something to relay: see
 * smtp_outbound_n_copies(); -1 when the message must not be relayed, with
 * the reply for the client in *reply_r (valid until the next call). */
int smtp_outbound_decide(smtp_outbound *o, smtp_spool *in, char *const *rcpts,
			 size_t n_rcpts, const char **reply_r);

size_t smtp_outbound_n_copies(const smtp_outbound *o);
/* Which envelope recipients (indexes into rcpts) copy i goes to. */
const size_t *smtp_outbound_copy_rcpts(const smtp_outbound *o, size_t i, size_t *n_r);
smtp_copy_kind smtp_outbound_copy_kind(const smtp_outbound *o, size_t i);
/* One word for logs: "encrypted", "signed+encrypted", "signed", "as written", "passthrough". */
const char *smtp_outbound_copy_describe(const smtp_outbound *o, size_t i);

/* Writes copy i into out (cleared first). -1 with the client's reply in
 * *reply_r (451 for temporary failures, 554 otherwise). */
int smtp_outbound_render(smtp_outbound *o, size_t i, smtp_spool *in, smtp_spool *out,
			 const char **reply_r);

/* Records the outcome in the decision log (never content). */
void smtp_outbound_log(smtp_outbound *o, const char *decision, const char *reason);

/* Why the last refusal or deferral reply was given (for metrics). */
metrics_reason smtp_outbound_failure_reason(const smtp_outbound *o);
/* The current message's Message-ID without brackets, NULL when none (or no
 * message has been looked at). */
const char *smtp_outbound_message_id(const smtp_outbound *o);

/* Forgets the current message. */
void smtp_outbound_reset(smtp_outbound *o);

#endif
