/*
 * main.c - the `mica` command: subcommand dispatch, --help and --version.
 * Only cli/ and server/ talk to the user; the library returns statuses.
 */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "mica.h"

static const char usage[] =
    "usage: mica COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  run       generate text from a prompt\n"
    "  chat      chat with a model in the terminal\n"
    "  logits    write every position's logits of a prompt to a file\n"
    "  info      describe a GGUF model\n"
    "  tokenize  print the token ids of a text\n"
    "  convert   convert a model from another format to GGUF\n"
    "  bench     measure prompt and generation speed (and memory bandwidth)\n"
    "  serve     OpenAI-compatible HTTP server\n"
    "\n"
    "  mica COMMAND --help   options of a command\n"
    "  mica --version        print the version\n";

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-v")) {
        printf("mica %s\n", mica_version());
        return 0;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 2, argv + 2);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
    return cli_error("unknown command '%s' (see mica --help)", cmd);
}
