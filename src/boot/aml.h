/* A small AML encoder (ACPI spec, chapter 20) for the DSDT: names, integers,
 * strings, packages, buffers with resource templates, scopes, devices and
 * methods. Objects that contain others are opened with *_begin and closed
 * with aml_end, which fills in the PkgLength. Errors (bad names, no memory,
 * unbalanced ends) are sticky and show in aml_ok. */
#ifndef ACCORD_AML_H
#define ACCORD_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 16

struct aml {
	uint8_t *buf;
	size_t len, cap;
	bool err;
	int depth;
	struct {
		size_t start; /* where the PkgLength goes */
		int kind;
	} open[AML_MAX_DEPTH];
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);
/* all objects closed and no error so far */
bool aml_ok(const struct aml *a);

void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_byte(struct aml *a, uint8_t b);

/* a NameString: "\\_SB.PCI0", "^FOO", "_HID"; segments of up to 4 chars */
void aml_namestring(struct aml *a, const char *path);
/* data objects */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* "PNP0A03" as the compressed EISA ID integer */
void aml_eisaid(struct aml *a, const char *id);

/* Name (path, <the data object emitted next>) */
void aml_name(struct aml *a, const char *path);
/* Return (<the object emitted next>) */
void aml_return(struct aml *a);

void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
/* the caller emits exactly n elements */
void aml_package_begin(struct aml *a, unsigned n);
/* a Buffer whose size is what lies between begin and end */
void aml_buffer_begin(struct aml *a);
void aml_end(struct aml *a);

/* Resource template items, inside aml_buffer_begin .. aml_res_end, aml_end.
 * IO(Decode16, base, base, 1, len) */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
/* IRQNoFlags () { irq } : ISA edge, active high */
void aml_res_irq(struct aml *a, unsigned irq);
/* Memory32Fixed (ReadWrite or ReadOnly, base, len) */
void aml_res_mem32(struct aml *a, uint32_t base, uint32_t len, bool writable);
/* Word/DWord/QWordSpace as a producer with fixed bounds, sized to fit
 * [min, min + len): a bridge's bus number, I/O or memory window. */
enum aml_space { AML_SPACE_MEM = 0, AML_SPACE_IO = 1, AML_SPACE_BUS = 2 };
void aml_res_space(struct aml *a, enum aml_space space, uint8_t type_flags, uint64_t min,
		   uint64_t len);
#define AML_MEM_RW 0x01
#define AML_MEM_CACHEABLE 0x02
#define AML_IO_ENTIRE_RANGE 0x03
void aml_res_end(struct aml *a);

#endif
