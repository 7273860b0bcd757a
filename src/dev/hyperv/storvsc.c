/* storvsc: a synthetic SCSI controller with one disk (LUN 0 of target 0)
 * on a disk backend, as drivers/scsi/storvsc_drv.c drives it: the vstor
 * initialisation (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION,
 * QUERY_PROPERTIES, END_INITIALIZATION), then EXECUTE_SRB packets carrying
 * a CDB and, for data, a GPA_DIRECT page list. Each packet gets a
 * completion with the same transaction id. The SCSI target answers what
 * sd and the SCSI scan ask: INQUIRY with its VPD pages, READ CAPACITY,
 * READ/WRITE (FUA honoured), SYNCHRONIZE CACHE, UNMAP, MODE SENSE, REPORT
 * LUNS; everything else is CHECK CONDITION with fixed-format sense. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/hyperv/vmbus.h"
#include "disk/disk.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

/* ba6163d9-04a1-4d29-b605-72e2ffb1dc7f (HV_SCSI_GUID), in guid_t byte order */
static const uint8_t scsi_class[16] = { 0xd9, 0x63, 0x61, 0xba, 0xa1, 0x04, 0x29, 0x4d,
					0xb6, 0x05, 0x72, 0xe2, 0xff, 0xb1, 0xdc, 0x7f };

enum {
	VSTOR_COMPLETE_IO = 1,
	VSTOR_EXECUTE_SRB = 3,
	VSTOR_RESET_LUN = 4,
	VSTOR_RESET_ADAPTER = 5,
	VSTOR_RESET_BUS = 6,
	VSTOR_BEGIN_INITIALIZATION = 7,
	VSTOR_END_INITIALIZATION = 8,
	VSTOR_QUERY_PROTOCOL_VERSION = 9,
	VSTOR_QUERY_PROPERTIES = 10,
};

/* struct vstor_packet: operation, flags, status, then the union */
#define VSTOR_LEN 64
#define VSTOR_HDR 12
/* struct vmscsi_request inside it */
#define SRB_SRB_STATUS (VSTOR_HDR + 2)
#define SRB_SCSI_STATUS (VSTOR_HDR + 3)
#define SRB_PATH (VSTOR_HDR + 5)
#define SRB_TARGET (VSTOR_HDR + 6)
#define SRB_LUN (VSTOR_HDR + 7)
#define SRB_CDB_LENGTH (VSTOR_HDR + 8)
#define SRB_SENSE_LENGTH (VSTOR_HDR + 9)
#define SRB_DATA_LENGTH (VSTOR_HDR + 12)
#define SRB_CDB (VSTOR_HDR + 16)
#define SRB_MIN_LEN (VSTOR_HDR + 36) /* without the win8 extension */
#define SENSE_MAX 20

#define SRB_STATUS_SUCCESS 0x01
#define SRB_STATUS_ERROR 0x04
#define SRB_STATUS_INVALID_LUN 0x20
#define SRB_STATUS_AUTOSENSE_VALID 0x80

/* the storvsc protocol versions of Windows 8 and later: 5.1, 6.0, 6.2 */
#define VMSTOR_VERSION_WIN8 0x0501
#define STATUS_REVISION_MISMATCH 0xc0000059u
#define STATUS_UNSUCCESSFUL 0xc0000001u

#define SECTOR 512u
#define MAX_TRANSFER (512u * 1024)
#define MAX_UNMAP_DESCRIPTORS 64
#define MAX_UNMAP_BLOCKS 0x400000u
/* descriptor, range header, one range of MAX_TRANSFER plus a page of
 * misalignment, the vstor packet */
#define MAX_PKT (16 + 8 + 8 + 8 * (MAX_TRANSFER / VMBUS_PAGE + 2) + VSTOR_LEN)

