/* _conntrack: dsrdiag's TCP connection tracker in C (Zeek conn.log semantics).
 *
 * Why: after the capture walker (capture/_fastpcap.c) and BPF, the per-packet Python work of
 * track/conn.py (~9 us a packet) was most of an analysis. This is the same tracker, rule for
 * rule: track/conn.py's ConnState.process and ConnTracker.packet are the specification, kept in
 * Python as the reference (DSRDIAG_TRACKER=python selects it) and the fallback where no compiler
 * exists; tests/test_scale.py and tests/test_native_tracker.py check that both give identical
 * records on every sample capture, on generated relays and on corrupted ones. Python is called
 * only for the record (track/conn.py connection_record) when a connection ends, and for a PROXY
 * header at the start of a stream (decode/proxyproto.py); the SMTP follower is in C as well
 * (track/_smtpfollow.c, track/smtp.py's rules). Comments name the Python function each part mirrors.
 * With `lane` set to 1, a finished lone SYN (track/lone.py) leaves as a 104-byte row, not a tuple
 * (drain(), lone()): a SYN flood's millions of one-packet attempts never become Python objects.
 * sweep() does not scan the table: entries a packet touched since the last sweep (the dirty list)
 * are computed anew, the others wait in a min-heap under their removal time (Zeek's timers, kept
 * lazily), and one sweep's ended entries are handed over in the order they began (their numbers),
 * as the reference's table hands them (tests/test_sweep_native.py). A lone SYN attempt open across
 * a sweep is frozen as ~100 bytes.
 */
#include "_conntrack.h"
#include "structmember.h"          /* PyMemberDef: NoteBlock's slots by offset */
#include "_smtpfollow.h"
#include "_lonerow.h"
#include "_storepack.h"
#include "_factsobserve.h"
#include "_selection.h"
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

#define M32 0xFFFFFFFFu
#define TOO_LARGE 1048576
#define MAX_NOTES 24
#define PEEK 80
#define MAX_SYNS 16
#define MAX_L2 6
#define FORWARD_WINDOW_NS 50000000LL
#define MAX_OOO 64
#define KEYLEN 37              /* family, addr16, port, addr16, port */
#define NS 1000000000LL
/* Zeek's TCP timers (init-bare.zeek defaults; track/conn.py names them) */
#define TCP_SYN_TIMEOUT (5 * NS)
#define TCP_SESSION_TIMER (6 * NS)
#define TCP_CONNECTION_LINGER (5 * NS)
#define TCP_ATTEMPT_DELAY (5 * NS)
#define TCP_CLOSE_DELAY (5 * NS)
#define TCP_INACTIVITY_TIMEOUT (300 * NS)
#define UDP_INACTIVITY_TIMEOUT (60 * NS)
#define NO_TIME INT64_MIN
#define MAX_CHAINS 3           /* ExpireTimer chains: the first packet's, and one per side's close */

enum { INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET };
enum { SEEN_S = 1, SEEN_F = 2, SEEN_R = 4, SEEN_D = 8, SEEN_A = 16, SEEN_I = 32, SEEN_Q = 64 };
#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_ACK 0x10

typedef struct { uint8_t s[6], d[6], hs, hd; } pair_t;

typedef struct {
    unsigned long long frame;
    int64_t ts;
    uint32_t seq, ack, plen;
    int32_t ip_id;
    uint8_t dir, flags, ttl, has_peek, npeek;
    pair_t pair;
    uint8_t peek[PEEK];
} note_t;

typedef struct { uint32_t seq, len; uint8_t *data; } seg_t;

typedef struct {
    uint8_t state, prev_state, seen, did_close, has_next, has_ttl, ttl, npairs, has_sig;
    uint32_t start_seq, last_seq, ack_seq, next_seq, fin_end;
    long long fin_cnt;
    int64_t last_syn, last_fin, last_rst;
    unsigned long long rxmit, rxmit_thr, zw, zw_thr, gaps, gap_thr, pkts, copies, missed;
    pair_t pairs[MAX_L2];
    seg_t *ooo;                /* out-of-order segments, in insertion order (a Python dict's); */
    int nooo, capooo;          /* allocated on the first one: most connections never have any */
    uint32_t sig_seq, sig_ack, sig_plen, sig_idw;
    uint8_t sig_flags;
    int64_t sig_ts;
    pair_t sig_pair;
} ep_t;

typedef struct {
    note_t *v;
    int n, cap;
} notes_t;

/* The fields every table entry starts with, full (conn_t) or frozen (frozen_t): what the table's
   lookup reads (ckey, frozen) and what the sweep's timer heap and dirty list keep (hix, dix). */
#define NOWHERE UINT32_MAX
#define ENTRY_HEAD \
    unsigned long long num;    /* the n-th connection of the capture: uid "<vantage>:C<num>" */ \
    uint8_t ckey[KEYLEN];      /* the table's key: the 4-tuple with the lower endpoint first */ \
    uint8_t frozen;            /* 0 in a conn_t; FROZE_ZRUN or FROZE_LONE in a frozen_t */ \
    uint8_t same;              /* frozen_t FROZE_ZRUN: the SYN notes are the packet notes, stored once */ \
    uint8_t flip;              /* frozen_t FROZE_LONE: the originator's key is ckey's halves swapped */ \
    uint32_t hix;              /* its place in the timer heap (Tracker.heap), NOWHERE when not filed */ \
    uint32_t dix;              /* its place on the dirty list (Tracker.dirty), NOWHERE when not on it */ \
    uint32_t khash;            /* key_hash(ckey)'s low bits, hashed once: filing it again when the table \
                                  grows, finding its slot to thaw or remove it never hash the key again */

typedef struct {
    ENTRY_HEAD
    uint8_t key[KEYLEN];       /* originator's 4-tuple */
    uint8_t alen, c_ip[16], s_ip[16];
    uint16_t c_port, s_port;
    ep_t e[2];                 /* 0: originator, 1: responder */
    char *hist;
    size_t hlen, hcap;
    int64_t first_ts, last_ts;
    notes_t notes, syns, fwd;
    uint8_t has_syn_seq, has_synack_ack, tlen;
    uint32_t syn_seq, synack_ack;
    uint8_t tunnel[16];
    smtp_t *smtp;              /* track/_smtpfollow.c; NULL until the first payload or gap: a SYN
                                  flood's attempts never carry one, and 320 bytes each add up */
    int64_t zlast, attempt_at, delete_at;     /* ConnState's; NO_TIME: none */
    int64_t chains[MAX_CHAINS];
    int nchains;
} conn_t;

typedef struct {
    PyObject_HEAD
    uint8_t ports[8192];       /* bitmap of the service ports */
    PyObject *parse_proxy;     /* decode/proxyproto.parse_proxy, for the SMTP follower */
    conn_t **slots;            /* open addressing by originator key; TOMB marks a removed entry */
    size_t cap, used, tombs;
    conn_t **done;             /* finished, waiting for sweep()/finish_all()/more() */
    size_t ndone, capdone, donehead;   /* done[donehead:ndone] not handed to Python yet */
    size_t nfrozen;            /* table entries frozen now (frozen_t) */
    unsigned long long count, packets;
    unsigned long long first_frame, last_frame;
    int64_t first_ts, last_ts;
    uint64_t k0, k1;           /* the table's hash key, random per tracker */
    int has_clock, has_held;   /* ConnTracker.packet's capture clock and held packet */
    int64_t clock, max_step, ts_max;
    unsigned long long backwards, outliers, cut_packets;
    int64_t largest_back, largest_outlier;
    ct_pkt held;               /* its pointers point into the buffers below */
    uint8_t held_smac[6], held_dmac[6], held_src[16], held_dst[16], held_tunnel[16];
    uint8_t *held_payload;
    int draining;              /* in drain(): kit callbacks run Python; re-entry refused */
    int lane;                  /* 1: lone SYNs leave drain() as rows (track/lone.py ROW), not tuples */
    uint8_t *lone;             /* those rows, in drain order, until lone() takes them */
    size_t nlone, caplone;
    /* Zeek's timers, lazily (sweep()): every entry the sweep has seen is filed in a min-heap under
       its removal_time() as computed then; an entry a packet touched since is on the dirty list and
       is computed anew at the next sweep. So a sweep visits the dirty entries and the heap's expired
       top, never the whole table. */
    struct tmr { int64_t due; conn_t *c; } *heap;
    size_t nheap, capheap;
    conn_t **dirty;            /* NULL where one left the table since */
    size_t ndirty, capdirty;
    struct expired { unsigned long long num; size_t slot; conn_t *c; } *exp;   /* one sweep's ended entries, to sort by number */
    size_t capexp;
    size_t frozen_bytes;       /* the allocated size of the frozen entries in the table */
    PyObject *kit_held;        /* drain()'s own reference to kit, for the batch */
    PyObject *kit;             /* conn.py record_kit(): with it, drain() hands over Connection records
                                  made here (conn_record), not tuples; NULL: tuples (conn_tuple) */
} Tracker;

/* A connection the sweep found still open with little state (no SMTP, no buffered segments, a few
   notes: a flood's attempt waiting out Zeek's 5 s attempt timer, a client retrying its SYN) is
   kept frozen, in one of two forms:
   - FROZE_LONE, a lone SYN attempt (one note that is also its one SYN note, history "S"): the note
     (a byte 1 and its fields as they are when its payload bytes are all zero, as a SYN's are; else
     a byte 0 and the note with its runs of zero bytes squeezed out), and the conn_t's difference from the conn_t that one SYN makes (lone_template()), its runs of
     zero bytes squeezed out: for the flood's attempt the difference is all zeros, ~8 bytes (a
     byte says which: 0 none, 1 the squeezed difference follows, 2 only the packet signature's
     IP ID-or-window differs, its 4 bytes follow: an IPv6 SYN, which has no IP ID, signs with its
     window, which the note does not hold);
   - FROZE_ZRUN, any other: its conn_t and notes with their runs of zero bytes squeezed out
     (~1.2 KB -> ~0.3 KB).
   It thaws, bytes for bytes (its pointers and capacities excepted), when its next packet comes or
   its timer ends it: freezing changes memory, never a record. The table holds either kind;
   `frozen` (in the shared ENTRY_HEAD) tells them apart. */
enum { FROZE_ZRUN = 1, FROZE_LONE = 2 };
typedef struct {
    ENTRY_HEAD
    uint32_t len;              /* of data (its removal time is the heap's: no packet changes it until it thaws) */
    uint8_t data[];
} frozen_t;

/* a frozen entry's allocation: its head, then its data (not sizeof: the padding after len is data) */
#define FROZEN_SIZE(e) (offsetof(frozen_t, data) + ((const frozen_t *)(e))->len)
#define BODY offsetof(conn_t, key)     /* where a conn_t's own fields start, after ENTRY_HEAD */
_Static_assert(offsetof(frozen_t, ckey) == offsetof(conn_t, ckey) && offsetof(frozen_t, frozen) == offsetof(conn_t, frozen)
               && offsetof(frozen_t, hix) == offsetof(conn_t, hix) && offsetof(frozen_t, dix) == offsetof(conn_t, dix)
               && offsetof(frozen_t, len) == BODY,
               "frozen_t and conn_t must share their first fields");

#define FREEZE_NOTES 4
#define FREEZE_HIST 32

static conn_t TOMB_;
#define TOMB (&TOMB_)

static inline int32_t seq_delta(uint32_t a, uint32_t b) { return (int32_t)(a - b); }
/* a + b for b >= 0, saturating: a hostile pcapng may stamp a packet near the end of int64 time */
static inline int64_t add_ns(int64_t a, int64_t b) { return a > INT64_MAX - b ? INT64_MAX : a + b; }

/* -seq_delta(a, b) without overflow: seq_delta is -2^31 when a is exactly 2^31 behind b, and negating
   that in 32 bits is undefined (it stayed -2^31 and sent stream() 2 GiB before the payload) */
static inline int64_t seq_behind(uint32_t a, uint32_t b) { return -(int64_t)seq_delta(a, b); }

/* ---- memory -------------------------------------------------------------------------------- */
static void conn_free(conn_t *c) {
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < c->e[i].nooo; j++) PyMem_Free(c->e[i].ooo[j].data);
    for (int i = 0; i < 2; i++) PyMem_Free(c->e[i].ooo);
    PyMem_Free(c->hist);
    PyMem_Free(c->notes.v);
    PyMem_Free(c->syns.v);
    PyMem_Free(c->fwd.v);
    if (c->smtp) { smtp_free(c->smtp); PyMem_Free(c->smtp); }
    PyMem_Free(c);
}

/* the SMTP follower's state, made on first use (NULL, an error set, when out of memory) */
static smtp_t *smtp_of(conn_t *c) {
    if (!c->smtp) {
        c->smtp = PyMem_Malloc(sizeof(smtp_t));
        if (!c->smtp) { PyErr_NoMemory(); return NULL; }
        smtp_init(c->smtp);
    }
    return c->smtp;
}

/* zero-run encoding: (zeros, literals, the literal bytes)*; a literal run ends at two zeros */
static size_t zenc(uint8_t *out, const uint8_t *in, size_t n) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t z = 0, l = 0, s;
        /* zeros a word at a time first: a frozen attempt's difference from its template is ~1 KB
           of mostly zero bytes, one by one the most of a 100k flood's cycles in C (perf) */
        uint64_t w;
        while (i + 8 <= n && z + 8 <= 255 && (memcpy(&w, in + i, 8), w == 0)) { z += 8; i += 8; }
        while (i < n && in[i] == 0 && z < 255) { z++; i++; }
        s = i;
        while (i < n && l < 255 && !(in[i] == 0 && (i + 1 >= n || in[i + 1] == 0))) { l++; i++; }
        out[o++] = (uint8_t)z;
        out[o++] = (uint8_t)l;
        memcpy(out + o, in + s, l);
        o += l;
    }
    return o;
}

static size_t zdec(uint8_t *out, size_t n, const uint8_t *in) {
    size_t i = 0, o = 0;
    while (o < n) {
        size_t z = in[i], l = in[i + 1];
        i += 2;
        memset(out + o, 0, z); o += z;
        memcpy(out + o, in + i, l); o += l; i += l;
    }
    return i;
}

/* c as freeze() encodes it: its pointers NULL and its capacities 0 (thaw() makes them anew) */
static void bare(conn_t *out, const conn_t *c) {
    memcpy(out, c, sizeof *out);
    out->hist = NULL; out->hcap = 0;
    out->notes.v = out->syns.v = out->fwd.v = NULL;
    out->notes.cap = out->syns.cap = out->fwd.cap = 0;
}

/* The conn_t (bare()) that track_one() and process() make of one SYN, its note `n`, opening the
   connection with the entry head `h` (num, ckey, flip): what a flood's attempt is, field for field.
   A FROZE_LONE entry stores only its difference from this, so the template needs to be right only
   for the common attempt to be small: any field it misses is in the difference, never lost. */
static void lone_template(conn_t *c, const frozen_t *h, const note_t *n) {
    memset(c, 0, sizeof *c);
    c->num = h->num;
    memcpy(c->ckey, h->ckey, KEYLEN);
    if (h->flip) { c->key[0] = h->ckey[0]; memcpy(c->key + 1, h->ckey + 19, 18); memcpy(c->key + 19, h->ckey + 1, 18); }
    else memcpy(c->key, h->ckey, KEYLEN);
    c->alen = c->key[0] <= 16 ? c->key[0] : 16;
    memcpy(c->c_ip, c->key + 1, c->alen); c->c_port = (uint16_t)(c->key[17] << 8 | c->key[18]);
    memcpy(c->s_ip, c->key + 19, c->alen); c->s_port = (uint16_t)(c->key[35] << 8 | c->key[36]);
    for (int i = 0; i < 2; i++) c->e[i].rxmit_thr = c->e[i].zw_thr = c->e[i].gap_thr = 1;
    ep_t *o = &c->e[0];
    o->state = SYN_SENT; o->seen = SEEN_S; o->has_ttl = 1; o->ttl = n->ttl; o->npairs = 1; o->pairs[0] = n->pair;
    o->start_seq = o->ack_seq = n->seq; o->last_seq = n->seq + 1; o->pkts = 1;
    o->has_sig = 1; o->sig_seq = n->seq; o->sig_ack = n->ack; o->sig_flags = n->flags; o->sig_plen = n->plen;
    o->sig_idw = n->ip_id >= 0 ? (uint32_t)n->ip_id : 0; o->sig_ts = n->ts; o->sig_pair = n->pair;
    c->hlen = 1;
    c->first_ts = c->last_ts = c->zlast = n->ts;
    c->notes.n = c->syns.n = 1;
    c->has_syn_seq = 1; c->syn_seq = n->seq;
    c->attempt_at = add_ns(n->ts, TCP_ATTEMPT_DELAY);
    c->delete_at = NO_TIME;
    c->chains[0] = add_ns(n->ts, TCP_SYN_TIMEOUT);
    c->nchains = 1;
}

#define NOTE_HEAD offsetof(note_t, peek)  /* a note's fields before its payload's first bytes */

/* n bytes at p all zero */
static int zero_bytes(const uint8_t *p, size_t n) {
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { memcpy(&w, p + i, 8); acc |= w; }
    for (; i < n; i++) acc |= p[i];
    return acc == 0;
}

/* a lone SYN attempt as it stands: the FROZE_LONE form fits it */
static int lone_shaped(const conn_t *c) {
    return c->hlen == 1 && c->hist[0] == 'S' && c->notes.n == 1 && c->syns.n == 1
           && !memcmp(c->notes.v, c->syns.v, sizeof(note_t));
}

/* the frozen form of c (c freed), or NULL when c does not qualify or memory is short (c kept) */
static int freezable(const conn_t *c) {
    return !(c->frozen || c->smtp || c->fwd.n || c->e[0].ooo || c->e[1].ooo || c->notes.n > FREEZE_NOTES
             || c->syns.n > FREEZE_NOTES || c->hlen > FREEZE_HIST);
}

