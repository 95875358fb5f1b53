/* conn: buffered non-blocking socket. The transport is a small table of
 * functions (plain TCP, TLS) so STARTTLS only swaps the table. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define CONN_IN_INITIAL (64 * 1024)
#define CONN_IN_MAX (16 * 1024 * 1024)
#define CONN_OUT_FLUSH (64 * 1024)
#define CONN_DEFAULT_TIMEOUT_MS (300 * 1000)

/* Transport results beyond byte counts. */
#define IO_EOF 0
#define IO_ERROR (-1)
#define IO_WANT_READ (-2)
#define IO_WANT_WRITE (-3)

typedef struct {
	ssize_t (*read)(conn *c, void *buf, size_t len);
	ssize_t (*write)(conn *c, const void *buf, size_t len);
	bool (*pending)(const conn *c);
	void (*shutdown)(conn *c);
} conn_transport;

struct conn {
	int fd;
	char desc[96];
	const conn_transport *transport;
	SSL *ssl;
	int timeout_ms;

	uint8_t *in;
	size_t in_start, in_end, in_cap;

	uint8_t *out;
	size_t out_len, out_cap;

	char error[256];
};

static void conn_set_error(conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void conn_set_error(conn *c, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, args);
	va_end(args);
}

/* ---- plain TCP ---------------------------------------------------------- */

static ssize_t plain_read(conn *c, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return IO_WANT_READ;
		conn_set_error(c, "read: %s", strerror(errno));
		return IO_ERROR;
	}
}

static ssize_t plain_write(conn *c, const void *buf, size_t len)
{
	for (;;) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return IO_WANT_WRITE;
		conn_set_error(c, "write: %s", strerror(errno));
		return IO_ERROR;
	}
}

static bool plain_pending(const conn *c)
{
	(void)c;
	return false;
}

static void plain_shutdown(conn *c)
{
	shutdown(c->fd, SHUT_RDWR);
}

static const conn_transport conn_transport_plain = {
	plain_read, plain_write, plain_pending, plain_shutdown,
};

/* ---- TLS ---------------------------------------------------------------- */

static ssize_t tls_map_error(conn *c, int ret, const char *op)
{
	int err = SSL_get_error(c->ssl, ret);
	switch (err) {
	case SSL_ERROR_WANT_READ:
		return IO_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return IO_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF;
	case SSL_ERROR_SYSCALL:
		if (errno == 0 || errno == ECONNRESET || errno == EPIPE) {
			/* Peer closed without close_notify: treat as end of
			 * stream, the protocol layer decides if that was early. */
			ERR_clear_error();
			return IO_EOF;
		}
		conn_set_error(c, "TLS %s: %s", op, strerror(errno));
		ERR_clear_error();
		return IO_ERROR;
	default: {
		char reason[160];
		ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
		ERR_clear_error();
		conn_set_error(c, "TLS %s: %s", op, reason);
		return IO_ERROR;
	}
	}
}

static ssize_t tls_read(conn *c, void *buf, size_t len)
{
	size_t got = 0;
	errno = 0;
	int ret = SSL_read_ex(c->ssl, buf, len, &got);
	if (ret == 1)
		return (ssize_t)got;
	return tls_map_error(c, 0, "read");
}

static ssize_t tls_write(conn *c, const void *buf, size_t len)
{
	size_t done = 0;
	errno = 0;
	int ret = SSL_write_ex(c->ssl, buf, len, &done);
	if (ret == 1)
		return (ssize_t)done;
	ssize_t r = tls_map_error(c, 0, "write");
	if (r == IO_EOF) {
		conn_set_error(c, "connection closed");
		return IO_ERROR;
	}
	return r;
}

static bool tls_pending(const conn *c)
{
	return SSL_pending(c->ssl) > 0;
}

static void tls_shutdown(conn *c)
{
	/* Best effort: never wait for the peer's close_notify. */
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
	shutdown(c->fd, SHUT_RDWR);
}

static const conn_transport conn_transport_tls = {
	tls_read, tls_write, tls_pending, tls_shutdown,
};

/* ---- life cycle --------------------------------------------------------- */

