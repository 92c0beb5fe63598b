/* The record store's batches as packed bytes: the C peer of track/packed.py (pack_batch_py,
 * unpack_batch_py), which defines the format and says why. Both write the same bytes for a batch
 * and read each other's back to equal records (tests/test_store_format.py).
 *
 * pack_batch walks the batch as packed.py does (record by record, field by field, a tuple's items
 * before the tuple) and puts each distinct value (str, int, tuple of those, deduplicated by value
 * through a dict) once in the batch's table; any value not of its plain type (a ProxyHeader, a
 * NoteBlock of unpacked notes, an int beyond 64 bits, a subclass) makes it return None: the
 * store pickles that batch. unpack_batch checks every length, reference and mask against the
 * bytes it was given: a damaged batch raises ValueError, never reads outside them.
 */
#include "_storepack.h"
#include <stdint.h>
#include <string.h>

#define SP_VERSION 1
#define SP_FORM_PACKED 2
#define SP_HEADER 20                      /* "<4sBBHIQ" */
#define SP_RECORD 196                     /* "<10I16qI6I" */
#define SP_DIALOGUE 70                    /* "<7I5qBB" */
#define SP_NONE 0xFFFFFFFFu
#define SP_NOTE 41                        /* a packed note's size (records._NOTE): a note block is whole notes */
#define SP_DEPTH 8                        /* tuples nest this deep at most (L2 paths: 2) */
enum { TAG_STR = 1, TAG_INT = 2, TAG_TUPLE = 3 };
enum { UNPACKABLE = -2 };

static const int STR_FIELDS[10] = {0, 1, 2, 3, 5, 10, 11, 19, 20, 29};
static const int INT_FIELDS[16] = {4, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 21, 22, 23, 24};
static const int D_REFS[7] = {1, 2, 5, 6, 7, 11, 15};
static const int D_INTS[5] = {0, 3, 4, 12, 13};
static const int D_FLAGS[3] = {8, 9, 10};

/* ---- writing ---------------------------------------------------------------------------------- */
typedef struct { unsigned char *p; size_t n, cap; } buf_t;

/* room for n more bytes at b->p + b->n */
static int reserve(buf_t *b, size_t n) {
    if (b->n + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->n + n) cap *= 2;
    unsigned char *q = PyMem_Realloc(b->p, cap);
    if (!q) { PyErr_NoMemory(); return -1; }
    b->p = q; b->cap = cap;
    return 0;
}

static inline void w32(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24); }
static inline void w64(unsigned char *p, int64_t s) { uint64_t v = (uint64_t)s; for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

/* an entry: its tag, a 32-bit number (a length) and n bytes */
static int put_entry(buf_t *b, unsigned char tag, uint32_t num, const void *src, size_t n) {
    if (reserve(b, 5 + n) < 0) return -1;
    unsigned char *p = b->p + b->n;
    p[0] = tag;
    w32(p + 1, num);
    if (src && n) memcpy(p + 5, src, n);
    b->n += 5 + n;
    return 0;
}

typedef struct {
    buf_t table, recs;
    PyObject *index;                      /* value -> its entry's number */
    uint32_t entries;
    /* objects already looked up -> their entry (open addressing by address): most values are the
       tracker's shared objects, met again and again; a miss goes to `index`, by value */
    PyObject **seen;
    uint32_t *seen_at;
    size_t seen_cap, seen_n;
} packer_t;

static inline size_t slot_of(const packer_t *k, PyObject *v) {
    uint64_t h = (uint64_t)(uintptr_t)v * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (k->seen_cap - 1);
}

static int seen_get(const packer_t *k, PyObject *v, uint32_t *out) {
    if (!k->seen_cap) return 0;
    for (size_t i = slot_of(k, v);; i = (i + 1) & (k->seen_cap - 1)) {
        if (k->seen[i] == v) { *out = k->seen_at[i]; return 1; }
        if (!k->seen[i]) return 0;
    }
}

static int seen_put(packer_t *k, PyObject *v, uint32_t at) {
    if (2 * (k->seen_n + 1) > k->seen_cap) {          /* at most half full */
        size_t cap = k->seen_cap ? 2 * k->seen_cap : 4096, old = k->seen_cap;
        PyObject **keys = PyMem_Calloc(cap, sizeof(PyObject *)), **was = k->seen;
        uint32_t *at2 = PyMem_Malloc(cap * sizeof(uint32_t)), *was_at = k->seen_at;
        if (!keys || !at2) { PyMem_Free(keys); PyMem_Free(at2); PyErr_NoMemory(); return -1; }
        k->seen = keys; k->seen_at = at2; k->seen_cap = cap;
        for (size_t i = 0; i < old; i++)
            if (was[i]) {
                size_t j = slot_of(k, was[i]);
                while (keys[j]) j = (j + 1) & (cap - 1);
                keys[j] = was[i]; at2[j] = was_at[i];
            }
        PyMem_Free(was); PyMem_Free(was_at);
    }
    size_t j = slot_of(k, v);
    while (k->seen[j]) j = (j + 1) & (k->seen_cap - 1);
    k->seen[j] = v; k->seen_at[j] = at;
    k->seen_n++;
    return 0;
}

/* an int of a field or table: 0 and *none set for None; UNPACKABLE for anything but an exact int in 64 bits */
static int int_of(PyObject *v, int64_t *out, int *none) {
    *none = 0;
    if (v == Py_None) { *none = 1; *out = 0; return 0; }
    if (!PyLong_CheckExact(v)) return UNPACKABLE;
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) return UNPACKABLE;
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

/* can v go in the table (None, exact str, exact int in 64 bits, exact tuple of those)? */
static int valid(PyObject *v, int depth) {
    if (v == Py_None || PyUnicode_CheckExact(v)) return 0;
    if (PyLong_CheckExact(v)) { int64_t x; int none; return int_of(v, &x, &none); }
    if (!PyTuple_CheckExact(v) || depth >= SP_DEPTH) return UNPACKABLE;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); i++) {
        int r = valid(PyTuple_GET_ITEM(v, i), depth + 1);
        if (r) return r;
    }
    return 0;
}

