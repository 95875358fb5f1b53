/* smtp_load: SMTP load generator for the benchmark. N sessions in parallel
 * (one thread each) send M messages in total, optionally over STARTTLS or
 * implicit TLS and with AUTH PLAIN, and it prints the messages per second.
 *
 * Each session sends its commands one at a time and waits for every reply
 * (no PIPELINING), so a relay in the path pays its latency on each of the
 * four round trips per message (MAIL, RCPT, DATA, end of data). The clock
 * runs from before the first connect to after the last QUIT reply, so
 * connection set-up, TLS and AUTH are part of the figure, as for a client.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef enum { TLS_NONE, TLS_STARTTLS, TLS_IMPLICIT } tls_mode;

typedef struct {
	const char *host;
	int port;
	unsigned sessions;
	unsigned messages;
	size_t size;
	tls_mode tls;
	const char *cafile;
	const char *servername;
	const char *user;
	const char *password;
	const char *from;
	const char *to;
	unsigned timeout;
} options;

static options opt = {
	.host = "127.0.0.1",
	.sessions = 10,
	.messages = 1000,
	.size = 20480,
	.tls = TLS_NONE,
	.servername = "localhost",
	.from = "alice@example.test",
	.to = "bob@example.test",
	.timeout = 60,
};

static SSL_CTX *ssl_ctx;
static char *message;		/* headers + body, CRLF lines, ends in ".\r\n" */
static size_t message_len;
static char *auth_plain;	/* "AUTH PLAIN base64\r\n" */
static atomic_bool failed;
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
	unsigned index;
	unsigned count;		/* messages this session sends */
	int fd;
	SSL *ssl;
	char buf[8192];
	size_t len;		/* bytes in buf */
	char reply[1024];	/* last reply, for error messages */
} session;

static void fail(session *s, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&error_lock);
	if (!atomic_exchange(&failed, true)) {
		fprintf(stderr, "smtp_load: session %u: ", s != NULL ? s->index : 0);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
		unsigned long e;
		while ((e = ERR_get_error()) != 0)
			fprintf(stderr, "smtp_load: %s\n", ERR_error_string(e, NULL));
	}
	pthread_mutex_unlock(&error_lock);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int session_write(session *s, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n;
		if (s->ssl != NULL) {
			size_t written = 0;
			if (SSL_write_ex(s->ssl, data, len, &written) != 1) {
				fail(s, "TLS write failed");
				return -1;
			}
			n = (ssize_t)written;
		} else {
			n = send(s->fd, data, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				fail(s, "send: %s", strerror(errno));
				return -1;
			}
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static int session_fill(session *s)
{
	if (s->len == sizeof(s->buf)) {
		fail(s, "reply line too long");
		return -1;
	}
	for (;;) {
		ssize_t n;
		if (s->ssl != NULL) {
			size_t got = 0;
			if (SSL_read_ex(s->ssl, s->buf + s->len,
					sizeof(s->buf) - s->len, &got) != 1) {
				fail(s, "TLS read failed or connection closed");
				return -1;
			}
			n = (ssize_t)got;
		} else {
			n = recv(s->fd, s->buf + s->len, sizeof(s->buf) - s->len, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				fail(s, "recv: %s", strerror(errno));
				return -1;
			}
			if (n == 0) {
				fail(s, "connection closed by server");
				return -1;
			}
		}
		s->len += (size_t)n;
		return 0;
	}
}

/* Reads one whole (multi-line) reply and checks its code's first digit. */
static int session_reply(session *s, char expect)
{
	size_t rlen = 0;

	for (;;) {
		char *eol = memchr(s->buf, '\n', s->len);
		if (eol == NULL) {
			if (session_fill(s) < 0)
				return -1;
			continue;
		}
		size_t line_len = (size_t)(eol - s->buf) + 1;
		bool last = line_len < 5 || s->buf[3] != '-';
		char first = s->buf[0];
		size_t keep = line_len;
		if (keep > sizeof(s->reply) - 1 - rlen)
			keep = sizeof(s->reply) - 1 - rlen;
		memcpy(s->reply + rlen, s->buf, keep);
		rlen += keep;
		s->reply[rlen] = '\0';
		memmove(s->buf, s->buf + line_len, s->len - line_len);
		s->len -= line_len;
		if (last) {
			if (first != expect) {
				fail(s, "unexpected reply: %s", s->reply);
				return -1;
			}
			return 0;
		}
	}
}

static int session_command(session *s, const char *cmd, char expect)
{
	if (session_write(s, cmd, strlen(cmd)) < 0)
		return -1;
	return session_reply(s, expect);
}

static int session_tls(session *s)
{
	s->ssl = SSL_new(ssl_ctx);
	if (s->ssl == NULL) {
		fail(s, "SSL_new failed");
		return -1;
	}
	SSL_set_fd(s->ssl, s->fd);
	SSL_set_tlsext_host_name(s->ssl, opt.servername);
	SSL_set1_host(s->ssl, opt.servername);
	if (SSL_connect(s->ssl) != 1) {
		fail(s, "TLS handshake failed");
		return -1;
	}
	return 0;
}

static int session_connect(session *s)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, opt.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)opt.port);
		sslen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, opt.host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)opt.port);
		sslen = sizeof(*sin6);
	} else {
		fail(s, "host must be a literal address: %s", opt.host);
		return -1;
	}
	s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		fail(s, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	/* Without it every small command waits for a delayed ACK. */
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct timeval tv = { .tv_sec = opt.timeout };
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s->fd, (struct sockaddr *)&ss, sslen) < 0) {
		fail(s, "connect %s:%d: %s", opt.host, opt.port, strerror(errno));
		return -1;
	}
	return 0;
}

