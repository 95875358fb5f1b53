/* pop3_session: the client side of a POP3 session — sealpost greets, offers
 * STLS, passes USER/PASS and AUTH to the provider, refuses APOP, then serves
 * the maildrop with encrypted messages shown decrypted. */
#ifndef SEALPOST_POP3_SESSION_H
#define SEALPOST_POP3_SESSION_H

#include "session.h"

/* Runs in its own thread and owns client_fd until it returns. */
void pop3_session_run(const session_env *env, int client_fd);

#endif