static conn_t *freeze(conn_t *c) {
    if (!freezable(c)) return NULL;
    static uint8_t buf[2 * sizeof(conn_t) + 4 * FREEZE_NOTES * sizeof(note_t) + FREEZE_HIST + 64];
    conn_t tmp;
    bare(&tmp, c);
    size_t o;
    uint8_t kind, same = 0, flip = memcmp(c->key, c->ckey, KEYLEN) != 0;
    if (lone_shaped(c)) {
        kind = FROZE_LONE;
        conn_t want;
        frozen_t h;
        h.num = c->num; memcpy(h.ckey, c->ckey, KEYLEN); h.flip = flip;
        lone_template(&want, &h, c->notes.v);
        const uint8_t *nb = (const uint8_t *)c->notes.v;
        if (zero_bytes(nb + NOTE_HEAD, sizeof(note_t) - NOTE_HEAD)) {   /* no peek (a SYN's note): its head as it is */
            buf[0] = 1;
            memcpy(buf + 1, nb, NOTE_HEAD);
            o = 1 + NOTE_HEAD;
        } else {
            buf[0] = 0;
            o = 1 + zenc(buf + 1, nb, sizeof(note_t));
        }
        uint8_t *w = (uint8_t *)&want, *x = (uint8_t *)&tmp;
        /* without an IP ID (IPv6) the signature holds the window, which the note does not: the
           template is compared with the entry's own signature, which is stored when it is not the guess */
        uint32_t guess = want.e[0].sig_idw, idw = tmp.e[0].sig_idw;
        want.e[0].sig_idw = idw;
        if (!memcmp(w + BODY, x + BODY, sizeof tmp - BODY)) {
            if (idw == guess) buf[o++] = 0;                                      /* the template, exactly */
            else {                                                               /* the template but for that */
                buf[o++] = 2;
                memcpy(buf + o, &idw, 4);
                o += 4;
            }
        } else {
            want.e[0].sig_idw = guess;                                           /* the difference from the template itself */
            for (size_t i = BODY; i < sizeof tmp; i++) w[i] ^= x[i];
            buf[o++] = 1;
            o += zenc(buf + o, w + BODY, sizeof tmp - BODY);
        }
    } else {
        kind = FROZE_ZRUN;
        o = zenc(buf, (const uint8_t *)&tmp + BODY, sizeof tmp - BODY);
        if (c->hlen) { memcpy(buf + o, c->hist, c->hlen); o += c->hlen; }
        same = c->notes.n == c->syns.n && c->notes.n && !memcmp(c->notes.v, c->syns.v, (size_t)c->notes.n * sizeof(note_t));
        if (c->notes.n) o += zenc(buf + o, (const uint8_t *)c->notes.v, (size_t)c->notes.n * sizeof(note_t));
        if (c->syns.n && !same) o += zenc(buf + o, (const uint8_t *)c->syns.v, (size_t)c->syns.n * sizeof(note_t));
    }
    frozen_t *f = PyMem_Malloc(offsetof(frozen_t, data) + o);
    if (!f) return NULL;
    memcpy(f, c, BODY);                       /* the head: num, ckey, hix, dix, khash */
    f->frozen = kind;
    f->same = same;
    f->flip = kind == FROZE_LONE ? flip : 0;
    f->len = (uint32_t)o;
    memcpy(f->data, buf, o);
    PyMem_Free(c->hist);
    PyMem_Free(c->notes.v);
    PyMem_Free(c->syns.v);
    PyMem_Free(c->fwd.v);
    PyMem_Free(c);
    return (conn_t *)f;
}

/* a FROZE_LONE entry's conn_t (bare(): no pointers) into c and its one note into n */
static void lone_decode(const frozen_t *f, conn_t *c, note_t *n) {
    const uint8_t *in = f->data;
    if (*in++) {
        memcpy(n, in, NOTE_HEAD);
        memset((uint8_t *)n + NOTE_HEAD, 0, sizeof *n - NOTE_HEAD);
        in += NOTE_HEAD;
    } else in += zdec((uint8_t *)n, sizeof *n, in);
    lone_template(c, f, n);
    uint8_t form = *in++;
    if (form == 2) memcpy(&c->e[0].sig_idw, in, 4);
    else if (form) {
        uint8_t x[sizeof(conn_t)];
        zdec(x + BODY, sizeof x - BODY, in);
        uint8_t *w = (uint8_t *)c;
        for (size_t i = BODY; i < sizeof x; i++) w[i] ^= x[i];
    }
    memcpy(c, f, BODY);
    c->frozen = c->same = c->flip = 0;
}

/* the connection a frozen_t holds, as it was (NULL, an error set, when out of memory) */
static conn_t *thaw(const frozen_t *f) {
    conn_t *c = PyMem_Malloc(sizeof(conn_t));
    if (!c) { PyErr_NoMemory(); return NULL; }
    if (f->frozen == FROZE_LONE) {
        note_t n;
        lone_decode(f, c, &n);
        c->hist = PyMem_Malloc(1);
        c->notes.v = PyMem_Malloc(sizeof(note_t));
        c->syns.v = PyMem_Malloc(sizeof(note_t));
        if (!c->hist || !c->notes.v || !c->syns.v) {
            PyMem_Free(c->hist); PyMem_Free(c->notes.v); PyMem_Free(c->syns.v); PyMem_Free(c);
            PyErr_NoMemory();
            return NULL;
        }
        c->hist[0] = 'S'; c->hcap = 1;
        *c->notes.v = *c->syns.v = n;
        c->notes.cap = c->syns.cap = 1;
        return c;
    }
    memcpy(c, f, BODY);
    c->frozen = c->same = c->flip = 0;
    const uint8_t *in = f->data;
    in += zdec((uint8_t *)c + BODY, sizeof(conn_t) - BODY, in);
    if (c->hlen) {
        c->hist = PyMem_Malloc(c->hlen);
        if (!c->hist) goto oom;
        memcpy(c->hist, in, c->hlen);
        in += c->hlen;
        c->hcap = c->hlen;
    }
    notes_t *ns[2] = {&c->notes, &c->syns};
    for (int k = 0; k < 2; k++) {
        if (!ns[k]->n) continue;
        ns[k]->v = PyMem_Malloc((size_t)ns[k]->n * sizeof(note_t));
        if (!ns[k]->v) goto oom;
        if (k == 1 && f->same) memcpy(ns[1]->v, ns[0]->v, (size_t)ns[1]->n * sizeof(note_t));
        else in += zdec((uint8_t *)ns[k]->v, (size_t)ns[k]->n * sizeof(note_t), in);
        ns[k]->cap = ns[k]->n;
    }
    return c;
oom:
    PyMem_Free(c->hist);
    PyMem_Free(c->notes.v);
    PyMem_Free(c);
    PyErr_NoMemory();
    return NULL;
}

static int hist_add(conn_t *c, char ch) {
    if (c->hlen == c->hcap) {
        size_t cap = c->hcap ? c->hcap * 2 : 16;
        char *h = PyMem_Realloc(c->hist, cap);
        if (!h) { PyErr_NoMemory(); return -1; }
        c->hist = h;
        c->hcap = cap;
    }
    c->hist[c->hlen++] = ch;
    return 0;
}

static note_t *note_push(notes_t *ns) {
    if (ns->n == ns->cap) {
        int cap = ns->cap ? ns->cap * 2 : 1;   /* most attempts of a flood hold one note, one SYN */
        note_t *v = PyMem_Realloc(ns->v, (size_t)cap * sizeof(note_t));
        if (!v) { PyErr_NoMemory(); return NULL; }
        ns->v = v;
        ns->cap = cap;
    }
    return &ns->v[ns->n++];
}

/* ---- the table (ConnTracker.table; one entry per connection, looked up both ways) ------- */
static void make_key(uint8_t *k, const uint8_t *a, uint16_t ap, const uint8_t *b, uint16_t bp, int alen) {
    memset(k, 0, KEYLEN);
    k[0] = (uint8_t)alen;
    memcpy(k + 1, a, alen);
    k[17] = ap >> 8; k[18] = ap & 0xff;
    memcpy(k + 19, b, alen);
    k[35] = bp >> 8; k[36] = bp & 0xff;
}

/* one connection, either direction: the endpoint (address, port) that sorts lower comes first, so a
   packet needs one lookup whichever way it goes (the Python table holds both orientations) */
static void canonical(uint8_t *out, const uint8_t *k) {
    if (memcmp(k + 1, k + 19, 18) <= 0) { memcpy(out, k, KEYLEN); return; }
    out[0] = k[0];
    memcpy(out + 1, k + 19, 18);
    memcpy(out + 19, k + 1, 18);
}

/* SipHash-1-3 of the key under the tracker's random key: who sends the packets cannot choose
   4-tuples that collide in the table (an unkeyed hash can be inverted from outside) */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); } while (0)
static uint64_t key_hash(const Tracker *t, const uint8_t *k) {
    uint64_t v0 = t->k0 ^ 0x736f6d6570736575ULL, v1 = t->k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = t->k0 ^ 0x6c7967656e657261ULL, v3 = t->k1 ^ 0x7465646279746573ULL, m;
    int i = 0;
    for (; i + 8 <= KEYLEN; i += 8) { memcpy(&m, k + i, 8); v3 ^= m; SIPROUND; v0 ^= m; }
    uint64_t b = (uint64_t)KEYLEN << 56;
    for (int j = 0; i + j < KEYLEN; j++) b |= (uint64_t)k[i + j] << (8 * j);
    v3 ^= b; SIPROUND; v0 ^= b;
    v2 ^= 0xff; SIPROUND; SIPROUND; SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* the entry of key k, whose key_hash is h */
static conn_t *lookup(Tracker *t, const uint8_t *k, uint32_t h) {
    if (!t->cap) return NULL;
    size_t m = t->cap - 1, i = (size_t)h & m;
    for (size_t n = 0; n < t->cap; n++, i = (i + 1) & m) {
        conn_t *c = t->slots[i];
        if (!c) return NULL;
        if (c != TOMB && memcmp(c->ckey, k, KEYLEN) == 0) return c;
    }
    return NULL;
}

static int insert(Tracker *t, conn_t *c);

static int grow(Tracker *t) {
    conn_t **old = t->slots;
    size_t oldcap = t->cap, cap = t->cap ? t->cap : 1024;
    /* at most a third full after the rehash: insert() rehashes once live entries and tombstones pass
       half, so at least a sixth of the table is inserted or removed between two rehashes (amortised
       O(1)). With `* 2` here, a table holding just under half its size live (a flood's 500k open
       attempts) was rehashed at the same size every few inserts: 20% of a 1M flood's time in key_hash */
    while ((t->used + 1) * 3 > cap) cap *= 2;
    t->slots = PyMem_Calloc(cap, sizeof(conn_t *));
    if (!t->slots) { t->slots = old; PyErr_NoMemory(); return -1; }
    t->cap = cap;
    t->used = t->tombs = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] && old[i] != TOMB) insert(t, old[i]);
    PyMem_Free(old);
    return 0;
}

static int insert(Tracker *t, conn_t *c) {
    if ((t->used + t->tombs + 1) * 2 > t->cap && grow(t) < 0) return -1;
    size_t m = t->cap - 1, i = (size_t)c->khash & m;
    while (t->slots[i] && t->slots[i] != TOMB) i = (i + 1) & m;
    if (t->slots[i] == TOMB) t->tombs--;
    t->slots[i] = c;
    t->used++;
    return 0;
}

static void entry_free(conn_t *c) {
    if (c->frozen) PyMem_Free(c);
    else conn_free(c);
}

/* the table's entry at slot i, thawed in place if it was frozen (NULL, an error set, when out of memory) */
static conn_t *thaw_at(Tracker *t, size_t i) {
    conn_t *c = t->slots[i];
    if (!c->frozen) return c;
    conn_t *full = thaw((const frozen_t *)c);
    if (!full) return NULL;
    t->slots[i] = full;
    if (full->hix != NOWHERE) t->heap[full->hix].c = full;
    t->nfrozen--;
    t->frozen_bytes -= FROZEN_SIZE(c);
    PyMem_Free(c);
    return full;
}

static size_t slot_of(Tracker *t, const conn_t *c) {
    size_t m = t->cap - 1, i = (size_t)c->khash & m;
    while (t->slots[i] != c) i = (i + 1) & m;
    return i;
}

/* ---- the timer heap and the dirty list (sweep()) ------------------------------------------- */
static void heap_put(Tracker *t, size_t k, struct tmr e) { t->heap[k] = e; e.c->hix = (uint32_t)k; }

static void heap_up(Tracker *t, size_t k) {
    struct tmr e = t->heap[k];
    while (k) {
        size_t up = (k - 1) / 2;
        if (t->heap[up].due <= e.due) break;
        heap_put(t, k, t->heap[up]);
        k = up;
    }
    heap_put(t, k, e);
}

static void heap_down(Tracker *t, size_t k) {
    struct tmr e = t->heap[k];
    for (;;) {
        size_t l = 2 * k + 1, m;
        if (l >= t->nheap) break;
        m = l + 1 < t->nheap && t->heap[l + 1].due < t->heap[l].due ? l + 1 : l;
        if (t->heap[m].due >= e.due) break;
        heap_put(t, k, t->heap[m]);
        k = m;
    }
    heap_put(t, k, e);
}

/* file c under `due` (moving it if filed already); -1 out of memory (an error set) */
static int heap_file(Tracker *t, conn_t *c, int64_t due) {
    if (c->hix != NOWHERE) {
        size_t k = c->hix;
        int64_t old = t->heap[k].due;
        t->heap[k].due = due;
        if (due < old) heap_up(t, k);
        else heap_down(t, k);
        return 0;
    }
    if (t->nheap == t->capheap) {
        size_t cap = t->capheap ? t->capheap * 2 : 1024;
        struct tmr *h = PyMem_Realloc(t->heap, cap * sizeof *h);
        if (!h) { PyErr_NoMemory(); return -1; }
        t->heap = h;
        t->capheap = cap;
    }
    t->heap[t->nheap].due = due;
    t->heap[t->nheap].c = c;
    c->hix = (uint32_t)t->nheap++;
    heap_up(t, c->hix);
    return 0;
}

static void heap_del(Tracker *t, conn_t *c) {
    size_t k = c->hix;
    c->hix = NOWHERE;
    if (--t->nheap == k) return;
    struct tmr last = t->heap[t->nheap];
    int64_t old = t->heap[k].due;
    heap_put(t, k, last);
    if (last.due < old) heap_up(t, k);
    else heap_down(t, k);
}

/* c was touched by a packet: the next sweep computes its removal time anew */
static int dirty_mark(Tracker *t, conn_t *c) {
    if (c->dix != NOWHERE) return 0;
    if (t->ndirty == t->capdirty) {
        size_t cap = t->capdirty ? t->capdirty * 2 : 1024;
        conn_t **d = PyMem_Realloc(t->dirty, cap * sizeof *d);
        if (!d) { PyErr_NoMemory(); return -1; }
        t->dirty = d;
        t->capdirty = cap;
    }
    c->dix = (uint32_t)t->ndirty;
    t->dirty[t->ndirty++] = c;
    return 0;
}

/* ConnTracker._finish: out of the table (slot i), onto the list sweep() hands to Python */
static int finish_at(Tracker *t, conn_t *c, size_t i) {
    if (t->ndone == t->capdone) {
        size_t cap = t->capdone ? t->capdone * 2 : 256;
        conn_t **d = PyMem_Realloc(t->done, cap * sizeof(conn_t *));
        if (!d) { PyErr_NoMemory(); return -1; }
        t->done = d;
        t->capdone = cap;
    }
    t->slots[i] = TOMB;
    t->used--;
    t->tombs++;
    if (c->hix != NOWHERE) heap_del(t, c);
    if (c->dix != NOWHERE) { t->dirty[c->dix] = NULL; c->dix = NOWHERE; }
    if (c->frozen) { t->nfrozen--; t->frozen_bytes -= FROZEN_SIZE(c); }
    t->done[t->ndone++] = c;
    return 0;
}

static int finish(Tracker *t, conn_t *c) { return finish_at(t, c, slot_of(t, c)); }

/* ---- history (ConnState._check, _add, _scaled) -------------------------------------------- */
static uint8_t seen_bit(char code) {
    switch (code) {
    case 'S': case 'H': return SEEN_S;
    case 'F': return SEEN_F;
    case 'R': return SEEN_R;
    case 'D': return SEEN_D;
    case 'A': return SEEN_A;
    case 'I': return SEEN_I;
    default: return SEEN_Q;
    }
}

static inline char letter(int is_orig, char code) { return is_orig ? code : (char)(code - 'A' + 'a'); }

/* 1 if seen before, 0 if recorded now, -1 on error */
static int check(conn_t *c, ep_t *ep, int is_orig, char code) {
    uint8_t b = seen_bit(code);
    if (ep->seen & b) return 1;
    ep->seen |= b;
    return hist_add(c, letter(is_orig, code));
}

static int scaled(conn_t *c, int is_orig, char code, unsigned long long *counter, unsigned long long *thr) {
    *counter += 1;
    if (*counter == *thr) {
        *thr *= 10;
        return hist_add(c, letter(is_orig, code));
    }
    return 0;
}

/* ---- endpoints (_Endpoint) ---------------------------------------------------------------- */
static void set_state(ep_t *ep, uint8_t s) {
    if (s != ep->state) { ep->prev_state = ep->state; ep->state = s; }
}

static void init_seqs(ep_t *ep, uint32_t start, uint32_t last) {
    ep->start_seq = ep->ack_seq = start;
    ep->last_seq = last;
}

/* _Endpoint.size (Zeek's TCP_Endpoint::Size) */
static long long ep_size(const ep_t *ep, const ep_t *peer) {
    if (ep->prev_state == SYN_SENT && ep->state == RESET && peer->state == INACTIVE
        && ep->ack_seq != ep->start_seq && ep->ack_seq != ep->start_seq + 1)
        return 0;                                           /* a half-open connection found and aborted */
    uint32_t top = seq_delta(ep->last_seq, ep->ack_seq) > 0 ? ep->last_seq : ep->ack_seq;
    long long size = seq_delta(top, ep->start_seq);
    if (size > 0) size -= 1;
    if (ep->fin_cnt && size > 0) size -= 1;
    return size > 0 ? size : 0;
}

