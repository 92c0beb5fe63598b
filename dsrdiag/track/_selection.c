/* Replacement selection: the C peer of track/selection.py SelectionPy, which defines the rule, the
 * interface (add_all, held, len) and says why. Both give the same records in the same order with
 * RUN_END (None) at the same places for the same input (tests/test_selection.py, on both).
 *
 * Why in C: the selection takes every record a capture has, one heap step each; in Python that
 * was ~0.5 s of a 200k-session analysis of ~4.5 s. Here a record costs two attribute reads (its
 * key: first_ts_ns, uid) and a sift of a binary heap of plain structs.
 *
 * A key is (first_ts_ns, uid, arrival): times that fit 64 bits compare as integers, others (and
 * uids that are not str) through Python's comparison, as the reference compares them; arrival
 * makes records of equal (time, uid) leave in the order they came, as in the reference. A
 * comparison that raises leaves the selection unusable (the sink that owns it is abandoned).
 */
#include "_selection.h"
#include <stdint.h>
#include <limits.h>

typedef struct {
    PyObject *rec, *ts, *uid;   /* owned */
    int64_t t;
    uint64_t seq;
    int fits;                    /* ts is an exact int within 64 bits: t holds it */
} ent_t;

typedef struct {
    PyObject_HEAD
    ent_t *heap, *later;
    Py_ssize_t n, cap, nl, capl, size;
    int full, has_last;
    ent_t last;                  /* the key of the record last written to the current run (ts, uid owned) */
    uint64_t seq;
} Sel;

static PyObject *s_first_ts_ns, *s_uid;
#define CMP_ERR INT_MIN

static int cmp_obj(PyObject *a, PyObject *b) {
    int lt = PyObject_RichCompareBool(a, b, Py_LT);
    if (lt < 0) return CMP_ERR;
    if (lt) return -1;
    int gt = PyObject_RichCompareBool(a, b, Py_GT);
    return gt < 0 ? CMP_ERR : gt;
}

/* (ts, uid) of a against b's: <0, 0, >0, or CMP_ERR */
static int cmp_key(const ent_t *a, const ent_t *b) {
    if (a->fits && b->fits) {
        if (a->t != b->t) return a->t < b->t ? -1 : 1;
    } else if (a->ts != b->ts) {
        int c = cmp_obj(a->ts, b->ts);
        if (c) return c;
    }
    if (a->uid == b->uid) return 0;
    if (PyUnicode_CheckExact(a->uid) && PyUnicode_CheckExact(b->uid)) {
        int c = PyUnicode_Compare(a->uid, b->uid);
        return c == -1 && PyErr_Occurred() ? CMP_ERR : c;
    }
    return cmp_obj(a->uid, b->uid);
}

/* a before b in the heap (key, then arrival): 1, 0, or -1 on error */
static int before(const ent_t *a, const ent_t *b) {
    int c = cmp_key(a, b);
    if (c == CMP_ERR) return -1;
    return c < 0 || (c == 0 && a->seq < b->seq);
}

static int sift_up(ent_t *h, Py_ssize_t i) {
    ent_t e = h[i];
    while (i > 0) {
        Py_ssize_t p = (i - 1) / 2;
        int b = before(&e, &h[p]);
        if (b < 0) { h[i] = e; return -1; }
        if (!b) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
    return 0;
}

static int sift_down(ent_t *h, Py_ssize_t n, Py_ssize_t i) {
    ent_t e = h[i];
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n) {
            int b = before(&h[c + 1], &h[c]);
            if (b < 0) { h[i] = e; return -1; }
            if (b) c++;
        }
        int b = before(&h[c], &e);
        if (b < 0) { h[i] = e; return -1; }
        if (!b) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
    return 0;
}

static int grow(ent_t **a, Py_ssize_t *cap, Py_ssize_t need) {
    if (need <= *cap) return 0;
    Py_ssize_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    ent_t *q = PyMem_Realloc(*a, (size_t)c * sizeof(ent_t));
    if (!q) { PyErr_NoMemory(); return -1; }
    *a = q;
    *cap = c;
    return 0;
}

static void ent_clear(ent_t *e) { Py_CLEAR(e->rec); Py_CLEAR(e->ts); Py_CLEAR(e->uid); }

/* the entry of a record: its key read as the reference reads it (attributes) */
static int ent_make(Sel *s, PyObject *rec, ent_t *e) {
    e->rec = e->ts = e->uid = NULL;
    if (!(e->ts = PyObject_GetAttr(rec, s_first_ts_ns)) || !(e->uid = PyObject_GetAttr(rec, s_uid))) {
        Py_CLEAR(e->ts);
        return -1;
    }
    e->fits = 0;
    if (PyLong_CheckExact(e->ts)) {
        int over;
        long long v = PyLong_AsLongLongAndOverflow(e->ts, &over);
        if (v == -1 && PyErr_Occurred()) { ent_clear(e); return -1; }
        if (!over) { e->t = v; e->fits = 1; }
    }
    Py_INCREF(rec);
    e->rec = rec;
    e->seq = s->seq++;
    return 0;
}

/* the record leaving memory: to `out` (its key becomes the last written); the entry is spent */
static int emit(Sel *s, ent_t *e, PyObject *out) {
    int r = PyList_Append(out, e->rec);
    Py_CLEAR(e->rec);
    Py_XDECREF(s->last.ts);
    Py_XDECREF(s->last.uid);
    s->last = *e;                /* takes ts and uid */
    s->has_last = 1;
    e->ts = e->uid = NULL;
    return r;
}

