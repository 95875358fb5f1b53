/* api: the local control API served by libmicrohttpd, a thread per
 * connection. Every request passes Host, Origin, token and Content-Type
 * checks (api_check.h) before a handler sees it; handlers call the same
 * keystore functions and JSON writers as the CLI. */
#include "api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <gpgme.h>
#include <json-glib/json-glib.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api_check.h"
#include "api_static.h"
#include "api_token.h"
#include "cli_keys.h"
#include "cli_policy.h"
#include "cli_status.h"
#include "keystore_autocrypt.h"
#include "keystore_db.h"
#include "keystore_keyring.h"
#include "keystore_keys.h"
#include "log.h"
#include "metrics.h"

/* Request bodies: small JSON objects, except a key import, which carries
 * up to KEYSTORE_IMPORT_MAX bytes of key data with its JSON escaping. */
#define API_BODY_MAX (64 * 1024)
#define API_IMPORT_BODY_MAX (2 * KEYSTORE_IMPORT_MAX + 64 * 1024)
/* The JSON parser recurses: no body needs more than a few levels. */
#define API_JSON_DEPTH 16
/* Connections served at once, and seconds a silent one is kept. */
#define API_CONNECTIONS 64
#define API_IDLE_TIMEOUT 60
/* Request headers (and MHD's own bookkeeping) per connection. */
#define API_HEADER_MEMORY (32 * 1024)
#define API_DECISIONS_DEFAULT 100
#define API_DECISIONS_MAX 1000
#define API_ADDRESSES_MAX 500

struct api {
	const config *cfg;
	struct MHD_Daemon *daemon;
	char *token;			/* sodium_malloc */
	keystore_db *db;		/* a connection of its own: the server sees each change */
	keystore_keyring *kr;
	keystore_keys *keys;		/* the lookup rule outbound mail uses */
	/* One change to the keyring at a time (reads go on meanwhile). */
	pthread_mutex_t write_lock;
	atomic_ulong next_id;
};

typedef struct api_request api_request;
typedef void api_handler_fn(api *a, api_request *r);

enum {
	/* The body's top-level "armored" member is key data: line breaks
	 * belong in it, and it never reaches a line, header or the database. */
	API_ROUTE_KEYDATA = 1 << 0,
	/* Served without the token (Host and Origin are still checked): for
	 * pages that hold no data, such as the web console's own files. */
	API_ROUTE_PUBLIC = 1 << 1,
};

typedef struct {
	const char *method;
	const char *path;	/* segments; "*" stands for any one */
	api_handler_fn *fn;
	size_t body_max;	/* 0: no body */
	unsigned flags;
} api_route;

struct api_request {
	struct MHD_Connection *conn;
	char id[32];
	const char *method;
	const api_route *route;
	char **segs;		/* the path's segments */
	char *body;		/* sodium memory: it may carry a passphrase or a secret key */
	size_t body_len, body_cap;
	JsonNode *root;		/* the body, parsed */
	JsonObject *in;		/* its object; NULL without a body */
	unsigned status;
	GString *reply;		/* NULL until there is an answer */
	const char *content_type;	/* NULL: JSON */
	bool page;		/* a console file: cached with revalidation, under a CSP */
	char allow[64];		/* for 405 */
	bool queued;
};

/* ---- replies ------------------------------------------------------------------- */

static char *api_time(int64_t t)
{
	GDateTime *dt = g_date_time_new_from_unix_utc(t);
	char *s = dt != NULL ? g_date_time_format_iso8601(dt) : NULL;
	if (dt != NULL)
		g_date_time_unref(dt);
	return s != NULL ? s : g_strdup("?");
}

static void api_reply(api_request *r, unsigned status, JsonBuilder *b)
{
	JsonNode *root = json_builder_get_root(b);
	JsonGenerator *gen = json_generator_new();
	json_generator_set_root(gen, root);
	gsize len = 0;
	char *text = json_generator_to_data(gen, &len);
	if (r->reply != NULL)
		g_string_free(r->reply, TRUE);
	r->reply = g_string_new_len(text, (gssize)len);
	r->content_type = NULL;
	g_string_append_c(r->reply, '\n');
	r->status = status;
	g_free(text);
	g_object_unref(gen);
	json_node_unref(root);
	g_object_unref(b);
}

G_GNUC_PRINTF(3, 4)
static void api_fail(api_request *r, unsigned status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	char *valid = g_utf8_make_valid(msg, -1);
	/* One line, whatever gpg or the request put in it. */
	for (char *p = valid; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "error");
	json_builder_add_string_value(b, valid);
	json_builder_set_member_name(b, "status");
	json_builder_add_int_value(b, status);
	json_builder_end_object(b);
	api_reply(r, status, b);
	g_free(valid);
	g_free(msg);
}

