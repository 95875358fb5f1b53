/* imap_upstream: sealpost as an IMAP client of the provider up to login:
 * connect, verified TLS (STARTTLS is mandatory for imap://), capabilities,
 * and reading the provider's replies one line at a time. */
#ifndef SEALPOST_IMAP_UPSTREAM_H
#define SEALPOST_IMAP_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "imap_parser.h"
#include "session.h"
#include "upstream_setup.h"

/* Connects and brings up verified TLS; returns a connection in the
 * not-authenticated state with the provider's capabilities (read after
 * TLS, unfiltered) in *caps_r (malloc'd). On failure returns NULL with
 * *failure_r and a one-line reason in error. Never sends anything but
 * CAPABILITY and STARTTLS before TLS is verified. */
conn *imap_upstream_connect(const session_env *env, char **caps_r,
			    upstream_setup_failure *failure_r, char *error,
			    size_t error_size);

/* Reads one response line (no literals allowed before login) of at most
 * max_line bytes. 1 with *line_r and *len_r (the caller consumes len), -1 with
 * *error_r ("connection closed", "timeout", "line too long"...). */
int imap_upstream_read_line(conn *c, size_t max_line, const uint8_t **line_r,
			    size_t *len_r, const char **error_r);

/* If line is "* CAPABILITY ..." or carries [CAPABILITY ...], replaces
 * *caps (malloc'd) with its list. */
void imap_upstream_note_caps(const uint8_t *line, size_t len, char **caps);

/* Writes s as an IMAP astring: quoted when it is plain printable ASCII,
 * otherwise as a literal (non-synchronizing if literal_plus). Sets
 * *sync_literal_r when the caller must wait for "+" after flushing and then
 * write the len bytes of s itself. */
int imap_upstream_write_astring(conn *c, const uint8_t *s, size_t len,
				bool literal_plus, bool *sync_literal_r);

#endif
