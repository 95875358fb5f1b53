/* server: listeners and the accept loop. One thread per session keeps each
 * session a plain sequential state machine; no fork per connection. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "api.h"
#include "gpgproc.h"
#include "log.h"
#include "pop3_session.h"
#include "session.h"

/* A small backlog drops SYNs under load (docs/performance.md). */
#define SERVER_BACKLOG 512

typedef enum {
	LISTENER_IMAP,
	LISTENER_SMTP,
	LISTENER_POP3,
} listener_protocol;

typedef struct {
	int fd;
	listener_protocol protocol;
	bool implicit_tls;
	const config_account *account;
	tls_client *tls_cli;
	char desc[80];
} listener;

struct server {
	const config *cfg;
	tls_server *tls_srv;
	tls_client **tls_clis;		/* one per account */
	tls_client **gateway_tls_clis;	/* one per gateway (its next hop) */
	keystore_db *db;		/* policy rules, decision log */
	keystore_keys *keys;		/* key lookups, shared by all sessions */
	keystore_keyring *keyring;	/* Autocrypt imports from inbound mail; NULL: none */
	api *api;			/* the local control API; NULL when not served */
	imap_view_pool *view_pool;	/* decryption threads, shared */
	imap_view_cache *view_cache;	/* decrypted views, shared */
	listener *listeners;
	size_t n_listeners;
	int stop_pipe[2];
	atomic_uint sessions;
	atomic_ulong next_id;

	/* Running sessions, so a stop can wake them all. */
	pthread_mutex_t lock;
	pthread_cond_t ended;
	struct session_start *running;
};

typedef struct session_start {
	server *srv;
	session_env env;
	listener_protocol protocol;
	int fd;
	/* A duplicate of the client socket owned by the server: shutdown() on
	 * it wakes the session at stop time, and it cannot be reused by
	 * another connection while the session runs. */
	int wake_fd;
	struct session_start *prev, *next;
} session_start;

static _Thread_local char server_error[512];

int server_ensure_certificate(const config *cfg, const char **error_r)
{
	if (g_file_test(cfg->tls_cert, G_FILE_TEST_EXISTS) &&
	    g_file_test(cfg->tls_key, G_FILE_TEST_EXISTS))
		return 0;
	char *dir = g_path_get_dirname(cfg->tls_cert);
	int ret = g_mkdir_with_parents(dir, 0700);
	if (ret < 0) {
		snprintf(server_error, sizeof(server_error), "cannot create %s: %s",
			 dir, strerror(errno));
		g_free(dir);
		*error_r = server_error;
		return -1;
	}
	g_free(dir);
	dir = g_path_get_dirname(cfg->tls_key);
	g_mkdir_with_parents(dir, 0700);
	g_free(dir);
	if (tls_generate_self_signed(cfg->tls_cert, cfg->tls_key, error_r) < 0)
		return -1;
	log_info(NULL, "creating TLS certificate", "wrote %s", cfg->tls_cert);
	return 0;
}

static int server_bind(const config_listen *l, const char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, l->host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)l->port);
		sslen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, l->host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)l->port);
		sslen = sizeof(*sin6);
	} else {
		*error_r = "bad address";
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*error_r = strerror(errno);
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 ||
	    listen(fd, SERVER_BACKLOG) < 0) {
		*error_r = strerror(errno);
		close(fd);
		return -1;
	}
	return fd;
}

static int server_add_listener(server *srv, const config_account *a,
			       tls_client *cli, const config_listen *l,
			       listener_protocol protocol, bool implicit_tls,
			       const char *key, const char **error_r)
{
	if (l->port == 0)
		return 0;
	const char *error;
	int fd = server_bind(l, &error);
	if (fd < 0) {
		snprintf(server_error, sizeof(server_error),
			 "[%s %s] %s: cannot listen on %s:%d: %s",
			 a->gateway != NULL ? "gateway" : "account", a->name,
			 key, l->host, l->port, error);
		*error_r = server_error;
		return -1;
	}
	listener *ls = &srv->listeners[srv->n_listeners++];
	ls->fd = fd;
	ls->protocol = protocol;
	ls->implicit_tls = implicit_tls;
	ls->account = a;
	ls->tls_cli = cli;
	snprintf(ls->desc, sizeof(ls->desc), "%s %s:%d", key, l->host, l->port);
	log_info(NULL, "listening", "[%s %s] %s on %s:%d",
		 a->gateway != NULL ? "gateway" : "account", a->name, key, l->host, l->port);
	return 0;
}

