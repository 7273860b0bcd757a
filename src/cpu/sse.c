/* MMX, SSE, SSE2, SSE3, SSSE3, SSE4.1 and SSE4.2 (legacy encodings).
 *
 * The architectural state is c->fx (FXSAVE layout). Data movement and the
 * integer operations are plain C. Floating point, conversions, ptest and the
 * SSE4.2 string compares run on the host's own vector unit, which makes the
 * results, rounding, NaN propagation, flags and MXCSR status exact: every
 * such instruction form is re-encoded once, at program start, into
 * a stub "op xmm1, xmm2[, imm]; jmp *%r11" (or with mm1/mm2, rax) in a page
 * of host code, and run with the guest's operand values in those registers,
 * the guest's MXCSR rounding/DAZ/FTZ and every exception masked. The host's
 * own MXCSR and MMX/x87 tags are restored before the asm statement ends.
 * Memory operands are copied through mem_read_buf first; guest addresses are
 * never dereferenced on the host.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu/cpu.h"

/* mandatory-prefix classes */
enum { P0, P66, PF3, PF2 };
/* operand kinds */
enum { K_NONE, K_X, K_M, K_G };
/* what the CR0/CR4 checks look like */
enum { CL_SSE = 1, CL_MMX, CL_SSEMMX, CL_INT };

#define O_ALIGN 0x01 /* a 16-byte memory operand must be aligned (#GP) */
#define O_MEM 0x02   /* memory form only */
#define O_REG 0x04   /* register form only */
#define O_NODST 0x08 /* the destination register is not written */
#define O_FLAGS 0x10 /* writes ZF PF CF (and clears or sets OF SF AF) */
#define O_W 0x20     /* REX.W selects the 64-bit GPR form */
#define O_STR 0x40   /* pcmp[ei]str[im]: rax/rdx in, rcx or xmm0 out */

/* special forms, handled one by one */
enum { SP_NONE, SP_MOVS, SP_STORE, SP_MOVLP, SP_MOVHP, SP_STLP, SP_STHP, SP_MOVD_IN,
       SP_MOVD_OUT, SP_MOVQ_ST, SP_MOVQ2DQ, SP_MOVDQ2Q, SP_MOVNTI, SP_MASKMOV, SP_PINSRW,
       SP_PEXTRW, SP_PEXTR, SP_PINSR, SP_INSERTPS, SP_MOVMSK, SP_PMOVMSKB, SP_SHIFTI,
       SP_EMMS, SP_BLENDV, SP_CRC32 };

/* d = op(d, s) on the low n bytes (8 for MMX, 16 for XMM) */
typedef void (*vfn)(xmm_t *d, const xmm_t *s, int n, uint8_t imm);

struct sop {
	uint8_t cls, dk, sk; /* class, destination (ModRM.reg) and source (r/m) kinds */
	uint8_t msz;         /* size of the memory operand */
	uint8_t fl;
	uint8_t imask; /* native forms with an immediate: variants - 1 */
	uint8_t sp;
	vfn fn; /* C implementation; NULL with sp == 0: run natively */
};

/* ---- helpers on lanes ---- */

static inline int8_t sat_s8(int v) { return v > 127 ? 127 : v < -128 ? -128 : v; }
static inline uint8_t sat_u8(int v) { return v > 255 ? 255 : v < 0 ? 0 : v; }
static inline int16_t sat_s16(int v) { return v > 32767 ? 32767 : v < -32768 ? -32768 : v; }
static inline uint16_t sat_u16(int v) { return v > 65535 ? 65535 : v < 0 ? 0 : v; }

#define LANEFN(name, A, T, expr)                                                  \
	static void name(xmm_t *d, const xmm_t *s, int n, uint8_t imm)          \
	{                                                                         \
		(void)imm;                                                        \
		for (int i = 0; i < n / (int)sizeof(d->A[0]); i++) {             \
			T a = (T)d->A[i], b = (T)s->A[i];                         \
			(void)a;                                                  \
			d->A[i] = (expr);                                         \
		}                                                                 \
	}

LANEFN(paddb, b, uint8_t, a + b)
LANEFN(paddw, w, uint16_t, a + b)
LANEFN(paddd, d, uint32_t, a + b)
LANEFN(paddq, q, uint64_t, a + b)
LANEFN(psubb, b, uint8_t, a - b)
LANEFN(psubw, w, uint16_t, a - b)
LANEFN(psubd, d, uint32_t, a - b)
LANEFN(psubq, q, uint64_t, a - b)
LANEFN(paddsb, b, int8_t, sat_s8(a + b))
LANEFN(paddsw, w, int16_t, sat_s16(a + b))
LANEFN(paddusb, b, uint8_t, sat_u8(a + b))
LANEFN(paddusw, w, uint16_t, sat_u16(a + b))
LANEFN(psubsb, b, int8_t, sat_s8(a - b))
LANEFN(psubsw, w, int16_t, sat_s16(a - b))
LANEFN(psubusb, b, uint8_t, sat_u8(a - b))
LANEFN(psubusw, w, uint16_t, sat_u16(a - b))
LANEFN(pcmpeqb, b, uint8_t, a == b ? 0xff : 0)
LANEFN(pcmpeqw, w, uint16_t, a == b ? 0xffff : 0)
LANEFN(pcmpeqd, d, uint32_t, a == b ? ~0u : 0)
LANEFN(pcmpeqq, q, uint64_t, a == b ? ~0ull : 0)
LANEFN(pcmpgtb, b, int8_t, a > b ? 0xff : 0)
LANEFN(pcmpgtw, w, int16_t, a > b ? 0xffff : 0)
LANEFN(pcmpgtd, d, int32_t, a > b ? ~0u : 0)
LANEFN(pcmpgtq, q, int64_t, a > b ? ~0ull : 0)
LANEFN(pminub, b, uint8_t, a < b ? a : b)
LANEFN(pmaxub, b, uint8_t, a > b ? a : b)
LANEFN(pminsb, b, int8_t, a < b ? a : b)
LANEFN(pmaxsb, b, int8_t, a > b ? a : b)
LANEFN(pminuw, w, uint16_t, a < b ? a : b)
LANEFN(pmaxuw, w, uint16_t, a > b ? a : b)
LANEFN(pminsw, w, int16_t, a < b ? a : b)
LANEFN(pmaxsw, w, int16_t, a > b ? a : b)
LANEFN(pminud, d, uint32_t, a < b ? a : b)
LANEFN(pmaxud, d, uint32_t, a > b ? a : b)
LANEFN(pminsd, d, int32_t, a < b ? a : b)
LANEFN(pmaxsd, d, int32_t, a > b ? a : b)
LANEFN(pavgb, b, uint8_t, (a + b + 1) >> 1)
LANEFN(pavgw, w, uint16_t, (a + b + 1) >> 1)
LANEFN(pmullw, w, int16_t, a * b)
LANEFN(pmulhw, w, int16_t, (a * b) >> 16)
LANEFN(pmulhuw, w, uint16_t, ((uint32_t)a * b) >> 16)
LANEFN(pmulhrsw, w, int16_t, (((a * b) >> 14) + 1) >> 1)
LANEFN(pmulld, d, uint32_t, a * b)
LANEFN(pmuludq, q, uint64_t, (a & 0xffffffffu) * (b & 0xffffffffu))
LANEFN(pmuldq, q, uint64_t, (uint64_t)((int64_t)(int32_t)a * (int32_t)b))
LANEFN(psignb, b, int8_t, b < 0 ? -a : b ? a : 0)
LANEFN(psignw, w, int16_t, b < 0 ? -a : b ? a : 0)
LANEFN(psignd, d, int32_t, b < 0 ? -(uint32_t)a : b ? (uint32_t)a : 0)
LANEFN(pabsb, b, int8_t, b < 0 ? -b : b)
LANEFN(pabsw, w, int16_t, b < 0 ? -b : b)
LANEFN(pabsd, d, int32_t, b < 0 ? -(uint32_t)b : (uint32_t)b)
LANEFN(pand, q, uint64_t, a & b)
LANEFN(pandn, q, uint64_t, ~a & b)
LANEFN(por, q, uint64_t, a | b)
LANEFN(pxor, q, uint64_t, a ^ b)