static void raise_ack(ep_t *peer, uint32_t ack) {          /* _raise_ack */
    int32_t d = seq_delta(ack, peer->ack_seq);
    if (d > 0 && !(ack == 0 && d > TOO_LARGE)) peer->ack_seq = ack;
}

static int pair_eq(const pair_t *a, const pair_t *b) {
    return a->hs == b->hs && a->hd == b->hd && (!a->hs || memcmp(a->s, b->s, 6) == 0) && (!a->hd || memcmp(a->d, b->d, 6) == 0);
}

/* ---- in-order payload (ConnState._stream, _deliver, _skip_to) ------------------------------ */
static int ooo_find(ep_t *ep, uint32_t seq) {
    for (int i = 0; i < ep->nooo; i++) if (ep->ooo[i].seq == seq) return i;
    return -1;
}

static seg_t ooo_pop(ep_t *ep, int i) {
    seg_t s = ep->ooo[i];
    memmove(&ep->ooo[i], &ep->ooo[i + 1], (size_t)(ep->nooo - i - 1) * sizeof(seg_t));
    ep->nooo--;
    return s;
}

/* dict item assignment: replace in place, or append (takes ownership of data); -1 out of memory */
static int ooo_set(ep_t *ep, uint32_t seq, uint8_t *data, uint32_t len) {
    int i = ooo_find(ep, seq);
    if (i >= 0) { PyMem_Free(ep->ooo[i].data); ep->ooo[i].data = data; ep->ooo[i].len = len; return 0; }
    if (ep->nooo == ep->capooo) {   /* never beyond MAX_OOO: stream() adds below it, deliver() swaps one for one */
        int cap = ep->capooo ? ep->capooo * 2 : 4;
        seg_t *v = PyMem_Realloc(ep->ooo, (size_t)cap * sizeof(seg_t));
        if (!v) { PyMem_Free(data); PyErr_NoMemory(); return -1; }
        ep->ooo = v;
        ep->capooo = cap;
    }
    ep->ooo[ep->nooo].seq = seq; ep->ooo[ep->nooo].len = len; ep->ooo[ep->nooo].data = data;
    ep->nooo++;
    return 0;
}

static int deliver(Tracker *t, conn_t *c, ep_t *ep, int is_orig, const uint8_t *data, uint32_t len, const ct_pkt *p) {
    ep->next_seq += len;
    smtp_t *sm = smtp_of(c);
    if (!sm) return -1;
    if (sm->wants && smtp_data(sm, is_orig, data, len, p->frame, p->ts, t->parse_proxy) < 0) return -1;
    while (ep->nooo) {
        int i = ooo_find(ep, ep->next_seq);
        if (i < 0) {
            /* drop segments now entirely behind next_seq; trim an overlapping one */
            uint32_t behind[MAX_OOO];
            int nb = 0;
            for (int j = 0; j < ep->nooo; j++) if (seq_delta(ep->ooo[j].seq, ep->next_seq) < 0) behind[nb++] = ep->ooo[j].seq;
            for (int j = 0; j < nb; j++) {
                seg_t seg = ooo_pop(ep, ooo_find(ep, behind[j]));
                int64_t over = seq_behind(seg.seq, ep->next_seq);
                if (over < (int64_t)seg.len) {
                    uint8_t *rest = PyMem_Malloc(seg.len - over);
                    if (!rest) { PyMem_Free(seg.data); PyErr_NoMemory(); return -1; }
                    memcpy(rest, seg.data + over, seg.len - over);
                    if (ooo_set(ep, ep->next_seq, rest, seg.len - over) < 0) { PyMem_Free(seg.data); return -1; }
                }
                PyMem_Free(seg.data);
            }
            if (ooo_find(ep, ep->next_seq) < 0) return 0;
            continue;
        }
        seg_t s = ooo_pop(ep, i);
        ep->next_seq += s.len;
        int rc = sm->wants ? smtp_data(sm, is_orig, s.data, s.len, p->frame, p->ts, t->parse_proxy) : 0;
        PyMem_Free(s.data);
        if (rc < 0) return -1;
    }
    return 0;
}

static int skip_to(Tracker *t, conn_t *c, ep_t *ep, int is_orig, uint32_t seq, const ct_pkt *p) {
    smtp_t *sm = smtp_of(c);
    if (!sm) return -1;
    smtp_gap(sm, is_orig);
    ep->next_seq = seq;
    for (int j = 0; j < ep->nooo;) {
        if (seq_delta(ep->ooo[j].seq, ep->next_seq) < 0) { seg_t s = ooo_pop(ep, j); PyMem_Free(s.data); }
        else j++;
    }
    int i = ooo_find(ep, ep->next_seq);
    if (i >= 0) {
        seg_t s = ooo_pop(ep, i);
        int rc = deliver(t, c, ep, is_orig, s.data, s.len, p);
        PyMem_Free(s.data);
        return rc;
    }
    return 0;
}

static int stream(Tracker *t, conn_t *c, ep_t *ep, int is_orig, uint32_t seq, const uint8_t *payload, uint32_t len, const ct_pkt *p) {
    if (!ep->has_next) {                                    /* Zeek's stream starts at relative sequence 1 */
        uint32_t base = ep->start_seq + 1;
        int32_t from = seq_delta(seq, base);
        ep->next_seq = from >= 0 && from < TOO_LARGE ? base : seq;
        ep->has_next = 1;
    }
    int32_t d = seq_delta(seq, ep->next_seq);
    if (d > 0) {
        if (d < TOO_LARGE && ep->nooo < MAX_OOO) {
            if (ooo_find(ep, seq) < 0) {                    /* setdefault */
                uint8_t *copy = PyMem_Malloc(len ? len : 1);
                if (!copy) { PyErr_NoMemory(); return -1; }
                memcpy(copy, payload, len);
                if (ooo_set(ep, seq, copy, len) < 0) return -1;
            }
        } else if (d < TOO_LARGE) {                         /* too much out of order: declare the gap */
            ep->missed += (unsigned long long)d;
            if (skip_to(t, c, ep, is_orig, seq, p) < 0) return -1;
            return deliver(t, c, ep, is_orig, payload, len, p);
        }
        return 0;
    }
    int64_t behind = -(int64_t)d;                           /* 0 .. 2^31: never negated in 32 bits */
    if (behind >= (int64_t)len) return 0;                   /* pure retransmission */
    return deliver(t, c, ep, is_orig, payload + behind, len - (uint32_t)behind, p);
}

static int is_clean(const ep_t *e) { return e->state == ESTABLISHED || (e->state == CLOSED && e->prev_state == ESTABLISHED); }

/* ConnState._ack_gap: the holes below the peer's ACK were missed (Zeek's AckReceived/Undelivered) */
static int ack_gap(Tracker *t, conn_t *c, ep_t *peer, int is_orig, uint32_t ack, const ct_pkt *p) {
    if (peer->state == INACTIVE) return 0;
    if (!peer->has_next) { peer->next_seq = peer->start_seq + 1; peer->has_next = 1; }
    if (peer->fin_cnt && seq_delta(ack, peer->fin_end) >= 0) ack = peer->fin_end - 1;
    if (seq_delta(ack, peer->next_seq) <= 0) return 0;
    int32_t dl[MAX_OOO];
    int idx[MAX_OOO], n = peer->nooo;
    for (int k = 0; k < n; k++) {                           /* by distance from next_seq (insertion sort) */
        int32_t d = seq_delta(peer->ooo[k].seq, peer->next_seq);
        int j = k;
        while (j > 0 && dl[j - 1] > d) { dl[j] = dl[j - 1]; idx[j] = idx[j - 1]; j--; }
        dl[j] = d; idx[j] = k;
    }
    unsigned long long missed = 0;
    uint32_t pos = peer->next_seq;
    for (int k = 0; k < n; k++) {
        uint32_t s0 = peer->ooo[idx[k]].seq;
        if (seq_delta(s0, ack) >= 0) break;
        if (seq_delta(s0, pos) > 0) { missed += (unsigned long long)seq_delta(s0, pos); pos = s0; }
        uint32_t end = s0 + peer->ooo[idx[k]].len;
        if (seq_delta(end, pos) > 0) pos = end;
    }
    if (seq_delta(ack, pos) > 0) missed += (unsigned long long)seq_delta(ack, pos);
    if (missed) {
        ep_t *me = &c->e[is_orig ? 0 : 1];
        if (is_clean(peer) && is_clean(me)) {
            peer->missed += missed;
            if (scaled(c, !is_orig, 'G', &peer->gaps, &peer->gap_thr) < 0) return -1;
        }
    }
    return skip_to(t, c, peer, !is_orig, ack, p);
}

/* ---- ConnState._state_machine --------------------------------------------------------------- */
/* ConnState._state_machine: 1 where Zeek's do_close is set */
static int state_machine(conn_t *c, ep_t *ep, ep_t *peer, int is_orig, int syn, int fin, int rst, int ackf, uint32_t plen, int64_t now) {
    uint8_t st = ep->state;
    int do_close = 0;
    if (st == INACTIVE) {
        if (syn) {
            if (is_orig) { set_state(ep, ackf ? SYN_ACK_SENT : SYN_SENT); c->attempt_at = add_ns(now, TCP_ATTEMPT_DELAY); }
            else {
                if (peer->state == SYN_SENT) set_state(peer, ESTABLISHED);
                set_state(ep, ESTABLISHED);
            }
        }
        if (fin) { set_state(ep, CLOSED); do_close = 1; }
        if (rst) { set_state(ep, RESET); do_close = 1; }
        if (ep->state == INACTIVE) {
            if (!is_orig && plen == 0 && c->e[0].state == SYN_SENT) { /* an eccentric stack ACKs the SYN first */ }
            else if (ackf && peer->state == ESTABLISHED) set_state(ep, ESTABLISHED);
            else set_state(ep, PARTIAL);
        }
    } else if (st == SYN_SENT || st == SYN_ACK_SENT) {
        if (fin) { set_state(ep, CLOSED); do_close = 1; }
        if (rst) { set_state(ep, RESET); do_close = 1; }
    } else if (st == ESTABLISHED || st == PARTIAL) {
        if (syn && st == PARTIAL && peer->state == INACTIVE && !ackf) set_state(ep, SYN_SENT);
        if (fin && !rst) {
            set_state(ep, CLOSED);
            if (peer->state == RESET && peer->prev_state == CLOSED) set_state(peer, CLOSED);
            do_close = 1;
        }
        if (rst) { set_state(ep, RESET); do_close = 1; }
    } else if (st == CLOSED) {
        if (rst && peer->state != CLOSED) { set_state(ep, RESET); do_close = 1; }
    }
    return do_close;
}

/* ConnState._closed (Zeek's ConnectionClosed) */
static void conn_closed(conn_t *c, ep_t *ep, ep_t *peer) {
    ep->did_close = 1;
    if (ep->state == RESET || peer->did_close || peer->state == INACTIVE) {
        c->attempt_at = NO_TIME; c->nchains = 0;
        c->delete_at = add_ns(c->zlast, TCP_CLOSE_DELAY);
    } else if (ep->prev_state != INACTIVE && c->nchains < MAX_CHAINS) {
        c->chains[c->nchains++] = add_ns(c->zlast, TCP_SESSION_TIMER);
    }
}

static int in_handshake(uint8_t s) { return s == INACTIVE || s == SYN_SENT || s == SYN_ACK_SENT; }

/* ConnState.removal_time */
static int64_t removal_time(const conn_t *c) {
    const ep_t *o = &c->e[0], *r = &c->e[1];
    int64_t t = add_ns(c->zlast, in_handshake(o->state) && in_handshake(r->state) ? UDP_INACTIVITY_TIMEOUT : TCP_INACTIVITY_TIMEOUT);
    if (c->delete_at != NO_TIME && c->delete_at < t) t = c->delete_at;
    if (c->attempt_at != NO_TIME && c->attempt_at < t && (o->state == SYN_SENT || o->state == SYN_ACK_SENT) && r->state == INACTIVE)
        t = c->attempt_at;
    if (c->nchains && (((o->did_close || r->did_close) && ((o->did_close && r->did_close) || o->state == RESET || r->state == RESET
                                                           || o->state == INACTIVE || r->state == INACTIVE))
                       || (o->state == INACTIVE && r->state == INACTIVE))) {
        int64_t linger = add_ns(c->zlast, TCP_CONNECTION_LINGER), after = c->last_ts > linger ? c->last_ts : linger;
        for (int i = 0; i < c->nchains; i++) {
            int64_t t0 = c->chains[i];
            int64_t tick = t0 > after ? t0 : add_ns(t0, ((after - t0) / TCP_SESSION_TIMER) * TCP_SESSION_TIMER + TCP_SESSION_TIMER);
            if (tick < t) t = tick;
        }
    }
    return t;
}

/* ConnState.is_reuse (Zeek's IsReuse) */
static int is_reuse(const conn_t *c, const ct_pkt *p) {
    if (!(p->flags & F_SYN)) return 0;
    const ep_t *o = &c->e[0], *r = &c->e[1], *conn_orig = o;
    if (p->flags & F_ACK) {
        if (o->state != INACTIVE) return 0;
        conn_orig = r;
    }
    if (!(o->did_close || r->did_close)) {
        if (p->seq == conn_orig->start_seq) return 0;
        if (!(p->flags & F_ACK) && conn_orig->state == SYN_ACK_SENT && r->state == INACTIVE && p->seq == r->start_seq) return 0;
    }
    return 1;
}

/* every byte of a note is set (its unused peek and its padding zero): a frozen note compresses to
   its fields, and thaws to the same bytes it was */
static void fill_note(note_t *n, const ct_pkt *p, int dir, const pair_t *pair, int peek) {
    memset(n, 0, sizeof *n);
    n->frame = p->frame; n->ts = p->ts; n->seq = p->seq; n->ack = p->ack; n->plen = p->plen + p->cut;
    n->ip_id = p->ip_id; n->dir = (uint8_t)dir; n->flags = p->flags; n->ttl = p->ttl; n->pair = *pair;
    n->has_peek = peek && p->plen;
    n->npeek = n->has_peek ? (uint8_t)(p->plen < PEEK ? p->plen : PEEK) : 0;
    if (n->npeek) memcpy(n->peek, p->payload, n->npeek);
}

/* ---- ConnState.process ---------------------------------------------------------------------- */
static int process(Tracker *t, conn_t *c, const ct_pkt *p, int is_orig, int64_t now) {
    ep_t *ep = &c->e[is_orig ? 0 : 1], *peer = &c->e[is_orig ? 1 : 0];
    uint8_t flags = p->flags;
    uint32_t seq = p->seq, ack = p->ack, cut = p->cut, plen = p->plen + p->cut;   /* the IP length's */
    int syn = flags & F_SYN, fin = flags & F_FIN, rst = flags & F_RST, ackf = flags & F_ACK;
    if (!(c->e[0].did_close && c->e[1].did_close)) c->last_ts = now;   /* Zeek's last_time: not moved once both closed */
    pair_t pair;
    memset(&pair, 0, sizeof pair);
    if (p->smac) { pair.hs = 1; memcpy(pair.s, p->smac, 6); }
    if (p->dmac) { pair.hd = 1; memcpy(pair.d, p->dmac, 6); }
    int known = 0;
    for (int i = 0; i < ep->npairs; i++) if (pair_eq(&ep->pairs[i], &pair)) { known = 1; break; }
    if (!known && ep->npairs < MAX_L2) ep->pairs[ep->npairs++] = pair;
    if (p->tunnel && is_orig && !c->tlen) { memcpy(c->tunnel, p->tunnel, p->tlen); c->tlen = (uint8_t)p->tlen; }
    uint32_t idw = p->ip_id >= 0 ? (uint32_t)p->ip_id : p->win;
    if (ep->has_sig && ep->sig_seq == seq && ep->sig_ack == ack && ep->sig_flags == flags && ep->sig_plen == plen
        && ep->sig_idw == idw && p->ts - ep->sig_ts < FORWARD_WINDOW_NS && !pair_eq(&ep->sig_pair, &pair)
        && p->smac && ep->sig_pair.hd && memcmp(p->smac, ep->sig_pair.d, 6) == 0) {
        /* the same IP packet again, sent by the MAC it was addressed to: a forwarded copy */
        ep->copies++;
        ep->sig_ts = p->ts; ep->sig_pair = pair;
        if (c->fwd.n < MAX_SYNS) {
            note_t *n = note_push(&c->fwd);
            if (!n) return -1;
            fill_note(n, p, !is_orig, &pair, 0);
        }
        return 0;
    }
    ep->has_sig = 1; ep->sig_seq = seq; ep->sig_ack = ack; ep->sig_flags = flags; ep->sig_plen = plen;
    ep->sig_idw = idw; ep->sig_ts = p->ts; ep->sig_pair = pair;
    ep->pkts++;
    if (!(c->e[0].did_close && c->e[1].did_close)) c->zlast = now;
    if (!ep->has_ttl) { ep->has_ttl = 1; ep->ttl = p->ttl; }
    int room = c->notes.n < MAX_NOTES;
    if (room || (syn && !ackf && c->syns.n < MAX_SYNS)) {
        note_t note;
        fill_note(&note, p, !is_orig, &pair, 1);
        if (room) {
            note_t *n = note_push(&c->notes);
            if (!n) return -1;
            *n = note;
        }
        if (syn && !ackf && is_orig && c->syns.n < MAX_SYNS) {
            note_t *n = note_push(&c->syns);
            if (!n) return -1;
            *n = note;
        }
    }
    if (syn && !ackf && is_orig && !c->has_syn_seq) { c->has_syn_seq = 1; c->syn_seq = seq; }
    if (syn && ackf && !is_orig && !c->has_synack_ack) { c->has_synack_ack = 1; c->synack_ack = ack; }

    uint32_t seg_len = plen + (syn ? 1 : 0) + (fin ? 1 : 0) - (rst ? plen : 0);
    uint32_t seq_end = seq + seg_len;

    /* init_endpoint */
    uint8_t st = ep->state;
    if (st == INACTIVE) {
        if (syn) init_seqs(ep, seq, seq_end);
        else init_seqs(ep, seq - 1, seq);
    } else if (st == SYN_SENT || st == SYN_ACK_SENT) {
        if (syn && seq != ep->start_seq) init_seqs(ep, seq, seq_end);
    } else if (st == ESTABLISHED || st == PARTIAL) {
        if (syn) init_seqs(ep, seq, seq_end);
    } else if (st == RESET && syn && ep->prev_state == INACTIVE) {
        init_seqs(ep, seq, seq_end);
    }
    int64_t rel = seq_delta(seq, ep->start_seq);

    /* update_history */
    int bits = (syn ? 1 : 0) + (fin ? 1 : 0) + (rst ? 1 : 0);
    int r;
    if (bits > 1) {
        if (check(c, ep, is_orig, (fin && rst) ? 'I' : 'Q') < 0) return -1;
    } else if (bits == 1) {
        if (syn) {
            char code = ackf ? 'H' : 'S';
            if ((r = check(c, ep, is_orig, code)) < 0) return -1;
            if (r && rel != ep->last_syn && hist_add(c, letter(is_orig, code)) < 0) return -1;
            ep->last_syn = rel;
        }
        if (fin) {
            if ((r = check(c, ep, is_orig, 'F')) < 0) return -1;
            if (r && rel + plen != ep->last_fin && hist_add(c, letter(is_orig, 'F')) < 0) return -1;
            ep->last_fin = rel + plen;
        }
        if (rst) {
            if ((r = check(c, ep, is_orig, 'R')) < 0) return -1;
            if (r && rel != ep->last_rst && hist_add(c, letter(is_orig, 'R')) < 0) return -1;
            ep->last_rst = rel;
        }
    } else if (plen) {
        if (check(c, ep, is_orig, 'D') < 0) return -1;
    } else if (ackf) {
        if (check(c, ep, is_orig, 'A') < 0) return -1;
    }

    /* zero window (update_window) */
    if (p->win == 0 && !rst && peer->state != CLOSED && ep->state != RESET)
        if (scaled(c, is_orig, 'W', &ep->zw, &ep->zw_thr) < 0) return -1;

    if (fin) { ep->fin_cnt++; ep->fin_end = seq_end; }

    if (ackf) {
        if (peer->state == INACTIVE) init_seqs(peer, ack - 1, ack - 1);
        else if (!rst) raise_ack(peer, ack);
    }

    /* update_last_seq (the state before the state machine runs) */
    int32_t delta_last = seq_delta(seq_end, ep->last_seq);
    if ((syn || rst) && (delta_last > TOO_LARGE || delta_last < -TOO_LARGE)) {
    } else if (fin && ep->last_seq == ep->start_seq + 1) {
        ep->last_seq = seq_end;
    } else if (ep->state == RESET) {
    } else if (delta_last > 0) {
        ep->last_seq = seq_end;
    } else if (plen > 0) {
        if (scaled(c, is_orig, 'T', &ep->rxmit, &ep->rxmit_thr) < 0) return -1;
    }

    if (state_machine(c, ep, peer, is_orig, syn, fin, rst, ackf, plen, now) && !ep->did_close) conn_closed(c, ep, peer);

    if (plen && !rst && !cut && stream(t, c, ep, is_orig, syn ? seq + 1 : seq, p->payload, p->plen, p) < 0) return -1;
    if (ackf && ack_gap(t, c, peer, is_orig, ack, p) < 0) return -1;
    return 0;
}

