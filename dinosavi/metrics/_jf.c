/* DAVIS J and F of (ground-truth object, predicted object) pairs, one pass per frame, in C.
 *
 * The same definitions as dinosavi/metrics/davis.py (and the official toolkit): J is the IoU of the
 * two binary masks (1 when the union is empty); F matches the one-pixel seg2bmap boundaries of the
 * two masks within the disk x*x + y*y <= r*r (cv2.dilate with skimage.morphology.disk), with the
 * toolkit's conventions for empty boundaries. Ground-truth ids above num_gt (void 255 included) and
 * predicted ids above num_pred count as background.
 *
 * Per frame: one pass over 8-pixel words gives the confusion counts and the box of non-zero ids;
 * a second pass over that box (plus the one-pixel rim up and left) finds the pixels whose own, east,
 * south and south-east ids differ and sets them in one boundary bit plane per object; a boundary
 * pixel matches when any bit of the other plane lies in the disk around it (rows of the disk are bit
 * spans, tested centre row first). The interpreter lock is released while it runs.
 *
 * Python: jf_pairs(gt, pred, pairs, num_gt, num_pred, radius, j_out, f_out) -> None
 *   gt, pred: (T, H, W) uint8 C-contiguous buffers; pairs: (N, 2) int32 (gt id, pred id), ids >= 1;
 *   j_out, f_out: (N, T) float64 C-contiguous writable buffers, filled.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__ || !defined(__GNUC__)
#error "the J/F kernel needs GCC or Clang on a little-endian machine; the torch path is used instead"
#endif

typedef struct {
    int T, H, W, K, P, radius;
    Py_ssize_t n_pairs;
    const uint8_t *gt, *pred;
    const int32_t *pairs;
    double *j, *f;
} Job;

static inline uint64_t load8(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline int map_id(int v, int top) { return v > top ? 0 : v; }

/* Set bit (y, x) in the plane of every distinct non-zero id among the four. */
static inline void mark(uint64_t *planes, int64_t *counts, size_t plane_words, int row_words, int y, int x, int a,
                        int e, int s, int se) {
    int ids[4] = {a, e, s, se};
    for (int i = 0; i < 4; i++) {
        int v = ids[i];
        if (v == 0) continue;
        int seen = 0;
        for (int k = 0; k < i; k++) seen |= ids[k] == v;
        if (seen) continue;
        planes[(size_t)(v - 1) * plane_words + (size_t)y * row_words + (x >> 6)] |= (uint64_t)1 << (x & 63);
        counts[v - 1]++;
    }
}

/* High bit of each byte of x that is non-zero (exact: no carries between bytes). */
static inline uint64_t nonzero_bytes(uint64_t x) {
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL;
    return (((x & low7) + low7) | x) & ~low7;
}

static inline void boundary_pixel(const uint8_t *row, const uint8_t *below, int W, int top, int x, int y, int rx0,
                                  uint64_t *planes, int64_t *counts, size_t plane_words, int row_words) {
    int a = map_id(row[x], top);
    int east = x + 1 < W;
    int e = east ? map_id(row[x + 1], top) : a; /* edge replication at the last column / row */
    int s = below != NULL ? map_id(below[x], top) : a;
    int se = below != NULL ? (east ? map_id(below[x + 1], top) : s) : e;
    if (a == e && a == s && a == se) return;
    mark(planes, counts, plane_words, row_words, y, x - rx0, a, e, s, se);
}

/* Boundary bit planes of one id map, rows ry0..ry1, planes' origin (ry0, rx0). Row y is scanned over the
 * columns whose pixel or east neighbour holds an object in row y or y + 1 (extents lo/hi, row H empty).
 * Eight pixels at a time, the bytes that differ from their E, S or SE neighbour are found by word
 * operations; only those are looked at one by one. */
static void boundaries(const uint8_t *m, int H, int W, int top, int ry0, int ry1, int rx0, const int *lo,
                       const int *hi, uint64_t *planes, int64_t *counts, size_t plane_words, int row_words) {
    for (int y = ry0; y <= ry1; y++) {
        int xa = lo[y] < lo[y + 1] ? lo[y] : lo[y + 1], xb = hi[y] > hi[y + 1] ? hi[y] : hi[y + 1];
        if (xb < 0) continue;
        xa = xa > 0 ? xa - 1 : 0;
        const uint8_t *row = m + (size_t)y * W;
        const uint8_t *below = y + 1 < H ? row + W : NULL;
        int x = xa;
        if (below != NULL) {
            for (; x + 8 < W && x <= xb; x += 8) {
                uint64_t c = load8(row + x);
                uint64_t d = nonzero_bytes(c ^ load8(row + x + 1)) | nonzero_bytes(c ^ load8(below + x)) |
                             nonzero_bytes(c ^ load8(below + x + 1));
                while (d) { /* little-endian: byte i is pixel x + i */
                    int i = x + (__builtin_ctzll(d) >> 3);
                    d &= d - 1;
                    if (i <= xb)
                        boundary_pixel(row, below, W, top, i, y - ry0, rx0, planes, counts, plane_words, row_words);
                }
            }
        }
        for (; x <= xb; x++) boundary_pixel(row, below, W, top, x, y - ry0, rx0, planes, counts, plane_words, row_words);
    }
}