conn *conn_new(int fd, const char *desc)
{
	conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->in = malloc(CONN_IN_INITIAL);
	if (c->in == NULL) {
		free(c);
		return NULL;
	}
	c->in_cap = CONN_IN_INITIAL;
	c->fd = fd;
	c->transport = &conn_transport_plain;
	c->timeout_ms = CONN_DEFAULT_TIMEOUT_MS;
	snprintf(c->desc, sizeof(c->desc), "%s", desc != NULL ? desc : "peer");

	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	/* Without TCP_NODELAY every small reply waits ~40 ms for a delayed
	 * ACK (docs/performance.md). Fails harmlessly on socketpairs. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return c;
}

void conn_free(conn **cp)
{
	conn *c = *cp;
	if (c == NULL)
		return;
	if (c->fd >= 0) {
		c->transport->shutdown(c);
		close(c->fd);
	}
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	free(c->in);
	free(c->out);
	free(c);
	*cp = NULL;
}

int conn_fd(const conn *c)
{
	return c->fd;
}

const char *conn_desc(const conn *c)
{
	return c->desc;
}

bool conn_is_tls(const conn *c)
{
	return c->ssl != NULL;
}

void conn_set_timeout(conn *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

const char *conn_last_error(const conn *c)
{
	return c->error[0] != '\0' ? c->error : "no error";
}

static int64_t conn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the socket to become readable (want == IO_WANT_READ) or
 * writable until deadline. 0 ready, -1 timeout or error. */
static int conn_wait_io(conn *c, ssize_t want, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - conn_now_ms();
		if (left <= 0) {
			conn_set_error(c, "timeout");
			return -1;
		}
		struct pollfd pfd = {
			.fd = c->fd,
			.events = want == IO_WANT_WRITE ? POLLOUT : POLLIN,
		};
		int ret = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
		if (ret > 0)
			return 0;
		if (ret == 0) {
			conn_set_error(c, "timeout");
			return -1;
		}
		if (errno != EINTR) {
			conn_set_error(c, "poll: %s", strerror(errno));
			return -1;
		}
	}
}

static int conn_make_room(conn *c)
{
	if (c->in_start == c->in_end) {
		c->in_start = c->in_end = 0;
	} else if (c->in_start > 0 && c->in_cap - c->in_end < c->in_cap / 4) {
		/* Compact early so reads never shrink to a few bytes. */
		memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
		c->in_end -= c->in_start;
		c->in_start = 0;
	}
	if (c->in_end < c->in_cap)
		return 0;
	if (c->in_cap >= CONN_IN_MAX) {
		conn_set_error(c, "input buffer full");
		return -1;
	}
	size_t cap = c->in_cap * 2;
	uint8_t *in = realloc(c->in, cap);
	if (in == NULL) {
		conn_set_error(c, "out of memory");
		return -1;
	}
	c->in = in;
	c->in_cap = cap;
	return 0;
}

ssize_t conn_fill_nowait(conn *c)
{
	if (conn_make_room(c) < 0)
		return -1;
	ssize_t n = c->transport->read(c, c->in + c->in_end, c->in_cap - c->in_end);
	if (n > 0) {
		c->in_end += (size_t)n;
		return n;
	}
	if (n == IO_EOF) {
		conn_set_error(c, "connection closed");
		return 0;
	}
	if (n == IO_WANT_READ || n == IO_WANT_WRITE)
		return -2;
	return -1;
}

ssize_t conn_fill(conn *c)
{
	int64_t deadline = conn_now_ms() + c->timeout_ms;
	for (;;) {
		if (conn_make_room(c) < 0)
			return -1;
		ssize_t n = c->transport->read(c, c->in + c->in_end,
					       c->in_cap - c->in_end);
		if (n > 0) {
			c->in_end += (size_t)n;
			return n;
		}
		if (n == IO_EOF) {
			conn_set_error(c, "connection closed");
			return 0;
		}
		if (n == IO_ERROR)
			return -1;
		if (conn_wait_io(c, n, deadline) < 0)
			return -1;
	}
}

const uint8_t *conn_input(const conn *c, size_t *len_r)
{
	*len_r = c->in_end - c->in_start;
	return c->in + c->in_start;
}

size_t conn_input_len(const conn *c)
{
	return c->in_end - c->in_start;
}

void conn_consume(conn *c, size_t n)
{
	size_t avail = c->in_end - c->in_start;
	c->in_start += n < avail ? n : avail;
	if (c->in_start == c->in_end)
		c->in_start = c->in_end = 0;
}

void conn_discard_input(conn *c)
{
	c->in_start = c->in_end = 0;
}

bool conn_has_pending(const conn *c)
{
	return c->in_end > c->in_start || c->transport->pending(c);
}

