/* smtp_parser: incremental SMTP command, reply and DATA parsers. Pure byte
 * processing with limits as parameters, so they can be fed one byte at a
 * time in tests and fuzzed on their own. */
#include "smtp_parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SMTP_PARSER_INITIAL_CAP 256

/* Grows a line buffer to hold need bytes (need <= limit + 1 always). */
static int smtp_buf_reserve(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t cap_new = *cap == 0 ? SMTP_PARSER_INITIAL_CAP : *cap;
	while (cap_new < need)
		cap_new *= 2;
	char *b = realloc(*buf, cap_new);
	if (b == NULL)
		return -1;
	*buf = b;
	*cap = cap_new;
	return 0;
}

static char smtp_ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static bool smtp_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool smtp_is_alnum(uint8_t c)
{
	return smtp_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ---- command lines ------------------------------------------------------- */

struct smtp_command_parser {
	size_t max_line;
	char *buf;
	size_t len, cap;
	bool skipping;		/* rest of an over-long line, dropped up to LF */
	bool bad_byte;		/* NUL or bare CR seen in this line */
	smtp_command cmd;
};

smtp_command_parser *smtp_command_parser_new(size_t max_line)
{
	smtp_command_parser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	/* Room for at least a verb and a line end, whatever the caller says. */
	p->max_line = max_line < 8 ? 8 : max_line;
	return p;
}

void smtp_command_parser_free(smtp_command_parser **pp)
{
	smtp_command_parser *p = *pp;
	if (p == NULL)
		return;
	free(p->buf);
	free(p);
	*pp = NULL;
}

void smtp_command_parser_reset(smtp_command_parser *p)
{
	p->len = 0;
	p->skipping = false;
	p->bad_byte = false;
}

/* Splits the finished line in p->buf[0..len) into verb and arguments. */
static void smtp_command_split(smtp_command_parser *p)
{
	smtp_command *cmd = &p->cmd;
	size_t len = p->len;
	p->buf[len] = '\0';
	cmd->line = p->buf;
	cmd->line_len = len;

	size_t verb_len = 0;
	while (verb_len < len && p->buf[verb_len] != ' ')
		verb_len++;
	if (verb_len < SMTP_VERB_MAX) {
		for (size_t i = 0; i < verb_len; i++)
			cmd->verb[i] = smtp_ascii_upper(p->buf[i]);
		cmd->verb[verb_len] = '\0';
	} else {
		cmd->verb[0] = '\0';
	}
	size_t a = verb_len;
	/* RFC 5321 wants exactly one space; some clients send more, and some
	 * leave trailing blanks. Neither changes the meaning. */
	while (a < len && p->buf[a] == ' ')
		a++;
	size_t end = len;
	while (end > a && (p->buf[end - 1] == ' ' || p->buf[end - 1] == '\t'))
		end--;
	/* The arguments get their own copy after the line, so the line stays
	 * whole for AUTH continuations. */
	char *args = p->buf + len + 1;
	memcpy(args, p->buf + a, end - a);
	args[end - a] = '\0';
	cmd->args = args;
}

smtp_parse_result smtp_command_parser_feed(smtp_command_parser *p,
					   const uint8_t *data, size_t len,
					   size_t *consumed_r,
					   const smtp_command **cmd_r,
					   const char **error_r)
{
	for (size_t i = 0; i < len; i++) {
		uint8_t b = data[i];
		if (p->skipping) {
			if (b == '\n')
				smtp_command_parser_reset(p);
			continue;
		}
		if (b == '\n') {
			*consumed_r = i + 1;
			if (p->len > 0 && p->buf[p->len - 1] == '\r')
				p->len--;
			if (p->bad_byte) {
				smtp_command_parser_reset(p);
				*error_r = "Bare CR or NUL in command line";
				return SMTP_PARSE_ERROR;
			}
			if (smtp_buf_reserve(&p->buf, &p->cap, 2 * p->len + 2) < 0) {
				smtp_command_parser_reset(p);
				*error_r = "Out of memory";
				return SMTP_PARSE_ERROR;
			}
			smtp_command_split(p);
			p->len = 0;
			*cmd_r = &p->cmd;
			return SMTP_PARSE_DONE;
		}
		/* This byte plus at least the LF must fit. */
		if (p->len + 2 > p->max_line) {
			*consumed_r = i + 1;
			p->len = 0;
			p->bad_byte = false;
			p->skipping = true;
			*error_r = "Line too long";
			return SMTP_PARSE_ERROR;
		}
		if (b == '\0' || (p->len > 0 && p->buf[p->len - 1] == '\r'))
			p->bad_byte = true;
		if (smtp_buf_reserve(&p->buf, &p->cap, p->len + 2) < 0) {
			*consumed_r = i + 1;
			p->len = 0;
			p->skipping = true;
			*error_r = "Out of memory";
			return SMTP_PARSE_ERROR;
		}
		p->buf[p->len++] = (char)b;
	}
	*consumed_r = len;
	return SMTP_PARSE_MORE;
}

/* ---- MAIL FROM / RCPT TO arguments --------------------------------------- */

static const char *smtp_path_syntax_error(const char *prefix)
{
	return strcasecmp(prefix, "FROM:") == 0 ?
		"Syntax: MAIL FROM:<address> [parameters]" :
		"Syntax: RCPT TO:<address> [parameters]";
}

/* Scans "<...>" starting at s[0] == '<'; returns the byte after '>' or NULL.
 * Quoted local parts may hold '>', spaces and backslash pairs; outside
 * quotes spaces, controls and a second '<' are refused. Bytes >= 0x80 are
 * allowed for SMTPUTF8 addresses; the provider judges the rest. */
static const char *smtp_scan_path(const char *s, bool allow_null,
				  const char **error_r)
{
	const uint8_t *u = (const uint8_t *)s + 1;
	if (*u == '>') {
		if (!allow_null) {
			*error_r = "Empty address not allowed here";
			return NULL;
		}
		return (const char *)u + 1;
	}
	bool quoted = false;
	for (;; u++) {
		uint8_t c = *u;
		if (c == '\0') {
			*error_r = "Unterminated address";
			return NULL;
		}
		if (c < 0x20 || c == 0x7f) {
			*error_r = "Invalid character in address";
			return NULL;
		}
		if (quoted) {
			if (c == '\\') {
				u++;
				if (*u < 0x20 || *u == 0x7f) {
					*error_r = "Invalid character in address";
					return NULL;
				}
			} else if (c == '"') {
				quoted = false;
			}
			continue;
		}
		if (c == '>')
			break;
		if (c == '"') {
			quoted = true;
		} else if (c == '<' || c == ' ') {
			*error_r = "Invalid character in address";
			return NULL;
		}
	}
	if (u == (const uint8_t *)s + 1) {
		*error_r = "Empty address not allowed here";
		return NULL;
	}
	return (const char *)u + 1;
}

int smtp_parse_path_args(const char *args, const char *prefix, bool allow_null,
			 smtp_path_args *out, const char **error_r)
{
	size_t plen = strlen(prefix);
	memset(out, 0, sizeof(*out));
	if (strncasecmp(args, prefix, plen) != 0) {
		*error_r = smtp_path_syntax_error(prefix);
		return -1;
	}
	const char *s = args + plen;
	while (*s == ' ')
		s++;
	if (*s != '<') {
		*error_r = smtp_path_syntax_error(prefix);
		return -1;
	}
	const char *end = smtp_scan_path(s, allow_null, error_r);
	if (end == NULL)
		return -1;
	out->path = s;
	out->path_len = (size_t)(end - s);
	s = end;

	for (;;) {
		if (*s == '\0')
			return 0;
		if (*s != ' ') {
			*error_r = "Unexpected text after the address";
			return -1;
		}
		while (*s == ' ')
			s++;
		if (*s == '\0')
			return 0;
		if (out->n_params == SMTP_MAX_PARAMS) {
			*error_r = "Too many parameters";
			return -1;
		}
		smtp_param *prm = &out->params[out->n_params];
		const uint8_t *u = (const uint8_t *)s;
		if (!smtp_is_alnum(*u)) {
			*error_r = "Invalid parameter";
			return -1;
		}
		while (smtp_is_alnum(*u) || *u == '-')
			u++;
		prm->text = s;
		prm->key_len = (size_t)((const char *)u - s);
		if (*u == '=') {
			u++;
			prm->value = (const char *)u;
			/* esmtp-value: %d33-60 / %d62-126, plus UTF-8 (RFC 6531). */
			while (*u > 0x20 && *u != '=' && *u != 0x7f)
				u++;
			prm->value_len = (size_t)((const char *)u - prm->value);
			if (prm->value_len == 0) {
				*error_r = "Invalid parameter value";
				return -1;
			}
		}
		if (*u != ' ' && *u != '\0') {
			*error_r = "Invalid parameter";
			return -1;
		}
		prm->len = (size_t)((const char *)u - s);
		out->n_params++;
		s = (const char *)u;
	}
}

const smtp_param *smtp_path_args_find(const smtp_path_args *a, const char *key)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < a->n_params; i++) {
		if (a->params[i].key_len == klen &&
		    strncasecmp(a->params[i].text, key, klen) == 0)
			return &a->params[i];
	}
	return NULL;
}

