/* The three reports of a certify run: report.json (for programs),
 * junit.xml (for CI systems, one testsuite per target) and report.html (for
 * people: tests down, targets across, self-contained). Every string that
 * came from a guest was sanitized when it was read and is escaped here. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "certify/internal.h"

static void iso_time(time_t t, char *buf, size_t n)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *target_verdict(const struct target *t)
{
	if (!t->available)
		return "unavailable";
	return target_certified(t) ? "certified" : "not certified";
}

static int finish(FILE *f)
{
	int bad = ferror(f);
	if (fclose(f) || bad)
		return -1;
	return 0;
}

/* ---- JSON ---- */

int report_json(const struct certify *c, const char *path)
{
	FILE *f = fopen(path, "w");
	char when[32];
	if (!f)
		return -1;
	iso_time(c->started, when, sizeof(when));
	fprintf(f, "{\n  \"format\": \"accord-certify-1\",\n  \"started\": \"%s\",\n  \"seconds\": %.0f,\n", when,
		c->seconds);
	fputs("  \"host\": ", f);
	put_json_string(f, c->host);
	fputs(",\n  \"kernels_dir\": ", f);
	put_json_string(f, c->kernels_dir_shown);
	fprintf(f, ",\n  \"timeout_seconds\": %d,\n  \"targets\": [", c->timeout);
	for (int ti = 0; ti < c->ntargets; ti++) {
		const struct target *t = &c->targets[ti];
		fprintf(f, "%s\n    {\n      \"name\": ", ti ? "," : "");
		put_json_string(f, t->name);
		fprintf(f, ",\n      \"available\": %s,\n      \"reason\": ", t->available ? "true" : "false");
		if (t->available)
			fputs("null", f);
		else
			put_json_string(f, t->reason);
		fputs(",\n      \"machine\": ", f);
		if (t->available)
			put_json_string(f, t->machine);
		else
			fputs("null", f);
		fprintf(f, ",\n      \"verdict\": \"%s\",\n      \"certified\": %s,\n", target_verdict(t),
			target_certified(t) ? "true" : "false");
		fprintf(f, "      \"passed\": %u, \"failed\": %u, \"skipped\": %u, \"errors\": %u,\n", t->passed,
			t->failed, t->skipped, t->errors);
		fprintf(f, "      \"seconds\": %.2f,\n      \"runs\": [", t->seconds);
		int nr = 0;
		for (int ki = 0; ki < c->nkernels; ki++) {
			const struct run_info *ri = &c->runs[ki * c->ntargets + ti];
			if (!ri->ran)
				continue;
			fprintf(f, "%s\n        { \"kernel\": ", nr++ ? "," : "");
			put_json_string(f, c->kernels[ki].label);
			bool clean = false;
			for (int i = 0; i < c->nrows; i++)
				if (c->rows[i].kernel == ki && !strcmp(c->rows[i].name, RUN_ROW))
					clean = c->rows[i].cells[ti].v == V_PASS;
			fprintf(f, ", \"clean\": %s, \"seconds\": %.2f, \"passed\": %u, \"failed\": %u, "
				   "\"skipped\": %u, \"serial_log\": ",
				clean ? "true" : "false", ri->seconds, ri->passed, ri->failed, ri->skipped);
			put_json_string(f, ri->log_out);
			fputs(", \"stderr_log\": ", f);
			put_json_string(f, ri->log_err);
			fputs(" }", f);
		}
		fprintf(f, "%s]\n    }", nr ? "\n      " : "");
	}
	fputs("\n  ],\n  \"kernels\": [", f);
	for (int ki = 0; ki < c->nkernels; ki++) {
		fprintf(f, "%s\n    { \"name\": ", ki ? "," : "");
		put_json_string(f, c->kernels[ki].label);
		fputs(", \"file\": ", f);
		put_json_string(f, c->kernels[ki].shown);
		fprintf(f, ", \"protocol\": \"%s\", \"machine\": ", c->kernels[ki].protocol);
		put_json_string(f, c->kernels[ki].options);
		fputs(" }", f);
	}
	fputs("\n  ],\n  \"tests\": [", f);
	for (int i = 0; i < c->nrows; i++) {
		const struct row *r = &c->rows[i];
		const struct kernel *k = &c->kernels[r->kernel];
		fprintf(f, "%s\n    {\n      \"id\": ", i ? "," : "");
		char *id = NULL;
		if (asprintf(&id, "%s/%s", k->label, r->name) < 0)
			return fclose(f), -1;
		put_json_string(f, id);
		free(id);
		fputs(",\n      \"kernel\": ", f);
		put_json_string(f, k->label);
		fputs(",\n      \"name\": ", f);
		put_json_string(f, r->name);
		fprintf(f, ",\n      \"run\": %s,\n      \"note\": ", strcmp(r->name, RUN_ROW) ? "false" : "true");
		if (r->note)
			put_json_string(f, r->note);
		else
			fputs("null", f);
		fputs(",\n      \"results\": {", f);
		for (int ti = 0; ti < c->ntargets; ti++) {
			fprintf(f, "%s\n        ", ti ? "," : "");
			put_json_string(f, c->targets[ti].name);
			fprintf(f, ": { \"verdict\": \"%s\", \"detail\": ", verdict_name(r->cells[ti].v));
			if (r->cells[ti].detail)
				put_json_string(f, r->cells[ti].detail);
			else
				fputs("null", f);
			fputs(" }", f);
		}
		fputs("\n      }\n    }", f);
	}
	fputs("\n  ]\n}\n", f);
	return finish(f);
}