static PyObject *Sel_add_all(Sel *s, PyObject *records) {
    PyObject *seq = PySequence_Fast(records, "add_all: records must be a sequence");
    if (!seq) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) { Py_DECREF(seq); return NULL; }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        ent_t e;
        if (ent_make(s, PySequence_Fast_GET_ITEM(seq, i), &e) < 0) goto fail;
        if (!s->full) {
            if (grow(&s->heap, &s->cap, s->n + 1) < 0) { ent_clear(&e); goto fail; }
            s->heap[s->n++] = e;
            if (sift_up(s->heap, s->n - 1) < 0) goto fail;
            s->full = s->n >= s->size;
            continue;
        }
        ent_t gone;
        int late = 0;
        if (s->has_last) {
            int c = cmp_key(&e, &s->last);
            if (c == CMP_ERR) { ent_clear(&e); goto fail; }
            late = c < 0;
        }
        if (late) {   /* after the current run: it sorts before what it holds */
            if (grow(&s->later, &s->capl, s->nl + 1) < 0) { ent_clear(&e); goto fail; }
            s->later[s->nl++] = e;
            gone = s->heap[0];
            s->heap[0] = s->heap[--s->n];
            if (s->n && sift_down(s->heap, s->n, 0) < 0) { s->heap[s->n++] = gone; goto fail; }
        } else {      /* push e, pop the smallest (heappushpop) */
            int b = s->n ? before(&s->heap[0], &e) : 0;
            if (b < 0) { ent_clear(&e); goto fail; }
            if (b) {
                gone = s->heap[0];
                s->heap[0] = e;
                if (sift_down(s->heap, s->n, 0) < 0) { ent_clear(&gone); goto fail; }
            } else gone = e;
        }
        if (emit(s, &gone, out) < 0) goto fail;
        if (!s->n) {  /* everything in memory waits for the next run */
            if (PyList_Append(out, Py_None) < 0) goto fail;
            s->has_last = 0;
            Py_CLEAR(s->last.ts);
            Py_CLEAR(s->last.uid);
            ent_t *t = s->heap; Py_ssize_t tc = s->cap;
            s->heap = s->later; s->cap = s->capl; s->n = s->nl;
            s->later = t; s->capl = tc; s->nl = 0;
            for (Py_ssize_t k = s->n / 2 - 1; k >= 0; k--)
                if (sift_down(s->heap, s->n, k) < 0) goto fail;
        }
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

static PyObject *Sel_held(Sel *s, PyObject *unused) {
    PyObject *out = PyList_New(s->n + s->nl);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < s->n; i++) { Py_INCREF(s->heap[i].rec); PyList_SET_ITEM(out, i, s->heap[i].rec); }
    for (Py_ssize_t i = 0; i < s->nl; i++) { Py_INCREF(s->later[i].rec); PyList_SET_ITEM(out, s->n + i, s->later[i].rec); }
    return out;
}

static Py_ssize_t Sel_len(Sel *s) { return s->n + s->nl; }

static int Sel_init(Sel *s, PyObject *args, PyObject *kw) {
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "n", &size)) return -1;
    if (size < 1) { PyErr_SetString(PyExc_ValueError, "a selection holds at least one record"); return -1; }
    if (!s_first_ts_ns && !(s_first_ts_ns = PyUnicode_InternFromString("first_ts_ns"))) return -1;
    if (!s_uid && !(s_uid = PyUnicode_InternFromString("uid"))) return -1;
    if (s->n || s->nl || s->has_last) { PyErr_SetString(PyExc_RuntimeError, "a Selection is made once"); return -1; }
    s->size = size;
    return 0;
}

static int Sel_traverse(Sel *s, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; i < s->n; i++) { Py_VISIT(s->heap[i].rec); Py_VISIT(s->heap[i].ts); Py_VISIT(s->heap[i].uid); }
    for (Py_ssize_t i = 0; i < s->nl; i++) { Py_VISIT(s->later[i].rec); Py_VISIT(s->later[i].ts); Py_VISIT(s->later[i].uid); }
    Py_VISIT(s->last.ts);
    Py_VISIT(s->last.uid);
    return 0;
}

static int Sel_clear(Sel *s) {
    for (Py_ssize_t i = 0; i < s->n; i++) ent_clear(&s->heap[i]);
    for (Py_ssize_t i = 0; i < s->nl; i++) ent_clear(&s->later[i]);
    s->n = s->nl = 0;
    Py_CLEAR(s->last.ts);
    Py_CLEAR(s->last.uid);
    s->has_last = 0;
    return 0;
}

static void Sel_dealloc(Sel *s) {
    PyObject_GC_UnTrack(s);
    Sel_clear(s);
    PyMem_Free(s->heap);
    PyMem_Free(s->later);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *Sel_get_size(Sel *s, void *c) { return PyLong_FromSsize_t(s->size); }

static PyMethodDef Sel_methods[] = {
    {"add_all", (PyCFunction)Sel_add_all, METH_O, "add_all(records): the records leaving memory in order, None where a run ends"},
    {"held", (PyCFunction)Sel_held, METH_NOARGS, "held(): every record still in memory (in no particular order)"},
    {NULL}
};
static PyGetSetDef Sel_getset[] = {{"size", (getter)Sel_get_size, NULL, "records held at most", NULL}, {NULL}};
static PySequenceMethods Sel_seq = {.sq_length = (lenfunc)Sel_len};

PyTypeObject SelectionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsrdiag.track._conntrack.Selection",
    .tp_basicsize = sizeof(Sel),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Selection(size): replacement selection (track/selection.py's SelectionPy, in C)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sel_init,
    .tp_dealloc = (destructor)Sel_dealloc,
    .tp_traverse = (traverseproc)Sel_traverse,
    .tp_clear = (inquiry)Sel_clear,
    .tp_methods = Sel_methods,
    .tp_getset = Sel_getset,
    .tp_as_sequence = &Sel_seq,
};