/* What the user sent, safe for a log line. */
static char *api_printable(const char *s)
{
	char *valid = g_utf8_make_valid(s != NULL ? s : "", -1);
	if (g_utf8_strlen(valid, -1) > 100)
		*g_utf8_offset_to_pointer(valid, 100) = '\0';
	for (char *p = valid; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return valid;
}

static enum MHD_Result api_queue(api_request *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(r->reply->len, r->reply->str,
								    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", r->content_type != NULL ? r->content_type :
				"application/json; charset=utf-8");
	if (r->page) {
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
		MHD_add_response_header(resp, "Content-Security-Policy", API_STATIC_CSP);
	} else {
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	}
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	if (r->status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"sealpost\"");
	if (r->status == 405 && r->allow[0] != '\0')
		MHD_add_response_header(resp, "Allow", r->allow);
	enum MHD_Result ret = MHD_queue_response(r->conn, r->status, resp);
	MHD_destroy_response(resp);
	r->queued = true;
	return ret;
}

/* ---- the body ------------------------------------------------------------------ */

static int api_body_append(api_request *r, const char *data, size_t len)
{
	size_t max = r->route != NULL ? r->route->body_max : 0;
	if (len > max || r->body_len > max - len)
		return -1;
	if (r->body_len + len > r->body_cap) {
		size_t cap = MAX(MAX(r->body_cap * 2, r->body_len + len), (size_t)4096);
		cap = MIN(cap, max);
		char *bigger = sodium_malloc(cap);
		if (bigger == NULL)
			return -1;
		if (r->body_len > 0)
			memcpy(bigger, r->body, r->body_len);
		if (r->body != NULL)
			sodium_free(r->body);
		r->body = bigger;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	return 0;
}

/* Checks every string (and member name) under node; returns the name of
 * the first member that may not be, or NULL. */
static const char *api_walk_check(JsonNode *node, const char *name, bool keydata_here)
{
	switch (json_node_get_node_type(node)) {
	case JSON_NODE_OBJECT: {
		JsonObjectIter it;
		const char *member;
		JsonNode *child;
		json_object_iter_init(&it, json_node_get_object(node));
		while (json_object_iter_next(&it, &member, &child)) {
			if (!g_utf8_validate(member, -1, NULL) || !api_check_text(member, strlen(member)))
				return "(a member name)";
			const char *bad = api_walk_check(child, member,
							 keydata_here && strcmp(member, "armored") == 0);
			if (bad != NULL)
				return bad;
		}
		return NULL;
	}
	case JSON_NODE_ARRAY: {
		JsonArray *arr = json_node_get_array(node);
		for (guint i = 0; i < json_array_get_length(arr); i++) {
			const char *bad = api_walk_check(json_array_get_element(arr, i), name, false);
			if (bad != NULL)
				return bad;
		}
		return NULL;
	}
	case JSON_NODE_VALUE:
		if (json_node_get_value_type(node) == G_TYPE_STRING) {
			const char *s = json_node_get_string(node);
			if (!g_utf8_validate(s, -1, NULL) || (!keydata_here && !api_check_text(s, strlen(s))))
				return name;
		}
		return NULL;
	case JSON_NODE_NULL:
	default:
		return NULL;
	}
}

/* Overwrites every string of the parsed body: passphrases and key data
 * leave no copy in freed heap memory (the parser's own buffers aside). */
static void api_walk_wipe(JsonNode *node)
{
	if (JSON_NODE_HOLDS_OBJECT(node)) {
		JsonObjectIter it;
		const char *member;
		JsonNode *child;
		json_object_iter_init(&it, json_node_get_object(node));
		while (json_object_iter_next(&it, &member, &child))
			api_walk_wipe(child);
	} else if (JSON_NODE_HOLDS_ARRAY(node)) {
		JsonArray *arr = json_node_get_array(node);
		for (guint i = 0; i < json_array_get_length(arr); i++)
			api_walk_wipe(json_array_get_element(arr, i));
	} else if (JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING) {
		char *s = (char *)json_node_get_string(node);
		if (s != NULL)
			sodium_memzero(s, strlen(s));
	}
}

/* Parses the body into r->in; false with the reply set. */
static bool api_parse_body(api_request *r)
{
	if (r->body_len == 0)
		return true;
	const char *why;
	if (!api_check_json_text(r->body, r->body_len, API_JSON_DEPTH, &why)) {
		api_fail(r, 400, "the body holds %s", why);
		return false;
	}
	JsonParser *parser = json_parser_new_immutable();
	GError *err = NULL;
	if (!json_parser_load_from_data(parser, r->body, (gssize)r->body_len, &err)) {
		api_fail(r, 400, "the body is not JSON: %s", err->message);
		g_error_free(err);
		g_object_unref(parser);
		return false;
	}
	r->root = json_parser_steal_root(parser);
	g_object_unref(parser);
	if (r->root == NULL || !JSON_NODE_HOLDS_OBJECT(r->root)) {
		api_fail(r, 400, "the body must be a JSON object");
		return false;
	}
	const char *bad = api_walk_check(r->root, "(the body)",
					 (r->route->flags & API_ROUTE_KEYDATA) != 0);
	if (bad != NULL) {
		api_fail(r, 400, "%s: text with CR, LF or NUL (or not UTF-8) is refused", bad);
		return false;
	}
	r->in = json_node_get_object(r->root);
	return true;
}

/* A string member: *value_r NULL when absent (or null). false with the
 * reply set when it is required and missing, or not a string. */
static bool api_in_string(api_request *r, const char *name, bool required, const char **value_r)
{
	*value_r = NULL;
	JsonNode *n = r->in != NULL ? json_object_get_member(r->in, name) : NULL;
	if (n != NULL && !JSON_NODE_HOLDS_NULL(n)) {
		if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
			api_fail(r, 400, "%s: expected a string", name);
			return false;
		}
		*value_r = json_node_get_string(n);
	}
	if (required && *value_r == NULL) {
		api_fail(r, 400, "%s is required", name);
		return false;
	}
	return true;
}

/* A boolean member, false when absent. */
static bool api_in_bool(api_request *r, const char *name, bool *value_r)
{
	*value_r = false;
	JsonNode *n = r->in != NULL ? json_object_get_member(r->in, name) : NULL;
	if (n == NULL || JSON_NODE_HOLDS_NULL(n))
		return true;
	if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
		api_fail(r, 400, "%s: expected true or false", name);
		return false;
	}
	*value_r = json_node_get_boolean(n);
	return true;
}

static const char *api_query(api_request *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- shared checks ------------------------------------------------------------- */

/* An address as the CLI takes one: user@domain. */
static bool api_address(api_request *r, const char *what, const char *address)
{
	char norm[321];
	const char *why;
	if (keystore_policy_target_normalise(address, norm, sizeof(norm), &why) < 0 ||
	    (address[0] == '@' && (why = "no local part (expected user@domain)") != NULL)) {
		char *p = api_printable(address);
		api_fail(r, 400, "invalid %s '%s': %s", what, p, why);
		g_free(p);
		return false;
	}
	return true;
}

/* The key a path's fingerprint names: exactly that primary key. */
static bool api_key_by_fpr(api *a, api_request *r, const char *text, keystore_keyring_key *k_r)
{
	char fpr[65];
	const char *error;
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_fingerprint_normalise(text, fpr, sizeof(fpr), &error) < 0) {
		char *p = api_printable(text);
		api_fail(r, 400, "invalid fingerprint '%s': %s", p, error);
		g_free(p);
		return false;
	}
	if (keystore_keyring_list(a->kr, fpr, &keys, &n, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return false;
	}
	if (n != 1 || strcmp(keys[0].fingerprint, fpr) != 0) {
		api_fail(r, 404, "no key %s in the keyring%s", fpr,
			 n > 0 ? " (that is a subkey's fingerprint; give the primary key's)" : "");
		keystore_keyring_keys_free(&keys, n);
		return false;
	}
	*k_r = keys[0];
	g_free(keys);
	return true;
}

/* A passphrase from the body, in sodium memory. */
typedef struct {
	char *secret;
	bool wrong;	/* gpg asked again: it was wrong */
	bool asked;
} api_pp;

static void api_pp_clear(api_pp *pp)
{
	if (pp->secret != NULL)
		sodium_free(pp->secret);
	pp->secret = NULL;
}

static bool api_pp_take(api_request *r, api_pp *pp, bool *given_r)
{
	const char *text;
	*given_r = false;
	if (!api_in_string(r, "passphrase", false, &text))
		return false;
	if (text == NULL)
		return true;
	size_t len = strlen(text);
	if (len == 0) {
		api_fail(r, 400, "passphrase: empty (leave it out for a key without one)");
		return false;
	}
	if (len > KEYSTORE_PASSPHRASE_MAX) {
		api_fail(r, 400, "passphrase: longer than %d bytes", KEYSTORE_PASSPHRASE_MAX);
		return false;
	}
	pp->secret = sodium_malloc(KEYSTORE_PASSPHRASE_MAX + 1);
	if (pp->secret == NULL) {
		api_fail(r, 500, "out of secure memory");
		return false;
	}
	memcpy(pp->secret, text, len + 1);
	*given_r = true;
	return true;
}

static int api_pp_fn(void *ctx, const char *hint, bool again, char *buf, size_t size)
{
	api_pp *pp = ctx;
	pp->asked = true;
	if (again) {
		pp->wrong = true;
		return -1;
	}
	if (pp->secret == NULL)
		return -1;
	size_t len = strlen(pp->secret);
	if (len >= size)
		return -1;
	memcpy(buf, pp->secret, len + 1);
	return 0;
}

/* ---- status, accounts, decisions ---------------------------------------------- */

static void api_get_status(api *a, api_request *r)
{
	JsonBuilder *b = json_builder_new();
	const char *error;
	if (cli_status_json(a->cfg, a->db, a->kr, b, &error) < 0) {
		g_object_unref(b);
		api_fail(r, 500, "%s", error);
		return;
	}
	api_reply(r, 200, b);
}

static void api_get_accounts(api *a, api_request *r)
{
	JsonBuilder *b = json_builder_new();
	json_builder_begin_array(b);
	for (size_t i = 0; i < a->cfg->n_accounts; i++) {
		const config_account *acct = a->cfg->accounts[i];
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "name");
		json_builder_add_string_value(b, acct->name);
		json_builder_set_member_name(b, "address");
		json_builder_add_string_value(b, acct->address);
		json_builder_set_member_name(b, "policy");
		json_builder_add_string_value(b, keystore_policy_name(acct->policy));
		json_builder_set_member_name(b, "sign");
		json_builder_add_boolean_value(b, acct->sign);
		json_builder_set_member_name(b, "clear_subject");
		json_builder_add_boolean_value(b, acct->clear_subject);
		json_builder_set_member_name(b, "prefer_encrypt");
		json_builder_add_string_value(b, acct->prefer_encrypt_mutual ? "mutual"
									    : "nopreference");
		json_builder_set_member_name(b, "policy_header");
		json_builder_add_boolean_value(b, acct->policy_header);
		gpgme_key_t key = NULL;
		char why[256] = "";
		keystore_key_result kr = acct->address != NULL ?
			keystore_keys_find(a->keys, acct->address, true, &key, why, sizeof(why)) :
			KEYSTORE_KEY_NONE;
		json_builder_set_member_name(b, "own_key");
		if (kr == KEYSTORE_KEY_FOUND && key->subkeys != NULL) {
			json_builder_add_string_value(b, key->subkeys->fpr);
		} else {
			json_builder_add_null_value(b);
		}
		json_builder_set_member_name(b, "own_key_problem");
		if (kr == KEYSTORE_KEY_FOUND)
			json_builder_add_null_value(b);
		else
			json_builder_add_string_value(b, why[0] != '\0' ? why : "no usable key of your own");
		if (key != NULL)
			gpgme_key_unref(key);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	api_reply(r, 200, b);
}

static int api_decision_row(void *ctx, const keystore_decision_row *row)
{
	JsonBuilder *b = ctx;
	const struct { const char *name, *value; } fields[] = {
		{ "account", row->account }, { "message_id", row->message_id },
		{ "recipients", row->recipients }, { "decision", row->decision },
		{ "reason", row->reason },
	};
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "id");
	json_builder_add_int_value(b, row->id);
	json_builder_set_member_name(b, "time");
	char *t = api_time(row->time);
	json_builder_add_string_value(b, t);
	g_free(t);
	for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
		json_builder_set_member_name(b, fields[i].name);
		if (fields[i].value == NULL) {
			json_builder_add_null_value(b);
			continue;
		}
		char *v = g_utf8_make_valid(fields[i].value, -1);
		json_builder_add_string_value(b, v);
		g_free(v);
	}
	json_builder_end_object(b);
	return 0;
}

