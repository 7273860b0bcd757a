/* accord certify: runs the guest test kernels (guest/) on accord and on its
 * peers, side by side, and writes a report (JSON, JUnit XML, HTML). */
#ifndef ACCORD_CERTIFY_H
#define ACCORD_CERTIFY_H

/* argv[0] is "certify"; returns the process exit status (README
 * "Certification") */
int certify_main(int argc, char **argv);

#endif
