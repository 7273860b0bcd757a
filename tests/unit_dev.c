/* Unit tests for the platform devices in src/dev/: a two-vCPU machine with
 * no engine behind it, driven through its buses the way the engines drive
 * it (port I/O and MMIO under vm->io_lock, the LAPIC directly). Timer tests
 * only ask "did it fire" within a generous bound, never how fast. Prints
 * TAP. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dev/dev.h"
#include "dev/platform.h"
#include "engine/engine.h"
#include "vm/iothread.h"
#include "vm/vm.h"
#include "tap.h"
#include "testvm.h"

#define NCPUS 2
#define WAIT_MS 2000 /* bound for "it fires"; generous for loaded hosts */

static struct vm vm;
static int out_pipe[2], in_pipe[2];


/* ---- access helpers, locking like the engines ---- */

static uint64_t pio_in(uint16_t port, int size)
{
	return locked_read(&vm, &vm.pio, port, size);
}

static void pio_out(uint16_t port, uint64_t v, int size)
{
	locked_write(&vm, &vm.pio, port, v, size);
}

static uint8_t inb(uint16_t port)
{
	return (uint8_t)pio_in(port, 1);
}

static void outb(uint16_t port, uint8_t v)
{
	pio_out(port, v, 1);
}

static uint32_t mmio_read32(uint64_t addr)
{
	return (uint32_t)locked_read(&vm, &vm.mmio, addr, 4);
}

static void mmio_write32(uint64_t addr, uint32_t v)
{
	locked_write(&vm, &vm.mmio, addr, v, 4);
}

static void set_irq(unsigned gsi, int level)
{
	pthread_mutex_lock(&vm.io_lock);
	vm_set_irq(&vm, gsi, level);
	pthread_mutex_unlock(&vm.io_lock);
}

static struct lapic *lapic(int cpu)
{
	return vm.vcpu[cpu]->lapic;
}

static uint32_t apic_read(int cpu, uint32_t reg)
{
	return (uint32_t)lapic_mmio_read(lapic(cpu), reg, 4);
}

static void apic_write(int cpu, uint32_t reg, uint32_t v)
{
	lapic_mmio_write(lapic(cpu), reg, v, 4);
}

static void eoi(int cpu)
{
	apic_write(cpu, 0xB0, 0);
}

static bool vec_bit(int cpu, uint32_t base, int vector)
{
	return apic_read(cpu, base + (vector / 32) * 0x10) >> (vector % 32) & 1;
}

static void ioapic_redir(int pin, uint64_t e)
{
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin + 1);
	mmio_write32(IOAPIC_BASE + 0x10, (uint32_t)(e >> 32));
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin);
	mmio_write32(IOAPIC_BASE + 0x10, (uint32_t)e);
}

static uint64_t ioapic_redir_read(int pin)
{
	uint64_t lo, hi;

	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin);
	lo = mmio_read32(IOAPIC_BASE + 0x10);
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin + 1);
	hi = mmio_read32(IOAPIC_BASE + 0x10);
	return hi << 32 | lo;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000 };

	nanosleep(&ts, NULL);
}

/* poll the timers as the vCPU loop does until cpu takes an interrupt (acked
 * into ISR), or -1 after WAIT_MS */
static int wait_irq(int cpu)
{
	uint64_t end = mono_ms() + WAIT_MS;
	int v;

	do {
		platform_poll(&vm);
		lapic_poll_timer(lapic(cpu));
		v = lapic_get_interrupt(lapic(cpu), true);
		if (v >= 0)
			return v;
		sleep_us(50);
	} while (mono_ms() < end);
	return -1;
}

static int pending(int cpu)
{
	return lapic_get_interrupt(lapic(cpu), false);
}

static void reset_exit(void)
{
	vm.exit_reason = VM_RUNNING;
	vm.exit_status = 0;
	vm.exit_msg[0] = 0;
}

/* ---- UART ---- */

#define COM1 COM1_PORT

static int drain_output(char *buf, int max)
{
	int n = (int)read(out_pipe[0], buf, (size_t)max);

	return n < 0 ? 0 : n;
}

/* the probe in Linux's 8250 autoconfig() and autoconfig_16550a() */
static bool uart_linux_probe(void)
{
	uint8_t ier, s2, s3, mcr, lcr, st;

	ier = inb(COM1 + 1);
	outb(COM1 + 1, 0);
	s2 = inb(COM1 + 1) & 0x0F;
	outb(COM1 + 1, 0x0F);
	s3 = inb(COM1 + 1) & 0x0F;
	outb(COM1 + 1, ier);
	if (s2 || s3 != 0x0F)
		return false;
	mcr = inb(COM1 + 4);
	lcr = inb(COM1 + 3);
	outb(COM1 + 4, 0x1A);
	st = inb(COM1 + 6) & 0xF0;
	outb(COM1 + 4, mcr);
	if (st != 0x90)
		return false;
	outb(COM1 + 3, 0xBF);
	outb(COM1 + 2, 0);
	outb(COM1 + 3, 0);
	outb(COM1 + 2, 0x01);
	if ((inb(COM1 + 2) & 0xC0) != 0xC0)
		return false;
	/* no EFR behind either configuration mode */
	outb(COM1 + 3, 0x80);
	if (inb(COM1 + 2) == 0)
		return false;
	outb(COM1 + 3, 0xBF);
	if (inb(COM1 + 2) == 0)
		return false;
	/* not a 16750: IIR bit 5 stays clear */
	outb(COM1 + 3, 0);
	outb(COM1 + 2, 0x21);
	s2 = inb(COM1 + 2) >> 5;
	outb(COM1 + 2, 0x01);
	outb(COM1 + 3, 0x80);
	outb(COM1 + 2, 0x21);
	s3 = inb(COM1 + 2) >> 5;
	outb(COM1 + 2, 0x01);
	outb(COM1 + 3, 0);
	if (s2 != 6 || s3 != 6)
		return false;
	/* no XScale UUE bit */
	outb(COM1 + 1, 0x40);
	st = inb(COM1 + 1);
	outb(COM1 + 1, 0);
	outb(COM1 + 3, lcr);
	return !(st & 0x40);
}

