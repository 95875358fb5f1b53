/* config: reads the INI file with GLib's GKeyFile and validates every key,
 * so a bad config is refused with one line naming file, line and key. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

static _Thread_local char config_error[1024];

typedef struct {
	const char *path;
	const char *text;	/* the preprocessed text GKeyFile read */
	GKeyFile *kf;
} config_ctx;

static const char *const config_global_keys[] = {
	"state_dir", "gnupg_home", "api_listen", "tls_cert", "tls_key",
	"log_file", "log_level", "allow_remote", "max_line_length",
	"max_literal_size", "max_message_size", "max_sessions",
	"idle_timeout", "command_timeout", "connect_timeout", "view_cache_size",
	"decrypt_workers", "key_discovery", "keyserver", "discovery_timeout",
	"discovery_negative_ttl", "discovery_positive_ttl", "discovery_rate", NULL,
};

static const char *const config_account_keys[] = {
	"address", "imap_listen", "imaps_listen", "smtp_listen",
	"smtps_listen", "pop3_listen", "pop3s_listen", "imap_upstream",
	"smtp_upstream", "pop3_upstream", "upstream_ca_file",
	"client_plaintext_auth", "policy", "sign", "clear_subject",
	"prefer_encrypt", "policy_header", "decrypt", "encrypt_append", NULL,
};

static const char *const config_gateway_keys[] = {
	"listen", "next_hop", "next_hop_tls", "next_hop_ca_file", "clients",
	"default_policy", "require", "exempt", "split", "sign_key",
	"override_headers", "clear_subject", NULL,
};

/* Line (1-based) of "key =" inside [group], or of the group header when key
 * is NULL; 0 when not found. */
static int config_find_line(const char *text, const char *group, const char *key)
{
	int line = 1;
	bool in_group = false;
	size_t keylen = key != NULL ? strlen(key) : 0;
	for (const char *p = text; *p != '\0'; line++) {
		const char *end = strchr(p, '\n');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		while (s < p + len && isspace((unsigned char)*s))
			s++;
		if (*s == '[') {
			const char *close = memchr(s, ']', (size_t)(p + len - s));
			in_group = close != NULL &&
				(size_t)(close - s - 1) == strlen(group) &&
				memcmp(s + 1, group, strlen(group)) == 0;
			if (in_group && key == NULL)
				return line;
		} else if (in_group && key != NULL &&
			   (size_t)(p + len - s) > keylen &&
			   memcmp(s, key, keylen) == 0) {
			const char *t = s + keylen;
			while (t < p + len && (*t == ' ' || *t == '\t'))
				t++;
			if (t < p + len && *t == '=')
				return line;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return 0;
}

static void config_fail(const config_ctx *ctx, const char *group,
			const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void config_fail(const config_ctx *ctx, const char *group,
			const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list args;
	va_start(args, fmt);
	vsnprintf(msg, sizeof(msg), fmt, args);
	va_end(args);

	int line = group != NULL ? config_find_line(ctx->text, group, key) : 0;
	if (line == 0 && group != NULL && key != NULL)
		line = config_find_line(ctx->text, group, NULL);
	char where[64] = "";
	if (line > 0)
		snprintf(where, sizeof(where), ":%d", line);
	if (group != NULL && key != NULL)
		snprintf(config_error, sizeof(config_error), "%s%s: [%s] %s: %s",
			 ctx->path, where, group, key, msg);
	else if (group != NULL)
		snprintf(config_error, sizeof(config_error), "%s%s: [%s]: %s",
			 ctx->path, where, group, msg);
	else
		snprintf(config_error, sizeof(config_error), "%s: %s", ctx->path, msg);
}

bool config_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return strcmp(host, "localhost") == 0;
}

static int config_parse_port(const char *s, int *port_r)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port_r = (int)v;
	return 0;
}

int config_parse_listen(const char *value, config_listen *out, const char **error_r)
{
	const char *colon;
	char host[64];

	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		if (close == NULL || close[1] != ':') {
			*error_r = "expected [IPv6]:PORT";
			return -1;
		}
		size_t len = (size_t)(close - value - 1);
		if (len >= sizeof(host)) {
			*error_r = "address too long";
			return -1;
		}
		memcpy(host, value + 1, len);
		host[len] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(value, ':');
		if (colon == NULL || (size_t)(colon - value) >= sizeof(host)) {
			*error_r = "expected ADDRESS:PORT, e.g. 127.0.0.1:1143";
			return -1;
		}
		memcpy(host, value, (size_t)(colon - value));
		host[colon - value] = '\0';
	}
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
		*error_r = "the address must be a literal IPv4 or IPv6 address";
		return -1;
	}
	int port;
	if (config_parse_port(colon + 1, &port) < 0) {
		*error_r = "the port must be a number from 1 to 65535";
		return -1;
	}
	out->host = g_strdup(host);
	out->port = port;
	return 0;
}