int conn_read_line(conn *c, size_t max_len, const char **line_r, size_t *len_r)
{
	size_t scanned = 0;
	for (;;) {
		size_t avail = c->in_end - c->in_start;
		const uint8_t *start = c->in + c->in_start;
		const uint8_t *lf = memchr(start + scanned, '\n', avail - scanned);
		if (lf != NULL) {
			size_t len = (size_t)(lf - start) + 1;
			if (len > max_len) {
				conn_set_error(c, "line too long");
				return -2;
			}
			*line_r = (const char *)start;
			*len_r = len;
			return 1;
		}
		scanned = avail;
		if (avail >= max_len) {
			conn_set_error(c, "line too long");
			return -2;
		}
		ssize_t n = conn_fill(c);
		if (n == 0)
			return 0;
		if (n < 0)
			return -1;
	}
}

/* ---- output ------------------------------------------------------------- */

/* Writes data directly to the transport, waiting as needed. */
static int conn_write_direct(conn *c, const uint8_t *data, size_t len)
{
	int64_t deadline = conn_now_ms() + c->timeout_ms;
	while (len > 0) {
		ssize_t n = c->transport->write(c, data, len);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n == IO_ERROR || n == IO_EOF) {
			if (n == IO_EOF)
				conn_set_error(c, "connection closed");
			return -1;
		}
		if (conn_wait_io(c, n, deadline) < 0)
			return -1;
	}
	return 0;
}

int conn_flush(conn *c)
{
	if (c->out_len == 0)
		return 0;
	int ret = conn_write_direct(c, c->out, c->out_len);
	c->out_len = 0;
	return ret;
}

int conn_write(conn *c, const void *data, size_t len)
{
	if (len >= CONN_OUT_FLUSH) {
		/* Big chunks (literal bodies) skip the copy. */
		if (conn_flush(c) < 0)
			return -1;
		return conn_write_direct(c, data, len);
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap == 0 ? 2 * CONN_OUT_FLUSH : c->out_cap;
		while (cap < c->out_len + len)
			cap *= 2;
		uint8_t *out = realloc(c->out, cap);
		if (out == NULL) {
			conn_set_error(c, "out of memory");
			return -1;
		}
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	if (c->out_len >= CONN_OUT_FLUSH)
		return conn_flush(c);
	return 0;
}

int conn_write_str(conn *c, const char *s)
{
	return conn_write(c, s, strlen(s));
}

int conn_printf(conn *c, const char *fmt, ...)
{
	char buf[1024];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(buf))
		return conn_write(c, buf, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		return -1;
	va_start(args, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, args);
	va_end(args);
	int ret = conn_write(c, big, (size_t)n);
	free(big);
	return ret;
}

size_t conn_output_len(const conn *c)
{
	return c->out_len;
}

void conn_shutdown_write(conn *c)
{
	if (c->ssl != NULL) {
		/* One close_notify, without waiting for the peer's. */
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	shutdown(c->fd, SHUT_WR);
}

/* ---- TLS set-up --------------------------------------------------------- */

static int conn_tls_handshake(conn *c, bool server, const char **error_r)
{
	int64_t deadline = conn_now_ms() + c->timeout_ms;
	for (;;) {
		errno = 0;
		int ret = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
		if (ret == 1)
			return 0;
		int err = SSL_get_error(c->ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			if (conn_wait_io(c, err == SSL_ERROR_WANT_READ ?
					 IO_WANT_READ : IO_WANT_WRITE, deadline) < 0) {
				conn_set_error(c, "TLS handshake with %s: timeout", c->desc);
				*error_r = c->error;
				return -1;
			}
			continue;
		}
		long verify = SSL_get_verify_result(c->ssl);
		if (!server && verify != X509_V_OK) {
			conn_set_error(c, "TLS handshake with %s: certificate verification failed: %s",
				       c->desc, X509_verify_cert_error_string(verify));
		} else {
			unsigned long e = ERR_get_error();
			char reason[160] = "connection closed";
			if (e != 0)
				ERR_error_string_n(e, reason, sizeof(reason));
			else if (err == SSL_ERROR_SYSCALL && errno != 0)
				snprintf(reason, sizeof(reason), "%s", strerror(errno));
			conn_set_error(c, "TLS handshake with %s: %s", c->desc, reason);
		}
		ERR_clear_error();
		*error_r = c->error;
		return -1;
	}
}

int conn_starttls_server(conn *c, tls_server *srv, const char **error_r)
{
	if (c->ssl != NULL) {
		*error_r = "TLS already active";
		return -1;
	}
	c->ssl = SSL_new(tls_server_ssl_ctx(srv));
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		conn_set_error(c, "cannot create TLS session");
		*error_r = c->error;
		return -1;
	}
	if (conn_tls_handshake(c, true, error_r) < 0)
		return -1;
	c->transport = &conn_transport_tls;
	return 0;
}

static bool conn_host_is_ip(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, addr) == 1 ||
		inet_pton(AF_INET6, host, addr) == 1;
}

