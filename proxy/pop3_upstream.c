/* pop3_upstream: the provider side of a POP3 session. It fails closed: no
 * credentials are ever written to a connection whose TLS is not up and
 * verified, and nothing from before TLS is kept. */
#include "pop3_upstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* The most CAPA lines kept: a real list has about a dozen. */
#define POP3_UPSTREAM_MAX_CAPA 16384

int pop3_upstream_read_status(conn *c, pop3_response *resp, const char **error_r)
{
	static _Thread_local uint8_t copy[POP3_UPSTREAM_MAX_LINE];
	const char *line;
	size_t len;
	int ret = conn_read_line(c, POP3_UPSTREAM_MAX_LINE, &line, &len);
	if (ret == 0) {
		*error_r = "connection closed";
		return -1;
	}
	if (ret == -2) {
		*error_r = "line too long";
		return -1;
	}
	if (ret < 0) {
		*error_r = conn_last_error(c);
		return -1;
	}
	memcpy(copy, line, len);
	conn_consume(c, len);
	if (pop3_parser_response(copy, len, resp, error_r) < 0)
		return -1;
	return 0;
}

/* Feeds the buffered input to the unstuffer until the body ends. relay
 * (may be NULL) gets the raw bytes. */
static int pop3_upstream_body(conn *c, GByteArray *out, uint64_t max, bool *too_big_r,
			      conn *relay, bool *client_failed_r, const char **error_r)
{
	pop3_parser_unstuffer u;
	pop3_parser_unstuff_init(&u);
	if (too_big_r != NULL)
		*too_big_r = false;
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(c, &len);
		if (len > 0) {
			bool keep = out != NULL && (too_big_r == NULL || !*too_big_r);
			size_t consumed;
			pop3_parse_result r = pop3_parser_unstuff(&u, data, len, keep ? out : NULL,
								  &consumed);
			if (relay != NULL && conn_write(relay, data, consumed) < 0) {
				*client_failed_r = true;
				*error_r = conn_last_error(relay);
				return -1;
			}
			conn_consume(c, consumed);
			if (keep && out->len > max) {
				*too_big_r = true;
				g_byte_array_set_size(out, 0);
			}
			if (r == POP3_PARSE_DONE)
				return 0;
		}
		ssize_t n = conn_fill(c);
		if (n == 0) {
			*error_r = "connection closed";
			return -1;
		}
		if (n < 0) {
			*error_r = conn_last_error(c);
			return -1;
		}
	}
}

int pop3_upstream_read_body(conn *c, GByteArray *out, uint64_t max, bool *too_big_r,
			    const char **error_r)
{
	return pop3_upstream_body(c, out, max, too_big_r, NULL, NULL, error_r);
}

int pop3_upstream_relay_body(conn *c, conn *client, bool *client_failed_r,
			     const char **error_r)
{
	*client_failed_r = false;
	return pop3_upstream_body(c, NULL, 0, NULL, client, client_failed_r, error_r);
}

int pop3_upstream_capa(conn *c, char **caps_r, const char **error_r)
{
	*caps_r = NULL;
	if (conn_write_str(c, "CAPA\r\n") < 0 || conn_flush(c) < 0) {
		*error_r = conn_last_error(c);
		return -1;
	}
	pop3_response resp;
	if (pop3_upstream_read_status(c, &resp, error_r) < 0)
		return -1;
	if (resp.status == POP3_RESP_ERR)
		return 0;
	if (resp.status != POP3_RESP_OK) {
		*error_r = "unexpected reply to CAPA";
		return -1;
	}
	GByteArray *body = g_byte_array_new();
	bool too_big;
	if (pop3_upstream_read_body(c, body, POP3_UPSTREAM_MAX_CAPA, &too_big, error_r) < 0) {
		g_byte_array_unref(body);
		return -1;
	}
	/* Kept as text: a NUL would cut it short, which only removes
	 * capabilities. A list too long is taken as none. */
	g_byte_array_append(body, (const guint8 *)"", 1);
	char *caps = (char *)g_byte_array_free(body, FALSE);
	if (too_big)
		caps[0] = '\0';
	*caps_r = caps;
	return 0;
}

typedef struct {
	const session_env *env;
	conn *c;
	char *caps;
	pop3_upstream_failure failure;
	char *error;
	size_t error_size;
} pop3_upstream_setup;