/* transmit the way Linux's 8250 driver does: THRE interrupts, 16 bytes per
 * THRE, IIR read until no interrupt is pending */
static void test_serial_tx_irq(void)
{
	static const char msg[] = "interrupt-driven transmit, forty-six bytes long";
	int len = (int)sizeof(msg) - 1, sent = 0, irqs = 0, v;
	char out[128];

	ioapic_redir(COM1_IRQ, 0x32);
	outb(COM1 + 4, 0x0B);
	outb(COM1 + 1, 0x02);
	while (sent < len && irqs < 10) {
		v = wait_irq(0);
		if (v != 0x32)
			break;
		irqs++;
		for (uint8_t iir; !((iir = inb(COM1 + 2)) & 1);) {
			if ((iir & 0x0F) != 0x02)
				continue;
			for (int i = 0; i < 16 && sent < len; i++)
				outb(COM1, (uint8_t)msg[sent++]);
			if (sent == len)
				outb(COM1 + 1, 0);
		}
		eoi(0);
	}
	ok(irqs >= 1 && drain_output(out, sizeof(out)) == len && !memcmp(out, msg, (size_t)len),
	   "uart: interrupt-driven transmit (%d interrupts)", irqs);
	/* an edge raised while the handler ran may still be queued */
	while (lapic_get_interrupt(lapic(0), true) >= 0)
		eoi(0);
	ok(inb(COM1 + 2) == 0xC1, "uart: transmitter idle, no interrupt pending");
	ioapic_redir(COM1_IRQ, 1 << 16);
}

static void test_serial(void)
{
	char out[64];
	int n, v;

	ok(inb(COM1 + 5) == 0x60, "uart: LSR shows THRE and TEMT, no data");
	ok(inb(COM1 + 2) == 0x01, "uart: IIR reports no interrupt, FIFOs off");
	outb(COM1 + 2, 0x01);
	ok(inb(COM1 + 2) == 0xC1, "uart: IIR reports enabled FIFOs (16550A)");

	outb(COM1 + 1, 0x4F);
	ok(inb(COM1 + 1) == 0x0F, "uart: IER keeps only its four bits");
	outb(COM1 + 1, 0);

	outb(COM1 + 3, 0x80);
	outb(COM1 + 0, 0x0C);
	outb(COM1 + 1, 0x00);
	ok(inb(COM1 + 0) == 0x0C && inb(COM1 + 1) == 0, "uart: DLAB exposes the divisor latch");
	outb(COM1 + 3, 0x03);
	ok(inb(COM1 + 3) == 0x03 && inb(COM1 + 1) == 0, "uart: DLAB off shows IER again");

	outb(COM1 + 7, 0xA5);
	ok(inb(COM1 + 7) == 0xA5, "uart: scratch register");

	outb(COM1 + 0, 'h');
	outb(COM1 + 0, 'i');
	n = drain_output(out, sizeof(out));
	ok(n == 2 && !memcmp(out, "hi", 2), "uart: THR bytes reach the console fd");

	outb(COM1 + 1, 0x02);
	ok(inb(COM1 + 2) == 0xC2, "uart: enabling THRI with THR empty raises THRE");
	ok(inb(COM1 + 2) == 0xC1, "uart: reading IIR takes the THRE interrupt");
	outb(COM1 + 1, 0);
	outb(COM1 + 1, 0x02);
	ok(inb(COM1 + 2) == 0xC2, "uart: re-enabling THRI raises it again");
	outb(COM1 + 1, 0);

	/* Linux's autoconfig loopback probe */
	outb(COM1 + 4, 0x1A);
	ok((inb(COM1 + 6) & 0xF0) == 0x90, "uart: loopback maps RTS/OUT2 to CTS/DCD");
	outb(COM1 + 0, 'L');
	ok((inb(COM1 + 5) & 0x01) && inb(COM1 + 0) == 'L', "uart: loopback returns THR to RBR");
	ok(drain_output(out, sizeof(out)) == 0, "uart: loopback sends nothing out");
	ok(!(inb(COM1 + 5) & 0x01), "uart: RBR read empties the receiver");
	outb(COM1 + 4, 0x0B);
	inb(COM1 + 6); /* clear the deltas the loopback left */

	ok(uart_linux_probe(), "uart: Linux's autoconfig finds a 16550A");
	test_serial_tx_irq();

	/* receive interrupt through IOAPIC pin 4 to vCPU 0 */
	ioapic_redir(COM1_IRQ, 0x31);
	outb(COM1 + 1, 0x01);
	pthread_mutex_lock(&vm.io_lock);
	n = serial_input(vm.serial, (const uint8_t *)"ab", 2);
	pthread_mutex_unlock(&vm.io_lock);
	v = lapic_get_interrupt(lapic(0), true);
	ok(n == 2 && v == 0x31, "uart: input raises the RX interrupt (got %#x)", v);
	ok(inb(COM1 + 2) == 0xC4, "uart: IIR says received data");
	ok(inb(COM1 + 0) == 'a' && inb(COM1 + 0) == 'b' && inb(COM1 + 2) == 0xC1,
	   "uart: RBR gives the input in order, then no interrupt");
	eoi(0);

	/* the console's input thread */
	ok(write(in_pipe[1], "xyz", 3) == 3, "uart: console input written");
	{
		uint64_t end = mono_ms() + WAIT_MS;

		while (!(inb(COM1 + 5) & 0x01) && mono_ms() < end)
			sleep_us(100);
	}
	v = wait_irq(0);
	ok(v == 0x31, "uart: input thread raises the RX interrupt (got %#x)", v);
	{
		char got[4] = { 0 };

		for (int i = 0; i < 3; i++) {
			uint64_t end = mono_ms() + WAIT_MS;

			while (!(inb(COM1 + 5) & 0x01) && mono_ms() < end)
				sleep_us(100);
			got[i] = (char)inb(COM1 + 0);
		}
		ok(!strcmp(got, "xyz"), "uart: input thread bytes arrive in order");
	}
	eoi(0);

	/* the terminal's escapes: Ctrl-a a is a Ctrl-a, Ctrl-a h only helps */
	{
		char got[3] = { 0 };
		int k = 0;
		uint64_t end = mono_ms() + WAIT_MS;

		ok(write(in_pipe[1], "\x01" "a\x01" "hq", 5) == 5, "uart: Ctrl-a a, Ctrl-a h and q typed");
		while (k < 2 && mono_ms() < end) {
			if (inb(COM1 + 5) & 0x01)
				got[k++] = (char)inb(COM1 + 0);
			else
				sleep_us(100);
		}
		sleep_us(20000);
		ok(k == 2 && got[0] == 1 && got[1] == 'q' && !(inb(COM1 + 5) & 0x01),
		   "uart: the guest gets Ctrl-a and q, nothing for Ctrl-a h");
	}
	/* a paste three times the receive buffer: the rest waits, none lost */
	{
		static char paste[3000], got[3000];
		size_t k = 0;
		uint64_t end = mono_ms() + 10 * WAIT_MS;

		for (size_t i = 0; i < sizeof(paste); i++)
			paste[i] = 'A' + i % 26 + (i % 7 == 6 ? 32 : 0);
		ok(write(in_pipe[1], paste, sizeof(paste)) == sizeof(paste), "uart: a 3000-byte paste");
		while (k < sizeof(got) && mono_ms() < end) {
			if (inb(COM1 + 5) & 0x01)
				got[k++] = (char)inb(COM1 + 0);
			else
				sleep_us(100);
		}
		ok(k == sizeof(got) && !memcmp(got, paste, sizeof(got)),
		   "uart: all 3000 bytes arrive in order through the 1024-byte buffer (%zu)", k);
	}
	while (lapic_get_interrupt(lapic(0), true) >= 0)
		eoi(0);
	outb(COM1 + 1, 0);
	ioapic_redir(COM1_IRQ, 1 << 16);
}

