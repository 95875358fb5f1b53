/* tls: OpenSSL contexts for the client-facing side (sealpost's own
 * certificate) and the upstream side (mandatory verification). */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <openssl/rand.h>
#include <openssl/bn.h>
#include <stdlib.h>

struct tls_server {
	SSL_CTX *ctx;
};

struct tls_client {
	SSL_CTX *ctx;
};

static _Thread_local char tls_error_buf[512];

static const char *tls_error(const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "";
	if (e != 0)
		ERR_error_string_n(e, reason, sizeof(reason));
	else if (errno != 0)
		snprintf(reason, sizeof(reason), "%s", strerror(errno));
	ERR_clear_error();
	snprintf(tls_error_buf, sizeof(tls_error_buf), "%s%s%s%s%s", what,
		 path != NULL ? " " : "", path != NULL ? path : "",
		 reason[0] != '\0' ? ": " : "", reason);
	return tls_error_buf;
}

/* Settings both sides share: TLS 1.2 at least, no compression or
 * renegotiation, and partial writes for the non-blocking conn layer. */
static SSL_CTX *tls_ctx_new(const SSL_METHOD *method, const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (ctx == NULL) {
		*error_r = tls_error("cannot create TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

tls_server *tls_server_new(const char *cert_path, const char *key_path,
			   const char **error_r)
{
	SSL_CTX *ctx = tls_ctx_new(TLS_server_method(), error_r);
	if (ctx == NULL)
		return NULL;
	errno = 0;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		*error_r = tls_error("cannot load certificate", cert_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	errno = 0;
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		*error_r = tls_error("cannot load private key", key_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = tls_error("private key does not match certificate", key_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	tls_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		SSL_CTX_free(ctx);
		*error_r = "out of memory";
		return NULL;
	}
	srv->ctx = ctx;
	return srv;
}

void tls_server_free(tls_server **srv)
{
	if (*srv == NULL)
		return;
	SSL_CTX_free((*srv)->ctx);
	free(*srv);
	*srv = NULL;
}

tls_client *tls_client_new(const char *ca_file, const char **error_r)
{
	SSL_CTX *ctx = tls_ctx_new(TLS_client_method(), error_r);
	if (ctx == NULL)
		return NULL;
	/* Verification is never optional: a failed chain or name check fails
	 * the handshake itself. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	errno = 0;
	int ok = ca_file != NULL ?
		SSL_CTX_load_verify_locations(ctx, ca_file, NULL) :
		SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		*error_r = tls_error("cannot load CA certificates",
				     ca_file != NULL ? ca_file : "(system store)");
		SSL_CTX_free(ctx);
		return NULL;
	}
	tls_client *cli = calloc(1, sizeof(*cli));
	if (cli == NULL) {
		SSL_CTX_free(ctx);
		*error_r = "out of memory";
		return NULL;
	}
	cli->ctx = ctx;
	return cli;
}

void tls_client_free(tls_client **cli)
{
	if (*cli == NULL)
		return;
	SSL_CTX_free((*cli)->ctx);
	free(*cli);
	*cli = NULL;
}

void *tls_server_ssl_ctx(tls_server *srv)
{
	return srv->ctx;
}

void *tls_client_ssl_ctx(tls_client *cli)
{
	return cli->ctx;
}

static int tls_add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	int ret = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return ret;
}

static int tls_write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	int ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
			     : PEM_write_X509(f, cert);
	if (fclose(f) != 0)
		ok = 0;
	return ok == 1 ? 0 : -1;
}

int tls_generate_self_signed(const char *cert_path, const char *key_path,
			     const char **error_r)
{
	int ret = -1;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = X509_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char serial[16];

	if (key == NULL || cert == NULL || name == NULL) {
		*error_r = tls_error("cannot create key", NULL);
		goto out;
	}
	X509_set_version(cert, 2);
	if (RAND_bytes(serial, sizeof(serial)) != 1) {
		*error_r = tls_error("cannot create serial", NULL);
		goto out;
	}
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
	BN_free(bn);
	/* A little back-dating tolerates clock skew between client and host. */
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
				   (const unsigned char *)"sealpost", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_subject_name(cert, name);
	X509_set_issuer_name(cert, name);
	X509_set_pubkey(cert, key);
	if (tls_add_ext(cert, NID_subject_alt_name,
			"DNS:localhost,IP:127.0.0.1,IP:::1") < 0 ||
	    tls_add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tls_add_ext(cert, NID_ext_key_usage, "serverAuth") < 0) {
		*error_r = tls_error("cannot build certificate", NULL);
		goto out;
	}
	if (X509_sign(cert, key, EVP_sha256()) == 0) {
		*error_r = tls_error("cannot sign certificate", NULL);
		goto out;
	}
	errno = 0;
	if (tls_write_pem(key_path, 0600, key, NULL) < 0) {
		*error_r = tls_error("cannot write", key_path);
		goto out;
	}
	errno = 0;
	if (tls_write_pem(cert_path, 0644, NULL, cert) < 0) {
		*error_r = tls_error("cannot write", cert_path);
		goto out;
	}
	ret = 0;
out:
	X509_NAME_free(name);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

int tls_cert_fingerprint(const char *cert_path, char *buf, size_t bufsize,
			 const char **error_r)
{
	FILE *f = fopen(cert_path, "r");
	if (f == NULL) {
		*error_r = tls_error("cannot open", cert_path);
		return -1;
	}
	X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (cert == NULL) {
		*error_r = tls_error("cannot read certificate", cert_path);
		return -1;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	int ok = X509_digest(cert, EVP_sha256(), md, &len);
	X509_free(cert);
	if (ok != 1 || bufsize < len * 3) {
		*error_r = "cannot compute certificate fingerprint";
		return -1;
	}
	for (unsigned int i = 0; i < len; i++)
		snprintf(buf + i * 3, bufsize - i * 3, i + 1 < len ? "%02X:" : "%02X", md[i]);
	return 0;
}
