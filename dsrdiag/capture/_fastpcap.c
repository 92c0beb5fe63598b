/* _fastpcap: read a classic pcap file and run a BPF program on every frame, in C.
 *
 * Why: reading a capture frame by frame through pcapy-ng costs two Python calls per frame (next,
 * filter) even for the 60% of a mail relay's traffic that is dropped; libpcap's setfilter would
 * skip those in C but then hides how many frames it skipped, and the Wireshark frame numbers every
 * finding cites would be lost. This module walks the capture in order (read only, through a 2 MiB
 * window: input files are never modified, and a file of any size costs the same memory; from a
 * descriptor, so a pipe or FIFO reads like a file, or from a GzipFile's readinto1 for pcap.gz), counts every frame, runs the program libpcap compiled (pcapy.compile(...).get_bpf())
 * through a classic BPF interpreter with libpcap's bpf_filter semantics, and hands the frames
 * that pass to Python one at a time (iterating the reader): (frame number, ts_ns, linktype,
 * bytes, wire length). With a Tracker attached (track()), Ethernet frames carrying plain IPv4/IPv6
 * TCP on a service port go straight to track/_conntrack.c instead: no Python object per packet.
 * Damage (a truncated or absurd record) stops the walk with the same words the Python reader
 * uses, at an exact byte offset; the frames before it are delivered.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../track/_conntrack.h"
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>

#define MAX_CAPLEN 262144u
#define WINDOW (2u << 20)     /* bytes of the file held at once; a record is at most MAX_CAPLEN + 16 */
#define BPF_MEMWORDS 16

typedef struct { uint16_t code; uint8_t jt, jf; uint32_t k; } insn_t;

typedef struct {
    PyObject_HEAD
    int fd;            /* read sequentially: a file, a pipe, a FIFO, a socket (-1: read from src) */
    int own_fd;        /* opened here (a path was given): closed here */
    PyObject *src;     /* or an object with readinto1() (a GzipFile): one call per window fill */
    PyObject *src_error; /* what src raised (corrupt or truncated compressed data): damage, once the
                            bytes read before it are walked */
    uint8_t *buf;      /* a window of the stream: buf[0] is the byte at offset buf_off */
    size_t buf_off, buf_len;
    size_t off;
    int swap;          /* file byte order differs from ours */
    int nanos;
    long linktype;
    insn_t *prog;
    Py_ssize_t nprog;
    unsigned long long frames, passed;
    PyObject *damage;  /* str or None */
    int eof;
    PyObject *tracker; /* track/_conntrack.c's Tracker: TCP frames go to it without Python */
    unsigned long long next_sweep;  /* from this frame on, frames go to Python (the pipeline sweeps) */
    long long tracked;
} Reader;

static inline uint32_t rd32(const uint8_t *p, int swap) {
    uint32_t v; memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}