int config_parse_upstream(const char *value, const char *protocol,
			  config_upstream *out, const char **error_r)
{
	static const struct {
		const char *scheme, *protocol;
		config_upstream_tls tls;
		int default_port;
	} schemes[] = {
		{ "imap", "imap", UPSTREAM_TLS_STARTTLS, 143 },
		{ "imaps", "imap", UPSTREAM_TLS_IMPLICIT, 993 },
		{ "smtp", "smtp", UPSTREAM_TLS_STARTTLS, 587 },
		{ "smtps", "smtp", UPSTREAM_TLS_IMPLICIT, 465 },
		{ "pop3", "pop3", UPSTREAM_TLS_STARTTLS, 110 },
		{ "pop3s", "pop3", UPSTREAM_TLS_IMPLICIT, 995 },
	};
	const char *sep = strstr(value, "://");
	if (sep == NULL) {
		*error_r = "expected SCHEME://HOST[:PORT]";
		return -1;
	}
	size_t slen = (size_t)(sep - value);
	size_t i;
	for (i = 0; i < G_N_ELEMENTS(schemes); i++) {
		if (strlen(schemes[i].scheme) == slen &&
		    g_ascii_strncasecmp(value, schemes[i].scheme, slen) == 0 &&
		    strcmp(schemes[i].protocol, protocol) == 0)
			break;
	}
	if (i == G_N_ELEMENTS(schemes)) {
		static _Thread_local char msg[128];
		snprintf(msg, sizeof(msg), "the scheme must be %s:// (STARTTLS) or %ss:// (implicit TLS)",
			 protocol, protocol);
		*error_r = msg;
		return -1;
	}
	const char *hostpart = sep + 3;
	size_t hlen = strcspn(hostpart, "/");
	if (hostpart[hlen] == '/' && hostpart[hlen + 1] != '\0') {
		*error_r = "no path is allowed after HOST:PORT";
		return -1;
	}
	char *hp = g_strndup(hostpart, hlen);
	char *host;
	const char *portstr = NULL;
	if (hp[0] == '[') {
		char *close = strchr(hp, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
			g_free(hp);
			*error_r = "bad [IPv6] host";
			return -1;
		}
		host = g_strndup(hp + 1, (size_t)(close - hp - 1));
		if (close[1] == ':')
			portstr = close + 2;
	} else {
		char *colon = strrchr(hp, ':');
		host = colon != NULL ? g_strndup(hp, (size_t)(colon - hp)) : g_strdup(hp);
		if (colon != NULL)
			portstr = colon + 1;
	}
	int port = schemes[i].default_port;
	bool ok = host[0] != '\0' && strcspn(host, " \t@?#") == strlen(host);
	if (ok && portstr != NULL && config_parse_port(portstr, &port) < 0)
		ok = false;
	g_free(hp);
	if (!ok) {
		g_free(host);
		*error_r = "expected SCHEME://HOST[:PORT] with a port from 1 to 65535";
		return -1;
	}
	out->url = g_strdup(value);
	out->host = host;
	out->port = port;
	out->tls = schemes[i].tls;
	return 0;
}

static int config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || s[0] == '-')
		return -1;
	uint64_t mult = 1;
	if (*end == 'K' || *end == 'k')
		mult = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mult = 1024 * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mult = 1024ULL * 1024 * 1024, end++;
	if (*end != '\0' || v == 0 || v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static bool config_key_known(const char *const *keys, const char *key)
{
	for (size_t i = 0; keys[i] != NULL; i++) {
		if (strcmp(keys[i], key) == 0)
			return true;
	}
	return false;
}

/* Reads group/key as a string; NULL (and no error) when absent. */
static char *config_get(const config_ctx *ctx, const char *group, const char *key)
{
	if (!g_key_file_has_key(ctx->kf, group, key, NULL))
		return NULL;
	char *v = g_key_file_get_value(ctx->kf, group, key, NULL);
	if (v != NULL)
		g_strstrip(v);
	return v;
}

static int config_get_bool(const config_ctx *ctx, const char *group,
			   const char *key, bool *out)
{
	char *v = config_get(ctx, group, key);
	if (v == NULL)
		return 0;
	int ret = 0;
	if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0)
		*out = true;
	else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 || strcmp(v, "0") == 0)
		*out = false;
	else {
		config_fail(ctx, group, key, "expected true or false, got '%s'", v);
		ret = -1;
	}
	g_free(v);
	return ret;
}

static int config_get_size(const config_ctx *ctx, const char *group,
			   const char *key, uint64_t min, uint64_t max,
			   uint64_t *out)
{
	char *v = config_get(ctx, group, key);
	if (v == NULL)
		return 0;
	uint64_t n;
	int ret = 0;
	if (config_parse_size(v, &n) < 0 || n < min || n > max) {
		config_fail(ctx, group, key,
			    "expected a number from %llu to %llu (K, M, G suffixes allowed), got '%s'",
			    (unsigned long long)min, (unsigned long long)max, v);
		ret = -1;
	} else {
		*out = n;
	}
	g_free(v);
	return ret;
}

static char *config_resolve_path(const config_ctx *ctx, char *value)
{
	if (value == NULL)
		return NULL;
	char *dir = ctx->path != NULL ? g_path_get_dirname(ctx->path) : g_strdup(".");
	char *absdir = g_canonicalize_filename(dir, NULL);
	char *abs = g_canonicalize_filename(value, absdir);
	g_free(absdir);
	g_free(dir);
	g_free(value);
	return abs;
}

static int config_get_listen(const config_ctx *ctx, const char *group,
			     const char *key, bool allow_remote, config_listen *out)
{
	char *v = config_get(ctx, group, key);
	if (v == NULL)
		return 0;
	const char *error;
	int ret = config_parse_listen(v, out, &error);
	if (ret < 0)
		config_fail(ctx, group, key, "%s, got '%s'", error, v);
	else if (!allow_remote && !config_is_loopback(out->host)) {
		config_fail(ctx, group, key,
			    "%s is not a loopback address; set allow_remote = true in [sealpost] to listen there",
			    out->host);
		ret = -1;
	}
	g_free(v);
	return ret;
}

