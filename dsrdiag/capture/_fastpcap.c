/* _fastpcap: read a classic pcap file and run a BPF program on every frame, in C.
 *
 * Why: reading a capture frame by frame through pcapy-ng costs two Python calls per frame (next,
 * filter) even for the 60% of a mail relay's traffic that is dropped; libpcap's setfilter would
 * skip those in C but then hides how many frames it skipped, and the Wireshark frame numbers every
 * finding cites would be lost. This module walks the file (read only, through a 2 MiB window: input
 * files are never modified, and a file of any size costs the same memory), counts every frame, runs the program libpcap compiled (pcapy.compile(...).get_bpf())
 * through a classic BPF interpreter with libpcap's bpf_filter semantics, and hands the frames
 * that pass to Python one at a time (iterating the reader): (frame number, ts_ns, linktype,
 * bytes, wire length).
 * Damage (a truncated or absurd record) stops the walk with the same words the Python reader
 * uses, at an exact byte offset; the frames before it are delivered.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#define MAX_CAPLEN 262144u
#define WINDOW (2u << 20)     /* bytes of the file held at once; a record is at most MAX_CAPLEN + 16 */
#define BPF_MEMWORDS 16

typedef struct { uint16_t code; uint8_t jt, jf; uint32_t k; } insn_t;

/* ---- the established fast path ------------------------------------------------------------
 * dsrdiag's tracker (track/conn.py) hands a connection to this table once nothing is left to
 * learn from its packets but counters and notes: both sides ESTABLISHED, SMTP over (TLS started). Then an in-order ACK/data packet, or the LB's forwarded copy of one, changes only a
 * few numbers, which are kept here. Any other packet of that connection releases it: the state is
 * parked until Python takes it (release()), and that packet and all later ones go to Python. The
 * rules are track/conn.py's (ConnState.process), restricted to what these packets can change;
 * tests/test_scale.py checks the records are identical with and without this table. */
#define MAX_FLOWS 8192        /* connections counted here at once; more stay with Python */
#define TABLE (MAX_FLOWS * 2)
#define MAX_PAIRS 6
#define KEYLEN 36            /* client ip (16) + server ip (16) + client port + server port */
#define FORWARD_WINDOW_NS 50000000LL
#define TOO_LARGE 1048576

typedef struct {
    uint32_t last_seq, ack_seq;   /* last_seq == next_seq while here */
    uint8_t seen_d, seen_a, npairs;
    uint8_t pairs[MAX_PAIRS][12];
    uint8_t has_sig;
    uint32_t sig_seq, sig_ack, sig_plen, sig_id;
    uint8_t sig_flags;
    int64_t sig_ts;
    uint8_t sig_pair[12];
    unsigned long long pkts, copies;
} dir_t;

#define MAX_FWD 16           /* track/conn.py MAX_SYNS: forwarded copies noted per connection */
#define MAX_NOTES 24         /* track/conn.py MAX_NOTES: packets noted per connection */
#define PEEK 80              /* track/conn.py PEEK: payload bytes kept per note */

typedef struct {             /* a packet (or forwarded copy) of the connection, noted as track/conn.py notes it */
    unsigned long long frame;
    int64_t ts;
    uint32_t seq, ack, plen;
    int32_t ip_id;            /* -1: IPv6 */
    uint8_t dir, flags, ttl, pair[12], npeek, peek[PEEK];
} note_t;

typedef struct {
    uint8_t used;                 /* 0 free, 1 live, 2 released (waiting for Python), 3 tombstone */
    uint8_t key[KEYLEN];
    int64_t last_ts;
    dir_t d[2];                   /* 0: client -> server, 1: server -> client */
    uint8_t fwd_room, nfwd;       /* copies Python would still note, and those noted here */
    note_t *fwd;                  /* fwd_room of them (no payload kept), allocated when there is room */
    uint8_t note_room, nnotes;    /* the same for the connection's first packets */
    note_t *notes;
} flow_t;

typedef struct {
    PyObject_HEAD
    int fd;
    uint8_t *buf;      /* a window of the file: buf[0] is the byte at offset buf_off */
    size_t buf_off, buf_len;
    size_t size;
    size_t off;
    int swap;          /* file byte order differs from ours */
    int nanos;
    long linktype;
    insn_t *prog;
    Py_ssize_t nprog;
    unsigned long long frames, passed;
    PyObject *damage;  /* str or None */
    int eof;
    flow_t *flows;     /* open addressing, TABLE slots, keyed by the client-side key */
    Py_ssize_t nflows;
    long long fast_pkts, last_ts;
    int have_last_ts;
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
static inline int32_t seq_delta(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

static uint64_t key_hash(const uint8_t *k) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < KEYLEN; i++) { h ^= k[i]; h *= 1099511628211ULL; }
    return h;
}

