/* keystore: initialisation of GPGME and libsodium, and the sealpost-owned
 * GNUPGHOME. Key and policy management build on this. */
#include "keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <gpgme.h>
#include <locale.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char keystore_error[512];

static int keystore_prepare_home(const char *home, const char **error_r)
{
	struct stat st;

	if (stat(home, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			snprintf(keystore_error, sizeof(keystore_error),
				 "gnupg_home %s is not a directory", home);
			*error_r = keystore_error;
			return -1;
		}
		return 0;
	}
	if (mkdir(home, 0700) < 0) {
		snprintf(keystore_error, sizeof(keystore_error),
			 "cannot create gnupg_home %s: %s", home, strerror(errno));
		*error_r = keystore_error;
		return -1;
	}
	/* Parallel gpg processes otherwise contend for the random_seed lock and
	 * one of them sleeps 250 ms (see docs/performance.md). */
	char path[4096];
	snprintf(path, sizeof(path), "%s/gpg.conf", home);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd >= 0) {
		static const char conf[] = "no-random-seed-file\n";
		ssize_t ret = write(fd, conf, sizeof(conf) - 1);
		close(fd);
		if (ret != (ssize_t)sizeof(conf) - 1) {
			snprintf(keystore_error, sizeof(keystore_error),
				 "cannot write %s", path);
			*error_r = keystore_error;
			return -1;
		}
	}
	return 0;
}

int keystore_init(const char *gnupg_home, const char **error_r)
{
	if (sodium_init() < 0) {
		*error_r = "libsodium failed to initialise";
		return -1;
	}
	setlocale(LC_CTYPE, "");
	if (gpgme_check_version("1.18.0") == NULL) {
		*error_r = "GPGME 1.18 or newer is required";
		return -1;
	}
	gpgme_set_locale(NULL, LC_CTYPE, setlocale(LC_CTYPE, NULL));
	if (gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP) != GPG_ERR_NO_ERROR) {
		*error_r = "gpg (GnuPG) is not installed or too old";
		return -1;
	}
	if (gnupg_home != NULL) {
		if (keystore_prepare_home(gnupg_home, error_r) < 0)
			return -1;
		gpgme_error_t err = gpgme_set_engine_info(GPGME_PROTOCOL_OpenPGP,
							  NULL, gnupg_home);
		if (err != GPG_ERR_NO_ERROR) {
			snprintf(keystore_error, sizeof(keystore_error),
				 "cannot use gnupg_home %s: %s", gnupg_home,
				 gpgme_strerror(err));
			*error_r = keystore_error;
			return -1;
		}
	}
	return 0;
}

const char *keystore_gpgme_version(void)
{
	return gpgme_check_version(NULL);
}

const char *keystore_sodium_version(void)
{
	return sodium_version_string();
}
