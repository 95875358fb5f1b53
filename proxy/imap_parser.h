/* imap_parser: incremental IMAP framing and tokenizing, fed bytes only.
 * The framer cuts a byte stream into line fragments and literal chunks; the
 * tokenizer and the helpers below read the words of one fragment or line. */
#ifndef SEALPOST_IMAP_PARSER_H
#define SEALPOST_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	IMAP_PARSE_ERROR = -1,
	IMAP_PARSE_MORE = 0,	/* feed more bytes (the same ones, plus new) */
	IMAP_PARSE_DONE = 1,
} imap_parse_result;

/* --- framer ---------------------------------------------------------------
 * Works the same for commands and responses: a logical line is text, and
 * wherever a fragment of it ends in "{N}", "{N+}", "~{N}" or "~{N+}" plus
 * CRLF, N bytes of literal data follow before the line goes on. */

typedef enum {
	IMAP_FRAME_TEXT,	/* line text up to and including LF */
	IMAP_FRAME_LITERAL,	/* literal data (possibly a part of it) */
} imap_frame_type;

typedef struct {
	imap_frame_type type;
	/* Points into the bytes given to imap_framer_next(); the caller
	 * consumes exactly len bytes before the next call. */
	const uint8_t *data;
	size_t len;

	/* TEXT: first fragment of a logical line (tag, command, status). */
	bool line_start;
	/* TEXT: the logical line is complete; no literal follows. */
	bool line_end;
	/* TEXT && !line_end: the literal announced at the fragment's end. */
	uint64_t literal_size;
	bool literal_sync;	/* {N}: the sender waits for a "+" first */
	bool literal_binary;	/* ~{N} (literal8) */

	/* LITERAL: this chunk ends the literal. */
	bool literal_end;
	/* LITERAL: bytes of the literal still to come after this chunk. */
	uint64_t literal_left;
} imap_frame;

typedef struct {
	/* Limits: a fragment is at most max_line bytes including its CRLF;
	 * an announced literal at most max_literal bytes. Nothing is ever
	 * allocated, so a huge announcement costs nothing but an error. */
	size_t max_line;
	uint64_t max_literal;

	/* Private state. */
	bool in_literal;
	bool line_start;
	size_t scanned;		/* bytes of the current fragment already searched */
	uint64_t literal_left;
	const char *error;	/* errors are sticky */
} imap_framer;

void imap_framer_init(imap_framer *f, size_t max_line, uint64_t max_literal);
/* data/len are all unconsumed input. DONE fills *frame_r; MORE means no
 * complete frame yet (call again with the same bytes and more); ERROR sets
 * *error_r ("line too long", "literal too large"). A zero-length literal
 * is reported as one LITERAL frame of length 0. */
imap_parse_result imap_framer_next(imap_framer *f, const uint8_t *data,
				   size_t len, imap_frame *frame_r,
				   const char **error_r);
/* The receiver refused a synchronizing literal (tagged reply instead of
 * "+"): the sender will not send it, and its command is over. */
void imap_framer_cancel_literal(imap_framer *f);
/* True between logical lines: the next TEXT frame starts a new line. */
bool imap_framer_at_line_start(const imap_framer *f);
bool imap_framer_in_literal(const imap_framer *f);

/* --- tokenizer ------------------------------------------------------------
 * Reads one line fragment, or a whole logical line with its literal data
 * inline (as on the wire). Lenient about what atoms contain, strict about
 * structure: quoting, literal syntax, list nesting. */

typedef enum {
	IMAP_TOKEN_EOL,		/* CRLF, LF or end of the buffer */
	IMAP_TOKEN_ATOM,	/* includes NIL, numbers, \Flags, BODY[...]<...> */
	IMAP_TOKEN_QUOTED,	/* data is between the quotes, still escaped */
	IMAP_TOKEN_LITERAL,
	IMAP_TOKEN_LIST_OPEN,
	IMAP_TOKEN_LIST_CLOSE,
} imap_token_type;

typedef struct {
	imap_token_type type;
	const uint8_t *data;	/* LITERAL: NULL when only announced (the
				 * buffer ends right after the announcement) */
	size_t len;
	uint64_t literal_size;
	bool literal_sync;
	bool literal_binary;
} imap_token;

