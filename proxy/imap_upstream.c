/* imap_upstream: the provider side of an IMAP session before login. It
 * fails closed: no credentials are ever written to a connection whose TLS
 * is not up and verified, and nothing from before TLS is kept. */
#include "imap_upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_capability.h"
#include "log.h"

/* Tags sealpost uses for its own commands to the provider. */
#define IMAP_UPSTREAM_TAG_CAPABILITY "sp1"
#define IMAP_UPSTREAM_TAG_STARTTLS "sp2"
#define IMAP_UPSTREAM_TAG_CAPABILITY_TLS "sp3"

int imap_upstream_read_line(conn *c, size_t max_line, const uint8_t **line_r,
			    size_t *len_r, const char **error_r)
{
	imap_framer f;
	/* max_literal 0: any literal before login is a protocol error. */
	imap_framer_init(&f, max_line, 0);
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(c, &len);
		imap_frame fr;
		const char *error;
		imap_parse_result r = imap_framer_next(&f, data, len, &fr, &error);
		if (r == IMAP_PARSE_ERROR) {
			*error_r = strcmp(error, "literal too large") == 0 ?
				"unexpected literal" : error;
			return -1;
		}
		if (r == IMAP_PARSE_DONE) {
			if (!fr.line_end) {
				*error_r = "unexpected literal";
				return -1;
			}
			*line_r = fr.data;
			*len_r = fr.len;
			return 1;
		}
		if (upstream_setup_fill(c, error_r) < 0)
			return -1;
	}
}

void imap_upstream_note_caps(const uint8_t *line, size_t len, char **caps)
{
	imap_response resp;
	const char *error;
	if (imap_parser_response(line, len, &resp, &error) < 0)
		return;
	const uint8_t *list;
	size_t list_len;
	if (resp.kind == IMAP_RESP_UNTAGGED && resp.status == IMAP_STATUS_NONE &&
	    strcmp(resp.keyword, "CAPABILITY") == 0) {
		list = line + resp.args_pos;
		list_len = len - resp.args_pos;
		while (list_len > 0 && (list[list_len - 1] == '\n' || list[list_len - 1] == '\r'))
			list_len--;
	} else if (resp.status != IMAP_STATUS_NONE && resp.code_args != NULL &&
		   imap_response_code_is(&resp, "CAPABILITY")) {
		list = resp.code_args;
		list_len = resp.code_args_len;
	} else {
		return;
	}
	char *copy = malloc(list_len + 1);
	if (copy == NULL)
		return;
	/* Kept as text for imap_capability_*; a NUL would cut it short,
	 * which only removes capabilities. */
	memcpy(copy, list, list_len);
	copy[list_len] = '\0';
	free(*caps);
	*caps = copy;
}

/* Sends "tag command" and reads until the tagged reply, collecting
 * capabilities on the way. Untagged data is otherwise dropped: before
 * login nothing the provider says goes to the client. Returns the status,
 * or IMAP_STATUS_NONE after upstream_setup_fail(). */
static imap_status imap_upstream_simple_command(upstream_setup *u,
						const char *tag,
						const char *command)
{
	if (conn_printf(u->c, "%s %s\r\n", tag, command) < 0 || conn_flush(u->c) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_LOST, "sending %s to the provider: %s",
				    command, conn_last_error(u->c));
		return IMAP_STATUS_NONE;
	}
	for (;;) {
		const uint8_t *line;
		size_t len;
		const char *error;
		if (imap_upstream_read_line(u->c, u->env->cfg->limits.max_line,
					    &line, &len, &error) < 0) {
			upstream_setup_fail(u, UPSTREAM_SETUP_LOST,
					    "reading the provider's reply to %s: %s",
					    command, error);
			return IMAP_STATUS_NONE;
		}
		imap_response resp;
		if (imap_parser_response(line, len, &resp, &error) < 0) {
			upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
					    "invalid reply from the provider to %s: %s",
					    command, error);
			return IMAP_STATUS_NONE;
		}
		imap_upstream_note_caps(line, len, &u->caps);
		if (resp.kind == IMAP_RESP_UNTAGGED && resp.status == IMAP_STATUS_BYE) {
			upstream_setup_fail(u, UPSTREAM_SETUP_LOST,
					    "the provider closed the connection (BYE)");
			return IMAP_STATUS_NONE;
		}
		if (resp.kind == IMAP_RESP_CONTINUATION) {
			upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
					    "unexpected continuation from the provider to %s",
					    command);
			return IMAP_STATUS_NONE;
		}
		if (resp.kind == IMAP_RESP_TAGGED) {
			bool ours = resp.tag_len == strlen(tag) &&
				memcmp(resp.tag, tag, resp.tag_len) == 0;
			conn_consume(u->c, len);
			if (!ours) {
				upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
						    "unexpected tag from the provider");
				return IMAP_STATUS_NONE;
			}
			return resp.status;
		}
		conn_consume(u->c, len);
	}
}