static void api_get_decisions(api *a, api_request *r)
{
	unsigned limit = API_DECISIONS_DEFAULT;
	const char *text = api_query(r, "limit");
	if (text != NULL) {
		guint64 v = 0;
		if (!g_ascii_string_to_unsigned(text, 10, 1, API_DECISIONS_MAX, &v, NULL)) {
			api_fail(r, 400, "limit: expected a number from 1 to %d", API_DECISIONS_MAX);
			return;
		}
		limit = (unsigned)v;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_array(b);
	const char *error;
	if (keystore_db_recent_decisions(a->db, limit, api_decision_row, b, &error) < 0) {
		g_object_unref(b);
		api_fail(r, 500, "%s", error);
		return;
	}
	json_builder_end_array(b);
	api_reply(r, 200, b);
}

/* Prometheus text format: the SMTP path's counters (metrics.h). */
static void api_get_metrics(api *a, api_request *r)
{
	GString *out = g_string_new("");
	metrics_render(out);
	if (r->reply != NULL)
		g_string_free(r->reply, TRUE);
	r->reply = out;
	r->status = 200;
	r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---- the web console's files ---------------------------------------------------- */

static void api_serve_file(api_request *r, const char *name)
{
	const api_static_file *f = api_static_find(name);
	if (f == NULL) {
		api_fail(r, 404, "no such resource");
		return;
	}
	if (r->reply != NULL)
		g_string_free(r->reply, TRUE);
	r->reply = g_string_new_len((const char *)f->data, (gssize)f->size);
	r->status = 200;
	r->content_type = f->content_type;
	r->page = true;
}

static void api_get_console_index(api *a, api_request *r)
{
	api_serve_file(r, API_STATIC_INDEX);
}

static void api_get_console_file(api *a, api_request *r)
{
	api_serve_file(r, r->segs[1]);
}

/* ---- keys ---------------------------------------------------------------------- */

static void api_get_keys(api *a, api_request *r)
{
	const char *filter = api_query(r, "address");
	if (filter != NULL && !api_address(r, "address", filter))
		return;
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	if (keystore_keyring_list(a->kr, filter, &keys, &n, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_array(b);
	for (size_t i = 0; i < n; i++)
		cli_keys_json_key(b, &keys[i]);
	json_builder_end_array(b);
	keystore_keyring_keys_free(&keys, n);
	api_reply(r, 200, b);
}

static void api_post_generate(api *a, api_request *r)
{
	const char *address;
	bool no_passphrase, force, given;
	api_pp pp = { 0 };
	if (!api_in_string(r, "address", true, &address) || !api_address(r, "address", address) ||
	    !api_in_bool(r, "no_passphrase", &no_passphrase) || !api_in_bool(r, "force", &force) ||
	    !api_pp_take(r, &pp, &given))
		goto out;
	if (given == no_passphrase) {
		api_fail(r, 400, given ? "passphrase and no_passphrase exclude each other"
				       : "give a passphrase, or no_passphrase: true for a key without one");
		goto out;
	}
	const keystore_passphrase passphrase = { .fn = api_pp_fn, .ctx = &pp };
	keystore_keyring_key k;
	const char *error;
	pthread_mutex_lock(&a->write_lock);
	int ret = keystore_keyring_generate(a->kr, address, given ? &passphrase : NULL, force, &k,
					    &error);
	pthread_mutex_unlock(&a->write_lock);
	if (ret < 0) {
		api_fail(r, 422, "%s", error);
		goto out;
	}
	JsonBuilder *b = json_builder_new();
	cli_keys_json_key(b, &k);
	keystore_keyring_key_clear(&k);
	api_reply(r, 201, b);
out:
	api_pp_clear(&pp);
}

static void api_post_import(api *a, api_request *r)
{
	const char *armored, *address;
	bool secret;
	if (!api_in_string(r, "armored", true, &armored) ||
	    !api_in_string(r, "address", false, &address) ||
	    (address != NULL && !api_address(r, "address", address)) ||
	    !api_in_bool(r, "secret", &secret))
		return;
	size_t len = strlen(armored);
	if (len > KEYSTORE_IMPORT_MAX) {
		api_fail(r, 413, "armored: larger than 1 MiB; no key is that large; nothing imported");
		return;
	}
	const keystore_import_options opt = { .secret = secret, .address = address };
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	pthread_mutex_lock(&a->write_lock);
	int ret = keystore_keyring_import(a->kr, armored, len, &opt, &keys, &n, &error);
	pthread_mutex_unlock(&a->write_lock);
	if (ret < 0) {
		api_fail(r, 422, "%s", error);
		return;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "imported");
	json_builder_begin_array(b);
	for (size_t i = 0; i < n; i++)
		cli_keys_json_key(b, &keys[i]);
	json_builder_end_array(b);
	json_builder_end_object(b);
	keystore_keyring_keys_free(&keys, n);
	api_reply(r, 200, b);
}

/* Public keys only: a secret key leaves through the CLI, on a terminal. */
static void api_get_export(api *a, api_request *r)
{
	const char *what = r->segs[3];
	char fpr[65];
	const char *error;
	if (keystore_fingerprint_normalise(what, fpr, sizeof(fpr), &error) < 0) {
		if (!api_address(r, "address or fingerprint", what))
			return;
	}
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_keyring_list(a->kr, what, &keys, &n, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return;
	}
	if (n == 0) {
		char *p = api_printable(what);
		api_fail(r, 404, "no key for %s", p);
		g_free(p);
		return;
	}
	GPtrArray *fprs = g_ptr_array_new();
	for (size_t i = 0; i < n; i++)
		g_ptr_array_add(fprs, keys[i].fingerprint);
	g_ptr_array_add(fprs, NULL);
	int fd = memfd_create("sealpost-export", MFD_CLOEXEC);
	GString *text = NULL;
	if (fd < 0) {
		api_fail(r, 500, "cannot export: %s", strerror(errno));
	} else if (keystore_keyring_export(a->kr, (const char *const *)fprs->pdata, false, true,
					   NULL, fd, &error) < 0) {
		api_fail(r, 422, "%s", error);
	} else {
		text = g_string_new("");
		char buf[8192];
		ssize_t got;
		lseek(fd, 0, SEEK_SET);
		while ((got = read(fd, buf, sizeof(buf))) > 0 ||
		       (got < 0 && errno == EINTR))
			if (got > 0)
				g_string_append_len(text, buf, got);
		if (got < 0) {
			api_fail(r, 500, "cannot export: %s", strerror(errno));
			g_string_free(text, TRUE);
			text = NULL;
		}
	}
	if (fd >= 0)
		close(fd);
	if (text != NULL) {
		JsonBuilder *b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "fingerprints");
		json_builder_begin_array(b);
		for (size_t i = 0; i < n; i++)
			json_builder_add_string_value(b, keys[i].fingerprint);
		json_builder_end_array(b);
		json_builder_set_member_name(b, "armored");
		char *valid = g_utf8_make_valid(text->str, (gssize)text->len);
		json_builder_add_string_value(b, valid);
		g_free(valid);
		json_builder_end_object(b);
		g_string_free(text, TRUE);
		api_reply(r, 200, b);
	}
	g_ptr_array_free(fprs, TRUE);
	keystore_keyring_keys_free(&keys, n);
}

static void api_delete_key(api *a, api_request *r)
{
	bool confirm;
	keystore_keyring_key k;
	if (!api_in_bool(r, "confirm", &confirm) || !api_key_by_fpr(a, r, r->segs[3], &k))
		return;
	if (k.own && !confirm) {
		api_fail(r, 409, "%s is a key of your own: deleting it (and its secret key, for "
			 "good) needs {\"confirm\": true}", k.fingerprint);
		keystore_keyring_key_clear(&k);
		return;
	}
	const char *error;
	pthread_mutex_lock(&a->write_lock);
	int ret = keystore_keyring_delete(a->kr, k.fingerprint, &error);
	pthread_mutex_unlock(&a->write_lock);
	if (ret < 0) {
		api_fail(r, 422, "%s", error);
	} else {
		JsonBuilder *b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "deleted");
		json_builder_add_string_value(b, k.fingerprint);
		json_builder_end_object(b);
		api_reply(r, 200, b);
	}
	keystore_keyring_key_clear(&k);
}

static void api_set_acceptance(api *a, api_request *r, keystore_acceptance acceptance)
{
	keystore_keyring_key k;
	if (!api_key_by_fpr(a, r, r->segs[3], &k))
		return;
	const char *error;
	pthread_mutex_lock(&a->write_lock);
	int ret = keystore_keyring_set_acceptance(a->kr, k.fingerprint, acceptance, &error);
	pthread_mutex_unlock(&a->write_lock);
	if (ret < 0) {
		api_fail(r, 422, "%s", error);
	} else {
		JsonBuilder *b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "fingerprint");
		json_builder_add_string_value(b, k.fingerprint);
		json_builder_set_member_name(b, "acceptance");
		json_builder_add_string_value(b, keystore_acceptance_name(acceptance));
		json_builder_end_object(b);
		api_reply(r, 200, b);
	}
	keystore_keyring_key_clear(&k);
}

static void api_post_verify(api *a, api_request *r)
{
	api_set_acceptance(a, r, KEYSTORE_ACCEPTANCE_VERIFIED);
}

static void api_post_reject(api *a, api_request *r)
{
	api_set_acceptance(a, r, KEYSTORE_ACCEPTANCE_REJECTED);
}

static void api_post_unlock(api *a, api_request *r)
{
	const char *address;
	bool given;
	api_pp pp = { 0 };
	if (!api_in_string(r, "address", true, &address) || !api_address(r, "address", address) ||
	    !api_pp_take(r, &pp, &given))
		goto out;
	const keystore_passphrase passphrase = { .fn = api_pp_fn, .ctx = &pp };
	keystore_keyring_key k;
	bool asked = false;
	const char *error;
	if (keystore_keyring_unlock(a->kr, address, &passphrase, &k, &asked, &error) < 0) {
		api_fail(r, 422, "%s%s", error,
			 pp.wrong ? ": wrong passphrase" :
			 pp.asked && !given ? " (give it as \"passphrase\")" : "");
		goto out;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "fingerprint");
	json_builder_add_string_value(b, k.fingerprint);
	json_builder_set_member_name(b, "address");
	json_builder_add_string_value(b, address);
	json_builder_set_member_name(b, "unlocked");
	json_builder_add_boolean_value(b, asked);
	json_builder_set_member_name(b, "has_passphrase");
	json_builder_add_boolean_value(b, asked);
	json_builder_end_object(b);
	keystore_keyring_key_clear(&k);
	api_reply(r, 200, b);
out:
	api_pp_clear(&pp);
}

/* ---- pending key changes ------------------------------------------------------- */

typedef struct {
	api *a;
	JsonBuilder *b;
} api_pending_ctx;

static int api_pending_one(void *ctx_, const keystore_pending_key *p)
{
	api_pending_ctx *ctx = ctx_;
	cli_keys_json_pending(ctx->b, ctx->a->kr, p);
	return 0;
}

static void api_get_pending(api *a, api_request *r)
{
	api_pending_ctx ctx = { .a = a, .b = json_builder_new() };
	json_builder_begin_array(ctx.b);
	const char *error;
	if (keystore_pending_list(a->db, api_pending_one, &ctx, &error) < 0) {
		g_object_unref(ctx.b);
		api_fail(r, 500, "%s", error);
		return;
	}
	json_builder_end_array(ctx.b);
	api_reply(r, 200, ctx.b);
}

static void api_pending_decide(api *a, api_request *r, bool accept)
{
	const char *text = r->segs[3];
	int64_t id = 0;
	char fpr[65] = "";
	const char *error;
	bool by_id = cli_keys_pending_id(text, &id);
	if (!by_id && keystore_fingerprint_normalise(text, fpr, sizeof(fpr), &error) < 0) {
		char *p = api_printable(text);
		api_fail(r, 400, "invalid pending change '%s': expected its id or the new key's "
			 "fingerprint", p);
		g_free(p);
		return;
	}
	keystore_pending_key p;
	bool found;
	if (keystore_pending_get(a->db, id, by_id ? NULL : fpr, &p, &found, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return;
	}
	if (!found) {
		api_fail(r, 404, "no pending key change %s", by_id ? text : fpr);
		return;
	}
	pthread_mutex_lock(&a->write_lock);
	int ret = accept ? keystore_keyring_pending_accept(a->kr, &p, NULL, &error) :
		keystore_keyring_pending_refuse(a->kr, &p, &error);
	pthread_mutex_unlock(&a->write_lock);
	if (ret < 0) {
		api_fail(r, 422, "%s", error);
	} else {
		char *addr = g_utf8_make_valid(p.addr, -1);
		JsonBuilder *b = json_builder_new();
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "id");
		json_builder_add_int_value(b, p.id);
		json_builder_set_member_name(b, "address");
		json_builder_add_string_value(b, addr);
		json_builder_set_member_name(b, accept ? "accepted" : "refused");
		json_builder_add_string_value(b, p.new_fingerprint);
		json_builder_set_member_name(b, accept ? "rejected" : "kept");
		json_builder_add_string_value(b, p.old_fingerprint);
		json_builder_end_object(b);
		g_free(addr);
		api_reply(r, 200, b);
	}
	keystore_pending_key_clear(&p);
}

static void api_post_accept(api *a, api_request *r)
{
	api_pending_decide(a, r, true);
}

static void api_post_refuse(api *a, api_request *r)
{
	api_pending_decide(a, r, false);
}

/* ---- policy rules -------------------------------------------------------------- */

static void api_get_policies(api *a, api_request *r)
{
	JsonBuilder *b = json_builder_new();
	const char *error;
	if (cli_policy_json_rules(a->db, b, &error) < 0) {
		g_object_unref(b);
		api_fail(r, 500, "%s", error);
		return;
	}
	api_reply(r, 200, b);
}

static bool api_policy_target(api_request *r, char *target)
{
	const char *why;
	if (keystore_policy_target_normalise(r->segs[3], target, 321, &why) < 0) {
		char *p = api_printable(r->segs[3]);
		api_fail(r, 400, "invalid target '%s': %s", p, why);
		g_free(p);
		return false;
	}
	return true;
}

static void api_put_policy(api *a, api_request *r)
{
	char target[321];
	const char *text, *error;
	keystore_policy policy;
	if (!api_policy_target(r, target) || !api_in_string(r, "policy", true, &text))
		return;
	if (keystore_policy_parse(text, &policy) < 0) {
		char *p = api_printable(text);
		api_fail(r, 400, "invalid policy '%s': expected require, opportunistic or never", p);
		g_free(p);
		return;
	}
	if (keystore_policy_set(a->db, target, policy, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "target");
	json_builder_add_string_value(b, target);
	json_builder_set_member_name(b, "policy");
	json_builder_add_string_value(b, keystore_policy_name(policy));
	json_builder_end_object(b);
	api_reply(r, 200, b);
}

static void api_delete_policy(api *a, api_request *r)
{
	char target[321];
	const char *error;
	bool existed = false;
	if (!api_policy_target(r, target))
		return;
	if (keystore_policy_unset(a->db, target, &existed, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return;
	}
	if (!existed) {
		api_fail(r, 404, "no rule for %s", target);
		return;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "target");
	json_builder_add_string_value(b, target);
	json_builder_set_member_name(b, "removed");
	json_builder_add_boolean_value(b, true);
	json_builder_end_object(b);
	api_reply(r, 200, b);
}

/* ---- Autocrypt peers ----------------------------------------------------------- */

/* keystore_autocrypt_usable_fn: the keyring holds fingerprint as a usable
 * key for address. */
static bool api_peer_key_usable(void *ctx, const char *address, const char *fingerprint)
{
	api *a = ctx;
	if (fingerprint == NULL || fingerprint[0] == '\0')
		return false;
	keystore_keyring_key *keys;
	size_t n;
	const char *error;
	if (keystore_keyring_list(a->kr, fingerprint, &keys, &n, &error) < 0)
		return false;
	bool usable = false;
	for (size_t i = 0; i < n && !usable; i++) {
		if (keys[i].unusable != NULL)
			continue;
		for (size_t j = 0; keys[i].addresses[j] != NULL && !usable; j++)
			usable = keystore_address_equal(keys[i].addresses[j], address);
	}
	keystore_keyring_keys_free(&keys, n);
	return usable;
}

static const config_account *api_account(api *a, api_request *r, const char *name)
{
	if (name == NULL)
		return a->cfg->n_accounts > 0 ? a->cfg->accounts[0] : NULL;
	for (size_t i = 0; i < a->cfg->n_accounts; i++)
		if (strcmp(a->cfg->accounts[i]->name, name) == 0)
			return a->cfg->accounts[i];
	char *p = api_printable(name);
	api_fail(r, 404, "no account %s", p);
	g_free(p);
	return NULL;
}

static void api_json_time_or_null(JsonBuilder *b, const char *name, int64_t t)
{
	json_builder_set_member_name(b, name);
	if (t <= 0) {
		json_builder_add_null_value(b);
		return;
	}
	char *s = api_time(t);
	json_builder_add_string_value(b, s);
	g_free(s);
}

static void api_json_fpr_or_null(JsonBuilder *b, const char *name, const char *fpr)
{
	json_builder_set_member_name(b, name);
	if (fpr[0] != '\0')
		json_builder_add_string_value(b, fpr);
	else
		json_builder_add_null_value(b);
}

static void api_get_peers(api *a, api_request *r)
{
	const char *address = api_query(r, "address");
	const char *name = api_query(r, "account");
	const char *error;
	unsigned peers = 0, with_key = 0;
	if (keystore_autocrypt_peer_count(a->db, &peers, &with_key, &error) < 0) {
		api_fail(r, 500, "%s", error);
		return;
	}
	char *canonical = NULL;
	if (address != NULL && (canonical = keystore_autocrypt_canonical(address)) == NULL) {
		char *p = api_printable(address);
		api_fail(r, 400, "invalid address '%s'", p);
		g_free(p);
		return;
	}
	const config_account *only = NULL;
	if (name != NULL && (only = api_account(a, r, name)) == NULL) {
		g_free(canonical);
		return;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "count");
	json_builder_add_int_value(b, peers);
	json_builder_set_member_name(b, "with_key");
	json_builder_add_int_value(b, with_key);
	json_builder_set_member_name(b, "peers");
	json_builder_begin_array(b);
	for (size_t i = 0; canonical != NULL && i < a->cfg->n_accounts; i++) {
		const config_account *acct = a->cfg->accounts[i];
		if ((only != NULL && acct != only) || acct->address == NULL)
			continue;
		keystore_autocrypt_peer peer;
		bool found = false;
		if (keystore_autocrypt_peer_get(a->db, acct->address, canonical, &peer, &found,
						&error) < 0) {
			json_builder_end_array(b);
			json_builder_end_object(b);
			g_object_unref(b);
			g_free(canonical);
			api_fail(r, 500, "%s", error);
			return;
		}
		if (!found)
			continue;
		keystore_autocrypt_recommendation rec = KEYSTORE_AUTOCRYPT_DISABLE;
		const char *const rcpts[] = { canonical };
		if (keystore_autocrypt_recommend(a->db, acct->address, rcpts, 1,
						 acct->prefer_encrypt_mutual, false,
						 api_peer_key_usable, a, &rec, NULL, 0, &error) < 0)
			rec = KEYSTORE_AUTOCRYPT_DISABLE;
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "account");
		json_builder_add_string_value(b, acct->name);
		json_builder_set_member_name(b, "address");
		json_builder_add_string_value(b, canonical);
		api_json_time_or_null(b, "last_seen", peer.last_seen);
		api_json_time_or_null(b, "autocrypt_timestamp", peer.autocrypt_timestamp);
		api_json_fpr_or_null(b, "public_key", peer.public_key != NULL ?
				     (peer.public_key_fpr[0] != '\0' ? peer.public_key_fpr : "?") : "");
		json_builder_set_member_name(b, "prefer_encrypt");
		json_builder_add_string_value(b, peer.prefer_mutual ? "mutual" : "nopreference");
		api_json_time_or_null(b, "gossip_timestamp", peer.gossip_timestamp);
		api_json_fpr_or_null(b, "gossip_key", peer.gossip_key != NULL ?
				     (peer.gossip_key_fpr[0] != '\0' ? peer.gossip_key_fpr : "?") : "");
		json_builder_set_member_name(b, "recommendation");
		json_builder_add_string_value(b, keystore_autocrypt_recommendation_name(rec));
		json_builder_end_object(b);
		keystore_autocrypt_peer_clear(&peer);
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
	g_free(canonical);
	api_reply(r, 200, b);
}

/* ---- recipients (the compose window) ------------------------------------------- */

/* For one recipient of a message from acct: whether sealpost has a usable
 * key, the policy that applies (the address's rule, its domain's, else the
 * account's default) and what that means for it alone. */
static bool api_recipient(api *a, api_request *r, JsonBuilder *b, const config_account *acct,
			  const char *address, bool *has_key_r, bool *refused_r)
{
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "address");
	json_builder_add_string_value(b, address);
	char norm[321];
	const char *why;
	if (keystore_policy_target_normalise(address, norm, sizeof(norm), &why) < 0 ||
	    (address[0] == '@' && (why = "no local part") != NULL)) {
		json_builder_set_member_name(b, "valid");
		json_builder_add_boolean_value(b, false);
		json_builder_set_member_name(b, "error");
		json_builder_add_string_value(b, why);
		json_builder_end_object(b);
		*has_key_r = false;
		return true;
	}
	keystore_policy policy = KEYSTORE_POLICY_NONE;
	char matched[321] = "";
	const char *error;
	if (keystore_policy_lookup(a->db, address, &policy, matched, sizeof(matched), &error) < 0) {
		api_fail(r, 500, "%s", error);
		return false;
	}
	if (policy == KEYSTORE_POLICY_NONE)
		policy = acct->policy;
	gpgme_key_t key = NULL;
	char key_why[256] = "";
	keystore_key_result found = keystore_keys_find(a->keys, address, false, &key, key_why,
						       sizeof(key_why));
	json_builder_set_member_name(b, "valid");
	json_builder_add_boolean_value(b, true);
	json_builder_set_member_name(b, "key");
	if (found == KEYSTORE_KEY_FOUND && key->subkeys != NULL)
		json_builder_add_string_value(b, key->subkeys->fpr);
	else
		json_builder_add_null_value(b);
	json_builder_set_member_name(b, "key_usable");
	json_builder_add_boolean_value(b, found == KEYSTORE_KEY_FOUND);
	json_builder_set_member_name(b, "key_problem");
	if (found == KEYSTORE_KEY_FOUND) {
		json_builder_add_null_value(b);
	} else {
		char *v = g_utf8_make_valid(key_why[0] != '\0' ? key_why :
					    found == KEYSTORE_KEY_TEMPFAIL ? "gpg could not be asked" :
					    "no usable key", -1);
		json_builder_add_string_value(b, v);
		g_free(v);
	}
	json_builder_set_member_name(b, "policy");
	json_builder_add_string_value(b, keystore_policy_name(policy));
	json_builder_set_member_name(b, "rule");
	if (matched[0] != '\0')
		json_builder_add_string_value(b, matched);
	else
		json_builder_add_null_value(b);
	/* Autocrypt's say over a key it brought (keystore_autocrypt_opportunistic):
	 * reported whenever it has one, deciding under opportunistic only. */
	bool ac_allows = true;
	keystore_autocrypt_recommendation ac_rec = KEYSTORE_AUTOCRYPT_AVAILABLE;
	bool ac_say = false;
	if (found == KEYSTORE_KEY_FOUND && key->subkeys != NULL) {
		keystore_key_state st;
		bool known = false;
		if (keystore_key_state_get(a->db, key->subkeys->fpr, &st, &known, &error) == 0 &&
		    known && st.source == KEYSTORE_SOURCE_AUTOCRYPT &&
		    st.acceptance != KEYSTORE_ACCEPTANCE_VERIFIED) {
			ac_say = keystore_autocrypt_opportunistic(a->db, acct->address, address,
								  key->subkeys->fpr,
								  acct->prefer_encrypt_mutual,
								  &ac_allows, &ac_rec, &error) == 0;
			if (!ac_say)
				ac_allows = true;
		}
	}
	json_builder_set_member_name(b, "autocrypt");
	if (ac_say)
		json_builder_add_string_value(b, keystore_autocrypt_recommendation_name(ac_rec));
	else
		json_builder_add_null_value(b);
	const char *outcome;
	if (found == KEYSTORE_KEY_TEMPFAIL && policy != KEYSTORE_POLICY_NEVER)
		outcome = "tempfail";
	else if (policy == KEYSTORE_POLICY_NEVER)
		outcome = "plain";
	else if (found == KEYSTORE_KEY_FOUND && policy == KEYSTORE_POLICY_OPPORTUNISTIC &&
		 !ac_allows)
		outcome = "plain";
	else if (found == KEYSTORE_KEY_FOUND)
		outcome = "encrypt";
	else if (policy == KEYSTORE_POLICY_REQUIRE)
		outcome = "refuse";
	else
		outcome = "plain";
	json_builder_set_member_name(b, "outcome");
	json_builder_add_string_value(b, outcome);
	json_builder_end_object(b);
	if (key != NULL)
		gpgme_key_unref(key);
	*has_key_r = found == KEYSTORE_KEY_FOUND;
	*refused_r = *refused_r || strcmp(outcome, "refuse") == 0;
	return true;
}

static void api_recipients(api *a, api_request *r, GPtrArray *addresses, const char *account)
{
	const config_account *acct = api_account(a, r, account);
	if (acct == NULL) {
		if (r->reply == NULL)
			api_fail(r, 404, "no account");
		return;
	}
	if (addresses->len == 0) {
		api_fail(r, 400, "no address given");
		return;
	}
	if (addresses->len > API_ADDRESSES_MAX) {
		api_fail(r, 400, "more than %d addresses", API_ADDRESSES_MAX);
		return;
	}
	JsonBuilder *b = json_builder_new();
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "account");
	json_builder_add_string_value(b, acct->name);
	json_builder_set_member_name(b, "recipients");
	json_builder_begin_array(b);
	bool all_keys = true, refused = false;
	for (guint i = 0; i < addresses->len; i++) {
		bool has_key = false;
		if (!api_recipient(a, r, b, acct, g_ptr_array_index(addresses, i), &has_key,
				   &refused)) {
			g_object_unref(b);
			return;
		}
		all_keys = all_keys && has_key;
	}
	json_builder_end_array(b);
	json_builder_set_member_name(b, "all_have_keys");
	json_builder_add_boolean_value(b, all_keys);
	json_builder_set_member_name(b, "refused");
	json_builder_add_boolean_value(b, refused);
	json_builder_end_object(b);
	api_reply(r, 200, b);
}

static enum MHD_Result api_collect_address(void *cls, enum MHD_ValueKind kind, const char *key,
					   const char *value)
{
	if (strcmp(key, "address") == 0 && value != NULL)
		g_ptr_array_add(cls, (char *)value);
	return MHD_YES;
}

static void api_get_recipients(api *a, api_request *r)
{
	GPtrArray *addresses = g_ptr_array_new();
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, api_collect_address, addresses);
	api_recipients(a, r, addresses, api_query(r, "account"));
	g_ptr_array_free(addresses, TRUE);
}

