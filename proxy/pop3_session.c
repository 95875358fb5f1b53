/* pop3_session: the client side of a POP3 session. Before login sealpost
 * answers itself and relays USER/PASS and AUTH; after it, each command is
 * answered from the maildrop table (STAT, LIST, RETR and TOP of encrypted
 * messages) or passed to the provider (UIDL, DELE, RSET, NOOP, QUIT). */
#include "pop3_session.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
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
/* How long a client that broke the protocol gets to read the reply. */
#define POP3_LINGER_MS 2000
/* Bytes of a view stuffed and written at a time. */
#define POP3_WRITE_CHUNK (64 * 1024)

typedef enum {
	POP3_SESSION_GREETING,
	POP3_SESSION_AUTHORIZATION,
	POP3_SESSION_AUTHENTICATING,
	POP3_SESSION_TRANSACTION,
	POP3_SESSION_CLOSING,
} pop3_session_state;

static const char *const pop3_session_state_names[] = {
	[POP3_SESSION_GREETING] = "greeting",
	[POP3_SESSION_AUTHORIZATION] = "authorization",
	[POP3_SESSION_AUTHENTICATING] = "authenticating",
	[POP3_SESSION_TRANSACTION] = "transaction",
	[POP3_SESSION_CLOSING] = "closing",
};

/* Why a login attempt did not succeed; pop3_session_login_reply() is the
 * one place that turns it into what the client sees. */
typedef enum {
	POP3_LOGIN_OK,
	POP3_LOGIN_UPSTREAM_UNAVAILABLE,	/* no verified connection (reason in upstream_error) */
	POP3_LOGIN_AUTH_FAILED,		/* the provider refused the credentials */
	POP3_LOGIN_AUTH_TEMPORARY,	/* the provider said [SYS/TEMP] */
	POP3_LOGIN_IN_USE,		/* the provider said [IN-USE] */
	POP3_LOGIN_DELAY,		/* the provider said [LOGIN-DELAY] */
	POP3_LOGIN_MAILDROP,		/* logged in, but the message list could not be read */
	POP3_LOGIN_PRIVACY_REQUIRED,	/* plaintext login on a plain client leg */
	POP3_LOGIN_CLIENT_GONE,		/* the client left */
} pop3_login_result;

static const char *const pop3_login_result_names[] = {
	[POP3_LOGIN_OK] = "ok",
	[POP3_LOGIN_UPSTREAM_UNAVAILABLE] = "provider unavailable",
	[POP3_LOGIN_AUTH_FAILED] = "credentials refused by the provider",
	[POP3_LOGIN_AUTH_TEMPORARY] = "temporary failure at the provider",
	[POP3_LOGIN_IN_USE] = "maildrop in use",
	[POP3_LOGIN_DELAY] = "login delay",
	[POP3_LOGIN_MAILDROP] = "message list unavailable",
	[POP3_LOGIN_PRIVACY_REQUIRED] = "plaintext login refused on a plain connection",
	[POP3_LOGIN_CLIENT_GONE] = "client gone",
};

typedef struct {
	const session_env *env;
	pop3_session_state state;
	conn *client;
	conn *upstream;
	char *upstream_caps;		/* provider's CAPA body, after TLS, unfiltered */
	pop3_upstream_failure upstream_failure;
	char upstream_error[320];
	unsigned errors;
	unsigned auth_failures;
	bool client_error;		/* drain the client's input before closing */
	bool user_accepted;		/* the provider took USER; PASS may follow */
	bool quit;

	/* The command being handled. May hold a password: wiped after each. */
	uint8_t line[POP3_CLIENT_MAX_LINE];
	size_t line_len;
	pop3_command cmd;

	pop3_maildrop *md;
	char reason[320];		/* of a temporary failure */
	char end_reason[300];
} pop3_session;

static void pop3_session_enter_state(pop3_session *s, pop3_session_state state)
{
	log_debug(s->env->id, "session state", "%s -> %s",
		  pop3_session_state_names[s->state], pop3_session_state_names[state]);
	s->state = state;
}

