/* imap_parser: finds line and literal boundaries in IMAP byte streams and
 * reads the words of lines. Never touches a socket, never allocates. */
#include "imap_parser.h"

#include <string.h>

/* Longest literal announcement worth reading: 20 digits already exceed
 * any 64-bit size, so more digits only mean "too large". */
#define IMAP_LITERAL_DIGITS_MAX 20

static bool imap_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static uint8_t imap_upper(uint8_t c)
{
	return c >= 'a' && c <= 'z' ? (uint8_t)(c - 'a' + 'A') : c;
}

/* ---- framer --------------------------------------------------------------- */

void imap_framer_init(imap_framer *f, size_t max_line, uint64_t max_literal)
{
	memset(f, 0, sizeof(*f));
	f->max_line = max_line != 0 ? max_line : SIZE_MAX;
	f->max_literal = max_literal;
	f->line_start = true;
}

/* True if position pos of the fragment lies inside a quoted string. Only
 * needed when a fragment ends in something that looks like a literal: a
 * "{5}" inside quotes is text, and both ends must agree on that. */
static bool imap_inside_quotes(const uint8_t *line, size_t pos)
{
	bool quoted = false;
	for (size_t i = 0; i < pos; i++) {
		if (!quoted) {
			if (line[i] == '"')
				quoted = true;
		} else if (line[i] == '\\') {
			i++;
		} else if (line[i] == '"') {
			quoted = false;
		}
	}
	return quoted;
}

/* Looks for a literal announcement at the end of a fragment of n bytes
 * ending in LF. 1 announcement, 0 none, -1 too large. */
static int imap_framer_literal(const imap_framer *f, const uint8_t *line,
			       size_t n, imap_frame *frame)
{
	size_t end = n - 1;
	if (end > 0 && line[end - 1] == '\r')
		end--;
	if (end < 3 || line[end - 1] != '}')
		return 0;
	size_t i = end - 1;
	bool sync = true;
	if (line[i - 1] == '+') {
		sync = false;
		i--;
	}
	size_t digits_end = i;
	while (i > 0 && imap_is_digit(line[i - 1]))
		i--;
	if (i == digits_end || i == 0 || line[i - 1] != '{')
		return 0;
	size_t brace = i - 1;
	if (memchr(line, '"', brace) != NULL && imap_inside_quotes(line, brace))
		return 0;

	/* Leading zeros do not make a number larger. */
	while (i < digits_end - 1 && line[i] == '0')
		i++;
	if (digits_end - i > IMAP_LITERAL_DIGITS_MAX)
		return -1;
	uint64_t size = 0;
	for (; i < digits_end; i++) {
		uint64_t digit = (uint64_t)(line[i] - '0');
		if (size > (UINT64_MAX - digit) / 10)
			return -1;
		size = size * 10 + digit;
	}
	if (size > f->max_literal)
		return -1;
	frame->literal_size = size;
	frame->literal_sync = sync;
	frame->literal_binary = brace > 0 && line[brace - 1] == '~';
	return 1;
}

