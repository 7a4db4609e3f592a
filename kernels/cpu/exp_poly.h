// Internal to kernels/cpu: the range reduction and polynomial of the vector exp, shared by
// matmul_avx2.cpp and matmul_avx512.cpp like matmul_simd.h (no include guard; included
// inside their anonymous namespaces after vset1, vfma, vmul and vadd, and a vround).
//
// exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 (in two parts, so r is
// exact to float rounding), |r| <= ln 2 / 2, and exp(r) by Cephes' expf polynomial:
// within 2 ulp of expf over the normal range. Returns exp(r) and sets *n; the caller
// scales by 2^n and handles the range ends.
inline Vec vexp_poly(Vec x, Vec* n) {
  *n = vround(vmul(x, vset1(1.44269504088896341f)));
  Vec r = vfma(*n, vset1(-0.693359375f), x);
  r = vfma(*n, vset1(2.12194440e-4f), r);
  Vec p = vset1(1.9875691500e-4f);
  p = vfma(p, r, vset1(1.3981999507e-3f));
  p = vfma(p, r, vset1(8.3334519073e-3f));
  p = vfma(p, r, vset1(4.1665795894e-2f));
  p = vfma(p, r, vset1(1.6666665459e-1f));
  p = vfma(p, r, vset1(5.0000001201e-1f));
  return vfma(p, vmul(r, r), vadd(r, vset1(1.0f)));
}