typedef struct {
	const uint8_t *data;
	size_t len;
	size_t pos;
	unsigned depth;		/* open parentheses; settable to resume */
	unsigned max_depth;
} imap_tokenizer;

void imap_tokenizer_init(imap_tokenizer *t, const void *data, size_t len,
			 unsigned max_depth);
/* 0 and *token_r, or -1 with *error_r. After EOL keeps returning EOL. */
int imap_tokenizer_next(imap_tokenizer *t, imap_token *token_r,
			const char **error_r);
/* 1 if the next token is EOL (without consuming anything). */
bool imap_tokenizer_at_eol(const imap_tokenizer *t);
/* Reads an astring (atom, quoted or literal with data) decoded into buf.
 * 0, or -1 with *error_r (wrong token, longer than bufsize). */
int imap_tokenizer_astring(imap_tokenizer *t, uint8_t *buf, size_t bufsize,
			   size_t *len_r, const char **error_r);
/* Decodes the escapes of a QUOTED token into buf; -1 if it does not fit. */
int imap_quoted_unescape(const uint8_t *data, size_t len, uint8_t *buf,
			 size_t bufsize, size_t *len_r);
/* True if the token is an atom equal to word (ASCII case-insensitive). */
bool imap_token_is(const imap_token *token, const char *word);

/* --- commands ------------------------------------------------------------ */

#define IMAP_TAG_MAX 256
#define IMAP_NAME_MAX 32

typedef struct {
	const uint8_t *tag;
	size_t tag_len;
	/* Upper case; "UID FETCH" etc. for UID commands. */
	char name[IMAP_NAME_MAX];
	/* Offset of the first argument in the line (or of its end). */
	size_t args_pos;
} imap_command;

/* Parses "tag SP name" at the start of a command line (or its first
 * fragment). -1 with *error_r for a missing or invalid tag or name. */
int imap_parser_command(const uint8_t *line, size_t len, imap_command *cmd_r,
			const char **error_r);

/* LOGIN userid password, from a whole logical line (literals inline).
 * Values are decoded into the caller's buffers. */
int imap_parser_login_args(const uint8_t *line, size_t len,
			   const imap_command *cmd, uint8_t *user,
			   size_t user_size, size_t *user_len_r, uint8_t *pass,
			   size_t pass_size, size_t *pass_len_r,
			   const char **error_r);

/* AUTHENTICATE mechanism [initial-response]. The spans point into line;
 * *ir_r is NULL when there is no initial response ("=" is an empty one and
 * is returned as such). */
int imap_parser_authenticate_args(const uint8_t *line, size_t len,
				  const imap_command *cmd,
				  const uint8_t **mech_r, size_t *mech_len_r,
				  const uint8_t **ir_r, size_t *ir_len_r,
				  const char **error_r);

/* --- responses ----------------------------------------------------------- */

typedef enum {
	IMAP_RESP_CONTINUATION,	/* "+ ..." */
	IMAP_RESP_UNTAGGED,	/* "* ..." */
	IMAP_RESP_TAGGED,
} imap_resp_kind;

typedef enum {
	IMAP_STATUS_NONE,	/* not a status response (CAPABILITY, FETCH...) */
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_BYE,
	IMAP_STATUS_PREAUTH,
} imap_status;

typedef struct {
	imap_resp_kind kind;
	const uint8_t *tag;	/* TAGGED only */
	size_t tag_len;
	bool has_number;	/* "* 23 EXISTS", "* 5 FETCH (...)" */
	uint32_t number;
	char keyword[IMAP_NAME_MAX];	/* upper case: OK, CAPABILITY, FETCH... */
	imap_status status;
	/* Status responses: the response code, if any, e.g. name
	 * "CAPABILITY" and args "IMAP4rev1 IDLE"; offsets into the line. */
	const uint8_t *code;
	size_t code_len;
	const uint8_t *code_args;
	size_t code_args_len;
	/* Status and continuation: the human-readable text. */
	const uint8_t *text;
	size_t text_len;
	/* Where the data after the keyword starts (e.g. the FETCH list). */
	size_t args_pos;
} imap_response;

/* Parses the head of a response line (or its first fragment). */
int imap_parser_response(const uint8_t *line, size_t len,
			 imap_response *resp_r, const char **error_r);
/* True if the code is name (ASCII case-insensitive). */
bool imap_response_code_is(const imap_response *resp, const char *name);

#endif