imap_parse_result imap_framer_next(imap_framer *f, const uint8_t *data,
				   size_t len, imap_frame *frame_r,
				   const char **error_r)
{
	memset(frame_r, 0, sizeof(*frame_r));
	if (f->error != NULL) {
		*error_r = f->error;
		return IMAP_PARSE_ERROR;
	}
	if (f->in_literal) {
		if (len == 0 && f->literal_left > 0)
			return IMAP_PARSE_MORE;
		size_t n = f->literal_left < len ? (size_t)f->literal_left : len;
		frame_r->type = IMAP_FRAME_LITERAL;
		frame_r->data = data;
		frame_r->len = n;
		f->literal_left -= n;
		frame_r->literal_left = f->literal_left;
		if (f->literal_left == 0) {
			frame_r->literal_end = true;
			f->in_literal = false;
		}
		return IMAP_PARSE_DONE;
	}

	/* A caller that offers fewer bytes than before broke the contract;
	 * searching again from the start is still correct. */
	size_t scanned = f->scanned <= len ? f->scanned : 0;
	const uint8_t *lf = memchr(data + scanned, '\n', len - scanned);
	if (lf == NULL) {
		if (len >= f->max_line) {
			f->error = "line too long";
			*error_r = f->error;
			return IMAP_PARSE_ERROR;
		}
		f->scanned = len;
		return IMAP_PARSE_MORE;
	}
	size_t n = (size_t)(lf - data) + 1;
	if (n > f->max_line) {
		f->error = "line too long";
		*error_r = f->error;
		return IMAP_PARSE_ERROR;
	}
	f->scanned = 0;
	frame_r->type = IMAP_FRAME_TEXT;
	frame_r->data = data;
	frame_r->len = n;
	frame_r->line_start = f->line_start;
	int lit = imap_framer_literal(f, data, n, frame_r);
	if (lit < 0) {
		f->error = "literal too large";
		*error_r = f->error;
		memset(frame_r, 0, sizeof(*frame_r));
		return IMAP_PARSE_ERROR;
	}
	if (lit > 0) {
		f->in_literal = true;
		f->literal_left = frame_r->literal_size;
		f->line_start = false;
	} else {
		frame_r->line_end = true;
		f->line_start = true;
	}
	return IMAP_PARSE_DONE;
}

void imap_framer_cancel_literal(imap_framer *f)
{
	if (!f->in_literal)
		return;
	f->in_literal = false;
	f->literal_left = 0;
	f->line_start = true;
}

bool imap_framer_at_line_start(const imap_framer *f)
{
	return !f->in_literal && f->line_start;
}

bool imap_framer_in_literal(const imap_framer *f)
{
	return f->in_literal;
}

/* ---- tokenizer ------------------------------------------------------------ */

void imap_tokenizer_init(imap_tokenizer *t, const void *data, size_t len,
			 unsigned max_depth)
{
	memset(t, 0, sizeof(*t));
	t->data = data;
	t->len = len;
	t->max_depth = max_depth;
}

/* Bytes that end an atom outside brackets. */
static bool imap_atom_end(uint8_t c)
{
	return c == ' ' || c == '(' || c == ')' || c == '"' || c == '{' ||
		c == '\r' || c == '\n' || c == '\0';
}

static bool imap_tokenizer_eol_at(const imap_tokenizer *t, size_t pos)
{
	return pos >= t->len || t->data[pos] == '\n' ||
		(t->data[pos] == '\r' && (pos + 1 >= t->len || t->data[pos + 1] == '\n'));
}

static void imap_tokenizer_skip_spaces(imap_tokenizer *t)
{
	while (t->pos < t->len && t->data[t->pos] == ' ')
		t->pos++;
}

bool imap_tokenizer_at_eol(const imap_tokenizer *t)
{
	size_t pos = t->pos;
	while (pos < t->len && t->data[pos] == ' ')
		pos++;
	return imap_tokenizer_eol_at(t, pos);
}

/* An atom; "[...]" inside it (BODY[HEADER.FIELDS (A B)]) may hold spaces,
 * parentheses and quoted strings. A "]" outside brackets ends it, which
 * is how response codes close. */
static int imap_tokenizer_atom(imap_tokenizer *t, imap_token *token,
			       const char **error_r)
{
	size_t start = t->pos;
	unsigned brackets = 0;
	while (t->pos < t->len) {
		uint8_t c = t->data[t->pos];
		if (c == '\r' || c == '\n' || c == '\0')
			break;
		if (brackets == 0) {
			if (imap_atom_end(c) || c == ']')
				break;
			if (c == '[')
				brackets++;
			t->pos++;
			continue;
		}
		if (c == '[') {
			if (++brackets > 8) {
				*error_r = "brackets nested too deeply";
				return -1;
			}
		} else if (c == ']') {
			brackets--;
		} else if (c == '"') {
			t->pos++;
			while (t->pos < t->len && t->data[t->pos] != '"') {
				if (t->data[t->pos] == '\r' || t->data[t->pos] == '\n')
					break;
				if (t->data[t->pos] == '\\')
					t->pos++;
				t->pos++;
			}
			if (t->pos >= t->len || t->data[t->pos] != '"') {
				*error_r = "unterminated quoted string";
				return -1;
			}
		}
		t->pos++;
	}
	if (brackets > 0) {
		*error_r = "unterminated [";
		return -1;
	}
	if (t->pos == start) {
		*error_r = "unexpected character";
		return -1;
	}
	token->type = IMAP_TOKEN_ATOM;
	token->data = t->data + start;
	token->len = t->pos - start;
	return 0;
}