/* ConnState.conn_state */
static const char *conn_state(const conn_t *c) {
    uint8_t os = c->e[0].state, rs = c->e[1].state;
    int o_inactive = os == INACTIVE || os == PARTIAL, r_inactive = rs == INACTIVE || rs == PARTIAL;
    if (rs == RESET) {
        if (os == SYN_SENT || os == SYN_ACK_SENT || (os == RESET && ep_size(&c->e[0], &c->e[1]) == 0 && ep_size(&c->e[1], &c->e[0]) == 0))
            return "REJ";
        return o_inactive ? "RSTRH" : "RSTR";
    }
    if (os == RESET) {
        if (r_inactive) {
            size_t i = 0;
            while (i < c->hlen && c->hist[i] == '^') i++;
            if (i < c->hlen && c->hist[i] == 'S') {
                size_t j = i + 1, cut = c->hlen;
                for (size_t k = j; k < c->hlen; k++) if (c->hist[k] == 'R') { cut = k; break; }
                if (cut < c->hlen) {
                    int clean = 1;
                    for (size_t k = j; k < cut; k++) if (strchr("HAFGIQ", c->hist[k])) { clean = 0; break; }
                    if (clean) return "RSTOS0";
                }
            }
            return "OTH";
        }
        return "RSTO";
    }
    if (rs == CLOSED && os == CLOSED) return "SF";
    if (os == CLOSED) return r_inactive ? "SH" : "S2";
    if (rs == CLOSED) return o_inactive ? "SHR" : "S3";
    if (os == SYN_SENT && rs == INACTIVE) return "S0";
    if (os == ESTABLISHED && rs == ESTABLISHED) return "S1";
    return "OTH";
}

/* ---- ConnTracker.packet --------------------------------------------------------------------- */
int ct_port(PyObject *self, uint16_t port) {
    return (((Tracker *)self)->ports[port >> 3] >> (port & 7)) & 1;
}

/* ConnTracker._track: Zeek's timers, IsReuse, then the packet */
static int track_one(Tracker *t, const ct_pkt *p, int64_t now) {
    uint8_t fwd[KEYLEN], ck[KEYLEN];
    make_key(fwd, p->src, p->sport, p->dst, p->dport, p->alen);
    canonical(ck, fwd);
    uint32_t kh = (uint32_t)key_hash(t, ck);
    conn_t *c = lookup(t, ck, kh);
    uint8_t flags = p->flags;
    if (c && c->frozen && !(c = thaw_at(t, slot_of(t, c)))) return -1;
    if (c) {
        if (removal_time(c) <= now) {
            if (finish(t, c) < 0) return -1;            /* Zeek's timers ended it before this packet */
            c = NULL;
        } else {
            if (c->attempt_at != NO_TIME && c->attempt_at <= now) c->attempt_at = NO_TIME;
            if (is_reuse(c, p)) {
                if (finish(t, c) < 0) return -1;        /* the 4-tuple is reused by a new connection */
                c = NULL;
            }
        }
    }
    if (!c) {
        int orig_sender, flipped;
        int sp = ct_port((PyObject *)t, p->sport), dp = ct_port((PyObject *)t, p->dport);
        if ((flags & F_SYN) && !(flags & F_ACK)) { orig_sender = 1; flipped = 0; }
        else if (flags & F_SYN) { orig_sender = 0; flipped = 1; }   /* SYN-ACK first */
        else if (sp && !dp) { orig_sender = 0; flipped = 1; }
        else if (sp && dp) { orig_sender = !(p->sport < p->dport); flipped = !orig_sender; }
        else { orig_sender = 1; flipped = 0; }
        c = PyMem_Calloc(1, sizeof(conn_t));
        if (!c) { PyErr_NoMemory(); return -1; }
        c->num = ++t->count;
        c->alen = (uint8_t)p->alen;
        if (orig_sender) {
            memcpy(c->c_ip, p->src, p->alen); memcpy(c->s_ip, p->dst, p->alen); c->c_port = p->sport; c->s_port = p->dport;
        } else {
            memcpy(c->c_ip, p->dst, p->alen); memcpy(c->s_ip, p->src, p->alen); c->c_port = p->dport; c->s_port = p->sport;
        }
        make_key(c->key, c->c_ip, c->c_port, c->s_ip, c->s_port, p->alen);
        memcpy(c->ckey, ck, KEYLEN);
        c->khash = kh;
        for (int i = 0; i < 2; i++) c->e[i].rxmit_thr = c->e[i].zw_thr = c->e[i].gap_thr = 1;
        c->first_ts = c->last_ts = c->zlast = now;
        c->attempt_at = c->delete_at = NO_TIME;
        c->chains[0] = add_ns(now, TCP_SYN_TIMEOUT);
        c->nchains = 1;
        c->hix = c->dix = NOWHERE;
        if ((flipped && hist_add(c, '^') < 0) || insert(t, c) < 0) { conn_free(c); return -1; }
    }
    if (dirty_mark(t, c) < 0) return -1;
    return process(t, c, p, memcmp(fwd, c->key, KEYLEN) == 0, now);
}

/* keep a copy of a packet stamped far ahead until the next one says whether it is an outlier */
static int hold(Tracker *t, const ct_pkt *p) {
    uint8_t *buf = PyMem_Malloc(p->plen ? p->plen : 1);
    if (!buf) { PyErr_NoMemory(); return -1; }
    memcpy(buf, p->payload, p->plen);
    t->held = *p;
    if (p->smac) { memcpy(t->held_smac, p->smac, 6); t->held.smac = t->held_smac; }
    if (p->dmac) { memcpy(t->held_dmac, p->dmac, 6); t->held.dmac = t->held_dmac; }
    memcpy(t->held_src, p->src, p->alen); t->held.src = t->held_src;
    memcpy(t->held_dst, p->dst, p->alen); t->held.dst = t->held_dst;
    if (p->tunnel) { memcpy(t->held_tunnel, p->tunnel, p->tlen); t->held.tunnel = t->held_tunnel; }
    t->held_payload = buf;
    t->held.payload = buf;
    t->has_held = 1;
    return 0;
}

static int release_held(Tracker *t) {
    t->has_held = 0;
    int rc = track_one(t, &t->held, t->clock);
    PyMem_Free(t->held_payload);
    t->held_payload = NULL;
    return rc;
}

/* ConnTracker.packet: the capture clock, then the packet */
int ct_packet(PyObject *self, const ct_pkt *p) {
    Tracker *t = (Tracker *)self;
    t->packets++;
    if (!t->first_frame) { t->first_frame = p->frame; t->first_ts = p->ts; }
    t->last_frame = p->frame;
    t->last_ts = p->ts;
    if (p->cut) t->cut_packets++;
    int64_t ts = p->ts < t->ts_max ? p->ts : t->ts_max;    /* ConnTracker.packet: TS_MAX */
    if (t->has_held) {
        int64_t hts = t->held.ts < t->ts_max ? t->held.ts : t->ts_max;
        if (ts >= hts - t->max_step) t->clock = hts;
        else {
            t->outliers++;
            if (hts - t->clock > t->largest_outlier) t->largest_outlier = hts - t->clock;
        }
        if (release_held(t) < 0) return -1;
    }
    if (!t->has_clock) { t->has_clock = 1; t->clock = ts; }
    else if (ts < t->clock) {
        t->backwards++;
        if (t->clock - ts > t->largest_back) t->largest_back = t->clock - ts;
    } else if (ts - t->clock > t->max_step) {
        return hold(t, p);
    } else t->clock = ts;
    return track_one(t, p, t->clock);
}

/* ---- back to Python ------------------------------------------------------------------------- */
static PyObject *mac_or_none(const uint8_t *m, int has) {
    if (!has) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)m, 6);
}

/* ---- notes, packed as records.NoteBlock packs them ------------------------------------------- */
#define NOTE_SIZE 41          /* records._NOTE "<QqBBIhhBIIih" */
#define MAX_STRS (3 * (MAX_NOTES > MAX_SYNS ? MAX_NOTES : MAX_SYNS))

static inline void put_le(uint8_t *p, uint64_t v, int n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, (size_t)n);                          /* n is a constant where it is called: one store */
#else
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}

/* conn.py payload_text: `TLS` for a TLS record, the first line if it is printable ASCII, else NULL
   (*len = 0); the text is payload[start:start + len] */
static int payload_line(const note_t *n, int *len) {
    const uint8_t *d = n->peek;
    int np = n->npeek;
    if (np >= 3 && d[0] >= 0x14 && d[0] <= 0x17 && d[1] == 3) { *len = -1; return 1; }
    int e = 0, bad = 0;   /* one pass: the line's end, and whether all before it is printable */
    for (; e < np; e++) {
        uint8_t ch = d[e];
        if (ch == '\n' || (ch == '\r' && e + 1 < np && d[e + 1] == '\n')) break;
        bad |= ch < 0x20 || ch > 0x7e;
    }
    if (e == 0 || bad) return 0;
    *len = e;
    return 1;
}

typedef struct { int kind; const uint8_t *p; int len; } str_t;   /* kind 0 MAC (6 bytes), 1 text, 2 "TLS" */

static inline int mac_eq(const uint8_t *a, const uint8_t *b) {
    uint32_t a4, b4; uint16_t a2, b2;
    memcpy(&a4, a, 4); memcpy(&b4, b, 4); memcpy(&a2, a + 4, 2); memcpy(&b2, b + 4, 2);
    return a4 == b4 && a2 == b2;
}

static int str_index(str_t *strs, int *n, int kind, const uint8_t *p, int len) {
    for (int i = 0; i < *n; i++) {
        const str_t *e = &strs[i];
        if (e->kind != kind || e->len != len) continue;
        if (kind == 2 || (kind == 0 ? mac_eq(e->p, p) : memcmp(e->p, p, (size_t)len) == 0)) return i;   /* a MAC: two loads, not a call */
    }
    strs[*n].kind = kind; strs[*n].p = p; strs[*n].len = len;
    return (*n)++;
}

/* The texts records repeat, made once: a MAC's text (kind 0, interned as before), a note's printable
   first line (kind 1: "250 OK", "EHLO ..."), an SMTP command (kind 3, interned as before), each a
   pure function of its bytes. A direct-mapped table of TEXTS entries, keyed by kind and bytes (at
   most TEXT_MAX: a note's peek is 80), holding a reference to the str; a miss makes the str as
   before and takes the entry. Why: a short session's record made ~12 such strings, each allocated,
   decoded and for MACs and commands looked up in the interpreter's interned table (perf: ~1.5% of
   a 200k-session run); a mail server's MACs, replies and commands are few. Equal strs either way. */
#define TEXTS 512
#define TEXT_MAX 80
static struct text_entry { uint8_t kind, len; uint8_t b[TEXT_MAX]; PyObject *s; } texts[TEXTS];

static PyObject *text_make(int kind, const uint8_t *p, int len) {
    if (kind == 0) {
        char mac[18];
        static const char hex[] = "0123456789abcdef";
        for (int k = 0; k < 6; k++) {
            mac[3 * k] = hex[p[k] >> 4]; mac[3 * k + 1] = hex[p[k] & 15];
            if (k < 5) mac[3 * k + 2] = ':';
        }
        PyObject *u = PyUnicode_FromStringAndSize(mac, 17);
        if (u) PyUnicode_InternInPlace(&u);                       /* few MACs, cited many times */
        return u;
    }
    if (kind == 3) {
        PyObject *u = PyUnicode_DecodeLatin1((const char *)p, len, NULL);   /* what InternFromString made of its bytes */
        if (u) PyUnicode_InternInPlace(&u);
        return u;
    }
    return PyUnicode_DecodeASCII((const char *)p, len, NULL);
}

/* the str of (kind, bytes): a new reference */
static PyObject *text_of(int kind, const uint8_t *p, int len) {
    if (len < 0 || len > TEXT_MAX) return text_make(kind, p, len);
    uint32_t h = 2166136261u ^ (uint32_t)kind;
    for (int i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    struct text_entry *e = &texts[(h ^ (h >> 15)) & (TEXTS - 1)];
    if (e->s && e->kind == kind && e->len == len && memcmp(e->b, p, (size_t)len) == 0) {
        Py_INCREF(e->s);
        return e->s;
    }
    PyObject *u = text_make(kind, p, len);
    if (!u) return NULL;
    Py_INCREF(u);
    Py_XSETREF(e->s, u);
    e->kind = (uint8_t)kind;
    e->len = (uint8_t)len;
    memcpy(e->b, p, (size_t)len);
    return u;
}

/* (packed bytes, strings): records.NoteBlock(data, strs), without a tuple per note */
static PyObject *pack_notes(const notes_t *ns) {
    str_t strs[MAX_STRS];
    int nstr = 0;
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)ns->n * NOTE_SIZE);
    if (!data) return NULL;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(data);
    for (int i = 0; i < ns->n; i++, o += NOTE_SIZE) {
        const note_t *n = &ns->v[i];
        int si = n->pair.hs ? str_index(strs, &nstr, 0, n->pair.s, 6) : -1;
        int ti = n->pair.hd ? str_index(strs, &nstr, 0, n->pair.d, 6) : -1;
        int xi = -1, len;
        if (n->has_peek && payload_line(n, &len)) xi = len < 0 ? str_index(strs, &nstr, 2, NULL, 3) : str_index(strs, &nstr, 1, n->peek, len);
        put_le(o, n->frame, 8); put_le(o + 8, (uint64_t)n->ts, 8); o[16] = n->dir; o[17] = n->flags;
        put_le(o + 18, n->plen, 4); put_le(o + 22, (uint16_t)(int16_t)si, 2); put_le(o + 24, (uint16_t)(int16_t)ti, 2);
        o[26] = n->ttl; put_le(o + 27, n->seq, 4); put_le(o + 31, n->ack, 4); put_le(o + 35, (uint32_t)n->ip_id, 4);
        put_le(o + 39, (uint16_t)(int16_t)xi, 2);
    }
    PyObject *tup = PyTuple_New(nstr);
    if (!tup) { Py_DECREF(data); return NULL; }
    for (int i = 0; i < nstr; i++) {
        PyObject *u = strs[i].kind == 2 ? PyUnicode_InternFromString("TLS") : text_of(strs[i].kind, strs[i].p, strs[i].len);
        if (!u) { Py_DECREF(data); Py_DECREF(tup); return NULL; }
        PyTuple_SET_ITEM(tup, i, u);
    }
    PyObject *pair = PyTuple_New(2);
    if (!pair) { Py_DECREF(data); Py_DECREF(tup); return NULL; }
    PyTuple_SET_ITEM(pair, 0, data);
    PyTuple_SET_ITEM(pair, 1, tup);
    return pair;
}

