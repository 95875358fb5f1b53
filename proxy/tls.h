/* tls: OpenSSL contexts for both sides. The client-facing side uses
 * sealpost's own certificate (generated on first start); the upstream side
 * always verifies the chain and the host name. */
#ifndef SEALPOST_TLS_H
#define SEALPOST_TLS_H

#include <stddef.h>

typedef struct tls_server tls_server;
typedef struct tls_client tls_client;

/* Loads a PEM certificate (chain) and key. */
tls_server *tls_server_new(const char *cert_path, const char *key_path,
			   const char **error_r);
void tls_server_free(tls_server **srv);

/* ca_file NULL = the system trust store. Peer verification is mandatory. */
tls_client *tls_client_new(const char *ca_file, const char **error_r);
void tls_client_free(tls_client **cli);

/* Creates a new P-256 key and a self-signed certificate for localhost,
 * 127.0.0.1 and ::1 (files mode 0600 / 0644), valid 10 years. */
int tls_generate_self_signed(const char *cert_path, const char *key_path,
			     const char **error_r);

/* "AB:CD:..." SHA-256 of the certificate's DER; buf must hold 96 bytes. */
int tls_cert_fingerprint(const char *cert_path, char *buf, size_t bufsize,
			 const char **error_r);

/* Internal to conn.c: the OpenSSL SSL_CTX behind each. */
void *tls_server_ssl_ctx(tls_server *srv);
void *tls_client_ssl_ctx(tls_client *cli);

#endif
