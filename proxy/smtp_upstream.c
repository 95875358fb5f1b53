/* smtp_upstream: sealpost as an SMTP client of the provider. A small state
 * machine of its own; every failure is typed, and the connection is closed
 * the moment it can no longer be trusted to be in step. */
#include "smtp_upstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* A provider's reply lines are short (RFC 5321: 512 bytes); the limits only
 * stop a broken or hostile peer from growing memory: max_line_length, but
 * at most 8 KiB a line and 128 lines, so one reply stays under 1 MiB. */
#define SMTP_UPSTREAM_REPLY_MAX_LINE (8 * 1024)
#define SMTP_UPSTREAM_REPLY_MAX_LINES 128
#define SMTP_UPSTREAM_MAX_EXTENSIONS 64
#define SMTP_UPSTREAM_CHUNK (64 * 1024)
/* Waiting for the goodbye must not hold the session up. */
#define SMTP_UPSTREAM_QUIT_TIMEOUT_MS 2000

typedef enum {
	UP_STATE_CONNECTING,
	UP_STATE_GREETING,
	UP_STATE_EHLO,
	UP_STATE_STARTTLS,
	UP_STATE_TLS_HANDSHAKE,
	UP_STATE_EHLO_TLS,
	UP_STATE_READY,
	UP_STATE_COMMAND,
	UP_STATE_BODY,
	UP_STATE_QUIT,
	UP_STATE_FAILED,
} smtp_upstream_state;

static const char *const smtp_upstream_state_names[] = {
	[UP_STATE_CONNECTING] = "connecting",
	[UP_STATE_GREETING] = "greeting",
	[UP_STATE_EHLO] = "ehlo",
	[UP_STATE_STARTTLS] = "starttls",
	[UP_STATE_TLS_HANDSHAKE] = "tls-handshake",
	[UP_STATE_EHLO_TLS] = "ehlo-tls",
	[UP_STATE_READY] = "ready",
	[UP_STATE_COMMAND] = "command",
	[UP_STATE_BODY] = "body",
	[UP_STATE_QUIT] = "quit",
	[UP_STATE_FAILED] = "failed",
};

typedef struct {
	char *keyword;		/* upper case */
	char *params;		/* "" when none */
} smtp_extension;

struct smtp_upstream {
	const session_env *env;
	conn *c;
	smtp_upstream_state state;
	smtp_upstream_failure failure;
	bool established;	/* was ready once: later failures are losses */
	char detail[512];
	smtp_reply_parser *parser;
	smtp_extension ext[SMTP_UPSTREAM_MAX_EXTENSIONS];
	size_t n_ext;
	/* The first refusal in a group of pipelined commands, kept while
	 * the rest of the replies are read. */
	smtp_reply held;
	char held_line[1024];
	char *held_lines[1];
	uint8_t *chunk;		/* spool read buffer */
	uint8_t *stuffed;	/* its dot-stuffed form */
};

static void smtp_upstream_enter(smtp_upstream *up, smtp_upstream_state state)
{
	if (up->state == state)
		return;
	log_debug(up->env->id, "upstream state", "%s -> %s",
		  smtp_upstream_state_names[up->state],
		  smtp_upstream_state_names[state]);
	up->state = state;
}

/* Records why the connection is unusable and closes it. The first reason
 * wins: later errors are consequences. */
static void smtp_upstream_fail(smtp_upstream *up, smtp_upstream_failure failure,
			       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void smtp_upstream_fail(smtp_upstream *up, smtp_upstream_failure failure,
			       const char *fmt, ...)
{
	if (up->failure == SMTP_UPSTREAM_OK) {
		va_list args;
		va_start(args, fmt);
		vsnprintf(up->detail, sizeof(up->detail), fmt, args);
		va_end(args);
		/* The detail ends up in a reply line: no line breaks in it. */
		for (char *p = up->detail; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
		}
		up->failure = failure;
		log_warn(up->env->id, "talking to provider", "%s", up->detail);
	}
	conn_free(&up->c);
	smtp_upstream_enter(up, UP_STATE_FAILED);
}

static void smtp_upstream_io_failed(smtp_upstream *up, const char *what)
{
	const char *err = up->c != NULL ? conn_last_error(up->c) : "not connected";
	if (strcmp(err, "timeout") == 0) {
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_TIMEOUT,
				   "the provider did not answer within %u s (%s)",
				   up->env->cfg->limits.command_timeout, what);
	} else {
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
				   "connection to the provider lost (%s: %s)", what, err);
	}
}

