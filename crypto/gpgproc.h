/* gpgproc: the OpenPGP worker processes. GPGME starts one gpg per operation
 * with two fork()s from its caller, and forking the large multi-threaded proxy
 * is what an encryption cost most (docs/performance.md); so GPGME runs in
 * small single-threaded processes, started with sealpost, that the sessions
 * borrow one operation at a time. */
#ifndef SEALPOST_CRYPTO_GPGPROC_H
#define SEALPOST_CRYPTO_GPGPROC_H

#include <glib.h>
#include <gpgme.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "view.h"

/* argv[1] of a worker process: a program that starts the pool runs
 * crypto_gpgproc_worker_main when it sees it (sealpost's main does, and so
 * does any test that starts a pool). Not a command a user types. It names
 * the version of the frames spoken over the socket: bump it with any change
 * to them, so that a sealpost and a sealpost-gpgworker from different builds
 * (binaries replaced under a running sealpost) refuse each other — the
 * worker exits at once and its operations fail temporarily — instead of
 * misreading each other. 2: view answers carry Autocrypt-Gossip values. */
#define CRYPTO_GPGPROC_WORKER_ARG "__gpgproc-worker-2"
/* The small program workers run when it stands next to sealpost. */
#define CRYPTO_GPGPROC_WORKER_EXE "sealpost-gpgworker"

/* Starts n worker processes (0: two per CPU) running /proc/self/exe with
 * CRYPTO_GPGPROC_WORKER_ARG, each with gnupg_home (NULL: GnuPG's default).
 * From then on crypto_worker_new gives workers whose operations run in
 * them. -1 with *error_r (static) when none could be started. */
int crypto_gpgproc_start(unsigned n, const char *gnupg_home, const char **error_r);
/* Ends the worker processes and waits for them. No operation may run. */
void crypto_gpgproc_stop(void);
bool crypto_gpgproc_running(void);

/* How long an operation may go without a byte moving either way before its
 * worker process is taken for hung, killed and restarted (default 60 s). */
void crypto_gpgproc_set_timeout(unsigned ms);
/* The worker processes' ids (0 where one is not running), for tests and
 * status: fills up to n, returns how many slots the pool has. */
size_t crypto_gpgproc_pids(pid_t *pids_r, size_t n);

/* The body of a worker process; returns its exit status. */
int crypto_gpgproc_worker_main(int argc, char **argv);

/* ---- operations (crypto/outbound.c and crypto/view.c use these) -------------- */

typedef enum {
	CRYPTO_GPGPROC_ENCRYPT = 1,	/* armored, always trust; signed too with a signer */
	CRYPTO_GPGPROC_SIGN = 2,	/* armored detached signature */
} crypto_gpgproc_op;

/* What gpg answered: as the same calls in-process would. */
typedef struct {
	gpgme_error_t err;		/* of the operation */
	gpgme_error_t invalid_recipient;/* ENCRYPT: the first refused key's reason, or 0 */
	bool signed_ok;			/* SIGN: a signature was made, no signer refused */
	int hash_algo;			/* SIGN: gpgme_hash_algo_t of the signature */
} crypto_gpgproc_result;

typedef ssize_t (*crypto_gpgproc_read_fn)(void *ctx, void *buf, size_t size);
typedef ssize_t (*crypto_gpgproc_write_fn)(void *ctx, const void *buf, size_t size);

/* Runs op in a worker process: its input is read from read until 0 (-1
 * aborts the operation) and its output goes to write as it comes (-1 stops
 * it) — streamed, with bounded buffers on both sides. recipients: a
 * NULL-terminated list of fingerprints (ENCRYPT); signer: a fingerprint or
 * NULL. 0 with *result_r when gpg answered (which may be a failure); -1 with
 * *error_r (thread-local) when the worker process failed, hung or died: a
 * temporary failure, and that process is restarted. */
int crypto_gpgproc_run(crypto_gpgproc_op op, const char *const *recipients,
		       const char *signer, crypto_gpgproc_read_fn read, void *read_ctx,
		       crypto_gpgproc_write_fn write, void *write_ctx,
		       crypto_gpgproc_result *result_r, const char **error_r);

/* The same operation in this process, on ctx (the worker process runs it
 * so, and the proxy when no pool runs). recipients: NULL-terminated keys. */
void crypto_gpgproc_run_local(gpgme_ctx_t ctx, crypto_gpgproc_op op, gpgme_key_t *recipients,
			      gpgme_key_t signer, crypto_gpgproc_read_fn read, void *read_ctx,
			      crypto_gpgproc_write_fn write, void *write_ctx,
			      crypto_gpgproc_result *result_r);

/* crypto_view_render run in a worker process (policy ROOT, msg encrypted). A
 * worker process that fails gives CRYPTO_VIEW_TEMPFAIL. */
crypto_view_result crypto_gpgproc_view(const uint8_t *msg, size_t len,
				       const char *pinned_signature,
				       GByteArray **view_r, crypto_view_status *status_r);

#endif