static void copy(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	memcpy(d, s, n);
}

static void movq_z(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	d->q[0] = s->q[0];
	d->q[1] = 0;
}

static void movddup(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	d->q[0] = d->q[1] = s->q[0];
}

static void movshdup(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	uint32_t a = s->d[1], b = s->d[3];
	d->d[0] = d->d[1] = a;
	d->d[2] = d->d[3] = b;
}

static void movsldup(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	uint32_t a = s->d[0], b = s->d[2];
	d->d[0] = d->d[1] = a;
	d->d[2] = d->d[3] = b;
}

/* shifts by a count: from the source register's low quadword, or an imm8 */
#define SHIFTFN(name, A, T, bits, expr_big, expr)                                 \
	static void name(xmm_t *d, const xmm_t *s, int n, uint8_t imm)          \
	{                                                                         \
		uint64_t cnt = s->q[0];                                           \
		for (int i = 0; i < n / (int)sizeof(d->A[0]); i++) {             \
			T a = (T)d->A[i];                                         \
			d->A[i] = cnt > bits - 1 ? (expr_big) : (expr);           \
		}                                                                 \
	}

SHIFTFN(psrlw, w, uint16_t, 16, 0, a >> cnt)
SHIFTFN(psrld, d, uint32_t, 32, 0, a >> cnt)
SHIFTFN(psrlq, q, uint64_t, 64, 0, a >> cnt)
SHIFTFN(psllw, w, uint16_t, 16, 0, a << cnt)
SHIFTFN(pslld, d, uint32_t, 32, 0, a << cnt)
SHIFTFN(psllq, q, uint64_t, 64, 0, a << cnt)
SHIFTFN(psraw, w, int16_t, 16, a >> 15, a >> cnt)
SHIFTFN(psrad, d, int32_t, 32, a >> 31, a >> cnt)

static void pslldq(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r = { 0 };
	if (imm < 16)
		memcpy(r.b + imm, d->b, 16 - imm);
	*d = r;
}

static void psrldq(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r = { 0 };
	if (imm < 16)
		memcpy(r.b, d->b + imm, 16 - imm);
	*d = r;
}

/* interleave lanes of lsz bytes from the low (or high) halves */
static void unpack(xmm_t *d, const xmm_t *s, int n, int lsz, bool hi)
{
	xmm_t r;
	int half = n / 2;
	const uint8_t *a = d->b + (hi ? half : 0), *b = s->b + (hi ? half : 0);
	for (int i = 0, j = 0; i < half; i += lsz) {
		memcpy(r.b + j, a + i, lsz);
		j += lsz;
		memcpy(r.b + j, b + i, lsz);
		j += lsz;
	}
	memcpy(d, &r, n);
}

#define UNPACKFN(name, lsz, hi) \
	static void name(xmm_t *d, const xmm_t *s, int n, uint8_t imm) { unpack(d, s, n, lsz, hi); }
UNPACKFN(punpcklbw, 1, false)
UNPACKFN(punpcklwd, 2, false)
UNPACKFN(punpckldq, 4, false)
UNPACKFN(punpcklqdq, 8, false)
UNPACKFN(punpckhbw, 1, true)
UNPACKFN(punpckhwd, 2, true)
UNPACKFN(punpckhdq, 4, true)
UNPACKFN(punpckhqdq, 8, true)

static void packsswb(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < n; i++)
		r.b[i] = sat_s8((int16_t)(i < n / 2 ? d->w[i] : s->w[i - n / 2]));
	memcpy(d, &r, n);
}

static void packuswb(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < n; i++)
		r.b[i] = sat_u8((int16_t)(i < n / 2 ? d->w[i] : s->w[i - n / 2]));
	memcpy(d, &r, n);
}

static void packssdw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < n / 2; i++)
		r.w[i] = sat_s16((int32_t)(i < n / 4 ? d->d[i] : s->d[i - n / 4]));
	memcpy(d, &r, n);
}

static void packusdw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < 8; i++)
		r.w[i] = sat_u16((int32_t)(i < 4 ? d->d[i] : s->d[i - 4]));
	*d = r;
}

static void pshufw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < 4; i++)
		r.w[i] = s->w[(imm >> (2 * i)) & 3];
	d->q[0] = r.q[0];
}

static void pshufd(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < 4; i++)
		r.d[i] = s->d[(imm >> (2 * i)) & 3];
	*d = r;
}

static void pshufhw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	r.q[0] = s->q[0];
	for (int i = 0; i < 4; i++)
		r.w[4 + i] = s->w[4 + ((imm >> (2 * i)) & 3)];
	*d = r;
}

static void pshuflw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	r.q[1] = s->q[1];
	for (int i = 0; i < 4; i++)
		r.w[i] = s->w[(imm >> (2 * i)) & 3];
	*d = r;
}

static void shufps(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	r.d[0] = d->d[imm & 3];
	r.d[1] = d->d[(imm >> 2) & 3];
	r.d[2] = s->d[(imm >> 4) & 3];
	r.d[3] = s->d[(imm >> 6) & 3];
	*d = r;
}

static void shufpd(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	r.q[0] = d->q[imm & 1];
	r.q[1] = s->q[(imm >> 1) & 1];
	*d = r;
}

static void pshufb(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	xmm_t r;
	for (int i = 0; i < n; i++)
		r.b[i] = (s->b[i] & 0x80) ? 0 : d->b[s->b[i] & (n - 1)];
	memcpy(d, &r, n);
}

static void palignr(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	uint8_t t[32];
	memcpy(t, s, n);
	memcpy(t + n, d, n);
	for (int i = 0; i < n; i++)
		d->b[i] = i + imm < 2 * n ? t[i + imm] : 0;
}

/* horizontal add/subtract of adjacent pairs, destination pairs first */
static void hop(xmm_t *d, const xmm_t *s, int n, int lsz, bool sub, bool sat)
{
	xmm_t r;
	int half = n / lsz / 2;
	for (int i = 0; i < 2 * half; i++) {
		const xmm_t *x = i < half ? d : s;
		int k = (i % half) * 2;
		if (lsz == 2) {
			int a = (int16_t)x->w[k], b = (int16_t)x->w[k + 1];
			int v = sub ? a - b : a + b;
			r.w[i] = sat ? sat_s16(v) : v;
		} else {
			uint32_t a = x->d[k], b = x->d[k + 1];
			r.d[i] = sub ? a - b : a + b;
		}
	}
	memcpy(d, &r, n);
}

#define HOPFN(name, lsz, sub, sat) \
	static void name(xmm_t *d, const xmm_t *s, int n, uint8_t imm) { hop(d, s, n, lsz, sub, sat); }
HOPFN(phaddw, 2, false, false)
HOPFN(phaddd, 4, false, false)
HOPFN(phaddsw, 2, false, true)
HOPFN(phsubw, 2, true, false)
HOPFN(phsubd, 4, true, false)
HOPFN(phsubsw, 2, true, true)

static void pmaddwd(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	for (int i = 0; i < n / 4; i++) {
		int64_t v = (int64_t)(int16_t)d->w[2 * i] * (int16_t)s->w[2 * i] +
			    (int64_t)(int16_t)d->w[2 * i + 1] * (int16_t)s->w[2 * i + 1];
		d->d[i] = (uint32_t)v;
	}
}

static void pmaddubsw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	for (int i = 0; i < n / 2; i++) {
		int v = d->b[2 * i] * (int8_t)s->b[2 * i] + d->b[2 * i + 1] * (int8_t)s->b[2 * i + 1];
		d->w[i] = sat_s16(v);
	}
}