static int config_get_upstream(const config_ctx *ctx, const char *group,
			       const char *key, const char *protocol,
			       config_upstream *out)
{
	char *v = config_get(ctx, group, key);
	if (v == NULL)
		return 0;
	const char *error;
	int ret = config_parse_upstream(v, protocol, out, &error);
	if (ret < 0)
		config_fail(ctx, group, key, "%s, got '%s'", error, v);
	g_free(v);
	return ret;
}

static void config_account_free(config_account *a)
{
	if (a == NULL)
		return;
	g_free(a->name);
	g_free(a->address);
	config_listen *listens[] = {
		&a->imap_listen, &a->imaps_listen, &a->smtp_listen,
		&a->smtps_listen, &a->pop3_listen, &a->pop3s_listen,
	};
	for (size_t i = 0; i < G_N_ELEMENTS(listens); i++)
		g_free(listens[i]->host);
	config_upstream *ups[] = { &a->imap_upstream, &a->smtp_upstream, &a->pop3_upstream };
	for (size_t i = 0; i < G_N_ELEMENTS(ups); i++) {
		g_free(ups[i]->url);
		g_free(ups[i]->host);
	}
	g_free(a->upstream_ca_file);
	g_free(a);
}

static void config_gateway_free(config_gateway *gw)
{
	if (gw == NULL)
		return;
	g_free(gw->name);
	g_free(gw->listen.host);
	g_free(gw->clients);
	g_strfreev(gw->require);
	g_strfreev(gw->exempt);
	g_free(gw->account.name);
	g_free(gw->account.address);
	g_free(gw->account.smtp_upstream.url);
	g_free(gw->account.smtp_upstream.host);
	g_free(gw->account.upstream_ca_file);
	g_free(gw);
}

void config_free(config **cfgp)
{
	config *cfg = *cfgp;
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->n_accounts; i++)
		config_account_free(cfg->accounts[i]);
	g_free(cfg->accounts);
	for (size_t i = 0; i < cfg->n_gateways; i++)
		config_gateway_free(cfg->gateways[i]);
	g_free(cfg->gateways);
	g_free(cfg->path);
	g_free(cfg->state_dir);
	g_free(cfg->gnupg_home);
	g_free(cfg->api_listen.host);
	g_free(cfg->tls_cert);
	g_free(cfg->tls_key);
	g_free(cfg->log_file);
	g_free(cfg->discovery.keyserver);
	g_free(cfg);
	*cfgp = NULL;
}

static int config_check_keys(const config_ctx *ctx, const char *group,
			     const char *const *known)
{
	gsize n = 0;
	char **keys = g_key_file_get_keys(ctx->kf, group, &n, NULL);
	int ret = 0;
	for (gsize i = 0; i < n && ret == 0; i++) {
		if (!config_key_known(known, keys[i])) {
			config_fail(ctx, group, keys[i], "unknown key");
			ret = -1;
		}
	}
	g_strfreev(keys);
	return ret;
}

/* A duration: whole seconds, or minutes, hours or days with m, h, d. */
static int config_get_seconds(const config_ctx *ctx, const char *group, const char *key,
			      unsigned min, unsigned max, unsigned *out)
{
	char *v = config_get(ctx, group, key);
	if (v == NULL)
		return 0;
	char *end;
	errno = 0;
	unsigned long long n = g_ascii_isdigit(v[0]) ? strtoull(v, &end, 10) : 0;
	unsigned long long mult = 1;
	bool ok = g_ascii_isdigit(v[0]) && errno == 0;
	if (ok && *end != '\0') {
		mult = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600
			: *end == 'd' ? 86400 : 0;
		ok = mult != 0 && end[1] == '\0';
	}
	ok = ok && n <= max / mult && n * mult >= min;
	if (!ok)
		config_fail(ctx, group, key, "expected seconds from %u to %u (or a number with m, "
			    "h or d), got '%s'", min, max, v);
	else
		*out = (unsigned)(n * mult);
	g_free(v);
	return ok ? 0 : -1;
}

/* key_discovery = wkd, keyserver (in any order, comma or space separated;
 * "none" or empty: off) and the keys that tune it. */