/* libpcap's bpf_filter(): 0 = reject; out-of-bounds loads reject. */
static uint32_t run_bpf(const insn_t *pc, Py_ssize_t n, const uint8_t *p, uint32_t wirelen, uint32_t buflen) {
    uint32_t A = 0, X = 0, k;
    uint32_t mem[BPF_MEMWORDS];
    const insn_t *end = pc + n;
    memset(mem, 0, sizeof mem);
    for (; pc < end; ++pc) {
        switch (pc->code) {
        case 0x06: return pc->k;                      /* ret #k */
        case 0x16: return A;                          /* ret a */
        case 0x20: k = pc->k;                         /* ld [k] */
            if (k > buflen || 4 > buflen - k) return 0;
            A = ((uint32_t)p[k] << 24) | ((uint32_t)p[k + 1] << 16) | ((uint32_t)p[k + 2] << 8) | p[k + 3]; break;
        case 0x28: k = pc->k;                         /* ldh [k] */
            if (k > buflen || 2 > buflen - k) return 0;
            A = ((uint32_t)p[k] << 8) | p[k + 1]; break;
        case 0x30: k = pc->k;                         /* ldb [k] */
            if (k >= buflen) return 0;
            A = p[k]; break;
        case 0x80: A = wirelen; break;                /* ld len */
        case 0x81: X = wirelen; break;                /* ldx len */
        case 0x40: k = X + pc->k;                     /* ld [x+k] */
            if (pc->k > buflen || X > buflen - pc->k || 4 > buflen - k) return 0;
            A = ((uint32_t)p[k] << 24) | ((uint32_t)p[k + 1] << 16) | ((uint32_t)p[k + 2] << 8) | p[k + 3]; break;
        case 0x48: k = X + pc->k;                     /* ldh [x+k] */
            if (pc->k > buflen || X > buflen - pc->k || 2 > buflen - k) return 0;
            A = ((uint32_t)p[k] << 8) | p[k + 1]; break;
        case 0x50: k = X + pc->k;                     /* ldb [x+k] */
            if (pc->k >= buflen || X >= buflen - pc->k) return 0;
            A = p[k]; break;
        case 0xb1: k = pc->k;                         /* ldxb 4*([k]&0xf) */
            if (k >= buflen) return 0;
            X = (p[k] & 0xf) << 2; break;
        case 0x00: A = pc->k; break;                  /* ld #k */
        case 0x01: X = pc->k; break;                  /* ldx #k */
        case 0x60: if (pc->k >= BPF_MEMWORDS) return 0; A = mem[pc->k]; break;
        case 0x61: if (pc->k >= BPF_MEMWORDS) return 0; X = mem[pc->k]; break;
        case 0x02: if (pc->k >= BPF_MEMWORDS) return 0; mem[pc->k] = A; break;
        case 0x03: if (pc->k >= BPF_MEMWORDS) return 0; mem[pc->k] = X; break;
        case 0x05: pc += pc->k; break;                /* ja */
        case 0x25: pc += (A > pc->k) ? pc->jt : pc->jf; break;
        case 0x35: pc += (A >= pc->k) ? pc->jt : pc->jf; break;
        case 0x15: pc += (A == pc->k) ? pc->jt : pc->jf; break;
        case 0x45: pc += (A & pc->k) ? pc->jt : pc->jf; break;
        case 0x2d: pc += (A > X) ? pc->jt : pc->jf; break;
        case 0x3d: pc += (A >= X) ? pc->jt : pc->jf; break;
        case 0x1d: pc += (A == X) ? pc->jt : pc->jf; break;
        case 0x4d: pc += (A & X) ? pc->jt : pc->jf; break;
        case 0x0c: A += X; break;
        case 0x1c: A -= X; break;
        case 0x2c: A *= X; break;
        case 0x3c: if (X == 0) return 0; A /= X; break;
        case 0x9c: if (X == 0) return 0; A %= X; break;
        case 0x5c: A &= X; break;
        case 0x4c: A |= X; break;
        case 0xac: A ^= X; break;
        case 0x6c: A = X < 32 ? A << X : 0; break;
        case 0x7c: A = X < 32 ? A >> X : 0; break;
        case 0x04: A += pc->k; break;
        case 0x14: A -= pc->k; break;
        case 0x24: A *= pc->k; break;
        case 0x34: A /= pc->k; break;                 /* k != 0: checked when loaded */
        case 0x94: A %= pc->k; break;
        case 0x54: A &= pc->k; break;
        case 0x44: A |= pc->k; break;
        case 0xa4: A ^= pc->k; break;
        case 0x64: A = pc->k < 32 ? A << pc->k : 0; break;
        case 0x74: A = pc->k < 32 ? A >> pc->k : 0; break;
        case 0x84: A = (uint32_t)(-(int32_t)A); break;
        case 0x07: X = A; break;                      /* tax */
        case 0x87: A = X; break;                      /* txa */
        default: return 0;
        }
    }
    return 0;
}

static const uint16_t KNOWN[] = {0x06,0x16,0x20,0x28,0x30,0x80,0x81,0x40,0x48,0x50,0xb1,0x00,0x01,0x60,0x61,0x02,0x03,
    0x05,0x25,0x35,0x15,0x45,0x2d,0x3d,0x1d,0x4d,0x0c,0x1c,0x2c,0x3c,0x9c,0x5c,0x4c,0xac,0x6c,0x7c,0x04,0x14,0x24,0x34,
    0x94,0x54,0x44,0xa4,0x64,0x74,0x84,0x07,0x87};

static inline uint32_t rd_be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static inline uint16_t rd_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