static void psadbw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	for (int g = 0; g < n / 8; g++) {
		unsigned sum = 0;
		for (int j = 0; j < 8; j++) {
			int x = d->b[8 * g + j] - s->b[8 * g + j];
			sum += x < 0 ? -x : x;
		}
		d->q[g] = sum;
	}
}

#define PMOVFN(name, DA, DT, SA, ST, cnt)                                      \
	static void name(xmm_t *d, const xmm_t *s, int n, uint8_t imm)       \
	{                                                                      \
		xmm_t r;                                                       \
		for (int i = 0; i < cnt; i++)                                  \
			r.DA[i] = (DT)(ST)s->SA[i];                            \
		*d = r;                                                        \
	}
PMOVFN(pmovsxbw, w, int16_t, b, int8_t, 8)
PMOVFN(pmovsxbd, d, int32_t, b, int8_t, 4)
PMOVFN(pmovsxbq, q, int64_t, b, int8_t, 2)
PMOVFN(pmovsxwd, d, int32_t, w, int16_t, 4)
PMOVFN(pmovsxwq, q, int64_t, w, int16_t, 2)
PMOVFN(pmovsxdq, q, int64_t, d, int32_t, 2)
PMOVFN(pmovzxbw, w, uint16_t, b, uint8_t, 8)
PMOVFN(pmovzxbd, d, uint32_t, b, uint8_t, 4)
PMOVFN(pmovzxbq, q, uint64_t, b, uint8_t, 2)
PMOVFN(pmovzxwd, d, uint32_t, w, uint16_t, 4)
PMOVFN(pmovzxwq, q, uint64_t, w, uint16_t, 2)
PMOVFN(pmovzxdq, q, uint64_t, d, uint32_t, 2)

static void pblendw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	for (int i = 0; i < 8; i++)
		if (imm & (1u << i))
			d->w[i] = s->w[i];
}

static void blendps(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	for (int i = 0; i < 4; i++)
		if (imm & (1u << i))
			d->d[i] = s->d[i];
}

static void blendpd(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	for (int i = 0; i < 2; i++)
		if (imm & (1u << i))
			d->q[i] = s->q[i];
}

static void phminposuw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	int idx = 0;
	for (int i = 1; i < 8; i++)
		if (s->w[i] < s->w[idx])
			idx = i;
	xmm_t r = { 0 };
	r.w[0] = s->w[idx];
	r.w[1] = idx;
	*d = r;
}

static void mpsadbw(xmm_t *d, const xmm_t *s, int n, uint8_t imm)
{
	int so = (imm & 3) * 4, dof = ((imm >> 2) & 1) * 4;
	xmm_t r;
	for (int i = 0; i < 8; i++) {
		unsigned sum = 0;
		for (int j = 0; j < 4; j++) {
			int x = d->b[dof + i + j] - s->b[so + j];
			sum += x < 0 ? -x : x;
		}
		r.w[i] = sum;
	}
	*d = r;
}

/* ---- the opcode table ---- */

#define E(m, p, o) [(m) - 1][p][o]
/* native floating point: ps, pd (m128, aligned), ss (m32), sd (m64) */
#define FP4(o)                                                       \
	E(1, P0, o) = { CL_SSE, K_X, K_X, 16, O_ALIGN },             \
	E(1, P66, o) = { CL_SSE, K_X, K_X, 16, O_ALIGN },            \
	E(1, PF3, o) = { CL_SSE, K_X, K_X, 4 },                      \
	E(1, PF2, o) = { CL_SSE, K_X, K_X, 8 }
/* integer: MMX (no prefix, m64) and SSE2 (66, m128) */
#define INT2(m, o, f)                                                         \
	E(m, P0, o) = { CL_MMX, K_M, K_M, 8, 0, 0, 0, f },                  \
	E(m, P66, o) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 0, 0, f }
/* punpckl*: the MMX forms read m32 */
#define UNPL(o, f)                                                            \
	E(1, P0, o) = { CL_MMX, K_M, K_M, 4, 0, 0, 0, f },                  \
	E(1, P66, o) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 0, 0, f }
#define X66(m, o, f) E(m, P66, o) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 0, 0, f }
#define XSZ(m, p, o, sz, fl, f) E(m, p, o) = { CL_SSE, K_X, K_X, sz, fl, 0, 0, f }
#define SPX(m, p, o, sz, fl, sp) E(m, p, o) = { CL_SSE, K_X, K_X, sz, fl, 0, sp }
#define SPM(m, p, o, sz, fl, sp) E(m, p, o) = { CL_MMX, K_M, K_M, sz, fl, 0, sp }