/* ---- replies ------------------------------------------------------------- */

struct smtp_reply_parser {
	size_t max_line, max_lines;
	char *line;
	size_t line_len, line_cap;
	bool done;
	smtp_reply reply;
	size_t lines_cap;
};

smtp_reply_parser *smtp_reply_parser_new(size_t max_line, size_t max_lines)
{
	smtp_reply_parser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->max_line = max_line < 8 ? 8 : max_line;
	p->max_lines = max_lines < 1 ? 1 : max_lines;
	return p;
}

void smtp_reply_parser_reset(smtp_reply_parser *p)
{
	for (size_t i = 0; i < p->reply.n_lines; i++)
		free(p->reply.lines[i]);
	p->reply.n_lines = 0;
	p->reply.code = 0;
	p->reply.enhanced[0] = '\0';
	p->line_len = 0;
	p->done = false;
}

void smtp_reply_parser_free(smtp_reply_parser **pp)
{
	smtp_reply_parser *p = *pp;
	if (p == NULL)
		return;
	smtp_reply_parser_reset(p);
	free(p->reply.lines);
	free(p->line);
	free(p);
	*pp = NULL;
}

/* "X.Y.Z" with X the reply's class and Y, Z of 1-3 digits (RFC 3463),
 * followed by a space or the end of the text. */