static void api_post_check_recipients(api *a, api_request *r)
{
	const char *account;
	if (!api_in_string(r, "account", false, &account))
		return;
	JsonNode *n = r->in != NULL ? json_object_get_member(r->in, "addresses") : NULL;
	if (n == NULL || !JSON_NODE_HOLDS_ARRAY(n)) {
		api_fail(r, 400, "addresses: expected an array of strings");
		return;
	}
	JsonArray *arr = json_node_get_array(n);
	GPtrArray *addresses = g_ptr_array_new();
	for (guint i = 0; i < json_array_get_length(arr); i++) {
		JsonNode *e = json_array_get_element(arr, i);
		if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
			api_fail(r, 400, "addresses: expected an array of strings");
			g_ptr_array_free(addresses, TRUE);
			return;
		}
		g_ptr_array_add(addresses, (char *)json_node_get_string(e));
	}
	api_recipients(a, r, addresses, account);
	g_ptr_array_free(addresses, TRUE);
}

/* ---- routing ------------------------------------------------------------------- */

static const api_route api_routes[] = {
	{ "GET", "api/v1/status", api_get_status, 0, 0 },
	{ "GET", "api/v1/accounts", api_get_accounts, 0, 0 },
	{ "GET", "api/v1/keys", api_get_keys, 0, 0 },
	{ "POST", "api/v1/keys/generate", api_post_generate, API_BODY_MAX, 0 },
	{ "POST", "api/v1/keys/import", api_post_import, API_IMPORT_BODY_MAX, API_ROUTE_KEYDATA },
	{ "POST", "api/v1/keys/unlock", api_post_unlock, API_BODY_MAX, 0 },
	{ "GET", "api/v1/keys/*/export", api_get_export, 0, 0 },
	{ "POST", "api/v1/keys/*/verify", api_post_verify, API_BODY_MAX, 0 },
	{ "POST", "api/v1/keys/*/reject", api_post_reject, API_BODY_MAX, 0 },
	{ "DELETE", "api/v1/keys/*", api_delete_key, API_BODY_MAX, 0 },
	{ "GET", "api/v1/pending", api_get_pending, 0, 0 },
	{ "POST", "api/v1/pending/*/accept", api_post_accept, API_BODY_MAX, 0 },
	{ "POST", "api/v1/pending/*/refuse", api_post_refuse, API_BODY_MAX, 0 },
	{ "GET", "api/v1/policies", api_get_policies, 0, 0 },
	{ "PUT", "api/v1/policies/*", api_put_policy, API_BODY_MAX, 0 },
	{ "DELETE", "api/v1/policies/*", api_delete_policy, API_BODY_MAX, 0 },
	{ "GET", "api/v1/peers", api_get_peers, 0, 0 },
	{ "GET", "api/v1/decisions", api_get_decisions, 0, 0 },
	{ "GET", "api/v1/recipients", api_get_recipients, 0, 0 },
	{ "POST", "api/v1/check-recipients", api_post_check_recipients, API_BODY_MAX, 0 },
	{ "GET", "metrics", api_get_metrics, 0, 0 },
	/* The web console: "" is "/". MHD answers HEAD without the body. */
	{ "GET", "", api_get_console_index, 0, API_ROUTE_PUBLIC },
	{ "HEAD", "", api_get_console_index, 0, API_ROUTE_PUBLIC },
	{ "GET", "console/*", api_get_console_file, 0, API_ROUTE_PUBLIC },
	{ "HEAD", "console/*", api_get_console_file, 0, API_ROUTE_PUBLIC },
};