static PyObject *side(const ep_t *ep, const ep_t *peer) {
    PyObject *l2 = PyTuple_New(ep->npairs);  /* a tuple: the record's text form is looked up by it (intern.l2_text) */
    if (!l2) return NULL;
    for (int i = 0; i < ep->npairs; i++) {
        PyObject *pr = Py_BuildValue("(NN)", mac_or_none(ep->pairs[i].s, ep->pairs[i].hs), mac_or_none(ep->pairs[i].d, ep->pairs[i].hd));
        if (!pr) { Py_DECREF(l2); return NULL; }
        PyTuple_SET_ITEM(l2, i, pr);
    }
    return Py_BuildValue("(KLKKNN)", ep->pkts, ep->state != INACTIVE ? ep_size(ep, peer) : 0LL, ep->missed, ep->copies, l2,
                         ep->has_ttl ? PyLong_FromLong(ep->ttl) : (Py_INCREF(Py_None), Py_None));
}

static PyObject *opt_u32(int has, uint32_t v) {
    if (!has) Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(v);
}

/* (num, client ip, client port, server ip, server port, first ts, last ts, history, conn_state,
   orig side, resp side, syn_seq, synack_ack, notes, syns, forwarded (each (packed, strings)), the
   SMTP follower's state (smtp_state), tunnel src) */
static PyObject *conn_tuple(const conn_t *c) {
    static smtp_t none;           /* the state of a follower that never saw a byte */
    if (!none.start) smtp_init(&none);
    return Py_BuildValue("(Ky#Hy#HLLs#sNNNNNNNNy#)", c->num, (const char *)c->c_ip, (Py_ssize_t)c->alen, c->c_port,
                         (const char *)c->s_ip, (Py_ssize_t)c->alen, c->s_port, (long long)c->first_ts, (long long)c->last_ts,
                         c->hist ? c->hist : "", (Py_ssize_t)c->hlen, conn_state(c), side(&c->e[0], &c->e[1]), side(&c->e[1], &c->e[0]),
                         opt_u32(c->has_syn_seq, c->syn_seq), opt_u32(c->has_synack_ack, c->synack_ack),
                         pack_notes(&c->notes), pack_notes(&c->syns), pack_notes(&c->fwd), smtp_state(c->smtp ? c->smtp : &none),
                         c->tlen ? (const char *)c->tunnel : NULL, (Py_ssize_t)c->tlen);
}

/* ---- records made here: conn.py connection_record's peer --------------------------------------
   With `kit` set (conn.py record_kit(): the record types, the capture and vantage, and the intern
   tables with the Python functions that fill them), drain() makes each Connection itself, with
   exactly the values connection_record would give for conn_tuple()'s tuple: the Python steps per
   record (the intern lookups, three NoteBlocks, the SmtpDialogue) were ~8 us of a short session's
   ~80. Every text comes from a table lookup here or, on a miss, from the same Python function the
   reference calls (which fills the table): one definition of each text. A dialogue with a PROXY
   header (rare) is made by smtp.dialogue itself. tests/test_record_kit.py compares the records
   with connection_record's, field by field, on real captures. */
static long long side_bytes(const ep_t *ep, const ep_t *peer) { return ep->state != INACTIVE ? ep_size(ep, peer) : 0; }

enum { K_CONN, K_NB, K_DLG, K_CAPTURE, K_VANTAGE, K_IPC, K_IPF, K_SHC, K_SHF, K_L2C, K_L2F, K_BNC, K_BNF,
       K_DLGF, K_TUNF, K_N };
#define KIT(t, i) PyTuple_GET_ITEM((t)->kit_held, (i))

/* cache[key], else fn(key) (which fills the cache): a new reference; steals `key` */
static PyObject *cached(PyObject *cache, PyObject *fn, PyObject *key) {
    if (!key) return NULL;
    assert(!PyErr_Occurred());
    PyObject *v = PyDict_GetItemWithError(cache, key);
    if (v) { Py_INCREF(v); Py_DECREF(key); return v; }
    if (PyErr_Occurred()) { Py_DECREF(key); return NULL; }
    v = PyObject_CallOneArg(fn, key);
    Py_DECREF(key);
    return v;
}

static PyObject *shared_of(Tracker *t, PyObject *v) { return cached(KIT(t, K_SHC), KIT(t, K_SHF), v); }

/* A direct-mapped memo in front of cached() for the values every record asks for again (its
   addresses' texts, its history, its sides' MAC pairs), keyed by the raw bytes they are made from:
   a hit makes no key object and hashes no tuple (a lookup through the kit's dict cost ~560
   instructions, 7 a record: ~15% of making a record). An entry holds strong references to its
   value and to the table and filler that gave it, and its key starts with a tag naming the use, so
   a match is what that table and filler gave for these bytes: the fillers are pure functions of
   their keys (track/intern.py) and fill only their own table, as text_of's texts are of their
   bytes (MEMO_LAST's entries hold the text itself, not the table's: smtp_text is as pure); a kit
   with another table (or another filler) never sees this one's values; a collision only replaces
   the entry. */
#define MEMO 1024
#define MEMO_MAX 62
enum { MEMO_IP = 1, MEMO_HIST, MEMO_L2, MEMO_BANNER, MEMO_HELO, MEMO_CODES, MEMO_CMDS, MEMO_LAST };
static struct memo_entry { PyObject *cache, *fn, *v; uint8_t len; uint8_t b[MEMO_MAX + 1]; } memo[MEMO];

/* the entry for (tag, bytes) of table cache and filler fn: its value (a new reference) or NULL with
   *slot set where to memo_put it (NULL: too long to memoise) */
static PyObject *memo_get(PyObject *cache, PyObject *fn, int tag, const uint8_t *p, int len, struct memo_entry **slot) {
    *slot = NULL;
    if (len < 0 || len > MEMO_MAX) return NULL;
    uint32_t h = (2166136261u ^ (uint32_t)tag) * 16777619u;
    for (int i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    struct memo_entry *e = &memo[(h ^ (h >> 15)) & (MEMO - 1)];
    *slot = e;
    if (e->v && e->cache == cache && e->fn == fn && e->len == len + 1 && e->b[0] == (uint8_t)tag && memcmp(e->b + 1, p, (size_t)len) == 0) {
        Py_INCREF(e->v);
        return e->v;
    }
    return NULL;
}

/* v (a new reference, or NULL: passed through) as the entry's value; returns v */
static PyObject *memo_put(struct memo_entry *e, PyObject *cache, PyObject *fn, int tag, const uint8_t *p, int len, PyObject *v) {
    if (!e || !v) return v;
    PyObject *old_cache = e->cache, *old_fn = e->fn, *old_v = e->v;
    Py_INCREF(cache); Py_INCREF(fn); Py_INCREF(v);
    e->cache = cache; e->fn = fn; e->v = v;
    e->len = (uint8_t)(len + 1); e->b[0] = (uint8_t)tag; memcpy(e->b + 1, p, (size_t)len);
    Py_XDECREF(old_v);                                 /* a str or a tuple of them: no Python code runs */
    Py_XDECREF(old_fn);
    Py_XDECREF(old_cache);
    return v;
}

static PyObject *s_data, *s_strs;   /* "_data", "_strs": NoteBlock's slots */

/* NoteBlock's two slots, by offset (the member descriptors __slots__ made), for the type last seen;
   -1: not plain slots, set by attribute */
static PyTypeObject *nb_seen;                 /* a strong reference: its address is never reused */
static Py_ssize_t nb_off[2] = {-1, -1};

static void nb_offsets(PyTypeObject *tp, Py_ssize_t off[2]) {
    if (tp == nb_seen) { off[0] = nb_off[0]; off[1] = nb_off[1]; return; }
    off[0] = off[1] = -1;
    if (!s_data && !(s_data = PyUnicode_InternFromString("_data"))) { PyErr_Clear(); return; }
    if (!s_strs && !(s_strs = PyUnicode_InternFromString("_strs"))) { PyErr_Clear(); return; }
    PyObject *names[2] = {s_data, s_strs};
    for (int i = 0; i < 2; i++) {
        off[i] = -1;
        PyObject *d = _PyType_Lookup(tp, names[i]);   /* borrowed; the MRO only, no Python code, no error */
        if (d && Py_IS_TYPE(d, &PyMemberDescr_Type) && PyType_IsSubtype(tp, PyDescr_TYPE(d))) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) off[i] = m->offset;
        }
    }
    Py_INCREF(tp);
    Py_XSETREF(nb_seen, tp);
    nb_off[0] = off[0]; nb_off[1] = off[1];
}

/* a NoteBlock's slot i (0 _data, 1 _strs): a new reference */
static PyObject *nb_get(PyObject *b, int i) {
    Py_ssize_t off[2];
    nb_offsets(Py_TYPE(b), off);
    if (off[i] >= 0) {
        PyObject *v = *(PyObject **)((char *)b + off[i]);
        if (v) { Py_INCREF(v); return v; }
    }
    return PyObject_GetAttr(b, i ? s_strs : s_data);
}

/* records.NoteBlock(data, strs) (borrowed), without running __init__ */
static PyObject *note_block_of(PyTypeObject *tp, PyObject *data, PyObject *strs) {
    if (!s_data && !(s_data = PyUnicode_InternFromString("_data"))) return NULL;
    if (!s_strs && !(s_strs = PyUnicode_InternFromString("_strs"))) return NULL;
    Py_ssize_t off[2];
    nb_offsets(tp, off);
    PyObject *o = tp->tp_alloc(tp, 0);
    if (!o) return NULL;
    PyObject *vals[2] = {data, strs}, *names[2] = {s_data, s_strs};
    for (int i = 0; i < 2; i++) {
        if (off[i] >= 0) {
            PyObject **slot = (PyObject **)((char *)o + off[i]);
            Py_INCREF(vals[i]);
            Py_XSETREF(*slot, vals[i]);
        } else if (PyObject_SetAttr(o, names[i], vals[i]) < 0) {
            Py_DECREF(o);
            return NULL;
        }
    }
    return o;
}

/* Leave the cycle collector an immutable tree it could never find garbage in: a tuple (or a tuple
   subclass without a __dict__: Connection, SmtpDialogue) whose items are all untracked is untracked,
   after its tuple items are; 1 when `o` is (or was already) untracked. Python does this for plain
   tuples only, and only when a collection reaches them; a record's NamedTuples stay tracked, and
   track/pipeline.py's collection at every COLLECT_EVERY sweeps re-scanned the ~5,000 records the
   selection holds (and their notes and dialogues) each time: ~30 ms a collection on 200k sessions.
   Nothing here is mutable, so no cycle can form through it later. */
static int settle(PyObject *o) {
    PyTypeObject *tp = Py_TYPE(o);
    if (!PyType_IS_GC(tp) || !PyObject_GC_IsTracked(o)) return 1;  /* a text or a number: a flag test */
    if (!PyTuple_Check(o) || tp->tp_dictoffset != 0) return 0;
    int all = 1;
    for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(o); i < n; i++)
        if (!settle(PyTuple_GET_ITEM(o, i))) all = 0;
    if (all) PyObject_GC_UnTrack(o);
    return all;
}

/* the same from pack_notes' pair (stolen); untracked (settle) when its slots hold what the maker put
   there: bytes and a tuple of texts (a NoteBlock is never changed once made) */