/* v's reference: its entry, added (after its items') when new; UNPACKABLE unless valid(v). An
   object met before as a field's value is found by its address (`seen`: only fields', so that
   a tuple is always checked as deep as it is); any other is checked to be of plain types
   first ((1.0,) == (1,), but a float is no entry's), then looked up by value: the dict compares
   and hashes only exact str, int and tuples of them, so no Python code runs while packing. */
static int ref_of(packer_t *k, PyObject *v, uint32_t *out, int depth) {
    if (v == Py_None) { *out = SP_NONE; return 0; }
    if (!depth && seen_get(k, v, out)) return 0;
    PyTypeObject *tp = Py_TYPE(v);
    if (tp != &PyUnicode_Type && tp != &PyLong_Type && tp != &PyTuple_Type) return UNPACKABLE;
    if (tp != &PyUnicode_Type) { int r = valid(v, depth); if (r) return r; }   /* before the dict compares it */
    PyObject *have = PyDict_GetItemWithError(k->index, v);
    if (have) {
        *out = (uint32_t)PyLong_AsUnsignedLong(have);
        return depth ? 0 : seen_put(k, v, *out);
    }
    if (PyErr_Occurred()) return -1;
    buf_t *t = &k->table;
    if (tp == &PyUnicode_Type) {
        if (PyUnicode_IS_COMPACT_ASCII(v)) {
            Py_ssize_t n = PyUnicode_GET_LENGTH(v);
            if ((uint64_t)n > 0xFFFFFFFEu) return UNPACKABLE;
            if (put_entry(t, TAG_STR, (uint32_t)n, PyUnicode_DATA(v), (size_t)n) < 0) return -1;
        } else {
            PyObject *b = PyUnicode_AsEncodedString(v, "utf-8", "surrogatepass");
            if (!b) return -1;
            Py_ssize_t n = PyBytes_GET_SIZE(b);
            int r = (uint64_t)n > 0xFFFFFFFEu ? UNPACKABLE : put_entry(t, TAG_STR, (uint32_t)n, PyBytes_AS_STRING(b), (size_t)n);
            Py_DECREF(b);
            if (r) return r;
        }
    } else if (tp == &PyLong_Type) {
        int64_t x; int none;
        int r = int_of(v, &x, &none);
        if (r) return r;
        if (reserve(t, 9) < 0) return -1;
        t->p[t->n] = TAG_INT;
        w64(t->p + t->n + 1, x);
        t->n += 9;
    } else {
        Py_ssize_t n = PyTuple_GET_SIZE(v);
        if ((uint64_t)n > 0xFFFFFFFEu) return UNPACKABLE;
        uint32_t stack[8], *refs = n <= 8 ? stack : PyMem_Malloc(sizeof(uint32_t) * (size_t)n);
        if (!refs) { PyErr_NoMemory(); return -1; }
        int r = 0;
        for (Py_ssize_t i = 0; i < n && !r; i++) r = ref_of(k, PyTuple_GET_ITEM(v, i), &refs[i], depth + 1);
        if (!r && put_entry(t, TAG_TUPLE, (uint32_t)n, NULL, 4 * (size_t)n) < 0) r = -1;
        if (!r) for (Py_ssize_t i = 0; i < n; i++) w32(t->p + t->n - 4 * (size_t)(n - i), refs[i]);
        if (refs != stack) PyMem_Free(refs);
        if (r) return r;
    }
    if (k->entries >= SP_NONE - 1) return UNPACKABLE;
    PyObject *num = PyLong_FromUnsignedLong(k->entries);
    if (!num) return -1;
    int r = PyDict_SetItem(k->index, v, num);
    Py_DECREF(num);
    if (r < 0) return -1;
    *out = k->entries++;
    return depth ? 0 : seen_put(k, v, *out);
}