/* ---- RTC ---- */

static uint8_t cmos_read(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static void cmos_write(uint8_t reg, uint8_t v)
{
	outb(0x70, reg);
	outb(0x71, v);
}

static int bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xF);
}

static time_t rtc_time(bool binary)
{
	uint8_t r[6], cent, sec;
	int v[6];
	struct tm tm = { 0 };
	static const uint8_t regs[6] = { 0x00, 0x02, 0x04, 0x07, 0x08, 0x09 };

	/* read between update cycles, and again if a second went by */
	do {
		while (cmos_read(0x0A) & 0x80)
			;
		for (int i = 0; i < 6; i++)
			r[i] = cmos_read(regs[i]);
		cent = cmos_read(0x32);
		sec = cmos_read(0x00);
	} while (sec != r[0]);
	for (int i = 0; i < 6; i++)
		v[i] = binary ? r[i] : bcd(r[i]);
	tm.tm_sec = v[0];
	tm.tm_min = v[1];
	tm.tm_hour = v[2];
	tm.tm_mday = v[3];
	tm.tm_mon = v[4] - 1;
	tm.tm_year = (binary ? cent : bcd(cent)) * 100 + v[5] - 1900;
	return timegm(&tm);
}

/* set the clock to t in binary mode, as a guest does (SET held, then
 * released), and let it run */
static void rtc_set(time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	cmos_write(0x0B, 0x86);
	cmos_write(0x09, (uint8_t)(tm.tm_year % 100));
	cmos_write(0x32, (uint8_t)((tm.tm_year + 1900) / 100));
	cmos_write(0x08, (uint8_t)(tm.tm_mon + 1));
	cmos_write(0x07, (uint8_t)tm.tm_mday);
	cmos_write(0x04, (uint8_t)tm.tm_hour);
	cmos_write(0x02, (uint8_t)tm.tm_min);
	cmos_write(0x00, (uint8_t)tm.tm_sec);
	cmos_write(0x0B, 0x06);
	cmos_write(0x0B, 0x02);
}

