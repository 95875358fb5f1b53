/* sealpost-gpgworker: an OpenPGP worker process of sealpost serve
 * (crypto/gpgproc.h), as a program of its own that links only what
 * OpenPGP needs, so that the forks GPGME makes of it to start gpg are
 * cheap. Started by sealpost only. */
#include <stdio.h>
#include <string.h>

#include "gpgproc.h"

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], CRYPTO_GPGPROC_WORKER_ARG) != 0) {
		fprintf(stderr, "sealpost-gpgworker is started by sealpost serve only\n");
		return 2;
	}
	return crypto_gpgproc_worker_main(argc, argv);
}
