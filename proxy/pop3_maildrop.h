/* pop3_maildrop: the messages of one POP3 session as the client sees them —
 * which are served from a decrypted view, and every size (LIST, STAT) in
 * view terms. The views come from the IMAP side's worker pool, cache and
 * signature pins, keyed by the provider's UIDL. */
#ifndef SEALPOST_POP3_MAILDROP_H
#define SEALPOST_POP3_MAILDROP_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "imap_view_cache.h"
#include "session.h"

typedef struct pop3_maildrop pop3_maildrop;

/* Lines of the body a probe (TOP n POP3_MAILDROP_PROBE_LINES) asks for to
 * tell a text/plain message from an inline PGP one. */
#define POP3_MAILDROP_PROBE_LINES 8

/* Results of the functions below: 0 done; 1 a temporary failure whose
 * reason the client gets as "-ERR [SYS/TEMP] reason"; -1 the provider
 * connection broke (reason set; the session ends). */

/* Reads the message list (LIST, and UIDL when the provider has it) right
 * after login. caps is the provider's CAPA body (TOP, UIDL, PIPELINING). */
int pop3_maildrop_load(const session_env *env, conn *upstream, const char *caps,
		       pop3_maildrop **md_r, char *reason, size_t reason_size);
void pop3_maildrop_free(pop3_maildrop **md);

/* Messages at login, deleted ones included: numbers are 1..count. */
uint32_t pop3_maildrop_count(const pop3_maildrop *md);
/* n names a message not marked deleted. */
bool pop3_maildrop_exists(const pop3_maildrop *md, uint64_t n);
void pop3_maildrop_set_deleted(pop3_maildrop *md, uint32_t n);
void pop3_maildrop_undelete_all(pop3_maildrop *md);

/* Learns what the client sees for messages first..last (deleted ones
 * skipped): cache first, then a probe of the header and the first body
 * lines, then download and decryption of those that may be encrypted. */
int pop3_maildrop_settle(pop3_maildrop *md, uint32_t first, uint32_t last,
			 char *reason, size_t reason_size);
/* After settle: the size the client sees. */
uint64_t pop3_maildrop_size(const pop3_maildrop *md, uint32_t n);

/* The view of message n (settling it first); *view_r NULL: the message is
 * served as the provider has it. */
int pop3_maildrop_view(pop3_maildrop *md, uint32_t n, GBytes **view_r,
		       char *reason, size_t reason_size);

/* The cache and pin key of a POP3 message (imap_view_key's mailbox is
 * "\0POP3\0" and the UIDL, UIDVALIDITY 1, UID 1): no IMAP mailbox name can
 * hold a NUL, so no IMAP message shares it. mailbox must hold 6 + uidl_len
 * bytes. */
void pop3_maildrop_key(const char *account, const char *uidl, uint8_t *mailbox,
		       imap_view_key *key_r);

/* Whether a probe (header and first body lines, as TOP gives them) may
 * be an encrypted message or carry X-Sealpost-* fields: only those are
 * downloaded and rendered. Errs toward yes. */
bool pop3_maildrop_probe_candidate(const uint8_t *probe, size_t len);

#endif
