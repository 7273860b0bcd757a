/* MC146818 CMOS real-time clock and its RAM at 0x70/0x71. The calendar
 * follows the host's UTC clock plus whatever offset the guest sets; the
 * periodic interrupt follows the guest clock (vm_now_ns). Interrupt flags
 * are brought up to date on access and from rtc_poll(); IRQ 8 is raised
 * while register C's IRQF is set. Runs under vm->io_lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dev/devices.h"
#include "vm/vm.h"
#include "vm/snapshot.h"

#define RTC_IRQ 8
#define NSEC_PER_SEC 1000000000ull
/* the update cycle: UIP is set this long before each second ends */
#define UIP_NS 244000

enum {
	REG_SEC = 0x00,
	REG_SEC_ALARM = 0x01,
	REG_MIN = 0x02,
	REG_MIN_ALARM = 0x03,
	REG_HOUR = 0x04,
	REG_HOUR_ALARM = 0x05,
	REG_WDAY = 0x06,
	REG_MDAY = 0x07,
	REG_MONTH = 0x08,
	REG_YEAR = 0x09,
	REG_A = 0x0A,
	REG_B = 0x0B,
	REG_C = 0x0C,
	REG_D = 0x0D,
	REG_CENTURY = 0x32, /* where the FADT's CENTURY field points */
};

#define A_UIP 0x80
#define A_DV_MASK 0x70
#define A_DV_NORMAL 0x20 /* 32.768 kHz time base, dividers running */
#define A_RS_MASK 0x0F
#define B_SET 0x80
#define B_PIE 0x40
#define B_AIE 0x20
#define B_UIE 0x10
#define B_BINARY 0x04
#define B_24H 0x02
#define C_IRQF 0x80
#define C_PF 0x40
#define C_AF 0x20
#define C_UF 0x10
#define D_VRT 0x80
#define ALARM_ANY 0xC0 /* alarm bytes 0xC0-0xFF match any value */

struct rtc_state {
	uint8_t cmos[128]; /* the time bytes hold the last time shown or set */
	uint8_t index;
	int64_t offset_s;	     /* guest calendar = host UTC + offset */
	int64_t last_update_s;	     /* the last second whose update cycle ended */
	uint64_t next_periodic_ns; /* guest time of the next periodic tick */
	bool irq;
};

struct rtc {
	struct vm *vm;
	struct rtc_state s;
};

static const uint8_t time_regs[] = { REG_SEC, REG_MIN, REG_HOUR, REG_WDAY, REG_MDAY,
				     REG_MONTH, REG_YEAR, REG_CENTURY };

static bool is_time_reg(uint8_t reg)
{
	return memchr(time_regs, reg, sizeof(time_regs)) != NULL;
}

static bool rtc_running(const struct rtc *r)
{
	return (r->s.cmos[REG_A] & A_DV_MASK) == A_DV_NORMAL && !(r->s.cmos[REG_B] & B_SET);
}