/* Ethernet (untagged or one 802.1Q tag) / IPv4 (unfragmented) or IPv6 (TCP next) / TCP, else 0 */
typedef struct {
    const uint8_t *smac, *dmac, *src, *dst;
    int alen;
    uint16_t sport, dport, win;
    uint32_t seq, ack, plen, id, cut;
    uint8_t flags, v4, ttl;
    const uint8_t *payload;
} tcp_t;

static int parse_tcp(const uint8_t *d, uint32_t len, tcp_t *t) {
    if (len < 14) return 0;
    uint32_t off = 12;
    uint16_t et = rd_be16(d + 12);
    if (et == 0x8100) { if (len < 18) return 0; et = rd_be16(d + 16); off = 16; }
    off += 2;
    uint32_t l4, end;
    t->dmac = d; t->smac = d + 6;
    if (et == 0x0800) {
        if (len < off + 20) return 0;
        const uint8_t *ip = d + off;
        uint32_t ihl = (ip[0] & 0x0f) * 4;
        if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6) return 0;
        if (rd_be16(ip + 6) & 0x3fff) return 0;          /* fragments: Python's path */
        uint32_t total = rd_be16(ip + 2);
        end = total ? off + total : len;
        t->cut = end > len ? end - len : 0;         /* snaplen: the IP length still counts (track/conn.py) */
        if (end > len) end = len;
        l4 = off + ihl;
        t->src = ip + 12; t->dst = ip + 16; t->alen = 4; t->id = rd_be16(ip + 4); t->v4 = 1; t->ttl = ip[8];
    } else if (et == 0x86dd) {
        if (len < off + 40) return 0;
        const uint8_t *ip = d + off;
        if ((ip[0] >> 4) != 6 || ip[6] != 6) return 0;   /* extension headers: Python's path */
        uint32_t pl = rd_be16(ip + 4);
        end = off + 40 + pl;                        /* no TSO rule for IPv6 (decode/ip.py) */
        t->cut = end > len ? end - len : 0;
        if (end > len) end = len;
        l4 = off + 40;
        t->src = ip + 8; t->dst = ip + 24; t->alen = 16; t->id = 0; t->v4 = 0; t->ttl = ip[7];
    } else return 0;
    if (end < l4 + 20) return 0;
    const uint8_t *tcp = d + l4;
    uint32_t hl = (tcp[12] >> 4) * 4;
    if (hl < 20 || l4 + hl > end) return 0;
    t->sport = rd_be16(tcp); t->dport = rd_be16(tcp + 2);
    t->seq = rd_be32(tcp + 4); t->ack = rd_be32(tcp + 8);
    t->flags = tcp[13]; t->win = rd_be16(tcp + 14);
    t->plen = end - l4 - hl;
    t->payload = tcp + hl;
    return 1;
}

/* 1: the frame was a TCP packet and the tracker took it (or it is on no service port: dropped,
   as decode/packet.py drops it); 0: Python decodes it; -1: error (from the SMTP follower) */
static int track_frame(Reader *self, const uint8_t *data, uint32_t incl, long long ts) {
    tcp_t t;
    if (!parse_tcp(data, incl, &t)) return 0;
    if (!ct_port(self->tracker, t.sport) && !ct_port(self->tracker, t.dport)) return 1;
    ct_pkt p;
    p.frame = self->frames; p.ts = ts; p.smac = t.smac; p.dmac = t.dmac; p.src = t.src; p.dst = t.dst; p.alen = t.alen;
    p.sport = t.sport; p.dport = t.dport; p.win = t.win; p.seq = t.seq; p.ack = t.ack; p.flags = t.flags; p.ttl = t.ttl;
    p.ip_id = t.v4 ? (int32_t)t.id : -1; p.payload = t.payload; p.plen = t.plen; p.cut = t.cut; p.tunnel = NULL; p.tlen = 0;
    if (ct_packet(self->tracker, &p) < 0) return -1;
    self->tracked++;
    return 1;
}