static const struct sop optab[3][4][256] = {
	/* moves */
	XSZ(1, P0, 0x10, 16, 0, copy),
	XSZ(1, P66, 0x10, 16, 0, copy),
	SPX(1, PF3, 0x10, 4, 0, SP_MOVS),
	SPX(1, PF2, 0x10, 8, 0, SP_MOVS),
	SPX(1, P0, 0x11, 16, 0, SP_STORE),
	SPX(1, P66, 0x11, 16, 0, SP_STORE),
	SPX(1, PF3, 0x11, 4, 0, SP_STORE),
	SPX(1, PF2, 0x11, 8, 0, SP_STORE),
	SPX(1, P0, 0x12, 8, 0, SP_MOVLP),
	SPX(1, P66, 0x12, 8, O_MEM, SP_MOVLP),
	XSZ(1, PF3, 0x12, 16, O_ALIGN, movsldup),
	XSZ(1, PF2, 0x12, 8, 0, movddup),
	SPX(1, P0, 0x13, 8, O_MEM, SP_STLP),
	SPX(1, P66, 0x13, 8, O_MEM, SP_STLP),
	XSZ(1, P0, 0x14, 16, O_ALIGN, punpckldq),
	XSZ(1, P66, 0x14, 16, O_ALIGN, punpcklqdq),
	XSZ(1, P0, 0x15, 16, O_ALIGN, punpckhdq),
	XSZ(1, P66, 0x15, 16, O_ALIGN, punpckhqdq),
	SPX(1, P0, 0x16, 8, 0, SP_MOVHP),
	SPX(1, P66, 0x16, 8, O_MEM, SP_MOVHP),
	XSZ(1, PF3, 0x16, 16, O_ALIGN, movshdup),
	SPX(1, P0, 0x17, 8, O_MEM, SP_STHP),
	SPX(1, P66, 0x17, 8, O_MEM, SP_STHP),
	XSZ(1, P0, 0x28, 16, O_ALIGN, copy),
	XSZ(1, P66, 0x28, 16, O_ALIGN, copy),
	SPX(1, P0, 0x29, 16, O_ALIGN, SP_STORE),
	SPX(1, P66, 0x29, 16, O_ALIGN, SP_STORE),
	SPX(1, P0, 0x2B, 16, O_ALIGN | O_MEM, SP_STORE),
	SPX(1, P66, 0x2B, 16, O_ALIGN | O_MEM, SP_STORE),
	SPX(1, P0, 0x50, 0, O_REG, SP_MOVMSK),
	SPX(1, P66, 0x50, 0, O_REG, SP_MOVMSK),
	E(1, P0, 0x6E) = { CL_MMX, K_M, K_G, 4, O_W, 0, SP_MOVD_IN },
	E(1, P66, 0x6E) = { CL_SSE, K_X, K_G, 4, O_W, 0, SP_MOVD_IN },
	E(1, P0, 0x6F) = { CL_MMX, K_M, K_M, 8, 0, 0, 0, copy },
	XSZ(1, P66, 0x6F, 16, O_ALIGN, copy),
	XSZ(1, PF3, 0x6F, 16, 0, copy),
	E(1, P0, 0x7E) = { CL_MMX, K_M, K_G, 4, O_W, 0, SP_MOVD_OUT },
	E(1, P66, 0x7E) = { CL_SSE, K_X, K_G, 4, O_W, 0, SP_MOVD_OUT },
	XSZ(1, PF3, 0x7E, 8, 0, movq_z),
	SPM(1, P0, 0x7F, 8, 0, SP_STORE),
	SPX(1, P66, 0x7F, 16, O_ALIGN, SP_STORE),
	SPX(1, PF3, 0x7F, 16, 0, SP_STORE),
	E(1, P0, 0xC3) = { CL_INT, K_G, K_G, 4, O_MEM, 0, SP_MOVNTI },
	SPX(1, P66, 0xD6, 8, 0, SP_MOVQ_ST),
	E(1, PF3, 0xD6) = { CL_SSEMMX, K_X, K_M, 0, O_REG, 0, SP_MOVQ2DQ },
	E(1, PF2, 0xD6) = { CL_SSEMMX, K_M, K_X, 0, O_REG, 0, SP_MOVDQ2Q },
	SPM(1, P0, 0xE7, 8, O_MEM, SP_STORE),
	SPX(1, P66, 0xE7, 16, O_ALIGN | O_MEM, SP_STORE),
	XSZ(1, PF2, 0xF0, 16, O_MEM, copy),
	SPM(1, P0, 0xF7, 0, O_REG, SP_MASKMOV),
	SPX(1, P66, 0xF7, 0, O_REG, SP_MASKMOV),
	XSZ(2, P66, 0x2A, 16, O_ALIGN | O_MEM, copy),

	/* floating point, natively */
	FP4(0x51), FP4(0x58), FP4(0x59), FP4(0x5C), FP4(0x5D), FP4(0x5E), FP4(0x5F),
	XSZ(1, P0, 0x52, 16, O_ALIGN, NULL),
	XSZ(1, PF3, 0x52, 4, 0, NULL),
	XSZ(1, P0, 0x53, 16, O_ALIGN, NULL),
	XSZ(1, PF3, 0x53, 4, 0, NULL),
	E(1, P0, 0xC2) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 7 },
	E(1, P66, 0xC2) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 7 },
	E(1, PF3, 0xC2) = { CL_SSE, K_X, K_X, 4, 0, 7 },
	E(1, PF2, 0xC2) = { CL_SSE, K_X, K_X, 8, 0, 7 },
	XSZ(1, P0, 0x2E, 4, O_NODST | O_FLAGS, NULL),
	XSZ(1, P66, 0x2E, 8, O_NODST | O_FLAGS, NULL),
	XSZ(1, P0, 0x2F, 4, O_NODST | O_FLAGS, NULL),
	XSZ(1, P66, 0x2F, 8, O_NODST | O_FLAGS, NULL),
	XSZ(1, P66, 0x7C, 16, O_ALIGN, NULL),
	XSZ(1, PF2, 0x7C, 16, O_ALIGN, NULL),
	XSZ(1, P66, 0x7D, 16, O_ALIGN, NULL),
	XSZ(1, PF2, 0x7D, 16, O_ALIGN, NULL),
	XSZ(1, P66, 0xD0, 16, O_ALIGN, NULL),
	XSZ(1, PF2, 0xD0, 16, O_ALIGN, NULL),
	E(3, P66, 0x08) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 15 },
	E(3, P66, 0x09) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 15 },
	E(3, P66, 0x0A) = { CL_SSE, K_X, K_X, 4, 0, 15 },
	E(3, P66, 0x0B) = { CL_SSE, K_X, K_X, 8, 0, 15 },
	E(3, P66, 0x40) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 255 },
	E(3, P66, 0x41) = { CL_SSE, K_X, K_X, 16, O_ALIGN, 255 },

	/* conversions, natively */
	E(1, P0, 0x2A) = { CL_SSEMMX, K_X, K_M, 8 },             /* cvtpi2ps */
	E(1, P66, 0x2A) = { CL_SSEMMX, K_X, K_M, 8 },            /* cvtpi2pd */
	E(1, PF3, 0x2A) = { CL_SSE, K_X, K_G, 4, O_W },          /* cvtsi2ss */
	E(1, PF2, 0x2A) = { CL_SSE, K_X, K_G, 4, O_W },          /* cvtsi2sd */
	E(1, P0, 0x2C) = { CL_SSEMMX, K_M, K_X, 8 },             /* cvttps2pi */
	E(1, P66, 0x2C) = { CL_SSEMMX, K_M, K_X, 16, O_ALIGN },  /* cvttpd2pi */
	E(1, PF3, 0x2C) = { CL_SSE, K_G, K_X, 4, O_W },          /* cvttss2si */
	E(1, PF2, 0x2C) = { CL_SSE, K_G, K_X, 8, O_W },          /* cvttsd2si */
	E(1, P0, 0x2D) = { CL_SSEMMX, K_M, K_X, 8 },             /* cvtps2pi */
	E(1, P66, 0x2D) = { CL_SSEMMX, K_M, K_X, 16, O_ALIGN },  /* cvtpd2pi */
	E(1, PF3, 0x2D) = { CL_SSE, K_G, K_X, 4, O_W },          /* cvtss2si */
	E(1, PF2, 0x2D) = { CL_SSE, K_G, K_X, 8, O_W },          /* cvtsd2si */
	XSZ(1, P0, 0x5A, 8, 0, NULL),        /* cvtps2pd */
	XSZ(1, P66, 0x5A, 16, O_ALIGN, NULL), /* cvtpd2ps */
	XSZ(1, PF3, 0x5A, 4, 0, NULL),       /* cvtss2sd */
	XSZ(1, PF2, 0x5A, 8, 0, NULL),       /* cvtsd2ss */
	XSZ(1, P0, 0x5B, 16, O_ALIGN, NULL),  /* cvtdq2ps */
	XSZ(1, P66, 0x5B, 16, O_ALIGN, NULL), /* cvtps2dq */
	XSZ(1, PF3, 0x5B, 16, O_ALIGN, NULL), /* cvttps2dq */
	XSZ(1, P66, 0xE6, 16, O_ALIGN, NULL), /* cvttpd2dq */
	XSZ(1, PF3, 0xE6, 8, 0, NULL),        /* cvtdq2pd */
	XSZ(1, PF2, 0xE6, 16, O_ALIGN, NULL), /* cvtpd2dq */

	/* logic on ps/pd */
	XSZ(1, P0, 0x54, 16, O_ALIGN, pand),
	XSZ(1, P66, 0x54, 16, O_ALIGN, pand),
	XSZ(1, P0, 0x55, 16, O_ALIGN, pandn),
	XSZ(1, P66, 0x55, 16, O_ALIGN, pandn),
	XSZ(1, P0, 0x56, 16, O_ALIGN, por),
	XSZ(1, P66, 0x56, 16, O_ALIGN, por),
	XSZ(1, P0, 0x57, 16, O_ALIGN, pxor),
	XSZ(1, P66, 0x57, 16, O_ALIGN, pxor),
	XSZ(1, P0, 0xC6, 16, O_ALIGN, shufps),
	XSZ(1, P66, 0xC6, 16, O_ALIGN, shufpd),

	/* MMX / SSE2 integer */
	UNPL(0x60, punpcklbw), UNPL(0x61, punpcklwd), UNPL(0x62, punpckldq),
	INT2(1, 0x63, packsswb), INT2(1, 0x64, pcmpgtb), INT2(1, 0x65, pcmpgtw),
	INT2(1, 0x66, pcmpgtd), INT2(1, 0x67, packuswb), INT2(1, 0x68, punpckhbw),
	INT2(1, 0x69, punpckhwd), INT2(1, 0x6A, punpckhdq), INT2(1, 0x6B, packssdw),
	X66(1, 0x6C, punpcklqdq), X66(1, 0x6D, punpckhqdq),
	E(1, P0, 0x70) = { CL_MMX, K_M, K_M, 8, 0, 0, 0, pshufw },
	X66(1, 0x70, pshufd),
	XSZ(1, PF3, 0x70, 16, O_ALIGN, pshufhw),
	XSZ(1, PF2, 0x70, 16, O_ALIGN, pshuflw),
	SPM(1, P0, 0x71, 0, O_REG, SP_SHIFTI), SPX(1, P66, 0x71, 0, O_REG, SP_SHIFTI),
	SPM(1, P0, 0x72, 0, O_REG, SP_SHIFTI), SPX(1, P66, 0x72, 0, O_REG, SP_SHIFTI),
	SPM(1, P0, 0x73, 0, O_REG, SP_SHIFTI), SPX(1, P66, 0x73, 0, O_REG, SP_SHIFTI),
	INT2(1, 0x74, pcmpeqb), INT2(1, 0x75, pcmpeqw), INT2(1, 0x76, pcmpeqd),
	SPM(1, P0, 0x77, 0, 0, SP_EMMS),
	E(1, P0, 0xC4) = { CL_MMX, K_M, K_G, 2, 0, 0, SP_PINSRW },
	E(1, P66, 0xC4) = { CL_SSE, K_X, K_G, 2, 0, 0, SP_PINSRW },
	E(1, P0, 0xC5) = { CL_MMX, K_G, K_M, 0, O_REG, 0, SP_PEXTRW },
	E(1, P66, 0xC5) = { CL_SSE, K_G, K_X, 0, O_REG, 0, SP_PEXTRW },
	INT2(1, 0xD1, psrlw), INT2(1, 0xD2, psrld), INT2(1, 0xD3, psrlq), INT2(1, 0xD4, paddq),
	INT2(1, 0xD5, pmullw),
	E(1, P0, 0xD7) = { CL_MMX, K_G, K_M, 0, O_REG, 0, SP_PMOVMSKB },
	E(1, P66, 0xD7) = { CL_SSE, K_G, K_X, 0, O_REG, 0, SP_PMOVMSKB },
	INT2(1, 0xD8, psubusb), INT2(1, 0xD9, psubusw), INT2(1, 0xDA, pminub), INT2(1, 0xDB, pand),
	INT2(1, 0xDC, paddusb), INT2(1, 0xDD, paddusw), INT2(1, 0xDE, pmaxub), INT2(1, 0xDF, pandn),
	INT2(1, 0xE0, pavgb), INT2(1, 0xE1, psraw), INT2(1, 0xE2, psrad), INT2(1, 0xE3, pavgw),
	INT2(1, 0xE4, pmulhuw), INT2(1, 0xE5, pmulhw),
	INT2(1, 0xE8, psubsb), INT2(1, 0xE9, psubsw), INT2(1, 0xEA, pminsw), INT2(1, 0xEB, por),
	INT2(1, 0xEC, paddsb), INT2(1, 0xED, paddsw), INT2(1, 0xEE, pmaxsw), INT2(1, 0xEF, pxor),
	INT2(1, 0xF1, psllw), INT2(1, 0xF2, pslld), INT2(1, 0xF3, psllq), INT2(1, 0xF4, pmuludq),
	INT2(1, 0xF5, pmaddwd), INT2(1, 0xF6, psadbw),
	INT2(1, 0xF8, psubb), INT2(1, 0xF9, psubw), INT2(1, 0xFA, psubd), INT2(1, 0xFB, psubq),
	INT2(1, 0xFC, paddb), INT2(1, 0xFD, paddw), INT2(1, 0xFE, paddd),

	/* SSSE3 */
	INT2(2, 0x00, pshufb), INT2(2, 0x01, phaddw), INT2(2, 0x02, phaddd), INT2(2, 0x03, phaddsw),
	INT2(2, 0x04, pmaddubsw), INT2(2, 0x05, phsubw), INT2(2, 0x06, phsubd), INT2(2, 0x07, phsubsw),
	INT2(2, 0x08, psignb), INT2(2, 0x09, psignw), INT2(2, 0x0A, psignd), INT2(2, 0x0B, pmulhrsw),
	INT2(2, 0x1C, pabsb), INT2(2, 0x1D, pabsw), INT2(2, 0x1E, pabsd),
	E(3, P0, 0x0F) = { CL_MMX, K_M, K_M, 8, 0, 0, 0, palignr },
	X66(3, 0x0F, palignr),

	/* SSE4.1 */
	SPX(2, P66, 0x10, 16, O_ALIGN, SP_BLENDV),
	SPX(2, P66, 0x14, 16, O_ALIGN, SP_BLENDV),
	SPX(2, P66, 0x15, 16, O_ALIGN, SP_BLENDV),
	XSZ(2, P66, 0x17, 16, O_ALIGN | O_NODST | O_FLAGS, NULL), /* ptest */
	XSZ(2, P66, 0x20, 8, 0, pmovsxbw), XSZ(2, P66, 0x21, 4, 0, pmovsxbd),
	XSZ(2, P66, 0x22, 2, 0, pmovsxbq), XSZ(2, P66, 0x23, 8, 0, pmovsxwd),
	XSZ(2, P66, 0x24, 4, 0, pmovsxwq), XSZ(2, P66, 0x25, 8, 0, pmovsxdq),
	X66(2, 0x28, pmuldq), X66(2, 0x29, pcmpeqq), X66(2, 0x2B, packusdw),
	XSZ(2, P66, 0x30, 8, 0, pmovzxbw), XSZ(2, P66, 0x31, 4, 0, pmovzxbd),
	XSZ(2, P66, 0x32, 2, 0, pmovzxbq), XSZ(2, P66, 0x33, 8, 0, pmovzxwd),
	XSZ(2, P66, 0x34, 4, 0, pmovzxwq), XSZ(2, P66, 0x35, 8, 0, pmovzxdq),
	X66(2, 0x37, pcmpgtq),
	X66(2, 0x38, pminsb), X66(2, 0x39, pminsd), X66(2, 0x3A, pminuw), X66(2, 0x3B, pminud),
	X66(2, 0x3C, pmaxsb), X66(2, 0x3D, pmaxsd), X66(2, 0x3E, pmaxuw), X66(2, 0x3F, pmaxud),
	X66(2, 0x40, pmulld), X66(2, 0x41, phminposuw),
	X66(3, 0x0C, blendps), X66(3, 0x0D, blendpd), X66(3, 0x0E, pblendw),
	SPX(3, P66, 0x14, 1, 0, SP_PEXTR),
	SPX(3, P66, 0x15, 2, 0, SP_PEXTR),
	SPX(3, P66, 0x16, 4, O_W, SP_PEXTR),
	SPX(3, P66, 0x17, 4, 0, SP_PEXTR),
	SPX(3, P66, 0x20, 1, 0, SP_PINSR),
	SPX(3, P66, 0x21, 4, 0, SP_INSERTPS),
	SPX(3, P66, 0x22, 4, O_W, SP_PINSR),
	X66(3, 0x42, mpsadbw),

	/* SSE4.2 */
	E(3, P66, 0x60) = { CL_SSE, K_X, K_X, 16, O_STR | O_FLAGS | O_NODST | O_W, 255 },
	E(3, P66, 0x61) = { CL_SSE, K_X, K_X, 16, O_STR | O_FLAGS | O_NODST | O_W, 255 },
	E(3, P66, 0x62) = { CL_SSE, K_X, K_X, 16, O_STR | O_FLAGS | O_NODST | O_W, 255 },
	E(3, P66, 0x63) = { CL_SSE, K_X, K_X, 16, O_STR | O_FLAGS | O_NODST | O_W, 255 },
	E(2, PF2, 0xF0) = { CL_INT, K_G, K_G, 1, 0, 0, SP_CRC32 },
	E(2, PF2, 0xF1) = { CL_INT, K_G, K_G, 4, 0, 0, SP_CRC32 },
};

