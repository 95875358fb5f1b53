/* Unit tests of conn and tls over a socketpair with the fixture
 * certificates: verified handshakes, every verification failure, buffered
 * lines and their limits, and STARTTLS input discarding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "tls.h"

static char fixture[512];

static const char *fx(const char *name)
{
	const char *dir = getenv("FIXTURES_DIR");
	snprintf(fixture, sizeof(fixture), "%s/%s", dir != NULL ? dir : "fixtures", name);
	return strdup(fixture);
}

typedef struct {
	conn *c;
	tls_server *srv;
	int result;
	char line[128];
} server_side;

static void *server_thread(void *arg)
{
	server_side *s = arg;
	const char *error;
	s->result = conn_starttls_server(s->c, s->srv, &error);
	if (s->result == 0) {
		const char *line;
		size_t len;
		if (conn_read_line(s->c, 1024, &line, &len) == 1) {
			snprintf(s->line, sizeof(s->line), "%.*s", (int)len, line);
			conn_consume(s->c, len);
			conn_write_str(s->c, "pong\r\n");
			conn_flush(s->c);
		}
	}
	return NULL;
}

/* Runs a handshake with the server using cert/key and the client trusting
 * the test CA and expecting hostname. Returns the client result and puts
 * the client error in error_r. */
static int handshake(const char *cert, const char *key, const char *hostname,
		     char *error_r, size_t errlen)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	const char *error = NULL;
	char *certp = (char *)fx(cert), *keyp = (char *)fx(key), *cap = (char *)fx("test-ca.crt");
	server_side s = { .c = conn_new(sv[0], "test client") };
	s.srv = tls_server_new(certp, keyp, &error);
	assert_non_null(s.srv);
	conn_set_timeout(s.c, 5000);
	tls_client *cli = tls_client_new(cap, &error);
	assert_non_null(cli);
	conn *c = conn_new(sv[1], "test server");
	conn_set_timeout(c, 5000);

	pthread_t tid;
	pthread_create(&tid, NULL, server_thread, &s);
	int ret = conn_starttls_client(c, cli, hostname, &error);
	if (ret == 0) {
		assert_true(conn_is_tls(c));
		assert_int_equal(conn_write_str(c, "ping\r\n"), 0);
		assert_int_equal(conn_flush(c), 0);
		const char *line;
		size_t len;
		assert_int_equal(conn_read_line(c, 1024, &line, &len), 1);
		assert_int_equal(len, 6);
		assert_memory_equal(line, "pong\r\n", 6);
		error_r[0] = '\0';
	} else {
		snprintf(error_r, errlen, "%s", error);
		/* Unblock the server side. */
		conn_free(&c);
	}
	pthread_join(tid, NULL);
	if (ret == 0)
		assert_string_equal(s.line, "ping\r\n");
	conn_free(&c);
	conn_free(&s.c);
	tls_server_free(&s.srv);
	tls_client_free(&cli);
	free(certp);
	free(keyp);
	free(cap);
	return ret;
}

static void test_tls_ok(void **state)
{
	(void)state;
	char err[512];
	assert_int_equal(handshake("localhost.crt", "localhost.key", "localhost", err, sizeof(err)), 0);
	assert_int_equal(handshake("localhost.crt", "localhost.key", "127.0.0.1", err, sizeof(err)), 0);
}

static void expect_fail(const char *cert, const char *key, const char *host, const char *reason)
{
	char err[512];
	assert_int_equal(handshake(cert, key, host, err, sizeof(err)), -1);
	if (strcasestr(err, reason) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, reason);
}

static void test_tls_failures(void **state)
{
	(void)state;
	expect_fail("wrongname.crt", "wrongname.key", "localhost", "Hostname mismatch");
	expect_fail("localhost.crt", "localhost.key", "mail.example.org", "Hostname mismatch");
	expect_fail("localhost.crt", "localhost.key", "127.0.0.2", "IP address mismatch");
	expect_fail("expired.crt", "expired.key", "localhost", "certificate has expired");
	expect_fail("untrusted.crt", "untrusted.key", "localhost", "self-signed certificate");
}