static void pop3_session_set_end(pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void pop3_session_set_end(pop3_session *s, const char *fmt, ...)
{
	if (s->end_reason[0] != '\0')
		return;
	va_list args;
	va_start(args, fmt);
	vsnprintf(s->end_reason, sizeof(s->end_reason), fmt, args);
	va_end(args);
}

static int64_t pop3_session_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pop3_session_wipe_line(pop3_session *s)
{
	explicit_bzero(s->line, sizeof(s->line));
	s->line_len = 0;
	memset(&s->cmd, 0, sizeof(s->cmd));
}

/* A client that broke the protocol may still be sending: the reply must not
 * be destroyed by a reset. */
static void pop3_session_linger(pop3_session *s)
{
	conn_shutdown_write(s->client);
	int64_t end = pop3_session_now_ms() + POP3_LINGER_MS;
	for (;;) {
		int64_t left = end - pop3_session_now_ms();
		if (left <= 0)
			return;
		struct pollfd pfd = { .fd = conn_fd(s->client), .events = POLLIN };
		if (poll(&pfd, 1, (int)left) <= 0)
			return;
		ssize_t n;
		while ((n = conn_fill_nowait(s->client)) > 0)
			conn_discard_input(s->client);
		if (n != -2)
			return;
	}
}

/* The one teardown. */
static void pop3_session_teardown(pop3_session **sp)
{
	pop3_session *s = *sp;
	pop3_session_enter_state(s, POP3_SESSION_CLOSING);
	if (s->client != NULL) {
		conn_flush(s->client);
		if (s->client_error)
			pop3_session_linger(s);
	}
	log_info(s->env->id, "session ended", "%s",
		 s->end_reason[0] != '\0' ? s->end_reason : "done");
	conn_free(&s->client);
	conn_free(&s->upstream);
	pop3_maildrop_free(&s->md);
	g_free(s->upstream_caps);
	explicit_bzero(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

static bool pop3_session_plaintext_allowed(const pop3_session *s)
{
	return s->env->account->client_plaintext_auth && s->env->client_loopback;
}

static bool pop3_session_login_allowed(const pop3_session *s)
{
	return conn_is_tls(s->client) || pop3_session_plaintext_allowed(s);
}

static int pop3_session_reply(pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int pop3_session_reply(pop3_session *s, const char *fmt, ...)
{
	char line[768];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (conn_write(s->client, line, (size_t)n) < 0 || conn_flush(s->client) < 0) {
		pop3_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		return -1;
	}
	return 0;
}

/* Reads one client line into s->line (CRLF stripped). 0, -1 the session
 * ends (reason set). */
static int pop3_session_read_line(pop3_session *s)
{
	pop3_session_wipe_line(s);
	conn_set_timeout(s->client, (int)s->env->cfg->limits.idle_timeout * 1000);
	const char *line;
	size_t len;
	int ret = conn_read_line(s->client, POP3_CLIENT_MAX_LINE, &line, &len);
	conn_set_timeout(s->client, (int)s->env->cfg->limits.command_timeout * 1000);
	if (ret == 1) {
		memcpy(s->line, line, len);
		s->line_len = len;
		conn_consume(s->client, len);
		while (s->line_len > 0 && (s->line[s->line_len - 1] == '\n' ||
					   s->line[s->line_len - 1] == '\r'))
			s->line_len--;
		return 0;
	}
	if (ret == 0) {
		pop3_session_set_end(s, "client closed the connection");
	} else if (ret == -2) {
		pop3_session_reply(s, "-ERR Line too long (limit %u bytes), closing the connection.\r\n",
				   POP3_CLIENT_MAX_LINE);
		pop3_session_set_end(s, "client protocol error: line too long");
		s->client_error = true;
	} else if (strcmp(conn_last_error(s->client), "timeout") == 0) {
		pop3_session_reply(s, "-ERR Idle for too long, closing the connection.\r\n");
		pop3_session_set_end(s, "client idle for %u s", s->env->cfg->limits.idle_timeout);
	} else {
		pop3_session_set_end(s, "reading from the client: %s", conn_last_error(s->client));
	}
	return -1;
}

/* ---- the provider connection -------------------------------------------- */

static void pop3_session_drop_upstream(pop3_session *s, pop3_upstream_failure failure,
				       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void pop3_session_drop_upstream(pop3_session *s, pop3_upstream_failure failure,
				       const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(s->upstream_error, sizeof(s->upstream_error), fmt, args);
	va_end(args);
	s->upstream_failure = failure;
	s->user_accepted = false;
	log_warn(s->env->id, "upstream", "%s", s->upstream_error);
	conn_free(&s->upstream);
}

static void pop3_session_connect_upstream(pop3_session *s)
{
	g_free(s->upstream_caps);
	s->upstream_caps = NULL;
	s->user_accepted = false;
	s->upstream = pop3_upstream_connect(s->env, &s->upstream_caps, &s->upstream_failure,
					    s->upstream_error, sizeof(s->upstream_error));
	/* The reason may end up in a reply line: no line breaks in it. */
	for (char *p = s->upstream_error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

/* Before credentials go out: the connection must still be there. A
 * provider that timed out the idle connection gets a fresh one (only
 * before USER: a PASS belongs to the connection that took the USER). */
static bool pop3_session_upstream_ready(pop3_session *s)
{
	if (s->upstream != NULL) {
		struct pollfd pfd = { .fd = conn_fd(s->upstream), .events = POLLIN };
		bool alive = true;
		if (conn_has_pending(s->upstream) || poll(&pfd, 1, 0) > 0) {
			/* POP3 servers say nothing unasked: anything is an end. */
			alive = false;
		}
		if (alive)
			return true;
		log_info(s->env->id, "connecting to upstream",
			 "the idle provider connection was closed, reconnecting");
		conn_free(&s->upstream);
		s->user_accepted = false;
	}
	pop3_session_connect_upstream(s);
	return s->upstream != NULL;
}

static const char *pop3_session_unavailable_text(pop3_upstream_failure failure)
{
	switch (failure) {
	case POP3_UPSTREAM_NOT_CONFIGURED:
		return "No provider is configured for this account.";
	case POP3_UPSTREAM_CONNECT:
		return "Cannot reach the provider";
	case POP3_UPSTREAM_TLS:
		return "TLS with the provider failed; credentials were not sent";
	case POP3_UPSTREAM_NO_STLS:
		return "The provider does not offer STLS; credentials were not sent.";
	case POP3_UPSTREAM_STLS_REFUSED:
		return "The provider refused STLS; credentials were not sent.";
	case POP3_UPSTREAM_STLS_INJECTION:
		return "Unexpected data after the provider's STLS reply; credentials were not sent.";
	case POP3_UPSTREAM_LOST:
		return "Lost the connection to the provider.";
	case POP3_UPSTREAM_PROTOCOL:
	case POP3_UPSTREAM_OK:
		break;
	}
	return "The provider's reply was not understood.";
}

/* ---- login -------------------------------------------------------------- */

static int pop3_session_login_reply(pop3_session *s, pop3_login_result result)
{
	switch (result) {
	case POP3_LOGIN_OK:
		return pop3_session_reply(s, "+OK Logged in.\r\n");
	case POP3_LOGIN_UPSTREAM_UNAVAILABLE:
		if (s->upstream_failure == POP3_UPSTREAM_CONNECT ||
		    s->upstream_failure == POP3_UPSTREAM_TLS)
			return pop3_session_reply(s, "-ERR [SYS/TEMP] %s (%s).\r\n",
						  pop3_session_unavailable_text(s->upstream_failure),
						  s->upstream_error);
		return pop3_session_reply(s, "-ERR [SYS/TEMP] %s\r\n",
					  pop3_session_unavailable_text(s->upstream_failure));
	case POP3_LOGIN_AUTH_FAILED:
		/* sealpost's own words: nobody probes which users exist. */
		return pop3_session_reply(s, "-ERR [AUTH] Authentication failed.\r\n");
	case POP3_LOGIN_AUTH_TEMPORARY:
		return pop3_session_reply(s, "-ERR [SYS/TEMP] Temporary failure at the provider, try again later.\r\n");
	case POP3_LOGIN_IN_USE:
		return pop3_session_reply(s, "-ERR [IN-USE] The mailbox is in use by another session.\r\n");
	case POP3_LOGIN_DELAY:
		return pop3_session_reply(s, "-ERR [LOGIN-DELAY] The provider asks to wait before logging in again.\r\n");
	case POP3_LOGIN_MAILDROP:
		return pop3_session_reply(s, "-ERR [SYS/TEMP] %s\r\n", s->reason);
	case POP3_LOGIN_PRIVACY_REQUIRED:
		return pop3_session_reply(s, "-ERR [AUTH] Plaintext authentication is not allowed before STLS.\r\n");
	case POP3_LOGIN_CLIENT_GONE:
		return -1;
	}
	return -1;
}

/* The provider's -ERR to PASS or AUTH, as a result. */
static pop3_login_result pop3_session_auth_error(pop3_session *s, const pop3_response *resp)
{
	log_info(s->env->id, "login", "provider replied -ERR%s%.*s%s %.*s",
		 resp->code != NULL ? " [" : "", (int)resp->code_len,
		 resp->code != NULL ? (const char *)resp->code : "", resp->code != NULL ? "]" : "",
		 (int)resp->text_len, (const char *)resp->text);
	if (pop3_parser_code_is(resp, "SYS/TEMP"))
		return POP3_LOGIN_AUTH_TEMPORARY;
	if (pop3_parser_code_is(resp, "IN-USE"))
		return POP3_LOGIN_IN_USE;
	if (pop3_parser_code_is(resp, "LOGIN-DELAY"))
		return POP3_LOGIN_DELAY;
	return POP3_LOGIN_AUTH_FAILED;
}

static pop3_login_result pop3_session_upstream_lost(pop3_session *s, const char *what,
						    const char *error)
{
	pop3_session_drop_upstream(s, POP3_UPSTREAM_LOST, "%s: %s", what, error);
	return POP3_LOGIN_UPSTREAM_UNAVAILABLE;
}

/* Sends line (command and CRLF) and reads the status. */
static pop3_login_result pop3_session_send_auth_line(pop3_session *s, const char *what,
						     const uint8_t *line, size_t len,
						     pop3_response *resp)
{
	const char *error;
	if (conn_write(s->upstream, line, len) < 0 || conn_write_str(s->upstream, "\r\n") < 0 ||
	    conn_flush(s->upstream) < 0)
		return pop3_session_upstream_lost(s, what, conn_last_error(s->upstream));
	if (pop3_upstream_read_status(s->upstream, resp, &error) < 0)
		return pop3_session_upstream_lost(s, what, error);
	return POP3_LOGIN_OK;
}

static pop3_login_result pop3_session_send_pass(pop3_session *s)
{
	log_info(s->env->id, "sending PASS to upstream", "password=%s", LOG_SECRET);
	pop3_response resp;
	/* The line as the client sent it: "PASS " and the password. */
	pop3_login_result r = pop3_session_send_auth_line(s, "sending PASS to the provider",
							  s->line, s->line_len, &resp);
	s->user_accepted = false;
	if (r != POP3_LOGIN_OK)
		return r;
	if (resp.status == POP3_RESP_OK)
		return POP3_LOGIN_OK;
	if (resp.status == POP3_RESP_ERR)
		return pop3_session_auth_error(s, &resp);
	pop3_session_drop_upstream(s, POP3_UPSTREAM_PROTOCOL, "unexpected reply to PASS");
	return POP3_LOGIN_UPSTREAM_UNAVAILABLE;
}

/* AUTH: the SASL exchange is relayed line by line. */
static pop3_login_result pop3_session_send_auth(pop3_session *s)
{
	log_info(s->env->id, "sending AUTH to upstream", "mechanism=%.*s%s%s",
		 (int)s->cmd.arg_len[0], (const char *)s->cmd.args[0],
		 s->cmd.n_args > 1 ? " initial-response=" : "", s->cmd.n_args > 1 ? LOG_SECRET : "");
	pop3_response resp;
	pop3_login_result r = pop3_session_send_auth_line(s, "sending AUTH to the provider",
							  s->line, s->line_len, &resp);
	for (;;) {
		if (r != POP3_LOGIN_OK)
			return r;
		if (resp.status == POP3_RESP_OK)
			return POP3_LOGIN_OK;
		if (resp.status == POP3_RESP_ERR)
			return pop3_session_auth_error(s, &resp);
		/* A challenge: to the client, its answer back. */
		if (conn_write_str(s->client, "+ ") < 0 ||
		    conn_write(s->client, resp.text, resp.text_len) < 0 ||
		    conn_write_str(s->client, "\r\n") < 0 || conn_flush(s->client) < 0) {
			pop3_session_set_end(s, "writing to the client: %s",
					     conn_last_error(s->client));
			return POP3_LOGIN_CLIENT_GONE;
		}
		if (pop3_session_read_line(s) < 0)
			return POP3_LOGIN_CLIENT_GONE;
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
	pop3_login_result result;
	if (!pop3_session_login_allowed(s)) {
		result = POP3_LOGIN_PRIVACY_REQUIRED;
	} else if (auth ? !pop3_session_upstream_ready(s) : s->upstream == NULL) {
		result = POP3_LOGIN_UPSTREAM_UNAVAILABLE;
	} else {
		pop3_session_enter_state(s, POP3_SESSION_AUTHENTICATING);
		result = auth ? pop3_session_send_auth(s) : pop3_session_send_pass(s);
		if (result == POP3_LOGIN_OK) {
			int ret = pop3_maildrop_load(s->env, s->upstream, s->upstream_caps, &s->md,
						     s->reason, sizeof(s->reason));
			if (ret != 0) {
				/* Logged in upstream but unusable: that connection goes. */
				pop3_session_drop_upstream(s, POP3_UPSTREAM_LOST,
							   "reading the message list: %s", s->reason);
				result = POP3_LOGIN_MAILDROP;
			}
		}
		pop3_session_enter_state(s, result == POP3_LOGIN_OK ?
					 POP3_SESSION_TRANSACTION : POP3_SESSION_AUTHORIZATION);
	}
	pop3_session_wipe_line(s);
	if (result == POP3_LOGIN_OK) {
		log_info(s->env->id, "logged in", "%s", auth ? "via AUTH" : "via USER/PASS");
		return pop3_session_login_reply(s, result) < 0 ? -1 : 1;
	}
	if (result == POP3_LOGIN_CLIENT_GONE)
		return -1;
	log_info(s->env->id, auth ? "AUTH" : "PASS", "failed: %s", pop3_login_result_names[result]);
	if (pop3_session_login_reply(s, result) < 0)
		return -1;
	if (result == POP3_LOGIN_AUTH_FAILED && ++s->auth_failures >= POP3_MAX_AUTH_FAILURES) {
		pop3_session_reply(s, "-ERR Too many failed logins, closing the connection.\r\n");
		pop3_session_set_end(s, "too many failed logins");
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
		.client_tls = conn_is_tls(s->client),
		.stls_available = s->env->tls_srv != NULL,
		.login_allowed = pop3_session_login_allowed(s),
	};
	/* Without a provider: what sealpost itself handles before login. */
	char *caps = pop3_parser_filter_capa(s->upstream_caps != NULL ? s->upstream_caps :
					     "USER\r\n", &ctx);
	int ret = conn_write_str(s->client, "+OK Capability list follows.\r\n");
	if (ret == 0)
		ret = conn_write_str(s->client, caps);
	if (ret == 0)
		ret = conn_write_str(s->client, ".\r\n");
	g_free(caps);
	if (ret < 0 || conn_flush(s->client) < 0) {
		pop3_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		return -1;
	}
	return 0;
}

static int pop3_session_proceed_capa(pop3_session *s)
{
	return pop3_session_write_capa(s, false) < 0 ? -1 : 0;
}

static int pop3_session_proceed_quit(pop3_session *s)
{
	pop3_session_reply(s, "+OK Bye.\r\n");
	pop3_session_set_end(s, "client quit before login");
	return -1;
}

static int pop3_session_proceed_stls(pop3_session *s)
{
	if (conn_is_tls(s->client))
		return pop3_session_reply(s, "-ERR TLS is already active.\r\n") < 0 ? -1 : 0;
	if (s->env->tls_srv == NULL)
		return pop3_session_reply(s, "-ERR TLS is not available.\r\n") < 0 ? -1 : 0;
	if (pop3_session_reply(s, "+OK Begin TLS negotiation now.\r\n") < 0)
		return -1;
	/* Anything sent along with STLS was not protected: gone. */
	size_t pipelined = conn_input_len(s->client);
	if (pipelined > 0)
		log_warn(s->env->id, "client STLS", "discarding %zu bytes pipelined after STLS",
			 pipelined);
	conn_discard_input(s->client);
	/* USER given in the clear does not carry over: the provider
	 * connection that took it is dropped. */
	if (s->user_accepted) {
		conn_free(&s->upstream);
		s->user_accepted = false;
	}
	const char *error;
	if (conn_starttls_server(s->client, s->env->tls_srv, &error) < 0) {
		pop3_session_set_end(s, "client TLS handshake failed: %s", error);
		return -1;
	}
	log_info(s->env->id, "client STLS", "TLS established");
	return 0;
}

static int pop3_session_proceed_user(pop3_session *s)
{
	if (!pop3_session_login_allowed(s))
		return pop3_session_login_reply(s, POP3_LOGIN_PRIVACY_REQUIRED) < 0 ? -1 : 0;
	if (s->user_accepted) {
		/* A second USER starts over on a fresh connection. */
		conn_free(&s->upstream);
		s->user_accepted = false;
	}
	if (!pop3_session_upstream_ready(s)) {
		log_warn(s->env->id, "USER", "refused, provider unavailable: %s", s->upstream_error);
		return pop3_session_login_reply(s, POP3_LOGIN_UPSTREAM_UNAVAILABLE) < 0 ? -1 : 0;
	}
	log_info(s->env->id, "sending USER to upstream", "user=%.*s", (int)s->cmd.rest_len,
		 (const char *)s->cmd.rest);
	pop3_response resp;
	pop3_login_result r = pop3_session_send_auth_line(s, "sending USER to the provider",
							  s->line, s->line_len, &resp);
	if (r != POP3_LOGIN_OK)
		return pop3_session_login_reply(s, r) < 0 ? -1 : 0;
	if (resp.status != POP3_RESP_OK)
		return pop3_session_login_reply(s, pop3_session_auth_error(s, &resp)) < 0 ? -1 : 0;
	s->user_accepted = true;
	return pop3_session_reply(s, "+OK Send PASS.\r\n") < 0 ? -1 : 0;
}

static int pop3_session_proceed_pass(pop3_session *s)
{
	if (!s->user_accepted && pop3_session_login_allowed(s))
		return pop3_session_reply(s, "-ERR Send USER first.\r\n") < 0 ? -1 : 0;
	return pop3_session_login(s, false);
}

static int pop3_session_proceed_apop(pop3_session *s)
{
	/* APOP needs the provider's greeting secret and an MD5 of the
	 * password: sealpost offers neither. */
	return pop3_session_reply(s, "-ERR APOP is not supported; use USER/PASS or AUTH over TLS.\r\n") < 0 ? -1 : 0;
}

static int pop3_session_proceed_auth(pop3_session *s)
{
	if (s->cmd.n_args == 0) {
		/* The mechanism list (the form clients probe with). */
		const char *caps = s->upstream_caps;
		int ret = conn_write_str(s->client, "+OK\r\n");
		const char *p = caps;
		while (ret == 0 && p != NULL && *p != '\0' && pop3_session_login_allowed(s)) {
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
						ret = conn_printf(s->client, "%.*s\r\n", (int)n, w);
					w += n + 1;
				}
			}
			p = nl != NULL ? nl + 1 : NULL;
		}
		if (ret == 0)
			ret = conn_write_str(s->client, ".\r\n");
		if (ret < 0 || conn_flush(s->client) < 0) {
			pop3_session_set_end(s, "writing to the client: %s",
					     conn_last_error(s->client));
			return -1;
		}
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
		return pop3_session_reply(s, "-ERR Invalid command: %s.\r\n", error) < 0 ? -1 : 0;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(pop3_session_commands); i++) {
		const pop3_session_command *c = &pop3_session_commands[i];
		if (strcmp(c->name, s->cmd.name) != 0)
			continue;
		if (c->check(s, &error) < 0) {
			if (++s->errors > POP3_MAX_ERRORS)
				goto too_many;
			return pop3_session_reply(s, "-ERR %s\r\n", error) < 0 ? -1 : 0;
		}
		return c->proceed(s);
	}
	if (++s->errors > POP3_MAX_ERRORS)
		goto too_many;
	return pop3_session_reply(s, "-ERR Log in first.\r\n") < 0 ? -1 : 0;
too_many:
	pop3_session_reply(s, "-ERR Too many invalid commands.\r\n");
	pop3_session_set_end(s, "too many invalid commands before login");
	return -1;
}

/* ---- the transaction state ----------------------------------------------- */

/* The provider broke: the client is told, the session ends. */
static int pop3_session_lost(pop3_session *s)
{
	pop3_session_reply(s, "-ERR [SYS/TEMP] Lost the connection to the provider: %s\r\n",
			   s->reason);
	pop3_session_set_end(s, "provider connection lost: %s", s->reason);
	return -1;
}

/* A maildrop result: 0 go on, 1 replied with [SYS/TEMP], -1 end. */
static int pop3_session_maildrop_result(pop3_session *s, int ret)
{
	if (ret == 0)
		return 0;
	if (ret < 0)
		return pop3_session_lost(s);
	return pop3_session_reply(s, "-ERR [SYS/TEMP] Cannot show the message now: %s\r\n",
				  s->reason) < 0 ? -1 : 1;
}

/* Message number argument i; replies -ERR when it names no message. 1 ok,
 * 0 replied, -1 end. */
static int pop3_session_msg_arg(pop3_session *s, size_t i, uint32_t *n_r)
{
	uint64_t n;
	if (s->cmd.n_args <= i ||
	    pop3_parser_number(s->cmd.args[i], s->cmd.arg_len[i], UINT32_MAX, &n) < 0)
		return pop3_session_reply(s, "-ERR Invalid message number.\r\n") < 0 ? -1 : 0;
	if (!pop3_maildrop_exists(s->md, n))
		return pop3_session_reply(s, "-ERR There is no such message.\r\n") < 0 ? -1 : 0;
	*n_r = (uint32_t)n;
	return 1;
}

/* Writes the provider's status line on to the client. */
static int pop3_session_relay_status(pop3_session *s, const pop3_response *resp)
{
	int ret = conn_write_str(s->client, resp->status == POP3_RESP_OK ? "+OK" : "-ERR");
	if (ret == 0 && resp->code != NULL)
		ret = conn_printf(s->client, " [%.*s]", (int)resp->code_len,
				  (const char *)resp->code);
	if (ret == 0 && resp->text_len > 0)
		ret = conn_printf(s->client, " %.*s", (int)resp->text_len, (const char *)resp->text);
	if (ret == 0)
		ret = conn_write_str(s->client, "\r\n");
	if (ret < 0) {
		pop3_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		return -1;
	}
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
	if (conn_write_str(s->upstream, command) < 0 || conn_flush(s->upstream) < 0) {
		snprintf(s->reason, sizeof(s->reason), "%s", conn_last_error(s->upstream));
		return pop3_session_lost(s);
	}
	if (pop3_upstream_read_status(s->upstream, &resp, &error) < 0 ||
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
		if (pop3_upstream_relay_body(s->upstream, s->client, &client_failed, &error) < 0) {
			if (client_failed) {
				pop3_session_set_end(s, "writing to the client: %s", error);
				return -1;
			}
			snprintf(s->reason, sizeof(s->reason), "%s", error);
			pop3_session_set_end(s, "provider connection lost: %s", error);
			return -1;
		}
	}
	if (conn_flush(s->client) < 0) {
		pop3_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		return -1;
	}
	return 0;
}

/* Writes len bytes of view as a multi-line body after status. */
static int pop3_session_write_view(pop3_session *s, const char *status, const uint8_t *view,
				   size_t len)
{
	if (conn_write_str(s->client, status) < 0)
		goto fail;
	pop3_parser_stuffer st;
	pop3_parser_stuff_init(&st);
	GByteArray *out = g_byte_array_sized_new(POP3_WRITE_CHUNK + POP3_WRITE_CHUNK / 8);
	for (size_t pos = 0; pos < len; pos += POP3_WRITE_CHUNK) {
		size_t n = len - pos < POP3_WRITE_CHUNK ? len - pos : POP3_WRITE_CHUNK;
		g_byte_array_set_size(out, 0);
		pop3_parser_stuff(&st, view + pos, n, out);
		if (conn_write(s->client, out->data, out->len) < 0) {
			g_byte_array_unref(out);
			goto fail;
		}
	}
	g_byte_array_set_size(out, 0);
	pop3_parser_stuff_finish(&st, out);
	int ret = conn_write(s->client, out->data, out->len);
	g_byte_array_unref(out);
	if (ret < 0 || conn_flush(s->client) < 0)
		goto fail;
	return 0;
fail:
	pop3_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
	return -1;
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
	return pop3_session_reply(s, "+OK %llu %llu\r\n", (unsigned long long)n,
				  (unsigned long long)total) < 0 ? -1 : 0;
}

static int pop3_session_list(pop3_session *s)
{
	uint32_t n;
	if (s->cmd.n_args > 1)
		return pop3_session_reply(s, "-ERR Invalid arguments.\r\n") < 0 ? -1 : 0;
	if (s->cmd.n_args == 1) {
		int r = pop3_session_msg_arg(s, 0, &n);
		if (r <= 0)
			return r;
		r = pop3_session_maildrop_result(s, pop3_maildrop_settle(s->md, n, n, s->reason,
									 sizeof(s->reason)));
		if (r != 0)
			return r < 0 ? -1 : 0;
		return pop3_session_reply(s, "+OK %u %llu\r\n", n,
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
	int ret = conn_printf(s->client, "+OK %llu messages (%llu octets)\r\n",
			      (unsigned long long)msgs, (unsigned long long)total);
	for (uint32_t i = 1; i <= count && ret == 0; i++) {
		if (pop3_maildrop_exists(s->md, i))
			ret = conn_printf(s->client, "%u %llu\r\n", i,
					  (unsigned long long)pop3_maildrop_size(s->md, i));
	}
	if (ret == 0)
		ret = conn_write_str(s->client, ".\r\n");
	if (ret < 0 || conn_flush(s->client) < 0) {
		pop3_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		return -1;
	}
	return 0;
}

/* RETR n, and TOP n lines (top true). */
static int pop3_session_retr(pop3_session *s, bool top)
{
	uint32_t n;
	uint64_t lines = 0;
	if (s->cmd.n_args != (top ? 2u : 1u))
		return pop3_session_reply(s, "-ERR Invalid arguments.\r\n") < 0 ? -1 : 0;
	int r = pop3_session_msg_arg(s, 0, &n);
	if (r <= 0)
		return r;
	if (top && pop3_parser_number(s->cmd.args[1], s->cmd.arg_len[1], UINT64_MAX / 2,
				      &lines) < 0)
		return pop3_session_reply(s, "-ERR Invalid number of lines.\r\n") < 0 ? -1 : 0;
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
		return pop3_session_reply(s, "-ERR Invalid command: %s.\r\n", error) < 0 ? -1 : 0;
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
		if (pop3_upstream_capa(s->upstream, &caps, &error) < 0) {
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
			return pop3_session_reply(s, "-ERR Invalid arguments.\r\n") < 0 ? -1 : 0;
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
			return pop3_session_reply(s, "-ERR Unexpected arguments.\r\n") < 0 ? -1 : 0;
		snprintf(command, sizeof(command), "%s\r\n", name);
		if (pop3_session_pass_through(s, command, false, &ok) < 0)
			return -1;
		if (name[0] == 'R' && ok)
			pop3_maildrop_undelete_all(s->md);
		if (name[0] == 'Q') {
			s->quit = true;
			pop3_session_set_end(s, "client quit");
			return -1;
		}
		return 0;
	}
	/* Anything else could carry content past sealpost (or is unknown). */
	return pop3_session_reply(s, "-ERR Unknown command.\r\n") < 0 ? -1 : 0;
}

/* ---- the session ---------------------------------------------------------- */

void pop3_session_run(const session_env *env, int client_fd)
{
	pop3_session *s = calloc(1, sizeof(*s));
	char desc[96];
	snprintf(desc, sizeof(desc), "client %s", env->client_desc);
	if (s == NULL) {
		close(client_fd);
		log_error(env->id, "starting session", "out of memory");
		return;
	}
	s->env = env;
	s->state = POP3_SESSION_GREETING;
	s->client = conn_new(client_fd, desc);
	if (s->client == NULL) {
		close(client_fd);
		pop3_session_set_end(s, "out of memory");
		goto out;
	}
	conn_set_timeout(s->client, (int)env->cfg->limits.command_timeout * 1000);
	if (env->implicit_tls) {
		const char *error;
		if (env->tls_srv == NULL || conn_starttls_server(s->client, env->tls_srv, &error) < 0) {
			pop3_session_set_end(s, "client TLS handshake failed: %s",
					     env->tls_srv == NULL ? "no certificate" : error);
			goto out;
		}
	}
	/* The provider's capabilities answer CAPA. Failing here is not fatal:
	 * the client learns why when it tries to log in. No APOP timestamp in
	 * the greeting: APOP is not offered. */
	pop3_session_connect_upstream(s);
	if (pop3_session_reply(s, "+OK sealpost ready.\r\n") < 0)
		goto out;
	pop3_session_enter_state(s, POP3_SESSION_AUTHORIZATION);
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
