/* _fastpcap: read a classic pcap or pcapng capture and run a BPF program on every frame, in C.
 *
 * Why: reading a capture frame by frame through pcapy-ng costs two Python calls per frame (next,
 * filter) even for the 60% of a mail relay's traffic that is dropped; libpcap's setfilter would
 * skip those in C but then hides how many frames it skipped, and the Wireshark frame numbers every
 * finding cites would be lost. pcapng (dumpcap's and Wireshark's default) and gzip went through a
 * Python reader at 7-14x the CPU of classic pcap (issue 14); they are walked here too.
 * This module walks the capture in order (read only, through a window of 2 MiB that grows only for
 * a pcapng block larger than that, up to 16 MiB: input files are never modified, and a file of
 * any size costs the same memory; from a descriptor, so a pipe or FIFO reads like a file, or from
 * an object's readinto1 (a gzip stream, decompressed by the caller), counts every frame with
 * Wireshark's numbering, runs the program libpcap compiled for the frame's link type
 * (pcapy.compile(...).get_bpf()) through a classic BPF interpreter with libpcap's bpf_filter
 * semantics, and hands the frames that pass to Python one at a time (iterating the reader):
 * (frame number, ts_ns, linktype, bytes, wire length).
 * pcapng: sections in either byte order (several in one file), interfaces with their own link
 * type and if_tsresol, Enhanced, Simple and obsolete Packet Blocks; every other block skipped.
 * With a sink attached (track(capsule): capture/_sink.h), frames carrying plain IPv4/IPv6 TCP on
 * Ethernet or Linux cooked SLL/SLL2 go straight to the consumer (the C tracker) instead: no
 * Python object per packet; this module never names the consumer.
 * Damage (a truncated or absurd record or block) stops the walk with the same words the Python
 * reader (capture/pcapfile.py) uses, at an exact byte offset; the frames before it are delivered.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_sink.h"
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>

#define MAX_CAPLEN 262144u
#define WINDOW (2u << 20)     /* bytes of the file held at once; a record is at most MAX_CAPLEN + 16 */
#define MAX_BLOCK (16u << 20) /* Wireshark's limit for one pcapng block (capture/pcapfile.py's too) */
#define BPF_MEMWORDS 16
#define LT_ETHERNET 1
#define LT_RAW 101
#define LT_SLL 113
#define LT_SLL2 276
#define TS_MAX INT64_MAX      /* nanoseconds held at the year 2262 (pcapfile.py's _TS_MAX) */

typedef struct { uint16_t code; uint8_t jt, jf; uint32_t k; } insn_t;

typedef struct {
    long linktype;
    int supported;         /* 0: the link type is not analysed: frames counted as skipped */
    uint64_t num;          /* nanoseconds per tick = num / den (if_tsresol; den 0: past 2^127, always 0 ns) */
    unsigned __int128 den;
    insn_t *prog;
    Py_ssize_t nprog;
} iface_t;

typedef struct {
    PyObject_HEAD
    int fd;            /* read sequentially: a file, a pipe, a FIFO, a socket (-1: read from src) */
    int own_fd;        /* opened here (a path was given): closed here */
    PyObject *src;     /* or an object with readinto1() (a GzipFile): one call per window fill */
    PyObject *src_error; /* what src raised (corrupt or truncated compressed data): damage, once the
                            bytes read before it are walked */
    uint8_t *buf;      /* a window of the stream: buf[0] is the byte at offset buf_off */
    size_t buf_cap;    /* WINDOW, or more for a larger pcapng block */
    size_t buf_off, buf_len;
    size_t off;
    int swap;          /* file (section) byte order differs from ours */
    int nanos;
    int pcapng;        /* 1: pcapng blocks; 0: classic pcap records */
    long linktype;     /* classic pcap's one link type */
    insn_t *prog;      /* classic pcap's program */
    Py_ssize_t nprog;
    PyObject *program_for; /* pcapng: program_for(linktype) -> program, or None for an unsupported type */
    iface_t *ifaces;   /* pcapng: the interfaces of the current section */
    size_t nifaces, capifaces;
    PyObject *skipped; /* pcapng: {linktype: frames} on interfaces of an unsupported link type */
    unsigned long long frames, passed;
    PyObject *damage;  /* str or None */
    int eof;
    PyObject *sink_capsule; /* keeps the consumer alive */
    dsr_sink *sink;    /* capture/_sink.h: TCP frames go to it without Python */
    unsigned long long next_sweep;  /* from this frame on, frames go to Python (the pipeline sweeps) */
    long long tracked;
} Reader;

