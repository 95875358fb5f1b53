/* api_static: the web console's own files (plugin/console), built into the
 * binary so that an installed sealpost needs no data directory to serve them. */
#ifndef SEALPOST_API_STATIC_H
#define SEALPOST_API_STATIC_H

#include <stddef.h>

typedef struct {
	const char *name;		/* a bare file name: "index.html", "api.js" */
	const char *content_type;
	const unsigned char *data;
	size_t size;
} api_static_file;

/* Generated at build time by scripts/embed_assets.py. */
extern const api_static_file api_static_files[];
extern const size_t api_static_n_files;

/* The page the console starts from (served at "/"). */
#define API_STATIC_INDEX "index.html"

/* Sent with every console file: only its own scripts, styles and API may be
 * used, no inline script or style, no framing, no forms sent anywhere. */
#define API_STATIC_CSP \
	"default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; " \
	"img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; " \
	"form-action 'none'"

/* The file called name, compared exactly (so "..", "a/b" or "" never match
 * anything), or NULL. */
const api_static_file *api_static_find(const char *name);

#endif