/* ---- native execution ---- */

/* the values the stub sees in xmm0-2, mm0-2, rax, rcx, rdx, and what it leaves */
struct nframe {
	xmm_t x[3];
	uint64_t mm[3];
	uint64_t rax, rcx, rdx;
	uint8_t flags[8]; /* lahf's byte, then OF */
	uint32_t mxcsr;
} __attribute__((aligned(16)));

#define SLOT 16
static uint8_t *stub_code;
static uint16_t stub_slot[3][4][256]; /* first slot of a native form, + 1 */
static uint32_t host_mxcsr_mask;

static bool map1_has_imm(int op)
{
	return (op >= 0x70 && op <= 0x73) || op == 0xC2 || op == 0xC4 || op == 0xC5 || op == 0xC6;
}

static int nslots(const struct sop *o)
{
	return (o->imask + 1) * ((o->fl & O_W) ? 2 : 1);
}

static bool is_native(const struct sop *o)
{
	return o->cls && !o->fn && !o->sp;
}

/* op reg1/reg0, reg2/reg0[, imm]; jmp *%r11 */
static void emit_stub(uint8_t *p, int map, int pfx, int op, const struct sop *o, int w, int imm)
{
	static const uint8_t pfxbyte[4] = { 0, 0x66, 0xF3, 0xF2 };
	int n = 0;
	if (pfx)
		p[n++] = pfxbyte[pfx];
	if (w)
		p[n++] = 0x48;
	p[n++] = 0x0F;
	if (map == 2)
		p[n++] = 0x38;
	else if (map == 3)
		p[n++] = 0x3A;
	p[n++] = op;
	int reg = o->dk == K_G ? 0 : 1, rm = o->sk == K_G ? 0 : 2;
	p[n++] = 0xC0 | reg << 3 | rm;
	if (map == 3 || (map == 1 && map1_has_imm(op)))
		p[n++] = imm;
	p[n++] = 0x41;
	p[n++] = 0xFF;
	p[n++] = 0xE3;
}

