/* imap_relay: the logged-in part of an IMAP session, a full-duplex relay
 * in one thread that parses both directions only as far as it must (line
 * and literal boundaries, tags, command names, capability lists). */
#ifndef SEALPOST_IMAP_RELAY_H
#define SEALPOST_IMAP_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "session.h"

typedef struct {
	char reason[256];	/* why the relay ended, for the session's log */
	/* The client broke the protocol (oversize input): its remaining
	 * input should be drained so it can read sealpost's BYE. */
	bool client_error;
	uint64_t bytes_from_client;
	uint64_t bytes_from_upstream;
} imap_relay_result;

/* Relays until either side closes, a limit or timeout is hit, or a write
 * fails. Both connections stay owned by the caller. */
void imap_relay_run(const session_env *env, conn *client, conn *upstream,
		    imap_relay_result *result_r);

#endif