/* Any bit of row in columns xa..xb (inclusive, xa <= xb). */
static inline int span_any(const uint64_t *row, int xa, int xb) {
    int wa = xa >> 6, wb = xb >> 6;
    uint64_t lo = ~(uint64_t)0 << (xa & 63);
    uint64_t hi = ~(uint64_t)0 >> (63 - (xb & 63));
    if (wa == wb) return (row[wa] & lo & hi) != 0;
    if (row[wa] & lo) return 1;
    for (int w = wa + 1; w < wb; w++)
        if (row[w]) return 1;
    return (row[wb] & hi) != 0;
}

/* Bits of plane a with a bit of plane b in the disk of half widths hw[0..r] around them. */
static int64_t matched(const uint64_t *a, const uint64_t *b, int rows, int cols, int row_words, const int *hw, int r) {
    int64_t count = 0;
    for (int y = 0; y < rows; y++) {
        const uint64_t *arow = a + (size_t)y * row_words;
        for (int w = 0; w < row_words; w++) {
            uint64_t bits = arow[w];
            while (bits) {
                int x = (w << 6) + __builtin_ctzll(bits);
                bits &= bits - 1;
                int hit = 0;
                for (int d = 0; d <= r && !hit; d++) {
                    int xa = x - hw[d] < 0 ? 0 : x - hw[d];
                    int xb = x + hw[d] > cols - 1 ? cols - 1 : x + hw[d];
                    if (y + d < rows && span_any(b + (size_t)(y + d) * row_words, xa, xb)) hit = 1;
                    else if (d > 0 && y - d >= 0 && span_any(b + (size_t)(y - d) * row_words, xa, xb)) hit = 1;
                }
                count += hit;
            }
        }
    }
    return count;
}

static double f_measure(int64_t n_pred, int64_t n_gt, int64_t pred_match, int64_t gt_match) {
    double precision, recall;
    if (n_pred == 0 && n_gt > 0) {
        precision = 1.0;
        recall = 0.0;
    } else if (n_pred > 0 && n_gt == 0) {
        precision = 0.0;
        recall = 1.0;
    } else if (n_pred == 0 && n_gt == 0) {
        precision = 1.0;
        recall = 1.0;
    } else {
        precision = (double)pred_match / (double)n_pred;
        recall = (double)gt_match / (double)n_gt;
    }
    if (precision + recall == 0) return 0.0;
    return 2 * precision * recall / (precision + recall);
}

/* Widen row y's extent of non-zero ids to columns a..b. */
static inline void extend(int *lo, int *hi, int y, int a, int b) {
    if (lo[y] > a) lo[y] = a;
    if (hi[y] < b) hi[y] = b;
}

static inline void count_pixel(int64_t *conf, int M, int g, int p, int K, int P, int y, int x, int *g_lo, int *g_hi,
                               int *p_lo, int *p_hi) {
    int gi = map_id(g, K), pi = map_id(p, P);
    if ((gi | pi) == 0) return;
    conf[gi * M + pi]++;
    if (gi) extend(g_lo, g_hi, y, x, x);
    if (pi) extend(p_lo, p_hi, y, x, x);
}