static void *session_main(void *arg)
{
	session *s = arg;
	char cmd[512];

	if (session_connect(s) < 0)
		return NULL;
	if (opt.tls == TLS_IMPLICIT && session_tls(s) < 0)
		return NULL;
	if (session_reply(s, '2') < 0)
		return NULL;
	if (session_command(s, "EHLO load.example.test\r\n", '2') < 0)
		return NULL;
	if (opt.tls == TLS_STARTTLS) {
		if (session_command(s, "STARTTLS\r\n", '2') < 0)
			return NULL;
		if (s->len != 0) {
			fail(s, "data after the STARTTLS reply");
			return NULL;
		}
		if (session_tls(s) < 0)
			return NULL;
		if (session_command(s, "EHLO load.example.test\r\n", '2') < 0)
			return NULL;
	}
	if (auth_plain != NULL && session_command(s, auth_plain, '2') < 0)
		return NULL;
	for (unsigned i = 0; i < s->count && !atomic_load(&failed); i++) {
		snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s> SIZE=%zu\r\n",
			 opt.from, message_len);
		if (session_command(s, cmd, '2') < 0)
			return NULL;
		snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", opt.to);
		if (session_command(s, cmd, '2') < 0)
			return NULL;
		if (session_command(s, "DATA\r\n", '3') < 0)
			return NULL;
		if (session_write(s, message, message_len) < 0 ||
		    session_reply(s, '2') < 0)
			return NULL;
	}
	if (!atomic_load(&failed))
		session_command(s, "QUIT\r\n", '2');
	return NULL;
}

