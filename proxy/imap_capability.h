/* imap_capability: which of the provider's capabilities a client may see.
 * sealpost must keep seeing every byte of content, so extensions that hide
 * or bypass it are removed; STARTTLS and AUTH describe the client's leg. */
#ifndef SEALPOST_IMAP_CAPABILITY_H
#define SEALPOST_IMAP_CAPABILITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	/* Before login: STARTTLS, LOGINDISABLED and AUTH= are about the
	 * client's connection to sealpost, not the provider's. */
	bool pre_auth;
	bool client_tls;		/* the client's leg is TLS */
	bool plaintext_auth_allowed;	/* LOGIN/AUTH allowed on a plain leg */
} imap_capability_context;

/* Space-separated atoms of caps (len bytes) that pass the filter, plus
 * what the context adds, into out (NUL-terminated). out needs len + 64
 * bytes; returns the length written, or -1 if it does not fit. */
int imap_capability_filter(const uint8_t *caps, size_t len,
			   const imap_capability_context *ctx, char *out,
			   size_t out_size);

/* True if the list holds the capability (ASCII case-insensitive). */
bool imap_capability_has(const char *caps, const char *name);

/* Rewrites one whole response line that carries a capability list
 * ("* CAPABILITY ..." or a status with "[CAPABILITY ...]") with the list
 * filtered. out needs len + 64 bytes. Returns the new length, 0 if the
 * line carries no capability list (forward it unchanged), -1 on error. */
int imap_capability_rewrite_line(const uint8_t *line, size_t len,
				 const imap_capability_context *ctx, char *out,
				 size_t out_size);

/* The atoms of a list, one after another: *pos starts at 0. Returns false
 * at the end. */
bool imap_capability_next(const char *caps, size_t *pos,
			  const char **atom_r, size_t *len_r);

#endif
