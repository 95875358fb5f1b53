/* gpgme_decrypt: the raw-GPGME reference for the inbound benchmark. It
 * decrypts a set of armored OpenPGP messages on T threads and prints the
 * ops/s.
 *
 * The input file holds the messages one after another, each starting with
 * "-----BEGIN PGP MESSAGE-----" (the bytes of the encrypted parts as they
 * are stored). Each thread has its own GPGME context and takes the next
 * message from a shared counter; input and output are memory buffers, and
 * every message is decrypted and verified (GPGME_DECRYPT_VERIFY) offline,
 * as sealpost decrypts. The clock runs from the start of the first thread
 * to the end of the last, so it holds nothing but the decryptions.
 */
#include <errno.h>
#include <getopt.h>
#include <gpgme.h>
#include <locale.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ARMOR_HEAD "-----BEGIN PGP MESSAGE-----"

static const char *homedir;
static unsigned threads = 2;
static bool verify = true;

static char *input;
static size_t input_len;
static const char **msgs;	/* start of each message in input */
static size_t *msg_lens;
static unsigned n_msgs;

static atomic_uint next_op;
static atomic_bool failed;
static atomic_ullong out_bytes;
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, gpgme_error_t err)
{
	pthread_mutex_lock(&error_lock);
	if (!atomic_exchange(&failed, true))
		fprintf(stderr, "gpgme_decrypt: %s: %s\n", what, gpgme_strerror(err));
	pthread_mutex_unlock(&error_lock);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static gpgme_ctx_t new_context(void)
{
	gpgme_ctx_t ctx;
	gpgme_error_t err = gpgme_new(&ctx);
	if (err != 0) {
		fail("gpgme_new", err);
		return NULL;
	}
	gpgme_set_protocol(ctx, GPGME_PROTOCOL_OpenPGP);
	gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_ERROR);
	gpgme_set_offline(ctx, 1);
	return ctx;
}

/* One decryption: 0, or -1 after reporting why. */
static int decrypt_once(gpgme_ctx_t ctx, unsigned i)
{
	gpgme_data_t in = NULL, out = NULL;
	int ret = -1;
	/* copy = 0: GPGME reads the shared buffer without copying it. */
	gpgme_error_t err = gpgme_data_new_from_mem(&in, msgs[i], msg_lens[i], 0);
	if (err == 0)
		err = gpgme_data_new(&out);
	if (err != 0) {
		fail("creating data buffers", err);
		goto done;
	}
	err = gpgme_op_decrypt_ext(ctx, verify ? GPGME_DECRYPT_VERIFY : 0, in, out);
	if (err != 0) {
		fail("decryption", err);
		goto done;
	}
	size_t len = 0;
	char *text = gpgme_data_release_and_get_mem(out, &len);
	out = NULL;
	/* A run that produced nothing must not pass for a fast one. */
	if (text == NULL || len == 0) {
		gpgme_free(text);
		fail("decryption", gpg_error(GPG_ERR_NO_DATA));
		goto done;
	}
	gpgme_free(text);
	atomic_fetch_add(&out_bytes, len);
	ret = 0;
done:
	if (in != NULL)
		gpgme_data_release(in);
	if (out != NULL)
		gpgme_data_release(out);
	return ret;
}

static void *worker_main(void *arg)
{
	(void)arg;
	gpgme_ctx_t ctx = new_context();
	if (ctx == NULL)
		return NULL;
	unsigned i;
	while (!atomic_load(&failed) && (i = atomic_fetch_add(&next_op, 1)) < n_msgs)
		if (decrypt_once(ctx, i) < 0)
			break;
	gpgme_release(ctx);
	return NULL;
}

static int read_input(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "gpgme_decrypt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 1024 * 1024;
	input = malloc(cap + 1);
	for (;;) {
		if (input == NULL) {
			fprintf(stderr, "gpgme_decrypt: out of memory\n");
			fclose(f);
			return -1;
		}
		input_len += fread(input + input_len, 1, cap - input_len, f);
		if (input_len < cap)
			break;
		cap *= 2;
		char *bigger = realloc(input, cap + 1);
		if (bigger == NULL)
			free(input);
		input = bigger;
	}
	bool bad = ferror(f);
	fclose(f);
	if (bad) {
		fprintf(stderr, "gpgme_decrypt: %s: read error\n", path);
		return -1;
	}
	input[input_len] = '\0';
	/* Split at every armor header that starts a line. */
	size_t cap_msgs = 1024;
	msgs = malloc(cap_msgs * sizeof(*msgs));
	if (msgs == NULL)
		return -1;
	for (const char *p = input; (p = strstr(p, ARMOR_HEAD)) != NULL; p++) {
		if (p != input && p[-1] != '\n')
			continue;
		if (n_msgs == cap_msgs) {
			cap_msgs *= 2;
			const char **more = realloc(msgs, cap_msgs * sizeof(*msgs));
			if (more == NULL)
				return -1;
			msgs = more;
		}
		msgs[n_msgs++] = p;
	}
	if (n_msgs == 0) {
		fprintf(stderr, "gpgme_decrypt: %s: no armored message\n", path);
		return -1;
	}
	msg_lens = malloc(n_msgs * sizeof(*msg_lens));
	if (msg_lens == NULL)
		return -1;
	for (unsigned i = 0; i < n_msgs; i++) {
		const char *end = i + 1 < n_msgs ? msgs[i + 1] : input + input_len;
		msg_lens[i] = (size_t)(end - msgs[i]);
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: gpgme_decrypt --homedir GNUPGHOME [--threads T] [--no-verify] FILE\n"
		"Decrypts every armored message in FILE (concatenated) on T threads\n"
		"(default 2), verifying signatures unless --no-verify.\n"
		"Prints: ops=N threads=T seconds=S ops_per_s=R out_bytes=MEAN\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "homedir", required_argument, NULL, 'H' },
		{ "threads", required_argument, NULL, 't' },
		{ "no-verify", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': homedir = optarg; break;
		case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'V': verify = false; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || homedir == NULL || threads == 0 || threads > 256)
		usage();

	setlocale(LC_ALL, "");
	if (gpgme_check_version("1.18.0") == NULL) {
		fprintf(stderr, "gpgme_decrypt: GPGME 1.18 or newer is required\n");
		return 1;
	}
	gpgme_error_t err = gpgme_set_engine_info(GPGME_PROTOCOL_OpenPGP, NULL, homedir);
	if (err != 0) {
		fprintf(stderr, "gpgme_decrypt: %s: %s\n", homedir, gpgme_strerror(err));
		return 1;
	}
	if (read_input(argv[optind]) < 0)
		return 1;

	pthread_t *tids = calloc(threads, sizeof(*tids));
	if (tids == NULL) {
		fprintf(stderr, "gpgme_decrypt: out of memory\n");
		return 1;
	}
	double start = now();
	unsigned started = 0;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&tids[i], NULL, worker_main, NULL) != 0) {
			fail("starting a thread", gpg_error(GPG_ERR_EAGAIN));
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	double seconds = now() - start;
	free(tids);
	free(msgs);
	free(msg_lens);
	free(input);
	if (atomic_load(&failed))
		return 1;
	printf("ops=%u threads=%u seconds=%.4f ops_per_s=%.1f out_bytes=%llu\n",
	       n_msgs, threads, seconds, n_msgs / seconds,
	       (unsigned long long)(atomic_load(&out_bytes) / n_msgs));
	return 0;
}