static void test_rtc(void)
{
	time_t t, now;
	int v;

	ok(cmos_read(0x0D) == 0x80, "rtc: register D says the time is valid");
	ok((cmos_read(0x0B) & 0x06) == 0x02, "rtc: BCD, 24-hour by default");
	t = rtc_time(false);
	now = time(NULL);
	ok(t >= now - 2 && t <= now + 1, "rtc: BCD time is the host's UTC (%lld vs %lld)",
	   (long long)t, (long long)now);
	cmos_write(0x0B, 0x06);
	t = rtc_time(true);
	now = time(NULL);
	ok(t >= now - 2 && t <= now + 1, "rtc: binary time is the host's UTC");
	cmos_write(0x0B, 0x02);

	cmos_write(0x0F, 0x5A);
	ok(cmos_read(0x0F) == 0x5A, "rtc: CMOS shutdown status byte holds a value");
	ok(cmos_read(0x15) == 0x80 && cmos_read(0x16) == 0x02, "rtc: base memory is 640 KiB");

	/* setting the clock: 1999-12-31 23:59:58 */
	cmos_write(0x0B, 0x82);
	cmos_write(0x09, 0x99);
	cmos_write(0x32, 0x19);
	cmos_write(0x08, 0x12);
	cmos_write(0x07, 0x31);
	cmos_write(0x04, 0x23);
	cmos_write(0x02, 0x59);
	cmos_write(0x00, 0x58);
	cmos_write(0x0B, 0x02);
	t = rtc_time(false);
	ok(t >= 946684798 && t <= 946684802, "rtc: the guest can set the clock (%lld)",
	   (long long)t);
	/* and back to host time */
	now = time(NULL);
	rtc_set(now);
	t = rtc_time(false);
	ok(t >= now - 1 && t <= now + 2, "rtc: set back to host time");

	/* periodic interrupt at 1024 Hz on GSI 8 */
	ioapic_redir(8, 0x38);
	cmos_read(0x0C);
	cmos_write(0x0A, 0x26);
	cmos_write(0x0B, 0x42);
	v = wait_irq(0);
	ok(v == 0x38, "rtc: periodic interrupt arrives (got %#x)", v);
	ok((cmos_read(0x0C) & 0xC0) == 0xC0, "rtc: register C shows IRQF and PF");
	ok((cmos_read(0x0C) & 0x80) == 0, "rtc: reading C clears it");
	cmos_write(0x0B, 0x02);
	eoi(0);
	/* the update-ended interrupt once a second */
	cmos_read(0x0C);
	cmos_write(0x0B, 0x12);
	v = wait_irq(0);
	ok(v == 0x38 && (cmos_read(0x0C) & 0x90) == 0x90, "rtc: update-ended interrupt");
	cmos_write(0x0B, 0x02);
	eoi(0);
	cmos_read(0x0C);
	ioapic_redir(8, 1 << 16);
}

/* years before 1900 (century 18) and before year 0 (a day before
 * 0000-01-01) come back as valid BCD, not as the encoding of a negative */
static void test_rtc_old_years(void)
{
	time_t now = time(NULL);
	uint8_t y, c;

	cmos_write(0x0B, 0x82);
	cmos_write(0x00, 0x00);
	cmos_write(0x02, 0x00);
	cmos_write(0x04, 0x12);
	cmos_write(0x07, 0x15);
	cmos_write(0x08, 0x06);
	cmos_write(0x09, 0x94);
	cmos_write(0x32, 0x18);
	cmos_write(0x0B, 0x02); /* running: the registers are recomputed */
	y = cmos_read(0x09);
	c = cmos_read(0x32);
	ok(y == 0x94 && c == 0x18, "rtc: the year 1894 reads back as 94, century 18 (got %#x %#x)", y, c);
	cmos_write(0x0B, 0x82);
	cmos_write(0x07, 0x00); /* day 0 of January of year 0: 31 Dec of year -1 */
	cmos_write(0x08, 0x01);
	cmos_write(0x09, 0x00);
	cmos_write(0x32, 0x00);
	cmos_write(0x0B, 0x02);
	y = cmos_read(0x09);
	c = cmos_read(0x32);
	ok((y & 0x0F) <= 9 && (y >> 4) <= 9 && (c & 0x0F) <= 9 && (c >> 4) <= 9,
	   "rtc: a year before 0 reads back as BCD (got %#x %#x)", y, c);
	/* back to host time */
	rtc_set(now);
}

/* ---- PIT ---- */

static uint16_t pit_latch(int ch)
{
	uint8_t lo, hi;

	outb(0x43, (uint8_t)(ch << 6));
	lo = inb((uint16_t)(0x40 + ch));
	hi = inb((uint16_t)(0x40 + ch));
	return (uint16_t)(hi << 8 | lo);
}

static void test_pit(void)
{
	uint16_t a, b;
	uint64_t end;
	int v;

	/* channel 2 the way Linux's calibration uses it */
	outb(0x61, (inb(0x61) & ~0x02) | 0x01);
	outb(0x43, 0xB0);
	outb(0x42, 0xFF);
	outb(0x42, 0xFF);
	a = pit_latch(2);
	ok(!(inb(0x61) & 0x20), "pit: OUT2 low after loading mode 0");
	sleep_us(2000);
	b = pit_latch(2);
	ok(b < a, "pit: channel 2 counts down (%#x then %#x)", a, b);

	outb(0x43, 0xB0);
	outb(0x42, 100);
	outb(0x42, 0);
	end = mono_ms() + WAIT_MS;
	while (!(inb(0x61) & 0x20) && mono_ms() < end)
		sleep_us(50);
	ok(inb(0x61) & 0x20, "pit: OUT2 goes high at terminal count");

	/* gate low stops the count */
	outb(0x43, 0xB0);
	outb(0x42, 0xFF);
	outb(0x42, 0xFF);
	outb(0x61, inb(0x61) & ~0x01);
	a = pit_latch(2);
	sleep_us(2000);
	b = pit_latch(2);
	ok(a == b, "pit: gate low holds channel 2");
	outb(0x61, inb(0x61) | 0x01);
	sleep_us(2000);
	ok(pit_latch(2) < b, "pit: gate high resumes it");
	outb(0x61, inb(0x61) & ~0x01);

	/* lobyte only, and the read-back command */
	outb(0x43, 0x54); /* channel 1, LSB only, mode 2 */
	outb(0x41, 200);
	outb(0x43, 0xE4); /* read-back status of channel 1 */
	v = inb(0x41);
	ok((v & 0x3F) == 0x14, "pit: read-back status (%#x)", v);
	v = inb(0x41);
	ok(v >= 1 && v <= 200, "pit: LSB-only count read (%d)", v);

	/* channel 0 periodic on GSI 2 */
	ioapic_redir(2, 0x30);
	outb(0x43, 0x34);
	outb(0x40, 0xA9); /* 1193: 1 kHz */
	outb(0x40, 0x04);
	v = wait_irq(0);
	ok(v == 0x30, "pit: channel 0 interrupt on GSI 2 (got %#x)", v);
	eoi(0);
	v = wait_irq(0);
	ok(v == 0x30, "pit: and again: periodic");
	eoi(0);
	ok(platform_poll(&vm) >= 0, "pit: poll reports the next event");
	/* mode 0 with the counter stopped */
	outb(0x43, 0x30);
	ioapic_redir(2, 1 << 16);
	ok(platform_poll(&vm) < 0 || pending(0) < 0, "pit: reprogrammed channel 0 is quiet");
	while (lapic_get_interrupt(lapic(0), true) >= 0)
		eoi(0);
}