/* Reads one complete reply. -1: the connection failed (already recorded). */
static int smtp_upstream_read_reply(smtp_upstream *up, const char *what,
				    const smtp_reply **reply_r)
{
	smtp_reply_parser_reset(up->parser);
	for (;;) {
		size_t len;
		const uint8_t *in = conn_input(up->c, &len);
		if (len > 0) {
			size_t consumed;
			const char *error;
			smtp_parse_result r = smtp_reply_parser_feed(up->parser, in, len,
								     &consumed, reply_r, &error);
			conn_consume(up->c, consumed);
			if (r == SMTP_PARSE_DONE) {
				log_debug(up->env->id, "reading reply from provider",
					  "%d %s%s", (*reply_r)->code, (*reply_r)->lines[0],
					  (*reply_r)->n_lines > 1 ? " ..." : "");
				return 0;
			}
			if (r == SMTP_PARSE_ERROR) {
				smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
						   "the provider sent a malformed reply to %s: %s",
						   what, error);
				return -1;
			}
		}
		ssize_t n = conn_fill(up->c);
		if (n <= 0) {
			smtp_upstream_io_failed(up, what);
			return -1;
		}
	}
}

static int smtp_upstream_send_line(smtp_upstream *up, const char *line,
				   const char *what)
{
	if (conn_write_str(up->c, line) < 0 || conn_write(up->c, "\r\n", 2) < 0 ||
	    conn_flush(up->c) < 0) {
		smtp_upstream_io_failed(up, what);
		return -1;
	}
	return 0;
}

static void smtp_upstream_clear_extensions(smtp_upstream *up)
{
	for (size_t i = 0; i < up->n_ext; i++) {
		free(up->ext[i].keyword);
		free(up->ext[i].params);
	}
	up->n_ext = 0;
}

/* Keeps the keywords of an EHLO reply (its first line is the greeting). */
static void smtp_upstream_store_extensions(smtp_upstream *up, const smtp_reply *r)
{
	smtp_upstream_clear_extensions(up);
	for (size_t i = 1; i < r->n_lines && up->n_ext < SMTP_UPSTREAM_MAX_EXTENSIONS; i++) {
		const char *line = r->lines[i];
		size_t klen = strcspn(line, " ");
		if (klen == 0)
			continue;
		char *kw = strndup(line, klen);
		const char *params = line + klen;
		while (*params == ' ')
			params++;
		char *pr = strdup(params);
		if (kw == NULL || pr == NULL) {
			free(kw);
			free(pr);
			return;
		}
		for (char *p = kw; *p != '\0'; p++) {
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
		}
		up->ext[up->n_ext].keyword = kw;
		up->ext[up->n_ext].params = pr;
		up->n_ext++;
	}
}

const char *smtp_upstream_extension(const smtp_upstream *up, const char *keyword)
{
	for (size_t i = 0; i < up->n_ext; i++) {
		if (strcasecmp(up->ext[i].keyword, keyword) == 0)
			return up->ext[i].params;
	}
	return NULL;
}

/* Text the provider sent before TLS is not trusted: it may come from
 * whoever sits on the path, and it would reach the client in the 454. */
static const char *smtp_upstream_text(const smtp_upstream *up, const smtp_reply *r)
{
	return conn_is_tls(up->c) || up->env->account->smtp_upstream.tls == UPSTREAM_TLS_NONE
		? r->lines[0] : "(text sent before TLS withheld)";
}

static int smtp_upstream_ehlo(smtp_upstream *up, const char *ehlo_name)
{
	char line[300];
	const smtp_reply *r;
	snprintf(line, sizeof(line), "EHLO %s", ehlo_name);
	if (smtp_upstream_send_line(up, line, "EHLO") < 0 ||
	    smtp_upstream_read_reply(up, "EHLO", &r) < 0)
		return -1;
	if (r->code != 250) {
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_EHLO,
				   "the provider refused EHLO: %d %s", r->code,
				   smtp_upstream_text(up, r));
		return -1;
	}
	smtp_upstream_store_extensions(up, r);
	return 0;
}

