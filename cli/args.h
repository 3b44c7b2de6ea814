/*
 * args.h - command-line parsing helpers shared by the subcommands: typed
 * option values with range checks, and the one-line error convention
 * ("mica: error: ..." on stderr, exit status 1).
 */
#ifndef MICA_CLI_ARGS_H
#define MICA_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* Prints "mica: error: <msg>" on stderr and returns 1 (the exit status). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Cursor over argv for one subcommand. cli_next returns the next argument or
 * NULL; cli_value returns the value of an option that takes one (reporting a
 * missing value).
 */
typedef struct cli_args {
    int argc, i;
    char **argv;
    bool failed;
} cli_args;

const char *cli_next(cli_args *a);
const char *cli_value(cli_args *a, const char *opt);

/* Parse helpers: false (after printing an error naming opt) if malformed or out of [lo, hi]. */
bool cli_parse_i64(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_f32(const char *opt, const char *s, double lo, double hi, float *out);
bool cli_parse_u64(const char *opt, const char *s, uint64_t *out);

/*
 * Parses a byte size: an integer with an optional K, M, G or T suffix
 * (powers of 1024; "4G", "4GiB", "512M", "4096"), "auto" (0) or "unlimited"
 * (UINT64_MAX). False (after printing an error naming opt) otherwise.
 */
bool cli_parse_size(const char *opt, const char *s, uint64_t *out);

struct mica_model;
/* Prints mica_model_note(m), if any, as "mica: note: ..." on stderr. */
void cli_print_model_note(const struct mica_model *m);

/*
 * Expert-streaming report on stderr for --stats: `label`, the counters'
 * change since *prev (hit rate, bytes read, read GB/s, I/O stall, cache
 * size), n_tokens tokens; *prev is then updated. prev may be a zeroed
 * snapshot. Prints "experts: not streamed" once when the model is mapped.
 */
struct mica_expert_stats;
void cli_print_expert_stats(const struct mica_model *m, const char *label, int n_tokens,
                            struct mica_expert_stats *prev);

/* Parses "1 2 3" (spaces or commas) into a malloc'd array; false on a bad id. */
bool cli_parse_ids(const char *opt, const char *s, int32_t **ids, int32_t *n);

/* Monotonic seconds. */
double cli_now(void);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv); /* server/serve.c */

#endif /* MICA_CLI_ARGS_H */
