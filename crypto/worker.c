/* worker: the GPGME context behind every OpenPGP operation of one thread,
 * set up once the way sealpost needs it (armor, no pinentry), or, while the
 * worker processes run, a handle whose operations go to them. */
#include "worker.h"

#include <glib.h>

#include "gpgproc.h"

crypto_worker *crypto_worker_new(const char **error_r)
{
	crypto_worker *w = g_new0(crypto_worker, 1);
	if (crypto_gpgproc_running()) {
		w->remote = true;
		return w;
	}
	if (gpgme_new(&w->ctx) != 0) {
		g_free(w);
		*error_r = "cannot create a GPGME context";
		return NULL;
	}
	gpgme_set_protocol(w->ctx, GPGME_PROTOCOL_OpenPGP);
	gpgme_set_armor(w->ctx, 1);
	gpgme_set_textmode(w->ctx, 0);
	/* A server has nobody to ask for a passphrase: a locked key fails
	 * the operation at once (the user unlocks it through sealpost). */
	gpgme_set_pinentry_mode(w->ctx, GPGME_PINENTRY_MODE_ERROR);
	return w;
}

void crypto_worker_free(crypto_worker **wp)
{
	crypto_worker *w = *wp;
	if (w == NULL)
		return;
	if (w->ctx != NULL)
		gpgme_release(w->ctx);
	g_free(w);
	*wp = NULL;
}
