/* smtp_upstream: the client side of SMTP towards the provider — greeting,
 * EHLO, mandatory verified TLS, then one command and its reply at a time,
 * and the message itself dot-stuffed from the spool. */
#ifndef SEALPOST_SMTP_UPSTREAM_H
#define SEALPOST_SMTP_UPSTREAM_H

#include <stdbool.h>

#include "session.h"
#include "smtp_parser.h"
#include "smtp_spool.h"

/* Why the provider connection cannot be used. The session turns each into
 * the reply the client sees (smtp_session.c, one place). */
typedef enum {
	SMTP_UPSTREAM_OK = 0,
	SMTP_UPSTREAM_FAIL_CONNECT,	/* TCP connect failed */
	SMTP_UPSTREAM_FAIL_GREETING,	/* no 220 greeting */
	SMTP_UPSTREAM_FAIL_EHLO,	/* EHLO refused or not understood */
	SMTP_UPSTREAM_FAIL_NO_STARTTLS,	/* smtp:// provider without STARTTLS */
	SMTP_UPSTREAM_FAIL_STARTTLS_REFUSED, /* STARTTLS answered other than 220 */
	SMTP_UPSTREAM_FAIL_INJECTION,	/* bytes after the 220 to STARTTLS */
	SMTP_UPSTREAM_FAIL_TLS,		/* handshake or certificate verification */
	SMTP_UPSTREAM_FAIL_LOST,	/* closed, I/O error or garbage later on */
	SMTP_UPSTREAM_FAIL_TIMEOUT,	/* no reply within command_timeout */
} smtp_upstream_failure;

typedef struct smtp_upstream smtp_upstream;

/* Connects, reads the greeting, says EHLO ehlo_name and brings up TLS
 * (STARTTLS for smtp://, already done for smtps://), then EHLO again. Never
 * returns NULL except out of memory; check smtp_upstream_failure_of(). No
 * byte of a client's credentials can be sent before this succeeded. */
smtp_upstream *smtp_upstream_open(const session_env *env, const char *ehlo_name);
/* Sends QUIT (best effort, waiting briefly) and frees. */
void smtp_upstream_free(smtp_upstream **up);

smtp_upstream_failure smtp_upstream_failure_of(const smtp_upstream *up);
/* One line saying what went wrong (for replies and logs), "" if nothing. */
const char *smtp_upstream_failure_detail(const smtp_upstream *up);
bool smtp_upstream_usable(const smtp_upstream *up);
/* True once set-up completed: a failure after that is a lost connection
 * (421/451 to the client), before it a refusal to go on (454). */
bool smtp_upstream_established(const smtp_upstream *up);

/* The post-TLS EHLO keywords. Returns the parameters ("" when none), or
 * NULL when the provider did not announce keyword. */
const char *smtp_upstream_extension(const smtp_upstream *up, const char *keyword);

/* Sends one command line (no CRLF) and waits for its reply. log_line is
 * what the debug log shows of it (AUTH payloads hidden by the caller).
 * Returns 0 with *reply_r valid until the next call, or -1 when the
 * connection failed (then smtp_upstream_usable() is false). A 421 reply is
 * returned as a reply, and the connection is marked lost afterwards. */
int smtp_upstream_command(smtp_upstream *up, const char *line,
			  const char *log_line, const smtp_reply **reply_r);

/* Several envelope commands (RSET, MAIL, RCPT; never DATA or anything
 * after it) as one group: written together and flushed once when the
 * provider announced PIPELINING (RFC 2920), else one at a time, stopping
 * at the first refusal. All replies of what was sent are read. Returns 0
 * when every command got 2xx; 1 with *failed_r the index of the first one
 * refused and *reply_r its reply (first line only, valid until the next
 * call); -1 when the connection failed. */
int smtp_upstream_commands(smtp_upstream *up, const char *const *lines, size_t n,
			   size_t *failed_r, const smtp_reply **reply_r);

/* DATA, then (on 354) the spool's content dot-stuffed and the final dot,
 * then the provider's verdict. *reply_r is the reply to DATA when that was
 * not 354, else the reply to the final dot. -1 when the connection failed
 * at any point: the message must be taken as not delivered. */
int smtp_upstream_send_message(smtp_upstream *up, smtp_spool *spool,
			       const smtp_reply **reply_r);

/* While the session waits for its client: the connection to watch (NULL
 * when there is none), and what to do when it became readable. Returns
 * false when the provider closed or said something unasked. */
conn *smtp_upstream_conn(smtp_upstream *up);
bool smtp_upstream_poll_idle(smtp_upstream *up);

#endif
