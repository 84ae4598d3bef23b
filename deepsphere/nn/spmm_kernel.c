/* Sparse (CSR) times dense row-major product for the Chebyshev recursion:

       out[i, :] = beta * out[i, :] + alpha * sum_j val[j] * X[col[j], :]

   for the rows r0 <= i < r1 (NAME_all splits all rows between threads). X and out are
   [n, C] row-major and must not overlap; beta == 0 ignores the old contents of out (it may
   hold NaN), as BLAS does.

   Why a kernel of our own: on a graph's rows (about 9 nonzeros) and wide blocks
   (C = batch x channels >= 64) the time goes into gathering each neighbour's row. The
   accumulator of a slab of 64 columns (float32; 32 for float64) stays in registers across
   the row's nonzeros and is stored once; the first `pf_bytes` of the neighbour rows of the
   row `pf` ahead are prefetched; a large output with beta == 0 is written with streaming
   stores (`nt`). GCC/Clang vector extensions keep the code portable: one vector is 64 bytes,
   split by the compiler into what the target has (-march=native: AVX-512, AVX2, NEON).
   Each row is summed in CSR order by one thread, so results do not depend on the number
   of threads. */
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#define SLAB 4 /* vectors per slab: 4 x 64 bytes of accumulators */

/* Store 64 bytes at a 64-byte aligned address without reading the line first (a plain store
   reads it: write-allocate). Only for outputs far larger than the caches, which the next
   product reads back from memory anyway. */
static inline void stream64(void *dst, const void *src)
{
#if defined(__AVX512F__)
  _mm512_stream_ps((float *)dst, _mm512_loadu_ps((const float *)src));
#elif defined(__AVX__)
  _mm256_stream_ps((float *)dst, _mm256_loadu_ps((const float *)src));
  _mm256_stream_ps((float *)dst + 8, _mm256_loadu_ps((const float *)src + 8));
#else
  __builtin_memcpy(dst, src, 64);
#endif
}

static inline void fence(void)
{
#if defined(__AVX512F__) || defined(__AVX__)
  _mm_sfence();
#endif
}