/* ---- IOAPIC ---- */

static void test_ioapic(void)
{
	uint64_t e;
	int v;

	mmio_write32(IOAPIC_BASE, 1);
	ok(mmio_read32(IOAPIC_BASE + 0x10) == 0x00170011, "ioapic: version 0x11, 24 pins");
	mmio_write32(IOAPIC_BASE, 0);
	ok(mmio_read32(IOAPIC_BASE + 0x10) == NCPUS << 24, "ioapic: ID as the MADT says");
	mmio_write32(IOAPIC_BASE + 0x10, 0x0F000000);
	ok(mmio_read32(IOAPIC_BASE + 0x10) == 0x0F000000, "ioapic: ID is writable");
	mmio_write32(IOAPIC_BASE + 0x10, NCPUS << 24);
	ok((ioapic_redir_read(5) & (1 << 16)) != 0, "ioapic: pins start masked");
	ioapic_redir(5, 0x5A00000000005F40ull);
	e = ioapic_redir_read(5);
	ok(e == 0x5A00000000000F40ull, "ioapic: redirection entry reads back, no RO bits (%#llx)",
	   (unsigned long long)e);

	/* edge, physical destination vCPU 1 */
	ioapic_redir(5, 0x0100000000000045ull);
	set_irq(5, 1);
	set_irq(5, 0);
	ok(pending(0) < 0 && pending(1) == 0x45, "ioapic: edge interrupt reaches vCPU 1 only");
	v = lapic_get_interrupt(lapic(1), true);
	ok(v == 0x45 && vec_bit(1, 0x100, 0x45) && !vec_bit(1, 0x200, 0x45),
	   "lapic: ack moves IRR to ISR");
	eoi(1);
	ok(!vec_bit(1, 0x100, 0x45), "lapic: EOI clears ISR");

	/* masked pins drop edges */
	ioapic_redir(5, 0x0100000000010045ull);
	set_irq(5, 1);
	set_irq(5, 0);
	ok(pending(1) < 0, "ioapic: masked pin delivers nothing");

	/* level-triggered: remote IRR until EOI */
	ioapic_redir(10, 0x0000000000008050ull);
	set_irq(10, 1);
	ok(ioapic_redir_read(10) & (1 << 14), "ioapic: level interrupt sets remote IRR");
	v = lapic_get_interrupt(lapic(0), true);
	ok(v == 0x50 && vec_bit(0, 0x180, 0x50), "lapic: level interrupt sets TMR");
	set_irq(10, 1);
	ok(pending(0) < 0 && !vec_bit(0, 0x200, 0x50), "ioapic: no redelivery while remote IRR");
	eoi(0);
	ok(pending(0) == 0x50, "ioapic: EOI with the line high delivers again");
	v = lapic_get_interrupt(lapic(0), true);
	set_irq(10, 0);
	eoi(0);
	ok(!(ioapic_redir_read(10) & (1 << 14)) && pending(0) < 0,
	   "ioapic: EOI after deassert clears remote IRR");
	ioapic_redir(10, 1 << 16);

	/* logical flat destination */
	apic_write(0, 0xE0, 0xFFFFFFFF);
	apic_write(1, 0xE0, 0xFFFFFFFF);
	apic_write(0, 0xD0, 0x01000000);
	apic_write(1, 0xD0, 0x02000000);
	ioapic_redir(6, 0x0200000000000846ull);
	set_irq(6, 1);
	set_irq(6, 0);
	ok(pending(0) < 0 && pending(1) == 0x46, "ioapic: logical flat destination");
	lapic_get_interrupt(lapic(1), true);
	eoi(1);

	/* lowest priority to both: exactly one takes it */
	ioapic_redir(6, 0x0300000000000947ull);
	apic_write(1, 0x80, 0x20);
	set_irq(6, 1);
	set_irq(6, 0);
	ok(pending(0) == 0x47 && pending(1) < 0, "ioapic: lowest priority goes to the idle vCPU");
	lapic_get_interrupt(lapic(0), true);
	eoi(0);
	apic_write(1, 0x80, 0);
	ioapic_redir(6, 1 << 16);

	/* NMI delivery */
	ioapic_redir(7, 0x0100000000000400ull);
	set_irq(7, 1);
	set_irq(7, 0);
	ok(lapic_take_nmi(lapic(1)) && !lapic_take_nmi(lapic(1)), "ioapic: NMI delivery");
	ioapic_redir(7, 1 << 16);
}

/* ---- LAPIC ---- */