static int imap_tokenizer_quoted(imap_tokenizer *t, imap_token *token,
				 const char **error_r)
{
	size_t start = ++t->pos;
	while (t->pos < t->len) {
		uint8_t c = t->data[t->pos];
		if (c == '"') {
			token->type = IMAP_TOKEN_QUOTED;
			token->data = t->data + start;
			token->len = t->pos - start;
			t->pos++;
			return 0;
		}
		if (c == '\r' || c == '\n' || c == '\0')
			break;
		if (c == '\\') {
			if (t->pos + 1 >= t->len)
				break;
			t->pos++;
		}
		t->pos++;
	}
	*error_r = "unterminated quoted string";
	return -1;
}

static int imap_tokenizer_literal(imap_tokenizer *t, imap_token *token,
				  const char **error_r)
{
	bool binary = false;
	if (t->data[t->pos] == '~') {
		binary = true;
		t->pos++;
		if (t->pos >= t->len || t->data[t->pos] != '{') {
			*error_r = "bad literal syntax";
			return -1;
		}
	}
	t->pos++;	/* '{' */
	uint64_t size = 0;
	size_t digits = 0;
	while (t->pos < t->len && imap_is_digit(t->data[t->pos])) {
		uint64_t digit = (uint64_t)(t->data[t->pos] - '0');
		if (size > (UINT64_MAX - digit) / 10) {
			*error_r = "literal too large";
			return -1;
		}
		size = size * 10 + digit;
		digits++;
		t->pos++;
	}
	bool sync = true;
	if (t->pos < t->len && t->data[t->pos] == '+') {
		sync = false;
		t->pos++;
	}
	if (digits == 0 || t->pos >= t->len || t->data[t->pos] != '}') {
		*error_r = "bad literal syntax";
		return -1;
	}
	t->pos++;
	if (t->pos < t->len && t->data[t->pos] == '\r')
		t->pos++;
	if (t->pos >= t->len || t->data[t->pos] != '\n') {
		*error_r = "bad literal syntax";
		return -1;
	}
	t->pos++;
	token->type = IMAP_TOKEN_LITERAL;
	token->literal_size = size;
	token->literal_sync = sync;
	token->literal_binary = binary;
	if (t->pos == t->len) {
		/* Only the announcement: a fragment as the framer cuts it. */
		token->data = NULL;
		token->len = 0;
		return 0;
	}
	if (size > t->len - t->pos) {
		*error_r = "literal data truncated";
		return -1;
	}
	token->data = t->data + t->pos;
	token->len = (size_t)size;
	t->pos += (size_t)size;
	return 0;
}

int imap_tokenizer_next(imap_tokenizer *t, imap_token *token_r,
			const char **error_r)
{
	memset(token_r, 0, sizeof(*token_r));
	imap_tokenizer_skip_spaces(t);
	if (imap_tokenizer_eol_at(t, t->pos)) {
		token_r->type = IMAP_TOKEN_EOL;
		return 0;
	}
	uint8_t c = t->data[t->pos];
	switch (c) {
	case '(':
		if (t->depth >= t->max_depth) {
			*error_r = "lists nested too deeply";
			return -1;
		}
		t->depth++;
		t->pos++;
		token_r->type = IMAP_TOKEN_LIST_OPEN;
		return 0;
	case ')':
		if (t->depth == 0) {
			*error_r = "unexpected )";
			return -1;
		}
		t->depth--;
		t->pos++;
		token_r->type = IMAP_TOKEN_LIST_CLOSE;
		return 0;
	case '"':
		return imap_tokenizer_quoted(t, token_r, error_r);
	case '{':
		return imap_tokenizer_literal(t, token_r, error_r);
	case '~':
		if (t->pos + 1 < t->len && t->data[t->pos + 1] == '{')
			return imap_tokenizer_literal(t, token_r, error_r);
		return imap_tokenizer_atom(t, token_r, error_r);
	case '\0':
		*error_r = "NUL in line";
		return -1;
	case '\r':
		*error_r = "CR without LF";
		return -1;
	case ']':
		*error_r = "unexpected ]";
		return -1;
	default:
		return imap_tokenizer_atom(t, token_r, error_r);
	}
}