static void Reader_dealloc(Reader *self) {
    if (self->own_fd && self->fd >= 0) close(self->fd);
    Py_XDECREF(self->src);
    Py_XDECREF(self->src_error);
    PyMem_Free(self->buf);
    PyMem_Free(self->prog);
    Py_XDECREF(self->tracker);
    Py_XDECREF(self->damage);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Reader(source, start_offset, big_endian_file, nanos, linktype, program): source is a path (opened
   here and read from start_offset), a file descriptor already at start_offset (a file, pipe or FIFO
   the caller opened once: not closed here), or an object with readinto1() at start_offset */
static int Reader_init(Reader *self, PyObject *args, PyObject *kw) {
    PyObject *source; Py_ssize_t start; int big, nanos; long linktype; PyObject *prog;
    if (!PyArg_ParseTuple(args, "OnpplO", &source, &start, &big, &nanos, &linktype, &prog)) return -1;
    PyObject *seq = PySequence_Fast(prog, "program must be a sequence of (code, jt, jf, k)");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->prog = PyMem_Calloc(n ? n : 1, sizeof(insn_t));
    if (!self->prog) { Py_DECREF(seq); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int code, jt, jf; unsigned long k;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "IIIk", &code, &jt, &jf, &k)) { Py_DECREF(seq); return -1; }
        int ok = 0;
        for (size_t j = 0; j < sizeof KNOWN / sizeof KNOWN[0]; j++) ok |= KNOWN[j] == code;
        if (!ok || ((code == 0x34 || code == 0x94) && k == 0)) {
            Py_DECREF(seq); PyErr_Format(PyExc_ValueError, "BPF instruction %u not supported", code); return -1;
        }
        if ((code & 0x07) == 0x05 && (code == 0x05 ? (Py_ssize_t)k >= n - i : (jt >= n - i || jf >= n - i))) {
            Py_DECREF(seq); PyErr_SetString(PyExc_ValueError, "BPF jump out of the program"); return -1;
        }
        self->prog[i].code = (uint16_t)code; self->prog[i].jt = (uint8_t)jt; self->prog[i].jf = (uint8_t)jf;
        self->prog[i].k = (uint32_t)k;
    }
    Py_DECREF(seq);
    self->nprog = n;
    self->fd = -1;
    if (PyUnicode_Check(source) || PyBytes_Check(source)) {
        PyObject *enc = NULL;
        if (!PyUnicode_FSConverter(source, &enc)) return -1;   /* any file name, UTF-8 or not */
        int fd = open(PyBytes_AS_STRING(enc), O_RDONLY);
        if (fd < 0 || (start && lseek(fd, (off_t)start, SEEK_SET) < 0)) {
            if (fd >= 0) close(fd);
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, source); Py_DECREF(enc); return -1;
        }
        Py_DECREF(enc);
        self->fd = fd; self->own_fd = 1;
    } else if (PyLong_Check(source)) {
        self->fd = (int)PyLong_AsLong(source);
        if (self->fd < 0) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad file descriptor"); return -1; }
    } else {
        Py_INCREF(source);
        self->src = source;
    }
    self->buf = PyMem_Malloc(WINDOW);
    if (!self->buf) { PyErr_NoMemory(); return -1; }
    if (self->fd >= 0) posix_fadvise(self->fd, 0, 0, POSIX_FADV_SEQUENTIAL);  /* fails harmlessly on a pipe */
    uint32_t one = 1;
    int little = *(uint8_t *)&one == 1;
    self->swap = big ? little : !little;
    self->nanos = nanos;
    self->linktype = linktype;
    self->off = (size_t)start;
    self->buf_off = (size_t)start;   /* the source is positioned there: the window starts empty at it */
    Py_INCREF(Py_None);
    self->damage = Py_None;
    self->next_sweep = ~0ULL;
    return 0;
}

static void set_damage(Reader *self, PyObject *msg) {
    Py_XSETREF(self->damage, msg);
    self->eof = 1;
}

/* Fill the window from the stream: 0 at its end (or after src raised: src_error), -1 on an error
   to raise (a signal's exception: Ctrl-C or SIGTERM while a pipe is quiet) */
