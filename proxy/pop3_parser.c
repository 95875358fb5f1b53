/* pop3_parser: POP3 as bytes (RFC 1939, 2449, 5034). Every function is fed
 * what it needs and never reads a socket, so each is tested byte by byte. */
#include "pop3_parser.h"

#include <string.h>
#include <strings.h>

/* ---- lines ---------------------------------------------------------------------- */

pop3_parse_result pop3_parser_line(const uint8_t *data, size_t len, size_t max_line,
				   size_t *line_len_r, const char **error_r)
{
	size_t look = len < max_line ? len : max_line;
	const uint8_t *nl = look > 0 ? memchr(data, '\n', look) : NULL;
	if (nl != NULL) {
		*line_len_r = (size_t)(nl - data) + 1;
		return POP3_PARSE_DONE;
	}
	if (len >= max_line) {
		*error_r = "line too long";
		return POP3_PARSE_ERROR;
	}
	return POP3_PARSE_MORE;
}

/* ---- client commands -------------------------------------------------------------- */

static size_t pop3_parser_strip_eol(const uint8_t *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	return len;
}

int pop3_parser_command(const uint8_t *line, size_t len, pop3_command *cmd,
			const char **error_r)
{
	memset(cmd, 0, sizeof(*cmd));
	len = pop3_parser_strip_eol(line, len);
	for (size_t i = 0; i < len; i++) {
		if (line[i] < 0x20 || line[i] == 0x7f) {
			*error_r = "control characters in the command";
			return -1;
		}
	}
	size_t n = 0;
	while (n < len && line[n] != ' ') {
		if (!g_ascii_isalpha(line[n]) || n >= POP3_COMMAND_NAME_MAX) {
			*error_r = "invalid command name";
			return -1;
		}
		cmd->name[n] = g_ascii_toupper((gchar)line[n]);
		n++;
	}
	if (n == 0) {
		*error_r = "empty command";
		return -1;
	}
	if (n == len)
		return 0;
	/* n is at the space after the name. */
	cmd->rest = line + n + 1;
	cmd->rest_len = len - n - 1;
	size_t pos = n + 1;
	while (pos < len) {
		size_t start = pos;
		while (pos < len && line[pos] != ' ')
			pos++;
		if (pos == start) {
			/* Two spaces in a row or a trailing space: an empty word. */
			pos++;
			continue;
		}
		if (cmd->n_args == POP3_COMMAND_MAX_ARGS) {
			*error_r = "too many arguments";
			return -1;
		}
		cmd->args[cmd->n_args] = line + start;
		cmd->arg_len[cmd->n_args] = pos - start;
		cmd->n_args++;
		pos++;
	}
	return 0;
}

int pop3_parser_number(const uint8_t *s, size_t len, uint64_t max, uint64_t *value_r)
{
	if (len == 0 || len > 19)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*value_r = v;
	return 0;
}

/* ---- server status lines ------------------------------------------------------------ */

int pop3_parser_response(const uint8_t *line, size_t len, pop3_response *resp,
			 const char **error_r)
{
	memset(resp, 0, sizeof(*resp));
	len = pop3_parser_strip_eol(line, len);
	size_t pos;
	if (len >= 3 && memcmp(line, "+OK", 3) == 0 && (len == 3 || line[3] == ' ')) {
		resp->status = POP3_RESP_OK;
		pos = 3;
	} else if (len >= 4 && memcmp(line, "-ERR", 4) == 0 && (len == 4 || line[4] == ' ')) {
		resp->status = POP3_RESP_ERR;
		pos = 4;
	} else if (len >= 1 && line[0] == '+' && (len == 1 || line[1] == ' ')) {
		resp->status = POP3_RESP_CONTINUE;
		pos = len == 1 ? 1 : 2;
		resp->text = line + pos;
		resp->text_len = len - pos;
		return 0;
	} else {
		*error_r = "not a POP3 status line";
		return -1;
	}
	if (pos < len)
		pos++;
	if (pos < len && line[pos] == '[') {
		const uint8_t *close = memchr(line + pos, ']', len - pos);
		if (close != NULL) {
			resp->code = line + pos + 1;
			resp->code_len = (size_t)(close - line) - pos - 1;
			pos = (size_t)(close - line) + 1;
			if (pos < len && line[pos] == ' ')
				pos++;
		}
	}
	resp->text = line + pos;
	resp->text_len = len - pos;
	return 0;
}

