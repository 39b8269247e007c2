/*
 * A C server's response stream in a wait set, across processes: the server
 * answers one stream request (payload: the part count) on exchange "files"
 * of NAMESPACE, and before each part whose send would wait (the client holds
 * a full window) it prints "waiting" and waits in a wait set holding its
 * server port and the stream until the wait set reports the stream ready.
 * It then checks that neither the stream nor the server can go while the
 * set holds them (SHMEX_E_BUSY), and prints "waited N" at the end.
 *
 *   stream_waitset NAMESPACE
 *
 * Part i is the text "part i of N" (as examples/stream.c writes it, without
 * filler).
 *
 * Linked with -Wl,--wrap=malloc,... (see bindings/tests/cross.rs): the
 * allocations of this thread inside shmex_waitset_wait, after the first
 * WARM_UP waits, are counted and printed as "allocations N" (0 expected: a
 * wait reuses its wait set's buffers).
 */
#include "shmex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocations of this thread (every malloc-family call of libshmex.a and of
 * this program goes through the wrappers below). */
static _Thread_local unsigned long allocations;

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
int __real_posix_memalign(void **p, size_t align, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);

void *__wrap_malloc(size_t size) {
    allocations++;
    return __real_malloc(size);
}
void *__wrap_calloc(size_t n, size_t size) {
    allocations++;
    return __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t size) {
    allocations++;
    return __real_realloc(p, size);
}
int __wrap_posix_memalign(void **p, size_t align, size_t size) {
    allocations++;
    return __real_posix_memalign(p, align, size);
}
void *__wrap_aligned_alloc(size_t align, size_t size) {
    allocations++;
    return __real_aligned_alloc(align, size);
}

/* Waits not counted: the first ones grow the wait set's buffers. */
#define WARM_UP 2

#define CHECK(call)                                                            \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != SHMEX_OK) {                                                 \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,  \
                    shmex_error_string(rc_), shmex_last_error_message());      \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

#define EXPECT(call, code)                                                     \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != (code)) {                                                   \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__,  \
                    __LINE__, #call, shmex_error_string(rc_),                  \
                    shmex_error_string(code));                                 \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NAMESPACE\n", argv[0]);
        return 2;
    }
    shmex_node *node;
    shmex_exchange *ex;
    shmex_server *server;
    CHECK(shmex_node_create("stream-waitset", argv[1], NULL, &node));
    CHECK(shmex_exchange_open(node, "files", &ex));
    CHECK(shmex_server_create(ex, &server));
    printf("ready\n");
    fflush(stdout);

    shmex_request *request;
    shmex_request_info info;
    CHECK(shmex_server_receive(server, 30000, &request, &info, NULL));
    char count[16] = {0};
    memcpy(count, info.data, info.len < 15 ? info.len : 15);
    unsigned n = (unsigned)atoi(count);
    shmex_stream *stream;
    CHECK(shmex_request_respond_stream(request, &stream));

    shmex_waitset *set;
    size_t s, t, again;
    CHECK(shmex_waitset_create(&set));
    CHECK(shmex_waitset_add(set, server, &s));
    CHECK(shmex_waitset_add(set, stream, &t));
    CHECK(shmex_waitset_add(set, stream, &again));
    if (s != 0 || t != 1 || again != 1) {
        fprintf(stderr, "indices %zu %zu %zu\n", s, t, again);
        return 1;
    }

    unsigned waited = 0;
    unsigned long counted = 0;
    for (unsigned i = 0; i < n; i++) {
        int ready;
        CHECK(shmex_stream_status(stream, &ready, NULL));
        if (!ready) {
            printf("waiting\n");
            fflush(stdout);
            waited++;
            for (;;) {
                size_t woke[4], k, got = 0;
                unsigned long before = allocations;
                CHECK(shmex_waitset_wait(set, 30000, woke, 4, &k));
                if (waited > WARM_UP)
                    counted += allocations - before;
                for (size_t j = 0; j < k; j++)
                    got |= woke[j] == t;
                if (got)
                    break;
            }
            CHECK(shmex_stream_status(stream, &ready, NULL));
            if (!ready) {
                fprintf(stderr, "the wait set reported a stream that is not ready\n");
                return 1;
            }
        }
        char part[64];
        int len = snprintf(part, sizeof part, "part %u of %u", i, n);
        CHECK(shmex_stream_send(stream, part, (size_t)len));
    }

    /* Members stay until the wait set is freed. */
    EXPECT(shmex_stream_end(stream), SHMEX_E_BUSY);
    EXPECT(shmex_stream_abort(stream), SHMEX_E_BUSY);
    EXPECT(shmex_server_free(server), SHMEX_E_BUSY);
    CHECK(shmex_waitset_free(set));
    CHECK(shmex_stream_end(stream));
    /* An ended stream's handle is stale, like a freed port's. */
    CHECK(shmex_waitset_create(&set));
    EXPECT(shmex_waitset_add(set, stream, NULL), SHMEX_E_STALE_HANDLE);
    CHECK(shmex_waitset_free(set));
    CHECK(shmex_server_free(server));
    CHECK(shmex_exchange_free(ex));
    CHECK(shmex_node_free(node));
    printf("waited %u\n", waited);
    printf("allocations %lu\n", counted);
    return 0;
}