/* At program start, before any sandbox can forbid mmap/mprotect */
__attribute__((constructor)) static void stubs_init(void)
{
	uint8_t fxs[512] __attribute__((aligned(16)));
	asm volatile("fxsave64 %0" : "=m"(fxs));
	memcpy(&host_mxcsr_mask, fxs + 28, 4);
	if (!host_mxcsr_mask)
		host_mxcsr_mask = 0xffbf;

	int total = 0;
	for (int m = 0; m < 3; m++)
		for (int p = 0; p < 4; p++)
			for (int op = 0; op < 256; op++) {
				const struct sop *o = &optab[m][p][op];
				if (!is_native(o))
					continue;
				stub_slot[m][p][op] = total + 1;
				total += nslots(o);
			}
	size_t size = ((size_t)total * SLOT + 4095) & ~(size_t)4095;
	uint8_t *code = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED) {
		perror("accord: sse stubs: mmap");
		abort();
	}
	memset(code, 0xCC, size);
	for (int m = 0; m < 3; m++)
		for (int p = 0; p < 4; p++)
			for (int op = 0; op < 256; op++) {
				const struct sop *o = &optab[m][p][op];
				if (!stub_slot[m][p][op])
					continue;
				uint8_t *s = code + (size_t)(stub_slot[m][p][op] - 1) * SLOT;
				int nw = (o->fl & O_W) ? 2 : 1;
				for (int w = 0; w < nw; w++)
					for (int i = 0; i <= o->imask; i++, s += SLOT)
						emit_stub(s, m + 1, p, op, o, w, i);
			}
	if (mprotect(code, size, PROT_READ | PROT_EXEC)) {
		perror("accord: sse stubs: mprotect");
		abort();
	}
	stub_code = code;
}

/* Run one stub. The host's MXCSR is saved and restored around it; with MMX
 * operands the MMX registers are loaded, and emms leaves the host's x87
 * tags empty again. */
