/*
 * oracle.c asks glibc's regcomp/regexec, the way Asterisk's eventfilters use
 * them (REG_EXTENDED | REG_NOSUB, C locale), about a list of patterns and
 * subjects. gen.py feeds it and writes ../posix-ere-glibc.txt, which
 * TestTranslateEREAgainstGlibc replays. Not part of the build.
 *
 * stdin: one case per line, "<hex pattern> <hex subject>".
 * stdout: one line per case: "match", "nomatch" or "error <REG_code>".
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *codes[] = {
	"REG_NOERROR", "REG_NOMATCH", "REG_BADPAT", "REG_ECOLLATE", "REG_ECTYPE",
	"REG_EESCAPE", "REG_ESUBREG", "REG_EBRACK", "REG_EPAREN", "REG_EBRACE",
	"REG_BADBR", "REG_ERANGE", "REG_ESPACE", "REG_BADRPT", "REG_EEND",
	"REG_ESIZE", "REG_ERPAREN",
};

static char *unhex(const char *h)
{
	size_t n = strlen(h) / 2, i;
	char *out = malloc(n + 1);
	for (i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (char) v;
	}
	out[n] = '\0';
	return out;
}

int main(void)
{
	static char line[1 << 20];
	while (fgets(line, sizeof(line), stdin)) {
		char *sp = strchr(line, ' ');
		char *nl = strchr(line, '\n');
		regex_t re;
		int rc;
		if (!sp || !nl) {
			return 2;
		}
		*sp = '\0';
		*nl = '\0';
		char *pat = unhex(line), *subj = unhex(sp + 1);
		rc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
		if (rc) {
			printf("error %s\n", rc < (int) (sizeof(codes) / sizeof(codes[0])) ? codes[rc] : "?");
		} else {
			printf("%s\n", regexec(&re, subj, 0, NULL, 0) == 0 ? "match" : "nomatch");
			regfree(&re);
		}
		free(pat);
		free(subj);
	}
	return 0;
}
