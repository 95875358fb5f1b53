/* cli_status: `sealpost status [--json]` — what the configuration sets up,
 * whether its listeners answer, and what the keyring and STATE_DIR/sealpost.db
 * say: usable keys, Autocrypt peers, pending key changes, recent refusals. */
#include "cli_status.h"

#include <errno.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli_common.h"
#include "config.h"
#include "keystore.h"
#include "keystore_db.h"
#include "keystore_keyring.h"

/* How long a listener has to accept a connection. */
#define CLI_STATUS_CONNECT_MS 300
/* Decisions looked through for refusals, and refusals shown. */
#define CLI_STATUS_DECISIONS 500
#define CLI_STATUS_REFUSALS 10

/* Whether something accepts TCP connections on host:port (loopback, as the
 * configuration requires, so the answer comes at once). */
static bool cli_status_listening(const char *host, int port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST };
	struct addrinfo *res = NULL;
	char service[16];
	snprintf(service, sizeof(service), "%d", port);
	if (getaddrinfo(host, service, &hints, &res) != 0 || res == NULL)
		return false;
	bool up = false;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		int r = connect(fd, res->ai_addr, res->ai_addrlen);
		if (r == 0) {
			up = true;
		} else if (errno == EINPROGRESS) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int err = 0;
			socklen_t len = sizeof(err);
			if (poll(&pfd, 1, CLI_STATUS_CONNECT_MS) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
				up = true;
		}
		close(fd);
	}
	freeaddrinfo(res);
	return up;
}

typedef struct {
	const config_listen *l;
	const char *protocol;	/* "imap", "smtp", "pop3" */
	bool tls;		/* implicit TLS; else STARTTLS */
} cli_status_listener;

static size_t cli_status_listeners(const config_account *a, cli_status_listener out[6])
{
	const cli_status_listener all[] = {
		{ &a->imap_listen, "imap", false }, { &a->imaps_listen, "imap", true },
		{ &a->smtp_listen, "smtp", false }, { &a->smtps_listen, "smtp", true },
		{ &a->pop3_listen, "pop3", false }, { &a->pop3s_listen, "pop3", true },
	};
	size_t n = 0;
	for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
		if (all[i].l->port != 0)
			out[n++] = all[i];
	return n;
}

typedef struct {
	unsigned own, own_usable, peer, peer_usable, rejected;
} cli_status_keys;

typedef struct {
	int64_t time;
	char *account, *message_id, *recipients, *reason;
} cli_status_refusal;

static void cli_status_refusal_free(gpointer p)
{
	cli_status_refusal *r = p;
	g_free(r->account);
	g_free(r->message_id);
	g_free(r->recipients);
	g_free(r->reason);
	g_free(r);
}

static int cli_status_refusal_row(void *ctx, const keystore_decision_row *row)
{
	GPtrArray *rows = ctx;
	if (strcmp(row->decision, "refused") != 0)
		return 0;
	cli_status_refusal *r = g_new0(cli_status_refusal, 1);
	r->time = row->time;
	r->account = g_utf8_make_valid(row->account, -1);
	r->message_id = row->message_id != NULL ? g_utf8_make_valid(row->message_id, -1) : NULL;
	r->recipients = g_utf8_make_valid(row->recipients, -1);
	r->reason = row->reason != NULL ? g_utf8_make_valid(row->reason, -1) : NULL;
	g_ptr_array_add(rows, r);
	return rows->len >= CLI_STATUS_REFUSALS ? 1 : 0;
}

static int cli_status_count_pending(void *ctx, const keystore_pending_key *p)
{
	(void)p;
	(*(unsigned *)ctx)++;
	return 0;
}

/* "2026-12-02 10:00:00" UTC (g_free). */
static char *cli_status_time(int64_t t)
{
	GDateTime *dt = g_date_time_new_from_unix_utc(t);
	char *s = dt != NULL ? g_date_time_format(dt, "%Y-%m-%d %H:%M:%S") : NULL;
	if (dt != NULL)
		g_date_time_unref(dt);
	return s != NULL ? s : g_strdup("?");
}

typedef struct {
	const config *cfg;
	cli_status_keys keys;
	unsigned peers, peers_with_key, pending;
	GPtrArray *refusals;
} cli_status;

