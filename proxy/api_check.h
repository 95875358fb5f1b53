/* api_check: the checks every request to the local API passes before it is
 * served — Host, Origin, Content-Type, the bearer token, and text that may
 * never carry CR, LF or NUL. Pure: strings in, yes or no out. */
#ifndef SEALPOST_API_CHECK_H
#define SEALPOST_API_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* The token is 32 random bytes written as 64 lower-case hex digits. */
#define API_CHECK_TOKEN_BYTES 32
#define API_CHECK_TOKEN_LEN (2 * API_CHECK_TOKEN_BYTES)

/* A Host header naming the API: 127.0.0.1, localhost or [::1] (or the
 * address api_listen names, when that is not a wildcard), with
 * listen->port written as plain decimal. The port may be left out only when
 * it is 80. Anything else — another name (DNS rebinding), another port,
 * user info, spaces or controls, NULL — is false. */
bool api_check_host(const char *host, const config_listen *listen);

/* An Origin header the API accepts: absent (NULL), a Thunderbird or
 * Firefox add-on's "moz-extension://UUID", or the web console's own
 * "http://HOST[:PORT]" with HOST[:PORT] as api_check_host takes it.
 * "null", other schemes, paths and anything else are false. */
bool api_check_origin(const char *origin, const config_listen *listen);

/* Content-Type application/json (any case), optionally with parameters
 * ("; charset=utf-8"). */
bool api_check_content_type(const char *content_type);

/* "Bearer TOKEN" (scheme in any case) whose TOKEN equals token (length
 * API_CHECK_TOKEN_LEN), compared in constant time. */
bool api_check_bearer(const char *authorization, const char *token);

/* Text that may reach a protocol line, a header or the database: no CR,
 * LF or NUL among its len bytes. */
bool api_check_text(const char *s, size_t len);

/* Whether JSON text can be handed to the parser: no NUL anywhere — a raw
 * NUL byte, or a "\u0000" escape inside a string, which a C string would
 * silently cut — and arrays and objects nested at most max_depth deep
 * (the parser recurses). false with *why_r (static) otherwise. Reads
 * only len bytes; not a JSON validator. */
bool api_check_json_text(const char *json, size_t len, unsigned max_depth,
			 const char **why_r);

#endif
