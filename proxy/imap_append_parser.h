/* imap_append_parser: the arguments of an APPEND command (MULTIAPPEND too),
 * read from the framer's frames without touching a socket or allocating. */
#ifndef SEALPOST_IMAP_APPEND_PARSER_H
#define SEALPOST_IMAP_APPEND_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap_parser.h"

/* Fed the frames the framer cuts from the client's bytes (the first one
 * with the offset of the arguments), the parser reads
 *   APPEND mailbox [SP flag-list] [SP date-time] SP literal
 *          *(SP [flag-list SP] [date-time SP] literal) CRLF
 * and says what each frame means. Nothing is allocated; the limits are
 * parameters. CATENATE, UTF8 and literal8 (~{n}) are refused: sealpost does
 * not advertise them. */

#define IMAP_APPEND_MAILBOX_MAX 1024
/* flag-list and date-time of one message, as written. */
#define IMAP_APPEND_ARGS_MAX 1024

typedef enum {
	IMAP_APPEND_EV_NONE,		/* nothing to do: feed the next frame */
	IMAP_APPEND_EV_LITERAL,		/* a literal announced (mailbox name or message) */
	IMAP_APPEND_EV_DATA,		/* bytes of a message */
	IMAP_APPEND_EV_DONE,		/* the command line ended */
} imap_append_event_type;

typedef struct {
	imap_append_event_type type;
	/* LITERAL: the client waits for "+" (synchronizing literal). */
	bool sync;
	/* LITERAL: a message (false: the mailbox name); its size; its
	 * flags and date as written (may be empty), pointing into the frame. */
	bool message;
	uint64_t size;
	const uint8_t *args;
	size_t args_len;
	/* DATA: bytes pointing into the frame; end: the message is complete. */
	const uint8_t *data;
	size_t len;
	bool end;
} imap_append_event;

typedef enum {
	IMAP_APPEND_ERROR_NONE,
	IMAP_APPEND_ERROR_SYNTAX,	/* answer BAD */
	IMAP_APPEND_ERROR_TOOBIG,	/* answer NO [TOOBIG] */
	IMAP_APPEND_ERROR_UNSUPPORTED,	/* answer NO [CANNOT] (CATENATE, UTF8, literal8) */
} imap_append_error;

typedef enum {
	IMAP_APPEND_STAGE_MAILBOX,	/* the mailbox argument comes next */
	IMAP_APPEND_STAGE_MAILBOX_LITERAL,
	IMAP_APPEND_STAGE_MESSAGE_ARGS,	/* flags, date and the literal */
	IMAP_APPEND_STAGE_MESSAGE,	/* literal data of a message */
	IMAP_APPEND_STAGE_AFTER_MESSAGE,	/* CRLF, or the next message */
	IMAP_APPEND_STAGE_DONE,
	IMAP_APPEND_STAGE_FAILED,
} imap_append_stage;

typedef struct {
	/* Limits. */
	uint64_t max_message;		/* bytes of one message */
	uint64_t max_total;		/* bytes of all messages */
	unsigned max_messages;

	/* Results. */
	uint8_t mailbox[IMAP_APPEND_MAILBOX_MAX];
	size_t mailbox_len;
	unsigned messages;		/* announced so far */
	uint64_t total;

	/* Private. */
	imap_append_stage stage;
	uint64_t literal_left;
} imap_append_parser;

void imap_append_parser_init(imap_append_parser *p, uint64_t max_message, uint64_t max_total,
			     unsigned max_messages);
/* One frame. The first is the TEXT frame starting the command; args_pos is
 * where its arguments start (imap_command.args_pos); later frames pass 0.
 * 0 with *ev_r, or -1 with *kind_r and *error_r (static, no final period);
 * after an error nothing more is read. */
int imap_append_parser_feed(imap_append_parser *p, const imap_frame *fr, size_t args_pos,
			    imap_append_event *ev_r, imap_append_error *kind_r,
			    const char **error_r);

#endif