/* one dialogue's fixed part, after its record's data blocks */
static int pack_dialogue(packer_t *k, PyObject *s, const rtypes_t *ty) {
    if (Py_TYPE(s) != ty->dlg || PyTuple_GET_SIZE(s) != 16 || PyTuple_GET_ITEM(s, 14) != Py_None) return UNPACKABLE;
    uint32_t refs[7];
    int64_t nums[5];
    unsigned char mask = 0, flags = 0;
    for (int i = 0; i < 7; i++) { int r = ref_of(k, PyTuple_GET_ITEM(s, D_REFS[i]), &refs[i], 0); if (r) return r; }
    for (int i = 0; i < 5; i++) {
        int none, r = int_of(PyTuple_GET_ITEM(s, D_INTS[i]), &nums[i], &none);
        if (r) return r;
        mask |= (unsigned char)(none << i);
    }
    for (int i = 0; i < 3; i++) {
        PyObject *f = PyTuple_GET_ITEM(s, D_FLAGS[i]);
        if (f != Py_True && f != Py_False) return UNPACKABLE;
        flags |= (unsigned char)((f == Py_True) << i);
    }
    buf_t *b = &k->recs;
    if (reserve(b, SP_DIALOGUE) < 0) return -1;
    unsigned char *p = b->p + b->n;
    for (int i = 0; i < 7; i++) w32(p + 4 * i, refs[i]);
    for (int i = 0; i < 5; i++) w64(p + 28 + 8 * i, nums[i]);
    p[68] = mask;
    p[69] = flags;
    b->n += SP_DIALOGUE;
    return 0;
}

static int pack_record(packer_t *k, PyObject *c, const rtypes_t *ty) {
    if (Py_TYPE(c) != ty->conn || PyTuple_GET_SIZE(c) != 30) return UNPACKABLE;
    uint32_t refs[10], notes[6];
    int64_t nums[16];
    uint32_t mask = 0;
    PyObject *data[3] = {0};
    int r = 0;
    for (int i = 0; i < 10 && !r; i++) r = ref_of(k, PyTuple_GET_ITEM(c, STR_FIELDS[i]), &refs[i], 0);
    for (int i = 0; i < 16 && !r; i++) {
        int none;
        r = int_of(PyTuple_GET_ITEM(c, INT_FIELDS[i]), &nums[i], &none);
        mask |= (uint32_t)none << i;
    }
    size_t blobs = 0;
    for (int i = 0; i < 3 && !r; i++) {
        PyObject *nb = PyTuple_GET_ITEM(c, 25 + i), *strs;
        if (Py_TYPE(nb) != ty->nb) { r = UNPACKABLE; break; }
        if (!(data[i] = rec_nb_get(nb, 0))) { r = -1; break; }
        if (!PyBytes_CheckExact(data[i]) || (uint64_t)PyBytes_GET_SIZE(data[i]) > 0xFFFFFFFFu
            || PyBytes_GET_SIZE(data[i]) % SP_NOTE) { r = UNPACKABLE; break; }
        if (!(strs = rec_nb_get(nb, 1))) { r = -1; break; }
        r = PyTuple_CheckExact(strs) ? ref_of(k, strs, &notes[2 * i], 0) : UNPACKABLE;
        Py_DECREF(strs);
        notes[2 * i + 1] = (uint32_t)PyBytes_GET_SIZE(data[i]);
        blobs += (size_t)PyBytes_GET_SIZE(data[i]);
    }
    PyObject *s = PyTuple_GET_ITEM(c, 28);
    if (!r && s != Py_None) mask |= 1u << 16;
    buf_t *b = &k->recs;
    if (!r && reserve(b, SP_RECORD + blobs) < 0) r = -1;
    if (!r) {
        unsigned char *p = b->p + b->n;
        for (int i = 0; i < 10; i++) w32(p + 4 * i, refs[i]);
        for (int i = 0; i < 16; i++) w64(p + 40 + 8 * i, nums[i]);
        w32(p + 168, mask);
        for (int i = 0; i < 6; i++) w32(p + 172 + 4 * i, notes[i]);
        p += SP_RECORD;
        for (int i = 0; i < 3; i++) {
            size_t n = (size_t)PyBytes_GET_SIZE(data[i]);
            if (n) memcpy(p, PyBytes_AS_STRING(data[i]), n);
            p += n;
        }
        b->n += SP_RECORD + blobs;
    }
    for (int i = 0; i < 3; i++) Py_XDECREF(data[i]);
    if (!r && s != Py_None) r = pack_dialogue(k, s, ty);
    return r;
}

