/* upstream_setup: connecting to the provider for IMAP and POP3. It fails
 * closed: a connection only comes out of it with TLS up and verified. */
#include "upstream_setup.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

void upstream_setup_fail(upstream_setup *u, upstream_setup_failure failure,
			 const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(u->error, u->error_size, fmt, args);
	va_end(args);
	u->failure = failure;
}

int upstream_setup_connect(upstream_setup *u, const session_env *env,
			   const config_upstream *up, const char *protocol,
			   const char *starttls, char *error, size_t error_size)
{
	*u = (upstream_setup){
		.env = env, .up = up, .failure = UPSTREAM_SETUP_OK,
		.error = error, .error_size = error_size,
	};
	if (up->host == NULL) {
		upstream_setup_fail(u, UPSTREAM_SETUP_NOT_CONFIGURED,
				    "no %s provider is configured for this account", protocol);
		return -1;
	}
	log_info(env->id, "connecting to upstream", "%s:%d (%s)", up->host, up->port,
		 up->tls == UPSTREAM_TLS_IMPLICIT ? "TLS" : starttls);
	const char *cerror;
	u->c = session_connect_upstream(env, up, &cerror);
	if (u->c == NULL) {
		/* session_connect_upstream words its errors "connect HOST..."
		 * when no TCP connection came about. */
		upstream_setup_fail(u, strncmp(cerror, "connect ", 8) == 0 ?
				    UPSTREAM_SETUP_CONNECT : UPSTREAM_SETUP_TLS, "%s", cerror);
		return -1;
	}
	return 0;
}

int upstream_setup_starttls(upstream_setup *u, const char *starttls)
{
	/* Whatever came with the reply was not protected by TLS: an injection
	 * by someone in the path (nothing may follow it before the
	 * handshake). Discarded, and the connection is not trusted: a later
	 * injection would break the handshake, this one must fail too. */
	size_t injected = conn_input_len(u->c);
	conn_discard_input(u->c);
	if (injected > 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_STARTTLS_INJECTION,
				    "the provider %s:%d sent %zu unexpected bytes after its %s reply (%s injection?)",
				    u->up->host, u->up->port, injected, starttls, starttls);
		return -1;
	}
	const char *error;
	if (conn_starttls_client(u->c, u->env->tls_cli, u->up->host, &error) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_TLS, "%s", error);
		return -1;
	}
	return 0;
}

conn *upstream_setup_finish(upstream_setup *u, bool ok, upstream_setup_failure *failure_r)
{
	if (ok) {
		log_info(u->env->id, "connecting to upstream", "TLS verified with %s:%d",
			 u->up->host, u->up->port);
		*failure_r = UPSTREAM_SETUP_OK;
		return u->c;
	}
	log_warn(u->env->id, "connecting to upstream", "%s", u->error);
	conn_free(&u->c);
	*failure_r = u->failure;
	return NULL;
}

int upstream_setup_fill(conn *c, const char **error_r)
{
	ssize_t n = conn_fill(c);
	if (n == 0) {
		*error_r = "connection closed";
		return -1;
	}
	if (n < 0) {
		*error_r = conn_last_error(c);
		return -1;
	}
	return 0;
}
