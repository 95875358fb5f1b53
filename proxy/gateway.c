/* gateway: client networks and the organisation's require/exempt rules of a
 * [gateway NAME]; the SMTP engine (smtp_session, smtp_outbound) asks here. */
#include "gateway.h"

#include <arpa/inet.h>
#include <glib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Longest rule target: an address of 320 bytes. */
#define GATEWAY_RULE_MAX 320

static bool gateway_domain_ok(const char *d)
{
	size_t len = strlen(d);
	if (len == 0 || len > 255 || d[0] == '.' || d[len - 1] == '.' || strstr(d, "..") != NULL)
		return false;
	for (const char *p = d; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			c == '.' || c == '_' || c >= 0x80;
		if (!ok)
			return false;
	}
	return true;
}

int gateway_parse_rule(const char *text, char **norm_r, const char **error_r)
{
	size_t len = strlen(text);
	if (len == 0 || len > GATEWAY_RULE_MAX) {
		*error_r = "a rule is an address, a domain or *.domain of at most 320 bytes";
		return -1;
	}
	char *lower = g_utf8_strdown(text, (gssize)len);
	const char *at = strchr(lower, '@');
	char *norm = NULL;
	if (at != NULL) {
		const char *domain = at + 1;
		bool local_ok = true;
		for (const char *p = lower; p < at; p++) {
			if ((unsigned char)*p <= ' ' || strchr("\"<>,;()[]\\", *p) != NULL)
				local_ok = false;
		}
		if (strchr(domain, '@') != NULL || !local_ok || !gateway_domain_ok(domain)) {
			g_free(lower);
			*error_r = "expected user@domain, @domain, domain or *.domain";
			return -1;
		}
		norm = g_strdup(lower);	/* "@domain" or "user@domain" */
	} else {
		const char *domain = lower;
		bool sub = false;
		if (g_str_has_prefix(domain, "*.")) {
			domain += 2;
			sub = true;
		} else if (domain[0] == '.') {
			domain += 1;
			sub = true;
		}
		if (!gateway_domain_ok(domain)) {
			g_free(lower);
			*error_r = "expected user@domain, @domain, domain or *.domain";
			return -1;
		}
		norm = g_strdup_printf("%c%s", sub ? '.' : '@', domain);
	}
	g_free(lower);
	*norm_r = norm;
	return 0;
}

int gateway_parse_network(const char *text, config_network *out, const char **error_r)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	if (alen == 0 || alen >= sizeof(addr)) {
		*error_r = "expected an address or address/prefix";
		return -1;
	}
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof(*out));
	unsigned max;
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		*error_r = "expected an IPv4 or IPv6 address, optionally /prefix";
		return -1;
	}
	out->prefix = max;
	if (slash != NULL) {
		char *end;
		long v = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || v < 0 || v > (long)max) {
			*error_r = "the prefix length is out of range";
			return -1;
		}
		out->prefix = (unsigned)v;
	}
	return 0;
}

char **gateway_split_list(const char *value)
{
	char **parts = g_strsplit_set(value, ", \t", -1);
	GPtrArray *out = g_ptr_array_new();
	for (char **p = parts; *p != NULL; p++) {
		if ((*p)[0] != '\0')
			g_ptr_array_add(out, g_strdup(*p));
	}
	g_strfreev(parts);
	g_ptr_array_add(out, NULL);
	return (char **)g_ptr_array_free(out, FALSE);
}

static bool gateway_network_contains(const config_network *n, int family,
				     const unsigned char *addr)
{
	if (n->family != family)
		return false;
	unsigned full = n->prefix / 8, rest = n->prefix % 8;
	if (memcmp(n->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (n->addr[full] & mask) == (addr[full] & mask);
}

bool gateway_client_allowed(const config_gateway *gw, const char *host)
{
	unsigned char addr[16];
	int family;
	if (inet_pton(AF_INET, host, addr) == 1) {
		family = AF_INET;
	} else if (inet_pton(AF_INET6, host, addr) == 1) {
		family = AF_INET6;
		/* An IPv4 client on a dual-stack socket: ::ffff:a.b.c.d. */
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
			memmove(addr, addr + 12, 4);
			family = AF_INET;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < gw->n_clients; i++) {
		if (gateway_network_contains(&gw->clients[i], family, addr))
			return true;
	}
	return false;
}

/* How specifically target matches address (lower case, "local@domain"):
 * 0 not at all, 1000 the address, 500 the domain, else the length of the
 * matched subdomain suffix (below 500). */
static unsigned gateway_match(const char *target, const char *address, const char *domain)
{
	if (target[0] == '@')
		return strcmp(target + 1, domain) == 0 ? 500 : 0;
	if (target[0] == '.') {
		size_t tl = strlen(target), dl = strlen(domain);
		return dl > tl && strcmp(domain + dl - tl, target) == 0 ? (unsigned)tl : 0;
	}
	return strcmp(target, address) == 0 ? 1000 : 0;
}

static unsigned gateway_best(char *const *targets, const char *address, const char *domain,
			     const char **which_r)
{
	unsigned best = 0;
	for (size_t i = 0; targets != NULL && targets[i] != NULL; i++) {
		unsigned m = gateway_match(targets[i], address, domain);
		if (m > best) {
			best = m;
			*which_r = targets[i];
		}
	}
	return best;
}

keystore_policy gateway_policy(const config_gateway *gw, const char *address,
			       const char **matched_r)
{
	if (matched_r != NULL)
		*matched_r = NULL;
	if (address == NULL)
		return gw->account.policy;
	char *lower = g_utf8_strdown(address, -1);
	const char *at = strrchr(lower, '@');
	const char *domain = at != NULL ? at + 1 : "";
	const char *req_t = NULL, *ex_t = NULL;
	unsigned req = gateway_best(gw->require, lower, domain, &req_t);
	unsigned ex = gateway_best(gw->exempt, lower, domain, &ex_t);
	g_free(lower);
	if (ex > 0 && ex >= req) {
		if (matched_r != NULL)
			*matched_r = ex_t;
		return KEYSTORE_POLICY_NEVER;
	}
	if (req > 0) {
		if (matched_r != NULL)
			*matched_r = req_t;
		return KEYSTORE_POLICY_REQUIRE;
	}
	return gw->account.policy;
}
