/* conn: a buffered, non-blocking socket with an exchangeable transport
 * (plain TCP or TLS). STARTTLS swaps the transport underneath and nothing
 * above notices. Blocking-style calls wait with poll() up to the timeout. */
#ifndef SEALPOST_CONN_H
#define SEALPOST_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tls.h"

typedef struct conn conn;

/* Takes ownership of fd: sets O_NONBLOCK and TCP_NODELAY. desc names the
 * peer in errors and logs (e.g. "client 127.0.0.1:40022"). */
conn *conn_new(int fd, const char *desc);
/* Closes the socket (TLS close_notify best effort) and frees. */
void conn_free(conn **c);

/* Connects to host:port (name or literal address) within timeout_ms;
 * returns NULL with *error_r ("connect imap.example.org:993: Connection
 * refused") on failure. The message lives until the next call in this
 * thread. */
conn *conn_connect(const char *host, int port, int timeout_ms,
		   const char **error_r);

int conn_fd(const conn *c);
const char *conn_desc(const conn *c);
bool conn_is_tls(const conn *c);
/* Timeout for every blocking call on this conn; default 300 s. */
void conn_set_timeout(conn *c, int timeout_ms);
/* Last error as text ("timeout", "connection closed", TLS reason...). */
const char *conn_last_error(const conn *c);

/* --- input --------------------------------------------------------------
 * The input buffer holds bytes read but not yet consumed. */

/* Reads once (waiting up to the timeout if nothing is available) and
 * appends to the input buffer. Returns the number of new bytes, 0 at end of
 * stream, -1 on error or timeout (see conn_last_error). Never reads more
 * than the buffer's free space; the buffer grows up to max_buffer. */
ssize_t conn_fill(conn *c);
/* Like conn_fill but returns -1/EAGAIN-style 0-new-bytes immediately when
 * nothing is readable now: returns >0 bytes, 0 at EOF, -1 error, -2 would
 * block. */
ssize_t conn_fill_nowait(conn *c);
const uint8_t *conn_input(const conn *c, size_t *len_r);
size_t conn_input_len(const conn *c);
void conn_consume(conn *c, size_t n);
/* Drops all buffered input (bytes pipelined after STARTTLS). */
void conn_discard_input(conn *c);
/* True when bytes are buffered here or inside the TLS layer. */
bool conn_has_pending(const conn *c);

/* Reads a line ending in LF of at most max_len bytes (LF included) into the
 * input buffer. On success *line_r points into the buffer (not
 * NUL-terminated), *len_r includes the line end, and the caller must
 * conn_consume(c, *len_r) when done. Returns 1 line, 0 EOF before a
 * complete line, -1 error/timeout, -2 line longer than max_len. */
int conn_read_line(conn *c, size_t max_len, const char **line_r, size_t *len_r);

/* --- output -------------------------------------------------------------
 * Writes are buffered; the buffer is flushed when it passes 64 KiB and by
 * conn_flush(). A short write is normal and retried. */
int conn_write(conn *c, const void *data, size_t len);
int conn_write_str(conn *c, const char *s);
int conn_printf(conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Writes everything buffered, waiting up to the timeout. 0 or -1. */
int conn_flush(conn *c);
size_t conn_output_len(const conn *c);

/* Ends our direction of the stream (TLS close_notify first when TLS is
 * up) while the peer may still send. Output must be flushed before. */
void conn_shutdown_write(conn *c);

/* --- TLS ---------------------------------------------------------------- */
/* Server-side handshake on this connection (implicit TLS or after
 * STARTTLS). The caller must have discarded plaintext input first. */
int conn_starttls_server(conn *c, tls_server *srv, const char **error_r);
/* Client-side handshake with chain and host-name verification. hostname is
 * also sent as SNI (unless it is an IP address). */
int conn_starttls_client(conn *c, tls_client *cli, const char *hostname,
			 const char **error_r);

/* --- waiting ------------------------------------------------------------ */
#define CONN_WAIT_A 1
#define CONN_WAIT_B 2
/* Waits until a or b (b may be NULL) has input to read (buffered, pending
 * in TLS, or on the socket, or EOF). Returns a mask of CONN_WAIT_*, 0 on
 * timeout, -1 on error. Flushes neither. */
int conn_wait_readable(conn *a, conn *b, int timeout_ms);

#endif
