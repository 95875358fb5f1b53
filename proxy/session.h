/* session: what the listener hands to each protocol session, and the
 * shared bits every session uses (ids, upstream connection, limits). */
#ifndef SEALPOST_SESSION_H
#define SEALPOST_SESSION_H

#include <stdbool.h>

#include "config.h"
#include "conn.h"
#include "imap_view_cache.h"
#include "imap_view_pool.h"
#include "keystore_db.h"
#include "keystore_keys.h"
#include "keystore_keyring.h"
#include "tls.h"

typedef struct {
	const config *cfg;
	const config_account *account;
	tls_server *tls_srv;		/* client-facing certificate */
	tls_client *tls_cli;		/* upstream verification for this account */
	keystore_db *db;		/* shared: policy rules, decision log */
	keystore_keys *keys;		/* shared: key lookups */
	keystore_keyring *keyring;	/* shared: Autocrypt key imports; NULL: none */
	imap_view_pool *view_pool;	/* shared: threads that decrypt views */
	imap_view_cache *view_cache;	/* shared: decrypted views in memory */
	bool implicit_tls;		/* listener is imaps/smtps/pop3s */
	char id[24];			/* e.g. "imap-0001a" */
	char client_desc[64];		/* "127.0.0.1:40022" */
	bool client_loopback;
} session_env;

/* Each runs in its own thread and owns client_fd until it returns. */
void imap_session_run(const session_env *env, int client_fd);
void smtp_session_run(const session_env *env, int client_fd);

/* Connects to an upstream and brings TLS up in implicit mode (handshake
 * right away). For STARTTLS mode the caller speaks the protocol first and
 * then calls conn_starttls_client(). Returns NULL with *error_r. */
conn *session_connect_upstream(const session_env *env,
			       const config_upstream *up, const char **error_r);

#endif