static int config_load_discovery(const config_ctx *ctx, const char *g, config *cfg)
{
	keystore_discover_config *d = &cfg->discovery;
	char *methods = config_get(ctx, g, "key_discovery");
	if (methods != NULL) {
		char **words = g_strsplit_set(methods, ", \t", -1);
		int ret = 0;
		for (char **w = words; *w != NULL && ret == 0; w++) {
			if (**w == '\0')
				continue;
			if (g_ascii_strcasecmp(*w, "wkd") == 0)
				d->methods |= KEYSTORE_DISCOVER_WKD;
			else if (g_ascii_strcasecmp(*w, "keyserver") == 0)
				d->methods |= KEYSTORE_DISCOVER_KEYSERVER;
			else if (g_ascii_strcasecmp(*w, "none") == 0)
				d->methods = 0;
			else {
				config_fail(ctx, g, "key_discovery", "expected wkd, keyserver or none, "
					    "got '%s'", *w);
				ret = -1;
			}
		}
		g_strfreev(words);
		g_free(methods);
		if (ret < 0)
			return -1;
	}
	d->keyserver = config_get(ctx, g, "keyserver");
	if (d->keyserver != NULL) {
		const char *k = d->keyserver;
		const char *rest = g_str_has_prefix(k, "hkps://") ? k + 7
			: g_str_has_prefix(k, "hkp://") ? k + 6 : NULL;
		bool ok = rest != NULL && *rest != '\0';
		for (const char *p = k; ok && *p != '\0'; p++)
			ok = (unsigned char)*p > 0x20 && *p != 0x7f && *p != '%';
		if (!ok) {
			config_fail(ctx, g, "keyserver", "expected hkps://HOST[:PORT] or "
				    "hkp://HOST[:PORT], got '%s'", k);
			return -1;
		}
	}
	if (config_get_seconds(ctx, g, "discovery_timeout", 1, 120, &d->timeout) < 0 ||
	    config_get_seconds(ctx, g, "discovery_negative_ttl", 0, 365 * 86400,
			       &d->negative_ttl) < 0 ||
	    config_get_seconds(ctx, g, "discovery_positive_ttl", 0, 365 * 86400,
			       &d->positive_ttl) < 0)
		return -1;
	char *rate = config_get(ctx, g, "discovery_rate");
	if (rate != NULL) {
		char *end;
		errno = 0;
		unsigned long long n = g_ascii_isdigit(rate[0]) ? strtoull(rate, &end, 10) : 0;
		bool ok = g_ascii_isdigit(rate[0]) && errno == 0 && *end == '\0' && n <= 100000;
		if (!ok)
			config_fail(ctx, g, "discovery_rate", "expected lookups per minute from 0 "
				    "(no limit) to 100000, got '%s'", rate);
		else
			d->rate = (unsigned)n;
		g_free(rate);
		if (!ok)
			return -1;
	}
	return 0;
}

static int config_load_global(const config_ctx *ctx, config *cfg)
{
	const char *g = "sealpost";
	uint64_t v;

	cfg->limits.max_line = 65536;
	cfg->limits.max_literal = 64ULL * 1024 * 1024;
	cfg->limits.max_message = 50ULL * 1024 * 1024;
	cfg->limits.max_sessions = 256;
	cfg->limits.idle_timeout = 1800;
	cfg->limits.command_timeout = 120;
	cfg->limits.connect_timeout = 30;
	cfg->view_cache_size = 64ULL * 1024 * 1024;
	cfg->decrypt_workers = 0;
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->discovery.timeout = KEYSTORE_DISCOVER_TIMEOUT;
	cfg->discovery.negative_ttl = KEYSTORE_DISCOVER_NEGATIVE_TTL;
	cfg->discovery.positive_ttl = KEYSTORE_DISCOVER_POSITIVE_TTL;
	cfg->discovery.rate = KEYSTORE_DISCOVER_RATE;

	if (!g_key_file_has_group(ctx->kf, g))
		goto defaults;
	if (config_check_keys(ctx, g, config_global_keys) < 0)
		return -1;
	cfg->state_dir = config_resolve_path(ctx, config_get(ctx, g, "state_dir"));
	cfg->gnupg_home = config_resolve_path(ctx, config_get(ctx, g, "gnupg_home"));
	cfg->tls_cert = config_resolve_path(ctx, config_get(ctx, g, "tls_cert"));
	cfg->tls_key = config_resolve_path(ctx, config_get(ctx, g, "tls_key"));
	cfg->log_file = config_resolve_path(ctx, config_get(ctx, g, "log_file"));
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		config_fail(ctx, g, cfg->tls_cert == NULL ? "tls_key" : "tls_cert",
			    "tls_cert and tls_key must be given together");
		return -1;
	}
	char *level = config_get(ctx, g, "log_level");
	if (level != NULL && log_level_parse(level, &cfg->log_level) < 0) {
		config_fail(ctx, g, "log_level", "expected debug, info, warn or error, got '%s'", level);
		g_free(level);
		return -1;
	}
	g_free(level);
	if (config_get_bool(ctx, g, "allow_remote", &cfg->allow_remote) < 0)
		return -1;
	if (config_get_listen(ctx, g, "api_listen", cfg->allow_remote, &cfg->api_listen) < 0)
		return -1;

	v = cfg->limits.max_line;
	if (config_get_size(ctx, g, "max_line_length", 1024, 16 * 1024 * 1024, &v) < 0)
		return -1;
	cfg->limits.max_line = (size_t)v;
	if (config_get_size(ctx, g, "max_literal_size", 1024, 4ULL * 1024 * 1024 * 1024,
			    &cfg->limits.max_literal) < 0)
		return -1;
	if (config_get_size(ctx, g, "max_message_size", 1024, 4ULL * 1024 * 1024 * 1024,
			    &cfg->limits.max_message) < 0)
		return -1;
	v = cfg->limits.max_sessions;
	if (config_get_size(ctx, g, "max_sessions", 1, 100000, &v) < 0)
		return -1;
	cfg->limits.max_sessions = (unsigned)v;
	v = cfg->limits.idle_timeout;
	if (config_get_size(ctx, g, "idle_timeout", 1, 86400, &v) < 0)
		return -1;
	cfg->limits.idle_timeout = (unsigned)v;
	v = cfg->limits.command_timeout;
	if (config_get_size(ctx, g, "command_timeout", 1, 3600, &v) < 0)
		return -1;
	cfg->limits.command_timeout = (unsigned)v;
	v = cfg->limits.connect_timeout;
	if (config_get_size(ctx, g, "connect_timeout", 1, 600, &v) < 0)
		return -1;
	cfg->limits.connect_timeout = (unsigned)v;
	if (config_get_size(ctx, g, "view_cache_size", 0, 64ULL * 1024 * 1024 * 1024,
			    &cfg->view_cache_size) < 0)
		return -1;
	v = cfg->decrypt_workers;
	if (config_get_size(ctx, g, "decrypt_workers", 0, 256, &v) < 0)
		return -1;
	cfg->decrypt_workers = (unsigned)v;
	if (config_load_discovery(ctx, g, cfg) < 0)
		return -1;

