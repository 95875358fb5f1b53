/* imap_fetch: the FETCH data items of a message sealpost holds itself (the
 * decrypted view), computed as an IMAP server would from its bytes, and the
 * parser for the item list of a client's FETCH command.
 *
 * Never touches a socket: items are parsed from bytes and rendered into a
 * buffer. Everything that refers to a message's content — sections, partial
 * ranges, BODYSTRUCTURE, ENVELOPE, sizes — refers to the bytes given to
 * imap_fetch_msg_new, so a client sees the view as if the provider stored it. */
#ifndef SEALPOST_IMAP_FETCH_H
#define SEALPOST_IMAP_FETCH_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the item list of a FETCH command ----------------------------------------- */

typedef enum {
	/* Answered by the provider (the message's metadata, not its content). */
	IMAP_FETCH_UID,
	IMAP_FETCH_FLAGS,
	IMAP_FETCH_INTERNALDATE,
	IMAP_FETCH_MODSEQ,
	IMAP_FETCH_OTHER,	/* an extension item (X-GM-MSGID, EMAILID, ...):
				 * the provider's answer is passed on */
	/* Answered from the message's bytes. */
	IMAP_FETCH_ENVELOPE,
	IMAP_FETCH_BODYSTRUCTURE,
	IMAP_FETCH_BODY,		/* the non-extensible BODYSTRUCTURE form */
	IMAP_FETCH_RFC822,		/* = BODY[], sets \Seen */
	IMAP_FETCH_RFC822_HEADER,	/* = BODY.PEEK[HEADER], answered as RFC822.HEADER */
	IMAP_FETCH_RFC822_TEXT,		/* = BODY[TEXT], sets \Seen */
	IMAP_FETCH_RFC822_SIZE,
	IMAP_FETCH_BODY_SECTION,	/* BODY[...] and BODY.PEEK[...] */
	IMAP_FETCH_BINARY_SECTION,	/* BINARY[...] and BINARY.PEEK[...] (RFC 3516);
					 * like Dovecot, any BODY section is accepted:
					 * TEXT is decoded, HEADER/MIME are as BODY's */
	IMAP_FETCH_BINARY_SIZE,		/* BINARY.SIZE[...] (a partial is ignored) */
} imap_fetch_att_type;

typedef enum {
	IMAP_FETCH_SPEC_NONE,		/* BODY[] or BODY[1.2]: the whole (part) */
	IMAP_FETCH_SPEC_HEADER,
	IMAP_FETCH_SPEC_HEADER_FIELDS,
	IMAP_FETCH_SPEC_HEADER_FIELDS_NOT,
	IMAP_FETCH_SPEC_TEXT,
	IMAP_FETCH_SPEC_MIME,		/* only after a part number */
} imap_fetch_spec;

#define IMAP_FETCH_MAX_PART_DEPTH 32
#define IMAP_FETCH_MAX_FIELDS 64

typedef struct {
	imap_fetch_att_type type;
	/* The item exactly as the client wrote it (points into the parsed
	 * line; for the items of a macro, static strings such as "FLAGS"), to
	 * be sent upstream when the provider answers it. */
	const uint8_t *text;
	size_t text_len;
	bool peek;		/* BODY.PEEK / BINARY.PEEK / RFC822.HEADER */
	/* BODY_SECTION, BINARY_SECTION, BINARY_SIZE: the section. */
	uint32_t part[IMAP_FETCH_MAX_PART_DEPTH];	/* 1-based part numbers */
	size_t n_part;
	imap_fetch_spec spec;
	/* HEADER.FIELDS (.NOT): the field names as written (astrings decoded),
	 * compared case-insensitively; g_free'd by imap_fetch_atts_clear. */
	char *fields[IMAP_FETCH_MAX_FIELDS];
	size_t n_fields;
	/* <start.len>; "<start>" alone (accepted as Dovecot does) runs to the end:
	 * partial_len is then UINT64_MAX - partial_start. */
	bool partial;
	uint64_t partial_start, partial_len;
	/* BODY/BINARY sections: the text between the brackets as the client wrote
	 * it (points into the parsed line); the answer echoes it upper-cased. */
	const uint8_t *section;
	size_t section_len;
} imap_fetch_att;

typedef struct {
	imap_fetch_att *atts;
	size_t n_atts;
} imap_fetch_atts;

/* Parses the item list of FETCH / UID FETCH: the bytes after the sequence
 * set up to the end of the line (literals inline), i.e. a macro (ALL, FAST,
 * FULL, expanded), one item, or a parenthesised list, optionally followed
 * by fetch modifiers "(CHANGEDSINCE n ...)" which are skipped (the caller
 * forwards the original line's modifiers). 0, or -1 with *error_r (one line
 * fit for "BAD <error>": unknown item, bad section, part number 0, too many
 * parts or fields, partial overflow). The atts point into data. */
int imap_fetch_atts_parse(const uint8_t *data, size_t len, imap_fetch_atts *atts_r,
			  const char **error_r);
void imap_fetch_atts_clear(imap_fetch_atts *atts);

/* True when the item is answered from the message's bytes. */
bool imap_fetch_att_from_content(const imap_fetch_att *att);
/* True when fetching the item sets \Seen (a non-PEEK BODY[...], BINARY[...],
 * RFC822, RFC822.TEXT). */
bool imap_fetch_att_sets_seen(const imap_fetch_att *att);

/* ---- a message held by sealpost ------------------------------------------------- */

typedef struct imap_fetch_msg imap_fetch_msg;

/* Parses msg (RFC 5322, CRLF line ends) into its MIME structure, with the
 * byte offsets IMAP sections refer to. Takes a reference on msg. NULL with
 * *error_r only when it is beyond the limits (depth, parts) — any other
 * malformation is rendered the way a lenient server would, never refused.
 * Bare LF line ends are read as CRLF (as an IMAP server serves them), so then
 * sizes and offsets refer to a CRLF copy and RFC822.SIZE exceeds the given
 * length; with CRLF input the bytes are used as given. */
imap_fetch_msg *imap_fetch_msg_new(GBytes *msg, const char **error_r);
void imap_fetch_msg_free(imap_fetch_msg **m);

/* RFC822.SIZE (of the CRLF form, see above) */
uint64_t imap_fetch_msg_size(const imap_fetch_msg *m);

/* Appends the FETCH response item for att (from_content only) to out,
 * exactly as it goes on the wire after the preceding SP:
 *   "RFC822.SIZE 1234"
 *   "BODY[1.2.MIME] {57}\r\n<57 bytes>"      (PEEK answered as BODY[...])
 *   "BODY[]<100> {50}\r\n<50 bytes>"          (partial: origin only)
 *   "BODY[HEADER.FIELDS (SUBJECT FROM)] {n}\r\n..."
 *   "BINARY[2] ~{n}\r\n..." when the decoded bytes hold a NUL, else {n}
 *   "BODYSTRUCTURE (...)", "BODY (...)", "ENVELOPE (...)"
 * A section that does not exist is answered with an empty literal
 * ("BODY[9] {0}\r\n", as Dovecot does), never an error. BINARY of a part
 * whose encoding is unknown (or BINARY[] of a message holding one) fails
 * with *error_r and *unknown_cte_r (the caller answers "NO [UNKNOWN-CTE]")
 * and appends nothing. -1 otherwise only for an att not from_content. */
int imap_fetch_msg_item(imap_fetch_msg *m, const imap_fetch_att *att, GByteArray *out,
			bool *unknown_cte_r, const char **error_r);

#endif