/* SCSI status, sense keys and additional sense codes (SPC) */
#define GOOD 0x00
#define CHECK_CONDITION 0x02
#define NOT_READY_KEY 0x02
#define MEDIUM_ERROR 0x03
#define ILLEGAL_REQUEST 0x05
#define DATA_PROTECT 0x07
#define ASC_INVALID_OPCODE 0x20
#define ASC_LBA_OUT_OF_RANGE 0x21
#define ASC_INVALID_FIELD_IN_CDB 0x24
#define ASC_INVALID_FIELD_IN_PARAM 0x26
#define ASC_WRITE_PROTECTED 0x27
#define ASC_WRITE_ERROR 0x0c
#define ASC_READ_ERROR 0x11
#define ASC_PARAM_LIST_LENGTH 0x1a

struct storvsc {
	struct vmbus_channel *ch;
	struct disk *disk;
	uint64_t blocks;
	char serial[21];
	uint64_t reads, writes, flushes, unmaps, errors;
	uint64_t io_errors, read_bytes, write_bytes;
	/* the request being served */
	struct vmbus_sg sg[VMBUS_MAX_SG];
	int nsg;
	uint64_t buflen;
	uint8_t sense[SENSE_MAX];
	uint8_t pkt[MAX_PKT];
};

static uint16_t be16(const uint8_t *p)
{
	return p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)be16(p) << 16 | be16(p + 2);
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be(uint8_t *p, uint64_t v, int size)
{
	for (int i = size - 1; i >= 0; i--, v >>= 8)
		p[i] = v;
}

/* copy between the request's guest buffer and a flat one; returns bytes */
static uint64_t sg_copy(struct storvsc *s, uint64_t off, void *buf, uint64_t len, bool to_guest)
{
	uint8_t *p = buf;
	uint64_t done = 0;

	for (int i = 0; i < s->nsg && done < len; i++) {
		uint64_t n;

		if (off >= s->sg[i].len) {
			off -= s->sg[i].len;
			continue;
		}
		n = s->sg[i].len - off;
		if (n > len - done)
			n = len - done;
		if (to_guest)
			memcpy(s->sg[i].p + off, p + done, n);
		else
			memcpy(p + done, s->sg[i].p + off, n);
		done += n;
		off = 0;
	}
	return done;
}

/* disk I/O straight between the image and the guest's pages */
static int sg_disk(struct storvsc *s, uint64_t pos, uint64_t len, bool to_guest)
{
	for (int i = 0; i < s->nsg && len; i++) {
		uint64_t n = s->sg[i].len < len ? s->sg[i].len : len;

		if (to_guest ? disk_read(s->disk, s->sg[i].p, n, pos) : disk_write(s->disk, s->sg[i].p, n, pos))
			return -1;
		pos += n;
		len -= n;
	}
	return 0;
}

/* CHECK CONDITION with fixed-format sense data */
static int sense(struct storvsc *s, uint8_t key, uint8_t asc)
{
	memset(s->sense, 0, sizeof(s->sense));
	s->sense[0] = 0x70;
	s->sense[2] = key;
	s->sense[7] = 10;
	s->sense[12] = asc;
	if (key != ILLEGAL_REQUEST)
		s->errors++;
	if (key == MEDIUM_ERROR)
		s->io_errors++;
	return -1;
}

/* data-in for a small reply: at most the allocation length and the buffer */
static int reply(struct storvsc *s, void *data, uint64_t len, uint64_t alloc, uint64_t *xfer)
{
	if (len > alloc)
		len = alloc;
	if (len > s->buflen)
		len = s->buflen;
	*xfer = sg_copy(s, 0, data, len, true);
	return 0;
}