defaults:
	if (cfg->state_dir == NULL) {
		const char *xdg = g_getenv("XDG_DATA_HOME");
		cfg->state_dir = xdg != NULL && xdg[0] == '/' ?
			g_build_filename(xdg, "sealpost", NULL) :
			g_build_filename(g_get_home_dir(), ".local", "share", "sealpost", NULL);
	}
	if (cfg->gnupg_home == NULL)
		cfg->gnupg_home = g_build_filename(cfg->state_dir, "gnupg", NULL);
	if (cfg->tls_cert == NULL) {
		cfg->tls_cert = g_build_filename(cfg->state_dir, "tls", "sealpost.crt", NULL);
		cfg->tls_key = g_build_filename(cfg->state_dir, "tls", "sealpost.key", NULL);
	}
	if (cfg->api_listen.host == NULL) {
		cfg->api_listen.host = g_strdup("127.0.0.1");
		cfg->api_listen.port = 7587;
		cfg->api_listen_default = true;
	}
	return 0;
}

static int config_load_account(const config_ctx *ctx, const config *cfg,
			       const char *group, config_account *a)
{
	if (config_check_keys(ctx, group, config_account_keys) < 0)
		return -1;
	a->address = config_get(ctx, group, "address");
	if (a->address == NULL) {
		config_fail(ctx, group, NULL, "missing key 'address'");
		return -1;
	}
	const char *at = strchr(a->address, '@');
	if (at == NULL || at == a->address || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL || strpbrk(a->address, " \t<>\r\n") != NULL) {
		config_fail(ctx, group, "address", "expected an e-mail address, got '%s'", a->address);
		return -1;
	}
	static const struct { const char *key; size_t off; } listens[] = {
		{ "imap_listen", offsetof(config_account, imap_listen) },
		{ "imaps_listen", offsetof(config_account, imaps_listen) },
		{ "smtp_listen", offsetof(config_account, smtp_listen) },
		{ "smtps_listen", offsetof(config_account, smtps_listen) },
		{ "pop3_listen", offsetof(config_account, pop3_listen) },
		{ "pop3s_listen", offsetof(config_account, pop3s_listen) },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(listens); i++) {
		config_listen *l = (config_listen *)((char *)a + listens[i].off);
		if (config_get_listen(ctx, group, listens[i].key, cfg->allow_remote, l) < 0)
			return -1;
	}
	if (config_get_upstream(ctx, group, "imap_upstream", "imap", &a->imap_upstream) < 0 ||
	    config_get_upstream(ctx, group, "smtp_upstream", "smtp", &a->smtp_upstream) < 0 ||
	    config_get_upstream(ctx, group, "pop3_upstream", "pop3", &a->pop3_upstream) < 0)
		return -1;
	static const struct { const char *listen_key, *listen_key2, *upstream_key; size_t l1, l2, up; } pairs[] = {
		{ "imap_listen", "imaps_listen", "imap_upstream",
		  offsetof(config_account, imap_listen), offsetof(config_account, imaps_listen),
		  offsetof(config_account, imap_upstream) },
		{ "smtp_listen", "smtps_listen", "smtp_upstream",
		  offsetof(config_account, smtp_listen), offsetof(config_account, smtps_listen),
		  offsetof(config_account, smtp_upstream) },
		{ "pop3_listen", "pop3s_listen", "pop3_upstream",
		  offsetof(config_account, pop3_listen), offsetof(config_account, pop3s_listen),
		  offsetof(config_account, pop3_upstream) },
	};
	bool any_listener = false;
	for (size_t i = 0; i < G_N_ELEMENTS(pairs); i++) {
		const config_listen *l1 = (const config_listen *)((const char *)a + pairs[i].l1);
		const config_listen *l2 = (const config_listen *)((const char *)a + pairs[i].l2);
		const config_upstream *up = (const config_upstream *)((const char *)a + pairs[i].up);
		bool listens_here = l1->port != 0 || l2->port != 0;
		any_listener |= listens_here;
		if (listens_here && up->host == NULL) {
			config_fail(ctx, group, l1->port != 0 ? pairs[i].listen_key : pairs[i].listen_key2,
				    "needs %s, the provider to forward to", pairs[i].upstream_key);
			return -1;
		}
		if (!listens_here && up->host != NULL) {
			config_fail(ctx, group, pairs[i].upstream_key,
				    "no %s or %s is configured to serve it",
				    pairs[i].listen_key, pairs[i].listen_key2);
			return -1;
		}
	}
	if (!any_listener) {
		config_fail(ctx, group, NULL,
			    "no listener: set imap_listen, smtp_listen or another *_listen key");
		return -1;
	}
	a->upstream_ca_file = config_resolve_path(ctx, config_get(ctx, group, "upstream_ca_file"));
	if (a->upstream_ca_file != NULL && !g_file_test(a->upstream_ca_file, G_FILE_TEST_IS_REGULAR)) {
		config_fail(ctx, group, "upstream_ca_file", "no such file: %s", a->upstream_ca_file);
		return -1;
	}
	a->client_plaintext_auth = true;
	if (config_get_bool(ctx, group, "client_plaintext_auth", &a->client_plaintext_auth) < 0)
		return -1;
	a->policy = KEYSTORE_POLICY_OPPORTUNISTIC;
	char *v = config_get(ctx, group, "policy");
	if (v != NULL) {
		int ret = keystore_policy_parse(v, &a->policy);
		if (ret < 0)
			config_fail(ctx, group, "policy",
				    "expected require, opportunistic or never, got '%s'", v);
		g_free(v);
		if (ret < 0)
			return -1;
	}
	a->policy_header = true;
	a->decrypt = true;
	if (config_get_bool(ctx, group, "decrypt", &a->decrypt) < 0)
		return -1;
	a->encrypt_append = true;
	if (config_get_bool(ctx, group, "encrypt_append", &a->encrypt_append) < 0)
		return -1;
	if (config_get_bool(ctx, group, "sign", &a->sign) < 0 ||
	    config_get_bool(ctx, group, "clear_subject", &a->clear_subject) < 0 ||
	    config_get_bool(ctx, group, "policy_header", &a->policy_header) < 0)
		return -1;
	v = config_get(ctx, group, "prefer_encrypt");
	if (v != NULL) {
		bool ok = strcmp(v, "mutual") == 0 || strcmp(v, "nopreference") == 0;
		if (!ok)
			config_fail(ctx, group, "prefer_encrypt",
				    "expected mutual or nopreference, got '%s'", v);
		a->prefer_encrypt_mutual = strcmp(v, "mutual") == 0;
		g_free(v);
		if (!ok)
			return -1;
	}
	return 0;
}