static bool api_route_matches(const char *pattern, char **segs)
{
	char **pat = g_strsplit(pattern, "/", -1);
	bool match = g_strv_length(pat) == g_strv_length(segs);
	for (guint i = 0; match && pat[i] != NULL; i++)
		match = segs[i][0] != '\0' && (strcmp(pat[i], "*") == 0 || strcmp(pat[i], segs[i]) == 0);
	g_strfreev(pat);
	return match;
}

/* The route for method and segs; NULL with *allow (the methods the path
 * takes, "" when none) otherwise. Literal routes come first in the table. */
static const api_route *api_route_find(const char *method, char **segs, char *allow,
				       size_t allow_size)
{
	allow[0] = '\0';
	for (size_t i = 0; i < G_N_ELEMENTS(api_routes); i++) {
		if (!api_route_matches(api_routes[i].path, segs))
			continue;
		if (strcmp(api_routes[i].method, method) == 0)
			return &api_routes[i];
		if (strstr(allow, api_routes[i].method) == NULL) {
			g_strlcat(allow, allow[0] != '\0' ? ", " : "", allow_size);
			g_strlcat(allow, api_routes[i].method, allow_size);
		}
	}
	return NULL;
}

/* Path segments and query values may not hold control characters (the
 * URL decoder turns %00 into one: api_unescape). */