static void test_lapic(void)
{
	uint64_t msr = 0;
	int v;

	ok(apic_read(0, 0x20) == 0 && apic_read(1, 0x20) == 0x01000000, "lapic: ID is index << 24");
	ok(apic_read(0, 0x30) == 0x50014, "lapic: version 0x50014");
	ok(lapic_msr_read(lapic(0), 0x1B, &msr) && msr == 0xFEE00900, "lapic: BSP APIC base");
	ok(lapic_msr_read(lapic(1), 0x1B, &msr) && msr == 0xFEE00800, "lapic: AP APIC base");
	ok(!lapic_msr_write(lapic(1), 0x1B, 0xFEE00C00), "lapic: no x2APIC");

	/* software enable */
	apic_write(1, 0xF0, 0xFF);
	lapic_accept(lapic(1), 0x61, false);
	ok(pending(1) < 0, "lapic: software-disabled APIC delivers nothing");
	ok(apic_read(1, 0x350) & (1 << 16), "lapic: disabling masks the LVTs");
	apic_write(1, 0xF0, 0x1FF);

	/* TPR */
	lapic_accept(lapic(1), 0x45, false);
	apic_write(1, 0x80, 0x50);
	ok(pending(1) < 0 && apic_read(1, 0xA0) == 0x50, "lapic: TPR above the vector masks it");
	apic_write(1, 0x80, 0x40);
	ok(pending(1) < 0, "lapic: TPR in the same class still masks it");
	apic_write(1, 0x80, 0x30);
	ok(pending(1) == 0x45, "lapic: lower TPR lets it through");
	apic_write(1, 0x80, 0);
	lapic_get_interrupt(lapic(1), true);

	/* ISR priority */
	ok(apic_read(1, 0xA0) == 0x40, "lapic: PPR follows the in-service class");
	lapic_accept(lapic(1), 0x42, false);
	ok(pending(1) < 0, "lapic: same class waits for EOI");
	lapic_accept(lapic(1), 0x91, false);
	ok(pending(1) == 0x91, "lapic: higher class preempts");
	lapic_get_interrupt(lapic(1), true);
	eoi(1);
	ok(vec_bit(1, 0x100, 0x45) && !vec_bit(1, 0x100, 0x91), "lapic: EOI ends the highest ISR");
	eoi(1);
	ok(lapic_get_interrupt(lapic(1), true) == 0x42, "lapic: then the waiting one");
	eoi(1);

	/* IPIs */
	apic_write(0, 0x310, 0x01000000);
	apic_write(0, 0x300, 0x4051);
	ok(pending(1) == 0x51 && pending(0) < 0, "lapic: fixed IPI by physical ID");
	lapic_get_interrupt(lapic(1), true);
	eoi(1);
	apic_write(0, 0x300, 0x44052);
	ok(pending(0) == 0x52 && pending(1) < 0, "lapic: self IPI");
	lapic_get_interrupt(lapic(0), true);
	eoi(0);
	apic_write(1, 0xD0, 0x02000000);
	apic_write(0, 0x310, 0x02000000);
	apic_write(0, 0x300, 0x4853);
	ok(pending(1) == 0x53, "lapic: fixed IPI by logical destination");
	lapic_get_interrupt(lapic(1), true);
	eoi(1);
	apic_write(1, 0x300, 0xC4054);
	ok(pending(0) == 0x54 && pending(1) < 0, "lapic: all-but-self IPI");
	lapic_get_interrupt(lapic(0), true);
	eoi(0);
	apic_write(1, 0x300, 0x84055);
	ok(pending(0) == 0x55 && pending(1) == 0x55, "lapic: all-including-self IPI");
	lapic_get_interrupt(lapic(0), true);
	lapic_get_interrupt(lapic(1), true);
	eoi(0);
	eoi(1);
	apic_write(0, 0x310, 0x01000000);
	apic_write(0, 0x300, 0x4400);
	ok(lapic_take_nmi(lapic(1)), "lapic: NMI IPI");
	ok(!(apic_read(0, 0x300) & (1 << 12)), "lapic: ICR delivery status reads idle");

	/* illegal vector */
	apic_write(0, 0x300, 0x4005);
	apic_write(0, 0x280, 0);
	ok(apic_read(0, 0x280) & 0x20, "lapic: ESR reports a send of an illegal vector");
	apic_write(0, 0x280, 0);
	ok(apic_read(0, 0x280) == 0, "lapic: ESR write clears it");

	/* MSI */
	vm_send_msi(&vm, 0xFEE01000, 0x56);
	ok(pending(1) == 0x56 && pending(0) < 0, "irq: MSI to APIC ID 1");
	lapic_get_interrupt(lapic(1), true);
	eoi(1);
	vm_send_msi(&vm, 0xFED01000, 0x57);
	ok(pending(1) < 0, "irq: a write outside 0xFEExxxxx is no MSI");

	/* timer: one-shot */
	apic_write(0, 0x3E0, 0xB);
	apic_write(0, 0x320, 0x60);
	apic_write(0, 0x380, 25000); /* 1 ms */
	v = wait_irq(0);
	ok(v == 0x60, "lapic: one-shot timer fires (got %#x)", v);
	eoi(0);
	ok(apic_read(0, 0x390) == 0, "lapic: one-shot current count ends at 0");
	ok(lapic_poll_timer(lapic(0)) < 0, "lapic: one-shot timer disarmed after firing");

	/* long count: armed, not fired */
	apic_write(0, 0x3E0, 0xA); /* divide by 128 */
	apic_write(0, 0x380, 0xFFFFFFFF);
	lapic_poll_timer(lapic(0));
	ok(pending(0) < 0 && apic_read(0, 0x390) > 0 && lapic_poll_timer(lapic(0)) > 0,
	   "lapic: long one-shot not fired right after arming");
	apic_write(0, 0x380, 0);
	ok(lapic_poll_timer(lapic(0)) < 0, "lapic: initial count 0 stops the timer");

	/* periodic */
	apic_write(0, 0x3E0, 0xB);
	apic_write(0, 0x320, 0x20061);
	apic_write(0, 0x380, 5000); /* 200 us */
	v = wait_irq(0);
	eoi(0);
	ok(v == 0x61 && wait_irq(0) == 0x61, "lapic: periodic timer fires repeatedly");
	eoi(0);
	ok(apic_read(0, 0x390) > 0 && apic_read(0, 0x390) <= 5000, "lapic: periodic count reloads");
	apic_write(0, 0x320, 0x10061);
	apic_write(0, 0x380, 0);
	while (lapic_get_interrupt(lapic(0), true) >= 0)
		eoi(0);

	/* TSC deadline */
	apic_write(0, 0x320, 0x40062);
	ok(lapic_msr_write(lapic(0), 0x6E0, vm_tsc(&vm) + VM_TSC_HZ * 100) &&
		   (lapic_poll_timer(lapic(0)), pending(0) < 0),
	   "lapic: TSC deadline far ahead does not fire");
	lapic_msr_write(lapic(0), 0x6E0, vm_tsc(&vm) + VM_TSC_HZ / 1000);
	v = wait_irq(0);
	ok(v == 0x62, "lapic: TSC deadline fires (got %#x)", v);
	eoi(0);
	ok(lapic_msr_read(lapic(0), 0x6E0, &msr) && msr == 0, "lapic: deadline MSR clears");
	lapic_msr_write(lapic(0), 0x6E0, 1);
	ok(lapic_get_interrupt(lapic(0), true) == 0x62, "lapic: deadline in the past fires at once");
	eoi(0);
	apic_write(0, 0x320, 0x10000);
	ok(lapic_msr_read(lapic(0), 0x6E0, &msr) && msr == 0,
	   "lapic: deadline MSR reads 0 outside its mode");

	/* guest nonsense must not hurt */
	lapic_mmio_write(lapic(0), 0xFFF, ~0ull, 1);
	lapic_mmio_write(lapic(0), 0x1234, ~0ull, 4);
	ok(lapic_mmio_read(lapic(0), 0x5000, 4) == 0 && lapic_mmio_read(lapic(0), 0x32, 1) == 0x05,
	   "lapic: odd offsets are harmless");
	lapic_accept(lapic(0), 300, false);
	lapic_accept(lapic(0), -1, false);
	ok(pending(0) < 0, "lapic: out-of-range vectors are ignored");
}