static void cli_status_json_listen(JsonBuilder *b, const char *protocol, bool tls,
				   const config_listen *l)
{
	json_builder_begin_object(b);
	if (protocol != NULL) {
		json_builder_set_member_name(b, "protocol");
		json_builder_add_string_value(b, protocol);
		json_builder_set_member_name(b, "tls");
		json_builder_add_string_value(b, tls ? "implicit" : "starttls");
	}
	json_builder_set_member_name(b, "host");
	json_builder_add_string_value(b, l->host);
	json_builder_set_member_name(b, "port");
	json_builder_add_int_value(b, l->port);
	json_builder_set_member_name(b, "listening");
	json_builder_add_boolean_value(b, cli_status_listening(l->host, l->port));
	json_builder_end_object(b);
}

static void cli_status_json_count(JsonBuilder *b, const char *name, unsigned n)
{
	json_builder_set_member_name(b, name);
	json_builder_add_int_value(b, n);
}

/* "wkd, keyserver" or "off". g_free. */
static char *cli_status_discovery_text(const keystore_discover_config *d)
{
	if (d->methods == 0)
		return g_strdup("off");
	GString *s = g_string_new(NULL);
	if (d->methods & KEYSTORE_DISCOVER_WKD)
		g_string_append(s, "wkd");
	if (d->methods & KEYSTORE_DISCOVER_KEYSERVER)
		g_string_append_printf(s, "%skeyserver", s->len > 0 ? ", " : "");
	return g_string_free(s, FALSE);
}

static void cli_status_json_add(JsonBuilder *b, const cli_status *st)
{
	const config *cfg = st->cfg;
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "config");
	if (cfg->path != NULL)
		json_builder_add_string_value(b, cfg->path);
	else
		json_builder_add_null_value(b);
	json_builder_set_member_name(b, "state_dir");
	json_builder_add_string_value(b, cfg->state_dir);
	json_builder_set_member_name(b, "gnupg_home");
	json_builder_add_string_value(b, cfg->gnupg_home);
	json_builder_set_member_name(b, "accounts");
	json_builder_begin_array(b);
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const config_account *a = cfg->accounts[i];
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "name");
		json_builder_add_string_value(b, a->name);
		json_builder_set_member_name(b, "address");
		json_builder_add_string_value(b, a->address);
		json_builder_set_member_name(b, "policy");
		json_builder_add_string_value(b, keystore_policy_name(a->policy));
		json_builder_set_member_name(b, "listeners");
		json_builder_begin_array(b);
		cli_status_listener ls[6];
		size_t n = cli_status_listeners(a, ls);
		for (size_t j = 0; j < n; j++)
			cli_status_json_listen(b, ls[j].protocol, ls[j].tls, ls[j].l);
		json_builder_end_array(b);
		json_builder_set_member_name(b, "upstreams");
		json_builder_begin_object(b);
		const struct { const char *name; const config_upstream *u; } ups[] = {
			{ "imap", &a->imap_upstream }, { "smtp", &a->smtp_upstream },
			{ "pop3", &a->pop3_upstream },
		};
		for (size_t j = 0; j < G_N_ELEMENTS(ups); j++) {
			if (ups[j].u->host == NULL)
				continue;
			json_builder_set_member_name(b, ups[j].name);
			json_builder_add_string_value(b, ups[j].u->url);
		}
		json_builder_end_object(b);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	json_builder_set_member_name(b, "api");
	if (cfg->api_listen.port != 0 && !cfg->api_listen_default)
		cli_status_json_listen(b, NULL, true, &cfg->api_listen);
	else
		json_builder_add_null_value(b);
	json_builder_set_member_name(b, "key_discovery");
	json_builder_begin_object(b);
	json_builder_set_member_name(b, "methods");
	json_builder_begin_array(b);
	if (cfg->discovery.methods & KEYSTORE_DISCOVER_WKD)
		json_builder_add_string_value(b, "wkd");
	if (cfg->discovery.methods & KEYSTORE_DISCOVER_KEYSERVER)
		json_builder_add_string_value(b, "keyserver");
	json_builder_end_array(b);
	json_builder_set_member_name(b, "keyserver");
	if (cfg->discovery.keyserver != NULL)
		json_builder_add_string_value(b, cfg->discovery.keyserver);
	else
		json_builder_add_null_value(b);
	json_builder_set_member_name(b, "timeout");
	json_builder_add_int_value(b, cfg->discovery.timeout);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "keys");
	json_builder_begin_object(b);
	cli_status_json_count(b, "own", st->keys.own);
	cli_status_json_count(b, "own_usable", st->keys.own_usable);
	cli_status_json_count(b, "peer", st->keys.peer);
	cli_status_json_count(b, "peer_usable", st->keys.peer_usable);
	cli_status_json_count(b, "rejected", st->keys.rejected);
	json_builder_end_object(b);
	json_builder_set_member_name(b, "autocrypt_peers");
	json_builder_begin_object(b);
	cli_status_json_count(b, "peers", st->peers);
	cli_status_json_count(b, "with_key", st->peers_with_key);
	json_builder_end_object(b);
	cli_status_json_count(b, "pending", st->pending);
	json_builder_set_member_name(b, "recent_refusals");
	json_builder_begin_array(b);
	for (guint i = 0; i < st->refusals->len; i++) {
		const cli_status_refusal *r = g_ptr_array_index(st->refusals, i);
		json_builder_begin_object(b);
		json_builder_set_member_name(b, "time");
		char *t = cli_status_time(r->time);
		json_builder_add_string_value(b, t);
		g_free(t);
		json_builder_set_member_name(b, "account");
		json_builder_add_string_value(b, r->account);
		json_builder_set_member_name(b, "message_id");
		if (r->message_id != NULL)
			json_builder_add_string_value(b, r->message_id);
		else
			json_builder_add_null_value(b);
		json_builder_set_member_name(b, "recipients");
		json_builder_add_string_value(b, r->recipients);
		json_builder_set_member_name(b, "reason");
		if (r->reason != NULL)
			json_builder_add_string_value(b, r->reason);
		else
			json_builder_add_null_value(b);
		json_builder_end_object(b);
	}
	json_builder_end_array(b);
	json_builder_end_object(b);
}

