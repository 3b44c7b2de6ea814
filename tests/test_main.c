/*
 * test_main.c - runs the registered unit tests (see test.h).
 *
 *   test_unit                 run every test, each in a forked child
 *   test_unit --only PREFIX   run the tests whose name starts with PREFIX
 *   test_unit --no-fork       run in-process (for debuggers)
 *   test_unit --list          print the names
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define MAX_TESTS 4096

typedef struct { const char *name; test_fn fn; } test_entry;

static test_entry g_tests[MAX_TESTS]; /* filled by constructors before main */
static int g_n_tests;
static bool g_failed, g_skipped;

void test_register(const char *name, test_fn fn) {
    if (g_n_tests < MAX_TESTS) g_tests[g_n_tests++] = (test_entry){name, fn};
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    g_failed = true;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void test_skip(const char *why) {
    g_skipped = true;
    fprintf(stderr, "    skipped: %s\n", why);
}

bool test_failed(void) { return g_failed; }

const char *test_data_dir(void) {
    const char *d = getenv("MICA_TESTDATA");
    return d && *d ? d : "../shared/testdata";
}

void test_data_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", test_data_dir(), rel);
}

const char *test_tmp_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *b = getenv("MICA_BUILD");
        snprintf(dir, sizeof dir, "%s/test-tmp", b && *b ? b : "build");
        mkdir(b && *b ? b : "build", 0755);
        mkdir(dir, 0755);
    }
    return dir;
}

bool test_require_file(const char *path) {
    if (access(path, R_OK) == 0) return true;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        test_fail(__FILE__, __LINE__, "missing test data file %s", path);
    } else {
        char why[512];
        snprintf(why, sizeof why, "missing test data file %s", path);
        test_skip(why);
    }
    return false;
}

/* 0 pass, 1 fail, 2 skip */
static int run_one(const test_entry *t, bool use_fork) {
    if (!use_fork) {
        g_failed = g_skipped = false;
        t->fn();
        return g_failed ? 1 : g_skipped ? 2 : 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        g_failed = g_skipped = false;
        t->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(g_failed ? 1 : g_skipped ? 2 : 0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return 1;
    if (WIFEXITED(status)) return WEXITSTATUS(status) > 2 ? 1 : WEXITSTATUS(status);
    fprintf(stderr, "    crashed (signal %d)\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 1;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const test_entry *)a)->name, ((const test_entry *)b)->name);
}

int main(int argc, char **argv) {
    const char *only = NULL;
    bool use_fork = true, list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--no-fork") == 0) use_fork = false;
        else if (strcmp(argv[i], "--list") == 0) list = true;
        else { fprintf(stderr, "usage: %s [--only PREFIX] [--no-fork] [--list]\n", argv[0]); return 2; }
    }
    qsort(g_tests, (size_t)g_n_tests, sizeof g_tests[0], cmp_entry);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_n_tests; i++) {
        const test_entry *t = &g_tests[i];
        if (only && strncmp(t->name, only, strlen(only)) != 0) continue;
        if (list) { printf("%s\n", t->name); continue; }
        int r = run_one(t, use_fork);
        const char *tag = r == 0 ? "ok  " : r == 1 ? "FAIL" : "skip";
        printf("%s %s\n", tag, t->name);
        fflush(stdout);
        if (r == 0) passed++; else if (r == 1) failed++; else skipped++;
    }
    if (list) return 0;
    printf("unit: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
