/* crypto: process-wide GMime set-up; PGP/MIME building and parsing live
 * beside it in this folder. */
#include "crypto.h"

#include <gmime/gmime.h>
#include <stdio.h>

void crypto_init(void)
{
	g_mime_init();
}

void crypto_shutdown(void)
{
	g_mime_shutdown();
}

const char *crypto_gmime_version(void)
{
	static char version[32];
	snprintf(version, sizeof(version), "%u.%u.%u", gmime_major_version,
		 gmime_minor_version, gmime_micro_version);
	return version;
}
