/* pop3_upstream: the provider side of a POP3 session. It fails closed: no
 * credentials are ever written to a connection whose TLS is not up and
 * verified, and nothing from before TLS is kept. */
#include "pop3_upstream.h"

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
		if (upstream_setup_fill(c, error_r) < 0)
			return -1;
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

static int pop3_upstream_greeting(upstream_setup *u)
{
	pop3_response resp;
	const char *error;
	if (pop3_upstream_read_status(u->c, &resp, &error) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL, "no greeting from the provider: %s",
				    error);
		return -1;
	}
	if (resp.status != POP3_RESP_OK) {
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
				    "the provider refused the connection (-ERR greeting)");
		return -1;
	}
	return 0;
}

static int pop3_upstream_get_capa(upstream_setup *u)
{
	const char *error;
	g_free(u->caps);
	u->caps = NULL;
	if (pop3_upstream_capa(u->c, &u->caps, &error) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_LOST, "reading the provider's CAPA: %s",
				    error);
		return -1;
	}
	return 0;
}

static int pop3_upstream_stls(upstream_setup *u)
{
	const config_upstream *up = &u->env->account->pop3_upstream;
	if (pop3_upstream_get_capa(u) < 0)
		return -1;
	if (!pop3_parser_capa_has(u->caps, "STLS")) {
		upstream_setup_fail(u, UPSTREAM_SETUP_NO_STARTTLS, "the provider %s:%d does not offer STLS",
				    up->host, up->port);
		return -1;
	}
	log_info(u->env->id, "upstream STLS", "%s:%d", up->host, up->port);
	const char *error;
	pop3_response resp;
	if (conn_write_str(u->c, "STLS\r\n") < 0 || conn_flush(u->c) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_LOST, "sending STLS to the provider: %s",
				    conn_last_error(u->c));
		return -1;
	}
	if (pop3_upstream_read_status(u->c, &resp, &error) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_LOST, "reading the provider's reply to STLS: %s",
				    error);
		return -1;
	}
	if (resp.status != POP3_RESP_OK) {
		upstream_setup_fail(u, UPSTREAM_SETUP_STARTTLS_REFUSED, "the provider %s:%d refused STLS",
				    up->host, up->port);
		return -1;
	}
	g_free(u->caps);
	u->caps = NULL;
	return upstream_setup_starttls(u, "STLS");
}

conn *pop3_upstream_connect(const session_env *env, char **caps_r,
			    upstream_setup_failure *failure_r, char *error, size_t error_size)
{
	const config_upstream *up = &env->account->pop3_upstream;
	upstream_setup u;
	*caps_r = NULL;
	if (upstream_setup_connect(&u, env, up, "POP3", "STLS", error, error_size) < 0) {
		*failure_r = u.failure;
		return NULL;
	}
	/* A plain next hop is for gateways only; POP3 always has TLS. */
	if (up->tls == UPSTREAM_TLS_NONE) {
		upstream_setup_fail(&u, UPSTREAM_SETUP_TLS, "the provider is not reached over TLS");
		goto fail;
	}
	if (pop3_upstream_greeting(&u) < 0 ||
	    (up->tls == UPSTREAM_TLS_STARTTLS && pop3_upstream_stls(&u) < 0) ||
	    pop3_upstream_get_capa(&u) < 0)
		goto fail;
	*caps_r = u.caps;
	return upstream_setup_finish(&u, true, failure_r);
fail:
	g_free(u.caps);
	return upstream_setup_finish(&u, false, failure_r);
}