static void session_close(session *s)
{
	if (s->ssl != NULL) {
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static void build_message(void)
{
	/* Header block, then 76-character body lines up to the wanted size;
	 * no line starts with a dot, so nothing needs dot-stuffing. */
	char head[512];
	int hlen = snprintf(head, sizeof(head),
		"From: <%s>\r\nTo: <%s>\r\nSubject: load test message\r\n"
		"Message-ID: <load@example.test>\r\n"
		"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		opt.from, opt.to);
	size_t total = opt.size > (size_t)hlen + 8 ? opt.size : (size_t)hlen + 8;
	message = malloc(total + 3);
	if (message == NULL) {
		fprintf(stderr, "smtp_load: out of memory\n");
		exit(1);
	}
	memcpy(message, head, (size_t)hlen);
	size_t pos = (size_t)hlen;
	unsigned line = 0;
	while (pos < total) {
		size_t room = total - pos;
		size_t n = room > 78 ? 78 : room;
		if (n < 3) {	/* keep every line non-empty and CRLF-terminated */
			while (pos < total - 2)
				message[pos++] = 'x';
			message[pos++] = '\r';
			message[pos++] = '\n';
			break;
		}
		for (size_t i = 0; i < n - 2; i++)
			message[pos + i] = (char)('a' + (line + i) % 26);
		message[pos + n - 2] = '\r';
		message[pos + n - 1] = '\n';
		pos += n;
		line++;
	}
	memcpy(message + pos, ".\r\n", 3);
	message_len = pos + 3;
}

static void build_auth(void)
{
	if (opt.user == NULL)
		return;
	size_t ulen = strlen(opt.user), plen = strlen(opt.password);
	size_t rawlen = ulen + plen + 2;
	unsigned char *raw = malloc(rawlen);
	char *b64 = malloc(4 * ((rawlen + 2) / 3) + 1);
	auth_plain = malloc(4 * ((rawlen + 2) / 3) + 16);
	if (raw == NULL || b64 == NULL || auth_plain == NULL) {
		fprintf(stderr, "smtp_load: out of memory\n");
		exit(1);
	}
	raw[0] = '\0';
	memcpy(raw + 1, opt.user, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, opt.password, plen);
	EVP_EncodeBlock((unsigned char *)b64, raw, (int)rawlen);
	sprintf(auth_plain, "AUTH PLAIN %s\r\n", b64);
	free(raw);
	free(b64);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: smtp_load --port PORT [--host ADDR] [--sessions N] [--messages M]\n"
		"                 [--size BYTES] [--starttls | --tls] [--cafile PEM]\n"
		"                 [--servername NAME] [--user U --password P]\n"
		"                 [--from ADDR] [--to ADDR] [--timeout SECONDS]\n"
		"Prints: messages=M sessions=N seconds=S msgs_per_s=R\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "sessions", required_argument, NULL, 's' },
		{ "messages", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 'z' },
		{ "starttls", no_argument, NULL, 'S' },
		{ "tls", no_argument, NULL, 'T' },
		{ "cafile", required_argument, NULL, 'c' },
		{ "servername", required_argument, NULL, 'n' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'w' },
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 's': opt.sessions = (unsigned)atoi(optarg); break;
		case 'm': opt.messages = (unsigned)atoi(optarg); break;
		case 'z': opt.size = (size_t)atol(optarg); break;
		case 'S': opt.tls = TLS_STARTTLS; break;
		case 'T': opt.tls = TLS_IMPLICIT; break;
		case 'c': opt.cafile = optarg; break;
		case 'n': opt.servername = optarg; break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.password = optarg; break;
		case 'f': opt.from = optarg; break;
		case 't': opt.to = optarg; break;
		case 'o': opt.timeout = (unsigned)atoi(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || opt.port <= 0 || opt.port > 65535 ||
	    opt.sessions == 0 || opt.sessions > 1000 || opt.messages == 0 ||
	    (opt.user != NULL) != (opt.password != NULL))
		usage();

	if (opt.tls != TLS_NONE) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (ssl_ctx == NULL) {
			fail(NULL, "SSL_CTX_new failed");
			return 1;
		}
		SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
		if (opt.cafile != NULL) {
			if (SSL_CTX_load_verify_locations(ssl_ctx, opt.cafile, NULL) != 1) {
				fail(NULL, "cannot load %s", opt.cafile);
				return 1;
			}
			SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
		}
	}
	build_message();
	build_auth();

	session *sessions = calloc(opt.sessions, sizeof(*sessions));
	pthread_t *threads = calloc(opt.sessions, sizeof(*threads));
	if (sessions == NULL || threads == NULL) {
		fprintf(stderr, "smtp_load: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < opt.sessions; i++) {
		sessions[i].index = i;
		sessions[i].fd = -1;
		sessions[i].count = opt.messages / opt.sessions +
			(i < opt.messages % opt.sessions ? 1 : 0);
	}
	double start = now();
	unsigned started = 0;
	for (unsigned i = 0; i < opt.sessions; i++) {
		if (pthread_create(&threads[i], NULL, session_main, &sessions[i]) != 0) {
			fail(NULL, "pthread_create failed");
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	double seconds = now() - start;
	for (unsigned i = 0; i < opt.sessions; i++)
		session_close(&sessions[i]);
	if (atomic_load(&failed))
		return 1;
	printf("messages=%u sessions=%u seconds=%.4f msgs_per_s=%.1f\n",
	       opt.messages, opt.sessions, seconds, opt.messages / seconds);
	free(sessions);
	free(threads);
	free(message);
	free(auth_plain);
	SSL_CTX_free(ssl_ctx);
	return 0;
}