static void cli_status_print_json(const cli_status *st)
{
	JsonBuilder *b = json_builder_new();
	cli_status_json_add(b, st);
	cli_print_json(b);
}

static const char *cli_status_listen_text(const config_listen *l)
{
	return cli_status_listening(l->host, l->port) ? "listening" : "not listening";
}

static void cli_status_print_text(const cli_status *st)
{
	const config *cfg = st->cfg;
	printf("sealpost status (%s)\n", cfg->path != NULL ? cfg->path : "generated configuration");
	printf("accounts:\n");
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const config_account *a = cfg->accounts[i];
		printf("  %s <%s>, default policy %s\n", a->name, a->address,
		       keystore_policy_name(a->policy));
		cli_status_listener ls[6];
		size_t n = cli_status_listeners(a, ls);
		for (size_t j = 0; j < n; j++) {
			char *proto = g_ascii_strup(ls[j].protocol, -1);
			char where[300];
			snprintf(where, sizeof(where), strchr(ls[j].l->host, ':') != NULL ? "[%s]:%d"
				 : "%s:%d", ls[j].l->host, ls[j].l->port);
			printf("    %-4s %-8s %-22s %s\n", proto, ls[j].tls ? "TLS" : "STARTTLS", where,
			       cli_status_listen_text(ls[j].l));
			g_free(proto);
		}
	}
	if (cfg->api_listen.port != 0 && !cfg->api_listen_default)
		printf("api: %s:%d %s\n", cfg->api_listen.host, cfg->api_listen.port,
		       cli_status_listen_text(&cfg->api_listen));
	char *disc = cli_status_discovery_text(&cfg->discovery);
	if (cfg->discovery.methods != 0)
		printf("key discovery: %s%s%s, %u s per lookup\n", disc,
		       cfg->discovery.keyserver != NULL ? " " : "",
		       cfg->discovery.keyserver != NULL ? cfg->discovery.keyserver : "",
		       cfg->discovery.timeout);
	else
		printf("key discovery: off\n");
	g_free(disc);
	printf("keys: %u of your own usable (of %u), %u of correspondents usable (of %u), "
	       "%u rejected\n", st->keys.own_usable, st->keys.own, st->keys.peer_usable,
	       st->keys.peer, st->keys.rejected);
	printf("autocrypt peers: %u (%u with a key)\n", st->peers, st->peers_with_key);
	printf("pending key changes: %u%s\n", st->pending,
	       st->pending > 0 ? " (review them with: sealpost keys pending)" : "");
	if (st->refusals->len == 0) {
		printf("recent refusals: none\n");
		return;
	}
	printf("recent refusals, newest first:\n");
	for (guint i = 0; i < st->refusals->len; i++) {
		const cli_status_refusal *r = g_ptr_array_index(st->refusals, i);
		char *t = cli_status_time(r->time);
		printf("  %s  %s  to %s: %s\n", t, r->account, r->recipients,
		       r->reason != NULL ? r->reason : "refused");
		g_free(t);
	}
}