static void smtp_reply_find_enhanced(smtp_reply *r)
{
	const char *t = r->lines[0];
	r->enhanced[0] = '\0';
	if (t[0] != (char)('0' + r->code / 100) || t[1] != '.')
		return;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (smtp_is_digit((uint8_t)t[i]) && i - start < 4)
			i++;
		if (i == start || i - start > 3)
			return;
		if (part == 0) {
			if (t[i] != '.')
				return;
			i++;
		}
	}
	if (t[i] != '\0' && t[i] != ' ')
		return;
	memcpy(r->enhanced, t, i);
	r->enhanced[i] = '\0';
}

/* Checks and stores the line in p->line[0..line_len) (line end removed).
 * Returns 1 when it was the last line, 0 for a continuation, -1 error. */
static int smtp_reply_take_line(smtp_reply_parser *p, const char **error_r)
{
	const uint8_t *l = (const uint8_t *)p->line;
	size_t len = p->line_len;
	if (len < 3 || !smtp_is_digit(l[0]) || !smtp_is_digit(l[1]) ||
	    !smtp_is_digit(l[2]) || l[0] < '2' || l[0] > '5') {
		*error_r = "malformed reply line";
		return -1;
	}
	if (len > 3 && l[3] != ' ' && l[3] != '-') {
		*error_r = "malformed reply line";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (l[i] == '\0' || l[i] == '\r') {
			*error_r = "control character in reply";
			return -1;
		}
	}
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (p->reply.n_lines > 0 && code != p->reply.code) {
		*error_r = "inconsistent codes in multi-line reply";
		return -1;
	}
	bool last = len == 3 || l[3] == ' ';
	if (!last && p->reply.n_lines + 1 >= p->max_lines) {
		*error_r = "too many reply lines";
		return -1;
	}
	if (p->reply.n_lines == p->lines_cap) {
		size_t cap = p->lines_cap == 0 ? 4 : p->lines_cap * 2;
		char **lines = realloc(p->reply.lines, cap * sizeof(*lines));
		if (lines == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		p->reply.lines = lines;
		p->lines_cap = cap;
	}
	size_t tlen = len > 4 ? len - 4 : 0;
	char *text = malloc(tlen + 1);
	if (text == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	memcpy(text, p->line + 4, tlen);
	text[tlen] = '\0';
	p->reply.lines[p->reply.n_lines++] = text;
	p->reply.code = code;
	if (last)
		smtp_reply_find_enhanced(&p->reply);
	return last ? 1 : 0;
}

smtp_parse_result smtp_reply_parser_feed(smtp_reply_parser *p,
					 const uint8_t *data, size_t len,
					 size_t *consumed_r,
					 const smtp_reply **reply_r,
					 const char **error_r)
{
	if (p->done)
		smtp_reply_parser_reset(p);
	for (size_t i = 0; i < len; i++) {
		uint8_t b = data[i];
		if (b == '\n') {
			if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
				p->line_len--;
			int ret = smtp_reply_take_line(p, error_r);
			p->line_len = 0;
			if (ret < 0) {
				*consumed_r = i + 1;
				return SMTP_PARSE_ERROR;
			}
			if (ret == 1) {
				*consumed_r = i + 1;
				p->done = true;
				*reply_r = &p->reply;
				return SMTP_PARSE_DONE;
			}
			continue;
		}
		if (p->line_len + 2 > p->max_line) {
			*consumed_r = i + 1;
			*error_r = "reply line too long";
			return SMTP_PARSE_ERROR;
		}
		if (smtp_buf_reserve(&p->line, &p->line_cap, p->line_len + 1) < 0) {
			*consumed_r = i + 1;
			*error_r = "out of memory";
			return SMTP_PARSE_ERROR;
		}
		p->line[p->line_len++] = (char)b;
	}
	*consumed_r = len;
	return SMTP_PARSE_MORE;
}

/* ---- DATA ---------------------------------------------------------------- */

typedef enum {
	DATA_BOL,	/* at the start of a line: after a real CRLF, or first */
	DATA_DOT,	/* BOL '.' */
	DATA_DOT_CR,	/* BOL '.' CR: the end if LF follows */
	DATA_MID,	/* inside a line */
	DATA_CR,	/* CR inside a line: a line end if LF follows */
	DATA_DONE,
} smtp_data_state;

struct smtp_data_reader {
	smtp_data_state state;
	uint64_t max_size;
	uint64_t size;
	uint64_t bare_lf, bare_cr;
	bool too_big;
};

smtp_data_reader *smtp_data_reader_new(uint64_t max_size)
{
	smtp_data_reader *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	smtp_data_reader_reset(r, max_size);
	return r;
}

void smtp_data_reader_free(smtp_data_reader **rp)
{
	free(*rp);
	*rp = NULL;
}

void smtp_data_reader_reset(smtp_data_reader *r, uint64_t max_size)
{
	memset(r, 0, sizeof(*r));
	r->state = DATA_BOL;
	r->max_size = max_size;
}

static void smtp_data_emit(smtp_data_reader *r, uint8_t *out, size_t *o,
			   const char *bytes, size_t n)
{
	r->size += n;
	if (r->size > r->max_size)
		r->too_big = true;
	if (r->too_big)
		return;
	memcpy(out + *o, bytes, n);
	*o += n;
}

smtp_parse_result smtp_data_reader_feed(smtp_data_reader *r,
					const uint8_t *in, size_t in_len,
					size_t *consumed_r,
					uint8_t *out, size_t out_size,
					size_t *out_len_r)
{
	size_t o = 0;
	size_t i = 0;
	smtp_parse_result ret = SMTP_PARSE_MORE;
	if (r->state == DATA_DONE) {
		*consumed_r = 0;
		*out_len_r = 0;
		return SMTP_PARSE_DONE;
	}
	while (i < in_len && out_size - o >= SMTP_DATA_MAX_EXPANSION) {
		if (r->state == DATA_MID) {
			/* Fast path: the run of ordinary bytes up to the next
			 * CR or LF is copied at once. */
			size_t max = in_len - i;
			if (max > out_size - o - (SMTP_DATA_MAX_EXPANSION - 1))
				max = out_size - o - (SMTP_DATA_MAX_EXPANSION - 1);
			const uint8_t *p = in + i;
			const uint8_t *cr = memchr(p, '\r', max);
			size_t run = cr != NULL ? (size_t)(cr - p) : max;
			const uint8_t *lf = memchr(p, '\n', run);
			if (lf != NULL)
				run = (size_t)(lf - p);
			/* Stop where the size limit is crossed, so the bytes
			 * kept are the same however the input was split. */
			if (!r->too_big && r->max_size - r->size < run)
				run = (size_t)(r->max_size - r->size);
			if (run > 0) {
				smtp_data_emit(r, out, &o, (const char *)p, run);
				i += run;
				continue;
			}
		}
		uint8_t b = in[i++];
		char c = (char)b;
		switch (r->state) {
		case DATA_BOL:
			if (b == '.') {
				r->state = DATA_DOT;
			} else if (b == '\r') {
				r->state = DATA_CR;
			} else if (b == '\n') {
				r->bare_lf++;
				smtp_data_emit(r, out, &o, "\r\n", 2);
				r->state = DATA_MID;
			} else {
				smtp_data_emit(r, out, &o, &c, 1);
				r->state = DATA_MID;
			}
			break;
		case DATA_DOT:
			/* The stuffed dot is dropped whatever follows. */
			if (b == '\r') {
				r->state = DATA_DOT_CR;
			} else if (b == '\n') {
				r->bare_lf++;
				smtp_data_emit(r, out, &o, "\r\n", 2);
				r->state = DATA_MID;
			} else {
				smtp_data_emit(r, out, &o, &c, 1);
				r->state = DATA_MID;
			}
			break;
		case DATA_DOT_CR:
		case DATA_CR:
			if (b == '\n') {
				if (r->state == DATA_DOT_CR) {
					r->state = DATA_DONE;
					ret = SMTP_PARSE_DONE;
					goto out;
				}
				smtp_data_emit(r, out, &o, "\r\n", 2);
				r->state = DATA_BOL;
			} else if (b == '\r') {
				r->bare_cr++;
				smtp_data_emit(r, out, &o, "\r\n", 2);
				r->state = DATA_CR;
			} else {
				r->bare_cr++;
				smtp_data_emit(r, out, &o, "\r\n", 2);
				smtp_data_emit(r, out, &o, &c, 1);
				r->state = DATA_MID;
			}
			break;
		case DATA_MID:
			if (b == '\r') {
				r->state = DATA_CR;
			} else if (b == '\n') {
				r->bare_lf++;
				smtp_data_emit(r, out, &o, "\r\n", 2);
			} else {
				smtp_data_emit(r, out, &o, &c, 1);
			}
			break;
		case DATA_DONE:
			break;
		}
	}
out:
	*consumed_r = i;
	*out_len_r = o;
	return ret;
}

uint64_t smtp_data_reader_size(const smtp_data_reader *r)
{
	return r->size;
}

bool smtp_data_reader_too_big(const smtp_data_reader *r)
{
	return r->too_big;
}

uint64_t smtp_data_reader_bare_lf(const smtp_data_reader *r)
{
	return r->bare_lf;
}

uint64_t smtp_data_reader_bare_cr(const smtp_data_reader *r)
{
	return r->bare_cr;
}

/* ---- dot-stuffing -------------------------------------------------------- */

void smtp_dot_stuffer_init(smtp_dot_stuffer *st)
{
	memset(st, 0, sizeof(*st));
	st->at_line_start = true;
}

size_t smtp_dot_stuffer_feed(smtp_dot_stuffer *st, const uint8_t *in,
			     size_t in_len, uint8_t *out, size_t out_size)
{
	size_t o = 0;
	for (size_t i = 0; i < in_len && out_size - o >= 2; i++) {
		if (!st->at_line_start) {
			/* Fast path: copy through the next LF at once. */
			size_t max = in_len - i;
			if (max > out_size - o - 1)
				max = out_size - o - 1;
			const uint8_t *lf = memchr(in + i, '\n', max);
			size_t run = lf != NULL ? (size_t)(lf - (in + i)) + 1 : max;
			if (run > 1) {
				memcpy(out + o, in + i, run - 1);
				o += run - 1;
				st->written += run - 1;
				st->last[0] = run - 1 >= 2 ? in[i + run - 3] : st->last[1];
				st->last[1] = in[i + run - 2];
				i += run - 2;
				continue;
			}
		}
		uint8_t b = in[i];
		if (st->at_line_start && b == '.')
			out[o++] = '.';
		out[o++] = b;
		st->at_line_start = b == '\n';
		st->last[0] = st->last[1];
		st->last[1] = b;
		st->written++;
	}
	return o;
}

const char *smtp_dot_stuffer_end(const smtp_dot_stuffer *st)
{
	if (st->written == 0 || (st->last[0] == '\r' && st->last[1] == '\n'))
		return ".\r\n";
	return "\r\n.\r\n";
}
