/* pop3_session: the client side of a POP3 session. Before login sealpost
 * answers itself and relays USER/PASS and AUTH; after it, each command is
 * answered from the maildrop table (STAT, LIST, RETR and TOP of encrypted
 * messages) or passed to the provider (UIDL, DELE, RSET, NOOP, QUIT). */
#include "pop3_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "login_session.h"
#include "pop3_maildrop.h"
#include "pop3_parser.h"
#include "pop3_upstream.h"

/* The longest client line: commands are short (RFC 2449 says 255), SASL
 * responses can be longer. */
#define POP3_CLIENT_MAX_LINE 8192
/* Invalid or not-yet-allowed commands before a client is sent away. */
#define POP3_MAX_ERRORS 10
/* Failed logins allowed on one connection before it is closed. */
#define POP3_MAX_AUTH_FAILURES 5
/* Bytes of a view stuffed and written at a time. */
#define POP3_WRITE_CHUNK (64 * 1024)

static const char *const pop3_session_state_names[] = {
	[LOGIN_SESSION_GREETING] = "greeting",
	[LOGIN_SESSION_BEFORE_LOGIN] = "authorization",
	[LOGIN_SESSION_AUTHENTICATING] = "authenticating",
	[LOGIN_SESSION_LOGGED_IN] = "transaction",
	[LOGIN_SESSION_CLOSING] = "closing",
};

typedef struct {
	login_session ls;		/* the client, the provider, the end */
	char *upstream_caps;		/* provider's CAPA body, after TLS, unfiltered */
	unsigned errors;
	unsigned auth_failures;
	bool user_accepted;		/* the provider took USER; PASS may follow */
	bool quit;

	/* The command being handled. May hold a password: wiped after each. */
	uint8_t line[POP3_CLIENT_MAX_LINE];
	size_t line_len;
	pop3_command cmd;

	pop3_maildrop *md;
	char reason[320];		/* of a temporary failure */
} pop3_session;

static void pop3_session_wipe_line(pop3_session *s)
{
	explicit_bzero(s->line, sizeof(s->line));
	s->line_len = 0;
	memset(&s->cmd, 0, sizeof(s->cmd));
}