/* ---- threads ---- */

#define STORM 200000

static void *msi_storm(void *arg)
{
	for (int i = 0; i < STORM; i++)
		vm_send_msi(&vm, 0xFEE01000, 0x70 + (i & 0x3F));
	return NULL;
}

/* MSIs from another thread while the vCPU's own thread takes and ends
 * them; under -fsanitize=thread this is the LAPIC's race check */
static void test_threads(void)
{
	pthread_t t;
	int taken = 0, v;

	pthread_create(&t, NULL, msi_storm, NULL);
	for (int i = 0; i < STORM; i++) {
		v = lapic_get_interrupt(lapic(1), true);
		if (v >= 0) {
			taken++;
			eoi(1);
		}
		if (i % 64 == 0)
			apic_write(1, 0x80, (uint32_t)(i & 0x70));
	}
	pthread_join(t, NULL);
	apic_write(1, 0x80, 0);
	while ((v = lapic_get_interrupt(lapic(1), true)) >= 0) {
		taken++;
		eoi(1);
	}
	ok(taken > 0 && apic_read(1, 0x100 + 0x30) == 0 && apic_read(1, 0x100 + 0x20) == 0 &&
		   apic_read(1, 0x200 + 0x30) == 0 && apic_read(1, 0x200 + 0x20) == 0,
	   "lapic: MSIs from another thread, all taken and ended (%d)", taken);
}

/* ---- PIC ---- */

static void test_pic(void)
{
	int v;

	ok(inb(0x21) == 0xFB && inb(0xA1) == 0xFF, "pic: starts masked but for the cascade");
	outb(0x20, 0x11);
	outb(0x21, 0x20);
	outb(0x21, 0x04);
	outb(0x21, 0x01);
	outb(0xA0, 0x11);
	outb(0xA1, 0x28);
	outb(0xA1, 0x02);
	outb(0xA1, 0x01);
	outb(0x21, 0xF3);
	outb(0xA1, 0xFF);
	ok(inb(0x21) == 0xF3, "pic: IMR reads back");
	set_irq(3, 1);
	outb(0x20, 0x0A);
	ok(inb(0x20) == 0x08, "pic: OCW3 reads IRR");
	v = lapic_get_interrupt(lapic(0), true);
	ok(v == 0x23, "pic: ExtINT through LINT0 gives the PIC vector (got %#x)", v);
	set_irq(3, 0);
	outb(0x20, 0x0B);
	ok(inb(0x20) == 0x08, "pic: OCW3 reads ISR");
	outb(0x20, 0x20);
	ok(inb(0x20) == 0, "pic: non-specific EOI clears ISR");

	/* slave via the cascade */
	outb(0xA1, 0xFE); /* IRQ 8 */
	set_irq(8, 1);
	v = lapic_get_interrupt(lapic(0), true);
	ok(v == 0x28, "pic: slave interrupt through the cascade (got %#x)", v);
	set_irq(8, 0);
	outb(0xA0, 0x20);
	outb(0x20, 0x20);
	outb(0xA0, 0x0B);
	ok(inb(0xA0) == 0, "pic: slave EOI");

	/* level-triggered via ELCR */
	outb(0x4D1, 0x04); /* IRQ 10 */
	ok(inb(0x4D1) == 0x04, "pic: ELCR reads back");
	outb(0xA1, 0xFB);
	set_irq(10, 1);
	ok(lapic_get_interrupt(lapic(0), true) == 0x2A, "pic: level interrupt");
	outb(0xA0, 0x20);
	outb(0x20, 0x20);
	ok(lapic_get_interrupt(lapic(0), false) == 0x2A, "pic: level line still high asks again");
	set_irq(10, 0);
	ok(lapic_get_interrupt(lapic(0), false) < 0, "pic: and stops when it drops");
	outb(0x4D1, 0);

	/* poll mode */
	outb(0x21, 0xEF);
	set_irq(4, 1);
	outb(0x20, 0x0C);
	ok(inb(0x20) == 0x84, "pic: poll command returns the IRQ");
	set_irq(4, 0);
	outb(0x20, 0x20);

	outb(0x21, 0xFF);
	outb(0xA1, 0xFF);
	ok(lapic_get_interrupt(lapic(0), false) < 0, "pic: all masked again");
}

