/* relay: the smallest possible TCP byte relay on loopback, as a reference
 * row of the benchmark: what any extra hop costs on this machine.
 *
 * usage: relay LISTEN_PORT TARGET_PORT   (both on 127.0.0.1)
 *
 * One thread per connection, poll() on both sockets, 128 KiB reads written
 * straight through, TCP_NODELAY on both sides, a listen backlog of 512: the
 * set-up the performance notes call the cheapest. It does not look at the
 * bytes, so TLS passes through it end to end. Runs until it is killed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUFFER (128 * 1024)

static int relay_target_port;

static int relay_loopback(int port, struct sockaddr_in *sin_r)
{
	memset(sin_r, 0, sizeof(*sin_r));
	sin_r->sin_family = AF_INET;
	sin_r->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, "127.0.0.1", &sin_r->sin_addr) == 1 ? 0 : -1;
}

static int relay_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *relay_connection(void *arg)
{
	int client = (int)(long)arg;
	int one = 1;
	char *buf = malloc(RELAY_BUFFER);
	struct sockaddr_in sin;
	int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (buf == NULL || upstream < 0 || relay_loopback(relay_target_port, &sin) < 0 ||
	    connect(upstream, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		goto out;
	setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = client, .events = POLLIN },
			{ .fd = upstream, .events = POLLIN },
		};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].revents == 0)
				continue;
			ssize_t n = read(pfd[i].fd, buf, RELAY_BUFFER);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 || relay_write_all(pfd[1 - i].fd, buf, (size_t)n) < 0)
				goto out;
		}
	}
out:
	free(buf);
	if (upstream >= 0)
		close(upstream);
	close(client);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: relay LISTEN_PORT TARGET_PORT\n");
		return 2;
	}
	int port = atoi(argv[1]);
	relay_target_port = atoi(argv[2]);
	struct sockaddr_in sin;
	int one = 1;
	signal(SIGPIPE, SIG_IGN);
	int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0 || relay_loopback(port, &sin) < 0) {
		perror("relay: socket");
		return 1;
	}
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(listener, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(listener, 512) < 0) {
		perror("relay: bind");
		return 1;
	}
	for (;;) {
		int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR)
				usleep(1000);	/* e.g. out of descriptors: no busy loop */
			continue;
		}
		pthread_t thread;
		if (pthread_create(&thread, NULL, relay_connection, (void *)(long)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(thread);
	}
}