static int smtp_upstream_setup(smtp_upstream *up, const char *ehlo_name)
{
	const session_env *env = up->env;
	const config_upstream *cu = &env->account->smtp_upstream;
	const char *error;

	log_info(env->id, "connecting to provider", "%s", cu->url);
	up->c = session_connect_upstream(env, cu, &error);
	if (up->c == NULL) {
		/* For smtps:// the handshake is part of connecting. */
		bool tls = cu->tls == UPSTREAM_TLS_IMPLICIT && strstr(error, "TLS") != NULL;
		smtp_upstream_fail(up, tls ? SMTP_UPSTREAM_FAIL_TLS : SMTP_UPSTREAM_FAIL_CONNECT,
				   "%s", error);
		return -1;
	}
	/* Set-up is bounded by connect_timeout, later replies by
	 * command_timeout. */
	conn_set_timeout(up->c, (int)env->cfg->limits.connect_timeout * 1000);

	smtp_upstream_enter(up, UP_STATE_GREETING);
	const smtp_reply *r;
	if (smtp_upstream_read_reply(up, "the greeting", &r) < 0)
		return -1;
	if (r->code != 220) {
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_GREETING,
				   "the provider greeted with %d %s", r->code,
				   smtp_upstream_text(up, r));
		return -1;
	}
	smtp_upstream_enter(up, UP_STATE_EHLO);
	if (smtp_upstream_ehlo(up, ehlo_name) < 0)
		return -1;

	if (cu->tls == UPSTREAM_TLS_STARTTLS) {
		if (smtp_upstream_extension(up, "STARTTLS") == NULL) {
			smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_NO_STARTTLS,
					   "the provider %s does not offer STARTTLS", cu->host);
			return -1;
		}
		smtp_upstream_enter(up, UP_STATE_STARTTLS);
		if (smtp_upstream_send_line(up, "STARTTLS", "STARTTLS") < 0 ||
		    smtp_upstream_read_reply(up, "STARTTLS", &r) < 0)
			return -1;
		if (r->code != 220) {
			smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_STARTTLS_REFUSED,
					   "the provider refused STARTTLS: %d %s",
					   r->code, smtp_upstream_text(up, r));
			return -1;
		}
		/* Anything already here was sent before TLS and would be read
		 * as if it came over TLS: someone is injecting. */
		if (conn_has_pending(up->c)) {
			smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_INJECTION,
					   "the provider sent data after its STARTTLS answer "
					   "(possible STARTTLS injection)");
			return -1;
		}
		conn_discard_input(up->c);
		smtp_upstream_enter(up, UP_STATE_TLS_HANDSHAKE);
		if (conn_starttls_client(up->c, env->tls_cli, cu->host, &error) < 0) {
			smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_TLS, "%s", error);
			return -1;
		}
		log_info(env->id, "starting TLS with provider", "verified %s", cu->host);
		/* What was announced in the clear counts for nothing. */
		smtp_upstream_clear_extensions(up);
		smtp_upstream_enter(up, UP_STATE_EHLO_TLS);
		if (smtp_upstream_ehlo(up, ehlo_name) < 0)
			return -1;
	}
	/* Only a gateway's loopback next hop may be plain (config.c). */
	if (!conn_is_tls(up->c) && cu->tls != UPSTREAM_TLS_NONE) {
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_TLS, "no TLS to the provider");
		return -1;
	}
	conn_set_timeout(up->c, (int)env->cfg->limits.command_timeout * 1000);
	smtp_upstream_enter(up, UP_STATE_READY);
	up->established = true;
	return 0;
}

smtp_upstream *smtp_upstream_open(const session_env *env, const char *ehlo_name)
{
	smtp_upstream *up = calloc(1, sizeof(*up));
	if (up == NULL)
		return NULL;
	up->env = env;
	up->state = UP_STATE_CONNECTING;
	size_t max_line = env->cfg->limits.max_line;
	if (max_line > SMTP_UPSTREAM_REPLY_MAX_LINE)
		max_line = SMTP_UPSTREAM_REPLY_MAX_LINE;
	up->parser = smtp_reply_parser_new(max_line, SMTP_UPSTREAM_REPLY_MAX_LINES);
	if (up->parser == NULL) {
		free(up);
		return NULL;
	}
	(void)smtp_upstream_setup(up, ehlo_name);
	return up;
}

