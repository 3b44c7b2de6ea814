/*
 * utf8.h - UTF-8 helpers (layer: text; depends on libc only): strict decoding
 * and validation (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF), encoding, and a streaming splitter that holds back an incomplete
 * trailing sequence so that a token stream can be printed without cutting a
 * character in half.
 *
 * Thread safety: all functions are pure; a utf8_stream belongs to one thread.
 */
#ifndef MICA_UTF8_H
#define MICA_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_REPLACEMENT 0xFFFDu /* U+FFFD REPLACEMENT CHARACTER */

/*
 * Decodes the sequence at s[0..n). Returns its length (1..4) and stores the
 * code point in *cp, or returns 0 if n == 0 or the bytes at s do not start a
 * complete valid sequence (then *cp is UTF8_REPLACEMENT).
 */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Length of the valid sequence at s[0..n) (1..4), or 1 for an invalid byte; 0 if n == 0. */
size_t utf8_char_len(const char *s, size_t n);

/* True if s[0..n) is entirely valid UTF-8. */
bool utf8_valid(const char *s, size_t n);

/* Encodes cp (<= 0x10FFFF, not a surrogate) into out; returns 1..4, or 0 if cp is invalid. */
size_t utf8_encode(uint32_t cp, char out[4]);

/*
 * Number of bytes (0..3) at the end of s[0..n) that form the beginning of a
 * valid sequence still missing its last bytes. A streaming printer emits the
 * first n - utf8_incomplete_tail(s, n) bytes and keeps the rest.
 */
size_t utf8_incomplete_tail(const char *s, size_t n);

/*
 * Streaming decoder: push token pieces in, get out whole characters. Invalid
 * bytes are passed through unchanged (the consumer decides how to show them);
 * only a trailing incomplete but so-far-valid sequence is held back.
 */
typedef struct utf8_stream {
    char held[4];
    size_t n_held; /* 0..3 */
} utf8_stream;

void utf8_stream_init(utf8_stream *st);

/*
 * Appends n bytes of `in`. Writes the bytes that are now complete to out,
 * which must have room for n + 3 bytes, and returns how many were written.
 */
size_t utf8_stream_push(utf8_stream *st, const char *in, size_t n, char *out);

/* Emits whatever is still held (an unfinished sequence, as raw bytes; at most 3). */
size_t utf8_stream_flush(utf8_stream *st, char *out);

#endif /* MICA_UTF8_H */