static void native_run(struct nframe *f, const uint8_t *code, bool mmx)
{
	uint32_t host_mxcsr;
#define NF_OFF                                                                               \
	[ox1] "i"(offsetof(struct nframe, x[1])), [ox2] "i"(offsetof(struct nframe, x[2])),  \
	[omm1] "i"(offsetof(struct nframe, mm[1])), [omm2] "i"(offsetof(struct nframe, mm[2])), \
	[orax] "i"(offsetof(struct nframe, rax)), [orcx] "i"(offsetof(struct nframe, rcx)),  \
	[ordx] "i"(offsetof(struct nframe, rdx)), [ofl] "i"(offsetof(struct nframe, flags)), \
	[omx] "i"(offsetof(struct nframe, mxcsr))
#define NF_PRE                                              \
	"stmxcsr %[hm]\n\t"                                 \
	"ldmxcsr %c[omx](%[f])\n\t"                         \
	"movdqa (%[f]), %%xmm0\n\t"                         \
	"movdqa %c[ox1](%[f]), %%xmm1\n\t"                  \
	"movdqa %c[ox2](%[f]), %%xmm2\n\t"                  \
	"mov %c[orax](%[f]), %%rax\n\t"                     \
	"mov %c[ordx](%[f]), %%rdx\n\t"                     \
	"xor %%ecx, %%ecx\n\t"
#define NF_RUN                                              \
	"lea 1f(%%rip), %%r11\n\t"                          \
	"jmp *%[code]\n"                                    \
	"1:\n\t"                                            \
	"mov %%rax, %c[orax](%[f])\n\t"                     \
	"mov %%rcx, %c[orcx](%[f])\n\t"                     \
	"seto %%cl\n\t"                                     \
	"lahf\n\t"                                          \
	"shr $8, %%eax\n\t"                                 \
	"mov %%al, %c[ofl](%[f])\n\t"                       \
	"mov %%cl, %c[ofl]+1(%[f])\n\t"                     \
	"movdqa %%xmm0, (%[f])\n\t"                         \
	"movdqa %%xmm1, %c[ox1](%[f])\n\t"                  \
	"stmxcsr %c[omx](%[f])\n\t"                         \
	"ldmxcsr %[hm]\n\t"
	if (!mmx) {
		asm volatile(NF_PRE NF_RUN
			     : [hm] "=m"(host_mxcsr)
			     : [f] "r"(f), [code] "r"(code), NF_OFF
			     : "rax", "rcx", "rdx", "r11", "xmm0", "xmm1", "xmm2", "cc", "memory");
	} else {
		asm volatile(NF_PRE
			     "movq %c[omm1](%[f]), %%mm1\n\t"
			     "movq %c[omm2](%[f]), %%mm2\n\t"
			     NF_RUN
			     "movq %%mm1, %c[omm1](%[f])\n\t"
			     "emms"
			     : [hm] "=m"(host_mxcsr)
			     : [f] "r"(f), [code] "r"(code), NF_OFF
			     : "rax", "rcx", "rdx", "r11", "xmm0", "xmm1", "xmm2", "mm1", "mm2", "st", "st(1)",
			       "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "cc", "memory");
	}
#undef NF_OFF
#undef NF_PRE
#undef NF_RUN
}

/* ---- guest state access ---- */

static inline int fpu_top(struct cpu *c)
{
	return (c->fx.fsw >> 11) & 7;
}

/* MMX register i is x87 physical register i, i.e. ST((i - TOP) & 7) */
static uint64_t mm_get(struct cpu *c, int i)
{
	uint64_t v;
	memcpy(&v, c->fx.st[(i - fpu_top(c)) & 7], 8);
	return v;
}

/* Every MMX instruction but emms sets TOP to 0 and tags all registers valid. */
static void mmx_enter(struct cpu *c)
{
	int top = fpu_top(c);
	if (top) {
		uint8_t st[8][16];
		for (int i = 0; i < 8; i++)
			memcpy(st[(i + top) & 7], c->fx.st[i], 16);
		memcpy(c->fx.st, st, sizeof(st));
		c->fx.fsw &= ~0x3800;
	}
	c->fx.ftw = 0xff;
}

/* after mmx_enter: a written MMX register has an all-ones exponent and sign */
static void mm_set(struct cpu *c, int i, uint64_t v)
{
	memcpy(c->fx.st[i], &v, 8);
	c->fx.st[i][8] = c->fx.st[i][9] = 0xff;
}

static void check_cr(struct cpu *c, int cls)
{
	if (cls == CL_INT)
		return;
	if ((c->cr0 & CR0_EM) || (cls != CL_MMX && !(c->cr4 & CR4_OSFXSR)))
		cpu_ud(c);
	if (c->cr0 & CR0_TS)
		cpu_fault(c, EXC_NM, 0);
	/* a pending unmasked x87 exception is taken by MMX instructions */
	if (cls != CL_SSE && (c->fx.fsw & 0x80) && (c->cr0 & CR0_NE))
		cpu_fault(c, EXC_MF, 0);
}

static uint64_t mem_lin(struct cpu *c, struct insn *in, const struct sop *o)
{
	uint64_t lin = insn_ea_lin(c, in);
	if ((o->fl & O_ALIGN) && (lin & 15))
		cpu_gp0(c);
	return lin;
}

static void simd_fault(struct cpu *c)
{
	if (c->cr4 & CR4_OSXMMEXCPT)
		cpu_fault(c, EXC_XM, 0);
	cpu_ud(c);
}

/* ---- the forms with their own shape ---- */

static void shift_imm(struct cpu *c, struct insn *in, bool mmx)
{
	static const vfn tab[3][8] = {
		{ [2] = psrlw, [4] = psraw, [6] = psllw },
		{ [2] = psrld, [4] = psrad, [6] = pslld },
		{ [2] = psrlq, [3] = psrldq, [6] = psllq, [7] = pslldq },
	};
	vfn f = tab[in->op - 0x71][in->reg & 7];
	if (!f || (mmx && (f == psrldq || f == pslldq)))
		cpu_ud(c);
	xmm_t cnt = { .q = { (uint8_t)in->imm, 0 } };
	if (mmx) {
		xmm_t d = { .q = { mm_get(c, in->rm & 7), 0 } };
		f(&d, &cnt, 8, (uint8_t)in->imm);
		mmx_enter(c);
		mm_set(c, in->rm & 7, d.q[0]);
	} else {
		f(&c->fx.xmm[in->rm], &cnt, 16, (uint8_t)in->imm);
	}
}

static uint32_t crc32c(uint32_t crc, uint64_t v, int size)
{
	switch (size) {
	case 1: asm("crc32b %1, %0" : "+r"(crc) : "r"((uint8_t)v)); break;
	case 2: asm("crc32w %1, %0" : "+r"(crc) : "r"((uint16_t)v)); break;
	case 4: asm("crc32l %1, %0" : "+r"(crc) : "r"((uint32_t)v)); break;
	default: {
		uint64_t c64 = crc;
		asm("crc32q %1, %0" : "+r"(c64) : "r"(v));
		crc = (uint32_t)c64;
	}
	}
	return crc;
}

static void special(struct cpu *c, struct insn *in, const struct sop *o, int pfx)
{
	bool mem = in->is_mem;
	bool w = in->rex & 8;
	uint8_t imm = (uint8_t)in->imm;
	xmm_t *xd = &c->fx.xmm[in->reg];
	uint64_t lin = mem ? mem_lin(c, in, o) : 0;

	switch (o->sp) {
	case SP_MOVS: /* movss / movsd xmm, xmm/m */
		if (mem) {
			xmm_t t = { 0 };
			mem_read_buf(c, lin, &t, o->msz);
			*xd = t;
		} else {
			memcpy(xd, &c->fx.xmm[in->rm], o->msz);
		}
		break;
	case SP_STORE: /* the low msz bytes of reg to r/m */
		if (o->dk == K_M) {
			uint64_t v = mm_get(c, in->reg & 7);
			if (mem)
				mem_write(c, lin, v, 8);
			mmx_enter(c);
			if (!mem)
				mm_set(c, in->rm & 7, v);
		} else if (mem) {
			mem_write_buf(c, lin, xd, o->msz);
		} else {
			memmove(&c->fx.xmm[in->rm], xd, o->msz);
		}
		break;
	case SP_MOVLP: /* movlps / movlpd xmm, m64; movhlps */
		xd->q[0] = mem ? mem_read(c, lin, 8) : c->fx.xmm[in->rm].q[1];
		break;
	case SP_MOVHP: /* movhps / movhpd xmm, m64; movlhps */
		xd->q[1] = mem ? mem_read(c, lin, 8) : c->fx.xmm[in->rm].q[0];
		break;
	case SP_STLP:
		mem_write(c, lin, xd->q[0], 8);
		break;
	case SP_STHP:
		mem_write(c, lin, xd->q[1], 8);
		break;
	case SP_MOVD_IN: { /* movd / movq mm|xmm, r/m32|64 */
		uint64_t v = rm_read(c, in, w ? 8 : 4);
		if (o->dk == K_M) {
			mmx_enter(c);
			mm_set(c, in->reg & 7, v);
		} else {
			xd->q[0] = v;
			xd->q[1] = 0;
		}
		break;
	}
	case SP_MOVD_OUT: { /* movd / movq r/m32|64, mm|xmm */
		uint64_t v = o->dk == K_M ? mm_get(c, in->reg & 7) : xd->q[0];
		rm_write(c, in, v, w ? 8 : 4);
		if (o->dk == K_M)
			mmx_enter(c);
		break;
	}
	case SP_MOVQ_ST: /* movq xmm/m64, xmm */
		if (mem) {
			mem_write(c, lin, xd->q[0], 8);
		} else {
			c->fx.xmm[in->rm].q[0] = xd->q[0];
			c->fx.xmm[in->rm].q[1] = 0;
		}
		break;
	case SP_MOVQ2DQ:
		xd->q[0] = mm_get(c, in->rm & 7);
		xd->q[1] = 0;
		mmx_enter(c);
		break;
	case SP_MOVDQ2Q: {
		uint64_t v = c->fx.xmm[in->rm].q[0];
		mmx_enter(c);
		mm_set(c, in->reg & 7, v);
		break;
	}
	case SP_MOVNTI: {
		int size = w ? 8 : 4;
		mem_write(c, lin, reg_read(c, in->reg, size, false), size);
		break;
	}
	case SP_MASKMOV: { /* bytes of reg selected by the sign bits of r/m to [seg:rDI] */
		xmm_t data = { 0 }, mask = { 0 };
		int n = o->dk == K_M ? 8 : 16;
		if (n == 8) {
			data.q[0] = mm_get(c, in->reg & 7);
			mask.q[0] = mm_get(c, in->rm & 7);
		} else {
			data = *xd;
			mask = c->fx.xmm[in->rm];
		}
		uint64_t a = c->r[R_RDI];
		if (in->addrsize == 4)
			a = (uint32_t)a;
		else if (in->addrsize == 2)
			a = (uint16_t)a;
		uint64_t base = seg_lin(c, in->seg, a);
		for (int i = 0; i < n; i++)
			if (mask.b[i] & 0x80)
				mem_write(c, base + i, data.b[i], 1);
		if (n == 8)
			mmx_enter(c);
		break;
	}
	case SP_PINSRW: {
		uint16_t v = mem ? (uint16_t)mem_read(c, lin, 2) : (uint16_t)c->r[in->rm];
		if (o->dk == K_M) {
			uint64_t m = mm_get(c, in->reg & 7);
			int sh = (imm & 3) * 16;
			m = (m & ~(0xffffull << sh)) | (uint64_t)v << sh;
			mmx_enter(c);
			mm_set(c, in->reg & 7, m);
		} else {
			xd->w[imm & 7] = v;
		}
		break;
	}
	case SP_PEXTRW:
		if (o->sk == K_M) {
			c->r[in->reg] = (uint16_t)(mm_get(c, in->rm & 7) >> ((imm & 3) * 16));
			mmx_enter(c);
		} else {
			c->r[in->reg] = c->fx.xmm[in->rm].w[imm & 7];
		}
		break;
	case SP_PEXTR: { /* pextrb / pextrw / pextrd / pextrq / extractps r/m, xmm */
		uint64_t v;
		int size;
		switch (in->op) {
		case 0x14: v = xd->b[imm & 15], size = 1; break;
		case 0x15: v = xd->w[imm & 7], size = 2; break;
		case 0x16:
			if (w)
				v = xd->q[imm & 1], size = 8;
			else
				v = xd->d[imm & 3], size = 4;
			break;
		default: v = xd->d[imm & 3], size = 4; break;
		}
		if (mem)
			mem_write(c, lin, v, size);
		else
			c->r[in->rm] = v;
		break;
	}
	case SP_PINSR: /* pinsrb / pinsrd / pinsrq xmm, r/m */
		if (in->op == 0x20)
			xd->b[imm & 15] = mem ? (uint8_t)mem_read(c, lin, 1) : (uint8_t)c->r[in->rm];
		else if (w)
			xd->q[imm & 1] = mem ? mem_read(c, lin, 8) : c->r[in->rm];
		else
			xd->d[imm & 3] = mem ? (uint32_t)mem_read(c, lin, 4) : (uint32_t)c->r[in->rm];
		break;
	case SP_INSERTPS: {
		uint32_t v = mem ? (uint32_t)mem_read(c, lin, 4) : c->fx.xmm[in->rm].d[(imm >> 6) & 3];
		xd->d[(imm >> 4) & 3] = v;
		for (int i = 0; i < 4; i++)
			if (imm & (1u << i))
				xd->d[i] = 0;
		break;
	}
	case SP_MOVMSK: {
		const xmm_t *s = &c->fx.xmm[in->rm];
		uint64_t m = 0;
		if (pfx == P66)
			m = (s->q[0] >> 63) | (s->q[1] >> 63) << 1;
		else
			for (int i = 0; i < 4; i++)
				m |= (uint64_t)(s->d[i] >> 31) << i;
		c->r[in->reg] = m;
		break;
	}
	case SP_PMOVMSKB: {
		xmm_t s;
		int n = o->sk == K_M ? 8 : 16;
		if (n == 8)
			s.q[0] = mm_get(c, in->rm & 7);
		else
			s = c->fx.xmm[in->rm];
		uint64_t m = 0;
		for (int i = 0; i < n; i++)
			m |= (uint64_t)(s.b[i] >> 7) << i;
		c->r[in->reg] = m;
		if (n == 8)
			mmx_enter(c);
		break;
	}
	case SP_SHIFTI:
		shift_imm(c, in, o->dk == K_M);
		break;
	case SP_EMMS: /* TOP becomes 0 as well, every tag empty */
		mmx_enter(c);
		c->fx.ftw = 0;
		break;
	case SP_BLENDV: { /* pblendvb / blendvps / blendvpd, mask in xmm0 */
		xmm_t s;
		if (mem)
			mem_read_buf(c, lin, &s, 16);
		else
			s = c->fx.xmm[in->rm];
		const xmm_t *m = &c->fx.xmm[0];
		if (in->op == 0x10) {
			for (int i = 0; i < 16; i++)
				if (m->b[i] & 0x80)
					xd->b[i] = s.b[i];
		} else if (in->op == 0x14) {
			for (int i = 0; i < 4; i++)
				if (m->d[i] >> 31)
					xd->d[i] = s.d[i];
		} else {
			for (int i = 0; i < 2; i++)
				if (m->q[i] >> 63)
					xd->q[i] = s.q[i];
		}
		break;
	}
	case SP_CRC32: {
		int size = in->op == 0xF0 ? 1 : in->opsize;
		uint64_t v = rm_read(c, in, size);
		c->r[in->reg] = crc32c((uint32_t)c->r[in->reg], v, size);
		break;
	}
	}
}

/* ---- entry ---- */

bool sse_exec(struct cpu *c, struct insn *in)
{
	if (in->map < 1 || in->map > 3)
		return false;
	int pfx = in->rep == 0xF3 ? PF3 : in->rep == 0xF2 ? PF2 : in->opsize_prefix ? P66 : P0;
	const struct sop *o = &optab[in->map - 1][pfx][in->op];
	if (!o->cls)
		return false;
	if (in->lock || (in->is_mem ? (o->fl & O_REG) : (o->fl & O_MEM)))
		cpu_ud(c);
	check_cr(c, o->cls);
	if (o->sp) {
		special(c, in, o, pfx);
		return true;
	}

	bool w = (o->fl & O_W) && (in->rex & 8);
	uint8_t imm = (uint8_t)in->imm;
	bool mmx = o->dk == K_M || o->sk == K_M;
	xmm_t d = { 0 }, s = { 0 };

	/* the source: memory (zero-extended to 16 bytes), register or GPR */
	if (in->is_mem) {
		int msz = o->sk == K_G && w ? 8 : o->msz;
		mem_read_buf(c, mem_lin(c, in, o), &s, msz);
	} else if (o->sk == K_X) {
		s = c->fx.xmm[in->rm];
	} else if (o->sk == K_M) {
		s.q[0] = mm_get(c, in->rm & 7);
	} else {
		s.q[0] = w ? c->r[in->rm] : (uint32_t)c->r[in->rm];
	}
	if (o->dk == K_X)
		d = c->fx.xmm[in->reg];
	else if (o->dk == K_M)
		d.q[0] = mm_get(c, in->reg & 7);

	if (o->fn) {
		o->fn(&d, &s, o->dk == K_M ? 8 : 16, imm);
	} else {
		struct nframe f;
		f.x[1] = d;
		f.x[2] = s;
		f.mm[1] = d.q[0];
		f.mm[2] = s.q[0];
		f.rax = s.q[0];
		if (o->fl & O_STR) {
			f.x[0] = c->fx.xmm[0];
			f.rax = c->r[R_RAX];
			f.rdx = c->r[R_RDX];
		}
		uint32_t g = c->fx.mxcsr;
		f.mxcsr = ((g & ~0x3fu) | 0x1f80) & host_mxcsr_mask;
		int slot = stub_slot[in->map - 1][pfx][in->op] - 1 + (w ? o->imask + 1 : 0) + (imm & o->imask);
		native_run(&f, stub_code + (size_t)slot * SLOT, mmx);

		uint32_t raised = f.mxcsr & 0x3f;
		uint32_t unmasked = raised & ~(g >> 7) & 0x3f;
		if (unmasked) {
			/* with an unmasked invalid, denormal or divide-by-zero, the
			 * post-computation conditions are not evaluated */
			if (unmasked & 7)
				raised &= 7;
			c->fx.mxcsr = g | raised;
			simd_fault(c);
		}
		c->fx.mxcsr = g | raised;
		if (o->fl & O_FLAGS) {
			uint64_t fl = (f.flags[0] & (F_SF | F_ZF | F_AF | F_PF | F_CF)) | (f.flags[1] ? F_OF : 0);
			c->rflags = (c->rflags & ~(uint64_t)F_ARITH) | fl;
		}
		if (o->fl & O_STR) {
			if (in->op & 1)
				c->r[R_RCX] = (uint32_t)f.rcx;
			else
				c->fx.xmm[0] = f.x[0];
		}
		if (o->dk == K_G)
			c->r[in->reg] = w ? f.rax : (uint32_t)f.rax;
		d = f.x[1];
		d.q[0] = o->dk == K_M ? f.mm[1] : d.q[0];
	}

	if (o->dk == K_X && !(o->fl & O_NODST))
		c->fx.xmm[in->reg] = d;
	/* an MMX operand in memory alone does not switch the x87 unit to MMX */
	if (mmx && (o->dk == K_M || !in->is_mem))
		mmx_enter(c);
	if (o->dk == K_M)
		mm_set(c, in->reg & 7, d.q[0]);
	return true;
}
