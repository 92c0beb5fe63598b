/* Address text as Python's socket.inet_ntop gives it, for the lone-SYN lane's C kernels
(track/_lonerows.c: each pair's text in the digest; report/_jsonrows.c: each row's in the JSON
list). socket.inet_ntop calls this libc's inet_ntop: core/addr.ip_text and lone.address spell
addresses so, and so must these.

Why not inet_ntop itself: glibc's (resolv/inet_ntop.c, from BIND) formats each group with
sprintf, ~1.4 us an IPv6 address here: on a spoofed flood, the largest step of the digest. ntop6
below is the same algorithm without sprintf: the longest run of two or more zero groups (the first
of equal ones) written "::", groups in lowercase hex without leading zeros, and a dotted IPv4 tail
when the first six groups are zero and the seventh is not (::a.b.c.d; "::" and "::1" are zero runs
of 8 and 7 groups, which cover group 6) or the first five are and the sixth is ffff
(::ffff:a.b.c.d). Only under glibc, whose spelling this is (tests/test_lone_text.py compares the
two on every zero pattern); elsewhere the libc's own inet_ntop. */
#ifndef DSRDIAG_NTOP_H
#define DSRDIAG_NTOP_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#if defined(__GLIBC__)
static const char NTOP_HEX[] = "0123456789abcdef";

static inline char *put_dec8(char *o, unsigned v) { /* 0..255, as %u */
    if (v >= 100) { *o++ = (char)('0' + v / 100); v %= 100; *o++ = (char)('0' + v / 10); v %= 10; }
    else if (v >= 10) { *o++ = (char)('0' + v / 10); v %= 10; }
    *o++ = (char)('0' + v);
    return o;
}

/* w as %x (1 to 4 digits, no leading zeros) at o; writes up to 4 bytes at o whatever the digit
   count (the caller's buffer has room past the text), without a branch on the digits: random
   addresses' digit counts defeat prediction */
static inline char *put_hex16(char *o, unsigned w) {
    unsigned n = 1 + (w >= 0x10) + (w >= 0x100) + (w >= 0x1000);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v = (uint32_t)(uint8_t)NTOP_HEX[w >> 12] | (uint32_t)(uint8_t)NTOP_HEX[(w >> 8) & 15] << 8
        | (uint32_t)(uint8_t)NTOP_HEX[(w >> 4) & 15] << 16 | (uint32_t)(uint8_t)NTOP_HEX[w & 15] << 24;
    v >>= 8 * (4 - n); /* the leading zeros out: the first byte is the first digit */
    memcpy(o, &v, 4);
#else
    for (int k = (int)n - 1; k >= 0; k--, w >>= 4) o[k] = NTOP_HEX[w & 15];
#endif
    return o + n;
}

static inline size_t ntop4(const uint8_t *a, char *out) {
    char *o = out;
    for (int i = 0; i < 4; i++) {
        if (i) *o++ = '.';
        o = put_dec8(o, a[i]);
    }
    return (size_t)(o - out);
}

static inline size_t ntop6(const uint8_t *a, char *out) {
    unsigned w[8];
    for (int i = 0; i < 8; i++) w[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
    int best = -1, best_len = 0, cur = -1, cur_len = 0;
    for (int i = 0; i < 8; i++) {
        if (w[i] == 0) {
            if (cur < 0) { cur = i; cur_len = 1; }
            else cur_len++;
        } else if (cur >= 0) {
            if (best < 0 || cur_len > best_len) { best = cur; best_len = cur_len; }
            cur = -1;
        }
    }
    if (cur >= 0 && (best < 0 || cur_len > best_len)) { best = cur; best_len = cur_len; }
    if (best >= 0 && best_len < 2) best = -1;
    char *o = out;
    for (int i = 0; i < 8; i++) {
        if (best >= 0 && i >= best && i < best + best_len) {
            if (i == best) *o++ = ':';
            continue;
        }
        if (i) *o++ = ':';
        if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
            o += ntop4(a + 12, o);
            return (size_t)(o - out); /* the tail ends the text (no trailing run past it) */
        }
        o = put_hex16(o, w[i]);
    }
    if (best >= 0 && best + best_len == 8) *o++ = ':';
    return (size_t)(o - out);
}
#endif


#define NTOP_MAX 56 /* INET6_ADDRSTRLEN (46) and room for put_hex16's 4-byte stores past the text */

/* The text of a 4- or 16-byte address at out (NTOP_MAX bytes of room): its length, or 0 where
   the length is neither or the libc's inet_ntop fails (errno set then). */
static inline size_t ntop_text(const uint8_t *a, size_t al, char *out) {
    if (al != 4 && al != 16) return 0;
#if defined(__GLIBC__)
    return al == 4 ? ntop4(a, out) : ntop6(a, out);
#else
    if (!inet_ntop(al == 4 ? AF_INET : AF_INET6, a, out, NTOP_MAX)) return 0;
    return strlen(out);
#endif
}

#endif
