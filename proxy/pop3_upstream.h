/* pop3_upstream: sealpost as a POP3 client of the provider: connect,
 * verified TLS (STLS is mandatory for pop3://), CAPA, and reading status
 * lines and multi-line bodies. */
#ifndef SEALPOST_POP3_UPSTREAM_H
#define SEALPOST_POP3_UPSTREAM_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "pop3_parser.h"
#include "session.h"
#include "upstream_setup.h"

/* The longest status line sealpost reads from the provider. */
#define POP3_UPSTREAM_MAX_LINE 8192

/* Connects and brings up verified TLS; returns a connection in the
 * AUTHORIZATION state with the provider's CAPA body (after TLS, lines
 * ending CRLF; NULL when CAPA is not supported) in *caps_r (g_free). On
 * failure NULL with *failure_r and a one-line reason in error. Nothing but
 * CAPA and STLS is sent before TLS is verified. */
conn *pop3_upstream_connect(const session_env *env, char **caps_r,
			    upstream_setup_failure *failure_r, char *error, size_t error_size);

/* Reads one status line (at most POP3_UPSTREAM_MAX_LINE bytes) and parses
 * it; the line is consumed, *resp points into a copy that lives until the
 * next call on this thread. 0, or -1 with *error_r. */
int pop3_upstream_read_status(conn *c, pop3_response *resp, const char **error_r);

/* Reads a multi-line body after its +OK, unstuffed into out (NULL: thrown
 * away). Past max bytes nothing more is appended and *too_big_r is set,
 * but the body is still read to its end. 0, or -1 with *error_r. */
int pop3_upstream_read_body(conn *c, GByteArray *out, uint64_t max, bool *too_big_r,
			    const char **error_r);

/* Copies a multi-line body after its +OK as it is on the wire, terminating
 * line included, from c to client. 0, or -1 with *error_r (which side failed
 * in *client_failed_r). */
int pop3_upstream_relay_body(conn *c, conn *client, bool *client_failed_r,
			     const char **error_r);

/* Sends "CAPA" and reads the list (lines ending CRLF, g_free); *caps_r is
 * NULL when the provider answered -ERR. 0, or -1 with *error_r. */
int pop3_upstream_capa(conn *c, char **caps_r, const char **error_r);

#endif
