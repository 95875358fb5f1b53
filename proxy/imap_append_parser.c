/* imap_append_parser: reads "APPEND mailbox [flags] [date] literal ..." frame
 * by frame as the framer cuts the client's bytes; literal data is only
 * counted and handed on. */
#include "imap_append_parser.h"

#include <string.h>

void imap_append_parser_init(imap_append_parser *p, uint64_t max_message, uint64_t max_total,
			     unsigned max_messages)
{
	memset(p, 0, sizeof(*p));
	p->max_message = max_message;
	p->max_total = max_total;
	p->max_messages = max_messages;
	p->stage = IMAP_APPEND_STAGE_MAILBOX;
}

static int imap_append_parser_fail(imap_append_parser *p, imap_append_error kind,
				   const char *error, imap_append_error *kind_r,
				   const char **error_r)
{
	p->stage = IMAP_APPEND_STAGE_FAILED;
	*kind_r = kind;
	*error_r = error;
	return -1;
}

static size_t imap_append_skip_spaces(const imap_tokenizer *t)
{
	size_t pos = t->pos;
	while (pos < t->len && t->data[pos] == ' ')
		pos++;
	return pos;
}

/* "[flag-list] [date-time] literal", the literal announced at the end of
 * the fragment. */
static int imap_append_parse_message(imap_append_parser *p, const imap_frame *fr,
				     imap_tokenizer *t, imap_append_event *ev,
				     imap_append_error *kind_r, const char **error_r)
{
	size_t args_start = 0, args_end = 0;
	bool flags = false, date = false;
	for (;;) {
		size_t start = imap_append_skip_spaces(t);
		imap_token tok;
		const char *terr;
		if (imap_tokenizer_next(t, &tok, &terr) < 0)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX, terr, kind_r,
						       error_r);
		switch (tok.type) {
		case IMAP_TOKEN_LIST_OPEN:
			if (flags || date)
				return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
							       "Invalid APPEND arguments", kind_r,
							       error_r);
			for (;;) {
				if (imap_tokenizer_next(t, &tok, &terr) < 0)
					return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
								       terr, kind_r, error_r);
				if (tok.type == IMAP_TOKEN_LIST_CLOSE)
					break;
				if (tok.type != IMAP_TOKEN_ATOM)
					return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
								       "Invalid flag list", kind_r,
								       error_r);
			}
			flags = true;
			if (!date)
				args_start = start;
			args_end = t->pos;
			continue;
		case IMAP_TOKEN_QUOTED:
			if (date)
				return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
							       "Invalid APPEND arguments", kind_r,
							       error_r);
			date = true;
			if (!flags)
				args_start = start;
			args_end = t->pos;
			continue;
		case IMAP_TOKEN_LITERAL:
			break;
		case IMAP_TOKEN_ATOM:
			if (imap_token_is(&tok, "CATENATE"))
				return imap_append_parser_fail(p, IMAP_APPEND_ERROR_UNSUPPORTED,
							       "CATENATE is not supported", kind_r,
							       error_r);
			if (imap_token_is(&tok, "UTF8"))
				return imap_append_parser_fail(p, IMAP_APPEND_ERROR_UNSUPPORTED,
							       "APPEND UTF8 is not supported", kind_r,
							       error_r);
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Invalid APPEND arguments", kind_r, error_r);
		case IMAP_TOKEN_EOL:
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Missing message literal", kind_r, error_r);
		default:
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Invalid APPEND arguments", kind_r, error_r);
		}
		/* The literal ends the fragment (the framer cut it there). */
		if (tok.data != NULL || fr->line_end || t->pos != t->len)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Invalid APPEND arguments", kind_r, error_r);
		if (tok.literal_binary)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_UNSUPPORTED,
						       "Binary literals are not supported", kind_r,
						       error_r);
		if (args_end - args_start > IMAP_APPEND_ARGS_MAX)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Flags and date too long", kind_r, error_r);
		if (tok.literal_size > p->max_message)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_TOOBIG,
						       "Message too large", kind_r, error_r);
		if (p->messages >= p->max_messages)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_TOOBIG,
						       "Too many messages in one APPEND", kind_r,
						       error_r);
		if (tok.literal_size > p->max_total - p->total)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_TOOBIG,
						       "Messages too large together", kind_r,
						       error_r);
		p->messages++;
		p->total += tok.literal_size;
		p->literal_left = tok.literal_size;
		p->stage = IMAP_APPEND_STAGE_MESSAGE;
		ev->type = IMAP_APPEND_EV_LITERAL;
		ev->message = true;
		ev->sync = tok.literal_sync;
		ev->size = tok.literal_size;
		ev->args = t->data + args_start;
		ev->args_len = args_end - args_start;
		return 0;
	}
}

