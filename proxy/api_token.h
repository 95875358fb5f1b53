/* api_token: the bearer token of the local API, STATE_DIR/api-token — 32
 * random bytes as 64 hex digits, mode 0600, created once and atomically. */
#ifndef SEALPOST_API_TOKEN_H
#define SEALPOST_API_TOKEN_H

#include <stdbool.h>

#include "api_check.h"

/* STATE_DIR/api-token (g_free). */
char *api_token_path(const char *state_dir);

/* Reads the token into token_r (API_CHECK_TOKEN_LEN digits and a NUL).
 * When the file does not exist and create is true, it is made first:
 * written to a temporary file of mode 0600 and linked into place, so
 * that two processes starting at once end up with the same token and no
 * reader ever sees half a file. A token file that is not a regular file
 * of ours, is readable or writable by group or others, or does not hold
 * exactly one token is refused: -1 with *error_r (thread-local). */
int api_token_load(const char *state_dir, bool create, char *token_r,
		   const char **error_r);

#endif