/* ---- JUnit XML ---- */

int report_junit(const struct certify *c, const char *path)
{
	FILE *f = fopen(path, "w");
	char when[32];
	unsigned tests = 0, failures = 0, errors = 0, skipped = 0;
	if (!f)
		return -1;
	iso_time(c->started, when, sizeof(when));
	for (int ti = 0; ti < c->ntargets; ti++)
		for (int i = 0; i < c->nrows; i++) {
			enum verdict v = c->rows[i].cells[ti].v;
			tests++;
			failures += v == V_FAIL;
			errors += v == V_ERROR;
			skipped += v == V_SKIP || v == V_UNAVAILABLE;
		}
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<testsuites name=\"accord certify\" tests=\"%u\" failures=\"%u\" errors=\"%u\" skipped=\"%u\" "
		   "time=\"%.0f\" timestamp=\"%s\">\n",
		tests, failures, errors, skipped, c->seconds, when);
	for (int ti = 0; ti < c->ntargets; ti++) {
		const struct target *t = &c->targets[ti];
		unsigned sf = 0, se = 0, ss = 0;
		for (int i = 0; i < c->nrows; i++) {
			enum verdict v = c->rows[i].cells[ti].v;
			sf += v == V_FAIL;
			se += v == V_ERROR;
			ss += v == V_SKIP || v == V_UNAVAILABLE;
		}
		fputs("  <testsuite name=\"", f);
		put_xml(f, t->name);
		fprintf(f, "\" tests=\"%d\" failures=\"%u\" errors=\"%u\" skipped=\"%u\" time=\"%.2f\" timestamp=\"%s\">\n",
			c->nrows, sf, se, ss, t->seconds, when);
		fputs("    <properties>\n", f);
		fprintf(f, "      <property name=\"available\" value=\"%s\"/>\n", t->available ? "true" : "false");
		fprintf(f, "      <property name=\"verdict\" value=\"%s\"/>\n", target_verdict(t));
		if (!t->available) {
			fputs("      <property name=\"reason\" value=\"", f);
			put_xml(f, t->reason);
			fputs("\"/>\n", f);
		} else {
			fputs("      <property name=\"machine\" value=\"", f);
			put_xml(f, t->machine);
			fputs("\"/>\n", f);
		}
		fputs("    </properties>\n", f);
		for (int i = 0; i < c->nrows; i++) {
			const struct row *r = &c->rows[i];
			const struct cell *cell = &r->cells[ti];
			bool run = !strcmp(r->name, RUN_ROW);
			const struct run_info *ri = &c->runs[r->kernel * c->ntargets + ti];
			fputs("    <testcase classname=\"", f);
			put_xml(f, c->kernels[r->kernel].label);
			fputs("\" name=\"", f);
			put_xml(f, r->name);
			fprintf(f, "\" time=\"%.2f\"", run ? ri->seconds : 0.0);
			const char *tag = cell->v == V_FAIL ? "failure"
					: cell->v == V_ERROR ? "error"
					: cell->v == V_SKIP || cell->v == V_UNAVAILABLE ? "skipped" : NULL;
			if (!tag) {
				fputs("/>\n", f);
				continue;
			}
			fprintf(f, ">\n      <%s message=\"", tag);
			if (cell->v == V_UNAVAILABLE)
				fputs("target unavailable: ", f);
			/* the message is the first line; the element holds it all */
			const char *d = cell->detail ? cell->detail : "";
			char *first = strndup(d, strcspn(d, "\n"));
			put_xml(f, first);
			free(first);
			if (r->note) {
				fputs(" (", f);
				put_xml(f, r->note);
				fputc(')', f);
			}
			fputs("\">", f);
			put_xml(f, d);
			fprintf(f, "</%s>\n    </testcase>\n", tag);
		}
		fputs("  </testsuite>\n", f);
	}
	fputs("</testsuites>\n", f);
	return finish(f);
}