static int imap_append_parse_mailbox(imap_append_parser *p, const imap_frame *fr,
				     imap_tokenizer *t, imap_append_event *ev,
				     imap_append_error *kind_r, const char **error_r)
{
	imap_token tok;
	const char *terr;
	if (imap_tokenizer_next(t, &tok, &terr) < 0)
		return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX, terr, kind_r, error_r);
	switch (tok.type) {
	case IMAP_TOKEN_ATOM:
		if (tok.len > sizeof(p->mailbox))
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Mailbox name too long", kind_r, error_r);
		memcpy(p->mailbox, tok.data, tok.len);
		p->mailbox_len = tok.len;
		break;
	case IMAP_TOKEN_QUOTED:
		if (imap_quoted_unescape(tok.data, tok.len, p->mailbox, sizeof(p->mailbox),
					 &p->mailbox_len) < 0)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Mailbox name too long", kind_r, error_r);
		break;
	case IMAP_TOKEN_LITERAL:
		if (tok.data != NULL || fr->line_end || t->pos != t->len || tok.literal_binary)
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Invalid mailbox name", kind_r, error_r);
		if (tok.literal_size > sizeof(p->mailbox))
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Mailbox name too long", kind_r, error_r);
		p->mailbox_len = 0;
		p->literal_left = tok.literal_size;
		p->stage = IMAP_APPEND_STAGE_MAILBOX_LITERAL;
		ev->type = IMAP_APPEND_EV_LITERAL;
		ev->message = false;
		ev->sync = tok.literal_sync;
		ev->size = tok.literal_size;
		return 0;
	default:
		return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX, "Missing mailbox name",
					       kind_r, error_r);
	}
	p->stage = IMAP_APPEND_STAGE_MESSAGE_ARGS;
	return imap_append_parse_message(p, fr, t, ev, kind_r, error_r);
}

int imap_append_parser_feed(imap_append_parser *p, const imap_frame *fr, size_t args_pos,
			    imap_append_event *ev_r, imap_append_error *kind_r,
			    const char **error_r)
{
	memset(ev_r, 0, sizeof(*ev_r));
	*kind_r = IMAP_APPEND_ERROR_NONE;
	bool text = fr->type == IMAP_FRAME_TEXT;
	imap_tokenizer t;
	switch (p->stage) {
	case IMAP_APPEND_STAGE_MAILBOX:
		if (!text || args_pos > fr->len)
			break;
		imap_tokenizer_init(&t, fr->data, fr->len, 4);
		t.pos = args_pos;
		return imap_append_parse_mailbox(p, fr, &t, ev_r, kind_r, error_r);
	case IMAP_APPEND_STAGE_MAILBOX_LITERAL:
		if (text || fr->len > p->literal_left ||
		    fr->len > sizeof(p->mailbox) - p->mailbox_len)
			break;
		memcpy(p->mailbox + p->mailbox_len, fr->data, fr->len);
		p->mailbox_len += fr->len;
		p->literal_left -= fr->len;
		if (p->literal_left == 0)
			p->stage = IMAP_APPEND_STAGE_MESSAGE_ARGS;
		ev_r->type = IMAP_APPEND_EV_NONE;
		return 0;
	case IMAP_APPEND_STAGE_MESSAGE_ARGS:
		if (!text)
			break;
		imap_tokenizer_init(&t, fr->data, fr->len, 4);
		return imap_append_parse_message(p, fr, &t, ev_r, kind_r, error_r);
	case IMAP_APPEND_STAGE_MESSAGE:
		if (text || fr->len > p->literal_left)
			break;
		p->literal_left -= fr->len;
		ev_r->type = IMAP_APPEND_EV_DATA;
		ev_r->data = fr->data;
		ev_r->len = fr->len;
		ev_r->end = p->literal_left == 0;
		if (ev_r->end)
			p->stage = IMAP_APPEND_STAGE_AFTER_MESSAGE;
		return 0;
	case IMAP_APPEND_STAGE_AFTER_MESSAGE:
		if (!text)
			break;
		imap_tokenizer_init(&t, fr->data, fr->len, 4);
		if (imap_tokenizer_at_eol(&t)) {
			if (!fr->line_end)
				break;
			p->stage = IMAP_APPEND_STAGE_DONE;
			ev_r->type = IMAP_APPEND_EV_DONE;
			return 0;
		}
		if (fr->data[0] != ' ')
			return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX,
						       "Invalid APPEND arguments", kind_r, error_r);
		return imap_append_parse_message(p, fr, &t, ev_r, kind_r, error_r);
	case IMAP_APPEND_STAGE_DONE:
	case IMAP_APPEND_STAGE_FAILED:
		break;
	}
	return imap_append_parser_fail(p, IMAP_APPEND_ERROR_SYNTAX, "Unexpected APPEND data",
				       kind_r, error_r);
}