static bool api_url_text_ok(const char *s)
{
	if (s == NULL)
		return true;
	if (!g_utf8_validate(s, -1, NULL))
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static enum MHD_Result api_check_query_value(void *cls, enum MHD_ValueKind kind, const char *key,
					     const char *value)
{
	bool *ok = cls;
	if (!api_url_text_ok(key) || !api_url_text_ok(value)) {
		*ok = false;
		return MHD_NO;
	}
	return MHD_YES;
}

/* Everything that can be decided from the request line and headers. On
 * refusal r->reply is set. */
static void api_admit(api *a, api_request *r, const char *url, const char *method)
{
	const config_listen *l = &a->cfg->api_listen;
	struct MHD_Connection *c = r->conn;
	if (!api_check_host(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"), l)) {
		api_fail(r, 403, "Host not accepted: this API answers to 127.0.0.1, localhost or "
			 "[::1] with port %d only", l->port);
		return;
	}
	if (!api_check_origin(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"), l)) {
		api_fail(r, 403, "Origin not accepted: only the sealpost add-on and the console "
			 "served here may call this API");
		return;
	}
	if (url[0] != '/') {
		api_fail(r, 404, "no such resource");
		return;
	}
	r->segs = g_strsplit(url + 1, "/", 16);
	bool ok = true;
	for (guint i = 0; ok && r->segs[i] != NULL; i++)
		ok = api_url_text_ok(r->segs[i]);
	if (ok)
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, api_check_query_value, &ok);
	r->route = api_route_find(method, r->segs, r->allow, sizeof(r->allow));
	if ((r->route == NULL || (r->route->flags & API_ROUTE_PUBLIC) == 0) &&
	    !api_check_bearer(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
			      a->token)) {
		api_fail(r, 401, "missing or wrong token: send Authorization: Bearer TOKEN "
			 "(sealpost pair prints it)");
		return;
	}
	if (!ok) {
		api_fail(r, 400, "the path or query holds control characters (CR, LF, NUL, ...) "
			 "or is not UTF-8");
		return;
	}
	if (r->route == NULL) {
		if (r->allow[0] != '\0')
			api_fail(r, 405, "%s is not allowed here (allowed: %s)", method, r->allow);
		else
			api_fail(r, 404, "no such resource");
		return;
	}
	bool write = strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
	if (write && !api_check_content_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND,
									  "Content-Type"))) {
		api_fail(r, 415, "%s needs Content-Type: application/json", method);
		return;
	}
	const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	guint64 n = 0;
	if (length != NULL && (!g_ascii_string_to_unsigned(length, 10, 0, G_MAXUINT64, &n, NULL) ||
			       n > r->route->body_max)) {
		api_fail(r, 413, "the body is larger than %zu bytes", r->route->body_max);
		return;
	}
}