/* The one teardown. */
static void pop3_session_teardown(pop3_session **sp)
{
	pop3_session *s = *sp;
	login_session_close(&s->ls);
	pop3_maildrop_free(&s->md);
	g_free(s->upstream_caps);
	explicit_bzero(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

/* Reads one client line into s->line (CRLF stripped). 0, -1 the session
 * ends (reason set). */
static int pop3_session_read_line(pop3_session *s)
{
	pop3_session_wipe_line(s);
	login_session_wait_idle(&s->ls, true);
	const char *line;
	size_t len;
	int ret = conn_read_line(s->ls.client, POP3_CLIENT_MAX_LINE, &line, &len);
	login_session_wait_idle(&s->ls, false);
	if (ret == 1) {
		memcpy(s->line, line, len);
		s->line_len = len;
		conn_consume(s->ls.client, len);
		while (s->line_len > 0 && (s->line[s->line_len - 1] == '\n' ||
					   s->line[s->line_len - 1] == '\r'))
			s->line_len--;
		return 0;
	}
	if (ret == -2) {
		login_session_reply(&s->ls, "-ERR Line too long (limit %u bytes), closing the connection.\r\n",
				    POP3_CLIENT_MAX_LINE);
		login_session_set_end(&s->ls, "client protocol error: line too long");
		s->ls.client_error = true;
		return -1;
	}
	return login_session_read_failed(&s->ls, ret == 0,
					 "-ERR Idle for too long, closing the connection.\r\n");
}

/* ---- the provider connection -------------------------------------------- */

static void pop3_session_drop_upstream(pop3_session *s, upstream_setup_failure failure,
				       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* USER given on the connection that goes does not carry over. */
static void pop3_session_drop_upstream(pop3_session *s, upstream_setup_failure failure,
				       const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	s->user_accepted = false;
	login_session_drop_upstream_v(&s->ls, failure, fmt, args);
	va_end(args);
}

static void pop3_session_connect_upstream(void *owner)
{
	pop3_session *s = owner;
	g_free(s->upstream_caps);
	s->upstream_caps = NULL;
	s->user_accepted = false;
	s->ls.upstream = pop3_upstream_connect(s->ls.env, &s->upstream_caps,
					       &s->ls.upstream_failure, s->ls.upstream_error,
					       sizeof(s->ls.upstream_error));
}

/* POP3 servers say nothing unasked: anything is an end. (A fresh
 * connection is only made before USER: a PASS belongs to the connection
 * that took the USER.) */
static bool pop3_session_upstream_input_ok(void *owner)
{
	(void)owner;
	return false;
}

static const login_session_protocol pop3_session_protocol = {
	.state_names = pop3_session_state_names,
	.starttls = "STLS",
	.connect_upstream = pop3_session_connect_upstream,
	.upstream_input_ok = pop3_session_upstream_input_ok,
};

/* ---- login -------------------------------------------------------------- */

static int pop3_session_login_reply(pop3_session *s, login_session_result result)
{
	switch (result) {
	case LOGIN_SESSION_OK:
		return login_session_reply(&s->ls, "+OK Logged in.\r\n");
	case LOGIN_SESSION_UPSTREAM_UNAVAILABLE: {
		char text[sizeof(s->ls.upstream_error) + 96];
		return login_session_reply(&s->ls, "-ERR [SYS/TEMP] %s\r\n",
					   login_session_unavailable_text(&s->ls, text, sizeof(text)));
	}
	case LOGIN_SESSION_AUTH_FAILED:
		/* sealpost's own words: nobody probes which users exist. */
		return login_session_reply(&s->ls, "-ERR [AUTH] Authentication failed.\r\n");
	case LOGIN_SESSION_AUTH_TEMPORARY:
		return login_session_reply(&s->ls, "-ERR [SYS/TEMP] Temporary failure at the provider, try again later.\r\n");
	case LOGIN_SESSION_IN_USE:
		return login_session_reply(&s->ls, "-ERR [IN-USE] The mailbox is in use by another session.\r\n");
	case LOGIN_SESSION_DELAY:
		return login_session_reply(&s->ls, "-ERR [LOGIN-DELAY] The provider asks to wait before logging in again.\r\n");
	case LOGIN_SESSION_MAILDROP:
		return login_session_reply(&s->ls, "-ERR [SYS/TEMP] %s\r\n", s->reason);
	case LOGIN_SESSION_PRIVACY_REQUIRED:
		return login_session_reply(&s->ls, "-ERR [AUTH] Plaintext authentication is not allowed before STLS.\r\n");
	case LOGIN_SESSION_ABORTED:
		/* IMAP's alone. */
	case LOGIN_SESSION_CLIENT_GONE:
		return -1;
	}
	return -1;
}

/* The provider's -ERR to PASS or AUTH, as a result. */
static login_session_result pop3_session_auth_error(pop3_session *s, const pop3_response *resp)
{
	log_info(s->ls.env->id, "login", "provider replied -ERR%s%.*s%s %.*s",
		 resp->code != NULL ? " [" : "", (int)resp->code_len,
		 resp->code != NULL ? (const char *)resp->code : "", resp->code != NULL ? "]" : "",
		 (int)resp->text_len, (const char *)resp->text);
	if (pop3_parser_code_is(resp, "SYS/TEMP"))
		return LOGIN_SESSION_AUTH_TEMPORARY;
	if (pop3_parser_code_is(resp, "IN-USE"))
		return LOGIN_SESSION_IN_USE;
	if (pop3_parser_code_is(resp, "LOGIN-DELAY"))
		return LOGIN_SESSION_DELAY;
	return LOGIN_SESSION_AUTH_FAILED;
}

static login_session_result pop3_session_upstream_lost(pop3_session *s, const char *what,
						    const char *error)
{
	pop3_session_drop_upstream(s, UPSTREAM_SETUP_LOST, "%s: %s", what, error);
	return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
}

/* Sends line (command and CRLF) and reads the status. */
static login_session_result pop3_session_send_auth_line(pop3_session *s, const char *what,
						     const uint8_t *line, size_t len,
						     pop3_response *resp)
{
	const char *error;
	if (conn_write(s->ls.upstream, line, len) < 0 ||
	    conn_write_str(s->ls.upstream, "\r\n") < 0 || conn_flush(s->ls.upstream) < 0)
		return pop3_session_upstream_lost(s, what, conn_last_error(s->ls.upstream));
	if (pop3_upstream_read_status(s->ls.upstream, resp, &error) < 0)
		return pop3_session_upstream_lost(s, what, error);
	return LOGIN_SESSION_OK;
}

static login_session_result pop3_session_send_pass(pop3_session *s)
{
	log_info(s->ls.env->id, "sending PASS to upstream", "password=%s", LOG_SECRET);
	pop3_response resp;
	/* The line as the client sent it: "PASS " and the password. */
	login_session_result r = pop3_session_send_auth_line(s, "sending PASS to the provider",
							  s->line, s->line_len, &resp);
	s->user_accepted = false;
	if (r != LOGIN_SESSION_OK)
		return r;
	if (resp.status == POP3_RESP_OK)
		return LOGIN_SESSION_OK;
	if (resp.status == POP3_RESP_ERR)
		return pop3_session_auth_error(s, &resp);
	pop3_session_drop_upstream(s, UPSTREAM_SETUP_PROTOCOL, "unexpected reply to PASS");
	return LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
}

/* AUTH: the SASL exchange is relayed line by line. */
static login_session_result pop3_session_send_auth(pop3_session *s)
{
	log_info(s->ls.env->id, "sending AUTH to upstream", "mechanism=%.*s%s%s",
		 (int)s->cmd.arg_len[0], (const char *)s->cmd.args[0],
		 s->cmd.n_args > 1 ? " initial-response=" : "", s->cmd.n_args > 1 ? LOG_SECRET : "");
	pop3_response resp;
	login_session_result r = pop3_session_send_auth_line(s, "sending AUTH to the provider",
							  s->line, s->line_len, &resp);
	for (;;) {
		if (r != LOGIN_SESSION_OK)
			return r;
		if (resp.status == POP3_RESP_OK)
			return LOGIN_SESSION_OK;
		if (resp.status == POP3_RESP_ERR)
			return pop3_session_auth_error(s, &resp);
		/* A challenge: to the client, its answer back. */
		if (conn_write_str(s->ls.client, "+ ") < 0 ||
		    conn_write(s->ls.client, resp.text, resp.text_len) < 0 ||
		    conn_write_str(s->ls.client, "\r\n") < 0 || conn_flush(s->ls.client) < 0) {
			login_session_write_failed(&s->ls);
			return LOGIN_SESSION_CLIENT_GONE;
		}
		if (pop3_session_read_line(s) < 0)
			return LOGIN_SESSION_CLIENT_GONE;
		/* A SASL response is base64 or "*": anything else cancels. */
		for (size_t i = 0; i < s->line_len; i++) {
			if (s->line[i] < 0x20 || s->line[i] >= 0x7f) {
				s->line[0] = '*';
				s->line_len = 1;
				break;
			}
		}
		r = pop3_session_send_auth_line(s, "sending a SASL response to the provider",
						s->line, s->line_len, &resp);
	}
}

/* 1 logged in, 0 go on, -1 end. */
static int pop3_session_login(pop3_session *s, bool auth)
{
	login_session_result result;
	if (!login_session_login_allowed(&s->ls)) {
		result = LOGIN_SESSION_PRIVACY_REQUIRED;
	} else if (auth ? !login_session_upstream_ready(&s->ls) : s->ls.upstream == NULL) {
		result = LOGIN_SESSION_UPSTREAM_UNAVAILABLE;
	} else {
		login_session_enter_state(&s->ls, LOGIN_SESSION_AUTHENTICATING);
		result = auth ? pop3_session_send_auth(s) : pop3_session_send_pass(s);
		if (result == LOGIN_SESSION_OK) {
			int ret = pop3_maildrop_load(s->ls.env, s->ls.upstream, s->upstream_caps,
						     &s->md, s->reason, sizeof(s->reason));
			if (ret != 0) {
				/* Logged in upstream but unusable: that connection goes. */
				pop3_session_drop_upstream(s, UPSTREAM_SETUP_LOST,
							   "reading the message list: %s", s->reason);
				result = LOGIN_SESSION_MAILDROP;
			}
		}
		login_session_enter_state(&s->ls, result == LOGIN_SESSION_OK ?
					  LOGIN_SESSION_LOGGED_IN : LOGIN_SESSION_BEFORE_LOGIN);
	}
	pop3_session_wipe_line(s);
	if (result == LOGIN_SESSION_OK) {
		log_info(s->ls.env->id, "logged in", "%s", auth ? "via AUTH" : "via USER/PASS");
		return pop3_session_login_reply(s, result) < 0 ? -1 : 1;
	}
	if (result == LOGIN_SESSION_CLIENT_GONE)
		return -1;
	log_info(s->ls.env->id, auth ? "AUTH" : "PASS", "failed: %s",
		 login_session_result_name(result));
	if (pop3_session_login_reply(s, result) < 0)
		return -1;
	if (result == LOGIN_SESSION_AUTH_FAILED && ++s->auth_failures >= POP3_MAX_AUTH_FAILURES) {
		login_session_reply(&s->ls,
				    "-ERR Too many failed logins, closing the connection.\r\n");
		login_session_set_end(&s->ls, "too many failed logins");
		return -1;
	}
	return 0;
}

/* ---- commands before login ---------------------------------------------
 * check_ only validates (no side effects); proceed_ acts and returns
 * 1 logged in, 0 continue, -1 end. */

typedef struct {
	const char *name;
	int (*check)(pop3_session *s, const char **error_r);
	int (*proceed)(pop3_session *s);
} pop3_session_command;

static int pop3_session_check_no_args(pop3_session *s, const char **error_r)
{
	if (s->cmd.rest != NULL) {
		*error_r = "Unexpected arguments.";
		return -1;
	}
	return 0;
}

static int pop3_session_check_rest(pop3_session *s, const char **error_r)
{
	if (s->cmd.rest == NULL || s->cmd.rest_len == 0) {
		*error_r = "Missing argument.";
		return -1;
	}
	return 0;
}

static int pop3_session_check_auth(pop3_session *s, const char **error_r)
{
	if (s->cmd.n_args > 2) {
		*error_r = "Invalid AUTH arguments.";
		return -1;
	}
	return 0;
}

static int pop3_session_check_any(pop3_session *s, const char **error_r)
{
	(void)s;
	(void)error_r;
	return 0;
}

static int pop3_session_write_capa(pop3_session *s, bool authorized)
{
	pop3_parser_capa_context ctx = {
		.authorized = authorized,
		.client_tls = conn_is_tls(s->ls.client),
		.stls_available = s->ls.env->tls_srv != NULL,
		.login_allowed = login_session_login_allowed(&s->ls),
	};
	/* Without a provider: what sealpost itself handles before login. */
	char *caps = pop3_parser_filter_capa(s->upstream_caps != NULL ? s->upstream_caps :
					     "USER\r\n", &ctx);
	int ret = conn_write_str(s->ls.client, "+OK Capability list follows.\r\n");
	if (ret == 0)
		ret = conn_write_str(s->ls.client, caps);
	if (ret == 0)
		ret = conn_write_str(s->ls.client, ".\r\n");
	g_free(caps);
	if (ret < 0 || conn_flush(s->ls.client) < 0)
		return login_session_write_failed(&s->ls);
	return 0;
}

static int pop3_session_proceed_capa(pop3_session *s)
{
	return pop3_session_write_capa(s, false) < 0 ? -1 : 0;
}

static int pop3_session_proceed_quit(pop3_session *s)
{
	login_session_reply(&s->ls, "+OK Bye.\r\n");
	login_session_set_end(&s->ls, "client quit before login");
	return -1;
}

static int pop3_session_proceed_stls(pop3_session *s)
{
	if (conn_is_tls(s->ls.client))
		return login_session_reply(&s->ls, "-ERR TLS is already active.\r\n") < 0 ? -1 : 0;
	if (s->ls.env->tls_srv == NULL)
		return login_session_reply(&s->ls, "-ERR TLS is not available.\r\n") < 0 ? -1 : 0;
	if (login_session_reply(&s->ls, "+OK Begin TLS negotiation now.\r\n") < 0)
		return -1;
	/* USER given in the clear does not carry over: the provider
	 * connection that took it is dropped. */
	if (s->user_accepted) {
		conn_free(&s->ls.upstream);
		s->user_accepted = false;
	}
	return login_session_starttls(&s->ls);
}

static int pop3_session_proceed_user(pop3_session *s)
{
	if (!login_session_login_allowed(&s->ls))
		return pop3_session_login_reply(s, LOGIN_SESSION_PRIVACY_REQUIRED) < 0 ? -1 : 0;
	if (s->user_accepted) {
		/* A second USER starts over on a fresh connection. */
		conn_free(&s->ls.upstream);
		s->user_accepted = false;
	}
	if (!login_session_upstream_ready(&s->ls)) {
		log_warn(s->ls.env->id, "USER", "refused, provider unavailable: %s", s->ls.upstream_error);
		return pop3_session_login_reply(s, LOGIN_SESSION_UPSTREAM_UNAVAILABLE) < 0 ? -1 : 0;
	}
	log_info(s->ls.env->id, "sending USER to upstream", "user=%.*s", (int)s->cmd.rest_len,
		 (const char *)s->cmd.rest);
	pop3_response resp;
	login_session_result r = pop3_session_send_auth_line(s, "sending USER to the provider",
							  s->line, s->line_len, &resp);
	if (r != LOGIN_SESSION_OK)
		return pop3_session_login_reply(s, r) < 0 ? -1 : 0;
	if (resp.status != POP3_RESP_OK)
		return pop3_session_login_reply(s, pop3_session_auth_error(s, &resp)) < 0 ? -1 : 0;
	s->user_accepted = true;
	return login_session_reply(&s->ls, "+OK Send PASS.\r\n") < 0 ? -1 : 0;
}

static int pop3_session_proceed_pass(pop3_session *s)
{
	if (!s->user_accepted && login_session_login_allowed(&s->ls))
		return login_session_reply(&s->ls, "-ERR Send USER first.\r\n") < 0 ? -1 : 0;
	return pop3_session_login(s, false);
}

static int pop3_session_proceed_apop(pop3_session *s)
{
	/* APOP needs the provider's greeting secret and an MD5 of the
	 * password: sealpost offers neither. */
	return login_session_reply(&s->ls, "-ERR APOP is not supported; use USER/PASS or AUTH over TLS.\r\n") < 0 ? -1 : 0;
}

static int pop3_session_proceed_auth(pop3_session *s)
{
	if (s->cmd.n_args == 0) {
		/* The mechanism list (the form clients probe with). */
		const char *caps = s->upstream_caps;
		int ret = conn_write_str(s->ls.client, "+OK\r\n");
		const char *p = caps;
		while (ret == 0 && p != NULL && *p != '\0' && login_session_login_allowed(&s->ls)) {
			const char *nl = strchr(p, '\n');
			size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
			while (len > 0 && p[len - 1] == '\r')
				len--;
			if (len > 5 && g_ascii_strncasecmp(p, "SASL ", 5) == 0) {
				for (const char *w = p + 5; w < p + len && ret == 0;) {
					size_t n = strcspn(w, " \r\n");
					if (w + n > p + len)
						n = (size_t)(p + len - w);
					bool clean = n > 0;
					for (size_t k = 0; k < n; k++)
						clean &= g_ascii_isalnum(w[k]) || w[k] == '-' || w[k] == '_';
					if (clean)
						ret = conn_printf(s->ls.client, "%.*s\r\n",
								  (int)n, w);
					w += n + 1;
				}
			}
			p = nl != NULL ? nl + 1 : NULL;
		}
		if (ret == 0)
			ret = conn_write_str(s->ls.client, ".\r\n");
		if (ret < 0 || conn_flush(s->ls.client) < 0)
			return login_session_write_failed(&s->ls);
		return 0;
	}
	return pop3_session_login(s, true);
}

static const pop3_session_command pop3_session_commands[] = {
	{ "CAPA", pop3_session_check_no_args, pop3_session_proceed_capa },
	{ "QUIT", pop3_session_check_no_args, pop3_session_proceed_quit },
	{ "STLS", pop3_session_check_no_args, pop3_session_proceed_stls },
	{ "USER", pop3_session_check_rest, pop3_session_proceed_user },
	{ "PASS", pop3_session_check_rest, pop3_session_proceed_pass },
	{ "APOP", pop3_session_check_any, pop3_session_proceed_apop },
	{ "AUTH", pop3_session_check_auth, pop3_session_proceed_auth },
};

/* 1 logged in, 0 next command, -1 end. */
static int pop3_session_command_dispatch(pop3_session *s)
{
	const char *error;
	if (pop3_parser_command(s->line, s->line_len, &s->cmd, &error) < 0) {
		if (++s->errors > POP3_MAX_ERRORS)
			goto too_many;
		return login_session_reply(&s->ls, "-ERR Invalid command: %s.\r\n",
					   error) < 0 ? -1 : 0;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(pop3_session_commands); i++) {
		const pop3_session_command *c = &pop3_session_commands[i];
		if (strcmp(c->name, s->cmd.name) != 0)
			continue;
		if (c->check(s, &error) < 0) {
			if (++s->errors > POP3_MAX_ERRORS)
				goto too_many;
			return login_session_reply(&s->ls, "-ERR %s\r\n", error) < 0 ? -1 : 0;
		}
		return c->proceed(s);
	}
	if (++s->errors > POP3_MAX_ERRORS)
		goto too_many;
	return login_session_reply(&s->ls, "-ERR Log in first.\r\n") < 0 ? -1 : 0;
too_many:
	login_session_reply(&s->ls, "-ERR Too many invalid commands.\r\n");
	login_session_set_end(&s->ls, "too many invalid commands before login");
	return -1;
}

/* ---- the transaction state ----------------------------------------------- */

/* The provider broke: the client is told, the session ends. */
static int pop3_session_lost(pop3_session *s)
{
	login_session_reply(&s->ls, "-ERR [SYS/TEMP] Lost the connection to the provider: %s\r\n",
			    s->reason);
	login_session_set_end(&s->ls, "provider connection lost: %s", s->reason);
	return -1;
}

/* A maildrop result: 0 go on, 1 replied with [SYS/TEMP], -1 end. */
static int pop3_session_maildrop_result(pop3_session *s, int ret)
{
	if (ret == 0)
		return 0;
	if (ret < 0)
		return pop3_session_lost(s);
	return login_session_reply(&s->ls, "-ERR [SYS/TEMP] Cannot show the message now: %s\r\n",
				   s->reason) < 0 ? -1 : 1;
}

/* Message number argument i; replies -ERR when it names no message. 1 ok,
 * 0 replied, -1 end. */
static int pop3_session_msg_arg(pop3_session *s, size_t i, uint32_t *n_r)
{
	uint64_t n;
	if (s->cmd.n_args <= i ||
	    pop3_parser_number(s->cmd.args[i], s->cmd.arg_len[i], UINT32_MAX, &n) < 0)
		return login_session_reply(&s->ls, "-ERR Invalid message number.\r\n") < 0 ? -1 : 0;
	if (!pop3_maildrop_exists(s->md, n))
		return login_session_reply(&s->ls,
					   "-ERR There is no such message.\r\n") < 0 ? -1 : 0;
	*n_r = (uint32_t)n;
	return 1;
}

/* Writes the provider's status line on to the client. */
static int pop3_session_relay_status(pop3_session *s, const pop3_response *resp)
{
	int ret = conn_write_str(s->ls.client, resp->status == POP3_RESP_OK ? "+OK" : "-ERR");
	if (ret == 0 && resp->code != NULL)
		ret = conn_printf(s->ls.client, " [%.*s]", (int)resp->code_len,
				  (const char *)resp->code);
	if (ret == 0 && resp->text_len > 0)
		ret = conn_printf(s->ls.client, " %.*s", (int)resp->text_len, (const char *)resp->text);
	if (ret == 0)
		ret = conn_write_str(s->ls.client, "\r\n");
	if (ret < 0)
		return login_session_write_failed(&s->ls);
	return 0;
}

/* Sends command upstream and relays its reply (a multi-line body too when
 * multiline and +OK). *ok_r: the provider said +OK. 0, -1 end. */
static int pop3_session_pass_through(pop3_session *s, const char *command, bool multiline,
				     bool *ok_r)
{
	const char *error;
	pop3_response resp;
	*ok_r = false;
	if (conn_write_str(s->ls.upstream, command) < 0 || conn_flush(s->ls.upstream) < 0) {
		snprintf(s->reason, sizeof(s->reason), "%s", conn_last_error(s->ls.upstream));
		return pop3_session_lost(s);
	}
	if (pop3_upstream_read_status(s->ls.upstream, &resp, &error) < 0 ||
	    resp.status == POP3_RESP_CONTINUE) {
		snprintf(s->reason, sizeof(s->reason), "%s",
			 resp.status == POP3_RESP_CONTINUE ? "unexpected continuation" : error);
		return pop3_session_lost(s);
	}
	if (pop3_session_relay_status(s, &resp) < 0)
		return -1;
	*ok_r = resp.status == POP3_RESP_OK;
	if (*ok_r && multiline) {
		bool client_failed;
		if (pop3_upstream_relay_body(s->ls.upstream, s->ls.client, &client_failed,
					     &error) < 0) {
			if (client_failed) {
				login_session_set_end(&s->ls, "writing to the client: %s", error);
				return -1;
			}
			snprintf(s->reason, sizeof(s->reason), "%s", error);
			login_session_set_end(&s->ls, "provider connection lost: %s", error);
			return -1;
		}
	}
	if (conn_flush(s->ls.client) < 0)
		return login_session_write_failed(&s->ls);
	return 0;
}

/* Writes len bytes of view as a multi-line body after status. */
static int pop3_session_write_view(pop3_session *s, const char *status, const uint8_t *view,
				   size_t len)
{
	if (conn_write_str(s->ls.client, status) < 0)
		goto fail;
	pop3_parser_stuffer st;
	pop3_parser_stuff_init(&st);
	GByteArray *out = g_byte_array_sized_new(POP3_WRITE_CHUNK + POP3_WRITE_CHUNK / 8);
	for (size_t pos = 0; pos < len; pos += POP3_WRITE_CHUNK) {
		size_t n = len - pos < POP3_WRITE_CHUNK ? len - pos : POP3_WRITE_CHUNK;
		g_byte_array_set_size(out, 0);
		pop3_parser_stuff(&st, view + pos, n, out);
		if (conn_write(s->ls.client, out->data, out->len) < 0) {
			g_byte_array_unref(out);
			goto fail;
		}
	}
	g_byte_array_set_size(out, 0);
	pop3_parser_stuff_finish(&st, out);
	int ret = conn_write(s->ls.client, out->data, out->len);
	g_byte_array_unref(out);
	if (ret < 0 || conn_flush(s->ls.client) < 0)
		goto fail;
	return 0;
fail:
	return login_session_write_failed(&s->ls);
}

static int pop3_session_stat(pop3_session *s)
{
	uint32_t count = pop3_maildrop_count(s->md);
	int ret = pop3_session_maildrop_result(s, pop3_maildrop_settle(s->md, 1, count, s->reason,
								       sizeof(s->reason)));
	if (ret != 0)
		return ret < 0 ? -1 : 0;
	uint64_t n = 0, total = 0;
	for (uint32_t i = 1; i <= count; i++) {
		if (!pop3_maildrop_exists(s->md, i))
			continue;
		n++;
		total += pop3_maildrop_size(s->md, i);
	}
	return login_session_reply(&s->ls, "+OK %llu %llu\r\n", (unsigned long long)n,
				   (unsigned long long)total) < 0 ? -1 : 0;
}

static int pop3_session_list(pop3_session *s)
{
	uint32_t n;
	if (s->cmd.n_args > 1)
		return login_session_reply(&s->ls, "-ERR Invalid arguments.\r\n") < 0 ? -1 : 0;
	if (s->cmd.n_args == 1) {
		int r = pop3_session_msg_arg(s, 0, &n);
		if (r <= 0)
			return r;
		r = pop3_session_maildrop_result(s, pop3_maildrop_settle(s->md, n, n, s->reason,
									 sizeof(s->reason)));
		if (r != 0)
			return r < 0 ? -1 : 0;
		return login_session_reply(&s->ls, "+OK %u %llu\r\n", n,
					   (unsigned long long)pop3_maildrop_size(s->md, n)) < 0 ? -1 : 0;
	}
	uint32_t count = pop3_maildrop_count(s->md);
	int r = pop3_session_maildrop_result(s, pop3_maildrop_settle(s->md, 1, count, s->reason,
								     sizeof(s->reason)));
	if (r != 0)
		return r < 0 ? -1 : 0;
	uint64_t total = 0, msgs = 0;
	for (uint32_t i = 1; i <= count; i++) {
		if (pop3_maildrop_exists(s->md, i)) {
			msgs++;
			total += pop3_maildrop_size(s->md, i);
		}
	}
	int ret = conn_printf(s->ls.client, "+OK %llu messages (%llu octets)\r\n",
			      (unsigned long long)msgs, (unsigned long long)total);
	for (uint32_t i = 1; i <= count && ret == 0; i++) {
		if (pop3_maildrop_exists(s->md, i))
			ret = conn_printf(s->ls.client, "%u %llu\r\n", i,
					  (unsigned long long)pop3_maildrop_size(s->md, i));
	}
	if (ret == 0)
		ret = conn_write_str(s->ls.client, ".\r\n");
	if (ret < 0 || conn_flush(s->ls.client) < 0)
		return login_session_write_failed(&s->ls);
	return 0;
}

/* RETR n, and TOP n lines (top true). */
static int pop3_session_retr(pop3_session *s, bool top)
{
	uint32_t n;
	uint64_t lines = 0;
	if (s->cmd.n_args != (top ? 2u : 1u))
		return login_session_reply(&s->ls, "-ERR Invalid arguments.\r\n") < 0 ? -1 : 0;
	int r = pop3_session_msg_arg(s, 0, &n);
	if (r <= 0)
		return r;
	if (top && pop3_parser_number(s->cmd.args[1], s->cmd.arg_len[1], UINT64_MAX / 2,
				      &lines) < 0)
		return login_session_reply(&s->ls,
					   "-ERR Invalid number of lines.\r\n") < 0 ? -1 : 0;
	GBytes *view;
	r = pop3_session_maildrop_result(s, pop3_maildrop_view(s->md, n, &view, s->reason,
							       sizeof(s->reason)));
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (view == NULL) {
		char command[64];
		if (top)
			snprintf(command, sizeof(command), "TOP %u %llu\r\n", n,
				 (unsigned long long)lines);
		else
			snprintf(command, sizeof(command), "RETR %u\r\n", n);
		bool ok;
		return pop3_session_pass_through(s, command, true, &ok);
	}
	gsize len;
	const uint8_t *data = g_bytes_get_data(view, &len);
	char status[64];
	if (top) {
		len = pop3_parser_top_length(data, len, lines);
		snprintf(status, sizeof(status), "+OK\r\n");
	} else {
		snprintf(status, sizeof(status), "+OK %llu octets\r\n",
			 (unsigned long long)pop3_maildrop_size(s->md, n));
	}
	int ret = pop3_session_write_view(s, status, data, len);
	g_bytes_unref(view);
	return ret;
}

/* 0 next command, -1 end. */
static int pop3_session_transaction_command(pop3_session *s)
{
	const char *error;
	if (pop3_parser_command(s->line, s->line_len, &s->cmd, &error) < 0)
		return login_session_reply(&s->ls, "-ERR Invalid command: %s.\r\n",
					   error) < 0 ? -1 : 0;
	const char *name = s->cmd.name;
	char command[64];
	bool ok;
	uint32_t n;
	if (strcmp(name, "STAT") == 0)
		return pop3_session_stat(s);
	if (strcmp(name, "LIST") == 0)
		return pop3_session_list(s);
	if (strcmp(name, "RETR") == 0)
		return pop3_session_retr(s, false);
	if (strcmp(name, "TOP") == 0)
		return pop3_session_retr(s, true);
	if (strcmp(name, "CAPA") == 0) {
		/* Asked anew: a provider may list more after login. */
		char *caps;
		if (pop3_upstream_capa(s->ls.upstream, &caps, &error) < 0) {
			snprintf(s->reason, sizeof(s->reason), "%s", error);
			return pop3_session_lost(s);
		}
		if (caps != NULL) {
			g_free(s->upstream_caps);
			s->upstream_caps = caps;
		}
		return pop3_session_write_capa(s, true);
	}
	if (strcmp(name, "UIDL") == 0 || strcmp(name, "DELE") == 0) {
		bool uidl = name[0] == 'U';
		if (s->cmd.n_args > 1 || (!uidl && s->cmd.n_args != 1))
			return login_session_reply(&s->ls,
						   "-ERR Invalid arguments.\r\n") < 0 ? -1 : 0;
		if (s->cmd.n_args == 0)
			return pop3_session_pass_through(s, "UIDL\r\n", true, &ok);
		int r = pop3_session_msg_arg(s, 0, &n);
		if (r <= 0)
			return r;
		snprintf(command, sizeof(command), "%s %u\r\n", name, n);
		if (pop3_session_pass_through(s, command, false, &ok) < 0)
			return -1;
		if (!uidl && ok)
			pop3_maildrop_set_deleted(s->md, n);
		return 0;
	}
	if (strcmp(name, "RSET") == 0 || strcmp(name, "NOOP") == 0 || strcmp(name, "QUIT") == 0) {
		if (s->cmd.rest != NULL)
			return login_session_reply(&s->ls,
						   "-ERR Unexpected arguments.\r\n") < 0 ? -1 : 0;
		snprintf(command, sizeof(command), "%s\r\n", name);
		if (pop3_session_pass_through(s, command, false, &ok) < 0)
			return -1;
		if (name[0] == 'R' && ok)
			pop3_maildrop_undelete_all(s->md);
		if (name[0] == 'Q') {
			s->quit = true;
			login_session_set_end(&s->ls, "client quit");
			return -1;
		}
		return 0;
	}
	/* Anything else could carry content past sealpost (or is unknown). */
	return login_session_reply(&s->ls, "-ERR Unknown command.\r\n") < 0 ? -1 : 0;
}

/* ---- the session ---------------------------------------------------------- */

void pop3_session_run(const session_env *env, int client_fd)
{
	pop3_session *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		close(client_fd);
		log_error(env->id, "starting session", "out of memory");
		return;
	}
	if (login_session_open(&s->ls, &pop3_session_protocol, s, env, client_fd) < 0)
		goto out;
	/* The provider's capabilities answer CAPA. Failing here is not fatal:
	 * the client learns why when it tries to log in. No APOP timestamp in
	 * the greeting: APOP is not offered. */
	login_session_connect_upstream(&s->ls);
	if (login_session_reply(&s->ls, "+OK sealpost ready.\r\n") < 0)
		goto out;
	login_session_enter_state(&s->ls, LOGIN_SESSION_BEFORE_LOGIN);
	for (;;) {
		if (pop3_session_read_line(s) < 0)
			goto out;
		int ret = pop3_session_command_dispatch(s);
		pop3_session_wipe_line(s);
		if (ret < 0)
			goto out;
		if (ret > 0)
			break;
	}
	for (;;) {
		if (pop3_session_read_line(s) < 0)
			goto out;
		int ret = pop3_session_transaction_command(s);
		pop3_session_wipe_line(s);
		if (ret < 0)
			goto out;
	}
out:
	pop3_session_teardown(&s);
}
