/*
 * test_util.c - unit test of srv_parse_size in server/util.c (built and run by
 * tests/scripts/server.sh, which links server/util.c). Expected values follow
 * from the option's definition: K, M, G, T are binary multiples (2^10, 2^20,
 * 2^30, 2^40), "auto" is 0 and "unlimited" is UINT64_MAX.
 */
#include <stdint.h>
#include <stdio.h>

#include "util.h"

static int pass, fail;

static void ok_size(const char *s, uint64_t want) {
    uint64_t v = 12345;
    if (srv_parse_size(s, &v) && v == want) { pass++; return; }
    fail++;
    printf("FAIL '%s': want %llu, got %llu\n", s, (unsigned long long)want, (unsigned long long)v);
}

static void bad_size(const char *s) {
    uint64_t v = 12345;
    if (!srv_parse_size(s, &v) && v == 12345) { pass++; return; }
    fail++;
    printf("FAIL '%s' accepted (%llu) or output touched\n", s ? s : "(null)", (unsigned long long)v);
}

int main(void) {
    ok_size("0", 0);
    ok_size("2836480", 2836480);
    ok_size("64K", 65536);
    ok_size("64k", 65536);
    ok_size("512M", 536870912ull);
    ok_size("512MiB", 536870912ull);
    ok_size("4G", 4294967296ull);
    ok_size("4GB", 4294967296ull);
    ok_size("2T", 2199023255552ull);
    ok_size("auto", 0);
    ok_size("unlimited", UINT64_MAX);
    ok_size("18446744073709551615", UINT64_MAX);
    ok_size("16777215T", 16777215ull << 40);
    bad_size(NULL);
    bad_size("");
    bad_size("4X");
    bad_size("-1");
    bad_size(" 4G");
    bad_size("4G ");
    bad_size("4Gi");
    bad_size("G");
    bad_size("1.5G");
    bad_size("18446744073709551616");    /* 2^64 */
    bad_size("16777216T");               /* 2^64 bytes */
    bad_size("99999999999999999999999K");
    printf("srv-util: %d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
