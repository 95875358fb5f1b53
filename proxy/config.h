/* config: the INI configuration (GLib GKeyFile), validated in full before
 * anything starts. Every key and its default is in docs/configuration.md. */
#ifndef SEALPOST_CONFIG_H
#define SEALPOST_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore_db.h"
#include "keystore_discover.h"
#include "log.h"

typedef struct {
	char *host;	/* literal address, e.g. "127.0.0.1" or "::1" */
	int port;	/* 0 = not configured */
} config_listen;

typedef enum {
	UPSTREAM_TLS_IMPLICIT,	/* imaps://, smtps://, pop3s:// */
	UPSTREAM_TLS_STARTTLS,	/* imap://, smtp://, pop3:// — STARTTLS required */
	UPSTREAM_TLS_NONE,	/* a gateway's next hop on loopback only */
} config_upstream_tls;

typedef struct {
	char *url;	/* as written */
	char *host;
	int port;
	config_upstream_tls tls;
} config_upstream;

typedef struct {
	size_t max_line;		/* longest protocol line, bytes */
	uint64_t max_literal;		/* largest IMAP literal, bytes */
	uint64_t max_message;		/* largest SMTP message, bytes */
	unsigned max_sessions;		/* concurrent client sessions, all listeners */
	unsigned idle_timeout;		/* seconds without client input (IMAP: also IDLE) */
	unsigned command_timeout;	/* seconds for one upstream reply */
	unsigned connect_timeout;	/* seconds to connect + TLS upstream */
} config_limits;

typedef struct config_gateway config_gateway;

typedef struct {
	char *name;		/* from [account NAME] */
	char *address;
	config_listen imap_listen, imaps_listen;
	config_listen smtp_listen, smtps_listen;
	config_listen pop3_listen, pop3s_listen;
	config_upstream imap_upstream;	/* host NULL = not configured */
	config_upstream smtp_upstream;
	config_upstream pop3_upstream;
	char *upstream_ca_file;		/* NULL = system trust store */
	/* Allow LOGIN/AUTH from the client before it started TLS (loopback
	 * listeners only). */
	bool client_plaintext_auth;
	/* Outbound encryption (docs/configuration.md). */
	keystore_policy policy;		/* the account's default */
	bool sign;			/* sign outgoing messages */
	bool clear_subject;		/* keep the Subject on the outer header */
	bool prefer_encrypt_mutual;	/* Autocrypt prefer-encrypt=mutual */
	bool policy_header;		/* honour X-Sealpost-Encrypt/-Sign */
	/* Inbound: serve encrypted messages decrypted (the view). */
	bool decrypt;
	/* Inbound: APPENDed plaintext is encrypted to the own key first. */
	bool encrypt_append;
	/* Set when this is the SMTP engine's view of a [gateway NAME]. */
	const config_gateway *gateway;
} config_account;

/* A client network a gateway accepts mail from. */
typedef struct {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;	/* bits that must match */
} config_network;

/* [gateway NAME]: mail handed over by the organisation's MTA, encrypted by
 * the organisation's rules, re-injected into the next hop (docs/gateway.md). */
struct config_gateway {
	char *name;
	config_listen listen;
	config_network *clients;
	size_t n_clients;
	char **require;			/* rule targets, NULL-terminated (gateway.h) */
	char **exempt;
	bool split;			/* refuse recipients without keys one by one */
	/* The settings the shared SMTP engine reads: name, address (the
	 * signing key's, or NULL), policy (the default), sign, clear_subject,
	 * policy_header (X-Sealpost-* honoured), smtp_upstream (the next hop:
	 * tls NONE, STARTTLS or IMPLICIT), upstream_ca_file; gateway points
	 * back here. */
	config_account account;
};

typedef struct {
	char *path;		/* NULL for the demo's generated config */
	char *state_dir;
	char *gnupg_home;
	config_listen api_listen;
	bool api_listen_default;	/* not configured: no API is served */
	char *tls_cert, *tls_key;	/* client-facing certificate */
	char *log_file;		/* NULL = stderr only */
	log_level log_level;
	bool allow_remote;
	config_limits limits;
	/* Inbound views: bytes of decrypted views kept in memory (0: none),
	 * and the threads that decrypt (0: one per CPU). */
	uint64_t view_cache_size;
	unsigned decrypt_workers;
	/* Key discovery for recipients without a key, for every account and
	 * gateway of this process (methods 0: off, the default). */
	keystore_discover_config discovery;
	config_account **accounts;
	size_t n_accounts;
	config_gateway **gateways;
	size_t n_gateways;
} config;

/* The per-user configuration, $XDG_CONFIG_HOME/sealpost/sealpost.conf, when
 * that file exists (g_free); else NULL. Every subcommand's default. */
char *config_default_path(void);

/* Parses and validates path. On error returns NULL and *error_r is one
 * line "FILE:LINE: [section] key: what is wrong" (static storage). */
config *config_load(const char *path, const char **error_r);
/* The same from a string (path is only used in messages). */
config *config_load_data(const char *data, size_t len, const char *path,
			 const char **error_r);
void config_free(config **cfg);

/* "127.0.0.1:1143" style; IPv6 as "[::1]:1143". */
int config_parse_listen(const char *value, config_listen *out,
			const char **error_r);
/* imap://, imaps://, smtp://, smtps://, pop3://, pop3s:// */
int config_parse_upstream(const char *value, const char *protocol,
			  config_upstream *out, const char **error_r);
bool config_is_loopback(const char *host);

#endif