static int run(const Job *job) {
    const int T = job->T, H = job->H, W = job->W, K = job->K, P = job->P, r = job->radius;
    const int M = P + 1;
    const int max_words = (W + 63) / 64;
    const size_t plane_words = (size_t)H * max_words;
    int64_t *conf = malloc(sizeof(int64_t) * (size_t)(K + 1) * M);
    int64_t *n_g = malloc(sizeof(int64_t) * (size_t)(K > 0 ? K : 1));
    int64_t *n_p = malloc(sizeof(int64_t) * (size_t)(P > 0 ? P : 1));
    uint64_t *g_planes = calloc((size_t)(K > 0 ? K : 1) * plane_words, sizeof(uint64_t));
    uint64_t *p_planes = calloc((size_t)(P > 0 ? P : 1) * plane_words, sizeof(uint64_t));
    int *hw = malloc(sizeof(int) * (size_t)(r + 1));
    int *extents = malloc(sizeof(int) * 4 * (size_t)(H + 1)); /* per row: first and last non-zero column */
    int ok = conf && n_g && n_p && g_planes && p_planes && hw && extents;
    int *g_lo = extents, *g_hi = g_lo + H + 1, *p_lo = g_hi + H + 1, *p_hi = p_lo + H + 1;
    if (ok) {
        for (int d = 0; d <= r; d++) {
            int w = 0;
            while ((int64_t)(w + 1) * (w + 1) + (int64_t)d * d <= (int64_t)r * r) w++;
            hw[d] = w;
        }
    }
    for (int t = 0; ok && t < T; t++) {
        const uint8_t *g = job->gt + (size_t)t * H * W, *p = job->pred + (size_t)t * H * W;
        memset(conf, 0, sizeof(int64_t) * (size_t)(K + 1) * M);
        memset(n_g, 0, sizeof(int64_t) * (size_t)(K > 0 ? K : 1));
        memset(n_p, 0, sizeof(int64_t) * (size_t)(P > 0 ? P : 1));
        for (int y = 0; y <= H; y++) g_lo[y] = p_lo[y] = W, g_hi[y] = p_hi[y] = -1; /* row H: empty */
        for (int y = 0; y < H; y++) {
            const uint8_t *gr = g + (size_t)y * W, *pr = p + (size_t)y * W;
            int x = 0;
            while (x + 8 <= W) {
                if (x + 32 <= W && (load8(gr + x) | load8(gr + x + 8) | load8(gr + x + 16) | load8(gr + x + 24) |
                                    load8(pr + x) | load8(pr + x + 8) | load8(pr + x + 16) | load8(pr + x + 24)) == 0) {
                    x += 32; /* background in both maps */
                    continue;
                }
                uint64_t gw = load8(gr + x), pw = load8(pr + x);
                x += 8;
                if ((gw | pw) == 0) continue;
                int x8 = x - 8;
                uint64_t gb = gr[x8] * (uint64_t)0x0101010101010101, pb = pr[x8] * (uint64_t)0x0101010101010101;
                if (gw == gb && pw == pb) { /* eight equal pairs */
                    int gi = map_id(gr[x8], K), pi = map_id(pr[x8], P);
                    conf[gi * M + pi] += 8;
                    if (gi) extend(g_lo, g_hi, y, x8, x8 + 7);
                    if (pi) extend(p_lo, p_hi, y, x8, x8 + 7);
                    continue;
                }
                for (int i = x8; i < x; i++) count_pixel(conf, M, gr[i], pr[i], K, P, y, i, g_lo, g_hi, p_lo, p_hi);
            }
            for (; x < W; x++) count_pixel(conf, M, gr[x], pr[x], K, P, y, x, g_lo, g_hi, p_lo, p_hi);
        }
        /* the planes cover the box of both maps' objects, grown by one pixel up and left (those
         * pixels see the objects as E/S/SE neighbours) */
        int y0 = H, y1 = -1, x0 = W, x1 = -1;
        for (int y = 0; y < H; y++) {
            int lo = g_lo[y] < p_lo[y] ? g_lo[y] : p_lo[y], hi = g_hi[y] > p_hi[y] ? g_hi[y] : p_hi[y];
            if (hi < 0) continue;
            if (y0 > y) y0 = y;
            y1 = y;
            if (x0 > lo) x0 = lo;
            if (x1 < hi) x1 = hi;
        }
        int rows = 0, cols = 0, row_words = 0;
        if (y1 >= 0) {
            int ry0 = y0 > 0 ? y0 - 1 : 0, rx0 = x0 > 0 ? x0 - 1 : 0;
            rows = y1 - ry0 + 1;
            cols = x1 - rx0 + 1;
            row_words = (cols + 63) / 64;
            boundaries(g, H, W, K, ry0, y1, rx0, g_lo, g_hi, g_planes, n_g, plane_words, row_words);
            boundaries(p, H, W, P, ry0, y1, rx0, p_lo, p_hi, p_planes, n_p, plane_words, row_words);
        }
        for (Py_ssize_t n = 0; n < job->n_pairs; n++) {
            int k = job->pairs[2 * n], q = job->pairs[2 * n + 1];
            int64_t inter = conf[k * M + q], area_g = 0, area_p = 0;
            for (int i = 0; i < M; i++) area_g += conf[k * M + i];
            for (int i = 0; i <= K; i++) area_p += conf[i * M + q];
            int64_t uni = area_g + area_p - inter;
            job->j[n * T + t] = uni == 0 ? 1.0 : (double)inter / (double)uni;
            int64_t ng = n_g[k - 1], np_ = n_p[q - 1], pm = 0, gm = 0;
            if (ng > 0 && np_ > 0) {
                const uint64_t *gp = g_planes + (size_t)(k - 1) * plane_words;
                const uint64_t *pp = p_planes + (size_t)(q - 1) * plane_words;
                pm = matched(pp, gp, rows, cols, row_words, hw, r);
                gm = matched(gp, pp, rows, cols, row_words, hw, r);
            }
            job->f[n * T + t] = f_measure(np_, ng, pm, gm);
        }
        for (int k = 0; k < K; k++)
            if (n_g[k]) memset(g_planes + (size_t)k * plane_words, 0, sizeof(uint64_t) * (size_t)rows * row_words);
        for (int q = 0; q < P; q++)
            if (n_p[q]) memset(p_planes + (size_t)q * plane_words, 0, sizeof(uint64_t) * (size_t)rows * row_words);
    }
    free(conf);
    free(n_g);
    free(n_p);
    free(g_planes);
    free(p_planes);
    free(hw);
    free(extents);
    return ok;
}

