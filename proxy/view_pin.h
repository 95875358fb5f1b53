/* view_pin: the signature pins of rendered views, as the IMAP and POP3
 * sides use them: a view shows the first signature status it ever showed
 * (keystore_view_pin_*), so its bytes never change for the same message. */
#ifndef SEALPOST_VIEW_PIN_H
#define SEALPOST_VIEW_PIN_H

#include <stdbool.h>
#include <stddef.h>

#include "imap_view_cache.h"
#include "imap_view_pool.h"
#include "session.h"

/* The pin of key into *pin_r (g_free; NULL: none), to render with. 0, or
 * -1 with "the view store cannot be read: ..." in reason. */
int view_pin_get(const session_env *env, const imap_view_key *key, char **pin_r,
		 char *reason, size_t reason_size);

/* A job rendered with *pin on its first round that came out
 * CRYPTO_VIEW_INVALID: the pin is dropped and the job cleared, to be
 * rendered again and verified anew. True when so. */
bool view_pin_drop_invalid(imap_view_job *job, char **pin, int round);

/* After a rendering without a pin that has a signature status: pins it.
 * 0 the rendering stands; 1 (first round only) another session pinned
 * first: the job is cleared and *pin is that status, render again; -1 with
 * "the view store cannot be written: ..." in reason. */
int view_pin_put_first(const session_env *env, const imap_view_key *key, imap_view_job *job,
		       char **pin, int round, char *reason, size_t reason_size);

#endif
