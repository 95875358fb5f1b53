/* imap_client: the benchmark's IMAP client, in C so that the client's own
 * cost (TLS included) is what a real mail client pays, not an interpreter's.
 *
 * usage: imap_client --port PORT [--tls --cafile PEM [--servername NAME]]
 *                    --user USER --password PASSWORD
 *
 * It connects (TCP_NODELAY), logs in, selects INBOX, prints "ready", then
 * reads commands on stdin, one per line, and answers each with one line:
 *   bulk      UID FETCH 1:* (BODY.PEEK[])  -> "SECONDS BYTES FETCHES"
 *   rtt N     N sequential UID FETCH n (FLAGS), n = 1..N, each waiting for
 *             its tagged OK                 -> "SECONDS"
 *   quit      LOGOUT and exit
 * The clock runs from sending the (first) command to the tagged OK. The
 * response is read into one buffer and only its end is looked at for the
 * tagged completion, and TLS reads ahead (several records per read()), so
 * the client costs little more than its reads and the decryption. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int client_fd = -1;
static SSL *client_ssl;
static char *buf;
static size_t buf_cap;
static unsigned tag_no;

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "imap_client: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	unsigned long e;
	while ((e = ERR_get_error()) != 0)
		fprintf(stderr, "imap_client: %s\n", ERR_error_string(e, NULL));
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void send_all(const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n;
		if (client_ssl != NULL) {
			size_t done = 0;
			if (SSL_write_ex(client_ssl, data, len, &done) != 1)
				die("TLS write failed%s", "");
			n = (ssize_t)done;
		} else {
			n = send(client_fd, data, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				die("send: %s", strerror(errno));
		}
		data += n;
		len -= (size_t)n;
	}
}

static size_t recv_some(char *into, size_t room)
{
	for (;;) {
		if (client_ssl != NULL) {
			size_t got = 0;
			if (SSL_read_ex(client_ssl, into, room, &got) != 1)
				die("TLS read failed or connection closed%s", "");
			return got;
		}
		ssize_t n = recv(client_fd, into, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("recv: %s", strerror(errno));
		if (n == 0)
			die("connection closed by the server%s", "");
		return (size_t)n;
	}
}

/* True when buf[0..len) ends with a complete line starting with prefix. */
static bool ends_with_line(size_t len, const char *prefix)
{
	if (len < 2 || buf[len - 2] != '\r' || buf[len - 1] != '\n')
		return false;
	size_t start = len - 2;
	while (start > 0 && buf[start - 1] != '\n')
		start--;
	size_t plen = strlen(prefix);
	return len - start >= plen && memcmp(buf + start, prefix, plen) == 0;
}

/* Reads until the last line received starts with prefix; returns the
 * response length. */
static size_t read_until(const char *prefix)
{
	size_t len = 0;
	for (;;) {
		if (buf_cap - len < 65536) {
			buf_cap *= 2;
			buf = realloc(buf, buf_cap);
			if (buf == NULL)
				die("out of memory%s", "");
		}
		len += recv_some(buf + len, buf_cap - len);
		if (ends_with_line(len, prefix))
			return len;
	}
}

/* Sends "TAG line", reads to the tagged reply, checks it is OK. */
static size_t command(const char *line, char *tag_r, size_t tag_size)
{
	char cmd[512];
	tag_no++;
	snprintf(tag_r, tag_size, "b%u ", tag_no);
	int n = snprintf(cmd, sizeof(cmd), "%s%s\r\n", tag_r, line);
	send_all(cmd, (size_t)n);
	size_t len = read_until(tag_r);
	char ok[32];
	snprintf(ok, sizeof(ok), "%sOK", tag_r);
	if (!ends_with_line(len, ok))
		die("command failed: %s", line);
	return len;
}

static void cmd_bulk(void)
{
	char tag[16];
	double t0 = now();
	size_t len = command("UID FETCH 1:* (BODY.PEEK[])", tag, sizeof(tag));
	double seconds = now() - t0;
	unsigned fetches = 0;
	for (const char *p = buf; (p = memmem(p, (size_t)(buf + len - p), " FETCH (", 8)) != NULL; p += 8)
		fetches++;
	printf("%.6f %zu %u\n", seconds, len, fetches);
}

static void cmd_rtt(unsigned n)
{
	char cmd[64], tag[16], ok[32];
	double t0 = now();
	size_t len = 0;
	for (unsigned uid = 1; uid <= n; uid++) {
		tag_no++;
		snprintf(tag, sizeof(tag), "r%u ", tag_no);
		int m = snprintf(cmd, sizeof(cmd), "%sUID FETCH %u (FLAGS)\r\n", tag, uid);
		send_all(cmd, (size_t)m);
		len = read_until(tag);
	}
	double seconds = now() - t0;
	snprintf(ok, sizeof(ok), "%sOK", tag);
	if (n > 0 && !ends_with_line(len, ok))
		die("a round trip did not end with OK%s", "");
	printf("%.6f\n", seconds);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "tls", no_argument, NULL, 'T' },
		{ "cafile", required_argument, NULL, 'c' },
		{ "servername", required_argument, NULL, 'n' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	int port = 0;
	bool tls = false;
	const char *cafile = NULL, *servername = "localhost";
	const char *user = NULL, *password = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'T': tls = true; break;
		case 'c': cafile = optarg; break;
		case 'n': servername = optarg; break;
		case 'u': user = optarg; break;
		case 'w': password = optarg; break;
		default: goto usage;
		}
	}
	if (optind != argc || port <= 0 || port > 65535 || user == NULL ||
	    password == NULL || (tls && cafile == NULL))
		goto usage;

	buf_cap = 32 * 1024 * 1024;
	buf = malloc(buf_cap);
	if (buf == NULL)
		die("out of memory%s", "");
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct timeval tv = { .tv_sec = 120 };
	setsockopt(client_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(client_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(client_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		die("connect: %s", strerror(errno));
	if (tls) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
			die("cannot load %s", cafile);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		/* An efficient client: one read() takes in several records. */
		SSL_CTX_set_read_ahead(ctx, 1);
		SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
		client_ssl = SSL_new(ctx);
		SSL_set_fd(client_ssl, client_fd);
		SSL_set_tlsext_host_name(client_ssl, servername);
		SSL_set1_host(client_ssl, servername);
		if (SSL_connect(client_ssl) != 1)
			die("TLS handshake with %s failed", servername);
	}
	read_until("* OK");
	char line[1024], tag[16];
	if ((size_t)snprintf(line, sizeof(line), "LOGIN \"%s\" \"%s\"", user, password) >= sizeof(line))
		die("credentials too long%s", "");
	command(line, tag, sizeof(tag));
	command("SELECT INBOX", tag, sizeof(tag));
	printf("ready\n");
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin) != NULL) {
		unsigned n;
		if (strcmp(line, "bulk\n") == 0) {
			cmd_bulk();
		} else if (sscanf(line, "rtt %u", &n) == 1) {
			cmd_rtt(n);
		} else if (strcmp(line, "quit\n") == 0) {
			break;
		} else {
			die("unknown command: %s", line);
		}
		fflush(stdout);
	}
	tag_no++;
	snprintf(line, sizeof(line), "b%u LOGOUT\r\n", tag_no);
	send_all(line, strlen(line));
	return 0;

usage:
	fprintf(stderr, "usage: imap_client --port PORT [--tls --cafile PEM [--servername NAME]]\n"
		"                   --user USER --password PASSWORD\n");
	return 2;
}
