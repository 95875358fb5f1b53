/* api_check: Host, Origin, Content-Type, bearer token and CR/LF/NUL checks of
 * the local API, kept apart from the server so they are tested byte by byte. */
#include "api_check.h"

#include <glib.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* The port exactly as decimal digits without a leading zero. */
static bool api_check_port(const char *p, size_t len, int port)
{
	char want[16];
	int n = snprintf(want, sizeof(want), "%d", port);
	return n > 0 && len == (size_t)n && memcmp(p, want, len) == 0;
}

static bool api_check_same_name(const char *h, size_t len, const char *name)
{
	return strlen(name) == len && g_ascii_strncasecmp(h, name, len) == 0;
}

/* The host part of a Host header: a loopback name, or the literal address
 * api_listen gives when it is a specific one (allow_remote). */
static bool api_check_hostname(const char *h, size_t len, const config_listen *listen)
{
	static const char *const loopback[] = { "127.0.0.1", "localhost", "[::1]" };
	for (size_t i = 0; i < G_N_ELEMENTS(loopback); i++)
		if (api_check_same_name(h, len, loopback[i]))
			return true;
	if (listen->host == NULL || strcmp(listen->host, "0.0.0.0") == 0 ||
	    strcmp(listen->host, "::") == 0)
		return false;
	char own[80];
	snprintf(own, sizeof(own), strchr(listen->host, ':') != NULL ? "[%s]" : "%s",
		 listen->host);
	return api_check_same_name(h, len, own);
}

bool api_check_host(const char *host, const config_listen *listen)
{
	if (host == NULL || listen == NULL)
		return false;
	size_t len = strlen(host);
	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	const char *colon;
	if (host[0] == '[') {
		const char *close = strchr(host, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return false;
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strchr(host, ':');
	}
	size_t host_len = colon != NULL ? (size_t)(colon - host) : len;
	if (colon != NULL) {
		if (!api_check_port(colon + 1, len - host_len - 1, listen->port))
			return false;
	} else if (listen->port != 80) {
		return false;
	}
	return api_check_hostname(host, host_len, listen);
}

bool api_check_origin(const char *origin, const config_listen *listen)
{
	static const char moz[] = "moz-extension://";
	static const char http[] = "http://";
	if (origin == NULL)
		return true;
	if (g_ascii_strncasecmp(origin, moz, sizeof(moz) - 1) == 0) {
		const char *id = origin + sizeof(moz) - 1;
		size_t n = strlen(id);
		if (n == 0 || n > 64)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!g_ascii_isalnum(id[i]) && id[i] != '-')
				return false;
		return true;
	}
	if (g_ascii_strncasecmp(origin, http, sizeof(http) - 1) == 0)
		return api_check_host(origin + sizeof(http) - 1, listen);
	return false;
}

bool api_check_content_type(const char *ct)
{
	static const char json[] = "application/json";
	if (ct == NULL || g_ascii_strncasecmp(ct, json, sizeof(json) - 1) != 0)
		return false;
	const char *p = ct + sizeof(json) - 1;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == '\0' || *p == ';';
}

bool api_check_bearer(const char *authorization, const char *token)
{
	static const char bearer[] = "Bearer";
	if (authorization == NULL || token == NULL || strlen(token) != API_CHECK_TOKEN_LEN ||
	    g_ascii_strncasecmp(authorization, bearer, sizeof(bearer) - 1) != 0)
		return false;
	const char *p = authorization + sizeof(bearer) - 1;
	if (*p != ' ')
		return false;
	while (*p == ' ')
		p++;
	/* The length is no secret; the digits are compared in constant time. */
	if (strlen(p) != API_CHECK_TOKEN_LEN)
		return false;
	return sodium_memcmp(p, token, API_CHECK_TOKEN_LEN) == 0;
}

bool api_check_text(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

bool api_check_json_text(const char *json, size_t len, unsigned max_depth,
			 const char **why_r)
{
	bool in_string = false;
	unsigned depth = 0;
	for (size_t i = 0; i < len; i++) {
		char c = json[i];
		if (c == '\0') {
			*why_r = "a NUL byte";
			return false;
		}
		if (!in_string) {
			if (c == '"') {
				in_string = true;
			} else if (c == '[' || c == '{') {
				if (++depth > max_depth) {
					*why_r = "arrays or objects nested too deeply";
					return false;
				}
			} else if ((c == ']' || c == '}') && depth > 0) {
				depth--;
			}
			continue;
		}
		if (c == '"') {
			in_string = false;
		} else if (c == '\\' && i + 1 < len) {
			if (json[i + 1] == 'u' && i + 5 < len && memcmp(json + i + 2, "0000", 4) == 0) {
				*why_r = "a NUL character (\\u0000)";
				return false;
			}
			/* The escaped character is skipped: "\\u0000" is a
			 * backslash and text, not a NUL. */
			if (json[++i] == '\0') {
				*why_r = "a NUL byte";
				return false;
			}
		}
	}
	return true;
}
