/* _sink.h: the one interface between the capture walker (capture/_fastpcap.c) and whatever consumes
 * the TCP packets it decodes in C (today track/_conntrack.c).
 *
 * Why here, in capture/: the walker defines what it hands on and never names its consumer, so the
 * layer contract (track/ above capture/) holds in C as it does in Python: track/ includes this
 * header, capture/ includes nothing of track/. A consumer hands the walker a PyCapsule named
 * DSR_SINK_CAPSULE holding a dsr_sink; the capsule owns a reference to the consumer object (its
 * destructor drops it), so the walker keeps the consumer alive by holding the capsule.
 */
#ifndef DSRDIAG_SINK_H
#define DSRDIAG_SINK_H
#include <stdint.h>

#define DSR_SINK_CAPSULE "dsrdiag.capture.sink"
#define DSR_SINK_VERSION 1

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
} dsr_pkt;

typedef struct {
    int version;                                      /* DSR_SINK_VERSION */
    void *self;                                       /* the consumer (a PyObject the capsule holds) */
    int (*wants_port)(void *self, uint16_t port);     /* 1: a packet to or from `port` is the consumer's */
    int (*packet)(void *self, const dsr_pkt *p);      /* take one packet; -1 with a Python error set */
} dsr_sink;

#endif