static int fill(Reader *self) {
    while (self->buf_len < WINDOW) {
        if (self->src) {
            if (self->src_error) return 0;
            PyObject *mv = PyMemoryView_FromMemory((char *)self->buf + self->buf_len, WINDOW - self->buf_len, PyBUF_WRITE);
            if (!mv) return -1;
            /* readinto1: one read of the source per call, so that what came before an error
               (a truncated or corrupt gzip stream) is delivered, as the Python reader does */
            PyObject *r = PyObject_CallMethod(self->src, "readinto1", "O", mv);
            Py_DECREF(mv);
            if (!r) {
                if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) || !PyErr_ExceptionMatches(PyExc_Exception)) return -1;
                PyObject *t, *v, *tb;
                PyErr_Fetch(&t, &v, &tb);
                PyErr_NormalizeException(&t, &v, &tb);
                self->src_error = v ? PyObject_Str(v) : PyUnicode_FromString("?");
                Py_XDECREF(t); Py_XDECREF(v); Py_XDECREF(tb);
                if (!self->src_error) return -1;
                return 0;
            }
            Py_ssize_t n = r == Py_None ? 0 : PyLong_AsSsize_t(r);
            Py_DECREF(r);
            if (n < 0) return PyErr_Occurred() ? -1 : 0;
            if (n == 0) return 0;
            self->buf_len += (size_t)n;
            continue;
        }
        ssize_t n = read(self->fd, self->buf + self->buf_len, WINDOW - self->buf_len);
        if (n < 0 && errno == EINTR) {
            if (PyErr_CheckSignals() < 0) return -1;
            continue;
        }
        if (n < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
        if (n == 0) return 0;
        self->buf_len += (size_t)n;
    }
    return 0;
}

/* Make [off, off + need) readable in the window (off is never past the window's end: the stream is
   read in order); a pointer to it, or NULL if the stream ends first (self->buf_len bytes remain
   from off) or an exception is set (*err). */
static const uint8_t *window(Reader *self, size_t off, size_t need, int *err) {
    if (off + need <= self->buf_off + self->buf_len) return self->buf + (off - self->buf_off);
    size_t keep = self->buf_off + self->buf_len - off;
    memmove(self->buf, self->buf + (off - self->buf_off), keep);
    self->buf_off = off;
    self->buf_len = keep;
    if (fill(self) < 0) { *err = 1; return NULL; }
    return need <= self->buf_len ? self->buf : NULL;
}

static void short_damage(Reader *self, PyObject *fallback) {
    /* the stream ended inside a record: said as the compressed stream's error if it raised one */
    if (self->src_error) {
        Py_XDECREF(fallback);
        set_damage(self, PyUnicode_FromFormat("compressed data is corrupt (%U)", self->src_error));
    } else {
        set_damage(self, fallback);
    }
}

/* The next frame for Python: (frame number, ts_ns, linktype, bytes, wire length); NULL without an
   error at the end (eof set, damage said). */
static PyObject *walk(Reader *self) {
    long long scale = self->nanos ? 1 : 1000;
    int err = 0;
    while (!self->eof) {
        size_t off = self->off;
        const uint8_t *h = window(self, off, 16, &err);
        if (err) return NULL;
        if (!h) {
            if (self->buf_len == 0 && !self->src_error) { self->eof = 1; break; }   /* the end, between records */
            short_damage(self, PyUnicode_FromFormat("truncated record header at byte offset %zu", off));
            break;
        }
        uint32_t sec = rd32(h, self->swap), frac = rd32(h + 4, self->swap);
        uint32_t incl = rd32(h + 8, self->swap), orig = rd32(h + 12, self->swap);
        if (incl > MAX_CAPLEN) {
            set_damage(self, PyUnicode_FromFormat("record at byte offset %zu claims %u captured bytes (more than %u): corrupt",
                                                  off, incl, MAX_CAPLEN));
            break;
        }
        const uint8_t *rec = window(self, off, 16 + (size_t)incl, &err);
        if (err) return NULL;
        if (!rec) {
            short_damage(self, PyUnicode_FromFormat("frame %llu truncated at byte offset %zu: %zu of %u bytes present",
                                                    self->frames + 1, off, self->buf_len - 16, incl));
            break;
        }
        const uint8_t *data = rec + 16;
        self->off = off + 16 + incl;
        self->frames++;
        if (self->nprog && !run_bpf(self->prog, self->nprog, data, orig, incl)) continue;
        self->passed++;
        long long ts = (long long)sec * 1000000000LL + (long long)frac * scale;
        if (self->tracker && self->linktype == 1 && self->frames < self->next_sweep) {
            int r = track_frame(self, data, incl, ts);
            if (r < 0) return NULL;
            if (r) continue;
        }
        return Py_BuildValue("(KLly#I)", self->frames, ts, self->linktype, (const char *)data, (Py_ssize_t)incl, orig);
    }
    return NULL;
}