static inline uint32_t rd32(const uint8_t *p, int swap) {
    uint32_t v; memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}
static inline uint16_t rd16(const uint8_t *p, int swap) {
    uint16_t v; memcpy(&v, p, 2);
    return swap ? __builtin_bswap16(v) : v;
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

/* Ethernet (untagged or one 802.1Q tag) or Linux cooked SLL/SLL2 / IPv4 (unfragmented) or IPv6
   (TCP next) / TCP, else 0: decode/link.py's and decode/ip.py's rules for these cases; anything
   else (VLAN stacks, tunnels, fragments, extension headers, ARP) is decoded in Python */
typedef struct {
    const uint8_t *smac, *dmac, *src, *dst;
    int alen;
    uint16_t sport, dport, win;
    uint32_t seq, ack, plen, id, cut;
    uint8_t flags, v4, ttl;
    const uint8_t *payload;
} tcp_t;

static int parse_tcp(long lt, const uint8_t *d, uint32_t len, tcp_t *t) {
    uint32_t off;
    uint16_t et;
    if (lt == LT_ETHERNET) {
        if (len < 14) return 0;
        off = 12;
        et = rd_be16(d + 12);
        if (et == 0x8100) { if (len < 18) return 0; et = rd_be16(d + 16); off = 16; }
        off += 2;
        t->dmac = d; t->smac = d + 6;
    } else if (lt == LT_SLL) {                       /* the sender's address, if it is a MAC; no destination */
        if (len < 16) return 0;
        et = rd_be16(d + 14); off = 16;
        t->smac = rd_be16(d + 4) == 6 ? d + 6 : NULL; t->dmac = NULL;
    } else if (lt == LT_SLL2) {
        if (len < 20) return 0;
        et = rd_be16(d); off = 20;
        t->smac = d[11] == 6 ? d + 12 : NULL; t->dmac = NULL;
    } else return 0;
    uint32_t l4, end;
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

/* 1: the frame was a TCP packet and the sink took it (or it is on no port of the sink's: dropped,
   as decode/packet.py drops it); 0: Python decodes it; -1: error (from the sink) */
static int track_frame(Reader *self, long lt, const uint8_t *data, uint32_t incl, long long ts) {
    tcp_t t;
    if (!parse_tcp(lt, data, incl, &t)) return 0;
    dsr_sink *s = self->sink;
    if (!s->wants_port(s->self, t.sport) && !s->wants_port(s->self, t.dport)) return 1;
    dsr_pkt p;
    p.frame = self->frames; p.ts = ts; p.smac = t.smac; p.dmac = t.dmac; p.src = t.src; p.dst = t.dst; p.alen = t.alen;
    p.sport = t.sport; p.dport = t.dport; p.win = t.win; p.seq = t.seq; p.ack = t.ack; p.flags = t.flags; p.ttl = t.ttl;
    p.ip_id = t.v4 ? (int32_t)t.id : -1; p.payload = t.payload; p.plen = t.plen; p.cut = t.cut; p.tunnel = NULL; p.tlen = 0;
    if (s->packet(s->self, &p) < 0) return -1;
    self->tracked++;
    return 1;
}

static void Reader_dealloc(Reader *self) {
    if (self->own_fd && self->fd >= 0) close(self->fd);
    Py_XDECREF(self->src);
    Py_XDECREF(self->src_error);
    PyMem_Free(self->buf);
    PyMem_Free(self->prog);
    for (size_t i = 0; i < self->nifaces; i++) PyMem_Free(self->ifaces[i].prog);
    PyMem_Free(self->ifaces);
    Py_XDECREF(self->program_for);
    Py_XDECREF(self->skipped);
    Py_XDECREF(self->sink_capsule);
    Py_XDECREF(self->damage);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* a program from Python's [(code, jt, jf, k)] (pcapy's get_bpf()), checked: every instruction
   known, no division by a constant 0, no jump out of the program */
static int load_prog(PyObject *prog, insn_t **out, Py_ssize_t *nout) {
    PyObject *seq = PySequence_Fast(prog, "program must be a sequence of (code, jt, jf, k)");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    insn_t *p = PyMem_Calloc(n ? n : 1, sizeof(insn_t));
    if (!p) { Py_DECREF(seq); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned int code, jt, jf; unsigned long k;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "IIIk", &code, &jt, &jf, &k)) goto bad;
        int ok = 0;
        for (size_t j = 0; j < sizeof KNOWN / sizeof KNOWN[0]; j++) ok |= KNOWN[j] == code;
        if (!ok || ((code == 0x34 || code == 0x94) && k == 0)) {
            PyErr_Format(PyExc_ValueError, "BPF instruction %u not supported", code); goto bad;
        }
        if ((code & 0x07) == 0x05 && (code == 0x05 ? (Py_ssize_t)k >= n - i : (jt >= n - i || jf >= n - i))) {
            PyErr_SetString(PyExc_ValueError, "BPF jump out of the program"); goto bad;
        }
        p[i].code = (uint16_t)code; p[i].jt = (uint8_t)jt; p[i].jf = (uint8_t)jf; p[i].k = (uint32_t)k;
    }
    Py_DECREF(seq);
    *out = p; *nout = n;
    return 0;
bad:
    Py_DECREF(seq);
    PyMem_Free(p);
    return -1;
}

