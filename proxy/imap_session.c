/* imap_session: the client side of an IMAP session. sealpost greets the
 * client itself, answers the few commands allowed before login, proxies
 * LOGIN/AUTHENTICATE to the provider, then hands over to imap_relay. */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap_capability.h"
#include "imap_parser.h"
#include "imap_relay.h"
#include "imap_upstream.h"
#include "log.h"
#include "login_session.h"

/* A command before login, literals included, is small: a user name, a
 * password, a SASL message. */
#define IMAP_PREAUTH_MAX 8192
/* Invalid or not-yet-allowed commands before a client is sent away. */
#define IMAP_PREAUTH_MAX_ERRORS 10
/* Failed logins allowed on one connection before it is closed: slows
 * password guessing through sealpost (the provider limits too). */
#define IMAP_MAX_AUTH_FAILURES 5

static const char *const imap_session_state_names[] = {
	[LOGIN_SESSION_GREETING] = "greeting",
	[LOGIN_SESSION_BEFORE_LOGIN] = "not authenticated",
	[LOGIN_SESSION_AUTHENTICATING] = "authenticating",
	[LOGIN_SESSION_LOGGED_IN] = "relaying",
	[LOGIN_SESSION_CLOSING] = "closing",
};

typedef struct {
	login_session ls;		/* the client, the provider, the end */
	char *upstream_caps;		/* provider's, after TLS, unfiltered */
	unsigned errors;
	unsigned auth_failures;

	/* The command being read, literals inline. May hold a password:
	 * wiped after each command. */
	uint8_t cmd[IMAP_PREAUTH_MAX];
	size_t cmd_len;
	imap_command head;
	char tag[IMAP_TAG_MAX + 1];

	/* Decoded LOGIN arguments, wiped after use. */
	uint8_t user[IMAP_PREAUTH_MAX];
	size_t user_len;
	uint8_t pass[IMAP_PREAUTH_MAX];
	size_t pass_len;
	const uint8_t *mech, *ir;
	size_t mech_len, ir_len;

	/* What the provider said during login that the client will get. */
	char *login_caps;
} imap_session;

static void imap_session_wipe(void *p, size_t len)
{
	explicit_bzero(p, len);
}

