/* smtp_session: sealpost's SMTP server side for the mail client — an explicit
 * state machine driven by a command table; the provider is reached through
 * smtp_upstream and each message waits in an smtp_spool until it is relayed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "smtp_outbound.h"
#include "smtp_parser.h"
#include "smtp_spool.h"
#include "smtp_upstream.h"

/* The name sealpost uses for itself towards the client. It never repeats
 * the provider's greeting: nothing said before TLS reaches the client. */
#define SMTP_HOSTNAME "localhost"
/* Local 5xx answers to nonsense before the session is dropped. */
#define SMTP_MAX_ERRORS 10
#define SMTP_MAX_RCPTS 1000
/* Messages up to this size stay in memory, bigger ones go to a file. */
#define SMTP_SPOOL_MEMORY (1024 * 1024)
/* A gateway holds many sessions at once: less of each message in memory. */
#define SMTP_GATEWAY_SPOOL_MEMORY (256 * 1024)
#define SMTP_BODY_CHUNK (16 * 1024)
/* Command lines: RFC 5321's 512 bytes is too little for real clients (AUTH
 * lines carry OAuth tokens of several KiB; RFC 4954 allows 12288 bytes), so
 * a command line may be as long as max_line_length, but never shorter than
 * 12288 bytes, and never longer than 64 KiB, which no SMTP command needs —
 * that keeps the memory of an idle session small whatever the setting. */
#define SMTP_COMMAND_LINE_MIN 12288
#define SMTP_COMMAND_LINE_MAX (64 * 1024)

typedef enum {
	SMTP_STATE_NEW,		/* before the greeting (TLS first for smtps) */
	SMTP_STATE_CONNECTED,	/* greeted, waiting for EHLO/HELO */
	SMTP_STATE_HELO,	/* EHLO done, no transaction (AUTH or MAIL next) */
	SMTP_STATE_AUTH,	/* an AUTH exchange with the provider is open */
	SMTP_STATE_MAIL,	/* the provider accepted MAIL */
	SMTP_STATE_RCPT,	/* ... and at least one RCPT */
	SMTP_STATE_BODY,	/* reading the message into the spool */
	SMTP_STATE_RELAY,	/* handing the message to the provider */
	SMTP_STATE_QUIT,	/* the session is ending */
} smtp_state;

static const char *const smtp_state_names[] = {
	[SMTP_STATE_NEW] = "new",
	[SMTP_STATE_CONNECTED] = "connected",
	[SMTP_STATE_HELO] = "helo",
	[SMTP_STATE_AUTH] = "auth",
	[SMTP_STATE_MAIL] = "mail",
	[SMTP_STATE_RCPT] = "rcpt",
	[SMTP_STATE_BODY] = "body",
	[SMTP_STATE_RELAY] = "relay",
	[SMTP_STATE_QUIT] = "quit",
};

/* One mail transaction: what the provider accepted so far. Encryption
 * works for exactly these recipients, and when a message leaves as several
 * copies (Bcc) the envelope is replayed from here. */
typedef struct {
	char *reverse_path;
	char *mail_params;	/* " KEY=VALUE ..." as sent, SIZE left out */
	bool mail_size;		/* the client declared a SIZE */
	uint64_t mail_size_value; /* what it declared; 0 when not a number */
	char **rcpts;		/* paths as sent */
	char **rcpt_params;	/* " NOTIFY=... ORCPT=..." as sent, or "" */
	char **rcpt_addrs;	/* bare addresses; NULL when the path has none */
	size_t n_rcpts, rcpts_cap;
	bool open_upstream;	/* MAIL accepted upstream: RSET it on abort */
} smtp_tx;

typedef struct {
	const session_env *env;
	conn *client;
	smtp_upstream *up;	/* NULL until the first EHLO/HELO */
	smtp_command_parser *parser;
	smtp_data_reader *reader;
	smtp_spool *spool;
	smtp_spool *out_spool;	/* one copy of the message as it leaves */
	smtp_outbound *outbound;
	uint8_t *body_out;	/* un-dot-stuffed bytes on their way to the spool */
	smtp_state state;
	bool authenticated;
	bool spool_failed;
	char spool_error[256];
	smtp_tx tx;
	unsigned errors;
	unsigned messages;
	/* A gateway's session (env->account->gateway): no AUTH, the client
	 * is an MTA from an allowed network, the upstream is the next hop. */
	const config_gateway *gateway;
	metrics_mode mode;
	char helo_name[256];	/* what the next hop hears, again on reconnect */
	int64_t data_end_ms;	/* when the current message's final dot came */
	char reply[640];	/* a reply put together by a check_ function */
	char end_reason[384];
} smtp_session;

typedef struct {
	const char *verb;
	/* Validates only: NULL when the command may go ahead, else the
	 * complete reply line. MAIL and RCPT leave their parsed arguments. */
	const char *(*check)(smtp_session *s, const smtp_command *cmd,
			     smtp_path_args *args);
	/* Acts, replies, moves the state machine. */
	void (*proceed)(smtp_session *s, const smtp_command *cmd,
			const smtp_path_args *args);
} smtp_command_def;

/* ---- basics -------------------------------------------------------------- */

static int64_t smtp_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void smtp_session_enter(smtp_session *s, smtp_state state)
{
	if (s->state == state)
		return;
	log_debug(s->env->id, "session state", "%s -> %s",
		  smtp_state_names[s->state], smtp_state_names[state]);
	s->state = state;
}

