/* upstream_setup: the steps of reaching the provider that the IMAP and POP3
 * upstream clients share: connect with verified TLS, typed failure reasons,
 * the TLS upgrade after a STARTTLS (STLS) reply, and the outcome's log lines. */
#ifndef SEALPOST_UPSTREAM_SETUP_H
#define SEALPOST_UPSTREAM_SETUP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "conn.h"
#include "session.h"

/* Why the provider could not be used; the sessions turn each into the
 * client's reply (NO [UNAVAILABLE], -ERR [SYS/TEMP]). */
typedef enum {
	UPSTREAM_SETUP_OK,
	UPSTREAM_SETUP_NOT_CONFIGURED,	/* the account has no provider for the protocol */
	UPSTREAM_SETUP_CONNECT,		/* DNS, refused, unreachable, timeout */
	UPSTREAM_SETUP_TLS,		/* handshake or certificate verification */
	UPSTREAM_SETUP_NO_STARTTLS,	/* a plain-URL provider does not offer STARTTLS (STLS) */
	UPSTREAM_SETUP_STARTTLS_REFUSED, /* STARTTLS (STLS) refused */
	UPSTREAM_SETUP_STARTTLS_INJECTION, /* data followed the STARTTLS (STLS) reply */
	UPSTREAM_SETUP_PROTOCOL,	/* unusable greeting or reply */
	UPSTREAM_SETUP_LOST,		/* closed, BYE or timed out later on */
} upstream_setup_failure;

/* One connection being brought up. caps is the protocol's capability text:
 * the protocol allocates and frees it, this module never touches it. */
typedef struct {
	const session_env *env;
	const config_upstream *up;
	conn *c;
	char *caps;
	upstream_setup_failure failure;
	char *error;			/* the caller's buffer for a one-line reason */
	size_t error_size;
} upstream_setup;

/* Records why the setup failed, with a one-line reason in u->error. */
void upstream_setup_fail(upstream_setup *u, upstream_setup_failure failure,
			 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Fills u and connects to up, with the TLS handshake done for implicit TLS.
 * protocol ("IMAP") names the account's missing provider, starttls
 * ("STARTTLS") the upgrade in the log. 0, or -1 with u->failure and the
 * reason in error (nothing more to release). */
int upstream_setup_connect(upstream_setup *u, const session_env *env,
			   const config_upstream *up, const char *protocol,
			   const char *starttls, char *error, size_t error_size);

/* After the provider accepted STARTTLS (STLS): whatever came with the
 * reply was not protected, so it fails the setup; else the verified TLS
 * handshake. 0, or -1 after upstream_setup_fail(). */
int upstream_setup_starttls(upstream_setup *u, const char *starttls);

/* Ends the setup: logs the outcome, frees the connection on failure.
 * Returns u->c (NULL on failure) and sets *failure_r. */
conn *upstream_setup_finish(upstream_setup *u, bool ok, upstream_setup_failure *failure_r);

/* Reads more of the provider's input. 0, or -1 with *error_r
 * ("connection closed", "timeout"...). */
int upstream_setup_fill(conn *c, const char **error_r);

#endif
