/* A lone SYN's row (track/lone.py ROW, "<QQqqq16s16sHHIIi6s6sBBBB", 104 bytes, little-endian on any
   host): its layout and loaders, defined once for the C code that writes rows (_conntrack.c
   lone_put) and the code that reads them (_lonerows.c, report/_jsonrows.c). tests/test_lone_native.py
   compares the C tracker's rows with lone.row_of's, so a layout that drifts from ROW fails there. */
#ifndef DSRDIAG_LONEROW_H
#define DSRDIAG_LONEROW_H
#include <stdint.h>
#include <string.h>

#define ROW 104
#define OFF_NUM 0        /* Q   the connection's number (uid C<num>) */
#define OFF_FRAME 8      /* Q   the SYN's frame */
#define OFF_FIRST 16     /* q   first packet time, ns (the capture clock's) */
#define OFF_LAST 24      /* q   last packet time, ns */
#define OFF_NTS 32       /* q   the SYN's own stamp, ns */
#define OFF_CI 40        /* 16s client address (alen bytes used) */
#define OFF_SI 56        /* 16s server address */
#define OFF_CPORT 72     /* H */
#define OFF_SPORT 74     /* H */
#define OFF_SEQ 76       /* I */
#define OFF_ACK 80       /* I */
#define OFF_IPID 84      /* i   -1: none */
#define OFF_SMAC 88      /* 6s */
#define OFF_DMAC 94      /* 6s */
#define OFF_TTL 100      /* B */
#define OFF_FLAGS 101    /* B */
#define OFF_ALEN 102     /* B   4 or 16 */
#define OFF_HAS 103      /* B   bit 0: source MAC, bit 1: destination MAC */

/* The little-endian uint64 at p (memcpy: no unaligned load) */
static inline uint64_t ld_u64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

static inline int64_t ld_i64(const uint8_t *p) {
    uint64_t u = ld_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v); /* two's complement reinterpretation, no signed overflow */
    return v;
}

static inline unsigned ld_u16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static inline uint32_t ld_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
#endif