static int imap_upstream_greeting(upstream_setup *u)
{
	const uint8_t *line;
	size_t len;
	const char *error;
	if (imap_upstream_read_line(u->c, u->env->cfg->limits.max_line, &line, &len,
				    &error) < 0) {
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
				    "no greeting from the provider: %s", error);
		return -1;
	}
	imap_response resp;
	if (imap_parser_response(line, len, &resp, &error) < 0 ||
	    resp.kind != IMAP_RESP_UNTAGGED) {
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
				    "the provider's greeting is not IMAP");
		return -1;
	}
	switch (resp.status) {
	case IMAP_STATUS_OK:
		imap_upstream_note_caps(line, len, &u->caps);
		conn_consume(u->c, len);
		return 0;
	case IMAP_STATUS_BYE:
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
				    "the provider refused the connection (BYE)");
		return -1;
	case IMAP_STATUS_PREAUTH:
		/* Someone else's session, never one this client logged in to. */
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
				    "the provider greeted with PREAUTH");
		return -1;
	default:
		upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
				    "the provider's greeting is not IMAP");
		return -1;
	}
}

static int imap_upstream_starttls(upstream_setup *u)
{
	const config_upstream *up = &u->env->account->imap_upstream;
	if (u->caps == NULL &&
	    imap_upstream_simple_command(u, IMAP_UPSTREAM_TAG_CAPABILITY,
					 "CAPABILITY") != IMAP_STATUS_OK) {
		if (u->failure == UPSTREAM_SETUP_OK)
			upstream_setup_fail(u, UPSTREAM_SETUP_PROTOCOL,
					    "the provider refused CAPABILITY");
		return -1;
	}
	if (u->caps == NULL || !imap_capability_has(u->caps, "STARTTLS")) {
		upstream_setup_fail(u, UPSTREAM_SETUP_NO_STARTTLS,
				    "the provider %s:%d does not offer STARTTLS",
				    up->host, up->port);
		return -1;
	}
	log_info(u->env->id, "upstream STARTTLS", "%s:%d", up->host, up->port);
	imap_status status = imap_upstream_simple_command(u, IMAP_UPSTREAM_TAG_STARTTLS,
							  "STARTTLS");
	if (status != IMAP_STATUS_OK) {
		if (u->failure == UPSTREAM_SETUP_OK)
			upstream_setup_fail(u, UPSTREAM_SETUP_STARTTLS_REFUSED,
					    "the provider %s:%d refused STARTTLS",
					    up->host, up->port);
		return -1;
	}
	free(u->caps);
	u->caps = NULL;
	return upstream_setup_starttls(u, "STARTTLS");
}

conn *imap_upstream_connect(const session_env *env, char **caps_r,
			    upstream_setup_failure *failure_r, char *error,
			    size_t error_size)
{
	const config_upstream *up = &env->account->imap_upstream;
	upstream_setup u;
	*caps_r = NULL;
	if (upstream_setup_connect(&u, env, up, "IMAP", "STARTTLS", error, error_size) < 0) {
		*failure_r = u.failure;
		return NULL;
	}
	if (imap_upstream_greeting(&u) < 0 ||
	    (up->tls == UPSTREAM_TLS_STARTTLS && imap_upstream_starttls(&u) < 0))
		goto fail;
	if (u.caps == NULL || up->tls == UPSTREAM_TLS_STARTTLS) {
		free(u.caps);
		u.caps = NULL;
		if (imap_upstream_simple_command(&u, IMAP_UPSTREAM_TAG_CAPABILITY_TLS,
						 "CAPABILITY") != IMAP_STATUS_OK) {
			if (u.failure == UPSTREAM_SETUP_OK)
				upstream_setup_fail(&u, UPSTREAM_SETUP_PROTOCOL,
						     "the provider refused CAPABILITY");
			goto fail;
		}
	}
	if (u.caps == NULL) {
		u.caps = strdup("IMAP4rev1");
		if (u.caps == NULL) {
			upstream_setup_fail(&u, UPSTREAM_SETUP_PROTOCOL, "out of memory");
			goto fail;
		}
	}
	*caps_r = u.caps;
	return upstream_setup_finish(&u, true, failure_r);
fail:
	free(u.caps);
	return upstream_setup_finish(&u, false, failure_r);
}

static bool imap_upstream_quotable(const uint8_t *s, size_t len)
{
	if (len > 1024)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] >= 0x7f)
			return false;
	}
	return true;
}

int imap_upstream_write_astring(conn *c, const uint8_t *s, size_t len,
				bool literal_plus, bool *sync_literal_r)
{
	*sync_literal_r = false;
	if (imap_upstream_quotable(s, len)) {
		char buf[2 * 1024 + 3];
		size_t n = 0;
		buf[n++] = '"';
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '"' || s[i] == '\\')
				buf[n++] = '\\';
			buf[n++] = (char)s[i];
		}
		buf[n++] = '"';
		return conn_write(c, buf, n);
	}
	if (literal_plus) {
		if (conn_printf(c, "{%zu+}\r\n", len) < 0)
			return -1;
		return conn_write(c, s, len);
	}
	*sync_literal_r = true;
	return conn_printf(c, "{%zu}\r\n", len);
}