void smtp_upstream_free(smtp_upstream **upp)
{
	smtp_upstream *up = *upp;
	if (up == NULL)
		return;
	if (up->c != NULL && up->state == UP_STATE_READY) {
		smtp_upstream_enter(up, UP_STATE_QUIT);
		conn_set_timeout(up->c, SMTP_UPSTREAM_QUIT_TIMEOUT_MS);
		const smtp_reply *r;
		if (smtp_upstream_send_line(up, "QUIT", "QUIT") == 0)
			(void)smtp_upstream_read_reply(up, "QUIT", &r);
	}
	conn_free(&up->c);
	smtp_upstream_clear_extensions(up);
	smtp_reply_parser_free(&up->parser);
	free(up->chunk);
	free(up->stuffed);
	free(up);
	*upp = NULL;
}

smtp_upstream_failure smtp_upstream_failure_of(const smtp_upstream *up)
{
	return up->failure;
}

const char *smtp_upstream_failure_detail(const smtp_upstream *up)
{
	return up->detail;
}

bool smtp_upstream_established(const smtp_upstream *up)
{
	return up->established;
}

bool smtp_upstream_usable(const smtp_upstream *up)
{
	return up->c != NULL && up->failure == SMTP_UPSTREAM_OK &&
		up->state == UP_STATE_READY;
}

/* Bytes nobody asked for mean the reply stream is out of step (or someone
 * is injecting): the connection is not used any more. */
static bool smtp_upstream_unasked(smtp_upstream *up)
{
	size_t len, show = 0;
	const uint8_t *in = conn_input(up->c, &len);
	if (len == 0)
		return false;
	while (show < len && show < 200 && in[show] != '\r' && in[show] != '\n')
		show++;
	smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
			   "the provider sent something unasked: %.*s",
			   (int)show, (const char *)in);
	return true;
}

/* After a 421 the provider closes; the session must not use it again. */
static void smtp_upstream_check_421(smtp_upstream *up, const smtp_reply *r)
{
	if (r->code == 421)
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
				   "the provider is closing the connection: 421 %s",
				   r->lines[0]);
}

int smtp_upstream_command(smtp_upstream *up, const char *line,
			  const char *log_line, const smtp_reply **reply_r)
{
	if (!smtp_upstream_usable(up))
		return -1;
	char what[32];
	snprintf(what, sizeof(what), "%.*s", (int)strcspn(log_line, " "), log_line);
	if (smtp_upstream_unasked(up))
		return -1;
	log_debug(up->env->id, "sending command to provider", "%s", log_line);
	smtp_upstream_enter(up, UP_STATE_COMMAND);
	if (smtp_upstream_send_line(up, line, what) < 0 ||
	    smtp_upstream_read_reply(up, what, reply_r) < 0)
		return -1;
	smtp_upstream_enter(up, UP_STATE_READY);
	smtp_upstream_check_421(up, *reply_r);
	return 0;
}

/* Keeps the first line of r in up->held. */
static void smtp_upstream_hold(smtp_upstream *up, const smtp_reply *r)
{
	up->held.code = r->code;
	snprintf(up->held.enhanced, sizeof(up->held.enhanced), "%s", r->enhanced);
	snprintf(up->held_line, sizeof(up->held_line), "%s", r->n_lines > 0 ? r->lines[0] : "");
	up->held_lines[0] = up->held_line;
	up->held.lines = up->held_lines;
	up->held.n_lines = 1;
}