static void test_tls_bad_files(void **state)
{
	(void)state;
	const char *error = NULL;
	char *cert = (char *)fx("localhost.crt"), *key = (char *)fx("wrongname.key");
	assert_null(tls_server_new(cert, key, &error));
	if (strstr(error, "mismatch") == NULL)
		fail_msg("%s", error);
	assert_null(tls_server_new("/nonexistent.crt", key, &error));
	assert_non_null(strstr(error, "/nonexistent.crt"));
	assert_null(tls_client_new("/nonexistent-ca.pem", &error));
	free(cert);
	free(key);
}

static void test_generate_and_fingerprint(void **state)
{
	(void)state;
	char dir[] = "/tmp/sp-unit-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cert[128], key[128], fpr[128];
	snprintf(cert, sizeof(cert), "%s/c.crt", dir);
	snprintf(key, sizeof(key), "%s/c.key", dir);
	const char *error = NULL;
	assert_int_equal(tls_generate_self_signed(cert, key, &error), 0);
	assert_int_equal(tls_cert_fingerprint(cert, fpr, sizeof(fpr), &error), 0);
	assert_int_equal(strlen(fpr), 32 * 3 - 1);
	tls_server *srv = tls_server_new(cert, key, &error);
	assert_non_null(srv);
	tls_server_free(&srv);
	assert_null(srv);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

static void test_lines(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	conn *c = conn_new(sv[0], "peer");
	conn_set_timeout(c, 2000);
	const char *line;
	size_t len;

	/* A line that arrives in pieces. */
	assert_int_equal(write(sv[1], "a1 NO", 5), 5);
	assert_int_equal(conn_fill(c), 5);
	assert_int_equal(write(sv[1], "OP\r\nb2", 6), 6);
	assert_int_equal(conn_read_line(c, 100, &line, &len), 1);
	assert_int_equal(len, 9);
	assert_memory_equal(line, "a1 NOOP\r\n", 9);
	conn_consume(c, len);
	assert_int_equal(conn_input_len(c), 2);
	assert_true(conn_has_pending(c));

	/* Bytes pipelined after STARTTLS are dropped. */
	conn_discard_input(c);
	assert_int_equal(conn_input_len(c), 0);
	assert_false(conn_has_pending(c));

	/* Too long, with and without its LF. */
	char big[300];
	memset(big, 'x', sizeof(big));
	big[sizeof(big) - 1] = '\n';
	assert_int_equal(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
	assert_int_equal(conn_read_line(c, 100, &line, &len), -2);
	conn_discard_input(c);

	/* conn_wait_readable sees buffered input without polling. */
	assert_int_equal(write(sv[1], "z\r\n", 3), 3);
	assert_int_equal(conn_wait_readable(c, NULL, 1000), CONN_WAIT_A);
	assert_true(conn_fill(c) > 0);
	assert_int_equal(conn_wait_readable(c, NULL, 0), CONN_WAIT_A);
	conn_discard_input(c);
	assert_int_equal(conn_wait_readable(c, NULL, 10), 0);

	/* EOF before a complete line. */
	assert_int_equal(write(sv[1], "partial", 7), 7);
	close(sv[1]);
	assert_int_equal(conn_read_line(c, 100, &line, &len), 0);
	conn_free(&c);
	assert_null(c);
}

static void test_timeout(void **state)
{
	(void)state;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	conn *c = conn_new(sv[0], "silent peer");
	conn_set_timeout(c, 50);
	assert_int_equal(conn_fill(c), -1);
	assert_string_equal(conn_last_error(c), "timeout");
	conn_free(&c);
	close(sv[1]);
}

static void test_connect_refused(void **state)
{
	(void)state;
	const char *error = NULL;
	/* Port 1 on loopback: nothing listens there. */
	assert_null(conn_connect("127.0.0.1", 1, 1000, &error));
	assert_non_null(strstr(error, "127.0.0.1:1"));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_ok),
		cmocka_unit_test(test_tls_failures),
		cmocka_unit_test(test_tls_bad_files),
		cmocka_unit_test(test_generate_and_fingerprint),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_connect_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
