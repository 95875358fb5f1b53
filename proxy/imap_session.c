/* imap_session: the client side of an IMAP session. sealpost greets the
 * client itself, answers the few commands allowed before login, proxies
 * LOGIN/AUTHENTICATE to the provider, then hands over to imap_relay. */
#include "session.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "imap_capability.h"
#include "imap_parser.h"
#include "imap_relay.h"
#include "imap_upstream.h"
#include "log.h"

/* A command before login, literals included, is small: a user name, a
 * password, a SASL message. */
#define IMAP_PREAUTH_MAX 8192
/* Invalid or not-yet-allowed commands before a client is sent away. */
#define IMAP_PREAUTH_MAX_ERRORS 10
/* Failed logins allowed on one connection before it is closed: slows
 * password guessing through sealpost (the provider limits too). */
#define IMAP_MAX_AUTH_FAILURES 5
/* How long a client that broke the protocol gets to read the BYE. */
#define IMAP_LINGER_MS 2000

typedef enum {
	IMAP_SESSION_GREETING,
	IMAP_SESSION_NOT_AUTHENTICATED,
	IMAP_SESSION_AUTHENTICATING,
	IMAP_SESSION_RELAYING,
	IMAP_SESSION_CLOSING,
} imap_session_state;

static const char *const imap_session_state_names[] = {
	[IMAP_SESSION_GREETING] = "greeting",
	[IMAP_SESSION_NOT_AUTHENTICATED] = "not authenticated",
	[IMAP_SESSION_AUTHENTICATING] = "authenticating",
	[IMAP_SESSION_RELAYING] = "relaying",
	[IMAP_SESSION_CLOSING] = "closing",
};

/* Why a login attempt did not succeed; imap_session_login_reply() is the
 * one place that turns it into what the client sees. */
typedef enum {
	IMAP_LOGIN_OK,
	IMAP_LOGIN_UPSTREAM_UNAVAILABLE,	/* no verified connection (reason in upstream_error) */
	IMAP_LOGIN_AUTH_FAILED,		/* the provider refused the credentials */
	IMAP_LOGIN_AUTH_TEMPORARY,	/* the provider said [UNAVAILABLE] */
	IMAP_LOGIN_ABORTED,		/* AUTHENTICATE cancelled or malformed */
	IMAP_LOGIN_PRIVACY_REQUIRED,	/* plaintext login on a plain client leg */
	IMAP_LOGIN_CLIENT_GONE,		/* the client left or broke the protocol */
} imap_login_result;

static const char *const imap_login_result_names[] = {
	[IMAP_LOGIN_OK] = "ok",
	[IMAP_LOGIN_UPSTREAM_UNAVAILABLE] = "provider unavailable",
	[IMAP_LOGIN_AUTH_FAILED] = "credentials refused by the provider",
	[IMAP_LOGIN_AUTH_TEMPORARY] = "temporary failure at the provider",
	[IMAP_LOGIN_ABORTED] = "aborted",
	[IMAP_LOGIN_PRIVACY_REQUIRED] = "plaintext login refused on a plain connection",
	[IMAP_LOGIN_CLIENT_GONE] = "client gone",
};

typedef struct {
	const session_env *env;
	imap_session_state state;
	conn *client;
	conn *upstream;
	char *upstream_caps;		/* provider's, after TLS, unfiltered */
	imap_upstream_failure upstream_failure;
	char upstream_error[320];
	unsigned errors;
	unsigned auth_failures;
	bool client_error;		/* drain the client's input before closing */

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
	char end_reason[300];
} imap_session;

static void imap_session_enter_state(imap_session *s, imap_session_state state)
{
	log_debug(s->env->id, "session state", "%s -> %s",
		  imap_session_state_names[s->state], imap_session_state_names[state]);
	s->state = state;
}