/* ---- HTML ---- */

static const char html_style[] =
	"body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1d2330;"
	"background:#fafbfc}\n"
	"h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}\n"
	".meta{color:#5b6475;margin:8px 0 16px}\n"
	"table{border-collapse:collapse;background:#fff}\n"
	"th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left;vertical-align:top}\n"
	"thead th{background:#eef1f5;position:sticky;top:0;z-index:1}\n"
	".targets td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
	".certified{background:#d6f5dd;color:#0f5323;font-weight:600}\n"
	".notcertified{background:#fbd9d9;color:#7d1111;font-weight:600}\n"
	".unavailable{background:#eceef1;color:#5b6475}\n"
	".matrix td.name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;"
	"white-space:nowrap}\n"
	".matrix td.v{min-width:120px;max-width:360px;font-weight:600;font-size:13px}\n"
	".matrix tr.verdicts td{font-size:12px;font-weight:600}\n"
	".matrix tr.verdicts .reason{font-weight:normal}\n"
	".matrix tr.kernel th{background:#dde3ec;font-size:14px}\n"
	".matrix tr.kernel span{font-weight:normal;color:#5b6475;margin-left:8px}\n"
	".v-pass{background:#e3f6e7;color:#126b2c}\n"
	".v-fail{background:#fbdcdc;color:#8f1515}\n"
	".v-skip{background:#fdf3d0;color:#6f5500}\n"
	".v-error{background:#f6d9f1;color:#6e1260}\n"
	".v-unavailable{background:repeating-linear-gradient(45deg,#f1f2f4,#f1f2f4 6px,#e6e8eb 6px,#e6e8eb 12px);"
	"color:#6b7385;font-weight:normal!important}\n"
	".v-none{background:#fff}\n"
	"details summary{cursor:pointer}\n"
	"details pre{white-space:pre-wrap;word-break:break-word;font-weight:normal;font-size:12px;margin:4px 0 0;"
	"max-height:320px;overflow:auto;background:rgba(255,255,255,.6);padding:4px;color:#1d2330}\n"
	".note{display:block;font-family:system-ui,sans-serif;font-size:12px;color:#8a5a00;white-space:normal;"
	"max-width:420px}\n"
	".logs,.why{font-weight:normal;font-size:12px}\n"
	".logs a{color:#2a4f9b;margin-right:6px}\n"
	".legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #d5d9e0;font-size:12px;"
	"font-weight:600}\n"
	".filter{margin:8px 0 10px;display:inline-block}\n"
	"#only:checked~table tr.agree{display:none}\n";