static int get(PyObject *obj, Py_buffer *view, int flags, const char *name, int ndim, Py_ssize_t itemsize) {
    if (PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return 0;
    if (view->ndim != ndim || view->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "jf_pairs: `%s` must be a %d-D array of %zd-byte items, got %d-D of %zd",
                     name, ndim, itemsize, view->ndim, view->itemsize);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

static PyObject *jf_pairs(PyObject *self, PyObject *args) {
    PyObject *gt_obj, *pred_obj, *pairs_obj, *j_obj, *f_obj;
    int K, P, radius;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOiiiOO", &gt_obj, &pred_obj, &pairs_obj, &K, &P, &radius, &j_obj, &f_obj))
        return NULL;
    Py_buffer views[5];
    int held = 0;
    PyObject *result = NULL;
    if (!get(gt_obj, &views[0], PyBUF_SIMPLE, "gt", 3, 1)) goto done;
    held++;
    if (!get(pred_obj, &views[1], PyBUF_SIMPLE, "pred", 3, 1)) goto done;
    held++;
    if (!get(pairs_obj, &views[2], PyBUF_SIMPLE, "pairs", 2, 4)) goto done;
    held++;
    if (!get(j_obj, &views[3], PyBUF_WRITABLE, "j_out", 2, 8)) goto done;
    held++;
    if (!get(f_obj, &views[4], PyBUF_WRITABLE, "f_out", 2, 8)) goto done;
    held++;
    Py_ssize_t *s = views[0].shape, N = views[2].shape[0];
    if (views[1].shape[0] != s[0] || views[1].shape[1] != s[1] || views[1].shape[2] != s[2] ||
        views[2].shape[1] != 2) {
        PyErr_SetString(PyExc_ValueError, "jf_pairs: `gt` and `pred` must have one shape, `pairs` be (N, 2)");
        goto done;
    }
    for (int i = 3; i < 5; i++) {
        if (views[i].shape[0] != N || views[i].shape[1] != s[0]) {
            PyErr_SetString(PyExc_ValueError, "jf_pairs: `j_out` and `f_out` must be (N, T)");
            goto done;
        }
    }
    if (K < 0 || K > 255 || P < 0 || P > 255 || radius < 0 || s[0] > INT_MAX || s[1] > INT_MAX || s[2] > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "jf_pairs: num_gt and num_pred must lie in 0..255, radius be >= 0");
        goto done;
    }
    const int32_t *pairs = views[2].buf;
    for (Py_ssize_t n = 0; n < N; n++) {
        if (pairs[2 * n] < 1 || pairs[2 * n] > K || pairs[2 * n + 1] < 1 || pairs[2 * n + 1] > P) {
            PyErr_Format(PyExc_ValueError, "jf_pairs: pair %zd is (%d, %d); expected ids in 1..%d and 1..%d", n,
                         pairs[2 * n], pairs[2 * n + 1], K, P);
            goto done;
        }
    }
    Job job = {(int)s[0], (int)s[1], (int)s[2], K, P, radius, N, views[0].buf, views[1].buf, pairs,
               views[3].buf, views[4].buf};
    int ok = 1;
    if (job.T > 0 && job.H > 0 && job.W > 0) {
        Py_BEGIN_ALLOW_THREADS;
        ok = run(&job);
        Py_END_ALLOW_THREADS;
    }
    if (!ok) {
        PyErr_NoMemory();
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int i = 0; i < held; i++) PyBuffer_Release(&views[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"jf_pairs", jf_pairs, METH_VARARGS, "J and F of (gt id, pred id) pairs per frame; see dinosavi.metrics.compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_jf", .m_doc = "Compiled DAVIS J/F kernel.", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__jf(void) { return PyModule_Create(&module); }