/* Ends the session after the current step; the first reason is kept. */
static void smtp_session_end(smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void smtp_session_end(smtp_session *s, const char *fmt, ...)
{
	if (s->end_reason[0] == '\0') {
		va_list args;
		va_start(args, fmt);
		vsnprintf(s->end_reason, sizeof(s->end_reason), fmt, args);
		va_end(args);
	}
	smtp_session_enter(s, SMTP_STATE_QUIT);
}

/* Queues one reply line; it is flushed when the client has nothing more
 * pipelined (smtp_session_wait_client). */
static void smtp_session_reply(smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void smtp_session_reply(smtp_session *s, const char *fmt, ...)
{
	char small[512];
	va_list args, copy;
	va_start(args, fmt);
	va_copy(copy, args);
	int n = vsnprintf(small, sizeof(small), fmt, args);
	va_end(args);
	char *line = small;
	if (n >= 0 && (size_t)n >= sizeof(small)) {
		/* Long provider texts (challenges) are passed on whole. */
		line = malloc((size_t)n + 1);
		if (line != NULL)
			vsnprintf(line, (size_t)n + 1, fmt, copy);
	}
	va_end(copy);
	if (n < 0 || line == NULL) {
		smtp_session_end(s, "out of memory");
		return;
	}
	log_debug(s->env->id, "replying to client", "%s", line);
	if (conn_write(s->client, line, (size_t)n) < 0 ||
	    conn_write(s->client, "\r\n", 2) < 0)
		smtp_session_end(s, "writing to client: %s", conn_last_error(s->client));
	if (line != small)
		free(line);
}

/* The provider's reply, code and lines as they were. */
static void smtp_session_relay_reply(smtp_session *s, const smtp_reply *r)
{
	for (size_t i = 0; i < r->n_lines; i++) {
		bool last = i + 1 == r->n_lines;
		if (r->lines[i][0] == '\0' && last)
			smtp_session_reply(s, "%03d", r->code);
		else
			smtp_session_reply(s, "%03d%c%s", r->code, last ? ' ' : '-',
					   r->lines[i]);
	}
}

static const char *smtp_session_format(smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *smtp_session_format(smtp_session *s, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(s->reply, sizeof(s->reply), fmt, args);
	va_end(args);
	return s->reply;
}

/* Sends a refusal; counts client errors and ends the session when there
 * are too many, or when the reply itself says so (421). */
static void smtp_session_refuse(smtp_session *s, const char *reply)
{
	smtp_session_reply(s, "%s", reply);
	if (strncmp(reply, "421", 3) == 0) {
		smtp_session_end(s, "%s", reply + 4);
		return;
	}
	/* A gateway's client is the organisation's MTA: its recipients
	 * refused by policy are no misbehaviour. */
	if (reply[0] == '5' && s->gateway == NULL && ++s->errors >= SMTP_MAX_ERRORS) {
		smtp_session_reply(s, "421 4.7.0 %s Too many errors, closing connection",
				   SMTP_HOSTNAME);
		smtp_session_end(s, "too many errors from the client");
	}
}

static bool smtp_session_client_may_auth(const smtp_session *s)
{
	if (s->gateway != NULL)
		return false;	/* trusted by its network, never by a password */
	return conn_is_tls(s->client) ||
		(s->env->account->client_plaintext_auth && s->env->client_loopback);
}

/* The one place a provider problem becomes the reply the client sees.
 * NULL when the provider connection can be used. Before TLS to the
 * provider is up nothing can be sent there, so everything is a 454;
 * after, a lost connection is a 421 and the session ends. */
static const char *smtp_session_upstream_refusal(smtp_session *s)
{
	if (s->up == NULL)
		return smtp_session_format(s, "503 5.5.1 Send EHLO first");
	smtp_upstream_failure f = smtp_upstream_failure_of(s->up);
	const char *detail = smtp_upstream_failure_detail(s->up);
	if (f == SMTP_UPSTREAM_OK)
		return NULL;
	if (smtp_upstream_established(s->up))
		return smtp_session_format(s, "421 4.4.2 %s", detail);
	if (s->gateway != NULL)
		/* The MTA keeps the mail queued and tries again. */
		return smtp_session_format(s, "451 4.4.1 The next hop %s is not available: %s; "
					   "try again later", s->env->account->smtp_upstream.url,
					   detail);
	switch (f) {
	case SMTP_UPSTREAM_FAIL_NO_STARTTLS:
	case SMTP_UPSTREAM_FAIL_STARTTLS_REFUSED:
		return smtp_session_format(s, "454 4.7.0 TLS to the provider is not available, "
					   "credentials are not sent in the clear: %s", detail);
	case SMTP_UPSTREAM_FAIL_INJECTION:
	case SMTP_UPSTREAM_FAIL_TLS:
		return smtp_session_format(s, "454 4.7.0 TLS to the provider failed, "
					   "credentials are not sent: %s", detail);
	case SMTP_UPSTREAM_FAIL_CONNECT:
		return smtp_session_format(s, "454 4.7.0 Cannot reach the provider: %s", detail);
	case SMTP_UPSTREAM_FAIL_GREETING:
	case SMTP_UPSTREAM_FAIL_EHLO:
	case SMTP_UPSTREAM_FAIL_LOST:
	case SMTP_UPSTREAM_FAIL_TIMEOUT:
	case SMTP_UPSTREAM_OK:
		break;
	}
	return smtp_session_format(s, "454 4.7.0 The provider connection could not be set up: %s",
				   detail);
}

/* The provider went away in the middle of a command. */
static void smtp_session_upstream_lost(smtp_session *s)
{
	const char *refusal = smtp_session_upstream_refusal(s);
	smtp_session_refuse(s, refusal != NULL ? refusal :
			    "421 4.4.2 Connection to the provider lost");
}

/* ---- transactions -------------------------------------------------------- */

static void smtp_tx_clear(smtp_tx *tx)
{
	free(tx->reverse_path);
	free(tx->mail_params);
	for (size_t i = 0; i < tx->n_rcpts; i++) {
		free(tx->rcpts[i]);
		free(tx->rcpt_params[i]);
		g_free(tx->rcpt_addrs[i]);
	}
	free(tx->rcpts);
	free(tx->rcpt_params);
	free(tx->rcpt_addrs);
	memset(tx, 0, sizeof(*tx));
}

/* " KEY=VALUE ..." of every parameter except skip (may be NULL). */
static char *smtp_params_text(const smtp_path_args *a, const char *skip)
{
	size_t len = 1;
	for (size_t i = 0; i < a->n_params; i++)
		len += 1 + a->params[i].len;
	char *out = malloc(len);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < a->n_params; i++) {
		const smtp_param *p = &a->params[i];
		if (skip != NULL && p->key_len == strlen(skip) &&
		    strncasecmp(p->text, skip, p->key_len) == 0)
			continue;
		out[o++] = ' ';
		memcpy(out + o, p->text, p->len);
		o += p->len;
	}
	out[o] = '\0';
	return out;
}

/* Drops the transaction here and at the provider. -1 when the provider
 * connection was lost doing so (already answered with 421). */
static int smtp_session_tx_abort(smtp_session *s)
{
	bool open = s->tx.open_upstream;
	smtp_tx_clear(&s->tx);
	if (s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT ||
	    s->state == SMTP_STATE_BODY || s->state == SMTP_STATE_RELAY)
		smtp_session_enter(s, SMTP_STATE_HELO);
	if (!open || s->up == NULL || !smtp_upstream_usable(s->up))
		return 0;
	const smtp_reply *r;
	if (smtp_upstream_command(s->up, "RSET", "RSET", &r) < 0 ||
	    !smtp_upstream_usable(s->up)) {
		smtp_session_upstream_lost(s);
		return -1;
	}
	return 0;
}

static int smtp_tx_add_rcpt(smtp_tx *tx, const smtp_path_args *args)
{
	if (tx->n_rcpts == tx->rcpts_cap) {
		size_t cap = tx->rcpts_cap == 0 ? 8 : tx->rcpts_cap * 2;
		char **r = realloc(tx->rcpts, cap * sizeof(*r));
		if (r != NULL)
			tx->rcpts = r;
		char **rp = realloc(tx->rcpt_params, cap * sizeof(*rp));
		if (rp != NULL)
			tx->rcpt_params = rp;
		char **ra = realloc(tx->rcpt_addrs, cap * sizeof(*ra));
		if (ra != NULL)
			tx->rcpt_addrs = ra;
		if (r == NULL || rp == NULL || ra == NULL)
			return -1;
		tx->rcpts_cap = cap;
	}
	char *p = strndup(args->path, args->path_len);
	char *params = smtp_params_text(args, NULL);
	if (p == NULL || params == NULL) {
		free(p);
		free(params);
		return -1;
	}
	tx->rcpts[tx->n_rcpts] = p;
	tx->rcpt_params[tx->n_rcpts] = params;
	tx->rcpt_addrs[tx->n_rcpts] = smtp_outbound_path_address(args->path, args->path_len);
	tx->n_rcpts++;
	return 0;
}

/* ---- TLS with the client ------------------------------------------------- */

static int smtp_session_start_tls(smtp_session *s)
{
	const char *error;
	const config_limits *lim = &s->env->cfg->limits;
	conn_set_timeout(s->client, (int)lim->connect_timeout * 1000);
	if (conn_starttls_server(s->client, s->env->tls_srv, &error) < 0) {
		smtp_session_end(s, "TLS handshake with client failed: %s", error);
		return -1;
	}
	conn_set_timeout(s->client, (int)lim->idle_timeout * 1000);
	log_info(s->env->id, "starting TLS with client", "handshake done");
	return 0;
}

/* ---- EHLO / HELO ---------------------------------------------------------- */

/* What the provider hears as our EHLO name: the client's, when it is a
 * plain host name or address literal, else "localhost". */
static const char *smtp_helo_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 255)
		return "localhost";
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
			c == '[' || c == ']' || c == ':';
		if (!ok)
			return "localhost";
	}
	return name;
}