/* ---- ACPI PM, reset, debug exit ---- */

static void test_acpi(void)
{
	uint32_t a, b;

	ok(pio_in(ACPI_PM1A_CNT, 2) & 1, "acpi: SCI_EN reads set");
	a = (uint32_t)pio_in(ACPI_PM_TMR, 4);
	sleep_us(1000);
	b = (uint32_t)pio_in(ACPI_PM_TMR, 4);
	ok(a != b && a <= 0xFFFFFF && b <= 0xFFFFFF, "acpi: PM timer runs, 24 bits");
	pio_out(ACPI_PM1A_EVT + 2, 0x0121, 2);
	ok(pio_in(ACPI_PM1A_EVT + 2, 2) == 0x0121, "acpi: PM1_EN holds the enables");
	pio_out(ACPI_PM1A_EVT + 2, 0, 2);

	pio_out(ACPI_PM1A_CNT, 3 << 10 | 1 << 13, 2);
	ok(vm.exit_reason == VM_RUNNING, "acpi: other sleep types do nothing");
	pio_out(ACPI_PM1A_CNT, ACPI_S5_SLP_TYP << 10, 2);
	ok(vm.exit_reason == VM_RUNNING, "acpi: SLP_TYP without SLP_EN does nothing");
	pio_out(ACPI_PM1A_CNT, ACPI_S5_SLP_TYP << 10 | 1 << 13, 2);
	ok(vm.exit_reason == VM_POWEROFF, "acpi: S5 powers off");
	reset_exit();

	ok(inb(0x64) == 0, "kbc: status reads empty");
	outb(0x64, 0xFE);
	ok(vm.exit_reason == VM_RESET, "kbc: command 0xFE resets");
	reset_exit();
	outb(ACPI_RESET_PORT, 0x02);
	ok(vm.exit_reason == VM_RUNNING, "reset: 0xcf9 without RST_CPU waits");
	outb(ACPI_RESET_PORT, 0x06);
	ok(vm.exit_reason == VM_RESET, "reset: 0xcf9 value 0x06 resets");
	reset_exit();
	ok(inb(0x92) == 0x02, "port 0x92: A20 on");
	outb(0x92, 0x03);
	ok(vm.exit_reason == VM_RESET, "port 0x92: bit 0 resets");
	reset_exit();
	outb(0x80, 0x55);
	ok(vm.exit_reason == VM_RUNNING, "post: port 0x80 writes are ignored");

	pio_out(DEBUG_EXIT_PORT, 0x10, 1);
	ok(vm.exit_reason == VM_DEBUG_EXIT && vm.exit_status == 0x21, "debug-exit: byte write");
	reset_exit();
	pio_out(DEBUG_EXIT_PORT, 0x1234, 2);
	ok(vm.exit_reason == VM_DEBUG_EXIT && vm.exit_status == 0x2469, "debug-exit: word write");
	reset_exit();
}

int main(void)
{
	struct platform_opts po;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pipe(out_pipe) || pipe(in_pipe) || fcntl(out_pipe[0], F_SETFL, O_NONBLOCK)) {
		perror("pipe");
		return 1;
	}
	if (vm_create(&vm, 16 << 20, NCPUS, &stub_engine, PERSONALITY_KVM, VM_IRQCHIP_USER, 0) < 0) {
		fprintf(stderr, "vm_create failed\n");
		return 1;
	}
	po = (struct platform_opts){ .console_out_fd = out_pipe[1], .debug_exit = true };
	/* static: reachable at exit, as accord's own is (LeakSanitizer) */
	static struct iothread *io;
	io = iothread_create();
	if (!io || platform_init(&vm, &po) < 0 || serial_attach_input(vm.serial, io, in_pipe[0]) ||
	    iothread_start(io)) {
		fprintf(stderr, "platform_init failed\n");
		return 1;
	}
	for (int i = 0; i < NCPUS; i++)
		apic_write(i, 0xF0, 0x1FF);

	test_lapic();
	test_ioapic();
	test_threads();
	test_serial();
	test_rtc();
	test_rtc_old_years();
	test_pit();
	test_pic();
	test_acpi();

	iothread_stop(io);
	platform_destroy(&vm);
	vm_destroy(&vm);
	printf("1..%d\n%d passed, %d failed\n", n_test, n_pass, n_fail);
	return n_fail ? 1 : 0;
}
