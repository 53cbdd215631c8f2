/*
 * An LD_PRELOAD shim that gives one process its own host names, so a test can
 * name a server that only one side (e.g. the SSH gateway) can resolve, with
 * nothing leaving 127.0.0.1 and no DNS query at all.
 *
 * AIF_FAKE_HOSTS="name=127.0.0.1,other=": getaddrinfo("name") answers as for
 * the numeric address; an empty address answers EAI_NONAME (the name does not
 * exist for this process). Every other name goes to the real getaddrinfo.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    const char *spec = getenv("AIF_FAKE_HOSTS");
    if (node && spec) {
        size_t n = strlen(node);
        const char *p = spec;
        while (*p) {
            const char *eq = strchr(p, '=');
            if (!eq) break;
            const char *end = strchr(eq, ',');
            if (!end) end = eq + strlen(eq);
            if ((size_t)(eq - p) == n && strncmp(p, node, n) == 0) {
                char addr[64];
                size_t len = (size_t)(end - eq - 1);
                if (len == 0 || len >= sizeof addr) return EAI_NONAME;
                memcpy(addr, eq + 1, len);
                addr[len] = 0;
                struct addrinfo h;
                if (hints) h = *hints; else memset(&h, 0, sizeof h);
                h.ai_flags |= AI_NUMERICHOST;
                return real(addr, service, &h, res);
            }
            p = *end ? end + 1 : end;
        }
    }
    return real(node, service, hints, res);
}