PyObject *sp_pack_batch(PyObject *mod, PyObject *args) {
    PyObject *batch, *types;
    rtypes_t ty;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &batch, &types) || rec_types(types, &ty) < 0) return NULL;
    PyObject *items = PyList_AsTuple(batch);   /* a snapshot: the list cannot change under the walk */
    if (!items) return NULL;
    /* the buffers of the last batch, kept for the next (no allocation per batch); a call made
       while one is under way (a finalizer that packs, run by the GC) gets buffers of its own */
    static packer_t kept;
    static int busy;
    packer_t k = {{0}, {0}, NULL, 0, NULL, NULL, 0, 0};
    int mine = !busy;
    if (mine) { k = kept; busy = 1; k.table.n = k.recs.n = 0; k.entries = 0; k.seen_n = 0;
                if (k.seen) memset(k.seen, 0, k.seen_cap * sizeof(PyObject *)); }
    PyObject *out = NULL;
    int r = (k.index = PyDict_New()) ? 0 : -1;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (!r && (uint64_t)n > 0xFFFFFFFFu) r = UNPACKABLE;
    for (Py_ssize_t i = 0; i < n && !r; i++) r = pack_record(&k, PyTuple_GET_ITEM(items, i), &ty);
    if (r == UNPACKABLE) { PyErr_Clear(); out = Py_None; Py_INCREF(out); }
    else if (!r) {
        uint64_t body = 4 + (uint64_t)k.table.n + k.recs.n;
        out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(SP_HEADER + body));
        if (out) {
            unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
            memcpy(p, "DSRS", 4);
            p[4] = SP_VERSION; p[5] = SP_FORM_PACKED; p[6] = p[7] = 0;
            w32(p + 8, (uint32_t)n);
            w64(p + 12, (int64_t)body);
            w32(p + 20, k.entries);
            if (k.table.n) memcpy(p + 24, k.table.p, k.table.n);
            if (k.recs.n) memcpy(p + 24 + k.table.n, k.recs.p, k.recs.n);
        }
    }
    Py_CLEAR(k.index);
    if (mine && k.table.cap + k.recs.cap <= (8u << 20)) { kept = k; busy = 0; }   /* kept unless a huge batch grew them */
    else {
        PyMem_Free(k.table.p);
        PyMem_Free(k.recs.p);
        PyMem_Free(k.seen);
        PyMem_Free(k.seen_at);
        if (mine) { memset(&kept, 0, sizeof kept); busy = 0; }
    }
    Py_DECREF(items);
    return out;
}

/* ---- reading ---------------------------------------------------------------------------------- */
typedef struct { const unsigned char *p, *end; } rd_t;

static uint32_t le32(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static int64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return (int64_t)v;
}

static PyObject *damaged(const char *what) {
    PyErr_Format(PyExc_ValueError, "record store: a damaged batch (%s)", what);
    return NULL;
}

/* a reference: a new reference to the value (None for SP_NONE); NULL and ValueError outside the table */
static PyObject *value(PyObject **vals, uint32_t n, uint32_t r) {
    if (r == SP_NONE) Py_RETURN_NONE;
    if (r >= n) return damaged("a reference past the table");
    Py_INCREF(vals[r]);
    return vals[r];
}