static struct timespec host_utc(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static uint8_t rtc_enc(const struct rtc *r, int v)
{
	if (r->s.cmos[REG_B] & B_BINARY)
		return (uint8_t)v;
	return (uint8_t)((v / 10) << 4 | v % 10);
}

static int rtc_dec(const struct rtc *r, uint8_t v)
{
	if (r->s.cmos[REG_B] & B_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 0xF);
}

static uint8_t rtc_enc_hour(const struct rtc *r, int h)
{
	if (r->s.cmos[REG_B] & B_24H)
		return rtc_enc(r, h);
	return rtc_enc(r, h % 12 ? h % 12 : 12) | (h >= 12 ? 0x80 : 0);
}

static int rtc_dec_hour(const struct rtc *r, uint8_t v)
{
	int h;

	if (r->s.cmos[REG_B] & B_24H)
		return rtc_dec(r, v);
	h = rtc_dec(r, v & 0x7F) % 12;
	return v & 0x80 ? h + 12 : h;
}

/* show the calendar second t in the time registers */
static void rtc_show(struct rtc *r, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	int year;

	gmtime_r(&tt, &tm);
	/* tm_year % 100 is negative before 1900, which a guest may set; a
	 * year before 0 the registers cannot show at all */
	year = tm.tm_year + 1900 < 0 ? 0 : tm.tm_year + 1900;
	r->s.cmos[REG_SEC] = rtc_enc(r, tm.tm_sec);
	r->s.cmos[REG_MIN] = rtc_enc(r, tm.tm_min);
	r->s.cmos[REG_HOUR] = rtc_enc_hour(r, tm.tm_hour);
	r->s.cmos[REG_WDAY] = rtc_enc(r, tm.tm_wday + 1);
	r->s.cmos[REG_MDAY] = rtc_enc(r, tm.tm_mday);
	r->s.cmos[REG_MONTH] = rtc_enc(r, tm.tm_mon + 1);
	r->s.cmos[REG_YEAR] = rtc_enc(r, year % 100);
	r->s.cmos[REG_CENTURY] = rtc_enc(r, year / 100);
}

/* the calendar second the time registers say */
static int64_t rtc_shown(const struct rtc *r)
{
	struct tm tm = {
		.tm_sec = rtc_dec(r, r->s.cmos[REG_SEC]),
		.tm_min = rtc_dec(r, r->s.cmos[REG_MIN]),
		.tm_hour = rtc_dec_hour(r, r->s.cmos[REG_HOUR]),
		.tm_mday = rtc_dec(r, r->s.cmos[REG_MDAY]),
		.tm_mon = rtc_dec(r, r->s.cmos[REG_MONTH]) - 1,
		.tm_year = rtc_dec(r, r->s.cmos[REG_CENTURY]) * 100 +
			   rtc_dec(r, r->s.cmos[REG_YEAR]) - 1900,
	};

	/* timegm normalises out-of-range fields, whatever the guest wrote */
	return (int64_t)timegm(&tm);
}

/* 0 when the rate select bits turn the periodic interrupt off */
static uint64_t rtc_period_ns(const struct rtc *r)
{
	int rs = r->s.cmos[REG_A] & A_RS_MASK;

	if (!rs)
		return 0;
	/* rates 1 and 2 repeat 8 and 9: 256 and 128 Hz */
	return (NSEC_PER_SEC << (rs <= 2 ? rs + 6 : rs - 1)) / 32768;
}

static void rtc_set_irq(struct rtc *r)
{
	uint8_t *c = &r->s.cmos[REG_C];
	uint8_t b = r->s.cmos[REG_B];
	bool irq;

	if (*c & b & (C_PF | C_AF | C_UF))
		*c |= C_IRQF;
	irq = *c & C_IRQF;
	if (irq == r->s.irq)
		return;
	r->s.irq = irq;
	vm_set_irq(r->vm, RTC_IRQ, irq);
}

static bool alarm_match(uint8_t alarm, uint8_t now)
{
	return (alarm & ALARM_ANY) == ALARM_ANY || alarm == now;
}

/* bring the flags in register C up to date */
static void rtc_update(struct rtc *r)
{
	uint64_t now = vm_now_ns(r->vm), period = rtc_period_ns(r);
	struct timespec ts;
	int64_t t;

	if (period && (r->s.cmos[REG_A] & A_DV_MASK) == A_DV_NORMAL &&
	    now >= r->s.next_periodic_ns) {
		r->s.cmos[REG_C] |= C_PF;
		r->s.next_periodic_ns += ((now - r->s.next_periodic_ns) / period + 1) * period;
	}
	if (rtc_running(r)) {
		ts = host_utc();
		t = ts.tv_sec + r->s.offset_s;
		if (t != r->s.last_update_s) {
			r->s.last_update_s = t;
			rtc_show(r, t);
			r->s.cmos[REG_C] |= C_UF;
			if (alarm_match(r->s.cmos[REG_SEC_ALARM], r->s.cmos[REG_SEC]) &&
			    alarm_match(r->s.cmos[REG_MIN_ALARM], r->s.cmos[REG_MIN]) &&
			    alarm_match(r->s.cmos[REG_HOUR_ALARM], r->s.cmos[REG_HOUR]))
				r->s.cmos[REG_C] |= C_AF;
		}
	}
	rtc_set_irq(r);
}

int64_t rtc_poll(struct rtc *r)
{
	uint8_t b = r->s.cmos[REG_B];
	uint64_t now;
	int64_t next = -1, ns;

	rtc_update(r);
	if ((b & B_PIE) && rtc_period_ns(r) && (r->s.cmos[REG_A] & A_DV_MASK) == A_DV_NORMAL) {
		now = vm_now_ns(r->vm);
		next = r->s.next_periodic_ns > now ? (int64_t)(r->s.next_periodic_ns - now) : 0;
	}
	if ((b & (B_AIE | B_UIE)) && rtc_running(r)) {
		ns = (int64_t)NSEC_PER_SEC - host_utc().tv_nsec;
		if (next < 0 || ns < next)
			next = ns;
	}
	return next;
}

static uint8_t rtc_reg_read(struct rtc *r, uint8_t reg)
{
	struct timespec ts;
	uint8_t v;

	switch (reg) {
	case REG_A:
		v = r->s.cmos[REG_A] & ~A_UIP;
		if (rtc_running(r) && host_utc().tv_nsec >= (long)(NSEC_PER_SEC - UIP_NS))
			v |= A_UIP;
		return v;
	case REG_C:
		rtc_update(r);
		v = r->s.cmos[REG_C];
		r->s.cmos[REG_C] = 0;
		rtc_set_irq(r);
		return v;
	case REG_D:
		return D_VRT;
	}
	if (is_time_reg(reg) && rtc_running(r)) {
		ts = host_utc();
		rtc_show(r, ts.tv_sec + r->s.offset_s);
	}
	return r->s.cmos[reg];
}

static void rtc_reg_write(struct rtc *r, uint8_t reg, uint8_t v)
{
	uint8_t old;

	switch (reg) {
	case REG_A:
		old = r->s.cmos[REG_A];
		r->s.cmos[REG_A] = v & ~A_UIP;
		/* a new rate, or dividers coming out of reset, start a period */
		if ((old ^ v) & (A_RS_MASK | A_DV_MASK))
			r->s.next_periodic_ns = vm_now_ns(r->vm) + rtc_period_ns(r);
		rtc_update(r);
		return;
	case REG_B:
		old = r->s.cmos[REG_B];
		if ((v & B_SET) && !(old & B_SET))
			/* freeze the current time for the guest to edit */
			rtc_show(r, host_utc().tv_sec + r->s.offset_s);
		if (v & B_SET)
			v &= ~B_UIE;
		r->s.cmos[REG_B] = v;
		if ((old & B_SET) && !(v & B_SET)) {
			r->s.offset_s = rtc_shown(r) - host_utc().tv_sec;
			r->s.last_update_s = rtc_shown(r);
		}
		rtc_update(r);
		return;
	case REG_C:
	case REG_D:
		return; /* read-only */
	}
	if (is_time_reg(reg) && rtc_running(r)) {
		/* a write while the clock runs sets that field right away */
		rtc_show(r, host_utc().tv_sec + r->s.offset_s);
		r->s.cmos[reg] = v;
		r->s.offset_s = rtc_shown(r) - host_utc().tv_sec;
		r->s.last_update_s = rtc_shown(r);
		return;
	}
	r->s.cmos[reg] = v;
}

static uint64_t rtc_port_read(void *opaque, uint64_t off, int size)
{
	struct rtc *r = opaque;

	if (off == 0)
		return 0xFF; /* the index register is write-only */
	return rtc_reg_read(r, r->s.index);
}

static void rtc_port_write(void *opaque, uint64_t off, uint64_t val, int size)
{
	struct rtc *r = opaque;

	/* bit 7 of the index is the NMI mask: there are no NMI sources */
	if (off == 0)
		r->s.index = val & 0x7F;
	else
		rtc_reg_write(r, r->s.index, (uint8_t)val);
}

static const struct io_ops rtc_ops = {
	.read = rtc_port_read,
	.write = rtc_port_write,
};

static void cmos_put16(uint8_t *cmos, int reg, uint64_t v)
{
	if (v > 0xFFFF)
		v = 0xFFFF;
	cmos[reg] = v & 0xFF;
	cmos[reg + 1] = (uint8_t)(v >> 8);
}

/* the memory-size bytes a PC BIOS reads (SeaBIOS among them) */
static void rtc_memory_size(struct rtc *r)
{
	uint64_t low = r->vm->low_size;
	uint64_t high = r->vm->ram_size > low ? r->vm->ram_size - low : 0;
	uint8_t *cmos = r->s.cmos;
	uint64_t ext = low > (1 << 20) ? (low - (1 << 20)) >> 10 : 0;

	cmos_put16(cmos, 0x15, 640);
	cmos_put16(cmos, 0x17, ext);
	cmos_put16(cmos, 0x30, ext);
	if (low > (16 << 20))
		cmos_put16(cmos, 0x34, (low - (16 << 20)) >> 16);
	high >>= 16;
	cmos[0x5B] = high & 0xFF;
	cmos[0x5C] = high >> 8 & 0xFF;
	cmos[0x5D] = high >> 16 & 0xFF;
}

static int rtc_save(void *o, struct snap_buf *b, char *err, size_t n)
{
	struct rtc *r = o;

	snap_put(b, &r->s, sizeof(r->s));
	return 0;
}

static int rtc_load(void *o, struct snap_rd *rd, char *err, size_t n)
{
	struct rtc *r = o;
	struct rtc_state s;

	if (!snap_get(rd, &s, sizeof(s)))
		return -1;
	if (s.index > 0x7F || !snap_bool_ok(&s.irq)) {
		snprintf(err, n, "bad CMOS index or interrupt state");
		return -1;
	}
	/* the calendar runs on from the host's clock, as a powered-off
	 * machine's battery-backed clock would */
	r->s = s;
	return 0;
}

struct rtc *rtc_create(struct vm *vm)
{
	struct rtc *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->vm = vm;
	r->s.cmos[REG_A] = A_DV_NORMAL | 6; /* 1024 Hz periodic rate */
	r->s.cmos[REG_B] = B_24H;
	r->s.cmos[REG_D] = D_VRT;
	r->s.last_update_s = host_utc().tv_sec;
	rtc_show(r, r->s.last_update_s);
	r->s.next_periodic_ns = vm_now_ns(vm) + rtc_period_ns(r);
	rtc_memory_size(r);
	if (bus_register(&vm->pio, 0x70, 2, &rtc_ops, r, "rtc") || vm_snap_register(vm, "rtc", rtc_save, rtc_load, r)) {
		free(r);
		return NULL;
	}
	return r;
}

void rtc_destroy(struct rtc *r)
{
	free(r);
}