static PyObject *note_block(Tracker *t, PyObject *pair) {
    if (!pair) return NULL;
    PyTypeObject *tp = (PyTypeObject *)KIT(t, K_NB);
    PyObject *o = note_block_of(tp, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
    if (o && tp->tp_dictoffset == 0 && settle(PyTuple_GET_ITEM(pair, 1)) && !PyObject_GC_IsTracked(PyTuple_GET_ITEM(pair, 0)))
        PyObject_GC_UnTrack(o);
    Py_DECREF(pair);
    return o;
}

static PyObject *none_ref(void) { Py_RETURN_NONE; }
static PyObject *bool_ref(int v) { return PyBool_FromLong(v); }

/* A dialogue's texts and tuples repeat from session to session (one banner, one HELO, the same
   replies and commands): each is looked up in the memo by the bytes it is made from, and made (and
   shared through the kit's table, as the reference shares it) only when the memo misses. */
static PyObject *dialogue_text(Tracker *t, int tag, const sbuf_t *b, int share) {
    struct memo_entry *slot;
    PyObject *cache = KIT(t, K_SHC), *fn = KIT(t, K_SHF);
    PyObject *v = memo_get(cache, fn, tag, b->p, (int)b->len, &slot);
    if (v) return v;
    v = smtp_text(b, 1);
    return memo_put(slot, cache, fn, tag, b->p, (int)b->len, share ? shared_of(t, v) : v);
}

static PyObject *dialogue_codes(Tracker *t, const smtp_t *s) {
    uint8_t raw[MEMO_MAX];
    int len = 2 * s->ncodes;
    struct memo_entry *slot = NULL;
    PyObject *cache = KIT(t, K_SHC), *fn = KIT(t, K_SHF);
    if (len <= MEMO_MAX) {
        for (int i = 0; i < s->ncodes; i++) { raw[2 * i] = (uint8_t)s->codes[i]; raw[2 * i + 1] = (uint8_t)(s->codes[i] >> 8); }
        PyObject *v = memo_get(cache, fn, MEMO_CODES, raw, len, &slot);
        if (v) return v;
    }
    PyObject *codes = PyTuple_New(s->ncodes);
    if (codes) for (int i = 0; i < s->ncodes; i++) {
        PyObject *c = PyLong_FromLong(s->codes[i]);
        if (!c) { Py_CLEAR(codes); break; }
        PyTuple_SET_ITEM(codes, i, c);
    }
    return memo_put(slot, cache, fn, MEMO_CODES, raw, len, codes ? shared_of(t, codes) : NULL);
}

static PyObject *dialogue_cmds(Tracker *t, const smtp_t *s) {
    uint8_t raw[MEMO_MAX];                             /* the count, then the verbs as held (NUL after each) */
    int len = 1 + (int)s->cmds.len;
    struct memo_entry *slot = NULL;
    PyObject *cache = KIT(t, K_SHC), *fn = KIT(t, K_SHF);
    if (len <= MEMO_MAX && s->ncmds < 256) {
        raw[0] = (uint8_t)s->ncmds;
        if (s->cmds.len) memcpy(raw + 1, s->cmds.p, s->cmds.len);
        PyObject *v = memo_get(cache, fn, MEMO_CMDS, raw, len, &slot);
        if (v) return v;
    }
    PyObject *cmds = PyTuple_New(s->ncmds);
    const char *w = (const char *)s->cmds.p;
    if (cmds) for (int i = 0; i < s->ncmds; i++, w += strlen(w) + 1) {
        PyObject *u = text_of(3, (const uint8_t *)w, (int)strlen(w));
        if (!u) { Py_CLEAR(cmds); break; }
        PyTuple_SET_ITEM(cmds, i, u);
    }
    return memo_put(slot, cache, fn, MEMO_CMDS, raw, len, cmds ? shared_of(t, cmds) : NULL);
}

/* smtp.dialogue(*smtp_state(s)), made here */
static PyObject *conn_dialogue(Tracker *t, const smtp_t *s) {
    if (s->proxy) {                                   /* rare: smtp.dialogue makes its ProxyHeader */
        PyObject *state = smtp_state(s);
        if (!state) return NULL;
        PyObject *r = PyObject_Call(KIT(t, K_DLGF), state, NULL);
        Py_DECREF(state);
        return r;
    }
    if (!s->has_banner && !s->ncmds) Py_RETURN_NONE;
    PyTypeObject *tp = (PyTypeObject *)KIT(t, K_DLG);
    PyObject *d = NULL;
    PyObject *v[16] = {0};
    struct memo_entry *slot;
    if (s->has_banner) {
        PyObject *parts = memo_get(KIT(t, K_BNC), KIT(t, K_BNF), MEMO_BANNER, s->banner.p, (int)s->banner.len, &slot);
        if (!parts)                                   /* (text[:200], host) */
            parts = memo_put(slot, KIT(t, K_BNC), KIT(t, K_BNF), MEMO_BANNER, s->banner.p, (int)s->banner.len,
                             cached(KIT(t, K_BNC), KIT(t, K_BNF), smtp_text(&s->banner, 1)));
        if (!parts) goto fail;
        if (!PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 2) { Py_DECREF(parts); PyErr_SetString(PyExc_TypeError, "banner_parts"); goto fail; }
        v[0] = PyLong_FromLong(s->banner_code);
        v[1] = PyTuple_GET_ITEM(parts, 0); Py_INCREF(v[1]);
        v[2] = s->banner_code == 220 && s->banner.len ? PyTuple_GET_ITEM(parts, 1) : Py_None; Py_INCREF(v[2]);
        Py_DECREF(parts);
        v[3] = PyLong_FromUnsignedLongLong(s->banner_frame);
        v[4] = PyLong_FromLongLong(s->banner_ts);
    } else {
        for (int i = 0; i < 5; i++) v[i] = none_ref();
    }
    for (int i = 0; i < 5; i++) if (!v[i]) goto fail;
    v[5] = s->has_helo ? dialogue_text(t, MEMO_HELO, &s->helo, 1) : none_ref();
    if (!v[5]) goto fail;
    if (!(v[6] = dialogue_codes(t, s))) goto fail;
    if (!(v[7] = dialogue_cmds(t, s))) goto fail;
    v[8] = bool_ref(s->st_offered); v[9] = bool_ref(s->st_started); v[10] = bool_ref(s->xc_offered);
    v[11] = smtp_text(&s->xclient, s->has_xclient);
    v[12] = s->has_xclient ? PyLong_FromUnsignedLongLong(s->xc_frame) : none_ref();
    v[13] = s->has_xclient ? PyLong_FromLongLong(s->xc_ts) : none_ref();
    v[14] = none_ref();
    /* the last reply is not shared through the kit's table, as smtp.dialogue does not share it (it is
       often one of a kind: a queue id, a refused address); the memo only gives a repeated one again */
    v[15] = s->has_last ? dialogue_text(t, MEMO_LAST, &s->last, 0) : none_ref();
    for (int i = 0; i < 16; i++) if (!v[i]) goto fail;
    if (!(d = tp->tp_alloc(tp, 16))) goto fail;      /* no Python code runs while it has NULL items */
    for (int i = 0; i < 16; i++) {
        PyTuple_SET_ITEM(d, i, v[i]);
        v[i] = NULL;
    }
    return d;
fail:
    for (int i = 0; i < 16; i++) Py_XDECREF(v[i]);
    Py_XDECREF(d);
    return NULL;
}

static PyObject *l2_made(Tracker *t, const ep_t *ep);

static PyObject *l2_of(Tracker *t, const ep_t *ep) {
    uint8_t raw[MEMO_MAX];                             /* per pair: which MACs it has, then both */
    int len = ep->npairs * 13;
    struct memo_entry *slot = NULL;
    PyObject *cache = KIT(t, K_L2C), *fn = KIT(t, K_L2F);
    if (len <= MEMO_MAX) {
        for (int i = 0; i < ep->npairs; i++) {
            uint8_t *r = raw + 13 * i;
            r[0] = (uint8_t)((ep->pairs[i].hs ? 1 : 0) | (ep->pairs[i].hd ? 2 : 0));
            memcpy(r + 1, ep->pairs[i].s, 6); memcpy(r + 7, ep->pairs[i].d, 6);
            if (!ep->pairs[i].hs) memset(r + 1, 0, 6);
            if (!ep->pairs[i].hd) memset(r + 7, 0, 6);
        }
        PyObject *v = memo_get(cache, fn, MEMO_L2, raw, len, &slot);
        if (v) return v;
    }
    return memo_put(slot, cache, fn, MEMO_L2, raw, len, l2_made(t, ep));
}

static PyObject *l2_made(Tracker *t, const ep_t *ep) {
    PyObject *key = PyTuple_New(ep->npairs);
    if (!key) return NULL;
    for (int i = 0; i < ep->npairs; i++) {
        PyObject *pr = Py_BuildValue("(NN)", mac_or_none(ep->pairs[i].s, ep->pairs[i].hs), mac_or_none(ep->pairs[i].d, ep->pairs[i].hd));
        if (!pr) { Py_DECREF(key); return NULL; }
        PyTuple_SET_ITEM(key, i, pr);
    }
    return cached(KIT(t, K_L2C), KIT(t, K_L2F), key);
}

static PyObject *ip_of(Tracker *t, const uint8_t *a, int alen) {
    struct memo_entry *slot;
    PyObject *cache = KIT(t, K_IPC), *fn = KIT(t, K_IPF);
    PyObject *v = memo_get(cache, fn, MEMO_IP, a, alen, &slot);
    if (v) return v;
    return memo_put(slot, cache, fn, MEMO_IP, a, alen, cached(cache, fn, PyBytes_FromStringAndSize((const char *)a, alen)));
}

/* the record's history text, shared (shared_of) */
static PyObject *history_of(Tracker *t, const conn_t *c) {
    struct memo_entry *slot;
    PyObject *cache = KIT(t, K_SHC), *fn = KIT(t, K_SHF);
    const uint8_t *h = (const uint8_t *)(c->hist ? c->hist : "");
    PyObject *v = memo_get(cache, fn, MEMO_HIST, h, (int)c->hlen, &slot);
    if (v) return v;
    return memo_put(slot, cache, fn, MEMO_HIST, h, (int)c->hlen, shared_of(t, PyUnicode_FromStringAndSize((const char *)h, (Py_ssize_t)c->hlen)));
}

/* conn_state's text, interned once per state (conn_state returns one of a few literals) */
static PyObject *state_of(const conn_t *c) {
    static struct { const char *s; PyObject *u; } seen[16];
    const char *st = conn_state(c);
    for (int i = 0; i < 16; i++) {
        if (seen[i].s == st) { Py_INCREF(seen[i].u); return seen[i].u; }
        if (!seen[i].s) {
            PyObject *u = PyUnicode_InternFromString(st);
            if (!u) return NULL;
            Py_INCREF(u);                              /* the table's reference: kept for the process */
            seen[i].s = st; seen[i].u = u;
            return u;
        }
    }
    return PyUnicode_InternFromString(st);
}

/* "{vantage}:C{num}": built here when the vantage is ASCII (PyUnicode_FromFormat parses its format
   each time: ~1,600 instructions a record) */
static PyObject *uid_of(PyObject *vantage, unsigned long long num) {
    if (!PyUnicode_IS_ASCII(vantage)) return PyUnicode_FromFormat("%U:C%llu", vantage, num);
    char digits[24];
    int nd = 0;
    do { digits[nd++] = (char)('0' + num % 10); num /= 10; } while (num);
    Py_ssize_t vl = PyUnicode_GET_LENGTH(vantage);
    PyObject *u = PyUnicode_New(vl + 2 + nd, 127);
    if (!u) return NULL;
    char *o = (char *)PyUnicode_DATA(u);
    memcpy(o, PyUnicode_DATA(vantage), (size_t)vl);
    o[vl] = ':'; o[vl + 1] = 'C';
    for (int i = 0; i < nd; i++) o[vl + 2 + i] = digits[nd - 1 - i];
    return u;
}

/* connection_record(capture, vantage, uid, *conn_tuple(c)) */
static PyObject *conn_record(Tracker *t, const conn_t *c) {
    static smtp_t none;
    if (!none.start) smtp_init(&none);
    PyTypeObject *tp = (PyTypeObject *)KIT(t, K_CONN);
    const ep_t *o = &c->e[0], *p = &c->e[1];
    PyObject *v[30] = {0};
    if (!(v[0] = uid_of(KIT(t, K_VANTAGE), c->num))) goto fail;
    v[1] = KIT(t, K_CAPTURE); Py_INCREF(v[1]);
    v[2] = KIT(t, K_VANTAGE); Py_INCREF(v[2]);
    if (!(v[3] = ip_of(t, c->c_ip, c->alen))) goto fail;
    if (!(v[4] = PyLong_FromLong(c->c_port))) goto fail;
    if (!(v[5] = ip_of(t, c->s_ip, c->alen))) goto fail;
    if (!(v[6] = PyLong_FromLong(c->s_port))) goto fail;
    if (!(v[7] = PyLong_FromLong(c->alen == 4 ? 4 : 6))) goto fail;
    if (!(v[8] = PyLong_FromLongLong(c->first_ts))) goto fail;
    if (!(v[9] = PyLong_FromLongLong(c->last_ts))) goto fail;
    if (!(v[10] = history_of(t, c))) goto fail;
    if (!(v[11] = state_of(c))) goto fail;
    if (!(v[12] = PyLong_FromUnsignedLongLong(o->pkts))) goto fail;
    if (!(v[13] = PyLong_FromUnsignedLongLong(p->pkts))) goto fail;
    if (!(v[14] = PyLong_FromLongLong(side_bytes(o, p)))) goto fail;
    if (!(v[15] = PyLong_FromLongLong(side_bytes(p, o)))) goto fail;
    if (!(v[16] = PyLong_FromUnsignedLongLong(o->missed + p->missed))) goto fail;
    if (!(v[17] = PyLong_FromUnsignedLongLong(o->copies))) goto fail;
    if (!(v[18] = PyLong_FromUnsignedLongLong(p->copies))) goto fail;
    if (!(v[19] = l2_of(t, o))) goto fail;
    if (!(v[20] = l2_of(t, p))) goto fail;
    if (!(v[21] = o->has_ttl ? PyLong_FromLong(o->ttl) : none_ref())) goto fail;
    if (!(v[22] = p->has_ttl ? PyLong_FromLong(p->ttl) : none_ref())) goto fail;
    if (!(v[23] = opt_u32(c->has_syn_seq, c->syn_seq))) goto fail;
    if (!(v[24] = opt_u32(c->has_synack_ack, c->synack_ack))) goto fail;
    if (!(v[25] = note_block(t, pack_notes(&c->notes)))) goto fail;
    if (!(v[26] = note_block(t, pack_notes(&c->syns)))) goto fail;
    if (!(v[27] = note_block(t, pack_notes(&c->fwd)))) goto fail;
    if (!(v[28] = conn_dialogue(t, c->smtp ? c->smtp : &none))) goto fail;
    if (!(v[29] = c->tlen ? PyObject_CallFunction(KIT(t, K_TUNF), "y#", (const char *)c->tunnel, (Py_ssize_t)c->tlen) : none_ref())) goto fail;
    PyObject *r = tp->tp_alloc(tp, 30);              /* no Python code runs while it has NULL items */
    if (!r) goto fail;
    for (int i = 0; i < 30; i++) PyTuple_SET_ITEM(r, i, v[i]);
    /* settle(r), its NoteBlocks taken as they are; items 0-18 and 21-24 are the texts and numbers
       made above (never tracked), so only the containers are looked at */
    static const int parts[] = {19, 20, 25, 26, 27, 28, 29};
    int all = 1;
    for (int i = 0; i < 7; i++) if (!settle(v[parts[i]])) all = 0;
    if (all) PyObject_GC_UnTrack(r);
    return r;
fail:
    for (int i = 0; i < 30; i++) Py_XDECREF(v[i]);
    return NULL;
}

/* ---- the lone-SYN lane (track/lone.py) ----------------------------------------------------------
   A SYN flood is millions of connections of one packet; as tuples, then Connection records, each
   costs ~100 us in Python. With `lane` 1, drain() writes such a connection as one fixed-size row
   (track/lone.py ROW: 104 bytes, little-endian) into the tracker's row buffer instead, and lone()
   hands the rows to Python as one bytes object. Exactness: is_lone() is lone.row_of's definition
   applied to the values conn_tuple() would have handed over (track/conn.py connection_record), and
   a row holds what row_of(record) packs: tests/test_lone_native.py checks rows == [row_of(c) ...] of
   the lane-0 records, capture by capture. When in doubt, a tuple: a non-row is always correct. */
#define LONE_MAX ((size_t)4 << 20)
/* The bound: a drain stops (returning the tuples made so far, maybe none) once the row buffer
   holds LONE_MAX bytes (~40k rows) or more. So Python, after each sweep()/finish_all()/more(),
   takes lone() and calls more() again while the list OR lone() was not empty (`pending` says how
   many finished connections are still to come): the buffer never outgrows LONE_MAX + one row. */

/* two notes the record shows alike (records.PacketNote equality: every field, the MACs and text) */
static int note_eq(const note_t *a, const note_t *b) {
    if (a->frame != b->frame || a->ts != b->ts || a->dir != b->dir || a->flags != b->flags || a->plen != b->plen
        || a->ttl != b->ttl || a->seq != b->seq || a->ack != b->ack || (a->ip_id < 0 ? -1 : a->ip_id) != (b->ip_id < 0 ? -1 : b->ip_id)
        || !pair_eq(&a->pair, &b->pair) || a->has_peek != b->has_peek || a->npeek != b->npeek)
        return 0;
    return !a->has_peek || memcmp(a->peek, b->peek, a->npeek) == 0;
}

/* the record's orig_bytes/resp_bytes (side()) */

/* lone.row_of(record) is not None, on the values conn_tuple(c) hands to connection_record */
static int is_lone(const conn_t *c) {
    const ep_t *o = &c->e[0], *r = &c->e[1];
    if (c->hlen != 1 || c->hist[0] != 'S' || strcmp(conn_state(c), "S0") != 0) return 0;      /* history, conn_state */
    if (o->pkts != 1 || r->pkts != 0 || side_bytes(o, r) != 0 || side_bytes(r, o) != 0) return 0;
    if (o->missed || r->missed || o->copies || r->copies) return 0;                            /* missed, forwarded */
    if (o->npairs != 1 || r->npairs != 0 || !o->has_ttl || r->has_ttl) return 0;                /* L2 pairs, TTLs */
    if (!c->has_syn_seq || c->has_synack_ack || c->tlen || c->fwd.n) return 0;
    if (c->smtp && (c->smtp->has_banner || c->smtp->ncmds || c->smtp->proxy)) return 0;         /* dialogue() is not None */
    if (c->notes.n != 1 || c->syns.n != 1 || !note_eq(&c->notes.v[0], &c->syns.v[0])) return 0;
    const note_t *n = &c->notes.v[0];
    if (n->dir != 0 || n->plen || n->has_peek || (n->flags & (F_SYN | F_ACK)) != F_SYN) return 0;
    if (!pair_eq(&n->pair, &o->pairs[0]) || n->ttl != o->ttl || n->seq != c->syn_seq) return 0;
    return c->alen == 4 || c->alen == 16;
}

/* c's row (lone.ROW) onto the row buffer; -1 out of memory (an error set) */
static int lone_put(Tracker *t, const conn_t *c) {
    if (t->nlone + ROW > t->caplone) {
        size_t cap = t->caplone ? t->caplone * 2 : (size_t)ROW * 1024;
        if (cap > LONE_MAX + ROW) cap = LONE_MAX + ROW;
        if (cap < t->nlone + ROW) cap = t->nlone + ROW;
        uint8_t *b = PyMem_Realloc(t->lone, cap);
        if (!b) { PyErr_NoMemory(); return -1; }
        t->lone = b;
        t->caplone = cap;
    }
    const note_t *n = &c->notes.v[0];
    uint8_t *o = t->lone + t->nlone;
    memset(o, 0, ROW);
    put_le(o + OFF_NUM, c->num, 8); put_le(o + OFF_FRAME, n->frame, 8); put_le(o + OFF_FIRST, (uint64_t)c->first_ts, 8);
    put_le(o + OFF_LAST, (uint64_t)c->last_ts, 8); put_le(o + OFF_NTS, (uint64_t)n->ts, 8);
    memcpy(o + OFF_CI, c->c_ip, c->alen); memcpy(o + OFF_SI, c->s_ip, c->alen);
    put_le(o + OFF_CPORT, c->c_port, 2); put_le(o + OFF_SPORT, c->s_port, 2); put_le(o + OFF_SEQ, n->seq, 4);
    put_le(o + OFF_ACK, n->ack, 4); put_le(o + OFF_IPID, (uint32_t)(n->ip_id < 0 ? -1 : n->ip_id), 4);
    if (n->pair.hs) memcpy(o + OFF_SMAC, n->pair.s, 6);
    if (n->pair.hd) memcpy(o + OFF_DMAC, n->pair.d, 6);
    o[OFF_TTL] = n->ttl; o[OFF_FLAGS] = n->flags; o[OFF_ALEN] = c->alen; o[OFF_HAS] = (uint8_t)(n->pair.hs | n->pair.hd << 1);
    t->nlone += ROW;
    return 0;
}

/* a frozen attempt's row without thawing it (no allocation: its fields decoded onto the stack): 1
   written, 0 not a lone SYN as it stands (thaw it and decide as for any other), -1 out of memory */
static int lone_frozen(Tracker *t, const frozen_t *f) {
    conn_t c;
    note_t note;
    char h = 'S';
    if (f->frozen == FROZE_LONE) lone_decode(f, &c, &note);
    else {
        if (!f->same) return 0;
        memcpy(&c, f, BODY);
        c.frozen = c.same = c.flip = 0;
        const uint8_t *in = f->data;
        in += zdec((uint8_t *)&c + BODY, sizeof c - BODY, in);        /* its pointers were NULL when frozen */
        if (c.hlen != 1 || c.notes.n != 1 || c.syns.n != 1 || c.smtp || c.fwd.n || c.e[0].ooo || c.e[1].ooo) return 0;
        h = (char)*in++;
        zdec((uint8_t *)&note, sizeof note, in);
    }
    c.hist = &h;
    c.notes.v = c.syns.v = &note;
    c.fwd.v = NULL;
    if (!is_lone(&c)) return 0;
    return lone_put(t, &c) < 0 ? -1 : 1;
}

/* up to `limit` finished connections as tuples (0: all), oldest first; the rest stay for more():
   Python takes them in batches, so that a sweep that ends half a million attempts of a flood
   never holds half a million tuples at once. With `lane` 1, lone SYNs become rows instead (not
   counted in `limit`), and the batch also ends at LONE_MAX bytes of rows (the bound, above). */
static PyObject *drain(Tracker *t, size_t limit) {
    if (t->draining) { PyErr_SetString(PyExc_RuntimeError, "Tracker re-entered from a kit callback"); return NULL; }
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    t->draining = 1;
    t->kit_held = t->kit; Py_XINCREF(t->kit_held);
    size_t made = 0;
    while (t->donehead < t->ndone && (!limit || made < limit)) {
        if (t->lane && t->nlone >= LONE_MAX) break;
        conn_t *c = t->done[t->donehead];
        if (t->lane && c->frozen) {
            int r = lone_frozen(t, (const frozen_t *)c);
            if (r < 0) goto fail;
            if (r) { PyMem_Free(c); t->donehead++; continue; }
        }
        if (c->frozen) {
            conn_t *full = thaw((const frozen_t *)c);
            if (!full) goto fail;
            PyMem_Free(c);
            c = t->done[t->donehead] = full;
        }
        if (t->lane && is_lone(c)) {
            if (lone_put(t, c) < 0) goto fail;
        } else {
            PyObject *item = t->kit_held ? conn_record(t, c) : conn_tuple(c);
            if (!item) goto fail;
            int rc = PyList_Append(out, item);
            Py_DECREF(item);
            if (rc < 0) goto fail;
            made++;
        }
        conn_free(c);
        t->donehead++;
    }
    if (t->donehead == t->ndone) t->ndone = t->donehead = 0;
    t->draining = 0; Py_CLEAR(t->kit_held);
    return out;
fail:
    for (size_t j = t->donehead; j < t->ndone; j++) entry_free(t->done[j]);
    t->ndone = t->donehead = 0;
    t->draining = 0; Py_CLEAR(t->kit_held);
    Py_DECREF(out);
    return NULL;
}

static int batch_arg(PyObject *args, Py_ssize_t *limit) {
    *limit = 0;
    if (!PyArg_ParseTuple(args, "|n", limit)) return -1;
    if (*limit < 0) { PyErr_SetString(PyExc_ValueError, "limit must be >= 0"); return -1; }
    return 0;
}

/* ---- the Python type ------------------------------------------------------------------------ */
static int Tracker_init(Tracker *self, PyObject *args, PyObject *kw) {
    PyObject *ports, *parse_proxy;
    long long max_step = 600 * NS, ts_max = INT64_MAX - (1LL << 42);
    if (!PyArg_ParseTuple(args, "OO|LL", &ports, &parse_proxy, &max_step, &ts_max)) return -1;
    if (max_step < 0 || ts_max < 0) { PyErr_SetString(PyExc_ValueError, "max_step and ts_max must be >= 0"); return -1; }
    self->max_step = max_step;
    self->ts_max = ts_max;
    if (getrandom(&self->k0, sizeof self->k0, 0) != sizeof self->k0 || getrandom(&self->k1, sizeof self->k1, 0) != sizeof self->k1) {
        struct timespec ts;                                 /* no getrandom: still differs per run */
        clock_gettime(CLOCK_REALTIME, &ts);
        self->k0 ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)self;
        self->k1 ^= (uint64_t)ts.tv_sec * 0xc4ceb9fe1a85ec53ULL ^ (uint64_t)getpid();
    }
    PyObject *it = PyObject_GetIter(ports);
    if (!it) return -1;
    memset(self->ports, 0, sizeof self->ports);
    PyObject *o;
    while ((o = PyIter_Next(it))) {
        long v = PyLong_AsLong(o);
        Py_DECREF(o);
        if (v < 0 || v > 65535) {
            Py_DECREF(it);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "port out of range");
            return -1;
        }
        self->ports[v >> 3] |= (uint8_t)(1 << (v & 7));
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return -1;
    Py_INCREF(parse_proxy);
    Py_XSETREF(self->parse_proxy, parse_proxy);
    return 0;
}