/* The one teardown: everything the session owns, and why it ended. */
static void imap_session_teardown(imap_session **sp)
{
	imap_session *s = *sp;
	login_session_close(&s->ls);
	free(s->upstream_caps);
	free(s->login_caps);
	imap_session_wipe(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

/* The capabilities the client sees before login. */
static int imap_session_write_caps(imap_session *s, const char *prefix,
				   const char *suffix)
{
	/* Without a provider: what sealpost itself handles before login. */
	const char *caps = s->upstream_caps != NULL ? s->upstream_caps :
		"IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN";
	imap_capability_context ctx = {
		.pre_auth = true,
		.client_tls = conn_is_tls(s->ls.client),
		.plaintext_auth_allowed = login_session_plaintext_allowed(&s->ls),
	};
	size_t size = strlen(caps) + 64;
	char *out = malloc(size);
	if (out == NULL)
		return -1;
	int ret = -1;
	if (imap_capability_filter((const uint8_t *)caps, strlen(caps), &ctx, out, size) >= 0)
		ret = conn_printf(s->ls.client, "%s%s%s", prefix, out, suffix);
	free(out);
	return ret;
}

/* ---- reading client input before login ----------------------------------- */

/* Waits for client input up to the idle timeout. 1 got bytes, -1 gone. */
static int imap_session_client_fill(imap_session *s)
{
	login_session_wait_idle(&s->ls, true);
	ssize_t n = conn_fill(s->ls.client);
	login_session_wait_idle(&s->ls, false);
	if (n > 0)
		return 1;
	return login_session_read_failed(&s->ls, n == 0,
					 "* BYE Idle for too long, closing the connection.\r\n");
}

/* Reads one whole logical line into s->cmd, answering "+" to synchronizing
 * literals (when allowed). 0 done, -1 the session ends (reason set). */
static int imap_session_read_line(imap_session *s, bool allow_literals)
{
	imap_framer f;
	imap_framer_init(&f, IMAP_PREAUTH_MAX, allow_literals ? IMAP_PREAUTH_MAX : 0);
	imap_session_wipe(s->cmd, s->cmd_len);
	s->cmd_len = 0;
	for (;;) {
		size_t len;
		const uint8_t *data = conn_input(s->ls.client, &len);
		imap_frame fr;
		const char *error;
		imap_parse_result ret = imap_framer_next(&f, data, len, &fr, &error);
		if (ret == IMAP_PARSE_MORE) {
			if (imap_session_client_fill(s) < 0)
				return -1;
			continue;
		}
		if (ret == IMAP_PARSE_ERROR || s->cmd_len + fr.len > sizeof(s->cmd) ||
		    (!allow_literals && fr.type == IMAP_FRAME_TEXT && !fr.line_end)) {
			if (ret != IMAP_PARSE_ERROR)
				error = !allow_literals && !fr.line_end ?
					"unexpected literal" : "line too long";
			login_session_reply(&s->ls, "* BYE %s before login (limit %u bytes), closing the connection.\r\n",
					    strcmp(error, "literal too large") == 0 ? "Literal too large" :
					    strcmp(error, "line too long") == 0 ? "Command too long" :
					    "Invalid command", IMAP_PREAUTH_MAX);
			login_session_set_end(&s->ls, "client protocol error before login: %s",
					      error);
			s->ls.client_error = true;
			return -1;
		}
		memcpy(s->cmd + s->cmd_len, fr.data, fr.len);
		s->cmd_len += fr.len;
		conn_consume(s->ls.client, fr.len);
		if (fr.type == IMAP_FRAME_TEXT) {
			if (fr.line_end)
				return 0;
			if (fr.literal_sync &&
			    login_session_reply(&s->ls, "+ Ready for literal data.\r\n") < 0)
				return -1;
		}
	}
}

/* ---- the provider connection -------------------------------------------- */

static void imap_session_connect_upstream(void *owner)
{
	imap_session *s = owner;
	free(s->upstream_caps);
	s->upstream_caps = NULL;
	s->ls.upstream = imap_upstream_connect(s->ls.env, &s->upstream_caps,
					       &s->ls.upstream_failure, s->ls.upstream_error,
					       sizeof(s->ls.upstream_error));
}

/* Unsolicited before login: a BYE, or noise to drop. */
static bool imap_session_upstream_input_ok(void *owner)
{
	imap_session *s = owner;
	conn *up = s->ls.upstream;
	bool alive = true;
	ssize_t n = conn_fill_nowait(up);
	if (n == 0 || n == -1)
		alive = false;
	const uint8_t *line;
	size_t len;
	const char *error;
	while (alive && conn_input_len(up) > 0) {
		const uint8_t *data = conn_input(up, &len);
		if (memchr(data, '\n', len) == NULL)
			break;
		if (imap_upstream_read_line(up, s->ls.env->cfg->limits.max_line, &line, &len,
					    &error) < 0) {
			alive = false;
			break;
		}
		imap_response resp;
		if (imap_parser_response(line, len, &resp, &error) < 0 ||
		    resp.status == IMAP_STATUS_BYE)
			alive = false;
		conn_consume(up, len);
	}
	return alive;
}

static const login_session_protocol imap_session_protocol = {
	.state_names = imap_session_state_names,
	.starttls = "STARTTLS",
	.connect_upstream = imap_session_connect_upstream,
	.upstream_input_ok = imap_session_upstream_input_ok,
};

/* ---- login -------------------------------------------------------------- */

static int imap_session_login_reply(imap_session *s, login_session_result result,
				    const char *ok_line, size_t ok_len)
{
	switch (result) {
	case LOGIN_SESSION_OK: {
		/* The provider's tagged OK, its capability list filtered. */
		imap_capability_context ctx = { .pre_auth = false,
						.client_tls = conn_is_tls(s->ls.client) };
		int ret = 0;
		char *out = malloc(ok_len + 64);
		if (out == NULL)
			return -1;
		int n = imap_capability_rewrite_line((const uint8_t *)ok_line, ok_len, &ctx,
						     out, ok_len + 64);
		if (n == 0 && s->login_caps != NULL) {
			/* Capabilities came untagged: pass them on, filtered. */
			size_t size = strlen(s->login_caps) + 64;
			char *caps = malloc(size);
			if (caps != NULL &&
			    imap_capability_filter((const uint8_t *)s->login_caps,
						   strlen(s->login_caps), &ctx, caps, size) >= 0)
				ret = conn_printf(s->ls.client, "* CAPABILITY %s\r\n", caps);
			free(caps);
		}
		if (n < 0) {
			/* Never pass an unfiltered capability list on. */
			free(out);
			login_session_set_end(&s->ls, "cannot filter the provider's capabilities");
			return -1;
		}
		if (ret == 0)
			ret = n > 0 ? conn_write(s->ls.client, out, (size_t)n) :
				conn_write(s->ls.client, ok_line, ok_len);
		free(out);
		if (ret < 0 || conn_flush(s->ls.client) < 0)
			return login_session_write_failed(&s->ls);
		return 0;
	}
	case LOGIN_SESSION_UPSTREAM_UNAVAILABLE: {
		char text[sizeof(s->ls.upstream_error) + 96];
		return login_session_reply(&s->ls, "%s NO [UNAVAILABLE] %s\r\n", s->tag,
					   login_session_unavailable_text(&s->ls, text, sizeof(text)));
	}
	case LOGIN_SESSION_AUTH_FAILED:
		if (login_session_reply(&s->ls,
					"%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
					s->tag) < 0)
			return -1;
		if (++s->auth_failures >= IMAP_MAX_AUTH_FAILURES) {
			login_session_reply(&s->ls, "* BYE Too many failed logins.\r\n");
			login_session_set_end(&s->ls, "%u failed logins", s->auth_failures);
			return -1;
		}
		return 0;
	case LOGIN_SESSION_AUTH_TEMPORARY:
		return login_session_reply(&s->ls, "%s NO [UNAVAILABLE] Temporary authentication failure, try again later.\r\n",
					   s->tag);
	case LOGIN_SESSION_ABORTED:
		return login_session_reply(&s->ls, "%s BAD Authentication aborted.\r\n", s->tag);
	case LOGIN_SESSION_PRIVACY_REQUIRED:
		return login_session_reply(&s->ls, "%s NO [PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS first.\r\n",
					   s->tag);
	case LOGIN_SESSION_IN_USE:
	case LOGIN_SESSION_DELAY:
	case LOGIN_SESSION_MAILDROP:
		/* POP3's alone. */
	case LOGIN_SESSION_CLIENT_GONE:
		return -1;
	}
	return -1;
}

/* Reads the provider's reply to the login command tagged s->tag. A "+"
 * is returned to the caller (*continuation_r) with the line unconsumed. */
static login_session_result imap_session_login_result(imap_session *s,
						   const uint8_t **line_r, size_t *len_r,
						   bool *continuation_r)
{
	*continuation_r = false;
	for (;;) {
		const uint8_t *line;
		size_t len;
		const char *error;
		if (imap_upstream_read_line(s->ls.upstream, s->ls.env->cfg->limits.max_line,
					    &line, &len, &error) < 0) {
			login_session_drop_upstream(&s->ls, UPSTREAM_SETUP_LOST,
						    "reading the provider's login reply: %s", error);
			return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
		}
		imap_response resp;
		if (imap_parser_response(line, len, &resp, &error) < 0) {
			login_session_drop_upstream(&s->ls, UPSTREAM_SETUP_PROTOCOL,
						    "invalid login reply from the provider: %s", error);
			return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
		}
		if (resp.kind == IMAP_RESP_CONTINUATION) {
			*line_r = line;
			*len_r = len;
			*continuation_r = true;
			return LOGIN_SESSION_OK;
		}
		if (resp.kind == IMAP_RESP_UNTAGGED) {
			imap_upstream_note_caps(line, len, &s->login_caps);
			bool bye = resp.status == IMAP_STATUS_BYE;
			conn_consume(s->ls.upstream, len);
			if (bye) {
				login_session_drop_upstream(&s->ls, UPSTREAM_SETUP_LOST,
							    "the provider closed the connection during login");
				return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
			}
			continue;
		}
		if (resp.tag_len != strlen(s->tag) || memcmp(resp.tag, s->tag, resp.tag_len) != 0) {
			login_session_drop_upstream(&s->ls, UPSTREAM_SETUP_PROTOCOL,
						    "unexpected tag in the provider's login reply");
			return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
		}
		*line_r = line;
		*len_r = len;
		if (resp.status == IMAP_STATUS_OK)
			return LOGIN_SESSION_OK;
		/* Logged for the operator; the client gets sealpost's text. */
		log_info(s->ls.env->id, "login", "provider replied %s%s%.*s%s %.*s",
			 resp.keyword, resp.code != NULL ? " [" : "",
			 (int)resp.code_len, resp.code != NULL ? (const char *)resp.code : "",
			 resp.code != NULL ? "]" : "", (int)resp.text_len, (const char *)resp.text);
		login_session_result result = LOGIN_SESSION_AUTH_FAILED;
		if (resp.status == IMAP_STATUS_NO && imap_response_code_is(&resp, "UNAVAILABLE"))
			result = LOGIN_SESSION_AUTH_TEMPORARY;
		else if (resp.status == IMAP_STATUS_BAD)
			result = LOGIN_SESSION_ABORTED;
		conn_consume(s->ls.upstream, len);
		return result;
	}
}

static int imap_session_upstream_write_error(imap_session *s)
{
	login_session_drop_upstream(&s->ls, UPSTREAM_SETUP_LOST, "writing to the provider: %s",
				    conn_last_error(s->ls.upstream));
	return -1;
}

/* Writes one LOGIN argument; for a synchronizing literal waits for "+".
 * 0 written, 1 the provider answered with a tagged reply instead (*result_r),
 * -1 the provider is gone. */
static int imap_session_send_astring(imap_session *s, const uint8_t *value, size_t len,
				     login_session_result *result_r, const uint8_t **line_r,
				     size_t *len_r)
{
	bool sync;
	bool literal_plus = imap_capability_has(s->upstream_caps, "LITERAL+");
	if (imap_upstream_write_astring(s->ls.upstream, value, len, literal_plus, &sync) < 0)
		return imap_session_upstream_write_error(s);
	if (!sync)
		return 0;
	if (conn_flush(s->ls.upstream) < 0)
		return imap_session_upstream_write_error(s);
	bool cont;
	*result_r = imap_session_login_result(s, line_r, len_r, &cont);
	if (!cont)
		return *result_r == LOGIN_SESSION_UPSTREAM_UNAVAILABLE ? -1 : 1;
	conn_consume(s->ls.upstream, *len_r);
	if (conn_write(s->ls.upstream, value, len) < 0)
		return imap_session_upstream_write_error(s);
	return 0;
}

/* Sends LOGIN to the provider and reads its answer. *line_r is the
 * provider's tagged reply (unconsumed on success). */
static login_session_result imap_session_send_login(imap_session *s, const uint8_t **line_r,
						 size_t *len_r)
{
	login_session_result result;
	log_info(s->ls.env->id, "sending LOGIN to upstream", "user=%.*s password=%s",
		 (int)s->user_len, (const char *)s->user, LOG_SECRET);
	if (conn_printf(s->ls.upstream, "%s LOGIN ", s->tag) < 0) {
		imap_session_upstream_write_error(s);
		return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
	}
	int ret = imap_session_send_astring(s, s->user, s->user_len, &result, line_r, len_r);
	if (ret == 0 && conn_write_str(s->ls.upstream, " ") < 0)
		ret = imap_session_upstream_write_error(s);
	if (ret == 0)
		ret = imap_session_send_astring(s, s->pass, s->pass_len, &result, line_r, len_r);
	if (ret == 0 &&
	    (conn_write_str(s->ls.upstream, "\r\n") < 0 || conn_flush(s->ls.upstream) < 0))
		ret = imap_session_upstream_write_error(s);
	if (ret < 0)
		return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
	if (ret > 0)
		return result;
	bool cont;
	result = imap_session_login_result(s, line_r, len_r, &cont);
	if (cont) {
		login_session_drop_upstream(&s->ls, UPSTREAM_SETUP_PROTOCOL,
					    "unexpected continuation in the provider's LOGIN reply");
		return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
	}
	return result;
}

/* AUTHENTICATE: the SASL exchange is relayed line by line; sealpost adds
 * the initial response itself when the provider lacks SASL-IR. */
static login_session_result imap_session_send_authenticate(imap_session *s,
							const uint8_t **line_r,
							size_t *len_r)
{
	bool hold_ir = s->ir != NULL && !imap_capability_has(s->upstream_caps, "SASL-IR");
	log_info(s->ls.env->id, "sending AUTHENTICATE to upstream", "mechanism=%.*s%s%s",
		 (int)s->mech_len, (const char *)s->mech,
		 s->ir != NULL ? " initial-response=" : "", s->ir != NULL ? LOG_SECRET : "");
	int ret;
	if (s->ir != NULL && !hold_ir)
		ret = conn_printf(s->ls.upstream, "%s AUTHENTICATE %.*s %.*s\r\n", s->tag,
				  (int)s->mech_len, (const char *)s->mech,
				  (int)s->ir_len, (const char *)s->ir);
	else
		ret = conn_printf(s->ls.upstream, "%s AUTHENTICATE %.*s\r\n", s->tag,
				  (int)s->mech_len, (const char *)s->mech);
	if (ret < 0 || conn_flush(s->ls.upstream) < 0) {
		imap_session_upstream_write_error(s);
		return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
	}
	/* s->cmd is reused for the client's SASL lines: keep the initial
	 * response elsewhere while it is still needed. */
	char ir[IMAP_PREAUTH_MAX];
	size_t ir_len = 0;
	if (hold_ir) {
		ir_len = s->ir_len == 1 && s->ir[0] == '=' ? 0 : s->ir_len;
		memcpy(ir, s->ir, ir_len);
	}
	s->mech = s->ir = NULL;
	login_session_result result;
	for (;;) {
		bool cont;
		result = imap_session_login_result(s, line_r, len_r, &cont);
		if (!cont)
			break;
		if (hold_ir) {
			conn_consume(s->ls.upstream, *len_r);
			hold_ir = false;
			if (conn_write(s->ls.upstream, ir, ir_len) < 0 ||
			    conn_write_str(s->ls.upstream, "\r\n") < 0 || conn_flush(s->ls.upstream) < 0) {
				imap_session_upstream_write_error(s);
				result = LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
				break;
			}
			continue;
		}
		/* A challenge: to the client as it is, its answer back. */
		if (conn_write(s->ls.client, *line_r, *len_r) < 0 || conn_flush(s->ls.client) < 0) {
			login_session_write_failed(&s->ls);
			result = LOGIN_SESSION_CLIENT_GONE;
			break;
		}
		conn_consume(s->ls.upstream, *len_r);
		if (imap_session_read_line(s, false) < 0) {
			result = LOGIN_SESSION_CLIENT_GONE;
			break;
		}
		if (conn_write(s->ls.upstream, s->cmd, s->cmd_len) < 0 || conn_flush(s->ls.upstream) < 0) {
			imap_session_upstream_write_error(s);
			result = LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
			break;
		}
	}
	imap_session_wipe(ir, sizeof(ir));
	return result;
}

/* 1 logged in (relay next), 0 go on reading commands, -1 end. */
static int imap_session_login(imap_session *s, bool authenticate)
{
	login_session_result result;
	const uint8_t *line = NULL;
	size_t len = 0;
	free(s->login_caps);
	s->login_caps = NULL;
	if (!login_session_login_allowed(&s->ls)) {
		result = LOGIN_SESSION_PRIVACY_REQUIRED;
	} else if (!login_session_upstream_ready(&s->ls)) {
		log_warn(s->ls.env->id, authenticate ? "AUTHENTICATE" : "LOGIN",
			 "refused, provider unavailable: %s", s->ls.upstream_error);
		result = LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
	} else {
		login_session_enter_state(&s->ls, LOGIN_SESSION_AUTHENTICATING);
		result = authenticate ? imap_session_send_authenticate(s, &line, &len) :
			imap_session_send_login(s, &line, &len);
		login_session_enter_state(&s->ls, result == LOGIN_SESSION_OK ?
					  LOGIN_SESSION_LOGGED_IN : LOGIN_SESSION_BEFORE_LOGIN);
	}
	imap_session_wipe(s->pass, sizeof(s->pass));
	s->pass_len = 0;
	if (result == LOGIN_SESSION_OK) {
		log_info(s->ls.env->id, "logged in", "%s%.*s",
			 authenticate ? "via AUTHENTICATE" : "user=",
			 authenticate ? 0 : (int)s->user_len, (const char *)s->user);
		int ret = imap_session_login_reply(s, result, (const char *)line, len);
		conn_consume(s->ls.upstream, len);
		return ret < 0 ? -1 : 1;
	}
	if (result != LOGIN_SESSION_CLIENT_GONE)
		log_info(s->ls.env->id, authenticate ? "AUTHENTICATE" : "LOGIN", "failed: %s",
			 login_session_result_name(result));
	return imap_session_login_reply(s, result, NULL, 0) < 0 ? -1 : 0;
}

/* ---- commands before login ---------------------------------------------
 * check_ only validates (no side effects, BAD on failure); proceed_ acts
 * and returns 1 logged in, 0 continue, -1 end. */

typedef struct {
	const char *name;
	int (*check)(imap_session *s, const char **error_r);
	int (*proceed)(imap_session *s);
} imap_session_command;

static int imap_session_check_no_args(imap_session *s, const char **error_r)
{
	imap_tokenizer t;
	imap_tokenizer_init(&t, s->cmd, s->cmd_len, 0);
	t.pos = s->head.args_pos;
	if (!imap_tokenizer_at_eol(&t)) {
		*error_r = "Unexpected arguments.";
		return -1;
	}
	return 0;
}

static int imap_session_check_any(imap_session *s, const char **error_r)
{
	(void)s;
	(void)error_r;
	return 0;
}

static int imap_session_check_login(imap_session *s, const char **error_r)
{
	const char *error;
	if (imap_parser_login_args(s->cmd, s->cmd_len, &s->head, s->user, sizeof(s->user),
				   &s->user_len, s->pass, sizeof(s->pass), &s->pass_len,
				   &error) < 0) {
		imap_session_wipe(s->pass, sizeof(s->pass));
		*error_r = "Invalid LOGIN arguments.";
		return -1;
	}
	return 0;
}

static int imap_session_check_authenticate(imap_session *s, const char **error_r)
{
	const char *error;
	if (imap_parser_authenticate_args(s->cmd, s->cmd_len, &s->head, &s->mech,
					  &s->mech_len, &s->ir, &s->ir_len, &error) < 0) {
		*error_r = "Invalid AUTHENTICATE arguments.";
		return -1;
	}
	return 0;
}

static int imap_session_proceed_capability(imap_session *s)
{
	if (imap_session_write_caps(s, "* CAPABILITY ", "\r\n") < 0)
		return -1;
	return login_session_reply(&s->ls, "%s OK Capability completed.\r\n", s->tag) < 0 ? -1 : 0;
}

static int imap_session_proceed_noop(imap_session *s)
{
	return login_session_reply(&s->ls, "%s OK NOOP completed.\r\n", s->tag) < 0 ? -1 : 0;
}

static int imap_session_proceed_id(imap_session *s)
{
	return login_session_reply(&s->ls,
				   "* ID (\"name\" \"sealpost\")\r\n%s OK ID completed.\r\n",
				   s->tag) < 0 ? -1 : 0;
}

static int imap_session_proceed_logout(imap_session *s)
{
	login_session_reply(&s->ls, "* BYE Logging out.\r\n%s OK Logout completed.\r\n", s->tag);
	login_session_set_end(&s->ls, "client logged out before login");
	return -1;
}

static int imap_session_proceed_starttls(imap_session *s)
{
	if (conn_is_tls(s->ls.client))
		return login_session_reply(&s->ls, "%s BAD TLS is already active.\r\n",
					   s->tag) < 0 ? -1 : 0;
	if (s->ls.env->tls_srv == NULL)
		return login_session_reply(&s->ls, "%s NO TLS is not available.\r\n",
					   s->tag) < 0 ? -1 : 0;
	if (login_session_reply(&s->ls, "%s OK Begin TLS negotiation now.\r\n", s->tag) < 0)
		return -1;
	return login_session_starttls(&s->ls);
}

static int imap_session_proceed_login(imap_session *s)
{
	return imap_session_login(s, false);
}

static int imap_session_proceed_authenticate(imap_session *s)
{
	return imap_session_login(s, true);
}

static const imap_session_command imap_session_commands[] = {
	{ "CAPABILITY", imap_session_check_no_args, imap_session_proceed_capability },
	{ "NOOP", imap_session_check_no_args, imap_session_proceed_noop },
	{ "ID", imap_session_check_any, imap_session_proceed_id },
	{ "LOGOUT", imap_session_check_no_args, imap_session_proceed_logout },
	{ "STARTTLS", imap_session_check_no_args, imap_session_proceed_starttls },
	{ "LOGIN", imap_session_check_login, imap_session_proceed_login },
	{ "AUTHENTICATE", imap_session_check_authenticate, imap_session_proceed_authenticate },
};

/* 1 logged in, 0 next command, -1 end. */
static int imap_session_command_dispatch(imap_session *s)
{
	const char *error;
	if (imap_parser_command(s->cmd, s->cmd_len, &s->head, &error) < 0) {
		s->tag[0] = '\0';
		if (++s->errors > IMAP_PREAUTH_MAX_ERRORS)
			goto too_many;
		return login_session_reply(&s->ls, "* BAD Invalid command: %s.\r\n",
					   error) < 0 ? -1 : 0;
	}
	memcpy(s->tag, s->head.tag, s->head.tag_len);
	s->tag[s->head.tag_len] = '\0';
	for (size_t i = 0; i < sizeof(imap_session_commands) / sizeof(imap_session_commands[0]); i++) {
		const imap_session_command *c = &imap_session_commands[i];
		if (strcmp(c->name, s->head.name) != 0)
			continue;
		if (c->check(s, &error) < 0) {
			if (++s->errors > IMAP_PREAUTH_MAX_ERRORS)
				goto too_many;
			return login_session_reply(&s->ls, "%s BAD %s\r\n", s->tag,
						   error) < 0 ? -1 : 0;
		}
		return c->proceed(s);
	}
	if (++s->errors > IMAP_PREAUTH_MAX_ERRORS)
		goto too_many;
	return login_session_reply(&s->ls, "%s BAD Log in first.\r\n", s->tag) < 0 ? -1 : 0;
too_many:
	login_session_reply(&s->ls, "* BYE Too many invalid commands.\r\n");
	login_session_set_end(&s->ls, "too many invalid commands before login");
	return -1;
}

/* ---- the session ---------------------------------------------------------- */

void imap_session_run(const session_env *env, int client_fd)
{
	imap_session *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		close(client_fd);
		log_error(env->id, "starting session", "out of memory");
		return;
	}
	if (login_session_open(&s->ls, &imap_session_protocol, s, env, client_fd) < 0)
		goto out;
	/* The provider's capabilities go into the greeting. Failing here is
	 * not fatal: the client learns why when it tries to log in. */
	login_session_connect_upstream(&s->ls);
	if (imap_session_write_caps(s, "* OK [CAPABILITY ", "] sealpost ready.\r\n") < 0 ||
	    conn_flush(s->ls.client) < 0) {
		login_session_write_failed(&s->ls);
		goto out;
	}
	login_session_enter_state(&s->ls, LOGIN_SESSION_BEFORE_LOGIN);
	for (;;) {
		if (imap_session_read_line(s, true) < 0)
			goto out;
		int ret = imap_session_command_dispatch(s);
		imap_session_wipe(s->cmd, s->cmd_len);
		s->cmd_len = 0;
		if (ret < 0)
			goto out;
		if (ret > 0)
			break;
	}
	imap_relay_result relay;
	imap_relay_run(env, s->ls.client, s->ls.upstream, &relay);
	s->ls.client_error = relay.client_error;
	login_session_set_end(&s->ls, "%s (%llu bytes from client, %llu from provider)",
			      relay.reason[0] != '\0' ? relay.reason : "relay ended",
			      (unsigned long long)relay.bytes_from_client,
			      (unsigned long long)relay.bytes_from_upstream);
out:
	imap_session_teardown(&s);
}