static PyObject *drop_all(PyObject **v, int n) {
    for (int i = 0; i < n; i++) Py_XDECREF(v[i]);
    return NULL;
}

static PyObject *read_dialogue(rd_t *in, PyObject **vals, uint32_t nv, const rtypes_t *ty) {
    if (in->end - in->p < SP_DIALOGUE) return damaged("cut short in a dialogue");
    const unsigned char *p = in->p;
    in->p += SP_DIALOGUE;
    unsigned char mask = p[68], flags = p[69];
    if (mask >> 5 || flags >> 3) return damaged("a dialogue's masks");
    PyObject *v[16] = {0};
    for (int i = 0; i < 7; i++) if (!(v[D_REFS[i]] = value(vals, nv, le32(p + 4 * i)))) return drop_all(v, 16);
    for (int i = 0; i < 5; i++) {
        if (mask >> i & 1) { Py_INCREF(Py_None); v[D_INTS[i]] = Py_None; }
        else if (!(v[D_INTS[i]] = PyLong_FromLongLong(le64(p + 28 + 8 * i)))) return drop_all(v, 16);
    }
    for (int i = 0; i < 3; i++) { v[D_FLAGS[i]] = flags >> i & 1 ? Py_True : Py_False; Py_INCREF(v[D_FLAGS[i]]); }
    Py_INCREF(Py_None);
    v[14] = Py_None;
    PyObject *d = ty->dlg->tp_alloc(ty->dlg, 16);
    if (!d) return drop_all(v, 16);
    for (int i = 0; i < 16; i++) PyTuple_SET_ITEM(d, i, v[i]);
    return d;
}

/* one record: every value made first, the record last (no Python code runs while it has NULL items) */
static PyObject *read_record(rd_t *in, PyObject **vals, uint32_t nv, const rtypes_t *ty) {
    if (in->end - in->p < SP_RECORD) return damaged("cut short in a record");
    const unsigned char *p = in->p;
    in->p += SP_RECORD;
    uint32_t mask = le32(p + 168);
    if (mask >> 17) return damaged("a record's mask");
    PyObject *v[30] = {0};
    for (int i = 0; i < 10; i++) if (!(v[STR_FIELDS[i]] = value(vals, nv, le32(p + 4 * i)))) return drop_all(v, 30);
    for (int i = 0; i < 16; i++) {
        if (mask >> i & 1) { Py_INCREF(Py_None); v[INT_FIELDS[i]] = Py_None; }
        else if (!(v[INT_FIELDS[i]] = PyLong_FromLongLong(le64(p + 40 + 8 * i)))) return drop_all(v, 30);
    }
    for (int i = 0; i < 3; i++) {
        uint32_t sr = le32(p + 172 + 8 * i), len = le32(p + 176 + 8 * i);
        if ((uint64_t)(in->end - in->p) < len) { damaged("cut short in notes"); return drop_all(v, 30); }
        if (len % SP_NOTE) { damaged("a note block's length"); return drop_all(v, 30); }
        if (sr >= nv || !PyTuple_CheckExact(vals[sr])) { damaged("notes' strings are not a tuple"); return drop_all(v, 30); }
        PyObject *data = PyBytes_FromStringAndSize((const char *)in->p, len);
        if (!data) return drop_all(v, 30);
        in->p += len;
        v[25 + i] = rec_note_block(ty->nb, data, vals[sr]);
        Py_DECREF(data);
        if (!v[25 + i]) return drop_all(v, 30);
    }
    if (mask >> 16 & 1) { if (!(v[28] = read_dialogue(in, vals, nv, ty))) return drop_all(v, 30); }
    else { Py_INCREF(Py_None); v[28] = Py_None; }
    PyObject *c = ty->conn->tp_alloc(ty->conn, 30);
    if (!c) return drop_all(v, 30);
    for (int i = 0; i < 30; i++) PyTuple_SET_ITEM(c, i, v[i]);
    return c;
}

