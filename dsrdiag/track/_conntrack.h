/* The C connection tracker (track/_conntrack.c): what the capture walker (capture/_fastpcap.c)
 * needs to feed it packets without making a Python object per packet. */
#ifndef DSRDIAG_CONNTRACK_H
#define DSRDIAG_CONNTRACK_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* One decoded TCP packet: pointers into the frame (or a Python bytes object), valid for the call. */
typedef struct {
    unsigned long long frame;
    int64_t ts;
    const uint8_t *smac, *dmac;        /* NULL: the link type carries none (Python None) */
    const uint8_t *src, *dst;
    int alen;                          /* 4 or 16 */
    uint16_t sport, dport, win;
    uint32_t seq, ack;
    uint8_t flags, ttl;
    int32_t ip_id;                     /* -1: IPv6 (None) */
    const uint8_t *payload;
    uint32_t plen;                     /* captured payload bytes */
    uint32_t cut;                      /* payload bytes the IP length declares beyond the capture (snaplen) */
    const uint8_t *tunnel;             /* outer source address of an encapsulated packet, or NULL */
    int tlen;
} ct_pkt;

extern PyTypeObject TrackerType;

/* 1 if `port` is a service port of this tracker */
int ct_port(PyObject *tracker, uint16_t port);
/* track one packet; -1 with a Python error set (from the SMTP follower) */
int ct_packet(PyObject *tracker, const ct_pkt *p);
/* follow(chunks, parse_proxy): the C SMTP follower alone, for tests */
PyObject *ct_follow(PyObject *mod, PyObject *args);

#endif
