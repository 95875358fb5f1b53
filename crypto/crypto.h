/* crypto: MIME and OpenPGP/MIME handling through GMime. This header is the
 * proxy's only way into it. */
#ifndef SEALPOST_CRYPTO_H
#define SEALPOST_CRYPTO_H

/* Initialises GMime once per process. */
void crypto_init(void);
void crypto_shutdown(void);

/* The GMime version in use, for `sealpost version`. Static storage. */
const char *crypto_gmime_version(void);

#endif
