/* worker: one OpenPGP worker, a GPGME context that one thread uses at a
 * time; the outbound writer and the inbound view both run on one. */
#ifndef SEALPOST_CRYPTO_WORKER_H
#define SEALPOST_CRYPTO_WORKER_H

#include <gpgme.h>
#include <stdbool.h>

/* Each SMTP session, and each thread that renders views, has its own, so
 * messages are encrypted and decrypted in parallel. While the worker
 * processes run (crypto_gpgproc_start), a worker made then is remote: each
 * operation borrows one of those processes, and gpg is started from there,
 * never from this process. The contents are read by the crypto modules
 * only; nothing outside crypto/ touches them. */
typedef struct crypto_worker {
	gpgme_ctx_t ctx;	/* OpenPGP, armored output, no pinentry; NULL when remote */
	bool remote;		/* operations run in the worker processes */
	/* gpg was seen to reject a manipulated message (see view.c): it
	 * checks integrity, so decrypting through this worker is safe. A
	 * remote worker leaves this to the worker processes' own. */
	bool integrity_checked;
} crypto_worker;

/* NULL with *error_r (static) when GPGME cannot make a context. */
crypto_worker *crypto_worker_new(const char **error_r);
void crypto_worker_free(crypto_worker **w);

#endif
