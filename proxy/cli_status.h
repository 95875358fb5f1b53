/* cli_status: the `sealpost status` command — accounts and their listeners,
 * usable keys, pending key changes and recent refusals, at a glance. */
#ifndef SEALPOST_CLI_STATUS_H
#define SEALPOST_CLI_STATUS_H

/* argv[0] is "status". Returns the exit code of docs/cli.md: 0 done, 1 the
 * keyring or database could not be read, 2 usage, 3 the configuration is
 * invalid. */
int cli_status_main(int argc, char **argv);

#endif