server *server_new(const config *cfg, const char **error_r)
{
	server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	srv->cfg = cfg;
	srv->stop_pipe[0] = srv->stop_pipe[1] = -1;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->ended, NULL);
	srv->listeners = calloc(cfg->n_accounts * 6 + cfg->n_gateways + 1, sizeof(listener));
	srv->tls_clis = calloc(cfg->n_accounts + 1, sizeof(tls_client *));
	srv->gateway_tls_clis = calloc(cfg->n_gateways + 1, sizeof(tls_client *));
	if (srv->listeners == NULL || srv->tls_clis == NULL || srv->gateway_tls_clis == NULL ||
	    pipe2(srv->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		*error_r = "out of memory";
		goto fail;
	}
	if (server_ensure_certificate(cfg, error_r) < 0)
		goto fail;
	srv->tls_srv = tls_server_new(cfg->tls_cert, cfg->tls_key, error_r);
	if (srv->tls_srv == NULL)
		goto fail;
	srv->db = keystore_db_open(cfg->state_dir, error_r);
	if (srv->db == NULL)
		goto fail;
	/* The server writes its decision log, view pins and Autocrypt peer
	 * state: what a power loss may cost of them is re-learned or
	 * re-decided (keystore_db.h), so no message waits for an fsync. */
	if (keystore_db_set_durable(srv->db, false, error_r) < 0)
		goto fail;
	srv->keys = keystore_keys_new(cfg->gnupg_home, error_r);
	if (srv->keys == NULL)
		goto fail;
	keystore_keys_use_db(srv->keys, srv->db);
	/* Key discovery for recipients without a key (docs/configuration.md). */
	if (keystore_keys_use_discovery(srv->keys, &cfg->discovery, error_r) < 0)
		goto fail;
	const char *keyring_error;
	srv->keyring = keystore_keyring_open(cfg->gnupg_home, srv->db, &keyring_error);
	if (srv->keyring == NULL)
		log_warn(NULL, "opening the keyring", "%s; Autocrypt headers of inbound mail are "
			 "not read", keyring_error);
	/* gpg is started from small worker processes, not from this large
	 * multi-threaded one (crypto/gpgproc.h); before any session thread.
	 * Without them gpg is started from here: slower, but it works. */
	const char *gpgproc_error;
	if (crypto_gpgproc_start(0, cfg->gnupg_home, &gpgproc_error) < 0)
		log_warn(NULL, "starting OpenPGP workers", "%s; gpg is run from the proxy process",
			 gpgproc_error);
	else
		log_info(NULL, "starting OpenPGP workers", "%zu worker processes",
			 crypto_gpgproc_pids(NULL, 0));
	srv->view_pool = imap_view_pool_new(cfg->decrypt_workers, error_r);
	if (srv->view_pool == NULL)
		goto fail;
	srv->view_cache = imap_view_cache_new(cfg->view_cache_size);
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const config_account *a = cfg->accounts[i];
		srv->tls_clis[i] = tls_client_new(a->upstream_ca_file, error_r);
		if (srv->tls_clis[i] == NULL)
			goto fail;
		tls_client *cli = srv->tls_clis[i];
		if (server_add_listener(srv, a, cli, &a->imap_listen, LISTENER_IMAP, false, "imap_listen", error_r) < 0 ||
		    server_add_listener(srv, a, cli, &a->imaps_listen, LISTENER_IMAP, true, "imaps_listen", error_r) < 0 ||
		    server_add_listener(srv, a, cli, &a->smtp_listen, LISTENER_SMTP, false, "smtp_listen", error_r) < 0 ||
		    server_add_listener(srv, a, cli, &a->smtps_listen, LISTENER_SMTP, true, "smtps_listen", error_r) < 0 ||
		    server_add_listener(srv, a, cli, &a->pop3_listen, LISTENER_POP3, false, "pop3_listen", error_r) < 0 ||
		    server_add_listener(srv, a, cli, &a->pop3s_listen, LISTENER_POP3, true, "pop3s_listen", error_r) < 0)
			goto fail;
	}
	/* A gateway is the same SMTP engine behind its own listener. */
	for (size_t i = 0; i < cfg->n_gateways; i++) {
		const config_gateway *gw = cfg->gateways[i];
		srv->gateway_tls_clis[i] = tls_client_new(gw->account.upstream_ca_file, error_r);
		if (srv->gateway_tls_clis[i] == NULL ||
		    server_add_listener(srv, &gw->account, srv->gateway_tls_clis[i], &gw->listen,
					LISTENER_SMTP, false, "listen", error_r) < 0)
			goto fail;
	}
	/* The API is served when api_listen is set (docs/api.md). */
	if (!cfg->api_listen_default) {
		srv->api = api_new(cfg, error_r);
		if (srv->api == NULL)
			goto fail;
	}
	return srv;
