/* smtp_parser: the SMTP wire formats as pure functions over bytes — client
 * command lines, MAIL/RCPT paths and parameters, multi-line replies and the
 * DATA stream. Nothing here touches a socket; every limit is a parameter. */
#ifndef SEALPOST_SMTP_PARSER_H
#define SEALPOST_SMTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	SMTP_PARSE_ERROR = -1,	/* *error_r says why */
	SMTP_PARSE_MORE = 0,	/* everything fed was consumed; feed more */
	SMTP_PARSE_DONE = 1,	/* one item complete; bytes after it untouched */
} smtp_parse_result;

/* ---- command lines -------------------------------------------------------
 * One line from the client, CRLF (or a lone LF) terminated. A line longer
 * than max_line (line end included) is reported as an error as soon as the
 * limit is passed, and the rest of it, up to its LF, is skipped without
 * being stored: memory never grows with what the peer sends. A bare CR or a
 * NUL inside a line is an error reported at the line's end, because a
 * forwarded bare CR could end a line early for some other server. */

#define SMTP_VERB_MAX 16

typedef struct {
	/* Upper-cased verb ("MAIL"); "" when the first word is longer than
	 * SMTP_VERB_MAX - 1 (never a known command). */
	char verb[SMTP_VERB_MAX];
	/* Everything after the verb and one space, NUL-terminated, no line
	 * end; "" when there is none. Points into the parser. */
	const char *args;
	/* The whole line without its line end, NUL-terminated (used as is for
	 * AUTH continuation lines). */
	const char *line;
	size_t line_len;
} smtp_command;

typedef struct smtp_command_parser smtp_command_parser;

smtp_command_parser *smtp_command_parser_new(size_t max_line);
void smtp_command_parser_free(smtp_command_parser **p);
/* Forgets any partial line (e.g. after STARTTLS). */
void smtp_command_parser_reset(smtp_command_parser *p);

/* Consumes bytes from data (*consumed_r says how many). DONE: *cmd_r is
 * valid until the next feed or reset. ERROR: *error_r is a short text fit
 * to follow "500 5.5.2 " ("Line too long"); the parser recovers by itself
 * at the next line. */
smtp_parse_result smtp_command_parser_feed(smtp_command_parser *p,
					   const uint8_t *data, size_t len,
					   size_t *consumed_r,
					   const smtp_command **cmd_r,
					   const char **error_r);

/* ---- MAIL FROM / RCPT TO arguments ----------------------------------------
 * "FROM:<path> KEY=VALUE KEY ..." — the path (brackets included: "<>",
 * "<\"a b\"@example.org>", "<@relay:u@d>") and each ESMTP parameter are
 * kept as slices of the input so they can be forwarded verbatim. */

#define SMTP_MAX_PARAMS 16

typedef struct {
	const char *text;	/* the whole "KEY[=VALUE]" as sent */
	size_t len;
	size_t key_len;		/* the key is text[0..key_len) */
	const char *value;	/* NULL when there is no '=' */
	size_t value_len;
} smtp_param;

typedef struct {
	const char *path;	/* from '<' through '>' */
	size_t path_len;
	smtp_param params[SMTP_MAX_PARAMS];
	size_t n_params;
} smtp_path_args;

/* prefix is "FROM:" or "TO:" (matched case-insensitively; spaces after the
 * colon are tolerated). allow_null admits "<>" (reverse path). Returns 0, or
 * -1 with *error_r a short text fit to follow "501 5.5.4 ". */
int smtp_parse_path_args(const char *args, const char *prefix, bool allow_null,
			 smtp_path_args *out, const char **error_r);
/* The parameter whose key equals key case-insensitively, or NULL. */
const smtp_param *smtp_path_args_find(const smtp_path_args *a, const char *key);

/* ---- replies -------------------------------------------------------------
 * A reply of one or more lines "CODE-text" ... "CODE text". Every line
 * must carry the same code. Lines end in CRLF; a lone LF is accepted. */