/* Every listener of every account must be distinct. */
static int config_check_duplicates(const config_ctx *ctx, const config *cfg)
{
	GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	int ret = 0;
	static const char *const keys[] = {
		"imap_listen", "imaps_listen", "smtp_listen", "smtps_listen",
		"pop3_listen", "pop3s_listen",
	};
	for (size_t i = 0; i < cfg->n_accounts && ret == 0; i++) {
		const config_account *a = cfg->accounts[i];
		const config_listen *ls[] = {
			&a->imap_listen, &a->imaps_listen, &a->smtp_listen,
			&a->smtps_listen, &a->pop3_listen, &a->pop3s_listen,
		};
		for (size_t j = 0; j < G_N_ELEMENTS(ls) && ret == 0; j++) {
			if (ls[j]->port == 0)
				continue;
			char *k = g_strdup_printf("%s|%d", ls[j]->host, ls[j]->port);
			char *group = g_strdup_printf("account %s", a->name);
			const char *prev = g_hash_table_lookup(seen, k);
			if (prev != NULL) {
				config_fail(ctx, group, keys[j], "%s:%d is already used by %s",
					    ls[j]->host, ls[j]->port, prev);
				ret = -1;
				g_free(k);
			} else {
				g_hash_table_insert(seen, k, g_strdup_printf("[%s] %s", group, keys[j]));
			}
			g_free(group);
		}
	}
	g_hash_table_destroy(seen);
	return ret;
}

/* require = / exempt =: a list of rule targets, normalised. */
static int config_get_rules(const config_ctx *ctx, const char *group, const char *key,
			    char ***out)
{
	char *v = config_get(ctx, group, key);
	GPtrArray *rules = g_ptr_array_new();
	char **items = gateway_split_list(v != NULL ? v : "");
	int ret = 0;
	for (char **it = items; *it != NULL && ret == 0; it++) {
		char *norm;
		const char *error;
		if (gateway_parse_rule(*it, &norm, &error) < 0) {
			config_fail(ctx, group, key, "%s, got '%s'", error, *it);
			ret = -1;
		} else {
			g_ptr_array_add(rules, norm);
		}
	}
	g_strfreev(items);
	g_free(v);
	g_ptr_array_add(rules, NULL);
	*out = (char **)g_ptr_array_free(rules, FALSE);
	return ret;
}