int imap_quoted_unescape(const uint8_t *data, size_t len, uint8_t *buf,
			 size_t bufsize, size_t *len_r)
{
	size_t out = 0;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\\' && i + 1 < len)
			i++;
		if (out >= bufsize)
			return -1;
		buf[out++] = data[i];
	}
	*len_r = out;
	return 0;
}

int imap_tokenizer_astring(imap_tokenizer *t, uint8_t *buf, size_t bufsize,
			   size_t *len_r, const char **error_r)
{
	imap_token token;
	if (imap_tokenizer_next(t, &token, error_r) < 0)
		return -1;
	switch (token.type) {
	case IMAP_TOKEN_ATOM:
		/* astring atoms may contain "]" but never brackets' contents
		 * with spaces; what the atom reader took is the value. */
		if (token.len > bufsize) {
			*error_r = "argument too long";
			return -1;
		}
		memcpy(buf, token.data, token.len);
		*len_r = token.len;
		return 0;
	case IMAP_TOKEN_QUOTED:
		if (imap_quoted_unescape(token.data, token.len, buf, bufsize, len_r) < 0) {
			*error_r = "argument too long";
			return -1;
		}
		return 0;
	case IMAP_TOKEN_LITERAL:
		if (token.data == NULL && token.literal_size > 0) {
			*error_r = "literal data missing";
			return -1;
		}
		if (token.len > bufsize) {
			*error_r = "argument too long";
			return -1;
		}
		if (token.len > 0)
			memcpy(buf, token.data, token.len);
		*len_r = token.len;
		return 0;
	case IMAP_TOKEN_EOL:
		*error_r = "missing argument";
		return -1;
	default:
		*error_r = "expected a string";
		return -1;
	}
}

bool imap_token_is(const imap_token *token, const char *word)
{
	size_t n = strlen(word);
	if (token->type != IMAP_TOKEN_ATOM || token->len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (imap_upper(token->data[i]) != imap_upper((uint8_t)word[i]))
			return false;
	}
	return true;
}

/* ---- commands ------------------------------------------------------------- */

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool imap_is_tag_char(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\+", c) == NULL;
}

static bool imap_is_name_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		imap_is_digit(c) || c == '-' || c == '_' || c == '.' || c == '=';
}

/* Reads a command or response keyword at *pos into name (upper case).
 * Returns its length, 0 if there is none, -1 if too long. */
static int imap_read_name(const uint8_t *line, size_t len, size_t *pos,
			  char *name, size_t name_size)
{
	size_t start = *pos, n = 0;
	while (*pos < len && imap_is_name_char(line[*pos])) {
		if (n + 1 >= name_size)
			return -1;
		name[n++] = (char)imap_upper(line[*pos]);
		(*pos)++;
	}
	name[n] = '\0';
	return (int)(*pos - start);
}

static bool imap_at_word_end(const uint8_t *line, size_t len, size_t pos)
{
	return pos >= len || line[pos] == ' ' || line[pos] == '\r' ||
		line[pos] == '\n';
}