int conn_starttls_client(conn *c, tls_client *cli, const char *hostname,
			 const char **error_r)
{
	if (c->ssl != NULL) {
		*error_r = "TLS already active";
		return -1;
	}
	c->ssl = SSL_new(tls_client_ssl_ctx(cli));
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		conn_set_error(c, "cannot create TLS session");
		*error_r = c->error;
		return -1;
	}
	/* The name check is part of chain verification, so a mismatch fails
	 * the handshake before a single application byte is sent. */
	X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
	X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	int ok;
	if (conn_host_is_ip(hostname)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(param, hostname);
	} else {
		ok = X509_VERIFY_PARAM_set1_host(param, hostname, 0) &&
			SSL_set_tlsext_host_name(c->ssl, hostname);
	}
	if (ok != 1) {
		conn_set_error(c, "cannot set TLS peer name %s", hostname);
		*error_r = c->error;
		return -1;
	}
	SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	if (conn_tls_handshake(c, false, error_r) < 0)
		return -1;
	if (SSL_get_verify_result(c->ssl) != X509_V_OK ||
	    SSL_get0_peer_certificate(c->ssl) == NULL) {
		conn_set_error(c, "TLS with %s: peer certificate not verified", c->desc);
		*error_r = c->error;
		return -1;
	}
	c->transport = &conn_transport_tls;
	return 0;
}

/* ---- connecting and waiting ---------------------------------------------- */

conn *conn_connect(const char *host, int port, int timeout_ms,
		   const char **error_r)
{
	static _Thread_local char error[256];
	char portstr[16];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *res = NULL;

	snprintf(portstr, sizeof(portstr), "%d", port);
	int gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai != 0) {
		snprintf(error, sizeof(error), "connect %s:%d: %s", host, port,
			 gai_strerror(gai));
		*error_r = error;
		return NULL;
	}
	int64_t deadline = conn_now_ms() + timeout_ms;
	int last_errno = ECONNREFUSED;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		int ret = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (ret < 0 && errno == EINPROGRESS) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			int64_t left = deadline - conn_now_ms();
			ret = left > 0 ? poll(&pfd, 1, (int)left) : 0;
			if (ret == 1) {
				int soerr = 0;
				socklen_t len = sizeof(soerr);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
				ret = soerr == 0 ? 0 : -1;
				errno = soerr;
			} else {
				ret = -1;
				errno = ETIMEDOUT;
			}
		}
		if (ret == 0) {
			freeaddrinfo(res);
			char desc[96];
			snprintf(desc, sizeof(desc), "%s:%d", host, port);
			conn *c = conn_new(fd, desc);
			if (c == NULL) {
				close(fd);
				*error_r = "out of memory";
			}
			return c;
		}
		last_errno = errno;
		close(fd);
	}
	freeaddrinfo(res);
	snprintf(error, sizeof(error), "connect %s:%d: %s", host, port,
		 strerror(last_errno));
	*error_r = error;
	return NULL;
}

int conn_wait_readable(conn *a, conn *b, int timeout_ms)
{
	int mask = 0;
	if (conn_has_pending(a))
		mask |= CONN_WAIT_A;
	if (b != NULL && conn_has_pending(b))
		mask |= CONN_WAIT_B;
	if (mask != 0)
		return mask;

	struct pollfd pfd[2] = {
		{ .fd = a->fd, .events = POLLIN },
		{ .fd = b != NULL ? b->fd : -1, .events = POLLIN },
	};
	for (;;) {
		int ret = poll(pfd, b != NULL ? 2 : 1, timeout_ms);
		if (ret == 0)
			return 0;
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			conn_set_error(a, "poll: %s", strerror(errno));
			return -1;
		}
		break;
	}
	if (pfd[0].revents != 0)
		mask |= CONN_WAIT_A;
	if (b != NULL && pfd[1].revents != 0)
		mask |= CONN_WAIT_B;
	return mask;
}