static const char *check_helo(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	(void)args;
	if (cmd->args[0] == '\0')
		return smtp_session_format(s, "501 5.5.4 Syntax: %s hostname", cmd->verb);
	return NULL;
}

/* Appends the AUTH mechanisms the client may use through us: everything
 * the provider offers except channel-bound ones (-PLUS), which would bind
 * to our TLS session instead of the client's. */
static void smtp_auth_mechanisms(const char *offered, char *out, size_t size)
{
	size_t o = 0;
	out[0] = '\0';
	while (*offered != '\0') {
		while (*offered == ' ')
			offered++;
		size_t len = strcspn(offered, " ");
		if (len == 0)
			break;
		bool plus = len > 5 && strncasecmp(offered + len - 5, "-PLUS", 5) == 0;
		if (!plus && o + len + 2 < size) {
			if (o > 0)
				out[o++] = ' ';
			memcpy(out + o, offered, len);
			o += len;
			out[o] = '\0';
		}
		offered += len;
	}
}

static void smtp_session_ehlo_reply(smtp_session *s)
{
	char lines[12][300];
	size_t n = 0;
	smtp_upstream *up = s->up;
	bool ok = smtp_upstream_usable(up);
	const char *v;

	snprintf(lines[n++], sizeof(lines[0]), "%s", SMTP_HOSTNAME);
	/* Only what the provider has: MAIL/RCPT parameters go there
	 * verbatim. CHUNKING, BINARYMIME, XCLIENT, XFORWARD and anything
	 * unknown are not passed on. */
	if (!ok || smtp_upstream_extension(up, "PIPELINING") != NULL)
		snprintf(lines[n++], sizeof(lines[0]), "PIPELINING");
	if (ok && (v = smtp_upstream_extension(up, "SIZE")) != NULL) {
		uint64_t limit = s->env->cfg->limits.max_message;
		unsigned long long theirs = strtoull(v, NULL, 10);
		if (theirs != 0 && theirs < limit)
			limit = theirs;
		snprintf(lines[n++], sizeof(lines[0]), "SIZE %llu", (unsigned long long)limit);
	}
	if (!ok || smtp_upstream_extension(up, "8BITMIME") != NULL)
		snprintf(lines[n++], sizeof(lines[0]), "8BITMIME");
	if (ok && smtp_upstream_extension(up, "SMTPUTF8") != NULL)
		snprintf(lines[n++], sizeof(lines[0]), "SMTPUTF8");
	if (ok && smtp_upstream_extension(up, "DSN") != NULL)
		snprintf(lines[n++], sizeof(lines[0]), "DSN");
	if (!ok || smtp_upstream_extension(up, "ENHANCEDSTATUSCODES") != NULL)
		snprintf(lines[n++], sizeof(lines[0]), "ENHANCEDSTATUSCODES");
	if (!conn_is_tls(s->client))
		snprintf(lines[n++], sizeof(lines[0]), "STARTTLS");
	if (smtp_session_client_may_auth(s)) {
		char mechs[256];
		/* With the provider unreachable, AUTH is still announced so
		 * that the client tries it and gets the clear 454 reason. */
		v = ok ? smtp_upstream_extension(up, "AUTH") : "PLAIN LOGIN";
		smtp_auth_mechanisms(v != NULL ? v : "", mechs, sizeof(mechs));
		if (mechs[0] != '\0')
			snprintf(lines[n++], sizeof(lines[0]), "AUTH %s", mechs);
	}
	for (size_t i = 0; i < n; i++)
		smtp_session_reply(s, "250%c%s", i + 1 == n ? ' ' : '-', lines[i]);
}

static void proceed_helo(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)args;
	bool ehlo = strcmp(cmd->verb, "EHLO") == 0;
	snprintf(s->helo_name, sizeof(s->helo_name), "%s", smtp_helo_name(cmd->args));
	if (s->up == NULL) {
		/* The provider is reached at the first EHLO, so that AUTH can
		 * be offered with the provider's mechanisms. */
		s->up = smtp_upstream_open(s->env, s->helo_name);
		if (s->up == NULL) {
			smtp_session_reply(s, "421 4.3.0 %s Out of memory", SMTP_HOSTNAME);
			smtp_session_end(s, "out of memory");
			return;
		}
		if (smtp_upstream_usable(s->up))
			log_info(s->env->id, "connected to provider", "ready");
	} else if (smtp_session_tx_abort(s) < 0) {
		return;		/* EHLO resets a transaction; that failed */
	}
	if (s->state != SMTP_STATE_HELO)
		smtp_session_enter(s, SMTP_STATE_HELO);
	if (ehlo)
		smtp_session_ehlo_reply(s);
	else
		smtp_session_reply(s, "250 %s", SMTP_HOSTNAME);
}

/* ---- STARTTLS ------------------------------------------------------------- */

static const char *check_starttls(smtp_session *s, const smtp_command *cmd,
				  smtp_path_args *args)
{
	(void)args;
	if (cmd->args[0] != '\0')
		return smtp_session_format(s, "501 5.5.4 Syntax: STARTTLS");
	if (conn_is_tls(s->client))
		return smtp_session_format(s, "503 5.5.1 TLS already active");
	if (s->authenticated)
		return smtp_session_format(s, "503 5.5.1 Already authenticated");
	if (s->state != SMTP_STATE_CONNECTED && s->state != SMTP_STATE_HELO)
		return smtp_session_format(s, "503 5.5.1 Not allowed during a mail transaction");
	return NULL;
}

static void proceed_starttls(smtp_session *s, const smtp_command *cmd,
			     const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	smtp_session_reply(s, "220 2.0.0 Ready to start TLS");
	if (conn_flush(s->client) < 0) {
		smtp_session_end(s, "writing to client: %s", conn_last_error(s->client));
		return;
	}
	/* Whatever the client sent after STARTTLS in the clear must not be
	 * taken as said under TLS. */
	size_t pipelined = conn_input_len(s->client);
	if (pipelined > 0)
		log_warn(s->env->id, "starting TLS with client",
			 "discarding %zu bytes sent after STARTTLS", pipelined);
	conn_discard_input(s->client);
	smtp_command_parser_reset(s->parser);
	if (smtp_session_start_tls(s) < 0)
		return;
	/* RFC 3207: everything learnt before TLS is forgotten. */
	smtp_session_enter(s, SMTP_STATE_CONNECTED);
}

/* ---- AUTH ------------------------------------------------------------------ */

