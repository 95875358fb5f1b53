/* cli_keys: the `sealpost keys` command — list, generate, import, export,
 * delete, verify, reject and unlock the keys of sealpost's GnuPG keyring. */
#ifndef SEALPOST_CLI_KEYS_H
#define SEALPOST_CLI_KEYS_H

/* argv[0] is "keys". Returns the exit code of docs/cli.md: 0 done, 1 the
 * keyring or database failed or the input was refused, 2 usage, 3 the
 * configuration is invalid. */
int cli_keys_main(int argc, char **argv);

#endif