static void api_log_request(const api_request *r, const char *url)
{
	char *p = api_printable(url);
	if (r->status >= 400)
		log_info(r->id, "answering an API request", "%s %s: %u", r->method, p, r->status);
	else
		log_debug(r->id, "answering an API request", "%s %s: %u", r->method, p, r->status);
	g_free(p);
}

static enum MHD_Result api_handle(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	api *a = cls;
	api_request *r = *con_cls;
	if (r == NULL) {
		r = g_new0(api_request, 1);
		r->conn = conn;
		r->method = method;
		snprintf(r->id, sizeof(r->id), "api-%lu", atomic_fetch_add(&a->next_id, 1) + 1);
		*con_cls = r;
		api_admit(a, r, url, method);
		if (r->reply == NULL)
			return MHD_YES;
		api_log_request(r, url);
		return api_queue(r);
	}
	if (r->queued) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (api_body_append(r, upload_data, *upload_data_size) < 0) {
			log_info(r->id, "reading an API request", "body too large; closing");
			return MHD_NO;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (api_parse_body(r))
		r->route->fn(a, r);
	if (r->root != NULL)
		api_walk_wipe(r->root);
	if (r->reply == NULL)
		api_fail(r, 500, "no answer");
	api_log_request(r, url);
	return api_queue(r);
}

static void api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	api_request *r = *con_cls;
	if (r == NULL)
		return;
	if (r->body != NULL)
		sodium_free(r->body);
	if (r->root != NULL)
		json_node_unref(r->root);
	g_strfreev(r->segs);
	if (r->reply != NULL)
		g_string_free(r->reply, TRUE);
	g_free(r);
	*con_cls = NULL;
}