static void pop3_upstream_fail(pop3_upstream_setup *u, pop3_upstream_failure failure,
			       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void pop3_upstream_fail(pop3_upstream_setup *u, pop3_upstream_failure failure,
			       const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(u->error, u->error_size, fmt, args);
	va_end(args);
	u->failure = failure;
}

static int pop3_upstream_greeting(pop3_upstream_setup *u)
{
	pop3_response resp;
	const char *error;
	if (pop3_upstream_read_status(u->c, &resp, &error) < 0) {
		pop3_upstream_fail(u, POP3_UPSTREAM_PROTOCOL, "no greeting from the provider: %s",
				   error);
		return -1;
	}
	if (resp.status != POP3_RESP_OK) {
		pop3_upstream_fail(u, POP3_UPSTREAM_PROTOCOL,
				   "the provider refused the connection (-ERR greeting)");
		return -1;
	}
	return 0;
}

static int pop3_upstream_get_capa(pop3_upstream_setup *u)
{
	const char *error;
	g_free(u->caps);
	u->caps = NULL;
	if (pop3_upstream_capa(u->c, &u->caps, &error) < 0) {
		pop3_upstream_fail(u, POP3_UPSTREAM_LOST, "reading the provider's CAPA: %s", error);
		return -1;
	}
	return 0;
}

static int pop3_upstream_stls(pop3_upstream_setup *u)
{
	const config_upstream *up = &u->env->account->pop3_upstream;
	if (pop3_upstream_get_capa(u) < 0)
		return -1;
	if (!pop3_parser_capa_has(u->caps, "STLS")) {
		pop3_upstream_fail(u, POP3_UPSTREAM_NO_STLS, "the provider %s:%d does not offer STLS",
				   up->host, up->port);
		return -1;
	}
	log_info(u->env->id, "upstream STLS", "%s:%d", up->host, up->port);
	const char *error;
	pop3_response resp;
	if (conn_write_str(u->c, "STLS\r\n") < 0 || conn_flush(u->c) < 0) {
		pop3_upstream_fail(u, POP3_UPSTREAM_LOST, "sending STLS to the provider: %s",
				   conn_last_error(u->c));
		return -1;
	}
	if (pop3_upstream_read_status(u->c, &resp, &error) < 0) {
		pop3_upstream_fail(u, POP3_UPSTREAM_LOST, "reading the provider's reply to STLS: %s",
				   error);
		return -1;
	}
	if (resp.status != POP3_RESP_OK) {
		pop3_upstream_fail(u, POP3_UPSTREAM_STLS_REFUSED, "the provider %s:%d refused STLS",
				   up->host, up->port);
		return -1;
	}
	/* Whatever came with the +OK was not protected by TLS: an injection
	 * by someone in the path. The connection is not trusted then. */
	size_t injected = conn_input_len(u->c);
	conn_discard_input(u->c);
	if (injected > 0) {
		pop3_upstream_fail(u, POP3_UPSTREAM_STLS_INJECTION,
				   "the provider %s:%d sent %zu unexpected bytes after its STLS reply (STLS injection?)",
				   up->host, up->port, injected);
		return -1;
	}
	g_free(u->caps);
	u->caps = NULL;
	if (conn_starttls_client(u->c, u->env->tls_cli, up->host, &error) < 0) {
		pop3_upstream_fail(u, POP3_UPSTREAM_TLS, "%s", error);
		return -1;
	}
	return 0;
}

conn *pop3_upstream_connect(const session_env *env, char **caps_r,
			    pop3_upstream_failure *failure_r, char *error, size_t error_size)
{
	const config_upstream *up = &env->account->pop3_upstream;
	pop3_upstream_setup u = {
		.env = env, .failure = POP3_UPSTREAM_OK,
		.error = error, .error_size = error_size,
	};
	*caps_r = NULL;
	if (up->host == NULL) {
		pop3_upstream_fail(&u, POP3_UPSTREAM_NOT_CONFIGURED,
				   "no POP3 provider is configured for this account");
		*failure_r = u.failure;
		return NULL;
	}
	log_info(env->id, "connecting to upstream", "%s:%d (%s)", up->host, up->port,
		 up->tls == UPSTREAM_TLS_IMPLICIT ? "TLS" : "STLS");
	const char *cerror;
	u.c = session_connect_upstream(env, up, &cerror);
	if (u.c == NULL) {
		pop3_upstream_fail(&u, strncmp(cerror, "connect ", 8) == 0 ?
				   POP3_UPSTREAM_CONNECT : POP3_UPSTREAM_TLS, "%s", cerror);
		*failure_r = u.failure;
		return NULL;
	}
	/* A plain next hop is for gateways only; POP3 always has TLS. */
	if (up->tls == UPSTREAM_TLS_NONE) {
		pop3_upstream_fail(&u, POP3_UPSTREAM_TLS, "the provider is not reached over TLS");
		goto fail;
	}
	if (pop3_upstream_greeting(&u) < 0 ||
	    (up->tls == UPSTREAM_TLS_STARTTLS && pop3_upstream_stls(&u) < 0) ||
	    pop3_upstream_get_capa(&u) < 0)
		goto fail;
	log_info(env->id, "connecting to upstream", "TLS verified with %s:%d", up->host, up->port);
	*caps_r = u.caps;
	*failure_r = POP3_UPSTREAM_OK;
	return u.c;
fail:
	log_warn(env->id, "connecting to upstream", "%s", error);
	g_free(u.caps);
	conn_free(&u.c);
	*failure_r = u.failure;
	return NULL;
}