bool pop3_parser_code_is(const pop3_response *resp, const char *code)
{
	size_t n = strlen(code);
	if (resp->code == NULL || resp->code_len < n ||
	    g_ascii_strncasecmp((const char *)resp->code, code, n) != 0)
		return false;
	return resp->code_len == n || resp->code[n] == '/';
}

/* ---- multi-line bodies, from the provider --------------------------------------------- */

enum {
	POP3_UNSTUFF_LINE_START,	/* at the start of a line */
	POP3_UNSTUFF_MID,		/* inside a line */
	POP3_UNSTUFF_DOT,		/* a dot at a line start, held back */
	POP3_UNSTUFF_DOT_CR,		/* ".\r" at a line start, held back */
};

void pop3_parser_unstuff_init(pop3_parser_unstuffer *u)
{
	u->state = POP3_UNSTUFF_LINE_START;
}

pop3_parse_result pop3_parser_unstuff(pop3_parser_unstuffer *u, const uint8_t *data,
				      size_t len, GByteArray *out, size_t *consumed_r)
{
	/* Bytes are copied in runs: run is the start of the pending one. */
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];
		switch (u->state) {
		case POP3_UNSTUFF_LINE_START:
			if (c == '.') {
				if (out != NULL && i > run)
					g_byte_array_append(out, data + run, (guint)(i - run));
				run = i + 1;
				u->state = POP3_UNSTUFF_DOT;
			} else {
				u->state = c == '\n' ? POP3_UNSTUFF_LINE_START : POP3_UNSTUFF_MID;
			}
			break;
		case POP3_UNSTUFF_MID:
			if (c == '\n')
				u->state = POP3_UNSTUFF_LINE_START;
			break;
		case POP3_UNSTUFF_DOT:
			if (c == '\r') {
				run = i + 1;
				u->state = POP3_UNSTUFF_DOT_CR;
			} else if (c == '\n') {
				u->state = POP3_UNSTUFF_LINE_START;
				*consumed_r = i + 1;
				return POP3_PARSE_DONE;
			} else {
				/* The stuffed dot is dropped; this byte starts the run. */
				run = i;
				u->state = POP3_UNSTUFF_MID;
			}
			break;
		case POP3_UNSTUFF_DOT_CR:
			if (c == '\n') {
				u->state = POP3_UNSTUFF_LINE_START;
				*consumed_r = i + 1;
				return POP3_PARSE_DONE;
			}
			/* ".\r" and more: the dot was stuffing, the CR is data. */
			if (out != NULL)
				g_byte_array_append(out, (const guint8 *)"\r", 1);
			run = i;
			u->state = POP3_UNSTUFF_MID;
			break;
		default:
			u->state = POP3_UNSTUFF_MID;
			break;
		}
	}
	if (out != NULL && len > run && u->state != POP3_UNSTUFF_DOT &&
	    u->state != POP3_UNSTUFF_DOT_CR)
		g_byte_array_append(out, data + run, (guint)(len - run));
	*consumed_r = len;
	return POP3_PARSE_MORE;
}

/* ---- multi-line bodies, to the client ------------------------------------------------ */

void pop3_parser_stuff_init(pop3_parser_stuffer *s)
{
	s->line_start = true;
	s->cr = false;
}

void pop3_parser_stuff(pop3_parser_stuffer *s, const uint8_t *data, size_t len, GByteArray *out)
{
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = data[i];
		if (s->line_start && c == '.') {
			/* Written twice: the run so far plus this dot, then the dot
			 * again starts the next run. */
			g_byte_array_append(out, data + run, (guint)(i - run + 1));
			run = i;
		} else if (c == '\n' && !s->cr) {
			g_byte_array_append(out, data + run, (guint)(i - run));
			g_byte_array_append(out, (const guint8 *)"\r", 1);
			run = i;
		}
		s->line_start = c == '\n';
		s->cr = c == '\r';
	}
	if (len > run)
		g_byte_array_append(out, data + run, (guint)(len - run));
}

void pop3_parser_stuff_finish(pop3_parser_stuffer *s, GByteArray *out)
{
	if (!s->line_start)
		g_byte_array_append(out, (const guint8 *)"\r\n", 2);
	g_byte_array_append(out, (const guint8 *)".\r\n", 3);
	pop3_parser_stuff_init(s);
}