/* %XX decoding for the path and query, except that %00 becomes DEL: a
 * NUL would silently cut the text, DEL is refused as a control. */
static size_t api_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *w = s;
	for (const char *p = s; *p != '\0'; p++) {
		if (p[0] == '%' && g_ascii_isxdigit(p[1]) && g_ascii_isxdigit(p[2])) {
			int v = g_ascii_xdigit_value(p[1]) * 16 + g_ascii_xdigit_value(p[2]);
			*w++ = v == 0 ? 0x7f : (char)v;
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

/* Only loopback peers, unless allow_remote. */
static enum MHD_Result api_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	api *a = cls;
	if (a->cfg->allow_remote)
		return MHD_YES;
	if (addr->sa_family == AF_INET && addrlen >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127 ? MHD_YES : MHD_NO;
	}
	if (addr->sa_family == AF_INET6 && addrlen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return MHD_YES;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			return sin6->sin6_addr.s6_addr[12] == 127 ? MHD_YES : MHD_NO;
	}
	return MHD_NO;
}

G_GNUC_PRINTF(2, 0)
static void api_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	g_strchomp(line);
	log_info(NULL, "serving the API", "%s", line);
}

/* ---- the server ---------------------------------------------------------------- */

static _Thread_local char api_error[512];

char *api_url(const config_listen *l)
{
	const char *host = l->host;
	if (strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	return g_strdup_printf(strchr(host, ':') != NULL ? "http://[%s]:%d" : "http://%s:%d", host,
			       l->port);
}

api *api_new(const config *cfg, const char **error_r)
{
	api *a = g_new0(api, 1);
	a->cfg = cfg;
	pthread_mutex_init(&a->write_lock, NULL);
	a->token = sodium_malloc(API_CHECK_TOKEN_LEN + 1);
	if (a->token == NULL) {
		*error_r = "out of secure memory";
		goto fail;
	}
	if (api_token_load(cfg->state_dir, true, a->token, error_r) < 0)
		goto fail;
	a->db = keystore_db_open(cfg->state_dir, error_r);
	if (a->db == NULL)
		goto fail;
	a->kr = keystore_keyring_open(cfg->gnupg_home, a->db, error_r);
	if (a->kr == NULL)
		goto fail;
	a->keys = keystore_keys_new(cfg->gnupg_home, error_r);
	if (a->keys == NULL)
		goto fail;
	keystore_keys_use_db(a->keys, a->db);
	/* The recipients check looks a key up as sending would (and warms the
	 * cache the send then uses), so the compose window is told the truth. */
	if (keystore_keys_use_discovery(a->keys, &cfg->discovery, error_r) < 0)
		goto fail;

	const config_listen *l = &cfg->api_listen;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD |
			 MHD_USE_ERROR_LOG;
	if (inet_pton(AF_INET, l->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)l->port);
	} else if (inet_pton(AF_INET6, l->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)l->port);
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(api_error, sizeof(api_error), "api_listen %s: not an IP address", l->host);
		*error_r = api_error;
		goto fail;
	}
	errno = 0;
	a->daemon = MHD_start_daemon(flags, (uint16_t)l->port, api_accept, a, api_handle, a,
				     MHD_OPTION_EXTERNAL_LOGGER, api_mhd_log, a,
				     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				     MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_CONNECTIONS,
				     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_IDLE_TIMEOUT,
				     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_HEADER_MEMORY,
				     MHD_OPTION_NOTIFY_COMPLETED, api_completed, a,
				     MHD_OPTION_UNESCAPE_CALLBACK, api_unescape, a,
				     /* No spaces in the URL, a Host header required. */
				     MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
				     MHD_OPTION_END);
	if (a->daemon == NULL) {
		int err = errno;
		char *url = api_url(l);
		snprintf(api_error, sizeof(api_error), "cannot serve the API on %s%s%s", url,
			 err != 0 ? ": " : "", err != 0 ? strerror(err) : "");
		g_free(url);
		*error_r = api_error;
		goto fail;
	}
	char *url = api_url(l);
	log_info(NULL, "starting the API", "%s/api/v1/ (sealpost pair prints its token)", url);
	g_free(url);
	return a;
fail:
	api_free(&a);
	return NULL;
}

void api_free(api **ap)
{
	api *a = *ap;
	if (a == NULL)
		return;
	if (a->daemon != NULL)
		MHD_stop_daemon(a->daemon);
	keystore_keys_free(&a->keys);
	keystore_keyring_close(&a->kr);
	keystore_db_close(&a->db);
	if (a->token != NULL)
		sodium_free(a->token);
	pthread_mutex_destroy(&a->write_lock);
	g_free(a);
	*ap = NULL;
}
