/* imap_fetch: FETCH items of a message held by sealpost, computed from its bytes as an IMAP
 * server would (RFC 3501 6.4.5 / 7.4.2, RFC 3516), and the parser of a FETCH item list. */
#include "imap_fetch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "imap_parser.h"

/* ==== the item list ================================================================== */

#define FETCH_LIST_DEPTH 8
#define FETCH_FIELD_MAX 1024

static bool fetch_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* Matches word (ASCII, case-insensitive) at data[*pos] and advances past it. */
static bool fetch_match(const uint8_t *data, size_t len, size_t *pos, const char *word)
{
	size_t n = strlen(word);
	if (len - *pos < n || g_ascii_strncasecmp((const char *)data + *pos, word, n) != 0)
		return false;
	*pos += n;
	return true;
}

static void fetch_att_free_fields(imap_fetch_att *att)
{
	for (size_t i = 0; i < att->n_fields; i++)
		g_free(att->fields[i]);
	att->n_fields = 0;
}

/* A decimal at data[*pos], at most max; nz: not zero. */
static int fetch_parse_number(const uint8_t *data, size_t len, size_t *pos, uint64_t max,
			      bool nz, uint64_t *value_r)
{
	size_t start = *pos;
	uint64_t v = 0;
	while (*pos < len && fetch_is_digit(data[*pos])) {
		uint64_t d = (uint64_t)(data[*pos] - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
		(*pos)++;
	}
	if (*pos == start)
		return -1;
	/* Leading zeros are accepted, as Dovecot does; zero itself is not. */
	if (nz && v == 0)
		return -1;
	*value_r = v;
	return 0;
}

/* The section between "[" and "]": t->pos is just after "[". On success t->pos is just
 * after "]". BINARY takes the same sections (RFC 3516 allows only part numbers; Dovecot
 * takes all, and so do we). */
static int fetch_parse_section(imap_tokenizer *t, imap_fetch_att *att, const char **error_r)
{
	const uint8_t *d = t->data;
	size_t len = t->len;
	size_t pos = t->pos;

	while (pos < len && fetch_is_digit(d[pos])) {
		uint64_t n;
		if (fetch_parse_number(d, len, &pos, UINT32_MAX, true, &n) < 0) {
			*error_r = "invalid part number in section";
			return -1;
		}
		if (att->n_part >= IMAP_FETCH_MAX_PART_DEPTH) {
			*error_r = "too many part numbers in section";
			return -1;
		}
		att->part[att->n_part++] = (uint32_t)n;
		if (pos < len && d[pos] == '.') {
			pos++;
			if (pos >= len) {
				*error_r = "invalid section";
				return -1;
			}
			if (!fetch_is_digit(d[pos]))
				break;
		} else {
			break;
		}
	}
	if (pos < len && d[pos] == ']') {
		if (att->n_part > 0 && d[pos - 1] == '.') {
			*error_r = "invalid section";
			return -1;
		}
		t->pos = pos + 1;
		att->spec = IMAP_FETCH_SPEC_NONE;
		return 0;
	}
	if (att->n_part > 0 && d[pos - 1] != '.') {
		*error_r = "invalid section";	/* "1.2HEADER" */
		return -1;
	}
	bool fields = false;
	if (fetch_match(d, len, &pos, "HEADER.FIELDS.NOT")) {
		att->spec = IMAP_FETCH_SPEC_HEADER_FIELDS_NOT;
		fields = true;
	} else if (fetch_match(d, len, &pos, "HEADER.FIELDS")) {
		att->spec = IMAP_FETCH_SPEC_HEADER_FIELDS;
		fields = true;
	} else if (fetch_match(d, len, &pos, "HEADER")) {
		att->spec = IMAP_FETCH_SPEC_HEADER;
	} else if (fetch_match(d, len, &pos, "TEXT")) {
		att->spec = IMAP_FETCH_SPEC_TEXT;
	} else if (att->n_part > 0 && fetch_match(d, len, &pos, "MIME")) {
		att->spec = IMAP_FETCH_SPEC_MIME;
	} else {
		*error_r = "invalid section";
		return -1;
	}
	if (fields) {
		/* SP "(" astring *(SP astring) ")": the astrings may be quoted or
		 * literals, which the bracket-aware atom reader cannot hold. */
		if (pos >= len || d[pos] != ' ') {
			*error_r = "HEADER.FIELDS without a field list";
			return -1;
		}
		while (pos < len && d[pos] == ' ')
			pos++;
		if (pos >= len || d[pos] != '(') {
			*error_r = "HEADER.FIELDS without a field list";
			return -1;
		}
		pos++;
		t->pos = pos;
		for (;;) {
			while (t->pos < len && d[t->pos] == ' ')
				t->pos++;
			if (t->pos < len && d[t->pos] == ')') {
				t->pos++;
				break;
			}
			if (att->n_fields >= IMAP_FETCH_MAX_FIELDS) {
				*error_r = "too many header fields";
				return -1;
			}
			uint8_t buf[FETCH_FIELD_MAX];
			size_t n;
			if (t->pos < len && (d[t->pos] == '(' || d[t->pos] == ']')) {
				*error_r = "invalid header field list";
				return -1;
			}
			if (imap_tokenizer_astring(t, buf, sizeof(buf), &n, error_r) < 0)
				return -1;
			if (n == 0 || memchr(buf, '\0', n) != NULL) {
				*error_r = "invalid header field name";
				return -1;
			}
			att->fields[att->n_fields++] = g_strndup((const char *)buf, n);
		}
		if (att->n_fields == 0) {
			*error_r = "empty header field list";
			return -1;
		}
		pos = t->pos;
	}
	if (pos >= len || d[pos] != ']') {
		*error_r = "invalid section";
		return -1;
	}
	t->pos = pos + 1;
	return 0;
}

static int fetch_parse_partial(imap_tokenizer *t, imap_fetch_att *att, const char **error_r)
{
	const uint8_t *d = t->data;
	size_t pos = t->pos;
	if (pos >= t->len || d[pos] != '<')
		return 0;
	pos++;
	uint64_t start, plen;
	if (fetch_parse_number(d, t->len, &pos, UINT64_MAX, false, &start) < 0) {
		*error_r = "invalid partial";
		return -1;
	}
	if (pos < t->len && d[pos] == '>') {
		/* "<start>": to the end, as Dovecot takes it. */
		t->pos = pos + 1;
		att->partial = true;
		att->partial_start = start;
		att->partial_len = UINT64_MAX - start;
		return 0;
	}
	if (pos >= t->len || d[pos] != '.') {
		*error_r = "invalid partial";
		return -1;
	}
	pos++;
	/* RFC 9051 asks for a non-zero length; a zero one is answered empty as
	 * Dovecot does rather than refused. */
	if (fetch_parse_number(d, t->len, &pos, UINT64_MAX, false, &plen) < 0 ||
	    pos >= t->len || d[pos] != '>') {
		*error_r = "invalid partial";
		return -1;
	}
	if (plen > UINT64_MAX - start) {
		*error_r = "partial out of range";
		return -1;
	}
	t->pos = pos + 1;
	att->partial = true;
	att->partial_start = start;
	att->partial_len = plen;
	return 0;
}

/* Bytes an item name may hold. */
static bool fetch_name_char(uint8_t c)
{
	return c > ' ' && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"' &&
		c != '[' && c != ']' && c != '%' && c != '*' && c != '\\' && c != '<' &&
		c != '>';
}

static const struct {
	const char *name;
	imap_fetch_att_type type;
	bool peek;
} fetch_simple_items[] = {
	{ "UID", IMAP_FETCH_UID, false },
	{ "FLAGS", IMAP_FETCH_FLAGS, false },
	{ "INTERNALDATE", IMAP_FETCH_INTERNALDATE, false },
	{ "MODSEQ", IMAP_FETCH_MODSEQ, false },
	{ "ENVELOPE", IMAP_FETCH_ENVELOPE, false },
	{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE, false },
	{ "BODY", IMAP_FETCH_BODY, false },
	{ "RFC822", IMAP_FETCH_RFC822, false },
	{ "RFC822.HEADER", IMAP_FETCH_RFC822_HEADER, true },
	{ "RFC822.TEXT", IMAP_FETCH_RFC822_TEXT, false },
	{ "RFC822.SIZE", IMAP_FETCH_RFC822_SIZE, false },
};

/* One item at t->pos (not a macro). in_list: an extension item may carry a
 * parenthesised argument list (PREVIEW (LAZY)), kept in its text. */
static int fetch_parse_item(imap_tokenizer *t, bool in_list, imap_fetch_att *att,
			    const char **error_r)
{
	const uint8_t *d = t->data;
	size_t start = t->pos, pos = t->pos;
	memset(att, 0, sizeof(*att));
	while (pos < t->len && fetch_name_char(d[pos]))
		pos++;
	size_t name_len = pos - start;
	if (name_len == 0) {
		*error_r = "invalid FETCH item";
		return -1;
	}
	const char *name = (const char *)d + start;
	bool section = pos < t->len && d[pos] == '[';
	att->text = d + start;
	if (section) {
		if (name_len == 4 && g_ascii_strncasecmp(name, "BODY", 4) == 0) {
			att->type = IMAP_FETCH_BODY_SECTION;
		} else if (name_len == 9 && g_ascii_strncasecmp(name, "BODY.PEEK", 9) == 0) {
			att->type = IMAP_FETCH_BODY_SECTION;
			att->peek = true;
		} else if (name_len == 6 && g_ascii_strncasecmp(name, "BINARY", 6) == 0) {
			att->type = IMAP_FETCH_BINARY_SECTION;
		} else if (name_len == 11 && g_ascii_strncasecmp(name, "BINARY.PEEK", 11) == 0) {
			att->type = IMAP_FETCH_BINARY_SECTION;
			att->peek = true;
		} else if (name_len == 11 && g_ascii_strncasecmp(name, "BINARY.SIZE", 11) == 0) {
			att->type = IMAP_FETCH_BINARY_SIZE;
		} else {
			*error_r = "unknown FETCH item with a section";
			return -1;
		}
		t->pos = pos + 1;
		att->section = d + t->pos;
		if (fetch_parse_section(t, att, error_r) < 0)
			goto fail;
		att->section_len = (size_t)(d + t->pos - 1 - att->section);
		if (fetch_parse_partial(t, att, error_r) < 0)
			goto fail;
		if (att->type == IMAP_FETCH_BINARY_SIZE)
			att->partial = false;
		if (t->pos < t->len && fetch_name_char(d[t->pos])) {
			*error_r = "junk after FETCH item";
			goto fail;
		}
		att->text_len = t->pos - start;
		return 0;
	}
	if (pos < t->len && (d[pos] == '<' || d[pos] == ']')) {
		*error_r = "invalid FETCH item";
		return -1;
	}
	t->pos = pos;
	att->text_len = name_len;
	for (size_t i = 0; i < G_N_ELEMENTS(fetch_simple_items); i++) {
		if (strlen(fetch_simple_items[i].name) == name_len &&
		    g_ascii_strncasecmp(name, fetch_simple_items[i].name, name_len) == 0) {
			att->type = fetch_simple_items[i].type;
			att->peek = fetch_simple_items[i].peek;
			return 0;
		}
	}
	if ((name_len == 9 && g_ascii_strncasecmp(name, "BODY.PEEK", 9) == 0) ||
	    /* macros stand alone, never in a list */
	    (name_len == 3 && g_ascii_strncasecmp(name, "ALL", 3) == 0) ||
	    (name_len == 4 && g_ascii_strncasecmp(name, "FAST", 4) == 0) ||
	    (name_len == 4 && g_ascii_strncasecmp(name, "FULL", 4) == 0) ||
	    (name_len >= 6 && g_ascii_strncasecmp(name, "BINARY", 6) == 0) ||
	    !g_ascii_isalpha(name[0])) {
		*error_r = "invalid FETCH item";
		return -1;
	}
	att->type = IMAP_FETCH_OTHER;
	if (in_list) {
		/* "PREVIEW (LAZY)": an argument list glued to the item by one SP. */
		size_t save = t->pos;
		unsigned save_depth = t->depth;
		imap_token tok;
		const char *err;
		if (imap_tokenizer_next(t, &tok, &err) == 0 && tok.type == IMAP_TOKEN_LIST_OPEN) {
			unsigned depth = 1;
			while (depth > 0) {
				if (imap_tokenizer_next(t, &tok, error_r) < 0)
					return -1;
				if (tok.type == IMAP_TOKEN_EOL) {
					*error_r = "unterminated list";
					return -1;
				}
				if (tok.type == IMAP_TOKEN_LIST_OPEN)
					depth++;
				else if (tok.type == IMAP_TOKEN_LIST_CLOSE)
					depth--;
			}
			att->text_len = t->pos - start;
		} else {
			t->pos = save;
			t->depth = save_depth;
		}
	}
	return 0;
fail:
	fetch_att_free_fields(att);
	return -1;
}

static void fetch_atts_add(GArray *arr, imap_fetch_att_type type, const char *text)
{
	imap_fetch_att att;
	memset(&att, 0, sizeof(att));
	att.type = type;
	att.text = (const uint8_t *)text;
	att.text_len = strlen(text);
	g_array_append_val(arr, att);
}

static bool fetch_macro(GArray *arr, const uint8_t *name, size_t len)
{
	static const char *const all[] = { "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE" };
	static const imap_fetch_att_type all_types[] = {
		IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE, IMAP_FETCH_RFC822_SIZE,
		IMAP_FETCH_ENVELOPE,
	};
	size_t n;
	bool body = false;
	if (len == 3 && g_ascii_strncasecmp((const char *)name, "ALL", 3) == 0)
		n = 4;
	else if (len == 4 && g_ascii_strncasecmp((const char *)name, "FAST", 4) == 0)
		n = 3;
	else if (len == 4 && g_ascii_strncasecmp((const char *)name, "FULL", 4) == 0)
		n = 4, body = true;
	else
		return false;
	for (size_t i = 0; i < n; i++)
		fetch_atts_add(arr, all_types[i], all[i]);
	if (body)
		fetch_atts_add(arr, IMAP_FETCH_BODY, "BODY");
	return true;
}

static void fetch_atts_array_free(GArray *arr)
{
	for (guint i = 0; i < arr->len; i++)
		fetch_att_free_fields(&g_array_index(arr, imap_fetch_att, i));
	g_array_free(arr, TRUE);
}

int imap_fetch_atts_parse(const uint8_t *data, size_t len, imap_fetch_atts *atts_r,
			  const char **error_r)
{
	memset(atts_r, 0, sizeof(*atts_r));
	GArray *arr = g_array_new(FALSE, TRUE, sizeof(imap_fetch_att));
	imap_tokenizer t;
	imap_tokenizer_init(&t, data, len, FETCH_LIST_DEPTH);
	imap_fetch_att att;

	while (t.pos < len && data[t.pos] == ' ')
		t.pos++;
	if (imap_tokenizer_at_eol(&t)) {
		*error_r = "missing FETCH items";
		goto fail;
	}
	if (data[t.pos] == '(') {
		t.pos++;
		t.depth = 1;
		for (;;) {
			while (t.pos < len && data[t.pos] == ' ')
				t.pos++;
			if (t.pos < len && data[t.pos] == ')') {
				t.pos++;
				t.depth = 0;
				break;
			}
			if (imap_tokenizer_at_eol(&t)) {
				*error_r = "unterminated FETCH item list";
				goto fail;
			}
			if (arr->len > 0 && data[t.pos - 1] != ' ') {
				*error_r = "missing space between FETCH items";
				goto fail;
			}
			if (fetch_parse_item(&t, true, &att, error_r) < 0)
				goto fail;
			g_array_append_val(arr, att);
			if (arr->len > 4096) {
				*error_r = "too many FETCH items";
				goto fail;
			}
		}
		if (arr->len == 0) {
			*error_r = "empty FETCH item list";
			goto fail;
		}
	} else {
		size_t start = t.pos, pos = t.pos;
		while (pos < len && fetch_name_char(data[pos]))
			pos++;
		if ((pos >= len || data[pos] != '[') && fetch_macro(arr, data + start, pos - start)) {
			t.pos = pos;
		} else {
			if (fetch_parse_item(&t, false, &att, error_r) < 0)
				goto fail;
			g_array_append_val(arr, att);
		}
	}
	/* Fetch modifiers (RFC 4551/7162 CHANGEDSINCE, VANISHED ...). */
	if (!imap_tokenizer_at_eol(&t)) {
		if (t.pos < len && data[t.pos] != ' ') {
			*error_r = "junk after FETCH items";
			goto fail;
		}
		imap_token tok;
		if (imap_tokenizer_next(&t, &tok, error_r) < 0)
			goto fail;
		if (tok.type != IMAP_TOKEN_LIST_OPEN) {
			*error_r = "junk after FETCH items";
			goto fail;
		}
		while (t.depth > 0) {
			if (imap_tokenizer_next(&t, &tok, error_r) < 0)
				goto fail;
			if (tok.type == IMAP_TOKEN_EOL) {
				*error_r = "unterminated FETCH modifiers";
				goto fail;
			}
			if (tok.type == IMAP_TOKEN_LITERAL && tok.data == NULL &&
			    tok.literal_size > 0) {
				*error_r = "literal data missing";
				goto fail;
			}
		}
		if (!imap_tokenizer_at_eol(&t)) {
			*error_r = "junk after FETCH modifiers";
			goto fail;
		}
	}
	atts_r->n_atts = arr->len;
	atts_r->atts = (imap_fetch_att *)(void *)g_array_free(arr, FALSE);
	return 0;
fail:
	fetch_atts_array_free(arr);
	return -1;
}

void imap_fetch_atts_clear(imap_fetch_atts *atts)
{
	for (size_t i = 0; i < atts->n_atts; i++)
		fetch_att_free_fields(&atts->atts[i]);
	g_free(atts->atts);
	atts->atts = NULL;
	atts->n_atts = 0;
}

bool imap_fetch_att_from_content(const imap_fetch_att *att)
{
	switch (att->type) {
	case IMAP_FETCH_UID:
	case IMAP_FETCH_FLAGS:
	case IMAP_FETCH_INTERNALDATE:
	case IMAP_FETCH_MODSEQ:
	case IMAP_FETCH_OTHER:
		return false;
	default:
		return true;
	}
}

bool imap_fetch_att_sets_seen(const imap_fetch_att *att)
{
	switch (att->type) {
	case IMAP_FETCH_RFC822:
	case IMAP_FETCH_RFC822_TEXT:
		return true;
	case IMAP_FETCH_BODY_SECTION:
	case IMAP_FETCH_BINARY_SECTION:
		return !att->peek;
	default:
		return false;
	}
}


/* ==== the message's structure ========================================================
 * Offsets come from a scan of our own, in the manner of Dovecot's message parser: GMime's
 * parser tells where the top-level header ends (g_mime_parser_get_headers_end) and where
 * each header field starts, but not where a MIME part's header ends, where a multipart's
 * body or a boundary line starts, nor the raw bytes of a field — and IMAP sections are
 * exactly those byte ranges. Structured field values (Content-Type parameters, address
 * lists) are read by the small RFC 5322 lexer below rather than by GMime because IMAP
 * carries them undecoded (RFC 3501 7.4.2: RFC 2047 words and RFC 2231 values as
 * written), while GMime only hands out decoded values. GMime does the transfer decoding
 * for BINARY. */

#define FETCH_MAX_DEPTH 100
#define FETCH_MAX_PARTS 10000

typedef struct {
	char *name, *value;
} fetch_param;

typedef struct fetch_part fetch_part;
struct fetch_part {
	/* The header is [hdr_start, body_start), with its empty line. */
	size_t hdr_start, body_start, body_end;
	uint64_t body_lines;
	/* Content-Type as written; NULL type: absent or unparsable. */
	char *type, *subtype;
	GArray *params;		/* fetch_param */
	char *cte, *id, *desc, *md5, *disposition, *language, *location;
	GArray *disp_params;
	size_t consumed_end;	/* body_end, or the end of a cut header's CRLF */
	bool default_rfc822;	/* a multipart/digest child without Content-Type */
	bool multipart;		/* children are the parts */
	bool rfc822;		/* children[0] is the embedded message */
	fetch_part **children;
	size_t n_children;
};

struct imap_fetch_msg {
	GBytes *bytes;
	const uint8_t *data;
	size_t size;
	fetch_part *root;
	size_t n_parts;
	bool too_big;
	GArray *dashes;		/* size_t offsets of the lines that start with "--" */
};

/* ---- header fields ---- */

typedef struct {
	size_t start;		/* the field's first byte */
	size_t name_end;	/* end of the name (before any WSP and the colon) */
	size_t value_start;	/* after the colon; == end when there is none */
	size_t end;		/* after the CRLF of its last line */
	bool has_colon;
} fetch_field;

/* The next field of the header [*pos, hdr_end), which excludes the empty line. */
static bool fetch_next_field(const uint8_t *d, size_t *pos, size_t hdr_end, fetch_field *f)
{
	if (*pos >= hdr_end)
		return false;
	size_t p = *pos;
	f->start = p;
	/* The field runs over continuation lines (starting with SP or HTAB). */
	for (;;) {
		const uint8_t *nl = memchr(d + p, '\n', hdr_end - p);
		p = nl == NULL ? hdr_end : (size_t)(nl - d) + 1;
		if (p >= hdr_end || (d[p] != ' ' && d[p] != '\t'))
			break;
	}
	f->end = p;
	const uint8_t *colon = memchr(d + f->start, ':', f->end - f->start);
	f->has_colon = colon != NULL;
	if (colon == NULL) {
		f->name_end = f->value_start = f->end;
	} else {
		f->name_end = (size_t)(colon - d);
		while (f->name_end > f->start &&
		       (d[f->name_end - 1] == ' ' || d[f->name_end - 1] == '\t'))
			f->name_end--;
		f->value_start = (size_t)(colon - d) + 1;
	}
	*pos = p;
	return true;
}

static bool fetch_field_is(const uint8_t *d, const fetch_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->has_colon && f->name_end - f->start == n &&
		g_ascii_strncasecmp((const char *)d + f->start, name, n) == 0;
}

/* The unfolded value: line ends removed, leading and trailing WSP trimmed. *folded_r:
 * it ran over several lines. */
static char *fetch_field_value(const uint8_t *d, const fetch_field *f, bool *folded_r)
{
	GString *s = g_string_sized_new(f->end - f->value_start);
	bool folded = false;
	for (size_t i = f->value_start; i < f->end; i++) {
		if (d[i] != '\r' && d[i] != '\n')
			g_string_append_c(s, (char)d[i]);
		else if (d[i] == '\n' && i + 1 < f->end)
			folded = true;
	}
	if (folded_r != NULL)
		*folded_r = folded;
	size_t b = 0;
	while (b < s->len && (s->str[b] == ' ' || s->str[b] == '\t'))
		b++;
	g_string_erase(s, 0, (gssize)b);
	while (s->len > 0 && (s->str[s->len - 1] == ' ' || s->str[s->len - 1] == '\t'))
		g_string_truncate(s, s->len - 1);
	return g_string_free(s, FALSE);
}

/* Where the body starts: after the first empty line, or at end if there is none. */
static size_t fetch_header_end(const uint8_t *d, size_t start, size_t end)
{
	size_t p = start;
	while (p < end) {
		if (d[p] == '\n')
			return p + 1;
		if (d[p] == '\r' && p + 1 < end && d[p + 1] == '\n')
			return p + 2;
		const uint8_t *nl = memchr(d + p, '\n', end - p);
		if (nl == NULL)
			return end;
		p = (size_t)(nl - d) + 1;
	}
	return end;
}

/* The header without its empty line. */
static size_t fetch_fields_end(const uint8_t *d, size_t hdr_start, size_t body_start)
{
	size_t e = body_start;
	if (e > hdr_start && d[e - 1] == '\n') {
		/* Only strip when it is the empty line, not a last field's CRLF. */
		size_t ll = e - 1 > hdr_start && d[e - 2] == '\r' ? 2 : 1;
		if (e - ll == hdr_start || d[e - ll - 1] == '\n')
			e -= ll;
	}
	return e;
}

/* ---- an RFC 5322 / MIME lexer over an unfolded value ---- */

typedef struct {
	const char *s;
	size_t len, pos;
	char *comment;		/* the last comment skipped (for "addr (Name)") */
} fetch_lex;

static void fetch_lex_skip(fetch_lex *l)
{
	for (;;) {
		while (l->pos < l->len && (l->s[l->pos] == ' ' || l->s[l->pos] == '\t'))
			l->pos++;
		if (l->pos >= l->len || l->s[l->pos] != '(')
			return;
		GString *c = g_string_new(NULL);
		unsigned depth = 0;
		while (l->pos < l->len) {
			char ch = l->s[l->pos++];
			if (ch == '\\' && l->pos < l->len) {
				g_string_append_c(c, l->s[l->pos++]);
				continue;
			}
			if (ch == '(' && depth++ == 0)
				continue;
			if (ch == ')' && --depth == 0)
				break;
			g_string_append_c(c, ch);
		}
		g_free(l->comment);
		l->comment = g_string_free(c, FALSE);
	}
}

static bool fetch_is_special(char c)
{
	return c != '\0' && strchr("()<>@,;:\\\".[]", c) != NULL;
}

static bool fetch_is_tspecial(char c)
{
	return c != '\0' && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* A quoted string at l->pos ('"'): appends its unescaped content. */
static void fetch_lex_quoted(fetch_lex *l, GString *out)
{
	l->pos++;
	while (l->pos < l->len) {
		char ch = l->s[l->pos++];
		if (ch == '"')
			return;
		if (ch == '\\' && l->pos < l->len)
			ch = l->s[l->pos++];
		g_string_append_c(out, ch);
	}
}

/* A MIME token (RFC 2045) or NULL. */
static char *fetch_lex_token(fetch_lex *l)
{
	fetch_lex_skip(l);
	size_t start = l->pos;
	while (l->pos < l->len && (unsigned char)l->s[l->pos] > ' ' &&
	       !fetch_is_tspecial(l->s[l->pos]))
		l->pos++;
	return l->pos > start ? g_strndup(l->s + start, l->pos - start) : NULL;
}

static void fetch_params_free(GArray *params)
{
	if (params == NULL)
		return;
	for (guint i = 0; i < params->len; i++) {
		g_free(g_array_index(params, fetch_param, i).name);
		g_free(g_array_index(params, fetch_param, i).value);
	}
	g_array_free(params, TRUE);
}

/* RFC 2231 continuations (name*0, name*1*, ...) joined into one parameter, "name*" when
 * any piece is extended, the value left encoded — as Dovecot answers them. */
static GArray *fetch_params_join(GArray *raw)
{
	GArray *out = g_array_new(FALSE, TRUE, sizeof(fetch_param));
	for (guint i = 0; i < raw->len; i++) {
		fetch_param *p = &g_array_index(raw, fetch_param, i);
		if (p->name == NULL)
			continue;
		char *star = strchr(p->name, '*');
		const char *digits = star != NULL ? star + 1 : NULL;
		size_t nd = 0;
		while (digits != NULL && fetch_is_digit((uint8_t)digits[nd]))
			nd++;
		if (star == NULL || nd == 0 || (digits[nd] != '\0' && strcmp(digits + nd, "*") != 0) ||
		    strncmp(digits, "0", nd) != 0) {
			fetch_param np = { p->name, p->value };
			p->name = p->value = NULL;
			g_array_append_val(out, np);
			continue;
		}
		/* name*0[*]: gather name*1, name*2, ... in order. */
		size_t base_len = (size_t)(star - p->name);
		bool extended = digits[nd] == '*';
		GString *value = g_string_new(p->value);
		for (unsigned idx = 1; idx < 1000; idx++) {
			bool found = false;
			for (guint j = i + 1; j < raw->len; j++) {
				fetch_param *q = &g_array_index(raw, fetch_param, j);
				if (q->name == NULL || strncmp(q->name, p->name, base_len) != 0 ||
				    q->name[base_len] != '*')
					continue;
				char *end;
				unsigned long n = strtoul(q->name + base_len + 1, &end, 10);
				if (end == q->name + base_len + 1 || n != idx ||
				    (*end != '\0' && strcmp(end, "*") != 0))
					continue;
				extended = extended || *end == '*';
				g_string_append(value, q->value);
				g_free(q->name);
				g_free(q->value);
				q->name = q->value = NULL;
				found = true;
				break;
			}
			if (!found)
				break;
		}
		fetch_param np = { g_strdup_printf("%.*s%s", (int)base_len, p->name,
						   extended ? "*" : ""),
				   g_string_free(value, FALSE) };
		g_array_append_val(out, np);
	}
	fetch_params_free(raw);
	return out;
}

/* *( ";" attribute "=" value ), lenient: unquoted values run to ";". */
static GArray *fetch_lex_params(fetch_lex *l)
{
	GArray *raw = g_array_new(FALSE, TRUE, sizeof(fetch_param));
	for (;;) {
		fetch_lex_skip(l);
		if (l->pos >= l->len)
			break;
		if (l->s[l->pos] != ';') {
			/* junk: skip to the next ";" */
			const char *semi = memchr(l->s + l->pos, ';', l->len - l->pos);
			if (semi == NULL)
				break;
			l->pos = (size_t)(semi - l->s);
		}
		l->pos++;
		char *name = fetch_lex_token(l);
		fetch_lex_skip(l);
		if (name == NULL || l->pos >= l->len || l->s[l->pos] != '=') {
			g_free(name);
			continue;
		}
		l->pos++;
		fetch_lex_skip(l);
		GString *value = g_string_new(NULL);
		if (l->pos < l->len && l->s[l->pos] == '"') {
			fetch_lex_quoted(l, value);
		} else {
			size_t start = l->pos;
			while (l->pos < l->len && l->s[l->pos] != ';')
				l->pos++;
			size_t end = l->pos;
			while (end > start && (l->s[end - 1] == ' ' || l->s[end - 1] == '\t'))
				end--;
			g_string_append_len(value, l->s + start, (gssize)(end - start));
		}
		fetch_param p = { name, g_string_free(value, FALSE) };
		g_array_append_val(raw, p);
		if (raw->len >= 256)
			break;
	}
	g_free(l->comment);
	l->comment = NULL;
	GArray *joined = fetch_params_join(raw);
	if (joined->len == 0) {
		g_array_free(joined, TRUE);
		return NULL;
	}
	return joined;
}

static void fetch_parse_content_type(fetch_part *part, const char *value)
{
	fetch_lex l = { value, strlen(value), 0, NULL };
	char *type = fetch_lex_token(&l);
	fetch_lex_skip(&l);
	char *subtype = NULL;
	bool slash = l.pos < l.len && l.s[l.pos] == '/';
	if (slash) {
		l.pos++;
		subtype = fetch_lex_token(&l);
	}
	if (type == NULL && !slash) {
		/* Nothing like a type: the defaults, as if absent. */
		g_free(subtype);
		g_free(l.comment);
		return;
	}
	/* "text" alone or "/": Dovecot keeps what there is, empty strings included. */
	part->type = type != NULL ? type : g_strdup("");
	part->subtype = subtype != NULL ? subtype : g_strdup("");
	part->params = fetch_lex_params(&l);
}

static void fetch_parse_disposition(fetch_part *part, const char *value)
{
	if (*value == '\0')
		return;
	fetch_lex l = { value, strlen(value), 0, NULL };
	char *disp = fetch_lex_token(&l);
	/* "; x=y": Dovecot answers ("" ("x" "y")). */
	part->disposition = disp != NULL ? disp : g_strdup("");
	part->disp_params = fetch_lex_params(&l);
}

static const char *fetch_param_get(GArray *params, const char *name)
{
	for (guint i = 0; params != NULL && i < params->len; i++) {
		fetch_param *p = &g_array_index(params, fetch_param, i);
		if (g_ascii_strcasecmp(p->name, name) == 0)
			return p->value;
	}
	return NULL;
}

static bool fetch_part_is(const fetch_part *part, const char *type, const char *subtype)
{
	if (part->type == NULL) {
		if (part->default_rfc822)
			return g_ascii_strcasecmp(type, "message") == 0 &&
				(subtype == NULL || g_ascii_strcasecmp(subtype, "rfc822") == 0);
		return g_ascii_strcasecmp(type, "text") == 0 &&
			(subtype == NULL || g_ascii_strcasecmp(subtype, "plain") == 0);
	}
	return g_ascii_strcasecmp(part->type, type) == 0 &&
		(subtype == NULL || g_ascii_strcasecmp(part->subtype, subtype) == 0);
}

/* The transfer encoding leaves the bytes as they are. */
static bool fetch_cte_identity(const char *cte)
{
	return cte == NULL || *cte == '\0' || g_ascii_strcasecmp(cte, "7bit") == 0 ||
		g_ascii_strcasecmp(cte, "8bit") == 0 || g_ascii_strcasecmp(cte, "binary") == 0;
}

static void fetch_part_free(fetch_part *part)
{
	if (part == NULL)
		return;
	for (size_t i = 0; i < part->n_children; i++)
		fetch_part_free(part->children[i]);
	g_free(part->children);
	g_free(part->type);
	g_free(part->subtype);
	fetch_params_free(part->params);
	g_free(part->cte);
	g_free(part->id);
	g_free(part->desc);
	g_free(part->md5);
	g_free(part->disposition);
	fetch_params_free(part->disp_params);
	g_free(part->language);
	g_free(part->location);
	g_free(part);
}

static void fetch_set_once(char **field, char *value)
{
	if (*field == NULL)
		*field = value;
	else
		g_free(value);
}

/* An entity is parsed from [start, raw_end). When strip, the CRLF that ends the range
 * belongs to the boundary line that follows (RFC 2046 5.1.1) — unless the entity's own
 * closing boundary line ends exactly there and has taken it, which is how Dovecot counts
 * "--inner--" CRLF "--outer". */
static fetch_part *fetch_parse_entity(imap_fetch_msg *m, size_t start, size_t raw_end,
				      bool strip, unsigned depth, bool digest_child);

static void fetch_part_add_child(fetch_part *part, fetch_part *child)
{
	part->children = g_renew(fetch_part *, part->children, part->n_children + 1);
	part->children[part->n_children++] = child;
}

static size_t fetch_strip_eol(const uint8_t *d, size_t start, size_t end)
{
	if (end > start && d[end - 1] == '\n')
		end--;
	if (end > start && d[end - 1] == '\r')
		end--;
	return end;
}

/* The parts between the boundary lines of [body_start, raw_end). A line that starts with
 * "--boundary" is a boundary line (Dovecot matches the prefix, so transport padding and
 * junk after it are allowed). Sets part->body_end. */
static int fetch_parse_multipart(imap_fetch_msg *m, fetch_part *part, const char *boundary,
				 size_t raw_end, bool strip, unsigned depth)
{
	const uint8_t *d = m->data;
	size_t blen = strlen(boundary);
	bool digest = fetch_part_is(part, "multipart", "digest");
	size_t p = part->body_start;
	size_t child_start = p;
	bool in_child = false;
	/* Only the lines starting with "--" are looked at: their offsets are found once for
	 * the whole message, so nesting does not make every level read all the bytes. */
	guint lo = 0, hi = m->dashes->len;
	while (lo < hi) {
		guint mid = lo + (hi - lo) / 2;
		if (g_array_index(m->dashes, size_t, mid) < p)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (guint k = lo; k < m->dashes->len; k++) {
		p = g_array_index(m->dashes, size_t, k);
		if (p >= raw_end)
			break;
		if (p < child_start)
			continue;	/* inside the boundary line just taken */
		if (raw_end - p >= blen + 2 && memcmp(d + p + 2, boundary, blen) == 0) {
			const uint8_t *nl = memchr(d + p, '\n', raw_end - p);
			size_t line_end = nl == NULL ? raw_end : (size_t)(nl - d) + 1;
			bool close = raw_end - p >= blen + 4 && d[p + blen + 2] == '-' &&
				d[p + blen + 3] == '-';
			if (in_child) {
				fetch_part *c = fetch_parse_entity(m, child_start, p, true,
								   depth + 1, digest);
				if (c == NULL)
					return -1;
				fetch_part_add_child(part, c);
			}
			if (close) {
				part->body_end = line_end == raw_end ? raw_end :
					strip ? fetch_strip_eol(d, part->body_start, raw_end) : raw_end;
				return 0;
			}
			in_child = true;
			child_start = line_end;
		}
	}
	if (in_child) {
		fetch_part *c = fetch_parse_entity(m, child_start, raw_end, strip, depth + 1, digest);
		if (c == NULL)
			return -1;
		fetch_part_add_child(part, c);
		part->body_end = c->body_end;
	}
	return 0;
}

static fetch_part *fetch_parse_entity(imap_fetch_msg *m, size_t start, size_t raw_end,
				      bool strip, unsigned depth, bool digest_child)
{
	if (depth > FETCH_MAX_DEPTH || ++m->n_parts > FETCH_MAX_PARTS) {
		m->too_big = true;
		return NULL;
	}
	const uint8_t *d = m->data;
	size_t end = strip ? fetch_strip_eol(d, start, raw_end) : raw_end;
	fetch_part *part = g_new0(fetch_part, 1);
	part->hdr_start = start;
	part->body_start = fetch_header_end(d, start, end);
	part->body_end = end;
	part->default_rfc822 = digest_child;

	size_t pos = start, fields_end = fetch_fields_end(d, start, part->body_start);
	fetch_field f;
	while (fetch_next_field(d, &pos, fields_end, &f)) {
		if (!f.has_colon || f.name_end - f.start < 8 ||
		    g_ascii_strncasecmp((const char *)d + f.start, "Content-", 8) != 0)
			continue;
		if (fetch_field_is(d, &f, "Content-Type")) {
			if (part->type == NULL) {
				char *v = fetch_field_value(d, &f, NULL);
				fetch_parse_content_type(part, v);
				g_free(v);
			}
		} else if (fetch_field_is(d, &f, "Content-Transfer-Encoding")) {
			fetch_set_once(&part->cte, fetch_field_value(d, &f, NULL));
		} else if (fetch_field_is(d, &f, "Content-ID")) {
			fetch_set_once(&part->id, fetch_field_value(d, &f, NULL));
		} else if (fetch_field_is(d, &f, "Content-Description")) {
			fetch_set_once(&part->desc, fetch_field_value(d, &f, NULL));
		} else if (fetch_field_is(d, &f, "Content-MD5")) {
			fetch_set_once(&part->md5, fetch_field_value(d, &f, NULL));
		} else if (fetch_field_is(d, &f, "Content-Disposition")) {
			if (part->disposition == NULL) {
				char *v = fetch_field_value(d, &f, NULL);
				fetch_parse_disposition(part, v);
				g_free(v);
			}
		} else if (fetch_field_is(d, &f, "Content-Language")) {
			fetch_set_once(&part->language, fetch_field_value(d, &f, NULL));
		} else if (fetch_field_is(d, &f, "Content-Location")) {
			fetch_set_once(&part->location, fetch_field_value(d, &f, NULL));
		}
	}

	/* A header cut short by a boundary ends before the boundary's CRLF, but an
	 * enclosing message/rfc822 counts that CRLF in its body, as Dovecot does. */
	part->consumed_end = part->body_start == end ? raw_end : end;

	const char *boundary = fetch_param_get(part->params, "boundary");
	if (part->type != NULL && g_ascii_strcasecmp(part->type, "multipart") == 0) {
		/* Without a boundary it has no parts (answered as one empty text/plain). */
		part->multipart = true;
		if (part->body_start < end && boundary != NULL && *boundary != '\0' &&
		    fetch_parse_multipart(m, part, boundary, raw_end, strip, depth) < 0) {
			fetch_part_free(part);
			return NULL;
		}
		part->consumed_end = part->body_end;
	} else if (fetch_part_is(part, "message", "rfc822") ||
		   fetch_part_is(part, "message", "global")) {
		/* Whatever its transfer encoding says (Dovecot parses it all the same). */
		part->rfc822 = true;
		fetch_part *c = fetch_parse_entity(m, part->body_start,
						   part->body_start < end ? raw_end : end, strip,
						   depth + 1, false);
		if (c == NULL) {
			fetch_part_free(part);
			return NULL;
		}
		fetch_part_add_child(part, c);
		part->body_end = part->consumed_end = c->consumed_end;
	}
	/* Only text and message/rfc822 parts tell their lines. A plain loop: compilers
	 * vectorise it, where memchr per short line is slow. */
	if (part->rfc822 || (!part->multipart && fetch_part_is(part, "text", NULL))) {
		uint64_t lines = 0;
		for (size_t i = part->body_start; i < part->body_end; i++)
			lines += d[i] == '\n';
		part->body_lines = lines;
	}
	return part;
}

/* Bare LF line ends are read as CRLF, as an IMAP server stores and serves them; lone CRs
 * stay. */
static GBytes *fetch_crlf(GBytes *msg)
{
	gsize len;
	const uint8_t *d = g_bytes_get_data(msg, &len);
	size_t bare = 0;
	for (size_t i = 0; i < len; i++) {
		if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
			bare++;
	}
	if (bare == 0)
		return g_bytes_ref(msg);
	uint8_t *out = g_malloc(len + bare);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = d[i];
	}
	return g_bytes_new_take(out, o);
}

imap_fetch_msg *imap_fetch_msg_new(GBytes *msg, const char **error_r)
{
	imap_fetch_msg *m = g_new0(imap_fetch_msg, 1);
	m->bytes = fetch_crlf(msg);
	gsize size;
	m->data = g_bytes_get_data(m->bytes, &size);
	if (m->data == NULL)
		m->data = (const uint8_t *)"";
	m->size = size;
	m->dashes = g_array_new(FALSE, FALSE, sizeof(size_t));
	for (size_t p = 0; p + 2 <= m->size;) {
		if (m->data[p] == '-' && m->data[p + 1] == '-')
			g_array_append_val(m->dashes, p);
		const uint8_t *next = memmem(m->data + p, m->size - p, "\n--", 3);
		if (next == NULL)
			break;
		p = (size_t)(next - m->data) + 1;
	}
	m->root = fetch_parse_entity(m, 0, m->size, false, 0, false);
	if (m->root == NULL) {
		*error_r = m->n_parts > FETCH_MAX_PARTS ? "message has too many MIME parts" :
			"MIME parts nested too deeply";
		imap_fetch_msg_free(&m);
		return NULL;
	}
	return m;
}

void imap_fetch_msg_free(imap_fetch_msg **m)
{
	if (*m == NULL)
		return;
	fetch_part_free((*m)->root);
	if ((*m)->dashes != NULL)
		g_array_free((*m)->dashes, TRUE);
	g_bytes_unref((*m)->bytes);
	g_free(*m);
	*m = NULL;
}

uint64_t imap_fetch_msg_size(const imap_fetch_msg *m)
{
	return m->size;
}

/* ==== rendering ====================================================================== */

static void fetch_out(GByteArray *out, const char *s)
{
	g_byte_array_append(out, (const guint8 *)s, (guint)strlen(s));
}

static void fetch_out_len(GByteArray *out, const void *data, size_t len)
{
	if (len > 0)
		g_byte_array_append(out, data, (guint)len);
}

static void fetch_out_literal(GByteArray *out, const uint8_t *data, size_t len, bool binary)
{
	char head[48];
	snprintf(head, sizeof(head), "%s{%zu}\r\n", binary ? "~" : "", len);
	fetch_out(out, head);
	fetch_out_len(out, data, len);
}

/* A string: quoted when it can be, else a literal (CR, LF, NUL, 8-bit, quotes). */
static void fetch_out_string_len(GByteArray *out, const char *s, size_t len)
{
	size_t escapes = 0;
	bool literal = len > 1024;
	for (size_t i = 0; i < len && !literal; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
			literal = true;
		else if (c == '"' || c == '\\')
			escapes++;
	}
	/* Dovecot escapes nothing: a quote or backslash makes it a literal. */
	if (literal || escapes > 0) {
		fetch_out_literal(out, (const uint8_t *)s, len, false);
		return;
	}
	g_byte_array_append(out, (const guint8 *)"\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			g_byte_array_append(out, (const guint8 *)"\\", 1);
		g_byte_array_append(out, (const guint8 *)s + i, 1);
	}
	g_byte_array_append(out, (const guint8 *)"\"", 1);
}

static void fetch_out_nstring(GByteArray *out, const char *s)
{
	if (s == NULL)
		fetch_out(out, "NIL");
	else
		fetch_out_string_len(out, s, strlen(s));
}

/* An astring as sent back in a section: an atom when it is one. */
static void fetch_out_astring(GByteArray *out, const char *s)
{
	bool atom = *s != '\0';
	for (const char *p = s; *p != '\0' && atom; p++)
		atom = fetch_name_char((uint8_t)*p);
	if (atom)
		fetch_out(out, s);
	else
		fetch_out_string_len(out, s, strlen(s));
}

/* ---- sections ---- */

/* The part a section's numbers name (Dovecot's imap_msgpart_find): a multipart's n-th
 * child; otherwise only 1 (the part itself), and deeper numbers only through a
 * message/rfc822, whose embedded message they continue in. */
static fetch_part *fetch_find_part(fetch_part *root, const uint32_t *nums, size_t n)
{
	fetch_part *part = root;
	for (size_t i = 0; i < n && part != NULL; i++) {
		bool more = i + 1 < n;
		if (part->multipart) {
			part = nums[i] >= 1 && nums[i] <= part->n_children ?
				part->children[nums[i] - 1] : NULL;
		} else if (nums[i] != 1 || (more && !part->rfc822)) {
			part = NULL;
		}
		if (part != NULL && part->rfc822 && more)
			part = part->children[0];
	}
	return part;
}

static void fetch_out_section_name(GByteArray *out, const imap_fetch_att *att)
{
	if (att->section != NULL && memchr(att->section, '\n', att->section_len) == NULL) {
		/* As the client wrote it, upper-cased, as Dovecot answers: a client
		 * may match the answer to its request by the text. */
		for (size_t i = 0; i < att->section_len; i++) {
			uint8_t c = (uint8_t)g_ascii_toupper((char)att->section[i]);
			g_byte_array_append(out, &c, 1);
		}
		return;
	}
	for (size_t i = 0; i < att->n_part; i++) {
		char num[16];
		snprintf(num, sizeof(num), "%s%u", i > 0 ? "." : "", att->part[i]);
		fetch_out(out, num);
	}
	const char *spec = NULL;
	switch (att->spec) {
	case IMAP_FETCH_SPEC_NONE:
		break;
	case IMAP_FETCH_SPEC_HEADER:
		spec = "HEADER";
		break;
	case IMAP_FETCH_SPEC_HEADER_FIELDS:
		spec = "HEADER.FIELDS";
		break;
	case IMAP_FETCH_SPEC_HEADER_FIELDS_NOT:
		spec = "HEADER.FIELDS.NOT";
		break;
	case IMAP_FETCH_SPEC_TEXT:
		spec = "TEXT";
		break;
	case IMAP_FETCH_SPEC_MIME:
		spec = "MIME";
		break;
	}
	if (spec == NULL)
		return;
	if (att->n_part > 0)
		fetch_out(out, ".");
	fetch_out(out, spec);
	if (att->spec == IMAP_FETCH_SPEC_HEADER_FIELDS ||
	    att->spec == IMAP_FETCH_SPEC_HEADER_FIELDS_NOT) {
		fetch_out(out, " (");
		for (size_t i = 0; i < att->n_fields; i++) {
			if (i > 0)
				fetch_out(out, " ");
			char *up = g_ascii_strup(att->fields[i], -1);
			fetch_out_astring(out, up);
			g_free(up);
		}
		fetch_out(out, ")");
	}
}

/* The header fields of [hdr_start, body_start) named (or, with not, not named) in att,
 * in their order, and the empty line. */
static GByteArray *fetch_header_fields(const imap_fetch_msg *m, const fetch_part *part,
				       const imap_fetch_att *att, bool not)
{
	const uint8_t *d = m->data;
	GByteArray *buf = g_byte_array_new();
	size_t pos = part->hdr_start;
	size_t fields_end = fetch_fields_end(d, part->hdr_start, part->body_start);
	fetch_field f;
	while (fetch_next_field(d, &pos, fields_end, &f)) {
		bool match = false;
		for (size_t i = 0; i < att->n_fields && !match; i++)
			match = fetch_field_is(d, &f, att->fields[i]);
		if (match != not && (f.has_colon || not)) {
			fetch_out_len(buf, d + f.start, f.end - f.start);
			if (d[f.end - 1] != '\n')
				fetch_out(buf, "\r\n");
		}
	}
	/* The empty line; Dovecot leaves it out of .NOT when the header has none. */
	if (!not || fields_end < part->body_start)
		fetch_out(buf, "\r\n");
	return buf;
}

/* Decodes the transfer encoding; -1 when it is not one that is known. */
static int fetch_decode(const char *cte, const uint8_t *data, size_t len, GByteArray *out)
{
	GMimeContentEncoding enc;
	if (fetch_cte_identity(cte)) {
		fetch_out_len(out, data, len);
		return 0;
	}
	if (g_ascii_strcasecmp(cte, "base64") == 0)
		enc = GMIME_CONTENT_ENCODING_BASE64;
	else if (g_ascii_strcasecmp(cte, "quoted-printable") == 0)
		enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
	else
		return -1;
	GMimeEncoding state;
	g_mime_encoding_init_decode(&state, enc);
	size_t outlen = g_mime_encoding_outlen(&state, len);
	guint old = out->len;
	g_byte_array_set_size(out, (guint)(old + outlen));
	size_t n = g_mime_encoding_flush(&state, (const char *)data, len, (char *)out->data + old);
	g_byte_array_set_size(out, (guint)(old + n));
	return 0;
}

/* An entity with every transfer encoding undone, as Dovecot converts a whole message or
 * multipart for BINARY: a decoded leaf's Content-Transfer-Encoding field moves to the end
 * of its header as "binary"; everything else is copied. -1 on an unknown encoding. */
static int fetch_binary_entity(const imap_fetch_msg *m, const fetch_part *part,
			       bool with_header, GByteArray *buf)
{
	const uint8_t *d = m->data;
	if (part->multipart) {
		if (with_header)
			fetch_out_len(buf, d + part->hdr_start, part->body_start - part->hdr_start);
		size_t pos = part->body_start;
		for (size_t i = 0; i < part->n_children; i++) {
			const fetch_part *c = part->children[i];
			fetch_out_len(buf, d + pos, c->hdr_start - pos);
			if (fetch_binary_entity(m, c, true, buf) < 0)
				return -1;
			pos = c->body_end;
		}
		fetch_out_len(buf, d + pos, part->body_end - pos);
		return 0;
	}
	if (part->rfc822) {
		if (with_header)
			fetch_out_len(buf, d + part->hdr_start, part->body_start - part->hdr_start);
		const fetch_part *c = part->children[0];
		if (fetch_binary_entity(m, c, true, buf) < 0)
			return -1;
		/* the CRLF a cut header leaves to its enclosing part */
		fetch_out_len(buf, d + c->body_end, part->body_end - c->body_end);
		return 0;
	}
	if (fetch_cte_identity(part->cte)) {
		size_t start = with_header ? part->hdr_start : part->body_start;
		fetch_out_len(buf, d + start, part->body_end - start);
		return 0;
	}
	GByteArray *body = g_byte_array_new();
	if (fetch_decode(part->cte, d + part->body_start, part->body_end - part->body_start,
			 body) < 0) {
		g_byte_array_unref(body);
		return -1;
	}
	if (with_header) {
		size_t pos = part->hdr_start;
		size_t fields_end = fetch_fields_end(d, part->hdr_start, part->body_start);
		fetch_field f;
		while (fetch_next_field(d, &pos, fields_end, &f)) {
			if (fetch_field_is(d, &f, "Content-Transfer-Encoding"))
				continue;
			fetch_out_len(buf, d + f.start, f.end - f.start);
			if (d[f.end - 1] != '\n')
				fetch_out(buf, "\r\n");
		}
		fetch_out(buf, "Content-Transfer-Encoding: binary\r\n\r\n");
	}
	fetch_out_len(buf, body->data, body->len);
	g_byte_array_unref(body);
	return 0;
}

/* The range of a BODY section: [*start_r, *end_r), or an allocated buffer in *buf_r. */
static void fetch_body_range(const imap_fetch_msg *m, const imap_fetch_att *att,
			     size_t *start_r, size_t *end_r, GByteArray **buf_r)
{
	*start_r = *end_r = 0;
	*buf_r = NULL;
	fetch_part *part = fetch_find_part(m->root, att->part, att->n_part);
	if (part == NULL)
		return;
	if (att->n_part > 0 && att->spec != IMAP_FETCH_SPEC_NONE &&
	    att->spec != IMAP_FETCH_SPEC_MIME) {
		/* HEADER and TEXT of a part are those of its embedded message. */
		if (!part->rfc822)
			return;
		part = part->children[0];
	}
	switch (att->spec) {
	case IMAP_FETCH_SPEC_NONE:
		*start_r = att->n_part == 0 ? part->hdr_start : part->body_start;
		*end_r = part->body_end;
		break;
	case IMAP_FETCH_SPEC_HEADER:
	case IMAP_FETCH_SPEC_MIME:
		*start_r = part->hdr_start;
		*end_r = part->body_start;
		break;
	case IMAP_FETCH_SPEC_TEXT:
		*start_r = part->body_start;
		*end_r = part->body_end;
		break;
	case IMAP_FETCH_SPEC_HEADER_FIELDS:
	case IMAP_FETCH_SPEC_HEADER_FIELDS_NOT:
		*buf_r = fetch_header_fields(m, part, att,
					     att->spec == IMAP_FETCH_SPEC_HEADER_FIELDS_NOT);
		break;
	}
}

/* The bytes of a BINARY section; -1 on an unknown transfer encoding. */
static int fetch_binary(const imap_fetch_msg *m, const imap_fetch_att *att, GByteArray *buf)
{
	fetch_part *part = fetch_find_part(m->root, att->part, att->n_part);
	if (part == NULL)
		return 0;
	switch (att->spec) {
	case IMAP_FETCH_SPEC_NONE:
		/* BINARY[] is the whole message; a part is its body (a multipart's or an
		 * embedded message's converted as a whole). */
		return fetch_binary_entity(m, part, att->n_part == 0, buf);
	case IMAP_FETCH_SPEC_TEXT:
		if (att->n_part > 0) {
			if (!part->rfc822)
				return 0;
			part = part->children[0];
		}
		return fetch_binary_entity(m, part, false, buf);
	default: {
		/* Headers are not encoded: as BODY[...] answers them. */
		size_t start, end;
		GByteArray *fields;
		fetch_body_range(m, att, &start, &end, &fields);
		if (fields != NULL) {
			fetch_out_len(buf, fields->data, fields->len);
			g_byte_array_unref(fields);
		} else {
			fetch_out_len(buf, m->data + start, end - start);
		}
		return 0;
	}
	}
}

/* "<origin> " and the clipped bytes as a literal. */
static void fetch_out_data(GByteArray *out, const imap_fetch_att *att, const uint8_t *data,
			   size_t len, bool binary_ok)
{
	if (att->partial) {
		char origin[32];
		snprintf(origin, sizeof(origin), "<%" PRIu64 ">", att->partial_start);
		fetch_out(out, origin);
		if (att->partial_start >= len) {
			len = 0;
		} else {
			data += att->partial_start;
			len -= (size_t)att->partial_start;
			if (att->partial_len < len)
				len = (size_t)att->partial_len;
		}
	}
	fetch_out(out, " ");
	bool nul = len > 0 && memchr(data, '\0', len) != NULL;
	if (binary_ok || !nul) {
		fetch_out_literal(out, data, len, nul);
		return;
	}
	/* A NUL cannot go in a plain literal: Dovecot sends 0x80 in its place. */
	guint at = out->len;
	fetch_out_literal(out, data, len, false);
	for (guint i = at; i < out->len; i++) {
		if (out->data[i] == '\0')
			out->data[i] = 0x80;
	}
}

/* ---- ENVELOPE ---- */

typedef struct {
	char *name, *route, *mailbox, *host;
	bool group;		/* group start (mailbox = its name, host NULL) or end (all NULL) */
} fetch_addr;

static void fetch_addrs_free(GArray *addrs)
{
	for (guint i = 0; i < addrs->len; i++) {
		fetch_addr *a = &g_array_index(addrs, fetch_addr, i);
		g_free(a->name);
		g_free(a->route);
		g_free(a->mailbox);
		g_free(a->host);
	}
	g_array_free(addrs, TRUE);
}

/* Words (atoms and quoted strings) up to a special; dots kept inside. Returns the words
 * joined by one space (phrase) in *phrase_r and glued (local part) in *local_r. */
static void fetch_lex_words(fetch_lex *l, GString *phrase, GString *local)
{
	for (;;) {
		fetch_lex_skip(l);
		if (l->pos >= l->len)
			return;
		char c = l->s[l->pos];
		GString *w = g_string_new(NULL);
		if (c == '"') {
			fetch_lex_quoted(l, w);
		} else if (c == '.') {
			l->pos++;
			g_string_append_c(local, '.');
			if (phrase->len > 0 && phrase->str[phrase->len - 1] != ' ')
				g_string_append_c(phrase, '.');
			g_string_free(w, TRUE);
			continue;
		} else if (!fetch_is_special(c)) {
			while (l->pos < l->len && !fetch_is_special(l->s[l->pos]) &&
			       l->s[l->pos] != ' ' && l->s[l->pos] != '\t')
				g_string_append_c(w, l->s[l->pos++]);
		} else {
			g_string_free(w, TRUE);
			return;
		}
		if (phrase->len > 0 && phrase->str[phrase->len - 1] != '.')
			g_string_append_c(phrase, ' ');
		g_string_append_len(phrase, w->str, (gssize)w->len);
		g_string_append_len(local, w->str, (gssize)w->len);
		g_string_free(w, TRUE);
	}
}

/* A domain: dot-atoms or a domain literal, as written without CFWS. */
static char *fetch_lex_domain(fetch_lex *l)
{
	GString *s = g_string_new(NULL);
	for (;;) {
		fetch_lex_skip(l);
		if (l->pos >= l->len)
			break;
		char c = l->s[l->pos];
		if (c == '[') {
			const char *close = memchr(l->s + l->pos, ']', l->len - l->pos);
			size_t end = close != NULL ? (size_t)(close - l->s) + 1 : l->len;
			g_string_append_len(s, l->s + l->pos, (gssize)(end - l->pos));
			l->pos = end;
		} else if (c == '.') {
			g_string_append_c(s, '.');
			l->pos++;
		} else if (!fetch_is_special(c)) {
			while (l->pos < l->len && !fetch_is_special(l->s[l->pos]) &&
			       l->s[l->pos] != ' ' && l->s[l->pos] != '\t')
				g_string_append_c(s, l->s[l->pos++]);
		} else {
			break;
		}
	}
	if (s->len == 0) {
		g_string_free(s, TRUE);
		return NULL;
	}
	return g_string_free(s, FALSE);
}

static char *fetch_gstring_or_null(GString *s)
{
	if (s->len == 0) {
		g_string_free(s, TRUE);
		return NULL;
	}
	return g_string_free(s, FALSE);
}

/* An RFC 5322 address list, leniently; group syntax as RFC 3501 encodes it. */
static GArray *fetch_parse_addresses(const char *value)
{
	GArray *addrs = g_array_new(FALSE, TRUE, sizeof(fetch_addr));
	fetch_lex l = { value, strlen(value), 0, NULL };
	bool in_group = false;
	while (addrs->len < 1000) {
		fetch_lex_skip(&l);
		if (l.pos >= l.len)
			break;
		char c = l.s[l.pos];
		if (c == ',') {
			l.pos++;
			continue;
		}
		if (c == ';') {
			l.pos++;
			if (in_group) {
				fetch_addr end = { 0 };
				end.group = true;
				g_array_append_val(addrs, end);
				in_group = false;
			}
			continue;
		}
		g_free(l.comment);
		l.comment = NULL;
		size_t before = l.pos;
		GString *phrase = g_string_new(NULL), *local = g_string_new(NULL);
		fetch_lex_words(&l, phrase, local);
		c = l.pos < l.len ? l.s[l.pos] : '\0';
		fetch_addr a = { 0 };
		if (c == ':' && !in_group) {
			l.pos++;
			a.group = true;
			a.mailbox = g_string_free(phrase, FALSE);
			g_string_free(local, TRUE);
			g_array_append_val(addrs, a);
			in_group = true;
			continue;
		}
		if (c == '<') {
			l.pos++;
			g_string_free(local, TRUE);
			a.name = fetch_gstring_or_null(phrase);
			/* obs-route: "@a,@b:" */
			fetch_lex_skip(&l);
			if (l.pos < l.len && l.s[l.pos] == '@') {
				const char *colon = memchr(l.s + l.pos, ':', l.len - l.pos);
				const char *gt = memchr(l.s + l.pos, '>', l.len - l.pos);
				if (colon != NULL && (gt == NULL || colon < gt)) {
					a.route = g_strndup(l.s + l.pos, (size_t)(colon - l.s) - l.pos);
					l.pos = (size_t)(colon - l.s) + 1;
				}
			}
			GString *ph = g_string_new(NULL), *lp = g_string_new(NULL);
			fetch_lex_words(&l, ph, lp);
			g_string_free(ph, TRUE);
			a.mailbox = g_string_free(lp, FALSE);
			fetch_lex_skip(&l);
			if (l.pos < l.len && l.s[l.pos] == '@') {
				l.pos++;
				a.host = fetch_lex_domain(&l);
			}
			fetch_lex_skip(&l);
			const char *gt = memchr(l.s + l.pos, '>', l.len - l.pos);
			if (gt != NULL && (size_t)(gt - l.s) >= l.pos)
				l.pos = (size_t)(gt - l.s) + 1;
		} else {
			g_string_free(phrase, TRUE);
			a.mailbox = g_string_free(local, FALSE);
			if (c == '@') {
				l.pos++;
				a.host = fetch_lex_domain(&l);
			}
			fetch_lex_skip(&l);
			if (l.comment != NULL && *l.comment != '\0')
				a.name = g_strdup(l.comment);
		}
		if (a.host == NULL)
			a.host = g_strdup("MISSING_DOMAIN");
		if (*a.mailbox == '\0') {
			g_free(a.mailbox);
			a.mailbox = g_strdup("MISSING_MAILBOX");
		}
		g_array_append_val(addrs, a);
		if (l.pos == before)
			l.pos++;	/* junk that is no address: step over it */
	}
	if (in_group) {
		fetch_addr end = { 0 };
		end.group = true;
		g_array_append_val(addrs, end);
	}
	g_free(l.comment);
	return addrs;
}

static void fetch_out_addresses(GByteArray *out, const char *value)
{
	if (value == NULL) {
		fetch_out(out, "NIL");
		return;
	}
	GArray *addrs = fetch_parse_addresses(value);
	if (addrs->len == 0) {
		fetch_out(out, "NIL");
	} else {
		fetch_out(out, "(");
		for (guint i = 0; i < addrs->len; i++) {
			fetch_addr *a = &g_array_index(addrs, fetch_addr, i);
			fetch_out(out, "(");
			fetch_out_nstring(out, a->name);
			fetch_out(out, " ");
			fetch_out_nstring(out, a->route);
			fetch_out(out, " ");
			fetch_out_nstring(out, a->mailbox);
			fetch_out(out, " ");
			fetch_out_nstring(out, a->host);
			fetch_out(out, ")");
		}
		fetch_out(out, ")");
	}
	fetch_addrs_free(addrs);
}

enum {
	ENV_DATE, ENV_SUBJECT, ENV_FROM, ENV_SENDER, ENV_REPLY_TO, ENV_TO, ENV_CC, ENV_BCC,
	ENV_IN_REPLY_TO, ENV_MESSAGE_ID, ENV_COUNT
};

static const char *const fetch_env_fields[ENV_COUNT] = {
	"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To",
	"Message-ID",
};

/* The ENVELOPE of the message whose header is [part->hdr_start, part->body_start). */
static void fetch_out_envelope(GByteArray *out, const imap_fetch_msg *m, const fetch_part *part)
{
	const uint8_t *d = m->data;
	char *v[ENV_COUNT] = { 0 };
	GString *addrs[ENV_COUNT] = { 0 };
	bool folded[ENV_COUNT] = { 0 };
	size_t pos = part->hdr_start;
	size_t fields_end = fetch_fields_end(d, part->hdr_start, part->body_start);
	fetch_field f;
	while (fetch_next_field(d, &pos, fields_end, &f)) {
		/* As Dovecot: a repeated address field adds its addresses, a repeated
		 * string field replaces the earlier one. */
		for (int i = 0; i < ENV_COUNT; i++) {
			if (!fetch_field_is(d, &f, fetch_env_fields[i]))
				continue;
			char *value = fetch_field_value(d, &f, &folded[i]);
			if (i >= ENV_FROM && i <= ENV_BCC) {
				if (addrs[i] == NULL)
					addrs[i] = g_string_new(NULL);
				else if (*value != '\0' && addrs[i]->len > 0)
					g_string_append_c(addrs[i], ',');
				g_string_append(addrs[i], value);
				g_free(value);
			} else {
				g_free(v[i]);
				v[i] = value;
			}
			break;
		}
	}
	for (int i = ENV_FROM; i <= ENV_BCC; i++) {
		if (addrs[i] != NULL)
			v[i] = g_string_free(addrs[i], FALSE);
	}
	/* Sender and Reply-To absent or empty: From (RFC 3501 7.4.2). */
	for (int i = ENV_SENDER; i <= ENV_REPLY_TO; i++) {
		if (v[i] != NULL) {
			GArray *a = fetch_parse_addresses(v[i]);
			bool empty = a->len == 0;
			fetch_addrs_free(a);
			if (!empty)
				continue;
			g_free(v[i]);
			v[i] = NULL;
		}
		v[i] = g_strdup(v[ENV_FROM]);
	}
	fetch_out(out, "(");
	for (int i = 0; i < ENV_COUNT; i++) {
		if (i > 0)
			fetch_out(out, " ");
		if (i >= ENV_FROM && i <= ENV_BCC)
			fetch_out_addresses(out, v[i]);
		else if (v[i] != NULL && folded[i])
			/* Dovecot sends a folded value as a literal, unfolded. */
			fetch_out_literal(out, (const uint8_t *)v[i], strlen(v[i]), false);
		else
			fetch_out_nstring(out, v[i]);
		g_free(v[i]);
	}
	fetch_out(out, ")");
}

/* ---- BODYSTRUCTURE ---- */

static void fetch_out_params(GByteArray *out, GArray *params)
{
	if (params == NULL || params->len == 0) {
		fetch_out(out, "NIL");
		return;
	}
	fetch_out(out, "(");
	for (guint i = 0; i < params->len; i++) {
		fetch_param *p = &g_array_index(params, fetch_param, i);
		if (i > 0)
			fetch_out(out, " ");
		fetch_out_nstring(out, p->name);
		fetch_out(out, " ");
		fetch_out_nstring(out, p->value);
	}
	fetch_out(out, ")");
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void fetch_out_ext_common(GByteArray *out, const fetch_part *part)
{
	if (part->disposition == NULL) {
		fetch_out(out, "NIL");
	} else {
		fetch_out(out, "(");
		fetch_out_nstring(out, part->disposition);
		fetch_out(out, " ");
		fetch_out_params(out, part->disp_params);
		fetch_out(out, ")");
	}
	fetch_out(out, " ");
	/* Content-Language: always a list, as Dovecot sends it. */
	GPtrArray *langs = g_ptr_array_new_with_free_func(g_free);
	if (part->language != NULL) {
		fetch_lex l = { part->language, strlen(part->language), 0, NULL };
		for (;;) {
			fetch_lex_skip(&l);
			if (l.pos >= l.len)
				break;
			size_t start = l.pos;
			while (l.pos < l.len && l.s[l.pos] != ',' && l.s[l.pos] != ' ' &&
			       l.s[l.pos] != '\t' && l.s[l.pos] != '(')
				l.pos++;
			if (l.pos > start)
				g_ptr_array_add(langs, g_strndup(l.s + start, l.pos - start));
			else
				l.pos++;
		}
		g_free(l.comment);
	}
	if (langs->len == 0) {
		fetch_out(out, "NIL");
	} else {
		fetch_out(out, "(");
		for (guint i = 0; i < langs->len; i++) {
			if (i > 0)
				fetch_out(out, " ");
			fetch_out_nstring(out, langs->pdata[i]);
		}
		fetch_out(out, ")");
	}
	g_ptr_array_unref(langs);
	fetch_out(out, " ");
	fetch_out_nstring(out, part->location);
}

/* "Content-Type: text/plain; charset=us-ascii" and no other content field is sent in the
 * default form, as Dovecot does. */
static bool fetch_part_plain_7bit(const fetch_part *part)
{
	return part->type != NULL && fetch_part_is(part, "text", "plain") &&
		part->params != NULL && part->params->len == 1 &&
		g_ascii_strcasecmp(g_array_index(part->params, fetch_param, 0).name, "charset") == 0 &&
		g_ascii_strcasecmp(g_array_index(part->params, fetch_param, 0).value, "us-ascii") == 0 &&
		part->cte == NULL && part->id == NULL && part->desc == NULL && part->md5 == NULL &&
		part->disposition == NULL && part->language == NULL && part->location == NULL;
}

#define FETCH_EMPTY_BODY "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"

static void fetch_out_body(GByteArray *out, const imap_fetch_msg *m, const fetch_part *part,
			   bool extended)
{
	char num[64];
	if (part->multipart) {
		fetch_out(out, "(");
		for (size_t i = 0; i < part->n_children; i++)
			fetch_out_body(out, m, part->children[i], extended);
		if (part->n_children == 0)
			fetch_out(out, extended ? FETCH_EMPTY_BODY " NIL NIL NIL NIL)" :
				  FETCH_EMPTY_BODY ")");
		fetch_out(out, " ");
		fetch_out_nstring(out, part->subtype);
		if (extended) {
			fetch_out(out, " ");
			fetch_out_params(out, part->params);
			fetch_out(out, " ");
			fetch_out_ext_common(out, part);
		}
		fetch_out(out, ")");
		return;
	}
	fetch_out(out, "(");
	if (part->type != NULL && !fetch_part_plain_7bit(part)) {
		fetch_out_nstring(out, part->type);
		fetch_out(out, " ");
		fetch_out_nstring(out, part->subtype);
		fetch_out(out, " ");
		if (fetch_part_is(part, "text", NULL) &&
		    fetch_param_get(part->params, "charset") == NULL) {
			/* text without a charset: us-ascii said out loud (RFC 2045 5.2) */
			if (part->params == NULL || part->params->len == 0) {
				fetch_out(out, "(\"charset\" \"us-ascii\")");
			} else {
				fetch_out_params(out, part->params);
				g_byte_array_set_size(out, out->len - 1);
				fetch_out(out, " \"charset\" \"us-ascii\")");
			}
		} else {
			fetch_out_params(out, part->params);
		}
	} else if (part->default_rfc822) {
		fetch_out(out, "\"message\" \"rfc822\" NIL");
	} else {
		fetch_out(out, "\"text\" \"plain\" (\"charset\" \"us-ascii\")");
	}
	fetch_out(out, " ");
	fetch_out_nstring(out, part->id);
	fetch_out(out, " ");
	fetch_out_nstring(out, part->desc);
	fetch_out(out, " ");
	fetch_out_nstring(out, part->cte != NULL && *part->cte != '\0' ? part->cte : "7bit");
	snprintf(num, sizeof(num), " %zu", part->body_end - part->body_start);
	fetch_out(out, num);
	if (part->rfc822) {
		fetch_out(out, " ");
		fetch_out_envelope(out, m, part->children[0]);
		fetch_out(out, " ");
		fetch_out_body(out, m, part->children[0], extended);
	}
	if (part->rfc822 || fetch_part_is(part, "text", NULL)) {
		snprintf(num, sizeof(num), " %" PRIu64, part->body_lines);
		fetch_out(out, num);
	}
	if (extended) {
		fetch_out(out, " ");
		fetch_out_nstring(out, part->md5);
		fetch_out(out, " ");
		fetch_out_ext_common(out, part);
	}
	fetch_out(out, ")");
}

/* ---- items ---- */

/* An att made by hand may break what the parser guarantees. */
static bool fetch_att_valid(const imap_fetch_att *att)
{
	if (att->n_part > IMAP_FETCH_MAX_PART_DEPTH || att->n_fields > IMAP_FETCH_MAX_FIELDS ||
	    (att->spec == IMAP_FETCH_SPEC_MIME && att->n_part == 0) ||
	    (att->partial && att->partial_len > UINT64_MAX - att->partial_start))
		return false;
	for (size_t i = 0; i < att->n_part; i++) {
		if (att->part[i] == 0)
			return false;
	}
	for (size_t i = 0; i < att->n_fields; i++) {
		if (att->fields[i] == NULL)
			return false;
	}
	return true;
}

int imap_fetch_msg_item(imap_fetch_msg *m, const imap_fetch_att *att, GByteArray *out,
			bool *unknown_cte_r, const char **error_r)
{
	*unknown_cte_r = false;
	if (!fetch_att_valid(att)) {
		*error_r = "invalid FETCH item";
		return -1;
	}
	const fetch_part *root = m->root;
	switch (att->type) {
	case IMAP_FETCH_RFC822_SIZE: {
		char num[48];
		snprintf(num, sizeof(num), "RFC822.SIZE %zu", m->size);
		fetch_out(out, num);
		return 0;
	}
	case IMAP_FETCH_RFC822:
		fetch_out(out, "RFC822");
		fetch_out_data(out, att, m->data, m->size, false);
		return 0;
	case IMAP_FETCH_RFC822_HEADER:
		fetch_out(out, "RFC822.HEADER");
		fetch_out_data(out, att, m->data + root->hdr_start,
			       root->body_start - root->hdr_start, false);
		return 0;
	case IMAP_FETCH_RFC822_TEXT:
		fetch_out(out, "RFC822.TEXT");
		fetch_out_data(out, att, m->data + root->body_start,
			       root->body_end - root->body_start, false);
		return 0;
	case IMAP_FETCH_ENVELOPE:
		fetch_out(out, "ENVELOPE ");
		fetch_out_envelope(out, m, root);
		return 0;
	case IMAP_FETCH_BODYSTRUCTURE:
	case IMAP_FETCH_BODY:
		fetch_out(out, att->type == IMAP_FETCH_BODY ? "BODY " : "BODYSTRUCTURE ");
		fetch_out_body(out, m, root, att->type == IMAP_FETCH_BODYSTRUCTURE);
		return 0;
	case IMAP_FETCH_BODY_SECTION: {
		size_t start, end;
		GByteArray *buf;
		fetch_body_range(m, att, &start, &end, &buf);
		fetch_out(out, "BODY[");
		fetch_out_section_name(out, att);
		fetch_out(out, "]");
		if (buf != NULL) {
			fetch_out_data(out, att, buf->data, buf->len, false);
			g_byte_array_unref(buf);
		} else {
			fetch_out_data(out, att, m->data + start, end - start, false);
		}
		return 0;
	}
	case IMAP_FETCH_BINARY_SECTION:
	case IMAP_FETCH_BINARY_SIZE: {
		GByteArray *buf = g_byte_array_new();
		if (fetch_binary(m, att, buf) < 0) {
			g_byte_array_unref(buf);
			*unknown_cte_r = true;
			*error_r = "unknown Content-Transfer-Encoding";
			return -1;
		}
		fetch_out(out, att->type == IMAP_FETCH_BINARY_SIZE ? "BINARY.SIZE[" : "BINARY[");
		fetch_out_section_name(out, att);
		fetch_out(out, "]");
		if (att->type == IMAP_FETCH_BINARY_SIZE) {
			char num[48];
			snprintf(num, sizeof(num), " %u", buf->len);
			fetch_out(out, num);
		} else {
			fetch_out_data(out, att, buf->data, buf->len, true);
		}
		g_byte_array_unref(buf);
		return 0;
	}
	case IMAP_FETCH_UID:
	case IMAP_FETCH_FLAGS:
	case IMAP_FETCH_INTERNALDATE:
	case IMAP_FETCH_MODSEQ:
	case IMAP_FETCH_OTHER:
		break;
	}
	*error_r = "FETCH item is not answered from the message";
	return -1;
}