static int inquiry(struct storvsc *s, const uint8_t *cdb, uint64_t *xfer)
{
	uint8_t d[96] = { 0 };
	uint16_t alloc = be16(cdb + 3);
	uint64_t len;

	if (!(cdb[1] & 1)) {
		if (cdb[2])
			return sense(s, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		d[2] = 5;    /* SPC-3 */
		d[3] = 2;    /* response data format */
		d[4] = 36 - 5;
		d[7] = 0x02; /* command queueing */
		memcpy(d + 8, "accord  ", 8);
		memcpy(d + 16, "storvsc disk    ", 16);
		memcpy(d + 32, "1.0 ", 4);
		return reply(s, d, 36, alloc, xfer);
	}
	d[1] = cdb[2];
	switch (cdb[2]) {
	case 0x00: { /* supported pages */
		static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };

		memcpy(d + 4, pages, sizeof(pages));
		len = 4 + sizeof(pages);
		break;
	}
	case 0x80: /* unit serial number */
		len = strlen(s->serial);
		memcpy(d + 4, s->serial, len);
		len += 4;
		break;
	case 0x83: /* device identification: a T10 vendor id */
		d[4] = 0x02; /* ASCII */
		d[5] = 0x01; /* T10 vendor identification, the logical unit */
		memcpy(d + 8, "accord  ", 8);
		len = strlen(s->serial);
		memcpy(d + 16, s->serial, len);
		d[7] = 8 + len;
		len = 8 + d[7];
		break;
	case 0xb0: /* block limits */
		put_be(d + 8, MAX_TRANSFER / SECTOR, 4);  /* maximum transfer length */
		put_be(d + 12, MAX_TRANSFER / SECTOR, 4); /* optimal transfer length */
		put_be(d + 20, MAX_UNMAP_BLOCKS, 4);
		put_be(d + 24, MAX_UNMAP_DESCRIPTORS, 4);
		put_be(d + 28, VMBUS_PAGE / SECTOR, 4); /* optimal unmap granularity */
		len = 64;
		break;
	case 0xb1: /* block device characteristics: not rotating */
		put_be(d + 4, 1, 2);
		len = 64;
		break;
	case 0xb2: /* logical block provisioning: UNMAP */
		d[5] = 0x80;
		len = 8;
		break;
	default:
		return sense(s, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	}
	put_be(d + 2, len - 4, 2);
	return reply(s, d, len, alloc, xfer);
}

/* MODE SENSE (6) and (10): the caching page (write cache on, so that the
 * guest flushes) and the control page; no block descriptors */
static int mode_sense(struct storvsc *s, const uint8_t *cdb, bool ten, uint64_t *xfer)
{
	uint8_t d[64] = { 0 };
	unsigned page = cdb[2] & 0x3f, pc = cdb[2] >> 6, hdr = ten ? 8 : 4, len = hdr;
	uint16_t alloc = ten ? be16(cdb + 7) : cdb[4];

	if (pc == 3)
		return sense(s, ILLEGAL_REQUEST, 0x39); /* saving parameters not supported */
	if (page != 0x08 && page != 0x0a && page != 0x3f)
		return sense(s, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	if (page == 0x08 || page == 0x3f) {
		d[len] = 0x08;
		d[len + 1] = 0x12;
		if (pc != 1)
			d[len + 2] = 0x04; /* WCE */
		len += 20;
	}
	if (page == 0x0a || page == 0x3f) {
		d[len] = 0x0a;
		d[len + 1] = 0x0a;
		len += 12;
	}
	/* device-specific parameter: write protect, DPO and FUA */
	if (ten) {
		put_be(d, len - 2, 2);
		d[3] = (s->disk->ro ? 0x80 : 0) | 0x10;
	} else {
		d[0] = len - 1;
		d[2] = (s->disk->ro ? 0x80 : 0) | 0x10;
	}
	return reply(s, d, len, alloc, xfer);
}

static int unmap(struct storvsc *s, const uint8_t *cdb)
{
	uint8_t d[8 + 16 * MAX_UNMAP_DESCRIPTORS];
	uint16_t plen = be16(cdb + 7);
	uint64_t got;
	unsigned n;

	if (s->disk->ro)
		return sense(s, DATA_PROTECT, ASC_WRITE_PROTECTED);
	if (!plen)
		return 0;
	if (plen < 8 || plen > s->buflen)
		return sense(s, ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
	got = sg_copy(s, 0, d, plen < sizeof(d) ? plen : sizeof(d), false);
	n = be16(d + 2) / 16;
	if (n > MAX_UNMAP_DESCRIPTORS || 8 + 16 * n > got)
		return sense(s, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_PARAM);
	for (unsigned i = 0; i < n; i++) {
		uint64_t lba = be64(d + 8 + 16 * i);
		uint32_t count = be32(d + 16 + 16 * i);

		if (count > MAX_UNMAP_BLOCKS || lba > s->blocks || count > s->blocks - lba)
			return sense(s, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	}
	for (unsigned i = 0; i < n; i++)
		disk_discard(s->disk, be64(d + 8 + 16 * i) * SECTOR, (uint64_t)be32(d + 16 + 16 * i) * SECTOR);
	s->unmaps++;
	return 0;
}

static int rw(struct storvsc *s, const uint8_t *cdb, uint64_t lba, uint32_t count, bool write, uint64_t *xfer)
{
	uint64_t bytes = (uint64_t)count * SECTOR;

	if (write && s->disk->ro)
		return sense(s, DATA_PROTECT, ASC_WRITE_PROTECTED);
	if (lba > s->blocks || count > s->blocks - lba)
		return sense(s, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
	if (bytes > s->buflen)
		return sense(s, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
	if (sg_disk(s, lba * SECTOR, bytes, !write))
		return sense(s, MEDIUM_ERROR, write ? ASC_WRITE_ERROR : ASC_READ_ERROR);
	/* FUA: the data is on stable storage before the completion */
	if (write && (cdb[1] & 0x08) && disk_flush(s->disk))
		return sense(s, MEDIUM_ERROR, ASC_WRITE_ERROR);
	if (write) {
		s->writes++;
		s->write_bytes += bytes;
	} else {
		s->reads++;
		s->read_bytes += bytes;
	}
	*xfer = bytes;
	return 0;
}

/* one CDB for LUN 0; 0 for GOOD, -1 with s->sense filled */
static int scsi_command(struct storvsc *s, const uint8_t *cdb, uint64_t *xfer)
{
	uint8_t d[32] = { 0 };
	uint64_t last = s->blocks ? s->blocks - 1 : 0;

	*xfer = 0;
	switch (cdb[0]) {
	case 0x00: /* TEST UNIT READY */
	case 0x1b: /* START STOP UNIT */
	case 0x1e: /* PREVENT ALLOW MEDIUM REMOVAL */
		return 0;
	case 0x03: /* REQUEST SENSE: nothing pending */
		d[0] = 0x70;
		d[7] = 10;
		return reply(s, d, 18, cdb[4], xfer);
	case 0x12:
		return inquiry(s, cdb, xfer);
	case 0x25: /* READ CAPACITY (10) */
		put_be(d, last > 0xffffffffu ? 0xffffffffu : last, 4);
		put_be(d + 4, SECTOR, 4);
		return reply(s, d, 8, 8, xfer);
	case 0x9e: /* SERVICE ACTION IN (16) */
		if ((cdb[1] & 0x1f) != 0x10)
			return sense(s, ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB);
		put_be(d, last, 8);
		put_be(d + 8, SECTOR, 4);
		d[14] = s->disk->ro ? 0 : 0x80; /* LBPME: UNMAP works */
		return reply(s, d, 32, be32(cdb + 10), xfer);
	case 0x28: /* READ (10) */
	case 0x2a: /* WRITE (10) */
		return rw(s, cdb, be32(cdb + 2), be16(cdb + 7), cdb[0] == 0x2a, xfer);
	case 0x88: /* READ (16) */
	case 0x8a: /* WRITE (16) */
		return rw(s, cdb, be64(cdb + 2), be32(cdb + 10), cdb[0] == 0x8a, xfer);
	case 0x2f: /* VERIFY (10): the image has no media errors to find */
		if (be32(cdb + 2) > s->blocks || be16(cdb + 7) > s->blocks - be32(cdb + 2))
			return sense(s, ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return 0;
	case 0x35: /* SYNCHRONIZE CACHE (10) */
	case 0x91: /* SYNCHRONIZE CACHE (16) */
		s->flushes++;
		if (disk_flush(s->disk))
			return sense(s, MEDIUM_ERROR, ASC_WRITE_ERROR);
		return 0;
	case 0x42:
		return unmap(s, cdb);
	case 0x1a: /* MODE SENSE (6) */
	case 0x5a: /* MODE SENSE (10) */
		return mode_sense(s, cdb, cdb[0] == 0x5a, xfer);
	case 0xa0: /* REPORT LUNS: LUN 0 only */
		put_be(d, 8, 4);
		return reply(s, d, 16, be32(cdb + 6), xfer);
	default:
		return sense(s, ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
	}
}

/* An address other than 0:0:0 (channel, target, LUN) has no unit. The
 * scan learns it from INQUIRY data (peripheral qualifier 3: storvsc turns
 * every INQUIRY error into success, so an error would read as an empty
 * disk) and from an empty REPORT LUNS; anything else is
 * SRB_STATUS_INVALID_LUN (returns 1). */
static int scsi_absent(struct storvsc *s, const uint8_t *cdb, uint64_t *xfer)
{
	uint8_t d[36] = { 0x7f };

	*xfer = 0;
	switch (cdb[0]) {
	case 0x12:
		if (cdb[1] & 1) {
			d[1] = cdb[2];
			return reply(s, d, 4, be16(cdb + 3), xfer);
		}
		d[2] = 5;
		d[3] = 2;
		d[4] = 36 - 5;
		return reply(s, d, 36, be16(cdb + 3), xfer);
	case 0xa0:
		memset(d, 0, 8);
		return reply(s, d, 8, be32(cdb + 6), xfer);
	default:
		return 1;
	}
}

/* EXECUTE_SRB: fill in the reply's vmscsi_request */
static void execute_srb(struct storvsc *s, uint8_t *v)
{
	uint8_t cdb[16] = { 0 };
	uint64_t xfer = 0;
	uint32_t want = 0;
	int rc;

	memcpy(&want, v + SRB_DATA_LENGTH, 4);
	memcpy(cdb, v + SRB_CDB, v[SRB_CDB_LENGTH] < 16 ? v[SRB_CDB_LENGTH] : 16);
	if (want < s->buflen)
		s->buflen = want;
	if (v[SRB_PATH] || v[SRB_TARGET] || v[SRB_LUN]) {
		rc = scsi_absent(s, cdb, &xfer);
		if (rc > 0) {
			v[SRB_SRB_STATUS] = SRB_STATUS_INVALID_LUN;
			v[SRB_SCSI_STATUS] = GOOD;
			v[SRB_SENSE_LENGTH] = 0;
			memset(v + SRB_DATA_LENGTH, 0, 4);
			return;
		}
	} else {
		rc = scsi_command(s, cdb, &xfer);
	}
	memset(v + SRB_CDB, 0, SENSE_MAX);
	if (rc) {
		v[SRB_SRB_STATUS] = SRB_STATUS_ERROR | SRB_STATUS_AUTOSENSE_VALID;
		v[SRB_SCSI_STATUS] = CHECK_CONDITION;
		v[SRB_SENSE_LENGTH] = 18;
		memcpy(v + SRB_CDB, s->sense, 18);
		xfer = 0;
	} else {
		v[SRB_SRB_STATUS] = SRB_STATUS_SUCCESS;
		v[SRB_SCSI_STATUS] = GOOD;
		v[SRB_SENSE_LENGTH] = 0;
	}
	memcpy(v + SRB_DATA_LENGTH, &(uint32_t){ xfer }, 4);
}

/* one packet from the guest; false when the channel had to stop */
static bool stor_packet(struct storvsc *s, const uint8_t *pkt, uint32_t len)
{
	struct vmbus_pkt_desc d;
	uint32_t off, dlen, op, status = 0;
	uint8_t v[VSTOR_LEN] = { 0 };
	uint16_t version;

	memcpy(&d, pkt, sizeof(d));
	off = d.offset8 * 8u;
	dlen = len - off;
	if (d.type != VMBUS_PKT_INBAND && d.type != VMBUS_PKT_GPA_DIRECT) {
		vmbus_chan_fail(s->ch, "storvsc: packet type %u", d.type);
		return false;
	}
	if (dlen < VSTOR_HDR) {
		vmbus_chan_fail(s->ch, "storvsc: a %u-byte request", dlen);
		return false;
	}
	memcpy(v, pkt + off, dlen < VSTOR_LEN ? dlen : VSTOR_LEN);
	memcpy(&op, v, 4);
	s->nsg = 0;
	s->buflen = 0;
	if (d.type == VMBUS_PKT_GPA_DIRECT) {
		s->nsg = vmbus_pkt_sg(s->ch->vm, pkt, len, s->sg, VMBUS_MAX_SG, &s->buflen);
		if (s->nsg < 0) {
			vmbus_chan_fail(s->ch, "storvsc: a page list outside guest RAM or malformed");
			return false;
		}
	}
	switch (op) {
	case VSTOR_BEGIN_INITIALIZATION:
	case VSTOR_END_INITIALIZATION:
	case VSTOR_RESET_LUN:
	case VSTOR_RESET_ADAPTER:
	case VSTOR_RESET_BUS:
		memset(v + VSTOR_HDR, 0, VSTOR_LEN - VSTOR_HDR);
		break;
	case VSTOR_QUERY_PROTOCOL_VERSION:
		memcpy(&version, v + VSTOR_HDR, 2);
		if (version < VMSTOR_VERSION_WIN8 || version > 0x0602)
			status = STATUS_REVISION_MISMATCH;
		break;
	case VSTOR_QUERY_PROPERTIES:
		memset(v + VSTOR_HDR, 0, VSTOR_LEN - VSTOR_HDR);
		/* max_channel_cnt 0, no multi-channel flag */
		memcpy(v + VSTOR_HDR + 12, &(uint32_t){ MAX_TRANSFER }, 4);
		break;
	case VSTOR_EXECUTE_SRB:
		if (dlen < SRB_MIN_LEN) {
			vmbus_chan_fail(s->ch, "storvsc: a %u-byte SRB", dlen);
			return false;
		}
		execute_srb(s, v);
		break;
	default:
		status = STATUS_UNSUCCESSFUL;
		break;
	}
	op = VSTOR_COMPLETE_IO;
	memcpy(v, &op, 4);
	memset(v + 4, 0, 4);
	memcpy(v + 8, &status, 4);
	return vmbus_chan_send(s->ch, VMBUS_PKT_COMP, 0, d.trans_id, v, VSTOR_LEN) == 0;
}

static void stor_notify(struct vmbus_channel *ch)
{
	struct storvsc *s = ch->opaque;

	for (;;) {
		int len = ring_peek(&ch->in, s->pkt, sizeof(s->pkt)), room;

		if (len < 0)
			vmbus_chan_fail(ch, "storvsc: corrupt request ring or a packet over %zu bytes",
					sizeof(s->pkt));
		if (len <= 0)
			return;
		/* a request is taken only when its completion has room; if it
		 * has none, the guest signals once it has read some */
		room = ring_room(&ch->out, VSTOR_LEN);
		if (room < 0)
			vmbus_chan_fail(ch, "storvsc: the guest's receive ring has corrupt indices");
		if (room <= 0 || !stor_packet(s, s->pkt, len))
			return;
		if (ring_consume(&ch->in, len))
			vmbus_chan_kick(ch);
	}
}

static const struct vmbus_dev_ops stor_ops = { .notify = stor_notify };

#define SNAP_STOR_VERSION 1

/* A request is served whole on the vCPU that signalled it (its
 * completion is in the ring before the signal returns), so none is in
 * flight while the vCPUs are paused: what the guest wrote is flushed to
 * the image before the snapshot that assumes it. The protocol keeps no
 * state beyond the rings (vmbus.c saves them); the image's size notices
 * a disk that is not the one the guest had. */
static int stor_save(void *opaque, struct snap_buf *b, char *err, size_t n)
{
	struct storvsc *s = opaque;
	uint32_t ver = SNAP_STOR_VERSION;
	uint64_t c[9] = { s->blocks, s->reads,	   s->writes,	   s->flushes,	   s->unmaps,
			  s->errors, s->io_errors, s->read_bytes, s->write_bytes };

	if (!s->disk) {
		snprintf(err, n, "a removed storvsc disk cannot be saved");
		return SNAP_REFUSED;
	}
	if (!s->disk->ro && disk_flush(s->disk) < 0) {
		snprintf(err, n, "cannot flush the disk %s", s->disk->name);
		return -1;
	}
	snap_put(b, &ver, 4);
	snap_put(b, c, sizeof(c));
	return 0;
}

static int stor_load(void *opaque, struct snap_rd *r, char *err, size_t n)
{
	struct storvsc *s = opaque;
	uint32_t ver;
	uint64_t c[9];

	if (!snap_get(r, &ver, 4) || ver != SNAP_STOR_VERSION || !snap_get(r, c, sizeof(c))) {
		snprintf(err, n, "storvsc state of another version, or truncated");
		return -1;
	}
	if (!s->disk || c[0] != s->blocks) {
		snprintf(err, n, "the disk %s has %llu sectors, the snapshot's had %llu", s->disk ? s->disk->name : "",
			 (unsigned long long)s->blocks, (unsigned long long)c[0]);
		return -1;
	}
	s->reads = c[1];
	s->writes = c[2];
	s->flushes = c[3];
	s->unmaps = c[4];
	s->errors = c[5];
	s->io_errors = c[6];
	s->read_bytes = c[7];
	s->write_bytes = c[8];
	return 0;
}

struct storvsc *storvsc_create(struct vmbus *vb, const char *path, bool ro)
{
	static unsigned count;
	struct storvsc *s = calloc(1, sizeof(*s));
	uint8_t instance[16] = { 0x61, 0x63, 0x63, 0x6f, 0x72, 0x64, 0x00, 0x40, 0x80, 0x53, 0x43, 0x53, 0x49 };

	if (!s)
		return NULL;
	s->disk = disk_open(path, ro);
	if (!s->disk) {
		free(s);
		return NULL;
	}
	s->blocks = s->disk->size / SECTOR;
	/* VPD 0x80 holds 20 bytes; the file name is the serial, as for virtio-blk */
	memcpy(s->serial, s->disk->name, strnlen(s->disk->name, sizeof(s->serial) - 1));
	instance[14] = count >> 8;
	instance[15] = count++;
	s->ch = vmbus_add_channel(vb, scsi_class, instance, &stor_ops, s);
	if (!s->ch || vm_snap_register(s->ch->vm, "storvsc", stor_save, stor_load, s)) {
		disk_close(s->disk);
		free(s);
		return NULL;
	}
	return s;
}

void storvsc_counters(struct storvsc *s, struct storvsc_counters *c)
{
	vmbus_lock(s->ch->vb);
	*c = (struct storvsc_counters){ .reads = s->reads, .writes = s->writes, .flushes = s->flushes,
					.unmaps = s->unmaps, .io_errors = s->io_errors,
					.read_bytes = s->read_bytes, .write_bytes = s->write_bytes };
	vmbus_unlock(s->ch->vb);
}

void storvsc_remove(struct storvsc *s)
{
	vmbus_rescind(s->ch);
	disk_close(s->disk);
	s->disk = NULL;
}
