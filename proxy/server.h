/* server: binds every configured listener, accepts, and runs each client
 * connection as a session in its own thread. */
#ifndef SEALPOST_SERVER_H
#define SEALPOST_SERVER_H

#include "config.h"

typedef struct server server;

/* Loads TLS material (generating sealpost's certificate on first start) and
 * binds all listeners. NULL with *error_r on failure. */
server *server_new(const config *cfg, const char **error_r);
/* Accepts until server_stop(). Returns 0, or -1 on a fatal error. */
int server_run(server *srv);
/* After server_run: wakes every open session (their client sockets are
 * shut down) and waits up to timeout_ms for them to end. 0 when all
 * ended; -1 when some still run — then the server must not be freed. */
int server_drain(server *srv, int timeout_ms);
/* Async-signal-safe. */
void server_stop(server *srv);
void server_free(server **srv);

/* Creates state_dir/tls/ and the certificate when missing. */
int server_ensure_certificate(const config *cfg, const char **error_r);

#endif