static const char *check_auth(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	(void)args;
	if (s->state == SMTP_STATE_CONNECTED)
		return smtp_session_format(s, "503 5.5.1 Send EHLO first");
	if (s->authenticated)
		return smtp_session_format(s, "503 5.5.1 Already authenticated");
	if (s->state != SMTP_STATE_HELO)
		return smtp_session_format(s, "503 5.5.1 Not allowed during a mail transaction");
	if (!smtp_session_client_may_auth(s))
		return smtp_session_format(s, "530 5.7.0 Must issue a STARTTLS command first");
	const char *refusal = smtp_session_upstream_refusal(s);
	if (refusal != NULL)
		return refusal;
	size_t mech_len = strcspn(cmd->args, " ");
	if (mech_len == 0 || mech_len > 40)
		return smtp_session_format(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
	for (size_t i = 0; i < mech_len; i++) {
		char c = cmd->args[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return smtp_session_format(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
	}
	const char *ir = cmd->args + mech_len;
	if (*ir == ' ' && strchr(ir + 1, ' ') != NULL)
		return smtp_session_format(s, "501 5.5.2 Invalid initial response");
	return NULL;
}

/* What the client hears back: 334 challenges as they are, everything else
 * in sealpost's own words so nobody can probe the provider's user base
 * through us; the codes stay. */
static void smtp_session_auth_result(smtp_session *s, const smtp_reply *r)
{
	const char *id = s->env->id;
	if (r->code == 334) {
		smtp_session_enter(s, SMTP_STATE_AUTH);
		smtp_session_reply(s, "334 %s", r->lines[0]);
		return;
	}
	smtp_session_enter(s, SMTP_STATE_HELO);
	if (r->code == 421 || !smtp_upstream_usable(s->up)) {
		smtp_session_upstream_lost(s);
		return;
	}
	if (r->code == 235) {
		s->authenticated = true;
		log_info(id, "authenticating", "the provider accepted the credentials");
		smtp_session_reply(s, "235 2.7.0 Authentication successful");
		return;
	}
	log_info(id, "authenticating", "the provider refused: %d %s", r->code, r->enhanced);
	switch (r->code) {
	case 535:
		smtp_session_reply(s, "535 5.7.8 Authentication credentials invalid");
		break;
	case 454:
		smtp_session_reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	case 501:
		smtp_session_reply(s, "501 5.5.2 Authentication cancelled or malformed response");
		break;
	case 504:
		smtp_session_reply(s, "504 5.5.4 Unrecognized authentication type");
		break;
	case 534:
		smtp_session_reply(s, "534 5.7.9 Authentication mechanism is too weak");
		break;
	case 538:
		smtp_session_reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		break;
	default:
		if (r->code >= 400 && r->code < 500)
			smtp_session_reply(s, "%d 4.7.0 Temporary authentication failure", r->code);
		else
			smtp_session_reply(s, "%d 5.7.8 Authentication failed",
					   r->code >= 500 ? r->code : 535);
		break;
	}
}

/* Sends a line that holds credentials; the buffer is wiped after. */
static void smtp_session_auth_send(smtp_session *s, const char *line, size_t len,
				   const char *log_line)
{
	const smtp_reply *r;
	int ret = smtp_upstream_command(s->up, line, log_line, &r);
	explicit_bzero((char *)line, len);
	if (ret < 0) {
		smtp_session_enter(s, SMTP_STATE_HELO);
		smtp_session_upstream_lost(s);
		return;
	}
	smtp_session_auth_result(s, r);
}

static void proceed_auth(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)args;
	size_t mech_len = strcspn(cmd->args, " ");
	char mech[48];
	for (size_t i = 0; i < mech_len; i++) {
		char c = cmd->args[i];
		mech[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
	}
	mech[mech_len] = '\0';
	const char *ir = cmd->args[mech_len] == ' ' ? cmd->args + mech_len + 1 : NULL;
	log_info(s->env->id, "sending AUTH to upstream", "mechanism %s%s", mech,
		 ir != NULL ? ", initial response " LOG_SECRET : "");
	size_t len = 6 + mech_len + (ir != NULL ? strlen(ir) + 1 : 0) + 1;
	char *line = malloc(len);
	if (line == NULL) {
		smtp_session_reply(s, "454 4.3.0 Out of memory");
		return;
	}
	snprintf(line, len, "AUTH %s%s%s", mech, ir != NULL ? " " : "", ir != NULL ? ir : "");
	char log_line[80];
	snprintf(log_line, sizeof(log_line), "AUTH %s%s", mech, ir != NULL ? " " LOG_SECRET : "");
	smtp_session_auth_send(s, line, len, log_line);
	free(line);
	/* The client's copy of the initial response is in the parser buffer
	 * until the next line overwrites it; wipe it now. */
	explicit_bzero((char *)cmd->line, cmd->line_len);
	explicit_bzero((char *)cmd->args, strlen(cmd->args));
}

/* A line of an open AUTH exchange: passed to the provider as it is. */
static void smtp_session_auth_continue(smtp_session *s, const smtp_command *cmd)
{
	bool cancel = strcmp(cmd->line, "*") == 0;
	log_debug(s->env->id, "sending AUTH response to upstream", "%s",
		  cancel ? "* (client cancels)" : LOG_SECRET);
	smtp_session_auth_send(s, cmd->line, cmd->line_len,
			       cancel ? "*" : "(AUTH response) " LOG_SECRET);
	explicit_bzero((char *)cmd->args, strlen(cmd->args));
}

/* The client's AUTH line could not be read (too long): cancel upstream. */
static void smtp_session_auth_abort(smtp_session *s)
{
	const smtp_reply *r;
	smtp_session_enter(s, SMTP_STATE_HELO);
	if (smtp_upstream_command(s->up, "*", "* (cancelling AUTH)", &r) < 0)
		log_warn(s->env->id, "cancelling AUTH", "%s", smtp_upstream_failure_detail(s->up));
}

/* ---- MAIL / RCPT ----------------------------------------------------------- */

/* A gateway's next hop that went away (restarted, idle timeout) is
 * reached again at the next transaction: each MAIL may start afresh. */
static void smtp_session_gateway_reconnect(smtp_session *s)
{
	if (s->gateway == NULL || s->state != SMTP_STATE_HELO ||
	    (s->up != NULL && smtp_upstream_usable(s->up)))
		return;
	smtp_upstream_free(&s->up);
	s->up = smtp_upstream_open(s->env, s->helo_name[0] != '\0' ? s->helo_name : "localhost");
	if (s->up != NULL && smtp_upstream_usable(s->up))
		log_info(s->env->id, "connected to next hop", "ready");
}

static const char *check_mail(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	const char *error;
	if (s->state == SMTP_STATE_CONNECTED)
		return smtp_session_format(s, "503 5.5.1 Send EHLO first");
	smtp_session_gateway_reconnect(s);
	if (s->up == NULL && s->gateway != NULL)
		return smtp_session_format(s, "451 4.3.0 Out of memory, try again later");
	/* A provider we cannot use is the clearer answer, also before AUTH. */
	const char *refusal = smtp_session_upstream_refusal(s);
	if (refusal != NULL)
		return refusal;
	if (!s->authenticated && s->gateway == NULL)
		return smtp_session_format(s, "530 5.7.0 Authentication required");
	if (s->state != SMTP_STATE_HELO)
		return smtp_session_format(s, "503 5.5.1 Nested MAIL command");
	if (smtp_parse_path_args(cmd->args, "FROM:", true, args, &error) < 0)
		return smtp_session_format(s, "501 5.5.4 %s", error);
	const smtp_param *size = smtp_path_args_find(args, "SIZE");
	if (size != NULL && size->value != NULL) {
		char digits[24];
		snprintf(digits, sizeof(digits), "%.*s", (int)size->value_len, size->value);
		uint64_t max = s->env->cfg->limits.max_message;
		if (size->value_len > 20 || strtoull(digits, NULL, 10) > max)
			return smtp_session_format(s, "552 5.3.4 Message size exceeds the limit of %llu bytes",
						   (unsigned long long)max);
	}
	return NULL;
}

/* "MAIL FROM:" / "RCPT TO:" + the path + each parameter, as the client
 * wrote them. */
static char *smtp_envelope_line(const char *verb, const smtp_path_args *a)
{
	size_t len = strlen(verb) + a->path_len + 1;
	for (size_t i = 0; i < a->n_params; i++)
		len += 1 + a->params[i].len;
	char *line = malloc(len);
	if (line == NULL)
		return NULL;
	size_t o = (size_t)sprintf(line, "%s", verb);
	memcpy(line + o, a->path, a->path_len);
	o += a->path_len;
	for (size_t i = 0; i < a->n_params; i++) {
		line[o++] = ' ';
		memcpy(line + o, a->params[i].text, a->params[i].len);
		o += a->params[i].len;
	}
	line[o] = '\0';
	return line;
}

/* Sends MAIL or RCPT with the client's path and parameters verbatim and
 * reads the provider's reply. -1 when the client has been answered
 * already (out of memory, provider lost). */
static int smtp_session_envelope_command(smtp_session *s, const char *verb,
					 const smtp_path_args *args,
					 const smtp_reply **reply_r)
{
	char *line = smtp_envelope_line(verb, args);
	if (line == NULL) {
		smtp_session_reply(s, "451 4.3.0 Out of memory");
		return -1;
	}
	int ret = smtp_upstream_command(s->up, line, line, reply_r);
	free(line);
	if (ret < 0 || !smtp_upstream_usable(s->up)) {
		smtp_session_upstream_lost(s);
		return -1;
	}
	return 0;
}

/* The number a SIZE=n parameter declares; 0 when it is not one. */
static uint64_t smtp_session_size_value(const smtp_param *p)
{
	uint64_t v = 0;
	if (p->value == NULL || p->value_len == 0 || p->value_len > 19)
		return 0;
	for (size_t i = 0; i < p->value_len; i++) {
		if (p->value[i] < '0' || p->value[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(p->value[i] - '0');
	}
	return v;
}

static void proceed_mail(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	const smtp_reply *r;
	if (smtp_session_envelope_command(s, "MAIL FROM:", args, &r) < 0)
		return;
	if (r->code / 100 == 2) {
		s->tx.open_upstream = true;
		s->tx.reverse_path = strndup(args->path, args->path_len);
		s->tx.mail_params = smtp_params_text(args, "SIZE");
		const smtp_param *size = smtp_path_args_find(args, "SIZE");
		s->tx.mail_size = size != NULL;
		s->tx.mail_size_value = size != NULL ? smtp_session_size_value(size) : 0;
		if (s->tx.reverse_path == NULL || s->tx.mail_params == NULL) {
			if (smtp_session_tx_abort(s) == 0)
				smtp_session_reply(s, "451 4.3.0 Out of memory");
			return;
		}
		smtp_session_enter(s, SMTP_STATE_MAIL);
	}
	smtp_session_relay_reply(s, r);
}

static const char *check_rcpt(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	const char *error;
	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT)
		return smtp_session_format(s, "503 5.5.1 Need MAIL command");
	const char *refusal = smtp_session_upstream_refusal(s);
	if (refusal != NULL)
		return refusal;
	if (smtp_parse_path_args(cmd->args, "TO:", false, args, &error) < 0)
		return smtp_session_format(s, "501 5.5.4 %s", error);
	if (s->tx.n_rcpts >= SMTP_MAX_RCPTS)
		return smtp_session_format(s, "452 4.5.3 Too many recipients");
	char *address = smtp_outbound_path_address(args->path, args->path_len);
	const char *refusal_now = smtp_outbound_check_rcpt(s->outbound, address);
	g_free(address);
	if (refusal_now != NULL)
		return smtp_session_format(s, "%s", refusal_now);
	return NULL;
}

static void proceed_rcpt(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	const smtp_reply *r;
	/* Recorded before the provider hears of it: a recipient the provider
	 * has must never be one sealpost does not know about. */
	if (smtp_tx_add_rcpt(&s->tx, args) < 0) {
		smtp_session_reply(s, "451 4.3.0 Out of memory");
		return;
	}
	if (smtp_session_envelope_command(s, "RCPT TO:", args, &r) < 0)
		return;
	if (r->code / 100 == 2) {
		smtp_session_enter(s, SMTP_STATE_RCPT);
	} else {
		size_t last = --s->tx.n_rcpts;
		free(s->tx.rcpts[last]);
		free(s->tx.rcpt_params[last]);
		g_free(s->tx.rcpt_addrs[last]);
	}
	smtp_session_relay_reply(s, r);
}

/* ---- DATA ------------------------------------------------------------------ */

static const char *check_data(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	(void)args;
	if (cmd->args[0] != '\0')
		return smtp_session_format(s, "501 5.5.4 Syntax: DATA");
	if (s->state == SMTP_STATE_MAIL)
		return smtp_session_format(s, "554 5.5.1 No valid recipients");
	if (s->state != SMTP_STATE_RCPT)
		return smtp_session_format(s, "503 5.5.1 Need MAIL and RCPT commands first");
	return smtp_session_upstream_refusal(s);
}

static void proceed_data(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	/* The message is taken in whole before the provider hears of it:
	 * outbound encryption will work on the spool, and a client that stops
	 * halfway must not leave half a message at the provider. */
	/* The reader ends the message only at CRLF "." CRLF; bare LF and bare
	 * CR are normalised to CRLF in the spool, never taken as line ends
	 * for the terminator (smtp_parser.h), so no command can be smuggled
	 * past us to the provider. */
	smtp_spool_clear(s->spool);
	smtp_data_reader_reset(s->reader, s->env->cfg->limits.max_message);
	s->spool_failed = false;
	smtp_session_enter(s, SMTP_STATE_BODY);
	smtp_session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* RSET (when a transaction is open), then MAIL and the copy's RCPTs again,
 * pipelined when the provider allows: the client's parameters with SIZE set
 * to what is really sent. 0 when the provider accepted them all; 1 with
 * *r_out its refusal; -1 when the connection failed. */
static int smtp_session_replay_envelope(smtp_session *s, const size_t *idx, size_t n,
					uint64_t size, const smtp_reply **r_out)
{
	GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
	bool rset = s->tx.open_upstream;
	if (rset)
		g_ptr_array_add(lines, g_strdup("RSET"));
	if (s->tx.mail_size)
		g_ptr_array_add(lines, g_strdup_printf("MAIL FROM:%s%s SIZE=%llu", s->tx.reverse_path,
						       s->tx.mail_params, (unsigned long long)size));
	else
		g_ptr_array_add(lines, g_strdup_printf("MAIL FROM:%s%s", s->tx.reverse_path,
						       s->tx.mail_params));
	for (size_t k = 0; k < n; k++)
		g_ptr_array_add(lines, g_strdup_printf("RCPT TO:%s%s", s->tx.rcpts[idx[k]],
						       s->tx.rcpt_params[idx[k]]));
	size_t failed;
	s->tx.open_upstream = false;
	int ret = smtp_upstream_commands(s->up, (const char *const *)lines->pdata, lines->len,
					 &failed, r_out);
	g_ptr_array_free(lines, TRUE);
	if (ret < 0 || (ret > 0 && (*r_out)->code == 421))
		return -1;
	/* MAIL was accepted (possibly RCPTs refused): the provider has a
	 * transaction open that an RSET must close. */
	size_t mail_index = rset ? 1 : 0;
	/* Refused RSET: the earlier transaction may still be open. */
	if (ret == 0 || failed > mail_index || (rset && failed == 0))
		s->tx.open_upstream = true;
	return ret;
}

/* RSET at the provider without a reply to the client; false when the
 * connection was lost. */
static bool smtp_session_upstream_rset(smtp_session *s)
{
	const smtp_reply *r;
	s->tx.open_upstream = false;
	return smtp_upstream_command(s->up, "RSET", "RSET", &r) == 0 &&
		smtp_upstream_usable(s->up);
}

/* The one place a message's outcome is told: one log line with its
 * Message-ID, the decision and the reason (never content, never the
 * Subject), and the metrics. reply: what the client is answered. */
static void smtp_session_outcome(smtp_session *s, const char *decision, const char *reply,
				 metrics_reason why)
{
	const char *mid = smtp_outbound_message_id(s->outbound);
	char safe_mid[200];
	snprintf(safe_mid, sizeof(safe_mid), "%s", mid != NULL ? mid : "");
	for (char *p = safe_mid; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == ' ')
			*p = '?';
	}
	char safe_reply[300];
	snprintf(safe_reply, sizeof(safe_reply), "%s", reply);
	for (char *p = safe_reply; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	bool ok = reply[0] == '2';
	double seconds = (double)(smtp_now_ms() - s->data_end_ms) / 1000.0;
	log_info(s->env->id, "message done", "message-id=<%s> decision=%s reason=%s%s%s",
		 safe_mid, decision, ok ? "" : metrics_reason_name(why),
		 ok ? "" : ": ", safe_reply);
	metrics_message_latency(s->mode, seconds);
	if (ok)
		return;
	if (reply[0] == '4')
		metrics_message_tempfailed(s->mode, why);
	else
		metrics_message_refused(s->mode, why);
	if (why == METRICS_REASON_OPENPGP)
		metrics_gpg_failure(s->mode);
}

/* Renders and sends each copy the policy decided on; answers the client
 * with the provider's last reply, or with the first failure. */
static void smtp_session_relay_copies(smtp_session *s)
{
	const char *id = s->env->id;
	size_t n_copies = smtp_outbound_n_copies(s->outbound);
	size_t delivered = 0;
	GString *decision = g_string_new(NULL);
	char failure[1024] = "";
	metrics_reason why = METRICS_REASON_NEXT_HOP_REPLY;
	bool any_encrypted = false, any_signed = false, any_passed = false;
	const smtp_reply *r = NULL;
	for (size_t i = 0; i < n_copies; i++) {
		size_t n;
		const size_t *idx = smtp_outbound_copy_rcpts(s->outbound, i, &n);
		const char *what = smtp_outbound_copy_describe(s->outbound, i);
		const char *reply;
		if (smtp_outbound_render(s->outbound, i, s->spool, s->out_spool, &reply) < 0) {
			snprintf(failure, sizeof(failure), "%s", reply);
			why = smtp_outbound_failure_reason(s->outbound);
			break;
		}
		uint64_t out_size = smtp_spool_size(s->out_spool);
		/* The provider's open transaction can carry the copy when it
		 * goes to everyone and the declared size is already the size
		 * of what is sent. Otherwise RSET, and MAIL again with SIZE=
		 * the real size. */
		bool reuse = i == 0 && n_copies == 1 && n == s->tx.n_rcpts &&
			(!s->tx.mail_size || s->tx.mail_size_value == out_size) &&
			s->tx.open_upstream;
		if (!reuse) {
			int ret = smtp_session_replay_envelope(s, idx, n, out_size, &r);
			if (ret < 0) {
				snprintf(failure, sizeof(failure), "451 4.4.2 %s; the message was not sent",
					 smtp_upstream_failure_detail(s->up));
				why = METRICS_REASON_NEXT_HOP;
				break;
			}
			if (ret > 0) {
				log_info(id, "relaying message", "the provider refused the %s copy's envelope: %d %s",
					 what, r->code, r->lines[0]);
				snprintf(failure, sizeof(failure), "%03d %s", r->code, r->lines[0]);
				break;
			}
		}
		log_info(id, "relaying message", "%s copy, %llu bytes, to %zu recipient(s)",
			 what, (unsigned long long)out_size, n);
		int ret = smtp_upstream_send_message(s->up, s->out_spool, &r);
		s->tx.open_upstream = false;
		if (ret < 0) {
			/* Whatever the provider did with it, we cannot say it
			 * took the message: the client keeps it and tries again. */
			const char *detail = smtp_upstream_failure_detail(s->up);
			log_warn(id, "relaying message", "not delivered: %s", detail);
			snprintf(failure, sizeof(failure), "451 4.4.2 %s; the message was not sent", detail);
			why = METRICS_REASON_NEXT_HOP;
			break;
		}
		if (r->code / 100 != 2) {
			log_info(id, "relaying message", "the provider refused it: %d %s",
				 r->code, r->lines[0]);
			/* A provider that refused DATA itself still has MAIL
			 * and RCPT open; RSET closes its transaction. */
			s->tx.open_upstream = true;
			break;
		}
		log_info(id, "relaying message", "the provider accepted it: %d %s",
			 r->code, r->lines[0]);
		delivered++;
		smtp_copy_kind kind = smtp_outbound_copy_kind(s->outbound, i);
		any_encrypted |= kind == SMTP_COPY_ENCRYPTED;
		any_passed |= kind != SMTP_COPY_ENCRYPTED;
		any_signed |= strstr(what, "signed") != NULL;
		if (strstr(decision->str, what) == NULL)
			g_string_append_printf(decision, "%s%s", decision->len > 0 ? "," : "", what);
	}
	bool ok = failure[0] == '\0' && r != NULL && r->code / 100 == 2 && delivered == n_copies;
	if (!ok && delivered > 0)
		log_warn(id, "relaying message", "%zu of %zu copies were delivered before the failure; "
			 "a retry by the client repeats them", delivered, n_copies);
	if (ok) {
		s->messages++;
		smtp_outbound_log(s->outbound, decision->str, NULL);
		char text[600];
		snprintf(text, sizeof(text), "%d %s", r->code, r->lines[0]);
		metrics_message_relayed(s->mode, any_encrypted, any_signed, any_passed);
		smtp_session_outcome(s, decision->str, text, METRICS_REASON_OTHER);
		smtp_session_relay_reply(s, r);
	} else if (failure[0] != '\0') {
		smtp_outbound_log(s->outbound, failure[0] == '4' ? "tempfail" : "refused", failure + 4);
		smtp_session_outcome(s, failure[0] == '4' ? "tempfail" : "refused", failure, why);
		smtp_session_reply(s, "%s", failure);
	} else {
		char text[600];
		snprintf(text, sizeof(text), "%d %s", r->code, r->lines[0]);
		smtp_outbound_log(s->outbound, r->code / 100 == 4 ? "tempfail" : "refused", text);
		smtp_session_outcome(s, r->code / 100 == 4 ? "tempfail" : "refused", text,
				     METRICS_REASON_NEXT_HOP_REPLY);
		smtp_session_relay_reply(s, r);
	}
	g_string_free(decision, TRUE);
	if (s->tx.open_upstream && smtp_upstream_usable(s->up))
		(void)smtp_session_upstream_rset(s);
}

/* The client's final dot has arrived: relay, and answer what the provider
 * answered. 250 only ever comes from the provider. */
static void smtp_session_end_of_data(smtp_session *s)
{
	const char *id = s->env->id;
	s->data_end_ms = smtp_now_ms();
	metrics_message_in(s->mode);
	uint64_t size = smtp_data_reader_size(s->reader);
	uint64_t bare_lf = smtp_data_reader_bare_lf(s->reader);
	uint64_t bare_cr = smtp_data_reader_bare_cr(s->reader);
	if (bare_lf > 0 || bare_cr > 0)
		log_info(id, "reading message", "normalised %llu bare LF and %llu bare CR to CRLF",
			 (unsigned long long)bare_lf, (unsigned long long)bare_cr);
	if (smtp_data_reader_too_big(s->reader)) {
		log_warn(id, "reading message", "%llu bytes, over the limit of %llu; not relayed",
			 (unsigned long long)size,
			 (unsigned long long)s->env->cfg->limits.max_message);
		smtp_session_outcome(s, "refused", "552 5.3.4 Message too big",
				     METRICS_REASON_MESSAGE);
		if (smtp_session_tx_abort(s) == 0)
			smtp_session_reply(s, "552 5.3.4 Message too big (limit %llu bytes)",
					   (unsigned long long)s->env->cfg->limits.max_message);
		smtp_spool_clear(s->spool);
		return;
	}
	if (s->spool_failed) {
		log_error(id, "spooling message", "%s", s->spool_error);
		smtp_session_outcome(s, "tempfail", "451 4.3.0 Cannot store the message",
				     METRICS_REASON_SPOOL);
		if (smtp_session_tx_abort(s) == 0)
			smtp_session_reply(s, "451 4.3.0 Cannot store the message, try again later");
		smtp_spool_clear(s->spool);
		return;
	}

	smtp_session_enter(s, SMTP_STATE_RELAY);
	log_info(id, "relaying message", "%llu bytes%s from %s to %zu recipient(s)",
		 (unsigned long long)size, smtp_spool_on_disk(s->spool) ? " (spooled to disk)" : "",
		 s->tx.reverse_path != NULL ? s->tx.reverse_path : "?", s->tx.n_rcpts);
	const char *reply;
	if (smtp_outbound_decide(s->outbound, s->spool, s->tx.rcpt_addrs, s->tx.n_rcpts,
				 &reply) < 0) {
		/* Nothing goes to the provider: its transaction is reset. */
		char copy[1024];
		snprintf(copy, sizeof(copy), "%s", reply);
		smtp_session_outcome(s, copy[0] == '4' ? "tempfail" : "refused", copy,
				     smtp_outbound_failure_reason(s->outbound));
		if (smtp_session_tx_abort(s) == 0)
			smtp_session_reply(s, "%s", copy);
		smtp_spool_clear(s->spool);
		smtp_outbound_reset(s->outbound);
		return;
	}
	smtp_session_relay_copies(s);
	smtp_spool_clear(s->spool);
	smtp_spool_clear(s->out_spool);
	smtp_outbound_reset(s->outbound);
	smtp_tx_clear(&s->tx);
	smtp_session_enter(s, SMTP_STATE_HELO);
	if (!smtp_upstream_usable(s->up))
		smtp_session_end(s, "%s", smtp_upstream_failure_detail(s->up));
}

/* ---- small commands --------------------------------------------------------- */

static const char *check_none(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	(void)s;
	(void)cmd;
	(void)args;
	return NULL;
}

static void proceed_rset(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	if (smtp_session_tx_abort(s) == 0)
		smtp_session_reply(s, "250 2.0.0 Ok");
}

static void proceed_noop(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	smtp_session_reply(s, "250 2.0.0 Ok");
}

static void proceed_quit(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	smtp_session_reply(s, "221 2.0.0 Bye");
	smtp_session_end(s, "client said QUIT");
}

static void proceed_help(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	smtp_session_reply(s, "214-2.0.0 sealpost relays your mail to your provider.");
	smtp_session_reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA "
			   "RSET NOOP QUIT HELP VRFY");
}

static const char *check_vrfy(smtp_session *s, const smtp_command *cmd,
			      smtp_path_args *args)
{
	(void)args;
	if (cmd->args[0] == '\0')
		return smtp_session_format(s, "501 5.5.4 Syntax: VRFY address");
	return NULL;
}

static void proceed_vrfy(smtp_session *s, const smtp_command *cmd,
			 const smtp_path_args *args)
{
	(void)cmd;
	(void)args;
	/* Addresses are the provider's business; nothing is revealed here. */
	smtp_session_reply(s, "252 2.5.0 Cannot verify the address, but will try delivery");
}

static const char *check_not_offered(smtp_session *s, const smtp_command *cmd,
				     smtp_path_args *args)
{
	(void)args;
	return smtp_session_format(s, "502 5.5.1 %s is not available", cmd->verb);
}

static const smtp_command_def smtp_commands[] = {
	{ "EHLO", check_helo, proceed_helo },
	{ "HELO", check_helo, proceed_helo },
	{ "STARTTLS", check_starttls, proceed_starttls },
	{ "AUTH", check_auth, proceed_auth },
	{ "MAIL", check_mail, proceed_mail },
	{ "RCPT", check_rcpt, proceed_rcpt },
	{ "DATA", check_data, proceed_data },
	{ "RSET", check_none, proceed_rset },
	{ "NOOP", check_none, proceed_noop },
	{ "QUIT", check_none, proceed_quit },
	{ "HELP", check_none, proceed_help },
	{ "VRFY", check_vrfy, proceed_vrfy },
	/* Never announced; a client that tries gets a clean refusal. */
	{ "EXPN", check_not_offered, NULL },
	{ "BDAT", check_not_offered, NULL },
	{ "ETRN", check_not_offered, NULL },
	{ "TURN", check_not_offered, NULL },
};

static void smtp_session_dispatch(smtp_session *s, const smtp_command *cmd)
{
	if (s->state == SMTP_STATE_AUTH) {
		smtp_session_auth_continue(s, cmd);
		return;
	}
	const smtp_command_def *def = NULL;
	for (size_t i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]); i++) {
		if (strcmp(cmd->verb, smtp_commands[i].verb) == 0) {
			def = &smtp_commands[i];
			break;
		}
	}
	if (def == NULL) {
		/* Not echoed: a confused client may be sending the lines of
		 * an AUTH exchange we refused, i.e. its password. */
		log_debug(s->env->id, "reading command", "unrecognized (%zu bytes)",
			  cmd->line_len);
		smtp_session_refuse(s, "500 5.5.1 Command unrecognized");
		return;
	}
	if (strcmp(cmd->verb, "AUTH") == 0)
		log_debug(s->env->id, "reading command", "AUTH %.*s%s",
			  (int)strcspn(cmd->args, " "), cmd->args,
			  strchr(cmd->args, ' ') != NULL ? " " LOG_SECRET : "");
	else
		log_debug(s->env->id, "reading command", "%s", cmd->line);
	smtp_path_args args;
	memset(&args, 0, sizeof(args));
	const char *refusal = def->check(s, cmd, &args);
	if (refusal != NULL) {
		smtp_session_refuse(s, refusal);
		return;
	}
	def->proceed(s, cmd, &args);
}

/* ---- reading from the client ------------------------------------------------ */

/* Waits until the client sent more, flushing the queued replies first
 * unless more input is already at hand (PIPELINING: a group of commands
 * gets its replies in one write). While idle, the provider is watched too:
 * if it goes away, so does the session. 0: there is new input; -1: the
 * session ends. */
static int smtp_session_wait_client(smtp_session *s, bool watch_upstream)
{
	if (!conn_has_pending(s->client) && conn_flush(s->client) < 0) {
		smtp_session_end(s, "writing to client: %s", conn_last_error(s->client));
		return -1;
	}
	int64_t deadline = smtp_now_ms() + (int64_t)s->env->cfg->limits.idle_timeout * 1000;
	for (;;) {
		int64_t left = deadline - smtp_now_ms();
		if (left <= 0) {
			smtp_session_reply(s, "421 4.4.2 %s Idle timeout, closing connection",
					   SMTP_HOSTNAME);
			conn_flush(s->client);
			smtp_session_end(s, "client idle for %u s",
					 s->env->cfg->limits.idle_timeout);
			return -1;
		}
		conn *up = watch_upstream && s->up != NULL ? smtp_upstream_conn(s->up) : NULL;
		int mask = conn_wait_readable(s->client, up, left > 60000 ? 60000 : (int)left);
		if (mask < 0) {
			smtp_session_end(s, "waiting for client: %s", conn_last_error(s->client));
			return -1;
		}
		if ((mask & CONN_WAIT_B) != 0 && !smtp_upstream_poll_idle(s->up)) {
			if (s->gateway != NULL && s->state == SMTP_STATE_HELO) {
				/* No transaction depends on it: the next MAIL
				 * reconnects. */
				log_info(s->env->id, "waiting for client", "the next hop went away: %s",
					 smtp_upstream_failure_detail(s->up));
				smtp_upstream_free(&s->up);
				continue;
			}
			smtp_session_upstream_lost(s);
			conn_flush(s->client);
			return -1;
		}
		if ((mask & CONN_WAIT_A) != 0) {
			ssize_t n = conn_fill_nowait(s->client);
			if (n > 0)
				return 0;
			if (n == 0) {
				smtp_session_end(s, "client closed the connection");
				return -1;
			}
			if (n == -1) {
				smtp_session_end(s, "reading from client: %s",
						 conn_last_error(s->client));
				return -1;
			}
		}
	}
}

/* 0 with the next command line, -1 when the session ends. */
static int smtp_session_read_command(smtp_session *s, const smtp_command **cmd_r)
{
	for (;;) {
		size_t len;
		const uint8_t *in = conn_input(s->client, &len);
		if (len > 0) {
			size_t consumed;
			const char *error;
			smtp_parse_result r = smtp_command_parser_feed(s->parser, in, len,
								       &consumed, cmd_r, &error);
			conn_consume(s->client, consumed);
			if (r == SMTP_PARSE_DONE)
				return 0;
			if (r == SMTP_PARSE_ERROR) {
				log_info(s->env->id, "reading command", "%s", error);
				if (s->state == SMTP_STATE_AUTH)
					smtp_session_auth_abort(s);
				smtp_session_refuse(s, smtp_session_format(s, "500 5.5.2 %s", error));
				if (s->state == SMTP_STATE_QUIT)
					return -1;
			}
			continue;
		}
		if (smtp_session_wait_client(s, s->state != SMTP_STATE_AUTH) < 0)
			return -1;
	}
}

/* Reads the message up to the final dot into the spool. */
static void smtp_session_read_body(smtp_session *s)
{
	for (;;) {
		size_t len;
		const uint8_t *in = conn_input(s->client, &len);
		while (len > 0) {
			size_t consumed, out_len;
			size_t n = len < SMTP_BODY_CHUNK ? len : SMTP_BODY_CHUNK;
			smtp_parse_result r = smtp_data_reader_feed(s->reader, in, n, &consumed,
								    s->body_out,
								    SMTP_BODY_CHUNK * SMTP_DATA_MAX_EXPANSION,
								    &out_len);
			conn_consume(s->client, consumed);
			if (out_len > 0 && !s->spool_failed) {
				const char *error;
				if (smtp_spool_write(s->spool, s->body_out, out_len, &error) < 0) {
					/* Keep reading to the end; the
					 * client hears about it then. */
					s->spool_failed = true;
					snprintf(s->spool_error, sizeof(s->spool_error), "%s", error);
				}
			}
			if (r == SMTP_PARSE_DONE) {
				smtp_session_end_of_data(s);
				return;
			}
			in = conn_input(s->client, &len);
		}
		if (smtp_session_wait_client(s, false) < 0)
			return;
	}
}

/* ---- life cycle -------------------------------------------------------------- */

static smtp_session *smtp_session_new(const session_env *env, int client_fd)
{
	smtp_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->env = env;
	s->state = SMTP_STATE_NEW;
	s->gateway = env->account->gateway;
	s->mode = s->gateway != NULL ? METRICS_MODE_GATEWAY : METRICS_MODE_SUBMISSION;
	size_t spool_memory = s->gateway != NULL ? SMTP_GATEWAY_SPOOL_MEMORY : SMTP_SPOOL_MEMORY;
	size_t max_line = env->cfg->limits.max_line;
	if (max_line < SMTP_COMMAND_LINE_MIN)
		max_line = SMTP_COMMAND_LINE_MIN;
	if (max_line > SMTP_COMMAND_LINE_MAX)
		max_line = SMTP_COMMAND_LINE_MAX;
	char desc[96];
	snprintf(desc, sizeof(desc), "client %s", env->client_desc);
	s->client = conn_new(client_fd, desc);
	s->parser = smtp_command_parser_new(max_line);
	s->reader = smtp_data_reader_new(env->cfg->limits.max_message);
	s->spool = smtp_spool_new(env->cfg->state_dir, spool_memory);
	s->out_spool = smtp_spool_new(env->cfg->state_dir, spool_memory);
	s->outbound = smtp_outbound_new(env);
	s->body_out = malloc(SMTP_BODY_CHUNK * SMTP_DATA_MAX_EXPANSION);
	if (s->client == NULL || s->parser == NULL || s->reader == NULL ||
	    s->spool == NULL || s->out_spool == NULL || s->body_out == NULL) {
		if (s->client == NULL)
			close(client_fd);
		conn_free(&s->client);
		smtp_command_parser_free(&s->parser);
		smtp_data_reader_free(&s->reader);
		smtp_spool_free(&s->spool);
		smtp_spool_free(&s->out_spool);
		smtp_outbound_free(&s->outbound);
		free(s->body_out);
		free(s);
		return NULL;
	}
	conn_set_timeout(s->client, (int)env->cfg->limits.idle_timeout * 1000);
	return s;
}

/* The one teardown: says why the session ended and frees everything. The
 * client is let go first so it does not wait for the provider's goodbye. */
static void smtp_session_free(smtp_session **sp)
{
	smtp_session *s = *sp;
	if (s == NULL)
		return;
	conn_free(&s->client);
	smtp_upstream_free(&s->up);
	log_info(s->env->id, "closing session", "%s; %u message(s) relayed",
		 s->end_reason[0] != '\0' ? s->end_reason : "ended",
		 s->messages);
	smtp_tx_clear(&s->tx);
	smtp_command_parser_free(&s->parser);
	smtp_data_reader_free(&s->reader);
	smtp_spool_free(&s->spool);
	smtp_spool_free(&s->out_spool);
	smtp_outbound_free(&s->outbound);
	free(s->body_out);
	free(s);
	*sp = NULL;
}

/* A gateway takes mail only from the MTAs of its client networks. */
static bool smtp_session_gateway_admits(smtp_session *s)
{
	char host[64];
	const char *desc = s->env->client_desc;
	if (desc[0] == '[') {
		size_t len = strcspn(desc + 1, "]");
		snprintf(host, sizeof(host), "%.*s", (int)len, desc + 1);
	} else {
		snprintf(host, sizeof(host), "%.*s", (int)strcspn(desc, ":"), desc);
	}
	if (gateway_client_allowed(s->gateway, host))
		return true;
	log_warn(s->env->id, "accepting", "%s is not in the clients of gateway %s",
		 host, s->gateway->name);
	smtp_session_reply(s, "554 5.7.1 %s is not allowed to hand mail to this gateway", host);
	smtp_session_end(s, "client not allowed");
	return false;
}

void smtp_session_run(const session_env *env, int client_fd)
{
	smtp_session *s = smtp_session_new(env, client_fd);
	if (s == NULL) {
		log_error(env->id, "starting session", "out of memory");
		return;
	}
	metrics_connection_opened(s->mode);
	if (s->gateway != NULL && !smtp_session_gateway_admits(s)) {
		/* Answered and ending. */
	} else if (!env->implicit_tls || smtp_session_start_tls(s) == 0) {
		smtp_session_reply(s, "220 %s ESMTP sealpost%s ready", SMTP_HOSTNAME,
				   s->gateway != NULL ? " gateway" : "");
		smtp_session_enter(s, SMTP_STATE_CONNECTED);
	}
	while (s->state != SMTP_STATE_QUIT) {
		if (s->state == SMTP_STATE_BODY) {
			smtp_session_read_body(s);
			continue;
		}
		const smtp_command *cmd;
		if (smtp_session_read_command(s, &cmd) < 0)
			break;
		smtp_session_dispatch(s, cmd);
	}
	conn_flush(s->client);
	metrics_mode mode = s->mode;
	smtp_session_free(&s);
	metrics_connection_closed(mode);
}