fail:
	server_free(&srv);
	return NULL;
}

void server_free(server **srvp)
{
	server *srv = *srvp;
	if (srv == NULL)
		return;
	api_free(&srv->api);
	for (size_t i = 0; i < srv->n_listeners; i++) {
		if (srv->listeners[i].fd >= 0)
			close(srv->listeners[i].fd);
	}
	free(srv->listeners);
	if (srv->tls_clis != NULL) {
		for (size_t i = 0; i < srv->cfg->n_accounts; i++)
			tls_client_free(&srv->tls_clis[i]);
	}
	free(srv->tls_clis);
	if (srv->gateway_tls_clis != NULL) {
		for (size_t i = 0; i < srv->cfg->n_gateways; i++)
			tls_client_free(&srv->gateway_tls_clis[i]);
	}
	free(srv->gateway_tls_clis);
	tls_server_free(&srv->tls_srv);
	imap_view_pool_free(&srv->view_pool);
	imap_view_cache_free(&srv->view_cache);
	crypto_gpgproc_stop();
	keystore_keys_free(&srv->keys);
	keystore_keyring_close(&srv->keyring);
	keystore_db_close(&srv->db);
	if (srv->stop_pipe[0] >= 0)
		close(srv->stop_pipe[0]);
	if (srv->stop_pipe[1] >= 0)
		close(srv->stop_pipe[1]);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->ended);
	free(srv);
	*srvp = NULL;
}

void server_stop(server *srv)
{
	int saved = errno;
	ssize_t ret = write(srv->stop_pipe[1], "x", 1);
	(void)ret;
	errno = saved;
}

/* Takes a session off the running list, gives back its place and frees
 * it. The session's own socket is already closed (or never used). */
static void server_session_release(session_start *st)
{
	server *srv = st->srv;
	pthread_mutex_lock(&srv->lock);
	if (st->prev != NULL)
		st->prev->next = st->next;
	else
		srv->running = st->next;
	if (st->next != NULL)
		st->next->prev = st->prev;
	close(st->wake_fd);
	atomic_fetch_sub(&srv->sessions, 1);
	pthread_cond_broadcast(&srv->ended);
	pthread_mutex_unlock(&srv->lock);
	free(st);
}

static void *server_session_thread(void *arg)
{
	session_start *st = arg;
	if (st->protocol == LISTENER_IMAP)
		imap_session_run(&st->env, st->fd);
	else if (st->protocol == LISTENER_POP3)
		pop3_session_run(&st->env, st->fd);
	else
		smtp_session_run(&st->env, st->fd);
	/* Release OpenSSL's per-thread state now, while the process is
	 * surely alive: done by the thread-exit destructor instead, it can
	 * race with OPENSSL_cleanup() in main after the drain (a double free
	 * seen under ASan). */
	OPENSSL_thread_stop();
	server_session_release(st);
	return NULL;
}

/* Over the session limit: a plain listener gets a polite temporary refusal
 * the client understands; a TLS listener can only be closed. */
static void server_refuse(const listener *ls, int fd)
{
	if (!ls->implicit_tls) {
		const char *msg = ls->protocol == LISTENER_IMAP ?
			"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n" :
			ls->protocol == LISTENER_POP3 ?
			"-ERR [SYS/TEMP] Too many connections, try again later.\r\n" :
			"421 4.7.0 Too many connections, try again later.\r\n";
		ssize_t ret = send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)ret;
	}
	close(fd);
}

