/* gateway: what sets a [gateway NAME] apart from a submission account — who
 * may hand mail over (client networks) and the organisation's rules. */
#ifndef SEALPOST_GATEWAY_H
#define SEALPOST_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "keystore_db.h"

/* A rule target as written in require = / exempt =: "user@example.org" (that
 * address), "example.org" or "@example.org" (that domain), "*.example.org" or
 * ".example.org" (every subdomain, not the domain itself). *norm_r (g_free)
 * is the lower-case form: "user@example.org", "@example.org" or
 * ".example.org". -1 with *error_r (static) for anything else. */
int gateway_parse_rule(const char *text, char **norm_r, const char **error_r);

/* "127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8". -1 with *error_r. */
int gateway_parse_network(const char *text, config_network *out, const char **error_r);

/* A list value: entries separated by commas and/or white space. NULL-terminated
 * (g_strfreev); empty entries are dropped. */
char **gateway_split_list(const char *value);

/* Whether host (a literal address as the listener saw it, without port or
 * brackets) is in one of the gateway's client networks. */
bool gateway_client_allowed(const config_gateway *gw, const char *host);

/* The organisation's policy for one envelope recipient: the most specific
 * rule wins (address, then domain, then the longest subdomain rule); of an
 * exemption and a requirement equally specific, the exemption. An exempt
 * recipient gets KEYSTORE_POLICY_NEVER (the message as written); without a
 * rule, the gateway's default policy. matched_r (may be NULL) gets the rule
 * target that decided, or NULL for the default. address may be NULL. */
keystore_policy gateway_policy(const config_gateway *gw, const char *address,
			       const char **matched_r);

#endif
