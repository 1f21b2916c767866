/* _core.Interventions: a checked, immutable copy of a list of interventions (models/interventions.h)
 * that forward and generate calls read without the GIL (py_interventions.c). */
#ifndef PYLLM_PYTHON_PY_INTERVENTIONS_H
#define PYLLM_PYTHON_PY_INTERVENTIONS_H

#include "python/common.h"

#include "models/interventions.h"

/* The C list of obj (borrowed: valid while obj lives), NULL for None; -1 with TypeError for any
 * other object. */
int pyllm_interventions_of(PyObject *obj, const pyllm_intervention_list **list);

/* Adds the Interventions type to the module (called by pyllm_register_model). */
int pyllm_register_interventions(PyObject *module);

#endif