int imap_parser_command(const uint8_t *line, size_t len, imap_command *cmd_r,
			const char **error_r)
{
	memset(cmd_r, 0, sizeof(*cmd_r));
	size_t pos = 0;
	while (pos < len && imap_is_tag_char(line[pos]))
		pos++;
	if (pos == 0 || pos >= len || line[pos] != ' ') {
		*error_r = pos == 0 || imap_at_word_end(line, len, pos) ?
			"missing tag or command" : "invalid tag";
		return -1;
	}
	if (pos > IMAP_TAG_MAX) {
		*error_r = "tag too long";
		return -1;
	}
	cmd_r->tag = line;
	cmd_r->tag_len = pos;
	pos++;
	int n = imap_read_name(line, len, &pos, cmd_r->name, sizeof(cmd_r->name));
	if (n <= 0 || !imap_at_word_end(line, len, pos)) {
		*error_r = n < 0 ? "command name too long" : "invalid command name";
		return -1;
	}
	if (strcmp(cmd_r->name, "UID") == 0 && pos < len && line[pos] == ' ') {
		size_t sub = pos + 1;
		char second[IMAP_NAME_MAX];
		n = imap_read_name(line, len, &sub, second, sizeof(second));
		if (n > 0 && imap_at_word_end(line, len, sub) &&
		    strlen(second) + 4 < sizeof(cmd_r->name)) {
			strcat(cmd_r->name, " ");
			strcat(cmd_r->name, second);
			pos = sub;
		}
	}
	if (pos < len && line[pos] == ' ')
		pos++;
	cmd_r->args_pos = pos;
	return 0;
}

int imap_parser_login_args(const uint8_t *line, size_t len,
			   const imap_command *cmd, uint8_t *user,
			   size_t user_size, size_t *user_len_r, uint8_t *pass,
			   size_t pass_size, size_t *pass_len_r,
			   const char **error_r)
{
	imap_tokenizer t;
	imap_tokenizer_init(&t, line, len, 0);
	t.pos = cmd->args_pos;
	if (imap_tokenizer_astring(&t, user, user_size, user_len_r, error_r) < 0 ||
	    imap_tokenizer_astring(&t, pass, pass_size, pass_len_r, error_r) < 0)
		return -1;
	if (!imap_tokenizer_at_eol(&t)) {
		*error_r = "too many arguments";
		return -1;
	}
	return 0;
}

static bool imap_is_base64_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		imap_is_digit(c) || c == '+' || c == '/' || c == '=';
}

int imap_parser_authenticate_args(const uint8_t *line, size_t len,
				  const imap_command *cmd,
				  const uint8_t **mech_r, size_t *mech_len_r,
				  const uint8_t **ir_r, size_t *ir_len_r,
				  const char **error_r)
{
	imap_tokenizer t;
	imap_token token;
	imap_tokenizer_init(&t, line, len, 0);
	t.pos = cmd->args_pos;
	if (imap_tokenizer_next(&t, &token, error_r) < 0)
		return -1;
	if (token.type != IMAP_TOKEN_ATOM) {
		*error_r = "missing mechanism";
		return -1;
	}
	for (size_t i = 0; i < token.len; i++) {
		if (!imap_is_name_char(token.data[i])) {
			*error_r = "invalid mechanism";
			return -1;
		}
	}
	*mech_r = token.data;
	*mech_len_r = token.len;
	*ir_r = NULL;
	*ir_len_r = 0;
	if (imap_tokenizer_next(&t, &token, error_r) < 0)
		return -1;
	if (token.type == IMAP_TOKEN_EOL)
		return 0;
	if (token.type != IMAP_TOKEN_ATOM) {
		*error_r = "invalid initial response";
		return -1;
	}
	for (size_t i = 0; i < token.len; i++) {
		if (!imap_is_base64_char(token.data[i])) {
			*error_r = "invalid initial response";
			return -1;
		}
	}
	*ir_r = token.data;
	*ir_len_r = token.len;
	if (!imap_tokenizer_at_eol(&t)) {
		*error_r = "too many arguments";
		return -1;
	}
	return 0;
}

/* ---- responses ------------------------------------------------------------ */

static size_t imap_text_end(const uint8_t *line, size_t len)
{
	const uint8_t *lf = memchr(line, '\n', len);
	size_t end = lf != NULL ? (size_t)(lf - line) : len;
	if (end > 0 && line[end - 1] == '\r')
		end--;
	return end;
}

static const struct {
	const char *name;
	imap_status status;
} imap_statuses[] = {
	{ "OK", IMAP_STATUS_OK },
	{ "NO", IMAP_STATUS_NO },
	{ "BAD", IMAP_STATUS_BAD },
	{ "BYE", IMAP_STATUS_BYE },
	{ "PREAUTH", IMAP_STATUS_PREAUTH },
};

