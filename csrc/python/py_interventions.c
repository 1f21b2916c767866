/* Interventions(items, hidden): items a sequence of (layer, site, replace, positions, values)
 * with positions None or int64 [n] and values float32 [n_values, hidden]. The arrays are copied
 * into arrays this object owns, so the caller may change its own afterwards and calls read them
 * with the GIL released. pyllm/interventions.py checks the user's arguments and builds it. */
#include "python/py_interventions.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    pyllm_intervention_list list;
    pyllm_intervention *items;
    PyObject *arrays; /* a list holding the positions and values arrays the items point into */
} InterventionsObject;

static void interventions_dealloc(InterventionsObject *self)
{
    PyMem_Free(self->items);
    Py_XDECREF(self->arrays);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A private C-contiguous copy of obj as `type` with ndim dimensions, kept alive by arrays. */
static PyArrayObject *owned_copy(PyObject *obj, int type, int ndim, PyObject *arrays)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, type, ndim, ndim,
                                                         NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED |
                                                             NPY_ARRAY_ENSURECOPY | NPY_ARRAY_FORCECAST);
    if (a == NULL)
        return NULL;
    if (PyList_Append(arrays, (PyObject *)a) < 0) {
        Py_DECREF(a);
        return NULL;
    }
    Py_DECREF(a); /* the list holds it */
    return a;
}

static int fill_item(InterventionsObject *self, Py_ssize_t k, PyObject *tuple, int64_t hidden)
{
    long long layer;
    int site, replace;
    PyObject *positions, *values;
    if (!PyArg_ParseTuple(tuple, "LipOO:Interventions item", &layer, &site, &replace, &positions, &values))
        return -1;
    pyllm_intervention *it = &self->items[k];
    it->layer = layer;
    it->site = (pyllm_site)site;
    it->replace = replace;
    it->n_positions = 0;
    it->positions = NULL;
    if (positions != Py_None) {
        PyArrayObject *p = owned_copy(positions, NPY_INT64, 1, self->arrays);
        if (p == NULL)
            return -1;
        it->n_positions = PyArray_DIM(p, 0);
        it->positions = PyArray_DATA(p);
    }
    PyArrayObject *v = owned_copy(values, NPY_FLOAT32, 2, self->arrays);
    if (v == NULL)
        return -1;
    if (PyArray_DIM(v, 1) != hidden) {
        PyErr_Format(PyExc_ValueError, "interventions[%zd]: values have %lld columns, expected hidden=%lld", k,
                     (long long)PyArray_DIM(v, 1), (long long)hidden);
        return -1;
    }
    it->n_values = PyArray_DIM(v, 0);
    it->values = PyArray_DATA(v);
    if (site >= 0 && site < PYLLM_SITE_COUNT)
        self->list.at[site] = 1;
    return 0;
}

static PyObject *interventions_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"items", "hidden", NULL};
    PyObject *items_obj;
    long long hidden;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OL:Interventions", kwlist, &items_obj, &hidden))
        return NULL;
    PyObject *seq = PySequence_Fast(items_obj, "items must be a sequence");
    if (seq == NULL)
        return NULL;
    InterventionsObject *self = (InterventionsObject *)type->tp_alloc(type, 0);
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (self == NULL)
        goto fail;
    memset(&self->list, 0, sizeof self->list);
    self->arrays = PyList_New(0);
    self->items = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(pyllm_intervention));
    if (self->arrays == NULL || self->items == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    self->list.hidden = hidden;
    for (Py_ssize_t k = 0; k < n; k++)
        if (fill_item(self, k, PySequence_Fast_GET_ITEM(seq, k), hidden) < 0)
            goto fail;
    self->list.n = n;
    self->list.items = self->items;
    pyllm_status st = pyllm_interventions_check(&self->list, INT64_MAX, hidden);
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto fail;
    }
    Py_DECREF(seq);
    return (PyObject *)self;
fail:
    Py_DECREF(seq);
    Py_XDECREF(self);
    return NULL;
}

static PyObject *interventions_len(InterventionsObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong((long long)self->list.n);
}

static PyGetSetDef interventions_getset[] = {
    {"count", (getter)interventions_len, NULL, "Interventions held.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject InterventionsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyllm._core.Interventions",
    .tp_basicsize = sizeof(InterventionsObject),
    .tp_dealloc = (destructor)interventions_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Interventions(items, hidden): the C form of a list of pyllm.Intervention.",
    .tp_new = interventions_new,
    .tp_getset = interventions_getset,
};

int pyllm_interventions_of(PyObject *obj, const pyllm_intervention_list **list)
{
    *list = NULL;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (!PyObject_TypeCheck(obj, &InterventionsType)) {
        PyErr_Format(PyExc_TypeError, "interventions must be a pyllm._core.Interventions, got %s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *list = &((InterventionsObject *)obj)->list;
    return 0;
}

int pyllm_register_interventions(PyObject *module)
{
    if (PyType_Ready(&InterventionsType) < 0)
        return -1;
    Py_INCREF(&InterventionsType);
    if (PyModule_AddObject(module, "Interventions", (PyObject *)&InterventionsType) < 0) {
        Py_DECREF(&InterventionsType);
        return -1;
    }
    return 0;
}
