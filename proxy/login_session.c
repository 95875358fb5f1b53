/* login_session: the client leg and the provider connection of an IMAP or
 * POP3 session up to login, and the one teardown of both. */
#include "login_session.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* How long a client that broke the protocol gets to read the last reply. */
#define LOGIN_SESSION_LINGER_MS 2000
/* The longest reply line written with login_session_reply(). */
#define LOGIN_SESSION_REPLY_MAX 768

static const char *const login_session_result_names[] = {
	[LOGIN_SESSION_OK] = "ok",
	[LOGIN_SESSION_UPSTREAM_UNAVAILABLE] = "provider unavailable",
	[LOGIN_SESSION_AUTH_FAILED] = "credentials refused by the provider",
	[LOGIN_SESSION_AUTH_TEMPORARY] = "temporary failure at the provider",
	[LOGIN_SESSION_IN_USE] = "maildrop in use",
	[LOGIN_SESSION_DELAY] = "login delay",
	[LOGIN_SESSION_MAILDROP] = "message list unavailable",
	[LOGIN_SESSION_ABORTED] = "aborted",
	[LOGIN_SESSION_PRIVACY_REQUIRED] = "plaintext login refused on a plain connection",
	[LOGIN_SESSION_CLIENT_GONE] = "client gone",
};

const char *login_session_result_name(login_session_result result)
{
	return login_session_result_names[result];
}

void login_session_enter_state(login_session *ls, login_session_state state)
{
	log_debug(ls->env->id, "session state", "%s -> %s",
		  ls->proto->state_names[ls->state], ls->proto->state_names[state]);
	ls->state = state;
}

void login_session_set_end(login_session *ls, const char *fmt, ...)
{
	if (ls->end_reason[0] != '\0')
		return;
	va_list args;
	va_start(args, fmt);
	vsnprintf(ls->end_reason, sizeof(ls->end_reason), fmt, args);
	va_end(args);
}

int login_session_open(login_session *ls, const login_session_protocol *proto, void *owner,
		       const session_env *env, int client_fd)
{
	char desc[96];
	snprintf(desc, sizeof(desc), "client %s", env->client_desc);
	ls->proto = proto;
	ls->owner = owner;
	ls->env = env;
	ls->state = LOGIN_SESSION_GREETING;
	ls->client = conn_new(client_fd, desc);
	if (ls->client == NULL) {
		close(client_fd);
		login_session_set_end(ls, "out of memory");
		return -1;
	}
	conn_set_timeout(ls->client, (int)env->cfg->limits.command_timeout * 1000);
	if (env->implicit_tls) {
		const char *error;
		if (env->tls_srv == NULL || conn_starttls_server(ls->client, env->tls_srv, &error) < 0) {
			login_session_set_end(ls, "client TLS handshake failed: %s",
					      env->tls_srv == NULL ? "no certificate" : error);
			return -1;
		}
	}
	return 0;
}

static int64_t login_session_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A client that broke the protocol may still be sending: closing now would
 * answer with a reset that can destroy the last reply before the client
 * reads it. So: end of stream after the reply, and its input read and
 * dropped for a moment. */
static void login_session_linger(login_session *ls)
{
	conn_shutdown_write(ls->client);
	int64_t end = login_session_now_ms() + LOGIN_SESSION_LINGER_MS;
	for (;;) {
		int64_t left = end - login_session_now_ms();
		if (left <= 0)
			return;
		struct pollfd pfd = { .fd = conn_fd(ls->client), .events = POLLIN };
		if (poll(&pfd, 1, (int)left) <= 0)
			return;
		ssize_t n;
		while ((n = conn_fill_nowait(ls->client)) > 0)
			conn_discard_input(ls->client);
		if (n != -2)
			return;
	}
}

void login_session_close(login_session *ls)
{
	login_session_enter_state(ls, LOGIN_SESSION_CLOSING);
	if (ls->client != NULL) {
		conn_flush(ls->client);
		if (ls->client_error)
			login_session_linger(ls);
	}
	log_info(ls->env->id, "session ended", "%s",
		 ls->end_reason[0] != '\0' ? ls->end_reason : "done");
	conn_free(&ls->client);
	conn_free(&ls->upstream);
}

int login_session_write_failed(login_session *ls)
{
	login_session_set_end(ls, "writing to the client: %s", conn_last_error(ls->client));
	return -1;
}

int login_session_reply(login_session *ls, const char *fmt, ...)
{
	char line[LOGIN_SESSION_REPLY_MAX];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (conn_write(ls->client, line, (size_t)n) < 0 || conn_flush(ls->client) < 0)
		return login_session_write_failed(ls);
	return 0;
}