/* out = acc (beta == 0, streamed when nt) or out = beta * out + acc */
#define STORE(NAME, dst, acc)                                                                \
  do {                                                                                       \
    if (beta == 0 && nt)                                                                     \
      stream64((dst), &(acc));                                                               \
    else if (beta == 0)                                                                      \
      *(NAME##_uvec *)(dst) = (acc);                                                         \
    else                                                                                     \
      *(NAME##_uvec *)(dst) = beta * *(NAME##_uvec *)(dst) + (acc);                          \
  } while (0)

#define DEFINE_SPMM(NAME, T, LANES)                                                          \
  typedef T NAME##_vec __attribute__((vector_size(64)));                                     \
  typedef T NAME##_uvec __attribute__((vector_size(64), aligned(sizeof(T))));                \
  void NAME(int64_t r0, int64_t r1, int64_t C, const int32_t *rowptr, const int32_t *col,   \
            const T *val, const T *X, T *out, T alpha, T beta, int64_t n, int64_t pf,        \
            int64_t pf_bytes, int nt)                                                        \
  {                                                                                          \
    const int64_t Cv = C - C % LANES;                                                        \
    const int64_t row_bytes = C * (int64_t)sizeof(T);                                        \
    const int64_t pf_end = pf_bytes > 0 && pf_bytes < row_bytes ? pf_bytes : row_bytes;      \
    for (int64_t i = r0; i < r1; i++) {                                                      \
      const int32_t a = rowptr[i], b = rowptr[i + 1];                                        \
      if (pf > 0 && i + pf < n) {                                                            \
        for (int32_t j = rowptr[i + pf]; j < rowptr[i + pf + 1]; j++) {                      \
          const char *p = (const char *)(X + (int64_t)col[j] * C);                           \
          for (int64_t c = 0; c < pf_end; c += 64)                                           \
            __builtin_prefetch(p + c, 0, 3);                                                 \
        }                                                                                    \
      }                                                                                      \
      T *o = out + i * C;                                                                    \
      int64_t c0 = 0;                                                                        \
      for (; c0 + LANES * SLAB <= Cv; c0 += LANES * SLAB) { /* full slabs: registers */      \
        NAME##_vec acc[SLAB];                                                                \
        for (int t = 0; t < SLAB; t++) acc[t] = (NAME##_vec){0};                             \
        for (int32_t j = a; j < b; j++) {                                                    \
          const T v = alpha * val[j];                                                        \
          const T *x = X + (int64_t)col[j] * C + c0;                                         \
          for (int t = 0; t < SLAB; t++) acc[t] += v * *(const NAME##_uvec *)(x + LANES * t);\
        }                                                                                    \
        for (int t = 0; t < SLAB; t++) STORE(NAME, o + c0 + LANES * t, acc[t]);             \
      }                                                                                      \
      for (; c0 < Cv; c0 += LANES) { /* the vectors left over, one at a time */              \
        NAME##_vec acc = (NAME##_vec){0};                                                    \
        for (int32_t j = a; j < b; j++)                                                      \
          acc += (alpha * val[j]) * *(const NAME##_uvec *)(X + (int64_t)col[j] * C + c0);    \
        STORE(NAME, o + c0, acc);                                                            \
      }                                                                                      \
      for (int64_t c = Cv; c < C; c++) { /* the columns past the last full vector */         \
        T s = 0;                                                                             \
        for (int32_t j = a; j < b; j++) s += alpha * val[j] * X[(int64_t)col[j] * C + c];    \
        o[c] = (beta == 0 ? 0 : beta * o[c]) + s;                                            \
      }                                                                                      \
    }                                                                                        \
    if (nt) fence();                                                                         \
  }

/* First row of share t of T, with about nnz / T nonzeros per share. */
static int64_t share_start(const int32_t *rowptr, int64_t n, int t, int T)
{
  if (t >= T) return n;
  const int64_t target = (int64_t)rowptr[n] * t / T;
  int64_t lo = 0, hi = n; /* the first row r with rowptr[r] >= target */
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rowptr[mid] < target) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/* All rows, on `nthreads` threads of the OpenMP runtime the process already has (torch's:
   the library is linked against the same libgomp.so.1, so both share one thread pool and
   neither spins against the other); on the calling thread alone without OpenMP. */
#define DEFINE_SPMM_ALL(NAME, T)                                                             \
  void NAME##_all(int nthreads, int64_t n, int64_t C, const int32_t *rowptr,                 \
                  const int32_t *col, const T *val, const T *X, T *out, T alpha, T beta,     \
                  int64_t pf, int64_t pf_bytes, int nt)                                      \
  {                                                                                          \
    if (nthreads > 1 && HAVE_OPENMP) {                                                       \
      PARALLEL                                                                               \
      {                                                                                      \
        const int t = THREAD_NUM, nt_ = NUM_THREADS;                                         \
        NAME(share_start(rowptr, n, t, nt_), share_start(rowptr, n, t + 1, nt_), C, rowptr,  \
             col, val, X, out, alpha, beta, n, pf, pf_bytes, nt);                            \
      }                                                                                      \
      return;                                                                                \
    }                                                                                        \
    NAME(0, n, C, rowptr, col, val, X, out, alpha, beta, n, pf, pf_bytes, nt);               \
  }

#ifdef _OPENMP
#define HAVE_OPENMP 1
#define PARALLEL _Pragma("omp parallel num_threads(nthreads)")
#define THREAD_NUM omp_get_thread_num()
#define NUM_THREADS omp_get_num_threads()
#else
#define HAVE_OPENMP 0
#define PARALLEL
#define THREAD_NUM 0
#define NUM_THREADS 1
#endif

DEFINE_SPMM(spmm_f32, float, 16)
DEFINE_SPMM(spmm_f64, double, 8)
DEFINE_SPMM_ALL(spmm_f32, float)
DEFINE_SPMM_ALL(spmm_f64, double)

/* Whether this build splits rows between OpenMP threads itself. */
int spmm_openmp(void) { return HAVE_OPENMP; }

/* Version of this file's interface, checked by the loader. */
int spmm_abi_version(void) { return 3; }