PyObject *sp_unpack_batch(PyObject *mod, PyObject *args) {
    Py_buffer view;
    PyObject *types;
    rtypes_t ty;
    if (!PyArg_ParseTuple(args, "y*O", &view, &types)) return NULL;
    if (rec_types(types, &ty) < 0) { PyBuffer_Release(&view); return NULL; }
    const unsigned char *p = view.buf;
    Py_ssize_t size = view.len;
    PyObject **vals = NULL, *out = NULL;
    unsigned char *height = NULL;          /* per entry: its tuple levels (0: a str or an int), as the writers bound them */
    uint32_t nv = 0, made = 0;
    int gc_was = 0;
    if (size < SP_HEADER || memcmp(p, "DSRS", 4) || p[4] != SP_VERSION || p[5] != SP_FORM_PACKED) {
        PyErr_SetString(PyExc_ValueError, size < SP_HEADER ? "record store: a batch is cut short (in its header)"
                                                         : "record store: not a packed batch of this version");
        goto done;
    }
    uint32_t count = le32(p + 8);
    uint64_t body = (uint64_t)le64(p + 12);
    if (body != (uint64_t)(size - SP_HEADER)) { PyErr_SetString(PyExc_ValueError, "record store: a batch's length is not what its header says"); goto done; }
    rd_t in = {p + SP_HEADER, p + size};
    if (in.end - in.p < 4) { damaged("no table"); goto done; }
    nv = le32(in.p);
    in.p += 4;
    if ((uint64_t)nv > (uint64_t)(in.end - in.p)) { damaged("more entries than bytes"); goto done; }
    if (!(vals = PyMem_Calloc(nv ? nv : 1, sizeof(PyObject *))) || !(height = PyMem_Calloc(nv ? nv : 1, 1))) {
        PyErr_NoMemory();
        goto done;
    }
    /* no collection while the batch is made: each would only look at the young values and records
       made so far, none of them garbage; the collector runs once after, when it is due */
    gc_was = PyGC_Disable();
    for (; made < nv; made++) {
        if (in.end - in.p < 1) { damaged("cut short in the table"); goto done; }
        unsigned char tag = *in.p++;
        if (tag == TAG_INT) {
            if (in.end - in.p < 8) { damaged("cut short in the table"); goto done; }
            if (!(vals[made] = PyLong_FromLongLong(le64(in.p)))) goto done;
            in.p += 8;
            continue;
        }
        if ((tag != TAG_STR && tag != TAG_TUPLE) || in.end - in.p < 4) { damaged("a table entry"); goto done; }
        uint32_t n = le32(in.p);
        in.p += 4;
        if (tag == TAG_STR) {
            if ((uint64_t)(in.end - in.p) < n) { damaged("cut short in a text"); goto done; }
            if (!(vals[made] = PyUnicode_DecodeUTF8((const char *)in.p, n, "surrogatepass"))) goto done;
            in.p += n;
        } else {
            if ((uint64_t)(in.end - in.p) / 4 < n) { damaged("cut short in a tuple"); goto done; }
            PyObject *t = PyTuple_New(n);
            if (!t) goto done;
            unsigned h = 1;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t r = le32(in.p + 4 * i);
                if (r != SP_NONE && r >= made) { Py_DECREF(t); damaged("a tuple's item after it"); goto done; }
                if (r != SP_NONE && height[r] >= h) h = height[r] + 1u;
                PyObject *x = r == SP_NONE ? Py_None : vals[r];
                Py_INCREF(x);
                PyTuple_SET_ITEM(t, i, x);
            }
            /* deeper than the writers write (SP_DEPTH): a damaged batch, whose record hash() would
               recurse without bound (tuplehash has no guard) */
            if (h > SP_DEPTH) { Py_DECREF(t); damaged("tuples nested deeper than the writers allow"); goto done; }
            height[made] = (unsigned char)h;
            in.p += 4 * (size_t)n;
            vals[made] = t;
        }
    }
    if ((uint64_t)count > (uint64_t)(in.end - in.p) / SP_RECORD) { damaged("more records than bytes"); goto done; }
    if (!(out = PyList_New(count))) goto done;
    PyObject_GC_UnTrack(out);              /* tracked again once every slot is filled */

    for (uint32_t i = 0; i < count; i++) {
        PyObject *c = read_record(&in, vals, nv, &ty);
        if (!c) { Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(out, i, c);
    }
    if (in.p != in.end) { Py_CLEAR(out); damaged("bytes after the last record"); }
    else PyObject_GC_Track(out);
done:
    if (gc_was) PyGC_Enable();
    if (vals) { for (uint32_t i = 0; i < made; i++) Py_XDECREF(vals[i]); PyMem_Free(vals); }
    PyMem_Free(height);
    PyBuffer_Release(&view);
    return out;
}
