/* The record store's packed batches (track/_storepack.c, the peer of track/packed.py), compiled
   into _conntrack: what it needs of _conntrack.c (the record types, NoteBlock's slots) and what it
   gives (the module's pack_batch / unpack_batch). */
#ifndef DSRDIAG_STOREPACK_H
#define DSRDIAG_STOREPACK_H
#include <Python.h>

typedef struct { PyTypeObject *conn, *nb, *dlg; } rtypes_t;

/* from _conntrack.c */
int rec_types(PyObject *types, rtypes_t *ty);                          /* (Connection, NoteBlock, SmtpDialogue), checked */
PyObject *rec_nb_get(PyObject *b, int i);                                /* NoteBlock slot 0 _data / 1 _strs: new reference */
PyObject *rec_note_block(PyTypeObject *tp, PyObject *data, PyObject *strs); /* NoteBlock(data, strs) (borrowed) */

/* from _storepack.c */
PyObject *sp_pack_batch(PyObject *mod, PyObject *args);
PyObject *sp_unpack_batch(PyObject *mod, PyObject *args);
#endif