static void imap_session_set_end(imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void imap_session_set_end(imap_session *s, const char *fmt, ...)
{
	if (s->end_reason[0] != '\0')
		return;
	va_list args;
	va_start(args, fmt);
	vsnprintf(s->end_reason, sizeof(s->end_reason), fmt, args);
	va_end(args);
}

static int64_t imap_session_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void imap_session_wipe(void *p, size_t len)
{
	explicit_bzero(p, len);
}

/* A client that broke the protocol may still be sending: closing now would
 * answer with a reset that can destroy the BYE before the client reads it.
 * So: end of stream after the BYE, and its input read and dropped for a
 * moment. */
static void imap_session_linger(imap_session *s)
{
	conn_shutdown_write(s->client);
	int64_t end = imap_session_now_ms() + IMAP_LINGER_MS;
	for (;;) {
		int64_t left = end - imap_session_now_ms();
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

/* The one teardown: everything the session owns, and why it ended. */
static void imap_session_teardown(imap_session **sp)
{
	imap_session *s = *sp;
	imap_session_enter_state(s, IMAP_SESSION_CLOSING);
	if (s->client != NULL) {
		conn_flush(s->client);
		if (s->client_error)
			imap_session_linger(s);
	}
	log_info(s->env->id, "session ended", "%s",
		 s->end_reason[0] != '\0' ? s->end_reason : "done");
	conn_free(&s->client);
	conn_free(&s->upstream);
	free(s->upstream_caps);
	free(s->login_caps);
	imap_session_wipe(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

static bool imap_session_plaintext_allowed(const imap_session *s)
{
	return s->env->account->client_plaintext_auth && s->env->client_loopback;
}

static bool imap_session_login_allowed(const imap_session *s)
{
	return conn_is_tls(s->client) || imap_session_plaintext_allowed(s);
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
		.client_tls = conn_is_tls(s->client),
		.plaintext_auth_allowed = imap_session_plaintext_allowed(s),
	};
	size_t size = strlen(caps) + 64;
	char *out = malloc(size);
	if (out == NULL)
		return -1;
	int ret = -1;
	if (imap_capability_filter((const uint8_t *)caps, strlen(caps), &ctx, out, size) >= 0)
		ret = conn_printf(s->client, "%s%s%s", prefix, out, suffix);
	free(out);
	return ret;
}

static int imap_session_reply(imap_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int imap_session_reply(imap_session *s, const char *fmt, ...)
{
	char line[IMAP_TAG_MAX + 512];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (conn_write(s->client, line, (size_t)n) < 0 || conn_flush(s->client) < 0) {
		imap_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		return -1;
	}
	return 0;
}

/* ---- reading client input before login ----------------------------------- */

/* Waits for client input up to the idle timeout. 1 got bytes, -1 gone. */
static int imap_session_client_fill(imap_session *s)
{
	conn_set_timeout(s->client, (int)s->env->cfg->limits.idle_timeout * 1000);
	ssize_t n = conn_fill(s->client);
	conn_set_timeout(s->client, (int)s->env->cfg->limits.command_timeout * 1000);
	if (n > 0)
		return 1;
	if (n == 0) {
		imap_session_set_end(s, "client closed the connection");
	} else if (strcmp(conn_last_error(s->client), "timeout") == 0) {
		imap_session_reply(s, "* BYE Idle for too long, closing the connection.\r\n");
		imap_session_set_end(s, "client idle for %u s", s->env->cfg->limits.idle_timeout);
	} else {
		imap_session_set_end(s, "reading from the client: %s", conn_last_error(s->client));
	}
	return -1;
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
		const uint8_t *data = conn_input(s->client, &len);
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
			imap_session_reply(s, "* BYE %s before login (limit %u bytes), closing the connection.\r\n",
					   strcmp(error, "literal too large") == 0 ? "Literal too large" :
					   strcmp(error, "line too long") == 0 ? "Command too long" :
					   "Invalid command", IMAP_PREAUTH_MAX);
			imap_session_set_end(s, "client protocol error before login: %s", error);
			s->client_error = true;
			return -1;
		}
		memcpy(s->cmd + s->cmd_len, fr.data, fr.len);
		s->cmd_len += fr.len;
		conn_consume(s->client, fr.len);
		if (fr.type == IMAP_FRAME_TEXT) {
			if (fr.line_end)
				return 0;
			if (fr.literal_sync &&
			    imap_session_reply(s, "+ Ready for literal data.\r\n") < 0)
				return -1;
		}
	}
}

/* ---- the provider connection -------------------------------------------- */

static void imap_session_drop_upstream(imap_session *s, imap_upstream_failure failure,
				       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void imap_session_drop_upstream(imap_session *s, imap_upstream_failure failure,
				       const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(s->upstream_error, sizeof(s->upstream_error), fmt, args);
	va_end(args);
	s->upstream_failure = failure;
	log_warn(s->env->id, "upstream", "%s", s->upstream_error);
	conn_free(&s->upstream);
}

static void imap_session_connect_upstream(imap_session *s)
{
	free(s->upstream_caps);
	s->upstream_caps = NULL;
	s->upstream = imap_upstream_connect(s->env, &s->upstream_caps,
					    &s->upstream_failure, s->upstream_error,
					    sizeof(s->upstream_error));
	/* The reason may end up in a reply line: no line breaks in it. */
	for (char *p = s->upstream_error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	}
}

/* Before credentials go out: the connection must still be there. A
 * provider that timed out the idle pre-login connection gets a fresh one. */
static bool imap_session_upstream_ready(imap_session *s)
{
	if (s->upstream != NULL) {
		struct pollfd pfd = { .fd = conn_fd(s->upstream), .events = POLLIN };
		bool alive = true;
		if (conn_has_pending(s->upstream) || poll(&pfd, 1, 0) > 0) {
			/* Unsolicited before login: a BYE, or noise to drop. */
			ssize_t n = conn_fill_nowait(s->upstream);
			if (n == 0 || n == -1)
				alive = false;
			const uint8_t *line;
			size_t len;
			const char *error;
			while (alive && conn_input_len(s->upstream) > 0) {
				const uint8_t *data = conn_input(s->upstream, &len);
				if (memchr(data, '\n', len) == NULL)
					break;
				if (imap_upstream_read_line(s->upstream, s->env->cfg->limits.max_line,
							    &line, &len, &error) < 0) {
					alive = false;
					break;
				}
				imap_response resp;
				if (imap_parser_response(line, len, &resp, &error) < 0 ||
				    resp.status == IMAP_STATUS_BYE)
					alive = false;
				conn_consume(s->upstream, len);
			}
		}
		if (alive)
			return true;
		log_info(s->env->id, "connecting to upstream",
			 "the idle provider connection was closed, reconnecting");
		conn_free(&s->upstream);
	}
	imap_session_connect_upstream(s);
	return s->upstream != NULL;
}

/* ---- login -------------------------------------------------------------- */

/* What the client is told when the provider cannot be used. Reasons that
 * involve TLS say that the credentials stayed here. */
static const char *imap_session_unavailable_text(imap_upstream_failure failure)
{
	switch (failure) {
	case IMAP_UPSTREAM_NOT_CONFIGURED:
		return "No provider is configured for this account.";
	case IMAP_UPSTREAM_CONNECT:
		return "Cannot reach the provider";
	case IMAP_UPSTREAM_TLS:
		return "TLS with the provider failed; credentials were not sent";
	case IMAP_UPSTREAM_NO_STARTTLS:
		return "The provider does not offer STARTTLS; credentials were not sent.";
	case IMAP_UPSTREAM_STARTTLS_REFUSED:
		return "The provider refused STARTTLS; credentials were not sent.";
	case IMAP_UPSTREAM_STARTTLS_INJECTION:
		return "Unexpected data after the provider's STARTTLS reply; credentials were not sent.";
	case IMAP_UPSTREAM_LOST:
		return "Lost the connection to the provider.";
	case IMAP_UPSTREAM_PROTOCOL:
	case IMAP_UPSTREAM_OK:
		break;
	}
	return "The provider's reply was not understood.";
}

static int imap_session_login_reply(imap_session *s, imap_login_result result,
				    const char *ok_line, size_t ok_len)
{
	switch (result) {
	case IMAP_LOGIN_OK: {
		/* The provider's tagged OK, its capability list filtered. */
		imap_capability_context ctx = { .pre_auth = false,
						.client_tls = conn_is_tls(s->client) };
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
				ret = conn_printf(s->client, "* CAPABILITY %s\r\n", caps);
			free(caps);
		}
		if (n < 0) {
			/* Never pass an unfiltered capability list on. */
			free(out);
			imap_session_set_end(s, "cannot filter the provider's capabilities");
			return -1;
		}
		if (ret == 0)
			ret = n > 0 ? conn_write(s->client, out, (size_t)n) :
				conn_write(s->client, ok_line, ok_len);
		free(out);
		if (ret < 0 || conn_flush(s->client) < 0) {
			imap_session_set_end(s, "writing to the client: %s",
					     conn_last_error(s->client));
			return -1;
		}
		return 0;
	}
	case IMAP_LOGIN_UPSTREAM_UNAVAILABLE:
		/* Connection and TLS failures are worded here, not by the
		 * provider, and their detail helps: "certificate has expired". */
		if (s->upstream_failure == IMAP_UPSTREAM_CONNECT ||
		    s->upstream_failure == IMAP_UPSTREAM_TLS)
			return imap_session_reply(s, "%s NO [UNAVAILABLE] %s (%s).\r\n", s->tag,
						  imap_session_unavailable_text(s->upstream_failure),
						  s->upstream_error);
		return imap_session_reply(s, "%s NO [UNAVAILABLE] %s\r\n", s->tag,
					  imap_session_unavailable_text(s->upstream_failure));
	case IMAP_LOGIN_AUTH_FAILED:
		if (imap_session_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
				       s->tag) < 0)
			return -1;
		if (++s->auth_failures >= IMAP_MAX_AUTH_FAILURES) {
			imap_session_reply(s, "* BYE Too many failed logins.\r\n");
			imap_session_set_end(s, "%u failed logins", s->auth_failures);
			return -1;
		}
		return 0;
	case IMAP_LOGIN_AUTH_TEMPORARY:
		return imap_session_reply(s, "%s NO [UNAVAILABLE] Temporary authentication failure, try again later.\r\n",
					  s->tag);
	case IMAP_LOGIN_ABORTED:
		return imap_session_reply(s, "%s BAD Authentication aborted.\r\n", s->tag);
	case IMAP_LOGIN_PRIVACY_REQUIRED:
		return imap_session_reply(s, "%s NO [PRIVACYREQUIRED] Plaintext authentication is disabled, use STARTTLS first.\r\n",
					  s->tag);
	case IMAP_LOGIN_CLIENT_GONE:
		return -1;
	}
	return -1;
}

/* Reads the provider's reply to the login command tagged s->tag. A "+"
 * is returned to the caller (*continuation_r) with the line unconsumed. */
static imap_login_result imap_session_login_result(imap_session *s,
						   const uint8_t **line_r, size_t *len_r,
						   bool *continuation_r)
{
	*continuation_r = false;
	for (;;) {
		const uint8_t *line;
		size_t len;
		const char *error;
		if (imap_upstream_read_line(s->upstream, s->env->cfg->limits.max_line,
					    &line, &len, &error) < 0) {
			imap_session_drop_upstream(s, IMAP_UPSTREAM_LOST,
						   "reading the provider's login reply: %s", error);
			return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
		}
		imap_response resp;
		if (imap_parser_response(line, len, &resp, &error) < 0) {
			imap_session_drop_upstream(s, IMAP_UPSTREAM_PROTOCOL,
						   "invalid login reply from the provider: %s", error);
			return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
		}
		if (resp.kind == IMAP_RESP_CONTINUATION) {
			*line_r = line;
			*len_r = len;
			*continuation_r = true;
			return IMAP_LOGIN_OK;
		}
		if (resp.kind == IMAP_RESP_UNTAGGED) {
			imap_upstream_note_caps(line, len, &s->login_caps);
			bool bye = resp.status == IMAP_STATUS_BYE;
			conn_consume(s->upstream, len);
			if (bye) {
				imap_session_drop_upstream(s, IMAP_UPSTREAM_LOST,
							   "the provider closed the connection during login");
				return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
			}
			continue;
		}
		if (resp.tag_len != strlen(s->tag) || memcmp(resp.tag, s->tag, resp.tag_len) != 0) {
			imap_session_drop_upstream(s, IMAP_UPSTREAM_PROTOCOL,
						   "unexpected tag in the provider's login reply");
			return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
		}
		*line_r = line;
		*len_r = len;
		if (resp.status == IMAP_STATUS_OK)
			return IMAP_LOGIN_OK;
		/* Logged for the operator; the client gets sealpost's text. */
		log_info(s->env->id, "login", "provider replied %s%s%.*s%s %.*s",
			 resp.keyword, resp.code != NULL ? " [" : "",
			 (int)resp.code_len, resp.code != NULL ? (const char *)resp.code : "",
			 resp.code != NULL ? "]" : "", (int)resp.text_len, (const char *)resp.text);
		imap_login_result result = IMAP_LOGIN_AUTH_FAILED;
		if (resp.status == IMAP_STATUS_NO && imap_response_code_is(&resp, "UNAVAILABLE"))
			result = IMAP_LOGIN_AUTH_TEMPORARY;
		else if (resp.status == IMAP_STATUS_BAD)
			result = IMAP_LOGIN_ABORTED;
		conn_consume(s->upstream, len);
		return result;
	}
}

static int imap_session_upstream_write_error(imap_session *s)
{
	imap_session_drop_upstream(s, IMAP_UPSTREAM_LOST, "writing to the provider: %s",
				   conn_last_error(s->upstream));
	return -1;
}

/* Writes one LOGIN argument; for a synchronizing literal waits for "+".
 * 0 written, 1 the provider answered with a tagged reply instead (*result_r),
 * -1 the provider is gone. */
static int imap_session_send_astring(imap_session *s, const uint8_t *value, size_t len,
				     imap_login_result *result_r, const uint8_t **line_r,
				     size_t *len_r)
{
	bool sync;
	bool literal_plus = imap_capability_has(s->upstream_caps, "LITERAL+");
	if (imap_upstream_write_astring(s->upstream, value, len, literal_plus, &sync) < 0)
		return imap_session_upstream_write_error(s);
	if (!sync)
		return 0;
	if (conn_flush(s->upstream) < 0)
		return imap_session_upstream_write_error(s);
	bool cont;
	*result_r = imap_session_login_result(s, line_r, len_r, &cont);
	if (!cont)
		return *result_r == IMAP_LOGIN_UPSTREAM_UNAVAILABLE ? -1 : 1;
	conn_consume(s->upstream, *len_r);
	if (conn_write(s->upstream, value, len) < 0)
		return imap_session_upstream_write_error(s);
	return 0;
}

/* Sends LOGIN to the provider and reads its answer. *line_r is the
 * provider's tagged reply (unconsumed on success). */
static imap_login_result imap_session_send_login(imap_session *s, const uint8_t **line_r,
						 size_t *len_r)
{
	imap_login_result result;
	log_info(s->env->id, "sending LOGIN to upstream", "user=%.*s password=%s",
		 (int)s->user_len, (const char *)s->user, LOG_SECRET);
	if (conn_printf(s->upstream, "%s LOGIN ", s->tag) < 0) {
		imap_session_upstream_write_error(s);
		return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
	}
	int ret = imap_session_send_astring(s, s->user, s->user_len, &result, line_r, len_r);
	if (ret == 0 && conn_write_str(s->upstream, " ") < 0)
		ret = imap_session_upstream_write_error(s);
	if (ret == 0)
		ret = imap_session_send_astring(s, s->pass, s->pass_len, &result, line_r, len_r);
	if (ret == 0 && (conn_write_str(s->upstream, "\r\n") < 0 || conn_flush(s->upstream) < 0))
		ret = imap_session_upstream_write_error(s);
	if (ret < 0)
		return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
	if (ret > 0)
		return result;
	bool cont;
	result = imap_session_login_result(s, line_r, len_r, &cont);
	if (cont) {
		imap_session_drop_upstream(s, IMAP_UPSTREAM_PROTOCOL,
					   "unexpected continuation in the provider's LOGIN reply");
		return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
	}
	return result;
}

/* AUTHENTICATE: the SASL exchange is relayed line by line; sealpost adds
 * the initial response itself when the provider lacks SASL-IR. */
static imap_login_result imap_session_send_authenticate(imap_session *s,
							const uint8_t **line_r,
							size_t *len_r)
{
	bool hold_ir = s->ir != NULL && !imap_capability_has(s->upstream_caps, "SASL-IR");
	log_info(s->env->id, "sending AUTHENTICATE to upstream", "mechanism=%.*s%s%s",
		 (int)s->mech_len, (const char *)s->mech,
		 s->ir != NULL ? " initial-response=" : "", s->ir != NULL ? LOG_SECRET : "");
	int ret;
	if (s->ir != NULL && !hold_ir)
		ret = conn_printf(s->upstream, "%s AUTHENTICATE %.*s %.*s\r\n", s->tag,
				  (int)s->mech_len, (const char *)s->mech,
				  (int)s->ir_len, (const char *)s->ir);
	else
		ret = conn_printf(s->upstream, "%s AUTHENTICATE %.*s\r\n", s->tag,
				  (int)s->mech_len, (const char *)s->mech);
	if (ret < 0 || conn_flush(s->upstream) < 0) {
		imap_session_upstream_write_error(s);
		return IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
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
	imap_login_result result;
	for (;;) {
		bool cont;
		result = imap_session_login_result(s, line_r, len_r, &cont);
		if (!cont)
			break;
		if (hold_ir) {
			conn_consume(s->upstream, *len_r);
			hold_ir = false;
			if (conn_write(s->upstream, ir, ir_len) < 0 ||
			    conn_write_str(s->upstream, "\r\n") < 0 || conn_flush(s->upstream) < 0) {
				imap_session_upstream_write_error(s);
				result = IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
				break;
			}
			continue;
		}
		/* A challenge: to the client as it is, its answer back. */
		if (conn_write(s->client, *line_r, *len_r) < 0 || conn_flush(s->client) < 0) {
			imap_session_set_end(s, "writing to the client: %s",
					     conn_last_error(s->client));
			result = IMAP_LOGIN_CLIENT_GONE;
			break;
		}
		conn_consume(s->upstream, *len_r);
		if (imap_session_read_line(s, false) < 0) {
			result = IMAP_LOGIN_CLIENT_GONE;
			break;
		}
		if (conn_write(s->upstream, s->cmd, s->cmd_len) < 0 || conn_flush(s->upstream) < 0) {
			imap_session_upstream_write_error(s);
			result = IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
			break;
		}
	}
	imap_session_wipe(ir, sizeof(ir));
	return result;
}

/* 1 logged in (relay next), 0 go on reading commands, -1 end. */
static int imap_session_login(imap_session *s, bool authenticate)
{
	imap_login_result result;
	const uint8_t *line = NULL;
	size_t len = 0;
	free(s->login_caps);
	s->login_caps = NULL;
	if (!imap_session_login_allowed(s)) {
		result = IMAP_LOGIN_PRIVACY_REQUIRED;
	} else if (!imap_session_upstream_ready(s)) {
		log_warn(s->env->id, authenticate ? "AUTHENTICATE" : "LOGIN",
			 "refused, provider unavailable: %s", s->upstream_error);
		result = IMAP_LOGIN_UPSTREAM_UNAVAILABLE;
	} else {
		imap_session_enter_state(s, IMAP_SESSION_AUTHENTICATING);
		result = authenticate ? imap_session_send_authenticate(s, &line, &len) :
			imap_session_send_login(s, &line, &len);
		imap_session_enter_state(s, result == IMAP_LOGIN_OK ?
					 IMAP_SESSION_RELAYING : IMAP_SESSION_NOT_AUTHENTICATED);
	}
	imap_session_wipe(s->pass, sizeof(s->pass));
	s->pass_len = 0;
	if (result == IMAP_LOGIN_OK) {
		log_info(s->env->id, "logged in", "%s%.*s",
			 authenticate ? "via AUTHENTICATE" : "user=",
			 authenticate ? 0 : (int)s->user_len, (const char *)s->user);
		int ret = imap_session_login_reply(s, result, (const char *)line, len);
		conn_consume(s->upstream, len);
		return ret < 0 ? -1 : 1;
	}
	if (result != IMAP_LOGIN_CLIENT_GONE)
		log_info(s->env->id, authenticate ? "AUTHENTICATE" : "LOGIN", "failed: %s",
			 imap_login_result_names[result]);
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
	return imap_session_reply(s, "%s OK Capability completed.\r\n", s->tag) < 0 ? -1 : 0;
}

static int imap_session_proceed_noop(imap_session *s)
{
	return imap_session_reply(s, "%s OK NOOP completed.\r\n", s->tag) < 0 ? -1 : 0;
}

static int imap_session_proceed_id(imap_session *s)
{
	return imap_session_reply(s, "* ID (\"name\" \"sealpost\")\r\n%s OK ID completed.\r\n",
				  s->tag) < 0 ? -1 : 0;
}

static int imap_session_proceed_logout(imap_session *s)
{
	imap_session_reply(s, "* BYE Logging out.\r\n%s OK Logout completed.\r\n", s->tag);
	imap_session_set_end(s, "client logged out before login");
	return -1;
}

static int imap_session_proceed_starttls(imap_session *s)
{
	if (conn_is_tls(s->client))
		return imap_session_reply(s, "%s BAD TLS is already active.\r\n", s->tag) < 0 ? -1 : 0;
	if (s->env->tls_srv == NULL)
		return imap_session_reply(s, "%s NO TLS is not available.\r\n", s->tag) < 0 ? -1 : 0;
	if (imap_session_reply(s, "%s OK Begin TLS negotiation now.\r\n", s->tag) < 0)
		return -1;
	/* Anything sent along with STARTTLS was not protected: gone. */
	size_t pipelined = conn_input_len(s->client);
	if (pipelined > 0)
		log_warn(s->env->id, "client STARTTLS",
			 "discarding %zu bytes pipelined after STARTTLS", pipelined);
	conn_discard_input(s->client);
	const char *error;
	if (conn_starttls_server(s->client, s->env->tls_srv, &error) < 0) {
		imap_session_set_end(s, "client TLS handshake failed: %s", error);
		return -1;
	}
	log_info(s->env->id, "client STARTTLS", "TLS established");
	return 0;
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
		return imap_session_reply(s, "* BAD Invalid command: %s.\r\n", error) < 0 ? -1 : 0;
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
			return imap_session_reply(s, "%s BAD %s\r\n", s->tag, error) < 0 ? -1 : 0;
		}
		return c->proceed(s);
	}
	if (++s->errors > IMAP_PREAUTH_MAX_ERRORS)
		goto too_many;
	return imap_session_reply(s, "%s BAD Log in first.\r\n", s->tag) < 0 ? -1 : 0;
too_many:
	imap_session_reply(s, "* BYE Too many invalid commands.\r\n");
	imap_session_set_end(s, "too many invalid commands before login");
	return -1;
}

/* ---- the session ---------------------------------------------------------- */

void imap_session_run(const session_env *env, int client_fd)
{
	imap_session *s = calloc(1, sizeof(*s));
	char desc[96];
	snprintf(desc, sizeof(desc), "client %s", env->client_desc);
	if (s == NULL) {
		close(client_fd);
		log_error(env->id, "starting session", "out of memory");
		return;
	}
	s->env = env;
	s->state = IMAP_SESSION_GREETING;
	s->client = conn_new(client_fd, desc);
	if (s->client == NULL) {
		close(client_fd);
		imap_session_set_end(s, "out of memory");
		goto out;
	}
	conn_set_timeout(s->client, (int)env->cfg->limits.command_timeout * 1000);
	if (env->implicit_tls) {
		const char *error;
		if (env->tls_srv == NULL ||
		    conn_starttls_server(s->client, env->tls_srv, &error) < 0) {
			imap_session_set_end(s, "client TLS handshake failed: %s",
					     env->tls_srv == NULL ? "no certificate" : error);
			goto out;
		}
	}
	/* The provider's capabilities go into the greeting. Failing here is
	 * not fatal: the client learns why when it tries to log in. */
	imap_session_connect_upstream(s);
	if (imap_session_write_caps(s, "* OK [CAPABILITY ", "] sealpost ready.\r\n") < 0 ||
	    conn_flush(s->client) < 0) {
		imap_session_set_end(s, "writing to the client: %s", conn_last_error(s->client));
		goto out;
	}
	imap_session_enter_state(s, IMAP_SESSION_NOT_AUTHENTICATED);
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
	imap_relay_run(env, s->client, s->upstream, &relay);
	s->client_error = relay.client_error;
	imap_session_set_end(s, "%s (%llu bytes from client, %llu from provider)",
			     relay.reason[0] != '\0' ? relay.reason : "relay ended",
			     (unsigned long long)relay.bytes_from_client,
			     (unsigned long long)relay.bytes_from_upstream);
out:
	imap_session_teardown(&s);
}