/* iterating the reader: the frames Python decodes itself (ARP, neighbour discovery, tunnels,
   VLAN stacks, fragments, other link types; every frame from next_sweep on), one at a time */
static PyObject *Reader_iternext(Reader *self) {
    return walk(self);
}

static PyObject *Reader_filter(Reader *self, PyObject *arg) {
    /* run the program on one buffer (tests compare it with libpcap's own filter) */
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t r = run_bpf(self->prog, self->nprog, b.buf, (uint32_t)b.len, (uint32_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(r);
}

/* track(tracker): from now on, TCP frames this walker can decode go to the tracker, not to Python */
static PyObject *Reader_track(Reader *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &TrackerType)) { PyErr_SetString(PyExc_TypeError, "a Tracker is needed"); return NULL; }
    Py_INCREF(arg);
    Py_XSETREF(self->tracker, arg);
    Py_RETURN_NONE;
}

static PyObject *get_tracked(Reader *s, void *c) { return PyLong_FromLongLong(s->tracked); }
static PyObject *get_next_sweep(Reader *s, void *c) { return PyLong_FromUnsignedLongLong(s->next_sweep); }
static int set_next_sweep(Reader *s, PyObject *v, void *c) {
    unsigned long long n = v ? PyLong_AsUnsignedLongLong(v) : 0;
    if (PyErr_Occurred()) return -1;
    s->next_sweep = n;
    return 0;
}

static PyObject *get_frames(Reader *s, void *c) { return PyLong_FromUnsignedLongLong(s->frames); }
static PyObject *get_passed(Reader *s, void *c) { return PyLong_FromUnsignedLongLong(s->passed); }
static PyObject *get_position(Reader *s, void *c) { return PyLong_FromSize_t(s->off); }
static PyObject *get_eof(Reader *s, void *c) { return PyBool_FromLong(s->eof); }
static PyObject *get_damage(Reader *s, void *c) { Py_INCREF(s->damage); return s->damage; }

static PyGetSetDef Reader_getset[] = {
    {"frames", (getter)get_frames, NULL, "frames read so far (every frame, filtered or not)", NULL},
    {"passed", (getter)get_passed, NULL, "frames the program accepted", NULL},
    {"position", (getter)get_position, NULL, "byte offset of the next record", NULL},
    {"eof", (getter)get_eof, NULL, "the walk ended (end of file or damage)", NULL},
    {"damage", (getter)get_damage, NULL, "why the walk stopped early, or None", NULL},
    {"tracked", (getter)get_tracked, NULL, "TCP packets handed to the tracker without Python", NULL},
    {"next_sweep", (getter)get_next_sweep, (setter)set_next_sweep, "frame number from which frames go to Python again", NULL},
    {NULL}
};

static PyMethodDef Reader_methods[] = {
    {"filter", (PyCFunction)Reader_filter, METH_O, "filter(buf): the program's result for one frame"},
    {"track", (PyCFunction)Reader_track, METH_O, "track(tracker): TCP frames go to the tracker in C"},
    {NULL}
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsrdiag.capture._fastpcap.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Reader_iternext,
    .tp_doc = "Reader(path | fd | readinto1-object, start_offset, big_endian_file, nanos, linktype, bpf_program)",
};

static PyMethodDef module_methods[] = {
    {"follow", ct_follow, METH_VARARGS, "follow(chunks, parse_proxy): the C SMTP follower's state after these chunks (tests)"},
    {NULL}
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_fastpcap", "Classic pcap + BPF in C, exact frame numbers; the C tracker.",
                                    -1, module_methods};

PyMODINIT_FUNC PyInit__fastpcap(void) {
    if (PyType_Ready(&ReaderType) < 0 || PyType_Ready(&TrackerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) { Py_DECREF(&ReaderType); Py_DECREF(m); return NULL; }
    Py_INCREF(&TrackerType);
    if (PyModule_AddObject(m, "Tracker", (PyObject *)&TrackerType) < 0) { Py_DECREF(&TrackerType); Py_DECREF(m); return NULL; }
    return m;
}