/* the slot holding `key` (used == 1 or 2), or -1; with want_free, the first reusable slot if absent */
static Py_ssize_t find(Reader *self, const uint8_t *key, int want_free) {
    if (!self->flows) return -1;
    size_t i = (size_t)(key_hash(key) & (TABLE - 1));
    Py_ssize_t free_slot = -1;
    for (size_t n = 0; n < TABLE; n++, i = (i + 1) & (TABLE - 1)) {
        flow_t *f = &self->flows[i];
        if (f->used == 0) return want_free ? (free_slot >= 0 ? free_slot : (Py_ssize_t)i) : -1;
        if (f->used == 3) { if (free_slot < 0) free_slot = (Py_ssize_t)i; continue; }
        if (memcmp(f->key, key, KEYLEN) == 0) return want_free ? -2 : (Py_ssize_t)i;
    }
    return want_free ? free_slot : -1;
}

/* Ethernet (untagged or one 802.1Q tag) / IPv4 (unfragmented) or IPv6 (TCP next) / TCP, else 0 */
typedef struct {
    const uint8_t *smac, *dmac, *src, *dst;
    int alen;
    uint16_t sport, dport, win;
    uint32_t seq, ack, plen, id;
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
        if (end > len) end = len;
        l4 = off + ihl;
        t->src = ip + 12; t->dst = ip + 16; t->alen = 4; t->id = rd_be16(ip + 4); t->v4 = 1; t->ttl = ip[8];
    } else if (et == 0x86dd) {
        if (len < off + 40) return 0;
        const uint8_t *ip = d + off;
        if ((ip[0] >> 4) != 6 || ip[6] != 6) return 0;   /* extension headers: Python's path */
        uint32_t pl = rd_be16(ip + 4);
        end = pl ? off + 40 + pl : len;
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

static void make_key(uint8_t *key, const uint8_t *cip, const uint8_t *sip, int alen, uint16_t cport, uint16_t sport) {
    memset(key, 0, KEYLEN);
    memcpy(key, cip, alen);
    memcpy(key + 16, sip, alen);
    key[32] = cport >> 8; key[33] = cport & 0xff; key[34] = sport >> 8; key[35] = sport & 0xff;
}

static void fill_note(note_t *n, unsigned long long frame, int64_t ts, const tcp_t *t, int dir, const uint8_t *pair, int peek) {
    n->frame = frame; n->ts = ts; n->seq = t->seq; n->ack = t->ack; n->plen = t->plen;
    n->ip_id = t->v4 ? (int32_t)t->id : -1; n->dir = (uint8_t)dir; n->flags = t->flags; n->ttl = t->ttl;
    memcpy(n->pair, pair, 12);
    n->npeek = peek ? (uint8_t)(t->plen < PEEK ? t->plen : PEEK) : 0;
    if (n->npeek) memcpy(n->peek, t->payload, n->npeek);
}

/* the noted packets as track/conn.py's raw note tuples: (frame, ts, dir, flags, length, src MAC,
   dst MAC, ttl, seq, ack, ip_id or None[, payload head or None]) */
static PyObject *notes_list(const note_t *notes, int count, int with_peek) {
    PyObject *out = PyList_New(count);
    if (!out) return NULL;
    for (int i = 0; i < count; i++) {
        const note_t *n = &notes[i];
        PyObject *id = n->ip_id < 0 ? (Py_INCREF(Py_None), Py_None) : PyLong_FromLong(n->ip_id);
        PyObject *item = NULL;
        if (id && with_peek) {
            PyObject *peek = n->plen ? PyBytes_FromStringAndSize((const char *)n->peek, n->npeek) : (Py_INCREF(Py_None), Py_None);
            if (peek)
                item = Py_BuildValue("(KLiIIy#y#IkkNN)", n->frame, (long long)n->ts, (int)n->dir, (unsigned)n->flags, (unsigned)n->plen,
                                     (const char *)n->pair, (Py_ssize_t)6, (const char *)n->pair + 6, (Py_ssize_t)6,
                                     (unsigned)n->ttl, (unsigned long)n->seq, (unsigned long)n->ack, id, peek);
            else
                Py_DECREF(id);
        } else if (id) {
            item = Py_BuildValue("(KLiIIy#y#IkkN)", n->frame, (long long)n->ts, (int)n->dir, (unsigned)n->flags, (unsigned)n->plen,
                                 (const char *)n->pair, (Py_ssize_t)6, (const char *)n->pair + 6, (Py_ssize_t)6,
                                 (unsigned)n->ttl, (unsigned long)n->seq, (unsigned long)n->ack, id);
        }
        if (!item) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* 1: the packet belongs to a connection in the table and was accounted for here */
static int try_fast(Reader *self, const uint8_t *data, uint32_t incl, long long ts) {
    /* (frame number: self->frames, already counted) */
    tcp_t t;
    if (!self->nflows || !parse_tcp(data, incl, &t)) return 0;
    uint8_t key[KEYLEN];
    int dir = 0;
    make_key(key, t.src, t.dst, t.alen, t.sport, t.dport);
    Py_ssize_t i = find(self, key, 0);
    if (i < 0) {
        make_key(key, t.dst, t.src, t.alen, t.dport, t.sport);
        i = find(self, key, 0);
        dir = 1;
        if (i < 0) return 0;
    }
    flow_t *f = &self->flows[i];
    if (f->used != 1) return 0;                           /* released: Python has it now */
    dir_t *ep = &f->d[dir], *peer = &f->d[1 - dir];
    uint8_t pair[12];
    memcpy(pair, t.smac, 6); memcpy(pair + 6, t.dmac, 6);
    int known = 0;
    for (int k = 0; k < ep->npairs; k++) if (memcmp(ep->pairs[k], pair, 12) == 0) { known = 1; break; }
    uint32_t sig_id = t.v4 ? t.id : t.win;
    int copy = ep->has_sig && ep->sig_seq == t.seq && ep->sig_ack == t.ack && ep->sig_flags == t.flags
               && ep->sig_plen == t.plen && ep->sig_id == sig_id && ts - ep->sig_ts < FORWARD_WINDOW_NS
               && memcmp(ep->sig_pair, pair, 12) != 0 && memcmp(t.smac, ep->sig_pair + 6, 6) == 0;
    int fast = 0;
    if (known || ep->npairs >= MAX_PAIRS) {
        if (copy) fast = 1;
        else if ((t.flags & 0x17) == 0x10 && t.win && t.seq == ep->last_seq && (t.plen ? ep->seen_d : ep->seen_a)) {
            int32_t gap = seq_delta(t.ack, peer->last_seq);
            fast = !(gap > 0 && gap < TOO_LARGE);
        }
    }
    if (!fast) {
        f->used = 2;                                      /* parked until Python calls release() */
        return 0;
    }
    f->last_ts = ts;
    ep->has_sig = 1; ep->sig_seq = t.seq; ep->sig_ack = t.ack; ep->sig_flags = t.flags; ep->sig_plen = t.plen;
    ep->sig_id = sig_id; ep->sig_ts = ts; memcpy(ep->sig_pair, pair, 12);
    if (copy) {
        ep->copies++;
        if (f->nfwd < f->fwd_room && f->fwd) fill_note(&f->fwd[f->nfwd++], self->frames, ts, &t, dir, pair, 0);
        return 1;
    }
    ep->pkts++;
    if (f->nnotes < f->note_room && f->notes) fill_note(&f->notes[f->nnotes++], self->frames, ts, &t, dir, pair, 1);
    int32_t da = seq_delta(t.ack, peer->ack_seq);
    if (da > 0 && !(t.ack == 0 && da > TOO_LARGE)) peer->ack_seq = t.ack;
    if (t.plen) ep->last_seq = t.seq + t.plen;
    self->fast_pkts++;
    return 1;
}

static PyObject *dir_state(dir_t *d) {
    PyObject *sig = d->has_sig
        ? Py_BuildValue("(kkkkkLy#)", (unsigned long)d->sig_seq, (unsigned long)d->sig_ack, (unsigned long)d->sig_flags,
                        (unsigned long)d->sig_plen, (unsigned long)d->sig_id, (long long)d->sig_ts, (const char *)d->sig_pair, (Py_ssize_t)12)
        : (Py_INCREF(Py_None), Py_None);
    if (!sig) return NULL;
    return Py_BuildValue("(kkKKN)", (unsigned long)d->last_seq, (unsigned long)d->ack_seq, d->pkts, d->copies, sig);
}

static PyObject *flow_state(flow_t *f) {
    PyObject *a = dir_state(&f->d[0]);
    if (!a) return NULL;
    PyObject *b = dir_state(&f->d[1]);
    if (!b) { Py_DECREF(a); return NULL; }
    PyObject *fwd = notes_list(f->fwd, f->nfwd, 0);
    PyObject *notes = fwd ? notes_list(f->notes, f->nnotes, 1) : NULL;
    if (!notes) { Py_DECREF(a); Py_DECREF(b); Py_XDECREF(fwd); return NULL; }
    return Py_BuildValue("(LNNNN)", (long long)f->last_ts, a, b, fwd, notes);
}

static void Reader_dealloc(Reader *self) {
    if (self->fd > 0) close(self->fd);
    PyMem_Free(self->buf);
    PyMem_Free(self->prog);
    if (self->flows)
        for (Py_ssize_t i = 0; i < TABLE; i++) { PyMem_Free(self->flows[i].fwd); PyMem_Free(self->flows[i].notes); }
    PyMem_Free(self->flows);
    Py_XDECREF(self->damage);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Reader(path, start_offset, big_endian_file, nanos, linktype, program) */
static int Reader_init(Reader *self, PyObject *args, PyObject *kw) {
    const char *path; Py_ssize_t start; int big, nanos; long linktype; PyObject *prog;
    if (!PyArg_ParseTuple(args, "snpplO", &path, &start, &big, &nanos, &linktype, &prog)) return -1;
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
    int fd = open(path, O_RDONLY);
    if (fd < 0) { PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); return -1; }
    struct stat st;
    if (fstat(fd, &st) < 0) { close(fd); PyErr_SetFromErrnoWithFilename(PyExc_OSError, path); return -1; }
    self->size = (size_t)st.st_size;
    self->buf = PyMem_Malloc(WINDOW);
    if (!self->buf) { close(fd); PyErr_NoMemory(); return -1; }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    self->fd = fd;
    uint32_t one = 1;
    int little = *(uint8_t *)&one == 1;
    self->swap = big ? little : !little;
    self->nanos = nanos;
    self->linktype = linktype;
    self->off = (size_t)start;
    Py_INCREF(Py_None);
    self->damage = Py_None;
    return 0;
}

static void set_damage(Reader *self, PyObject *msg) {
    Py_XSETREF(self->damage, msg);
    self->eof = 1;
}

/* Make [off, off + need) readable in the window; returns a pointer to it, or NULL if the file ends
   first (or cannot be read: damage, reported by the caller from the sizes). */
static const uint8_t *window(Reader *self, size_t off, size_t need) {
    if (off >= self->buf_off && off + need <= self->buf_off + self->buf_len) return self->buf + (off - self->buf_off);
    size_t keep = 0;
    if (off >= self->buf_off && off < self->buf_off + self->buf_len) {
        keep = self->buf_off + self->buf_len - off;
        memmove(self->buf, self->buf + (off - self->buf_off), keep);
    }
    self->buf_off = off;
    self->buf_len = keep;
    while (self->buf_len < WINDOW) {
        ssize_t n = pread(self->fd, self->buf + self->buf_len, WINDOW - self->buf_len, (off_t)(off + self->buf_len));
        if (n <= 0) break;
        self->buf_len += (size_t)n;
    }
    return need <= self->buf_len ? self->buf : NULL;
}

/* The next frame for Python: (frame number, ts_ns, linktype, bytes, wire length); NULL without an
   error at the end (eof set, damage said). */
static PyObject *walk(Reader *self) {
    long long scale = self->nanos ? 1 : 1000;
    while (!self->eof) {
        size_t off = self->off;
        if (off == self->size) { self->eof = 1; break; }
        if (self->size - off < 16) {
            set_damage(self, PyUnicode_FromFormat("truncated record header at byte offset %zu", off));
            break;
        }
        const uint8_t *h = window(self, off, 16);
        if (!h) {
            set_damage(self, PyUnicode_FromFormat("truncated record header at byte offset %zu", off));
            break;
        }
        uint32_t sec = rd32(h, self->swap), frac = rd32(h + 4, self->swap);
        uint32_t incl = rd32(h + 8, self->swap), orig = rd32(h + 12, self->swap);
        if (incl > MAX_CAPLEN) {
            set_damage(self, PyUnicode_FromFormat("record at byte offset %zu claims %u captured bytes (more than %u): corrupt",
                                                  off, incl, MAX_CAPLEN));
            break;
        }
        if (self->size - off - 16 < incl) {
            set_damage(self, PyUnicode_FromFormat("frame %llu truncated at byte offset %zu: %zu of %u bytes present",
                                                  self->frames + 1, off, self->size - off - 16, incl));
            break;
        }
        const uint8_t *rec = window(self, off, 16 + (size_t)incl);
        if (!rec) {
            set_damage(self, PyUnicode_FromFormat("frame %llu truncated at byte offset %zu: %zu of %u bytes present",
                                                  self->frames + 1, off, self->buf_len > 16 ? self->buf_len - 16 : 0, incl));
            break;
        }
        const uint8_t *data = rec + 16;
        self->off = off + 16 + incl;
        self->frames++;
        if (self->nprog && !run_bpf(self->prog, self->nprog, data, orig, incl)) continue;
        self->passed++;
        long long ts = (long long)sec * 1000000000LL + (long long)frac * scale;
        self->last_ts = ts;
        self->have_last_ts = 1;
        if (self->linktype == 1 && try_fast(self, data, incl, ts)) continue;
        return Py_BuildValue("(KLly#I)", self->frames, ts, self->linktype, (const char *)data, (Py_ssize_t)incl, orig);
    }
    return NULL;
}

/* iterating the reader: one frame at a time, so that a connection handed to the fast path
   (fast_add) counts from the very next frame on */
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

/* fast_add(key, last_ts, (dir0), (dir1), fwd_room, note_room) -> bool; dir = (last_seq, ack_seq, seen_d, seen_a,
   pairs(list of 12-byte bytes), sig or None, pkts, copies); sig = (seq, ack, flags,
   plen, id_or_win, ts, pair12) */
static int load_dir(PyObject *o, dir_t *d) {
    unsigned long last_seq, ack_seq; int sd, sa; PyObject *pairs, *sig; unsigned long long pkts, copies;
    if (!PyArg_ParseTuple(o, "kkppOOKK", &last_seq, &ack_seq, &sd, &sa, &pairs, &sig, &pkts, &copies)) return -1;
    memset(d, 0, sizeof *d);
    d->last_seq = (uint32_t)last_seq; d->ack_seq = (uint32_t)ack_seq;
    d->seen_d = sd; d->seen_a = sa; d->pkts = pkts; d->copies = copies;
    PyObject *seq = PySequence_Fast(pairs, "pairs");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n && i < MAX_PAIRS; i++) {
        PyObject *b = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(b) || PyBytes_GET_SIZE(b) != 12) { Py_DECREF(seq); PyErr_SetString(PyExc_ValueError, "pair"); return -1; }
        memcpy(d->pairs[i], PyBytes_AS_STRING(b), 12);
    }
    d->npairs = (uint8_t)(n < MAX_PAIRS ? n : MAX_PAIRS);
    Py_DECREF(seq);
    if (sig != Py_None) {
        unsigned long s0, s1, s2, s3, s4; long long ts; const char *pb; Py_ssize_t pl;
        if (!PyArg_ParseTuple(sig, "kkkkkLy#", &s0, &s1, &s2, &s3, &s4, &ts, &pb, &pl)) return -1;
        if (pl != 12) { PyErr_SetString(PyExc_ValueError, "sig pair"); return -1; }
        d->has_sig = 1; d->sig_seq = (uint32_t)s0; d->sig_ack = (uint32_t)s1; d->sig_flags = (uint8_t)s2;
        d->sig_plen = (uint32_t)s3; d->sig_id = (uint32_t)s4; d->sig_ts = ts; memcpy(d->sig_pair, pb, 12);
    }
    return 0;
}

static PyObject *Reader_fast_add(Reader *self, PyObject *args) {
    const char *k; Py_ssize_t kl; long long last_ts; PyObject *d0, *d1; int room, note_room = 0;
    if (!PyArg_ParseTuple(args, "y#LOOi|i", &k, &kl, &last_ts, &d0, &d1, &room, &note_room)) return NULL;
    if (kl != KEYLEN) { PyErr_SetString(PyExc_ValueError, "key must be 36 bytes"); return NULL; }
    if (!self->flows) {
        self->flows = PyMem_Calloc(TABLE, sizeof(flow_t));
        if (!self->flows) return PyErr_NoMemory();
    }
    if (self->nflows >= MAX_FLOWS) Py_RETURN_FALSE;
    Py_ssize_t i = find(self, (const uint8_t *)k, 1);
    if (i < 0) Py_RETURN_FALSE;                            /* already there (-2) or full */
    flow_t f;
    memset(&f, 0, sizeof f);
    if (load_dir(d0, &f.d[0]) < 0 || load_dir(d1, &f.d[1]) < 0) return NULL;
    f.used = 1;
    f.fwd_room = (uint8_t)(room < 0 ? 0 : room > MAX_FWD ? MAX_FWD : room);
    f.note_room = (uint8_t)(note_room < 0 ? 0 : note_room > MAX_NOTES ? MAX_NOTES : note_room);
    if (f.fwd_room) {
        f.fwd = PyMem_Malloc(f.fwd_room * sizeof(note_t));
        if (!f.fwd) return PyErr_NoMemory();
    }
    if (f.note_room) {
        f.notes = PyMem_Malloc(f.note_room * sizeof(note_t));
        if (!f.notes) { PyMem_Free(f.fwd); return PyErr_NoMemory(); }
    }
    memcpy(f.key, k, KEYLEN);
    f.last_ts = last_ts;
    self->flows[i] = f;
    self->nflows++;
    Py_RETURN_TRUE;
}

/* release(key) -> (last_ts, dir0, dir1) or None; the connection is Python's again */
static PyObject *Reader_release(Reader *self, PyObject *arg) {
    char *k; Py_ssize_t kl;
    if (PyBytes_AsStringAndSize(arg, &k, &kl) < 0) return NULL;
    if (kl != KEYLEN) { PyErr_SetString(PyExc_ValueError, "key must be 36 bytes"); return NULL; }
    Py_ssize_t i = find(self, (const uint8_t *)k, 0);
    if (i < 0) Py_RETURN_NONE;
    PyObject *st = flow_state(&self->flows[i]);
    PyMem_Free(self->flows[i].fwd);
    PyMem_Free(self->flows[i].notes);
    self->flows[i].fwd = NULL;
    self->flows[i].notes = NULL;
    self->flows[i].used = 3;
    self->nflows--;
    return st;
}

/* release_all() -> [(key, state)]: before a sweep and at the end */
static PyObject *Reader_release_all(Reader *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out || !self->flows) return out;
    for (Py_ssize_t i = 0; i < TABLE; i++) {
        flow_t *f = &self->flows[i];
        if (f->used == 1 || f->used == 2) {
            PyObject *st = flow_state(f);
            PyObject *item = st ? Py_BuildValue("(y#N)", (const char *)f->key, (Py_ssize_t)KEYLEN, st) : NULL;
            if (!item || PyList_Append(out, item) < 0) { Py_XDECREF(item); Py_DECREF(out); return NULL; }
            Py_DECREF(item);
        }
        PyMem_Free(f->fwd);
        PyMem_Free(f->notes);
        f->fwd = NULL;
        f->notes = NULL;
        f->used = 0;
    }
    self->nflows = 0;
    return out;
}

