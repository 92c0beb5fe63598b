/* The C connection tracker (track/_conntrack.c): its packet type and entry points.
 *
 * The packet is the capture walker's (capture/_sink.h, included from below: track/ sits above
 * capture/, never the reverse); the walker reaches the tracker only through the sink capsule the
 * Tracker hands out (Tracker.sink), so capture/ never names track/. */
#ifndef DSRDIAG_CONNTRACK_H
#define DSRDIAG_CONNTRACK_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include "../capture/_sink.h"

typedef dsr_pkt ct_pkt;

extern PyTypeObject TrackerType;

/* 1 if `port` is a service port of this tracker */
int ct_port(PyObject *tracker, uint16_t port);
/* track one packet; -1 with a Python error set (from the SMTP follower) */
int ct_packet(PyObject *tracker, const ct_pkt *p);
/* follow(chunks, parse_proxy): the C SMTP follower alone, for tests */
PyObject *ct_follow(PyObject *mod, PyObject *args);

#endif