typedef struct {
	int code;		/* 200..599 (1xx is not SMTP) */
	/* Enhanced status code of the first line ("5.7.8"), "" when absent
	 * or when its class does not match the code's. */
	char enhanced[16];
	/* Text after "CODE-"/"CODE " of each line, NUL-terminated, line end
	 * removed; the enhanced status code is still in it. */
	char **lines;
	size_t n_lines;
} smtp_reply;

typedef struct smtp_reply_parser smtp_reply_parser;

smtp_reply_parser *smtp_reply_parser_new(size_t max_line, size_t max_lines);
void smtp_reply_parser_free(smtp_reply_parser **p);
void smtp_reply_parser_reset(smtp_reply_parser *p);
/* DONE: *reply_r is valid until the next feed or reset, and the bytes after
 * the reply's last line are not consumed. ERROR: the reply stream is out of
 * sync and the connection should not be used any more. */
smtp_parse_result smtp_reply_parser_feed(smtp_reply_parser *p,
					 const uint8_t *data, size_t len,
					 size_t *consumed_r,
					 const smtp_reply **reply_r,
					 const char **error_r);

/* ---- DATA ----------------------------------------------------------------
 * The message after "354": un-dot-stuffs as it goes and finds the end of
 * data, which is only ever CRLF "." CRLF (or "." CRLF right at the start).
 *
 * Bare LF and bare CR are never taken as line ends for the end-of-data or
 * dot-stuffing rules — a "\n.\n" or "\r\n.\n" from a client is content, not
 * the end of the message (SMTP smuggling). In the output each bare LF and
 * each bare CR becomes CRLF, so the stored message has one unambiguous line
 * structure and can be relayed to any server unchanged in meaning. A leading
 * dot after a bare line end is kept (it was never stuffed by a client that
 * uses bare LF).
 *
 * The output never holds more than max_size bytes; past it the reader keeps
 * reading to the end of data, counting but discarding. */

typedef struct smtp_data_reader smtp_data_reader;

/* A single input byte can produce at most this many output bytes. */
#define SMTP_DATA_MAX_EXPANSION 3

smtp_data_reader *smtp_data_reader_new(uint64_t max_size);
void smtp_data_reader_free(smtp_data_reader **r);
void smtp_data_reader_reset(smtp_data_reader *r, uint64_t max_size);

/* Reads from in and writes message bytes to out. Stops early when fewer
 * than SMTP_DATA_MAX_EXPANSION bytes of out are left, so the caller loops
 * on *consumed_r. DONE: the final "." CRLF was consumed; bytes after it are
 * not. Never returns ERROR. */
smtp_parse_result smtp_data_reader_feed(smtp_data_reader *r,
					const uint8_t *in, size_t in_len,
					size_t *consumed_r,
					uint8_t *out, size_t out_size,
					size_t *out_len_r);
/* Size of the message as received (normalised), also past max_size. */
uint64_t smtp_data_reader_size(const smtp_data_reader *r);
bool smtp_data_reader_too_big(const smtp_data_reader *r);
/* How many bare LFs / bare CRs were normalised. */
uint64_t smtp_data_reader_bare_lf(const smtp_data_reader *r);
uint64_t smtp_data_reader_bare_cr(const smtp_data_reader *r);

/* ---- the other direction: dot-stuffing -----------------------------------
 * Streams a CRLF message to the wire form: a '.' at the start of a line
 * is doubled. The stuffer remembers across calls whether the next byte
 * starts a line. */
typedef struct {
	bool at_line_start;
	uint8_t last[2];	/* the last two bytes written, for the ending */
	uint64_t written;
} smtp_dot_stuffer;

void smtp_dot_stuffer_init(smtp_dot_stuffer *st);
/* Writes in[0..in_len) stuffed into out; out_size must be at least
 * 2 * in_len. Returns the number of bytes written. */
size_t smtp_dot_stuffer_feed(smtp_dot_stuffer *st, const uint8_t *in,
			     size_t in_len, uint8_t *out, size_t out_size);
/* The terminator to send after the content: ".\r\n" when the content ended
 * with CRLF (or was empty), "\r\n.\r\n" otherwise. */
const char *smtp_dot_stuffer_end(const smtp_dot_stuffer *st);

#endif