static PyObject *get_fast(Reader *s, void *c) { return PyLong_FromLongLong(s->fast_pkts); }
static PyObject *get_last_ts(Reader *s, void *c) { if (!s->have_last_ts) Py_RETURN_NONE; return PyLong_FromLongLong(s->last_ts); }

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
    {"fast_packets", (getter)get_fast, NULL, "packets accounted for by the established fast path", NULL},
    {"last_ts", (getter)get_last_ts, NULL, "time of the last frame that passed the filter", NULL},
    {NULL}
};

static PyMethodDef Reader_methods[] = {
    {"filter", (PyCFunction)Reader_filter, METH_O, "filter(buf): the program's result for one frame"},
    {"fast_add", (PyCFunction)Reader_fast_add, METH_VARARGS, "fast_add(key, last_ts, dir0, dir1): hand a connection to C"},
    {"release", (PyCFunction)Reader_release, METH_O, "release(key): take a connection back (its state) or None"},
    {"release_all", (PyCFunction)Reader_release_all, METH_NOARGS, "release_all(): every connection's key and state"},
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
    .tp_doc = "Reader(path, start_offset, big_endian_file, nanos, linktype, bpf_program)",
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_fastpcap", "Classic pcap + BPF in C, exact frame numbers.", -1, NULL};

PyMODINIT_FUNC PyInit__fastpcap(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) { Py_DECREF(&ReaderType); Py_DECREF(m); return NULL; }
    return m;
}
