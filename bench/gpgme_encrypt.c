/* gpgme_encrypt: the raw-GPGME reference for the outbound benchmark. It
 * encrypts one message body N times on T threads and prints the ops/s.
 *
 * Each thread has its own GPGME context and takes the next operation from
 * a shared counter; input and output are memory buffers, armored, with
 * GPGME_ENCRYPT_ALWAYS_TRUST, as sealpost encrypts. The recipient keys are
 * looked up once before the clock starts (sealpost caches its lookups too),
 * and the clock runs from the start of the first thread to the end of the
 * last, so it holds nothing but the encryptions.
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

#define MAX_RECIPIENTS 16
#define ARMOR_HEAD "-----BEGIN PGP MESSAGE-----"

static const char *homedir;
static const char *fprs[MAX_RECIPIENTS];
static unsigned n_fprs;
static unsigned count = 1000;
static unsigned threads = 2;

static char *body;
static size_t body_len;
static gpgme_key_t keys[MAX_RECIPIENTS + 1];	/* NULL-terminated */

static atomic_uint next_op;
static atomic_bool failed;
static atomic_ullong out_bytes;
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, gpgme_error_t err)
{
	pthread_mutex_lock(&error_lock);
	if (!atomic_exchange(&failed, true))
		fprintf(stderr, "gpgme_encrypt: %s: %s\n", what, gpgme_strerror(err));
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
	gpgme_set_armor(ctx, 1);
	gpgme_set_textmode(ctx, 0);
	gpgme_set_pinentry_mode(ctx, GPGME_PINENTRY_MODE_ERROR);
	return ctx;
}

/* One encryption: 0, or -1 after reporting why. */
static int encrypt_once(gpgme_ctx_t ctx)
{
	gpgme_data_t in = NULL, out = NULL;
	int ret = -1;
	/* copy = 0: GPGME reads the shared buffer without copying it. */
	gpgme_error_t err = gpgme_data_new_from_mem(&in, body, body_len, 0);
	if (err == 0)
		err = gpgme_data_new(&out);
	if (err != 0) {
		fail("creating data buffers", err);
		goto done;
	}
	err = gpgme_op_encrypt(ctx, keys, GPGME_ENCRYPT_ALWAYS_TRUST, in, out);
	if (err != 0) {
		fail("encryption", err);
		goto done;
	}
	gpgme_encrypt_result_t r = gpgme_op_encrypt_result(ctx);
	if (r != NULL && r->invalid_recipients != NULL) {
		fail("a recipient's key was refused", r->invalid_recipients->reason);
		goto done;
	}
	size_t len = 0;
	char *text = gpgme_data_release_and_get_mem(out, &len);
	out = NULL;
	/* A run that produced nothing must not pass for a fast one. */
	if (text == NULL || len < sizeof(ARMOR_HEAD) ||
	    memcmp(text, ARMOR_HEAD, sizeof(ARMOR_HEAD) - 1) != 0) {
		gpgme_free(text);
		fail("encryption", gpg_error(GPG_ERR_NO_DATA));
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
	while (!atomic_load(&failed) && atomic_fetch_add(&next_op, 1) < count)
		if (encrypt_once(ctx) < 0)
			break;
	gpgme_release(ctx);
	return NULL;
}

static int read_body(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "gpgme_encrypt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 64 * 1024;
	body = malloc(cap);
	for (;;) {
		if (body == NULL) {
			fprintf(stderr, "gpgme_encrypt: out of memory\n");
			fclose(f);
			return -1;
		}
		body_len += fread(body + body_len, 1, cap - body_len, f);
		if (body_len < cap)
			break;
		cap *= 2;
		char *bigger = realloc(body, cap);
		if (bigger == NULL)
			free(body);
		body = bigger;
	}
	bool bad = ferror(f);
	fclose(f);
	if (bad || body_len == 0) {
		fprintf(stderr, "gpgme_encrypt: %s: %s\n", path,
			bad ? "read error" : "empty file");
		return -1;
	}
	return 0;
}

/* Looks each fingerprint up once; every thread shares the key objects. */
static int lookup_keys(void)
{
	gpgme_ctx_t ctx = new_context();
	if (ctx == NULL)
		return -1;
	for (unsigned i = 0; i < n_fprs; i++) {
		gpgme_error_t err = gpgme_get_key(ctx, fprs[i], &keys[i], 0);
		if (err != 0) {
			fprintf(stderr, "gpgme_encrypt: key %s: %s\n", fprs[i],
				gpgme_strerror(err));
			gpgme_release(ctx);
			return -1;
		}
	}
	gpgme_release(ctx);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: gpgme_encrypt --homedir GNUPGHOME --recipient FPR [--recipient FPR ...]\n"
		"                     [--count N] [--threads T] BODY-FILE\n"
		"Encrypts BODY-FILE N times (default 1000) on T threads (default 2).\n"
		"Prints: ops=N threads=T seconds=S ops_per_s=R out_bytes=MEAN\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "homedir", required_argument, NULL, 'H' },
		{ "recipient", required_argument, NULL, 'r' },
		{ "count", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': homedir = optarg; break;
		case 'r':
			if (n_fprs == MAX_RECIPIENTS) {
				fprintf(stderr, "gpgme_encrypt: at most %d recipients\n",
					MAX_RECIPIENTS);
				return 2;
			}
			fprs[n_fprs++] = optarg;
			break;
		case 'n': count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || homedir == NULL || n_fprs == 0 || count == 0 ||
	    threads == 0 || threads > 256)
		usage();

	setlocale(LC_ALL, "");
	if (gpgme_check_version("1.18.0") == NULL) {
		fprintf(stderr, "gpgme_encrypt: GPGME 1.18 or newer is required\n");
		return 1;
	}
	gpgme_error_t err = gpgme_set_engine_info(GPGME_PROTOCOL_OpenPGP, NULL, homedir);
	if (err != 0) {
		fprintf(stderr, "gpgme_encrypt: %s: %s\n", homedir, gpgme_strerror(err));
		return 1;
	}
	if (read_body(argv[optind]) < 0 || lookup_keys() < 0)
		return 1;

	pthread_t *tids = calloc(threads, sizeof(*tids));
	if (tids == NULL) {
		fprintf(stderr, "gpgme_encrypt: out of memory\n");
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
	for (unsigned i = 0; i < n_fprs; i++)
		gpgme_key_unref(keys[i]);
	free(tids);
	free(body);
	if (atomic_load(&failed))
		return 1;
	printf("ops=%u threads=%u seconds=%.4f ops_per_s=%.1f out_bytes=%llu\n",
	       count, threads, seconds, count / seconds,
	       (unsigned long long)(atomic_load(&out_bytes) / count));
	return 0;
}