static void html_cell(FILE *f, const struct certify *c, const struct row *r, int ti)
{
	const struct cell *cell = &r->cells[ti];
	const struct run_info *ri = &c->runs[r->kernel * c->ntargets + ti];
	const char *v = verdict_name(cell->v);
	bool run = !strcmp(r->name, RUN_ROW);

	fprintf(f, "<td class=\"v v-%s\"", v);
	if (cell->detail) {
		fputs(" title=\"", f);
		put_xml(f, cell->detail);
		fputc('"', f);
	}
	fputc('>', f);
	if (cell->detail && (cell->v == V_FAIL || cell->v == V_ERROR || cell->v == V_SKIP)) {
		/* a failure's reason is one short line from the guest: show it */
		bool unreported = cell->v == V_ERROR && !strncmp(cell->detail, "not reported", 12);
		fprintf(f, "<details%s><summary>%s%s</summary><pre>", cell->v == V_FAIL ? " open" : "", v,
			unreported ? " <span class=\"why\">(not reported)</span>" : "");
		put_xml(f, cell->detail);
		fputs("</pre></details>", f);
	} else {
		fputs(v, f);
	}
	if (run && ri->ran && ri->log_out[0]) {
		fprintf(f, "<div class=\"logs\">%.1f s &middot; <a href=\"", ri->seconds);
		put_xml(f, ri->log_out);
		fputs("\">serial</a><a href=\"", f);
		put_xml(f, ri->log_err);
		fputs("\">stderr</a></div>", f);
	}
	fputs("</td>", f);
}

/* a row all available targets passed (or all skipped alike) is hidden by
 * the "differences only" filter */
static bool row_agrees(const struct certify *c, const struct row *r)
{
	enum verdict seen = V_NONE;
	for (int ti = 0; ti < c->ntargets; ti++) {
		enum verdict v = r->cells[ti].v;
		if (v == V_UNAVAILABLE)
			continue;
		if (v != V_PASS && v != V_SKIP)
			return false;
		if (seen != V_NONE && v != seen)
			return false;
		seen = v;
	}
	return true;
}

