/* Training loops (src/_train.pyx): optimiser steps, clipping and the char-RNN
 * step's elementwise passes, for double (_d) and float (_f), compiled like the
 * elementwise kernels (cloned for x86-64-v3/v4 where supported). */
#ifndef CYRNN_TRAIN_H
#define CYRNN_TRAIN_H

#include <math.h>
#include "cyrnn_elementwise.h"

#define REAL double
#define SFX(name) name##_d
#define TANH cyrnn_tanh_d
#define SQRT sqrt
#include "cyrnn_train_impl.h"
#undef REAL
#undef SFX
#undef TANH
#undef SQRT

#define REAL float
#define SFX(name) name##_f
#define TANH cyrnn_tanh_f
#define SQRT sqrtf
#include "cyrnn_train_impl.h"
#undef REAL
#undef SFX
#undef TANH
#undef SQRT

#endif
