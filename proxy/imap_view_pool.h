/* imap_view_pool: the threads that render decrypted views, shared by every
 * session, each with its own OpenPGP worker (GPGME context), so the many
 * messages of one FETCH are decrypted in parallel. */
#ifndef SEALPOST_IMAP_VIEW_POOL_H
#define SEALPOST_IMAP_VIEW_POOL_H

#include <glib.h>
#include <stddef.h>

#include "view.h"

typedef struct imap_view_pool imap_view_pool;

/* One message to render: msg and pinned_signature (NULL: verify now) are
 * the input; result, view and status the output (crypto_view_render's). */
typedef struct {
	GBytes *msg;
	const char *pinned_signature;
	crypto_decrypt_policy policy;

	crypto_view_result result;
	GByteArray *view;
	crypto_view_status status;
} imap_view_job;

/* threads 0: one per CPU. NULL with *error_r. */
imap_view_pool *imap_view_pool_new(unsigned threads, const char **error_r);
/* Waits for the jobs in progress, then stops the threads. */
void imap_view_pool_free(imap_view_pool **pool);

unsigned imap_view_pool_threads(const imap_view_pool *pool);

/* Renders every job and returns when all are done. A worker that cannot
 * be had answers CRYPTO_VIEW_TEMPFAIL. */
void imap_view_pool_render(imap_view_pool *pool, imap_view_job *jobs, size_t n);

/* Releases a job's output (view and status). */
void imap_view_job_clear(imap_view_job *job);

#endif