/* resp-text = ["[" resp-text-code "]" SP] text */
static int imap_parser_resp_text(const uint8_t *line, size_t pos, size_t end,
				 imap_response *resp, const char **error_r)
{
	if (pos < end && line[pos] == '[') {
		size_t name_start = ++pos;
		while (pos < end && line[pos] != ' ' && line[pos] != ']')
			pos++;
		if (pos == name_start) {
			*error_r = "empty response code";
			return -1;
		}
		resp->code = line + name_start;
		resp->code_len = pos - name_start;
		if (pos < end && line[pos] == ' ') {
			size_t args_start = ++pos;
			while (pos < end && line[pos] != ']')
				pos++;
			resp->code_args = line + args_start;
			resp->code_args_len = pos - args_start;
		}
		if (pos >= end) {
			*error_r = "unterminated response code";
			return -1;
		}
		pos++;	/* ']' */
		if (pos < end && line[pos] == ' ')
			pos++;
	}
	resp->text = line + pos;
	resp->text_len = end - pos;
	return 0;
}

int imap_parser_response(const uint8_t *line, size_t len,
			 imap_response *resp_r, const char **error_r)
{
	memset(resp_r, 0, sizeof(*resp_r));
	size_t end = imap_text_end(line, len);
	size_t pos = 0;
	if (end == 0) {
		*error_r = "empty response";
		return -1;
	}
	if (line[0] == '+') {
		resp_r->kind = IMAP_RESP_CONTINUATION;
		pos = 1;
		if (pos < end && line[pos] == ' ')
			pos++;
		resp_r->text = line + pos;
		resp_r->text_len = end - pos;
		resp_r->args_pos = pos;
		return 0;
	}
	if (line[0] == '*') {
		resp_r->kind = IMAP_RESP_UNTAGGED;
		pos = 1;
	} else {
		while (pos < end && imap_is_tag_char(line[pos]))
			pos++;
		if (pos == 0) {
			*error_r = "invalid tag";
			return -1;
		}
		resp_r->kind = IMAP_RESP_TAGGED;
		resp_r->tag = line;
		resp_r->tag_len = pos;
	}
	if (pos >= end || line[pos] != ' ') {
		*error_r = "missing response keyword";
		return -1;
	}
	pos++;
	if (resp_r->kind == IMAP_RESP_UNTAGGED && pos < end && imap_is_digit(line[pos])) {
		uint64_t number = 0;
		while (pos < end && imap_is_digit(line[pos])) {
			number = number * 10 + (uint64_t)(line[pos] - '0');
			if (number > UINT32_MAX) {
				*error_r = "number too large";
				return -1;
			}
			pos++;
		}
		if (pos >= end || line[pos] != ' ') {
			*error_r = "missing response keyword";
			return -1;
		}
		pos++;
		resp_r->has_number = true;
		resp_r->number = (uint32_t)number;
	}
	int n = imap_read_name(line, end, &pos, resp_r->keyword, sizeof(resp_r->keyword));
	if (n <= 0 || !imap_at_word_end(line, end, pos)) {
		*error_r = n < 0 ? "response keyword too long" : "invalid response keyword";
		return -1;
	}
	if (pos < end)
		pos++;	/* SP */
	resp_r->args_pos = pos;
	for (size_t i = 0; i < sizeof(imap_statuses) / sizeof(imap_statuses[0]); i++) {
		if (!resp_r->has_number && strcmp(resp_r->keyword, imap_statuses[i].name) == 0) {
			resp_r->status = imap_statuses[i].status;
			return imap_parser_resp_text(line, pos, end, resp_r, error_r);
		}
	}
	if (resp_r->kind == IMAP_RESP_TAGGED) {
		*error_r = "tagged response without status";
		return -1;
	}
	return 0;
}

bool imap_response_code_is(const imap_response *resp, const char *name)
{
	size_t n = strlen(name);
	if (resp->code == NULL || resp->code_len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (imap_upper(resp->code[i]) != imap_upper((uint8_t)name[i]))
			return false;
	}
	return true;
}