static int cli_status_collect(cli_status *st, keystore_db *db, keystore_keyring *kr,
			      const char **error_r)
{
	keystore_keyring_key *keys;
	size_t n;
	if (keystore_keyring_list(kr, NULL, &keys, &n, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		bool usable = keys[i].unusable == NULL;
		if (keys[i].own) {
			st->keys.own++;
			st->keys.own_usable += usable;
		} else {
			st->keys.peer++;
			st->keys.peer_usable += usable;
		}
		st->keys.rejected += keys[i].acceptance == KEYSTORE_ACCEPTANCE_REJECTED;
	}
	keystore_keyring_keys_free(&keys, n);
	if (keystore_autocrypt_peer_count(db, &st->peers, &st->peers_with_key, error_r) < 0 ||
	    keystore_pending_list(db, cli_status_count_pending, &st->pending, error_r) < 0 ||
	    keystore_db_recent_decisions(db, CLI_STATUS_DECISIONS, cli_status_refusal_row,
					 st->refusals, error_r) < 0)
		return -1;
	return 0;
}

int cli_status_json(const config *cfg, keystore_db *db, keystore_keyring *kr, JsonBuilder *b,
		    const char **error_r)
{
	cli_status st = {
		.cfg = cfg,
		.refusals = g_ptr_array_new_with_free_func(cli_status_refusal_free),
	};
	int ret = cli_status_collect(&st, db, kr, error_r);
	if (ret == 0)
		cli_status_json_add(b, &st);
	g_ptr_array_free(st.refusals, TRUE);
	return ret;
}

int cli_status_main(int argc, char **argv)
{
	char *config_path = NULL;
	gboolean json = FALSE;
	GOptionEntry entries[] = {
		{ "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
		  "Configuration file (default: ~/.config/sealpost/sealpost.conf)", "FILE" },
		{ "json", 0, 0, G_OPTION_ARG_NONE, &json, "print a JSON object", NULL },
		G_OPTION_ENTRY_NULL
	};
	GOptionContext *ctx = g_option_context_new("- show accounts, listeners, keys, pending "
						   "key changes and recent refusals");
	g_option_context_add_main_entries(ctx, entries, NULL);
	if (!cli_parse("status", ctx, &argc, &argv)) {
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	if (argc != 1) {
		fprintf(stderr, "sealpost status: unexpected argument %s\n", argv[1]);
		g_free(config_path);
		return CLI_EXIT_USAGE;
	}
	int ret;
	config *cfg = cli_load_config("status", config_path, &ret);
	g_free(config_path);
	if (cfg == NULL)
		return ret;
	const char *error;
	ret = CLI_EXIT_RUNTIME;
	keystore_keyring *kr = NULL;
	keystore_db *db = keystore_db_open(cfg->state_dir, &error);
	if (db == NULL || keystore_init(cfg->gnupg_home, &error) < 0 ||
	    (kr = keystore_keyring_open(cfg->gnupg_home, db, &error)) == NULL) {
		fprintf(stderr, "sealpost status: %s\n", error);
		goto out;
	}
	cli_status st = {
		.cfg = cfg,
		.refusals = g_ptr_array_new_with_free_func(cli_status_refusal_free),
	};
	if (cli_status_collect(&st, db, kr, &error) < 0) {
		fprintf(stderr, "sealpost status: %s\n", error);
	} else {
		if (json)
			cli_status_print_json(&st);
		else
			cli_status_print_text(&st);
		ret = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
	}
	g_ptr_array_free(st.refusals, TRUE);
out:
	keystore_keyring_close(&kr);
	keystore_db_close(&db);
	config_free(&cfg);
	return ret;
}
