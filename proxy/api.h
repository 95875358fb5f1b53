/* api: the local HTTP/JSON control API (docs/api.md) — keys, policy rules,
 * Autocrypt peers, pending key changes, status and recent decisions for the
 * add-on, the web console and scripts, on api_listen behind a bearer token. */
#ifndef SEALPOST_API_H
#define SEALPOST_API_H

#include "config.h"

typedef struct api api;

/* Reads (creating on first start) STATE_DIR/api-token, opens the keyring
 * and the database, and serves cfg->api_listen from threads of its own:
 * one per connection, so a slow request (a key generation) holds up no
 * other. cfg must outlive the API. NULL with *error_r when it cannot
 * listen or the token or keystore cannot be had. */
api *api_new(const config *cfg, const char **error_r);
/* Stops listening, waits for the requests being served, frees it all. */
void api_free(api **a);

/* The base URL clients use, e.g. "http://127.0.0.1:7587" or
 * "http://[::1]:7587"; a wildcard address becomes 127.0.0.1 (g_free). */
char *api_url(const config_listen *listen);

#endif
