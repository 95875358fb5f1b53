/* pop3_parser: the POP3 protocol as bytes, never a socket — lines, commands,
 * status lines, multi-line bodies (dot-stuffing both ways), TOP and CAPA. */
#ifndef SEALPOST_POP3_PARSER_H
#define SEALPOST_POP3_PARSER_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	POP3_PARSE_MORE,	/* everything given was used; feed more */
	POP3_PARSE_DONE,
	POP3_PARSE_ERROR,
} pop3_parse_result;

/* ---- lines ---------------------------------------------------------------------- */

/* One line of data ending in LF: DONE with *line_len_r (LF included), MORE
 * when no LF is in the first max_line bytes and fewer than max_line bytes
 * are there, ERROR ("line too long") beyond. */
pop3_parse_result pop3_parser_line(const uint8_t *data, size_t len, size_t max_line,
				   size_t *line_len_r, const char **error_r);

/* ---- client commands -------------------------------------------------------------- */

#define POP3_COMMAND_NAME_MAX 8
#define POP3_COMMAND_MAX_ARGS 3

typedef struct {
	char name[POP3_COMMAND_NAME_MAX + 1];	/* keyword in upper case */
	size_t n_args;				/* space-separated words after it */
	const uint8_t *args[POP3_COMMAND_MAX_ARGS];
	size_t arg_len[POP3_COMMAND_MAX_ARGS];
	/* Everything after "NAME " up to the line end: USER and PASS take it
	 * whole (a password may hold spaces). */
	const uint8_t *rest;
	size_t rest_len;
} pop3_command;

/* A command line (line end included or not). -1 with *error_r for an empty
 * line, a keyword that is not 1-8 letters, more than POP3_COMMAND_MAX_ARGS
 * words, NUL or other control bytes. */
int pop3_parser_command(const uint8_t *line, size_t len, pop3_command *cmd,
			const char **error_r);

/* A message number or line count: decimal digits only, no sign, at most
 * max. -1 when it is not. */
int pop3_parser_number(const uint8_t *s, size_t len, uint64_t max, uint64_t *value_r);

/* ---- server status lines ------------------------------------------------------------ */

typedef enum {
	POP3_RESP_OK,		/* +OK */
	POP3_RESP_ERR,		/* -ERR */
	POP3_RESP_CONTINUE,	/* "+ " or "+" alone: a SASL challenge */
} pop3_resp_status;

typedef struct {
	pop3_resp_status status;
	/* The response code inside [...] (RFC 2449), without brackets; NULL
	 * when there is none. */
	const uint8_t *code;
	size_t code_len;
	/* The rest of the line, line end excluded (for CONTINUE the
	 * challenge). */
	const uint8_t *text;
	size_t text_len;
} pop3_response;

int pop3_parser_response(const uint8_t *line, size_t len, pop3_response *resp,
			 const char **error_r);

/* True when resp's code is code, or starts with code followed by '/'
 * ("SYS" matches "SYS/TEMP"). */
bool pop3_parser_code_is(const pop3_response *resp, const char *code);

/* ---- multi-line bodies, from the provider --------------------------------------------
 * The lines after a +OK up to the line holding only ".". */

typedef struct {
	int state;
} pop3_parser_unstuffer;

void pop3_parser_unstuff_init(pop3_parser_unstuffer *u);
/* Consumes data; appends the body without the stuffed dots and without the
 * terminating line to out (NULL: only find the end). DONE when the
 * terminating line was consumed: *consumed_r counts the bytes used, that
 * line included; anything after it is not touched. MORE: all used. A line
 * "." ending in LF alone also ends the body. */
pop3_parse_result pop3_parser_unstuff(pop3_parser_unstuffer *u, const uint8_t *data,
				      size_t len, GByteArray *out, size_t *consumed_r);

/* ---- multi-line bodies, to the client ------------------------------------------------ */

typedef struct {
	bool line_start;
	bool cr;	/* the last byte written was CR */
} pop3_parser_stuffer;

void pop3_parser_stuff_init(pop3_parser_stuffer *s);
/* Appends data to out with a dot doubled at every line start and every LF
 * not preceded by CR written as CRLF. */
void pop3_parser_stuff(pop3_parser_stuffer *s, const uint8_t *data, size_t len, GByteArray *out);
/* Closes an open last line with CRLF, then writes ".CRLF". */
void pop3_parser_stuff_finish(pop3_parser_stuffer *s, GByteArray *out);
/* The size of data as the client receives it through the stuffer, dots
 * not counted: what LIST and STAT must report for it. */
uint64_t pop3_parser_octets(const uint8_t *data, size_t len);

/* ---- TOP ------------------------------------------------------------------------------ */

/* The length of the start of msg that "TOP n lines" shows: the header, the
 * blank line after it, and then at most lines lines of the body. */
size_t pop3_parser_top_length(const uint8_t *msg, size_t len, uint64_t lines);

/* ---- CAPA -------------------------------------------------------------------------------- */

typedef struct {
	bool authorized;	/* after login */
	bool client_tls;	/* the client's leg is TLS already */
	bool stls_available;	/* sealpost can offer STLS (a certificate is loaded) */
	bool login_allowed;	/* USER/PASS and AUTH may be used now */
} pop3_parser_capa_context;

/* The capability lines the client may see, from the provider's CAPA body
 * (caps: lines, line ends any; NULL when the provider has no CAPA). Only
 * known capabilities that cannot take content past sealpost pass (USER,
 * SASL, TOP, UIDL, PIPELINING, RESP-CODES, AUTH-RESP-CODE, EXPIRE,
 * LOGIN-DELAY); the provider's STLS and anything else are dropped;
 * sealpost adds its own STLS before login on a plain leg, USER when the
 * provider lists none, and RESP-CODES and AUTH-RESP-CODE because it sends
 * [SYS/TEMP] and [AUTH]. USER and
 * SASL are left out while login is not allowed. Returns the lines, each
 * ending in CRLF, without the terminating "." (g_free). */
char *pop3_parser_filter_capa(const char *caps, const pop3_parser_capa_context *ctx);

/* True when the provider's CAPA body lists capability name (any case). */
bool pop3_parser_capa_has(const char *caps, const char *name);

#endif