static int config_load_gateway(const config_ctx *ctx, const config *cfg,
			       const char *group, config_gateway *gw)
{
	config_account *a = &gw->account;
	a->name = g_strdup(gw->name);
	a->gateway = gw;
	if (config_check_keys(ctx, group, config_gateway_keys) < 0)
		return -1;
	if (config_get_listen(ctx, group, "listen", cfg->allow_remote, &gw->listen) < 0)
		return -1;
	if (gw->listen.port == 0) {
		config_fail(ctx, group, NULL, "missing key 'listen', where the MTA hands mail over");
		return -1;
	}

	char *v = config_get(ctx, group, "next_hop");
	if (v == NULL) {
		config_fail(ctx, group, NULL, "missing key 'next_hop', where mail is re-injected");
		return -1;
	}
	const char *error;
	char *url = g_strdup_printf("smtp://%s", v);
	int ret = strstr(v, "://") != NULL || strchr(v, ':') == NULL ? -1
		: config_parse_upstream(url, "smtp", &a->smtp_upstream, &error);
	if (ret < 0)
		config_fail(ctx, group, "next_hop", "expected HOST:PORT, got '%s'", v);
	else {
		g_free(a->smtp_upstream.url);
		a->smtp_upstream.url = g_strdup(v);
	}
	g_free(url);
	g_free(v);
	if (ret < 0)
		return -1;
	a->smtp_upstream.tls = UPSTREAM_TLS_NONE;
	v = config_get(ctx, group, "next_hop_tls");
	if (v != NULL) {
		if (strcmp(v, "none") == 0)
			a->smtp_upstream.tls = UPSTREAM_TLS_NONE;
		else if (strcmp(v, "starttls") == 0)
			a->smtp_upstream.tls = UPSTREAM_TLS_STARTTLS;
		else if (strcmp(v, "tls") == 0)
			a->smtp_upstream.tls = UPSTREAM_TLS_IMPLICIT;
		else
			ret = -1;
		if (ret < 0)
			config_fail(ctx, group, "next_hop_tls",
				    "expected none, starttls or tls, got '%s'", v);
		g_free(v);
		if (ret < 0)
			return -1;
	}
	if (a->smtp_upstream.tls == UPSTREAM_TLS_NONE &&
	    !config_is_loopback(a->smtp_upstream.host)) {
		config_fail(ctx, group, "next_hop",
			    "%s is not a loopback address; set next_hop_tls = starttls or tls",
			    a->smtp_upstream.host);
		return -1;
	}
	a->upstream_ca_file = config_resolve_path(ctx, config_get(ctx, group, "next_hop_ca_file"));
	if (a->upstream_ca_file != NULL && !g_file_test(a->upstream_ca_file, G_FILE_TEST_IS_REGULAR)) {
		config_fail(ctx, group, "next_hop_ca_file", "no such file: %s", a->upstream_ca_file);
		return -1;
	}

	v = config_get(ctx, group, "clients");
	char **items = gateway_split_list(v != NULL ? v : "127.0.0.1 ::1");
	g_free(v);
	size_t n = g_strv_length(items);
	gw->clients = g_new0(config_network, n > 0 ? n : 1);
	for (size_t i = 0; i < n; i++) {
		if (gateway_parse_network(items[i], &gw->clients[gw->n_clients], &error) < 0) {
			config_fail(ctx, group, "clients", "%s, got '%s'", error, items[i]);
			g_strfreev(items);
			return -1;
		}
		gw->n_clients++;
	}
	g_strfreev(items);
	if (gw->n_clients == 0) {
		config_fail(ctx, group, "clients", "no client network: no MTA could hand mail over");
		return -1;
	}

	a->policy = KEYSTORE_POLICY_OPPORTUNISTIC;
	v = config_get(ctx, group, "default_policy");
	if (v != NULL) {
		ret = keystore_policy_parse(v, &a->policy);
		if (ret < 0)
			config_fail(ctx, group, "default_policy",
				    "expected require, opportunistic or never, got '%s'", v);
		g_free(v);
		if (ret < 0)
			return -1;
	}
	if (config_get_rules(ctx, group, "require", &gw->require) < 0 ||
	    config_get_rules(ctx, group, "exempt", &gw->exempt) < 0)
		return -1;
	a->address = config_get(ctx, group, "sign_key");
	if (a->address != NULL) {
		const char *at = strchr(a->address, '@');
		if (at == NULL || at == a->address || at[1] == '\0' ||
		    strchr(at + 1, '@') != NULL || strpbrk(a->address, " \t<>\r\n") != NULL) {
			config_fail(ctx, group, "sign_key",
				    "expected the e-mail address of a secret key, got '%s'", a->address);
			return -1;
		}
		a->sign = true;
	}
	a->policy_header = false;
	if (config_get_bool(ctx, group, "override_headers", &a->policy_header) < 0 ||
	    config_get_bool(ctx, group, "split", &gw->split) < 0 ||
	    config_get_bool(ctx, group, "clear_subject", &a->clear_subject) < 0)
		return -1;
	return 0;
}

/* A gateway's listener must be distinct from every other listener. */
static int config_check_gateway_duplicates(const config_ctx *ctx, const config *cfg)
{
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const config_gateway *gw = cfg->gateways[i];
		char *group = g_strdup_printf("gateway %s", gw->name);
		const char *clash = NULL;
		for (size_t j = 0; j < i && clash == NULL; j++) {
			const config_listen *l = &cfg->gateways[j]->listen;
			if (l->port == gw->listen.port && strcmp(l->host, gw->listen.host) == 0)
				clash = "another gateway";
		}
		for (size_t j = 0; j < cfg->n_accounts && clash == NULL; j++) {
			const config_account *a = cfg->accounts[j];
			const config_listen *ls[] = {
				&a->imap_listen, &a->imaps_listen, &a->smtp_listen,
				&a->smtps_listen, &a->pop3_listen, &a->pop3s_listen,
			};
			for (size_t k = 0; k < G_N_ELEMENTS(ls); k++) {
				if (ls[k]->port == gw->listen.port && ls[k]->host != NULL &&
				    strcmp(ls[k]->host, gw->listen.host) == 0)
					clash = "an account";
			}
		}
		if (clash != NULL) {
			config_fail(ctx, group, "listen", "%s:%d is already used by %s",
				    gw->listen.host, gw->listen.port, clash);
			g_free(group);
			return -1;
		}
		g_free(group);
	}
	return 0;
}

/* GKeyFile knows only '#' comments on their own line; accept ';' too, and
 * comments after a value when preceded by whitespace. Line numbers stay. */