uint64_t pop3_parser_octets(const uint8_t *data, size_t len)
{
	uint64_t n = len;
	bool cr = false;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n' && !cr)
			n++;
		cr = data[i] == '\r';
	}
	if (len > 0 && data[len - 1] != '\n')
		n += 2;
	return n;
}

/* ---- TOP ------------------------------------------------------------------------------ */

size_t pop3_parser_top_length(const uint8_t *msg, size_t len, uint64_t lines)
{
	size_t pos = 0;
	/* The header: up to and including the first empty line. */
	for (;;) {
		if (pos >= len)
			return len;
		const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
		size_t next = nl != NULL ? (size_t)(nl - msg) + 1 : len;
		bool blank = next - pos == 1 || (next - pos == 2 && msg[pos] == '\r');
		pos = next;
		if (blank)
			break;
	}
	for (uint64_t n = 0; n < lines && pos < len; n++) {
		const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
		pos = nl != NULL ? (size_t)(nl - msg) + 1 : len;
	}
	return pos;
}

/* ---- CAPA -------------------------------------------------------------------------------- */

/* What passes from the provider's list, and when. */
static const struct {
	const char *name;
	bool login;		/* only while login is allowed, before it */
	bool pre_auth_only;
} pop3_parser_capa_allowed[] = {
	{ "USER", true, true },
	{ "SASL", true, true },
	{ "TOP", false, false },
	{ "UIDL", false, false },
	{ "PIPELINING", false, false },
	{ "RESP-CODES", false, false },
	{ "AUTH-RESP-CODE", false, false },
	{ "EXPIRE", false, false },
	{ "LOGIN-DELAY", false, false },
};

/* The capability name of one line: its first word. */
static size_t pop3_parser_capa_name(const char *line, size_t len)
{
	size_t n = 0;
	while (n < len && line[n] != ' ' && line[n] != '\t' && line[n] != '\r')
		n++;
	return n;
}

static bool pop3_parser_word_is(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && g_ascii_strncasecmp(s, word, len) == 0;
}

bool pop3_parser_capa_has(const char *caps, const char *name)
{
	if (caps == NULL)
		return false;
	const char *p = caps;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		size_t n = pop3_parser_capa_name(p, len);
		if (pop3_parser_word_is(p, n, name))
			return true;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return false;
}

char *pop3_parser_filter_capa(const char *caps, const pop3_parser_capa_context *ctx)
{
	GString *out = g_string_new(NULL);
	bool user = false, resp_codes = false, auth_resp_code = false;
	const char *p = caps != NULL ? caps : "";
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		const char *next = nl != NULL ? nl + 1 : p + len;
		while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == ' '))
			len--;
		size_t n = pop3_parser_capa_name(p, len);
		for (size_t i = 0; n > 0 && i < G_N_ELEMENTS(pop3_parser_capa_allowed); i++) {
			if (!pop3_parser_word_is(p, n, pop3_parser_capa_allowed[i].name))
				continue;
			if (pop3_parser_capa_allowed[i].pre_auth_only && ctx->authorized)
				break;
			if (pop3_parser_capa_allowed[i].login && !ctx->login_allowed)
				break;
			/* Printable text only: the line goes to the client as it is. */
			bool clean = true;
			for (size_t k = 0; k < len; k++) {
				if ((unsigned char)p[k] < 0x20 || (unsigned char)p[k] >= 0x7f)
					clean = false;
			}
			if (!clean)
				break;
			user |= i == 0;
			resp_codes |= pop3_parser_word_is(p, n, "RESP-CODES");
			auth_resp_code |= pop3_parser_word_is(p, n, "AUTH-RESP-CODE");
			g_string_append_len(out, p, (gssize)len);
			g_string_append(out, "\r\n");
			break;
		}
		p = next;
	}
	if (!ctx->authorized && !user && ctx->login_allowed)
		g_string_append(out, "USER\r\n");
	if (!resp_codes)
		g_string_append(out, "RESP-CODES\r\n");
	if (!auth_resp_code)
		g_string_append(out, "AUTH-RESP-CODE\r\n");
	if (!ctx->authorized && !ctx->client_tls && ctx->stls_available)
		g_string_append(out, "STLS\r\n");
	return g_string_free(out, FALSE);
}