/* Reader(source, start_offset, big_endian_file, nanos, linktype, program, prefix=b"", program_for=None):
   source is a path (opened here and read from start_offset), a file descriptor already positioned
   (a file, pipe or FIFO the caller opened once: not closed here), or an object with readinto1().
   `prefix`: bytes the caller already read (to sniff the format) from start_offset on; the source is
   positioned right after them. With `program_for` (a callable: linktype -> program or None), the
   stream is pcapng from start_offset and the four classic-pcap arguments are not used. */
static int Reader_init(Reader *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"source", "start", "big", "nanos", "linktype", "program", "prefix", "program_for", NULL};
    PyObject *source; Py_ssize_t start; int big, nanos; long linktype; PyObject *prog, *program_for = Py_None;
    Py_buffer prefix = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OnpplO|y*O", kwlist, &source, &start, &big, &nanos, &linktype, &prog,
                                     &prefix, &program_for)) return -1;
    int rc = -1;
    if (self->buf) { PyErr_SetString(PyExc_RuntimeError, "Reader already initialised"); goto out; }
    if (start < 0 || prefix.len > (Py_ssize_t)WINDOW) { PyErr_SetString(PyExc_ValueError, "bad start or prefix"); goto out; }
    if (program_for != Py_None) {
        if (!PyCallable_Check(program_for)) { PyErr_SetString(PyExc_TypeError, "program_for must be callable"); goto out; }
        Py_INCREF(program_for);
        self->program_for = program_for;
        self->pcapng = 1;
        if (!(self->skipped = PyDict_New())) goto out;
    } else if (load_prog(prog, &self->prog, &self->nprog) < 0) goto out;
    self->fd = -1;
    if (PyUnicode_Check(source) || PyBytes_Check(source)) {
        PyObject *enc = NULL;
        if (!PyUnicode_FSConverter(source, &enc)) goto out;   /* any file name, UTF-8 or not */
        int fd = open(PyBytes_AS_STRING(enc), O_RDONLY);
        if (fd < 0 || (start + prefix.len && lseek(fd, (off_t)(start + prefix.len), SEEK_SET) < 0)) {
            if (fd >= 0) close(fd);
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, source); Py_DECREF(enc); goto out;
        }
        Py_DECREF(enc);
        self->fd = fd; self->own_fd = 1;
    } else if (PyLong_Check(source)) {
        self->fd = (int)PyLong_AsLong(source);
        if (self->fd < 0) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad file descriptor"); goto out; }
    } else {
        Py_INCREF(source);
        self->src = source;
    }
    self->buf = PyMem_Malloc(WINDOW);
    if (!self->buf) { PyErr_NoMemory(); goto out; }
    self->buf_cap = WINDOW;
    if (self->fd >= 0) posix_fadvise(self->fd, 0, 0, POSIX_FADV_SEQUENTIAL);  /* fails harmlessly on a pipe */
    uint32_t one = 1;
    int little = *(uint8_t *)&one == 1;
    self->swap = big ? little : !little;
    self->nanos = nanos;
    self->linktype = linktype;
    self->off = (size_t)start;
    self->buf_off = (size_t)start;   /* the window starts with the prefix, then the source from where it is */
    memcpy(self->buf, prefix.buf, (size_t)prefix.len);
    self->buf_len = (size_t)prefix.len;
    Py_INCREF(Py_None);
    self->damage = Py_None;
    self->next_sweep = ~0ULL;
    rc = 0;
