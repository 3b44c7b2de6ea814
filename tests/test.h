/*
 * test.h - the unit-test harness. A test is a function declared with
 * TEST(name); it registers itself at start-up (constructor), so test files
 * never touch a shared list. tests/test_main.c runs all tests or those whose
 * name starts with --only PREFIX, each in its own forked process so a crash
 * fails one test, and prints "N passed, N failed".
 *
 * Assertions record a failure with file and line and return from the test.
 * Test data lives under test_data_dir() (MICA_TESTDATA, default
 * ../shared/testdata); test_require_file() makes a missing file a failure when
 * CI=true and a skip otherwise.
 */
#ifndef MICA_TEST_H
#define MICA_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *why);
bool test_failed(void);
/* Directory of the shared test data (no trailing slash). */
const char *test_data_dir(void);
/* Writes test_data_dir()/rel into buf. */
void test_data_path(char *buf, size_t cap, const char *rel);
/* Directory for scratch files of this test run (created on demand). */
const char *test_tmp_dir(void);
/* True if the file exists; otherwise fails (CI) or skips (not CI) and returns false. */
bool test_require_file(const char *path);

#define TEST(name)                                                        \
    static void test_##name(void);                                        \
    __attribute__((constructor)) static void test_reg_##name(void) {      \
        test_register(#name, test_##name);                                \
    }                                                                     \
    static void test_##name(void)

#define ASSERT_TRUE(c) do { if (!(c)) { test_fail(__FILE__, __LINE__, "expected %s", #c); return; } } while (0)
#define ASSERT_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
    if (a_ != b_) { test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_); return; } } while (0)
#define ASSERT_NEAR(a, b, tol) do { double a_ = (double)(a), b_ = (double)(b); \
    if (!(fabs(a_ - b_) <= (tol))) { test_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); return; } } while (0)
#define ASSERT_STREQ(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (strcmp(a_, b_) != 0) { test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, a_, b_); return; } } while (0)
#define ASSERT_OK(st) do { int st_ = (int)(st); \
    if (st_ != 0) { test_fail(__FILE__, __LINE__, "%s returned status %d", #st, st_); return; } } while (0)

#endif /* MICA_TEST_H */