static void Tracker_dealloc(Tracker *self) {
    for (size_t i = 0; i < self->cap; i++) {
        conn_t *c = self->slots[i];
        if (c && c != TOMB) {
            if (c->frozen) PyMem_Free(c);
            else conn_free(c);
        }
    }
    for (size_t i = self->donehead; i < self->ndone; i++) entry_free(self->done[i]);
    PyMem_Free(self->slots);
    PyMem_Free(self->done);
    PyMem_Free(self->held_payload);
    PyMem_Free(self->lone);
    PyMem_Free(self->heap);
    PyMem_Free(self->dirty);
    PyMem_Free(self->exp);
    Py_XDECREF(self->parse_proxy);
    Py_XDECREF(self->kit);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* packet(frame, ts, src_mac, dst_mac, src, dst, sport, dport, seq, ack, flags, win, ttl, ip_id, payload, tunnel):
   a packet decoded in Python (other link types, tunnels, VLAN stacks, pcapng) */
static PyObject *Tracker_packet(Tracker *self, PyObject *args) {
    unsigned long long frame; long long ts; PyObject *smac, *dmac, *ipid, *tunnel;
    Py_buffer src, dst, payload;
    unsigned int sport, dport, flags, win, ttl, cut = 0; unsigned long seq, ack;
    if (!PyArg_ParseTuple(args, "KLOOy*y*IIkkIIIOy*O|I", &frame, &ts, &smac, &dmac, &src, &dst, &sport, &dport, &seq, &ack,
                          &flags, &win, &ttl, &ipid, &payload, &tunnel, &cut))
        return NULL;
    ct_pkt p;
    memset(&p, 0, sizeof p);
    PyObject *res = NULL;
    if ((src.len != 4 && src.len != 16) || dst.len != src.len) { PyErr_SetString(PyExc_ValueError, "address length"); goto out; }
    if ((smac != Py_None && (!PyBytes_Check(smac) || PyBytes_GET_SIZE(smac) != 6))
        || (dmac != Py_None && (!PyBytes_Check(dmac) || PyBytes_GET_SIZE(dmac) != 6))) {
        PyErr_SetString(PyExc_ValueError, "MAC must be 6 bytes or None"); goto out;
    }
    if (tunnel != Py_None && (!PyBytes_Check(tunnel) || (PyBytes_GET_SIZE(tunnel) != 4 && PyBytes_GET_SIZE(tunnel) != 16))) {
        PyErr_SetString(PyExc_ValueError, "tunnel source must be an address or None"); goto out;
    }
    p.frame = frame; p.ts = ts;
    p.smac = smac == Py_None ? NULL : (const uint8_t *)PyBytes_AS_STRING(smac);
    p.dmac = dmac == Py_None ? NULL : (const uint8_t *)PyBytes_AS_STRING(dmac);
    p.src = src.buf; p.dst = dst.buf; p.alen = (int)src.len;
    p.sport = (uint16_t)sport; p.dport = (uint16_t)dport; p.seq = (uint32_t)seq; p.ack = (uint32_t)ack;
    p.flags = (uint8_t)flags; p.win = (uint16_t)win; p.ttl = (uint8_t)ttl;
    p.ip_id = ipid == Py_None ? -1 : (int32_t)PyLong_AsLong(ipid);
    if (PyErr_Occurred()) goto out;
    p.payload = payload.buf; p.plen = (uint32_t)payload.len; p.cut = cut;
    if (tunnel != Py_None) { p.tunnel = (const uint8_t *)PyBytes_AS_STRING(tunnel); p.tlen = (int)PyBytes_GET_SIZE(tunnel); }
    if (ct_packet((PyObject *)self, &p) == 0) { Py_INCREF(Py_None); res = Py_None; }
out:
    PyBuffer_Release(&src); PyBuffer_Release(&dst); PyBuffer_Release(&payload);
    return res;
}

/* by the entry's number (ENTRY_HEAD: a frozen entry's too) */
static int by_num(const void *a, const void *b) {
    unsigned long long x = ((const struct expired *)a)->num, y = ((const struct expired *)b)->num;   /* copied: no entry read per compare */
    return x < y ? -1 : x > y;
}

static int exp_room(Tracker *t, size_t n) {
    if (n <= t->capexp) return 0;
    size_t cap = t->capexp ? t->capexp : 1024;
    while (cap < n) cap *= 2;
    struct expired *e = PyMem_Realloc(t->exp, cap * sizeof *e);
    if (!e) { PyErr_NoMemory(); return -1; }
    t->exp = e;
    t->capexp = cap;
    return 0;
}

/* sweep() -> [connections Zeek's timers have ended by the capture clock] (ConnTracker.sweep).
   The same connections as a scan of the whole table would end, and the same ones frozen: the
   entries touched since the last sweep (the dirty list: the only ones not frozen already, but for
   those too big to freeze, whose fields and so whose removal time no packet has changed since) are
   computed anew, ended or filed and frozen; then the heap gives the filed ones whose time has
   come. One sweep's ended entries are sorted by number, the order they began (finish_all says why). */
static PyObject *Tracker_sweep(Tracker *self, PyObject *args) {
    Py_ssize_t limit;
    if (batch_arg(args, &limit) < 0) return NULL;
    if (self->has_clock) {
        size_t nexp = 0;
        for (size_t k = 0; k < self->ndirty; k++) {
            conn_t *c = self->dirty[k];
            if (!c) continue;
            c->dix = NOWHERE;
            int64_t r = removal_time(c);
            if (r <= self->clock) {
                if (c->hix != NOWHERE) heap_del(self, c);
                if (exp_room(self, nexp + 1) < 0) return NULL;
                self->exp[nexp++].c = c;
                continue;
            }
            if (heap_file(self, c, r) < 0) return NULL;
            if (freezable(c)) {
                size_t i = slot_of(self, c);
                conn_t *f = freeze(c);      /* still open across a sweep: kept small */
                if (f) {
                    self->slots[i] = f;
                    self->heap[f->hix].c = f;
                    self->nfrozen++;
                    self->frozen_bytes += FROZEN_SIZE(f);
                }
            }
        }
        self->ndirty = 0;
        while (self->nheap && self->heap[0].due <= self->clock) {
            conn_t *c = self->heap[0].c;
            heap_del(self, c);
            if (exp_room(self, nexp + 1) < 0) return NULL;
            self->exp[nexp++].c = c;
        }
        for (size_t k = 0; k < nexp; k++) {
            self->exp[k].slot = slot_of(self, self->exp[k].c);
            self->exp[k].num = self->exp[k].c->num;
        }
        /* in the order they began, as the reference hands them (finish_all() says why) */
        if (nexp > 1) qsort(self->exp, nexp, sizeof *self->exp, by_num);
        for (size_t k = 0; k < nexp; k++)
            if (finish_at(self, self->exp[k].c, self->exp[k].slot) < 0) return NULL;   /* a frozen one thaws in drain() */
    }
    return drain(self, (size_t)limit);
}

/* more([limit]) -> the next finished connections sweep() or finish_all() left ([] when none) */
static PyObject *Tracker_more(Tracker *self, PyObject *args) {
    Py_ssize_t limit;
    if (batch_arg(args, &limit) < 0) return NULL;
    return drain(self, (size_t)limit);
}

/* finish_all() -> every connection still open, finished (ConnTracker.finish_all) */
static PyObject *Tracker_finish_all(Tracker *self, PyObject *args) {
    Py_ssize_t limit;
    if (batch_arg(args, &limit) < 0) return NULL;
    if (self->has_held) {                                   /* the last packet jumped ahead: nothing contradicted it */
        self->clock = self->held.ts < self->ts_max ? self->held.ts : self->ts_max;
        if (release_held(self) < 0) return NULL;
    }
    for (size_t k = 0; k < self->nheap; k++) self->heap[k].c->hix = NOWHERE;   /* every timer ends now */
    self->nheap = 0;
    for (size_t k = 0; k < self->ndirty; k++)
        if (self->dirty[k]) self->dirty[k]->dix = NOWHERE;
    self->ndirty = 0;
    /* in the order they began (their numbers), as the reference's table (a dict) hands them: the
       store sorts by first packet, and the connections Zeek's close timer still held at the end
       (5 s of mail: 43% of a 60k-session capture) would otherwise come in the table's random order,
       more than the replacement selection holds, and split the store into interleaved runs that
       every pass merges a record at a time */
    size_t nexp = 0;
    for (size_t i = 0; i < self->cap; i++) {
        conn_t *c = self->slots[i];
        if (!c || c == TOMB) continue;
        if (exp_room(self, nexp + 1) < 0) return NULL;
        self->exp[nexp].slot = i;
        self->exp[nexp].num = c->num;
        self->exp[nexp++].c = c;
    }
    if (nexp > 1) qsort(self->exp, nexp, sizeof *self->exp, by_num);
    for (size_t k = 0; k < nexp; k++)
        if (finish_at(self, self->exp[k].c, self->exp[k].slot) < 0) return NULL;
    /* the table is empty now: its slots (2M for a flood's 500k open attempts: 16 MB), the heap and
       the lists go before the drain turns every attempt into a row (the run's peak of memory) */
    PyMem_Free(self->slots); self->slots = NULL; self->cap = self->used = self->tombs = 0;
    PyMem_Free(self->heap); self->heap = NULL; self->nheap = self->capheap = 0;
    PyMem_Free(self->dirty); self->dirty = NULL; self->ndirty = self->capdirty = 0;
    PyMem_Free(self->exp); self->exp = NULL; self->capexp = 0;
    return drain(self, (size_t)limit);
}

/* slots() -> the open connections' numbers in table-slot order (the tests' view of the table) */
static PyObject *Tracker_slots(Tracker *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (size_t i = 0; i < self->cap; i++) {
        conn_t *c = self->slots[i];
        if (!c || c == TOMB) continue;
        PyObject *n = PyLong_FromUnsignedLongLong(c->num);
        if (!n || PyList_Append(out, n) < 0) { Py_XDECREF(n); Py_DECREF(out); return NULL; }
        Py_DECREF(n);
    }
    return out;
}

/* lone() -> the rows (track/lone.py ROW) drain() wrote since the last call, as one bytes object
   (b"" when none); the buffer is emptied */
static PyObject *Tracker_lone(Tracker *self, PyObject *unused) {
    PyObject *rows = PyBytes_FromStringAndSize((const char *)self->lone, (Py_ssize_t)self->nlone);
    if (rows) self->nlone = 0;
    return rows;
}

static PyObject *get_lane(Tracker *s, void *x) { return PyLong_FromLong(s->lane); }
static int set_lane(Tracker *s, PyObject *v, void *x) {
    if (!v) { PyErr_SetString(PyExc_TypeError, "lane cannot be deleted"); return -1; }
    long lane = PyLong_AsLong(v);
    if (lane == -1 && PyErr_Occurred()) return -1;
    if (lane != 0 && lane != 1) { PyErr_SetString(PyExc_ValueError, "lane must be 0 or 1"); return -1; }
    s->lane = (int)lane;
    return 0;
}
static PyObject *get_kit(Tracker *s, void *x) { return s->kit ? (Py_INCREF(s->kit), s->kit) : none_ref(); }
static int plain_types(PyTypeObject *conn, PyTypeObject *nb, PyTypeObject *dlg);
static int set_kit(Tracker *s, PyObject *v, void *x) {
    if (v == Py_None) v = NULL;
    if (v) {
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != K_N) { PyErr_Format(PyExc_TypeError, "kit must be a tuple of %d (conn.py record_kit)", K_N); return -1; }
        for (int i = K_CONN; i <= K_DLG; i++)
            if (!PyType_Check(PyTuple_GET_ITEM(v, i))) { PyErr_SetString(PyExc_TypeError, "kit: the record types first"); return -1; }
        if (!PyTuple_GET_ITEM(v, K_CONN) || !PyType_IsSubtype((PyTypeObject *)PyTuple_GET_ITEM(v, K_CONN), &PyTuple_Type)
            || !PyType_IsSubtype((PyTypeObject *)PyTuple_GET_ITEM(v, K_DLG), &PyTuple_Type)) {
            PyErr_SetString(PyExc_TypeError, "kit: Connection and SmtpDialogue are tuples"); return -1;
        }
        for (int i = K_IPC; i <= K_BNC; i += 2)
            if (!PyDict_Check(PyTuple_GET_ITEM(v, i))) { PyErr_SetString(PyExc_TypeError, "kit: the intern tables are dicts"); return -1; }
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(v, K_VANTAGE))) { PyErr_SetString(PyExc_TypeError, "kit: the vantage is a str"); return -1; }
        for (int i = K_IPF; i < K_N; i++)
            if (i != K_SHC && i != K_L2C && i != K_BNC && !PyCallable_Check(PyTuple_GET_ITEM(v, i))) { PyErr_SetString(PyExc_TypeError, "kit: the table fillers are callables"); return -1; }
        if (plain_types((PyTypeObject *)PyTuple_GET_ITEM(v, K_CONN), (PyTypeObject *)PyTuple_GET_ITEM(v, K_NB), (PyTypeObject *)PyTuple_GET_ITEM(v, K_DLG)) < 0) return -1;
        Py_INCREF(v);
    }
    Py_XSETREF(s->kit, v);
    return 0;
}
static PyObject *get_pending(Tracker *s, void *x) { return PyLong_FromSize_t(s->ndone - s->donehead); }

static PyObject *get_packets(Tracker *s, void *x) { return PyLong_FromUnsignedLongLong(s->packets); }
static PyObject *get_first(Tracker *s, void *x) {
    if (!s->first_frame) Py_RETURN_NONE;
    return Py_BuildValue("(KL)", s->first_frame, (long long)s->first_ts);
}
static PyObject *get_last(Tracker *s, void *x) {
    if (!s->first_frame) Py_RETURN_NONE;
    return Py_BuildValue("(KL)", s->last_frame, (long long)s->last_ts);
}

static PyObject *get_time_steps(Tracker *s, void *x) {
    return Py_BuildValue("(KLKL)", s->backwards, (long long)s->largest_back, s->outliers, (long long)s->largest_outlier);
}

static PyObject *get_frozen(Tracker *s, void *x) { return PyLong_FromSize_t(s->nfrozen); }
static PyObject *get_frozen_bytes(Tracker *s, void *x) { return PyLong_FromSize_t(s->frozen_bytes); }
static PyObject *get_sizes(Tracker *s, void *x) {
    return Py_BuildValue("{s:n,s:n,s:n}", "conn", (Py_ssize_t)sizeof(conn_t), "note", (Py_ssize_t)sizeof(note_t),
                         "frozen_head", (Py_ssize_t)offsetof(frozen_t, data));
}
static PyObject *get_snaplen_cut(Tracker *s, void *x) { return PyLong_FromUnsignedLongLong(s->cut_packets); }

/* the sink the capture walker feeds (capture/_sink.h): this tracker's two entry points; the
   capsule holds a reference to the tracker and drops it when the walker lets the capsule go */
static int sink_wants_port(void *t, uint16_t port) { return ct_port((PyObject *)t, port); }
static int sink_packet(void *t, const dsr_pkt *p) { return ct_packet((PyObject *)t, p); }
static void sink_free(PyObject *cap) {
    dsr_sink *s = PyCapsule_GetPointer(cap, DSR_SINK_CAPSULE);
    if (s) { Py_XDECREF((PyObject *)s->self); PyMem_Free(s); }
}
static PyObject *get_sink(Tracker *self, void *x) {
    dsr_sink *s = PyMem_Malloc(sizeof *s);
    if (!s) return PyErr_NoMemory();
    s->version = DSR_SINK_VERSION; s->self = self; s->wants_port = sink_wants_port; s->packet = sink_packet;
    PyObject *cap = PyCapsule_New(s, DSR_SINK_CAPSULE, sink_free);
    if (!cap) { PyMem_Free(s); return NULL; }
    Py_INCREF(self);
    return cap;
}