static void server_accept(server *srv, listener *ls)
{
	for (int burst = 0; burst < 64; burst++) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		int fd = accept4(ls->fd, (struct sockaddr *)&ss, &sslen, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn(NULL, "accepting", "%s: %s", ls->desc, strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				usleep(100 * 1000);
			return;
		}
		char host[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		bool loopback = false;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
			port = ntohs(sin->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
			port = ntohs(sin6->sin6_port);
		}
		loopback = config_is_loopback(host);

		unsigned active = atomic_fetch_add(&srv->sessions, 1);
		if (active >= srv->cfg->limits.max_sessions) {
			atomic_fetch_sub(&srv->sessions, 1);
			log_warn(NULL, "accepting", "%s: refusing %s:%d, %u sessions active",
				 ls->desc, host, port, active);
			server_refuse(ls, fd);
			continue;
		}
		session_start *st = calloc(1, sizeof(*st));
		if (st == NULL) {
			atomic_fetch_sub(&srv->sessions, 1);
			close(fd);
			continue;
		}
		st->srv = srv;
		st->fd = fd;
		st->protocol = ls->protocol;
		st->env.cfg = srv->cfg;
		st->env.account = ls->account;
		st->env.tls_srv = srv->tls_srv;
		st->env.tls_cli = ls->tls_cli;
		st->env.db = srv->db;
		st->env.keys = srv->keys;
		st->env.keyring = srv->keyring;
		st->env.view_pool = srv->view_pool;
		st->env.view_cache = srv->view_cache;
		st->env.implicit_tls = ls->implicit_tls;
		st->env.client_loopback = loopback;
		snprintf(st->env.id, sizeof(st->env.id), "%s-%lu",
			 ls->protocol == LISTENER_IMAP ? "imap" :
			 ls->protocol == LISTENER_POP3 ? "pop3" :
			 ls->account->gateway != NULL ? "gw" : "smtp",
			 atomic_fetch_add(&srv->next_id, 1) + 1);
		snprintf(st->env.client_desc, sizeof(st->env.client_desc),
			 ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
		log_info(st->env.id, "accepting", "%s from %s", ls->desc,
			 st->env.client_desc);

		st->wake_fd = dup(fd);
		if (st->wake_fd < 0) {
			atomic_fetch_sub(&srv->sessions, 1);
			server_refuse(ls, fd);
			free(st);
			continue;
		}
		pthread_mutex_lock(&srv->lock);
		st->next = srv->running;
		if (srv->running != NULL)
			srv->running->prev = st;
		srv->running = st;
		pthread_mutex_unlock(&srv->lock);

		pthread_attr_t attr;
		pthread_t tid;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&attr, 512 * 1024);
		int err = pthread_create(&tid, &attr, server_session_thread, st);
		pthread_attr_destroy(&attr);
		if (err != 0) {
			log_error(st->env.id, "starting session", "%s", strerror(err));
			server_refuse(ls, fd);
			server_session_release(st);
		}
	}
}

int server_run(server *srv)
{
	size_t n = srv->n_listeners + 1;
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	if (pfd == NULL)
		return -1;
	for (size_t i = 0; i < srv->n_listeners; i++) {
		pfd[i].fd = srv->listeners[i].fd;
		pfd[i].events = POLLIN;
	}
	pfd[n - 1].fd = srv->stop_pipe[0];
	pfd[n - 1].events = POLLIN;
	int ret = 0;
	for (;;) {
		int r = poll(pfd, n, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			log_error(NULL, "accepting", "poll: %s", strerror(errno));
			ret = -1;
			break;
		}
		if (pfd[n - 1].revents != 0)
			break;
		for (size_t i = 0; i < srv->n_listeners; i++) {
			if (pfd[i].revents != 0)
				server_accept(srv, &srv->listeners[i]);
		}
	}
	free(pfd);
	for (size_t i = 0; i < srv->n_listeners; i++) {
		close(srv->listeners[i].fd);
		srv->listeners[i].fd = -1;
	}
	return ret;
}

int server_drain(server *srv, int timeout_ms)
{
	pthread_mutex_lock(&srv->lock);
	unsigned open = atomic_load(&srv->sessions);
	log_info(NULL, "stopping", "ending %u open session%s", open, open == 1 ? "" : "s");
	for (session_start *st = srv->running; st != NULL; st = st->next)
		shutdown(st->wake_fd, SHUT_RDWR);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (atomic_load(&srv->sessions) > 0) {
		if (pthread_cond_timedwait(&srv->ended, &srv->lock, &deadline) != 0)
			break;
	}
	open = atomic_load(&srv->sessions);
	pthread_mutex_unlock(&srv->lock);
	if (open > 0)
		log_warn(NULL, "stopping", "%u session%s did not end in time", open,
			 open == 1 ? "" : "s");
	return open == 0 ? 0 : -1;
}