static char *config_preprocess(const char *data, size_t len)
{
	GString *out = g_string_sized_new(len + 1);
	const char *p = data, *end = data + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;
		const char *s = p;
		while (s < le && (*s == ' ' || *s == '\t'))
			s++;
		if (s < le && *s == ';') {
			g_string_append_c(out, '#');
			g_string_append_len(out, s + 1, le - s - 1);
		} else if (s < le && *s != '#' && *s != '[') {
			const char *cut = le;
			for (const char *q = s + 1; q < le; q++) {
				if ((*q == ';' || *q == '#') && (q[-1] == ' ' || q[-1] == '\t')) {
					cut = q;
					break;
				}
			}
			g_string_append_len(out, p, cut - p);
		} else {
			g_string_append_len(out, p, le - p);
		}
		if (nl != NULL)
			g_string_append_c(out, '\n');
		p = nl != NULL ? nl + 1 : end;
	}
	return g_string_free(out, FALSE);
}

/* GKeyFile's own syntax errors carry no line number: find the line. */
static void config_fail_syntax(config_ctx *ctx, const char *gerror)
{
	int line = 1;
	for (const char *p = ctx->text; *p != '\0'; line++) {
		const char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		char *l = g_strndup(p, len);
		g_strstrip(l);
		bool bad = l[0] != '\0' && l[0] != '#' &&
			((l[0] == '[') ? l[strlen(l) - 1] != ']' : strchr(l, '=') == NULL);
		g_free(l);
		if (bad) {
			snprintf(config_error, sizeof(config_error),
				 "%s:%d: not a [section], key = value or comment line",
				 ctx->path, line);
			return;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	snprintf(config_error, sizeof(config_error), "%s: %s", ctx->path, gerror);
}

config *config_load_data(const char *data, size_t len, const char *path,
			 const char **error_r)
{
	config_ctx ctx = { .path = path != NULL ? path : "(config)" };
	char *text = config_preprocess(data, len);
	ctx.text = text;
	ctx.kf = g_key_file_new();
	config *cfg = NULL;
	GError *gerr = NULL;

	if (!g_key_file_load_from_data(ctx.kf, text, (gsize)-1, G_KEY_FILE_NONE, &gerr)) {
		config_fail_syntax(&ctx, gerr->message);
		g_error_free(gerr);
		goto fail;
	}
	cfg = g_new0(config, 1);
	cfg->path = path != NULL ? g_strdup(path) : NULL;

	gsize ngroups = 0;
	char **groups = g_key_file_get_groups(ctx.kf, &ngroups);
	for (gsize i = 0; i < ngroups; i++) {
		if (strcmp(groups[i], "sealpost") == 0 ||
		    (g_str_has_prefix(groups[i], "account ") && groups[i][8] != '\0') ||
		    (g_str_has_prefix(groups[i], "gateway ") && groups[i][8] != '\0'))
			continue;
		config_fail(&ctx, groups[i], NULL,
			    "unknown section (expected [sealpost] or [account NAME])");
		g_strfreev(groups);
		goto fail;
	}
	if (config_load_global(&ctx, cfg) < 0) {
		g_strfreev(groups);
		goto fail;
	}
	cfg->accounts = g_new0(config_account *, ngroups + 1);
	for (gsize i = 0; i < ngroups; i++) {
		if (!g_str_has_prefix(groups[i], "account "))
			continue;
		config_account *a = g_new0(config_account, 1);
		a->name = g_strstrip(g_strdup(groups[i] + 8));
		cfg->accounts[cfg->n_accounts++] = a;
		if (config_load_account(&ctx, cfg, groups[i], a) < 0) {
			g_strfreev(groups);
			goto fail;
		}
	}
	cfg->gateways = g_new0(config_gateway *, ngroups + 1);
	for (gsize i = 0; i < ngroups; i++) {
		if (!g_str_has_prefix(groups[i], "gateway "))
			continue;
		config_gateway *gw = g_new0(config_gateway, 1);
		gw->name = g_strstrip(g_strdup(groups[i] + 8));
		cfg->gateways[cfg->n_gateways++] = gw;
		if (config_load_gateway(&ctx, cfg, groups[i], gw) < 0) {
			g_strfreev(groups);
			goto fail;
		}
	}
	g_strfreev(groups);
	if (cfg->n_accounts == 0 && cfg->n_gateways == 0) {
		config_fail(&ctx, NULL, NULL, "no [account NAME] section: nothing to serve");
		goto fail;
	}
	if (config_check_duplicates(&ctx, cfg) < 0 ||
	    config_check_gateway_duplicates(&ctx, cfg) < 0)
		goto fail;
	g_key_file_free(ctx.kf);
	g_free(text);
	return cfg;

fail:
	config_free(&cfg);
	g_key_file_free(ctx.kf);
	g_free(text);
	*error_r = config_error;
	return NULL;
}

config *config_load(const char *path, const char **error_r)
{
	char *data = NULL;
	gsize len = 0;
	GError *gerr = NULL;
	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		snprintf(config_error, sizeof(config_error), "%s: %s", path, gerr->message);
		g_error_free(gerr);
		*error_r = config_error;
		return NULL;
	}
	if (memchr(data, '\0', len) != NULL || !g_utf8_validate(data, (gssize)len, NULL)) {
		snprintf(config_error, sizeof(config_error),
			 "%s: not a text file (NUL byte or invalid UTF-8)", path);
		g_free(data);
		*error_r = config_error;
		return NULL;
	}
	config *cfg = config_load_data(data, len, path, error_r);
	g_free(data);
	return cfg;
}

char *config_default_path(void)
{
	char *path = g_build_filename(g_get_user_config_dir(), "sealpost", "sealpost.conf", NULL);
	if (g_file_test(path, G_FILE_TEST_IS_REGULAR))
		return path;
	g_free(path);
	return NULL;
}