static PyGetSetDef Tracker_getset[] = {
    {"lane", (getter)get_lane, (setter)set_lane, "1: lone SYNs leave sweep()/more()/finish_all() as rows, taken with lone() (0: as tuples, the default)", NULL},
    {"kit", (getter)get_kit, (setter)set_kit, "conn.py record_kit(): drain() then hands over Connection records made in C (None: tuples)", NULL},
    {"pending", (getter)get_pending, NULL, "finished connections not handed over yet (more() takes them)", NULL},
    {"sink", (getter)get_sink, NULL, "a capsule (capture/_sink.h) through which a capture walker feeds this tracker in C", NULL},
    {"snaplen_cut", (getter)get_snaplen_cut, NULL, "packets whose payload the snaplen cut", NULL},
    {"frozen", (getter)get_frozen, NULL, "table entries kept frozen now (connections open across a sweep with little state)", NULL},
    {"frozen_bytes", (getter)get_frozen_bytes, NULL, "bytes the frozen table entries hold (their allocations' requested sizes)", NULL},
    {"sizes", (getter)get_sizes, NULL, "sizeof of the C structures: conn_t, note_t, and a frozen entry's fixed part", NULL},
    {"time_steps", (getter)get_time_steps, NULL, "(backwards, largest back ns, outliers, largest outlier ns)", NULL},
    {"packets", (getter)get_packets, NULL, "TCP packets tracked", NULL},
    {"first", (getter)get_first, NULL, "(frame, ts_ns) of the first packet tracked, or None", NULL},
    {"last", (getter)get_last, NULL, "(frame, ts_ns) of the last packet tracked, or None", NULL},
    {NULL}
};

static PyMethodDef Tracker_methods[] = {
    {"packet", (PyCFunction)Tracker_packet, METH_VARARGS, "packet(...): track one packet decoded in Python"},
    {"sweep", (PyCFunction)Tracker_sweep, METH_VARARGS, "sweep([limit]): the connections Zeek's timers have ended (the first limit; more() the rest)"},
    {"finish_all", (PyCFunction)Tracker_finish_all, METH_VARARGS, "finish_all([limit]): every connection left (the first limit; more() the rest)"},
    {"more", (PyCFunction)Tracker_more, METH_VARARGS, "more([limit]): the next finished connections sweep() or finish_all() left"},
    {"slots", (PyCFunction)Tracker_slots, METH_NOARGS, "slots(): the open connections' numbers in table-slot order (the tests' view of the table)"},
    {"lone", (PyCFunction)Tracker_lone, METH_NOARGS, "lone(): the lone-SYN rows (track/lone.py ROW) written since the last call, as bytes"},
    {NULL}
};

PyTypeObject TrackerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsrdiag.track._conntrack.Tracker",
    .tp_basicsize = sizeof(Tracker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tracker_init,
    .tp_dealloc = (destructor)Tracker_dealloc,
    .tp_methods = Tracker_methods,
    .tp_getset = Tracker_getset,
    .tp_doc = "Tracker(ports, parse_proxy[, max_clock_step_ns, ts_max_ns]): track/conn.py's connection tracker (and track/smtp.py's follower) in C",
};

/* follow(chunks, parse_proxy) -> the follower's state: [(is_orig, bytes, frame, ts)] through a fresh C
   SMTP follower (and its gap() for a chunk of None). For tests/test_native_tracker.py, which compares it
   with track/smtp.py's on random and hostile streams, without a capture in between. */
PyObject *ct_follow(PyObject *mod, PyObject *args) {
    PyObject *chunks, *parse_proxy;
    if (!PyArg_ParseTuple(args, "OO", &chunks, &parse_proxy)) return NULL;
    PyObject *seq = PySequence_Fast(chunks, "chunks must be a sequence");
    if (!seq) return NULL;
    smtp_t s;
    smtp_init(&s);
    PyObject *out = NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        int is_orig; PyObject *data; unsigned long long frame; long long ts;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "pOKL", &is_orig, &data, &frame, &ts)) goto done;
        if (data == Py_None) { smtp_gap(&s, is_orig); continue; }
        if (!PyBytes_Check(data)) { PyErr_SetString(PyExc_TypeError, "bytes or None"); goto done; }
        if (PyBytes_GET_SIZE(data) && smtp_data(&s, is_orig, (const uint8_t *)PyBytes_AS_STRING(data),
                                                 (uint32_t)PyBytes_GET_SIZE(data), frame, ts, parse_proxy) < 0) goto done;
    }
    out = smtp_state(&s);
done:
    smtp_free(&s);
    Py_DECREF(seq);
    return out;
}

/* ---- records.flatten / unflatten, a batch at a time ------------------------------------------
   The record store pickles each record of a batch that does not pack (track/packed.py; the
   others are packed by track/_storepack.c) flattened (records.py flatten says why) and rebuilds
   it on every pass over the store: in Python, ~2 us and ~2.5 us a record, the three NoteBlocks' __init__
   most of it. These are the peers of records.flatten_all_py / unflatten_all_py (tests/test_record_kit.py
   compares them); `types` is (Connection, NoteBlock, SmtpDialogue). */
#define FLAT_N 33
/* Connection and SmtpDialogue: classes made by a class statement straight on tuple (NamedTuple);
   NoteBlock: one straight on object with both slots plain. tp_alloc'd objects of any other type
   (a structseq, a C type) may be deallocated by code that reads what tp_alloc left zero. */
static int plain_types(PyTypeObject *conn, PyTypeObject *nb, PyTypeObject *dlg) {
    PyTypeObject *tuples[2] = {conn, dlg};
    for (int i = 0; i < 2; i++)
        if (!(tuples[i]->tp_flags & Py_TPFLAGS_HEAPTYPE) || tuples[i]->tp_base != &PyTuple_Type
            || tuples[i]->tp_basicsize != PyTuple_Type.tp_basicsize || PyDict_GetItemString(tuples[i]->tp_dict, "n_fields")) {
            PyErr_SetString(PyExc_TypeError, "types: Connection and SmtpDialogue are plain tuple classes");
            return -1;
        }
    Py_ssize_t off[2];
    nb_offsets(nb, off);
    if (!(nb->tp_flags & Py_TPFLAGS_HEAPTYPE) || nb->tp_base != &PyBaseObject_Type || off[0] < 0 || off[1] < 0) {
        PyErr_SetString(PyExc_TypeError, "types: NoteBlock is a class with the slots _data and _strs");
        return -1;
    }
    return 0;
}

static int record_types(PyObject *types, PyTypeObject **conn, PyTypeObject **nb, PyTypeObject **dlg) {
    if (!PyTuple_Check(types) || PyTuple_GET_SIZE(types) != 3 || !PyType_Check(PyTuple_GET_ITEM(types, 0))
        || !PyType_Check(PyTuple_GET_ITEM(types, 1)) || !PyType_Check(PyTuple_GET_ITEM(types, 2))) {
        PyErr_SetString(PyExc_TypeError, "types: (Connection, NoteBlock, SmtpDialogue)");
        return -1;
    }
    *conn = (PyTypeObject *)PyTuple_GET_ITEM(types, 0);
    *nb = (PyTypeObject *)PyTuple_GET_ITEM(types, 1);
    *dlg = (PyTypeObject *)PyTuple_GET_ITEM(types, 2);
    if (!PyType_IsSubtype(*conn, &PyTuple_Type) || !PyType_IsSubtype(*dlg, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "types: Connection and SmtpDialogue are tuples");
        return -1;
    }
    return plain_types(*conn, *nb, *dlg);
}

/* the same, for the record store's packed batches (track/_storepack.c) */
int rec_types(PyObject *types, rtypes_t *ty) { return record_types(types, &ty->conn, &ty->nb, &ty->dlg); }
PyObject *rec_nb_get(PyObject *b, int i) {
    if (!s_data && !(s_data = PyUnicode_InternFromString("_data"))) return NULL;
    if (!s_strs && !(s_strs = PyUnicode_InternFromString("_strs"))) return NULL;
    return nb_get(b, i);
}
PyObject *rec_note_block(PyTypeObject *tp, PyObject *data, PyObject *strs) { return note_block_of(tp, data, strs); }

/* dst[0:25] = src[0:25] (new references), then dst[25:25+n] = v (stolen) */
static void put_record(PyObject *dst, PyObject *src, PyObject **v, int n) {
    for (int k = 0; k < 25; k++) { PyObject *x = PyTuple_GET_ITEM(src, k); Py_INCREF(x); PyTuple_SET_ITEM(dst, k, x); }
    for (int k = 0; k < n; k++) PyTuple_SET_ITEM(dst, 25 + k, v[k]);
}

static PyObject *drop(PyObject **v, int n) {
    for (int k = 0; k < n; k++) Py_XDECREF(v[k]);
    return NULL;
}

/* records.flatten(c): every value made first, the tuple last */
static PyObject *flatten_one(PyObject *c, const rtypes_t *ty) {
    PyObject *v[8] = {0};
    if (Py_TYPE(c) != ty->conn || PyTuple_GET_SIZE(c) != 30) { PyErr_SetString(PyExc_TypeError, "flatten_all: Connection records only"); return NULL; }
    for (int k = 0; k < 3; k++) {
        PyObject *b = PyTuple_GET_ITEM(c, 25 + k);
        if (Py_TYPE(b) != ty->nb) { PyErr_SetString(PyExc_TypeError, "flatten_all: notes are NoteBlocks"); return drop(v, 8); }
        if (!(v[2 * k] = nb_get(b, 0)) || !(v[2 * k + 1] = nb_get(b, 1))) return drop(v, 8);
    }
    PyObject *sm = PyTuple_GET_ITEM(c, 28);
    if (!(v[6] = sm == Py_None ? (Py_INCREF(Py_None), Py_None) : PySequence_Tuple(sm))) return drop(v, 8);
    v[7] = PyTuple_GET_ITEM(c, 29); Py_INCREF(v[7]);
    PyObject *f = PyTuple_New(FLAT_N);
    if (!f) return drop(v, 8);
    put_record(f, c, v, 8);
    return f;
}

/* records.unflatten(f): the NoteBlocks and the dialogue first, the record last (no Python code
   runs while it has NULL items) */
static PyObject *unflatten_one(PyObject *f, const rtypes_t *ty) {
    PyObject *v[5] = {0};
    if (!PyTuple_CheckExact(f) || PyTuple_GET_SIZE(f) != FLAT_N) { PyErr_SetString(PyExc_ValueError, "unflatten_all: a flattened record has 33 values"); return NULL; }
    for (int k = 0; k < 3; k++)
        if (!(v[k] = note_block_of(ty->nb, PyTuple_GET_ITEM(f, 25 + 2 * k), PyTuple_GET_ITEM(f, 26 + 2 * k)))) return drop(v, 5);
    PyObject *sm = PyTuple_GET_ITEM(f, 31);
    if (sm == Py_None) v[3] = (Py_INCREF(Py_None), Py_None);
    else {
        if (!PyTuple_Check(sm)) { PyErr_SetString(PyExc_ValueError, "unflatten_all: a dialogue is a tuple"); return drop(v, 5); }
        Py_ssize_t m = PyTuple_GET_SIZE(sm);
        if (m != 16) { PyErr_SetString(PyExc_ValueError, "unflatten_all: a dialogue has 16 values"); return drop(v, 5); }
        if (!(v[3] = ty->dlg->tp_alloc(ty->dlg, m))) return drop(v, 5);
        for (Py_ssize_t k = 0; k < m; k++) { PyObject *x = PyTuple_GET_ITEM(sm, k); Py_INCREF(x); PyTuple_SET_ITEM(v[3], k, x); }
    }
    v[4] = PyTuple_GET_ITEM(f, 32); Py_INCREF(v[4]);
    PyObject *c = ty->conn->tp_alloc(ty->conn, 30);
    if (!c) return drop(v, 5);
    put_record(c, f, v, 5);
    return c;
}

/* [one(item) for item in batch], over a snapshot of the list (Python code may change it), the
   result untracked by the GC until every slot is filled */
static PyObject *map_records(PyObject *args, PyObject *(*one)(PyObject *, const rtypes_t *)) {
    PyObject *batch, *types;
    rtypes_t ty;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &batch, &types) || record_types(types, &ty.conn, &ty.nb, &ty.dlg) < 0) return NULL;
    if (!s_data && !(s_data = PyUnicode_InternFromString("_data"))) return NULL;
    if (!s_strs && !(s_strs = PyUnicode_InternFromString("_strs"))) return NULL;
    PyObject *items = PyList_AsTuple(batch);
    if (!items) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    if (!out) { Py_DECREF(items); return NULL; }
    PyObject_GC_UnTrack(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = one(PyTuple_GET_ITEM(items, i), &ty);
        if (!x) { Py_DECREF(items); Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, i, x);
    }
    Py_DECREF(items);
    PyObject_GC_Track(out);
    return out;
}

static PyObject *ct_flatten_all(PyObject *mod, PyObject *args) { return map_records(args, flatten_one); }
static PyObject *ct_unflatten_all(PyObject *mod, PyObject *args) { return map_records(args, unflatten_one); }

/* fields_as_members(cls): each field of a NamedTuple read through a member descriptor at its
   item's place in the tuple (records.py _fields_as_members says why). A member reads the item
   without checking the tuple's length, so the class must be one whose instances always have all
   its fields: every way records.py's types are made gives them all (their __new__, the record
   makers and codecs here, unflatten, which checks the length). */
static PyObject *ct_fields_as_members(PyObject *mod, PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)
        || ((PyTypeObject *)cls)->tp_itemsize != sizeof(PyObject *)) {
        PyErr_SetString(PyExc_TypeError, "fields_as_members: a tuple subclass");
        return NULL;
    }
    PyObject *fields = PyObject_GetAttrString(cls, "_fields");
    if (!fields) return NULL;
    if (!PyTuple_Check(fields)) { Py_DECREF(fields); PyErr_SetString(PyExc_TypeError, "fields_as_members: _fields is a tuple"); return NULL; }
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    /* the definitions live as long as the descriptors: for the life of the process (one per field of a few classes) */
    PyMemberDef *defs = PyMem_RawCalloc((size_t)n + 1, sizeof(PyMemberDef));
    if (!defs) { Py_DECREF(fields); return PyErr_NoMemory(); }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        const char *u = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        char *copy = u ? PyMem_RawMalloc(strlen(u) + 1) : NULL;
        if (!copy) { if (u) PyErr_NoMemory(); else if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "fields_as_members: a field name is a str"); Py_DECREF(fields); return NULL; }
        strcpy(copy, u);
        defs[i].name = copy;
        defs[i].type = T_OBJECT_EX;
        defs[i].offset = (Py_ssize_t)(offsetof(PyTupleObject, ob_item) + (size_t)i * sizeof(PyObject *));
        defs[i].flags = READONLY;
        PyObject *d = PyDescr_NewMember((PyTypeObject *)cls, &defs[i]);
        int r = d ? PyObject_SetAttr(cls, name, d) : -1;
        Py_XDECREF(d);
        if (r < 0) { Py_DECREF(fields); return NULL; }
    }
    Py_DECREF(fields);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"flatten_all", ct_flatten_all, METH_VARARGS, "flatten_all(records, (Connection, NoteBlock, SmtpDialogue)): records.flatten of each"},
    {"unflatten_all", ct_unflatten_all, METH_VARARGS, "unflatten_all(flat, (Connection, NoteBlock, SmtpDialogue)): records.unflatten of each"},
    {"pack_batch", sp_pack_batch, METH_VARARGS, "pack_batch(records, (Connection, NoteBlock, SmtpDialogue)): track/packed.py's packed batch, or None"},
    {"unpack_batch", sp_unpack_batch, METH_VARARGS, "unpack_batch(data, (Connection, NoteBlock, SmtpDialogue)): the records of a packed batch"},
    {"fields_as_members", ct_fields_as_members, METH_O, "fields_as_members(cls): a NamedTuple's fields read by member descriptors (records.py)"},
    {"facts_observe", fo_facts_observe, METH_VARARGS, "facts_observe(facts, records, facts._native_env()): Facts.observe of each record"},
    {"follow", ct_follow, METH_VARARGS, "follow(chunks, parse_proxy): the C SMTP follower's state after these chunks (tests)"},
    {NULL}
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_conntrack",
                                    "track/conn.py's connection tracker in C; fed by a capture walker through Tracker.sink.",
                                    -1, module_methods};

PyMODINIT_FUNC PyInit__conntrack(void) {
    if (PyType_Ready(&TrackerType) < 0 || PyType_Ready(&SelectionType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    Py_INCREF(&TrackerType);
    if (PyModule_AddObject(m, "Tracker", (PyObject *)&TrackerType) < 0) { Py_DECREF(&TrackerType); Py_DECREF(m); return NULL; }
    Py_INCREF(&SelectionType);
    if (PyModule_AddObject(m, "Selection", (PyObject *)&SelectionType) < 0) { Py_DECREF(&SelectionType); Py_DECREF(m); return NULL; }
    /* the C side of every constant the Python reference (track/conn.py, track/records.py,
       decode/smtp.py, track/smtp.py) defines too: tests/test_native_tracker.py checks they agree */
    PyObject *k = Py_BuildValue("{sKsisisisisLsisLsLsLsLsLsLsLsisisisi}",
                                "TOO_LARGE", (unsigned long long)TOO_LARGE, "MAX_NOTES", MAX_NOTES, "PEEK", PEEK,
                                "MAX_SYNS", MAX_SYNS, "MAX_L2", MAX_L2, "FORWARD_WINDOW_NS", (long long)FORWARD_WINDOW_NS,
                                "MAX_OOO", MAX_OOO, "TCP_SYN_TIMEOUT", (long long)TCP_SYN_TIMEOUT,
                                "TCP_SESSION_TIMER", (long long)TCP_SESSION_TIMER, "TCP_CONNECTION_LINGER", (long long)TCP_CONNECTION_LINGER,
                                "TCP_ATTEMPT_DELAY", (long long)TCP_ATTEMPT_DELAY, "TCP_CLOSE_DELAY", (long long)TCP_CLOSE_DELAY,
                                "TCP_INACTIVITY_TIMEOUT", (long long)TCP_INACTIVITY_TIMEOUT,
                                "UDP_INACTIVITY_TIMEOUT", (long long)UDP_INACTIVITY_TIMEOUT, "NOTE_SIZE", NOTE_SIZE,
                                "MAX_LINE", SMTP_MAX_LINE, "MAX_CODES", SMTP_MAX_CODES, "SINK_VERSION", DSR_SINK_VERSION);
    if (!k || PyModule_AddObject(m, "CONSTANTS", k) < 0) { Py_XDECREF(k); Py_DECREF(m); return NULL; }
    return m;
}