out:
    if (prefix.obj) PyBuffer_Release(&prefix);
    return rc;
}

static void set_damage(Reader *self, PyObject *msg) {
    if (!msg) PyErr_Clear();            /* no memory for the words: the walk still ends here */
    Py_XSETREF(self->damage, msg ? msg : Py_NewRef(Py_None));
    self->eof = 1;
}

/* Fill the window from the stream: 0 at its end (or after src raised: src_error), -1 on an error
   to raise (a signal's exception: Ctrl-C or SIGTERM while a pipe is quiet) */
static int fill(Reader *self) {
    while (self->buf_len < self->buf_cap) {
        if (self->src) {
            if (self->src_error) return 0;
            PyObject *mv = PyMemoryView_FromMemory((char *)self->buf + self->buf_len, self->buf_cap - self->buf_len, PyBUF_WRITE);
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
        ssize_t n = read(self->fd, self->buf + self->buf_len, self->buf_cap - self->buf_len);
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
   read in order; need is at most MAX_BLOCK: the window grows to it); a pointer to it, or NULL if
   the stream ends first (self->buf_len bytes remain from off) or an exception is set (*err). */
static const uint8_t *window(Reader *self, size_t off, size_t need, int *err) {
    if (off + need <= self->buf_off + self->buf_len) return self->buf + (off - self->buf_off);
    size_t keep = self->buf_off + self->buf_len - off;
    memmove(self->buf, self->buf + (off - self->buf_off), keep);
    self->buf_off = off;
    self->buf_len = keep;
    if (need > self->buf_cap) {          /* a pcapng block larger than the window (at most MAX_BLOCK) */
        uint8_t *nb = PyMem_Realloc(self->buf, need);
        if (!nb) { PyErr_NoMemory(); *err = 1; return NULL; }
        self->buf = nb;
        self->buf_cap = need;
    }
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

/* One frame read: filter it, hand it to the sink, or make Python's tuple. 1: consumed (filtered
   out or taken by the sink); 0: *out is the tuple; -1: an error is set. */
static int frame_out(Reader *self, const uint8_t *data, uint32_t incl, uint32_t orig, long long ts, long lt,
                     const insn_t *prog, Py_ssize_t nprog, PyObject **out) {
    if (nprog && !run_bpf(prog, nprog, data, orig, incl)) return 1;
    self->passed++;
    if (self->sink && (lt == LT_ETHERNET || lt == LT_SLL || lt == LT_SLL2) && self->frames < self->next_sweep) {
        int r = track_frame(self, lt, data, incl, ts);
        if (r < 0) return -1;
        if (r) return 1;
    }
    *out = Py_BuildValue("(KLly#I)", self->frames, ts, lt, (const char *)data, (Py_ssize_t)incl, orig);
    return *out ? 0 : -1;
}

/* classic pcap: the next frame for Python; NULL without an error at the end (eof set, damage said) */
static PyObject *walk_pcap(Reader *self) {
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
        self->off = off + 16 + incl;
        self->frames++;
        long long ts = (long long)sec * 1000000000LL + (long long)frac * scale;
        PyObject *out;
        int r = frame_out(self, rec + 16, incl, orig, ts, self->linktype, self->prog, self->nprog, &out);
        if (r < 0) return NULL;
        if (r == 0) return out;
    }
    return NULL;
}

/* ---- pcapng ------------------------------------------------------------------------------- */
/* nanoseconds per tick from an IDB's options (if_tsresol, code 9; microseconds without it): as
   capture/pcapfile.py's _if_tsresol, the last one given wins */
static void if_tsresol(const uint8_t *body, uint32_t blen, int swap, uint64_t *num, unsigned __int128 *den) {
    *num = 1000; *den = 1;
    uint32_t pos = 8;
    while (pos + 4 <= blen) {
        uint16_t code = rd16(body + pos, swap), olen = rd16(body + pos + 2, swap);
        if (code == 0) break;
        if (code == 9 && olen >= 1 && pos + 4 < blen) {
            uint8_t r = body[pos + 4];
            if (r & 0x80) { *num = 1000000000ULL; *den = (unsigned __int128)1 << (r & 0x7f); }
            else {
                unsigned exp = r & 0x7f;
                if (exp <= 9) { uint64_t v = 1; for (unsigned i = exp; i < 9; i++) v *= 10; *num = v; *den = 1; }
                else if (exp - 9 <= 38) { unsigned __int128 v = 1; for (unsigned i = 9; i < exp; i++) v *= 10; *num = 1; *den = v; }
                else { *num = 1; *den = 0; }          /* 10^39 and more: every 64-bit tick count is 0 ns */
            }
        }
        pos += 4 + (((uint32_t)olen + 3) & ~3u);
    }
}

static int add_iface(Reader *self, const uint8_t *body, uint32_t blen) {
    long lt = rd16(body, self->swap);
    if (lt == 12 || lt == 14) lt = LT_RAW;          /* libpcap's DLT_RAW numbers (pcapfile.py's _DLT_TO_LINKTYPE) */
    iface_t f;
    memset(&f, 0, sizeof f);
    f.linktype = lt;
    if_tsresol(body, blen, self->swap, &f.num, &f.den);
    /* an interface of an unsupported type is not fatal in a file that has others: its frames are
       counted and reported as skipped (program_for returns None) */
    PyObject *prog = PyObject_CallFunction(self->program_for, "l", lt);
    if (!prog) return -1;
    if (prog != Py_None && load_prog(prog, &f.prog, &f.nprog) < 0) { Py_DECREF(prog); return -1; }
    f.supported = prog != Py_None;
    Py_DECREF(prog);
    if (self->nifaces == self->capifaces) {
        size_t cap = self->capifaces ? self->capifaces * 2 : 4;
        iface_t *n = PyMem_Realloc(self->ifaces, cap * sizeof *n);
        if (!n) { PyMem_Free(f.prog); PyErr_NoMemory(); return -1; }
        self->ifaces = n; self->capifaces = cap;
    }
    self->ifaces[self->nifaces++] = f;
    return 0;
}

static void clear_ifaces(Reader *self) {
    for (size_t i = 0; i < self->nifaces; i++) PyMem_Free(self->ifaces[i].prog);
    self->nifaces = 0;
}

static int count_skipped(Reader *self, long lt) {
    PyObject *k = PyLong_FromLong(lt);
    if (!k) return -1;
    PyObject *v = PyDict_GetItemWithError(self->skipped, k);
    long long n = v ? PyLong_AsLongLong(v) : 0;
    PyObject *nv = PyErr_Occurred() ? NULL : PyLong_FromLongLong(n + 1);
    int r = nv ? PyDict_SetItem(self->skipped, k, nv) : -1;
    Py_DECREF(k); Py_XDECREF(nv);
    return r;
}

static inline long long tick_ns(const iface_t *f, uint32_t hi, uint32_t lo) {
    if (!f->den) return 0;
    unsigned __int128 v = ((unsigned __int128)(((uint64_t)hi << 32) | lo) * f->num) / f->den;
    return v > (unsigned __int128)TS_MAX ? TS_MAX : (long long)v;
}

#define NG_DAMAGE(...) do { set_damage(self, PyUnicode_FromFormat(__VA_ARGS__)); return NULL; } while (0)

/* pcapng: the next frame for Python; NULL without an error at the end (eof set, damage said) */
static PyObject *walk_ng(Reader *self) {
    int err = 0;
    while (!self->eof) {
        size_t off = self->off;
        const uint8_t *h = window(self, off, 8, &err);
        if (err) return NULL;
        if (!h) {
            if (self->buf_len == 0 && !self->src_error) { self->eof = 1; break; }   /* the end, between blocks */
            short_damage(self, PyUnicode_FromFormat("truncated block header at byte offset %zu", off));
            break;
        }
        int shb = !memcmp(h, "\x0a\x0d\x0d\x0a", 4);
        uint32_t blen;
        if (shb) {                                   /* a section: its byte order, and a new interface list */
            h = window(self, off, 12, &err);
            if (err) return NULL;
            if (!h) { short_damage(self, PyUnicode_FromFormat("truncated section header at byte offset %zu", off)); break; }
            uint32_t one = 1;
            int little = *(uint8_t *)&one == 1;
            if (!memcmp(h + 8, "\x4d\x3c\x2b\x1a", 4)) self->swap = !little;
            else if (!memcmp(h + 8, "\x1a\x2b\x3c\x4d", 4)) self->swap = little;
            else NG_DAMAGE("bad byte-order magic in section header at byte offset %zu", off);
            blen = rd32(h + 4, self->swap);
            if (blen < 28 || blen % 4 || blen > MAX_BLOCK) NG_DAMAGE("section header at byte offset %zu has a corrupt length (%u)", off, blen);
        } else {
            blen = rd32(h + 4, self->swap);
            if (blen < 12 || blen % 4 || blen > MAX_BLOCK) NG_DAMAGE("block at byte offset %zu has a corrupt length (%u)", off, blen);
        }
        const uint8_t *b = window(self, off, blen, &err);
        if (err) return NULL;
        if (!b) {
            size_t have = self->buf_len;
            if (have < (size_t)blen - 4)
                short_damage(self, PyUnicode_FromFormat("block at byte offset %zu truncated: %zu of %u bytes present", off, have, blen));
            else
                short_damage(self, PyUnicode_FromFormat("block at byte offset %zu truncated (no trailing length)", off));
            break;
        }
        if (rd32(b + blen - 4, self->swap) != blen) NG_DAMAGE("block at byte offset %zu: trailing length differs from leading length", off);
        self->off = off + blen;
        if (shb) { clear_ifaces(self); continue; }
        uint32_t btype = rd32(b, self->swap);
        const uint8_t *body = b + 8;
        uint32_t bl = blen - 12;
        if (btype == 1) {                            /* Interface Description Block */
            if (bl < 8) NG_DAMAGE("interface block at byte offset %zu too short", off);
            if (add_iface(self, body, bl) < 0) return NULL;
        } else if (btype == 6 || btype == 2) {       /* Enhanced / obsolete Packet Block */
            if (bl < 20) NG_DAMAGE("packet block at byte offset %zu too short", off);
            uint32_t ifid = btype == 6 ? rd32(body, self->swap) : rd16(body, self->swap);
            uint32_t tsh = rd32(body + 4, self->swap), tsl = rd32(body + 8, self->swap);
            uint32_t caplen = rd32(body + 12, self->swap), wirelen = rd32(body + 16, self->swap);
            if (ifid >= self->nifaces) NG_DAMAGE("packet block at byte offset %zu names interface %u, which was never described", off, ifid);
            if (caplen > bl - 20) NG_DAMAGE("packet block at byte offset %zu claims %u bytes but holds %u", off, caplen, bl - 20);
            self->frames++;
            const iface_t *f = &self->ifaces[ifid];
            if (!f->supported) { if (count_skipped(self, f->linktype) < 0) return NULL; continue; }
            PyObject *out;
            int r = frame_out(self, body + 20, caplen, wirelen, tick_ns(f, tsh, tsl), f->linktype, f->prog, f->nprog, &out);
            if (r < 0) return NULL;
            if (r == 0) return out;
        } else if (btype == 3) {                     /* Simple Packet Block: no timestamp, interface 0 */
            if (!self->nifaces || bl < 4) NG_DAMAGE("simple packet block at byte offset %zu without an interface", off);
            uint32_t wirelen = rd32(body, self->swap);
            uint32_t incl = wirelen < bl - 4 ? wirelen : bl - 4;
            self->frames++;
            const iface_t *f = &self->ifaces[0];
            if (!f->supported) { if (count_skipped(self, f->linktype) < 0) return NULL; continue; }
            PyObject *out;
            int r = frame_out(self, body + 4, incl, wirelen, 0, f->linktype, f->prog, f->nprog, &out);
            if (r < 0) return NULL;
            if (r == 0) return out;
        }
        /* every other block type (name resolution, statistics, secrets, custom) is skipped */
    }
    return NULL;
}

/* iterating the reader: the frames Python decodes itself (ARP, neighbour discovery, tunnels,
   VLAN stacks, fragments, other link types; every frame from next_sweep on), one at a time */
static PyObject *Reader_iternext(Reader *self) {
    if (!self->buf) { PyErr_SetString(PyExc_RuntimeError, "Reader not initialised"); return NULL; }
    return self->pcapng ? walk_ng(self) : walk_pcap(self);
}

static PyObject *Reader_filter(Reader *self, PyObject *arg) {
    /* run the classic-pcap program on one buffer (tests compare it with libpcap's own filter) */
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t r = run_bpf(self->prog, self->nprog, b.buf, (uint32_t)b.len, (uint32_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(r);
}

/* track(sink): from now on, TCP frames this walker can decode go to the consumer behind the
   capsule (capture/_sink.h), not to Python */
static PyObject *Reader_track(Reader *self, PyObject *arg) {
    if (!PyCapsule_IsValid(arg, DSR_SINK_CAPSULE)) {
        PyErr_SetString(PyExc_TypeError, "a packet sink (a capsule named " DSR_SINK_CAPSULE ") is needed"); return NULL;
    }
    dsr_sink *s = PyCapsule_GetPointer(arg, DSR_SINK_CAPSULE);
    if (!s) return NULL;
    if (s->version != DSR_SINK_VERSION || !s->wants_port || !s->packet) {
        PyErr_SetString(PyExc_ValueError, "the packet sink was built against another capture/_sink.h"); return NULL;
    }
    Py_INCREF(arg);
    Py_XSETREF(self->sink_capsule, arg);
    self->sink = s;
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
static PyObject *get_damage(Reader *s, void *c) { return Py_NewRef(s->damage ? s->damage : Py_None); }
static PyObject *get_skipped(Reader *s, void *c) { return s->skipped ? PyDict_Copy(s->skipped) : PyDict_New(); }

static PyGetSetDef Reader_getset[] = {
    {"frames", (getter)get_frames, NULL, "frames read so far (every frame, filtered or not)", NULL},
    {"passed", (getter)get_passed, NULL, "frames the program accepted", NULL},
    {"position", (getter)get_position, NULL, "byte offset of the next record or block", NULL},
    {"eof", (getter)get_eof, NULL, "the walk ended (end of file or damage)", NULL},
    {"damage", (getter)get_damage, NULL, "why the walk stopped early, or None", NULL},
    {"skipped", (getter)get_skipped, NULL, "pcapng: {linktype: frames} on interfaces of an unsupported link type", NULL},
    {"tracked", (getter)get_tracked, NULL, "TCP packets handed to the sink without Python", NULL},
    {"next_sweep", (getter)get_next_sweep, (setter)set_next_sweep, "frame number from which frames go to Python again", NULL},
    {NULL}
};

static PyMethodDef Reader_methods[] = {
    {"filter", (PyCFunction)Reader_filter, METH_O, "filter(buf): the program's result for one frame"},
    {"track", (PyCFunction)Reader_track, METH_O, "track(sink): TCP frames go to the consumer behind the capsule, in C"},
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
    .tp_doc = "Reader(path | fd | readinto1-object, start_offset, big_endian_file, nanos, linktype, bpf_program,"
              " prefix=b'', program_for=None)",
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_fastpcap",
                                    "Classic pcap and pcapng + BPF in C, exact frame numbers; TCP frames to a sink (capture/_sink.h).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__fastpcap(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) { Py_DECREF(&ReaderType); Py_DECREF(m); return NULL; }
    if (PyModule_AddStringConstant(m, "SINK_CAPSULE", DSR_SINK_CAPSULE) < 0
        || PyModule_AddIntConstant(m, "SINK_VERSION", DSR_SINK_VERSION) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