int smtp_upstream_commands(smtp_upstream *up, const char *const *lines, size_t n,
			   size_t *failed_r, const smtp_reply **reply_r)
{
	*failed_r = 0;
	if (smtp_upstream_extension(up, "PIPELINING") == NULL) {
		for (size_t i = 0; i < n; i++) {
			if (smtp_upstream_command(up, lines[i], lines[i], reply_r) < 0)
				return -1;
			if ((*reply_r)->code / 100 != 2) {
				*failed_r = i;
				return 1;
			}
		}
		return 0;
	}
	if (!smtp_upstream_usable(up) || smtp_upstream_unasked(up))
		return -1;
	smtp_upstream_enter(up, UP_STATE_COMMAND);
	for (size_t i = 0; i < n; i++) {
		log_debug(up->env->id, "sending command to provider", "%s (pipelined)", lines[i]);
		if (conn_write_str(up->c, lines[i]) < 0 || conn_write(up->c, "\r\n", 2) < 0) {
			smtp_upstream_io_failed(up, "a pipelined command");
			return -1;
		}
	}
	if (conn_flush(up->c) < 0) {
		smtp_upstream_io_failed(up, "a pipelined command");
		return -1;
	}
	bool refused = false;
	for (size_t i = 0; i < n; i++) {
		char what[32];
		snprintf(what, sizeof(what), "%.*s", (int)strcspn(lines[i], " "), lines[i]);
		const smtp_reply *r;
		if (smtp_upstream_read_reply(up, what, &r) < 0)
			return -1;
		if (r->code == 421) {
			/* The provider is going away: no more replies come. */
			smtp_upstream_check_421(up, r);
			*failed_r = i;
			smtp_upstream_hold(up, r);
			*reply_r = &up->held;
			return 1;
		}
		if (!refused && r->code / 100 != 2) {
			refused = true;
			*failed_r = i;
			smtp_upstream_hold(up, r);
		}
	}
	smtp_upstream_enter(up, UP_STATE_READY);
	if (!refused)
		return 0;
	*reply_r = &up->held;
	return 1;
}

int smtp_upstream_send_message(smtp_upstream *up, smtp_spool *spool,
			       const smtp_reply **reply_r)
{
	if (smtp_upstream_command(up, "DATA", "DATA", reply_r) < 0)
		return -1;
	if ((*reply_r)->code != 354) {
		/* Only a refusal may stand as the answer to the message: a
		 * success here would tell the client its message was accepted
		 * when no content was sent. */
		int cls = (*reply_r)->code / 100;
		if (cls != 4 && cls != 5) {
			smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
					   "the provider answered DATA with %d",
					   (*reply_r)->code);
			return -1;
		}
		return 0;
	}
	if (up->chunk == NULL)
		up->chunk = malloc(SMTP_UPSTREAM_CHUNK);
	if (up->stuffed == NULL)
		up->stuffed = malloc(2 * SMTP_UPSTREAM_CHUNK);
	const char *error;
	if (up->chunk == NULL || up->stuffed == NULL ||
	    smtp_spool_rewind(spool, &error) < 0) {
		/* The provider waits for content it will not get in full:
		 * this connection cannot continue. */
		smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
				   "cannot read the spooled message");
		return -1;
	}
	smtp_upstream_enter(up, UP_STATE_BODY);
	smtp_dot_stuffer st;
	smtp_dot_stuffer_init(&st);
	for (;;) {
		ssize_t n = smtp_spool_read(spool, up->chunk, SMTP_UPSTREAM_CHUNK, &error);
		if (n < 0) {
			smtp_upstream_fail(up, SMTP_UPSTREAM_FAIL_LOST,
					   "cannot read the spooled message: %s", error);
			return -1;
		}
		if (n == 0)
			break;
		size_t w = smtp_dot_stuffer_feed(&st, up->chunk, (size_t)n, up->stuffed,
						 2 * SMTP_UPSTREAM_CHUNK);
		if (conn_write(up->c, up->stuffed, w) < 0) {
			smtp_upstream_io_failed(up, "message content");
			return -1;
		}
	}
	log_debug(up->env->id, "sending message to provider", "%llu bytes, then the final dot",
		  (unsigned long long)st.written);
	if (conn_write_str(up->c, smtp_dot_stuffer_end(&st)) < 0 || conn_flush(up->c) < 0) {
		smtp_upstream_io_failed(up, "end of data");
		return -1;
	}
	if (smtp_upstream_read_reply(up, "end of data", reply_r) < 0)
		return -1;
	smtp_upstream_enter(up, UP_STATE_READY);
	smtp_upstream_check_421(up, *reply_r);
	return 0;
}

conn *smtp_upstream_conn(smtp_upstream *up)
{
	return smtp_upstream_usable(up) ? up->c : NULL;
}

bool smtp_upstream_poll_idle(smtp_upstream *up)
{
	if (!smtp_upstream_usable(up))
		return false;
	ssize_t n = conn_fill_nowait(up->c);
	if (smtp_upstream_unasked(up))
		return false;
	if (n == -2)
		return true;	/* TLS housekeeping (tickets), nothing for us */
	smtp_upstream_io_failed(up, "waiting");
	return false;
}