int login_session_read_failed(login_session *ls, bool closed, const char *idle_reply)
{
	if (closed) {
		login_session_set_end(ls, "client closed the connection");
	} else if (strcmp(conn_last_error(ls->client), "timeout") == 0) {
		login_session_reply(ls, "%s", idle_reply);
		login_session_set_end(ls, "client idle for %u s", ls->env->cfg->limits.idle_timeout);
	} else {
		login_session_set_end(ls, "reading from the client: %s",
				      conn_last_error(ls->client));
	}
	return -1;
}

void login_session_wait_idle(login_session *ls, bool idle)
{
	const config_limits *limits = &ls->env->cfg->limits;
	conn_set_timeout(ls->client,
			 (int)(idle ? limits->idle_timeout : limits->command_timeout) * 1000);
}

bool login_session_plaintext_allowed(const login_session *ls)
{
	return ls->env->account->client_plaintext_auth && ls->env->client_loopback;
}

bool login_session_login_allowed(const login_session *ls)
{
	return conn_is_tls(ls->client) || login_session_plaintext_allowed(ls);
}

int login_session_starttls(login_session *ls)
{
	const char *starttls = ls->proto->starttls;
	char action[32];
	snprintf(action, sizeof(action), "client %s", starttls);
	/* Anything sent along with STARTTLS was not protected: gone. */
	size_t pipelined = conn_input_len(ls->client);
	if (pipelined > 0)
		log_warn(ls->env->id, action, "discarding %zu bytes pipelined after %s",
			 pipelined, starttls);
	conn_discard_input(ls->client);
	const char *error;
	if (conn_starttls_server(ls->client, ls->env->tls_srv, &error) < 0) {
		login_session_set_end(ls, "client TLS handshake failed: %s", error);
		return -1;
	}
	log_info(ls->env->id, action, "TLS established");
	return 0;
}

void login_session_drop_upstream_v(login_session *ls, upstream_setup_failure failure,
				   const char *fmt, va_list args)
{
	vsnprintf(ls->upstream_error, sizeof(ls->upstream_error), fmt, args);
	ls->upstream_failure = failure;
	log_warn(ls->env->id, "upstream", "%s", ls->upstream_error);
	conn_free(&ls->upstream);
}

void login_session_drop_upstream(login_session *ls, upstream_setup_failure failure,
				 const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	login_session_drop_upstream_v(ls, failure, fmt, args);
	va_end(args);
}

void login_session_connect_upstream(login_session *ls)
{
	ls->proto->connect_upstream(ls->owner);
	/* The reason may end up in a reply line: no line breaks in it. */
	for (char *p = ls->upstream_error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

bool login_session_upstream_ready(login_session *ls)
{
	if (ls->upstream != NULL) {
		struct pollfd pfd = { .fd = conn_fd(ls->upstream), .events = POLLIN };
		bool alive = true;
		if (conn_has_pending(ls->upstream) || poll(&pfd, 1, 0) > 0)
			alive = ls->proto->upstream_input_ok(ls->owner);
		if (alive)
			return true;
		log_info(ls->env->id, "connecting to upstream",
			 "the idle provider connection was closed, reconnecting");
		conn_free(&ls->upstream);
	}
	login_session_connect_upstream(ls);
	return ls->upstream != NULL;
}

const char *login_session_unavailable_text(const login_session *ls, char *buf, size_t size)
{
	const char *starttls = ls->proto->starttls;
	switch (ls->upstream_failure) {
	case UPSTREAM_SETUP_NOT_CONFIGURED:
		return "No provider is configured for this account.";
	case UPSTREAM_SETUP_CONNECT:
		/* Worded here, not by the provider, and the detail helps:
		 * "certificate has expired". */
		snprintf(buf, size, "Cannot reach the provider (%s).", ls->upstream_error);
		return buf;
	case UPSTREAM_SETUP_TLS:
		snprintf(buf, size, "TLS with the provider failed; credentials were not sent (%s).",
			 ls->upstream_error);
		return buf;
	case UPSTREAM_SETUP_NO_STARTTLS:
		snprintf(buf, size, "The provider does not offer %s; credentials were not sent.",
			 starttls);
		return buf;
	case UPSTREAM_SETUP_STARTTLS_REFUSED:
		snprintf(buf, size, "The provider refused %s; credentials were not sent.", starttls);
		return buf;
	case UPSTREAM_SETUP_STARTTLS_INJECTION:
		snprintf(buf, size,
			 "Unexpected data after the provider's %s reply; credentials were not sent.",
			 starttls);
		return buf;
	case UPSTREAM_SETUP_LOST:
		return "Lost the connection to the provider.";
	case UPSTREAM_SETUP_PROTOCOL:
	case UPSTREAM_SETUP_OK:
		break;
	}
	return "The provider's reply was not understood.";
}