int report_html(const struct certify *c, const char *path)
{
	FILE *f = fopen(path, "w");
	char when[32];
	if (!f)
		return -1;
	iso_time(c->started, when, sizeof(when));
	fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		   "<title>accord certification report</title>\n<style>\n%s</style>\n</head>\n<body>\n",
		html_style);
	fputs("<h1>accord certification report</h1>\n<p class=\"meta\">", f);
	fprintf(f, "%s &middot; ", when);
	put_xml(f, c->host);
	fputs(" &middot; kernels from <code>", f);
	put_xml(f, c->kernels_dir_shown);
	fprintf(f, "</code> &middot; timeout %d s per run &middot; %.0f s in all</p>\n", c->timeout, c->seconds);

	fputs("<h2>Targets</h2>\n<table class=\"targets\">\n<thead><tr><th>target</th><th>verdict</th>"
	      "<th>passed</th><th>failed</th><th>skipped</th><th>errors</th><th>time</th></tr></thead>\n<tbody>\n",
	      f);
	for (int ti = 0; ti < c->ntargets; ti++) {
		const struct target *t = &c->targets[ti];
		const char *cls = !t->available ? "unavailable" : target_certified(t) ? "certified" : "notcertified";
		fputs("<tr><td><b>", f);
		put_xml(f, t->name);
		fputs("</b>", f);
		if (t->available) {
			fputs("<br><span class=\"meta\">", f);
			put_xml(f, t->machine);
			fputs("</span>", f);
		}
		fprintf(f, "</td><td class=\"%s\">%s", cls, target_verdict(t));
		if (!t->available) {
			fputs(": ", f);
			put_xml(f, t->reason);
			fputs("</td><td colspan=\"5\"></td></tr>\n", f);
			continue;
		}
		fprintf(f, "</td><td class=\"num\">%u</td><td class=\"num\">%u</td><td class=\"num\">%u</td>"
			   "<td class=\"num\">%u</td><td class=\"num\">%.1f s</td></tr>\n",
			t->passed, t->failed, t->skipped, t->errors, t->seconds);
	}
	fputs("</tbody></table>\n", f);
	fputs("<p class=\"meta\">A target is <b>certified</b> when none of its tests failed and none of its runs "
	      "ended in an error. Every guest test kernel is booted once per boot protocol; its <b>(run)</b> row "
	      "says whether the run ended cleanly (DONE line, matching counts, debug-exit status). A family runs on "
	      "the machine <code>guest/families</code> gives it (vCPUs, a virtio-blk disk), shown beside its name. "
	      "<b>os.linux</b> boots the stock Linux guest and checks what it reports against the machine it was "
	      "given; its (run) row says whether it booted, reported and powered off.</p>\n",
	      f);

	fputs("<h2>Results</h2>\n<p class=\"legend\"><span class=\"v-pass\">pass</span><span class=\"v-fail\">fail"
	      "</span><span class=\"v-skip\">skip</span><span class=\"v-error\">error</span>"
	      "<span class=\"v-unavailable\">unavailable</span> hover over a cell, or open it, for the detail</p>\n",
	      f);
	fputs("<input type=\"checkbox\" id=\"only\"> <label class=\"filter\" for=\"only\">show only the tests that "
	      "did not pass everywhere</label>\n",
	      f);
	fputs("<table class=\"matrix\">\n<thead><tr><th>test</th>", f);
	for (int ti = 0; ti < c->ntargets; ti++) {
		fputs("<th>", f);
		put_xml(f, c->targets[ti].name);
		fputs("</th>", f);
	}
	fputs("</tr></thead>\n<tbody>\n<tr class=\"verdicts\"><td><b>verdict</b></td>", f);
	for (int ti = 0; ti < c->ntargets; ti++) {
		const struct target *t = &c->targets[ti];
		if (!t->available) {
			fputs("<td class=\"unavailable\" title=\"", f);
			put_xml(f, t->reason);
			fputs("\">unavailable<br><span class=\"reason\">", f);
			put_xml(f, t->reason);
			fputs("</span></td>", f);
			continue;
		}
		fprintf(f, "<td class=\"%s\">%s<br>%u passed &middot; %u failed &middot; %u skipped &middot; "
			   "%u errors</td>",
			target_certified(t) ? "certified" : "notcertified", target_verdict(t), t->passed, t->failed,
			t->skipped, t->errors);
	}
	fputs("</tr>\n", f);
	int kernel = -1;
	for (int i = 0; i < c->nrows; i++) {
		const struct row *r = &c->rows[i];
		if (r->kernel != kernel) {
			const struct kernel *k = &c->kernels[r->kernel];
			kernel = r->kernel;
			bool all_agree = true;
			for (int j = i; j < c->nrows && c->rows[j].kernel == kernel; j++)
				all_agree = all_agree && row_agrees(c, &c->rows[j]);
			fprintf(f, "<tr class=\"kernel%s\"><th colspan=\"%d\">", all_agree ? " agree" : "",
				c->ntargets + 1);
			put_xml(f, k->label);
			fprintf(f, "<span>%s boot &middot; ", k->protocol);
			if (*k->options) {
				put_xml(f, k->options);
				fputs(" &middot; ", f);
			}
			put_xml(f, k->shown);
			fputs("</span></th></tr>\n", f);
		}
		fprintf(f, "<tr%s><td class=\"name\">", row_agrees(c, r) ? " class=\"agree\"" : "");
		put_xml(f, r->name);
		if (r->note) {
			fputs("<span class=\"note\">", f);
			put_xml(f, r->note);
			fputs("</span>", f);
		}
		fputs("</td>", f);
		for (int ti = 0; ti < c->ntargets; ti++)
			html_cell(f, c, r, ti);
		fputs("</tr>\n", f);
	}
	fputs("</tbody></table>\n</body>\n</html>\n", f);
	return finish(f);
}
